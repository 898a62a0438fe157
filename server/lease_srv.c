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
 * GetWatermark and the Stats figures are answered here.
 *
 * Failure modes: what the coordinator answers (docs/LEASES.md); a request
 * the wire refuses is answered at once and never reaches the coordinator; a
 * storage failure while reading an outcome is answered as that failure. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "coord.h"
#include "eval.h"
#include "health.h"
#include "ledger.h"
#include "log.h"
#include "meta.h"
#include "proj.h"
#include "replay.h"
#include "srv_int.h"

#define MAX_PROJECTION_STATS 256u

struct lsrv {
	struct srv *srv;
	struct coord *coord;
	struct coord_io io;
	struct proj_config pcfg;
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
	struct coord_write *w;
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

/* The connection whose lease owner this is (struct conn embeds it). */
static struct conn *conn_of(struct lease_owner *owner)
{
	return (struct conn *)(void *)((char *)owner - offsetof(struct conn, leases));
}

/* ------------------------------------------------------------ the writer side */

/* The apply hook: applies the ops of entry e to the read models and stores
 * them back with what applying found (explosions, outcome). Runs on the
 * writer thread, in sequence order, inside the transaction that moves the
 * watermark. */
static int apply_entry(struct storage_txn *txn, const struct ledger_entry *e, void *arg,
                       struct coord_applied *sums)
{
	const struct proj_config *pcfg = arg;
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

/* Runs on the writer thread. */
static int lop_apply(struct storage_txn *txn, struct writer_op *base)
{
	return coord_write_apply(((struct lop *)base)->w, txn);
}

static void lop_done(struct srv *srv, struct srv_op *base)
{
	struct lop *op = (struct lop *)base;
	struct coord_write *w = op->w;
	int status = base->base.status;
	free(op);
	coord_write_done(srv->lsrv->coord, w, status, now());
}

static int io_submit(struct coord_io *io, struct coord_write *w)
{
	struct lsrv *ls = io->data;
	struct lop *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return WB_E_NOMEM;
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
	struct lsrv *ls = t->data;
	coord_tick(ls->coord, now());
	srv_flush(ls->srv);
}

static void io_deadline(struct coord_io *io, uint64_t at_ms)
{
	struct lsrv *ls = io->data;
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
	        [COORD_LOG_DEBUG] = LOG_DEBUG,
	        [COORD_LOG_INFO] = LOG_INFO,
	        [COORD_LOG_WARN] = LOG_WARN,
	        [COORD_LOG_ERROR] = LOG_ERROR,
	};
	(void)io;
	srv_log(levels[level], event, "%s", fields);
}

/* ------------------------------------------------------------ answers */

static void send_body(struct conn *c, uint64_t id, Whizbang__V1__Response__BodyCase body_case,
                      void *body)
{
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = id;
	resp.body_case = body_case;
	switch (body_case) {
	case WHIZBANG__V1__RESPONSE__BODY_LEASE:
		resp.lease = body;
		break;
	case WHIZBANG__V1__RESPONSE__BODY_EXTEND:
		resp.extend = body;
		break;
	case WHIZBANG__V1__RESPONSE__BODY_RELEASE:
		resp.release = body;
		break;
	case WHIZBANG__V1__RESPONSE__BODY_STAGE:
		resp.stage = body;
		break;
	case WHIZBANG__V1__RESPONSE__BODY_COMMIT:
		resp.commit = body;
		break;
	case WHIZBANG__V1__RESPONSE__BODY_READ_LEDGER:
		resp.read_ledger = body;
		break;
	case WHIZBANG__V1__RESPONSE__BODY_WATERMARK:
		resp.watermark = body;
		break;
	case WHIZBANG__V1__RESPONSE__BODY_INDEX:
		resp.index = body;
		break;
	default:
		abort(); /* a body this file does not send */
	}
	srv_send(c, &resp);
}

static void send_watermark(struct conn *c, uint64_t id, uint64_t watermark, bool reached,
                           uint64_t next_seq)
{
	Whizbang__V1__WatermarkResult r = WHIZBANG__V1__WATERMARK_RESULT__INIT;
	r.watermark = watermark;
	r.reached = reached;
	r.next_sequence = next_seq;
	send_body(c, id, WHIZBANG__V1__RESPONSE__BODY_WATERMARK, &r);
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
	send_body(c, id, WHIZBANG__V1__RESPONSE__BODY_LEASE, &r);
}

/* Reads what applying the entry of seq recorded (its OpList), from a
 * snapshot. NULL with *rc set when it cannot; NULL with *rc 0 when the
 * entry has no ops. */
static Whizbang__V1__OpList *read_outcome(struct lsrv *ls, uint64_t seq, int *rc)
{
	struct storage_txn *txn;
	Whizbang__V1__OpList *l = NULL;
	*rc = storage_txn_begin(ls->srv->st, NULL, STORAGE_RDONLY, &txn);
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
static void answer_commit(struct lsrv *ls, struct conn *c, uint64_t id,
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
			srv_send_storage_error(c, id, rc, "Commit (reading the outcome)");
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
			srv_send_error(c, id, WB_RESOURCE_EXHAUSTED,
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
	send_body(c, id, WHIZBANG__V1__RESPONSE__BODY_COMMIT, &r);
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
		srv_send_storage_error(c, id, rc != 0 ? rc : WB_E_CORRUPT, "index change");
	} else if (l->error_code != 0) {
		srv_send_error(c, id, (int)l->error_code, "%s", l->error_message);
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
			rc = storage_txn_begin(ls->srv->st, NULL, STORAGE_RDONLY, &txn);
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
		send_body(c, id, WHIZBANG__V1__RESPONSE__BODY_INDEX, &r);
	}
	if (l != NULL)
		whizbang__v1__op_list__free_unpacked(l, NULL);
}

/* The coordinator answers a request it was handed: the Response goes out
 * and the Request is freed. */
static void io_answer(struct coord_io *io, struct coord_req r, const struct coord_answer *a)
{
	struct lsrv *ls = io->data;
	Request *req = r.handle;
	struct conn *c = conn_of(r.owner);
	uint64_t id = req->id;
	switch (a->kind) {
	case COORD_DROPPED:
		break;
	case COORD_ERROR:
		srv_send_error(c, id, a->code, "%s", a->message);
		break;
	case COORD_STORAGE_ERROR:
		srv_send_storage_error(c, id, a->code, a->message);
		break;
	case COORD_GRANTED:
		send_grants(c, id, a->grants, a->n_grants);
		break;
	case COORD_EXTENDED: {
		Whizbang__V1__ExtendResult x = WHIZBANG__V1__EXTEND_RESULT__INIT;
		x.expires_at_ms = a->expires_at_ms;
		x.duration_ms = a->duration_ms;
		send_body(c, id, WHIZBANG__V1__RESPONSE__BODY_EXTEND, &x);
		break;
	}
	case COORD_RELEASED:
		send_body(c, id, WHIZBANG__V1__RESPONSE__BODY_RELEASE,
		          &(Whizbang__V1__ReleaseResult)WHIZBANG__V1__RELEASE_RESULT__INIT);
		break;
	case COORD_STAGED:
		send_body(c, id, WHIZBANG__V1__RESPONSE__BODY_STAGE,
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

/* Collects ledger entries for a ReadLedger answer. */
struct ledger_collect {
	Whizbang__V1__LedgerEntry *entries;
	Whizbang__V1__OpList **lists;
	char *names; /* 512 bytes per entry: projection, NUL, operation id, NUL */
	size_t n, cap;
	size_t bytes, budget;
	uint64_t watermark;
	bool nomem;
	bool corrupt;
};

int lsrv_ledger_entry_pb(const struct ledger_entry *e, char names[512],
                         Whizbang__V1__LedgerEntry *le, Whizbang__V1__OpList **list)
{
	*list = NULL;
	if (e->ops_len > 0) {
		*list = whizbang__v1__op_list__unpack(NULL, e->ops_len, e->ops);
		if (*list == NULL)
			return WB_E_CORRUPT;
	}
	whizbang__v1__ledger_entry__init(le);
	memcpy(names, e->projection, e->projection_len);
	names[e->projection_len] = '\0';
	memcpy(names + 256, e->operation_id, e->operation_id_len);
	names[256 + e->operation_id_len] = '\0';
	le->projection = names;
	le->operation_id = names + 256;
	le->sequence = e->seq;
	le->kind = e->kind == LEDGER_COMMITTED ? WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED
	           : e->kind == LEDGER_GAP     ? WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP
	                                       : WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED;
	le->reason = (Whizbang__V1__EntryReason)e->reason;
	le->source_position = e->source_position;
	le->time_us = e->time_us;
	le->original_expiry_us = e->original_expiry_us;
	le->original_sequence = e->original_seq;
	if (*list != NULL) {
		le->n_ops = (*list)->n_ops;
		le->ops = (*list)->ops;
		le->applied = (*list)->applied;
		le->apply_error = (*list)->error_code;
		le->apply_error_message = (*list)->error_message;
		le->failed_op = (*list)->failed_op;
	} else {
		/* Nothing to apply: a gap, or an entry without ops. */
		le->applied = true;
	}
	return 0;
}

static bool ledger_collect_cb(const struct ledger_entry *e, void *arg)
{
	struct ledger_collect *col = arg;
	if (e->seq > col->watermark)
		return false;
	size_t est = e->ops_len + e->projection_len + e->operation_id_len + 96;
	if (col->n > 0 && col->bytes + est > col->budget)
		return false;
	if (col->n == col->cap) {
		size_t cap = col->cap > 0 ? col->cap * 2 : 64;
		Whizbang__V1__LedgerEntry *en = realloc(col->entries, cap * sizeof(*en));
		if (en != NULL)
			col->entries = en;
		Whizbang__V1__OpList **li = realloc(col->lists, cap * sizeof(*li));
		if (li != NULL)
			col->lists = li;
		char *na = realloc(col->names, cap * 512);
		if (na != NULL)
			col->names = na;
		if (en == NULL || li == NULL || na == NULL) {
			col->nomem = true;
			return false;
		}
		col->cap = cap;
	}
	Whizbang__V1__OpList *list;
	if (lsrv_ledger_entry_pb(e, col->names + col->n * 512, &col->entries[col->n], &list) != 0) {
		col->corrupt = true;
		return false;
	}
	col->lists[col->n] = list;
	col->n++;
	col->bytes += est;
	return true;
}

static void handle_read_ledger(struct lsrv *ls, struct conn *c, Request *req)
{
	const Whizbang__V1__ReadLedger *a = req->read_ledger;
	struct srv *srv = ls->srv;
	uint32_t max = srv_clamp_count(srv, a->max_count);
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_send_storage_error(c, req->id, rc, "ReadLedger");
		return;
	}
	uint64_t watermark = coord_watermark(ls->coord);
	struct ledger_collect col = {.budget = srv->cfg.max_frame - READ_ENVELOPE,
	                             .watermark = watermark};
	uint64_t next;
	rc = ledger_read(txn, a->from_sequence, max, ledger_collect_cb, &col, &next);
	storage_txn_abort(txn); /* the entries hold copies: unpacked lists, names */
	Whizbang__V1__LedgerEntry **ptrs = NULL;
	if (rc == 0 && !col.nomem && !col.corrupt)
		ptrs = malloc((col.n > 0 ? col.n : 1) * sizeof(*ptrs));
	if (rc != 0 || col.corrupt) {
		srv_send_storage_error(c, req->id, rc != 0 ? rc : WB_E_CORRUPT, "ReadLedger");
	} else if (ptrs == NULL) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		               "the server is out of memory; retry with a smaller max_count");
	} else {
		for (size_t i = 0; i < col.n; i++) {
			col.entries[i].projection = col.names + i * 512;
			col.entries[i].operation_id = col.names + i * 512 + 256;
			ptrs[i] = &col.entries[i];
		}
		Whizbang__V1__ReadLedgerResult r = WHIZBANG__V1__READ_LEDGER_RESULT__INIT;
		r.n_entries = col.n;
		r.entries = ptrs;
		if (a->from_sequence > next)
			next = a->from_sequence;
		r.next_sequence = next;
		r.watermark = watermark;
		r.end = next > watermark;
		send_body(c, req->id, WHIZBANG__V1__RESPONSE__BODY_READ_LEDGER, &r);
	}
	for (size_t i = 0; i < col.n; i++)
		if (col.lists[i] != NULL)
			whizbang__v1__op_list__free_unpacked(col.lists[i], NULL);
	free(ptrs);
	free(col.entries);
	free(col.lists);
	free(col.names);
}

/* ------------------------------------------------------------ requests */

/* Ops are checked before anything is leased or written: a bad clause or
 * value is the client's to fix, answered at once with the op's position. */
static bool check_ops(struct conn *c, uint64_t id, Whizbang__V1__Op **ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char msg[256];
		int rc = proj_check_op(ops[i], msg, sizeof(msg));
		if (rc != 0) {
			srv_send_error(c, id, rc, "op %zu: %s", i + 1, msg);
			return false;
		}
	}
	return true;
}

/* Packs ops as the OpList bytes the ledger stores; NULL after answering
 * when out of memory. */
static uint8_t *pack_ops(struct conn *c, uint64_t id, Whizbang__V1__Op **ops, size_t n, size_t *len)
{
	Whizbang__V1__OpList list = WHIZBANG__V1__OP_LIST__INIT;
	list.n_ops = n;
	list.ops = ops;
	*len = whizbang__v1__op_list__get_packed_size(&list);
	uint8_t *buf = malloc(*len > 0 ? *len : 1);
	if (buf == NULL)
		srv_send_error(c, id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	else
		whizbang__v1__op_list__pack(&list, buf);
	return buf;
}

static bool handle_lease(struct lsrv *ls, struct conn *c, Request *req)
{
	const Whizbang__V1__Lease *a = req->lease;
	if (a->count == 0 || a->count > ls->srv->cfg.max_lease_count) {
		srv_send_error(c, req->id, WB_BAD_REQUEST,
		               "count is %u: ask for 1 to %llu sequences", a->count,
		               (unsigned long long)ls->srv->cfg.max_lease_count);
		return false;
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
	};
	coord_lease(ls->coord, (struct coord_req){req, &c->leases}, &args, now());
	return true;
}

static bool handle_stage(struct lsrv *ls, struct conn *c, Request *req)
{
	const Whizbang__V1__Stage *a = req->stage;
	size_t len;
	if (!check_ops(c, req->id, a->ops, a->n_ops))
		return false;
	uint8_t *ops = pack_ops(c, req->id, a->ops, a->n_ops, &len);
	if (ops == NULL)
		return false;
	coord_stage(ls->coord, (struct coord_req){req, &c->leases}, a->sequence, a->token, ops, len,
	            now());
	free(ops);
	return true;
}

static bool handle_commit(struct lsrv *ls, struct conn *c, Request *req)
{
	const Whizbang__V1__Commit *a = req->commit;
	struct coord_commit_args ca = {
	        .seq = a->sequence,
	        .token = a->token,
	        .ack_applied = a->ack == WHIZBANG__V1__ACK__ACK_APPLIED,
	        .resequence = a->on_expired == WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_RESEQUENCE,
	};
	if (!check_ops(c, req->id, a->ops, a->n_ops))
		return false;
	uint8_t *ops = pack_ops(c, req->id, a->ops, a->n_ops, &ca.ops_len);
	if (ops == NULL)
		return false;
	ca.ops = ops;
	coord_commit(ls->coord, (struct coord_req){req, &c->leases}, &ca, now());
	free(ops);
	return true;
}

/* CreateIndex and DropIndex are ledger operations of their own (replay
 * rebuilds the indexes): the one op is committed at a sequence of its own
 * and answered once applied (answer_index()). */
static bool handle_index(struct lsrv *ls, struct conn *c, Request *req)
{
	bool create = req->body_case == WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX;
	Whizbang__V1__IndexSpec spec = WHIZBANG__V1__INDEX_SPEC__INIT;
	spec.type = create ? req->create_index->type : req->drop_index->type;
	spec.field = create ? req->create_index->field : req->drop_index->field;
	size_t tl = strlen(spec.type), fl = strlen(spec.field);
	if (tl == 0 || tl > PROJ_NAME_MAX || fl == 0 || fl > PROJ_NAME_MAX) {
		srv_send_error(c, req->id, WB_BAD_REQUEST,
		               "%s: type and field must be 1..255 bytes each",
		               create ? "CreateIndex" : "DropIndex");
		return false;
	}
	Whizbang__V1__Op op = WHIZBANG__V1__OP__INIT, *ops[1] = {&op};
	op.kind_case =
	        create ? WHIZBANG__V1__OP__KIND_CREATE_INDEX : WHIZBANG__V1__OP__KIND_DROP_INDEX;
	if (create)
		op.create_index = &spec;
	else
		op.drop_index = &spec;
	size_t len;
	uint8_t *packed = pack_ops(c, req->id, ops, 1, &len);
	if (packed == NULL)
		return false;
	coord_index(ls->coord, (struct coord_req){req, &c->leases}, packed, len, now());
	free(packed);
	return true;
}

bool lsrv_dispatch(struct conn *c, Request *req)
{
	struct lsrv *ls = c->srv->lsrv;
	struct coord_req r = {req, &c->leases};
	switch (req->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_LEASE:
		return handle_lease(ls, c, req);
	case WHIZBANG__V1__REQUEST__BODY_EXTEND:
		coord_extend(ls->coord, r, req->extend->sequence, req->extend->token,
		             req->extend->duration_ms, now());
		return true;
	case WHIZBANG__V1__REQUEST__BODY_RELEASE:
		coord_release(ls->coord, r, req->release->sequence, req->release->token, now());
		return true;
	case WHIZBANG__V1__REQUEST__BODY_STAGE:
		return handle_stage(ls, c, req);
	case WHIZBANG__V1__REQUEST__BODY_COMMIT:
		return handle_commit(ls, c, req);
	case WHIZBANG__V1__REQUEST__BODY_READ_LEDGER:
		handle_read_ledger(ls, c, req);
		return false;
	case WHIZBANG__V1__REQUEST__BODY_GET_WATERMARK:
		send_watermark(c, req->id, coord_watermark(ls->coord), true,
		               coord_next_seq(ls->coord));
		return false;
	case WHIZBANG__V1__REQUEST__BODY_WAIT_FOR_WATERMARK:
		coord_wait(ls->coord, r, req->wait_for_watermark->sequence,
		           req->wait_for_watermark->timeout_ms, now());
		return true;
	case WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX:
	case WHIZBANG__V1__REQUEST__BODY_DROP_INDEX:
		return handle_index(ls, c, req);
	default:
		srv_send_error(c, req->id, WB_BAD_REQUEST, "not a lease or ledger request");
		return false;
	}
}

void lsrv_conn_closed(struct conn *c)
{
	coord_owner_closed(c->srv->lsrv->coord, &c->leases, now());
}

/* ------------------------------------------------------------ start, stop */

/* A replay that rebuilds the read models and did not finish leaves them
 * half made: refuse to start on them. */
static int check_rebuild(struct srv *srv, char *errmsg, size_t errlen)
{
	struct storage_txn *txn;
	uint64_t rebuilding = 0;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
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
		         srv->cfg.data_dir);
		return WB_E_INVAL;
	}
	return 0;
}

int lsrv_init(struct srv *srv, char *errmsg, size_t errlen)
{
	struct lsrv *ls = calloc(1, sizeof(*ls));
	if (ls == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	ls->srv = srv;
	ls->pcfg.max_scan = srv->cfg.max_scan;
	ls->io = (struct coord_io){
	        .data = ls,
	        .submit = io_submit,
	        .answer = io_answer,
	        .deadline = io_deadline,
	        .log = io_log,
	};
	const struct srv_config *cfg = &srv->cfg;
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
		rc = coord_start(&ls->coord, &cc, &ls->io, srv->st, now(), &rec, errmsg, errlen);
	if (rc != 0) {
		free(ls);
		return rc;
	}
	uv_timer_init(srv->loop, &ls->timer);
	ls->timer.data = ls;
	ls->timer_open = true;
	srv->lsrv = ls;
	srv_log(LOG_INFO, "ledger_recovered", "watermark=%llu restart_gaps=%llu recovered=%llu",
	        (unsigned long long)rec.ledger.watermark, (unsigned long long)rec.ledger.gaps,
	        (unsigned long long)rec.ledger.recovered);
	return 0;
}

void lsrv_shutdown(struct srv *srv)
{
	struct lsrv *ls = srv->lsrv;
	if (ls == NULL || !ls->timer_open)
		return;
	coord_shutdown(ls->coord);
	ls->timer_open = false;
	uv_close((uv_handle_t *)&ls->timer, NULL);
}

void lsrv_close(struct srv *srv)
{
	struct lsrv *ls = srv->lsrv;
	if (ls == NULL)
		return;
	coord_close(ls->coord);
	free(ls);
	srv->lsrv = NULL;
}

/* ------------------------------------------------------------ figures */

void lsrv_fill_stats(struct srv *srv, Whizbang__V1__ServerStats *s)
{
	struct lsrv *ls = srv->lsrv;
	uint64_t t = mono_ms();
	struct coord_stats cs;
	coord_stats(ls->coord, t, &cs);
	s->entries_applied = cs.applied.entries;
	s->apply_failures = cs.applied.failures;
	s->explosions = cs.applied.explosions;
	s->exploded_ids = cs.applied.exploded_ids;
	s->explosion_us_total = cs.applied.explosion_us;
	s->queries = srv->queries;
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
