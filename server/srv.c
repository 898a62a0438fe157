/* whizbangd's loop side.
 *
 * Happy path: accept a connection; read into its buffer; decode every whole
 * frame there; unpack each Request and dispatch it. Reads are answered at
 * once from a read transaction; appends go to the writer thread, and their
 * answers are queued when the writer reports the batch durable (async
 * callback). Answers are packed into the connection's output buffer, which
 * is written once at the end of each callback (one write per connection per
 * loop turn, however many answers it holds).
 *
 * Failure modes: a frame above --max-frame is answered FRAME_TOO_LARGE and
 * the connection closes once that answer is written; bytes that do not
 * decode are answered BAD_REQUEST and the connection stays; a frame that
 * does not complete within --frame-timeout-ms closes the connection; a
 * client whose answers pile up beyond --max-output-per-connection, or whose
 * writes in flight reach --max-inflight, is paused (not read) until it
 * drains. A connection that closes with writes in flight stays allocated
 * until the writer has returned them; their answers are dropped, their
 * effects are durable. SIGTERM/SIGINT: stop listening and reading, let the
 * writer finish what it holds, send those answers, close everything. */
#include "srv.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "events.h"
#include "frame.h"
#include "log.h"
#include "storage.h"
#include "validate.h"
#include "wb_version.h"
#include "wire.h"
#include "srv_int.h"
#include "writer.h"

/* Events a filtered ReadAll examines per page at most. */
#define MAX_EXAMINED 10000u

struct write_req {
	uv_write_t req;
	struct conn *conn;
	uint8_t *buf;
	size_t len;
};

struct append_op {
	struct srv_op base; /* first */
	Request *req;
	struct ev_new *evs;
	size_t nevs;
	struct ev_append_result result;
};

static void conn_close(struct conn *c);
static void conn_process(struct conn *c);
static void shutdown_check(struct srv *srv);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void flush_all(struct srv *srv);
static void append_done(struct srv *srv, struct srv_op *base);
static void conn_maybe_free(struct conn *c);
static bool conn_paused(const struct conn *c);

uint64_t srv_wall_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* ------------------------------------------------------------ output */

/* Makes room for n more bytes in c's output buffer. */
static int out_reserve(struct conn *c, size_t n)
{
	if (c->out_cap - c->out_len >= n)
		return 0;
	size_t cap = c->out_cap > 0 ? c->out_cap : 4096;
	while (cap - c->out_len < n)
		cap *= 2;
	uint8_t *p = realloc(c->out, cap);
	if (p == NULL)
		return WB_E_NOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

static void mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dirty_next = c->srv->dirty;
	c->srv->dirty = c;
}

/* Packs resp as one frame into c's output buffer. */
/* Appends a frame header for n bytes to c's output and returns where the
 * n bytes go, or NULL (the connection is then closed) when they cannot be
 * queued. The caller writes them at once. */
static uint8_t *out_frame(struct conn *c, size_t n)
{
	if (c->closing)
		return NULL;
	if (n > UINT32_MAX || out_reserve(c, FRAME_HEADER + n) != 0) {
		srv_log(LOG_ERROR, "response_dropped", "conn=%llu bytes=%zu reason=no_memory",
		        (unsigned long long)c->id, n);
		conn_close(c);
		return NULL;
	}
	uint8_t *p = c->out + c->out_len;
	frame_put_header(p, (uint32_t)n);
	c->out_len += FRAME_HEADER + n;
	c->srv->requests_total++;
	mark_dirty(c);
	return p + FRAME_HEADER;
}

void srv_send(struct conn *c, const Response *resp)
{
	uint8_t *p = out_frame(c, protobuf_c_message_get_packed_size(&resp->base));
	if (p != NULL)
		protobuf_c_message_pack(&resp->base, p);
}

void srv_send_packed(struct conn *c, const uint8_t *resp, size_t n)
{
	uint8_t *p = out_frame(c, n);
	if (p != NULL)
		memcpy(p, resp, n);
}

__attribute__((format(printf, 5, 0))) static void send_error_v(struct conn *c, uint64_t id,
                                                               int code, int64_t actual_version,
                                                               const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	Whizbang__V1__Error err = WHIZBANG__V1__ERROR__INIT;
	err.code = (Whizbang__V1__ErrorCode)wb_error_to_wire(code);
	err.message = msg;
	err.actual_version = actual_version;
	resp.id = id;
	resp.error = &err;
	c->srv->errors_total++;
	c->srv->errors_by_code[(size_t)err.code % 32]++;
	if (log_enabled(LOG_DEBUG)) {
		char q[600];
		srv_log(LOG_DEBUG, "request_error", "conn=%llu id=%llu code=%s message=%s",
		        (unsigned long long)c->id, (unsigned long long)id,
		        wb_error_name((int)err.code), log_quote(msg, strlen(msg), q, sizeof(q)));
	}
	srv_send(c, &resp);
}

void srv_send_error(struct conn *c, uint64_t id, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error_v(c, id, code, 0, fmt, ap);
	va_end(ap);
}

static bool conn_paused(const struct conn *c)
{
	const struct srv_config *cfg = &c->srv->cfg;
	return c->inflight >= cfg->max_inflight || c->out_len + c->out_pending >= cfg->max_output;
}

/* Reads from c exactly when it may make progress. */
static void conn_update_reading(struct conn *c)
{
	bool want =
	        !c->closing && !c->close_after_flush && !c->srv->shutting_down && !conn_paused(c);
	if (want == c->reading)
		return;
	c->reading = want;
	if (want)
		uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	else
		uv_read_stop((uv_stream_t *)&c->tcp);
}

static void write_cb(uv_write_t *req, int status)
{
	struct write_req *wr = (struct write_req *)req;
	struct conn *c = wr->conn;
	c->out_pending -= wr->len;
	free(wr->buf);
	free(wr);
	if (c->closing) {
		return;
	}
	if (status < 0) {
		srv_log(LOG_INFO, "write_failed", "conn=%llu error=%s", (unsigned long long)c->id,
		        uv_err_name(status));
		conn_close(c);
		return;
	}
	if (c->close_after_flush && c->out_pending == 0 && c->out_len == 0) {
		conn_close(c);
		return;
	}
	/* Output drained below the bound: take up buffered requests again,
	 * and pushes that waited for room. */
	conn_process(c);
	ssrv_pump(c->srv);
	csrv_pump(c->srv);
	flush_all(c->srv);
	shutdown_check(c->srv);
}

static void conn_flush(struct conn *c)
{
	if (c->closing || c->out_len == 0)
		return;
	struct write_req *wr = malloc(sizeof(*wr));
	if (wr == NULL) {
		conn_close(c);
		return;
	}
	wr->conn = c;
	wr->buf = c->out;
	wr->len = c->out_len;
	c->out = NULL;
	c->out_len = 0;
	c->out_cap = 0;
	uv_buf_t b = uv_buf_init((char *)wr->buf, (unsigned)wr->len);
	int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
	if (rc != 0) {
		free(wr->buf);
		free(wr);
		conn_close(c);
		return;
	}
	c->out_pending += wr->len;
}

void srv_flush(struct srv *srv)
{
	flush_all(srv);
}

/* Writes the output of every connection that has some. */
static void flush_all(struct srv *srv)
{
	while (srv->dirty != NULL) {
		struct conn *c = srv->dirty;
		srv->dirty = c->dirty_next;
		c->dirty = false;
		c->dirty_next = NULL;
		conn_flush(c);
		conn_update_reading(c);
	}
}

/* ------------------------------------------------------------ life cycle */

static void conn_maybe_free(struct conn *c)
{
	if (c->handles_open > 0 || c->inflight > 0 || c->out_pending > 0)
		return;
	free(c->in);
	free(c->out);
	free(c);
}

static void conn_handle_closed_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->handles_open--;
	conn_maybe_free(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	struct srv *srv = c->srv;
	c->closing = true;
	if (c->dirty) {
		/* Unlink from the dirty list before the conn can be freed. */
		struct conn **pp = &srv->dirty;
		while (*pp != c)
			pp = &(*pp)->dirty_next;
		*pp = c->dirty_next;
		c->dirty = false;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	srv->nconns--;
	lsrv_conn_closed(c);
	ssrv_conn_closed(c);
	csrv_conn_closed(c);
	srv_log(LOG_DEBUG, "disconnected", "conn=%llu inflight=%zu", (unsigned long long)c->id,
	        c->inflight);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
	shutdown_check(srv);
}

static void frame_timeout_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->closing)
		return;
	srv_log(LOG_INFO, "frame_timeout", "conn=%llu peer=%s buffered=%zu timeout_ms=%llu",
	        (unsigned long long)c->id, c->peer, c->in_len,
	        (unsigned long long)c->srv->cfg.frame_timeout_ms);
	conn_close(c);
}

/* ------------------------------------------------------------ dispatch */

static void handle_hello(struct conn *c, uint64_t id, const Whizbang__V1__Hello *h)
{
	struct srv *srv = c->srv;
	if (h->protocol_version != WB_PROTOCOL_VERSION) {
		srv_send_error(c, id, WB_UNSUPPORTED_VERSION,
		               "this server speaks protocol version %u; the client asked for %u: "
		               "upgrade the client library",
		               WB_PROTOCOL_VERSION, h->protocol_version);
		return;
	}
	c->hello_done = true;
	snprintf(c->name, sizeof(c->name), "%s", h->client_name != NULL ? h->client_name : "");
	char q[80];
	srv_log(LOG_DEBUG, "hello", "conn=%llu client=%s", (unsigned long long)c->id,
	        log_quote(c->name, strlen(c->name), q, sizeof(q)));
	Whizbang__V1__HelloResult r = WHIZBANG__V1__HELLO_RESULT__INIT;
	r.protocol_version = WB_PROTOCOL_VERSION;
	r.server_version = (char *)WB_VERSION;
	r.max_frame = (uint32_t)srv->cfg.max_frame;
	r.max_read_count = (uint32_t)srv->cfg.max_read_count;
	r.max_append_events = (uint32_t)srv->cfg.max_append_events;
	r.max_event_size = srv->max_event_size;
	r.auth_required = false;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_HELLO;
	resp.hello = &r;
	srv_send(c, &resp);
}

static void handle_ping(struct conn *c, uint64_t id, const Whizbang__V1__Ping *p)
{
	Whizbang__V1__Pong pong = WHIZBANG__V1__PONG__INIT;
	pong.nonce = p->nonce;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_PONG;
	resp.pong = &pong;
	srv_send(c, &resp);
}

static void handle_stats(struct conn *c, uint64_t id)
{
	struct srv *srv = c->srv;
	struct writer_stats ws;
	struct storage_stats ss;
	uint64_t last = 0;
	struct storage_txn *txn;

	writer_get_stats(srv->writer, &ws);
	memset(&ss, 0, sizeof(ss));
	storage_stats(srv->st, &ss);
	if (storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn) == 0) {
		ev_last_position(txn, &last);
		storage_txn_abort(txn);
	}
	Whizbang__V1__ServerStats s = WHIZBANG__V1__SERVER_STATS__INIT;
	s.server_version = (char *)WB_VERSION;
	s.uptime_ms = uv_now(srv->loop) - srv->start_ms;
	s.connections_current = srv->nconns;
	s.connections_total = srv->connections_total;
	s.requests_total = srv->requests_total;
	s.errors_total = srv->errors_total;
	s.batches = ws.batches;
	s.batch_requests = ws.ops;
	s.batch_events = srv->events_appended;
	s.commit_us_total = ws.commit_us_total;
	s.batch_requests_max = ws.ops_max;
	s.last_position = last;
	s.map_size = ss.map_size;
	s.map_used = ss.used_bytes;
	s.map_grow_count = ss.grow_count;
	lsrv_fill_stats(srv, &s);
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_STATS;
	resp.stats = &s;
	srv_send(c, &resp);
}

/* Collects the events of a read into protobuf messages that point into the
 * read transaction's memory (data, metadata, id) or into names (the
 * NUL-terminated stream and type strings protobuf-c needs). */
struct collect {
	Whizbang__V1__RecordedEvent *evs;
	char *names; /* 512 bytes per event: stream, NUL, type, NUL */
	size_t n, cap;
	size_t bytes, budget;
	bool nomem;
};

static bool collect_cb(const struct ev_record *rec, void *arg)
{
	struct collect *col = arg;
	size_t est = rec->data_len + rec->meta_len + rec->stream_len + rec->type_len + 64;
	if (col->n > 0 && col->bytes + est > col->budget)
		return false;
	if (col->n == col->cap) {
		size_t cap = col->cap > 0 ? col->cap * 2 : 64;
		Whizbang__V1__RecordedEvent *evs = realloc(col->evs, cap * sizeof(*evs));
		if (evs != NULL)
			col->evs = evs;
		char *names = realloc(col->names, cap * 512);
		if (names != NULL)
			col->names = names;
		if (evs == NULL || names == NULL) {
			col->nomem = true;
			return false;
		}
		col->cap = cap;
	}
	Whizbang__V1__RecordedEvent *e = &col->evs[col->n];
	whizbang__v1__recorded_event__init(e);
	char *name = col->names + col->n * 512;
	memcpy(name, rec->stream, rec->stream_len);
	name[rec->stream_len] = '\0';
	memcpy(name + 256, rec->type, rec->type_len);
	name[256 + rec->type_len] = '\0';
	e->id.data = (uint8_t *)rec->id;
	e->id.len = EV_ID_LEN;
	e->version = rec->version;
	e->position = rec->position;
	e->timestamp_us = rec->timestamp_us;
	e->data.data = (uint8_t *)rec->data;
	e->data.len = rec->data_len;
	e->metadata.data = (uint8_t *)rec->meta;
	e->metadata.len = rec->meta_len;
	col->n++;
	col->bytes += est;
	return true;
}

/* Points the collected events' strings at their names and returns the
 * array of pointers a repeated field needs (NULL when out of memory). */
static Whizbang__V1__RecordedEvent **collect_finish(struct collect *col)
{
	Whizbang__V1__RecordedEvent **ptrs = malloc((col->n > 0 ? col->n : 1) * sizeof(*ptrs));
	if (ptrs == NULL)
		return NULL;
	for (size_t i = 0; i < col->n; i++) {
		col->evs[i].stream = col->names + i * 512;
		col->evs[i].type = col->names + i * 512 + 256;
		ptrs[i] = &col->evs[i];
	}
	return ptrs;
}

static void collect_free(struct collect *col)
{
	free(col->evs);
	free(col->names);
}

uint32_t srv_clamp_count(const struct srv *srv, uint32_t asked)
{
	if (asked == 0 || asked > srv->cfg.max_read_count)
		return (uint32_t)srv->cfg.max_read_count;
	return asked;
}

void srv_send_storage_error(struct conn *c, uint64_t id, int rc, const char *what)
{
	if (rc == WB_E_MAPFULL) {
		srv_send_error(c, id, rc,
		               "the data store is full and could not grow: free disk space or "
		               "raise the limits, then retry");
		return;
	}
	srv_log(LOG_ERROR, "storage_error", "conn=%llu op=%s error=%s", (unsigned long long)c->id,
	        what, wb_error_name(rc));
	srv_send_error(c, id, rc, "%s failed in storage: %s", what, wb_strerror(rc));
}

static void handle_read_stream(struct conn *c, uint64_t id, const Whizbang__V1__ReadStream *r)
{
	struct srv *srv = c->srv;
	char why[256];
	size_t len = strlen(r->stream);
	if (ev_check_stream_name(r->stream, len, why, sizeof(why)) != 0) {
		srv_send_error(c, id, WB_BAD_REQUEST, "%s", why);
		return;
	}
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_send_storage_error(c, id, rc, "ReadStream");
		return;
	}
	struct collect col = {.budget = srv->cfg.max_frame - READ_ENVELOPE};
	struct ev_page page;
	rc = ev_read_stream(txn, r->stream, len, r->from_version,
	                    r->direction == WHIZBANG__V1__DIRECTION__BACKWARD,
	                    srv_clamp_count(srv, r->max_count), collect_cb, &col, &page);
	Whizbang__V1__RecordedEvent **ptrs = NULL;
	if (rc == 0 && !col.nomem)
		ptrs = collect_finish(&col);
	if (rc == WB_E_NOTFOUND) {
		srv_send_error(c, id, WB_NOT_FOUND,
		               "stream '%s' does not exist or is soft-deleted (GetStreamInfo tells "
		               "which)",
		               r->stream);
	} else if (rc == WB_STREAM_DELETED) {
		srv_send_error(c, id, WB_STREAM_DELETED, "stream '%s' is hard-deleted", r->stream);
	} else if (rc != 0) {
		srv_send_storage_error(c, id, rc, "ReadStream");
	} else if (ptrs == NULL) {
		srv_send_error(c, id, WB_RESOURCE_EXHAUSTED,
		               "the server is out of memory; retry with a smaller max_count");
	} else {
		Whizbang__V1__ReadStreamResult res = WHIZBANG__V1__READ_STREAM_RESULT__INIT;
		res.n_events = col.n;
		res.events = ptrs;
		res.next_version = page.next;
		res.end_of_stream = page.end;
		res.last_version = page.last;
		Response resp = WHIZBANG__V1__RESPONSE__INIT;
		resp.id = id;
		resp.body_case = WHIZBANG__V1__RESPONSE__BODY_READ_STREAM;
		resp.read_stream = &res;
		srv_send(c, &resp);
	}
	/* Packed above: only now may the snapshot go. */
	storage_txn_abort(txn);
	free(ptrs);
	collect_free(&col);
}

static void handle_read_all(struct conn *c, uint64_t id, const Whizbang__V1__ReadAll *r)
{
	struct srv *srv = c->srv;
	size_t type_lens[VALIDATE_MAX_FILTER_TYPES];
	struct ev_filter filter;
	char why[256];

	if (validate_read_all(r, type_lens, &filter, why, sizeof(why)) != 0) {
		srv_send_error(c, id, WB_BAD_REQUEST, "%s", why);
		return;
	}
	/* An unfiltered page examines exactly what it returns; a filtered one
	 * is bounded so a selective filter cannot stall the loop. */
	filter.max_examined = MAX_EXAMINED;
	if (filter.prefix_len == 0 && filter.ntypes == 0)
		filter.max_examined = 0;
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_send_storage_error(c, id, rc, "ReadAll");
		return;
	}
	struct collect col = {.budget = srv->cfg.max_frame - READ_ENVELOPE};
	struct ev_page page;
	rc = ev_read_all(txn, r->from_position, r->direction == WHIZBANG__V1__DIRECTION__BACKWARD,
	                 srv_clamp_count(srv, r->max_count), &filter, collect_cb, &col, &page);
	Whizbang__V1__RecordedEvent **ptrs = NULL;
	if (rc == 0 && !col.nomem)
		ptrs = collect_finish(&col);
	if (rc != 0) {
		srv_send_storage_error(c, id, rc, "ReadAll");
	} else if (ptrs == NULL) {
		srv_send_error(c, id, WB_RESOURCE_EXHAUSTED,
		               "the server is out of memory; retry with a smaller max_count");
	} else {
		Whizbang__V1__ReadAllResult res = WHIZBANG__V1__READ_ALL_RESULT__INIT;
		res.n_events = col.n;
		res.events = ptrs;
		res.next_position = page.next;
		res.end_of_log = page.end;
		res.last_position = page.last;
		Response resp = WHIZBANG__V1__RESPONSE__INIT;
		resp.id = id;
		resp.body_case = WHIZBANG__V1__RESPONSE__BODY_READ_ALL;
		resp.read_all = &res;
		srv_send(c, &resp);
	}
	storage_txn_abort(txn);
	free(ptrs);
	collect_free(&col);
}

static void handle_stream_info(struct conn *c, uint64_t id, const Whizbang__V1__GetStreamInfo *r)
{
	struct srv *srv = c->srv;
	char why[256];
	size_t len = strlen(r->stream);
	if (ev_check_stream_name(r->stream, len, why, sizeof(why)) != 0) {
		srv_send_error(c, id, WB_BAD_REQUEST, "%s", why);
		return;
	}
	struct storage_txn *txn;
	struct ev_stream_info info;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = ev_stream_info(txn, r->stream, len, &info);
		storage_txn_abort(txn);
	}
	if (rc == WB_E_NOTFOUND) {
		srv_send_error(c, id, WB_NOT_FOUND, "stream '%s' does not exist", r->stream);
		return;
	}
	if (rc != 0) {
		srv_send_storage_error(c, id, rc, "GetStreamInfo");
		return;
	}
	Whizbang__V1__StreamInfo si = WHIZBANG__V1__STREAM_INFO__INIT;
	si.stream = r->stream;
	si.last_version = info.count - 1;
	si.event_count = info.count;
	si.first_position = info.first_position;
	si.last_position = info.last_position;
	si.created_us = info.created_us;
	si.updated_us = info.updated_us;
	si.deleted = info.deleted;
	si.tombstoned = info.tombstoned;
	Whizbang__V1__StreamMetadata md = WHIZBANG__V1__STREAM_METADATA__INIT;
	md.max_count = info.meta.max_count;
	md.max_age_ms = info.meta.max_age_ms;
	md.truncate_before = info.meta.truncate_before;
	si.metadata = &md;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_STREAM_INFO;
	resp.stream_info = &si;
	srv_send(c, &resp);
}

/* ------------------------------------------------------------ stream life cycle
 *
 * SetStreamMetadata and DeleteStream are writer ops answered once durable;
 * GetStreamMetadata reads on the loop. Scavenge is a chain of writer ops,
 * one bounded step each, so appends join the batches in between: each step
 * that comes back pushes progress and submits the next, until the log as it
 * was at the start has been walked; then the final answer. One scavenge at a
 * time per process (the state is here rather than in struct srv, which
 * other modules share). */

/* Events one scavenge step examines at most. */
#define SCAVENGE_STEP 1000u

struct stream_op {
	struct srv_op base; /* first */
	Request *req;
	struct ev_stream_meta meta;
	uint64_t last_version;
};

static void send_stream_meta(struct conn *c, uint64_t id, const char *stream,
                             const struct ev_stream_meta *m)
{
	Whizbang__V1__StreamMetadata md = WHIZBANG__V1__STREAM_METADATA__INIT;
	md.max_count = m->max_count;
	md.max_age_ms = m->max_age_ms;
	md.truncate_before = m->truncate_before;
	Whizbang__V1__StreamMetadataResult r = WHIZBANG__V1__STREAM_METADATA_RESULT__INIT;
	r.stream = (char *)stream;
	r.metadata = &md;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_STREAM_METADATA;
	resp.stream_metadata = &r;
	srv_send(c, &resp);
}

static void send_stream_error(struct conn *c, uint64_t id, int rc, const char *stream,
                              const char *what)
{
	if (rc == WB_E_NOTFOUND)
		srv_send_error(c, id, WB_NOT_FOUND, "stream '%s' does not exist", stream);
	else if (rc == WB_STREAM_DELETED)
		srv_send_error(c, id, WB_STREAM_DELETED, "stream '%s' is hard-deleted", stream);
	else
		srv_send_storage_error(c, id, rc, what);
}

static void handle_get_stream_meta(struct conn *c, uint64_t id,
                                   const Whizbang__V1__GetStreamMetadata *r)
{
	char why[256];
	size_t len = strlen(r->stream);
	if (ev_check_stream_name(r->stream, len, why, sizeof(why)) != 0) {
		srv_send_error(c, id, WB_BAD_REQUEST, "%s", why);
		return;
	}
	struct storage_txn *txn;
	struct ev_stream_info info;
	int rc = storage_txn_begin(c->srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = ev_stream_info(txn, r->stream, len, &info);
		storage_txn_abort(txn);
	}
	if (rc == 0 && info.tombstoned)
		rc = WB_STREAM_DELETED;
	if (rc != 0) {
		send_stream_error(c, id, rc, r->stream, "GetStreamMetadata");
		return;
	}
	send_stream_meta(c, id, r->stream, &info.meta);
}

/* Runs on the writer thread. */
static int stream_op_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct stream_op *op = (struct stream_op *)base;
	const Request *req = op->req;
	if (req->body_case == WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA) {
		const char *stream = req->set_stream_metadata->stream;
		return ev_set_stream_meta(txn, stream, strlen(stream), &op->meta);
	}
	const char *stream = req->delete_stream->stream;
	return ev_delete_stream(txn, stream, strlen(stream), req->delete_stream->hard,
	                        &op->last_version);
}

static void stream_op_done(struct srv *srv, struct srv_op *base)
{
	struct stream_op *op = (struct stream_op *)base;
	struct conn *c = base->conn;
	int rc = base->base.status;
	(void)srv;
	if (!c->closing) {
		bool set = op->req->body_case == WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA;
		const char *stream =
		        set ? op->req->set_stream_metadata->stream : op->req->delete_stream->stream;
		if (rc != 0) {
			send_stream_error(c, base->req_id, rc, stream,
			                  set ? "SetStreamMetadata" : "DeleteStream");
		} else if (set) {
			send_stream_meta(c, base->req_id, stream, &op->meta);
		} else {
			Whizbang__V1__DeleteStreamResult r =
			        WHIZBANG__V1__DELETE_STREAM_RESULT__INIT;
			r.last_version = op->last_version;
			Response resp = WHIZBANG__V1__RESPONSE__INIT;
			resp.id = base->req_id;
			resp.body_case = WHIZBANG__V1__RESPONSE__BODY_DELETE_STREAM;
			resp.delete_stream = &r;
			srv_send(c, &resp);
		}
	}
	whizbang__v1__request__free_unpacked(op->req, NULL);
	free(op);
}

/* Validates SetStreamMetadata or DeleteStream and hands it to the writer.
 * Takes ownership of req when it returns true. */
static bool handle_stream_write(struct conn *c, Request *req)
{
	bool set = req->body_case == WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA;
	const char *stream = set ? req->set_stream_metadata->stream : req->delete_stream->stream;
	char why[256];
	if (ev_check_stream_name(stream, strlen(stream), why, sizeof(why)) != 0) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "%s", why);
		return false;
	}
	struct stream_op *op = calloc(1, sizeof(*op));
	if (op == NULL) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	if (set && req->set_stream_metadata->metadata != NULL) {
		const Whizbang__V1__StreamMetadata *m = req->set_stream_metadata->metadata;
		op->meta.max_count = m->max_count;
		op->meta.max_age_ms = m->max_age_ms;
		op->meta.truncate_before = m->truncate_before;
	}
	op->base.base.apply = stream_op_apply;
	op->base.base.size_hint = 4096;
	op->base.done = stream_op_done;
	op->base.conn = c;
	op->base.req_id = req->id;
	op->req = req;
	srv_submit(c->srv, &op->base);
	return true;
}

struct scavenge {
	struct srv_op base; /* first */
	struct srv *srv;
	uint64_t start_us; /* removal is judged as of this time */
	uint64_t start_ns; /* uv_hrtime() at the start */
	uint64_t upto;     /* the log's last position at the start */
	uint64_t from;     /* where the next step starts */
	uint64_t examined, removed, bytes;
	struct ev_scavenge_step step; /* rewritten by every run of a step */
};

/* Runs on the writer thread. */
static int scavenge_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct scavenge *sc = (struct scavenge *)base;
	/* A wall clock that stepped back must not judge an event older than
	 * it was at the start. */
	uint64_t now = srv_wall_us();
	if (now > sc->start_us)
		now = sc->start_us;
	return ev_scavenge_step(txn, sc->from, sc->upto, SCAVENGE_STEP, now, &sc->step);
}

static void send_scavenge(struct conn *c, const struct scavenge *sc, bool done)
{
	Whizbang__V1__ScavengeResult r = WHIZBANG__V1__SCAVENGE_RESULT__INIT;
	r.events_examined = sc->examined;
	r.events_removed = sc->removed;
	r.bytes_reclaimed = sc->bytes;
	r.micros = (uv_hrtime() - sc->start_ns) / 1000u;
	r.position = done ? sc->upto : (sc->from > 0 ? sc->from - 1 : 0);
	r.last_position = sc->upto;
	r.done = done;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = sc->base.req_id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_SCAVENGE;
	resp.scavenge = &r;
	srv_send(c, &resp);
}

static void scavenge_done(struct srv *srv, struct srv_op *base)
{
	struct scavenge *sc = (struct scavenge *)base;
	struct conn *c = base->conn;
	int rc = base->base.status;

	if (rc == 0) {
		sc->examined += sc->step.examined;
		sc->removed += sc->step.removed;
		sc->bytes += sc->step.bytes;
		sc->from = sc->step.next;
	}
	bool finished = rc != 0 || sc->step.done || c->closing || srv->shutting_down;
	if (!finished) {
		/* Progress is a courtesy: a client that does not read its
		 * answers gets none rather than a growing buffer. */
		if (!conn_paused(c))
			send_scavenge(c, sc, false);
		srv_submit(srv, &sc->base);
		return;
	}
	srv_log(LOG_INFO, "scavenge_end",
	        "conn=%llu examined=%llu removed=%llu bytes=%llu position=%llu "
	        "last_position=%llu status=%s",
	        (unsigned long long)c->id, (unsigned long long)sc->examined,
	        (unsigned long long)sc->removed, (unsigned long long)sc->bytes,
	        (unsigned long long)sc->from, (unsigned long long)sc->upto,
	        rc == 0 ? (sc->step.done ? "done" : "stopped") : wb_error_name(rc));
	if (!c->closing) {
		if (rc != 0)
			srv_send_storage_error(c, base->req_id, rc, "Scavenge");
		else if (sc->step.done)
			send_scavenge(c, sc, true);
		else
			srv_send_error(c, base->req_id, WB_SHUTTING_DOWN,
			               "the server is shutting down: the scavenge stopped before "
			               "position %llu of %llu after removing %llu events (%llu "
			               "bytes), which stay removed; run it again after the restart",
			               (unsigned long long)sc->from, (unsigned long long)sc->upto,
			               (unsigned long long)sc->removed,
			               (unsigned long long)sc->bytes);
	}
	srv->scavenge = NULL;
	free(sc);
}

static void handle_scavenge(struct conn *c, uint64_t id)
{
	struct srv *srv = c->srv;
	if (c->srv->scavenge != NULL) {
		srv_send_error(c, id, WB_RESOURCE_EXHAUSTED,
		               "a scavenge is running already (at position %llu of %llu): one "
		               "at a time",
		               (unsigned long long)c->srv->scavenge->from,
		               (unsigned long long)c->srv->scavenge->upto);
		return;
	}
	struct scavenge *sc = calloc(1, sizeof(*sc));
	if (sc == NULL) {
		srv_send_error(c, id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return;
	}
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = ev_last_position(txn, &sc->upto);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		free(sc);
		srv_send_storage_error(c, id, rc, "Scavenge");
		return;
	}
	sc->srv = srv;
	sc->start_us = srv_wall_us();
	sc->start_ns = uv_hrtime();
	sc->from = 1;
	sc->base.base.apply = scavenge_apply;
	sc->base.base.size_hint = 1u << 20;
	sc->base.done = scavenge_done;
	sc->base.conn = c;
	sc->base.req_id = id;
	c->srv->scavenge = sc;
	srv_log(LOG_INFO, "scavenge_start", "conn=%llu last_position=%llu",
	        (unsigned long long)c->id, (unsigned long long)sc->upto);
	srv_submit(srv, &sc->base);
}

/* Runs on the writer thread. */
static int append_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct append_op *op = (struct append_op *)base;
	const Whizbang__V1__AppendEvents *a = op->req->append_events;
	uint64_t expected_version = a->expected_version;
	return ev_append(txn, a->stream, strlen(a->stream), (enum ev_expected)a->expected,
	                 expected_version, op->evs, op->nevs, srv_wall_us(), &op->result);
}

static void append_op_free(struct append_op *op)
{
	whizbang__v1__request__free_unpacked(op->req, NULL);
	free(op->evs);
	free(op);
}

/* Validates an append and hands it to the writer. Takes ownership of req
 * when it returns true. */
static bool handle_append(struct conn *c, Request *req)
{
	struct srv *srv = c->srv;
	const Whizbang__V1__AppendEvents *a = req->append_events;
	uint64_t id = req->id;
	char why[256];
	struct ev_new *evs;
	size_t bytes;

	int rc = validate_append(a, srv->cfg.max_append_events, srv->max_event_size, &evs, &bytes,
	                         why, sizeof(why));
	if (rc != 0) {
		srv_send_error(c, id, rc == WB_E_NOMEM ? WB_RESOURCE_EXHAUSTED : rc, "%s", why);
		return false;
	}
	struct append_op *op = calloc(1, sizeof(*op));
	if (op == NULL) {
		free(evs);
		srv_send_error(c, id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	op->base.base.apply = append_apply;
	op->base.base.size_hint = bytes;
	op->base.done = append_done;
	op->base.conn = c;
	op->base.req_id = id;
	op->req = req;
	op->evs = evs;
	op->nevs = a->n_events;
	srv_submit(srv, &op->base);
	return true;
}

void srv_submit(struct srv *srv, struct srv_op *op)
{
	if (op->conn != NULL)
		op->conn->inflight++;
	srv->inflight++;
	writer_submit(srv->writer, &op->base);
}

static void append_done(struct srv *srv, struct srv_op *base)
{
	struct append_op *op = (struct append_op *)base;
	struct conn *c = base->conn;
	int rc = base->base.status;
	if (rc == 0 && !op->result.replay)
		srv->events_appended += op->nevs;
	if (c->closing) {
		append_op_free(op);
		return;
	}
	if (rc == 0) {
		Whizbang__V1__AppendResult r = WHIZBANG__V1__APPEND_RESULT__INIT;
		r.first_position = op->result.first_position;
		r.last_position = op->result.last_position;
		r.stream_version = op->result.stream_version;
		r.idempotent_replay = op->result.replay;
		Response resp = WHIZBANG__V1__RESPONSE__INIT;
		resp.id = base->req_id;
		resp.body_case = WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS;
		resp.append_events = &r;
		srv_send(c, &resp);
	} else if (rc == WB_WRONG_EXPECTED_VERSION) {
		Response resp = WHIZBANG__V1__RESPONSE__INIT;
		Whizbang__V1__Error err = WHIZBANG__V1__ERROR__INIT;
		err.code = WHIZBANG__V1__ERROR_CODE__WRONG_EXPECTED_VERSION;
		err.message = op->result.errmsg;
		err.actual_version = op->result.actual_version;
		resp.id = base->req_id;
		resp.error = &err;
		srv->errors_total++;
		srv->errors_by_code[WB_WRONG_EXPECTED_VERSION]++;
		srv_send(c, &resp);
	} else if (rc < 100 && op->result.errmsg[0] != '\0') {
		srv_send_error(c, base->req_id, rc, "%s", op->result.errmsg);
	} else {
		srv_send_storage_error(c, base->req_id, rc, "AppendEvents");
	}
	append_op_free(op);
}

/* Lets a connection go on after work of it ended (it may have been paused
 * at --max-inflight) or be freed. */
static void conn_after_work(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->closing)
		conn_maybe_free(c);
	else if (!conn_paused(c))
		conn_process(c);
}

/* Answers an op that came back from the writer, then lets its connection
 * go on. */
static void op_done(struct srv *srv, struct srv_op *op)
{
	struct conn *c = op->conn;
	if (c != NULL)
		c->inflight--;
	srv->inflight--;
	op->done(srv, op);
	conn_after_work(c);
}

void srv_work_begin(struct srv *srv, struct conn *c)
{
	c->inflight++;
	srv->inflight++;
}

void srv_work_done(struct srv *srv, struct conn *c)
{
	c->inflight--;
	/* A shutdown that timed out has stopped counting. */
	if (srv->inflight > 0)
		srv->inflight--;
	flush_all(srv);
	conn_after_work(c);
	shutdown_check(srv);
}

/* Runs on the writer thread. The async handle is closed at shutdown, after
 * which a late batch (possible only after the shutdown timeout) must not
 * touch it. */
static void writer_notify(void *arg)
{
	struct srv *srv = arg;
	pthread_mutex_lock(&srv->async_mu);
	if (!srv->async_closed)
		uv_async_send(&srv->async);
	pthread_mutex_unlock(&srv->async_mu);
}

static void async_cb(uv_async_t *a)
{
	struct srv *srv = a->data;
	struct writer_op *op = writer_take_done(srv->writer);
	while (op != NULL) {
		struct writer_op *next = op->next;
		op_done(srv, (struct srv_op *)op);
		op = next;
	}
	ssrv_pump(srv);
	csrv_pump(srv);
	flush_all(srv);
	shutdown_check(srv);
}

/* Handles one frame's payload. */
static void dispatch(struct conn *c, const uint8_t *payload, uint32_t len)
{
	struct srv *srv = c->srv;
	/* protobuf-c allocates per element: allow a generous multiple of the
	 * frame, not an unbounded one. */
	size_t budget = (size_t)len * 16 + 65536;
	Request *req = wire_unpack_request(payload, len, budget);
	if (req == NULL) {
		srv_log(LOG_INFO, "bad_frame", "conn=%llu bytes=%u", (unsigned long long)c->id,
		        len);
		srv_send_error(c, 0, WB_BAD_REQUEST,
		               "the frame's %u bytes do not decode as a whizbang.v1.Request", len);
		return;
	}
	uint64_t id = req->id;
	srv->requests_by_body[(size_t)req->body_case % 64]++;
	char why[256];
	if (wire_check_strings(&whizbang__v1__request__descriptor, payload, len, why,
	                       sizeof(why)) != 0) {
		srv_send_error(c, id, WB_BAD_REQUEST, "%s", why);
		goto done;
	}
	if (srv->shutting_down) {
		srv_send_error(c, id, WB_SHUTTING_DOWN,
		               "the server is shutting down; reconnect later");
		goto done;
	}
	if (!c->hello_done && req->body_case != WHIZBANG__V1__REQUEST__BODY_HELLO) {
		srv_send_error(c, id, WB_BAD_REQUEST,
		               "send Hello first: the first request on a connection must be Hello");
		goto done;
	}
	switch (req->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_HELLO:
		handle_hello(c, id, req->hello);
		break;
	case WHIZBANG__V1__REQUEST__BODY_PING:
		handle_ping(c, id, req->ping);
		break;
	case WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS:
		if (handle_append(c, req))
			return; /* the writer owns req now */
		break;
	case WHIZBANG__V1__REQUEST__BODY_READ_STREAM:
		handle_read_stream(c, id, req->read_stream);
		break;
	case WHIZBANG__V1__REQUEST__BODY_READ_ALL:
		handle_read_all(c, id, req->read_all);
		break;
	case WHIZBANG__V1__REQUEST__BODY_GET_STREAM_INFO:
		handle_stream_info(c, id, req->get_stream_info);
		break;
	case WHIZBANG__V1__REQUEST__BODY_GET_STATS:
		handle_stats(c, id);
		break;
	case WHIZBANG__V1__REQUEST__BODY_GET_STREAM_METADATA:
		handle_get_stream_meta(c, id, req->get_stream_metadata);
		break;
	case WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA:
	case WHIZBANG__V1__REQUEST__BODY_DELETE_STREAM:
		if (handle_stream_write(c, req))
			return; /* the writer owns req now */
		break;
	case WHIZBANG__V1__REQUEST__BODY_SCAVENGE:
		handle_scavenge(c, id);
		break;
	case WHIZBANG__V1__REQUEST__BODY_LEASE:
	case WHIZBANG__V1__REQUEST__BODY_EXTEND:
	case WHIZBANG__V1__REQUEST__BODY_RELEASE:
	case WHIZBANG__V1__REQUEST__BODY_STAGE:
	case WHIZBANG__V1__REQUEST__BODY_COMMIT:
	case WHIZBANG__V1__REQUEST__BODY_READ_LEDGER:
	case WHIZBANG__V1__REQUEST__BODY_GET_WATERMARK:
	case WHIZBANG__V1__REQUEST__BODY_WAIT_FOR_WATERMARK:
	case WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX:
	case WHIZBANG__V1__REQUEST__BODY_DROP_INDEX:
		if (lsrv_dispatch(c, req))
			return; /* kept until its answer */
		break;
	case WHIZBANG__V1__REQUEST__BODY_SUBSCRIBE:
		if (ssrv_dispatch(c, req))
			return;
		break;
	case WHIZBANG__V1__REQUEST__BODY_CREDIT:
	case WHIZBANG__V1__REQUEST__BODY_UNSUBSCRIBE: {
		uint64_t sub = req->body_case == WHIZBANG__V1__REQUEST__BODY_CREDIT
		                       ? req->credit->subscription
		                       : req->unsubscribe->subscription;
		bool kept = false;
		if (ssrv_owns(c, sub))
			kept = ssrv_dispatch(c, req);
		else if (csrv_owns(c, sub))
			kept = csrv_dispatch(c, req);
		else
			srv_send_error(c, id, WB_NOT_FOUND,
			               "this connection has no subscription %llu (ended, or never "
			               "started here)",
			               (unsigned long long)sub);
		if (kept)
			return;
		break;
	}
	case WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER:
	case WHIZBANG__V1__REQUEST__BODY_DELETE_CONSUMER:
	case WHIZBANG__V1__REQUEST__BODY_LIST_CONSUMERS:
	case WHIZBANG__V1__REQUEST__BODY_JOIN_CONSUMER:
	case WHIZBANG__V1__REQUEST__BODY_ACK:
	case WHIZBANG__V1__REQUEST__BODY_NACK:
	case WHIZBANG__V1__REQUEST__BODY_LIST_PARKED:
	case WHIZBANG__V1__REQUEST__BODY_REPLAY_PARKED:
		if (csrv_dispatch(c, req))
			return;
		break;
	case WHIZBANG__V1__REQUEST__BODY_BACKUP:
		if (bsrv_dispatch(c, req))
			return;
		break;
	case WHIZBANG__V1__REQUEST__BODY_GET_ENTITY:
	case WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES:
	case WHIZBANG__V1__REQUEST__BODY_EXPLAIN:
	case WHIZBANG__V1__REQUEST__BODY_LIST_INDEXES:
	case WHIZBANG__V1__REQUEST__BODY_VERIFY:
		if (psrv_dispatch(c, req))
			return; /* kept until its answer */
		break;
	default:
		srv_send_error(c, id, WB_BAD_REQUEST,
		               "the request has no body this server knows (field %d): check the "
		               "client's protocol version",
		               (int)req->body_case);
		break;
	}
done:
	whizbang__v1__request__free_unpacked(req, NULL);
}

/* Decodes and handles every whole frame buffered on c, as long as c is not
 * paused, then keeps the rest for the next read. */
static void conn_process(struct conn *c)
{
	struct srv *srv = c->srv;
	size_t pos = 0;
	bool progress = false;
	/* Stays FRAME_OK when the loop stops because c is paused: buffered
	 * whole frames waiting for the writer are not the client's delay. */
	enum frame_status st = FRAME_OK;

	while (!c->closing && !c->close_after_flush && !conn_paused(c)) {
		const uint8_t *payload;
		uint32_t plen = 0;
		size_t used;
		st = frame_decode(c->in + pos, c->in_len - pos, (uint32_t)srv->cfg.max_frame,
		                  &payload, &plen, &used);
		if (st == FRAME_AGAIN)
			break;
		if (st == FRAME_ERROR) {
			srv_log(LOG_WARN, "frame_too_large", "conn=%llu peer=%s bytes=%u max=%llu",
			        (unsigned long long)c->id, c->peer, plen,
			        (unsigned long long)srv->cfg.max_frame);
			srv_send_error(
			        c, 0, WB_FRAME_TOO_LARGE,
			        "a frame of %u bytes is larger than this server's limit of %llu "
			        "bytes (--max-frame); the connection is closed",
			        plen, (unsigned long long)srv->cfg.max_frame);
			c->close_after_flush = true;
			c->in_len = 0;
			pos = 0;
			break;
		}
		dispatch(c, payload, plen);
		pos += used;
		progress = true;
	}
	if (c->closing)
		return;
	if (pos > 0) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
	/* A started frame must complete within the timeout; the clock restarts
	 * whenever a frame completes. */
	if (c->in_len > 0 && st == FRAME_AGAIN && !c->close_after_flush) {
		if (!c->timer_active || progress) {
			uv_timer_start(&c->timer, frame_timeout_cb, srv->cfg.frame_timeout_ms, 0);
			c->timer_active = true;
		}
	} else if (c->timer_active) {
		uv_timer_stop(&c->timer);
		c->timer_active = false;
	}
	mark_dirty(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	size_t limit = c->srv->cfg.max_frame + FRAME_HEADER + 65536;
	(void)suggested;
	if (c->in_cap - c->in_len < 16384 && c->in_cap < limit) {
		size_t cap = c->in_cap > 0 ? c->in_cap * 2 : 16384;
		if (cap > limit)
			cap = limit;
		uint8_t *p = realloc(c->in, cap);
		if (p != NULL) {
			c->in = p;
			c->in_cap = cap;
		}
	}
	*buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	(void)buf;
	if (c->closing)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			srv_log(LOG_INFO, "read_failed", "conn=%llu error=%s",
			        (unsigned long long)c->id, uv_err_name((int)nread));
		conn_close(c);
		return;
	}
	c->in_len += (size_t)nread;
	conn_process(c);
	flush_all(c->srv);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct srv *srv = server->data;
	if (status < 0) {
		srv_log(LOG_WARN, "accept_failed", "error=%s", uv_err_name(status));
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->srv = srv;
	uv_tcp_init(srv->loop, &c->tcp);
	c->tcp.data = c;
	uv_timer_init(srv->loop, &c->timer);
	c->timer.data = c;
	c->handles_open = 2;
	c->id = ++srv->next_conn_id;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
		uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
		return;
	}
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	snprintf(c->peer, sizeof(c->peer), "?");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
		char host[48] = "";
		if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
			snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host,
			         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
		} else {
			uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
			snprintf(c->peer, sizeof(c->peer), "%s:%u", host,
			         ntohs(((struct sockaddr_in *)&ss)->sin_port));
		}
	}
	c->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	srv->connections_total++;
	uv_tcp_nodelay(&c->tcp, 1);
	if (srv->nconns > srv->cfg.max_connections) {
		srv_log(LOG_WARN, "connection_refused", "peer=%s reason=max_connections max=%llu",
		        c->peer, (unsigned long long)srv->cfg.max_connections);
		srv_send_error(c, 0, WB_RESOURCE_EXHAUSTED,
		               "the server has reached its connection limit (%llu, "
		               "--max-connections); retry later",
		               (unsigned long long)srv->cfg.max_connections);
		c->close_after_flush = true;
		flush_all(srv);
		return;
	}
	srv_log(LOG_DEBUG, "connected", "conn=%llu peer=%s", (unsigned long long)c->id, c->peer);
	c->reading = true;
	uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* ------------------------------------------------------------ shutdown */

static void close_handle_cb(uv_handle_t *h)
{
	(void)h;
}

/* Closes the server's own handles once nothing is left in flight, which
 * lets uv_run() return. */
static void shutdown_check(struct srv *srv)
{
	if (!srv->shutting_down || srv->inflight > 0)
		return;
	for (struct conn *c = srv->conns; c != NULL; c = c->next)
		if (c->out_len > 0 || c->out_pending > 0)
			return;
	while (srv->conns != NULL)
		conn_close(srv->conns);
	if (!uv_is_closing((uv_handle_t *)&srv->async)) {
		pthread_mutex_lock(&srv->async_mu);
		srv->async_closed = true;
		pthread_mutex_unlock(&srv->async_mu);
		uv_close((uv_handle_t *)&srv->async, close_handle_cb);
		uv_close((uv_handle_t *)&srv->sigterm, close_handle_cb);
		uv_close((uv_handle_t *)&srv->sigint, close_handle_cb);
		uv_close((uv_handle_t *)&srv->shutdown_timer, close_handle_cb);
		lsrv_shutdown(srv);
		ssrv_shutdown(srv);
		csrv_shutdown(srv);
	}
}

static void shutdown_timeout_cb(uv_timer_t *t)
{
	struct srv *srv = t->data;
	srv_log(LOG_WARN, "shutdown_timeout", "inflight=%zu connections=%zu", srv->inflight,
	        srv->nconns);
	/* Writes still queued are dropped and every connection is closed:
	 * a client that stopped reading would otherwise hold a write in
	 * flight, and the loop, open for ever. Appends still with the writer
	 * are finished by srv_close() before the store closes. */
	srv->inflight = 0;
	while (srv->conns != NULL) {
		srv->conns->out_len = 0;
		conn_close(srv->conns);
	}
	shutdown_check(srv);
}

static void signal_cb(uv_signal_t *s, int signum)
{
	struct srv *srv = s->data;
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	srv_log(LOG_INFO, "shutting_down", "signal=%d connections=%zu inflight=%zu", signum,
	        srv->nconns, srv->inflight);
	if (srv->listener_open) {
		uv_close((uv_handle_t *)&srv->listener, close_handle_cb);
		srv->listener_open = false;
	}
	for (struct conn *c = srv->conns; c != NULL; c = c->next)
		conn_update_reading(c);
	srv->ready = false;
	sysd_stopping(srv);
	msrv_shutdown(srv);
	lsrv_shutdown(srv);
	ssrv_shutdown(srv);
	csrv_shutdown(srv);
	uv_timer_start(&srv->shutdown_timer, shutdown_timeout_cb, srv->cfg.shutdown_timeout_ms, 0);
	flush_all(srv);
	shutdown_check(srv);
}

/* ------------------------------------------------------------ start, stop */

int srv_parse_addr(const char *option, const char *text, struct sockaddr_storage *ss,
                   char *errmsg, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(text, ':');
	if (colon == NULL || colon == text || colon[1] == '\0') {
		snprintf(errmsg, errlen, "--%s '%s' is not HOST:PORT", option, text);
		return -1;
	}
	size_t hlen = (size_t)(colon - text);
	if (text[0] == '[' && hlen >= 2 && text[hlen - 1] == ']') {
		memcpy(host, text + 1, hlen - 2);
		host[hlen - 2] = '\0';
	} else {
		if (hlen >= sizeof(host))
			hlen = sizeof(host) - 1;
		memcpy(host, text, hlen);
		host[hlen] = '\0';
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535) {
		snprintf(errmsg, errlen, "--%s '%s': the port must be 0..65535", option, text);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	if (strcmp(host, "localhost") == 0 &&
	    uv_ip4_addr("127.0.0.1", (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	snprintf(errmsg, errlen, "--%s '%s': '%s' is not an IPv4 or IPv6 address", option, text,
	         host);
	return -1;
}

int srv_write_port_file(const char *path, int port, char *errmsg, size_t errlen)
{
	char tmp[1100];
	char text[16];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int n = snprintf(text, sizeof(text), "%d\n", port);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0) {
		snprintf(errmsg, errlen, "cannot write the port file '%s': %s", path,
		         strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		return -1;
	}
	return 0;
}

int srv_init(struct srv **out, uv_loop_t *loop, const struct srv_config *cfg, char *errmsg,
             size_t errlen)
{
	struct sockaddr_storage addr;
	int rc;

	if (srv_parse_addr("listen", cfg->listen, &addr, errmsg, errlen) != 0)
		return WB_E_INVAL;
	struct srv *srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	srv->loop = loop;
	srv->cfg = *cfg;
	srv->max_event_size = (uint32_t)(cfg->max_frame - 1024);
	srv->start_ms = uv_now(loop);

	struct storage_options so = {.path = cfg->data_dir, .map_size = cfg->map_size};
	rc = storage_open(&srv->st, &so, errmsg, errlen);
	if (rc != 0)
		goto err_after_alloc;
	rc = lsrv_init(srv, errmsg, errlen);
	if (rc != 0)
		goto err_after_storage;
	psrv_remove_leftovers(cfg->data_dir);
	rc = ssrv_init(srv, errmsg, errlen);
	if (rc == 0)
		rc = csrv_init(srv, errmsg, errlen);
	if (rc != 0)
		goto err_after_lsrv;

	rc = uv_async_init(loop, &srv->async, async_cb);
	if (rc != 0)
		goto err_after_lsrv;
	srv->async.data = srv;
	pthread_mutex_init(&srv->async_mu, NULL);
	rc = writer_start(&srv->writer, srv->st, writer_notify, srv);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot start the writer thread");
		goto err_after_async;
	}

	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	/* Socket activation: systemd's socket, else our own. */
	int passed = sysd_listen_fd();
	if (passed >= 0)
		rc = uv_tcp_open(&srv->listener, passed);
	else
		rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot listen on %s: %s", cfg->listen, uv_strerror(rc));
		rc = WB_E_IO;
		goto err_after_listener;
	}
	srv->listener_open = true;
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	int port = 0;
	char host[64] = "";
	if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen) == 0) {
		if (bound.ss_family == AF_INET6) {
			port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
			uv_ip6_name((struct sockaddr_in6 *)&bound, host, sizeof(host));
		} else {
			port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
			uv_ip4_name((struct sockaddr_in *)&bound, host, sizeof(host));
		}
	}
	if (cfg->port_file[0] != '\0' &&
	    srv_write_port_file(cfg->port_file, port, errmsg, errlen) != 0) {
		rc = WB_E_IO;
		goto err_after_listener;
	}

	uv_signal_init(loop, &srv->sigterm);
	uv_signal_init(loop, &srv->sigint);
	srv->sigterm.data = srv;
	srv->sigint.data = srv;
	uv_signal_start(&srv->sigterm, signal_cb, SIGTERM);
	uv_signal_start(&srv->sigint, signal_cb, SIGINT);
	uv_timer_init(loop, &srv->shutdown_timer);
	srv->shutdown_timer.data = srv;
	uv_unref((uv_handle_t *)&srv->shutdown_timer);

	struct storage_stats ss;
	storage_stats(srv->st, &ss);
	srv_log(LOG_INFO, "listening", "addr=%s:%d data_dir=%s map_size=%llu version=%s", host,
	        port, cfg->data_dir, (unsigned long long)ss.map_size, WB_VERSION);
	rc = msrv_init(srv, errmsg, errlen);
	if (rc != 0)
		goto err_after_signals;
	srv->ready = true;
	sysd_ready(srv);
	*out = srv;
	return 0;

err_after_signals:
	uv_close((uv_handle_t *)&srv->sigterm, NULL);
	uv_close((uv_handle_t *)&srv->sigint, NULL);
	uv_close((uv_handle_t *)&srv->shutdown_timer, NULL);

err_after_listener:
	uv_close((uv_handle_t *)&srv->listener, NULL);
	writer_stop(srv->writer);
err_after_async:
	uv_close((uv_handle_t *)&srv->async, NULL);
err_after_lsrv:
	csrv_shutdown(srv);
	ssrv_shutdown(srv);
	lsrv_shutdown(srv);
	uv_run(loop, UV_RUN_NOWAIT);
	csrv_close(srv);
	ssrv_close(srv);
	lsrv_close(srv);
err_after_storage:
	storage_close(srv->st);
err_after_alloc:
	free(srv);
	return rc != 0 ? rc : WB_INTERNAL;
}

void srv_close(struct srv *srv)
{
	/* The loop has ended: nothing can be answered any more, but what the
	 * writer holds is still committed before the store closes. */
	writer_drain(srv->writer);
	struct writer_op *op = writer_take_done(srv->writer);
	while (op != NULL) {
		struct writer_op *next = op->next;
		op_done(srv, (struct srv_op *)op); /* every connection is closed */
		op = next;
	}
	msrv_close(srv);
	csrv_close(srv);
	ssrv_close(srv);
	lsrv_close(srv);
	writer_stop(srv->writer);
	pthread_mutex_destroy(&srv->async_mu);
	storage_close(srv->st);
	free(srv);
}
