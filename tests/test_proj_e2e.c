/* End-to-end tests of the read models (DESIGN.md §7) over the protocol: a
 * real whizbangd on port 0, ops committed through leases, entities read
 * back, explosions in the ledger, hostile read-model requests, refused
 * scans, and replay verification online, after SIGKILL and offline. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e_util.h"
#include "optext.h"
#include "wb.h"

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

TestSuite(proj_e2e, .fini = e2e_suite_fini);

/* Sends req and returns its answer (the caller frees it). */
static Response *call(struct wb_client *c, Request *req)
{
	uint64_t id;
	cr_assert_eq(wb_send(c, req, &id), 0, "send: %s", wb_errmsg(c));
	cr_assert_eq(wb_flush(c), 0);
	Response *r = NULL;
	int rc = wb_recv(c, &r);
	if (rc != 0)
		e2e_log_tail(&e2e_srv, 10);
	cr_assert_eq(rc, 0, "recv: %s (%s)", wb_error_name(rc), wb_errmsg(c));
	cr_assert_eq(r->id, id);
	return r;
}

static int code_of(const Response *r)
{
	return r->error != NULL ? (int)r->error->code : 0;
}

/* Leases one sequence for projection p, commits the ops of text with
 * ACK_APPLIED and returns the answer. */
static Response *apply(struct wb_client *c, const char *p, const char *text)
{
	Whizbang__V1__OpList *ops;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops(text, &ops, &err), 0, "%s: column %zu: %s", text, err.column,
	             err.message);
	struct wb_lease_args la = {.projection = p, .count = 1};
	struct wb_lease_grant g;
	size_t n;
	cr_assert_eq(wb_lease(c, &la, &g, 1, &n), 0, "lease: %s", wb_errmsg(c));
	uint64_t id;
	cr_assert_eq(wb_commit_send(c, g.sequence, g.token, ops, true, false, &id), 0);
	cr_assert_eq(wb_flush(c), 0);
	Response *r = NULL;
	cr_assert_eq(wb_recv(c, &r), 0, "commit: %s", wb_errmsg(c));
	optext_free_ops(ops);
	return r;
}

/* apply() that must succeed with every op applied. */
static void apply_ok(struct wb_client *c, const char *text)
{
	Response *r = apply(c, "p", text);
	cr_assert_eq(code_of(r), 0, "%s: %s", text, r->error ? r->error->message : "");
	cr_assert_eq(r->commit->apply_error, 0, "%s: apply error %d %s", text,
	             r->commit->apply_error, r->commit->apply_error_message);
	whizbang__v1__response__free_unpacked(r, NULL);
}

static Response *get_entity(struct wb_client *c, const char *type, const char *id)
{
	Whizbang__V1__GetEntity g = WHIZBANG__V1__GET_ENTITY__INIT;
	g.type = (char *)type;
	g.id = (char *)id;
	Request req = E2E_REQUEST(GET_ENTITY, get_entity, &g);
	return call(c, &req);
}

static const Whizbang__V1__Value *field(const Whizbang__V1__Entity *e, const char *name)
{
	for (size_t i = 0; i < e->n_fields; i++)
		if (strcmp(e->fields[i]->name, name) == 0)
			return e->fields[i]->value;
	return NULL;
}

/* Queries type with the clause text (NULL: all); the caller frees. */
static Response *query(struct wb_client *c, const char *type, const char *where, const char *after,
                       uint32_t limit)
{
	Whizbang__V1__Expr *expr = NULL;
	struct optext_error err;
	if (where != NULL)
		cr_assert_eq(optext_parse_where(where, &expr, &err), 0, "%s", err.message);
	Request req = WHIZBANG__V1__REQUEST__INIT;
	Whizbang__V1__QueryEntities q = WHIZBANG__V1__QUERY_ENTITIES__INIT;
	Whizbang__V1__Where w = WHIZBANG__V1__WHERE__INIT;
	q.type = (char *)type;
	if (expr != NULL) {
		w.expr = expr;
		w.text = (char *)where;
		q.where = &w;
	}
	q.after = (char *)(after != NULL ? after : "");
	q.limit = limit;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES;
	req.query_entities = &q;
	Response *r = call(c, &req);
	if (expr != NULL)
		optext_free_expr(expr);
	return r;
}

static Response *index_call(struct wb_client *c, bool create, const char *type, const char *f)
{
	Request req = WHIZBANG__V1__REQUEST__INIT;
	Whizbang__V1__CreateIndex ci = WHIZBANG__V1__CREATE_INDEX__INIT;
	Whizbang__V1__DropIndex di = WHIZBANG__V1__DROP_INDEX__INIT;
	if (create) {
		ci.type = (char *)type;
		ci.field = (char *)f;
		req.body_case = WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX;
		req.create_index = &ci;
	} else {
		di.type = (char *)type;
		di.field = (char *)f;
		req.body_case = WHIZBANG__V1__REQUEST__BODY_DROP_INDEX;
		req.drop_index = &di;
	}
	return call(c, &req);
}

static Response *verify(struct wb_client *c)
{
	Whizbang__V1__Verify v = WHIZBANG__V1__VERIFY__INIT;
	Request req = E2E_REQUEST(VERIFY, verify, &v);
	return call(c, &req);
}

static void expect_code(Response *r, int code, const char *what)
{
	cr_assert_eq(code_of(r), code, "%s: want %s, got %s (%s)", what, wb_error_name(code),
	             wb_error_name(code_of(r)), r->error != NULL ? r->error->message : "");
	if (code != 0)
		cr_assert(r->error->message != NULL && r->error->message[0] != '\0',
		          "%s: no message", what);
	whizbang__v1__response__free_unpacked(r, NULL);
}

static void assert_verified(struct wb_client *c, const char *when)
{
	Response *r = verify(c);
	cr_assert_eq(code_of(r), 0, "%s: Verify: %s", when, r->error ? r->error->message : "");
	cr_assert(r->verify->match, "%s: replay differs: %s", when, r->verify->first_difference);
	cr_assert_eq(r->verify->live_digest.len, 16);
	cr_assert_eq(memcmp(r->verify->live_digest.data, r->verify->replay_digest.data, 16), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
}

Test(proj_e2e, apply_read_query_and_explode)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_proj_e2e");
	apply_ok(c,
	         "upsert Order \"o-1\" {customer_id: \"c-42\", status: \"Pending\", total: 120}; "
	         "upsert Order \"o-2\" {customer_id: \"c-42\", status: \"OnHold\", total: 80.5}; "
	         "upsert Order \"o-3\" {customer_id: \"c-7\", status: \"Pending\", total: 300}");
	Response *r =
	        apply(c, "p",
	              "update Order where customer_id == \"c-42\" and status in (\"Pending\", "
	              "\"OnHold\") and total >= 100 set status = \"Cancelled\", inc revision by 1");
	cr_assert_eq(code_of(r), 0);
	cr_assert_eq(r->commit->apply_error, 0);
	cr_assert_eq(r->commit->n_results, 1);
	cr_assert_eq(r->commit->results[0]->matched, 1, "matched %llu",
	             (unsigned long long)r->commit->results[0]->matched);
	cr_assert_eq(r->commit->results[0]->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
	uint64_t seq = r->commit->sequence;
	whizbang__v1__response__free_unpacked(r, NULL);

	r = get_entity(c, "Order", "o-1");
	cr_assert_eq(code_of(r), 0);
	const Whizbang__V1__Entity *e = r->get_entity->entity;
	cr_assert_eq(e->version, 2);
	cr_assert_eq(e->updated_sequence, seq);
	cr_assert_str_eq(field(e, "status")->string_value, "Cancelled");
	cr_assert_eq(field(e, "revision")->int_value, 1);
	cr_assert_eq(field(e, "total")->int_value, 120);
	whizbang__v1__response__free_unpacked(r, NULL);
	expect_code(get_entity(c, "Order", "o-9"), WB_NOT_FOUND, "missing entity");

	/* The ledger entry holds the explosion: the one matched id. */
	Whizbang__V1__ReadLedgerResult *lr;
	cr_assert_eq(wb_read_ledger(c, seq, 1, &lr), 0);
	cr_assert_eq(lr->n_entries, 1);
	cr_assert(lr->entries[0]->applied);
	const Whizbang__V1__Explosion *x = lr->entries[0]->ops[0]->update->exploded;
	cr_assert_not_null(x);
	cr_assert_eq(x->count, 1);
	cr_assert_eq(x->ids.len, 2 + 3, "front-coded [o-1]");
	cr_assert_eq(memcmp(x->ids.data + 2, "o-1", 3), 0);
	cr_assert_eq(x->examined, 3);
	wb_ledger_free(lr);

	/* Index, then the same clause is driven by it. */
	r = index_call(c, true, "Order", "customer_id");
	cr_assert_eq(code_of(r), 0, "%s", r->error ? r->error->message : "");
	cr_assert_eq(r->index->index->entries, 3);
	whizbang__v1__response__free_unpacked(r, NULL);
	r = query(c, "Order", "customer_id == \"c-42\"", NULL, 0);
	cr_assert_eq(code_of(r), 0);
	cr_assert_eq(r->query->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	cr_assert_eq(r->query->n_entities, 2);
	cr_assert_str_eq(r->query->entities[0]->id, "o-1");
	cr_assert_str_eq(r->query->entities[1]->id, "o-2");
	cr_assert(r->query->end);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* Pagination: ids in order, each once. */
	r = query(c, "Order", NULL, NULL, 2);
	cr_assert_eq(r->query->n_entities, 2);
	cr_assert(!r->query->end);
	char after[64];
	snprintf(after, sizeof(after), "%s", r->query->next_after);
	whizbang__v1__response__free_unpacked(r, NULL);
	r = query(c, "Order", NULL, after, 2);
	cr_assert_eq(r->query->n_entities, 1);
	cr_assert_str_eq(r->query->entities[0]->id, "o-3");
	whizbang__v1__response__free_unpacked(r, NULL);

	/* Delete by where, create_if_none. */
	apply_ok(c, "delete Order where status == \"Cancelled\"");
	expect_code(get_entity(c, "Order", "o-1"), WB_NOT_FOUND, "deleted");
	r = apply(c, "p",
	          "update Order where customer_id == \"c-99\" set n = 1 create \"o-99\" {n: 0}");
	cr_assert_eq(r->commit->results[0]->matched, 0);
	cr_assert(r->commit->results[0]->created);
	whizbang__v1__response__free_unpacked(r, NULL);
	expect_code(get_entity(c, "Order", "o-99"), 0, "created");

	/* All or nothing: the second op fails, the first leaves no trace. */
	r = apply(c, "p",
	          "upsert Order \"o-50\" {a: 1}; update Order where customer_id == \"c-7\" inc "
	          "status by 1");
	cr_assert_eq(code_of(r), 0);
	cr_assert_eq(r->commit->apply_error, WB_BAD_REQUEST);
	cr_assert_eq(r->commit->failed_op, 2);
	whizbang__v1__response__free_unpacked(r, NULL);
	expect_code(get_entity(c, "Order", "o-50"), WB_NOT_FOUND, "rolled back upsert");

	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(c, &st), 0);
	cr_assert_geq(st->explosions, 3);
	cr_assert_geq(st->apply_failures, 1);
	wb_stats_free(st);
	assert_verified(c, "after the session");
	e2e_suite_stop_client(c);
}

Test(proj_e2e, hostile_read_model_requests)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_proj_e2e");
	char big[400];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	expect_code(get_entity(c, "Order", ""), WB_BAD_REQUEST, "empty id");
	expect_code(get_entity(c, "", "o-1"), WB_BAD_REQUEST, "empty type");
	expect_code(get_entity(c, "Order", big), WB_BAD_REQUEST, "id over 255 bytes");
	expect_code(get_entity(c, big, "o-1"), WB_BAD_REQUEST, "type over 255 bytes");
	expect_code(query(c, "Order", NULL, big, 0), WB_BAD_REQUEST, "cursor over 255 bytes");

	/* A Where without an expression, an empty in list, a bad compare op. */
	Whizbang__V1__QueryEntities q = WHIZBANG__V1__QUERY_ENTITIES__INIT;
	Whizbang__V1__Where w = WHIZBANG__V1__WHERE__INIT;
	q.type = "Order";
	q.where = &w;
	Request req = E2E_REQUEST(QUERY_ENTITIES, query_entities, &q);
	expect_code(call(c, &req), WB_INVALID_EXPRESSION, "where without expr");
	Whizbang__V1__Expr ex = WHIZBANG__V1__EXPR__INIT;
	Whizbang__V1__InList il = WHIZBANG__V1__IN_LIST__INIT;
	il.field = "status";
	ex.node_case = WHIZBANG__V1__EXPR__NODE_IN_LIST;
	ex.in_list = &il;
	w.expr = &ex;
	expect_code(call(c, &req), WB_INVALID_EXPRESSION, "empty in list");
	Whizbang__V1__Expr none = WHIZBANG__V1__EXPR__INIT;
	w.expr = &none;
	expect_code(call(c, &req), WB_INVALID_EXPRESSION, "expr with no node");

	/* Ops a client may not send: a NaN, an explosion of its own. */
	Whizbang__V1__OpList *ops;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops("upsert Order \"o-1\" {a: 1.5}", &ops, &err), 0);
	ops->ops[0]->upsert->fields[0]->value->double_value = __builtin_nan("");
	struct wb_lease_args la = {.projection = "p", .count = 1};
	struct wb_lease_grant g;
	size_t n;
	cr_assert_eq(wb_lease(c, &la, &g, 1, &n), 0);
	uint64_t id;
	cr_assert_eq(wb_commit_send(c, g.sequence, g.token, ops, true, false, &id), 0);
	cr_assert_eq(wb_flush(c), 0);
	Response *r = NULL;
	cr_assert_eq(wb_recv(c, &r), 0);
	expect_code(r, WB_BAD_REQUEST, "NaN value");
	optext_free_ops(ops);
	cr_assert_eq(optext_parse_ops("delete Order where a == 1", &ops, &err), 0);
	Whizbang__V1__Explosion fake = WHIZBANG__V1__EXPLOSION__INIT;
	ops->ops[0]->delete_->exploded = &fake;
	cr_assert_eq(wb_commit_send(c, g.sequence, g.token, ops, true, false, &id), 0);
	cr_assert_eq(wb_flush(c), 0);
	cr_assert_eq(wb_recv(c, &r), 0);
	expect_code(r, WB_BAD_REQUEST, "client-made explosion");
	ops->ops[0]->delete_->exploded = NULL;
	optext_free_ops(ops);
	/* The lease is still open after the refusals: commit nothing. */
	cr_assert_eq(wb_commit(c, g.sequence, g.token, NULL, false, false, NULL), 0,
	             "the refused commits left the lease usable: %s", wb_errmsg(c));

	/* Index requests: too long, duplicate, missing. */
	char t255[256];
	memset(t255, 't', 255);
	t255[255] = 0;
	expect_code(index_call(c, true, t255, t255), WB_BAD_REQUEST, "type+field too long");
	expect_code(index_call(c, true, "Order", ""), WB_BAD_REQUEST, "empty field");
	expect_code(index_call(c, true, "Order", "status"), 0, "create");
	expect_code(index_call(c, true, "Order", "status"), WB_BAD_REQUEST, "duplicate");
	expect_code(index_call(c, false, "Order", "nope"), WB_NOT_FOUND, "drop of a missing index");
	expect_code(index_call(c, false, "Order", "status"), 0, "drop");
	/* And the server is fine. */
	cr_assert_eq(wb_ping(c), 0);
	assert_verified(c, "after hostile requests");
	e2e_suite_stop_client(c);
}

Test(proj_e2e, unindexed_scan_over_max_scan_is_refused_deterministically)
{
	const char *args[] = {"--max-scan", "10", NULL};
	struct wb_client *c = e2e_suite_start_client(args, "test_proj_e2e");
	char text[4096];
	size_t o = 0;
	for (int i = 0; i < 20; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
		                      "%supsert Item \"i-%02d\" {k: %d}", i > 0 ? "; " : "", i,
		                      i % 4);
	apply_ok(c, text);
	for (int round = 0; round < 3; round++) {
		Response *r = query(c, "Item", "k == 1", NULL, 0);
		expect_code(r, WB_QUERY_TOO_EXPENSIVE, "query scan over max-scan");
		r = apply(c, "p", "update Item where k == 1 set hit = true");
		cr_assert_eq(code_of(r), 0);
		cr_assert_eq(r->commit->apply_error, WB_QUERY_TOO_EXPENSIVE, "round %d", round);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	Response *r = get_entity(c, "Item", "i-01");
	cr_assert_null(field(r->get_entity->entity, "hit"), "a refused update changed nothing");
	whizbang__v1__response__free_unpacked(r, NULL);
	expect_code(index_call(c, true, "Item", "k"), 0, "create index");
	r = apply(c, "p", "update Item where k == 1 set hit = true");
	cr_assert_eq(r->commit->apply_error, 0);
	cr_assert_eq(r->commit->results[0]->matched, 5);
	cr_assert_eq(r->commit->results[0]->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	whizbang__v1__response__free_unpacked(r, NULL);
	r = query(c, "Item", "hit == true", NULL, 0);
	expect_code(r, WB_QUERY_TOO_EXPENSIVE, "hit is not indexed");
	assert_verified(c, "after refusals");
	e2e_suite_stop_client(c);
}

/* A writer thread that keeps applying while Verify runs. */
struct load {
	volatile bool stop;
	int applied;
};

static void *load_main(void *arg)
{
	struct load *l = arg;
	struct wb_client *c = e2e_client(&e2e_srv, "load");
	if (c == NULL)
		return NULL;
	for (int i = 0; !l->stop && i < 5000; i++) {
		char text[256];
		snprintf(text, sizeof(text),
		         "upsert Load \"l-%04d\" {n: %d, g: \"g%d\"}; update Load where g == "
		         "\"g%d\" "
		         "inc total by 1",
		         i % 300, i, i % 7, (i + 3) % 7);
		Whizbang__V1__OpList *ops;
		struct optext_error err;
		if (optext_parse_ops(text, &ops, &err) != 0)
			break;
		struct wb_lease_args la = {.projection = "load", .count = 1};
		struct wb_lease_grant g;
		size_t n;
		int rc = wb_lease(c, &la, &g, 1, &n);
		if (rc == 0)
			rc = wb_commit(c, g.sequence, g.token, ops, false, false, NULL);
		optext_free_ops(ops);
		if (rc != 0)
			break;
		l->applied++;
	}
	wb_close(c);
	return NULL;
}

static int run_replay(bool verify_only)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s replay --data-dir %s%s >%s/replay.out 2>&1",
	         getenv("WHIZBANGD"), e2e_srv.data_dir, verify_only ? " --verify" : "",
	         e2e_srv.dir);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(proj_e2e, verify_online_under_load_after_kill_and_offline)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_proj_e2e");
	apply_ok(c, "create index Load g");
	struct load l = {0};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, load_main, &l), 0);
	while (l.applied < 200)
		e2e_sleep_ms(10);
	assert_verified(c, "online, under load");
	l.stop = true;
	pthread_join(th, NULL);
	cr_assert_geq(l.applied, 200);
	wb_close(c);

	/* SIGKILL, restart: recovery applies what the watermark had not
	 * passed; the read models still equal the replay. */
	e2e_kill(&e2e_srv);
	e2e_suite_restart();
	c = e2e_suite_client("test_proj_e2e");
	assert_verified(c, "after SIGKILL and restart");
	Response *r = query(c, "Load", "g == \"g1\"", NULL, 0);
	cr_assert_eq(code_of(r), 0);
	cr_assert_eq(r->query->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	size_t before = r->query->n_entities;
	whizbang__v1__response__free_unpacked(r, NULL);
	e2e_suite_stop_client(c);

	/* Offline: a replay beside a running server is refused (the lock);
	 * stopped, --verify matches and a rebuild in place keeps every byte. */
	cr_assert_eq(run_replay(true), 0, "offline verify");
	cr_assert_eq(run_replay(false), 0, "offline rebuild in place");
	cr_assert_eq(run_replay(true), 0, "verify after the rebuild");
	/* What a Verify cut short by a crash leaves is removed at start. */
	char left[256];
	snprintf(left, sizeof(left), "%s/.verify-snapshot-test", e2e_srv.data_dir);
	cr_assert_eq(mkdir(left, 0750), 0);
	char file[300];
	snprintf(file, sizeof(file), "%s/data.mdb", left);
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fclose(f);
	e2e_suite_restart();
	cr_assert_neq(access(left, F_OK), 0, "the leftover scratch store is still there");
	cr_assert_neq(run_replay(true), 0, "a replay beside a running server must be refused");
	c = e2e_suite_client("test_proj_e2e");
	r = query(c, "Load", "g == \"g1\"", NULL, 0);
	cr_assert_eq(r->query->n_entities, before);
	whizbang__v1__response__free_unpacked(r, NULL);
	assert_verified(c, "after the offline rebuild");
	e2e_suite_stop_client(c);
}
