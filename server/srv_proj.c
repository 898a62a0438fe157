/* Read-model requests (DESIGN.md §7): GetEntity, QueryEntities, Explain,
 * ListIndexes and Verify.
 *
 * Happy path: the request goes to a libuv worker thread, which reads from
 * a snapshot (a read transaction of its own), builds the answer and packs
 * it there; the loop only sends the packed bytes. A big query or a Verify
 * therefore never stalls the loop, and the snapshot never outlives the
 * work. The connection counts the work as in flight, so it is not freed
 * before the answer comes back.
 *
 * What a request holds until it is answered (the decoded request and its
 * work) is counted for its connection against the memory budget
 * (CONN_MEM_READS), besides the bounds on how many may wait.
 *
 * Failure modes: a closed connection drops the answer; a storage failure
 * answers the mapped error; a refused scan answers QUERY_TOO_EXPENSIVE with
 * the counts; a second Verify while one runs answers RESOURCE_EXHAUSTED.
 * Verify copies the store (compacting, from one snapshot) into a scratch
 * directory inside the data directory, replays its ledger into another,
 * compares the digests and removes both. */
#include <dirent.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eval.h"
#include "ledger.h"
#include "log.h"
#include "pb.h"
#include "proj.h"
#include "replay.h"
#include "server.h"
#include "validate.h"
#include "wb_error.h"
#include "wire.h"

/* ------------------------------------------------------------ work */

/* The module's state. */
struct readmodels {
	struct srv *srv;
	unsigned slot;    /* per connection: its requests queued or running */
	bool verifying;   /* a Verify is running (one at a time) */
	uint64_t queries; /* requests answered */
	uint64_t queued;  /* requests queued or running, all connections */
	uint64_t last_trim_ms;
};

/* A connection's count of queued or running requests, kept in its slot as
 * an integer (nothing to free when it closes). */
static uintptr_t conn_queued(const struct readmodels *rm, const struct conn *c)
{
	return (uintptr_t)conn_slot(c, rm->slot);
}

static void conn_queued_add(struct readmodels *rm, struct conn *c, int d)
{
	conn_set_slot(c, rm->slot, (void *)(conn_queued(rm, c) + (uintptr_t)(intptr_t)d));
}

struct pwork;
typedef void (*pwork_fn)(struct pwork *w, struct storage_txn *txn);

struct pwork {
	uv_work_t work;
	struct readmodels *rm;
	struct conn *conn;
	Request *req;
	/* What runs on the worker: in a snapshot of its own (snapshot), or
	 * with none (Verify makes its own copy). */
	pwork_fn run;
	bool snapshot;
	/* Read-only on the worker. */
	const struct srv_config *cfg;
	struct storage *st;
	struct proj_config pcfg;
	/* the answer, built on the worker */
	uint8_t *out;
	size_t out_len;
	int rc;
	char msg[512];
	/* What it holds for its connection until answered (the request and
	 * this), counted against the memory budget. */
	size_t held;
};

static int work_fail(struct pwork *w, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int work_fail(struct pwork *w, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
	w->rc = rc;
	return rc;
}

/* Packs resp as the work's answer. */
static void pack_answer(struct pwork *w, const Response *resp)
{
	w->rc = srv_pack(resp, w->cfg->max_frame, &w->out, &w->out_len, w->msg, sizeof(w->msg));
}

static Whizbang__V1__Value *value_pb(struct arena *a, const struct proj_value *v)
{
	Whizbang__V1__Value *pv = arena_alloc(a, sizeof(*pv));
	if (pv == NULL)
		return NULL;
	whizbang__v1__value__init(pv);
	switch (v->type) {
	case PROJ_NULL:
		pv->kind_case = WHIZBANG__V1__VALUE__KIND_NULL_VALUE;
		pv->null_value = true;
		break;
	case PROJ_BOOL:
		pv->kind_case = WHIZBANG__V1__VALUE__KIND_BOOL_VALUE;
		pv->bool_value = v->u.b;
		break;
	case PROJ_INT:
		pv->kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
		pv->int_value = v->u.i;
		break;
	case PROJ_DOUBLE:
		pv->kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
		pv->double_value = v->u.d;
		break;
	case PROJ_STRING:
		pv->kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
		pv->string_value = arena_strndup(a, v->u.s.p, v->u.s.len);
		if (pv->string_value == NULL)
			return NULL;
		break;
	case PROJ_BYTES:
		pv->kind_case = WHIZBANG__V1__VALUE__KIND_BYTES_VALUE;
		/* Points into the snapshot: packed before it ends. */
		pv->bytes_value.data = (uint8_t *)v->u.s.p;
		pv->bytes_value.len = v->u.s.len;
		break;
	}
	return pv;
}

static Whizbang__V1__Entity *entity_pb(struct arena *a, const char *type, const char *id,
                                       size_t id_len, const struct proj_record *r)
{
	Whizbang__V1__Entity *e = arena_alloc(a, sizeof(*e));
	if (e == NULL)
		return NULL;
	whizbang__v1__entity__init(e);
	e->type = (char *)type;
	e->id = arena_strndup(a, id, id_len);
	e->version = r->version;
	e->created_sequence = r->created_seq;
	e->updated_sequence = r->updated_seq;
	e->fields = arena_alloc(a, (r->nfields > 0 ? r->nfields : 1) * sizeof(*e->fields));
	if (e->id == NULL || e->fields == NULL)
		return NULL;
	size_t off = 0;
	struct proj_field f;
	while (proj_record_next(r, &off, &f)) {
		Whizbang__V1__Field *pf = arena_alloc(a, sizeof(*pf));
		if (pf == NULL)
			return NULL;
		whizbang__v1__field__init(pf);
		pf->name = arena_strndup(a, f.name, f.name_len);
		pf->value = value_pb(a, &f.v);
		if (pf->name == NULL || pf->value == NULL)
			return NULL;
		e->fields[e->n_fields++] = pf;
	}
	return e;
}

static const Whizbang__V1__Expr *where_expr(const Whizbang__V1__Where *w)
{
	return w != NULL ? w->expr : NULL;
}

/* Answers a refused scan or a storage failure of the work. */
static int storage_fail(struct pwork *w, int rc, const char *type, const struct proj_plan *plan)
{
	if (rc == WB_QUERY_TOO_EXPENSIVE) {
		proj_refusal(plan, type, &w->pcfg, w->msg, sizeof(w->msg));
		w->rc = rc;
		return rc;
	}
	if (rc == WB_BAD_REQUEST)
		return work_fail(w, rc, "type and id must be 1..255 bytes without NUL");
	return work_fail(w, wb_error_to_wire(rc), "reading the read models: %s", wb_strerror(rc));
}

static void do_get(struct pwork *w, struct storage_txn *txn)
{
	const Whizbang__V1__GetEntity *g = w->req->get_entity;
	struct proj_record r;
	int rc = proj_get(txn, g->type, strlen(g->type), g->id, strlen(g->id), &r);
	if (rc == WB_E_NOTFOUND) {
		work_fail(w, WB_NOT_FOUND, "no entity %s/%s", g->type, g->id);
		return;
	}
	if (rc != 0) {
		storage_fail(w, rc, g->type, NULL);
		return;
	}
	struct arena a = {0};
	Whizbang__V1__GetEntityResult res = WHIZBANG__V1__GET_ENTITY_RESULT__INIT;
	res.entity = entity_pb(&a, g->type, g->id, strlen(g->id), &r);
	if (res.entity == NULL) {
		work_fail(w, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	} else {
		SRV_RESPONSE(resp, w->req->id, GET_ENTITY, get_entity, &res);
		pack_answer(w, &resp);
	}
	arena_free(&a);
}

/* A page of entities; full once one did not fit. */
struct qpage {
	struct page page;
	const char *type;
	bool full;
};

static int query_visit(const char *id, size_t id_len, const struct proj_record *r, void *arg)
{
	struct qpage *q = arg;
	Whizbang__V1__Entity *e = entity_pb(&q->page.a, q->type, id, id_len, r);
	size_t sz = e != NULL ? whizbang__v1__entity__get_packed_size(e) + 8 : 0;
	if (e != NULL && !page_fits(&q->page, sz)) {
		q->full = true;
		return PROJ_STOP;
	}
	return page_add(&q->page, e, sz) ? 0 : PROJ_STOP;
}

static void do_query(struct pwork *w, struct storage_txn *txn)
{
	const Whizbang__V1__QueryEntities *qe = w->req->query_entities;
	uint32_t limit = qe->limit;
	if (limit == 0 || limit > w->cfg->max_query_count)
		limit = (uint32_t)w->cfg->max_query_count;
	struct qpage q = {.page = {.budget = w->cfg->max_frame - SRV_READ_ENVELOPE},
	                  .type = qe->type};
	struct proj_query_info info;
	int rc = proj_query(txn, qe->type, strlen(qe->type), where_expr(qe->where), qe->after,
	                    strlen(qe->after), limit, &w->pcfg, query_visit, &q, &info);
	if (rc == 0 && q.page.nomem)
		work_fail(w, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	else if (rc != 0)
		storage_fail(w, rc, qe->type, &info.plan);
	if (rc == 0 && !q.page.nomem) {
		Whizbang__V1__Entity **ents = (Whizbang__V1__Entity **)q.page.items;
		size_t n = q.page.n;
		Whizbang__V1__QueryResult res = WHIZBANG__V1__QUERY_RESULT__INIT;
		res.n_entities = n;
		res.entities = ents;
		res.next_after = n > 0 ? ents[n - 1]->id : (char *)qe->after;
		res.end = info.end && !q.full;
		res.strategy = info.plan.strategy;
		res.plan = info.plan.text;
		res.examined = info.examined;
		struct ledger_state st;
		if (ledger_get_state(txn, &st) == 0)
			res.watermark = st.watermark;
		SRV_RESPONSE(resp, w->req->id, QUERY, query, &res);
		pack_answer(w, &resp);
	}
	page_free(&q.page);
}

static void do_explain(struct pwork *w, struct storage_txn *txn)
{
	const Whizbang__V1__Explain *x = w->req->explain;
	struct proj_plan plan;
	int rc = proj_explain(txn, x->type, strlen(x->type), where_expr(x->where), &w->pcfg, &plan);
	if (rc != 0) {
		storage_fail(w, rc, x->type, &plan);
		return;
	}
	Whizbang__V1__PlanResult res = WHIZBANG__V1__PLAN_RESULT__INIT;
	res.strategy = plan.strategy;
	res.plan = plan.text;
	res.estimated_candidates = plan.estimate;
	res.type_entities = plan.type_entities;
	res.refused = plan.refused;
	res.max_scan = w->pcfg.max_scan;
	res.max_candidates = w->pcfg.max_candidates;
	SRV_RESPONSE(resp, w->req->id, PLAN, plan, &res);
	pack_answer(w, &resp);
}

static int index_visit(const struct proj_index_info *info, void *arg)
{
	struct page *p = arg;
	Whizbang__V1__IndexInfo *ii = arena_alloc(&p->a, sizeof(*ii));
	if (ii != NULL) {
		whizbang__v1__index_info__init(ii);
		ii->type = arena_strndup(&p->a, info->type, strlen(info->type));
		ii->field = arena_strndup(&p->a, info->field, strlen(info->field));
		ii->entries = info->entries;
		ii->created_sequence = info->created_seq;
		if (ii->type == NULL || ii->field == NULL)
			ii = NULL;
	}
	return page_add(p, ii, 0) ? 0 : WB_E_NOMEM;
}

static void do_list_indexes(struct pwork *w, struct storage_txn *txn)
{
	struct page p = {.budget = SIZE_MAX};
	int rc = proj_index_list(txn, w->req->list_indexes->type, index_visit, &p);
	if (rc != 0) {
		storage_fail(w, rc, w->req->list_indexes->type, NULL);
	} else {
		Whizbang__V1__IndexList res = WHIZBANG__V1__INDEX_LIST__INIT;
		res.n_indexes = p.n;
		res.indexes = (Whizbang__V1__IndexInfo **)p.items;
		SRV_RESPONSE(resp, w->req->id, INDEXES, indexes, &res);
		pack_answer(w, &resp);
	}
	page_free(&p);
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void do_verify(struct pwork *w, struct storage_txn *unused)
{
	(void)unused;
	uint64_t t0 = mono_us();
	char snap[1100], scratch[1100];
	snprintf(snap, sizeof(snap), "%s/.verify-snapshot-XXXXXX", w->cfg->data_dir);
	snprintf(scratch, sizeof(scratch), "%s/.verify-replay-XXXXXX", w->cfg->data_dir);
	if (mkdtemp(snap) == NULL) {
		work_fail(w, WB_INTERNAL, "cannot make a scratch directory in the data directory");
		return;
	}
	if (mkdtemp(scratch) == NULL || rmdir(scratch) != 0) {
		rmdir(snap);
		work_fail(w, WB_INTERNAL, "cannot make a scratch directory in the data directory");
		return;
	}
	/* One consistent snapshot, copied: the server keeps writing. */
	int rc = storage_backup(w->st, snap, true);
	struct storage *copy = NULL;
	char err[256] = "";
	if (rc == 0) {
		struct storage_options so = {.path = snap, .no_sync = true};
		rc = storage_open(&copy, &so, err, sizeof(err));
	}
	struct proj_verify_result vr;
	if (rc == 0)
		rc = proj_verify(copy, scratch, &w->pcfg, NULL, NULL, &vr, err, sizeof(err));
	storage_close(copy);
	proj_remove_store(snap);
	if (rc != 0) {
		work_fail(w, wb_error_to_wire(rc), "verify failed: %s%s%s", wb_strerror(rc),
		          err[0] != '\0' ? ": " : "", err);
		return;
	}
	Whizbang__V1__VerifyResult res = WHIZBANG__V1__VERIFY_RESULT__INIT;
	res.match = vr.match;
	res.live_digest.data = vr.live_digest;
	res.live_digest.len = PROJ_DIGEST_LEN;
	res.replay_digest.data = vr.replay_digest;
	res.replay_digest.len = PROJ_DIGEST_LEN;
	res.watermark = vr.replay.watermark;
	res.entries_replayed = vr.replay.entries;
	res.entities = vr.entities;
	res.first_difference = vr.first_difference;
	res.micros = mono_us() - t0;
	SRV_RESPONSE(resp, w->req->id, VERIFY, verify, &res);
	pack_answer(w, &resp);
}

static void work_cb(uv_work_t *req)
{
	struct pwork *w = req->data;
	struct storage_txn *txn = NULL;
	if (w->snapshot) {
		int rc = storage_txn_begin(w->st, NULL, STORAGE_RDONLY, &txn);
		if (rc != 0) {
			storage_fail(w, rc, "", NULL);
			return;
		}
	}
	w->run(w, txn);
	if (txn != NULL)
		storage_txn_abort(txn);
}

static void after_work_cb(uv_work_t *req, int status)
{
	struct pwork *w = req->data;
	struct readmodels *rm = w->rm;
	struct conn *c = w->conn;
	if (w->run == do_verify)
		rm->verifying = false;
	rm->queries++;
	if (conn_is_closing(c))
		; /* nobody to answer */
	else if (status != 0)
		srv_error(c, w->req->id, WB_INTERNAL, "the request was cancelled");
	else if (w->rc != 0) {
		srv_error(c, w->req->id, w->rc, "%s", w->msg);
		if (w->rc == WB_QUERY_TOO_EXPENSIVE)
			srv_quota_refused(rm->srv, c);
	} else {
		conn_send(c, w->out, w->out_len);
	}
	free(w->out);
	whizbang__v1__request__free_unpacked(w->req, NULL);
	conn_mem_add(c, CONN_MEM_READS, -(int64_t)w->held);
	free(w);
	rm->queued--;
	conn_queued_add(rm, c, -1);
	/* The queue drained: give the memory large requests left in the
	 * allocator's free lists back to the system, at most once a second
	 * (malloc_trim walks the heap). */
	uint64_t now = uv_now(srv_loop(rm->srv));
	if (rm->queued == 0 && now - rm->last_trim_ms >= 1000) {
		rm->last_trim_ms = now;
		malloc_trim(0);
	}
	srv_work_done(rm->srv, c);
}

/* Removes the scratch stores of a Verify that a crash interrupted
 * (DATA_DIR/.verify-*). */
static void remove_leftovers(const char *data_dir)
{
	DIR *d = opendir(data_dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, ".verify-", 8) != 0)
			continue;
		char path[1400];
		snprintf(path, sizeof(path), "%s/%s", data_dir, e->d_name);
		proj_remove_store(path);
		srv_log(WB_LOG_INFO, "verify_leftover_removed", "path=%s", path);
	}
	closedir(d);
}

/* Checks what can be checked on the loop, then hands req to a worker that
 * runs run. */
static bool submit(struct readmodels *rm, struct conn *c, Request *req, pwork_fn run, bool snapshot)
{
	struct srv *srv = rm->srv;
	const struct srv_config *cfg = srv_config(srv);
	char why[256];
	struct proj_where_limits lim;
	validate_where_limits(srv_config(srv), &lim);
	int rc = validate_read_model(req, &lim, why, sizeof(why));
	if (rc != 0) {
		srv_error(c, req->id, rc, "%s", why);
		if (rc == WB_QUERY_TOO_EXPENSIVE)
			srv_quota_refused(srv, c);
		return false;
	}
	/* Bounded: what waits for a worker holds its request in memory. */
	if (conn_queued(rm, c) >= cfg->max_queries_per_connection) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "this connection has %llu read-model requests in progress, the most one "
		          "may (--max-queries-per-connection): wait for their answers",
		          (unsigned long long)conn_queued(rm, c));
		srv_quota_refused(srv, c);
		return false;
	}
	if (rm->queued >= cfg->max_queries_queued) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "the server has %llu read-model requests in progress, the most it takes "
		          "(--max-queries-queued): retry later",
		          (unsigned long long)rm->queued);
		return false;
	}
	struct pwork *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	w->rm = rm;
	w->conn = c;
	w->req = req;
	w->run = run;
	w->snapshot = snapshot;
	w->cfg = srv_config(srv);
	w->st = srv_storage(srv);
	w->pcfg.max_scan = w->cfg->max_scan;
	w->pcfg.max_candidates = w->cfg->max_candidates;
	w->work.data = w;
	w->held = sizeof(*w) + wire_message_memory(&req->base);
	rc = uv_queue_work(srv_loop(srv), &w->work, work_cb, after_work_cb);
	if (rc != 0) {
		free(w);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "cannot queue the request: %s",
		          uv_strerror(rc));
		return false;
	}
	srv_work_begin(srv, c);
	conn_mem_add(c, CONN_MEM_READS, (int64_t)w->held);
	rm->queued++;
	conn_queued_add(rm, c, 1);
	return true; /* the work keeps req */
}

static bool get_entity(void *state, struct conn *c, Request *req)
{
	return submit(state, c, req, do_get, true);
}

static bool query_entities(void *state, struct conn *c, Request *req)
{
	return submit(state, c, req, do_query, true);
}

static bool explain(void *state, struct conn *c, Request *req)
{
	return submit(state, c, req, do_explain, true);
}

static bool list_indexes(void *state, struct conn *c, Request *req)
{
	return submit(state, c, req, do_list_indexes, true);
}

static bool verify(void *state, struct conn *c, Request *req)
{
	struct readmodels *rm = state;
	if (rm->verifying) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "a Verify is already running: wait for its answer");
		return false;
	}
	bool kept = submit(rm, c, req, do_verify, false);
	if (kept)
		rm->verifying = true;
	return kept;
}

/* ------------------------------------------------------------ the module */

static int readmodels_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct readmodels *rm = state;
	(void)errmsg;
	(void)errlen;
	rm->srv = srv;
	rm->slot = slot;
	remove_leftovers(srv_config(srv)->data_dir);
	return 0;
}

static void readmodels_stats(void *state, Whizbang__V1__ServerStats *s)
{
	const struct readmodels *rm = state;
	s->queries = rm->queries;
}

static const struct srv_handler readmodel_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_GET_ENTITY, get_entity},
        {WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES, query_entities},
        {WHIZBANG__V1__REQUEST__BODY_EXPLAIN, explain},
        {WHIZBANG__V1__REQUEST__BODY_LIST_INDEXES, list_indexes},
        {WHIZBANG__V1__REQUEST__BODY_VERIFY, verify},
};

const struct srv_module srv_proj_module = {
        .name = "read models",
        .size = sizeof(struct readmodels),
        .init = readmodels_init,
        .stats = readmodels_stats,
        .handlers = readmodel_handlers,
        .nhandlers = sizeof(readmodel_handlers) / sizeof(readmodel_handlers[0]),
};
