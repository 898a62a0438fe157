/* Typed values, entity records, index keys and id lists (value.h).
 *
 * Numbers are compared exactly: an int64 is never converted to a double
 * (2^53 + 1 would become 2^53), a double is split into its integral part,
 * which fits an int64 once it is known to lie in [-2^63, 2^63), and its
 * fraction. The index key of a number uses the same idea: the largest
 * double not above the value, then the integer remainder, so that ints
 * beyond 2^53 keep their order and an int equal to a double shares its key.
 *
 * Record decoding checks every length against the bytes that remain before
 * reading, because records come from storage and storage is never trusted;
 * once a record has been decoded, iteration and lookup walk it without
 * checks. */
#include "value.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "wb_error.h"

/* ------------------------------------------------------------ buffers */

int proj_buf_reserve(struct proj_buf *b, size_t n)
{
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX - b->len)
		return WB_E_NOMEM;
	size_t need = b->len + n;
	size_t cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = realloc(b->p, cap);
	if (p == NULL)
		return WB_E_NOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int proj_buf_append(struct proj_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	int rc = proj_buf_reserve(b, n);
	if (rc != 0)
		return rc;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void proj_buf_free(struct proj_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

/* ------------------------------------------------------------ bytes */

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)(v >> 32));
	put_u32(p + 4, (uint32_t)v);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

static uint64_t double_bits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof u);
	return u;
}

static double bits_double(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof d);
	return d;
}

/* memcmp order where a proper prefix sorts first. */
static inline int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	/* Field names nearly always differ in their first byte: settle that
	 * without a call (a scan compares names once or twice per record). */
	if (n > 0 && a[0] != b[0])
		return a[0] < b[0] ? -1 : 1;
	int c = n == 0 ? 0 : memcmp(a, b, n);
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* ------------------------------------------------------------ values */

int proj_value_from_pb(const Whizbang__V1__Value *v, struct proj_value *out)
{
	if (v == NULL)
		return WB_BAD_REQUEST;
	switch (v->kind_case) {
	case WHIZBANG__V1__VALUE__KIND_STRING_VALUE:
		if (v->string_value == NULL)
			return WB_BAD_REQUEST;
		out->type = PROJ_STRING;
		out->u.s.p = (const uint8_t *)v->string_value;
		out->u.s.len = strlen(v->string_value);
		return 0;
	case WHIZBANG__V1__VALUE__KIND_INT_VALUE:
		out->type = PROJ_INT;
		out->u.i = v->int_value;
		return 0;
	case WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE:
		if (isnan(v->double_value))
			return WB_BAD_REQUEST;
		out->type = PROJ_DOUBLE;
		out->u.d = v->double_value;
		return 0;
	case WHIZBANG__V1__VALUE__KIND_BOOL_VALUE:
		out->type = PROJ_BOOL;
		out->u.b = v->bool_value != 0;
		return 0;
	case WHIZBANG__V1__VALUE__KIND_BYTES_VALUE:
		if (v->bytes_value.len > 0 && v->bytes_value.data == NULL)
			return WB_BAD_REQUEST;
		out->type = PROJ_BYTES;
		out->u.s.p = v->bytes_value.data;
		out->u.s.len = v->bytes_value.len;
		return 0;
	case WHIZBANG__V1__VALUE__KIND_NULL_VALUE:
		out->type = PROJ_NULL;
		return 0;
	default:
		return WB_BAD_REQUEST;
	}
}

void proj_value_to_pb(const struct proj_value *v, Whizbang__V1__Value *out)
{
	switch (v->type) {
	case PROJ_NULL:
		out->kind_case = WHIZBANG__V1__VALUE__KIND_NULL_VALUE;
		out->null_value = 1;
		break;
	case PROJ_BOOL:
		out->kind_case = WHIZBANG__V1__VALUE__KIND_BOOL_VALUE;
		out->bool_value = v->u.b;
		break;
	case PROJ_INT:
		out->kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
		out->int_value = v->u.i;
		break;
	case PROJ_DOUBLE:
		out->kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
		out->double_value = v->u.d;
		break;
	case PROJ_STRING:
		/* protobuf-c reads this with strlen(): the caller's string must
		 * be NUL-terminated (a string inside a record is not). */
		out->kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
		out->string_value = (char *)v->u.s.p;
		break;
	case PROJ_BYTES:
		out->kind_case = WHIZBANG__V1__VALUE__KIND_BYTES_VALUE;
		out->bytes_value.data = (uint8_t *)v->u.s.p;
		out->bytes_value.len = v->u.s.len;
		break;
	}
}

/* 2^63 as a double: exact. */
#define TWO_63 9223372036854775808.0

/* Compares an int64 with a double that is not NaN, exactly. */
static int cmp_int_double(int64_t i, double d)
{
	if (d >= TWO_63)
		return -1;
	if (d < -TWO_63)
		return 1;
	double t = trunc(d);
	int64_t ti = (int64_t)t; /* in [-2^63, 2^63): representable */
	if (i < ti)
		return -1;
	if (i > ti)
		return 1;
	double frac = d - t; /* exact for every finite double */
	return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_double(double a, double b)
{
	return a < b ? -1 : a > b ? 1 : 0;
}

static bool is_number(enum proj_vtype t)
{
	return t == PROJ_INT || t == PROJ_DOUBLE;
}

static int cmp_number(const struct proj_value *a, const struct proj_value *b)
{
	if (a->type == PROJ_INT) {
		if (b->type == PROJ_INT)
			return a->u.i < b->u.i ? -1 : a->u.i > b->u.i ? 1 : 0;
		return cmp_int_double(a->u.i, b->u.d);
	}
	if (b->type == PROJ_INT)
		return -cmp_int_double(b->u.i, a->u.d);
	return cmp_double(a->u.d, b->u.d);
}

bool proj_value_equal(const struct proj_value *a, const struct proj_value *b)
{
	if (is_number(a->type) && is_number(b->type))
		return cmp_number(a, b) == 0;
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PROJ_NULL:
		return true;
	case PROJ_BOOL:
		return a->u.b == b->u.b;
	case PROJ_STRING:
	case PROJ_BYTES:
		return a->u.s.len == b->u.s.len &&
		       (a->u.s.len == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0);
	default:
		return false;
	}
}

bool proj_value_order(const struct proj_value *a, const struct proj_value *b, int *cmp)
{
	if (is_number(a->type) && is_number(b->type)) {
		*cmp = cmp_number(a, b);
		return true;
	}
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PROJ_BOOL:
		*cmp = (int)a->u.b - (int)b->u.b;
		return true;
	case PROJ_STRING:
	case PROJ_BYTES:
		*cmp = bytes_cmp(a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len);
		return true;
	default:
		return false;
	}
}

/* ------------------------------------------------------------ index keys */

uint8_t proj_key_tag(const struct proj_value *v)
{
	switch (v->type) {
	case PROJ_NULL:
		return PROJ_KEY_NULL;
	case PROJ_BOOL:
		return PROJ_KEY_BOOL;
	case PROJ_INT:
	case PROJ_DOUBLE:
		return PROJ_KEY_NUMBER;
	case PROJ_STRING:
		return PROJ_KEY_STRING;
	case PROJ_BYTES:
		return PROJ_KEY_BYTES;
	}
	return 0;
}

/* Bits of d whose unsigned order is the numeric order. */
static uint64_t sortable_bits(double d)
{
	if (d == 0)
		d = 0.0; /* -0.0 sorts (and is) equal to +0.0 */
	uint64_t u = double_bits(d);
	return (u & (UINT64_C(1) << 63)) ? ~u : u ^ (UINT64_C(1) << 63);
}

static size_t number_key(const struct proj_value *v, uint8_t *out)
{
	double d;
	uint16_t rem = 0;
	if (v->type == PROJ_DOUBLE) {
		d = v->u.d;
	} else {
		int64_t i = v->u.i;
		d = (double)i; /* rounds to nearest: may be above i */
		if (cmp_int_double(i, d) < 0)
			d = nextafter(d, -INFINITY);
		/* -2^63 <= d <= i, and no double lies in (d, i]: i - d is below
		 * the spacing of doubles there, at most 1024. */
		rem = (uint16_t)(i - (int64_t)d);
	}
	out[0] = PROJ_KEY_NUMBER;
	put_u64(out + 1, sortable_bits(d));
	out[9] = (uint8_t)(rem >> 8);
	out[10] = (uint8_t)rem;
	return 11;
}

size_t proj_key_encode(const struct proj_value *v, uint8_t *out)
{
	size_t n = 0;
	switch (v->type) {
	case PROJ_NULL:
		out[n++] = PROJ_KEY_NULL;
		return n;
	case PROJ_BOOL:
		out[n++] = PROJ_KEY_BOOL;
		out[n++] = v->u.b ? 1 : 0;
		return n;
	case PROJ_INT:
	case PROJ_DOUBLE:
		return number_key(v, out);
	case PROJ_STRING:
	case PROJ_BYTES: {
		out[n++] = proj_key_tag(v);
		/* At most PROJ_KEY_TEXT_MAX encoded bytes: an escaped 0x00
		 * that would not fit whole ends the text. */
		for (size_t k = 0; k < v->u.s.len; k++) {
			uint8_t c = v->u.s.p[k];
			if (n - 1 + (c == 0 ? 2u : 1u) > PROJ_KEY_TEXT_MAX)
				break;
			out[n++] = c;
			if (c == 0)
				out[n++] = 0xFF;
		}
		out[n++] = 0x00;
		out[n++] = 0x01;
		return n;
	}
	}
	return 0;
}

size_t proj_key_len(const uint8_t *k, size_t len)
{
	if (len == 0)
		return 0;
	switch (k[0]) {
	case PROJ_KEY_NULL:
		return 1;
	case PROJ_KEY_BOOL:
		return len >= 2 && k[1] <= 1 ? 2 : 0;
	case PROJ_KEY_NUMBER:
		if (len < 11)
			return 0;
		/* The remainder is what an int64 lies above a double: < 2048. */
		return ((unsigned)k[9] << 8 | k[10]) < 2048 ? 11 : 0;
	case PROJ_KEY_STRING:
	case PROJ_KEY_BYTES: {
		size_t raw = 0;
		for (size_t i = 1; i < len; i++) {
			if (k[i] != 0) {
				raw++;
			} else if (i + 1 >= len) {
				return 0;
			} else if (k[i + 1] == 0x01) {
				return i + 2;
			} else if (k[i + 1] == 0xFF) {
				raw += 2;
				i++;
			} else {
				return 0;
			}
			if (raw > PROJ_KEY_TEXT_MAX)
				return 0;
		}
		return 0;
	}
	default:
		return 0;
	}
}

/* ------------------------------------------------------------ records */

#define RECORD_FORMAT 1

/* Size of a field's payload from its type byte and the bytes that follow,
 * checked against avail; 0 with *ok false when malformed. Used by decode
 * only: iteration trusts a decoded record. */
static size_t payload_len(uint8_t type, const uint8_t *p, size_t avail, bool *ok)
{
	*ok = true;
	switch (type) {
	case PROJ_NULL:
		return 0;
	case PROJ_BOOL:
		if (avail < 1 || p[0] > 1)
			break;
		return 1;
	case PROJ_INT:
		if (avail < 8)
			break;
		return 8;
	case PROJ_DOUBLE:
		if (avail < 8 || isnan(bits_double(get_u64(p))))
			break;
		return 8;
	case PROJ_STRING:
	case PROJ_BYTES: {
		if (avail < 4)
			break;
		uint32_t n = get_u32(p);
		if (n > avail - 4)
			break;
		return 4 + (size_t)n;
	}
	default:
		break;
	}
	*ok = false;
	return 0;
}

int proj_record_decode(const uint8_t *p, size_t len, struct proj_record *out)
{
	if (len < PROJ_RECORD_HEADER || p[0] != RECORD_FORMAT)
		return WB_E_CORRUPT;
	for (size_t i = 1; i < 8; i++)
		if (p[i] != 0)
			return WB_E_CORRUPT;
	uint32_t nfields = get_u32(p + 32);
	if (nfields > PROJ_MAX_FIELDS)
		return WB_E_CORRUPT;
	size_t off = PROJ_RECORD_HEADER;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	for (uint32_t f = 0; f < nfields; f++) {
		if (len - off < 1)
			return WB_E_CORRUPT;
		size_t nlen = p[off++];
		/* The name, then at least the type byte. */
		if (nlen == 0 || len - off < nlen + 1)
			return WB_E_CORRUPT;
		const uint8_t *name = p + off;
		if (prev != NULL && bytes_cmp(prev, prev_len, name, nlen) >= 0)
			return WB_E_CORRUPT;
		prev = name;
		prev_len = nlen;
		off += nlen;
		uint8_t type = p[off++];
		bool ok;
		size_t plen = payload_len(type, p + off, len - off, &ok);
		if (!ok)
			return WB_E_CORRUPT;
		off += plen;
	}
	if (off != len)
		return WB_E_CORRUPT;
	out->version = get_u64(p + 8);
	out->created_seq = get_u64(p + 16);
	out->updated_seq = get_u64(p + 24);
	out->nfields = nfields;
	out->fields = p + PROJ_RECORD_HEADER;
	out->fields_len = len - PROJ_RECORD_HEADER;
	return 0;
}

/* Reads the value at p (type byte first) of a decoded record; returns the
 * bytes it takes. */
static size_t read_value(const uint8_t *p, struct proj_value *v)
{
	v->type = (enum proj_vtype)p[0];
	switch (v->type) {
	case PROJ_NULL:
		return 1;
	case PROJ_BOOL:
		v->u.b = p[1] != 0;
		return 2;
	case PROJ_INT:
		v->u.i = (int64_t)get_u64(p + 1);
		return 9;
	case PROJ_DOUBLE:
		v->u.d = bits_double(get_u64(p + 1));
		return 9;
	case PROJ_STRING:
	case PROJ_BYTES:
		v->u.s.len = get_u32(p + 1);
		v->u.s.p = p + 5;
		return 5 + v->u.s.len;
	}
	return 1;
}

/* Bytes a value takes in a decoded record, type byte included. */
static size_t skip_value(const uint8_t *p)
{
	switch (p[0]) {
	case PROJ_BOOL:
		return 2;
	case PROJ_INT:
	case PROJ_DOUBLE:
		return 9;
	case PROJ_STRING:
	case PROJ_BYTES:
		return 5 + (size_t)get_u32(p + 1);
	default:
		return 1;
	}
}

bool proj_record_next(const struct proj_record *r, size_t *off, struct proj_field *f)
{
	if (*off >= r->fields_len)
		return false;
	const uint8_t *p = r->fields + *off;
	f->name_len = p[0];
	f->name = (const char *)(p + 1);
	size_t n = 1 + f->name_len;
	n += read_value(p + n, &f->v);
	*off += n;
	return true;
}

bool proj_record_find(const struct proj_record *r, const char *name, size_t name_len,
                      struct proj_value *out)
{
	const uint8_t *p = r->fields;
	const uint8_t *end = r->fields + r->fields_len;
	while (p < end) {
		size_t nlen = p[0];
		int c = bytes_cmp(p + 1, nlen, (const uint8_t *)name, name_len);
		if (c == 0) {
			read_value(p + 1 + nlen, out);
			return true;
		}
		if (c > 0)
			return false; /* sorted: the name would have come already */
		p += 1 + nlen;
		p += skip_value(p);
	}
	return false;
}

static int field_cmp(const void *a, const void *b)
{
	const struct proj_field *x = a, *y = b;
	return bytes_cmp((const uint8_t *)x->name, x->name_len, (const uint8_t *)y->name,
	                 y->name_len);
}

int proj_record_encode(uint64_t version, uint64_t created_seq, uint64_t updated_seq,
                       struct proj_field *fields, size_t n, struct proj_buf *out)
{
	if (n > PROJ_MAX_FIELDS)
		return WB_E_INVAL;
	size_t size = PROJ_RECORD_HEADER;
	for (size_t i = 0; i < n; i++) {
		const struct proj_field *f = &fields[i];
		if (f->name == NULL || f->name_len == 0 || f->name_len > PROJ_NAME_MAX)
			return WB_E_INVAL;
		size += 1 + f->name_len + 1;
		switch (f->v.type) {
		case PROJ_NULL:
			break;
		case PROJ_BOOL:
			size += 1;
			break;
		case PROJ_INT:
			size += 8;
			break;
		case PROJ_DOUBLE:
			if (isnan(f->v.u.d))
				return WB_E_INVAL;
			size += 8;
			break;
		case PROJ_STRING:
		case PROJ_BYTES:
			if (f->v.u.s.len > 0 && f->v.u.s.p == NULL)
				return WB_E_INVAL;
			/* Capped so that the sum cannot wrap; the cap alone
			 * is over the limit. */
			size += 4 +
			        (f->v.u.s.len > PROJ_RECORD_MAX ? PROJ_RECORD_MAX : f->v.u.s.len);
			break;
		default:
			return WB_E_INVAL;
		}
	}
	if (n > 1)
		qsort(fields, n, sizeof *fields, field_cmp);
	for (size_t i = 1; i < n; i++)
		if (field_cmp(&fields[i - 1], &fields[i]) == 0)
			return WB_E_INVAL;
	if (size > PROJ_RECORD_MAX)
		return WB_RESOURCE_EXHAUSTED;
	int rc = proj_buf_reserve(out, size);
	if (rc != 0)
		return rc;

	uint8_t *p = out->p + out->len;
	memset(p, 0, 8);
	p[0] = RECORD_FORMAT;
	put_u64(p + 8, version);
	put_u64(p + 16, created_seq);
	put_u64(p + 24, updated_seq);
	put_u32(p + 32, (uint32_t)n);
	p += PROJ_RECORD_HEADER;
	for (size_t i = 0; i < n; i++) {
		const struct proj_field *f = &fields[i];
		*p++ = (uint8_t)f->name_len;
		memcpy(p, f->name, f->name_len);
		p += f->name_len;
		*p++ = (uint8_t)f->v.type;
		switch (f->v.type) {
		case PROJ_NULL:
			break;
		case PROJ_BOOL:
			*p++ = f->v.u.b ? 1 : 0;
			break;
		case PROJ_INT:
			put_u64(p, (uint64_t)f->v.u.i);
			p += 8;
			break;
		case PROJ_DOUBLE:
			put_u64(p, double_bits(f->v.u.d));
			p += 8;
			break;
		case PROJ_STRING:
		case PROJ_BYTES:
			put_u32(p, (uint32_t)f->v.u.s.len);
			p += 4;
			if (f->v.u.s.len > 0)
				memcpy(p, f->v.u.s.p, f->v.u.s.len);
			p += f->v.u.s.len;
			break;
		}
	}
	out->len += size;
	return 0;
}

/* ------------------------------------------------------------ id lists */

int proj_ids_add(struct proj_ids *ids, const void *id, size_t len)
{
	if (len == 0 || len > PROJ_ID_MAX)
		return WB_E_INVAL;
	/* Offsets are 32 bits wide. */
	if (ids->bytes.len > UINT32_MAX - len)
		return WB_RESOURCE_EXHAUSTED;
	if (ids->n == ids->cap) {
		size_t cap = ids->cap < 16 ? 16 : ids->cap * 2;
		uint32_t *off = realloc(ids->off, cap * sizeof *off);
		if (off == NULL)
			return WB_E_NOMEM;
		ids->off = off;
		uint8_t *lens = realloc(ids->len, cap * sizeof *lens);
		if (lens == NULL)
			return WB_E_NOMEM;
		ids->len = lens;
		ids->cap = cap;
	}
	uint32_t at = (uint32_t)ids->bytes.len;
	int rc = proj_buf_append(&ids->bytes, id, len);
	if (rc != 0)
		return rc;
	ids->off[ids->n] = at;
	ids->len[ids->n] = (uint8_t)len;
	ids->n++;
	return 0;
}

struct id_ref {
	const uint8_t *p;
	uint32_t off;
	uint8_t len;
};

static int id_ref_cmp(const void *a, const void *b)
{
	const struct id_ref *x = a, *y = b;
	return bytes_cmp(x->p, x->len, y->p, y->len);
}

int proj_ids_sort_unique(struct proj_ids *ids)
{
	if (ids->n < 2)
		return 0;
	struct id_ref *refs = malloc(ids->n * sizeof *refs);
	if (refs == NULL)
		return WB_E_NOMEM;
	for (size_t i = 0; i < ids->n; i++) {
		refs[i].p = ids->bytes.p + ids->off[i];
		refs[i].off = ids->off[i];
		refs[i].len = ids->len[i];
	}
	qsort(refs, ids->n, sizeof *refs, id_ref_cmp);
	size_t n = 0;
	for (size_t i = 0; i < ids->n; i++) {
		if (n > 0 && id_ref_cmp(&refs[n - 1], &refs[i]) == 0)
			continue;
		refs[n++] = refs[i];
	}
	/* Duplicates' bytes stay in the buffer until the next clear. */
	for (size_t i = 0; i < n; i++) {
		ids->off[i] = refs[i].off;
		ids->len[i] = refs[i].len;
	}
	ids->n = n;
	free(refs);
	return 0;
}

void proj_ids_clear(struct proj_ids *ids)
{
	ids->bytes.len = 0;
	ids->n = 0;
}

void proj_ids_free(struct proj_ids *ids)
{
	proj_buf_free(&ids->bytes);
	free(ids->off);
	free(ids->len);
	ids->off = NULL;
	ids->len = NULL;
	ids->n = 0;
	ids->cap = 0;
}

int proj_idlist_encode(const struct proj_ids *ids, struct proj_buf *out)
{
	size_t size = 0;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	for (size_t i = 0; i < ids->n; i++) {
		size_t len;
		const uint8_t *id = proj_ids_get(ids, i, &len);
		/* The decoder refuses a list that is not strictly increasing:
		 * better to say so here than to store one. */
		if (prev != NULL && bytes_cmp(prev, prev_len, id, len) >= 0)
			return WB_E_INVAL;
		size_t shared = 0;
		while (shared < len && shared < prev_len && prev[shared] == id[shared])
			shared++;
		size += 2 + len - shared;
		prev = id;
		prev_len = len;
	}
	int rc = proj_buf_reserve(out, size);
	if (rc != 0)
		return rc;
	uint8_t *p = out->p + out->len;
	prev_len = 0;
	for (size_t i = 0; i < ids->n; i++) {
		size_t len;
		const uint8_t *id = proj_ids_get(ids, i, &len);
		size_t shared = 0;
		while (shared < len && shared < prev_len && prev[shared] == id[shared])
			shared++;
		*p++ = (uint8_t)shared;
		*p++ = (uint8_t)(len - shared);
		memcpy(p, id + shared, len - shared);
		p += len - shared;
		prev = id;
		prev_len = len;
	}
	out->len += size;
	return 0;
}

void proj_idlist_iter_init(struct proj_idlist_iter *it, const uint8_t *p, size_t len)
{
	it->p = p;
	it->len = len;
	it->off = 0;
	it->id_len = 0;
}

int proj_idlist_next(struct proj_idlist_iter *it)
{
	if (it->off == it->len)
		return 0;
	if (it->off > it->len || it->len - it->off < 2)
		return WB_E_CORRUPT;
	const uint8_t *p = it->p + it->off;
	size_t shared = p[0], rest = p[1];
	if (shared > it->id_len || shared + rest == 0 || shared + rest > PROJ_ID_MAX ||
	    rest > it->len - it->off - 2)
		return WB_E_CORRUPT;
	/* Above the previous id: past the shared prefix, the rest must sort
	 * after what the previous id had there. */
	if (it->off > 0 && bytes_cmp(p + 2, rest, it->id + shared, it->id_len - shared) <= 0)
		return WB_E_CORRUPT;
	memcpy(it->id + shared, p + 2, rest);
	it->id_len = shared + rest;
	it->off += 2 + rest;
	return 1;
}
