/* Tests of where-clause semantics and operation checks (projection/eval.h).
 *
 * The semantics are a table of (record, clause, expected) rows; clauses are
 * written in the text form (optext.h, tested on its own) so that the table
 * reads like the header comment it checks. What the text form cannot say
 * (empty and/or, infinity) is built as protobuf. Seeded random clauses over
 * random records are then held to the laws of the header: `not` is the
 * complement, `!=` is "present and not ==", `in` is an `or` of `==`, `not
 * in` is "present and not in".
 *
 * The checks are tested with messages built by hand, one defect each, and
 * the exact code and message expected. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "fixture.h"
#include "optext.h"
#include "value_util.h"
#include "wb_error.h"

typedef Whizbang__V1__Value Value;
typedef Whizbang__V1__Field Field;
typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__ExprList ExprList;
typedef Whizbang__V1__Compare Compare;
typedef Whizbang__V1__InList InList;
typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__OpList OpList;

/* ------------------------------------------------ records */

struct rec {
	struct proj_buf buf;
	struct proj_record r;
};

static void rec_make(struct rec *r, struct proj_field *f, size_t n)
{
	memset(r, 0, sizeof *r);
	cr_assert_eq(proj_record_encode(1, 1, 1, f, n, &r->buf), 0);
	cr_assert_eq(proj_record_decode(r->buf.p, r->buf.len, &r->r), 0);
}

static struct rec full, empty;

static void records_init(void)
{
	struct proj_field f[] = {
	        fld("n", v_int(100)),
	        fld("d", v_dbl(2.5)),
	        fld("neg", v_int(-7)),
	        fld("big", v_int(9007199254740993)), /* 2^53 + 1 */
	        fld("max", v_int(INT64_MAX)),
	        fld("s", v_str("abc")),
	        fld("e", v_str("")),
	        fld("t", (struct proj_value){.type = PROJ_BOOL, .u.b = true}),
	        fld("z", (struct proj_value){.type = PROJ_NULL}),
	        fld("x", v_text(PROJ_BYTES, "\x00\x01", 2)),
	        fld("inf", v_dbl(INFINITY)),
	};
	rec_make(&full, f, sizeof f / sizeof f[0]);
	rec_make(&empty, NULL, 0);
}

static void records_fini(void)
{
	proj_buf_free(&full.buf);
	proj_buf_free(&empty.buf);
}

TestSuite(eval, .init = records_init, .fini = records_fini);

static Expr *parse(const char *text)
{
	Expr *e = NULL;
	struct optext_error err = {0};
	int rc = optext_parse_where(text, &e, &err);
	cr_assert_eq(rc, 0, "parse %s: %s", text, err.message);
	char msg[256] = "";
	cr_assert_eq(proj_check_expr(e, msg, sizeof msg), 0, "check %s: %s", text, msg);
	return e;
}

/* ------------------------------------------------ semantics */

struct row {
	const char *clause;
	bool full, empty; /* expected on each record */
};

static const struct row rows[] = {
        /* numbers compare numerically across int and double */
        {"n == 100", true, false},
        {"n == 100.0", true, false},
        {"n != 100.0", false, false},
        {"n < 100.5", true, false},
        {"n > 99.99", true, false},
        {"n >= 100.0", true, false},
        {"n <= 99.999", false, false},
        {"d == 2.5", true, false},
        {"d == 2", false, false},
        {"d > 2", true, false},
        {"d < 3", true, false},
        {"neg < 0", true, false},
        {"neg >= -7.0", true, false},
        {"neg < -6.5", true, false},
        /* exactly: 2^53 + 1 is above the double 2^53 */
        {"big == 9007199254740992.0", false, false},
        {"big > 9007199254740992.0", true, false},
        {"big != 9007199254740992.0", true, false},
        {"big == 9007199254740993", true, false},
        {"big < 9007199254740994.0", true, false},
        {"max < 9223372036854775808.0", true, false},
        {"max == 9223372036854775807.0", false, false}, /* that double is 2^63 */
        {"max >= 9.2e18", true, false},
        {"inf > 9223372036854775807", true, false},
        {"inf == 1e308", false, false},
        /* other cross-type pairs are unequal and unordered */
        {"n == \"100\"", false, false},
        {"n != \"100\"", true, false},
        {"n < \"a\"", false, false},
        {"n >= \"a\"", false, false},
        {"s == 1", false, false},
        {"s > 1", false, false},
        {"t == 1", false, false},
        {"t == true", true, false},
        {"t > false", true, false},
        {"t < true", false, false},
        {"t >= 0", false, false},
        {"s == x\"616263\"", false, false},
        {"x == x\"0001\"", true, false},
        {"x > x\"00\"", true, false},
        {"x < x\"0001\"", false, false},
        {"s < \"abd\"", true, false},
        {"s > \"ab\"", true, false},
        {"s <= \"abc\"", true, false},
        {"e < \"a\"", true, false},
        {"e == \"\"", true, false},
        /* a missing field: every comparison is false */
        {"nope == 1", false, false},
        {"nope != 1", false, false},
        {"nope < 1", false, false},
        {"nope <= 1", false, false},
        {"nope > 1", false, false},
        {"nope >= 1", false, false},
        {"nope == null", false, false},
        {"nope != null", false, false},
        {"nope in (1, 2)", false, false},
        {"nope not in (1, 2)", false, false},
        {"exists(nope)", false, false},
        {"starts_with(nope, \"\")", false, false},
        {"n != 1", true, false},
        {"n < 1000", true, false},
        /* ... and not is the exact complement */
        {"not nope == 1", true, true},
        {"not nope != 1", true, true},
        {"not nope < 1", true, true},
        {"not (nope in (1))", true, true},
        {"not (nope not in (1))", true, true},
        {"not exists(nope)", true, true},
        {"not n == 100", false, true},
        {"not n != 100", true, true},
        /* null */
        {"z == null", true, false},
        {"z != null", false, false},
        {"z != 1", true, false},
        {"z == 0", false, false},
        {"z < 1", false, false},
        {"z <= null", false, false},
        {"z >= null", false, false},
        {"z > null", false, false},
        {"n == null", false, false},
        {"n != null", true, false},
        {"exists(z)", true, false},
        {"z in (null)", true, false},
        {"z in (1, \"a\", false)", false, false},
        {"z not in (1)", true, false},
        {"z not in (null, 1)", false, false},
        /* in and not in */
        {"n in (1, 100.0)", true, false},
        {"n in (\"100\", true, null)", false, false},
        {"n not in (\"100\")", true, false},
        {"n not in (100)", false, false},
        {"n not in (1, 2.5)", true, false},
        {"s in (\"abc\")", true, false},
        {"s in (\"ab\", \"abcd\")", false, false},
        {"d in (2.5)", true, false},
        {"big in (9007199254740992.0)", false, false},
        {"x in (x\"0001\", \"a\")", true, false},
        /* exists and starts_with */
        {"exists(n)", true, false},
        {"exists(e)", true, false},
        {"starts_with(s, \"ab\")", true, false},
        {"starts_with(s, \"abc\")", true, false},
        {"starts_with(s, \"\")", true, false},
        {"starts_with(s, \"abcd\")", false, false},
        {"starts_with(s, \"b\")", false, false},
        {"starts_with(e, \"\")", true, false},
        {"starts_with(n, \"1\")", false, false},
        {"starts_with(x, \"\")", false, false},
        {"starts_with(z, \"\")", false, false},
        {"starts_with(t, \"\")", false, false},
        /* and, or, not */
        {"n == 100 and s == \"abc\"", true, false},
        {"n == 100 and s == \"x\"", false, false},
        {"n == 1 or s == \"abc\"", true, false},
        {"n == 1 or nope == 2", false, false},
        {"nope == 1 or not nope == 1", true, true},
        {"not not n == 100", true, false},
        {"not not nope == 1", false, false},
        {"not (n == 100 and not s == \"abc\")", true, true},
        {"not (nope == 1 or n == 1)", true, true},
        {"not (exists(n) and (z == null or nope == 1))", false, true},
        {"(n == 100 or d == 0) and not (s == \"x\" or t == false)", true, false},
};

Test(eval, the_semantics_table)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		Expr *e = parse(rows[i].clause);
		cr_assert_eq(proj_eval(e, &full.r), rows[i].full, "%s on the full record",
		             rows[i].clause);
		cr_assert_eq(proj_eval(e, &empty.r), rows[i].empty, "%s on the empty record",
		             rows[i].clause);
		optext_free_expr(e);
	}
}

Test(eval, empty_and_is_true_and_empty_or_is_false)
{
	ExprList none = WHIZBANG__V1__EXPR_LIST__INIT;
	Expr all = WHIZBANG__V1__EXPR__INIT, any = WHIZBANG__V1__EXPR__INIT;
	all.node_case = WHIZBANG__V1__EXPR__NODE_ALL_OF;
	all.all_of = &none;
	any.node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
	any.any_of = &none;
	cr_assert_eq(proj_check_expr(&all, NULL, 0), 0);
	cr_assert_eq(proj_check_expr(&any, NULL, 0), 0);
	cr_assert(proj_eval(&all, &full.r));
	cr_assert(proj_eval(&all, &empty.r));
	cr_assert(!proj_eval(&any, &full.r));
	cr_assert(!proj_eval(&any, &empty.r));
	Expr not_any = WHIZBANG__V1__EXPR__INIT;
	not_any.node_case = WHIZBANG__V1__EXPR__NODE_NEGATE;
	not_any.negate = &any;
	cr_assert(proj_eval(&not_any, &empty.r));
}

Test(eval, infinity_is_a_value)
{
	Value inf = WHIZBANG__V1__VALUE__INIT;
	inf.kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
	inf.double_value = INFINITY;
	Compare c = WHIZBANG__V1__COMPARE__INIT;
	c.value = &inf;
	Expr e = WHIZBANG__V1__EXPR__INIT;
	e.node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
	e.compare = &c;
	struct {
		const char *field;
		Whizbang__V1__CompareOp op;
		double value;
		bool want;
	} cases[] = {
	        {"inf", WHIZBANG__V1__COMPARE_OP__EQ, INFINITY, true},
	        {"inf", WHIZBANG__V1__COMPARE_OP__GE, INFINITY, true},
	        {"max", WHIZBANG__V1__COMPARE_OP__LT, INFINITY, true},
	        {"neg", WHIZBANG__V1__COMPARE_OP__GT, -INFINITY, true},
	        {"d", WHIZBANG__V1__COMPARE_OP__LT, -INFINITY, false},
	        {"inf", WHIZBANG__V1__COMPARE_OP__GT, -INFINITY, true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		c.field = (char *)cases[i].field;
		c.op = cases[i].op;
		inf.double_value = cases[i].value;
		cr_assert_eq(proj_check_expr(&e, NULL, 0), 0);
		cr_assert_eq(proj_eval(&e, &full.r), cases[i].want, "case %zu", i);
	}
}

/* ------------------------------------------------ laws over random clauses */

static uint64_t rng_state = 1;

static size_t rnd(size_t n)
{
	return (size_t)(fixture_xorshift(&rng_state) % n);
}

static const char *const names[] = {"a", "b", "c", "missing"};

/* A small pool, so that equal values across types come up often. */
static void random_pb_value(Value *v)
{
	Value init = WHIZBANG__V1__VALUE__INIT;
	*v = init;
	static const char *const strs[] = {"", "a", "ab", "b"};
	static uint8_t bytes[] = {'a', 'b'};
	switch (rnd(7)) {
	case 0:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_NULL_VALUE;
		v->null_value = 1;
		break;
	case 1:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_BOOL_VALUE;
		v->bool_value = rnd(2) == 1;
		break;
	case 2:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
		v->int_value = (int64_t)rnd(3) - 1;
		break;
	case 3:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
		v->double_value = ((double)rnd(5) - 2) / 2; /* -1, -0.5, 0, 0.5, 1 */
		break;
	case 4:
	case 5:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
		v->string_value = (char *)strs[rnd(4)];
		break;
	default:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_BYTES_VALUE;
		v->bytes_value.data = bytes;
		v->bytes_value.len = rnd(3);
		break;
	}
}

static void random_record(struct rec *r)
{
	struct proj_field f[3];
	Value pv[3];
	size_t n = 0;
	for (size_t i = 0; i < 3; i++) {
		if (rnd(4) == 0)
			continue;
		random_pb_value(&pv[n]);
		f[n].name = names[i];
		f[n].name_len = 1;
		cr_assert_eq(proj_value_from_pb(&pv[n], &f[n].v), 0);
		n++;
	}
	rec_make(r, f, n);
}

static Expr leaf(Compare *c, Value *v, Whizbang__V1__CompareOp op)
{
	Expr e = WHIZBANG__V1__EXPR__INIT;
	e.node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
	e.compare = c;
	Compare init = WHIZBANG__V1__COMPARE__INIT;
	*c = init;
	c->field = (char *)names[rnd(4)];
	c->op = op;
	c->value = v;
	return e;
}

static Expr wrap(Whizbang__V1__Expr__NodeCase kind, ExprList *l, Expr *inner)
{
	Expr e = WHIZBANG__V1__EXPR__INIT;
	e.node_case = kind;
	if (kind == WHIZBANG__V1__EXPR__NODE_NEGATE)
		e.negate = inner;
	else if (kind == WHIZBANG__V1__EXPR__NODE_ALL_OF)
		e.all_of = l;
	else
		e.any_of = l;
	return e;
}

Test(eval, random_clauses_obey_the_laws)
{
	rng_state = 4242;
	size_t seen_true = 0, seen_false = 0;
	for (int round = 0; round < 20000; round++) {
		struct rec r;
		random_record(&r);
		Value v[4];
		for (int k = 0; k < 4; k++)
			random_pb_value(&v[k]);
		Whizbang__V1__CompareOp op = (Whizbang__V1__CompareOp)rnd(6);
		Compare c, c_eq;
		Expr e = leaf(&c, &v[0], op);
		Expr eq = leaf(&c_eq, &v[0], WHIZBANG__V1__COMPARE_OP__EQ);
		c_eq.field = c.field;
		Whizbang__V1__Exists ex = WHIZBANG__V1__EXISTS__INIT;
		ex.field = c.field;
		Expr exists = WHIZBANG__V1__EXPR__INIT;
		exists.node_case = WHIZBANG__V1__EXPR__NODE_EXISTS;
		exists.exists = &ex;
		cr_assert_eq(proj_check_expr(&e, NULL, 0), 0);

		bool got = proj_eval(&e, &r.r);
		if (got)
			seen_true++;
		else
			seen_false++;
		/* not is the complement */
		Expr not_e = wrap(WHIZBANG__V1__EXPR__NODE_NEGATE, NULL, &e);
		cr_assert_eq(proj_eval(&not_e, &r.r), !got);
		/* != is present and not == */
		bool present = proj_eval(&exists, &r.r);
		bool is_eq = proj_eval(&eq, &r.r);
		if (op == WHIZBANG__V1__COMPARE_OP__NE)
			cr_assert_eq(got, present && !is_eq, "round %d", round);
		/* an ordering that holds both ways is equality */
		if (op == WHIZBANG__V1__COMPARE_OP__LE && got) {
			Compare c_ge = c;
			c_ge.op = WHIZBANG__V1__COMPARE_OP__GE;
			Expr ge = e;
			ge.compare = &c_ge;
			if (proj_eval(&ge, &r.r))
				cr_assert(is_eq, "round %d", round);
		}
		/* < and > exclude == */
		if ((op == WHIZBANG__V1__COMPARE_OP__LT || op == WHIZBANG__V1__COMPARE_OP__GT) &&
		    got)
			cr_assert(!is_eq);

		/* in is an or of ==, not in is present and not in */
		Value *vals[3] = {&v[1], &v[2], &v[3]};
		InList in = WHIZBANG__V1__IN_LIST__INIT;
		in.field = c.field;
		in.n_values = 1 + rnd(3);
		in.values = vals;
		Expr in_e = WHIZBANG__V1__EXPR__INIT;
		in_e.node_case = WHIZBANG__V1__EXPR__NODE_IN_LIST;
		in_e.in_list = &in;
		Compare cs[3];
		Expr eqs[3];
		Expr *terms[3];
		for (size_t k = 0; k < in.n_values; k++) {
			eqs[k] = leaf(&cs[k], vals[k], WHIZBANG__V1__COMPARE_OP__EQ);
			cs[k].field = c.field;
			terms[k] = &eqs[k];
		}
		ExprList l = WHIZBANG__V1__EXPR_LIST__INIT;
		l.n_terms = in.n_values;
		l.terms = terms;
		Expr any = wrap(WHIZBANG__V1__EXPR__NODE_ANY_OF, &l, NULL);
		bool in_got = proj_eval(&in_e, &r.r);
		cr_assert_eq(in_got, proj_eval(&any, &r.r), "round %d", round);
		in.negated = 1;
		cr_assert_eq(proj_eval(&in_e, &r.r), present && !in_got, "round %d", round);

		/* De Morgan over and/or of the leaves */
		Expr not_terms[3];
		Expr *nt[3];
		for (size_t k = 0; k < in.n_values; k++) {
			not_terms[k] = wrap(WHIZBANG__V1__EXPR__NODE_NEGATE, NULL, terms[k]);
			nt[k] = &not_terms[k];
		}
		ExprList nl = WHIZBANG__V1__EXPR_LIST__INIT;
		nl.n_terms = in.n_values;
		nl.terms = nt;
		Expr all_not = wrap(WHIZBANG__V1__EXPR__NODE_ALL_OF, &nl, NULL);
		Expr not_any = wrap(WHIZBANG__V1__EXPR__NODE_NEGATE, NULL, &any);
		cr_assert_eq(proj_eval(&all_not, &r.r), proj_eval(&not_any, &r.r));
		proj_buf_free(&r.buf);
	}
	cr_assert_gt(seen_true, 2000);
	cr_assert_gt(seen_false, 2000);
}

/* ------------------------------------------------ proj_check_expr */

static void expect_expr(const Expr *e, const char *want)
{
	char msg[256] = "";
	int rc = proj_check_expr(e, msg, sizeof msg);
	if (want == NULL) {
		cr_assert_eq(rc, 0, "refused: %s", msg);
		return;
	}
	cr_assert_eq(rc, WB_INVALID_EXPRESSION, "rc %d for %s", rc, want);
	cr_assert_str_eq(msg, want);
}

Test(eval, parsed_clauses_pass_the_check)
{
	const char *ok[] = {
	        "a == 1",
	        "a in (1, 2.5, \"x\", x\"00\", true, null) and not b not in (1)",
	        "exists(a) or starts_with(b, \"\") or (c >= -1e300 and c < 1)",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		optext_free_expr(parse(ok[i]));
}

Test(eval, each_defect_in_a_clause_is_named)
{
	Value one = WHIZBANG__V1__VALUE__INIT, nan = WHIZBANG__V1__VALUE__INIT,
	      unset = WHIZBANG__V1__VALUE__INIT;
	one.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	one.int_value = 1;
	nan.kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
	nan.double_value = NAN;
	static char name255[256], name256[257];
	memset(name255, 'f', 255);
	memset(name256, 'f', 256);

	Expr none = WHIZBANG__V1__EXPR__INIT;
	expect_expr(&none, "expression: no node set");
	expect_expr(NULL, "expression: no node set");

	Compare c = WHIZBANG__V1__COMPARE__INIT;
	Expr ce = WHIZBANG__V1__EXPR__INIT;
	ce.node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
	ce.compare = &c;
	c.field = "a";
	expect_expr(&ce, "compare: no value");
	c.value = &unset;
	expect_expr(&ce, "compare: value has no kind set");
	c.value = &nan;
	expect_expr(&ce, "compare: value is NaN");
	c.value = &one;
	expect_expr(&ce, NULL);
	c.op = (Whizbang__V1__CompareOp)6;
	expect_expr(&ce, "compare: op 6 is not a comparison");
	c.op = (Whizbang__V1__CompareOp)-1;
	expect_expr(&ce, "compare: op -1 is not a comparison");
	c.op = WHIZBANG__V1__COMPARE_OP__GE;
	c.field = "";
	expect_expr(&ce, "compare: field must be 1..255 bytes");
	c.field = name256;
	expect_expr(&ce, "compare: field must be 1..255 bytes");
	c.field = name255;
	expect_expr(&ce, NULL);
	ce.compare = NULL;
	expect_expr(&ce, "compare: missing");
	ce.compare = &c;

	InList in = WHIZBANG__V1__IN_LIST__INIT;
	Expr ie = WHIZBANG__V1__EXPR__INIT;
	ie.node_case = WHIZBANG__V1__EXPR__NODE_IN_LIST;
	ie.in_list = &in;
	in.field = "a";
	expect_expr(&ie, "in_list: no values");
	static Value *many[PROJ_EXPR_MAX_TERMS + 1];
	for (size_t i = 0; i <= PROJ_EXPR_MAX_TERMS; i++)
		many[i] = &one;
	in.values = many;
	in.n_values = PROJ_EXPR_MAX_TERMS;
	expect_expr(&ie, NULL);
	in.n_values = PROJ_EXPR_MAX_TERMS + 1;
	expect_expr(&ie, "in_list: more than 1024 values");
	in.n_values = 3;
	many[1] = &nan;
	expect_expr(&ie, "in_list: value 2: value is NaN");
	many[1] = NULL;
	expect_expr(&ie, "in_list: value 2: no value");
	many[1] = &one;
	in.field = "";
	expect_expr(&ie, "in_list: field must be 1..255 bytes");

	Whizbang__V1__Exists ex = WHIZBANG__V1__EXISTS__INIT;
	Expr ee = WHIZBANG__V1__EXPR__INIT;
	ee.node_case = WHIZBANG__V1__EXPR__NODE_EXISTS;
	ee.exists = &ex;
	expect_expr(&ee, "exists: field must be 1..255 bytes");
	ex.field = "a";
	expect_expr(&ee, NULL);

	Whizbang__V1__StartsWith sw = WHIZBANG__V1__STARTS_WITH__INIT;
	Expr se = WHIZBANG__V1__EXPR__INIT;
	se.node_case = WHIZBANG__V1__EXPR__NODE_STARTS_WITH;
	se.starts_with = &sw;
	expect_expr(&se, "starts_with: field must be 1..255 bytes");
	sw.field = "a";
	expect_expr(&se, NULL);
	sw.prefix = NULL;
	expect_expr(&se, "starts_with: no prefix");
	sw.prefix = "p";

	/* lists: missing, too long, a bad term deep inside */
	Expr le = WHIZBANG__V1__EXPR__INIT;
	le.node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
	expect_expr(&le, "any_of: missing");
	le.node_case = WHIZBANG__V1__EXPR__NODE_ALL_OF;
	expect_expr(&le, "all_of: missing");
	static Expr *terms[PROJ_EXPR_MAX_TERMS + 1];
	for (size_t i = 0; i <= PROJ_EXPR_MAX_TERMS; i++)
		terms[i] = &ee;
	ExprList l = WHIZBANG__V1__EXPR_LIST__INIT;
	l.terms = terms;
	l.n_terms = PROJ_EXPR_MAX_TERMS;
	le.all_of = &l;
	expect_expr(&le, NULL);
	l.n_terms = PROJ_EXPR_MAX_TERMS + 1;
	expect_expr(&le, "all_of: more than 1024 terms");
	l.n_terms = 3;
	terms[2] = NULL;
	expect_expr(&le, "all_of: term 3: no node set");
	Expr neg = WHIZBANG__V1__EXPR__INIT;
	neg.node_case = WHIZBANG__V1__EXPR__NODE_NEGATE;
	expect_expr(&neg, "negate: missing");
	neg.negate = &ce;
	terms[2] = &neg;
	c.value = &nan;
	expect_expr(&le, "compare: value is NaN");
	c.value = &one;
	expect_expr(&le, NULL);

	/* An unknown node case is no node. */
	Expr odd = WHIZBANG__V1__EXPR__INIT;
	odd.node_case = (Whizbang__V1__Expr__NodeCase)99;
	expect_expr(&odd, "expression: no node set");

	/* No room for a message: the code alone. */
	cr_assert_eq(proj_check_expr(&none, NULL, 0), WB_INVALID_EXPRESSION);
	char tiny[8];
	cr_assert_eq(proj_check_expr(&none, tiny, sizeof tiny), WB_INVALID_EXPRESSION);
	cr_assert_str_eq(tiny, "express");
}

/* A chain of `levels` nodes: nots or one-term ands alternating with nots,
 * ending in a comparison. */
static Expr *chain(size_t levels, bool mixed, Expr *nodes, ExprList *lists, Expr **slots,
                   Compare *c)
{
	Expr *leaf_e = &nodes[levels - 1];
	Expr init = WHIZBANG__V1__EXPR__INIT;
	*leaf_e = init;
	leaf_e->node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
	leaf_e->compare = c;
	for (size_t i = levels - 1; i-- > 0;) {
		nodes[i] = init;
		if (mixed && i % 2 == 0) {
			ExprList li = WHIZBANG__V1__EXPR_LIST__INIT;
			lists[i] = li;
			slots[i] = &nodes[i + 1];
			lists[i].n_terms = 1;
			lists[i].terms = &slots[i];
			nodes[i].node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
			nodes[i].any_of = &lists[i];
		} else {
			nodes[i].node_case = WHIZBANG__V1__EXPR__NODE_NEGATE;
			nodes[i].negate = &nodes[i + 1];
		}
	}
	return &nodes[0];
}

Test(eval, clauses_nest_at_most_max_depth_levels)
{
	static Expr nodes[PROJ_EXPR_MAX_DEPTH + 10];
	static ExprList lists[PROJ_EXPR_MAX_DEPTH + 10];
	static Expr *slots[PROJ_EXPR_MAX_DEPTH + 10];
	Value one = WHIZBANG__V1__VALUE__INIT;
	one.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	one.int_value = 100;
	Compare c = WHIZBANG__V1__COMPARE__INIT;
	c.field = "n";
	c.value = &one;
	for (int mixed = 0; mixed < 2; mixed++) {
		Expr *e = chain(PROJ_EXPR_MAX_DEPTH, mixed, nodes, lists, slots, &c);
		expect_expr(e, NULL);
		/* over n == 100: 63 nots, or 31 nots between one-term ors */
		cr_assert(!proj_eval(e, &full.r));
		e = chain(PROJ_EXPR_MAX_DEPTH + 1, mixed, nodes, lists, slots, &c);
		expect_expr(e, "expression: nested deeper than 64 levels");
		e = chain(PROJ_EXPR_MAX_DEPTH + 9, mixed, nodes, lists, slots, &c);
		expect_expr(e, "expression: nested deeper than 64 levels");
	}
}

/* ------------------------------------------------ proj_check_op */

static void expect_op(const Op *op, int code, const char *want)
{
	char msg[256] = "";
	int rc = proj_check_op(op, msg, sizeof msg);
	cr_assert_eq(rc, code, "rc %d (%s), want %d (%s)", rc, msg, code, want ? want : "");
	if (want != NULL)
		cr_assert_str_eq(msg, want);
}

Test(eval, parsed_operations_pass_the_check)
{
	const char *text = "upsert Order \"o-1\" {customer_id: \"c-42\", status: \"Pending\", "
	                   "total: 120, paid: false, note: null, blob: x\"00\"};"
	                   "upsert Order \"o-1\" merge {status: \"Paid\"};"
	                   "update Order where customer_id == \"c-42\" set status = "
	                   "\"Cancelled\", inc revision by 1, inc score by 0.5;"
	                   "update Order where id == \"o-9\" set status = \"New\" create \"o-9\" "
	                   "{status: \"New\"};"
	                   "update Order where total < 0 unset discount;"
	                   "delete Order \"o-1\";"
	                   "delete Order where status == \"Cancelled\"";
	OpList *ops = NULL;
	struct optext_error err = {0};
	cr_assert_eq(optext_parse_ops(text, &ops, &err), 0, "%s", err.message);
	cr_assert_eq(ops->n_ops, 7);
	for (size_t i = 0; i < ops->n_ops; i++)
		expect_op(ops->ops[i], 0, NULL);
	optext_free_ops(ops);
}

Test(eval, each_defect_in_an_operation_is_named)
{
	Value one = WHIZBANG__V1__VALUE__INIT, nan = WHIZBANG__V1__VALUE__INIT,
	      str = WHIZBANG__V1__VALUE__INIT, unset = WHIZBANG__V1__VALUE__INIT;
	one.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	one.int_value = 1;
	nan.kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
	nan.double_value = NAN;
	str.kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
	str.string_value = "x";
	static char name256[257];
	memset(name256, 'i', 256);

	Op op = WHIZBANG__V1__OP__INIT;
	expect_op(&op, WB_BAD_REQUEST, "op: no kind set");
	expect_op(NULL, WB_BAD_REQUEST, "op: missing");

	/* upsert */
	Whizbang__V1__Upsert up = WHIZBANG__V1__UPSERT__INIT;
	op.kind_case = WHIZBANG__V1__OP__KIND_UPSERT;
	op.upsert = &up;
	expect_op(&op, WB_BAD_REQUEST, "upsert: type must be 1..255 bytes");
	up.type = "Order";
	expect_op(&op, WB_BAD_REQUEST, "upsert: id must be 1..255 bytes");
	up.id = name256;
	expect_op(&op, WB_BAD_REQUEST, "upsert: id must be 1..255 bytes");
	up.id = "o-1";
	expect_op(&op, 0, NULL);
	Field fa = WHIZBANG__V1__FIELD__INIT, fb = WHIZBANG__V1__FIELD__INIT,
	      fc = WHIZBANG__V1__FIELD__INIT;
	fa.name = "a";
	fa.value = &one;
	fb.name = "b";
	fb.value = &str;
	fc.name = "a";
	fc.value = &str;
	Field *fields[] = {&fa, &fb, &fc};
	up.fields = fields;
	up.n_fields = 2;
	expect_op(&op, 0, NULL);
	up.n_fields = 3;
	expect_op(&op, WB_BAD_REQUEST, "upsert: field \"a\" appears twice");
	fc.name = "";
	expect_op(&op, WB_BAD_REQUEST, "upsert: field 3: name must be 1..255 bytes");
	fc.name = "c";
	fb.value = &nan;
	expect_op(&op, WB_BAD_REQUEST, "upsert: field \"b\": value is NaN");
	fb.value = NULL;
	expect_op(&op, WB_BAD_REQUEST, "upsert: field \"b\": no value");
	fb.value = &unset;
	expect_op(&op, WB_BAD_REQUEST, "upsert: field \"b\": value has no kind set");
	fb.name = "b\"q";
	expect_op(&op, WB_BAD_REQUEST, "upsert: field 2: value has no kind set");
	fb.name = "b";
	fb.value = &str;
	fields[1] = NULL;
	expect_op(&op, WB_BAD_REQUEST, "upsert: field 2 is missing");
	fields[1] = &fb;
	expect_op(&op, 0, NULL);
	/* PROJ_MAX_FIELDS distinct fields, then one more */
	static Field many[PROJ_MAX_FIELDS + 1];
	static Field *many_p[PROJ_MAX_FIELDS + 1];
	static char many_names[PROJ_MAX_FIELDS + 1][8];
	for (size_t i = 0; i <= PROJ_MAX_FIELDS; i++) {
		Field init = WHIZBANG__V1__FIELD__INIT;
		many[i] = init;
		snprintf(many_names[i], sizeof many_names[i], "f%zu", i);
		many[i].name = many_names[i];
		many[i].value = &one;
		many_p[i] = &many[i];
	}
	up.fields = many_p;
	up.n_fields = PROJ_MAX_FIELDS;
	expect_op(&op, 0, NULL);
	up.n_fields = PROJ_MAX_FIELDS + 1;
	expect_op(&op, WB_BAD_REQUEST, "upsert: more than 1024 fields");
	many[1000].name = many_names[3];
	up.n_fields = PROJ_MAX_FIELDS;
	expect_op(&op, WB_BAD_REQUEST, "upsert: field \"f3\" appears twice");

	/* update */
	Whizbang__V1__Update u = WHIZBANG__V1__UPDATE__INIT;
	op.kind_case = WHIZBANG__V1__OP__KIND_UPDATE;
	op.update = &u;
	expect_op(&op, WB_BAD_REQUEST, "update: type must be 1..255 bytes");
	u.type = "Order";
	expect_op(&op, WB_BAD_REQUEST, "update: where is required");
	Whizbang__V1__Where w = WHIZBANG__V1__WHERE__INIT;
	u.where = &w;
	expect_op(&op, WB_INVALID_EXPRESSION, "update: where has no expression");
	InList in = WHIZBANG__V1__IN_LIST__INIT;
	in.field = "a";
	Expr ie = WHIZBANG__V1__EXPR__INIT;
	ie.node_case = WHIZBANG__V1__EXPR__NODE_IN_LIST;
	ie.in_list = &in;
	w.expr = &ie;
	expect_op(&op, WB_INVALID_EXPRESSION, "update: where: in_list: no values");
	Value *vals[] = {&one};
	in.values = vals;
	in.n_values = 1;
	expect_op(&op, WB_BAD_REQUEST, "update: at least one action");
	Whizbang__V1__Action a1 = WHIZBANG__V1__ACTION__INIT, a2 = WHIZBANG__V1__ACTION__INIT;
	Whizbang__V1__Action *actions[] = {&a1, &a2};
	u.actions = actions;
	u.n_actions = 2;
	Whizbang__V1__SetAction set = WHIZBANG__V1__SET_ACTION__INIT;
	Whizbang__V1__IncrementAction inc = WHIZBANG__V1__INCREMENT_ACTION__INIT;
	a1.kind_case = WHIZBANG__V1__ACTION__KIND_SET;
	a1.set = &set;
	a2.kind_case = WHIZBANG__V1__ACTION__KIND_INCREMENT;
	a2.increment = &inc;
	expect_op(&op, WB_BAD_REQUEST, "set: field must be 1..255 bytes");
	set.field = "status";
	expect_op(&op, WB_BAD_REQUEST, "set: field \"status\": no value");
	set.value = &nan;
	expect_op(&op, WB_BAD_REQUEST, "set: field \"status\": value is NaN");
	set.value = &str;
	expect_op(&op, WB_BAD_REQUEST, "increment: field must be 1..255 bytes");
	inc.field = "count";
	expect_op(&op, WB_BAD_REQUEST, "increment: by must be an int or double");
	inc.by = &str;
	expect_op(&op, WB_BAD_REQUEST, "increment: by must be an int or double");
	inc.by = &nan;
	expect_op(&op, WB_BAD_REQUEST, "increment: by is NaN");
	inc.by = &one;
	expect_op(&op, 0, NULL);
	a2.kind_case = WHIZBANG__V1__ACTION__KIND_UNSET;
	a2.unset = "";
	expect_op(&op, WB_BAD_REQUEST, "unset: field must be 1..255 bytes");
	a2.unset = "discount";
	expect_op(&op, 0, NULL);
	a2.kind_case = WHIZBANG__V1__ACTION__KIND__NOT_SET;
	expect_op(&op, WB_BAD_REQUEST, "update: action 2: no kind set");
	a2.kind_case = WHIZBANG__V1__ACTION__KIND_UNSET;
	Whizbang__V1__CreateIfNone cin = WHIZBANG__V1__CREATE_IF_NONE__INIT;
	u.create_if_none = &cin;
	expect_op(&op, WB_BAD_REQUEST, "create_if_none: id must be 1..255 bytes");
	cin.id = "o-9";
	expect_op(&op, 0, NULL);
	fields[2] = &fa;
	cin.fields = fields;
	cin.n_fields = 3;
	expect_op(&op, WB_BAD_REQUEST, "create_if_none: field \"a\" appears twice");
	cin.n_fields = 2;
	expect_op(&op, 0, NULL);
	Whizbang__V1__Explosion boom = WHIZBANG__V1__EXPLOSION__INIT;
	u.exploded = &boom;
	expect_op(&op, WB_BAD_REQUEST, "update: explosion is set by the server");
	u.exploded = NULL;

	/* delete */
	Whizbang__V1__Delete d = WHIZBANG__V1__DELETE__INIT;
	op.kind_case = WHIZBANG__V1__OP__KIND_DELETE;
	op.delete_ = &d;
	expect_op(&op, WB_BAD_REQUEST, "delete: type must be 1..255 bytes");
	d.type = "Order";
	expect_op(&op, WB_BAD_REQUEST, "delete: an id or a where is required");
	d.target_case = WHIZBANG__V1__DELETE__TARGET_ID;
	d.id = "";
	expect_op(&op, WB_BAD_REQUEST, "delete: id must be 1..255 bytes");
	d.id = "o-1";
	expect_op(&op, 0, NULL);
	d.exploded = &boom;
	expect_op(&op, WB_BAD_REQUEST, "delete: explosion is set by the server");
	d.exploded = NULL;
	d.target_case = WHIZBANG__V1__DELETE__TARGET_WHERE;
	d.where = NULL;
	expect_op(&op, WB_INVALID_EXPRESSION, "delete: where has no expression");
	d.where = &w;
	expect_op(&op, 0, NULL);
	/* a clause nested too deep, inside an op */
	static Expr nodes[PROJ_EXPR_MAX_DEPTH + 1];
	static ExprList lists[PROJ_EXPR_MAX_DEPTH + 1];
	static Expr *slots[PROJ_EXPR_MAX_DEPTH + 1];
	Compare c = WHIZBANG__V1__COMPARE__INIT;
	c.field = "a";
	c.value = &one;
	w.expr = chain(PROJ_EXPR_MAX_DEPTH + 1, true, nodes, lists, slots, &c);
	expect_op(&op, WB_INVALID_EXPRESSION,
	          "delete: where: expression: nested deeper than 64 levels");
	w.expr = chain(PROJ_EXPR_MAX_DEPTH, true, nodes, lists, slots, &c);
	expect_op(&op, 0, NULL);

	/* index specs */
	Whizbang__V1__IndexSpec spec = WHIZBANG__V1__INDEX_SPEC__INIT;
	op.kind_case = WHIZBANG__V1__OP__KIND_CREATE_INDEX;
	op.create_index = &spec;
	expect_op(&op, WB_BAD_REQUEST, "create_index: type must be 1..255 bytes");
	spec.type = "Order";
	expect_op(&op, WB_BAD_REQUEST, "create_index: field must be 1..255 bytes");
	spec.field = name256;
	expect_op(&op, WB_BAD_REQUEST, "create_index: field must be 1..255 bytes");
	spec.field = "status";
	expect_op(&op, 0, NULL);
	op.kind_case = WHIZBANG__V1__OP__KIND_DROP_INDEX;
	expect_op(&op, 0, NULL);
	spec.type = name256;
	expect_op(&op, WB_BAD_REQUEST, "drop_index: type must be 1..255 bytes");
	op.drop_index = NULL;
	expect_op(&op, WB_BAD_REQUEST, "drop_index: missing");
}

/* ------------------------------------------------ the --max-where-* limits */

/* The settings' defaults (server/config.c). */
static const struct proj_where_limits DEFAULTS = {
        .terms = 2000, .depth = 32, .in_list = 1000, .bytes = 64 * 1024, .literal = 16 * 1024};

static void expect_limits(const Expr *e, const struct proj_where_limits *lim, const char *want)
{
	char msg[256] = "";
	int rc = proj_check_where_limits(e, lim, msg, sizeof msg);
	cr_assert_eq(rc, want != NULL ? WB_QUERY_TOO_EXPENSIVE : 0, "rc %d (%s), want %s", rc, msg,
	             want != NULL ? want : "0");
	if (want != NULL)
		cr_assert_str_eq(msg, want);
}

/* Parses text (which must pass proj_check_expr()) and checks it against
 * lim. */
static void expect_text(const char *text, const struct proj_where_limits *lim, const char *want)
{
	Expr *e = parse(text);
	expect_limits(e, lim, want);
	optext_free_expr(e);
}

/* "f == 1 and f == 1 and ..." with n comparisons (n >= 1). */
static char *and_chain(size_t n)
{
	char *s = malloc(n * 12 + 1);
	cr_assert_not_null(s);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		strcat(s, i == 0 ? "f == 1" : " and f == 1");
	return s;
}

Test(eval, terms_are_limited_at_the_setting)
{
	struct proj_where_limits lim = DEFAULTS;
	lim.terms = 10;
	/* an `and` of 9 comparisons is 10 nodes */
	char *s = and_chain(9);
	expect_text(s, &lim, NULL);
	free(s);
	s = and_chain(10);
	expect_text(s, &lim,
	            "the where clause holds 11 terms (nodes and in-list values): at most 10 are "
	            "allowed (--max-where-terms)");
	free(s);
	/* each value of an in list is a term; so is every not, and, or */
	expect_text("f in (1, 2, 3, 4, 5, 6, 7, 8, 9)", &lim, NULL);
	expect_text("f in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)", &lim,
	            "the where clause holds 11 terms (nodes and in-list values): at most 10 are "
	            "allowed (--max-where-terms)");
	expect_text("not (f == 1 or exists(g)) and starts_with(h, \"x\") and f in (1, 2, 3)", &lim,
	            NULL); /* and, not, or, ==, exists, starts_with, in + 3 = 10 */
	expect_text("not (f == 1 or exists(g)) and starts_with(h, \"x\") and f in (1, 2, 3, 4)",
	            &lim,
	            "the where clause holds 11 terms (nodes and in-list values): at most 10 are "
	            "allowed (--max-where-terms)");
}

Test(eval, a_62526_term_clause_of_lawful_lists_is_refused_by_the_defaults)
{
	/* The size measured to stall appends for 5.7 s (62 465 terms): 61
	 * ors of 1024 comparisons under one and, every list within the
	 * language's 1024 terms, so proj_check_expr() lets it through. Built
	 * by sharing nodes, as only the counting matters. */
	Value one = WHIZBANG__V1__VALUE__INIT;
	one.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	one.int_value = 1;
	Compare c = WHIZBANG__V1__COMPARE__INIT;
	c.field = "f";
	c.value = &one;
	Expr leaf = WHIZBANG__V1__EXPR__INIT;
	leaf.node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
	leaf.compare = &c;
	static Expr *leaves[PROJ_EXPR_MAX_TERMS];
	for (size_t i = 0; i < PROJ_EXPR_MAX_TERMS; i++)
		leaves[i] = &leaf;
	ExprList inner_l = WHIZBANG__V1__EXPR_LIST__INIT;
	inner_l.n_terms = PROJ_EXPR_MAX_TERMS;
	inner_l.terms = leaves;
	Expr inner = WHIZBANG__V1__EXPR__INIT;
	inner.node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
	inner.any_of = &inner_l;
	Expr *inners[61];
	for (size_t i = 0; i < 61; i++)
		inners[i] = &inner;
	ExprList outer_l = WHIZBANG__V1__EXPR_LIST__INIT;
	outer_l.n_terms = 61;
	outer_l.terms = inners;
	Expr outer = WHIZBANG__V1__EXPR__INIT;
	outer.node_case = WHIZBANG__V1__EXPR__NODE_ALL_OF;
	outer.all_of = &outer_l;
	expect_expr(&outer, NULL);
	expect_limits(&outer, &DEFAULTS,
	              "the where clause holds 62526 terms (nodes and in-list values): at most 2000 "
	              "are allowed (--max-where-terms)");
	/* One or of 1024 is within the defaults. */
	expect_limits(&inner, &DEFAULTS, NULL);
}

Test(eval, depth_is_limited_at_the_setting)
{
	static Expr nodes[PROJ_EXPR_MAX_DEPTH + 10];
	static ExprList lists[PROJ_EXPR_MAX_DEPTH + 10];
	static Expr *slots[PROJ_EXPR_MAX_DEPTH + 10];
	Value one = WHIZBANG__V1__VALUE__INIT;
	one.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	one.int_value = 1;
	Compare c = WHIZBANG__V1__COMPARE__INIT;
	c.field = "n";
	c.value = &one;
	for (int mixed = 0; mixed < 2; mixed++) {
		/* the default, 32 levels, and 33 */
		expect_limits(chain(32, mixed, nodes, lists, slots, &c), &DEFAULTS, NULL);
		expect_limits(chain(33, mixed, nodes, lists, slots, &c), &DEFAULTS,
		              "the where clause nests more than 32 levels: at most 32 are allowed "
		              "(--max-where-depth)");
		/* the setting's top is the language's own bound */
		struct proj_where_limits lim = DEFAULTS;
		lim.depth = PROJ_EXPR_MAX_DEPTH;
		expect_limits(chain(PROJ_EXPR_MAX_DEPTH, mixed, nodes, lists, slots, &c), &lim,
		              NULL);
		lim.depth = 1;
		expect_limits(chain(1, mixed, nodes, lists, slots, &c), &lim, NULL);
		expect_limits(chain(2, mixed, nodes, lists, slots, &c), &lim,
		              "the where clause nests more than 1 levels: at most 1 are allowed "
		              "(--max-where-depth)");
	}
	/* Depth counts as proj_check_expr() counts: a comparison under 31
	 * nots is 32 levels, parentheses add none. */
	char s[400] = "";
	for (int i = 0; i < 31; i++)
		strcat(s, "not (");
	strcat(s, "n == 1");
	for (int i = 0; i < 31; i++)
		strcat(s, ")");
	expect_text(s, &DEFAULTS, NULL);
	char t[410] = "not ";
	strcat(t, s);
	expect_text(t, &DEFAULTS,
	            "the where clause nests more than 32 levels: at most 32 are allowed "
	            "(--max-where-depth)");
	/* The depth is reported before any other figure. */
	struct proj_where_limits lim = DEFAULTS;
	lim.terms = 1;
	expect_text(t, &lim,
	            "the where clause nests more than 32 levels: at most 32 are allowed "
	            "(--max-where-depth)");
}

Test(eval, in_lists_literals_and_bytes_are_limited_at_their_settings)
{
	struct proj_where_limits lim = DEFAULTS;
	lim.in_list = 3;
	expect_text("f in (1, 2, 3) or g not in (\"a\", \"b\", \"c\")", &lim, NULL);
	expect_text("f in (1, 2, 3) or g not in (\"a\", \"b\", \"c\", \"d\")", &lim,
	            "an in list of the where clause holds 4 values: at most 3 are allowed "
	            "(--max-where-in-list)");

	lim = DEFAULTS;
	lim.literal = 5;
	expect_text("s == \"abcde\" and b == x\"0102030405\" and starts_with(s, \"abcde\")", &lim,
	            NULL);
	expect_text("s == \"abcdef\"", &lim,
	            "a literal of the where clause is 6 bytes: at most 5 are allowed "
	            "(--max-where-literal)");
	expect_text("b == x\"010203040506\"", &lim,
	            "a literal of the where clause is 6 bytes: at most 5 are allowed "
	            "(--max-where-literal)");
	expect_text("starts_with(s, \"abcdef\")", &lim,
	            "a literal of the where clause is 6 bytes: at most 5 are allowed "
	            "(--max-where-literal)");
	expect_text("s in (\"a\", \"abcdef\")", &lim,
	            "a literal of the where clause is 6 bytes: at most 5 are allowed "
	            "(--max-where-literal)");
	/* "é" is two bytes of UTF-8 */
	expect_text("s == \"ééé\"", &lim,
	            "a literal of the where clause is 6 bytes: at most 5 are allowed "
	            "(--max-where-literal)");

	/* Bytes: names and literals; a number, bool or null counts 8. */
	lim = DEFAULTS;
	lim.bytes = 20;
	expect_text("ab == \"xyz\" and cd == 1 and exists(e)", &lim, NULL);  /* 5 + 10 + 1 */
	expect_text("ab == \"xyz\" and cd == 1 and exists(ef)", &lim, NULL); /* 5 + 10 + 2 */
	expect_text("ab == \"xyz\" and cd == true and exists(ef) and g in (null)", &lim,
	            "the where clause's names and literals are 26 bytes: at most 20 are allowed "
	            "(--max-where-bytes)");
	lim.bytes = 26;
	expect_text("ab == \"xyz\" and cd == true and exists(ef) and g in (null)", &lim, NULL);
	expect_text("ab == \"xyz\" and cd == true and exists(ef) and g in (null, 2.5)", &lim,
	            "the where clause's names and literals are 34 bytes: at most 26 are allowed "
	            "(--max-where-bytes)");
	/* terms come before in lists, in lists before literals, literals
	 * before bytes */
	lim = (struct proj_where_limits){
	        .terms = 3, .depth = 32, .in_list = 1, .bytes = 1, .literal = 1};
	expect_text("f in (\"ab\", \"cd\", \"ef\")", &lim,
	            "the where clause holds 4 terms (nodes and in-list values): at most 3 are "
	            "allowed (--max-where-terms)");
	lim.terms = 4;
	expect_text("f in (\"ab\", \"cd\", \"ef\")", &lim,
	            "an in list of the where clause holds 3 values: at most 1 are allowed "
	            "(--max-where-in-list)");
	lim.in_list = 3;
	expect_text("f in (\"ab\", \"cd\", \"ef\")", &lim,
	            "a literal of the where clause is 2 bytes: at most 1 are allowed "
	            "(--max-where-literal)");
	lim.literal = 2;
	expect_text("f in (\"ab\", \"cd\", \"ef\")", &lim,
	            "the where clause's names and literals are 7 bytes: at most 1 are allowed "
	            "(--max-where-bytes)");
	/* No room for a message: the code alone. */
	Expr *e = parse("f == 1");
	lim.bytes = 1;
	cr_assert_eq(proj_check_where_limits(e, &lim, NULL, 0), WB_QUERY_TOO_EXPENSIVE);
	optext_free_expr(e);
}

Test(eval, op_limits_check_the_where_of_updates_and_deletes_only)
{
	struct proj_where_limits lim = DEFAULTS;
	lim.terms = 2;
	OpList *ops = NULL;
	struct optext_error err = {0};
	cr_assert_eq(optext_parse_ops("upsert T \"a\" {f: 1, g: 2, h: 3};"
	                              "update T where f == 1 and g == 2 set h = 1;"
	                              "delete T where f in (1, 2);"
	                              "delete T \"a\";"
	                              "update T where f == 1 set h = 1;"
	                              "delete T where f in (1);"
	                              "create index T f",
	                              &ops, &err),
	             0, "%s", err.message);
	const char *want[] = {
	        NULL,
	        "update: where: the where clause holds 3 terms (nodes and in-list values): at most "
	        "2 are allowed (--max-where-terms)",
	        "delete: where: the where clause holds 3 terms (nodes and in-list values): at most "
	        "2 are allowed (--max-where-terms)",
	        NULL,
	        NULL,
	        NULL,
	        NULL,
	};
	cr_assert_eq(ops->n_ops, 7);
	for (size_t i = 0; i < ops->n_ops; i++) {
		expect_op(ops->ops[i], 0, NULL);
		char msg[256] = "";
		int rc = proj_check_op_limits(ops->ops[i], &lim, msg, sizeof msg);
		cr_assert_eq(rc, want[i] != NULL ? WB_QUERY_TOO_EXPENSIVE : 0, "op %zu: %s", i + 1,
		             msg);
		if (want[i] != NULL)
			cr_assert_str_eq(msg, want[i]);
	}
	optext_free_ops(ops);
}
