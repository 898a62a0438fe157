#include "meta.h"

#include <string.h>

#include "codec.h"

int meta_get_u64(struct storage_txn *txn, const char *key, uint64_t dflt, uint64_t *out)
{
	struct storage_val k = {key, strlen(key)};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_META, k, &v);
	if (rc == WB_E_NOTFOUND) {
		*out = dflt;
		return 0;
	}
	if (rc != 0)
		return rc;
	if (v.len != 8)
		return WB_E_CORRUPT;
	*out = get_u64(v.data);
	return 0;
}

int meta_put_u64(struct storage_txn *txn, const char *key, uint64_t value)
{
	uint8_t buf[8];
	put_u64(buf, value);
	struct storage_val k = {key, strlen(key)};
	struct storage_val v = {buf, sizeof(buf)};
	return storage_put(txn, STORAGE_DB_META, k, v, 0);
}
