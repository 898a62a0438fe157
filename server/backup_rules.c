#include "backup_rules.h"

#include <stdio.h>
#include <string.h>

#include "wb_error.h"

/* The margin of backup_space_needed(): what writers may commit between the
 * check and the copy's snapshot, and the blocks the file system spends on
 * the file's own bookkeeping. */
#define SPACE_MARGIN_FIXED (1ull << 20)
#define SPACE_MARGIN_SHIFT 6 /* and 1/64 of the store */

/* The length of s without its trailing slashes; "/" keeps its one. */
static size_t trimmed_len(const char *s, size_t n)
{
	while (n > 1 && s[n - 1] == '/')
		n--;
	return n;
}

/* Whether s[0..n) is a NAME: 1..BACKUP_NAME_MAX bytes, no '/', not "." or
 * "..". */
static bool is_name(const char *s, size_t n)
{
	if (n == 0 || n > BACKUP_NAME_MAX || memchr(s, '/', n) != NULL)
		return false;
	return !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

/* Whether s[0..n) is dir as a directory name (trailing slashes of dir
 * ignored; s has none). */
static bool same_dir(const char *s, size_t n, const char *dir)
{
	if (dir == NULL || dir[0] == '\0')
		return false;
	return trimmed_len(dir, strlen(dir)) == n && memcmp(s, dir, n) == 0;
}

int backup_name(const char *path, const char *dir, const char *real_dir, char *name)
{
	size_t n = strlen(path);
	const char *base = path;
	size_t blen = n;
	if (path[0] == '/') {
		n = trimmed_len(path, n);
		const char *slash = path + n;
		while (slash > path && slash[-1] != '/')
			slash--;
		/* slash is one past the last '/' before NAME; the parent is
		 * what comes before it, without its trailing slashes. */
		size_t plen = trimmed_len(path, (size_t)(slash - path));
		if (!same_dir(path, plen, dir) && !same_dir(path, plen, real_dir))
			return WB_BAD_REQUEST;
		base = slash;
		blen = (size_t)(path + n - slash);
	}
	if (!is_name(base, blen))
		return WB_BAD_REQUEST;
	memcpy(name, base, blen);
	name[blen] = '\0';
	return 0;
}

bool backup_path_within(const char *a, const char *b)
{
	size_t bl = strlen(b);
	if (bl == 1 && b[0] == '/')
		return true;
	return strncmp(a, b, bl) == 0 && (a[bl] == '\0' || a[bl] == '/');
}

int backup_dir_check(const struct stat *st, uid_t euid, const char *what, char *msg, size_t len)
{
	if (!S_ISDIR(st->st_mode)) {
		snprintf(msg, len, "%s is not a directory", what);
		return WB_BAD_REQUEST;
	}
	if ((st->st_mode & 022) != 0) {
		snprintf(msg, len,
		         "%s is writable by %s (mode %04o): others could put symlinks in it or "
		         "read the copies; make it 0700 (chmod 0700)",
		         what,
		         (st->st_mode & 022) == 022 ? "its group and others"
		         : (st->st_mode & 020) != 0 ? "its group"
		                                    : "others",
		         (unsigned)(st->st_mode & 07777));
		return WB_BAD_REQUEST;
	}
	if (st->st_uid != euid) {
		snprintf(msg, len,
		         "%s is owned by uid %lu, not by the server's user (uid %lu): its owner "
		         "could put symlinks in it or read the copies; chown it to the server's "
		         "user",
		         what, (unsigned long)st->st_uid, (unsigned long)euid);
		return WB_BAD_REQUEST;
	}
	return 0;
}

uint64_t backup_space_needed(uint64_t used)
{
	uint64_t margin = SPACE_MARGIN_FIXED + (used >> SPACE_MARGIN_SHIFT);
	return used > UINT64_MAX - margin ? UINT64_MAX : used + margin;
}

uint64_t backup_space_free(const struct statvfs *vfs)
{
	uint64_t blocks = (uint64_t)vfs->f_bavail, size = (uint64_t)vfs->f_frsize;
	if (size != 0 && blocks > UINT64_MAX / size)
		return UINT64_MAX;
	return blocks * size;
}

int backup_space_check(const struct statvfs *vfs, uint64_t used, const char *dir, char *msg,
                       size_t len)
{
	uint64_t free_bytes = backup_space_free(vfs), need = backup_space_needed(used);
	if (free_bytes >= need)
		return 0;
	snprintf(msg, len,
	         "not enough free space for the backup in %s: %llu bytes (%.1f MiB) are free, "
	         "the copy needs %llu (%.1f MiB: the store's %llu used bytes and a margin)",
	         dir, (unsigned long long)free_bytes, (double)free_bytes / 1048576.0,
	         (unsigned long long)need, (double)need / 1048576.0, (unsigned long long)used);
	return WB_RESOURCE_EXHAUSTED;
}
