/* Leases and the ledger on the wire (DESIGN.md §6): the adapter between the
 * loop and the lease coordinator (lease/coord.h), which holds every rule.
 *
 * Happy path: a lease or ledger request is checked as the wire allows
 * (counts, ops, index names), its ops packed as the ledger stores them, and
 * handed to the coordinator with the connection's lease owner and the
 * unpacked Request as its handle. The coordinator answers through
 * io_answer(), which turns the answer into a Response (reading what
 * applying did from the ledger for APPLIED commits and index changes) and
 * frees the Request. Its writes go to the writer wrapped in a srv_op and
 * come back to it on the loop; its deadline is one libuv timer. ReadLedger,
 * GetWatermark and the Stats figures are answered here. A connection's lease
 * owner lives in the module's connection slot, made on its first request.
 *
 * Failure modes: what the coordinator answers (docs/LEASES.md); a request
 * the wire refuses is answered at once and never reaches the coordinator; a
 * storage failure while reading an outcome is answered as that failure. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "access.h"
#include "coord.h"
#include "eval.h"
#include "health.h"
#include "ledger.h"
#include "log.h"
#include "meta.h"
#include "pb.h"
#include "proj.h"
#include "replay.h"
#include "server.h"
#include "validate.h"
#include "wb_error.h"

#define MAX_PROJECTION_STATS 256u
/* The most sequences one Lease may ask for (--max-lease-count's bound). */
#define LEASE_COUNT_MAX 1024u
/* Every ledger entry is served whole in one answer (a ReadLedger page, a
 * ledger subscription's push), and answers stay within --max-frame: an
 * entry may take the page budget (srv_page_budget()) less what a
 * LedgerEntry holds besides its ops and names (PB_LEDGER_ENVELOPE), that is
 * max_frame - ENTRY_FRAME_ROOM bytes of ops, as applying stores them, and
 * names. */
#define ENTRY_FRAME_ROOM (SRV_READ_ENVELOPE + PB_LEDGER_ENVELOPE)
/* A Commit's or Stage's ops leave this much of an entry's bytes for its
 * names (510 at most) and for the outcome of an application that fails
 * (268 at most: applied, the code, a message of up to 255 bytes, the op), so
 * that an entry refused when applied fits too: they may take max_frame -
 * 5120 bytes. */
#define ENTRY_OPS_ROOM (5120u - ENTRY_FRAME_ROOM)

/* A connection's side of the coordinator (its conn slot): its lease owner. */
struct lconn {
	struct lease_owner owner; /* first */
	struct conn *conn;
	struct lconn *next_closed;
};

struct leases {
	struct srv *srv;
	unsigned slot;
	/* Calls into the coordinator in progress: an owner that closes during
	 * one (an answer that could not be queued closes its connection) is
	 * freed once they have returned. */
	unsigned depth;
	struct lconn *closed;
	struct coord *coord;
	struct coord_io io;
	/* The settings entries apply under; pcfg.max_entry_bytes is what an
	 * entry's ops once applied and its names may take (0 with
	 * --unsafe-unbounded-ledger-entries: no limit). */
	struct proj_config pcfg;
	/* The most bytes the ops of one Commit or Stage may take, packed as
	 * the ledger stores them (SIZE_MAX: no limit). */
	size_t max_ops_bytes;
	/* What a where clause must meet to be admitted (never checked when
	 * an entry is applied: see check_ops()). */
	struct proj_where_limits where_limits;
	uv_timer_t timer; /* the coordinator's deadline */
	bool timer_open;
	uint64_t rand_buf[32];
	size_t rand_left;
	struct coord_projection_stats cps[MAX_PROJECTION_STATS];
	Whizbang__V1__ProjectionStats pstats[MAX_PROJECTION_STATS];
	Whizbang__V1__ProjectionStats *pstats_ptrs[MAX_PROJECTION_STATS];
};

/* A write of the coordinator on its way through the writer. */
struct lop {
	struct srv_op base; /* first */
	struct leases *ls;
	struct coord_write *w;
	uint8_t *rec;
};

static uint64_t mono_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static struct coord_time now(void)
{
	return (struct coord_time){mono_ms(), srv_wall_us()};
}

static uint64_t rand64(void *arg)
{
	struct leases *ls = arg;
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

/* The connection whose lease owner this is. */
static struct conn *conn_of(struct lease_owner *owner)
{
	return ((struct lconn *)(void *)owner)->conn;
}

/* c's lease owner, made on first use; NULL after answering when out of
 * memory. */
static struct lease_owner *owner_of(struct leases *ls, struct conn *c, uint64_t id)
{
	struct lconn *lc = conn_slot(c, ls->slot);
	if (lc == NULL) {
		lc = calloc(1, sizeof(*lc));
		if (lc == NULL) {
			srv_error(c, id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
			return NULL;
		}
		lc->conn = c;
		conn_set_slot(c, ls->slot, lc);
	}
	return &lc->owner;
}

static void enter(struct leases *ls)
{
	ls->depth++;
}

/* Leaves a coordinator call; the outermost frees the owners that closed
 * meanwhile. */
static void leave(struct leases *ls)
{
	if (--ls->depth > 0)
		return;
	while (ls->closed != NULL) {
		struct lconn *lc = ls->closed;
		ls->closed = lc->next_closed;
		free(lc);
	}
}

/* ------------------------------------------------------------ the writer side */

/* The apply hook: applies the ops of entry e to the read models and stores
 * them back with what applying found (explosions, outcome). Runs on the
 * writer thread, in sequence order, inside the transaction that moves the
 * watermark. */
static int apply_entry(struct storage_txn *txn, const struct ledger_entry *e, void *arg,
                       struct coord_applied *sums)
{
	if (e->ops_len == 0)
		return 0;
	/* The entry's names count in what it may take (max_entry_bytes). */
	struct proj_config pcfg = *(const struct proj_config *)arg;
	pcfg.entry_names = e->projection_len + e->operation_id_len;
	uint64_t seq = e->seq; /* e points into the store: read it first */
	struct proj_buf rw = {0};
	struct proj_outcome o;
	int rc = proj_apply(txn, seq, e->ops, e->ops_len, &pcfg, PROJ_LIVE, &rw, &o);
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

/* A coordinator write's record: the settings that decide how its entries
 * apply, stamped when the write was submitted so that applying the record
 * again (after a crash, on another node) decides exactly as the first time
 * whatever the settings are then, then coord_write_encode().
 *   version 1: u64 max scan | u8 force scan (no candidate budget: index
 *              plans were unlimited when it was written)
 *   version 2: u64 max scan | u8 force scan | u64 max candidates
 *   version 3: ... | u64 max explosion bytes (before it, none)
 *   version 4: ... | u64 max entry bytes (before it, none; 0: none) */
#define LEASE_REC_VERSION 4

/* Applies a coordinator write's record of the given version; out (may be
 * NULL) receives the results coord_write_apply() wrote. */
static int lease_rec_apply(struct storage_txn *txn, uint16_t version, const uint8_t *rec,
                           size_t len, struct coord_write *out)
{
	size_t head = version >= 4 ? 33 : version >= 3 ? 25 : version >= 2 ? 17 : 9;
	if (len < head)
		return WB_E_CORRUPT;
	struct proj_config pcfg = {
	        .max_scan = get_u64(rec),
	        .force_scan = rec[8] != 0,
	        .max_candidates = version >= 2 ? get_u64(rec + 9) : UINT64_MAX,
	        .max_explosion_bytes = version >= 3 ? get_u64(rec + 17) : 0,
	        .max_entry_bytes = version >= 4 ? get_u64(rec + 25) : 0,
	};
	struct coord_write w;
	memset(&w, 0, sizeof(w));
	if (coord_write_decode(rec + head, len - head, &w) != 0)
		return WB_E_CORRUPT;
	w.apply = apply_entry;
	w.apply_arg = &pcfg;
	int rc = coord_write_apply(&w, txn);
	if (out != NULL) {
		out->watermark = w.watermark;
		out->recovered = w.recovered;
		out->applied = w.applied;
	}
	return rc;
}

static int lease_replay(struct storage_txn *txn, uint16_t version, const uint8_t *rec, size_t len)
{
	return lease_rec_apply(txn, version, rec, len, NULL);
}

/* Runs on the writer thread. */
static int lop_apply(struct storage_txn *txn, struct writer_op *base)
{
	return lease_rec_apply(txn, LEASE_REC_VERSION, base->rec, base->rec_len,
	                       ((struct lop *)base)->w);
}

static void lop_done(struct srv *srv, struct srv_op *base)
{
	struct lop *op = (struct lop *)base;
	struct coord_write *w = op->w;
	int status = base->base.status;
	struct leases *ls = op->ls;
	(void)srv;
	free(op->rec);
	free(op);
	enter(ls);
	coord_write_done(ls->coord, w, status, now());
	leave(ls);
}

static int io_submit(struct coord_io *io, struct coord_write *w)
{
	struct leases *ls = io->data;
	struct lop *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return WB_E_NOMEM;
	struct rec_builder b = {0};
	rec_u64(&b, ls->pcfg.max_scan);
	rec_u8(&b, ls->pcfg.force_scan ? 1 : 0);
	rec_u64(&b, ls->pcfg.max_candidates);
	rec_u64(&b, ls->pcfg.max_explosion_bytes);
	rec_u64(&b, ls->pcfg.max_entry_bytes);
	coord_write_encode(w, &b);
	if (rec_out(&b, &op->rec, &op->base.base.rec_len) != 0) {
		free(op);
		return WB_E_NOMEM;
	}
	op->base.base.rec = op->rec;
	op->base.base.rec_type = SRV_REC_LEASE;
	op->base.base.rec_version = LEASE_REC_VERSION;
	op->ls = ls;
	op->w = w;
	op->base.base.apply = lop_apply;
	op->base.base.size_hint = w->size_hint;
	op->base.done = lop_done;
	/* A write that answers a connection counts as its work in flight. */
	op->base.conn = w->req.owner != NULL ? conn_of(w->req.owner) : NULL;
	srv_submit(ls->srv, &op->base);
	return 0;
}

static void timer_cb(uv_timer_t *t)
{
	struct leases *ls = t->data;
	enter(ls);
	coord_tick(ls->coord, now());
	leave(ls);
	srv_flush(ls->srv);
}

static void io_deadline(struct coord_io *io, uint64_t at_ms)
{
	struct leases *ls = io->data;
	if (!ls->timer_open)
		return;
	if (at_ms == UINT64_MAX) {
		uv_timer_stop(&ls->timer);
		return;
	}
	uint64_t t = mono_ms();
	uv_timer_start(&ls->timer, timer_cb, at_ms > t ? at_ms - t : 0, 0);
}

static void io_log(struct coord_io *io, enum coord_log_level level, const char *event,
                   const char *fields)
{
	static const enum log_level levels[] = {
	        [COORD_LOG_DEBUG] = WB_LOG_DEBUG,
	        [COORD_LOG_INFO] = WB_LOG_INFO,
	        [COORD_LOG_WARN] = WB_LOG_WARN,
	        [COORD_LOG_ERROR] = WB_LOG_ERROR,
	};
	(void)io;
	srv_log(levels[level], event, "%s", fields);
}

/* ------------------------------------------------------------ answers */

static void send_watermark(struct conn *c, uint64_t id, uint64_t watermark, bool reached,
                           uint64_t next_seq)
{
	Whizbang__V1__WatermarkResult r = WHIZBANG__V1__WATERMARK_RESULT__INIT;
	r.watermark = watermark;
	r.reached = reached;
	r.next_sequence = next_seq;
	SRV_REPLY(c, id, WATERMARK, watermark, &r);
}

static void send_grants(struct conn *c, uint64_t id, const struct coord_grant *g, uint32_t n)
{
	Whizbang__V1__LeaseGrant grants[LEASE_COUNT_MAX];
	Whizbang__V1__LeaseGrant *ptrs[LEASE_COUNT_MAX];
	for (uint32_t i = 0; i < n; i++) {
		whizbang__v1__lease_grant__init(&grants[i]);
		grants[i].sequence = g[i].seq;
		grants[i].token = g[i].token;
		grants[i].expires_at_ms = g[i].expires_at_ms;
		grants[i].duration_ms = g[i].duration_ms;
		ptrs[i] = &grants[i];
	}
	Whizbang__V1__LeaseResult r = WHIZBANG__V1__LEASE_RESULT__INIT;
	r.n_leases = n;
	r.leases = ptrs;
	SRV_REPLY(c, id, LEASE, lease, &r);
}

/* Reads what applying the entry of seq recorded (its OpList), from a
 * snapshot. NULL with *rc set when it cannot; NULL with *rc 0 when the
 * entry has no ops. */
static Whizbang__V1__OpList *read_outcome(struct leases *ls, uint64_t seq, int *rc)
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

/* Answers a commit; with what applying its ops did when the coordinator
 * says it is applied and asked for (ACK_APPLIED). */
static void answer_commit(struct leases *ls, struct conn *c, uint64_t id,
                          const struct coord_answer *a)
{
	Whizbang__V1__CommitResult r = WHIZBANG__V1__COMMIT_RESULT__INIT;
	r.sequence = a->seq;
	r.resequenced = a->resequenced;
	r.original_sequence = a->original_seq;
	r.watermark = a->watermark;
	Whizbang__V1__OpList *l = NULL;
	Whizbang__V1__OpResult *res = NULL, **ptrs = NULL;
	if (a->read_outcome) {
		int rc;
		l = read_outcome(ls, a->seq, &rc);
		if (rc != 0) {
			srv_storage_error(c, id, rc, "Commit (reading the outcome)");
			return;
		}
	}
	if (l != NULL && l->error_code != 0) {
		r.apply_error = l->error_code;
		r.apply_error_message = l->error_message;
		r.failed_op = l->failed_op;
		/* An explosion past the limits: the writer read up to
		 * --max-candidates index entries to refuse it. */
		if ((int)l->error_code == WB_QUERY_TOO_EXPENSIVE)
			srv_quota_refused(ls->srv, c);
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
			          (unsigned long long)a->seq);
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
static void answer_index(struct leases *ls, struct conn *c, uint64_t id, uint64_t seq)
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

/* The coordinator answers a request it was handed: the Response goes out
 * and the Request is freed. */
static void io_answer(struct coord_io *io, struct coord_req r, const struct coord_answer *a)
{
	struct leases *ls = io->data;
	Request *req = r.handle;
	struct conn *c = conn_of(r.owner);
	uint64_t id = req->id;
	switch (a->kind) {
	case COORD_DROPPED:
		break;
	case COORD_ERROR:
		srv_error(c, id, a->code, "%s", a->message);
		/* A lease limit (the identity's, the connection's, the
		 * server's): retried at once, it is refused at once. */
		if (a->code == WB_RESOURCE_EXHAUSTED)
			srv_quota_refused(ls->srv, c);
		break;
	case COORD_STORAGE_ERROR:
		srv_storage_error(c, id, a->code, a->message);
		break;
	case COORD_GRANTED:
		send_grants(c, id, a->grants, a->n_grants);
		break;
	case COORD_EXTENDED: {
		Whizbang__V1__ExtendResult x = WHIZBANG__V1__EXTEND_RESULT__INIT;
		x.expires_at_ms = a->expires_at_ms;
		x.duration_ms = a->duration_ms;
		SRV_REPLY(c, id, EXTEND, extend, &x);
		break;
	}
	case COORD_RELEASED:
		SRV_REPLY(c, id, RELEASE, release,
		          &(Whizbang__V1__ReleaseResult)WHIZBANG__V1__RELEASE_RESULT__INIT);
		break;
	case COORD_STAGED:
		SRV_REPLY(c, id, STAGE, stage,
		          &(Whizbang__V1__StageResult)WHIZBANG__V1__STAGE_RESULT__INIT);
		break;
	case COORD_COMMITTED:
		answer_commit(ls, c, id, a);
		break;
	case COORD_INDEXED:
		answer_index(ls, c, id, a->seq);
		break;
	case COORD_WATERMARK:
		send_watermark(c, id, a->watermark, a->reached, a->next_seq);
		break;
	}
	whizbang__v1__request__free_unpacked(req, NULL);
}

/* ------------------------------------------------------------ ReadLedger */

/* One page of ReadLedger, up to the watermark. Each entry's unpacked ops
 * are kept in lists until the answer is packed. */
struct ledger_page {
	struct page page;
	uint64_t watermark;
	bool corrupt;
};

/* A LedgerEntry view in the page, with the names and unpacked ops it
 * points into; the page's items point at these. */
struct held_entry {
	Whizbang__V1__LedgerEntry le; /* first */
	struct pb_ledger_names names;
	Whizbang__V1__OpList *list;
};

static bool ledger_page_cb(const struct ledger_entry *e, void *arg)
{
	struct ledger_page *lp = arg;
	struct page *p = &lp->page;
	size_t est = pb_ledger_size(e);
	if (e->seq > lp->watermark || !page_fits(p, est))
		return false;
	struct held_entry *h = arena_alloc(&p->a, sizeof(*h));
	if (h == NULL) {
		p->nomem = true;
		return false;
	}
	if (pb_ledger_view(e, &h->names, &h->le, &h->list) != 0) {
		lp->corrupt = true;
		return false;
	}
	if (page_add(p, h, est))
		return true;
	if (h->list != NULL)
		whizbang__v1__op_list__free_unpacked(h->list, NULL);
	return false;
}

static bool read_ledger(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	const Whizbang__V1__ReadLedger *a = req->read_ledger;
	uint32_t max = srv_clamp_count(ls->srv, a->max_count);
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(ls->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_storage_error(c, req->id, rc, "ReadLedger");
		return false;
	}
	uint64_t watermark = coord_watermark(ls->coord);
	struct ledger_page lp = {.page = {.budget = srv_page_budget(ls->srv)},
	                         .watermark = watermark};
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
		r.watermark = watermark;
		r.end = next > watermark;
		SRV_REPLY(c, req->id, READ_LEDGER, read_ledger, &r);
	}
	for (size_t i = 0; i < lp.page.n; i++) {
		struct held_entry *h = lp.page.items[i];
		if (h->list != NULL)
			whizbang__v1__op_list__free_unpacked(h->list, NULL);
	}
	page_free(&lp.page);
	return false;
}

/* ------------------------------------------------------------ requests */

/* Ops are checked before anything is leased or written: a bad clause or
 * value, or a clause over the --max-where-* limits, is the client's to
 * fix, answered at once with the op's position. The limits are admission
 * rules only: applying an entry (live, after a restart, or in a replay)
 * never checks them, so an entry admitted once can never fail later
 * because a limit was lowered. */
static bool check_ops(struct leases *ls, struct conn *c, uint64_t id, Whizbang__V1__Op **ops,
                      size_t n)
{
	char why[400];
	int rc = validate_ops(ops, n, &ls->where_limits, why, sizeof(why));
	if (rc != 0) {
		srv_error(c, id, rc, "%s", why);
		if (rc == WB_QUERY_TOO_EXPENSIVE)
			srv_quota_refused(ls->srv, c);
		return false;
	}
	return true;
}

/* coord_io.same_ops: the stored OpList, without what applying it added
 * (its outcome, the explosions of its update and delete ops), packs to the
 * bytes sent. */
static bool io_same_ops(struct coord_io *io, const uint8_t *stored, size_t stored_len,
                        const uint8_t *sent, size_t sent_len)
{
	(void)io;
	if (stored_len == sent_len && memcmp(stored, sent, sent_len) == 0)
		return true; /* not applied yet */
	Whizbang__V1__OpList *l = whizbang__v1__op_list__unpack(NULL, stored_len, stored);
	if (l == NULL)
		return false;
	/* What applying added goes: the explosions are freed (l is freed
	 * after anyway), the outcome is left out of a shallow copy. */
	for (size_t i = 0; i < l->n_ops; i++) {
		Whizbang__V1__Op *op = l->ops[i];
		Whizbang__V1__Explosion **x =
		        op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE   ? &op->update->exploded
		        : op->kind_case == WHIZBANG__V1__OP__KIND_DELETE ? &op->delete_->exploded
		                                                         : NULL;
		if (x != NULL && *x != NULL) {
			whizbang__v1__explosion__free_unpacked(*x, NULL);
			*x = NULL;
		}
	}
	Whizbang__V1__OpList bare = *l;
	bare.applied = false;
	bare.error_code = 0;
	bare.error_message = (char *)"";
	bare.failed_op = 0;
	bool same = false;
	size_t n = whizbang__v1__op_list__get_packed_size(&bare);
	uint8_t *buf = n == sent_len ? malloc(n > 0 ? n : 1) : NULL;
	if (buf != NULL) {
		whizbang__v1__op_list__pack(&bare, buf);
		same = memcmp(buf, sent, n) == 0;
		free(buf);
	}
	whizbang__v1__op_list__free_unpacked(l, NULL);
	return same;
}

/* Packs ops as the OpList bytes the ledger stores; NULL after answering
 * when out of memory, or (BAD_REQUEST) when they take more than max bytes,
 * what ("Commit", "Stage") naming the request. max is ls->max_ops_bytes
 * for a client's ops: an admission rule on the request alone, decided on
 * the loop and never logged (applying an entry does not check it). */
static uint8_t *pack_ops(struct leases *ls, struct conn *c, uint64_t id, const char *what,
                         Whizbang__V1__Op **ops, size_t n, size_t max, size_t *len)
{
	Whizbang__V1__OpList list = WHIZBANG__V1__OP_LIST__INIT;
	list.n_ops = n;
	list.ops = ops;
	*len = whizbang__v1__op_list__get_packed_size(&list);
	if (*len > max) {
		uint64_t frame = srv_config(ls->srv)->max_frame;
		srv_error(c, id, WB_BAD_REQUEST,
		          "the ops of this %s take %zu bytes, more than the %zu the ops of one "
		          "ledger entry may take (--max-frame %llu less 5120, so that the entry "
		          "and what applying it records fit one reader's answer): split the "
		          "work over several leases",
		          what, *len, max, (unsigned long long)frame);
		return NULL;
	}
	uint8_t *buf = malloc(*len > 0 ? *len : 1);
	if (buf == NULL)
		srv_error(c, id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	else
		whizbang__v1__op_list__pack(&list, buf);
	return buf;
}

static bool lease(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	const Whizbang__V1__Lease *a = req->lease;
	uint64_t max = srv_config(ls->srv)->max_lease_count;
	if (a->count == 0 || a->count > max) {
		srv_error(c, req->id, WB_BAD_REQUEST, "count is %u: ask for 1 to %llu sequences",
		          a->count, (unsigned long long)max);
		return false;
	}
	struct lease_owner *owner = owner_of(ls, c, req->id);
	if (owner == NULL)
		return false;
	/* The identity's account (--max-leases-per-identity), NULL for
	 * none. */
	struct lease_account *account = srv_quota_lease_account(ls->srv, c);
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
	        .account = account,
	};
	enter(ls);
	coord_lease(ls->coord, (struct coord_req){req, owner}, &args, now());
	leave(ls);
	return true;
}

/* Requests on a lease (Extend, Release, Stage, Commit) name a sequence: the
 * access table leaves them here (ACCESS_BY_LEASE), to decide on the lease's
 * projection. A sequence the table does not hold goes on to the
 * coordinator, which answers it (LEASE_NOT_FOUND, or the outcome of a
 * finished lease); its token was all that could act on it. */
static bool lease_permitted(struct leases *ls, struct conn *c, const Request *req, uint64_t seq)
{
	const struct srv_access_rule *r = srv_access_rule(req->body_case);
	const char *proj = lease_projection_of(coord_leases(ls->coord), seq);
	const struct auth_subject *s = conn_subject(c);
	if (r == NULL || s == NULL) {
		srv_error(c, req->id, s == NULL ? WB_UNAUTHENTICATED : WB_PERMISSION_DENIED,
		          s == NULL ? "authentication is required: this connection has no role"
		                    : "permission denied: the request has no access rule");
		return false;
	}
	if (proj == NULL)
		return true;
	char why[300];
	if (srv_access_allowed(s, r->kind, r->perm, proj, why, sizeof(why)) == 0)
		return true;
	srv_error(c, req->id, WB_PERMISSION_DENIED, "%s", why);
	return false;
}

static bool extend(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	if (!lease_permitted(ls, c, req, req->extend->sequence))
		return false;
	struct lease_owner *owner = owner_of(ls, c, req->id);
	if (owner == NULL)
		return false;
	enter(ls);
	coord_extend(ls->coord, (struct coord_req){req, owner}, req->extend->sequence,
	             req->extend->token, req->extend->duration_ms, now());
	leave(ls);
	return true;
}

static bool release(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	if (!lease_permitted(ls, c, req, req->release->sequence))
		return false;
	struct lease_owner *owner = owner_of(ls, c, req->id);
	if (owner == NULL)
		return false;
	uint64_t token = req->release->token;
	if (req->release->force) {
		/* An operator's release: admin:clients stands for the token. */
		char why[300];
		const struct auth_subject *s = conn_subject(c);
		if (srv_access_allowed(s, AUTH_ADMIN, AUTH_ADMIN_CLIENTS, "", why, sizeof(why)) !=
		    0) {
			srv_error(c, req->id, WB_PERMISSION_DENIED, "%s (a forced Release)", why);
			return false;
		}
		token = lease_token_of(coord_leases(ls->coord), req->release->sequence);
		srv_log(WB_LOG_INFO, "lease_released_by_admin", "conn=%llu sequence=%llu found=%d",
		        (unsigned long long)conn_id(c), (unsigned long long)req->release->sequence,
		        token != 0);
	}
	enter(ls);
	coord_release(ls->coord, (struct coord_req){req, owner}, req->release->sequence, token,
	              now());
	leave(ls);
	return true;
}

static bool stage(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	const Whizbang__V1__Stage *a = req->stage;
	size_t len;
	if (!lease_permitted(ls, c, req, a->sequence))
		return false;
	if (!check_ops(ls, c, req->id, a->ops, a->n_ops))
		return false;
	struct lease_owner *owner = owner_of(ls, c, req->id);
	if (owner == NULL)
		return false;
	uint8_t *ops = pack_ops(ls, c, req->id, "Stage", a->ops, a->n_ops, ls->max_ops_bytes, &len);
	if (ops == NULL)
		return false;
	enter(ls);
	coord_stage(ls->coord, (struct coord_req){req, owner}, a->sequence, a->token, ops, len,
	            now());
	leave(ls);
	free(ops);
	return true;
}

static bool commit(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	const Whizbang__V1__Commit *a = req->commit;
	struct coord_commit_args ca = {
	        .seq = a->sequence,
	        .token = a->token,
	        .ack_applied = a->ack == WHIZBANG__V1__ACK__ACK_APPLIED,
	        .resequence = a->on_expired == WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_RESEQUENCE,
	};
	if (!lease_permitted(ls, c, req, a->sequence))
		return false;
	if (!check_ops(ls, c, req->id, a->ops, a->n_ops))
		return false;
	struct lease_owner *owner = owner_of(ls, c, req->id);
	if (owner == NULL)
		return false;
	uint8_t *ops = pack_ops(ls, c, req->id, "Commit", a->ops, a->n_ops, ls->max_ops_bytes,
	                        &ca.ops_len);
	if (ops == NULL)
		return false;
	ca.ops = ops;
	enter(ls);
	coord_commit(ls->coord, (struct coord_req){req, owner}, &ca, now());
	leave(ls);
	free(ops);
	return true;
}

/* CreateIndex and DropIndex are ledger operations of their own (replay
 * rebuilds the indexes): the one op is committed at a sequence of its own
 * and answered once applied (answer_index()). */
static bool index_change(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	bool create = req->body_case == WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX;
	Whizbang__V1__IndexSpec spec = WHIZBANG__V1__INDEX_SPEC__INIT;
	spec.type = create ? req->create_index->type : req->drop_index->type;
	spec.field = create ? req->create_index->field : req->drop_index->field;
	size_t tl = strlen(spec.type), fl = strlen(spec.field);
	if (tl == 0 || tl > PROJ_NAME_MAX || fl == 0 || fl > PROJ_NAME_MAX) {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "%s: type and field must be 1..255 bytes each",
		          create ? "CreateIndex" : "DropIndex");
		return false;
	}
	struct lease_owner *owner = owner_of(ls, c, req->id);
	if (owner == NULL)
		return false;
	Whizbang__V1__Op op = WHIZBANG__V1__OP__INIT, *ops[1] = {&op};
	op.kind_case =
	        create ? WHIZBANG__V1__OP__KIND_CREATE_INDEX : WHIZBANG__V1__OP__KIND_DROP_INDEX;
	if (create)
		op.create_index = &spec;
	else
		op.drop_index = &spec;
	size_t len;
	/* One index op: 530 bytes at most, whatever the frame. */
	uint8_t *packed = pack_ops(ls, c, req->id, "index change", ops, 1, SIZE_MAX, &len);
	if (packed == NULL)
		return false;
	enter(ls);
	coord_index(ls->coord, (struct coord_req){req, owner}, packed, len, now());
	leave(ls);
	free(packed);
	return true;
}

static bool get_watermark(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	send_watermark(c, req->id, coord_watermark(ls->coord), true, coord_next_seq(ls->coord));
	return false;
}

static bool wait_for_watermark(void *state, struct conn *c, Request *req)
{
	struct leases *ls = state;
	struct lease_owner *owner = owner_of(ls, c, req->id);
	if (owner == NULL)
		return false;
	enter(ls);
	coord_wait(ls->coord, (struct coord_req){req, owner}, req->wait_for_watermark->sequence,
	           req->wait_for_watermark->timeout_ms, now());
	leave(ls);
	return true;
}

static void leases_conn_figures(void *state, const struct conn *c, Whizbang__V1__ClientInfo *info)
{
	const struct leases *ls = state;
	const struct lconn *lc = conn_slot(c, ls->slot);
	if (lc != NULL)
		info->leases += (uint32_t)lc->owner.count;
}

static void leases_conn_closed(void *state, struct conn *c)
{
	struct leases *ls = state;
	struct lconn *lc = conn_slot(c, ls->slot);
	if (lc == NULL)
		return; /* it never asked the coordinator anything */
	conn_set_slot(c, ls->slot, NULL);
	enter(ls);
	coord_owner_closed(ls->coord, &lc->owner, now());
	lc->next_closed = ls->closed;
	ls->closed = lc;
	leave(ls);
}

/* ------------------------------------------------------------ start, stop */

/* A replay that rebuilds the read models and did not finish leaves them
 * half made: refuse to start on them. */
static int check_rebuild(struct srv *srv, char *errmsg, size_t errlen)
{
	struct storage_txn *txn;
	uint64_t rebuilding = 0;
	int rc = storage_txn_begin(srv_storage(srv), NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = meta_get_u64(txn, PROJ_REBUILD_KEY, 0, &rebuilding);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		snprintf(errmsg, errlen, "ledger recovery failed: %s", wb_strerror(rc));
		return rc;
	}
	if (rebuilding != 0) {
		snprintf(errmsg, errlen,
		         "the read models were being rebuilt by a replay that did not finish: run "
		         "`whizbangd replay --data-dir %s` again",
		         srv_config(srv)->data_dir);
		return WB_E_INVAL;
	}
	return 0;
}

static int leases_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	const struct srv_config *cfg = srv_config(srv);
	struct leases *ls = state;
	ls->srv = srv;
	ls->slot = slot;
	ls->pcfg.max_scan = cfg->max_scan;
	ls->pcfg.max_candidates = cfg->max_candidates;
	/* An entry must fit a reader's page: half a frame at most. */
	ls->pcfg.max_explosion_bytes = cfg->max_explosion_bytes < cfg->max_frame / 2
	                                       ? cfg->max_explosion_bytes
	                                       : cfg->max_frame / 2;
	/* The whole entry too, its ops and their explosions together (1: an
	 * explosion never fits under a frame too small for any entry). */
	ls->pcfg.max_entry_bytes =
	        cfg->max_frame > ENTRY_FRAME_ROOM ? cfg->max_frame - ENTRY_FRAME_ROOM : 1;
	ls->max_ops_bytes = ls->pcfg.max_entry_bytes > ENTRY_OPS_ROOM
	                            ? (size_t)(ls->pcfg.max_entry_bytes - ENTRY_OPS_ROOM)
	                            : 0;
	if (cfg->unsafe_unbounded_ledger_entries) {
		ls->pcfg.max_entry_bytes = 0;
		ls->max_ops_bytes = SIZE_MAX;
		srv_log(WB_LOG_WARN, "unsafe_setting",
		        "setting=unsafe-unbounded-ledger-entries effect=\"ledger entries larger "
		        "than a reader's answer are accepted\"");
	}
	validate_where_limits(cfg, &ls->where_limits);
	ls->io = (struct coord_io){
	        .data = ls,
	        .submit = io_submit,
	        .answer = io_answer,
	        .deadline = io_deadline,
	        .log = io_log,
	        .same_ops = io_same_ops,
	};
	struct coord_config cc = {
	        .lease =
	                {
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
	                },
	        .max_waiting_per_owner = cfg->max_inflight,
	        .apply = apply_entry,
	        .apply_arg = &ls->pcfg,
	        .rand = rand64,
	        .rand_arg = ls,
	};
	struct coord_recovery rec;
	int rc = check_rebuild(srv, errmsg, errlen);
	if (rc == 0)
		rc = coord_start(&ls->coord, &cc, &ls->io, srv_storage(srv), now(), &rec, errmsg,
		                 errlen);
	if (rc != 0)
		return rc;
	/* After a start no lease is held, so the coordinator has asked for
	 * no deadline that io_deadline() could have missed. */
	rc = uv_timer_init(srv_loop(srv), &ls->timer);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot make the lease timer: %s", uv_strerror(rc));
		coord_close(ls->coord);
		return WB_E_IO;
	}
	ls->timer.data = ls;
	ls->timer_open = true;
	srv_log(WB_LOG_INFO, "ledger_recovered", "watermark=%llu restart_gaps=%llu recovered=%llu",
	        (unsigned long long)rec.ledger.watermark, (unsigned long long)rec.ledger.gaps,
	        (unsigned long long)rec.ledger.recovered);
	return 0;
}

static void leases_shutdown(void *state)
{
	struct leases *ls = state;
	if (!ls->timer_open)
		return;
	enter(ls);
	coord_shutdown(ls->coord);
	leave(ls);
	ls->timer_open = false;
	uv_close((uv_handle_t *)&ls->timer, NULL);
}

static void leases_close(void *state)
{
	struct leases *ls = state;
	coord_close(ls->coord);
}

/* ------------------------------------------------------------ figures */

static void leases_stats(void *state, Whizbang__V1__ServerStats *s)
{
	struct leases *ls = state;
	uint64_t t = mono_ms();
	struct coord_stats cs;
	coord_stats(ls->coord, t, &cs);
	s->entries_applied = cs.applied.entries;
	s->apply_failures = cs.applied.failures;
	s->explosions = cs.applied.explosions;
	s->exploded_ids = cs.applied.exploded_ids;
	s->explosion_us_total = cs.applied.explosion_us;
	const struct lease_counts *lc = &cs.leases;
	s->leases_active = lc->active;
	s->leases_committed = lc->outcomes[LEASE_COMMITTED];
	s->leases_released = lc->outcomes[LEASE_RELEASED];
	s->leases_expired = lc->outcomes[LEASE_EXPIRED];
	s->leases_recovered = lc->outcomes[LEASE_RECOVERED];
	s->lease_efficiency =
	        health_efficiency(lc->outcomes[LEASE_COMMITTED], lc->outcomes[LEASE_EXPIRED]);
	s->entries_waiting = cs.all.waiting;
	s->apply_wait_ms_mean = cs.all.wait_mean_ms;
	s->apply_wait_ms_max = cs.all.wait_max_ms;
	s->gaps = cs.all.gaps;
	s->lease_overrun = lc->overrun;
	s->watermark = cs.watermark;
	s->next_sequence = cs.next_seq;
	s->lease_ceiling = cs.ceiling;
	s->cascade_level = lc->cascade_level;
	s->health = (char *)cs.all.health;
	s->health_reason = (char *)cs.all.health_reason;

	size_t n = coord_projection_stats(ls->coord, t, ls->cps, MAX_PROJECTION_STATS);
	if (n > MAX_PROJECTION_STATS)
		n = MAX_PROJECTION_STATS;
	for (size_t i = 0; i < n; i++) {
		const struct coord_projection_stats *ps = &ls->cps[i];
		Whizbang__V1__ProjectionStats *p = &ls->pstats[i];
		whizbang__v1__projection_stats__init(p);
		p->projection = (char *)ps->lease.name;
		p->leases_active = ps->lease.active;
		p->committed = ps->lease.outcomes[LEASE_COMMITTED];
		p->released = ps->lease.outcomes[LEASE_RELEASED];
		p->expired = ps->lease.outcomes[LEASE_EXPIRED];
		p->recovered = ps->lease.outcomes[LEASE_RECOVERED];
		p->efficiency = health_efficiency(p->committed, p->expired);
		p->adaptive_duration_ms = ps->lease.adaptive_ms;
		p->lease_overrun = ps->lease.overrun;
		p->entries_waiting = ps->f.waiting;
		p->apply_wait_ms_mean = ps->f.wait_mean_ms;
		p->apply_wait_ms_max = ps->f.wait_max_ms;
		p->gaps = ps->f.gaps;
		p->health = (char *)ps->f.health;
		p->health_reason = (char *)ps->f.health_reason;
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

static const struct srv_record lease_records[] = {
        {SRV_REC_LEASE, LEASE_REC_VERSION, lease_replay},
};

const struct srv_module srv_lease_module = {
        .name = "leases",
        .size = sizeof(struct leases),
        .init = leases_init,
        .conn_closed = leases_conn_closed,
        .conn_figures = leases_conn_figures,
        .shutdown = leases_shutdown,
        .close = leases_close,
        .stats = leases_stats,
        .handlers = lease_handlers,
        .nhandlers = sizeof(lease_handlers) / sizeof(lease_handlers[0]),
        .records = lease_records,
        .nrecords = 1,
};
