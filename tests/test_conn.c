/* The connection layer (server/conn.c) on a real loop with real loopback
 * sockets, in-process, behind an echo service: a frame is answered with a
 * frame holding the same bytes (or reply_size bytes, the first 4 of them
 * the request's first 4, so answers can be matched to requests).
 *
 * What is checked: frames split across writes and packed into one; the
 * output bound pauses reading and the connection picks up again once the
 * client reads; holds (work in flight) pause it at max_inflight; a peer that
 * closes while a large write is in flight; a frame over the limit, the frame
 * timeout and the connection limit, each refused and closed; the memory
 * budget (the heavy paused near it, the heaviest disconnected at it, what
 * modules hold counted and given back); and accepting
 * while no allocation succeeds, which must shed the peers and keep the
 * listener polled (libuv stops polling a listener whose connection callback
 * did not accept). Sanitizers and valgrind see every path end without a
 * leak, and the loop closes with no handle left. */
#include <criterion/criterion.h>

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fault.h"
#include "frame.h"
#include "inproc.h"
#include "log.h"
#include "wb_error.h"

#define WAIT_MS 5000

struct echo {
	uv_loop_t loop;
	uv_tcp_t listener;
	struct conns *set;
	int port;
	size_t reply_size; /* 0: echo the payload */
	bool hold;         /* hold each connection once per frame */
	uint64_t extra;    /* with hold: bytes counted as its queued reads per frame */
	struct conn *held[64];
	size_t nheld;
	size_t frames;
	size_t closed;
	size_t refused;
	int refuse_code;
	bool busy; /* what the busy hook answers */
};

static struct echo e;

static void frame_hook(void *arg, struct conn *c, const uint8_t *payload, uint32_t len)
{
	struct echo *x = arg;
	x->frames++;
	if (x->hold && x->nheld < 64) {
		conn_hold(c);
		conn_mem_add(c, CONN_MEM_READS, (int64_t)x->extra);
		x->held[x->nheld++] = c;
	}
	size_t n = x->reply_size > 0 ? x->reply_size : len;
	uint8_t *p = conn_frame(c, n);
	if (p == NULL)
		return;
	memset(p, 0xab, n);
	memcpy(p, payload, len < n ? (len < 4 ? len : 4) : n);
}

static void refuse_hook(void *arg, struct conn *c, int code, const char *msg)
{
	struct echo *x = arg;
	(void)msg;
	x->refused++;
	x->refuse_code = code;
	conn_send(c, (const uint8_t *)"REFUSED", 7);
}

static void closed_hook(void *arg, struct conn *c)
{
	struct echo *x = arg;
	(void)c;
	x->closed++;
}

static bool busy_hook(void *arg, const struct conn *c)
{
	struct echo *x = arg;
	(void)c;
	return x->busy;
}

static void after_hook(void *arg, bool drained)
{
	struct echo *x = arg;
	(void)drained;
	conns_flush(x->set);
}

static void on_connection(uv_stream_t *l, int status)
{
	if (status == 0)
		conns_accept(e.set, l);
}

static void start(const struct conn_limits *lim)
{
	memset(&e, 0, sizeof(e));
	log_set_level(WB_LOG_ERROR);
	cr_assert_eq(uv_loop_init(&e.loop), 0);
	struct conn_hooks hooks = {
	        .arg = &e,
	        .frame = frame_hook,
	        .refuse = refuse_hook,
	        .closed = closed_hook,
	        .after = after_hook,
	        .busy = busy_hook,
	};
	cr_assert_eq(conns_init(&e.set, &e.loop, lim, &hooks), 0);
	cr_assert_eq(uv_tcp_init(&e.loop, &e.listener), 0);
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", 0, &a);
	cr_assert_eq(uv_tcp_bind(&e.listener, (struct sockaddr *)&a, 0), 0);
	cr_assert_eq(uv_listen((uv_stream_t *)&e.listener, 64, on_connection), 0);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	cr_assert_eq(uv_tcp_getsockname(&e.listener, (struct sockaddr *)&ss, &len), 0);
	e.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static const struct conn_limits defaults = {
        .max_frame = 1u << 20,
        .max_output = 1u << 20,
        .max_inflight = 16,
        .frame_timeout_ms = 10000,
        .max_connections = 16,
};

/* Closes everything and checks that no handle is left on the loop. */
static void stop(void)
{
	fault_disarm();
	while (e.nheld > 0) {
		conn_mem_add(e.held[e.nheld - 1], CONN_MEM_READS, -(int64_t)e.extra);
		conn_release(e.held[--e.nheld]);
	}
	conns_close_all(e.set, true);
	uv_close((uv_handle_t *)&e.listener, NULL);
	for (int i = 0; i < 100 && uv_loop_alive(&e.loop); i++)
		uv_run(&e.loop, UV_RUN_NOWAIT);
	cr_assert_eq(conns_open(e.set), 0);
	conns_free(e.set);
	cr_assert_eq(uv_loop_close(&e.loop), 0, "a handle was left open");
}

static void queue_frame(struct iclient *c, uint32_t tag, size_t len)
{
	uint8_t buf[FRAME_HEADER + 64];
	cr_assert_leq(len, 64);
	cr_assert_geq(len, 4);
	frame_put_header(buf, (uint32_t)len);
	memset(buf + FRAME_HEADER, 0, len);
	memcpy(buf + FRAME_HEADER, &tag, 4);
	cr_assert_eq(iclient_queue_raw(c, buf, FRAME_HEADER + len), 0);
}

/* Takes the next answer and returns its tag. */
static uint32_t take_tag(struct iclient *c, size_t *len)
{
	static uint8_t payload[1u << 20];
	cr_assert_eq(iclient_wait(&e.loop, c, WAIT_MS), 0, "no answer");
	cr_assert_eq(iclient_take(c, payload, sizeof(payload), len), 0);
	uint32_t tag;
	memcpy(&tag, payload, 4);
	return tag;
}

static bool frames_at_least(void *arg)
{
	return e.frames >= *(size_t *)arg;
}

static bool closed_at_least(void *arg)
{
	return e.closed >= *(size_t *)arg;
}

static void run_ms(int ms)
{
	loop_run_until(&e.loop, NULL, NULL, ms);
}

/* Reads until the peer closes; true when it did within WAIT_MS. */
static bool sees_close(struct iclient *c)
{
	for (int i = 0; i < WAIT_MS && !c->closed; i++) {
		c->in_len = 0;
		iclient_io(c);
		run_ms(1);
	}
	return c->closed;
}

/* c gets the refusal frame (refuse_hook's), for code, then is closed. */
static void expect_refused(struct iclient *c, int code)
{
	uint8_t payload[16];
	size_t len;
	cr_assert_eq(iclient_wait(&e.loop, c, WAIT_MS), 0, "no refusal arrived");
	cr_assert_eq(iclient_take(c, payload, sizeof(payload), &len), 0);
	cr_assert_eq(len, 7);
	cr_assert_arr_eq(payload, "REFUSED", 7);
	cr_assert_eq(e.refuse_code, code);
	cr_assert(sees_close(c), "the connection stayed open after the refusal");
}

TestSuite(conn, .fini = stop);

Test(conn, frames_split_and_packed)
{
	start(&defaults);
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	/* One frame in three writes, with loop turns in between. */
	uint8_t f[FRAME_HEADER + 10];
	frame_put_header(f, 10);
	memcpy(f + FRAME_HEADER, "abcdefghij", 10);
	for (size_t at = 0; at < sizeof(f); at += 5) {
		size_t n = sizeof(f) - at < 5 ? sizeof(f) - at : 5;
		cr_assert_eq(iclient_queue_raw(c, f + at, n), 0);
		iclient_io(c);
		run_ms(20);
	}
	size_t len;
	uint8_t payload[64];
	cr_assert_eq(iclient_wait(&e.loop, c, WAIT_MS), 0);
	cr_assert_eq(iclient_take(c, payload, sizeof(payload), &len), 0);
	cr_assert_eq(len, 10);
	cr_assert_arr_eq(payload, "abcdefghij", 10);
	/* A hundred frames in one write: a hundred answers, in order. */
	for (uint32_t i = 0; i < 100; i++)
		queue_frame(c, i, 8);
	for (uint32_t i = 0; i < 100; i++)
		cr_assert_eq(take_tag(c, &len), i);
	cr_assert_eq(e.frames, 101);
	iclient_free(c);
}

static void input_of(void *arg, struct conn *c)
{
	struct conn_info ci;
	conn_info(c, &ci);
	*(uint64_t *)arg = ci.input_buffer;
}

/* A large frame grows the input buffer to its size; once it is decoded the
 * buffer shrinks back, so an idle connection does not keep megabytes. */
Test(conn, the_input_buffer_shrinks_after_a_large_frame)
{
	start(&defaults);
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	size_t n = 900000;
	uint8_t *f = calloc(1, FRAME_HEADER + n);
	cr_assert_not_null(f);
	frame_put_header(f, (uint32_t)n);
	uint32_t tag = 42;
	memcpy(f + FRAME_HEADER, &tag, 4);
	cr_assert_eq(iclient_queue_raw(c, f, FRAME_HEADER + n), 0);
	free(f);
	e.reply_size = 8;
	size_t len;
	cr_assert_eq(take_tag(c, &len), 42);
	uint64_t held = 0;
	conns_foreach(e.set, input_of, &held);
	cr_assert_leq(held, 64u * 1024u, "%llu bytes still held", (unsigned long long)held);
	/* And it still works at its small size. */
	queue_frame(c, 43, 8);
	cr_assert_eq(take_tag(c, &len), 43);
	iclient_free(c);
}

Test(conn, output_bound_pauses_reading)
{
	struct conn_limits lim = defaults;
	lim.max_output = 128u << 10;
	start(&lim);
	e.reply_size = 64u << 10;
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	/* 25 MiB of answers: far more than the sockets' buffers hold. */
	const uint32_t n = 400;
	for (uint32_t i = 0; i < n; i++)
		queue_frame(c, i, 4);
	/* The client sends everything but reads nothing. */
	for (int i = 0; i < 500; i++) {
		ssize_t k = c->out_len > c->out_sent
		                    ? send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
		                           MSG_NOSIGNAL | MSG_DONTWAIT)
		                    : 0;
		if (k > 0)
			c->out_sent += (size_t)k;
		run_ms(1);
	}
	cr_assert_eq(c->out_sent, c->out_len, "the server stopped reading its requests too early");
	size_t handled = e.frames;
	cr_assert_lt(handled, n, "every request was answered into an output that never drained");
	run_ms(200);
	cr_assert_eq(e.frames, handled, "a paused connection went on decoding");
	/* Reading lets it go on, to the last answer, in order. */
	size_t len;
	for (uint32_t i = 0; i < n; i++) {
		cr_assert_eq(take_tag(c, &len), i);
		cr_assert_eq(len, e.reply_size);
	}
	cr_assert_eq(e.frames, n);
	iclient_free(c);
}

/* Near the memory budget a connection that holds much output is paused
 * while one that holds little is still served; the memory held stays below
 * the budget (nobody is disconnected), far below the per-connection
 * bound. */
Test(conn, memory_budget_pauses_the_heavy_and_serves_the_light)
{
	struct conn_limits lim = defaults;
	lim.max_output = 16u << 20;
	lim.memory_budget = 2u << 20;
	start(&lim);
	e.reply_size = 64u << 10;
	struct iclient *heavy = iclient_new(e.port), *light = iclient_new(e.port);
	cr_assert_not_null(heavy);
	cr_assert_not_null(light);
	const uint32_t n = 400; /* 25 MiB of answers */
	for (uint32_t i = 0; i < n; i++)
		queue_frame(heavy, i, 4);
	for (int i = 0; i < 500; i++) {
		ssize_t k = heavy->out_len > heavy->out_sent
		                    ? send(heavy->fd, heavy->out + heavy->out_sent,
		                           heavy->out_len - heavy->out_sent,
		                           MSG_NOSIGNAL | MSG_DONTWAIT)
		                    : 0;
		if (k > 0)
			heavy->out_sent += (size_t)k;
		run_ms(1);
	}
	size_t handled = e.frames;
	cr_assert_lt(handled, n, "the heavy connection was never paused");
	struct conns_memory m;
	conns_memory(e.set, &m);
	cr_assert_geq(m.pauses, 1u, "the heavy connection was paused for something else");
	cr_assert_lt(m.held, 2u << 20, "%llu bytes held", (unsigned long long)m.held);
	cr_assert_eq(m.by_kind[CONN_MEM_OUTPUT], conns_output_held(e.set));
	/* The light one is served while the heavy one waits. */
	size_t len;
	for (uint32_t i = 0; i < 3; i++) {
		queue_frame(light, 1000 + i, 4);
		cr_assert_eq(take_tag(light, &len), 1000 + i);
	}
	conns_memory(e.set, &m);
	cr_assert_eq(m.disconnects, 0u);
	/* The heavy one reads: all of it comes, in order. */
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(take_tag(heavy, &len), i);
	cr_assert_eq(conns_output_held(e.set), 0u);
	iclient_free(heavy);
	iclient_free(light);
}

/* Queues on c the start of a frame of len payload bytes tagged tag: its
 * header and the first sent bytes of its payload. */
static void queue_partial(struct iclient *c, uint32_t tag, uint32_t len, size_t sent)
{
	static uint8_t buf[ICLIENT_BUF];
	cr_assert_leq(FRAME_HEADER + sent, sizeof(buf));
	frame_put_header(buf, len);
	memset(buf + FRAME_HEADER, 0, sent);
	memcpy(buf + FRAME_HEADER, &tag, 4);
	cr_assert_eq(iclient_queue_raw(c, buf, FRAME_HEADER + sent), 0);
}

/* Runs the loop, sending and reading for every client of cs, until cond
 * holds (true) or ms passed. */
static bool pump_for(struct iclient **cs, size_t n, bool (*cond)(void *), void *arg, int ms)
{
	for (int i = 0; i < ms; i++) {
		for (size_t k = 0; k < n; k++)
			if (cs[k] != NULL)
				iclient_io(cs[k]);
		run_ms(1);
		if (cond != NULL && cond(arg))
			return true;
	}
	return cond == NULL;
}

static bool pump_until(struct iclient **cs, size_t n, bool (*cond)(void *), void *arg)
{
	return pump_for(cs, n, cond, arg, WAIT_MS);
}

static bool input_at_least(void *arg)
{
	struct conns_memory m;
	conns_memory(e.set, &m);
	return m.by_kind[CONN_MEM_INPUT] >= *(uint64_t *)arg;
}

static bool paused_at_least(void *arg)
{
	struct conns_memory m;
	conns_memory(e.set, &m);
	return m.pauses >= *(uint64_t *)arg;
}

static bool disconnects_at_least(void *arg)
{
	struct conns_memory m;
	conns_memory(e.set, &m);
	return m.disconnects >= *(uint64_t *)arg;
}

static bool held_at_most(void *arg)
{
	struct conns_memory m;
	conns_memory(e.set, &m);
	return m.held <= *(uint64_t *)arg;
}

/* The id of the newest connection whose input buffer holds at least *arg
 * bytes (conns_foreach() goes newest first). */
struct find_big {
	uint64_t at_least;
	uint64_t id;
};

static void find_big_cb(void *arg, struct conn *c)
{
	struct find_big *f = arg;
	struct conn_info ci;
	conn_info(c, &ci);
	if (f->id == 0 && ci.input_buffer >= f->at_least)
		f->id = ci.id;
}

/* Connections receiving large frames fill the input side of the budget:
 * near it the next one is paused (not read) while a light one is served;
 * at it (more keep coming) the heaviest that is not spared gets the
 * refusal and closes, and nobody else does; once the heavy are gone the
 * paused one is read again, its frame is answered, and what is held comes
 * back down to a small connection's buffers. */
Test(conn, memory_budget_disconnects_the_heaviest_when_pausing_does_not_hold)
{
	struct conn_limits lim = defaults; /* max_frame 1 MiB */
	lim.memory_budget = 4u << 20;      /* paused from 3.5 MiB */
	lim.max_connections = 64;
	start(&lim);
	e.reply_size = 8;
	struct iclient *all[24] = {NULL};
	size_t n = 0;
	/* Three connections each send 900K of a 1 MiB frame: 1 MiB of input
	 * buffer each, 3 MiB in all, below 7/8 of the budget. */
	for (uint32_t i = 0; i < 3; i++) {
		all[n] = iclient_new(e.port);
		cr_assert_not_null(all[n]);
		queue_partial(all[n], 10 + i, 1u << 20, 900000);
		n++;
	}
	uint64_t want = 3u << 20;
	cr_assert(pump_until(all, n, input_at_least, &want), "the large frames were not read");
	struct conns_memory m;
	conns_memory(e.set, &m);
	cr_assert_eq(m.pauses, 0u);
	/* A fourth takes the server to 7/8: it is paused, not disconnected. */
	struct iclient *paused = all[n++] = iclient_new(e.port);
	cr_assert_not_null(paused);
	queue_partial(paused, 99, 1u << 20, 900000);
	want = 1;
	cr_assert(pump_until(all, n, paused_at_least, &want), "nobody was paused near the budget");
	conns_memory(e.set, &m);
	cr_assert_geq(m.held, (4u << 20) - (4u << 20) / 8);
	cr_assert_lt(m.held, 4u << 20);
	cr_assert_eq(m.disconnects, 0u);
	size_t frames = e.frames;
	/* A light connection is served meanwhile. */
	struct iclient *light = iclient_new(e.port);
	cr_assert_not_null(light);
	size_t len;
	queue_frame(light, 500, 8);
	cr_assert_eq(take_tag(light, &len), 500);
	/* The newest of the heaviest is spared (as ListClients' asker is). */
	struct find_big spared = {.at_least = 1u << 20};
	conns_foreach(e.set, find_big_cb, &spared);
	cr_assert_neq(spared.id, 0u);
	conn_spare(conns_find(e.set, spared.id));
	/* More connections sending large frames: each is read past a
	 * sixteenth of the budget (to 512K), then paused; past the budget, one
	 * of the first three goes. */
	want = 1;
	while (n < 24 && !disconnects_at_least(&want)) {
		all[n] = iclient_new(e.port);
		cr_assert_not_null(all[n]);
		queue_partial(all[n], 100 + (uint32_t)n, 1u << 20, 300000);
		n++;
		conns_memory(e.set, &m);
		uint64_t next = m.pauses + 1;
		cr_assert(pump_until(all, n, paused_at_least, &next),
		          "connection %zu was not paused", n - 1);
	}
	/* Its answer written, the one disconnected closes; nobody else
	 * goes, though the server is still near its budget (above 3/4). */
	pump_for(all, n, NULL, NULL, 200);
	conns_memory(e.set, &m);
	cr_assert_eq(m.disconnects, 1u, "%llu disconnects", (unsigned long long)m.disconnects);
	cr_assert_eq(e.refused, 1u);
	cr_assert_eq(e.refuse_code, WB_RESOURCE_EXHAUSTED);
	size_t gone = 0;
	for (size_t k = 0; k < 3; k++) {
		if (all[k]->closed || iclient_ready(all[k])) {
			expect_refused(all[k], WB_RESOURCE_EXHAUSTED);
			gone++;
		}
	}
	cr_assert_eq(gone, 1u, "not exactly one of the heaviest was disconnected");
	cr_assert_not_null(conns_find(e.set, spared.id), "the spared connection was closed");
	for (size_t k = 3; k < n; k++) {
		iclient_io(all[k]);
		cr_assert(!all[k]->closed, "connection %zu was closed", k);
	}
	queue_frame(light, 501, 8);
	cr_assert_eq(take_tag(light, &len), 501);
	cr_assert_eq(e.frames, frames + 2, "a large frame completed while paused");
	/* The heavy go: the paused one is read again and answered. */
	for (size_t k = 0; k < n; k++)
		if (all[k] != paused) {
			iclient_free(all[k]);
			all[k] = NULL;
		}
	static uint8_t rest[(1u << 20) - 900000];
	memset(rest, 0, sizeof(rest));
	cr_assert_eq(iclient_queue_raw(paused, rest, sizeof(rest)), 0);
	cr_assert_eq(take_tag(paused, &len), 99);
	uint64_t small = 4 * 64u * 1024u;
	cr_assert(pump_until(&paused, 1, held_at_most, &small), "memory was not given back");
	iclient_free(paused);
	iclient_free(light);
}

/* What a module holds for a connection (conn_mem_add()) is counted, shown
 * by conn_info() and given back; near the budget it pauses that
 * connection's next frames while another is served. */
Test(conn, what_modules_hold_is_counted_and_pauses_near_the_budget)
{
	struct conn_limits lim = defaults;
	lim.memory_budget = 2u << 20;
	start(&lim);
	e.hold = true;
	e.extra = 950000;
	struct iclient *a = iclient_new(e.port);
	cr_assert_not_null(a);
	for (uint32_t i = 0; i < 4; i++)
		queue_frame(a, i, 4);
	iclient_io(a);
	size_t want = 2;
	cr_assert(loop_run_until(&e.loop, frames_at_least, &want, WAIT_MS));
	run_ms(100);
	/* Two frames hold 1.9M: past 7/8 of 2 MiB after the second, so no
	 * third, and below the budget, so no disconnect. */
	cr_assert_eq(e.frames, 2u, "%zu frames taken", e.frames);
	struct conns_memory m;
	conns_memory(e.set, &m);
	cr_assert_eq(m.by_kind[CONN_MEM_READS], 1900000u);
	struct conn_info ci;
	conn_info(e.held[0], &ci);
	cr_assert_eq(ci.queued_reads, 1900000u);
	cr_assert_eq(ci.memory, ci.input_buffer + ci.output_buffer + ci.queued_reads + ci.writes);
	cr_assert_eq(m.disconnects, 0u);
	e.hold = false;
	struct iclient *b = iclient_new(e.port);
	cr_assert_not_null(b);
	size_t len;
	queue_frame(b, 77, 4);
	cr_assert_eq(take_tag(b, &len), 77);
	while (e.nheld > 0) {
		conn_mem_add(e.held[e.nheld - 1], CONN_MEM_READS, -(int64_t)e.extra);
		conn_release(e.held[--e.nheld]);
	}
	conns_flush(e.set);
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(take_tag(a, &len), i);
	conns_memory(e.set, &m);
	cr_assert_eq(m.by_kind[CONN_MEM_READS], 0u);
	iclient_free(a);
	iclient_free(b);
}

Test(conn, holds_pause_at_max_inflight)
{
	struct conn_limits lim = defaults;
	lim.max_inflight = 4;
	start(&lim);
	e.hold = true;
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	for (uint32_t i = 0; i < 10; i++)
		queue_frame(c, i, 4);
	iclient_io(c);
	size_t want = 4;
	cr_assert(loop_run_until(&e.loop, frames_at_least, &want, WAIT_MS));
	run_ms(100);
	cr_assert_eq(e.frames, 4, "read past max_inflight holds");
	/* One released: one more frame. */
	conn_release(e.held[0]);
	e.held[0] = e.held[--e.nheld];
	conns_flush(e.set);
	want = 5;
	cr_assert(loop_run_until(&e.loop, frames_at_least, &want, WAIT_MS));
	run_ms(100);
	cr_assert_eq(e.frames, 5);
	e.hold = false;
	while (e.nheld > 0)
		conn_release(e.held[--e.nheld]);
	conns_flush(e.set);
	want = 10;
	cr_assert(loop_run_until(&e.loop, frames_at_least, &want, WAIT_MS));
	size_t len;
	for (uint32_t i = 0; i < 10; i++)
		cr_assert_eq(take_tag(c, &len), i);
	iclient_free(c);
}

Test(conn, peer_closes_during_a_write)
{
	start(&defaults);
	e.reply_size = 8u << 20; /* far above what the sockets buffer */
	struct conn_limits lim = defaults;
	(void)lim;
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	queue_frame(c, 1, 4);
	iclient_io(c);
	size_t want = 1;
	cr_assert(loop_run_until(&e.loop, frames_at_least, &want, WAIT_MS));
	run_ms(50);
	/* Reset, not a graceful close: the write in flight fails. */
	struct linger lg = {1, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	iclient_free(c);
	cr_assert(loop_run_until(&e.loop, closed_at_least, &want, WAIT_MS));
	run_ms(50);
	cr_assert_eq(e.closed, 1);
	cr_assert_eq(conns_open(e.set), 0);
}

Test(conn, frame_over_the_limit_is_refused_then_closed)
{
	struct conn_limits lim = defaults;
	lim.max_frame = 1024;
	start(&lim);
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	uint8_t h[FRAME_HEADER];
	frame_put_header(h, 2048);
	cr_assert_eq(iclient_queue_raw(c, h, sizeof(h)), 0);
	expect_refused(c, WB_FRAME_TOO_LARGE);
	cr_assert_eq(e.frames, 0);
	iclient_free(c);
}

Test(conn, unfinished_frame_times_out)
{
	struct conn_limits lim = defaults;
	lim.frame_timeout_ms = 50;
	start(&lim);
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	cr_assert_eq(iclient_queue_raw(c, "\0\0", 2), 0);
	iclient_io(c);
	cr_assert(sees_close(c), "a started frame did not time out");
	cr_assert_eq(e.closed, 1);
	iclient_free(c);
}

/* Between frames the idle clock runs: a connection that sends nothing is
 * refused (RESOURCE_EXHAUSTED) and closed; one whose frames keep coming,
 * or that the busy hook says holds something, stays; 0 turns it off. */
Test(conn, an_idle_connection_is_closed_unless_busy)
{
	struct conn_limits lim = defaults;
	lim.idle_timeout_ms = 80;
	start(&lim);
	struct iclient *quiet = iclient_new(e.port);
	struct iclient *chatty = iclient_new(e.port);
	cr_assert_not_null(quiet);
	cr_assert_not_null(chatty);
	queue_frame(quiet, 1, 4);
	size_t len;
	cr_assert_eq(take_tag(quiet, &len), 1);
	/* chatty sends a frame every 20 ms for 300 ms: never idle that long. */
	for (uint32_t i = 0; i < 15; i++) {
		queue_frame(chatty, 100 + i, 4);
		cr_assert_eq(take_tag(chatty, &len), 100 + i);
		run_ms(20);
	}
	expect_refused(quiet, WB_RESOURCE_EXHAUSTED);
	cr_assert(!chatty->closed, "a connection that kept sending was closed as idle");
	iclient_free(quiet);
	iclient_free(chatty);

	/* Busy: kept past many idle periods, closed once no longer busy. */
	e.busy = true;
	struct iclient *holder = iclient_new(e.port);
	cr_assert_not_null(holder);
	queue_frame(holder, 7, 4);
	cr_assert_eq(take_tag(holder, &len), 7);
	size_t closed = e.closed;
	run_ms(400);
	iclient_io(holder);
	cr_assert(!holder->closed && e.closed == closed, "a busy connection was closed");
	e.busy = false;
	expect_refused(holder, WB_RESOURCE_EXHAUSTED);
	iclient_free(holder);
}

Test(conn, no_idle_timeout_when_it_is_zero)
{
	struct conn_limits lim = defaults; /* idle_timeout_ms 0 */
	start(&lim);
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	queue_frame(c, 3, 4);
	size_t len;
	cr_assert_eq(take_tag(c, &len), 3);
	run_ms(300);
	iclient_io(c);
	cr_assert(!c->closed && e.closed == 0 && e.refused == 0);
	iclient_free(c);
}

Test(conn, connection_limit_refuses_the_next)
{
	struct conn_limits lim = defaults;
	lim.max_connections = 1;
	start(&lim);
	struct iclient *a = iclient_new(e.port);
	cr_assert_not_null(a);
	queue_frame(a, 7, 4);
	size_t len;
	cr_assert_eq(take_tag(a, &len), 7);
	struct iclient *b = iclient_new(e.port);
	cr_assert_not_null(b);
	expect_refused(b, WB_RESOURCE_EXHAUSTED);
	/* The first is unaffected. */
	queue_frame(a, 8, 4);
	cr_assert_eq(take_tag(a, &len), 8);
	iclient_free(a);
	iclient_free(b);
}

/* One address may hold --max-connections-per-address; the next is refused
 * (RESOURCE_EXHAUSTED) and closed, and one more fits once one has gone. */
Test(conn, connections_per_address_are_bounded)
{
	struct conn_limits lim = defaults;
	lim.max_connections_per_address = 2;
	start(&lim);
	struct iclient *a = iclient_new(e.port), *b = iclient_new(e.port);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	size_t len;
	queue_frame(a, 1, 4);
	cr_assert_eq(take_tag(a, &len), 1);
	queue_frame(b, 2, 4);
	cr_assert_eq(take_tag(b, &len), 2);
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	expect_refused(c, WB_RESOURCE_EXHAUSTED);
	iclient_free(c);
	iclient_free(a);
	size_t closed = 2; /* c's and a's */
	loop_run_until(&e.loop, closed_at_least, &closed, WAIT_MS);
	struct iclient *d = iclient_new(e.port);
	cr_assert_not_null(d);
	queue_frame(d, 4, 4);
	cr_assert_eq(take_tag(d, &len), 4);
	iclient_free(b);
	iclient_free(d);
}

/* A connection that sends more than max_bytes_per_s is not read until the
 * bytes are paid for: 150 KB sent at once at 64 KiB/s (about 64 KiB at
 * once) are taken in part at first, and all of them in order later. The
 * rate is low enough that a slow run (valgrind) cannot earn the rest
 * while the first part is read. */
Test(conn, a_connection_over_its_byte_rate_is_held_back)
{
	struct conn_limits lim = defaults;
	lim.max_frame = 64u << 10;
	lim.max_bytes_per_s = 64u << 10;
	start(&lim);
	e.reply_size = 8;
	struct iclient *c = iclient_new(e.port);
	cr_assert_not_null(c);
	enum { N = 150, LEN = 1000 };
	static uint8_t f[FRAME_HEADER + LEN];
	for (uint32_t i = 0; i < N; i++) {
		frame_put_header(f, LEN);
		memcpy(f + FRAME_HEADER, &i, 4);
		cr_assert_eq(iclient_queue_raw(c, f, sizeof(f)), 0);
	}
	for (int i = 0; i < 100; i++) {
		iclient_io(c);
		run_ms(1);
	}
	cr_assert_lt(e.frames, N - 20, "%zu frames taken at once: not held back", e.frames);
	cr_assert_geq(conns_throttled(e.set), 1u);
	size_t len;
	for (uint32_t i = 0; i < N; i++)
		cr_assert_eq(take_tag(c, &len), i);
	cr_assert_eq(e.frames, N);
	iclient_free(c);
}

Test(conn, accept_sheds_load_when_no_memory)
{
	start(&defaults);
	/* Every allocation fails: each peer is accepted and closed at once,
	 * however many arrive in one loop turn. */
	struct iclient *c[3];
	for (int i = 0; i < 3; i++) {
		c[i] = iclient_new(e.port);
		cr_assert_not_null(c[i]);
	}
	fault_arm(1, true);
	for (int i = 0; i < 3; i++)
		cr_assert(sees_close(c[i]), "peer %d was neither served nor closed", i);
	cr_assert_gt(fault_failed(), 0, "no allocation failed: the test tested nothing");
	fault_disarm();
	cr_assert_eq(conns_open(e.set), 0);
	/* The listener is still polled: the next peer is served. */
	struct iclient *d = iclient_new(e.port);
	cr_assert_not_null(d);
	queue_frame(d, 42, 4);
	size_t len;
	cr_assert_eq(take_tag(d, &len), 42);
	for (int i = 0; i < 3; i++)
		iclient_free(c[i]);
	iclient_free(d);
}
