/* End-to-end test of Backup and of restoring from it (docs/OPERATIONS.md,
 * "Backup and restore"): a real whizbangd takes appends and projection
 * commits from threads while a Backup copies it; the copy is then put into
 * the emptied data directory of a second server, which must hold every
 * acknowledged event up to the backup's last_position (ids and data), the
 * ledger up to its watermark, and read models that replay to the same
 * digest. Also: progress pushes arrive, a second Backup while one runs is
 * refused, and Backup writes only where the operator said: it is off
 * without --backup-dir, a path outside backup-dir, an existing name and a
 * symlink planted at the name are refused with nothing written, the copy is
 * 0700/0600 under umask 0, and a server does not start with a backup-dir
 * that others may write or that overlaps its data directory. Each test
 * has its own backup-dir, a new 0700 directory (bdir). The free-space
 * refusal is tried in test_backup_rules: a nearly full file system cannot
 * be made on demand here. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "e2e_util.h"
#include "optext.h"
#include "wb.h"

/* The store is filled to about this many bytes before the Backup, so that
 * the copy takes long enough for a second Backup to meet it. */
#define PRELOAD_BYTES (64u << 20)
#define PRELOAD_EVENT_SIZE 8192u
#define PRELOAD_BATCH 100u
/* Bounds of the writers that run during the Backup. */
#define LOAD_EVENTS_MAX 20000u
#define LOAD_COMMITS_MAX 2000u
#define LOAD_EVENT_SIZE 512u

/* The server the backup is restored into (the suite's is e2e_srv). */
static struct e2e_server srv2;

struct acked {
	uint8_t id[16];
	uint64_t position;
	uint64_t seed; /* the data is fill(seed) */
	int64_t at_ms; /* when the acknowledgement arrived */
};

struct load {
	struct acked *events;
	size_t nevents;
	uint64_t *commit_seq; /* the sequence each entity a-K was committed at */
	size_t ncommits;
	atomic_bool stop;
	int append_rc, commit_rc;
};

static struct load load;

/* The test's backup-dir (a new 0700 directory), and as realpath() has it. */
static char bdir[64];
static char bdir_real[PATH_MAX];

/* The extra arguments that give a server bdir as its backup-dir. */
static const char *const *with_bdir(void)
{
	static const char *args[3];
	args[0] = "--backup-dir";
	args[1] = bdir;
	args[2] = NULL;
	return args;
}

/* "<dir>/<name>" in buf. */
static const char *in(char *buf, size_t len, const char *dir, const char *name)
{
	cr_assert_lt((size_t)snprintf(buf, len, "%s/%s", dir, name), len);
	return buf;
}

/* The entries of dir but . and .. */
static size_t entries(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

static void make_id(uint8_t id[16], uint64_t seed)
{
	memset(id, 0, 16);
	memcpy(id, &seed, sizeof(seed));
	id[8] = 0xbb;
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* a version-4 shape */
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
}

/* Appends n events of size bytes with seeds from *seed on, recording them. */
static int append_batch(struct wb_client *c, const char *stream, size_t n, size_t size,
                        uint64_t *seed)
{
	struct wb_new_event evs[PRELOAD_BATCH];
	uint8_t ids[PRELOAD_BATCH][16];
	uint8_t *data = malloc(n * size);
	cr_assert_not_null(data);
	for (size_t i = 0; i < n; i++) {
		make_id(ids[i], *seed + i);
		fill(data + i * size, size, *seed + i);
		evs[i] = (struct wb_new_event){
		        .id = ids[i], .type = "Filled", .data = data + i * size, .data_len = size};
	}
	struct wb_append_result res;
	int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, evs, n, &res);
	int64_t now = e2e_now_ms();
	if (rc == 0) {
		for (size_t i = 0; i < n; i++) {
			struct acked *a = &load.events[load.nevents++];
			memcpy(a->id, ids[i], 16);
			a->position = res.first_position + i;
			a->seed = *seed + i;
			a->at_ms = now;
		}
		*seed += n;
	}
	free(data);
	return rc;
}

static uint64_t next_seed = 1;

static void *appender(void *arg)
{
	(void)arg;
	struct wb_client *c = e2e_client(&e2e_srv, "backup-appender");
	if (c == NULL) {
		load.append_rc = -1;
		return NULL;
	}
	size_t done = 0;
	while (!atomic_load(&load.stop) && done < LOAD_EVENTS_MAX) {
		char stream[32];
		snprintf(stream, sizeof(stream), "live-%zu", done % 7);
		int rc = append_batch(c, stream, 10, LOAD_EVENT_SIZE, &next_seed);
		if (rc != 0) {
			fprintf(stderr, "append: %s\n", wb_errmsg(c));
			load.append_rc = rc;
			break;
		}
		done += 10;
	}
	wb_close(c);
	return NULL;
}

/* Leases a sequence for projection "bk", commits "upsert Acct a-K" with
 * ACK_APPLIED, and records the sequence. */
static int commit_one(struct wb_client *c, size_t k)
{
	char text[160];
	snprintf(text, sizeof(text), "upsert Acct \"a-%zu\" {n: %zu, grp: \"g%zu\"}", k, k, k % 5);
	Whizbang__V1__OpList *ops;
	struct optext_error err;
	int rc = optext_parse_ops(text, &ops, &err);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", text, err.message);
		return rc;
	}
	struct wb_lease_args la = {.projection = "bk", .count = 1};
	struct wb_lease_grant g;
	size_t n;
	rc = wb_lease(c, &la, &g, 1, &n);
	struct wb_commit_result cres;
	if (rc == 0)
		rc = wb_commit(c, g.sequence, g.token, ops, true, false, &cres);
	optext_free_ops(ops);
	if (rc != 0) {
		fprintf(stderr, "lease/commit: %s\n", wb_errmsg(c));
		return rc;
	}
	load.commit_seq[k] = cres.sequence;
	load.ncommits = k + 1;
	return 0;
}

static void *committer(void *arg)
{
	(void)arg;
	struct wb_client *c = e2e_client(&e2e_srv, "backup-committer");
	if (c == NULL) {
		load.commit_rc = -1;
		return NULL;
	}
	for (size_t k = load.ncommits; !atomic_load(&load.stop) && k < LOAD_COMMITS_MAX; k++) {
		int rc = commit_one(c, k);
		if (rc != 0) {
			load.commit_rc = rc;
			break;
		}
	}
	wb_close(c);
	return NULL;
}

/* ---------------------------------------------------------------- progress */

struct progress {
	size_t pushes;
	uint64_t last_bytes;
	bool rising;
	int second_rc; /* what a second Backup got, asked at the first push */
	char second_msg[256];
	char second_path[128];
	bool last_path_ok; /* the last push named bdir/copy */
};

static void progress_cb(void *arg, const struct wb_backup_result *p)
{
	struct progress *pr = arg;
	if (p->bytes < pr->last_bytes)
		pr->rising = false;
	pr->last_bytes = p->bytes;
	char want[PATH_MAX + 300];
	pr->last_path_ok = strcmp(p->path, in(want, sizeof(want), bdir_real, "copy")) == 0;
	if (pr->pushes++ > 0)
		return;
	/* The first Backup is running now: a second one is refused. */
	struct wb_client *c2 = e2e_client(&e2e_srv, "backup-second");
	if (c2 == NULL) {
		pr->second_rc = -1;
		return;
	}
	pr->second_rc = wb_backup(c2, pr->second_path, NULL, NULL, NULL);
	snprintf(pr->second_msg, sizeof(pr->second_msg), "%s", wb_errmsg(c2));
	wb_close(c2);
}

/* ---------------------------------------------------------------- helpers */

static void empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s", dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (strcmp(e->d_name, "wal") == 0) { /* the log's segments */
			empty_dir(p);
			cr_assert_eq(rmdir(p), 0, "cannot remove %s", p);
			continue;
		}
		cr_assert_eq(unlink(p), 0, "cannot remove %s (a directory?)", p);
	}
	closedir(d);
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb");
	cr_assert_not_null(in, "%s", from);
	FILE *out = fopen(to, "wb");
	cr_assert_not_null(out, "%s", to);
	char buf[1 << 16];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		cr_assert_eq(fwrite(buf, 1, n, out), n);
	cr_assert_eq(fclose(out), 0);
	fclose(in);
}

/* Restores the backup at path as docs/OPERATIONS.md says, into srv2:
 * stop the server, put the copy's data.mdb into an emptied data directory,
 * start. Returns a client of the restored server (closed by the caller). */
static struct wb_client *restore(const char *path)
{
	e2e_start_ok(&srv2, NULL);
	e2e_stop_ok(&srv2);
	empty_dir(srv2.data_dir);
	char from[256], to[256];
	snprintf(from, sizeof(from), "%s/data.mdb", path);
	snprintf(to, sizeof(to), "%s/data.mdb", srv2.data_dir);
	copy_file(from, to);
	e2e_restart_ok(&srv2);
	return e2e_client_ok(&srv2, "backup-restored");
}

static int by_position(const void *a, const void *b)
{
	uint64_t x = ((const struct acked *)a)->position, y = ((const struct acked *)b)->position;
	return x < y ? -1 : x > y;
}

/* The ledger entries 1..upto of c, packed one by one into *out. */
static size_t read_ledger(struct wb_client *c, uint64_t upto, uint8_t ***out, size_t **lens)
{
	size_t n = 0, cap = 0;
	uint8_t **bufs = NULL;
	size_t *ls = NULL;
	uint64_t from = 1;
	while (from <= upto) {
		Whizbang__V1__ReadLedgerResult *r;
		cr_assert_eq(wb_read_ledger(c, from, 0, &r), 0, "read ledger: %s", wb_errmsg(c));
		for (size_t i = 0; i < r->n_entries && r->entries[i]->sequence <= upto; i++) {
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				bufs = realloc(bufs, cap * sizeof(*bufs));
				ls = realloc(ls, cap * sizeof(*ls));
				cr_assert(bufs != NULL && ls != NULL);
			}
			ls[n] = whizbang__v1__ledger_entry__get_packed_size(r->entries[i]);
			bufs[n] = malloc(ls[n] + 1);
			whizbang__v1__ledger_entry__pack(r->entries[i], bufs[n]);
			n++;
		}
		bool end = r->end || r->n_entries == 0;
		cr_assert(r->next_sequence > from || end, "the ledger read does not advance");
		from = r->next_sequence;
		wb_ledger_free(r);
		if (end)
			break;
	}
	*out = bufs;
	*lens = ls;
	return n;
}

static bool same_entity(struct wb_client *a, struct wb_client *b, const char *id)
{
	Whizbang__V1__Entity *ea, *eb;
	cr_assert_eq(wb_get_entity(a, "Acct", id, &ea), 0, "%s: %s", id, wb_errmsg(a));
	cr_assert_eq(wb_get_entity(b, "Acct", id, &eb), 0, "%s: %s", id, wb_errmsg(b));
	size_t la = whizbang__v1__entity__get_packed_size(ea);
	size_t lb = whizbang__v1__entity__get_packed_size(eb);
	uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
	whizbang__v1__entity__pack(ea, pa);
	whizbang__v1__entity__pack(eb, pb);
	bool same = la == lb && memcmp(pa, pb, la) == 0;
	free(pa);
	free(pb);
	wb_entity_free(ea);
	wb_entity_free(eb);
	return same;
}

static void init(void)
{
	snprintf(bdir, sizeof(bdir), "/tmp/wb-backups-XXXXXX");
	cr_assert_not_null(mkdtemp(bdir), "mkdtemp: %s", strerror(errno));
	cr_assert_not_null(realpath(bdir, bdir_real));
}

static void fini(void)
{
	e2e_suite_fini();
	e2e_cleanup(&srv2);
	e2e_remove_tree(bdir);
	free(load.events);
	free(load.commit_seq);
}

TestSuite(backup, .init = init, .fini = fini, .timeout = 60);

/* ---------------------------------------------------------------- tests */

/* Backup {name} into bdir; fails the test unless it succeeds. Returns the
 * result, whose path must be the new directory in bdir. */
static struct wb_backup_result backup_ok(struct wb_client *c, const char *path, const char *name)
{
	struct wb_backup_result res;
	int rc = wb_backup(c, path, NULL, NULL, &res);
	cr_assert_eq(rc, 0, "backup %s: %s (%s)", path, wb_error_name(rc), wb_errmsg(c));
	char want[PATH_MAX + 300];
	cr_assert_str_eq(res.path, in(want, sizeof(want), bdir_real, name));
	cr_assert_gt(res.bytes, 0);
	return res;
}

/* Backup path must be refused with code and a message that says says. */
static void refused(struct wb_client *c, const char *path, int code, const char *says)
{
	int rc = wb_backup(c, path, NULL, NULL, NULL);
	cr_assert_eq(rc, code, "'%s': %s (%s), not %s", path, wb_error_name(rc), wb_errmsg(c),
	             wb_error_name(code));
	cr_assert_not_null(strstr(wb_errmsg(c), says), "'%s': '%s' does not say '%s'", path,
	                   wb_errmsg(c), says);
}

Test(backup, off_without_backup_dir)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "backup-off");
	refused(c, "nightly", WB_BAD_REQUEST, "Backup is off on this server");
	refused(c, "nightly", WB_BAD_REQUEST, "backup-dir");
	char p[PATH_MAX + 300];
	refused(c, in(p, sizeof(p), bdir, "nightly"), WB_BAD_REQUEST, "Backup is off");
	cr_assert_eq(entries(bdir), 0);
	wb_close(c);
	e2e_suite_stop();

	/* The control: the same requests succeed once the operator sets
	 * backup-dir. */
	cr_assert_eq(e2e_set_args(&e2e_srv, with_bdir()), 0);
	e2e_suite_restart();
	c = e2e_suite_client("backup-on");
	struct wb_backup_result res = backup_ok(c, "nightly", "nightly");
	struct stat st;
	cr_assert_eq(stat(in(p, sizeof(p), res.path, "data.mdb"), &st), 0, "%s", p);
	cr_assert_eq((uint64_t)st.st_size, res.bytes, "bytes names the size of data.mdb");
	backup_ok(c, in(p, sizeof(p), bdir, "nightly-2"), "nightly-2");
	e2e_suite_stop_client(c);
}

Test(backup, a_path_outside_backup_dir_is_refused)
{
	struct wb_client *c = e2e_suite_start_client(with_bdir(), "backup-outside");
	char elsewhere[PATH_MAX], up[PATH_MAX], sub[PATH_MAX], dot[PATH_MAX], trail[PATH_MAX];
	char data[PATH_MAX];
	in(elsewhere, sizeof(elsewhere), e2e_srv.dir, "x");
	in(up, sizeof(up), bdir, "../x");
	in(sub, sizeof(sub), bdir, "a/b");
	in(dot, sizeof(dot), bdir, "./x");
	in(trail, sizeof(trail), bdir, "..");
	in(data, sizeof(data), e2e_srv.data_dir, "x");
	const char *const bad[] = {
	        elsewhere, data,  up,  sub,  dot,  trail, bdir,
	        "../x",    "a/b", ".", "..", "x/", "/",   "/x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Each refusal names backup-dir. */
		refused(c, bad[i], WB_BAD_REQUEST, bdir);
		refused(c, bad[i], WB_BAD_REQUEST, "backups go only into backup-dir");
	}
	/* More than 255 bytes is not a NAME. */
	char longname[300];
	memset(longname, 'n', 256);
	longname[256] = '\0';
	refused(c, longname, WB_BAD_REQUEST, "backup-dir");
	struct stat st;
	cr_assert_neq(stat(elsewhere, &st), 0, "%s was written", elsewhere);
	cr_assert_neq(stat(data, &st), 0, "%s was written", data);
	cr_assert_eq(entries(bdir), 0, "a refused path left something in backup-dir");

	/* The control: a NAME, and backup-dir/NAME both as configured and as
	 * resolved, with trailing slashes. */
	longname[255] = '\0';
	backup_ok(c, longname, longname);
	backup_ok(c, "x", "x");
	char p[PATH_MAX + 300];
	snprintf(p, sizeof(p), "%s/y/", bdir);
	backup_ok(c, p, "y");
	snprintf(p, sizeof(p), "%s//z", bdir_real);
	backup_ok(c, p, "z");
	cr_assert_eq(entries(bdir), 4);
	e2e_suite_stop_client(c);
}

Test(backup, a_symlink_at_the_name_is_never_followed)
{
	struct wb_client *c = e2e_suite_start_client(with_bdir(), "backup-symlink");
	/* One link to a directory another user could read, one to a name
	 * that does not exist yet. */
	char target[PATH_MAX], absent[PATH_MAX], link[PATH_MAX + 300], p[PATH_MAX + 300];
	in(target, sizeof(target), e2e_srv.dir, "exposed");
	in(absent, sizeof(absent), e2e_srv.dir, "absent");
	cr_assert_eq(mkdir(target, 0777), 0);
	cr_assert_eq(symlink(target, in(link, sizeof(link), bdir, "linked")), 0);
	cr_assert_eq(symlink(absent, in(link, sizeof(link), bdir, "dangling")), 0);

	refused(c, "linked", WB_BAD_REQUEST, "exists");
	refused(c, in(p, sizeof(p), bdir, "linked"), WB_BAD_REQUEST, "never overwrites");
	refused(c, "dangling", WB_BAD_REQUEST, "exists");
	cr_assert_eq(entries(target), 0, "the copy was written through the symlink");
	struct stat st;
	cr_assert_neq(lstat(absent, &st), 0, "the dangling link's target was created");
	cr_assert_eq(lstat(link, &st), 0);
	cr_assert(S_ISLNK(st.st_mode), "the link was replaced");

	/* The control: a free name beside them is written. */
	backup_ok(c, "plain", "plain");
	cr_assert_eq(entries(target), 0);
	e2e_suite_stop_client(c);
}

Test(backup, an_existing_name_is_never_overwritten)
{
	struct wb_client *c = e2e_suite_start_client(with_bdir(), "backup-exists");
	struct wb_backup_result first = backup_ok(c, "once", "once");
	char file[PATH_MAX + 300], p[PATH_MAX + 300];
	in(file, sizeof(file), first.path, "data.mdb");
	struct stat before, after;
	cr_assert_eq(stat(file, &before), 0);
	/* More data, so that a second copy would differ. */
	uint64_t seed = 1;
	load.events = calloc(PRELOAD_BATCH, sizeof(*load.events));
	cr_assert_not_null(load.events);
	cr_assert_eq(append_batch(c, "more", PRELOAD_BATCH, PRELOAD_EVENT_SIZE, &seed), 0);

	refused(c, "once", WB_BAD_REQUEST, "exists: a backup never overwrites one");
	refused(c, in(p, sizeof(p), bdir, "once"), WB_BAD_REQUEST, "never overwrites");
	cr_assert_eq(stat(file, &after), 0);
	cr_assert_eq(after.st_size, before.st_size, "the first backup was rewritten");
	cr_assert_eq(after.st_ino, before.st_ino);
	cr_assert_eq(entries(first.path), 1);
	/* An empty directory and a file of that name are not reused either. */
	cr_assert_eq(mkdir(in(p, sizeof(p), bdir, "empty"), 0700), 0);
	refused(c, "empty", WB_BAD_REQUEST, "exists");
	cr_assert_eq(entries(p), 0);
	FILE *f = fopen(in(p, sizeof(p), bdir, "file"), "w");
	cr_assert_not_null(f);
	fclose(f);
	refused(c, "file", WB_BAD_REQUEST, "exists");
	cr_assert_eq(stat(p, &after), 0);
	cr_assert_eq(after.st_size, 0);

	/* The control: a new name holds the new data. */
	struct wb_backup_result second = backup_ok(c, "twice", "twice");
	cr_assert_gt(second.bytes, first.bytes);
	e2e_suite_stop_client(c);
}

/* The Umask: line of /proc/PID/status. */
static unsigned umask_of(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	unsigned mask = 07777;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Umask: %o", &mask) == 1)
			break;
	fclose(f);
	return mask;
}

Test(backup, the_copy_is_0700_and_0600_under_umask_0)
{
	/* backup-dir does not exist yet: the server makes it. */
	char made[PATH_MAX], p[PATH_MAX + 300];
	in(made, sizeof(made), bdir, "made");
	const char *const args[] = {"--backup-dir", made, NULL};
	mode_t old = umask(0);
	e2e_suite_start(args);
	umask(old);
	/* The control: the server really runs under umask 0, which would make
	 * mkdir(0750) and open(0640) what they ask. */
	cr_assert_eq(umask_of(e2e_srv.pid), 0, "the server's umask is %04o", umask_of(e2e_srv.pid));
	struct stat st;
	cr_assert_eq(stat(made, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0700, "backup-dir was made %04o", st.st_mode & 07777);

	struct wb_client *c = e2e_suite_client("backup-modes");
	struct wb_backup_result res;
	cr_assert_eq(wb_backup(c, "m", NULL, NULL, &res), 0, "%s", wb_errmsg(c));
	cr_assert_str_eq(res.path, in(p, sizeof(p), made, "m"));
	cr_assert_eq(lstat(res.path, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0700, "the backup's directory is %04o",
	             st.st_mode & 07777);
	cr_assert_eq(lstat(in(p, sizeof(p), res.path, "data.mdb"), &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0600, "data.mdb is %04o", st.st_mode & 07777);
	cr_assert_eq(entries(res.path), 1, "only data.mdb");
	e2e_suite_stop_client(c);
}

Test(backup, a_server_does_not_start_with_an_unsafe_backup_dir)
{
	static const struct {
		mode_t mode;
		const char *says;
	} unsafe[] = {
	        {0770, "is writable by its group (mode 0770)"},
	        {0703, "is writable by others (mode 0703)"},
	        {01777, "is writable by its group and others (mode 1777)"},
	        {02730, "is writable by its group (mode 2730)"},
	};
	for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
		cr_assert_eq(chmod(bdir, unsafe[i].mode), 0);
		cr_assert_neq(e2e_start(&e2e_srv, with_bdir()), 0, "started with mode %04o",
		              (unsigned)unsafe[i].mode);
		cr_assert_eq(e2e_log_count(&e2e_srv, "event=startup_failed"), 1);
		cr_assert_eq(e2e_log_count(&e2e_srv, unsafe[i].says), 1,
		             "the log does not say '%s'", unsafe[i].says);
		cr_assert_eq(e2e_log_count(&e2e_srv, bdir), 1);
		e2e_cleanup(&e2e_srv);
	}
	/* A file is not a directory. */
	char file[PATH_MAX];
	FILE *f = fopen(in(file, sizeof(file), bdir, "file"), "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(chmod(bdir, 0700), 0);
	const char *const file_args[] = {"--backup-dir", file, NULL};
	cr_assert_neq(e2e_start(&e2e_srv, file_args), 0);
	cr_assert_eq(e2e_log_count(&e2e_srv, "it is not a directory"), 1);
	e2e_cleanup(&e2e_srv);

	/* The control: with bdir 0700 the same server starts. */
	e2e_suite_start(with_bdir());
	e2e_suite_stop();

	/* Inside the data directory, or holding it: refused, and a directory
	 * the refused start made is gone again. */
	char inside[PATH_MAX];
	in(inside, sizeof(inside), e2e_srv.data_dir, "backups");
	const char *const inside_args[] = {"--backup-dir", inside, NULL};
	cr_assert_eq(e2e_set_args(&e2e_srv, inside_args), 0);
	cr_assert_neq(e2e_restart(&e2e_srv), 0);
	cr_assert_eq(e2e_log_count(&e2e_srv, "is inside the data directory"), 1);
	struct stat st;
	cr_assert_neq(stat(inside, &st), 0, "the refused start left %s", inside);
	const char *const holding_args[] = {"--backup-dir", e2e_srv.dir, NULL};
	cr_assert_eq(e2e_set_args(&e2e_srv, holding_args), 0);
	cr_assert_neq(e2e_restart(&e2e_srv), 0);
	cr_assert_eq(e2e_log_count(&e2e_srv, "is inside backup-dir"), 1);
	const char *const same_args[] = {"--backup-dir", e2e_srv.data_dir, NULL};
	cr_assert_eq(e2e_set_args(&e2e_srv, same_args), 0);
	cr_assert_neq(e2e_restart(&e2e_srv), 0);
	cr_assert_eq(e2e_log_count(&e2e_srv, "is inside the data directory"), 2);

	/* The control: the same data directory with bdir starts. */
	cr_assert_eq(e2e_set_args(&e2e_srv, with_bdir()), 0);
	e2e_suite_restart();
	e2e_suite_stop();
}

/* `whizbang backup NAME` prints the backup's full path, and says why a
 * Backup was refused. */
Test(backup, the_cli_prints_the_path_the_server_wrote)
{
	struct cli_run r = cli_suite_start(with_bdir());
	char want[PATH_MAX + 300];
	CLI_EXPECT(&r, 0, "backup NAME", "backup", "nightly");
	snprintf(want, sizeof(want), "path: %s/nightly/data.mdb\n", bdir_real);
	cli_expect_has(r.out, want, "the text form");
	CLI_EXPECT(&r, 0, "backup --json", "--json", "backup", "weekly");
	snprintf(want, sizeof(want), "{\"path\":\"%s/weekly\",", bdir_real);
	cli_expect_has(r.out, want, "the JSON form");
	CLI(&r, "backup", "nightly");
	cr_assert_neq(r.status, 0, "an existing name: exit 0");
	cli_expect_has(r.err, "never overwrites", "an existing name");
	CLI(&r, "backup", "../x");
	cr_assert_neq(r.status, 0, "../x: exit 0");
	cli_expect_has(r.err, "backups go only into backup-dir", "../x");
	cr_assert_eq(entries(bdir), 2);
	cli_suite_stop(&r);
}

/* backup-dir is checked again at each Backup: made unsafe while the server
 * runs, it is refused and nothing is created; made safe again, it is
 * used. */
Test(backup, a_backup_dir_made_unsafe_later_is_refused)
{
	struct wb_client *c = e2e_suite_start_client(with_bdir(), "backup-later");
	cr_assert_eq(chmod(bdir, 0777), 0);
	refused(c, "late", WB_INTERNAL, "is writable by its group and others");
	cr_assert_eq(entries(bdir), 0);
	cr_assert_eq(chmod(bdir, 0700), 0);
	backup_ok(c, "late", "late");
	e2e_suite_stop_client(c);
}

Test(backup, under_load_then_restored_holds_every_acknowledged_write)
{
	e2e_suite_start(with_bdir());
	load.events = calloc(PRELOAD_BYTES / PRELOAD_EVENT_SIZE + LOAD_EVENTS_MAX + 16,
	                     sizeof(*load.events));
	load.commit_seq = calloc(LOAD_COMMITS_MAX, sizeof(*load.commit_seq));
	cr_assert(load.events != NULL && load.commit_seq != NULL);

	/* Enough data that the copy takes a while, and some read models. */
	struct wb_client *c = e2e_suite_client("backup-main");
	for (size_t done = 0; done < PRELOAD_BYTES / PRELOAD_EVENT_SIZE; done += PRELOAD_BATCH)
		cr_assert_eq(
		        append_batch(c, "preload", PRELOAD_BATCH, PRELOAD_EVENT_SIZE, &next_seed),
		        0, "%s", wb_errmsg(c));
	for (size_t k = 0; k < 20; k++)
		cr_assert_eq(commit_one(c, k), 0);
	Whizbang__V1__IndexResult *ir;
	cr_assert_eq(wb_create_index(c, "Acct", "grp", &ir), 0, "%s", wb_errmsg(c));
	wb_index_result_free(ir);

	pthread_t ta, tc;
	cr_assert_eq(pthread_create(&ta, NULL, appender, NULL), 0);
	cr_assert_eq(pthread_create(&tc, NULL, committer, NULL), 0);
	while (load.nevents < PRELOAD_BYTES / PRELOAD_EVENT_SIZE + 50 && load.append_rc == 0)
		e2e_sleep_ms(5);

	struct progress pr = {.rising = true};
	snprintf(pr.second_path, sizeof(pr.second_path), "copy2");
	struct wb_backup_result res;
	int64_t t0 = e2e_now_ms();
	int rc = wb_backup(c, "copy", progress_cb, &pr, &res);
	int64_t t1 = e2e_now_ms();
	cr_assert_eq(rc, 0, "backup: %s (%s)", wb_error_name(rc), wb_errmsg(c));
	/* Writes go on for a little after the copy, then stop. */
	e2e_sleep_ms(100);
	atomic_store(&load.stop, true);
	pthread_join(ta, NULL);
	pthread_join(tc, NULL);
	cr_assert_eq(load.append_rc, 0);
	cr_assert_eq(load.commit_rc, 0);

	cr_assert_geq(pr.pushes, 1, "no progress push arrived");
	cr_assert(pr.rising, "progress went backwards");
	cr_assert_leq(pr.last_bytes, res.bytes);
	cr_assert_eq(pr.second_rc, WB_RESOURCE_EXHAUSTED, "a second Backup got %s (%s)",
	             wb_error_name(pr.second_rc), pr.second_msg);
	cr_assert_not_null(strstr(pr.second_msg, "already running"), "%s", pr.second_msg);
	size_t during = 0;
	for (size_t i = 0; i < load.nevents; i++)
		during += load.events[i].at_ms > t0 && load.events[i].at_ms < t1;
	cr_assert_gt(during, 0, "no append was acknowledged while the backup ran (%lld ms)",
	             (long long)(t1 - t0));
	cr_log_info("backup: %llu bytes in %.1f ms, %zu progress pushes, %zu appends during it, "
	            "watermark %llu, last position %llu",
	            (unsigned long long)res.bytes, (double)res.micros / 1000.0, pr.pushes, during,
	            (unsigned long long)res.watermark, (unsigned long long)res.last_position);
	cr_assert_geq(res.last_position, PRELOAD_BYTES / PRELOAD_EVENT_SIZE);
	cr_assert_geq(res.watermark, 21, "the preloaded commits and the index are below it");

	char path[PATH_MAX + 300];
	cr_assert_str_eq(res.path, in(path, sizeof(path), bdir_real, "copy"));
	cr_assert_eq(pr.last_path_ok, true, "a progress push named another path");

	/* Restore as docs/OPERATIONS.md says. */
	struct wb_client *r = restore(res.path);

	/* Every acknowledged event up to last_position, with its id and data. */
	struct e2e_event *evs;
	size_t nev;
	cr_assert_eq(e2e_read_all(r, 0, NULL, NULL, 0, &evs, &nev), 0, "%s", wb_errmsg(r));
	qsort(load.events, load.nevents, sizeof(*load.events), by_position);
	size_t j = 0, checked = 0;
	uint8_t *want = malloc(PRELOAD_EVENT_SIZE);
	for (size_t i = 0; i < load.nevents && load.events[i].position <= res.last_position; i++) {
		const struct acked *a = &load.events[i];
		while (j < nev && evs[j].position < a->position)
			j++;
		cr_assert(j < nev && evs[j].position == a->position,
		          "acknowledged position %llu is missing from the restored store",
		          (unsigned long long)a->position);
		cr_assert_eq(memcmp(evs[j].id, a->id, 16), 0, "position %llu: another id",
		             (unsigned long long)a->position);
		fill(want, evs[j].data_len, a->seed);
		cr_assert_eq(memcmp(evs[j].data, want, evs[j].data_len), 0,
		             "position %llu: other data", (unsigned long long)a->position);
		checked++;
	}
	free(want);
	cr_assert_geq(checked, PRELOAD_BYTES / PRELOAD_EVENT_SIZE + 50);
	e2e_events_free(evs, nev);

	/* The ledger up to the watermark, entry for entry. */
	uint8_t **la, **lb;
	size_t *lla, *llb;
	size_t na = read_ledger(c, res.watermark, &la, &lla);
	size_t nb = read_ledger(r, res.watermark, &lb, &llb);
	cr_assert_eq(na, res.watermark, "the live ledger has %zu entries up to %llu", na,
	             (unsigned long long)res.watermark);
	cr_assert_eq(nb, na, "the restored ledger has %zu of %zu entries", nb, na);
	for (size_t i = 0; i < na; i++) {
		cr_assert(lla[i] == llb[i] && memcmp(la[i], lb[i], lla[i]) == 0,
		          "ledger entry %zu differs", i + 1);
		free(la[i]);
		free(lb[i]);
	}
	free(la);
	free(lb);
	free(lla);
	free(llb);

	/* The read models: they replay to the same digest, and every entity
	 * committed at or below the watermark reads as on the live server (each
	 * was written once). */
	Whizbang__V1__VerifyResult *v;
	cr_assert_eq(wb_verify(r, &v), 0, "verify: %s", wb_errmsg(r));
	cr_assert(v->match, "the restored read models do not replay to the same digest");
	cr_assert_geq(v->watermark, res.watermark);
	wb_verify_free(v);
	size_t below = 0;
	for (size_t k = 0; k < load.ncommits; k++) {
		if (load.commit_seq[k] > res.watermark)
			continue;
		char id[32];
		snprintf(id, sizeof(id), "a-%zu", k);
		cr_assert(same_entity(c, r, id), "entity %s differs", id);
		below++;
	}
	cr_assert_geq(below, 20);
	/* A query through the index answers the same entities below the
	 * watermark on both. */
	Whizbang__V1__Expr *where;
	struct optext_error err;
	cr_assert_eq(optext_parse_where("grp == \"g3\"", &where, &err), 0);
	Whizbang__V1__QueryResult *qa, *qb;
	cr_assert_eq(wb_query(c, "Acct", where, "grp == \"g3\"", NULL, 0, &qa), 0, "%s",
	             wb_errmsg(c));
	cr_assert_eq(wb_query(r, "Acct", where, "grp == \"g3\"", NULL, 0, &qb), 0, "%s",
	             wb_errmsg(r));
	size_t ia = 0, ib = 0, matched = 0;
	for (; ia < qa->n_entities; ia++) {
		const char *id = qa->entities[ia]->id;
		size_t k = (size_t)strtoul(id + 2, NULL, 10);
		if (load.commit_seq[k] > res.watermark)
			continue;
		while (ib < qb->n_entities && strcmp(qb->entities[ib]->id, id) < 0)
			ib++;
		cr_assert(ib < qb->n_entities && strcmp(qb->entities[ib]->id, id) == 0,
		          "%s is missing from the restored query", id);
		matched++;
	}
	cr_assert_geq(matched, 4);
	wb_query_free(qa);
	wb_query_free(qb);
	optext_free_expr(where);

	wb_close(r);
	wb_close(c);
	e2e_stop_ok(&srv2);
	e2e_suite_stop();
}

static void sigterm_cb(void *arg, const struct wb_backup_result *p)
{
	(void)p;
	int *sent = arg;
	if ((*sent)++ == 0)
		kill(e2e_srv.pid, SIGTERM);
}

/* A SIGTERM while the copy runs: the server stops taking requests, lets
 * the copy complete, answers it, and exits 0; the copy restores. */
Test(backup, a_shutdown_waits_for_the_copy)
{
	e2e_suite_start(with_bdir());
	load.events = calloc(PRELOAD_BYTES / PRELOAD_EVENT_SIZE + 16, sizeof(*load.events));
	cr_assert_not_null(load.events);
	struct wb_client *c = e2e_suite_client("backup-sigterm");
	for (size_t done = 0; done < PRELOAD_BYTES / PRELOAD_EVENT_SIZE; done += PRELOAD_BATCH)
		cr_assert_eq(
		        append_batch(c, "preload", PRELOAD_BATCH, PRELOAD_EVENT_SIZE, &next_seed),
		        0, "%s", wb_errmsg(c));
	int sent = 0;
	struct wb_backup_result res;
	int rc = wb_backup(c, "copy", sigterm_cb, &sent, &res);
	cr_assert_eq(sent >= 1, true, "no progress push arrived");
	cr_assert_eq(rc, 0, "backup: %s (%s)", wb_error_name(rc), wb_errmsg(c));
	cr_assert_eq(res.last_position, load.nevents);
	wb_close(c);
	e2e_suite_wait_exit();
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=backup_done"), 1);

	struct wb_client *r = restore(res.path);
	struct e2e_event *evs;
	size_t nev;
	cr_assert_eq(e2e_read_all(r, 0, NULL, NULL, 0, &evs, &nev), 0, "%s", wb_errmsg(r));
	cr_assert_eq(nev, load.nevents);
	for (size_t i = 0; i < nev; i++)
		cr_assert_eq(memcmp(evs[i].id, load.events[i].id, 16), 0, "position %zu", i + 1);
	e2e_events_free(evs, nev);
	wb_close(r);
	e2e_stop_ok(&srv2);
}
