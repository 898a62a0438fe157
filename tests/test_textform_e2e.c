/* The text forms on the wire (issue 14), against a real whizbangd: an Op
 * sent as text (Op.text) and a Where sent as text alone are parsed by the
 * server; they act as the structured forms do, the ledger keeps the
 * structured form (so replay after a restart gives the same read model), a
 * mistake is INVALID_EXPRESSION naming the op and the column, and nothing
 * is written for it.
 *
 * Negative control: WB_TEXTFORM_E2E_LIE=1 makes the query's expected ids
 * those of a different clause, so the test must fail (tests/meson.build). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"
#include "optext.h"
#include "wb.h"
#include "wb_error.h"

TestSuite(textform_e2e, .fini = e2e_suite_fini, .timeout = 120);

typedef Whizbang__V1__Op Op;

/* An OpList of n ops, each the text texts[i], in storage the caller
 * keeps. */
struct text_ops {
	Op ops[4];
	Op *ptrs[4];
	Whizbang__V1__OpList list;
};

static const Whizbang__V1__OpList *text_ops(struct text_ops *t, const char *const *texts, size_t n)
{
	cr_assert_leq(n, 4u);
	whizbang__v1__op_list__init(&t->list);
	for (size_t i = 0; i < n; i++) {
		whizbang__v1__op__init(&t->ops[i]);
		t->ops[i].kind_case = WHIZBANG__V1__OP__KIND_TEXT;
		t->ops[i].text = (char *)texts[i];
		t->ptrs[i] = &t->ops[i];
	}
	t->list.n_ops = n;
	t->list.ops = t->ptrs;
	return &t->list;
}

/* Leases one sequence and commits ops with ACK_APPLIED: 0 or the error. */
static int commit(struct wb_client *c, const Whizbang__V1__OpList *ops,
                  Whizbang__V1__CommitResult **res, uint64_t *seq, uint64_t *token)
{
	struct wb_lease_args la = {.projection = "textform", .duration_ms = 60000};
	struct wb_lease_grant g;
	size_t n;
	cr_assert_eq(wb_lease(c, &la, &g, 1, &n), 0, "%s", wb_errmsg(c));
	*seq = g.sequence;
	*token = g.token;
	return wb_commit_full(c, g.sequence, g.token, ops, true, false, res);
}

/* The ids a query of Order with the text clause returns, comma-separated. */
static void query_ids(struct wb_client *c, const char *clause, char *out, size_t len)
{
	Whizbang__V1__QueryResult *q;
	cr_assert_eq(wb_query(c, "Order", NULL, clause, NULL, 0, &q), 0, "%s: %s", clause,
	             wb_errmsg(c));
	out[0] = '\0';
	for (size_t i = 0; i < q->n_entities; i++) {
		size_t used = strlen(out);
		snprintf(out + used, len - used, "%s%s", i > 0 ? "," : "", q->entities[i]->id);
	}
	wb_query_free(q);
}

static const char *field_of(const Whizbang__V1__Entity *e, const char *name)
{
	for (size_t i = 0; i < e->n_fields; i++)
		if (strcmp(e->fields[i]->name, name) == 0 &&
		    e->fields[i]->value->kind_case == WHIZBANG__V1__VALUE__KIND_STRING_VALUE)
			return e->fields[i]->value->string_value;
	return NULL;
}

Test(textform_e2e, text_ops_and_text_wheres_act_as_the_structured_forms)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "textform");
	bool lie = getenv("WB_TEXTFORM_E2E_LIE") != NULL;

	/* Three upserts as text, committed and applied. */
	static const char *const upserts[] = {
	        "upsert Order \"o-1\" {customer_id: \"c-42\", total: 120}",
	        "upsert Order \"o-2\" {customer_id: \"c-42\", total: 50}",
	        "upsert Order \"o-3\" {customer_id: \"c-7\", total: 500}"};
	struct text_ops t;
	Whizbang__V1__CommitResult *res;
	uint64_t seq, token;
	cr_assert_eq(commit(c, text_ops(&t, upserts, 3), &res, &seq, &token), 0, "%s",
	             wb_errmsg(c));
	cr_assert_eq(res->apply_error, 0, "%s", res->apply_error_message);
	cr_assert_eq(res->n_results, 3u);
	wb_commit_result_free(res);

	/* A where clause as text alone. */
	char ids[256];
	query_ids(c, lie ? "customer_id == \"c-42\"" : "customer_id == \"c-42\" and total >= 100",
	          ids, sizeof(ids));
	cr_assert_str_eq(ids, "o-1");
	Whizbang__V1__PlanResult *plan;
	cr_assert_eq(wb_explain(c, "Order", NULL, "total < 100", &plan), 0, "%s", wb_errmsg(c));
	cr_assert_eq(plan->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
	wb_plan_free(plan);

	/* An update by a text where, in a structured op: parsed here, then
	 * sent with the clause's text alone. */
	Whizbang__V1__OpList *list1;
	struct optext_error perr;
	cr_assert_eq(optext_parse_ops("update Order where total < 100 set size = \"small\"", &list1,
	                              &perr),
	             0, "%s", perr.message);
	Whizbang__V1__Where *w = list1->ops[0]->update->where;
	optext_free_expr(w->expr);
	w->expr = NULL;
	cr_assert_str_eq(w->text, "total < 100");
	cr_assert_eq(commit(c, list1, &res, &seq, &token), 0, "%s", wb_errmsg(c));
	optext_free_ops(list1);
	cr_assert_eq(res->apply_error, 0, "%s", res->apply_error_message);
	cr_assert_eq(res->results[0]->matched, 1u);
	wb_commit_result_free(res);

	/* Mistakes: named by op and column, nothing written, the lease kept. */
	static const char *const bad[] = {"delete Order \"o-3\"",
	                                  "update Order where total >= set x = 1"};
	int rc = commit(c, text_ops(&t, bad, 2), &res, &seq, &token);
	cr_assert_eq(rc, WB_INVALID_EXPRESSION, "rc %d", rc);
	cr_assert_not_null(strstr(wb_errmsg(c), "ops[1]: column"), "%s", wb_errmsg(c));
	static const char *const two[] = {"delete Order \"o-3\"; delete Order \"o-2\""};
	rc = wb_commit_full(c, seq, token, text_ops(&t, two, 1), true, false, &res);
	cr_assert_eq(rc, WB_INVALID_EXPRESSION, "rc %d", rc);
	cr_assert_not_null(strstr(wb_errmsg(c), "ops[0]"), "%s", wb_errmsg(c));
	cr_assert_eq(wb_release(c, seq, token, "test"), 0, "%s", wb_errmsg(c));
	Whizbang__V1__QueryResult *q;
	cr_assert_eq(wb_query(c, "Order", NULL, "total >= ", NULL, 0, &q), WB_INVALID_EXPRESSION);
	cr_assert_not_null(strstr(wb_errmsg(c), "where: column"), "%s", wb_errmsg(c));
	query_ids(c, "customer_id == \"c-7\"", ids, sizeof(ids));
	cr_assert_str_eq(ids, "o-3", "the refused delete did nothing");

	/* The ledger holds the structured ops, never the text. */
	Whizbang__V1__ReadLedgerResult *l;
	cr_assert_eq(wb_read_ledger(c, 1, 100, &l), 0, "%s", wb_errmsg(c));
	size_t seen = 0;
	for (size_t i = 0; i < l->n_entries; i++)
		for (size_t j = 0; j < l->entries[i]->n_ops; j++) {
			const Op *o = l->entries[i]->ops[j];
			cr_assert_neq(o->kind_case, WHIZBANG__V1__OP__KIND_TEXT);
			if (o->kind_case == WHIZBANG__V1__OP__KIND_UPDATE)
				cr_assert_not_null(o->update->where->expr);
			seen++;
		}
	cr_assert_eq(seen, 4u);
	wb_ledger_free(l);

	/* Replayed after a restart: the same read model. */
	wb_close(c);
	e2e_suite_stop();
	e2e_suite_restart();
	c = e2e_suite_client("textform");
	Whizbang__V1__Entity *e;
	cr_assert_eq(wb_get_entity(c, "Order", "o-2", &e), 0, "%s", wb_errmsg(c));
	cr_assert_str_eq(field_of(e, "size"), "small");
	wb_entity_free(e);
	cr_assert_eq(wb_get_entity(c, "Order", "o-1", &e), 0, "%s", wb_errmsg(c));
	cr_assert_null(field_of(e, "size"));
	wb_entity_free(e);
	query_ids(c, "total < 100 or customer_id == \"c-7\"", ids, sizeof(ids));
	cr_assert_str_eq(ids, "o-2,o-3");
	wb_close(c);
	e2e_suite_stop();
}
