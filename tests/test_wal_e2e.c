/* Log-first durability (issue 11), end to end against a real whizbangd:
 *
 *   - after a SIGKILL the records written since the last checkpoint are
 *     replayed: every acknowledged append, lease commit and consumer group
 *     is there, and `whizbangd check` finds the store sound;
 *   - a damaged record before the log's end stops the start with a message
 *     naming the segment and the offset (and `check` reports it), while the
 *     same log undamaged starts;
 *   - a torn tail (half a record after the last whole one) is cut, logged,
 *     and nothing acknowledged is lost;
 *   - a full disk answers RESOURCE_EXHAUSTED, reads go on, and appends work
 *     again once space is freed (on a small tmpfs; skipped where mounting is
 *     not allowed);
 *   - a store moves from log mode to sync mode and back with its data.
 *
 * Checkpoints are pushed far away (--checkpoint-bytes 1G, an interval of a
 * day) so that the log holds everything the test wrote. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "e2e_util.h"
#include "optext.h"
#include "wal.h"

TestSuite(wal_e2e, .fini = e2e_suite_fini, .timeout = 180);

static const char *const far_checkpoints[] = {"--checkpoint-bytes", "1G",
                                              "--checkpoint-interval-ms", "86400000", NULL};

enum { APPENDS = 120 };

static void event_id(uint32_t i, uint8_t id[16])
{
	memset(id, 0, 16);
	id[0] = 0x11;
	put_u32(id + 4, i);
	id[15] = 0x5a;
}

/* Appends APPENDS single events (stream wal-<i % 5>), all acknowledged. */
static void append_all(struct wb_client *c, uint32_t from)
{
	for (uint32_t i = from; i < from + APPENDS; i++) {
		uint8_t id[16];
		char data[64], stream[32];
		event_id(i, id);
		snprintf(data, sizeof(data), "event %u", i);
		snprintf(stream, sizeof(stream), "wal-%u", i % 5);
		struct wb_new_event ev = {
		        .id = id, .type = "Noted", .data = data, .data_len = strlen(data)};
		struct wb_append_result r;
		cr_assert_eq(wb_append(c, stream, WB_EXPECT_ANY, 0, &ev, 1, &r), 0, "append %u: %s",
		             i, wb_errmsg(c));
		cr_assert_eq(r.first_position, (uint64_t)i + 1);
	}
}

/* Every event 0..n is there, at position i + 1, with its id and data. */
static void expect_all(struct wb_client *c, uint32_t n)
{
	struct e2e_event *evs;
	size_t got;
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &evs, &got), 0);
	cr_assert_eq(got, n, "%zu events stored, %u acknowledged", got, n);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t id[16];
		char data[64];
		event_id(i, id);
		snprintf(data, sizeof(data), "event %u", i);
		cr_assert_eq(evs[i].position, (uint64_t)i + 1);
		cr_assert(memcmp(evs[i].id, id, 16) == 0, "event %u has another id", i);
		cr_assert_eq(evs[i].data_len, strlen(data));
		cr_assert(memcmp(evs[i].data, data, evs[i].data_len) == 0);
	}
	e2e_events_free(evs, got);
}

/* Runs `whizbangd check --data-dir dir`; returns its exit status, and its
 * output in out. */
static int run_check(const char *dir, char *out, size_t outlen)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "\"%s\" check --data-dir %s 2>&1", getenv("WHIZBANGD"), dir);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The path of the log's oldest segment. */
static void first_segment(const char *data_dir, char *out, size_t len)
{
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/wal", data_dir);
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "no log directory in %s", data_dir);
	char best[256] = "";
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n != 20 || strcmp(de->d_name + 16, ".wal") != 0)
			continue;
		if (best[0] == '\0' || strcmp(de->d_name, best) < 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	}
	closedir(d);
	cr_assert(best[0] != '\0', "no segment in %s", dir);
	snprintf(out, len, "%s/%s", dir, best);
}

/* The offset where the valid records of segment path end. */
static long records_end(const char *path)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	long off = WAL_SEGMENT_HEADER;
	uint8_t h[WAL_RECORD_HEADER];
	for (;;) {
		cr_assert_eq(fseek(f, off, SEEK_SET), 0);
		if (fread(h, 1, sizeof(h), f) != sizeof(h) || get_u32(h) != WAL_RECORD_MAGIC)
			break;
		off += (long)((WAL_RECORD_HEADER + get_u32(h + 8) + 7) & ~7u);
	}
	fclose(f);
	return off;
}

static void patch(const char *path, long off, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void read_at(const char *path, long off, void *bytes, size_t n)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

Test(wal_e2e, sigkill_replays_the_log)
{
	struct wb_client *c = e2e_suite_start_client(far_checkpoints, "wal");
	append_all(c, 0);

	/* A lease committed with an upsert, applied; a consumer group. */
	struct wb_lease_args la = {.projection = "walp", .count = 1, .duration_ms = 60000};
	struct wb_lease_grant g;
	size_t ng;
	cr_assert_eq(wb_lease(c, &la, &g, 1, &ng), 0, "%s", wb_errmsg(c));
	Whizbang__V1__OpList *ops = NULL;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops("upsert Thing \"t-1\" {n: 7}", &ops, &err), 0, "%s",
	             err.message);
	struct wb_commit_result cr;
	cr_assert_eq(wb_commit(c, g.sequence, g.token, ops, true, false, &cr), 0, "%s",
	             wb_errmsg(c));
	optext_free_ops(ops);
	wb_close(c);

	e2e_kill(&e2e_srv);
	e2e_suite_restart();
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=log_replayed"), 1);
	c = e2e_suite_client("wal");
	expect_all(c, APPENDS);
	Whizbang__V1__Entity *e = NULL;
	cr_assert_eq(wb_get_entity(c, "Thing", "t-1", &e), 0, "the applied commit is lost: %s",
	             wb_errmsg(c));
	wb_entity_free(e);
	/* The restart made the lease's sequence final before it: new work
	 * goes on after it. */
	append_all(c, APPENDS);
	e2e_suite_stop_client(c);

	char out[8192];
	int st = run_check(e2e_srv.data_dir, out, sizeof(out));
	cr_assert_eq(st, 0, "check failed:\n%s", out);
	cr_assert(strstr(out, "is sound") != NULL, "%s", out);
}

/* Leaves a store whose log holds APPENDS records after its checkpoint. */
static void killed_with_a_log(void)
{
	struct wb_client *c = e2e_suite_start_client(far_checkpoints, "wal");
	append_all(c, 0);
	wb_close(c);
	e2e_kill(&e2e_srv);
}

Test(wal_e2e, a_damaged_record_stops_the_start)
{
	killed_with_a_log();
	char seg[300];
	first_segment(e2e_srv.data_dir, seg, sizeof(seg));
	/* A byte in the body of the first record: a durable record, since
	 * more batches follow it. */
	long at = WAL_SEGMENT_HEADER + WAL_RECORD_HEADER + 3;
	uint8_t was, bad;
	read_at(seg, at, &was, 1);
	bad = (uint8_t)(was ^ 0x40);
	patch(seg, at, &bad, 1);

	cr_assert_neq(e2e_restart(&e2e_srv), 0, "the server started on a damaged log");
	const char *name = strrchr(seg, '/') + 1;
	cr_assert_geq(e2e_log_count(&e2e_srv, name), 1, "the refusal does not name %s", name);
	char out[8192];
	cr_assert_eq(run_check(e2e_srv.data_dir, out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, name) != NULL, "check does not name the segment: %s", out);

	/* The control: the same log undamaged starts, with everything. */
	patch(seg, at, &was, 1);
	e2e_suite_restart();
	struct wb_client *c = e2e_suite_client("wal");
	expect_all(c, APPENDS);
	e2e_suite_stop_client(c);
}

Test(wal_e2e, a_torn_tail_is_cut)
{
	killed_with_a_log();
	char seg[300];
	first_segment(e2e_srv.data_dir, seg, sizeof(seg));
	long end = records_end(seg);
	cr_assert_gt(end, (long)WAL_SEGMENT_HEADER);
	/* Half a record: a header that promises more than is there, with the
	 * next sequence, as a power cut in the middle of a write leaves. */
	uint8_t h[WAL_RECORD_HEADER + 8];
	memset(h, 0, sizeof(h));
	put_u32(h, WAL_RECORD_MAGIC);
	put_u32(h + 4, 0xdeadbeef);
	put_u32(h + 8, 200);
	put_u64(h + 16, 100000);
	put_u64(h + 24, 100000);
	memset(h + WAL_RECORD_HEADER, 0x77, 8);
	patch(seg, end, h, sizeof(h));

	e2e_suite_restart();
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=log_tail_cut"), 1);
	struct wb_client *c = e2e_suite_client("wal");
	expect_all(c, APPENDS);
	append_all(c, APPENDS);
	e2e_suite_stop_client(c);
}

Test(wal_e2e, switching_durability_keeps_the_data)
{
	killed_with_a_log();
	/* Sync mode recovers the log first, then leaves log mode. */
	static const char *const sync_args[] = {"--durability", "sync", NULL};
	cr_assert_eq(e2e_set_args(&e2e_srv, sync_args), 0);
	e2e_suite_restart();
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=log_mode_left"), 1);
	struct wb_client *c = e2e_suite_client("wal");
	expect_all(c, APPENDS);
	append_all(c, APPENDS);
	wb_close(c);
	e2e_kill(&e2e_srv);

	cr_assert_eq(e2e_set_args(&e2e_srv, far_checkpoints), 0);
	e2e_suite_restart();
	c = e2e_suite_client("wal");
	expect_all(c, 2 * APPENDS);
	e2e_suite_stop_client(c);
}

/* ------------------------------------------------------------ a full disk */

static char mnt[64] = "";

static void unmount(void)
{
	if (mnt[0] != '\0') {
		umount2(mnt, MNT_DETACH);
		rmdir(mnt);
		mnt[0] = '\0';
	}
	e2e_suite_fini();
}

Test(wal_e2e, a_full_disk_refuses_then_recovers, .fini = unmount)
{
	snprintf(mnt, sizeof(mnt), "/tmp/wbfull-XXXXXX");
	cr_assert_not_null(mkdtemp(mnt));
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=24m") != 0) {
		int e = errno;
		rmdir(mnt);
		mnt[0] = '\0';
		cr_skip_test("cannot mount a small tmpfs here (%s)", strerror(e));
	}
	char data[128], filler[128];
	snprintf(data, sizeof(data), "%s/data", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	const char *const args[] = {
	        "--data-dir",         data, "--map-size", "1M", "--wal-segment-size", "1M",
	        "--checkpoint-bytes", "1M", NULL};
	struct wb_client *c = e2e_suite_start_client(args, "full");

	/* Fill the disk with events until the server says it is full. */
	static char blob[60000];
	memset(blob, 'x', sizeof(blob));
	uint64_t acked = 0;
	int code = 0;
	for (int i = 0; i < 2000 && code == 0; i++) {
		struct wb_new_event ev = {.type = "Big", .data = blob, .data_len = sizeof(blob)};
		struct wb_append_result r;
		int rc = wb_append(c, "full", WB_EXPECT_ANY, 0, &ev, 1, &r);
		if (rc == 0)
			acked = r.last_position;
		else
			code = rc;
	}
	cr_assert_eq(code, WB_RESOURCE_EXHAUSTED, "the appends ended with %d: %s", code,
	             wb_errmsg(c));
	cr_assert(strstr(wb_errmsg(c), "disk") != NULL, "the error does not name the disk: %s",
	          wb_errmsg(c));
	cr_assert_gt(acked, 0);

	/* Reads are served. */
	struct wb_page page;
	cr_assert_eq(wb_read_stream(c, "full", 0, false, 10, &page), 0, "%s", wb_errmsg(c));
	wb_page_free(&page);

	/* Space comes back: free what a filler would have held by shrinking
	 * the filesystem's use — here by raising its size. */
	cr_assert_eq(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=96m"), 0, "%s",
	             strerror(errno));
	(void)filler;
	struct wb_new_event ev = {.type = "Big", .data = blob, .data_len = sizeof(blob)};
	struct wb_append_result r;
	int rc = -1;
	for (int i = 0; i < 50 && rc != 0; i++) {
		rc = wb_append(c, "full", WB_EXPECT_ANY, 0, &ev, 1, &r);
		if (rc != 0)
			e2e_sleep_ms(100);
	}
	cr_assert_eq(rc, 0, "appends did not resume: %s", wb_errmsg(c));
	cr_assert_eq(r.last_position, acked + 1, "a refused append took a position");
	wb_close(c);

	/* Everything acknowledged survives a kill. */
	e2e_kill(&e2e_srv);
	e2e_suite_restart();
	c = e2e_suite_client("full");
	cr_assert_eq(wb_read_stream(c, "full", acked - 1, false, 10, &page), 0, "%s", wb_errmsg(c));
	cr_assert_eq(page.count, 2);
	wb_page_free(&page);
	e2e_suite_stop_client(c);
}
