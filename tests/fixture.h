/* Unit-test fixtures: a temporary directory of the test's own under /tmp,
 * stores opened in it, and its removal at teardown; and the two helpers that
 * several unit tests share (valgrind detection, a seeded generator).
 *
 * These are for criterion tests: every function here fails the running test
 * (cr_assert, with the reason) instead of returning an error. Criterion runs
 * each test in its own process, so a suite keeps one struct fixture in a
 * static, calls fixture_setup() from its .init and fixture_teardown() from
 * its .fini:
 *
 *	static struct fixture fx;
 *	static struct storage *st;
 *
 *	static void setup(void)
 *	{
 *		fixture_setup(&fx, "events");
 *		st = fixture_open(&fx, NULL, &(struct storage_options){.map_size = 16u << 20});
 *	}
 *
 *	static void teardown(void)
 *	{
 *		storage_close(st);
 *		fixture_teardown(&fx);
 *	}
 *
 *	TestSuite(events, .init = setup, .fini = teardown);
 */
#ifndef WB_TEST_FIXTURE_H
#define WB_TEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

#define FIXTURE_PATH_MAX 128

struct fixture {
	/* The test's directory, "/tmp/wb-test-<tag>-XXXXXX" made unique; ""
	 * before fixture_setup() and after fixture_teardown(). */
	char root[FIXTURE_PATH_MAX];
};

/* Makes a new, empty directory /tmp/wb-test-<tag>-XXXXXX (mode 0700) and
 * writes its path into fx->root. Fails the test, with errno's reason, when
 * the directory cannot be made or tag is too long for fx->root. */
void fixture_setup(struct fixture *fx, const char *tag);

/* Removes fx->root and everything below it (links are removed, never
 * followed), then sets fx->root to "". Every store opened in it must be
 * closed first. Does nothing when fx->root is "" (fixture_setup() never ran
 * or failed). When something cannot be removed it logs the path and the
 * reason and exits the test process with a failure: criterion only prints an
 * assertion that fails in a .fini, and a directory left behind must fail the
 * run. */
void fixture_teardown(struct fixture *fx);

/* Writes "<fx->root>/<name>" into buf (len bytes) and returns buf. Fails the
 * test when the path does not fit. */
char *fixture_path(const struct fixture *fx, const char *name, char *buf, size_t len);

/* Opens a store with opts at <fx->root>/<name> (storage_open() makes that
 * directory), or at fx->root itself when name is NULL. opts->path must be
 * NULL: the fixture names the place. Keeps no reference to opts. Returns the
 * store, which the caller owns and closes with storage_close() before
 * fixture_teardown(). Fails the test with storage_open()'s error and message
 * when the store does not open. */
struct storage *fixture_open(const struct fixture *fx, const char *name,
                             const struct storage_options *opts);

/* A suite whose every test has a directory of its own, fx, and a store in
 * it, st, opened with *opts (which must outlive the suite) before the test
 * and closed (st may have been reopened) and removed after it:
 *
 *	static const struct storage_options STORE_OPTS = {.map_size = 16u << 20};
 *	FIXTURE_STORE_SUITE(events, &STORE_OPTS);
 *
 * declares the statics fx and st and the suite. */
#define FIXTURE_STORE_SUITE(suite, opts)                                                           \
	static struct fixture fx;                                                                  \
	static struct storage *st;                                                                 \
	static void suite##_setup(void)                                                            \
	{                                                                                          \
		fixture_setup(&fx, #suite);                                                        \
		st = fixture_open(&fx, NULL, (opts));                                              \
	}                                                                                          \
	static void suite##_teardown(void)                                                         \
	{                                                                                          \
		storage_close(st);                                                                 \
		st = NULL;                                                                         \
		fixture_teardown(&fx);                                                             \
	}                                                                                          \
	TestSuite(suite, .init = suite##_setup, .fini = suite##_teardown)

/* A transaction of st: a write transaction (a child of parent when parent
 * is not NULL) or, with flags STORAGE_RDONLY, a read-only one. Fails the
 * test when it cannot begin. */
struct storage_txn *fixture_txn(struct storage *st, struct storage_txn *parent, unsigned flags);

/* Commits t; fails the test unless that succeeds. */
void fixture_commit(struct storage_txn *t);

/* Whether the test runs under valgrind (its client request, or its preload
 * library in LD_PRELOAD when valgrind.h is not installed). Tests use it to
 * scale their work down, never to skip an assertion. */
bool fixture_under_valgrind(void);

/* The path of the repository's file rel ("docs/PROTOCOL.md") from the build
 * directory, found from this source file's path, into buf; returns buf. */
char *fixture_repo_path(const char *rel, char *buf, size_t len);

/* The text of the repository's file rel ("docs/PROTOCOL.md"), found from
 * this source file's path, so the build directory must be the working
 * directory (meson test makes it so); fails the test when it cannot be
 * read. The caller frees it. */
char *fixture_repo_text(const char *rel);

/* The number after "key:" on its line of a /proc file such as
 * /proc/self/io or /proc/PID/status ("rchar", "VmPeak"), or -1 when the file
 * or the line is missing. */
long long fixture_proc_number(const char *path, const char *key);

/* splitmix64: the next 64 bits of the sequence whose state is the uint64_t
 * at state (advanced). Distinct values for the first 2^64 calls and the same
 * run for the same seed, so a failure names a seed that replays it. The
 * signature is lease_rand_fn's, so it also serves as a lease table's token
 * source. */
uint64_t fixture_splitmix(void *state);

/* xorshift64*: the next 64 bits of the sequence whose state (never 0) is
 * *state (advanced). The generator of test_value's and test_eval's random
 * cases, kept so that their seeds still name the same cases. */
uint64_t fixture_xorshift(uint64_t *state);

/* ---------------------------------------------------------------- model walks */

/* What the model tests (test_lease_model.c, test_ledger_model.c) share: a
 * seeded random walk of steps, checked against a reference model after each
 * one, run from five seeds, with a failure message that names the seed, how
 * to replay it and the step. */

/* Where a walk is: its seed (base + offset), the offset its test adds (the
 * test walk_seed_<offset>) and the step it is at. */
struct fixture_walk {
	uint64_t seed;
	uint64_t seed_offset;
	unsigned long step;
};

/* Starts w at seed offset seed_offset from $WB_SEED when that is set (to
 * replay a failure: the messages name it), else from the clock; step 0.
 * Logs the seed with name ("lease model"). Returns w->seed. */
uint64_t fixture_walk_start(struct fixture_walk *w, const char *name, uint64_t seed_offset);

/* cr_assert(cond) with a message that starts with where walk w is. */
#define FIXTURE_WALK_CHECK(w, cond, fmt, ...)                                                      \
	cr_assert((cond), "seed %llu (replay: WB_SEED=%llu, test walk_seed_%llu) step %lu: " fmt,  \
	          (unsigned long long)(w).seed, (unsigned long long)((w).seed - (w).seed_offset),  \
	          (unsigned long long)(w).seed_offset, (w).step, __VA_ARGS__)

/* The five walks of a model suite: the tests walk_seed_0 .. walk_seed_4, in
 * which run(k) walks from seed offset k. (meson.build's negative controls
 * name walk_seed_0.) */
#define FIXTURE_WALK_TESTS(suite, run)                                                             \
	Test(suite, walk_seed_0)                                                                   \
	{                                                                                          \
		run(0);                                                                            \
	}                                                                                          \
	Test(suite, walk_seed_1)                                                                   \
	{                                                                                          \
		run(1);                                                                            \
	}                                                                                          \
	Test(suite, walk_seed_2)                                                                   \
	{                                                                                          \
		run(2);                                                                            \
	}                                                                                          \
	Test(suite, walk_seed_3)                                                                   \
	{                                                                                          \
		run(3);                                                                            \
	}                                                                                          \
	Test(suite, walk_seed_4)                                                                   \
	{                                                                                          \
		run(4);                                                                            \
	}

/* How a walk's clock moves in one step: with probability step_pct percent
 * forward by up to step ms; else with jump_pct percent forward by 1000 ms
 * plus up to jump ms; else back by 1 to jump ms. */
struct fixture_clock {
	unsigned step_pct;
	uint64_t step;
	unsigned jump_pct;
	uint64_t jump;
};

/* Moves *now (ms) as c says, drawing from the splitmix state *rng. Returns
 * true when the clock went back. */
bool fixture_clock_step(const struct fixture_clock *c, uint64_t *now, uint64_t *rng);

#endif
