/* Durable consumer group records and parked events (consumers.h). */
#include "consumers.h"

#include <string.h>

#include <stdio.h>

#include "codec.h"
#include "utf8.h"

/* 1: without the owner; 2: with it, after the types (u16 length, bytes). */
#define CONS_FORMAT 2u
#define PARKED_KEY_MAX (CONS_NAME_MAX + 1 + 8)

int cons_check_name(const char *name, size_t len, char *errmsg, size_t errlen)
{
	size_t bad;
	if (len == 0 || len > CONS_NAME_MAX) {
		snprintf(errmsg, errlen, "a consumer group name is 1..%u bytes, not %zu",
		         CONS_NAME_MAX, len);
		return WB_BAD_REQUEST;
	}
	if (!utf8_valid(name, len, &bad)) {
		snprintf(errmsg, errlen, "the consumer group name is not valid UTF-8 (byte %zu)",
		         bad);
		return WB_BAD_REQUEST;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch < 0x20 || ch == 0x7f) {
			snprintf(errmsg, errlen,
			         "the consumer group name has a control character at byte %zu", i);
			return WB_BAD_REQUEST;
		}
	}
	return 0;
}

int cons_encode(const struct cons_record *r, uint8_t *buf, size_t *len)
{
	if (r->stream_len > CONS_NAME_MAX || r->prefix_len > CONS_NAME_MAX ||
	    r->ntypes > CONS_TYPES_MAX || r->target > CONS_TARGET_STREAM ||
	    r->from > CONS_FROM_POSITION || r->owner_len > CONS_OWNER_MAX)
		return WB_E_INVAL;
	for (size_t i = 0; i < r->ntypes; i++)
		if (r->type_lens[i] > CONS_NAME_MAX)
			return WB_E_INVAL;
	uint8_t *p = buf;
	p[0] = CONS_FORMAT;
	p[1] = r->target;
	p[2] = r->from;
	p[3] = (uint8_t)r->ntypes;
	put_u32(p + 4, r->max_deliveries);
	put_u64(p + 8, r->ack_timeout_ms);
	put_u64(p + 16, r->position);
	put_u64(p + 24, r->checkpoint);
	put_u64(p + 32, r->resume);
	put_u64(p + 40, r->created_us);
	p[48] = (uint8_t)r->stream_len;
	p[49] = (uint8_t)r->prefix_len;
	p += CONS_RECORD_HEADER;
	memcpy(p, r->stream, r->stream_len);
	p += r->stream_len;
	memcpy(p, r->prefix, r->prefix_len);
	p += r->prefix_len;
	for (size_t i = 0; i < r->ntypes; i++) {
		*p++ = (uint8_t)r->type_lens[i];
		memcpy(p, r->types[i], r->type_lens[i]);
		p += r->type_lens[i];
	}
	p[0] = (uint8_t)(r->owner_len >> 8);
	p[1] = (uint8_t)r->owner_len;
	memcpy(p + 2, r->owner, r->owner_len);
	p += 2 + r->owner_len;
	*len = (size_t)(p - buf);
	return 0;
}

int cons_decode(const char *name, size_t name_len, const uint8_t *v, size_t len,
                struct cons_record *out)
{
	if (name_len == 0 || name_len > CONS_NAME_MAX || len < CONS_RECORD_HEADER ||
	    (v[0] != 1 && v[0] != CONS_FORMAT) || v[1] > CONS_TARGET_STREAM || v[2] > CONS_FROM_POSITION ||
	    v[3] > CONS_TYPES_MAX)
		return WB_E_CORRUPT;
	struct cons_record r;
	memset(&r, 0, sizeof(r));
	memcpy(r.name, name, name_len);
	r.name_len = name_len;
	r.target = v[1];
	r.from = v[2];
	r.ntypes = v[3];
	r.max_deliveries = get_u32(v + 4);
	r.ack_timeout_ms = get_u64(v + 8);
	r.position = get_u64(v + 16);
	r.checkpoint = get_u64(v + 24);
	r.resume = get_u64(v + 32);
	r.created_us = get_u64(v + 40);
	r.stream_len = v[48];
	r.prefix_len = v[49];
	size_t off = CONS_RECORD_HEADER;
	if (len - off < r.stream_len + r.prefix_len)
		return WB_E_CORRUPT;
	memcpy(r.stream, v + off, r.stream_len);
	off += r.stream_len;
	memcpy(r.prefix, v + off, r.prefix_len);
	off += r.prefix_len;
	for (size_t i = 0; i < r.ntypes; i++) {
		if (off >= len)
			return WB_E_CORRUPT;
		size_t tl = v[off++];
		if (tl == 0 || len - off < tl)
			return WB_E_CORRUPT;
		memcpy(r.types[i], v + off, tl);
		r.type_lens[i] = tl;
		off += tl;
	}
	if (v[0] >= 2) {
		if (len - off < 2)
			return WB_E_CORRUPT;
		r.owner_len = (size_t)v[off] << 8 | v[off + 1];
		off += 2;
		if (r.owner_len > CONS_OWNER_MAX || len - off < r.owner_len)
			return WB_E_CORRUPT;
		memcpy(r.owner, v + off, r.owner_len);
		off += r.owner_len;
	}
	if (off != len || (r.target == CONS_TARGET_STREAM && r.stream_len == 0))
		return WB_E_CORRUPT;
	*out = r;
	return 0;
}

int cons_put(struct storage_txn *txn, const struct cons_record *r)
{
	uint8_t buf[CONS_RECORD_MAX];
	size_t len;
	if (r->name_len == 0 || r->name_len > CONS_NAME_MAX)
		return WB_E_INVAL;
	int rc = cons_encode(r, buf, &len);
	if (rc != 0)
		return rc;
	struct storage_val k = {r->name, r->name_len};
	struct storage_val v = {buf, len};
	return storage_put(txn, STORAGE_DB_CONSUMERS, k, v, 0);
}

int cons_get(struct storage_txn *txn, const char *name, size_t name_len, struct cons_record *out)
{
	if (name_len == 0 || name_len > CONS_NAME_MAX)
		return WB_E_NOTFOUND;
	struct storage_val k = {name, name_len};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_CONSUMERS, k, &v);
	if (rc != 0)
		return rc;
	return cons_decode(name, name_len, v.data, v.len, out);
}

int cons_set_checkpoint(struct storage_txn *txn, const char *name, size_t name_len,
                        uint64_t checkpoint, uint64_t resume)
{
	struct cons_record r;
	int rc = cons_get(txn, name, name_len, &r);
	if (rc != 0)
		return rc;
	if (checkpoint < r.checkpoint || (checkpoint == r.checkpoint && resume <= r.resume))
		return 0;
	r.checkpoint = checkpoint;
	r.resume = resume;
	return cons_put(txn, &r);
}

static size_t parked_key(uint8_t *k, const char *name, size_t name_len, uint64_t position)
{
	memcpy(k, name, name_len);
	k[name_len] = 0;
	put_u64(k + name_len + 1, position);
	return name_len + 9;
}

int cons_delete(struct storage_txn *txn, const char *name, size_t name_len,
                uint64_t *parked_removed)
{
	if (name_len == 0 || name_len > CONS_NAME_MAX)
		return WB_E_NOTFOUND;
	struct storage_val k = {name, name_len};
	int rc = storage_del(txn, STORAGE_DB_CONSUMERS, k);
	if (rc != 0)
		return rc;
	/* Collect the parked keys first: deleting under an open cursor is
	 * not part of the engine interface. */
	uint64_t removed = 0;
	for (;;) {
		uint64_t pos[256];
		size_t n = 0;
		struct storage_cursor *cur;
		rc = storage_cursor_open(txn, STORAGE_DB_PARKED, &cur);
		if (rc != 0)
			return rc;
		uint8_t kb[PARKED_KEY_MAX];
		struct storage_val key = {kb, parked_key(kb, name, name_len, 0)};
		struct storage_val val;
		rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &val);
		while (rc == 0 && n < 256 && key.len == name_len + 9 &&
		       memcmp(key.data, kb, name_len + 1) == 0) {
			pos[n++] = get_u64((const uint8_t *)key.data + name_len + 1);
			rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &val);
		}
		storage_cursor_close(cur);
		if (rc != 0 && rc != WB_E_NOTFOUND)
			return rc;
		for (size_t i = 0; i < n; i++) {
			rc = cons_unpark(txn, name, name_len, pos[i]);
			if (rc != 0)
				return rc;
		}
		removed += n;
		if (n < 256)
			break;
	}
	if (parked_removed != NULL)
		*parked_removed = removed;
	return 0;
}

int cons_list(struct storage_txn *txn, cons_visit_fn visit, void *arg)
{
	struct storage_cursor *cur;
	int rc = storage_cursor_open(txn, STORAGE_DB_CONSUMERS, &cur);
	if (rc != 0)
		return rc;
	struct storage_val k, v;
	struct cons_record r;
	for (rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
	     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
		rc = cons_decode(k.data, k.len, v.data, v.len, &r);
		if (rc != 0)
			break;
		if (!visit(&r, arg))
			break;
	}
	storage_cursor_close(cur);
	return rc == WB_E_NOTFOUND ? 0 : rc;
}

int cons_park(struct storage_txn *txn, const char *name, size_t name_len, uint64_t position,
              uint32_t deliveries, uint64_t now_us, const char *reason, size_t reason_len)
{
	if (name_len == 0 || name_len > CONS_NAME_MAX)
		return WB_E_INVAL;
	if (reason_len > CONS_REASON_MAX)
		reason_len = CONS_REASON_MAX;
	uint8_t kb[PARKED_KEY_MAX];
	uint8_t vb[CONS_PARKED_HEADER + CONS_REASON_MAX];
	memset(vb, 0, CONS_PARKED_HEADER);
	vb[0] = CONS_FORMAT;
	put_u32(vb + 4, deliveries);
	put_u64(vb + 8, now_us);
	put_u16(vb + 16, (uint16_t)reason_len);
	if (reason_len > 0)
		memcpy(vb + CONS_PARKED_HEADER, reason, reason_len);
	struct storage_val k = {kb, parked_key(kb, name, name_len, position)};
	struct storage_val v = {vb, CONS_PARKED_HEADER + reason_len};
	return storage_put(txn, STORAGE_DB_PARKED, k, v, 0);
}

int cons_unpark(struct storage_txn *txn, const char *name, size_t name_len, uint64_t position)
{
	if (name_len == 0 || name_len > CONS_NAME_MAX)
		return WB_E_NOTFOUND;
	uint8_t kb[PARKED_KEY_MAX];
	struct storage_val k = {kb, parked_key(kb, name, name_len, position)};
	return storage_del(txn, STORAGE_DB_PARKED, k);
}

static int parked_decode(uint64_t position, const uint8_t *v, size_t len, struct cons_parked *out)
{
	if (len < CONS_PARKED_HEADER || v[0] != CONS_FORMAT)
		return WB_E_CORRUPT;
	size_t rl = get_u16(v + 16);
	if (rl != len - CONS_PARKED_HEADER || rl > CONS_REASON_MAX)
		return WB_E_CORRUPT;
	out->position = position;
	out->deliveries = get_u32(v + 4);
	out->parked_at_us = get_u64(v + 8);
	out->reason = (const char *)v + CONS_PARKED_HEADER;
	out->reason_len = rl;
	return 0;
}

int cons_get_parked(struct storage_txn *txn, const char *name, size_t name_len, uint64_t position,
                    struct cons_parked *out)
{
	if (name_len == 0 || name_len > CONS_NAME_MAX)
		return WB_E_NOTFOUND;
	uint8_t kb[PARKED_KEY_MAX];
	struct storage_val k = {kb, parked_key(kb, name, name_len, position)};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_PARKED, k, &v);
	if (rc != 0)
		return rc;
	return parked_decode(position, v.data, v.len, out);
}

int cons_parked_list(struct storage_txn *txn, const char *name, size_t name_len, uint64_t from,
                     uint32_t max_count, cons_parked_fn visit, void *arg, uint64_t *next, bool *end)
{
	*next = from;
	*end = true;
	if (name_len == 0 || name_len > CONS_NAME_MAX)
		return 0;
	struct storage_cursor *cur;
	int rc = storage_cursor_open(txn, STORAGE_DB_PARKED, &cur);
	if (rc != 0)
		return rc;
	uint8_t kb[PARKED_KEY_MAX];
	struct storage_val key = {kb, parked_key(kb, name, name_len, from)};
	struct storage_val val;
	uint32_t n = 0;
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &key, &val);
	while (rc == 0) {
		if (key.len != name_len + 9 || memcmp(key.data, kb, name_len + 1) != 0)
			break; /* another group's */
		uint64_t pos = get_u64((const uint8_t *)key.data + name_len + 1);
		if (max_count > 0 && n == max_count) {
			*end = false;
			break;
		}
		struct cons_parked p;
		rc = parked_decode(pos, val.data, val.len, &p);
		if (rc != 0)
			break;
		if (!visit(&p, arg)) {
			/* not taken: the next page starts with it */
			*end = false;
			break;
		}
		n++;
		*next = pos + 1;
		rc = storage_cursor_get(cur, STORAGE_NEXT, &key, &val);
	}
	storage_cursor_close(cur);
	return rc == WB_E_NOTFOUND ? 0 : rc;
}

static bool count_cb(const struct cons_parked *p, void *arg)
{
	(void)p;
	(*(uint64_t *)arg)++;
	return true;
}

int cons_parked_count(struct storage_txn *txn, const char *name, size_t name_len, uint64_t *out)
{
	uint64_t n = 0, next;
	bool end;
	int rc = cons_parked_list(txn, name, name_len, 0, 0, count_cb, &n, &next, &end);
	if (rc == 0)
		*out = n;
	return rc;
}
