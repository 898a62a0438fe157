/* The stream life cycle (issue 5) against a real whizbangd, over raw
 * sockets: stream metadata and the reads that honour it, soft and hard
 * deletes with the expected versions around them, Scavenge with its
 * progress pushes while other clients append, one scavenge at a time, a
 * restart after a scavenge, a shutdown in the middle of one, and hostile
 * requests. Every wait is bounded. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"

#define TIMEOUT_MS 15000

TestSuite(lifecycle_e2e, .fini = e2e_suite_fini, .timeout = 120);

/* ---------------------------------------------------------------- helpers */

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

static uint64_t next_id = 100;

static Response *call(int fd, Request *req)
{
	Response *r = NULL;
	req->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
	cr_assert_eq(e2e_raw_call(fd, req, &r), 0, "no answer");
	cr_assert_eq(r->id, req->id);
	return r;
}

/* Appends n events (types "T", data "d<i>") with an expected version; ids
 * from id_base when non-zero. Returns the response. */
static Response *append(int fd, const char *stream, Whizbang__V1__ExpectedVersion exp, uint64_t ver,
                        size_t n, unsigned id_base)
{
	Whizbang__V1__NewEvent *evs = calloc(n, sizeof(*evs));
	Whizbang__V1__NewEvent **ptrs = calloc(n, sizeof(*ptrs));
	uint8_t(*ids)[16] = calloc(n, 16);
	char(*data)[16] = calloc(n, 16);
	cr_assert(evs && ptrs && ids && data);
	for (size_t i = 0; i < n; i++) {
		whizbang__v1__new_event__init(&evs[i]);
		evs[i].type = (char *)"T";
		snprintf(data[i], 16, "d%zu", i);
		evs[i].data.data = (uint8_t *)data[i];
		evs[i].data.len = strlen(data[i]);
		if (id_base != 0) {
			memset(ids[i], 0xA5, 16);
			unsigned v = id_base + (unsigned)i;
			memcpy(ids[i] + 12, &v, 4);
			evs[i].id.data = ids[i];
			evs[i].id.len = 16;
		}
		ptrs[i] = &evs[i];
	}
	Whizbang__V1__AppendEvents a = WHIZBANG__V1__APPEND_EVENTS__INIT;
	a.stream = (char *)stream;
	a.expected = exp;
	a.expected_version = ver;
	a.n_events = n;
	a.events = ptrs;
	Request req = E2E_REQUEST(APPEND_EVENTS, append_events, &a);
	Response *r = call(fd, &req);
	free(evs);
	free(ptrs);
	free(ids);
	free(data);
	return r;
}

static Whizbang__V1__AppendResult append_ok(int fd, const char *stream, size_t n)
{
	Response *r = append(fd, stream, WHIZBANG__V1__EXPECTED_VERSION__ANY, 0, n, 0);
	cr_assert_eq(e2e_error_code(r), 0, "append to %s: %s", stream,
	             r->error ? r->error->message : "");
	Whizbang__V1__AppendResult out = *r->append_events;
	whizbang__v1__response__free_unpacked(r, NULL);
	return out;
}

static Response *read_stream(int fd, const char *stream, uint64_t from, bool back, uint32_t max)
{
	Whizbang__V1__ReadStream rs = WHIZBANG__V1__READ_STREAM__INIT;
	rs.stream = (char *)stream;
	rs.from_version = from;
	rs.direction = back ? WHIZBANG__V1__DIRECTION__BACKWARD : WHIZBANG__V1__DIRECTION__FORWARD;
	rs.max_count = max;
	Request req = E2E_REQUEST(READ_STREAM, read_stream, &rs);
	return call(fd, &req);
}

/* Reads a stream forwards (or backwards) in one page and checks the
 * versions it answers. */
static void expect_versions(int fd, const char *stream, bool back, const uint64_t *want, size_t n)
{
	Response *r = read_stream(fd, stream, back ? UINT64_MAX : 0, back, 1000);
	cr_assert_eq(e2e_error_code(r), 0, "read %s: %s", stream,
	             r->error ? r->error->message : "");
	cr_assert_eq(r->read_stream->n_events, n, "%s %s: %zu events, want %zu", stream,
	             back ? "backwards" : "forwards", r->read_stream->n_events, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(r->read_stream->events[i]->version, want[i]);
	cr_assert(r->read_stream->end_of_stream);
	whizbang__v1__response__free_unpacked(r, NULL);
}

static int error_of(Response *r)
{
	int code = e2e_error_code(r);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

static Response *set_meta(int fd, const char *stream, uint64_t mc, uint64_t age, uint64_t tb)
{
	Whizbang__V1__StreamMetadata m = WHIZBANG__V1__STREAM_METADATA__INIT;
	m.max_count = mc;
	m.max_age_ms = age;
	m.truncate_before = tb;
	Whizbang__V1__SetStreamMetadata s = WHIZBANG__V1__SET_STREAM_METADATA__INIT;
	s.stream = (char *)stream;
	s.metadata = &m;
	Request req = E2E_REQUEST(SET_STREAM_METADATA, set_stream_metadata, &s);
	return call(fd, &req);
}

static Response *get_meta(int fd, const char *stream)
{
	Whizbang__V1__GetStreamMetadata g = WHIZBANG__V1__GET_STREAM_METADATA__INIT;
	g.stream = (char *)stream;
	Request req = E2E_REQUEST(GET_STREAM_METADATA, get_stream_metadata, &g);
	return call(fd, &req);
}

static Response *delete_stream(int fd, const char *stream, bool hard)
{
	Whizbang__V1__DeleteStream d = WHIZBANG__V1__DELETE_STREAM__INIT;
	d.stream = (char *)stream;
	d.hard = hard;
	Request req = E2E_REQUEST(DELETE_STREAM, delete_stream, &d);
	return call(fd, &req);
}

static Response *stream_info(int fd, const char *stream)
{
	Whizbang__V1__GetStreamInfo g = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	g.stream = (char *)stream;
	Request req = E2E_REQUEST(GET_STREAM_INFO, get_stream_info, &g);
	return call(fd, &req);
}

static void send_scavenge(int fd, uint64_t id)
{
	Whizbang__V1__Scavenge s = WHIZBANG__V1__SCAVENGE__INIT;
	Request req = E2E_REQUEST(SCAVENGE, scavenge, &s);
	req.id = id;
	cr_assert_eq(e2e_send_request(fd, &req), 0);
}

struct scav_run {
	size_t pushes;
	Whizbang__V1__ScavengeResult final;
	int error; /* the final answer's error code, 0 for a result */
};

/* Receives a scavenge's pushes and its final answer, checking that the
 * pushes move forwards; calls on_first after the first push when set. */
static void scavenge_wait(int fd, uint64_t id, struct scav_run *run, void (*on_first)(void))
{
	uint64_t last_pos = 0;
	memset(run, 0, sizeof(*run));
	for (;;) {
		Response *r = NULL;
		cr_assert_eq(e2e_recv_response(fd, 60000, &r), 0, "no scavenge answer");
		cr_assert_eq(r->id, id);
		if (e2e_error_code(r) != 0) {
			run->error = e2e_error_code(r);
			fprintf(stderr, "scavenge %llu: %s: %s\n", (unsigned long long)id,
			        wb_error_name(run->error), r->error->message);
			if (run->error != WB_SHUTTING_DOWN)
				e2e_log_tail(&e2e_srv, 20);
			whizbang__v1__response__free_unpacked(r, NULL);
			return;
		}
		cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_SCAVENGE);
		Whizbang__V1__ScavengeResult *s = r->scavenge;
		cr_assert_geq(s->position, last_pos, "progress goes forwards");
		cr_assert_leq(s->position, s->last_position);
		cr_assert_leq(s->events_removed, s->events_examined);
		last_pos = s->position;
		if (s->done) {
			run->final = *s;
			whizbang__v1__response__free_unpacked(r, NULL);
			return;
		}
		run->pushes++;
		whizbang__v1__response__free_unpacked(r, NULL);
		if (run->pushes == 1 && on_first != NULL)
			on_first();
	}
}

/* Every event of $all, paged (page events per read) forwards. */
static void read_all(int fd, uint32_t page, struct e2e_event **out, size_t *n)
{
	size_t cap = 1024;
	*out = calloc(cap, sizeof(**out));
	*n = 0;
	uint64_t from = 0;
	for (int guard = 0; guard < 100000; guard++) {
		Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
		ra.from_position = from;
		ra.max_count = page;
		Request req = E2E_REQUEST(READ_ALL, read_all, &ra);
		Response *r = call(fd, &req);
		cr_assert_eq(e2e_error_code(r), 0);
		Whizbang__V1__ReadAllResult *res = r->read_all;
		for (size_t i = 0; i < res->n_events; i++) {
			if (*n == cap) {
				cap *= 2;
				*out = realloc(*out, cap * sizeof(**out));
				cr_assert_not_null(*out);
			}
			struct e2e_event *e = &(*out)[(*n)++];
			memset(e, 0, sizeof(*e));
			snprintf(e->stream, sizeof(e->stream), "%s", res->events[i]->stream);
			e->version = res->events[i]->version;
			e->position = res->events[i]->position;
		}
		bool end = res->end_of_log;
		cr_assert(end || res->next_position > from, "a page moves on");
		from = res->next_position;
		whizbang__v1__response__free_unpacked(r, NULL);
		if (end)
			return;
	}
	cr_assert_fail("$all paging did not end");
}

/* ---------------------------------------------------------------- tests */

Test(lifecycle_e2e, metadata_is_honoured_by_reads_at_once)
{
	e2e_suite_start(NULL);
	int fd = e2e_suite_raw_hello();
	append_ok(fd, "m", 10);
	append_ok(fd, "n", 2);

	Response *r = set_meta(fd, "m", 3, 0, 0);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_STREAM_METADATA);
	cr_assert_str_eq(r->stream_metadata->stream, "m");
	cr_assert_eq(r->stream_metadata->metadata->max_count, 3);
	whizbang__v1__response__free_unpacked(r, NULL);
	expect_versions(fd, "m", false, (uint64_t[]){7, 8, 9}, 3);
	expect_versions(fd, "m", true, (uint64_t[]){9, 8, 7}, 3);

	r = get_meta(fd, "m");
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->stream_metadata->metadata->max_count, 3);
	cr_assert_eq(r->stream_metadata->metadata->truncate_before, 0);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* Both limits: the larger start wins. */
	cr_assert_eq(error_of(set_meta(fd, "m", 3, 0, 8)), 0);
	expect_versions(fd, "m", false, (uint64_t[]){8, 9}, 2);
	expect_versions(fd, "m", true, (uint64_t[]){9, 8}, 2);
	r = stream_info(fd, "m");
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->stream_info->metadata->max_count, 3);
	cr_assert_eq(r->stream_info->metadata->truncate_before, 8);
	cr_assert_eq(r->stream_info->last_version, 9);
	cr_assert(!r->stream_info->deleted && !r->stream_info->tombstoned);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* A read from below the start begins at the start, and paging by one
	 * ends there going backwards. */
	r = read_stream(fd, "m", 2, false, 1);
	cr_assert_eq(r->read_stream->n_events, 1);
	cr_assert_eq(r->read_stream->events[0]->version, 8);
	cr_assert_eq(r->read_stream->next_version, 9);
	whizbang__v1__response__free_unpacked(r, NULL);
	r = read_stream(fd, "m", 8, true, 1);
	cr_assert_eq(r->read_stream->n_events, 1);
	cr_assert(r->read_stream->end_of_stream);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* $all keeps hidden events until a scavenge. */
	struct e2e_event *all;
	size_t n;
	read_all(fd, 5, &all, &n);
	cr_assert_eq(n, 12);
	free(all);

	/* max_age: 1 ms hides everything written before. */
	cr_assert_eq(error_of(set_meta(fd, "m", 0, 1, 0)), 0);
	e2e_sleep_ms(20);
	expect_versions(fd, "m", false, NULL, 0);
	expect_versions(fd, "m", true, NULL, 0);
	append_ok(fd, "m", 1);
	r = read_stream(fd, "m", 0, false, 100);
	/* Written within the last millisecond, or already too old: either way
	 * only version 10 can show. */
	cr_assert_leq(r->read_stream->n_events, 1);
	if (r->read_stream->n_events == 1)
		cr_assert_eq(r->read_stream->events[0]->version, 10);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* Clearing shows everything again; huge values are fine. */
	cr_assert_eq(error_of(set_meta(fd, "m", 0, 0, 0)), 0);
	r = read_stream(fd, "m", 0, false, 100);
	cr_assert_eq(r->read_stream->n_events, 11);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(error_of(set_meta(fd, "m", UINT64_MAX, UINT64_MAX, 0)), 0);
	r = read_stream(fd, "m", 0, false, 100);
	cr_assert_eq(r->read_stream->n_events, 11);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(error_of(set_meta(fd, "m", 1ull << 63, 0, UINT64_MAX)), 0);
	expect_versions(fd, "m", false, NULL, 0);

	/* Missing streams and bad names. */
	cr_assert_eq(error_of(set_meta(fd, "ghost", 1, 0, 0)), WB_NOT_FOUND);
	cr_assert_eq(error_of(get_meta(fd, "ghost")), WB_NOT_FOUND);
	cr_assert_eq(error_of(set_meta(fd, "", 1, 0, 0)), WB_BAD_REQUEST);
	cr_assert_eq(error_of(get_meta(fd, "a\tb")), WB_BAD_REQUEST);
	cr_assert_eq(error_of(delete_stream(fd, "", false)), WB_BAD_REQUEST);
	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_assert_eq(error_of(set_meta(fd, longname, 1, 0, 0)), WB_BAD_REQUEST);
	/* A SetStreamMetadata without metadata clears it. */
	Whizbang__V1__SetStreamMetadata s = WHIZBANG__V1__SET_STREAM_METADATA__INIT;
	s.stream = (char *)"m";
	Request req = E2E_REQUEST(SET_STREAM_METADATA, set_stream_metadata, &s);
	cr_assert_eq(error_of(call(fd, &req)), 0);
	r = read_stream(fd, "m", 0, false, 100);
	cr_assert_eq(r->read_stream->n_events, 11);
	whizbang__v1__response__free_unpacked(r, NULL);

	close(fd);
	e2e_suite_stop();
}

Test(lifecycle_e2e, soft_and_hard_delete)
{
	e2e_suite_start(NULL);
	int fd = e2e_suite_raw_hello();
	append_ok(fd, "s", 3);
	append_ok(fd, "h", 2);

	cr_assert_eq(error_of(delete_stream(fd, "ghost", false)), WB_NOT_FOUND);
	cr_assert_eq(error_of(delete_stream(fd, "ghost", true)), WB_NOT_FOUND);

	Response *r = delete_stream(fd, "s", false);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_DELETE_STREAM);
	cr_assert_eq(r->delete_stream->last_version, 2);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(error_of(read_stream(fd, "s", 0, false, 10)), WB_NOT_FOUND);
	cr_assert_eq(error_of(read_stream(fd, "s", UINT64_MAX, true, 10)), WB_NOT_FOUND);
	r = stream_info(fd, "s");
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert(r->stream_info->deleted);
	cr_assert(!r->stream_info->tombstoned);
	whizbang__v1__response__free_unpacked(r, NULL);

	r = append(fd, "s", WHIZBANG__V1__EXPECTED_VERSION__STREAM_EXISTS, 0, 1, 0);
	cr_assert_eq(e2e_error_code(r), WB_WRONG_EXPECTED_VERSION);
	cr_assert_eq(r->error->actual_version, -1);
	whizbang__v1__response__free_unpacked(r, NULL);
	r = append(fd, "s", WHIZBANG__V1__EXPECTED_VERSION__NO_STREAM, 0, 2, 0);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->append_events->stream_version, 4, "versions continue");
	whizbang__v1__response__free_unpacked(r, NULL);
	expect_versions(fd, "s", false, (uint64_t[]){3, 4}, 2);
	expect_versions(fd, "s", true, (uint64_t[]){4, 3}, 2);
	r = stream_info(fd, "s");
	cr_assert(!r->stream_info->deleted);
	cr_assert_eq(r->stream_info->last_version, 4);
	whizbang__v1__response__free_unpacked(r, NULL);

	r = delete_stream(fd, "h", true);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->delete_stream->last_version, 1);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(error_of(append(fd, "h", WHIZBANG__V1__EXPECTED_VERSION__ANY, 0, 1, 0)),
	             WB_STREAM_DELETED);
	cr_assert_eq(error_of(append(fd, "h", WHIZBANG__V1__EXPECTED_VERSION__NO_STREAM, 0, 1, 0)),
	             WB_STREAM_DELETED);
	cr_assert_eq(error_of(read_stream(fd, "h", 0, false, 10)), WB_STREAM_DELETED);
	cr_assert_eq(error_of(delete_stream(fd, "h", true)), WB_STREAM_DELETED);
	cr_assert_eq(error_of(delete_stream(fd, "h", false)), WB_STREAM_DELETED);
	cr_assert_eq(error_of(set_meta(fd, "h", 1, 0, 0)), WB_STREAM_DELETED);
	cr_assert_eq(error_of(get_meta(fd, "h")), WB_STREAM_DELETED);
	r = stream_info(fd, "h");
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert(r->stream_info->tombstoned);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* Everything above is durable. */
	close(fd);
	e2e_suite_stop();
	e2e_suite_restart();
	fd = e2e_suite_raw_hello();
	expect_versions(fd, "s", false, (uint64_t[]){3, 4}, 2);
	cr_assert_eq(error_of(read_stream(fd, "h", 0, false, 10)), WB_STREAM_DELETED);
	close(fd);
	e2e_suite_stop();
}

/* ------------------------------------------------- scavenge under appends */

struct appender {
	int fd;
	size_t n;
	uint64_t positions[400];
};

static void *appender_main(void *arg)
{
	struct appender *a = arg;
	for (size_t i = 0; i < 400; i++) {
		Whizbang__V1__AppendResult r = append_ok(a->fd, "live", 1);
		a->positions[a->n++] = r.first_position;
	}
	return NULL;
}

static int second_fd = -1;

static void second_scavenge_refused(void)
{
	send_scavenge(second_fd, 9);
	Response *r = NULL;
	cr_assert_eq(e2e_recv_response(second_fd, TIMEOUT_MS, &r), 0);
	cr_assert_eq(e2e_error_code(r), WB_RESOURCE_EXHAUSTED, "one scavenge at a time");
	whizbang__v1__response__free_unpacked(r, NULL);
}

static bool stream_gone(const char *stream)
{
	return strncmp(stream, "gone-", 5) == 0 || strncmp(stream, "hard-", 5) == 0;
}

Test(lifecycle_e2e, scavenge_under_concurrent_appends_then_restart)
{
	e2e_suite_start(NULL);
	int fd = e2e_suite_raw_hello();
	/* 7000 events: 3000 soft-deleted, 1000 hard-deleted, 2000 of which
	 * max_count hides 1000, 1000 kept, interleaved in $all. */
	for (int k = 0; k < 10; k++) {
		char name[32];
		snprintf(name, sizeof(name), "gone-%d", k);
		append_ok(fd, name, 150);
		snprintf(name, sizeof(name), "keep-%d", k);
		append_ok(fd, name, 100);
		snprintf(name, sizeof(name), "hard-%d", k);
		append_ok(fd, name, 100);
		snprintf(name, sizeof(name), "gone-%d", k);
		append_ok(fd, name, 150);
		snprintf(name, sizeof(name), "trunc-%d", k);
		append_ok(fd, name, 200);
	}
	for (int k = 0; k < 10; k++) {
		char name[32];
		snprintf(name, sizeof(name), "gone-%d", k);
		cr_assert_eq(error_of(delete_stream(fd, name, false)), 0);
		snprintf(name, sizeof(name), "hard-%d", k);
		cr_assert_eq(error_of(delete_stream(fd, name, true)), 0);
		snprintf(name, sizeof(name), "trunc-%d", k);
		cr_assert_eq(error_of(set_meta(fd, name, 100, 0, 0)), 0);
	}

	struct appender ap = {.fd = e2e_suite_raw_hello()};
	second_fd = e2e_suite_raw_hello();
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, appender_main, &ap), 0);
	send_scavenge(fd, 77);
	struct scav_run run;
	scavenge_wait(fd, 77, &run, second_scavenge_refused);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(run.error, 0);
	cr_assert_geq(run.pushes, 3, "progress pushes (%zu)", run.pushes);
	cr_assert_eq(run.final.events_removed, 5000);
	cr_assert_geq(run.final.last_position, 7000);
	cr_assert_geq(run.final.events_examined, 7000);
	cr_assert_leq(run.final.events_examined, run.final.last_position);
	cr_assert_eq(run.final.position, run.final.last_position);
	cr_assert_gt(run.final.micros, 0);
	/* Each removed event: its record and key (8 + 44 + name 6..7 + type 1 +
	 * data 2..4) plus its stream_events and event_ids entries (24 each). */
	cr_assert_geq(run.final.bytes_reclaimed, 5000ull * (8 + 44 + 6 + 1 + 2 + 48));
	cr_assert_leq(run.final.bytes_reclaimed, 5000ull * (8 + 44 + 7 + 1 + 4 + 48));
	cr_assert_eq(ap.n, 400);

	/* A second scavenge may start now, and finds nothing new. */
	send_scavenge(second_fd, 10);
	struct scav_run run2;
	scavenge_wait(second_fd, 10, &run2, NULL);
	cr_assert_eq(run2.error, 0);
	cr_assert_eq(run2.final.events_removed, 0);

	for (int pass = 0; pass < 2; pass++) {
		struct e2e_event *all;
		size_t n;
		read_all(fd, pass == 0 ? 7 : 1000, &all, &n);
		cr_assert_eq(n, 1000 + 1000 + 400, "pass %d: %zu events", pass, n);
		size_t live = 0;
		for (size_t i = 0; i < n; i++) {
			cr_assert(!stream_gone(all[i].stream), "%s v%llu survived", all[i].stream,
			          (unsigned long long)all[i].version);
			if (strncmp(all[i].stream, "trunc-", 6) == 0)
				cr_assert_geq(all[i].version, 100);
			if (i > 0)
				cr_assert_gt(all[i].position, all[i - 1].position);
			if (strcmp(all[i].stream, "live") == 0) {
				cr_assert_eq(all[i].position, ap.positions[live]);
				cr_assert_eq(all[i].version, live);
				live++;
			}
		}
		cr_assert_eq(live, 400, "every concurrent append is there");
		free(all);
		if (pass == 0) {
			close(fd);
			close(ap.fd);
			close(second_fd);
			e2e_suite_stop();
			e2e_suite_restart();
			fd = e2e_suite_raw_hello();
		}
	}

	/* After the restart: versions continue after a soft delete, the
	 * tombstone holds, the position counter never went back. */
	Response *r = append(fd, "gone-3", WHIZBANG__V1__EXPECTED_VERSION__NO_STREAM, 0, 1, 0);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->append_events->stream_version, 300);
	cr_assert_eq(r->append_events->first_position, 7401, "positions are never reused (%llu)",
	             (unsigned long long)r->append_events->first_position);
	whizbang__v1__response__free_unpacked(r, NULL);
	expect_versions(fd, "gone-3", false, (uint64_t[]){300}, 1);
	cr_assert_eq(error_of(append(fd, "hard-3", WHIZBANG__V1__EXPECTED_VERSION__ANY, 0, 1, 0)),
	             WB_STREAM_DELETED);
	r = read_stream(fd, "trunc-0", 0, false, 1000);
	cr_assert_eq(r->read_stream->n_events, 100);
	cr_assert_eq(r->read_stream->events[0]->version, 100);
	whizbang__v1__response__free_unpacked(r, NULL);
	close(fd);
	e2e_suite_stop();
}

Test(lifecycle_e2e, scavenge_stopped_by_shutdown_resumes_after_restart)
{
	e2e_suite_start(NULL);
	int fd = e2e_suite_raw_hello();
	for (int k = 0; k < 20; k++)
		append_ok(fd, "doomed", 1000);
	cr_assert_eq(error_of(delete_stream(fd, "doomed", false)), 0);
	append_ok(fd, "kept", 3);

	send_scavenge(fd, 5);
	Response *r = NULL;
	cr_assert_eq(e2e_recv_response(fd, TIMEOUT_MS, &r), 0);
	cr_assert_eq(r->id, 5);
	cr_assert_eq(e2e_error_code(r), 0);
	bool finished = r->scavenge->done;
	whizbang__v1__response__free_unpacked(r, NULL);
	uint64_t removed_first = 0;
	if (!finished) {
		cr_assert_eq(kill(e2e_srv.pid, SIGTERM), 0);
		/* Then pushes, and an end: SHUTTING_DOWN (stopped) or a result
		 * (it finished first). */
		for (;;) {
			r = NULL;
			cr_assert_eq(e2e_recv_response(fd, 30000, &r), 0);
			int code = e2e_error_code(r);
			bool end = code != 0 || r->scavenge->done;
			if (code == 0 && r->scavenge->done)
				removed_first = r->scavenge->events_removed;
			if (code != 0)
				cr_assert_eq(code, WB_SHUTTING_DOWN, "%s", r->error->message);
			whizbang__v1__response__free_unpacked(r, NULL);
			if (end)
				break;
		}
		e2e_suite_wait_exit();
	} else {
		e2e_suite_stop();
	}
	close(fd);
	e2e_suite_restart();
	fd = e2e_suite_raw_hello();
	send_scavenge(fd, 6);
	struct scav_run run;
	scavenge_wait(fd, 6, &run, NULL);
	cr_assert_eq(run.error, 0);
	if (finished || removed_first == 20000)
		cr_assert_eq(run.final.events_removed, 0);
	else
		cr_assert(run.final.events_removed > 0 && run.final.events_removed < 20000,
		          "the second run removes what the first left (%llu)",
		          (unsigned long long)run.final.events_removed);
	struct e2e_event *all;
	size_t n;
	read_all(fd, 0, &all, &n);
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(all[i].stream, "kept");
	free(all);
	close(fd);
	e2e_suite_stop();
}

Test(lifecycle_e2e, hostile_requests)
{
	e2e_suite_start(NULL);
	/* Before Hello: refused like any other request. */
	int fd = e2e_suite_raw();
	Whizbang__V1__Scavenge sc = WHIZBANG__V1__SCAVENGE__INIT;
	Request req = E2E_REQUEST(SCAVENGE, scavenge, &sc);
	cr_assert_eq(error_of(call(fd, &req)), WB_BAD_REQUEST);
	close(fd);

	fd = e2e_suite_raw_hello();
	/* A scavenge of an empty log ends at once. */
	send_scavenge(fd, 3);
	struct scav_run run;
	scavenge_wait(fd, 3, &run, NULL);
	cr_assert_eq(run.error, 0);
	cr_assert_eq(run.final.events_examined, 0);
	cr_assert_eq(run.final.last_position, 0);

	/* $-prefixed names are ordinary streams here. */
	append_ok(fd, "$system", 2);
	cr_assert_eq(error_of(set_meta(fd, "$system", 1, 0, 0)), 0);
	expect_versions(fd, "$system", false, (uint64_t[]){1}, 1);
	/* Names with invalid UTF-8 never reach the handlers. */
	cr_assert_eq(error_of(delete_stream(fd, "\xff\xfe", true)), WB_BAD_REQUEST);
	/* A client that closes in the middle of a scavenge stops it; the
	 * server goes on. */
	for (int k = 0; k < 5; k++)
		append_ok(fd, "bulk", 1000);
	cr_assert_eq(error_of(delete_stream(fd, "bulk", true)), 0);
	int fd2 = e2e_suite_raw_hello();
	send_scavenge(fd2, 4);
	close(fd2);
	for (int tries = 0;; tries++) {
		cr_assert_lt(tries, 500, "the abandoned scavenge never ended");
		send_scavenge(fd, 8);
		Response *r = NULL;
		cr_assert_eq(e2e_recv_response(fd, TIMEOUT_MS, &r), 0);
		int code = e2e_error_code(r);
		bool r_done = code == 0 && r->scavenge->done;
		whizbang__v1__response__free_unpacked(r, NULL);
		cr_assert(code == 0 || code == WB_RESOURCE_EXHAUSTED, "%s", wb_error_name(code));
		if (code == WB_RESOURCE_EXHAUSTED) {
			e2e_sleep_ms(10);
			continue;
		}
		/* The first answer may be the last. */
		if (r_done)
			break;
		struct scav_run rest;
		scavenge_wait(fd, 8, &rest, NULL);
		cr_assert_eq(rest.error, 0);
		break;
	}
	struct e2e_event *all;
	size_t n;
	read_all(fd, 0, &all, &n);
	cr_assert_eq(n, 1, "only $system's version 1 is left (%zu)", n);
	cr_assert_str_eq(all[0].stream, "$system");
	cr_assert_eq(all[0].version, 1);
	free(all);
	close(fd);
	e2e_suite_stop();
}
