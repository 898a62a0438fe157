/* The connection under libwhizbang (transport.h).
 *
 * Happy path: wbt_open() resolves the address and connects within the
 * timeout (or, for "unix:PATH", connects to that Unix domain socket), and
 * with TLS does the handshake over the socket within the same deadline
 * (tls/wb_tls.h: the session sits between the frames and the socket, fed
 * what recv() brings and drained into send()). A call then queues one
 * Request frame in the write buffer, writes the buffer out, and decodes frames from the read buffer
 * until the Response with that request's id is there. Every other response decoded meanwhile (a
 * subscription push, a pipelined answer) goes to the end of one bounded FIFO
 * queue, from which wbt_next_item() takes the pushes and wbt_recv() the rest.
 * The socket stays a blocking socket for the caller; the library itself uses
 * MSG_DONTWAIT and poll() so that every call honours the per-call deadline.
 *
 * Failure modes: TLS options that cannot work (refused before connecting),
 * a handshake that fails or a server certificate that does not verify
 * (the connection is closed: nothing is ever sent in plaintext instead),
 * a refused or timed-out connect, a peer that closes (EPIPE
 * with MSG_NOSIGNAL, ECONNRESET or EOF), a frame above max_response, bytes
 * that do not decode and a response that would take the queue past its bound
 * all leave the client broken: every later call fails with WB_E_CLOSED until
 * wb_close(). A timeout of wbt_next_item() does not: reads are buffered, so a
 * frame cut short by it is completed by the next call. Errors the server
 * reports in Response.error are answers, not failures of the connection, and
 * leave the client usable (except a connection-level error with id 0, after
 * which the server closes). */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "wb_tls.h"
#include "wire.h"

#define WB_DEFAULT_MAX_RESPONSE (64u << 20)
#define WB_READ_CHUNK (64u << 10)
#define WB_DEFAULT_PORT "7411"

struct wbt_queued {
	Whizbang__V1__Response *r;
	size_t bytes;
	struct wbt_queued *next;
};

struct wbt_sub {
	uint64_t request_id;
	uint64_t subscription;
};

int64_t wbt_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wbt_deadline(struct wb_client *c, int64_t ms)
{
	c->deadline_ms = ms > 0 ? wbt_now_ms() + ms : -1;
	c->call_timeout_ms = ms;
}

void wbt_begin(struct wb_client *c)
{
	c->errmsg[0] = '\0';
	c->actual_version = -1;
	wbt_deadline(c, c->timeout_ms);
}

int wbt_fail(struct wb_client *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	if (code == WB_E_IO || code == WB_E_CLOSED || (code == WB_E_TIMEOUT && !c->soft_timeout))
		c->broken = true;
	return code;
}

int wbt_usable(struct wb_client *c)
{
	if (c->broken)
		return wbt_fail(
		        c, WB_E_CLOSED,
		        "the connection failed earlier; close this client and connect again");
	return 0;
}

/* protobuf-c allocates more than a frame's size for its structs (an empty
 * RecordedEvent is 2 bytes on the wire and about 120 in memory); the budget
 * only stops a corrupt frame from asking for absurd amounts. */
static size_t unpack_budget(uint32_t len)
{
	return (size_t)len * 128 + 65536;
}

/* The peer is gone. If it said why first (a connection-level error such as
 * FRAME_TOO_LARGE, already in the read buffer), that goes into the message. */
static int closed(struct wb_client *c)
{
	const uint8_t *payload;
	uint32_t plen;
	size_t used;
	if (frame_decode(c->rbuf + c->rpos, c->rlen - c->rpos, c->max_response, &payload, &plen,
	                 &used) == FRAME_OK) {
		Whizbang__V1__Response *r =
		        wire_unpack_response(payload, plen, unpack_budget(plen));
		if (r != NULL && r->error != NULL &&
		    r->error->code != WHIZBANG__V1__ERROR_CODE__OK) {
			int rc =
			        wbt_fail(c, WB_E_CLOSED, "the server closed the connection: %s: %s",
			                 wb_error_name((int)r->error->code), r->error->message);
			whizbang__v1__response__free_unpacked(r, NULL);
			return rc;
		}
		if (r != NULL)
			whizbang__v1__response__free_unpacked(r, NULL);
	}
	return wbt_fail(c, WB_E_CLOSED, "the server closed the connection");
}

/* Waits until fd is ready for one of events or the deadline passes; the ready
 * events go to *revents. */
static int wait_fd(struct wb_client *c, short events, short *revents)
{
	for (;;) {
		int wait = -1;
		if (c->deadline_ms >= 0) {
			int64_t left = c->deadline_ms - wbt_now_ms();
			if (left <= 0)
				return wbt_fail(c, WB_E_TIMEOUT,
				                "no answer from the server within %lld ms",
				                (long long)c->call_timeout_ms);
			wait = (int)left;
		}
		struct pollfd p = {.fd = c->fd, .events = events, .revents = 0};
		int n = poll(&p, 1, wait);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return wbt_fail(c, WB_E_IO, "poll failed: %s", strerror(errno));
		if (n == 0)
			continue; /* the next turn reports the timeout */
		/* POLLERR and POLLHUP surface as errors from the next send or recv. */
		*revents = p.revents;
		return 0;
	}
}

/* ---------------------------------------------------------------- bytes on the wire
 *
 * Below the frames: the socket, and TLS over it when the client has a
 * session. Nothing here blocks; the callers wait with wait_fd(). */

/* Sends p[0..n) as far as the socket takes it now: 0 with the count in
 * *sent (0 when the socket is full), or a failure. */
static int sock_send(struct wb_client *c, const uint8_t *p, size_t n, size_t *sent)
{
	*sent = 0;
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w >= 0) {
			*sent = (size_t)w;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EPIPE || errno == ECONNRESET)
			return closed(c);
		return wbt_fail(c, WB_E_IO, "sending to the server failed: %s", strerror(errno));
	}
	return 0;
}

/* Reads what the socket holds into p[0..cap): 0 with the count (> 0) in
 * *got, WB_E_AGAIN when nothing is waiting, otherwise a failure. */
static int sock_recv(struct wb_client *c, uint8_t *p, size_t cap, size_t *got)
{
	*got = 0;
	for (;;) {
		ssize_t n = recv(c->fd, p, cap, MSG_DONTWAIT);
		if (n > 0) {
			*got = (size_t)n;
			return 0;
		}
		if (n == 0)
			return closed(c);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return WB_E_AGAIN;
		if (errno == ECONNRESET)
			return closed(c);
		return wbt_fail(c, WB_E_IO, "reading from the server failed: %s", strerror(errno));
	}
}

/* The session ended (rc from wb_tls: closed by the server's close_notify,
 * or failed), and the connection with it. */
static int tls_over(struct wb_client *c, int rc)
{
	if (rc == WB_E_CLOSED)
		return closed(c);
	if (wb_tls_session_state(c->tls) == WB_TLS_FAILED)
		return wbt_fail(c, WB_E_IO, "the TLS session failed: %s",
		                wb_tls_session_errmsg(c->tls));
	return wbt_fail(c, WB_E_IO, "the TLS session is not open");
}

/* Whether ciphertext waits in the session for the socket. */
static bool tls_pending(const struct wb_client *c)
{
	if (c->tls == NULL)
		return false;
	const uint8_t *p;
	size_t n;
	wb_tls_session_peek_out(c->tls, &p, &n);
	return n > 0;
}

/* Sends the ciphertext the session holds, as far as the socket takes it. */
static int tls_push(struct wb_client *c)
{
	for (;;) {
		const uint8_t *p;
		size_t n, sent;
		wb_tls_session_peek_out(c->tls, &p, &n);
		if (n == 0)
			return 0;
		int rc = sock_send(c, p, n, &sent);
		if (rc != 0)
			return rc;
		wb_tls_session_consume_out(c->tls, sent);
		if (sent < n)
			return 0;
	}
}

/* Takes the bytes p[0..n) for the server and sends what the socket takes
 * now: 0 with the count taken in *taken (all of them, unless the socket
 * is full), or a failure. With TLS, bytes taken may wait in the session as
 * ciphertext (tls_pending()). */
static int put_bytes(struct wb_client *c, const uint8_t *p, size_t n, size_t *taken)
{
	*taken = 0;
	if (c->tls == NULL)
		return sock_send(c, p, n, taken);
	for (;;) {
		int rc = tls_push(c);
		if (rc != 0)
			return rc;
		if (*taken == n || tls_pending(c))
			return 0;
		size_t took = 0;
		rc = wb_tls_session_write(c->tls, p + *taken, n - *taken, &took);
		*taken += took;
		if (rc != 0)
			return tls_over(c, rc);
	}
}

/* Reads what the server sent into buf[0..cap) (cap > 0): 0 with the count
 * (> 0) in *got, WB_E_AGAIN when nothing is there now, otherwise a
 * failure. With TLS, the session's plaintext comes first, then it is fed
 * what the socket holds until it yields some. */
static int get_bytes(struct wb_client *c, uint8_t *buf, size_t cap, size_t *got)
{
	*got = 0;
	if (c->tls == NULL)
		return sock_recv(c, buf, cap, got);
	for (;;) {
		int rc = wb_tls_session_read(c->tls, buf, cap, got);
		if (*got > 0)
			return 0;
		if (rc != 0)
			return tls_over(c, rc);
		if (c->cpos == c->clen) {
			size_t n = 0;
			c->cpos = c->clen = 0;
			rc = sock_recv(c, c->cbuf, WB_TLS_IN_BUF, &n);
			if (rc != 0)
				return rc;
			c->clen = n;
		}
		size_t took = 0;
		rc = wb_tls_session_feed(c->tls, c->cbuf + c->cpos, c->clen - c->cpos, &took);
		c->cpos += took;
		if (rc != 0)
			return tls_over(c, rc);
		/* An answer the session owes (a KeyUpdate's) goes now if it can. */
		rc = tls_push(c);
		if (rc != 0)
			return rc;
		if (took == 0)
			return wbt_fail(c, WB_E_IO, "the TLS session takes no more bytes");
	}
}

/* Makes the buffer *buf of *cap bytes size bytes long; which names it in
 * the message. */
static int grow(struct wb_client *c, uint8_t **buf, size_t *cap, size_t size, const char *which)
{
	uint8_t *p = realloc(*buf, size);
	if (p == NULL)
		return wbt_fail(c, WB_E_NOMEM, "no memory for a %s buffer of %zu bytes", which,
		                size);
	*buf = p;
	*cap = size;
	return 0;
}

/* Reads once from the connection into the read buffer: 0 when bytes
 * arrived, WB_E_AGAIN when none are waiting, otherwise a failure. */
static int read_some(struct wb_client *c)
{
	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	size_t want = c->rlen + WB_READ_CHUNK;
	/* A large frame gets its whole room at once rather than by doubling; a
	 * length above max_response is left for frame_decode() to refuse. */
	if (c->rlen >= FRAME_HEADER) {
		uint32_t announced = frame_get_header(c->rbuf);
		size_t whole = FRAME_HEADER + (size_t)announced;
		if (announced <= c->max_response && whole > want)
			want = whole;
	}
	if (want > c->rcap) {
		int rc = grow(c, &c->rbuf, &c->rcap, want, "read");
		if (rc != 0)
			return rc;
	}
	size_t got = 0;
	int rc = get_bytes(c, c->rbuf + c->rlen, c->rcap - c->rlen, &got);
	if (rc == 0)
		c->rlen += got;
	return rc;
}

/* Writes the whole write buffer (and, with TLS, the ciphertext it became).
 * While the socket is not writable it also reads what the server sends, so
 * that a server which stops reading until its answers are read cannot
 * deadlock a long pipeline. */
int wbt_flush(struct wb_client *c)
{
	size_t off = 0;
	while (off < c->wlen || tls_pending(c)) {
		size_t taken = 0;
		int rc = put_bytes(c, c->wbuf + off, c->wlen - off, &taken);
		if (rc != 0)
			return rc;
		off += taken;
		if (off == c->wlen && !tls_pending(c))
			break;
		short revents = 0;
		rc = wait_fd(c, POLLOUT | POLLIN, &revents);
		if (rc != 0)
			return rc;
		if (revents & POLLIN) {
			rc = read_some(c);
			if (rc != 0 && rc != WB_E_AGAIN)
				return rc;
		}
	}
	c->wlen = 0;
	return 0;
}

/* Decodes the next Response, reading from the socket as needed. */
static int recv_response(struct wb_client *c, Whizbang__V1__Response **out)
{
	for (;;) {
		const uint8_t *payload = NULL;
		uint32_t plen = 0;
		size_t used = 0;
		enum frame_status st = frame_decode(c->rbuf + c->rpos, c->rlen - c->rpos,
		                                    c->max_response, &payload, &plen, &used);
		if (st == FRAME_OK) {
			Whizbang__V1__Response *r =
			        wire_unpack_response(payload, plen, unpack_budget(plen));
			c->rpos += used;
			c->last_frame_len = plen;
			if (c->rpos == c->rlen)
				c->rpos = c->rlen = 0;
			if (r == NULL)
				return wbt_fail(c, WB_E_IO,
				                "a response of %u bytes could not be decoded "
				                "(malformed, or out of memory)",
				                plen);
			/* A keepalive (id 0, a Pong): the server is alive, and
			 * there is nothing to answer. */
			if (r->id == 0 && r->body_case == WHIZBANG__V1__RESPONSE__BODY_PONG) {
				whizbang__v1__response__free_unpacked(r, NULL);
				continue;
			}
			*out = r;
			return 0;
		}
		if (st == FRAME_ERROR)
			return wbt_fail(
			        c, WB_E_IO,
			        "the server sent a frame of %u bytes, more than this client's "
			        "max_response of %u",
			        plen, c->max_response);
		int rc = read_some(c);
		if (rc == WB_E_AGAIN) {
			/* With TLS, the session may owe the server an answer. */
			short revents = 0;
			rc = wait_fd(c, (short)(POLLIN | (tls_pending(c) ? POLLOUT : 0)), &revents);
			if (rc == 0 && (revents & POLLOUT))
				rc = tls_push(c);
		}
		if (rc != 0)
			return rc;
	}
}

int wbt_queue(struct wb_client *c, Whizbang__V1__Request *req, uint64_t *id)
{
	req->id = ++c->next_id;
	size_t n = protobuf_c_message_get_packed_size(&req->base);
	/* Sending a frame above the server's limit would make it close the
	 * connection; refusing it here keeps the client usable. */
	if (c->info.max_frame != 0 && n > c->info.max_frame)
		return wbt_fail(c, WB_FRAME_TOO_LARGE,
		                "the request is %zu bytes, more than the server's max_frame of %u",
		                n, c->info.max_frame);
	if (n > UINT32_MAX || n > SIZE_MAX - FRAME_HEADER - c->wlen)
		return wbt_fail(c, WB_E_INVAL, "the request is too large to send (%zu bytes)", n);
	size_t need = c->wlen + FRAME_HEADER + n;
	if (need > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 4096;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		int rc = grow(c, &c->wbuf, &c->wcap, cap, "write");
		if (rc != 0)
			return rc;
	}
	frame_put_header(c->wbuf + c->wlen, (uint32_t)n);
	protobuf_c_message_pack(&req->base, c->wbuf + c->wlen + FRAME_HEADER);
	c->wlen = need;
	*id = req->id;
	return 0;
}

/* ---------------------------------------------------------------- bodies */

/* The member of m's body oneof whose message type is type, or NULL. Every
 * body of a Request has a type of its own, so the type decides the case. */
static const ProtobufCFieldDescriptor *member_of_type(const ProtobufCMessageDescriptor *m,
                                                      const ProtobufCMessageDescriptor *type)
{
	for (unsigned k = 0; k < m->n_fields; k++) {
		const ProtobufCFieldDescriptor *f = &m->fields[k];
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->descriptor == type)
			return f;
	}
	return NULL;
}

/* The member of Response's body oneof named answer, or NULL. */
static const ProtobufCFieldDescriptor *answer_member(const char *answer)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
	        &whizbang__v1__response__descriptor, answer);
	return f != NULL && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? f : NULL;
}

/* The oneof case of msg: the field number of the member that is set. */
static uint32_t body_case(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	uint32_t which;
	memcpy(&which, (const char *)msg + f->quantifier_offset, sizeof(which));
	return which;
}

/* Sets the member f of msg's oneof to body, or, with body NULL, takes it out
 * and leaves the oneof unset; answers what was there before. */
static void *swap_body(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const void *body)
{
	void *old;
	uint32_t which = body != NULL ? f->id : 0;
	memcpy(&old, (char *)msg + f->offset, sizeof(old));
	memcpy((char *)msg + f->offset, &body, sizeof(body));
	memcpy((char *)msg + f->quantifier_offset, &which, sizeof(which));
	return old;
}

static const char *type_name(const ProtobufCFieldDescriptor *f)
{
	return ((const ProtobufCMessageDescriptor *)f->descriptor)->short_name;
}

int wbt_request(struct wb_client *c, const ProtobufCMessage *body, uint64_t *id)
{
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	const ProtobufCFieldDescriptor *f =
	        member_of_type(&whizbang__v1__request__descriptor, body->descriptor);
	if (f == NULL)
		return wbt_fail(c, WB_E_INVAL, "no Request carries a %s", body->descriptor->name);
	/* protobuf-c only reads the body while packing. */
	swap_body(&req.base, f, body);
	return wbt_queue(c, &req, id);
}

/* Turns Response.error into the return code and the message. */
static int server_error(struct wb_client *c, const Whizbang__V1__Error *e)
{
	int code = (int)e->code;
	/* A code this library does not know (from a newer server) must not be
	 * mistaken for one of the local codes, nor go out unnamed. */
	if (code <= 0 || code > WB_WIRE_MAX || strcmp(wb_error_name(code), "UNKNOWN") == 0)
		return wbt_fail(c, WB_INTERNAL,
		                "the server answered with unknown error code %d: %s", code,
		                e->message);
	if (code == WB_WRONG_EXPECTED_VERSION)
		c->actual_version = e->actual_version;
	snprintf(c->errmsg, sizeof(c->errmsg), "%s",
	         e->message[0] != '\0' ? e->message : wb_strerror(code));
	return code;
}

static bool is_error(const Whizbang__V1__Response *r)
{
	return r->error != NULL && r->error->code != WHIZBANG__V1__ERROR_CODE__OK;
}

/* ---------------------------------------------------------------- the queue */

static struct wbt_sub *find_sub_by_request(struct wb_client *c, uint64_t request_id)
{
	for (size_t i = 0; i < c->nsubs; i++)
		if (c->subs[i].request_id == request_id)
			return &c->subs[i];
	return NULL;
}

static struct wbt_sub *find_sub(struct wb_client *c, uint64_t subscription)
{
	for (size_t i = 0; i < c->nsubs; i++)
		if (c->subs[i].subscription == subscription)
			return &c->subs[i];
	return NULL;
}

static void forget_sub(struct wb_client *c, struct wbt_sub *e)
{
	*e = c->subs[--c->nsubs];
}

/* A push belongs to wb_next_item(): an item of any subscription (also one
 * that arrives before its SubscribeResult), or an error that ends a
 * subscription started here. */
static bool is_push(struct wb_client *c, const Whizbang__V1__Response *r)
{
	if (r->body_case == WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM)
		return true;
	return is_error(r) && find_sub_by_request(c, r->id) != NULL;
}

/* Keeps r (size: its frame's bytes) for later, within the bound. Past the
 * bound r is freed and the client broken: a dropped push would leave a gap
 * in a subscription that no later call could explain. */
static int enqueue(struct wb_client *c, Whizbang__V1__Response *r, size_t bytes)
{
	if (c->qcount >= c->max_queued || bytes > c->max_queued_bytes - c->qbytes) {
		unsigned long long id = (unsigned long long)r->id;
		whizbang__v1__response__free_unpacked(r, NULL);
		int rc = wbt_fail(c, WB_RESOURCE_EXHAUSTED,
		                  "%zu responses (%zu bytes) are queued unread, the client's bound "
		                  "(max_queued %zu, max_queued_bytes %zu); response %llu was "
		                  "dropped: read pushes with wb_next_item() and keep outstanding "
		                  "credits below the bound",
		                  c->qcount, c->qbytes, c->max_queued, c->max_queued_bytes, id);
		c->broken = true;
		return rc;
	}
	struct wbt_queued *q = malloc(sizeof(*q));
	if (q == NULL) {
		whizbang__v1__response__free_unpacked(r, NULL);
		c->broken = true;
		return wbt_fail(c, WB_E_NOMEM, "no memory to queue a response");
	}
	q->r = r;
	q->bytes = bytes;
	q->next = NULL;
	if (c->qtail != NULL)
		c->qtail->next = q;
	else
		c->qhead = q;
	c->qtail = q;
	c->qcount++;
	c->qbytes += bytes;
	return 0;
}

/* Takes the oldest queued response for which want_push says whether it is a
 * push; NULL when there is none. */
static Whizbang__V1__Response *dequeue(struct wb_client *c, bool want_push)
{
	struct wbt_queued *prev = NULL;
	for (struct wbt_queued *q = c->qhead; q != NULL; prev = q, q = q->next) {
		if (is_push(c, q->r) != want_push)
			continue;
		if (prev != NULL)
			prev->next = q->next;
		else
			c->qhead = q->next;
		if (c->qtail == q)
			c->qtail = prev;
		c->qcount--;
		c->qbytes -= q->bytes;
		Whizbang__V1__Response *r = q->r;
		free(q);
		return r;
	}
	return NULL;
}

void wbt_drop_pushes(struct wb_client *c, uint64_t request_id)
{
	struct wbt_queued **link = &c->qhead;
	c->qtail = NULL;
	while (*link != NULL) {
		struct wbt_queued *q = *link;
		if (q->r->id == request_id &&
		    q->r->body_case == WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM) {
			*link = q->next;
			c->qcount--;
			c->qbytes -= q->bytes;
			whizbang__v1__response__free_unpacked(q->r, NULL);
			free(q);
			continue;
		}
		c->qtail = q;
		link = &q->next;
	}
}

/* Reads responses until want(c, r) holds for one, which goes to *out;
 * every other one is queued. */
static int read_until(struct wb_client *c,
                      bool (*want)(struct wb_client *c, const Whizbang__V1__Response *r, void *arg),
                      void *arg, Whizbang__V1__Response **out)
{
	for (;;) {
		Whizbang__V1__Response *r = NULL;
		int rc = recv_response(c, &r);
		if (rc != 0)
			return rc;
		if (want(c, r, arg)) {
			*out = r;
			return 0;
		}
		rc = enqueue(c, r, c->last_frame_len);
		if (rc != 0)
			return rc;
	}
}

/* The answer to request *arg, or a connection-level error (id 0), which the
 * server closes the connection after. */
static bool answer_or_fatal(struct wb_client *c, const Whizbang__V1__Response *r, void *arg)
{
	(void)c;
	uint64_t id = *(const uint64_t *)arg;
	return (r->id == id && r->body_case != WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM) ||
	       (r->id == 0 && is_error(r));
}

static bool push(struct wb_client *c, const Whizbang__V1__Response *r, void *arg)
{
	(void)arg;
	return is_push(c, r);
}

static bool not_push(struct wb_client *c, const Whizbang__V1__Response *r, void *arg)
{
	(void)arg;
	return !is_push(c, r);
}

int wbt_answer(struct wb_client *c, uint64_t id, const char *answer, void *out)
{
	const ProtobufCFieldDescriptor *f = answer_member(answer);
	if (f == NULL)
		return wbt_fail(c, WB_E_INVAL, "no Response body is called %s", answer);
	int rc = wbt_flush(c);
	Whizbang__V1__Response *r = NULL;
	if (rc == 0)
		rc = read_until(c, answer_or_fatal, &id, &r);
	if (rc != 0)
		return rc;
	if (r->id == 0) {
		rc = server_error(c, r->error);
		c->broken = true;
	} else if (is_error(r)) {
		rc = server_error(c, r->error);
	} else if (body_case(&r->base, f) != f->id) {
		rc = wbt_fail(c, WB_INTERNAL,
		              "the server's response holds neither an error nor a %s",
		              type_name(f));
	} else if (out != NULL) {
		void *body = swap_body(&r->base, f, NULL);
		memcpy(out, &body, sizeof(body));
	}
	whizbang__v1__response__free_unpacked(r, NULL);
	return rc;
}

int wbt_ready(struct wb_client *c)
{
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	if (c->outstanding != 0)
		return wbt_fail(c, WB_E_INVAL,
		                "%zu pipelined requests are still unanswered; wb_recv() them first",
		                c->outstanding);
	return 0;
}

int wbt_call(struct wb_client *c, const ProtobufCMessage *body, const char *answer, void *out)
{
	uint64_t id;
	int rc = wbt_ready(c);
	if (rc == 0)
		rc = wbt_request(c, body, &id);
	if (rc != 0)
		return rc;
	return wbt_answer(c, id, answer, out);
}

int wbt_recv(struct wb_client *c, Whizbang__V1__Response **out)
{
	int rc = wbt_flush(c);
	if (rc != 0)
		return rc;
	Whizbang__V1__Response *r = dequeue(c, false);
	if (r == NULL) {
		rc = read_until(c, not_push, NULL, &r);
		if (rc != 0)
			return rc;
	}
	if (c->outstanding != 0)
		c->outstanding--;
	*out = r;
	return 0;
}

int wbt_next_item(struct wb_client *c, int timeout_ms, Whizbang__V1__SubscriptionItem **item)
{
	int rc = c->wlen != 0 ? wbt_flush(c) : 0;
	if (rc != 0)
		return rc;
	Whizbang__V1__Response *r = dequeue(c, true);
	if (r == NULL) {
		/* Here 0 means "only what has come", not "never". */
		c->deadline_ms = timeout_ms >= 0 ? wbt_now_ms() + timeout_ms : -1;
		c->call_timeout_ms = timeout_ms;
		c->soft_timeout = true;
		rc = read_until(c, push, NULL, &r);
		c->soft_timeout = false;
		if (rc == WB_E_TIMEOUT)
			snprintf(c->errmsg, sizeof(c->errmsg),
			         "no subscription item arrived within %d ms", timeout_ms);
		if (rc != 0)
			return rc;
	}
	if (is_error(r)) {
		struct wbt_sub *e = find_sub_by_request(c, r->id);
		uint64_t sub = e != NULL ? e->subscription : 0;
		if (e != NULL)
			forget_sub(c, e);
		rc = server_error(c, r->error);
		char why[sizeof(c->errmsg)];
		memcpy(why, c->errmsg, sizeof(why));
		snprintf(c->errmsg, sizeof(c->errmsg), "subscription %llu ended: %.400s",
		         (unsigned long long)sub, why);
		whizbang__v1__response__free_unpacked(r, NULL);
		return rc;
	}
	*item = swap_body(&r->base, answer_member("subscription_item"), NULL);
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

/* ---------------------------------------------------------------- subscriptions */

int wbt_sub_reserve(struct wb_client *c)
{
	if (c->nsubs < c->subs_cap)
		return 0;
	size_t cap = c->subs_cap != 0 ? c->subs_cap * 2 : 4;
	struct wbt_sub *p = realloc(c->subs, cap * sizeof(*p));
	if (p == NULL)
		return wbt_fail(c, WB_E_NOMEM, "no memory to keep a subscription");
	c->subs = p;
	c->subs_cap = cap;
	return 0;
}

void wbt_sub_add(struct wb_client *c, uint64_t request_id, uint64_t subscription)
{
	c->subs[c->nsubs].request_id = request_id;
	c->subs[c->nsubs].subscription = subscription;
	c->nsubs++;
}

void wbt_sub_end(struct wb_client *c, uint64_t subscription)
{
	struct wbt_sub *e = find_sub(c, subscription);
	if (e != NULL) {
		wbt_drop_pushes(c, e->request_id);
		forget_sub(c, e);
	}
}

/* ---------------------------------------------------------------- the dial */

/* Splits "host:port", "[v6]:port", "host" or "[v6]" into its parts. */
static int split_address(const char *address, char *host, size_t hostlen, char *port,
                         size_t portlen, char *errmsg, size_t errlen)
{
	const char *h = address, *h_end, *p = NULL;
	if (address[0] == '[') {
		h = address + 1;
		h_end = strchr(h, ']');
		if (h_end == NULL || (h_end[1] != '\0' && h_end[1] != ':'))
			goto bad;
		if (h_end[1] == ':')
			p = h_end + 2;
	} else {
		h_end = strchr(address, ':');
		if (h_end != NULL && strchr(h_end + 1, ':') != NULL) {
			snprintf(errmsg, errlen,
			         "address \"%s\": write an IPv6 address in brackets, as [::1]:7411",
			         address);
			return WB_E_INVAL;
		}
		if (h_end != NULL)
			p = h_end + 1;
		else
			h_end = address + strlen(address);
	}
	size_t n = (size_t)(h_end - h);
	if (n == 0 || n >= hostlen)
		goto bad;
	memcpy(host, h, n);
	host[n] = '\0';
	if (p == NULL)
		p = WB_DEFAULT_PORT;
	char *end;
	errno = 0;
	unsigned long v = strtoul(p, &end, 10);
	if (p[0] < '0' || p[0] > '9' || *end != '\0' || errno != 0 || v == 0 || v > 65535)
		goto bad;
	snprintf(port, portlen, "%lu", v);
	return 0;
bad:
	snprintf(errmsg, errlen, "address \"%s\" is not host:port", address);
	return WB_E_INVAL;
}

/* Connects fd to addr within the deadline. */
static int connect_one(struct wb_client *c, const struct sockaddr *addr, socklen_t addrlen)
{
	int flags = fcntl(c->fd, F_GETFL);
	if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return wbt_fail(c, WB_E_IO, "fcntl failed: %s", strerror(errno));
	int err = 0;
	if (connect(c->fd, addr, addrlen) < 0) {
		if (errno != EINPROGRESS && errno != EINTR) {
			err = errno;
		} else {
			short revents = 0;
			int rc = wait_fd(c, POLLOUT, &revents);
			if (rc != 0)
				return rc;
			socklen_t len = sizeof(err);
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
		}
	}
	if (err == 0 && fcntl(c->fd, F_SETFL, flags) < 0)
		err = errno;
	if (err != 0)
		return wbt_fail(c, WB_E_IO, "%s", strerror(err));
	return 0;
}

/* Connects to the Unix domain socket at path within the deadline. */
static int dial_unix(struct wb_client *c, const char *address, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(sa.sun_path))
		return wbt_fail(c, WB_E_INVAL,
		                "address \"%s\": a socket path is 1 to %zu bytes, not %zu", address,
		                sizeof(sa.sun_path) - 1, n);
	memcpy(sa.sun_path, path, n + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return wbt_fail(c, WB_E_IO, "socket failed: %s", strerror(errno));
	int rc = connect_one(c, (const struct sockaddr *)&sa, sizeof(sa));
	if (rc != 0) {
		close(c->fd);
		c->fd = -1;
		char why[sizeof(c->errmsg)];
		memcpy(why, c->errmsg, sizeof(why));
		return wbt_fail(c, rc, "cannot connect to %s: %s", address, why);
	}
	c->broken = false;
	return 0;
}

static int dial(struct wb_client *c, const char *address)
{
	if (strncmp(address, WB_UNIX_PREFIX, strlen(WB_UNIX_PREFIX)) == 0)
		return dial_unix(c, address, address + strlen(WB_UNIX_PREFIX));
	char host[256], port[8];
	int rc = split_address(address, host, sizeof(host), port, sizeof(port), c->errmsg,
	                       sizeof(c->errmsg));
	if (rc != 0)
		return rc;
	struct addrinfo hints = {0}, *res;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0)
		return wbt_fail(c, WB_E_IO, "cannot resolve \"%s\": %s", host, gai_strerror(gai));
	rc = WB_E_IO;
	for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (c->fd < 0) {
			rc = wbt_fail(c, WB_E_IO, "socket failed: %s", strerror(errno));
			continue;
		}
		rc = connect_one(c, ai->ai_addr, ai->ai_addrlen);
		if (rc == 0)
			break;
		close(c->fd);
		c->fd = -1;
		if (rc == WB_E_TIMEOUT)
			break;
	}
	freeaddrinfo(res);
	if (rc != 0) {
		char why[sizeof(c->errmsg)];
		memcpy(why, c->errmsg, sizeof(why));
		return wbt_fail(c, rc, "cannot connect to %s: %s", address, why);
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->broken = false;
	return 0;
}

/* ---------------------------------------------------------------- TLS */

/* The TLS context opts ask for into *out, or NULL for a plaintext
 * connection; the server name is the host of address unless opts names
 * one. Refuses (WB_E_INVAL) TLS options without TLS, TLS to a Unix socket
 * and TLS without a CA file; a file that does not load fails as
 * wb_tls_ctx_new() says. */
static int tls_context(struct wb_client *c, const char *address, const struct wb_options *opts,
                       struct wb_tls_ctx **out)
{
	*out = NULL;
	if (opts == NULL)
		return 0;
	if (!opts->tls) {
		/* Options that only make sense with TLS must not quietly
		 * leave the connection in plaintext. */
		if (opts->tls_ca_file != NULL || opts->tls_server_name != NULL ||
		    opts->tls_cert_file != NULL || opts->tls_key_file != NULL)
			return wbt_fail(c, WB_E_INVAL,
			                "TLS options are set but tls is not: set tls too, or leave "
			                "them out for a plaintext connection");
		return 0;
	}
	if (strncmp(address, WB_UNIX_PREFIX, strlen(WB_UNIX_PREFIX)) == 0)
		return wbt_fail(c, WB_E_INVAL,
		                "TLS does not apply to a Unix socket, which never leaves the "
		                "machine: connect to it without TLS, or to the server's TCP port "
		                "with TLS");
	if (opts->tls_ca_file == NULL)
		return wbt_fail(c, WB_E_INVAL,
		                "TLS needs the CA file that the server's certificate must chain "
		                "to (tls_ca_file; in a URL, tlsCaFile)");
	char host[256], port[8];
	int rc = split_address(address, host, sizeof(host), port, sizeof(port), c->errmsg,
	                       sizeof(c->errmsg));
	if (rc != 0)
		return rc;
	struct wb_tls_config cfg = {
	        .role = WB_TLS_CLIENT,
	        .ca_file = opts->tls_ca_file,
	        .server_name = opts->tls_server_name != NULL ? opts->tls_server_name : host,
	        .cert_file = opts->tls_cert_file,
	        .key_file = opts->tls_key_file,
	};
	char why[400];
	rc = wb_tls_ctx_new(&cfg, out, why, sizeof(why));
	if (rc != 0)
		return wbt_fail(c, rc, "TLS: %s", why);
	return 0;
}

/* The handshake failed: why, in the words of what to fix. */
static int handshake_failed(struct wb_client *c, const struct wb_options *opts,
                            const char *server_name)
{
	/* The alert, so that the server logs why rather than a lost peer. */
	(void)tls_push(c);
	const char *why = wb_tls_session_errmsg(c->tls);
	const char *ca = opts->tls_ca_file;
	switch (wb_tls_session_verify(c->tls)) {
	case WB_TLS_VERIFY_OK:
		break;
	case WB_TLS_VERIFY_UNTRUSTED:
		return wbt_fail(c, WB_UNAUTHENTICATED,
		                "the server's certificate does not verify: %s: no CA in %.200s "
		                "signed it (the wrong CA file, or not the server meant)",
		                why, ca);
	case WB_TLS_VERIFY_NAME:
		return wbt_fail(c, WB_UNAUTHENTICATED,
		                "the server's certificate does not verify: %s: it does not carry "
		                "the name %.200s (connect by a name it carries, or give that name "
		                "as the TLS server name)",
		                why, server_name);
	case WB_TLS_VERIFY_EXPIRED:
		return wbt_fail(c, WB_UNAUTHENTICATED,
		                "the server's certificate does not verify: %s: the server needs a "
		                "new certificate (whizbang certs create-node)",
		                why);
	case WB_TLS_VERIFY_NOT_YET_VALID:
		return wbt_fail(c, WB_UNAUTHENTICATED,
		                "the server's certificate does not verify: %s: is this machine's "
		                "clock behind?",
		                why);
	case WB_TLS_VERIFY_OTHER:
		return wbt_fail(c, WB_UNAUTHENTICATED,
		                "the server's certificate does not verify: %s", why);
	}
	return wbt_fail(c, WB_E_IO, "the TLS handshake failed: %s", why);
}

/* Does the TLS handshake of a session of ctx over the connected socket,
 * within the deadline; then the connection is TLS (c->tls) for good. */
static int tls_handshake(struct wb_client *c, struct wb_tls_ctx *ctx, const struct wb_options *opts,
                         const char *address)
{
	char host[256], port[8];
	if (split_address(address, host, sizeof(host), port, sizeof(port), c->errmsg,
	                  sizeof(c->errmsg)) != 0)
		return WB_E_INVAL;
	const char *server_name = opts->tls_server_name != NULL ? opts->tls_server_name : host;
	c->cbuf = malloc(WB_TLS_IN_BUF);
	if (c->cbuf == NULL || wb_tls_session_new(ctx, &c->tls) != 0)
		return wbt_fail(c, WB_E_NOMEM, "no memory for a TLS session");
	for (;;) {
		int rc = tls_push(c);
		if (rc != 0)
			return rc;
		enum wb_tls_state st = wb_tls_session_state(c->tls);
		if (st == WB_TLS_OPEN)
			return 0;
		if (st != WB_TLS_HANDSHAKING)
			return handshake_failed(c, opts, server_name);
		if (c->cpos == c->clen) {
			short revents = 0;
			rc = wait_fd(c, (short)(POLLIN | (tls_pending(c) ? POLLOUT : 0)), &revents);
			if (rc == WB_E_TIMEOUT)
				return wbt_fail(c, rc,
				                "the TLS handshake did not finish within %lld ms",
				                (long long)c->call_timeout_ms);
			if (rc != 0)
				return rc;
			if (!(revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			size_t n = 0;
			c->cpos = c->clen = 0;
			rc = sock_recv(c, c->cbuf, WB_TLS_IN_BUF, &n);
			if (rc == WB_E_AGAIN)
				continue;
			if (rc == WB_E_CLOSED)
				return wbt_fail(c, WB_E_IO,
				                "the server closed the connection during the TLS "
				                "handshake (does it serve TLS on this port?)");
			if (rc != 0)
				return rc;
			c->clen = n;
		}
		size_t took = 0;
		rc = wb_tls_session_feed(c->tls, c->cbuf + c->cpos, c->clen - c->cpos, &took);
		c->cpos += took;
		if (rc == 0 && took == 0 && wb_tls_session_state(c->tls) == WB_TLS_HANDSHAKING)
			return wbt_fail(c, WB_E_IO, "the TLS handshake takes no more bytes");
	}
}

bool wbt_tls_info(const struct wb_client *c, const char **version, const char **cipher)
{
	if (c->tls == NULL)
		return false;
	if (version != NULL)
		*version = wb_tls_session_version(c->tls);
	if (cipher != NULL)
		*cipher = wb_tls_session_cipher(c->tls);
	return true;
}

/* ---------------------------------------------------------------- the caller's own loop */

int wbt_raw_write(struct wb_client *c, const uint8_t *p, size_t n, size_t *taken)
{
	*taken = 0;
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	if (n == 0 && !tls_pending(c))
		return 0;
	return put_bytes(c, p, n, taken);
}

bool wbt_raw_pending(const struct wb_client *c)
{
	return tls_pending(c);
}

int wbt_raw_read(struct wb_client *c, uint8_t *buf, size_t cap, size_t *n)
{
	*n = 0;
	int rc = wbt_usable(c);
	if (rc != 0 || cap == 0)
		return rc;
	if (c->rpos < c->rlen) {
		size_t k = c->rlen - c->rpos < cap ? c->rlen - c->rpos : cap;
		memcpy(buf, c->rbuf + c->rpos, k);
		c->rpos += k;
		if (c->rpos == c->rlen)
			c->rpos = c->rlen = 0;
		*n = k;
		return 0;
	}
	rc = get_bytes(c, buf, cap, n);
	return rc == WB_E_AGAIN ? 0 : rc;
}

/* ---------------------------------------------------------------- life */

int wbt_open(struct wb_client **out, const char *address, const struct wb_options *opts,
             int (*check)(struct wb_client *c, const struct wb_options *opts),
             int (*hello)(struct wb_client *c, const struct wb_options *opts), char *errmsg,
             size_t errlen)
{
	int rc;
	struct wb_client *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		if (errmsg != NULL && errlen > 0)
			snprintf(errmsg, errlen, "no memory for a client");
		return WB_E_NOMEM;
	}
	c->fd = -1;
	c->timeout_ms = opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : 0;
	c->max_response = opts != NULL && opts->max_response != 0 ? opts->max_response
	                                                          : WB_DEFAULT_MAX_RESPONSE;
	c->max_queued =
	        opts != NULL && opts->max_queued != 0 ? opts->max_queued : WB_DEFAULT_MAX_QUEUED;
	c->max_queued_bytes = opts != NULL && opts->max_queued_bytes != 0
	                              ? opts->max_queued_bytes
	                              : WB_DEFAULT_MAX_QUEUED_BYTES;
	wbt_begin(c);
	c->rcap = WB_READ_CHUNK;
	c->rbuf = malloc(c->rcap);
	if (c->rbuf == NULL) {
		rc = wbt_fail(c, WB_E_NOMEM, "no memory for a read buffer");
		goto err_after_alloc;
	}
	/* Everything that can be refused is, before a byte is sent. */
	rc = check(c, opts);
	if (rc != 0)
		goto err_after_alloc;
	struct wb_tls_ctx *ctx;
	rc = tls_context(c, address, opts, &ctx);
	if (rc != 0)
		goto err_after_alloc;
	/* The same deadline covers the dial, the handshake and the Hello. */
	rc = dial(c, address);
	if (rc != 0)
		goto err_after_ctx;
	if (ctx != NULL) {
		rc = tls_handshake(c, ctx, opts, address);
		if (rc != 0) {
			char why[sizeof(c->errmsg)];
			memcpy(why, c->errmsg, sizeof(why));
			wbt_fail(c, rc, "cannot connect to %s: %.480s", address, why);
			goto err_after_ctx;
		}
	}
	rc = hello(c, opts);
	if (rc != 0)
		goto err_after_ctx;
	/* The session keeps its own reference to the context. */
	wb_tls_ctx_unref(ctx);
	c->errmsg[0] = '\0';
	*out = c;
	return 0;

err_after_ctx:
	wb_tls_ctx_unref(ctx);
err_after_alloc:
	if (errmsg != NULL && errlen > 0)
		snprintf(errmsg, errlen, "%s", c->errmsg);
	wbt_close(c);
	return rc;
}

void wbt_close(struct wb_client *c)
{
	if (c == NULL)
		return;
	if (c->tls != NULL && c->fd >= 0 && !c->broken) {
		/* A close_notify if the socket takes it now; no waiting. */
		wb_tls_session_close(c->tls);
		(void)tls_push(c);
	}
	wb_tls_session_free(c->tls);
	free(c->cbuf);
	if (c->fd >= 0)
		close(c->fd);
	while (c->qhead != NULL) {
		struct wbt_queued *q = c->qhead;
		c->qhead = q->next;
		whizbang__v1__response__free_unpacked(q->r, NULL);
		free(q);
	}
	free(c->subs);
	free(c->who_buf);
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}
