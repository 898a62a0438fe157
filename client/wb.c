/* libwhizbang: a blocking client on one TCP connection.
 *
 * Happy path: wb_connect() resolves the address, connects within the timeout,
 * sends Hello and keeps the server's limits. A blocking call then queues one
 * Request frame in the write buffer, writes the buffer out, and decodes frames
 * from the read buffer until the Response with that request's id is there.
 * Every other response decoded meanwhile (a subscription push, a pipelined
 * answer) goes to the end of one bounded FIFO queue, from which
 * wb_next_item() takes the pushes and wb_recv() the rest. The socket stays a
 * blocking socket for the caller; the library itself uses MSG_DONTWAIT and
 * poll() so that every call honours the per-call deadline.
 *
 * Failure modes: a refused or timed-out connect, a peer that closes (EPIPE
 * with MSG_NOSIGNAL, ECONNRESET or EOF), a frame above max_response, bytes
 * that do not decode and a response that would take the queue past its bound
 * all leave the client "broken": every later call fails with WB_E_CLOSED
 * until wb_close(). A timeout of wb_next_item() does not: reads are buffered,
 * so a frame cut short by it is completed by the next call.
 * Errors the server reports in Response.error are answers, not failures of
 * the connection, and leave the client usable (except a connection-level
 * error with id 0, after which the server closes). */
#include "wb.h"

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
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "wire.h"

#define WB_DEFAULT_MAX_RESPONSE (64u << 20)
#define WB_READ_CHUNK (64u << 10)
#define WB_MAX_NAME 255u
#define WB_DEFAULT_PORT "7411"
/* The server caps a WaitForWatermark at an hour; the client waits this much
 * longer than the wait for the answer to arrive. */
#define WB_WAIT_MAX_MS 3600000u
#define WB_WAIT_SLACK_MS 5000

struct wb_client {
	int fd;
	int timeout_ms;
	uint32_t max_response;
	/* Set after a failure of the connection itself; every later call fails. */
	bool broken;
	uint64_t next_id;
	/* Requests queued by wb_send() whose responses wb_recv() has not returned. */
	size_t outstanding;
	/* Monotonic milliseconds at which the current call times out; -1: never. */
	int64_t deadline_ms;
	/* The current call's timeout, for the message when it passes. */
	int64_t call_timeout_ms;
	int64_t actual_version;
	struct wb_server_info info;
	uint8_t *wbuf;
	size_t wlen;
	size_t wcap;
	/* Unconsumed input is rbuf[rpos..rlen). */
	uint8_t *rbuf;
	size_t rpos;
	size_t rlen;
	size_t rcap;
	char errmsg[512];
	/* Responses that arrived while a call waited for another id, oldest
	 * first: subscription pushes and answers to pipelined requests. */
	struct queued *qhead;
	struct queued *qtail;
	size_t qcount;
	size_t qbytes;
	size_t max_queued;
	size_t max_queued_bytes;
	/* The size of the frame recv_response() decoded last. */
	size_t last_frame_len;
	/* Subscriptions started here: the request id their pushes carry. */
	struct sub_entry *subs;
	size_t nsubs;
	size_t subs_cap;
	/* While true, a timeout is an answer (wb_next_item()), not a failure:
	 * reads are buffered, so nothing is lost by stopping. */
	bool soft_timeout;
};

struct queued {
	Whizbang__V1__Response *r;
	size_t bytes;
	struct queued *next;
};

struct sub_entry {
	uint64_t request_id;
	uint64_t subscription;
};

static const uint8_t empty_bytes[1];

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts a public call: clears the last message and arms the deadline. */
static void begin(struct wb_client *c)
{
	c->errmsg[0] = '\0';
	c->actual_version = -1;
	c->deadline_ms = c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
	c->call_timeout_ms = c->timeout_ms;
}

__attribute__((format(printf, 3, 4))) static int fail(struct wb_client *c, int code,
                                                      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	if (code == WB_E_IO || code == WB_E_CLOSED || (code == WB_E_TIMEOUT && !c->soft_timeout))
		c->broken = true;
	return code;
}

static int check_usable(struct wb_client *c)
{
	if (c->broken)
		return fail(c, WB_E_CLOSED,
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
			int rc = fail(c, WB_E_CLOSED, "the server closed the connection: %s: %s",
			              wb_error_name((int)r->error->code), r->error->message);
			whizbang__v1__response__free_unpacked(r, NULL);
			return rc;
		}
		if (r != NULL)
			whizbang__v1__response__free_unpacked(r, NULL);
	}
	return fail(c, WB_E_CLOSED, "the server closed the connection");
}

/* Waits until fd is ready for one of events or the deadline passes; the ready
 * events go to *revents. */
static int wait_fd(struct wb_client *c, short events, short *revents)
{
	for (;;) {
		int wait = -1;
		if (c->deadline_ms >= 0) {
			int64_t left = c->deadline_ms - now_ms();
			if (left <= 0)
				return fail(c, WB_E_TIMEOUT,
				            "no answer from the server within %lld ms",
				            (long long)c->call_timeout_ms);
			wait = (int)left;
		}
		struct pollfd p = {.fd = c->fd, .events = events, .revents = 0};
		int n = poll(&p, 1, wait);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(c, WB_E_IO, "poll failed: %s", strerror(errno));
		if (n == 0)
			continue; /* the next turn reports the timeout */
		/* POLLERR and POLLHUP surface as errors from the next send or recv. */
		*revents = p.revents;
		return 0;
	}
}

/* Reads once from the socket into the read buffer: 0 when bytes arrived,
 * WB_E_AGAIN when none are waiting, otherwise a failure. */
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
		uint8_t *p = realloc(c->rbuf, want);
		if (p == NULL)
			return fail(c, WB_E_NOMEM, "no memory for a read buffer of %zu bytes",
			            want);
		c->rbuf = p;
		c->rcap = want;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
		if (n > 0) {
			c->rlen += (size_t)n;
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
		return fail(c, WB_E_IO, "reading from the server failed: %s", strerror(errno));
	}
}

/* Writes the whole write buffer. While the socket is not writable it also
 * reads what the server sends, so that a server which stops reading until its
 * answers are read cannot deadlock a long pipeline. */
static int flush_out(struct wb_client *c)
{
	size_t off = 0;
	while (off < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			return closed(c);
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return fail(c, WB_E_IO, "sending to the server failed: %s",
			            strerror(errno));
		short revents = 0;
		int rc = wait_fd(c, POLLOUT | POLLIN, &revents);
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
				return fail(c, WB_E_IO,
				            "a response of %u bytes could not be decoded "
				            "(malformed, or out of memory)",
				            plen);
			*out = r;
			return 0;
		}
		if (st == FRAME_ERROR)
			return fail(c, WB_E_IO,
			            "the server sent a frame of %u bytes, more than this client's "
			            "max_response of %u",
			            plen, c->max_response);
		int rc = read_some(c);
		if (rc == WB_E_AGAIN) {
			short revents = 0;
			rc = wait_fd(c, POLLIN, &revents);
		}
		if (rc != 0)
			return rc;
	}
}

/* Gives req the next id and appends its frame to the write buffer. */
static int queue(struct wb_client *c, Whizbang__V1__Request *req, uint64_t *id)
{
	req->id = ++c->next_id;
	size_t n = protobuf_c_message_get_packed_size(&req->base);
	/* Sending a frame above the server's limit would make it close the
	 * connection; refusing it here keeps the client usable. */
	if (c->info.max_frame != 0 && n > c->info.max_frame)
		return fail(c, WB_FRAME_TOO_LARGE,
		            "the request is %zu bytes, more than the server's max_frame of %u", n,
		            c->info.max_frame);
	if (n > UINT32_MAX || n > SIZE_MAX - FRAME_HEADER - c->wlen)
		return fail(c, WB_E_INVAL, "the request is too large to send (%zu bytes)", n);
	size_t need = c->wlen + FRAME_HEADER + n;
	if (need > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 4096;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		uint8_t *p = realloc(c->wbuf, cap);
		if (p == NULL)
			return fail(c, WB_E_NOMEM, "no memory for a write buffer of %zu bytes",
			            cap);
		c->wbuf = p;
		c->wcap = cap;
	}
	frame_put_header(c->wbuf + c->wlen, (uint32_t)n);
	protobuf_c_message_pack(&req->base, c->wbuf + c->wlen + FRAME_HEADER);
	c->wlen = need;
	*id = req->id;
	return 0;
}

static const char *body_name(Whizbang__V1__Response__BodyCase body)
{
	switch (body) {
	case WHIZBANG__V1__RESPONSE__BODY_HELLO:
		return "HelloResult";
	case WHIZBANG__V1__RESPONSE__BODY_PONG:
		return "Pong";
	case WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS:
		return "AppendResult";
	case WHIZBANG__V1__RESPONSE__BODY_READ_STREAM:
		return "ReadStreamResult";
	case WHIZBANG__V1__RESPONSE__BODY_READ_ALL:
		return "ReadAllResult";
	case WHIZBANG__V1__RESPONSE__BODY_STREAM_INFO:
		return "StreamInfo";
	case WHIZBANG__V1__RESPONSE__BODY_STATS:
		return "ServerStats";
	case WHIZBANG__V1__RESPONSE__BODY_LEASE:
		return "LeaseResult";
	case WHIZBANG__V1__RESPONSE__BODY_EXTEND:
		return "ExtendResult";
	case WHIZBANG__V1__RESPONSE__BODY_RELEASE:
		return "ReleaseResult";
	case WHIZBANG__V1__RESPONSE__BODY_STAGE:
		return "StageResult";
	case WHIZBANG__V1__RESPONSE__BODY_COMMIT:
		return "CommitResult";
	case WHIZBANG__V1__RESPONSE__BODY_READ_LEDGER:
		return "ReadLedgerResult";
	case WHIZBANG__V1__RESPONSE__BODY_WATERMARK:
		return "WatermarkResult";
	case WHIZBANG__V1__RESPONSE__BODY_GET_ENTITY:
		return "GetEntityResult";
	case WHIZBANG__V1__RESPONSE__BODY_QUERY:
		return "QueryResult";
	case WHIZBANG__V1__RESPONSE__BODY_INDEX:
		return "IndexResult";
	case WHIZBANG__V1__RESPONSE__BODY_INDEXES:
		return "IndexList";
	case WHIZBANG__V1__RESPONSE__BODY_PLAN:
		return "PlanResult";
	case WHIZBANG__V1__RESPONSE__BODY_VERIFY:
		return "VerifyResult";
	case WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE:
		return "SubscribeResult";
	case WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM:
		return "SubscriptionItem";
	case WHIZBANG__V1__RESPONSE__BODY_CREDIT:
		return "CreditResult";
	case WHIZBANG__V1__RESPONSE__BODY_UNSUBSCRIBE:
		return "UnsubscribeResult";
	case WHIZBANG__V1__RESPONSE__BODY_CONSUMER:
		return "ConsumerInfo";
	case WHIZBANG__V1__RESPONSE__BODY_DELETE_CONSUMER:
		return "DeleteConsumerResult";
	case WHIZBANG__V1__RESPONSE__BODY_CONSUMERS:
		return "ConsumerList";
	case WHIZBANG__V1__RESPONSE__BODY_ACK:
		return "AckResult";
	case WHIZBANG__V1__RESPONSE__BODY_NACK:
		return "NackResult";
	case WHIZBANG__V1__RESPONSE__BODY_PARKED:
		return "ParkedList";
	case WHIZBANG__V1__RESPONSE__BODY_REPLAY_PARKED:
		return "ReplayParkedResult";
	case WHIZBANG__V1__RESPONSE__BODY_STREAM_METADATA:
		return "StreamMetadataResult";
	case WHIZBANG__V1__RESPONSE__BODY_DELETE_STREAM:
		return "DeleteStreamResult";
	case WHIZBANG__V1__RESPONSE__BODY_SCAVENGE:
		return "ScavengeResult";
	case WHIZBANG__V1__RESPONSE__BODY_BACKUP:
		return "BackupResult";
	default:
		return "body";
	}
}

/* Turns Response.error into the return code and the message. */
static int server_error(struct wb_client *c, const Whizbang__V1__Error *e)
{
	int code = (int)e->code;
	/* A code this library does not know (from a newer server) must not be
	 * mistaken for one of the local codes, nor go out unnamed. */
	if (code <= 0 || code > WB_WIRE_MAX || strcmp(wb_error_name(code), "UNKNOWN") == 0)
		return fail(c, WB_INTERNAL, "the server answered with unknown error code %d: %s",
		            code, e->message);
	if (code == WB_WRONG_EXPECTED_VERSION)
		c->actual_version = e->actual_version;
	snprintf(c->errmsg, sizeof(c->errmsg), "%s",
	         e->message[0] != '\0' ? e->message : wb_strerror(code));
	return code;
}

/* A blocking call may start: the connection works and no pipelined
 * response is pending that could be mistaken for this call's answer. */
static int ready_for_call(struct wb_client *c)
{
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	if (c->outstanding != 0)
		return fail(c, WB_E_INVAL,
		            "%zu pipelined requests are still unanswered; wb_recv() them first",
		            c->outstanding);
	return 0;
}

/* ---------------------------------------------------------------- the queue */

static struct sub_entry *find_sub_by_request(struct wb_client *c, uint64_t request_id)
{
	for (size_t i = 0; i < c->nsubs; i++)
		if (c->subs[i].request_id == request_id)
			return &c->subs[i];
	return NULL;
}

static struct sub_entry *find_sub(struct wb_client *c, uint64_t subscription)
{
	for (size_t i = 0; i < c->nsubs; i++)
		if (c->subs[i].subscription == subscription)
			return &c->subs[i];
	return NULL;
}

static void forget_sub(struct wb_client *c, struct sub_entry *e)
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
	return r->error != NULL && r->error->code != WHIZBANG__V1__ERROR_CODE__OK &&
	       find_sub_by_request(c, r->id) != NULL;
}

/* Keeps r (size: its frame's bytes) for later, within the bound. Past the
 * bound r is freed and the client broken: a dropped push would leave a gap
 * in a subscription that no later call could explain. */
static int enqueue(struct wb_client *c, Whizbang__V1__Response *r, size_t bytes)
{
	if (c->qcount >= c->max_queued || bytes > c->max_queued_bytes - c->qbytes) {
		unsigned long long id = (unsigned long long)r->id;
		whizbang__v1__response__free_unpacked(r, NULL);
		int rc = fail(c, WB_RESOURCE_EXHAUSTED,
		              "%zu responses (%zu bytes) are queued unread, the client's bound "
		              "(max_queued %zu, max_queued_bytes %zu); response %llu was dropped: "
		              "read pushes with wb_next_item() and keep outstanding credits below "
		              "the bound",
		              c->qcount, c->qbytes, c->max_queued, c->max_queued_bytes, id);
		c->broken = true;
		return rc;
	}
	struct queued *q = malloc(sizeof(*q));
	if (q == NULL) {
		whizbang__v1__response__free_unpacked(r, NULL);
		c->broken = true;
		return fail(c, WB_E_NOMEM, "no memory to queue a response");
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
	struct queued *prev = NULL;
	for (struct queued *q = c->qhead; q != NULL; prev = q, q = q->next) {
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

/* Frees the queued pushes of the subscription started by request_id. */
static void drop_pushes(struct wb_client *c, uint64_t request_id)
{
	struct queued **link = &c->qhead;
	c->qtail = NULL;
	while (*link != NULL) {
		struct queued *q = *link;
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

/* Writes the queued request id out and waits for its response, queueing
 * every other response that arrives first. */
static int await(struct wb_client *c, uint64_t id, Whizbang__V1__Response **out)
{
	int rc = flush_out(c);
	if (rc != 0)
		return rc;
	for (;;) {
		Whizbang__V1__Response *r;
		rc = recv_response(c, &r);
		if (rc != 0)
			return rc;
		if (r->id == id && r->body_case != WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM) {
			*out = r;
			return 0;
		}
		if (r->id == 0 && r->error != NULL &&
		    r->error->code != WHIZBANG__V1__ERROR_CODE__OK) {
			/* A connection-level error: the server closes after it. */
			rc = server_error(c, r->error);
			c->broken = true;
			whizbang__v1__response__free_unpacked(r, NULL);
			return rc;
		}
		rc = enqueue(c, r, c->last_frame_len);
		if (rc != 0)
			return rc;
	}
}

/* Checks that r answers with the body want (or carries the server's error). */
static int check_answer(struct wb_client *c, Whizbang__V1__Response *r,
                        Whizbang__V1__Response__BodyCase want)
{
	if (r->error != NULL && r->error->code != WHIZBANG__V1__ERROR_CODE__OK)
		return server_error(c, r->error);
	if (r->body_case != want)
		return fail(c, WB_INTERNAL, "the server's response holds neither an error nor a %s",
		            body_name(want));
	return 0;
}

/* Writes the queued request id out and waits for its response, which must
 * carry the body want. On success the caller frees *out. */
static int round_trip(struct wb_client *c, uint64_t id, Whizbang__V1__Response__BodyCase want,
                      Whizbang__V1__Response **out)
{
	Whizbang__V1__Response *r = NULL;
	int rc = await(c, id, &r);
	if (rc != 0)
		return rc;
	rc = check_answer(c, r, want);
	if (rc != 0) {
		whizbang__v1__response__free_unpacked(r, NULL);
		return rc;
	}
	*out = r;
	return 0;
}

/* One blocking call: queues req and waits for its answer. */
static int call(struct wb_client *c, Whizbang__V1__Request *req,
                Whizbang__V1__Response__BodyCase want, Whizbang__V1__Response **out)
{
	int rc = ready_for_call(c);
	if (rc != 0)
		return rc;
	uint64_t id;
	rc = queue(c, req, &id);
	if (rc != 0)
		return rc;
	return round_trip(c, id, want, out);
}

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

/* Connects fd to ai within the deadline. */
static int connect_one(struct wb_client *c, const struct addrinfo *ai)
{
	int flags = fcntl(c->fd, F_GETFL);
	if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return fail(c, WB_E_IO, "fcntl failed: %s", strerror(errno));
	int err = 0;
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
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
		return fail(c, WB_E_IO, "%s", strerror(err));
	return 0;
}

static int dial(struct wb_client *c, const char *address)
{
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
		return fail(c, WB_E_IO, "cannot resolve \"%s\": %s", host, gai_strerror(gai));
	rc = WB_E_IO;
	for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (c->fd < 0) {
			rc = fail(c, WB_E_IO, "socket failed: %s", strerror(errno));
			continue;
		}
		rc = connect_one(c, ai);
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
		return fail(c, rc, "cannot connect to %s: %s", address, why);
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->broken = false;
	return 0;
}

static int hello(struct wb_client *c, const char *client_name)
{
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = WB_PROTOCOL_VERSION;
	h.client_name = (char *)(client_name != NULL ? client_name : "libwhizbang");
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_HELLO;
	req.hello = &h;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_HELLO, &r);
	if (rc != 0)
		return rc;
	const Whizbang__V1__HelloResult *hr = r->hello;
	c->info.protocol_version = hr->protocol_version;
	snprintf(c->info.server_version, sizeof(c->info.server_version), "%s", hr->server_version);
	c->info.max_frame = hr->max_frame;
	c->info.max_read_count = hr->max_read_count;
	c->info.max_append_events = hr->max_append_events;
	c->info.max_event_size = hr->max_event_size;
	c->info.auth_required = hr->auth_required;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_connect(struct wb_client **out, const char *address, const struct wb_options *opts,
               char *errmsg, size_t errlen)
{
	int rc;
	if (out == NULL) {
		rc = WB_E_INVAL;
		if (errmsg != NULL && errlen > 0)
			snprintf(errmsg, errlen, "wb_connect: out is NULL");
		return rc;
	}
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
	begin(c);
	c->rcap = WB_READ_CHUNK;
	c->rbuf = malloc(c->rcap);
	if (c->rbuf == NULL) {
		rc = fail(c, WB_E_NOMEM, "no memory for a read buffer");
		goto err_after_alloc;
	}
	rc = dial(c, address != NULL ? address : WB_DEFAULT_ADDRESS);
	if (rc != 0)
		goto err_after_alloc;
	rc = hello(c, opts != NULL ? opts->client_name : NULL);
	if (rc != 0)
		goto err_after_dial;
	c->errmsg[0] = '\0';
	*out = c;
	return 0;

err_after_dial:
	close(c->fd);
	c->fd = -1;
err_after_alloc:
	if (errmsg != NULL && errlen > 0)
		snprintf(errmsg, errlen, "%s", c->errmsg);
	free(c->rbuf);
	free(c->wbuf);
	free(c);
	return rc;
}

void wb_close(struct wb_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	while (c->qhead != NULL) {
		struct queued *q = c->qhead;
		c->qhead = q->next;
		whizbang__v1__response__free_unpacked(q->r, NULL);
		free(q);
	}
	free(c->subs);
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

const struct wb_server_info *wb_server_info(const struct wb_client *c)
{
	return &c->info;
}

const char *wb_errmsg(const struct wb_client *c)
{
	return c->errmsg;
}

int64_t wb_actual_version(const struct wb_client *c)
{
	return c->actual_version;
}

int wb_fd(const struct wb_client *c)
{
	return c->fd;
}

int wb_ping(struct wb_client *c)
{
	begin(c);
	Whizbang__V1__Ping p = WHIZBANG__V1__PING__INIT;
	p.nonce = (uint64_t)now_ms() ^ (c->next_id << 32);
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_PING;
	req.ping = &p;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_PONG, &r);
	if (rc != 0)
		return rc;
	if (r->pong->nonce != p.nonce)
		rc = fail(c, WB_INTERNAL, "the server's Pong carries nonce %llu, not %llu",
		          (unsigned long long)r->pong->nonce, (unsigned long long)p.nonce);
	whizbang__v1__response__free_unpacked(r, NULL);
	return rc;
}

static int check_name(struct wb_client *c, const char *what, const char *s)
{
	if (s == NULL || s[0] == '\0')
		return fail(c, WB_E_INVAL, "%s is empty", what);
	size_t n = strlen(s);
	if (n > WB_MAX_NAME)
		return fail(c, WB_E_INVAL, "%s is %zu bytes, more than %u", what, n, WB_MAX_NAME);
	return 0;
}

/* Builds the AppendEvents of wb_append() and queues it. The NewEvents live
 * only until the frame is packed. */
static int queue_append(struct wb_client *c, const char *stream, enum wb_expected expected,
                        uint64_t expected_version, const struct wb_new_event *events, size_t n,
                        uint64_t *id)
{
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (expected < WB_EXPECT_ANY || expected > WB_EXPECT_EXACT)
		return fail(c, WB_E_INVAL, "expected is not a value of enum wb_expected");
	if (events == NULL || n == 0)
		return fail(c, WB_E_INVAL, "an append needs at least one event");
	for (size_t i = 0; i < n; i++) {
		const struct wb_new_event *e = &events[i];
		rc = check_name(c, "the event type", e->type);
		if (rc != 0)
			return rc;
		if ((e->data == NULL && e->data_len != 0) ||
		    (e->metadata == NULL && e->metadata_len != 0))
			return fail(c, WB_E_INVAL, "event %zu has a length without bytes", i);
	}
	Whizbang__V1__NewEvent *evs = calloc(n, sizeof(*evs));
	if (evs == NULL)
		return fail(c, WB_E_NOMEM, "no memory for %zu events", n);
	Whizbang__V1__NewEvent **ptrs = calloc(n, sizeof(*ptrs));
	if (ptrs == NULL) {
		rc = fail(c, WB_E_NOMEM, "no memory for %zu events", n);
		goto err_after_evs;
	}
	for (size_t i = 0; i < n; i++) {
		const struct wb_new_event *e = &events[i];
		whizbang__v1__new_event__init(&evs[i]);
		/* protobuf-c only reads these while packing. */
		if (e->id != NULL) {
			evs[i].id.data = (uint8_t *)e->id;
			evs[i].id.len = 16;
		}
		evs[i].type = (char *)e->type;
		evs[i].data.data = (uint8_t *)e->data;
		evs[i].data.len = e->data_len;
		evs[i].metadata.data = (uint8_t *)e->metadata;
		evs[i].metadata.len = e->metadata_len;
		ptrs[i] = &evs[i];
	}
	Whizbang__V1__AppendEvents a = WHIZBANG__V1__APPEND_EVENTS__INIT;
	a.stream = (char *)stream;
	a.expected = (Whizbang__V1__ExpectedVersion)expected;
	a.expected_version = expected == WB_EXPECT_EXACT ? expected_version : 0;
	a.n_events = n;
	a.events = ptrs;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS;
	req.append_events = &a;
	rc = queue(c, &req, id);
	free(ptrs);
err_after_evs:
	free(evs);
	return rc;
}

int wb_append(struct wb_client *c, const char *stream, enum wb_expected expected,
              uint64_t expected_version, const struct wb_new_event *events, size_t n,
              struct wb_append_result *out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_append: out is NULL");
	int rc = ready_for_call(c);
	if (rc != 0)
		return rc;
	uint64_t id;
	rc = queue_append(c, stream, expected, expected_version, events, n, &id);
	if (rc != 0)
		return rc;
	Whizbang__V1__Response *r;
	rc = round_trip(c, id, WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS, &r);
	if (rc != 0)
		return rc;
	out->first_position = r->append_events->first_position;
	out->last_position = r->append_events->last_position;
	out->stream_version = r->append_events->stream_version;
	out->idempotent_replay = r->append_events->idempotent_replay;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

/* Fills page from the events of r, which the page then owns. */
static int make_page(struct wb_client *c, Whizbang__V1__Response *r,
                     Whizbang__V1__RecordedEvent **rec, size_t n, struct wb_page *page)
{
	struct wb_event *ev = NULL;
	if (n != 0) {
		ev = calloc(n, sizeof(*ev));
		if (ev == NULL)
			return fail(c, WB_E_NOMEM, "no memory for %zu events", n);
	}
	for (size_t i = 0; i < n; i++) {
		const Whizbang__V1__RecordedEvent *e = rec[i];
		if (e->id.len != 16) {
			free(ev);
			return fail(c, WB_INTERNAL,
			            "the server sent event %llu with an id of %zu bytes, not 16",
			            (unsigned long long)e->position, e->id.len);
		}
		memcpy(ev[i].id, e->id.data, 16);
		ev[i].stream = e->stream;
		ev[i].version = e->version;
		ev[i].position = e->position;
		ev[i].timestamp_us = e->timestamp_us;
		ev[i].type = e->type;
		ev[i].data = e->data.len != 0 ? e->data.data : empty_bytes;
		ev[i].data_len = e->data.len;
		ev[i].metadata = e->metadata.len != 0 ? e->metadata.data : empty_bytes;
		ev[i].metadata_len = e->metadata.len;
	}
	page->events = ev;
	page->count = n;
	page->priv_ = r;
	return 0;
}

int wb_read_stream(struct wb_client *c, const char *stream, uint64_t from_version, bool backwards,
                   uint32_t max_count, struct wb_page *out)
{
	begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_read_stream: out is NULL");
	Whizbang__V1__ReadStream rs = WHIZBANG__V1__READ_STREAM__INIT;
	rs.stream = (char *)stream;
	rs.from_version = from_version;
	rs.direction =
	        backwards ? WHIZBANG__V1__DIRECTION__BACKWARD : WHIZBANG__V1__DIRECTION__FORWARD;
	rs.max_count = max_count;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_READ_STREAM;
	req.read_stream = &rs;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_READ_STREAM, &r);
	if (rc != 0)
		return rc;
	struct wb_page page = {0};
	const Whizbang__V1__ReadStreamResult *res = r->read_stream;
	page.next = res->next_version;
	page.end = res->end_of_stream;
	page.last = res->last_version;
	rc = make_page(c, r, res->events, res->n_events, &page);
	if (rc != 0) {
		whizbang__v1__response__free_unpacked(r, NULL);
		return rc;
	}
	*out = page;
	return 0;
}

int wb_read_all(struct wb_client *c, uint64_t from_position, bool backwards, uint32_t max_count,
                const char *stream_prefix, const char *const *types, size_t ntypes,
                struct wb_page *out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_read_all: out is NULL");
	if (ntypes != 0 && types == NULL)
		return fail(c, WB_E_INVAL, "wb_read_all: types is NULL");
	for (size_t i = 0; i < ntypes; i++) {
		int rc = check_name(c, "an event type filter", types[i]);
		if (rc != 0)
			return rc;
	}
	if (stream_prefix != NULL && strlen(stream_prefix) > WB_MAX_NAME)
		return fail(c, WB_E_INVAL, "the stream prefix is longer than %u bytes",
		            WB_MAX_NAME);
	Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
	ra.from_position = from_position;
	ra.direction =
	        backwards ? WHIZBANG__V1__DIRECTION__BACKWARD : WHIZBANG__V1__DIRECTION__FORWARD;
	ra.max_count = max_count;
	if (stream_prefix != NULL)
		ra.stream_prefix = (char *)stream_prefix;
	ra.n_event_types = ntypes;
	ra.event_types = (char **)types;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_READ_ALL;
	req.read_all = &ra;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_READ_ALL, &r);
	if (rc != 0)
		return rc;
	struct wb_page page = {0};
	const Whizbang__V1__ReadAllResult *res = r->read_all;
	page.next = res->next_position;
	page.end = res->end_of_log;
	page.last = res->last_position;
	rc = make_page(c, r, res->events, res->n_events, &page);
	if (rc != 0) {
		whizbang__v1__response__free_unpacked(r, NULL);
		return rc;
	}
	*out = page;
	return 0;
}

void wb_page_free(struct wb_page *page)
{
	if (page == NULL)
		return;
	free(page->events);
	if (page->priv_ != NULL)
		whizbang__v1__response__free_unpacked(page->priv_, NULL);
	memset(page, 0, sizeof(*page));
}

int wb_stream_info(struct wb_client *c, const char *stream, struct wb_stream_info *out)
{
	begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_stream_info: out is NULL");
	Whizbang__V1__GetStreamInfo g = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	g.stream = (char *)stream;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_GET_STREAM_INFO;
	req.get_stream_info = &g;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_STREAM_INFO, &r);
	if (rc != 0)
		return rc;
	const Whizbang__V1__StreamInfo *si = r->stream_info;
	out->last_version = si->last_version;
	out->event_count = si->event_count;
	out->first_position = si->first_position;
	out->last_position = si->last_position;
	out->created_us = si->created_us;
	out->updated_us = si->updated_us;
	out->deleted = si->deleted;
	out->tombstoned = si->tombstoned;
	memset(&out->metadata, 0, sizeof(out->metadata));
	if (si->metadata != NULL) {
		out->metadata.max_count = si->metadata->max_count;
		out->metadata.max_age_ms = si->metadata->max_age_ms;
		out->metadata.truncate_before = si->metadata->truncate_before;
	}
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_stats(struct wb_client *c, Whizbang__V1__ServerStats **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_stats: out is NULL");
	Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_GET_STATS;
	req.get_stats = &g;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_STATS, &r);
	if (rc != 0)
		return rc;
	/* Detach the stats from the response so that they can be freed alone. */
	*out = r->stats;
	r->stats = NULL;
	r->body_case = WHIZBANG__V1__RESPONSE__BODY__NOT_SET;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

void wb_stats_free(Whizbang__V1__ServerStats *stats)
{
	if (stats != NULL)
		whizbang__v1__server_stats__free_unpacked(stats, NULL);
}

int wb_send(struct wb_client *c, Whizbang__V1__Request *req, uint64_t *id)
{
	begin(c);
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	if (req == NULL)
		return fail(c, WB_E_INVAL, "wb_send: req is NULL");
	uint64_t sent = 0;
	rc = queue(c, req, &sent);
	if (rc != 0)
		return rc;
	c->outstanding++;
	if (id != NULL)
		*id = sent;
	return 0;
}

int wb_flush(struct wb_client *c)
{
	begin(c);
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	return flush_out(c);
}

int wb_recv(struct wb_client *c, Whizbang__V1__Response **out)
{
	begin(c);
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_recv: out is NULL");
	rc = flush_out(c);
	if (rc != 0)
		return rc;
	Whizbang__V1__Response *r = dequeue(c, false);
	while (r == NULL) {
		rc = recv_response(c, &r);
		if (rc != 0)
			return rc;
		if (is_push(c, r)) {
			rc = enqueue(c, r, c->last_frame_len);
			if (rc != 0)
				return rc;
			r = NULL;
		}
	}
	if (c->outstanding != 0)
		c->outstanding--;
	*out = r;
	return 0;
}

int wb_append_send(struct wb_client *c, const char *stream, enum wb_expected expected,
                   uint64_t expected_version, const struct wb_new_event *events, size_t n,
                   uint64_t *id)
{
	begin(c);
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	uint64_t sent;
	rc = queue_append(c, stream, expected, expected_version, events, n, &sent);
	if (rc != 0)
		return rc;
	c->outstanding++;
	if (id != NULL)
		*id = sent;
	return 0;
}

/* ---------------------------------------------------------------- leases and the ledger */

/* Builds the Lease of wb_lease() and queues it; *count receives the number
 * of sequences asked for. */
static int queue_lease(struct wb_client *c, const struct wb_lease_args *args, uint32_t *count,
                       uint64_t *id)
{
	if (args == NULL)
		return fail(c, WB_E_INVAL, "the lease arguments are NULL");
	int rc = check_name(c, "the projection name", args->projection);
	if (rc != 0)
		return rc;
	if (args->operation_id != NULL && strlen(args->operation_id) > WB_LEASE_NAME_MAX)
		return fail(c, WB_E_INVAL, "the operation id is %zu bytes, more than %u",
		            strlen(args->operation_id), WB_LEASE_NAME_MAX);
	Whizbang__V1__Lease l = WHIZBANG__V1__LEASE__INIT;
	l.projection = (char *)args->projection;
	l.duration_ms = args->duration_ms;
	l.count = args->count != 0 ? args->count : 1;
	if (args->operation_id != NULL)
		l.operation_id = (char *)args->operation_id;
	l.source_position = args->source_position;
	l.on_disconnect = args->release_on_disconnect
	                          ? WHIZBANG__V1__ON_DISCONNECT__ON_DISCONNECT_RELEASE
	                          : WHIZBANG__V1__ON_DISCONNECT__ON_DISCONNECT_KEEP;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_LEASE;
	req.lease = &l;
	*count = l.count;
	return queue(c, &req, id);
}

int wb_lease(struct wb_client *c, const struct wb_lease_args *args, struct wb_lease_grant *out,
             size_t max_out, size_t *n)
{
	begin(c);
	if (out == NULL || n == NULL)
		return fail(c, WB_E_INVAL, "wb_lease: out or n is NULL");
	uint32_t want = args != NULL && args->count != 0 ? args->count : 1;
	if (want > max_out)
		return fail(c, WB_E_INVAL, "%u sequences asked for, room for %zu grants", want,
		            max_out);
	int rc = ready_for_call(c);
	if (rc != 0)
		return rc;
	uint64_t id;
	rc = queue_lease(c, args, &want, &id);
	if (rc != 0)
		return rc;
	Whizbang__V1__Response *r;
	rc = round_trip(c, id, WHIZBANG__V1__RESPONSE__BODY_LEASE, &r);
	if (rc != 0)
		return rc;
	const Whizbang__V1__LeaseResult *lr = r->lease;
	if (lr->n_leases != want) {
		rc = fail(c, WB_INTERNAL, "the server granted %zu sequences, not the %u asked for",
		          lr->n_leases, want);
		goto out;
	}
	for (size_t i = 0; i < lr->n_leases; i++) {
		const Whizbang__V1__LeaseGrant *g = lr->leases[i];
		out[i] = (struct wb_lease_grant){
		        .sequence = g->sequence,
		        .token = g->token,
		        .expires_at_ms = g->expires_at_ms,
		        .duration_ms = g->duration_ms,
		};
	}
	*n = lr->n_leases;
out:
	whizbang__v1__response__free_unpacked(r, NULL);
	return rc;
}

int wb_lease_send(struct wb_client *c, const struct wb_lease_args *args, uint64_t *id)
{
	begin(c);
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	uint32_t count;
	uint64_t sent;
	rc = queue_lease(c, args, &count, &sent);
	if (rc != 0)
		return rc;
	c->outstanding++;
	if (id != NULL)
		*id = sent;
	return 0;
}

int wb_extend(struct wb_client *c, uint64_t seq, uint64_t token, uint64_t duration_ms,
              uint64_t *expires_at_ms)
{
	begin(c);
	Whizbang__V1__Extend e = WHIZBANG__V1__EXTEND__INIT;
	e.sequence = seq;
	e.token = token;
	e.duration_ms = duration_ms;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_EXTEND;
	req.extend = &e;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_EXTEND, &r);
	if (rc != 0)
		return rc;
	if (expires_at_ms != NULL)
		*expires_at_ms = r->extend->expires_at_ms;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_release(struct wb_client *c, uint64_t seq, uint64_t token, const char *reason)
{
	begin(c);
	Whizbang__V1__Release rl = WHIZBANG__V1__RELEASE__INIT;
	rl.sequence = seq;
	rl.token = token;
	if (reason != NULL)
		rl.reason = (char *)reason;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_RELEASE;
	req.release = &rl;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_RELEASE, &r);
	if (rc != 0)
		return rc;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_stage(struct wb_client *c, uint64_t seq, uint64_t token, const Whizbang__V1__OpList *ops)
{
	begin(c);
	Whizbang__V1__Stage st = WHIZBANG__V1__STAGE__INIT;
	st.sequence = seq;
	st.token = token;
	/* protobuf-c only reads the ops while packing. */
	if (ops != NULL) {
		st.n_ops = ops->n_ops;
		st.ops = ops->ops;
	}
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_STAGE;
	req.stage = &st;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_STAGE, &r);
	if (rc != 0)
		return rc;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

/* Builds the Commit of wb_commit() and queues it. */
static int queue_commit(struct wb_client *c, uint64_t seq, uint64_t token,
                        const Whizbang__V1__OpList *ops, bool applied, bool resequence,
                        uint64_t *id)
{
	Whizbang__V1__Commit cm = WHIZBANG__V1__COMMIT__INIT;
	cm.sequence = seq;
	cm.token = token;
	if (ops != NULL) {
		cm.n_ops = ops->n_ops;
		cm.ops = ops->ops;
	}
	cm.ack = applied ? WHIZBANG__V1__ACK__ACK_APPLIED : WHIZBANG__V1__ACK__ACK_DURABLE;
	cm.on_expired = resequence ? WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_RESEQUENCE
	                           : WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_FAIL;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_COMMIT;
	req.commit = &cm;
	return queue(c, &req, id);
}

/* The blocking Commit of wb_commit() and wb_commit_full(). */
static int commit_call(struct wb_client *c, uint64_t seq, uint64_t token,
                       const Whizbang__V1__OpList *ops, bool applied, bool resequence,
                       Whizbang__V1__Response **out)
{
	int rc = ready_for_call(c);
	if (rc != 0)
		return rc;
	uint64_t id;
	rc = queue_commit(c, seq, token, ops, applied, resequence, &id);
	if (rc != 0)
		return rc;
	return round_trip(c, id, WHIZBANG__V1__RESPONSE__BODY_COMMIT, out);
}

int wb_commit(struct wb_client *c, uint64_t seq, uint64_t token, const Whizbang__V1__OpList *ops,
              bool applied, bool resequence, struct wb_commit_result *out)
{
	begin(c);
	Whizbang__V1__Response *r;
	int rc = commit_call(c, seq, token, ops, applied, resequence, &r);
	if (rc != 0)
		return rc;
	if (out != NULL) {
		const Whizbang__V1__CommitResult *cr = r->commit;
		out->sequence = cr->sequence;
		out->resequenced = cr->resequenced;
		out->original_sequence = cr->original_sequence;
		out->watermark = cr->watermark;
	}
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_commit_full(struct wb_client *c, uint64_t seq, uint64_t token,
                   const Whizbang__V1__OpList *ops, bool applied, bool resequence,
                   Whizbang__V1__CommitResult **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_commit_full: out is NULL");
	Whizbang__V1__Response *r;
	int rc = commit_call(c, seq, token, ops, applied, resequence, &r);
	if (rc != 0)
		return rc;
	*out = r->commit;
	r->commit = NULL;
	r->body_case = WHIZBANG__V1__RESPONSE__BODY__NOT_SET;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

void wb_commit_result_free(Whizbang__V1__CommitResult *res)
{
	if (res != NULL)
		whizbang__v1__commit_result__free_unpacked(res, NULL);
}

int wb_commit_send(struct wb_client *c, uint64_t seq, uint64_t token,
                   const Whizbang__V1__OpList *ops, bool applied, bool resequence, uint64_t *id)
{
	begin(c);
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	uint64_t sent;
	rc = queue_commit(c, seq, token, ops, applied, resequence, &sent);
	if (rc != 0)
		return rc;
	c->outstanding++;
	if (id != NULL)
		*id = sent;
	return 0;
}

int wb_read_ledger(struct wb_client *c, uint64_t from, uint32_t max_count,
                   Whizbang__V1__ReadLedgerResult **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_read_ledger: out is NULL");
	Whizbang__V1__ReadLedger rl = WHIZBANG__V1__READ_LEDGER__INIT;
	rl.from_sequence = from;
	rl.max_count = max_count;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_READ_LEDGER;
	req.read_ledger = &rl;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_READ_LEDGER, &r);
	if (rc != 0)
		return rc;
	/* Detached from the response so that it can be freed alone. */
	*out = r->read_ledger;
	r->read_ledger = NULL;
	r->body_case = WHIZBANG__V1__RESPONSE__BODY__NOT_SET;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

void wb_ledger_free(Whizbang__V1__ReadLedgerResult *res)
{
	if (res != NULL)
		whizbang__v1__read_ledger_result__free_unpacked(res, NULL);
}

int wb_watermark(struct wb_client *c, uint64_t *watermark, uint64_t *next_seq)
{
	begin(c);
	Whizbang__V1__GetWatermark g = WHIZBANG__V1__GET_WATERMARK__INIT;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_GET_WATERMARK;
	req.get_watermark = &g;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_WATERMARK, &r);
	if (rc != 0)
		return rc;
	if (watermark != NULL)
		*watermark = r->watermark->watermark;
	if (next_seq != NULL)
		*next_seq = r->watermark->next_sequence;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_wait_watermark(struct wb_client *c, uint64_t seq, uint64_t timeout_ms, uint64_t *watermark,
                      bool *reached)
{
	begin(c);
	/* The server answers when the wait ends; the client must not give up
	 * before it does. */
	if (c->deadline_ms >= 0) {
		uint64_t wait = timeout_ms < WB_WAIT_MAX_MS ? timeout_ms : WB_WAIT_MAX_MS;
		int64_t need = (int64_t)wait + WB_WAIT_SLACK_MS;
		if (need > c->call_timeout_ms) {
			c->call_timeout_ms = need;
			c->deadline_ms = now_ms() + need;
		}
	}
	Whizbang__V1__WaitForWatermark w = WHIZBANG__V1__WAIT_FOR_WATERMARK__INIT;
	w.sequence = seq;
	w.timeout_ms = timeout_ms;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_WAIT_FOR_WATERMARK;
	req.wait_for_watermark = &w;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_WATERMARK, &r);
	if (rc != 0)
		return rc;
	if (watermark != NULL)
		*watermark = r->watermark->watermark;
	if (reached != NULL)
		*reached = r->watermark->reached;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

/* ---------------------------------------------------------------- entities, queries, indexes */

/* Every body below is detached from its Response the same way, so that the
 * caller frees it alone with its own free_unpacked. */
#define DETACH(r, member)                                                                          \
	do {                                                                                       \
		(r)->member = NULL;                                                                \
		(r)->body_case = WHIZBANG__V1__RESPONSE__BODY__NOT_SET;                            \
		whizbang__v1__response__free_unpacked((r), NULL);                                  \
	} while (0)

/* An entity id or a cursor: at most WB_MAX_NAME bytes (the front coding of
 * stored id lists has one byte for a length); empty only when allowed. */
static int check_id(struct wb_client *c, const char *what, const char *s, bool may_be_empty)
{
	if (s == NULL || (s[0] == '\0' && !may_be_empty))
		return fail(c, WB_E_INVAL, "%s is empty", what);
	size_t n = strlen(s);
	if (n > WB_MAX_NAME)
		return fail(c, WB_E_INVAL, "%s is %zu bytes, more than %u", what, n, WB_MAX_NAME);
	return 0;
}

/* Fills w from a where tree and its text for a request; *wp receives w, or
 * NULL when there is no clause. A text without a tree is refused: the tree
 * is what the server evaluates. */
static int where_arg(struct wb_client *c, const Whizbang__V1__Expr *where, const char *text,
                     Whizbang__V1__Where *w, Whizbang__V1__Where **wp)
{
	*wp = NULL;
	if (where == NULL) {
		if (text != NULL && text[0] != '\0')
			return fail(c, WB_E_INVAL,
			            "a where text without its tree: parse it first "
			            "(optext_parse_where)");
		return 0;
	}
	whizbang__v1__where__init(w);
	/* protobuf-c only reads these while packing. */
	w->expr = (Whizbang__V1__Expr *)where;
	if (text != NULL)
		w->text = (char *)text;
	*wp = w;
	return 0;
}

int wb_get_entity(struct wb_client *c, const char *type, const char *id, Whizbang__V1__Entity **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_get_entity: out is NULL");
	int rc = check_name(c, "the entity type", type);
	if (rc == 0)
		rc = check_id(c, "the entity id", id, false);
	if (rc != 0)
		return rc;
	Whizbang__V1__GetEntity g = WHIZBANG__V1__GET_ENTITY__INIT;
	g.type = (char *)type;
	g.id = (char *)id;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_GET_ENTITY;
	req.get_entity = &g;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_GET_ENTITY, &r);
	if (rc != 0)
		return rc;
	Whizbang__V1__Entity *e = r->get_entity->entity;
	if (e == NULL) {
		whizbang__v1__response__free_unpacked(r, NULL);
		return fail(c, WB_INTERNAL, "the server's GetEntityResult holds no entity");
	}
	r->get_entity->entity = NULL;
	whizbang__v1__response__free_unpacked(r, NULL);
	*out = e;
	return 0;
}

void wb_entity_free(Whizbang__V1__Entity *e)
{
	if (e != NULL)
		whizbang__v1__entity__free_unpacked(e, NULL);
}

int wb_query(struct wb_client *c, const char *type, const Whizbang__V1__Expr *where,
             const char *where_text, const char *after, uint32_t limit,
             Whizbang__V1__QueryResult **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_query: out is NULL");
	int rc = check_name(c, "the entity type", type);
	if (rc == 0 && after != NULL)
		rc = check_id(c, "the cursor (after)", after, true);
	Whizbang__V1__Where w;
	Whizbang__V1__QueryEntities q = WHIZBANG__V1__QUERY_ENTITIES__INIT;
	if (rc == 0)
		rc = where_arg(c, where, where_text, &w, &q.where);
	if (rc != 0)
		return rc;
	q.type = (char *)type;
	q.limit = limit;
	if (after != NULL)
		q.after = (char *)after;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES;
	req.query_entities = &q;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_QUERY, &r);
	if (rc != 0)
		return rc;
	*out = r->query;
	DETACH(r, query);
	return 0;
}

void wb_query_free(Whizbang__V1__QueryResult *res)
{
	if (res != NULL)
		whizbang__v1__query_result__free_unpacked(res, NULL);
}

/* CreateIndex and DropIndex: the same request shape and the same answer. */
static int index_call(struct wb_client *c, bool create, const char *type, const char *field,
                      Whizbang__V1__IndexResult **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "%s: out is NULL",
		            create ? "wb_create_index" : "wb_drop_index");
	int rc = check_name(c, "the entity type", type);
	if (rc == 0)
		rc = check_name(c, "the field name", field);
	if (rc != 0)
		return rc;
	Whizbang__V1__CreateIndex ci = WHIZBANG__V1__CREATE_INDEX__INIT;
	Whizbang__V1__DropIndex di = WHIZBANG__V1__DROP_INDEX__INIT;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	if (create) {
		ci.type = (char *)type;
		ci.field = (char *)field;
		req.body_case = WHIZBANG__V1__REQUEST__BODY_CREATE_INDEX;
		req.create_index = &ci;
	} else {
		di.type = (char *)type;
		di.field = (char *)field;
		req.body_case = WHIZBANG__V1__REQUEST__BODY_DROP_INDEX;
		req.drop_index = &di;
	}
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_INDEX, &r);
	if (rc != 0)
		return rc;
	*out = r->index;
	DETACH(r, index);
	return 0;
}

int wb_create_index(struct wb_client *c, const char *type, const char *field,
                    Whizbang__V1__IndexResult **out)
{
	return index_call(c, true, type, field, out);
}

int wb_drop_index(struct wb_client *c, const char *type, const char *field,
                  Whizbang__V1__IndexResult **out)
{
	return index_call(c, false, type, field, out);
}

void wb_index_result_free(Whizbang__V1__IndexResult *res)
{
	if (res != NULL)
		whizbang__v1__index_result__free_unpacked(res, NULL);
}

int wb_list_indexes(struct wb_client *c, const char *type, Whizbang__V1__IndexList **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_list_indexes: out is NULL");
	if (type != NULL && strlen(type) > WB_MAX_NAME)
		return fail(c, WB_E_INVAL, "the entity type is %zu bytes, more than %u",
		            strlen(type), WB_MAX_NAME);
	Whizbang__V1__ListIndexes li = WHIZBANG__V1__LIST_INDEXES__INIT;
	if (type != NULL)
		li.type = (char *)type;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_LIST_INDEXES;
	req.list_indexes = &li;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_INDEXES, &r);
	if (rc != 0)
		return rc;
	*out = r->indexes;
	DETACH(r, indexes);
	return 0;
}

void wb_index_list_free(Whizbang__V1__IndexList *list)
{
	if (list != NULL)
		whizbang__v1__index_list__free_unpacked(list, NULL);
}

int wb_explain(struct wb_client *c, const char *type, const Whizbang__V1__Expr *where,
               const char *where_text, Whizbang__V1__PlanResult **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_explain: out is NULL");
	int rc = check_name(c, "the entity type", type);
	Whizbang__V1__Where w;
	Whizbang__V1__Explain ex = WHIZBANG__V1__EXPLAIN__INIT;
	if (rc == 0)
		rc = where_arg(c, where, where_text, &w, &ex.where);
	if (rc != 0)
		return rc;
	ex.type = (char *)type;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_EXPLAIN;
	req.explain = &ex;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_PLAN, &r);
	if (rc != 0)
		return rc;
	*out = r->plan;
	DETACH(r, plan);
	return 0;
}

void wb_plan_free(Whizbang__V1__PlanResult *plan)
{
	if (plan != NULL)
		whizbang__v1__plan_result__free_unpacked(plan, NULL);
}

int wb_verify(struct wb_client *c, Whizbang__V1__VerifyResult **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_verify: out is NULL");
	Whizbang__V1__Verify v = WHIZBANG__V1__VERIFY__INIT;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_VERIFY;
	req.verify = &v;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_VERIFY, &r);
	if (rc != 0)
		return rc;
	*out = r->verify;
	DETACH(r, verify);
	return 0;
}

void wb_verify_free(Whizbang__V1__VerifyResult *res)
{
	if (res != NULL)
		whizbang__v1__verify_result__free_unpacked(res, NULL);
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

int wb_uuid_parse(const char *text, uint8_t out[16])
{
	if (text == NULL || out == NULL || strlen(text) != 36)
		return WB_E_INVAL;
	uint8_t id[16];
	size_t j = 0;
	for (size_t i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (text[i] != '-')
				return WB_E_INVAL;
			i++;
			continue;
		}
		int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
		if (hi < 0 || lo < 0)
			return WB_E_INVAL;
		id[j++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	memcpy(out, id, 16);
	return 0;
}

void wb_uuid_format(const uint8_t id[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	size_t j = 0;
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[id[i] >> 4];
		out[j++] = hex[id[i] & 15];
	}
	out[j] = '\0';
}

/* ---------------------------------------------------------------- subscriptions */

static int check_filters(struct wb_client *c, const char *prefix, const char *const *types,
                         size_t ntypes)
{
	if (ntypes != 0 && types == NULL)
		return fail(c, WB_E_INVAL, "types is NULL with %zu types", ntypes);
	for (size_t i = 0; i < ntypes; i++) {
		int rc = check_name(c, "an event type filter", types[i]);
		if (rc != 0)
			return rc;
	}
	if (prefix != NULL && strlen(prefix) > WB_MAX_NAME)
		return fail(c, WB_E_INVAL, "the stream prefix is longer than %u bytes",
		            WB_MAX_NAME);
	return 0;
}

static int check_target(struct wb_client *c, enum wb_target target, const char *stream,
                        enum wb_from from, bool ledger_ok)
{
	if (target != WB_TARGET_ALL && target != WB_TARGET_STREAM &&
	    !(ledger_ok && target == WB_TARGET_LEDGER))
		return fail(c, WB_E_INVAL, "target is not a value of enum wb_target%s",
		            ledger_ok ? "" : " that a consumer group takes (all or stream)");
	if (from != WB_FROM_START && from != WB_FROM_END && from != WB_FROM_POSITION)
		return fail(c, WB_E_INVAL, "from is not a value of enum wb_from");
	if (target == WB_TARGET_STREAM)
		return check_name(c, "the stream name", stream);
	return 0;
}

/* Remembers that the pushes tagged request_id are subscription's. */
static int remember_sub(struct wb_client *c, uint64_t request_id, uint64_t subscription)
{
	if (c->nsubs == c->subs_cap) {
		size_t cap = c->subs_cap != 0 ? c->subs_cap * 2 : 4;
		struct sub_entry *p = realloc(c->subs, cap * sizeof(*p));
		if (p == NULL)
			return fail(c, WB_E_NOMEM, "no memory to keep a subscription");
		c->subs = p;
		c->subs_cap = cap;
	}
	c->subs[c->nsubs].request_id = request_id;
	c->subs[c->nsubs].subscription = subscription;
	c->nsubs++;
	return 0;
}

/* Sends a request that starts a subscription (Subscribe or JoinConsumer)
 * and registers it once the SubscribeResult is there. */
static int start_sub(struct wb_client *c, Whizbang__V1__Request *req, uint64_t *subscription,
                     uint64_t *start)
{
	int rc = ready_for_call(c);
	if (rc != 0)
		return rc;
	/* Room first, so that a failure cannot come after the server started
	 * pushing. */
	if (c->nsubs == c->subs_cap) {
		rc = remember_sub(c, 0, 0);
		if (rc != 0)
			return rc;
		c->nsubs--;
	}
	uint64_t id;
	rc = queue(c, req, &id);
	if (rc != 0)
		return rc;
	Whizbang__V1__Response *r;
	rc = round_trip(c, id, WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE, &r);
	if (rc != 0) {
		/* Items may have come before the refusal; nobody will ask for them. */
		drop_pushes(c, id);
		return rc;
	}
	uint64_t sub = r->subscribe->subscription;
	if (start != NULL)
		*start = r->subscribe->start;
	whizbang__v1__response__free_unpacked(r, NULL);
	rc = remember_sub(c, id, sub);
	if (rc != 0)
		return rc;
	*subscription = sub;
	return 0;
}

int wb_subscribe_start(struct wb_client *c, const struct wb_subscribe_args *args,
                       uint64_t *subscription, uint64_t *start)
{
	begin(c);
	if (args == NULL || subscription == NULL)
		return fail(c, WB_E_INVAL, "wb_subscribe: args or subscription is NULL");
	int rc = check_target(c, args->target, args->stream, args->from, true);
	if (rc == 0)
		rc = check_filters(c, args->stream_prefix, args->types, args->ntypes);
	if (rc != 0)
		return rc;
	Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = (Whizbang__V1__SubscriptionTarget)args->target;
	if (args->target == WB_TARGET_STREAM)
		s.stream = (char *)args->stream;
	s.from = (Whizbang__V1__StartFrom)args->from;
	s.position = args->from == WB_FROM_POSITION ? args->position : 0;
	if (args->stream_prefix != NULL)
		s.stream_prefix = (char *)args->stream_prefix;
	s.n_event_types = args->ntypes;
	s.event_types = (char **)args->types;
	s.credits = args->credits;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_SUBSCRIBE;
	req.subscribe = &s;
	return start_sub(c, &req, subscription, start);
}

int wb_subscribe(struct wb_client *c, const struct wb_subscribe_args *args, uint64_t *subscription)
{
	return wb_subscribe_start(c, args, subscription, NULL);
}

int wb_next_item(struct wb_client *c, int timeout_ms, Whizbang__V1__SubscriptionItem **item)
{
	begin(c);
	int rc = check_usable(c);
	if (rc != 0)
		return rc;
	if (item == NULL)
		return fail(c, WB_E_INVAL, "wb_next_item: item is NULL");
	if (c->wlen != 0) {
		rc = flush_out(c);
		if (rc != 0)
			return rc;
	}
	Whizbang__V1__Response *r = dequeue(c, true);
	if (r == NULL) {
		c->deadline_ms = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
		c->call_timeout_ms = timeout_ms;
		c->soft_timeout = true;
		while (r == NULL) {
			rc = recv_response(c, &r);
			if (rc != 0)
				break;
			if (!is_push(c, r)) {
				rc = enqueue(c, r, c->last_frame_len);
				r = NULL;
				if (rc != 0)
					break;
			}
		}
		c->soft_timeout = false;
		if (rc == WB_E_TIMEOUT)
			snprintf(c->errmsg, sizeof(c->errmsg),
			         "no subscription item arrived within %d ms", timeout_ms);
		if (rc != 0)
			return rc;
	}
	if (r->error != NULL && r->error->code != WHIZBANG__V1__ERROR_CODE__OK) {
		struct sub_entry *e = find_sub_by_request(c, r->id);
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
	*item = r->subscription_item;
	DETACH(r, subscription_item);
	return 0;
}

void wb_item_free(Whizbang__V1__SubscriptionItem *item)
{
	if (item != NULL)
		whizbang__v1__subscription_item__free_unpacked(item, NULL);
}

size_t wb_queued(const struct wb_client *c)
{
	return c->qcount;
}

int wb_credit_n(struct wb_client *c, uint64_t subscription, uint32_t n, uint64_t *credits)
{
	begin(c);
	Whizbang__V1__Credit cr = WHIZBANG__V1__CREDIT__INIT;
	cr.subscription = subscription;
	cr.n = n;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_CREDIT;
	req.credit = &cr;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_CREDIT, &r);
	if (rc != 0)
		return rc;
	if (credits != NULL)
		*credits = r->credit->credits;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_credit(struct wb_client *c, uint64_t subscription, uint32_t n)
{
	return wb_credit_n(c, subscription, n, NULL);
}

int wb_unsubscribe(struct wb_client *c, uint64_t subscription)
{
	begin(c);
	Whizbang__V1__Unsubscribe u = WHIZBANG__V1__UNSUBSCRIBE__INIT;
	u.subscription = subscription;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_UNSUBSCRIBE;
	req.unsubscribe = &u;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_UNSUBSCRIBE, &r);
	if (rc != 0)
		return rc;
	whizbang__v1__response__free_unpacked(r, NULL);
	struct sub_entry *e = find_sub(c, subscription);
	if (e != NULL) {
		drop_pushes(c, e->request_id);
		forget_sub(c, e);
	}
	return 0;
}

/* ---------------------------------------------------------------- durable consumers */

int wb_create_consumer(struct wb_client *c, const struct wb_consumer_args *args,
                       Whizbang__V1__ConsumerInfo **out)
{
	begin(c);
	if (args == NULL)
		return fail(c, WB_E_INVAL, "wb_create_consumer: args is NULL");
	int rc = check_name(c, "the consumer name", args->name);
	if (rc == 0)
		rc = check_target(c, args->target, args->stream, args->from, false);
	if (rc == 0)
		rc = check_filters(c, args->stream_prefix, args->types, args->ntypes);
	if (rc != 0)
		return rc;
	Whizbang__V1__ConsumerConfig cfg = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	cfg.name = (char *)args->name;
	cfg.target = (Whizbang__V1__SubscriptionTarget)args->target;
	if (args->target == WB_TARGET_STREAM)
		cfg.stream = (char *)args->stream;
	if (args->stream_prefix != NULL)
		cfg.stream_prefix = (char *)args->stream_prefix;
	cfg.n_event_types = args->ntypes;
	cfg.event_types = (char **)args->types;
	cfg.from = (Whizbang__V1__StartFrom)args->from;
	cfg.position = args->from == WB_FROM_POSITION ? args->position : 0;
	cfg.ack_timeout_ms = args->ack_timeout_ms;
	cfg.max_deliveries = args->max_deliveries;
	Whizbang__V1__CreateConsumer cc = WHIZBANG__V1__CREATE_CONSUMER__INIT;
	cc.config = &cfg;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER;
	req.create_consumer = &cc;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_CONSUMER, &r);
	if (rc != 0)
		return rc;
	if (out == NULL) {
		whizbang__v1__response__free_unpacked(r, NULL);
		return 0;
	}
	*out = r->consumer;
	DETACH(r, consumer);
	return 0;
}

void wb_consumer_info_free(Whizbang__V1__ConsumerInfo *info)
{
	if (info != NULL)
		whizbang__v1__consumer_info__free_unpacked(info, NULL);
}

int wb_delete_consumer(struct wb_client *c, const char *name)
{
	begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__DeleteConsumer d = WHIZBANG__V1__DELETE_CONSUMER__INIT;
	d.name = (char *)name;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_DELETE_CONSUMER;
	req.delete_consumer = &d;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_DELETE_CONSUMER, &r);
	if (rc != 0)
		return rc;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_list_consumers(struct wb_client *c, Whizbang__V1__ConsumerList **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_list_consumers: out is NULL");
	Whizbang__V1__ListConsumers l = WHIZBANG__V1__LIST_CONSUMERS__INIT;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_LIST_CONSUMERS;
	req.list_consumers = &l;
	Whizbang__V1__Response *r;
	int rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_CONSUMERS, &r);
	if (rc != 0)
		return rc;
	*out = r->consumers;
	DETACH(r, consumers);
	return 0;
}

void wb_consumer_list_free(Whizbang__V1__ConsumerList *list)
{
	if (list != NULL)
		whizbang__v1__consumer_list__free_unpacked(list, NULL);
}

int wb_join_consumer(struct wb_client *c, const char *name, uint32_t credits,
                     uint64_t *subscription)
{
	begin(c);
	if (subscription == NULL)
		return fail(c, WB_E_INVAL, "wb_join_consumer: subscription is NULL");
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__JoinConsumer j = WHIZBANG__V1__JOIN_CONSUMER__INIT;
	j.name = (char *)name;
	j.credits = credits;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_JOIN_CONSUMER;
	req.join_consumer = &j;
	return start_sub(c, &req, subscription, NULL);
}

/* Points bins[0..n) at ids for a request; protobuf-c only reads them while
 * packing. *out is freed by the caller. */
static int id_list(struct wb_client *c, const uint8_t (*ids)[16], size_t n,
                   ProtobufCBinaryData **out)
{
	if (n == 0 || ids == NULL)
		return fail(c, WB_E_INVAL, "no event ids given");
	ProtobufCBinaryData *bins = calloc(n, sizeof(*bins));
	if (bins == NULL)
		return fail(c, WB_E_NOMEM, "no memory for %zu ids", n);
	for (size_t i = 0; i < n; i++) {
		bins[i].data = (uint8_t *)ids[i];
		bins[i].len = 16;
	}
	*out = bins;
	return 0;
}

int wb_ack(struct wb_client *c, const char *name, const uint8_t (*ids)[16], size_t n,
           uint64_t *checkpoint)
{
	begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	ProtobufCBinaryData *bins = NULL;
	rc = id_list(c, ids, n, &bins);
	if (rc != 0)
		return rc;
	Whizbang__V1__AckEvents a = WHIZBANG__V1__ACK_EVENTS__INIT;
	a.name = (char *)name;
	a.n_ids = n;
	a.ids = bins;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_ACK;
	req.ack = &a;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_ACK, &r);
	free(bins);
	if (rc != 0)
		return rc;
	if (checkpoint != NULL)
		*checkpoint = r->ack->checkpoint;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_nack(struct wb_client *c, const char *name, const uint8_t (*ids)[16], size_t n,
            enum wb_nack_action action, const char *reason, uint64_t *checkpoint)
{
	begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	if (action != WB_NACK_RETRY && action != WB_NACK_PARK && action != WB_NACK_SKIP)
		return fail(c, WB_E_INVAL, "action is not a value of enum wb_nack_action");
	ProtobufCBinaryData *bins = NULL;
	rc = id_list(c, ids, n, &bins);
	if (rc != 0)
		return rc;
	Whizbang__V1__NackEvents a = WHIZBANG__V1__NACK_EVENTS__INIT;
	a.name = (char *)name;
	a.n_ids = n;
	a.ids = bins;
	a.action = (Whizbang__V1__NackAction)action;
	if (reason != NULL)
		a.reason = (char *)reason;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_NACK;
	req.nack = &a;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_NACK, &r);
	free(bins);
	if (rc != 0)
		return rc;
	if (checkpoint != NULL)
		*checkpoint = r->nack->checkpoint;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_list_parked(struct wb_client *c, const char *name, uint64_t from_position,
                   uint32_t max_count, Whizbang__V1__ParkedList **out)
{
	begin(c);
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_list_parked: out is NULL");
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__ListParked l = WHIZBANG__V1__LIST_PARKED__INIT;
	l.name = (char *)name;
	l.from_position = from_position;
	l.max_count = max_count;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_LIST_PARKED;
	req.list_parked = &l;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_PARKED, &r);
	if (rc != 0)
		return rc;
	*out = r->parked;
	DETACH(r, parked);
	return 0;
}

void wb_parked_free(Whizbang__V1__ParkedList *list)
{
	if (list != NULL)
		whizbang__v1__parked_list__free_unpacked(list, NULL);
}

int wb_replay_parked(struct wb_client *c, const char *name, uint64_t *replayed)
{
	begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__ReplayParked rp = WHIZBANG__V1__REPLAY_PARKED__INIT;
	rp.name = (char *)name;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_REPLAY_PARKED;
	req.replay_parked = &rp;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_REPLAY_PARKED, &r);
	if (rc != 0)
		return rc;
	if (replayed != NULL)
		*replayed = r->replay_parked->replayed;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

/* ---------------------------------------------------------------- stream life cycle */

int wb_set_stream_metadata(struct wb_client *c, const char *stream,
                           const struct wb_stream_metadata *md)
{
	begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (md == NULL)
		return fail(c, WB_E_INVAL, "wb_set_stream_metadata: md is NULL");
	Whizbang__V1__StreamMetadata m = WHIZBANG__V1__STREAM_METADATA__INIT;
	m.max_count = md->max_count;
	m.max_age_ms = md->max_age_ms;
	m.truncate_before = md->truncate_before;
	Whizbang__V1__SetStreamMetadata s = WHIZBANG__V1__SET_STREAM_METADATA__INIT;
	s.stream = (char *)stream;
	s.metadata = &m;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA;
	req.set_stream_metadata = &s;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_STREAM_METADATA, &r);
	if (rc != 0)
		return rc;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_get_stream_metadata(struct wb_client *c, const char *stream, struct wb_stream_metadata *out)
{
	begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return fail(c, WB_E_INVAL, "wb_get_stream_metadata: out is NULL");
	Whizbang__V1__GetStreamMetadata g = WHIZBANG__V1__GET_STREAM_METADATA__INIT;
	g.stream = (char *)stream;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_GET_STREAM_METADATA;
	req.get_stream_metadata = &g;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_STREAM_METADATA, &r);
	if (rc != 0)
		return rc;
	const Whizbang__V1__StreamMetadata *m = r->stream_metadata->metadata;
	struct wb_stream_metadata md = {0};
	if (m != NULL) {
		md.max_count = m->max_count;
		md.max_age_ms = m->max_age_ms;
		md.truncate_before = m->truncate_before;
	}
	*out = md;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

int wb_delete_stream(struct wb_client *c, const char *stream, bool hard, uint64_t *last_version)
{
	begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	Whizbang__V1__DeleteStream d = WHIZBANG__V1__DELETE_STREAM__INIT;
	d.stream = (char *)stream;
	d.hard = hard;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_DELETE_STREAM;
	req.delete_stream = &d;
	Whizbang__V1__Response *r;
	rc = call(c, &req, WHIZBANG__V1__RESPONSE__BODY_DELETE_STREAM, &r);
	if (rc != 0)
		return rc;
	if (last_version != NULL)
		*last_version = r->delete_stream->last_version;
	whizbang__v1__response__free_unpacked(r, NULL);
	return 0;
}

static void scavenge_figures(const Whizbang__V1__ScavengeResult *s, struct wb_scavenge_result *o)
{
	o->events_examined = s->events_examined;
	o->events_removed = s->events_removed;
	o->bytes_reclaimed = s->bytes_reclaimed;
	o->micros = s->micros;
	o->position = s->position;
	o->last_position = s->last_position;
}

int wb_scavenge(struct wb_client *c, wb_scavenge_cb cb, void *arg, struct wb_scavenge_result *out)
{
	begin(c);
	int rc = ready_for_call(c);
	if (rc != 0)
		return rc;
	Whizbang__V1__Scavenge sc = WHIZBANG__V1__SCAVENGE__INIT;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_SCAVENGE;
	req.scavenge = &sc;
	uint64_t id;
	rc = queue(c, &req, &id);
	if (rc != 0)
		return rc;
	for (;;) {
		Whizbang__V1__Response *r;
		rc = round_trip(c, id, WHIZBANG__V1__RESPONSE__BODY_SCAVENGE, &r);
		if (rc != 0)
			return rc;
		struct wb_scavenge_result figures;
		scavenge_figures(r->scavenge, &figures);
		bool done = r->scavenge->done;
		whizbang__v1__response__free_unpacked(r, NULL);
		if (done) {
			if (out != NULL)
				*out = figures;
			return 0;
		}
		if (cb != NULL)
			cb(arg, &figures);
		/* The timeout applies between two reports. */
		c->deadline_ms = c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
	}
}

static void backup_figures(const Whizbang__V1__BackupResult *b, struct wb_backup_result *o)
{
	o->bytes = b->bytes;
	o->micros = b->micros;
	o->watermark = b->watermark;
	o->last_position = b->last_position;
}

int wb_backup(struct wb_client *c, const char *path, wb_backup_cb cb, void *arg,
              struct wb_backup_result *out)
{
	begin(c);
	if (path == NULL || path[0] == '\0')
		return fail(c, WB_E_INVAL, "the backup path is empty");
	int rc = ready_for_call(c);
	if (rc != 0)
		return rc;
	Whizbang__V1__Backup b = WHIZBANG__V1__BACKUP__INIT;
	b.path = (char *)path;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_BACKUP;
	req.backup = &b;
	uint64_t id;
	rc = queue(c, &req, &id);
	if (rc != 0)
		return rc;
	for (;;) {
		Whizbang__V1__Response *r;
		rc = round_trip(c, id, WHIZBANG__V1__RESPONSE__BODY_BACKUP, &r);
		if (rc != 0)
			return rc;
		struct wb_backup_result figures;
		backup_figures(r->backup, &figures);
		bool done = r->backup->done;
		whizbang__v1__response__free_unpacked(r, NULL);
		if (done) {
			if (out != NULL)
				*out = figures;
			return 0;
		}
		if (cb != NULL)
			cb(arg, &figures);
		/* The timeout applies between two reports. */
		c->deadline_ms = c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
	}
}
