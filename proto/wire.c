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

/* What malloc keeps beside each block it hands out, as wire_message_memory()
 * counts it. */
#define ALLOC_OVERHEAD 16u

/* The bytes of one element of a repeated field of type t, as protobuf-c
 * lays its array out. */
static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default:
		return 8;
	}
}

/* The heap bytes behind one value of field f stored at p: a string, bytes
 * or a message it points to (0 for a scalar, and for a default that
 * protobuf-c points at instead of allocating). */
static size_t value_memory(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *str = *(char *const *)p;
		if (str == NULL || (const void *)str == f->default_value)
			return 0;
		return strlen(str) + 1 + ALLOC_OVERHEAD;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *bd = p;
		const ProtobufCBinaryData *dflt = f->default_value;
		if (bd->data == NULL || (dflt != NULL && bd->data == dflt->data))
			return 0;
		return bd->len + ALLOC_OVERHEAD;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
		return m != NULL ? wire_message_memory(m) : 0;
	}
	default:
		return 0;
	}
}

size_t wire_message_memory(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	size_t n = d->sizeof_message + ALLOC_OVERHEAD;
	/* Fields this build does not know are kept, each a copy. */
	if (m->n_unknown_fields > 0) {
		n += m->n_unknown_fields * sizeof(*m->unknown_fields) + ALLOC_OVERHEAD;
		for (unsigned i = 0; i < m->n_unknown_fields; i++)
			n += m->unknown_fields[i].len + ALLOC_OVERHEAD;
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const void *p = base + f->offset;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t count;
			memcpy(&count, base + f->quantifier_offset, sizeof(count));
			const char *arr = *(char *const *)p;
			if (count == 0 || arr == NULL)
				continue;
			size_t es = elem_size(f->type);
			n += count * es + ALLOC_OVERHEAD;
			for (size_t j = 0; j < count; j++)
				n += value_memory(f, arr + j * es);
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
			uint32_t which;
			memcpy(&which, base + f->quantifier_offset, sizeof(which));
			if (which != f->id)
				continue;
		}
		n += value_memory(f, p);
	}
	return n;
}
