/* The connection layer of whizbangd: accepted TCP and Unix socket connections, their input
 * decoded into frames, their output written once per loop turn,
 * back-pressure, the frame timeout, the connection limit and the memory
 * budget over what every connection holds.
 *
 * It knows frames, not protobuf. Whole frames go up through
 * conn_hooks.frame; the transport's own refusals (a frame over the limit,
 * the connection limit) go up through conn_hooks.refuse, which answers them
 * in the protocol. Everything here runs on the loop thread.
 *
 * A connection is private to conn.c; the rest of the server holds pointers
 * to it and uses the functions below. A connection is freed only when its
 * handles have closed, its writes have completed and every conn_hold() has
 * been released, so a pointer held across a write or a worker job stays
 * valid (check conn_is_closing() before answering on it). */
#ifndef WB_CONN_H
#define WB_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct conn;
struct conns;

/* Per-connection slots for the server's modules (conn_slot()). */
#define CONN_SLOTS 12u

/* What crossed the wire, for the figures: kept by the set, counted by the
 * layers above (dispatch counts requests, reply.c errors). */
struct conn_counters {
	uint64_t requests_total;       /* frames received */
	uint64_t errors_total;         /* error answers sent */
	uint64_t requests_by_body[64]; /* by Request body case */
	uint64_t errors_by_code[32];   /* by wire error code */
};

struct conn_limits {
	uint64_t max_frame; /* payload bytes of one frame (--max-frame) */
	/* The largest frame of a connection that has not authenticated (no
	 * subject: before its Hello, or anonymous with --anonymous-role none),
	 * which may only say Hello and Ping (--max-unauthenticated-frame);
	 * max_frame bounds it too. */
	uint64_t max_unauth_frame;
	uint64_t max_output;       /* bytes queued and being written before a
	                            * connection is paused (--max-output-per-connection) */
	uint64_t max_inflight;     /* holds before it is paused (--max-inflight) */
	uint64_t frame_timeout_ms; /* a started frame must complete within it */
	uint64_t max_connections;  /* open at once (--max-connections) */
	/* TLS (conns_set_tls()): enum conn_tls, and the time a TLS client
	 * has to finish its handshake. */
	int tls_policy;
	uint64_t tls_handshake_timeout_ms;
	/* Between frames: a connection that sends nothing for this long is
	 * closed (RESOURCE_EXHAUSTED, id 0) unless it waits for the server or
	 * the busy hook says it holds something open; 0: never. */
	uint64_t idle_timeout_ms;
	/* TCP keepalive probes after this many idle seconds; 0: off. */
	uint64_t tcp_keepalive_s;
	/* Open connections from one address (IP, or a Unix peer's uid other
	 * than root's and the server's own) past which a new one is refused
	 * (RESOURCE_EXHAUSTED); 0: no limit. */
	uint64_t max_connections_per_address;
	/* Bytes a connection may send a second (a second's worth, at least one
	 * largest frame, at once); past it it is not read until they are paid
	 * for; 0: no limit. */
	uint64_t max_bytes_per_s;
	/* The memory budget: bytes held for clients over all connections
	 * (enum conn_mem: input buffers, output, queued reads, writes). From
	 * 7/8 of it until below 3/4 again, connections holding much (input
	 * above a sixteenth of it, or 64 KiB of the rest) are paused; at it,
	 * the heaviest is disconnected (conns_flush()). 0: no budget. */
	uint64_t memory_budget;
	/* Output below which pushes (subscriptions, consumers) may be queued
	 * on a connection (conn_can_push()). */
	uint64_t push_buffer;
};

/* What a connection may speak (--tls). A connection's first bytes say
 * which it does: a TLS handshake record (0x16) or a frame (0x00). */
enum conn_tls {
	CONN_TLS_OFF = 0,      /* plaintext only; a TLS client is closed */
	CONN_TLS_AUTO = 1,     /* TLS when served; plaintext from loopback and the
	                        * Unix socket, and from anywhere while no
	                        * certificate is set */
	CONN_TLS_REQUIRED = 2, /* TLS on every TCP connection */
};

struct conn_hooks {
	void *arg; /* passed to every hook */
	/* A whole frame arrived on c: payload[0..len) is valid during the
	 * call only. The hook may answer, hold c, or close it. */
	void (*frame)(void *arg, struct conn *c, const uint8_t *payload, uint32_t len);
	/* The layer refuses what c sent or c itself: code is WB_FRAME_TOO_LARGE
	 * or WB_RESOURCE_EXHAUSTED and msg says why, for the client. The hook
	 * queues the answer (request id 0); c closes once it is written. */
	void (*refuse)(void *arg, struct conn *c, int code, const char *msg);
	/* c is closing, once per connection, before its handles close: drop
	 * what is kept for it. Holds stay until released. */
	void (*closed)(void *arg, struct conn *c);
	/* The end of every callback of this layer that did anything (a read,
	 * a completed write, an accept): output has been queued, a connection
	 * may have closed, and drained is true when a connection's output went
	 * below its bound (pushes that waited for room may go on). The hook
	 * flushes (conns_flush()). */
	void (*after)(void *arg, bool drained);
	/* Whether idle c holds something that keeps it open (a subscription,
	 * a lease): the idle timeout then waits. NULL: nothing does. */
	bool (*busy)(void *arg, const struct conn *c);
	/* Whether c's next frame, of len bytes, may be taken now. When not,
	 * the hook has paused c (conn_pause()): the frame waits in c's buffer
	 * until the pause ends. NULL: every frame is taken. */
	bool (*admit)(void *arg, struct conn *c, uint32_t len);
};

/* What a connection is and has done, for ListClients. Times are the loop's
 * clock, in ms. */
struct conn_info {
	uint64_t id;
	const char *peer;        /* "HOST:PORT", "[V6]:PORT" or "unix:UID" */
	const char *client_name; /* from Hello; "" before */
	bool tls, unix_socket;
	uint64_t age_ms, idle_ms; /* since accepted; since the last frame */
	uint64_t out_idle_ms;     /* since the server last queued output for it */
	uint64_t frames, bytes_in, bytes_out;
	uint64_t input_buffer, output_buffer; /* bytes allocated / queued */
	uint64_t in_flight;                   /* requests held */
	uint64_t queued_reads, writes;        /* bytes (conn_mem_add()) */
	uint64_t memory;                      /* all it holds against the budget */
};

/* Calls fn for every open connection (not one that is closing), newest
 * first. fn must not close connections. */
void conns_foreach(struct conns *set, void (*fn)(void *arg, struct conn *c), void *arg);

/* The open connection whose id is id, or NULL. */
struct conn *conns_find(struct conns *set, uint64_t id);

void conn_info(const struct conn *c, struct conn_info *out);

/* Makes the set of connections of loop with copies of limits and hooks.
 * 0, or WB_E_NOMEM; *out is written only on success. */
int conns_init(struct conns **out, uv_loop_t *loop, const struct conn_limits *limits,
               const struct conn_hooks *hooks);

/* Frees the set. Every connection must be gone: call after uv_run() has
 * returned and every hold was released. */
void conns_free(struct conns *set);

/* Accepts the connection pending on listener (from its connection
 * callback): a TCP listener, or a Unix domain socket one (a uv_pipe_t). Never leaves it pending:
 * when no connection can be allocated, the peer is accepted into a spare handle and closed at once
 * (load is shed, the listener keeps being polled), and when even that handle is busy the accept is
 * retried as soon as it is free. Above max_connections the connection is refused through
 * hooks.refuse. */
void conns_accept(struct conns *set, uv_stream_t *listener);

/* Writes the queued output of every connection that has some: one write
 * per connection, however many frames it holds. */
void conns_flush(struct conns *set);

/* Stops reading from every connection, for good (shutdown). Frames
 * already buffered are still handed up as work ends (the server answers
 * them SHUTTING_DOWN). */
void conns_stop_reading(struct conns *set);

/* True while any connection has output queued or being written. */
bool conns_output_pending(const struct conns *set);

/* Closes every connection; drop_output drops what they have queued and
 * not yet handed to a write. */
void conns_close_all(struct conns *set, bool drop_output);

/* Connections open now, and accepted since the start. */
size_t conns_open(const struct conns *set);
uint64_t conns_accepted(const struct conns *set);

/* The set's counters (of c's set). */
struct conn_counters *conns_counters(struct conns *set);
struct conn_counters *conn_counters(const struct conn *c);

/* Queues a frame of n payload bytes on c and returns where the payload
 * goes; the caller writes all n bytes at once, before anything else is
 * queued on c. NULL when c is closing, or when the output cannot grow (c
 * is then closed, and that is logged). */
uint8_t *conn_frame(struct conn *c, size_t n);

/* Queues payload[0..n) as one frame on c (conn_frame() and a copy). */
void conn_send(struct conn *c, const uint8_t *payload, size_t n);

/* The back-pressure rule: true when c is open, its output queued and being
 * written is below max_output, and either the server is not near its
 * memory budget (below 7/8 of it, or below 3/4 once it was paused there)
 * or c holds less than 64 KiB of output, queued reads and writes. A
 * connection for which it is false is not read. Pushes that the client did
 * not ask for one by one (progress) go out only then; subscription and
 * consumer items use conn_can_push(). */
bool conn_can_take_more(const struct conn *c);

/* Whether a push (a subscription's or consumer's event) may be queued on c:
 * conn_can_take_more() and less than push_buffer queued, so that a client
 * that does not read holds push_buffer, not max_output. Queued counts what
 * the kernel held for the peer (unsent or unacknowledged) when
 * conn_push_check() last asked it, within the last 50 ms: a subscriber
 * that does not read is pushed push_buffer in all, not that and the
 * socket's buffers (several MiB on loopback). conn_push_check() asks the
 * kernel (one ioctl: again only 5 ms after a reading above 0, or after a
 * write since a reading of 0; what was written since a reading counts as
 * held), then answers as conn_can_push().
 * conn_push_waits_for_peer(): it is only what the kernel holds that keeps
 * c from taking a push, which no event of the server's will change: ask
 * again later. */
bool conn_can_push(const struct conn *c);
bool conn_push_check(struct conn *c);
bool conn_push_waits_for_peer(const struct conn *c);

/* Output queued and being written over all connections, in bytes. */
uint64_t conns_output_held(const struct conns *set);

/* What the memory budget counts, by kind: the connection layer's input
 * buffers (and frames other layers copied to decode), output queued and
 * being written, and what the server's modules hold for a connection
 * (conn_mem_add()): read-model requests queued or running, and writes
 * waiting to be durable. */
enum conn_mem {
	CONN_MEM_INPUT = 0,
	CONN_MEM_OUTPUT = 1,
	CONN_MEM_READS = 2,
	CONN_MEM_WRITES = 3,
	CONN_MEM_KINDS = 4,
};

/* Counts delta bytes (negative: given back) that the server holds for c
 * outside the connection layer, as kind: the budget covers them and
 * conn_info() shows them. The caller gives back what it added before it
 * releases its hold of c (a closing c is still counted until freed). */
void conn_mem_add(struct conn *c, enum conn_mem kind, int64_t delta);

/* The memory budget's figures (conns_memory()). held is every kind's sum;
 * it includes connections that are closing until they are freed. */
struct conns_memory {
	uint64_t budget;
	uint64_t held;
	uint64_t by_kind[CONN_MEM_KINDS];
	uint64_t shared;      /* conns_mem_held_add() */
	uint64_t pauses;      /* times a connection stopped being read near the budget */
	uint64_t disconnects; /* connections closed for the budget */
};
void conns_memory(const struct conns *set, struct conns_memory *out);

/* Counts delta bytes (negative: given back) that the server holds for its
 * clients but not for one connection: consumer groups' windows. They count
 * in the budget (held, and the pauses from 7/8 of it), but no connection
 * is disconnected for them: closing one would not give them back.
 * conns_near_budget(): from 7/8 of the budget until below 3/4 again, when
 * what the server holds should not grow. */
void conns_mem_held_add(struct conns *set, int64_t delta);
bool conns_near_budget(const struct conns *set);

/* Spares c from being disconnected for the memory budget until its output
 * has drained (it is still paused like any other): for the connection that
 * asks who holds what (ListClients), so that an operator's view is not cut
 * off by the answer it asked for. */
void conn_spare(struct conn *c);

/* How many times a connection was held back by max_bytes_per_s. */
uint64_t conns_throttled(const struct conns *set);

/* Takes no further frame of c, and does not read it, for ms (from now; a
 * longer wait already running stays): a quota's pause (srv_quota.c). The
 * frame being handled is still handled. */
void conn_pause(struct conn *c, uint64_t ms);

/* True once c is closing: answers to it are dropped. */
bool conn_is_closing(const struct conn *c);

/* Closes c: nothing more is read or written; hooks.closed runs now. */
void conn_close(struct conn *c);

/* Counts a frame of c that did not decode; returns how many it has sent. */
uint32_t conn_bad_frame(struct conn *c);

/* Stops reading c and closes it once what is queued for it is written. */
void conn_close_after_flush(struct conn *c);

/* Counts work done for c elsewhere (a write at the writer, a worker job):
 * c stays allocated until each hold is released, and is not read while it
 * has max_inflight holds. conn_release() lets it go on (it decodes what it
 * buffered meanwhile) or be freed once closed. */
void conn_hold(struct conn *c);

/* Holds c and takes no further frame of it until conn_resume(): for a
 * frame handled off the loop thread, so that the next ones keep their
 * order. conn_resume() goes on with what c buffered meanwhile. */
void conn_suspend(struct conn *c);
void conn_resume(struct conn *c);
void conn_release(struct conn *c);

/* The connection's id (from 1, in accept order), as the log lines name it. */
uint64_t conn_id(const struct conn *c);

/* The Hello state: whether c has said Hello, and the client name it gave
 * (NUL-terminated, at most 63 bytes kept). */
bool conn_greeted(const struct conn *c);
void conn_greet(struct conn *c, const char *client_name);
const char *conn_client_name(const struct conn *c);

/* Serves TLS with ctx from now on (a reference is taken; the previous
 * context is let go, and connections that use it keep it until they
 * close), or no TLS with NULL. */
struct wb_tls_ctx;
void conns_set_tls(struct conns *set, struct wb_tls_ctx *ctx);

/* True when c speaks TLS; the CN of the client certificate it presented
 * and the server verified, or NULL (none, or not verified, or not TLS). */
bool conn_is_tls(const struct conn *c);
const char *conn_tls_peer(const struct conn *c);

/* The peer's address as the log lines show it: "HOST:PORT", "[V6]:PORT",
 * or "unix:uid=N,pid=P". */
const char *conn_peer(const struct conn *c);

/* True when c came through a Unix domain socket listener and the kernel
 * told its peer's uid (SO_PEERCRED, as of its connect()): *uid is set. */
bool conn_peer_uid(const struct conn *c, uint32_t *uid);

/* Who c acts as: the roles its requests are decided by (server/access.h),
 * or NULL before it authenticated (only requests that need no permission
 * pass). c keeps the pointer, not a copy: the subject must outlive c, or be
 * replaced before it goes. */
struct auth_subject;
const struct auth_subject *conn_subject(const struct conn *c);
void conn_set_subject(struct conn *c, const struct auth_subject *s);

/* A pointer a module keeps per connection (slot < CONN_SLOTS, NULL at
 * first). The module frees what it points to in its conn_closed hook. */
void *conn_slot(const struct conn *c, unsigned slot);
void conn_set_slot(struct conn *c, unsigned slot, void *p);

#endif
