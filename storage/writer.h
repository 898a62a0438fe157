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
};

/* Limits on one batch; what is above them waits for the next batch. */
#define WRITER_BATCH_MAX_OPS 4096u
#define WRITER_BATCH_MAX_BYTES (64u << 20)

/* Starts the writer thread over s. notify(arg) fires after every batch.
 * Keeps s and arg until writer_stop(). *out is written on success. */
int writer_start(struct writer **out, struct storage *s, writer_notify_fn notify, void *arg);

/* Queues op for the next batch. Thread-safe. The writer owns op until it
 * comes back through writer_take_done(). */
void writer_submit(struct writer *w, struct writer_op *op);

/* Takes every finished op, in submission order (NULL when none). The caller
 * owns them again. Thread-safe. */
struct writer_op *writer_take_done(struct writer *w);

/* Copies the writer's figures. Thread-safe. */
void writer_get_stats(struct writer *w, struct writer_stats *out);

/* Runs every op queued so far, then stops and joins the thread and frees w.
 * Finished ops that were not taken are abandoned to the caller's next (last)
 * writer_take_done() call made before this one: call writer_take_done()
 * after writer_drain() instead when they must be answered. */
void writer_stop(struct writer *w);

/* Blocks until every op submitted so far has finished. */
void writer_drain(struct writer *w);

#endif
