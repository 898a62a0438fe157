/* End-to-end behaviour of whizbangd through libwhizbang: a real server on
 * port 0 with a temporary data directory, one per test. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"

TestSuite(e2e, .fini = e2e_suite_fini, .timeout = 120);

/* A deterministic event id: tag, then a and b big-endian. */
static void make_id(uint8_t id[16], uint8_t tag, uint32_t a, uint32_t b)
{
	memset(id, 0, 16);
	id[0] = 0xe2;
	id[1] = tag;
	for (int i = 0; i < 4; i++) {
		id[4 + i] = (uint8_t)(a >> (24 - 8 * i));
		id[8 + i] = (uint8_t)(b >> (24 - 8 * i));
	}
	id[15] = 0x5a;
}

/* One simple event whose data is text. */
static struct wb_new_event text_event(const char *type, const char *text, const uint8_t *id)
{
	struct wb_new_event e = {
	        .id = id,
	        .type = type,
	        .data = text,
	        .data_len = strlen(text),
	        .metadata = NULL,
	        .metadata_len = 0,
	};
	return e;
}

static void append_text(struct wb_client *c, const char *stream, const char *type, const char *text,
                        struct wb_append_result *out)
{
	struct wb_new_event e = text_event(type, text, NULL);
	struct wb_append_result res;
	int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, &e, 1, out != NULL ? out : &res);
	cr_assert_eq(rc, 0, "append to %s: %s: %s", stream, wb_error_name(rc), wb_errmsg(c));
}

static uint64_t count_all(struct wb_client *c)
{
	struct e2e_event *evs;
	size_t n;
	int rc = e2e_read_all(c, 0, NULL, NULL, 0, &evs, &n);
	cr_assert_eq(rc, 0, "read-all: %s: %s", wb_error_name(rc), wb_errmsg(c));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(evs[i].position, i + 1, "position %llu at index %zu",
		             (unsigned long long)evs[i].position, i);
	e2e_events_free(evs, n);
	return n;
}

/* Expects p to hold count events and to be the last page; frees it. */
static void expect_last_page(struct wb_page *p, size_t count)
{
	cr_assert_eq(p->count, count, "a page of %zu events, expected %zu", p->count, count);
	cr_assert(p->end, "the page is not the last");
	wb_page_free(p);
}

/* Expects the figures of a stream's info. */
static void expect_info(const struct wb_stream_info *si, uint64_t last_version, uint64_t count,
                        uint64_t first_position, uint64_t last_position)
{
	cr_assert_eq(si->last_version, last_version, "last_version %" PRIu64, si->last_version);
	cr_assert_eq(si->event_count, count, "event_count %" PRIu64, si->event_count);
	cr_assert_eq(si->first_position, first_position, "first_position %" PRIu64,
	             si->first_position);
	cr_assert_eq(si->last_position, last_position, "last_position %" PRIu64, si->last_position);
}

/* Expects stream to hold n events (GetStreamInfo). */
static void expect_event_count(struct wb_client *c, const char *stream, uint64_t n)
{
	struct wb_stream_info si;
	cr_assert_eq(wb_stream_info(c, stream, &si), 0, "stream-info %s: %s", stream, wb_errmsg(c));
	cr_assert_eq(si.event_count, n, "%s holds %" PRIu64 " events, expected %" PRIu64, stream,
	             si.event_count, n);
}

static Whizbang__V1__ServerStats *stats(struct wb_client *c)
{
	Whizbang__V1__ServerStats *st = NULL;
	int rc = wb_stats(c, &st);
	cr_assert_eq(rc, 0, "GetStats: %s: %s", wb_error_name(rc), wb_errmsg(c));
	return st;
}

/* ---------------------------------------------------------------- hello, ping */

Test(e2e, hello_reports_default_limits)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	const struct wb_server_info *info = wb_server_info(c);
	cr_assert_eq(info->protocol_version, 1);
	cr_assert_neq(info->server_version[0], '\0', "empty server_version");
	cr_assert_eq(info->max_frame, 4u << 20, "max_frame %u", info->max_frame);
	cr_assert_eq(info->max_read_count, 1000u, "max_read_count %u", info->max_read_count);
	cr_assert_eq(info->max_append_events, 10000u);
	cr_assert(info->max_event_size > 0 && info->max_event_size < info->max_frame,
	          "max_event_size %u", info->max_event_size);
	cr_assert_eq(info->auth_required, false);
	e2e_suite_stop_client(c);
}

Test(e2e, hello_reports_configured_limits)
{
	const char *args[] = {"--max-frame", "64K", "--max-read-count", "7", "--max-append-events",
	                      "9",           NULL};
	struct wb_client *c = e2e_suite_start_client(args, "test_e2e");
	const struct wb_server_info *info = wb_server_info(c);
	cr_assert_eq(info->max_frame, 65536u, "max_frame %u", info->max_frame);
	cr_assert_eq(info->max_read_count, 7u);
	cr_assert_eq(info->max_append_events, 9u);
	cr_assert(info->max_event_size > 0 && info->max_event_size < 65536u);
	e2e_suite_stop_client(c);
}

Test(e2e, ping)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	for (int i = 0; i < 10; i++)
		cr_assert_eq(wb_ping(c), 0, "ping: %s", wb_errmsg(c));
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- appends */

Test(e2e, append_positions_from_1_versions_from_0)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	struct wb_new_event evs[3] = {text_event("A", "a0", NULL), text_event("A", "a1", NULL),
	                              text_event("B", "a2", NULL)};
	struct wb_append_result r;
	cr_assert_eq(wb_append(c, "s-1", WB_EXPECT_ANY, 0, evs, 3, &r), 0, "%s", wb_errmsg(c));
	cr_assert_eq(r.first_position, 1);
	cr_assert_eq(r.last_position, 3);
	cr_assert_eq(r.stream_version, 2);
	cr_assert_eq(r.idempotent_replay, false);

	cr_assert_eq(wb_append(c, "s-2", WB_EXPECT_ANY, 0, evs, 2, &r), 0, "%s", wb_errmsg(c));
	cr_assert_eq(r.first_position, 4);
	cr_assert_eq(r.last_position, 5);
	cr_assert_eq(r.stream_version, 1);

	cr_assert_eq(wb_append(c, "s-1", WB_EXPECT_ANY, 0, evs, 1, &r), 0, "%s", wb_errmsg(c));
	cr_assert_eq(r.first_position, 6);
	cr_assert_eq(r.stream_version, 3);

	struct wb_page p;
	cr_assert_eq(wb_read_stream(c, "s-1", 0, false, 0, &p), 0, "%s", wb_errmsg(c));
	cr_assert_eq(p.count, 4);
	const uint64_t want_pos[] = {1, 2, 3, 6};
	const char *want_data[] = {"a0", "a1", "a2", "a0"};
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(p.events[i].version, i);
		cr_assert_eq(p.events[i].position, want_pos[i]);
		cr_assert_str_eq(p.events[i].stream, "s-1");
		cr_assert_eq(p.events[i].data_len, 2);
		cr_assert_eq(memcmp(p.events[i].data, want_data[i], 2), 0);
	}
	cr_assert_str_eq(p.events[2].type, "B");
	cr_assert_eq(p.end, true);
	cr_assert_eq(p.last, 3);
	wb_page_free(&p);
	e2e_suite_stop_client(c);
}

static void expect_wrong_version(struct wb_client *c, const char *stream, enum wb_expected exp,
                                 uint64_t version, int64_t actual)
{
	struct wb_new_event e = text_event("T", "x", NULL);
	struct wb_append_result r;
	int rc = wb_append(c, stream, exp, version, &e, 1, &r);
	cr_assert_eq(rc, WB_WRONG_EXPECTED_VERSION,
	             "stream %s expected kind %d version %llu: got %s (%s)", stream, (int)exp,
	             (unsigned long long)version, wb_error_name(rc), wb_errmsg(c));
	cr_assert_eq(wb_actual_version(c), actual, "actual version %lld, want %lld",
	             (long long)wb_actual_version(c), (long long)actual);
	cr_assert_neq(wb_errmsg(c)[0], '\0', "no message with WRONG_EXPECTED_VERSION");
}

static uint64_t expect_ok(struct wb_client *c, const char *stream, enum wb_expected exp,
                          uint64_t version)
{
	struct wb_new_event e = text_event("T", "x", NULL);
	struct wb_append_result r;
	int rc = wb_append(c, stream, exp, version, &e, 1, &r);
	cr_assert_eq(rc, 0, "stream %s expected kind %d version %llu: %s (%s)", stream, (int)exp,
	             (unsigned long long)version, wb_error_name(rc), wb_errmsg(c));
	return r.stream_version;
}

Test(e2e, expected_version_matrix)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");

	/* NO_STREAM: fine on a new stream, refused on an existing one. */
	cr_assert_eq(expect_ok(c, "ns", WB_EXPECT_NO_STREAM, 0), 0);
	expect_wrong_version(c, "ns", WB_EXPECT_NO_STREAM, 0, 0);

	/* STREAM_EXISTS: refused on a new stream (actual -1), fine after. */
	expect_wrong_version(c, "ex", WB_EXPECT_EXISTS, 0, -1);
	cr_assert_eq(expect_ok(c, "ex", WB_EXPECT_ANY, 0), 0);
	cr_assert_eq(expect_ok(c, "ex", WB_EXPECT_EXISTS, 0), 1);

	/* EXACT: the last version must match; a missing stream is -1. */
	cr_assert_eq(expect_ok(c, "ex", WB_EXPECT_EXACT, 1), 2);
	expect_wrong_version(c, "ex", WB_EXPECT_EXACT, 1, 2);
	expect_wrong_version(c, "ex", WB_EXPECT_EXACT, 3, 2);
	expect_wrong_version(c, "ex", WB_EXPECT_EXACT, UINT64_MAX, 2);
	expect_wrong_version(c, "missing", WB_EXPECT_EXACT, 0, -1);
	cr_assert_eq(expect_ok(c, "ex", WB_EXPECT_EXACT, 2), 3);

	/* ANY: always. */
	cr_assert_eq(expect_ok(c, "any-new", WB_EXPECT_ANY, 0), 0);
	cr_assert_eq(expect_ok(c, "ex", WB_EXPECT_ANY, 0), 4);

	/* The refused appends wrote nothing. */
	cr_assert_eq(count_all(c), 7);
	struct wb_stream_info si;
	cr_assert_eq(wb_stream_info(c, "missing", &si), WB_NOT_FOUND);
	expect_event_count(c, "ex", 5);
	e2e_suite_stop_client(c);
}

/* Appends from two clients interleave in the log, but each append's events
 * sit at consecutive positions. */
Test(e2e, multi_event_append_is_consecutive)
{
	struct wb_client *a = e2e_suite_start_client(NULL, "test_e2e");
	struct wb_client *b = e2e_suite_client("test_e2e");
	enum { ROUNDS = 20, N = 10 };
	char text[N][32];
	struct wb_new_event evs[N];
	uint64_t ida[ROUNDS], idb[ROUNDS];
	for (int i = 0; i < N; i++) {
		snprintf(text[i], sizeof(text[i]), "event-%d", i);
		evs[i] = text_event("Multi", text[i], NULL);
	}
	for (int r = 0; r < ROUNDS; r++) {
		cr_assert_eq(wb_append_send(a, "multi-a", WB_EXPECT_ANY, 0, evs, N, &ida[r]), 0);
		cr_assert_eq(wb_append_send(b, "multi-b", WB_EXPECT_ANY, 0, evs, N, &idb[r]), 0);
		cr_assert_eq(wb_flush(a), 0);
		cr_assert_eq(wb_flush(b), 0);
	}
	struct wb_client *cs[2] = {a, b};
	for (int k = 0; k < 2; k++) {
		for (int r = 0; r < ROUNDS; r++) {
			Whizbang__V1__Response *resp;
			cr_assert_eq(wb_recv(cs[k], &resp), 0, "%s", wb_errmsg(cs[k]));
			cr_assert_eq(e2e_error_code(resp), 0, "append failed: %s",
			             resp->error->message);
			cr_assert_eq(resp->body_case, WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS);
			const Whizbang__V1__AppendResult *ar = resp->append_events;
			cr_assert_eq(ar->last_position - ar->first_position, N - 1);
			whizbang__v1__response__free_unpacked(resp, NULL);
		}
	}
	struct e2e_event *all;
	size_t n;
	cr_assert_eq(e2e_read_all(a, 0, NULL, NULL, 0, &all, &n), 0);
	cr_assert_eq(n, 2 * ROUNDS * N);
	for (size_t i = 0; i < n; i += N) {
		for (size_t j = 0; j < N; j++) {
			cr_assert_str_eq(all[i + j].stream, all[i].stream,
			                 "append at position %zu is split", i + 1);
			cr_assert_eq(all[i + j].version, all[i].version + j);
			char want[32];
			snprintf(want, sizeof(want), "event-%zu", j);
			cr_assert_eq(all[i + j].data_len, strlen(want));
			cr_assert_eq(memcmp(all[i + j].data, want, strlen(want)), 0);
		}
	}
	e2e_events_free(all, n);
	wb_close(a);
	wb_close(b);
	e2e_suite_stop();
}

/* ---------------------------------------------------------------- idempotency */

Test(e2e, idempotent_retry_answers_original_positions)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	append_text(c, "before", "T", "x", NULL);
	uint8_t ids[3][16];
	struct wb_new_event evs[3];
	for (uint32_t i = 0; i < 3; i++) {
		make_id(ids[i], 1, 7, i);
		evs[i] = text_event("Idem", "payload", ids[i]);
	}
	struct wb_append_result first, again;
	cr_assert_eq(wb_append(c, "idem", WB_EXPECT_NO_STREAM, 0, evs, 3, &first), 0, "%s",
	             wb_errmsg(c));
	cr_assert_eq(first.idempotent_replay, false);
	append_text(c, "after", "T", "y", NULL);
	uint64_t count = count_all(c);

	/* A retry, even with an expectation that no longer holds, answers the
	 * original result and writes nothing. */
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(wb_append(c, "idem", WB_EXPECT_NO_STREAM, 0, evs, 3, &again), 0,
		             "retry %d: %s", k, wb_errmsg(c));
		cr_assert_eq(again.idempotent_replay, true);
		cr_assert_eq(again.first_position, first.first_position);
		cr_assert_eq(again.last_position, first.last_position);
		cr_assert_eq(again.stream_version, first.stream_version);
	}
	cr_assert_eq(count_all(c), count);
	expect_event_count(c, "idem", 3);
	e2e_suite_stop_client(c);
}

Test(e2e, idempotency_conflicts_write_nothing)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	uint8_t ids[8][16];
	for (uint32_t i = 0; i < 8; i++)
		make_id(ids[i], 2, 1, i);
	struct wb_new_event stored[2] = {text_event("T", "s0", ids[0]),
	                                 text_event("T", "s1", ids[1])};
	struct wb_append_result r;
	cr_assert_eq(wb_append(c, "orig", WB_EXPECT_ANY, 0, stored, 2, &r), 0, "%s", wb_errmsg(c));
	uint64_t count = count_all(c);

	/* Stored first, new second. */
	struct wb_new_event mixed1[2] = {text_event("T", "s0", ids[0]),
	                                 text_event("T", "n2", ids[2])};
	int rc = wb_append(c, "orig", WB_EXPECT_ANY, 0, mixed1, 2, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "stored+new: %s", wb_error_name(rc));
	cr_assert_neq(wb_errmsg(c)[0], '\0');

	/* New first, stored second. */
	struct wb_new_event mixed2[2] = {text_event("T", "n3", ids[3]),
	                                 text_event("T", "s1", ids[1])};
	rc = wb_append(c, "orig", WB_EXPECT_ANY, 0, mixed2, 2, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "new+stored: %s", wb_error_name(rc));

	/* The stored events in another order. */
	struct wb_new_event swapped[2] = {stored[1], stored[0]};
	rc = wb_append(c, "orig", WB_EXPECT_ANY, 0, swapped, 2, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "swapped: %s", wb_error_name(rc));

	/* A stored id in another stream, alone and after new events. */
	rc = wb_append(c, "other", WB_EXPECT_ANY, 0, stored, 2, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "other stream: %s", wb_error_name(rc));
	struct wb_new_event other2[3] = {text_event("T", "n4", ids[4]),
	                                 text_event("T", "n5", ids[5]),
	                                 text_event("T", "s0", ids[0])};
	rc = wb_append(c, "other", WB_EXPECT_ANY, 0, other2, 3, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "other stream, late: %s", wb_error_name(rc));

	/* The same new id twice in one append. */
	struct wb_new_event dup[4] = {text_event("T", "d0", ids[6]), text_event("T", "d1", NULL),
	                              text_event("T", "d2", ids[7]), text_event("T", "d3", ids[6])};
	rc = wb_append(c, "dup", WB_EXPECT_ANY, 0, dup, 4, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "duplicate in append: %s", wb_error_name(rc));

	/* A stored id next to an event without one (which the server would
	 * give a fresh id), in either order. */
	struct wb_new_event anon1[2] = {text_event("T", "a", NULL), text_event("T", "s1", ids[1])};
	rc = wb_append(c, "orig", WB_EXPECT_ANY, 0, anon1, 2, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "generated+stored: %s", wb_error_name(rc));
	struct wb_new_event anon2[2] = {text_event("T", "s0", ids[0]), text_event("T", "a", NULL)};
	rc = wb_append(c, "orig", WB_EXPECT_ANY, 0, anon2, 2, &r);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "stored+generated: %s", wb_error_name(rc));

	/* None of that wrote anything, nor created a stream. */
	cr_assert_eq(count_all(c), count);
	struct wb_stream_info si;
	cr_assert_eq(wb_stream_info(c, "other", &si), WB_NOT_FOUND);
	cr_assert_eq(wb_stream_info(c, "dup", &si), WB_NOT_FOUND);
	expect_event_count(c, "orig", 2);

	/* The ids of failed appends were not indexed: they are usable. */
	struct wb_new_event fresh[2] = {text_event("T", "n2", ids[2]),
	                                text_event("T", "n6", ids[6])};
	cr_assert_eq(wb_append(c, "dup", WB_EXPECT_NO_STREAM, 0, fresh, 2, &r), 0, "%s",
	             wb_errmsg(c));
	cr_assert_eq(r.first_position, count + 1);
	cr_assert_eq(r.idempotent_replay, false);
	e2e_suite_stop_client(c);
}

Test(e2e, idempotency_survives_restart)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	uint8_t ids[4][16];
	struct wb_new_event evs[4];
	for (uint32_t i = 0; i < 4; i++) {
		make_id(ids[i], 3, 9, i);
		evs[i] = text_event("Durable", "d", ids[i]);
	}
	append_text(c, "noise", "T", "n", NULL);
	struct wb_append_result first, again;
	cr_assert_eq(wb_append(c, "keep", WB_EXPECT_ANY, 0, evs, 3, &first), 0, "%s", wb_errmsg(c));
	uint64_t count = count_all(c);
	e2e_suite_stop_client(c);

	e2e_suite_restart();
	c = e2e_suite_client("test_e2e");
	cr_assert_eq(wb_append(c, "keep", WB_EXPECT_ANY, 0, evs, 3, &again), 0, "%s", wb_errmsg(c));
	cr_assert_eq(again.idempotent_replay, true);
	cr_assert_eq(again.first_position, first.first_position);
	cr_assert_eq(again.last_position, first.last_position);
	cr_assert_eq(again.stream_version, first.stream_version);
	cr_assert_eq(count_all(c), count);

	/* Conflicts are still recognised after the restart. */
	int rc = wb_append(c, "keep", WB_EXPECT_ANY, 0, evs, 4, &again);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "stored+new after restart: %s",
	             wb_error_name(rc));
	rc = wb_append(c, "elsewhere", WB_EXPECT_ANY, 0, &evs[1], 1, &again);
	cr_assert_eq(rc, WB_IDEMPOTENCY_CONFLICT, "other stream after restart: %s",
	             wb_error_name(rc));
	cr_assert_eq(count_all(c), count);
	e2e_suite_stop_client(c);
}

Test(e2e, generated_ids_are_distinct_uuidv7)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	enum { N = 50 };
	struct wb_new_event evs[N];
	for (int i = 0; i < N; i++)
		evs[i] = text_event("Gen", "g", NULL);
	uint64_t t0 = e2e_wall_us() / 1000;
	struct wb_append_result r;
	cr_assert_eq(wb_append(c, "gen", WB_EXPECT_ANY, 0, evs, N, &r), 0, "%s", wb_errmsg(c));
	cr_assert_eq(wb_append(c, "gen", WB_EXPECT_ANY, 0, evs, N, &r), 0, "%s", wb_errmsg(c));
	uint64_t t1 = e2e_wall_us() / 1000;
	struct e2e_event *all;
	size_t n;
	cr_assert_eq(e2e_read_stream(c, "gen", 0, &all, &n), 0);
	cr_assert_eq(n, 2 * N);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *id = all[i].id;
		cr_assert_eq(id[6] >> 4, 7, "event %zu: version nibble %d", i, id[6] >> 4);
		cr_assert_eq(id[8] & 0xc0, 0x80, "event %zu: variant bits %02x", i, id[8]);
		uint64_t ms = 0;
		for (int k = 0; k < 6; k++)
			ms = ms << 8 | id[k];
		cr_assert(ms + 5000 >= t0 && ms <= t1 + 5000,
		          "event %zu: UUIDv7 time %llu ms is not near the append (%llu..%llu)", i,
		          (unsigned long long)ms, (unsigned long long)t0, (unsigned long long)t1);
		for (size_t j = 0; j < i; j++)
			cr_assert_neq(memcmp(all[j].id, id, 16), 0,
			              "events %zu and %zu share an id", j, i);
	}
	e2e_events_free(all, n);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- reading a stream */

enum { BIG = 2500, BIG_BATCH = 500 };

/* big's version v sits after v / 500 events of "other". */
static uint64_t big_position(uint64_t v)
{
	return v + v / BIG_BATCH + 1;
}

static void check_big_event(const struct wb_event *e, uint64_t v)
{
	char want[32];
	snprintf(want, sizeof(want), "big-%05llu", (unsigned long long)v);
	cr_assert_eq(e->version, v, "version %llu, want %llu", (unsigned long long)e->version,
	             (unsigned long long)v);
	cr_assert_eq(e->position, big_position(v), "version %llu at position %llu",
	             (unsigned long long)v, (unsigned long long)e->position);
	cr_assert_str_eq(e->stream, "big");
	cr_assert_eq(e->data_len, strlen(want));
	cr_assert_eq(memcmp(e->data, want, e->data_len), 0);
}

static void fill_big(struct wb_client *c)
{
	static char text[BIG][16];
	static struct wb_new_event evs[BIG_BATCH];
	for (uint64_t base = 0; base < BIG; base += BIG_BATCH) {
		for (uint64_t i = 0; i < BIG_BATCH; i++) {
			snprintf(text[base + i], sizeof(text[0]), "big-%05llu",
			         (unsigned long long)(base + i));
			evs[i] = text_event("Big", text[base + i], NULL);
		}
		struct wb_append_result r;
		cr_assert_eq(wb_append(c, "big", WB_EXPECT_ANY, 0, evs, BIG_BATCH, &r), 0, "%s",
		             wb_errmsg(c));
		cr_assert_eq(r.first_position, big_position(base));
		append_text(c, "other", "Other", "o", NULL);
	}
}

Test(e2e, read_stream_pages_both_ways)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	fill_big(c);
	uint32_t limit = wb_server_info(c)->max_read_count;
	cr_assert_eq(limit, 1000);
	struct wb_page p;

	/* max_count 0 and above the limit both read the server's limit. */
	const uint32_t asks[] = {0, 5000, UINT32_MAX};
	for (size_t k = 0; k < 3; k++) {
		cr_assert_eq(wb_read_stream(c, "big", 0, false, asks[k], &p), 0);
		cr_assert_eq(p.count, limit, "max_count %u read %zu", asks[k], p.count);
		cr_assert_eq(p.next, limit);
		cr_assert_eq(p.end, false);
		cr_assert_eq(p.last, BIG - 1);
		for (size_t i = 0; i < p.count; i++)
			check_big_event(&p.events[i], i);
		wb_page_free(&p);
	}

	/* Forwards in pages of 700 until the end. */
	uint64_t from = 0, seen = 0;
	int pages = 0;
	for (;;) {
		cr_assert_eq(wb_read_stream(c, "big", from, false, 700, &p), 0);
		cr_assert(pages++ < 10, "forward paging does not end");
		for (size_t i = 0; i < p.count; i++)
			check_big_event(&p.events[i], seen++);
		from = p.next;
		bool end = p.end;
		if (!end)
			cr_assert_eq(p.count, 700);
		wb_page_free(&p);
		if (end)
			break;
	}
	cr_assert_eq(seen, BIG);
	cr_assert_eq(pages, 4);

	/* Backwards from the end, with the server's limit. */
	cr_assert_eq(wb_read_stream(c, "big", WB_END, true, 0, &p), 0);
	cr_assert_eq(p.count, limit);
	for (size_t i = 0; i < p.count; i++)
		check_big_event(&p.events[i], BIG - 1 - i);
	cr_assert_eq(p.next, BIG - 1 - limit);
	cr_assert_eq(p.end, false);
	wb_page_free(&p);

	/* Backwards in pages of 900 until the end. */
	from = WB_END;
	seen = 0;
	pages = 0;
	for (;;) {
		cr_assert_eq(wb_read_stream(c, "big", from, true, 900, &p), 0);
		cr_assert(pages++ < 10, "backward paging does not end");
		for (size_t i = 0; i < p.count; i++)
			check_big_event(&p.events[i], BIG - 1 - seen++);
		from = p.next;
		bool end = p.end;
		wb_page_free(&p);
		if (end)
			break;
	}
	cr_assert_eq(seen, BIG);

	/* Middles and edges. */
	cr_assert_eq(wb_read_stream(c, "big", 2400, false, 0, &p), 0);
	cr_assert_eq(p.count, 100);
	cr_assert_eq(p.end, true);
	check_big_event(&p.events[0], 2400);
	wb_page_free(&p);
	cr_assert_eq(wb_read_stream(c, "big", 50, true, 10, &p), 0);
	cr_assert_eq(p.count, 10);
	check_big_event(&p.events[0], 50);
	check_big_event(&p.events[9], 41);
	cr_assert_eq(p.next, 40);
	wb_page_free(&p);
	cr_assert_eq(wb_read_stream(c, "big", BIG, false, 0, &p), 0);
	expect_last_page(&p, 0);
	cr_assert_eq(wb_read_stream(c, "big", 0, true, 0, &p), 0);
	cr_assert_eq(p.count, 1);
	check_big_event(&p.events[0], 0);
	cr_assert_eq(p.end, true);
	wb_page_free(&p);
	cr_assert_eq(wb_read_stream(c, "big", BIG - 1, false, 5, &p), 0);
	expect_last_page(&p, 1);
	e2e_suite_stop_client(c);
}

Test(e2e, missing_stream_is_not_found)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	append_text(c, "present", "T", "x", NULL);
	struct wb_page p;
	int rc = wb_read_stream(c, "absent", 0, false, 0, &p);
	cr_assert_eq(rc, WB_NOT_FOUND, "read: %s", wb_error_name(rc));
	cr_assert_neq(wb_errmsg(c)[0], '\0');
	rc = wb_read_stream(c, "absent", WB_END, true, 0, &p);
	cr_assert_eq(rc, WB_NOT_FOUND, "read backwards: %s", wb_error_name(rc));
	struct wb_stream_info si;
	rc = wb_stream_info(c, "absent", &si);
	cr_assert_eq(rc, WB_NOT_FOUND, "stream-info: %s", wb_error_name(rc));
	/* A prefix of a stream is not that stream. */
	rc = wb_read_stream(c, "presen", 0, false, 0, &p);
	cr_assert_eq(rc, WB_NOT_FOUND, "prefix: %s", wb_error_name(rc));
	/* The client is still usable. */
	cr_assert_eq(wb_ping(c), 0);
	e2e_suite_stop_client(c);
}

Test(e2e, stream_info_fields)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	uint64_t t0 = e2e_wall_us();
	append_text(c, "x", "T", "x", NULL);
	struct wb_append_result r1, r2;
	append_text(c, "info", "T", "1", &r1);
	append_text(c, "x", "T", "x", NULL);
	struct wb_new_event evs[2] = {text_event("T", "2", NULL), text_event("T", "3", NULL)};
	struct wb_stream_info a, b;
	cr_assert_eq(wb_stream_info(c, "info", &a), 0);
	expect_info(&a, 0, 1, 2, 2);
	cr_assert_eq(a.created_us, a.updated_us);
	e2e_sleep_ms(5); /* so that updated_us can differ */
	cr_assert_eq(wb_append(c, "info", WB_EXPECT_EXACT, 0, evs, 2, &r2), 0, "%s", wb_errmsg(c));
	uint64_t t1 = e2e_wall_us();
	cr_assert_eq(wb_stream_info(c, "info", &b), 0);
	expect_info(&b, 2, 3, 2, 5);
	cr_assert_eq(b.created_us, a.created_us);
	cr_assert(b.updated_us > a.updated_us, "updated_us did not move (%llu)",
	          (unsigned long long)b.updated_us);
	cr_assert(b.created_us + 5000000 >= t0 && b.updated_us <= t1 + 5000000,
	          "times %llu..%llu are not near the test's %llu..%llu",
	          (unsigned long long)b.created_us, (unsigned long long)b.updated_us,
	          (unsigned long long)t0, (unsigned long long)t1);
	/* Event timestamps are the commit times. */
	struct wb_page p;
	cr_assert_eq(wb_read_stream(c, "info", 0, false, 0, &p), 0);
	cr_assert_eq(p.count, 3);
	cr_assert_eq(p.events[0].timestamp_us, a.created_us);
	cr_assert_eq(p.events[2].timestamp_us, b.updated_us);
	wb_page_free(&p);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- reading $all */

struct spec {
	const char *stream;
	const char *type;
};

static const struct spec all_specs[] = {
        {"order-1", "Created"}, {"order-2", "Created"},   {"user-1", "Created"},
        {"order-1", "Updated"}, {"orderbook", "Created"}, {"order-2", "Deleted"},
        {"user-1", "Renamed"},  {"order-1", "Updated"},   {"order-10", "Created"},
};
#define NSPECS (sizeof(all_specs) / sizeof(all_specs[0]))
enum { ALL_ROUNDS = 12 };

static bool spec_matches(const struct spec *s, const char *prefix, const char *const *types,
                         size_t ntypes)
{
	if (prefix != NULL && strncmp(s->stream, prefix, strlen(prefix)) != 0)
		return false;
	if (ntypes == 0)
		return true;
	for (size_t i = 0; i < ntypes; i++)
		if (strcmp(s->type, types[i]) == 0)
			return true;
	return false;
}

/* Position p (from 1) holds all_specs[(p - 1) % NSPECS]. */
static void check_filtered(struct wb_client *c, const char *prefix, const char *const *types,
                           size_t ntypes, uint32_t page, bool backwards)
{
	uint64_t total = NSPECS * ALL_ROUNDS;
	uint64_t want[NSPECS * ALL_ROUNDS];
	size_t nwant = 0;
	for (uint64_t p = 1; p <= total; p++)
		if (spec_matches(&all_specs[(p - 1) % NSPECS], prefix, types, ntypes))
			want[nwant++] = p;
	size_t got = 0;
	uint64_t from = backwards ? WB_END : 1;
	for (int pages = 0;; pages++) {
		cr_assert(pages < 1000, "paging does not end");
		struct wb_page pg;
		int rc = wb_read_all(c, from, backwards, page, prefix, types, ntypes, &pg);
		cr_assert_eq(rc, 0, "read-all: %s: %s", wb_error_name(rc), wb_errmsg(c));
		cr_assert(pg.count <= (page == 0 ? 1000 : page));
		cr_assert_eq(pg.last, total);
		for (size_t i = 0; i < pg.count; i++) {
			const struct wb_event *e = &pg.events[i];
			cr_assert(got < nwant, "more events than match (prefix %s, page %u)",
			          prefix != NULL ? prefix : "-", page);
			uint64_t p = backwards ? want[nwant - 1 - got] : want[got];
			const struct spec *s = &all_specs[(p - 1) % NSPECS];
			cr_assert_eq(e->position, p, "position %llu, want %llu",
			             (unsigned long long)e->position, (unsigned long long)p);
			cr_assert_str_eq(e->stream, s->stream);
			cr_assert_str_eq(e->type, s->type);
			got++;
		}
		from = pg.next;
		bool end = pg.end;
		wb_page_free(&pg);
		if (end)
			break;
	}
	cr_assert_eq(got, nwant,
	             "read %zu of %zu matching events (prefix %s, %zu types, page %u, "
	             "%s)",
	             got, nwant, prefix != NULL ? prefix : "-", ntypes, page,
	             backwards ? "backwards" : "forwards");
}

Test(e2e, read_all_directions_filters_and_paging)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	for (int r = 0; r < ALL_ROUNDS; r++)
		for (size_t i = 0; i < NSPECS; i++) {
			char text[32];
			snprintf(text, sizeof(text), "%d/%zu", r, i);
			struct wb_append_result res;
			append_text(c, all_specs[i].stream, all_specs[i].type, text, &res);
			cr_assert_eq(res.first_position, (uint64_t)r * NSPECS + i + 1);
		}
	const char *created[] = {"Created"};
	const char *two[] = {"Updated", "Deleted"};
	const char *none[] = {"NoSuchType"};
	const uint32_t pages[] = {0, 1, 7};
	for (size_t k = 0; k < 3; k++) {
		for (int back = 0; back < 2; back++) {
			check_filtered(c, NULL, NULL, 0, pages[k], back);
			check_filtered(c, "order-", NULL, 0, pages[k], back);
			check_filtered(c, "order", NULL, 0, pages[k], back);
			check_filtered(c, "order-1", NULL, 0, pages[k], back);
			check_filtered(c, NULL, created, 1, pages[k], back);
			check_filtered(c, NULL, two, 2, pages[k], back);
			check_filtered(c, "order-", two, 2, pages[k], back);
			check_filtered(c, "user-", created, 1, pages[k], back);
			check_filtered(c, "nobody", NULL, 0, pages[k], back);
			check_filtered(c, NULL, none, 1, pages[k], back);
		}
	}

	/* From a position in the middle, both ways. */
	struct wb_page p;
	cr_assert_eq(wb_read_all(c, 10, false, 3, NULL, NULL, 0, &p), 0);
	cr_assert_eq(p.count, 3);
	cr_assert_eq(p.events[0].position, 10);
	cr_assert_eq(p.next, 13);
	wb_page_free(&p);
	cr_assert_eq(wb_read_all(c, 10, true, 3, NULL, NULL, 0, &p), 0);
	cr_assert_eq(p.count, 3);
	cr_assert_eq(p.events[0].position, 10);
	cr_assert_eq(p.events[2].position, 8);
	cr_assert_eq(p.next, 7);
	wb_page_free(&p);
	/* Past the end forwards: nothing, and the end. */
	cr_assert_eq(wb_read_all(c, NSPECS * ALL_ROUNDS + 1, false, 0, NULL, NULL, 0, &p), 0);
	expect_last_page(&p, 0);
	e2e_suite_stop_client(c);
}

Test(e2e, read_all_empty_log)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	struct wb_page p;
	cr_assert_eq(wb_read_all(c, 0, false, 0, NULL, NULL, 0, &p), 0, "%s", wb_errmsg(c));
	cr_assert_eq(p.count, 0);
	cr_assert_eq(p.end, true);
	cr_assert_eq(p.last, 0);
	wb_page_free(&p);
	cr_assert_eq(wb_read_all(c, WB_END, true, 0, NULL, NULL, 0, &p), 0, "%s", wb_errmsg(c));
	expect_last_page(&p, 0);
	e2e_suite_stop_client(c);
}

/* A rare type behind more events than one filtered page examines: paging
 * must still reach it, and reach the end. */
Test(e2e, read_all_filter_pages_through_a_long_log)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	append_text(c, "rare", "Rare", "first", NULL);
	enum { NOISE = 12000, CHUNK = 1000 };
	static struct wb_new_event evs[CHUNK];
	for (int i = 0; i < CHUNK; i++)
		evs[i] = text_event("Noise", "n", NULL);
	for (int k = 0; k < NOISE / CHUNK; k++) {
		struct wb_append_result r;
		cr_assert_eq(wb_append(c, "noise", WB_EXPECT_ANY, 0, evs, CHUNK, &r), 0, "%s",
		             wb_errmsg(c));
	}
	append_text(c, "rare", "Rare", "last", NULL);
	const char *rare[] = {"Rare"};
	for (int back = 0; back < 2; back++) {
		uint64_t from = back ? WB_END : 1;
		uint64_t found[2];
		size_t nfound = 0;
		int pages = 0;
		for (;;) {
			struct wb_page p;
			cr_assert(pages++ < 100, "filtered paging does not end");
			cr_assert_eq(wb_read_all(c, from, back, 0, NULL, rare, 1, &p), 0, "%s",
			             wb_errmsg(c));
			for (size_t i = 0; i < p.count; i++) {
				cr_assert(nfound < 2, "too many Rare events");
				found[nfound++] = p.events[i].position;
			}
			bool end = p.end;
			cr_assert(end || p.next != from || p.count > 0, "page does not advance");
			from = p.next;
			wb_page_free(&p);
			if (end)
				break;
		}
		cr_assert_eq(nfound, 2, "found %zu Rare events (%s)", nfound,
		             back ? "backwards" : "forwards");
		cr_assert_eq(found[back ? 1 : 0], 1);
		cr_assert_eq(found[back ? 0 : 1], NOISE + 2);
	}
	cr_assert_eq(count_all(c), NOISE + 2);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- data */

Test(e2e, data_and_metadata_round_trip)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	uint8_t bin[256], meta[300];
	for (int i = 0; i < 256; i++)
		bin[i] = (uint8_t)i;
	for (int i = 0; i < 300; i++)
		meta[i] = (uint8_t)(255 - i % 256);
	struct wb_new_event evs[4] = {
	        {.type = "Bin",
	         .data = bin,
	         .data_len = 256,
	         .metadata = meta,
	         .metadata_len = 300},
	        {.type = "Empty", .data = NULL, .data_len = 0, .metadata = NULL, .metadata_len = 0},
	        {.type = "Nul",
	         .data = "\0\0\0",
	         .data_len = 3,
	         .metadata = "\0",
	         .metadata_len = 1},
	        {.type = "ünïcödé ✓",
	         .data = "text",
	         .data_len = 4,
	         .metadata = "{\"k\":1}",
	         .metadata_len = 7},
	};
	struct wb_append_result r;
	cr_assert_eq(wb_append(c, "bytes/ストリーム", WB_EXPECT_ANY, 0, evs, 4, &r), 0, "%s",
	             wb_errmsg(c));
	struct wb_page p;
	cr_assert_eq(wb_read_stream(c, "bytes/ストリーム", 0, false, 0, &p), 0, "%s", wb_errmsg(c));
	cr_assert_eq(p.count, 4);
	for (size_t i = 0; i < 4; i++) {
		cr_assert_str_eq(p.events[i].type, evs[i].type);
		cr_assert_str_eq(p.events[i].stream, "bytes/ストリーム");
		cr_assert_eq(p.events[i].data_len, evs[i].data_len, "event %zu data length", i);
		cr_assert_eq(p.events[i].metadata_len, evs[i].metadata_len);
		if (evs[i].data_len > 0)
			cr_assert_eq(memcmp(p.events[i].data, evs[i].data, evs[i].data_len), 0,
			             "event %zu data differs", i);
		if (evs[i].metadata_len > 0)
			cr_assert_eq(
			        memcmp(p.events[i].metadata, evs[i].metadata, evs[i].metadata_len),
			        0, "event %zu metadata differs", i);
	}
	wb_page_free(&p);
	e2e_suite_stop_client(c);
}

/* An event of exactly max_event_size is stored and read back byte for byte;
 * one byte more is refused and the connection stays usable. */
static void near_max_event(void)
{
	struct wb_client *c = e2e_suite_client("test_e2e");
	const struct wb_server_info *info = wb_server_info(c);
	const char *stream = "large";
	const char *type = "Large";
	size_t meta_len = 100;
	size_t size = info->max_event_size;
	size_t data_len = size - strlen(stream) - strlen(type) - meta_len;
	uint8_t *data = malloc(data_len + 1);
	uint8_t meta[100];
	cr_assert_not_null(data);
	for (size_t i = 0; i <= data_len; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 8));
	memset(meta, 0xab, sizeof(meta));
	struct wb_new_event e = {.type = type,
	                         .data = data,
	                         .data_len = data_len,
	                         .metadata = meta,
	                         .metadata_len = meta_len};
	struct wb_append_result r;
	int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, &e, 1, &r);
	cr_assert_eq(rc, 0, "an event of max_event_size (%zu) bytes: %s: %s", size,
	             wb_error_name(rc), wb_errmsg(c));
	e.data_len = data_len + 1;
	rc = wb_append(c, stream, WB_EXPECT_ANY, 0, &e, 1, &r);
	cr_assert_eq(rc, WB_BAD_REQUEST, "an event one byte over max_event_size: %s: %s",
	             wb_error_name(rc), wb_errmsg(c));
	cr_assert_eq(wb_ping(c), 0, "client unusable after the refusal: %s", wb_errmsg(c));

	struct wb_page p;
	cr_assert_eq(wb_read_stream(c, stream, 0, false, 0, &p), 0, "%s", wb_errmsg(c));
	cr_assert_eq(p.count, 1, "the refused event was stored");
	cr_assert_eq(p.events[0].data_len, data_len);
	cr_assert_eq(memcmp(p.events[0].data, data, data_len), 0, "large data differs");
	cr_assert_eq(p.events[0].metadata_len, meta_len);
	cr_assert_eq(memcmp(p.events[0].metadata, meta, meta_len), 0);
	wb_page_free(&p);

	/* A request above max_frame is refused by the library before it is
	 * sent; the client stays usable. */
	uint8_t *huge = calloc(info->max_frame + 1, 1);
	cr_assert_not_null(huge);
	e.data = huge;
	e.data_len = info->max_frame + 1;
	rc = wb_append(c, stream, WB_EXPECT_ANY, 0, &e, 1, &r);
	cr_assert_eq(rc, WB_FRAME_TOO_LARGE, "%s", wb_error_name(rc));
	cr_assert_eq(wb_ping(c), 0, "client unusable after a local refusal: %s", wb_errmsg(c));
	free(huge);
	free(data);
	wb_close(c);
}

Test(e2e, event_near_max_size_default_frame)
{
	e2e_suite_start(NULL);
	near_max_event();
	e2e_suite_stop();
}

Test(e2e, event_near_max_size_small_frame)
{
	const char *args[] = {"--max-frame", "64K", NULL};
	e2e_suite_start(args);
	near_max_event();
	e2e_suite_stop();
}

/* ---------------------------------------------------------------- concurrency */

enum { THREADS = 8, PER_THREAD = 150, WINDOW = 16, SHARED = 4 };

struct ack {
	uint32_t thread, seq, n;
	char stream[16];
	uint64_t first, last, version;
};

struct worker {
	pthread_t tid;
	const char *address;
	uint32_t index;
	struct ack acks[PER_THREAD];
	size_t nacks;
	char err[512]; /* the first failure, "" if none */
};

static void work_event(uint32_t t, uint32_t s, uint32_t i, uint8_t id[16], char *text, size_t len)
{
	make_id(id, (uint8_t)(0x40 + t), s, i);
	snprintf(text, len, "t%u-s%u-i%u", t, s, i);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct wb_options opts = {.client_name = "worker", .timeout_ms = E2E_CLIENT_TIMEOUT_MS};
	struct wb_client *c = NULL;
	char msg[256];
	int rc = wb_connect(&c, w->address, &opts, msg, sizeof(msg));
	if (rc != 0) {
		snprintf(w->err, sizeof(w->err), "connect: %s", msg);
		return NULL;
	}
	uint64_t slot_id[WINDOW];
	uint32_t slot_seq[WINDOW];
	size_t inflight = 0;
	uint32_t next = 0;
	while (next < PER_THREAD || inflight > 0) {
		while (next < PER_THREAD && inflight < WINDOW) {
			uint32_t n = 1 + next % 3;
			uint8_t ids[3][16];
			char text[3][32];
			struct wb_new_event evs[3];
			for (uint32_t i = 0; i < n; i++) {
				work_event(w->index, next, i, ids[i], text[i], sizeof(text[i]));
				evs[i] = text_event("Work", text[i], ids[i]);
			}
			char stream[16];
			snprintf(stream, sizeof(stream), "shared-%u",
			         (next * 7 + w->index) % SHARED);
			rc = wb_append_send(c, stream, WB_EXPECT_ANY, 0, evs, n,
			                    &slot_id[inflight]);
			if (rc != 0) {
				snprintf(w->err, sizeof(w->err), "send: %s", wb_errmsg(c));
				goto out;
			}
			slot_seq[inflight++] = next++;
		}
		Whizbang__V1__Response *r;
		rc = wb_recv(c, &r);
		if (rc != 0) {
			snprintf(w->err, sizeof(w->err), "recv: %s", wb_errmsg(c));
			goto out;
		}
		size_t k = 0;
		while (k < inflight && slot_id[k] != r->id)
			k++;
		if (k == inflight || e2e_error_code(r) != 0 ||
		    r->body_case != WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS) {
			snprintf(w->err, sizeof(w->err), "response %llu: slot %zu/%zu error %s",
			         (unsigned long long)r->id, k, inflight,
			         r->error != NULL ? r->error->message : "-");
			whizbang__v1__response__free_unpacked(r, NULL);
			goto out;
		}
		struct ack *a = &w->acks[w->nacks++];
		a->thread = w->index;
		a->seq = slot_seq[k];
		a->n = 1 + a->seq % 3;
		snprintf(a->stream, sizeof(a->stream), "shared-%u",
		         (a->seq * 7 + w->index) % SHARED);
		a->first = r->append_events->first_position;
		a->last = r->append_events->last_position;
		a->version = r->append_events->stream_version;
		whizbang__v1__response__free_unpacked(r, NULL);
		slot_id[k] = slot_id[inflight - 1];
		slot_seq[k] = slot_seq[inflight - 1];
		inflight--;
	}
out:
	wb_close(c);
	return NULL;
}

static int cmp_ack(const void *a, const void *b)
{
	const struct ack *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

Test(e2e, concurrent_pipelined_appends_have_no_gaps)
{
	e2e_suite_start(NULL);
	static struct worker ws[THREADS];
	for (uint32_t t = 0; t < THREADS; t++) {
		memset(&ws[t], 0, sizeof(ws[t]));
		ws[t].address = e2e_srv.address;
		ws[t].index = t;
		cr_assert_eq(pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]), 0);
	}
	for (uint32_t t = 0; t < THREADS; t++)
		pthread_join(ws[t].tid, NULL);
	static struct ack acks[THREADS * PER_THREAD];
	size_t nacks = 0;
	uint64_t total = 0;
	for (uint32_t t = 0; t < THREADS; t++) {
		cr_assert_eq(ws[t].err[0], '\0', "worker %u: %s", t, ws[t].err);
		cr_assert_eq(ws[t].nacks, PER_THREAD);
		for (size_t i = 0; i < ws[t].nacks; i++) {
			acks[nacks++] = ws[t].acks[i];
			total += ws[t].acks[i].n;
		}
	}
	/* Acknowledged ranges tile 1..total. */
	qsort(acks, nacks, sizeof(acks[0]), cmp_ack);
	uint64_t expect = 1;
	for (size_t i = 0; i < nacks; i++) {
		cr_assert_eq(acks[i].first, expect, "append at %llu, expected %llu",
		             (unsigned long long)acks[i].first, (unsigned long long)expect);
		cr_assert_eq(acks[i].last, acks[i].first + acks[i].n - 1);
		expect = acks[i].last + 1;
	}
	cr_assert_eq(expect, total + 1);

	struct wb_client *c = e2e_suite_client("test_e2e");
	struct e2e_event *all;
	size_t n;
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &all, &n), 0);
	cr_assert_eq(n, total);
	for (size_t i = 0; i < nacks; i++) {
		const struct ack *a = &acks[i];
		for (uint32_t k = 0; k < a->n; k++) {
			const struct e2e_event *e = &all[a->first - 1 + k];
			uint8_t id[16];
			char text[32];
			work_event(a->thread, a->seq, k, id, text, sizeof(text));
			cr_assert_eq(e->position, a->first + k);
			cr_assert_eq(memcmp(e->id, id, 16), 0, "wrong id at position %llu",
			             (unsigned long long)e->position);
			cr_assert_str_eq(e->stream, a->stream);
			cr_assert_eq(e->version, a->version - (a->n - 1) + k);
			cr_assert_eq(e->data_len, strlen(text));
			cr_assert_eq(memcmp(e->data, text, e->data_len), 0);
		}
	}
	/* Each stream's versions run 0..k-1 in position order. */
	size_t sum = 0;
	for (int s = 0; s < SHARED; s++) {
		char name[16];
		snprintf(name, sizeof(name), "shared-%d", s);
		struct e2e_event *se;
		size_t sn;
		cr_assert_eq(e2e_read_stream(c, name, 0, &se, &sn), 0);
		for (size_t i = 0; i < sn; i++) {
			cr_assert_eq(se[i].version, i, "%s: version %llu at index %zu", name,
			             (unsigned long long)se[i].version, i);
			if (i > 0)
				cr_assert(se[i].position > se[i - 1].position);
			cr_assert_eq(memcmp(se[i].id, all[se[i].position - 1].id, 16), 0);
		}
		sum += sn;
		e2e_events_free(se, sn);
	}
	cr_assert_eq(sum, total);
	e2e_events_free(all, n);
	Whizbang__V1__ServerStats *st = stats(c);
	cr_assert_eq(st->last_position, total);
	cr_assert(st->batches > 0 && st->batch_requests >= THREADS * PER_THREAD);
	wb_stats_free(st);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- the map grows */

/* Reads $all page after page while the map grows under it. */
struct grow_reader {
	pthread_t tid;
	const char *address;
	atomic_bool done;
	uint64_t reads;
	char err[512];
};

static void *grow_reader_main(void *arg)
{
	struct grow_reader *g = arg;
	struct wb_options opts = {.client_name = "reader", .timeout_ms = E2E_CLIENT_TIMEOUT_MS};
	struct wb_client *c = NULL;
	char msg[256];
	if (wb_connect(&c, g->address, &opts, msg, sizeof(msg)) != 0) {
		snprintf(g->err, sizeof(g->err), "connect: %s", msg);
		return NULL;
	}
	uint64_t from = 1;
	while (!atomic_load(&g->done)) {
		struct wb_page p;
		int rc = wb_read_all(c, from, false, 50, NULL, NULL, 0, &p);
		if (rc != 0) {
			snprintf(g->err, sizeof(g->err), "read-all from %llu: %s: %s",
			         (unsigned long long)from, wb_error_name(rc), wb_errmsg(c));
			break;
		}
		for (size_t i = 0; i < p.count; i++)
			if (p.events[i].position != from + i) {
				snprintf(g->err, sizeof(g->err), "position %llu at %llu",
				         (unsigned long long)p.events[i].position,
				         (unsigned long long)(from + i));
				break;
			}
		from = p.end ? 1 : p.next;
		wb_page_free(&p);
		g->reads++;
		if (g->err[0] != '\0')
			break;
	}
	wb_close(c);
	return NULL;
}

Test(e2e, tiny_map_grows)
{
	const char *args[] = {"--map-size", "1M", NULL};
	struct wb_client *c = e2e_suite_start_client(args, "test_e2e");
	static struct grow_reader reader;
	memset(&reader, 0, sizeof(reader));
	reader.address = e2e_srv.address;
	atomic_init(&reader.done, false);
	cr_assert_eq(pthread_create(&reader.tid, NULL, grow_reader_main, &reader), 0);
	enum { APPENDS = 80, PER = 10, SIZE = 4096 };
	static uint8_t data[SIZE];
	struct wb_new_event evs[PER];
	for (int a = 0; a < APPENDS; a++) {
		for (int i = 0; i < PER; i++)
			evs[i] = (struct wb_new_event){
			        .type = "Fill", .data = data, .data_len = SIZE};
		memset(data, a, sizeof(data));
		struct wb_append_result r;
		int rc = wb_append(c, "fill", WB_EXPECT_ANY, 0, evs, PER, &r);
		cr_assert_eq(rc, 0, "append %d of %d bytes into a 1 MiB map: %s: %s", a, PER * SIZE,
		             wb_error_name(rc), wb_errmsg(c));
		cr_assert_eq(r.first_position, (uint64_t)a * PER + 1);
	}
	atomic_store(&reader.done, true);
	pthread_join(reader.tid, NULL);
	cr_assert_eq(reader.err[0], '\0', "reader during the growth: %s", reader.err);
	cr_assert(reader.reads > 0);
	Whizbang__V1__ServerStats *st = stats(c);
	cr_assert(st->map_grow_count > 0, "map_grow_count is 0 after %d bytes",
	          APPENDS * PER * SIZE);
	cr_assert(st->map_size > (1u << 20), "map_size %llu", (unsigned long long)st->map_size);
	cr_assert(st->map_used <= st->map_size);
	wb_stats_free(st);
	for (int round = 0; round < 2; round++) {
		struct e2e_event *all;
		size_t n;
		cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &all, &n), 0, "%s", wb_errmsg(c));
		cr_assert_eq(n, APPENDS * PER);
		for (size_t i = 0; i < n; i++) {
			cr_assert_eq(all[i].data_len, SIZE);
			uint8_t want = (uint8_t)(i / PER);
			cr_assert_eq(all[i].data[0], want);
			cr_assert_eq(all[i].data[SIZE - 1], want);
		}
		e2e_events_free(all, n);
		if (round == 0) {
			/* The grown map reopens, with everything in it. */
			wb_close(c);
			e2e_suite_stop();
			e2e_suite_restart();
			c = e2e_suite_client("test_e2e");
		}
	}
	struct wb_append_result r;
	append_text(c, "fill", "Fill", "more", &r);
	cr_assert_eq(r.first_position, APPENDS * PER + 1);
	e2e_suite_stop_client(c);
}

/* One event larger than the whole initial map. */
Test(e2e, tiny_map_takes_an_event_larger_than_itself)
{
	const char *args[] = {"--map-size", "1M", NULL};
	e2e_suite_start(args);
	near_max_event();
	struct wb_client *c = e2e_suite_client("test_e2e");
	Whizbang__V1__ServerStats *st = stats(c);
	cr_assert(st->map_grow_count > 0);
	cr_assert(st->map_size > (4u << 20), "map_size %llu", (unsigned long long)st->map_size);
	wb_stats_free(st);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- shutdown */

Test(e2e, sigterm_exits_0_and_data_survives)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	for (int i = 0; i < 20; i++) {
		char text[32];
		snprintf(text, sizeof(text), "v%d", i);
		append_text(c, i % 2 ? "odd" : "even", "T", text, NULL);
	}
	e2e_suite_stop_client(c);
	cr_assert_eq(e2e_log_count(&e2e_srv, "level=error"), 0, "errors in the server log");
	e2e_suite_restart();
	c = e2e_suite_client("test_e2e");
	struct e2e_event *all;
	size_t n;
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &all, &n), 0);
	cr_assert_eq(n, 20);
	for (size_t i = 0; i < n; i++) {
		char text[32];
		snprintf(text, sizeof(text), "v%zu", i);
		cr_assert_str_eq(all[i].stream, i % 2 ? "odd" : "even");
		cr_assert_eq(all[i].version, i / 2);
		cr_assert_eq(all[i].data_len, strlen(text));
		cr_assert_eq(memcmp(all[i].data, text, strlen(text)), 0);
	}
	e2e_events_free(all, n);
	struct wb_append_result r;
	append_text(c, "even", "T", "next", &r);
	cr_assert_eq(r.first_position, 21);
	cr_assert_eq(r.stream_version, 10);
	e2e_suite_stop_client(c);
}

/* Connected clients, idle or halfway through a frame, do not hold a
 * shutdown up; SIGINT does what SIGTERM does. */
Test(e2e, shutdown_with_clients_connected)
{
	for (int sig = 0; sig < 2; sig++) {
		if (sig == 0)
			e2e_suite_start(NULL);
		else
			e2e_suite_restart();
		struct wb_client *idle[3];
		for (int i = 0; i < 3; i++)
			idle[i] = e2e_suite_client("test_e2e");
		append_text(idle[0], "s", "T", "x", NULL);
		int fd = e2e_suite_raw_hello();
		const uint8_t half[] = {0, 0, 0, 50, 0x08};
		cr_assert_eq(e2e_send_all(fd, half, sizeof(half), 5000), 0);
		int64_t t0 = e2e_now_ms();
		if (sig == 0) {
			e2e_suite_stop();
		} else {
			kill(e2e_srv.pid, SIGINT);
			e2e_suite_wait_exit();
		}
		cr_assert_lt(e2e_now_ms() - t0, 5000, "shutdown took %lld ms",
		             (long long)(e2e_now_ms() - t0));
		cr_assert(e2e_wait_closed(fd, 1000), "a connection outlived the server");
		close(fd);
		for (int i = 0; i < 3; i++) {
			cr_assert_neq(wb_ping(idle[i]), 0, "ping after the shutdown");
			wb_close(idle[i]);
		}
	}
	e2e_suite_restart();
	struct wb_client *c = e2e_suite_client("test_e2e");
	cr_assert_eq(count_all(c), 2);
	e2e_suite_stop_client(c);
}

/* SIGTERM with appends in flight: those answered are durable; those refused
 * with SHUTTING_DOWN are not stored; the server exits 0. */
Test(e2e, sigterm_with_appends_in_flight)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	enum { N = 2000 };
	uint8_t ids[N][16];
	uint64_t req_ids[N];
	for (uint32_t i = 0; i < N; i++) {
		make_id(ids[i], 5, i, 0);
		struct wb_new_event e = text_event("Late", "l", ids[i]);
		cr_assert_eq(wb_append_send(c, "late", WB_EXPECT_ANY, 0, &e, 1, &req_ids[i]), 0);
	}
	cr_assert_eq(wb_flush(c), 0);
	kill(e2e_srv.pid, SIGTERM);
	int state[N] = {0}; /* 0 unanswered, 1 acknowledged, 2 refused */
	uint64_t pos[N] = {0};
	for (;;) {
		Whizbang__V1__Response *r;
		if (wb_recv(c, &r) != 0)
			break;
		size_t k = (size_t)(r->id - req_ids[0]);
		cr_assert(r->id >= req_ids[0] && k < N, "unexpected response id %llu",
		          (unsigned long long)r->id);
		cr_assert_eq(state[k], 0, "request %zu answered twice", k);
		if (e2e_error_code(r) == 0) {
			state[k] = 1;
			pos[k] = r->append_events->first_position;
		} else {
			cr_assert_eq(e2e_error_code(r), WB_SHUTTING_DOWN, "error %d: %s",
			             e2e_error_code(r), r->error->message);
			state[k] = 2;
		}
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	wb_close(c);
	e2e_suite_wait_exit();
	e2e_suite_restart();
	c = e2e_suite_client("test_e2e");
	struct e2e_event *all;
	size_t n;
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &all, &n), 0);
	size_t acked = 0;
	for (size_t k = 0; k < N; k++) {
		bool found = false;
		for (size_t i = 0; i < n; i++)
			if (memcmp(all[i].id, ids[k], 16) == 0) {
				found = true;
				if (state[k] == 1)
					cr_assert_eq(all[i].position, pos[k]);
			}
		if (state[k] == 1) {
			acked++;
			cr_assert(found, "acknowledged append %zu is lost", k);
		}
		if (state[k] == 2)
			cr_assert(!found, "append %zu refused with SHUTTING_DOWN is stored", k);
	}
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(all[i].position, i + 1);
	e2e_events_free(all, n);
	cr_log_info("%zu of %d appends acknowledged before the shutdown", acked, N);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- pipelining */

Test(e2e, pipelined_responses_matched_by_id)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	append_text(c, "pipe", "T", "seed", NULL);
	enum { N = 120 };
	Whizbang__V1__Response__BodyCase want[N];
	uint64_t ids[N];
	Whizbang__V1__Ping ping = WHIZBANG__V1__PING__INIT;
	Whizbang__V1__ReadStream rs = WHIZBANG__V1__READ_STREAM__INIT;
	Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
	Whizbang__V1__GetStreamInfo gi = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	Whizbang__V1__GetStats gs = WHIZBANG__V1__GET_STATS__INIT;
	rs.stream = (char *)"pipe";
	gi.stream = (char *)"pipe";
	/* Of every six requests the first is an append, the others these, each
	 * with the answer it gets. */
	const struct {
		Whizbang__V1__Request req;
		Whizbang__V1__Response__BodyCase answer;
	} kinds[5] = {
	        {E2E_REQUEST(PING, ping, &ping), WHIZBANG__V1__RESPONSE__BODY_PONG},
	        {E2E_REQUEST(READ_STREAM, read_stream, &rs),
	         WHIZBANG__V1__RESPONSE__BODY_READ_STREAM},
	        {E2E_REQUEST(READ_ALL, read_all, &ra), WHIZBANG__V1__RESPONSE__BODY_READ_ALL},
	        {E2E_REQUEST(GET_STREAM_INFO, get_stream_info, &gi),
	         WHIZBANG__V1__RESPONSE__BODY_STREAM_INFO},
	        {E2E_REQUEST(GET_STATS, get_stats, &gs), WHIZBANG__V1__RESPONSE__BODY_STATS},
	};
	for (int i = 0; i < N; i++) {
		if (i % 6 == 0) {
			char text[32];
			snprintf(text, sizeof(text), "p%d", i);
			struct wb_new_event e = text_event("Pipe", text, NULL);
			cr_assert_eq(wb_append_send(c, "pipe", WB_EXPECT_ANY, 0, &e, 1, &ids[i]),
			             0);
			want[i] = WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS;
			continue;
		}
		Whizbang__V1__Request req = kinds[i % 6 - 1].req;
		ping.nonce = (uint64_t)i;
		want[i] = kinds[i % 6 - 1].answer;
		cr_assert_eq(wb_send(c, &req, &ids[i]), 0, "%s", wb_errmsg(c));
	}
	bool seen[N] = {false};
	int appended = 0;
	for (int k = 0; k < N; k++) {
		Whizbang__V1__Response *r;
		cr_assert_eq(wb_recv(c, &r), 0, "response %d: %s", k, wb_errmsg(c));
		int i = 0;
		while (i < N && ids[i] != r->id)
			i++;
		cr_assert(i < N, "response for unknown id %llu", (unsigned long long)r->id);
		cr_assert_eq(seen[i], false, "id %llu answered twice", (unsigned long long)r->id);
		seen[i] = true;
		cr_assert_eq(e2e_error_code(r), 0, "request %d failed: %s", i,
		             r->error != NULL ? r->error->message : "");
		cr_assert_eq(r->body_case, want[i], "request %d answered with body %d", i,
		             (int)r->body_case);
		if (want[i] == WHIZBANG__V1__RESPONSE__BODY_PONG)
			cr_assert_eq(r->pong->nonce, (uint64_t)i);
		if (want[i] == WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS) {
			cr_assert(r->append_events->first_position >= 2);
			appended++;
		}
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	cr_assert_eq(appended, N / 6);
	/* The blocking calls work again once the pipeline is drained. */
	expect_event_count(c, "pipe", 1 + N / 6);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- client limits */

Test(e2e, blocking_call_refused_while_pipelined_answers_are_due)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	struct wb_new_event e = text_event("T", "x", NULL);
	uint64_t id;
	cr_assert_eq(wb_append_send(c, "p", WB_EXPECT_ANY, 0, &e, 1, &id), 0);
	cr_assert_eq(wb_ping(c), WB_E_INVAL, "a blocking call with an answer outstanding");
	Whizbang__V1__Response *r;
	cr_assert_eq(wb_recv(c, &r), 0, "%s", wb_errmsg(c));
	cr_assert_eq(r->id, id);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(wb_ping(c), 0, "%s", wb_errmsg(c));
	e2e_suite_stop_client(c);
}

Test(e2e, client_refuses_an_answer_above_max_response)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_e2e");
	static uint8_t big[100000];
	struct wb_new_event e = {.type = "Big", .data = big, .data_len = sizeof(big)};
	struct wb_append_result r;
	cr_assert_eq(wb_append(c, "big", WB_EXPECT_ANY, 0, &e, 1, &r), 0);
	wb_close(c);
	struct wb_options opts = {.timeout_ms = 5000, .max_response = 65536};
	char msg[256];
	cr_assert_eq(wb_connect(&c, e2e_srv.address, &opts, msg, sizeof(msg)), 0, "%s", msg);
	struct wb_page p;
	int rc = wb_read_stream(c, "big", 0, false, 0, &p);
	cr_assert_eq(rc, WB_E_IO, "an answer above max_response: %s", wb_error_name(rc));
	cr_assert(strstr(wb_errmsg(c), "max_response") != NULL, "message: %s", wb_errmsg(c));
	cr_assert_eq(wb_ping(c), WB_E_CLOSED, "the client is usable after a failed read");
	e2e_suite_stop_client(c);
}

/* A peer that accepts the connection and never answers: every call ends
 * after the client's timeout. */
Test(e2e, client_times_out_against_a_silent_server)
{
	int port;
	int lfd = e2e_loopback_socket(true, &port);
	char address[32];
	snprintf(address, sizeof(address), "127.0.0.1:%d", port);
	struct wb_options opts = {.timeout_ms = 300};
	struct wb_client *c = NULL;
	char msg[256] = "";
	int64_t t0 = e2e_now_ms();
	int rc = wb_connect(&c, address, &opts, msg, sizeof(msg));
	int64_t took = e2e_now_ms() - t0;
	cr_assert_eq(rc, WB_E_TIMEOUT, "Hello to a silent peer: %s: %s", wb_error_name(rc), msg);
	cr_assert_null(c);
	cr_assert(took >= 250 && took < 3000, "timed out after %lld ms", (long long)took);
	close(lfd);
}
