/* Leases and the ledger on the loop (DESIGN.md §6).
 *
 * Happy path: Lease grants sequences from the in-memory table (nothing is
 * written, unless the reservation ceiling must be raised first: then the
 * request waits in a queue until the new ceiling is durable). Commit,
 * Release and expiry move a lease to FINISHING and hand a final entry to
 * the writer, which stores it and advances the watermark over the
 * contiguous final entries, running the apply hook for each in order. When
 * the batch is durable the lease settles, the watermark moves, and the
 * answers go out: DURABLE commits at once, APPLIED commits and
 * WaitForWatermark once the watermark has passed them.
 *
 * Failure modes: an expired lease answers LEASE_EXPIRED (or is resequenced
 * when the client asked); a wrong token LEASE_TOKEN_MISMATCH; an unknown or
 * finished sequence LEASE_NOT_FOUND. A final entry the writer could not make
 * durable is retried a few times; if it still fails the watermark stalls at
 * that sequence until a restart recovers it (logged). A connection that
 * closes releases its RELEASE leases and drops its waiters; its KEEP leases
 * run on. At start-up, every sequence between the watermark and the
 * ceiling without a final entry becomes a restart gap or is recovered from
 * its staged work, before the listener opens. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "eval.h"
#include "lease.h"
#include "ledger.h"
#include "log.h"
#include "meta.h"
#include "proj.h"
#include "replay.h"
#include "pb.h"
#include "server.h"
#include "wb_error.h"
#include "wire.h"

#define EXPIRY_BATCH 64u
#define FINAL_RETRIES 3
#define MAX_PROJECTION_STATS 256u
/* Minute buckets for the health window (one hour). */
#define HEALTH_MINUTES 60u

enum lop_kind { LOP_RESERVE, LOP_STAGE, LOP_FINAL };

/* What applying entries did, summed (written by the writer thread). */
struct apply_sums {
	uint64_t entries; /* entries whose ops were applied (or failed) */
	uint64_t failures;
	uint64_t explosions;
	uint64_t exploded_ids;
	uint64_t explosion_us;
};

/* A write of this module. */
struct lop {
	struct srv_op base; /* first */
	struct lsrv *ls;
	enum lop_kind kind;
	Request *req; /* kept for the answer; may be NULL */
	uint64_t seq;
	uint64_t token;
	uint64_t ceiling;
	/* LOP_FINAL: the entry; from_staged: recovered from staged work when
	 * any is stored, otherwise a gap (expired) */
	struct ledger_entry entry;
	bool from_staged;
	char projection[LEASE_NAME_MAX + 1];
	char operation_id[LEASE_NAME_MAX + 1];
	uint8_t *ops;
	size_t ops_len;
	int retries;
	/* results, written by the writer thread */
	uint64_t watermark;
	bool recovered;
	struct apply_sums sums;
	const struct proj_config *pcfg;
	struct pstat *ps; /* the projection's figures */
};

enum pend_kind { PEND_LEASE, PEND_RESEQ, PEND_INDEX };

/* A request waiting for a durable reservation ceiling. */
struct pend {
	struct pend *next;
	enum pend_kind kind;
	struct conn *conn;
	Request *req;
	/* PEND_RESEQ: what the expired lease was */
	char projection[LEASE_NAME_MAX + 1];
	char operation_id[LEASE_NAME_MAX + 1];
	uint64_t source_position;
	uint64_t orig_seq;
	uint64_t orig_expiry_us;
};

enum waiter_kind { WAIT_WATERMARK, WAIT_COMMIT, WAIT_INDEX };

struct waiter {
	struct conn *conn;
	uint64_t req_id;
	uint64_t seq;
	uint64_t deadline_ms; /* UINT64_MAX: none */
	enum waiter_kind kind;
	bool resequenced;
	uint64_t orig_seq;
};

struct minute {
	uint64_t minute;
	uint64_t committed;
	uint64_t expired;
	uint64_t gaps;
	uint64_t wait_sum_ms;
	uint64_t wait_count;
};

/* Figures of one scope: the whole server, or one projection. */
struct figures {
	uint64_t gaps;
	uint64_t waiting; /* final entries above the watermark */
	uint64_t wait_sum_ms, wait_count, wait_max_ms;
	struct minute minutes[HEALTH_MINUTES];
	char health_reason[256];
};

struct pstat {
	struct pstat *next;
	struct figures f;
};

/* A final entry above the watermark, waiting to be applied. */
struct settled {
	uint64_t seq;
	uint64_t durable_ms;
	struct pstat *ps;
	bool gap;
};

/* What the module keeps per connection (its conn slot), made on first use:
 * the connection's leases, and how many of its requests wait. */
struct lconn {
	struct lease_owner owner;
	size_t waiting;
};

/* The most sequences one Lease may ask for (--max-lease-count's bound). */
#define LEASE_COUNT_MAX 1024u

struct lsrv {
	struct srv *srv;
	unsigned slot;
	struct lease_table *t;
	uv_timer_t expiry_timer;
	uv_timer_t wait_timer;
	bool timers_open;
	uint64_t watermark;
	uint64_t reserving; /* ceiling being written; 0 when none */
	struct pend *pend_head, *pend_tail;
	struct waiter *waiters;
	size_t nwaiters, capwaiters;
	uint64_t rand_buf[32];
	size_t rand_left;
	/* figures */
	uint64_t cascade_level; /* last logged */
	struct apply_sums sums;
	struct proj_config pcfg;
	struct figures all;
	struct pstat *pstats_list;
	/* final entries above the watermark: a min-heap by sequence */
	struct settled *settled;
	size_t nsettled, capsettled;
	Whizbang__V1__ProjectionStats pstats[MAX_PROJECTION_STATS];
	Whizbang__V1__ProjectionStats *pstats_ptrs[MAX_PROJECTION_STATS];
};

/* c's lease state, made on first use; NULL when out of memory. */
static struct lconn *lconn_of(struct lsrv *ls, struct conn *c)
{
	struct lconn *lc = conn_slot(c, ls->slot);
	if (lc == NULL) {
		lc = calloc(1, sizeof(*lc));
		if (lc != NULL)
			conn_set_slot(c, ls->slot, lc);
	}
	return lc;
}

static uint64_t mono_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static uint64_t rand64(void *arg)
{
	struct lsrv *ls = arg;
	if (ls->rand_left == 0) {
		size_t got = 0;
		uint8_t *p = (uint8_t *)ls->rand_buf;
		while (got < sizeof(ls->rand_buf)) {
			ssize_t r = getrandom(p + got, sizeof(ls->rand_buf) - got, 0);
			if (r > 0)
				got += (size_t)r;
		}
		ls->rand_left = sizeof(ls->rand_buf) / sizeof(ls->rand_buf[0]);
	}
	return ls->rand_buf[--ls->rand_left];
}

static uint64_t wall_ms_at(uint64_t mono, uint64_t now_mono)
{
	uint64_t wall = srv_wall_us() / 1000;
	return mono >= now_mono ? wall + (mono - now_mono) : wall - (now_mono - mono);
}

static struct minute *minute_now(struct figures *f)
{
	uint64_t m = mono_ms() / 60000;
	struct minute *b = &f->minutes[m % HEALTH_MINUTES];
	if (b->minute != m) {
		memset(b, 0, sizeof(*b));
		b->minute = m;
	}
	return b;
}

/* ------------------------------------------------------------ the writer side */

/* Applies the ops of entry e to the read models and stores them back with
 * what applying found (explosions, outcome). Runs on the writer thread, in
 * sequence order, inside the transaction that moves the watermark. */
static int apply_entry(struct storage_txn *txn, const struct ledger_entry *e,
                       const struct proj_config *pcfg, struct apply_sums *sums)
{
	if (e->ops_len == 0)
		return 0;
	uint64_t seq = e->seq; /* e points into the store: read it first */
	struct proj_buf rw = {0};
	struct proj_outcome o;
	int rc = proj_apply(txn, seq, e->ops, e->ops_len, pcfg, PROJ_LIVE, &rw, &o);
	if (rc == 0 && rw.len > 0)
		rc = ledger_set_ops(txn, seq, rw.p, rw.len);
	proj_buf_free(&rw);
	if (rc == 0) {
		sums->entries++;
		sums->failures += o.error != 0;
		sums->explosions += o.explosions;
		sums->exploded_ids += o.exploded_ids;
		sums->explosion_us += o.explosion_us;
	}
	return rc;
}

static int apply_hook(struct storage_txn *txn, const struct ledger_entry *e, void *arg)
{
	struct lop *op = arg;
	return apply_entry(txn, e, op->pcfg, &op->sums);
}

/* Runs on the writer thread. */
static int lop_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct lop *op = (struct lop *)base;
	int rc;

	memset(&op->sums, 0, sizeof(op->sums));
	op->recovered = false;
	switch (op->kind) {
	case LOP_RESERVE:
		return ledger_set_ceiling(txn, op->ceiling);
	case LOP_STAGE:
		return ledger_stage(txn, op->seq, op->token, op->ops, op->ops_len);
	case LOP_FINAL:
		break;
	}
	struct ledger_entry e = op->entry;
	e.time_us = srv_wall_us();
	uint8_t *copy = NULL;
	if (op->from_staged) {
		uint64_t token;
		const uint8_t *ops;
		size_t len;
		rc = ledger_get_staged(txn, op->seq, &token, &ops, &len);
		if (rc == 0) {
			/* Copied: the put below may move the map's pages. */
			copy = malloc(len > 0 ? len : 1);
			if (copy == NULL)
				return WB_E_NOMEM;
			memcpy(copy, ops, len);
			e.kind = LEDGER_RECOVERED;
			e.reason = LEDGER_RECOVERED_STAGED;
			e.ops = copy;
			e.ops_len = len;
			op->recovered = true;
		} else if (rc != WB_E_NOTFOUND) {
			return rc;
		}
	}
	rc = ledger_put(txn, &e);
	free(copy);
	if (rc == 0)
		rc = ledger_drop_staged(txn, op->seq);
	if (rc == 0)
		rc = ledger_advance(txn, UINT64_MAX, apply_hook, op, &op->watermark);
	return rc;
}

static void lop_free(struct lop *op)
{
	if (op->req != NULL)
		whizbang__v1__request__free_unpacked(op->req, NULL);
	free(op->ops);
	free(op);
}

static void lop_done(struct srv *srv, struct srv_op *base);

static struct lop *lop_new(struct lsrv *ls, enum lop_kind kind, struct conn *c, Request *req)
{
	struct lop *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return NULL;
	op->ls = ls;
	op->pcfg = &ls->pcfg;
	op->kind = kind;
	op->req = req;
	op->base.base.apply = lop_apply;
	op->base.base.size_hint = 4096;
	op->base.done = lop_done;
	op->base.conn = c;
	op->base.req_id = req != NULL ? req->id : 0;
	return op;
}

/* ------------------------------------------------------------ answers */

static void answer_watermark(struct lsrv *ls, struct conn *c, uint64_t id, bool reached)
{
	Whizbang__V1__WatermarkResult r = WHIZBANG__V1__WATERMARK_RESULT__INIT;
	r.watermark = ls->watermark;
	r.reached = reached;
	r.next_sequence = lease_next_seq(ls->t);
	SRV_REPLY(c, id, WATERMARK, watermark, &r);
}

/* Reads what applying the entry of seq recorded (its OpList), from a
 * snapshot. NULL with *rc set when it cannot; NULL with *rc 0 when the
 * entry has no ops. */
static Whizbang__V1__OpList *read_outcome(struct lsrv *ls, uint64_t seq, int *rc)
{
	struct storage_txn *txn;
	Whizbang__V1__OpList *l = NULL;
	*rc = storage_txn_begin(srv_storage(ls->srv), NULL, STORAGE_RDONLY, &txn);
	if (*rc != 0)
		return NULL;
	struct ledger_entry e;
	*rc = ledger_get(txn, seq, &e);
	if (*rc == 0 && e.ops_len > 0) {
		l = whizbang__v1__op_list__unpack(NULL, e.ops_len, e.ops);
		if (l == NULL)
			*rc = WB_E_CORRUPT;
	}
	storage_txn_abort(txn);
	return l;
}

static void explosion_result(const Whizbang__V1__Explosion *x, Whizbang__V1__OpResult *r)
{
	if (x == NULL)
		return;
	r->matched = x->count;
	r->created = x->created;
	r->affected = x->count + (x->created ? 1u : 0u);
	r->strategy = x->strategy;
	r->plan = x->plan;
	r->examined = x->examined;
	r->micros = x->micros;
}

/* Answers a commit; applied: with what applying its ops did (ACK_APPLIED
 * once the watermark passed it). */
static void answer_commit(struct lsrv *ls, struct conn *c, uint64_t id, uint64_t seq,
                          bool resequenced, uint64_t orig_seq, bool applied)
{
	Whizbang__V1__CommitResult r = WHIZBANG__V1__COMMIT_RESULT__INIT;
	r.sequence = seq;
	r.resequenced = resequenced;
	r.original_sequence = orig_seq;
	r.watermark = ls->watermark;
	Whizbang__V1__OpList *l = NULL;
	Whizbang__V1__OpResult *res = NULL, **ptrs = NULL;
	if (applied && seq <= ls->watermark) {
		int rc;
		l = read_outcome(ls, seq, &rc);
		if (rc != 0) {
			srv_storage_error(c, id, rc, "Commit (reading the outcome)");
			return;
		}
	}
	if (l != NULL && l->error_code != 0) {
		r.apply_error = l->error_code;
		r.apply_error_message = l->error_message;
		r.failed_op = l->failed_op;
	} else if (l != NULL && l->n_ops > 0) {
		res = calloc(l->n_ops, sizeof(*res));
		ptrs = calloc(l->n_ops, sizeof(*ptrs));
		if (res == NULL || ptrs == NULL) {
			free(res);
			free(ptrs);
			whizbang__v1__op_list__free_unpacked(l, NULL);
			srv_error(c, id, WB_RESOURCE_EXHAUSTED,
			          "the commit is applied, but the server is out of memory to "
			          "say how; read the ledger entry %llu",
			          (unsigned long long)seq);
			return;
		}
		for (size_t i = 0; i < l->n_ops; i++) {
			Whizbang__V1__OpResult *o = &res[i];
			const Whizbang__V1__Op *op = l->ops[i];
			whizbang__v1__op_result__init(o);
			if (op->kind_case == WHIZBANG__V1__OP__KIND_UPSERT)
				o->affected = 1;
			else if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE)
				explosion_result(op->update->exploded, o);
			else if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE)
				explosion_result(op->delete_->exploded, o);
			ptrs[i] = o;
		}
		r.n_results = l->n_ops;
		r.results = ptrs;
	}
	SRV_REPLY(c, id, COMMIT, commit, &r);
	free(res);
	free(ptrs);
	if (l != NULL)
		whizbang__v1__op_list__free_unpacked(l, NULL);
}

/* Answers CreateIndex or DropIndex once the watermark passed its entry. */
static void answer_index(struct lsrv *ls, struct conn *c, uint64_t id, uint64_t seq)
{
	int rc;
	Whizbang__V1__OpList *l = read_outcome(ls, seq, &rc);
	if (l == NULL || l->n_ops != 1) {
		srv_storage_error(c, id, rc != 0 ? rc : WB_E_CORRUPT, "index change");
	} else if (l->error_code != 0) {
		srv_error(c, id, (int)l->error_code, "%s", l->error_message);
	} else {
		const Whizbang__V1__Op *op = l->ops[0];
		const Whizbang__V1__IndexSpec *spec =
		        op->kind_case == WHIZBANG__V1__OP__KIND_CREATE_INDEX ? op->create_index
		                                                             : op->drop_index;
		Whizbang__V1__IndexInfo info = WHIZBANG__V1__INDEX_INFO__INIT;
		Whizbang__V1__IndexResult r = WHIZBANG__V1__INDEX_RESULT__INIT;
		struct proj_index_info pi;
		info.type = spec->type;
		info.field = spec->field;
		if (op->kind_case == WHIZBANG__V1__OP__KIND_CREATE_INDEX) {
			struct storage_txn *txn;
			rc = storage_txn_begin(srv_storage(ls->srv), NULL, STORAGE_RDONLY, &txn);
			if (rc == 0) {
				/* A later entry may have dropped it again already. */
				if (proj_index_get(txn, spec->type, spec->field, &pi) == 0) {
					info.entries = pi.entries;
					info.created_sequence = pi.created_seq;
				}
				storage_txn_abort(txn);
			}
		}
		r.index = &info;
		r.sequence = seq;
		SRV_REPLY(c, id, INDEX, index, &r);
	}
	if (l != NULL)
		whizbang__v1__op_list__free_unpacked(l, NULL);
}

static void arm_wait_timer(struct lsrv *ls);

static int add_waiter(struct lsrv *ls, const struct waiter *w)
{
	struct lconn *lc = lconn_of(ls, w->conn);
	if (lc == NULL)
		return WB_E_NOMEM;
	if (ls->nwaiters == ls->capwaiters) {
		size_t cap = ls->capwaiters > 0 ? ls->capwaiters * 2 : 64;
		struct waiter *p = realloc(ls->waiters, cap * sizeof(*p));
		if (p == NULL)
			return WB_E_NOMEM;
		ls->waiters = p;
		ls->capwaiters = cap;
	}
	ls->waiters[ls->nwaiters++] = *w;
	lc->waiting++;
	arm_wait_timer(ls);
	return 0;
}

static void drop_waiter(struct lsrv *ls, size_t i)
{
	struct lconn *lc = conn_slot(ls->waiters[i].conn, ls->slot);
	lc->waiting--;
	ls->waiters[i] = ls->waiters[--ls->nwaiters];
}

/* Answers every waiter the watermark has reached or whose time is up. */
static void check_waiters(struct lsrv *ls)
{
	uint64_t now = mono_ms();
	for (size_t i = 0; i < ls->nwaiters;) {
		struct waiter *w = &ls->waiters[i];
		bool reached = w->seq <= ls->watermark;
		if (!reached && w->deadline_ms > now) {
			i++;
			continue;
		}
		if (w->kind == WAIT_COMMIT)
			answer_commit(ls, w->conn, w->req_id, w->seq, w->resequenced, w->orig_seq,
			              reached);
		else if (w->kind == WAIT_INDEX && reached)
			answer_index(ls, w->conn, w->req_id, w->seq);
		else if (w->kind == WAIT_INDEX)
			srv_error(w->conn, w->req_id, WB_SHUTTING_DOWN,
			          "the index change is durable, but the server is shutting "
			          "down before applying it");
		else
			answer_watermark(ls, w->conn, w->req_id, reached);
		drop_waiter(ls, i);
	}
	arm_wait_timer(ls);
}

static void wait_timer_cb(uv_timer_t *t)
{
	struct lsrv *ls = t->data;
	check_waiters(ls);
	srv_flush(ls->srv);
}

static void arm_wait_timer(struct lsrv *ls)
{
	if (!ls->timers_open)
		return;
	uint64_t next = UINT64_MAX;
	for (size_t i = 0; i < ls->nwaiters; i++)
		if (ls->waiters[i].deadline_ms < next)
			next = ls->waiters[i].deadline_ms;
	if (next == UINT64_MAX) {
		uv_timer_stop(&ls->wait_timer);
		return;
	}
	uint64_t now = mono_ms();
	uv_timer_start(&ls->wait_timer, wait_timer_cb, next > now ? next - now : 0, 0);
}

/* ------------------------------------------------------------ figures */

/* The figures of l's projection, made on first use (NULL when out of
 * memory: the projection then only counts in the totals). */
static struct pstat *pstat_of(struct lsrv *ls, struct lease *l)
{
	void **slot = lease_projection_slot(l);
	if (*slot == NULL) {
		struct pstat *ps = calloc(1, sizeof(*ps));
		if (ps == NULL)
			return NULL;
		ps->next = ls->pstats_list;
		ls->pstats_list = ps;
		*slot = ps;
	}
	return *slot;
}

static void note_expired(struct lsrv *ls, struct pstat *ps)
{
	minute_now(&ls->all)->expired++;
	if (ps != NULL)
		minute_now(&ps->f)->expired++;
}

static void settled_swap(struct lsrv *ls, size_t a, size_t b)
{
	struct settled t = ls->settled[a];
	ls->settled[a] = ls->settled[b];
	ls->settled[b] = t;
}

/* Remembers a final entry above the watermark until it is applied. */
static void settled_push(struct lsrv *ls, const struct settled *e)
{
	if (ls->nsettled == ls->capsettled) {
		size_t cap = ls->capsettled > 0 ? ls->capsettled * 2 : 256;
		struct settled *p = realloc(ls->settled, cap * sizeof(*p));
		if (p == NULL)
			return; /* only the figures lose it */
		ls->settled = p;
		ls->capsettled = cap;
	}
	size_t i = ls->nsettled++;
	ls->settled[i] = *e;
	while (i > 0 && ls->settled[(i - 1) / 2].seq > ls->settled[i].seq) {
		settled_swap(ls, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	ls->all.waiting++;
	if (e->ps != NULL)
		e->ps->f.waiting++;
}

static void note_wait(struct figures *f, uint64_t wait)
{
	f->waiting--;
	f->wait_sum_ms += wait;
	f->wait_count++;
	if (wait > f->wait_max_ms)
		f->wait_max_ms = wait;
	struct minute *m = minute_now(f);
	m->wait_sum_ms += wait;
	m->wait_count++;
}

/* The watermark moved: the entries it passed are applied. Their
 * commit-to-apply wait runs from the moment they were durable. */
static void settled_apply(struct lsrv *ls)
{
	uint64_t now = mono_ms();
	while (ls->nsettled > 0 && ls->settled[0].seq <= ls->watermark) {
		struct settled e = ls->settled[0];
		ls->settled[0] = ls->settled[--ls->nsettled];
		size_t i = 0;
		for (;;) {
			size_t c = 2 * i + 1;
			if (c >= ls->nsettled)
				break;
			if (c + 1 < ls->nsettled && ls->settled[c + 1].seq < ls->settled[c].seq)
				c++;
			if (ls->settled[i].seq <= ls->settled[c].seq)
				break;
			settled_swap(ls, i, c);
			i = c;
		}
		if (e.gap) {
			ls->all.waiting--;
			if (e.ps != NULL)
				e.ps->f.waiting--;
			continue;
		}
		uint64_t wait = now - e.durable_ms;
		note_wait(&ls->all, wait);
		if (e.ps != NULL)
			note_wait(&e.ps->f, wait);
	}
}

/* Health over the last hour, by the seed design's thresholds; writes the
 * reasons into f->health_reason and returns "ok" or "degraded". */
static const char *health(struct figures *f, uint64_t active)
{
	uint64_t now_min = mono_ms() / 60000;
	uint64_t committed = 0, expired = 0, gaps = 0, wsum = 0, wcount = 0;
	for (size_t i = 0; i < HEALTH_MINUTES; i++) {
		const struct minute *m = &f->minutes[i];
		if (m->minute + HEALTH_MINUTES <= now_min || m->minute > now_min)
			continue;
		committed += m->committed;
		expired += m->expired;
		gaps += m->gaps;
		wsum += m->wait_sum_ms;
		wcount += m->wait_count;
	}
	char *r = f->health_reason;
	size_t cap = sizeof(f->health_reason);
	size_t o = 0;
	r[0] = '\0';
	if (expired > 0 && expired * 20 > committed + expired && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%sexpiry rate %.1f%% > 5%%", o ? "; " : "",
		                      100.0 * (double)expired / (double)(committed + expired));
	if (wcount > 0 && wsum > 5000 * wcount && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%smean apply wait %.0f ms > 5000 ms",
		                      o ? "; " : "", (double)wsum / (double)wcount);
	if (active > 1000 && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%s%llu active leases > 1000", o ? "; " : "",
		                      (unsigned long long)active);
	if (gaps > 100 && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%s%llu gaps in the last hour > 100",
		                      o ? "; " : "", (unsigned long long)gaps);
	return o > 0 ? "degraded" : "ok";
}

/* ------------------------------------------------------------ final entries */

static void arm_expiry_timer(struct lsrv *ls);

struct final_args {
	enum ledger_kind kind;
	enum ledger_reason reason;
	struct conn *conn; /* who is answered; NULL for none */
	Request *req;      /* kept until the answer */
	const uint8_t *ops;
	size_t ops_len;
	uint64_t orig_seq;
	uint64_t orig_expiry_us;
	bool from_staged; /* expiry: recovered when staged work is stored */
};

/* Hands the final entry of l to the writer. On failure (no memory) req is
 * not kept. */
static int submit_final(struct lsrv *ls, const struct lease *l, const struct final_args *a)
{
	struct lop *op = lop_new(ls, LOP_FINAL, a->conn, a->req);
	if (op == NULL)
		return WB_E_NOMEM;
	if (a->ops_len > 0) {
		op->ops = malloc(a->ops_len);
		if (op->ops == NULL) {
			op->req = NULL;
			lop_free(op);
			return WB_E_NOMEM;
		}
		memcpy(op->ops, a->ops, a->ops_len);
		op->ops_len = a->ops_len;
	}
	const char *proj = lease_projection_name(l);
	size_t plen = strlen(proj);
	size_t olen = strlen(l->operation_id);
	memcpy(op->projection, proj, plen + 1);
	memcpy(op->operation_id, l->operation_id, olen + 1);
	op->seq = l->seq;
	op->token = l->token;
	op->from_staged = a->from_staged;
	op->ps = pstat_of(ls, (struct lease *)l);
	op->entry = (struct ledger_entry){
	        .seq = l->seq,
	        .kind = a->kind,
	        .reason = a->reason,
	        .source_position = l->source_position,
	        .original_expiry_us = a->orig_expiry_us,
	        .original_seq = a->orig_seq,
	        .token = l->token,
	        .projection = op->projection,
	        .projection_len = plen,
	        .operation_id = op->operation_id,
	        .operation_id_len = olen,
	        .ops = op->ops,
	        .ops_len = op->ops_len,
	};
	op->base.base.size_hint = 4096 + a->ops_len;
	srv_submit(ls->srv, &op->base);
	return 0;
}

/* Logs a change of the cascade level (adaptive durations doubled). */
static void note_cascade(struct lsrv *ls)
{
	struct lease_counts lc;
	lease_get_counts(ls->t, &lc);
	if (lc.cascade_level == ls->cascade_level)
		return;
	srv_log(lc.cascade_level > ls->cascade_level ? WB_LOG_WARN : WB_LOG_INFO, "lease_cascade",
	        "level=%llu previous=%llu expired_total=%llu", (unsigned long long)lc.cascade_level,
	        (unsigned long long)ls->cascade_level,
	        (unsigned long long)(lc.outcomes[LEASE_EXPIRED] + lc.outcomes[LEASE_RECOVERED]));
	ls->cascade_level = lc.cascade_level;
}

/* Finishes due leases in ascending sequence order: each becomes a gap
 * (expired), or a recovered entry when its staged work is stored. */
static void run_expiry(struct lsrv *ls)
{
	struct lease *due[EXPIRY_BATCH];
	uint64_t now = mono_ms();
	size_t n;
	do {
		n = lease_collect_expired(ls->t, now, due, EXPIRY_BATCH);
		for (size_t i = 0; i < n; i++) {
			struct lease *l = due[i];
			struct final_args a = {
			        .kind = LEDGER_GAP,
			        .reason = LEDGER_GAP_EXPIRED,
			        .orig_expiry_us = wall_ms_at(l->expires_ms, now) * 1000,
			        .from_staged = true,
			};
			note_expired(ls, pstat_of(ls, l));
			if (submit_final(ls, l, &a) != 0)
				srv_log(WB_LOG_ERROR, "lease_expiry_failed",
				        "seq=%llu reason=no_memory", (unsigned long long)l->seq);
			else
				srv_log(WB_LOG_DEBUG, "lease_expired", "seq=%llu staged=%d",
				        (unsigned long long)l->seq, (int)l->staged);
		}
	} while (n == EXPIRY_BATCH);
	note_cascade(ls);
	arm_expiry_timer(ls);
}

static void expiry_timer_cb(uv_timer_t *t)
{
	struct lsrv *ls = t->data;
	run_expiry(ls);
}

static void arm_expiry_timer(struct lsrv *ls)
{
	if (!ls->timers_open)
		return;
	uint64_t next = lease_next_expiry(ls->t);
	if (next == UINT64_MAX) {
		uv_timer_stop(&ls->expiry_timer);
		return;
	}
	uint64_t now = mono_ms();
	uv_timer_start(&ls->expiry_timer, expiry_timer_cb, next > now ? next - now : 0, 0);
}

/* ------------------------------------------------------------ reservations */

static void grant_and_answer(struct lsrv *ls, struct conn *c, Request *req);
static void reseq_and_commit(struct lsrv *ls, struct pend *p);
static void index_and_commit(struct lsrv *ls, struct pend *p);
static void ensure_reservation(struct lsrv *ls, uint32_t count);

static uint32_t pend_count(const struct pend *p)
{
	return p->kind == PEND_LEASE ? p->req->lease->count : 1;
}

/* Serves queued requests in order while the ceiling allows. */
static void drain_pending(struct lsrv *ls)
{
	while (ls->pend_head != NULL) {
		struct pend *p = ls->pend_head;
		uint32_t count = pend_count(p);
		if (lease_reservation_needed(ls->t, count) != 0) {
			ensure_reservation(ls, count);
			return;
		}
		ls->pend_head = p->next;
		if (ls->pend_head == NULL)
			ls->pend_tail = NULL;
		if (p->kind == PEND_LEASE) {
			grant_and_answer(ls, p->conn, p->req);
			whizbang__v1__request__free_unpacked(p->req, NULL);
			free(p);
		} else if (p->kind == PEND_RESEQ) {
			reseq_and_commit(ls, p);
		} else {
			index_and_commit(ls, p);
		}
	}
}

/* The ceiling could not be raised: answer the queue rather than leave it
 * waiting. */
static void fail_pending(struct lsrv *ls, int rc)
{
	while (ls->pend_head != NULL) {
		struct pend *p = ls->pend_head;
		ls->pend_head = p->next;
		if (!conn_is_closing(p->conn))
			srv_storage_error(p->conn, p->req->id, rc, "Lease");
		whizbang__v1__request__free_unpacked(p->req, NULL);
		free(p);
	}
	ls->pend_tail = NULL;
}

static void ensure_reservation(struct lsrv *ls, uint32_t count)
{
	if (ls->reserving != 0)
		return;
	uint64_t ceiling = lease_reservation_needed(ls->t, count);
	if (ceiling == 0)
		return;
	struct lop *op = lop_new(ls, LOP_RESERVE, NULL, NULL);
	if (op == NULL) {
		srv_log(WB_LOG_ERROR, "reservation_failed", "reason=no_memory");
		fail_pending(ls, WB_E_NOMEM);
		return;
	}
	op->ceiling = ceiling;
	ls->reserving = ceiling;
	srv_submit(ls->srv, &op->base);
}

static void enqueue(struct lsrv *ls, struct pend *p)
{
	p->next = NULL;
	if (ls->pend_tail != NULL)
		ls->pend_tail->next = p;
	else
		ls->pend_head = p;
	ls->pend_tail = p;
	/* Served now when the ceiling allows, else once it is raised. */
	if (ls->reserving == 0)
		drain_pending(ls);
}

/* ------------------------------------------------------------ writer results */

/* A final entry is durable: count it, and follow it until applied. */
static void record_final(struct lsrv *ls, const struct lop *op)
{
	bool gap = op->entry.kind == LEDGER_GAP && !op->recovered;
	struct pstat *ps = op->ps;
	if (gap) {
		ls->all.gaps++;
		minute_now(&ls->all)->gaps++;
		if (ps != NULL) {
			ps->f.gaps++;
			minute_now(&ps->f)->gaps++;
		}
	} else {
		minute_now(&ls->all)->committed++;
		if (ps != NULL)
			minute_now(&ps->f)->committed++;
	}
	struct settled e = {op->seq, mono_ms(), ps, gap};
	settled_push(ls, &e);
	ls->sums.entries += op->sums.entries;
	ls->sums.failures += op->sums.failures;
	ls->sums.explosions += op->sums.explosions;
	ls->sums.exploded_ids += op->sums.exploded_ids;
	ls->sums.explosion_us += op->sums.explosion_us;
	if (op->sums.failures > 0)
		srv_log(WB_LOG_INFO, "apply_failed", "entries=%llu watermark=%llu",
		        (unsigned long long)op->sums.failures, (unsigned long long)op->watermark);
	if (op->watermark > ls->watermark)
		ls->watermark = op->watermark;
	settled_apply(ls);
}

static void lop_done(struct srv *srv, struct srv_op *base)
{
	struct lop *op = (struct lop *)base;
	struct lsrv *ls = op->ls;
	struct conn *c = base->conn;
	bool answer = c != NULL && !conn_is_closing(c) && op->req != NULL;
	int rc = base->base.status;

	switch (op->kind) {
	case LOP_RESERVE:
		ls->reserving = 0;
		if (rc == 0) {
			lease_set_ceiling(ls->t, op->ceiling);
		} else {
			srv_log(WB_LOG_ERROR, "reservation_failed", "ceiling=%llu error=%s",
			        (unsigned long long)op->ceiling, wb_error_name(rc));
			fail_pending(ls, rc);
		}
		lop_free(op);
		drain_pending(ls);
		return;
	case LOP_STAGE:
		if (answer && rc == 0)
			SRV_REPLY(c, base->req_id, STAGE, stage,
			          &(Whizbang__V1__StageResult)WHIZBANG__V1__STAGE_RESULT__INIT);
		else if (answer)
			srv_storage_error(c, base->req_id, rc, "Stage");
		lop_free(op);
		return;
	case LOP_FINAL:
		break;
	}

	if (rc != 0) {
		/* Not durable. The lease stays FINISHING and holds the watermark
		 * until the entry is written: retry, then leave it to restart
		 * recovery. */
		srv_log(op->retries < FINAL_RETRIES ? WB_LOG_WARN : WB_LOG_ERROR,
		        "ledger_write_failed", "seq=%llu error=%s retry=%d",
		        (unsigned long long)op->seq, wb_error_name(rc), op->retries);
		if (op->retries < FINAL_RETRIES && !srv_shutting_down(srv)) {
			op->retries++;
			srv_submit(srv, &op->base);
			return;
		}
		if (answer)
			srv_storage_error(c, base->req_id, rc, "Commit");
		lop_free(op);
		return;
	}
	lease_settle(ls->t, op->seq);
	record_final(ls, op);

	if (answer) {
		const Request *req = op->req;
		if (req->body_case == WHIZBANG__V1__REQUEST__BODY_RELEASE) {
			SRV_REPLY(c, base->req_id, RELEASE, release,
			          &(Whizbang__V1__ReleaseResult)WHIZBANG__V1__RELEASE_RESULT__INIT);
		} else {
			bool reseq = op->entry.reason == LEDGER_RECOVERED_RESEQUENCED;
			uint64_t orig = op->entry.original_seq;
			bool index = req->body_case != WHIZBANG__V1__REQUEST__BODY_COMMIT;
			bool applied = index || req->commit->ack == WHIZBANG__V1__ACK__ACK_APPLIED;
			if (applied && ls->watermark < op->seq && srv_shutting_down(srv)) {
				srv_error(c, base->req_id, WB_SHUTTING_DOWN,
				          "the change is durable, but the server is shutting down "
				          "before the watermark reached it");
			} else if (applied && ls->watermark < op->seq) {
				struct waiter w = {c,
				                   base->req_id,
				                   op->seq,
				                   UINT64_MAX,
				                   index ? WAIT_INDEX : WAIT_COMMIT,
				                   reseq,
				                   orig};
				if (add_waiter(ls, &w) != 0)
					srv_error(c, base->req_id, WB_RESOURCE_EXHAUSTED,
					          "the change is durable, but the server is out "
					          "of memory to wait for the watermark");
			} else if (index) {
				answer_index(ls, c, base->req_id, op->seq);
			} else {
				answer_commit(ls, c, base->req_id, op->seq, reseq, orig, applied);
			}
		}
	}
	lop_free(op);
	check_waiters(ls);
}

/* ------------------------------------------------------------ requests */

static bool check_lease_rc(struct conn *c, uint64_t id, int rc, uint64_t seq)
{
	switch (rc) {
	case 0:
		return true;
	case WB_LEASE_TOKEN_MISMATCH:
		srv_error(c, id, rc,
		          "the token does not match sequence %llu's lease: another worker "
		          "holds it, or the token was mistyped",
		          (unsigned long long)seq);
		return false;
	case WB_LEASE_EXPIRED:
		srv_error(c, id, rc,
		          "the lease of sequence %llu has expired: the sequence becomes a gap, "
		          "or holds the lease's staged work if it had any; lease a new "
		          "sequence, or commit with on_expired=RESEQUENCE",
		          (unsigned long long)seq);
		return false;
	default:
		srv_error(c, id, WB_LEASE_NOT_FOUND,
		          "sequence %llu has no open lease: it was never handed out, or it is "
		          "already committed or released",
		          (unsigned long long)seq);
		return false;
	}
}

/* The ACTIVE lease of seq with token, or NULL after answering why not.
 * Leases that are due are finished first, in order. */
static struct lease *open_lease(struct lsrv *ls, struct conn *c, uint64_t id, uint64_t seq,
                                uint64_t token, uint64_t now)
{
	struct lease *l = NULL;
	int rc = lease_get(ls->t, seq, token, now, &l);
	if (rc == WB_LEASE_EXPIRED)
		run_expiry(ls);
	return check_lease_rc(c, id, rc, seq) ? l : NULL;
}

static void grant_and_answer(struct lsrv *ls, struct conn *c, Request *req)
{
	const Whizbang__V1__Lease *a = req->lease;
	struct lease *got[LEASE_COUNT_MAX];
	char why[256];
	if (conn_is_closing(c))
		return;
	struct lconn *lc = lconn_of(ls, c);
	if (lc == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	struct lease_grant_args args = {
	        .projection = a->projection,
	        .duration_ms = a->duration_ms,
	        .count = a->count,
	        .operation_id = a->operation_id,
	        .source_position = a->source_position,
	        .on_disconnect =
	                a->on_disconnect == WHIZBANG__V1__ON_DISCONNECT__ON_DISCONNECT_RELEASE
	                        ? LEASE_RELEASE
	                        : LEASE_KEEP,
	        .owner = &lc->owner,
	};
	uint64_t now = mono_ms();
	int rc = lease_grant(ls->t, now, &args, got, why, sizeof(why));
	if (rc != 0) {
		srv_error(c, req->id, rc == WB_E_NOMEM ? WB_RESOURCE_EXHAUSTED : rc, "%s", why);
		return;
	}
	Whizbang__V1__LeaseGrant grants[LEASE_COUNT_MAX];
	Whizbang__V1__LeaseGrant *ptrs[LEASE_COUNT_MAX];
	for (uint32_t i = 0; i < a->count; i++) {
		whizbang__v1__lease_grant__init(&grants[i]);
		grants[i].sequence = got[i]->seq;
		grants[i].token = got[i]->token;
		grants[i].expires_at_ms = wall_ms_at(got[i]->expires_ms, now);
		grants[i].duration_ms = got[i]->expires_ms - now;
		ptrs[i] = &grants[i];
	}
	Whizbang__V1__LeaseResult r = WHIZBANG__V1__LEASE_RESULT__INIT;
	r.n_leases = a->count;
	r.leases = ptrs;
	SRV_REPLY(c, req->id, LEASE, lease, &r);
	arm_expiry_timer(ls);
}

static void handle_lease(struct lsrv *ls, struct conn *c, Request *req, bool *kept)
{
	const Whizbang__V1__Lease *a = req->lease;
	if (a->count == 0 || a->count > srv_config(ls->srv)->max_lease_count) {
		srv_error(c, req->id, WB_BAD_REQUEST, "count is %u: ask for 1 to %llu sequences",
		          a->count, (unsigned long long)srv_config(ls->srv)->max_lease_count);
		return;
	}
	if (ls->pend_head == NULL && lease_reservation_needed(ls->t, a->count) == 0) {
		grant_and_answer(ls, c, req);
		return;
	}
	struct pend *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	p->kind = PEND_LEASE;
	p->conn = c;
	p->req = req;
	*kept = true;
	enqueue(ls, p);
}

/* Packs the ops of a request as the OpList bytes the ledger stores. */
static uint8_t *pack_ops(Whizbang__V1__Op **ops, size_t n, size_t *len)
{
	Whizbang__V1__OpList list = WHIZBANG__V1__OP_LIST__INIT;
	list.n_ops = n;
	list.ops = ops;
	*len = whizbang__v1__op_list__get_packed_size(&list);
	uint8_t *buf = malloc(*len > 0 ? *len : 1);
	if (buf != NULL)
		whizbang__v1__op_list__pack(&list, buf);
	return buf;
}

/* Leases one new sequence (args) for the queued request p and commits
 * ops (packed; NULL when packing ran out of memory) there as a final entry
 * of kind and reason; the op answers p's client. On a failure the client
 * gets the error (what names the call). Frees p, and p's request unless an
 * op keeps it. */
static void commit_at_new_sequence(struct lsrv *ls, struct pend *p,
                                   const struct lease_grant_args *args, enum ledger_kind kind,
                                   enum ledger_reason reason, uint8_t *ops, size_t len,
                                   const char *what)
{
	struct conn *c = p->conn;
	Request *req = p->req;
	struct lease *got[1];
	char why[256] = "the server is out of memory";
	int rc = ops == NULL ? WB_E_NOMEM
	                     : lease_grant(ls->t, mono_ms(), args, got, why, sizeof(why));
	if (rc != 0) {
		if (!conn_is_closing(c))
			srv_error(c, req->id, rc == WB_E_NOMEM ? WB_RESOURCE_EXHAUSTED : rc,
			          "%s: %s", what, why);
		goto done;
	}
	lease_finish(ls->t, got[0], LEASE_COMMITTED, mono_ms());
	struct final_args a = {
	        .kind = kind,
	        .reason = reason,
	        .conn = conn_is_closing(c) ? NULL : c,
	        .req = req,
	        .ops = ops,
	        .ops_len = len,
	        .orig_seq = p->orig_seq,
	        .orig_expiry_us = p->orig_expiry_us,
	};
	rc = submit_final(ls, got[0], &a);
	if (rc == 0) {
		free(ops);
		free(p);
		return; /* the op keeps req */
	}
	/* The new sequence is handed out: it must still end final. */
	struct final_args gap = {.kind = LEDGER_GAP, .reason = LEDGER_GAP_RELEASED};
	submit_final(ls, got[0], &gap);
	if (!conn_is_closing(c))
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
done:
	free(ops);
	whizbang__v1__request__free_unpacked(req, NULL);
	free(p);
}

static void reseq_and_commit(struct lsrv *ls, struct pend *p)
{
	struct lease_grant_args args = {
	        .projection = p->projection,
	        .count = 1,
	        .operation_id = p->operation_id,
	        .source_position = p->source_position,
	};
	size_t len;
	uint8_t *ops = pack_ops(p->req->commit->ops, p->req->commit->n_ops, &len);
	commit_at_new_sequence(ls, p, &args, LEDGER_RECOVERED, LEDGER_RECOVERED_RESEQUENCED, ops,
	                       len, "resequencing failed");
}

/* A commit whose lease has expired, with on_expired = RESEQUENCE: queue a
 * new sequence for it, remembering the expired lease. */
static void resequence(struct lsrv *ls, struct conn *c, Request *req, const char *projection,
                       const char *operation_id, uint64_t source_position, uint64_t orig_expiry_us,
                       bool *kept)
{
	struct pend *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	p->kind = PEND_RESEQ;
	p->conn = c;
	p->req = req;
	snprintf(p->projection, sizeof(p->projection), "%s", projection);
	snprintf(p->operation_id, sizeof(p->operation_id), "%s", operation_id);
	p->source_position = source_position;
	p->orig_seq = req->commit->sequence;
	p->orig_expiry_us = orig_expiry_us;
	*kept = true;
	enqueue(ls, p);
}

/* CreateIndex and DropIndex are ledger operations of their own, so that
 * replay rebuilds the indexes: a sequence of projection "$index" is leased
 * and committed at once with the one op; the answer goes out once the
 * watermark has passed it (answer_index()). */
static void index_and_commit(struct lsrv *ls, struct pend *p)
{
	Request *req = p->req;
	bool create = req->body_case == WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX;
	Whizbang__V1__IndexSpec spec = WHIZBANG__V1__INDEX_SPEC__INIT;
	spec.type = create ? req->create_index->type : req->drop_index->type;
	spec.field = create ? req->create_index->field : req->drop_index->field;
	Whizbang__V1__Op op = WHIZBANG__V1__OP__INIT, *ops[1] = {&op};
	op.kind_case =
	        create ? WHIZBANG__V1__OP__KIND_CREATE_INDEX : WHIZBANG__V1__OP__KIND_DROP_INDEX;
	if (create)
		op.create_index = &spec;
	else
		op.drop_index = &spec;
	size_t len;
	uint8_t *packed = pack_ops(ops, 1, &len);
	struct lease_grant_args args = {.projection = "$index", .count = 1};
	commit_at_new_sequence(ls, p, &args, LEDGER_COMMITTED, LEDGER_REASON_NONE, packed, len,
	                       "no sequence for the index change");
}

static void handle_index(struct lsrv *ls, struct conn *c, Request *req, bool *kept)
{
	bool create = req->body_case == WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX;
	const char *type = create ? req->create_index->type : req->drop_index->type;
	const char *field = create ? req->create_index->field : req->drop_index->field;
	size_t tl = strlen(type), fl = strlen(field);
	if (tl == 0 || tl > PROJ_NAME_MAX || fl == 0 || fl > PROJ_NAME_MAX) {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "%s: type and field must be 1..255 bytes each",
		          create ? "CreateIndex" : "DropIndex");
		return;
	}
	struct pend *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	p->kind = PEND_INDEX;
	p->conn = c;
	p->req = req;
	*kept = true;
	enqueue(ls, p);
}

/* A commit of a sequence the table no longer holds: the ledger says what
 * became of it. Restart gaps carry no token (leases live in memory), so
 * they cannot check it. */
static void handle_finished(struct lsrv *ls, struct conn *c, Request *req, bool *kept)
{
	const Whizbang__V1__Commit *a = req->commit;
	struct storage_txn *txn;
	struct ledger_entry e;
	int rc = storage_txn_begin(srv_storage(ls->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_storage_error(c, req->id, rc, "Commit");
		return;
	}
	rc = ledger_get(txn, a->sequence, &e);
	bool expired =
	        rc == 0 && (e.reason == LEDGER_GAP_EXPIRED || e.reason == LEDGER_GAP_RESTART ||
	                    e.reason == LEDGER_RECOVERED_STAGED);
	/* Staged work that was recovered is the lease's result already:
	 * resequencing would commit the work a second time. */
	bool reseq = a->on_expired == WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_RESEQUENCE &&
	             !(rc == 0 && e.reason == LEDGER_RECOVERED_STAGED);
	/* A restart gap knows neither the lease's projection nor its token
	 * (leases live in memory): it cannot be resequenced faithfully. */
	bool restart = rc == 0 && e.reason == LEDGER_GAP_RESTART;
	if (rc != 0 && rc != WB_E_NOTFOUND) {
		srv_storage_error(c, req->id, rc, "Commit");
	} else if (!expired) {
		check_lease_rc(c, req->id, WB_LEASE_NOT_FOUND, a->sequence);
	} else if (e.token != 0 && e.token != a->token) {
		check_lease_rc(c, req->id, WB_LEASE_TOKEN_MISMATCH, a->sequence);
	} else if (restart) {
		srv_error(c, req->id, WB_LEASE_EXPIRED,
		          "sequence %llu was lost to a server restart and is now a gap "
		          "(restart); it cannot be resequenced: lease a new sequence under "
		          "your projection and commit there",
		          (unsigned long long)a->sequence);
	} else if (reseq) {
		char proj[LEASE_NAME_MAX + 1];
		char opid[LEASE_NAME_MAX + 1];
		snprintf(proj, sizeof(proj), "%.*s", (int)e.projection_len, e.projection);
		snprintf(opid, sizeof(opid), "%.*s", (int)e.operation_id_len, e.operation_id);
		uint64_t src = e.source_position;
		uint64_t expiry = e.original_expiry_us;
		storage_txn_abort(txn);
		resequence(ls, c, req, proj, opid, src, expiry, kept);
		return;
	} else {
		srv_error(c, req->id, WB_LEASE_EXPIRED,
		          "the lease of sequence %llu expired; the sequence is now %s: lease a "
		          "new sequence, or commit with on_expired=RESEQUENCE",
		          (unsigned long long)a->sequence,
		          e.reason == LEDGER_GAP_RESTART   ? "a gap (restart)"
		          : e.reason == LEDGER_GAP_EXPIRED ? "a gap (expired)"
		                                           : "recovered from its staged work");
	}
	storage_txn_abort(txn);
}

static void handle_commit(struct lsrv *ls, struct conn *c, Request *req, bool *kept)
{
	const Whizbang__V1__Commit *a = req->commit;
	struct lease *l;
	uint64_t now = mono_ms();
	int rc = lease_get(ls->t, a->sequence, a->token, now, &l);
	if (rc == WB_LEASE_EXPIRED) {
		/* Finish what is due first, so gaps keep their order. */
		run_expiry(ls);
		l = lease_lookup(ls->t, a->sequence);
		/* A staged lease is recovered at its own sequence: nothing to
		 * resequence. */
		if (l != NULL && !l->staged &&
		    a->on_expired == WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_RESEQUENCE) {
			resequence(ls, c, req, lease_projection_name(l), l->operation_id,
			           l->source_position, wall_ms_at(l->expires_ms, now) * 1000, kept);
			return;
		}
	}
	if (rc == WB_LEASE_NOT_FOUND && a->sequence != 0 && a->sequence < lease_next_seq(ls->t) &&
	    lease_lookup(ls->t, a->sequence) == NULL) {
		handle_finished(ls, c, req, kept);
		return;
	}
	if (!check_lease_rc(c, req->id, rc, a->sequence))
		return;
	size_t len;
	uint8_t *ops = pack_ops(a->ops, a->n_ops, &len);
	if (ops == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	lease_finish(ls->t, l, LEASE_COMMITTED, now);
	note_cascade(ls);
	struct final_args fa = {
	        .kind = LEDGER_COMMITTED,
	        .reason = LEDGER_REASON_NONE,
	        .conn = c,
	        .req = req,
	        .ops = ops,
	        .ops_len = len,
	};
	rc = submit_final(ls, l, &fa);
	free(ops);
	if (rc != 0) {
		struct final_args gap = {.kind = LEDGER_GAP, .reason = LEDGER_GAP_RELEASED};
		submit_final(ls, l, &gap);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	*kept = true;
	arm_expiry_timer(ls);
}

static void handle_release(struct lsrv *ls, struct conn *c, Request *req, bool *kept)
{
	const Whizbang__V1__Release *a = req->release;
	uint64_t now = mono_ms();
	struct lease *l = open_lease(ls, c, req->id, a->sequence, a->token, now);
	if (l == NULL)
		return;
	lease_finish(ls->t, l, LEASE_RELEASED, now);
	struct final_args fa = {
	        .kind = LEDGER_GAP,
	        .reason = LEDGER_GAP_RELEASED,
	        .conn = c,
	        .req = req,
	};
	if (submit_final(ls, l, &fa) != 0) {
		struct final_args gap = {.kind = LEDGER_GAP, .reason = LEDGER_GAP_RELEASED};
		submit_final(ls, l, &gap);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	*kept = true;
	arm_expiry_timer(ls);
}

static void handle_extend(struct lsrv *ls, struct conn *c, Request *req)
{
	const Whizbang__V1__Extend *a = req->extend;
	char why[256];
	uint64_t now = mono_ms();
	struct lease *l = open_lease(ls, c, req->id, a->sequence, a->token, now);
	if (l == NULL)
		return;
	int rc = lease_extend(ls->t, l, a->duration_ms, now, why, sizeof(why));
	if (rc != 0) {
		srv_error(c, req->id, rc, "%s", why);
		return;
	}
	Whizbang__V1__ExtendResult r = WHIZBANG__V1__EXTEND_RESULT__INIT;
	r.expires_at_ms = wall_ms_at(l->expires_ms, now);
	r.duration_ms = l->expires_ms - now;
	SRV_REPLY(c, req->id, EXTEND, extend, &r);
	arm_expiry_timer(ls);
}

static void handle_stage(struct lsrv *ls, struct conn *c, Request *req, bool *kept)
{
	const Whizbang__V1__Stage *a = req->stage;
	struct lease *l = open_lease(ls, c, req->id, a->sequence, a->token, mono_ms());
	if (l == NULL)
		return;
	struct lop *op = lop_new(ls, LOP_STAGE, c, req);
	if (op == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	op->ops = pack_ops(a->ops, a->n_ops, &op->ops_len);
	if (op->ops == NULL) {
		op->req = NULL;
		lop_free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	op->seq = l->seq;
	op->token = l->token;
	op->base.base.size_hint = 4096 + op->ops_len;
	/* Marked now: if the lease expires before the write lands, the
	 * expiry's entry is written after it and recovers the staged work. */
	lease_stage(ls->t, l);
	srv_submit(ls->srv, &op->base);
	*kept = true;
}

/* One page of ReadLedger, up to the watermark. Each entry's unpacked ops
 * are kept in lists until the answer is packed. */
struct ledger_page {
	struct page page;
	Whizbang__V1__OpList **lists;
	size_t nlists;
	uint64_t watermark;
	bool corrupt;
};

static bool ledger_page_cb(const struct ledger_entry *e, void *arg)
{
	struct ledger_page *lp = arg;
	struct page *p = &lp->page;
	size_t est = pb_ledger_size(e);
	if (e->seq > lp->watermark || !page_fits(p, est))
		return false;
	Whizbang__V1__OpList **lists = realloc(lp->lists, (lp->nlists + 1) * sizeof(*lists));
	Whizbang__V1__LedgerEntry *le = arena_alloc(&p->a, sizeof(*le));
	struct pb_ledger_names *names = arena_alloc(&p->a, sizeof(*names));
	if (lists != NULL)
		lp->lists = lists;
	if (lists == NULL || le == NULL || names == NULL) {
		p->nomem = true;
		return false;
	}
	Whizbang__V1__OpList *list;
	if (pb_ledger_view(e, names, le, &list) != 0) {
		lp->corrupt = true;
		return false;
	}
	lp->lists[lp->nlists++] = list;
	return page_add(p, le, est);
}

static bool read_ledger(void *state, struct conn *c, Request *req)
{
	struct lsrv *ls = state;
	const Whizbang__V1__ReadLedger *a = req->read_ledger;
	uint32_t max = srv_clamp_count(ls->srv, a->max_count);
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(ls->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_storage_error(c, req->id, rc, "ReadLedger");
		return false;
	}
	struct ledger_page lp = {.page = {.budget = srv_page_budget(ls->srv)},
	                         .watermark = ls->watermark};
	uint64_t next;
	rc = ledger_read(txn, a->from_sequence, max, ledger_page_cb, &lp, &next);
	storage_txn_abort(txn); /* the entries hold copies: unpacked lists, names */
	if (rc != 0 || lp.corrupt) {
		srv_storage_error(c, req->id, rc != 0 ? rc : WB_E_CORRUPT, "ReadLedger");
	} else if (lp.page.nomem) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "the server is out of memory; retry with a smaller max_count");
	} else {
		Whizbang__V1__ReadLedgerResult r = WHIZBANG__V1__READ_LEDGER_RESULT__INIT;
		r.n_entries = lp.page.n;
		r.entries = (Whizbang__V1__LedgerEntry **)lp.page.items;
		if (a->from_sequence > next)
			next = a->from_sequence;
		r.next_sequence = next;
		r.watermark = ls->watermark;
		r.end = next > ls->watermark;
		SRV_REPLY(c, req->id, READ_LEDGER, read_ledger, &r);
	}
	for (size_t i = 0; i < lp.nlists; i++)
		if (lp.lists[i] != NULL)
			whizbang__v1__op_list__free_unpacked(lp.lists[i], NULL);
	free(lp.lists);
	page_free(&lp.page);
	return false;
}

static bool wait_for_watermark(void *state, struct conn *c, Request *req)
{
	struct lsrv *ls = state;
	const Whizbang__V1__WaitForWatermark *a = req->wait_for_watermark;
	if (a->sequence <= ls->watermark || a->timeout_ms == 0) {
		answer_watermark(ls, c, req->id, a->sequence <= ls->watermark);
		return false;
	}
	const struct lconn *lc = conn_slot(c, ls->slot);
	size_t waiting = lc != NULL ? lc->waiting : 0;
	if (waiting >= srv_config(ls->srv)->max_inflight) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "this connection already has %zu requests waiting (--max-inflight)",
		          waiting);
		return false;
	}
	uint64_t timeout = a->timeout_ms > 3600000u ? 3600000u : a->timeout_ms;
	struct waiter w = {c, req->id, a->sequence, mono_ms() + timeout, WAIT_WATERMARK, false, 0};
	if (add_waiter(ls, &w) != 0)
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	return false;
}

/* Ops are checked before anything is leased or written: a bad clause or
 * value is the client's to fix, answered at once with the op's position. */
static bool check_ops(struct conn *c, uint64_t id, Whizbang__V1__Op **ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char msg[256];
		int rc = proj_check_op(ops[i], msg, sizeof(msg));
		if (rc != 0) {
			srv_error(c, id, rc, "op %zu: %s", i + 1, msg);
			return false;
		}
	}
	return true;
}

static bool lease(void *state, struct conn *c, Request *req)
{
	bool kept = false;
	handle_lease(state, c, req, &kept);
	return kept;
}

static bool extend(void *state, struct conn *c, Request *req)
{
	handle_extend(state, c, req);
	return false;
}

static bool release(void *state, struct conn *c, Request *req)
{
	bool kept = false;
	handle_release(state, c, req, &kept);
	return kept;
}

static bool stage(void *state, struct conn *c, Request *req)
{
	bool kept = false;
	if (check_ops(c, req->id, req->stage->ops, req->stage->n_ops))
		handle_stage(state, c, req, &kept);
	return kept;
}

static bool commit(void *state, struct conn *c, Request *req)
{
	bool kept = false;
	if (check_ops(c, req->id, req->commit->ops, req->commit->n_ops))
		handle_commit(state, c, req, &kept);
	return kept;
}

static bool get_watermark(void *state, struct conn *c, Request *req)
{
	answer_watermark(state, c, req->id, true);
	return false;
}

static bool index_change(void *state, struct conn *c, Request *req)
{
	bool kept = false;
	handle_index(state, c, req, &kept);
	return kept;
}

static void leases_conn_closed(void *state, struct conn *c)
{
	struct lsrv *ls = state;
	struct lconn *lc = conn_slot(c, ls->slot);
	struct lease *rel[EXPIRY_BATCH];
	uint64_t now = mono_ms();
	size_t n;
	if (lc == NULL)
		return; /* it never leased nor waited */
	do {
		n = lease_owner_detach(ls->t, &lc->owner, rel, EXPIRY_BATCH);
		for (size_t i = 0; i < n; i++) {
			lease_finish(ls->t, rel[i], LEASE_RELEASED, now);
			struct final_args fa = {.kind = LEDGER_GAP, .reason = LEDGER_GAP_RELEASED};
			if (submit_final(ls, rel[i], &fa) != 0)
				srv_log(WB_LOG_ERROR, "release_failed", "seq=%llu reason=no_memory",
				        (unsigned long long)rel[i]->seq);
		}
	} while (n == EXPIRY_BATCH);
	for (size_t i = 0; i < ls->nwaiters;) {
		if (ls->waiters[i].conn == c)
			drop_waiter(ls, i);
		else
			i++;
	}
	struct pend **pp = &ls->pend_head;
	ls->pend_tail = NULL;
	while (*pp != NULL) {
		struct pend *p = *pp;
		if (p->conn == c) {
			*pp = p->next;
			whizbang__v1__request__free_unpacked(p->req, NULL);
			free(p);
		} else {
			ls->pend_tail = p;
			pp = &p->next;
		}
	}
	conn_set_slot(c, ls->slot, NULL);
	free(lc);
	arm_expiry_timer(ls);
	arm_wait_timer(ls);
}

/* ------------------------------------------------------------ start, stop */

struct init_apply_arg {
	const struct proj_config *pcfg;
	struct apply_sums sums;
};

static int init_apply(struct storage_txn *txn, const struct ledger_entry *e, void *arg)
{
	struct init_apply_arg *a = arg;
	return apply_entry(txn, e, a->pcfg, &a->sums);
}

static int leases_init(struct srv *srv, unsigned slot, void **state, char *errmsg, size_t errlen)
{
	struct storage *st = srv_storage(srv);
	const struct srv_config *cfg = srv_config(srv);
	struct lsrv *ls = calloc(1, sizeof(*ls));
	if (ls == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	ls->srv = srv;
	ls->slot = slot;
	ls->pcfg.max_scan = cfg->max_scan;
	struct storage_txn *txn;
	struct ledger_recovery rec;
	struct init_apply_arg ia = {.pcfg = &ls->pcfg};
	uint64_t rebuilding = 0;
	int rc = 0;
	/* Recovery applies entries too, which may fill the map: grow and
	 * run it again (nothing of a failed attempt stays). */
	for (int attempt = 0; attempt < 8; attempt++) {
		memset(&ia.sums, 0, sizeof(ia.sums));
		rc = storage_txn_begin(st, NULL, 0, &txn);
		if (rc != 0)
			break;
		rc = meta_get_u64(txn, PROJ_REBUILD_KEY, 0, &rebuilding);
		if (rc == 0 && rebuilding != 0) {
			storage_txn_abort(txn);
			snprintf(errmsg, errlen,
			         "the read models were being rebuilt by a replay that did not "
			         "finish: run `whizbangd replay --data-dir %s` again",
			         cfg->data_dir);
			free(ls);
			return WB_E_INVAL;
		}
		if (rc == 0)
			rc = ledger_recover(txn, srv_wall_us(), init_apply, &ia, &rec);
		if (rc == 0)
			rc = storage_txn_commit(txn);
		else
			storage_txn_abort(txn);
		if (rc != WB_E_MAPFULL)
			break;
		rc = storage_grow(st, 64u << 20);
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		snprintf(errmsg, errlen, "ledger recovery failed: %s", wb_strerror(rc));
		free(ls);
		return rc;
	}
	ls->sums = ia.sums;
	ls->watermark = rec.watermark;
	ls->all.gaps = rec.gaps;
	struct lease_config lc = {
	        .max_lifetime_ms = cfg->lease_max_lifetime_ms,
	        .grace_ms = cfg->lease_grace_ms,
	        .max_duration_ms = cfg->lease_max_ms,
	        .default_duration_ms = cfg->lease_default_ms,
	        .cascade_threshold = cfg->cascade_threshold,
	        .max_leases = cfg->max_leases,
	        .max_leases_per_owner = cfg->max_leases_per_connection,
	        .max_count = (uint32_t)cfg->max_lease_count,
	        .reserve_chunk = cfg->lease_reserve_chunk,
	        .max_projections = MAX_PROJECTION_STATS,
	};
	rc = lease_table_new(&ls->t, &lc, rec.watermark + 1, rec.watermark, rand64, ls);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot create the lease table: %s", wb_strerror(rc));
		free(ls);
		return rc;
	}
	rc = uv_timer_init(srv_loop(srv), &ls->expiry_timer);
	if (rc == 0) {
		rc = uv_timer_init(srv_loop(srv), &ls->wait_timer);
		if (rc != 0)
			uv_close((uv_handle_t *)&ls->expiry_timer, NULL);
	}
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot make the lease timers: %s", uv_strerror(rc));
		lease_table_free(ls->t);
		free(ls);
		return WB_E_IO;
	}
	ls->expiry_timer.data = ls;
	ls->wait_timer.data = ls;
	ls->timers_open = true;
	*state = ls;
	srv_log(WB_LOG_INFO, "ledger_recovered", "watermark=%llu restart_gaps=%llu recovered=%llu",
	        (unsigned long long)rec.watermark, (unsigned long long)rec.gaps,
	        (unsigned long long)rec.recovered);
	return 0;
}

static void leases_shutdown(void *state)
{
	struct lsrv *ls = state;
	if (!ls->timers_open)
		return;
	/* Waiters are answered: their commits are durable, but the watermark
	 * will not move any more in this process. */
	while (ls->nwaiters > 0) {
		struct waiter *w = &ls->waiters[ls->nwaiters - 1];
		if (!conn_is_closing(w->conn))
			srv_error(
			        w->conn, w->req_id, WB_SHUTTING_DOWN,
			        w->kind == WAIT_COMMIT
			                ? "the commit is durable, but the server is shutting down "
			                  "before the watermark reached it"
			                : "the server is shutting down");
		drop_waiter(ls, ls->nwaiters - 1);
	}
	ls->timers_open = false;
	uv_close((uv_handle_t *)&ls->expiry_timer, NULL);
	uv_close((uv_handle_t *)&ls->wait_timer, NULL);
}

static void leases_close(void *state)
{
	struct lsrv *ls = state;
	while (ls->pend_head != NULL) {
		struct pend *p = ls->pend_head;
		ls->pend_head = p->next;
		whizbang__v1__request__free_unpacked(p->req, NULL);
		free(p);
	}
	lease_table_free(ls->t);
	while (ls->pstats_list != NULL) {
		struct pstat *ps = ls->pstats_list;
		ls->pstats_list = ps->next;
		free(ps);
	}
	free(ls->settled);
	free(ls->waiters);
	free(ls);
}

/* ------------------------------------------------------------ figures */

static double efficiency(uint64_t committed, uint64_t expired)
{
	return committed + expired == 0 ? 1.0 : (double)committed / (double)(committed + expired);
}

static void leases_stats(void *state, Whizbang__V1__ServerStats *s)
{
	struct lsrv *ls = state;
	s->entries_applied = ls->sums.entries;
	s->apply_failures = ls->sums.failures;
	s->explosions = ls->sums.explosions;
	s->exploded_ids = ls->sums.exploded_ids;
	s->explosion_us_total = ls->sums.explosion_us;
	struct lease_counts lc;
	lease_get_counts(ls->t, &lc);
	s->leases_active = lc.active;
	s->leases_committed = lc.outcomes[LEASE_COMMITTED];
	s->leases_released = lc.outcomes[LEASE_RELEASED];
	s->leases_expired = lc.outcomes[LEASE_EXPIRED];
	s->leases_recovered = lc.outcomes[LEASE_RECOVERED];
	s->lease_efficiency = efficiency(lc.outcomes[LEASE_COMMITTED], lc.outcomes[LEASE_EXPIRED]);
	s->entries_waiting = ls->all.waiting;
	s->apply_wait_ms_mean = ls->all.wait_count > 0
	                                ? (double)ls->all.wait_sum_ms / (double)ls->all.wait_count
	                                : 0.0;
	s->apply_wait_ms_max = ls->all.wait_max_ms;
	s->gaps = ls->all.gaps;
	s->lease_overrun = lc.overrun;
	s->watermark = ls->watermark;
	s->next_sequence = lease_next_seq(ls->t);
	s->lease_ceiling = lease_ceiling(ls->t);
	s->cascade_level = lc.cascade_level;
	s->health = (char *)health(&ls->all, lc.active);
	s->health_reason = ls->all.health_reason;

	struct lease_projection_stats ps[MAX_PROJECTION_STATS];
	size_t n = lease_projection_stats(ls->t, ps, MAX_PROJECTION_STATS);
	if (n > MAX_PROJECTION_STATS)
		n = MAX_PROJECTION_STATS;
	for (size_t i = 0; i < n; i++) {
		Whizbang__V1__ProjectionStats *p = &ls->pstats[i];
		whizbang__v1__projection_stats__init(p);
		p->projection = (char *)ps[i].name;
		p->leases_active = ps[i].active;
		p->committed = ps[i].outcomes[LEASE_COMMITTED];
		p->released = ps[i].outcomes[LEASE_RELEASED];
		p->expired = ps[i].outcomes[LEASE_EXPIRED];
		p->recovered = ps[i].outcomes[LEASE_RECOVERED];
		p->efficiency = efficiency(p->committed, p->expired);
		p->adaptive_duration_ms = ps[i].adaptive_ms;
		p->lease_overrun = ps[i].overrun;
		struct pstat *st = ps[i].slot;
		if (st != NULL) {
			const struct figures *f = &st->f;
			p->entries_waiting = f->waiting;
			p->apply_wait_ms_mean =
			        f->wait_count > 0 ? (double)f->wait_sum_ms / (double)f->wait_count
			                          : 0.0;
			p->apply_wait_ms_max = f->wait_max_ms;
			p->gaps = f->gaps;
			p->health = (char *)health(&st->f, ps[i].active);
			p->health_reason = st->f.health_reason;
		} else {
			p->health = (char *)"ok";
		}
		ls->pstats_ptrs[i] = p;
	}
	s->n_projections = n;
	s->projections = ls->pstats_ptrs;
}

static const struct srv_handler lease_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_LEASE, lease},
        {WHIZBANG__V1__REQUEST__BODY_EXTEND, extend},
        {WHIZBANG__V1__REQUEST__BODY_RELEASE, release},
        {WHIZBANG__V1__REQUEST__BODY_STAGE, stage},
        {WHIZBANG__V1__REQUEST__BODY_COMMIT, commit},
        {WHIZBANG__V1__REQUEST__BODY_READ_LEDGER, read_ledger},
        {WHIZBANG__V1__REQUEST__BODY_GET_WATERMARK, get_watermark},
        {WHIZBANG__V1__REQUEST__BODY_WAIT_FOR_WATERMARK, wait_for_watermark},
        {WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX, index_change},
        {WHIZBANG__V1__REQUEST__BODY_DROP_INDEX, index_change},
};

const struct srv_module srv_lease_module = {
        .name = "leases",
        .init = leases_init,
        .conn_closed = leases_conn_closed,
        .shutdown = leases_shutdown,
        .close = leases_close,
        .stats = leases_stats,
        .handlers = lease_handlers,
        .nhandlers = sizeof(lease_handlers) / sizeof(lease_handlers[0]),
};
