/* The connection under libwhizbang; private to client/.
 *
 * transport.c owns everything about the wire: the socket and the dial with
 * its deadline, TLS over the socket, the frames and the read and write buffers, the bounded FIFO
 * queue that keeps responses arriving while a call waits for another one
 * (subscription pushes, pipelined answers), and the registry of
 * subscriptions whose pushes go to that queue. wb.c keeps the API: it
 * checks arguments, fills request bodies and reads answer bodies, and never
 * builds a Request or takes a Response apart.
 *
 * The one call primitive is wbt_call(): it wraps a request body in a
 * Request, sends it, waits for the Response with the same id, turns an
 * error in it into a return code and a message, and hands the answer's body
 * over detached from its envelope, so that the caller owns and frees the
 * body alone. The request's oneof case follows from the body's type (every
 * Request body has a type of its own); the answer is named by its member of
 * Response's oneof, which WBT_CALL() checks against the type of *out at
 * compile time. In protobuf-c 1.4.1 every member of a oneof sits at one
 * offset, so one descriptor walk serves every body.
 *
 * Every function here that fails writes a sentence into c->errmsg and
 * returns a code of enum wb_error. A failure of the connection itself
 * (WB_E_IO, WB_E_CLOSED, a WB_E_TIMEOUT other than wb_next_item()'s, a
 * queue past its bound) leaves the client broken: every later call fails
 * with WB_E_CLOSED. */
#ifndef WB_TRANSPORT_H
#define WB_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wb.h"

struct wbt_queued;
struct wbt_sub;
struct wb_tls_session;

struct wb_client {
	int fd;
	/* TLS over the socket (tls/wb_tls.h), NULL for plaintext; and the
	 * ciphertext received but not yet fed to it, cbuf[cpos..clen)
	 * (WB_TLS_IN_BUF bytes). Everything above the socket sees plaintext. */
	struct wb_tls_session *tls;
	uint8_t *cbuf;
	size_t cpos;
	size_t clen;
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
	/* Who the server says the connection is; its strings and role array
	 * live in one allocation, who_buf. */
	struct wb_identity who;
	void *who_buf;
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
	struct wbt_queued *qhead;
	struct wbt_queued *qtail;
	size_t qcount;
	size_t qbytes;
	size_t max_queued;
	size_t max_queued_bytes;
	/* The size of the frame decoded last. */
	size_t last_frame_len;
	/* Subscriptions started here: the request id their pushes carry. */
	struct wbt_sub *subs;
	size_t nsubs;
	size_t subs_cap;
	/* While true, a timeout is an answer (wb_next_item()), not a failure:
	 * reads are buffered, so nothing is lost by stopping. */
	bool soft_timeout;
};

/* ---------------------------------------------------------------- life and failure */

/* Allocates a client with opts (NULL: defaults), has check(c, opts) refuse
 * what cannot work before anything is sent, builds the TLS context opts ask
 * for (refusing TLS options that cannot work), connects to address
 * ("host:port", "[v6]:port", without the port: 7411, or "unix:PATH" for a
 * Unix domain socket), does the TLS handshake, and has hello(c, opts) greet
 * the server, all within the client's timeout. On success *out receives the
 * client; on failure *out is untouched and the reason goes to
 * errmsg[0..errlen) (when errmsg is not NULL). */
int wbt_open(struct wb_client **out, const char *address, const struct wb_options *opts,
             int (*check)(struct wb_client *c, const struct wb_options *opts),
             int (*hello)(struct wb_client *c, const struct wb_options *opts), char *errmsg,
             size_t errlen);

/* True when c is TLS, with its version and cipher (wb_connection_tls()). */
bool wbt_tls_info(const struct wb_client *c, const char **version, const char **cipher);

/* wb_raw_write(), wb_raw_pending() and wb_raw_read() (wb.h): the bytes of
 * frames through the socket and the TLS session, without waiting. */
int wbt_raw_write(struct wb_client *c, const uint8_t *p, size_t n, size_t *taken);
bool wbt_raw_pending(const struct wb_client *c);
int wbt_raw_read(struct wb_client *c, uint8_t *buf, size_t cap, size_t *n);

/* Closes the socket and frees the client with its buffers, its queue and its
 * registry. NULL is allowed. */
void wbt_close(struct wb_client *c);

/* Starts a public call: clears the last message and arms the deadline from
 * the client's timeout. The deadline then covers every wait of the call. */
void wbt_begin(struct wb_client *c);

/* The monotonic clock in milliseconds. */
int64_t wbt_now_ms(void);

/* Arms the deadline ms milliseconds from now (ms <= 0: never); the timeout
 * message names ms. For calls that wait longer than the client's timeout,
 * or whose timeout runs between progress reports. */
void wbt_deadline(struct wb_client *c, int64_t ms);

/* Writes fmt into c->errmsg and returns code; a code that means the
 * connection failed also breaks the client. */
__attribute__((format(printf, 3, 4))) int wbt_fail(struct wb_client *c, int code, const char *fmt,
                                                   ...);

/* 0 while the connection works, else WB_E_CLOSED with a message. */
int wbt_usable(struct wb_client *c);

/* ---------------------------------------------------------------- requests and answers */

/* Gives req the next request id (written to req->id and *id) and appends its
 * frame to the write buffer; nothing is sent yet. A request above the
 * server's max_frame is refused with WB_FRAME_TOO_LARGE and the client stays
 * usable. Keeps no reference to req. */
int wbt_queue(struct wb_client *c, Whizbang__V1__Request *req, uint64_t *id);

/* wbt_queue() of a Request whose body is body: a request message
 * (AppendEvents, Lease, ...), which decides the oneof case. WB_E_INVAL for a
 * message that no Request carries. */
int wbt_request(struct wb_client *c, const ProtobufCMessage *body, uint64_t *id);

/* Writes the write buffer out, reading what the server sends meanwhile. */
int wbt_flush(struct wb_client *c);

/* Writes everything queued out and waits for the Response to request id,
 * queueing every other response that arrives first. Its error, if any, is
 * returned with the server's message; otherwise it must carry the member
 * answer of Response's body (WB_INTERNAL if not). On success the answer's
 * body is detached from the Response: *(T **)out receives it and the caller
 * frees it (WBT_FREE), or, with out NULL, it is freed here. */
int wbt_answer(struct wb_client *c, uint64_t id, const char *answer, void *out);

/* 0 when a blocking call may start: the connection works and no pipelined
 * answer is pending that could be mistaken for the call's. */
int wbt_ready(struct wb_client *c);

/* One blocking call: wbt_ready(), wbt_request() and wbt_answer(). */
int wbt_call(struct wb_client *c, const ProtobufCMessage *body, const char *answer, void *out);

/* The type-checked forms. body is a pointer to a request message; answer
 * is a member of Response's body oneof, written as a name (stream_info,
 * commit); out is a pointer to a pointer of that member's type, which
 * receives the detached answer. The compiler checks that answer is a member
 * and that *out can hold it. The _ACK form waits for the answer and frees
 * it; WBT_MEMBER() is the checked name for wbt_answer() itself. */
#define WBT_MEMBER(answer) ((void)sizeof(((Whizbang__V1__Response *)NULL)->answer), #answer)
#define WBT_CHECK_OUT(answer, out) (void)sizeof(*(out) = ((Whizbang__V1__Response *)NULL)->answer)
#define WBT_CALL(c, body, answer, out)                                                             \
	(WBT_CHECK_OUT(answer, out), wbt_call((c), &(body)->base, #answer, (out)))
#define WBT_CALL_ACK(c, body, answer) wbt_call((c), &(body)->base, WBT_MEMBER(answer), NULL)
#define WBT_ANSWER(c, id, answer, out)                                                             \
	(WBT_CHECK_OUT(answer, out), wbt_answer((c), (id), #answer, (out)))

/* Frees a detached answer (any message). */
#define WBT_FREE(msg) protobuf_c_message_free_unpacked(&(msg)->base, NULL)

/* Hands out the oldest response that is not a push, from the queue or else
 * from the socket (wb_recv()); the caller frees *out. */
int wbt_recv(struct wb_client *c, Whizbang__V1__Response **out);

/* Hands out the next push (wb_next_item()): the oldest queued, else the
 * next to arrive within timeout_ms (negative: forever). WB_E_TIMEOUT when
 * none came, which leaves the client usable. A subscription ended by the
 * server is forgotten and its error returned with its message. */
int wbt_next_item(struct wb_client *c, int timeout_ms, Whizbang__V1__SubscriptionItem **item);

/* ---------------------------------------------------------------- subscriptions */

/* Makes room to register one more subscription, so that registering it
 * after its answer cannot fail once the server has started to push. */
int wbt_sub_reserve(struct wb_client *c);

/* Registers that the pushes tagged request_id belong to subscription; call
 * wbt_sub_reserve() first. */
void wbt_sub_add(struct wb_client *c, uint64_t request_id, uint64_t subscription);

/* Forgets subscription and drops its queued pushes (after Unsubscribe). */
void wbt_sub_end(struct wb_client *c, uint64_t subscription);

/* Frees the queued pushes tagged request_id (a refused subscription). */
void wbt_drop_pushes(struct wb_client *c, uint64_t request_id);

#endif
