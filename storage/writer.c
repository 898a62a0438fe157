/* Writer thread. Happy path: wait for queued ops, take them all (up to the
 * batch limits), begin a write transaction, run each op in a nested
 * transaction, commit once, move the ops to the done list, notify the loop.
 * In log mode the batch's records are written to the log first, the log's
 * fdatasync runs on the sync thread while the batch is applied, and the
 * commit (unsynced) waits for it: what readers see is always durable.
 *
 * Failure modes: an op's error aborts only its nested transaction. A full
 * map aborts the batch, grows the map and reruns the batch. A failed commit
 * (I/O error, disk full) marks every op of the batch with the error, since
 * none of them is durable; the next batch starts afresh. In log mode a batch
 * is refused (WB_E_NOSPC) only before its records are written; after that
 * it is applied or the process stops (writer.h). */
#include "writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helper.h"
#include "wal.h"

struct writer {
	struct storage *s;
	struct writer_log log;
	bool log_mode;
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
	/* Log mode: the sync thread runs the log's fdatasync of one batch
	 * while the writer thread applies it; the checkpoint thread runs a
	 * checkpoint's fdatasync of the data file (storage_checkpoint_sync())
	 * while the writer goes on. */
	struct helper syncer;
	struct helper ckpter;
	uint64_t last_checkpoint_us;
	uint64_t used_at_checkpoint; /* storage_used_bytes() then */
	bool ckpt_running;           /* writer thread: between _begin() and _end() */
	uint64_t ckpt_applied;       /* what it covers */
	uint64_t ckpt_t0;
	/* Figures of the writer thread, added to stats under mu by finish() */
	uint64_t log_bytes, sync_us, reruns;
};

/* Grows the map at most this many times for one batch before giving up on
 * it: the batch then fails with WB_E_MAPFULL (RESOURCE_EXHAUSTED). */
#define MAX_GROWS_PER_BATCH 8

/* Replay applies the log in batches of up to this many records or bytes. */
#define REPLAY_BATCH_OPS 4096u
#define REPLAY_BATCH_BYTES (32u << 20)

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

/* An apply result that applying the record again might not reproduce: once
 * the record is durable the process must stop rather than answer it. */
static bool not_deterministic(int rc)
{
	switch (rc) {
	case WB_E_NOMEM:
	case WB_E_IO:
	case WB_E_CORRUPT:
	case WB_E_AGAIN:
	case WB_E_NOSPC:
	case WB_E_TIMEOUT:
	case WB_E_CLOSED:
		return true;
	default:
		return false;
	}
}

static void fatal(struct writer *w, const char *what, int code)
{
	if (w != NULL && w->log.fatal != NULL)
		w->log.fatal(what, code);
	fprintf(stderr, "whizbang writer: %s: %s; stopping\n", what, wb_strerror(code));
	abort();
}

static int log_sync_job(void *arg, char *why, size_t whylen)
{
	struct writer *w = arg;
	(void)why;
	(void)whylen;
	return wal_sync(w->log.wal);
}

static int checkpoint_sync_job(void *arg, char *why, size_t whylen)
{
	struct writer *w = arg;
	return storage_checkpoint_sync(w->s, why, whylen);
}

static void sync_start(struct writer *w)
{
	helper_ask(&w->syncer);
}

/* Waits for the fdatasync started by sync_start(); a failure stops the
 * process: the kernel may have dropped the pages it could not write. */
static void sync_wait(struct writer *w)
{
	int rc;
	uint64_t us;
	helper_take(&w->syncer, true, &rc, &us, NULL);
	w->sync_us += us;
	if (rc != 0)
		fatal(w, "the log's fdatasync failed", rc);
}

/* ------------------------------------------------------------ batches */

/* run_batch()'s answer when an op failed in a flat run: run it nested. */
#define RERUN_NESTED (-1)

/* Runs the batch once. Flat (nested false), every op applies straight in the
 * batch's transaction: the cheap way, since a nested transaction copies
 * every page it touches that the batch has dirtied already. When an op
 * fails there, the transaction is dropped and RERUN_NESTED returned: nested,
 * each op runs in a nested transaction of its own, so that a failed one
 * leaves nothing and its neighbours commit. Returns 0 when it committed,
 * WB_E_MAPFULL when it must be grown and rerun, or the commit's error.
 * *logged: the batch's records are written and their fdatasync is running
 * (sync_wait() before the commit; cleared once waited for). */
static int run_batch(struct writer *w, struct storage *s, struct writer_op *batch, bool nested,
                     bool *logged)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(s, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	for (struct writer_op *op = batch; op != NULL; op = op->next) {
		if (!nested) {
			op->status = op->apply(txn, op);
			if (op->status != 0) {
				rc = op->status == WB_E_MAPFULL ? WB_E_MAPFULL : RERUN_NESTED;
				goto err_after_begin;
			}
			continue;
		}
		struct storage_txn *child;
		rc = storage_txn_begin(s, txn, 0, &child);
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
	/* The batch's cached records are written while the log's sync runs. */
	if ((rc = storage_txn_flush(txn)) != 0)
		goto err_after_begin;
	if (*logged) {
		sync_wait(w);
		*logged = false;
	}
	return storage_txn_commit(txn);

err_after_begin:
	storage_txn_abort(txn);
	return rc;
}

/* Runs the batch until it commits, growing the map when it fills. With
 * must_apply (its records are durable) a map that cannot grow is retried
 * until it can, and any other failure stops the process. */
static int apply_batch(struct writer *w, struct storage *s, struct writer_op *batch, size_t bytes,
                       bool must_apply, bool *logged, int *grows)
{
	int rc;
	bool nested = false;
	for (;;) {
		rc = run_batch(w, s, batch, nested, logged);
		if (rc == RERUN_NESTED) {
			nested = true;
			w->reruns++;
			continue;
		}
		if (rc == 0 || rc != WB_E_MAPFULL)
			break;
		if (storage_grow(s, bytes * 2 + ((size_t)1 << 20)) == 0) {
			(*grows)++;
			if (*grows <= MAX_GROWS_PER_BATCH || must_apply)
				continue;
		}
		if (!must_apply)
			break;
		/* Durable records wait for room; reads go on meanwhile. */
		usleep(100 * 1000);
	}
	if (must_apply && rc != 0)
		fatal(w, "a batch whose records are durable could not be committed", rc);
	if (must_apply)
		for (struct writer_op *op = batch; op != NULL; op = op->next)
			if (not_deterministic(op->status))
				fatal(w, "a durable record could not be applied", op->status);
	return rc;
}

/* A batch of at most this many ops syncs the log on the writer thread: its
 * apply is too short for the overlap to pay for two thread wake-ups. */
#define SYNC_INLINE_OPS 4u

/* Writes the batch's records to the log and makes them durable: inline for
 * a small batch, else by starting the sync thread's fdatasync (*pending is
 * then set: sync_wait() before the commit). Returns 0, or an error for the
 * whole batch (nothing of it is durable). */
static int log_batch(struct writer *w, struct writer_op *batch, size_t nops, bool *pending)
{
	struct wal *wal = w->log.wal;
	uint64_t bytes = 0;
	for (struct writer_op *op = batch; op != NULL; op = op->next) {
		if (op->rec == NULL)
			fatal(w, "an op without a log record reached the writer in log mode",
			      WB_E_INVAL);
		int rc = wal_add(wal, op->rec_type, op->rec_version, op->rec, op->rec_len, NULL);
		if (rc != 0) {
			wal_discard(wal);
			return rc;
		}
		bytes += op->rec_len;
	}
	int rc = wal_write(wal);
	if (rc == WB_E_NOSPC)
		return rc;
	w->log_bytes += bytes; /* only what reached the log */
	if (rc != 0)
		fatal(w, "the log could not be written", rc);
	*pending = false;
	if (w->log.unsafe_ack_before_sync)
		return 0;
	if (nops > SYNC_INLINE_OPS) {
		sync_start(w);
		*pending = true;
		return 0;
	}
	uint64_t t0 = now_us();
	rc = wal_sync(wal);
	w->sync_us += now_us() - t0;
	if (rc != 0)
		fatal(w, "the log's fdatasync failed", rc);
	return 0;
}

static int checkpoint(struct storage *s, struct wal *wal, char *errmsg, size_t errlen)
{
	uint64_t applied = wal_last_seq(wal);
	int rc = storage_checkpoint(s, applied, errmsg, errlen);
	if (rc == 0)
		rc = wal_release(wal, applied);
	return rc;
}

int writer_checkpoint_now(struct storage *s, struct wal *wal, char *errmsg, size_t errlen)
{
	int rc = checkpoint(s, wal, errmsg, errlen);
	if (rc != 0 && errmsg != NULL && errmsg[0] == '\0')
		snprintf(errmsg, errlen, "the checkpoint failed: %s", wb_strerror(rc));
	return rc;
}

static void sync_checkpoint(struct writer *w);

/* Ends the checkpoint the checkpoint thread is syncing once it is done
 * (waiting for it with wait), releasing the log it covers. Returns false
 * when it is still running. */
static bool collect_checkpoint(struct writer *w, bool wait)
{
	if (!w->ckpt_running)
		return true;
	int rc;
	char why[sizeof(w->ckpter.why)];
	if (!helper_take(&w->ckpter, wait, &rc, NULL, why))
		return false;
	storage_checkpoint_end(w->s, rc);
	w->ckpt_running = false;
	if (rc == WB_E_IO)
		fatal(w, why[0] != '\0' ? why : "the checkpoint's sync failed", rc);
	if (rc == 0 && wal_release(w->log.wal, w->ckpt_applied) == 0) {
		pthread_mutex_lock(&w->mu);
		w->stats.checkpoints++;
		w->stats.checkpoint_us_total += now_us() - w->ckpt_t0;
		pthread_mutex_unlock(&w->mu);
	}
	/* Another failure (a full disk for the checkpoint file) leaves the
	 * previous checkpoint in force and the log kept: a later batch tries
	 * again. */
	return true;
}

/* Starts a checkpoint of what is committed now; its fdatasync runs on the
 * checkpoint thread. */
static void start_checkpoint(struct writer *w, uint64_t t, uint64_t used)
{
	char why[256] = "";
	uint64_t applied = wal_last_seq(w->log.wal);
	int rc = storage_checkpoint_begin(w->s, applied, why, sizeof(why));
	if (rc == WB_E_IO)
		fatal(w, why[0] != '\0' ? why : "the checkpoint could not begin", rc);
	w->last_checkpoint_us = t;
	if (rc != 0)
		return; /* the next trigger tries again */
	w->used_at_checkpoint = used;
	w->ckpt_applied = applied;
	w->ckpt_t0 = t;
	w->ckpt_running = true;
	helper_ask(&w->ckpter);
}

/* True when no checkpoint is under way and the last one covers every record
 * written. */
static bool all_checkpointed(struct writer *w)
{
	return !w->ckpt_running && wal_last_seq(w->log.wal) == storage_checkpoint_applied(w->s);
}

static void maybe_checkpoint(struct writer *w, bool force)
{
	if (!collect_checkpoint(w, force))
		return; /* still syncing */
	if (all_checkpointed(w)) {
		w->last_checkpoint_us = now_us();
		return;
	}
	if (!force) {
		uint64_t t = now_us();
		uint64_t used = storage_used_bytes(w->s);
		if (wal_bytes_since_release(w->log.wal) >= w->log.checkpoint_bytes ||
		    used >= w->used_at_checkpoint + w->log.checkpoint_growth ||
		    t - w->last_checkpoint_us >= w->log.checkpoint_ms * 1000u)
			start_checkpoint(w, t, used);
		return;
	}
	sync_checkpoint(w);
}

/* A checkpoint taken on the writer thread from start to end: when idle, and
 * at a stop. */
static void sync_checkpoint(struct writer *w)
{
	uint64_t t = now_us();
	uint64_t used = storage_used_bytes(w->s);
	char why[256] = "";
	int rc = checkpoint(w->s, w->log.wal, why, sizeof(why));
	if (rc == WB_E_IO)
		fatal(w, why[0] != '\0' ? why : "the checkpoint's sync failed", rc);
	uint64_t t1 = now_us();
	w->last_checkpoint_us = t1;
	if (rc != 0)
		return; /* the previous checkpoint stays in force; a later one tries again */
	w->used_at_checkpoint = used;
	pthread_mutex_lock(&w->mu);
	w->stats.checkpoints++;
	w->stats.checkpoint_us_total += t1 - t;
	pthread_mutex_unlock(&w->mu);
}

static void finish(struct writer *w, struct writer_op *batch, size_t nops, size_t bytes, int grows,
                   uint64_t t0, int rc)
{
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
	if (w->log_mode && rc == 0)
		w->stats.applied_seq = wal_last_seq(w->log.wal);
	if (rc == WB_E_NOSPC)
		w->stats.nospc++;
	w->stats.log_bytes += w->log_bytes;
	w->stats.log_sync_us_total += w->sync_us;
	w->stats.reruns += w->reruns;
	w->log_bytes = 0;
	w->sync_us = 0;
	w->reruns = 0;
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

static void process(struct writer *w, struct writer_op *batch, size_t nops, size_t bytes)
{
	int rc = 0;
	int grows = 0;
	bool logged = false;

	if (storage_needs_room(w->s, bytes * 2)) {
		int grc = storage_grow(w->s, bytes * 2);
		if (grc == 0)
			grows++;
		else if (grc == WB_E_NOSPC && w->log_mode)
			rc = grc; /* refused before anything is durable */
	}
	uint64_t t0 = now_us();
	if (rc == 0 && w->log_mode)
		rc = log_batch(w, batch, nops, &logged);
	if (rc == 0)
		rc = apply_batch(w, w->s, batch, bytes, w->log_mode, &logged, &grows);
	finish(w, batch, nops, bytes, grows, t0, rc);
	if (w->log_mode && rc == 0) {
		if (w->log.unsafe_ack_before_sync) {
			sync_start(w);
			sync_wait(w);
		}
		maybe_checkpoint(w, false);
	}
}

/* Log mode: waits for work at most until the time checkpoint is due, so an
 * idle writer still checkpoints what it logged. */
static void wait_for_work(struct writer *w)
{
	if (!w->log_mode || all_checkpointed(w)) {
		pthread_cond_wait(&w->cond, &w->mu);
		return;
	}
	uint64_t due = w->last_checkpoint_us + w->log.checkpoint_ms * 1000u;
	uint64_t t = now_us();
	if (t >= due) {
		pthread_mutex_unlock(&w->mu);
		maybe_checkpoint(w, true);
		pthread_mutex_lock(&w->mu);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (due - t) * 1000u;
	ts.tv_sec += (time_t)(ns / 1000000000u);
	ts.tv_nsec = (long)(ns % 1000000000u);
	pthread_cond_timedwait(&w->cond, &w->mu, &ts);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->queue_head == NULL && !w->stopping)
			wait_for_work(w);
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

int writer_start(struct writer **out, struct storage *s, const struct writer_log *log,
                 writer_notify_fn notify, void *arg)
{
	struct writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return WB_E_NOMEM;
	w->s = s;
	w->notify = notify;
	w->notify_arg = arg;
	if (log != NULL) {
		w->log = *log;
		w->log_mode = true;
		w->last_checkpoint_us = now_us();
		w->used_at_checkpoint = storage_used_bytes(s);
		w->stats.applied_seq = wal_last_seq(log->wal);
	}
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		goto err_after_alloc;
	if (pthread_cond_init(&w->cond, NULL) != 0)
		goto err_after_mutex;
	if (pthread_cond_init(&w->idle_cond, NULL) != 0)
		goto err_after_cond;
	if (w->log_mode && helper_start(&w->syncer, "wb-log-sync", log_sync_job, w) != 0)
		goto err_after_idle_cond;
	if (w->log_mode && helper_start(&w->ckpter, "wb-checkpoint", checkpoint_sync_job, w) != 0)
		goto err_after_syncer;
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
		goto err_after_ckpter;
	pthread_setname_np(w->thread, "wb-writer"); /* a label for top -H and perf */
	*out = w;
	return 0;

err_after_ckpter:
	if (w->log_mode)
		helper_stop(&w->ckpter);
err_after_syncer:
	if (w->log_mode)
		helper_stop(&w->syncer);
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

/* ------------------------------------------------------------ replay */

struct replay_op {
	struct writer_op base; /* first */
	writer_replay_fn fn;
	uint64_t seq;
	uint8_t body[]; /* rec points here */
};

static int replay_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct replay_op *op = (struct replay_op *)base;
	return op->fn(txn, base->rec_type, base->rec_version, base->rec, base->rec_len);
}

/* Replay reads the log on the calling thread and applies it on a helper
 * thread, a batch behind: while batch k commits, batch k+1 is read, checked
 * and copied. The applier is the only thread that touches the store until
 * the end. */
struct replay_batch {
	struct writer_op *head, *tail;
	size_t n, bytes;
};

struct replay {
	struct storage *s;
	writer_replay_fn fn;
	struct replay_batch next;    /* being read (calling thread) */
	struct replay_batch applied; /* being applied (the applier) */
	struct helper applier;
	bool applier_on, applying;
	uint64_t records;
	char *errmsg;
	size_t errlen;
};

static void replay_free(struct replay_batch *b)
{
	while (b->head != NULL) {
		struct writer_op *next = b->head->next;
		free(b->head);
		b->head = next;
	}
	*b = (struct replay_batch){0};
}

/* Commits batch b of r, growing the map as the writer does. */
static int replay_commit(struct replay *r, struct replay_batch *b, char *why, size_t whylen)
{
	bool logged = false;
	int grows = 0;
	int rc;
	bool nested = false;
	if (storage_needs_room(r->s, b->bytes * 2))
		(void)storage_grow(r->s, b->bytes * 2);
	for (;;) {
		rc = run_batch(NULL, r->s, b->head, nested, &logged);
		if (rc == RERUN_NESTED) {
			nested = true;
			continue;
		}
		if (rc != WB_E_MAPFULL || grows > MAX_GROWS_PER_BATCH)
			break;
		rc = storage_grow(r->s, b->bytes * 2 + ((size_t)1 << 20));
		if (rc != 0)
			break;
		grows++;
	}
	if (rc != 0) {
		snprintf(why, whylen,
		         "replaying the log: the records up to %llu could not be committed: %s",
		         (unsigned long long)((struct replay_op *)b->tail)->seq, wb_strerror(rc));
	} else {
		for (struct writer_op *op = b->head; op != NULL; op = op->next) {
			if (!not_deterministic(op->status))
				continue;
			snprintf(
			        why, whylen,
			        "replaying the log: record %llu (type %u) could not be applied: %s",
			        (unsigned long long)((struct replay_op *)op)->seq,
			        (unsigned)op->rec_type, wb_strerror(op->status));
			rc = op->status;
			break;
		}
	}
	r->records += b->n;
	replay_free(b);
	return rc;
}

static int replay_job(void *arg, char *why, size_t whylen)
{
	struct replay *r = arg;
	return replay_commit(r, &r->applied, why, whylen);
}

/* Waits for the batch being applied, if any. */
static int replay_wait(struct replay *r)
{
	int rc = 0;
	char why[HELPER_WHY_LEN];
	if (!r->applying)
		return 0;
	helper_take(&r->applier, true, &rc, NULL, why);
	r->applying = false;
	if (rc != 0)
		snprintf(r->errmsg, r->errlen, "%s", why);
	return rc;
}

/* Hands the batch read so far to the applier (once the one before it is
 * done), or applies it here when there is no applier thread. */
static int replay_flush(struct replay *r)
{
	if (r->next.head == NULL)
		return 0;
	int rc = replay_wait(r);
	if (rc != 0)
		return rc;
	r->applied = r->next;
	r->next = (struct replay_batch){0};
	if (!r->applier_on)
		return replay_commit(r, &r->applied, r->errmsg, r->errlen);
	r->applying = true;
	helper_ask(&r->applier);
	return 0;
}

static int replay_cb(void *arg, const struct wal_record *rec)
{
	struct replay *r = arg;
	struct replay_op *op = malloc(sizeof(*op) + rec->len);
	if (op == NULL) {
		snprintf(r->errmsg, r->errlen, "replaying the log: out of memory");
		return WB_E_NOMEM;
	}
	memset(&op->base, 0, sizeof(op->base));
	op->fn = r->fn;
	op->seq = rec->seq;
	memcpy(op->body, rec->body, rec->len);
	op->base.apply = replay_apply;
	op->base.size_hint = rec->len;
	op->base.rec_type = rec->type;
	op->base.rec_version = rec->version;
	op->base.rec = op->body;
	op->base.rec_len = rec->len;
	struct replay_batch *b = &r->next;
	if (b->tail != NULL)
		b->tail->next = &op->base;
	else
		b->head = &op->base;
	b->tail = &op->base;
	b->n++;
	b->bytes += rec->len;
	if (b->n >= REPLAY_BATCH_OPS || b->bytes >= REPLAY_BATCH_BYTES)
		return replay_flush(r);
	return 0;
}

/* Starts a replay into s through fn (records come through replay_cb()). */
static void replay_begin(struct replay *r, struct storage *s, writer_replay_fn fn, char *errmsg,
                         size_t errlen)
{
	*r = (struct replay){.s = s, .fn = fn, .errmsg = errmsg, .errlen = errlen};
	errmsg[0] = '\0';
	/* Without the thread the replay still runs, one batch at a time. */
	r->applier_on = helper_start(&r->applier, "wb-replay", replay_job, r) == 0;
}

/* Ends the replay begun by replay_begin(): rc is how the reading went;
 * applies the rest when it went well, and waits for the applier either way.
 * Returns the first failure. */
static int replay_end(struct replay *r, int rc)
{
	if (rc == 0)
		rc = replay_flush(r);
	int wrc = replay_wait(r);
	if (rc == 0)
		rc = wrc;
	if (r->applier_on)
		helper_stop(&r->applier);
	replay_free(&r->next);
	replay_free(&r->applied);
	if (rc != 0 && r->errmsg[0] == '\0')
		snprintf(r->errmsg, r->errlen, "replaying the log failed: %s", wb_strerror(rc));
	return rc;
}

int writer_replay(struct storage *s, struct wal *wal, writer_replay_fn fn, uint64_t *records,
                  char *errmsg, size_t errlen)
{
	struct replay r;
	replay_begin(&r, s, fn, errmsg, errlen);
	int rc = replay_end(&r, wal_replay(wal, replay_cb, &r));
	if (rc != 0)
		return rc;
	*records = r.records;
	return writer_checkpoint_now(s, wal, errmsg, errlen);
}

int writer_open_log(struct storage *s, const struct wal_options *opts, writer_replay_fn fn,
                    struct wal **out, struct wal_open_info *info, uint64_t *records, char *errmsg,
                    size_t errlen)
{
	struct replay r;
	struct wal_options o = *opts;
	struct wal *wal = NULL;
	o.replay = replay_cb;
	o.replay_arg = &r;
	replay_begin(&r, s, fn, errmsg, errlen);
	/* The open's scan hands every record after the checkpoint to
	 * replay_cb() as it checks it. When the open then fails (damage
	 * further on), what was applied stays uncommitted to the checkpoint:
	 * the next open of the store returns to it. */
	int rc = wal_open(&wal, &o, storage_checkpoint_applied(s), info, errmsg, errlen);
	rc = replay_end(&r, rc);
	if (rc != 0) {
		wal_close(wal);
		return rc;
	}
	*records = r.records;
	*out = wal;
	return 0;
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
	if (w->log_mode) {
		helper_stop(&w->syncer);
		collect_checkpoint(w, true);
		helper_stop(&w->ckpter);
		/* A clean stop leaves nothing to replay. */
		char why[256] = "";
		int rc = checkpoint(w->s, w->log.wal, why, sizeof(why));
		if (rc != 0) /* the log keeps it all: the next start replays it */
			fprintf(stderr, "whizbang writer: the last checkpoint failed (%s): %s\n",
			        why, wb_strerror(rc));
	}
	pthread_cond_destroy(&w->idle_cond);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
