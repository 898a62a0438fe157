/* Tests of the ledger (lease/ledger.h) against a real store in a fresh
 * temporary directory: entries, their stored format, staged work, the
 * watermark and the ceiling, in-order advance, start-up recovery and reads.
 * Writes run in write transactions as the writer thread runs them; the
 * failure cases of advance run in a nested transaction that is aborted. */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fixture.h"
#include "ledger.h"
#include "storage.h"

static const struct storage_options STORE_OPTS = {.map_size = 16u << 20};
FIXTURE_STORE_SUITE(ledger, &STORE_OPTS);

/* ---------------------------------------------------------------- helpers */

static const uint64_t T0 = 1700000000000000ull; /* a wall clock in µs */

static struct storage_txn *wtxn(void)
{
	return fixture_txn(st, NULL, 0);
}

static struct storage_txn *child_txn(struct storage_txn *parent)
{
	return fixture_txn(st, parent, 0);
}

static struct storage_txn *rtxn(void)
{
	return fixture_txn(st, NULL, STORAGE_RDONLY);
}

static void commit(struct storage_txn *t)
{
	fixture_commit(t);
}

static uint64_t token_of(uint64_t seq)
{
	return 0xA5A5000000000000ull | (seq * 1000u + 7u);
}

/* Puts an entry whose fields are all derived from seq, so that
 * check_simple() can tell later that it is unchanged. */
static void put_simple(struct storage_txn *t, uint64_t seq, enum ledger_kind kind,
                       enum ledger_reason reason)
{
	char opid[32];
	uint8_t ops[8];
	int n = snprintf(opid, sizeof(opid), "op-%" PRIu64, seq);
	for (size_t i = 0; i < sizeof(ops); i++)
		ops[i] = (uint8_t)(seq + i);
	struct ledger_entry e = {
	        .seq = seq,
	        .kind = kind,
	        .reason = reason,
	        .time_us = T0 + seq,
	        .source_position = seq * 10u,
	        .original_expiry_us = kind == LEDGER_COMMITTED ? 0 : T0 - seq,
	        .original_seq = reason == LEDGER_RECOVERED_RESEQUENCED ? seq + 100u : 0,
	        .token = token_of(seq),
	        .projection = "proj",
	        .projection_len = 4,
	        .operation_id = opid,
	        .operation_id_len = (size_t)n,
	        .ops = ops,
	        .ops_len = sizeof(ops),
	};
	int rc = ledger_put(t, &e);
	cr_assert_eq(rc, 0, "put %" PRIu64 ": %s", seq, wb_error_name(rc));
}

static void check_simple(const struct ledger_entry *e, uint64_t seq, enum ledger_kind kind,
                         enum ledger_reason reason)
{
	char opid[32];
	int n = snprintf(opid, sizeof(opid), "op-%" PRIu64, seq);
	cr_assert_eq(e->seq, seq);
	cr_assert_eq(e->kind, kind, "seq %" PRIu64, seq);
	cr_assert_eq(e->reason, reason, "seq %" PRIu64, seq);
	cr_assert_eq(e->time_us, T0 + seq);
	cr_assert_eq(e->source_position, seq * 10u);
	cr_assert_eq(e->original_expiry_us, kind == LEDGER_COMMITTED ? 0 : T0 - seq);
	cr_assert_eq(e->original_seq, reason == LEDGER_RECOVERED_RESEQUENCED ? seq + 100u : 0);
	cr_assert_eq(e->token, token_of(seq));
	cr_assert_eq(e->projection_len, 4);
	cr_assert_eq(memcmp(e->projection, "proj", 4), 0);
	cr_assert_eq(e->operation_id_len, (size_t)n);
	cr_assert_eq(memcmp(e->operation_id, opid, (size_t)n), 0);
	cr_assert_eq(e->ops_len, 8);
	for (size_t i = 0; i < 8; i++)
		cr_assert_eq(e->ops[i], (uint8_t)(seq + i), "seq %" PRIu64 " op byte %zu", seq, i);
}

static void get_check_simple(struct storage_txn *t, uint64_t seq, enum ledger_kind kind,
                             enum ledger_reason reason)
{
	struct ledger_entry e;
	int rc = ledger_get(t, seq, &e);
	cr_assert_eq(rc, 0, "get %" PRIu64 ": %s", seq, wb_error_name(rc));
	check_simple(&e, seq, kind, reason);
}

static void put_committed(struct storage_txn *t, uint64_t seq)
{
	put_simple(t, seq, LEDGER_COMMITTED, LEDGER_REASON_NONE);
}

/* Compares every field, bytes included. */
static void expect_same(const struct ledger_entry *got, const struct ledger_entry *want)
{
	cr_assert_eq(got->seq, want->seq);
	cr_assert_eq(got->kind, want->kind, "seq %" PRIu64, want->seq);
	cr_assert_eq(got->reason, want->reason, "seq %" PRIu64, want->seq);
	cr_assert_eq(got->time_us, want->time_us);
	cr_assert_eq(got->source_position, want->source_position);
	cr_assert_eq(got->original_expiry_us, want->original_expiry_us);
	cr_assert_eq(got->original_seq, want->original_seq);
	cr_assert_eq(got->token, want->token);
	cr_assert_eq(got->projection_len, want->projection_len);
	cr_assert_eq(got->operation_id_len, want->operation_id_len);
	cr_assert_eq(got->ops_len, want->ops_len);
	if (want->projection_len > 0)
		cr_assert_eq(memcmp(got->projection, want->projection, want->projection_len), 0);
	if (want->operation_id_len > 0)
		cr_assert_eq(memcmp(got->operation_id, want->operation_id, want->operation_id_len),
		             0);
	if (want->ops_len > 0)
		cr_assert_eq(memcmp(got->ops, want->ops, want->ops_len), 0);
}

static void set_ceiling(uint64_t ceiling)
{
	struct storage_txn *t = wtxn();
	cr_assert_eq(ledger_set_ceiling(t, ceiling), 0);
	commit(t);
}

static struct ledger_state state(void)
{
	struct storage_txn *t = rtxn();
	struct ledger_state s = {99, 99};
	int rc = ledger_get_state(t, &s);
	storage_txn_abort(t);
	cr_assert_eq(rc, 0, "%s", wb_error_name(rc));
	return s;
}

static void meta_put_raw(struct storage_txn *t, const char *key, const void *v, size_t len)
{
	struct storage_val k = {key, strlen(key)};
	struct storage_val val = {v, len};
	cr_assert_eq(storage_put(t, STORAGE_DB_META, k, val, 0), 0);
}

static void meta_put_u64(struct storage_txn *t, const char *key, uint64_t value)
{
	uint8_t b[8];
	put_u64(b, value);
	meta_put_raw(t, key, b, sizeof(b));
}

static size_t count_staged(struct storage_txn *t)
{
	struct storage_cursor *c;
	struct storage_val k;
	struct storage_val v;
	size_t n = 0;
	cr_assert_eq(storage_cursor_open(t, STORAGE_DB_STAGED, &c), 0);
	int rc = storage_cursor_get(c, STORAGE_FIRST, &k, &v);
	while (rc == 0) {
		n++;
		rc = storage_cursor_get(c, STORAGE_NEXT, &k, &v);
	}
	storage_cursor_close(c);
	cr_assert_eq(rc, WB_E_NOTFOUND);
	return n;
}

/* What apply saw. */
#define LOG_MAX 64
struct applied {
	size_t n;
	uint64_t seq[LOG_MAX];
	enum ledger_kind kind[LOG_MAX];
	enum ledger_reason reason[LOG_MAX];
	uint64_t token[LOG_MAX];
	struct storage_txn *txn; /* the transaction apply must be given */
	uint64_t fail_at;        /* apply returns fail_rc for this sequence; 0: never */
	int fail_rc;
};

static int apply_cb(struct storage_txn *txn, const struct ledger_entry *e, void *arg)
{
	struct applied *a = arg;
	cr_assert_lt(a->n, LOG_MAX);
	if (a->txn != NULL)
		cr_assert_eq(txn, a->txn, "apply got another transaction");
	a->seq[a->n] = e->seq;
	a->kind[a->n] = e->kind;
	a->reason[a->n] = e->reason;
	a->token[a->n] = e->token;
	a->n++;
	return e->seq == a->fail_at ? a->fail_rc : 0;
}

static void expect_applied(const struct applied *a, const uint64_t *want, size_t n)
{
	cr_assert_eq(a->n, n, "apply called %zu times, want %zu", a->n, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(a->seq[i], want[i], "apply call %zu: seq %" PRIu64 ", want %" PRIu64,
		             i, a->seq[i], want[i]);
}

/* What a read visited. */
struct seen {
	size_t n;
	size_t stop_at; /* visit returns false on this call (1-based); 0: never */
	size_t calls;
	uint64_t seq[LOG_MAX];
	enum ledger_kind kind[LOG_MAX];
	enum ledger_reason reason[LOG_MAX];
	char opid[LOG_MAX][32];
};

static bool visit_cb(const struct ledger_entry *e, void *arg)
{
	struct seen *s = arg;
	s->calls++;
	if (s->stop_at != 0 && s->calls == s->stop_at)
		return false;
	cr_assert_lt(s->n, LOG_MAX);
	s->seq[s->n] = e->seq;
	s->kind[s->n] = e->kind;
	s->reason[s->n] = e->reason;
	snprintf(s->opid[s->n], 32, "%.*s", (int)e->operation_id_len, e->operation_id);
	s->n++;
	return true;
}

static int read_ledger(uint64_t from, uint32_t max, struct seen *s, uint64_t *next)
{
	struct storage_txn *t = rtxn();
	int rc = ledger_read(t, from, max, visit_cb, s, next);
	storage_txn_abort(t);
	return rc;
}

static void expect_seen(const struct seen *s, const uint64_t *want, size_t n);

/* Reads from from, at most max, which must succeed visiting the n entries
 * of want and answer next_want. */
static void read_expect(uint64_t from, uint32_t max, const uint64_t *want, size_t n,
                        uint64_t next_want)
{
	struct seen s = {0};
	uint64_t next = 0;
	cr_assert_eq(read_ledger(from, max, &s, &next), 0);
	expect_seen(&s, want, n);
	cr_assert_eq(next, next_want, "read from %" PRIu64 ": next %" PRIu64 ", want %" PRIu64,
	             from, next, next_want);
}

static void expect_seen(const struct seen *s, const uint64_t *want, size_t n)
{
	cr_assert_eq(s->n, n, "read visited %zu entries, want %zu", s->n, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(s->seq[i], want[i], "entry %zu: seq %" PRIu64 ", want %" PRIu64, i,
		             s->seq[i], want[i]);
}

/* The number of entries in the ledger. */
static size_t count_entries(void)
{
	struct seen s = {0};
	uint64_t next;
	cr_assert_eq(read_ledger(0, LOG_MAX, &s, &next), 0);
	return s.n;
}

/* ------------------------------------------------------------ put and get */

static const struct {
	enum ledger_kind kind;
	enum ledger_reason reason;
} kinds[] = {
        {LEDGER_COMMITTED, LEDGER_REASON_NONE},
        {LEDGER_GAP, LEDGER_GAP_RELEASED},
        {LEDGER_GAP, LEDGER_GAP_EXPIRED},
        {LEDGER_GAP, LEDGER_GAP_RESTART},
        {LEDGER_RECOVERED, LEDGER_RECOVERED_STAGED},
        {LEDGER_RECOVERED, LEDGER_RECOVERED_RESEQUENCED},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

Test(ledger, round_trip_every_kind_and_reason)
{
	struct ledger_entry want[NKINDS];
	char proj[NKINDS][16];
	char opid[NKINDS][16];
	uint8_t ops[NKINDS][24];

	struct storage_txn *t = wtxn();
	for (size_t i = 0; i < NKINDS; i++) {
		int pn = snprintf(proj[i], sizeof(proj[i]), "proj-%zu", i);
		int on = snprintf(opid[i], sizeof(opid[i]), "operation-%zu", i * 7);
		for (size_t j = 0; j < sizeof(ops[i]); j++)
			ops[i][j] = (uint8_t)(0xF0u ^ (i * 31u + j));
		/* Every integer field distinct and using all 8 bytes, so that a
		 * swapped or truncated field shows. */
		want[i] = (struct ledger_entry){
		        .seq = 100 + i,
		        .kind = kinds[i].kind,
		        .reason = kinds[i].reason,
		        .time_us = T0 + i,
		        .source_position = 0x0102030405060700ull + i,
		        .original_expiry_us = 0x1112131415161700ull + i,
		        .original_seq = 0x2122232425262700ull + i,
		        .token = 0xF1F2F3F4F5F6F700ull + i,
		        .projection = proj[i],
		        .projection_len = (size_t)pn,
		        .operation_id = opid[i],
		        .operation_id_len = (size_t)on,
		        .ops = ops[i],
		        .ops_len = 5 + i * 3,
		};
		int rc = ledger_put(t, &want[i]);
		cr_assert_eq(rc, 0, "put kind %d reason %d: %s", kinds[i].kind, kinds[i].reason,
		             wb_error_name(rc));
	}
	commit(t);

	t = rtxn();
	for (size_t i = 0; i < NKINDS; i++) {
		struct ledger_entry got;
		memset(&got, 0xCC, sizeof(got));
		cr_assert_eq(ledger_get(t, 100 + i, &got), 0);
		expect_same(&got, &want[i]);
	}
	storage_txn_abort(t);
}

Test(ledger, round_trip_names_of_0_and_255_bytes_and_ops_of_0_and_1mb)
{
	static const size_t ops_big = (1u << 20) + 3u;
	char name255[255];
	char other255[255];
	for (size_t i = 0; i < sizeof(name255); i++) {
		name255[i] = (char)('a' + i % 26);
		other255[i] = (char)('A' + (i * 7) % 26);
	}
	uint8_t *big = malloc(ops_big);
	cr_assert_not_null(big);
	for (size_t i = 0; i < ops_big; i++)
		big[i] = (uint8_t)(i * 131u + (i >> 11));

	struct ledger_entry want[4] = {
	        /* Everything empty, pointers NULL. */
	        {.seq = 1, .kind = LEDGER_COMMITTED, .token = 1},
	        /* Everything at its maximum. */
	        {.seq = 2,
	         .kind = LEDGER_RECOVERED,
	         .reason = LEDGER_RECOVERED_RESEQUENCED,
	         .original_seq = 77,
	         .token = UINT64_MAX,
	         .time_us = UINT64_MAX,
	         .source_position = UINT64_MAX,
	         .original_expiry_us = UINT64_MAX,
	         .projection = name255,
	         .projection_len = 255,
	         .operation_id = other255,
	         .operation_id_len = 255,
	         .ops = big,
	         .ops_len = ops_big},
	        /* Empty projection, full operation id, no ops. */
	        {.seq = 3,
	         .kind = LEDGER_GAP,
	         .reason = LEDGER_GAP_EXPIRED,
	         .operation_id = other255,
	         .operation_id_len = 255},
	        /* Full projection, empty operation id, 1 MB of ops. */
	        {.seq = 4,
	         .kind = LEDGER_COMMITTED,
	         .projection = name255,
	         .projection_len = 255,
	         .ops = big,
	         .ops_len = ops_big},
	};
	struct storage_txn *t = wtxn();
	for (size_t i = 0; i < 4; i++) {
		int rc = ledger_put(t, &want[i]);
		cr_assert_eq(rc, 0, "put %zu: %s", i, wb_error_name(rc));
	}
	commit(t);

	t = rtxn();
	for (size_t i = 0; i < 4; i++) {
		struct ledger_entry got;
		memset(&got, 0xCC, sizeof(got));
		cr_assert_eq(ledger_get(t, want[i].seq, &got), 0);
		expect_same(&got, &want[i]);
	}
	storage_txn_abort(t);
	free(big);
}

Test(ledger, second_put_at_a_sequence_is_keyexist_and_keeps_the_first)
{
	struct storage_txn *t = wtxn();
	put_simple(t, 5, LEDGER_GAP, LEDGER_GAP_RELEASED);
	/* In the same transaction... */
	struct ledger_entry other = {
	        .seq = 5,
	        .kind = LEDGER_COMMITTED,
	        .token = 1,
	        .projection = "intruder",
	        .projection_len = 8,
	        .ops = (const uint8_t *)"xyz",
	        .ops_len = 3,
	};
	cr_assert_eq(ledger_put(t, &other), WB_E_KEYEXIST);
	commit(t);

	/* ...and in a later one, with the same kind as the first. */
	t = wtxn();
	other.kind = LEDGER_GAP;
	other.reason = LEDGER_GAP_RELEASED;
	cr_assert_eq(ledger_put(t, &other), WB_E_KEYEXIST);
	commit(t);

	t = rtxn();
	get_check_simple(t, 5, LEDGER_GAP, LEDGER_GAP_RELEASED);
	storage_txn_abort(t);
	cr_assert_eq(count_entries(), 1);
}

Test(ledger, put_rejects_invalid_entries)
{
	static const struct {
		int kind;
		int reason;
	} bad[] = {
	        {LEDGER_COMMITTED, LEDGER_GAP_RELEASED},
	        {LEDGER_COMMITTED, LEDGER_RECOVERED_STAGED},
	        {LEDGER_COMMITTED, 6},
	        {LEDGER_GAP, LEDGER_REASON_NONE},
	        {LEDGER_GAP, LEDGER_RECOVERED_STAGED},
	        {LEDGER_GAP, LEDGER_RECOVERED_RESEQUENCED},
	        {LEDGER_RECOVERED, LEDGER_REASON_NONE},
	        {LEDGER_RECOVERED, LEDGER_GAP_EXPIRED},
	        {LEDGER_RECOVERED, LEDGER_GAP_RESTART},
	        {0, LEDGER_REASON_NONE},
	        {4, LEDGER_REASON_NONE},
	        {4, LEDGER_RECOVERED_STAGED},
	};
	char name256[256];
	memset(name256, 'n', sizeof(name256));

	struct storage_txn *t = wtxn();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ledger_entry e = {
		        .seq = 10 + i,
		        .kind = (enum ledger_kind)bad[i].kind,
		        .reason = (enum ledger_reason)bad[i].reason,
		        .projection = "p",
		        .projection_len = 1,
		};
		cr_assert_eq(ledger_put(t, &e), WB_E_INVAL, "kind %d reason %d", bad[i].kind,
		             bad[i].reason);
	}

	struct ledger_entry e = {
	        .seq = 30,
	        .kind = LEDGER_COMMITTED,
	        .projection = name256,
	        .projection_len = 256,
	};
	cr_assert_eq(ledger_put(t, &e), WB_E_INVAL, "projection of 256 bytes");
	e = (struct ledger_entry){
	        .seq = 31,
	        .kind = LEDGER_GAP,
	        .reason = LEDGER_GAP_EXPIRED,
	        .operation_id = name256,
	        .operation_id_len = 256,
	};
	cr_assert_eq(ledger_put(t, &e), WB_E_INVAL, "operation id of 256 bytes");
	e = (struct ledger_entry){.seq = 0, .kind = LEDGER_COMMITTED};
	cr_assert_eq(ledger_put(t, &e), WB_E_INVAL, "sequence 0");
	commit(t);

	/* Nothing was stored, and sequence 0 is not readable either. */
	cr_assert_eq(count_entries(), 0);
	t = rtxn();
	struct ledger_entry got;
	cr_assert_eq(ledger_get(t, 0, &got), WB_E_NOTFOUND);
	cr_assert_eq(ledger_get(t, 30, &got), WB_E_NOTFOUND);
	storage_txn_abort(t);
}

Test(ledger, get_of_an_absent_sequence_is_notfound)
{
	struct storage_txn *t = rtxn();
	struct ledger_entry got;
	cr_assert_eq(ledger_get(t, 1, &got), WB_E_NOTFOUND);
	storage_txn_abort(t);

	t = wtxn();
	put_committed(t, 5);
	commit(t);

	t = rtxn();
	cr_assert_eq(ledger_get(t, 4, &got), WB_E_NOTFOUND);
	cr_assert_eq(ledger_get(t, 6, &got), WB_E_NOTFOUND);
	cr_assert_eq(ledger_get(t, UINT64_MAX, &got), WB_E_NOTFOUND);
	get_check_simple(t, 5, LEDGER_COMMITTED, LEDGER_REASON_NONE);
	storage_txn_abort(t);
}

/* ----------------------------------------------------------------- decode */

/* Stores a real entry with every variable part non-empty and returns a
 * heap copy of its stored record. */
static uint8_t *real_record(size_t *len)
{
	static const uint8_t ops[40] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	struct ledger_entry e = {
	        .seq = 9,
	        .kind = LEDGER_RECOVERED,
	        .reason = LEDGER_RECOVERED_RESEQUENCED,
	        .time_us = T0,
	        .source_position = 12,
	        .original_expiry_us = T0 - 5,
	        .original_seq = 3,
	        .token = 0xDEADBEEF,
	        .projection = "orders",
	        .projection_len = 6,
	        .operation_id = "op-42",
	        .operation_id_len = 5,
	        .ops = ops,
	        .ops_len = sizeof(ops),
	};
	struct storage_txn *t = wtxn();
	cr_assert_eq(ledger_put(t, &e), 0);
	uint8_t kb[8];
	put_u64(kb, 9);
	struct storage_val k = {kb, 8};
	struct storage_val v;
	cr_assert_eq(storage_get(t, STORAGE_DB_LEDGER, k, &v), 0);
	cr_assert_eq(v.len, LEDGER_HEADER + 6 + 5 + sizeof(ops));
	uint8_t *copy = malloc(v.len);
	cr_assert_not_null(copy);
	memcpy(copy, v.data, v.len);
	*len = v.len;
	commit(t);
	return copy;
}

/* Decodes rec[0..len) from an exact-size heap copy, so that a read past
 * its end is caught by ASan and valgrind. */
static int decode_exact(const uint8_t *rec, size_t len, struct ledger_entry *out)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	cr_assert_not_null(copy);
	if (len > 0)
		memcpy(copy, rec, len);
	int rc = ledger_decode(9, copy, len, out);
	free(copy);
	return rc;
}

Test(ledger, decode_accepts_the_real_record)
{
	size_t len;
	uint8_t *rec = real_record(&len);
	struct ledger_entry e;
	cr_assert_eq(ledger_decode(9, rec, len, &e), 0);
	cr_assert_eq(e.seq, 9);
	cr_assert_eq(e.kind, LEDGER_RECOVERED);
	cr_assert_eq(e.reason, LEDGER_RECOVERED_RESEQUENCED);
	cr_assert_eq(e.original_seq, 3);
	cr_assert_eq(e.token, 0xDEADBEEF);
	cr_assert_eq(e.projection_len, 6);
	cr_assert_eq(memcmp(e.projection, "orders", 6), 0);
	cr_assert_eq(e.operation_id_len, 5);
	cr_assert_eq(memcmp(e.operation_id, "op-42", 5), 0);
	cr_assert_eq(e.ops_len, 40);
	cr_assert_eq(e.ops[9], 10);
	free(rec);
}

Test(ledger, decode_rejects_every_truncation)
{
	size_t len;
	uint8_t *rec = real_record(&len);
	for (size_t n = 0; n < len; n++) {
		struct ledger_entry e;
		cr_assert_eq(decode_exact(rec, n, &e), WB_E_CORRUPT, "truncated to %zu of %zu", n,
		             len);
	}
	struct ledger_entry e;
	cr_assert_eq(ledger_decode(9, NULL, 0, &e), WB_E_CORRUPT);
	free(rec);
}

Test(ledger, decode_rejects_a_wrong_format_byte)
{
	size_t len;
	uint8_t *rec = real_record(&len);
	static const uint8_t formats[] = {0, 2, 0x81, 0xFF};
	for (size_t i = 0; i < sizeof(formats); i++) {
		rec[0] = formats[i];
		struct ledger_entry e;
		cr_assert_eq(decode_exact(rec, len, &e), WB_E_CORRUPT, "format %u", formats[i]);
	}
	free(rec);
}

Test(ledger, decode_rejects_a_bad_kind_or_reason)
{
	size_t len;
	uint8_t *rec = real_record(&len);
	static const uint8_t bad[][2] = {
	        {0, 0},
	        {4, 0},
	        {0xFF, 0},
	        {LEDGER_COMMITTED, 1},
	        {LEDGER_COMMITTED, 4},
	        {LEDGER_GAP, 0},
	        {LEDGER_GAP, 4},
	        {LEDGER_GAP, 6},
	        {LEDGER_RECOVERED, 0},
	        {LEDGER_RECOVERED, 3},
	        {LEDGER_RECOVERED, 6},
	        {LEDGER_RECOVERED, 0xFF},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rec[1] = bad[i][0];
		rec[2] = bad[i][1];
		struct ledger_entry e;
		cr_assert_eq(decode_exact(rec, len, &e), WB_E_CORRUPT, "kind %u reason %u",
		             bad[i][0], bad[i][1]);
	}
	free(rec);
}

Test(ledger, decode_rejects_lengths_that_do_not_add_up)
{
	size_t len;
	uint8_t *rec = real_record(&len);
	uint8_t *buf = malloc(len + 1);
	cr_assert_not_null(buf);
	struct ledger_entry e;

	/* The projection, the operation id and the ops lengths, each one
	 * off in either direction and at its maximum. */
	static const struct {
		size_t at;
		uint32_t value;
		bool u32;
	} bad[] = {
	        {3, 7, false},
	        {3, 5, false},
	        {3, 0, false},
	        {3, 255, false},
	        {4, 6, false},
	        {4, 4, false},
	        {4, 0, false},
	        {4, 255, false},
	        {48, 41, true},
	        {48, 39, true},
	        {48, 0, true},
	        {48, UINT32_MAX, true},
	        {48, UINT32_MAX - 10, true},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(buf, rec, len);
		if (bad[i].u32)
			put_u32(buf + bad[i].at, bad[i].value);
		else
			buf[bad[i].at] = (uint8_t)bad[i].value;
		cr_assert_eq(decode_exact(buf, len, &e), WB_E_CORRUPT, "byte %zu = %" PRIu32,
		             bad[i].at, bad[i].value);
	}

	/* Lengths that still add up to the record's size decode: the sum is
	 * what is checked, and the pieces move. */
	memcpy(buf, rec, len);
	buf[3] = 7;
	buf[4] = 4;
	cr_assert_eq(decode_exact(buf, len, &e), 0);

	/* A byte more than the lengths account for. */
	memcpy(buf, rec, len);
	buf[len] = 0;
	cr_assert_eq(decode_exact(buf, len + 1, &e), WB_E_CORRUPT, "a trailing byte");

	free(buf);
	free(rec);
}

Test(ledger, get_and_read_of_a_corrupt_stored_record_are_corrupt)
{
	struct storage_txn *t = wtxn();
	put_committed(t, 1);
	uint8_t kb[8];
	put_u64(kb, 2);
	static const uint8_t junk[LEDGER_HEADER - 1] = {1, LEDGER_COMMITTED};
	struct storage_val k = {kb, 8};
	struct storage_val v = {junk, sizeof(junk)};
	cr_assert_eq(storage_put(t, STORAGE_DB_LEDGER, k, v, 0), 0);
	commit(t);

	t = rtxn();
	struct ledger_entry e;
	cr_assert_eq(ledger_get(t, 2, &e), WB_E_CORRUPT);
	storage_txn_abort(t);

	struct seen s = {0};
	uint64_t next;
	cr_assert_eq(read_ledger(0, 10, &s, &next), WB_E_CORRUPT);
	uint64_t want[] = {1};
	expect_seen(&s, want, 1);
}

/* ----------------------------------------------------------- stored bytes */

/* The stored bytes are the ones ledger.h documents: a backup read by
 * another build, or a tool, depends on them. */
static void expect_u64_at(const uint8_t *p, size_t at, uint64_t want)
{
	cr_assert_eq(get_u64(p + at), want, "u64 at byte %zu", at);
}

static struct storage_val raw_get(struct storage_txn *t, enum storage_db db, const void *key,
                                  size_t key_len)
{
	struct storage_val k = {key, key_len};
	struct storage_val v;
	cr_assert_eq(storage_get(t, db, k, &v), 0);
	return v;
}

Test(ledger, stored_entry_record_has_the_documented_layout)
{
	struct ledger_entry e = {
	        .seq = 0x0102030405060708ull,
	        .kind = LEDGER_GAP,
	        .reason = LEDGER_GAP_EXPIRED,
	        .time_us = 0x1112131415161718ull,
	        .source_position = 0x2122232425262728ull,
	        .original_expiry_us = 0x3132333435363738ull,
	        .original_seq = 0x4142434445464748ull,
	        .token = 0x5152535455565758ull,
	        .projection = "proj",
	        .projection_len = 4,
	        .operation_id = "op",
	        .operation_id_len = 2,
	        .ops = (const uint8_t *)"OPS",
	        .ops_len = 3,
	};
	struct storage_txn *t = wtxn();
	cr_assert_eq(ledger_put(t, &e), 0);
	commit(t);

	t = rtxn();
	static const uint8_t key[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct storage_val v = raw_get(t, STORAGE_DB_LEDGER, key, sizeof(key));
	const uint8_t *p = v.data;
	cr_assert_eq(v.len, LEDGER_HEADER + 4 + 2 + 3);
	cr_assert_eq(LEDGER_HEADER, 52);
	cr_assert_eq(p[0], 1, "format");
	cr_assert_eq(p[1], LEDGER_GAP);
	cr_assert_eq(p[2], LEDGER_GAP_EXPIRED);
	cr_assert_eq(p[3], 4, "projection length");
	cr_assert_eq(p[4], 2, "operation id length");
	cr_assert_eq(p[5] | p[6] | p[7], 0, "reserved bytes");
	expect_u64_at(p, 8, e.time_us);
	expect_u64_at(p, 16, e.source_position);
	expect_u64_at(p, 24, e.original_expiry_us);
	expect_u64_at(p, 32, e.original_seq);
	expect_u64_at(p, 40, e.token);
	cr_assert_eq(get_u32(p + 48), 3, "ops length");
	cr_assert_eq(memcmp(p + LEDGER_HEADER,
	                    "proj"
	                    "op"
	                    "OPS",
	                    9),
	             0);
	storage_txn_abort(t);
}

Test(ledger, stored_staged_and_meta_records_have_the_documented_layout)
{
	struct storage_txn *t = wtxn();
	cr_assert_eq(ledger_stage(t, 0x0A0B0C0D01020304ull, 0x6162636465666768ull,
	                          (const uint8_t *)"ab", 2),
	             0);
	cr_assert_eq(ledger_set_ceiling(t, 0x0000010203040506ull), 0);
	commit(t);
	/* Entries 1 and 2 and an advance store the watermark. */
	t = wtxn();
	put_committed(t, 1);
	put_committed(t, 2);
	uint64_t w;
	cr_assert_eq(ledger_advance(t, 2, NULL, NULL, &w), 0);
	commit(t);

	t = rtxn();
	static const uint8_t key[8] = {0x0A, 0x0B, 0x0C, 0x0D, 1, 2, 3, 4};
	struct storage_val v = raw_get(t, STORAGE_DB_STAGED, key, sizeof(key));
	const uint8_t *p = v.data;
	cr_assert_eq(v.len, 16 + 2);
	cr_assert_eq(p[0], 1, "format");
	for (size_t i = 1; i < 8; i++)
		cr_assert_eq(p[i], 0, "reserved byte %zu", i);
	expect_u64_at(p, 8, 0x6162636465666768ull);
	cr_assert_eq(memcmp(p + 16, "ab", 2), 0);

	v = raw_get(t, STORAGE_DB_META, "lease_ceiling", strlen("lease_ceiling"));
	cr_assert_eq(v.len, 8);
	expect_u64_at(v.data, 0, 0x0000010203040506ull);
	v = raw_get(t, STORAGE_DB_META, "watermark", strlen("watermark"));
	cr_assert_eq(v.len, 8);
	expect_u64_at(v.data, 0, 2);
	storage_txn_abort(t);
}

/* ----------------------------------------------------------------- staged */

/* The staged work at seq, which must be there with token and ops[0..len). */
static void expect_staged(struct storage_txn *t, uint64_t seq, uint64_t token, const char *ops,
                          size_t len)
{
	uint64_t got_token;
	const uint8_t *got_ops;
	size_t got_len;
	cr_assert_eq(ledger_get_staged(t, seq, &got_token, &got_ops, &got_len), 0,
	             "no staged work at %" PRIu64, seq);
	cr_assert_eq(got_token, token, "staged at %" PRIu64 ": token", seq);
	cr_assert_eq(got_len, len, "staged at %" PRIu64 ": %zu bytes of ops, want %zu", seq,
	             got_len, len);
	cr_assert(len == 0 || memcmp(got_ops, ops, len) == 0, "staged at %" PRIu64 ": other ops",
	          seq);
}

Test(ledger, stage_read_back_replace_and_drop)
{
	uint64_t token;
	const uint8_t *ops;
	size_t ops_len;

	struct storage_txn *t = wtxn();
	cr_assert_eq(ledger_get_staged(t, 5, &token, &ops, &ops_len), WB_E_NOTFOUND);
	cr_assert_eq(ledger_stage(t, 5, 0x1122334455667788ull, (const uint8_t *)"first ops", 9), 0);
	cr_assert_eq(ledger_stage(t, 6, 42, NULL, 0), 0);
	commit(t);

	t = rtxn();
	expect_staged(t, 5, 0x1122334455667788ull, "first ops", 9);
	expect_staged(t, 6, 42, "", 0);
	cr_assert_eq(ledger_get_staged(t, 4, &token, &ops, &ops_len), WB_E_NOTFOUND);
	/* Staged work is not a final entry. */
	struct ledger_entry e;
	cr_assert_eq(ledger_get(t, 5, &e), WB_E_NOTFOUND);
	storage_txn_abort(t);

	/* Replacing: shorter ops and another token. */
	t = wtxn();
	cr_assert_eq(ledger_stage(t, 5, 7, (const uint8_t *)"2nd", 3), 0);
	commit(t);
	t = rtxn();
	expect_staged(t, 5, 7, "2nd", 3);
	cr_assert_eq(count_staged(t), 2);
	storage_txn_abort(t);

	t = wtxn();
	cr_assert_eq(ledger_drop_staged(t, 5), 0);
	cr_assert_eq(ledger_drop_staged(t, 5), 0, "a second drop");
	cr_assert_eq(ledger_drop_staged(t, 99), 0, "a drop of never-staged work");
	commit(t);
	t = rtxn();
	cr_assert_eq(ledger_get_staged(t, 5, &token, &ops, &ops_len), WB_E_NOTFOUND);
	cr_assert_eq(ledger_get_staged(t, 6, &token, &ops, &ops_len), 0, "6 is untouched");
	cr_assert_eq(token, 42);
	cr_assert_eq(count_staged(t), 1);
	storage_txn_abort(t);
}

/* ledger_finish(): the entry as given, or its staged work recovered; the
 * staged work goes either way. */
Test(ledger, finish_writes_the_entry_or_recovers_staged_work_and_drops_it)
{
	struct storage_txn *t = wtxn();
	cr_assert_eq(ledger_stage(t, 5, 77, (const uint8_t *)"work", 4), 0);
	cr_assert_eq(ledger_stage(t, 6, 88, (const uint8_t *)"kept", 4), 0);
	cr_assert_eq(ledger_stage(t, 8, 99, (const uint8_t *)"dropped", 7), 0);
	commit(t);

	struct ledger_entry gap = {.kind = LEDGER_GAP,
	                           .reason = LEDGER_GAP_EXPIRED,
	                           .time_us = T0,
	                           .token = 77,
	                           .projection = "p",
	                           .projection_len = 1,
	                           .original_expiry_us = T0 - 5};
	bool recovered = true;
	t = wtxn();
	gap.seq = 4; /* nothing staged */
	cr_assert_eq(ledger_finish(t, &gap, true, &recovered), 0);
	cr_assert_not(recovered);
	gap.seq = 5;
	cr_assert_eq(ledger_finish(t, &gap, true, &recovered), 0);
	cr_assert(recovered);
	gap.seq = 8; /* not from staged work: the entry as given */
	cr_assert_eq(ledger_finish(t, &gap, false, &recovered), 0);
	cr_assert_not(recovered);
	gap.seq = 5;
	cr_assert_eq(ledger_finish(t, &gap, true, NULL), WB_E_KEYEXIST, "one final entry");
	commit(t);

	t = rtxn();
	struct ledger_entry e;
	cr_assert_eq(ledger_get(t, 4, &e), 0);
	cr_assert_eq(e.kind, LEDGER_GAP);
	cr_assert_eq(e.ops_len, 0);
	cr_assert_eq(ledger_get(t, 5, &e), 0);
	cr_assert_eq(e.kind, LEDGER_RECOVERED);
	cr_assert_eq(e.reason, LEDGER_RECOVERED_STAGED);
	cr_assert_eq(e.token, 77);
	cr_assert_eq(e.ops_len, 4);
	cr_assert_eq(memcmp(e.ops, "work", 4), 0);
	cr_assert_eq(e.original_expiry_us, T0 - 5);
	cr_assert_eq(e.projection_len, 1);
	cr_assert_eq(ledger_get(t, 8, &e), 0);
	cr_assert_eq(e.kind, LEDGER_GAP);
	cr_assert_eq(e.ops_len, 0);
	cr_assert_eq(count_staged(t), 1, "only 6's work is left");
	storage_txn_abort(t);
}

Test(ledger, get_staged_rejects_a_corrupt_record)
{
	uint64_t token;
	const uint8_t *ops;
	size_t ops_len;
	uint8_t kb[8];
	put_u64(kb, 3);
	uint8_t rec[16] = {1};
	struct storage_txn *t = wtxn();
	for (size_t n = 0; n < sizeof(rec); n++) {
		struct storage_val k = {kb, 8};
		struct storage_val v = {rec, n};
		cr_assert_eq(storage_put(t, STORAGE_DB_STAGED, k, v, 0), 0);
		cr_assert_eq(ledger_get_staged(t, 3, &token, &ops, &ops_len), WB_E_CORRUPT,
		             "staged record of %zu bytes", n);
	}
	rec[0] = 2;
	struct storage_val k = {kb, 8};
	struct storage_val v = {rec, sizeof(rec)};
	cr_assert_eq(storage_put(t, STORAGE_DB_STAGED, k, v, 0), 0);
	cr_assert_eq(ledger_get_staged(t, 3, &token, &ops, &ops_len), WB_E_CORRUPT, "format 2");
	storage_txn_abort(t);
}

/* ------------------------------------------------------------------ state */

Test(ledger, new_store_has_watermark_0_and_ceiling_0)
{
	struct ledger_state s = state();
	cr_assert_eq(s.watermark, 0);
	cr_assert_eq(s.ceiling, 0);
}

Test(ledger, set_ceiling_only_raises)
{
	set_ceiling(10);
	cr_assert_eq(state().ceiling, 10);
	set_ceiling(5);
	cr_assert_eq(state().ceiling, 10, "a lower ceiling lowered it");
	set_ceiling(10);
	cr_assert_eq(state().ceiling, 10);
	set_ceiling(0);
	cr_assert_eq(state().ceiling, 10);
	set_ceiling(1000000);
	cr_assert_eq(state().ceiling, 1000000);
	cr_assert_eq(state().watermark, 0, "the ceiling moved the watermark");

	/* Within one transaction as well. */
	struct storage_txn *t = wtxn();
	cr_assert_eq(ledger_set_ceiling(t, 2000000), 0);
	cr_assert_eq(ledger_set_ceiling(t, 1500000), 0);
	struct ledger_state s;
	cr_assert_eq(ledger_get_state(t, &s), 0);
	cr_assert_eq(s.ceiling, 2000000);
	commit(t);
	cr_assert_eq(state().ceiling, 2000000);
}

Test(ledger, watermark_above_ceiling_is_corrupt)
{
	struct storage_txn *t = wtxn();
	meta_put_u64(t, "lease_ceiling", 3);
	meta_put_u64(t, "watermark", 4);
	commit(t);

	struct ledger_state s;
	t = rtxn();
	cr_assert_eq(ledger_get_state(t, &s), WB_E_CORRUPT);
	storage_txn_abort(t);

	/* Equal is fine. */
	t = wtxn();
	meta_put_u64(t, "lease_ceiling", 4);
	commit(t);
	s = state();
	cr_assert_eq(s.watermark, 4);
	cr_assert_eq(s.ceiling, 4);
}

Test(ledger, meta_values_of_the_wrong_size_are_corrupt)
{
	static const uint8_t four[4] = {0, 0, 0, 1};
	struct ledger_state s;
	struct storage_txn *t = wtxn();
	meta_put_raw(t, "lease_ceiling", four, sizeof(four));
	cr_assert_eq(ledger_get_state(t, &s), WB_E_CORRUPT, "a 4-byte ceiling");
	cr_assert_eq(ledger_set_ceiling(t, 10), WB_E_CORRUPT);
	meta_put_u64(t, "lease_ceiling", 10);
	meta_put_raw(t, "watermark", four, sizeof(four));
	cr_assert_eq(ledger_get_state(t, &s), WB_E_CORRUPT, "a 4-byte watermark");
	uint64_t w = 99;
	cr_assert_eq(ledger_advance(t, 10, NULL, NULL, &w), WB_E_CORRUPT);
	cr_assert_eq(w, 99, "*watermark written on failure");
	storage_txn_abort(t);
}

/* ---------------------------------------------------------------- advance */

/* Entries at 1, 2 and 4, a ceiling of 100, the watermark at 0. */
static void entries_1_2_4(void)
{
	set_ceiling(100);
	struct storage_txn *t = wtxn();
	put_committed(t, 1);
	put_simple(t, 2, LEDGER_GAP, LEDGER_GAP_EXPIRED);
	put_simple(t, 4, LEDGER_RECOVERED, LEDGER_RECOVERED_STAGED);
	commit(t);
}

static int advance(uint64_t target, struct applied *a, uint64_t *watermark)
{
	struct storage_txn *t = wtxn();
	a->txn = t;
	int rc = ledger_advance(t, target, apply_cb, a, watermark);
	a->txn = NULL;
	commit(t);
	return rc;
}

/* advance() to target, which must succeed and answer the watermark want
 * (the answer is primed with another value). */
static void advance_to(uint64_t target, struct applied *a, uint64_t want)
{
	uint64_t w = 99;
	cr_assert_eq(advance(target, a, &w), 0, "advance to %" PRIu64, target);
	cr_assert_eq(w, want, "advance to %" PRIu64 ": watermark %" PRIu64 ", want %" PRIu64,
	             target, w, want);
}

Test(ledger, advance_stops_at_the_first_hole)
{
	entries_1_2_4();
	struct applied a = {0};
	advance_to(10, &a, 2);
	uint64_t want[] = {1, 2};
	expect_applied(&a, want, 2);
	cr_assert_eq(a.kind[0], LEDGER_COMMITTED);
	cr_assert_eq(a.kind[1], LEDGER_GAP);
	cr_assert_eq(a.reason[1], LEDGER_GAP_EXPIRED);
	cr_assert_eq(a.token[1], token_of(2), "apply was given another entry");
	/* Stored: a new transaction sees it. */
	cr_assert_eq(state().watermark, 2);
	cr_assert_eq(state().ceiling, 100);
}

Test(ledger, advance_after_the_hole_fills_applies_only_the_new_entries)
{
	entries_1_2_4();
	struct applied a = {0};
	advance_to(10, &a, 2);

	struct storage_txn *t = wtxn();
	put_simple(t, 3, LEDGER_GAP, LEDGER_GAP_RELEASED);
	commit(t);
	advance_to(10, &a, 4);
	uint64_t want[] = {1, 2, 3, 4};
	expect_applied(&a, want, 4);
	cr_assert_eq(a.reason[2], LEDGER_GAP_RELEASED);
	cr_assert_eq(a.kind[3], LEDGER_RECOVERED);
	cr_assert_eq(state().watermark, 4);

	/* Nothing more to pass: no calls, the watermark stays. */
	advance_to(10, &a, 4);
	expect_applied(&a, want, 4);
}

Test(ledger, advance_never_passes_target)
{
	entries_1_2_4();
	struct applied a = {0};
	advance_to(1, &a, 1);
	uint64_t want[] = {1};
	expect_applied(&a, want, 1);
	cr_assert_eq(state().watermark, 1);
}

Test(ledger, advance_to_a_target_below_the_watermark_does_nothing)
{
	entries_1_2_4();
	struct applied a = {0};
	advance_to(2, &a, 2);
	a.n = 0;

	advance_to(1, &a, 2);
	cr_assert_eq(a.n, 0);
	advance_to(0, &a, 2);
	advance_to(2, &a, 2);
	cr_assert_eq(a.n, 0);
	cr_assert_eq(state().watermark, 2, "the watermark moved backwards");
}

Test(ledger, advance_without_apply_moves_the_watermark)
{
	entries_1_2_4();
	struct storage_txn *t = wtxn();
	uint64_t w = 99;
	cr_assert_eq(ledger_advance(t, 100, NULL, NULL, &w), 0);
	cr_assert_eq(w, 2);
	commit(t);
	cr_assert_eq(state().watermark, 2);
}

Test(ledger, advance_stops_when_apply_fails)
{
	entries_1_2_4();
	struct applied a = {0};
	uint64_t w;
	advance_to(10, &a, 2);

	struct storage_txn *t = wtxn();
	put_committed(t, 3);
	commit(t);

	/* As the writer runs it: the advance in a child, aborted when it
	 * fails. */
	t = wtxn();
	struct storage_txn *child = child_txn(t);
	a = (struct applied){.txn = child, .fail_at = 3, .fail_rc = WB_E_IO};
	w = 99;
	cr_assert_eq(ledger_advance(child, 10, apply_cb, &a, &w), WB_E_IO);
	uint64_t want[] = {3};
	expect_applied(&a, want, 1);
	struct ledger_state s;
	cr_assert_eq(ledger_get_state(child, &s), 0);
	cr_assert_eq(s.watermark, 2, "the watermark passed an entry that failed to apply");
	storage_txn_abort(child);
	cr_assert_eq(ledger_get_state(t, &s), 0);
	cr_assert_eq(s.watermark, 2);
	commit(t);
	cr_assert_eq(state().watermark, 2);

	/* The failed entry is applied again by the next advance, then 4. */
	a = (struct applied){0};
	advance_to(10, &a, 4);
	expect_applied(&a, (const uint64_t[]){3, 4}, 2);
}

Test(ledger, advance_failing_midway_in_an_aborted_child_moves_nothing)
{
	entries_1_2_4();
	struct storage_txn *t = wtxn();
	put_committed(t, 3);
	struct storage_txn *child = child_txn(t);
	struct applied a = {.txn = child, .fail_at = 3, .fail_rc = WB_E_NOMEM};
	uint64_t w = 99;
	cr_assert_eq(ledger_advance(child, 10, apply_cb, &a, &w), WB_E_NOMEM);
	uint64_t want[] = {1, 2, 3};
	expect_applied(&a, want, 3);
	storage_txn_abort(child);
	commit(t);
	cr_assert_eq(state().watermark, 0);
}

/* --------------------------------------------------------------- recovery */

static const uint64_t T1 = T0 + 5000000u; /* the restart */

/* Ceiling 10, watermark 2 (entries 1 and 2), committed entries at 3 and 6,
 * staged work at 5, 6 and 7. */
static void crash_scene(void)
{
	set_ceiling(10);
	struct storage_txn *t = wtxn();
	put_committed(t, 1);
	put_committed(t, 2);
	uint64_t w;
	cr_assert_eq(ledger_advance(t, 2, NULL, NULL, &w), 0);
	cr_assert_eq(w, 2);
	put_committed(t, 3);
	put_committed(t, 6);
	cr_assert_eq(ledger_stage(t, 5, 0x5555, (const uint8_t *)"ops of five", 11), 0);
	cr_assert_eq(ledger_stage(t, 6, 0x6666, (const uint8_t *)"stale six", 9), 0);
	cr_assert_eq(ledger_stage(t, 7, 0x7777, (const uint8_t *)"seven", 5), 0);
	commit(t);
	struct ledger_state s = state();
	cr_assert_eq(s.watermark, 2);
	cr_assert_eq(s.ceiling, 10);
}

static int recover(struct applied *a, struct ledger_recovery *out)
{
	struct storage_txn *t = wtxn();
	a->txn = t;
	int rc = ledger_recover(t, T1, apply_cb, a, out);
	a->txn = NULL;
	if (rc == 0)
		commit(t);
	else
		storage_txn_abort(t);
	return rc;
}

/* recover() into *r (primed with garbage), which must succeed with these
 * figures. */
static void recover_expect(struct applied *a, struct ledger_recovery *r, uint64_t gaps,
                           uint64_t recovered, uint64_t watermark)
{
	memset(r, 0xCC, sizeof(*r));
	cr_assert_eq(recover(a, r), 0);
	cr_assert_eq(r->gaps, gaps, "gaps %" PRIu64 ", want %" PRIu64, r->gaps, gaps);
	cr_assert_eq(r->recovered, recovered, "recovered %" PRIu64 ", want %" PRIu64, r->recovered,
	             recovered);
	cr_assert_eq(r->watermark, watermark, "watermark %" PRIu64 ", want %" PRIu64, r->watermark,
	             watermark);
}

static void check_recovered(struct storage_txn *t, uint64_t seq, uint64_t token, const char *ops)
{
	struct ledger_entry e;
	cr_assert_eq(ledger_get(t, seq, &e), 0, "no entry at %" PRIu64, seq);
	cr_assert_eq(e.kind, LEDGER_RECOVERED, "seq %" PRIu64, seq);
	cr_assert_eq(e.reason, LEDGER_RECOVERED_STAGED, "seq %" PRIu64, seq);
	cr_assert_eq(e.token, token);
	cr_assert_eq(e.time_us, T1);
	cr_assert_eq(e.ops_len, strlen(ops));
	cr_assert_eq(memcmp(e.ops, ops, strlen(ops)), 0);
}

Test(ledger, recover_fills_gaps_recovers_staged_work_and_applies_in_order)
{
	crash_scene();
	struct applied a = {0};
	struct ledger_recovery r;
	recover_expect(&a, &r, 4, 2, 10);

	uint64_t want[] = {3, 4, 5, 6, 7, 8, 9, 10};
	expect_applied(&a, want, 8);
	static const enum ledger_kind kind[] = {
	        LEDGER_COMMITTED, LEDGER_GAP, LEDGER_RECOVERED, LEDGER_COMMITTED,
	        LEDGER_RECOVERED, LEDGER_GAP, LEDGER_GAP,       LEDGER_GAP,
	};
	for (size_t i = 0; i < 8; i++)
		cr_assert_eq(a.kind[i], kind[i], "apply of %" PRIu64 ": kind %d", want[i],
		             a.kind[i]);

	struct storage_txn *t = rtxn();
	static const uint64_t gaps[] = {4, 8, 9, 10};
	for (size_t i = 0; i < 4; i++) {
		struct ledger_entry e;
		cr_assert_eq(ledger_get(t, gaps[i], &e), 0, "no entry at %" PRIu64, gaps[i]);
		cr_assert_eq(e.kind, LEDGER_GAP, "seq %" PRIu64, gaps[i]);
		cr_assert_eq(e.reason, LEDGER_GAP_RESTART, "seq %" PRIu64, gaps[i]);
		cr_assert_eq(e.time_us, T1);
		cr_assert_eq(e.ops_len, 0);
	}
	check_recovered(t, 5, 0x5555, "ops of five");
	check_recovered(t, 7, 0x7777, "seven");
	get_check_simple(t, 3, LEDGER_COMMITTED, LEDGER_REASON_NONE);
	get_check_simple(t, 6, LEDGER_COMMITTED, LEDGER_REASON_NONE);
	get_check_simple(t, 1, LEDGER_COMMITTED, LEDGER_REASON_NONE);
	cr_assert_eq(count_staged(t), 0, "staged work remains");
	struct ledger_state s;
	cr_assert_eq(ledger_get_state(t, &s), 0);
	cr_assert_eq(s.watermark, 10);
	cr_assert_eq(s.ceiling, 10);
	storage_txn_abort(t);
	cr_assert_eq(count_entries(), 10);
}

Test(ledger, second_recovery_is_a_no_op)
{
	crash_scene();
	struct applied a = {0};
	struct ledger_recovery r;
	cr_assert_eq(recover(&a, &r), 0);
	cr_assert_eq(a.n, 8);

	a = (struct applied){0};
	recover_expect(&a, &r, 0, 0, 10);
	cr_assert_eq(a.n, 0, "an entry was applied twice");
	cr_assert_eq(count_entries(), 10);
	struct storage_txn *t = rtxn();
	check_recovered(t, 5, 0x5555, "ops of five");
	storage_txn_abort(t);
}

Test(ledger, recovery_with_watermark_at_the_ceiling_does_nothing)
{
	set_ceiling(3);
	struct storage_txn *t = wtxn();
	put_committed(t, 1);
	put_committed(t, 2);
	put_simple(t, 3, LEDGER_GAP, LEDGER_GAP_EXPIRED);
	uint64_t w;
	cr_assert_eq(ledger_advance(t, 3, NULL, NULL, &w), 0);
	cr_assert_eq(w, 3);
	commit(t);

	struct applied a = {0};
	struct ledger_recovery r;
	recover_expect(&a, &r, 0, 0, 3);
	cr_assert_eq(a.n, 0);
	cr_assert_eq(count_entries(), 3);
	t = rtxn();
	get_check_simple(t, 3, LEDGER_GAP, LEDGER_GAP_EXPIRED);
	storage_txn_abort(t);
	struct ledger_state s = state();
	cr_assert_eq(s.watermark, 3);
	cr_assert_eq(s.ceiling, 3);
}

Test(ledger, recovery_of_a_new_store_does_nothing)
{
	struct applied a = {0};
	struct ledger_recovery r;
	recover_expect(&a, &r, 0, 0, 0);
	cr_assert_eq(a.n, 0);
	cr_assert_eq(count_entries(), 0);
}

Test(ledger, recovery_refuses_a_watermark_above_the_ceiling)
{
	struct storage_txn *t = wtxn();
	meta_put_u64(t, "lease_ceiling", 2);
	meta_put_u64(t, "watermark", 5);
	commit(t);
	struct applied a = {0};
	struct ledger_recovery r;
	cr_assert_eq(recover(&a, &r), WB_E_CORRUPT);
	cr_assert_eq(a.n, 0);
	cr_assert_eq(count_entries(), 0);
}

Test(ledger, recovery_returns_the_error_of_apply)
{
	crash_scene();
	struct applied a = {.fail_at = 5, .fail_rc = WB_E_IO};
	struct ledger_recovery r;
	cr_assert_eq(recover(&a, &r), WB_E_IO);
	uint64_t want[] = {3, 4, 5};
	expect_applied(&a, want, 3);
	/* The transaction was aborted: the crash scene is intact. */
	cr_assert_eq(count_entries(), 4);
	struct storage_txn *t = rtxn();
	cr_assert_eq(count_staged(t), 3);
	storage_txn_abort(t);
}

/* ------------------------------------------------------------------- read */

/* Entries at 3, 4, 5 and 9 of every kind; staged work at 6 and 7. */
static void entries_with_holes(void)
{
	struct storage_txn *t = wtxn();
	put_committed(t, 3);
	put_simple(t, 4, LEDGER_GAP, LEDGER_GAP_RESTART);
	put_simple(t, 5, LEDGER_RECOVERED, LEDGER_RECOVERED_RESEQUENCED);
	put_simple(t, 9, LEDGER_GAP, LEDGER_GAP_RELEASED);
	cr_assert_eq(ledger_stage(t, 6, 1, (const uint8_t *)"x", 1), 0);
	cr_assert_eq(ledger_stage(t, 7, 1, (const uint8_t *)"y", 1), 0);
	commit(t);
}

Test(ledger, read_from_0_and_from_1_start_at_the_first_entry)
{
	entries_with_holes();
	uint64_t want[] = {3, 4, 5, 9};
	for (uint64_t from = 0; from <= 1; from++) {
		struct seen s = {0};
		uint64_t next = 0;
		cr_assert_eq(read_ledger(from, 100, &s, &next), 0);
		expect_seen(&s, want, 4);
		cr_assert_eq(next, 10, "from %" PRIu64, from);
		cr_assert_eq(s.kind[1], LEDGER_GAP);
		cr_assert_eq(s.reason[1], LEDGER_GAP_RESTART);
		cr_assert_eq(s.reason[2], LEDGER_RECOVERED_RESEQUENCED);
		cr_assert_str_eq(s.opid[3], "op-9");
	}
}

Test(ledger, read_skips_holes_and_staged_work)
{
	entries_with_holes();
	read_expect(5, 100, (const uint64_t[]){5, 9}, 2, 10);
	read_expect(6, 100, (const uint64_t[]){9}, 1, 10);
	/* Past the end: nothing visited, next continues where it was. */
	struct seen s = {0};
	uint64_t next = 0;
	cr_assert_eq(read_ledger(10, 100, &s, &next), 0);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(s.calls, 0);
	cr_assert_eq(next, 10, "past the end continues where it was");
}

Test(ledger, read_is_bounded_by_max_count_and_next_continues)
{
	entries_with_holes();
	uint64_t all[LOG_MAX];
	size_t n = 0;
	uint64_t from = 0;
	uint64_t nexts[8];
	size_t pages = 0;
	for (;;) {
		struct seen s = {0};
		uint64_t next = 0;
		cr_assert_eq(read_ledger(from, 3, &s, &next), 0);
		cr_assert_leq(s.n, 3, "max_count 3 yielded %zu", s.n);
		cr_assert_lt(pages, 8);
		nexts[pages++] = next;
		for (size_t i = 0; i < s.n; i++)
			all[n++] = s.seq[i];
		if (s.n == 0)
			break;
		from = next;
	}
	uint64_t want[] = {3, 4, 5, 9};
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(all[i], want[i]);
	cr_assert_eq(pages, 3);
	cr_assert_eq(nexts[0], 6);
	cr_assert_eq(nexts[1], 10);
	cr_assert_eq(nexts[2], 10);

	/* max_count 1 and 0. */
	read_expect(4, 1, (const uint64_t[]){4}, 1, 5);
	struct seen s = {0};
	uint64_t next = 0;
	cr_assert_eq(read_ledger(4, 0, &s, &next), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert_eq(next, 4);
}

Test(ledger, read_stops_before_the_entry_visit_refuses)
{
	entries_with_holes();
	struct seen s = {.stop_at = 3};
	uint64_t next = 0;
	cr_assert_eq(read_ledger(0, 100, &s, &next), 0);
	uint64_t want[] = {3, 4};
	expect_seen(&s, want, 2);
	cr_assert_eq(s.calls, 3, "visit called after it refused");
	cr_assert_eq(next, 5, "next is the refused entry");

	/* Continuing from next yields the refused entry first. */
	s = (struct seen){0};
	cr_assert_eq(read_ledger(next, 100, &s, &next), 0);
	uint64_t rest[] = {5, 9};
	expect_seen(&s, rest, 2);

	/* Refused at once: nothing visited, next where the read began. */
	s = (struct seen){.stop_at = 1};
	next = 0;
	cr_assert_eq(read_ledger(4, 100, &s, &next), 0);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(s.calls, 1);
	cr_assert_eq(next, 4);
}

Test(ledger, read_of_an_empty_ledger_visits_nothing)
{
	struct seen s = {0};
	uint64_t next = 0;
	cr_assert_eq(read_ledger(0, 100, &s, &next), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert_eq(next, 1);
}
