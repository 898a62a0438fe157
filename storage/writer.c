/* Writer thread. Happy path: wait for queued ops, take them all (up to the
 * batch limits), begin a write transaction, run each op in a nested
 * transaction, commit once, move the ops to the done list, notify the loop.
 *
 * Failure modes: an op's error aborts only its nested transaction. A full
 * map aborts the batch, grows the map and reruns the batch. A failed commit
 * (I/O error, disk full) marks every op of the batch with the error, since
 * none of them is durable; the next batch starts afresh. */
#include "writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct writer {
	struct storage *s;
	writer_notify_fn notify;
	void *notify_arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;      /* signalled: ops queued, or stopping */
	pthread_cond_t idle_cond; /* signalled: a batch finished */
	struct writer_op *queue_head;
	struct writer_op *queue_tail;
	struct writer_op *done_head;
	struct writer_op *done_tail;
	uint64_t submitted;
	uint64_t finished;
	bool stopping;
	struct writer_stats stats;
};

/* Grows the map at most this many times for one batch before giving up on
 * it: the batch then fails with WB_E_MAPFULL (RESOURCE_EXHAUSTED). */
#define MAX_GROWS_PER_BATCH 8

const uint64_t writer_ops_bounds[WRITER_OPS_BUCKETS] = {1,  2,   4,   8,   16,   32,
                                                        64, 128, 256, 512, 1024, 4096};
const uint64_t writer_commit_bounds[WRITER_COMMIT_BUCKETS] = {
        100,   250,   500,    1000,   2500,   5000,    10000,
        25000, 50000, 100000, 250000, 500000, 1000000, 5000000};

static size_t bucket_of(const uint64_t *bounds, size_t n, uint64_t v)
{
	size_t i = 0;
	while (i < n && v > bounds[i])
		i++;
	return i;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Runs the batch once. Returns 0 when it committed, WB_E_MAPFULL when it
 * must be grown and rerun, or the commit's error. */
static int run_batch(struct writer *w, struct writer_op *batch)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(w->s, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	for (struct writer_op *op = batch; op != NULL; op = op->next) {
		struct storage_txn *child;
		rc = storage_txn_begin(w->s, txn, 0, &child);
		if (rc != 0)
			goto err_after_begin;
		op->status = op->apply(child, op);
		if (op->status == WB_E_MAPFULL) {
			storage_txn_abort(child);
			rc = WB_E_MAPFULL;
			goto err_after_begin;
		}
		if (op->status != 0) {
			storage_txn_abort(child);
			continue;
		}
		rc = storage_txn_commit(child);
		if (rc != 0)
			goto err_after_begin;
	}
	return storage_txn_commit(txn);

err_after_begin:
	storage_txn_abort(txn);
	return rc;
}

static void process(struct writer *w, struct writer_op *batch, size_t nops, size_t bytes)
{
	int rc;
	int grows = 0;

	if (storage_needs_room(w->s, bytes * 2) && storage_grow(w->s, bytes * 2) == 0)
		grows++;
	uint64_t t0 = now_us();
	for (;;) {
		rc = run_batch(w, batch);
		if (rc != WB_E_MAPFULL || grows > MAX_GROWS_PER_BATCH)
			break;
		if (storage_grow(w->s, bytes * 2 + ((size_t)1 << 20)) != 0)
			break;
		grows++;
	}
	uint64_t t1 = now_us();
	if (rc != 0)
		for (struct writer_op *op = batch; op != NULL; op = op->next)
			op->status = rc;

	pthread_mutex_lock(&w->mu);
	w->stats.batches++;
	w->stats.ops += nops;
	if (nops > w->stats.ops_max)
		w->stats.ops_max = nops;
	w->stats.commit_us_total += t1 - t0;
	w->stats.bytes += bytes;
	w->stats.ops_hist[bucket_of(writer_ops_bounds, WRITER_OPS_BUCKETS, nops)]++;
	w->stats.commit_hist[bucket_of(writer_commit_bounds, WRITER_COMMIT_BUCKETS, t1 - t0)]++;
	w->stats.grows += (uint64_t)grows;
	struct writer_op *last = batch;
	while (last->next != NULL)
		last = last->next;
	if (w->done_tail != NULL)
		w->done_tail->next = batch;
	else
		w->done_head = batch;
	w->done_tail = last;
	w->finished += nops;
	pthread_cond_broadcast(&w->idle_cond);
	pthread_mutex_unlock(&w->mu);
	w->notify(w->notify_arg);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->queue_head == NULL && !w->stopping)
			pthread_cond_wait(&w->cond, &w->mu);
		if (w->queue_head == NULL)
			break;
		/* Take up to the batch limits; the rest waits its turn. */
		struct writer_op *batch = w->queue_head;
		struct writer_op *last = batch;
		size_t nops = 1;
		size_t bytes = batch->size_hint;
		while (last->next != NULL && nops < WRITER_BATCH_MAX_OPS &&
		       bytes + last->next->size_hint <= WRITER_BATCH_MAX_BYTES) {
			last = last->next;
			nops++;
			bytes += last->size_hint;
		}
		w->queue_head = last->next;
		if (w->queue_head == NULL)
			w->queue_tail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&w->mu);
		process(w, batch, nops, bytes);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int writer_start(struct writer **out, struct storage *s, writer_notify_fn notify, void *arg)
{
	struct writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return WB_E_NOMEM;
	w->s = s;
	w->notify = notify;
	w->notify_arg = arg;
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		goto err_after_alloc;
	if (pthread_cond_init(&w->cond, NULL) != 0)
		goto err_after_mutex;
	if (pthread_cond_init(&w->idle_cond, NULL) != 0)
		goto err_after_cond;
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
		goto err_after_idle_cond;
	*out = w;
	return 0;

err_after_idle_cond:
	pthread_cond_destroy(&w->idle_cond);
err_after_cond:
	pthread_cond_destroy(&w->cond);
err_after_mutex:
	pthread_mutex_destroy(&w->mu);
err_after_alloc:
	free(w);
	return WB_E_NOMEM;
}

void writer_submit(struct writer *w, struct writer_op *op)
{
	op->next = NULL;
	op->status = 0;
	pthread_mutex_lock(&w->mu);
	if (w->queue_tail != NULL)
		w->queue_tail->next = op;
	else
		w->queue_head = op;
	w->queue_tail = op;
	w->submitted++;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

struct writer_op *writer_take_done(struct writer *w)
{
	pthread_mutex_lock(&w->mu);
	struct writer_op *done = w->done_head;
	w->done_head = NULL;
	w->done_tail = NULL;
	pthread_mutex_unlock(&w->mu);
	return done;
}

void writer_get_stats(struct writer *w, struct writer_stats *out)
{
	pthread_mutex_lock(&w->mu);
	*out = w->stats;
	pthread_mutex_unlock(&w->mu);
}

void writer_drain(struct writer *w)
{
	pthread_mutex_lock(&w->mu);
	while (w->finished != w->submitted)
		pthread_cond_wait(&w->idle_cond, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

void writer_stop(struct writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->idle_cond);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
