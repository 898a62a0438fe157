/* Whizbang's error codes: one X-macro table for the whole project.
 *
 * Codes below 100 are the wire protocol's ErrorCode values (docs/PROTOCOL.md §5, and ErrorCode in
 * whizbang.proto) and are sent to clients as they are. Codes from 100 up are internal answers
 * between modules (a key that is absent, a map that must grow) and are
 * translated before anything reaches the wire. Every function in the project
 * that can fail returns 0 or one of these. */
#ifndef WB_ERROR_H
#define WB_ERROR_H

#define WB_ERRORS(X)                                                                               \
	X(OK, 0, "success")                                                                        \
	X(BAD_REQUEST, 1, "the request is malformed")                                              \
	X(UNSUPPORTED_VERSION, 2, "the protocol version is not supported")                         \
	X(UNAUTHENTICATED, 3, "authentication is required")                                        \
	X(PERMISSION_DENIED, 4, "permission denied")                                               \
	X(FRAME_TOO_LARGE, 5, "the frame is larger than the server accepts")                       \
	X(NOT_FOUND, 6, "not found")                                                               \
	X(WRONG_EXPECTED_VERSION, 7, "the stream is not at the expected version")                  \
	X(IDEMPOTENCY_CONFLICT, 8, "an event id is already stored elsewhere")                      \
	X(STREAM_DELETED, 9, "the stream is deleted")                                              \
	X(LEASE_EXPIRED, 10, "the lease has expired")                                              \
	X(LEASE_NOT_FOUND, 11, "no such lease")                                                    \
	X(LEASE_TOKEN_MISMATCH, 12, "the fencing token does not match the lease")                  \
	X(INVALID_EXPRESSION, 13, "the expression is invalid")                                     \
	X(QUERY_TOO_EXPENSIVE, 14, "the query would examine too many entities")                    \
	X(RESOURCE_EXHAUSTED, 15, "a server resource is exhausted")                                \
	X(SHUTTING_DOWN, 16, "the server is shutting down")                                        \
	X(INTERNAL, 17, "internal error")                                                          \
	X(E_NOTFOUND, 100, "key not found")                                                        \
	X(E_KEYEXIST, 101, "key already exists")                                                   \
	X(E_MAPFULL, 102, "the storage map is full")                                               \
	X(E_NOMEM, 103, "out of memory")                                                           \
	X(E_IO, 104, "input/output error")                                                         \
	X(E_CORRUPT, 105, "stored data is corrupt")                                                \
	X(E_AGAIN, 106, "try again")                                                               \
	X(E_CLOSED, 107, "the connection is closed")                                               \
	X(E_TIMEOUT, 108, "timed out")                                                             \
	X(E_INVAL, 109, "invalid argument")                                                        \
	X(E_NOSPC, 110, "no space left on the device")

enum wb_error {
#define WB_ERROR_ENUM(name, value, text) WB_##name = value,
	WB_ERRORS(WB_ERROR_ENUM)
#undef WB_ERROR_ENUM
};

/* The highest code that may appear on the wire. */
#define WB_WIRE_MAX 99

/* Returns a static, human-readable description of code; never NULL. */
const char *wb_strerror(int code);

/* Returns the static upper-case name of code ("WRONG_EXPECTED_VERSION");
 * "UNKNOWN" for a value outside the table. */
const char *wb_error_name(int code);

/* Maps any code to the code sent on the wire: wire codes map to themselves,
 * internal ones to RESOURCE_EXHAUSTED (map full, no memory), NOT_FOUND or
 * INTERNAL. */
int wb_error_to_wire(int code);

#endif
