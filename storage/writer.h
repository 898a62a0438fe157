/* The writer thread: group commit over the storage engine.
 *
 * The loop thread submits write operations; the writer thread takes every
 * operation queued at that moment as one batch, runs each in a nested
 * transaction of one write transaction (so a failing operation does not fail
 * its neighbours), commits once (one fsync for the whole batch) and hands
 * the batch back. Operations submitted while a batch commits form the next
 * batch, so the batch size follows the load.
 *
 * When the map fills (WB_E_MAPFULL anywhere in the batch), the writer aborts
 * the batch, grows the map and runs the whole batch again: operations must
 * therefore keep their effects inside the transaction (and in op-owned
 * output fields that they rewrite on every run). */
#ifndef WB_WRITER_H
#define WB_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "storage.h"

struct writer_op;

/* Runs on the writer thread inside a nested transaction. Returns 0 to keep
 * its effects, otherwise an error code: its nested transaction is aborted
 * and the code becomes op->status. */
typedef int (*writer_apply_fn)(struct storage_txn *txn, struct writer_op *op);

struct writer_op {
	struct writer_op *next; /* owned by the writer while submitted */
	writer_apply_fn apply;
	/* An estimate of the bytes the operation writes, used to grow the
	 * map before it fills. */
	size_t size_hint;
	/* Set by the writer: the apply's result, or the batch's commit error
	 * when the batch could not be made durable. Read once the op has come
	 * back through writer_take_done(). */
	int status;
	/* Log mode: the op as a log record, a deterministic command
	 * (storage/record.h) that the submitter encodes before
	 * writer_submit() and owns. The writer logs it before it applies the
	 * op, so apply must do exactly what applying the record does at
	 * replay (writer_replay()): in practice apply decodes the record. */
	uint16_t rec_type;
	uint16_t rec_version;
	const uint8_t *rec;
	size_t rec_len;
};

struct writer;

/* Called on the writer thread after each batch has been committed (or has
 * failed); it must only wake the loop (uv_async_send). */
typedef void (*writer_notify_fn)(void *arg);

/* Histogram buckets of the figures (for the metrics): bucket i counts the
 * batches whose value was at most the bound i and above bound i-1; the last
 * bucket (index WRITER_*_BUCKETS) counts those above every bound. */
#define WRITER_OPS_BUCKETS 12
#define WRITER_COMMIT_BUCKETS 14
extern const uint64_t writer_ops_bounds[WRITER_OPS_BUCKETS];       /* ops per batch */
extern const uint64_t writer_commit_bounds[WRITER_COMMIT_BUCKETS]; /* microseconds */

struct writer_stats {
	uint64_t batches;
	uint64_t ops;
	uint64_t ops_max; /* the largest batch */
	uint64_t commit_us_total;
	uint64_t grows;
	uint64_t bytes; /* the ops' size hints, summed */
	/* Batches by size (ops), and by the time their transaction took from
	 * the first apply to the end of the commit and its fsync. */
	uint64_t ops_hist[WRITER_OPS_BUCKETS + 1];
	uint64_t commit_hist[WRITER_COMMIT_BUCKETS + 1];
	/* Log mode */
	uint64_t log_bytes; /* record bodies logged */
	uint64_t log_sync_us_total;
	uint64_t checkpoints;
	uint64_t checkpoint_us_total;
	uint64_t applied_seq; /* the last record applied and visible */
	uint64_t nospc;       /* batches refused for a full disk */
	uint64_t reruns;      /* batches run again nested after an op failed flat */
};

/* Limits on one batch; what is above them waits for the next batch. */
#define WRITER_BATCH_MAX_OPS 4096u
#define WRITER_BATCH_MAX_BYTES (64u << 20)

struct wal;
struct wal_options;
struct wal_open_info;

/* Log-first mode (DESIGN.md §3, §8). A batch goes: its records are written
 * to the log with one write; the log's fdatasync runs on a thread of its own
 * while the batch is applied in one LMDB transaction; the transaction
 * commits (without a sync) only once the fdatasync has returned, so nothing
 * becomes visible before it is durable; then the loop is told. Every
 * checkpoint_bytes of log, checkpoint_growth of the data file or checkpoint_ms
 * the writer checkpoints the store
 * (storage_checkpoint()) and releases the log it covers.
 *
 * Once a record is durable it must be applied: a failure that applying again
 * could not reproduce (no memory, I/O, corruption), a failed fdatasync or a
 * failed checkpoint sync calls fatal, which logs and stops the process (a
 * restart replays the record). A map that cannot grow after the records are
 * durable is retried until it can. A full disk before the records are
 * written fails the batch with WB_E_NOSPC: nothing of it was durable. */
struct writer_log {
	struct wal *wal;
	uint64_t checkpoint_bytes;
	uint64_t checkpoint_ms;
	/* ... or once the data file's used part has grown this much: until the
	 * next checkpoint LMDB reuses no page the pinned checkpoint reaches,
	 * so every page a batch rewrites is a new one. This bounds that
	 * garbage (and what the next checkpoint's fdatasync writes). */
	uint64_t checkpoint_growth;
	/* Negative control of the power-cut harness: commit and answer before
	 * the log's fdatasync. Never on a server that keeps data. */
	bool unsafe_ack_before_sync;
	/* Must not return. */
	void (*fatal)(const char *what, int code);
};

/* Starts the writer thread over s. log NULL: sync mode, every commit is
 * durable by itself. notify(arg) fires after every batch. Keeps s, log's
 * values and the wal, and arg until writer_stop(). *out is written on
 * success. */
int writer_start(struct writer **out, struct storage *s, const struct writer_log *log,
                 writer_notify_fn notify, void *arg);

/* Applies a record at replay; returns what applying it returned. */
typedef int (*writer_replay_fn)(struct storage_txn *txn, uint16_t type, uint16_t version,
                                const uint8_t *rec, size_t len);

/* Log mode, at start before writer_start(): applies every record of wal after
 * the store's checkpoint through fn, in batches like the live writer's (a
 * nested transaction per record; a record whose apply fails with an answer
 * such as WB_WRONG_EXPECTED_VERSION failed the same way when it was live and
 * leaves nothing), then checkpoints the result and releases the log.
 * *records receives how many were applied. A record that cannot be applied
 * for another reason fails the replay (errmsg names it): the store is not
 * opened. */
int writer_replay(struct storage *s, struct wal *wal, writer_replay_fn fn, uint64_t *records,
                  char *errmsg, size_t errlen);

/* Log mode, at start before writer_start(): opens the log (wal_open() with
 * opts, after the store's checkpoint) and applies its records as
 * writer_replay() does, in one read of the log: the open's scan hands each
 * record on as it checks it. Takes no checkpoint: the log holds what was
 * applied (writer_checkpoint_now() when the caller needs one). On success
 * *out holds the log, *records how many were applied and *info (may be NULL)
 * what the open found. On failure nothing is open; records applied before
 * the open found damage further on are not in the checkpoint, and the next
 * open of the store returns to the checkpoint. */
int writer_open_log(struct storage *s, const struct wal_options *opts, writer_replay_fn fn,
                    struct wal **out, struct wal_open_info *info, uint64_t *records, char *errmsg,
                    size_t errlen);

/* Log mode: checkpoints s and releases the log up to the last record written
 * (every record written has been applied when no writer thread runs, or from
 * the writer thread between batches). */
int writer_checkpoint_now(struct storage *s, struct wal *wal, char *errmsg, size_t errlen);

/* Queues op for the next batch. Thread-safe. The writer owns op until it
 * comes back through writer_take_done(). */
void writer_submit(struct writer *w, struct writer_op *op);

/* Takes every finished op, in submission order (NULL when none). The caller
 * owns them again. Thread-safe. */
struct writer_op *writer_take_done(struct writer *w);

/* Copies the writer's figures. Thread-safe. */
void writer_get_stats(struct writer *w, struct writer_stats *out);

/* Runs every op queued so far, then stops and joins the thread and frees w;
 * in log mode it takes a last checkpoint first (fatal on failure).
 * Finished ops that were not taken are abandoned to the caller's next (last)
 * writer_take_done() call made before this one: call writer_take_done()
 * after writer_drain() instead when they must be answered. */
void writer_stop(struct writer *w);

/* Blocks until every op submitted so far has finished. */
void writer_drain(struct writer *w);

#endif
