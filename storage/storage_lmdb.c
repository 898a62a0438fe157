/* The LMDB engine behind storage.h: one MDB_env per store.
 *
 * Happy path: storage_open() creates the directory and the environment, adopts
 * the larger of the configured map size and the size recorded in the data file,
 * and opens every database in one write transaction. Any thread takes read
 * snapshots; the one writer thread runs a write transaction with a nested
 * child per request and commits it. Before a batch the writer asks
 * storage_needs_room() and, when told so, calls storage_grow().
 *
 * Failure modes: MDB_MAP_FULL inside a write (LMDB marks the transaction as
 * failed, so the writer aborts it, grows and redoes the whole batch);
 * MDB_MAP_RESIZED when another process grew the map (adopt its size, retry);
 * a remap that fails after LMDB has dropped the old mapping (the environment
 * is left without a map: the store is marked broken and everything after
 * fails with WB_E_IO instead of touching unmapped memory).
 *
 * Resizing. LMDB requires that no transaction of this process is open while
 * mdb_env_set_mapsize() remaps. Read transactions therefore hold the read side
 * of map_lock for their lifetime and storage_grow() takes the write side. The
 * write transaction takes no lock: only the writer thread grows, and never
 * while its write transaction is open. The lock prefers writers so that a
 * steady stream of readers cannot starve a grow. The price (see storage.h):
 * a thread that holds a read transaction must not take the read side again
 * (another read transaction, storage_stats(), storage_needs_room(),
 * storage_backup()) while another thread may grow, because once the grow
 * waits in between, the second request queues behind it and the thread
 * deadlocks with itself. pthread also wants a lock released by the thread
 * that took it, so a read transaction ends on the thread that began it.
 *
 * This is the only engine, so storage.h is implemented here directly rather
 * than through a table of operations. A second engine would rename these
 * functions behind a struct storage_engine_ops chosen by storage_open();
 * nothing above storage/ would change, since no MDB type appears in storage.h.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "codec.h"
#include "storage.h"
#include "wal.h"

#define MIB ((uint64_t)1 << 20)
/* spread_writeback()'s step. */
#define WRITEBACK_CHUNK ((off_t)1 << 20)
#define DEFAULT_MAP_SIZE (64 * MIB)
#define DEFAULT_MAX_READERS 126u

/* Reset read transactions kept for reuse. Under MDB_NOTLS each keeps its
 * reader slot, so the pool is also capped by max_readers. */
#define READ_POOL_MAX 16u

/* Attempts to begin a transaction while another process keeps growing the
 * map under us. */
#define RESIZE_ATTEMPTS 8

static const char *const db_names[STORAGE_DB_COUNT] = {
        [STORAGE_DB_META] = "meta", /* the names are on disk: renaming one loses its data */
        [STORAGE_DB_EVENTS] = "events",
        [STORAGE_DB_STREAMS] = "streams",
        [STORAGE_DB_STREAM_EVENTS] = "stream_events",
        [STORAGE_DB_EVENT_IDS] = "event_ids",
        [STORAGE_DB_LEDGER] = "ledger",
        [STORAGE_DB_STAGED] = "staged",
        [STORAGE_DB_ENTITIES] = "entities",
        [STORAGE_DB_INDEX] = "index",
        [STORAGE_DB_PROJ_META] = "proj_meta",
        [STORAGE_DB_STREAM_META] = "stream_meta",
        [STORAGE_DB_CONSUMERS] = "consumers",
        [STORAGE_DB_PARKED] = "parked",
        [STORAGE_DB_AUTH] = "auth",
};

struct storage {
	MDB_env *env;
	/* whizbang.lock, held with flock(LOCK_EX): one process per store */
	int lock_fd;
	MDB_dbi dbi[STORAGE_DB_COUNT];
	uint64_t page_size;
	/* Read side: held by every read transaction for its lifetime, and
	 * briefly by stats, needs_room and backup, which read the map too.
	 * Write side: remapping. Prefers writers. */
	pthread_rwlock_t map_lock;
	/* Guards pool and pool_len. */
	pthread_mutex_t pool_lock;
	struct storage_txn *pool; /* reset read transactions, linked by next */
	unsigned pool_len;
	unsigned pool_max;
	/* Changed only under the write side of map_lock. */
	uint64_t grow_count;
	/* Set when a remap lost the mapping; read without the lock by the
	 * writer's begin. */
	atomic_bool broken;
	/* Log mode (DESIGN.md §8, the comment before ckpt_load()). */
	bool log_mode;
	bool no_pin;
	char *path;
	/* The read transaction on the last checkpoint's snapshot. Begun
	 * directly (no map_lock held), so a grow does not wait for it. Only
	 * the writer thread (or open and close) touches it. */
	MDB_txn *pin;
	/* A second pin, kept only after a checkpoint whose file was renamed
	 * into place but whose directory fsync failed. */
	MDB_txn *pin_extra;
	int wb_fd; /* spread_writeback()'s own descriptor; -1: none yet */
	atomic_uint_fast64_t ckpt_applied;
	/* The checkpoint between storage_checkpoint_begin() and _end(): its
	 * pin, its meta page as read at the begin, and how its sync went. */
	struct {
		bool active;
		MDB_txn *pin;
		uint64_t txnid, applied;
		uint8_t *page;
		bool renamed;
	} pend;
};

struct storage_txn {
	struct storage *s;
	MDB_txn *txn;
	struct storage_txn *parent;
	struct storage_txn *child;         /* the open nested child, if any */
	struct storage_txn *next;          /* in the pool, while reset */
	unsigned cursors;                  /* open cursors; all must close first */
	bool rdonly;                       /* holds the read side of map_lock */
	const struct storage_txn_ext *ext; /* the state's kind; NULL: none */
	void *ext_state;
};

struct storage_cursor {
	struct storage_txn *txn;
	MDB_cursor *cur;
};

/* Translates an LMDB (or errno) code into the project's codes. */
static int from_mdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return WB_OK;
	case MDB_NOTFOUND:
		return WB_E_NOTFOUND;
	case MDB_KEYEXIST:
		return WB_E_KEYEXIST;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return WB_E_MAPFULL;
	case ENOMEM:
		return WB_E_NOMEM;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return WB_E_CORRUPT;
	case EINVAL:
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
		return WB_E_INVAL;
	default:
		return WB_E_IO;
	}
}

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errmsg == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errmsg, errlen, fmt, ap);
	va_end(ap);
}

static MDB_val to_mdb(struct storage_val v)
{
	return (MDB_val){.mv_size = v.len, .mv_data = (void *)v.data};
}

static struct storage_val from_val(MDB_val v)
{
	return (struct storage_val){.data = v.mv_data, .len = v.mv_size};
}

static bool valid_db(enum storage_db db)
{
	return (unsigned)db < STORAGE_DB_COUNT;
}

static uint64_t round_up(uint64_t n, uint64_t align)
{
	return (n + align - 1) / align * align;
}

static int init_map_lock(pthread_rwlock_t *lock)
{
	pthread_rwlockattr_t attr;
	int rc;

	rc = pthread_rwlockattr_init(&attr);
	if (rc != 0)
		return rc;
	rc = pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	if (rc == 0)
		rc = pthread_rwlock_init(lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return rc;
}

/* Remaps the environment at size bytes; 0 adopts the size recorded in the
 * newest meta page. The caller holds the write side of map_lock (or is
 * storage_open()), so no read transaction of this process is open, and no
 * write transaction is open. Returns an LMDB or errno code. */
static int remap(struct storage *s, uint64_t size)
{
	int rc;

	if (size > SIZE_MAX)
		return ENOMEM;
	/* mdb_env_set_mapsize() unmaps before it maps again, and a failed
	 * mapping leaves the environment without one. Reserving the address
	 * space first turns the likely failure into a clean error. */
	if (size != 0) {
		void *probe = mmap(NULL, (size_t)size, PROT_NONE,
		                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (probe == MAP_FAILED)
			return errno;
		munmap(probe, (size_t)size);
	}
	rc = mdb_env_set_mapsize(s->env, (size_t)size);
	/* EINVAL is LMDB refusing before it unmapped anything (a write
	 * transaction is open); any other failure lost the mapping. */
	if (rc != 0 && rc != EINVAL)
		s->broken = true;
	return rc;
}

/* Another process grew the map past ours: adopt its size. The caller holds no
 * transaction. This never happens with one whizbangd per data directory; a
 * tool writing to it concurrently (mdb_load) would cause it. If our write
 * transaction is open meanwhile, LMDB refuses with EINVAL. */
static int adopt_resize(struct storage *s)
{
	int rc;

	rc = pthread_rwlock_wrlock(&s->map_lock);
	if (rc != 0)
		return rc;
	rc = s->broken ? EIO : remap(s, 0);
	pthread_rwlock_unlock(&s->map_lock);
	return rc;
}

/* Adopts the larger of the configured map size and what the existing file
 * needs: the size its last writer recorded (the map may have grown in an
 * earlier run) and its length on disk. Called by storage_open() before any
 * transaction exists. */
static int adopt_map_size(struct storage *s, uint64_t want)
{
	MDB_envinfo info;
	struct stat st;
	uint64_t size;
	int fd;
	int rc;

	rc = remap(s, 0);
	if (rc != 0)
		return rc;
	rc = mdb_env_info(s->env, &info);
	if (rc != 0)
		return rc;
	size = want > info.me_mapsize ? want : info.me_mapsize;
	rc = mdb_env_get_fd(s->env, &fd);
	if (rc != 0)
		return rc;
	if (fstat(fd, &st) != 0)
		return errno;
	if ((uint64_t)st.st_size > size)
		size = round_up((uint64_t)st.st_size, s->page_size);
	if (size == info.me_mapsize)
		return 0;
	return remap(s, size);
}

static int open_dbs(struct storage *s)
{
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	for (unsigned i = 0; i < STORAGE_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return rc;
		}
	}
	return mdb_txn_commit(txn);
}

/* ------------------------------------------------------------------ log mode
 *
 * Log mode commits without syncing (MDB_NOSYNC); the write-ahead log is the
 * durability point. LMDB 0.9 is not safe across a power cut that way: the
 * pages of a commit and its meta page reach the disk in any order, nothing
 * checksums them, and the two meta slots alternate, so the last synced meta
 * is overwritten two commits later. The checkpoint makes it safe:
 *
 *  1. storage_checkpoint() begins a read transaction on the last commit C
 *     (the pin). LMDB never reuses a page that a live reader can reach, so
 *     from then on no commit writes over a page of C's trees.
 *  2. It fdatasyncs the data file (mdb_env_sync(env, 1) syncs even under
 *     MDB_NOSYNC when forced), so every page of C and C's meta are on disk.
 *  3. It reads C's meta page back from the file, checks it (magic, version,
 *     page size, P_META, txnid C, and last page and txnid against
 *     mdb_env_info()) and saves it with the log sequence it covers in
 *     <path>/checkpoint: a temp file, fsync, rename, fsync of the directory.
 *  4. Only then does it end the previous pin: until the new checkpoint file
 *     is durable, the old one may be the one restored, so its pages stay.
 *
 * At open, when the newest meta slot of data.mdb is not the saved page (an
 * unclean shutdown: a killed process, or a power cut after which any subset
 * of the later writes may have reached the disk, the meta slots included),
 * the saved page is written into both slots and synced before LMDB opens.
 * Every page it reaches is one that was synced at step 2 and not written
 * since (step 1), so the store opens at exactly C, and the log replays what
 * came after. Writing both slots keeps a torn or newer slot from winning;
 * a crash during the restore leaves the checkpoint file, so the next open
 * restores again.
 *
 * The meta page layout below is LMDB 0.9's on a 64-bit host (MDB_page's
 * 16-byte header, then MDB_meta); storage_open() refuses other LMDB
 * versions, and everything read is checked before anything is written. */

_Static_assert(sizeof(size_t) == 8, "the meta page offsets assume a 64-bit LMDB");

#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_DATA_VERSION 1u
#define LMDB_P_META 0x08u
#define LMDB_MAX_PAGE (32u << 10) /* MAX_PAGESIZE in 0.9 */
#define META_PGNO_OFF 0u          /* MDB_page.mp_pgno (8 bytes) */
#define META_FLAGS_OFF 10u        /* MDB_page.mp_flags (2 bytes) */
#define META_MAGIC_OFF 16u        /* MDB_meta.mm_magic */
#define META_VERSION_OFF 20u      /* MDB_meta.mm_version */
#define META_PSIZE_OFF 40u        /* mm_dbs[FREE_DBI].md_pad, alias mm_psize */
#define META_LAST_PG_OFF 136u     /* MDB_meta.mm_last_pg */
#define META_TXNID_OFF 144u       /* MDB_meta.mm_txnid */
#define META_END 152u

/* <path>/checkpoint, all integers big-endian:
 *   "WBCKPT\0\0" | u32 format (1) | u32 page size | u64 applied | u64 txnid |
 *   the meta page (page size bytes) | u32 crc32c of everything before it
 * The checksum only tells a torn or foreign file from a good one: the file is
 * replaced by rename, so a crash leaves the old one or the new one. */
#define CKPT_FILE "checkpoint"
#define CKPT_TMP "checkpoint.tmp"
#define CKPT_MAGIC "WBCKPT\0\0"
#define CKPT_FORMAT 1u
#define CKPT_HEADER 32u

struct ckpt {
	uint64_t applied;
	uint64_t txnid;
	uint32_t page_size;
	uint8_t *page; /* page_size bytes, malloc'd */
};

/* The meta page's own fields are in the host's order, as LMDB writes them. */
static uint64_t meta_u64(const uint8_t *page, unsigned off)
{
	uint64_t v;

	memcpy(&v, page + off, sizeof(v));
	return v;
}

static uint32_t meta_u32(const uint8_t *page, unsigned off)
{
	uint32_t v;

	memcpy(&v, page + off, sizeof(v));
	return v;
}

/* Whether page (page_size bytes) is an LMDB 0.9 meta page of that page size;
 * *why says what is wrong when it is not. */
static bool meta_valid(const uint8_t *page, uint32_t page_size, const char **why)
{
	uint16_t flags;

	memcpy(&flags, page + META_FLAGS_OFF, sizeof(flags));
	if ((flags & LMDB_P_META) == 0)
		*why = "not a meta page (no P_META flag)";
	else if (meta_u32(page, META_MAGIC_OFF) != LMDB_MAGIC)
		*why = "bad magic";
	else if (meta_u32(page, META_VERSION_OFF) != LMDB_DATA_VERSION)
		*why = "not LMDB 0.9's data format";
	else if (meta_u32(page, META_PSIZE_OFF) != page_size)
		*why = "another page size";
	else
		return true;
	return false;
}

/* The same meta apart from the page number in the header, which is the
 * slot's own (0 or 1). */
static bool meta_same(const uint8_t *a, const uint8_t *b, uint32_t page_size)
{
	return memcmp(a + 8, b + 8, page_size - 8u) == 0;
}

static int pread_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return EIO; /* short file: the caller says which */
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return errno;
	if (fsync(fd) != 0)
		rc = errno;
	close(fd);
	return rc;
}

/* ENOSPC and its relatives: the disk, a quota or a file size limit. */
static bool no_space(int err)
{
	return err == ENOSPC || err == EDQUOT || err == EFBIG;
}

/* Reads <path>/checkpoint into *ck. 0; WB_E_NOTFOUND when there is none;
 * WB_E_CORRUPT (errmsg says why) when it does not validate; WB_E_IO when it
 * cannot be read. */
static int ckpt_load(const char *path, struct ckpt *ck, char *errmsg, size_t errlen)
{
	char file[4096];
	uint8_t head[CKPT_HEADER];
	uint8_t tail[4];
	struct stat st;
	const char *why;
	int fd;
	int rc;

	snprintf(file, sizeof(file), "%s/" CKPT_FILE, path);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return WB_E_NOTFOUND;
	if (fd < 0) {
		rc = errno;
		set_err(errmsg, errlen, "storage: cannot open %s: %s", file, strerror(rc));
		return WB_E_IO;
	}
	ck->page = NULL;
	if (fstat(fd, &st) != 0) {
		rc = errno;
		set_err(errmsg, errlen, "storage: cannot stat %s: %s", file, strerror(rc));
		close(fd);
		return WB_E_IO;
	}
	why = NULL;
	if (st.st_size < (off_t)CKPT_HEADER + 4)
		why = "it is too short";
	else if ((rc = pread_full(fd, head, CKPT_HEADER, 0)) != 0)
		why = "its header cannot be read";
	else if (memcmp(head, CKPT_MAGIC, 8) != 0)
		why = "it is not a checkpoint file (bad magic)";
	else if (get_u32(head + 8) != CKPT_FORMAT)
		why = "it has an unknown format version";
	if (why == NULL) {
		ck->page_size = get_u32(head + 12);
		ck->applied = get_u64(head + 16);
		ck->txnid = get_u64(head + 24);
		if (ck->page_size < 512 || ck->page_size > LMDB_MAX_PAGE ||
		    (ck->page_size & (ck->page_size - 1)) != 0)
			why = "its page size is not a power of two LMDB uses";
		else if ((uint64_t)st.st_size != CKPT_HEADER + ck->page_size + 4u)
			why = "its length does not match its page size";
	}
	if (why == NULL) {
		ck->page = malloc(ck->page_size);
		if (ck->page == NULL) {
			close(fd);
			set_err(errmsg, errlen, "storage: out of memory");
			return WB_E_NOMEM;
		}
		if (pread_full(fd, ck->page, ck->page_size, CKPT_HEADER) != 0 ||
		    pread_full(fd, tail, 4, (off_t)(CKPT_HEADER + ck->page_size)) != 0)
			why = "it cannot be read";
		else if (wal_crc32c(wal_crc32c(0, head, CKPT_HEADER), ck->page, ck->page_size) !=
		         get_u32(tail))
			why = "its checksum does not match (torn or damaged)";
		else if (!meta_valid(ck->page, ck->page_size, &why))
			;
		else if (meta_u64(ck->page, META_TXNID_OFF) != ck->txnid)
			why = "its meta page is of another transaction than it says";
	}
	close(fd);
	if (why != NULL) {
		free(ck->page);
		ck->page = NULL;
		set_err(errmsg, errlen,
		        "storage: the checkpoint file %s is invalid: %s; refusing to open (the "
		        "store cannot be trusted without it: restore from a backup)",
		        file, why);
		return WB_E_CORRUPT;
	}
	return 0;
}

/* Writes the checkpoint file for meta page page (of transaction txnid)
 * covering applied, durably: a temp file, fsync, rename, fsync of the
 * directory. An errno value; *renamed is set once the new file has replaced
 * the old one (only the directory's fsync may still have failed). */
static int ckpt_save(const char *path, uint32_t page_size, uint64_t applied, uint64_t txnid,
                     const uint8_t *page, char *errmsg, size_t errlen, bool *renamed)
{
	char tmp[4096];
	char file[4096];
	size_t len = CKPT_HEADER + page_size + 4u;
	uint8_t *buf;
	int fd;
	int rc;

	snprintf(tmp, sizeof(tmp), "%s/" CKPT_TMP, path);
	snprintf(file, sizeof(file), "%s/" CKPT_FILE, path);
	buf = malloc(len);
	if (buf == NULL) {
		set_err(errmsg, errlen, "storage: checkpoint: out of memory");
		return ENOMEM;
	}
	memcpy(buf, CKPT_MAGIC, 8);
	put_u32(buf + 8, CKPT_FORMAT);
	put_u32(buf + 12, page_size);
	put_u64(buf + 16, applied);
	put_u64(buf + 24, txnid);
	memcpy(buf + CKPT_HEADER, page, page_size);
	put_u32(buf + CKPT_HEADER + page_size, wal_crc32c(0, buf, CKPT_HEADER + page_size));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		rc = errno;
		free(buf);
		set_err(errmsg, errlen, "storage: checkpoint: cannot create %s: %s", tmp,
		        strerror(rc));
		return rc;
	}
	rc = pwrite_full(fd, buf, len, 0);
	free(buf);
	if (rc == 0 && fsync(fd) != 0)
		rc = errno;
	if (close(fd) != 0 && rc == 0)
		rc = errno;
	if (rc != 0) {
		set_err(errmsg, errlen, "storage: checkpoint: writing %s: %s", tmp, strerror(rc));
		unlink(tmp);
		return rc;
	}
	if (rename(tmp, file) != 0) {
		rc = errno;
		set_err(errmsg, errlen, "storage: checkpoint: rename %s: %s", tmp, strerror(rc));
		unlink(tmp);
		return rc;
	}
	*renamed = true;
	rc = fsync_dir(path);
	if (rc != 0)
		set_err(errmsg, errlen, "storage: checkpoint: fsync of %s: %s", path, strerror(rc));
	return rc;
}

/* Before LMDB opens: when data.mdb's newest meta slot is not the checkpoint's
 * page (or a slot does not even validate), writes the page into both slots
 * (each with its own page number), durably. Refuses a data file too
 * short for the checkpoint: it is not the file the checkpoint was taken of. */
static int ckpt_restore(const char *path, const struct ckpt *ck, char *errmsg, size_t errlen)
{
	char file[4096];
	uint8_t *slot[2] = {NULL, NULL};
	bool valid[2] = {false, false};
	const char *why;
	struct stat st;
	int newest = -1;
	int rc = 0;
	int fd;

	snprintf(file, sizeof(file), "%s/data.mdb", path);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno;
		set_err(errmsg, errlen,
		        "storage: %s has a checkpoint but its data file %s cannot be opened: %s; "
		        "refusing to open",
		        path, file, strerror(rc));
		return rc == ENOENT ? WB_E_CORRUPT : WB_E_IO;
	}
	if (fstat(fd, &st) != 0) {
		rc = errno;
		set_err(errmsg, errlen, "storage: cannot stat %s: %s", file, strerror(rc));
		close(fd);
		return WB_E_IO;
	}
	if ((uint64_t)st.st_size < (meta_u64(ck->page, META_LAST_PG_OFF) + 1) * ck->page_size) {
		set_err(errmsg, errlen,
		        "storage: %s is shorter (%lld bytes) than the checkpoint's last page "
		        "(page %llu): it is not the data file the checkpoint was taken of; "
		        "refusing to open",
		        file, (long long)st.st_size,
		        (unsigned long long)meta_u64(ck->page, META_LAST_PG_OFF));
		close(fd);
		return WB_E_CORRUPT;
	}
	for (int i = 0; i < 2; i++) {
		slot[i] = malloc(ck->page_size);
		if (slot[i] == NULL) {
			rc = ENOMEM;
			goto out;
		}
		rc = pread_full(fd, slot[i], ck->page_size, (off_t)i * ck->page_size);
		if (rc != 0)
			goto out;
		valid[i] = meta_valid(slot[i], ck->page_size, &why);
		if (valid[i] && (newest < 0 || meta_u64(slot[i], META_TXNID_OFF) >
		                                       meta_u64(slot[newest], META_TXNID_OFF)))
			newest = i;
	}
	if (valid[0] && valid[1] && meta_same(slot[newest], ck->page, ck->page_size))
		goto out; /* a clean shutdown at the checkpoint: nothing to undo */
	/* The two pages are written through a descriptor opened O_DSYNC, as
	 * LMDB writes its meta pages: each is durable when its write returns.
	 * An fdatasync would also flush every page a killed process left
	 * dirty in the page cache (a second per 2 GB of them), all of which
	 * the restore is about to roll back. */
	int dfd = open(file, O_WRONLY | O_DSYNC | O_CLOEXEC);
	if (dfd < 0)
		rc = errno;
	for (int i = 0; i < 2 && rc == 0; i++) {
		uint64_t pgno = (uint64_t)i;

		memcpy(slot[i], ck->page, ck->page_size);
		memcpy(slot[i] + META_PGNO_OFF, &pgno, sizeof(pgno));
		rc = pwrite_full(dfd, slot[i], ck->page_size, (off_t)i * ck->page_size);
	}
	if (dfd >= 0 && close(dfd) != 0 && rc == 0)
		rc = errno;
out:
	if (rc != 0)
		set_err(errmsg, errlen, "storage: restoring the checkpoint's meta page into %s: %s",
		        file, strerror(rc));
	free(slot[0]);
	free(slot[1]);
	if (close(fd) != 0 && rc == 0) {
		rc = errno;
		set_err(errmsg, errlen, "storage: closing %s: %s", file, strerror(rc));
	}
	return rc == 0 ? 0 : from_mdb(rc);
}

/* Log mode: gives the data file real blocks up to size bytes, so that no
 * commit meets a full disk halfway (with MDB_NOSYNC, a page the kernel could
 * not allocate at writeback would be lost without a word). On failure the
 * file gets its old length back. An errno value. */
static int data_reserve(struct storage *s, uint64_t size)
{
	struct stat st;
	int fd;
	int rc;

	rc = mdb_env_get_fd(s->env, &fd);
	if (rc != 0)
		return rc;
	if (fstat(fd, &st) != 0)
		return errno;
	if ((uint64_t)st.st_size >= size)
		return 0;
	rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc != 0 && ftruncate(fd, st.st_size) != 0) {
		/* The longer file is harmless: LMDB writes no page past its
		 * map, and the next open adopts the length as the map. */
	}
	return rc;
}

/* mdb_env_info() with the map held still (against adopt_resize()). */
static int env_info(struct storage *s, MDB_envinfo *info)
{
	int rc = pthread_rwlock_rdlock(&s->map_lock);

	if (rc != 0)
		return rc;
	rc = s->broken ? EIO : mdb_env_info(s->env, info);
	pthread_rwlock_unlock(&s->map_lock);
	return rc;
}

/* Ends the pins, if any. Aborting a read transaction touches only its reader
 * slot in the lock file, never the map, so it is safe after a remap. */
static void unpin(struct storage *s)
{
	if (s->pin != NULL) {
		mdb_txn_abort(s->pin);
		s->pin = NULL;
	}
	if (s->pin_extra != NULL) {
		mdb_txn_abort(s->pin_extra);
		s->pin_extra = NULL;
	}
}

uint64_t storage_checkpoint_applied(const struct storage *s)
{
	return atomic_load(&s->ckpt_applied);
}

int storage_checkpoint_begin(struct storage *s, uint64_t applied, char *errmsg, size_t errlen)
{
	MDB_txn *pin = NULL;
	MDB_envinfo info;
	uint8_t *page[2] = {NULL, NULL};
	uint64_t txnid;
	const char *why = NULL;
	int found = -1;
	int fd;
	int rc;

	if (!s->log_mode) {
		set_err(errmsg, errlen, "storage: checkpoint outside log mode");
		return WB_E_INVAL;
	}
	if (s->broken) {
		set_err(errmsg, errlen, "storage: the map is lost");
		return WB_E_IO;
	}
	if (s->pend.active) {
		set_err(errmsg, errlen, "storage: a checkpoint is in progress already");
		return WB_E_INVAL;
	}
	/* 1. Pin the last commit before anything else: from here on no commit
	 * reuses a page it can reach. */
	rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &pin);
	if (rc != 0) {
		set_err(errmsg, errlen, "storage: checkpoint: pinning the snapshot: %s",
		        mdb_strerror(rc));
		return from_mdb(rc);
	}
	txnid = mdb_txn_id(pin);
	/* 2. Its meta page, read now: the commit after next rewrites its slot.
	 * (The page cache holds what LMDB wrote; the sync makes it the
	 * disk's.) */
	rc = mdb_env_get_fd(s->env, &fd);
	for (int i = 0; rc == 0 && i < 2; i++) {
		page[i] = malloc(s->page_size);
		if (page[i] == NULL)
			rc = ENOMEM;
		else
			rc = pread_full(fd, page[i], s->page_size,
			                (off_t)((uint64_t)i * s->page_size));
		if (rc == 0 && meta_u64(page[i], META_TXNID_OFF) == txnid)
			found = i;
	}
	if (rc != 0) {
		set_err(errmsg, errlen, "storage: checkpoint: reading the meta pages: %s",
		        mdb_strerror(rc));
		goto fail;
	}
	if (found < 0)
		why = "no meta slot holds the pinned transaction";
	else if (!meta_valid(page[found], (uint32_t)s->page_size, &why))
		;
	else if (env_info(s, &info) != 0)
		why = "mdb_env_info failed";
	else if (info.me_last_txnid != txnid)
		why = "the environment's last transaction is not the pinned one (a write "
		      "transaction is open?)";
	else if (info.me_last_pgno != meta_u64(page[found], META_LAST_PG_OFF))
		why = "the meta page's last page differs from the environment's";
	if (why != NULL) {
		set_err(errmsg, errlen, "storage: checkpoint of transaction %llu: %s",
		        (unsigned long long)txnid, why);
		rc = EINVAL;
		goto fail;
	}
	s->pend.active = true;
	s->pend.pin = pin;
	s->pend.txnid = txnid;
	s->pend.applied = applied;
	s->pend.page = page[found];
	s->pend.renamed = false;
	free(page[1 - found]);
	return 0;

fail:
	free(page[0]);
	free(page[1]);
	mdb_txn_abort(pin);
	return rc == EINVAL ? WB_E_CORRUPT : WB_E_IO;
}

/* Writes the data file's dirty pages back WRITEBACK_CHUNK at a time, each
 * chunk waited for before the next is started (sync_file_range), ahead of
 * the checkpoint's fdatasync. While the pin holds every commit writes new
 * pages, so a checkpoint can find a gigabyte dirty; flushed by one fdatasync
 * it fills the disk's queue and holds the log's fdatasyncs behind it for
 * half a second. In chunks, a log sync waits behind one chunk at most. It
 * only spreads the I/O: durability still comes from the fdatasync after
 * it. It uses a descriptor of its own, so that a write-back error it meets
 * is still reported to that fdatasync. */
static void spread_writeback(struct storage *s)
{
	char file[4096];
	struct stat st;
	if (s->wb_fd < 0 &&
	    (size_t)snprintf(file, sizeof(file), "%s/data.mdb", s->path) < sizeof(file))
		s->wb_fd = open(file, O_RDONLY | O_CLOEXEC);
	if (s->wb_fd < 0 || fstat(s->wb_fd, &st) != 0)
		return;
	/* The pinned commit's pages all lie below its last page; the file is
	 * allocated up to the whole map, often many times that. */
	uint64_t used = (meta_u64(s->pend.page, META_LAST_PG_OFF) + 1) * s->page_size;
	off_t end = used < (uint64_t)st.st_size ? (off_t)used : st.st_size;
	for (off_t off = 0; off < end; off += WRITEBACK_CHUNK)
		if (sync_file_range(s->wb_fd, off, WRITEBACK_CHUNK,
		                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
		                            SYNC_FILE_RANGE_WAIT_AFTER) != 0)
			return;
}

int storage_checkpoint_sync(struct storage *s, char *errmsg, size_t errlen)
{
	int fd;
	int rc = mdb_env_get_fd(s->env, &fd);
	/* 3. Every page of the pinned commit on disk (later commits' pages
	 * too; harmless)... */
	if (rc == 0)
		spread_writeback(s);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = errno;
	if (rc != 0) {
		set_err(errmsg, errlen, "storage: checkpoint: fdatasync of the data file: %s",
		        strerror(rc));
		return WB_E_IO;
	}
	/* ... then its meta page saved beside the store. */
	rc = ckpt_save(s->path, (uint32_t)s->page_size, s->pend.applied, s->pend.txnid,
	               s->pend.page, errmsg, errlen, &s->pend.renamed);
	if (rc != 0)
		return no_space(rc) ? WB_E_NOSPC : WB_E_IO;
	return 0;
}

void storage_checkpoint_end(struct storage *s, int sync_rc)
{
	MDB_txn *pin = s->pend.pin;
	if (sync_rc != 0 && s->pend.renamed && !s->no_pin) {
		/* Only the directory's fsync failed: after a crash either file
		 * may be the one found, so both snapshots stay pinned (the
		 * caller stops the process on WB_E_IO anyway). */
		if (s->pin_extra != NULL)
			mdb_txn_abort(s->pin_extra);
		s->pin_extra = pin;
		pin = NULL;
	}
	if (sync_rc == 0) {
		/* 4. The new checkpoint is durable: the old snapshot may go. */
		unpin(s);
		if (s->no_pin)
			mdb_txn_abort(pin);
		else
			s->pin = pin;
		atomic_store(&s->ckpt_applied, s->pend.applied);
	} else if (pin != NULL) {
		mdb_txn_abort(pin);
	}
	free(s->pend.page);
	memset(&s->pend, 0, sizeof(s->pend));
}

int storage_checkpoint(struct storage *s, uint64_t applied, char *errmsg, size_t errlen)
{
	int rc = storage_checkpoint_begin(s, applied, errmsg, errlen);
	if (rc != 0)
		return rc;
	rc = storage_checkpoint_sync(s, errmsg, errlen);
	storage_checkpoint_end(s, rc);
	return rc;
}

/* Log mode's part of storage_open() before LMDB opens: the version check and
 * the checkpoint's restore (under the directory's flock, so no other process
 * has the file open). *ck receives the checkpoint (page NULL: none). Outside
 * log mode, a checkpoint file means the store was last used in log mode: its
 * newest state may be torn and its log unreplayed, so it is refused. */
static int log_mode_prepare(const struct storage_options *opts, struct ckpt *ck, char *errmsg,
                            size_t errlen)
{
	int major;
	int minor;
	int rc;

	ck->page = NULL;
	if (!opts->log_mode) {
		char file[4096];

		snprintf(file, sizeof(file), "%s/" CKPT_FILE, opts->path);
		if (access(file, F_OK) == 0) {
			set_err(errmsg, errlen,
			        "storage: %s was last used in log mode (it has %s): open it in "
			        "log mode, which restores its checkpoint and replays its log",
			        opts->path, file);
			return WB_E_INVAL;
		}
		return 0;
	}
	mdb_version(&major, &minor, NULL);
	if (major != 0 || minor != 9) {
		set_err(errmsg, errlen,
		        "storage: log mode needs LMDB 0.9.x, whose meta page it restores; this "
		        "is LMDB %d.%d",
		        major, minor);
		return WB_E_INVAL;
	}
	rc = ckpt_load(opts->path, ck, errmsg, errlen);
	if (rc == WB_E_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (!opts->unsafe_no_restore) {
		rc = ckpt_restore(opts->path, ck, errmsg, errlen);
		if (rc != 0) {
			free(ck->page);
			ck->page = NULL;
		}
	}
	return rc;
}

/* Log mode's part of storage_open() once the environment is open and mapped,
 * before the databases are opened (which may commit): the data file gets its
 * blocks, the restored state is checked and pinned. */
static int log_mode_start(struct storage *s, const struct storage_options *opts,
                          const struct ckpt *ck, char *errmsg, size_t errlen)
{
	MDB_envinfo info;
	int rc;

	rc = env_info(s, &info);
	if (rc != 0) {
		set_err(errmsg, errlen, "storage: %s: mdb_env_info: %s", opts->path,
		        mdb_strerror(rc));
		return from_mdb(rc);
	}
	/* Without blocks reserved up to the map, a commit could meet a full
	 * disk halfway. On a full disk the map shrinks to what the file holds
	 * (never below the pages in use), so the writer meets a full map and
	 * storage_grow() says WB_E_NOSPC; reads still work. */
	rc = data_reserve(s, info.me_mapsize);
	if (no_space(rc)) {
		struct stat st;
		int fd;

		if (mdb_env_get_fd(s->env, &fd) == 0 && fstat(fd, &st) == 0) {
			uint64_t size = (uint64_t)st.st_size / s->page_size * s->page_size;

			/* 0 would mean "the meta's size" to remap() */
			if (size >= 2 * s->page_size)
				rc = remap(s, size);
		}
	}
	if (rc != 0) {
		set_err(errmsg, errlen, "storage: %s: reserving the data file's blocks: %s",
		        opts->path, mdb_strerror(rc));
		return from_mdb(rc);
	}
	if (ck->page == NULL)
		return 0; /* storage_open() takes the first checkpoint */
	if (!opts->unsafe_no_restore && info.me_last_txnid != ck->txnid) {
		set_err(errmsg, errlen,
		        "storage: %s: after restoring the checkpoint of transaction %llu, LMDB "
		        "opened at transaction %llu; refusing to open",
		        opts->path, (unsigned long long)ck->txnid,
		        (unsigned long long)info.me_last_txnid);
		return WB_E_CORRUPT;
	}
	atomic_store(&s->ckpt_applied, ck->applied);
	if (opts->unsafe_no_pin)
		return 0;
	rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->pin);
	if (rc != 0) {
		s->pin = NULL;
		set_err(errmsg, errlen, "storage: %s: pinning the checkpoint: %s", opts->path,
		        mdb_strerror(rc));
		return from_mdb(rc);
	}
	return 0;
}

int storage_open(struct storage **out, const struct storage_options *opts, char *errmsg,
                 size_t errlen)
{
	struct storage *s;
	struct ckpt ck = {0};
	MDB_stat st;
	const char *step;
	uint64_t map_size;
	unsigned max_readers;
	unsigned flags;
	int rc;

	if (opts == NULL || opts->path == NULL || opts->path[0] == '\0') {
		set_err(errmsg, errlen, "storage: no data directory given");
		return WB_E_INVAL;
	}
	map_size = opts->map_size != 0 ? opts->map_size : DEFAULT_MAP_SIZE;
	map_size = round_up(map_size, (uint64_t)sysconf(_SC_PAGESIZE));
	if (map_size > SIZE_MAX) {
		set_err(errmsg, errlen, "storage: map size %llu is too large",
		        (unsigned long long)map_size);
		return WB_E_INVAL;
	}
	max_readers = opts->max_readers != 0 ? opts->max_readers : DEFAULT_MAX_READERS;
	flags = MDB_NOTLS | (opts->no_sync ? MDB_NOSYNC : 0u);

	if (mkdir(opts->path, 0750) != 0 && errno != EEXIST) {
		rc = errno;
		set_err(errmsg, errlen, "storage: mkdir %s: %s", opts->path, strerror(rc));
		return from_mdb(rc);
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		set_err(errmsg, errlen, "storage: out of memory");
		return WB_E_NOMEM;
	}
	s->wb_fd = -1;
	s->pool_max = max_readers < READ_POOL_MAX ? max_readers : READ_POOL_MAX;
	s->log_mode = opts->log_mode;
	s->no_pin = opts->log_mode && opts->unsafe_no_pin;
	s->path = strdup(opts->path);
	if (s->path == NULL) {
		set_err(errmsg, errlen, "storage: out of memory");
		free(s);
		return WB_E_NOMEM;
	}

	/* LMDB lets several processes share an environment, but a second
	 * whizbangd (or an offline replay beside a server) would each keep
	 * the ledger's state in memory and write over the other's. */
	char lock_path[4096];
	snprintf(lock_path, sizeof(lock_path), "%s/whizbang.lock", opts->path);
	s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (s->lock_fd < 0) {
		rc = errno;
		set_err(errmsg, errlen, "storage: %s: %s", lock_path, strerror(rc));
		free(s->path);
		free(s);
		return WB_E_IO;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		rc = errno;
		set_err(errmsg, errlen, "storage: %s is in use by another process (%s is locked)",
		        opts->path, lock_path);
		close(s->lock_fd);
		free(s->path);
		free(s);
		return rc == EWOULDBLOCK ? WB_E_AGAIN : WB_E_IO;
	}
	rc = log_mode_prepare(opts, &ck, errmsg, errlen);
	if (rc != 0) {
		close(s->lock_fd);
		free(s->path);
		free(s);
		return rc;
	}
	/* Log mode never syncs at commit: storage_checkpoint() does. Until the
	 * first checkpoint exists there is nothing to restore, so the commit
	 * that opens the databases of a store without one is synced. */
	if (s->log_mode && ck.page != NULL)
		flags |= MDB_NOSYNC;

	step = "rwlock init";
	rc = init_map_lock(&s->map_lock);
	if (rc != 0)
		goto err_after_alloc;
	step = "mutex init";
	rc = pthread_mutex_init(&s->pool_lock, NULL);
	if (rc != 0)
		goto err_after_map_lock;
	step = "mdb_env_create";
	rc = mdb_env_create(&s->env);
	if (rc != 0)
		goto err_after_pool_lock;
	step = "mdb_env_set_maxdbs";
	rc = mdb_env_set_maxdbs(s->env, STORAGE_DB_COUNT);
	if (rc != 0)
		goto err_after_env;
	step = "mdb_env_set_mapsize";
	rc = mdb_env_set_mapsize(s->env, (size_t)map_size);
	if (rc != 0)
		goto err_after_env;
	step = "mdb_env_set_maxreaders";
	rc = mdb_env_set_maxreaders(s->env, max_readers);
	if (rc != 0)
		goto err_after_env;
	/* No MDB_WRITEMAP: nested transactions need it off, and it would
	 * also grow the file to the whole map. No MDB_NOMETASYNC: an
	 * acknowledged commit must survive a power cut. */
	step = "mdb_env_open";
	rc = mdb_env_open(s->env, opts->path, flags, 0640);
	if (rc != 0)
		goto err_after_env;
	step = "mdb_env_stat";
	rc = mdb_env_stat(s->env, &st);
	if (rc != 0)
		goto err_after_env;
	s->page_size = st.ms_psize;
	step = "adopting the map size";
	rc = adopt_map_size(s, map_size);
	if (rc != 0)
		goto err_after_env;
	if (s->log_mode) {
		if (ck.page != NULL && ck.page_size != s->page_size) {
			set_err(errmsg, errlen,
			        "storage: %s: the checkpoint's page size (%u) is not the data "
			        "file's (%llu); refusing to open",
			        opts->path, ck.page_size, (unsigned long long)s->page_size);
			rc = WB_E_CORRUPT;
			goto err_logged;
		}
		rc = log_mode_start(s, opts, &ck, errmsg, errlen);
		if (rc != 0)
			goto err_logged;
	}
	step = "opening the databases";
	rc = open_dbs(s);
	if (rc != 0)
		goto err_after_env;
	/* A store without a checkpoint file was synced by its last writer
	 * (sync mode) or is new, so its state now is a sound first
	 * checkpoint. */
	if (s->log_mode && ck.page == NULL) {
		step = "mdb_env_set_flags";
		rc = mdb_env_set_flags(s->env, MDB_NOSYNC, 1);
		if (rc != 0)
			goto err_after_env;
		rc = storage_checkpoint(s, 0, errmsg, errlen);
		if (rc != 0)
			goto err_logged;
	}
	free(ck.page);

	*out = s;
	return 0;

err_logged:
	/* errmsg says why already; rc is a project code. */
	unpin(s);
	mdb_env_close(s->env);
	if (s->wb_fd >= 0)
		close(s->wb_fd);
	pthread_mutex_destroy(&s->pool_lock);
	pthread_rwlock_destroy(&s->map_lock);
	close(s->lock_fd);
	free(ck.page);
	free(s->path);
	free(s);
	return rc;

err_after_env:
	unpin(s);
	mdb_env_close(s->env);
err_after_pool_lock:
	pthread_mutex_destroy(&s->pool_lock);
err_after_map_lock:
	pthread_rwlock_destroy(&s->map_lock);
err_after_alloc:
	close(s->lock_fd);
	free(ck.page);
	free(s->path);
	free(s);
	set_err(errmsg, errlen, "storage: %s: %s: %s", opts->path, step, mdb_strerror(rc));
	return from_mdb(rc);
}

void storage_close(struct storage *s)
{
	if (s == NULL)
		return;
	while (s->pool != NULL) {
		struct storage_txn *t = s->pool;

		s->pool = t->next;
		mdb_txn_abort(t->txn);
		free(t);
	}
	/* Log mode: the writer took its last checkpoint before this; what was
	 * committed after it is replayed from the log at the next open. */
	if (s->pend.active)
		storage_checkpoint_end(s, WB_E_IO);
	unpin(s);
	mdb_env_close(s->env);
	pthread_mutex_destroy(&s->pool_lock);
	pthread_rwlock_destroy(&s->map_lock);
	close(s->lock_fd);
	free(s->path);
	free(s);
}

/* Starts a read snapshot on a pooled handle, or on a new one when the pool is
 * empty. The caller holds the read side of map_lock. Returns an LMDB code. */
static int snapshot_open(struct storage *s, struct storage_txn **out)
{
	struct storage_txn *t;
	int rc;

	pthread_mutex_lock(&s->pool_lock);
	t = s->pool;
	if (t != NULL) {
		s->pool = t->next;
		s->pool_len--;
	}
	pthread_mutex_unlock(&s->pool_lock);

	if (t != NULL) {
		rc = mdb_txn_renew(t->txn);
		if (rc != 0) {
			mdb_txn_abort(t->txn);
			free(t);
			return rc;
		}
	} else {
		t = malloc(sizeof(*t));
		if (t == NULL)
			return ENOMEM;
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
		if (rc != 0) {
			free(t);
			return rc;
		}
	}
	t->s = s;
	t->parent = NULL;
	t->child = NULL;
	t->next = NULL;
	t->cursors = 0;
	t->rdonly = true;
	t->ext = NULL;
	t->ext_state = NULL;
	*out = t;
	return 0;
}

/* Ends the snapshot and keeps the handle (and its reader slot) for reuse when
 * the pool has room. The caller releases map_lock afterwards, so that no
 * snapshot outlives its hold on the lock. */
static void snapshot_close(struct storage_txn *t)
{
	struct storage *s = t->s;
	bool keep;

	mdb_txn_reset(t->txn);
	pthread_mutex_lock(&s->pool_lock);
	keep = s->pool_len < s->pool_max;
	if (keep) {
		t->next = s->pool;
		s->pool = t;
		s->pool_len++;
	}
	pthread_mutex_unlock(&s->pool_lock);
	if (!keep) {
		mdb_txn_abort(t->txn);
		free(t);
	}
}

static int begin_read(struct storage *s, struct storage_txn **out)
{
	int rc = MDB_MAP_RESIZED;

	for (int i = 0; i < RESIZE_ATTEMPTS && rc == MDB_MAP_RESIZED; i++) {
		rc = pthread_rwlock_rdlock(&s->map_lock);
		if (rc != 0)
			break;
		rc = s->broken ? EIO : snapshot_open(s, out);
		if (rc == 0)
			return 0; /* the lock is held until end_read() */
		pthread_rwlock_unlock(&s->map_lock);
		if (rc == MDB_MAP_RESIZED) {
			int err = adopt_resize(s);

			if (err != 0)
				rc = err;
		}
	}
	return from_mdb(rc);
}

static void end_read(struct storage_txn *t)
{
	struct storage *s = t->s;

	snapshot_close(t);
	pthread_rwlock_unlock(&s->map_lock);
}

/* Writes txn's state into it and frees it (ext_flush) or only frees it. */
static int ext_end(struct storage_txn *txn, bool flush)
{
	int rc = 0;
	if (txn->ext == NULL)
		return 0;
	if (flush)
		rc = txn->ext->flush(txn, txn->ext_state);
	txn->ext->release(txn->ext_state);
	txn->ext = NULL;
	txn->ext_state = NULL;
	return rc;
}

int storage_txn_flush(struct storage_txn *txn)
{
	return ext_end(txn, true);
}

void *storage_txn_ext(struct storage_txn *txn, const struct storage_txn_ext *kind)
{
	return txn->ext == kind ? txn->ext_state : NULL;
}

void storage_txn_set_ext(struct storage_txn *txn, const struct storage_txn_ext *kind, void *state)
{
	assert(!txn->rdonly && txn->ext == NULL);
	txn->ext = kind;
	txn->ext_state = state;
}

static int begin_write(struct storage *s, struct storage_txn *parent, struct storage_txn **out)
{
	struct storage_txn *t;
	int rc = MDB_MAP_RESIZED;

	if (parent != NULL && (parent->rdonly || parent->s != s || parent->child != NULL))
		return WB_E_INVAL;
	if (s->broken)
		return WB_E_IO;
	/* The child must read what the parent's state holds. */
	if (parent != NULL && (rc = ext_end(parent, true)) != 0)
		return rc;
	rc = MDB_MAP_RESIZED;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return WB_E_NOMEM;
	/* Only a top-level transaction can meet MDB_MAP_RESIZED, and then the
	 * writer has no transaction open, as adopting the size requires. */
	for (int i = 0; i < RESIZE_ATTEMPTS && rc == MDB_MAP_RESIZED; i++) {
		rc = mdb_txn_begin(s->env, parent != NULL ? parent->txn : NULL, 0, &t->txn);
		if (rc == MDB_MAP_RESIZED) {
			int err = adopt_resize(s);

			if (err != 0)
				rc = err;
		}
	}
	if (rc != 0) {
		free(t);
		return from_mdb(rc);
	}
	t->s = s;
	t->parent = parent;
	if (parent != NULL)
		parent->child = t;
	*out = t;
	return 0;
}

int storage_txn_begin(struct storage *s, struct storage_txn *parent, unsigned flags,
                      struct storage_txn **out)
{
	if ((flags & ~STORAGE_RDONLY) != 0)
		return WB_E_INVAL;
	if ((flags & STORAGE_RDONLY) != 0)
		return parent == NULL ? begin_read(s, out) : WB_E_INVAL;
	return begin_write(s, parent, out);
}

struct storage *storage_txn_store(struct storage_txn *txn)
{
	return txn->s;
}

int storage_txn_commit(struct storage_txn *txn)
{
	int rc;

	assert(txn->cursors == 0);
	if (txn->rdonly) {
		end_read(txn);
		return 0;
	}
	/* LMDB commits an open child along with its parent; do it here so
	 * that the child's handle is freed as well. */
	if (txn->child != NULL) {
		rc = storage_txn_commit(txn->child);
		if (rc != 0) {
			storage_txn_abort(txn);
			return rc;
		}
	}
	if ((rc = ext_end(txn, true)) != 0) {
		storage_txn_abort(txn);
		return rc;
	}
	/* mdb_txn_commit() frees the transaction whatever it returns. After
	 * MDB_MAP_FULL the batch must be redone in full after storage_grow(). */
	rc = mdb_txn_commit(txn->txn);
	if (txn->parent != NULL)
		txn->parent->child = NULL;
	free(txn);
	return from_mdb(rc);
}

void storage_txn_abort(struct storage_txn *txn)
{
	if (txn == NULL)
		return;
	assert(txn->cursors == 0);
	if (txn->rdonly) {
		end_read(txn);
		return;
	}
	if (txn->child != NULL)
		storage_txn_abort(txn->child);
	ext_end(txn, false);
	mdb_txn_abort(txn->txn);
	if (txn->parent != NULL)
		txn->parent->child = NULL;
	free(txn);
}

/* A note on WB_E_MAPFULL from put, del and commit: LMDB has marked the
 * transaction in which it happened as failed, every later call on it fails,
 * and the caller must abort it. Its parent is not marked, but the map is
 * still full, so the writer aborts the whole batch, grows the map and redoes
 * the batch. MDB_TXN_FULL (too many dirty pages in one transaction, far
 * beyond any sane batch) arrives as WB_E_MAPFULL too, but growing does not
 * cure it: the writer bounds its retries. */

int storage_get(struct storage_txn *txn, enum storage_db db, struct storage_val key,
                struct storage_val *val)
{
	MDB_val k = to_mdb(key);
	MDB_val v;
	int rc;

	if (!valid_db(db))
		return WB_E_INVAL;
	rc = mdb_get(txn->txn, txn->s->dbi[db], &k, &v);
	if (rc != 0)
		return from_mdb(rc);
	*val = from_val(v);
	return 0;
}

int storage_put(struct storage_txn *txn, enum storage_db db, struct storage_val key,
                struct storage_val val, unsigned flags)
{
	MDB_val k = to_mdb(key);
	MDB_val v = to_mdb(val);
	unsigned mdb_flags = 0;

	if (!valid_db(db) || txn->rdonly || (flags & ~(STORAGE_NOOVERWRITE | STORAGE_APPEND)) != 0)
		return WB_E_INVAL;
	if ((flags & STORAGE_NOOVERWRITE) != 0)
		mdb_flags |= MDB_NOOVERWRITE;
	/* A key that does not sort after the last one fails with
	 * WB_E_KEYEXIST, which is what LMDB answers. */
	if ((flags & STORAGE_APPEND) != 0)
		mdb_flags |= MDB_APPEND;
	return from_mdb(mdb_put(txn->txn, txn->s->dbi[db], &k, &v, mdb_flags));
}

int storage_del(struct storage_txn *txn, enum storage_db db, struct storage_val key)
{
	MDB_val k = to_mdb(key);

	if (!valid_db(db) || txn->rdonly)
		return WB_E_INVAL;
	return from_mdb(mdb_del(txn->txn, txn->s->dbi[db], &k, NULL));
}

int storage_clear(struct storage_txn *txn, enum storage_db db)
{
	if (!valid_db(db) || txn->rdonly)
		return WB_E_INVAL;
	return from_mdb(mdb_drop(txn->txn, txn->s->dbi[db], 0));
}

int storage_cursor_open(struct storage_txn *txn, enum storage_db db, struct storage_cursor **out)
{
	struct storage_cursor *c;
	int rc;

	if (!valid_db(db))
		return WB_E_INVAL;
	c = malloc(sizeof(*c));
	if (c == NULL)
		return WB_E_NOMEM;
	rc = mdb_cursor_open(txn->txn, txn->s->dbi[db], &c->cur);
	if (rc != 0) {
		free(c);
		return from_mdb(rc);
	}
	c->txn = txn;
	txn->cursors++;
	*out = c;
	return 0;
}

int storage_cursor_get(struct storage_cursor *cur, enum storage_cursor_op op,
                       struct storage_val *key, struct storage_val *val)
{
	static const MDB_cursor_op ops[] = {
	        [STORAGE_FIRST] = MDB_FIRST,         [STORAGE_LAST] = MDB_LAST,
	        [STORAGE_NEXT] = MDB_NEXT,           [STORAGE_PREV] = MDB_PREV,
	        [STORAGE_SET_RANGE] = MDB_SET_RANGE, [STORAGE_SET] = MDB_SET_KEY,
	};
	MDB_val k = {0, NULL};
	MDB_val v;
	int rc;

	if ((unsigned)op >= sizeof(ops) / sizeof(ops[0]))
		return WB_E_INVAL;
	if (op == STORAGE_SET || op == STORAGE_SET_RANGE)
		k = to_mdb(*key);
	rc = mdb_cursor_get(cur->cur, &k, &v, ops[op]);
	if (rc != 0)
		return from_mdb(rc);
	*key = from_val(k);
	if (val != NULL)
		*val = from_val(v);
	return 0;
}

void storage_cursor_close(struct storage_cursor *cur)
{
	if (cur == NULL)
		return;
	mdb_cursor_close(cur->cur);
	cur->txn->cursors--;
	free(cur);
}

uint64_t storage_used_bytes(struct storage *s)
{
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) != 0)
		return 0;
	return ((uint64_t)info.me_last_pgno + 1) * s->page_size;
}

int storage_stats(struct storage *s, struct storage_stats *out)
{
	struct storage_stats st = {0};
	struct storage_txn *t;
	MDB_envinfo info;
	MDB_stat ms;
	int rc;

	/* The read transaction also holds the map still while the environment
	 * is inspected. */
	rc = begin_read(s, &t);
	if (rc != 0)
		return rc;
	rc = mdb_env_info(s->env, &info);
	for (unsigned i = 0; rc == 0 && i < STORAGE_DB_COUNT; i++) {
		rc = mdb_stat(t->txn, s->dbi[i], &ms);
		if (rc == 0)
			st.entries[i] = ms.ms_entries;
	}
	if (rc == 0) {
		st.map_size = info.me_mapsize;
		st.page_size = s->page_size;
		st.used_bytes = ((uint64_t)info.me_last_pgno + 1) * s->page_size;
		st.last_txn_id = info.me_last_txnid;
		st.max_readers = info.me_maxreaders;
		st.readers_used = info.me_numreaders;
		st.grow_count = s->grow_count;
	}
	end_read(t);
	if (rc != 0)
		return from_mdb(rc);
	*out = st;
	return 0;
}

/* Reads the map size and the bytes in use. */
static int map_usage(struct storage *s, uint64_t *map, uint64_t *used)
{
	MDB_envinfo info;
	int rc;

	rc = pthread_rwlock_rdlock(&s->map_lock);
	if (rc != 0)
		return rc;
	rc = s->broken ? EIO : mdb_env_info(s->env, &info);
	pthread_rwlock_unlock(&s->map_lock);
	if (rc != 0)
		return rc;
	*map = info.me_mapsize;
	*used = ((uint64_t)info.me_last_pgno + 1) * s->page_size;
	return 0;
}

bool storage_needs_room(struct storage *s, size_t want)
{
	uint64_t map;
	uint64_t used;
	uint64_t avail;

	/* Room is only the map past the last page in use: pages on LMDB's
	 * free list are never counted, though a commit may reuse some. That
	 * is what accounts for log mode's pinned snapshot: the pages freed
	 * since the last checkpoint cannot be reused until the next one, so
	 * the commits in between take new pages from the end, which moves
	 * the last page and makes the writer grow in time. Counting free
	 * pages as room would count those too and let the map fill. */
	if (map_usage(s, &map, &used) != 0)
		return true;
	avail = map > used ? map - used : 0;
	if (avail < map / 4)
		return true;
	return avail - map / 4 < (uint64_t)want;
}

/* The size storage_grow() maps: at least double, enough for want more bytes
 * plus a quarter of the old map, and enough that storage_needs_room(want)
 * is false afterwards (want plus a quarter of the new map free), in whole
 * megabytes and pages. EINVAL when that does not fit in 64 bits. */
static int grow_target(uint64_t map, uint64_t used, uint64_t want, uint64_t page_size,
                       uint64_t *out)
{
	uint64_t align = page_size > MIB ? page_size : MIB;
	uint64_t need;
	uint64_t size;

	/* Both are powers of two, so the larger is a multiple of the other. */
	assert(align % page_size == 0 && align % MIB == 0);
	if (map > UINT64_MAX / 2 || used > UINT64_MAX / 4 || want > UINT64_MAX / 4 - used)
		return EINVAL;
	need = used + want;
	size = 2 * map;
	if (need + map / 4 > size)
		size = need + map / 4;
	/* size - size / 4 >= need */
	if (need + (need + 2) / 3 > size)
		size = need + (need + 2) / 3;
	if (size > UINT64_MAX - align)
		return EINVAL;
	*out = round_up(size, align);
	return 0;
}

int storage_grow(struct storage *s, size_t want)
{
	MDB_envinfo info;
	uint64_t size;
	int rc;

	/* Waits for every read transaction to end and holds new ones off, as
	 * LMDB requires around a remap. */
	rc = pthread_rwlock_wrlock(&s->map_lock);
	if (rc != 0)
		return from_mdb(rc);
	rc = s->broken ? EIO : mdb_env_info(s->env, &info);
	if (rc == 0)
		rc = grow_target(info.me_mapsize, ((uint64_t)info.me_last_pgno + 1) * s->page_size,
		                 want, s->page_size, &size);
	/* Log mode: the blocks first, so that a full disk leaves the map as
	 * it was and no commit meets it halfway. The checkpoint's pin holds
	 * no map_lock and does not stop the remap: LMDB 0.9's
	 * mdb_env_set_mapsize() refuses only while a write transaction is
	 * open, and a read transaction keeps copies of the meta's roots, not
	 * pointers into the map (it reads pages only through cursors, and the
	 * pin has none). */
	if (rc == 0 && s->log_mode) {
		rc = data_reserve(s, size);
		if (no_space(rc)) {
			pthread_rwlock_unlock(&s->map_lock);
			return WB_E_NOSPC;
		}
	}
	if (rc == 0)
		rc = remap(s, size);
	if (rc == 0)
		s->grow_count++;
	pthread_rwlock_unlock(&s->map_lock);
	return from_mdb(rc);
}

int storage_backup(struct storage *s, const char *path, bool compact)
{
	int rc;

	if (path == NULL || path[0] == '\0')
		return WB_E_INVAL;
	if (mkdir(path, 0750) != 0 && errno != EEXIST)
		return from_mdb(errno);
	/* The copy reads the map, so it holds the read side of map_lock
	 * throughout: a grow waits for the copy, and so do readers that come
	 * after the grow. The writer grows early (storage_needs_room()) to keep
	 * that rare. LMDB refuses to overwrite an existing data.mdb. */
	rc = pthread_rwlock_rdlock(&s->map_lock);
	if (rc != 0)
		return from_mdb(rc);
	rc = s->broken ? EIO : mdb_env_copy2(s->env, path, compact ? MDB_CP_COMPACT : 0);
	pthread_rwlock_unlock(&s->map_lock);
	return from_mdb(rc);
}

/* The copy side of storage_backup_progress(): LMDB writes the copy into the
 * pipe from this thread while the caller reads the other end. */
struct copy_pipe {
	MDB_env *env;
	int fd;
	unsigned flags;
	int rc;
};

static void *copy_pipe_main(void *arg)
{
	struct copy_pipe *cp = arg;
	cp->rc = mdb_env_copyfd2(cp->env, cp->fd, cp->flags);
	close(cp->fd); /* the reader sees the end of the copy */
	return NULL;
}

/* The failure path of storage_backup_progress() once data.mdb exists. */
static int backup_fail(int dirfd, int out, int rc, char *errmsg, size_t errlen, const char *fmt,
                       ...) __attribute__((format(printf, 6, 7)));

static int backup_fail(int dirfd, int out, int rc, char *errmsg, size_t errlen, const char *fmt,
                       ...)
{
	if (errmsg != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errmsg, errlen, fmt, ap);
		va_end(ap);
	}
	close(out);
	(void)unlinkat(dirfd, "data.mdb", 0);
	return rc;
}

int storage_backup_progress(struct storage *s, int dirfd, const char *display, bool compact,
                            storage_progress_fn cb, void *arg, char *errmsg, size_t errlen)
{
	if (display == NULL)
		display = "the backup directory";
	if (dirfd < 0) {
		set_err(errmsg, errlen, "no directory to write the backup into");
		return WB_E_INVAL;
	}
	/* O_EXCL: a backup never overwrites another; O_NOFOLLOW: a symlink
	 * planted as data.mdb is not followed (O_EXCL alone already refuses
	 * one, this says so twice). */
	int out = openat(dirfd, "data.mdb", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	                 0600);
	if (out < 0) {
		int e = errno;
		set_err(errmsg, errlen, "cannot create %s/data.mdb: %s", display, strerror(e));
		return no_space(e) ? WB_E_NOSPC : from_mdb(e);
	}
	/* The umask may have taken bits from 0600 (it cannot add any): the
	 * copy is the owner's to read and write whatever it was. */
	if (fchmod(out, 0600) != 0) {
		int e = errno;
		return backup_fail(dirfd, out, from_mdb(e), errmsg, errlen,
		                   "cannot set the mode of %s/data.mdb: %s", display, strerror(e));
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		int e = errno;
		return backup_fail(dirfd, out, from_mdb(e), errmsg, errlen,
		                   "cannot make a pipe: %s", strerror(e));
	}
	uint8_t *buf = malloc(MIB);
	if (buf == NULL) {
		close(pfd[0]);
		close(pfd[1]);
		return backup_fail(dirfd, out, WB_E_NOMEM, errmsg, errlen, "out of memory");
	}
	/* As in storage_backup(): the copy reads the map, so the read side of
	 * map_lock is held until it ends. */
	int rc = pthread_rwlock_rdlock(&s->map_lock);
	if (rc != 0) {
		free(buf);
		close(pfd[0]);
		close(pfd[1]);
		return backup_fail(dirfd, out, from_mdb(rc), errmsg, errlen,
		                   "cannot lock the map: %s", strerror(rc));
	}
	struct copy_pipe cp = {
	        .env = s->env, .fd = pfd[1], .flags = compact ? MDB_CP_COMPACT : 0, .rc = 0};
	pthread_t th;
	if (s->broken)
		rc = EIO;
	else
		rc = pthread_create(&th, NULL, copy_pipe_main, &cp);
	if (rc != 0) {
		pthread_rwlock_unlock(&s->map_lock);
		free(buf);
		close(pfd[0]);
		close(pfd[1]);
		return backup_fail(dirfd, out, from_mdb(rc), errmsg, errlen,
		                   "cannot start the copy: %s", strerror(rc));
	}
	/* Read until the copy ends. After a failed write the rest is still
	 * read (and dropped) so that the copy thread never blocks on a full
	 * pipe and never meets a closed one. */
	uint64_t total = 0;
	int werr = 0;
	for (;;) {
		ssize_t n = read(pfd[0], buf, MIB);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			werr = errno;
			break; /* not expected of a pipe; the copy then meets EPIPE */
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; werr == 0 && done < n;) {
			ssize_t w = write(out, buf + done, (size_t)(n - done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				werr = errno;
			else
				done += w;
		}
		total += (uint64_t)n;
		if (werr == 0 && cb != NULL)
			cb(arg, total);
	}
	close(pfd[0]);
	pthread_join(th, NULL);
	pthread_rwlock_unlock(&s->map_lock);
	free(buf);
	if (cp.rc == 0 && werr == 0 && fsync(out) != 0)
		werr = errno;
	if (cp.rc != 0)
		return backup_fail(dirfd, out, from_mdb(cp.rc), errmsg, errlen,
		                   "the copy failed: %s", mdb_strerror(cp.rc));
	if (werr != 0)
		return backup_fail(dirfd, out, no_space(werr) ? WB_E_NOSPC : from_mdb(werr), errmsg,
		                   errlen, "writing %s/data.mdb failed: %s", display,
		                   strerror(werr));
	if (close(out) != 0) {
		int e = errno;
		(void)unlinkat(dirfd, "data.mdb", 0);
		set_err(errmsg, errlen, "writing %s/data.mdb failed: %s", display, strerror(e));
		return no_space(e) ? WB_E_NOSPC : from_mdb(e);
	}
	/* The new name is durable too. */
	if (fsync(dirfd) != 0) {
		int e = errno;
		(void)unlinkat(dirfd, "data.mdb", 0);
		set_err(errmsg, errlen, "cannot fsync %s: %s", display, strerror(e));
		return from_mdb(e);
	}
	return 0;
}
