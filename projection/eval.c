/* Where-clause evaluation and the checks of client operations (eval.h).
 *
 * proj_eval() runs once per candidate entity, up to a full scan of a type,
 * so it allocates nothing: fields are looked up in the encoded record and
 * the clause's literals are viewed in place (proj_value_from_pb() only
 * points into the protobuf message). It trusts a clause that passed
 * proj_check_expr(); given anything else it still stays in bounds and
 * answers false where a node is missing.
 *
 * The checks name what is wrong in the order a reader meets it: the op,
 * then its parts, with field positions counted from 1. A name is quoted in
 * a message only when it is short printable ASCII, because the message
 * goes back to the client in a protobuf string. */
#include "eval.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wb_error.h"

typedef Whizbang__V1__Value Value;
typedef Whizbang__V1__Field Field;
typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__ExprList ExprList;
typedef Whizbang__V1__Compare Compare;
typedef Whizbang__V1__InList InList;
typedef Whizbang__V1__Where Where;
typedef Whizbang__V1__Action Action;
typedef Whizbang__V1__Explosion Explosion;
typedef Whizbang__V1__IndexSpec IndexSpec;
typedef Whizbang__V1__Op Op;

/* ------------------------------------------------------------ evaluation */

static bool lookup(const struct proj_record *r, const char *field, struct proj_value *out)
{
	if (field == NULL)
		return false;
	return proj_record_find(r, field, strlen(field), out);
}

static bool eval_compare(const Compare *c, const struct proj_record *r)
{
	struct proj_value f, v;
	if (c == NULL || !lookup(r, c->field, &f) || proj_value_from_pb(c->value, &v) != 0)
		return false;
	int cmp;
	switch (c->op) {
	case WHIZBANG__V1__COMPARE_OP__EQ:
		return proj_value_equal(&f, &v);
	case WHIZBANG__V1__COMPARE_OP__NE:
		return !proj_value_equal(&f, &v);
	case WHIZBANG__V1__COMPARE_OP__LT:
		return proj_value_order(&f, &v, &cmp) && cmp < 0;
	case WHIZBANG__V1__COMPARE_OP__LE:
		return proj_value_order(&f, &v, &cmp) && cmp <= 0;
	case WHIZBANG__V1__COMPARE_OP__GT:
		return proj_value_order(&f, &v, &cmp) && cmp > 0;
	case WHIZBANG__V1__COMPARE_OP__GE:
		return proj_value_order(&f, &v, &cmp) && cmp >= 0;
	default:
		return false;
	}
}

static bool eval_in(const InList *in, const struct proj_record *r)
{
	struct proj_value f;
	if (in == NULL || !lookup(r, in->field, &f))
		return false;
	bool found = false;
	for (size_t i = 0; i < in->n_values && !found; i++) {
		struct proj_value v;
		found = proj_value_from_pb(in->values[i], &v) == 0 && proj_value_equal(&f, &v);
	}
	return in->negated ? !found : found;
}

static bool eval_starts_with(const Whizbang__V1__StartsWith *s, const struct proj_record *r)
{
	struct proj_value f;
	if (s == NULL || !lookup(r, s->field, &f) || f.type != PROJ_STRING)
		return false;
	size_t n = s->prefix == NULL ? 0 : strlen(s->prefix);
	return f.u.s.len >= n && (n == 0 || memcmp(f.u.s.p, s->prefix, n) == 0);
}

bool proj_eval(const Expr *e, const struct proj_record *r)
{
	if (e == NULL)
		return false;
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		return eval_compare(e->compare, r);
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		return eval_in(e->in_list, r);
	case WHIZBANG__V1__EXPR__NODE_EXISTS: {
		struct proj_value f;
		return e->exists != NULL && lookup(r, e->exists->field, &f);
	}
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		return eval_starts_with(e->starts_with, r);
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		if (e->all_of != NULL)
			for (size_t i = 0; i < e->all_of->n_terms; i++)
				if (!proj_eval(e->all_of->terms[i], r))
					return false;
		return true;
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		if (e->any_of != NULL)
			for (size_t i = 0; i < e->any_of->n_terms; i++)
				if (proj_eval(e->any_of->terms[i], r))
					return true;
		return false;
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		return !proj_eval(e->negate, r);
	default:
		return false;
	}
}

/* ------------------------------------------------------------ messages */

static int say(int code, char *msg, size_t len, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Writes the message (when there is room for one) and returns code. */
static int say(int code, char *msg, size_t len, const char *fmt, ...)
{
	if (msg != NULL && len > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, len, fmt, ap);
		va_end(ap);
	}
	return code;
}

static bool name_ok(const char *s)
{
	if (s == NULL)
		return false;
	size_t n = strlen(s);
	return n >= 1 && n <= PROJ_NAME_MAX;
}

/* How field number i (from 0) is named in a message: "\"status\"" when
 * the name is short printable ASCII, else its position. */
struct field_ref {
	char s[80];
};

static struct field_ref field_ref(const char *name, size_t i)
{
	struct field_ref r;
	bool plain = name != NULL && strlen(name) <= 64;
	for (const char *c = name; plain && *c != '\0'; c++)
		plain = *c >= 0x20 && *c < 0x7F && *c != '"' && *c != '\\';
	if (plain)
		snprintf(r.s, sizeof r.s, "\"%s\"", name);
	else
		snprintf(r.s, sizeof r.s, "%zu", i + 1);
	return r;
}

/* What is wrong with a value, or NULL when it is usable. */
static const char *value_problem(const Value *v)
{
	struct proj_value pv;
	if (v == NULL)
		return "no value";
	if (v->kind_case == WHIZBANG__V1__VALUE__KIND__NOT_SET)
		return "value has no kind set";
	if (proj_value_from_pb(v, &pv) != 0)
		return v->kind_case == WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE
		               ? "value is NaN"
		               : "value is malformed";
	return NULL;
}

/* ------------------------------------------------------------ clauses */

#define BAD_EXPR(...) say(WB_INVALID_EXPRESSION, msg, len, __VA_ARGS__)

static int check_list(const ExprList *l, const char *what, int depth, char *msg, size_t len);

static int check_node(const Expr *e, int depth, char *msg, size_t len)
{
	if (depth > PROJ_EXPR_MAX_DEPTH)
		return BAD_EXPR("expression: nested deeper than %d levels", PROJ_EXPR_MAX_DEPTH);
	if (e == NULL)
		return BAD_EXPR("expression: no node set");
	const char *problem;
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE: {
		const Compare *c = e->compare;
		if (c == NULL)
			return BAD_EXPR("compare: missing");
		if (!name_ok(c->field))
			return BAD_EXPR("compare: field must be 1..255 bytes");
		if ((unsigned)c->op > WHIZBANG__V1__COMPARE_OP__GE)
			return BAD_EXPR("compare: op %d is not a comparison", (int)c->op);
		if ((problem = value_problem(c->value)) != NULL)
			return BAD_EXPR("compare: %s", problem);
		return 0;
	}
	case WHIZBANG__V1__EXPR__NODE_IN_LIST: {
		const InList *in = e->in_list;
		if (in == NULL)
			return BAD_EXPR("in_list: missing");
		if (!name_ok(in->field))
			return BAD_EXPR("in_list: field must be 1..255 bytes");
		if (in->n_values == 0)
			return BAD_EXPR("in_list: no values");
		if (in->n_values > PROJ_EXPR_MAX_TERMS)
			return BAD_EXPR("in_list: more than %d values", PROJ_EXPR_MAX_TERMS);
		for (size_t i = 0; i < in->n_values; i++)
			if ((problem = value_problem(in->values[i])) != NULL)
				return BAD_EXPR("in_list: value %zu: %s", i + 1, problem);
		return 0;
	}
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		if (e->exists == NULL)
			return BAD_EXPR("exists: missing");
		if (!name_ok(e->exists->field))
			return BAD_EXPR("exists: field must be 1..255 bytes");
		return 0;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		if (e->starts_with == NULL)
			return BAD_EXPR("starts_with: missing");
		if (!name_ok(e->starts_with->field))
			return BAD_EXPR("starts_with: field must be 1..255 bytes");
		if (e->starts_with->prefix == NULL)
			return BAD_EXPR("starts_with: no prefix");
		return 0;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		return check_list(e->all_of, "all_of", depth, msg, len);
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		return check_list(e->any_of, "any_of", depth, msg, len);
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		if (e->negate == NULL)
			return BAD_EXPR("negate: missing");
		return check_node(e->negate, depth + 1, msg, len);
	default:
		return BAD_EXPR("expression: no node set");
	}
}

static int check_list(const ExprList *l, const char *what, int depth, char *msg, size_t len)
{
	if (l == NULL)
		return BAD_EXPR("%s: missing", what);
	if (l->n_terms > PROJ_EXPR_MAX_TERMS)
		return BAD_EXPR("%s: more than %d terms", what, PROJ_EXPR_MAX_TERMS);
	for (size_t i = 0; i < l->n_terms; i++) {
		if (l->terms[i] == NULL)
			return BAD_EXPR("%s: term %zu: no node set", what, i + 1);
		int rc = check_node(l->terms[i], depth + 1, msg, len);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int proj_check_expr(const Expr *e, char *msg, size_t len)
{
	return check_node(e, 1, msg, len);
}

/* ------------------------------------------------------------ cost limits */

/* What one pass over a clause found. */
struct measure {
	const struct proj_where_limits *lim;
	uint64_t terms;
	uint64_t bytes;
	bool too_deep;
	uint64_t in_list; /* the first in list over the limit (0: none) */
	uint64_t literal; /* the first literal over the limit (0: none) */
};

static void measure_literal(struct measure *m, size_t n)
{
	m->bytes += n;
	if (n > m->lim->literal && m->literal == 0)
		m->literal = n;
}

static void measure_value(struct measure *m, const Value *v)
{
	if (v == NULL)
		return;
	if (v->kind_case == WHIZBANG__V1__VALUE__KIND_STRING_VALUE)
		measure_literal(m, v->string_value != NULL ? strlen(v->string_value) : 0);
	else if (v->kind_case == WHIZBANG__V1__VALUE__KIND_BYTES_VALUE)
		measure_literal(m, v->bytes_value.len);
	else
		m->bytes += 8;
}

static size_t name_len(const char *s)
{
	return s != NULL ? strlen(s) : 0;
}

/* Adds e (at depth) to m. Stops descending past the depth limit, so the
 * recursion is bounded by the limit, not by the message. */
static void measure_node(struct measure *m, const Expr *e, uint64_t depth)
{
	if (e == NULL || m->too_deep)
		return;
	if (depth > m->lim->depth) {
		m->too_deep = true;
		return;
	}
	m->terms++;
	const ExprList *l = NULL;
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		if (e->compare != NULL) {
			m->bytes += name_len(e->compare->field);
			measure_value(m, e->compare->value);
		}
		return;
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		if (e->in_list != NULL) {
			const InList *in = e->in_list;
			m->bytes += name_len(in->field);
			m->terms += in->n_values;
			if (in->n_values > m->lim->in_list && m->in_list == 0)
				m->in_list = in->n_values;
			for (size_t i = 0; i < in->n_values; i++)
				measure_value(m, in->values[i]);
		}
		return;
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		if (e->exists != NULL)
			m->bytes += name_len(e->exists->field);
		return;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		if (e->starts_with != NULL) {
			m->bytes += name_len(e->starts_with->field);
			measure_literal(m, name_len(e->starts_with->prefix));
		}
		return;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		l = e->all_of;
		break;
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		l = e->any_of;
		break;
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		measure_node(m, e->negate, depth + 1);
		return;
	default:
		return;
	}
	for (size_t i = 0; l != NULL && i < l->n_terms && !m->too_deep; i++)
		measure_node(m, l->terms[i], depth + 1);
}

#define TOO_EXPENSIVE(...) say(WB_QUERY_TOO_EXPENSIVE, msg, len, __VA_ARGS__)

int proj_check_where_limits(const Expr *e, const struct proj_where_limits *lim, char *msg,
                            size_t len)
{
	struct measure m = {.lim = lim};
	measure_node(&m, e, 1);
	if (m.too_deep)
		return TOO_EXPENSIVE("the where clause nests more than %llu levels: at most %llu "
		                     "are allowed (--max-where-depth)",
		                     (unsigned long long)lim->depth,
		                     (unsigned long long)lim->depth);
	if (m.terms > lim->terms)
		return TOO_EXPENSIVE(
		        "the where clause holds %llu terms (nodes and in-list values): "
		        "at most %llu are allowed (--max-where-terms)",
		        (unsigned long long)m.terms, (unsigned long long)lim->terms);
	if (m.in_list != 0)
		return TOO_EXPENSIVE("an in list of the where clause holds %llu values: at most "
		                     "%llu are allowed (--max-where-in-list)",
		                     (unsigned long long)m.in_list,
		                     (unsigned long long)lim->in_list);
	if (m.literal != 0)
		return TOO_EXPENSIVE(
		        "a literal of the where clause is %llu bytes: at most %llu are "
		        "allowed (--max-where-literal)",
		        (unsigned long long)m.literal, (unsigned long long)lim->literal);
	if (m.bytes > lim->bytes)
		return TOO_EXPENSIVE(
		        "the where clause's names and literals are %llu bytes: at most "
		        "%llu are allowed (--max-where-bytes)",
		        (unsigned long long)m.bytes, (unsigned long long)lim->bytes);
	return 0;
}

int proj_check_op_limits(const Op *op, const struct proj_where_limits *lim, char *msg, size_t len)
{
	const char *what;
	const Where *w;
	if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE && op->update != NULL) {
		what = "update";
		w = op->update->where;
	} else if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE && op->delete_ != NULL &&
	           op->delete_->target_case == WHIZBANG__V1__DELETE__TARGET_WHERE) {
		what = "delete";
		w = op->delete_->where;
	} else {
		return 0;
	}
	if (w == NULL || w->expr == NULL)
		return 0;
	char inner[256];
	int rc = proj_check_where_limits(w->expr, lim, inner, sizeof inner);
	if (rc != 0)
		return say(rc, msg, len, "%s: where: %s", what, inner);
	return 0;
}

/* ------------------------------------------------------------ operations */

#define BAD_REQ(...) say(WB_BAD_REQUEST, msg, len, __VA_ARGS__)

/* A field name and its position, to find duplicates by sorting. */
struct named {
	const char *name;
	size_t pos;
};

static int named_cmp(const void *a, const void *b)
{
	return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* The fields of an upsert or create_if_none. */
static int check_fields(const char *what, Field *const *fields, size_t n, char *msg, size_t len)
{
	if (n > PROJ_MAX_FIELDS)
		return BAD_REQ("%s: more than %u fields", what, PROJ_MAX_FIELDS);
	struct named names[PROJ_MAX_FIELDS];
	for (size_t i = 0; i < n; i++) {
		const Field *f = fields[i];
		if (f == NULL)
			return BAD_REQ("%s: field %zu is missing", what, i + 1);
		if (!name_ok(f->name))
			return BAD_REQ("%s: field %zu: name must be 1..255 bytes", what, i + 1);
		const char *problem = value_problem(f->value);
		if (problem != NULL)
			return BAD_REQ("%s: field %s: %s", what, field_ref(f->name, i).s, problem);
		names[i].name = f->name;
		names[i].pos = i;
	}
	if (n > 1) {
		qsort(names, n, sizeof names[0], named_cmp);
		for (size_t i = 1; i < n; i++)
			if (named_cmp(&names[i - 1], &names[i]) == 0)
				return BAD_REQ("%s: field %s appears twice", what,
				               field_ref(names[i].name, names[i].pos).s);
	}
	return 0;
}

/* A Where inside an op; errors in the clause are prefixed with the op. */
static int check_where(const char *what, const Where *w, char *msg, size_t len)
{
	if (w == NULL || w->expr == NULL)
		return BAD_EXPR("%s: where has no expression", what);
	char inner[256];
	int rc = proj_check_expr(w->expr, inner, sizeof inner);
	if (rc != 0)
		return say(rc, msg, len, "%s: where: %s", what, inner);
	return 0;
}

static int check_action(const Action *a, size_t i, char *msg, size_t len)
{
	if (a == NULL)
		return BAD_REQ("update: action %zu is missing", i + 1);
	switch (a->kind_case) {
	case WHIZBANG__V1__ACTION__KIND_SET: {
		if (a->set == NULL)
			return BAD_REQ("update: action %zu: set is missing", i + 1);
		if (!name_ok(a->set->field))
			return BAD_REQ("set: field must be 1..255 bytes");
		const char *problem = value_problem(a->set->value);
		if (problem != NULL)
			return BAD_REQ("set: field %s: %s", field_ref(a->set->field, 0).s, problem);
		return 0;
	}
	case WHIZBANG__V1__ACTION__KIND_UNSET:
		if (!name_ok(a->unset))
			return BAD_REQ("unset: field must be 1..255 bytes");
		return 0;
	case WHIZBANG__V1__ACTION__KIND_INCREMENT: {
		const Whizbang__V1__IncrementAction *inc = a->increment;
		if (inc == NULL)
			return BAD_REQ("update: action %zu: increment is missing", i + 1);
		if (!name_ok(inc->field))
			return BAD_REQ("increment: field must be 1..255 bytes");
		if (inc->by == NULL ||
		    (inc->by->kind_case != WHIZBANG__V1__VALUE__KIND_INT_VALUE &&
		     inc->by->kind_case != WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE))
			return BAD_REQ("increment: by must be an int or double");
		if (value_problem(inc->by) != NULL)
			return BAD_REQ("increment: by is NaN");
		return 0;
	}
	default:
		return BAD_REQ("update: action %zu: no kind set", i + 1);
	}
}

static int check_update(const Whizbang__V1__Update *u, char *msg, size_t len)
{
	if (u == NULL)
		return BAD_REQ("update: missing");
	if (!name_ok(u->type))
		return BAD_REQ("update: type must be 1..255 bytes");
	if (u->exploded != NULL)
		return BAD_REQ("update: explosion is set by the server");
	if (u->where == NULL)
		return BAD_REQ("update: where is required");
	int rc = check_where("update", u->where, msg, len);
	if (rc != 0)
		return rc;
	if (u->n_actions == 0)
		return BAD_REQ("update: at least one action");
	for (size_t i = 0; i < u->n_actions; i++)
		if ((rc = check_action(u->actions[i], i, msg, len)) != 0)
			return rc;
	const Whizbang__V1__CreateIfNone *c = u->create_if_none;
	if (c != NULL) {
		if (!name_ok(c->id))
			return BAD_REQ("create_if_none: id must be 1..255 bytes");
		return check_fields("create_if_none", c->fields, c->n_fields, msg, len);
	}
	return 0;
}

static int check_delete(const Whizbang__V1__Delete *d, char *msg, size_t len)
{
	if (d == NULL)
		return BAD_REQ("delete: missing");
	if (!name_ok(d->type))
		return BAD_REQ("delete: type must be 1..255 bytes");
	if (d->exploded != NULL)
		return BAD_REQ("delete: explosion is set by the server");
	switch (d->target_case) {
	case WHIZBANG__V1__DELETE__TARGET_ID:
		if (!name_ok(d->id))
			return BAD_REQ("delete: id must be 1..255 bytes");
		return 0;
	case WHIZBANG__V1__DELETE__TARGET_WHERE:
		return check_where("delete", d->where, msg, len);
	default:
		return BAD_REQ("delete: an id or a where is required");
	}
}

static int check_index(const char *what, const IndexSpec *s, char *msg, size_t len)
{
	if (s == NULL)
		return BAD_REQ("%s: missing", what);
	if (!name_ok(s->type))
		return BAD_REQ("%s: type must be 1..255 bytes", what);
	if (!name_ok(s->field))
		return BAD_REQ("%s: field must be 1..255 bytes", what);
	return 0;
}

int proj_check_op(const Op *op, char *msg, size_t len)
{
	if (op == NULL)
		return BAD_REQ("op: missing");
	switch (op->kind_case) {
	case WHIZBANG__V1__OP__KIND_UPSERT: {
		const Whizbang__V1__Upsert *u = op->upsert;
		if (u == NULL)
			return BAD_REQ("upsert: missing");
		if (!name_ok(u->type))
			return BAD_REQ("upsert: type must be 1..255 bytes");
		if (!name_ok(u->id))
			return BAD_REQ("upsert: id must be 1..255 bytes");
		return check_fields("upsert", u->fields, u->n_fields, msg, len);
	}
	case WHIZBANG__V1__OP__KIND_UPDATE:
		return check_update(op->update, msg, len);
	case WHIZBANG__V1__OP__KIND_DELETE:
		return check_delete(op->delete_, msg, len);
	case WHIZBANG__V1__OP__KIND_CREATE_INDEX:
		return check_index("create_index", op->create_index, msg, len);
	case WHIZBANG__V1__OP__KIND_DROP_INDEX:
		return check_index("drop_index", op->drop_index, msg, len);
	default:
		return BAD_REQ("op: no kind set");
	}
}
