/* The in-process harness: the real server (or the bare connection layer) on
 * a libuv loop in the test's own thread, and non-blocking clients on real
 * loopback sockets that the test drives between loop turns, as dqlite's
 * test_uv_run_until() does. Every wait is bounded.
 *
 * Clients keep their buffers in fixed arrays: once a request is queued
 * (iclient_queue(), which packs it), sending it and receiving the answer
 * allocate nothing, so an allocation fault armed in between hits the
 * server only. Nothing here asserts: functions return a status and the
 * tests decide. */
#ifndef WB_TEST_INPROC_H
#define WB_TEST_INPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "whizbang.pb-c.h"

struct srv;

/* ---------------------------------------------------------------- the loop */

/* Runs loop (UV_RUN_NOWAIT turns, polling between them) until cond(arg) is
 * true or timeout_ms passed. cond may be NULL: then it runs for timeout_ms.
 * Returns whether cond became true. */
bool loop_run_until(uv_loop_t *loop, bool (*cond)(void *arg), void *arg, int timeout_ms);

/* ---------------------------------------------------------------- clients */

#define ICLIENT_BUF (4u << 20)

struct iclient {
	int fd;
	bool closed; /* the peer closed (EOF or reset) */
	size_t in_len;
	size_t out_len, out_sent;
	uint8_t in[ICLIENT_BUF];
	uint8_t out[ICLIENT_BUF];
};

/* A new client connecting to 127.0.0.1:port (the connect completes during
 * the loop's next turns). NULL when out of memory or sockets. */
struct iclient *iclient_new(int port);

void iclient_free(struct iclient *c);

/* Packs req into c's output (sent by the next loop_run_until()/iclient_*
 * call). 0, or -1 when it does not fit or cannot be packed. */
int iclient_queue(struct iclient *c, const Whizbang__V1__Request *req);

/* Queues raw bytes. */
int iclient_queue_raw(struct iclient *c, const void *bytes, size_t len);

/* Sends what is queued and reads what arrived, without blocking. */
void iclient_io(struct iclient *c);

/* True when a whole frame is buffered or the peer closed. */
bool iclient_ready(const struct iclient *c);

/* Runs loop until a whole frame is buffered on c (0), c is closed
 * (WB_E_CLOSED) or timeout_ms passed (WB_E_TIMEOUT). Allocates nothing. */
int iclient_wait(uv_loop_t *loop, struct iclient *c, int timeout_ms);

/* Takes the first buffered frame: its payload is copied to payload (at
 * most cap bytes; *len is the payload's length). 0, or -1 when no whole
 * frame is buffered or it is larger than cap. */
int iclient_take(struct iclient *c, uint8_t *payload, size_t cap, size_t *len);

/* iclient_wait() and unpacks the frame as a Response (*out, free with
 * whizbang__v1__response__free_unpacked()). 0, WB_E_CLOSED, WB_E_TIMEOUT,
 * or WB_E_IO for bytes that do not decode. */
int iclient_recv(uv_loop_t *loop, struct iclient *c, int timeout_ms, Whizbang__V1__Response **out);

/* Queues req with id and receives responses until the one tagged id (pushes
 * of other ids are skipped). */
int iclient_call(uv_loop_t *loop, struct iclient *c, Whizbang__V1__Request *req, uint64_t id,
                 Whizbang__V1__Response **out);

/* Hello (protocol version 1) with id 1: 0 or the error of iclient_call(),
 * or the server's error code. */
int iclient_hello(uv_loop_t *loop, struct iclient *c);

/* Ping with id and checks the Pong: 0 or an error. */
int iclient_ping(uv_loop_t *loop, struct iclient *c, uint64_t id);

/* ---------------------------------------------------------------- the server */

struct inproc {
	uv_loop_t loop;
	struct srv *srv;
	struct srv_config cfg;
	char dir[64];
	char data_dir[96];
	char port_file[96];
	int port;
	char errmsg[1024]; /* why srv_init() failed */
};

/* Makes a temporary directory and a loop, and fills h->cfg with the
 * defaults, listening on 127.0.0.1:0 with its data and port file in the
 * directory (log level warn). Change h->cfg before inproc_start(). 0 or -1
 * (with the reason on stderr). */
int inproc_prepare(struct inproc *h);

/* srv_init() on h->cfg: 0 (h->port is set), or its error (the reason in
 * h->errmsg). */
int inproc_start(struct inproc *h);

/* srv_shutdown(), runs the loop until it ends (at most timeout_ms), then
 * srv_close(). Returns 0, or -1 when the loop did not end in time. */
int inproc_stop(struct inproc *h, int timeout_ms);

/* Closes the loop (0 when no handle was left open: -1 otherwise) and
 * removes the directory. Safe after a failed inproc_start(). */
int inproc_cleanup(struct inproc *h);

#endif
