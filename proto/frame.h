/* Frame codec: a 4-byte big-endian length, then that many bytes of payload.
 *
 * The decoder works on a byte span and knows nothing of sockets, so it can be
 * tested at every split offset and fuzzed. It checks the length against the
 * limit before the caller allocates anything for the payload. */
#ifndef WB_FRAME_H
#define WB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER 4u

enum frame_status {
	FRAME_OK = 0,    /* one whole frame is at the front of the span */
	FRAME_AGAIN = 1, /* the span holds only part of a frame */
	FRAME_ERROR = 2, /* the frame's length is above the limit */
};

/* Looks at the front of buf[0..len). On FRAME_OK, *payload points into buf at
 * the payload, *payload_len is its length and *consumed is the number of bytes
 * the whole frame takes (header included). On FRAME_AGAIN and FRAME_ERROR the
 * outputs are untouched, except that *payload_len receives the announced
 * length on FRAME_ERROR when at least the header is present. Keeps no
 * reference to buf. */
enum frame_status frame_decode(const uint8_t *buf, size_t len, uint32_t max_payload,
                               const uint8_t **payload, uint32_t *payload_len, size_t *consumed);

/* Writes the 4-byte header for a payload of len bytes into out. */
void frame_put_header(uint8_t out[FRAME_HEADER], uint32_t len);

/* Returns the payload length announced by a 4-byte header. */
uint32_t frame_get_header(const uint8_t in[FRAME_HEADER]);

#endif
