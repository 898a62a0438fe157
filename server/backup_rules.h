/* The rules of Backup that need no disk: which request paths name a backup
 * in backup-dir, which directories may be backup-dir, and whether a file
 * system has room for a copy. srv_backup.c does the I/O and asks these; they
 * are pure (no libuv, no system calls), so test_backup_rules can try every
 * edge, including a file system that is nearly full.
 *
 * The model: the operator names one directory, backup-dir, that only the
 * server's user can write. A Backup names a new directory NAME in it; the
 * server creates it (mode 0700) and writes NAME/data.mdb (mode 0600) into it,
 * never overwriting anything and never following a symlink. */
#ifndef WB_BACKUP_RULES_H
#define WB_BACKUP_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

/* The longest NAME of a backup in bytes (NAME_MAX of Linux file systems). */
#define BACKUP_NAME_MAX 255

/* Finds the backup NAME that a Backup request's path names. path is either
 * a plain NAME, or an absolute path whose parent is exactly backup-dir: the
 * parent (with trailing slashes removed, and trailing slashes of path
 * ignored) must be byte for byte dir (backup-dir as configured) or real_dir
 * (as realpath() resolved it at start), each without its trailing slashes
 * (either may be "" or NULL, which matches nothing).
 * NAME is 1..BACKUP_NAME_MAX bytes, holds no '/', and is not "." or "..".
 * Anything else ("", a relative path with a '/', "..", another absolute
 * directory, a path with "." or ".." in it) is refused. On success writes
 * NAME, NUL-terminated, into name (BACKUP_NAME_MAX + 1 bytes) and returns 0;
 * otherwise returns WB_BAD_REQUEST and name is not written. Keeps no
 * reference to its arguments. */
int backup_name(const char *path, const char *dir, const char *real_dir, char *name);

/* Whether the absolute, resolved path a is b or lies inside b (both without
 * trailing slashes, except "/" itself). "/srv/ab" is not inside "/srv/a". */
bool backup_path_within(const char *a, const char *b);

/* Checks st (from stat of a directory the server is to write backups into):
 * it is a directory, no one but its owner may write it (mode & 022 is 0:
 * others could swap in symlinks or read the copies), and it is owned by
 * euid, the server's user (its owner could do the same). Returns 0, or
 * WB_BAD_REQUEST with a sentence about what (named by what) fails, and how
 * to fix it, in msg[0..len). */
int backup_dir_check(const struct stat *st, uid_t euid, const char *what, char *msg, size_t len);

/* The free bytes a copy of a store whose map uses used bytes needs: used
 * (a compacting copy is never larger) plus a margin of 1 MiB and 1/64 of
 * used, for what is committed before the copy's snapshot and the file
 * system's own blocks. Saturates at UINT64_MAX. */
uint64_t backup_space_needed(uint64_t used);

/* The bytes of vfs that an unprivileged user may still write (f_bavail
 * blocks of f_frsize bytes; saturating). */
uint64_t backup_space_free(const struct statvfs *vfs);

/* Checks that the file system vfs (statvfs of backup-dir, named dir in the
 * message) has room for a copy of a store using used bytes. Returns 0, or
 * WB_RESOURCE_EXHAUSTED with a sentence in msg[0..len) saying how many bytes
 * are free and how many the copy needs. */
int backup_space_check(const struct statvfs *vfs, uint64_t used, const char *dir, char *msg,
                       size_t len);

#endif
