/* Log mode's checkpoints (storage.h: log_mode, storage_checkpoint()).
 *
 * The claim: after any crash, a log-mode store opens at exactly its last
 * checkpoint. A killed process leaves every write in the page cache; a power
 * cut leaves any subset of the writes made since the last sync, the meta
 * pages included, some of them torn. The tests build such images by hand
 * from two copies of data.mdb, one taken at a checkpoint (just synced) and
 * one after later commits, and open each: it must hold the checkpoint's
 * content, read by a walk of every database, and say the checkpoint's
 * applied sequence. The negative controls (unsafe_no_pin, unsafe_no_restore)
 * must fail the same check, which shows that the images can catch what the
 * scheme prevents. Images are opened in a child process, since LMDB may
 * crash on the garbage a broken scheme leaves. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "storage.h"

static struct fixture fx;

static void setup(void)
{
	fixture_setup(&fx, "ckpt");
}

static void teardown(void)
{
	fixture_teardown(&fx);
}

TestSuite(checkpoint, .init = setup, .fini = teardown);

#define MAP (16u << 20)

static const struct storage_options LOG = {.map_size = MAP, .log_mode = true};
static const struct storage_options LOG_NO_PIN = {
        .map_size = MAP, .log_mode = true, .unsafe_no_pin = true};
static const struct storage_options LOG_NO_RESTORE = {
        .map_size = MAP, .log_mode = true, .unsafe_no_restore = true};

/* ------------------------------------------------------------ content */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Puts key i of db with a value drawn from (i, round): 100 to 1400 bytes,
 * so that the trees span many pages. */
static void put_one(struct storage_txn *t, enum storage_db db, uint64_t i, uint64_t round)
{
	uint8_t key[8];
	uint8_t val[800];
	uint64_t rng = i * 1000003u + round * 7919u + (uint64_t)db;
	size_t len = 80 + fixture_splitmix(&rng) % 720;

	for (size_t j = 0; j < len; j += 8) {
		uint64_t r = fixture_splitmix(&rng);

		memcpy(val + j, &r, len - j < 8 ? len - j : 8);
	}
	put_be64(key, i);
	int rc =
	        storage_put(t, db, (struct storage_val){key, 8}, (struct storage_val){val, len}, 0);
	cr_assert_eq(rc, 0, "put %llu in db %d: %s", (unsigned long long)i, (int)db,
	             wb_strerror(rc));
}

/* One commit: keys [first, first + n) of three databases, from round. */
static void fill(struct storage *st, uint64_t first, uint64_t n, uint64_t round)
{
	struct storage_txn *t = fixture_txn(st, NULL, 0);

	for (uint64_t i = first; i < first + n; i++) {
		put_one(t, STORAGE_DB_EVENTS, i, round);
		if (i % 3 == 0)
			put_one(t, STORAGE_DB_LEDGER, i, round);
		if (i % 5 == 0)
			put_one(t, STORAGE_DB_ENTITIES, i, round);
	}
	fixture_commit(t);
}

/* The base content: 600 keys in six commits. */
static void base(struct storage *st)
{
	for (uint64_t c = 0; c < 6; c++)
		fill(st, c * 100, 100, 1);
}

/* What comes after a checkpoint: twelve commits that rewrite, delete and add,
 * enough for LMDB to reuse freed pages when nothing pins them. */
static void churn(struct storage *st)
{
	for (uint64_t c = 0; c < 12; c++) {
		struct storage_txn *t = fixture_txn(st, NULL, 0);

		fixture_commit(t);
		fill(st, (c * 50) % 600, 50, 2 + c);
		t = fixture_txn(st, NULL, 0);
		for (uint64_t i = c; i < 600; i += 37) {
			uint8_t key[8];

			put_be64(key, i);
			(void)storage_del(t, STORAGE_DB_EVENTS, (struct storage_val){key, 8});
		}
		fixture_commit(t);
		fill(st, 1000 + c * 20, 20, 2 + c);
	}
}

/* The content of every database: an FNV-1a digest over (db, key, value) in
 * order, and the entry count. Returns the walk's first error, 0 if none. */
struct content {
	uint64_t digest;
	uint64_t entries;
};

static void fnv(uint64_t *h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= 0x100000001b3u;
	}
}

static int walk(struct storage *st, struct content *out)
{
	struct storage_txn *t;
	struct content c = {0xcbf29ce484222325u, 0};
	int rc = storage_txn_begin(st, NULL, STORAGE_RDONLY, &t);

	if (rc != 0)
		return rc;
	for (int db = 0; rc == 0 && db < STORAGE_DB_COUNT; db++) {
		struct storage_cursor *cur;
		struct storage_val k;
		struct storage_val v;

		rc = storage_cursor_open(t, (enum storage_db)db, &cur);
		if (rc != 0)
			break;
		fnv(&c.digest, &db, sizeof(db));
		for (rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
		     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
			fnv(&c.digest, &k.len, sizeof(k.len));
			fnv(&c.digest, k.data, k.len);
			fnv(&c.digest, &v.len, sizeof(v.len));
			fnv(&c.digest, v.data, v.len);
			c.entries++;
		}
		if (rc == WB_E_NOTFOUND)
			rc = 0;
		storage_cursor_close(cur);
	}
	storage_txn_abort(t);
	*out = c;
	return rc;
}

static struct content content_of(struct storage *st)
{
	struct content c;
	int rc = walk(st, &c);

	cr_assert_eq(rc, 0, "walk: %s", wb_strerror(rc));
	return c;
}

/* ------------------------------------------------------------ files */

struct blob {
	uint8_t *data;
	size_t len;
};

static struct blob read_file(const char *path)
{
	struct blob b = {0};
	struct stat st;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fstat(fd, &st), 0);
	b.len = (size_t)st.st_size;
	b.data = malloc(b.len + 1);
	cr_assert_not_null(b.data);
	for (size_t done = 0; done < b.len;) {
		ssize_t n = pread(fd, b.data + done, b.len - done, (off_t)done);

		cr_assert_gt(n, 0, "read %s: %s", path, strerror(errno));
		done += (size_t)n;
	}
	close(fd);
	return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);

	cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, data, len), (ssize_t)len, "write %s: %s", path, strerror(errno));
	close(fd);
}

static struct blob read_in(const char *store, const char *file)
{
	char dir[FIXTURE_PATH_MAX];
	char path[FIXTURE_PATH_MAX + 32];

	fixture_path(&fx, store, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return read_file(path);
}

/* A store directory name of an image with data.mdb and checkpoint. */
static void make_image(const char *name, const struct blob *data, const struct blob *ckpt)
{
	char dir[FIXTURE_PATH_MAX];
	char path[FIXTURE_PATH_MAX + 32];

	fixture_path(&fx, name, dir, sizeof(dir));
	cr_assert_eq(mkdir(dir, 0750), 0, "mkdir %s: %s", dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	write_file(path, data->data, data->len);
	snprintf(path, sizeof(path), "%s/checkpoint", dir);
	write_file(path, ckpt->data, ckpt->len);
}

/* What opening a store and walking it gave, found in a child process. */
struct outcome {
	int open_rc;
	int walk_rc;
	bool crashed;
	uint64_t applied;
	struct content content;
	char errmsg[256];
};

static struct outcome open_in_child(const char *name, const struct storage_options *opts)
{
	struct outcome o;
	int pfd[2];
	pid_t pid;
	int status;

	memset(&o, 0, sizeof(o));
	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char dir[FIXTURE_PATH_MAX];
		struct storage_options so = *opts;
		struct storage *st = NULL;

		close(pfd[0]);
		so.path = fixture_path(&fx, name, dir, sizeof(dir));
		o.open_rc = storage_open(&st, &so, o.errmsg, sizeof(o.errmsg));
		if (o.open_rc == 0) {
			o.applied = storage_checkpoint_applied(st);
			o.walk_rc = walk(st, &o.content);
			storage_close(st);
		}
		if (write(pfd[1], &o, sizeof(o)) != (ssize_t)sizeof(o))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	ssize_t n = read(pfd[0], &o, sizeof(o));
	close(pfd[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (n != (ssize_t)sizeof(o) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		memset(&o, 0, sizeof(o));
		o.crashed = true;
	}
	return o;
}

/* Whether the image opened at exactly the checkpoint. */
static bool at_checkpoint(const struct outcome *o, struct content want, uint64_t applied)
{
	return !o->crashed && o->open_rc == 0 && o->walk_rc == 0 &&
	       o->content.digest == want.digest && o->content.entries == want.entries &&
	       o->applied == applied;
}

static void expect_at_checkpoint(const char *name, const struct storage_options *opts,
                                 struct content want, uint64_t applied)
{
	struct outcome o = open_in_child(name, opts);

	cr_assert(!o.crashed, "%s: the open crashed", name);
	cr_assert_eq(o.open_rc, 0, "%s: open: %s (%s)", name, wb_strerror(o.open_rc), o.errmsg);
	cr_assert_eq(o.walk_rc, 0, "%s: walk: %s", name, wb_strerror(o.walk_rc));
	cr_assert_eq(o.content.entries, want.entries, "%s: %llu entries, the checkpoint had %llu",
	             name, (unsigned long long)o.content.entries, (unsigned long long)want.entries);
	cr_assert_eq(o.content.digest, want.digest, "%s: content differs from the checkpoint's",
	             name);
	cr_assert_eq(o.applied, applied, "%s: applied %llu, want %llu", name,
	             (unsigned long long)o.applied, (unsigned long long)applied);
}

static void checkpoint(struct storage *st, uint64_t applied)
{
	char err[256] = "";
	int rc = storage_checkpoint(st, applied, err, sizeof(err));

	cr_assert_eq(rc, 0, "storage_checkpoint: %s (%s)", wb_strerror(rc), err);
	cr_assert_eq(storage_checkpoint_applied(st), applied);
}

/* A run of the store named name with opts: base content, a checkpoint
 * covering 7, then churn. *at_ck receives data.mdb as the checkpoint left it
 * on disk, *late data.mdb after the churn (as the page cache holds it: what a
 * killed process leaves), *ckpt the checkpoint file, *want the checkpoint's
 * content and *late_content the content after the churn. The store is
 * closed without a checkpoint at the end (an unclean stop for log mode). */
struct run {
	struct blob at_ck, late, ckpt;
	struct content want, late_content;
};

static struct run run_store(const char *name, const struct storage_options *opts)
{
	struct run r;
	struct storage *st = fixture_open(&fx, name, opts);

	base(st);
	checkpoint(st, 7);
	r.want = content_of(st);
	r.at_ck = read_in(name, "data.mdb");
	r.ckpt = read_in(name, "checkpoint");
	churn(st);
	r.late_content = content_of(st);
	r.late = read_in(name, "data.mdb");
	storage_close(st);
	cr_assert_neq(r.late_content.digest, r.want.digest, "the churn changed nothing");
	cr_assert_eq(r.at_ck.len, r.late.len, "data.mdb changed length (it is reserved)");
	return r;
}

static void run_free(struct run *r)
{
	free(r->at_ck.data);
	free(r->late.data);
	free(r->ckpt.data);
}

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* The pages that differ between the two copies, meta pages excluded. */
static size_t changed_pages(const struct run *r, size_t *out, size_t max)
{
	size_t ps = page_size();
	size_t n = 0;

	for (size_t p = 2; p < r->late.len / ps; p++)
		if (memcmp(r->at_ck.data + p * ps, r->late.data + p * ps, ps) != 0 && n < max)
			out[n++] = p;
	return n;
}

/* Copies page p of from into img: whole, or torn (its first half only; for
 * a meta page its first 96 bytes, which splits LMDB's MDB_meta between the
 * free list's root and the main root). */
static void copy_page(struct blob *img, const struct blob *from, size_t p, bool torn)
{
	size_t ps = page_size();

	memcpy(img->data + p * ps, from->data + p * ps, !torn ? ps : p < 2 ? 96 : ps / 2);
}

/* ------------------------------------------------------------ tests */

Test(checkpoint, reopen_after_checkpoint_restores_nothing)
{
	struct storage *st = fixture_open(&fx, "s", &LOG);

	cr_assert_eq(storage_checkpoint_applied(st), 0, "the first checkpoint covers 0");
	base(st);
	checkpoint(st, 9);
	struct content want = content_of(st);
	storage_close(st);

	struct blob before = read_in("s", "data.mdb");
	st = fixture_open(&fx, "s", &LOG);
	cr_assert_eq(storage_checkpoint_applied(st), 9);
	struct content got = content_of(st);
	storage_close(st);
	struct blob after = read_in("s", "data.mdb");

	cr_assert_eq(got.digest, want.digest);
	cr_assert_eq(got.entries, want.entries);
	/* A restore writes the checkpoint's meta into both slots; the slot
	 * of the transaction before it still holds that one. */
	cr_assert_eq(memcmp(before.data, after.data, 2 * page_size()), 0,
	             "the meta pages were written: a restore ran after a clean checkpoint");
	free(before.data);
	free(after.data);
}

Test(checkpoint, unclean_close_rolls_back_to_the_checkpoint)
{
	struct storage *st = fixture_open(&fx, "s", &LOG);

	base(st);
	checkpoint(st, 5);
	struct content want = content_of(st);
	churn(st);
	storage_close(st); /* no final checkpoint: as after a crash */

	st = fixture_open(&fx, "s", &LOG);
	cr_assert_eq(storage_checkpoint_applied(st), 5);
	struct content got = content_of(st);
	cr_assert_eq(got.entries, want.entries);
	cr_assert_eq(got.digest, want.digest, "the reopened store is not the checkpoint's");

	/* It goes on from there: commits, a checkpoint, a clean reopen. */
	fill(st, 5000, 10, 99);
	checkpoint(st, 6);
	want = content_of(st);
	storage_close(st);
	st = fixture_open(&fx, "s", &LOG);
	cr_assert_eq(storage_checkpoint_applied(st), 6);
	got = content_of(st);
	cr_assert_eq(got.digest, want.digest);
	storage_close(st);
}

Test(checkpoint, every_crash_image_opens_at_the_checkpoint)
{
	struct run r = run_store("s", &LOG);
	size_t ps = page_size();
	size_t changed[1024];
	size_t n = changed_pages(&r, changed, 1024);
	unsigned images = fixture_under_valgrind() ? 4 : 40;
	char name[32];

	cr_assert_gt(n, 20, "only %zu pages changed after the checkpoint", n);

	/* A killed process: every write made it. */
	make_image("killed", &r.late, &r.ckpt);
	expect_at_checkpoint("killed", &LOG, r.want, 7);

	/* The later commits wrote the meta slots, or the images below would
	 * only ever show LMDB the checkpoint's own. */
	cr_assert_neq(memcmp(r.at_ck.data, r.late.data, 2 * ps), 0);

	/* A power cut that kept both new meta pages and none of the data. */
	struct blob img = {malloc(r.at_ck.len), r.at_ck.len};
	cr_assert_not_null(img.data);
	memcpy(img.data, r.at_ck.data, img.len);
	copy_page(&img, &r.late, 0, false);
	copy_page(&img, &r.late, 1, false);
	make_image("metas_only", &img, &r.ckpt);
	expect_at_checkpoint("metas_only", &LOG, r.want, 7);

	/* Random subsets of the later pages, some torn, each meta slot old,
	 * new or torn. */
	uint64_t rng = 0x5eed;
	for (unsigned k = 0; k < images; k++) {
		memcpy(img.data, r.at_ck.data, img.len);
		for (size_t p = 0; p < 2; p++) {
			unsigned pick = (unsigned)(fixture_splitmix(&rng) % 3);

			if (pick > 0)
				copy_page(&img, &r.late, p, pick == 2);
		}
		for (size_t i = 0; i < n; i++) {
			uint64_t d = fixture_splitmix(&rng) % 8;

			if (d < 4)
				copy_page(&img, &r.late, changed[i], d == 3);
		}
		snprintf(name, sizeof(name), "img%u", k);
		make_image(name, &img, &r.ckpt);
		expect_at_checkpoint(name, &LOG, r.want, 7);
	}
	free(img.data);
	run_free(&r);
}

/* Negative control: without the pin, the commits after the checkpoint write
 * over pages its snapshot reaches, so restoring its meta over what a killed
 * process left gives another content, or none that can be read. */
Test(checkpoint, control_without_the_pin_the_checkpoint_is_overwritten)
{
	struct run r = run_store("s", &LOG_NO_PIN);

	make_image("killed", &r.late, &r.ckpt);
	struct outcome o = open_in_child("killed", &LOG_NO_PIN);
	cr_assert(!at_checkpoint(&o, r.want, 7),
	          "without the pin the checkpoint's pages survived the churn: the "
	          "images could not catch a missing pin");
	cr_log_info("no pin: crashed %d, open %s, walk %s, %s", o.crashed, wb_strerror(o.open_rc),
	            wb_strerror(o.walk_rc),
	            o.content.digest == r.want.digest ? "same content" : "other content");
	run_free(&r);
}

/* Negative control: without the restore, an image whose new meta pages made
 * it to disk but whose data pages did not opens at neither the checkpoint nor
 * the later state. The same image opens at the checkpoint with the restore. */
Test(checkpoint, control_without_the_restore_the_newer_meta_wins)
{
	struct run r = run_store("s", &LOG);
	struct blob img = {malloc(r.at_ck.len), r.at_ck.len};

	cr_assert_not_null(img.data);
	memcpy(img.data, r.at_ck.data, img.len);
	copy_page(&img, &r.late, 0, false);
	copy_page(&img, &r.late, 1, false);
	make_image("bare", &img, &r.ckpt);
	struct outcome o = open_in_child("bare", &LOG_NO_RESTORE);
	cr_assert(!at_checkpoint(&o, r.want, 7), "without the restore the image opened at the "
	                                         "checkpoint: it could not catch a missing "
	                                         "restore");
	cr_assert(o.crashed || o.open_rc != 0 || o.walk_rc != 0 ||
	                  o.content.digest != r.late_content.digest,
	          "the image held the later state: the data pages were not old");
	cr_log_info("no restore: crashed %d, open %s, walk %s", o.crashed, wb_strerror(o.open_rc),
	            wb_strerror(o.walk_rc));

	make_image("restored", &img, &r.ckpt);
	expect_at_checkpoint("restored", &LOG, r.want, 7);
	free(img.data);
	run_free(&r);
}

static struct outcome open_broken(const char *name, const struct blob *data, const void *ck,
                                  size_t cklen)
{
	struct blob c = {(uint8_t *)ck, cklen};

	make_image(name, data, &c);
	return open_in_child(name, &LOG);
}

Test(checkpoint, a_bad_checkpoint_file_is_refused)
{
	struct storage *st = fixture_open(&fx, "s", &LOG);

	base(st);
	checkpoint(st, 3);
	storage_close(st);
	struct blob data = read_in("s", "data.mdb");
	struct blob ck = read_in("s", "checkpoint");
	uint8_t *bad = malloc(ck.len);
	cr_assert_not_null(bad);

	memcpy(bad, ck.data, ck.len);
	bad[32 + 200] ^= 0x40; /* a byte of the meta page */
	struct outcome o = open_broken("flipped", &data, bad, ck.len);
	cr_assert_eq(o.open_rc, WB_E_CORRUPT, "%s (%s)", wb_strerror(o.open_rc), o.errmsg);
	cr_assert_not_null(strstr(o.errmsg, "checkpoint"), "%s", o.errmsg);
	cr_assert_not_null(strstr(o.errmsg, "checksum"), "%s", o.errmsg);

	o = open_broken("short", &data, ck.data, ck.len - 100);
	cr_assert_eq(o.open_rc, WB_E_CORRUPT, "%s (%s)", wb_strerror(o.open_rc), o.errmsg);
	cr_assert_not_null(strstr(o.errmsg, "checkpoint"), "%s", o.errmsg);

	o = open_broken("empty", &data, ck.data, 0);
	cr_assert_eq(o.open_rc, WB_E_CORRUPT, "%s (%s)", wb_strerror(o.open_rc), o.errmsg);

	/* A checkpoint beside a data file it was not taken of. */
	struct blob tiny = {data.data, 2 * page_size()};
	o = open_broken("foreign", &tiny, ck.data, ck.len);
	cr_assert_eq(o.open_rc, WB_E_CORRUPT, "%s (%s)", wb_strerror(o.open_rc), o.errmsg);
	cr_assert_not_null(strstr(o.errmsg, "not the data file"), "%s", o.errmsg);

	/* And one without a data file at all. */
	char dir[FIXTURE_PATH_MAX];
	char path[FIXTURE_PATH_MAX + 32];
	fixture_path(&fx, "nodata", dir, sizeof(dir));
	cr_assert_eq(mkdir(dir, 0750), 0);
	snprintf(path, sizeof(path), "%s/checkpoint", dir);
	write_file(path, ck.data, ck.len);
	o = open_in_child("nodata", &LOG);
	cr_assert_eq(o.open_rc, WB_E_CORRUPT, "%s (%s)", wb_strerror(o.open_rc), o.errmsg);

	/* Nothing was written into the data file of a refused store. */
	struct blob after = read_in("flipped", "data.mdb");
	cr_assert_eq(after.len, data.len);
	cr_assert_eq(memcmp(after.data, data.data, data.len), 0);
	free(after.data);
	free(bad);
	free(data.data);
	free(ck.data);
}

Test(checkpoint, modes_do_not_mix)
{
	struct storage *st = fixture_open(&fx, "sync", &(struct storage_options){.map_size = MAP});
	char err[256] = "";

	cr_assert_eq(storage_checkpoint(st, 1, err, sizeof(err)), WB_E_INVAL);
	cr_assert_eq(storage_checkpoint_applied(st), 0);
	base(st);
	struct content want = content_of(st);
	storage_close(st);

	/* A store used in sync mode takes its first checkpoint in log mode. */
	st = fixture_open(&fx, "sync", &LOG);
	cr_assert_eq(storage_checkpoint_applied(st), 0);
	cr_assert_eq(content_of(st).digest, want.digest);
	fill(st, 9000, 5, 3);
	storage_close(st);

	/* Back in sync mode, a log-mode store is refused: its newest state
	 * may be torn and its log is not replayed there. */
	struct outcome o = open_in_child("sync", &(struct storage_options){.map_size = MAP});
	cr_assert_eq(o.open_rc, WB_E_INVAL, "%s (%s)", wb_strerror(o.open_rc), o.errmsg);
	cr_assert_not_null(strstr(o.errmsg, "log mode"), "%s", o.errmsg);
}

static uint64_t file_size(const char *store)
{
	char dir[FIXTURE_PATH_MAX];
	char path[FIXTURE_PATH_MAX + 32];
	struct stat st;

	fixture_path(&fx, store, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	cr_assert_eq(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* The map grows several times between two checkpoints while the first one's
 * snapshot is pinned; the data file has its blocks up to the map each time,
 * and a crash still goes back to the pinned checkpoint. */
Test(checkpoint, grow_under_the_pin)
{
	const struct storage_options small = {.map_size = 256u << 10, .log_mode = true};
	struct storage *st = fixture_open(&fx, "s", &small);
	struct storage_stats ss;
	uint64_t next = 0;

	fill(st, next, 20, 1);
	next += 20;
	checkpoint(st, 11);
	struct content want = content_of(st);
	for (int grows = 0; grows < 4;) {
		if (storage_needs_room(st, 64u << 10)) {
			cr_assert_eq(storage_grow(st, 64u << 10), 0);
			grows++;
			cr_assert_eq(storage_stats(st, &ss), 0);
			cr_assert_geq(file_size("s"), ss.map_size,
			              "the data file (%llu) is not reserved up to the map (%llu)",
			              (unsigned long long)file_size("s"),
			              (unsigned long long)ss.map_size);
		}
		fill(st, next, 20, 1);
		next += 20;
	}
	cr_assert_eq(storage_stats(st, &ss), 0);
	cr_assert_geq(ss.grow_count, 4);
	struct content late = content_of(st);
	cr_assert_neq(late.entries, want.entries);
	storage_close(st);

	st = fixture_open(&fx, "s", &small);
	cr_assert_eq(storage_checkpoint_applied(st), 11);
	struct content got = content_of(st);
	cr_assert_eq(got.entries, want.entries);
	cr_assert_eq(got.digest, want.digest);
	/* Grown again after the restore, and checkpointed there. */
	fill(st, 70000, 200, 4);
	cr_assert_eq(storage_grow(st, 1u << 20), 0);
	fill(st, 80000, 200, 4);
	checkpoint(st, 12);
	want = content_of(st);
	storage_close(st);
	st = fixture_open(&fx, "s", &small);
	cr_assert_eq(content_of(st).digest, want.digest);
	storage_close(st);
}

/* A data file that cannot get its blocks (a file size limit here, which the
 * kernel reports as EFBIG like a full disk) fails the grow with WB_E_NOSPC
 * and leaves the map and the file as they were. */
Test(checkpoint, no_room_for_the_blocks_leaves_the_map)
{
	struct storage *st = fixture_open(&fx, "s", &LOG);
	struct storage_stats before;
	struct storage_stats after;
	struct rlimit old;
	uint64_t len = file_size("s");

	base(st);
	cr_assert_eq(storage_stats(st, &before), 0);
	cr_assert_eq(len, before.map_size, "the data file is not reserved up to the map");
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &(struct rlimit){len + 65536, old.rlim_max}), 0);
	int rc = storage_grow(st, 1u << 20);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	cr_assert_eq(rc, WB_E_NOSPC, "%s", wb_strerror(rc));
	cr_assert_eq(storage_stats(st, &after), 0);
	cr_assert_eq(after.map_size, before.map_size);
	cr_assert_eq(after.grow_count, before.grow_count);
	cr_assert_eq(file_size("s"), len, "the file kept a partial reservation");
	/* The store works on, and grows once there is room. */
	fill(st, 9000, 10, 5);
	checkpoint(st, 2);
	cr_assert_eq(storage_grow(st, 1u << 20), 0);
	fill(st, 9100, 10, 5);
	storage_close(st);
}
