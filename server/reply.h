/* The one reply path of whizbangd: every Response the server sends is made
 * here, answers by SRV_REPLY() and errors by srv_error() and its kin, so
 * that every error is counted and logged the same way. Loop thread only,
 * except srv_pack(), which a worker may call. */
#ifndef WB_REPLY_H
#define WB_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "whizbang.pb-c.h"

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

/* Declares the Response var answering request id with body msg (the last
 * argument: a pointer to the message of the oneof member lower, case
 * UPPER; variadic only so that a compound literal's commas pass through).
 * The assignment checks msg's type against the member at compile time. */
#define SRV_RESPONSE(var, id_, UPPER, lower, ...)                                                  \
	Response var = WHIZBANG__V1__RESPONSE__INIT;                                               \
	var.id = (id_);                                                                            \
	var.body_case = WHIZBANG__V1__RESPONSE__BODY_##UPPER;                                      \
	var.lower = (__VA_ARGS__)

/* Answers request id on c with body msg, e.g.
 *   SRV_REPLY(c, req->id, PONG, pong, &pong);
 * The Response is packed into c's output before this returns, so msg and
 * what it points to may live on the caller's stack (or in a snapshot that
 * ends after the call). */
#define SRV_REPLY(c, id_, UPPER, lower, ...)                                                       \
	do {                                                                                       \
		SRV_RESPONSE(srv_reply_, id_, UPPER, lower, __VA_ARGS__);                          \
		srv_send((c), &srv_reply_);                                                        \
	} while (0)

/* Packs r into c's output as one frame (nothing when c is closing). */
void srv_send(struct conn *c, const Response *r);

/* Answers request id on c with an error: code (a WB_ value below 100; a
 * storage code is mapped by wb_error_to_wire()) and a message for the
 * client made from fmt. Counted, and logged at debug level. */
void srv_error(struct conn *c, uint64_t id, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* The same, with the stream's actual version (WRONG_EXPECTED_VERSION). */
void srv_error_version(struct conn *c, uint64_t id, int code, int64_t actual_version,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers a storage failure rc of the call named what: a full map says how
 * to recover; anything else is logged as an error and answered with the
 * mapped code and wb_strerror(rc). */
void srv_storage_error(struct conn *c, uint64_t id, int rc, const char *what);

/* Packs r for a worker that builds its answer off the loop: *out receives
 * a new buffer of *len bytes (free() it). WB_RESOURCE_EXHAUSTED, with the
 * reason in why, when r is larger than max bytes or memory runs out. */
int srv_pack(const Response *r, size_t max, uint8_t **out, size_t *len, char *why, size_t whylen);

#endif
