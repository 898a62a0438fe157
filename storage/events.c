#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "codec.h"
#include "meta.h"
#include "utf8.h"

static const char KEY_LAST_POSITION[] = "last_position";
static const char KEY_NEXT_STREAM_ID[] = "next_stream_id";

/* ---------------------------------------------------------------- the cache
 *
 * A write transaction's appends read and rewrite the same few records: the
 * stream record of each stream written and meta "last_position". A batch of
 * appends runs in one transaction (storage/writer.c), so they are kept in a
 * write-back cache that lives as long as the transaction
 * (storage_txn_ext()): read from the store once, written back once, before
 * the commit or before a nested child begins. Every read of these records
 * in a write transaction goes through it, so the transaction sees its own
 * writes; read transactions never have one. */

#define CACHE_STREAMS 64u

struct cache_stream {
	struct ev_stream_info info;
	size_t len;
	bool dirty; /* the stream record is to be written back */
	char name[EV_STREAM_MAX];
};

struct cache {
	bool have_last, last_dirty;
	uint64_t last;
	size_t n;
	struct cache_stream s[CACHE_STREAMS];
};

static int put_stream(struct storage_txn *txn, const char *stream, size_t len,
                      const struct ev_stream_info *in);

static int cache_write_back(struct storage_txn *txn, struct cache *c)
{
	for (size_t i = 0; i < c->n; i++) {
		struct cache_stream *e = &c->s[i];
		if (!e->dirty)
			continue;
		int rc = put_stream(txn, e->name, e->len, &e->info);
		if (rc != 0)
			return rc;
		e->dirty = false;
	}
	if (c->last_dirty) {
		int rc = meta_put_u64(txn, KEY_LAST_POSITION, c->last);
		if (rc != 0)
			return rc;
		c->last_dirty = false;
	}
	return 0;
}

static int cache_flush(struct storage_txn *txn, void *state)
{
	return cache_write_back(txn, state);
}

static const struct storage_txn_ext cache_kind = {.flush = cache_flush, .release = free};

/* txn's cache; with create, a new one when it has none (NULL: no memory, or
 * none and not create). */
static struct cache *cache_of(struct storage_txn *txn, bool create)
{
	struct cache *c = storage_txn_ext(txn, &cache_kind);
	if (c == NULL && create) {
		c = malloc(sizeof(*c));
		if (c != NULL) {
			c->have_last = c->last_dirty = false;
			c->n = 0;
			storage_txn_set_ext(txn, &cache_kind, c);
		}
	}
	return c;
}

static struct cache_stream *cache_find(struct cache *c, const char *stream, size_t len)
{
	for (size_t i = 0; c != NULL && i < c->n; i++) {
		struct cache_stream *e = &c->s[i];
		if (e->len == len && memcmp(e->name, stream, len) == 0)
			return e;
	}
	return NULL;
}

/* Adds stream to c, writing the cache back first when it is full. A name
 * longer than any valid one (a record of a hostile log) is not cached: a
 * dirty record is written through. */
static int cache_add(struct storage_txn *txn, struct cache *c, const char *stream, size_t len,
                     const struct ev_stream_info *info, bool dirty)
{
	if (len > sizeof(c->s[0].name))
		return dirty ? put_stream(txn, stream, len, info) : 0;
	if (c->n == CACHE_STREAMS) {
		int rc = cache_write_back(txn, c);
		if (rc != 0)
			return rc;
		c->n = 0;
	}
	struct cache_stream *e = &c->s[c->n++];
	e->info = *info;
	e->len = len;
	e->dirty = dirty;
	memcpy(e->name, stream, len);
	return 0;
}

static int check_name(const char *what, const char *s, size_t len, size_t max, char *errmsg,
                      size_t errlen)
{
	if (len == 0) {
		snprintf(errmsg, errlen, "the %s is empty: give 1 to %zu bytes", what, max);
		return WB_BAD_REQUEST;
	}
	if (len > max) {
		snprintf(errmsg, errlen, "the %s is %zu bytes long: at most %zu are allowed", what,
		         len, max);
		return WB_BAD_REQUEST;
	}
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		if (p[i] < 0x20 || p[i] == 0x7F) {
			snprintf(errmsg, errlen,
			         "the %s holds a control character (byte 0x%02x at offset %zu)",
			         what, p[i], i);
			return WB_BAD_REQUEST;
		}
		size_t k = utf8_seq(p + i, len - i);
		if (k == 2 && p[i] == 0xC2 && p[i + 1] < 0xA0) {
			snprintf(errmsg, errlen,
			         "the %s holds a control character (U+%04X at offset %zu)", what,
			         (unsigned)p[i + 1], i);
			return WB_BAD_REQUEST;
		}
		if (k == 0) {
			snprintf(errmsg, errlen, "the %s is not valid UTF-8 (at byte offset %zu)",
			         what, i);
			return WB_BAD_REQUEST;
		}
		i += k;
	}
	return 0;
}

int ev_check_stream_name(const char *name, size_t len, char *errmsg, size_t errlen)
{
	return check_name("stream name", name, len, EV_STREAM_MAX, errmsg, errlen);
}

int ev_check_type(const char *type, size_t len, char *errmsg, size_t errlen)
{
	return check_name("event type", type, len, EV_TYPE_MAX, errmsg, errlen);
}

void ev_uuid7(uint8_t out[EV_ID_LEN], uint64_t now_ms)
{
	uint8_t rnd[10];
	size_t got = 0;
	while (got < sizeof(rnd)) {
		ssize_t r = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (r > 0)
			got += (size_t)r;
	}
	out[0] = (uint8_t)(now_ms >> 40);
	out[1] = (uint8_t)(now_ms >> 32);
	out[2] = (uint8_t)(now_ms >> 24);
	out[3] = (uint8_t)(now_ms >> 16);
	out[4] = (uint8_t)(now_ms >> 8);
	out[5] = (uint8_t)now_ms;
	out[6] = (uint8_t)(0x70 | (rnd[0] & 0x0F));
	out[7] = rnd[1];
	out[8] = (uint8_t)(0x80 | (rnd[2] & 0x3F));
	memcpy(out + 9, rnd + 3, 7);
}

int ev_last_position(struct storage_txn *txn, uint64_t *out)
{
	struct cache *c = cache_of(txn, false);
	if (c != NULL && c->have_last) {
		*out = c->last;
		return 0;
	}
	return meta_get_u64(txn, KEY_LAST_POSITION, 0, out);
}

#define META_RECORD 48u
#define META_HARD 0x1u

/* Soft-deleted and not written since. */
static void derive_deleted(struct ev_stream_info *info)
{
	info->deleted = !info->tombstoned && info->deleted_before > 0 &&
	                info->deleted_before >= info->count;
}

/* After put_meta(): the cached copy of the stream, if any, takes info's
 * metadata (the stream record itself is unchanged). */
static void cache_meta_changed(struct storage_txn *txn, const char *stream, size_t len,
                               const struct ev_stream_info *info)
{
	struct cache_stream *e = cache_find(cache_of(txn, false), stream, len);
	if (e != NULL) {
		e->info.meta = info->meta;
		e->info.deleted_before = info->deleted_before;
		e->info.tombstoned = info->tombstoned;
		derive_deleted(&e->info);
	}
}

/* Reads the stream metadata record of info->stream_id into info (zeros when
 * there is none). */
static int get_meta(struct storage_txn *txn, struct ev_stream_info *info)
{
	uint8_t kb[8];
	put_u64(kb, info->stream_id);
	struct storage_val k = {kb, 8};
	struct storage_val v;
	memset(&info->meta, 0, sizeof(info->meta));
	info->deleted_before = 0;
	info->tombstoned = false;
	int rc = storage_get(txn, STORAGE_DB_STREAM_META, k, &v);
	if (rc == WB_E_NOTFOUND)
		rc = 0;
	else if (rc == 0) {
		const uint8_t *p = v.data;
		if (v.len != META_RECORD || p[0] != 1 || (p[1] & ~META_HARD) != 0)
			return WB_E_CORRUPT;
		info->tombstoned = (p[1] & META_HARD) != 0;
		info->meta.max_count = get_u64(p + 8);
		info->meta.max_age_ms = get_u64(p + 16);
		info->meta.truncate_before = get_u64(p + 24);
		info->deleted_before = get_u64(p + 32);
	}
	derive_deleted(info);
	return rc;
}

static int put_meta(struct storage_txn *txn, const struct ev_stream_info *info)
{
	uint8_t kb[8];
	put_u64(kb, info->stream_id);
	struct storage_val k = {kb, 8};
	if (!info->tombstoned && info->deleted_before == 0 && info->meta.max_count == 0 &&
	    info->meta.max_age_ms == 0 && info->meta.truncate_before == 0) {
		int rc = storage_del(txn, STORAGE_DB_STREAM_META, k);
		return rc == WB_E_NOTFOUND ? 0 : rc;
	}
	uint8_t p[META_RECORD] = {1};
	p[1] = info->tombstoned ? META_HARD : 0;
	put_u64(p + 8, info->meta.max_count);
	put_u64(p + 16, info->meta.max_age_ms);
	put_u64(p + 24, info->meta.truncate_before);
	put_u64(p + 32, info->deleted_before);
	struct storage_val v = {p, sizeof(p)};
	return storage_put(txn, STORAGE_DB_STREAM_META, k, v, 0);
}

static int get_stream(struct storage_txn *txn, const char *stream, size_t len,
                      struct ev_stream_info *out)
{
	struct cache *c = cache_of(txn, false);
	struct cache_stream *e = cache_find(c, stream, len);
	if (e != NULL) {
		*out = e->info;
		return 0;
	}
	struct storage_val k = {stream, len};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_STREAMS, k, &v);
	if (rc != 0)
		return rc;
	const uint8_t *p = v.data;
	if (v.len != EV_STREAM_RECORD || p[0] != 1)
		return WB_E_CORRUPT;
	out->stream_id = get_u64(p + 8);
	out->count = get_u64(p + 16);
	out->first_position = get_u64(p + 24);
	out->last_position = get_u64(p + 32);
	out->created_us = get_u64(p + 40);
	out->updated_us = get_u64(p + 48);
	rc = get_meta(txn, out);
	if (rc == 0 && c != NULL)
		rc = cache_add(txn, c, stream, len, out, false);
	return rc;
}

uint64_t ev_visible_from(const struct ev_stream_info *info)
{
	uint64_t start = info->meta.truncate_before;
	if (info->deleted_before > start)
		start = info->deleted_before;
	if (info->meta.max_count > 0 && info->count > info->meta.max_count &&
	    info->count - info->meta.max_count > start)
		start = info->count - info->meta.max_count;
	return start;
}

static bool too_old(const struct ev_stream_info *info, uint64_t timestamp_us, uint64_t now_us)
{
	uint64_t max_age = info->meta.max_age_ms;
	if (max_age == 0 || timestamp_us >= now_us)
		return false;
	/* Saturates: an age limit beyond the clock's range hides nothing. */
	if (max_age > UINT64_MAX / 1000)
		return false;
	return now_us - timestamp_us > max_age * 1000;
}

bool ev_readable(const struct ev_stream_info *info, const struct ev_record *rec, uint64_t now_us)
{
	if (info->tombstoned || rec->version < ev_visible_from(info))
		return false;
	return !too_old(info, rec->timestamp_us, now_us);
}

static int put_stream(struct storage_txn *txn, const char *stream, size_t len,
                      const struct ev_stream_info *in)
{
	uint8_t p[EV_STREAM_RECORD] = {1};
	put_u64(p + 8, in->stream_id);
	put_u64(p + 16, in->count);
	put_u64(p + 24, in->first_position);
	put_u64(p + 32, in->last_position);
	put_u64(p + 40, in->created_us);
	put_u64(p + 48, in->updated_us);
	struct storage_val k = {stream, len};
	struct storage_val v = {p, sizeof(p)};
	return storage_put(txn, STORAGE_DB_STREAMS, k, v, 0);
}

int ev_stream_info(struct storage_txn *txn, const char *stream, size_t stream_len,
                   struct ev_stream_info *out)
{
	return get_stream(txn, stream, stream_len, out);
}

int ev_decode(uint64_t position, const uint8_t *v, size_t len, struct ev_record *out)
{
	if (len < EV_RECORD_HEADER || v[0] != 1)
		return WB_E_CORRUPT;
	size_t name_len = v[1];
	size_t type_len = get_u16(v + 2);
	size_t data_len = get_u32(v + 4);
	size_t meta_len = get_u32(v + 8);
	/* Each term is below 2^32, so the sum cannot overflow size_t. */
	if (len != EV_RECORD_HEADER + name_len + type_len + data_len + meta_len)
		return WB_E_CORRUPT;
	out->position = position;
	out->version = get_u64(v + 12);
	out->timestamp_us = get_u64(v + 20);
	out->id = v + 28;
	const uint8_t *p = v + EV_RECORD_HEADER;
	out->stream = (const char *)p;
	out->stream_len = name_len;
	p += name_len;
	out->type = (const char *)p;
	out->type_len = type_len;
	p += type_len;
	out->data = p;
	out->data_len = data_len;
	p += data_len;
	out->meta = p;
	out->meta_len = meta_len;
	return 0;
}

int ev_get(struct storage_txn *txn, uint64_t position, struct ev_record *out)
{
	uint8_t kb[8];
	put_u64(kb, position);
	struct storage_val k = {kb, 8};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_EVENTS, k, &v);
	if (rc != 0)
		return rc;
	return ev_decode(position, v.data, v.len, out);
}

/* Reads the position stored under key in db (event_ids, stream_events). */
static int get_position(struct storage_txn *txn, enum storage_db db, struct storage_val key,
                        uint64_t *position)
{
	struct storage_val v;
	int rc = storage_get(txn, db, key, &v);
	if (rc != 0)
		return rc;
	if (v.len != 8)
		return WB_E_CORRUPT;
	*position = get_u64(v.data);
	return 0;
}

int ev_position_of_id(struct storage_txn *txn, const uint8_t id[EV_ID_LEN], uint64_t *position)
{
	return get_position(txn, STORAGE_DB_EVENT_IDS, (struct storage_val){id, EV_ID_LEN},
	                    position);
}

int ev_position_at(struct storage_txn *txn, uint64_t stream_id, uint64_t version,
                   uint64_t *position)
{
	uint8_t kb[16];
	put_u64(kb, stream_id);
	put_u64(kb + 8, version);
	return get_position(txn, STORAGE_DB_STREAM_EVENTS, (struct storage_val){kb, 16}, position);
}

static void format_id(const uint8_t id[EV_ID_LEN], char out[33])
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < EV_ID_LEN; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[32] = '\0';
}

static int id_position(struct storage_txn *txn, const uint8_t *id, uint64_t *pos)
{
	struct storage_val k = {id, EV_ID_LEN};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_EVENT_IDS, k, &v);
	if (rc != 0)
		return rc;
	if (v.len != 8)
		return WB_E_CORRUPT;
	*pos = get_u64(v.data);
	return 0;
}

/* The first event's id is stored already: the append is a retry when every
 * event is stored, in this stream, at consecutive versions in order. */
static int check_replay(struct storage_txn *txn, const char *stream, size_t stream_len,
                        const struct ev_new *evs, size_t n, uint64_t first_pos,
                        struct ev_append_result *out)
{
	char idtext[33];
	uint64_t version = 0;
	uint64_t pos = first_pos;

	for (size_t i = 0; i < n; i++) {
		int rc = 0;
		if (evs[i].id == NULL) {
			snprintf(out->errmsg, sizeof(out->errmsg),
			         "event %zu has no id while event 0's id is already stored: "
			         "a retry must carry the same ids",
			         i);
			return WB_IDEMPOTENCY_CONFLICT;
		}
		if (i > 0)
			rc = id_position(txn, evs[i].id, &pos);
		format_id(evs[i].id, idtext);
		if (rc == WB_E_NOTFOUND) {
			snprintf(out->errmsg, sizeof(out->errmsg),
			         "the append mixes stored and new event ids (event %zu, id %s, "
			         "is new; event 0 is stored): retry with exactly the original "
			         "events or use new ids",
			         i, idtext);
			return WB_IDEMPOTENCY_CONFLICT;
		}
		if (rc != 0)
			return rc;
		struct ev_record rec;
		rc = ev_get(txn, pos, &rec);
		if (rc != 0)
			return rc == WB_E_NOTFOUND ? WB_E_CORRUPT : rc;
		if (rec.stream_len != stream_len || memcmp(rec.stream, stream, stream_len) != 0) {
			snprintf(out->errmsg, sizeof(out->errmsg),
			         "event id %s is already stored in stream '%.*s' at position %llu",
			         idtext, (int)rec.stream_len, rec.stream, (unsigned long long)pos);
			return WB_IDEMPOTENCY_CONFLICT;
		}
		if (i == 0) {
			version = rec.version;
			out->first_position = pos;
		} else if (rec.version != version + i) {
			snprintf(out->errmsg, sizeof(out->errmsg),
			         "event id %s is stored in this stream but not in the order of "
			         "this append (version %llu)",
			         idtext, (unsigned long long)rec.version);
			return WB_IDEMPOTENCY_CONFLICT;
		}
		out->last_position = pos;
		out->stream_version = rec.version;
	}
	out->replay = true;
	return 0;
}

static int check_expected(bool exists, const struct ev_stream_info *info, enum ev_expected expected,
                          uint64_t expected_version, struct ev_append_result *out)
{
	/* A soft-deleted stream counts as absent, except that its last version
	 * before the delete is still a valid exact expectation: versions
	 * continue, and a client that knew them may go on. */
	bool live = exists && !info->deleted;
	int64_t actual = live ? (int64_t)(info->count - 1) : -1;
	bool ok;

	switch (expected) {
	case EV_EXPECT_ANY:
		ok = true;
		break;
	case EV_EXPECT_NO_STREAM:
		ok = !live;
		break;
	case EV_EXPECT_EXISTS:
		ok = live;
		break;
	case EV_EXPECT_EXACT:
		ok = exists && info->count - 1 == expected_version;
		break;
	default:
		snprintf(out->errmsg, sizeof(out->errmsg), "unknown expected-version kind %d",
		         (int)expected);
		return WB_BAD_REQUEST;
	}
	if (ok)
		return 0;
	out->actual_version = actual;
	if (live)
		snprintf(out->errmsg, sizeof(out->errmsg),
		         "the stream is at version %lld, not at the expected one: re-read it "
		         "and decide again",
		         (long long)actual);
	else if (exists)
		snprintf(out->errmsg, sizeof(out->errmsg),
		         "the stream is soft-deleted (its last version was %llu): append with "
		         "NO_STREAM, ANY or exactly that version to write it again",
		         (unsigned long long)(info->count - 1));
	else
		snprintf(out->errmsg, sizeof(out->errmsg),
		         "the stream does not exist but the append expected it to");
	return WB_WRONG_EXPECTED_VERSION;
}

static int put_event(struct storage_txn *txn, const char *stream, size_t stream_len,
                     const struct ev_new *ev, const uint8_t *id, uint64_t stream_id,
                     uint64_t position, uint64_t version, uint64_t now_us, bool put_id,
                     uint8_t *scratch, size_t scratch_len)
{
	size_t len = EV_RECORD_HEADER + stream_len + ev->type_len + ev->data_len + ev->meta_len;
	uint8_t *rec = len <= scratch_len ? scratch : malloc(len);
	if (rec == NULL)
		return WB_E_NOMEM;
	rec[0] = 1;
	rec[1] = (uint8_t)stream_len;
	put_u16(rec + 2, (uint16_t)ev->type_len);
	put_u32(rec + 4, (uint32_t)ev->data_len);
	put_u32(rec + 8, (uint32_t)ev->meta_len);
	put_u64(rec + 12, version);
	put_u64(rec + 20, now_us);
	memcpy(rec + 28, id, EV_ID_LEN);
	uint8_t *p = rec + EV_RECORD_HEADER;
	memcpy(p, stream, stream_len);
	p += stream_len;
	memcpy(p, ev->type, ev->type_len);
	p += ev->type_len;
	if (ev->data_len > 0)
		memcpy(p, ev->data, ev->data_len);
	p += ev->data_len;
	if (ev->meta_len > 0)
		memcpy(p, ev->meta, ev->meta_len);

	uint8_t kpos[8];
	put_u64(kpos, position);
	struct storage_val k = {kpos, 8};
	struct storage_val v = {rec, len};
	int rc = storage_put(txn, STORAGE_DB_EVENTS, k, v, STORAGE_APPEND);
	if (rec != scratch)
		free(rec);
	if (rc != 0)
		return rc;

	uint8_t kse[16];
	put_u64(kse, stream_id);
	put_u64(kse + 8, version);
	k = (struct storage_val){kse, 16};
	v = (struct storage_val){kpos, 8};
	rc = storage_put(txn, STORAGE_DB_STREAM_EVENTS, k, v, 0);
	if (rc != 0 || !put_id)
		return rc;

	k = (struct storage_val){id, EV_ID_LEN};
	return storage_put(txn, STORAGE_DB_EVENT_IDS, k, v, STORAGE_NOOVERWRITE);
}

int ev_append(struct storage_txn *txn, const char *stream, size_t stream_len,
              enum ev_expected expected, uint64_t expected_version, const struct ev_new *evs,
              size_t n, uint64_t now_us, struct ev_append_result *out)
{
	struct ev_stream_info info = {0};
	uint8_t scratch[1024];
	int rc;

	memset(out, 0, sizeof(*out));
	out->actual_version = -1;
	if (n == 0) {
		snprintf(out->errmsg, sizeof(out->errmsg), "an append needs at least one event");
		return WB_BAD_REQUEST;
	}
	/* The loop checked these; a record from a hostile log may not have
	 * been, and the record format holds the name's length in one byte. */
	if (stream_len == 0 || stream_len > EV_STREAM_MAX) {
		snprintf(out->errmsg, sizeof(out->errmsg), "the stream name is %zu bytes long",
		         stream_len);
		return WB_BAD_REQUEST;
	}
	for (size_t i = 0; i < n; i++)
		if (evs[i].type_len > EV_TYPE_MAX) {
			snprintf(out->errmsg, sizeof(out->errmsg),
			         "event %zu's type is %zu bytes long", i, evs[i].type_len);
			return WB_BAD_REQUEST;
		}

	struct cache *c = cache_of(txn, true); /* NULL: written through */
	rc = get_stream(txn, stream, stream_len, &info);
	if (rc != 0 && rc != WB_E_NOTFOUND)
		return rc;
	bool exists = rc == 0;
	if (exists && info.tombstoned) {
		snprintf(out->errmsg, sizeof(out->errmsg),
		         "the stream is hard-deleted: it can never be written again");
		return WB_STREAM_DELETED;
	}

	uint64_t last;
	rc = ev_last_position(txn, &last);
	if (rc != 0)
		return rc;

	/* Event 0's id is claimed first, with the position it is to get: one
	 * B-tree descent where a look-up and a later put would cost two. A
	 * stored id makes the append a retry or a conflict; the put then
	 * changed nothing. Any error after the claim is aborted with the
	 * transaction, as the contract says. */
	if (evs[0].id != NULL) {
		uint8_t kpos[8];
		put_u64(kpos, last + 1);
		rc = storage_put(txn, STORAGE_DB_EVENT_IDS,
		                 (struct storage_val){evs[0].id, EV_ID_LEN},
		                 (struct storage_val){kpos, 8}, STORAGE_NOOVERWRITE);
		if (rc == WB_E_KEYEXIST) {
			uint64_t pos;
			rc = id_position(txn, evs[0].id, &pos);
			if (rc != 0)
				return rc == WB_E_NOTFOUND ? WB_E_CORRUPT : rc;
			return check_replay(txn, stream, stream_len, evs, n, pos, out);
		}
		if (rc != 0)
			return rc;
	}

	rc = check_expected(exists, &info, expected, expected_version, out);
	if (rc != 0)
		return rc;
	if (!exists) {
		rc = meta_get_u64(txn, KEY_NEXT_STREAM_ID, 1, &info.stream_id);
		if (rc == 0)
			rc = meta_put_u64(txn, KEY_NEXT_STREAM_ID, info.stream_id + 1);
		if (rc != 0)
			return rc;
		info.count = 0;
		info.first_position = last + 1;
		info.created_us = now_us;
	}

	for (size_t i = 0; i < n; i++) {
		uint8_t gen[EV_ID_LEN];
		const uint8_t *id = evs[i].id;
		if (id == NULL) {
			ev_uuid7(gen, now_us / 1000);
			id = gen;
		}
		rc = put_event(txn, stream, stream_len, &evs[i], id, info.stream_id, last + 1 + i,
		               info.count + i, now_us, i > 0 || evs[0].id == NULL, scratch,
		               sizeof(scratch));
		if (rc == WB_E_KEYEXIST) {
			char idtext[33];
			format_id(id, idtext);
			snprintf(out->errmsg, sizeof(out->errmsg),
			         "event id %s (event %zu) is already stored, in another stream, "
			         "earlier in this append, or by an append that did not carry "
			         "all of these events: use new ids or retry the original append "
			         "exactly",
			         idtext, i);
			return WB_IDEMPOTENCY_CONFLICT;
		}
		if (rc != 0)
			return rc;
	}

	out->first_position = last + 1;
	out->last_position = last + n;
	out->stream_version = info.count + n - 1;
	info.count += n;
	info.last_position = last + n;
	info.updated_us = now_us;
	derive_deleted(&info);
	if (c == NULL) {
		rc = put_stream(txn, stream, stream_len, &info);
		return rc != 0 ? rc : meta_put_u64(txn, KEY_LAST_POSITION, last + n);
	}
	c->last = last + n;
	c->have_last = c->last_dirty = true;
	struct cache_stream *e = cache_find(c, stream, stream_len);
	if (e == NULL)
		return cache_add(txn, c, stream, stream_len, &info, true);
	e->info = info;
	e->dirty = true;
	return 0;
}

int ev_read_stream_at(struct storage_txn *txn, const char *stream, size_t stream_len, uint64_t from,
                      bool backwards, uint32_t max_count, uint64_t now_us, ev_visit_fn visit,
                      void *arg, struct ev_page *page)
{
	struct ev_stream_info info;
	struct storage_cursor *cur;
	uint8_t kb[16];
	struct storage_val k = {kb, 16};
	struct storage_val v;

	int rc = get_stream(txn, stream, stream_len, &info);
	if (rc != 0)
		return rc;
	if (info.tombstoned)
		return WB_STREAM_DELETED;
	if (info.deleted)
		return WB_E_NOTFOUND;
	uint64_t first = ev_visible_from(&info);
	page->count = 0;
	page->last = info.count - 1;
	page->next = from;
	page->end = true;
	if (!backwards && from < first)
		from = page->next = first;
	if (info.count == 0 || max_count == 0 || (!backwards && from >= info.count) ||
	    (backwards && from < first))
		return 0;

	rc = storage_cursor_open(txn, STORAGE_DB_STREAM_EVENTS, &cur);
	if (rc != 0)
		return rc;
	uint64_t start = backwards && from > info.count - 1 ? info.count - 1 : from;
	put_u64(kb, info.stream_id);
	put_u64(kb + 8, start);
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &k, &v);
	if (backwards) {
		/* SET_RANGE lands on the first key >= start; step back when it
		 * went past start or past this stream. */
		if (rc == WB_E_NOTFOUND)
			rc = storage_cursor_get(cur, STORAGE_LAST, &k, &v);
		else if (rc == 0 && (k.len != 16 || memcmp(k.data, kb, 16) > 0))
			rc = storage_cursor_get(cur, STORAGE_PREV, &k, &v);
	}
	while (rc == 0) {
		if (k.len != 16 || v.len != 8) {
			rc = WB_E_CORRUPT;
			break;
		}
		if (get_u64(k.data) != info.stream_id)
			break;
		uint64_t version = get_u64((const uint8_t *)k.data + 8);
		/* Below the effective start (not yet scavenged): the stream
		 * ends here for a backward read. */
		if (version < first)
			break;
		if (page->count == max_count) {
			page->end = false;
			page->next = version;
			break;
		}
		struct ev_record rec;
		rc = ev_get(txn, get_u64(v.data), &rec);
		if (rc != 0) {
			if (rc == WB_E_NOTFOUND)
				rc = WB_E_CORRUPT;
			break;
		}
		if (!too_old(&info, rec.timestamp_us, now_us)) {
			if (!visit(&rec, arg)) {
				page->end = false;
				page->next = version;
				break;
			}
			page->count++;
		}
		if (backwards && version == 0) {
			page->next = 0;
			break;
		}
		page->next = backwards ? version - 1 : version + 1;
		rc = storage_cursor_get(cur, backwards ? STORAGE_PREV : STORAGE_NEXT, &k, &v);
	}
	storage_cursor_close(cur);
	if (rc == WB_E_NOTFOUND)
		rc = 0;
	return rc;
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int ev_read_stream(struct storage_txn *txn, const char *stream, size_t stream_len, uint64_t from,
                   bool backwards, uint32_t max_count, ev_visit_fn visit, void *arg,
                   struct ev_page *page)
{
	return ev_read_stream_at(txn, stream, stream_len, from, backwards, max_count, wall_us(),
	                         visit, arg, page);
}

int ev_set_stream_meta(struct storage_txn *txn, const char *stream, size_t stream_len,
                       const struct ev_stream_meta *meta)
{
	struct ev_stream_info info;
	int rc = get_stream(txn, stream, stream_len, &info);
	if (rc != 0)
		return rc;
	if (info.tombstoned)
		return WB_STREAM_DELETED;
	info.meta = *meta;
	rc = put_meta(txn, &info);
	if (rc == 0)
		cache_meta_changed(txn, stream, stream_len, &info);
	return rc;
}

int ev_delete_stream(struct storage_txn *txn, const char *stream, size_t stream_len, bool hard,
                     uint64_t *last_version)
{
	struct ev_stream_info info;
	int rc = get_stream(txn, stream, stream_len, &info);
	if (rc != 0)
		return rc;
	if (info.tombstoned)
		return WB_STREAM_DELETED;
	info.deleted_before = info.count;
	info.tombstoned = hard;
	rc = put_meta(txn, &info);
	if (rc == 0)
		cache_meta_changed(txn, stream, stream_len, &info);
	if (rc == 0)
		*last_version = info.count - 1;
	return rc;
}

/* The stream a scavenge step looked up last: events of one stream tend to
 * come in runs. */
struct scav_stream {
	char name[EV_STREAM_MAX];
	size_t len;
	bool valid;
	struct ev_stream_info info;
};

static int del_counted(struct storage_txn *txn, enum storage_db db, const void *key, size_t klen,
                       uint64_t *bytes)
{
	struct storage_val k = {key, klen};
	struct storage_val v;
	int rc = storage_get(txn, db, k, &v);
	if (rc != 0)
		return rc;
	*bytes += klen + v.len;
	return storage_del(txn, db, k);
}

int ev_scavenge_step(struct storage_txn *txn, uint64_t from, uint64_t upto, uint32_t max_examined,
                     uint64_t now_us, struct ev_scavenge_step *out)
{
	struct scav_stream cache = {.valid = false};
	struct storage_cursor *cur;
	uint8_t kb[8];
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->next = from > 0 ? from : 1;
	rc = storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur);
	if (rc != 0)
		return rc;
	while (out->examined < max_examined) {
		if (out->next > upto) {
			out->done = true;
			break;
		}
		struct storage_val k = {kb, 8};
		struct storage_val v;
		put_u64(kb, out->next);
		/* Seek afresh every time: the previous turn may have deleted
		 * under the cursor. */
		rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &k, &v);
		if (rc == WB_E_NOTFOUND) {
			rc = 0;
			out->done = true;
			break;
		}
		if (rc != 0)
			break;
		if (k.len != 8) {
			rc = WB_E_CORRUPT;
			break;
		}
		uint64_t pos = get_u64(k.data);
		if (pos > upto) {
			out->done = true;
			break;
		}
		struct ev_record rec;
		rc = ev_decode(pos, v.data, v.len, &rec);
		if (rc != 0)
			break;
		out->examined++;
		out->next = pos + 1;
		if (!cache.valid || cache.len != rec.stream_len ||
		    memcmp(cache.name, rec.stream, rec.stream_len) != 0) {
			memcpy(cache.name, rec.stream, rec.stream_len);
			cache.len = rec.stream_len;
			cache.valid = false;
			rc = get_stream(txn, cache.name, cache.len, &cache.info);
			if (rc != 0) {
				if (rc == WB_E_NOTFOUND)
					rc = WB_E_CORRUPT;
				break;
			}
			cache.valid = true;
		}
		if (ev_readable(&cache.info, &rec, now_us))
			continue;
		/* Copy what the deletes need: rec points into the page they
		 * may change. */
		uint8_t id[EV_ID_LEN];
		uint8_t kse[16];
		memcpy(id, rec.id, EV_ID_LEN);
		put_u64(kse, cache.info.stream_id);
		put_u64(kse + 8, rec.version);
		out->bytes += 8 + v.len;
		/* kb still holds the key sought, which a hole puts below pos. */
		put_u64(kb, pos);
		rc = storage_del(txn, STORAGE_DB_EVENTS, (struct storage_val){kb, 8});
		if (rc == 0)
			rc = del_counted(txn, STORAGE_DB_STREAM_EVENTS, kse, 16, &out->bytes);
		if (rc == 0) {
			/* The id leaves the index only when it names this
			 * event. */
			struct storage_val ik = {id, EV_ID_LEN};
			struct storage_val iv;
			rc = storage_get(txn, STORAGE_DB_EVENT_IDS, ik, &iv);
			if (rc == 0 && iv.len == 8 && get_u64(iv.data) == pos)
				rc = del_counted(txn, STORAGE_DB_EVENT_IDS, id, EV_ID_LEN,
				                 &out->bytes);
			else if (rc == WB_E_NOTFOUND)
				rc = 0;
		}
		if (rc != 0) {
			if (rc == WB_E_NOTFOUND)
				rc = WB_E_CORRUPT;
			break;
		}
		out->removed++;
	}
	storage_cursor_close(cur);
	return rc;
}

static bool filter_match(const struct ev_filter *f, const struct ev_record *rec)
{
	if (f == NULL)
		return true;
	if (f->prefix_len > 0 &&
	    (rec->stream_len < f->prefix_len || memcmp(rec->stream, f->prefix, f->prefix_len) != 0))
		return false;
	if (f->ntypes == 0)
		return true;
	for (size_t i = 0; i < f->ntypes; i++)
		if (f->type_lens[i] == rec->type_len &&
		    memcmp(f->types[i], rec->type, rec->type_len) == 0)
			return true;
	return false;
}

int ev_read_all(struct storage_txn *txn, uint64_t from, bool backwards, uint32_t max_count,
                const struct ev_filter *filter, ev_visit_fn visit, void *arg, struct ev_page *page)
{
	struct storage_cursor *cur;
	uint8_t kb[8];
	struct storage_val k = {kb, 8};
	struct storage_val v;
	uint64_t last;
	uint32_t examined = 0;
	uint32_t max_examined =
	        filter != NULL && filter->max_examined > 0 ? filter->max_examined : UINT32_MAX;

	int rc = ev_last_position(txn, &last);
	if (rc != 0)
		return rc;
	page->count = 0;
	page->last = last;
	page->end = true;
	if (!backwards && from == 0)
		from = 1;
	if (backwards && from > last)
		from = last;
	page->next = from;
	if (max_count == 0 || from == 0 || (!backwards && from > last))
		return 0;

	rc = storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur);
	if (rc != 0)
		return rc;
	put_u64(kb, from);
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &k, &v);
	if (backwards) {
		if (rc == WB_E_NOTFOUND)
			rc = storage_cursor_get(cur, STORAGE_LAST, &k, &v);
		else if (rc == 0 && (k.len != 8 || get_u64(k.data) > from))
			rc = storage_cursor_get(cur, STORAGE_PREV, &k, &v);
	}
	while (rc == 0) {
		if (k.len != 8) {
			rc = WB_E_CORRUPT;
			break;
		}
		uint64_t pos = get_u64(k.data);
		if (page->count == max_count || examined == max_examined) {
			page->end = false;
			page->next = pos;
			break;
		}
		struct ev_record rec;
		rc = ev_decode(pos, v.data, v.len, &rec);
		if (rc != 0)
			break;
		examined++;
		if (filter_match(filter, &rec)) {
			if (!visit(&rec, arg)) {
				page->end = false;
				page->next = pos;
				break;
			}
			page->count++;
		}
		page->next = backwards ? pos - 1 : pos + 1;
		rc = storage_cursor_get(cur, backwards ? STORAGE_PREV : STORAGE_NEXT, &k, &v);
	}
	storage_cursor_close(cur);
	if (rc == WB_E_NOTFOUND)
		rc = 0;
	return rc;
}
