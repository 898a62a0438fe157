/* The connection layer (conn.h).
 *
 * Happy path: accept; read into the connection's input buffer; decode every
 * whole frame there and hand each to hooks.frame; the answers are packed
 * into the output buffer, which conns_flush() hands to one uv_write per
 * connection at the end of the callback, however many frames it holds.
 *
 * Failure modes: a frame above max_frame is refused (hooks.refuse) and the
 * connection closes once that answer is written; a frame that does not
 * complete within frame_timeout_ms closes the connection; a connection whose
 * output piles up beyond max_output, or that holds max_inflight pieces of
 * work, is not read until it drains (its buffered frames wait, others are
 * unaffected). Past max_connections a new connection is refused. When no
 * connection can be allocated the peer is closed at once through a spare
 * handle, so the listener is never left with an accept pending (libuv stops
 * polling a listener whose callback did not accept). A connection that
 * closes with holds stays allocated until they are released.
 *
 * The memory budget: every connection's input buffers, output and what the
 * modules hold for it (conn_mem_add()) are counted as they change
 * (mem_update()). From 7/8 of memory_budget until below 3/4 again, a
 * connection holding much is not read (input above a sixteenth of the
 * budget, or OUT_FLOOR of output, queued reads and writes) and takes no
 * more work or pushes; at the
 * budget, when pausing did not hold it, the heaviest connection (more than
 * IN_KEEP) is answered RESOURCE_EXHAUSTED and closed once that is written,
 * or after frame_timeout_ms when it does not read (mem_enforce(), at every
 * flush). What closing connections hold is counted until they are freed,
 * and not disconnected for twice. */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "tls/wb_tls.h"
#include "log.h"
#include "netaddr.h"
#include "wb_error.h"

struct write_req {
	uv_write_t req;
	struct conn *conn;
	uint8_t *buf;
	size_t len;
};

/* A connection's stream: TCP, or a Unix domain socket (conns_accept() picks
 * by the listener's type). */
union conn_stream {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_tcp_t tcp;
	uv_pipe_t pipe;
};

struct conn {
	union conn_stream s;
	uv_timer_t timer;
	struct conns *set;
	struct conn *prev, *next; /* set->list */
	struct conn *dirty_next;  /* set->dirty, when dirty */
	uint64_t id;
	char peer[64];
	char name[64];
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_len, out_cap;
	size_t out_pending; /* bytes in writes not yet completed */
	size_t holds;
	void *slots[CONN_SLOTS];
	int handles_open;
	bool greeted;
	bool local;    /* a Unix domain socket: peer_uid holds the peer's uid */
	bool loopback; /* a TCP peer on a loopback address */
	/* TLS: undecided until the first bytes arrive (sniffed); then tls is
	 * the session, or NULL for plaintext. Received ciphertext waits in
	 * raw until the session takes it. */
	bool sniffed;
	struct wb_tls_session *tls;
	uint8_t *raw;
	size_t raw_len, raw_cap;
	uint32_t peer_uid;
	/* The peer's address for --max-connections-per-address: a family
	 * byte, then the IP (or the Unix peer's uid). */
	uint8_t addr[17];
	uint8_t addr_len;
	const struct auth_subject *subject; /* NULL: may do nothing that needs a permission */
	bool closing;
	bool dirty;
	bool reading;
	bool close_after_flush;
	uint32_t suspended;  /* conn_suspend(): no frame is taken until resumed */
	bool throttled;      /* over its byte rate: not read until the timer */
	int64_t rate_tokens; /* bytes it may still send now (--max-bytes-per-second) */
	uint64_t rate_ms;
	uint8_t timer_kind; /* enum timer_kind: what c->timer runs for */
	/* Figures for ListClients (conn_info()): loop times in ms. */
	uint64_t born_ms, last_frame_ms, last_out_ms;
	uint64_t frames, bytes_in, bytes_out;
	uint32_t bad_frames; /* frames that did not decode (conn_bad_frame()) */
	/* What the memory budget counts for it, by enum conn_mem, as last
	 * added into set->mem (mem_update()); extra is what the modules hold
	 * for it (conn_mem_add()). */
	uint64_t mem[CONN_MEM_KINDS];
	uint64_t mem_extra[CONN_MEM_KINDS];
	bool spared;  /* conn_spare(): not disconnected for the budget */
	bool evicted; /* disconnected for the budget: closes once written */
	/* What the kernel held for the peer when conn_push_check() last
	 * asked (SIOCOUTQ: unsent, or sent and not acknowledged), when, and
	 * bytes_out then. */
	uint32_t kernel_out;
	uint64_t kernel_out_ms;
	uint64_t kernel_out_bytes;
};

/* How long a kernel_out reading counts: a connection nobody asks about
 * again is not held back by an old one. */
#define KERNEL_OUT_FRESH_MS 50u
/* How long a reading above 0 is used before the kernel is asked again. */
#define KERNEL_OUT_RECHECK_MS 5u

/* The input buffer a connection keeps between large frames. */
#define IN_KEEP (64u * 1024u)
/* Output a connection may always queue, whatever the server-wide budget. */
#define OUT_FLOOR (64u * 1024u)

/* One timer per connection, for whichever wait applies: the TLS handshake,
 * a started frame, or (between frames) the idle timeout. */
enum timer_kind {
	TIMER_NONE,
	TIMER_HANDSHAKE,
	TIMER_FRAME,
	TIMER_IDLE,
	TIMER_THROTTLE,
	TIMER_EVICT, /* disconnected for the memory budget: the time its last answer has */
};

struct conns {
	uv_loop_t *loop;
	struct conn_limits lim;
	struct conn_hooks hooks;
	struct conn *list;
	struct conn *dirty;
	size_t open;
	uint64_t accepted;
	uint64_t next_id;
	bool stopped;
	uint64_t throttled; /* times a connection passed --max-bytes-per-second */
	/* The memory budget: what every connection holds, by enum conn_mem
	 * (closing ones included until freed), what the closing ones and those
	 * disconnected for the budget (closing once written) hold, whether the
	 * last check found it near the budget (mem_pressure()), and the
	 * figures. */
	uint64_t mem[CONN_MEM_KINDS];
	uint64_t mem_closing, mem_evicted;
	uint64_t mem_shared;  /* conns_mem_held_add(): no connection's */
	uint64_t mem_scanned; /* what was held when the last scan found no one to close */
	bool pressure;
	uint64_t mem_pauses, mem_disconnects;
	struct conn_counters counters;
	/* Load shedding: a spare handle that accepts and closes a peer when
	 * no connection can be allocated. */
	union conn_stream shed;
	struct wb_tls_ctx *tls_ctx; /* NULL: TLS is not served */
	bool shed_busy;
	uv_stream_t *accept_waiting; /* a listener to accept from once shed is free */
};

static void process(struct conn *c);
static void mark_dirty(struct conn *c);
static bool tls_input(struct conn *c);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ------------------------------------------------------------ memory */

static uint64_t mem_of(const struct conn *c)
{
	uint64_t n = 0;
	for (unsigned k = 0; k < CONN_MEM_KINDS; k++)
		n += c->mem[k];
	return n;
}

static uint64_t mem_total(const struct conns *set)
{
	uint64_t n = set->mem_shared;
	for (unsigned k = 0; k < CONN_MEM_KINDS; k++)
		n += set->mem[k];
	return n;
}

/* Near the budget: from 7/8 of it, until below 3/4 again (so that what
 * one disconnect gives back is not taken at once by every connection that
 * was paused). */
static bool mem_pressure(const struct conns *set)
{
	uint64_t budget = set->lim.memory_budget;
	uint64_t total = mem_total(set);
	return budget != 0 &&
	       (total >= budget - budget / 8 || (set->pressure && total >= budget - budget / 4));
}

/* Counts what c holds now into the set's figures (after any change of its
 * buffers or of what the modules hold for it). */
static void mem_update(struct conn *c)
{
	struct conns *set = c->set;
	uint64_t now[CONN_MEM_KINDS] = {
	        [CONN_MEM_INPUT] = c->in_cap + c->raw_cap,
	        [CONN_MEM_OUTPUT] = c->out_len + c->out_pending,
	};
	for (unsigned k = 0; k < CONN_MEM_KINDS; k++) {
		now[k] += c->mem_extra[k];
		/* Unsigned: a decrease wraps and the sum comes out right. */
		set->mem[k] += now[k] - c->mem[k];
		if (c->closing)
			set->mem_closing += now[k] - c->mem[k];
		else if (c->evicted)
			set->mem_evicted += now[k] - c->mem[k];
		c->mem[k] = now[k];
	}
}

void conn_mem_add(struct conn *c, enum conn_mem kind, int64_t delta)
{
	if ((unsigned)kind >= CONN_MEM_KINDS)
		return;
	c->mem_extra[kind] += (uint64_t)delta;
	mem_update(c);
}

void conns_mem_held_add(struct conns *set, int64_t delta)
{
	set->mem_shared += (uint64_t)delta;
}

bool conns_near_budget(const struct conns *set)
{
	return mem_pressure(set);
}

void conns_memory(const struct conns *set, struct conns_memory *out)
{
	*out = (struct conns_memory){
	        .budget = set->lim.memory_budget,
	        .held = mem_total(set),
	        .shared = set->mem_shared,
	        .pauses = set->mem_pauses,
	        .disconnects = set->mem_disconnects,
	};
	for (unsigned k = 0; k < CONN_MEM_KINDS; k++)
		out->by_kind[k] = set->mem[k];
}

void conn_spare(struct conn *c)
{
	c->spared = true;
}

/* What c holds that grows with the work it asks for: output, queued reads
 * and writes (its input buffer is input_heavy()'s). */
static uint64_t mem_work(const struct conn *c)
{
	return c->mem[CONN_MEM_OUTPUT] + c->mem[CONN_MEM_READS] + c->mem[CONN_MEM_WRITES];
}

/* Input holding a large share of the budget: a large frame arriving, or
 * being decoded elsewhere, above a sixteenth of the budget (at least
 * IN_KEEP). Pausing a frame half read holds what was read until the server
 * is back below 3/4 (or the frame times out), so only the heaviest are: with
 * the default budget a frame of the default --max-frame is always read to
 * its end. */
static bool input_heavy(const struct conn *c)
{
	uint64_t share = c->set->lim.memory_budget / 16;
	return c->in_cap + c->mem_extra[CONN_MEM_INPUT] > (share > IN_KEEP ? share : IN_KEEP);
}

/* Near the budget, c is not read (input_heavy) or given more work
 * (mem_work) when it holds more than a small connection does. */
static bool mem_paused(const struct conn *c)
{
	return (input_heavy(c) || mem_work(c) >= OUT_FLOOR) && mem_pressure(c->set);
}

/* ------------------------------------------------------------ state */

/* Paused: not read while it holds this much work or output. */
static bool paused(const struct conn *c)
{
	return c->suspended > 0 || c->throttled || c->holds >= c->set->lim.max_inflight ||
	       !conn_can_take_more(c);
}

/* Output queued and being written. */
static uint64_t out_queued(const struct conn *c)
{
	return c->out_len + c->out_pending;
}

bool conn_can_take_more(const struct conn *c)
{
	const struct conns *set = c->set;
	uint64_t queued = out_queued(c);
	/* Near the memory budget only connections holding little may take
	 * more: the heavy ones (clients that do not read) wait. */
	return !c->closing && !c->close_after_flush && queued < set->lim.max_output &&
	       (mem_work(c) < OUT_FLOOR || !mem_pressure(set));
}

/* What the kernel holds for c's peer as far as the server knows: the last
 * reading, and all written since (as if none of it had left). */
static uint64_t kernel_held(const struct conn *c)
{
	if (uv_now(c->set->loop) - c->kernel_out_ms > KERNEL_OUT_FRESH_MS)
		return 0;
	return c->kernel_out + (c->bytes_out - c->kernel_out_bytes);
}

bool conn_can_push(const struct conn *c)
{
	return conn_can_take_more(c) && out_queued(c) + kernel_held(c) < c->set->lim.push_buffer;
}

bool conn_push_check(struct conn *c)
{
	uint64_t now = uv_now(c->set->loop);
	/* The kernel is asked again only when its answer may have changed in
	 * a way that matters: a reading of a few ms ago still holds (the pump
	 * runs after every writer batch, thousands of times a second, and a
	 * subscriber that does not read would cost a system call each), and
	 * nothing written since a reading of 0 keeps it 0. */
	bool recent = c->kernel_out > 0 && now - c->kernel_out_ms < KERNEL_OUT_RECHECK_MS;
	bool unchanged = c->kernel_out == 0 && c->bytes_out == c->kernel_out_bytes;
	if (recent || unchanged || c->closing)
		return conn_can_push(c);
	uv_os_fd_t fd;
	int n = 0;
	c->kernel_out = 0;
	c->kernel_out_bytes = c->bytes_out;
	c->kernel_out_ms = now;
	if (uv_fileno(&c->s.handle, &fd) == 0 && ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0)
		c->kernel_out = (uint32_t)n;
	return conn_can_push(c);
}

bool conn_push_waits_for_peer(const struct conn *c)
{
	return conn_can_take_more(c) && out_queued(c) < c->set->lim.push_buffer &&
	       !conn_can_push(c);
}

uint64_t conns_output_held(const struct conns *set)
{
	return set->mem[CONN_MEM_OUTPUT];
}

uint64_t conns_throttled(const struct conns *set)
{
	return set->throttled;
}

bool conn_is_closing(const struct conn *c)
{
	return c->closing;
}

uint64_t conn_id(const struct conn *c)
{
	return c->id;
}

bool conn_greeted(const struct conn *c)
{
	return c->greeted;
}

void conn_greet(struct conn *c, const char *client_name)
{
	c->greeted = true;
	snprintf(c->name, sizeof(c->name), "%s", client_name != NULL ? client_name : "");
}

const char *conn_tls_peer(const struct conn *c)
{
	if (c->tls == NULL || wb_tls_session_state(c->tls) != WB_TLS_OPEN)
		return NULL;
	return wb_tls_session_peer_cn(c->tls);
}

bool conn_is_tls(const struct conn *c)
{
	return c->tls != NULL;
}

void conns_set_tls(struct conns *set, struct wb_tls_ctx *ctx)
{
	struct wb_tls_ctx *old = set->tls_ctx;
	set->tls_ctx = ctx != NULL ? wb_tls_ctx_ref(ctx) : NULL;
	wb_tls_ctx_unref(old);
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

bool conn_peer_uid(const struct conn *c, uint32_t *uid)
{
	if (c->local)
		*uid = c->peer_uid;
	return c->local;
}

const struct auth_subject *conn_subject(const struct conn *c)
{
	return c->subject;
}

void conn_set_subject(struct conn *c, const struct auth_subject *s)
{
	c->subject = s;
}

const char *conn_client_name(const struct conn *c)
{
	return c->name;
}

void *conn_slot(const struct conn *c, unsigned slot)
{
	return slot < CONN_SLOTS ? c->slots[slot] : NULL;
}

void conn_set_slot(struct conn *c, unsigned slot, void *p)
{
	if (slot < CONN_SLOTS)
		c->slots[slot] = p;
}

/* Reads from c exactly when it may make progress. */
static void update_reading(struct conn *c)
{
	/* Ciphertext the session has not taken fills raw: read on once
	 * process() has moved it on. Near the memory budget a connection
	 * receiving a large frame waits (mem_paused()). */
	bool want = !c->closing && !c->close_after_flush && !c->set->stopped && !paused(c) &&
	            !(c->raw != NULL && c->raw_len == c->raw_cap) && !mem_paused(c);
	if (want == c->reading)
		return;
	if (!want && mem_paused(c))
		c->set->mem_pauses++;
	/* uv_read_start() fails only on a closing or unreadable stream,
	 * which is then closed by its read callback or already closing. */
	if (want && uv_read_start(&c->s.stream, alloc_cb, read_cb) != 0)
		return;
	if (!want)
		uv_read_stop(&c->s.stream);
	c->reading = want;
}

/* ------------------------------------------------------------ life cycle */

static void maybe_free(struct conn *c)
{
	if (c->handles_open > 0 || c->holds > 0 || c->out_pending > 0)
		return;
	/* Nothing it held is counted any more. */
	c->in_cap = c->raw_cap = c->out_len = 0;
	memset(c->mem_extra, 0, sizeof(c->mem_extra));
	mem_update(c);
	free(c->in);
	free(c->out);
	free(c->raw);
	wb_tls_session_free(c->tls);
	free(c);
}

static void handle_closed_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct conns *set = c->set;
	c->handles_open--;
	maybe_free(c);
	/* What it held may have brought the server below 3/4 of its memory
	 * budget: the connections paused for it are read again at the flush. */
	if (set->pressure)
		set->hooks.after(set->hooks.arg, false);
}

uint32_t conn_bad_frame(struct conn *c)
{
	return ++c->bad_frames;
}

void conn_close_after_flush(struct conn *c)
{
	if (c->closing)
		return;
	c->close_after_flush = true;
	mark_dirty(c);
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	struct conns *set = c->set;
	c->closing = true;
	/* What it holds is counted until it is freed, as closing: it is on its
	 * way out, and no other connection is disconnected for it. */
	if (c->evicted)
		set->mem_evicted -= mem_of(c);
	set->mem_closing += mem_of(c);
	if (c->dirty) {
		/* Unlinked before the connection can be freed. */
		struct conn **pp = &set->dirty;
		while (*pp != c)
			pp = &(*pp)->dirty_next;
		*pp = c->dirty_next;
		c->dirty = false;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		set->list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	set->open--;
	set->hooks.closed(set->hooks.arg, c);
	srv_log(WB_LOG_DEBUG, "disconnected", "conn=%llu holds=%zu", (unsigned long long)c->id,
	        c->holds);
	uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
	uv_close(&c->s.handle, handle_closed_cb);
}

void conn_hold(struct conn *c)
{
	c->holds++;
}

void conn_suspend(struct conn *c)
{
	c->holds++;
	c->suspended++;
}

void conn_resume(struct conn *c)
{
	c->suspended--;
	conn_release(c);
}

void conn_release(struct conn *c)
{
	c->holds--;
	if (c->closing) {
		maybe_free(c);
		return;
	}
	/* It may have been paused at max_inflight: go on with what it
	 * buffered. */
	if (!paused(c))
		process(c);
}

static void handshake_timeout_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->closing)
		return;
	srv_log(WB_LOG_INFO, "tls_handshake_timeout", "conn=%llu peer=%s timeout_ms=%llu",
	        (unsigned long long)c->id, c->peer,
	        (unsigned long long)c->set->lim.tls_handshake_timeout_ms);
	conn_close(c);
	c->set->hooks.after(c->set->hooks.arg, false);
}

static void frame_timeout_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->closing)
		return;
	srv_log(WB_LOG_INFO, "frame_timeout", "conn=%llu peer=%s buffered=%zu timeout_ms=%llu",
	        (unsigned long long)c->id, c->peer, c->in_len,
	        (unsigned long long)c->set->lim.frame_timeout_ms);
	conn_close(c);
	c->set->hooks.after(c->set->hooks.arg, false);
}

static void idle_timeout_cb(uv_timer_t *t);

/* Answers c RESOURCE_EXHAUSTED with msg (request id 0) and closes it once
 * that is written. */
static void refuse_and_close(struct conn *c, const char *msg)
{
	struct conns *set = c->set;
	set->hooks.refuse(set->hooks.arg, c, WB_RESOURCE_EXHAUSTED, msg);
	c->close_after_flush = true;
	set->hooks.after(set->hooks.arg, false);
}

/* Between frames: the idle clock, when there is one. */
static void arm_idle(struct conn *c)
{
	uint64_t ms = c->set->lim.idle_timeout_ms;
	if (ms == 0) {
		if (c->timer_kind != TIMER_NONE)
			uv_timer_stop(&c->timer);
		c->timer_kind = TIMER_NONE;
		return;
	}
	uv_timer_start(&c->timer, idle_timeout_cb, ms, 0);
	c->timer_kind = TIMER_IDLE;
}

/* No frame for idle_timeout_ms: closed, unless c waits for the server
 * (work in flight, output queued) or holds something open (a
 * subscription, a lease, a consumer membership: the busy hook). */
static void idle_timeout_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	struct conns *set = c->set;
	c->timer_kind = TIMER_NONE;
	if (c->closing || c->close_after_flush)
		return;
	if (c->holds > 0 || out_queued(c) > 0 ||
	    (set->hooks.busy != NULL && set->hooks.busy(set->hooks.arg, c))) {
		arm_idle(c);
		return;
	}
	char msg[200];
	srv_log(WB_LOG_INFO, "idle_timeout", "conn=%llu peer=%s timeout_ms=%llu",
	        (unsigned long long)c->id, c->peer, (unsigned long long)set->lim.idle_timeout_ms);
	snprintf(msg, sizeof(msg),
	         "closed after %llu ms without a request (--idle-timeout); a connection with a "
	         "subscription, a lease or a consumer membership is kept",
	         (unsigned long long)set->lim.idle_timeout_ms);
	refuse_and_close(c, msg);
}

/* ------------------------------------------------------------ output */

static void mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dirty_next = c->set->dirty;
	c->set->dirty = c;
}

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

uint8_t *conn_frame(struct conn *c, size_t n)
{
	if (c->closing)
		return NULL;
	if (n > UINT32_MAX || out_reserve(c, FRAME_HEADER + n) != 0) {
		srv_log(WB_LOG_ERROR, "response_dropped", "conn=%llu bytes=%zu reason=no_memory",
		        (unsigned long long)c->id, n);
		conn_close(c);
		return NULL;
	}
	uint8_t *p = c->out + c->out_len;
	frame_put_header(p, (uint32_t)n);
	c->out_len += FRAME_HEADER + n;
	mem_update(c);
	c->last_out_ms = uv_now(c->set->loop);
	mark_dirty(c);
	return p + FRAME_HEADER;
}

void conn_send(struct conn *c, const uint8_t *payload, size_t n)
{
	uint8_t *p = conn_frame(c, n);
	if (p != NULL)
		memcpy(p, payload, n);
}

static void write_cb(uv_write_t *req, int status)
{
	struct write_req *wr = (struct write_req *)req;
	struct conn *c = wr->conn;
	struct conns *set = c->set;
	c->out_pending -= wr->len;
	mem_update(c);
	free(wr->buf);
	free(wr);
	if (c->closing) {
		maybe_free(c);
		return;
	}
	if (status < 0) {
		srv_log(WB_LOG_INFO, "write_failed", "conn=%llu error=%s",
		        (unsigned long long)c->id, uv_err_name(status));
		conn_close(c);
		set->hooks.after(set->hooks.arg, false);
		return;
	}
	if (c->close_after_flush && c->out_pending == 0 && c->out_len == 0) {
		conn_close(c);
		set->hooks.after(set->hooks.arg, false);
		return;
	}
	if (c->out_pending == 0 && c->out_len == 0)
		c->spared = false; /* what it asked for is read */
	/* Output drained: take up buffered requests again, and pushes that
	 * waited for room. */
	process(c);
	set->hooks.after(set->hooks.arg, true);
}

/* Encrypts what of c's queued plaintext the session takes and returns the
 * ciphertext to write in a buffer the caller owns: NULL with *len 0 when
 * there is none, NULL with *len 1 when out of memory. Plaintext the
 * session cannot take yet stays queued. */
static uint8_t *tls_output(struct conn *c, size_t *len)
{
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0, off = 0;
	bool open = wb_tls_session_state(c->tls) == WB_TLS_OPEN;
	for (;;) {
		size_t took = 0;
		if (open && off < c->out_len)
			(void)wb_tls_session_write(c->tls, c->out + off, c->out_len - off, &took);
		off += took;
		const uint8_t *p;
		size_t pn;
		wb_tls_session_peek_out(c->tls, &p, &pn);
		if (pn == 0 && took == 0)
			break;
		if (pn == 0)
			continue;
		if (cap - n < pn) {
			size_t ncap = cap > 0 ? cap * 2 : 65536;
			while (ncap - n < pn)
				ncap *= 2;
			uint8_t *q = realloc(buf, ncap);
			if (q == NULL) {
				free(buf);
				*len = 1;
				return NULL;
			}
			buf = q;
			cap = ncap;
		}
		memcpy(buf + n, p, pn);
		n += pn;
		wb_tls_session_consume_out(c->tls, pn);
	}
	if (off > 0) {
		memmove(c->out, c->out + off, c->out_len - off);
		c->out_len -= off;
		mem_update(c);
	}
	*len = n;
	return buf;
}

/* Hands buf[0..len) (which it takes) to one write on c. */
static void write_buf(struct conn *c, uint8_t *buf, size_t len)
{
	struct write_req *wr = malloc(sizeof(*wr));
	if (wr == NULL) {
		free(buf);
		srv_log(WB_LOG_ERROR, "response_dropped", "conn=%llu bytes=%zu reason=no_memory",
		        (unsigned long long)c->id, len);
		conn_close(c);
		return;
	}
	wr->conn = c;
	wr->buf = buf;
	wr->len = len;
	uv_buf_t b = uv_buf_init((char *)wr->buf, (unsigned)wr->len);
	int rc = uv_write(&wr->req, &c->s.stream, &b, 1, write_cb);
	if (rc != 0) {
		free(wr);
		free(buf);
		srv_log(WB_LOG_INFO, "write_failed", "conn=%llu error=%s",
		        (unsigned long long)c->id, uv_err_name(rc));
		conn_close(c);
		return;
	}
	c->out_pending += len;
	mem_update(c);
	c->bytes_out += len;
}

/* Hands c's queued output to one write (ciphertext, on a TLS connection). */
static void flush_one(struct conn *c)
{
	if (c->closing)
		return;
	if (c->tls != NULL) {
		size_t n;
		uint8_t *cipher = tls_output(c, &n);
		if (cipher == NULL && n == 1) {
			srv_log(WB_LOG_ERROR, "response_dropped", "conn=%llu reason=no_memory",
			        (unsigned long long)c->id);
			conn_close(c);
		} else if (n > 0) {
			write_buf(c, cipher, n);
		} else if (c->close_after_flush && c->out_pending == 0) {
			conn_close(c);
		}
		return;
	}
	if (c->out_len == 0)
		return;
	uint8_t *buf = c->out;
	size_t len = c->out_len;
	c->out = NULL;
	c->out_len = 0;
	c->out_cap = 0;
	mem_update(c);
	write_buf(c, buf, len);
}

/* The memory budget's disconnect gave c frame_timeout_ms to read what was
 * queued before its last answer; it did not. */
static void evict_timeout_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	c->timer_kind = TIMER_NONE;
	if (c->closing)
		return;
	srv_log(WB_LOG_INFO, "memory_disconnect_timeout", "conn=%llu peer=%s unsent=%zu",
	        (unsigned long long)c->id, c->peer, c->out_len + c->out_pending);
	conn_close(c);
	c->set->hooks.after(c->set->hooks.arg, false);
}

/* Disconnects c for the memory budget: the server holds kept bytes for the
 * connections that are not on their way out, and c the most of them. It is
 * answered RESOURCE_EXHAUSTED (request id 0) behind what is already queued
 * for it, read no more, and closed once that is written, or after
 * frame_timeout_ms when it does not read. */
static void evict(struct conn *c, uint64_t kept)
{
	struct conns *set = c->set;
	char msg[512];
	set->mem_disconnects++;
	srv_log(WB_LOG_WARN, "memory_disconnect",
	        "conn=%llu peer=%s held=%llu input=%llu output=%llu queued_reads=%llu "
	        "writes=%llu server_held=%llu budget=%llu",
	        (unsigned long long)c->id, c->peer, (unsigned long long)mem_of(c),
	        (unsigned long long)c->mem[CONN_MEM_INPUT],
	        (unsigned long long)c->mem[CONN_MEM_OUTPUT],
	        (unsigned long long)c->mem[CONN_MEM_READS],
	        (unsigned long long)c->mem[CONN_MEM_WRITES], (unsigned long long)kept,
	        (unsigned long long)set->lim.memory_budget);
	snprintf(msg, sizeof(msg),
	         "the server holds %llu bytes for its clients, its memory budget is %llu "
	         "(--memory-budget), and this connection held the most: %llu bytes (input %llu, "
	         "output %llu, queued reads %llu, writes %llu); it is closed. Read what the "
	         "server sends, and send smaller frames or fewer requests at once",
	         (unsigned long long)kept, (unsigned long long)set->lim.memory_budget,
	         (unsigned long long)mem_of(c), (unsigned long long)c->mem[CONN_MEM_INPUT],
	         (unsigned long long)c->mem[CONN_MEM_OUTPUT],
	         (unsigned long long)c->mem[CONN_MEM_READS],
	         (unsigned long long)c->mem[CONN_MEM_WRITES]);
	set->hooks.refuse(set->hooks.arg, c, WB_RESOURCE_EXHAUSTED, msg);
	c->close_after_flush = true;
	c->evicted = true;
	set->mem_evicted += mem_of(c);
	uv_timer_start(&c->timer, evict_timeout_cb, set->lim.frame_timeout_ms, 0);
	c->timer_kind = TIMER_EVICT;
	mark_dirty(c);
}

/* The memory budget, after every flush: at the budget, disconnects the
 * heaviest connections until what the others hold is below it (those on
 * their way out, closing or closing once written, are not counted, and
 * only a connection holding more than IN_KEEP is disconnected, never a
 * spared one); once below 3/4 of it again, lets every connection that was
 * paused for it be read. True when it marked connections to flush. */
static bool mem_enforce(struct conns *set)
{
	uint64_t budget = set->lim.memory_budget;
	if (budget == 0)
		return false;
	bool marked = false;
	uint64_t total = mem_total(set);
	/* The scan is O(connections): only when what the connections that
	 * stay hold is at the budget, and not again for the same total when
	 * it found no one to close (memory spread thin over many). */
	/* What no connection holds (consumer windows) is not counted here:
	 * closing a connection would not give it back. */
	while (total - set->mem_shared - set->mem_closing - set->mem_evicted >= budget &&
	       total != set->mem_scanned) {
		uint64_t kept = total - set->mem_shared - set->mem_closing - set->mem_evicted;
		struct conn *heaviest = NULL;
		for (struct conn *c = set->list; c != NULL; c = c->next) {
			uint64_t mine = mem_of(c);
			if (c->close_after_flush) {
				if (!c->evicted)
					kept -= mine; /* refused for another reason: going too */
			} else if (!c->spared && mine > IN_KEEP &&
			           (heaviest == NULL || mine > mem_of(heaviest))) {
				heaviest = c;
			}
		}
		if (kept < budget || heaviest == NULL) {
			set->mem_scanned = total;
			break;
		}
		evict(heaviest, kept);
		marked = true;
		total = mem_total(set);
	}
	bool pressure = mem_pressure(set);
	if (set->pressure && !pressure) {
		/* Below 3/4 again: the connections paused for the budget may
		 * be read (update_reading() at this flush). */
		for (struct conn *c = set->list; c != NULL; c = c->next)
			mark_dirty(c);
		marked = true;
	}
	set->pressure = pressure;
	return marked;
}

void conns_flush(struct conns *set)
{
	do {
		while (set->dirty != NULL) {
			struct conn *c = set->dirty;
			set->dirty = c->dirty_next;
			c->dirty = false;
			c->dirty_next = NULL;
			flush_one(c);
			if (!c->closing)
				update_reading(c);
		}
	} while (mem_enforce(set));
}

/* ------------------------------------------------------------ input */

/* Decodes and hands up every whole frame buffered on c while c is not
 * paused, then keeps the rest for the next read. */
static void process(struct conn *c)
{
	struct conns *set = c->set;
	size_t pos = 0;
	if (c->tls != NULL && c->raw_len > 0 && !c->closing && !c->close_after_flush &&
	    !tls_input(c))
		return;
	bool progress = false;
	/* Stays FRAME_OK when the loop stops because c is paused: buffered
	 * whole frames waiting for room are not the client's delay. */
	enum frame_status st = FRAME_OK;

	while (!c->closing && !c->close_after_flush && !paused(c)) {
		const uint8_t *payload;
		uint32_t plen = 0;
		size_t used;
		/* Read again per frame: a Hello may authenticate c. */
		bool unauth = c->subject == NULL && set->lim.max_unauth_frame > 0 &&
		              set->lim.max_unauth_frame < set->lim.max_frame;
		uint64_t max = unauth ? set->lim.max_unauth_frame : set->lim.max_frame;
		st = frame_decode(c->in + pos, c->in_len - pos, (uint32_t)max, &payload, &plen,
		                  &used);
		if (st == FRAME_AGAIN)
			break;
		if (st == FRAME_ERROR) {
			char msg[240];
			srv_log(WB_LOG_WARN, "frame_too_large",
			        "conn=%llu peer=%s bytes=%u max=%llu%s", (unsigned long long)c->id,
			        c->peer, plen, (unsigned long long)max,
			        unauth ? " unauthenticated" : "");
			snprintf(msg, sizeof(msg),
			         "a frame of %u bytes is larger than this server's limit of %llu "
			         "bytes%s; the connection is closed",
			         plen, (unsigned long long)max,
			         unauth ? " for a connection that has not authenticated "
			                  "(--max-unauthenticated-frame): say Hello first"
			                : " (--max-frame)");
			set->hooks.refuse(set->hooks.arg, c, WB_FRAME_TOO_LARGE, msg);
			c->close_after_flush = true;
			c->in_len = 0;
			pos = 0;
			break;
		}
		if (set->hooks.admit != NULL && !set->hooks.admit(set->hooks.arg, c, plen))
			break; /* paused: the frame waits */
		c->frames++;
		c->last_frame_ms = uv_now(set->loop);
		set->hooks.frame(set->hooks.arg, c, payload, plen);
		pos += used;
		progress = true;
	}
	if (c->closing)
		return;
	if (pos > 0) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
		/* A large frame grew the buffer: give the memory back once what
		 * is left fits a small one, so that a connection idle after one
		 * large frame holds IN_KEEP, not the frame's size. */
		if (c->in_cap > IN_KEEP && c->in_len <= IN_KEEP / 2) {
			uint8_t *p = realloc(c->in, IN_KEEP);
			if (p != NULL) {
				c->in = p;
				c->in_cap = IN_KEEP;
				mem_update(c);
			}
		}
	}
	/* A started frame must complete within the timeout; the clock restarts
	 * whenever a frame completes. uv_timer_start() with a callback on an
	 * open timer cannot fail. While a TLS handshake runs, the timer is the
	 * handshake's. */
	if (c->timer_kind == TIMER_THROTTLE) {
		/* the throttle's wait runs; the other clocks start after it */
	} else if (c->tls != NULL && wb_tls_session_state(c->tls) == WB_TLS_HANDSHAKING) {
		/* the handshake timeout runs */
	} else if (c->in_len > 0 && st == FRAME_AGAIN && !c->close_after_flush) {
		if (c->timer_kind != TIMER_FRAME || progress) {
			uv_timer_start(&c->timer, frame_timeout_cb, set->lim.frame_timeout_ms, 0);
			c->timer_kind = TIMER_FRAME;
		}
	} else if (progress || c->timer_kind == TIMER_FRAME) {
		arm_idle(c);
	}
	/* Reading is decided at the flush, from what is queued by then. */
	mark_dirty(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	size_t limit = c->set->lim.max_frame + FRAME_HEADER + 65536;
	(void)suggested;
	if (!c->sniffed || c->tls != NULL) {
		/* Ciphertext, or the first bytes: the session takes
		 * WB_TLS_IN_BUF at once, and what it left waits here. */
		if (c->raw == NULL) {
			c->raw = malloc(WB_TLS_IN_BUF * 2);
			c->raw_cap = c->raw != NULL ? WB_TLS_IN_BUF * 2 : 0;
			mem_update(c);
		}
		*buf = uv_buf_init((char *)c->raw + c->raw_len,
		                   (unsigned)(c->raw_cap - c->raw_len));
		return;
	}
	if (c->in_cap - c->in_len < 16384 && c->in_cap < limit) {
		size_t cap = c->in_cap > 0 ? c->in_cap * 2 : 16384;
		if (cap > limit)
			cap = limit;
		uint8_t *p = realloc(c->in, cap);
		if (p != NULL) {
			c->in = p;
			c->in_cap = cap;
			mem_update(c);
		}
	}
	/* No room (no memory): libuv reports UV_ENOBUFS to read_cb. */
	*buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

/* Makes room for n more bytes of input in c->in. */
static int in_reserve(struct conn *c, size_t n)
{
	if (c->in_cap - c->in_len >= n)
		return 0;
	size_t cap = c->in_cap > 0 ? c->in_cap : 16384;
	while (cap - c->in_len < n)
		cap *= 2;
	uint8_t *p = realloc(c->in, cap);
	if (p == NULL)
		return WB_E_NOMEM;
	c->in = p;
	c->in_cap = cap;
	mem_update(c);
	return 0;
}

/* Refuses c for what its first bytes said: with msg, an answer and then a
 * close; without, a close (a TLS client reads no plaintext answer). */
static void refuse_transport(struct conn *c, const char *reason, const char *msg)
{
	srv_log(WB_LOG_INFO, "connection_refused", "conn=%llu peer=%s reason=%s",
	        (unsigned long long)c->id, c->peer, reason);
	if (msg != NULL) {
		c->set->hooks.refuse(c->set->hooks.arg, c, WB_UNAUTHENTICATED, msg);
		c->close_after_flush = true;
	} else {
		conn_close(c);
	}
}

/* Decides from c's first bytes (in raw) whether it speaks TLS, and whether
 * the policy lets it speak what it does. False when it must wait for more
 * bytes or was refused (nothing more to do now). */
static bool sniff(struct conn *c)
{
	struct conns *set = c->set;
	enum wb_tls_looks looks = wb_tls_looks_like_tls(c->raw, c->raw_len);
	if (looks == WB_TLS_LOOKS_AGAIN)
		return false;
	c->sniffed = true;
	if (looks == WB_TLS_LOOKS_TLS) {
		if (set->tls_ctx == NULL || set->lim.tls_policy == CONN_TLS_OFF) {
			refuse_transport(c, "tls_not_served", NULL);
			return false;
		}
		if (wb_tls_session_new(set->tls_ctx, &c->tls) != 0) {
			refuse_transport(c, "no_memory", NULL);
			return false;
		}
		uv_timer_start(&c->timer, handshake_timeout_cb, set->lim.tls_handshake_timeout_ms,
		               0);
		c->timer_kind = TIMER_HANDSHAKE;
		return true;
	}
	/* Plaintext: from the Unix socket always; over TCP never under
	 * required, and under auto from loopback, or from anywhere while no
	 * certificate is set. */
	bool must_tls =
	        !c->local &&
	        (set->lim.tls_policy == CONN_TLS_REQUIRED ||
	         (set->lim.tls_policy == CONN_TLS_AUTO && !c->loopback && set->tls_ctx != NULL));
	if (must_tls) {
		c->raw_len = 0;
		refuse_transport(c, "plaintext_not_allowed",
		                 "this server takes only TLS from this address: connect with TLS");
		return false;
	}
	if (in_reserve(c, c->raw_len) != 0) {
		refuse_transport(c, "no_memory", NULL);
		return false;
	}
	memcpy(c->in + c->in_len, c->raw, c->raw_len);
	c->in_len += c->raw_len;
	free(c->raw);
	c->raw = NULL;
	c->raw_len = c->raw_cap = 0;
	mem_update(c);
	return true;
}

/* Moves received ciphertext through c's session into c->in. False when the
 * session failed or closed: c closes once its alert is written. */
static bool tls_input(struct conn *c)
{
	size_t limit = c->set->lim.max_frame + FRAME_HEADER + 65536;
	bool was_open = wb_tls_session_state(c->tls) == WB_TLS_OPEN;
	while (c->raw_len > 0) {
		size_t took = 0;
		int rc = wb_tls_session_feed(c->tls, c->raw, c->raw_len, &took);
		memmove(c->raw, c->raw + took, c->raw_len - took);
		c->raw_len -= took;
		for (;;) {
			size_t n = 0;
			/* Past the limit the frame decoder refuses the frame. */
			if (c->in_len >= limit || in_reserve(c, 16384) != 0)
				break;
			int r = wb_tls_session_read(c->tls, c->in + c->in_len,
			                            c->in_cap - c->in_len, &n);
			c->in_len += n;
			if (r != 0 || n == 0)
				break;
		}
		if (rc != 0) {
			srv_log(WB_LOG_INFO, "tls_failed", "conn=%llu peer=%s reason=%s",
			        (unsigned long long)c->id, c->peer,
			        rc == WB_E_CLOSED ? "closed" : wb_tls_session_errmsg(c->tls));
			c->close_after_flush = true;
			c->raw_len = 0;
			mark_dirty(c); /* the alert goes out, then c closes */
			return false;
		}
		if (took == 0)
			break; /* full: the rest waits until its plaintext is read */
	}
	if (!was_open && wb_tls_session_state(c->tls) == WB_TLS_OPEN) {
		arm_idle(c);
		/* The CN is the client's text: quoted, like every such value. */
		const char *cn = wb_tls_session_peer_cn(c->tls);
		char q[160];
		srv_log(WB_LOG_DEBUG, "tls_open", "conn=%llu version=%s cipher=%s peer_cn=%s",
		        (unsigned long long)c->id, wb_tls_session_version(c->tls),
		        wb_tls_session_cipher(c->tls), log_quote(cn, strlen(cn), q, sizeof(q)));
	}
	mark_dirty(c); /* the handshake's answers go out at the flush */
	return true;
}

/* The end of a throttle's wait: c is read again, its buffered frames
 * taken, and its idle or frame clock runs again. */
static void throttle_cb(uv_timer_t *t)
{
	struct conn *c = t->data;
	c->timer_kind = TIMER_NONE;
	if (c->closing)
		return;
	c->throttled = false;
	arm_idle(c);
	process(c);
	c->set->hooks.after(c->set->hooks.arg, false);
}

/* Counts n bytes that c sent against --max-bytes-per-second (a token
 * bucket holding a second's worth, at least a largest frame): past it, c is
 * not read (its peer waits on TCP) until the bytes are paid for. */
static void throttle(struct conn *c, uint64_t n)
{
	const struct conn_limits *lim = &c->set->lim;
	if (lim->max_bytes_per_s == 0)
		return;
	uint64_t burst = lim->max_bytes_per_s > lim->max_frame + 16 ? lim->max_bytes_per_s
	                                                            : lim->max_frame + 16;
	uint64_t now = uv_now(c->set->loop);
	uint64_t earned = (now - c->rate_ms) * lim->max_bytes_per_s / 1000;
	c->rate_ms = now;
	c->rate_tokens = c->rate_tokens + (int64_t)earned > (int64_t)burst
	                         ? (int64_t)burst
	                         : c->rate_tokens + (int64_t)earned;
	c->rate_tokens -= (int64_t)n;
	if (c->rate_tokens >= 0 || c->throttled)
		return;
	uint64_t wait = ((uint64_t)-c->rate_tokens * 1000 + lim->max_bytes_per_s - 1) /
	                lim->max_bytes_per_s;
	c->throttled = true;
	c->set->throttled++;
	uv_timer_start(&c->timer, throttle_cb, wait > 0 ? wait : 1, 0);
	c->timer_kind = TIMER_THROTTLE;
	mark_dirty(c); /* the flush stops reading it */
}

void conn_pause(struct conn *c, uint64_t ms)
{
	if (c->closing || ms == 0)
		return;
	if (c->timer_kind == TIMER_THROTTLE && uv_timer_get_due_in(&c->timer) >= ms)
		return;
	c->throttled = true;
	uv_timer_start(&c->timer, throttle_cb, ms, 0);
	c->timer_kind = TIMER_THROTTLE;
	mark_dirty(c); /* the flush stops reading it */
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct conns *set = c->set;
	(void)buf;
	if (c->closing)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			srv_log(WB_LOG_INFO, "read_failed", "conn=%llu error=%s",
			        (unsigned long long)c->id, uv_err_name((int)nread));
		conn_close(c);
		set->hooks.after(set->hooks.arg, false);
		return;
	}
	if (!c->sniffed || c->tls != NULL) {
		c->raw_len += (size_t)nread;
		if (!c->sniffed && !sniff(c)) {
			set->hooks.after(set->hooks.arg, false);
			return;
		}
		if (c->tls != NULL && !tls_input(c)) {
			set->hooks.after(set->hooks.arg, false);
			return;
		}
	} else {
		c->in_len += (size_t)nread;
	}
	c->bytes_in += (size_t)nread;
	throttle(c, (uint64_t)nread);
	process(c);
	set->hooks.after(set->hooks.arg, false);
}

/* ------------------------------------------------------------ accept */

static void peer_name(struct conn *c)
{
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	char host[48] = "";
	snprintf(c->peer, sizeof(c->peer), "?");
	if (c->local) {
		uv_os_fd_t fd;
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		/* The peer's uid as the kernel saw it at connect(): who the
		 * connection is, for the access decision (conn_peer_uid()). */
		if (uv_fileno(&c->s.handle, &fd) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
			c->peer_uid = (uint32_t)cred.uid;
			c->addr[0] = AF_UNIX;
			memcpy(c->addr + 1, &c->peer_uid, sizeof(c->peer_uid));
			c->addr_len = 1 + sizeof(c->peer_uid);
			snprintf(c->peer, sizeof(c->peer), "unix:uid=%u,pid=%d", (unsigned)cred.uid,
			         (int)cred.pid);
		} else {
			c->local = false; /* no identity: treated as any other peer */
			snprintf(c->peer, sizeof(c->peer), "unix:?");
		}
		return;
	}
	if (uv_tcp_getpeername(&c->s.tcp, (struct sockaddr *)&ss, &sl) != 0)
		return;
	c->loopback = netaddr_is_loopback(&ss);
	c->addr[0] = (uint8_t)ss.ss_family;
	if (ss.ss_family == AF_INET6) {
		memcpy(c->addr + 1, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
		c->addr_len = 17;
	} else if (ss.ss_family == AF_INET) {
		memcpy(c->addr + 1, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		c->addr_len = 5;
	}
	if (ss.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host,
		         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	} else if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host,
		         ntohs(((struct sockaddr_in *)&ss)->sin_port));
	}
}

static void shed_closed_cb(uv_handle_t *h)
{
	struct conns *set = h->data;
	set->shed_busy = false;
	if (set->accept_waiting != NULL) {
		uv_stream_t *listener = set->accept_waiting;
		set->accept_waiting = NULL;
		conns_accept(set, listener);
	}
}

/* No connection could be made for the peer pending on listener: accept it
 * into the spare handle and close it, or wait for that handle. */
static void shed(struct conns *set, uv_stream_t *listener, const char *why)
{
	if (set->shed_busy) {
		set->accept_waiting = listener;
		return;
	}
	srv_log(WB_LOG_WARN, "connection_shed", "reason=%s", why);
	/* uv_tcp_init() and uv_pipe_init() without a socket cannot fail. */
	if (listener->type == UV_NAMED_PIPE)
		uv_pipe_init(set->loop, &set->shed.pipe, 0);
	else
		uv_tcp_init(set->loop, &set->shed.tcp);
	set->shed.handle.data = set;
	set->shed_busy = true;
	(void)uv_accept(listener, &set->shed.stream);
	uv_close(&set->shed.handle, shed_closed_cb);
}

static void half_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

/* How many open connections share c's address, c included; 0 for a
 * Unix peer that is root or this process's own user (the administrator),
 * or an address not known. */
static uint64_t same_address(const struct conn *c)
{
	if (c->addr_len == 0 ||
	    (c->local && (c->peer_uid == 0 || c->peer_uid == (uint32_t)getuid())))
		return 0;
	uint64_t n = 0;
	for (const struct conn *o = c->set->list; o != NULL; o = o->next)
		n += !o->closing && o->addr_len == c->addr_len &&
		     memcmp(o->addr, c->addr, c->addr_len) == 0;
	return n;
}

void conns_accept(struct conns *set, uv_stream_t *listener)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		shed(set, listener, "no_memory");
		return;
	}
	c->set = set;
	c->timer.data = c;
	c->local = listener->type == UV_NAMED_PIPE;
	int rc = c->local ? uv_pipe_init(set->loop, &c->s.pipe, 0)
	                  : uv_tcp_init(set->loop, &c->s.tcp);
	c->s.handle.data = c;
	if (rc != 0) {
		free(c);
		shed(set, listener, uv_err_name(rc));
		return;
	}
	rc = uv_timer_init(set->loop, &c->timer);
	if (rc != 0) {
		uv_close(&c->s.handle, half_closed_cb);
		shed(set, listener, uv_err_name(rc));
		return;
	}
	c->handles_open = 2;
	c->id = ++set->next_id;
	rc = uv_accept(listener, &c->s.stream);
	if (rc != 0) {
		/* libuv has dropped the peer (the accept is no longer pending). */
		srv_log(WB_LOG_WARN, "accept_failed", "error=%s", uv_err_name(rc));
		c->closing = true;
		uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
		uv_close(&c->s.handle, handle_closed_cb);
		return;
	}
	peer_name(c);
	c->next = set->list;
	if (set->list != NULL)
		set->list->prev = c;
	set->list = c;
	set->open++;
	set->accepted++;
	if (!c->local) {
		uv_tcp_nodelay(&c->s.tcp, 1);
		/* The kernel probes a peer that went silent, so that one that
		 * vanished (a crash, a cable) is closed without a request. */
		if (set->lim.tcp_keepalive_s > 0)
			(void)uv_tcp_keepalive(&c->s.tcp, 1, (unsigned)set->lim.tcp_keepalive_s);
	}
	c->born_ms = c->last_frame_ms = c->last_out_ms = c->rate_ms = uv_now(set->loop);
	c->rate_tokens = (int64_t)(set->lim.max_bytes_per_s > set->lim.max_frame + 16
	                                   ? set->lim.max_bytes_per_s
	                                   : set->lim.max_frame + 16);
	arm_idle(c);
	if (set->open > set->lim.max_connections) {
		char msg[160];
		srv_log(WB_LOG_WARN, "connection_refused",
		        "peer=%s reason=max_connections max=%llu", c->peer,
		        (unsigned long long)set->lim.max_connections);
		snprintf(msg, sizeof(msg),
		         "the server has reached its connection limit (%llu, --max-connections); "
		         "retry later",
		         (unsigned long long)set->lim.max_connections);
		refuse_and_close(c, msg);
		return;
	}
	uint64_t same = set->lim.max_connections_per_address > 0 ? same_address(c) : 0;
	if (same > set->lim.max_connections_per_address) {
		char msg[200];
		srv_log(WB_LOG_WARN, "connection_refused",
		        "peer=%s reason=max_connections_per_address max=%llu", c->peer,
		        (unsigned long long)set->lim.max_connections_per_address);
		snprintf(msg, sizeof(msg),
		         "this address has %llu connections open, the most one may "
		         "(--max-connections-per-address); close some or retry later",
		         (unsigned long long)(same - 1));
		refuse_and_close(c, msg);
		return;
	}
	srv_log(WB_LOG_DEBUG, "connected", "conn=%llu peer=%s", (unsigned long long)c->id, c->peer);
	update_reading(c);
}

/* ------------------------------------------------------------ the set */

void conns_foreach(struct conns *set, void (*fn)(void *arg, struct conn *c), void *arg)
{
	for (struct conn *c = set->list; c != NULL; c = c->next)
		if (!c->closing)
			fn(arg, c);
}

struct conn *conns_find(struct conns *set, uint64_t id)
{
	for (struct conn *c = set->list; c != NULL; c = c->next)
		if (c->id == id && !c->closing)
			return c;
	return NULL;
}

void conn_info(const struct conn *c, struct conn_info *out)
{
	uint64_t now = uv_now(c->set->loop);
	*out = (struct conn_info){
	        .id = c->id,
	        .peer = c->peer,
	        .client_name = c->name,
	        .tls = c->tls != NULL,
	        .unix_socket = c->local,
	        .age_ms = now - c->born_ms,
	        .idle_ms = now - c->last_frame_ms,
	        .out_idle_ms = now - c->last_out_ms,
	        .frames = c->frames,
	        .bytes_in = c->bytes_in,
	        .bytes_out = c->bytes_out,
	        .input_buffer = c->mem[CONN_MEM_INPUT],
	        .output_buffer = c->mem[CONN_MEM_OUTPUT],
	        .in_flight = c->holds,
	        .queued_reads = c->mem[CONN_MEM_READS],
	        .writes = c->mem[CONN_MEM_WRITES],
	        .memory = mem_of(c),
	};
}

int conns_init(struct conns **out, uv_loop_t *loop, const struct conn_limits *limits,
               const struct conn_hooks *hooks)
{
	struct conns *set = calloc(1, sizeof(*set));
	if (set == NULL)
		return WB_E_NOMEM;
	set->loop = loop;
	set->lim = *limits;
	set->hooks = *hooks;
	*out = set;
	return 0;
}

void conns_free(struct conns *set)
{
	wb_tls_ctx_unref(set->tls_ctx);
	free(set);
}

void conns_stop_reading(struct conns *set)
{
	set->stopped = true;
	for (struct conn *c = set->list; c != NULL; c = c->next)
		update_reading(c);
}

bool conns_output_pending(const struct conns *set)
{
	for (const struct conn *c = set->list; c != NULL; c = c->next)
		if (c->out_len > 0 || c->out_pending > 0)
			return true;
	return false;
}

void conns_close_all(struct conns *set, bool drop_output)
{
	while (set->list != NULL) {
		if (drop_output) {
			set->list->out_len = 0;
			mem_update(set->list);
		}
		conn_close(set->list);
	}
}

size_t conns_open(const struct conns *set)
{
	return set->open;
}

uint64_t conns_accepted(const struct conns *set)
{
	return set->accepted;
}

struct conn_counters *conns_counters(struct conns *set)
{
	return &set->counters;
}

struct conn_counters *conn_counters(const struct conn *c)
{
	return &c->set->counters;
}
