/* The power-cut interposer: an LD_PRELOAD library that records every
 * mutating file operation of the process under one directory (trace.h).
 *
 * Environment: WB_PCUT_DIR (the directory traced), WB_PCUT_TRACE (the trace
 * file, outside that directory), WB_PCUT_COUNTER (the shared counter file);
 * without all three the library only passes calls through.
 * WB_PCUT_DROP_SYNC=1 makes fsync, fdatasync, sync and syncfs no-ops that
 * report success, strips O_SYNC and O_DSYNC from opens, and records the
 * syncs as dropped: a server that acknowledges after "syncing" then
 * acknowledges writes that were never durable, which the checker must
 * catch (the negative control for acknowledge-before-durable).
 * WB_PCUT_DROP_SYNC=fsync drops only fsync and fdatasync and keeps O_DSYNC
 * writes durable: LMDB's meta page (written O_DSYNC) then reaches the disk
 * before the pages it points to, the failure MDB_NOSYNC invites.
 *
 * Happy path: an intercepted call resolves its path (or looks its
 * descriptor up in the table that open/dup/close keep), calls the real
 * function found with dlsym(RTLD_NEXT), and, when it succeeded on something
 * under the directory, appends one record under the mutex and advances the
 * counter. A sync takes the counter before it starts: only what was
 * recorded by then is known to be covered.
 *
 * Failure modes: a trace that cannot be written aborts the process (a
 * trace with a hole would prove nothing); a call the model cannot represent
 * (a shared writable mapping, a write through stdio, an exotic fallocate or
 * rename mode) is recorded as PCUT_UNMODELED and the checker refuses the
 * trace. Calls on descriptors the table does not know cost one load. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "trace.h"

#define MAX_FDS 65536

struct fd_entry {
	uint64_t ino; /* 0: not traced; read without the lock (atomic) */
	bool dsync;
	char *rel;
};

static struct {
	pthread_mutex_t mu;
	bool active;
	bool drop_sync;  /* fsync, fdatasync, sync, syncfs are dropped */
	bool drop_dsync; /* O_SYNC and O_DSYNC are stripped too */
	char root[PATH_MAX];
	size_t root_len;
	int trace_fd;
	_Atomic uint64_t *counter;
	uint64_t next;
	struct fd_entry fds[MAX_FDS];
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .trace_fd = -1};

/* The real functions, resolved on first use (a constructor of another
 * library may call them before ours runs). dlsym() answers an object
 * pointer; POSIX's own idiom stores it through a void ** (ISO C has no
 * conversion to a function pointer). */
#define REAL(name)                                                                                 \
	static __typeof__(name) *real_##name;                                                      \
	static __typeof__(name) *get_##name(void)                                                  \
	{                                                                                          \
		if (real_##name == NULL)                                                           \
			*(void **)&real_##name = dlsym(RTLD_NEXT, #name);                          \
		return real_##name;                                                                \
	}

/* Prototypes glibc declares only under _FORTIFY_SOURCE, for the wrappers. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

REAL(open)
REAL(open64)
REAL(openat)
REAL(openat64)
REAL(__open_2)
REAL(__open64_2)
REAL(__openat_2)
REAL(__openat64_2)
REAL(creat)
REAL(creat64)
REAL(close)
REAL(dup)
REAL(dup2)
REAL(dup3)
REAL(fcntl)
REAL(fcntl64)
REAL(write)
REAL(pwrite)
REAL(pwrite64)
REAL(writev)
REAL(pwritev)
REAL(pwritev64)
REAL(pwritev2)
REAL(pwritev64v2)
REAL(fsync)
REAL(fdatasync)
REAL(sync_file_range)
REAL(sync)
REAL(syncfs)
REAL(ftruncate)
REAL(ftruncate64)
REAL(truncate)
REAL(truncate64)
REAL(fallocate)
REAL(fallocate64)
REAL(posix_fallocate)
REAL(posix_fallocate64)
REAL(rename)
REAL(renameat)
REAL(renameat2)
REAL(unlink)
REAL(unlinkat)
REAL(rmdir)
REAL(mkdir)
REAL(mkdirat)
REAL(mmap)
REAL(mmap64)
REAL(fopen)
REAL(fopen64)

/* ------------------------------------------------------------ recording */

static void die(const char *what)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "pcut interposer: %s: %s\n", what, strerror(errno));
	if (n > 0)
		(void)!get_write()(STDERR_FILENO, msg, (size_t)n);
	abort();
}

/* Appends one record; the caller holds g.mu. data[0..ndata) is taken up to
 * len bytes when op is PCUT_WRITE. */
static void emit(uint16_t op, uint16_t flags, uint64_t covers, uint64_t ino, uint64_t ino2,
                 uint64_t off, uint64_t len, const char *p1, const char *p2,
                 const struct iovec *data, int ndata)
{
	size_t l1 = p1 != NULL ? strlen(p1) : 0, l2 = p2 != NULL ? strlen(p2) : 0;
	size_t dlen = op == PCUT_WRITE ? (size_t)len : 0;
	size_t total = sizeof(struct pcut_rec) + l1 + l2 + dlen;
	char *buf = malloc(total);
	if (buf == NULL)
		die("out of memory");
	struct pcut_rec rec = {
	        .magic = PCUT_MAGIC,
	        .op = op,
	        .flags = flags,
	        .index = g.next,
	        .covers = covers,
	        .ino = ino,
	        .ino2 = ino2,
	        .off = off,
	        .len = len,
	        .path_len = (uint32_t)l1,
	        .path2_len = (uint32_t)l2,
	};
	memcpy(buf, &rec, sizeof(rec));
	size_t at = sizeof(rec);
	if (l1 > 0)
		memcpy(buf + at, p1, l1);
	at += l1;
	if (l2 > 0)
		memcpy(buf + at, p2, l2);
	at += l2;
	for (int i = 0; i < ndata && at < total; i++) {
		size_t n = data[i].iov_len;
		if (n > total - at)
			n = total - at;
		memcpy(buf + at, data[i].iov_base, n);
		at += n;
	}
	for (size_t done = 0; done < total;) {
		ssize_t w = get_write()(g.trace_fd, buf + done, total - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("cannot write the trace");
		done += (size_t)w;
	}
	free(buf);
	g.next++;
	atomic_store(g.counter, g.next);
}

/* Normalises an absolute path in place: no "//", ".", "..". */
static void normalise(char *p)
{
	char out[PATH_MAX];
	size_t o = 0;
	const char *s = p;
	while (*s != '\0') {
		while (*s == '/')
			s++;
		if (*s == '\0')
			break;
		size_t n = strcspn(s, "/");
		if (n == 1 && s[0] == '.') {
			/* skip */
		} else if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else if (o + 1 + n < sizeof(out)) {
			out[o++] = '/';
			memcpy(out + o, s, n);
			o += n;
		}
		s += n;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	memcpy(p, out, o + 1);
}

/* Writes into rel the path of abs relative to the root ("" for the root):
 * true when abs is the root or inside it. */
static bool relative(const char *abs, char *rel)
{
	if (strncmp(abs, g.root, g.root_len) != 0)
		return false;
	if (abs[g.root_len] == '\0') {
		rel[0] = '\0';
		return true;
	}
	if (abs[g.root_len] != '/')
		return false;
	snprintf(rel, PATH_MAX, "%s", abs + g.root_len + 1);
	return true;
}

/* out = a "/" b, when it fits in PATH_MAX. */
static bool join(char *out, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la + 1 + lb >= PATH_MAX)
		return false;
	memmove(out, a, la);
	out[la] = '/';
	memcpy(out + la + 1, b, lb + 1);
	return true;
}

/* Resolves path as the kernel would for dirfd (its directory's symbolic
 * links resolved, its last component kept) into rel: true when it lies
 * under the root. */
static bool resolve(int dirfd, const char *path, char *rel)
{
	if (!g.active || path == NULL)
		return false;
	char abs[PATH_MAX];
	if (path[0] == '/') {
		snprintf(abs, sizeof(abs), "%s", path);
	} else {
		char base[PATH_MAX];
		if (dirfd == AT_FDCWD) {
			if (getcwd(base, sizeof(base)) == NULL)
				return false;
		} else {
			char link[64];
			snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
			ssize_t n = readlink(link, base, sizeof(base) - 1);
			if (n <= 0)
				return false;
			base[n] = '\0';
		}
		if (!join(abs, base, path))
			return false;
	}
	normalise(abs);
	/* Resolve the parent's links so that a path spelled through one
	 * still matches the root (itself resolved with realpath()). */
	char *slash = strrchr(abs, '/');
	if (slash != NULL && slash != abs) {
		*slash = '\0';
		char parent[PATH_MAX];
		if (realpath(abs, parent) != NULL) {
			char joined[PATH_MAX];
			if (join(joined, parent, slash + 1))
				memcpy(abs, joined, strlen(joined) + 1);
			else
				*slash = '/';
		} else {
			*slash = '/';
		}
	}
	return relative(abs, rel);
}

static bool fd_traced(int fd)
{
	return g.active && fd >= 0 && fd < MAX_FDS &&
	       __atomic_load_n(&g.fds[fd].ino, __ATOMIC_ACQUIRE) != 0;
}

/* Enters fd into the table; the caller holds g.mu. */
static void fd_enter(int fd, uint64_t ino, bool dsync, const char *rel)
{
	if (fd < 0 || fd >= MAX_FDS)
		return;
	free(g.fds[fd].rel);
	g.fds[fd].rel = strdup(rel);
	g.fds[fd].dsync = dsync;
	__atomic_store_n(&g.fds[fd].ino, ino, __ATOMIC_RELEASE);
}

static void fd_clear(int fd)
{
	if (fd < 0 || fd >= MAX_FDS)
		return;
	__atomic_store_n(&g.fds[fd].ino, 0, __ATOMIC_RELEASE);
	free(g.fds[fd].rel);
	g.fds[fd].rel = NULL;
}

static uint64_t ino_at(int dirfd, const char *path)
{
	struct stat st;
	if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	return (uint64_t)st.st_ino;
}

__attribute__((constructor)) static void pcut_init(void)
{
	const char *dir = getenv("WB_PCUT_DIR");
	const char *trace = getenv("WB_PCUT_TRACE");
	const char *counter = getenv("WB_PCUT_COUNTER");
	if (dir == NULL || trace == NULL || counter == NULL)
		return;
	if (realpath(dir, g.root) == NULL)
		die("WB_PCUT_DIR cannot be resolved");
	g.root_len = strlen(g.root);
	const char *drop = getenv("WB_PCUT_DROP_SYNC");
	g.drop_sync = drop != NULL && (strcmp(drop, "1") == 0 || strcmp(drop, "fsync") == 0);
	g.drop_dsync = drop != NULL && strcmp(drop, "1") == 0;
	g.trace_fd = get_open()(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (g.trace_fd < 0)
		die("cannot open WB_PCUT_TRACE");
	int cfd = get_open()(counter, O_RDWR | O_CLOEXEC);
	if (cfd < 0)
		die("cannot open WB_PCUT_COUNTER");
	void *m = get_mmap()(NULL, PCUT_COUNTER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	if (m == MAP_FAILED)
		die("cannot map WB_PCUT_COUNTER");
	get_close()(cfd);
	g.counter = m;
	g.next = atomic_load(g.counter);
	struct stat st;
	if (stat(g.root, &st) != 0)
		die("cannot stat WB_PCUT_DIR");
	pthread_mutex_lock(&g.mu);
	g.active = true;
	/* The root exists before anything happens in it. */
	emit(PCUT_MKDIR, 0, 0, (uint64_t)st.st_ino, 0, 0, 0, "", NULL, NULL, 0);
	pthread_mutex_unlock(&g.mu);
}

/* ------------------------------------------------------------ opening */

static int adjust_flags(int flags)
{
	if (g.active && g.drop_dsync)
		flags &= ~(O_SYNC | O_DSYNC);
	return flags;
}

/* Before an open of path: whether it is traced (rel) and existed. */
struct open_pre {
	bool traced;
	bool existed;
	char rel[PATH_MAX];
};

static void open_before(int dirfd, const char *path, struct open_pre *pre)
{
	pre->traced = resolve(dirfd, path, pre->rel);
	if (pre->traced)
		pre->existed = ino_at(dirfd, path) != 0;
}

static int open_after(int fd, int flags, const struct open_pre *pre)
{
	if (fd < 0 || !pre->traced)
		return fd;
	int saved = errno;
	struct stat st;
	if (fstat(fd, &st) == 0) {
		pthread_mutex_lock(&g.mu);
		bool dsync = (flags & (O_SYNC | O_DSYNC)) != 0;
		fd_enter(fd, (uint64_t)st.st_ino, dsync, pre->rel);
		if ((flags & O_CREAT) != 0 && !pre->existed)
			emit(PCUT_CREATE, 0, 0, (uint64_t)st.st_ino, 0, 0, 0, pre->rel, NULL, NULL,
			     0);
		else if ((flags & O_TRUNC) != 0 && S_ISREG(st.st_mode) &&
		         (flags & O_ACCMODE) != O_RDONLY)
			emit(PCUT_TRUNCATE, 0, 0, (uint64_t)st.st_ino, 0, 0, 0, pre->rel, NULL,
			     NULL, 0);
		pthread_mutex_unlock(&g.mu);
	}
	errno = saved;
	return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
	if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE)
		return (mode_t)va_arg(ap, int);
	return 0;
}

#define OPEN_AT(fn, dirfd, path, flags)                                                            \
	do {                                                                                       \
		va_list ap;                                                                        \
		va_start(ap, flags);                                                               \
		mode_t mode = mode_arg(flags, ap);                                                 \
		va_end(ap);                                                                        \
		struct open_pre pre;                                                               \
		open_before(dirfd, path, &pre);                                                    \
		int fl = adjust_flags(flags);                                                      \
		return open_after(fn, fl, &pre);                                                   \
	} while (0)

int open(const char *path, int flags, ...)
{
	OPEN_AT(get_open()(path, fl, mode), AT_FDCWD, path, flags);
}

int open64(const char *path, int flags, ...)
{
	OPEN_AT(get_open64()(path, fl, mode), AT_FDCWD, path, flags);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_AT(get_openat()(dirfd, path, fl, mode), dirfd, path, flags);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_AT(get_openat64()(dirfd, path, fl, mode), dirfd, path, flags);
}

int __open_2(const char *path, int flags)
{
	struct open_pre pre;
	open_before(AT_FDCWD, path, &pre);
	int fl = adjust_flags(flags);
	return open_after(get___open_2()(path, fl), fl, &pre);
}

int __open64_2(const char *path, int flags)
{
	struct open_pre pre;
	open_before(AT_FDCWD, path, &pre);
	int fl = adjust_flags(flags);
	return open_after(get___open64_2()(path, fl), fl, &pre);
}

int __openat_2(int dirfd, const char *path, int flags)
{
	struct open_pre pre;
	open_before(dirfd, path, &pre);
	int fl = adjust_flags(flags);
	return open_after(get___openat_2()(dirfd, path, fl), fl, &pre);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
	struct open_pre pre;
	open_before(dirfd, path, &pre);
	int fl = adjust_flags(flags);
	return open_after(get___openat64_2()(dirfd, path, fl), fl, &pre);
}

int creat(const char *path, mode_t mode)
{
	struct open_pre pre;
	open_before(AT_FDCWD, path, &pre);
	return open_after(get_creat()(path, mode), O_CREAT | O_WRONLY | O_TRUNC, &pre);
}

int creat64(const char *path, mode_t mode)
{
	struct open_pre pre;
	open_before(AT_FDCWD, path, &pre);
	return open_after(get_creat64()(path, mode), O_CREAT | O_WRONLY | O_TRUNC, &pre);
}

/* Records a stdio stream opened for writing under the root: its writes do
 * not pass through this library, so the model cannot hold them. */
static void stdio_open(const char *path, const char *mode)
{
	char rel[PATH_MAX];
	if (strpbrk(mode, "wa+") == NULL || !resolve(AT_FDCWD, path, rel))
		return;
	pthread_mutex_lock(&g.mu);
	emit(PCUT_UNMODELED, 0, 0, 0, 0, 0, 0, rel, "written through stdio", NULL, 0);
	pthread_mutex_unlock(&g.mu);
}

FILE *fopen(const char *path, const char *mode)
{
	stdio_open(path, mode);
	return get_fopen()(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
	stdio_open(path, mode);
	return get_fopen64()(path, mode);
}

int close(int fd)
{
	if (fd_traced(fd)) {
		pthread_mutex_lock(&g.mu);
		fd_clear(fd);
		pthread_mutex_unlock(&g.mu);
	}
	return get_close()(fd);
}

/* Copies the table entry of oldfd to newfd after a dup. */
static int dup_after(int oldfd, int newfd)
{
	if (newfd < 0 || !g.active || newfd >= MAX_FDS)
		return newfd;
	pthread_mutex_lock(&g.mu);
	if (oldfd >= 0 && oldfd < MAX_FDS && g.fds[oldfd].ino != 0)
		fd_enter(newfd, g.fds[oldfd].ino, g.fds[oldfd].dsync, g.fds[oldfd].rel);
	else if (g.fds[newfd].ino != 0)
		fd_clear(newfd);
	pthread_mutex_unlock(&g.mu);
	return newfd;
}

int dup(int fd)
{
	return dup_after(fd, get_dup()(fd));
}

int dup2(int fd, int fd2)
{
	return dup_after(fd, get_dup2()(fd, fd2));
}

int dup3(int fd, int fd2, int flags)
{
	return dup_after(fd, get_dup3()(fd, fd2, flags));
}

/* fcntl's third argument is an int or a pointer; both travel in the same
 * register class on the ABIs glibc supports, so it is passed on as a
 * pointer-sized integer. */
#define FCNTL_BODY(fn)                                                                             \
	do {                                                                                       \
		va_list ap;                                                                        \
		va_start(ap, cmd);                                                                 \
		uintptr_t arg = va_arg(ap, uintptr_t);                                             \
		va_end(ap);                                                                        \
		int rc = fn(fd, cmd, arg);                                                         \
		if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)                                      \
			return dup_after(fd, rc);                                                  \
		if (cmd == F_SETFL && rc == 0 && fd_traced(fd) &&                                  \
		    ((int)arg & (O_SYNC | O_DSYNC)) != 0 && !g.drop_dsync) {                       \
			pthread_mutex_lock(&g.mu);                                                 \
			g.fds[fd].dsync = true;                                                    \
			pthread_mutex_unlock(&g.mu);                                               \
		}                                                                                  \
		return rc;                                                                         \
	} while (0)

int fcntl(int fd, int cmd, ...)
{
	FCNTL_BODY(get_fcntl());
}

int fcntl64(int fd, int cmd, ...)
{
	FCNTL_BODY(get_fcntl64());
}

/* ------------------------------------------------------------ data */

/* Records n bytes written at off (-1: at the offset the write left behind,
 * less n) through fd from iov. */
static void write_after(int fd, int64_t off, const struct iovec *iov, int iovcnt, ssize_t n)
{
	if (n <= 0 || !fd_traced(fd))
		return;
	int saved = errno;
	if (off < 0) {
		off_t end = lseek(fd, 0, SEEK_CUR);
		off = end >= n ? (int64_t)end - n : 0;
	}
	pthread_mutex_lock(&g.mu);
	if (g.fds[fd].ino != 0)
		emit(PCUT_WRITE, g.fds[fd].dsync ? PCUT_F_DSYNC : 0, 0, g.fds[fd].ino, 0,
		     (uint64_t)off, (uint64_t)n, g.fds[fd].rel, NULL, iov, iovcnt);
	pthread_mutex_unlock(&g.mu);
	errno = saved;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	ssize_t n = get_write()(fd, buf, len);
	struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
	write_after(fd, -1, &v, 1, n);
	return n;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = get_pwrite()(fd, buf, len, off);
	struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
	write_after(fd, off, &v, 1, n);
	return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	ssize_t n = get_pwrite64()(fd, buf, len, off);
	struct iovec v = {.iov_base = (void *)buf, .iov_len = len};
	write_after(fd, off, &v, 1, n);
	return n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t n = get_writev()(fd, iov, iovcnt);
	write_after(fd, -1, iov, iovcnt, n);
	return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	ssize_t n = get_pwritev()(fd, iov, iovcnt, off);
	write_after(fd, off, iov, iovcnt, n);
	return n;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t off)
{
	ssize_t n = get_pwritev64()(fd, iov, iovcnt, off);
	write_after(fd, off, iov, iovcnt, n);
	return n;
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
{
	ssize_t n = get_pwritev2()(fd, iov, iovcnt, off, flags);
	write_after(fd, off, iov, iovcnt, n);
	return n;
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off64_t off, int flags)
{
	ssize_t n = get_pwritev64v2()(fd, iov, iovcnt, off, flags);
	write_after(fd, off, iov, iovcnt, n);
	return n;
}

/* ------------------------------------------------------------ syncs */

/* A sync of fd: the counter before, the real call (or none when syncs are
 * dropped), the record after. A descriptor the table does not know but
 * that names something under the root is reported as unmodeled. */
static int sync_fd(int fd, uint16_t flags, int (*fn)(int))
{
	if (!g.active)
		return fn(fd);
	if (!fd_traced(fd)) {
		char link[64], abs[PATH_MAX], rel[PATH_MAX];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, abs, sizeof(abs) - 1);
		if (n > 0) {
			abs[n] = '\0';
			if (relative(abs, rel)) {
				pthread_mutex_lock(&g.mu);
				emit(PCUT_UNMODELED, 0, 0, 0, 0, 0, 0, rel,
				     "synced through a descriptor never seen opened", NULL, 0);
				pthread_mutex_unlock(&g.mu);
			}
		}
		return fn(fd);
	}
	pthread_mutex_lock(&g.mu);
	uint64_t covers = g.next;
	pthread_mutex_unlock(&g.mu);
	int rc = 0;
	if (g.drop_sync)
		flags |= PCUT_F_DROPPED;
	else
		rc = fn(fd);
	if (rc == 0) {
		int saved = errno;
		pthread_mutex_lock(&g.mu);
		if (g.fds[fd].ino != 0)
			emit(PCUT_SYNC, flags, covers, g.fds[fd].ino, 0, 0, 0, g.fds[fd].rel, NULL,
			     NULL, 0);
		pthread_mutex_unlock(&g.mu);
		errno = saved;
	}
	return rc;
}

int fsync(int fd)
{
	return sync_fd(fd, 0, get_fsync());
}

int fdatasync(int fd)
{
	return sync_fd(fd, PCUT_F_DATA_ONLY, get_fdatasync());
}

int sync_file_range(int fd, off64_t off, off64_t len, unsigned int flags)
{
	int rc = get_sync_file_range()(fd, off, len, flags);
	if (rc == 0 && fd_traced(fd)) {
		pthread_mutex_lock(&g.mu);
		if (g.fds[fd].ino != 0)
			emit(PCUT_SYNC, PCUT_F_RANGE_ONLY, g.next, g.fds[fd].ino, 0, (uint64_t)off,
			     (uint64_t)len, g.fds[fd].rel, NULL, NULL, 0);
		pthread_mutex_unlock(&g.mu);
	}
	return rc;
}

static void sync_all_record(uint64_t covers)
{
	pthread_mutex_lock(&g.mu);
	emit(PCUT_SYNC_ALL, g.drop_sync ? PCUT_F_DROPPED : 0, covers, 0, 0, 0, 0, NULL, NULL, NULL,
	     0);
	pthread_mutex_unlock(&g.mu);
}

void sync(void)
{
	if (!g.active) {
		get_sync()();
		return;
	}
	pthread_mutex_lock(&g.mu);
	uint64_t covers = g.next;
	pthread_mutex_unlock(&g.mu);
	if (!g.drop_sync)
		get_sync()();
	sync_all_record(covers);
}

int syncfs(int fd)
{
	if (!g.active)
		return get_syncfs()(fd);
	pthread_mutex_lock(&g.mu);
	uint64_t covers = g.next;
	pthread_mutex_unlock(&g.mu);
	int rc = g.drop_sync ? 0 : get_syncfs()(fd);
	if (rc == 0)
		sync_all_record(covers);
	return rc;
}

/* ------------------------------------------------------------ sizes */

static void size_after(int fd, int rc, uint16_t op, uint16_t flags, uint64_t off, uint64_t len)
{
	if (rc != 0 || !fd_traced(fd))
		return;
	int saved = errno;
	pthread_mutex_lock(&g.mu);
	if (g.fds[fd].ino != 0)
		emit(op, flags, 0, g.fds[fd].ino, 0, off, len, g.fds[fd].rel, NULL, NULL, 0);
	pthread_mutex_unlock(&g.mu);
	errno = saved;
}

int ftruncate(int fd, off_t len)
{
	int rc = get_ftruncate()(fd, len);
	size_after(fd, rc, PCUT_TRUNCATE, 0, (uint64_t)len, 0);
	return rc;
}

int ftruncate64(int fd, off64_t len)
{
	int rc = get_ftruncate64()(fd, len);
	size_after(fd, rc, PCUT_TRUNCATE, 0, (uint64_t)len, 0);
	return rc;
}

static void truncate_after(const char *path, int rc, uint64_t len)
{
	char rel[PATH_MAX];
	if (rc != 0 || !resolve(AT_FDCWD, path, rel))
		return;
	int saved = errno;
	uint64_t ino = ino_at(AT_FDCWD, path);
	pthread_mutex_lock(&g.mu);
	emit(PCUT_TRUNCATE, 0, 0, ino, 0, len, 0, rel, NULL, NULL, 0);
	pthread_mutex_unlock(&g.mu);
	errno = saved;
}

int truncate(const char *path, off_t len)
{
	int rc = get_truncate()(path, len);
	truncate_after(path, rc, (uint64_t)len);
	return rc;
}

int truncate64(const char *path, off64_t len)
{
	int rc = get_truncate64()(path, len);
	truncate_after(path, rc, (uint64_t)len);
	return rc;
}

static void fallocate_after(int fd, int rc, int mode, uint64_t off, uint64_t len)
{
	if (rc != 0 || !fd_traced(fd))
		return;
	if (mode != 0 && mode != FALLOC_FL_KEEP_SIZE) {
		int saved = errno;
		pthread_mutex_lock(&g.mu);
		emit(PCUT_UNMODELED, 0, 0, g.fds[fd].ino, 0, off, len, g.fds[fd].rel,
		     "fallocate with a mode other than 0 or KEEP_SIZE", NULL, 0);
		pthread_mutex_unlock(&g.mu);
		errno = saved;
		return;
	}
	size_after(fd, 0, PCUT_FALLOCATE, mode != 0 ? PCUT_F_KEEP_SIZE : 0, off, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	int rc = get_fallocate()(fd, mode, off, len);
	fallocate_after(fd, rc, mode, (uint64_t)off, (uint64_t)len);
	return rc;
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	int rc = get_fallocate64()(fd, mode, off, len);
	fallocate_after(fd, rc, mode, (uint64_t)off, (uint64_t)len);
	return rc;
}

int posix_fallocate(int fd, off_t off, off_t len)
{
	int rc = get_posix_fallocate()(fd, off, len);
	fallocate_after(fd, rc, 0, (uint64_t)off, (uint64_t)len);
	return rc;
}

int posix_fallocate64(int fd, off64_t off, off64_t len)
{
	int rc = get_posix_fallocate64()(fd, off, len);
	fallocate_after(fd, rc, 0, (uint64_t)off, (uint64_t)len);
	return rc;
}

/* ------------------------------------------------------------ names */

static int rename_common(int olddir, const char *oldp, int newdir, const char *newp,
                         unsigned int flags, int (*call)(void *), void *arg)
{
	char r1[PATH_MAX], r2[PATH_MAX];
	bool t1 = resolve(olddir, oldp, r1), t2 = resolve(newdir, newp, r2);
	if (!t1 && !t2)
		return call(arg);
	uint64_t ino = ino_at(olddir, oldp), ino2 = ino_at(newdir, newp);
	int rc = call(arg);
	if (rc != 0)
		return rc;
	int saved = errno;
	pthread_mutex_lock(&g.mu);
	if (t1 && t2 && (flags & ~(unsigned)RENAME_NOREPLACE) == 0)
		emit(PCUT_RENAME, 0, 0, ino, ino2, 0, 0, r1, r2, NULL, 0);
	else
		emit(PCUT_UNMODELED, 0, 0, ino, ino2, 0, 0, t1 ? r1 : r2,
		     "renamed across the traced directory's boundary, or exchanged", NULL, 0);
	pthread_mutex_unlock(&g.mu);
	errno = saved;
	return rc;
}

struct rename_args {
	int olddir, newdir;
	const char *oldp, *newp;
	unsigned int flags;
	int kind; /* 0 rename, 1 renameat, 2 renameat2 */
};

static int rename_call(void *p)
{
	struct rename_args *a = p;
	if (a->kind == 0)
		return get_rename()(a->oldp, a->newp);
	if (a->kind == 1)
		return get_renameat()(a->olddir, a->oldp, a->newdir, a->newp);
	return get_renameat2()(a->olddir, a->oldp, a->newdir, a->newp, a->flags);
}

int rename(const char *oldp, const char *newp)
{
	struct rename_args a = {AT_FDCWD, AT_FDCWD, oldp, newp, 0, 0};
	return rename_common(AT_FDCWD, oldp, AT_FDCWD, newp, 0, rename_call, &a);
}

int renameat(int olddir, const char *oldp, int newdir, const char *newp)
{
	struct rename_args a = {olddir, newdir, oldp, newp, 0, 1};
	return rename_common(olddir, oldp, newdir, newp, 0, rename_call, &a);
}

int renameat2(int olddir, const char *oldp, int newdir, const char *newp, unsigned int flags)
{
	struct rename_args a = {olddir, newdir, oldp, newp, flags, 2};
	return rename_common(olddir, oldp, newdir, newp, flags, rename_call, &a);
}

/* Records op (unlink, rmdir) of path under dirfd after rc, with the inode
 * it named before (ino). */
static void name_after(int rc, uint16_t op, const char *rel, uint64_t ino)
{
	if (rc != 0)
		return;
	int saved = errno;
	pthread_mutex_lock(&g.mu);
	emit(op, 0, 0, ino, 0, 0, 0, rel, NULL, NULL, 0);
	pthread_mutex_unlock(&g.mu);
	errno = saved;
}

int unlink(const char *path)
{
	char rel[PATH_MAX];
	if (!resolve(AT_FDCWD, path, rel))
		return get_unlink()(path);
	uint64_t ino = ino_at(AT_FDCWD, path);
	int rc = get_unlink()(path);
	name_after(rc, PCUT_UNLINK, rel, ino);
	return rc;
}

int unlinkat(int dirfd, const char *path, int flags)
{
	char rel[PATH_MAX];
	if (!resolve(dirfd, path, rel))
		return get_unlinkat()(dirfd, path, flags);
	uint64_t ino = ino_at(dirfd, path);
	int rc = get_unlinkat()(dirfd, path, flags);
	name_after(rc, (flags & AT_REMOVEDIR) != 0 ? PCUT_RMDIR : PCUT_UNLINK, rel, ino);
	return rc;
}

int rmdir(const char *path)
{
	char rel[PATH_MAX];
	if (!resolve(AT_FDCWD, path, rel))
		return get_rmdir()(path);
	uint64_t ino = ino_at(AT_FDCWD, path);
	int rc = get_rmdir()(path);
	name_after(rc, PCUT_RMDIR, rel, ino);
	return rc;
}

int mkdir(const char *path, mode_t mode)
{
	char rel[PATH_MAX];
	if (!resolve(AT_FDCWD, path, rel))
		return get_mkdir()(path, mode);
	int rc = get_mkdir()(path, mode);
	if (rc == 0)
		name_after(rc, PCUT_MKDIR, rel, ino_at(AT_FDCWD, path));
	return rc;
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
	char rel[PATH_MAX];
	if (!resolve(dirfd, path, rel))
		return get_mkdirat()(dirfd, path, mode);
	int rc = get_mkdirat()(dirfd, path, mode);
	if (rc == 0)
		name_after(rc, PCUT_MKDIR, rel, ino_at(dirfd, path));
	return rc;
}

/* ------------------------------------------------------------ mappings */

static void mmap_check(int prot, int flags, int fd)
{
	if ((flags & MAP_SHARED) == 0 || (prot & PROT_WRITE) == 0 || !fd_traced(fd))
		return;
	int saved = errno;
	pthread_mutex_lock(&g.mu);
	if (g.fds[fd].ino != 0)
		emit(PCUT_UNMODELED, 0, 0, g.fds[fd].ino, 0, 0, 0, g.fds[fd].rel,
		     "mapped shared and writable (writes through a mapping are not recorded)", NULL,
		     0);
	pthread_mutex_unlock(&g.mu);
	errno = saved;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	mmap_check(prot, flags, fd);
	return get_mmap()(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	mmap_check(prot, flags, fd);
	return get_mmap64()(addr, len, prot, flags, fd, off);
}
