/* The append load's own encoding of AppendEvents requests and decoding of
 * their responses, so that the load generator costs little next to the
 * server it measures.
 *
 * The events of a request are packed once by protobuf-c (aw_events_build())
 * and each request is that copy behind a few bytes of envelope written by
 * hand (aw_request_put()); the caller then writes fresh event ids in place,
 * at the offsets the template records. A response is read by walking its
 * fields (aw_response_decode()) without allocating: only the request id, the
 * error and the AppendResult are looked at. Nothing here does I/O. */
#ifndef BENCH_APPEND_WIRE_H
#define BENCH_APPEND_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* n NewEvents as they appear, packed, inside an AppendEvents: buf[0..len).
 * The 16-byte id of event i is at buf + id_off[i]. */
struct aw_events {
	uint8_t *buf;
	size_t len;
	uint32_t n;
	size_t *id_off;
};

/* Packs n (>= 1) events of type type with the data data[0..size) and a
 * placeholder id each into *out, which the caller frees with
 * aw_events_free(). Keeps no reference to type or data. Returns 0, or
 * WB_E_NOMEM or WB_INTERNAL (protobuf-c packed something other than
 * expected) with a sentence in errmsg; *out is written only on success. */
int aw_events_build(struct aw_events *out, uint32_t n, const char *type, const uint8_t *data,
                    size_t size, char *errmsg, size_t errlen);

void aw_events_free(struct aw_events *ev);

/* The largest frame aw_request_put() writes for ev and a stream name of
 * name_len bytes, length prefix included. */
size_t aw_request_max(const struct aw_events *ev, size_t name_len);

/* Writes into out (room for aw_request_max() bytes) the whole frame of the
 * Request {id, AppendEvents {stream name, expected ANY, the events of ev}}
 * and returns its length. *events_at receives the offset in out where the
 * copy of ev->buf starts: event i's id is at out + *events_at +
 * ev->id_off[i]. */
size_t aw_request_put(uint8_t *out, uint64_t id, const char *name, size_t name_len,
                      const struct aw_events *ev, size_t *events_at);

/* What the load reads of a Response. message points into the decoded
 * payload. */
struct aw_response {
	uint64_t id;
	uint32_t code; /* the error's code; 0 (OK) when there is none */
	const uint8_t *message;
	size_t message_len;
	bool has_append; /* the body is an AppendResult */
	uint64_t first_position;
	uint64_t last_position;
	bool idempotent_replay;
};

/* Decodes the Response payload p[0..len) into *out. Returns 0, or -1 when the
 * bytes are not a well-formed message (*out is then partly written). Keeps
 * no reference to p beyond out->message. */
int aw_response_decode(const uint8_t *p, size_t len, struct aw_response *out);

/* Encodes one request for ev and name with aw_request_put(), writes a known
 * pattern into its ids and unpacks it with protobuf-c, to show that the hand
 * encoding says what the library would. Returns 0, or WB_INTERNAL with a
 * sentence in errmsg. */
int aw_self_check(const struct aw_events *ev, const char *name, const char *type, size_t size,
                  char *errmsg, size_t errlen);

#endif
