/* Helpers between frames and protobuf messages, shared by the server, the
 * client library and the tools. */
#ifndef WB_WIRE_H
#define WB_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "whizbang.pb-c.h"

/* The protocol version this code speaks. */
#define WB_PROTOCOL_VERSION 1u

/* Unpacks a Request from buf[0..len), allowing protobuf-c to allocate at most
 * budget bytes in total, so that a small frame full of empty repeated
 * elements cannot make the server allocate far more than it received.
 * Returns NULL when the bytes do not decode, nest messages more than 160 deep
 * (checked before protobuf-c recurses into them) or the budget is exceeded. The
 * caller frees the result with whizbang__v1__request__free_unpacked(r, NULL).
 * Keeps no reference to buf. */
Whizbang__V1__Request *wire_unpack_request(const uint8_t *buf, size_t len, size_t budget);

/* The same, telling why it failed: 0 (*out to free as above),
 * WB_BAD_REQUEST when the bytes do not decode, nest too deep or exceed the
 * budget, WB_E_NOMEM when memory ran out within the budget (*out NULL). */
int wire_decode_request(const uint8_t *buf, size_t len, size_t budget, Whizbang__V1__Request **out);

/* The same for a Response. */
Whizbang__V1__Response *wire_unpack_response(const uint8_t *buf, size_t len, size_t budget);

/* Checks every string field of the message encoded in buf[0..len), which
 * has already unpacked with desc: no NUL byte and valid UTF-8 (proto3
 * requires it; protobuf-c does not check). protobuf-c hands strings over
 * NUL-terminated without their length, so a NUL inside one would otherwise
 * cut it short unseen. Returns 0, or WB_BAD_REQUEST with the field's name
 * and the problem in errmsg[0..errlen). */
int wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                       char *errmsg, size_t errlen);

/* A Request's body case and id (field 1) read from its encoding without
 * decoding it: the number of the last length-delimited field at the top
 * level of buf[0..len), or 0 when there is none or the bytes do not parse;
 * *id 0 when absent. Cost: one step per top-level field. */
uint32_t wire_peek_request(const uint8_t *buf, size_t len, uint64_t *id);

/* The heap bytes a message that protobuf-c unpacked holds: the message,
 * its arrays, strings, bytes and sub-messages, each with a malloc's
 * overhead (what freeing it gives back, near enough). A message built by
 * hand is measured the same way. Walks the whole message: the cost of
 * packing it; recursion as deep as its nesting (unpacking bounds that). */
size_t wire_message_memory(const ProtobufCMessage *m);

/* Packs msg into a new buffer holding the 4-byte length header and the
 * payload; *out_len receives the whole length. Returns NULL when out of
 * memory or when the payload would be longer than 2^32-1 bytes. The caller
 * frees the buffer with free(). */
uint8_t *wire_pack_frame(const ProtobufCMessage *msg, size_t *out_len);

#endif
