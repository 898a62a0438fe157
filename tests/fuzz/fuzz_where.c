/* libFuzzer harness for the text form of where clauses and operations
 * (projection/optext.h). The input, cut at its first NUL, is parsed both as a
 * where clause and as a list of operations. A parse error must be
 * INVALID_EXPRESSION with a column inside the text and a message that names
 * it. A success is held to the formatter's contract:
 *
 *   - the canonical text (optext_format_*) parses again, to the same packed
 *     protobuf bytes (so every double keeps its bits, -0.0 included), and
 *     formats to the same text: the canonical form is a fixed point;
 *   - an operation's Where keeps the text it was written as, and that text
 *     alone parses to the same tree;
 *   - formatting into a short buffer returns the full length and writes a
 *     NUL-terminated prefix ending in "..." without touching a byte past the
 *     buffer (the buffer is malloc'd to its exact size, so ASan sees it).
 *
 * The evaluator (projection/eval.c and value.c) is compiled in too: a
 * clause that passes proj_check_expr() is also
 * evaluated against entity records built from its own literals and their
 * neighbours (int +-1, the double next to it, an int as a double, a string
 * one byte longer or shorter), and must give what a reference evaluator
 * written here from eval.h's semantics gives; the same values are held to
 * value.h: equality and order against the reference, and index keys whose
 * byte order is the values' order. The canonical clause must pass or fail
 * proj_check_expr() exactly as the original does.
 *
 * A broken contract aborts with both texts on stderr; sanitizer reports and
 * leaks are findings too. The corpus is tests/fuzz/corpus_where/. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optext.h"
#include "wb_error.h"
#include <math.h>

#include "eval.h"
#include "value.h"

typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__OpList OpList;
typedef Whizbang__V1__Where Where;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static void broken(const char *what, const char *a, const char *b)
{
	fprintf(stderr, "fuzz_where: %s\n  first:  %s\n  second: %s\n", what, a ? a : "(none)",
	        b ? b : "(none)");
	abort();
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n > 0 ? n : 1);
	if (p == NULL)
		abort();
	return p;
}

/* The characters (UTF-8 lead bytes and ASCII) of text: the largest column an
 * error may name is one past them. */
static size_t chars(const char *text)
{
	size_t n = 0;
	for (const char *s = text; *s != '\0'; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

static void check_error(const char *text, int rc, const struct optext_error *err)
{
	char head[48];
	if (rc != WB_INVALID_EXPRESSION)
		broken("a parse failed with an error other than INVALID_EXPRESSION", text, NULL);
	if (err->column < 1 || err->column > chars(text) + 1)
		broken("a parse error's column lies outside the text", text, err->message);
	snprintf(head, sizeof(head), "column %zu: ", err->column);
	if (strncmp(err->message, head, strlen(head)) != 0 ||
	    strlen(err->message) <= strlen(head) ||
	    memchr(err->message, '\0', sizeof(err->message)) == NULL)
		broken("a parse error's message does not start with its column", text,
		       err->message);
}

/* The packed bytes of a message, compared as the test of equal trees. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *p = xmalloc(*len);
	if (protobuf_c_message_pack(m, p) != *len)
		abort();
	return p;
}

static bool same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t alen, blen;
	uint8_t *ap = pack(a, &alen), *bp = pack(b, &blen);
	bool same = alen == blen && memcmp(ap, bp, alen) == 0;
	free(ap);
	free(bp);
	return same;
}

/* One of optext_format_expr() and optext_format_op(). */
typedef size_t (*format_fn)(const void *m, char *buf, size_t len);

static size_t format_expr(const void *m, char *buf, size_t len)
{
	return optext_format_expr(m, buf, len);
}

static size_t format_op(const void *m, char *buf, size_t len)
{
	return optext_format_op(m, buf, len);
}

/* The full text of m in a new string; also formats it once into a buffer of
 * short bytes (derived from the input) and checks the truncation. */
static char *format(format_fn fn, const void *m, size_t short_len)
{
	size_t n = fn(m, NULL, 0);
	char *full = xmalloc(n + 1);
	if (fn(m, full, n + 1) != n || strlen(full) != n)
		broken("the formatter's length disagrees with what it wrote", full, NULL);

	size_t len = short_len % (n + 2); /* 0 .. n+1: from nothing to all of it */
	char *buf = len > 0 ? xmalloc(len) : NULL;
	if (fn(m, buf, len) != n)
		broken("a short buffer changed the formatter's length", full, NULL);
	if (len > 0) {
		size_t got = strnlen(buf, len);
		if (got == len)
			broken("a short buffer was left without a NUL", full, NULL);
		if (len > n) {
			if (strcmp(buf, full) != 0)
				broken("a buffer with room got a different text", full, buf);
		} else {
			/* Cut to len - 1 bytes: a prefix of the full text that
			 * ends at a character boundary, then "..." (or as many
			 * dots as fit in fewer than 3 bytes). */
			size_t shown = len - 1;
			if (shown < 3) {
				if (got != shown || strspn(buf, ".") != got)
					broken("a tiny buffer does not hold only dots", full, buf);
			} else {
				size_t keep = got - 3;
				if (got < 3 || got > shown || keep + 6 < shown ||
				    strcmp(buf + keep, "...") != 0)
					broken("a truncated text does not end in \"...\" where "
					       "it should",
					       full, buf);
				if (memcmp(buf, full, keep) != 0 ||
				    ((unsigned char)full[keep] & 0xC0) == 0x80)
					broken("a truncated text is not a prefix of the full "
					       "one cut at a character",
					       full, buf);
			}
		}
	}
	free(buf);
	return full;
}

/* ------------------------------------------------------------ evaluation */

typedef Whizbang__V1__Value Value;

/* A reference value: a proj_value read from the protobuf form here, not by
 * proj_value_from_pb(), so that the two can disagree. */
static struct proj_value ref_value(const Value *v)
{
	struct proj_value r;
	memset(&r, 0, sizeof(r));
	r.type = PROJ_NULL;
	switch (v->kind_case) {
	case WHIZBANG__V1__VALUE__KIND_STRING_VALUE:
		r.type = PROJ_STRING;
		r.u.s.p = (const uint8_t *)v->string_value;
		r.u.s.len = strlen(v->string_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_INT_VALUE:
		r.type = PROJ_INT;
		r.u.i = v->int_value;
		break;
	case WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE:
		r.type = PROJ_DOUBLE;
		r.u.d = v->double_value;
		break;
	case WHIZBANG__V1__VALUE__KIND_BOOL_VALUE:
		r.type = PROJ_BOOL;
		r.u.b = v->bool_value != 0;
		break;
	case WHIZBANG__V1__VALUE__KIND_BYTES_VALUE:
		r.type = PROJ_BYTES;
		r.u.s.p = v->bytes_value.data;
		r.u.s.len = v->bytes_value.len;
		break;
	default:
		break;
	}
	return r;
}

static int sign(int c)
{
	return (c > 0) - (c < 0);
}

/* An int64 against a double, exactly: the double's integral part is
 * compared as an int64 once it is known to fit, then its fraction. */
static int ref_cmp_int_double(int64_t i, double d)
{
	if (d >= 9223372036854775808.0)
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	double fl = floor(d);
	int64_t di = (int64_t)fl;
	if (i != di)
		return i < di ? -1 : 1;
	return fl < d ? -1 : 0;
}

static bool is_number(const struct proj_value *v)
{
	return v->type == PROJ_INT || v->type == PROJ_DOUBLE;
}

/* eval.h's order: numbers exactly, strings with strings and bytes with
 * bytes by unsigned bytes, bools false < true; false for any other pair. */
static bool ref_order(const struct proj_value *a, const struct proj_value *b, int *cmp)
{
	if (is_number(a) && is_number(b)) {
		if (a->type == PROJ_INT && b->type == PROJ_INT)
			*cmp = (a->u.i > b->u.i) - (a->u.i < b->u.i);
		else if (a->type == PROJ_DOUBLE && b->type == PROJ_DOUBLE)
			*cmp = (a->u.d > b->u.d) - (a->u.d < b->u.d);
		else if (a->type == PROJ_INT)
			*cmp = ref_cmp_int_double(a->u.i, b->u.d);
		else
			*cmp = -ref_cmp_int_double(b->u.i, a->u.d);
		return true;
	}
	if (a->type != b->type)
		return false;
	if (a->type == PROJ_BOOL) {
		*cmp = (int)a->u.b - (int)b->u.b;
		return true;
	}
	if (a->type == PROJ_STRING || a->type == PROJ_BYTES) {
		size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
		int c = n == 0 ? 0 : memcmp(a->u.s.p, b->u.s.p, n);
		*cmp = c != 0 ? sign(c) : (a->u.s.len > b->u.s.len) - (a->u.s.len < b->u.s.len);
		return true;
	}
	return false;
}

static bool ref_equal(const struct proj_value *a, const struct proj_value *b)
{
	int cmp;
	if (a->type == PROJ_NULL || b->type == PROJ_NULL)
		return a->type == b->type;
	return ref_order(a, b, &cmp) && cmp == 0;
}

/* The same value, the same way: type, bits and bytes (for the record's
 * round trip, where -0.0 must stay -0.0). */
static bool identical(const struct proj_value *a, const struct proj_value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PROJ_BOOL:
		return a->u.b == b->u.b;
	case PROJ_INT:
		return a->u.i == b->u.i;
	case PROJ_DOUBLE:
		return memcmp(&a->u.d, &b->u.d, sizeof(double)) == 0;
	case PROJ_STRING:
	case PROJ_BYTES:
		return a->u.s.len == b->u.s.len &&
		       (a->u.s.len == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0);
	default:
		return true;
	}
}

#define MAX_NAMES 32
#define MAX_LITS 64
#define NRECORDS 8

/* The fields a clause names and the literals it holds, each literal with
 * the field it was compared with. */
struct lits {
	const char *name[MAX_NAMES];
	size_t nnames;
	struct proj_value v[MAX_LITS];
	size_t of[MAX_LITS];
	size_t nv;
};

static size_t name_slot(struct lits *l, const char *name)
{
	for (size_t k = 0; k < l->nnames; k++)
		if (strcmp(l->name[k], name) == 0)
			return k;
	if (l->nnames == MAX_NAMES)
		return SIZE_MAX;
	l->name[l->nnames] = name;
	return l->nnames++;
}

static void add_lit(struct lits *l, size_t slot, struct proj_value v)
{
	if (slot == SIZE_MAX || l->nv == MAX_LITS)
		return;
	l->v[l->nv] = v;
	l->of[l->nv++] = slot;
}

static void gather(const Expr *e, struct lits *l)
{
	struct proj_value v;
	size_t slot;
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		add_lit(l, name_slot(l, e->compare->field), ref_value(e->compare->value));
		break;
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		slot = name_slot(l, e->in_list->field);
		for (size_t k = 0; k < e->in_list->n_values; k++)
			add_lit(l, slot, ref_value(e->in_list->values[k]));
		break;
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		(void)name_slot(l, e->exists->field);
		break;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		memset(&v, 0, sizeof(v));
		v.type = PROJ_STRING;
		v.u.s.p = (const uint8_t *)e->starts_with->prefix;
		v.u.s.len = strlen(e->starts_with->prefix);
		add_lit(l, name_slot(l, e->starts_with->field), v);
		break;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		for (size_t k = 0; k < e->all_of->n_terms; k++)
			gather(e->all_of->terms[k], l);
		break;
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		for (size_t k = 0; k < e->any_of->n_terms; k++)
			gather(e->any_of->terms[k], l);
		break;
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		gather(e->negate, l);
		break;
	default:
		break;
	}
}

/* A record as the reference sees it: a value (or none) per name. */
struct ref_record {
	bool has[MAX_NAMES];
	struct proj_value v[MAX_NAMES];
	const struct lits *l;
};

static const struct proj_value *ref_lookup(const struct ref_record *r, const char *name)
{
	for (size_t k = 0; k < r->l->nnames; k++)
		if (strcmp(r->l->name[k], name) == 0)
			return r->has[k] ? &r->v[k] : NULL;
	return NULL;
}

/* eval.h's semantics, written from its header comment. */
static bool ref_eval(const Expr *e, const struct ref_record *r)
{
	const struct proj_value *f;
	struct proj_value v;
	int cmp;
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		f = ref_lookup(r, e->compare->field);
		if (f == NULL)
			return false;
		v = ref_value(e->compare->value);
		switch (e->compare->op) {
		case WHIZBANG__V1__COMPARE_OP__EQ:
			return ref_equal(f, &v);
		case WHIZBANG__V1__COMPARE_OP__NE:
			return !ref_equal(f, &v);
		case WHIZBANG__V1__COMPARE_OP__LT:
			return ref_order(f, &v, &cmp) && cmp < 0;
		case WHIZBANG__V1__COMPARE_OP__LE:
			return ref_order(f, &v, &cmp) && cmp <= 0;
		case WHIZBANG__V1__COMPARE_OP__GT:
			return ref_order(f, &v, &cmp) && cmp > 0;
		default:
			return ref_order(f, &v, &cmp) && cmp >= 0;
		}
	case WHIZBANG__V1__EXPR__NODE_IN_LIST: {
		f = ref_lookup(r, e->in_list->field);
		if (f == NULL)
			return false;
		bool any = false;
		for (size_t k = 0; k < e->in_list->n_values; k++) {
			v = ref_value(e->in_list->values[k]);
			any = any || ref_equal(f, &v);
		}
		return e->in_list->negated ? !any : any;
	}
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		return ref_lookup(r, e->exists->field) != NULL;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH: {
		f = ref_lookup(r, e->starts_with->field);
		size_t n = strlen(e->starts_with->prefix);
		return f != NULL && f->type == PROJ_STRING && f->u.s.len >= n &&
		       memcmp(f->u.s.p, e->starts_with->prefix, n) == 0;
	}
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		for (size_t k = 0; k < e->all_of->n_terms; k++)
			if (!ref_eval(e->all_of->terms[k], r))
				return false;
		return true;
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		for (size_t k = 0; k < e->any_of->n_terms; k++)
			if (ref_eval(e->any_of->terms[k], r))
				return true;
		return false;
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		return !ref_eval(e->negate, r);
	default:
		abort(); /* proj_check_expr() let a node without a kind through */
	}
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A neighbour of v, its bytes (when it needs new ones) in arena. */
static struct proj_value neighbour(struct proj_value v, uint64_t pick, uint8_t *arena, size_t *used,
                                   size_t cap)
{
	switch (v.type) {
	case PROJ_INT:
		if (pick % 3 == 0 && v.u.i < INT64_MAX)
			v.u.i++;
		else if (pick % 3 == 1 && v.u.i > INT64_MIN)
			v.u.i--;
		else {
			v.type = PROJ_DOUBLE;
			v.u.d = (double)v.u.i;
		}
		break;
	case PROJ_DOUBLE:
		if (pick % 4 == 0)
			v.u.d = nextafter(v.u.d, INFINITY);
		else if (pick % 4 == 1)
			v.u.d = nextafter(v.u.d, -INFINITY);
		else if (pick % 4 == 2)
			v.u.d = -v.u.d;
		else if (v.u.d >= -9223372036854775808.0 && v.u.d < 9223372036854775808.0) {
			v.type = PROJ_INT;
			v.u.i = (int64_t)v.u.d;
		}
		if (isinf(v.u.d))
			v.u.d = v.u.d > 0 ? 1.7976931348623157e308 : -1.7976931348623157e308;
		break;
	case PROJ_STRING:
	case PROJ_BYTES:
		if (pick % 3 == 0 && v.u.s.len > 0) {
			v.u.s.len--;
		} else if (*used + v.u.s.len + 1 <= cap) {
			uint8_t *p = arena + *used;
			if (v.u.s.len > 0)
				memcpy(p, v.u.s.p, v.u.s.len);
			/* never NUL in a string: the wire cannot carry it */
			p[v.u.s.len] = (uint8_t)(pick % 3 == 1 ? 0x7F : 0x21 + (pick >> 8) % 90);
			if (v.type == PROJ_STRING && pick % 5 == 0)
				v.type = PROJ_BYTES;
			v.u.s.p = p;
			v.u.s.len++;
			*used += v.u.s.len;
		}
		break;
	case PROJ_BOOL:
		v.u.b = !v.u.b;
		break;
	default:
		v.type = PROJ_BOOL;
		v.u.b = pick % 2 == 0;
		break;
	}
	return v;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n == 0 ? 0 : memcmp(a, b, n);
	return c != 0 ? sign(c) : (alen > blen) - (alen < blen);
}

static uint8_t key_class(const struct proj_value *v)
{
	static const uint8_t tags[] = {
	        [PROJ_NULL] = PROJ_KEY_NULL,     [PROJ_BOOL] = PROJ_KEY_BOOL,
	        [PROJ_INT] = PROJ_KEY_NUMBER,    [PROJ_DOUBLE] = PROJ_KEY_NUMBER,
	        [PROJ_STRING] = PROJ_KEY_STRING, [PROJ_BYTES] = PROJ_KEY_BYTES,
	};
	return tags[v->type];
}

/* Whether v's index key holds all of it: text is cut at PROJ_KEY_TEXT_MAX
 * encoded bytes, a 0x00 taking two. */
static bool encoded_in_full(const struct proj_value *v)
{
	if (v->type != PROJ_STRING && v->type != PROJ_BYTES)
		return true;
	size_t n = v->u.s.len;
	for (size_t k = 0; k < v->u.s.len && n <= PROJ_KEY_TEXT_MAX; k++)
		n += v->u.s.p[k] == 0;
	return n <= PROJ_KEY_TEXT_MAX;
}

/* value.h against the reference for one pair: equality, order, and the
 * index keys (whose byte order is the values' order for values encoded in
 * full, and the classes' order across classes). */
static void check_pair(const struct proj_value *a, const struct proj_value *b, const char *text)
{
	int cmp = 0, ref_cmp = 0;
	bool ordered = proj_value_order(a, b, &cmp), ref_ordered = ref_order(a, b, &ref_cmp);
	if (proj_value_equal(a, b) != ref_equal(a, b))
		broken("proj_value_equal() disagrees with eval.h's semantics", text, NULL);
	if (ordered != ref_ordered || (ordered && sign(cmp) != ref_cmp))
		broken("proj_value_order() disagrees with eval.h's semantics", text, NULL);

	uint8_t ka[PROJ_KEY_MAX], kb[PROJ_KEY_MAX];
	size_t la = proj_key_encode(a, ka), lb = proj_key_encode(b, kb);
	if (la == 0 || la > PROJ_KEY_MAX || lb == 0 || lb > PROJ_KEY_MAX)
		broken("an index key has a bad length", text, NULL);
	if (proj_key_len(ka, la) != la || proj_key_tag(a) != key_class(a) || ka[0] != key_class(a))
		broken("an index key does not delimit itself or has the wrong tag", text, NULL);
	int kc = key_cmp(ka, la, kb, lb);
	bool full = encoded_in_full(a) && encoded_in_full(b);
	if (key_class(a) != key_class(b)) {
		if (kc != (key_class(a) > key_class(b) ? 1 : -1))
			broken("index keys of two classes are out of order", text, NULL);
	} else if (full && a->type != PROJ_NULL) {
		if (!ref_ordered || kc != ref_cmp)
			broken("index keys are not in the values' order", text, NULL);
	} else if (!full && kc != 0 && ref_ordered && ref_cmp != 0 && kc != ref_cmp) {
		/* Cut keys may tie, but never reverse the order. */
		broken("cut index keys reverse the values' order", text, NULL);
	} else if (a->type == PROJ_NULL && kc != 0) {
		broken("two null index keys differ", text, NULL);
	}
}

/* Builds NRECORDS records from the clause's literals and their neighbours
 * and compares proj_eval() with ref_eval() on each. */
static void check_eval(const Expr *e, const char *text, uint64_t seed)
{
	struct lits l;
	memset(&l, 0, sizeof(l));
	gather(e, &l);

	static uint8_t arena[16384];
	size_t used = 0;
	uint64_t rng = seed | 1;

	/* Every literal against every other and against a neighbour. */
	struct proj_value extra[MAX_LITS];
	for (size_t i = 0; i < l.nv; i++) {
		extra[i] = neighbour(l.v[i], next_rand(&rng), arena, &used, sizeof(arena));
		check_pair(&l.v[i], &extra[i], text);
		check_pair(&extra[i], &l.v[i], text);
		for (size_t j = 0; j < l.nv; j++)
			check_pair(&l.v[i], &l.v[j], text);
	}

	for (int n = 0; n < NRECORDS; n++) {
		struct ref_record ref;
		struct proj_field fields[MAX_NAMES];
		size_t nf = 0;
		memset(&ref, 0, sizeof(ref));
		ref.l = &l;
		for (size_t k = 0; k < l.nnames; k++) {
			uint64_t r = next_rand(&rng);
			/* a literal of this field, if it has one */
			size_t own = SIZE_MAX, seen = 0;
			for (size_t i = 0; i < l.nv; i++)
				if (l.of[i] == k && (r >> 16) % ++seen == 0)
					own = i;
			struct proj_value v;
			switch (r % 8) {
			case 0:
			case 1:
				continue; /* missing */
			case 2:
			case 3:
			case 4:
				if (own == SIZE_MAX)
					continue;
				v = l.v[own];
				break;
			case 5:
				if (own == SIZE_MAX)
					continue;
				v = extra[own];
				break;
			case 6:
				if (l.nv == 0)
					continue;
				v = l.v[(r >> 24) % l.nv];
				break;
			default:
				memset(&v, 0, sizeof(v));
				v.type = PROJ_NULL;
				break;
			}
			ref.has[k] = true;
			ref.v[k] = v;
			fields[nf].name = l.name[k];
			fields[nf].name_len = strlen(l.name[k]);
			fields[nf].v = v;
			nf++;
		}

		struct proj_buf buf = {0};
		struct proj_record rec;
		if (proj_record_encode(3, 1, 2, fields, nf, &buf) != 0 ||
		    proj_record_decode(buf.p, buf.len, &rec) != 0)
			broken("a record of valid fields does not encode and decode", text, NULL);
		if (rec.version != 3 || rec.created_seq != 1 || rec.updated_seq != 2 ||
		    rec.nfields != nf)
			broken("a record's header does not read back", text, NULL);
		for (size_t k = 0; k < l.nnames; k++) {
			struct proj_value got;
			bool found = proj_record_find(&rec, l.name[k], strlen(l.name[k]), &got);
			if (found != ref.has[k] || (found && !identical(&got, &ref.v[k])))
				broken("a record field does not read back", text, l.name[k]);
		}
		if (proj_eval(e, &rec) != ref_eval(e, &ref))
			broken("proj_eval() disagrees with eval.h's semantics", text, NULL);
		proj_buf_free(&buf);
	}
}

/* The evaluator's part for a parsed clause e1 and its canonical twin e2. */
static void check_semantics(const Expr *e1, const Expr *e2, const char *text, uint64_t seed)
{
	char m1[256], m2[256];
	int rc1 = proj_check_expr(e1, m1, sizeof(m1));
	int rc2 = proj_check_expr(e2, m2, sizeof(m2));
	if (rc1 != rc2)
		broken("the canonical clause and the original differ in proj_check_expr()", text,
		       rc1 != 0 ? m1 : m2);
	if (rc1 != 0) {
		if (rc1 != WB_INVALID_EXPRESSION)
			broken("proj_check_expr() failed with another code", text, m1);
		return;
	}
	check_eval(e1, text, seed);
}

/* ------------------------------------------------------------ where clauses */

static Expr *parse_where_ok(const char *text, const char *origin)
{
	Expr *e = NULL;
	struct optext_error err;
	int rc = optext_parse_where(text, &e, &err);
	if (rc != 0) {
		fprintf(stderr, "fuzz_where: %s\n", err.message);
		broken("a canonical clause does not parse", origin, text);
	}
	return e;
}

static void check_where(const char *text, size_t short_len, uint64_t seed)
{
	Expr *e1 = NULL;
	struct optext_error err;
	int rc = optext_parse_where(text, &e1, &err);
	if (rc != 0) {
		check_error(text, rc, &err);
		return;
	}
	char *f1 = format(format_expr, e1, short_len);
	Expr *e2 = parse_where_ok(f1, text);
	if (!same_message(&e1->base, &e2->base))
		broken("a clause's canonical text parses to a different tree", text, f1);
	char *f2 = format(format_expr, e2, short_len / 3);
	if (strcmp(f1, f2) != 0)
		broken("the canonical text of a clause is not a fixed point", f1, f2);
	check_semantics(e1, e2, text, seed);
	free(f2);
	free(f1);
	optext_free_expr(e2);
	optext_free_expr(e1);
}

/* ------------------------------------------------------------ operations */

static Where *where_of(Op *op)
{
	if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE)
		return op->update->where;
	if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE &&
	    op->delete_->target_case == WHIZBANG__V1__DELETE__TARGET_WHERE)
		return op->delete_->where;
	return NULL;
}

/* The Where keeps the clause as written; that text alone must parse to the
 * same tree. Then the text is replaced by the canonical clause, which is
 * what a parse of the formatted op holds, so that the packed ops compare. */
static void check_where_text(Op *op, size_t short_len)
{
	Where *w = where_of(op);
	if (w == NULL)
		return;
	if (w->expr == NULL || w->text == NULL)
		broken("a parsed Where lacks its tree or its text", w->text, NULL);
	Expr *e = NULL;
	struct optext_error err;
	if (optext_parse_where(w->text, &e, &err) != 0)
		broken("a Where's own text does not parse alone", w->text, err.message);
	if (!same_message(&w->expr->base, &e->base))
		broken("a Where's own text parses to a different tree", w->text, NULL);
	optext_free_expr(e);
	char *canon = format(format_expr, w->expr, short_len);
	free(w->text);
	w->text = canon;
}

static void check_ops(const char *text, size_t short_len)
{
	OpList *l1 = NULL;
	struct optext_error err;
	int rc = optext_parse_ops(text, &l1, &err);
	if (rc != 0) {
		check_error(text, rc, &err);
		return;
	}
	if (l1->n_ops == 0)
		broken("an op list parsed with no ops", text, NULL);

	/* All the ops, formatted, joined as one text. */
	char **f1 = xmalloc(l1->n_ops * sizeof(*f1));
	size_t total = 0;
	for (size_t k = 0; k < l1->n_ops; k++) {
		f1[k] = format(format_op, l1->ops[k], short_len + k);
		total += strlen(f1[k]) + 2;
	}
	char *joined = xmalloc(total + 1);
	size_t at = 0;
	for (size_t k = 0; k < l1->n_ops; k++) {
		size_t n = strlen(f1[k]);
		memcpy(joined + at, f1[k], n);
		at += n;
		if (k + 1 < l1->n_ops) {
			memcpy(joined + at, "; ", 2);
			at += 2;
		}
	}
	joined[at] = '\0';

	OpList *l2 = NULL;
	if (optext_parse_ops(joined, &l2, &err) != 0) {
		fprintf(stderr, "fuzz_where: %s\n", err.message);
		broken("canonical ops do not parse", text, joined);
	}
	if (l2->n_ops != l1->n_ops)
		broken("canonical ops parse to a different number of ops", text, joined);
	for (size_t k = 0; k < l1->n_ops; k++) {
		char *f2 = format(format_op, l2->ops[k], short_len / 2 + k);
		if (strcmp(f1[k], f2) != 0)
			broken("the canonical text of an op is not a fixed point", f1[k], f2);
		free(f2);
		check_where_text(l1->ops[k], short_len / 5);
		if (!same_message(&l1->ops[k]->base, &l2->ops[k]->base))
			broken("an op's canonical text parses to a different op", text, f1[k]);
	}

	for (size_t k = 0; k < l1->n_ops; k++)
		free(f1[k]);
	free(f1);
	free(joined);
	optext_free_ops(l2);
	optext_free_ops(l1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';

	/* The short-buffer length comes from the input, so the fuzzer steers
	 * it like everything else. */
	size_t short_len = 0;
	for (size_t k = 0; k < size; k++)
		short_len = short_len * 31 + data[k];

	check_where(text, short_len, (uint64_t)short_len * 0x9E3779B97F4A7C15ull);
	check_ops(text, short_len);
	free(text);
	return 0;
}
