/* Bad input, one test each (issue 2, "Bad input"): whatever a client sends,
 * the server answers or closes that connection, keeps serving the others,
 * and loses nothing it acknowledged. Every test ends by checking that a new
 * client can still append and read, that the canary appended before the bad
 * input is intact, and that the server exits 0 on SIGTERM (under ASan, that
 * also means it leaked nothing). */
#include <criterion/criterion.h>
#include <poll.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e_util.h"
#include "frame.h"

static struct wb_append_result canary;
static uint64_t healthy_round;

TestSuite(badinput, .fini = e2e_suite_fini, .timeout = 120);

static const char *const canary_data[] = {"canary-0", "canary-1", "canary-2"};

/* Starts the server and appends the canary: acknowledged data that every
 * later check expects to find unchanged. */
static void start(const char *const *args)
{
	e2e_suite_start(args);
	healthy_round = 0;
	struct wb_client *c = e2e_suite_client("test_badinput");
	struct wb_new_event evs[3];
	for (int i = 0; i < 3; i++)
		evs[i] = (struct wb_new_event){.type = "Canary",
		                               .data = canary_data[i],
		                               .data_len = strlen(canary_data[i])};
	int rc = wb_append(c, "canary", WB_EXPECT_NO_STREAM, 0, evs, 3, &canary);
	cr_assert_eq(rc, 0, "canary: %s", wb_errmsg(c));
	wb_close(c);
}

/* The server still serves a new client, and the canary is intact. */
static void assert_healthy(void)
{
	cr_assert_neq(e2e_srv.pid, 0);
	struct wb_client *c = e2e_suite_client("test_badinput");
	cr_assert_eq(wb_ping(c), 0, "ping: %s", wb_errmsg(c));
	struct wb_page p;
	int rc = wb_read_stream(c, "canary", 0, false, 0, &p);
	cr_assert_eq(rc, 0, "canary read: %s: %s", wb_error_name(rc), wb_errmsg(c));
	cr_assert_eq(p.count, 3, "the canary has %zu events", p.count);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(p.events[i].position, canary.first_position + i);
		cr_assert_eq(p.events[i].data_len, strlen(canary_data[i]));
		cr_assert_eq(memcmp(p.events[i].data, canary_data[i], p.events[i].data_len), 0);
	}
	wb_page_free(&p);
	char text[32];
	snprintf(text, sizeof(text), "healthy-%llu", (unsigned long long)healthy_round++);
	struct wb_new_event e = {.type = "Healthy", .data = text, .data_len = strlen(text)};
	struct wb_append_result r;
	rc = wb_append(c, "healthy", WB_EXPECT_ANY, 0, &e, 1, &r);
	cr_assert_eq(rc, 0, "append: %s: %s", wb_error_name(rc), wb_errmsg(c));
	rc = wb_read_stream(c, "healthy", WB_END, true, 1, &p);
	cr_assert_eq(rc, 0, "read: %s", wb_errmsg(c));
	cr_assert_eq(p.count, 1);
	cr_assert_eq(p.events[0].position, r.first_position);
	cr_assert_eq(p.events[0].data_len, strlen(text));
	cr_assert_eq(memcmp(p.events[0].data, text, strlen(text)), 0);
	wb_page_free(&p);
	wb_close(c);
}

/* start(args) and a client of the server: how many tests begin. */
static struct wb_client *start_client(const char *const *args)
{
	start(args);
	return e2e_suite_client("test_badinput");
}

static void finish(void)
{
	assert_healthy();
	e2e_suite_stop();
}

static Whizbang__V1__Response *recv_one(int fd)
{
	Whizbang__V1__Response *r = NULL;
	int rc = e2e_recv_response(fd, E2E_CLIENT_TIMEOUT_MS, &r);
	cr_assert_eq(rc, 0, "no response: %s", wb_error_name(rc));
	return r;
}

/* Expects the next response to be error code with request id id and a
 * message (mentioning needle, when given). */
static void expect_error(int fd, uint64_t id, int code, const char *needle)
{
	Whizbang__V1__Response *r = recv_one(fd);
	cr_assert_eq(e2e_error_code(r), code, "want %s for request %llu, got %s (%s)",
	             wb_error_name(code), (unsigned long long)id, wb_error_name(e2e_error_code(r)),
	             r->error != NULL ? r->error->message : "no error");
	cr_assert_eq(r->id, id, "%s answered with id %llu, want %llu", wb_error_name(code),
	             (unsigned long long)r->id, (unsigned long long)id);
	cr_assert(r->error->message != NULL && r->error->message[0] != '\0', "%s without a message",
	          wb_error_name(code));
	if (needle != NULL)
		cr_assert(strstr(r->error->message, needle) != NULL,
		          "message \"%s\" does not mention \"%s\"", r->error->message, needle);
	whizbang__v1__response__free_unpacked(r, NULL);
}

static void expect_pong(int fd, uint64_t id)
{
	Whizbang__V1__Request req;
	Whizbang__V1__Ping ping;
	e2e_req_ping(&req, &ping, id, id * 1000 + 7);
	Whizbang__V1__Response *r = NULL;
	int rc = e2e_raw_call(fd, &req, &r);
	cr_assert_eq(rc, 0, "ping %llu: %s", (unsigned long long)id, wb_error_name(rc));
	cr_assert_eq(e2e_error_code(r), 0, "ping %llu: %s", (unsigned long long)id,
	             r->error != NULL ? r->error->message : "");
	cr_assert_eq(r->id, id);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_PONG);
	cr_assert_eq(r->pong->nonce, id * 1000 + 7);
	whizbang__v1__response__free_unpacked(r, NULL);
}

static void send_bytes(int fd, const void *buf, size_t len)
{
	int rc = e2e_send_all(fd, buf, len, 10000);
	cr_assert_eq(rc, 0, "send: %s", strerror(-rc));
}

/* ---------------------------------------------------------------- hand-made protobuf */

/* A growable buffer for writing protobuf by hand, for what protobuf-c will
 * not produce (strings with NUL bytes, invalid UTF-8, huge repeats). */
struct pb {
	uint8_t *buf;
	size_t len, cap;
};

static void pb_put(struct pb *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap > 0 ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		b->buf = realloc(b->buf, cap);
		cr_assert_not_null(b->buf);
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->buf + b->len, p, n);
	b->len += n;
}

/* Appends to b the frame of req with request id id. */
static void pack_request(struct pb *b, Whizbang__V1__Request *req, uint64_t id)
{
	req->id = id;
	size_t flen;
	uint8_t *f = e2e_pack(req, &flen);
	pb_put(b, f, flen);
	free(f);
}

/* Appends to b the frame of an AppendEvents request with id id of the n
 * events evs to stream. */
static void pack_append(struct pb *b, uint64_t id, const char *stream, Whizbang__V1__NewEvent **evs,
                        size_t n)
{
	Whizbang__V1__AppendEvents a = WHIZBANG__V1__APPEND_EVENTS__INIT;
	a.stream = (char *)stream;
	a.n_events = n;
	a.events = evs;
	Whizbang__V1__Request req = E2E_REQUEST(APPEND_EVENTS, append_events, &a);
	pack_request(b, &req, id);
}

static void pb_varint(struct pb *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;
	do {
		tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	pb_put(b, tmp, n);
}

static void pb_uint(struct pb *b, uint32_t field, uint64_t v)
{
	pb_varint(b, (uint64_t)field << 3);
	pb_varint(b, v);
}

static void pb_bytes(struct pb *b, uint32_t field, const void *p, size_t n)
{
	pb_varint(b, (uint64_t)field << 3 | 2);
	pb_varint(b, n);
	pb_put(b, p, n);
}

static void pb_free(struct pb *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

/* Wraps payload in a frame header and sends it. */
static void send_frame(int fd, const uint8_t *payload, size_t len)
{
	uint8_t hdr[FRAME_HEADER];
	frame_put_header(hdr, (uint32_t)len);
	struct pb f = {0};
	pb_put(&f, hdr, sizeof(hdr));
	pb_put(&f, payload, len);
	send_bytes(fd, f.buf, f.len);
	pb_free(&f);
}

/* One NewEvent: type, data and an optional id (id_len bytes). */
static void pb_event(struct pb *events, const char *type, size_t type_len, const void *id,
                     size_t id_len, const char *data)
{
	struct pb e = {0};
	if (id != NULL)
		pb_bytes(&e, 1, id, id_len);
	if (type_len > 0)
		pb_bytes(&e, 2, type, type_len);
	if (data != NULL)
		pb_bytes(&e, 3, data, strlen(data));
	pb_bytes(events, 4, e.buf, e.len);
	pb_free(&e);
}

/* Request { id, body field = inner }. */
static void send_request(int fd, uint64_t id, uint32_t body_field, const struct pb *inner)
{
	struct pb r = {0};
	pb_uint(&r, 1, id);
	pb_bytes(&r, body_field, inner->buf, inner->len);
	send_frame(fd, r.buf, r.len);
	pb_free(&r);
}

enum {
	F_HELLO = 2,
	F_PING = 3,
	F_APPEND = 4,
	F_READ_STREAM = 5,
	F_READ_ALL = 6,
	F_STREAM_INFO = 7,
};

/* Sends AppendEvents { stream (raw bytes), events: n events of type T } . */
static void send_append(int fd, uint64_t id, const char *stream, size_t stream_len, size_t n)
{
	struct pb a = {0};
	pb_bytes(&a, 1, stream, stream_len);
	for (size_t i = 0; i < n; i++)
		pb_event(&a, "T", 1, NULL, 0, "d");
	send_request(fd, id, F_APPEND, &a);
	pb_free(&a);
}

static uint64_t count_all(void)
{
	struct wb_client *c = e2e_suite_client("test_badinput");
	struct e2e_event *evs;
	size_t n;
	int rc = e2e_read_all(c, 0, NULL, NULL, 0, &evs, &n);
	cr_assert_eq(rc, 0, "read-all: %s", wb_errmsg(c));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(evs[i].position, i + 1);
	e2e_events_free(evs, n);
	wb_close(c);
	return n;
}

/* ---------------------------------------------------------------- frames */

/* Builds an AppendEvents request whose payload is exactly size bytes. */
static uint8_t *append_of_size(size_t size, size_t *len)
{
	size_t d1 = size / 2 - 64, d2 = d1;
	for (int attempt = 0; attempt < 8; attempt++) {
		char *a = malloc(d1 + 1), *b = malloc(d2 + 1);
		cr_assert(a != NULL && b != NULL);
		memset(a, 'a', d1);
		a[d1] = '\0';
		memset(b, 'b', d2);
		b[d2] = '\0';
		struct pb ap = {0};
		pb_bytes(&ap, 1, "exact", 5);
		pb_event(&ap, "T", 1, NULL, 0, a);
		pb_event(&ap, "T", 1, NULL, 0, b);
		struct pb r = {0};
		pb_uint(&r, 1, 2);
		pb_bytes(&r, F_APPEND, ap.buf, ap.len);
		free(a);
		free(b);
		pb_free(&ap);
		if (r.len == size) {
			*len = r.len;
			return r.buf;
		}
		d2 = d2 + size - r.len;
		pb_free(&r);
	}
	cr_assert_fail("cannot build a request of exactly %zu bytes", size);
	return NULL;
}

/* Sends the start of a frame of len bytes on fd: FRAME_TOO_LARGE with id 0
 * (its message holding needle, unless NULL), then the close; fd is closed.
 * Only the header and a little of the payload are sent, so that the
 * server's close is a FIN and not a reset that could discard its answer. */
static void too_large_then_closed(int fd, uint32_t len, const char *needle)
{
	uint8_t buf[FRAME_HEADER + 100];
	frame_put_header(buf, len);
	memset(buf + FRAME_HEADER, 0x55, 100);
	send_bytes(fd, buf, sizeof(buf));
	/* The refusal comes at once: a server that takes the frame (the
	 * negative control) fails here in 3 s, not the receive timeout. */
	struct pollfd p = {.fd = fd, .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 3000), 1, "nothing came back for a frame of %u bytes", len);
	expect_error(fd, 0, WB_FRAME_TOO_LARGE, needle);
	cr_assert(e2e_wait_closed(fd, 5000), "the connection stays open after FRAME_TOO_LARGE");
	close(fd);
}

Test(badinput, frame_over_max_frame_is_refused_and_closed)
{
	const char *args[] = {"--max-frame", "64K", NULL};
	start(args);

	/* Exactly max_frame is accepted. */
	int fd = e2e_suite_raw_hello();
	size_t len;
	uint8_t *req = append_of_size(65536, &len);
	send_frame(fd, req, len);
	free(req);
	Whizbang__V1__Response *r = recv_one(fd);
	cr_assert_eq(e2e_error_code(r), 0, "a frame of exactly max_frame: %s",
	             r->error != NULL ? r->error->message : "");
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* One byte more: FRAME_TOO_LARGE with id 0, then the close. */
	too_large_then_closed(fd, 65537, "65537");

	/* The same before Hello. */
	too_large_then_closed(e2e_suite_raw(), 65537, NULL);
	cr_assert_eq(count_all(), 3 + 2, "the refused frame wrote something");
	cr_assert_geq(e2e_log_count(&e2e_srv, "frame_too_large"), 2, "no log line per large frame");
	finish();
}

/* Before it authenticates a connection may only say Hello and Ping, so
 * its frames are bounded by --max-unauthenticated-frame (64K), not
 * --max-frame: 200 connections that each send a 4 MiB frame before Hello
 * cost a header's worth each. */
Test(badinput, unauthenticated_frames_are_bounded_before_hello)
{
	/* The negative control (test_badinput_unauth_lie) lifts the bound to
	 * --max-frame: the 65537-byte frame must then be taken. */
	const char *lie[] = {"--max-unauthenticated-frame", "4M", NULL};
	start(getenv("WB_BADINPUT_UNAUTH_LIE") != NULL ? lie : NULL);
	/* Exactly the limit before Hello: decoded, and answered "Hello first". */
	int fd = e2e_suite_raw();
	size_t len;
	uint8_t *req = append_of_size(65536, &len);
	send_frame(fd, req, len);
	expect_error(fd, 2, WB_BAD_REQUEST, "Hello");
	/* One byte more: refused by its header, and the connection closed. */
	too_large_then_closed(fd, 65537, "--max-unauthenticated-frame");

	/* After Hello (the suite's anonymous role is admin) --max-frame holds:
	 * a frame of a megabyte is taken. */
	fd = e2e_suite_raw_hello();
	free(req);
	req = append_of_size(1u << 20, &len);
	send_frame(fd, req, len);
	free(req);
	Whizbang__V1__Response *r = recv_one(fd);
	cr_assert_eq(e2e_error_code(r), 0, "a 1 MiB frame after Hello: %s",
	             r->error != NULL ? r->error->message : "");
	whizbang__v1__response__free_unpacked(r, NULL);
	close(fd);
	cr_assert_eq(count_all(), 3 + 2, "the appends wrote %llu events",
	             (unsigned long long)count_all());
	finish();
}

/* ASan reserves terabytes of address space, so the server's peak virtual
 * size says something only in a build without it. */
#if defined(__SANITIZE_ADDRESS__)
#define E2E_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define E2E_ASAN 1
#endif
#endif

static long vm_peak_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmPeak: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

Test(badinput, header_announcing_4gib_is_refused_without_allocating)
{
	start(NULL);
	long before = vm_peak_kib(e2e_srv.pid);
	const uint32_t sizes[] = {UINT32_MAX, 0x80000000u, (4u << 20) + 1};
	for (size_t k = 0; k < 3; k++) {
		int fd = e2e_suite_raw_hello();
		uint8_t hdr[FRAME_HEADER];
		frame_put_header(hdr, sizes[k]);
		send_bytes(fd, hdr, sizeof(hdr));
		expect_error(fd, 0, WB_FRAME_TOO_LARGE, NULL);
		cr_assert(e2e_wait_closed(fd, 5000), "open after a %u-byte header", sizes[k]);
		close(fd);
	}
	long after = vm_peak_kib(e2e_srv.pid);
#if !defined(E2E_ASAN)
	cr_assert(before > 0 && after - before < 512 * 1024,
	          "the server's peak virtual size grew from %ld to %ld KiB", before, after);
#else
	(void)before;
	(void)after;
#endif
	finish();
}

Test(badinput, undecodable_bytes_bad_request_and_connection_stays)
{
	start(NULL);
	int fd = e2e_suite_raw_hello();
	static const uint8_t g0[] = {0xff, 0xff, 0xff, 0xff}; /* wire type 7 */
	static const uint8_t g1[] = {0x08};                   /* truncated varint */
	static const uint8_t g2[] = {0x22, 0x10, 0x01};       /* length past the end */
	static const uint8_t g3[] = {0x08, 0x80, 0x80, 0x80, 0x80, 0x80,
	                             0x80, 0x80, 0x80, 0x80, 0x80, 0x01}; /* 11-byte varint */
	static const uint8_t g4[] = {0x22, 0x03, 0x0a, 0x05, 'a'};        /* bad nested length */
	static const uint8_t g5[] = {0x0b, 0x00};                         /* start group */
	struct {
		const uint8_t *p;
		size_t n;
	} garbage[] = {{g0, sizeof(g0)}, {g1, sizeof(g1)}, {g2, sizeof(g2)},
	               {g3, sizeof(g3)}, {g4, sizeof(g4)}, {g5, sizeof(g5)}};
	uint64_t ping_id = 100;
	for (size_t k = 0; k < sizeof(garbage) / sizeof(garbage[0]); k++) {
		send_frame(fd, garbage[k].p, garbage[k].n);
		expect_error(fd, 0, WB_BAD_REQUEST, NULL);
		expect_pong(fd, ping_id++);
	}
	/* Pseudo-random bytes: whatever they decode to, the answer is an
	 * error and the connection goes on. */
	uint32_t x = 12345;
	for (int k = 0; k < 50; k++) {
		uint8_t buf[64];
		size_t n = 1 + (size_t)k % sizeof(buf);
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (uint8_t)(x >> 16);
		}
		buf[0] = 0xfa; /* field 31, wire type 2: never a valid body */
		send_frame(fd, buf, n);
		Whizbang__V1__Response *r = recv_one(fd);
		cr_assert_eq(e2e_error_code(r), WB_BAD_REQUEST, "random frame %d: %d", k,
		             e2e_error_code(r));
		whizbang__v1__response__free_unpacked(r, NULL);
		expect_pong(fd, ping_id++);
	}
	/* An empty frame and a Request without a body are refused too. */
	send_frame(fd, NULL, 0);
	expect_error(fd, 0, WB_BAD_REQUEST, NULL);
	struct pb unknown = {0};
	pb_uint(&unknown, 1, 77);
	pb_bytes(&unknown, 999, "", 0); /* a body field this server does not know */
	send_frame(fd, unknown.buf, unknown.len);
	pb_free(&unknown);
	expect_error(fd, 77, WB_BAD_REQUEST, NULL);
	expect_pong(fd, ping_id++);
	close(fd);
	/* Each refusal is counted and logged (DESIGN.md section 4). */
	struct wb_client *c = e2e_suite_client("test_badinput");
	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(c, &st), 0);
	cr_assert_geq(st->errors_total, 6 + 50 + 2, "errors_total %llu",
	              (unsigned long long)st->errors_total);
	wb_stats_free(st);
	wb_close(c);
	/* Each is logged, or counted in a summary once the event's burst is
	 * spent (log.h); a clean stop writes every summary. */
	finish();
	size_t lines = e2e_log_count(&e2e_srv, "event=bad_frame ");
	uint64_t suppressed = e2e_log_suppressed(&e2e_srv, "bad_frame", NULL);
	cr_assert_geq(lines + suppressed, 6 + 50, "%zu bad_frame lines, %llu suppressed", lines,
	              (unsigned long long)suppressed);
}

/* A connection that keeps sending frames that do not decode speaks
 * something else: the 100th is answered saying the connection closes, and
 * it does; another connection is served meanwhile. */
Test(badinput, a_hundred_undecodable_frames_close_the_connection)
{
	start(NULL);
	int fd = e2e_suite_raw_hello();
	static const uint8_t g[] = {0xff, 0xff, 0xff, 0xff};
	for (int k = 1; k < 100; k++) {
		send_frame(fd, g, sizeof(g));
		expect_error(fd, 0, WB_BAD_REQUEST, "do not decode");
	}
	send_frame(fd, g, sizeof(g));
	expect_error(fd, 0, WB_BAD_REQUEST, "it is closed");
	cr_assert(e2e_wait_closed(fd, 5000), "the connection stayed open");
	close(fd);
	int other = e2e_suite_raw_hello();
	expect_pong(other, 5);
	close(other);
	finish();
}

/* Frames of 64 KiB and more are decoded off the loop; on one connection
 * the answers still come in the order of the requests, small and large
 * mixed, and a large frame that does not decode is answered in its place. */
Test(badinput, large_frames_decoded_off_the_loop_keep_their_order)
{
	start(NULL);
	int fd = e2e_suite_raw_hello();
	/* Sizes that make a later frame quicker to decode than an earlier
	 * one: without the connection suspended, they would overtake it. */
	static uint8_t data[2000000];
	memset(data, 0x41, sizeof(data));
	static const size_t sizes[10] = {0, 2000000, 100, 0, 0, 2000000, 0, 70000, 100};
	static Whizbang__V1__NewEvent ev;
	whizbang__v1__new_event__init(&ev);
	ev.type = (char *)"Big";
	ev.data.data = data;
	Whizbang__V1__NewEvent *evs[] = {&ev};
	struct pb all = {0};
	for (uint64_t id = 1; id <= 9; id++) {
		if (id % 3 == 1) {
			Whizbang__V1__Ping ping = WHIZBANG__V1__PING__INIT;
			ping.nonce = id;
			Whizbang__V1__Request req = E2E_REQUEST(PING, ping, &ping);
			pack_request(&all, &req, id);
		} else if (id == 5) {
			/* 70 000 bytes that do not decode: a field of wire type 7 */
			uint8_t hdr[FRAME_HEADER];
			frame_put_header(hdr, 70000);
			pb_put(&all, hdr, sizeof(hdr));
			static uint8_t junk[70000];
			memset(junk, 0xff, sizeof(junk));
			pb_put(&all, junk, sizeof(junk));
		} else {
			ev.data.len = sizes[id - 1];
			pack_append(&all, id, "big", evs, 1);
		}
	}
	send_bytes(fd, all.buf, all.len);
	pb_free(&all);
	/* A Ping is answered at once and may pass an append the writer still
	 * holds; appends are answered, and applied, in their order. */
	uint64_t version = 0, last_append = 0;
	bool seen[10] = {false};
	for (int k = 0; k < 9; k++) {
		Whizbang__V1__Response *r = recv_one(fd);
		if (r->id == 0) {
			cr_assert_eq(e2e_error_code(r), WB_BAD_REQUEST);
			seen[5] = true;
		} else {
			cr_assert_eq(e2e_error_code(r), 0, "%s",
			             r->error != NULL ? r->error->message : "");
			cr_assert(r->id < 10 && !seen[r->id]);
			seen[r->id] = true;
			if (r->id % 3 != 1) {
				cr_assert_gt(r->id, last_append, "append %llu answered after %llu",
				             (unsigned long long)r->id,
				             (unsigned long long)last_append);
				last_append = r->id;
				cr_assert_eq(r->append_events->stream_version, version++);
			}
		}
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	for (int id = 1; id <= 9; id++)
		cr_assert(seen[id], "no answer for %d", id);
	expect_pong(fd, 10);
	close(fd);
	finish();
}

/* A where clause nested 200 000 deep (a chain of `not`) inside a Commit:
 * refused before protobuf-c recurses into it, and the server lives on. */
Test(badinput, deeply_nested_clause_is_refused_without_recursion)
{
	start(NULL);
	int fd = e2e_suite_raw_hello();
	enum { LEVELS = 200000 };
	/* Built from the inside out, back to front, in one buffer: each level
	 * puts Expr.negate's tag and length before what it wraps. */
	size_t cap = (size_t)LEVELS * 5 + 16, pos = cap;
	uint8_t *e = malloc(cap);
	cr_assert_not_null(e);
	static const uint8_t exists[] = {0x1a, 0x03, 0x0a, 0x01, 'f'}; /* Expr.exists{field "f"} */
	pos -= sizeof(exists);
	memcpy(e + pos, exists, sizeof(exists));
	for (int i = 0; i < LEVELS; i++) {
		uint8_t v[10];
		size_t n = 0;
		for (uint64_t len = cap - pos;; len >>= 7) {
			v[n++] = (uint8_t)(len & 0x7f) | (len >= 0x80 ? 0x80 : 0);
			if (len < 0x80)
				break;
		}
		pos -= n;
		memcpy(e + pos, v, n);
		e[--pos] = 0x3a; /* field 7 (negate), wire type 2 */
	}
	struct pb where = {0}, upd = {0}, op = {0}, commit = {0}, req = {0};
	pb_bytes(&where, 1, e + pos, cap - pos);
	pb_bytes(&upd, 1, "T", 1);
	pb_bytes(&upd, 2, where.buf, where.len);
	pb_bytes(&op, 2, upd.buf, upd.len);
	pb_uint(&commit, 1, 1);
	pb_bytes(&commit, 3, op.buf, op.len);
	pb_uint(&req, 1, 9);
	pb_bytes(&req, 13, commit.buf, commit.len);
	cr_assert_lt(req.len, 4u << 20, "the frame fits --max-frame");
	send_frame(fd, req.buf, req.len);
	expect_error(fd, 0, WB_BAD_REQUEST, NULL);
	expect_pong(fd, 1);
	free(e);
	pb_free(&where);
	pb_free(&upd);
	pb_free(&op);
	pb_free(&commit);
	pb_free(&req);
	close(fd);
	finish();
}

/* A client that asks for a lot and never reads its socket: after SIGTERM
 * and --shutdown-timeout-ms the server closes it and exits, rather than
 * wait for ever on a write that cannot finish. */
Test(badinput, client_that_never_reads_does_not_hold_shutdown)
{
	struct wb_client *c = start_client((const char *[]){"--shutdown-timeout-ms", "300", NULL});
	static uint8_t big[4000];
	struct wb_new_event evs[100];
	for (int i = 0; i < 100; i++)
		evs[i] = (struct wb_new_event){.type = "Big", .data = big, .data_len = sizeof(big)};
	struct wb_append_result res;
	for (int k = 0; k < 10; k++)
		cr_assert_eq(wb_append(c, "big", WB_EXPECT_ANY, 0, evs, 100, &res), 0);
	wb_close(c);
	int fd = e2e_suite_raw_hello();
	/* 200 reads of 4 MB each: far more than the socket buffers hold. */
	for (uint64_t id = 1; id <= 200; id++) {
		Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
		ra.from_position = 1;
		ra.max_count = 1000;
		Whizbang__V1__Request req = E2E_REQUEST(READ_ALL, read_all, &ra);
		req.id = id;
		cr_assert_eq(e2e_send_request(fd, &req), 0);
	}
	e2e_sleep_ms(300);
	cr_assert_eq(kill(e2e_srv.pid, SIGTERM), 0);
	e2e_suite_wait_exit();
	close(fd);
	e2e_cleanup(&e2e_srv);
}

Test(badinput, request_before_hello)
{
	start(NULL);
	int fd = e2e_suite_raw();
	Whizbang__V1__Request req;
	Whizbang__V1__Ping ping;
	e2e_req_ping(&req, &ping, 5, 1);
	cr_assert_eq(e2e_send_request(fd, &req), 0);
	expect_error(fd, 5, WB_BAD_REQUEST, "Hello");
	send_append(fd, 6, "early", 5, 1);
	expect_error(fd, 6, WB_BAD_REQUEST, "Hello");
	cr_assert_eq(e2e_raw_hello(fd, 7), 0);
	expect_pong(fd, 8);
	close(fd);
	struct wb_client *c = e2e_suite_client("test_badinput");
	struct wb_stream_info si;
	cr_assert_eq(wb_stream_info(c, "early", &si), WB_NOT_FOUND,
	             "an append before Hello was stored");
	wb_close(c);
	finish();
}

static void send_hello_version(int fd, uint64_t id, uint32_t version)
{
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = version;
	Whizbang__V1__Request req = E2E_REQUEST(HELLO, hello, &h);
	req.id = id;
	cr_assert_eq(e2e_send_request(fd, &req), 0);
}

Test(badinput, unknown_protocol_version)
{
	start(NULL);
	int fd = e2e_suite_raw();
	send_hello_version(fd, 1, 2);
	expect_error(fd, 1, WB_UNSUPPORTED_VERSION, NULL);
	send_hello_version(fd, 2, 0);
	expect_error(fd, 2, WB_UNSUPPORTED_VERSION, NULL);
	send_hello_version(fd, 3, UINT32_MAX);
	expect_error(fd, 3, WB_UNSUPPORTED_VERSION, NULL);
	/* A refused Hello is no Hello. */
	Whizbang__V1__Request req;
	Whizbang__V1__Ping ping;
	e2e_req_ping(&req, &ping, 4, 1);
	cr_assert_eq(e2e_send_request(fd, &req), 0);
	expect_error(fd, 4, WB_BAD_REQUEST, "Hello");
	cr_assert_eq(e2e_raw_hello(fd, 5), 0);
	expect_pong(fd, 6);
	close(fd);
	finish();
}

/* ---------------------------------------------------------------- names and events */

Test(badinput, invalid_stream_names)
{
	start(NULL);
	int fd = e2e_suite_raw_hello();
	char long_name[257];
	memset(long_name, 's', 256);
	long_name[256] = '\0';
	struct {
		const char *name;
		size_t len;
		const char *what;
	} bad[] = {
	        {"", 0, "empty"},
	        {long_name, 256, "256 bytes"},
	        {"\xc3\x28", 2, "invalid continuation"},
	        {"ab\xc3", 3, "truncated sequence"},
	        {"\xc0\xaf", 2, "overlong"},
	        {"\xed\xa0\x80", 3, "surrogate"},
	        {"\xf4\x90\x80\x80", 4, "above U+10FFFF"},
	        {"\xff", 1, "0xff"},
	        {"a\x01"
	         "b",
	         3, "control U+0001"},
	        {"a\nb", 3, "newline"},
	        {"tab\there", 8, "tab"},
	        {"del\x7f", 4, "DEL"},
	        {"a\0b", 3, "NUL"},
	};
	uint64_t id = 10;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		send_append(fd, id, bad[k].name, bad[k].len, 1);
		Whizbang__V1__Response *r = recv_one(fd);
		cr_expect_eq(e2e_error_code(r), WB_BAD_REQUEST,
		             "append to a stream name (%s): got %s (%s)", bad[k].what,
		             wb_error_name(e2e_error_code(r)),
		             r->error != NULL ? r->error->message : "stored");
		cr_expect_eq(r->id, id, "answered with id %llu", (unsigned long long)r->id);
		whizbang__v1__response__free_unpacked(r, NULL);
		id++;
		/* Reads of such names are refused the same way. */
		struct pb rs = {0};
		pb_bytes(&rs, 1, bad[k].name, bad[k].len);
		static const struct {
			uint32_t field;
			const char *what;
		} reads[] = {{F_READ_STREAM, "read"}, {F_STREAM_INFO, "stream info"}};
		for (size_t j = 0; j < 2; j++, id++) {
			send_request(fd, id, reads[j].field, &rs);
			r = recv_one(fd);
			cr_expect_eq(e2e_error_code(r), WB_BAD_REQUEST,
			             "%s of a stream name (%s): got %s", reads[j].what, bad[k].what,
			             wb_error_name(e2e_error_code(r)));
			whizbang__v1__response__free_unpacked(r, NULL);
		}
		pb_free(&rs);
	}
	/* The longest names are fine: 255 ASCII bytes, and 255 bytes of
	 * two-byte characters plus one. */
	char ok1[256], ok2[256];
	memset(ok1, 'o', 255);
	ok1[255] = '\0';
	for (int i = 0; i < 127; i++)
		memcpy(ok2 + 2 * i, "\xc3\xa9", 2);
	ok2[254] = 'x';
	ok2[255] = '\0';
	const char *oks[] = {ok1, ok2, "x", "with space/and:punct-uation.ü✓"};
	for (size_t k = 0; k < 4; k++) {
		send_append(fd, id, oks[k], strlen(oks[k]), 1);
		Whizbang__V1__Response *r = recv_one(fd);
		cr_assert_eq(e2e_error_code(r), 0, "valid name %zu refused: %s", k,
		             r->error != NULL ? r->error->message : "");
		cr_assert_eq(r->id, id);
		whizbang__v1__response__free_unpacked(r, NULL);
		id++;
	}
	close(fd);
	cr_assert_eq(count_all(), 3 + 4, "refused appends wrote something");
	finish();
}

Test(badinput, invalid_events)
{
	const char *args[] = {"--max-append-events", "10", NULL};
	start(args);
	int fd = e2e_suite_raw_hello();
	char long_type[257];
	memset(long_type, 't', 256);
	uint8_t id5[5] = {1, 2, 3, 4, 5}, id17[17] = {0};
	uint64_t id = 10;

	struct {
		const char *type;
		size_t type_len;
		const void *eid;
		size_t eid_len;
		const char *what;
	} bad[] = {
	        {"", 0, NULL, 0, "empty type"},
	        {long_type, 256, NULL, 0, "256-byte type"},
	        {"a\x02", 2, NULL, 0, "control character in type"},
	        {"\xc3\x28", 2, NULL, 0, "invalid UTF-8 type"},
	        {"a\0b", 3, NULL, 0, "NUL in type"},
	        {"T", 1, id5, 5, "5-byte id"},
	        {"T", 1, id17, 17, "17-byte id"},
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		/* The bad event alone, and as the third of five. */
		for (int pos = 0; pos < 2; pos++) {
			struct pb a = {0};
			pb_bytes(&a, 1, "events", 6);
			for (int i = 0; i < (pos == 0 ? 1 : 5); i++) {
				if (pos == 0 || i == 2)
					pb_event(&a, bad[k].type, bad[k].type_len, bad[k].eid,
					         bad[k].eid_len, "d");
				else
					pb_event(&a, "Good", 4, NULL, 0, "d");
			}
			send_request(fd, id, F_APPEND, &a);
			pb_free(&a);
			Whizbang__V1__Response *r = recv_one(fd);
			cr_expect_eq(e2e_error_code(r), WB_BAD_REQUEST, "%s (%s): got %s",
			             bad[k].what, pos == 0 ? "alone" : "third of five",
			             wb_error_name(e2e_error_code(r)));
			cr_expect_eq(r->id, id);
			whizbang__v1__response__free_unpacked(r, NULL);
			id++;
		}
	}
	/* No events; more than --max-append-events; exactly that many. */
	send_append(fd, id, "events", 6, 0);
	expect_error(fd, id++, WB_BAD_REQUEST, NULL);
	send_append(fd, id, "events", 6, 11);
	expect_error(fd, id++, WB_BAD_REQUEST, "10");
	send_append(fd, id, "events", 6, 10);
	Whizbang__V1__Response *r = recv_one(fd);
	cr_assert_eq(e2e_error_code(r), 0, "10 events with --max-append-events 10: %s",
	             r->error != NULL ? r->error->message : "");
	cr_assert_eq(r->append_events->last_position - r->append_events->first_position, 9);
	whizbang__v1__response__free_unpacked(r, NULL);
	id++;
	/* An expected-version kind outside the enum. */
	struct pb a = {0};
	pb_bytes(&a, 1, "events", 6);
	pb_uint(&a, 2, 9);
	pb_event(&a, "T", 1, NULL, 0, "d");
	send_request(fd, id, F_APPEND, &a);
	pb_free(&a);
	expect_error(fd, id++, WB_BAD_REQUEST, NULL);
	/* Reading $all with more than 64 types, or a 256-byte prefix. */
	struct pb ra = {0};
	for (int i = 0; i < 65; i++)
		pb_bytes(&ra, 5, "T", 1);
	send_request(fd, id, F_READ_ALL, &ra);
	pb_free(&ra);
	expect_error(fd, id++, WB_BAD_REQUEST, NULL);
	pb_bytes(&ra, 4, long_type, 256);
	send_request(fd, id, F_READ_ALL, &ra);
	pb_free(&ra);
	expect_error(fd, id++, WB_BAD_REQUEST, NULL);
	pb_bytes(&ra, 5, "", 0);
	send_request(fd, id, F_READ_ALL, &ra);
	pb_free(&ra);
	expect_error(fd, id++, WB_BAD_REQUEST, NULL);
	expect_pong(fd, id++);
	close(fd);
	cr_assert_eq(count_all(), 3 + 10, "refused appends wrote something");
	finish();
}

/* ---------------------------------------------------------------- reads */

Test(badinput, read_count_is_clamped)
{
	struct wb_client *c = start_client((const char *[]){"--max-read-count", "5", NULL});
	cr_assert_eq(wb_server_info(c)->max_read_count, 5);
	struct wb_new_event evs[12];
	char text[12][8];
	for (int i = 0; i < 12; i++) {
		snprintf(text[i], sizeof(text[i]), "e%d", i);
		evs[i] = (struct wb_new_event){
		        .type = "E", .data = text[i], .data_len = strlen(text[i])};
	}
	struct wb_append_result res;
	cr_assert_eq(wb_append(c, "clamp", WB_EXPECT_ANY, 0, evs, 12, &res), 0);
	const uint32_t asks[] = {0, 6, 100, UINT32_MAX};
	for (size_t k = 0; k < 4; k++) {
		struct wb_page p;
		cr_assert_eq(wb_read_stream(c, "clamp", 0, false, asks[k], &p), 0);
		cr_assert_eq(p.count, 5, "read-stream max_count %u read %zu", asks[k], p.count);
		cr_assert_eq(p.next, 5);
		cr_assert_eq(p.end, false);
		wb_page_free(&p);
		cr_assert_eq(wb_read_stream(c, "clamp", WB_END, true, asks[k], &p), 0);
		cr_assert_eq(p.count, 5);
		cr_assert_eq(p.events[0].version, 11);
		wb_page_free(&p);
		cr_assert_eq(wb_read_all(c, 1, false, asks[k], NULL, NULL, 0, &p), 0);
		cr_assert_eq(p.count, 5, "read-all max_count %u read %zu", asks[k], p.count);
		cr_assert_eq(p.next, 6);
		wb_page_free(&p);
		cr_assert_eq(wb_read_all(c, WB_END, true, asks[k], "clamp", NULL, 0, &p), 0);
		cr_assert_eq(p.count, 5);
		wb_page_free(&p);
	}
	struct wb_page p;
	cr_assert_eq(wb_read_stream(c, "clamp", 0, false, 3, &p), 0);
	cr_assert_eq(p.count, 3);
	wb_page_free(&p);
	/* Paging with the clamped size still reads everything. */
	struct e2e_event *all;
	size_t n;
	cr_assert_eq(e2e_read_stream(c, "clamp", 0, &all, &n), 0);
	cr_assert_eq(n, 12);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(all[i].version, i);
	e2e_events_free(all, n);
	wb_close(c);
	finish();
}

/* Each event is about 20 KB, so a page can hold only a few of them within
 * --max-frame 64K: the server must shorten the page, not overflow the frame
 * or refuse the read. */
Test(badinput, read_answer_is_bounded_by_max_frame)
{
	struct wb_client *c = start_client((const char *[]){"--max-frame", "64K", NULL});
	static char data[20000];
	memset(data, 'z', sizeof(data));
	for (int i = 0; i < 20; i++) {
		data[0] = (char)('A' + i);
		struct wb_new_event e = {.type = "Bulky", .data = data, .data_len = sizeof(data)};
		struct wb_append_result r;
		cr_assert_eq(wb_append(c, "bulky", WB_EXPECT_ANY, 0, &e, 1, &r), 0, "%s",
		             wb_errmsg(c));
	}
	wb_close(c);
	int fd = e2e_suite_raw_hello();
	uint64_t from = 0, seen = 0, id = 2;
	for (int pages = 0;; pages++) {
		cr_assert(pages < 50, "paging does not end");
		Whizbang__V1__ReadStream rs = WHIZBANG__V1__READ_STREAM__INIT;
		rs.stream = (char *)"bulky";
		rs.from_version = from;
		Whizbang__V1__Request req = E2E_REQUEST(READ_STREAM, read_stream, &rs);
		req.id = id++;
		cr_assert_eq(e2e_send_request(fd, &req), 0);
		/* Read the frame header by hand to see the frame's size. */
		Whizbang__V1__Response *r = recv_one(fd);
		size_t packed = protobuf_c_message_get_packed_size(&r->base);
		cr_assert_leq(packed, 65536, "a read answer of %zu bytes above max_frame", packed);
		cr_assert_eq(e2e_error_code(r), 0, "%s", r->error != NULL ? r->error->message : "");
		const Whizbang__V1__ReadStreamResult *res = r->read_stream;
		cr_assert(res->n_events > 0 || res->end_of_stream, "an empty page before the end");
		for (size_t i = 0; i < res->n_events; i++) {
			cr_assert_eq(res->events[i]->version, seen);
			cr_assert_eq(res->events[i]->data.len, sizeof(data));
			cr_assert_eq(res->events[i]->data.data[0], 'A' + seen);
			seen++;
		}
		from = res->next_version;
		bool end = res->end_of_stream;
		whizbang__v1__response__free_unpacked(r, NULL);
		if (end)
			break;
	}
	cr_assert_eq(seen, 20);
	close(fd);
	finish();
}

/* ---------------------------------------------------------------- split frames */

/* Hello, an append to split-NNN and a read of split-base, as one byte
 * sequence. */
static uint8_t *split_sequence(unsigned n, size_t *len)
{
	struct pb all = {0};
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.client_name = (char *)"split";
	Whizbang__V1__Request req = E2E_REQUEST(HELLO, hello, &h);
	pack_request(&all, &req, 1);

	char stream[24];
	snprintf(stream, sizeof(stream), "split-%03u", n);
	Whizbang__V1__NewEvent e0 = WHIZBANG__V1__NEW_EVENT__INIT,
	                       e1 = WHIZBANG__V1__NEW_EVENT__INIT;
	e0.type = (char *)"Split";
	e0.data.data = (uint8_t *)"first";
	e0.data.len = 5;
	e1.type = (char *)"Split";
	e1.data.data = (uint8_t *)"second";
	e1.data.len = 6;
	Whizbang__V1__NewEvent *evs[2] = {&e0, &e1};
	pack_append(&all, 2, stream, evs, 2);

	Whizbang__V1__ReadStream rs = WHIZBANG__V1__READ_STREAM__INIT;
	rs.stream = (char *)"split-base";
	req = E2E_REQUEST(READ_STREAM, read_stream, &rs);
	pack_request(&all, &req, 3);
	*len = all.len;
	return all.buf;
}

static void check_split_answers(int fd, size_t offset)
{
	bool seen[4] = {false};
	for (int k = 0; k < 3; k++) {
		Whizbang__V1__Response *r = NULL;
		int rc = e2e_recv_response(fd, E2E_CLIENT_TIMEOUT_MS, &r);
		cr_assert_eq(rc, 0, "split at %zu: answer %d missing: %s", offset, k,
		             wb_error_name(rc));
		cr_assert_eq(e2e_error_code(r), 0, "split at %zu: request %llu failed: %s", offset,
		             (unsigned long long)r->id, r->error != NULL ? r->error->message : "");
		cr_assert(r->id >= 1 && r->id <= 3 && !seen[r->id], "split at %zu: id %llu", offset,
		          (unsigned long long)r->id);
		seen[r->id] = true;
		if (r->id == 1)
			cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_HELLO);
		if (r->id == 2) {
			cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS);
			cr_assert_eq(r->append_events->last_position,
			             r->append_events->first_position + 1);
			cr_assert_eq(r->append_events->stream_version, 1);
		}
		if (r->id == 3) {
			cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_READ_STREAM);
			cr_assert_eq(r->read_stream->n_events, 3);
		}
		whizbang__v1__response__free_unpacked(r, NULL);
	}
}

Test(badinput, frame_split_at_every_offset)
{
	struct wb_client *c = start_client(NULL);
	struct wb_new_event base[3];
	for (int i = 0; i < 3; i++)
		base[i] = (struct wb_new_event){.type = "Base", .data = "b", .data_len = 1};
	struct wb_append_result res;
	cr_assert_eq(wb_append(c, "split-base", WB_EXPECT_ANY, 0, base, 3, &res), 0);
	wb_close(c);

	size_t len;
	uint8_t *seq = split_sequence(0, &len);
	free(seq);
	unsigned n = 0;
	for (size_t i = 1; i < len; i++, n++) {
		size_t l2;
		seq = split_sequence(n, &l2);
		cr_assert_eq(l2, len);
		int fd = e2e_suite_raw();
		send_bytes(fd, seq, i);
		/* Not synchronisation: a pause so that the two parts
		 * usually arrive in two reads. */
		e2e_sleep_ms(1);
		send_bytes(fd, seq + i, len - i);
		check_split_answers(fd, i);
		close(fd);
		free(seq);
	}
	/* One more connection that sends every byte on its own. */
	seq = split_sequence(n++, &len);
	int fd = e2e_suite_raw();
	for (size_t i = 0; i < len; i++) {
		send_bytes(fd, seq + i, 1);
		if (i % 4 == 0)
			e2e_sleep_ms(1);
	}
	check_split_answers(fd, 0);
	close(fd);
	free(seq);

	cr_assert_eq(count_all(), 3 + 3 + 2 * n);
	c = e2e_suite_client("test_badinput");
	for (unsigned k = 0; k < n; k++) {
		char stream[24];
		snprintf(stream, sizeof(stream), "split-%03u", k);
		struct wb_stream_info si;
		cr_assert_eq(wb_stream_info(c, stream, &si), 0, "%s missing", stream);
		cr_assert_eq(si.event_count, 2);
		cr_assert_eq(si.last_position, si.first_position + 1);
	}
	wb_close(c);
	finish();
}

/* ---------------------------------------------------------------- slow and vanishing peers */

/* The first bytes of a frame of 100: its header and 10 bytes of payload. */
static void half_frame(uint8_t buf[FRAME_HEADER + 10])
{
	frame_put_header(buf, 100);
	memset(buf + FRAME_HEADER, 0x08, 10);
}

Test(badinput, half_frame_stall_is_closed_after_timeout)
{
	const char *args[] = {"--frame-timeout-ms", "300", NULL};
	start(args);
	/* Stalls inside the payload and inside the header. */
	for (int variant = 0; variant < 2; variant++) {
		int fd = e2e_suite_raw_hello();
		uint8_t buf[FRAME_HEADER + 10];
		half_frame(buf);
		int64_t t0 = e2e_now_ms();
		send_bytes(fd, buf, variant == 0 ? sizeof(buf) : 2);

		/* Another client is served during the stall. */
		struct wb_client *c = e2e_suite_client("test_badinput");
		for (int i = 0; i < 5; i++) {
			char text[16];
			snprintf(text, sizeof(text), "during-%d", i);
			struct wb_new_event e = {
			        .type = "T", .data = text, .data_len = strlen(text)};
			struct wb_append_result r;
			cr_assert_eq(wb_append(c, "during", WB_EXPECT_ANY, 0, &e, 1, &r), 0, "%s",
			             wb_errmsg(c));
			struct wb_page p;
			cr_assert_eq(wb_read_stream(c, "during", WB_END, true, 1, &p), 0);
			cr_assert_eq(p.events[0].position, r.first_position);
			wb_page_free(&p);
		}
		int64_t served = e2e_now_ms() - t0;

		cr_assert(e2e_wait_closed(fd, 5000), "a stalled frame was not closed within 5 s");
		int64_t elapsed = e2e_now_ms() - t0;
		cr_assert_geq(elapsed, 250, "closed after %lld ms, before the 300 ms timeout",
		              (long long)elapsed);
		cr_log_info("stall %d: others served within %lld ms, closed after %lld ms", variant,
		            (long long)served, (long long)elapsed);
		close(fd);
		cr_assert_eq(wb_ping(c), 0);
		wb_close(c);
	}
	/* A frame that completes within the timeout is answered. */
	int fd = e2e_suite_raw_hello();
	Whizbang__V1__Request req;
	Whizbang__V1__Ping ping;
	e2e_req_ping(&req, &ping, 9, 9);
	size_t len;
	uint8_t *f = e2e_pack(&req, &len);
	send_bytes(fd, f, len / 2);
	e2e_sleep_ms(100);
	send_bytes(fd, f + len / 2, len - len / 2);
	free(f);
	Whizbang__V1__Response *r = recv_one(fd);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_PONG);
	whizbang__v1__response__free_unpacked(r, NULL);
	close(fd);
	finish();
}

/* The frame timeout is about started frames: an idle connection between
 * frames stays open. */
Test(badinput, idle_connection_is_not_timed_out)
{
	const char *args[] = {"--frame-timeout-ms", "300", NULL};
	start(args);
	int fd = e2e_suite_raw_hello();
	cr_assert(!e2e_wait_closed(fd, 900), "an idle connection was closed");
	expect_pong(fd, 2);
	close(fd);
	finish();
}

Test(badinput, peer_closes_mid_frame)
{
	start(NULL);
	for (int variant = 0; variant < 4; variant++) {
		int fd = e2e_suite_raw_hello();
		uint8_t buf[FRAME_HEADER + 10];
		half_frame(buf);
		send_bytes(fd, buf, variant % 2 == 0 ? sizeof(buf) : 3);
		if (variant >= 2) {
			/* Close with a reset instead of a FIN. */
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(fd);
	}
	finish();
}

/* 200 appends of 1..4 events sent in one go on a connection that then
 * closes (with a FIN, or a reset) without reading an answer. */
enum { GONE = 200 };

static void gone_event(uint32_t variant, uint32_t j, uint32_t i, uint8_t id[16], char *text,
                       size_t len)
{
	memset(id, 0, 16);
	id[0] = 0x60;
	id[1] = (uint8_t)variant;
	id[2] = (uint8_t)(j >> 8);
	id[3] = (uint8_t)j;
	id[4] = (uint8_t)i;
	snprintf(text, len, "v=%u j=%u i=%u k=%u", variant, j, i, 1 + j % 4);
}

static uint8_t *gone_appends(uint32_t variant, size_t *len)
{
	static uint8_t padding[1024];
	struct pb all = {0};
	for (uint32_t j = 0; j < GONE; j++) {
		uint32_t k = 1 + j % 4;
		uint8_t ids[4][16];
		char text[4][48];
		Whizbang__V1__NewEvent evs[4];
		Whizbang__V1__NewEvent *ptrs[4];
		for (uint32_t i = 0; i < k; i++) {
			gone_event(variant, j, i, ids[i], text[i], sizeof(text[i]));
			whizbang__v1__new_event__init(&evs[i]);
			evs[i].id.data = ids[i];
			evs[i].id.len = 16;
			evs[i].type = (char *)"Gone";
			evs[i].data.data = (uint8_t *)text[i];
			evs[i].data.len = strlen(text[i]);
			/* Bulk, so that a reset catches the server mid-stream. */
			evs[i].metadata.data = padding;
			evs[i].metadata.len = sizeof(padding);
			ptrs[i] = &evs[i];
		}
		char stream[24];
		snprintf(stream, sizeof(stream), "gone-%u", j % 5);
		pack_append(&all, 10 + j, stream, ptrs, k);
	}
	*len = all.len;
	return all.buf;
}

/* Every stored Gone append is whole: its k events, in order, consecutive. */
static size_t check_gone_whole(struct wb_client *c, uint32_t variant, bool stored[GONE])
{
	struct e2e_event *all;
	size_t n;
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &all, &n), 0);
	size_t appends = 0;
	memset(stored, 0, GONE * sizeof(bool));
	for (size_t p = 0; p < n;) {
		cr_assert_eq(all[p].position, p + 1, "gap before position %zu", p + 1);
		unsigned v, j, i, k;
		if (strcmp(all[p].type, "Gone") != 0 ||
		    sscanf((const char *)all[p].data, "v=%u j=%u i=%u k=%u", &v, &j, &i, &k) != 4 ||
		    v != variant) {
			p++;
			continue;
		}
		cr_assert_eq(i, 0, "position %zu starts in the middle of append %u", p + 1, j);
		cr_assert(p + k <= n, "append %u is cut off at the end of the log", j);
		cr_assert(!stored[j], "append %u stored twice", j);
		stored[j] = true;
		for (unsigned q = 0; q < k; q++) {
			uint8_t id[16];
			char text[48];
			gone_event(variant, j, q, id, text, sizeof(text));
			const struct e2e_event *e = &all[p + q];
			cr_assert_eq(memcmp(e->id, id, 16), 0, "append %u is not whole", j);
			cr_assert_str_eq((const char *)e->data, text);
			cr_assert_eq(e->version, all[p].version + q);
		}
		appends++;
		p += k;
	}
	e2e_events_free(all, n);
	return appends;
}

Test(badinput, disconnect_with_requests_in_flight)
{
	struct wb_client *c = start_client(NULL);
	uint64_t base = 0;
	cr_assert_eq(e2e_connections(c, &base), 0);
	/* Variants: close after all of it; reset after all of it; close
	 * two thirds of the way through, in the middle of a frame. */
	for (uint32_t variant = 0; variant < 3; variant++) {
		size_t len;
		uint8_t *buf = gone_appends(variant, &len);
		int fd = e2e_suite_raw_hello();
		send_bytes(fd, buf, variant == 2 ? len * 2 / 3 : len);
		free(buf);
		if (variant == 1) {
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(fd);

		/* The server lets the connection go. */
		uint64_t now = 0;
		int64_t deadline = e2e_now_ms() + 10000;
		do {
			cr_assert_eq(e2e_connections(c, &now), 0);
			if (now == base)
				break;
			e2e_sleep_ms(10);
		} while (e2e_now_ms() < deadline);
		cr_assert_eq(now, base, "connections_current is %llu, not back to %llu",
		             (unsigned long long)now, (unsigned long long)base);
		/* The writer takes requests in order, so once this append is
		 * answered, every append the server took from the closed
		 * connection has been committed or refused. */
		struct wb_new_event marker = {.type = "Marker", .data = "m", .data_len = 1};
		struct wb_append_result mr;
		cr_assert_eq(wb_append(c, "marker", WB_EXPECT_ANY, 0, &marker, 1, &mr), 0);

		bool stored[GONE];
		size_t whole = check_gone_whole(c, variant, stored);
		cr_log_info("variant %u: %zu of %d appends stored", variant, whole, GONE);
		if (variant == 2)
			cr_assert(whole > 0 && whole < GONE,
			          "%zu appends stored from two thirds of the bytes", whole);

		/* Retrying every append with its ids never conflicts: a stored
		 * one answers its original positions. */
		for (uint32_t j = 0; j < GONE; j++) {
			uint32_t k = 1 + j % 4;
			uint8_t ids[4][16];
			char text[4][48];
			struct wb_new_event evs[4];
			for (uint32_t i = 0; i < k; i++) {
				gone_event(variant, j, i, ids[i], text[i], sizeof(text[i]));
				evs[i] = (struct wb_new_event){.id = ids[i],
				                               .type = "Gone",
				                               .data = text[i],
				                               .data_len = strlen(text[i])};
			}
			char stream[24];
			snprintf(stream, sizeof(stream), "gone-%u", j % 5);
			struct wb_append_result r;
			int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, evs, k, &r);
			cr_assert_eq(rc, 0, "retry of append %u: %s: %s", j, wb_error_name(rc),
			             wb_errmsg(c));
			if (stored[j])
				cr_assert(r.idempotent_replay, "stored append %u was written again",
				          j);
		}
		cr_assert_eq(check_gone_whole(c, variant, stored), GONE);
	}
	wb_close(c);
	cr_assert_eq(e2e_log_count(&e2e_srv, "level=error"), 0, "errors in the server log");
	finish();
}

/* ---------------------------------------------------------------- many connections */

/* Waits until the server has accepted total connections since it started.
 * Without this, a burst deeper than the listen backlog could leave
 * connections the kernel completed for the client but never queued for the
 * server, and the count would not add up. */
static void wait_accepted(struct wb_client *c, uint64_t total)
{
	int64_t deadline = e2e_now_ms() + 10000;
	for (;;) {
		Whizbang__V1__ServerStats *st;
		cr_assert_eq(wb_stats(c, &st), 0, "%s", wb_errmsg(c));
		uint64_t now = st->connections_total;
		wb_stats_free(st);
		if (now >= total)
			return;
		cr_assert(e2e_now_ms() < deadline, "only %llu of %llu connections accepted",
		          (unsigned long long)now, (unsigned long long)total);
		e2e_sleep_ms(2);
	}
}

Test(badinput, burst_of_1000_connections)
{
	/* Room for 1000 sockets at once when the hard limit allows it. */
	struct rlimit rl;
	size_t wave = 1000;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1100) {
		rlim_t want = rl.rlim_max < 1100 ? rl.rlim_max : 1100;
		rl.rlim_cur = want;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1100)
			wave = rl.rlim_cur > 200 ? (size_t)(rl.rlim_cur - 100) / 2 : 50;
	}
	struct wb_client *c = start_client(NULL);
	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(c, &st), 0);
	uint64_t base = st->connections_current;
	uint64_t base_total = st->connections_total;
	wb_stats_free(st);

	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	Whizbang__V1__Request req = E2E_REQUEST(HELLO, hello, &h);
	req.id = 1;
	size_t hlen;
	uint8_t *hello = e2e_pack(&req, &hlen);
	static int fds[1000];
	for (size_t done = 0; done < 1000;) {
		size_t n = 1000 - done < wave ? 1000 - done : wave;
		for (size_t i = 0; i < n; i++) {
			size_t k = done + i;
			fds[i] = e2e_suite_raw();
			if (k % 3 == 0)
				send_bytes(fds[i], hello, hlen);
			else if (k % 5 == 1)
				send_bytes(fds[i], hello, hlen / 2);
			if (i % 250 == 249)
				wait_accepted(c, base_total + k + 1);
		}
		for (size_t i = 0; i < n; i++) {
			if ((done + i) % 7 == 0) {
				struct linger lg = {.l_onoff = 1, .l_linger = 0};
				setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			}
			close(fds[i]);
		}
		done += n;
	}
	free(hello);

	uint64_t now = 0;
	int64_t deadline = e2e_now_ms() + 15000;
	for (;;) {
		cr_assert_eq(wb_stats(c, &st), 0, "%s", wb_errmsg(c));
		now = st->connections_current;
		uint64_t total = st->connections_total;
		wb_stats_free(st);
		if (now == base && total >= base_total + 1000)
			break;
		cr_assert(e2e_now_ms() < deadline,
		          "connections_current %llu (baseline %llu), total %llu (+%llu) after 15 s",
		          (unsigned long long)now, (unsigned long long)base,
		          (unsigned long long)total, (unsigned long long)(total - base_total));
		e2e_sleep_ms(20);
	}
	wb_close(c);
	finish();
}

Test(badinput, max_connections_refuses_the_next_one)
{
	const char *args[] = {"--max-connections", "5", NULL};
	start(args);
	struct wb_client *cs[5];
	for (int i = 0; i < 5; i++)
		cs[i] = e2e_suite_client("test_badinput");

	/* The sixth is told why, then closed. */
	int fd = e2e_suite_raw();
	expect_error(fd, 0, WB_RESOURCE_EXHAUSTED, NULL);
	cr_assert(e2e_wait_closed(fd, 5000), "the sixth connection stays open");
	close(fd);
	struct wb_client *extra = NULL;
	struct wb_options opts = {.timeout_ms = 5000};
	char msg[256];
	int rc = wb_connect(&extra, e2e_srv.address, &opts, msg, sizeof(msg));
	cr_assert_neq(rc, 0, "a sixth client connected");
	cr_log_info("the sixth client: %s: %s", wb_error_name(rc), msg);

	/* The first five keep working. */
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(wb_ping(cs[i]), 0, "client %d: %s", i, wb_errmsg(cs[i]));
		char text[8];
		snprintf(text, sizeof(text), "c%d", i);
		struct wb_new_event e = {.type = "T", .data = text, .data_len = strlen(text)};
		struct wb_append_result r;
		cr_assert_eq(wb_append(cs[i], "five", WB_EXPECT_ANY, 0, &e, 1, &r), 0, "%s",
		             wb_errmsg(cs[i]));
	}
	/* Once one leaves, a new one gets in. */
	wb_close(cs[4]);
	cs[4] = NULL;
	int64_t deadline = e2e_now_ms() + 10000;
	for (;;) {
		uint64_t now;
		cr_assert_eq(e2e_connections(cs[0], &now), 0);
		if (now == 4)
			break;
		cr_assert(e2e_now_ms() < deadline, "connections_current stays at %llu",
		          (unsigned long long)now);
		e2e_sleep_ms(10);
	}
	cs[4] = e2e_suite_client("test_badinput");
	for (int i = 0; i < 5; i++)
		wb_close(cs[i]);
	finish();
}

/* ---------------------------------------------------------------- allocation budget */

/* A frame made of many empty repeated elements: small on the wire, large
 * once unpacked. The server must refuse it without unbounded allocation. */
static void empty_elements(int fd, uint64_t id, uint32_t body_field, uint32_t elem_field,
                           size_t count)
{
	struct pb inner = {0};
	if (body_field == F_APPEND)
		pb_bytes(&inner, 1, "x", 1);
	for (size_t i = 0; i < count; i++)
		pb_bytes(&inner, elem_field, "", 0);
	send_request(fd, id, body_field, &inner);
	pb_free(&inner);
	Whizbang__V1__Response *r = recv_one(fd);
	int code = e2e_error_code(r);
	cr_assert(code == WB_BAD_REQUEST || code == WB_RESOURCE_EXHAUSTED,
	          "%zu empty elements (%zu bytes): got %s", count, 2 * count, wb_error_name(code));
	whizbang__v1__response__free_unpacked(r, NULL);
}

Test(badinput, many_empty_elements_are_refused)
{
	const char *args[] = {"--max-append-events", "100000", NULL};
	start(args);
	int fd = e2e_suite_raw_hello();
	empty_elements(fd, 2, F_APPEND, 4, 30000); /* 60 KB of empty NewEvents */
	expect_pong(fd, 3);
	empty_elements(fd, 4, F_APPEND, 4, 500000); /* 1 MB */
	expect_pong(fd, 5);
	empty_elements(fd, 6, F_APPEND, 4, 1900000); /* close to 4 MB */
	expect_pong(fd, 7);
	empty_elements(fd, 8, F_READ_ALL, 5, 30000); /* 60 KB of empty type filters */
	expect_pong(fd, 9);
	close(fd);
	cr_assert_eq(count_all(), 3);
	finish();
}

/* ---------------------------------------------------------------- slow readers */

/* A client that pipelines appends and reads and then does not read its
 * answers for a while is paused (its output is bounded), not dropped: the
 * frames it sent were complete, so the frame timeout does not apply. */
Test(badinput, slow_reader_is_paused_not_closed)
{
	struct wb_client *c = start_client((const char *[]){"--max-output-per-connection", "64K",
	                                                    "--frame-timeout-ms", "200", NULL});
	static char kb[1024];
	memset(kb, 'k', sizeof(kb));
	struct wb_new_event bulk[16];
	for (int i = 0; i < 16; i++)
		bulk[i] = (struct wb_new_event){.type = "Bulk", .data = kb, .data_len = sizeof(kb)};
	struct wb_append_result res;
	cr_assert_eq(wb_append(c, "bulk", WB_EXPECT_ANY, 0, bulk, 16, &res), 0);
	wb_close(c);

	/* About 3 MB of answers: more than the socket buffers hold. */
	enum { PAIRS = 200 };
	struct pb all = {0};
	for (uint64_t j = 0; j < PAIRS; j++) {
		Whizbang__V1__NewEvent e = WHIZBANG__V1__NEW_EVENT__INIT;
		e.type = (char *)"Slow";
		e.data.data = (uint8_t *)"s";
		e.data.len = 1;
		Whizbang__V1__NewEvent *ep = &e;
		pack_append(&all, 1000 + j, "slow", &ep, 1);
		Whizbang__V1__ReadStream rs = WHIZBANG__V1__READ_STREAM__INIT;
		rs.stream = (char *)"bulk";
		rs.max_count = 16;
		Whizbang__V1__Request req = E2E_REQUEST(READ_STREAM, read_stream, &rs);
		pack_request(&all, &req, 2000 + j);
	}
	int fd = e2e_suite_raw_hello();
	send_bytes(fd, all.buf, all.len);
	pb_free(&all);

	/* The stall itself: nothing is read for five frame timeouts. */
	e2e_sleep_ms(1000);
	bool seen[2 * PAIRS] = {false};
	for (int k = 0; k < 2 * PAIRS; k++) {
		/* And again now and then, once answers have started to flow. */
		if (k % 100 == 99)
			e2e_sleep_ms(250);
		Whizbang__V1__Response *r = NULL;
		int rc = e2e_recv_response(fd, E2E_CLIENT_TIMEOUT_MS, &r);
		cr_assert_eq(rc, 0,
		             "answer %d of %d: %s (the server dropped a slow reader; see "
		             "frame_timeout in its log: %zu)",
		             k, 2 * PAIRS, wb_error_name(rc),
		             e2e_log_count(&e2e_srv, "frame_timeout"));
		cr_assert_eq(e2e_error_code(r), 0, "%s", r->error != NULL ? r->error->message : "");
		size_t slot = r->id >= 2000 ? PAIRS + (r->id - 2000) : r->id - 1000;
		cr_assert(slot < 2 * PAIRS && !seen[slot], "unexpected id %llu",
		          (unsigned long long)r->id);
		seen[slot] = true;
		if (r->id >= 2000)
			cr_assert_eq(r->read_stream->n_events, 16);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	close(fd);
	finish();
}

/* A connection paused at --max-inflight holds complete frames that wait for
 * the writer, not a frame in the middle of arriving: however long the
 * writer takes, the frame timeout must not close it. Each append holds
 * 10000 events, so that each batch takes longer than the 10 ms timeout. */
Test(badinput, paused_connection_is_not_frame_timed_out)
{
	const char *args[] = {"--max-inflight", "1", "--frame-timeout-ms", "10", NULL};
	start(args);
	enum { N = 8, EVENTS = 10000 };
	static Whizbang__V1__NewEvent evs[EVENTS];
	static Whizbang__V1__NewEvent *ptrs[EVENTS];
	static uint8_t data[100];
	memset(data, 0x42, sizeof(data));
	for (size_t i = 0; i < EVENTS; i++) {
		whizbang__v1__new_event__init(&evs[i]);
		evs[i].type = (char *)"Heavy";
		evs[i].data.data = data;
		evs[i].data.len = sizeof(data);
		ptrs[i] = &evs[i];
	}
	struct pb all = {0};
	for (uint64_t j = 0; j < N; j++) {
		pack_append(&all, 100 + j, "heavy", ptrs, EVENTS);
	}
	int fd = e2e_suite_raw_hello();
	send_bytes(fd, all.buf, all.len);
	pb_free(&all);
	int64_t t0 = e2e_now_ms();
	for (uint64_t j = 0; j < N; j++) {
		Whizbang__V1__Response *r = NULL;
		int rc = e2e_recv_response(fd, E2E_CLIENT_TIMEOUT_MS, &r);
		cr_assert_eq(rc, 0, "answer %llu of %d: %s; frame_timeout lines in the log: %zu",
		             (unsigned long long)j, N, wb_error_name(rc),
		             e2e_log_count(&e2e_srv, "frame_timeout"));
		cr_assert_eq(e2e_error_code(r), 0, "%s", r->error != NULL ? r->error->message : "");
		cr_assert_eq(r->id, 100 + j, "appends on one connection answered out of order");
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	cr_log_info("%d appends of %d events answered in %lld ms", N, EVENTS,
	            (long long)(e2e_now_ms() - t0));
	close(fd);
	finish();
}
