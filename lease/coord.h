/* The lease coordinator (DESIGN.md §6): leases, the ledger's final entries
 * and the watermark, as one state machine that talks to the world through an
 * I/O interface, the way canonical/raft's core talks through raft_io.
 *
 * Happy path: a Lease is granted from the lease table (lease.h) and answered
 * at once, unless the reservation ceiling must be raised first: then the
 * request waits in a queue, in order, behind one reserve write. Commit,
 * Release and expiry move a lease to FINISHING and submit a final-entry
 * write; the write stores the entry and advances the watermark over the
 * contiguous final entries that follow it, running the apply hook for each,
 * all inside its transaction. When the write is durable the lease settles,
 * the coordinator's watermark moves and the answers go out: DURABLE commits
 * at once, APPLIED commits, index changes and WaitForWatermark once the
 * watermark has passed them.
 *
 * Failure modes: an expired lease answers LEASE_EXPIRED, or is committed at
 * a new sequence when the client asked (resequencing; a commit of a sequence
 * the table no longer holds asks the ledger what became of it); a wrong
 * token LEASE_TOKEN_MISMATCH; an unknown or finished sequence
 * LEASE_NOT_FOUND. A final entry the writer could not make durable is
 * submitted again a few times, then left to restart recovery (its lease
 * stays FINISHING and holds the watermark). An owner (a connection) that
 * closes releases its RELEASE leases, and its waiting or queued requests are
 * given back unanswered; its KEEP leases run on. At start, every sequence
 * between the watermark and the ceiling without a final entry becomes a
 * restart gap, or is recovered from its staged work (ledger_recover()).
 *
 * What it does not do: sockets, threads, timers, clocks, protobuf. Time comes
 * in with every call (struct coord_time); tokens come from the lease table's
 * random callback; writes, answers and the one timer go out through struct
 * coord_io. It reads the ledger itself through the storage interface (a
 * commit of a finished sequence, start-up recovery), which is not I/O in the
 * raft_io sense: given the same calls, times and store it does the same.
 * Every function is for one thread (the loop); only coord_write_apply() runs
 * on the writer's thread. */
#ifndef WB_COORD_H
#define WB_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lease.h"
#include "ledger.h"
#include "record.h"
#include "storage.h"

struct coord;
struct coord_pstat;

/* The clocks, read once by the caller for each call. */
struct coord_time {
	uint64_t ms;      /* monotonic, milliseconds: expiry, deadlines, figures */
	uint64_t wall_us; /* wall clock, µs since the epoch: entry times, expiries shown */
};

/* A request as the coordinator keeps it: given back, as it was, with its
 * answer. */
struct coord_req {
	void *handle;              /* the I/O's own (never looked into) */
	struct lease_owner *owner; /* the connection's, or NULL */
};

/* What applying entries found, summed by the apply hook (the figures of
 * Stats: entries applied, failed, where-clause explosions). */
struct coord_applied {
	uint64_t entries;
	uint64_t failures;
	uint64_t explosions;
	uint64_t exploded_ids;
	uint64_t explosion_us;
};

/* The apply hook: runs for each entry the watermark passes, in sequence
 * order, on the writer's thread inside the transaction that moves the
 * watermark (or inside start-up recovery's). It adds what it did to
 * *applied. A non-zero return fails the write (or the recovery). e points
 * into the store: read it before writing. */
typedef int (*coord_apply_fn)(struct storage_txn *txn, const struct ledger_entry *e, void *arg,
                              struct coord_applied *applied);

enum coord_write_kind {
	COORD_WRITE_RESERVE, /* a new reservation ceiling */
	COORD_WRITE_STAGE,   /* a lease's staged work */
	COORD_WRITE_FINAL,   /* a final entry, then the watermark's advance */
};

/* What a final write answers its request with (private to the coordinator). */
enum coord_answer_as { COORD_AS_NONE, COORD_AS_RELEASE, COORD_AS_COMMIT, COORD_AS_INDEX };

/* A write the coordinator hands to the I/O. The fields above "private" are
 * the I/O's to read; it runs the write with coord_write_apply() and returns
 * it with coord_write_done(). */
struct coord_write {
	enum coord_write_kind kind;
	uint64_t seq;              /* STAGE, FINAL */
	uint64_t ceiling;          /* RESERVE */
	struct ledger_entry entry; /* FINAL: the entry as submitted */
	size_t size_hint;          /* bytes it may write, for growing the map */
	/* The request answered when it is done ({NULL, NULL}: none). Changes
	 * on the loop while the write is out: it is cleared when its owner
	 * closes. */
	struct coord_req req;
	/* Results, written by coord_write_apply() (again on every run). */
	uint64_t watermark; /* FINAL: the stored watermark after it */
	bool recovered;     /* FINAL: written as recovered from staged work */
	struct coord_applied applied;
	/* Private to the coordinator. */
	enum coord_answer_as as;
	bool ack_applied;
	bool from_staged;
	uint64_t token;
	uint8_t *ops;
	size_t ops_len;
	char projection[LEASE_NAME_MAX + 1];
	char operation_id[LEASE_NAME_MAX + 1];
	int retries;
	struct coord_pstat *ps;
	coord_apply_fn apply;
	void *apply_arg;
	struct coord_write *prev, *next; /* the coordinator's writes out at the I/O */
};

enum coord_answer_kind {
	COORD_DROPPED,       /* nothing is sent: the owner closed, or the coordinator is freed */
	COORD_ERROR,         /* code and message */
	COORD_STORAGE_ERROR, /* code, a storage failure; message names the call ("Commit") */
	COORD_GRANTED,       /* Lease: grants */
	COORD_EXTENDED,      /* Extend: expires_at_ms, duration_ms */
	COORD_RELEASED,      /* Release: the gap is durable */
	COORD_STAGED,        /* Stage: the staged work is durable */
	COORD_COMMITTED,     /* Commit: seq, resequenced, original_seq, read_outcome */
	COORD_INDEXED,       /* an index change: applied at seq (read its outcome there) */
	COORD_WATERMARK,     /* WaitForWatermark: reached, next_seq */
};

struct coord_grant {
	uint64_t seq;
	uint64_t token;
	uint64_t expires_at_ms; /* wall clock */
	uint64_t duration_ms;   /* from now */
};

/* An answer; pointers are valid during the answer call only. */
struct coord_answer {
	enum coord_answer_kind kind;
	int code;            /* ERROR, STORAGE_ERROR: a wb_error.h code */
	const char *message; /* ERROR: a sentence for the client; STORAGE_ERROR: the call */
	uint64_t watermark;  /* the coordinator's, with every answer */
	const struct coord_grant *grants;
	uint32_t n_grants;
	uint64_t expires_at_ms, duration_ms; /* EXTENDED */
	uint64_t seq;                        /* COMMITTED, INDEXED */
	bool resequenced;                    /* COMMITTED: seq is a new sequence... */
	uint64_t original_seq;               /* ... for the expired lease of this one */
	/* COMMITTED with ack APPLIED, once applied: what applying did is in the
	 * ledger entry of seq (the I/O reads it there). */
	bool read_outcome;
	bool reached;      /* WATERMARK */
	uint64_t next_seq; /* WATERMARK: the next sequence a grant hands out */
};

enum coord_log_level { COORD_LOG_DEBUG, COORD_LOG_INFO, COORD_LOG_WARN, COORD_LOG_ERROR };

/* The coordinator's way out. Every callback gets the struct it was given
 * (data is the I/O's) and must not call back into the coordinator, with one
 * exception: answer may call coord_owner_closed() for a connection that
 * breaks while it is being answered. */
struct coord_io {
	void *data;
	/* Takes w to the writer. Returns 0, after which the I/O runs
	 * coord_write_apply(w, txn) in its own nested transaction of a write
	 * transaction, and then, on the loop, once that transaction is
	 * durable or has failed, calls coord_write_done() exactly once. Writes
	 * must be run and made durable in the order they were submitted.
	 * Non-zero (no memory): the write stays the coordinator's. */
	int (*submit)(struct coord_io *io, struct coord_write *w);
	/* Answers a request: called exactly once for every request handed to
	 * a coord_ call, from inside whichever call settles it (maybe the one
	 * that took it). */
	void (*answer)(struct coord_io *io, struct coord_req req, const struct coord_answer *a);
	/* The monotonic time (ms) at which coord_tick() next has work changed
	 * (UINT64_MAX: none; a time already past: at once). The I/O keeps one
	 * timer. It starts at UINT64_MAX. */
	void (*deadline)(struct coord_io *io, uint64_t at_ms);
	/* A line for the operator: an event name and key=value fields. May be
	 * NULL. */
	void (*log)(struct coord_io *io, enum coord_log_level level, const char *event,
	            const char *fields);
	/* Whether the ops a committed entry stores (stored: a packed OpList,
	 * perhaps with what applying it found added) are the ops a Commit
	 * sends again (sent: packed as the first Commit's were): a retried
	 * Commit is then answered with the entry's outcome, not
	 * LEASE_NOT_FOUND. May be NULL: retries are not recognised. */
	bool (*same_ops)(struct coord_io *io, const uint8_t *stored, size_t stored_len,
	                 const uint8_t *sent, size_t sent_len);
};

struct coord_config {
	struct lease_config lease;
	/* Requests of one owner that may wait for the watermark at once;
	 * WaitForWatermark answers RESOURCE_EXHAUSTED past it. */
	uint64_t max_waiting_per_owner;
	coord_apply_fn apply; /* may be NULL */
	void *apply_arg;
	lease_rand_fn rand; /* fencing tokens */
	void *rand_arg;
};

/* What start-up recovery did. */
struct coord_recovery {
	struct ledger_recovery ledger;
	struct coord_applied applied;
};

/* Recovers the ledger of st (restart gaps, staged work; growing the map and
 * running again when it fills) in one write transaction, then builds the
 * lease table above the recovered watermark. Keeps cfg's values, io and st
 * (both must outlive the coordinator). *out and *rec are written on success;
 * otherwise a wb_error.h code with a sentence in errmsg. */
int coord_start(struct coord **out, const struct coord_config *cfg, struct coord_io *io,
                struct storage *st, struct coord_time now, struct coord_recovery *rec, char *errmsg,
                size_t errlen);

/* Frees the coordinator. Requests still queued or waiting are given back
 * (COORD_DROPPED); writes still out at the I/O are freed, so call it only
 * when the I/O will neither run nor return them (its writer has drained, or
 * the process is going down). NULL is allowed. */
void coord_close(struct coord *c);

/* Lease: grants args->count sequences (args->owner is replaced by
 * req.owner) and answers COORD_GRANTED, or an error; waits behind a
 * reservation when the ceiling must be raised first. */
void coord_lease(struct coord *c, struct coord_req req, const struct lease_grant_args *args,
                 struct coord_time now);

/* Extend: answered at once (COORD_EXTENDED or an error). */
void coord_extend(struct coord *c, struct coord_req req, uint64_t seq, uint64_t token,
                  uint64_t duration_ms, struct coord_time now);

/* Release: the sequence becomes a gap (released); COORD_RELEASED once
 * durable. */
void coord_release(struct coord *c, struct coord_req req, uint64_t seq, uint64_t token,
                   struct coord_time now);

/* Stage: stores ops (a packed OpList, copied) as the lease's staged work;
 * COORD_STAGED once durable. The lease counts as staged from now on. */
void coord_stage(struct coord *c, struct coord_req req, uint64_t seq, uint64_t token,
                 const uint8_t *ops, size_t ops_len, struct coord_time now);

struct coord_commit_args {
	uint64_t seq;
	uint64_t token;
	const uint8_t *ops; /* a packed OpList, copied */
	size_t ops_len;
	bool ack_applied; /* answer once applied, not once durable */
	bool resequence;  /* on_expired = RESEQUENCE */
};

/* Commit: stores the ops at a->seq, or at a new sequence when the lease
 * expired and a->resequence asks for it; COORD_COMMITTED once durable (ack
 * APPLIED: once applied), or an error. A Commit of a sequence already
 * committed with the same token and the same ops (io->same_ops) is a retry
 * after a lost answer: it is answered as the first one was (its ack asks),
 * and nothing is written again. */
void coord_commit(struct coord *c, struct coord_req req, const struct coord_commit_args *a,
                  struct coord_time now);

/* CreateIndex / DropIndex: leases one sequence under projection "$index",
 * commits ops (the packed OpList of the one index op, copied) there, and
 * answers COORD_INDEXED once applied. */
void coord_index(struct coord *c, struct coord_req req, const uint8_t *ops, size_t ops_len,
                 struct coord_time now);

/* WaitForWatermark: COORD_WATERMARK once the watermark reaches seq
 * (reached), or after timeout_ms (at most an hour; 0: at once). */
void coord_wait(struct coord *c, struct coord_req req, uint64_t seq, uint64_t timeout_ms,
                struct coord_time now);

/* owner's connection closed: its RELEASE leases are released, its KEEP
 * leases detached; its queued and waiting requests, and the requests of its
 * writes still out, are given back (COORD_DROPPED). The coordinator keeps
 * no pointer to owner afterwards. */
void coord_owner_closed(struct coord *c, struct lease_owner *owner, struct coord_time now);

/* The deadline came: finishes leases that are due (in ascending sequence
 * order, each as a gap or recovered from its staged work) and answers
 * waits whose time is up. */
void coord_tick(struct coord *c, struct coord_time now);

/* The fields of w that coord_write_apply() reads, appended to b as a log
 * record's body (storage/wal.h): with them applying the write again after a
 * crash, or on another node, does the same. */
void coord_write_encode(const struct coord_write *w, struct rec_builder *b);

/* Fills the fields of *w that coord_write_apply() reads from a body made by
 * coord_write_encode(); pointers in *w point into rec. The caller sets
 * w->apply and w->apply_arg. WB_E_CORRUPT when the bytes do not add up. */
int coord_write_decode(const uint8_t *rec, size_t len, struct coord_write *w);

/* Runs w inside txn (the writer's nested transaction): the new ceiling,
 * the staged work, or the final entry and the watermark's advance through
 * the apply hook. Writes only w's result fields. Pure: any thread, no
 * clock; the same store gives the same result on every run. */
int coord_write_apply(struct coord_write *w, struct storage_txn *txn);

/* The I/O returns w: status 0 when its transaction is durable, otherwise
 * why it is not. Settles, answers, and may submit writes (a retry). */
void coord_write_done(struct coord *c, struct coord_write *w, int status, struct coord_time now);

/* The server is stopping: waits are answered SHUTTING_DOWN (their commits
 * are durable, but the watermark will not move any more in this process),
 * later APPLIED commits too, and failed writes are not retried. */
void coord_shutdown(struct coord *c);

/* The watermark as the coordinator knows it (what durable writes said). */
uint64_t coord_watermark(const struct coord *c);

/* The next sequence a grant hands out. */
uint64_t coord_next_seq(const struct coord *c);

/* The lease table, to read (counts, frontier); it stays the coordinator's. */
const struct lease_table *coord_leases(const struct coord *c);

/* Figures of one scope: the server, or one projection. */
struct coord_figures {
	uint64_t waiting; /* final entries durable above the watermark */
	double wait_mean_ms;
	uint64_t wait_max_ms;
	uint64_t gaps;
	const char *health;        /* "ok" or "degraded" */
	const char *health_reason; /* "" when ok */
};

struct coord_stats {
	struct lease_counts leases;
	struct coord_applied applied; /* since start, recovery included */
	struct coord_figures all;
	uint64_t watermark;
	uint64_t next_seq;
	uint64_t ceiling;
};

struct coord_projection_stats {
	struct lease_projection_stats lease;
	struct coord_figures f;
};

/* The figures at now_ms. Strings stay valid until the next call. */
void coord_stats(struct coord *c, uint64_t now_ms, struct coord_stats *out);

/* Writes up to max projections' figures into out; returns how many there
 * are (which may be more than max). Strings stay valid until the next call. */
size_t coord_projection_stats(struct coord *c, uint64_t now_ms, struct coord_projection_stats *out,
                              size_t max);

#endif
