#include "wire.h"

#include <stdlib.h>

#include "frame.h"

struct budget {
	size_t used;
	size_t limit;
};

static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;
	if (size > b->limit - b->used)
		return NULL;
	b->used += size;
	return malloc(size);
}

static void budget_free(void *data, void *ptr)
{
	(void)data;
	free(ptr);
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
				size_t len, size_t budget)
{
	struct budget b = {0, budget};
	ProtobufCAllocator a = {budget_alloc, budget_free, &b};
	return protobuf_c_message_unpack(desc, &a, len, buf);
}

Whizbang__V1__Request *wire_unpack_request(const uint8_t *buf, size_t len, size_t budget)
{
	return (Whizbang__V1__Request *)unpack(&whizbang__v1__request__descriptor, buf, len,
					       budget);
}

Whizbang__V1__Response *wire_unpack_response(const uint8_t *buf, size_t len, size_t budget)
{
	return (Whizbang__V1__Response *)unpack(&whizbang__v1__response__descriptor, buf, len,
						budget);
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
