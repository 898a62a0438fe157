#include "wire.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "utf8.h"
#include "wb_error.h"

/* Nesting deeper than this is refused. A where clause nests two message
 * levels per `and`/`or` and one per `not`: 64 levels of clause fit in
 * well under this, and protobuf-c's recursive unpack stays shallow. */
#define MAX_DEPTH 160

struct budget {
	size_t used;
	size_t limit;
	bool nomem; /* malloc failed (not the budget) */
};

static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;
	if (size > b->limit - b->used)
		return NULL;
	b->used += size;
	void *p = malloc(size);
	if (p == NULL)
		b->nomem = true;
	return p;
}

static void budget_free(void *data, void *ptr)
{
	(void)data;
	free(ptr);
}

static int check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                         int depth, bool strings, char *errmsg, size_t errlen);

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                size_t len, size_t budget, bool *nomem)
{
	struct budget b = {0, budget, false};
	ProtobufCAllocator a = {budget_alloc, budget_free, &b};
	char why[128];
	*nomem = false;
	/* protobuf-c recurses once per nesting level: a frame of nested
	 * where clauses could otherwise run the stack out before any check. */
	if (check_strings(desc, buf, len, 0, false, why, sizeof(why)) != 0)
		return NULL;
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, &a, len, buf);
	*nomem = m == NULL && b.nomem;
	return m;
}

int wire_decode_request(const uint8_t *buf, size_t len, size_t budget, Whizbang__V1__Request **out)
{
	bool nomem;
	*out = (Whizbang__V1__Request *)unpack(&whizbang__v1__request__descriptor, buf, len, budget,
	                                       &nomem);
	if (*out != NULL)
		return 0;
	return nomem ? WB_E_NOMEM : WB_BAD_REQUEST;
}

Whizbang__V1__Request *wire_unpack_request(const uint8_t *buf, size_t len, size_t budget)
{
	bool nomem;
	return (Whizbang__V1__Request *)unpack(&whizbang__v1__request__descriptor, buf, len, budget,
	                                       &nomem);
}

Whizbang__V1__Response *wire_unpack_response(const uint8_t *buf, size_t len, size_t budget)
{
	bool nomem;
	return (Whizbang__V1__Response *)unpack(&whizbang__v1__response__descriptor, buf, len,
	                                        budget, &nomem);
}

uint8_t *wire_pack_frame(const ProtobufCMessage *msg, size_t *out_len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > UINT32_MAX)
		return NULL;
	uint8_t *buf = malloc(FRAME_HEADER + n);
	if (buf == NULL)
		return NULL;
	frame_put_header(buf, (uint32_t)n);
	protobuf_c_message_pack(msg, buf + FRAME_HEADER);
	*out_len = FRAME_HEADER + n;
	return buf;
}

static int read_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
		uint8_t b = buf[(*pos)++];
		v |= (uint64_t)(b & 0x7F) << shift;
		if ((b & 0x80) == 0) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* Reads the field at *pos of buf[0..len): its tag into *tag and the length
 * of its payload into *n, leaving *pos at the payload (a varint's value is
 * read into *val, with *n 0). Returns 0, -1 when the bytes end early, -2
 * for a wire type other than 0, 1, 2 and 5. */
static int next_field(const uint8_t *buf, size_t len, size_t *pos, uint64_t *tag, uint64_t *val,
                      uint64_t *n)
{
	if (read_varint(buf, len, pos, tag) != 0)
		return -1;
	*val = 0;
	*n = 0;
	switch (*tag & 7) {
	case 0:
		return read_varint(buf, len, pos, val);
	case 1:
		*n = 8;
		break;
	case 5:
		*n = 4;
		break;
	case 2:
		if (read_varint(buf, len, pos, n) != 0)
			return -1;
		break;
	default:
		return -2;
	}
	return *n > len - *pos ? -1 : 0;
}

uint32_t wire_peek_request(const uint8_t *buf, size_t len, uint64_t *id)
{
	size_t pos = 0;
	uint32_t last = 0;
	*id = 0;
	while (pos < len) {
		uint64_t tag, val, n;
		if (next_field(buf, len, &pos, &tag, &val, &n) != 0)
			return 0;
		if ((tag & 7) == 0 && tag >> 3 == 1)
			*id = val;
		else if ((tag & 7) == 2 && tag >> 3 <= UINT32_MAX)
			last = (uint32_t)(tag >> 3);
		pos += n;
	}
	return last;
}

/* Walks the encoded message: checks its depth and, with strings, every
 * string field. */
static int check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                         int depth, bool strings, char *errmsg, size_t errlen)
{
	size_t pos = 0;
	if (depth > MAX_DEPTH) {
		snprintf(errmsg, errlen, "messages are nested more than %d deep", MAX_DEPTH);
		return WB_BAD_REQUEST;
	}
	while (pos < len) {
		uint64_t tag, val, n;
		int fr = next_field(buf, len, &pos, &tag, &val, &n);
		if (fr == -1)
			goto err_truncated;
		if (fr == -2) {
			snprintf(errmsg, errlen, "%s: wire type %u is not supported", desc->name,
			         (unsigned)(tag & 7));
			return WB_BAD_REQUEST;
		}
		const ProtobufCFieldDescriptor *f =
		        (tag & 7) == 2 && tag >> 3 <= UINT32_MAX
		                ? protobuf_c_message_descriptor_get_field(desc,
		                                                          (unsigned)(tag >> 3))
		                : NULL;
		if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING && strings) {
			const char *s = (const char *)buf + pos;
			size_t bad;
			if (memchr(s, 0, n) != NULL) {
				snprintf(errmsg, errlen, "%s.%s holds a NUL byte", desc->name,
				         f->name);
				return WB_BAD_REQUEST;
			}
			if (!utf8_valid(s, n, &bad)) {
				snprintf(errmsg, errlen, "%s.%s is not valid UTF-8 (at byte %zu)",
				         desc->name, f->name, bad);
				return WB_BAD_REQUEST;
			}
		} else if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
			int rc = check_strings(f->descriptor, buf + pos, n, depth + 1, strings,
			                       errmsg, errlen);
			if (rc != 0)
				return rc;
		}
		pos += n;
	}
	return 0;

err_truncated:
	snprintf(errmsg, errlen, "%s is truncated", desc->name);
	return WB_BAD_REQUEST;
}

int wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                       char *errmsg, size_t errlen)
{
	return check_strings(desc, buf, len, 0, true, errmsg, errlen);
}
