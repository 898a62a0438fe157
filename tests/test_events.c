/* Tests of event streams (storage/events.h) against a real store in a fresh
 * temporary directory. Appends run in a nested transaction of a write
 * transaction, as the writer thread runs them. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fixture.h"
#include "events.h"
#include "storage.h"

/* The store is opened with these, and reopened with them where a test
 * checks what survives a close. */
static const struct storage_options STORE_OPTS = {.map_size = 16u << 20};
FIXTURE_STORE_SUITE(events, &STORE_OPTS);

/* ---------------------------------------------------------------- helpers */

static const uint64_t T0 = 1700000000000000ull; /* a wall clock in µs */

static struct ev_new ev(const uint8_t *id, const char *type, const char *data)
{
	return (struct ev_new){
	        .id = id,
	        .type = type,
	        .type_len = strlen(type),
	        .data = (const uint8_t *)data,
	        .data_len = data != NULL ? strlen(data) : 0,
	};
}

/* A 16-byte id made from a small number. */
struct id16 {
	uint8_t b[EV_ID_LEN];
};

static struct id16 mkid(unsigned n)
{
	struct id16 id;
	memset(id.b, 0x5A, sizeof(id.b));
	put_u32(id.b + 12, n);
	return id;
}

/* Appends in a nested transaction and commits both on success; on failure
 * the nested transaction is aborted (and the parent committed, so that a
 * failure leaves nothing behind that a later read could see). */
static int append(const char *stream, enum ev_expected exp, uint64_t ver, const struct ev_new *evs,
                  size_t n, uint64_t now_us, struct ev_append_result *out)
{
	struct storage_txn *txn;
	struct storage_txn *child;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &txn), 0);
	cr_assert_eq(storage_txn_begin(st, txn, 0, &child), 0);
	int rc = ev_append(child, stream, strlen(stream), exp, ver, evs, n, now_us, out);
	if (rc == 0)
		cr_assert_eq(storage_txn_commit(child), 0);
	else
		storage_txn_abort(child);
	cr_assert_eq(storage_txn_commit(txn), 0);
	return rc;
}

static void append_ok(const char *stream, const struct ev_new *evs, size_t n,
                      struct ev_append_result *out)
{
	struct ev_append_result r;
	if (out == NULL)
		out = &r;
	int rc = append(stream, EV_EXPECT_ANY, 0, evs, n, T0, out);
	cr_assert_eq(rc, 0, "append to %s: %s (%s)", stream, wb_error_name(rc), out->errmsg);
}

/* Appends n events with generated ids and types "T0", "T1", ... to stream. */
static void append_n(const char *stream, size_t n)
{
	char types[64][8];
	struct ev_new evs[64];
	cr_assert_leq(n, 64);
	for (size_t i = 0; i < n; i++) {
		snprintf(types[i], sizeof(types[i]), "T%zu", i);
		evs[i] = ev(NULL, types[i], "x");
	}
	append_ok(stream, evs, n, NULL);
}

static struct storage_txn *rtxn(void)
{
	return fixture_txn(st, NULL, STORAGE_RDONLY);
}

static uint64_t last_position(void)
{
	struct storage_txn *t = rtxn();
	uint64_t last = 99;
	cr_assert_eq(ev_last_position(t, &last), 0);
	storage_txn_abort(t);
	return last;
}

/* What a read visited. */
#define SEEN_MAX 128
struct seen {
	size_t n;
	size_t stop_at; /* visit returns false on this call (1-based); 0: never */
	size_t calls;
	uint64_t position[SEEN_MAX];
	uint64_t version[SEEN_MAX];
	char stream[SEEN_MAX][32];
	char type[SEEN_MAX][32];
	uint8_t id[SEEN_MAX][EV_ID_LEN];
	uint64_t ts[SEEN_MAX];
};

static bool visit_cb(const struct ev_record *rec, void *arg)
{
	struct seen *s = arg;
	s->calls++;
	if (s->stop_at != 0 && s->calls == s->stop_at)
		return false;
	cr_assert_lt(s->n, SEEN_MAX);
	s->position[s->n] = rec->position;
	s->version[s->n] = rec->version;
	snprintf(s->stream[s->n], 32, "%.*s", (int)rec->stream_len, rec->stream);
	snprintf(s->type[s->n], 32, "%.*s", (int)rec->type_len, rec->type);
	memcpy(s->id[s->n], rec->id, EV_ID_LEN);
	s->ts[s->n] = rec->timestamp_us;
	s->n++;
	return true;
}

static int read_stream(const char *stream, uint64_t from, bool back, uint32_t max, struct seen *s,
                       struct ev_page *page)
{
	struct storage_txn *t = rtxn();
	int rc = ev_read_stream(t, stream, strlen(stream), from, back, max, visit_cb, s, page);
	storage_txn_abort(t);
	return rc;
}

static int read_all(uint64_t from, bool back, uint32_t max, const struct ev_filter *f,
                    struct seen *s, struct ev_page *page)
{
	struct storage_txn *t = rtxn();
	int rc = ev_read_all(t, from, back, max, f, visit_cb, s, page);
	storage_txn_abort(t);
	return rc;
}

/* ------------------------------------------------------ name and type checks */

struct name_case {
	const char *bytes;
	size_t len; /* 0: strlen(bytes) */
	bool ok;
	const char *why;
};

/* Checks both functions against the table. Failures are recorded with
 * cr_expect so that every case is reported and the copies are freed. */
static void check_table(const struct name_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].bytes);
		/* An exact-size copy catches reads past the end. */
		char *copy = malloc(len > 0 ? len : 1);
		cr_assert_not_null(copy);
		memcpy(copy, cases[i].bytes, len);
		char msg[256] = "";
		int rc = ev_check_stream_name(copy, len, msg, sizeof(msg));
		cr_expect_eq(rc, cases[i].ok ? 0 : WB_BAD_REQUEST, "stream name case %zu (%s): %s",
		             i, cases[i].why, msg);
		if (rc != 0)
			cr_expect_gt(strlen(msg), 0, "case %zu: no reason given", i);
		msg[0] = '\0';
		rc = ev_check_type(copy, len, msg, sizeof(msg));
		cr_expect_eq(rc, cases[i].ok ? 0 : WB_BAD_REQUEST, "type case %zu (%s): %s", i,
		             cases[i].why, msg);
		if (rc != 0)
			cr_expect_gt(strlen(msg), 0, "case %zu: no reason given", i);
		free(copy);
	}
}

Test(events, check_name_and_type_table)
{
	static const struct name_case cases[] = {
	        {"orders-42", 0, true, "plain ASCII"},
	        {"a b/c:d$e", 0, true, "punctuation and space"},
	        {"\xC3\xA9t\xC3\xA9", 0, true, "2-byte sequences"},
	        {"\xE2\x82\xAC", 0, true, "3-byte sequence (euro sign)"},
	        {"\xF0\x9F\x98\x80", 0, true, "4-byte sequence (emoji)"},
	        {"\xF4\x8F\xBF\xBF", 0, true, "U+10FFFF"},
	        {"\xED\x9F\xBF", 0, true, "U+D7FF, just below the surrogates"},
	        {"\xEE\x80\x80", 0, true, "U+E000, just above the surrogates"},
	        {"\xC2\xA0", 0, true, "U+00A0, no-break space"},
	        {"\xC0\xAF", 0, false, "overlong 2-byte '/'"},
	        {"\xC1\xBF", 0, false, "overlong 2-byte"},
	        {"\xE0\x80\xAF", 0, false, "overlong 3-byte '/'"},
	        {"\xE0\x9F\xBF", 0, false, "overlong 3-byte U+07FF"},
	        {"\xF0\x80\x80\xAF", 0, false, "overlong 4-byte '/'"},
	        {"\xF0\x8F\xBF\xBF", 0, false, "overlong 4-byte U+FFFF"},
	        {"\xED\xA0\x80", 0, false, "high surrogate U+D800"},
	        {"\xED\xBF\xBF", 0, false, "low surrogate U+DFFF"},
	        {"\xF4\x90\x80\x80", 0, false, "U+110000"},
	        {"\xF5\x80\x80\x80", 0, false, "lead byte F5"},
	        {"\xF8\x88\x80\x80\x80", 0, false, "5-byte form"},
	        {"\xFE", 0, false, "byte FE"},
	        {"\xFF", 0, false, "byte FF"},
	        {"\x80", 0, false, "lone continuation byte"},
	        {"a\xBF", 0, false, "continuation byte after ASCII"},
	        {"\xC3", 0, false, "truncated 2-byte sequence"},
	        {"a\xE2\x82", 0, false, "truncated 3-byte sequence"},
	        {"\xF0\x9F\x98", 0, false, "truncated 4-byte sequence"},
	        {"\xC3(", 0, false, "bad continuation"},
	        {"\xE2\x28\xA1", 0, false, "bad continuation in 3-byte"},
	        {"a\x01z", 0, false, "control char 0x01"},
	        {"\x1F", 0, false, "control char 0x1F"},
	        {"tab\there", 0, false, "tab"},
	        {"line\nbreak", 0, false, "newline"},
	        {"del\x7F", 0, false, "DEL"},
	        {"a\0b", 3, false, "embedded NUL"},
	        {"\x1B[31m", 0, false, "terminal escape"},
	};
	check_table(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Unicode's control characters (general category Cc) are U+0000..U+001F and
 * U+007F..U+009F. The C1 range is two bytes in UTF-8; U+009B is the 8-bit
 * CSI that some terminals honour, U+0085 is NEL (a line break). */
Test(events, check_rejects_c1_control_characters)
{
	static const struct name_case cases[] = {
	        {"a\xC2\x80", 0, false, "U+0080"},
	        {"a\xC2\x85z", 0, false, "U+0085 NEL"},
	        {"\302\23331m", 0, false, "U+009B CSI (octal: the next byte is a digit)"},
	        {"\xC2\x9F", 0, false, "U+009F"},
	};
	check_table(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(events, check_lengths)
{
	char buf[300];
	char msg[256];

	memset(buf, 'a', sizeof(buf));
	cr_assert_eq(ev_check_stream_name(buf, 0, msg, sizeof(msg)), WB_BAD_REQUEST);
	cr_assert_eq(ev_check_type(buf, 0, msg, sizeof(msg)), WB_BAD_REQUEST);
	cr_assert_eq(ev_check_stream_name(buf, 1, msg, sizeof(msg)), 0);
	cr_assert_eq(ev_check_stream_name(buf, 255, msg, sizeof(msg)), 0);
	cr_assert_eq(ev_check_type(buf, 255, msg, sizeof(msg)), 0);
	cr_assert_eq(ev_check_stream_name(buf, 256, msg, sizeof(msg)), WB_BAD_REQUEST);
	cr_assert_not_null(strstr(msg, "256"), "the reason names the length: %s", msg);
	cr_assert_eq(ev_check_type(buf, 256, msg, sizeof(msg)), WB_BAD_REQUEST);
	/* 255 bytes that end in a whole 2-byte sequence. */
	memcpy(buf + 253, "\xC3\xA9", 2);
	cr_assert_eq(ev_check_stream_name(buf, 255, msg, sizeof(msg)), 0);
	/* 256 bytes that end in one, and their first 255 bytes, which cut it. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf + 254, "\xC3\xA9", 2);
	cr_assert_eq(ev_check_stream_name(buf, 256, msg, sizeof(msg)), WB_BAD_REQUEST);
	cr_assert_eq(ev_check_stream_name(buf, 255, msg, sizeof(msg)), WB_BAD_REQUEST);
	cr_assert_not_null(strstr(msg, "UTF-8"), "%s", msg);
	cr_assert_eq(ev_check_stream_name(buf, 255, NULL, 0), WB_BAD_REQUEST,
	             "no message buffer is allowed");
}

/* ------------------------------------------------------------------ appends */

Test(events, positions_from_1_and_versions_from_0)
{
	struct ev_append_result r;
	struct ev_new two[2] = {ev(NULL, "Created", "a"), ev(NULL, "Paid", "bb")};
	struct ev_new one[1] = {ev(NULL, "Opened", "c")};

	cr_assert_eq(last_position(), 0);
	append_ok("a", two, 2, &r);
	cr_assert_eq(r.first_position, 1);
	cr_assert_eq(r.last_position, 2);
	cr_assert_eq(r.stream_version, 1);
	cr_assert_not(r.replay);
	append_ok("b", one, 1, &r);
	cr_assert_eq(r.first_position, 3);
	cr_assert_eq(r.last_position, 3);
	cr_assert_eq(r.stream_version, 0);
	append_ok("a", two, 2, &r);
	cr_assert_eq(r.first_position, 4);
	cr_assert_eq(r.last_position, 5);
	cr_assert_eq(r.stream_version, 3);
	cr_assert_eq(last_position(), 5);

	struct seen s = {0};
	struct ev_page page;
	cr_assert_eq(read_all(0, false, 100, NULL, &s, &page), 0);
	static const char *const streams[] = {"a", "a", "b", "a", "a"};
	static const uint64_t versions[] = {0, 1, 0, 2, 3};
	cr_assert_eq(s.n, 5);
	for (size_t i = 0; i < 5; i++) {
		cr_assert_eq(s.position[i], i + 1);
		cr_assert_str_eq(s.stream[i], streams[i]);
		cr_assert_eq(s.version[i], versions[i]);
		cr_assert_eq(s.ts[i], T0);
	}
	cr_assert_str_eq(s.type[2], "Opened");
}

Test(events, record_round_trips_every_field)
{
	uint8_t id[EV_ID_LEN];
	uint8_t data[600];
	uint8_t meta[3] = {0, 1, 0xFF};
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	memset(id, 0xC7, sizeof(id));
	struct ev_new e = {.id = id,
	                   .type = "Price\xE2\x82\xAC",
	                   .type_len = 8,
	                   .data = data,
	                   .data_len = sizeof(data),
	                   .meta = meta,
	                   .meta_len = sizeof(meta)};
	char stream[256];
	memset(stream, 's', 255);
	stream[255] = '\0';
	append_ok(stream, &e, 1, NULL);

	struct storage_txn *t = rtxn();
	uint8_t k[8];
	put_u64(k, 1);
	struct storage_val v;
	cr_assert_eq(storage_get(t, STORAGE_DB_EVENTS, (struct storage_val){k, 8}, &v), 0);
	struct ev_record rec;
	cr_assert_eq(ev_decode(1, v.data, v.len, &rec), 0);
	cr_assert_eq(rec.position, 1);
	cr_assert_eq(rec.version, 0);
	cr_assert_eq(rec.timestamp_us, T0);
	cr_assert_arr_eq(rec.id, id, EV_ID_LEN);
	cr_assert_eq(rec.stream_len, 255);
	cr_assert_arr_eq(rec.stream, stream, 255);
	cr_assert_eq(rec.type_len, 8);
	cr_assert_arr_eq(rec.type, e.type, 8);
	cr_assert_eq(rec.data_len, sizeof(data));
	cr_assert_arr_eq(rec.data, data, sizeof(data));
	cr_assert_eq(rec.meta_len, sizeof(meta));
	cr_assert_arr_eq(rec.meta, meta, sizeof(meta));
	storage_txn_abort(t);
}

Test(events, generated_ids_are_uuid7)
{
	struct ev_new evs[3] = {ev(NULL, "A", NULL), ev(NULL, "B", NULL), ev(NULL, "C", NULL)};
	const uint64_t now_us = 1712345678901234ull;
	struct ev_append_result r;
	cr_assert_eq(append("u", EV_EXPECT_ANY, 0, evs, 3, now_us, &r), 0);

	struct seen s = {0};
	struct ev_page page;
	cr_assert_eq(read_stream("u", 0, false, 10, &s, &page), 0);
	cr_assert_eq(s.n, 3);
	const uint64_t ms = now_us / 1000;
	for (size_t i = 0; i < 3; i++) {
		const uint8_t *id = s.id[i];
		uint64_t t = 0;
		for (size_t b = 0; b < 6; b++)
			t = t << 8 | id[b];
		cr_assert_eq(t, ms, "event %zu: unix_ts_ms %llu, want %llu", i,
		             (unsigned long long)t, (unsigned long long)ms);
		cr_assert_eq(id[6] >> 4, 7, "version nibble");
		cr_assert_eq(id[8] >> 6, 2, "variant bits 10");
		for (size_t j = 0; j < i; j++)
			cr_assert_arr_neq(s.id[j], id, EV_ID_LEN, "ids %zu and %zu are equal", j,
			                  i);
	}
	/* Generated ids are indexed like given ones. */
	struct storage_txn *t = rtxn();
	struct storage_val v;
	cr_assert_eq(storage_get(t, STORAGE_DB_EVENT_IDS, (struct storage_val){s.id[2], 16}, &v),
	             0);
	cr_assert_eq(v.len, 8);
	cr_assert_eq(get_u64(v.data), 3);
	storage_txn_abort(t);

	uint8_t u[EV_ID_LEN];
	ev_uuid7(u, 0x0000FFFFFFFFFFFFull);
	for (size_t b = 0; b < 6; b++)
		cr_assert_eq(u[b], 0xFF);
}

struct exp_case {
	enum ev_expected exp;
	uint64_t ver;
	int rc;
	int64_t actual;
};

static void check_expected(const char *stream, const struct exp_case *cases, size_t n)
{
	struct ev_new e = ev(NULL, "T", NULL);
	for (size_t i = 0; i < n; i++) {
		uint64_t before = last_position();
		struct ev_append_result r;
		/* Each case in a transaction of its own, aborted: the matrix is
		 * about the answer, and the state stays the same for all. */
		struct storage_txn *txn;
		cr_assert_eq(storage_txn_begin(st, NULL, 0, &txn), 0);
		int rc = ev_append(txn, stream, strlen(stream), cases[i].exp, cases[i].ver, &e, 1,
		                   T0, &r);
		storage_txn_abort(txn);
		cr_assert_eq(rc, cases[i].rc, "%s case %zu: %s (%s)", stream, i, wb_error_name(rc),
		             r.errmsg);
		if (rc == WB_WRONG_EXPECTED_VERSION) {
			cr_assert_eq(r.actual_version, cases[i].actual, "case %zu: actual %lld", i,
			             (long long)r.actual_version);
			cr_assert_gt(strlen(r.errmsg), 0);
		}
		cr_assert_eq(last_position(), before);
	}
}

Test(events, expected_version_matrix)
{
	static const struct exp_case absent[] = {
	        {EV_EXPECT_ANY, 0, 0, 0},
	        {EV_EXPECT_NO_STREAM, 0, 0, 0},
	        {EV_EXPECT_EXISTS, 0, WB_WRONG_EXPECTED_VERSION, -1},
	        {EV_EXPECT_EXACT, 0, WB_WRONG_EXPECTED_VERSION, -1},
	        {EV_EXPECT_EXACT, 5, WB_WRONG_EXPECTED_VERSION, -1},
	        {EV_EXPECT_EXACT, UINT64_MAX, WB_WRONG_EXPECTED_VERSION, -1},
	        {(enum ev_expected)7, 0, WB_BAD_REQUEST, 0},
	};
	static const struct exp_case at2[] = {
	        {EV_EXPECT_ANY, 0, 0, 0},
	        {EV_EXPECT_NO_STREAM, 0, WB_WRONG_EXPECTED_VERSION, 2},
	        {EV_EXPECT_EXISTS, 0, 0, 0},
	        {EV_EXPECT_EXACT, 2, 0, 0},
	        {EV_EXPECT_EXACT, 1, WB_WRONG_EXPECTED_VERSION, 2},
	        {EV_EXPECT_EXACT, 3, WB_WRONG_EXPECTED_VERSION, 2},
	        {EV_EXPECT_EXACT, 0, WB_WRONG_EXPECTED_VERSION, 2},
	        {EV_EXPECT_EXACT, UINT64_MAX, WB_WRONG_EXPECTED_VERSION, 2},
	        {(enum ev_expected)7, 0, WB_BAD_REQUEST, 0},
	};
	append_n("other", 1);
	check_expected("s", absent, sizeof(absent) / sizeof(absent[0]));
	append_n("s", 3);
	check_expected("s", at2, sizeof(at2) / sizeof(at2[0]));

	/* The exact version that succeeds really appends after it. */
	struct ev_new e = ev(NULL, "T", NULL);
	struct ev_append_result r;
	cr_assert_eq(append("s", EV_EXPECT_EXACT, 2, &e, 1, T0, &r), 0);
	cr_assert_eq(r.stream_version, 3);
	cr_assert_eq(append("s", EV_EXPECT_EXACT, 2, &e, 1, T0, &r), WB_WRONG_EXPECTED_VERSION);
	cr_assert_eq(r.actual_version, 3);
}

Test(events, append_of_no_events_is_a_bad_request)
{
	struct ev_append_result r;
	cr_assert_eq(append("s", EV_EXPECT_ANY, 0, NULL, 0, T0, &r), WB_BAD_REQUEST);
	cr_assert_gt(strlen(r.errmsg), 0);
	cr_assert_eq(last_position(), 0);
}

/* The store's idempotency fixture: ids 1, 2, 3 in "s" at positions 1..3,
 * then id 10 in "t" at position 4. */
static struct id16 ids[11];

static void idem_fixture(void)
{
	for (unsigned i = 0; i < 11; i++)
		ids[i] = mkid(i);
	struct ev_new s3[3] = {ev(ids[1].b, "A", "1"), ev(ids[2].b, "B", "2"),
	                       ev(ids[3].b, "C", "3")};
	struct ev_new t1[1] = {ev(ids[10].b, "X", "10")};
	struct ev_append_result r;
	cr_assert_eq(append("s", EV_EXPECT_NO_STREAM, 0, s3, 3, T0, &r), 0);
	cr_assert_eq(append("t", EV_EXPECT_NO_STREAM, 0, t1, 1, T0, &r), 0);
	cr_assert_eq(last_position(), 4);
}

static uint64_t stream_count(const char *stream)
{
	struct ev_stream_info info;
	struct storage_txn *t = rtxn();
	int rc = ev_stream_info(t, stream, strlen(stream), &info);
	storage_txn_abort(t);
	return rc == 0 ? info.count : 0;
}

Test(events, idempotent_replay_answers_original_positions_and_writes_nothing)
{
	idem_fixture();
	struct storage_stats before;
	struct storage_stats after;
	cr_assert_eq(storage_stats(st, &before), 0);

	struct ev_new s3[3] = {ev(ids[1].b, "A", "1"), ev(ids[2].b, "B", "2"),
	                       ev(ids[3].b, "C", "3")};
	struct ev_append_result r;
	/* The retry carries the original NO_STREAM: a retry must still be
	 * answered, although the stream exists now. */
	int rc = append("s", EV_EXPECT_NO_STREAM, 0, s3, 3, T0 + 5, &r);
	cr_assert_eq(rc, 0, "%s: %s", wb_error_name(rc), r.errmsg);
	cr_assert(r.replay);
	cr_assert_eq(r.first_position, 1);
	cr_assert_eq(r.last_position, 3);
	cr_assert_eq(r.stream_version, 2);
	cr_assert_eq(last_position(), 4);
	cr_assert_eq(stream_count("s"), 3);
	cr_assert_eq(storage_stats(st, &after), 0);
	for (int db = 0; db < STORAGE_DB_COUNT; db++)
		cr_assert_eq(after.entries[db], before.entries[db], "db %d changed", db);

	/* So is a single-event retry, in another stream. */
	struct ev_new t1[1] = {ev(ids[10].b, "X", "10")};
	cr_assert_eq(append("t", EV_EXPECT_ANY, 0, t1, 1, T0, &r), 0);
	cr_assert(r.replay);
	cr_assert_eq(r.first_position, 4);
	cr_assert_eq(r.last_position, 4);
	cr_assert_eq(r.stream_version, 0);
}

static void expect_conflict(const char *stream, const struct ev_new *evs, size_t n,
                            const char *what)
{
	struct ev_append_result r;
	int rc = append(stream, EV_EXPECT_ANY, 0, evs, n, T0, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "%s: %s (%s)", what, wb_error_name(rc), r.errmsg);
	cr_assert_gt(strlen(r.errmsg), 0, "%s: no message", what);
	cr_assert_not(r.replay);
	cr_assert_eq(last_position(), 4, "%s wrote something", what);
}

Test(events, idempotency_conflicts)
{
	idem_fixture();
	struct ev_new stored_then_new[2] = {ev(ids[1].b, "A", "1"), ev(ids[5].b, "N", "")};
	struct ev_new new_then_stored[2] = {ev(ids[5].b, "N", ""), ev(ids[1].b, "A", "1")};
	struct ev_new all_then_new[4] = {ev(ids[1].b, "A", "1"), ev(ids[2].b, "B", "2"),
	                                 ev(ids[3].b, "C", "3"), ev(ids[6].b, "N", "")};
	struct ev_new stored_then_generated[2] = {ev(ids[1].b, "A", "1"), ev(NULL, "N", "")};
	struct ev_new other_stream[1] = {ev(ids[10].b, "X", "10")};
	struct ev_new wrong_order[3] = {ev(ids[2].b, "B", "2"), ev(ids[1].b, "A", "1"),
	                                ev(ids[3].b, "C", "3")};
	struct ev_new gap[2] = {ev(ids[1].b, "A", "1"), ev(ids[3].b, "C", "3")};
	struct ev_new stored_twice[2] = {ev(ids[1].b, "A", "1"), ev(ids[1].b, "A", "1")};
	struct ev_new new_twice[3] = {ev(ids[7].b, "N", ""), ev(ids[8].b, "N", ""),
	                              ev(ids[7].b, "N", "")};

	expect_conflict("s", stored_then_new, 2, "stored then new");
	expect_conflict("s", new_then_stored, 2, "new then stored");
	expect_conflict("s", all_then_new, 4, "all stored then new");
	expect_conflict("s", stored_then_generated, 2, "stored then generated");
	expect_conflict("s", other_stream, 1, "id of another stream");
	expect_conflict("s", wrong_order, 3, "stored ids in another order");
	expect_conflict("s", gap, 2, "stored ids not consecutive");
	expect_conflict("s", stored_twice, 2, "a stored id twice");
	expect_conflict("fresh", new_twice, 3, "a new id twice in one append");
	cr_assert_eq(stream_count("fresh"), 0);
	cr_assert_eq(stream_count("s"), 3);

	/* None of the new ids was left indexed by the failed appends. */
	struct storage_txn *t = rtxn();
	struct storage_val v;
	for (unsigned i = 5; i <= 8; i++)
		cr_assert_eq(storage_get(t, STORAGE_DB_EVENT_IDS,
		                         (struct storage_val){ids[i].b, 16}, &v),
		             WB_E_NOTFOUND, "id %u is indexed", i);
	storage_txn_abort(t);
}

/* ------------------------------------------------------------------ reads */

Test(events, read_stream_forwards_and_paging)
{
	/* Two streams interleaved, so a read must skip the other's events. */
	for (int i = 0; i < 5; i++) {
		append_n("s", 2);
		append_n("o", 1);
	}
	struct seen s = {0};
	struct ev_page page;

	cr_assert_eq(read_stream("s", 0, false, 100, &s, &page), 0);
	cr_assert_eq(s.n, 10);
	cr_assert_eq(page.count, 10);
	cr_assert(page.end);
	cr_assert_eq(page.last, 9);
	cr_assert_eq(page.next, 10);
	for (size_t i = 0; i < 10; i++) {
		cr_assert_eq(s.version[i], i);
		cr_assert_str_eq(s.stream[i], "s");
		cr_assert_eq(s.position[i], (i / 2) * 3 + i % 2 + 1);
	}

	/* Pages of 3: 0-2, 3-5, 6-8, 9. */
	uint64_t from = 0;
	size_t pages = 0;
	size_t total = 0;
	for (;;) {
		struct seen p = {0};
		cr_assert_eq(read_stream("s", from, false, 3, &p, &page), 0);
		for (size_t i = 0; i < p.n; i++)
			cr_assert_eq(p.version[i], from + i);
		total += p.n;
		pages++;
		cr_assert_eq(page.next, from + p.n);
		from = page.next;
		if (page.end)
			break;
		cr_assert_eq(p.n, 3);
		cr_assert_lt(pages, 10);
	}
	cr_assert_eq(total, 10);
	cr_assert_eq(pages, 4);

	/* A page that ends exactly on the last event says so. */
	struct seen q = {0};
	cr_assert_eq(read_stream("s", 7, false, 3, &q, &page), 0);
	cr_assert_eq(q.n, 3);
	cr_assert(page.end);
	cr_assert_eq(page.next, 10);
}

Test(events, read_stream_backwards)
{
	for (int i = 0; i < 5; i++) {
		append_n("o", 1);
		append_n("s", 2);
	}
	append_n("z", 1); /* a stream after s in stream-id order */
	struct seen s = {0};
	struct ev_page page;

	cr_assert_eq(read_stream("s", UINT64_MAX, true, 3, &s, &page), 0);
	cr_assert_eq(s.n, 3);
	cr_assert_eq(s.version[0], 9);
	cr_assert_eq(s.version[1], 8);
	cr_assert_eq(s.version[2], 7);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 6);
	cr_assert_eq(page.last, 9);

	/* Continue to the start. */
	uint64_t from = page.next;
	size_t total = s.n;
	for (int guard = 0; guard < 10; guard++) {
		struct seen p = {0};
		cr_assert_eq(read_stream("s", from, true, 3, &p, &page), 0);
		for (size_t i = 0; i < p.n; i++)
			cr_assert_eq(p.version[i], from - i);
		total += p.n;
		if (page.end)
			break;
		from = page.next;
	}
	cr_assert(page.end);
	cr_assert_eq(total, 10);

	/* From exactly the last version, and from just past it. */
	struct seen a = {0};
	cr_assert_eq(read_stream("s", 9, true, 1, &a, &page), 0);
	cr_assert_eq(a.n, 1);
	cr_assert_eq(a.version[0], 9);
	struct seen b = {0};
	cr_assert_eq(read_stream("s", 10, true, 2, &b, &page), 0);
	cr_assert_eq(b.n, 2);
	cr_assert_eq(b.version[0], 9);
	cr_assert_eq(b.version[1], 8);

	/* A page that ends on version 0 is the end. */
	struct seen c = {0};
	cr_assert_eq(read_stream("s", 2, true, 3, &c, &page), 0);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(c.version[2], 0);
	cr_assert(page.end);
	struct seen d = {0};
	cr_assert_eq(read_stream("s", 2, true, 2, &d, &page), 0);
	cr_assert_eq(d.n, 2);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 0);

	/* The first stream, backwards, stops at its own first event. */
	struct seen e = {0};
	cr_assert_eq(read_stream("o", UINT64_MAX, true, 100, &e, &page), 0);
	cr_assert_eq(e.n, 5);
	cr_assert(page.end);
	for (size_t i = 0; i < 5; i++)
		cr_assert_str_eq(e.stream[i], "o");
}

Test(events, read_stream_edges)
{
	append_n("s", 4);
	append_n("t", 1);
	struct seen s = {0};
	struct ev_page page;

	cr_assert_eq(read_stream("nope", 0, false, 10, &s, &page), WB_E_NOTFOUND);
	cr_assert_eq(s.calls, 0);

	/* From beyond the end: nothing, the end, and next where it was. */
	cr_assert_eq(read_stream("s", 4, false, 10, &s, &page), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert(page.end);
	cr_assert_eq(page.count, 0);
	cr_assert_eq(page.last, 3);
	cr_assert_eq(page.next, 4);
	cr_assert_eq(read_stream("s", UINT64_MAX, false, 10, &s, &page), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert(page.end);

	/* max_count 0 visits nothing. */
	cr_assert_eq(read_stream("s", 0, false, 0, &s, &page), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert_eq(page.count, 0);

	/* max_count 1. */
	cr_assert_eq(read_stream("s", 1, false, 1, &s, &page), 0);
	cr_assert_eq(s.n, 1);
	cr_assert_eq(s.version[0], 1);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 2);
}

Test(events, read_stream_visit_returning_false)
{
	append_n("s", 6);
	struct ev_page page;

	/* Forwards: the third call says stop, so the page holds two events
	 * and continues at the one that was refused. */
	struct seen s = {.stop_at = 3};
	cr_assert_eq(read_stream("s", 0, false, 100, &s, &page), 0);
	cr_assert_eq(s.calls, 3);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(page.count, 2);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 2);

	/* Backwards, the same. */
	struct seen b = {.stop_at = 2};
	cr_assert_eq(read_stream("s", UINT64_MAX, true, 100, &b, &page), 0);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.version[0], 5);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 4);

	/* Refusing the very first event. */
	struct seen f = {.stop_at = 1};
	cr_assert_eq(read_stream("s", 3, false, 100, &f, &page), 0);
	cr_assert_eq(page.count, 0);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 3);
}

/* Nine events: streams and types chosen so that the filters below pick
 * known positions. */
static void read_all_fixture(void)
{
	static const char *const streams[] = {"orders-1", "users-1",  "orders-2",
	                                      "orders-1", "users-2",  "orders-3",
	                                      "ord",      "orders-2", "users-1"};
	static const char *const types[] = {"Created", "Created", "Created", "Paid",   "Created",
	                                    "Created", "Paid",    "Paid",    "Deleted"};
	for (size_t i = 0; i < 9; i++) {
		struct ev_new e = ev(NULL, types[i], "d");
		append_ok(streams[i], &e, 1, NULL);
	}
}

static void collect_all(uint64_t from, bool back, uint32_t max, const struct ev_filter *f,
                        uint64_t *out, size_t *n)
{
	struct ev_page page;
	*n = 0;
	for (int guard = 0; guard < 100; guard++) {
		struct seen s = {0};
		cr_assert_eq(read_all(from, back, max, f, &s, &page), 0);
		cr_assert_leq(s.n, max);
		for (size_t i = 0; i < s.n; i++)
			out[(*n)++] = s.position[i];
		if (page.end)
			return;
		from = page.next;
	}
	cr_assert_fail("paging did not end");
}

Test(events, read_all_forwards_backwards_and_paging)
{
	read_all_fixture();
	uint64_t pos[32];
	size_t n;

	for (uint32_t max = 1; max <= 10; max++) {
		collect_all(0, false, max, NULL, pos, &n);
		cr_assert_eq(n, 9, "max %u", max);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(pos[i], i + 1);
		collect_all(UINT64_MAX, true, max, NULL, pos, &n);
		cr_assert_eq(n, 9, "backwards, max %u", max);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(pos[i], 9 - i);
	}

	struct seen s = {0};
	struct ev_page page;
	cr_assert_eq(read_all(UINT64_MAX, true, 2, NULL, &s, &page), 0);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.position[0], 9);
	cr_assert_eq(s.position[1], 8);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 7);
	cr_assert_eq(page.last, 9);

	/* Forwards from 1 equals from 0; past the end is empty and the end. */
	struct seen a = {0};
	cr_assert_eq(read_all(1, false, 1, NULL, &a, &page), 0);
	cr_assert_eq(a.position[0], 1);
	struct seen b = {0};
	cr_assert_eq(read_all(10, false, 5, NULL, &b, &page), 0);
	cr_assert_eq(b.calls, 0);
	cr_assert(page.end);
	cr_assert_eq(page.next, 10);
	/* Backwards from 0 is before the start. */
	cr_assert_eq(read_all(0, true, 5, NULL, &b, &page), 0);
	cr_assert_eq(b.calls, 0);
	cr_assert(page.end);
	/* max_count 0. */
	cr_assert_eq(read_all(1, false, 0, NULL, &b, &page), 0);
	cr_assert_eq(b.calls, 0);

	/* visit returning false ends the page before that event. */
	struct seen c = {.stop_at = 4};
	cr_assert_eq(read_all(2, false, 100, NULL, &c, &page), 0);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(page.count, 3);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 5);
}

Test(events, read_all_of_an_empty_log)
{
	struct seen s = {0};
	struct ev_page page;

	cr_assert_eq(read_all(0, false, 10, NULL, &s, &page), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert(page.end);
	cr_assert_eq(page.last, 0);
	cr_assert_eq(read_all(UINT64_MAX, true, 10, NULL, &s, &page), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert(page.end);
}

Test(events, read_all_filters)
{
	read_all_fixture();
	uint64_t pos[32];
	size_t n;
	const char *paid[] = {"Paid"};
	size_t paid_len[] = {4};
	const char *two[] = {"Deleted", "Paid"};
	size_t two_len[] = {7, 4};
	/* A type that is a prefix of a stored one, or that a stored one is a
	 * prefix of, must not match it. */
	const char *pai[] = {"Pai", "PaidLater"};
	size_t pai_len[] = {3, 9};

	struct ev_filter orders = {.prefix = "orders-", .prefix_len = 7};
	collect_all(0, false, 100, &orders, pos, &n);
	static const uint64_t want_orders[] = {1, 3, 4, 6, 8};
	cr_assert_eq(n, 5);
	cr_assert_arr_eq(pos, want_orders, sizeof(want_orders));

	struct ev_filter by_type = {.types = paid, .type_lens = paid_len, .ntypes = 1};
	collect_all(0, false, 100, &by_type, pos, &n);
	static const uint64_t want_paid[] = {4, 7, 8};
	cr_assert_eq(n, 3);
	cr_assert_arr_eq(pos, want_paid, sizeof(want_paid));

	struct ev_filter both = {.prefix = "orders-",
	                         .prefix_len = 7,
	                         .types = paid,
	                         .type_lens = paid_len,
	                         .ntypes = 1};
	collect_all(0, false, 100, &both, pos, &n);
	cr_assert_eq(n, 2);
	cr_assert_eq(pos[0], 4);
	cr_assert_eq(pos[1], 8);
	collect_all(UINT64_MAX, true, 1, &both, pos, &n);
	cr_assert_eq(n, 2);
	cr_assert_eq(pos[0], 8);
	cr_assert_eq(pos[1], 4);

	struct ev_filter any_of_two = {.types = two, .type_lens = two_len, .ntypes = 2};
	collect_all(0, false, 2, &any_of_two, pos, &n);
	static const uint64_t want_two[] = {4, 7, 8, 9};
	cr_assert_eq(n, 4);
	cr_assert_arr_eq(pos, want_two, sizeof(want_two));

	struct ev_filter partial = {.types = pai, .type_lens = pai_len, .ntypes = 2};
	collect_all(0, false, 100, &partial, pos, &n);
	cr_assert_eq(n, 0);

	/* A prefix longer than some names ("ord" is shorter than "orders-"). */
	struct ev_filter ord = {.prefix = "ord", .prefix_len = 3};
	collect_all(0, false, 100, &ord, pos, &n);
	cr_assert_eq(n, 6);

	struct ev_filter none = {.prefix = "zzz", .prefix_len = 3};
	collect_all(0, false, 100, &none, pos, &n);
	cr_assert_eq(n, 0);
}

Test(events, read_all_max_examined_bounds_a_page)
{
	read_all_fixture();
	const char *del[] = {"Deleted"};
	size_t del_len[] = {7};
	/* Only position 9 matches; at most 4 examined per page. */
	struct ev_filter f = {.types = del, .type_lens = del_len, .ntypes = 1, .max_examined = 4};
	struct ev_page page;

	struct seen s = {0};
	cr_assert_eq(read_all(0, false, 100, &f, &s, &page), 0);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(page.count, 0);
	cr_assert_not(page.end, "an empty page before the end of the log is not the end");
	cr_assert_eq(page.next, 5);

	struct seen s2 = {0};
	cr_assert_eq(read_all(page.next, false, 100, &f, &s2, &page), 0);
	cr_assert_eq(s2.n, 0);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 9);

	struct seen s3 = {0};
	cr_assert_eq(read_all(page.next, false, 100, &f, &s3, &page), 0);
	cr_assert_eq(s3.n, 1);
	cr_assert_eq(s3.position[0], 9);
	cr_assert(page.end);
	cr_assert_eq(page.next, 10);

	/* Backwards: the match is examined first, then the bound stops it. */
	struct seen b = {0};
	cr_assert_eq(read_all(UINT64_MAX, true, 100, &f, &b, &page), 0);
	cr_assert_eq(b.n, 1);
	cr_assert_eq(b.position[0], 9);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 5);

	/* The bound counts examined events, matches or not: with everything
	 * matching it caps the page like max_count does. */
	struct ev_filter all4 = {.max_examined = 4};
	struct seen a = {0};
	cr_assert_eq(read_all(0, false, 100, &all4, &a, &page), 0);
	cr_assert_eq(a.n, 4);
	cr_assert_not(page.end);
	cr_assert_eq(page.next, 5);

	uint64_t pos[32];
	size_t n;
	collect_all(0, false, 100, &f, pos, &n);
	cr_assert_eq(n, 1);
	cr_assert_eq(pos[0], 9);
}

Test(events, stream_info)
{
	struct storage_txn *t;
	struct ev_stream_info info;
	struct ev_new e = ev(NULL, "T", NULL);
	struct ev_new e3[3] = {e, e, e};
	struct ev_append_result r;

	append_n("first", 1);
	cr_assert_eq(append("s", EV_EXPECT_ANY, 0, e3, 3, T0 + 10, &r), 0);
	append_n("between", 1);
	cr_assert_eq(append("s", EV_EXPECT_ANY, 0, e3, 2, T0 + 20, &r), 0);

	t = rtxn();
	cr_assert_eq(ev_stream_info(t, "s", 1, &info), 0);
	cr_assert_eq(info.count, 5);
	cr_assert_eq(info.first_position, 2);
	cr_assert_eq(info.last_position, 7);
	cr_assert_eq(info.created_us, T0 + 10);
	cr_assert_eq(info.updated_us, T0 + 20);
	cr_assert_eq(info.stream_id, 2, "stream ids are handed out from 1 in creation order");
	cr_assert_eq(ev_stream_info(t, "nope", 4, &info), WB_E_NOTFOUND);
	cr_assert_eq(ev_stream_info(t, "s-", 2, &info), WB_E_NOTFOUND);
	storage_txn_abort(t);
}

Test(events, nested_abort_leaves_counters_unchanged)
{
	append_n("a", 2);
	struct storage_txn *t = rtxn();
	struct ev_stream_info a;
	cr_assert_eq(ev_stream_info(t, "a", 1, &a), 0);
	storage_txn_abort(t);
	cr_assert_eq(a.stream_id, 1);

	struct storage_txn *txn;
	struct storage_txn *child;
	struct ev_append_result r;
	struct ev_new e3[3] = {ev(NULL, "T", NULL), ev(NULL, "T", NULL), ev(NULL, "T", NULL)};
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &txn), 0);
	cr_assert_eq(storage_txn_begin(st, txn, 0, &child), 0);
	cr_assert_eq(ev_append(child, "new", 3, EV_EXPECT_ANY, 0, e3, 3, T0, &r), 0);
	cr_assert_eq(r.last_position, 5);
	uint64_t last;
	cr_assert_eq(ev_last_position(child, &last), 0);
	cr_assert_eq(last, 5);
	storage_txn_abort(child);

	/* In the parent, after the child's abort. */
	cr_assert_eq(ev_last_position(txn, &last), 0);
	cr_assert_eq(last, 2);
	struct ev_stream_info info;
	cr_assert_eq(ev_stream_info(txn, "new", 3, &info), WB_E_NOTFOUND);
	struct storage_val v;
	cr_assert_eq(
	        storage_get(txn, STORAGE_DB_META, (struct storage_val){"next_stream_id", 14}, &v),
	        0);
	cr_assert_eq(v.len, 8);
	cr_assert_eq(get_u64(v.data), 2, "the aborted stream's id was not given back");

	/* The next append in the same parent gets the same numbers the
	 * aborted one had. */
	cr_assert_eq(storage_txn_begin(st, txn, 0, &child), 0);
	cr_assert_eq(ev_append(child, "other", 5, EV_EXPECT_ANY, 0, e3, 1, T0, &r), 0);
	cr_assert_eq(storage_txn_commit(child), 0);
	cr_assert_eq(r.first_position, 3);
	cr_assert_eq(storage_txn_commit(txn), 0);
	t = rtxn();
	cr_assert_eq(ev_stream_info(t, "other", 5, &info), 0);
	cr_assert_eq(info.stream_id, 2);
	cr_assert_eq(info.first_position, 3);
	storage_txn_abort(t);
	cr_assert_eq(last_position(), 3);
}

/* ------------------------------------------------------------- ev_decode */

/* Copies the stored record at position 1 into a new exact-size buffer. */
static uint8_t *stored_record(size_t *len)
{
	struct ev_new e = {.type = "OrderPlaced",
	                   .type_len = 11,
	                   .data = (const uint8_t *)"{\"total\":100}",
	                   .data_len = 13,
	                   .meta = (const uint8_t *)"m=1",
	                   .meta_len = 3};
	append_ok("orders-7", &e, 1, NULL);
	struct storage_txn *t = rtxn();
	uint8_t k[8];
	put_u64(k, 1);
	struct storage_val v;
	cr_assert_eq(storage_get(t, STORAGE_DB_EVENTS, (struct storage_val){k, 8}, &v), 0);
	uint8_t *copy = malloc(v.len);
	cr_assert_not_null(copy);
	memcpy(copy, v.data, v.len);
	*len = v.len;
	storage_txn_abort(t);
	cr_assert_eq(*len, EV_RECORD_HEADER + 8 + 11 + 13 + 3);
	return copy;
}

/* Decodes an exact-size copy of rec[0..len), so that a read past the end is
 * caught; on success checks that every span lies inside the buffer. */
static int decode_copy(const uint8_t *rec, size_t len, struct ev_record *out)
{
	uint8_t *buf = malloc(len > 0 ? len : 1);
	cr_assert_not_null(buf);
	memcpy(buf, rec, len);
	int rc = ev_decode(1, buf, len, out);
	bool inside = true;
	if (rc == 0) {
		const uint8_t *end = buf + len;
		inside = (const uint8_t *)out->stream + out->stream_len <= end &&
		         (const uint8_t *)out->type + out->type_len <= end &&
		         out->data + out->data_len <= end && out->meta + out->meta_len <= end &&
		         out->id + EV_ID_LEN <= end && (const uint8_t *)out->stream >= buf &&
		         out->id >= buf;
	}
	free(buf);
	cr_assert(inside, "a decoded span lies outside the record");
	return rc;
}

Test(events, decode_rejects_every_truncation)
{
	size_t len;
	uint8_t *rec = stored_record(&len);
	struct ev_record out;

	cr_assert_eq(decode_copy(rec, len, &out), 0);
	for (size_t n = 0; n < len; n++)
		cr_assert_eq(decode_copy(rec, n, &out), WB_E_CORRUPT, "cut to %zu of %zu", n, len);
	/* One byte too many. */
	uint8_t *longer = calloc(1, len + 1);
	cr_assert_not_null(longer);
	memcpy(longer, rec, len);
	cr_assert_eq(decode_copy(longer, len + 1, &out), WB_E_CORRUPT);
	free(longer);
	free(rec);
}

Test(events, decode_rejects_bad_headers)
{
	size_t len;
	uint8_t *rec = stored_record(&len);
	uint8_t *bad = malloc(len);
	cr_assert_not_null(bad);
	struct ev_record out;

	struct {
		size_t off;
		size_t width;
		uint32_t value;
		const char *what;
	} cases[] = {
	        {0, 1, 0, "format 0"},
	        {0, 1, 2, "format 2"},
	        {1, 1, 7, "stream length one short"},
	        {1, 1, 9, "stream length one long"},
	        {1, 1, 255, "stream length 255"},
	        {2, 2, 0xFFFF, "type length 65535"},
	        {2, 2, 0, "type length 0"},
	        {4, 4, 0xFFFFFFFF, "data length 2^32-1"},
	        {4, 4, 14, "data length one long"},
	        {8, 4, 0xFFFFFFFF, "metadata length 2^32-1"},
	        {8, 4, 0x80000000, "metadata length 2^31"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, rec, len);
		if (cases[i].width == 1)
			bad[cases[i].off] = (uint8_t)cases[i].value;
		else if (cases[i].width == 2)
			put_u16(bad + cases[i].off, (uint16_t)cases[i].value);
		else
			put_u32(bad + cases[i].off, cases[i].value);
		cr_assert_eq(decode_copy(bad, len, &out), WB_E_CORRUPT, "%s", cases[i].what);
	}
	/* All four lengths at their maximum: the sum must not wrap. */
	memcpy(bad, rec, len);
	bad[1] = 0xFF;
	put_u16(bad + 2, 0xFFFF);
	put_u32(bad + 4, 0xFFFFFFFF);
	put_u32(bad + 8, 0xFFFFFFFF);
	cr_assert_eq(decode_copy(bad, len, &out), WB_E_CORRUPT);
	free(bad);
	free(rec);
}

/* Every byte of a real record replaced by several values, and random
 * multi-byte damage: the decoder answers 0 with spans inside the buffer
 * (checked by decode_copy) or WB_E_CORRUPT, and never reads outside it. */
Test(events, decode_survives_corrupted_bytes)
{
	size_t len;
	uint8_t *rec = stored_record(&len);
	uint8_t *bad = malloc(len);
	cr_assert_not_null(bad);
	struct ev_record out;
	static const uint8_t values[] = {0x00, 0x01, 0x7F, 0x80, 0xFF};

	for (size_t i = 0; i < len; i++) {
		for (size_t k = 0; k < sizeof(values) + 1; k++) {
			memcpy(bad, rec, len);
			bad[i] = k < sizeof(values) ? values[k] : (uint8_t)(rec[i] ^ 0x55);
			int rc = decode_copy(bad, len, &out);
			cr_assert(rc == 0 || rc == WB_E_CORRUPT, "byte %zu: %d", i, rc);
			/* Damage to the lengths is always caught. */
			if (i < 12 && bad[i] != rec[i])
				cr_assert_eq(rc, WB_E_CORRUPT, "byte %zu = 0x%02x decoded", i,
				             bad[i]);
		}
	}
	unsigned seed = 12345;
	for (int round = 0; round < 2000; round++) {
		memcpy(bad, rec, len);
		size_t n = (size_t)(rand_r(&seed) % 4) + 1;
		for (size_t j = 0; j < n; j++)
			bad[(size_t)rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
		size_t cut = (size_t)rand_r(&seed) % (len + 1);
		int rc = decode_copy(bad, cut, &out);
		cr_assert(rc == 0 || rc == WB_E_CORRUPT, "round %d: %d", round, rc);
	}
	free(bad);
	free(rec);
}

/* A record damaged in the store is answered as WB_E_CORRUPT by the reads
 * that meet it, not as a crash or garbage. */
Test(events, reads_report_a_corrupt_record)
{
	append_n("s", 3);
	struct storage_txn *txn;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &txn), 0);
	uint8_t k[8];
	put_u64(k, 2);
	uint8_t junk[10] = {1, 2, 3};
	cr_assert_eq(storage_put(txn, STORAGE_DB_EVENTS, (struct storage_val){k, 8},
	                         (struct storage_val){junk, sizeof(junk)}, 0),
	             0);
	cr_assert_eq(storage_txn_commit(txn), 0);

	struct seen s = {0};
	struct ev_page page;
	cr_assert_eq(read_all(0, false, 10, NULL, &s, &page), WB_E_CORRUPT);
	struct seen s2 = {0};
	cr_assert_eq(read_stream("s", 0, false, 10, &s2, &page), WB_E_CORRUPT);
}

/* ------------------------------------------------------ stream life cycle */

static const uint64_t SEC = 1000000u;

static int set_meta(const char *stream, uint64_t max_count, uint64_t max_age_ms, uint64_t tb)
{
	struct storage_txn *txn;
	struct ev_stream_meta m = {max_count, max_age_ms, tb};
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &txn), 0);
	int rc = ev_set_stream_meta(txn, stream, strlen(stream), &m);
	if (rc == 0)
		cr_assert_eq(storage_txn_commit(txn), 0);
	else
		storage_txn_abort(txn);
	return rc;
}

static int del_stream(const char *stream, bool hard, uint64_t *last)
{
	struct storage_txn *txn;
	uint64_t dummy;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &txn), 0);
	int rc = ev_delete_stream(txn, stream, strlen(stream), hard, last != NULL ? last : &dummy);
	if (rc == 0)
		cr_assert_eq(storage_txn_commit(txn), 0);
	else
		storage_txn_abort(txn);
	return rc;
}

static struct ev_stream_info info_of(const char *stream)
{
	struct ev_stream_info info;
	struct storage_txn *t = rtxn();
	cr_assert_eq(ev_stream_info(t, stream, strlen(stream), &info), 0);
	storage_txn_abort(t);
	return info;
}

static int read_stream_at(const char *stream, uint64_t from, bool back, uint32_t max, uint64_t now,
                          struct seen *s, struct ev_page *page)
{
	struct storage_txn *t = rtxn();
	int rc = ev_read_stream_at(t, stream, strlen(stream), from, back, max, now, visit_cb, s,
	                           page);
	storage_txn_abort(t);
	return rc;
}

/* Reads every page from from on; the versions seen go to s. */
static int read_stream_pages(const char *stream, uint64_t from, bool back, uint32_t max,
                             uint64_t now, struct seen *s)
{
	struct ev_page page;
	for (int guard = 0; guard < 200; guard++) {
		int rc = read_stream_at(stream, from, back, max, now, s, &page);
		if (rc != 0)
			return rc;
		cr_assert_leq(page.count, max);
		if (page.end)
			return 0;
		cr_assert(page.count > 0 || page.next != from, "a page that is not the end moves");
		from = page.next;
	}
	cr_assert_fail("paging %s did not end", stream);
	return -1;
}

/* Ten events, version v written at T0 + v seconds. */
static void append_ten(const char *stream)
{
	for (uint64_t v = 0; v < 10; v++) {
		struct ev_new e = ev(NULL, "T", "x");
		struct ev_append_result r;
		cr_assert_eq(append(stream, EV_EXPECT_ANY, 0, &e, 1, T0 + v * SEC, &r), 0);
	}
}

struct meta_case {
	uint64_t max_count, max_age_ms, tb;
};

static bool model_readable(const struct meta_case *m, uint64_t v, uint64_t now)
{
	if (v < m->tb)
		return false;
	if (m->max_count > 0 && m->max_count < 10 && v < 10 - m->max_count)
		return false;
	uint64_t ts = T0 + v * SEC;
	if (m->max_age_ms > 0 && m->max_age_ms <= UINT64_MAX / 1000 &&
	    now - ts > m->max_age_ms * 1000)
		return false;
	return true;
}

Test(events, metadata_matrix_over_read_directions)
{
	static const struct meta_case cases[] = {
	        {0, 0, 0},
	        {0, 0, 3},
	        {4, 0, 0},
	        {0, 3500, 0},
	        {5, 0, 7},
	        {6, 6500, 2},
	        {1ull << 63, 0, 0},
	        {UINT64_MAX, UINT64_MAX, 0},
	        {0, 0, UINT64_MAX},
	        {0, 1, 0},
	        {10, 0, 10},
	        {0, UINT64_MAX / 1000 + 1, 0},
	        /* Version 6 is exactly 3 s old: readable at 3000, not at 2999. */
	        {0, 3000, 0},
	        {0, 2999, 0},
	};
	static const uint64_t froms[] = {0, 3, 5, 9, 20, UINT64_MAX};
	static const uint32_t maxes[] = {1, 3, 100};
	const uint64_t now = T0 + 9 * SEC;

	append_ten("m");
	append_n("other", 2); /* a neighbour whose events must never show */
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct meta_case *m = &cases[c];
		cr_assert_eq(set_meta("m", m->max_count, m->max_age_ms, m->tb), 0);
		struct ev_stream_info info = info_of("m");
		cr_assert_eq(info.meta.max_count, m->max_count);
		cr_assert_eq(info.meta.max_age_ms, m->max_age_ms);
		cr_assert_eq(info.meta.truncate_before, m->tb);
		cr_assert(!info.deleted && !info.tombstoned);
		for (size_t f = 0; f < sizeof(froms) / sizeof(froms[0]); f++)
			for (size_t x = 0; x < sizeof(maxes) / sizeof(maxes[0]); x++)
				for (int back = 0; back < 2; back++) {
					struct seen s = {0};
					cr_assert_eq(read_stream_pages("m", froms[f], back,
					                               maxes[x], now, &s),
					             0);
					uint64_t want[10];
					size_t nwant = 0;
					for (uint64_t i = 0; i < 10; i++) {
						uint64_t v = back ? 9 - i : i;
						bool in = back ? v <= froms[f] : v >= froms[f];
						if (in && model_readable(m, v, now))
							want[nwant++] = v;
					}
					cr_assert_eq(s.n, nwant,
					             "case %zu from %llu max %u %s: %zu events, "
					             "want %zu",
					             c, (unsigned long long)froms[f], maxes[x],
					             back ? "backwards" : "forwards", s.n, nwant);
					for (size_t i = 0; i < nwant; i++) {
						cr_assert_eq(s.version[i], want[i], "case %zu", c);
						cr_assert_str_eq(s.stream[i], "m");
					}
				}
	}
	/* Clearing removes the record; reads show everything again. */
	cr_assert_eq(set_meta("m", 0, 0, 0), 0);
	struct seen s = {0};
	cr_assert_eq(read_stream_pages("m", 0, false, 100, now, &s), 0);
	cr_assert_eq(s.n, 10);
	struct storage_stats ss;
	cr_assert_eq(storage_stats(st, &ss), 0);
	cr_assert_eq(ss.entries[STORAGE_DB_STREAM_META], 0);
}

Test(events, metadata_on_a_missing_stream_is_refused)
{
	cr_assert_eq(set_meta("ghost", 5, 0, 0), WB_E_NOTFOUND);
	cr_assert_eq(del_stream("ghost", false, NULL), WB_E_NOTFOUND);
	cr_assert_eq(del_stream("ghost", true, NULL), WB_E_NOTFOUND);
	struct storage_stats ss;
	cr_assert_eq(storage_stats(st, &ss), 0);
	cr_assert_eq(ss.entries[STORAGE_DB_STREAMS], 0, "nothing was created");
	cr_assert_eq(ss.entries[STORAGE_DB_STREAM_META], 0);
}

Test(events, soft_delete_then_append_again)
{
	struct id16 a = mkid(1), b = mkid(2), cid = mkid(3);
	struct ev_new evs[3] = {ev(a.b, "T", "1"), ev(b.b, "T", "2"), ev(cid.b, "T", "3")};
	struct ev_append_result r;
	cr_assert_eq(append("s", EV_EXPECT_NO_STREAM, 0, evs, 3, T0, &r), 0);
	append_n("other", 1);
	uint64_t last = 99;
	cr_assert_eq(set_meta("s", 0, 0, 1), 0);
	cr_assert_eq(del_stream("s", false, &last), 0);
	cr_assert_eq(last, 2);

	struct seen s = {0};
	struct ev_page page;
	cr_assert_eq(read_stream_at("s", 0, false, 10, T0, &s, &page), WB_E_NOTFOUND);
	cr_assert_eq(read_stream_at("s", 5, true, 10, T0, &s, &page), WB_E_NOTFOUND);
	struct ev_stream_info info = info_of("s");
	cr_assert(info.deleted);
	cr_assert(!info.tombstoned);
	cr_assert_eq(info.count, 3);
	cr_assert_eq(info.meta.truncate_before, 1, "the delete keeps the metadata");

	/* Deleting again changes nothing. */
	cr_assert_eq(del_stream("s", false, &last), 0);
	cr_assert_eq(last, 2);

	/* A retry of the original append is a replay and un-deletes nothing. */
	cr_assert_eq(append("s", EV_EXPECT_NO_STREAM, 0, evs, 3, T0, &r), 0);
	cr_assert(r.replay);
	cr_assert_eq(r.first_position, 1);
	cr_assert(info_of("s").deleted);

	/* Expected versions while deleted. */
	struct ev_new e = ev(NULL, "T", "new");
	cr_assert_eq(append("s", EV_EXPECT_EXISTS, 0, &e, 1, T0, &r), WB_WRONG_EXPECTED_VERSION);
	cr_assert_eq(r.actual_version, -1);
	cr_assert_eq(append("s", EV_EXPECT_EXACT, 1, &e, 1, T0, &r), WB_WRONG_EXPECTED_VERSION);
	cr_assert_eq(r.actual_version, -1);
	cr_assert_eq(append("s", EV_EXPECT_EXACT, 3, &e, 1, T0, &r), WB_WRONG_EXPECTED_VERSION);

	cr_assert_eq(append("s", EV_EXPECT_NO_STREAM, 0, &e, 1, T0 + 1, &r), 0);
	cr_assert(!r.replay);
	cr_assert_eq(r.stream_version, 3, "versions continue");
	cr_assert_eq(r.first_position, 5, "positions continue");
	info = info_of("s");
	cr_assert(!info.deleted);
	cr_assert_eq(info.count, 4);

	cr_assert_eq(append("s", EV_EXPECT_NO_STREAM, 0, &e, 1, T0, &r), WB_WRONG_EXPECTED_VERSION);
	cr_assert_eq(r.actual_version, 3);
	cr_assert_eq(append("s", EV_EXPECT_EXACT, 3, &e, 1, T0, &r), 0);
	cr_assert_eq(r.stream_version, 4);

	memset(&s, 0, sizeof(s));
	cr_assert_eq(read_stream_at("s", 0, false, 10, T0, &s, &page), 0);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.version[0], 3);
	cr_assert_eq(s.version[1], 4);
	cr_assert(page.end);
	cr_assert_eq(page.last, 4);
	memset(&s, 0, sizeof(s));
	cr_assert_eq(read_stream_at("s", UINT64_MAX, true, 10, T0, &s, &page), 0);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.version[0], 4);
	cr_assert_eq(s.version[1], 3);
	cr_assert(page.end);

	/* The exact last version before a delete is also a valid expectation. */
	struct ev_new e2[2] = {ev(NULL, "T", "a"), ev(NULL, "T", "b")};
	cr_assert_eq(append("x", EV_EXPECT_ANY, 0, e2, 2, T0, &r), 0);
	cr_assert_eq(del_stream("x", false, &last), 0);
	cr_assert_eq(append("x", EV_EXPECT_EXACT, 1, &e, 1, T0, &r), 0);
	cr_assert_eq(r.stream_version, 2);
	/* ANY too. */
	cr_assert_eq(del_stream("x", false, &last), 0);
	cr_assert_eq(last, 2);
	cr_assert_eq(append("x", EV_EXPECT_ANY, 0, &e, 1, T0, &r), 0);
	cr_assert_eq(r.stream_version, 3);
}

Test(events, hard_delete_is_permanent)
{
	struct id16 a = mkid(1), b = mkid(2);
	struct ev_new evs[2] = {ev(a.b, "T", "1"), ev(b.b, "T", "2")};
	struct ev_append_result r;
	cr_assert_eq(append("h", EV_EXPECT_ANY, 0, evs, 2, T0, &r), 0);
	cr_assert_eq(append("soft-first", EV_EXPECT_ANY, 0, evs, 0, T0, &r), WB_BAD_REQUEST);
	append_n("soft-first", 1);
	uint64_t last = 99;
	cr_assert_eq(del_stream("h", true, &last), 0);
	cr_assert_eq(last, 1);

	struct ev_new e = ev(NULL, "T", "x");
	for (int exp = EV_EXPECT_ANY; exp <= EV_EXPECT_EXACT; exp++) {
		cr_assert_eq(append("h", (enum ev_expected)exp, 1, &e, 1, T0, &r),
		             WB_STREAM_DELETED);
		cr_assert_gt(strlen(r.errmsg), 0);
	}
	cr_assert_eq(append("h", EV_EXPECT_ANY, 0, evs, 2, T0, &r), WB_STREAM_DELETED,
	             "a retry of a stored append is refused too");
	struct seen s = {0};
	struct ev_page page;
	cr_assert_eq(read_stream_at("h", 0, false, 10, T0, &s, &page), WB_STREAM_DELETED);
	cr_assert_eq(read_stream_at("h", 9, true, 10, T0, &s, &page), WB_STREAM_DELETED);
	cr_assert_eq(s.calls, 0);
	cr_assert_eq(del_stream("h", true, NULL), WB_STREAM_DELETED);
	cr_assert_eq(del_stream("h", false, NULL), WB_STREAM_DELETED);
	cr_assert_eq(set_meta("h", 1, 0, 0), WB_STREAM_DELETED);
	struct ev_stream_info info = info_of("h");
	cr_assert(info.tombstoned);
	cr_assert(!info.deleted);
	cr_assert_eq(info.count, 2);

	/* Soft first, then hard: tombstoned. */
	cr_assert_eq(del_stream("soft-first", false, NULL), 0);
	cr_assert_eq(del_stream("soft-first", true, &last), 0);
	cr_assert_eq(last, 0);
	info = info_of("soft-first");
	cr_assert(info.tombstoned && !info.deleted);
	cr_assert_eq(append("soft-first", EV_EXPECT_NO_STREAM, 0, &e, 1, T0, &r),
	             WB_STREAM_DELETED);
	/* The ids of a tombstoned stream's events still belong to it. */
	cr_assert_eq(append("elsewhere", EV_EXPECT_ANY, 0, evs, 2, T0, &r),
	             WB_IDEMPOTENCY_CONFLICT);
}

static struct ev_scavenge_step scavenge_all(uint32_t step, uint64_t upto, uint64_t now)
{
	struct ev_scavenge_step total = {0};
	uint64_t from = 1;
	for (int guard = 0; guard < 10000; guard++) {
		struct storage_txn *txn, *child;
		struct ev_scavenge_step out;
		cr_assert_eq(storage_txn_begin(st, NULL, 0, &txn), 0);
		cr_assert_eq(storage_txn_begin(st, txn, 0, &child), 0);
		int rc = ev_scavenge_step(child, from, upto, step, now, &out);
		cr_assert_eq(rc, 0, "%s", wb_error_name(rc));
		cr_assert_eq(storage_txn_commit(child), 0);
		cr_assert_eq(storage_txn_commit(txn), 0);
		cr_assert_leq(out.examined, step);
		total.examined += out.examined;
		total.removed += out.removed;
		total.bytes += out.bytes;
		if (out.done) {
			total.next = out.next;
			total.done = true;
			return total;
		}
		cr_assert_gt(out.next, from, "a step moves on");
		from = out.next;
	}
	cr_assert_fail("the scavenge did not end");
	return total;
}

static bool present(enum storage_db db, const void *key, size_t len)
{
	struct storage_txn *t = rtxn();
	struct storage_val v;
	int rc = storage_get(t, db, (struct storage_val){key, len}, &v);
	storage_txn_abort(t);
	cr_assert(rc == 0 || rc == WB_E_NOTFOUND);
	return rc == 0;
}

Test(events, scavenge_removes_exactly_the_unreadable_events)
{
	/* Streams whose events interleave in $all. Per stream: events (each
	 * 1 s apart, from T0), then what makes some unreadable. */
	static const struct {
		const char *name;
		int n;
	} streams[] = {{"keep", 5}, {"tb", 6}, {"mc", 6},   {"age", 6},
	               {"soft", 3}, {"re", 3}, {"hard", 2}, {"late", 2}};
	const size_t ns = sizeof(streams) / sizeof(streams[0]);
	unsigned idn = 1;
	for (int round = 0; round < 6; round++)
		for (size_t i = 0; i < ns; i++)
			if (round < streams[i].n) {
				struct id16 id = mkid(idn++);
				struct ev_new e = ev(id.b, "T", "payload");
				struct ev_append_result r;
				cr_assert_eq(append(streams[i].name, EV_EXPECT_ANY, 0, &e, 1,
				                    T0 + (uint64_t)round * SEC, &r),
				             0);
			}
	cr_assert_eq(set_meta("tb", 0, 0, 2), 0);
	cr_assert_eq(set_meta("mc", 2, 0, 0), 0);
	cr_assert_eq(set_meta("age", 0, 2500, 0), 0); /* now T0+5 s: versions 3..5 stay */
	cr_assert_eq(del_stream("soft", false, NULL), 0);
	cr_assert_eq(del_stream("re", false, NULL), 0);
	struct ev_new e = ev(NULL, "T", "again");
	struct ev_append_result r;
	cr_assert_eq(append("re", EV_EXPECT_NO_STREAM, 0, &e, 1, T0 + 5 * SEC, &r), 0);
	cr_assert_eq(del_stream("hard", true, NULL), 0);
	const uint64_t now = T0 + 5 * SEC;
	uint64_t last = last_position();
	/* Events after the scavenge's limit are left alone even when hidden. */
	cr_assert_eq(set_meta("late", 0, 0, 2), 0);
	cr_assert_eq(append("late", EV_EXPECT_ANY, 0, &e, 1, now, &r), 0);
	cr_assert_eq(append("late", EV_EXPECT_ANY, 0, &e, 1, now, &r), 0);
	cr_assert_eq(set_meta("late", 0, 0, 4), 0); /* hides versions 2, 3 */
	uint64_t upto = last;

	/* Before: every event, and which should go. */
	struct seen before = {0};
	struct ev_page page;
	cr_assert_eq(read_all(0, false, 1000, NULL, &before, &page), 0);
	cr_assert_eq(before.n, last + 2);
	bool gone[SEEN_MAX] = {false};
	size_t want_removed = 0;
	uint64_t want_bytes = 0;
	for (size_t i = 0; i < before.n; i++) {
		const char *sn = before.stream[i];
		uint64_t v = before.version[i];
		uint64_t age_s = (now - before.ts[i]) / SEC;
		bool g = (strcmp(sn, "tb") == 0 && v < 2) || (strcmp(sn, "mc") == 0 && v < 4) ||
		         (strcmp(sn, "age") == 0 && age_s * 1000 > 2500) ||
		         strcmp(sn, "soft") == 0 || (strcmp(sn, "re") == 0 && v < 3) ||
		         strcmp(sn, "hard") == 0 || (strcmp(sn, "late") == 0 && v < 2);
		gone[i] = g;
		if (g) {
			want_removed++;
			want_bytes += 8 + EV_RECORD_HEADER + strlen(sn) + 1 + strlen("payload");
			want_bytes += 16 + 8 + EV_ID_LEN + 8;
		}
	}
	cr_assert_eq(want_removed, 2 + 4 + 3 + 3 + 3 + 2 + 2);

	struct ev_scavenge_step tot = scavenge_all(3, upto, now);
	cr_assert(tot.done);
	cr_assert_eq(tot.examined, last);
	cr_assert_eq(tot.removed, want_removed);
	cr_assert_eq(tot.bytes, want_bytes);
	cr_assert_eq(last_position(), last + 2, "the position counter is untouched");

	for (size_t i = 0; i < before.n; i++) {
		uint8_t kpos[8];
		put_u64(kpos, before.position[i]);
		struct ev_stream_info info = info_of(before.stream[i]);
		uint8_t kse[16];
		put_u64(kse, info.stream_id);
		put_u64(kse + 8, before.version[i]);
		bool want = !gone[i];
		cr_assert_eq(present(STORAGE_DB_EVENTS, kpos, 8), want, "position %llu (%s v%llu)",
		             (unsigned long long)before.position[i], before.stream[i],
		             (unsigned long long)before.version[i]);
		cr_assert_eq(present(STORAGE_DB_STREAM_EVENTS, kse, 16), want);
		cr_assert_eq(present(STORAGE_DB_EVENT_IDS, before.id[i], EV_ID_LEN), want);
	}

	/* $all now skips the holes, and paging over them ends, both ways. */
	for (uint32_t max = 1; max <= 4; max++)
		for (int back = 0; back < 2; back++) {
			struct seen s = {0};
			uint64_t from = back ? UINT64_MAX : 0;
			for (int guard = 0;; guard++) {
				cr_assert_lt(guard, 200);
				cr_assert_eq(read_all(from, back, max, NULL, &s, &page), 0);
				cr_assert_eq(page.last, last + 2);
				if (page.end)
					break;
				from = page.next;
			}
			size_t k = 0;
			for (size_t j = 0; j < before.n; j++) {
				size_t i = back ? before.n - 1 - j : j;
				if (gone[i])
					continue;
				cr_assert_lt(k, s.n);
				cr_assert_eq(s.position[k], before.position[i]);
				k++;
			}
			cr_assert_eq(k, s.n, "max %u %s", max, back ? "backwards" : "forwards");
		}

	/* Stream reads answer as before the scavenge. */
	struct seen s = {0};
	cr_assert_eq(read_stream_pages("mc", 0, false, 1, now, &s), 0);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.version[0], 4);
	memset(&s, 0, sizeof(s));
	cr_assert_eq(read_stream_pages("late", 0, false, 10, now, &s), 0);
	cr_assert_eq(s.n, 0, "late's hidden events past the limit stay hidden");
	cr_assert(info_of("hard").tombstoned, "the tombstone outlives its events");
	cr_assert(info_of("soft").deleted);

	/* Idempotency: a kept id still answers a replay; a removed id is free
	 * again (documented), and a retry appends it anew. */
	struct id16 kept_id, removed_id;
	for (size_t i = 0; i < before.n; i++) {
		if (strcmp(before.stream[i], "keep") == 0)
			memcpy(kept_id.b, before.id[i], EV_ID_LEN);
		if (strcmp(before.stream[i], "tb") == 0 && before.version[i] == 0)
			memcpy(removed_id.b, before.id[i], EV_ID_LEN);
	}
	struct ev_new ek = ev(kept_id.b, "T", "payload");
	cr_assert_eq(append("keep", EV_EXPECT_ANY, 0, &ek, 1, now, &r), 0);
	cr_assert(r.replay);
	struct ev_new er = ev(removed_id.b, "T", "payload");
	cr_assert_eq(append("tb", EV_EXPECT_ANY, 0, &er, 1, now, &r), 0);
	cr_assert(!r.replay);
	cr_assert_eq(r.stream_version, 6);
	cr_assert_eq(r.first_position, last + 3, "positions are never reused");

	/* A second scavenge finds nothing more (up to the same limit). */
	tot = scavenge_all(1000, upto, now);
	cr_assert_eq(tot.removed, 0);
	cr_assert_eq(tot.examined, last - want_removed);
}

Test(events, scavenge_of_an_empty_log_and_past_the_end)
{
	struct ev_scavenge_step tot = scavenge_all(10, 0, T0);
	cr_assert(tot.done);
	cr_assert_eq(tot.examined, 0);
	append_n("a", 3);
	tot = scavenge_all(10, UINT64_MAX, T0);
	cr_assert_eq(tot.examined, 3);
	cr_assert_eq(tot.removed, 0);
	tot = scavenge_all(1, 2, T0);
	cr_assert_eq(tot.examined, 2, "the limit is inclusive");
}

Test(events, scavenge_of_a_large_deleted_stream)
{
	static struct ev_new evs[1000];
	static char data[1000][8];
	for (int i = 0; i < 1000; i++) {
		snprintf(data[i], sizeof(data[i]), "d%d", i);
		evs[i] = ev(NULL, "T", data[i]);
	}
	for (int i = 0; i < 5; i++)
		append_ok("big", evs, 1000, NULL);
	for (int i = 0; i < 100; i++)
		append_n("small", 1);
	cr_assert_eq(del_stream("big", false, NULL), 0);
	/* Two steps, then the rest after a reopen. */
	struct ev_scavenge_step tot = scavenge_all(1000, 2000, T0);
	cr_assert_eq(tot.removed, 2000);
	storage_close(st);
	st = fixture_open(&fx, NULL, &STORE_OPTS);
	tot = scavenge_all(1000, UINT64_MAX, T0);
	tot.examined += 2000;
	tot.removed += 2000;
	cr_assert(tot.done);
	cr_assert_eq(tot.examined, 5100);
	cr_assert_eq(tot.removed, 5000);
	struct seen s = {0};
	struct ev_page page;
	cr_assert_eq(read_all(0, false, 1000, NULL, &s, &page), 0);
	cr_assert_eq(s.n, 100);
	struct storage_stats ss;
	cr_assert_eq(storage_stats(st, &ss), 0);
	cr_assert_eq(ss.entries[STORAGE_DB_EVENTS], 100);
	cr_assert_eq(ss.entries[STORAGE_DB_STREAM_EVENTS], 100);
	cr_assert_eq(ss.entries[STORAGE_DB_EVENT_IDS], 100);
}

Test(events, max_age_when_the_clock_jumps_back)
{
	/* Written at T0 + 10 s; the clock then reads T0: the events are from
	 * the future, not old, and neither reads nor a scavenge drop them. */
	struct ev_new e = ev(NULL, "T", "x");
	struct ev_append_result r;
	cr_assert_eq(append("j", EV_EXPECT_ANY, 0, &e, 1, T0 + 10 * SEC, &r), 0);
	cr_assert_eq(append("j", EV_EXPECT_ANY, 0, &e, 1, T0 + 10 * SEC, &r), 0);
	cr_assert_eq(set_meta("j", 0, 1, 0), 0);
	struct seen s = {0};
	cr_assert_eq(read_stream_pages("j", 0, false, 10, T0, &s), 0);
	cr_assert_eq(s.n, 2);
	struct ev_scavenge_step tot = scavenge_all(10, UINT64_MAX, T0);
	cr_assert_eq(tot.removed, 0);
	/* Once the clock passes them by more than 1 ms, they go. */
	memset(&s, 0, sizeof(s));
	cr_assert_eq(read_stream_pages("j", UINT64_MAX, true, 10, T0 + 10 * SEC + 1000, &s), 0);
	cr_assert_eq(s.n, 2, "exactly 1 ms old is readable");
	memset(&s, 0, sizeof(s));
	cr_assert_eq(read_stream_pages("j", UINT64_MAX, true, 10, T0 + 10 * SEC + 1001, &s), 0);
	cr_assert_eq(s.n, 0);
	tot = scavenge_all(10, UINT64_MAX, T0 + 10 * SEC + 1001);
	cr_assert_eq(tot.removed, 2);
}

/* ev_get(), ev_position_of_id() and ev_position_at(): the lookups modules
 * use instead of encoding event keys themselves. */
Test(events, lookups_by_position_id_and_version)
{
	struct id16 a = mkid(1), b = mkid(2), other = mkid(3);
	struct ev_new evs[] = {ev(a.b, "A", "one"), ev(b.b, "B", "two")};
	append_n("first", 1);
	append_ok("s", evs, 2, NULL);
	struct storage_txn *t = rtxn();
	struct ev_record rec;
	cr_assert_eq(ev_get(t, 3, &rec), 0);
	cr_assert_eq(rec.position, 3);
	cr_assert_eq(rec.version, 1);
	cr_assert_eq(rec.stream_len, 1);
	cr_assert_arr_eq(rec.type, "B", 1);
	cr_assert_arr_eq(rec.data, "two", 3);
	cr_assert_arr_eq(rec.id, b.b, EV_ID_LEN);
	cr_assert_eq(ev_get(t, 4, &rec), WB_E_NOTFOUND);

	uint64_t pos = 0;
	cr_assert_eq(ev_position_of_id(t, a.b, &pos), 0);
	cr_assert_eq(pos, 2);
	cr_assert_eq(ev_position_of_id(t, other.b, &pos), WB_E_NOTFOUND);

	struct ev_stream_info info;
	cr_assert_eq(ev_stream_info(t, "s", 1, &info), 0);
	cr_assert_eq(ev_position_at(t, info.stream_id, 1, &pos), 0);
	cr_assert_eq(pos, 3);
	cr_assert_eq(ev_position_at(t, info.stream_id, 2, &pos), WB_E_NOTFOUND);
	storage_txn_abort(t);
}

/* ------------------------------------------------ one transaction, many ops
 *
 * The writer runs a batch flat, in one transaction; the stream records and
 * the last position then live in a write-back cache of that transaction. */

static void flat_append(struct storage_txn *t, const char *stream, size_t n, uint64_t want_last)
{
	struct ev_new e = ev(NULL, "T", NULL);
	struct ev_new es[4] = {e, e, e, e};
	struct ev_append_result r;
	cr_assert_leq(n, 4);
	int rc = ev_append(t, stream, strlen(stream), EV_EXPECT_ANY, 0, es, n, T0, &r);
	cr_assert_eq(rc, 0, "%s: %s", wb_error_name(rc), r.errmsg);
	cr_assert_eq(r.last_position, want_last);
}

/* The stream's event count as t sees it (0: no such stream). */
static uint64_t count_in(struct storage_txn *t, const char *stream)
{
	struct ev_stream_info info;
	int rc = ev_stream_info(t, stream, strlen(stream), &info);
	if (rc == WB_E_NOTFOUND)
		return 0;
	cr_assert_eq(rc, 0);
	return info.count;
}

Test(events, appends_in_one_transaction_see_each_other_and_are_stored_at_commit)
{
	struct storage_txn *t;
	uint64_t last;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	flat_append(t, "s", 3, 3);
	flat_append(t, "t", 2, 5);
	flat_append(t, "s", 1, 6);
	cr_assert_eq(count_in(t, "s"), 4);
	cr_assert_eq(ev_last_position(t, &last), 0);
	cr_assert_eq(last, 6);
	/* Nothing is visible outside before the commit... */
	struct storage_txn *r = rtxn();
	cr_assert_eq(count_in(r, "s"), 0);
	storage_txn_abort(r);
	cr_assert_eq(storage_txn_commit(t), 0);
	/* ...and everything after it. */
	r = rtxn();
	cr_assert_eq(count_in(r, "s"), 4);
	cr_assert_eq(count_in(r, "t"), 2);
	cr_assert_eq(ev_last_position(r, &last), 0);
	cr_assert_eq(last, 6);
	struct ev_record rec;
	cr_assert_eq(ev_get(r, 6, &rec), 0);
	cr_assert_eq(rec.version, 3);
	storage_txn_abort(r);
}

Test(events, a_nested_child_reads_what_its_parent_appended)
{
	struct storage_txn *t, *c;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	flat_append(t, "s", 2, 2);
	cr_assert_eq(storage_txn_begin(st, t, 0, &c), 0);
	flat_append(c, "s", 1, 3);
	cr_assert_eq(count_in(c, "s"), 3);
	cr_assert_eq(storage_txn_commit(c), 0);
	flat_append(t, "s", 1, 4);
	/* An aborted child leaves the parent's view as it was. */
	cr_assert_eq(storage_txn_begin(st, t, 0, &c), 0);
	flat_append(c, "s", 2, 6);
	storage_txn_abort(c);
	cr_assert_eq(count_in(t, "s"), 4);
	flat_append(t, "s", 1, 5);
	cr_assert_eq(storage_txn_commit(t), 0);
	struct storage_txn *r = rtxn();
	cr_assert_eq(count_in(r, "s"), 5);
	storage_txn_abort(r);
}

Test(events, an_aborted_transaction_leaves_nothing_of_its_appends)
{
	struct storage_txn *t;
	append_n("s", 2);
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	flat_append(t, "s", 3, 5);
	flat_append(t, "u", 1, 6);
	storage_txn_abort(t);
	struct storage_txn *r = rtxn();
	uint64_t last;
	cr_assert_eq(count_in(r, "s"), 2);
	cr_assert_eq(count_in(r, "u"), 0);
	cr_assert_eq(ev_last_position(r, &last), 0);
	cr_assert_eq(last, 2);
	storage_txn_abort(r);
}

Test(events, a_delete_in_the_transaction_of_appends_is_seen_by_the_next)
{
	struct storage_txn *t;
	struct ev_stream_info info;
	uint64_t lastv;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	flat_append(t, "s", 3, 3);
	cr_assert_eq(ev_delete_stream(t, "s", 1, false, &lastv), 0);
	cr_assert_eq(lastv, 2);
	cr_assert_eq(ev_stream_info(t, "s", 1, &info), 0);
	cr_assert(info.deleted);
	flat_append(t, "s", 1, 4);
	cr_assert_eq(ev_stream_info(t, "s", 1, &info), 0);
	cr_assert_not(info.deleted);
	cr_assert_eq(info.count, 4);
	cr_assert_eq(ev_delete_stream(t, "s", 1, true, &lastv), 0);
	struct ev_new e = ev(NULL, "T", NULL);
	struct ev_append_result r;
	cr_assert_eq(ev_append(t, "s", 1, EV_EXPECT_ANY, 0, &e, 1, T0, &r), WB_STREAM_DELETED);
	storage_txn_abort(t);
}

Test(events, more_streams_in_one_transaction_than_the_cache_holds)
{
	struct storage_txn *t;
	char name[16];
	uint64_t last = 0;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	for (unsigned round = 0; round < 2; round++) {
		for (unsigned i = 0; i < 150; i++) {
			snprintf(name, sizeof(name), "s%u", i);
			size_t n = round == 0 ? 1 + i % 3 : 1;
			last += n;
			flat_append(t, name, n, last);
			cr_assert_eq(count_in(t, name), round == 0 ? n : 2 + i % 3);
		}
	}
	cr_assert_eq(storage_txn_commit(t), 0);
	struct storage_txn *r = rtxn();
	for (unsigned i = 0; i < 150; i++) {
		snprintf(name, sizeof(name), "s%u", i);
		cr_assert_eq(count_in(r, name), 2 + i % 3, "%s", name);
	}
	uint64_t got;
	cr_assert_eq(ev_last_position(r, &got), 0);
	cr_assert_eq(got, last);
	storage_txn_abort(r);
}

/* A record of a hostile log reaches ev_append() without the loop's checks:
 * a name too long for the record's one-byte length is refused, not stored
 * truncated, and so is a type too long. */
Test(events, append_refuses_names_the_record_cannot_hold)
{
	static char name[EV_STREAM_MAX + 2];
	memset(name, 'n', sizeof(name) - 1);
	struct ev_new e = ev(NULL, "T", NULL);
	struct ev_append_result r;
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	cr_assert_eq(ev_append(t, name, EV_STREAM_MAX + 1, EV_EXPECT_ANY, 0, &e, 1, T0, &r),
	             WB_BAD_REQUEST);
	cr_assert_eq(ev_append(t, name, 0, EV_EXPECT_ANY, 0, &e, 1, T0, &r), WB_BAD_REQUEST);
	static char type[EV_TYPE_MAX + 2];
	memset(type, 't', sizeof(type) - 1);
	struct ev_new long_type = ev(NULL, type, NULL);
	cr_assert_eq(ev_append(t, "s", 1, EV_EXPECT_ANY, 0, &long_type, 1, T0, &r), WB_BAD_REQUEST);
	/* The longest valid name is stored whole. */
	cr_assert_eq(ev_append(t, name, EV_STREAM_MAX, EV_EXPECT_ANY, 0, &e, 1, T0, &r), 0);
	cr_assert_eq(storage_txn_commit(t), 0);
	struct ev_record rec;
	struct storage_txn *rt = rtxn();
	cr_assert_eq(ev_get(rt, 1, &rec), 0);
	cr_assert_eq(rec.stream_len, EV_STREAM_MAX);
	storage_txn_abort(rt);
}
