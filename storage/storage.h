/* The storage engine interface.
 *
 * Everything above storage/ (lease/, projection/, server/) reaches the disk
 * through these calls and never through an engine's own API, so that a second
 * engine can be added beside LMDB (the one that ships, storage_lmdb.c).
 *
 * The model is LMDB's: one environment, a fixed set of named key/value
 * databases with keys in byte order, many concurrent read transactions
 * (snapshots) and one write transaction at a time, which may have nested
 * child transactions. Values returned by get and cursors point into the
 * engine's memory and are valid until the transaction ends or, in a write
 * transaction, until the next write: copy them before that.
 *
 * Errors: 0, or WB_E_NOTFOUND (an answer, not a failure), WB_E_KEYEXIST,
 * WB_E_MAPFULL (the writer grows the map with storage_grow() and retries),
 * WB_E_NOMEM, WB_E_IO, WB_E_CORRUPT, WB_E_INVAL. Engine codes never pass
 * this boundary. */
#ifndef WB_STORAGE_H
#define WB_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wb_error.h"

/* The databases; all are opened (created) by storage_open(). */
enum storage_db {
	STORAGE_DB_META = 0,      /* string key -> small value: counters, format */
	STORAGE_DB_EVENTS,        /* position u64be -> event record */
	STORAGE_DB_STREAMS,       /* stream name -> stream record */
	STORAGE_DB_STREAM_EVENTS, /* stream id u64be, version u64be -> position u64be */
	STORAGE_DB_EVENT_IDS,     /* event id (16 bytes) -> position u64be */
	STORAGE_DB_LEDGER,        /* sequence u64be -> ledger entry (lease/ledger.h) */
	STORAGE_DB_STAGED,        /* sequence u64be -> staged work of a lease */
	/* Read models (projection/proj.h); derived from the ledger alone */
	STORAGE_DB_ENTITIES,  /* type, 0x00, id -> entity record */
	STORAGE_DB_INDEX,     /* index id u32be, value key, id -> empty */
	STORAGE_DB_PROJ_META, /* index definitions and kept counts */
	/* The stream life cycle and durable consumers (DESIGN.md §5) */
	STORAGE_DB_STREAM_META, /* stream id u64be -> metadata and delete state */
	STORAGE_DB_CONSUMERS,   /* group name -> group config and checkpoint */
	STORAGE_DB_PARKED,      /* group name, 0x00, position u64be -> parked event record */
	/* Users, roles and tokens (server/srv_auth.c) */
	STORAGE_DB_AUTH, /* kind byte, name -> user, role or token record */
	STORAGE_DB_COUNT
};

struct storage;
struct storage_txn;
struct storage_cursor;

struct storage_val {
	const void *data;
	size_t len;
};

struct storage_options {
	/* The data directory; created (mode 0750) when it does not exist. */
	const char *path;
	/* Initial map size in bytes; the map grows from there. 0: 64 MiB. */
	size_t map_size;
	/* Maximum concurrent read transactions; 0: 126. */
	unsigned max_readers;
	/* Skip fsync at commit. Only for benchmarks that say so; never the
	 * server. */
	bool no_sync;
	/* Log-first mode (DESIGN.md §8): commits are not synced; what makes
	 * them durable is the write-ahead log (storage/wal.h) and
	 * storage_checkpoint(). LMDB 0.9 without sync is not safe across a
	 * power cut by itself, so at open the meta page of the last checkpoint,
	 * kept durably in <path>/checkpoint, is written into both meta slots
	 * when the data file's newest meta is another (an unclean shutdown:
	 * everything after the checkpoint is rolled back, and the log replays
	 * it), and the checkpoint's snapshot is pinned again. A store without
	 * a checkpoint file gets its first checkpoint (applied 0) at open. */
	bool log_mode;
	/* Negative controls of the power-cut harness, never for a server that
	 * keeps data: unsafe_no_pin never pins a checkpoint's snapshot (its
	 * pages may be reused before the next checkpoint is durable);
	 * unsafe_no_restore opens without restoring the checkpoint's meta
	 * (MDB_NOSYNC without the scheme). */
	bool unsafe_no_pin;
	bool unsafe_no_restore;
};

struct storage_stats {
	uint64_t map_size;   /* bytes mapped */
	uint64_t used_bytes; /* bytes of the map in use (last page) */
	uint64_t page_size;
	uint64_t last_txn_id;
	uint64_t entries[STORAGE_DB_COUNT];
	unsigned max_readers;
	unsigned readers_used;
	uint64_t grow_count; /* times the map grew since open */
};

/* Opens (creating when needed) the store at opts->path with every database
 * of enum storage_db. On success *out receives the store, freed by
 * storage_close(). On failure *out is untouched and errmsg[0..errlen) says
 * why (errmsg may be NULL). Keeps no reference to opts. */
int storage_open(struct storage **out, const struct storage_options *opts, char *errmsg,
                 size_t errlen);

/* Closes the store. No transaction may be open. NULL is allowed. */
void storage_close(struct storage *s);

#define STORAGE_RDONLY 0x1u

/* Begins a transaction. With STORAGE_RDONLY: a read snapshot, which any
 * thread may hold (briefly: a held snapshot delays storage_grow()); the
 * thread that began it ends it. While another thread may call
 * storage_grow(), a thread holding a snapshot of s begins no second one and
 * calls no storage_stats(), storage_needs_room() or storage_backup() on s:
 * the second would wait behind the grow, which waits for the first. Without:
 * the write transaction, only ever from the one writer thread; parent may be
 * an open write transaction, making this a nested child whose effects vanish
 * on abort and join the parent on commit. *out is written on success. */
int storage_txn_begin(struct storage *s, struct storage_txn *parent, unsigned flags,
                      struct storage_txn **out);

/* The store txn belongs to (to begin a nested child of it). */
struct storage *storage_txn_store(struct storage_txn *txn);

/* Commits and frees txn, whatever the result. The commit of a top-level
 * write transaction is durable (fsync) when it returns 0, unless the store
 * was opened with no_sync. For read transactions, commit equals abort. */
int storage_txn_commit(struct storage_txn *txn);

/* Abandons and frees txn. Cursors of txn must be closed first. */
void storage_txn_abort(struct storage_txn *txn);

/* State a module keeps for the length of one write transaction: a
 * write-back cache of records that many of its writes read and rewrite.
 * flush() writes the state into txn (it may fail; the transaction is then
 * aborted and the error returned by storage_txn_commit()); release() frees
 * it. Both run once: flush() before txn commits and before a nested child
 * of txn begins (the child then reads what the state held from the store,
 * and the parent starts a new state when it needs one), release() after
 * flush() or when txn is aborted. */
struct storage_txn_ext {
	int (*flush)(struct storage_txn *txn, void *state);
	void (*release)(void *state);
};

/* Writes txn's state into it now and frees it (what storage_txn_commit()
 * would do first), so that the commit itself has less left to do. On an
 * error the caller aborts txn. */
int storage_txn_flush(struct storage_txn *txn);

/* The state of kind that txn holds, or NULL. */
void *storage_txn_ext(struct storage_txn *txn, const struct storage_txn_ext *kind);

/* Gives txn (a write transaction with no state yet) state of kind; txn
 * owns it from now on. */
void storage_txn_set_ext(struct storage_txn *txn, const struct storage_txn_ext *kind, void *state);

/* Looks key up. On success *val points at the value (see lifetimes above).
 * WB_E_NOTFOUND when absent. */
int storage_get(struct storage_txn *txn, enum storage_db db, struct storage_val key,
                struct storage_val *val);

#define STORAGE_NOOVERWRITE 0x1u /* WB_E_KEYEXIST when the key exists */
#define STORAGE_APPEND 0x2u      /* key sorts after every key (fast path) */

/* Stores val under key. */
int storage_put(struct storage_txn *txn, enum storage_db db, struct storage_val key,
                struct storage_val val, unsigned flags);

/* Deletes key; WB_E_NOTFOUND when absent. */
int storage_del(struct storage_txn *txn, enum storage_db db, struct storage_val key);

/* Deletes every entry of db (the database itself stays). */
int storage_clear(struct storage_txn *txn, enum storage_db db);

enum storage_cursor_op {
	STORAGE_FIRST,
	STORAGE_LAST,
	STORAGE_NEXT,
	STORAGE_PREV,
	STORAGE_SET_RANGE, /* the first key >= *key */
	STORAGE_SET,       /* exactly *key */
};

/* Opens a cursor on db within txn; close it before txn ends. */
int storage_cursor_open(struct storage_txn *txn, enum storage_db db, struct storage_cursor **out);

/* Positions the cursor and returns the key and value there. *key is read
 * for SET and SET_RANGE and always written on success. WB_E_NOTFOUND when
 * there is no such entry (past either end). */
int storage_cursor_get(struct storage_cursor *cur, enum storage_cursor_op op,
                       struct storage_val *key, struct storage_val *val);

void storage_cursor_close(struct storage_cursor *cur);

/* Fills *out. Callable from any thread. */
int storage_stats(struct storage *s, struct storage_stats *out);

/* The bytes of the map in use (up to its last page), without a snapshot.
 * For the writer thread (the one thread that grows the map); 0 on failure. */
uint64_t storage_used_bytes(struct storage *s);

/* Returns true when the map has less than want bytes (plus a safety margin
 * of a quarter of the map) free, i.e. the writer should grow before its next
 * transaction. */
bool storage_needs_room(struct storage *s, size_t want);

/* Grows the map so that at least want more bytes fit (at least doubling it).
 * Only the writer thread calls it, with no write transaction open; it waits
 * for open read transactions to end and blocks new ones meanwhile. */
int storage_grow(struct storage *s, size_t want);

/* Log mode: the log sequence the last checkpoint covers (what storage_open()
 * found, then what storage_checkpoint() last saved). 0 in other modes. */
uint64_t storage_checkpoint_applied(const struct storage *s);

/* Log mode: makes the store's last committed state the new checkpoint, which
 * covers the log's records up to applied: pins a read snapshot of it (LMDB
 * reuses no page a live reader can reach), fdatasyncs the data file, checks
 * the meta page it reads back against mdb_env_info(), saves that page with
 * applied in <path>/checkpoint (a temp file, fsync, rename, fsync of the
 * directory), and only then lets go of the previous checkpoint's snapshot.
 * Only the writer thread calls it, with no write transaction open. The pin
 * holds no map lock, so storage_grow() still works. On failure the previous
 * checkpoint stays in force and errmsg says why; WB_E_IO means a sync failed
 * and the caller stops the process. WB_E_INVAL outside log mode. */
int storage_checkpoint(struct storage *s, uint64_t applied, char *errmsg, size_t errlen);

/* storage_checkpoint() in three steps, so that its fdatasync, the long part,
 * can run on another thread while the writer goes on committing:
 * _begin() (writer thread, no write transaction open) pins the last commit
 * and reads and checks its meta page; _sync() (any thread; only one
 * checkpoint at a time) fdatasyncs the data file and saves the page with
 * applied; _end() (writer thread) lets go of the previous checkpoint's pin
 * when sync_rc is 0, or of the new one otherwise. Between _begin() and
 * _end() the old and the new checkpoints are both pinned. _begin() errors
 * are storage_checkpoint()'s; WB_E_INVAL when one is in progress. */
int storage_checkpoint_begin(struct storage *s, uint64_t applied, char *errmsg, size_t errlen);
int storage_checkpoint_sync(struct storage *s, char *errmsg, size_t errlen);
void storage_checkpoint_end(struct storage *s, int sync_rc);

/* Writes a consistent copy of the store into the empty directory path while
 * the store stays in use; compact drops free pages. */
int storage_backup(struct storage *s, const char *path, bool compact);

/* Called by storage_backup_progress() on the calling thread, after each
 * piece of the copy is written, with the bytes written so far. */
typedef void (*storage_progress_fn)(void *arg, uint64_t bytes);

/* storage_backup() with progress and a reason, into a directory the caller
 * has opened: creates data.mdb in the directory dirfd (openat with O_CREAT,
 * O_EXCL and O_NOFOLLOW, so an existing data.mdb, or a symlink by that name,
 * is never written through: WB_E_IO) with mode 0600 whatever the umask, and
 * writes into it a copy of the store from one read snapshot, which LMDB
 * takes when the copy starts, while the store stays in use. Nothing is
 * created or resolved by a path: the caller chose the directory, and
 * display (may be NULL) only names it in errmsg. The copy is made by a
 * thread of its own into a pipe that the calling thread drains into the
 * file, calling cb (may be NULL) with arg as it goes; cb must not call into
 * s. The file and then dirfd are fsynced before 0 is returned. On failure
 * data.mdb is removed again (unlinkat; the directory itself stays),
 * errmsg[0..errlen) says why (errmsg may be NULL), and the result is
 * WB_E_NOSPC when the disk or a quota is full, otherwise another storage
 * error. The same rules as for storage_backup() hold: the caller holds no
 * read snapshot of s. dirfd stays open and the caller's; no reference to
 * display or arg is kept after it returns. */
int storage_backup_progress(struct storage *s, int dirfd, const char *display, bool compact,
                            storage_progress_fn cb, void *arg, char *errmsg, size_t errlen);

#endif
