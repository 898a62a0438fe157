/* Read models: applying ops, the planner, explosion, queries, digests
 * (proj.h has the layout). */
#include "proj.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "eval.h"
#include "optext.h"
#include "wb_error.h"

#define IDX_PREFIX 4u
/* An index entry key: index id, value key, entity id. */
#define IDX_KEY_MAX (IDX_PREFIX + PROJ_KEY_MAX + PROJ_ID_MAX)
#define ENT_KEY_MAX (PROJ_NAME_MAX + 1u + PROJ_ID_MAX)
#define META_KEY_MAX (2u + 2u * PROJ_NAME_MAX)
#define META_INDEX_LEN 20u
/* LMDB's key limit: an index definition's key ("i", type, 0x00, field)
 * must fit it. */
#define META_KEY_LIMIT 511u
/* Counting stops here when a plan's candidates are estimated; past it the
 * index's kept entry count stands in. */
#define ESTIMATE_CAP 1024u

typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__OpList OpList;
typedef Whizbang__V1__Explosion Explosion;

/* ------------------------------------------------------------ bytes */

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct storage_val sv(const void *p, size_t len)
{
	struct storage_val v = {p, len};
	return v;
}

/* The first key after every key that starts with p[0..len): p with its
 * last byte below 0xff incremented and the rest dropped. Index keys start
 * with an index id, never all 0xff. */
static size_t key_successor(uint8_t *p, size_t len)
{
	while (len > 0 && p[len - 1] == 0xff)
		len--;
	if (len > 0)
		p[len - 1]++;
	return len;
}

static bool valid_name(const char *s, size_t len)
{
	return len >= 1 && len <= PROJ_NAME_MAX && memchr(s, 0, len) == NULL;
}

static size_t entity_key(uint8_t *k, const char *type, size_t type_len, const void *id,
                         size_t id_len)
{
	memcpy(k, type, type_len);
	k[type_len] = 0;
	memcpy(k + type_len + 1, id, id_len);
	return type_len + 1 + id_len;
}

/* ------------------------------------------------------------ kept counts */

static size_t count_key(uint8_t *k, const char *type, size_t type_len)
{
	k[0] = 'c';
	memcpy(k + 1, type, type_len);
	return 1 + type_len;
}

int proj_type_count(struct storage_txn *txn, const char *type, size_t type_len, uint64_t *out)
{
	uint8_t k[META_KEY_MAX];
	struct storage_val v;
	*out = 0;
	if (!valid_name(type, type_len))
		return 0;
	int rc = storage_get(txn, STORAGE_DB_PROJ_META, sv(k, count_key(k, type, type_len)), &v);
	if (rc == WB_E_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (v.len != 8)
		return WB_E_CORRUPT;
	*out = get_u64(v.data);
	return 0;
}

static int type_count_add(struct storage_txn *txn, const char *type, size_t type_len, int64_t delta)
{
	if (delta == 0)
		return 0;
	uint64_t n;
	int rc = proj_type_count(txn, type, type_len, &n);
	if (rc != 0)
		return rc;
	n = (uint64_t)((int64_t)n + delta);
	uint8_t k[META_KEY_MAX];
	size_t kl = count_key(k, type, type_len);
	if (n == 0) {
		rc = storage_del(txn, STORAGE_DB_PROJ_META, sv(k, kl));
		return rc == WB_E_NOTFOUND ? 0 : rc;
	}
	uint8_t b[8];
	put_u64(b, n);
	return storage_put(txn, STORAGE_DB_PROJ_META, sv(k, kl), sv(b, 8), 0);
}

/* ------------------------------------------------------------ index definitions */

struct idx {
	uint32_t id;
	char field[PROJ_NAME_MAX + 1];
	size_t field_len;
	uint64_t entries;
	uint64_t created_seq;
	int64_t delta; /* entries added by the current op */
};

/* The indexes of one type, loaded once per op. */
struct tctx {
	const char *type;
	size_t type_len;
	struct idx *idx;
	size_t n;
	int64_t count_delta;
};

static size_t index_def_key(uint8_t *k, const char *type, size_t type_len, const char *field,
                            size_t field_len)
{
	k[0] = 'i';
	memcpy(k + 1, type, type_len);
	k[1 + type_len] = 0;
	memcpy(k + 2 + type_len, field, field_len);
	return 2 + type_len + field_len;
}

static int decode_index_def(const struct storage_val *v, struct idx *out)
{
	if (v->len != META_INDEX_LEN)
		return WB_E_CORRUPT;
	const uint8_t *p = v->data;
	out->id = get_u32(p);
	out->entries = get_u64(p + 4);
	out->created_seq = get_u64(p + 12);
	out->delta = 0;
	return 0;
}

static void tctx_free(struct tctx *t)
{
	free(t->idx);
	t->idx = NULL;
	t->n = 0;
}

static int tctx_load(struct storage_txn *txn, const char *type, size_t type_len, struct tctx *t)
{
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->type_len = type_len;
	uint8_t k[META_KEY_MAX];
	size_t plen = index_def_key(k, type, type_len, "", 0);
	struct storage_cursor *cur;
	int rc = storage_cursor_open(txn, STORAGE_DB_PROJ_META, &cur);
	if (rc != 0)
		return rc;
	struct storage_val key = sv(k, plen), val;
	size_t cap = 0;
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &val);
	while (rc == 0 && key.len > plen && memcmp(key.data, k, plen) == 0) {
		if (t->n == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct idx *ni = realloc(t->idx, ncap * sizeof(*ni));
			if (ni == NULL) {
				rc = WB_E_NOMEM;
				break;
			}
			t->idx = ni;
			cap = ncap;
		}
		struct idx *x = &t->idx[t->n];
		x->field_len = key.len - plen;
		if (x->field_len > PROJ_NAME_MAX) {
			rc = WB_E_CORRUPT;
			break;
		}
		memcpy(x->field, (const uint8_t *)key.data + plen, x->field_len);
		x->field[x->field_len] = 0;
		rc = decode_index_def(&val, x);
		if (rc != 0)
			break;
		t->n++;
		rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &val);
	}
	storage_cursor_close(cur);
	if (rc == WB_E_NOTFOUND)
		rc = 0;
	if (rc != 0)
		tctx_free(t);
	return rc;
}

static struct idx *tctx_find(const struct tctx *t, const char *field, size_t len)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->idx[i].field_len == len && memcmp(t->idx[i].field, field, len) == 0)
			return &t->idx[i];
	return NULL;
}

static int put_index_def(struct storage_txn *txn, const char *type, size_t type_len,
                         const struct idx *x)
{
	uint8_t k[META_KEY_MAX], v[META_INDEX_LEN];
	put_u32(v, x->id);
	put_u64(v + 4, x->entries);
	put_u64(v + 12, x->created_seq);
	return storage_put(txn, STORAGE_DB_PROJ_META,
	                   sv(k, index_def_key(k, type, type_len, x->field, x->field_len)),
	                   sv(v, sizeof(v)), 0);
}

/* Writes the op's changes to the kept counts. */
static int tctx_flush(struct storage_txn *txn, struct tctx *t)
{
	int rc = type_count_add(txn, t->type, t->type_len, t->count_delta);
	t->count_delta = 0;
	for (size_t i = 0; rc == 0 && i < t->n; i++) {
		struct idx *x = &t->idx[i];
		if (x->delta == 0)
			continue;
		x->entries = (uint64_t)((int64_t)x->entries + x->delta);
		x->delta = 0;
		rc = put_index_def(txn, t->type, t->type_len, x);
	}
	return rc;
}

/* ------------------------------------------------------------ index entries */

static size_t index_key(uint8_t *k, uint32_t index_id, const struct proj_value *v, const void *id,
                        size_t id_len)
{
	put_u32(k, index_id);
	size_t n = IDX_PREFIX + proj_key_encode(v, k + IDX_PREFIX);
	memcpy(k + n, id, id_len);
	return n + id_len;
}

/* Keeps the indexes of t exact for one entity going from old_r to new_r
 * (either may be NULL: created, deleted). */
static int index_update(struct storage_txn *txn, struct tctx *t, const void *id, size_t id_len,
                        const struct proj_record *old_r, const struct proj_record *new_r)
{
	for (size_t i = 0; i < t->n; i++) {
		struct idx *x = &t->idx[i];
		struct proj_value ov, nv;
		bool has_o = old_r != NULL && proj_record_find(old_r, x->field, x->field_len, &ov);
		bool has_n = new_r != NULL && proj_record_find(new_r, x->field, x->field_len, &nv);
		uint8_t ok[IDX_KEY_MAX], nk[IDX_KEY_MAX];
		size_t okl = has_o ? index_key(ok, x->id, &ov, id, id_len) : 0;
		size_t nkl = has_n ? index_key(nk, x->id, &nv, id, id_len) : 0;
		if (has_o && has_n && okl == nkl && memcmp(ok, nk, okl) == 0)
			continue;
		int rc;
		if (has_o) {
			rc = storage_del(txn, STORAGE_DB_INDEX, sv(ok, okl));
			if (rc == WB_E_NOTFOUND)
				rc = WB_E_CORRUPT;
			if (rc != 0)
				return rc;
			x->delta--;
		}
		if (has_n) {
			rc = storage_put(txn, STORAGE_DB_INDEX, sv(nk, nkl), sv("", 0), 0);
			if (rc != 0)
				return rc;
			x->delta++;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ entity writes */

/* An op's failure that lies in the ops and the state: recorded, not
 * returned as a storage error. */
struct opfail {
	int code;
	char msg[256];
};

static int fail(struct opfail *f, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(struct opfail *f, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
	f->code = code;
	return code;
}

/* Fields being edited: values point into the old record's copy or into
 * the op. */
struct fieldset {
	struct proj_field *f;
	size_t n;
	size_t cap;
};

static int fs_reserve(struct fieldset *s, size_t more)
{
	if (s->n + more <= s->cap)
		return 0;
	size_t cap = s->cap ? s->cap : 16;
	while (cap < s->n + more)
		cap *= 2;
	struct proj_field *nf = realloc(s->f, cap * sizeof(*nf));
	if (nf == NULL)
		return WB_E_NOMEM;
	s->f = nf;
	s->cap = cap;
	return 0;
}

static struct proj_field *fs_find(struct fieldset *s, const char *name, size_t len)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->f[i].name_len == len && memcmp(s->f[i].name, name, len) == 0)
			return &s->f[i];
	return NULL;
}

static int fs_set(struct fieldset *s, const char *name, size_t len, const struct proj_value *v)
{
	struct proj_field *f = fs_find(s, name, len);
	if (f == NULL) {
		int rc = fs_reserve(s, 1);
		if (rc != 0)
			return rc;
		f = &s->f[s->n++];
		f->name = name;
		f->name_len = len;
	}
	f->v = *v;
	return 0;
}

static void fs_unset(struct fieldset *s, const char *name, size_t len)
{
	struct proj_field *f = fs_find(s, name, len);
	if (f != NULL)
		*f = s->f[--s->n];
}

static int fs_load(struct fieldset *s, const struct proj_record *r)
{
	s->n = 0;
	int rc = fs_reserve(s, r->nfields);
	if (rc != 0)
		return rc;
	size_t off = 0;
	struct proj_field f;
	while (proj_record_next(r, &off, &f))
		s->f[s->n++] = f;
	return 0;
}

static int fs_add_pb(struct fieldset *s, Whizbang__V1__Field **fields, size_t n, struct opfail *fl)
{
	for (size_t i = 0; i < n; i++) {
		struct proj_value v;
		if (fields[i]->value == NULL || proj_value_from_pb(fields[i]->value, &v) != 0)
			return fail(fl, WB_BAD_REQUEST, "field %s: bad value", fields[i]->name);
		int rc = fs_set(s, fields[i]->name, strlen(fields[i]->name), &v);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Per-op working memory, reused across the entities of one op. */
struct work {
	struct proj_buf old; /* copy of the entity's stored record */
	struct proj_buf enc; /* the new record */
	struct fieldset fs;
	struct opfail *fl;
	uint64_t seq;
};

static void work_free(struct work *w)
{
	proj_buf_free(&w->old);
	proj_buf_free(&w->enc);
	free(w->fs.f);
}

/* Reads the entity into w->old (copied). Returns 0 (and *found) or a
 * storage error; a corrupt record is an op failure. */
static int load_entity(struct storage_txn *txn, struct tctx *t, const void *id, size_t id_len,
                       struct work *w, struct proj_record *r, bool *found)
{
	uint8_t k[ENT_KEY_MAX];
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_ENTITIES,
	                     sv(k, entity_key(k, t->type, t->type_len, id, id_len)), &v);
	*found = false;
	if (rc == WB_E_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	w->old.len = 0;
	rc = proj_buf_append(&w->old, v.data, v.len);
	if (rc != 0)
		return rc;
	if (proj_record_decode(w->old.p, w->old.len, r) != 0)
		return fail(w->fl, WB_INTERNAL, "entity %s/%.*s is corrupt", t->type, (int)id_len,
		            (const char *)id);
	*found = true;
	return 0;
}

/* Stores w->fs as the entity's new state (old: its previous state or
 * NULL), keeping indexes and counts exact. */
static int store_entity(struct storage_txn *txn, struct tctx *t, const void *id, size_t id_len,
                        struct work *w, const struct proj_record *old)
{
	w->enc.len = 0;
	int rc = proj_record_encode(old ? old->version + 1 : 1, old ? old->created_seq : w->seq,
	                            w->seq, w->fs.f, w->fs.n, &w->enc);
	if (rc == WB_E_INVAL)
		return fail(w->fl, WB_BAD_REQUEST, "entity %s/%.*s: invalid fields", t->type,
		            (int)id_len, (const char *)id);
	if (rc == WB_RESOURCE_EXHAUSTED)
		return fail(w->fl, rc, "entity %s/%.*s would be larger than %u bytes", t->type,
		            (int)id_len, (const char *)id, PROJ_RECORD_MAX);
	if (rc != 0)
		return rc;
	struct proj_record nr;
	rc = proj_record_decode(w->enc.p, w->enc.len, &nr);
	if (rc != 0)
		return fail(w->fl, WB_INTERNAL, "encoded record does not decode");
	rc = index_update(txn, t, id, id_len, old, &nr);
	if (rc != 0)
		return rc;
	uint8_t k[ENT_KEY_MAX];
	rc = storage_put(txn, STORAGE_DB_ENTITIES,
	                 sv(k, entity_key(k, t->type, t->type_len, id, id_len)),
	                 sv(w->enc.p, w->enc.len), 0);
	if (rc == 0 && old == NULL)
		t->count_delta++;
	return rc;
}

static int delete_entity(struct storage_txn *txn, struct tctx *t, const void *id, size_t id_len,
                         struct work *w, bool *deleted)
{
	struct proj_record old;
	bool found;
	int rc = load_entity(txn, t, id, id_len, w, &old, &found);
	*deleted = false;
	if (rc != 0 || !found)
		return rc;
	rc = index_update(txn, t, id, id_len, &old, NULL);
	if (rc != 0)
		return rc;
	uint8_t k[ENT_KEY_MAX];
	rc = storage_del(txn, STORAGE_DB_ENTITIES,
	                 sv(k, entity_key(k, t->type, t->type_len, id, id_len)));
	if (rc != 0)
		return rc;
	t->count_delta--;
	*deleted = true;
	return 0;
}

static int increment(struct fieldset *s, const Whizbang__V1__IncrementAction *inc,
                     struct opfail *fl)
{
	struct proj_value by;
	if (inc->by == NULL || proj_value_from_pb(inc->by, &by) != 0 ||
	    (by.type != PROJ_INT && by.type != PROJ_DOUBLE))
		return fail(fl, WB_BAD_REQUEST, "inc %s: by must be a number", inc->field);
	size_t len = strlen(inc->field);
	struct proj_field *f = fs_find(s, inc->field, len);
	if (f == NULL)
		return fs_set(s, inc->field, len, &by);
	struct proj_value *v = &f->v;
	if (v->type == PROJ_INT && by.type == PROJ_INT) {
		int64_t r;
		if (__builtin_add_overflow(v->u.i, by.u.i, &r))
			return fail(fl, WB_BAD_REQUEST, "inc %s: int64 overflow", inc->field);
		v->u.i = r;
		return 0;
	}
	if (v->type != PROJ_INT && v->type != PROJ_DOUBLE)
		return fail(fl, WB_BAD_REQUEST, "inc %s: the field is not a number", inc->field);
	double a = v->type == PROJ_INT ? (double)v->u.i : v->u.d;
	double b = by.type == PROJ_INT ? (double)by.u.i : by.u.d;
	double r = a + b;
	if (r != r)
		return fail(fl, WB_BAD_REQUEST, "inc %s: the result is not a number", inc->field);
	v->type = PROJ_DOUBLE;
	v->u.d = r;
	return 0;
}

static int apply_actions(struct fieldset *s, Whizbang__V1__Action **acts, size_t n,
                         struct opfail *fl)
{
	for (size_t i = 0; i < n; i++) {
		const Whizbang__V1__Action *a = acts[i];
		int rc = 0;
		struct proj_value v;
		switch (a->kind_case) {
		case WHIZBANG__V1__ACTION__KIND_SET:
			if (a->set->value == NULL || proj_value_from_pb(a->set->value, &v) != 0)
				return fail(fl, WB_BAD_REQUEST, "set %s: bad value", a->set->field);
			rc = fs_set(s, a->set->field, strlen(a->set->field), &v);
			break;
		case WHIZBANG__V1__ACTION__KIND_UNSET:
			fs_unset(s, a->unset, strlen(a->unset));
			break;
		case WHIZBANG__V1__ACTION__KIND_INCREMENT:
			rc = increment(s, a->increment, fl);
			break;
		default:
			return fail(fl, WB_BAD_REQUEST, "an action with no kind");
		}
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ the planner */

struct krange {
	uint8_t lo[IDX_PREFIX + PROJ_KEY_MAX];
	size_t lo_len;
	uint8_t hi[IDX_PREFIX + PROJ_KEY_MAX];
	size_t hi_len; /* 0: to the end of the index */
};

enum pkind { PN_RANGES, PN_UNION };

struct pnode {
	enum pkind kind;
	const struct idx *x; /* PN_RANGES */
	const Expr *term;
	struct krange *r;
	size_t nr;
	struct pnode **kids; /* PN_UNION */
	size_t nk;
	uint64_t est;
};

static void pnode_free(struct pnode *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nk; i++)
		pnode_free(p->kids[i]);
	free(p->kids);
	free(p->r);
	free(p);
}

static struct krange *add_range(struct pnode *p)
{
	struct krange *nr = realloc(p->r, (p->nr + 1) * sizeof(*nr));
	if (nr == NULL)
		return NULL;
	p->r = nr;
	return &nr[p->nr++];
}

/* Every entry whose key starts with the index id and pre[0..len). */
static int range_prefix(struct pnode *p, const uint8_t *pre, size_t len)
{
	struct krange *r = add_range(p);
	if (r == NULL)
		return WB_E_NOMEM;
	put_u32(r->lo, p->x->id);
	memcpy(r->lo + IDX_PREFIX, pre, len);
	r->lo_len = IDX_PREFIX + len;
	memcpy(r->hi, r->lo, r->lo_len);
	r->hi_len = key_successor(r->hi, r->lo_len);
	return 0;
}

/* From lo (a value key or a bare tag) inclusive to hi inclusive of every
 * entry starting with it. Bounds are inclusive either way: candidates are
 * filtered by the whole clause. */
static int range_between(struct pnode *p, const uint8_t *lo, size_t lo_len, const uint8_t *hi,
                         size_t hi_len)
{
	struct krange *r = add_range(p);
	if (r == NULL)
		return WB_E_NOMEM;
	put_u32(r->lo, p->x->id);
	memcpy(r->lo + IDX_PREFIX, lo, lo_len);
	r->lo_len = IDX_PREFIX + lo_len;
	put_u32(r->hi, p->x->id);
	memcpy(r->hi + IDX_PREFIX, hi, hi_len);
	r->hi_len = key_successor(r->hi, IDX_PREFIX + hi_len);
	return 0;
}

struct planner {
	struct storage_txn *txn;
	const struct tctx *t;
	int rc;
};

static struct pnode *pnode_new(struct planner *pl, enum pkind kind, const struct idx *x,
                               const Expr *term)
{
	struct pnode *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		pl->rc = WB_E_NOMEM;
		return NULL;
	}
	p->kind = kind;
	p->x = x;
	p->term = term;
	return p;
}

static int estimate(struct planner *pl, struct pnode *p)
{
	if (p->kind == PN_UNION) {
		p->est = 0;
		for (size_t i = 0; i < p->nk; i++)
			p->est += p->kids[i]->est;
		return 0;
	}
	struct storage_cursor *cur;
	int rc = storage_cursor_open(pl->txn, STORAGE_DB_INDEX, &cur);
	if (rc != 0)
		return rc;
	uint64_t n = 0;
	for (size_t i = 0; rc == 0 && i < p->nr && n < ESTIMATE_CAP; i++) {
		struct krange *r = &p->r[i];
		struct storage_val k = sv(r->lo, r->lo_len), v;
		rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &k, &v);
		while (rc == 0 && n < ESTIMATE_CAP) {
			size_t m = k.len < r->hi_len ? k.len : r->hi_len;
			int c = memcmp(k.data, r->hi, m);
			if (c > 0 || (c == 0 && k.len >= r->hi_len))
				break;
			n++;
			rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v);
		}
		if (rc == WB_E_NOTFOUND)
			rc = 0;
	}
	storage_cursor_close(cur);
	p->est = n >= ESTIMATE_CAP && p->x->entries > n ? p->x->entries : n;
	return rc;
}

static struct pnode *plan_expr(struct planner *pl, const Expr *e);

static struct pnode *plan_leaf(struct planner *pl, const Expr *e, const char *field)
{
	const struct idx *x = tctx_find(pl->t, field, strlen(field));
	if (x == NULL)
		return NULL;
	struct pnode *p = pnode_new(pl, PN_RANGES, x, e);
	if (p == NULL)
		return NULL;
	uint8_t k[PROJ_KEY_MAX] = {0};
	struct proj_value v;
	int rc = 0;
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE: {
		const Whizbang__V1__Compare *c = e->compare;
		if (proj_value_from_pb(c->value, &v) != 0)
			break;
		size_t kl = proj_key_encode(&v, k);
		uint8_t tag = proj_key_tag(&v), tag_end = (uint8_t)(tag + 1);
		switch (c->op) {
		case WHIZBANG__V1__COMPARE_OP__EQ:
			rc = range_prefix(p, k, kl);
			break;
		case WHIZBANG__V1__COMPARE_OP__LT:
		case WHIZBANG__V1__COMPARE_OP__LE:
			/* null is not ordered: nothing matches */
			if (v.type != PROJ_NULL)
				rc = range_between(p, &tag, 1, k, kl);
			break;
		case WHIZBANG__V1__COMPARE_OP__GT:
		case WHIZBANG__V1__COMPARE_OP__GE:
			if (v.type != PROJ_NULL) {
				struct krange *r = add_range(p);
				if (r == NULL) {
					rc = WB_E_NOMEM;
					break;
				}
				put_u32(r->lo, x->id);
				memcpy(r->lo + IDX_PREFIX, k, kl);
				r->lo_len = IDX_PREFIX + kl;
				put_u32(r->hi, x->id);
				r->hi[IDX_PREFIX] = tag_end;
				r->hi_len = IDX_PREFIX + 1;
			}
			break;
		default:
			break;
		}
		break;
	}
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		for (size_t i = 0; rc == 0 && i < e->in_list->n_values; i++) {
			if (proj_value_from_pb(e->in_list->values[i], &v) != 0)
				continue;
			rc = range_prefix(p, k, proj_key_encode(&v, k));
		}
		break;
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		rc = range_prefix(p, k, 0);
		break;
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH: {
		size_t len = strlen(e->starts_with->prefix);
		if (len > PROJ_KEY_TEXT_MAX)
			len = PROJ_KEY_TEXT_MAX;
		k[0] = PROJ_KEY_STRING;
		memcpy(k + 1, e->starts_with->prefix, len);
		rc = range_prefix(p, k, 1 + len);
		break;
	}
	default:
		break;
	}
	if (rc == 0)
		rc = estimate(pl, p);
	if (rc != 0) {
		pl->rc = rc;
		pnode_free(p);
		return NULL;
	}
	return p;
}

/* The cheapest index plan for e, or NULL when e needs a scan (or on an
 * error, then in pl->rc). */
static struct pnode *plan_expr(struct planner *pl, const Expr *e)
{
	switch (e->node_case) {
	case WHIZBANG__V1__EXPR__NODE_COMPARE:
		if (e->compare->op == WHIZBANG__V1__COMPARE_OP__NE)
			return NULL;
		return plan_leaf(pl, e, e->compare->field);
	case WHIZBANG__V1__EXPR__NODE_IN_LIST:
		if (e->in_list->negated)
			return NULL;
		return plan_leaf(pl, e, e->in_list->field);
	case WHIZBANG__V1__EXPR__NODE_EXISTS:
		return plan_leaf(pl, e, e->exists->field);
	case WHIZBANG__V1__EXPR__NODE_STARTS_WITH:
		return plan_leaf(pl, e, e->starts_with->field);
	case WHIZBANG__V1__EXPR__NODE_ALL_OF: {
		struct pnode *best = NULL;
		for (size_t i = 0; i < e->all_of->n_terms && pl->rc == 0; i++) {
			struct pnode *p = plan_expr(pl, e->all_of->terms[i]);
			if (p == NULL)
				continue;
			if (best == NULL || p->est < best->est) {
				pnode_free(best);
				best = p;
			} else {
				pnode_free(p);
			}
		}
		if (pl->rc != 0) {
			pnode_free(best);
			return NULL;
		}
		return best;
	}
	case WHIZBANG__V1__EXPR__NODE_ANY_OF: {
		struct pnode *u = pnode_new(pl, PN_UNION, NULL, e);
		if (u == NULL)
			return NULL;
		size_t n = e->any_of->n_terms;
		u->kids = calloc(n > 0 ? n : 1, sizeof(*u->kids));
		if (u->kids == NULL) {
			pl->rc = WB_E_NOMEM;
			free(u);
			return NULL;
		}
		for (size_t i = 0; i < n; i++) {
			struct pnode *p = plan_expr(pl, e->any_of->terms[i]);
			if (p == NULL) {
				pnode_free(u);
				return NULL;
			}
			u->kids[u->nk++] = p;
		}
		estimate(pl, u);
		return u;
	}
	default:
		return NULL;
	}
}

static size_t fmt_plan(const struct pnode *p, const char *type, char *buf, size_t len, int depth)
{
	size_t o = 0;
#define OUT(...)                                                                                   \
	do {                                                                                       \
		int n_ = snprintf(buf + (o < len ? o : len), o < len ? len - o : 0, __VA_ARGS__);  \
		if (n_ > 0)                                                                        \
			o += (size_t)n_;                                                           \
	} while (0)
	OUT("%*s", depth * 2, "");
	if (p->kind == PN_UNION) {
		OUT("union of %zu (estimate %llu)\n", p->nk, (unsigned long long)p->est);
		for (size_t i = 0; i < p->nk; i++)
			o += fmt_plan(p->kids[i], type, buf + (o < len ? o : len),
			              o < len ? len - o : 0, depth + 1);
		return o;
	}
	char term[256];
	optext_format_expr(p->term, term, sizeof(term));
	OUT("index %s.%s: %s (estimate %llu)\n", type, p->x->field, term,
	    (unsigned long long)p->est);
#undef OUT
	return o;
}

/* Appends the clause's filter line to the plan's text at o. */
static void filter_text(const Expr *where, struct proj_plan *plan, size_t o)
{
	if (where != NULL && o < sizeof(plan->text)) {
		char f[512];
		optext_format_expr(where, f, sizeof(f));
		snprintf(plan->text + o, sizeof(plan->text) - o, "filter: %s\n", f);
	}
}

/* Makes plan a scan of t's type (why: a note after the count, may be ""). */
static void scan_plan(const struct tctx *t, const Expr *where, const struct proj_config *cfg,
                      const char *why, struct proj_plan *plan)
{
	plan->strategy = WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN;
	plan->estimate = plan->type_entities;
	/* Without a clause every entity read is one answered: a query pages
	 * through them, bounded by its limit, so it is never refused. */
	plan->refused = where != NULL && plan->type_entities > cfg->max_scan;
	size_t o = (size_t)snprintf(plan->text, sizeof(plan->text), "scan %s (%llu entities%s%s)\n",
	                            t->type, (unsigned long long)plan->type_entities, why,
	                            plan->refused ? ", over --max-scan: refused" : "");
	filter_text(where, plan, o);
}

/* Plans e over the type of t into *root (NULL: scan) and fills plan. */
static int make_plan(struct storage_txn *txn, const struct tctx *t, const Expr *where,
                     const struct proj_config *cfg, struct pnode **root, struct proj_plan *plan)
{
	struct planner pl = {txn, t, 0};
	*root = NULL;
	memset(plan, 0, sizeof(*plan));
	int rc = proj_type_count(txn, t->type, t->type_len, &plan->type_entities);
	if (rc != 0)
		return rc;
	if (where != NULL && !cfg->force_scan) {
		*root = plan_expr(&pl, where);
		if (pl.rc != 0) {
			pnode_free(*root);
			*root = NULL;
			return pl.rc;
		}
	}
	if (*root == NULL) {
		scan_plan(t, where, cfg, "", plan);
		return 0;
	}
	plan->strategy = (*root)->kind == PN_UNION ? WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX_UNION
	                                           : WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX;
	plan->estimate = (*root)->est;
	size_t o = fmt_plan(*root, t->type, plan->text, sizeof(plan->text), 0);
	filter_text(where, plan, o);
	return 0;
}

/* Adds the ids of every index entry in the plan's ranges to ids (NULL:
 * only counts them), counting them in *read. More than max entries:
 * WB_QUERY_TOO_EXPENSIVE once the count passes it, so no more than max + 1
 * entries are ever read and at most max ids kept. */
static int collect(struct storage_txn *txn, const struct pnode *p, struct proj_ids *ids,
                   uint64_t max, uint64_t *read)
{
	if (p->kind == PN_UNION) {
		for (size_t i = 0; i < p->nk; i++) {
			int rc = collect(txn, p->kids[i], ids, max, read);
			if (rc != 0)
				return rc;
		}
		return 0;
	}
	struct storage_cursor *cur;
	int rc = storage_cursor_open(txn, STORAGE_DB_INDEX, &cur);
	if (rc != 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < p->nr; i++) {
		const struct krange *r = &p->r[i];
		struct storage_val k = sv(r->lo, r->lo_len), v;
		rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &k, &v);
		while (rc == 0) {
			size_t m = k.len < r->hi_len ? k.len : r->hi_len;
			int c = memcmp(k.data, r->hi, m);
			if (c > 0 || (c == 0 && k.len >= r->hi_len))
				break;
			const uint8_t *kp = k.data;
			size_t vl = k.len > IDX_PREFIX
			                    ? proj_key_len(kp + IDX_PREFIX, k.len - IDX_PREFIX)
			                    : 0;
			if (vl == 0 || IDX_PREFIX + vl >= k.len) {
				rc = WB_E_CORRUPT;
				break;
			}
			if (++*read > max) {
				rc = WB_QUERY_TOO_EXPENSIVE;
				break;
			}
			if (ids != NULL)
				rc = proj_ids_add(ids, kp + IDX_PREFIX + vl,
				                  k.len - IDX_PREFIX - vl);
			if (rc == 0)
				rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v);
		}
		if (rc == WB_E_NOTFOUND)
			rc = 0;
	}
	storage_cursor_close(cur);
	return rc;
}

/* Plans where over t's type and holds the plan to the budgets. A scan over
 * more than max_scan entities is refused before it starts. An index plan's
 * candidates are read into cand (NULL: only counted, into *read) until
 * they pass max_candidates; past it the range is not selective enough to
 * be worth reading through the index, and the plan becomes a scan when the
 * type is within max_scan (per entity a scan is the cheaper read, and the
 * result is the same), else it is refused. Both decisions are counts of
 * the state and the settings, so the same entry decides the same on every
 * replay. On return *root is the index plan whose candidates cand holds,
 * or NULL for a scan; WB_QUERY_TOO_EXPENSIVE, with plan->refused set, for
 * a refused plan. */
static int settle_plan(struct storage_txn *txn, const struct tctx *t, const Expr *where,
                       const struct proj_config *cfg, struct pnode **root, struct proj_plan *plan,
                       struct proj_ids *cand, uint64_t *read)
{
	*read = 0;
	int rc = make_plan(txn, t, where, cfg, root, plan);
	if (rc != 0)
		return rc;
	if (*root == NULL)
		return plan->refused ? WB_QUERY_TOO_EXPENSIVE : 0;
	rc = collect(txn, *root, cand, cfg->max_candidates, read);
	if (rc != WB_QUERY_TOO_EXPENSIVE)
		return rc;
	if (plan->type_entities <= cfg->max_scan) {
		pnode_free(*root);
		*root = NULL;
		if (cand != NULL)
			proj_ids_clear(cand);
		char why[96];
		snprintf(why, sizeof(why), "; the index plan reads more than --max-candidates %llu",
		         (unsigned long long)cfg->max_candidates);
		scan_plan(t, where, cfg, why, plan);
		return 0;
	}
	plan->refused = true;
	size_t o = strlen(plan->text);
	snprintf(plan->text + o, sizeof(plan->text) - o,
	         "candidates: more than %llu, over --max-candidates: refused\n",
	         (unsigned long long)cfg->max_candidates);
	return WB_QUERY_TOO_EXPENSIVE;
}

static int explode_in(struct storage_txn *txn, const struct tctx *t, const Expr *where,
                      const struct proj_config *cfg, struct proj_ids *ids, struct proj_plan *plan,
                      uint64_t *examined)
{
	struct pnode *root;
	proj_ids_clear(ids);
	*examined = 0;
	struct proj_ids cand = {0};
	uint64_t read;
	int rc = settle_plan(txn, t, where, cfg, &root, plan, &cand, &read);
	if (rc != 0) {
		proj_ids_free(&cand);
		pnode_free(root);
		return rc;
	}
	uint8_t k[ENT_KEY_MAX];
	if (root != NULL) {
		pnode_free(root);
		rc = proj_ids_sort_unique(&cand);
		for (size_t i = 0; rc == 0 && i < cand.n; i++) {
			size_t il;
			const uint8_t *id = proj_ids_get(&cand, i, &il);
			struct storage_val v;
			rc = storage_get(txn, STORAGE_DB_ENTITIES,
			                 sv(k, entity_key(k, t->type, t->type_len, id, il)), &v);
			if (rc == WB_E_NOTFOUND) {
				rc = WB_E_CORRUPT; /* an index entry without its entity */
				break;
			}
			struct proj_record r;
			if (rc == 0)
				rc = proj_record_decode(v.data, v.len, &r);
			(*examined)++;
			if (rc == 0 && proj_eval(where, &r))
				rc = proj_ids_add(ids, id, il);
		}
		proj_ids_free(&cand);
		return rc;
	}
	proj_ids_free(&cand);
	/* A scan, in id order: the result comes out sorted. */
	struct storage_cursor *cur;
	rc = storage_cursor_open(txn, STORAGE_DB_ENTITIES, &cur);
	if (rc != 0)
		return rc;
	size_t plen = entity_key(k, t->type, t->type_len, "", 0);
	struct storage_val key = sv(k, plen), v;
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &v);
	while (rc == 0 && key.len > plen && memcmp(key.data, k, plen) == 0) {
		struct proj_record r;
		rc = proj_record_decode(v.data, v.len, &r);
		if (rc != 0)
			break;
		(*examined)++;
		if (where == NULL || proj_eval(where, &r))
			rc = proj_ids_add(ids, (const uint8_t *)key.data + plen, key.len - plen);
		if (rc == 0)
			rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &v);
	}
	storage_cursor_close(cur);
	return rc == WB_E_NOTFOUND ? 0 : rc;
}

int proj_explain(struct storage_txn *txn, const char *type, size_t type_len, const Expr *where,
                 const struct proj_config *cfg, struct proj_plan *out)
{
	if (!valid_name(type, type_len))
		return WB_BAD_REQUEST;
	struct tctx t;
	int rc = tctx_load(txn, type, type_len, &t);
	if (rc != 0)
		return rc;
	struct pnode *root;
	/* The candidates are counted as running the plan would read them,
	 * and no further: the budget bounds this work too. A refusal is
	 * the answer here, not an error. */
	uint64_t read;
	rc = settle_plan(txn, &t, where, cfg, &root, out, NULL, &read);
	if (rc == WB_QUERY_TOO_EXPENSIVE)
		rc = 0;
	else if (rc == 0 && root != NULL) {
		out->estimate = read;
		size_t o = strlen(out->text);
		snprintf(out->text + o, sizeof(out->text) - o, "candidates: %llu\n",
		         (unsigned long long)read);
	}
	pnode_free(root);
	tctx_free(&t);
	return rc;
}

void proj_refusal(const struct proj_plan *plan, const char *type, const struct proj_config *cfg,
                  char *buf, size_t len)
{
	if (plan->strategy == WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN)
		snprintf(buf, len,
		         "a scan of %s would examine %llu entities, more than --max-scan %llu: add "
		         "an index on a field of the clause (see Explain)",
		         type, (unsigned long long)plan->type_entities,
		         (unsigned long long)cfg->max_scan);
	else
		snprintf(buf, len,
		         "the index plan over %s reads more than --max-candidates %llu index "
		         "entries: narrow the clause or index a more selective field (see "
		         "Explain)",
		         type, (unsigned long long)cfg->max_candidates);
}

int proj_explode(struct storage_txn *txn, const char *type, size_t type_len, const Expr *where,
                 const struct proj_config *cfg, struct proj_ids *ids, struct proj_plan *plan,
                 uint64_t *examined)
{
	if (!valid_name(type, type_len))
		return WB_BAD_REQUEST;
	struct tctx t;
	struct proj_plan local;
	int rc = tctx_load(txn, type, type_len, &t);
	if (rc != 0)
		return rc;
	rc = explode_in(txn, &t, where, cfg, ids, plan != NULL ? plan : &local, examined);
	tctx_free(&t);
	return rc;
}

/* ------------------------------------------------------------ queries */

int proj_get(struct storage_txn *txn, const char *type, size_t type_len, const char *id,
             size_t id_len, struct proj_record *out)
{
	if (!valid_name(type, type_len) || !valid_name(id, id_len))
		return WB_BAD_REQUEST;
	uint8_t k[ENT_KEY_MAX];
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_ENTITIES,
	                     sv(k, entity_key(k, type, type_len, id, id_len)), &v);
	if (rc != 0)
		return rc;
	return proj_record_decode(v.data, v.len, out);
}

static int idcmp(const void *a, size_t al, const void *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c != 0)
		return c;
	return al < bl ? -1 : al > bl;
}

int proj_query(struct storage_txn *txn, const char *type, size_t type_len, const Expr *where,
               const char *after, size_t after_len, uint32_t limit, const struct proj_config *cfg,
               proj_visit_fn visit, void *arg, struct proj_query_info *info)
{
	memset(info, 0, sizeof(*info));
	if (!valid_name(type, type_len) || after_len > PROJ_ID_MAX)
		return WB_BAD_REQUEST;
	struct tctx t;
	int rc = tctx_load(txn, type, type_len, &t);
	if (rc != 0)
		return rc;
	struct pnode *root;
	struct proj_ids cand = {0};
	uint64_t read;
	rc = settle_plan(txn, &t, where, cfg, &root, &info->plan, &cand, &read);
	if (rc != 0)
		goto out;
	uint8_t k[ENT_KEY_MAX];
	uint32_t n = 0;
	info->end = true;
	if (root != NULL) {
		rc = proj_ids_sort_unique(&cand);
		for (size_t i = 0; rc == 0 && i < cand.n; i++) {
			size_t il;
			const uint8_t *id = proj_ids_get(&cand, i, &il);
			if (after_len > 0 && idcmp(id, il, after, after_len) <= 0)
				continue;
			if (n == limit) {
				info->end = false;
				break;
			}
			struct storage_val v;
			rc = storage_get(txn, STORAGE_DB_ENTITIES,
			                 sv(k, entity_key(k, type, type_len, id, il)), &v);
			if (rc == WB_E_NOTFOUND)
				rc = WB_E_CORRUPT;
			struct proj_record r;
			if (rc == 0)
				rc = proj_record_decode(v.data, v.len, &r);
			info->examined++;
			if (rc == 0 && proj_eval(where, &r)) {
				n++;
				rc = visit((const char *)id, il, &r, arg);
			}
		}
	} else {
		struct storage_cursor *cur;
		rc = storage_cursor_open(txn, STORAGE_DB_ENTITIES, &cur);
		if (rc != 0)
			goto out;
		size_t plen = entity_key(k, type, type_len, "", 0);
		if (after_len > 0)
			memcpy(k + plen, after, after_len);
		struct storage_val key = sv(k, plen + after_len), v;
		rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &v);
		while (rc == 0 && key.len > plen && memcmp(key.data, k, plen) == 0) {
			const char *id = (const char *)key.data + plen;
			size_t il = key.len - plen;
			if (after_len > 0 && idcmp(id, il, after, after_len) <= 0) {
				rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &v);
				continue;
			}
			if (n == limit) {
				info->end = false;
				break;
			}
			struct proj_record r;
			rc = proj_record_decode(v.data, v.len, &r);
			if (rc != 0)
				break;
			info->examined++;
			if (where == NULL || proj_eval(where, &r)) {
				n++;
				rc = visit(id, il, &r, arg);
			}
			if (rc == 0)
				rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &v);
		}
		storage_cursor_close(cur);
		if (rc == WB_E_NOTFOUND)
			rc = 0;
	}
	if (rc == PROJ_STOP) {
		info->end = false;
		rc = 0;
	}
out:
	proj_ids_free(&cand);
	pnode_free(root);
	tctx_free(&t);
	return rc;
}

/* ------------------------------------------------------------ indexes */

int proj_index_get(struct storage_txn *txn, const char *type, const char *field,
                   struct proj_index_info *out)
{
	size_t tl = strlen(type), fl = strlen(field);
	if (!valid_name(type, tl) || !valid_name(field, fl))
		return WB_BAD_REQUEST;
	uint8_t k[META_KEY_MAX];
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_PROJ_META,
	                     sv(k, index_def_key(k, type, tl, field, fl)), &v);
	if (rc != 0)
		return rc;
	struct idx x;
	rc = decode_index_def(&v, &x);
	if (rc != 0)
		return rc;
	memcpy(out->type, type, tl + 1);
	memcpy(out->field, field, fl + 1);
	out->index_id = x.id;
	out->entries = x.entries;
	out->created_seq = x.created_seq;
	return 0;
}

int proj_index_list(struct storage_txn *txn, const char *type, proj_index_visit_fn visit, void *arg)
{
	uint8_t k[META_KEY_MAX];
	size_t tl = type != NULL ? strlen(type) : 0;
	if (tl > PROJ_NAME_MAX)
		return WB_BAD_REQUEST;
	size_t plen = tl > 0 ? index_def_key(k, type, tl, "", 0) : 1;
	k[0] = 'i';
	struct storage_cursor *cur;
	int rc = storage_cursor_open(txn, STORAGE_DB_PROJ_META, &cur);
	if (rc != 0)
		return rc;
	struct storage_val key = sv(k, plen), v;
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &v);
	while (rc == 0 && key.len > plen && memcmp(key.data, k, plen) == 0) {
		const uint8_t *p = key.data;
		const uint8_t *z = memchr(p + 1, 0, key.len - 1);
		struct idx x;
		if (z == NULL || (size_t)(z - p - 1) > PROJ_NAME_MAX ||
		    key.len - (size_t)(z - p) - 1 > PROJ_NAME_MAX ||
		    decode_index_def(&v, &x) != 0) {
			rc = WB_E_CORRUPT;
			break;
		}
		struct proj_index_info info;
		size_t a = (size_t)(z - p - 1), b = key.len - (size_t)(z - p) - 1;
		memcpy(info.type, p + 1, a);
		info.type[a] = 0;
		memcpy(info.field, z + 1, b);
		info.field[b] = 0;
		info.index_id = x.id;
		info.entries = x.entries;
		info.created_seq = x.created_seq;
		rc = visit(&info, arg);
		if (rc != 0)
			break;
		rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &v);
	}
	storage_cursor_close(cur);
	return rc == WB_E_NOTFOUND ? 0 : rc;
}

static int create_index(struct storage_txn *txn, const Whizbang__V1__IndexSpec *spec, uint64_t seq,
                        struct opfail *fl, uint64_t *affected)
{
	size_t tl = strlen(spec->type), flen = strlen(spec->field);
	if (tl + flen > META_KEY_LIMIT - 2)
		return fail(fl, WB_BAD_REQUEST,
		            "index %s.%s: type and field together must be at most %u bytes",
		            spec->type, spec->field, META_KEY_LIMIT - 2);
	struct proj_index_info info;
	int rc = proj_index_get(txn, spec->type, spec->field, &info);
	if (rc == 0)
		return fail(fl, WB_BAD_REQUEST, "index %s.%s exists", spec->type, spec->field);
	if (rc != WB_E_NOTFOUND)
		return rc;
	/* the next index id */
	uint8_t nk = 'n';
	struct storage_val v;
	uint32_t id = 1;
	rc = storage_get(txn, STORAGE_DB_PROJ_META, sv(&nk, 1), &v);
	if (rc == 0) {
		if (v.len != 4)
			return WB_E_CORRUPT;
		id = get_u32(v.data);
	} else if (rc != WB_E_NOTFOUND) {
		return rc;
	}
	uint8_t nb[4];
	put_u32(nb, id + 1);
	rc = storage_put(txn, STORAGE_DB_PROJ_META, sv(&nk, 1), sv(nb, 4), 0);
	if (rc != 0)
		return rc;
	struct idx x = {.id = id, .field_len = flen, .created_seq = seq};
	memcpy(x.field, spec->field, flen + 1);
	/* Build over the existing entities, in id order. */
	struct storage_cursor *cur;
	rc = storage_cursor_open(txn, STORAGE_DB_ENTITIES, &cur);
	if (rc != 0)
		return rc;
	uint8_t k[ENT_KEY_MAX];
	size_t plen = entity_key(k, spec->type, tl, "", 0);
	struct storage_val key = sv(k, plen);
	struct proj_buf keys = {0};
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &v);
	/* Keys are gathered first: a put would move the cursor's pages. */
	while (rc == 0 && key.len > plen && memcmp(key.data, k, plen) == 0) {
		struct proj_record r;
		struct proj_value fv;
		rc = proj_record_decode(v.data, v.len, &r);
		if (rc != 0)
			break;
		if (proj_record_find(&r, x.field, flen, &fv)) {
			uint8_t ik[IDX_KEY_MAX];
			size_t il = index_key(ik, id, &fv, (const uint8_t *)key.data + plen,
			                      key.len - plen);
			uint8_t l2[2] = {(uint8_t)(il >> 8), (uint8_t)il};
			rc = proj_buf_append(&keys, l2, 2);
			if (rc == 0)
				rc = proj_buf_append(&keys, ik, il);
			x.entries++;
		}
		if (rc == 0)
			rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &v);
	}
	storage_cursor_close(cur);
	if (rc == WB_E_NOTFOUND)
		rc = 0;
	for (size_t o = 0; rc == 0 && o < keys.len;) {
		size_t il = (size_t)keys.p[o] << 8 | keys.p[o + 1];
		rc = storage_put(txn, STORAGE_DB_INDEX, sv(keys.p + o + 2, il), sv("", 0), 0);
		o += 2 + il;
	}
	proj_buf_free(&keys);
	if (rc == 0)
		rc = put_index_def(txn, spec->type, tl, &x);
	*affected = x.entries;
	return rc;
}

static int drop_index(struct storage_txn *txn, const Whizbang__V1__IndexSpec *spec,
                      struct opfail *fl, uint64_t *affected)
{
	struct proj_index_info info;
	int rc = proj_index_get(txn, spec->type, spec->field, &info);
	if (rc == WB_E_NOTFOUND)
		return fail(fl, WB_NOT_FOUND, "no index %s.%s", spec->type, spec->field);
	if (rc != 0)
		return rc;
	uint8_t k[META_KEY_MAX];
	rc = storage_del(txn, STORAGE_DB_PROJ_META,
	                 sv(k, index_def_key(k, spec->type, strlen(spec->type), spec->field,
	                                     strlen(spec->field))));
	if (rc != 0)
		return rc;
	uint8_t pre[IDX_PREFIX];
	put_u32(pre, info.index_id);
	struct storage_cursor *cur;
	*affected = 0;
	/* Deleting at the cursor is not in the engine interface: look the
	 * first remaining entry up again after each delete. */
	for (;;) {
		rc = storage_cursor_open(txn, STORAGE_DB_INDEX, &cur);
		if (rc != 0)
			return rc;
		struct storage_val key = sv(pre, IDX_PREFIX), v;
		uint8_t kb[IDX_KEY_MAX];
		size_t kl = 0;
		rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &v);
		if (rc == 0 && key.len >= IDX_PREFIX && memcmp(key.data, pre, IDX_PREFIX) == 0 &&
		    key.len <= sizeof(kb)) {
			kl = key.len;
			memcpy(kb, key.data, kl);
		}
		storage_cursor_close(cur);
		if (rc == WB_E_NOTFOUND || (rc == 0 && kl == 0))
			return 0;
		if (rc != 0)
			return rc;
		rc = storage_del(txn, STORAGE_DB_INDEX, sv(kb, kl));
		if (rc != 0)
			return rc;
		(*affected)++;
	}
}

/* ------------------------------------------------------------ applying */

struct applier {
	struct storage_txn *txn;
	const struct proj_config *cfg;
	uint64_t seq;
	bool live;
	struct work w;
	struct opfail fl;
	struct proj_ids ids;
	struct proj_buf enc;
	uint64_t exploded_bytes; /* the entry's encoded id lists so far */
	struct proj_outcome *out;
};

static Explosion *new_explosion(void)
{
	Explosion *x = malloc(sizeof(*x));
	if (x != NULL)
		whizbang__v1__explosion__init(x);
	return x;
}

static void free_explosion(Explosion *x)
{
	if (x != NULL)
		whizbang__v1__explosion__free_unpacked(x, NULL);
}

/* Fills x (a new explosion) with the ids in a->ids and the plan. */
static int record_explosion(struct applier *a, Explosion **slot, const struct proj_plan *plan,
                            uint64_t examined, uint64_t us, bool created)
{
	Explosion *x = new_explosion();
	if (x == NULL)
		return WB_E_NOMEM;
	a->enc.len = 0;
	int rc = proj_idlist_encode(&a->ids, &a->enc);
	if (rc == 0 && a->live && a->cfg->max_explosion_bytes != 0 &&
	    a->exploded_bytes + a->enc.len > a->cfg->max_explosion_bytes) {
		free_explosion(x);
		return fail(
		        &a->fl, WB_QUERY_TOO_EXPENSIVE,
		        "the where clauses of this entry matched ids whose list takes %llu bytes, "
		        "more than --max-explosion-bytes (%llu): split the work into entries that "
		        "each match fewer entities",
		        (unsigned long long)(a->exploded_bytes + a->enc.len),
		        (unsigned long long)a->cfg->max_explosion_bytes);
	}
	a->exploded_bytes += a->enc.len;
	if (rc == 0 && a->enc.len > 0) {
		x->ids.data = malloc(a->enc.len);
		if (x->ids.data == NULL)
			rc = WB_E_NOMEM;
		else
			memcpy(x->ids.data, a->enc.p, a->enc.len);
		x->ids.len = a->enc.len;
	}
	x->count = a->ids.n;
	if (plan != NULL) {
		x->strategy = plan->strategy;
		/* One line: the steps joined by "; ". */
		size_t tl = strnlen(plan->text, sizeof(plan->text));
		while (tl > 0 && plan->text[tl - 1] == '\n')
			tl--;
		x->plan = malloc(2 * tl + 1);
		if (x->plan == NULL) {
			rc = WB_E_NOMEM;
		} else {
			/* Only the indentation of a step goes: spaces inside it
			 * may be inside a string literal of the clause. */
			size_t o = 0;
			bool indent = true;
			for (size_t i = 0; i < tl; i++) {
				if (plan->text[i] == '\n') {
					x->plan[o++] = ';';
					x->plan[o++] = ' ';
					indent = true;
				} else if (plan->text[i] != ' ' || !indent) {
					x->plan[o++] = plan->text[i];
					indent = false;
				}
			}
			x->plan[o] = '\0';
		}
	} else {
		x->strategy = WHIZBANG__V1__PLAN_STRATEGY__PLAN_ID;
	}
	x->examined = examined;
	/* The time is not stored: an entry must come out byte for byte the
	 * same when its log record is applied again (after a crash, or on
	 * another node). It goes to the explosion metrics instead. */
	(void)us;
	x->micros = 0;
	x->created = created;
	if (rc != 0) {
		free_explosion(x);
		return rc;
	}
	free_explosion(*slot);
	*slot = x;
	return 0;
}

/* The ids of a where op: evaluated (live) or taken from the record
 * (replay). */
static int where_ids(struct applier *a, struct tctx *t, const Whizbang__V1__Where *where,
                     Explosion **slot, bool *created_rec)
{
	*created_rec = false;
	proj_ids_clear(&a->ids);
	if (!a->live && *slot != NULL) {
		struct proj_idlist_iter it;
		proj_idlist_iter_init(&it, (*slot)->ids.data, (*slot)->ids.len);
		int r;
		while ((r = proj_idlist_next(&it)) == 1) {
			int rc = proj_ids_add(&a->ids, it.id, it.id_len);
			if (rc != 0)
				return rc;
		}
		if (r != 0 || a->ids.n != (*slot)->count)
			return fail(&a->fl, WB_INTERNAL, "the stored id list is corrupt");
		*created_rec = (*slot)->created;
		return 0;
	}
	if (where == NULL || where->expr == NULL)
		return fail(&a->fl, WB_INVALID_EXPRESSION, "a where clause with no expression");
	struct proj_plan plan;
	uint64_t examined = 0, t0 = now_us();
	int rc = explode_in(a->txn, t, where->expr, a->cfg, &a->ids, &plan, &examined);
	if (rc == WB_QUERY_TOO_EXPENSIVE) {
		char why[sizeof(a->fl.msg)];
		proj_refusal(&plan, t->type, a->cfg, why, sizeof(why));
		return fail(&a->fl, rc, "%s", why);
	}
	if (rc == WB_E_CORRUPT)
		return fail(&a->fl, WB_INTERNAL, "index or entity of %s is corrupt", t->type);
	if (rc != 0)
		return rc;
	uint64_t us = now_us() - t0;
	a->out->explosions++;
	a->out->exploded_ids += a->ids.n;
	a->out->explosion_us += us;
	return record_explosion(a, slot, &plan, examined, us, false);
}

static int apply_upsert(struct applier *a, const Whizbang__V1__Upsert *u)
{
	struct tctx t;
	int rc = tctx_load(a->txn, u->type, strlen(u->type), &t);
	if (rc != 0)
		return rc;
	struct proj_record old;
	bool found;
	size_t il = strlen(u->id);
	rc = load_entity(a->txn, &t, u->id, il, &a->w, &old, &found);
	if (rc == 0) {
		a->w.fs.n = 0;
		if (found && u->merge)
			rc = fs_load(&a->w.fs, &old);
	}
	if (rc == 0)
		rc = fs_add_pb(&a->w.fs, u->fields, u->n_fields, &a->fl);
	if (rc == 0)
		rc = store_entity(a->txn, &t, u->id, il, &a->w, found ? &old : NULL);
	if (rc == 0)
		rc = tctx_flush(a->txn, &t);
	if (rc == 0)
		a->out->affected++;
	tctx_free(&t);
	return rc;
}

static int apply_update(struct applier *a, Whizbang__V1__Update *u)
{
	struct tctx t;
	int rc = tctx_load(a->txn, u->type, strlen(u->type), &t);
	if (rc != 0)
		return rc;
	bool created_rec;
	rc = where_ids(a, &t, u->where, &u->exploded, &created_rec);
	for (size_t i = 0; rc == 0 && i < a->ids.n; i++) {
		size_t il;
		const uint8_t *id = proj_ids_get(&a->ids, i, &il);
		struct proj_record old;
		bool found;
		rc = load_entity(a->txn, &t, id, il, &a->w, &old, &found);
		if (rc == 0 && !found)
			rc = fail(&a->fl, WB_INTERNAL, "matched entity %s/%.*s is missing", t.type,
			          (int)il, (const char *)id);
		if (rc == 0)
			rc = fs_load(&a->w.fs, &old);
		if (rc == 0)
			rc = apply_actions(&a->w.fs, u->actions, u->n_actions, &a->fl);
		if (rc == 0)
			rc = store_entity(a->txn, &t, id, il, &a->w, &old);
	}
	if (rc == 0)
		a->out->affected += a->ids.n;
	/* create_if_none: nothing matched. Replay follows the record. */
	bool create = a->live ? a->ids.n == 0 && u->create_if_none != NULL : created_rec;
	if (rc == 0 && create) {
		const Whizbang__V1__CreateIfNone *c = u->create_if_none;
		if (c == NULL)
			rc = fail(&a->fl, WB_INTERNAL, "recorded creation without create_if_none");
		size_t il = rc == 0 ? strlen(c->id) : 0;
		struct proj_record old;
		bool found = false;
		if (rc == 0)
			rc = load_entity(a->txn, &t, c->id, il, &a->w, &old, &found);
		if (rc == 0 && found)
			rc = fail(&a->fl, WB_BAD_REQUEST,
			          "create %s/%s: the entity exists but did not match", t.type,
			          c->id);
		a->w.fs.n = 0;
		if (rc == 0)
			rc = fs_add_pb(&a->w.fs, c->fields, c->n_fields, &a->fl);
		if (rc == 0)
			rc = store_entity(a->txn, &t, c->id, il, &a->w, NULL);
		if (rc == 0) {
			a->out->affected++;
			if (a->live)
				u->exploded->created = true;
		}
	}
	if (rc == 0)
		rc = tctx_flush(a->txn, &t);
	tctx_free(&t);
	return rc;
}

static int apply_delete(struct applier *a, Whizbang__V1__Delete *d)
{
	struct tctx t;
	int rc = tctx_load(a->txn, d->type, strlen(d->type), &t);
	if (rc != 0)
		return rc;
	bool created_rec, deleted;
	if (d->target_case == WHIZBANG__V1__DELETE__TARGET_ID) {
		size_t il = strlen(d->id);
		rc = delete_entity(a->txn, &t, d->id, il, &a->w, &deleted);
		proj_ids_clear(&a->ids);
		if (rc == 0 && deleted)
			rc = proj_ids_add(&a->ids, d->id, il);
		if (rc == 0 && a->live)
			rc = record_explosion(a, &d->exploded, NULL, 1, 0, false);
		if (rc == 0)
			a->out->affected += deleted;
	} else {
		rc = where_ids(a, &t, d->where, &d->exploded, &created_rec);
		for (size_t i = 0; rc == 0 && i < a->ids.n; i++) {
			size_t il;
			const uint8_t *id = proj_ids_get(&a->ids, i, &il);
			rc = delete_entity(a->txn, &t, id, il, &a->w, &deleted);
			if (rc == 0 && !deleted)
				rc = fail(&a->fl, WB_INTERNAL, "matched entity %s/%.*s is missing",
				          t.type, (int)il, (const char *)id);
		}
		if (rc == 0)
			a->out->affected += a->ids.n;
	}
	if (rc == 0)
		rc = tctx_flush(a->txn, &t);
	tctx_free(&t);
	return rc;
}

static int apply_op(struct applier *a, Op *op)
{
	uint64_t n = 0;
	int rc;
	switch (op->kind_case) {
	case WHIZBANG__V1__OP__KIND_UPSERT:
		return apply_upsert(a, op->upsert);
	case WHIZBANG__V1__OP__KIND_UPDATE:
		return apply_update(a, op->update);
	case WHIZBANG__V1__OP__KIND_DELETE:
		return apply_delete(a, op->delete_);
	case WHIZBANG__V1__OP__KIND_CREATE_INDEX:
		rc = create_index(a->txn, op->create_index, a->seq, &a->fl, &n);
		return rc;
	case WHIZBANG__V1__OP__KIND_DROP_INDEX:
		return drop_index(a->txn, op->drop_index, &a->fl, &n);
	default:
		return fail(&a->fl, WB_BAD_REQUEST, "an op with no kind");
	}
}

/* A failure that follows from the ops and the state, and would recur on
 * every run: recorded in the entry rather than stalling the watermark. A
 * key or value the engine refuses (WB_E_INVAL) and a corrupt record are
 * such failures too; only a transaction that cannot go on (map full, no
 * memory, I/O) is not. */
static bool is_outcome(int rc)
{
	return (rc > 0 && rc <= WB_WIRE_MAX) || rc == WB_E_INVAL || rc == WB_E_CORRUPT;
}

/* Bytes op takes in a packed OpList: the tag of its field, its length and
 * itself. */
static uint64_t op_field_size(const Op *op)
{
	size_t n = whizbang__v1__op__get_packed_size(op);
	uint64_t s = 2 + (uint64_t)n; /* the tag, and the length's last byte */
	for (size_t v = n; v >= 0x80; v >>= 7)
		s++;
	return s;
}

/* True for an op that may grow when applied: it records an Explosion. */
static bool op_explodes(const Op *op)
{
	return op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE ||
	       op->kind_case == WHIZBANG__V1__OP__KIND_DELETE;
}

static void drop_explosions(OpList *l)
{
	for (size_t i = 0; i < l->n_ops; i++) {
		Op *op = l->ops[i];
		if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE) {
			free_explosion(op->update->exploded);
			op->update->exploded = NULL;
		} else if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE) {
			free_explosion(op->delete_->exploded);
			op->delete_->exploded = NULL;
		}
	}
}

int proj_apply(struct storage_txn *txn, uint64_t seq, const uint8_t *ops, size_t len,
               const struct proj_config *cfg, enum proj_mode mode, struct proj_buf *rewritten,
               struct proj_outcome *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0)
		return 0;
	OpList *l = whizbang__v1__op_list__unpack(NULL, len, ops);
	if (l == NULL) {
		out->error = WB_INTERNAL;
		snprintf(out->message, sizeof(out->message), "the stored ops do not decode");
		return 0;
	}
	out->ops = l->n_ops;
	if (mode == PROJ_REPLAY && l->applied && l->error_code != 0) {
		out->error = l->error_code;
		out->failed_op = l->failed_op;
		snprintf(out->message, sizeof(out->message), "%s", l->error_message);
		whizbang__v1__op_list__free_unpacked(l, NULL);
		return 0;
	}
	struct applier a = {.cfg = cfg, .seq = seq, .out = out};
	a.live = mode == PROJ_LIVE || !l->applied;
	a.w.fl = &a.fl;
	a.w.seq = seq;
	/* A child transaction makes the entry all or nothing. */
	int rc = storage_txn_begin(storage_txn_store(txn), txn, 0, &a.txn);
	if (rc != 0) {
		whizbang__v1__op_list__free_unpacked(l, NULL);
		return rc;
	}
	/* What the entry will take once stored back (max_entry_bytes): its
	 * names, applied (2 bytes: the outcome of a success has no other
	 * field) and its ops, each op that records an Explosion measured
	 * again once it applied. */
	bool sized = a.live && cfg->max_entry_bytes != 0;
	uint64_t size = 0;
	if (sized) {
		size = cfg->entry_names + 2;
		for (size_t k = 0; k < l->n_ops; k++)
			size += op_field_size(l->ops[k]);
	}
	uint32_t i = 0;
	for (; rc == 0 && i < l->n_ops; i++) {
		/* Ops were checked when committed; a first application checks
		 * again (the ledger may hold entries from an older server).
		 * Recorded explosions are the server's own and not checked. */
		if (a.live) {
			char msg[256];
			int c = proj_check_op(l->ops[i], msg, sizeof(msg));
			if (c != 0)
				rc = fail(&a.fl, c, "%s", msg);
		}
		bool grows = sized && op_explodes(l->ops[i]);
		uint64_t before = grows ? op_field_size(l->ops[i]) : 0;
		if (rc == 0)
			rc = apply_op(&a, l->ops[i]);
		if (rc == 0 && grows) {
			size = size - before + op_field_size(l->ops[i]);
			if (size > cfg->max_entry_bytes)
				rc = fail(
				        &a.fl, WB_QUERY_TOO_EXPENSIVE,
				        "applied, this entry would take %llu bytes (its ops with "
				        "the ids and plans their where clauses matched, and its "
				        "names), more than the %llu one reader's answer carries "
				        "(set by --max-frame): split the work over several leases",
				        (unsigned long long)size,
				        (unsigned long long)cfg->max_entry_bytes);
		}
	}
	if (rc != 0 && is_outcome(rc)) {
		storage_txn_abort(a.txn);
		if (a.fl.code == 0)
			snprintf(a.fl.msg, sizeof(a.fl.msg), "%s", wb_strerror(rc));
		out->error = a.fl.code != 0 ? a.fl.code : wb_error_to_wire(rc);
		out->failed_op = i;
		snprintf(out->message, sizeof(out->message), "%s", a.fl.msg);
		/* Nothing of the entry stays: neither do its figures. */
		out->affected = 0;
		out->explosions = 0;
		out->exploded_ids = 0;
		out->explosion_us = 0;
		drop_explosions(l);
		rc = 0;
	} else if (rc != 0) {
		storage_txn_abort(a.txn);
	} else {
		rc = storage_txn_commit(a.txn);
	}
	if (rc == 0 && a.live && rewritten != NULL) {
		l->applied = true;
		l->error_code = (Whizbang__V1__ErrorCode)out->error;
		l->failed_op = out->failed_op;
		if (out->error != 0) {
			l->error_message = strdup(out->message);
			if (l->error_message == NULL)
				rc = WB_E_NOMEM;
		}
		if (rc == 0) {
			size_t n = whizbang__v1__op_list__get_packed_size(l);
			rc = proj_buf_reserve(rewritten, n);
			if (rc == 0) {
				whizbang__v1__op_list__pack(l, rewritten->p + rewritten->len);
				rewritten->len += n;
			}
		}
	}
	work_free(&a.w);
	proj_ids_free(&a.ids);
	proj_buf_free(&a.enc);
	whizbang__v1__op_list__free_unpacked(l, NULL);
	return rc;
}

/* ------------------------------------------------------------ digests */

static const enum storage_db proj_dbs[] = {STORAGE_DB_ENTITIES, STORAGE_DB_INDEX,
                                           STORAGE_DB_PROJ_META};

int proj_digest(struct storage_txn *txn, uint8_t out[PROJ_DIGEST_LEN], uint64_t *entities)
{
	XXH3_state_t *st = XXH3_createState();
	if (st == NULL)
		return WB_E_NOMEM;
	XXH3_128bits_reset(st);
	uint64_t n = 0;
	int rc = 0;
	for (size_t d = 0; rc == 0 && d < sizeof(proj_dbs) / sizeof(proj_dbs[0]); d++) {
		struct storage_cursor *cur;
		rc = storage_cursor_open(txn, proj_dbs[d], &cur);
		if (rc != 0)
			break;
		uint8_t tag = (uint8_t)d;
		XXH3_128bits_update(st, &tag, 1);
		struct storage_val k, v;
		rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v);
		while (rc == 0) {
			uint8_t h[8];
			put_u32(h, (uint32_t)k.len);
			put_u32(h + 4, (uint32_t)v.len);
			XXH3_128bits_update(st, h, 8);
			XXH3_128bits_update(st, k.data, k.len);
			XXH3_128bits_update(st, v.data, v.len);
			if (proj_dbs[d] == STORAGE_DB_ENTITIES)
				n++;
			rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v);
		}
		storage_cursor_close(cur);
		if (rc == WB_E_NOTFOUND)
			rc = 0;
	}
	if (rc == 0) {
		XXH128_hash_t h = XXH3_128bits_digest(st);
		XXH128_canonical_t c;
		XXH128_canonicalFromHash(&c, h);
		memcpy(out, c.digest, PROJ_DIGEST_LEN);
		if (entities != NULL)
			*entities = n;
	}
	XXH3_freeState(st);
	return rc;
}

static void describe_key(enum storage_db db, const struct storage_val *k, char *buf, size_t len)
{
	const uint8_t *p = k->data;
	if (db == STORAGE_DB_ENTITIES) {
		const uint8_t *z = memchr(p, 0, k->len);
		size_t tl = z != NULL ? (size_t)(z - p) : k->len;
		snprintf(buf, len, "entity %.*s/%.*s", (int)tl, (const char *)p,
		         (int)(z != NULL ? k->len - tl - 1 : 0),
		         z != NULL ? (const char *)z + 1 : "");
	} else if (db == STORAGE_DB_INDEX) {
		size_t vl =
		        k->len > IDX_PREFIX ? proj_key_len(p + IDX_PREFIX, k->len - IDX_PREFIX) : 0;
		size_t o = IDX_PREFIX + vl;
		snprintf(buf, len, "index entry (index %u) of id %.*s",
		         k->len >= IDX_PREFIX ? get_u32(p) : 0, (int)(o <= k->len ? k->len - o : 0),
		         o <= k->len ? (const char *)p + o : "");
	} else if (k->len > 0 && p[0] == 'c') {
		snprintf(buf, len, "entity count of type %.*s", (int)k->len - 1,
		         (const char *)p + 1);
	} else if (k->len > 0 && p[0] == 'i') {
		const uint8_t *z = memchr(p + 1, 0, k->len - 1);
		size_t tl = z != NULL ? (size_t)(z - p - 1) : k->len - 1;
		snprintf(buf, len, "index definition %.*s.%.*s", (int)tl, (const char *)p + 1,
		         (int)(z != NULL ? k->len - tl - 2 : 0),
		         z != NULL ? (const char *)z + 1 : "");
	} else {
		snprintf(buf, len, "read-model metadata key %.*s", (int)k->len, (const char *)p);
	}
}

static void describe_values(enum storage_db db, const struct storage_val *a,
                            const struct storage_val *b, const char *an, const char *bn, char *buf,
                            size_t len)
{
	struct proj_record ra, rb;
	if (db == STORAGE_DB_ENTITIES && proj_record_decode(a->data, a->len, &ra) == 0 &&
	    proj_record_decode(b->data, b->len, &rb) == 0) {
		if (ra.version != rb.version)
			snprintf(buf, len, "version %llu in %s, %llu in %s",
			         (unsigned long long)ra.version, an, (unsigned long long)rb.version,
			         bn);
		else if (ra.updated_seq != rb.updated_seq || ra.created_seq != rb.created_seq)
			snprintf(buf, len, "sequences %llu/%llu in %s, %llu/%llu in %s",
			         (unsigned long long)ra.created_seq,
			         (unsigned long long)ra.updated_seq, an,
			         (unsigned long long)rb.created_seq,
			         (unsigned long long)rb.updated_seq, bn);
		else
			snprintf(buf, len, "fields differ (%u in %s, %u in %s)", ra.nfields, an,
			         rb.nfields, bn);
		return;
	}
	snprintf(buf, len, "values differ (%zu bytes in %s, %zu in %s)", a->len, an, b->len, bn);
}

int proj_diff(struct storage_txn *a, struct storage_txn *b, const char *a_name, const char *b_name,
              char *msg, size_t len)
{
	int rc = 0, found = 0;
	msg[0] = 0;
	for (size_t d = 0; rc == 0 && !found && d < sizeof(proj_dbs) / sizeof(proj_dbs[0]); d++) {
		struct storage_cursor *ca, *cb;
		rc = storage_cursor_open(a, proj_dbs[d], &ca);
		if (rc != 0)
			break;
		rc = storage_cursor_open(b, proj_dbs[d], &cb);
		if (rc != 0) {
			storage_cursor_close(ca);
			break;
		}
		struct storage_val ka, va, kb, vb;
		int ra = storage_cursor_get(ca, STORAGE_FIRST, &ka, &va);
		int rb = storage_cursor_get(cb, STORAGE_FIRST, &kb, &vb);
		char what[600], how[256];
		while (!found) {
			if ((ra != 0 && ra != WB_E_NOTFOUND) || (rb != 0 && rb != WB_E_NOTFOUND)) {
				rc = ra != 0 && ra != WB_E_NOTFOUND ? ra : rb;
				break;
			}
			if (ra == WB_E_NOTFOUND && rb == WB_E_NOTFOUND)
				break;
			int c = ra == WB_E_NOTFOUND   ? 1
			        : rb == WB_E_NOTFOUND ? -1
			                              : idcmp(ka.data, ka.len, kb.data, kb.len);
			if (c == 0 && va.len == vb.len && memcmp(va.data, vb.data, va.len) == 0) {
				ra = storage_cursor_get(ca, STORAGE_NEXT, &ka, &va);
				rb = storage_cursor_get(cb, STORAGE_NEXT, &kb, &vb);
				continue;
			}
			found = 1;
			if (c == 0) {
				describe_key(proj_dbs[d], &ka, what, sizeof(what));
				describe_values(proj_dbs[d], &va, &vb, a_name, b_name, how,
				                sizeof(how));
				snprintf(msg, len, "%s: %s", what, how);
			} else {
				describe_key(proj_dbs[d], c < 0 ? &ka : &kb, what, sizeof(what));
				snprintf(msg, len, "%s: only in %s", what, c < 0 ? a_name : b_name);
			}
		}
		storage_cursor_close(ca);
		storage_cursor_close(cb);
	}
	return rc != 0 ? rc : found;
}

int proj_clear(struct storage_txn *txn)
{
	int rc = 0;
	for (size_t d = 0; rc == 0 && d < sizeof(proj_dbs) / sizeof(proj_dbs[0]); d++)
		rc = storage_clear(txn, proj_dbs[d]);
	return rc;
}
