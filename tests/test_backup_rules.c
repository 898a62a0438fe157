/* The rules of Backup that need no disk (server/backup_rules.h): which
 * request paths name a backup in backup-dir, which directories may be
 * backup-dir, and the free-space check, given file systems of any size (a
 * full one cannot be made on demand for the end-to-end test, so the refusal's
 * arithmetic and message are tried here). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "backup_rules.h"
#include "wb_error.h"

TestSuite(backup_rules);

#define DIR_CONF "/srv/backups/"
#define DIR_REAL "/mnt/disk2/backups"

/* backup_name() with the two spellings of backup-dir above. */
static int name_of(const char *path, char *name)
{
	return backup_name(path, DIR_CONF, DIR_REAL, name);
}

Test(backup_rules, a_plain_name_or_a_path_whose_parent_is_backup_dir)
{
	static const struct {
		const char *path, *name;
	} ok[] = {
	        {"nightly", "nightly"},
	        {"2026-11-27T03:00", "2026-11-27T03:00"},
	        {"...", "..."},
	        {".hidden", ".hidden"},
	        {"a b", "a b"},
	        {"/srv/backups/nightly", "nightly"},
	        {"/srv/backups/nightly/", "nightly"},
	        {"/srv/backups//nightly//", "nightly"},
	        {"/mnt/disk2/backups/nightly", "nightly"},
	        {"/mnt/disk2/backups/nightly/", "nightly"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char name[BACKUP_NAME_MAX + 1] = "untouched";
		cr_assert_eq(name_of(ok[i].path, name), 0, "%s was refused", ok[i].path);
		cr_assert_str_eq(name, ok[i].name, "%s", ok[i].path);
	}
}

Test(backup_rules, anything_else_is_refused_and_name_is_not_written)
{
	static const char *const bad[] = {
	        "",
	        ".",
	        "..",
	        "../x",
	        "a/b",
	        "./x",
	        "x/",
	        "/",
	        "//",
	        "/tmp/x",
	        "/srv/backups",
	        "/srv/backups/",
	        "/srv/backups/.",
	        "/srv/backups/..",
	        "/srv/backups/../x",
	        "/srv/backups/./x",
	        "/srv/backups/a/b",
	        "/srv/backupsX/x",
	        "/srv/backup/x",
	        "/srv/x",
	        "/mnt/disk2/backups/../../etc",
	        "srv/backups/x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[BACKUP_NAME_MAX + 1] = "untouched";
		cr_assert_eq(name_of(bad[i], name), WB_BAD_REQUEST, "'%s' was allowed as '%s'",
		             bad[i], name);
		cr_assert_str_eq(name, "untouched", "%s", bad[i]);
	}
}

Test(backup_rules, a_name_is_at_most_255_bytes)
{
	char path[600], name[BACKUP_NAME_MAX + 1];
	memset(path, 'n', BACKUP_NAME_MAX);
	path[BACKUP_NAME_MAX] = '\0';
	cr_assert_eq(name_of(path, name), 0);
	cr_assert_eq(strlen(name), BACKUP_NAME_MAX);
	path[BACKUP_NAME_MAX] = 'n';
	path[BACKUP_NAME_MAX + 1] = '\0';
	cr_assert_eq(name_of(path, name), WB_BAD_REQUEST, "256 bytes were allowed");
	/* The same through the absolute form. */
	int n = snprintf(path, sizeof(path), "/srv/backups/");
	memset(path + n, 'n', BACKUP_NAME_MAX);
	path[n + BACKUP_NAME_MAX] = '\0';
	cr_assert_eq(name_of(path, name), 0);
	path[n + BACKUP_NAME_MAX] = 'n';
	path[n + BACKUP_NAME_MAX + 1] = '\0';
	cr_assert_eq(name_of(path, name), WB_BAD_REQUEST);
}

Test(backup_rules, only_the_configured_spellings_of_backup_dir_match)
{
	char name[BACKUP_NAME_MAX + 1];
	/* Each spelling on its own. */
	cr_assert_eq(backup_name("/srv/backups/x", "/srv/backups", "", name), 0);
	cr_assert_eq(backup_name("/srv/backups/x", "", "/srv/backups", name), 0);
	cr_assert_eq(backup_name("/srv/backups/x", "/srv/backups///", NULL, name), 0);
	/* Neither set: only a plain NAME. */
	cr_assert_eq(backup_name("/srv/backups/x", "", "", name), WB_BAD_REQUEST);
	cr_assert_eq(backup_name("x", "", "", name), 0);
	/* A prefix of backup-dir, or backup-dir as a prefix, is not it. */
	cr_assert_eq(backup_name("/srv/back/x", "/srv/backups", "", name), WB_BAD_REQUEST);
	cr_assert_eq(backup_name("/srv/backups/sub/x", "/srv/backups", "", name), WB_BAD_REQUEST);
}

Test(backup_rules, within_compares_whole_components)
{
	cr_assert(backup_path_within("/data", "/data"));
	cr_assert(backup_path_within("/data/backups", "/data"));
	cr_assert(backup_path_within("/data/a/b", "/data"));
	cr_assert(backup_path_within("/anything", "/"));
	cr_assert(!backup_path_within("/data2", "/data"));
	cr_assert(!backup_path_within("/dat", "/data"));
	cr_assert(!backup_path_within("/srv/data", "/data"));
	cr_assert(!backup_path_within("/", "/data"));
}

Test(backup_rules, backup_dir_is_a_directory_only_its_owner_writes)
{
	char msg[512];
	struct stat st = {.st_mode = S_IFDIR | 0700, .st_uid = 1000};
	cr_assert_eq(backup_dir_check(&st, 1000, "backup-dir /b", msg, sizeof(msg)), 0);
	st.st_mode = S_IFDIR | 0755; /* others may read and enter, not write */
	cr_assert_eq(backup_dir_check(&st, 1000, "backup-dir /b", msg, sizeof(msg)), 0);
	st.st_mode = S_IFDIR | 0750;
	cr_assert_eq(backup_dir_check(&st, 1000, "backup-dir /b", msg, sizeof(msg)), 0);

	static const struct {
		mode_t mode;
		uid_t uid;
		const char *says;
	} bad[] = {
	        {S_IFDIR | 0770, 1000, "writable by its group (mode 0770)"},
	        {S_IFDIR | 02770, 1000, "writable by its group (mode 2770)"},
	        {S_IFDIR | 0702, 1000, "writable by others (mode 0702)"},
	        {S_IFDIR | 01777, 1000, "writable by its group and others (mode 1777)"},
	        {S_IFDIR | 0700, 1001, "owned by uid 1001, not by the server's user (uid 1000)"},
	        {S_IFREG | 0600, 1000, "not a directory"},
	        {S_IFLNK | 0777, 1000, "not a directory"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st = (struct stat){.st_mode = bad[i].mode, .st_uid = bad[i].uid};
		msg[0] = '\0';
		cr_assert_eq(backup_dir_check(&st, 1000, "backup-dir /b", msg, sizeof(msg)),
		             WB_BAD_REQUEST, "mode %o uid %u was allowed", (unsigned)bad[i].mode,
		             (unsigned)bad[i].uid);
		cr_assert_not_null(strstr(msg, "backup-dir /b"), "%s", msg);
		cr_assert_not_null(strstr(msg, bad[i].says), "'%s' does not say '%s'", msg,
		                   bad[i].says);
	}
}

Test(backup_rules, space_needed_is_the_used_bytes_and_a_margin)
{
	cr_assert_eq(backup_space_needed(0), 1u << 20);
	cr_assert_eq(backup_space_needed(64u << 20), (64u << 20) + (1u << 20) + (1u << 20));
	cr_assert_eq(backup_space_needed(UINT64_MAX - 10), UINT64_MAX, "saturates");
	struct statvfs v = {.f_bavail = 10, .f_frsize = 4096, .f_bfree = 1000};
	cr_assert_eq(backup_space_free(&v), 40960, "what an unprivileged user may write");
	v = (struct statvfs){.f_bavail = (fsblkcnt_t)-1, .f_frsize = 1u << 16};
	cr_assert_eq(backup_space_free(&v), UINT64_MAX, "saturates");
}

Test(backup_rules, too_little_space_is_refused_saying_how_much)
{
	char msg[512];
	uint64_t used = 100u << 20; /* needs 100 + 1 + 1.5625 MiB */
	uint64_t need = backup_space_needed(used);
	/* Exactly enough, in 4 KiB blocks rounded up: allowed. */
	struct statvfs v = {.f_frsize = 4096, .f_bavail = (fsblkcnt_t)((need + 4095) / 4096)};
	cr_assert_eq(backup_space_check(&v, used, "/b", msg, sizeof(msg)), 0);
	/* One block less: refused, with both figures. */
	v.f_bavail = (fsblkcnt_t)(need / 4096 - 1);
	uint64_t free_bytes = (uint64_t)v.f_bavail * 4096;
	cr_assert_eq(backup_space_check(&v, used, "/b", msg, sizeof(msg)), WB_RESOURCE_EXHAUSTED);
	char want[128];
	snprintf(want, sizeof(want), "%llu bytes", (unsigned long long)free_bytes);
	cr_assert_not_null(strstr(msg, want), "'%s' does not say the free %s", msg, want);
	snprintf(want, sizeof(want), "needs %llu", (unsigned long long)need);
	cr_assert_not_null(strstr(msg, want), "'%s' does not say the %s", msg, want);
	cr_assert_not_null(strstr(msg, "/b"), "%s", msg);
	cr_assert_not_null(strstr(msg, "104857600 used bytes"), "%s", msg);
	/* A full disk, and an empty store on it. */
	v.f_bavail = 0;
	cr_assert_eq(backup_space_check(&v, 0, "/b", msg, sizeof(msg)), WB_RESOURCE_EXHAUSTED);
	cr_assert_not_null(strstr(msg, ": 0 bytes (0.0 MiB) are free"), "%s", msg);
}
