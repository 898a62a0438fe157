/* Tests of the frame codec (proto/frame.h), the protobuf helpers
 * (proto/wire.h) and the error table (proto/wb_error.h).
 *
 * The decoder is driven the way a connection drives it: bytes arrive in
 * pieces, and after each piece every whole frame at the front is handled. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "wb_error.h"
#include "wire.h"

/* Frames of these payload lengths are concatenated into one buffer; the
 * payload bytes are a pattern that differs per frame. */
static const uint32_t frame_lens[] = {3, 0, 1, 300, 0, 17};
#define NFRAMES (sizeof(frame_lens) / sizeof(frame_lens[0]))
#define LIMIT 1024u

static uint8_t pattern(size_t frame, size_t i)
{
	return (uint8_t)(frame * 31 + i * 7 + 1);
}

/* Builds the concatenated frames; *len receives the total and ends[k] the
 * offset just past frame k. */
static uint8_t *build_frames(size_t *len, size_t ends[NFRAMES])
{
	size_t total = 0;
	for (size_t k = 0; k < NFRAMES; k++)
		total += FRAME_HEADER + frame_lens[k];
	uint8_t *buf = malloc(total);
	cr_assert_not_null(buf);
	size_t off = 0;
	for (size_t k = 0; k < NFRAMES; k++) {
		frame_put_header(buf + off, frame_lens[k]);
		off += FRAME_HEADER;
		for (size_t i = 0; i < frame_lens[k]; i++)
			buf[off + i] = pattern(k, i);
		off += frame_lens[k];
		ends[k] = off;
	}
	*len = total;
	return buf;
}

static void check_payload(size_t k, const uint8_t *payload, uint32_t plen)
{
	cr_assert_eq(plen, frame_lens[k], "frame %zu: payload_len %u, want %u", k, plen,
	             frame_lens[k]);
	for (size_t i = 0; i < plen; i++)
		cr_assert_eq(payload[i], pattern(k, i), "frame %zu byte %zu", k, i);
}

/* Decodes every whole frame at the front of buf[0..len) the way a connection
 * does, checking each against the expected frames from index *next on.
 * Returns the bytes consumed; the status after the last whole frame must be
 * FRAME_AGAIN. */
static size_t drain(const uint8_t *buf, size_t len, size_t *next)
{
	size_t pos = 0;
	for (;;) {
		const uint8_t *payload = NULL;
		uint32_t plen = 0xDEADBEEF;
		size_t used = 0;
		enum frame_status st =
		        frame_decode(buf + pos, len - pos, LIMIT, &payload, &plen, &used);
		if (st == FRAME_AGAIN)
			return pos;
		cr_assert_eq(st, FRAME_OK, "status %d at offset %zu of %zu", st, pos, len);
		cr_assert_lt(*next, NFRAMES, "more frames decoded than were sent");
		cr_assert_eq(payload, buf + pos + FRAME_HEADER);
		check_payload(*next, payload, plen);
		cr_assert_eq(used, FRAME_HEADER + frame_lens[*next]);
		pos += used;
		(*next)++;
	}
}

Test(frame, every_prefix_of_several_frames)
{
	size_t total;
	size_t ends[NFRAMES];
	uint8_t *all = build_frames(&total, ends);

	for (size_t p = 0; p <= total; p++) {
		/* An exact-size copy, so that a read past the prefix is caught
		 * by the sanitizers and valgrind. */
		uint8_t *buf = malloc(p > 0 ? p : 1);
		cr_assert_not_null(buf);
		memcpy(buf, all, p);
		size_t next = 0;
		size_t used = drain(buf, p, &next);
		size_t whole = 0;
		while (whole < NFRAMES && ends[whole] <= p)
			whole++;
		cr_assert_eq(next, whole, "prefix %zu: %zu frames decoded, %zu are whole", p, next,
		             whole);
		cr_assert_eq(used, whole > 0 ? ends[whole - 1] : 0, "prefix %zu", p);
		free(buf);
	}
	free(all);
}

Test(frame, split_into_two_reads_at_every_offset)
{
	size_t total;
	size_t ends[NFRAMES];
	uint8_t *all = build_frames(&total, ends);
	uint8_t *conn = malloc(total);
	cr_assert_not_null(conn);

	for (size_t split = 0; split <= total; split++) {
		size_t next = 0;
		size_t in_len = split;
		memcpy(conn, all, split);
		size_t used = drain(conn, in_len, &next);
		memmove(conn, conn + used, in_len - used);
		in_len -= used;
		memcpy(conn + in_len, all + split, total - split);
		in_len += total - split;
		used = drain(conn, in_len, &next);
		cr_assert_eq(next, NFRAMES, "split %zu: %zu frames", split, next);
		cr_assert_eq(used, in_len, "split %zu: %zu bytes left over", split, in_len - used);
	}
	free(conn);
	free(all);
}

Test(frame, byte_by_byte)
{
	size_t total;
	size_t ends[NFRAMES];
	uint8_t *all = build_frames(&total, ends);
	uint8_t *conn = malloc(total);
	cr_assert_not_null(conn);
	size_t in_len = 0;
	size_t next = 0;

	for (size_t i = 0; i < total; i++) {
		conn[in_len++] = all[i];
		size_t used = drain(conn, in_len, &next);
		memmove(conn, conn + used, in_len - used);
		in_len -= used;
	}
	cr_assert_eq(next, NFRAMES);
	cr_assert_eq(in_len, 0);
	free(conn);
	free(all);
}

Test(frame, zero_length_frame)
{
	uint8_t buf[FRAME_HEADER];
	const uint8_t *payload = NULL;
	uint32_t plen = 99;
	size_t used = 0;

	frame_put_header(buf, 0);
	cr_assert_eq(frame_decode(buf, sizeof(buf), LIMIT, &payload, &plen, &used), FRAME_OK);
	cr_assert_eq(plen, 0);
	cr_assert_eq(used, FRAME_HEADER);
	cr_assert_eq(payload, buf + FRAME_HEADER);
	cr_assert_eq(frame_decode(buf, 3, LIMIT, &payload, &plen, &used), FRAME_AGAIN);
	/* A limit of zero still accepts an empty frame. */
	cr_assert_eq(frame_decode(buf, sizeof(buf), 0, &payload, &plen, &used), FRAME_OK);
}

Test(frame, length_exactly_at_the_limit)
{
	size_t len = FRAME_HEADER + LIMIT;
	uint8_t *buf = calloc(1, len);
	cr_assert_not_null(buf);
	const uint8_t *payload = NULL;
	uint32_t plen = 0;
	size_t used = 0;

	frame_put_header(buf, LIMIT);
	cr_assert_eq(frame_decode(buf, len - 1, LIMIT, &payload, &plen, &used), FRAME_AGAIN);
	cr_assert_eq(frame_decode(buf, len, LIMIT, &payload, &plen, &used), FRAME_OK);
	cr_assert_eq(plen, LIMIT);
	cr_assert_eq(used, len);
	free(buf);
}

Test(frame, length_above_the_limit_is_an_error_from_the_header_alone)
{
	uint8_t buf[FRAME_HEADER];
	const uint8_t *payload = (const uint8_t *)"sentinel";
	const uint8_t *const sentinel = payload;
	uint32_t plen = 0;
	size_t used = 12345;

	frame_put_header(buf, LIMIT + 1);
	/* Only the header has arrived: the decoder must not wait for (and the
	 * caller must not buffer) the announced bytes before refusing. */
	for (size_t n = 0; n < FRAME_HEADER; n++)
		cr_assert_eq(frame_decode(buf, n, LIMIT, &payload, &plen, &used), FRAME_AGAIN);
	cr_assert_eq(frame_decode(buf, sizeof(buf), LIMIT, &payload, &plen, &used), FRAME_ERROR);
	cr_assert_eq(plen, LIMIT + 1);
	cr_assert_eq(payload, sentinel, "payload must be untouched on FRAME_ERROR");
	cr_assert_eq(used, 12345, "consumed must be untouched on FRAME_ERROR");
}

Test(frame, all_ones_header)
{
	uint8_t buf[FRAME_HEADER + 8] = {0xFF, 0xFF, 0xFF, 0xFF};
	const uint8_t *payload = NULL;
	uint32_t plen = 0;
	size_t used = 0;

	cr_assert_eq(frame_decode(buf, sizeof(buf), 4u << 20, &payload, &plen, &used), FRAME_ERROR);
	cr_assert_eq(plen, 0xFFFFFFFFu);
	/* With no limit at all it is merely incomplete; no overflow in the
	 * length arithmetic. */
	cr_assert_eq(frame_decode(buf, sizeof(buf), UINT32_MAX, &payload, &plen, &used),
	             FRAME_AGAIN);
}

Test(frame, header_round_trip)
{
	static const uint32_t values[] = {0,          1,          255,        256,
	                                  0x01020304, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF};
	uint8_t h[FRAME_HEADER];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		frame_put_header(h, values[i]);
		cr_assert_eq(frame_get_header(h), values[i]);
	}
	frame_put_header(h, 0x01020304);
	cr_assert_eq(h[0], 1);
	cr_assert_eq(h[1], 2);
	cr_assert_eq(h[2], 3);
	cr_assert_eq(h[3], 4, "the header is big-endian");
}

/* ------------------------------------------------------------------ wire */

#define BIG_BUDGET ((size_t)64 << 20)

static uint8_t id_bytes[3][16];

/* Fills req with an AppendEvents of three events; the storage lives in
 * statics and the arrays given. */
static void make_append(Whizbang__V1__Request *req, Whizbang__V1__AppendEvents *a,
                        Whizbang__V1__NewEvent ev[3], Whizbang__V1__NewEvent *ptrs[3])
{
	static char types[3][8] = {"Created", "Paid", "Shipped"};
	static uint8_t data[3][4] = {{1, 2, 3, 4}, {0}, {0xFF, 0, 0xFF, 0}};

	whizbang__v1__request__init(req);
	whizbang__v1__append_events__init(a);
	req->id = 0x0123456789ABCDEFull;
	req->body_case = WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS;
	req->append_events = a;
	a->stream = "orders-42";
	a->expected = WHIZBANG__V1__EXPECTED_VERSION__EXACT;
	a->expected_version = 7;
	for (size_t i = 0; i < 3; i++) {
		whizbang__v1__new_event__init(&ev[i]);
		memset(id_bytes[i], (int)(0xA0 + i), 16);
		ev[i].id.data = id_bytes[i];
		ev[i].id.len = i == 1 ? 0 : 16;
		ev[i].type = types[i];
		ev[i].data.data = data[i];
		ev[i].data.len = i == 1 ? 0 : 4;
		ev[i].metadata.data = (uint8_t *)"m";
		ev[i].metadata.len = i;
		ptrs[i] = &ev[i];
	}
	a->n_events = 3;
	a->events = ptrs;
}

/* An allocator that counts what protobuf-c asks of it. */
struct counted {
	size_t bytes, blocks;
};

static void *counted_alloc(void *data, size_t size)
{
	struct counted *c = data;
	c->bytes += size;
	c->blocks++;
	return malloc(size);
}

static void counted_free(void *data, void *ptr)
{
	(void)data;
	free(ptr);
}

/* Unpacks buf[0..len) counting the allocations, and checks that
 * wire_message_memory() tells what they were (16 bytes of overhead each). */
static void memory_is_what_unpack_allocated(const uint8_t *buf, size_t len)
{
	struct counted c = {0, 0};
	ProtobufCAllocator a = {counted_alloc, counted_free, &c};
	Whizbang__V1__Request *r = whizbang__v1__request__unpack(&a, len, buf);
	cr_assert_not_null(r);
	cr_assert_gt(c.blocks, 1u);
	cr_assert_eq(wire_message_memory(&r->base), c.bytes + 16 * c.blocks,
	             "measured %zu, allocated %zu in %zu blocks", wire_message_memory(&r->base),
	             c.bytes, c.blocks);
	whizbang__v1__request__free_unpacked(r, &a);
}

/* The memory a decoded request holds (what the memory budget counts for a
 * queued read) is what protobuf-c allocated for it: strings, bytes (an
 * empty one allocates nothing), repeated messages, a where clause's tree,
 * and fields this build does not know. */
Test(wire, message_memory_is_what_unpack_allocated)
{
	Whizbang__V1__Request req;
	Whizbang__V1__AppendEvents a;
	Whizbang__V1__NewEvent ev[3];
	Whizbang__V1__NewEvent *ptrs[3];
	make_append(&req, &a, ev, ptrs);
	size_t len = 0;
	uint8_t *buf = wire_pack_frame(&req.base, &len);
	cr_assert_not_null(buf);
	memory_is_what_unpack_allocated(buf + FRAME_HEADER, len - FRAME_HEADER);
	/* The same with an unknown field (number 99, 5 bytes) after it. */
	uint8_t *more = malloc(len - FRAME_HEADER + 8);
	cr_assert_not_null(more);
	memcpy(more, buf + FRAME_HEADER, len - FRAME_HEADER);
	memcpy(more + len - FRAME_HEADER, "\x9a\x06\x05hello", 8);
	memory_is_what_unpack_allocated(more, len - FRAME_HEADER + 8);
	free(more);
	free(buf);

	/* Explain with a where clause: a and b == "x", in a repeated list. */
	Whizbang__V1__Value vx = WHIZBANG__V1__VALUE__INIT;
	vx.kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
	vx.string_value = "x";
	Whizbang__V1__Value vy = WHIZBANG__V1__VALUE__INIT;
	vy.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	vy.int_value = 42;
	Whizbang__V1__Value *vals[2] = {&vx, &vy};
	Whizbang__V1__InList in = WHIZBANG__V1__IN_LIST__INIT;
	in.field = "status";
	in.n_values = 2;
	in.values = vals;
	Whizbang__V1__Expr leaf = WHIZBANG__V1__EXPR__INIT;
	leaf.node_case = WHIZBANG__V1__EXPR__NODE_IN_LIST;
	leaf.in_list = &in;
	Whizbang__V1__Where where = WHIZBANG__V1__WHERE__INIT;
	where.expr = &leaf;
	Whizbang__V1__Explain x = WHIZBANG__V1__EXPLAIN__INIT;
	x.type = "order";
	x.where = &where;
	whizbang__v1__request__init(&req);
	req.id = 9;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_EXPLAIN;
	req.explain = &x;
	buf = wire_pack_frame(&req.base, &len);
	cr_assert_not_null(buf);
	memory_is_what_unpack_allocated(buf + FRAME_HEADER, len - FRAME_HEADER);
	free(buf);
}

Test(wire, pack_frame_and_unpack_request_round_trip)
{
	Whizbang__V1__Request req;
	Whizbang__V1__AppendEvents a;
	Whizbang__V1__NewEvent ev[3];
	Whizbang__V1__NewEvent *ptrs[3];
	size_t len = 0;

	make_append(&req, &a, ev, ptrs);
	uint8_t *buf = wire_pack_frame(&req.base, &len);
	cr_assert_not_null(buf);
	cr_assert_eq(len, FRAME_HEADER + protobuf_c_message_get_packed_size(&req.base));

	const uint8_t *payload;
	uint32_t plen;
	size_t used;
	cr_assert_eq(frame_decode(buf, len, UINT32_MAX, &payload, &plen, &used), FRAME_OK);
	cr_assert_eq(used, len);
	Whizbang__V1__Request *r = wire_unpack_request(payload, plen, (size_t)plen * 16 + 65536);
	cr_assert_not_null(r);
	cr_assert_eq(r->id, 0x0123456789ABCDEFull);
	cr_assert_eq(r->body_case, WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS);
	const Whizbang__V1__AppendEvents *ra = r->append_events;
	cr_assert_str_eq(ra->stream, "orders-42");
	cr_assert_eq(ra->expected, WHIZBANG__V1__EXPECTED_VERSION__EXACT);
	cr_assert_eq(ra->expected_version, 7);
	cr_assert_eq(ra->n_events, 3);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(ra->events[i]->id.len, ev[i].id.len);
		if (ev[i].id.len > 0)
			cr_assert_arr_eq(ra->events[i]->id.data, ev[i].id.data, 16);
		cr_assert_str_eq(ra->events[i]->type, ev[i].type);
		cr_assert_eq(ra->events[i]->data.len, ev[i].data.len);
		if (ev[i].data.len > 0)
			cr_assert_arr_eq(ra->events[i]->data.data, ev[i].data.data, ev[i].data.len);
		cr_assert_eq(ra->events[i]->metadata.len, i);
	}
	whizbang__v1__request__free_unpacked(r, NULL);
	free(buf);
}

Test(wire, pack_frame_of_an_empty_message)
{
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	size_t len = 99;
	uint8_t *buf = wire_pack_frame(&req.base, &len);

	cr_assert_not_null(buf);
	cr_assert_eq(len, FRAME_HEADER);
	cr_assert_eq(frame_get_header(buf), 0);
	Whizbang__V1__Request *r = wire_unpack_request(buf + FRAME_HEADER, 0, 65536);
	cr_assert_not_null(r, "an empty payload is a valid (empty) Request");
	cr_assert_eq(r->body_case, WHIZBANG__V1__REQUEST__BODY__NOT_SET);
	whizbang__v1__request__free_unpacked(r, NULL);
	free(buf);
}

Test(wire, unpack_rejects_garbage)
{
	static const uint8_t garbage[][8] = {
	        {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, /* endless varint */
	        {0x22, 0x7F, 0, 0, 0, 0, 0, 0}, /* append_events longer than the buffer */
	        {0x0F, 0, 0, 0, 0, 0, 0, 0},    /* wire type 7 */
	        {0x0B, 0, 0, 0, 0, 0, 0, 0},    /* a start-group tag */
	        {0x00, 0, 0, 0, 0, 0, 0, 0},    /* field number 0 */
	};

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		Whizbang__V1__Request *r = wire_unpack_request(garbage[i], 8, BIG_BUDGET);
		cr_assert_null(r, "garbage %zu decoded", i);
	}
}

Test(wire, unpack_rejects_every_truncation_inside_the_body)
{
	Whizbang__V1__Request req;
	Whizbang__V1__AppendEvents a;
	Whizbang__V1__NewEvent ev[3];
	Whizbang__V1__NewEvent *ptrs[3];
	size_t len;

	make_append(&req, &a, ev, ptrs);
	uint8_t *frame = wire_pack_frame(&req.base, &len);
	cr_assert_not_null(frame);
	const uint8_t *payload = frame + FRAME_HEADER;
	size_t plen = len - FRAME_HEADER;

	/* The id field comes first; a cut right after it leaves a valid
	 * Request without a body. Every cut inside the body must fail. */
	Whizbang__V1__Request id_only = WHIZBANG__V1__REQUEST__INIT;
	id_only.id = req.id;
	size_t body_start = protobuf_c_message_get_packed_size(&id_only.base);
	cr_assert_lt(body_start, plen);
	for (size_t n = body_start + 1; n < plen; n++) {
		uint8_t *cut = malloc(n);
		cr_assert_not_null(cut);
		memcpy(cut, payload, n);
		Whizbang__V1__Request *r = wire_unpack_request(cut, n, BIG_BUDGET);
		cr_assert_null(r, "a message cut to %zu of %zu bytes decoded", n, plen);
		free(cut);
	}
	free(frame);
}

/* A Request holding an AppendEvents of n empty NewEvents: two bytes each on
 * the wire, a whole struct each once unpacked. */
static uint8_t *many_empty_events(size_t n, size_t *len)
{
	size_t inner = 2 * n;
	uint8_t *buf = malloc(inner + 16);
	cr_assert_not_null(buf);
	size_t off = 0;
	buf[off++] = 0x22; /* field 4 (append_events), length-delimited */
	size_t v = inner;
	do {
		buf[off++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
		v >>= 7;
	} while (v > 0);
	for (size_t i = 0; i < n; i++) {
		buf[off++] = 0x22; /* field 4 (events), length 0 */
		buf[off++] = 0x00;
	}
	*len = off;
	return buf;
}

Test(wire, budget_bounds_allocation_of_empty_repeated_elements)
{
	size_t len;
	const size_t n = 20000;
	uint8_t *buf = many_empty_events(n, &len);

	/* The server's budget: 16 bytes per received byte plus 64 KiB. The
	 * unpacked events need far more than that. */
	size_t server_budget = len * 16 + 65536;
	cr_assert_lt(server_budget, n * sizeof(Whizbang__V1__NewEvent));
	cr_assert_null(wire_unpack_request(buf, len, server_budget));
	cr_assert_null(wire_unpack_request(buf, len, 0));

	Whizbang__V1__Request *r = wire_unpack_request(buf, len, BIG_BUDGET);
	cr_assert_not_null(r, "a generous budget must let the same bytes decode");
	cr_assert_eq(r->body_case, WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS);
	cr_assert_eq(r->append_events->n_events, n);
	cr_assert_str_eq(r->append_events->events[n - 1]->type, "");
	whizbang__v1__request__free_unpacked(r, NULL);
	free(buf);
}

Test(wire, unpack_response_round_trip)
{
	Whizbang__V1__Response resp = WHIZBANG__V1__RESPONSE__INIT;
	Whizbang__V1__Error err = WHIZBANG__V1__ERROR__INIT;
	size_t len;

	resp.id = 9;
	err.code = WHIZBANG__V1__ERROR_CODE__WRONG_EXPECTED_VERSION;
	err.message = "the stream is at version 3";
	err.actual_version = -1;
	resp.error = &err;
	uint8_t *buf = wire_pack_frame(&resp.base, &len);
	cr_assert_not_null(buf);
	Whizbang__V1__Response *r =
	        wire_unpack_response(buf + FRAME_HEADER, len - FRAME_HEADER, BIG_BUDGET);
	cr_assert_not_null(r);
	cr_assert_eq(r->id, 9);
	cr_assert_not_null(r->error);
	cr_assert_eq(r->error->code, WHIZBANG__V1__ERROR_CODE__WRONG_EXPECTED_VERSION);
	cr_assert_eq(r->error->actual_version, -1);
	cr_assert_str_eq(r->error->message, "the stream is at version 3");
	whizbang__v1__response__free_unpacked(r, NULL);
	free(buf);
}

/* Hand-encoded Requests: protobuf-c packs strings with strlen(), so a NUL
 * inside one can only be written by hand. */
struct raw_case {
	const char *what;
	uint8_t bytes[24];
	size_t len;
	int rc;            /* of wire_check_strings() */
	const char *named; /* a word its message must hold */
};

static const struct raw_case raw_cases[] = {
        /* append_events { stream: "a\0b" } */
        {"NUL in AppendEvents.stream",
         {0x22, 5, 0x0A, 3, 'a', 0, 'b'},
         7,
         WB_BAD_REQUEST,
         "stream"},
        /* append_events { events { type: C0 AF (overlong '/') } } */
        {"overlong UTF-8 in NewEvent.type",
         {0x22, 6, 0x22, 4, 0x12, 2, 0xC0, 0xAF},
         8,
         WB_BAD_REQUEST,
         "type"},
        /* append_events { events { type: "ok" data: 00 FF C0 } } */
        {"NUL and bad UTF-8 in bytes are fine",
         {0x22, 11, 0x22, 9, 0x12, 2, 'o', 'k', 0x1A, 3, 0x00, 0xFF, 0xC0},
         13,
         0,
         NULL},
        /* hello { client_name: ED A0 80 (a surrogate) } */
        {"surrogate in Hello.client_name",
         {0x12, 5, 0x12, 3, 0xED, 0xA0, 0x80},
         7,
         WB_BAD_REQUEST,
         "client_name"},
        /* read_all { event_types: "A" event_types: "\0" } */
        {"NUL in the second ReadAll.event_types",
         {0x32, 6, 0x2A, 1, 'A', 0x2A, 1, 0},
         8,
         WB_BAD_REQUEST,
         "event_types"},
        /* get_stream_info { stream: "\xC3\xA9" } */
        {"valid 2-byte UTF-8", {0x3A, 4, 0x0A, 2, 0xC3, 0xA9}, 6, 0, NULL},
        /* read_stream { stream: E2 82 (truncated 3-byte sequence) } */
        {"truncated UTF-8 sequence", {0x2A, 4, 0x0A, 2, 0xE2, 0x82}, 6, WB_BAD_REQUEST, "UTF-8"},
        /* field 15, length-delimited, unknown to Request: not looked into */
        {"unknown field with NUL", {0xA2, 0x06, 2, 0, 0xFF, 0x08, 1}, 7, 0, NULL}, /* field 100 */
        {"empty message", {0}, 0, 0, NULL},
};

Test(wire, check_strings_table)
{
	for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++) {
		const struct raw_case *c = &raw_cases[i];
		/* An exact-size copy, so that a read past the end is caught. */
		uint8_t *buf = malloc(c->len > 0 ? c->len : 1);
		cr_assert_not_null(buf);
		memcpy(buf, c->bytes, c->len);
		Whizbang__V1__Request *r = wire_unpack_request(buf, c->len, BIG_BUDGET);
		char msg[256] = "";
		int rc = wire_check_strings(&whizbang__v1__request__descriptor, buf, c->len, msg,
		                            sizeof(msg));
		bool decoded = r != NULL;
		if (r != NULL)
			whizbang__v1__request__free_unpacked(r, NULL);
		free(buf);
		cr_expect(decoded, "%s: protobuf-c refused it, so the case tests nothing", c->what);
		cr_expect_eq(rc, c->rc, "%s: %d (%s)", c->what, rc, msg);
		if (c->named != NULL && rc != 0)
			cr_expect_not_null(strstr(msg, c->named), "%s: '%s' does not name %s",
			                   c->what, msg, c->named);
	}
}

/* protobuf-c hands the NUL case over as "a": the check is what catches it. */
Test(wire, unpack_alone_cuts_a_string_at_nul)
{
	const uint8_t bytes[] = {0x22, 5, 0x0A, 3, 'a', 0, 'b'};
	Whizbang__V1__Request *r = wire_unpack_request(bytes, sizeof(bytes), BIG_BUDGET);
	cr_assert_not_null(r);
	cr_assert_str_eq(r->append_events->stream, "a");
	whizbang__v1__request__free_unpacked(r, NULL);
}

Test(wire, check_strings_accepts_packed_requests_and_refuses_truncations)
{
	Whizbang__V1__Request req;
	Whizbang__V1__AppendEvents a;
	Whizbang__V1__NewEvent ev[3];
	Whizbang__V1__NewEvent *ptrs[3];
	size_t len;
	char msg[256];

	make_append(&req, &a, ev, ptrs);
	uint8_t *frame = wire_pack_frame(&req.base, &len);
	cr_assert_not_null(frame);
	const uint8_t *payload = frame + FRAME_HEADER;
	size_t plen = len - FRAME_HEADER;
	cr_assert_eq(wire_check_strings(&whizbang__v1__request__descriptor, payload, plen, msg,
	                                sizeof(msg)),
	             0, "%s", msg);

	Whizbang__V1__Request id_only = WHIZBANG__V1__REQUEST__INIT;
	id_only.id = req.id;
	size_t body_start = protobuf_c_message_get_packed_size(&id_only.base);
	for (size_t n = body_start + 1; n < plen; n++) {
		uint8_t *cut = malloc(n);
		cr_assert_not_null(cut);
		memcpy(cut, payload, n);
		int rc = wire_check_strings(&whizbang__v1__request__descriptor, cut, n, msg,
		                            sizeof(msg));
		free(cut);
		cr_assert_eq(rc, WB_BAD_REQUEST, "cut to %zu of %zu bytes passed", n, plen);
	}
	/* A group (wire type 3) is refused. */
	const uint8_t group[] = {0x0B, 0x0C};
	cr_assert_eq(wire_check_strings(&whizbang__v1__request__descriptor, group, sizeof(group),
	                                msg, sizeof(msg)),
	             WB_BAD_REQUEST);
	free(frame);
}

/* ------------------------------------------------------------- wb_error */

struct code_row {
	int value;
	const char *name;
	const char *text;
};

static const struct code_row table[] = {
#define ROW(name, value, text) {value, #name, text},
        WB_ERRORS(ROW)
#undef ROW
};
#define NCODES (sizeof(table) / sizeof(table[0]))

Test(wb_error, every_code_has_its_name_and_text)
{
	cr_assert_geq(NCODES, 28);
	for (size_t i = 0; i < NCODES; i++) {
		cr_assert_str_eq(wb_error_name(table[i].value), table[i].name);
		cr_assert_str_eq(wb_strerror(table[i].value), table[i].text);
		cr_assert_gt(strlen(wb_strerror(table[i].value)), 0);
		for (size_t j = 0; j < i; j++)
			cr_assert_neq(table[i].value, table[j].value, "%s and %s share a value",
			              table[i].name, table[j].name);
	}
	cr_assert_str_eq(wb_error_name(WB_WRONG_EXPECTED_VERSION), "WRONG_EXPECTED_VERSION");
	cr_assert_str_eq(wb_error_name(WB_E_MAPFULL), "E_MAPFULL");
}

Test(wb_error, unknown_codes)
{
	static const int unknown[] = {-1, 18, 42, 99, 111, 1000, -2147483647 - 1, 2147483647};

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		cr_assert_str_eq(wb_error_name(unknown[i]), "UNKNOWN");
		cr_assert_str_eq(wb_strerror(unknown[i]), "unknown error");
	}
}

/* The wire codes of the table are the .proto's ErrorCode values, with the
 * same names. */
Test(wb_error, wire_codes_match_the_proto_enum)
{
	const ProtobufCEnumDescriptor *d = &whizbang__v1__error_code__descriptor;
	size_t wire = 0;

	for (size_t i = 0; i < NCODES; i++) {
		if (table[i].value > WB_WIRE_MAX)
			continue;
		wire++;
		const ProtobufCEnumValue *v =
		        protobuf_c_enum_descriptor_get_value(d, table[i].value);
		cr_assert_not_null(v, "%s (%d) is not in the .proto", table[i].name,
		                   table[i].value);
		cr_assert_str_eq(v->name, table[i].name);
	}
	cr_assert_eq(wire, d->n_values, "the .proto has codes the table lacks");
}

Test(wb_error, to_wire_maps_internal_codes)
{
	for (size_t i = 0; i < NCODES; i++)
		if (table[i].value <= WB_WIRE_MAX)
			cr_assert_eq(wb_error_to_wire(table[i].value), table[i].value);
	cr_assert_eq(wb_error_to_wire(WB_E_NOTFOUND), WB_NOT_FOUND);
	cr_assert_eq(wb_error_to_wire(WB_E_MAPFULL), WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(wb_error_to_wire(WB_E_NOMEM), WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(wb_error_to_wire(WB_E_NOSPC), WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(wb_error_to_wire(WB_E_KEYEXIST), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(WB_E_IO), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(WB_E_CORRUPT), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(WB_E_AGAIN), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(WB_E_CLOSED), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(WB_E_TIMEOUT), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(WB_E_INVAL), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(-1), WB_INTERNAL);
	cr_assert_eq(wb_error_to_wire(1000), WB_INTERNAL);
}

/* "Maps any code to the code sent on the wire": whatever goes in, what comes
 * out must be a value of the .proto's ErrorCode enum, or a client's decoder
 * sees a code it cannot name. */
Test(wb_error, to_wire_answers_only_proto_codes)
{
	const ProtobufCEnumDescriptor *d = &whizbang__v1__error_code__descriptor;

	for (int code = -5; code <= 200; code++) {
		int w = wb_error_to_wire(code);
		cr_assert_not_null(protobuf_c_enum_descriptor_get_value(d, w),
		                   "wb_error_to_wire(%d) = %d, which is no ErrorCode", code, w);
	}
}

/* wire_peek_request() reads a Request's id and body case without decoding
 * it, for every body; bytes that do not parse give 0. */
Test(frame, peek_request_finds_the_id_and_the_body)
{
	Whizbang__V1__Explain ex = WHIZBANG__V1__EXPLAIN__INIT;
	ex.type = (char *)"Order";
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.id = 300;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_EXPLAIN;
	req.explain = &ex;
	uint8_t buf[256];
	size_t n = whizbang__v1__request__pack(&req, buf);
	uint64_t id = 99;
	cr_assert_eq(wire_peek_request(buf, n, &id), WHIZBANG__V1__REQUEST__BODY_EXPLAIN);
	cr_assert_eq(id, 300);
	/* Every prefix but the whole: 0, never a read past the end. */
	for (size_t cut = 1; cut < n; cut++) {
		uint8_t *copy = malloc(cut);
		memcpy(copy, buf, cut);
		cr_assert_eq(wire_peek_request(copy, cut, &id), 0, "cut at %zu", cut);
		free(copy);
	}
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
	cr_assert_eq(wire_peek_request(junk, sizeof(junk), &id), 0);
	cr_assert_eq(wire_peek_request(buf, 0, &id), 0);
	cr_assert_eq(id, 0);
}
