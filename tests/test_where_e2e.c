/* End-to-end tests of the where-clause cost limits (docs/QUERIES.md §3
 * "Size limits", docs/OPERATIONS.md "Where-clause limits") against a real
 * whizbangd: every entry of a clause (QueryEntities, Explain, the update
 * and delete ops of Commit and Stage) accepts a clause at each
 * --max-where-* setting and refuses one past it with QUERY_TOO_EXPENSIVE
 * naming the setting, before anything is leased, queued or written; the
 * measured 62 465-term clause is refused at every entry with the defaults
 * while another client is served.
 *
 * Negative control: with WB_WHERE_E2E_LIE set, the server is started with
 * every limit at the top of its bounds, so the refusals these tests expect
 * do not happen and each test must fail (tests/meson.build runs them so,
 * should_fail). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"
#include "eval.h"
#include "optext.h"
#include "wb.h"

typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__OpList OpList;

TestSuite(where_e2e, .fini = e2e_suite_fini, .timeout = 120);

static bool lying(void)
{
	return getenv("WB_WHERE_E2E_LIE") != NULL;
}

/* The tops of the settings' bounds (server/config.c): what the control
 * starts the server with. */
static const char *const RAISED[] = {"--max-where-terms=1000000",
                                     "--max-where-depth=64",
                                     "--max-where-in-list=1024",
                                     "--max-where-bytes=64M",
                                     "--max-where-literal=64M",
                                     "--max-query-bytes=0",
                                     NULL};

/* Starts the suite's server with args, or with RAISED under the control. */
static struct wb_client *start(const char *const *args)
{
	return e2e_suite_start_client(lying() ? RAISED : args, "test_where_e2e");
}

/* Commits text under a new lease with ACK_APPLIED; the answer (freed by the
 * caller) says how applying went. */
static Whizbang__V1__CommitResult *commit_text(struct wb_client *c, const char *text)
{
	OpList *ops;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops(text, &ops, &err), 0, "%s: %s", text, err.message);
	struct wb_lease_args la = {.projection = "p", .count = 1, .duration_ms = 60000};
	struct wb_lease_grant g;
	size_t n;
	cr_assert_eq(wb_lease(c, &la, &g, 1, &n), 0, "lease: %s", wb_errmsg(c));
	Whizbang__V1__CommitResult *res = NULL;
	cr_assert_eq(wb_commit_full(c, g.sequence, g.token, ops, true, false, &res), 0,
	             "commit %s: %s", text, wb_errmsg(c));
	optext_free_ops(ops);
	return res;
}

/* Commits the ops of text under a new lease with ACK_APPLIED; must apply. */
static void apply_ok(struct wb_client *c, const char *text)
{
	Whizbang__V1__CommitResult *res = commit_text(c, text);
	cr_assert_eq(res->apply_error, 0, "%s: %s", text, res->apply_error_message);
	wb_commit_result_free(res);
}

/* The entry points of a clause. */
enum entry { QUERY, EXPLAIN, COMMIT_UPDATE, COMMIT_DELETE, STAGE_UPDATE, NENTRIES };

static const char *const entry_name[] = {"QueryEntities", "Explain", "Commit update",
                                         "Commit delete", "Stage update"};

/* The op of an entry, over clause e, as a one-op list (static storage,
 * valid until the next call). */
static OpList *op_of(enum entry en, Expr *e)
{
	static Whizbang__V1__Where w;
	static Whizbang__V1__Value one;
	static Whizbang__V1__SetAction set;
	static Whizbang__V1__Action act, *acts[1];
	static Whizbang__V1__Update up;
	static Whizbang__V1__Delete del;
	static Whizbang__V1__Op op, *ops[1];
	static OpList list;
	whizbang__v1__where__init(&w);
	w.expr = e;
	whizbang__v1__value__init(&one);
	one.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	one.int_value = 1;
	whizbang__v1__set_action__init(&set);
	set.field = "hit";
	set.value = &one;
	whizbang__v1__action__init(&act);
	act.kind_case = WHIZBANG__V1__ACTION__KIND_SET;
	act.set = &set;
	acts[0] = &act;
	whizbang__v1__op__init(&op);
	if (en == COMMIT_DELETE) {
		whizbang__v1__delete__init(&del);
		del.type = "Nothing"; /* matches nothing: the entities stay */
		del.target_case = WHIZBANG__V1__DELETE__TARGET_WHERE;
		del.where = &w;
		op.kind_case = WHIZBANG__V1__OP__KIND_DELETE;
		op.delete_ = &del;
	} else {
		whizbang__v1__update__init(&up);
		up.type = "Item";
		up.where = &w;
		up.n_actions = 1;
		up.actions = acts;
		op.kind_case = WHIZBANG__V1__OP__KIND_UPDATE;
		op.update = &up;
	}
	ops[0] = &op;
	whizbang__v1__op_list__init(&list);
	list.n_ops = 1;
	list.ops = ops;
	return &list;
}

/* Sends clause e through entry en: 0 when accepted (and, for a commit,
 * applied), else the server's code with its message in msg. A lease taken
 * for a refused commit or a stage is released afterwards; a refused commit
 * must have left it usable. */
static int send_through(struct wb_client *c, enum entry en, Expr *e, char *msg, size_t len)
{
	int rc;
	msg[0] = '\0';
	if (en == QUERY) {
		Whizbang__V1__QueryResult *q = NULL;
		rc = wb_query(c, "Item", e, NULL, NULL, 0, &q);
		wb_query_free(q);
	} else if (en == EXPLAIN) {
		Whizbang__V1__PlanResult *p = NULL;
		rc = wb_explain(c, "Item", e, NULL, &p);
		wb_plan_free(p);
	} else {
		struct wb_lease_args la = {.projection = "p", .count = 1, .duration_ms = 60000};
		struct wb_lease_grant g;
		size_t n;
		cr_assert_eq(wb_lease(c, &la, &g, 1, &n), 0, "lease: %s", wb_errmsg(c));
		uint64_t wm_before;
		cr_assert_eq(wb_watermark(c, &wm_before, NULL), 0);
		if (en == STAGE_UPDATE) {
			rc = wb_stage(c, g.sequence, g.token, op_of(en, e));
		} else {
			Whizbang__V1__CommitResult *res = NULL;
			rc = wb_commit_full(c, g.sequence, g.token, op_of(en, e), true, false,
			                    &res);
			if (rc == 0)
				cr_assert_eq(res->apply_error, 0, "%s", res->apply_error_message);
			wb_commit_result_free(res);
		}
		if (rc != 0)
			snprintf(msg, len, "%s", wb_errmsg(c));
		if (rc != 0 || en == STAGE_UPDATE) {
			/* Nothing was written: the watermark waits on this
			 * lease, which still takes its release. */
			uint64_t wm;
			cr_assert_eq(wb_watermark(c, &wm, NULL), 0);
			cr_assert_eq(wm, wm_before,
			             "%s: the watermark moved from %llu to %llu (lease %llu)",
			             entry_name[en], (unsigned long long)wm_before,
			             (unsigned long long)wm, (unsigned long long)g.sequence);
			cr_assert_eq(wb_release(c, g.sequence, g.token, NULL), 0,
			             "%s: release after the refusal: %s", entry_name[en],
			             wb_errmsg(c));
		}
		return rc;
	}
	if (rc != 0)
		snprintf(msg, len, "%s", wb_errmsg(c));
	return rc;
}

static Expr *parse(const char *text)
{
	Expr *e = NULL;
	struct optext_error err;
	cr_assert_eq(optext_parse_where(text, &e, &err), 0, "%s: %s", text, err.message);
	return e;
}

/* A clause at a limit and one past it, and the setting that refuses it. */
struct pair {
	const char *setting;
	const char *at, *past;
	const char *figure; /* in the refusal's message */
};

/* With --max-where-terms 10, depth 4, in list 3, bytes 64, literal 8:
 * each pair is within every other limit. */
static const char *const SMALL[] = {"--max-where-terms=10",  "--max-where-depth=4",
                                    "--max-where-in-list=3", "--max-where-bytes=64",
                                    "--max-where-literal=8", NULL};
static const struct pair pairs[] = {
        {"--max-where-terms",
         "exists(k) and exists(k) and exists(k) and exists(k) and exists(k) and exists(k) and "
         "exists(k) and exists(k) and exists(k)",
         "exists(k) and exists(k) and exists(k) and exists(k) and exists(k) and exists(k) and "
         "exists(k) and exists(k) and exists(k) and exists(k)",
         "holds 11 terms"},
        {"--max-where-depth", "not (not (not (k == 1)))", "not (not (not (not (k == 1))))",
         "nests more than 4 levels"},
        {"--max-where-in-list", "k in (1, 2, 3)", "k not in (1, 2, 3, 4)", "holds 4 values"},
        {"--max-where-literal", "s == \"12345678\"", "starts_with(s, \"123456789\")", "is 9 bytes"},
        {"--max-where-bytes",
         "ssssssss == \"12345678\" or ssssssss == \"12345678\" or ssssssss == \"12345678\" or "
         "ssssssss == \"12345678\"",
         "ssssssss == \"12345678\" or ssssssss == \"12345678\" or ssssssss == \"12345678\" or "
         "ssssssss == \"12345678\" or exists(k)",
         "are 65 bytes"},
};

Test(where_e2e, each_size_limit_holds_at_its_setting_at_every_entry)
{
	struct wb_client *c = start(SMALL);
	apply_ok(c, "upsert Item \"i-1\" {k: 1, s: \"12345678\"}; upsert Item \"i-2\" {k: 2}");
	for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
		Expr *at = parse(pairs[p].at), *past = parse(pairs[p].past);
		for (enum entry en = 0; en < NENTRIES; en++) {
			char msg[512];
			int rc = send_through(c, en, at, msg, sizeof msg);
			cr_assert_eq(rc, 0, "%s, at %s: %s (%s)", entry_name[en], pairs[p].setting,
			             wb_error_name(rc), msg);
			rc = send_through(c, en, past, msg, sizeof msg);
			cr_assert_eq(rc, WB_QUERY_TOO_EXPENSIVE, "%s, past %s: %s (%s)",
			             entry_name[en], pairs[p].setting, wb_error_name(rc), msg);
			cr_assert_not_null(strstr(msg, pairs[p].setting), "%s: %s", entry_name[en],
			                   msg);
			cr_assert_not_null(strstr(msg, pairs[p].figure), "%s: %s", entry_name[en],
			                   msg);
			if (en >= COMMIT_UPDATE)
				cr_assert_eq(strncmp(msg, "op 1: ", 6), 0, "%s", msg);
		}
		optext_free_expr(at);
		optext_free_expr(past);
	}
	/* The language's own bound stays INVALID_EXPRESSION whatever the
	 * settings: 64 nots over a comparison are 65 levels. */
	Expr *deep = parse("k == 1");
	Expr nots[64];
	for (size_t i = 0; i < 64; i++) {
		whizbang__v1__expr__init(&nots[i]);
		nots[i].node_case = WHIZBANG__V1__EXPR__NODE_NEGATE;
		nots[i].negate = i + 1 < 64 ? &nots[i + 1] : deep;
	}
	Whizbang__V1__QueryResult *q = NULL;
	int rc = wb_query(c, "Item", &nots[0], NULL, NULL, 0, &q);
	cr_assert_eq(rc, WB_INVALID_EXPRESSION, "65 levels: %s (%s)", wb_error_name(rc),
	             wb_errmsg(c));
	optext_free_expr(deep);
	e2e_suite_stop_client(c);
}

/* A clause of the size measured against the server before these limits
 * (62 465 terms, 812 KB; appends stalled 5.7 s): 61 ors of comparisons
 * (60 of 1024, one of 963) under one and, every list within the language's
 * 1024 terms, so only --max-where-terms can refuse it. Built by sharing
 * nodes; protobuf packs every reference, so the server receives all of
 * them (about 900 KB). The field name is five bytes: with a one-byte name
 * a comparison is so small on the wire that protobuf-c's allocations for
 * it outgrow the server's decoding budget (16 times the frame), and the
 * frame is refused before any clause check. */
#define BIG_ORS 61
#define BIG_LAST 963

struct big {
	Whizbang__V1__Value v[PROJ_EXPR_MAX_TERMS];
	Whizbang__V1__Compare c[PROJ_EXPR_MAX_TERMS];
	Expr leaf[PROJ_EXPR_MAX_TERMS];
	Expr *leaves[PROJ_EXPR_MAX_TERMS];
	Whizbang__V1__ExprList full_l, last_l, and_l;
	Expr full, last, and_e;
	Expr *ors[BIG_ORS];
};

static Expr *big_clause(struct big *b)
{
	for (size_t i = 0; i < PROJ_EXPR_MAX_TERMS; i++) {
		whizbang__v1__value__init(&b->v[i]);
		b->v[i].kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
		b->v[i].int_value = (int64_t)i + 1000;
		whizbang__v1__compare__init(&b->c[i]);
		b->c[i].field = "total";
		b->c[i].value = &b->v[i];
		whizbang__v1__expr__init(&b->leaf[i]);
		b->leaf[i].node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
		b->leaf[i].compare = &b->c[i];
		b->leaves[i] = &b->leaf[i];
	}
	whizbang__v1__expr_list__init(&b->full_l);
	b->full_l.n_terms = PROJ_EXPR_MAX_TERMS;
	b->full_l.terms = b->leaves;
	whizbang__v1__expr_list__init(&b->last_l);
	b->last_l.n_terms = BIG_LAST;
	b->last_l.terms = b->leaves;
	whizbang__v1__expr__init(&b->full);
	b->full.node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
	b->full.any_of = &b->full_l;
	whizbang__v1__expr__init(&b->last);
	b->last.node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
	b->last.any_of = &b->last_l;
	for (size_t i = 0; i < BIG_ORS; i++)
		b->ors[i] = i + 1 < BIG_ORS ? &b->full : &b->last;
	whizbang__v1__expr_list__init(&b->and_l);
	b->and_l.n_terms = BIG_ORS;
	b->and_l.terms = b->ors;
	whizbang__v1__expr__init(&b->and_e);
	b->and_e.node_case = WHIZBANG__V1__EXPR__NODE_ALL_OF;
	b->and_e.all_of = &b->and_l;
	return &b->and_e;
}

/* Another client: reads an entity and appends, again and again, until told
 * to stop, keeping its slowest answer. */
struct bystander {
	const struct e2e_server *srv;
	volatile bool stop;
	int calls, failures;
	int64_t slowest_ms;
	char first_failure[300];
};

static void bystander_failed(struct bystander *b, const char *what, struct wb_client *c)
{
	if (b->failures++ == 0)
		snprintf(b->first_failure, sizeof b->first_failure, "%s: %s", what,
		         c != NULL ? wb_errmsg(c) : "no client");
}

static void *bystander_main(void *arg)
{
	struct bystander *b = arg;
	struct wb_client *c = e2e_client(b->srv, "bystander");
	if (c == NULL) {
		bystander_failed(b, "connect", NULL);
		return NULL;
	}
	while (!b->stop && b->calls < 100000) {
		int64_t t0 = e2e_now_ms();
		Whizbang__V1__Entity *e = NULL;
		int rc = wb_get_entity(c, "Item", "i-1", &e);
		if (rc != 0 || e->version != 1)
			bystander_failed(b, "GetEntity", c);
		wb_entity_free(e);
		struct wb_new_event ev = {.type = "Tick", .data = "x", .data_len = 1};
		struct wb_append_result ar;
		if (wb_append(c, "bystander", WB_EXPECT_ANY, 0, &ev, 1, &ar) != 0)
			bystander_failed(b, "append", c);
		int64_t dt = e2e_now_ms() - t0;
		if (dt > b->slowest_ms)
			b->slowest_ms = dt;
		b->calls++;
	}
	wb_close(c);
	return NULL;
}

Test(where_e2e, the_measured_oversized_clause_is_refused_everywhere_while_another_client_is_served)
{
	struct wb_client *c = start(NULL);
	apply_ok(c, "upsert Item \"i-1\" {k: 1}; upsert Item \"i-2\" {k: 2}");
	struct bystander by = {.srv = &e2e_srv};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, bystander_main, &by), 0);
	struct big *b = malloc(sizeof *b);
	cr_assert_not_null(b);
	Expr *e = big_clause(b);
	for (int round = 0; round < 2; round++)
		for (enum entry en = 0; en < NENTRIES; en++) {
			char msg[512];
			int rc = send_through(c, en, e, msg, sizeof msg);
			cr_assert_eq(rc, WB_QUERY_TOO_EXPENSIVE, "%s: %s (%s)", entry_name[en],
			             wb_error_name(rc), msg);
			/* A query that large is refused before it is decoded; an
			 * op's clause is counted. */
			const char *want =
			        en == QUERY || en == EXPLAIN
			                ? "is larger than this server takes (--max-query-bytes "
			                : "the where clause holds 62465 terms (nodes and in-list "
			                  "values): at most 2000 are allowed (--max-where-terms)";
			cr_assert_not_null(strstr(msg, want), "%s: %s", entry_name[en], msg);
		}
	by.stop = true;
	pthread_join(t, NULL);
	free(b);
	cr_assert_eq(by.failures, 0, "%d of the other client's %d calls failed, first %s",
	             by.failures, by.calls, by.first_failure);
	cr_assert_gt(by.calls, 0, "the other client was never served");
	cr_assert_lt(by.slowest_ms, 2000, "the other client waited %lld ms",
	             (long long)by.slowest_ms);
	/* Nothing of the refused ops took effect. */
	Whizbang__V1__Entity *ent = NULL;
	cr_assert_eq(wb_get_entity(c, "Item", "i-1", &ent), 0);
	cr_assert_eq(ent->version, 1);
	wb_entity_free(ent);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- the candidate budget */

static bool has_field(struct wb_client *c, const char *id, const char *name)
{
	Whizbang__V1__Entity *e = NULL;
	cr_assert_eq(wb_get_entity(c, "Item", id, &e), 0, "%s: %s", id, wb_errmsg(c));
	bool found = false;
	for (size_t i = 0; i < e->n_fields; i++)
		found = found || strcmp(e->fields[i]->name, name) == 0;
	wb_entity_free(e);
	return found;
}

static void assert_verified(struct wb_client *c)
{
	Whizbang__V1__VerifyResult *v = NULL;
	cr_assert_eq(wb_verify(c, &v), 0, "%s", wb_errmsg(c));
	cr_assert(v->match, "replay differs: %s", v->first_difference);
	wb_verify_free(v);
}

Test(where_e2e, an_index_plan_over_max_candidates_is_refused_and_replays_as_decided)
{
	/* Checkpoints far away, so that a restart replays the log records. */
	/* 7 entities, more than --max-scan 5: a plan past the budget cannot
	 * be scanned instead. */
	const char *args[] = {"--max-candidates=3", "--max-scan=5", "--checkpoint-bytes=1G",
	                      "--checkpoint-interval-ms=86400000", NULL};
	const char *raised[] = {"--max-candidates=1000000000", "--checkpoint-bytes=1G",
	                        "--checkpoint-interval-ms=86400000", NULL};
	struct wb_client *c = e2e_suite_start_client(lying() ? raised : args, "test_where_e2e");
	Whizbang__V1__CommitResult *res = commit_text(
	        c, "upsert Item \"i-1\" {k: 1}; upsert Item \"i-2\" {k: 1}; upsert Item \"i-3\" "
	           "{k: 1}; upsert Item \"i-4\" {k: 1}; upsert Item \"j-1\" {k: 2}; upsert Item "
	           "\"j-2\" {k: 2}; upsert Item \"j-3\" {k: 2}");
	cr_assert_eq(res->apply_error, 0, "%s", res->apply_error_message);
	wb_commit_result_free(res);
	Whizbang__V1__IndexResult *ir = NULL;
	cr_assert_eq(wb_create_index(c, "Item", "k", &ir), 0, "%s", wb_errmsg(c));
	wb_index_result_free(ir);

	/* Explain counts: k == 2 reads 3 entries (the budget), k == 1 four. */
	Expr *two = parse("k == 2"), *one = parse("k == 1");
	Whizbang__V1__PlanResult *p = NULL;
	cr_assert_eq(wb_explain(c, "Item", two, NULL, &p), 0, "%s", wb_errmsg(c));
	cr_assert_eq(p->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	cr_assert_not(p->refused);
	cr_assert_eq(p->estimated_candidates, 3);
	wb_plan_free(p);
	cr_assert_eq(wb_explain(c, "Item", one, NULL, &p), 0, "%s", wb_errmsg(c));
	cr_assert(p->refused, "k == 1 reads 4 index entries, over --max-candidates 3: %s", p->plan);
	cr_assert_eq(p->max_candidates, 3);
	cr_assert_not_null(strstr(p->plan, "over --max-candidates: refused"), "%s", p->plan);
	wb_plan_free(p);

	/* The query and the update are refused; the update as its outcome. */
	Whizbang__V1__QueryResult *q = NULL;
	int rc = wb_query(c, "Item", one, NULL, NULL, 0, &q);
	cr_assert_eq(rc, WB_QUERY_TOO_EXPENSIVE, "%s (%s)", wb_error_name(rc), wb_errmsg(c));
	cr_assert_not_null(strstr(wb_errmsg(c), "more than --max-candidates 3 index entries"), "%s",
	                   wb_errmsg(c));
	cr_assert_eq(wb_query(c, "Item", two, NULL, NULL, 0, &q), 0, "%s", wb_errmsg(c));
	cr_assert_eq(q->n_entities, 3);
	wb_query_free(q);
	res = commit_text(c, "update Item where k == 1 set hit = 1");
	cr_assert_eq(res->apply_error, WB_QUERY_TOO_EXPENSIVE, "%s", res->apply_error_message);
	cr_assert_not_null(strstr(res->apply_error_message, "--max-candidates 3"), "%s",
	                   res->apply_error_message);
	wb_commit_result_free(res);
	res = commit_text(c, "update Item where k == 2 set hit = 2");
	cr_assert_eq(res->apply_error, 0, "%s", res->apply_error_message);
	wb_commit_result_free(res);
	cr_assert_not(has_field(c, "i-1", "hit"));
	cr_assert(has_field(c, "j-1", "hit"));
	wb_close(c);

	/* A crash, and restarts with the budget raised, then lowered: the
	 * log's records apply as they were decided, under the budget stamped
	 * in them, so the refused update stays refused and the accepted one
	 * applied. */
	const char *later[2][5] = {{"--max-candidates=1000", "--checkpoint-bytes=1G",
	                            "--checkpoint-interval-ms=86400000", NULL},
	                           {"--max-candidates=0", NULL}};
	for (int run = 0; run < 2; run++) {
		if (run == 0)
			e2e_kill(&e2e_srv);
		else
			e2e_suite_stop();
		cr_assert_eq(e2e_set_args(&e2e_srv, later[run]), 0);
		e2e_suite_restart();
		c = e2e_suite_client("test_where_e2e");
		cr_assert_not(has_field(c, "i-1", "hit"), "run %d: the refused update applied",
		              run);
		cr_assert(has_field(c, "j-1", "hit"), "run %d: the accepted update is lost", run);
		assert_verified(c);
		if (run == 1) {
			/* No budget at all, and a type within --max-scan: the
			 * index is given up for a scan, with the same answer. */
			Whizbang__V1__QueryResult *q1 = NULL;
			cr_assert_eq(wb_query(c, "Item", one, NULL, NULL, 0, &q1), 0, "%s",
			             wb_errmsg(c));
			cr_assert_eq(q1->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
			cr_assert_eq(q1->n_entities, 4);
			wb_query_free(q1);
		}
		wb_close(c);
	}
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=log_replayed"), 1);
	optext_free_expr(one);
	optext_free_expr(two);
	e2e_suite_stop();
}
