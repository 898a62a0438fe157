/* Backup {path}: an online, consistent, compacting copy of the store.
 *
 * Happy path: the loop checks what needs no disk (one Backup at a time, an
 * absolute path) and hands the rest to a libuv worker thread. The worker
 * checks the path (its parent exists, it is not inside the data directory,
 * it does not exist or is an empty directory, which it creates 0750), reads
 * the watermark and the last $all position in a read snapshot, ends it, and
 * only then has storage_backup_progress() copy the store, compacting, from
 * a snapshot LMDB takes when the copy starts. Writes go on meanwhile. As the
 * copy is written the worker wakes the loop (at most every
 * PROGRESS_INTERVAL_MS, and once right after the first piece), which pushes
 * a BackupResult with done = false; the last Response, done = true, names
 * the bytes of data.mdb, the time taken, the watermark and the position.
 *
 * Why the figures are true of the copy: they are read in a snapshot that
 * ends before the copy's snapshot begins, and LMDB snapshots see every
 * transaction committed before they begin. The watermark and last_position
 * only grow, and neither events nor ledger entries below them are removed
 * except by a Scavenge (which removes only events that deletes and stream
 * metadata already hide), so everything they name is in the copy; the copy
 * may hold more (what committed between the two snapshots).
 *
 * Failure modes: a second Backup while one runs answers RESOURCE_EXHAUSTED;
 * a bad path answers BAD_REQUEST with the reason; a failed copy (disk full,
 * for example) answers with the storage error and its reason, and removes
 * the partial data.mdb and the directory when the Backup created it. A
 * connection that closes meanwhile gets nothing, but the copy completes
 * (it is counted as work in flight, so the connection, the server and the
 * store stay until it ends; a shutdown waits for it). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
};

struct backup {
	uv_work_t work;
	uv_async_t async; /* the worker's progress wakes the loop */
	struct backups *bs;
	struct storage *st;
	struct conn *conn;
	uint64_t req_id;
	char path[PATH_MAX];
	uint64_t t0_us;
	/* Written by the worker, read by the loop. */
	atomic_uint_fast64_t bytes;
	/* Worker only */
	uint64_t last_wake_ms;
	bool woken;
	bool created;
	/* Loop only */
	uint64_t bytes_pushed;
	/* The outcome, written by the worker before after_work_cb */
	int rc;
	char msg[600];
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

/* Sets *empty to whether dir has no entries; 0 or an errno value. */
static int dir_is_empty(const char *dir, bool *empty)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno;
	*empty = true;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			*empty = false;
			break;
		}
	}
	closedir(d);
	return 0;
}

/* Checks b->path and makes it an empty directory. False (and b->rc set)
 * when it is refused. */
static bool prepare_path(struct backup *b)
{
	const char *data_dir = srv_config(b->bs->srv)->data_dir;
	char parent[PATH_MAX], real_parent[PATH_MAX], real_data[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", b->path);
	/* Trailing slashes name the same directory. */
	size_t n = strlen(parent);
	while (n > 1 && parent[n - 1] == '/')
		parent[--n] = '\0';
	char *slash = strrchr(parent, '/');
	if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (realpath(parent, real_parent) == NULL) {
		fail(b, WB_BAD_REQUEST, "the backup path's parent %s cannot be used: %s", parent,
		     strerror(errno));
		return false;
	}
	if (realpath(data_dir, real_data) == NULL) {
		fail(b, WB_INTERNAL, "cannot resolve the data directory %s: %s", data_dir,
		     strerror(errno));
		return false;
	}
	/* The copy must not land in the data directory: emptying that
	 * directory to restore would remove it, and it would share the disk
	 * whose loss it is meant to survive. */
	char real_path[PATH_MAX];
	bool exists = realpath(b->path, real_path) != NULL;
	if (!exists)
		snprintf(real_path, sizeof(real_path), "%s", real_parent);
	size_t dl = strlen(real_data);
	if (strncmp(real_path, real_data, dl) == 0 &&
	    (real_path[dl] == '\0' || real_path[dl] == '/' || strcmp(real_data, "/") == 0)) {
		fail(b, WB_BAD_REQUEST,
		     "the backup path %s is inside the data directory %s: choose a path outside it",
		     b->path, real_data);
		return false;
	}
	if (!exists) {
		if (mkdir(b->path, 0750) != 0) {
			fail(b, WB_BAD_REQUEST, "cannot create the backup directory %s: %s",
			     b->path, strerror(errno));
			return false;
		}
		b->created = true;
		return true;
	}
	struct stat st;
	if (stat(b->path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fail(b, WB_BAD_REQUEST, "the backup path %s exists and is not a directory",
		     b->path);
		return false;
	}
	bool empty = false;
	int e = dir_is_empty(b->path, &empty);
	if (e != 0) {
		fail(b, WB_BAD_REQUEST, "cannot read the backup directory %s: %s", b->path,
		     strerror(e));
		return false;
	}
	if (!empty) {
		fail(b, WB_BAD_REQUEST,
		     "the backup directory %s is not empty: a backup never overwrites one",
		     b->path);
		return false;
	}
	return true;
}

static void work_cb(uv_work_t *w)
{
	struct backup *b = w->data;
	struct storage *st = b->st;
	if (!prepare_path(b))
		return;
	/* The figures first, in a snapshot that ends before the copy's begins
	 * (see the file's comment). */
	struct storage_txn *txn;
	int rc = storage_txn_begin(st, NULL, STORAGE_RDONLY, &txn);
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
		goto err_after_path;
	}
	b->watermark = ls.watermark;
	b->last_position = last;
	char err[512] = "";
	int dfd = open(b->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		fail(b, WB_BAD_REQUEST, "cannot open the backup directory %s: %s", b->path,
		     strerror(errno));
		goto err_after_path;
	}
	rc = storage_backup_progress(st, dfd, b->path, true, progress_cb, b, err, sizeof(err));
	close(dfd);
	if (rc != 0) {
		fail(b, wb_error_to_wire(rc), "the backup failed: %s", err);
		goto err_after_path;
	}
	b->micros = mono_us() - b->t0_us;
	return;

err_after_path:
	if (b->created)
		rmdir(b->path);
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
	if (b->rc == 0)
		srv_log(WB_LOG_INFO, "backup_done",
		        "path=%s bytes=%llu micros=%llu watermark=%llu last_position=%llu", b->path,
		        (unsigned long long)atomic_load(&b->bytes), (unsigned long long)b->micros,
		        (unsigned long long)b->watermark, (unsigned long long)b->last_position);
	else
		srv_log(WB_LOG_WARN, "backup_failed", "path=%s code=%d reason=%s", b->path, b->rc,
		        b->msg);
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
	if (bs->running) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "a Backup is already running: wait for its answer");
		return false;
	}
	if (path[0] != '/') {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "the backup path must be absolute (a directory on the server's machine), "
		          "not '%.200s'",
		          path);
		return false;
	}
	if (strlen(path) >= PATH_MAX - 16) {
		srv_error(c, req->id, WB_BAD_REQUEST, "the backup path is too long");
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
	snprintf(b->path, sizeof(b->path), "%s", path);
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
	srv_log(WB_LOG_INFO, "backup_started", "path=%s connection=%llu", b->path,
	        (unsigned long long)conn_id(c));
	return false; /* req is not kept: the path was copied */
}

/* ------------------------------------------------------------ the module */

static int backups_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct backups *bs = state;
	(void)slot;
	(void)errmsg;
	(void)errlen;
	bs->srv = srv;
	return 0;
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
