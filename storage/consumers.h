/* Durable consumer groups (DESIGN.md §5) on the storage engine: the group
 * records and the parked events. The in-memory side (members, the window of
 * events in flight, redelivery) is server/srv_consumer.c's.
 *
 * Layout (integers big-endian):
 *   consumers  group name                      -> group record (below)
 *   parked     group name, 0x00, position(8)   -> parked record (below)
 *
 * Group record: u8 format (1), u8 target (0 $all, 1 stream), u8 from
 * (0 start, 1 end, 2 position), u8 event type count, u32 max_deliveries,
 * u64 ack_timeout_ms, u64 position (the asked start), u64 checkpoint (a
 * $all position: every matching event at or below it is acked, skipped or
 * parked), u64 resume (where reading starts again after a restart: a $all
 * position, or a stream version for a stream group), u64 created_us,
 * u8 stream length, u8 prefix length, then the stream, the prefix, and each
 * event type as u8 length and bytes.
 * Parked record: u8 format (1), 3 bytes zero, u32 deliveries,
 * u64 parked_at_us, u16 reason length, reason bytes.
 *
 * A group name is 1..255 bytes of UTF-8 without control characters (so no
 * 0x00, which makes the parked key unambiguous). Every function takes the
 * transaction it works in and keeps no state. Stored bytes are checked when
 * decoded: a record that does not add up answers WB_E_CORRUPT, never an
 * out-of-bounds read. */
#ifndef WB_CONSUMERS_H
#define WB_CONSUMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

#define CONS_NAME_MAX 255u
/* Who made a group (the server's client identity, e.g. "user:alice"), for
 * per-identity quotas; "" for groups made before it was kept. */
#define CONS_OWNER_MAX 300u
#define CONS_TYPES_MAX 16u
#define CONS_REASON_MAX 1024u
#define CONS_RECORD_HEADER 50u
#define CONS_PARKED_HEADER 18u

enum cons_target { CONS_TARGET_ALL = 0, CONS_TARGET_STREAM = 1 };
enum cons_from { CONS_FROM_START = 0, CONS_FROM_END = 1, CONS_FROM_POSITION = 2 };

/* A group's record, decoded into owned, NUL-terminated buffers. */
struct cons_record {
	char name[CONS_NAME_MAX + 1];
	size_t name_len;
	uint8_t target;
	uint8_t from;
	char stream[CONS_NAME_MAX + 1];
	size_t stream_len;
	char prefix[CONS_NAME_MAX + 1];
	size_t prefix_len;
	char types[CONS_TYPES_MAX][CONS_NAME_MAX + 1];
	size_t type_lens[CONS_TYPES_MAX];
	size_t ntypes;
	uint32_t max_deliveries;
	uint64_t ack_timeout_ms;
	uint64_t position;
	uint64_t checkpoint;
	uint64_t resume;
	uint64_t created_us;
	char owner[CONS_OWNER_MAX + 1];
	size_t owner_len;
};

/* A parked event's record; reason points into storage memory (valid as
 * long as the transaction, until its next write). */
struct cons_parked {
	uint64_t position;
	uint32_t deliveries;
	uint64_t parked_at_us;
	const char *reason;
	size_t reason_len;
};

/* Checks a group name: 1..CONS_NAME_MAX bytes of valid UTF-8 without
 * control characters. Returns 0 or WB_BAD_REQUEST with a sentence in
 * errmsg. */
int cons_check_name(const char *name, size_t len, char *errmsg, size_t errlen);

/* The most bytes a group record takes. */
#define CONS_RECORD_MAX                                                                            \
	(CONS_RECORD_HEADER + 2 * CONS_NAME_MAX + CONS_TYPES_MAX * (1 + CONS_NAME_MAX) + 2 +        \
	 CONS_OWNER_MAX)

/* Encodes r (without its name, which is the key) into buf (at least
 * CONS_RECORD_MAX bytes) and returns the length. r's lengths must be within
 * the limits above (WB_E_INVAL otherwise, with *len untouched). */
int cons_encode(const struct cons_record *r, uint8_t *buf, size_t *len);

/* Decodes a group record stored under name into *out (the name is copied
 * into it). WB_E_CORRUPT when the bytes do not add up. */
int cons_decode(const char *name, size_t name_len, const uint8_t *v, size_t len,
                struct cons_record *out);

/* Stores r under r->name (replacing any record). */
int cons_put(struct storage_txn *txn, const struct cons_record *r);

/* Reads the group name into *out; WB_E_NOTFOUND when there is none. */
int cons_get(struct storage_txn *txn, const char *name, size_t name_len, struct cons_record *out);

/* Sets the group's checkpoint and resume point, never moving the checkpoint
 * back (a lower value leaves both as stored). WB_E_NOTFOUND when the group
 * does not exist (deleted meanwhile): nothing is written. */
int cons_set_checkpoint(struct storage_txn *txn, const char *name, size_t name_len,
                        uint64_t checkpoint, uint64_t resume);

/* Deletes the group's record and every parked event of it. WB_E_NOTFOUND
 * when there is no such group. *parked_removed (may be NULL) receives the
 * number of parked records removed. */
int cons_delete(struct storage_txn *txn, const char *name, size_t name_len,
                uint64_t *parked_removed);

/* Called for each group; return false to stop. */
typedef bool (*cons_visit_fn)(const struct cons_record *r, void *arg);

/* Visits every group in name order. A record that does not decode stops
 * the walk with WB_E_CORRUPT. */
int cons_list(struct storage_txn *txn, cons_visit_fn visit, void *arg);

/* Parks position for group name (replacing a parked record there). */
int cons_park(struct storage_txn *txn, const char *name, size_t name_len, uint64_t position,
              uint32_t deliveries, uint64_t now_us, const char *reason, size_t reason_len);

/* Reads the parked record of position into *out (its reason points into
 * storage memory); WB_E_NOTFOUND when position is not parked. */
int cons_get_parked(struct storage_txn *txn, const char *name, size_t name_len, uint64_t position,
                    struct cons_parked *out);

/* Removes a parked record; WB_E_NOTFOUND when it is not parked. */
int cons_unpark(struct storage_txn *txn, const char *name, size_t name_len, uint64_t position);

/* Called for each parked event; return false to stop before it (it is not
 * counted as visited, and the next page starts with it). */
typedef bool (*cons_parked_fn)(const struct cons_parked *p, void *arg);

/* Visits the parked events of group name from position from (inclusive)
 * in position order, at most max_count of them (0: no limit), stopping
 * early when visit returns false. *next receives the position to continue
 * from (after the last one visited), *end whether no parked event of the
 * group lies at or beyond it. */
int cons_parked_list(struct storage_txn *txn, const char *name, size_t name_len, uint64_t from,
                     uint32_t max_count, cons_parked_fn visit, void *arg, uint64_t *next,
                     bool *end);

/* Counts the parked events of group name. */
int cons_parked_count(struct storage_txn *txn, const char *name, size_t name_len, uint64_t *out);

#endif
