#include "ledger.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "meta.h"

#define STAGED_HEADER 16u

static const char KEY_CEILING[] = "lease_ceiling";
static const char KEY_WATERMARK[] = "watermark";

static bool reason_fits(enum ledger_kind kind, enum ledger_reason reason)
{
	switch (kind) {
	case LEDGER_COMMITTED:
		return reason == LEDGER_REASON_NONE;
	case LEDGER_GAP:
		return reason == LEDGER_GAP_RELEASED || reason == LEDGER_GAP_EXPIRED ||
		       reason == LEDGER_GAP_RESTART;
	case LEDGER_RECOVERED:
		return reason == LEDGER_RECOVERED_STAGED || reason == LEDGER_RECOVERED_RESEQUENCED;
	}
	return false;
}

static int put_record(struct storage_txn *txn, const struct ledger_entry *e, unsigned flags);

int ledger_put(struct storage_txn *txn, const struct ledger_entry *e)
{
	return put_record(txn, e, STORAGE_NOOVERWRITE);
}

int ledger_set_ops(struct storage_txn *txn, uint64_t seq, const uint8_t *ops, size_t ops_len)
{
	struct ledger_entry e;
	int rc = ledger_get(txn, seq, &e);
	if (rc != 0)
		return rc;
	/* e points into the store, which the put may change: copy the names. */
	char names[512];
	memcpy(names, e.projection, e.projection_len);
	memcpy(names + e.projection_len, e.operation_id, e.operation_id_len);
	e.projection = names;
	e.operation_id = names + e.projection_len;
	e.ops = ops;
	e.ops_len = ops_len;
	return put_record(txn, &e, 0);
}

static int put_record(struct storage_txn *txn, const struct ledger_entry *e, unsigned flags)
{
	if (!reason_fits(e->kind, e->reason) || e->projection_len > 255 ||
	    e->operation_id_len > 255 || e->ops_len > UINT32_MAX || e->seq == 0)
		return WB_E_INVAL;
	size_t len = LEDGER_HEADER + e->projection_len + e->operation_id_len + e->ops_len;
	uint8_t *rec = malloc(len);
	if (rec == NULL)
		return WB_E_NOMEM;
	memset(rec, 0, LEDGER_HEADER);
	rec[0] = 1;
	rec[1] = (uint8_t)e->kind;
	rec[2] = (uint8_t)e->reason;
	rec[3] = (uint8_t)e->projection_len;
	rec[4] = (uint8_t)e->operation_id_len;
	put_u64(rec + 8, e->time_us);
	put_u64(rec + 16, e->source_position);
	put_u64(rec + 24, e->original_expiry_us);
	put_u64(rec + 32, e->original_seq);
	put_u64(rec + 40, e->token);
	put_u32(rec + 48, (uint32_t)e->ops_len);
	uint8_t *p = rec + LEDGER_HEADER;
	if (e->projection_len > 0)
		memcpy(p, e->projection, e->projection_len);
	p += e->projection_len;
	if (e->operation_id_len > 0)
		memcpy(p, e->operation_id, e->operation_id_len);
	p += e->operation_id_len;
	if (e->ops_len > 0)
		memcpy(p, e->ops, e->ops_len);

	uint8_t kb[8];
	put_u64(kb, e->seq);
	struct storage_val k = {kb, 8};
	struct storage_val v = {rec, len};
	int rc = storage_put(txn, STORAGE_DB_LEDGER, k, v, flags);
	free(rec);
	return rc;
}

int ledger_decode(uint64_t seq, const uint8_t *v, size_t len, struct ledger_entry *out)
{
	if (len < LEDGER_HEADER || v[0] != 1)
		return WB_E_CORRUPT;
	enum ledger_kind kind = (enum ledger_kind)v[1];
	enum ledger_reason reason = (enum ledger_reason)v[2];
	size_t plen = v[3];
	size_t olen = v[4];
	size_t ops_len = get_u32(v + 48);
	if (!reason_fits(kind, reason) || len != LEDGER_HEADER + plen + olen + ops_len)
		return WB_E_CORRUPT;
	out->seq = seq;
	out->kind = kind;
	out->reason = reason;
	out->time_us = get_u64(v + 8);
	out->source_position = get_u64(v + 16);
	out->original_expiry_us = get_u64(v + 24);
	out->original_seq = get_u64(v + 32);
	out->token = get_u64(v + 40);
	out->projection = (const char *)v + LEDGER_HEADER;
	out->projection_len = plen;
	out->operation_id = out->projection + plen;
	out->operation_id_len = olen;
	out->ops = v + LEDGER_HEADER + plen + olen;
	out->ops_len = ops_len;
	return 0;
}

int ledger_get(struct storage_txn *txn, uint64_t seq, struct ledger_entry *out)
{
	uint8_t kb[8];
	put_u64(kb, seq);
	struct storage_val k = {kb, 8};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_LEDGER, k, &v);
	if (rc != 0)
		return rc;
	return ledger_decode(seq, v.data, v.len, out);
}

int ledger_stage(struct storage_txn *txn, uint64_t seq, uint64_t token, const uint8_t *ops,
                 size_t ops_len)
{
	size_t len = STAGED_HEADER + ops_len;
	uint8_t *rec = malloc(len);
	if (rec == NULL)
		return WB_E_NOMEM;
	memset(rec, 0, STAGED_HEADER);
	rec[0] = 1;
	put_u64(rec + 8, token);
	if (ops_len > 0)
		memcpy(rec + STAGED_HEADER, ops, ops_len);
	uint8_t kb[8];
	put_u64(kb, seq);
	struct storage_val k = {kb, 8};
	struct storage_val v = {rec, len};
	int rc = storage_put(txn, STORAGE_DB_STAGED, k, v, 0);
	free(rec);
	return rc;
}

int ledger_get_staged(struct storage_txn *txn, uint64_t seq, uint64_t *token, const uint8_t **ops,
                      size_t *ops_len)
{
	uint8_t kb[8];
	put_u64(kb, seq);
	struct storage_val k = {kb, 8};
	struct storage_val v;
	int rc = storage_get(txn, STORAGE_DB_STAGED, k, &v);
	if (rc != 0)
		return rc;
	const uint8_t *p = v.data;
	if (v.len < STAGED_HEADER || p[0] != 1)
		return WB_E_CORRUPT;
	*token = get_u64(p + 8);
	*ops = p + STAGED_HEADER;
	*ops_len = v.len - STAGED_HEADER;
	return 0;
}

int ledger_drop_staged(struct storage_txn *txn, uint64_t seq)
{
	uint8_t kb[8];
	put_u64(kb, seq);
	struct storage_val k = {kb, 8};
	int rc = storage_del(txn, STORAGE_DB_STAGED, k);
	return rc == WB_E_NOTFOUND ? 0 : rc;
}

int ledger_finish(struct storage_txn *txn, const struct ledger_entry *e, bool from_staged,
                  bool *recovered)
{
	struct ledger_entry r = *e;
	uint8_t *copy = NULL;
	bool staged = false;
	if (from_staged) {
		uint64_t token;
		const uint8_t *ops;
		size_t len;
		int rc = ledger_get_staged(txn, e->seq, &token, &ops, &len);
		if (rc != 0 && rc != WB_E_NOTFOUND)
			return rc;
		staged = rc == 0;
		if (staged) {
			/* Copied: the put below may move the map's pages. */
			copy = malloc(len > 0 ? len : 1);
			if (copy == NULL)
				return WB_E_NOMEM;
			if (len > 0)
				memcpy(copy, ops, len);
			r.kind = LEDGER_RECOVERED;
			r.reason = LEDGER_RECOVERED_STAGED;
			r.token = token;
			r.ops = copy;
			r.ops_len = len;
		}
	}
	int rc = ledger_put(txn, &r);
	free(copy);
	if (rc == 0)
		rc = ledger_drop_staged(txn, e->seq);
	if (rc == 0 && recovered != NULL)
		*recovered = staged;
	return rc;
}

int ledger_get_state(struct storage_txn *txn, struct ledger_state *out)
{
	int rc = meta_get_u64(txn, KEY_WATERMARK, 0, &out->watermark);
	if (rc == 0)
		rc = meta_get_u64(txn, KEY_CEILING, 0, &out->ceiling);
	if (rc == 0 && out->watermark > out->ceiling)
		rc = WB_E_CORRUPT;
	return rc;
}

int ledger_set_ceiling(struct storage_txn *txn, uint64_t ceiling)
{
	uint64_t old;
	int rc = meta_get_u64(txn, KEY_CEILING, 0, &old);
	if (rc != 0)
		return rc;
	if (ceiling <= old)
		return 0;
	return meta_put_u64(txn, KEY_CEILING, ceiling);
}

int ledger_advance(struct storage_txn *txn, uint64_t target, ledger_apply_fn apply, void *arg,
                   uint64_t *watermark)
{
	uint64_t w;
	int rc = meta_get_u64(txn, KEY_WATERMARK, 0, &w);
	if (rc != 0)
		return rc;
	uint64_t start = w;
	while (w < target) {
		struct ledger_entry e;
		rc = ledger_get(txn, w + 1, &e);
		if (rc == WB_E_NOTFOUND) {
			rc = 0;
			break;
		}
		if (rc == 0 && apply != NULL)
			rc = apply(txn, &e, arg);
		if (rc != 0)
			break;
		w++;
	}
	if (rc == 0 && w != start)
		rc = meta_put_u64(txn, KEY_WATERMARK, w);
	if (rc == 0)
		*watermark = w;
	return rc;
}

int ledger_recover(struct storage_txn *txn, uint64_t now_us, ledger_apply_fn apply, void *arg,
                   struct ledger_recovery *out)
{
	struct ledger_state st;
	int rc = ledger_get_state(txn, &st);
	if (rc != 0)
		return rc;
	memset(out, 0, sizeof(*out));
	for (uint64_t seq = st.watermark + 1; seq <= st.ceiling; seq++) {
		struct ledger_entry e;
		rc = ledger_get(txn, seq, &e);
		if (rc == 0) {
			rc = ledger_drop_staged(txn, seq);
			if (rc != 0)
				return rc;
			continue;
		}
		if (rc != WB_E_NOTFOUND)
			return rc;
		memset(&e, 0, sizeof(e));
		e.seq = seq;
		e.time_us = now_us;
		e.kind = LEDGER_GAP;
		e.reason = LEDGER_GAP_RESTART;
		bool recovered;
		rc = ledger_finish(txn, &e, true, &recovered);
		if (rc != 0)
			return rc;
		if (recovered)
			out->recovered++;
		else
			out->gaps++;
	}
	return ledger_advance(txn, st.ceiling, apply, arg, &out->watermark);
}

int ledger_read(struct storage_txn *txn, uint64_t from_seq, uint32_t max_count,
                ledger_visit_fn visit, void *arg, uint64_t *next)
{
	struct storage_cursor *cur;
	uint8_t kb[8];
	struct storage_val k = {kb, 8};
	struct storage_val v;
	uint32_t n = 0;

	if (from_seq == 0)
		from_seq = 1;
	*next = from_seq;
	if (max_count == 0)
		return 0;
	int rc = storage_cursor_open(txn, STORAGE_DB_LEDGER, &cur);
	if (rc != 0)
		return rc;
	put_u64(kb, from_seq);
	rc = storage_cursor_get(cur, STORAGE_SET_RANGE, &k, &v);
	while (rc == 0 && n < max_count) {
		if (k.len != 8) {
			rc = WB_E_CORRUPT;
			break;
		}
		struct ledger_entry e;
		uint64_t seq = get_u64(k.data);
		rc = ledger_decode(seq, v.data, v.len, &e);
		if (rc != 0)
			break;
		if (!visit(&e, arg))
			break;
		n++;
		*next = seq + 1;
		rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v);
	}
	storage_cursor_close(cur);
	return rc == WB_E_NOTFOUND ? 0 : rc;
}
