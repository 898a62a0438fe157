/* Tests of the storage engine (storage/storage.h, LMDB engine).
 *
 * Each test gets a fresh directory under /tmp; the store lives in its "db"
 * subdirectory, which storage_open() must create itself. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "storage.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)
#define VAL_MAX 1024

static struct fixture fx;
static char db_path[FIXTURE_PATH_MAX + 8];

static void setup(void)
{
	fixture_setup(&fx, "storage");
	fixture_path(&fx, "db", db_path, sizeof(db_path));
}

static void teardown(void)
{
	fixture_teardown(&fx);
}

TestSuite(storage, .init = setup, .fini = teardown);

/* Helpers. */

struct key8 {
	uint8_t b[8];
};

static struct key8 be64(uint64_t v)
{
	struct key8 k;

	for (int i = 7; i >= 0; i--) {
		k.b[i] = (uint8_t)v;
		v >>= 8;
	}
	return k;
}

static uint64_t get_be64(struct storage_val v)
{
	const uint8_t *p = v.data;
	uint64_t n = 0;

	cr_assert_eq(v.len, 8);
	for (int i = 0; i < 8; i++)
		n = n << 8 | p[i];
	return n;
}

static struct storage_val span(const void *p, size_t len)
{
	return (struct storage_val){.data = p, .len = len};
}

static struct storage_val str(const char *s)
{
	return span(s, strlen(s));
}

/* Opens the store in the fixture's subdirectory name. */
static struct storage *open_at(const char *name, size_t map_size, unsigned max_readers)
{
	return fixture_open(
	        &fx, name,
	        &(struct storage_options){.map_size = map_size, .max_readers = max_readers});
}

static struct storage *open_store(size_t map_size)
{
	return open_at("db", map_size, 0);
}

static struct storage_txn *begin(struct storage *s, struct storage_txn *parent, unsigned flags)
{
	struct storage_txn *txn = NULL;
	int rc;

	rc = storage_txn_begin(s, parent, flags, &txn);
	cr_assert_eq(rc, 0, "storage_txn_begin: %s", wb_strerror(rc));
	return txn;
}

static int put_u64(struct storage_txn *txn, enum storage_db db, uint64_t k, uint64_t v,
                   unsigned flags)
{
	struct key8 kb = be64(k);
	struct key8 vb = be64(v);

	return storage_put(txn, db, span(kb.b, 8), span(vb.b, 8), flags);
}

/* Returns the storage code; *v is the value on success. */
static int get_u64(struct storage_txn *txn, enum storage_db db, uint64_t k, uint64_t *v)
{
	struct key8 kb = be64(k);
	struct storage_val val;
	int rc;

	rc = storage_get(txn, db, span(kb.b, 8), &val);
	if (rc == 0)
		*v = get_be64(val);
	return rc;
}

static void expect_u64(struct storage_txn *txn, enum storage_db db, uint64_t k, uint64_t want)
{
	uint64_t v = 0;
	int rc = get_u64(txn, db, k, &v);

	cr_assert_eq(rc, 0, "key %llu: %s", (unsigned long long)k, wb_strerror(rc));
	cr_assert_eq(v, want, "key %llu: %llu, want %llu", (unsigned long long)k,
	             (unsigned long long)v, (unsigned long long)want);
}

static void expect_absent(struct storage_txn *txn, enum storage_db db, uint64_t k)
{
	uint64_t v;

	cr_assert_eq(get_u64(txn, db, k, &v), WB_E_NOTFOUND, "key %llu is present",
	             (unsigned long long)k);
}

/* The value stored under event key k: len bytes derived from k. */
static void fill_value(uint8_t *buf, uint64_t k, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(k * 131 + i * 7);
}

static bool value_ok(struct storage_val v, uint64_t k, size_t len)
{
	uint8_t want[VAL_MAX];

	if (v.len != len)
		return false;
	fill_value(want, k, len);
	return memcmp(v.data, want, len) == 0;
}

/* Writes events [first, first + n) with len-byte values as the writer does:
 * one transaction, a nested child per request, one commit. */
static int write_batch(struct storage *s, uint64_t first, unsigned n, size_t len)
{
	uint8_t val[VAL_MAX];
	struct storage_txn *txn;
	struct storage_txn *child;
	int rc;

	rc = storage_txn_begin(s, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	for (uint64_t k = first; k < first + n; k++) {
		struct key8 kb = be64(k);

		rc = storage_txn_begin(s, txn, 0, &child);
		if (rc != 0)
			goto err;
		fill_value(val, k, len);
		rc = storage_put(child, STORAGE_DB_EVENTS, span(kb.b, 8), span(val, len),
		                 STORAGE_APPEND);
		if (rc != 0) {
			storage_txn_abort(child);
			goto err;
		}
		rc = storage_txn_commit(child);
		if (rc != 0)
			goto err;
	}
	return storage_txn_commit(txn);
err:
	storage_txn_abort(txn);
	return rc;
}

/* The writer's loop: a batch that meets a full map is aborted, the map grows
 * and the same batch is redone, which must then succeed. Returns the number
 * of times the map was full. */
static unsigned write_growing(struct storage *s, uint64_t first, unsigned batches, unsigned per,
                              size_t len)
{
	unsigned full = 0;

	for (unsigned b = 0; b < batches; b++) {
		uint64_t k = first + (uint64_t)b * per;
		int rc = write_batch(s, k, per, len);

		if (rc == WB_E_MAPFULL) {
			full++;
			rc = storage_grow(s, per * len * 2);
			cr_assert_eq(rc, 0, "storage_grow: %s", wb_strerror(rc));
			rc = write_batch(s, k, per, len);
		}
		cr_assert_eq(rc, 0, "batch %u: %s", b, wb_strerror(rc));
	}
	return full;
}

/* Checks that events [1, n] are all present with their values and nothing
 * else is. */
static void expect_events(struct storage *s, uint64_t n, size_t len)
{
	struct storage_txn *txn = begin(s, NULL, STORAGE_RDONLY);
	struct storage_cursor *cur;
	struct storage_val k;
	struct storage_val v;
	uint64_t seen = 0;
	int rc;

	cr_assert_eq(storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur), 0);
	for (rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
	     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
		seen++;
		cr_assert_eq(get_be64(k), seen);
		cr_assert(value_ok(v, seen, len), "value of event %llu", (unsigned long long)seen);
	}
	cr_assert_eq(rc, WB_E_NOTFOUND);
	cr_assert_eq(seen, n);
	storage_cursor_close(cur);
	storage_txn_abort(txn);
}

static struct storage_stats stats_of(struct storage *s)
{
	struct storage_stats st;

	cr_assert_eq(storage_stats(s, &st), 0);
	return st;
}

static off_t file_size(const char *dir, const char *name)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return st.st_size;
}

/* Open and close. */

Test(storage, open_creates_directory)
{
	struct storage *s;
	struct stat st;
	mode_t mask = umask(0);

	umask(mask);
	s = open_store(0);
	cr_assert_eq(stat(db_path, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0750 & ~mask);
	cr_assert_eq(stats_of(s).map_size, 64 * MIB, "the default map is 64 MiB");
	storage_close(s);
	storage_close(NULL);
}

Test(storage, open_reports_errors)
{
	struct storage_options o = {.path = NULL};
	struct storage *s = (struct storage *)&o; /* must stay untouched */
	char err[256] = "";
	char file[160];
	FILE *f;

	cr_assert_eq(storage_open(&s, &o, err, sizeof(err)), WB_E_INVAL);
	cr_assert_neq(err[0], '\0');
	cr_assert_eq(s, (struct storage *)&o);

	/* A regular file where the directory should be. */
	fixture_path(&fx, "file", file, sizeof(file));
	f = fopen(file, "w");
	cr_assert_not_null(f);
	fclose(f);
	o.path = file;
	err[0] = '\0';
	cr_assert_eq(storage_open(&s, &o, err, sizeof(err)), WB_E_IO);
	cr_assert_neq(err[0], '\0');
	cr_assert_eq(s, (struct storage *)&o);
	cr_assert_eq(storage_open(&s, &o, NULL, 0), WB_E_IO, "errmsg may be NULL");
}

Test(storage, reopen_keeps_data)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_val v;

	cr_assert_eq(storage_put(txn, STORAGE_DB_META, str("format"), str("1"), 0), 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, 7, 700, 0), 0);
	cr_assert_eq(storage_txn_commit(txn), 0);
	storage_close(s);

	s = open_store(0);
	txn = begin(s, NULL, STORAGE_RDONLY);
	cr_assert_eq(storage_get(txn, STORAGE_DB_META, str("format"), &v), 0);
	cr_assert_eq(v.len, 1);
	cr_assert_eq(memcmp(v.data, "1", 1), 0);
	expect_u64(txn, STORAGE_DB_EVENTS, 7, 700);
	expect_absent(txn, STORAGE_DB_STREAMS, 7);
	storage_txn_abort(txn);
	storage_close(s);
}

/* Get, put, delete. */

Test(storage, put_get_del)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);

	cr_assert_eq(put_u64(txn, STORAGE_DB_STREAMS, 1, 10, 0), 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_STREAMS, 2, 20, 0), 0);
	expect_u64(txn, STORAGE_DB_STREAMS, 1, 10);
	cr_assert_eq(put_u64(txn, STORAGE_DB_STREAMS, 1, 11, 0), 0, "plain put overwrites");
	expect_u64(txn, STORAGE_DB_STREAMS, 1, 11);
	expect_absent(txn, STORAGE_DB_EVENTS, 1); /* databases are separate */
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, 0);
	struct key8 k = be64(1);
	cr_assert_eq(storage_del(txn, STORAGE_DB_STREAMS, span(k.b, 8)), 0);
	expect_absent(txn, STORAGE_DB_STREAMS, 1);
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, STORAGE_RDONLY);
	expect_absent(txn, STORAGE_DB_STREAMS, 1);
	expect_u64(txn, STORAGE_DB_STREAMS, 2, 20);
	cr_assert_eq(storage_txn_commit(txn), 0, "committing a read transaction ends it");
	storage_close(s);
}

Test(storage, absent_keys_are_notfound)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_cursor *cur;
	struct storage_val k;
	struct storage_val v;
	struct key8 kb = be64(42);

	cr_assert_eq(storage_get(txn, STORAGE_DB_EVENTS, span(kb.b, 8), &v), WB_E_NOTFOUND);
	cr_assert_eq(storage_del(txn, STORAGE_DB_EVENTS, span(kb.b, 8)), WB_E_NOTFOUND);
	cr_assert_eq(storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur), 0);
	cr_assert_eq(storage_cursor_get(cur, STORAGE_FIRST, &k, &v), WB_E_NOTFOUND);
	cr_assert_eq(storage_cursor_get(cur, STORAGE_LAST, &k, &v), WB_E_NOTFOUND);
	storage_cursor_close(cur);
	/* The transaction is still good after those answers. */
	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, 42, 1, 0), 0);
	cr_assert_eq(storage_txn_commit(txn), 0);
	storage_close(s);
}

Test(storage, misuse_is_inval)
{
	struct storage *s = open_store(0);
	struct storage_txn *rd = begin(s, NULL, STORAGE_RDONLY);
	struct storage_txn *wr;
	struct storage_txn *out = NULL;
	struct key8 kb = be64(1);
	struct storage_val v;

	cr_assert_eq(put_u64(rd, STORAGE_DB_EVENTS, 1, 1, 0), WB_E_INVAL, "put in a snapshot");
	cr_assert_eq(storage_del(rd, STORAGE_DB_EVENTS, span(kb.b, 8)), WB_E_INVAL);
	cr_assert_eq(storage_txn_begin(s, rd, 0, &out), WB_E_INVAL, "child of a snapshot");
	cr_assert_null(out);
	cr_assert_eq(storage_get(rd, STORAGE_DB_COUNT, span(kb.b, 8), &v), WB_E_INVAL);
	cr_assert_eq(storage_get(rd, STORAGE_DB_EVENTS, span(kb.b, 0), &v), WB_E_INVAL,
	             "empty key");
	storage_txn_abort(rd);

	static const uint8_t long_key[600];
	wr = begin(s, NULL, 0);
	cr_assert_eq(
	        storage_put(wr, STORAGE_DB_META, span(long_key, sizeof(long_key)), str("x"), 0),
	        WB_E_INVAL, "a key longer than LMDB's 511 bytes");
	cr_assert_eq(storage_put(wr, STORAGE_DB_META, span(long_key, 511), str("x"), 0), 0);
	storage_txn_abort(wr);

	wr = begin(s, NULL, 0);
	cr_assert_eq(storage_txn_begin(s, wr, STORAGE_RDONLY, &out), WB_E_INVAL);
	cr_assert_eq(put_u64(wr, STORAGE_DB_EVENTS, 1, 1, 0x80), WB_E_INVAL, "unknown flag");
	cr_assert_null(out);
	storage_txn_abort(wr);
	storage_close(s);
}

Test(storage, nooverwrite_gives_keyexist)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);

	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENT_IDS, 5, 50, STORAGE_NOOVERWRITE), 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENT_IDS, 5, 51, STORAGE_NOOVERWRITE), WB_E_KEYEXIST);
	expect_u64(txn, STORAGE_DB_EVENT_IDS, 5, 50);
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENT_IDS, 5, 52, STORAGE_NOOVERWRITE), WB_E_KEYEXIST,
	             "also against committed data");
	cr_assert_eq(storage_txn_commit(txn), 0);
	txn = begin(s, NULL, STORAGE_RDONLY);
	expect_u64(txn, STORAGE_DB_EVENT_IDS, 5, 50);
	storage_txn_abort(txn);
	storage_close(s);
}

Test(storage, append_in_order)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);

	/* Crosses byte boundaries of the big-endian key (255 -> 256). */
	for (uint64_t k = 1; k <= 1000; k++)
		cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, k, k * 3, STORAGE_APPEND), 0,
		             "append %llu", (unsigned long long)k);
	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, 500, 0, STORAGE_APPEND), WB_E_KEYEXIST,
	             "a key that does not sort last");
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, 1001, 3003, STORAGE_APPEND), 0,
	             "appends continue after the committed keys");
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, STORAGE_RDONLY);
	struct storage_cursor *cur;
	struct storage_val k;
	struct storage_val v;
	uint64_t want = 1;
	int rc;

	cr_assert_eq(storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur), 0);
	for (rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
	     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v), want++) {
		cr_assert_eq(get_be64(k), want);
		cr_assert_eq(get_be64(v), want * 3);
	}
	cr_assert_eq(rc, WB_E_NOTFOUND);
	cr_assert_eq(want, 1002);
	storage_cursor_close(cur);
	storage_txn_abort(txn);
	storage_close(s);
}

/* Cursors. */

static void expect_at(struct storage_cursor *cur, enum storage_cursor_op op, uint64_t seek,
                      uint64_t want)
{
	struct key8 kb = be64(seek);
	struct storage_val k = span(kb.b, 8);
	struct storage_val v;
	int rc;

	rc = storage_cursor_get(cur, op, &k, &v);
	cr_assert_eq(rc, 0, "op %d seek %llu: %s", (int)op, (unsigned long long)seek,
	             wb_strerror(rc));
	cr_assert_eq(get_be64(k), want, "op %d seek %llu", (int)op, (unsigned long long)seek);
	cr_assert_eq(get_be64(v), want * 2);
}

static void expect_end(struct storage_cursor *cur, enum storage_cursor_op op, uint64_t seek)
{
	struct key8 kb = be64(seek);
	struct storage_val k = span(kb.b, 8);
	struct storage_val v;

	cr_assert_eq(storage_cursor_get(cur, op, &k, &v), WB_E_NOTFOUND, "op %d seek %llu", (int)op,
	             (unsigned long long)seek);
}

Test(storage, cursor_ops_follow_key_order)
{
	static const uint64_t keys[] = {65536, 1, (uint64_t)1 << 40, 256, 255};
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_cursor *cur;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, keys[i], keys[i] * 2, 0), 0);
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, STORAGE_RDONLY);
	cr_assert_eq(storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur), 0);
	expect_at(cur, STORAGE_FIRST, 0, 1);
	expect_at(cur, STORAGE_NEXT, 0, 255);
	expect_at(cur, STORAGE_NEXT, 0, 256);
	expect_at(cur, STORAGE_NEXT, 0, 65536);
	expect_at(cur, STORAGE_NEXT, 0, (uint64_t)1 << 40);
	expect_end(cur, STORAGE_NEXT, 0);

	expect_at(cur, STORAGE_LAST, 0, (uint64_t)1 << 40);
	expect_at(cur, STORAGE_PREV, 0, 65536);
	expect_at(cur, STORAGE_PREV, 0, 256);
	expect_at(cur, STORAGE_PREV, 0, 255);
	expect_at(cur, STORAGE_PREV, 0, 1);
	expect_end(cur, STORAGE_PREV, 0);

	expect_at(cur, STORAGE_SET_RANGE, 0, 1);
	expect_at(cur, STORAGE_SET_RANGE, 257, 65536);
	expect_at(cur, STORAGE_SET_RANGE, 65536, 65536);
	expect_at(cur, STORAGE_NEXT, 0, (uint64_t)1 << 40);
	expect_end(cur, STORAGE_SET_RANGE, ((uint64_t)1 << 40) + 1);

	expect_at(cur, STORAGE_SET, 256, 256);
	expect_at(cur, STORAGE_NEXT, 0, 65536);
	expect_at(cur, STORAGE_SET, 256, 256);
	expect_at(cur, STORAGE_PREV, 0, 255);
	expect_end(cur, STORAGE_SET, 257);
	expect_end(cur, STORAGE_SET, 0);
	storage_cursor_close(cur);
	storage_txn_abort(txn);
	storage_close(s);
}

/* Nested transactions. */

Test(storage, nested_abort_keeps_parent_writes)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_txn *child;

	cr_assert_eq(put_u64(txn, STORAGE_DB_META, 1, 100, 0), 0);
	child = begin(s, txn, 0);
	cr_assert_eq(put_u64(child, STORAGE_DB_META, 2, 200, 0), 0);
	cr_assert_eq(put_u64(child, STORAGE_DB_META, 1, 101, 0), 0);
	expect_u64(child, STORAGE_DB_META, 1, 101);
	expect_u64(child, STORAGE_DB_META, 2, 200);
	storage_txn_abort(child);

	expect_u64(txn, STORAGE_DB_META, 1, 100);
	expect_absent(txn, STORAGE_DB_META, 2);
	/* The parent goes on with another child after the failed one. */
	child = begin(s, txn, 0);
	cr_assert_eq(put_u64(child, STORAGE_DB_META, 3, 300, 0), 0);
	cr_assert_eq(storage_txn_commit(child), 0);
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, STORAGE_RDONLY);
	expect_u64(txn, STORAGE_DB_META, 1, 100);
	expect_absent(txn, STORAGE_DB_META, 2);
	expect_u64(txn, STORAGE_DB_META, 3, 300);
	storage_txn_abort(txn);
	storage_close(s);
}

Test(storage, nested_commit_joins_parent)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_txn *child = begin(s, txn, 0);
	struct storage_txn *grandchild = begin(s, child, 0);

	cr_assert_eq(put_u64(grandchild, STORAGE_DB_STREAMS, 9, 90, 0), 0);
	cr_assert_eq(storage_txn_commit(grandchild), 0);
	cr_assert_eq(put_u64(child, STORAGE_DB_STREAMS, 8, 80, 0), 0);
	cr_assert_eq(storage_txn_commit(child), 0);
	expect_u64(txn, STORAGE_DB_STREAMS, 9, 90);
	expect_u64(txn, STORAGE_DB_STREAMS, 8, 80);
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, STORAGE_RDONLY);
	expect_u64(txn, STORAGE_DB_STREAMS, 9, 90);
	expect_u64(txn, STORAGE_DB_STREAMS, 8, 80);
	storage_txn_abort(txn);

	/* A committed child still goes with its parent's abort. */
	txn = begin(s, NULL, 0);
	child = begin(s, txn, 0);
	cr_assert_eq(put_u64(child, STORAGE_DB_STREAMS, 7, 70, 0), 0);
	cr_assert_eq(storage_txn_commit(child), 0);
	storage_txn_abort(txn);
	txn = begin(s, NULL, STORAGE_RDONLY);
	expect_absent(txn, STORAGE_DB_STREAMS, 7);
	storage_txn_abort(txn);
	storage_close(s);
}

Test(storage, ending_a_parent_ends_its_open_child)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_txn *child = begin(s, txn, 0);
	struct storage_txn *out = NULL;

	cr_assert_eq(storage_txn_begin(s, txn, 0, &out), WB_E_INVAL, "a second open child");
	cr_assert_null(out);
	cr_assert_eq(put_u64(child, STORAGE_DB_META, 1, 10, 0), 0);
	cr_assert_eq(storage_txn_commit(txn), 0, "commits the open child with it");

	txn = begin(s, NULL, 0);
	child = begin(s, txn, 0);
	cr_assert_eq(put_u64(child, STORAGE_DB_META, 2, 20, 0), 0);
	storage_txn_abort(txn);

	txn = begin(s, NULL, STORAGE_RDONLY);
	expect_u64(txn, STORAGE_DB_META, 1, 10);
	expect_absent(txn, STORAGE_DB_META, 2);
	storage_txn_abort(txn);
	storage_close(s);
}

/* Snapshots. */

Test(storage, snapshot_does_not_see_later_commit)
{
	struct storage *s = open_store(0);
	struct storage_txn *old = begin(s, NULL, STORAGE_RDONLY);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_txn *fresh;

	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, 1, 11, 0), 0);
	cr_assert_eq(storage_txn_commit(txn), 0);

	expect_absent(old, STORAGE_DB_EVENTS, 1);
	fresh = begin(s, NULL, STORAGE_RDONLY);
	expect_u64(fresh, STORAGE_DB_EVENTS, 1, 11);
	expect_absent(old, STORAGE_DB_EVENTS, 1);
	storage_txn_abort(old);
	storage_txn_abort(fresh);

	/* A recycled snapshot handle sees the newest data, not its old view. */
	old = begin(s, NULL, STORAGE_RDONLY);
	txn = begin(s, NULL, 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, 1, 12, 0), 0);
	cr_assert_eq(storage_txn_commit(txn), 0);
	expect_u64(old, STORAGE_DB_EVENTS, 1, 11);
	storage_txn_abort(old);
	fresh = begin(s, NULL, STORAGE_RDONLY);
	expect_u64(fresh, STORAGE_DB_EVENTS, 1, 12);
	storage_txn_abort(fresh);
	storage_close(s);
}

Test(storage, reader_slots_are_reused)
{
	struct storage *s = open_at("db", 0, 4);
	struct storage_txn *rd[4];
	struct storage_txn *extra = NULL;

	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 4; i++)
			rd[i] = begin(s, NULL, STORAGE_RDONLY);
		cr_assert_eq(storage_txn_begin(s, NULL, STORAGE_RDONLY, &extra), WB_E_IO,
		             "a fifth reader on four slots");
		cr_assert_null(extra);
		for (int i = 0; i < 4; i++)
			storage_txn_abort(rd[i]);
	}
	for (int i = 0; i < 100; i++)
		storage_txn_abort(begin(s, NULL, STORAGE_RDONLY));
	struct storage_stats st = stats_of(s);
	cr_assert_eq(st.max_readers, 4);
	cr_assert_leq(st.readers_used, 4);
	storage_close(s);
}

/* A map that fills. */

Test(storage, full_map_grows_and_survives_reopen)
{
	struct storage *s = open_store(256 * KIB);
	struct storage_stats st;
	unsigned full;

	/* 200 batches of 16 x 1000 bytes: about 3 MB through a 256 KiB map. */
	full = write_growing(s, 1, 200, 16, 1000);
	cr_assert_geq(full, 2, "the map filled %u times", full);
	st = stats_of(s);
	cr_assert_eq(st.grow_count, full);
	cr_assert_geq(st.map_size, 3 * MIB);
	cr_assert_eq(st.map_size % MIB, 0);
	cr_assert_eq(st.map_size % st.page_size, 0);
	cr_assert_eq(st.entries[STORAGE_DB_EVENTS], 3200);
	expect_events(s, 3200, 1000);
	uint64_t grown = st.map_size;
	storage_close(s);

	/* Asking for the small map again gets the grown one back. */
	s = open_store(256 * KIB);
	st = stats_of(s);
	cr_assert_geq(st.map_size, grown);
	cr_assert_eq(st.grow_count, 0);
	expect_events(s, 3200, 1000);
	cr_assert_eq(write_batch(s, 3201, 16, 1000), 0, "room without growing");
	expect_events(s, 3216, 1000);
	storage_close(s);
}

Test(storage, mapfull_aborts_only_that_batch)
{
	struct storage *s = open_store(256 * KIB);
	int rc = 0;
	uint64_t k = 1;

	while ((rc = write_batch(s, k, 8, 1000)) == 0)
		k += 8;
	cr_assert_eq(rc, WB_E_MAPFULL);
	expect_events(s, k - 1, 1000);
	cr_assert_eq(storage_grow(s, 0), 0);
	cr_assert_eq(write_batch(s, k, 8, 1000), 0);
	expect_events(s, k + 7, 1000);
	storage_close(s);
}

Test(storage, needs_room_turns_true_before_full)
{
	struct storage *s = open_store(1 * MIB);
	const size_t batch = 4 * 1000;
	uint64_t k = 1;
	struct storage_stats st;

	cr_assert_not(storage_needs_room(s, batch));
	cr_assert(storage_needs_room(s, 2 * MIB), "more than the map holds");
	while (!storage_needs_room(s, batch)) {
		int rc = write_batch(s, k, 4, 1000);

		cr_assert_eq(rc, 0, "the map filled before needs_room said so: %s",
		             wb_strerror(rc));
		k += 4;
		cr_assert_lt(k, 1000, "needs_room never turned true");
	}
	st = stats_of(s);
	cr_assert_gt(st.used_bytes, MIB / 2, "used %llu of the map",
	             (unsigned long long)st.used_bytes);
	cr_assert_eq(storage_grow(s, batch), 0);
	cr_assert_not(storage_needs_room(s, batch));
	st = stats_of(s);
	cr_assert_eq(st.map_size, 2 * MIB);
	cr_assert_eq(st.grow_count, 1);
	storage_close(s);
}

Test(storage, grow_covers_large_want)
{
	struct storage *s = open_store(1 * MIB);
	struct storage_stats st;

	cr_assert_eq(storage_grow(s, 10 * MIB), 0);
	st = stats_of(s);
	cr_assert_geq(st.map_size, st.used_bytes + 10 * MIB + MIB / 4);
	cr_assert_eq(st.map_size % MIB, 0);
	cr_assert_not(storage_needs_room(s, 10 * MIB));
	storage_close(s);
}

Test(storage, data_file_is_not_preallocated)
{
	struct storage *s = open_store(0);
	struct storage_stats st;

	write_growing(s, 1, 4, 16, 1000);
	cr_assert_eq(storage_grow(s, 0), 0);
	st = stats_of(s);
	cr_assert_eq(st.map_size, 128 * MIB);
	cr_assert_leq((uint64_t)file_size(db_path, "data.mdb"), st.used_bytes);
	storage_close(s);
}

/* Stats. */

Test(storage, stats_count_entries_exactly)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn = begin(s, NULL, 0);
	struct storage_stats st;
	struct storage_stats before = stats_of(s);

	for (uint64_t k = 0; k < 3; k++)
		cr_assert_eq(put_u64(txn, STORAGE_DB_META, k, k, 0), 0);
	for (uint64_t k = 0; k < 10; k++)
		cr_assert_eq(put_u64(txn, STORAGE_DB_EVENTS, k, k, 0), 0);
	for (uint64_t k = 0; k < 5; k++)
		cr_assert_eq(put_u64(txn, STORAGE_DB_EVENT_IDS, k, k, 0), 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_STREAMS, 1, 1, 0), 0);
	cr_assert_eq(put_u64(txn, STORAGE_DB_META, 0, 9, 0), 0, "overwrite: no new entry");

	st = stats_of(s);
	for (int i = 0; i < STORAGE_DB_COUNT; i++)
		cr_assert_eq(st.entries[i], 0, "uncommitted writes are not counted");
	cr_assert_eq(storage_txn_commit(txn), 0);

	txn = begin(s, NULL, 0);
	for (uint64_t k = 3; k < 5; k++) {
		struct key8 kb = be64(k);

		cr_assert_eq(storage_del(txn, STORAGE_DB_EVENTS, span(kb.b, 8)), 0);
	}
	cr_assert_eq(storage_txn_commit(txn), 0);

	st = stats_of(s);
	cr_assert_eq(st.entries[STORAGE_DB_META], 3);
	cr_assert_eq(st.entries[STORAGE_DB_EVENTS], 8);
	cr_assert_eq(st.entries[STORAGE_DB_STREAMS], 1);
	cr_assert_eq(st.entries[STORAGE_DB_STREAM_EVENTS], 0);
	cr_assert_eq(st.entries[STORAGE_DB_EVENT_IDS], 5);
	cr_assert_eq(st.last_txn_id, before.last_txn_id + 2);
	cr_assert_eq(st.map_size, 64 * MIB);
	cr_assert_gt(st.page_size, 0);
	cr_assert_eq(st.used_bytes % st.page_size, 0);
	cr_assert_gt(st.used_bytes, 0);
	cr_assert_lt(st.used_bytes, st.map_size);
	cr_assert_eq(st.max_readers, 126);
	cr_assert_geq(st.readers_used, 1);
	cr_assert_leq(st.readers_used, st.max_readers);
	cr_assert_eq(st.grow_count, 0);
	storage_close(s);
}

/* Readers on another thread while the map grows. */

struct reader {
	struct storage *s;
	atomic_bool *stop;
	atomic_ulong *passes;
	char failure[200];
};

/* Walks the events over and over. Every snapshot must hold whole batches of
 * 16 contiguous events from 1 with their values: never a torn batch, never a
 * value read from a stale mapping. Records the first failure and stops; the
 * main thread asserts, since criterion's asserts belong to it. */
static void *reader_main(void *arg)
{
	struct reader *r = arg;

	while (!atomic_load(r->stop)) {
		struct storage_txn *txn;
		struct storage_cursor *cur = NULL;
		struct storage_val k;
		struct storage_val v;
		uint64_t n = 0;
		int rc;

		rc = storage_txn_begin(r->s, NULL, STORAGE_RDONLY, &txn);
		if (rc != 0) {
			snprintf(r->failure, sizeof(r->failure), "begin: %s", wb_strerror(rc));
			return NULL;
		}
		rc = storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur);
		for (rc = rc != 0 ? rc : storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
		     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
			const uint8_t *p = k.data;
			uint64_t key = 0;

			n++;
			for (size_t i = 0; i < k.len; i++)
				key = key << 8 | p[i];
			if (k.len != 8 || key != n || !value_ok(v, n, 500)) {
				snprintf(r->failure, sizeof(r->failure), "bad entry %llu",
				         (unsigned long long)n);
				break;
			}
		}
		storage_cursor_close(cur);
		storage_txn_abort(txn);
		if (r->failure[0] != '\0')
			return NULL;
		if (rc != WB_E_NOTFOUND || n % 16 != 0) {
			snprintf(r->failure, sizeof(r->failure), "walk ended with %s after %llu",
			         wb_strerror(rc), (unsigned long long)n);
			return NULL;
		}
		atomic_fetch_add(r->passes, 1);
	}
	return NULL;
}

Test(storage, readers_run_while_the_map_grows, .timeout = 300)
{
	struct storage *s = open_store(256 * KIB);
	atomic_bool stop = false;
	atomic_ulong passes = 0;
	struct reader readers[2];
	pthread_t threads[2];
	unsigned grows = 0;
	unsigned long at_start;

	for (int i = 0; i < 2; i++) {
		readers[i] = (struct reader){.s = s, .stop = &stop, .passes = &passes};
		cr_assert_eq(pthread_create(&threads[i], NULL, reader_main, &readers[i]), 0);
	}
	while (atomic_load(&passes) < 2)
		sched_yield();
	at_start = atomic_load(&passes);

	for (unsigned b = 0; b < 120; b++) {
		grows += write_growing(s, 1 + (uint64_t)b * 16, 1, 16, 500);
		if (b % 20 == 19) {
			cr_assert_eq(storage_grow(s, 0), 0);
			grows++;
		}
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(pthread_join(threads[i], NULL), 0);
		cr_assert_eq(readers[i].failure[0], '\0', "reader %d: %s", i, readers[i].failure);
	}
	cr_assert_gt(atomic_load(&passes), at_start, "the readers ran during the writes");
	cr_assert_geq(grows, 6);
	cr_assert_eq(stats_of(s).grow_count, grows);
	expect_events(s, 120 * 16, 500);
	storage_close(s);
}

/* Backup. */

static void expect_same_store(struct storage *a, struct storage *b)
{
	struct storage_stats sa = stats_of(a);
	struct storage_stats sb = stats_of(b);
	struct storage_txn *ta = begin(a, NULL, STORAGE_RDONLY);
	struct storage_txn *tb = begin(b, NULL, STORAGE_RDONLY);

	for (int db = 0; db < STORAGE_DB_COUNT; db++) {
		struct storage_cursor *ca;
		struct storage_cursor *cb;
		struct storage_val ka, va, kb, vb;
		int ra, rb;

		cr_assert_eq(sa.entries[db], sb.entries[db], "db %d", db);
		cr_assert_eq(storage_cursor_open(ta, (enum storage_db)db, &ca), 0);
		cr_assert_eq(storage_cursor_open(tb, (enum storage_db)db, &cb), 0);
		ra = storage_cursor_get(ca, STORAGE_FIRST, &ka, &va);
		rb = storage_cursor_get(cb, STORAGE_FIRST, &kb, &vb);
		while (ra == 0 && rb == 0) {
			cr_assert_eq(ka.len, kb.len);
			cr_assert_eq(memcmp(ka.data, kb.data, ka.len), 0);
			cr_assert_eq(va.len, vb.len);
			cr_assert_eq(memcmp(va.data, vb.data, va.len), 0);
			ra = storage_cursor_get(ca, STORAGE_NEXT, &ka, &va);
			rb = storage_cursor_get(cb, STORAGE_NEXT, &kb, &vb);
		}
		cr_assert_eq(ra, WB_E_NOTFOUND);
		cr_assert_eq(rb, WB_E_NOTFOUND);
		storage_cursor_close(ca);
		storage_cursor_close(cb);
	}
	storage_txn_abort(ta);
	storage_txn_abort(tb);
}

Test(storage, backup_opens_with_the_same_data)
{
	struct storage *s = open_store(0);
	struct storage_txn *txn;
	char plain[160];
	char compact[160];

	write_growing(s, 1, 20, 16, 1000);
	txn = begin(s, NULL, 0);
	cr_assert_eq(storage_put(txn, STORAGE_DB_META, str("format"), str("1"), 0), 0);
	for (uint64_t k = 1; k <= 200; k++) {
		struct key8 kb = be64(k);

		cr_assert_eq(storage_del(txn, STORAGE_DB_EVENTS, span(kb.b, 8)), 0);
	}
	cr_assert_eq(storage_txn_commit(txn), 0);

	fixture_path(&fx, "backup-plain", plain, sizeof(plain));
	fixture_path(&fx, "backup-compact", compact, sizeof(compact));
	cr_assert_eq(storage_backup(s, plain, false), 0);
	cr_assert_eq(storage_backup(s, compact, true), 0);
	cr_assert_eq(storage_backup(s, compact, true), WB_E_IO, "a backup is never overwritten");
	cr_assert_leq(file_size(compact, "data.mdb"), file_size(plain, "data.mdb"));

	/* Writes after the backup are not in it. */
	cr_assert_eq(write_batch(s, 321, 16, 1000), 0);

	struct storage *b = open_at("backup-plain", 0, 0);
	struct storage *c = open_at("backup-compact", 0, 0);
	expect_same_store(b, c);
	struct storage_stats st = stats_of(c);
	cr_assert_eq(st.entries[STORAGE_DB_EVENTS], 320 - 200);
	cr_assert_eq(st.entries[STORAGE_DB_META], 1);
	txn = begin(c, NULL, STORAGE_RDONLY);
	struct storage_val v;
	struct key8 kb = be64(201);
	cr_assert_eq(storage_get(txn, STORAGE_DB_EVENTS, span(kb.b, 8), &v), 0);
	cr_assert(value_ok(v, 201, 1000));
	kb = be64(321);
	cr_assert_eq(storage_get(txn, STORAGE_DB_EVENTS, span(kb.b, 8), &v), WB_E_NOTFOUND);
	storage_txn_abort(txn);
	storage_close(b);
	storage_close(c);

	/* Without the later writes the stores are equal. */
	txn = begin(s, NULL, 0);
	for (uint64_t k = 321; k < 337; k++) {
		kb = be64(k);
		cr_assert_eq(storage_del(txn, STORAGE_DB_EVENTS, span(kb.b, 8)), 0);
	}
	cr_assert_eq(storage_txn_commit(txn), 0);
	c = open_at("backup-compact", 0, 0);
	expect_same_store(s, c);
	storage_close(c);
	storage_close(s);
}

static void count_bytes(void *arg, uint64_t bytes)
{
	*(uint64_t *)arg = bytes;
}

/* storage_backup_progress() writes into the directory it is given, by its
 * descriptor: data.mdb is 0600 even under umask 0, is never written through
 * an existing file or a symlink of that name, and the copy opens. */
Test(storage, backup_progress_writes_into_the_directory_it_is_given)
{
	struct storage *s = open_store(0);
	write_growing(s, 1, 4, 16, 1000);
	char dir[160], target[160], link[200];
	fixture_path(&fx, "into", dir, sizeof(dir));
	cr_assert_eq(mkdir(dir, 0700), 0);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);

	/* A symlink named data.mdb is refused, and its target stays absent. */
	fixture_path(&fx, "elsewhere.mdb", target, sizeof(target));
	snprintf(link, sizeof(link), "%s/data.mdb", dir);
	cr_assert_eq(symlink(target, link), 0);
	char err[256] = "";
	cr_assert_eq(storage_backup_progress(s, dfd, "into", true, NULL, NULL, err, sizeof(err)),
	             WB_E_IO);
	cr_assert_not_null(strstr(err, "into/data.mdb"), "%s", err);
	struct stat st;
	cr_assert_neq(lstat(target, &st), 0, "the copy was written through the symlink");
	cr_assert_eq(lstat(link, &st), 0, "the symlink is gone");
	cr_assert(S_ISLNK(st.st_mode));
	cr_assert_eq(unlink(link), 0);

	/* The control: without the symlink the copy is made, 0600 under
	 * umask 0, with progress up to its size. */
	mode_t old = umask(0);
	uint64_t seen = 0;
	int rc =
	        storage_backup_progress(s, dfd, "into", true, count_bytes, &seen, err, sizeof(err));
	umask(old);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(lstat(link, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	cr_assert_eq((uint64_t)st.st_size, seen);

	/* A second copy into the same directory is refused and leaves the
	 * first as it was. */
	cr_assert_eq(storage_backup_progress(s, dfd, "into", true, NULL, NULL, err, sizeof(err)),
	             WB_E_IO);
	cr_assert_eq(file_size(dir, "data.mdb"), (off_t)seen);
	close(dfd);

	struct storage *b = open_at("into", 0, 0);
	expect_same_store(s, b);
	storage_close(b);
	storage_close(s);
}
