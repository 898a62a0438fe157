#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "wb_error.h"

void srv_send(struct conn *c, const Response *r)
{
	uint8_t *p = conn_frame(c, protobuf_c_message_get_packed_size(&r->base));
	if (p != NULL)
		protobuf_c_message_pack(&r->base, p);
}

__attribute__((format(printf, 5, 0))) static void
error_v(struct conn *c, uint64_t id, int code, int64_t actual_version, const char *fmt, va_list ap)
{
	struct conn_counters *n = conn_counters(c);
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	Whizbang__V1__Error err = WHIZBANG__V1__ERROR__INIT;
	err.code = (Whizbang__V1__ErrorCode)wb_error_to_wire(code);
	err.message = msg;
	err.actual_version = actual_version;
	Response r = WHIZBANG__V1__RESPONSE__INIT;
	r.id = id;
	r.error = &err;
	n->errors_total++;
	n->errors_by_code[(size_t)err.code % 32]++;
	if (log_enabled(WB_LOG_DEBUG)) {
		char q[600];
		srv_log(WB_LOG_DEBUG, "request_error", "conn=%llu id=%llu code=%s message=%s",
		        (unsigned long long)conn_id(c), (unsigned long long)id,
		        wb_error_name((int)err.code), log_quote(msg, strlen(msg), q, sizeof(q)));
	}
	srv_send(c, &r);
}

void srv_error(struct conn *c, uint64_t id, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_v(c, id, code, 0, fmt, ap);
	va_end(ap);
}

void srv_error_version(struct conn *c, uint64_t id, int code, int64_t actual_version,
                       const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_v(c, id, code, actual_version, fmt, ap);
	va_end(ap);
}

void srv_storage_error(struct conn *c, uint64_t id, int rc, const char *what)
{
	if (rc == WB_E_MAPFULL) {
		srv_error(c, id, rc,
		          "the data store is full and could not grow: free disk space or raise the "
		          "limits, then retry");
		return;
	}
	if (rc == WB_E_NOSPC) {
		srv_error(
		        c, id, rc,
		        "%s was not stored: the disk under the data directory is full; free space "
		        "and retry (reads are still served)",
		        what);
		return;
	}
	srv_log(WB_LOG_ERROR, "storage_error", "conn=%llu op=%s error=%s",
	        (unsigned long long)conn_id(c), what, wb_error_name(rc));
	srv_error(c, id, rc, "%s failed in storage: %s", what, wb_strerror(rc));
}

int srv_pack(const Response *r, size_t max, uint8_t **out, size_t *len, char *why, size_t whylen)
{
	size_t n = protobuf_c_message_get_packed_size(&r->base);
	if (n > max) {
		snprintf(why, whylen, "the answer would be %zu bytes, more than --max-frame", n);
		return WB_RESOURCE_EXHAUSTED;
	}
	uint8_t *p = malloc(n > 0 ? n : 1);
	if (p == NULL) {
		snprintf(why, whylen, "the server is out of memory");
		return WB_RESOURCE_EXHAUSTED;
	}
	*len = protobuf_c_message_pack(&r->base, p);
	*out = p;
	return 0;
}
