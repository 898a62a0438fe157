/* Tests of the operation and where-clause text form (projection/optext.h).
 *
 * Shapes are checked against an S-expression dump written here, not against
 * the formatter under test; the formatter is then held to the round-trip
 * property: the text it writes parses back to the same packed bytes. Every
 * prefix and many one-byte mutations of every valid input either parse or
 * fail with INVALID_EXPRESSION and a column inside the text, and every
 * allocation is made to fail once to show that no path leaks or crashes
 * (run under valgrind and ASan). */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optext.h"
#include "wb_error.h"

typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__OpList OpList;
typedef Whizbang__V1__Value Value;

/* ------------------------------------------------ allocation failures */

/* optext.c calls this before every allocation when a test defines it. */
bool optext_test_alloc_fails(void);

static long alloc_countdown = -1; /* < 0: never fail */

bool optext_test_alloc_fails(void)
{
	if (alloc_countdown < 0)
		return false;
	return alloc_countdown-- == 0;
}

/* ------------------------------------------------ helpers */

static OpList *ops_ok(const char *text)
{
	OpList *ops = NULL;
	struct optext_error err = {0};
	int rc = optext_parse_ops(text, &ops, &err);
	cr_assert_eq(rc, 0, "parse_ops(%s): rc %d, %s", text, rc, err.message);
	cr_assert_not_null(ops);
	return ops;
}

static Expr *where_ok(const char *text)
{
	Expr *e = NULL;
	struct optext_error err = {0};
	int rc = optext_parse_where(text, &e, &err);
	cr_assert_eq(rc, 0, "parse_where(%s): rc %d, %s", text, rc, err.message);
	cr_assert_not_null(e);
	return e;
}

static char *format_op(const Op *op)
{
	size_t n = optext_format_op(op, NULL, 0);
	char *buf = malloc(n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(optext_format_op(op, buf, n + 1), n);
	cr_assert_eq(strlen(buf), n);
	return buf;
}

static char *format_expr(const Expr *e)
{
	size_t n = optext_format_expr(e, NULL, 0);
	char *buf = malloc(n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(optext_format_expr(e, buf, n + 1), n);
	cr_assert_eq(strlen(buf), n);
	return buf;
}

struct packed {
	uint8_t *data;
	size_t len;
};

static struct packed pack(const ProtobufCMessage *m)
{
	cr_assert(protobuf_c_message_check(m), "message fails protobuf_c_message_check");
	struct packed p;
	p.len = protobuf_c_message_get_packed_size(m);
	p.data = malloc(p.len + 1);
	cr_assert_not_null(p.data);
	cr_assert_eq(protobuf_c_message_pack(m, p.data), p.len);
	return p;
}

static void assert_same(struct packed a, struct packed b, const char *what)
{
	cr_assert_eq(a.len, b.len, "%s: packed lengths %zu and %zu", what, a.len, b.len);
	cr_assert_arr_eq(a.data, b.data, a.len, "%s: packed bytes differ", what);
	free(a.data);
	free(b.data);
}

/* The Where of an update or delete-by-where, or NULL. */
static Whizbang__V1__Where *where_of(const Op *op)
{
	if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE)
		return op->update->where;
	if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE &&
	    op->delete_->target_case == WHIZBANG__V1__DELETE__TARGET_WHERE)
		return op->delete_->where;
	return NULL;
}

/* Clears every Where.text, which holds the text as written and so differs
 * between an input and its canonical form by design. */
static void clear_texts(OpList *ops)
{
	for (size_t k = 0; k < ops->n_ops; k++) {
		Whizbang__V1__Where *w = where_of(ops->ops[k]);
		if (w != NULL) {
			free(w->text);
			w->text = (char *)protobuf_c_empty_string;
		}
	}
}

/* An S-expression of the tree, independent of the formatter. */
static void dump_value(FILE *f, const Value *v)
{
	switch (v->kind_case) {
	case WHIZBANG__V1__VALUE__KIND_STRING_VALUE:
		fprintf(f, "\"%s\"", v->string_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_INT_VALUE:
		fprintf(f, "%lld", (long long)v->int_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE:
		fprintf(f, "d:%.17g", v->double_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_BOOL_VALUE:
		fprintf(f, "%s", v->bool_value ? "true" : "false");
		break;
	case WHIZBANG__V1__VALUE__KIND_BYTES_VALUE:
		fprintf(f, "x:");
		for (size_t k = 0; k < v->bytes_value.len; k++)
			fprintf(f, "%02x", v->bytes_value.data[k]);
		break;
	case WHIZBANG__V1__VALUE__KIND_NULL_VALUE:
		cr_assert(v->null_value);
		fprintf(f, "null");
		break;
	default:
		cr_assert_fail("value with no kind");
	}
}

static const char *const op_names[] = {"==", "!=", "<", "<=", ">", ">="};

static void dump_expr(FILE *f, const Expr *e)
{
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		fprintf(f, "(%s %s ", op_names[e->compare->op], e->compare->field);
		dump_value(f, e->compare->value);
		fprintf(f, ")");
		break;
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		fprintf(f, "(%s %s", e->in_list->negated ? "not-in" : "in", e->in_list->field);
		for (size_t k = 0; k < e->in_list->n_values; k++) {
			fprintf(f, " ");
			dump_value(f, e->in_list->values[k]);
		}
		fprintf(f, ")");
		break;
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		fprintf(f, "(exists %s)", e->exists->field);
		break;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		fprintf(f, "(starts_with %s \"%s\")", e->starts_with->field,
		        e->starts_with->prefix);
		break;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
	case WHIZBANG__V1__EXPR__NODE_ANY_OF: {
		bool all = e->node_case == WHIZBANG__V1__EXPR__NODE_ALL_OF;
		const Whizbang__V1__ExprList *l = all ? e->all_of : e->any_of;
		cr_assert_geq(l->n_terms, 2, "a list of %zu terms", l->n_terms);
		fprintf(f, "(%s", all ? "and" : "or");
		for (size_t k = 0; k < l->n_terms; k++) {
			fprintf(f, " ");
			dump_expr(f, l->terms[k]);
		}
		fprintf(f, ")");
		break;
	}
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		fprintf(f, "(not ");
		dump_expr(f, e->negate);
		fprintf(f, ")");
		break;
	default:
		cr_assert_fail("expr with no node");
	}
}

static char *dump(const Expr *e)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	cr_assert_not_null(f);
	dump_expr(f, e);
	fclose(f);
	return s;
}

/* Characters (code points) in s[0..n). */
static size_t chars(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			c++;
	return c;
}

/* ------------------------------------------------ corpora */

/* Valid operation texts: the header's examples, the issue's, and more. */
static const char *const valid_ops[] = {
        "upsert Order \"o-1\" {customer_id: \"c-42\", status: \"Pending\", total: 120}",
        "upsert Order \"o-1\" merge {status: \"Paid\"}",
        "update Order where customer_id == \"c-42\" set status = \"Cancelled\", inc revision by 1",
        "update Order where id == \"o-9\" set status = \"New\" create \"o-9\" {status: \"New\"}",
        "update Order where total < 0 unset discount",
        "delete Order \"o-1\"",
        "delete Order where status == \"Cancelled\"",
        "upsert Order \"o-1\" {}",
        "upsert Order \"o-1\" merge {}",
        "upsert Order \"\" {}",
        ("upsert `Order Line` \"o-1/1\" {`the qty`: 3, `and`: true, x: x\"00ff10\", y: x\"\", "
         "z: null, w: -1.5e-7, v: false, u: \"caf\\u00e9\\n\"}"),
        "UPSERT Order \"o-2\" MERGE {a: 1}",
        "update Order where a == 1 set b = 2, set c = \"x\", unset d, inc e by -2.5, inc f by 0",
        "update Order where a == 1 or b == 2 set c = null create \"o-3\" {}",
        "update Order where not exists(closed_at) and starts_with(sku, \"AB-\") inc n by 1",
        "delete Order where (a == 1 or b == 2) and c != 3",
        "delete Order \"o-1\"; delete Order \"o-2\"",
        "delete Order \"o-1\";",
        "upsert A \"1\" {n: 1}; update A where n >= 1 inc n by 1; delete A where n > 10",
        "  delete\tOrder\n\"o-1\"  ",
        "update Order where  a==1   and  b==2  set x = 1",
        "update Order where a == 9223372036854775807 set b = -9223372036854775808",
        "update Order where a == 0.1 set b = 1e300, set c = 5e-324, set d = -0.0",
        "update Order where `set` == 1 set `where` = 2",
        "delete Order where a in (1, 2.5, \"x\", true, null, x\"ab\")",
        "delete Order where a not in ()",
        "update Order.v2 where line-items.count > 3 unset `line items`",
        /* Index operations; `drop` and `index` are names everywhere else. */
        "create index Order customer_id",
        "drop index Order customer_id",
        "CREATE INDEX `Order Line` `set`",
        "Drop Index Order `the total`",
        "create index index drop; drop index drop index",
        "update index where index == 1 and drop != 2 set index = 3, inc drop by 1",
        "upsert A \"1\" {n: 1, index: 2}; create index A n; update A where n == 1 unset n; drop "
        "index A n",
};
#define N_VALID_OPS (sizeof(valid_ops) / sizeof(valid_ops[0]))

/* Valid where clauses and their trees. */
static const struct {
	const char *text;
	const char *tree;
} valid_where[] = {
        /* The issue's example. */
        {"customer_id == \"c-42\" and status in (\"Pending\", \"OnHold\") and total >= 100",
         "(and (== customer_id \"c-42\") (in status \"Pending\" \"OnHold\") (>= total 100))"},
        /* Every comparison. */
        {"a == 1", "(== a 1)"},
        {"a != 1", "(!= a 1)"},
        {"a < 1", "(< a 1)"},
        {"a <= 1", "(<= a 1)"},
        {"a > 1", "(> a 1)"},
        {"a >= 1", "(>= a 1)"},
        /* Precedence: or < and < not < comparison. */
        {"a == 1 or b == 2 and c == 3", "(or (== a 1) (and (== b 2) (== c 3)))"},
        {"a == 1 and b == 2 or c == 3", "(or (and (== a 1) (== b 2)) (== c 3))"},
        {"not a == 1 and b == 2", "(and (not (== a 1)) (== b 2))"},
        {"not a == 1 or not b == 2", "(or (not (== a 1)) (not (== b 2)))"},
        {"not (a == 1 and b == 2)", "(not (and (== a 1) (== b 2)))"},
        {"not not a == 1", "(not (not (== a 1)))"},
        {"(a == 1 or b == 2) and c == 3", "(and (or (== a 1) (== b 2)) (== c 3))"},
        {"a == 1 and (b == 2 or c == 3) and d == 4",
         "(and (== a 1) (or (== b 2) (== c 3)) (== d 4))"},
        /* Chains flatten; written parentheses keep their own node. */
        {"a == 1 and b == 2 and c == 3", "(and (== a 1) (== b 2) (== c 3))"},
        {"a == 1 or b == 2 or c == 3 or d == 4", "(or (== a 1) (== b 2) (== c 3) (== d 4))"},
        {"(a == 1 and b == 2) and c == 3", "(and (and (== a 1) (== b 2)) (== c 3))"},
        {"a == 1 or (b == 2 or c == 3)", "(or (== a 1) (or (== b 2) (== c 3)))"},
        {"((a == 1))", "(== a 1)"},
        {"(a==1)or(b==2)", "(or (== a 1) (== b 2))"},
        /* in, not in, not ... in. */
        {"a in (1)", "(in a 1)"},
        {"a not in (1, 2)", "(not-in a 1 2)"},
        {"not a in (1, 2)", "(not (in a 1 2))"},
        {"not a not in (1)", "(not (not-in a 1))"},
        {"a in ()", "(in a)"},
        {"a in (\"x\", 2, 2.5, true, false, null, x\"0A\")",
         "(in a \"x\" 2 d:2.5 true false null x:0a)"},
        /* exists, starts_with. */
        {"exists(a)", "(exists a)"},
        {"exists ( `a b` )", "(exists a b)"},
        {"starts_with(sku, \"AB-\")", "(starts_with sku \"AB-\")"},
        {"starts_with(sku, \"\") or exists(x)", "(or (starts_with sku \"\") (exists x))"},
        /* Keywords are case-insensitive. */
        {"A == 1 AND NOT b IN (TRUE, False, NULL) Or EXISTS(c)",
         "(or (and (== A 1) (not (in b true false null))) (exists c))"},
        /* Names. */
        {"a.b-c_9 == 1", "(== a.b-c_9 1)"},
        {"_x == 1", "(== _x 1)"},
        {"`and` == 1 and `a b` == 2", "(and (== and 1) (== a b 2))"},
        {"`a\\`b\\\\c` == 1", "(== a`b\\c 1)"},
        {"`caf\\u00e9` == 1", "(== café 1)"},
        {"x == 1", "(== x 1)"},
        /* Literals. */
        {"a == \"\"", "(== a \"\")"},
        {"a == \"q\\\"b\\\\s\\tt\\rr\\nn\"", "(== a \"q\"b\\s\tt\rr\nn\")"},
        {"a == \"\\u00e9\"", "(== a \"é\")"},
        {"a == \"é\"", "(== a \"é\")"},
        {"a == \"\\ud83d\\ude00\"", "(== a \"\xF0\x9F\x98\x80\")"},
        {"a == \"`\"", "(== a \"`\")"},
        {"a == -9223372036854775808", "(== a -9223372036854775808)"},
        {"a == 9223372036854775807", "(== a 9223372036854775807)"},
        {"a == -0", "(== a 0)"},
        {"a == 007", "(== a 7)"},
        {"a == 1.0", "(== a d:1)"},
        {"a == -2.5e-3", "(== a d:-0.0025000000000000001)"},
        {"a == 1E10", "(== a d:10000000000)"},
        {"a == 1e+2", "(== a d:100)"},
        {"a == 1e-400", "(== a d:0)"},
        {"a == 1.7976931348623157e308", "(== a d:1.7976931348623157e+308)"},
        {"a == x\"\"", "(== a x:)"},
        {"a == X\"DEADbeef\"", "(== a x:deadbeef)"},
        {"a == true", "(== a true)"},
        {"a == null", "(== a null)"},
        /* Whitespace. */
        {" \t\n a\r\n==\t1 ", "(== a 1)"},
};
#define N_VALID_WHERE (sizeof(valid_where) / sizeof(valid_where[0]))

/* ------------------------------------------------ examples and shapes */

Test(optext, header_examples_parse_to_the_written_ops)
{
	OpList *ops = ops_ok("upsert Order \"o-1\" {customer_id: \"c-42\", status: \"Pending\", "
	                     "total: 120}");
	cr_assert_eq(ops->n_ops, 1);
	cr_assert_eq(ops->ops[0]->kind_case, WHIZBANG__V1__OP__KIND_UPSERT);
	Whizbang__V1__Upsert *u = ops->ops[0]->upsert;
	cr_assert_str_eq(u->type, "Order");
	cr_assert_str_eq(u->id, "o-1");
	cr_assert_not(u->merge);
	cr_assert_eq(u->n_fields, 3);
	cr_assert_str_eq(u->fields[0]->name, "customer_id");
	cr_assert_eq(u->fields[0]->value->kind_case, WHIZBANG__V1__VALUE__KIND_STRING_VALUE);
	cr_assert_str_eq(u->fields[0]->value->string_value, "c-42");
	cr_assert_str_eq(u->fields[1]->name, "status");
	cr_assert_str_eq(u->fields[1]->value->string_value, "Pending");
	cr_assert_str_eq(u->fields[2]->name, "total");
	cr_assert_eq(u->fields[2]->value->kind_case, WHIZBANG__V1__VALUE__KIND_INT_VALUE);
	cr_assert_eq(u->fields[2]->value->int_value, 120);
	optext_free_ops(ops);

	ops = ops_ok("upsert Order \"o-1\" merge {status: \"Paid\"}");
	cr_assert(ops->ops[0]->upsert->merge);
	cr_assert_eq(ops->ops[0]->upsert->n_fields, 1);
	optext_free_ops(ops);

	ops = ops_ok("update Order where customer_id == \"c-42\" set status = \"Cancelled\", inc "
	             "revision by 1");
	cr_assert_eq(ops->ops[0]->kind_case, WHIZBANG__V1__OP__KIND_UPDATE);
	Whizbang__V1__Update *up = ops->ops[0]->update;
	cr_assert_str_eq(up->type, "Order");
	cr_assert_str_eq(up->where->text, "customer_id == \"c-42\"");
	char *tree = dump(up->where->expr);
	cr_assert_str_eq(tree, "(== customer_id \"c-42\")");
	free(tree);
	cr_assert_eq(up->n_actions, 2);
	cr_assert_eq(up->actions[0]->kind_case, WHIZBANG__V1__ACTION__KIND_SET);
	cr_assert_str_eq(up->actions[0]->set->field, "status");
	cr_assert_str_eq(up->actions[0]->set->value->string_value, "Cancelled");
	cr_assert_eq(up->actions[1]->kind_case, WHIZBANG__V1__ACTION__KIND_INCREMENT);
	cr_assert_str_eq(up->actions[1]->increment->field, "revision");
	cr_assert_eq(up->actions[1]->increment->by->kind_case, WHIZBANG__V1__VALUE__KIND_INT_VALUE);
	cr_assert_eq(up->actions[1]->increment->by->int_value, 1);
	cr_assert_null(up->create_if_none);
	optext_free_ops(ops);

	ops = ops_ok(
	        "update Order where order_no == \"o-9\" set status = \"New\" create \"o-9\" "
	        "{order_no: \"o-9\", status: \"New\"}");
	up = ops->ops[0]->update;
	cr_assert_eq(up->n_actions, 1);
	cr_assert_not_null(up->create_if_none);
	cr_assert_str_eq(up->create_if_none->id, "o-9");
	cr_assert_eq(up->create_if_none->n_fields, 2);
	cr_assert_str_eq(up->create_if_none->fields[1]->value->string_value, "New");
	optext_free_ops(ops);

	ops = ops_ok("update Order where total < 0 unset discount");
	up = ops->ops[0]->update;
	cr_assert_eq(up->actions[0]->kind_case, WHIZBANG__V1__ACTION__KIND_UNSET);
	cr_assert_str_eq(up->actions[0]->unset, "discount");
	cr_assert_str_eq(up->where->text, "total < 0");
	optext_free_ops(ops);

	ops = ops_ok("delete Order \"o-1\"");
	cr_assert_eq(ops->ops[0]->kind_case, WHIZBANG__V1__OP__KIND_DELETE);
	cr_assert_eq(ops->ops[0]->delete_->target_case, WHIZBANG__V1__DELETE__TARGET_ID);
	cr_assert_str_eq(ops->ops[0]->delete_->id, "o-1");
	optext_free_ops(ops);

	ops = ops_ok("delete Order where status == \"Cancelled\"");
	cr_assert_eq(ops->ops[0]->delete_->target_case, WHIZBANG__V1__DELETE__TARGET_WHERE);
	cr_assert_str_eq(ops->ops[0]->delete_->where->text, "status == \"Cancelled\"");
	optext_free_ops(ops);

	ops = ops_ok("create index Order customer_id");
	cr_assert_eq(ops->ops[0]->kind_case, WHIZBANG__V1__OP__KIND_CREATE_INDEX);
	cr_assert_str_eq(ops->ops[0]->create_index->type, "Order");
	cr_assert_str_eq(ops->ops[0]->create_index->field, "customer_id");
	optext_free_ops(ops);

	ops = ops_ok("drop index Order customer_id");
	cr_assert_eq(ops->ops[0]->kind_case, WHIZBANG__V1__OP__KIND_DROP_INDEX);
	cr_assert_str_eq(ops->ops[0]->drop_index->type, "Order");
	cr_assert_str_eq(ops->ops[0]->drop_index->field, "customer_id");
	optext_free_ops(ops);
}

Test(optext, index_and_drop_are_names_outside_the_index_operations)
{
	OpList *ops = ops_ok("create index index drop; drop index drop index; update index where "
	                     "index == 1 set drop = 2");
	cr_assert_eq(ops->n_ops, 3);
	cr_assert_eq(ops->ops[0]->kind_case, WHIZBANG__V1__OP__KIND_CREATE_INDEX);
	cr_assert_str_eq(ops->ops[0]->create_index->type, "index");
	cr_assert_str_eq(ops->ops[0]->create_index->field, "drop");
	cr_assert_eq(ops->ops[1]->kind_case, WHIZBANG__V1__OP__KIND_DROP_INDEX);
	cr_assert_str_eq(ops->ops[1]->drop_index->type, "drop");
	cr_assert_str_eq(ops->ops[1]->drop_index->field, "index");
	cr_assert_str_eq(ops->ops[2]->update->type, "index");
	char *tree = dump(ops->ops[2]->update->where->expr);
	cr_assert_str_eq(tree, "(== index 1)");
	free(tree);
	cr_assert_str_eq(ops->ops[2]->update->actions[0]->set->field, "drop");
	/* The formatter leaves them bare, and `create` (a keyword) quoted. */
	char *text = format_op(ops->ops[0]);
	cr_assert_str_eq(text, "create index index drop");
	free(text);
	optext_free_ops(ops);
	ops = ops_ok("create index `create` `drop`");
	text = format_op(ops->ops[0]);
	cr_assert_str_eq(text, "create index `create` drop");
	free(text);
	optext_free_ops(ops);
}

Test(optext, several_ops_apply_in_the_written_order)
{
	OpList *ops = ops_ok("upsert A \"1\" {n: 1}; update A where n >= 1 inc n by 1; delete A "
	                     "where n > 10");
	cr_assert_eq(ops->n_ops, 3);
	cr_assert_eq(ops->ops[0]->kind_case, WHIZBANG__V1__OP__KIND_UPSERT);
	cr_assert_eq(ops->ops[1]->kind_case, WHIZBANG__V1__OP__KIND_UPDATE);
	cr_assert_eq(ops->ops[2]->kind_case, WHIZBANG__V1__OP__KIND_DELETE);
	cr_assert_str_eq(ops->ops[1]->update->where->text, "n >= 1");
	cr_assert_str_eq(ops->ops[2]->delete_->where->text, "n > 10");
	optext_free_ops(ops);

	/* One trailing ';' is allowed. */
	ops = ops_ok("delete A \"1\";");
	cr_assert_eq(ops->n_ops, 1);
	optext_free_ops(ops);

	/* Many ops grow the array past several powers of two. */
	char text[4096] = "";
	for (int k = 0; k < 100; k++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "delete A \"%d\"; ", k);
	ops = ops_ok(text);
	cr_assert_eq(ops->n_ops, 100);
	cr_assert_str_eq(ops->ops[99]->delete_->id, "99");
	optext_free_ops(ops);
}

Test(optext, where_text_is_the_exact_source_of_the_clause)
{
	OpList *ops = ops_ok("update Order where  a==1   and\t(b == \"x y\" )  set x = 1; delete B "
	                     "where not  exists(c)  ;");
	cr_assert_str_eq(ops->ops[0]->update->where->text, "a==1   and\t(b == \"x y\" )");
	cr_assert_str_eq(ops->ops[1]->delete_->where->text, "not  exists(c)");
	optext_free_ops(ops);
}

Test(optext, where_clauses_build_the_expected_trees)
{
	for (size_t k = 0; k < N_VALID_WHERE; k++) {
		Expr *e = where_ok(valid_where[k].text);
		char *tree = dump(e);
		cr_expect_str_eq(tree, valid_where[k].tree, "%s: got %s", valid_where[k].text,
		                 tree);
		free(tree);
		optext_free_expr(e);
	}
}

Test(optext, values_in_field_maps_have_their_types)
{
	OpList *ops = ops_ok("upsert T \"i\" {s: \"x\", i: -7, d: 2.5, t: true, f: false, n: null, "
	                     "b: x\"0aFF\", e: x\"\"}");
	Whizbang__V1__Field **f = ops->ops[0]->upsert->fields;
	cr_assert_eq(ops->ops[0]->upsert->n_fields, 8);
	cr_assert_eq(f[0]->value->kind_case, WHIZBANG__V1__VALUE__KIND_STRING_VALUE);
	cr_assert_eq(f[1]->value->kind_case, WHIZBANG__V1__VALUE__KIND_INT_VALUE);
	cr_assert_eq(f[1]->value->int_value, -7);
	cr_assert_eq(f[2]->value->kind_case, WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE);
	cr_assert_eq(f[2]->value->double_value, 2.5);
	cr_assert_eq(f[3]->value->kind_case, WHIZBANG__V1__VALUE__KIND_BOOL_VALUE);
	cr_assert(f[3]->value->bool_value);
	cr_assert_not(f[4]->value->bool_value);
	cr_assert_eq(f[5]->value->kind_case, WHIZBANG__V1__VALUE__KIND_NULL_VALUE);
	cr_assert_eq(f[6]->value->kind_case, WHIZBANG__V1__VALUE__KIND_BYTES_VALUE);
	cr_assert_eq(f[6]->value->bytes_value.len, 2);
	cr_assert_eq(f[6]->value->bytes_value.data[0], 0x0a);
	cr_assert_eq(f[6]->value->bytes_value.data[1], 0xff);
	cr_assert_eq(f[7]->value->kind_case, WHIZBANG__V1__VALUE__KIND_BYTES_VALUE);
	cr_assert_eq(f[7]->value->bytes_value.len, 0);
	optext_free_ops(ops);

	/* inc takes an int or a double. */
	ops = ops_ok("update T where a == 1 inc n by 2, inc m by -0.5");
	Whizbang__V1__Action **a = ops->ops[0]->update->actions;
	cr_assert_eq(a[0]->increment->by->kind_case, WHIZBANG__V1__VALUE__KIND_INT_VALUE);
	cr_assert_eq(a[0]->increment->by->int_value, 2);
	cr_assert_eq(a[1]->increment->by->kind_case, WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE);
	cr_assert_eq(a[1]->increment->by->double_value, -0.5);
	optext_free_ops(ops);
}

Test(optext, escapes_decode_to_utf8)
{
	Expr *e = where_ok("a == \"\\u00e9\\u20AC\\ud83d\\ude00\\\"\\\\\\n\\t\\r\"");
	cr_assert_str_eq(e->compare->value->string_value,
	                 "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"\\\n\t\r");
	optext_free_expr(e);
}

/* ------------------------------------------------ errors */

static const struct {
	bool where; /* parse with optext_parse_where, else optext_parse_ops */
	const char *text;
	size_t column;
	const char *message; /* the whole message */
} invalid[] = {
        /* Expected something else. */
        {true, "status == \"x\" or total ==", 26, "column 26: expected a value after '=='"},
        {true, "customer_id ==  and b", 17, "column 17: expected a value after '=='"},
        {true, "a >= b", 6, "column 6: expected a value after '>='"},
        {true, "", 1,
         "column 1: expected a condition: a field name, 'not', 'exists', 'starts_with' or '('"},
        {true, "a == 1 and", 11,
         "column 11: expected a condition: a field name, 'not', 'exists', 'starts_with' or '('"},
        {true, "a == 1 and or b == 2", 12,
         "column 12: expected a condition: a field name, 'not', 'exists', 'starts_with' or '('"},
        {true, "a = 1", 3, "column 3: '=' assigns; write '==' to compare"},
        {true, "a 1", 3,
         "column 3: expected a comparison ('==', '!=', '<', '<=', '>', '>='), 'in' or 'not in' "
         "after the field name"},
        {true, "a not (1)", 7, "column 7: expected 'in' after 'not'"},
        {true, "a in 1", 6, "column 6: expected '(' after 'in'"},
        {true, "a not in 1", 10, "column 10: expected '(' after 'not in'"},
        {true, "a in (", 7, "column 7: expected a value or ')' after '('"},
        {true, "a in (1,)", 9, "column 9: expected a value after ','"},
        {true, "a in (1 2)", 9, "column 9: expected ',' or ')' to close '(' at column 6"},
        {true, "exists a", 8, "column 8: expected '(' after 'exists'"},
        {true, "exists()", 8, "column 8: expected a field name after 'exists('"},
        {true, "exists(a", 9, "column 9: expected ')' to close '(' at column 7"},
        {true, "starts_with(a)", 14, "column 14: expected ',' and a prefix after the field name"},
        {true, "starts_with(a, 1)", 16, "column 16: expected a string prefix after ','"},
        {true, "not", 4,
         "column 4: expected a condition: a field name, 'not', 'exists', 'starts_with' or '('"},
        {true, "\"a\" == 1", 1,
         "column 1: expected a condition: a field name, 'not', 'exists', 'starts_with' or '('; "
         "names are bare or in `backquotes`, not in \"quotes\""},
        {true, "set == 1", 1,
         "column 1: expected a condition: a field name, 'not', 'exists', 'starts_with' or '('; "
         "'set' is a keyword, write `set` to use it as a name"},
        {true, "exists(Null)", 8,
         "column 8: expected a field name after 'exists('; 'Null' is a keyword, write `Null` to "
         "use it as a name"},
        /* Unclosed parentheses. */
        {true, "a == 1 and (b == 2 or (c == 3) and d == 4", 42,
         "column 42: expected ')' to close '(' at column 12"},
        {true, "(((a == 1))", 12, "column 12: expected ')' to close '(' at column 1"},
        /* Trailing input. */
        {true, "a == 1 b == 2", 8,
         "column 8: unknown keyword 'b'; expected 'and', 'or' or the end "
         "of the clause"},
        {true, "a == 1 adn b == 2", 8,
         "column 8: unknown keyword 'adn'; expected 'and', 'or' or the end of the clause"},
        {true, "a == 1)", 7, "column 7: expected 'and', 'or' or the end of the clause"},
        {true, "a == 1;", 7, "column 7: expected 'and', 'or' or the end of the clause"},
        {false, "delete Order \"o-1\" now", 20,
         "column 20: unknown keyword 'now'; expected ';' or the end of the input"},
        {false, "upsert A \"1\" {} {}", 17, "column 17: expected ';' or the end of the input"},
        {false, "update A where a == 1 set b = 1 c = 2", 33,
         "column 33: unknown keyword 'c'; expected ',', 'create', ';' or the end of the input"},
        {false, "update A where a == 1 set b = 1 create \"x\" {} set", 47,
         "column 47: expected ';' or the end of the input"},
        {false, "delete A \"1\";;", 14,
         "column 14: expected an operation: 'upsert', 'update', 'delete', 'create index' or "
         "'drop index'"},
        /* Unknown keywords. */
        {false, "upsrt Order \"o-1\" {}", 1,
         "column 1: unknown operation 'upsrt'; expected 'upsert', 'update', 'delete', 'create "
         "index' or 'drop index'"},
        {false, "", 1,
         "column 1: expected an operation: 'upsert', 'update', 'delete', 'create index' or "
         "'drop index'"},
        {false, "  ;", 3,
         "column 3: expected an operation: 'upsert', 'update', 'delete', 'create index' or "
         "'drop index'"},
        {false, "index Order a", 1,
         "column 1: unknown operation 'index'; expected 'upsert', 'update', 'delete', 'create "
         "index' or 'drop index'"},
        {false, "`drop` index Order a", 1,
         "column 1: expected an operation: 'upsert', 'update', 'delete', 'create index' or "
         "'drop index'"},
        /* Index operations. */
        {false, "create Order customer_id", 8,
         "column 8: unknown keyword 'Order'; expected 'index' after 'create'"},
        {false, "create", 7, "column 7: expected 'index' after 'create'"},
        {false, "drop indexes Order a", 6,
         "column 6: unknown keyword 'indexes'; expected 'index' after 'drop'"},
        {false, "drop `index` Order a", 6, "column 6: expected 'index' after 'drop'"},
        {false, "create index", 13, "column 13: expected a type name after 'index'"},
        {false, "create index Order", 19, "column 19: expected a field name after the type name"},
        {false, "drop index Order \"status\"", 18,
         "column 18: expected a field name after the type name; names are bare or in "
         "`backquotes`, not in \"quotes\""},
        {false, "create index Order where", 20,
         "column 20: expected a field name after the type name; 'where' is a keyword, write "
         "`where` to use it as a name"},
        {false, "create index Order a b", 22,
         "column 22: unknown keyword 'b'; expected ';' or the end of the input"},
        {false, "create index Order a; drop index Order", 39,
         "column 39: expected a field name after the type name"},
        {false, "upsert Order \"o-1\" merg {}", 20,
         "column 20: unknown keyword 'merg'; expected '{' or 'merge' after the id"},
        {false, "upsert Order \"o-1\" merge", 25, "column 25: expected '{' after 'merge'"},
        {false, "update Order set a = 1", 14, "column 14: expected 'where' after the type name"},
        {false, "update Order wher a == 1", 14,
         "column 14: unknown keyword 'wher'; expected 'where' after the type name"},
        {false, "update Order where a == 1", 26,
         "column 26: expected 'and', 'or', 'set', 'unset' or 'inc'"},
        {false, "update Order where a == 1 sett b = 2", 27,
         "column 27: unknown keyword 'sett'; expected 'and', 'or', 'set', 'unset' or 'inc'"},
        {false, "update Order where a == 1 set b = 2, c = 3", 38,
         "column 38: unknown keyword 'c'; expected 'set', 'unset' or 'inc' after ','"},
        {false, "update Order where a == 1 inc n bye 2", 33,
         "column 33: unknown keyword 'bye'; expected 'by' after the field name"},
        {false, "update Order where a == 1 inc n by \"2\"", 36,
         "column 36: expected a number after 'by'"},
        {false, "update Order where a == 1 inc n by true", 36,
         "column 36: expected a number after 'by'"},
        {false, "update Order where a == 1 set b == 2", 33,
         "column 33: expected '=' after the field name"},
        {false, "update Order where a == 1 set b = ", 35, "column 35: expected a value after '='"},
        {false, "update Order where a == 1 unset", 32,
         "column 32: expected a field name after 'unset'"},
        {false, "update Order where a == 1 set b = 1 create {}", 44,
         "column 44: expected a quoted id after 'create'"},
        {false, "update Order where a == 1 set b = 1 create \"x\"", 47,
         "column 47: expected '{' after the id"},
        {false, "delete Order", 13,
         "column 13: expected a quoted id or 'where' after the type name"},
        {false, "delete Order id", 14,
         "column 14: unknown keyword 'id'; expected a quoted id or 'where' after the type name"},
        {false, "delete \"Order\" \"o-1\"", 8,
         "column 8: expected a type name after 'delete'; names are bare or in `backquotes`, not "
         "in \"quotes\""},
        {false, "upsert Order o-1 {}", 14, "column 14: expected a quoted id after the type name"},
        {false, "upsert Order \"o-1\" {a 1}", 23, "column 23: expected ':' after the field name"},
        {false, "upsert Order \"o-1\" {a: }", 24, "column 24: expected a value after ':'"},
        {false, "upsert Order \"o-1\" {a: 1,}", 26, "column 26: expected a field name after ','"},
        {false, "upsert Order \"o-1\" {,}", 21,
         "column 21: expected a field name or '}' after '{'"},
        {false, "upsert Order \"o-1\" {a: 1 b: 2}", 26,
         "column 26: expected ',' or '}' to close '{' at column 20"},
        {false, "upsert Order \"o-1\" {a: 1, b: 2, `a`: 3}", 33,
         "column 33: field '`a`' is given twice"},
        {false, "upsert Order \"o-1\" {a: b}", 24, "column 24: expected a value after ':'"},
        /* Strings and escapes. */
        {true, "ab == \"x", 7, "column 7: unterminated string"},
        {true, "a == \"x\\", 6, "column 6: unterminated string"},
        {true, "`ab == 1", 1, "column 1: unterminated name"},
        {true, "a == \"x\\qy\"", 8, "column 8: invalid escape '\\q'"},
        {true, "a == \"x\\u00g1\"", 8, "column 8: invalid escape: \\u takes four hex digits"},
        {true, "a == \"x\\u00e\"", 8, "column 8: invalid escape: \\u takes four hex digits"},
        {true, "a == \"\\u0000\"", 7, "column 7: \\u0000 is not allowed in a string"},
        {true, "`\\u0000` == 1", 2, "column 2: \\u0000 is not allowed in a name"},
        {true, "`a\tb` == 1", 3, "column 3: control character in a name; write it as an escape"},
        {true, "a == \"\\udc00\"", 7, "column 7: invalid escape: \\uDC00 is a lone low surrogate"},
        {true, "a == \"\\ud83d\"", 7,
         "column 7: invalid escape: \\uD83D must be followed by a low surrogate \\uDC00-\\uDFFF"},
        {true, "a == \"\\ud83d\\u0041\"", 7,
         "column 7: invalid escape: \\uD83D must be followed by a low surrogate \\uDC00-\\uDFFF"},
        {true, "a == \"x\ty\"", 8,
         "column 8: control character in a string; write it as an escape"},
        {true, "a == \"\xC3\"", 7, "column 7: invalid UTF-8 in a string"},
        {true, "a == \"\xC3x\"", 7, "column 7: invalid UTF-8 in a string"},
        {true, "a == \"\xED\xA0\x80\"", 7, "column 7: invalid UTF-8 in a string"},
        {true, "a == \"\xFF\"", 7, "column 7: invalid UTF-8 in a string"},
        {true, "`a\\\"` == 1", 3, "column 3: invalid escape '\\\"'"},
        {true, "a == \"\\`\"", 7, "column 7: invalid escape '\\`'"},
        /* Columns count characters, not bytes. */
        {true, "\"\xC3\xA9\xC3\xA9\" == 1", 1,
         "column 1: expected a condition: a field name, 'not', 'exists', 'starts_with' or '('; "
         "names are bare or in `backquotes`, not in \"quotes\""},
        {true, "a == \"\xC3\xA9\xE2\x82\xAC\" and @", 15, "column 15: unexpected character '@'"},
        {true, "\xC3\xA9 == 1", 1, "column 1: unexpected character U+00E9"},
        {true, "a == 1 \x01", 8, "column 8: unexpected byte 0x01"},
        {true, "a == 1 \xFF", 8, "column 8: unexpected byte 0xFF"},
        {true, "a ! 1", 3, "column 3: unexpected '!'; write '!=' or 'not'"},
        {true, "a == 'x'", 6, "column 6: unexpected character '''"},
        /* Bytes. */
        {true, "a == x\"0a0\"", 11, "column 11: odd number of hex digits in a bytes literal"},
        {true, "a == x\"0g\"", 9, "column 9: invalid hex digit in a bytes literal"},
        {true, "a == x\"0a", 6, "column 6: unterminated bytes literal"},
        /* Numbers. */
        {true, "a == 9223372036854775808", 6, "column 6: integer out of range (int64)"},
        {true, "a == -9223372036854775809", 6, "column 6: integer out of range (int64)"},
        {true, "a == 99999999999999999999999", 6, "column 6: integer out of range (int64)"},
        {true, "a == 1.", 8, "column 8: expected a digit after '.'"},
        {true, "a == 1.e5", 8, "column 8: expected a digit after '.'"},
        {true, "a == .5", 6, "column 6: unexpected character '.'"},
        {true, "a == 1e", 8, "column 8: expected a digit in the exponent"},
        {true, "a == 1e+", 9, "column 9: expected a digit in the exponent"},
        {true, "a == -", 6, "column 6: expected a digit after '-'"},
        {true, "a == - 1", 6, "column 6: expected a digit after '-'"},
        {true, "a == 12abc", 6, "column 6: invalid number"},
        {true, "a == 0x10", 6, "column 6: invalid number"},
        {true, "a == 1.5.2", 6, "column 6: invalid number"},
        {true, "a == inf", 6, "column 6: expected a value after '=='"},
        {true, "a == nan", 6, "column 6: expected a value after '=='"},
        {true, "a == +1", 6, "column 6: unexpected character '+'"},
};
#define N_INVALID (sizeof(invalid) / sizeof(invalid[0]))

Test(optext, invalid_input_names_the_column_and_what_was_expected)
{
	for (size_t k = 0; k < N_INVALID; k++) {
		struct optext_error err = {0};
		int rc;
		void *sentinel = &err;
		if (invalid[k].where) {
			Expr *e = sentinel;
			rc = optext_parse_where(invalid[k].text, &e, &err);
			cr_expect_eq((void *)e, sentinel, "%s: *out was written", invalid[k].text);
		} else {
			OpList *ops = sentinel;
			rc = optext_parse_ops(invalid[k].text, &ops, &err);
			cr_expect_eq((void *)ops, sentinel, "%s: *out was written",
			             invalid[k].text);
		}
		cr_expect_eq(rc, WB_INVALID_EXPRESSION, "%s: rc %d", invalid[k].text, rc);
		cr_expect_eq(err.column, invalid[k].column, "%s: column %zu, want %zu (%s)",
		             invalid[k].text, err.column, invalid[k].column, err.message);
		cr_expect_str_eq(err.message, invalid[k].message, "%s: got %s", invalid[k].text,
		                 err.message);
	}
}

Test(optext, where_clauses_are_also_checked_inside_ops)
{
	struct optext_error err = {0};
	OpList *ops = NULL;
	cr_assert_eq(optext_parse_ops(
	                     "delete Order where status == \"Cancelled\" and total ==", &ops, &err),
	             WB_INVALID_EXPRESSION);
	cr_assert_eq(err.column, 54);
	cr_assert_str_eq(err.message, "column 54: expected a value after '=='");
	cr_assert_null(ops);
}

static char *nested(const char *open, int levels, const char *inner, const char *close)
{
	size_t n = (strlen(open) + strlen(close)) * (size_t)levels + strlen(inner) + 1;
	char *s = malloc(n);
	cr_assert_not_null(s);
	size_t o = 0, ol = strlen(open), il = strlen(inner), cl = strlen(close);
	for (int k = 0; k < levels; k++, o += ol)
		memcpy(s + o, open, ol);
	memcpy(s + o, inner, il);
	o += il;
	for (int k = 0; k < levels; k++, o += cl)
		memcpy(s + o, close, cl);
	s[o] = '\0';
	return s;
}

Test(optext, nesting_is_limited_to_max_depth)
{
	struct optext_error err;
	Expr *e;

	char *s = nested("(", OPTEXT_MAX_DEPTH, "a == 1", ")");
	e = where_ok(s);
	optext_free_expr(e);
	free(s);

	s = nested("(", OPTEXT_MAX_DEPTH + 1, "a == 1", ")");
	cr_assert_eq(optext_parse_where(s, &e, &err), WB_INVALID_EXPRESSION);
	cr_assert_eq(err.column, OPTEXT_MAX_DEPTH + 1);
	cr_assert_str_eq(err.message,
	                 "column 65: nested deeper than 64 levels of parentheses and 'not'");
	free(s);

	/* The tree's levels count too, as the server counts them: 63 nots
	 * over a comparison are 64 levels, 64 nots are one too many. */
	s = nested("not ", OPTEXT_MAX_DEPTH - 1, "a == 1", "");
	e = where_ok(s);
	char *text = format_expr(e);
	cr_assert_str_eq(text, s);
	free(text);
	optext_free_expr(e);
	free(s);
	s = nested("not ", OPTEXT_MAX_DEPTH, "a == 1", "");
	cr_assert_eq(optext_parse_where(s, &e, &err), WB_INVALID_EXPRESSION);
	cr_assert_eq(err.column, 1);
	cr_assert_str_eq(err.message, "column 1: the clause nests deeper than 64 levels");
	free(s);

	s = nested("not ", OPTEXT_MAX_DEPTH + 1, "a == 1", "");
	cr_assert_eq(optext_parse_where(s, &e, &err), WB_INVALID_EXPRESSION);
	cr_assert_eq(err.column, 4 * OPTEXT_MAX_DEPTH + 1);
	free(s);

	/* Parentheses and nots count together. */
	s = nested("not (", OPTEXT_MAX_DEPTH / 2, "a == 1", ")");
	e = where_ok(s);
	optext_free_expr(e);
	free(s);
	s = nested("not (", OPTEXT_MAX_DEPTH / 2, "not a == 1", ")");
	cr_assert_eq(optext_parse_where(s, &e, &err), WB_INVALID_EXPRESSION);
	cr_assert_eq(err.column, 5 * (OPTEXT_MAX_DEPTH / 2) + 1);
	free(s);

	/* Depth is about nesting, not length: siblings do not add up. */
	char flat[4096] = "";
	for (int k = 0; k < 200; k++)
		strcat(flat, k == 0 ? "(not a == 1)" : " and (not a == 1)");
	e = where_ok(flat);
	cr_assert_eq(e->all_of->n_terms, 200);
	optext_free_expr(e);

	/* In an op too. */
	s = nested("(", OPTEXT_MAX_DEPTH + 1, "a == 1", ")");
	char *op = malloc(strlen(s) + 32);
	cr_assert_not_null(op);
	sprintf(op, "delete T where %s", s);
	OpList *ops;
	cr_assert_eq(optext_parse_ops(op, &ops, &err), WB_INVALID_EXPRESSION);
	cr_assert_eq(err.column, 15 + OPTEXT_MAX_DEPTH + 1);
	free(op);
	free(s);
}

Test(optext, a_hundred_thousand_levels_are_refused_not_a_stack_overflow)
{
	/* The parser recurses once per parenthesis or not: deep input must be
	 * refused at the bound, long before the stack could run out, whether
	 * the input is closed or not, in a clause or in an op. */
	const char *opens[] = {"(", "not ", "not (", "(not "};
	for (size_t k = 0; k < sizeof opens / sizeof opens[0]; k++) {
		for (int closed = 0; closed < 2; closed++) {
			char *s = nested(opens[k], 100000, "a == 1", closed ? ")" : "");
			struct optext_error err;
			Expr *e = NULL;
			cr_assert_eq(optext_parse_where(s, &e, &err), WB_INVALID_EXPRESSION,
			             "%s x 100000", opens[k]);
			cr_assert_null(e);
			cr_assert_not_null(strstr(err.message, "nest"), "%s", err.message);
			char *op = malloc(strlen(s) + 32);
			cr_assert_not_null(op);
			sprintf(op, "update T where %s set b = 1", s);
			OpList *ops = NULL;
			cr_assert_eq(optext_parse_ops(op, &ops, &err), WB_INVALID_EXPRESSION);
			cr_assert_null(ops);
			free(op);
			free(s);
		}
	}
}

/* ------------------------------------------------ formatting */

Test(optext, formatting_is_canonical)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	        {"a==1", "a == 1"},
	        {"A == 1 AND NOT b IN (TRUE, False, NULL) Or EXISTS ( c )",
	         "A == 1 and not b in (true, false, null) or exists(c)"},
	        {"((a == 1))", "a == 1"},
	        {"not (a == 1)", "not a == 1"},
	        {"not (a == 1 and b == 2)", "not (a == 1 and b == 2)"},
	        {"not (a == 1 or b == 2)", "not (a == 1 or b == 2)"},
	        {"(a == 1 and b == 2) or c == 3", "a == 1 and b == 2 or c == 3"},
	        {"(a == 1 or b == 2) and c == 3", "(a == 1 or b == 2) and c == 3"},
	        {"(a == 1 and b == 2) and c == 3", "(a == 1 and b == 2) and c == 3"},
	        {"a == 1 or (b == 2 or c == 3)", "a == 1 or (b == 2 or c == 3)"},
	        {"a == 1 or (b == 2 and c == 3)", "a == 1 or b == 2 and c == 3"},
	        {"not (not (a == 1))", "not not a == 1"},
	        {"a not in (1,2)", "a not in (1, 2)"},
	        {"not a in (1)", "not a in (1)"},
	        {"a in ( )", "a in ()"},
	        {"`and` == 1 and `a b` == 2 and `x` == 3 and `1a` == 4",
	         "`and` == 1 and `a b` == 2 and "
	         "x == 3 and `1a` == 4"},
	        {"`AND` == 1 and `In` == 2", "`AND` == 1 and `In` == 2"},
	        {"`a\\`b` == \"q\\\"`\\\\\"", "`a\\`b` == \"q\\\"`\\\\\""},
	        {"a == \"\\u0001\\u001F\\u007f\\n\\t\\r\\u00e9\"",
	         "a == \"\\u0001\\u001f\\u007f\\n\\t\\r\xC3\xA9\""},
	        {"`\\n` == 1", "`\\n` == 1"},
	        {"a == X\"0A\"", "a == x\"0a\""},
	        {"a == 120.0", "a == 120.0"},
	        {"a == 1e2", "a == 100.0"},
	        {"a == 0.1", "a == 0.1"},
	        {"a == -0.0", "a == -0.0"},
	        {"a == 1e300", "a == 1e+300"},
	        {"a == 1.5e-7", "a == 1.5e-07"},
	        {"a == 0.3333333333333333", "a == 0.3333333333333333"},
	        {"a == 0.30000000000000004", "a == 0.30000000000000004"},
	        {"a == 5e-324", "a == 4.94065645841247e-324"},
	        {"a == 123456789012345678", "a == 123456789012345678"},
	        {"a == 123456789012345678.0", "a == 1.2345678901234568e+17"},
	        {"a == -0", "a == 0"},
	        {"starts_with( a ,\"p\" )", "starts_with(a, \"p\")"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		Expr *e = where_ok(cases[k].in);
		char *text = format_expr(e);
		cr_expect_str_eq(text, cases[k].out, "%s: got %s", cases[k].in, text);
		free(text);
		optext_free_expr(e);
	}

	static const struct {
		const char *in, *out;
	} op_cases[] = {
	        {"UPSERT `Order` \"o-1\" MERGE {a:1,b:\"x\"}",
	         "upsert Order \"o-1\" merge {a: 1, b: \"x\"}"},
	        {"upsert `upsert` \"\" {}", "upsert `upsert` \"\" {}"},
	        {"update T where a==1 set b=2,unset c,inc d by 1.0 create \"i\" {}",
	         "update T where a == 1 set b = 2, unset c, inc d by 1.0 create \"i\" {}"},
	        {"delete T where  a==1", "delete T where a == 1"},
	        {"delete T \"i\\u00e9\"", "delete T \"i\xC3\xA9\""},
	        {"CREATE  INDEX `Order` `a b`", "create index Order `a b`"},
	        {"drop\tIndex\nOrder x ;", "drop index Order x"},
	};
	for (size_t k = 0; k < sizeof(op_cases) / sizeof(op_cases[0]); k++) {
		OpList *ops = ops_ok(op_cases[k].in);
		char *text = format_op(ops->ops[0]);
		cr_expect_str_eq(text, op_cases[k].out, "%s: got %s", op_cases[k].in, text);
		free(text);
		optext_free_ops(ops);
	}
}

Test(optext, doubles_read_back_bit_for_bit)
{
	static const double ds[] = {0.0,
	                            -0.0,
	                            0.1,
	                            1.0 / 3,
	                            2.0 / 3,
	                            1e-300,
	                            4.9e-324,
	                            1e22,
	                            1e23,
	                            -1.5e300,
	                            123.456,
	                            1e15,
	                            1e16,
	                            1e17,
	                            2.2250738585072014e-308,
	                            1.7976931348623157e308,
	                            /* infinities are written 1e999 and -1e999 */
	                            __builtin_inf(),
	                            -__builtin_inf()};
	for (size_t k = 0; k < sizeof(ds) / sizeof(ds[0]); k++) {
		Value v = WHIZBANG__V1__VALUE__INIT;
		v.kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
		v.double_value = ds[k];
		Whizbang__V1__Compare c = WHIZBANG__V1__COMPARE__INIT;
		c.field = "a";
		c.value = &v;
		Expr e = WHIZBANG__V1__EXPR__INIT;
		e.node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
		e.compare = &c;
		char *text = format_expr(&e);
		Expr *back = where_ok(text);
		cr_assert_eq(back->compare->value->kind_case,
		             WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE, "%s", text);
		cr_assert_eq(memcmp(&back->compare->value->double_value, &ds[k], sizeof(double)), 0,
		             "%.17g came back from %s as %.17g", ds[k], text,
		             back->compare->value->double_value);
		if (__builtin_isinf(ds[k]))
			cr_assert_str_eq(text, ds[k] > 0 ? "a == 1e999" : "a == -1e999");
		free(text);
		optext_free_expr(back);
	}
}

Test(optext, output_that_does_not_fit_is_truncated_like_snprintf)
{
	OpList *ops = ops_ok("upsert Order \"o-1\" {status: \"Pending\"}");
	const Op *op = ops->ops[0];
	const char *full = "upsert Order \"o-1\" {status: \"Pending\"}";
	size_t n = strlen(full);
	char buf[128];

	cr_assert_eq(optext_format_op(op, NULL, 0), n);
	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(optext_format_op(op, buf, n + 1), n);
	cr_assert_str_eq(buf, full);

	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(optext_format_op(op, buf, n), n);
	cr_assert_eq(strlen(buf), n - 1);
	cr_assert_eq(strncmp(buf, full, n - 4), 0);
	cr_assert_str_eq(buf + n - 4, "...");
	cr_assert_eq(buf[n], 'Z', "wrote past len");

	cr_assert_eq(optext_format_op(op, buf, 10), n);
	cr_assert_str_eq(buf, "upsert...");
	cr_assert_eq(optext_format_op(op, buf, 4), n);
	cr_assert_str_eq(buf, "...");
	cr_assert_eq(optext_format_op(op, buf, 3), n);
	cr_assert_str_eq(buf, "..");
	cr_assert_eq(optext_format_op(op, buf, 1), n);
	cr_assert_str_eq(buf, "");
	optext_free_ops(ops);

	/* The cut never splits a UTF-8 sequence: a == "ééé" is 13 bytes, the
	 * é at bytes 6-7, 8-9 and 10-11. */
	Expr *e = where_ok("a == \"\xC3\xA9\xC3\xA9\xC3\xA9\"");
	cr_assert_eq(optext_format_expr(e, buf, 11), 13);
	cr_assert_str_eq(buf, "a == \"...");
	cr_assert_eq(optext_format_expr(e, buf, 12), 13);
	cr_assert_str_eq(buf, "a == \"\xC3\xA9...");
	cr_assert_eq(optext_format_expr(e, buf, 13), 13);
	cr_assert_str_eq(buf, "a == \"\xC3\xA9...");
	cr_assert_eq(optext_format_expr(e, buf, 14), 13);
	cr_assert_str_eq(buf, "a == \"\xC3\xA9\xC3\xA9\xC3\xA9\"");
	optext_free_expr(e);
}

Test(optext, trees_the_parser_never_builds_still_format)
{
	/* A Value with no kind reads as null; a missing where shows its text. */
	Value v = WHIZBANG__V1__VALUE__INIT;
	Whizbang__V1__SetAction set = WHIZBANG__V1__SET_ACTION__INIT;
	set.field = "a";
	set.value = &v;
	Whizbang__V1__Action action = WHIZBANG__V1__ACTION__INIT;
	action.kind_case = WHIZBANG__V1__ACTION__KIND_SET;
	action.set = &set;
	Whizbang__V1__Action *actions[] = {&action};
	Whizbang__V1__Where where = WHIZBANG__V1__WHERE__INIT;
	where.text = "x == 1";
	Whizbang__V1__Update up = WHIZBANG__V1__UPDATE__INIT;
	up.type = "T";
	up.where = &where;
	up.n_actions = 1;
	up.actions = actions;
	Op op = WHIZBANG__V1__OP__INIT;
	op.kind_case = WHIZBANG__V1__OP__KIND_UPDATE;
	op.update = &up;
	char *text = format_op(&op);
	cr_assert_str_eq(text, "update T where x == 1 set a = null");
	free(text);

	Op empty = WHIZBANG__V1__OP__INIT;
	cr_assert_eq(optext_format_op(&empty, NULL, 0), 0);
	cr_assert_eq(optext_format_expr(NULL, NULL, 0), 2);
}

/* ------------------------------------------------ round trips */

/* Parses text, formats every op, parses that, and requires the same packed
 * bytes (the Where texts aside, which become the canonical clause). The
 * canonical text must also be a fixed point of format(parse(.)). */
static void round_trip_ops(const char *text)
{
	OpList *a = ops_ok(text);
	size_t cap = 64, len = 0;
	char *canon = malloc(cap);
	cr_assert_not_null(canon);
	canon[0] = '\0';
	for (size_t k = 0; k < a->n_ops; k++) {
		char *one = format_op(a->ops[k]);
		size_t need = len + strlen(one) + 3;
		if (need > cap) {
			cap = 2 * need;
			canon = realloc(canon, cap);
			cr_assert_not_null(canon);
		}
		len += (size_t)sprintf(canon + len, "%s%s", k > 0 ? "; " : "", one);
		free(one);
	}
	OpList *b = ops_ok(canon);
	cr_assert_eq(b->n_ops, a->n_ops, "%s", text);
	for (size_t k = 0; k < b->n_ops; k++) {
		Whizbang__V1__Where *w = where_of(b->ops[k]);
		if (w == NULL)
			continue;
		char *clause = format_expr(w->expr);
		cr_assert_str_eq(w->text, clause, "the text of a canonical clause is the clause");
		free(clause);
		char *again = format_op(b->ops[k]);
		cr_assert_not_null(strstr(canon, again), "format is not a fixed point: %s", again);
		free(again);
	}
	clear_texts(a);
	clear_texts(b);
	assert_same(pack(&a->base), pack(&b->base), text);
	optext_free_ops(a);
	optext_free_ops(b);
	free(canon);
}

static void round_trip_where(const char *text)
{
	Expr *a = where_ok(text);
	char *canon = format_expr(a);
	Expr *b = where_ok(canon);
	char *again = format_expr(b);
	cr_assert_str_eq(again, canon, "format is not a fixed point");
	assert_same(pack(&a->base), pack(&b->base), text);
	free(canon);
	free(again);
	optext_free_expr(a);
	optext_free_expr(b);
}

Test(optext, every_valid_input_round_trips)
{
	for (size_t k = 0; k < N_VALID_OPS; k++)
		round_trip_ops(valid_ops[k]);
	for (size_t k = 0; k < N_VALID_WHERE; k++)
		round_trip_where(valid_where[k].text);
}

/* The trees are built as protobuf-c's unpacker builds them: they pack,
 * unpack to the same bytes, and free_unpacked(NULL) frees ours and the
 * unpacked copy alike (valgrind checks the frees). */
Test(optext, trees_match_what_protobuf_c_unpacks)
{
	for (size_t k = 0; k < N_VALID_OPS; k++) {
		OpList *ops = ops_ok(valid_ops[k]);
		struct packed p = pack(&ops->base);
		OpList *copy = whizbang__v1__op_list__unpack(NULL, p.len, p.data);
		cr_assert_not_null(copy, "%s: does not unpack", valid_ops[k]);
		assert_same(p, pack(&copy->base), valid_ops[k]);
		whizbang__v1__op_list__free_unpacked(copy, NULL);
		whizbang__v1__op_list__free_unpacked(ops, NULL);
	}
	for (size_t k = 0; k < N_VALID_WHERE; k++) {
		Expr *e = where_ok(valid_where[k].text);
		struct packed p = pack(&e->base);
		Expr *copy = whizbang__v1__expr__unpack(NULL, p.len, p.data);
		cr_assert_not_null(copy, "%s: does not unpack", valid_where[k].text);
		assert_same(p, pack(&copy->base), valid_where[k].text);
		whizbang__v1__expr__free_unpacked(copy, NULL);
		whizbang__v1__expr__free_unpacked(e, NULL);
	}
}

/* ------------------------------------------------ robustness */

/* Parses s[0..n) from a buffer of exactly n + 1 bytes (so that a read past
 * the end is caught by ASan and valgrind): it must parse, and then round
 * trip, or fail with INVALID_EXPRESSION at a column inside the text. */
static void parse_piece(const char *s, size_t n, bool where)
{
	char *text = malloc(n + 1);
	cr_assert_not_null(text);
	memcpy(text, s, n);
	text[n] = '\0';
	struct optext_error err = {0};
	int rc;
	if (where) {
		Expr *e = NULL;
		rc = optext_parse_where(text, &e, &err);
		if (rc == 0) {
			optext_free_expr(e);
			round_trip_where(text);
		}
	} else {
		OpList *ops = NULL;
		rc = optext_parse_ops(text, &ops, &err);
		if (rc == 0) {
			optext_free_ops(ops);
			round_trip_ops(text);
		}
	}
	size_t len = strlen(text);
	if (rc != 0) {
		cr_assert_eq(rc, WB_INVALID_EXPRESSION, "[%s]: rc %d", text, rc);
		cr_assert(err.column >= 1 && err.column <= chars(text, len) + 1,
		          "[%s]: column %zu outside the text", text, err.column);
		char prefix[32];
		snprintf(prefix, sizeof(prefix), "column %zu: ", err.column);
		cr_assert_eq(strncmp(err.message, prefix, strlen(prefix)), 0, "[%s]: %s", text,
		             err.message);
		cr_assert_gt(strlen(err.message), strlen(prefix));
	}
	free(text);
}

Test(optext, every_prefix_parses_or_fails_cleanly)
{
	for (size_t k = 0; k < N_VALID_OPS; k++)
		for (size_t n = 0; n <= strlen(valid_ops[k]); n++)
			parse_piece(valid_ops[k], n, false);
	for (size_t k = 0; k < N_VALID_WHERE; k++)
		for (size_t n = 0; n <= strlen(valid_where[k].text); n++)
			parse_piece(valid_where[k].text, n, true);
	for (size_t k = 0; k < N_INVALID; k++)
		for (size_t n = 0; n <= strlen(invalid[k].text); n++)
			parse_piece(invalid[k].text, n, invalid[k].where);
}

Test(optext, every_one_byte_change_parses_or_fails_cleanly)
{
	static const char subst[] = "()\"\\`{}:;,=!<-.e0x9 a\x80\xC3\x01";
	char buf[512];
	for (size_t k = 0; k < N_VALID_OPS + N_VALID_WHERE; k++) {
		bool where = k >= N_VALID_OPS;
		const char *s = where ? valid_where[k - N_VALID_OPS].text : valid_ops[k];
		size_t n = strlen(s);
		cr_assert_lt(n, sizeof(buf));
		for (size_t i = 0; i < n; i++) {
			for (size_t c = 0; c < sizeof(subst) - 1; c++) {
				memcpy(buf, s, n);
				buf[i] = subst[c];
				parse_piece(buf, n, where);
			}
			/* Deleting the byte, too. */
			memcpy(buf, s, i);
			memcpy(buf + i, s + i + 1, n - i - 1);
			parse_piece(buf, n - 1, where);
		}
	}
}

/* Fails allocation number 0, 1, 2, ... of a parse until the parse gets
 * through: each attempt answers E_NOMEM, leaves *out alone and leaks
 * nothing. */
static void fail_each_allocation(const char *text, bool where)
{
	for (long n = 0;; n++) {
		cr_assert_lt(n, 100000, "%s: never got through", text);
		struct optext_error err = {0};
		void *sentinel = &err, *out = sentinel;
		int rc;
		alloc_countdown = n;
		if (where)
			rc = optext_parse_where(text, (Expr **)&out, &err);
		else
			rc = optext_parse_ops(text, (OpList **)&out, &err);
		bool failed = alloc_countdown < 0;
		alloc_countdown = -1;
		if (!failed) {
			cr_assert_eq(rc, 0, "%s: rc %d with every allocation granted", text, rc);
			if (where)
				optext_free_expr(out);
			else
				optext_free_ops(out);
			cr_assert_gt(n, 0);
			return;
		}
		cr_assert_eq(rc, WB_E_NOMEM, "%s: allocation %ld failed, rc %d (%s)", text, n, rc,
		             err.message);
		cr_assert_eq(out, sentinel, "%s: *out written on failure", text);
		cr_assert_not_null(strstr(err.message, "out of memory"));
	}
}

Test(optext, every_allocation_failure_is_answered_and_leaks_nothing)
{
	for (size_t k = 0; k < N_VALID_OPS; k++)
		fail_each_allocation(valid_ops[k], false);
	for (size_t k = 0; k < N_VALID_WHERE; k++)
		fail_each_allocation(valid_where[k].text, true);
}

/* ------------------------------------------------ index ops, values, explosions */

Test(optext, stored_explosions_leave_the_op_text_parseable)
{
	OpList *ops = ops_ok("update Order where status == \"Pending\" set status = \"Late\"; "
	                     "delete Order where total < 0");
	char *before[2] = {format_op(ops->ops[0]), format_op(ops->ops[1])};
	static uint8_t ids[] = {0, 3, 'o', '-', '1'};
	Whizbang__V1__Explosion x1 = WHIZBANG__V1__EXPLOSION__INIT,
	                        x2 = WHIZBANG__V1__EXPLOSION__INIT;
	x1.ids.data = ids;
	x1.ids.len = sizeof(ids);
	x1.count = 1;
	x1.plan = "scan";
	ops->ops[0]->update->exploded = &x1;
	ops->ops[1]->delete_->exploded = &x2;
	for (size_t k = 0; k < 2; k++) {
		char *after = format_op(ops->ops[k]);
		cr_assert_str_eq(after, before[k], "an Explosion changed the op's text");
		free(after);
		free(before[k]);
	}
	ops->ops[0]->update->exploded = NULL;
	ops->ops[1]->delete_->exploded = NULL;
	optext_free_ops(ops);
}

Test(optext, values_format_as_literals)
{
	Value v = WHIZBANG__V1__VALUE__INIT;
	char buf[64];
	cr_assert_eq(optext_format_value(&v, buf, sizeof(buf)), 4);
	cr_assert_str_eq(buf, "null");
	v.kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
	v.string_value = "a\"b\n";
	optext_format_value(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "\"a\\\"b\\n\"");
	v.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	v.int_value = -42;
	optext_format_value(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "-42");
	v.kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
	v.double_value = 120;
	optext_format_value(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "120.0");
	v.kind_case = WHIZBANG__V1__VALUE__KIND_BOOL_VALUE;
	v.bool_value = 1;
	optext_format_value(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "true");
	static uint8_t b[] = {0x0a, 0xff};
	v.kind_case = WHIZBANG__V1__VALUE__KIND_BYTES_VALUE;
	v.bytes_value.data = b;
	v.bytes_value.len = 2;
	optext_format_value(&v, buf, sizeof(buf));
	cr_assert_str_eq(buf, "x\"0aff\"");
	v.kind_case = WHIZBANG__V1__VALUE__KIND_NULL_VALUE;
	v.null_value = 1;
	cr_assert_eq(optext_format_value(&v, NULL, 0), 4);

	cr_assert_str_eq(optext_strategy_name(WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN), "scan");
	cr_assert_str_eq(optext_strategy_name(WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX), "index");
	cr_assert_str_eq(optext_strategy_name(WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX_UNION),
	                 "index union");
	cr_assert_str_eq(optext_strategy_name(WHIZBANG__V1__PLAN_STRATEGY__PLAN_ID), "id");
	cr_assert_str_eq(optext_strategy_name((Whizbang__V1__PlanStrategy)77), "unknown");
}

/* Front-codes ids[0..n) (the caller sorts them) into buf as the server
 * does; lens[k] is the length of ids[k], or 0 to use strlen. */
static size_t encode_ids(const char *const *ids, const size_t *lens, size_t n, uint8_t *buf)
{
	size_t len = 0, prev_len = 0;
	const char *prev = "";
	for (size_t k = 0; k < n; k++) {
		size_t idl = lens != NULL ? lens[k] : strlen(ids[k]), shared = 0;
		while (shared < prev_len && shared < idl && shared < 255 &&
		       prev[shared] == ids[k][shared])
			shared++;
		size_t rest = idl - shared;
		cr_assert_leq(rest, 255);
		buf[len++] = (uint8_t)shared;
		buf[len++] = (uint8_t)rest;
		memcpy(buf + len, ids[k] + shared, rest);
		len += rest;
		prev = ids[k];
		prev_len = idl;
	}
	return len;
}

static char *format_x(const Whizbang__V1__Explosion *x, size_t max_ids)
{
	size_t n = optext_format_explosion(x, max_ids, NULL, 0);
	char *buf = malloc(n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(optext_format_explosion(x, max_ids, buf, n + 1), n);
	cr_assert_eq(strlen(buf), n);
	return buf;
}

static void expect_x(const Whizbang__V1__Explosion *x, size_t max_ids, const char *want)
{
	char *got = format_x(x, max_ids);
	cr_expect_str_eq(got, want, "got %s", got);
	free(got);
}

Test(optext, explosions_format_for_people)
{
	static const char *const ids[] = {"o-1", "o-2", "o-7"};
	uint8_t buf[64];
	Whizbang__V1__Explosion x = WHIZBANG__V1__EXPLOSION__INIT;
	x.ids.data = buf;
	x.ids.len = encode_ids(ids, NULL, 3, buf);
	cr_assert_eq(x.ids.len, 2 + 3 + 2 + 1 + 2 + 1, "o-2 and o-7 share \"o-\" with o-1");
	x.count = 3;
	x.strategy = WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX;
	x.plan = "index Order.customer_id == \"c-42\"";
	x.examined = 3;
	x.micros = 41;
	expect_x(&x, 10,
	         "matched 3 [o-1, o-2, o-7] via index Order.customer_id == \"c-42\" (examined 3, "
	         "41 µs)");
	expect_x(&x, SIZE_MAX,
	         "matched 3 [o-1, o-2, o-7] via index Order.customer_id == \"c-42\" (examined 3, "
	         "41 µs)");
	expect_x(&x, 3,
	         "matched 3 [o-1, o-2, o-7] via index Order.customer_id == \"c-42\" (examined 3, "
	         "41 µs)");
	expect_x(&x, 2,
	         "matched 3 [o-1, o-2, … 1 more] via index Order.customer_id == \"c-42\" "
	         "(examined 3, 41 µs)");
	expect_x(&x, 0, "matched 3 via index Order.customer_id == \"c-42\" (examined 3, 41 µs)");

	/* Without a plan text, the strategy's name. */
	x.plan = "";
	x.strategy = WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX_UNION;
	expect_x(&x, 1, "matched 3 [o-1, … 2 more] via index union (examined 3, 41 µs)");

	Whizbang__V1__Explosion none = WHIZBANG__V1__EXPLOSION__INIT;
	none.examined = 1000;
	none.micros = 812;
	expect_x(&none, 5, "no-op (matched 0, scan, examined 1000, 812 µs)");
	none.created = 1;
	none.strategy = WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX;
	none.plan = "index Order.id == \"o-9\"";
	none.examined = 0;
	none.micros = 6;
	expect_x(&none, 5, "created (matched 0, index Order.id == \"o-9\", examined 0, 6 µs)");
	/* Entries stored since log-first durability carry no time. */
	none.micros = 0;
	expect_x(&none, 5, "created (matched 0, index Order.id == \"o-9\", examined 0)");

	cr_assert_eq(optext_format_explosion(NULL, 5, NULL, 0), 0);
	char small[8];
	cr_assert_eq(optext_format_explosion(NULL, 5, small, sizeof(small)), 0);
	cr_assert_str_eq(small, "");
}

Test(optext, explosion_ids_that_could_be_misread_are_quoted)
{
	/* In byte order. The last is not UTF-8. */
	static const char *const ids[] = {"",     "[x]", "a b",      "q\"",
	                                  "t\tb", "x,y", "\xC3\xA9", "\xFF"};
	uint8_t buf[128];
	Whizbang__V1__Explosion x = WHIZBANG__V1__EXPLOSION__INIT;
	x.ids.data = buf;
	x.ids.len = encode_ids(ids, NULL, 8, buf);
	x.count = 8;
	x.examined = 8;
	x.micros = 1;
	expect_x(&x, SIZE_MAX,
	         "matched 8 [\"\", \"[x]\", \"a b\", \"q\\\"\", \"t\\tb\", \"x,y\", \xC3\xA9, "
	         "\"\\xff\"] via scan (examined 8, 1 µs)");

	/* A NUL inside an id, and C1 controls. */
	static const char nul[] = {'a', '\0', 'b'};
	static const char *const ids2[] = {nul, "b\xC2\x85"};
	static const size_t lens2[] = {3, 3};
	x.ids.len = encode_ids(ids2, lens2, 2, buf);
	x.count = 2;
	expect_x(&x, SIZE_MAX,
	         "matched 2 [\"a\\u0000b\", \"b\\u0085\"] via scan (examined 8, 1 µs)");
}

Test(optext, explosion_id_walk_decodes_every_id)
{
	/* A 510-byte id: the longest the coding carries. */
	static char long_a[256], long_b[511];
	memset(long_a, 'k', 255);
	memset(long_b, 'k', 510);
	long_b[509] = 'z';
	static const char nul[] = {'a', '\0', 'b'};
	const char *ids[] = {"", nul, "abc", "abd", long_a, long_b};
	size_t lens[] = {0, 3, 3, 3, 255, 510};
	uint8_t buf[2048];
	Whizbang__V1__Explosion x = WHIZBANG__V1__EXPLOSION__INIT;
	x.ids.data = buf;
	x.ids.len = encode_ids(ids, lens, 6, buf);
	x.count = 6;
	struct optext_ids it;
	optext_ids_init(&it, &x);
	for (size_t k = 0; k < 6; k++) {
		cr_assert_eq(optext_ids_next(&it), 1, "id %zu", k);
		cr_assert_eq(it.id_len, lens[k], "id %zu", k);
		cr_assert_eq(memcmp(it.id, ids[k], lens[k]), 0, "id %zu", k);
		cr_assert_eq(it.id[it.id_len], '\0');
	}
	cr_assert_eq(optext_ids_next(&it), 0);
	cr_assert_eq(optext_ids_next(&it), 0, "the end stays the end");

	/* An empty list, and no Explosion at all. */
	Whizbang__V1__Explosion empty = WHIZBANG__V1__EXPLOSION__INIT;
	optext_ids_init(&it, &empty);
	cr_assert_eq(optext_ids_next(&it), 0);
	optext_ids_init(&it, NULL);
	cr_assert_eq(optext_ids_next(&it), 0);
}

Test(optext, malformed_explosion_id_lists_show_as_corrupt)
{
	static const struct {
		uint8_t bytes[16];
		size_t len;
		uint64_t count;
		const char *why;
	} bad[] = {
	        {{0}, 1, 1, "a lone byte"},
	        {{0, 3, 'a', 'b'}, 4, 1, "a rest past the end"},
	        {{1, 1, 'a'}, 3, 1, "a first id that shares a prefix"},
	        {{0, 1, 'a', 2, 1, 'b'}, 6, 2, "a prefix longer than the previous id"},
	        {{0, 1, 'a', 1, 0}, 5, 2, "the same id twice"},
	        {{0, 1, 'b', 0, 1, 'a'}, 6, 2, "descending ids"},
	        {{0, 2, 'a', 'b', 1, 0}, 6, 2, "an id that is a prefix of the one before"},
	        {{0, 1, 'a'}, 3, 2, "fewer ids than count"},
	        {{0, 1, 'a', 0, 1, 'b'}, 6, 1, "more ids than count"},
	        {{0}, 0, 4, "a count without ids"},
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		Whizbang__V1__Explosion x = WHIZBANG__V1__EXPLOSION__INIT;
		x.ids.data = (uint8_t *)bad[k].bytes;
		x.ids.len = bad[k].len;
		x.count = bad[k].count;
		x.examined = 2;
		x.micros = 3;
		char want[128];
		snprintf(want, sizeof(want),
		         "matched %llu <corrupt id list> via scan (examined 2, 3 µs)",
		         (unsigned long long)bad[k].count);
		for (size_t max = 0; max < 3; max++) {
			char *got = format_x(&x, max);
			cr_expect_str_eq(got, want, "%s (max_ids %zu): got %s", bad[k].why, max,
			                 got);
			free(got);
		}
		struct optext_ids it;
		optext_ids_init(&it, &x);
		int rc;
		size_t steps = 0;
		while ((rc = optext_ids_next(&it)) > 0)
			cr_assert_lt(++steps, 10);
		cr_expect_eq(rc, -1, "%s", bad[k].why);
		cr_expect_eq(optext_ids_next(&it), -1, "%s: malformed stays malformed", bad[k].why);
	}

	/* Ids on a no-op. */
	static uint8_t one[] = {0, 1, 'a'};
	Whizbang__V1__Explosion x = WHIZBANG__V1__EXPLOSION__INIT;
	x.ids.data = one;
	x.ids.len = sizeof(one);
	expect_x(&x, 5, "no-op <corrupt id list> (matched 0, scan, examined 0)");

	/* Every strict prefix of a good list is malformed (count says 3). */
	static const char *const ids[] = {"o-1", "o-2", "o-7"};
	uint8_t buf[64];
	size_t n = encode_ids(ids, NULL, 3, buf);
	for (size_t len = 0; len < n; len++) {
		x.ids.data = buf;
		x.ids.len = len;
		x.count = 3;
		char *got = format_x(&x, 5);
		cr_expect(strstr(got, "<corrupt id list>") != NULL, "prefix %zu: %s", len, got);
		free(got);
	}
}

/* Any bytes at all decode or are called corrupt, without reading outside
 * the list (ASan and valgrind watch; each list is its own allocation). */
Test(optext, random_id_lists_never_read_out_of_bounds)
{
	uint64_t state = 0x9E3779B97F4A7C15u;
	for (int round = 0; round < 20000; round++) {
		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		size_t len = (size_t)(state % 24);
		uint8_t *bytes = malloc(len + 1);
		cr_assert_not_null(bytes);
		uint64_t r = state;
		for (size_t k = 0; k < len; k++) {
			r = r * 6364136223846793005u + 1442695040888963407u;
			uint8_t b = (uint8_t)(r >> 56);
			/* Small lengths make well-formed lists likely too. */
			bytes[k] = (r & 1) != 0 ? (uint8_t)(b % 4) : b;
		}
		Whizbang__V1__Explosion x = WHIZBANG__V1__EXPLOSION__INIT;
		x.ids.data = len > 0 ? bytes : NULL;
		x.ids.len = len;
		x.count = (state >> 40) % 5;
		char small[16];
		size_t full = optext_format_explosion(&x, (size_t)(state >> 50) % 4, small,
		                                      sizeof(small));
		char *got = format_x(&x, (size_t)(state >> 50) % 4);
		cr_assert_eq(strlen(got), full);
		free(got);
		free(bytes);
	}
}

Test(optext, explosion_text_that_does_not_fit_is_truncated_like_snprintf)
{
	Whizbang__V1__Explosion x = WHIZBANG__V1__EXPLOSION__INIT;
	x.examined = 1000;
	x.micros = 812;
	const char *full = "no-op (matched 0, scan, examined 1000, 812 µs)";
	size_t n = strlen(full);
	char buf[64];
	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(optext_format_explosion(&x, 3, buf, 12), n);
	cr_assert_str_eq(buf, "no-op (m...");
	cr_assert_eq(buf[12], 'Z', "wrote past len");
	cr_assert_eq(optext_format_explosion(&x, 3, buf, n + 1), n);
	cr_assert_str_eq(buf, full);
}
