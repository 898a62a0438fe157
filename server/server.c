/* The server's core (server.h): start-up, the listener, the writer bridge,
 * the module table, signals and shutdown.
 *
 * Happy path: srv_init() opens the store, sets each module up in table order
 * (the lease module recovers the ledger here, before anyone can connect),
 * starts the writer thread and listens. Connections are accepted by the
 * connection layer (conn.c), whose frames go to dispatch.c and from there to
 * the modules. A module's write is a srv_op handed to the writer; when its
 * batch is durable the writer wakes the loop (async_cb), which runs each
 * op's done callback, lets every module pump (subscriptions push what the
 * batch made readable), and flushes.
 *
 * Failure modes: a set-up step that fails unwinds the steps before it and
 * says why in errmsg. SIGTERM/SIGINT: stop listening and reading, let every
 * module answer what waits, let the writer finish what it holds and send
 * those answers, then close every connection and handle so that uv_run()
 * returns. After --shutdown-timeout-ms undelivered answers are dropped and
 * every connection still open is closed (a client that stopped reading
 * cannot hold the loop open); the writer still commits what it holds before
 * the store closes (srv_close()). */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "auth/acl.h"
#include "dispatch.h"
#include "tls/wb_tls.h"
#include "events.h"
#include "log.h"
#include "netaddr.h"
#include "systemd.h"
#include "wal.h"
#include "wb_error.h"
#include "wb_version.h"

/* The modules, in set-up order; closed in reverse. */
static const struct srv_module *const modules[] = {
        &srv_quota_module, &srv_events_module,   &srv_lease_module,  &srv_proj_module,
        &srv_sub_module,   &srv_consumer_module, &srv_backup_module, &srv_metrics_module,
        &srv_auth_module,  &srv_clients_module,
};
#define NMODULES (sizeof(modules) / sizeof(modules[0]))
_Static_assert(NMODULES <= CONN_SLOTS, "each module has a connection slot");

struct srv {
	/* The subject of connections that did not authenticate (dispatch_env). */
	const struct auth_role *anon_role[1];
	struct auth_subject anon;
	/* The subject of trusted Unix socket peers (dispatch_env.local_admin). */
	const struct auth_role *admin_role[1];
	struct auth_subject local_admin;
	uv_loop_t *loop;
	struct srv_config cfg;
	struct storage *st;
	struct wal *wal; /* log mode; NULL in sync mode */
	struct writer *writer;
	struct conns *conns;
	struct dispatch *dispatch;
	void *states[NMODULES];
	size_t modules_up; /* modules whose init succeeded */
	uv_tcp_t listener;
	bool listener_open;
	/* The Unix domain socket listener (unix-socket), and the name it
	 * bound, removed when it closes. */
	uv_pipe_t local;
	bool local_open;
	char local_path[CONFIG_UNIX_PATH_MAX + 1];
	uv_async_t async;
	pthread_mutex_t async_mu;
	bool async_closed;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	uv_signal_t sighup;   /* reloads the TLS certificate */
	time_t tls_not_after; /* of the certificate served; 0: no TLS */
	uv_timer_t shutdown_timer;
	/* Writes the log's summaries of suppressed lines that are due (log.h),
	 * so that a flood's count is logged even when the flood stops. */
	uv_timer_t log_timer;
	struct sysd *sysd;
	size_t inflight; /* writes at the writer and worker jobs */
	uint64_t start_ms;
	uint32_t max_event_size;
	uint64_t next_subscription_id;
	bool shutting_down;
	bool ready;
	bool handles_closed;
};

/* ------------------------------------------------------------ accessors */

void *srv_module_state(const struct srv *srv, const struct srv_module *m)
{
	for (size_t i = 0; i < srv->modules_up; i++)
		if (modules[i] == m)
			return srv->states[i];
	return NULL;
}

uv_loop_t *srv_loop(const struct srv *srv)
{
	return srv->loop;
}

const struct srv_config *srv_config(const struct srv *srv)
{
	return &srv->cfg;
}

struct storage *srv_storage(const struct srv *srv)
{
	return srv->st;
}

bool srv_shutting_down(const struct srv *srv)
{
	return srv->shutting_down;
}

bool srv_ready(const struct srv *srv)
{
	return srv->ready && !srv->shutting_down;
}

uint32_t srv_max_event_size(const struct srv *srv)
{
	return srv->max_event_size;
}

uint32_t srv_clamp_count(const struct srv *srv, uint32_t asked)
{
	if (asked == 0 || asked > srv->cfg.max_read_count)
		return (uint32_t)srv->cfg.max_read_count;
	return asked;
}

size_t srv_page_budget(const struct srv *srv)
{
	return srv->cfg.max_frame - SRV_READ_ENVELOPE;
}

uint64_t srv_new_subscription_id(struct srv *srv)
{
	return ++srv->next_subscription_id;
}

uint64_t srv_wall_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

struct conn_counters *srv_counters(struct srv *srv)
{
	return conns_counters(srv->conns);
}

void srv_identity(const struct srv *srv, const struct conn *c, char key[SRV_IDENTITY_MAX])
{
	const char *user = srv_auth_user(srv, c);
	if (user != NULL) {
		snprintf(key, SRV_IDENTITY_MAX, "user:%s", user);
		return;
	}
	const char *peer = conn_peer(c);
	const char *colon = strrchr(peer, ':');
	/* HOST of HOST:PORT; of "unix:uid=U,pid=P", the uid. */
	size_t n = strncmp(peer, "unix:", 5) == 0 ? strcspn(peer, ",")
	           : colon == NULL                ? strlen(peer)
	                                          : (size_t)(colon - peer);
	snprintf(key, SRV_IDENTITY_MAX, "addr:%.*s", (int)n, peer);
}

bool srv_conn_is_admin(const struct conn *c)
{
	const struct auth_subject *s = conn_subject(c);
	const struct auth_role *admin = auth_builtin_role("admin");
	for (size_t i = 0; s != NULL && i < s->nroles; i++)
		if (s->roles[i] == admin)
			return true;
	return false;
}

struct conns *srv_conns(struct srv *srv)
{
	return srv->conns;
}

void srv_writer_stats(const struct srv *srv, struct writer_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (srv->writer != NULL)
		writer_get_stats(srv->writer, out);
}

/* --memory-budget, or 0 for an eighth of the machine's memory (at least
 * 256 MiB). */
static uint64_t memory_budget(const struct srv_config *cfg)
{
	if (cfg->memory_budget != 0)
		return cfg->memory_budget;
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
	uint64_t mem = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
	return mem / 8 > (256ull << 20) ? mem / 8 : 256ull << 20;
}

void srv_fill_stats(struct srv *srv, Whizbang__V1__ServerStats *s)
{
	struct writer_stats ws;
	struct storage_stats ss;
	struct storage_txn *txn;
	uint64_t last = 0;

	srv_writer_stats(srv, &ws);
	if (srv->tls_not_after != 0) {
		s->tls = true;
		s->tls_cert_days_left = ((int64_t)srv->tls_not_after - (int64_t)time(NULL)) / 86400;
	}
	memset(&ss, 0, sizeof(ss));
	storage_stats(srv->st, &ss);
	if (storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn) == 0) {
		ev_last_position(txn, &last);
		storage_txn_abort(txn);
	}
	s->server_version = (char *)WB_VERSION;
	s->log_lines_suppressed = log_suppressed_total();
	s->uptime_ms = uv_now(srv->loop) - srv->start_ms;
	s->connections_current = conns_open(srv->conns);
	s->output_buffered = conns_output_held(srv->conns);
	struct conns_memory mem;
	conns_memory(srv->conns, &mem);
	s->memory_budget = mem.budget;
	s->output_budget = mem.budget; /* its name before --memory-budget */
	s->memory_held = mem.held;
	s->memory_input = mem.by_kind[CONN_MEM_INPUT];
	s->memory_output = mem.by_kind[CONN_MEM_OUTPUT];
	s->memory_queued_reads = mem.by_kind[CONN_MEM_READS];
	s->memory_writes = mem.by_kind[CONN_MEM_WRITES];
	s->memory_consumers = mem.shared;
	s->memory_pauses = mem.pauses;
	s->memory_disconnects = mem.disconnects;
	s->throttled = conns_throttled(srv->conns);
	s->connections_total = conns_accepted(srv->conns);
	s->requests_total = conns_counters(srv->conns)->requests_total;
	s->errors_total = conns_counters(srv->conns)->errors_total;
	s->batches = ws.batches;
	s->batch_requests = ws.ops;
	s->commit_us_total = ws.commit_us_total;
	s->batch_requests_max = ws.ops_max;
	s->last_position = last;
	s->map_size = ss.map_size;
	s->map_used = ss.used_bytes;
	s->map_grow_count = ss.grow_count;
	for (size_t i = 0; i < srv->modules_up; i++)
		if (modules[i]->stats != NULL)
			modules[i]->stats(srv->states[i], s);
}

/* ------------------------------------------------------------ shutdown */

static void close_handle_cb(uv_handle_t *h)
{
	(void)h;
}

static void local_close(struct srv *srv);

/* Closes the server's own handles once nothing is in flight and every
 * answer is written, which lets uv_run() return. */
static void shutdown_check(struct srv *srv)
{
	if (!srv->shutting_down || srv->inflight > 0 || srv->handles_closed)
		return;
	if (conns_output_pending(srv->conns))
		return;
	conns_close_all(srv->conns, false);
	srv->handles_closed = true;
	pthread_mutex_lock(&srv->async_mu);
	srv->async_closed = true;
	pthread_mutex_unlock(&srv->async_mu);
	uv_close((uv_handle_t *)&srv->async, close_handle_cb);
	uv_close((uv_handle_t *)&srv->sigterm, close_handle_cb);
	uv_close((uv_handle_t *)&srv->sigint, close_handle_cb);
	uv_close((uv_handle_t *)&srv->sighup, close_handle_cb);
	uv_close((uv_handle_t *)&srv->shutdown_timer, close_handle_cb);
	uv_close((uv_handle_t *)&srv->log_timer, close_handle_cb);
}

void srv_flush(struct srv *srv)
{
	conns_flush(srv->conns);
	shutdown_check(srv);
}

static void shutdown_timeout_cb(uv_timer_t *t)
{
	struct srv *srv = t->data;
	srv_log(WB_LOG_WARN, "shutdown_timeout", "inflight=%zu connections=%zu", srv->inflight,
	        conns_open(srv->conns));
	/* Writes still queued are dropped and every connection is closed: a
	 * client that stopped reading would otherwise hold a write in flight,
	 * and the loop, open for ever. What is still with the writer is
	 * finished by srv_close() before the store closes. */
	srv->inflight = 0;
	conns_close_all(srv->conns, true);
	shutdown_check(srv);
}

/* A keepalive to c when the server has sent it nothing for
 * --keepalive-interval: Response{id 0, pong{nonce 0}}, which clients skip,
 * so that a subscriber on a quiet log can tell a live server from a dead
 * one, and the server's writes find a peer that vanished. */
static void keepalive_one(void *arg, struct conn *c)
{
	struct srv *srv = arg;
	struct conn_info ci;
	conn_info(c, &ci);
	if (!conn_greeted(c) || ci.out_idle_ms < srv->cfg.keepalive_ms)
		return;
	Whizbang__V1__Pong pong = WHIZBANG__V1__PONG__INIT;
	SRV_REPLY(c, 0, PONG, pong, &pong);
}

static void log_timer_cb(uv_timer_t *t)
{
	struct srv *srv = t->data;
	log_flush_summaries(false);
	if (srv->cfg.keepalive_ms > 0 && !srv->shutting_down) {
		conns_foreach(srv->conns, keepalive_one, srv);
		srv_flush(srv);
	}
}

static void modules_shutdown(struct srv *srv)
{
	for (size_t i = 0; i < srv->modules_up; i++)
		if (modules[i]->shutdown != NULL)
			modules[i]->shutdown(srv->states[i]);
}

static void shutdown_begin(struct srv *srv, int signum)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	srv->ready = false;
	srv_log(WB_LOG_INFO, "shutting_down", "signal=%d connections=%zu inflight=%zu", signum,
	        conns_open(srv->conns), srv->inflight);
	if (srv->listener_open) {
		uv_close((uv_handle_t *)&srv->listener, close_handle_cb);
		srv->listener_open = false;
	}
	local_close(srv);
	conns_stop_reading(srv->conns);
	sysd_stopping(&srv->sysd);
	modules_shutdown(srv);
	uv_timer_start(&srv->shutdown_timer, shutdown_timeout_cb, srv->cfg.shutdown_timeout_ms, 0);
	srv_flush(srv);
}

/* Builds the TLS context from the configured files and serves it from now
 * on (start-up, SIGHUP): new connections get the new certificate, open ones
 * keep the context they began with. Without a certificate set, nothing. On
 * failure the context served so far stays, and errmsg says why. */
static int tls_load(struct srv *srv, char *errmsg, size_t errlen)
{
	const struct srv_config *cfg = &srv->cfg;
	if (cfg->tls_cert_file[0] == '\0')
		return 0;
	struct wb_tls_config tc = {
	        .role = WB_TLS_SERVER,
	        .cert_file = cfg->tls_cert_file,
	        .key_file = cfg->tls_key_file,
	        .ca_file = cfg->tls_ca_file[0] != '\0' ? cfg->tls_ca_file : NULL,
	        .client_cert = strcmp(cfg->tls_client_cert, "required") == 0
	                               ? WB_TLS_CLIENT_CERT_REQUIRED
	                       : strcmp(cfg->tls_client_cert, "optional") == 0
	                               ? WB_TLS_CLIENT_CERT_OPTIONAL
	                               : WB_TLS_CLIENT_CERT_NONE,
	};
	struct wb_tls_ctx *ctx;
	char why[400];
	int rc = wb_tls_ctx_new(&tc, &ctx, why, sizeof(why));
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot load the TLS certificate: %s", why);
		return rc;
	}
	conns_set_tls(srv->conns, ctx);
	srv->tls_not_after = wb_tls_ctx_not_after(ctx);
	wb_tls_ctx_unref(ctx);
	srv_log(WB_LOG_INFO, "tls_loaded", "cert=%s not_after=%lld client_cert=%s policy=%s",
	        cfg->tls_cert_file, (long long)srv->tls_not_after, cfg->tls_client_cert, cfg->tls);
	return 0;
}

int srv_reload(struct srv *srv, int64_t *tls_not_after, char *errmsg, size_t errlen)
{
	*tls_not_after = srv->tls_not_after;
	if (srv->cfg.tls_cert_file[0] == '\0') {
		srv_log(WB_LOG_INFO, "reload", "what=nothing reason=no_tls_certificate");
		return 0;
	}
	int rc = tls_load(srv, errmsg, errlen);
	for (size_t i = 0; rc == 0 && i < srv->modules_up; i++)
		if (modules[i]->reload != NULL)
			rc = modules[i]->reload(srv->states[i], errmsg, errlen);
	if (rc != 0)
		srv_log(WB_LOG_ERROR, "reload_failed",
		        "reason=\"%s\" (the certificate served so far stays)", errmsg);
	*tls_not_after = srv->tls_not_after;
	return rc;
}

static void sighup_cb(uv_signal_t *s, int signum)
{
	char why[500];
	int64_t not_after;
	(void)signum;
	(void)srv_reload(s->data, &not_after, why, sizeof(why));
}

static void signal_cb(uv_signal_t *s, int signum)
{
	shutdown_begin(s->data, signum);
}

void srv_shutdown(struct srv *srv)
{
	shutdown_begin(srv, 0);
}

/* ------------------------------------------------------------ the writer bridge */

void srv_submit(struct srv *srv, struct srv_op *op)
{
	/* What the write carries is held for its connection until it is
	 * durable: the memory budget counts it. */
	op->held = op->base.size_hint;
	if (op->conn != NULL) {
		conn_hold(op->conn);
		conn_mem_add(op->conn, CONN_MEM_WRITES, (int64_t)op->held);
	}
	srv->inflight++;
	writer_submit(srv->writer, &op->base);
}

/* Answers an op that came back from the writer, then lets its connection
 * go on (or be freed). */
static void op_done(struct srv *srv, struct srv_op *op)
{
	struct conn *c = op->conn;
	/* A shutdown that timed out has stopped counting. */
	if (srv->inflight > 0)
		srv->inflight--;
	if (c != NULL)
		conn_mem_add(c, CONN_MEM_WRITES, -(int64_t)op->held);
	op->done(srv, op);
	if (c != NULL)
		conn_release(c);
}

void srv_work_begin(struct srv *srv, struct conn *c)
{
	conn_hold(c);
	srv->inflight++;
}

void srv_work_done(struct srv *srv, struct conn *c)
{
	if (srv->inflight > 0)
		srv->inflight--;
	conn_release(c);
	srv_flush(srv);
}

static void pump_all(struct srv *srv)
{
	for (size_t i = 0; i < srv->modules_up; i++)
		if (modules[i]->pump != NULL)
			modules[i]->pump(srv->states[i]);
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
	/* What the batch made readable may be pushed now. */
	pump_all(srv);
	srv_flush(srv);
}

/* ------------------------------------------------------------ connections */

static bool admit_hook(void *arg, struct conn *c, uint32_t len)
{
	return srv_quota_admit(arg, c, len);
}

static void frame_hook(void *arg, struct conn *c, const uint8_t *payload, uint32_t len)
{
	struct srv *srv = arg;
	dispatch_frame(srv->dispatch, c, payload, len);
}

static void refuse_hook(void *arg, struct conn *c, int code, const char *msg)
{
	(void)arg;
	srv_error(c, 0, code, "%s", msg);
}

static void closed_hook(void *arg, struct conn *c)
{
	struct srv *srv = arg;
	for (size_t i = 0; i < srv->modules_up; i++)
		if (modules[i]->conn_closed != NULL)
			modules[i]->conn_closed(srv->states[i], c);
}

void srv_conn_figures(struct srv *srv, const struct conn *c, Whizbang__V1__ClientInfo *info)
{
	for (size_t i = 0; i < srv->modules_up; i++)
		if (modules[i]->conn_figures != NULL)
			modules[i]->conn_figures(srv->states[i], c, info);
}

/* An idle connection that holds a subscription, a lease or a consumer
 * membership stays open. */
static bool busy_hook(void *arg, const struct conn *c)
{
	Whizbang__V1__ClientInfo info = WHIZBANG__V1__CLIENT_INFO__INIT;
	srv_conn_figures(arg, c, &info);
	return info.subscriptions + info.leases + info.consumers > 0;
}

static void after_hook(void *arg, bool drained)
{
	struct srv *srv = arg;
	/* Output drained: pushes that waited for room may go on. */
	if (drained)
		pump_all(srv);
	srv_flush(srv);
}

static int env_greeted(void *arg, struct conn *c, char *msg, size_t msglen)
{
	return srv_quota_hello(arg, c, msg, msglen);
}

static void env_refused(void *arg, struct conn *c)
{
	srv_quota_refused(arg, c);
}

static void env_after(void *arg)
{
	srv_flush(arg);
}

static bool env_shutting_down(void *arg)
{
	return srv_shutting_down(arg);
}

static void env_stats(void *arg, Whizbang__V1__ServerStats *s)
{
	srv_fill_stats(arg, s);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct srv *srv = listener->data;
	if (status < 0) {
		srv_log(WB_LOG_WARN, "accept_failed", "error=%s", uv_err_name(status));
		return;
	}
	conns_accept(srv->conns, listener);
}

/* ------------------------------------------------------------ start, stop */

/* Closes the handles set up so far (NULL: not set up) and lets their close
 * callbacks run. */
static void close_now(uv_loop_t *loop, uv_handle_t *const *handles, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (handles[i] != NULL)
			uv_close(handles[i], NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void modules_close(struct srv *srv)
{
	while (srv->modules_up > 0) {
		size_t i = --srv->modules_up;
		if (modules[i]->close != NULL)
			modules[i]->close(srv->states[i]);
		free(srv->states[i]);
		srv->states[i] = NULL;
	}
}

/* Binds the listener to cfg->listen (or takes systemd's socket) and listens.
 * Writes "host:port" into name. */
static int listen_on(struct srv *srv, const struct sockaddr_storage *addr, char *name,
                     size_t namelen, char *errmsg, size_t errlen)
{
	int rc = uv_tcp_init(srv->loop, &srv->listener);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot make the listener: %s", uv_strerror(rc));
		return WB_E_IO;
	}
	srv->listener.data = srv;
	srv->listener_open = true;
	/* Socket activation: systemd's socket, else our own. */
	int passed = sysd_listen_fd();
	if (passed >= 0)
		rc = uv_tcp_open(&srv->listener, passed);
	else
		rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot listen on %s: %s", srv->cfg.listen,
		         uv_strerror(rc));
		return WB_E_IO;
	}
	int port = netaddr_local(&srv->listener, name, namelen);
	if (srv->cfg.port_file[0] != '\0' &&
	    netaddr_write_port_file(srv->cfg.port_file, port, errmsg, errlen) != 0)
		return WB_E_IO;
	return 0;
}

/* Closes the Unix socket listener, if open, and removes its name so that no
 * client connects to a server that is gone. */
static void local_close(struct srv *srv)
{
	if (!srv->local_open)
		return;
	uv_close((uv_handle_t *)&srv->local, close_handle_cb);
	srv->local_open = false;
	(void)unlink(srv->local_path);
}

/* Listens on the Unix domain socket unix-socket names as well. A socket
 * left there by a server that is gone is replaced (the store's lock, taken
 * before, keeps a second server of this data directory from getting here);
 * any other file there stops the start. The socket is 0660: the access
 * decision is by the peer's uid (conn_peer_uid()), the mode keeps other
 * users from even connecting. "auto" with a data directory whose path is
 * too long for a socket's name listens on no socket, with a warning. */
static int listen_local(struct srv *srv, char *errmsg, size_t errlen)
{
	const char *opt = srv->cfg.unix_socket;
	if (strcmp(opt, "off") == 0)
		return 0;
	int n = strcmp(opt, "auto") == 0
	                ? snprintf(srv->local_path, sizeof(srv->local_path), "%s/whizbangd.sock",
	                           srv->cfg.data_dir)
	                : snprintf(srv->local_path, sizeof(srv->local_path), "%s", opt);
	if (n < 0 || (size_t)n >= sizeof(srv->local_path)) {
		srv->local_path[0] = '\0';
		if (strcmp(opt, "auto") == 0) {
			srv_log(WB_LOG_WARN, "unix_socket_off",
			        "reason=path_too_long data_dir=%s max=%u", srv->cfg.data_dir,
			        CONFIG_UNIX_PATH_MAX);
			return 0;
		}
		snprintf(errmsg, errlen, "unix-socket %s is too long for a socket's name", opt);
		return WB_E_INVAL;
	}
	struct stat st;
	if (lstat(srv->local_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(errmsg, errlen,
			         "unix-socket %s exists and is not a socket: remove it or choose "
			         "another path",
			         srv->local_path);
			return WB_E_INVAL;
		}
		(void)unlink(srv->local_path);
	}
	int rc = uv_pipe_init(srv->loop, &srv->local, 0);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot make the Unix socket listener: %s",
		         uv_strerror(rc));
		return WB_E_IO;
	}
	srv->local.data = srv;
	srv->local_open = true;
	rc = uv_pipe_bind(&srv->local, srv->local_path);
	if (rc == 0 && chmod(srv->local_path, 0660) != 0)
		rc = uv_translate_sys_error(errno);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->local, 511, on_connection);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot listen on the Unix socket %s: %s", srv->local_path,
		         uv_strerror(rc));
		return WB_E_IO;
	}
	return 0;
}

/* ------------------------------------------------------------ the log */

/* Applies a record at start-up replay through the module that wrote it. */
static int replay_record(struct storage_txn *txn, uint16_t type, uint16_t version,
                         const uint8_t *rec, size_t len)
{
	for (size_t i = 0; i < NMODULES; i++)
		for (size_t j = 0; j < modules[i]->nrecords; j++) {
			const struct srv_record *r = &modules[i]->records[j];
			if (r->type != type)
				continue;
			if (version > r->version)
				return WB_E_CORRUPT; /* written by a newer build */
			return r->apply(txn, version, rec, len);
		}
	return WB_E_CORRUPT;
}

/* The writer's fail-stop: a durable record that cannot be applied, or a sync
 * that failed, ends the process; the restart replays the log. */
static void writer_fatal(const char *what, int code)
{
	srv_log(WB_LOG_ERROR, "writer_fatal", "what=\"%s\" error=%s", what, wb_error_name(code));
	abort();
}

/* Log mode: opens the log and replays what the checkpoint does not cover. */
static int open_log(const struct srv_config *cfg, struct storage *st, struct wal **out,
                    char *errmsg, size_t errlen)
{
	char dir[sizeof(cfg->data_dir) + 8];
	snprintf(dir, sizeof(dir), "%s/wal", cfg->data_dir);
	struct wal_options wo = {
	        .dir = dir,
	        .segment_size = cfg->wal_segment_size,
	        .spare_segments = (unsigned)cfg->wal_spare_segments,
	};
	struct wal_open_info info;
	struct wal *wal;
	uint64_t applied = storage_checkpoint_applied(st);
	uint64_t t0 = uv_hrtime(), n = 0;
	int rc = writer_open_log(st, &wo, replay_record, &wal, &info, &n, errmsg, errlen);
	if (rc != 0)
		return rc;
	if (info.cut_bytes > 0)
		srv_log(WB_LOG_WARN, "log_tail_cut",
		        "segment=%s offset=%llu bytes=%llu reason=\"an unsynced batch, never "
		        "acknowledged\"",
		        info.cut_segment, (unsigned long long)info.cut_offset,
		        (unsigned long long)info.cut_bytes);
	srv_log(WB_LOG_INFO, "log_replayed",
	        "checkpoint=%llu records=%llu last=%llu ms=%llu segments=%u",
	        (unsigned long long)applied, (unsigned long long)n,
	        (unsigned long long)wal_last_seq(wal),
	        (unsigned long long)((uv_hrtime() - t0) / 1000000u), info.segments);
	*out = wal;
	return 0;
}

/* True when dir holds a store last run in log mode (its checkpoint file). */
static bool ran_in_log_mode(const char *dir)
{
	char path[1100];
	snprintf(path, sizeof(path), "%s/checkpoint", dir);
	return access(path, F_OK) == 0;
}

/* Removes what log mode kept beside the store once everything is applied
 * and synced: the log's segments and the checkpoint file. */
static int drop_log(const struct srv_config *cfg, char *errmsg, size_t errlen)
{
	char path[sizeof(cfg->data_dir) + 300];
	snprintf(path, sizeof(path), "%s/wal", cfg->data_dir);
	DIR *d = opendir(path);
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			char f[sizeof(path) + 300];
			snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
			unlink(f);
		}
		closedir(d);
		rmdir(path);
	}
	snprintf(path, sizeof(path), "%s/checkpoint", cfg->data_dir);
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(errmsg, errlen, "cannot remove %s: %s", path, strerror(errno));
		return WB_E_IO;
	}
	int fd = open(cfg->data_dir, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int srv_open_store(const struct srv_config *cfg, struct storage **st, struct wal **wal,
                   char *errmsg, size_t errlen)
{
	bool log_mode = strcmp(cfg->durability, "log") == 0;
	struct storage_options so = {
	        .path = cfg->data_dir,
	        .map_size = cfg->map_size,
	        .log_mode = log_mode,
	        .unsafe_no_pin = cfg->unsafe_no_checkpoint_pin,
	        .unsafe_no_restore = cfg->unsafe_no_meta_restore,
	};
	struct storage *s;
	struct wal *w = NULL;
	int rc;
	if (!log_mode && ran_in_log_mode(cfg->data_dir)) {
		/* Recover it as log mode would, then leave nothing of the log
		 * behind: from here every commit is synced by itself. */
		so.log_mode = true;
		rc = storage_open(&s, &so, errmsg, errlen);
		if (rc != 0)
			return rc;
		rc = open_log(cfg, s, &w, errmsg, errlen);
		if (rc == 0)
			rc = writer_checkpoint_now(s, w, errmsg, errlen);
		wal_close(w);
		storage_close(s);
		if (rc == 0)
			rc = drop_log(cfg, errmsg, errlen);
		if (rc != 0)
			return rc;
		srv_log(WB_LOG_INFO, "log_mode_left", "data_dir=%s", cfg->data_dir);
		so.log_mode = false;
		w = NULL;
	}
	rc = storage_open(&s, &so, errmsg, errlen);
	if (rc != 0)
		return rc;
	if (log_mode) {
		rc = open_log(cfg, s, &w, errmsg, errlen);
		if (rc != 0) {
			storage_close(s);
			return rc;
		}
	}
	*st = s;
	*wal = w;
	return 0;
}

int srv_init(struct srv **out, uv_loop_t *loop, const struct srv_config *cfg, char *errmsg,
             size_t errlen)
{
	struct sockaddr_storage addr;
	int rc;

	if (netaddr_parse("listen", cfg->listen, &addr, errmsg, errlen) != 0)
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

	bool log_mode = strcmp(cfg->durability, "log") == 0;
	rc = srv_open_store(cfg, &srv->st, &srv->wal, errmsg, errlen);
	if (rc != 0)
		goto err_after_alloc;
	/* What the replay left is in the log; whether start-up writes more. */
	struct storage_stats replayed = {0};
	int replayed_rc = storage_stats(srv->st, &replayed);
	struct conn_limits lim = {
	        .max_frame = cfg->max_frame,
	        .max_unauth_frame = cfg->max_unauth_frame,
	        .max_output = cfg->max_output,
	        .max_inflight = cfg->max_inflight,
	        .frame_timeout_ms = cfg->frame_timeout_ms,
	        .max_connections = cfg->max_connections,
	        .max_connections_per_address = cfg->max_connections_per_address,
	        .max_bytes_per_s = cfg->max_bytes_per_s,
	        .tls_policy = strcmp(cfg->tls, "required") == 0 ? CONN_TLS_REQUIRED
	                      : strcmp(cfg->tls, "off") == 0    ? CONN_TLS_OFF
	                                                        : CONN_TLS_AUTO,
	        .tls_handshake_timeout_ms = cfg->tls_handshake_timeout_ms,
	        .idle_timeout_ms = cfg->idle_timeout_ms,
	        .memory_budget = memory_budget(cfg),
	        .push_buffer = cfg->push_buffer,
	        .tcp_keepalive_s = (cfg->tcp_keepalive_ms + 999) / 1000,
	};
	struct conn_hooks hooks = {
	        .arg = srv,
	        .frame = frame_hook,
	        .admit = admit_hook,
	        .refuse = refuse_hook,
	        .closed = closed_hook,
	        .after = after_hook,
	        .busy = busy_hook,
	};
	rc = conns_init(&srv->conns, loop, &lim, &hooks);
	if (rc != 0) {
		snprintf(errmsg, errlen, "out of memory");
		goto err_after_storage;
	}
	rc = tls_load(srv, errmsg, errlen);
	if (rc != 0) {
		conns_free(srv->conns);
		goto err_after_storage;
	}
	for (size_t i = 0; i < NMODULES; i++) {
		srv->states[i] = calloc(1, modules[i]->size);
		if (srv->states[i] == NULL) {
			snprintf(errmsg, errlen, "out of memory");
			rc = WB_E_NOMEM;
			goto err_after_modules;
		}
		rc = modules[i]->init != NULL
		             ? modules[i]->init(srv->states[i], srv, (unsigned)i, errmsg, errlen)
		             : 0;
		if (rc != 0) {
			free(srv->states[i]);
			srv->states[i] = NULL;
			goto err_after_modules;
		}
		srv->modules_up++;
	}
	struct dispatch_env env = {
	        .arg = srv,
	        .max_frame = cfg->max_frame,
	        .max_read_count = cfg->max_read_count,
	        .max_append_events = cfg->max_append_events,
	        .max_event_size = srv->max_event_size,
	        .shutting_down = env_shutting_down,
	        .stats = env_stats,
	        .loop = loop,
	        .after = env_after,
	        .max_query_bytes = cfg->max_query_bytes,
	        .greeted = env_greeted,
	        .refused = env_refused,
	};
	srv->anon_role[0] = auth_builtin_role(cfg->anonymous_role);
	if (srv->anon_role[0] != NULL) {
		srv->anon.roles = srv->anon_role;
		srv->anon.nroles = 1;
		env.anonymous = &srv->anon;
	}
	srv->admin_role[0] = auth_builtin_role("admin");
	srv->local_admin.roles = srv->admin_role;
	srv->local_admin.nroles = 1;
	env.local_admin = &srv->local_admin;
	env.service_uid = (uint32_t)geteuid();
	rc = dispatch_init(&srv->dispatch, &env, modules, srv->states, NMODULES, errmsg, errlen);
	if (rc != 0)
		goto err_after_modules;

	rc = uv_async_init(loop, &srv->async, async_cb);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot make the writer's wake-up: %s", uv_strerror(rc));
		rc = WB_E_IO;
		goto err_after_dispatch;
	}
	srv->async.data = srv;
	pthread_mutex_init(&srv->async_mu, NULL);
	struct writer_log wlog = {
	        .wal = srv->wal,
	        .checkpoint_bytes = cfg->checkpoint_bytes,
	        .checkpoint_growth = cfg->checkpoint_growth,
	        .checkpoint_ms = cfg->checkpoint_interval_ms,
	        .unsafe_ack_before_sync = cfg->unsafe_ack_before_sync,
	        .fatal = writer_fatal,
	};
	struct storage_stats now = {0};
	int now_rc = storage_stats(srv->st, &now);
	if (log_mode &&
	    (replayed_rc != 0 || now_rc != 0 || now.last_txn_id != replayed.last_txn_id)) {
		/* Start-up wrote outside the log (restart gaps), or may have:
		 * make it durable before anyone can read it. What the replay
		 * applied needs no checkpoint here: the log holds it, and the
		 * writer takes the next one in the background. */
		rc = writer_checkpoint_now(srv->st, srv->wal, errmsg, errlen);
		if (rc != 0)
			goto err_after_async;
	}
	rc = writer_start(&srv->writer, srv->st, log_mode ? &wlog : NULL, writer_notify, srv);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot start the writer thread: %s", wb_strerror(rc));
		goto err_after_async;
	}

	char name[96] = "";
	/* The Unix socket first: the port file, which says the server is up,
	 * is written only once both listen. */
	rc = listen_local(srv, errmsg, errlen);
	if (rc == 0)
		rc = listen_on(srv, &addr, name, sizeof(name), errmsg, errlen);
	if (rc != 0)
		goto err_after_listener;

	uv_handle_t *sigs[5] = {NULL, NULL, NULL, NULL, NULL};
	rc = uv_signal_init(loop, &srv->sigterm);
	if (rc == 0) {
		sigs[0] = (uv_handle_t *)&srv->sigterm;
		rc = uv_signal_init(loop, &srv->sigint);
	}
	if (rc == 0) {
		sigs[1] = (uv_handle_t *)&srv->sigint;
		rc = uv_timer_init(loop, &srv->shutdown_timer);
	}
	if (rc == 0) {
		sigs[2] = (uv_handle_t *)&srv->shutdown_timer;
		rc = uv_signal_init(loop, &srv->sighup);
	}
	if (rc == 0) {
		sigs[3] = (uv_handle_t *)&srv->sighup;
		rc = uv_timer_init(loop, &srv->log_timer);
	}
	if (rc == 0) {
		sigs[4] = (uv_handle_t *)&srv->log_timer;
		srv->sighup.data = srv;
		srv->sigterm.data = srv;
		srv->sigint.data = srv;
		srv->shutdown_timer.data = srv;
		rc = uv_signal_start(&srv->sigterm, signal_cb, SIGTERM);
	}
	if (rc == 0)
		rc = uv_signal_start(&srv->sigint, signal_cb, SIGINT);
	if (rc == 0)
		rc = uv_signal_start(&srv->sighup, sighup_cb, SIGHUP);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot install the signal handlers: %s", uv_strerror(rc));
		rc = WB_E_IO;
		close_now(loop, sigs, 5);
		goto err_after_listener;
	}
	uv_unref((uv_handle_t *)&srv->shutdown_timer);
	/* A summary is due summary_ms after the first line it counts; the
	 * timer looks every second (or every interval, when shorter). */
	uint64_t tick = cfg->log_summary_ms < 1000 ? cfg->log_summary_ms : 1000;
	if (cfg->keepalive_ms > 0 && cfg->keepalive_ms / 2 < tick)
		tick = cfg->keepalive_ms / 2;
	srv->log_timer.data = srv;
	uv_timer_start(&srv->log_timer, log_timer_cb, tick, tick);
	uv_unref((uv_handle_t *)&srv->log_timer);

	struct storage_stats ss;
	storage_stats(srv->st, &ss);
	srv_log(WB_LOG_INFO, "listening", "addr=%s unix=%s data_dir=%s map_size=%llu version=%s",
	        name, srv->local_open ? srv->local_path : "off", cfg->data_dir,
	        (unsigned long long)ss.map_size, WB_VERSION);
	srv->ready = true;
	sysd_ready(&srv->sysd, loop, name);
	*out = srv;
	return 0;

err_after_listener:
	if (srv->listener_open)
		close_now(loop, (uv_handle_t *[]){(uv_handle_t *)&srv->listener}, 1);
	if (srv->local_open) {
		close_now(loop, (uv_handle_t *[]){(uv_handle_t *)&srv->local}, 1);
		(void)unlink(srv->local_path);
	}
	writer_stop(srv->writer);
err_after_async:
	close_now(loop, (uv_handle_t *[]){(uv_handle_t *)&srv->async}, 1);
	pthread_mutex_destroy(&srv->async_mu);
err_after_dispatch:
	dispatch_free(srv->dispatch);
err_after_modules:
	modules_shutdown(srv);
	uv_run(loop, UV_RUN_NOWAIT);
	modules_close(srv);
	conns_free(srv->conns);
err_after_storage:
	wal_close(srv->wal);
	storage_close(srv->st);
err_after_alloc:
	free(srv);
	return rc;
}

void srv_close(struct srv *srv)
{
	/* The loop has ended: nothing can be answered any more (every
	 * connection is closed), but what the writer holds is still committed
	 * before the store closes. */
	writer_drain(srv->writer);
	struct writer_op *op = writer_take_done(srv->writer);
	while (op != NULL) {
		struct writer_op *next = op->next;
		op_done(srv, (struct srv_op *)op);
		op = next;
	}
	modules_close(srv);
	writer_stop(srv->writer);
	pthread_mutex_destroy(&srv->async_mu);
	dispatch_free(srv->dispatch);
	conns_free(srv->conns);
	wal_close(srv->wal);
	storage_close(srv->st);
	free(srv);
	/* No count of suppressed lines is lost at a clean stop. */
	log_flush_summaries(true);
}
