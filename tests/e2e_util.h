/* The end-to-end harness: a real whizbangd in a child process, and raw
 * sockets for the tests that must send what libwhizbang never would.
 *
 * Every wait here is bounded. The server child is started with a
 * parent-death signal, so a test process that crashes takes its server with
 * it. The functions return 0 or an error and say why on stderr, and the
 * tests decide; only the suite helpers at the end assert, for the tests
 * that want the common decision made once. */
#ifndef WB_E2E_UTIL_H
#define WB_E2E_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wb.h"
#include "whizbang.pb-c.h"

#define E2E_MAX_EXTRA 16
/* How long a server may take to write its port file, and to exit after
 * SIGTERM, before the harness gives up (and kills it). */
#define E2E_START_TIMEOUT_MS 15000
#define E2E_STOP_TIMEOUT_MS 20000
/* The per-call timeout of the clients the harness makes. */
#define E2E_CLIENT_TIMEOUT_MS 15000

struct e2e_server {
	pid_t pid; /* 0 when not running */
	int port;
	char address[32]; /* "127.0.0.1:PORT" */
	char dir[64];     /* the temporary directory; "" before e2e_start() */
	char data_dir[96];
	char port_file[96];
	char log_file[96];
	char *extra[E2E_MAX_EXTRA + 1]; /* copies of the extra arguments */
};

/* Makes a temporary directory under /tmp, starts $WHIZBANGD on 127.0.0.1
 * port 0 with its data in it (plus extra_args, NULL-terminated, may be NULL)
 * and waits for its port file. The server's stderr goes to DIR/server.log,
 * whose tail is printed when the start fails. Returns 0, or -1 with the
 * reason on stderr (the directory is then kept for e2e_cleanup()). A server
 * started on s before, and stopped, is cleaned up first (e2e_cleanup()). */
int e2e_start(struct e2e_server *s, const char *const *extra_args);

/* Replaces the extra arguments the next e2e_restart() passes. Returns 0, or
 * -1 (too many, no memory). */
int e2e_set_args(struct e2e_server *s, const char *const *extra_args);

/* Starts the server again on the same directory with the same arguments,
 * after e2e_stop() or e2e_kill(). The port changes: s->address is updated. */
int e2e_restart(struct e2e_server *s);

/* Sends SIGTERM and waits for the server to exit. Returns its exit status
 * (0..255), 128 + the signal when a signal ended it, -1 when it did not
 * exit within E2E_STOP_TIMEOUT_MS (it is then killed, and that is
 * reported), or -2 when it exited 0 but its log (all its runs so far) holds
 * a sanitizer report. A non-zero result also prints the log's tail. */
int e2e_stop(struct e2e_server *s);

/* Waits for a server that was sent a stop signal by the test itself
 * (SIGINT, or a SIGTERM in the middle of work) to exit, and reports as
 * e2e_stop() does. A second signal could land after the server has
 * restored the default action, so this one sends none. */
int e2e_wait_exit(struct e2e_server *s);

/* Sends SIGKILL and reaps the server. */
void e2e_kill(struct e2e_server *s);

/* Kills a server still running and removes the directory. Safe to call on
 * a zeroed struct and more than once. */
void e2e_cleanup(struct e2e_server *s);

/* Removes dir and everything below it, as far as it can; symlinks are
 * removed, never followed. Does nothing when dir is "". */
void e2e_remove_tree(const char *dir);

/* For a test that spawns whizbangd itself (with its own environment or
 * file descriptors), the steps e2e_start() is made of: */

/* Makes s's temporary directory and names the data directory, port file
 * and log file in it, starting nothing (s is zeroed first). Returns 0, or -1
 * with the reason on stderr. */
int e2e_prepare(struct e2e_server *s);

/* Run in the child just forked from the test process parent, before it
 * execs whizbangd: the child dies with its parent, reads /dev/null, writes
 * stdout and stderr to logfd and has SIGPIPE's default action back. Makes
 * only async-signal-safe calls. Returns 0, or -1 when the parent is already
 * gone (the child should then _exit). */
int e2e_child_stdio(pid_t parent, int logfd);

/* Waits for the port file of the server s->pid, then sets s->port and
 * s->address. Returns 0, or -1 with the log's tail on stderr when the
 * server exits first (s->pid is then 0) or writes no port file within
 * E2E_START_TIMEOUT_MS (it is then killed). */
int e2e_wait_port(struct e2e_server *s);

/* The port in s's port file, or 0 when there is none (yet). */
int e2e_read_port(const struct e2e_server *s);

/* A blocking TCP connection to 127.0.0.1:port whose reads and writes time
 * out after timeout_s seconds: the socket, or -1 when connect() failed. */
int e2e_loopback_connect(int port, int timeout_s);

/* The metrics port, from PORTFILE.metrics, which whizbangd writes once its
 * HTTP daemon listens (just after the main port file): waits for it up to
 * 15 s, then fails the test. */
int e2e_metrics_port(const struct e2e_server *s);

/* Prints the last lines of the server's log to stderr. */
void e2e_log_tail(const struct e2e_server *s, size_t lines);

/* Counts the log lines that contain needle. */
size_t e2e_log_count(const struct e2e_server *s, const char *needle);

/* The lines of event the server's log says it suppressed: the sum of the
 * counts of its event=log_suppressed of=EVENT lines (log.h), and how many
 * such lines there are in *summaries (may be NULL). */
uint64_t e2e_log_suppressed(const struct e2e_server *s, const char *event, size_t *summaries);

/* Monotonic milliseconds. */
int64_t e2e_now_ms(void);

/* Wall clock microseconds since the epoch. */
uint64_t e2e_wall_us(void);

/* Sleeps ms milliseconds (for pacing, never for synchronisation). */
void e2e_sleep_ms(int ms);

/* Connects a libwhizbang client with name and the harness timeout. Returns
 * NULL (with the reason on stderr) on failure. */
struct wb_client *e2e_client(const struct e2e_server *s, const char *name);

/* Fetches connections_current from GetStats over c: 0 or an error. */
int e2e_connections(struct wb_client *c, uint64_t *out);

/* ---------------------------------------------------------------- $all */

/* A copy of one stored event. */
struct e2e_event {
	uint8_t id[16];
	char stream[256];
	char type[256];
	uint64_t version;
	uint64_t position;
	uint64_t timestamp_us;
	uint8_t *data;
	size_t data_len;
	uint8_t *metadata;
	size_t metadata_len;
};

/* Reads $all forwards from position 1 to its end in pages of page_size
 * (0: the server's limit), optionally filtered, and copies every event into
 * a new array (*out, *n; free with e2e_events_free()). Returns 0 or the
 * client's error. Also fails with WB_INTERNAL (and says why) when a page
 * does not advance. */
#define E2E_BIG_EVENT 16384u
/* Appends mib MiB of events to stream (64 events of E2E_BIG_EVENT bytes an
 * append), more
 * than the sockets' buffers take: what subscribers that do not read are
 * then pushed. Returns 0 or the client's error. */
int e2e_append_mib(struct wb_client *c, const char *stream, unsigned mib);

int e2e_read_all(struct wb_client *c, uint32_t page_size, const char *prefix,
                 const char *const *types, size_t ntypes, struct e2e_event **out, size_t *n);

/* Reads a whole stream forwards the same way. */
int e2e_read_stream(struct wb_client *c, const char *stream, uint32_t page_size,
                    struct e2e_event **out, size_t *n);

void e2e_events_free(struct e2e_event *evs, size_t n);

/* ---------------------------------------------------------------- raw sockets */

/* Connects a blocking TCP socket to the server. Returns the fd or -1. */
int e2e_raw_connect(const struct e2e_server *s);

/* Sends all of buf within timeout_ms. Returns 0, or a negative errno
 * (-ETIMEDOUT, -EPIPE, -ECONNRESET...). */
int e2e_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/* Packs req into a frame (header included); free() it. */
uint8_t *e2e_pack(const Whizbang__V1__Request *req, size_t *len);

/* Packs and sends req. Returns 0 or a negative errno. */
int e2e_send_request(int fd, const Whizbang__V1__Request *req);

/* Reads exactly one frame and unpacks it as a Response within timeout_ms.
 * Returns 0 (*out to free with whizbang__v1__response__free_unpacked()),
 * WB_E_TIMEOUT, WB_E_CLOSED (EOF or reset) or WB_E_IO (bytes that do not
 * decode, or a frame above 64 MiB). */
int e2e_recv_response(int fd, int timeout_ms, Whizbang__V1__Response **out);

/* Reads and discards until the peer closes (EOF or reset): true, or false
 * when it is still open after timeout_ms. */
bool e2e_wait_closed(int fd, int timeout_ms);

/* Sends Hello (protocol version 1) with request id id and waits for a
 * HelloResult. Returns 0 or an error (the server's code when it answered
 * with one). */
int e2e_raw_hello(int fd, uint64_t id);

/* A Request whose body (case UPPER) is msg, in its field lower, with id 0:
 *
 *	Whizbang__V1__Request req = E2E_REQUEST(READ_ALL, read_all, &ra);
 *
 * msg stays the caller's; the Request only points at it. */
#define E2E_REQUEST(UPPER, lower, msg)                                                             \
	((Whizbang__V1__Request){                                                                  \
	        .base = PROTOBUF_C_MESSAGE_INIT(&whizbang__v1__request__descriptor),               \
	        .body_case = WHIZBANG__V1__REQUEST__BODY_##UPPER,                                  \
	        .lower = (msg)})

/* Fills req as a Ping with request id id and nonce; req points at ping,
 * which the caller keeps alive while req is used. */
void e2e_req_ping(Whizbang__V1__Request *req, Whizbang__V1__Ping *ping, uint64_t id,
                  uint64_t nonce);

/* Sends one request with id and returns the response to it (which must come
 * next on this connection). Returns 0 or an e2e_recv_response() error. */
int e2e_raw_call(int fd, Whizbang__V1__Request *req, Whizbang__V1__Response **out);

/* Returns the error code of a response (0 when it carries none). */
int e2e_error_code(const Whizbang__V1__Response *r);

/* ---------------------------------------------------------------- suites */

/* What criterion tests share, made once. These assert: on failure they fail
 * the running test, naming the test's file and line that called them (the
 * macros pass it) and the reason, with the server log's tail on stderr where
 * that says more.
 *
 * Criterion runs each test in its own process, so a suite has one server,
 * e2e_srv, which the e2e_suite_*() forms act on, and which its
 * .fini = e2e_suite_fini removes:
 *
 *	TestSuite(cli, .fini = e2e_suite_fini, .timeout = 120);
 *
 *	Test(cli, ping)
 *	{
 *		struct wb_client *c = e2e_suite_start_client(NULL, "test_cli");
 *		...
 *		wb_close(c);
 *		e2e_suite_stop();
 *	}
 *
 * A test that needs a second server keeps its own struct e2e_server, uses
 * the e2e_*_ok() forms on it, and calls e2e_cleanup() on it in its .fini. */

/* The suite's server. */
extern struct e2e_server e2e_srv;

/* A suite's .fini: kills e2e_srv if it still runs and removes its
 * directory (e2e_cleanup()). */
void e2e_suite_fini(void);

/* e2e_start(s, extra_args); fails the test when the server does not start. */
#define e2e_start_ok(s, extra_args) e2e_start_ok_at((s), (extra_args), __FILE__, __LINE__)
/* e2e_restart(s); fails the test when the server does not start again. */
#define e2e_restart_ok(s) e2e_restart_ok_at((s), __FILE__, __LINE__)
/* Stops s with SIGTERM (e2e_stop()); fails the test unless it exited 0
 * within E2E_STOP_TIMEOUT_MS with no sanitizer report in its log, saying
 * which of those it was not. */
#define e2e_stop_ok(s) e2e_exit_ok_at((s), true, __FILE__, __LINE__)
/* The same for a server the test has signalled itself (e2e_wait_exit()). */
#define e2e_wait_exit_ok(s) e2e_exit_ok_at((s), false, __FILE__, __LINE__)
/* e2e_client(s, name); fails the test when it cannot connect. The caller
 * closes the client with wb_close(). */
#define e2e_client_ok(s, name) e2e_client_ok_at((s), (name), __FILE__, __LINE__)
/* A raw connection to s (e2e_raw_connect()); the caller closes the fd. */
#define e2e_raw_ok(s) e2e_raw_ok_at((s), false, __FILE__, __LINE__)
/* A raw connection to s that has said Hello with request id 1 and had its
 * HelloResult (e2e_raw_hello()); the caller closes the fd. */
#define e2e_raw_hello_ok(s) e2e_raw_ok_at((s), true, __FILE__, __LINE__)

/* The same on e2e_srv. */
#define e2e_suite_start(extra_args) e2e_start_ok(&e2e_srv, (extra_args))
#define e2e_suite_restart() e2e_restart_ok(&e2e_srv)
#define e2e_suite_stop() e2e_stop_ok(&e2e_srv)
#define e2e_suite_wait_exit() e2e_wait_exit_ok(&e2e_srv)
#define e2e_suite_client(name) e2e_client_ok(&e2e_srv, (name))
#define e2e_suite_raw() e2e_raw_ok(&e2e_srv)
#define e2e_suite_raw_hello() e2e_raw_hello_ok(&e2e_srv)
/* The common start of a test: e2e_srv started with extra_args, and a client
 * of it named name. */
#define e2e_suite_start_client(extra_args, name)                                                   \
	(e2e_suite_start(extra_args), e2e_suite_client(name))

/* The common end of such a test: closes the client c and stops e2e_srv,
 * which fails the test unless it exits cleanly (e2e_suite_stop()). */
#define e2e_suite_stop_client(c) (wb_close(c), e2e_suite_stop())

/* A TCP socket bound to an ephemeral port on 127.0.0.1 (close-on-exec),
 * listening when listening is true; *port receives the port. Fails the test
 * when the socket cannot be made. For a test that needs a port nothing
 * answers on, a peer that never answers, or a socket to hand to whizbangd. */
int e2e_loopback_socket(bool listening, int *port);

/* What the macros above call; file and line name the caller. */
void e2e_start_ok_at(struct e2e_server *s, const char *const *extra_args, const char *file,
                     int line);
void e2e_restart_ok_at(struct e2e_server *s, const char *file, int line);
void e2e_exit_ok_at(struct e2e_server *s, bool send_sigterm, const char *file, int line);
struct wb_client *e2e_client_ok_at(const struct e2e_server *s, const char *name, const char *file,
                                   int line);
int e2e_raw_ok_at(const struct e2e_server *s, bool hello, const char *file, int line);

#endif
