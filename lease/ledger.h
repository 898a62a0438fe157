/* The ledger (DESIGN.md §6): one durable final entry per sequence number,
 * the staged work of leases, the reservation ceiling and the watermark.
 *
 * Layout (integers big-endian):
 *   ledger  sequence(8) -> entry record (below)
 *   staged  sequence(8) -> u8 format (1), 7 zero bytes, token(8), ops
 *   meta    "lease_ceiling" -> u64: no sequence above it was ever handed out
 *           "watermark"     -> u64: every sequence <= it is final and applied
 *
 * Entry record: u8 format (1), u8 kind, u8 reason, u8 projection length,
 * u8 operation id length, 3 zero bytes, u64 time_us (when it became final,
 * wall clock), u64 source position, u64 original expiry (µs, gaps and
 * recoveries), u64 original sequence (resequenced recoveries), u64 token,
 * u32 ops length, then the projection, the operation id and the ops.
 *
 * The ops are opaque here: the packed protobuf operations (whizbang.v1.Op,
 * repeated) as the client sent them; when the entry is applied the
 * projections layer replaces them (ledger_set_ops()) with the same ops plus
 * what applying them found (an OpList with its outcome fields). Pure: no libuv; every function
 * takes the transaction it works in. Stored bytes are checked when decoded (WB_E_CORRUPT, never an
 * out-of-bounds read). */
#ifndef WB_LEDGER_H
#define WB_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

#define LEDGER_HEADER 52u

enum ledger_kind {
	LEDGER_COMMITTED = 1,
	LEDGER_GAP = 2,
	LEDGER_RECOVERED = 3,
};

enum ledger_reason {
	LEDGER_REASON_NONE = 0,
	/* gaps */
	LEDGER_GAP_RELEASED = 1,
	LEDGER_GAP_EXPIRED = 2,
	LEDGER_GAP_RESTART = 3,
	/* recoveries */
	LEDGER_RECOVERED_STAGED = 4,
	LEDGER_RECOVERED_RESEQUENCED = 5,
};

/* An entry; when decoded, its pointers point into storage memory: valid
 * until the transaction ends or, in a write transaction, until its next
 * write (storage.h). */
struct ledger_entry {
	uint64_t seq;
	enum ledger_kind kind;
	enum ledger_reason reason;
	uint64_t time_us;
	uint64_t source_position;
	uint64_t original_expiry_us;
	uint64_t original_seq;
	uint64_t token; /* the lease's fencing token; not shown to readers */
	const char *projection;
	size_t projection_len; /* 0..255 */
	const char *operation_id;
	size_t operation_id_len; /* 0..255 */
	const uint8_t *ops;
	size_t ops_len;
};

/* Writes e at e->seq. A sequence gets one final entry: WB_E_KEYEXIST when
 * it has one already. WB_E_INVAL for a kind/reason that do not match or
 * names longer than 255 bytes. */
int ledger_put(struct storage_txn *txn, const struct ledger_entry *e);

/* Replaces the ops of the final entry of seq, keeping the rest: the apply
 * hook stores the ops back with what applying them found (projection/
 * proj.h). WB_E_NOTFOUND when seq has no entry. */
int ledger_set_ops(struct storage_txn *txn, uint64_t seq, const uint8_t *ops, size_t ops_len);

/* Reads the entry of seq; WB_E_NOTFOUND when it has none. */
int ledger_get(struct storage_txn *txn, uint64_t seq, struct ledger_entry *out);

/* Decodes an entry record (the value stored for seq). */
int ledger_decode(uint64_t seq, const uint8_t *v, size_t len, struct ledger_entry *out);

/* Stores ops as the staged work of seq under token, replacing earlier
 * staged work of the same sequence. */
int ledger_stage(struct storage_txn *txn, uint64_t seq, uint64_t token, const uint8_t *ops,
                 size_t ops_len);

/* Reads the staged work of seq: pointers into storage memory.
 * WB_E_NOTFOUND when there is none. */
int ledger_get_staged(struct storage_txn *txn, uint64_t seq, uint64_t *token, const uint8_t **ops,
                      size_t *ops_len);

/* Deletes the staged work of seq, if any (0 either way). */
int ledger_drop_staged(struct storage_txn *txn, uint64_t seq);

/* Makes e final at e->seq and drops its staged work. With from_staged,
 * when seq has staged work, writes instead a recovered (staged) entry: e
 * with that work's ops and token. *recovered (may be NULL) says which was
 * written. Errors as ledger_put(). */
int ledger_finish(struct storage_txn *txn, const struct ledger_entry *e, bool from_staged,
                  bool *recovered);

struct ledger_state {
	uint64_t watermark;
	uint64_t ceiling;
};

/* Reads the watermark and the ceiling (0 and 0 in a new store). */
int ledger_get_state(struct storage_txn *txn, struct ledger_state *out);

/* Records a new reservation ceiling (the server does this before it hands
 * out a sequence above the old one). */
int ledger_set_ceiling(struct storage_txn *txn, uint64_t ceiling);

/* Called for each entry the watermark passes, in sequence order. A non-zero
 * return stops the advance and is returned by ledger_advance(). */
typedef int (*ledger_apply_fn)(struct storage_txn *txn, const struct ledger_entry *e, void *arg);

/* Moves the watermark forward over the contiguous final entries that
 * follow it, up to target at most, calling apply (may be NULL) for each in
 * order, and stores the new watermark. *watermark receives it. apply gets
 * entries pointing into the store: it reads them before it writes. On an
 * error the caller must abort the transaction (entries may have been
 * applied without the watermark recording it). */
int ledger_advance(struct storage_txn *txn, uint64_t target, ledger_apply_fn apply, void *arg,
                   uint64_t *watermark);

struct ledger_recovery {
	uint64_t gaps;      /* sequences that became gaps (restart) */
	uint64_t recovered; /* staged work committed at its own sequence */
	uint64_t watermark; /* after recovery: the ceiling */
};

/* Start-up recovery, before the server accepts clients: every sequence in
 * (watermark, ceiling] without a final entry becomes a recovered entry from
 * its staged work, or a gap with reason restart; staged work is dropped;
 * then the watermark advances to the ceiling through apply (in order). */
int ledger_recover(struct storage_txn *txn, uint64_t now_us, ledger_apply_fn apply, void *arg,
                   struct ledger_recovery *out);

/* Called for each entry a read yields; return false to stop before it. */
typedef bool (*ledger_visit_fn)(const struct ledger_entry *e, void *arg);

/* Visits up to max_count final entries from from_seq (inclusive), in order.
 * *next receives the sequence that continues the read. */
int ledger_read(struct storage_txn *txn, uint64_t from_seq, uint32_t max_count,
                ledger_visit_fn visit, void *arg, uint64_t *next);

#endif
