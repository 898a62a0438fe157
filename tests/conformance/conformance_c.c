/* The conformance runner of the C client library (client/wb.h, wb_url.h):
 * drives libwhizbang through every case of the data files that run.py
 * prepared in $WB_CONF_DATA and prints what it saw, one JSON line per case,
 * for run.py to judge (tests/conformance/README.md). It checks nothing
 * itself: the expectations are judged once for every client.
 *
 * The data files are read with the small JSON reader below (the tree has
 * no JSON library); the results are written with the printer below it. A
 * call that fails with a code of the server is reported as the client
 * reports it (code, name, wb_errmsg(), and wb_actual_version() after
 * WRONG_EXPECTED_VERSION); a local failure (the connection lost, a
 * timeout) as a crash, which fails the case. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wb.h"
#include "wb_url.h"

/* ---------------------------------------------------------------- reading JSON */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct json {
	enum jtype type;
	bool b;
	double num;
	int64_t i; /* num, exactly, when it is an integer */
	char *s;   /* J_STR */
	/* J_ARR and J_OBJ: n items, keys[i] for objects. */
	size_t n;
	struct json **items;
	char **keys;
};

struct reader {
	const char *p;
	const char *err;
};

static void json_free(struct json *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n; i++) {
		json_free(j->items[i]);
		if (j->keys != NULL)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->s);
	free(j);
}

static void skip_ws(struct reader *r)
{
	while (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t')
		r->p++;
}

static void put_bytes(char **out, size_t *len, size_t *cap, const char *b, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*cap + n + 1) * 2;
		*out = realloc(*out, *cap);
		if (*out == NULL)
			abort();
	}
	memcpy(*out + *len, b, n);
	*len += n;
}

static void put_utf8(char **out, size_t *len, size_t *cap, uint32_t cp)
{
	char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (char)(0xF0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	put_bytes(out, len, cap, b, n);
}

static int hex4(const char *p, uint32_t *v)
{
	*v = 0;
	for (int k = 0; k < 4; k++) {
		char c = p[k];
		int d = c >= '0' && c <= '9'   ? c - '0'
		        : c >= 'a' && c <= 'f' ? c - 'a' + 10
		        : c >= 'A' && c <= 'F' ? c - 'A' + 10
		                               : -1;
		if (d < 0)
			return -1;
		*v = *v * 16 + (uint32_t)d;
	}
	return 0;
}

static char *parse_string(struct reader *r)
{
	size_t len = 0, cap = 16;
	char *out = malloc(cap);
	if (out == NULL)
		abort();
	r->p++; /* the opening quote */
	while (*r->p != '"') {
		uint32_t cp;
		if (*r->p == '\0') {
			r->err = "a string does not end";
			free(out);
			return NULL;
		}
		if (*r->p != '\\') {
			put_bytes(&out, &len, &cap, r->p, 1); /* UTF-8 as it is */
			r->p++;
			continue;
		}
		r->p++;
		switch (*r->p) {
		case 'n': cp = '\n'; break;
		case 't': cp = '\t'; break;
		case 'r': cp = '\r'; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'u':
			if (hex4(r->p + 1, &cp) != 0) {
				r->err = "a bad \\u escape";
				free(out);
				return NULL;
			}
			r->p += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && r->p[1] == '\\' && r->p[2] == 'u') {
				uint32_t lo;
				if (hex4(r->p + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					r->p += 6;
				}
			}
			break;
		default: cp = (uint8_t)*r->p; break;
		}
		r->p++;
		put_utf8(&out, &len, &cap, cp);
	}
	r->p++;
	out[len] = '\0';
	return out;
}

static struct json *parse_value(struct reader *r, int depth);

static struct json *parse_items(struct reader *r, int depth, bool object)
{
	struct json *j = calloc(1, sizeof(*j));
	if (j == NULL)
		abort();
	j->type = object ? J_OBJ : J_ARR;
	char close = object ? '}' : ']';
	r->p++;
	skip_ws(r);
	if (*r->p == close) {
		r->p++;
		return j;
	}
	for (;;) {
		char *key = NULL;
		skip_ws(r);
		if (object) {
			if (*r->p != '"' || (key = parse_string(r)) == NULL) {
				r->err = r->err ? r->err : "an object key is not a string";
				json_free(j);
				return NULL;
			}
			skip_ws(r);
			if (*r->p++ != ':') {
				r->err = "no ':' after a key";
				free(key);
				json_free(j);
				return NULL;
			}
		}
		struct json *v = parse_value(r, depth + 1);
		if (v == NULL) {
			free(key);
			json_free(j);
			return NULL;
		}
		j->items = realloc(j->items, (j->n + 1) * sizeof(*j->items));
		if (object)
			j->keys = realloc(j->keys, (j->n + 1) * sizeof(*j->keys));
		if (j->items == NULL || (object && j->keys == NULL))
			abort();
		j->items[j->n] = v;
		if (object)
			j->keys[j->n] = key;
		j->n++;
		skip_ws(r);
		if (*r->p == ',') {
			r->p++;
			continue;
		}
		if (*r->p == close) {
			r->p++;
			return j;
		}
		r->err = "no ',' or end after an item";
		json_free(j);
		return NULL;
	}
}

static struct json *parse_value(struct reader *r, int depth)
{
	if (depth > 64) {
		r->err = "nested too deep";
		return NULL;
	}
	skip_ws(r);
	if (*r->p == '{' || *r->p == '[')
		return parse_items(r, depth, *r->p == '{');
	struct json *j = calloc(1, sizeof(*j));
	if (j == NULL)
		abort();
	if (*r->p == '"') {
		j->type = J_STR;
		if ((j->s = parse_string(r)) == NULL) {
			free(j);
			return NULL;
		}
	} else if (strncmp(r->p, "true", 4) == 0 || strncmp(r->p, "false", 5) == 0) {
		j->type = J_BOOL;
		j->b = r->p[0] == 't';
		r->p += j->b ? 4 : 5;
	} else if (strncmp(r->p, "null", 4) == 0) {
		j->type = J_NULL;
		r->p += 4;
	} else {
		char *end;
		errno = 0;
		j->type = J_NUM;
		j->num = strtod(r->p, &end);
		if (end == r->p) {
			r->err = "an unexpected character";
			free(j);
			return NULL;
		}
		j->i = strtoll(r->p, NULL, 10);
		r->p = end;
	}
	return j;
}

static struct json *load(const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", getenv("WB_CONF_DATA"), name);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
		exit(2);
	}
	size_t cap = 1 << 16, len = 0;
	char *text = malloc(cap);
	size_t got;
	while (text != NULL && (got = fread(text + len, 1, cap - len - 1, f)) > 0) {
		len += got;
		if (len + 1 == cap)
			text = realloc(text, cap *= 2);
	}
	fclose(f);
	if (text == NULL)
		abort();
	text[len] = '\0';
	struct reader r = {.p = text, .err = NULL};
	struct json *j = parse_value(&r, 0);
	if (j == NULL) {
		fprintf(stderr, "%s: %s at offset %td\n", path, r.err, r.p - text);
		exit(2);
	}
	free(text);
	return j;
}

static const struct json *get(const struct json *j, const char *key)
{
	if (j == NULL || j->type != J_OBJ)
		return NULL;
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->keys[i], key) == 0)
			return j->items[i];
	return NULL;
}

static const char *str(const struct json *j, const char *key, const char *dflt)
{
	const struct json *v = get(j, key);
	return v != NULL && v->type == J_STR ? v->s : dflt;
}

static int64_t num(const struct json *j, const char *key, int64_t dflt)
{
	const struct json *v = get(j, key);
	return v != NULL && v->type == J_NUM ? v->i : dflt;
}

static bool flag(const struct json *j, const char *key)
{
	const struct json *v = get(j, key);
	return v != NULL && v->type == J_BOOL && v->b;
}

/* ---------------------------------------------------------------- writing results */

/* One result object being written: fields are added with out_*() and the
 * line is printed by emit(). */
struct out {
	char *buf;
	size_t len, cap;
	bool first; /* no field yet at the current level */
};

static void out_raw(struct out *o, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		o->cap = (o->cap + (size_t)n + 64) * 2;
		if ((o->buf = realloc(o->buf, o->cap)) == NULL)
			abort();
	}
}

static void out_escaped(struct out *o, const char *s, size_t n)
{
	out_raw(o, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			out_raw(o, "\\%c", c);
		else if (c < 0x20)
			out_raw(o, "\\u%04x", c);
		else
			out_raw(o, "%c", c);
	}
	out_raw(o, "\"");
}

static void out_key(struct out *o, const char *key)
{
	if (!o->first)
		out_raw(o, ",");
	o->first = false;
	if (key != NULL) {
		out_escaped(o, key, strlen(key));
		out_raw(o, ":");
	}
}

static void out_open(struct out *o, const char *key, char brace)
{
	out_key(o, key);
	out_raw(o, "%c", brace);
	o->first = true;
}

static void out_close(struct out *o, char brace)
{
	out_raw(o, "%c", brace);
	o->first = false;
}

static void out_str(struct out *o, const char *key, const char *s)
{
	out_key(o, key);
	out_escaped(o, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

static void out_u64(struct out *o, const char *key, uint64_t v)
{
	out_key(o, key);
	out_raw(o, "%" PRIu64, v);
}

static void out_i64(struct out *o, const char *key, int64_t v)
{
	out_key(o, key);
	out_raw(o, "%" PRId64, v);
}

static void out_bool(struct out *o, const char *key, bool v)
{
	out_key(o, key);
	out_raw(o, v ? "true" : "false");
}

static void out_begin(struct out *o)
{
	o->len = 0;
	o->first = true;
	out_raw(o, "{");
}

static void emit(struct out *o, const char *section, const char *id)
{
	out_raw(o, "}");
	struct out line = {0};
	out_begin(&line);
	out_str(&line, "section", section);
	out_str(&line, "id", id);
	out_key(&line, "result");
	out_raw(&line, "%.*s}\n", (int)o->len, o->buf);
	fwrite(line.buf, 1, line.len, stdout);
	fflush(stdout);
	free(line.buf);
}

static void out_value(struct out *o, const char *key, const Whizbang__V1__Value *v)
{
	out_key(o, key);
	switch (v != NULL ? v->kind_case : WHIZBANG__V1__VALUE__KIND_NULL_VALUE) {
	case WHIZBANG__V1__VALUE__KIND_STRING_VALUE:
		o->first = true;
		out_str(o, NULL, v->string_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_INT_VALUE: out_raw(o, "%" PRId64, v->int_value); break;
	case WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE: out_raw(o, "%.17g", v->double_value); break;
	case WHIZBANG__V1__VALUE__KIND_BOOL_VALUE:
		out_raw(o, v->bool_value ? "true" : "false");
		break;
	case WHIZBANG__V1__VALUE__KIND_BYTES_VALUE:
		out_raw(o, "\"x\\\"");
		for (size_t i = 0; i < v->bytes_value.len; i++)
			out_raw(o, "%02x", v->bytes_value.data[i]);
		out_raw(o, "\\\"\"");
		break;
	default: out_raw(o, "null"); break;
	}
	o->first = false;
}

static void out_fields(struct out *o, const char *key, const Whizbang__V1__Entity *e)
{
	out_open(o, key, '{');
	for (size_t i = 0; i < e->n_fields; i++)
		out_value(o, e->fields[i]->name, e->fields[i]->value);
	out_close(o, '}');
}

/* ---------------------------------------------------------------- the sections */

static void url_cases(struct out *o)
{
	struct json *d = load("url_cases.json");
	const struct json *cases = get(d, "cases");
	for (size_t i = 0; cases != NULL && i < cases->n; i++) {
		const char *url = str(cases->items[i], "url", "");
		struct wb_url u;
		char why[512];
		out_begin(o);
		if (wb_url_parse(&u, url, why, sizeof(why)) != 0) {
			out_str(o, "refused", why);
		} else {
			out_open(o, "ok", '{');
			out_str(o, "user", u.user);
			out_str(o, "address", u.address);
			out_bool(o, "unix", u.unix_socket);
			out_bool(o, "tls", u.tls);
			out_str(o, "tls_ca_file", u.tls_ca_file);
			out_str(o, "tls_cert_file", u.tls_cert_file);
			out_str(o, "tls_key_file", u.tls_key_file);
			out_str(o, "tls_server_name", u.tls_server_name);
			out_bool(o, "external", u.external);
			out_close(o, '}');
		}
		emit(o, "url", url);
	}
	json_free(d);
}

static void codes(struct out *o)
{
	struct json *d = load("error_cases.json");
	const struct json *table = get(d, "codes");
	out_begin(o);
	for (size_t i = 0; table != NULL && i < table->n; i++) {
		char key[16];
		int code = (int)num(table->items[i], "code", -1);
		snprintf(key, sizeof(key), "%d", code);
		out_str(o, key, wb_error_name(code));
	}
	emit(o, "codes", "names");
	out_begin(o);
	out_str(o, "unobservable_case",
	        "C has no error types: a call returns the code, named by wb_error_name()");
	emit(o, "codes", "typed");
	json_free(d);
}

/* The address wb_connect() takes for a whizbang:// URL. */
static int address_of(const char *url, struct wb_url *u)
{
	char why[256];
	if (wb_url_parse(u, url, why, sizeof(why)) != 0) {
		fprintf(stderr, "%s: %s\n", url, why);
		return -1;
	}
	return 0;
}

static void framing(struct out *o)
{
	struct json *d = load("framing_cases.json");
	struct json *urls;
	{
		struct reader r = {.p = getenv("WB_CONF_FRAMING"), .err = NULL};
		urls = r.p != NULL ? parse_value(&r, 0) : NULL;
		if (urls == NULL) {
			fprintf(stderr, "WB_CONF_FRAMING is not JSON\n");
			exit(2);
		}
	}
	const struct json *cases = get(d, "cases");
	for (size_t i = 0; cases != NULL && i < cases->n; i++) {
		const char *id = str(cases->items[i], "id", "");
		struct wb_url u;
		out_begin(o);
		if (address_of(str(urls, id, ""), &u) != 0) {
			out_str(o, "outcome", "no fake server");
			emit(o, "framing", id);
			continue;
		}
		/* max_response 0: the library's default bound (64 MiB), which
		 * the cases' client_max_frame is. */
		struct wb_options opts = {.client_name = "conformance-c", .timeout_ms = 5000};
		struct wb_client *c = NULL;
		char msg[512];
		int rc = wb_connect(&c, u.address, &opts, msg, sizeof(msg));
		if (rc != 0) {
			out_str(o, "outcome", rc == WB_E_TIMEOUT ? "timeout" : "error");
			out_str(o, "detail", msg);
		} else {
			rc = wb_ping(c);
			out_str(o, "outcome", rc == 0 ? "ok" : rc == WB_E_TIMEOUT ? "timeout" : "error");
			if (rc != 0) {
				char detail[600];
				snprintf(detail, sizeof(detail), "%s: %s", wb_error_name(rc),
				         wb_errmsg(c));
				out_str(o, "detail", detail);
			}
			wb_close(c);
		}
		emit(o, "framing", id);
	}
	json_free(urls);
	json_free(d);
}

/* ---------------------------------------------------------------- the steps */

#define MAX_STEPS 256

/* What later steps need of an earlier one. */
struct state {
	const char *id;
	uint64_t sequence, token; /* lease */
	uint8_t (*ids)[16];       /* consumer_read */
	size_t nids;
	char *secret; /* create_token */
	struct wb_client *as; /* the connection of that token */
};

struct steps {
	struct wb_client *c;
	const char *address;
	struct state st[MAX_STEPS];
	size_t n;
	uint64_t member; /* the consumer membership; 0 before the first read */
	struct out *o;
};

static struct state *state_of(struct steps *s, const char *id)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->st[i].id, id) == 0)
			return &s->st[i];
	return NULL;
}

/* An argument's number, or the sequence of the step a {"$ref":
 * "STEP.sequence"} names. */
static uint64_t arg_u64(struct steps *s, const struct json *step, const char *key)
{
	const struct json *v = get(step, key);
	const char *r = str(v, "$ref", NULL);
	if (r != NULL) {
		char id[128];
		snprintf(id, sizeof(id), "%s", r);
		char *dot = strchr(id, '.');
		if (dot != NULL)
			*dot = '\0';
		struct state *st = state_of(s, id);
		return st != NULL ? st->sequence : 0;
	}
	return v != NULL && v->type == J_NUM ? (uint64_t)v->i : 0;
}

static void out_error(struct out *o, struct wb_client *c, int rc)
{
	out_open(o, "error", '{');
	out_i64(o, "code", rc);
	out_str(o, "name", wb_error_name(rc));
	out_str(o, "message", wb_errmsg(c));
	if (rc == WB_WRONG_EXPECTED_VERSION)
		out_i64(o, "actual_version", wb_actual_version(c));
	out_close(o, '}');
}

/* The events of a read, as arrays of their fields. */
struct evlist {
	size_t n;
	uint64_t version[64], position[64];
	char *type[64], *stream[64], *data[64];
	uint8_t id[64][16];
	uint32_t delivery[64];
};

static void ev_add(struct evlist *l, const char *stream, uint64_t version, uint64_t position,
                   const char *type, const uint8_t *data, size_t len, const uint8_t *id)
{
	if (l->n == 64)
		return;
	l->version[l->n] = version;
	l->position[l->n] = position;
	l->type[l->n] = strdup(type);
	l->stream[l->n] = strdup(stream);
	l->data[l->n] = strndup((const char *)data, len);
	memcpy(l->id[l->n], id, 16);
	l->n++;
}

static void ev_out(struct out *o, const struct evlist *l, bool deliveries)
{
	out_open(o, "versions", '[');
	for (size_t i = 0; i < l->n; i++)
		out_u64(o, NULL, l->version[i]);
	out_close(o, ']');
	out_open(o, "positions", '[');
	for (size_t i = 0; i < l->n; i++)
		out_u64(o, NULL, l->position[i]);
	out_close(o, ']');
	const char *names[] = {"types", "streams", "data"};
	char *const *cols[] = {l->type, l->stream, l->data};
	for (size_t k = 0; k < 3; k++) {
		out_open(o, names[k], '[');
		for (size_t i = 0; i < l->n; i++)
			out_str(o, NULL, cols[k][i]);
		out_close(o, ']');
	}
	if (deliveries) {
		out_open(o, "deliveries", '[');
		for (size_t i = 0; i < l->n; i++)
			out_u64(o, NULL, l->delivery[i]);
		out_close(o, ']');
	}
}

static void ev_free(struct evlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->type[i]);
		free(l->stream[i]);
		free(l->data[i]);
	}
	l->n = 0;
}

static void ev_add_item(struct evlist *l, const Whizbang__V1__RecordedEvent *e, uint32_t delivery)
{
	uint8_t id[16] = {0};
	if (e->id.len == 16)
		memcpy(id, e->id.data, 16);
	ev_add(l, e->stream, e->version, e->position, e->type, e->data.data, e->data.len, id);
	if (l->n > 0)
		l->delivery[l->n - 1] = delivery;
}

static int read_pages(struct wb_client *c, const struct json *step, bool all, struct evlist *l)
{
	bool back = flag(step, "backward");
	uint64_t from = back ? WB_END : 0;
	for (;;) {
		struct wb_page page = {0};
		int rc = all ? wb_read_all(c, from, back, 0, str(step, "stream_prefix", NULL), NULL,
		                           0, &page)
		             : wb_read_stream(c, str(step, "stream", ""), from, back, 0, &page);
		if (rc != 0)
			return rc;
		for (size_t i = 0; i < page.count; i++) {
			const struct wb_event *e = &page.events[i];
			ev_add(l, e->stream, e->version, e->position, e->type, e->data, e->data_len,
			       e->id);
		}
		bool end = page.end || (page.count == 0 && page.next == from);
		from = page.next;
		wb_page_free(&page);
		if (end)
			return 0;
	}
}

/* The text ops of a step, as an OpList that points into the step. */
struct ops {
	Whizbang__V1__OpList list;
	Whizbang__V1__Op op[16];
	Whizbang__V1__Op *ptr[16];
};

static void ops_of(const struct json *step, struct ops *ops)
{
	const struct json *texts = get(step, "ops");
	whizbang__v1__op_list__init(&ops->list);
	ops->list.ops = ops->ptr;
	for (size_t i = 0; texts != NULL && i < texts->n && i < 16; i++) {
		whizbang__v1__op__init(&ops->op[i]);
		ops->op[i].kind_case = WHIZBANG__V1__OP__KIND_TEXT;
		ops->op[i].text = texts->items[i]->s;
		ops->ptr[i] = &ops->op[i];
		ops->list.n_ops++;
	}
}

static int next_event(struct wb_client *c, Whizbang__V1__SubscriptionItem **item)
{
	return wb_next_item(c, 10000, item);
}

static int subscribe_stream(struct steps *s, struct wb_client *c, const struct json *step)
{
	struct wb_subscribe_args args = {.target = WB_TARGET_STREAM,
	                                 .stream = str(step, "stream", ""),
	                                 .from = WB_FROM_START,
	                                 .credits = 100};
	uint64_t sub;
	int rc = wb_subscribe(c, &args, &sub);
	if (rc != 0)
		return rc;
	struct evlist catchup = {0}, live = {0};
	bool caught_up = false;
	while (rc == 0 && live.n == 0) {
		Whizbang__V1__SubscriptionItem *item = NULL;
		rc = next_event(c, &item);
		if (rc != 0)
			break;
		if (item->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP) {
			caught_up = true;
			const struct json *ev = get(step, "live");
			struct wb_new_event ne = {.type = str(ev, "type", ""),
			                          .data = str(ev, "data", ""),
			                          .data_len = strlen(str(ev, "data", ""))};
			struct wb_append_result ar;
			rc = wb_append(c, args.stream, WB_EXPECT_ANY, 0, &ne, 1, &ar);
		} else if (item->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT) {
			ev_add_item(caught_up ? &live : &catchup, item->event, 0);
		}
		wb_item_free(item);
	}
	if (rc == 0)
		rc = wb_unsubscribe(c, sub);
	if (rc == 0) {
		out_open(s->o, "catchup_versions", '[');
		for (size_t i = 0; i < catchup.n; i++)
			out_u64(s->o, NULL, catchup.version[i]);
		out_close(s->o, ']');
		out_bool(s->o, "caught_up", caught_up);
		out_open(s->o, "live_versions", '[');
		for (size_t i = 0; i < live.n; i++)
			out_u64(s->o, NULL, live.version[i]);
		out_close(s->o, ']');
		out_open(s->o, "live_types", '[');
		for (size_t i = 0; i < live.n; i++)
			out_str(s->o, NULL, live.type[i]);
		out_close(s->o, ']');
	}
	ev_free(&catchup);
	ev_free(&live);
	return rc;
}

/* The event ids an "events" argument names: {"step", "indexes"}. */
static size_t ids_of(struct steps *s, const struct json *step, uint8_t (*out)[16], size_t max)
{
	const struct json *ev = get(step, "events");
	struct state *from = state_of(s, str(ev, "step", ""));
	const struct json *idx = get(ev, "indexes");
	size_t n = 0;
	for (size_t i = 0; from != NULL && idx != NULL && i < idx->n && n < max; i++) {
		size_t k = (size_t)idx->items[i]->i;
		if (k < from->nids)
			memcpy(out[n++], from->ids[k], 16);
	}
	return n;
}

static int consumer(struct steps *s, struct wb_client *c, const struct json *step,
                    struct state *me)
{
	const char *op = str(step, "op", ""), *name = str(step, "name", "");
	struct out *o = s->o;
	int rc;
	if (strcmp(op, "consumer_create") == 0) {
		struct wb_consumer_args args = {
		        .name = name,
		        .target = WB_TARGET_ALL,
		        .stream_prefix = str(step, "stream_prefix", NULL),
		        .from = WB_FROM_START,
		        .ack_timeout_ms = (uint64_t)num(step, "ack_timeout_ms", 0),
		};
		Whizbang__V1__ConsumerInfo *info = NULL;
		if ((rc = wb_create_consumer(c, &args, &info)) != 0)
			return rc;
		out_str(o, "name", info->config != NULL ? info->config->name : "");
		out_u64(o, "checkpoint", info->checkpoint);
		wb_consumer_info_free(info);
		return 0;
	}
	if (strcmp(op, "consumer_read") == 0) {
		if (s->member == 0 && (rc = wb_join_consumer(c, name, 16, &s->member)) != 0)
			return rc;
		struct evlist got = {0};
		int64_t want = num(step, "count", 0);
		while ((int64_t)got.n < want) {
			Whizbang__V1__SubscriptionItem *item = NULL;
			if ((rc = next_event(c, &item)) != 0) {
				ev_free(&got);
				return rc;
			}
			if (item->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT)
				ev_add_item(&got, item->event, item->delivery);
			wb_item_free(item);
		}
		ev_out(o, &got, true);
		me->ids = malloc(got.n * 16 + 1);
		if (me->ids == NULL)
			abort();
		memcpy(me->ids, got.id, got.n * 16);
		me->nids = got.n;
		ev_free(&got);
		return 0;
	}
	if (strcmp(op, "consumer_ack") == 0 || strcmp(op, "consumer_nack") == 0) {
		uint8_t ids[64][16];
		size_t n = ids_of(s, step, ids, 64);
		uint64_t checkpoint = 0;
		if (op[9] == 'a') {
			rc = wb_ack(c, name, (const uint8_t(*)[16])ids, n, &checkpoint);
		} else {
			const char *a = str(step, "action", "");
			enum wb_nack_action action = strcmp(a, "park") == 0   ? WB_NACK_PARK
			                             : strcmp(a, "skip") == 0 ? WB_NACK_SKIP
			                                                      : WB_NACK_RETRY;
			rc = wb_nack(c, name, (const uint8_t(*)[16])ids, n, action,
			             str(step, "reason", NULL), &checkpoint);
		}
		if (rc == 0)
			out_u64(o, "checkpoint", checkpoint);
		return rc;
	}
	if (strcmp(op, "consumer_list") == 0) {
		Whizbang__V1__ConsumerList *list = NULL;
		if ((rc = wb_list_consumers(c, &list)) != 0)
			return rc;
		for (size_t i = 0; i < list->n_consumers; i++) {
			const Whizbang__V1__ConsumerInfo *info = list->consumers[i];
			if (info->config == NULL || strcmp(info->config->name, name) != 0)
				continue;
			out_u64(o, "checkpoint", info->checkpoint);
			out_u64(o, "parked", info->parked);
			out_u64(o, "in_flight", info->in_flight);
			out_u64(o, "members", info->members);
			out_u64(o, "delivered", info->delivered);
			out_u64(o, "acked", info->acked);
		}
		wb_consumer_list_free(list);
		return 0;
	}
	fprintf(stderr, "unknown operation %s\n", op);
	return WB_E_INVAL;
}

static int run_step(struct steps *s, const struct json *step, struct state *me)
{
	const char *op = str(step, "op", "");
	struct out *o = s->o;
	struct wb_client *c = s->c;
	int rc;
	const char *as = str(step, "as", NULL);
	if (as != NULL) {
		struct state *t = state_of(s, as);
		if (t == NULL || t->secret == NULL)
			return WB_E_INVAL;
		if (t->as == NULL) {
			struct wb_options opts = {.client_name = "conformance-c",
			                          .timeout_ms = 10000,
			                          .token = t->secret};
			char msg[512];
			if ((rc = wb_connect(&t->as, s->address, &opts, msg, sizeof(msg))) != 0) {
				fprintf(stderr, "connecting with the token: %s\n", msg);
				return rc;
			}
		}
		c = t->as;
	}
	if (strcmp(op, "hello") == 0) {
		const struct wb_server_info *h = wb_server_info(c);
		const struct wb_identity *who = wb_whoami(c);
		out_u64(o, "protocol_version", h->protocol_version);
		out_str(o, "server_version", h->server_version);
		out_u64(o, "max_frame", h->max_frame);
		out_u64(o, "max_read_count", h->max_read_count);
		out_u64(o, "max_append_events", h->max_append_events);
		out_u64(o, "max_event_size", h->max_event_size);
		out_str(o, "user", who->user);
		out_open(o, "roles", '[');
		for (size_t i = 0; i < who->nroles; i++)
			out_str(o, NULL, who->roles[i]);
		out_close(o, ']');
		return 0;
	}
	if (strcmp(op, "append") == 0) {
		const struct json *evs = get(step, "events");
		struct wb_new_event ne[16] = {{0}};
		size_t n = 0;
		for (; evs != NULL && n < evs->n && n < 16; n++) {
			ne[n].type = str(evs->items[n], "type", "");
			ne[n].data = str(evs->items[n], "data", "");
			ne[n].data_len = strlen(ne[n].data);
		}
		const struct json *e = get(step, "expected");
		enum wb_expected exp = WB_EXPECT_EXACT;
		uint64_t version = 0;
		if (e != NULL && e->type == J_STR)
			exp = strcmp(e->s, "no_stream") == 0 ? WB_EXPECT_NO_STREAM
			      : strcmp(e->s, "exists") == 0  ? WB_EXPECT_EXISTS
			                                     : WB_EXPECT_ANY;
		else if (e != NULL)
			version = (uint64_t)e->i;
		struct wb_append_result r;
		if ((rc = wb_append(c, str(step, "stream", ""), exp, version, ne, n, &r)) != 0)
			return rc;
		out_u64(o, "stream_version", r.stream_version);
		out_u64(o, "first_position", r.first_position);
		out_u64(o, "last_position", r.last_position);
		return 0;
	}
	if (strcmp(op, "read_stream") == 0 || strcmp(op, "read_all") == 0) {
		struct evlist l = {0};
		rc = read_pages(c, step, op[5] == 'a', &l);
		if (rc == 0)
			ev_out(o, &l, false);
		ev_free(&l);
		return rc;
	}
	if (strcmp(op, "subscribe_stream") == 0)
		return subscribe_stream(s, c, step);
	if (strncmp(op, "consumer_", 9) == 0)
		return consumer(s, c, step, me);
	if (strcmp(op, "lease") == 0) {
		struct wb_lease_args args = {.projection = str(step, "projection", ""),
		                             .duration_ms = (uint64_t)num(step, "duration_ms", 0)};
		struct wb_lease_grant g;
		size_t n = 0;
		if ((rc = wb_lease(c, &args, &g, 1, &n)) != 0)
			return rc;
		me->sequence = g.sequence;
		me->token = g.token;
		out_u64(o, "sequence", g.sequence);
		return 0;
	}
	if (strcmp(op, "stage") == 0 || strcmp(op, "commit") == 0 ||
	    strcmp(op, "release") == 0) {
		uint64_t seq, token;
		const char *lease = str(step, "lease", NULL);
		if (lease != NULL) {
			struct state *l = state_of(s, lease);
			if (l == NULL)
				return WB_E_INVAL;
			seq = l->sequence;
			token = l->token + (uint64_t)num(step, "token_delta", 0);
		} else {
			seq = (uint64_t)num(step, "sequence", 0);
			token = (uint64_t)num(step, "token", 0);
		}
		if (op[0] == 'r')
			return wb_release(c, seq, token, NULL);
		struct ops ops;
		ops_of(step, &ops);
		if (op[1] == 't')
			return wb_stage(c, seq, token, &ops.list);
		bool applied = strcmp(str(step, "ack", "durable"), "applied") == 0;
		Whizbang__V1__CommitResult *r = NULL;
		if ((rc = wb_commit_full(c, seq, token, &ops.list, applied, false, &r)) != 0)
			return rc;
		out_u64(o, "sequence", r->sequence);
		if (applied)
			out_i64(o, "apply_error", r->apply_error);
		wb_commit_result_free(r);
		return 0;
	}
	if (strcmp(op, "wait_watermark") == 0) {
		uint64_t wm = 0;
		bool reached = false;
		rc = wb_wait_watermark(c, arg_u64(s, step, "sequence"),
		                       (uint64_t)num(step, "timeout_ms", 0), &wm, &reached);
		if (rc != 0)
			return rc;
		out_bool(o, "reached", reached);
		out_u64(o, "watermark", wm);
		return 0;
	}
	if (strcmp(op, "query") == 0) {
		/* ids and fields: two lists, written apart and joined at the end. */
		struct out ids = {.first = true}, fields = {.first = true};
		char after[256] = "";
		out_open(&ids, "ids", '[');
		out_open(&fields, "fields", '[');
		for (;;) {
			Whizbang__V1__QueryResult *r = NULL;
			rc = wb_query(c, str(step, "type", ""), NULL, str(step, "where", NULL), after,
			              0, &r);
			if (rc != 0)
				break;
			for (size_t i = 0; i < r->n_entities; i++) {
				out_str(&ids, NULL, r->entities[i]->id);
				out_fields(&fields, NULL, r->entities[i]);
			}
			bool end = r->end;
			snprintf(after, sizeof(after), "%s", r->next_after);
			wb_query_free(r);
			if (end)
				break;
		}
		if (rc == 0) {
			out_close(&ids, ']');
			out_close(&fields, ']');
			out_key(o, NULL);
			out_raw(o, "%.*s,%.*s", (int)ids.len, ids.buf, (int)fields.len, fields.buf);
		}
		free(ids.buf);
		free(fields.buf);
		return rc;
	}
	if (strcmp(op, "get_entity") == 0) {
		Whizbang__V1__Entity *e = NULL;
		if ((rc = wb_get_entity(c, str(step, "type", ""), str(step, "id", ""), &e)) != 0)
			return rc;
		out_str(o, "id", e->id);
		out_str(o, "type", e->type);
		out_u64(o, "version", e->version);
		out_fields(o, "fields", e);
		out_u64(o, "created_sequence", e->created_sequence);
		out_u64(o, "updated_sequence", e->updated_sequence);
		wb_entity_free(e);
		return 0;
	}
	if (strcmp(op, "delete_stream") == 0) {
		uint64_t last = 0;
		if ((rc = wb_delete_stream(c, str(step, "stream", ""), flag(step, "hard"), &last)) !=
		    0)
			return rc;
		out_u64(o, "last_version", last);
		return 0;
	}
	if (strcmp(op, "create_token") == 0) {
		Whizbang__V1__CreateTokenResult *r = NULL;
		if ((rc = wb_create_token(c, str(step, "role", ""), 0, "conformance", &r)) != 0)
			return rc;
		me->secret = strdup(r->token);
		wb_token_result_free(r);
		return 0;
	}
	if (strcmp(op, "sleep") == 0) {
		int64_t ms = num(step, "ms", 0);
		struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		return 0;
	}
	fprintf(stderr, "unknown operation %s\n", op);
	return WB_E_INVAL;
}

static void steps(struct out *o, const char *url)
{
	struct wb_url u;
	if (address_of(url, &u) != 0)
		exit(2);
	struct wb_options opts = {.client_name = "conformance-c", .timeout_ms = 20000};
	struct steps s = {.address = u.address, .o = o};
	char msg[512];
	int rc = wb_connect(&s.c, u.address, &opts, msg, sizeof(msg));
	if (rc != 0) {
		fprintf(stderr, "cannot connect to %s: %s\n", u.address, msg);
		exit(1);
	}
	struct json *files[2] = {load("scenario.json"), load("error_cases.json")};
	const char *sections[2] = {"scenario", "errors"};
	for (size_t f = 0; f < 2; f++) {
		const struct json *list = get(files[f], "steps");
		for (size_t i = 0; list != NULL && i < list->n && s.n < MAX_STEPS; i++) {
			const struct json *step = list->items[i];
			struct state *me = &s.st[s.n++];
			me->id = str(step, "id", "");
			out_begin(o);
			rc = run_step(&s, step, me);
			if (rc != 0) {
				/* Whatever the step wrote before failing goes. */
				o->len = 1;
				o->first = true;
				struct wb_client *c = s.c;
				struct state *t = state_of(&s, str(step, "as", ""));
				if (t != NULL && t->as != NULL)
					c = t->as;
				if (rc <= WB_WIRE_MAX) {
					out_error(o, c, rc);
				} else {
					char crash[600];
					snprintf(crash, sizeof(crash), "%s: %s", wb_error_name(rc),
					         wb_errmsg(c));
					out_str(o, "crash", crash);
				}
			}
			emit(o, sections[f], me->id);
		}
	}
	for (size_t i = 0; i < s.n; i++) {
		free(s.st[i].ids);
		free(s.st[i].secret);
		wb_close(s.st[i].as);
	}
	wb_close(s.c);
	json_free(files[0]);
	json_free(files[1]);
}

int main(void)
{
	const char *url = getenv("WB_CONF_URL");
	if (url == NULL || getenv("WB_CONF_DATA") == NULL) {
		fprintf(stderr, "run through tests/conformance/run.py: WB_CONF_URL and "
		                "WB_CONF_DATA are not set\n");
		return 2;
	}
	struct out o = {0};
	url_cases(&o);
	codes(&o);
	framing(&o);
	steps(&o, url);
	free(o.buf);
	return 0;
}
