#include "inproc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "server.h"
#include "wb_error.h"
#include "wire.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs until cond(arg) or timeout_ms, waking for the loop's fd and for fd
 * (a client's socket, -1 for none). */
static bool run_until(uv_loop_t *loop, int fd, bool (*cond)(void *arg), void *arg, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		uv_run(loop, UV_RUN_NOWAIT);
		if (cond != NULL && cond(arg))
			return true;
		if (now_ms() >= deadline)
			return false;
		struct pollfd p[2] = {{.fd = uv_backend_fd(loop), .events = POLLIN},
		                      {.fd = fd, .events = POLLIN}};
		int t = uv_backend_timeout(loop);
		poll(p, fd >= 0 ? 2 : 1, t < 0 || t > 1 ? 1 : t);
	}
}

bool loop_run_until(uv_loop_t *loop, bool (*cond)(void *arg), void *arg, int timeout_ms)
{
	return run_until(loop, -1, cond, arg, timeout_ms);
}

/* ---------------------------------------------------------------- clients */

struct iclient *iclient_new(int port)
{
	struct iclient *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		free(c);
		return NULL;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
		close(c->fd);
		free(c);
		return NULL;
	}
	return c;
}

void iclient_free(struct iclient *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c);
}

int iclient_queue_raw(struct iclient *c, const void *bytes, size_t len)
{
	if (len > ICLIENT_BUF - c->out_len)
		return -1;
	memcpy(c->out + c->out_len, bytes, len);
	c->out_len += len;
	return 0;
}

int iclient_queue(struct iclient *c, const Whizbang__V1__Request *req)
{
	size_t n;
	uint8_t *frame = wire_pack_frame(&req->base, &n);
	if (frame == NULL)
		return -1;
	int rc = iclient_queue_raw(c, frame, n);
	free(frame);
	return rc;
}

void iclient_io(struct iclient *c)
{
	while (!c->closed && c->out_sent < c->out_len) {
		ssize_t n =
		        send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_sent += (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == ENOTCONN || errno == EINTR)) {
			break;
		} else {
			c->closed = true;
		}
	}
	if (c->out_sent == c->out_len)
		c->out_sent = c->out_len = 0;
	while (!c->closed && c->in_len < ICLIENT_BUF) {
		ssize_t n = recv(c->fd, c->in + c->in_len, ICLIENT_BUF - c->in_len, 0);
		if (n > 0)
			c->in_len += (size_t)n;
		else if (n < 0 && (errno == EAGAIN || errno == ENOTCONN || errno == EINTR))
			break;
		else
			c->closed = true; /* EOF or reset */
	}
}

static bool whole_frame(const struct iclient *c)
{
	return c->in_len >= FRAME_HEADER && c->in_len - FRAME_HEADER >= frame_get_header(c->in);
}

bool iclient_ready(const struct iclient *c)
{
	return whole_frame(c) || c->closed;
}

static bool ready_cond(void *arg)
{
	struct iclient *c = arg;
	iclient_io(c);
	return iclient_ready(c);
}

int iclient_wait(uv_loop_t *loop, struct iclient *c, int timeout_ms)
{
	run_until(loop, c->fd, ready_cond, c, timeout_ms);
	if (whole_frame(c))
		return 0;
	return c->closed ? WB_E_CLOSED : WB_E_TIMEOUT;
}

int iclient_take(struct iclient *c, uint8_t *payload, size_t cap, size_t *len)
{
	if (!whole_frame(c))
		return -1;
	size_t n = frame_get_header(c->in);
	if (n > cap)
		return -1;
	memcpy(payload, c->in + FRAME_HEADER, n);
	memmove(c->in, c->in + FRAME_HEADER + n, c->in_len - FRAME_HEADER - n);
	c->in_len -= FRAME_HEADER + n;
	*len = n;
	return 0;
}

int iclient_recv(uv_loop_t *loop, struct iclient *c, int timeout_ms, Whizbang__V1__Response **out)
{
	int rc = iclient_wait(loop, c, timeout_ms);
	if (rc != 0)
		return rc;
	size_t n = frame_get_header(c->in);
	*out = wire_unpack_response(c->in + FRAME_HEADER, n, n * 128 + 65536);
	memmove(c->in, c->in + FRAME_HEADER + n, c->in_len - FRAME_HEADER - n);
	c->in_len -= FRAME_HEADER + n;
	return *out != NULL ? 0 : WB_E_IO;
}

int iclient_call(uv_loop_t *loop, struct iclient *c, Whizbang__V1__Request *req, uint64_t id,
                 Whizbang__V1__Response **out)
{
	req->id = id;
	if (iclient_queue(c, req) != 0)
		return WB_E_NOMEM;
	for (;;) {
		int rc = iclient_recv(loop, c, 10000, out);
		if (rc != 0)
			return rc;
		if ((*out)->id == id)
			return 0;
		whizbang__v1__response__free_unpacked(*out, NULL);
	}
}

int iclient_hello(uv_loop_t *loop, struct iclient *c)
{
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = WB_PROTOCOL_VERSION;
	h.client_name = (char *)"inproc";
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_HELLO;
	req.hello = &h;
	Whizbang__V1__Response *r;
	int rc = iclient_call(loop, c, &req, 1, &r);
	if (rc != 0)
		return rc;
	rc = r->error != NULL                                     ? (int)r->error->code
	     : r->body_case == WHIZBANG__V1__RESPONSE__BODY_HELLO ? 0
	                                                          : WB_INTERNAL;
	whizbang__v1__response__free_unpacked(r, NULL);
	return rc;
}

int iclient_ping(uv_loop_t *loop, struct iclient *c, uint64_t id)
{
	Whizbang__V1__Ping p = WHIZBANG__V1__PING__INIT;
	p.nonce = id * 7919;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_PING;
	req.ping = &p;
	Whizbang__V1__Response *r;
	int rc = iclient_call(loop, c, &req, id, &r);
	if (rc != 0)
		return rc;
	bool ok = r->body_case == WHIZBANG__V1__RESPONSE__BODY_PONG && r->pong->nonce == p.nonce;
	whizbang__v1__response__free_unpacked(r, NULL);
	return ok ? 0 : WB_INTERNAL;
}

/* ---------------------------------------------------------------- the server */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int inproc_prepare(struct inproc *h)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->dir, sizeof(h->dir), "/tmp/wb-inproc-XXXXXX");
	if (mkdtemp(h->dir) == NULL) {
		fprintf(stderr, "inproc: mkdtemp: %s\n", strerror(errno));
		h->dir[0] = '\0';
		return -1;
	}
	snprintf(h->data_dir, sizeof(h->data_dir), "%s/data", h->dir);
	snprintf(h->port_file, sizeof(h->port_file), "%s/port", h->dir);
	if (uv_loop_init(&h->loop) != 0) {
		fprintf(stderr, "inproc: uv_loop_init failed\n");
		return -1;
	}
	config_defaults(&h->cfg);
	snprintf(h->cfg.listen, sizeof(h->cfg.listen), "127.0.0.1:0");
	snprintf(h->cfg.data_dir, sizeof(h->cfg.data_dir), "%s", h->data_dir);
	snprintf(h->cfg.port_file, sizeof(h->cfg.port_file), "%s", h->port_file);
	snprintf(h->cfg.metrics_listen, sizeof(h->cfg.metrics_listen), "127.0.0.1:0");
	h->cfg.map_size = 64u << 20;
	/* The tests talk over TCP without credentials (the development
	 * setting; tests/test_access_e2e.c and test_auth_e2e.c test access). */
	snprintf(h->cfg.anonymous_role, sizeof(h->cfg.anonymous_role), "admin");
	log_set_level(WB_LOG_WARN);
	return 0;
}

int inproc_start(struct inproc *h)
{
	h->errmsg[0] = '\0';
	int rc = srv_init(&h->srv, &h->loop, &h->cfg, h->errmsg, sizeof(h->errmsg));
	if (rc != 0) {
		h->srv = NULL;
		return rc;
	}
	FILE *f = fopen(h->port_file, "r");
	if (f == NULL || fscanf(f, "%d", &h->port) != 1)
		h->port = 0;
	if (f != NULL)
		fclose(f);
	return 0;
}

static bool loop_ended(void *arg)
{
	return !uv_loop_alive(arg);
}

int inproc_stop(struct inproc *h, int timeout_ms)
{
	if (h->srv == NULL)
		return 0;
	srv_shutdown(h->srv);
	bool ended = loop_run_until(&h->loop, loop_ended, &h->loop, timeout_ms);
	srv_close(h->srv);
	h->srv = NULL;
	return ended ? 0 : -1;
}

int inproc_cleanup(struct inproc *h)
{
	int rc = 0;
	if (h->dir[0] == '\0')
		return 0;
	uv_run(&h->loop, UV_RUN_NOWAIT);
	if (uv_loop_close(&h->loop) != 0)
		rc = -1;
	nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	h->dir[0] = '\0';
	return rc;
}
