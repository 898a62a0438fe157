#include "frame.h"

uint32_t frame_get_header(const uint8_t in[FRAME_HEADER])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

void frame_put_header(uint8_t out[FRAME_HEADER], uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

enum frame_status frame_decode(const uint8_t *buf, size_t len, uint32_t max_payload,
                               const uint8_t **payload, uint32_t *payload_len, size_t *consumed)
{
	if (len < FRAME_HEADER)
		return FRAME_AGAIN;
	uint32_t n = frame_get_header(buf);
	if (n > max_payload) {
		*payload_len = n;
		return FRAME_ERROR;
	}
	if (len - FRAME_HEADER < n)
		return FRAME_AGAIN;
	*payload = buf + FRAME_HEADER;
	*payload_len = n;
	*consumed = FRAME_HEADER + (size_t)n;
	return FRAME_OK;
}
