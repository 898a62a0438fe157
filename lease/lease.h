/* The in-memory lease table (DESIGN.md §6).
 *
 * A sequence number is leased before slow work and ends in exactly one final
 * state (committed, gap, recovered). This module keeps the leases that have
 * not reached that state yet, orders them by expiry (a binary heap: grant,
 * extend, finish and expire are O(log n)), finds them by sequence (a hash
 * table: O(1)), and knows the settled frontier: the highest S such that
 * every sequence <= S has a durable final entry. It also keeps, per
 * projection, the figures that adaptive durations, cascades and Stats need.
 *
 * It is pure: no libuv, no storage, no clock. Time comes in as now_ms (the
 * server's monotonic clock, milliseconds), randomness (fencing tokens)
 * through a callback, so tests drive it deterministically. The server owns
 * durability: it persists the reservation ceiling before granting past it,
 * writes final entries through the writer, and calls lease_settle() once an
 * entry is durable.
 *
 * Life of a lease: lease_grant() -> ACTIVE (lease_extend(), lease_stage()
 * allowed) -> lease_finish() or lease_collect_expired() -> FINISHING (its
 * final entry is on its way to disk; it still holds the frontier back) ->
 * lease_settle() -> forgotten. Every function is for the loop thread only. */
#ifndef WB_LEASE_H
#define WB_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wb_error.h"

#define LEASE_NAME_MAX 255u /* projection names and operation ids */

enum lease_on_disconnect {
	LEASE_KEEP = 0,    /* the lease runs to expiry; a reconnecting client may commit */
	LEASE_RELEASE = 1, /* the lease is released when its connection closes */
};

enum lease_state {
	LEASE_ACTIVE = 0,
	LEASE_FINISHING = 1,
};

/* How a lease ended, for the figures. Declared before struct lease. */
enum lease_outcome {
	LEASE_COMMITTED = 0,
	LEASE_RELEASED = 1,
	LEASE_EXPIRED = 2,   /* became a gap on expiry */
	LEASE_RECOVERED = 3, /* was staged when it expired: committed from its staged ops */
	LEASE_OUTCOMES = 4,
};

struct lease_config {
	uint64_t max_lifetime_ms;     /* Extend may not take a lease past this age */
	uint64_t grace_ms;            /* a lease expires at expires_ms + grace_ms */
	uint64_t max_duration_ms;     /* cap on asked and adaptive durations */
	uint64_t default_duration_ms; /* adaptive duration with no history */
	uint64_t cascade_threshold;   /* expiries within a minute that start a cascade */
	uint64_t max_leases;          /* ACTIVE + FINISHING leases in the table */
	uint64_t max_leases_per_owner;
	uint32_t max_count;       /* most sequences one grant may ask for */
	uint64_t reserve_chunk;   /* sequences reserved ahead per ceiling write */
	uint64_t max_projections; /* distinct projection names kept */
};

/* A connection's handle on its leases. The server embeds one per
 * connection and passes it to lease_grant(); the table links the owner's
 * leases through it until they finish or lease_owner_detach() is called.
 * The coordinator (coord.h) counts the owner's requests waiting for the
 * watermark in waiting. Zeroed before first use. */
struct lease_owner {
	struct lease *head;
	size_t count;
	size_t waiting;
};

struct lease_projection; /* per-projection figures (adaptive duration, totals) */

/* What one client identity (a user, a token, or an address) holds, for its
 * quota: leases granted and not yet finished, whichever of its connections
 * took them and whether that connection is still open. The server keeps one
 * per identity and passes it with each grant; the table only counts into
 * it and refuses a grant past max. It must outlive every lease counted. */
struct lease_account {
	uint64_t active;
	uint64_t max; /* 0: no limit */
};

struct lease {
	uint64_t seq;
	uint64_t token;
	uint64_t granted_ms;
	uint64_t expires_ms; /* without the grace */
	uint64_t source_position;
	struct lease_projection *proj;
	char operation_id[LEASE_NAME_MAX + 1];
	enum lease_on_disconnect on_disconnect;
	enum lease_state state;
	bool staged;                /* its ops are stored as staged work */
	enum lease_outcome outcome; /* once FINISHING */
	/* Private to the table. */
	struct lease_account *account; /* while ACTIVE */
	struct lease_owner *owner;
	struct lease *owner_prev, *owner_next;
	size_t heap_idx;     /* in the expiry heap, while ACTIVE */
	size_t seq_heap_idx; /* in the sequence heap, until settled */
	struct lease *hash_next;
};

struct lease_grant_args {
	const char *projection;   /* 1..LEASE_NAME_MAX bytes, NUL-terminated */
	uint64_t duration_ms;     /* 0: adaptive */
	uint32_t count;           /* 1..max_count */
	const char *operation_id; /* NULL or 0..LEASE_NAME_MAX bytes */
	uint64_t source_position;
	enum lease_on_disconnect on_disconnect;
	struct lease_owner *owner;     /* may be NULL */
	struct lease_account *account; /* may be NULL: no quota */
};

struct lease_table;

/* Returns a fresh unguessable 64-bit value (never 0 is not required). */
typedef uint64_t (*lease_rand_fn)(void *arg);

/* Creates a table that hands out sequences from next_seq, with ceiling the
 * highest sequence already durably reserved (next_seq - 1 <= ceiling). Keeps
 * cfg's values (copied) and rand/rand_arg. *out is written on success;
 * WB_E_NOMEM, or WB_E_INVAL for next_seq 0, next_seq - 1 > ceiling,
 * cfg->max_count 0 or a NULL rand. */
int lease_table_new(struct lease_table **out, const struct lease_config *cfg, uint64_t next_seq,
                    uint64_t ceiling, lease_rand_fn rand, void *rand_arg);

/* Frees the table and every lease in it. NULL is allowed. */
void lease_table_free(struct lease_table *t);

/* The next sequence a grant hands out. */
uint64_t lease_next_seq(const struct lease_table *t);

/* The durable reservation ceiling the table knows of. */
uint64_t lease_ceiling(const struct lease_table *t);

/* Returns 0 when count more sequences fit under the ceiling, otherwise the
 * new ceiling (next_seq + count - 1 + reserve_chunk) the server must make
 * durable and then report with lease_set_ceiling() before granting. */
uint64_t lease_reservation_needed(const struct lease_table *t, uint32_t count);

/* Records that ceiling is durably reserved. Lower values are ignored. */
void lease_set_ceiling(struct lease_table *t, uint64_t ceiling);

/* The shortest adaptive duration. */
#define LEASE_MIN_ADAPTIVE_MS 100u
/* The commits whose lease-to-commit times make a projection's mean. */
#define LEASE_HISTORY 32u

/* The duration a grant with duration_ms 0 gets for projection now: twice
 * the mean lease-to-commit time of the projection's last LEASE_HISTORY
 * commits, times the cascade multiplier (2^cascade_level), at least
 * LEASE_MIN_ADAPTIVE_MS and at most max_duration_ms; default_duration_ms
 * (also capped) for a projection with no commit yet. */
uint64_t lease_adaptive_duration(struct lease_table *t, const char *projection);

/* Grants args->count consecutive sequences, ACTIVE, expiring at now_ms plus
 * the duration (asked, capped at max_duration_ms, or adaptive). out receives
 * args->count pointers to leases owned by the table (valid until they are
 * settled or the table is freed). Errors, with a sentence in why:
 * WB_BAD_REQUEST (count 0 or above max_count, a bad projection name or
 * operation id), WB_RESOURCE_EXHAUSTED (max_leases, max_leases_per_owner or
 * the account's max would be passed, or too many projections), WB_E_AGAIN (the ceiling must
 * be raised first: see lease_reservation_needed()), WB_E_NOMEM. Nothing is
 * granted on error. */
int lease_grant(struct lease_table *t, uint64_t now_ms, const struct lease_grant_args *args,
                struct lease **out, char *why, size_t whylen);

/* Finds the lease of seq and checks its fencing token first (a wrong token
 * answers WB_LEASE_TOKEN_MISMATCH whatever the state). 0 and *out for an
 * ACTIVE lease whose expiry (with grace) has not passed at now_ms;
 * WB_LEASE_TOKEN_MISMATCH; WB_LEASE_EXPIRED when it is due to expire or is
 * already FINISHING after expiring (call lease_collect_expired() to finish
 * due ones, in order); WB_LEASE_NOT_FOUND when seq was never handed out, or
 * has finished otherwise (FINISHING after commit or release, or settled). */
int lease_get(struct lease_table *t, uint64_t seq, uint64_t token, uint64_t now_ms,
              struct lease **out);

/* The name of the projection l was granted for. */
const char *lease_projection_name(const struct lease *l);

/* The name of the projection seq's lease was granted for while the table
 * holds it (in any state, whatever the token), or NULL. The pointer is
 * valid until the table next changes. */
const char *lease_projection_of(const struct lease_table *t, uint64_t seq);

/* The fencing token of seq's lease while the table holds it, or 0 when it
 * holds none (the table then answers LEASE_NOT_FOUND to any token). For an
 * operator's forced release. */
uint64_t lease_token_of(const struct lease_table *t, uint64_t seq);

/* A pointer-sized slot per projection that the table keeps for its user
 * (the server's own per-projection figures); NULL until set. */
void **lease_projection_slot(struct lease *l);

/* Finds the lease of seq in any state, without checks; NULL when the table
 * holds none. */
struct lease *lease_lookup(struct lease_table *t, uint64_t seq);

/* Extends an ACTIVE lease to expire duration_ms (0: adaptive) from now_ms.
 * WB_RESOURCE_EXHAUSTED with a sentence in why when the new expiry would
 * take the lease past granted_ms + max_lifetime_ms; the lease is unchanged
 * then. */
int lease_extend(struct lease_table *t, struct lease *l, uint64_t duration_ms, uint64_t now_ms,
                 char *why, size_t whylen);

/* Marks an ACTIVE lease as staged (its ops are durably stored). */
void lease_stage(struct lease_table *t, struct lease *l);

/* Moves an ACTIVE lease to FINISHING with outcome (committed or released):
 * it leaves the expiry order and its owner, and holds the frontier back
 * until lease_settle(). A commit's lease-to-commit time feeds the
 * projection's adaptive duration. */
void lease_finish(struct lease_table *t, struct lease *l, enum lease_outcome outcome,
                  uint64_t now_ms);

/* Moves every ACTIVE lease whose expires_ms + grace_ms <= now_ms to
 * FINISHING (outcome expired, or recovered when staged) at once, and writes
 * up to max (>= 1) of them into out in ascending sequence order; returns
 * how many. The rest stay queued in order: call again while it returns
 * max. */
size_t lease_collect_expired(struct lease_table *t, uint64_t now_ms, struct lease **out,
                             size_t max);

/* The monotonic time at which the next ACTIVE lease expires (grace
 * included), or UINT64_MAX when there is none. */
uint64_t lease_next_expiry(const struct lease_table *t);

/* Forgets the FINISHING lease of seq once its final entry is durable; the
 * frontier may move. Also accepts sequences the table never held as leases
 * (a sequence finalised without one, such as a resequenced commit's new
 * sequence granted and settled at once). */
void lease_settle(struct lease_table *t, uint64_t seq);

/* The highest S such that every sequence <= S was handed out and has
 * settled (next_seq - 1 when the table is empty). */
uint64_t lease_frontier(const struct lease_table *t);

/* Detaches owner from its ACTIVE leases (its connection closed), lowest
 * sequence first. Leases with LEASE_RELEASE are written to out (up to max,
 * ascending sequence) for the server to release with lease_finish(); call
 * again while it returns max. Leases with LEASE_KEEP stay ACTIVE, ownerless,
 * until they are committed, released or expire. */
size_t lease_owner_detach(struct lease_table *t, struct lease_owner *owner, struct lease **out,
                          size_t max);

/* Counts of the table. */
struct lease_counts {
	uint64_t active;
	uint64_t finishing;
	uint64_t outcomes[LEASE_OUTCOMES]; /* totals since start */
	uint64_t overrun;                  /* extends refused by the lifetime cap */
	uint64_t cascade_level;            /* 0: none; n: adaptive durations x 2^n */
};

void lease_get_counts(const struct lease_table *t, struct lease_counts *out);

/* One projection's figures. */
struct lease_projection_stats {
	const char *name; /* owned by the table */
	uint64_t active;
	uint64_t outcomes[LEASE_OUTCOMES];
	uint64_t adaptive_ms;
	uint64_t overrun; /* extends refused by the lifetime cap */
	void *slot;       /* see lease_projection_slot() */
};

/* Writes up to max projections' figures into out; returns how many the
 * table tracks (which may be more than max). */
size_t lease_projection_stats(struct lease_table *t, struct lease_projection_stats *out,
                              size_t max);

#endif
