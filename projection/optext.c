/* The text form of operations and where clauses (optext.h).
 *
 * A small lexer turns the text into tokens, one token ahead of a
 * recursive-descent parser, and remembers byte offsets so that every error
 * names the column where it was found. The parser builds the protobuf-c
 * messages the way protobuf-c's unpacker does: every message, array and
 * string comes from malloc, strings are NUL-terminated, unset strings keep
 * protobuf_c_empty_string, oneof cases are set. So the result is freed by
 * free_unpacked with a NULL allocator, and a half-built tree is too, which
 * is how every error path cleans up.
 *
 * The formatter writes the canonical form: lower-case keywords, one space
 * around operators, names backquoted only when they must be, strings
 * escaped, doubles in the shortest form that reads back to the same bits,
 * parentheses only where precedence needs them.
 *
 * Beyond what optext.h lists: bytes values are written x"0a0b" (hex, even
 * length); backquoted names take the string escapes plus \`; a string may
 * not hold U+0000 (protobuf-c strings are NUL-terminated) nor raw control
 * characters; \uD83D\uDE00 surrogate pairs combine; one trailing ';' is
 * accepted. Columns count characters (UTF-8 code points) from the start of
 * the text. Numbers are read and written with strtod and snprintf, which
 * assume the "C" numeric locale that a program has unless it calls
 * setlocale(). */
#include "optext.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "wb_error.h"

typedef Whizbang__V1__Value Value;
typedef Whizbang__V1__Field Field;
typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__ExprList ExprList;
typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__OpList OpList;

/* A test may define this to make the next allocation fail; in a program the
 * weak reference stays NULL. */
extern bool optext_test_alloc_fails(void) __attribute__((weak));

static void *xmalloc(size_t n)
{
	if (optext_test_alloc_fails != NULL && optext_test_alloc_fails())
		return NULL;
	return malloc(n);
}

static void *xrealloc(void *p, size_t n)
{
	if (optext_test_alloc_fails != NULL && optext_test_alloc_fails())
		return NULL;
	return realloc(p, n);
}

static char *xstrndup(const char *s, size_t n)
{
	char *d = xmalloc(n + 1);
	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* Frees a message built here, whole or half-built. */
static void msg_free(void *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
}

#define DEFINE_NEW(fn, type, init)                                                                 \
	static type *fn(void)                                                                      \
	{                                                                                          \
		type *m = xmalloc(sizeof(*m));                                                     \
		if (m != NULL)                                                                     \
			init(m);                                                                   \
		return m;                                                                          \
	}

DEFINE_NEW(value_new, Value, whizbang__v1__value__init)
DEFINE_NEW(field_new, Field, whizbang__v1__field__init)
DEFINE_NEW(compare_new, Whizbang__V1__Compare, whizbang__v1__compare__init)
DEFINE_NEW(in_list_new, Whizbang__V1__InList, whizbang__v1__in_list__init)
DEFINE_NEW(exists_new, Whizbang__V1__Exists, whizbang__v1__exists__init)
DEFINE_NEW(starts_with_new, Whizbang__V1__StartsWith, whizbang__v1__starts_with__init)
DEFINE_NEW(expr_list_new, ExprList, whizbang__v1__expr_list__init)
DEFINE_NEW(expr_new, Expr, whizbang__v1__expr__init)
DEFINE_NEW(where_new, Whizbang__V1__Where, whizbang__v1__where__init)
DEFINE_NEW(set_new, Whizbang__V1__SetAction, whizbang__v1__set_action__init)
DEFINE_NEW(increment_new, Whizbang__V1__IncrementAction, whizbang__v1__increment_action__init)
DEFINE_NEW(action_new, Whizbang__V1__Action, whizbang__v1__action__init)
DEFINE_NEW(upsert_new, Whizbang__V1__Upsert, whizbang__v1__upsert__init)
DEFINE_NEW(create_new, Whizbang__V1__CreateIfNone, whizbang__v1__create_if_none__init)
DEFINE_NEW(update_new, Whizbang__V1__Update, whizbang__v1__update__init)
DEFINE_NEW(delete_new, Whizbang__V1__Delete, whizbang__v1__delete__init)
DEFINE_NEW(op_new, Op, whizbang__v1__op__init)
DEFINE_NEW(op_list_new, OpList, whizbang__v1__op_list__init)
DEFINE_NEW(index_spec_new, Whizbang__V1__IndexSpec, whizbang__v1__index_spec__init)

/* Makes room for element n of a repeated field of n elements. Capacity is
 * implied by n (the next power of two), so the message needs no extra
 * member. Returns the array, moved or not, or NULL with arr untouched. */
static void *grow(void *arr, size_t n, size_t elem)
{
	if (n != 0 && (n & (n - 1)) != 0)
		return arr;
	size_t cap = n == 0 ? 1 : 2 * n;
	if (cap > SIZE_MAX / elem)
		return NULL;
	return xrealloc(arr, cap * elem);
}

/* ---------------------------------------------------------------- lexer */

enum keyword {
	KW_NONE,
	KW_UPSERT,
	KW_UPDATE,
	KW_DELETE,
	KW_MERGE,
	KW_WHERE,
	KW_SET,
	KW_UNSET,
	KW_INC,
	KW_BY,
	KW_CREATE,
	KW_AND,
	KW_OR,
	KW_NOT,
	KW_IN,
	KW_EXISTS,
	KW_STARTS_WITH,
	KW_TRUE,
	KW_FALSE,
	KW_NULL,
};

/* Every keyword is reserved everywhere, so a name that spells one must be
 * backquoted wherever it appears; that keeps the grammar free of context. */
static const char *const keywords[] = {
        [KW_UPSERT] = "upsert", [KW_UPDATE] = "update",
        [KW_DELETE] = "delete", [KW_MERGE] = "merge",
        [KW_WHERE] = "where",   [KW_SET] = "set",
        [KW_UNSET] = "unset",   [KW_INC] = "inc",
        [KW_BY] = "by",         [KW_CREATE] = "create",
        [KW_AND] = "and",       [KW_OR] = "or",
        [KW_NOT] = "not",       [KW_IN] = "in",
        [KW_EXISTS] = "exists", [KW_STARTS_WITH] = "starts_with",
        [KW_TRUE] = "true",     [KW_FALSE] = "false",
        [KW_NULL] = "null",
};
#define NKEYWORDS (sizeof(keywords) / sizeof(keywords[0]))

enum tok_kind {
	TOK_END,
	TOK_NAME,    /* a bare identifier that is not a keyword */
	TOK_QNAME,   /* a backquoted name */
	TOK_KEYWORD, /* tok.kw says which */
	TOK_STRING,
	TOK_BYTES,
	TOK_INT,
	TOK_DOUBLE,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_LBRACE,
	TOK_RBRACE,
	TOK_COMMA,
	TOK_COLON,
	TOK_SEMI,
	TOK_ASSIGN,
	TOK_EQ,
	TOK_NE,
	TOK_LT,
	TOK_LE,
	TOK_GT,
	TOK_GE,
};

struct token {
	enum tok_kind kind;
	enum keyword kw;
	size_t start, end; /* byte offsets of the token's source text */
	size_t vlen;       /* decoded length of a string, name or bytes */
	int64_t i;
	double d;
};

struct parser {
	const char *text;
	size_t len;
	size_t pos;       /* where the lexer goes on */
	struct token tok; /* the current token, not yet consumed */
	size_t prev_end;  /* end of the token consumed last */
	int depth;        /* open parentheses and nots */
	struct optext_error *err;
};

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_ident_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(int c)
{
	return is_ident_start(c) || is_digit(c) || c == '.' || c == '-';
}

static int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* The keyword s[0..n) spells, compared without regard to ASCII case. */
static enum keyword keyword_of(const char *s, size_t n)
{
	for (size_t k = 1; k < NKEYWORDS; k++) {
		const char *kw = keywords[k];
		size_t i = 0;
		while (i < n && kw[i] != '\0' && ascii_lower((unsigned char)s[i]) == kw[i])
			i++;
		if (i == n && kw[i] == '\0')
			return (enum keyword)k;
	}
	return KW_NONE;
}

/* The 1-based column of byte offset off: characters before it, plus one. */
static size_t column_of(const struct parser *p, size_t off)
{
	size_t col = 1;
	for (size_t i = 0; i < off && i < p->len; i++)
		if (((unsigned char)p->text[i] & 0xC0) != 0x80)
			col++;
	return col;
}

static int fail(struct parser *p, size_t off, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Fills the error with the column of text[off] and the message; returns
 * INVALID_EXPRESSION. */
static int fail(struct parser *p, size_t off, const char *fmt, ...)
{
	struct optext_error *e = p->err;
	e->column = column_of(p, off);
	int n = snprintf(e->message, sizeof(e->message), "column %zu: ", e->column);
	if (n > 0 && (size_t)n < sizeof(e->message)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->message + n, sizeof(e->message) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return WB_INVALID_EXPRESSION;
}

static int nomem(struct parser *p)
{
	fail(p, p->tok.start, "out of memory");
	return WB_E_NOMEM;
}

/* How much of the token's source text to quote in a message: all of it up
 * to a bound, cut at a character boundary. */
static int quote_len(const struct parser *p, const struct token *t)
{
	size_t n = t->end - t->start;
	if (n > 40) {
		n = 40;
		while (n > 0 && ((unsigned char)p->text[t->start + n] & 0xC0) == 0x80)
			n--;
	}
	return (int)n;
}

static size_t put_utf8(char *dst, uint32_t cp)
{
	if (cp < 0x80) {
		dst[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		dst[0] = (char)(0xC0 | (cp >> 6));
		dst[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		dst[0] = (char)(0xE0 | (cp >> 12));
		dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		dst[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	dst[0] = (char)(0xF0 | (cp >> 18));
	dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	dst[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static int hex4(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hex_val((unsigned char)s[k]);
		if (h < 0)
			return -1;
		v = v << 4 | (uint32_t)h;
	}
	*out = v;
	return 0;
}

/* Reads the escape whose backslash is at text[at] inside a literal closed
 * by quote: *cp receives the code point, *adv the bytes it spans. */
static int scan_escape(struct parser *p, size_t at, char quote, uint32_t *cp, size_t *adv)
{
	const char *s = p->text + at;
	unsigned char c = (unsigned char)s[1];
	*adv = 2;
	if (c == '\\' || c == (unsigned char)quote) {
		*cp = c;
		return 0;
	}
	if (c == 'n' || c == 't' || c == 'r') {
		*cp = c == 'n' ? '\n' : c == 't' ? '\t' : '\r';
		return 0;
	}
	if (c == 'u') {
		uint32_t v, lo;
		if (hex4(s + 2, &v) != 0)
			return fail(p, at, "invalid escape: \\u takes four hex digits");
		if (v == 0)
			return fail(p, at, "\\u0000 is not allowed in a %s",
			            quote == '"' ? "string" : "name");
		if (v >= 0xDC00 && v <= 0xDFFF)
			return fail(p, at,
			            "invalid escape: \\u%04" PRIX32 " is a lone low surrogate", v);
		if (v >= 0xD800 && v <= 0xDBFF) {
			if (s[6] != '\\' || s[7] != 'u' || hex4(s + 8, &lo) != 0 || lo < 0xDC00 ||
			    lo > 0xDFFF)
				return fail(p, at,
				            "invalid escape: \\u%04" PRIX32
				            " must be followed by a low surrogate \\uDC00-\\uDFFF",
				            v);
			v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
			*adv = 12;
		} else {
			*adv = 6;
		}
		*cp = v;
		return 0;
	}
	if (c >= 0x21 && c < 0x7F)
		return fail(p, at, "invalid escape '\\%c'", c);
	return fail(p, at, "invalid escape");
}

/* Scans the literal whose opening quote (" or `) is at text[open]: checks
 * the escapes, that the bytes are UTF-8 and that no raw control character
 * is inside. When dst is not NULL it receives the decoded bytes, which were
 * counted by an earlier call. *vlen receives the decoded length and *end the
 * offset past the closing quote. Validating and decoding share this code so
 * that they cannot disagree. */
static int scan_quoted(struct parser *p, size_t open, char *dst, size_t *vlen, size_t *end)
{
	const char *s = p->text;
	char quote = s[open];
	const char *what = quote == '"' ? "string" : "name";
	size_t i = open + 1, n = 0;
	for (;;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\0')
			return fail(p, open, "unterminated %s", what);
		if (c == (unsigned char)quote)
			break;
		if (c == '\\' && s[i + 1] == '\0')
			return fail(p, open, "unterminated %s", what);
		if (c == '\\') {
			uint32_t cp = 0;
			size_t adv = 0;
			int rc = scan_escape(p, i, quote, &cp, &adv);
			if (rc != 0)
				return rc;
			char tmp[4];
			size_t k = put_utf8(tmp, cp);
			if (dst != NULL)
				memcpy(dst + n, tmp, k);
			n += k;
			i += adv;
			continue;
		}
		if (c < 0x20 || c == 0x7F)
			return fail(p, i, "control character in a %s; write it as an escape", what);
		size_t k = 1;
		if (c >= 0x80) {
			k = utf8_seq((const unsigned char *)s + i, p->len - i);
			if (k == 0)
				return fail(p, i, "invalid UTF-8 in a %s", what);
		}
		if (dst != NULL)
			memcpy(dst + n, s + i, k);
		n += k;
		i += k;
	}
	*vlen = n;
	*end = i + 1;
	return 0;
}

/* Scans x"..." whose x is at text[open]. */
static int scan_bytes(struct parser *p, size_t open, size_t *vlen, size_t *end)
{
	const char *s = p->text;
	size_t i = open + 2;
	while (s[i] != '"') {
		if (s[i] == '\0')
			return fail(p, open, "unterminated bytes literal");
		if (hex_val((unsigned char)s[i]) < 0)
			return fail(p, i, "invalid hex digit in a bytes literal");
		i++;
	}
	size_t digits = i - (open + 2);
	if (digits % 2 != 0)
		return fail(p, i, "odd number of hex digits in a bytes literal");
	*vlen = digits / 2;
	*end = i + 1;
	return 0;
}

static int scan_number(struct parser *p, struct token *t)
{
	const char *s = p->text;
	size_t start = t->start, j = start;
	bool neg = s[j] == '-', is_double = false;
	if (neg) {
		j++;
		if (!is_digit((unsigned char)s[j]))
			return fail(p, start, "expected a digit after '-'");
	}
	size_t digits = j;
	while (is_digit((unsigned char)s[j]))
		j++;
	size_t digits_end = j;
	if (s[j] == '.') {
		j++;
		if (!is_digit((unsigned char)s[j]))
			return fail(p, j, "expected a digit after '.'");
		while (is_digit((unsigned char)s[j]))
			j++;
		is_double = true;
	}
	if (s[j] == 'e' || s[j] == 'E') {
		j++;
		if (s[j] == '+' || s[j] == '-')
			j++;
		if (!is_digit((unsigned char)s[j]))
			return fail(p, j, "expected a digit in the exponent");
		while (is_digit((unsigned char)s[j]))
			j++;
		is_double = true;
	}
	if (is_ident_start((unsigned char)s[j]) || s[j] == '.' || s[j] == '"' || s[j] == '`')
		return fail(p, start, "invalid number");
	t->end = j;
	if (is_double) {
		char *endp;
		double d = strtod(s + start, &endp);
		if (endp != s + j)
			return fail(p, start, "invalid number");
		/* A magnitude past DBL_MAX reads as infinity, a value like any
		 * other (it orders beyond every finite number); the formatter
		 * writes infinities as 1e999 and -1e999. */
		t->kind = TOK_DOUBLE;
		t->d = d;
		return 0;
	}
	/* The magnitude of INT64_MIN is one more than INT64_MAX. */
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, mag = 0;
	for (size_t k = digits; k < digits_end; k++) {
		uint64_t dgt = (uint64_t)(s[k] - '0');
		if (mag > (limit - dgt) / 10)
			return fail(p, start, "integer out of range (int64)");
		mag = mag * 10 + dgt;
	}
	t->kind = TOK_INT;
	if (!neg)
		t->i = (int64_t)mag;
	else if (mag == (uint64_t)INT64_MAX + 1)
		t->i = INT64_MIN;
	else
		t->i = -(int64_t)mag;
	return 0;
}

/* Reads the token at p->pos into p->tok. */
static int lex(struct parser *p)
{
	const char *s = p->text;
	size_t i = p->pos;
	while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
		i++;
	struct token *t = &p->tok;
	memset(t, 0, sizeof(*t));
	t->start = i;
	t->end = i + 1;
	unsigned char c = (unsigned char)s[i];
	int rc = 0;
	switch (c) {
	case '\0':
		t->kind = TOK_END;
		t->end = i;
		break;
	case '(':
		t->kind = TOK_LPAREN;
		break;
	case ')':
		t->kind = TOK_RPAREN;
		break;
	case '{':
		t->kind = TOK_LBRACE;
		break;
	case '}':
		t->kind = TOK_RBRACE;
		break;
	case ',':
		t->kind = TOK_COMMA;
		break;
	case ':':
		t->kind = TOK_COLON;
		break;
	case ';':
		t->kind = TOK_SEMI;
		break;
	case '=':
		t->kind = s[i + 1] == '=' ? TOK_EQ : TOK_ASSIGN;
		break;
	case '!':
		if (s[i + 1] != '=')
			return fail(p, i, "unexpected '!'; write '!=' or 'not'");
		t->kind = TOK_NE;
		break;
	case '<':
		t->kind = s[i + 1] == '=' ? TOK_LE : TOK_LT;
		break;
	case '>':
		t->kind = s[i + 1] == '=' ? TOK_GE : TOK_GT;
		break;
	case '"':
		t->kind = TOK_STRING;
		rc = scan_quoted(p, i, NULL, &t->vlen, &t->end);
		break;
	case '`':
		t->kind = TOK_QNAME;
		rc = scan_quoted(p, i, NULL, &t->vlen, &t->end);
		break;
	default:
		if ((c == 'x' || c == 'X') && s[i + 1] == '"') {
			t->kind = TOK_BYTES;
			rc = scan_bytes(p, i, &t->vlen, &t->end);
		} else if (is_ident_start(c)) {
			size_t j = i + 1;
			while (is_ident_char((unsigned char)s[j]))
				j++;
			t->end = j;
			t->kw = keyword_of(s + i, j - i);
			t->kind = t->kw == KW_NONE ? TOK_NAME : TOK_KEYWORD;
		} else if (is_digit(c) || c == '-') {
			rc = scan_number(p, t);
		} else if (c >= 0x21 && c < 0x7F) {
			return fail(p, i, "unexpected character '%c'", c);
		} else {
			uint32_t cp;
			if (c >= 0x80 &&
			    utf8_decode((const unsigned char *)s + i, p->len - i, &cp) > 0)
				return fail(p, i, "unexpected character U+%04" PRIX32, cp);
			return fail(p, i, "unexpected byte 0x%02X", c);
		}
		break;
	}
	if (rc != 0)
		return rc;
	if ((t->kind == TOK_EQ || t->kind == TOK_NE || t->kind == TOK_LE || t->kind == TOK_GE))
		t->end = i + 2;
	p->pos = t->end;
	return 0;
}

/* Consumes the current token and reads the next. */
static int advance(struct parser *p)
{
	p->prev_end = p->tok.end;
	return lex(p);
}

static bool at_kw(const struct parser *p, enum keyword kw)
{
	return p->tok.kind == TOK_KEYWORD && p->tok.kw == kw;
}

/* Fails where one of some keywords was expected. A bare word there is most
 * likely a misspelt keyword, and saying so helps more than "expected". */
static int fail_keyword(struct parser *p, const char *what)
{
	const struct token *t = &p->tok;
	if (t->kind == TOK_NAME)
		return fail(p, t->start, "unknown keyword '%.*s'; expected %s", quote_len(p, t),
		            p->text + t->start, what);
	return fail(p, t->start, "expected %s", what);
}

/* ---------------------------------------------------------------- parser */

/* Decodes the current string or backquoted-name token into a new string. */
static int decode_quoted(struct parser *p, char **out)
{
	char *d = xmalloc(p->tok.vlen + 1);
	if (d == NULL)
		return nomem(p);
	size_t vlen, end;
	int rc = scan_quoted(p, p->tok.start, d, &vlen, &end);
	if (rc != 0) {
		free(d); /* cannot happen: the lexer accepted this token */
		return rc;
	}
	d[vlen] = '\0';
	*out = d;
	return 0;
}

/* Fails where a name was expected but the current token is not one. A
 * keyword or a double-quoted string there is a likely slip, and the message
 * says how to write the name instead. */
static int fail_name(struct parser *p, const char *what)
{
	const struct token *t = &p->tok;
	if (t->kind == TOK_KEYWORD)
		return fail(p, t->start,
		            "expected %s; '%.*s' is a keyword, write `%.*s` to use it as a name",
		            what, quote_len(p, t), p->text + t->start, quote_len(p, t),
		            p->text + t->start);
	if (t->kind == TOK_STRING)
		return fail(p, t->start,
		            "expected %s; names are bare or in `backquotes`, not in \"quotes\"",
		            what);
	return fail(p, t->start, "expected %s", what);
}

/* Takes a name (bare or backquoted) into a new string. */
static int take_name(struct parser *p, char **out, const char *what)
{
	const struct token *t = &p->tok;
	char *name = NULL;
	int rc;
	if (t->kind == TOK_NAME) {
		name = xstrndup(p->text + t->start, t->end - t->start);
		rc = name == NULL ? nomem(p) : 0;
	} else if (t->kind == TOK_QNAME) {
		rc = decode_quoted(p, &name);
	} else {
		return fail_name(p, what);
	}
	if (rc == 0)
		rc = advance(p);
	if (rc != 0) {
		free(name);
		return rc;
	}
	*out = name;
	return 0;
}

/* Takes a string literal into a new string. */
static int take_string(struct parser *p, char **out, const char *what)
{
	if (p->tok.kind != TOK_STRING)
		return fail(p, p->tok.start, "expected %s", what);
	char *s;
	int rc = decode_quoted(p, &s);
	if (rc != 0)
		return rc;
	rc = advance(p);
	if (rc != 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static int take_value(struct parser *p, Value **out, const char *what)
{
	const struct token *t = &p->tok;
	Value *v = value_new();
	if (v == NULL)
		return nomem(p);
	int rc = 0;
	switch (t->kind) {
	case TOK_STRING:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
		rc = decode_quoted(p, &v->string_value);
		break;
	case TOK_INT:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
		v->int_value = t->i;
		break;
	case TOK_DOUBLE:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
		v->double_value = t->d;
		break;
	case TOK_BYTES:
		v->kind_case = WHIZBANG__V1__VALUE__KIND_BYTES_VALUE;
		if (t->vlen > 0) {
			uint8_t *b = xmalloc(t->vlen);
			if (b == NULL) {
				rc = nomem(p);
				break;
			}
			const char *h = p->text + t->start + 2;
			for (size_t k = 0; k < t->vlen; k++)
				b[k] = (uint8_t)(hex_val((unsigned char)h[2 * k]) << 4 |
				                 hex_val((unsigned char)h[2 * k + 1]));
			v->bytes_value.data = b;
			v->bytes_value.len = t->vlen;
		}
		break;
	case TOK_KEYWORD:
		if (t->kw == KW_TRUE || t->kw == KW_FALSE) {
			v->kind_case = WHIZBANG__V1__VALUE__KIND_BOOL_VALUE;
			v->bool_value = t->kw == KW_TRUE;
			break;
		}
		if (t->kw == KW_NULL) {
			v->kind_case = WHIZBANG__V1__VALUE__KIND_NULL_VALUE;
			v->null_value = 1;
			break;
		}
		rc = fail(p, t->start, "expected %s", what);
		break;
	default:
		rc = fail(p, t->start, "expected %s", what);
		break;
	}
	if (rc == 0)
		rc = advance(p);
	if (rc != 0) {
		msg_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

static int enter(struct parser *p, size_t at)
{
	if (p->depth >= OPTEXT_MAX_DEPTH)
		return fail(p, at, "nested deeper than %d levels of parentheses and 'not'",
		            OPTEXT_MAX_DEPTH);
	p->depth++;
	return 0;
}

static int parse_or(struct parser *p, Expr **out);

/* Wraps a finished node into a new Expr; frees node on failure. */
static int wrap(struct parser *p, Expr **out, Whizbang__V1__Expr__NodeCase kind, void *node)
{
	Expr *e = expr_new();
	if (e == NULL) {
		msg_free(node);
		return nomem(p);
	}
	e->node_case = kind;
	switch (kind) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		e->compare = node;
		break;
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		e->in_list = node;
		break;
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		e->exists = node;
		break;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		e->starts_with = node;
		break;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		e->all_of = node;
		break;
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		e->any_of = node;
		break;
	default:
		e->negate = node;
		break;
	}
	*out = e;
	return 0;
}

/* field in (v, ...) and field not in (...), the field already taken. */
static int parse_in(struct parser *p, Whizbang__V1__InList *in)
{
	if (p->tok.kind != TOK_LPAREN)
		return fail(p, p->tok.start, "expected '(' after '%s'",
		            in->negated ? "not in" : "in");
	size_t open = p->tok.start;
	int rc = advance(p);
	if (rc != 0)
		return rc;
	if (p->tok.kind == TOK_RPAREN)
		return advance(p);
	const char *what = "a value or ')' after '('";
	for (;;) {
		Value *v;
		rc = take_value(p, &v, what);
		if (rc != 0)
			return rc;
		Value **vals = grow(in->values, in->n_values, sizeof(*vals));
		if (vals == NULL) {
			msg_free(v);
			return nomem(p);
		}
		in->values = vals;
		in->values[in->n_values++] = v;
		if (p->tok.kind == TOK_RPAREN)
			return advance(p);
		if (p->tok.kind != TOK_COMMA)
			return fail(p, p->tok.start,
			            "expected ',' or ')' to close '(' at column %zu",
			            column_of(p, open));
		rc = advance(p);
		if (rc != 0)
			return rc;
		what = "a value after ','";
	}
}

static const struct {
	enum tok_kind tok;
	const char *text;
	Whizbang__V1__CompareOp op;
} comparisons[] = {
        {TOK_EQ, "==", WHIZBANG__V1__COMPARE_OP__EQ}, {TOK_NE, "!=", WHIZBANG__V1__COMPARE_OP__NE},
        {TOK_LT, "<", WHIZBANG__V1__COMPARE_OP__LT},  {TOK_LE, "<=", WHIZBANG__V1__COMPARE_OP__LE},
        {TOK_GT, ">", WHIZBANG__V1__COMPARE_OP__GT},  {TOK_GE, ">=", WHIZBANG__V1__COMPARE_OP__GE},
};
#define NCOMPARISONS (sizeof(comparisons) / sizeof(comparisons[0]))

/* A condition that starts with a field name: a comparison or an in list. */
static int parse_condition(struct parser *p, Expr **out)
{
	char *field;
	int rc = take_name(p, &field, "a field name");
	if (rc != 0)
		return rc;
	for (size_t k = 0; k < NCOMPARISONS; k++) {
		if (p->tok.kind != comparisons[k].tok)
			continue;
		Whizbang__V1__Compare *c = compare_new();
		if (c == NULL) {
			free(field);
			return nomem(p);
		}
		c->field = field;
		c->op = comparisons[k].op;
		char what[32];
		snprintf(what, sizeof(what), "a value after '%s'", comparisons[k].text);
		rc = advance(p);
		if (rc == 0)
			rc = take_value(p, &c->value, what);
		if (rc != 0) {
			msg_free(c);
			return rc;
		}
		return wrap(p, out, WHIZBANG__V1__EXPR__NODE_COMPARE, c);
	}
	if (at_kw(p, KW_IN) || at_kw(p, KW_NOT)) {
		Whizbang__V1__InList *in = in_list_new();
		if (in == NULL) {
			free(field);
			return nomem(p);
		}
		in->field = field;
		in->negated = at_kw(p, KW_NOT);
		rc = advance(p);
		if (rc == 0 && in->negated) {
			if (!at_kw(p, KW_IN))
				rc = fail(p, p->tok.start, "expected 'in' after 'not'");
			else
				rc = advance(p);
		}
		if (rc == 0)
			rc = parse_in(p, in);
		if (rc != 0) {
			msg_free(in);
			return rc;
		}
		return wrap(p, out, WHIZBANG__V1__EXPR__NODE_IN_LIST, in);
	}
	free(field);
	if (p->tok.kind == TOK_ASSIGN)
		return fail(p, p->tok.start, "'=' assigns; write '==' to compare");
	return fail(p, p->tok.start,
	            "expected a comparison ('==', '!=', '<', '<=', '>', '>='), 'in' or 'not in' "
	            "after the field name");
}

/* exists(f) and starts_with(f, "p"), the keyword being current. */
static int parse_function(struct parser *p, Expr **out)
{
	bool exists = at_kw(p, KW_EXISTS);
	const char *fn = exists ? "exists" : "starts_with";
	int rc = advance(p);
	if (rc != 0)
		return rc;
	if (p->tok.kind != TOK_LPAREN)
		return fail(p, p->tok.start, "expected '(' after '%s'", fn);
	size_t open = p->tok.start;
	rc = advance(p);
	if (rc != 0)
		return rc;
	char what[40];
	snprintf(what, sizeof(what), "a field name after '%s('", fn);
	char *field;
	rc = take_name(p, &field, what);
	if (rc != 0)
		return rc;
	void *node;
	if (exists) {
		Whizbang__V1__Exists *x = exists_new();
		if (x == NULL) {
			free(field);
			return nomem(p);
		}
		x->field = field;
		node = x;
	} else {
		Whizbang__V1__StartsWith *sw = starts_with_new();
		if (sw == NULL) {
			free(field);
			return nomem(p);
		}
		sw->field = field;
		node = sw;
		if (p->tok.kind != TOK_COMMA)
			rc = fail(p, p->tok.start,
			          "expected ',' and a prefix after the field name");
		else
			rc = advance(p);
		if (rc == 0)
			rc = take_string(p, &sw->prefix, "a string prefix after ','");
	}
	if (rc == 0 && p->tok.kind != TOK_RPAREN)
		rc = fail(p, p->tok.start, "expected ')' to close '(' at column %zu",
		          column_of(p, open));
	if (rc == 0)
		rc = advance(p);
	if (rc != 0) {
		msg_free(node);
		return rc;
	}
	return wrap(p, out,
	            exists ? WHIZBANG__V1__EXPR__NODE_EXISTS : WHIZBANG__V1__EXPR__NODE_STARTS_WITH,
	            node);
}

static int parse_primary(struct parser *p, Expr **out)
{
	const struct token *t = &p->tok;
	if (t->kind == TOK_LPAREN) {
		size_t open = t->start;
		int rc = enter(p, open);
		if (rc == 0)
			rc = advance(p);
		Expr *e = NULL;
		if (rc == 0)
			rc = parse_or(p, &e);
		if (rc == 0 && p->tok.kind != TOK_RPAREN)
			rc = fail(p, p->tok.start, "expected ')' to close '(' at column %zu",
			          column_of(p, open));
		if (rc == 0)
			rc = advance(p);
		if (rc != 0) {
			msg_free(e);
			return rc;
		}
		p->depth--;
		*out = e;
		return 0;
	}
	if (at_kw(p, KW_EXISTS) || at_kw(p, KW_STARTS_WITH))
		return parse_function(p, out);
	if (t->kind == TOK_NAME || t->kind == TOK_QNAME)
		return parse_condition(p, out);
	const char *what = "a condition: a field name, 'not', 'exists', 'starts_with' or '('";
	if ((t->kind == TOK_KEYWORD && !at_kw(p, KW_AND) && !at_kw(p, KW_OR)) ||
	    t->kind == TOK_STRING)
		return fail_name(p, what);
	return fail(p, t->start, "expected %s", what);
}

static int parse_not(struct parser *p, Expr **out)
{
	if (!at_kw(p, KW_NOT))
		return parse_primary(p, out);
	int rc = enter(p, p->tok.start);
	if (rc == 0)
		rc = advance(p);
	Expr *inner;
	if (rc == 0)
		rc = parse_not(p, &inner);
	if (rc != 0)
		return rc;
	p->depth--;
	return wrap(p, out, WHIZBANG__V1__EXPR__NODE_NEGATE, inner);
}

static int parse_and(struct parser *p, Expr **out);

/* A chain of terms joined by kw (and, or), flattened into one list; a
 * parenthesized chain inside stays a term of its own, so the tree keeps the
 * shape that was written. */
static int parse_chain(struct parser *p, enum keyword kw, Expr **out)
{
	int (*term)(struct parser *, Expr **) = kw == KW_OR ? parse_and : parse_not;
	Expr *first;
	int rc = term(p, &first);
	if (rc != 0)
		return rc;
	if (!at_kw(p, kw)) {
		*out = first;
		return 0;
	}
	ExprList *list = expr_list_new();
	if (list == NULL) {
		msg_free(first);
		return nomem(p);
	}
	Expr *e;
	rc = wrap(p, &e,
	          kw == KW_OR ? WHIZBANG__V1__EXPR__NODE_ANY_OF : WHIZBANG__V1__EXPR__NODE_ALL_OF,
	          list);
	if (rc != 0) {
		msg_free(first);
		return rc;
	}
	Expr *next = first;
	for (;;) {
		Expr **terms = grow(list->terms, list->n_terms, sizeof(*terms));
		if (terms == NULL) {
			msg_free(next);
			rc = nomem(p);
			break;
		}
		list->terms = terms;
		list->terms[list->n_terms++] = next;
		if (!at_kw(p, kw))
			break;
		rc = advance(p);
		if (rc == 0)
			rc = term(p, &next);
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		msg_free(e);
		return rc;
	}
	*out = e;
	return 0;
}

static int parse_and(struct parser *p, Expr **out)
{
	return parse_chain(p, KW_AND, out);
}

static int parse_or(struct parser *p, Expr **out)
{
	return parse_chain(p, KW_OR, out);
}

/* The levels of a clause tree, counted as the server counts them
 * (proj_check_expr(): every Expr node is one). */
static int tree_depth(const Expr *e)
{
	int d = 0;
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		for (size_t i = 0; i < e->all_of->n_terms; i++) {
			int t = tree_depth(e->all_of->terms[i]);
			d = t > d ? t : d;
		}
		break;
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		for (size_t i = 0; i < e->any_of->n_terms; i++) {
			int t = tree_depth(e->any_of->terms[i]);
			d = t > d ? t : d;
		}
		break;
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		d = tree_depth(e->negate);
		break;
	default:
		break;
	}
	return d + 1;
}

/* parse_or() for a whole clause starting at start: the tree must also fit
 * the server's nesting limit, which counts the and/or nodes that
 * parentheses do not show. */
static int parse_clause(struct parser *p, size_t start, Expr **out)
{
	int rc = parse_or(p, out);
	if (rc == 0 && tree_depth(*out) > OPTEXT_MAX_DEPTH) {
		msg_free(*out);
		*out = NULL;
		return fail(p, start, "the clause nests deeper than %d levels", OPTEXT_MAX_DEPTH);
	}
	return rc;
}

/* A where clause into a new Where holding the tree and the exact text. */
static int parse_where_clause(struct parser *p, Whizbang__V1__Where **out)
{
	Whizbang__V1__Where *w = where_new();
	if (w == NULL)
		return nomem(p);
	size_t start = p->tok.start;
	int rc = parse_clause(p, start, &w->expr);
	if (rc == 0) {
		w->text = xstrndup(p->text + start, p->prev_end - start);
		if (w->text == NULL) {
			w->text = (char *)protobuf_c_empty_string;
			rc = nomem(p);
		}
	}
	if (rc != 0) {
		msg_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

/* {name: value, ...} appended to a repeated Field. */
static int parse_fields(struct parser *p, Field ***fields, size_t *n, const char *what)
{
	if (p->tok.kind != TOK_LBRACE)
		return fail_keyword(p, what);
	size_t open = p->tok.start;
	int rc = advance(p);
	if (rc != 0)
		return rc;
	if (p->tok.kind == TOK_RBRACE)
		return advance(p);
	const char *name_what = "a field name or '}' after '{'";
	for (;;) {
		Field **arr = grow(*fields, *n, sizeof(*arr));
		Field *f = arr == NULL ? NULL : field_new();
		if (arr != NULL)
			*fields = arr;
		if (f == NULL)
			return nomem(p);
		arr[(*n)++] = f;
		struct token name_tok = p->tok;
		rc = take_name(p, &f->name, name_what);
		if (rc != 0)
			return rc;
		for (size_t k = 0; k + 1 < *n; k++)
			if (strcmp(arr[k]->name, f->name) == 0)
				return fail(p, name_tok.start, "field '%.*s' is given twice",
				            quote_len(p, &name_tok), p->text + name_tok.start);
		if (p->tok.kind != TOK_COLON)
			return fail(p, p->tok.start, "expected ':' after the field name");
		rc = advance(p);
		if (rc == 0)
			rc = take_value(p, &f->value, "a value after ':'");
		if (rc != 0)
			return rc;
		if (p->tok.kind == TOK_RBRACE)
			return advance(p);
		if (p->tok.kind != TOK_COMMA)
			return fail(p, p->tok.start,
			            "expected ',' or '}' to close '{' at column %zu",
			            column_of(p, open));
		rc = advance(p);
		if (rc != 0)
			return rc;
		name_what = "a field name after ','";
	}
}

static int parse_upsert(struct parser *p, Op *op)
{
	Whizbang__V1__Upsert *u = upsert_new();
	if (u == NULL)
		return nomem(p);
	op->kind_case = WHIZBANG__V1__OP__KIND_UPSERT;
	op->upsert = u;
	int rc = advance(p);
	if (rc == 0)
		rc = take_name(p, &u->type, "a type name after 'upsert'");
	if (rc == 0)
		rc = take_string(p, &u->id, "a quoted id after the type name");
	if (rc == 0 && at_kw(p, KW_MERGE)) {
		u->merge = 1;
		rc = advance(p);
		if (rc == 0)
			rc = parse_fields(p, &u->fields, &u->n_fields, "'{' after 'merge'");
		return rc;
	}
	if (rc == 0)
		rc = parse_fields(p, &u->fields, &u->n_fields, "'{' or 'merge' after the id");
	return rc;
}

static int parse_action(struct parser *p, Whizbang__V1__Update *u)
{
	Whizbang__V1__Action **arr = grow(u->actions, u->n_actions, sizeof(*arr));
	if (arr == NULL)
		return nomem(p);
	u->actions = arr;
	Whizbang__V1__Action *a = action_new();
	if (a == NULL)
		return nomem(p);
	arr[u->n_actions++] = a;
	enum keyword kw = p->tok.kw;
	int rc = advance(p);
	if (rc != 0)
		return rc;
	if (kw == KW_UNSET) {
		char *field;
		rc = take_name(p, &field, "a field name after 'unset'");
		if (rc == 0) {
			a->kind_case = WHIZBANG__V1__ACTION__KIND_UNSET;
			a->unset = field;
		}
		return rc;
	}
	if (kw == KW_SET) {
		Whizbang__V1__SetAction *s = set_new();
		if (s == NULL)
			return nomem(p);
		a->kind_case = WHIZBANG__V1__ACTION__KIND_SET;
		a->set = s;
		rc = take_name(p, &s->field, "a field name after 'set'");
		if (rc == 0 && p->tok.kind != TOK_ASSIGN)
			rc = fail(p, p->tok.start, "expected '=' after the field name");
		if (rc == 0)
			rc = advance(p);
		if (rc == 0)
			rc = take_value(p, &s->value, "a value after '='");
		return rc;
	}
	Whizbang__V1__IncrementAction *inc = increment_new();
	if (inc == NULL)
		return nomem(p);
	a->kind_case = WHIZBANG__V1__ACTION__KIND_INCREMENT;
	a->increment = inc;
	rc = take_name(p, &inc->field, "a field name after 'inc'");
	if (rc == 0 && !at_kw(p, KW_BY))
		rc = fail_keyword(p, "'by' after the field name");
	if (rc == 0)
		rc = advance(p);
	if (rc == 0 && p->tok.kind != TOK_INT && p->tok.kind != TOK_DOUBLE)
		rc = fail(p, p->tok.start, "expected a number after 'by'");
	if (rc == 0)
		rc = take_value(p, &inc->by, "a number after 'by'");
	return rc;
}

static bool at_action(const struct parser *p)
{
	return at_kw(p, KW_SET) || at_kw(p, KW_UNSET) || at_kw(p, KW_INC);
}

static int parse_update(struct parser *p, Op *op, const char **follow)
{
	Whizbang__V1__Update *u = update_new();
	if (u == NULL)
		return nomem(p);
	op->kind_case = WHIZBANG__V1__OP__KIND_UPDATE;
	op->update = u;
	int rc = advance(p);
	if (rc == 0)
		rc = take_name(p, &u->type, "a type name after 'update'");
	if (rc == 0 && !at_kw(p, KW_WHERE))
		rc = fail_keyword(p, "'where' after the type name");
	if (rc == 0)
		rc = advance(p);
	if (rc == 0)
		rc = parse_where_clause(p, &u->where);
	if (rc == 0 && !at_action(p))
		rc = fail_keyword(p, "'and', 'or', 'set', 'unset' or 'inc'");
	while (rc == 0) {
		rc = parse_action(p, u);
		if (rc != 0 || p->tok.kind != TOK_COMMA)
			break;
		rc = advance(p);
		if (rc == 0 && !at_action(p))
			rc = fail_keyword(p, "'set', 'unset' or 'inc' after ','");
	}
	*follow = "',', 'create', ';' or the end of the input";
	if (rc != 0 || !at_kw(p, KW_CREATE))
		return rc;
	Whizbang__V1__CreateIfNone *c = create_new();
	if (c == NULL)
		return nomem(p);
	u->create_if_none = c;
	*follow = "';' or the end of the input";
	rc = advance(p);
	if (rc == 0)
		rc = take_string(p, &c->id, "a quoted id after 'create'");
	if (rc == 0)
		rc = parse_fields(p, &c->fields, &c->n_fields, "'{' after the id");
	return rc;
}

static int parse_delete(struct parser *p, Op *op)
{
	Whizbang__V1__Delete *d = delete_new();
	if (d == NULL)
		return nomem(p);
	op->kind_case = WHIZBANG__V1__OP__KIND_DELETE;
	op->delete_ = d;
	int rc = advance(p);
	if (rc == 0)
		rc = take_name(p, &d->type, "a type name after 'delete'");
	if (rc != 0)
		return rc;
	if (p->tok.kind == TOK_STRING) {
		char *id;
		rc = take_string(p, &id, "a quoted id");
		if (rc == 0) {
			d->target_case = WHIZBANG__V1__DELETE__TARGET_ID;
			d->id = id;
		}
		return rc;
	}
	if (!at_kw(p, KW_WHERE))
		return fail_keyword(p, "a quoted id or 'where' after the type name");
	Whizbang__V1__Where *w;
	rc = advance(p);
	if (rc == 0)
		rc = parse_where_clause(p, &w);
	if (rc == 0) {
		d->target_case = WHIZBANG__V1__DELETE__TARGET_WHERE;
		d->where = w;
	}
	return rc;
}

/* The bare word w (any ASCII case) is current. `drop` and `index` are words
 * of the index operations only, recognised where they stand there, not
 * keywords: fields named index or drop are common and stay bare names. */
static bool at_word(const struct parser *p, const char *w)
{
	const struct token *t = &p->tok;
	size_t n = t->end - t->start;
	if (t->kind != TOK_NAME || strlen(w) != n)
		return false;
	for (size_t k = 0; k < n; k++)
		if (ascii_lower((unsigned char)p->text[t->start + k]) != w[k])
			return false;
	return true;
}

/* create index TYPE FIELD and drop index TYPE FIELD, the verb current. */
static int parse_index(struct parser *p, Op *op, bool create)
{
	Whizbang__V1__IndexSpec *x = index_spec_new();
	if (x == NULL)
		return nomem(p);
	if (create) {
		op->kind_case = WHIZBANG__V1__OP__KIND_CREATE_INDEX;
		op->create_index = x;
	} else {
		op->kind_case = WHIZBANG__V1__OP__KIND_DROP_INDEX;
		op->drop_index = x;
	}
	int rc = advance(p);
	if (rc == 0 && !at_word(p, "index"))
		rc = fail_keyword(p, create ? "'index' after 'create'" : "'index' after 'drop'");
	if (rc == 0)
		rc = advance(p);
	if (rc == 0)
		rc = take_name(p, &x->type, "a type name after 'index'");
	if (rc == 0)
		rc = take_name(p, &x->field, "a field name after the type name");
	return rc;
}

#define OPERATIONS "'upsert', 'update', 'delete', 'create index' or 'drop index'"

static int parse_op_list(struct parser *p, OpList *list)
{
	int rc;
	for (;;) {
		const char *follow = "';' or the end of the input";
		bool drop = at_word(p, "drop");
		if (!drop && (p->tok.kind != TOK_KEYWORD ||
		              (p->tok.kw != KW_UPSERT && p->tok.kw != KW_UPDATE &&
		               p->tok.kw != KW_DELETE && p->tok.kw != KW_CREATE))) {
			if (p->tok.kind == TOK_NAME)
				return fail(p, p->tok.start,
				            "unknown operation '%.*s'; expected " OPERATIONS,
				            quote_len(p, &p->tok), p->text + p->tok.start);
			return fail(p, p->tok.start, "expected an operation: " OPERATIONS);
		}
		Op **ops = grow(list->ops, list->n_ops, sizeof(*ops));
		if (ops == NULL)
			return nomem(p);
		list->ops = ops;
		Op *op = op_new();
		if (op == NULL)
			return nomem(p);
		ops[list->n_ops++] = op;
		if (drop)
			rc = parse_index(p, op, false);
		else if (p->tok.kw == KW_CREATE)
			rc = parse_index(p, op, true);
		else if (p->tok.kw == KW_UPSERT)
			rc = parse_upsert(p, op);
		else if (p->tok.kw == KW_UPDATE)
			rc = parse_update(p, op, &follow);
		else
			rc = parse_delete(p, op);
		if (rc != 0)
			return rc;
		if (p->tok.kind == TOK_END)
			return 0;
		if (p->tok.kind != TOK_SEMI)
			return fail_keyword(p, follow);
		rc = advance(p);
		if (rc != 0)
			return rc;
		if (p->tok.kind == TOK_END)
			return 0;
	}
}

static int parser_init(struct parser *p, const char *text, struct optext_error *err)
{
	memset(p, 0, sizeof(*p));
	p->text = text;
	p->len = strlen(text);
	p->err = err;
	return lex(p);
}

int optext_parse_ops(const char *text, Whizbang__V1__OpList **out, struct optext_error *err)
{
	struct optext_error scratch;
	struct parser p;
	if (err == NULL)
		err = &scratch;
	if (text == NULL || out == NULL)
		return WB_E_INVAL;
	int rc = parser_init(&p, text, err);
	if (rc != 0)
		return rc;
	OpList *list = op_list_new();
	if (list == NULL)
		return nomem(&p);
	rc = parse_op_list(&p, list);
	if (rc != 0) {
		msg_free(list);
		return rc;
	}
	*out = list;
	return 0;
}

int optext_parse_where(const char *text, Whizbang__V1__Expr **out, struct optext_error *err)
{
	struct optext_error scratch;
	struct parser p;
	if (err == NULL)
		err = &scratch;
	if (text == NULL || out == NULL)
		return WB_E_INVAL;
	int rc = parser_init(&p, text, err);
	if (rc != 0)
		return rc;
	Expr *e;
	rc = parse_clause(&p, p.tok.start, &e);
	if (rc != 0)
		return rc;
	if (p.tok.kind != TOK_END) {
		msg_free(e);
		return fail_keyword(&p, "'and', 'or' or the end of the clause");
	}
	*out = e;
	return 0;
}

void optext_free_ops(Whizbang__V1__OpList *ops)
{
	if (ops != NULL)
		whizbang__v1__op_list__free_unpacked(ops, NULL);
}

void optext_free_expr(Whizbang__V1__Expr *expr)
{
	if (expr != NULL)
		whizbang__v1__expr__free_unpacked(expr, NULL);
}

/* ---------------------------------------------------------------- formatter */

struct out {
	char *buf;
	size_t len;
	size_t n; /* the length of the full text so far */
};

static void put(struct out *o, const char *s, size_t k)
{
	if (o->len > 0 && o->n < o->len - 1) {
		size_t room = o->len - 1 - o->n;
		memcpy(o->buf + o->n, s, k < room ? k : room);
	}
	o->n += k;
}

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* NUL-terminates, ending a text that did not fit with "..." cut at a
 * character boundary; returns the length of the full text. */
static size_t finish(struct out *o)
{
	if (o->len == 0)
		return o->n;
	if (o->n < o->len) {
		o->buf[o->n] = '\0';
		return o->n;
	}
	size_t shown = o->len - 1, keep = shown >= 3 ? shown - 3 : 0;
	while (keep > 0 && ((unsigned char)o->buf[keep] & 0xC0) == 0x80)
		keep--;
	size_t dots = shown - keep < 3 ? shown - keep : 3;
	memcpy(o->buf + keep, "...", dots);
	o->buf[keep + dots] = '\0';
	return o->n;
}

static void put_quoted(struct out *o, const char *s, char quote)
{
	put(o, &quote, 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		if (c == (unsigned char)quote || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(o, esc, 2);
		} else if (c == '\n') {
			put_str(o, "\\n");
		} else if (c == '\t') {
			put_str(o, "\\t");
		} else if (c == '\r') {
			put_str(o, "\\r");
		} else if (c < 0x20 || c == 0x7F) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put_str(o, esc);
		} else {
			put(o, (const char *)&c, 1);
		}
	}
	put(o, &quote, 1);
}

static bool is_bare_name(const char *s)
{
	if (!is_ident_start((unsigned char)s[0]))
		return false;
	size_t n = 1;
	while (is_ident_char((unsigned char)s[n]))
		n++;
	return s[n] == '\0' && keyword_of(s, n) == KW_NONE;
}

static void put_name(struct out *o, const char *s)
{
	if (s == NULL)
		s = "";
	if (is_bare_name(s))
		put_str(o, s);
	else
		put_quoted(o, s, '`');
}

static void put_string(struct out *o, const char *s)
{
	put_quoted(o, s == NULL ? "" : s, '"');
}

/* The shortest of %.15g..%.17g that reads back as the same double, with
 * ".0" added when it would otherwise read back as an integer. */
static void put_double(struct out *o, double d)
{
	if (isnan(d)) {
		put_str(o, "nan");
		return;
	}
	if (isinf(d)) {
		put_str(o, d < 0 ? "-1e999" : "1e999");
		return;
	}
	char tmp[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	if (strpbrk(tmp, ".eE") == NULL)
		strcat(tmp, ".0");
	put_str(o, tmp);
}

static void put_value(struct out *o, const Value *v)
{
	char tmp[32];
	switch (v == NULL ? WHIZBANG__V1__VALUE__KIND__NOT_SET : v->kind_case) {
	case WHIZBANG__V1__VALUE__KIND_STRING_VALUE:
		put_string(o, v->string_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_INT_VALUE:
		snprintf(tmp, sizeof(tmp), "%" PRId64, v->int_value);
		put_str(o, tmp);
		break;
	case WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE:
		put_double(o, v->double_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_BOOL_VALUE:
		put_str(o, v->bool_value ? "true" : "false");
		break;
	case WHIZBANG__V1__VALUE__KIND_BYTES_VALUE:
		put_str(o, "x\"");
		for (size_t k = 0; k < v->bytes_value.len; k++) {
			snprintf(tmp, sizeof(tmp), "%02x", v->bytes_value.data[k]);
			put(o, tmp, 2);
		}
		put_str(o, "\"");
		break;
	default:
		/* null_value, and a value that holds nothing, which means null. */
		put_str(o, "null");
		break;
	}
}

static void put_fields(struct out *o, Field *const *fields, size_t n)
{
	put_str(o, "{");
	for (size_t k = 0; k < n; k++) {
		if (k > 0)
			put_str(o, ", ");
		put_name(o, fields[k]->name);
		put_str(o, ": ");
		put_value(o, fields[k]->value);
	}
	put_str(o, "}");
}

enum prec { PREC_TOP, PREC_OR, PREC_AND, PREC_NOT, PREC_ATOM };

static enum prec prec_of(const Expr *e)
{
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		return PREC_OR;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		return PREC_AND;
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		return PREC_NOT;
	default:
		return PREC_ATOM;
	}
}

/* The node e holds, NULL when none: every member of the union is a pointer
 * to a message. */
static const void *node_of(const Expr *e)
{
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		return e->compare;
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		return e->in_list;
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		return e->exists;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		return e->starts_with;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
		return e->all_of;
	case WHIZBANG__V1__EXPR__NODE_ANY_OF:
		return e->any_of;
	case WHIZBANG__V1__EXPR__NODE_NEGATE:
		return e->negate;
	default:
		return NULL;
	}
}

static const char *comparison_text(Whizbang__V1__CompareOp op)
{
	for (size_t k = 0; k < NCOMPARISONS; k++)
		if (comparisons[k].op == op)
			return comparisons[k].text;
	return "?";
}

/* Writes e, in parentheses when it binds more loosely than its place
 * requires (min). Trees the parser never builds have no exact text: a list
 * of one term comes out as that term in parentheses (which reads back as
 * the term alone), an empty list or a missing node as "()" (which does not
 * read back at all). */
static void put_expr(struct out *o, const Expr *e, enum prec min)
{
	if (e == NULL || node_of(e) == NULL) {
		put_str(o, "()");
		return;
	}
	if (prec_of(e) < min) {
		put_str(o, "(");
		put_expr(o, e, PREC_TOP);
		put_str(o, ")");
		return;
	}
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		put_name(o, e->compare->field);
		put_str(o, " ");
		put_str(o, comparison_text(e->compare->op));
		put_str(o, " ");
		put_value(o, e->compare->value);
		break;
	case WHIZBANG__V1__EXPR__NODE_IN_LIST: {
		const Whizbang__V1__InList *in = e->in_list;
		put_name(o, in->field);
		put_str(o, in->negated ? " not in (" : " in (");
		for (size_t k = 0; k < in->n_values; k++) {
			if (k > 0)
				put_str(o, ", ");
			put_value(o, in->values[k]);
		}
		put_str(o, ")");
		break;
	}
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		put_str(o, "exists(");
		put_name(o, e->exists->field);
		put_str(o, ")");
		break;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		put_str(o, "starts_with(");
		put_name(o, e->starts_with->field);
		put_str(o, ", ");
		put_string(o, e->starts_with->prefix);
		put_str(o, ")");
		break;
	case WHIZBANG__V1__EXPR__NODE_ALL_OF:
	case WHIZBANG__V1__EXPR__NODE_ANY_OF: {
		bool all = e->node_case == WHIZBANG__V1__EXPR__NODE_ALL_OF;
		const ExprList *l = all ? e->all_of : e->any_of;
		if (l->n_terms < 2) {
			put_str(o, "(");
			if (l->n_terms == 1)
				put_expr(o, l->terms[0], PREC_TOP);
			put_str(o, ")");
			break;
		}
		/* A nested list of the same kind keeps its parentheses, so the
		 * tree reads back with the same shape. */
		for (size_t k = 0; k < l->n_terms; k++) {
			if (k > 0)
				put_str(o, all ? " and " : " or ");
			put_expr(o, l->terms[k], all ? PREC_NOT : PREC_AND);
		}
		break;
	}
	default:
		put_str(o, "not ");
		put_expr(o, e->negate, PREC_NOT);
		break;
	}
}

/* The tree when there is one; otherwise the text it was written as. */
static void put_where(struct out *o, const Whizbang__V1__Where *w)
{
	if (w != NULL && w->expr == NULL && w->text != NULL && w->text[0] != '\0')
		put_str(o, w->text);
	else
		put_expr(o, w == NULL ? NULL : w->expr, PREC_TOP);
}

static void put_action(struct out *o, const Whizbang__V1__Action *a)
{
	if (a->kind_case == WHIZBANG__V1__ACTION__KIND_SET && a->set != NULL) {
		put_str(o, "set ");
		put_name(o, a->set->field);
		put_str(o, " = ");
		put_value(o, a->set->value);
	} else if (a->kind_case == WHIZBANG__V1__ACTION__KIND_UNSET) {
		put_str(o, "unset ");
		put_name(o, a->unset);
	} else if (a->kind_case == WHIZBANG__V1__ACTION__KIND_INCREMENT && a->increment != NULL) {
		put_str(o, "inc ");
		put_name(o, a->increment->field);
		put_str(o, " by ");
		put_value(o, a->increment->by);
	}
}

static void put_upsert(struct out *o, const Whizbang__V1__Upsert *u)
{
	put_str(o, "upsert ");
	put_name(o, u->type);
	put_str(o, " ");
	put_string(o, u->id);
	put_str(o, u->merge ? " merge " : " ");
	put_fields(o, u->fields, u->n_fields);
}

static void put_update(struct out *o, const Whizbang__V1__Update *u)
{
	put_str(o, "update ");
	put_name(o, u->type);
	put_str(o, " where ");
	put_where(o, u->where);
	for (size_t k = 0; k < u->n_actions; k++) {
		put_str(o, k == 0 ? " " : ", ");
		put_action(o, u->actions[k]);
	}
	if (u->create_if_none != NULL) {
		put_str(o, " create ");
		put_string(o, u->create_if_none->id);
		put_str(o, " ");
		put_fields(o, u->create_if_none->fields, u->create_if_none->n_fields);
	}
}

static void put_delete(struct out *o, const Whizbang__V1__Delete *d)
{
	put_str(o, "delete ");
	put_name(o, d->type);
	if (d->target_case == WHIZBANG__V1__DELETE__TARGET_ID) {
		put_str(o, " ");
		put_string(o, d->id);
	} else {
		put_str(o, " where ");
		put_where(o,
		          d->target_case == WHIZBANG__V1__DELETE__TARGET_WHERE ? d->where : NULL);
	}
}

static void put_index(struct out *o, const char *verb, const Whizbang__V1__IndexSpec *x)
{
	put_str(o, verb);
	put_str(o, " index ");
	put_name(o, x->type);
	put_str(o, " ");
	put_name(o, x->field);
}

size_t optext_format_op(const Whizbang__V1__Op *op, char *buf, size_t len)
{
	struct out o = {buf, len, 0};
	switch (op == NULL ? WHIZBANG__V1__OP__KIND__NOT_SET : op->kind_case) {
	case WHIZBANG__V1__OP__KIND_UPSERT:
		if (op->upsert != NULL)
			put_upsert(&o, op->upsert);
		break;
	case WHIZBANG__V1__OP__KIND_UPDATE:
		if (op->update != NULL)
			put_update(&o, op->update);
		break;
	case WHIZBANG__V1__OP__KIND_DELETE:
		if (op->delete_ != NULL)
			put_delete(&o, op->delete_);
		break;
	case WHIZBANG__V1__OP__KIND_CREATE_INDEX:
		if (op->create_index != NULL)
			put_index(&o, "create", op->create_index);
		break;
	case WHIZBANG__V1__OP__KIND_DROP_INDEX:
		if (op->drop_index != NULL)
			put_index(&o, "drop", op->drop_index);
		break;
	default:
		break;
	}
	return finish(&o);
}

size_t optext_format_expr(const Whizbang__V1__Expr *expr, char *buf, size_t len)
{
	struct out o = {buf, len, 0};
	put_expr(&o, expr, PREC_TOP);
	return finish(&o);
}

size_t optext_format_value(const Whizbang__V1__Value *v, char *buf, size_t len)
{
	struct out o = {buf, len, 0};
	put_value(&o, v);
	return finish(&o);
}

/* ---------------------------------------------------------------- explosions */

const char *optext_strategy_name(Whizbang__V1__PlanStrategy s)
{
	switch (s) {
	case WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN:
		return "scan";
	case WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX:
		return "index";
	case WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX_UNION:
		return "index union";
	case WHIZBANG__V1__PLAN_STRATEGY__PLAN_ID:
		return "id";
	default:
		return "unknown";
	}
}

void optext_ids_init(struct optext_ids *it, const Whizbang__V1__Explosion *x)
{
	memset(it, 0, sizeof(*it));
	if (x != NULL) {
		it->p = x->ids.data;
		it->len = x->ids.data != NULL ? x->ids.len : 0;
		it->count = x->count;
	}
}

/* Each id is checked against the one before it: the shared prefix must
 * exist, and the ids must ascend strictly, as the server writes them. A
 * list whose length disagrees with count is malformed too, so a reader
 * never shows a part of a list as if it were the whole. */
int optext_ids_next(struct optext_ids *it)
{
	if (it->bad)
		return -1;
	if (it->pos == it->len) {
		if (it->seen != it->count) {
			it->bad = true;
			return -1;
		}
		return 0;
	}
	if (it->len - it->pos < 2 || it->seen == it->count)
		goto bad;
	size_t shared = it->p[it->pos], rest = it->p[it->pos + 1];
	const uint8_t *r = it->p + it->pos + 2;
	if (it->len - it->pos - 2 < rest || shared > it->id_len || (it->seen == 0 && shared != 0))
		goto bad;
	if (it->seen > 0) {
		/* new = prev[0..shared) + rest must sort after prev. */
		size_t tail = it->id_len - shared, m = rest < tail ? rest : tail;
		int cmp = memcmp(r, it->id + shared, m);
		if (cmp < 0 || (cmp == 0 && rest <= tail))
			goto bad;
	}
	memcpy(it->id + shared, r, rest);
	it->id_len = shared + rest;
	it->id[it->id_len] = '\0';
	it->pos += 2 + rest;
	it->seen++;
	return 1;
bad:
	it->bad = true;
	return -1;
}

/* An id bare when that cannot be misread in a list (printable, no space,
 * quote, backslash, comma or bracket), else quoted with escapes; bytes that
 * are not UTF-8 are written \xNN. */
static void put_id(struct out *o, const char *s, size_t n)
{
	bool bare = n > 0;
	for (size_t i = 0; bare && i < n;) {
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		if (k == 0 || cp <= 0x20 || (cp >= 0x7F && cp < 0xA0) || c == '"' || c == '\\' ||
		    c == ',' || c == '[' || c == ']')
			bare = false;
		i += k == 0 ? 1 : k;
	}
	if (bare) {
		put(o, s, n);
		return;
	}
	put_str(o, "\"");
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		char esc[12];
		if (k == 0) {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			put_str(o, esc);
			i++;
			continue;
		}
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(o, esc, 2);
		} else if (cp == '\n') {
			put_str(o, "\\n");
		} else if (cp == '\t') {
			put_str(o, "\\t");
		} else if (cp == '\r') {
			put_str(o, "\\r");
		} else if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) {
			snprintf(esc, sizeof(esc), "\\u%04" PRIx32, cp);
			put_str(o, esc);
		} else {
			put(o, s + i, k);
		}
		i += k;
	}
	put_str(o, "\"");
}

static void put_u64(struct out *o, uint64_t v)
{
	char tmp[24];
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	put_str(o, tmp);
}

size_t optext_format_explosion(const Whizbang__V1__Explosion *x, size_t max_ids, char *buf,
                               size_t len)
{
	struct out o = {buf, len, 0};
	if (x == NULL)
		return finish(&o);
	struct optext_ids it;
	optext_ids_init(&it, x);
	int rc;
	while ((rc = optext_ids_next(&it)) > 0)
		;
	bool corrupt = rc < 0;
	if (x->created) {
		put_str(&o, "created");
	} else if (x->count == 0) {
		put_str(&o, "no-op");
	} else {
		put_str(&o, "matched ");
		put_u64(&o, x->count);
	}
	if (corrupt) {
		put_str(&o, " <corrupt id list>");
	} else if (x->count > 0 && max_ids > 0) {
		optext_ids_init(&it, x);
		put_str(&o, " [");
		for (size_t k = 0; k < max_ids && optext_ids_next(&it) > 0; k++) {
			if (k > 0)
				put_str(&o, ", ");
			put_id(&o, it.id, it.id_len);
		}
		if (x->count > max_ids) {
			put_str(&o, ", … ");
			put_u64(&o, x->count - max_ids);
			put_str(&o, " more");
		}
		put_str(&o, "]");
	}
	const char *plan =
	        x->plan != NULL && x->plan[0] != '\0' ? x->plan : optext_strategy_name(x->strategy);
	if (x->count > 0 && !x->created) {
		put_str(&o, " via ");
		put_str(&o, plan);
		put_str(&o, " (examined ");
	} else {
		put_str(&o, " (matched 0, ");
		put_str(&o, plan);
		put_str(&o, ", examined ");
	}
	put_u64(&o, x->examined);
	if (x->micros > 0) { /* entries stored before log-first durability */
		put_str(&o, ", ");
		put_u64(&o, x->micros);
		put_str(&o, " µs");
	}
	put_str(&o, ")");
	return finish(&o);
}
