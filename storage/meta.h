/* Counters in the meta database: u64 values (big-endian) under short string
 * keys, read and written inside the caller's transaction. */
#ifndef WB_META_H
#define WB_META_H

#include <stdint.h>

#include "storage.h"

/* Reads key into *out; dflt when the key is absent. WB_E_CORRUPT when the
 * stored value is not 8 bytes. */
int meta_get_u64(struct storage_txn *txn, const char *key, uint64_t dflt, uint64_t *out);

/* Stores value under key. */
int meta_put_u64(struct storage_txn *txn, const char *key, uint64_t value);

#endif
