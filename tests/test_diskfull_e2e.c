/* A full disk against a real whizbangd, on a small tmpfs mounted in a mount
 * namespace of the test's own (root only; skipped, saying so, where it
 * cannot be made): a write that needs new space is answered
 * RESOURCE_EXHAUSTED naming the disk, while reads go on; after SIGKILL the
 * server starts on the full disk and serves reads; once space is freed,
 * writes work again and nothing acknowledged was lost. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "e2e_util.h"
#include "wb.h"
#include "wb_error.h"

TestSuite(diskfull_e2e, .fini = e2e_suite_fini, .timeout = 180);

#define FS_MB 96

static char mnt[] = "/tmp/wb-diskfull-XXXXXX";

/* A tmpfs of FS_MB MiB at mnt, seen by this process and its children only.
 * false when this process may not make one (not root, no namespaces). */
static bool small_disk(void)
{
	if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0)
		return false;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return false;
	cr_assert_not_null(mkdtemp(mnt));
	char opts[40];
	snprintf(opts, sizeof(opts), "size=%dm", FS_MB);
	return mount("tmpfs", mnt, "tmpfs", 0, opts) == 0;
}

/* Fills the disk but for about keep bytes with a file named name. */
static void fill(const char *name, uint64_t keep)
{
	struct statvfs v;
	cr_assert_eq(statvfs(mnt, &v), 0);
	uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
	char path[200];
	snprintf(path, sizeof(path), "%s/%s", mnt, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	static char block[1 << 16];
	for (uint64_t left = avail > keep ? avail - keep : 0; left > 0;) {
		size_t n = left < sizeof(block) ? (size_t)left : sizeof(block);
		ssize_t w = write(fd, block, n);
		if (w <= 0)
			break;
		left -= (uint64_t)w;
	}
	close(fd);
}

static int append_big(struct wb_client *c, int i)
{
	static char data[32768];
	memset(data, 'x', sizeof(data));
	struct wb_new_event ev = {.type = "Big", .data = data, .data_len = sizeof(data)};
	char stream[32];
	snprintf(stream, sizeof(stream), "s-%d", i % 4);
	struct wb_append_result res;
	return wb_append(c, stream, WB_EXPECT_ANY, 0, &ev, 1, &res);
}

Test(diskfull_e2e, writes_are_refused_naming_the_disk_and_the_server_starts_on_it)
{
	if (!small_disk())
		cr_skip_test("needs root and a mount namespace for a small tmpfs (not a failure "
		             "of the server; CI runs it as root)");
	char data_dir[200];
	snprintf(data_dir, sizeof(data_dir), "%s/data", mnt);
	/* Small log segments and map steps, so that new space is needed often. */
	const char *args[] = {"--data-dir",
	                      data_dir,
	                      "--wal-segment-size",
	                      "1M",
	                      "--wal-spare-segments",
	                      "0",
	                      "--map-size",
	                      "8M",
	                      NULL};
	struct wb_client *c = e2e_suite_start_client(args, "diskfull");
	int acked = 0;
	for (; acked < 40; acked++)
		cr_assert_eq(append_big(c, acked), 0, "%s", wb_errmsg(c));
	fill("filler", 256 << 10);

	/* Appends until one needs space that is not there. */
	int rc = 0;
	for (int i = 0; i < 2000 && rc == 0; i++) {
		rc = append_big(c, acked);
		if (rc == 0)
			acked++;
	}
	cr_assert_eq(rc, WB_RESOURCE_EXHAUSTED, "%s: %s", wb_error_name(rc), wb_errmsg(c));
	cr_assert_not_null(strstr(wb_errmsg(c), "disk"), "%s", wb_errmsg(c));
	/* Reads go on. */
	struct e2e_event *evs;
	size_t n;
	cr_assert_eq(e2e_read_all(c, 1000, NULL, NULL, 0, &evs, &n), 0);
	cr_assert_eq(n, (size_t)acked);
	e2e_events_free(evs, n);
	wb_close(c);

	/* A crash on the full disk; the start needs no new space. */
	e2e_kill(&e2e_srv);
	e2e_suite_restart();
	c = e2e_suite_client("diskfull-after");
	cr_assert_eq(e2e_read_all(c, 1000, NULL, NULL, 0, &evs, &n), 0);
	cr_assert_eq(n, (size_t)acked, "acknowledged events lost across the crash");
	e2e_events_free(evs, n);
	for (int i = 0; i < 2000 && (rc = append_big(c, acked)) == 0; i++)
		acked++;
	cr_assert_eq(rc, WB_RESOURCE_EXHAUSTED, "%s", wb_errmsg(c));

	/* Space again: writes work, and nothing acknowledged is missing. */
	char filler[200];
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	cr_assert_eq(unlink(filler), 0);
	for (int i = 0; i < 20; i++, acked++)
		cr_assert_eq(append_big(c, acked), 0, "%s", wb_errmsg(c));
	cr_assert_eq(e2e_read_all(c, 1000, NULL, NULL, 0, &evs, &n), 0);
	cr_assert_eq(n, (size_t)acked);
	e2e_events_free(evs, n);
	wb_close(c);
	e2e_suite_stop();
	cr_assert_geq(e2e_log_count(&e2e_srv, "disk"), 1u);
}
