/* A randomized model-based test of sequence leases and the ledger: the lease
 * coordinator that whizbangd runs (lease/coord.c) on a real store in a
 * temporary directory, driven through a fake I/O, without sockets or libuv.
 *
 * The fake I/O is the writer and the loop of server/srv_lease.c: a FIFO
 * queue of the coordinator's writes (reserve the ceiling, stage, final
 * entry) flushed in random-sized batches, each write run with the
 * coordinator's own coord_write_apply() in a nested transaction of one
 * write transaction as storage/writer.c runs them, and handed back with
 * coord_write_done() once its batch has committed; the answers it receives
 * are checked against the model's predictions; its one timer is the
 * deadline the coordinator asks for; the clock is injected. A restart either
 * crashes (every write not yet committed is lost, sometimes halfway through
 * a batch) or stops cleanly (coord_shutdown(), the writer drains,
 * connections close), then starts a new coordinator, whose start-up
 * recovers the ledger in a write transaction.
 *
 * A seeded random walk acts as the clients: leases (count 1-4, some waiting
 * for a reserve write), extends, releases, stages, commits (ack DURABLE or
 * APPLIED, on_expired FAIL or RESEQUENCE, above pending lower leases, after
 * expiry, at finished and random sequences, with wrong tokens),
 * WaitForWatermark (reached, timed out, refused past the per-connection
 * limit), disconnects, clock steps (small, large, backwards, to the exact
 * edge of a lease's life), timer runs, flushes, answer delivery and
 * restarts, with the reservation chunk, the grace and the waiting limit
 * varying by seed. A reference model built only from what the clients were
 * told, the clock and which writes were committed predicts every answer and
 * the one final entry each sequence must end with. After every step the
 * ledger is read back from the store and checked:
 *   1. no sequence is handed out twice, above the durable ceiling, or at or
 *      below the ceiling of an earlier run;
 *   2. every sequence <= the watermark has exactly one final entry;
 *   3. the watermark never moves backwards and is exactly the contiguous
 *      prefix of durable final entries;
 *   4. the apply hook sees 1, 2, 3, ... once each, across restarts (applies
 *      count only when their transaction commits);
 *   5. an expired lease's sequence holds only a gap (expired) or its own
 *      last staged ops; a committed entry holds the ops of the commit that
 *      was accepted for that lease;
 *   6. acknowledged commits are durable before the answer and survive
 *      restarts; resequenced commits record the original sequence;
 *   7. after a restart every unfinished sequence up to the old ceiling is a
 *      restart gap or recovered from its durable staged ops, and grants
 *      start right above the old ceiling.
 * Besides: every answer matches the model's prediction and carries the
 * watermark the model expects; staged work that was recovered is never
 * resequenced as well; gap records carry the original expiry; the table's
 * settled frontier agrees with the ledger; the coordinator's deadline is the
 * model's next expiry or wait deadline, and its count of each connection's
 * waiting requests the model's; a closed connection's requests are given
 * back, never answered; and once the writer is idle no request is left
 * unanswered (but APPLIED commits and waits above the watermark) and no
 * lease is left finishing.
 *
 * The store is opened with no_sync: a crash here is the loss of what the
 * writer had not committed, which fsync does not change, and an fsync per
 * batch would only make the walk several times slower.
 *
 * WB_SEED=<n> replays a run; otherwise the seed comes from the clock. Every
 * failure message names the seed and the step. WB_STEPS=<n> walks longer
 * (or shorter) than the default.
 *
 * Negative controls: WB_MODEL_FAULT=lose makes the fake I/O report one final
 * write durable without running it, =drop lose one answer, =early hand one
 * write back as durable before the writer has run it. The walk must then
 * fail; tests/meson.build runs each of them and expects the failure. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord.h"
#include "fixture.h"
#include "lease.h"
#include "ledger.h"
#include "storage.h"

#define STEPS 12000 /* per seed; WB_STEPS overrides */
#define OWNERS 3    /* client connections */
#define PROJECTIONS 3
#define MAX_COUNT 4u
#define MAX_CHUNK 12u /* reserve_chunk is 1..MAX_CHUNK, per seed */
#define MAX_DURATION 3000u
#define DEFAULT_DURATION 1500u
#define MAX_LIFETIME 4000u
#define MAX_LIVE 40u    /* the clients stop leasing at this many open leases */
#define OPS_MAX 40u     /* bytes of ops in one commit or stage */
#define PICK_WINDOW 96u /* how far back the clients remember their leases */
#define MAX_WAITING 4u  /* the per-connection waiting limit is 1..MAX_WAITING, per seed */
#define WAIT_CAP 3600000u
#define FAULT_AFTER 100u /* the negative controls strike at the 100th chance */
#define NO_OWNER (-1)
#define NO_CONN (-1)
#define PROJ_NONE (-1)    /* restart entries carry no projection */
#define PROJ_UNKNOWN (-2) /* resequenced from a restart entry: "unknown" */
#define T0_US 1700000000000000ull

static const char *const projections[PROJECTIONS] = {"orders", "stock", "mail"};

/* ------------------------------------------------------------ model types */

enum mstate {
	M_UNUSED = 0, /* never handed out, no final state */
	M_ACTIVE,     /* leased, no final state yet */
	M_DECIDED,    /* its final entry is known (maybe not written yet) */
};

/* One sequence number as the clients and the clock know it. */
struct mseq {
	enum mstate state;
	bool granted;     /* handed out */
	bool reseq_grant; /* handed out to a resequenced commit */
	bool by_restart;  /* its final entry comes from start-up recovery */
	bool durable;     /* its final entry is committed to the store */
	bool acked;       /* a commit of it was answered */
	bool od_release;
	int owner;
	int proj;
	uint32_t opid;
	uint64_t src;
	uint64_t token;
	uint64_t granted_ms, expires;
	uint64_t stage_last; /* ops of the last accepted stage; 0: none */
	uint64_t stage_dur;  /* ops of the last committed stage write; 0: none */
	/* The final entry it must end with, once M_DECIDED. */
	enum ledger_kind kind;
	enum ledger_reason reason;
	uint64_t ops; /* ops id; 0: no ops */
	uint64_t orig_seq;
	uint64_t e_orig_expiry; /* µs, on the test's wall clock */
	uint64_t e_token;
	int e_proj;
	uint32_t e_opid;
	uint64_t e_src;
	unsigned reseqs; /* commits resequenced from it */
};

enum rkind { RQ_LEASE, RQ_EXTEND, RQ_RELEASE, RQ_STAGE, RQ_COMMIT, RQ_WAIT };
enum rstate { RS_OPEN, RS_DONE, RS_CANCELLED };
enum predict {
	PR_ACCEPT, /* answered once its write is done (extend, wait: at once) */
	PR_QUEUE,  /* waits for a grant: a lease, or a resequenced commit */
	PR_ERROR,  /* answered at once with err (or err_alt) */
};

/* A client request: what went over the wire, and what the model expects. */
struct req {
	enum rkind kind;
	enum rstate state;
	int conn;
	uint64_t seq, token;
	uint32_t count;
	uint64_t duration;
	int proj;
	uint32_t opid;
	uint64_t src;
	bool od_release;
	uint64_t ops;
	bool reseq; /* on_expired = RESEQUENCE */
	bool ack_applied;
	bool durable;               /* its write is committed */
	uint64_t bound;             /* a resequenced commit's new sequence */
	uint64_t timeout, deadline; /* a wait's */
	bool waiter;                /* waits in the coordinator for the watermark */
	enum predict pr;
	int err, err_alt;
};

struct seqlist {
	uint64_t *v;
	size_t n, cap;
};

/* What the walk did, to show it reached the interesting paths. */
enum event {
	EV_GRANTED,
	EV_WAITED, /* lease requests that waited for a reserve write */
	EV_COMMITTED,
	EV_ACK_ABOVE, /* DURABLE answers above the watermark */
	EV_ACK_APPLIED,
	EV_RELEASED,
	EV_STAGED,
	EV_OVERRUN,
	EV_EXPIRED_GAP,
	EV_EXPIRED_RECOVERED,
	EV_FAIL_EXPIRED, /* commits answered LEASE_EXPIRED */
	EV_RESEQ,
	EV_RESEQ_RESTART,  /* resequenced from a restart entry */
	EV_RESEQ_UNLEASED, /* ... of a sequence never handed out */
	EV_RESEQ_AGAIN,    /* a second resequenced commit of one sequence */
	EV_RESEQ_REFUSED,  /* RESEQUENCE refused: the staged work was recovered */
	EV_MISMATCH,
	EV_DETACHED,
	EV_CRASH,
	EV_CRASH_MID,
	EV_CLEAN,
	EV_RESTART_GAP,
	EV_RESTART_RECOVERED,
	EV_BACKJUMP,
	EV_BATCHES,
	EV_APPLIED,
	EV_WAIT_REACHED,
	EV_WAIT_TIMEOUT,
	EV_WAIT_REFUSED,
	EV_CASCADE,
	EV_COUNT,
};

static struct {
	struct fixture_walk walk;
	uint64_t rng;
	uint64_t now; /* the server's monotonic clock, ms */
	uint64_t grace;
	struct mseq *seqs;
	size_t cap;
	struct req *reqs; /* by request id; 0 is unused */
	size_t nreqs, capreqs;
	uint64_t *fifo; /* requests waiting for grants, in order */
	size_t fifo_head, fifo_len, fifo_cap;
	uint64_t next;            /* the next sequence a grant must hand out */
	uint64_t durable_ceiling; /* the highest committed reserve write */
	uint64_t old_ceiling;     /* the durable ceiling at the last restart */
	uint64_t prefix;          /* every sequence <= it has a durable final entry */
	uint64_t applied_to;      /* the apply log is 1, 2, ..., applied_to */
	uint64_t wm_seen;         /* the stored watermark at the last check */
	uint64_t mem_wm;          /* the watermark of the writes handed back */
	uint64_t open_from;       /* no request below it is open */
	struct seqlist waiters;   /* requests that wait in the coordinator */
	uint64_t next_ops;
	uint64_t last_collected; /* within one expiry run: ascending */
	bool expired_now;        /* an expiry run finished leases at the current time */
	uint64_t exp_gaps, exp_recovered;
	bool stopping;
	unsigned long ev[EV_COUNT];
} m;

/* ------------------------------------------------------------ the fake I/O's types */

/* A write the coordinator submitted, and what the model needs of it. */
struct fw {
	struct fw *next;
	struct coord_write *w;
	uint64_t req;      /* the request it answers, when submitted; 0: none */
	uint64_t ops_id;   /* a stage's ops, as the model names them */
	uint64_t wm_after; /* a final write's stored watermark, once committed */
	int status;
	struct seqlist applied; /* what the apply hook saw in its transaction */
};

enum fault { FAULT_NONE, FAULT_LOSE, FAULT_DROP, FAULT_EARLY };

static struct {
	struct storage *st;
	struct storage_txn *txn, *child; /* open write transactions */
	struct coord_config cfg;
	struct coord_io io;
	struct coord *c;
	uint64_t token_rng;
	struct fw *q_head, *q_tail; /* submitted, not yet written */
	size_t q_len;
	struct fw *d_head, *d_tail; /* written, not yet handed back */
	struct fw *held;            /* a batch being run, or a write being handed back */
	struct lease_owner owners[OWNERS];
	uint64_t deadline;        /* as the coordinator last told it */
	struct seqlist *applying; /* where the apply hook records */
	int closing;              /* the connection coord_owner_closed() runs for */
	bool freeing;             /* coord_close() runs */
	enum fault fault;
	unsigned fault_chances;
} fk;

#define MCHECK(cond, fmt, ...) FIXTURE_WALK_CHECK(m.walk, (cond), fmt, __VA_ARGS__)
#define ULL(x) ((unsigned long long)(x))

/* ------------------------------------------------------------ helpers */

static uint64_t splitmix(uint64_t *s)
{
	return fixture_splitmix(s);
}

/* A value in [0, n). */
static uint64_t rnd(uint64_t n)
{
	return splitmix(&m.rng) % n;
}

static bool chance(unsigned percent)
{
	return rnd(100) < percent;
}

static uint64_t wall_us(void)
{
	return T0_US + m.now * 1000u;
}

/* The ops of id: 0 to OPS_MAX bytes, distinct for distinct ids of 8 bytes
 * or more. id 0 is no ops. */
static size_t ops_bytes(uint64_t id, uint8_t *buf)
{
	if (id == 0)
		return 0;
	uint64_t s = id ^ 0x0b5e55edu;
	size_t len = (size_t)(splitmix(&s) % (OPS_MAX + 1));
	uint64_t x = id;
	for (size_t i = 0; i < len; i++) {
		if (i > 0 && i % 8 == 0)
			x = splitmix(&s);
		buf[i] = (uint8_t)(x >> (8 * (i % 8)));
	}
	return len;
}

static void opid_str(uint32_t n, char *buf, size_t len)
{
	if (n == 0)
		buf[0] = '\0';
	else
		snprintf(buf, len, "op-%u", n);
}

static const char *proj_str(int p)
{
	return p >= 0 ? projections[p] : p == PROJ_UNKNOWN ? "unknown" : "";
}

static const char *reason_name(enum ledger_kind kind, enum ledger_reason reason)
{
	if (kind == LEDGER_COMMITTED)
		return "committed";
	switch (reason) {
	case LEDGER_GAP_RELEASED:
		return "gap (released)";
	case LEDGER_GAP_EXPIRED:
		return "gap (expired)";
	case LEDGER_GAP_RESTART:
		return "gap (restart)";
	case LEDGER_RECOVERED_STAGED:
		return "recovered (staged)";
	case LEDGER_RECOVERED_RESEQUENCED:
		return "recovered (resequenced)";
	default:
		return "?";
	}
}

static void list_push(struct seqlist *l, uint64_t v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		uint64_t *p = realloc(l->v, cap * sizeof(*p));
		cr_assert_not_null(p);
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n++] = v;
}

/* ------------------------------------------------------------ the model */

static void model_reserve(uint64_t seq)
{
	if (seq < m.cap)
		return;
	size_t cap = m.cap ? m.cap : 1024;
	while (cap <= seq)
		cap *= 2;
	struct mseq *s = realloc(m.seqs, cap * sizeof(*s));
	cr_assert_not_null(s);
	memset(s + m.cap, 0, (cap - m.cap) * sizeof(*s));
	m.seqs = s;
	m.cap = cap;
}

static struct mseq *ms(uint64_t seq)
{
	model_reserve(seq);
	return &m.seqs[seq];
}

static struct req *req_get(uint64_t id)
{
	MCHECK(id > 0 && id < m.nreqs, "answer to unknown request %llu", ULL(id));
	return &m.reqs[id];
}

static uint64_t req_new(enum rkind kind, int conn)
{
	if (m.nreqs == 0)
		m.nreqs = 1;
	if (m.nreqs >= m.capreqs) {
		size_t cap = m.capreqs ? m.capreqs * 2 : 1024;
		struct req *p = realloc(m.reqs, cap * sizeof(*p));
		cr_assert_not_null(p);
		m.reqs = p;
		m.capreqs = cap;
	}
	uint64_t id = m.nreqs++;
	m.reqs[id] = (struct req){.kind = kind, .state = RS_OPEN, .conn = conn};
	return id;
}

static void fifo_push(uint64_t id)
{
	if (m.fifo_head + m.fifo_len == m.fifo_cap) {
		if (m.fifo_head > 0) {
			memmove(m.fifo, m.fifo + m.fifo_head, m.fifo_len * sizeof(*m.fifo));
			m.fifo_head = 0;
		} else {
			size_t cap = m.fifo_cap ? m.fifo_cap * 2 : 64;
			uint64_t *p = realloc(m.fifo, cap * sizeof(*p));
			cr_assert_not_null(p);
			m.fifo = p;
			m.fifo_cap = cap;
		}
	}
	m.fifo[m.fifo_head + m.fifo_len++] = id;
}

/* Grants come in request order: id must be the oldest request still
 * waiting for one. */
static void fifo_pop_expect(uint64_t id)
{
	while (m.fifo_len > 0 && m.reqs[m.fifo[m.fifo_head]].state == RS_CANCELLED) {
		m.fifo_head++;
		m.fifo_len--;
	}
	MCHECK(m.fifo_len > 0 && m.fifo[m.fifo_head] == id,
	       "a grant for request %llu, but the oldest waiting request is %llu", ULL(id),
	       ULL(m.fifo_len > 0 ? m.fifo[m.fifo_head] : 0));
	m.fifo_head++;
	m.fifo_len--;
}

/* Sequences asked for by lease requests that wait for their grant. */
static uint64_t fifo_waiting(void)
{
	uint64_t n = 0;
	for (size_t i = 0; i < m.fifo_len; i++) {
		const struct req *r = &m.reqs[m.fifo[m.fifo_head + i]];
		if (r->state == RS_OPEN)
			n += r->kind == RQ_LEASE ? r->count : 1;
	}
	return n;
}

static bool due(const struct mseq *s)
{
	return m.now >= s->expires + m.grace;
}

/* A sequence expired as far as the clients can tell: collected by the
 * server as expired, or finished by a restart. */
static bool expiredish(const struct mseq *s)
{
	return s->state == M_DECIDED && (s->by_restart || s->reason == LEDGER_GAP_EXPIRED ||
	                                 s->reason == LEDGER_RECOVERED_STAGED);
}

/* A sequence handed out with a lease now ends with kind/reason. */
static void decide(uint64_t seq, enum ledger_kind kind, enum ledger_reason reason, uint64_t ops)
{
	struct mseq *s = ms(seq);
	MCHECK(s->state == M_ACTIVE, "seq %llu is given a second final state, %s, after %s",
	       ULL(seq), reason_name(kind, reason),
	       s->state == M_DECIDED ? reason_name(s->kind, s->reason) : "none");
	s->state = M_DECIDED;
	s->kind = kind;
	s->reason = reason;
	s->ops = ops;
	s->orig_seq = 0;
	s->e_orig_expiry = 0;
	s->e_token = s->token;
	s->e_proj = s->proj;
	s->e_opid = s->opid;
	s->e_src = s->src;
}

/* Checks a final entry read from the store (or handed to the apply hook)
 * against the one final state the model gave its sequence. */
static void check_entry(const struct ledger_entry *e, bool need_durable, const char *what)
{
	MCHECK(e->seq > 0 && e->seq < m.cap && e->seq <= m.durable_ceiling,
	       "%s: an entry at seq %llu, above every durable reservation (%llu)", what,
	       ULL(e->seq), ULL(m.durable_ceiling));
	const struct mseq *s = &m.seqs[e->seq];
	MCHECK(s->state == M_DECIDED, "%s: seq %llu holds %s, but it has no final state yet (%s)",
	       what, ULL(e->seq), reason_name(e->kind, e->reason),
	       s->state == M_ACTIVE ? "its lease is active" : "never handed out");
	MCHECK(!need_durable || s->durable,
	       "%s: seq %llu holds %s, but no committed write put it there", what, ULL(e->seq),
	       reason_name(e->kind, e->reason));
	MCHECK(e->kind == s->kind && e->reason == s->reason,
	       "%s: seq %llu holds %s, the model expects %s (lease %s, restart %d)", what,
	       ULL(e->seq), reason_name(e->kind, e->reason), reason_name(s->kind, s->reason),
	       s->reseq_grant ? "resequenced"
	       : s->granted   ? "granted"
	                      : "never granted",
	       s->by_restart);
	uint8_t want[OPS_MAX];
	size_t len = ops_bytes(s->ops, want);
	MCHECK(e->ops_len == len && (len == 0 || memcmp(e->ops, want, len) == 0),
	       "%s: seq %llu (%s) holds %zu bytes of ops that are not the %zu bytes of ops %llu "
	       "the clients sent for it",
	       what, ULL(e->seq), reason_name(e->kind, e->reason), e->ops_len, len, ULL(s->ops));
	MCHECK(e->token == s->e_token, "%s: seq %llu (%s) holds token %llx, the lease's is %llx",
	       what, ULL(e->seq), reason_name(e->kind, e->reason), ULL(e->token), ULL(s->e_token));
	MCHECK(e->original_expiry_us == s->e_orig_expiry,
	       "%s: seq %llu (%s) records original expiry %llu, the model %llu", what, ULL(e->seq),
	       reason_name(e->kind, e->reason), ULL(e->original_expiry_us), ULL(s->e_orig_expiry));
	MCHECK(e->original_seq == s->orig_seq,
	       "%s: seq %llu (%s) records original sequence %llu, the model %llu", what,
	       ULL(e->seq), reason_name(e->kind, e->reason), ULL(e->original_seq),
	       ULL(s->orig_seq));
	const char *p = proj_str(s->e_proj);
	char o[32];
	opid_str(s->e_opid, o, sizeof(o));
	MCHECK(e->projection_len == strlen(p) && memcmp(e->projection, p, e->projection_len) == 0 &&
	               e->operation_id_len == strlen(o) &&
	               memcmp(e->operation_id, o, e->operation_id_len) == 0 &&
	               e->source_position == s->e_src,
	       "%s: seq %llu (%s) holds projection '%.*s' op '%.*s' source %llu, the model '%s' "
	       "'%s' %llu",
	       what, ULL(e->seq), reason_name(e->kind, e->reason), (int)e->projection_len,
	       e->projection, (int)e->operation_id_len, e->operation_id, ULL(e->source_position), p,
	       o, ULL(s->e_src));
}

/* The sequence a grant hands out must be the next one, fresh, and under a
 * ceiling that is already durable. */
static struct mseq *check_fresh(uint64_t seq)
{
	struct mseq *s = ms(seq);
	MCHECK(s->state == M_UNUSED && !s->granted, "seq %llu is handed out twice (state %d)",
	       ULL(seq), s->state);
	MCHECK(seq > m.old_ceiling,
	       "seq %llu is handed out at or below the last run's ceiling %llu", ULL(seq),
	       ULL(m.old_ceiling));
	MCHECK(seq == m.next, "seq %llu is handed out, the next unused is %llu", ULL(seq),
	       ULL(m.next));
	MCHECK(seq <= m.durable_ceiling, "seq %llu is handed out above the durable ceiling %llu",
	       ULL(seq), ULL(m.durable_ceiling));
	m.next++;
	return s;
}

/* Ends request r (answered, or given back): it no longer waits. */
static void req_end(struct req *r, enum rstate state)
{
	r->state = state;
	if (!r->waiter)
		return;
	r->waiter = false;
	uint64_t id = (uint64_t)(r - m.reqs);
	for (size_t i = 0; i < m.waiters.n; i++) {
		if (m.waiters.v[i] == id) {
			m.waiters.v[i] = m.waiters.v[--m.waiters.n];
			break;
		}
	}
}

/* Request id now waits in the coordinator for the watermark. */
static void req_waits(uint64_t id)
{
	m.reqs[id].waiter = true;
	list_push(&m.waiters, id);
}

/* The requests of conn that wait in the coordinator. */
static size_t waiting_of(int conn)
{
	size_t n = 0;
	for (size_t i = 0; i < m.waiters.n; i++)
		n += m.reqs[m.waiters.v[i]].conn == conn;
	return n;
}

/* ---- what the server tells the clients */

static void answer_grant(uint64_t id, const struct coord_grant *g, uint32_t n)
{
	struct req *r = req_get(id);
	MCHECK(r->state == RS_OPEN && r->kind == RQ_LEASE,
	       "a grant answers request %llu (state %d)", ULL(id), r->state);
	fifo_pop_expect(id);
	MCHECK(n == r->count, "request %llu asked for %u sequences, got %u", ULL(id), r->count, n);
	uint64_t want = r->duration > MAX_DURATION ? MAX_DURATION : r->duration;
	for (uint32_t i = 0; i < n; i++) {
		struct mseq *s = check_fresh(g[i].seq);
		uint64_t d = g[i].duration_ms;
		if (r->duration != 0)
			MCHECK(d == want, "seq %llu lasts %llu ms, asked %llu", ULL(g[i].seq),
			       ULL(d), ULL(want));
		else
			MCHECK(d >= LEASE_MIN_ADAPTIVE_MS && d <= MAX_DURATION,
			       "seq %llu has an adaptive duration %llu out of bounds",
			       ULL(g[i].seq), ULL(d));
		MCHECK(g[i].expires_at_ms == wall_us() / 1000 + d,
		       "seq %llu expires at %llu on the wall clock, not %llu ms from now (%llu)",
		       ULL(g[i].seq), ULL(g[i].expires_at_ms), ULL(d), ULL(wall_us() / 1000));
		*s = (struct mseq){
		        .state = M_ACTIVE,
		        .granted = true,
		        .od_release = r->od_release,
		        .owner = r->conn,
		        .proj = r->proj,
		        .opid = r->opid,
		        .src = r->src,
		        .token = g[i].token,
		        .granted_ms = m.now,
		        .expires = m.now + d,
		};
	}
	req_end(r, RS_DONE);
	m.ev[EV_GRANTED]++;
}

static void answer_error(uint64_t id, int rc)
{
	struct req *r = req_get(id);
	MCHECK(r->state == RS_OPEN, "request %llu answered %s, but it is %s", ULL(id),
	       wb_error_name(rc), r->state == RS_DONE ? "answered already" : "cancelled");
	req_end(r, RS_DONE);
	if (rc == WB_SHUTTING_DOWN) {
		MCHECK(m.stopping && (r->kind == RQ_WAIT ||
		                      (r->kind == RQ_COMMIT && r->ack_applied && r->durable)),
		       "request %llu answered SHUTTING_DOWN (stopping %d, durable %d)", ULL(id),
		       m.stopping, r->durable);
		return;
	}
	MCHECK(r->pr == PR_ERROR && (rc == r->err || rc == r->err_alt),
	       "request %llu (kind %d, seq %llu) answered %s; the model expects %s", ULL(id),
	       r->kind, ULL(r->seq), wb_error_name(rc),
	       r->pr == PR_ERROR ? wb_error_name(r->err) : "success");
	if (rc == WB_LEASE_TOKEN_MISMATCH)
		m.ev[EV_MISMATCH]++;
	if (rc == WB_LEASE_EXPIRED && r->kind == RQ_COMMIT)
		m.ev[EV_FAIL_EXPIRED]++;
	if (rc == WB_LEASE_EXPIRED && r->kind == RQ_COMMIT && r->reseq)
		m.ev[EV_RESEQ_REFUSED]++;
	if (r->kind == RQ_WAIT)
		m.ev[EV_WAIT_REFUSED]++;
}

static void answer_extend(uint64_t id, const struct coord_answer *a)
{
	struct req *r = req_get(id);
	MCHECK(r->state == RS_OPEN && r->kind == RQ_EXTEND && r->pr == PR_ACCEPT,
	       "extend %llu of seq %llu accepted; the model expects %s", ULL(id), ULL(r->seq),
	       wb_error_name(r->err));
	uint64_t want = r->duration > MAX_DURATION ? MAX_DURATION : r->duration;
	MCHECK(a->duration_ms == want && a->expires_at_ms == wall_us() / 1000 + want,
	       "seq %llu extended by %llu ms to %llu on the wall clock, the model %llu ms",
	       ULL(r->seq), ULL(a->duration_ms), ULL(a->expires_at_ms), ULL(want));
	ms(r->seq)->expires = m.now + want;
	req_end(r, RS_DONE);
}

/* Stage and release results. */
static void answer_ok(uint64_t id, enum rkind kind)
{
	struct req *r = req_get(id);
	MCHECK(r->state == RS_OPEN && r->kind == kind && r->pr == PR_ACCEPT,
	       "request %llu answered success as kind %d (its kind %d, state %d)", ULL(id), kind,
	       r->kind, r->state);
	MCHECK(r->durable, "request %llu (kind %d, seq %llu) answered before its write committed",
	       ULL(id), r->kind, ULL(r->seq));
	req_end(r, RS_DONE);
}

static void answer_commit(uint64_t id, const struct coord_answer *a)
{
	struct req *r = req_get(id);
	uint64_t seq = a->seq;
	MCHECK(r->state == RS_OPEN && r->kind == RQ_COMMIT,
	       "a commit result answers request %llu (kind %d, state %d)", ULL(id), r->kind,
	       r->state);
	if (a->resequenced)
		MCHECK(r->pr == PR_QUEUE && r->bound == seq && a->original_seq == r->seq,
		       "commit %llu of seq %llu answered resequenced at %llu from %llu; the model "
		       "expects %s at %llu",
		       ULL(id), ULL(r->seq), ULL(seq), ULL(a->original_seq),
		       r->pr == PR_QUEUE ? "resequenced" : "no resequencing", ULL(r->bound));
	else
		MCHECK(r->pr == PR_ACCEPT && seq == r->seq && a->original_seq == 0,
		       "commit %llu of seq %llu answered success at %llu (orig %llu); the model "
		       "expects %s",
		       ULL(id), ULL(r->seq), ULL(seq), ULL(a->original_seq),
		       r->pr == PR_ERROR ? wb_error_name(r->err) : "resequencing");
	MCHECK(r->durable, "commit %llu (seq %llu) answered before its entry committed", ULL(id),
	       ULL(seq));
	MCHECK(a->read_outcome == r->ack_applied,
	       "commit %llu (seq %llu, ack applied %d) says read the outcome: %d", ULL(id),
	       ULL(seq), r->ack_applied, a->read_outcome);
	/* The entry is in the store, as the answer says. */
	struct storage_txn *txn;
	struct ledger_entry e;
	MCHECK(storage_txn_begin(fk.st, NULL, STORAGE_RDONLY, &txn) == 0, "%s", "read txn");
	int rc = ledger_get(txn, seq, &e);
	MCHECK(rc == 0, "commit of seq %llu acknowledged, but the ledger has no entry: %s",
	       ULL(seq), wb_error_name(rc));
	check_entry(&e, true, "acknowledged commit");
	storage_txn_abort(txn);
	if (r->ack_applied) {
		MCHECK(m.applied_to >= seq, "APPLIED answer for seq %llu; applied only to %llu",
		       ULL(seq), ULL(m.applied_to));
		m.ev[EV_ACK_APPLIED]++;
	} else if (seq > m.applied_to) {
		m.ev[EV_ACK_ABOVE]++;
	}
	ms(seq)->acked = true;
	req_end(r, RS_DONE);
}

static void answer_wait(uint64_t id, const struct coord_answer *a)
{
	struct req *r = req_get(id);
	MCHECK(r->state == RS_OPEN && r->kind == RQ_WAIT && r->pr == PR_ACCEPT,
	       "a watermark result answers request %llu (kind %d, state %d)", ULL(id), r->kind,
	       r->state);
	MCHECK(a->reached == (r->seq <= m.mem_wm),
	       "the wait %llu for %llu answers reached %d at watermark %llu", ULL(id), ULL(r->seq),
	       a->reached, ULL(m.mem_wm));
	MCHECK(a->reached || r->timeout == 0 || m.now >= r->deadline,
	       "the wait %llu for %llu gave up at %llu, before its deadline %llu", ULL(id),
	       ULL(r->seq), ULL(m.now), ULL(r->deadline));
	MCHECK(a->next_seq == m.next,
	       "the wait %llu says the next sequence is %llu, the model %llu", ULL(id),
	       ULL(a->next_seq), ULL(m.next));
	m.ev[a->reached ? EV_WAIT_REACHED : EV_WAIT_TIMEOUT]++;
	req_end(r, RS_DONE);
}

/* ---- what the server does on its own */

/* The final write w of an expired lease was submitted. */
static void seen_expired(const struct coord_write *w)
{
	struct mseq *s = ms(w->seq);
	MCHECK(s->state == M_ACTIVE, "the server expired seq %llu, which is not active (state %d)",
	       ULL(w->seq), s->state);
	MCHECK(due(s), "the server expired seq %llu at %llu; it expires at %llu + grace %llu",
	       ULL(w->seq), ULL(m.now), ULL(s->expires), ULL(m.grace));
	MCHECK(w->seq > m.last_collected, "expiry finals out of order: seq %llu after %llu",
	       ULL(w->seq), ULL(m.last_collected));
	m.last_collected = w->seq;
	m.expired_now = true;
	if (s->stage_last != 0) {
		decide(w->seq, LEDGER_RECOVERED, LEDGER_RECOVERED_STAGED, s->stage_last);
		m.ev[EV_EXPIRED_RECOVERED]++;
	} else {
		decide(w->seq, LEDGER_GAP, LEDGER_GAP_EXPIRED, 0);
		m.ev[EV_EXPIRED_GAP]++;
	}
	s->e_orig_expiry = T0_US + s->expires * 1000u;
}

/* After an expiry run no due lease is left active. */
static void check_none_due(void)
{
	for (uint64_t seq = m.prefix + 1; seq < m.next; seq++) {
		const struct mseq *s = ms(seq);
		MCHECK(s->state != M_ACTIVE || !due(s),
		       "seq %llu is due (expires %llu + %llu, now %llu) but was not expired",
		       ULL(seq), ULL(s->expires), ULL(m.grace), ULL(m.now));
	}
}

static void seen_detach(int conn, uint64_t seq)
{
	struct mseq *s = ms(seq);
	MCHECK(conn != NO_CONN && s->state == M_ACTIVE && s->owner == conn && s->od_release,
	       "connection %d closed and seq %llu was released (state %d owner %d release %d)",
	       conn, ULL(seq), s->state, s->owner, s->od_release);
	decide(seq, LEDGER_GAP, LEDGER_GAP_RELEASED, 0);
	m.ev[EV_DETACHED]++;
}

/* A resequenced commit's final write w was submitted for request id. */
static void seen_reseq(uint64_t id, const struct coord_write *w)
{
	struct req *r = req_get(id);
	MCHECK(r->state == RS_OPEN && r->kind == RQ_COMMIT && r->pr == PR_QUEUE,
	       "request %llu (kind %d, seq %llu) resequenced; the model expects %s", ULL(id),
	       r->kind, ULL(r->seq), r->pr == PR_ERROR ? wb_error_name(r->err) : "no resequencing");
	fifo_pop_expect(id);
	struct mseq *s = check_fresh(w->seq);
	struct mseq *x = ms(r->seq);
	*s = (struct mseq){
	        .state = M_DECIDED,
	        .granted = true,
	        .reseq_grant = true,
	        .owner = NO_OWNER,
	        .token = w->entry.token,
	        .kind = LEDGER_RECOVERED,
	        .reason = LEDGER_RECOVERED_RESEQUENCED,
	        .ops = r->ops,
	        .orig_seq = r->seq,
	        .e_orig_expiry = x->e_orig_expiry,
	        .e_token = w->entry.token,
	        .e_proj = x->by_restart ? PROJ_UNKNOWN : x->proj,
	        .e_opid = x->by_restart ? 0 : x->opid,
	        .e_src = x->by_restart ? 0 : x->src,
	};
	s->proj = s->e_proj;
	s->opid = s->e_opid;
	s->src = s->e_src;
	r->bound = w->seq;
	m.ev[EV_RESEQ]++;
	if (x->by_restart)
		m.ev[EV_RESEQ_RESTART]++;
	if (!x->granted)
		m.ev[EV_RESEQ_UNLEASED]++;
	if (++x->reseqs > 1)
		m.ev[EV_RESEQ_AGAIN]++;
	MCHECK(!(x->by_restart && x->reason == LEDGER_GAP_RESTART),
	       "seq %llu was lost to a restart and resequenced: under which projection?",
	       ULL(r->seq));
	MCHECK(x->reason != LEDGER_RECOVERED_STAGED,
	       "seq %llu was recovered from its staged work and resequenced too: the work lands "
	       "twice",
	       ULL(r->seq));
}

/* The writer committed a batch: what it wrote is durable, and what it
 * applied is applied. */
static void model_batch(struct fw *batch)
{
	for (struct fw *f = batch; f != NULL; f = f->next) {
		const struct coord_write *w = f->w;
		struct mseq *s = w->kind != COORD_WRITE_RESERVE ? ms(w->seq) : NULL;
		switch (w->kind) {
		case COORD_WRITE_RESERVE:
			if (w->ceiling > m.durable_ceiling)
				m.durable_ceiling = w->ceiling;
			break;
		case COORD_WRITE_STAGE:
			MCHECK(s->state != M_DECIDED || !s->durable,
			       "staged work for seq %llu written after its final entry",
			       ULL(w->seq));
			s->stage_dur = f->ops_id;
			break;
		case COORD_WRITE_FINAL:
			MCHECK(s->state == M_DECIDED && !s->durable,
			       "a final entry for seq %llu was written (state %d, durable %d)",
			       ULL(w->seq), s->state, s->durable);
			MCHECK(w->recovered == (s->reason == LEDGER_RECOVERED_STAGED),
			       "the final write of seq %llu says recovered %d; the model %s",
			       ULL(w->seq), w->recovered, reason_name(s->kind, s->reason));
			s->durable = true;
			s->stage_dur = 0;
			break;
		}
		if (f->req != 0)
			req_get(f->req)->durable = true;
		for (size_t i = 0; i < f->applied.n; i++) {
			uint64_t seq = f->applied.v[i];
			MCHECK(seq == m.applied_to + 1,
			       "seq %llu applied after %llu: not once each, in order", ULL(seq),
			       ULL(m.applied_to));
			MCHECK(ms(seq)->durable, "seq %llu applied before its entry was written",
			       ULL(seq));
			m.applied_to = seq;
			m.ev[EV_APPLIED]++;
		}
		if (w->kind == COORD_WRITE_FINAL) {
			MCHECK(w->watermark == m.applied_to,
			       "the final write of seq %llu left the watermark at %llu; applied to "
			       "%llu",
			       ULL(w->seq), ULL(w->watermark), ULL(m.applied_to));
			f->wm_after = m.applied_to;
		}
	}
	while (m.prefix + 1 < m.cap && m.seqs[m.prefix + 1].durable)
		m.prefix++;
	MCHECK(m.applied_to == m.prefix,
	       "applied to %llu, but every sequence up to %llu has a durable final entry",
	       ULL(m.applied_to), ULL(m.prefix));
	m.ev[EV_BATCHES]++;
}

/* The process ends: every request still open is never answered, and every
 * sequence up to the durable ceiling without a durable final entry is
 * finished by start-up recovery. */
static void model_restart(bool clean)
{
	uint64_t ceil = m.durable_ceiling;
	MCHECK(m.next - 1 <= ceil, "seq %llu was handed out above the durable ceiling %llu",
	       ULL(m.next - 1), ULL(ceil));
	m.exp_gaps = m.exp_recovered = 0;
	for (uint64_t seq = m.prefix + 1; seq <= ceil; seq++) {
		struct mseq *s = ms(seq);
		if (s->durable)
			continue;
		MCHECK(!s->acked, "the acknowledged commit of seq %llu is not durable at restart",
		       ULL(seq));
		MCHECK(!clean || s->state != M_DECIDED,
		       "a clean stop left the final entry of seq %llu (%s) unwritten", ULL(seq),
		       reason_name(s->kind, s->reason));
		s->state = M_DECIDED;
		s->by_restart = true;
		s->orig_seq = 0;
		s->e_orig_expiry = 0;
		s->e_proj = PROJ_NONE;
		s->e_opid = 0;
		s->e_src = 0;
		if (s->stage_dur != 0) {
			s->kind = LEDGER_RECOVERED;
			s->reason = LEDGER_RECOVERED_STAGED;
			s->ops = s->stage_dur;
			s->e_token = s->token;
			m.exp_recovered++;
		} else {
			s->kind = LEDGER_GAP;
			s->reason = LEDGER_GAP_RESTART;
			s->ops = 0;
			s->e_token = 0;
			m.exp_gaps++;
		}
	}
	for (size_t i = 1; i < m.nreqs; i++)
		if (m.reqs[i].state == RS_OPEN)
			req_end(&m.reqs[i], RS_CANCELLED);
	m.fifo_head = m.fifo_len = 0;
	m.ev[EV_RESTART_GAP] += m.exp_gaps;
	m.ev[EV_RESTART_RECOVERED] += m.exp_recovered;
}

/* Start-up recovery committed: its entries are durable and applied. */
static void model_recovered(const struct ledger_recovery *rec, const struct seqlist *applied)
{
	uint64_t ceil = m.durable_ceiling;
	for (uint64_t seq = m.prefix + 1; seq <= ceil; seq++)
		ms(seq)->durable = true;
	for (size_t i = 0; i < applied->n; i++) {
		MCHECK(applied->v[i] == m.applied_to + 1,
		       "recovery applied seq %llu after %llu: not once each, in order",
		       ULL(applied->v[i]), ULL(m.applied_to));
		m.applied_to++;
		m.ev[EV_APPLIED]++;
	}
	MCHECK(rec->watermark == ceil && m.applied_to == ceil,
	       "recovery left the watermark at %llu (applied to %llu); the ceiling is %llu",
	       ULL(rec->watermark), ULL(m.applied_to), ULL(ceil));
	MCHECK(rec->gaps == m.exp_gaps && rec->recovered == m.exp_recovered,
	       "recovery made %llu restart gaps and %llu recoveries; the model %llu and %llu",
	       ULL(rec->gaps), ULL(rec->recovered), ULL(m.exp_gaps), ULL(m.exp_recovered));
	m.prefix = ceil;
	m.old_ceiling = ceil;
	m.next = ceil + 1;
	m.mem_wm = ceil;
}

/* ------------------------------------------------------------ the fake I/O */

/* The clock for one coordinator call; an expiry run within it goes in
 * ascending order. */
static struct coord_time now(void)
{
	m.last_collected = 0;
	return (struct coord_time){m.now, wall_us()};
}

/* The request as the coordinator is handed it: the model's id as the
 * handle, the connection's lease owner. */
static struct coord_req req_of(uint64_t id)
{
	return (struct coord_req){(void *)(uintptr_t)id, &fk.owners[m.reqs[id].conn]};
}

/* The apply hook: runs in the writer's transaction for each entry the
 * watermark passes; the model takes the list only once that transaction
 * commits. */
static int apply_cb(struct storage_txn *txn, const struct ledger_entry *e, void *arg,
                    struct coord_applied *applied)
{
	(void)txn;
	(void)arg;
	check_entry(e, false, "apply hook");
	list_push(fk.applying, e->seq);
	applied->entries++;
	return 0;
}

static void fw_free_list(struct fw *f)
{
	while (f != NULL) {
		struct fw *next = f->next;
		free(f->applied.v);
		free(f);
		f = next;
	}
}

/* The negative control of kind strikes now (once, at its FAULT_AFTERth
 * chance). */
static bool fault_now(enum fault kind)
{
	return fk.fault == kind && fk.fault_chances < FAULT_AFTER &&
	       ++fk.fault_chances == FAULT_AFTER;
}

static int io_submit(struct coord_io *io, struct coord_write *w)
{
	(void)io;
	struct fw *f = calloc(1, sizeof(*f));
	cr_assert_not_null(f);
	f->w = w;
	f->req = (uint64_t)(uintptr_t)w->req.handle;
	/* Queued first, so that a failing check below leaves nothing behind. */
	if (fk.q_tail != NULL)
		fk.q_tail->next = f;
	else
		fk.q_head = f;
	fk.q_tail = f;
	fk.q_len++;
	if (f->req != 0)
		MCHECK(w->req.owner == &fk.owners[req_get(f->req)->conn],
		       "the write for request %llu names another connection", ULL(f->req));
	if (w->kind == COORD_WRITE_STAGE) {
		f->ops_id = req_get(f->req)->ops;
	} else if (w->kind == COORD_WRITE_FINAL) {
		/* A commit's or a release's final state is decided when the
		 * request is accepted (after_request()); the server's own are
		 * decided here. */
		if (w->entry.reason == LEDGER_RECOVERED_RESEQUENCED)
			seen_reseq(f->req, w);
		else if (f->req == 0 && w->entry.reason == LEDGER_GAP_EXPIRED)
			seen_expired(w);
		else if (f->req == 0)
			seen_detach(fk.closing, w->seq);
	}
	return 0;
}

static void io_answer(struct coord_io *io, struct coord_req r, const struct coord_answer *a)
{
	(void)io;
	uint64_t id = (uint64_t)(uintptr_t)r.handle;
	struct req *q = req_get(id);
	MCHECK(r.owner == &fk.owners[q->conn], "request %llu is answered to another connection",
	       ULL(id));
	if (a->kind == COORD_DROPPED) {
		MCHECK(q->state == RS_CANCELLED || fk.freeing,
		       "request %llu (kind %d) was given back unanswered, but its connection is "
		       "open",
		       ULL(id), q->kind);
		if (q->state == RS_OPEN)
			req_end(q, RS_CANCELLED);
		return;
	}
	if (fault_now(FAULT_DROP))
		return; /* the answer is lost */
	MCHECK(a->watermark == m.mem_wm,
	       "request %llu is answered with watermark %llu, the model %llu", ULL(id),
	       ULL(a->watermark), ULL(m.mem_wm));
	switch (a->kind) {
	case COORD_ERROR:
		answer_error(id, a->code);
		break;
	case COORD_GRANTED:
		answer_grant(id, a->grants, a->n_grants);
		break;
	case COORD_EXTENDED:
		answer_extend(id, a);
		break;
	case COORD_RELEASED:
		answer_ok(id, RQ_RELEASE);
		break;
	case COORD_STAGED:
		answer_ok(id, RQ_STAGE);
		break;
	case COORD_COMMITTED:
		answer_commit(id, a);
		break;
	case COORD_WATERMARK:
		answer_wait(id, a);
		break;
	default:
		MCHECK(false, "request %llu answered with kind %d (code %s)", ULL(id), a->kind,
		       wb_error_name(a->code));
	}
}

static void io_deadline(struct coord_io *io, uint64_t at_ms)
{
	(void)io;
	fk.deadline = at_ms;
}

static void io_log(struct coord_io *io, enum coord_log_level level, const char *event,
                   const char *fields)
{
	(void)io;
	(void)level;
	/* No failure is injected: the coordinator has nothing to complain of. */
	MCHECK(strcmp(event, "lease_cascade") == 0 || strcmp(event, "lease_expired") == 0,
	       "the coordinator logged %s %s", event, fields);
	if (strcmp(event, "lease_cascade") == 0)
		m.ev[EV_CASCADE]++;
}

static const char *write_name(const struct coord_write *w)
{
	return w->kind == COORD_WRITE_RESERVE ? "reserve"
	       : w->kind == COORD_WRITE_STAGE ? "stage"
	                                      : "final";
}

/* storage/writer.c's run_batch() over the first n queued writes, without
 * map growth (the map is large enough). When the process dies after
 * crash_after writes (< n), the batch never commits: returns false. */
static bool writer_batch(size_t n, size_t crash_after)
{
	struct fw *batch = fk.q_head, *last = batch;
	for (size_t i = 1; i < n; i++)
		last = last->next;
	fk.q_head = last->next;
	if (fk.q_head == NULL)
		fk.q_tail = NULL;
	fk.q_len -= n;
	last->next = NULL;
	fk.held = batch;

	int rc = storage_txn_begin(fk.st, NULL, 0, &fk.txn);
	MCHECK(rc == 0, "begin batch: %s", wb_error_name(rc));
	size_t i = 0;
	for (struct fw *f = batch; f != NULL && i < crash_after; f = f->next, i++) {
		f->applied.n = 0;
		if (f->w->kind == COORD_WRITE_FINAL && fault_now(FAULT_LOSE)) {
			f->status = 0; /* "durable", but never written */
			continue;
		}
		rc = storage_txn_begin(fk.st, fk.txn, 0, &fk.child);
		MCHECK(rc == 0, "begin nested: %s", wb_error_name(rc));
		fk.applying = &f->applied;
		f->status = coord_write_apply(f->w, fk.child);
		fk.applying = NULL;
		/* No failure is injected: a write that fails is a defect (the
		 * server would retry it and then stall the watermark). */
		MCHECK(f->status == 0, "the %s write of seq %llu failed: %s", write_name(f->w),
		       ULL(f->w->seq), wb_error_name(f->status));
		rc = storage_txn_commit(fk.child);
		fk.child = NULL;
		MCHECK(rc == 0, "commit nested: %s", wb_error_name(rc));
	}
	if (i < n) {
		storage_txn_abort(fk.txn);
		fk.txn = NULL;
		fw_free_list(batch);
		fk.held = NULL;
		return false;
	}
	rc = storage_txn_commit(fk.txn);
	fk.txn = NULL;
	MCHECK(rc == 0, "commit batch: %s", wb_error_name(rc));
	model_batch(batch);
	fk.held = NULL;
	if (fk.d_tail != NULL)
		fk.d_tail->next = batch;
	else
		fk.d_head = batch;
	fk.d_tail = last;
	return true;
}

/* Hands f's write back to the coordinator (the loop's async_cb), then
 * learns what became of its request. Frees f. */
static void hand_back(struct fw *f)
{
	fk.held = f;
	const struct coord_write *w = f->w;
	bool final = w->kind == COORD_WRITE_FINAL && f->status == 0;
	uint64_t seq = w->seq;
	if (final && f->wm_after > m.mem_wm)
		m.mem_wm = f->wm_after;
	coord_write_done(fk.c, f->w, f->status, now());
	MCHECK(coord_watermark(fk.c) == m.mem_wm,
	       "the coordinator's watermark is %llu after the final write of seq %llu; the model "
	       "%llu",
	       ULL(coord_watermark(fk.c)), ULL(seq), ULL(m.mem_wm));
	struct req *r = f->req != 0 ? req_get(f->req) : NULL;
	if (final && r != NULL && r->state == RS_OPEN) {
		MCHECK(r->kind == RQ_COMMIT && r->ack_applied && seq > m.mem_wm && !m.stopping,
		       "request %llu (kind %d, seq %llu) is durable and left unanswered (watermark "
		       "%llu)",
		       ULL(f->req), r->kind, ULL(seq), ULL(m.mem_wm));
		req_waits(f->req);
	}
	/* Nothing waits for a watermark that has passed it. */
	for (size_t i = 0; i < m.waiters.n; i++) {
		const struct req *x = &m.reqs[m.waiters.v[i]];
		uint64_t at = x->kind == RQ_COMMIT && x->pr == PR_QUEUE ? x->bound : x->seq;
		MCHECK(at > m.mem_wm, "request %llu still waits for %llu; the watermark is %llu",
		       ULL(m.waiters.v[i]), ULL(at), ULL(m.mem_wm));
	}
	fw_free_list(f);
	fk.held = NULL;
}

/* The loop takes every finished write (async_cb). */
static void deliver_all(void)
{
	while (fk.d_head != NULL) {
		struct fw *f = fk.d_head;
		fk.d_head = f->next;
		if (fk.d_head == NULL)
			fk.d_tail = NULL;
		f->next = NULL;
		hand_back(f);
	}
}

/* ---- requests */

static void handle_lease(uint64_t id)
{
	const struct req *a = &m.reqs[id];
	char opid[32];
	opid_str(a->opid, opid, sizeof(opid));
	struct lease_grant_args args = {
	        .projection = projections[a->proj],
	        .duration_ms = a->duration,
	        .count = a->count,
	        .operation_id = opid,
	        .source_position = a->src,
	        .on_disconnect = a->od_release ? LEASE_RELEASE : LEASE_KEEP,
	};
	coord_lease(fk.c, req_of(id), &args, now());
}

static void handle_commit(uint64_t id)
{
	const struct req *a = &m.reqs[id];
	uint8_t ops[OPS_MAX];
	struct coord_commit_args ca = {
	        .seq = a->seq,
	        .token = a->token,
	        .ops = ops,
	        .ops_len = ops_bytes(a->ops, ops),
	        .ack_applied = a->ack_applied,
	        .resequence = a->reseq,
	};
	coord_commit(fk.c, req_of(id), &ca, now());
}

static void handle_stage(uint64_t id)
{
	const struct req *a = &m.reqs[id];
	uint8_t ops[OPS_MAX];
	size_t len = ops_bytes(a->ops, ops);
	coord_stage(fk.c, req_of(id), a->seq, a->token, ops, len, now());
}

/* A connection closes: its open requests will never be answered. */
static void close_conn(int conn)
{
	for (size_t i = 1; i < m.nreqs; i++)
		if (m.reqs[i].state == RS_OPEN && m.reqs[i].conn == conn)
			req_end(&m.reqs[i], RS_CANCELLED);
	fk.closing = conn;
	coord_owner_closed(fk.c, &fk.owners[conn], now());
	fk.closing = NO_CONN;
	const struct lease_owner *o = &fk.owners[conn];
	MCHECK(o->head == NULL && o->count == 0 && o->waiting == 0,
	       "connection %d closed, and the coordinator still links %zu leases and %zu waiting "
	       "requests to it",
	       conn, o->count, o->waiting);
}

/* ---- start and stop */

/* whizbangd starts: a new coordinator, whose start-up recovers the ledger. */
static void sim_start(void)
{
	struct coord_recovery rec;
	struct seqlist applied = {0};
	char errmsg[256] = "";
	fk.applying = &applied;
	int rc = coord_start(&fk.c, &fk.cfg, &fk.io, fk.st, now(), &rec, errmsg, sizeof(errmsg));
	fk.applying = NULL;
	MCHECK(rc == 0, "coord_start: %s", errmsg);
	MCHECK(rec.applied.entries == applied.n, "recovery applied %llu entries, the hook saw %zu",
	       ULL(rec.applied.entries), applied.n);
	model_recovered(&rec.ledger, &applied);
	free(applied.v);
	MCHECK(coord_watermark(fk.c) == m.mem_wm,
	       "the new coordinator's watermark is %llu, not %llu", ULL(coord_watermark(fk.c)),
	       ULL(m.mem_wm));
	fk.deadline = UINT64_MAX;
}

/* The process ends; its connections go with it. */
static void sim_close(void)
{
	fk.freeing = true;
	coord_close(fk.c);
	fk.freeing = false;
	fk.c = NULL;
	memset(fk.owners, 0, sizeof(fk.owners));
}

/* Every write queued or in flight is committed and handed back. */
static void drain_writer(void)
{
	while (fk.q_head != NULL || fk.d_head != NULL) {
		if (fk.q_head != NULL)
			writer_batch(fk.q_len, SIZE_MAX);
		deliver_all();
	}
}

static void check_answered(void);

/* SIGTERM, as whizbangd stops: waiters are told (coord_shutdown() from
 * srv_lease.c's shutdown hook), the writer drains, the connections close (releasing
 * their RELEASE leases), and what they queued is written before the
 * coordinator is freed (srv_close()). */
static void sim_stop_clean(void)
{
	m.stopping = true;
	coord_shutdown(fk.c);
	MCHECK(m.waiters.n == 0, "%zu requests still wait after the shutdown", m.waiters.n);
	drain_writer();
	check_answered();
	for (int c = 0; c < OWNERS; c++)
		close_conn(c);
	drain_writer();
	sim_close();
	m.stopping = false;
}

/* SIGKILL: every write not committed is lost; with mid_batch the writer
 * dies inside a batch. */
static void sim_crash(bool mid_batch)
{
	if (mid_batch && fk.q_len > 0) {
		size_t n = 1 + (size_t)rnd(fk.q_len);
		writer_batch(n, (size_t)rnd(n));
		m.ev[EV_CRASH_MID]++;
	}
	fw_free_list(fk.q_head);
	fk.q_head = fk.q_tail = NULL;
	fk.q_len = 0;
	fw_free_list(fk.d_head);
	fk.d_head = fk.d_tail = NULL;
	sim_close();
}

/* ------------------------------------------------------------ checks */

struct scan {
	uint64_t expect; /* the next sequence at or below the watermark */
	uint64_t watermark;
	uint64_t above; /* entries above the watermark */
	uint64_t last;
};

static bool scan_cb(const struct ledger_entry *e, void *arg)
{
	struct scan *sc = arg;
	check_entry(e, true, "ledger");
	if (e->seq <= sc->watermark) {
		MCHECK(e->seq == sc->expect,
		       "seq %llu <= watermark %llu has no final entry (next entry %llu)",
		       ULL(sc->expect), ULL(sc->watermark), ULL(e->seq));
		sc->expect++;
	} else {
		sc->above++;
	}
	sc->last = e->seq;
	return true;
}

static void scan_ledger(struct storage_txn *txn, uint64_t from, struct scan *sc)
{
	uint64_t next = from;
	for (;;) {
		uint64_t before = sc->last;
		int rc = ledger_read(txn, next, 4096, scan_cb, sc, &next);
		MCHECK(rc == 0, "ledger_read: %s", wb_error_name(rc));
		if (sc->last == before)
			break;
	}
	MCHECK(sc->expect == sc->watermark + 1,
	       "seq %llu <= watermark %llu has no final entry (ledger ends)", ULL(sc->expect),
	       ULL(sc->watermark));
}

/* The earliest moment an active lease is due (expiry plus grace), as the
 * model knows it; UINT64_MAX when none is active. */
static uint64_t model_next_due(void)
{
	uint64_t next = UINT64_MAX;
	for (uint64_t seq = m.prefix + 1; seq < m.next; seq++) {
		const struct mseq *s = ms(seq);
		if (s->state == M_ACTIVE && s->expires + m.grace < next)
			next = s->expires + m.grace;
	}
	return next;
}

/* When the coordinator next has work without being asked: the next
 * expiry, or the deadline of a wait. */
static uint64_t model_next_deadline(void)
{
	uint64_t next = model_next_due();
	for (size_t i = 0; i < m.waiters.n; i++) {
		const struct req *r = &m.reqs[m.waiters.v[i]];
		if (r->kind == RQ_WAIT && r->deadline < next)
			next = r->deadline;
	}
	return next;
}

/* Every invariant, after every step, from the store. */
static void check_all(void)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(fk.st, NULL, STORAGE_RDONLY, &txn);
	MCHECK(rc == 0, "read txn: %s", wb_error_name(rc));
	struct ledger_state st;
	rc = ledger_get_state(txn, &st);
	MCHECK(rc == 0, "ledger_get_state: %s", wb_error_name(rc));
	MCHECK(st.watermark >= m.wm_seen, "the watermark moved back from %llu to %llu",
	       ULL(m.wm_seen), ULL(st.watermark));
	MCHECK(st.watermark == m.prefix && st.watermark == m.applied_to,
	       "stored watermark %llu; every sequence up to %llu is final and the apply log "
	       "reaches %llu",
	       ULL(st.watermark), ULL(m.prefix), ULL(m.applied_to));
	MCHECK(st.ceiling == m.durable_ceiling, "stored ceiling %llu, committed reserves %llu",
	       ULL(st.ceiling), ULL(m.durable_ceiling));
	MCHECK(coord_next_seq(fk.c) == m.next, "the table hands out %llu next, the model %llu",
	       ULL(coord_next_seq(fk.c)), ULL(m.next));
	uint64_t wm = coord_watermark(fk.c);
	MCHECK(wm == m.mem_wm && wm <= st.watermark,
	       "the coordinator's watermark %llu (the model %llu, stored %llu)", ULL(wm),
	       ULL(m.mem_wm), ULL(st.watermark));
	MCHECK(fk.d_head != NULL || wm == st.watermark,
	       "every write is done but the coordinator's watermark %llu is not the stored %llu",
	       ULL(wm), ULL(st.watermark));
	/* The table's settled frontier and the ledger agree: the coordinator's
	 * watermark never passes a lease the table still holds, and once every
	 * committed write is done the stored watermark is exactly the
	 * frontier. */
	uint64_t frontier = lease_frontier(coord_leases(fk.c));
	MCHECK(wm <= frontier, "the coordinator's watermark %llu passes the frontier %llu", ULL(wm),
	       ULL(frontier));
	MCHECK(fk.d_head != NULL || st.watermark == frontier,
	       "every write is done, the stored watermark is %llu and the frontier %llu",
	       ULL(st.watermark), ULL(frontier));
	/* One timer: the coordinator asks for the next expiry or wait deadline. */
	uint64_t next = model_next_deadline();
	MCHECK(fk.deadline == next, "the coordinator's deadline is %llu, the model's %llu",
	       ULL(fk.deadline), ULL(next));
	for (int c = 0; c < OWNERS; c++)
		MCHECK(fk.owners[c].waiting == waiting_of(c),
		       "connection %d has %zu requests waiting, the model %zu", c,
		       fk.owners[c].waiting, waiting_of(c));

	/* The ledger from the last checked watermark on: contiguous up to
	 * the new one, and above it exactly the durable entries. */
	struct scan sc = {.expect = m.wm_seen + 1, .watermark = st.watermark};
	scan_ledger(txn, m.wm_seen + 1, &sc);
	uint64_t above = 0;
	for (uint64_t seq = st.watermark + 1; seq < m.next; seq++) {
		const struct mseq *s = ms(seq);
		if (s->durable)
			above++;
		/* Staged work: the last committed stage of a lease whose final
		 * entry is not written; none once it is. */
		uint64_t token;
		const uint8_t *ops;
		size_t len;
		rc = ledger_get_staged(txn, seq, &token, &ops, &len);
		if (s->stage_dur == 0) {
			MCHECK(rc == WB_E_NOTFOUND, "seq %llu has staged work (%s); the model none",
			       ULL(seq), wb_error_name(rc));
		} else {
			uint8_t want[OPS_MAX];
			size_t wlen = ops_bytes(s->stage_dur, want);
			MCHECK(rc == 0 && token == s->token && len == wlen &&
			               (len == 0 || memcmp(ops, want, len) == 0),
			       "seq %llu's staged work (%s) is not its last committed stage",
			       ULL(seq), wb_error_name(rc));
		}
	}
	MCHECK(sc.above == above, "%llu entries above the watermark %llu, the model %llu",
	       ULL(sc.above), ULL(st.watermark), ULL(above));

	/* Entries never change: look at two old ones again. */
	for (int i = 0; i < 2 && st.watermark > 0; i++) {
		struct ledger_entry e;
		uint64_t seq = 1 + rnd(st.watermark);
		rc = ledger_get(txn, seq, &e);
		MCHECK(rc == 0, "seq %llu <= watermark has no entry: %s", ULL(seq),
		       wb_error_name(rc));
		check_entry(&e, true, "ledger (again)");
	}
	storage_txn_abort(txn);
	m.wm_seen = st.watermark;
	check_answered();
}

/* Once every write is done, nothing may be left unanswered: grants made,
 * stages and releases answered, commits answered unless they wait with ack
 * APPLIED for a watermark that has not reached them, waits unless their
 * sequence is above the watermark (while stopping, not even those), and
 * every finishing lease settled. A queued request with no write left would
 * wait for a reservation that never comes. */
static void check_answered(void)
{
	if (fk.q_head != NULL || fk.d_head != NULL)
		return;
	struct lease_counts c;
	lease_get_counts(coord_leases(fk.c), &c);
	MCHECK(c.finishing == 0, "%llu leases are still finishing after every write was done",
	       ULL(c.finishing));
	while (m.open_from < m.nreqs && m.reqs[m.open_from].state != RS_OPEN)
		m.open_from++;
	for (uint64_t id = m.open_from; id < m.nreqs; id++) {
		const struct req *r = &m.reqs[id];
		if (r->state != RS_OPEN)
			continue;
		uint64_t seq = r->pr == PR_QUEUE ? r->bound : r->seq;
		MCHECK(((r->kind == RQ_COMMIT && r->ack_applied) || r->kind == RQ_WAIT) &&
		               !m.stopping && seq > m.mem_wm,
		       "request %llu (kind %d, seq %llu, applied-ack %d) was never answered "
		       "(watermark %llu%s)",
		       ULL(id), r->kind, ULL(seq), r->ack_applied, ULL(m.mem_wm),
		       m.stopping ? ", stopping" : "");
	}
}

/* After recovery: the whole ledger is 1..ceiling, each as the model says,
 * and no staged work is left. */
static void full_scan(void)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(fk.st, NULL, STORAGE_RDONLY, &txn);
	MCHECK(rc == 0, "read txn: %s", wb_error_name(rc));
	struct ledger_state st;
	rc = ledger_get_state(txn, &st);
	MCHECK(rc == 0 && st.watermark == m.old_ceiling && st.ceiling == m.old_ceiling,
	       "after recovery the watermark is %llu and the ceiling %llu; the old ceiling %llu",
	       ULL(st.watermark), ULL(st.ceiling), ULL(m.old_ceiling));
	struct scan sc = {.expect = 1, .watermark = st.watermark};
	scan_ledger(txn, 1, &sc);
	MCHECK(sc.above == 0, "%llu entries above the ceiling after recovery", ULL(sc.above));
	struct storage_cursor *cur;
	struct storage_val k, v;
	rc = storage_cursor_open(txn, STORAGE_DB_STAGED, &cur);
	MCHECK(rc == 0, "cursor: %s", wb_error_name(rc));
	rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v);
	storage_cursor_close(cur);
	MCHECK(rc == WB_E_NOTFOUND, "staged work left after recovery (%s)", wb_error_name(rc));
	storage_txn_abort(txn);
	m.wm_seen = st.watermark;
}

/* ------------------------------------------------------------ the walk */

/* A lease a client holds or held, as a client would pick one: mostly an
 * active one; 0 when there is none. */
static uint64_t pick_seq(bool prefer_active, bool prefer_expired)
{
	uint64_t c[PICK_WINDOW];
	size_t n = 0;
	uint64_t lo = m.next > PICK_WINDOW ? m.next - PICK_WINDOW : 1;
	for (int pass = 0; pass < 2 && n == 0; pass++) {
		for (uint64_t seq = lo; seq < m.next; seq++) {
			const struct mseq *s = ms(seq);
			if (!s->granted || s->reseq_grant)
				continue;
			if (pass == 0 && prefer_active && s->state != M_ACTIVE)
				continue;
			if (pass == 0 && prefer_expired && !expiredish(s) &&
			    !(s->state == M_ACTIVE && due(s)))
				continue;
			c[n++] = seq;
		}
	}
	return n > 0 ? c[rnd(n)] : 0;
}

static uint64_t token_for(uint64_t seq)
{
	uint64_t t = seq < m.cap ? m.seqs[seq].token : 0;
	return chance(6) ? t ^ (1 + rnd(1000)) : t;
}

/* What the coordinator makes of a request for r->seq. */
static void predict(struct req *r)
{
	r->pr = PR_ERROR;
	r->err = r->err_alt = WB_LEASE_NOT_FOUND;
	if (r->seq == 0 || r->seq >= m.cap || m.seqs[r->seq].state == M_UNUSED)
		return;
	const struct mseq *s = &m.seqs[r->seq];
	bool right = r->token == s->token;
	bool commit = r->kind == RQ_COMMIT;
	bool expired_path = false;
	if (s->state == M_ACTIVE) {
		if (!right) {
			r->err = r->err_alt = WB_LEASE_TOKEN_MISMATCH;
		} else if (due(s)) {
			expired_path = true;
		} else if (r->kind == RQ_EXTEND &&
		           m.now + (r->duration > MAX_DURATION ? MAX_DURATION : r->duration) >
		                   s->granted_ms + MAX_LIFETIME) {
			r->err = r->err_alt = WB_RESOURCE_EXHAUSTED;
		} else {
			r->pr = PR_ACCEPT;
		}
	} else if (commit) {
		if (expiredish(s)) {
			/* Restart gaps carry no token: any token passes. */
			bool tokenless = s->by_restart && s->reason == LEDGER_GAP_RESTART;
			if (right || tokenless)
				expired_path = true;
			else
				r->err = r->err_alt = WB_LEASE_TOKEN_MISMATCH;
		} else if (!right) {
			r->err_alt = WB_LEASE_TOKEN_MISMATCH;
		}
	} else {
		/* A finished lease: lease_get() while the table still holds it,
		 * NOT_FOUND once it has settled. */
		if (!right)
			r->err = WB_LEASE_TOKEN_MISMATCH;
		else if (expiredish(s))
			r->err = WB_LEASE_EXPIRED;
	}
	/* Work recovered from its staging is the lease's result: it is not
	 * resequenced, which would land it twice. */
	bool recovered =
	        s->state == M_ACTIVE ? s->stage_last != 0 : s->reason == LEDGER_RECOVERED_STAGED;
	/* A restart gap cannot say which projection to resequence under. */
	bool restart_gap =
	        s->state == M_DECIDED && s->by_restart && s->reason == LEDGER_GAP_RESTART;
	if (expired_path) {
		if (commit && r->reseq && !recovered && !restart_gap)
			r->pr = PR_QUEUE;
		else
			r->err = r->err_alt = WB_LEASE_EXPIRED;
	}
}

/* What a request's immediate handling must have done, and what the model
 * learns from it. was_due: the target was an active lease past its expiry,
 * asked for with its token. */
static void after_request(uint64_t id, bool was_due)
{
	struct req *r = &m.reqs[id];
	struct mseq *s = ms(r->seq);
	if (r->pr == PR_ERROR)
		MCHECK(r->state == RS_DONE,
		       "request %llu (kind %d, seq %llu) was not refused; the "
		       "model expects %s",
		       ULL(id), r->kind, ULL(r->seq), wb_error_name(r->err));
	else if (r->kind == RQ_EXTEND)
		MCHECK(r->state == RS_DONE, "extend %llu of seq %llu was not answered", ULL(id),
		       ULL(r->seq));
	else
		MCHECK(r->state == RS_OPEN,
		       "request %llu (kind %d, seq %llu) answered before its write", ULL(id),
		       r->kind, ULL(r->seq));
	if (was_due)
		MCHECK(s->state == M_DECIDED, "seq %llu was refused as expired but not finished",
		       ULL(r->seq));
	if (r->pr != PR_ACCEPT)
		return;
	switch (r->kind) {
	case RQ_COMMIT:
		decide(r->seq, LEDGER_COMMITTED, LEDGER_REASON_NONE, r->ops);
		m.ev[EV_COMMITTED]++;
		break;
	case RQ_RELEASE:
		decide(r->seq, LEDGER_GAP, LEDGER_GAP_RELEASED, 0);
		m.ev[EV_RELEASED]++;
		break;
	case RQ_STAGE:
		s->stage_last = r->ops;
		m.ev[EV_STAGED]++;
		break;
	default:
		break;
	}
}

static bool is_due_target(const struct req *r)
{
	if (r->seq == 0 || r->seq >= m.cap)
		return false;
	const struct mseq *s = &m.seqs[r->seq];
	return s->state == M_ACTIVE && r->token == s->token && due(s);
}

static void step_lease(void)
{
	struct lease_counts c;
	lease_get_counts(coord_leases(fk.c), &c);
	if (c.active + c.finishing + fifo_waiting() + MAX_COUNT > MAX_LIVE)
		return;
	int conn = (int)rnd(OWNERS);
	uint64_t id = req_new(RQ_LEASE, conn);
	struct req *r = &m.reqs[id];
	r->count = (uint32_t)(1 + rnd(MAX_COUNT));
	uint64_t pick = rnd(10);
	r->duration = pick == 0  ? 0
	              : pick < 9 ? 1 + rnd(MAX_DURATION)
	                         : MAX_DURATION + 1 + rnd(MAX_DURATION);
	r->proj = (int)rnd(PROJECTIONS);
	r->opid = (uint32_t)rnd(6);
	r->src = rnd(1000000);
	r->od_release = chance(30);
	r->pr = PR_QUEUE;
	fifo_push(id);
	handle_lease(id);
	if (m.reqs[id].state == RS_OPEN)
		m.ev[EV_WAITED]++;
}

/* Extend, release or stage a lease the client holds (or held). */
static void step_simple(enum rkind kind)
{
	uint64_t seq = pick_seq(chance(85), false);
	if (seq == 0)
		return;
	int conn = (int)rnd(OWNERS);
	uint64_t id = req_new(kind, conn);
	struct req *r = &m.reqs[id];
	r->seq = seq;
	r->token = token_for(seq);
	if (kind == RQ_EXTEND)
		r->duration = chance(40) ? MAX_DURATION + rnd(100) : 1 + rnd(MAX_DURATION);
	if (kind == RQ_STAGE)
		r->ops = ++m.next_ops;
	predict(r);
	bool was_due = is_due_target(r);
	if (kind == RQ_EXTEND && r->pr == PR_ERROR && r->err == WB_RESOURCE_EXHAUSTED)
		m.ev[EV_OVERRUN]++;
	switch (kind) {
	case RQ_EXTEND:
		coord_extend(fk.c, req_of(id), r->seq, r->token, r->duration, now());
		break;
	case RQ_RELEASE:
		coord_release(fk.c, req_of(id), r->seq, r->token, now());
		break;
	default:
		handle_stage(id);
		break;
	}
	after_request(id, was_due);
}

static void commit_request(uint64_t seq, uint64_t token)
{
	int conn = (int)rnd(OWNERS);
	uint64_t id = req_new(RQ_COMMIT, conn);
	struct req *r = &m.reqs[id];
	r->seq = seq;
	r->token = token;
	r->ops = ++m.next_ops;
	r->reseq = chance(50);
	r->ack_applied = chance(35);
	predict(r);
	bool was_due = is_due_target(r);
	if (r->pr == PR_QUEUE)
		fifo_push(id);
	handle_commit(id);
	after_request(id, was_due);
}

static void step_commit(void)
{
	uint64_t pick = rnd(100);
	uint64_t seq = pick < 70   ? pick_seq(true, false)
	               : pick < 90 ? pick_seq(false, true)
	                           : pick_seq(false, false);
	if (seq != 0)
		commit_request(seq, token_for(seq));
}

/* A commit of any sequence, known or not, with its token or a guess. */
static void step_probe(void)
{
	uint64_t seq = rnd(m.next + 3);
	uint64_t token = chance(50) && seq < m.cap ? m.seqs[seq].token : splitmix(&m.rng);
	commit_request(seq, token);
}

static void step_clock(void)
{
	static const struct fixture_clock clock = {
	        .step_pct = 82, .step = 300, .jump_pct = 12, .jump = 10000};
	if (fixture_clock_step(&clock, &m.now, &m.rng))
		m.ev[EV_BACKJUMP]++;
}

/* The I/O's timer fires. It is armed for the coordinator's deadline, so
 * usually the clock stands exactly there; sometimes it fires late. */
static void step_timer(void)
{
	uint64_t next = model_next_deadline();
	if (next != UINT64_MAX && next > m.now && chance(70))
		m.now = next;
	coord_tick(fk.c, now());
	check_none_due();
	for (size_t i = 0; i < m.waiters.n; i++) {
		const struct req *r = &m.reqs[m.waiters.v[i]];
		MCHECK(r->kind != RQ_WAIT || r->deadline > m.now,
		       "the wait %llu for %llu is past its deadline %llu at %llu and still waits",
		       ULL(m.waiters.v[i]), ULL(r->seq), ULL(r->deadline), ULL(m.now));
	}
}

/* The clock to the very edge of a lease's life: the last moment it is
 * still usable, or the first at which it is due. */
static void step_clock_edge(void)
{
	uint64_t seq = pick_seq(true, false);
	if (seq == 0 || m.seqs[seq].state != M_ACTIVE)
		return;
	uint64_t due_at = m.seqs[seq].expires + m.grace;
	uint64_t to = chance(50) ? due_at : due_at - 1;
	if (to < m.now)
		m.ev[EV_BACKJUMP]++;
	m.now = to;
}

static void step_flush(void)
{
	if (fk.q_len == 0)
		return;
	if (fault_now(FAULT_EARLY)) {
		/* The I/O hands a write back as durable before the writer
		 * has run it (and then never runs it). */
		struct fw *f = fk.q_head;
		fk.q_head = f->next;
		if (fk.q_head == NULL)
			fk.q_tail = NULL;
		fk.q_len--;
		f->next = NULL;
		hand_back(f);
		return;
	}
	size_t n = chance(30) ? fk.q_len : 1 + (size_t)rnd(fk.q_len);
	writer_batch(n, SIZE_MAX);
	if (chance(60))
		deliver_all();
}

static void step_disconnect(void)
{
	int conn = (int)rnd(OWNERS);
	close_conn(conn);
	for (uint64_t seq = m.prefix + 1; seq < m.next; seq++) {
		struct mseq *s = ms(seq);
		if (s->state != M_ACTIVE || s->owner != conn)
			continue;
		MCHECK(!s->od_release,
		       "connection %d closed, its RELEASE lease %llu is still active", conn,
		       ULL(seq));
		s->owner = NO_OWNER;
	}
}

/* WaitForWatermark for a sequence near the watermark: answered at once
 * when reached or with no timeout, refused past the connection's limit,
 * otherwise answered when the watermark reaches it or its time is up. */
static void step_wait(void)
{
	int conn = (int)rnd(OWNERS);
	uint64_t id = req_new(RQ_WAIT, conn);
	struct req *r = &m.reqs[id];
	uint64_t lo = m.mem_wm > 3 ? m.mem_wm - 3 : 0;
	r->seq = lo + rnd(m.next + 3 - lo);
	uint64_t pick = rnd(100);
	r->timeout = pick < 10 ? 0 : pick < 96 ? 1 + rnd(MAX_DURATION) : WAIT_CAP + 1 + rnd(1000);
	r->deadline = m.now + (r->timeout > WAIT_CAP ? WAIT_CAP : r->timeout);
	bool at_once = r->seq <= m.mem_wm || r->timeout == 0;
	r->pr = PR_ACCEPT;
	if (!at_once && waiting_of(conn) >= fk.cfg.max_waiting_per_owner) {
		r->pr = PR_ERROR;
		r->err = r->err_alt = WB_RESOURCE_EXHAUSTED;
	}
	coord_wait(fk.c, req_of(id), r->seq, r->timeout, now());
	if (at_once || r->pr == PR_ERROR) {
		MCHECK(r->state == RS_DONE,
		       "the wait %llu for %llu (watermark %llu) was not answered", ULL(id),
		       ULL(r->seq), ULL(m.mem_wm));
	} else {
		MCHECK(r->state == RS_OPEN, "the wait %llu for %llu (watermark %llu) was answered",
		       ULL(id), ULL(r->seq), ULL(m.mem_wm));
		req_waits(id);
	}
}

static void step_restart(void)
{
	bool clean = chance(40);
	if (clean) {
		sim_stop_clean();
		m.ev[EV_CLEAN]++;
	} else {
		sim_crash(chance(40));
		m.ev[EV_CRASH]++;
	}
	model_restart(clean);
	sim_start();
	full_scan();
}

static void step(void)
{
	uint64_t pick = rnd(1000);
	m.expired_now = false;
	if (pick < 170)
		step_lease();
	else if (pick < 215)
		step_simple(RQ_EXTEND);
	else if (pick < 255)
		step_simple(RQ_RELEASE);
	else if (pick < 335)
		step_simple(RQ_STAGE);
	else if (pick < 505)
		step_commit();
	else if (pick < 600)
		step_clock();
	else if (pick < 620)
		step_clock_edge();
	else if (pick < 680)
		step_timer();
	else if (pick < 830)
		step_flush();
	else if (pick < 900)
		deliver_all();
	else if (pick < 912)
		step_disconnect();
	else if (pick < 919)
		step_restart();
	else if (pick < 945)
		step_wait();
	else
		step_probe();
	/* The clock stood still through the step: an expiry run left nothing
	 * due behind. */
	if (m.expired_now)
		check_none_due();
}

static unsigned long walk_steps(void)
{
	const char *env = getenv("WB_STEPS");
	unsigned long n = env != NULL && *env != '\0' ? strtoul(env, NULL, 0) : 0;
	return n > 0 ? n : STEPS;
}

static enum fault fault_from_env(void)
{
	const char *env = getenv("WB_MODEL_FAULT");
	if (env == NULL || *env == '\0')
		return FAULT_NONE;
	if (strcmp(env, "lose") == 0)
		return FAULT_LOSE;
	if (strcmp(env, "drop") == 0)
		return FAULT_DROP;
	cr_assert_str_eq(env, "early", "WB_MODEL_FAULT is lose, drop or early");
	return FAULT_EARLY;
}

static void run(uint64_t seed_offset)
{
	unsigned long steps = walk_steps();
	m.rng = fixture_walk_start(&m.walk, "ledger model", seed_offset);
	fk.token_rng = m.walk.seed ^ 0x5eedu;
	/* The grace, the reservation chunk and the waiting limit vary with the
	 * seed: a chunk of 1 makes nearly every grant wait for a reserve
	 * write. */
	static const uint64_t graces[] = {0, 50, 700};
	m.grace = graces[rnd(3)];
	fk.cfg = (struct coord_config){
	        .lease =
	                {
	                        .max_lifetime_ms = MAX_LIFETIME,
	                        .grace_ms = m.grace,
	                        .max_duration_ms = MAX_DURATION,
	                        .default_duration_ms = DEFAULT_DURATION,
	                        .cascade_threshold = 6,
	                        .max_leases = 1024,
	                        .max_leases_per_owner = 1024,
	                        .max_count = MAX_COUNT,
	                        .reserve_chunk = 1 + rnd(MAX_CHUNK),
	                        .max_projections = 8,
	                },
	        .max_waiting_per_owner = 1 + rnd(MAX_WAITING),
	        .apply = apply_cb,
	        .rand = fixture_splitmix,
	        .rand_arg = &fk.token_rng,
	};
	fk.io = (struct coord_io){
	        .submit = io_submit,
	        .answer = io_answer,
	        .deadline = io_deadline,
	        .log = io_log,
	};
	fk.fault = fault_from_env();
	m.now = 1000000000u;
	m.next = 1;
	m.open_from = 1;
	sim_start();
	check_all();
	for (m.walk.step = 1; m.walk.step <= steps; m.walk.step++) {
		step();
		check_all();
	}
	/* A last clean restart: everything handed out ends final. */
	sim_stop_clean();
	model_restart(true);
	sim_start();
	full_scan();
	check_all();

	cr_log_info(
	        "seed %llu (grace %llu, chunk %llu): granted %lu (%lu requests waited for a "
	        "reserve write) committed %lu "
	        "(acked above the "
	        "watermark %lu, applied %lu) released %lu staged %lu overrun %lu expired "
	        "%lu+%lu recovered, failed-expired %lu resequenced %lu (from restart %lu, "
	        "never leased %lu, again %lu; refused as recovered %lu) mismatch %lu detached "
	        "%lu crashes "
	        "%lu (mid-batch %lu) clean %lu restart "
	        "gaps %lu recovered %lu backjumps %lu batches %lu applied %lu waits reached %lu "
	        "timed out %lu refused %lu cascades %lu",
	        ULL(m.walk.seed), ULL(m.grace), ULL(fk.cfg.lease.reserve_chunk), m.ev[EV_GRANTED],
	        m.ev[EV_WAITED], m.ev[EV_COMMITTED], m.ev[EV_ACK_ABOVE], m.ev[EV_ACK_APPLIED],
	        m.ev[EV_RELEASED], m.ev[EV_STAGED], m.ev[EV_OVERRUN], m.ev[EV_EXPIRED_GAP],
	        m.ev[EV_EXPIRED_RECOVERED], m.ev[EV_FAIL_EXPIRED], m.ev[EV_RESEQ],
	        m.ev[EV_RESEQ_RESTART], m.ev[EV_RESEQ_UNLEASED], m.ev[EV_RESEQ_AGAIN],
	        m.ev[EV_RESEQ_REFUSED], m.ev[EV_MISMATCH], m.ev[EV_DETACHED], m.ev[EV_CRASH],
	        m.ev[EV_CRASH_MID], m.ev[EV_CLEAN], m.ev[EV_RESTART_GAP],
	        m.ev[EV_RESTART_RECOVERED], m.ev[EV_BACKJUMP], m.ev[EV_BATCHES], m.ev[EV_APPLIED],
	        m.ev[EV_WAIT_REACHED], m.ev[EV_WAIT_TIMEOUT], m.ev[EV_WAIT_REFUSED],
	        m.ev[EV_CASCADE]);
	/* The walk must have reached the interesting paths. */
	static const enum event needed[] = {
	        EV_WAITED,
	        EV_COMMITTED,
	        EV_ACK_ABOVE,
	        EV_ACK_APPLIED,
	        EV_RELEASED,
	        EV_STAGED,
	        EV_EXPIRED_GAP,
	        EV_EXPIRED_RECOVERED,
	        EV_FAIL_EXPIRED,
	        EV_RESEQ,
	        EV_RESEQ_REFUSED,
	        EV_MISMATCH,
	        EV_DETACHED,
	        EV_CRASH,
	        EV_CLEAN,
	        EV_RESTART_GAP,
	        EV_RESTART_RECOVERED,
	        EV_BACKJUMP,
	        EV_OVERRUN,
	        EV_WAIT_REACHED,
	        EV_WAIT_TIMEOUT,
	};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		MCHECK(m.ev[needed[i]] > 0, "thin walk: event %d never happened", (int)needed[i]);
}

/* ------------------------------------------------------------ fixture */

static struct fixture fx;

static void setup(void)
{
	memset(&m, 0, sizeof(m));
	memset(&fk, 0, sizeof(fk));
	fk.closing = NO_CONN;
	fixture_setup(&fx, "ledger-model");
	fk.st = fixture_open(&fx, NULL,
	                     &(struct storage_options){.map_size = 64u << 20, .no_sync = true});
}

static void teardown(void)
{
	if (fk.child != NULL)
		storage_txn_abort(fk.child);
	if (fk.txn != NULL)
		storage_txn_abort(fk.txn);
	fw_free_list(fk.q_head);
	fw_free_list(fk.d_head);
	fw_free_list(fk.held);
	sim_close();
	free(m.waiters.v);
	storage_close(fk.st);
	fixture_teardown(&fx);
	free(m.seqs);
	free(m.reqs);
	free(m.fifo);
	memset(&m, 0, sizeof(m));
	memset(&fk, 0, sizeof(fk));
}

TestSuite(ledger_model, .init = setup, .fini = teardown);

FIXTURE_WALK_TESTS(ledger_model, run)
