/* Backup {path}: an online, consistent, compacting copy of the store, into
 * the one directory the operator named (backup-dir) and nowhere else.
 *
 * Start-up: with backup-dir set, the module's init creates it (one level,
 * mode 0700) when it is missing, resolves it with realpath() and refuses to
 * start when it is not a directory, is writable by group or others or owned
 * by another user (they could swap in symlinks or read the copies), or
 * overlaps the data directory. With backup-dir empty, Backup is off.
 *
 * Happy path: the loop checks what needs no disk (Backup is on, one at a
 * time, the path names a backup in backup-dir: backup_rules.h) and hands the
 * rest to a libuv worker thread. The worker opens backup-dir by its resolved
 * path without following a symlink, checks it again (fstat), checks that
 * its file system has room for the store's used bytes, creates the backup's
 * own directory with mkdirat() (0700) and opens it with openat(), never
 * following a symlink, so that nothing is written anywhere but a directory
 * that did not exist before. It reads the watermark and the last $all
 * position in a read snapshot, ends it, and only then has
 * storage_backup_progress() copy the store, compacting, into that
 * directory's data.mdb (0600) from a snapshot LMDB takes when the copy
 * starts. Writes go on meanwhile. As the copy is written the worker wakes
 * the loop (at most every PROGRESS_INTERVAL_MS, and once right after the
 * first piece), which pushes a BackupResult with done = false; the last
 * Response, done = true, names the backup's directory, the bytes of
 * data.mdb, the time taken, the watermark and the position.
 *
 * Why the figures are true of the copy: they are read in a snapshot that
 * ends before the copy's snapshot begins, and LMDB snapshots see every
 * transaction committed before they begin. The watermark and last_position
 * only grow, and neither events nor ledger entries below them are removed
 * except by a Scavenge (which removes only events that deletes and stream
 * metadata already hide), so everything they name is in the copy; the copy
 * may hold more (what committed between the two snapshots).
 *
 * Failure modes: Backup while backup-dir is empty, a path that names
 * anything but a new directory in backup-dir, and a NAME that exists (a
 * directory, a file or a symlink) answer BAD_REQUEST with the reason; a
 * second Backup while one runs, and a file system without room for the
 * copy, answer RESOURCE_EXHAUSTED (the latter saying how much is free and
 * how much is needed) before anything is created; a backup-dir that has
 * become unsafe since start-up answers INTERNAL; a failed copy (disk full,
 * for example) answers with the storage error and its reason, and the
 * partial data.mdb and the backup's directory are removed. A connection
 * that closes meanwhile gets nothing, but the copy completes (it is counted
 * as work in flight, so the connection, the server and the store stay until
 * it ends; a shutdown waits for it). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "backup_rules.h"
#include "events.h"
#include "ledger.h"
#include "log.h"
#include "server.h"
#include "wb_error.h"

/* The least time between two progress pushes. */
#define PROGRESS_INTERVAL_MS 100u

/* The module's state. */
struct backups {
	struct srv *srv;
	bool running; /* one Backup at a time */
	/* backup-dir as configured, without trailing slashes, and as
	 * realpath() resolved it at start; both "" when Backup is off. */
	char dir[PATH_MAX];
	char real_dir[PATH_MAX];
};

struct backup {
	uv_work_t work;
	uv_async_t async; /* the worker's progress wakes the loop */
	struct backups *bs;
	struct storage *st;
	struct conn *conn;
	uint64_t req_id;
	char name[BACKUP_NAME_MAX + 1]; /* the backup's directory in backup-dir */
	/* real_dir/name, what BackupResult names, and quoted for the log */
	char path[PATH_MAX + BACKUP_NAME_MAX + 2];
	char quoted[PATH_MAX + BACKUP_NAME_MAX + 64];
	uint64_t t0_us;
	/* Written by the worker, read by the loop. */
	atomic_uint_fast64_t bytes;
	/* Worker only */
	uint64_t last_wake_ms;
	bool woken;
	/* Loop only */
	uint64_t bytes_pushed;
	/* The outcome, written by the worker before after_work_cb */
	int rc;
	char msg[1200];
	uint64_t watermark;
	uint64_t last_position;
	uint64_t micros;
};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sends a BackupResult on b's connection. */
static void send_result(struct backup *b, uint64_t bytes, bool done)
{
	Whizbang__V1__BackupResult res = WHIZBANG__V1__BACKUP_RESULT__INIT;
	res.path = b->path;
	res.bytes = bytes;
	res.micros = done ? b->micros : mono_us() - b->t0_us;
	res.done = done;
	res.watermark = b->watermark;
	res.last_position = b->last_position;
	SRV_REPLY(b->conn, b->req_id, BACKUP, backup, &res);
}

/* ------------------------------------------------------------ worker */

static void progress_cb(void *arg, uint64_t bytes)
{
	struct backup *b = arg;
	atomic_store(&b->bytes, bytes);
	uint64_t now = mono_us() / 1000u;
	if (b->woken && now - b->last_wake_ms < PROGRESS_INTERVAL_MS)
		return;
	b->woken = true;
	b->last_wake_ms = now;
	uv_async_send(&b->async);
}

__attribute__((format(printf, 3, 4))) static void fail(struct backup *b, int code, const char *fmt,
                                                       ...)
{
	va_list ap;
	b->rc = code;
	va_start(ap, fmt);
	vsnprintf(b->msg, sizeof(b->msg), fmt, ap);
	va_end(ap);
}

/* The wire code for errno e from making the backup's directory. */
static int code_of_errno(int e)
{
	return e == ENOSPC || e == EDQUOT ? WB_RESOURCE_EXHAUSTED : WB_INTERNAL;
}

/* Opens backup-dir again (the operator may have changed it since start)
 * and checks it as the start did, then that its file system has room for
 * the copy. Returns its descriptor, or -1 with b->rc set. */
static int open_dir(struct backup *b)
{
	const char *dir = b->bs->real_dir;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		fail(b, WB_INTERNAL, "cannot open backup-dir %s: %s", dir, strerror(errno));
		return -1;
	}
	struct stat sb;
	char what[PATH_MAX + 16], why[PATH_MAX + 400];
	snprintf(what, sizeof(what), "backup-dir %s", dir);
	if (fstat(dfd, &sb) != 0) {
		fail(b, WB_INTERNAL, "cannot stat backup-dir %s: %s", dir, strerror(errno));
		goto err_after_open;
	}
	if (backup_dir_check(&sb, geteuid(), what, why, sizeof(why)) != 0) {
		fail(b, WB_INTERNAL, "%s; no backup is written until the operator fixes it", why);
		goto err_after_open;
	}
	/* Room first, before anything is created. */
	struct storage_stats ss;
	int rc = storage_stats(b->st, &ss);
	if (rc != 0) {
		fail(b, wb_error_to_wire(rc), "cannot read the store's size: %s", wb_strerror(rc));
		goto err_after_open;
	}
	struct statvfs vfs;
	if (fstatvfs(dfd, &vfs) != 0) {
		fail(b, WB_INTERNAL, "cannot read the free space of backup-dir %s: %s", dir,
		     strerror(errno));
		goto err_after_open;
	}
	if (backup_space_check(&vfs, ss.used_bytes, dir, why, sizeof(why)) != 0) {
		fail(b, WB_RESOURCE_EXHAUSTED, "%s", why);
		goto err_after_open;
	}
	return dfd;

err_after_open:
	close(dfd);
	return -1;
}

static void work_cb(uv_work_t *w)
{
	struct backup *b = w->data;
	int dfd = open_dir(b);
	if (dfd < 0)
		return;
	/* mkdirat() creates, never reuses: an existing directory, file or
	 * symlink by that name is EEXIST, and nothing is written through
	 * it. */
	if (mkdirat(dfd, b->name, 0700) != 0) {
		int e = errno;
		if (e == EEXIST)
			fail(b, WB_BAD_REQUEST,
			     "the backup %s exists: a backup never overwrites one (choose a new "
			     "name)",
			     b->path);
		else
			fail(b, code_of_errno(e), "cannot create the backup directory %s: %s",
			     b->path, strerror(e));
		goto err_after_dir;
	}
	int bfd = openat(dfd, b->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (bfd < 0) {
		fail(b, WB_INTERNAL, "cannot open the backup directory %s: %s", b->path,
		     strerror(errno));
		goto err_after_mkdir;
	}
	/* The umask may have taken bits from 0700 (it cannot add any). */
	if (fchmod(bfd, 0700) != 0) {
		fail(b, WB_INTERNAL, "cannot set the mode of %s: %s", b->path, strerror(errno));
		goto err_after_open;
	}
	/* The figures first, in a snapshot that ends before the copy's begins
	 * (see the file's comment). */
	struct storage_txn *txn;
	int rc = storage_txn_begin(b->st, NULL, STORAGE_RDONLY, &txn);
	struct ledger_state ls = {0};
	uint64_t last = 0;
	if (rc == 0) {
		rc = ledger_get_state(txn, &ls);
		if (rc == 0)
			rc = ev_last_position(txn, &last);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		fail(b, wb_error_to_wire(rc), "cannot read the watermark: %s", wb_strerror(rc));
		goto err_after_open;
	}
	b->watermark = ls.watermark;
	b->last_position = last;
	char err[PATH_MAX + 200] = "";
	rc = storage_backup_progress(b->st, bfd, b->path, true, progress_cb, b, err, sizeof(err));
	if (rc != 0) {
		fail(b, wb_error_to_wire(rc), "the backup failed: %s", err);
		goto err_after_open;
	}
	/* The backup's own name in backup-dir is durable too. */
	if (fsync(dfd) != 0) {
		fail(b, WB_INTERNAL, "cannot fsync backup-dir %s: %s", b->bs->real_dir,
		     strerror(errno));
		(void)unlinkat(bfd, "data.mdb", 0);
		goto err_after_open;
	}
	close(bfd);
	close(dfd);
	b->micros = mono_us() - b->t0_us;
	return;

err_after_open:
	close(bfd);
err_after_mkdir:
	(void)unlinkat(dfd, b->name, AT_REMOVEDIR);
err_after_dir:
	close(dfd);
}

/* ------------------------------------------------------------ loop */

static void async_cb(uv_async_t *a)
{
	struct backup *b = a->data;
	if (conn_is_closing(b->conn))
		return;
	uint64_t bytes = atomic_load(&b->bytes);
	if (bytes == b->bytes_pushed)
		return;
	b->bytes_pushed = bytes;
	send_result(b, bytes, false);
	srv_flush(b->bs->srv);
}

static void close_cb(uv_handle_t *h)
{
	struct backup *b = h->data;
	struct srv *srv = b->bs->srv;
	struct conn *c = b->conn;
	free(b);
	srv_work_done(srv, c);
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct backup *b = w->data;
	struct conn *c = b->conn;
	b->bs->running = false;
	if (status != 0 && b->rc == 0)
		fail(b, WB_INTERNAL, "the backup was cancelled");
	if (b->rc == 0) {
		srv_log(WB_LOG_INFO, "backup_done",
		        "path=%s bytes=%llu micros=%llu watermark=%llu last_position=%llu",
		        b->quoted, (unsigned long long)atomic_load(&b->bytes),
		        (unsigned long long)b->micros, (unsigned long long)b->watermark,
		        (unsigned long long)b->last_position);
	} else {
		char reason[sizeof(b->msg) + 64];
		srv_log(WB_LOG_WARN, "backup_failed", "path=%s code=%d reason=%s", b->quoted, b->rc,
		        log_quote(b->msg, strlen(b->msg), reason, sizeof(reason)));
	}
	if (!conn_is_closing(c)) {
		if (b->rc != 0)
			srv_error(c, b->req_id, b->rc, "%s", b->msg);
		else
			send_result(b, atomic_load(&b->bytes), true);
	}
	/* A progress wake-up still pending is dropped by the close. */
	uv_close((uv_handle_t *)&b->async, close_cb);
}

static bool backup(void *state, struct conn *c, Request *req)
{
	struct backups *bs = state;
	struct srv *srv = bs->srv;
	const char *path = req->backup->path;
	if (bs->real_dir[0] == '\0') {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "Backup is off on this server: the operator sets backup-dir, the one "
		          "directory backups go into (docs/OPERATIONS.md)");
		return false;
	}
	if (bs->running) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "a Backup is already running: wait for its answer");
		return false;
	}
	char name[BACKUP_NAME_MAX + 1];
	if (backup_name(path, bs->dir, bs->real_dir, name) != 0) {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "the backup path '%.300s' is refused: backups go only into backup-dir "
		          "%s; give a NAME (1 to %d bytes, no '/', not . or ..), or %s/NAME",
		          path, bs->dir, BACKUP_NAME_MAX, bs->dir);
		return false;
	}
	struct backup *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	b->bs = bs;
	b->st = srv_storage(srv);
	b->conn = c;
	b->req_id = req->id;
	memcpy(b->name, name, sizeof(name));
	snprintf(b->path, sizeof(b->path), "%s/%s", bs->real_dir, name);
	log_quote(b->path, strlen(b->path), b->quoted, sizeof(b->quoted));
	b->t0_us = mono_us();
	atomic_init(&b->bytes, 0);
	b->work.data = b;
	b->async.data = b;
	int rc = uv_async_init(srv_loop(srv), &b->async, async_cb);
	if (rc != 0) {
		free(b);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "cannot start the backup: %s",
		          uv_strerror(rc));
		return false;
	}
	rc = uv_queue_work(srv_loop(srv), &b->work, work_cb, after_work_cb);
	if (rc != 0) {
		/* The close callback ends work that never began. */
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "cannot queue the backup: %s",
		          uv_strerror(rc));
		srv_work_begin(srv, c);
		uv_close((uv_handle_t *)&b->async, close_cb);
		return false;
	}
	bs->running = true;
	srv_work_begin(srv, c);
	srv_log(WB_LOG_INFO, "backup_started", "path=%s connection=%llu", b->quoted,
	        (unsigned long long)conn_id(c));
	return false; /* req is not kept: the name was copied */
}

/* ------------------------------------------------------------ the module */

/* Sets up backup-dir as the file's comment says: 0, or an error with the
 * reason in errmsg (a directory it created is removed again). */
static int setup_dir(struct backups *bs, const struct srv_config *cfg, char *errmsg, size_t errlen)
{
	const char *conf = cfg->backup_dir;
	size_t n = strlen(conf);
	while (n > 1 && conf[n - 1] == '/')
		n--;
	snprintf(bs->dir, sizeof(bs->dir), "%.*s", (int)n, conf);
	int rc = WB_E_INVAL;
	bool created = mkdir(conf, 0700) == 0;
	if (!created && errno != EEXIST) {
		snprintf(errmsg, errlen,
		         "backup-dir = %s: cannot create it: %s (it is created one level deep: "
		         "its parent must exist)",
		         conf, strerror(errno));
		return WB_E_IO;
	}
	char real_data[PATH_MAX];
	if (realpath(conf, bs->real_dir) == NULL) {
		snprintf(errmsg, errlen, "backup-dir = %s: cannot resolve it: %s", conf,
		         strerror(errno));
		rc = WB_E_IO;
		goto err_after_mkdir;
	}
	if (strlen(bs->real_dir) + 1 + BACKUP_NAME_MAX >= sizeof(bs->real_dir)) {
		snprintf(errmsg, errlen, "backup-dir = %s: the path is too long", conf);
		goto err_after_mkdir;
	}
	int dfd = open(bs->real_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(errmsg, errlen, "backup-dir = %s: %s", conf,
		         errno == ENOTDIR ? "it is not a directory" : strerror(errno));
		goto err_after_mkdir;
	}
	/* mkdir() took the umask's bits; 0700 whatever they were. */
	if (created && fchmod(dfd, 0700) != 0) {
		snprintf(errmsg, errlen, "backup-dir = %s: cannot set its mode: %s", conf,
		         strerror(errno));
		rc = WB_E_IO;
		goto err_after_open;
	}
	struct stat sb;
	if (fstat(dfd, &sb) != 0) {
		snprintf(errmsg, errlen, "backup-dir = %s: %s", conf, strerror(errno));
		rc = WB_E_IO;
		goto err_after_open;
	}
	char what[PATH_MAX + 64];
	snprintf(what, sizeof(what), "backup-dir = %s (%s)", conf, bs->real_dir);
	if (backup_dir_check(&sb, geteuid(), what, errmsg, errlen) != 0)
		goto err_after_open;
	/* The copies must not share a tree with the store: restoring empties
	 * the data directory, a copy should survive the loss of it, and a
	 * Backup must never reach the store's own files. */
	if (realpath(cfg->data_dir, real_data) == NULL) {
		snprintf(errmsg, errlen, "cannot resolve the data directory %s: %s", cfg->data_dir,
		         strerror(errno));
		rc = WB_E_IO;
		goto err_after_open;
	}
	if (backup_path_within(bs->real_dir, real_data)) {
		snprintf(errmsg, errlen,
		         "backup-dir = %s (%s) is inside the data directory %s: choose a directory "
		         "outside it, ideally on another disk",
		         conf, bs->real_dir, real_data);
		goto err_after_open;
	}
	if (backup_path_within(real_data, bs->real_dir)) {
		snprintf(errmsg, errlen,
		         "the data directory %s is inside backup-dir = %s (%s): choose a directory "
		         "that does not hold the store",
		         real_data, conf, bs->real_dir);
		goto err_after_open;
	}
	close(dfd);
	char quoted[PATH_MAX + 64];
	srv_log(WB_LOG_INFO, "backup_dir", "path=%s created=%s",
	        log_quote(bs->real_dir, strlen(bs->real_dir), quoted, sizeof(quoted)),
	        created ? "true" : "false");
	return 0;

err_after_open:
	close(dfd);
err_after_mkdir:
	if (created)
		(void)rmdir(conf);
	bs->dir[0] = '\0';
	bs->real_dir[0] = '\0';
	return rc;
}

static int backups_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct backups *bs = state;
	(void)slot;
	bs->srv = srv;
	const struct srv_config *cfg = srv_config(srv);
	if (cfg->backup_dir[0] == '\0')
		return 0; /* Backup is off */
	return setup_dir(bs, cfg, errmsg, errlen);
}

static const struct srv_handler backup_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_BACKUP, backup},
};

const struct srv_module srv_backup_module = {
        .name = "backup",
        .size = sizeof(struct backups),
        .init = backups_init,
        .handlers = backup_handlers,
        .nhandlers = sizeof(backup_handlers) / sizeof(backup_handlers[0]),
};
