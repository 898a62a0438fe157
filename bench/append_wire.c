#include "append_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "wb_error.h"
#include "whizbang.pb-c.h"

/* Protobuf wire types and the tags of the fields written or read here. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };
#define TAG(field, wt) ((uint8_t)(((field) << 3) | (wt)))

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Reads a varint at *p, below end, and advances *p: 0, or -1 when it runs
 * past end or past ten bytes. */
static int varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (b < 0x80) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* One field of a message: its number, wire type, and its value (a varint)
 * or its bytes (WT_LEN). */
struct field {
	uint32_t num;
	uint32_t wt;
	uint64_t v;
	const uint8_t *bytes;
	size_t len;
};

/* Reads the field at *p and advances past it: 0, or -1 when malformed. */
static int field_next(const uint8_t **p, const uint8_t *end, struct field *f)
{
	uint64_t key;
	if (varint_get(p, end, &key) != 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
		return -1;
	f->num = (uint32_t)(key >> 3);
	f->wt = (uint32_t)(key & 7);
	switch (f->wt) {
	case WT_VARINT:
		return varint_get(p, end, &f->v);
	case WT_I64:
	case WT_I32: {
		size_t w = f->wt == WT_I64 ? 8 : 4;
		if ((size_t)(end - *p) < w)
			return -1;
		*p += w;
		return 0;
	}
	case WT_LEN:
		if (varint_get(p, end, &f->v) != 0 || f->v > (uint64_t)(end - *p))
			return -1;
		f->bytes = *p;
		f->len = (size_t)f->v;
		*p += f->len;
		return 0;
	default:
		return -1;
	}
}

int aw_events_build(struct aw_events *out, uint32_t n, const char *type, const uint8_t *data,
                    size_t size, char *errmsg, size_t errlen)
{
	static const uint8_t zero_id[16];
	Whizbang__V1__NewEvent *evs = calloc(n, sizeof(*evs));
	Whizbang__V1__NewEvent **ptrs = calloc(n, sizeof(*ptrs));
	size_t *id_off = calloc(n, sizeof(*id_off));
	uint8_t *buf = NULL;
	if (evs == NULL || ptrs == NULL || id_off == NULL)
		goto nomem;
	for (uint32_t i = 0; i < n; i++) {
		whizbang__v1__new_event__init(&evs[i]);
		evs[i].id.data = (uint8_t *)zero_id;
		evs[i].id.len = sizeof(zero_id);
		evs[i].type = (char *)type;
		evs[i].data.data = (uint8_t *)data;
		evs[i].data.len = size;
		ptrs[i] = &evs[i];
	}
	/* The stream is left empty, so proto3 leaves it out: the packed bytes
	 * are the events alone, which every request then shares. */
	Whizbang__V1__AppendEvents ae = WHIZBANG__V1__APPEND_EVENTS__INIT;
	ae.n_events = n;
	ae.events = ptrs;
	size_t len = whizbang__v1__append_events__get_packed_size(&ae);
	buf = malloc(len > 0 ? len : 1);
	if (buf == NULL)
		goto nomem;
	whizbang__v1__append_events__pack(&ae, buf);

	/* Find each id by walking what protobuf-c wrote, rather than by
	 * assuming its layout. */
	const uint8_t *p = buf, *end = buf + len;
	uint32_t found = 0;
	while (p < end) {
		struct field f;
		if (field_next(&p, end, &f) != 0 || f.num != 4 || f.wt != WT_LEN || found == n)
			goto unexpected;
		const uint8_t *q = f.bytes, *qend = f.bytes + f.len;
		bool have_id = false;
		while (q < qend) {
			struct field g;
			if (field_next(&q, qend, &g) != 0)
				goto unexpected;
			if (g.num == 1 && g.wt == WT_LEN && g.len == 16) {
				id_off[found] = (size_t)(g.bytes - buf);
				have_id = true;
			}
		}
		if (!have_id)
			goto unexpected;
		found++;
	}
	if (found != n)
		goto unexpected;
	free(ptrs);
	free(evs);
	*out = (struct aw_events){.buf = buf, .len = len, .n = n, .id_off = id_off};
	return 0;

unexpected:
	snprintf(errmsg, errlen,
	         "protobuf-c packed %u events in a way the append load does not read (found %u "
	         "ids)",
	         n, found);
	free(buf);
	free(id_off);
	free(ptrs);
	free(evs);
	return WB_INTERNAL;
nomem:
	snprintf(errmsg, errlen, "out of memory for a template of %u events", n);
	free(buf);
	free(id_off);
	free(ptrs);
	free(evs);
	return WB_E_NOMEM;
}

void aw_events_free(struct aw_events *ev)
{
	free(ev->buf);
	free(ev->id_off);
	*ev = (struct aw_events){0};
}

/* The AppendEvents message around ev for a stream name of name_len bytes. */
static size_t append_events_len(const struct aw_events *ev, size_t name_len)
{
	return 1 + varint_len(name_len) + name_len + ev->len;
}

size_t aw_request_max(const struct aw_events *ev, size_t name_len)
{
	size_t ae = append_events_len(ev, name_len);
	return FRAME_HEADER + 1 + 10 + 1 + varint_len(ae) + ae;
}

size_t aw_request_put(uint8_t *out, uint64_t id, const char *name, size_t name_len,
                      const struct aw_events *ev, size_t *events_at)
{
	size_t ae = append_events_len(ev, name_len);
	uint8_t *p = out + FRAME_HEADER;
	*p++ = TAG(1, WT_VARINT); /* Request.id */
	p = varint_put(p, id);
	*p++ = TAG(4, WT_LEN); /* Request.append_events */
	p = varint_put(p, ae);
	*p++ = TAG(1, WT_LEN); /* AppendEvents.stream */
	p = varint_put(p, name_len);
	memcpy(p, name, name_len);
	p += name_len;
	*events_at = (size_t)(p - out);
	memcpy(p, ev->buf, ev->len);
	p += ev->len;
	size_t total = (size_t)(p - out);
	frame_put_header(out, (uint32_t)(total - FRAME_HEADER));
	return total;
}

/* Reads the fields of an Error. */
static int decode_error(const uint8_t *p, size_t len, struct aw_response *out)
{
	const uint8_t *end = p + len;
	while (p < end) {
		struct field f;
		if (field_next(&p, end, &f) != 0)
			return -1;
		if (f.num == 1 && f.wt == WT_VARINT)
			out->code = (uint32_t)f.v;
		else if (f.num == 2 && f.wt == WT_LEN) {
			out->message = f.bytes;
			out->message_len = f.len;
		}
	}
	return 0;
}

/* Reads the fields of an AppendResult. */
static int decode_append(const uint8_t *p, size_t len, struct aw_response *out)
{
	const uint8_t *end = p + len;
	out->has_append = true;
	while (p < end) {
		struct field f;
		if (field_next(&p, end, &f) != 0)
			return -1;
		if (f.wt != WT_VARINT)
			continue;
		if (f.num == 1)
			out->first_position = f.v;
		else if (f.num == 2)
			out->last_position = f.v;
		else if (f.num == 4)
			out->idempotent_replay = f.v != 0;
	}
	return 0;
}

int aw_response_decode(const uint8_t *p, size_t len, struct aw_response *out)
{
	*out = (struct aw_response){0};
	const uint8_t *end = p + len;
	while (p < end) {
		struct field f;
		if (field_next(&p, end, &f) != 0)
			return -1;
		if (f.num == 1 && f.wt == WT_VARINT) {
			out->id = f.v;
		} else if (f.num == 2 && f.wt == WT_LEN) {
			if (decode_error(f.bytes, f.len, out) != 0)
				return -1;
		} else if (f.num == 5 && f.wt == WT_LEN) {
			if (decode_append(f.bytes, f.len, out) != 0)
				return -1;
		} else if (f.wt == WT_LEN && f.num >= 3) {
			/* Another member of the body's oneof replaces an
			 * AppendResult read before it, as protobuf does. */
			out->has_append = false;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- the self-check */

static int check_request(const struct aw_events *ev, const char *name, const char *type,
                         size_t size, char *errmsg, size_t errlen)
{
	const uint64_t id = 0x123456789abull;
	size_t name_len = strlen(name);
	uint8_t *frame = malloc(aw_request_max(ev, name_len));
	if (frame == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	size_t at;
	size_t len = aw_request_put(frame, id, name, name_len, ev, &at);
	for (uint32_t i = 0; i < ev->n; i++)
		for (unsigned b = 0; b < 16; b++)
			frame[at + ev->id_off[i] + b] = (uint8_t)(i * 16u + b + 1u);
	const char *why = NULL;
	Whizbang__V1__Request *req = NULL;
	if (frame_get_header(frame) != len - FRAME_HEADER)
		why = "the frame's length prefix is wrong";
	else if ((req = whizbang__v1__request__unpack(NULL, len - FRAME_HEADER,
	                                              frame + FRAME_HEADER)) == NULL)
		why = "protobuf-c cannot unpack it";
	else if (req->id != id || req->body_case != WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS)
		why = "the id or the body differs";
	else if (strcmp(req->append_events->stream, name) != 0 ||
	         req->append_events->expected != WHIZBANG__V1__EXPECTED_VERSION__ANY ||
	         req->append_events->n_events != ev->n)
		why = "the stream, the expectation or the number of events differs";
	for (uint32_t i = 0; why == NULL && i < ev->n; i++) {
		const Whizbang__V1__NewEvent *e = req->append_events->events[i];
		if (e->id.len != 16 || strcmp(e->type, type) != 0 || e->data.len != size)
			why = "an event differs";
		for (unsigned b = 0; why == NULL && b < 16; b++)
			if (e->id.data[b] != (uint8_t)(i * 16u + b + 1u))
				why = "an id was not written where the template said";
	}
	if (req != NULL)
		whizbang__v1__request__free_unpacked(req, NULL);
	free(frame);
	if (why == NULL)
		return 0;
	snprintf(errmsg, errlen, "the append load's request encoding is wrong: %s", why);
	return WB_INTERNAL;
}

static int check_response(char *errmsg, size_t errlen)
{
	Whizbang__V1__Error err = WHIZBANG__V1__ERROR__INIT;
	err.code = WHIZBANG__V1__ERROR_CODE__NOT_FOUND;
	err.message = "a sentence";
	err.actual_version = -5;
	Whizbang__V1__AppendResult ar = WHIZBANG__V1__APPEND_RESULT__INIT;
	ar.first_position = 300;
	ar.last_position = 1ull << 40;
	ar.stream_version = 7;
	ar.idempotent_replay = true;
	Whizbang__V1__Response r = WHIZBANG__V1__RESPONSE__INIT;
	r.id = 0xfedcba987ull;
	r.error = &err;
	r.body_case = WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS;
	r.append_events = &ar;
	uint8_t buf[128];
	size_t len = whizbang__v1__response__get_packed_size(&r);
	struct aw_response d;
	if (len <= sizeof(buf)) {
		whizbang__v1__response__pack(&r, buf);
		if (aw_response_decode(buf, len, &d) == 0 && d.id == r.id &&
		    d.code == (uint32_t)err.code && d.message_len == strlen(err.message) &&
		    memcmp(d.message, err.message, d.message_len) == 0 && d.has_append &&
		    d.first_position == ar.first_position && d.last_position == ar.last_position &&
		    d.idempotent_replay)
			return 0;
	}
	snprintf(errmsg, errlen, "the append load's response decoder is wrong");
	return WB_INTERNAL;
}

int aw_self_check(const struct aw_events *ev, const char *name, const char *type, size_t size,
                  char *errmsg, size_t errlen)
{
	int rc = check_request(ev, name, type, size, errmsg, errlen);
	return rc != 0 ? rc : check_response(errmsg, errlen);
}
