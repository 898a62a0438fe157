/* Tests of the writer thread (storage/writer.h): group commit over a real
 * store in a fresh temporary directory, in sync mode (suite writer) and in
 * log-first mode (suite writer_log: a log-mode store, its write-ahead log in
 * <dir>/wal, records of a small put command of the tests' own). Crashes and
 * fail-stops run in a forked child, which exits without stopping anything;
 * the parent then opens what the child left, as a restart would. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "fixture.h"
#include "record.h"
#include "storage.h"
#include "wal.h"
#include "writer.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

static struct fixture fx;
static struct storage *st;

/* What the notify callback saw. */
static pthread_mutex_t notify_mu = PTHREAD_MUTEX_INITIALIZER;
static struct writer *notify_writer;
static uint64_t notify_calls;
static uint64_t notify_bad; /* calls that came before their batch was counted */

static void open_store(size_t map_size)
{
	st = fixture_open(&fx, NULL, &(struct storage_options){.map_size = map_size});
}

static void setup(void)
{
	fixture_setup(&fx, "writer");
	notify_writer = NULL;
	notify_calls = 0;
	notify_bad = 0;
}

static void teardown(void)
{
	storage_close(st);
	st = NULL;
	fixture_teardown(&fx);
}

TestSuite(writer, .init = setup, .fini = teardown);

/* Counts calls, and checks that the batch being announced is already in the
 * writer's figures, i.e. that notify comes after the batch. */
static void notify_cb(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&notify_mu);
	notify_calls++;
	if (notify_writer != NULL) {
		struct writer_stats s;
		writer_get_stats(notify_writer, &s);
		if (s.batches < notify_calls)
			notify_bad++;
	}
	pthread_mutex_unlock(&notify_mu);
}

static struct writer *start(void)
{
	struct writer *w = NULL;
	cr_assert_eq(writer_start(&w, st, NULL, notify_cb, NULL), 0);
	cr_assert_not_null(w);
	pthread_mutex_lock(&notify_mu);
	notify_writer = w;
	pthread_mutex_unlock(&notify_mu);
	return w;
}

static void stop(struct writer *w)
{
	writer_stop(w);
	pthread_mutex_lock(&notify_mu);
	notify_writer = NULL;
	pthread_mutex_unlock(&notify_mu);
}

/* An operation that writes nkeys keys "k<id>.<j>" of value_len bytes each
 * into the meta database, optionally sleeping first, and then answers
 * fail. */
struct test_op {
	struct writer_op op; /* first: the writer hands this back */
	unsigned id;
	unsigned nkeys;
	size_t value_len;
	int fail;
	unsigned sleep_ms;
	atomic_int runs;
	atomic_bool started;
};

static void key_of(unsigned id, unsigned j, char *out, size_t outlen)
{
	snprintf(out, outlen, "k%06u.%u", id, j);
}

static uint8_t value_byte(unsigned id, unsigned j, size_t i)
{
	return (uint8_t)(id * 7 + j * 3 + i);
}

static int test_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct test_op *op = (struct test_op *)base;
	atomic_fetch_add(&op->runs, 1);
	atomic_store(&op->started, true);
	if (op->sleep_ms > 0) {
		struct timespec ts = {0, (long)op->sleep_ms * 1000000L};
		nanosleep(&ts, NULL);
	}
	uint8_t *val = malloc(op->value_len > 0 ? op->value_len : 1);
	if (val == NULL)
		return WB_E_NOMEM;
	int rc = 0;
	for (unsigned j = 0; j < op->nkeys && rc == 0; j++) {
		char key[32];
		key_of(op->id, j, key, sizeof(key));
		for (size_t i = 0; i < op->value_len; i++)
			val[i] = value_byte(op->id, j, i);
		rc = storage_put(txn, STORAGE_DB_META, (struct storage_val){key, strlen(key)},
		                 (struct storage_val){val, op->value_len}, 0);
	}
	free(val);
	if (rc != 0)
		return rc;
	return op->fail;
}

static struct test_op *new_ops(size_t n, unsigned nkeys, size_t value_len)
{
	struct test_op *ops = calloc(n, sizeof(*ops));
	cr_assert_not_null(ops);
	for (size_t i = 0; i < n; i++) {
		ops[i].op.apply = test_apply;
		ops[i].op.size_hint = nkeys * (value_len + 64);
		ops[i].id = (unsigned)i;
		ops[i].nkeys = nkeys;
		ops[i].value_len = value_len;
	}
	return ops;
}

/* Takes every finished op and checks they come back in submission order,
 * continuing from *next. */
static size_t take_in_order(struct writer *w, struct test_op *ops, size_t *next)
{
	size_t n = 0;
	for (struct writer_op *op = writer_take_done(w); op != NULL; op = op->next) {
		cr_assert_eq(op, &ops[*next].op, "op %u came back where op %zu belongs",
		             ((struct test_op *)op)->id, *next);
		(*next)++;
		n++;
	}
	return n;
}

/* Returns true when every key of op is stored with the right bytes, false
 * when none is; fails the test for anything in between. */
static bool op_stored(const struct test_op *op)
{
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(st, NULL, STORAGE_RDONLY, &t), 0);
	unsigned found = 0;
	for (unsigned j = 0; j < op->nkeys; j++) {
		char key[32];
		struct storage_val v;
		key_of(op->id, j, key, sizeof(key));
		int rc =
		        storage_get(t, STORAGE_DB_META, (struct storage_val){key, strlen(key)}, &v);
		if (rc == WB_E_NOTFOUND)
			continue;
		cr_assert_eq(rc, 0);
		cr_assert_eq(v.len, op->value_len);
		const uint8_t *p = v.data;
		for (size_t i = 0; i < v.len; i++)
			cr_assert_eq(p[i], value_byte(op->id, j, i), "op %u key %u byte %zu",
			             op->id, j, i);
		found++;
	}
	storage_txn_abort(t);
	cr_assert(found == 0 || found == op->nkeys, "op %u: %u of %u keys stored", op->id, found,
	          op->nkeys);
	return found == op->nkeys && op->nkeys > 0;
}

static void wait_started(struct test_op *op)
{
	struct timespec ts = {0, 1000000L};
	for (int i = 0; i < 10000 && !atomic_load(&op->started); i++)
		nanosleep(&ts, NULL);
	cr_assert(atomic_load(&op->started), "the writer never ran the first op");
}

/* ------------------------------------------------------------------ tests */

Test(writer, ops_commit_and_come_back_in_order_with_their_status)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(20, 3, 100);
	for (size_t i = 0; i < 20; i++) {
		if (i % 5 == 3)
			ops[i].fail = WB_WRONG_EXPECTED_VERSION;
		writer_submit(w, &ops[i].op);
	}
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 20);
	cr_assert_null(writer_take_done(w), "ops come back once");
	for (size_t i = 0; i < 20; i++) {
		cr_assert_eq(ops[i].op.status, ops[i].fail, "op %zu: status %d", i,
		             ops[i].op.status);
		cr_assert_eq(op_stored(&ops[i]), ops[i].fail == 0, "op %zu", i);
	}
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.ops, 20);
	cr_assert_geq(s.batches, 1);
	cr_assert_leq(s.ops_max, 20);
	stop(w);
	free(ops);
}

/* A failing op between two good ones in the same batch: the batch is held
 * together by a first op that sleeps while the rest queue up. */
Test(writer, a_failing_op_does_not_affect_its_batch_neighbours)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(5, 4, 50);
	ops[0].sleep_ms = 100;
	ops[2].fail = WB_IDEMPOTENCY_CONFLICT;
	ops[3].fail = WB_E_INVAL;
	writer_submit(w, &ops[0].op);
	wait_started(&ops[0]);
	for (size_t i = 1; i < 5; i++)
		writer_submit(w, &ops[i].op);
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.batches, 2, "ops 1-4 were meant to share one batch");
	cr_assert_eq(s.ops_max, 4);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 5);
	cr_assert_eq(ops[1].op.status, 0);
	cr_assert_eq(ops[2].op.status, WB_IDEMPOTENCY_CONFLICT);
	cr_assert_eq(ops[3].op.status, WB_E_INVAL);
	cr_assert_eq(ops[4].op.status, 0);
	cr_assert(op_stored(&ops[0]));
	cr_assert(op_stored(&ops[1]));
	cr_assert_not(op_stored(&ops[2]), "the failing op's keys were committed");
	cr_assert_not(op_stored(&ops[3]), "the failing op's keys were committed");
	cr_assert(op_stored(&ops[4]));
	stop(w);
	free(ops);
}

Test(writer, ops_submitted_while_busy_are_batched)
{
	open_store(0);
	struct writer *w = start();
	const size_t n = 200;
	struct test_op *ops = new_ops(n, 1, 16);
	ops[0].sleep_ms = 200;
	writer_submit(w, &ops[0].op);
	wait_started(&ops[0]);
	for (size_t i = 1; i < n; i++)
		writer_submit(w, &ops[i].op);
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.ops, n);
	cr_assert_lt(s.batches, n, "no batching: %llu batches for %zu ops",
	             (unsigned long long)s.batches, n);
	cr_assert_leq(s.batches, 3, "%llu batches", (unsigned long long)s.batches);
	cr_assert_geq(s.ops_max, n / 2);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ops[i].op.status, 0);
		cr_assert_eq(atomic_load(&ops[i].runs), 1, "op %zu ran %d times", i,
		             atomic_load(&ops[i].runs));
		cr_assert(op_stored(&ops[i]));
	}
	stop(w);
	free(ops);
}

Test(writer, done_ops_keep_submission_order_across_takes)
{
	open_store(0);
	struct writer *w = start();
	const size_t n = 300;
	struct test_op *ops = new_ops(n, 1, 8);
	size_t next = 0;
	for (size_t i = 0; i < n; i++) {
		writer_submit(w, &ops[i].op);
		if (i % 37 == 0)
			take_in_order(w, ops, &next);
	}
	writer_drain(w);
	take_in_order(w, ops, &next);
	cr_assert_eq(next, n);
	stop(w);
	free(ops);
}

/* The map starts at 1 MiB and the ops write 8 MiB in all. Without size
 * hints only the full-map path (abort, grow, rerun) can make room; with them
 * the writer grows before the batch. */
static void fill_tiny_map(size_t hint_per_op)
{
	open_store(1 * MIB);
	struct storage_stats before;
	cr_assert_eq(storage_stats(st, &before), 0);
	cr_assert_leq(before.map_size, 1 * MIB);
	struct writer *w = start();
	const size_t n = 128;
	struct test_op *ops = new_ops(n, 4, 16 * KIB);
	for (size_t i = 0; i < n; i++) {
		ops[i].op.size_hint = hint_per_op;
		writer_submit(w, &ops[i].op);
	}
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_gt(s.grows, 0);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	stop(w);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ops[i].op.status, 0, "op %zu: %s", i, wb_error_name(ops[i].op.status));
		cr_assert(op_stored(&ops[i]), "op %zu", i);
	}
	struct storage_stats after;
	cr_assert_eq(storage_stats(st, &after), 0);
	cr_assert_gt(after.map_size, 8 * MIB);
	cr_assert_gt(after.grow_count, 0);

	/* The data survive a reopen with the small configured size. */
	storage_close(st);
	open_store(1 * MIB);
	for (size_t i = 0; i < n; i += 17)
		cr_assert(op_stored(&ops[i]), "op %zu after reopen", i);
	free(ops);
}

Test(writer, full_map_grows_and_reruns_the_batch)
{
	fill_tiny_map(0);
}

Test(writer, size_hints_grow_the_map_before_the_batch)
{
	fill_tiny_map(4 * (16 * KIB + 64));
}

/* One op larger than the whole initial map. */
Test(writer, one_op_larger_than_the_map)
{
	open_store(1 * MIB);
	struct writer *w = start();
	struct test_op *ops = new_ops(2, 64, 64 * KIB);
	ops[0].op.size_hint = 0;
	ops[1].nkeys = 1;
	writer_submit(w, &ops[0].op);
	writer_submit(w, &ops[1].op);
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 2);
	stop(w);
	cr_assert_eq(ops[0].op.status, 0, "%s", wb_error_name(ops[0].op.status));
	cr_assert_eq(ops[1].op.status, 0);
	cr_assert(op_stored(&ops[0]));
	cr_assert(op_stored(&ops[1]));
	free(ops);
}

/* An op that reports a full map on every run: the writer grows a bounded
 * number of times, then fails the whole batch (none of it is durable), and
 * the next batch goes through. */
static int always_full(struct storage_txn *txn, struct writer_op *base)
{
	struct test_op *op = (struct test_op *)base;
	atomic_fetch_add(&op->runs, 1);
	(void)txn;
	return WB_E_MAPFULL;
}

Test(writer, a_batch_that_never_fits_fails_whole_and_the_writer_goes_on)
{
	open_store(1 * MIB);
	struct writer *w = start();
	struct test_op *ops = new_ops(4, 2, 100);
	ops[0].sleep_ms = 50;
	ops[2].op.apply = always_full;
	writer_submit(w, &ops[0].op);
	wait_started(&ops[0]);
	writer_submit(w, &ops[1].op);
	writer_submit(w, &ops[2].op);
	writer_drain(w);
	writer_submit(w, &ops[3].op);
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 4);
	struct writer_stats s;
	writer_get_stats(w, &s);
	stop(w);
	cr_assert_eq(s.batches, 3);
	cr_assert_eq(ops[0].op.status, 0);
	cr_assert(op_stored(&ops[0]));
	/* Op 1 shared the batch: it is not durable and must not say so. */
	cr_assert_eq(ops[1].op.status, WB_E_MAPFULL, "op 1: %s", wb_error_name(ops[1].op.status));
	cr_assert_not(op_stored(&ops[1]));
	cr_assert_eq(ops[2].op.status, WB_E_MAPFULL);
	int runs = atomic_load(&ops[2].runs);
	cr_assert_gt(runs, 1, "the batch was not retried after growing");
	cr_assert_leq(runs, 16, "%d runs: the grow-and-retry loop is not bounded", runs);
	cr_assert_eq(ops[3].op.status, 0);
	cr_assert(op_stored(&ops[3]));
	free(ops);
}

/* The loop reads the figures (for ServerStats) while the writer works; the
 * counters only grow. Run under -Db_sanitize=thread this also checks that
 * every counter is updated under the writer's lock. */
Test(writer, stats_can_be_read_while_batches_run)
{
	open_store(1 * MIB);
	struct writer *w = start();
	const size_t n = 64;
	struct test_op *ops = new_ops(n, 4, 16 * KIB);
	struct writer_stats prev = {0};
	for (size_t i = 0; i < n; i++) {
		/* Generous hints make the writer grow before batches. */
		ops[i].op.size_hint = 1 * MIB;
		writer_submit(w, &ops[i].op);
		for (int k = 0; k < 50; k++) {
			struct writer_stats s;
			writer_get_stats(w, &s);
			cr_assert_geq(s.batches, prev.batches);
			cr_assert_geq(s.ops, prev.ops);
			cr_assert_geq(s.grows, prev.grows);
			cr_assert_geq(s.commit_us_total, prev.commit_us_total);
			prev = s;
		}
	}
	writer_drain(w);
	writer_get_stats(w, &prev);
	cr_assert_eq(prev.ops, n);
	cr_assert_gt(prev.grows, 0);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	stop(w);
	free(ops);
}

Test(writer, drain_waits_for_every_submitted_op)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(10, 1, 8);
	for (size_t i = 0; i < 10; i++) {
		ops[i].sleep_ms = 10;
		writer_submit(w, &ops[i].op);
	}
	writer_drain(w);
	/* Everything is committed and visible to a new snapshot. */
	for (size_t i = 0; i < 10; i++)
		cr_assert(op_stored(&ops[i]), "op %zu not committed after drain", i);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.ops, 10);
	/* Draining an idle writer returns at once. */
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 10);
	stop(w);
	free(ops);
}

Test(writer, stop_with_nothing_queued)
{
	open_store(0);
	struct writer *w = start();
	cr_assert_null(writer_take_done(w));
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.batches, 0);
	cr_assert_eq(s.ops, 0);
	stop(w);
	cr_assert_eq(notify_calls, 0, "notify fired without a batch");
	writer_stop(NULL);
}

Test(writer, stop_runs_the_ops_queued_so_far)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(30, 1, 8);
	ops[0].sleep_ms = 50;
	for (size_t i = 0; i < 30; i++)
		writer_submit(w, &ops[i].op);
	stop(w);
	for (size_t i = 0; i < 30; i++) {
		cr_assert_eq(atomic_load(&ops[i].runs), 1, "op %zu ran %d times", i,
		             atomic_load(&ops[i].runs));
		cr_assert(op_stored(&ops[i]), "op %zu not committed by stop", i);
	}
	free(ops);
}

Test(writer, notify_fires_once_per_batch_after_it)
{
	open_store(0);
	struct writer *w = start();
	const size_t n = 100;
	struct test_op *ops = new_ops(n, 1, 8);
	/* A mix of single-op batches and larger ones. */
	for (size_t i = 0; i < n; i++) {
		if (i % 25 == 0)
			ops[i].sleep_ms = 20;
		writer_submit(w, &ops[i].op);
		if (i % 10 == 0)
			writer_drain(w);
	}
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	/* The notify of the last batch may still be running after drain;
	 * stop joins the thread. */
	stop(w);
	cr_assert_gt(s.batches, 1);
	cr_assert_eq(notify_calls, s.batches, "%llu notifies for %llu batches",
	             (unsigned long long)notify_calls, (unsigned long long)s.batches);
	cr_assert_eq(notify_bad, 0, "notify came before its batch was finished");
	free(ops);
}

/* ================================================================== log mode */

#define LOG_MAP (16 * MIB)
#define NEVER_MS (3600u * 1000u)        /* a checkpoint interval no test reaches */
#define NEVER_BYTES ((uint64_t)1 << 40) /* nor a checkpoint size */

/* The tests' record: put key = value into the meta database, then answer
 * fail (0, or a deterministic refusal such as WRONG_EXPECTED_VERSION that a
 * real command would have found). Body: u32 fail | bytes key | bytes value. */
#define REC_PUT 7
#define REC_PUT_VERSION 3

static struct wal *wl;

/* A transient failure (no memory, I/O) injected for one key by the apply of
 * the process that sets it. It is not in the record, so a restart's replay
 * does not meet it again, as with a real one. */
static char inject_key[32];
static int inject_rc;

static void setup_log(void)
{
	fixture_setup(&fx, "wlog");
	notify_writer = NULL;
	notify_calls = 0;
	notify_bad = 0;
	inject_key[0] = '\0';
	inject_rc = 0;
}

static void teardown_log(void)
{
	wal_close(wl);
	wl = NULL;
	storage_close(st);
	st = NULL;
	fixture_teardown(&fx);
}

TestSuite(writer_log, .init = setup_log, .fini = teardown_log);

static void log_key(unsigned id, char *out, size_t outlen)
{
	snprintf(out, outlen, "t/%06u", id);
}

static uint8_t log_byte(unsigned id, size_t i)
{
	return (uint8_t)(id * 31u + i * 7u + 1u);
}

/* Applies a put record: the replay function, and what every op's apply
 * runs on its own record. */
static int put_record(struct storage_txn *txn, uint16_t type, uint16_t version, const uint8_t *rec,
                      size_t len)
{
	if (type != REC_PUT || version != REC_PUT_VERSION)
		return WB_E_INVAL;
	struct rec_reader r = rec_reader(rec, len);
	uint32_t fail = rec_get_u32(&r);
	size_t klen, vlen;
	const uint8_t *key = rec_get_bytes(&r, &klen);
	const uint8_t *val = rec_get_bytes(&r, &vlen);
	if (!rec_ok(&r))
		return WB_E_INVAL;
	int rc = storage_put(txn, STORAGE_DB_META, (struct storage_val){key, klen},
	                     (struct storage_val){val, vlen}, 0);
	if (rc != 0)
		return rc;
	if (inject_rc != 0 && klen == strlen(inject_key) && memcmp(key, inject_key, klen) == 0)
		return inject_rc;
	return (int)fail;
}

/* A gate that an op's apply waits at, on the writer thread, after its put,
 * until the test opens it. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool entered, open;
};

static void gate_init(struct gate *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->entered = false;
	g->open = false;
}

static void gate_destroy(struct gate *g)
{
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->mu);
}

static void gate_pass(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->entered = true;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

/* Waits (at most 10 s) until an apply waits at g. */
static bool gate_wait_entered(struct gate *g)
{
	struct timespec ts = {0, 1000000L};
	for (int i = 0; i < 10000; i++) {
		pthread_mutex_lock(&g->mu);
		bool in = g->entered;
		pthread_mutex_unlock(&g->mu);
		if (in)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->mu);
}

struct log_op {
	struct writer_op op; /* first: the writer hands this back */
	unsigned id;
	size_t value_len;
	uint32_t fail;
	uint8_t *body; /* op.rec */
	struct gate *gate;
	atomic_int runs;
};

static int log_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct log_op *op = (struct log_op *)base;
	atomic_fetch_add(&op->runs, 1);
	int rc = put_record(txn, base->rec_type, base->rec_version, base->rec, base->rec_len);
	if (op->gate != NULL)
		gate_pass(op->gate);
	return rc;
}

/* (Re)encodes op's record: key t/<id>, value_len bytes, answer fail. */
static int log_op_init(struct log_op *op, unsigned id, size_t value_len, uint32_t fail)
{
	char key[32];
	log_key(id, key, sizeof(key));
	uint8_t *val = malloc(value_len > 0 ? value_len : 1);
	if (val == NULL)
		return WB_E_NOMEM;
	for (size_t i = 0; i < value_len; i++)
		val[i] = log_byte(id, i);
	struct rec_builder b = {0};
	rec_u32(&b, fail);
	rec_bytes(&b, key, strlen(key));
	rec_bytes(&b, val, value_len);
	free(val);
	uint8_t *body;
	size_t len;
	int rc = rec_out(&b, &body, &len);
	if (rc != 0)
		return rc;
	free(op->body);
	op->body = body;
	op->id = id;
	op->value_len = value_len;
	op->fail = fail;
	op->op.apply = log_apply;
	op->op.size_hint = len + 64;
	op->op.rec_type = REC_PUT;
	op->op.rec_version = REC_PUT_VERSION;
	op->op.rec = body;
	op->op.rec_len = len;
	return 0;
}

/* n ops t/0 .. t/<n-1>, answering 0; NULL when out of memory (the forked
 * children cannot assert). */
static struct log_op *log_ops_new(size_t n, size_t value_len)
{
	struct log_op *ops = calloc(n, sizeof(*ops));
	if (ops == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		atomic_init(&ops[i].runs, 0);
		if (log_op_init(&ops[i], (unsigned)i, value_len, 0) != 0) {
			for (size_t j = 0; j < i; j++)
				free(ops[j].body);
			free(ops);
			return NULL;
		}
	}
	return ops;
}

static struct log_op *log_ops(size_t n, size_t value_len)
{
	struct log_op *ops = log_ops_new(n, value_len);
	cr_assert_not_null(ops);
	return ops;
}

static void log_op_fail(struct log_op *op, uint32_t fail)
{
	cr_assert_eq(log_op_init(op, op->id, op->value_len, fail), 0);
}

static void log_ops_free(struct log_op *ops, size_t n)
{
	for (size_t i = 0; ops != NULL && i < n; i++)
		free(ops[i].body);
	free(ops);
}

/* Whether op's key holds exactly its value in a new snapshot of s (false:
 * absent); fails the test on any other value. */
static bool log_stored_in(struct storage *s, const struct log_op *op)
{
	char key[32];
	log_key(op->id, key, sizeof(key));
	struct storage_txn *t = fixture_txn(s, NULL, STORAGE_RDONLY);
	struct storage_val v;
	int rc = storage_get(t, STORAGE_DB_META, (struct storage_val){key, strlen(key)}, &v);
	bool found = rc == 0;
	if (found) {
		cr_assert_eq(v.len, op->value_len, "%s: %zu bytes stored", key, v.len);
		const uint8_t *p = v.data;
		for (size_t i = 0; i < v.len; i++)
			cr_assert_eq(p[i], log_byte(op->id, i), "%s byte %zu", key, i);
	} else {
		cr_assert_eq(rc, WB_E_NOTFOUND, "%s: %s", key, wb_strerror(rc));
	}
	storage_txn_abort(t);
	return found;
}

static bool log_stored(const struct log_op *op)
{
	return log_stored_in(st, op);
}

/* Every t/ key and value of the store, hashed (FNV-1a over lengths and
 * bytes), and how many there are. */
struct digest {
	uint64_t hash;
	uint64_t keys;
};

static void fnv(uint64_t *h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= 1099511628211u;
	}
}

static int state_digest(struct storage *s, struct digest *out)
{
	struct storage_txn *t;
	struct storage_cursor *c;
	int rc = storage_txn_begin(s, NULL, STORAGE_RDONLY, &t);
	if (rc != 0)
		return rc;
	rc = storage_cursor_open(t, STORAGE_DB_META, &c);
	if (rc != 0) {
		storage_txn_abort(t);
		return rc;
	}
	struct digest d = {14695981039346656037u, 0};
	struct storage_val k = {"t/", 2}, v;
	for (rc = storage_cursor_get(c, STORAGE_SET_RANGE, &k, &v);
	     rc == 0 && k.len >= 2 && memcmp(k.data, "t/", 2) == 0;
	     rc = storage_cursor_get(c, STORAGE_NEXT, &k, &v)) {
		uint64_t kl = k.len, vl = v.len;
		fnv(&d.hash, &kl, sizeof(kl));
		fnv(&d.hash, k.data, k.len);
		fnv(&d.hash, &vl, sizeof(vl));
		fnv(&d.hash, v.data, v.len);
		d.keys++;
	}
	storage_cursor_close(c);
	storage_txn_abort(t);
	if (rc != 0 && rc != WB_E_NOTFOUND)
		return rc;
	*out = d;
	return 0;
}

static struct digest digest_of_st(void)
{
	struct digest d;
	int rc = state_digest(st, &d);
	cr_assert_eq(rc, 0, "%s", wb_strerror(rc));
	return d;
}

static const struct storage_options LOG_STORE = {.map_size = LOG_MAP, .log_mode = true};

static void wal_dir(char *buf, size_t len)
{
	fixture_path(&fx, "wal", buf, len);
}

/* Opens the log-mode store at fx.root and its log at <root>/wal after the
 * store's checkpoint, in 1 MiB segments without spares, into st and wl. */
static void open_log(struct wal_open_info *info)
{
	char dir[FIXTURE_PATH_MAX];
	char err[256] = "";
	st = fixture_open(&fx, NULL, &LOG_STORE);
	wal_dir(dir, sizeof(dir));
	struct wal_options o = {.dir = dir, .segment_size = WAL_SEGMENT_MIN};
	int rc = wal_open(&wl, &o, storage_checkpoint_applied(st), info, err, sizeof(err));
	cr_assert_eq(rc, 0, "wal_open: %s (%s)", wb_strerror(rc), err);
}

static void close_log(void)
{
	wal_close(wl);
	wl = NULL;
	storage_close(st);
	st = NULL;
}

static void fatal_in_test(const char *what, int code)
{
	cr_assert_fail("writer fatal: %s: %s", what, wb_strerror(code));
	abort();
}

static struct writer *start_log(uint64_t checkpoint_bytes, uint64_t checkpoint_ms, bool unsafe_ack)
{
	struct writer_log log = {
	        .wal = wl,
	        .checkpoint_bytes = checkpoint_bytes,
	        .checkpoint_growth = NEVER_BYTES,
	        .checkpoint_ms = checkpoint_ms,
	        .unsafe_ack_before_sync = unsafe_ack,
	        .fatal = fatal_in_test,
	};
	struct writer *w = NULL;
	cr_assert_eq(writer_start(&w, st, &log, notify_cb, NULL), 0);
	cr_assert_not_null(w);
	return w;
}

/* Takes every finished op and checks submission order from *next. */
static size_t take_log(struct writer *w, struct log_op *ops, size_t *next)
{
	size_t n = 0;
	for (struct writer_op *op = writer_take_done(w); op != NULL; op = op->next) {
		cr_assert_eq(op, &ops[*next].op, "op %u came back where op %zu belongs",
		             ((struct log_op *)op)->id, *next);
		(*next)++;
		n++;
	}
	return n;
}

static unsigned count_segments(void)
{
	char dir[FIXTURE_PATH_MAX];
	wal_dir(dir, sizeof(dir));
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s", dir);
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".wal") == 0)
			n++;
	}
	closedir(d);
	return n;
}

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ forked children */

/* What a child sends back before it exits. */
#define CHILD_OPS_MAX 64
struct child_report {
	int failed_line; /* 0: every step of the child worked */
	int status[CHILD_OPS_MAX];
	size_t done;
	struct writer_stats stats;
	struct digest state;
};

/* Kept in statics so that what the child leaves behind at _exit() is still
 * reachable (valgrind follows the child). */
static struct storage *child_st;
static struct wal *child_wal;
static struct writer *child_w;
static struct log_op *child_ops;

#define CHILD_CHECK(r, cond)                                                                       \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			(r)->failed_line = __LINE__;                                               \
			return;                                                                    \
		}                                                                                  \
	} while (0)

/* Stops the child process, as the server's writer_fatal stops the server:
 * 42 says it stopped for the no-memory failure the test injected. */
static void child_fatal(const char *what, int code)
{
	(void)what;
	_exit(code == WB_E_NOMEM ? 42 : 43);
}

static int child_open(const struct writer_log *tmpl)
{
	char dir[FIXTURE_PATH_MAX + 8], err[256];
	struct storage_options so = LOG_STORE;
	so.path = fx.root;
	int rc = storage_open(&child_st, &so, err, sizeof(err));
	if (rc != 0)
		return rc;
	snprintf(dir, sizeof(dir), "%s/wal", fx.root);
	struct wal_options o = {.dir = dir, .segment_size = WAL_SEGMENT_MIN};
	rc = wal_open(&child_wal, &o, storage_checkpoint_applied(child_st), NULL, err, sizeof(err));
	if (rc != 0)
		return rc;
	struct writer_log log = *tmpl;
	log.wal = child_wal;
	log.fatal = child_fatal;
	return writer_start(&child_w, child_st, &log, notify_cb, NULL);
}

/* Submits ops [from, to) of the child, draining after every `group`. */
static void child_submit(size_t from, size_t to, size_t group)
{
	for (size_t i = from; i < to; i++) {
		writer_submit(child_w, &child_ops[i].op);
		if ((i + 1 - from) % group == 0)
			writer_drain(child_w);
	}
	writer_drain(child_w);
}

/* Takes the child's finished ops into the report, then its figures and the
 * store's state. */
static void child_finish(struct child_report *r)
{
	for (struct writer_op *op = writer_take_done(child_w); op != NULL; op = op->next) {
		if (r->done < CHILD_OPS_MAX)
			r->status[r->done] = op->status;
		r->done++;
	}
	writer_get_stats(child_w, &r->stats);
	CHILD_CHECK(r, state_digest(child_st, &r->state) == 0);
}

/* Runs body in a child that exits right after it without stopping the
 * writer or closing anything: a killed process. Returns whether the report
 * came back; *status is waitpid's. */
static bool run_child(void (*body)(struct child_report *), struct child_report *rep, int *status)
{
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		alarm(fixture_under_valgrind() ? 300 : 60); /* a hang is a failure */
		struct child_report r;
		memset(&r, 0, sizeof(r));
		body(&r);
		ssize_t n = write(pfd[1], &r, sizeof(r));
		_exit(n == (ssize_t)sizeof(r) ? 0 : 2);
	}
	close(pfd[1]);
	memset(rep, 0, sizeof(*rep));
	size_t got = 0;
	while (got < sizeof(*rep)) {
		ssize_t n = read(pfd[0], (char *)rep + got, sizeof(*rep) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(pfd[0]);
	cr_assert_eq(waitpid(pid, status, 0), pid);
	return got == sizeof(*rep);
}

static void assert_child_exited(int status, int code)
{
	cr_assert(WIFEXITED(status), "the child did not exit (signal %d)",
	          WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	cr_assert_eq(WEXITSTATUS(status), code, "the child exited %d, not %d", WEXITSTATUS(status),
	             code);
}

/* ------------------------------------------------------------ tests */

/* Each op's record goes into the log and the op is applied from it; the
 * log's sequence, the writer's applied_seq and log_bytes follow the ops;
 * a clean stop checkpoints everything, and a restarted writer continues the
 * sequence. */
Test(writer_log, ops_are_logged_then_applied_and_the_sequence_follows_them)
{
	struct wal_open_info info;
	open_log(&info);
	cr_assert_eq(info.last_seq, 0);
	struct writer *w = start_log(NEVER_BYTES, NEVER_MS, false);
	const size_t n = 10;
	struct log_op *ops = log_ops(n + 3, 100);
	uint64_t bytes = 0;
	size_t next = 0;
	for (size_t i = 0; i < n; i++) {
		bytes += ops[i].op.rec_len;
		writer_submit(w, &ops[i].op);
		if (i == 4) {
			writer_drain(w);
			struct writer_stats s;
			writer_get_stats(w, &s);
			cr_assert_eq(s.applied_seq, 5);
			cr_assert_eq(wal_last_seq(wl), 5);
		}
	}
	writer_drain(w);
	cr_assert_eq(take_log(w, ops, &next), n);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(wal_last_seq(wl), n, "the log holds %llu records for %zu ops",
	             (unsigned long long)wal_last_seq(wl), n);
	cr_assert_eq(s.applied_seq, n);
	cr_assert_eq(s.ops, n);
	cr_assert_eq(s.log_bytes, bytes, "log_bytes %llu, records %llu",
	             (unsigned long long)s.log_bytes, (unsigned long long)bytes);
	cr_assert_eq(s.checkpoints, 0);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ops[i].op.status, 0, "op %zu: %s", i, wb_error_name(ops[i].op.status));
		cr_assert_eq(atomic_load(&ops[i].runs), 1, "op %zu ran %d times", i,
		             atomic_load(&ops[i].runs));
		cr_assert(log_stored(&ops[i]), "op %zu", i);
	}
	writer_stop(w);
	cr_assert_eq(storage_checkpoint_applied(st), n, "a clean stop checkpoints every record");

	/* A reopen finds everything in the checkpoint and nothing to replay. */
	close_log();
	open_log(&info);
	cr_assert_eq(storage_checkpoint_applied(st), n);
	cr_assert_eq(info.last_seq, n);
	cr_assert_eq(info.records, 0);
	for (size_t i = 0; i < n; i++)
		cr_assert(log_stored(&ops[i]), "op %zu after reopen", i);

	w = start_log(NEVER_BYTES, NEVER_MS, false);
	writer_get_stats(w, &s);
	cr_assert_eq(s.applied_seq, n, "a new writer starts at the log's last record");
	for (size_t i = n; i < n + 3; i++)
		writer_submit(w, &ops[i].op);
	writer_drain(w);
	cr_assert_eq(take_log(w, ops, &next), 3);
	writer_get_stats(w, &s);
	cr_assert_eq(s.applied_seq, n + 3);
	cr_assert_eq(wal_last_seq(wl), n + 3);
	cr_assert(log_stored(&ops[n + 2]));
	writer_stop(w);
	log_ops_free(ops, n + 3);
}

/* Nothing of a batch is visible before the batch comes back: while an op of
 * a batch waits on the writer thread (after its own put, and after the put
 * of the op before it), a reader sees neither put, nor applied_seq move;
 * the previous batch is visible. */
Test(writer_log, a_batch_is_invisible_until_it_is_done)
{
	open_log(NULL);
	struct writer *w = start_log(NEVER_BYTES, NEVER_MS, false);
	struct log_op *ops = log_ops(4, 32);
	struct gate first, middle;
	gate_init(&first);
	gate_init(&middle);
	ops[0].gate = &first;
	ops[2].gate = &middle;

	writer_submit(w, &ops[0].op);
	cr_assert(gate_wait_entered(&first), "the writer never ran op 0");
	cr_assert_not(log_stored(&ops[0]), "op 0 is visible while its batch is applied");
	for (size_t i = 1; i < 4; i++)
		writer_submit(w, &ops[i].op);
	gate_open(&first);

	cr_assert(gate_wait_entered(&middle), "the writer never ran op 2");
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.applied_seq, 1);
	cr_assert_eq(s.batches, 1);
	cr_assert(log_stored(&ops[0]), "the first batch is done but not visible");
	cr_assert_not(log_stored(&ops[1]), "op 1 is visible while its batch is applied");
	cr_assert_not(log_stored(&ops[2]), "op 2 is visible while its batch is applied");
	gate_open(&middle);

	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_log(w, ops, &next), 4);
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(ops[i].op.status, 0);
		cr_assert(log_stored(&ops[i]), "op %zu is done but not visible", i);
	}
	writer_get_stats(w, &s);
	cr_assert_eq(s.batches, 2, "ops 1-3 were meant to share a batch");
	cr_assert_eq(s.ops_max, 3);
	cr_assert_eq(s.applied_seq, 4);
	writer_stop(w);
	gate_destroy(&first);
	gate_destroy(&middle);
	log_ops_free(ops, 4);
}

/* A batch of three whose middle op puts and then refuses: the batch runs
 * flat (ops 1 and 2 run, op 2 fails, op 3 never runs), then nested (all
 * three run once more); op 2 leaves nothing, ops 1 and 3 commit, and the
 * refused op's record is logged all the same (applying it again refuses it
 * again). A batch without a failure runs flat only: each op once. */
Test(writer_log, a_refused_op_leaves_nothing_and_its_neighbours_commit)
{
	open_log(NULL);
	struct writer *w = start_log(NEVER_BYTES, NEVER_MS, false);
	struct log_op *ops = log_ops(7, 48);
	log_op_fail(&ops[2], WB_WRONG_EXPECTED_VERSION);
	struct gate g1, g2;
	gate_init(&g1);
	gate_init(&g2);
	ops[0].gate = &g1;
	ops[4].gate = &g2;

	writer_submit(w, &ops[0].op);
	cr_assert(gate_wait_entered(&g1));
	for (size_t i = 1; i < 4; i++)
		writer_submit(w, &ops[i].op);
	gate_open(&g1);
	writer_drain(w);

	writer_submit(w, &ops[4].op);
	cr_assert(gate_wait_entered(&g2));
	for (size_t i = 5; i < 7; i++)
		writer_submit(w, &ops[i].op);
	gate_open(&g2);
	writer_drain(w);

	size_t next = 0;
	cr_assert_eq(take_log(w, ops, &next), 7);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.batches, 4, "%llu batches", (unsigned long long)s.batches);
	cr_assert_eq(s.ops_max, 3);
	cr_assert_eq(s.applied_seq, 7, "every record is logged, the refused one too");
	cr_assert_eq(s.reruns, 1, "one batch ran again nested: %llu", (unsigned long long)s.reruns);

	cr_assert_eq(ops[1].op.status, 0);
	cr_assert_eq(ops[2].op.status, WB_WRONG_EXPECTED_VERSION);
	cr_assert_eq(ops[3].op.status, 0);
	cr_assert_eq(atomic_load(&ops[1].runs), 2, "op 1: flat, then nested");
	cr_assert_eq(atomic_load(&ops[2].runs), 2, "op 2: flat, then nested");
	cr_assert_eq(atomic_load(&ops[3].runs), 1, "op 3: nested only");
	cr_assert(log_stored(&ops[1]));
	cr_assert_not(log_stored(&ops[2]), "the refused op's put was committed");
	cr_assert(log_stored(&ops[3]));
	for (size_t i = 4; i < 7; i++) {
		cr_assert_eq(ops[i].op.status, 0);
		cr_assert_eq(atomic_load(&ops[i].runs), 1, "op %zu ran %d times", i,
		             atomic_load(&ops[i].runs));
		cr_assert(log_stored(&ops[i]));
	}
	writer_stop(w);
	gate_destroy(&g1);
	gate_destroy(&g2);
	log_ops_free(ops, 7);
}

/* The crash: a child runs a live writer over 40 records in batches (record
 * 13 refused), reports the state it produced and exits without a stop, so
 * nothing after the store's first checkpoint (applied 0) is checkpointed. */
#define CRASH_OPS 40
#define CRASH_REFUSED 13

static struct log_op *crash_ops(void)
{
	struct log_op *ops = log_ops_new(CRASH_OPS + 1, 40);
	if (ops != NULL &&
	    log_op_init(&ops[CRASH_REFUSED], CRASH_REFUSED, 40, WB_WRONG_EXPECTED_VERSION) != 0) {
		log_ops_free(ops, CRASH_OPS + 1);
		ops = NULL;
	}
	return ops;
}

static void crash_child(struct child_report *r)
{
	struct writer_log log = {.checkpoint_bytes = NEVER_BYTES,
	                         .checkpoint_growth = NEVER_BYTES,
	                         .checkpoint_ms = NEVER_MS};
	CHILD_CHECK(r, child_open(&log) == 0);
	child_ops = crash_ops();
	CHILD_CHECK(r, child_ops != NULL);
	child_submit(0, CRASH_OPS, 8);
	child_finish(r);
}

struct log_check {
	struct log_op *ops;
	uint64_t seen;
	int bad_line;
};

/* Checks that the log holds each op's record, byte for byte, in order. */
static int log_check_cb(void *arg, const struct wal_record *rec)
{
	struct log_check *c = arg;
	const struct log_op *op = &c->ops[c->seen];
	c->seen++;
	if (rec->seq != c->seen)
		c->bad_line = __LINE__;
	else if (rec->type != REC_PUT || rec->version != REC_PUT_VERSION)
		c->bad_line = __LINE__;
	else if (rec->len != op->op.rec_len || memcmp(rec->body, op->op.rec, rec->len) != 0)
		c->bad_line = __LINE__;
	return c->bad_line != 0 ? WB_E_CORRUPT : 0;
}

Test(writer_log, replay_after_a_crash_rebuilds_what_the_live_writer_made)
{
	struct child_report rep;
	int status;
	cr_assert(run_child(crash_child, &rep, &status), "no report from the child");
	assert_child_exited(status, 0);
	cr_assert_eq(rep.failed_line, 0, "the child failed at line %d", rep.failed_line);
	cr_assert_eq(rep.done, CRASH_OPS);
	for (size_t i = 0; i < CRASH_OPS; i++)
		cr_assert_eq(rep.status[i], i == CRASH_REFUSED ? WB_WRONG_EXPECTED_VERSION : 0,
		             "op %zu: %s", i, wb_error_name(rep.status[i]));
	cr_assert_eq(rep.stats.applied_seq, CRASH_OPS);
	cr_assert_eq(rep.state.keys, CRASH_OPS - 1);

	/* The restart: the store opens at its checkpoint, which has none of
	 * the child's commits, and the log has every record, byte for byte. */
	struct wal_open_info info;
	open_log(&info);
	cr_assert_eq(storage_checkpoint_applied(st), 0);
	cr_assert_eq(digest_of_st().keys, 0, "commits after the checkpoint survived the crash");
	cr_assert_eq(info.last_seq, CRASH_OPS);
	cr_assert_eq(info.records, CRASH_OPS);
	struct log_op *ops = crash_ops();
	cr_assert_not_null(ops);
	struct log_check check = {.ops = ops};
	cr_assert_eq(wal_replay(wl, log_check_cb, &check), 0, "record %llu differs (line %d)",
	             (unsigned long long)check.seen, check.bad_line);
	cr_assert_eq(check.seen, CRASH_OPS);

	uint64_t records = 0;
	char err[256] = "";
	int rc = writer_replay(st, wl, put_record, &records, err, sizeof(err));
	cr_assert_eq(rc, 0, "writer_replay: %s (%s)", wb_strerror(rc), err);
	cr_assert_eq(records, CRASH_OPS);
	struct digest d = digest_of_st();
	cr_assert_eq(d.keys, rep.state.keys);
	cr_assert_eq(d.hash, rep.state.hash, "the replayed state differs from the live one");
	cr_assert_not(log_stored(&ops[CRASH_REFUSED]), "the refused record left its put");
	cr_assert(log_stored(&ops[CRASH_REFUSED + 1]));
	cr_assert_eq(storage_checkpoint_applied(st), CRASH_OPS, "replay ends with a checkpoint");

	/* The writer goes on after the replayed records. */
	struct writer *w = start_log(NEVER_BYTES, NEVER_MS, false);
	writer_submit(w, &ops[CRASH_OPS].op);
	writer_drain(w);
	size_t next = CRASH_OPS;
	cr_assert_eq(take_log(w, ops, &next), 1);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.applied_seq, CRASH_OPS + 1);
	writer_stop(w);
	log_ops_free(ops, CRASH_OPS + 1);
}

/* Writes ops' records to the log as one batch, durable, and nothing to the
 * store: what a crash between the log's fdatasync and the commit leaves. */
static void log_only(struct log_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(wal_add(wl, ops[i].op.rec_type, ops[i].op.rec_version, ops[i].op.rec,
		                     ops[i].op.rec_len, NULL),
		             0);
	cr_assert_eq(wal_write(wl), 0);
	cr_assert_eq(wal_sync(wl), 0);
}

static void replay_fails_naming(unsigned failing_id, int code, uint64_t seq, struct log_op *ops,
                                size_t n)
{
	struct wal_open_info info;
	close_log();
	open_log(&info);
	cr_assert_eq(storage_checkpoint_applied(st), 0);
	cr_assert_eq(info.records, n, "the log lost records after a failed replay");
	for (size_t i = 0; i < n; i++)
		cr_assert_not(log_stored(&ops[i]), "op %zu survived a failed replay", i);
	log_key(failing_id, inject_key, sizeof(inject_key));
	inject_rc = code;
	uint64_t records = 12345;
	char err[256] = "";
	int rc = writer_replay(st, wl, put_record, &records, err, sizeof(err));
	cr_assert_eq(rc, code, "writer_replay: %s (%s)", wb_strerror(rc), err);
	char want[32];
	snprintf(want, sizeof(want), "record %llu ", (unsigned long long)seq);
	cr_assert_not_null(strstr(err, want), "the message does not name %s: %s", want, err);
	cr_assert_eq(records, 12345, "*records written on failure");
	cr_assert_eq(storage_checkpoint_applied(st), 0, "a failed replay checkpointed");
	inject_rc = 0;
	inject_key[0] = '\0';
}

/* A record refused at replay (as it was live) is skipped and the replay
 * succeeds; a record whose apply fails for no memory or an I/O error fails
 * the replay with a message naming its sequence, checkpoints nothing, and a
 * later start replays the whole log again. */
Test(writer_log, replay_skips_a_refused_record_and_fails_on_a_transient_error)
{
	open_log(NULL);
	struct log_op *ops = log_ops(5, 24);
	log_op_fail(&ops[1], WB_WRONG_EXPECTED_VERSION);
	log_only(ops, 5);

	replay_fails_naming(2, WB_E_NOMEM, 3, ops, 5);
	replay_fails_naming(3, WB_E_IO, 4, ops, 5);

	struct wal_open_info info;
	close_log();
	open_log(&info);
	cr_assert_eq(info.records, 5);
	uint64_t records = 0;
	char err[256] = "";
	int rc = writer_replay(st, wl, put_record, &records, err, sizeof(err));
	cr_assert_eq(rc, 0, "writer_replay: %s (%s)", wb_strerror(rc), err);
	cr_assert_eq(records, 5);
	for (size_t i = 0; i < 5; i++)
		cr_assert_eq(log_stored(&ops[i]), i != 1, "op %zu", i);
	cr_assert_eq(storage_checkpoint_applied(st), 5);
	close_log();
	open_log(&info);
	cr_assert_eq(info.records, 0, "the replay's checkpoint did not release the log");
	cr_assert(log_stored(&ops[4]));
	log_ops_free(ops, 5);
}

/* Checkpoints by size: a child writes about 8 MiB of records through a
 * writer that checkpoints every 64 KiB of log, then is killed. The writer
 * checkpointed on its own, released the 1 MiB segments behind the
 * checkpoints (at most the one being written and the one before it are
 * left), and the restart finds a checkpoint past the start of the log and
 * replays only what follows it, to the live state. */
#define BIG_OPS 64
#define BIG_VALUE (128 * KIB)

static void checkpoint_child(struct child_report *r)
{
	struct writer_log log = {.checkpoint_bytes = 64 * KIB,
	                         .checkpoint_growth = NEVER_BYTES,
	                         .checkpoint_ms = NEVER_MS};
	CHILD_CHECK(r, child_open(&log) == 0);
	child_ops = log_ops_new(BIG_OPS, BIG_VALUE);
	CHILD_CHECK(r, child_ops != NULL);
	child_submit(0, BIG_OPS, 4);
	child_finish(r);
}

Test(writer_log, checkpoints_by_size_release_the_log_and_bound_the_replay)
{
	struct child_report rep;
	int status;
	cr_assert(run_child(checkpoint_child, &rep, &status), "no report from the child");
	assert_child_exited(status, 0);
	cr_assert_eq(rep.failed_line, 0, "the child failed at line %d", rep.failed_line);
	cr_assert_eq(rep.done, BIG_OPS);
	for (size_t i = 0; i < BIG_OPS; i++)
		cr_assert_eq(rep.status[i], 0, "op %zu: %s", i, wb_error_name(rep.status[i]));
	cr_assert_gt(rep.stats.log_bytes, 8 * MIB);
	cr_assert_gt(rep.stats.checkpoints, 0, "no checkpoint after %llu bytes of log",
	             (unsigned long long)rep.stats.log_bytes);
	/* Without releases every segment the log filled would be kept. How
	 * many are kept is timing: the one being written, and those that the
	 * checkpoint running at the end had not yet released (with 4 MiB of
	 * log, a slow checkpoint under ASan once left all four). */
	unsigned segs = count_segments();
	unsigned filled = (unsigned)(rep.stats.log_bytes / (WAL_SEGMENT_MIN - WAL_SEGMENT_HEADER));
	cr_assert_lt(segs, filled, "%u segments of 1 MiB kept for %llu bytes of log", segs,
	             (unsigned long long)rep.stats.log_bytes);

	struct wal_open_info info;
	open_log(&info);
	uint64_t applied = storage_checkpoint_applied(st);
	cr_assert_gt(applied, 0, "the live checkpoints did not advance the store's checkpoint");
	cr_assert_gt(info.first_seq, 1, "the log still starts at record 1");
	cr_assert_eq(info.last_seq, BIG_OPS);
	cr_assert_eq(info.records, BIG_OPS - applied);
	uint64_t records = 0;
	char err[256] = "";
	int rc = writer_replay(st, wl, put_record, &records, err, sizeof(err));
	cr_assert_eq(rc, 0, "writer_replay: %s (%s)", wb_strerror(rc), err);
	cr_assert_eq(records, BIG_OPS - applied);
	struct digest d = digest_of_st();
	cr_assert_eq(d.keys, BIG_OPS);
	cr_assert_eq(d.hash, rep.state.hash, "the restarted state differs from the live one");
}

/* Checkpoints by time: a few records, then nothing; with an interval of
 * 100 ms the writer checkpoints them on its own within a bounded wait (the
 * idle writer's timed wait; on a very slow machine it may already be the
 * check after a batch), then takes no more while nothing new is logged, and
 * the store's checkpoint covers every record. */
Test(writer_log, an_idle_writer_checkpoints_after_the_interval)
{
	open_log(NULL);
	struct writer *w = start_log(NEVER_BYTES, 100, false);
	struct log_op *ops = log_ops(3, 16);
	for (size_t i = 0; i < 3; i++)
		writer_submit(w, &ops[i].op);
	writer_drain(w);
	struct writer_stats s;
	uint64_t t0 = ms_now();
	do {
		sleep_ms(20);
		writer_get_stats(w, &s);
	} while (s.checkpoints == 0 && ms_now() - t0 < 5000);
	cr_assert_gt(s.checkpoints, 0, "no checkpoint %llu ms after the last write",
	             (unsigned long long)(ms_now() - t0));
	uint64_t seen = s.checkpoints;
	sleep_ms(300);
	writer_get_stats(w, &s);
	cr_assert_eq(s.checkpoints, seen, "an idle writer with nothing new checkpointed again");
	/* Every checkpoint is counted (under the writer's lock) after it is
	 * saved, and none runs now: the store's figure can be read here. */
	cr_assert_eq(storage_checkpoint_applied(st), 3);
	size_t next = 0;
	cr_assert_eq(take_log(w, ops, &next), 3);
	writer_stop(w);
	log_ops_free(ops, 3);
}

/* Fail-stop: in a child, a record is logged and its apply then fails for
 * no memory. The record is durable, so the writer must not answer it with
 * an error: it calls fatal (the child exits 42). The restart replays the
 * record, which now applies. */
static void fatal_child(struct child_report *r)
{
	struct writer_log log = {.checkpoint_bytes = NEVER_BYTES,
	                         .checkpoint_growth = NEVER_BYTES,
	                         .checkpoint_ms = NEVER_MS};
	CHILD_CHECK(r, child_open(&log) == 0);
	child_ops = log_ops_new(2, 16);
	CHILD_CHECK(r, child_ops != NULL);
	child_submit(0, 1, 1);
	log_key(1, inject_key, sizeof(inject_key));
	inject_rc = WB_E_NOMEM;
	child_submit(1, 2, 1);
	child_finish(r); /* only when the writer answered instead of stopping */
}

Test(writer_log, a_durable_record_that_cannot_be_applied_stops_the_process)
{
	struct child_report rep;
	int status;
	bool reported = run_child(fatal_child, &rep, &status);
	cr_assert_not(reported && rep.done == 2 && rep.status[1] == WB_E_NOMEM,
	              "the durable record was answered with NOMEM");
	assert_child_exited(status, 42);
	cr_assert_not(reported);

	struct wal_open_info info;
	open_log(&info);
	cr_assert_eq(info.records, 2, "the failed op's record was not in the log");
	uint64_t records = 0;
	char err[256] = "";
	int rc = writer_replay(st, wl, put_record, &records, err, sizeof(err));
	cr_assert_eq(rc, 0, "writer_replay: %s (%s)", wb_strerror(rc), err);
	cr_assert_eq(records, 2);
	struct log_op *ops = log_ops(2, 16);
	cr_assert(log_stored(&ops[0]));
	cr_assert(log_stored(&ops[1]), "the restart did not apply the record");
	log_ops_free(ops, 2);
}

/* The same failure in sync mode is only an answer: nothing was durable
 * before the apply, so the op comes back with NOMEM, leaves nothing, and its
 * batch neighbours and the writer go on. */
Test(writer_log, in_sync_mode_a_failed_apply_is_only_an_answer)
{
	st = fixture_open(&fx, NULL, &(struct storage_options){.map_size = LOG_MAP});
	struct writer *w = NULL;
	cr_assert_eq(writer_start(&w, st, NULL, notify_cb, NULL), 0);
	struct log_op *ops = log_ops(4, 16);
	struct gate g;
	gate_init(&g);
	ops[0].gate = &g;
	log_key(2, inject_key, sizeof(inject_key));
	inject_rc = WB_E_NOMEM;
	writer_submit(w, &ops[0].op);
	cr_assert(gate_wait_entered(&g));
	for (size_t i = 1; i < 4; i++)
		writer_submit(w, &ops[i].op);
	gate_open(&g);
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_log(w, ops, &next), 4);
	writer_stop(w);
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(ops[i].op.status, i == 2 ? WB_E_NOMEM : 0, "op %zu: %s", i,
		             wb_error_name(ops[i].op.status));
		cr_assert_eq(log_stored(&ops[i]), i != 2, "op %zu", i);
	}
	gate_destroy(&g);
	log_ops_free(ops, 4);
}

/* The power-cut harness's negative control still works as a writer:
 * ops are logged, applied and answered, and a clean stop checkpoints them. */
Test(writer_log, unsafe_ack_before_sync_still_applies_and_answers)
{
	open_log(NULL);
	struct writer *w = start_log(NEVER_BYTES, NEVER_MS, true);
	const size_t n = 12;
	struct log_op *ops = log_ops(n, 64);
	size_t next = 0;
	for (size_t i = 0; i < n; i++) {
		writer_submit(w, &ops[i].op);
		if (i % 4 == 3)
			writer_drain(w);
	}
	writer_drain(w);
	cr_assert_eq(take_log(w, ops, &next), n);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.applied_seq, n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ops[i].op.status, 0);
		cr_assert(log_stored(&ops[i]));
	}
	writer_stop(w);
	struct wal_open_info info;
	close_log();
	open_log(&info);
	cr_assert_eq(storage_checkpoint_applied(st), n);
	cr_assert_eq(info.last_seq, n);
	for (size_t i = 0; i < n; i++)
		cr_assert(log_stored(&ops[i]));
	log_ops_free(ops, n);
}

/* A batch refused before its records are written (here: one record longer
 * than WAL_RECORD_MAX, which wal_add() refuses before reading it) leaves no
 * trace: whatever each op is answered, an op answered 0 is stored and
 * logged and any other is neither, and the figures count only what reached
 * the log (log_bytes: "record bodies logged"). The writer goes on after it,
 * continuing the log's sequence. */
Test(writer_log, a_batch_refused_before_the_log_counts_no_log_bytes)
{
	open_log(NULL);
	struct writer *w = start_log(NEVER_BYTES, NEVER_MS, false);
	struct log_op *ops = log_ops(4, 32);
	struct gate g;
	gate_init(&g);
	ops[0].gate = &g;
	ops[2].op.rec_len = (size_t)WAL_RECORD_MAX + 1; /* never read: refused on its length */

	writer_submit(w, &ops[0].op);
	cr_assert(gate_wait_entered(&g));
	writer_submit(w, &ops[1].op);
	writer_submit(w, &ops[2].op);
	gate_open(&g);
	writer_drain(w);
	writer_submit(w, &ops[3].op);
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_log(w, ops, &next), 4);

	cr_assert_eq(ops[0].op.status, 0);
	cr_assert_neq(ops[2].op.status, 0, "an unloggable record was answered 0");
	cr_assert_eq(ops[3].op.status, 0);
	uint64_t logged = 0, bytes = 0;
	for (size_t i = 0; i < 4; i++) {
		bool ok = ops[i].op.status == 0;
		cr_assert_eq(log_stored(&ops[i]), ok, "op %zu answered %s", i,
		             wb_error_name(ops[i].op.status));
		if (ok) {
			logged++;
			bytes += ops[i].op.rec_len;
		}
	}
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(wal_last_seq(wl), logged);
	cr_assert_eq(s.applied_seq, logged);
	/* Stopped before the last check, so that its failure leaves no
	 * writer thread running for valgrind to report. */
	writer_stop(w);
	gate_destroy(&g);
	log_ops_free(ops, 4);
	cr_assert_eq(s.log_bytes, bytes,
	             "log_bytes %llu, but the records that reached the log hold %llu bytes",
	             (unsigned long long)s.log_bytes, (unsigned long long)bytes);
}

/* ------------------------------------------------------------ writer_open_log */

enum { SCAN_OPS = 40000, SCAN_BATCH = 1000 };

/* The store's log filled with SCAN_OPS small records, over three or more
 * 1 MiB segments and nothing of them in the store; the log is closed. */
static struct log_op *scan_log(void)
{
	open_log(NULL);
	struct log_op *ops = log_ops(SCAN_OPS, 24);
	for (size_t i = 0; i < SCAN_OPS; i += SCAN_BATCH)
		log_only(ops + i, SCAN_BATCH);
	wal_close(wl);
	wl = NULL;
	return ops;
}

static int open_scanning(struct wal_open_info *info, uint64_t *records, char *err, size_t errlen)
{
	char dir[FIXTURE_PATH_MAX];
	wal_dir(dir, sizeof(dir));
	struct wal_options o = {.dir = dir, .segment_size = WAL_SEGMENT_MIN};
	return writer_open_log(st, &o, put_record, &wl, info, records, err, errlen);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The path of the log's second segment (by name: by first record). */
static void second_segment(char *out, size_t outlen)
{
	char dir[FIXTURE_PATH_MAX];
	char *names[64];
	size_t n = 0;
	wal_dir(dir, sizeof(dir));
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (strlen(e->d_name) == 20 && strcmp(e->d_name + 16, ".wal") == 0 && n < 64)
			names[n++] = strdup(e->d_name);
	closedir(d);
	cr_assert_geq(n, 3, "the records fill only %zu segments", n);
	qsort(names, n, sizeof(names[0]), cmp_names);
	snprintf(out, outlen, "%s/%s", dir, names[1]);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
}

/* writer_open_log() applies the records its scan walks past (one read of
 * the log) and takes no checkpoint: the log still holds them. */
Test(writer_log, open_log_replays_in_its_scan_without_a_checkpoint)
{
	struct log_op *ops = scan_log();
	struct wal_open_info info;
	uint64_t records = 0;
	char err[512] = "";
	int rc = open_scanning(&info, &records, err, sizeof(err));
	cr_assert_eq(rc, 0, "writer_open_log: %s (%s)", wb_strerror(rc), err);
	cr_assert_eq(records, SCAN_OPS);
	cr_assert_eq(info.records, SCAN_OPS);
	cr_assert_geq(info.segments, 3);
	for (size_t i = 0; i < SCAN_OPS; i += 997)
		cr_assert(log_stored(&ops[i]), "op %zu was not replayed", i);
	cr_assert(log_stored(&ops[SCAN_OPS - 1]));
	cr_assert_eq(storage_checkpoint_applied(st), 0, "the open took a checkpoint (of %llu)",
	             (unsigned long long)storage_checkpoint_applied(st));
	/* A crash now loses nothing: the log replays it all again. */
	close_log();
	open_log(&info);
	cr_assert_not(log_stored(&ops[0]));
	cr_assert_eq(info.records, SCAN_OPS);
	close_log();
	log_ops_free(ops, SCAN_OPS);
}

/* Damage in a segment before the last is found by the same scan, after it
 * handed on (and the store applied) the records before it: the open fails
 * naming the segment and offset, and the store, opened again, is back at
 * its checkpoint. */
Test(writer_log, open_log_fails_on_damage_and_the_store_returns_to_its_checkpoint)
{
	struct log_op *ops = scan_log();
	char seg[FIXTURE_PATH_MAX + 32];
	second_segment(seg, sizeof(seg));
	FILE *f = fopen(seg, "r+b");
	cr_assert_not_null(f);
	cr_assert_eq(fseek(f, WAL_SEGMENT_HEADER + 30, SEEK_SET), 0);
	int c = fgetc(f);
	cr_assert_eq(fseek(f, WAL_SEGMENT_HEADER + 30, SEEK_SET), 0);
	fputc(c ^ 0x40, f);
	cr_assert_eq(fclose(f), 0);

	uint64_t records = 12345;
	char err[1024] = "";
	int rc = open_scanning(NULL, &records, err, sizeof(err));
	cr_assert_eq(rc, WB_E_CORRUPT, "writer_open_log: %s (%s)", wb_strerror(rc), err);
	cr_assert_null(wl);
	cr_assert_eq(records, 12345, "*records written on failure");
	cr_assert_not_null(strstr(err, strrchr(seg, '/') + 1), "%s", err);
	cr_assert_not_null(strstr(err, "offset 4096"), "%s", err);
	/* The scan had handed the first segment's records on. */
	cr_assert(log_stored(&ops[0]), "nothing was applied before the damage");
	storage_close(st);
	st = fixture_open(&fx, NULL, &LOG_STORE);
	cr_assert_eq(storage_checkpoint_applied(st), 0);
	cr_assert_not(log_stored(&ops[0]), "what the failed open applied survived it");
	storage_close(st);
	st = NULL;
	log_ops_free(ops, SCAN_OPS);
}
