/* The end-to-end harness (see e2e_util.h).
 *
 * Happy path: mkdtemp a directory, fork, point the child's stderr at
 * DIR/server.log, exec $WHIZBANGD on port 0, and poll for the port file it
 * writes once listening. Stopping is SIGTERM and a bounded wait.
 *
 * Failure modes: a server that exits before writing its port file, or that
 * does not write it in time, fails the start with its log's tail printed; a
 * server that ignores SIGTERM is killed after a timeout and reported; a
 * test process that dies takes its server with it (PR_SET_PDEATHSIG). */
#include "e2e_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "frame.h"
#include "wire.h"

#define RAW_MAX_RESPONSE (64u << 20)

int64_t e2e_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t e2e_wall_us(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

void e2e_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------ the server */

void e2e_log_tail(const struct e2e_server *s, size_t lines)
{
	FILE *f = fopen(s->log_file, "r");
	if (f == NULL) {
		fprintf(stderr, "e2e: no server log at %s\n", s->log_file);
		return;
	}
	/* Two passes: count the lines, then print the last ones. */
	size_t total = 0;
	int ch;
	while ((ch = fgetc(f)) != EOF)
		if (ch == '\n')
			total++;
	rewind(f);
	size_t skip = total > lines ? total - lines : 0;
	fprintf(stderr, "e2e: ---- last %zu lines of %s ----\n", total - skip, s->log_file);
	char line[4096];
	size_t i = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (i++ >= skip)
			fputs(line, stderr);
	}
	fprintf(stderr, "e2e: ---- end of server log ----\n");
	fclose(f);
}

size_t e2e_log_count(const struct e2e_server *s, const char *needle)
{
	FILE *f = fopen(s->log_file, "r");
	if (f == NULL)
		return 0;
	size_t n = 0;
	char line[8192];
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

uint64_t e2e_log_suppressed(const struct e2e_server *s, const char *event, size_t *summaries)
{
	char needle[128];
	snprintf(needle, sizeof(needle), " event=log_suppressed of=%s count=", event);
	if (summaries != NULL)
		*summaries = 0;
	FILE *f = fopen(s->log_file, "r");
	if (f == NULL)
		return 0;
	uint64_t n = 0;
	char line[8192];
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *p = strstr(line, needle);
		if (p == NULL)
			continue;
		n += strtoull(p + strlen(needle), NULL, 10);
		if (summaries != NULL)
			(*summaries)++;
	}
	fclose(f);
	return n;
}

/* Returns the exit status as e2e_stop() reports it. */
static int decode_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* Polls for the child's exit for at most timeout_ms: true with *status. */
static bool reap_within(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = e2e_now_ms() + timeout_ms;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return true;
		if (r < 0 && errno != EINTR)
			return false;
		if (e2e_now_ms() >= deadline)
			return false;
		e2e_sleep_ms(5);
	}
}

int e2e_read_port(const struct e2e_server *s)
{
	FILE *f = fopen(s->port_file, "r");
	if (f == NULL)
		return 0;
	int port = 0;
	if (fscanf(f, "%d", &port) != 1)
		port = 0;
	fclose(f);
	return port > 0 && port < 65536 ? port : 0;
}

int e2e_prepare(struct e2e_server *s)
{
	memset(s, 0, sizeof(*s));
	/* The test process writes to sockets the server may have closed. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(s->dir, sizeof(s->dir), "/tmp/wb-e2e-XXXXXX");
	if (mkdtemp(s->dir) == NULL) {
		fprintf(stderr, "e2e: mkdtemp failed: %s\n", strerror(errno));
		s->dir[0] = '\0';
		return -1;
	}
	snprintf(s->data_dir, sizeof(s->data_dir), "%s/data", s->dir);
	snprintf(s->port_file, sizeof(s->port_file), "%s/port", s->dir);
	snprintf(s->log_file, sizeof(s->log_file), "%s/server.log", s->dir);
	return 0;
}

int e2e_child_stdio(pid_t parent, int logfd)
{
	/* A test process that dies must not leave its server behind. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		return -1;
	int devnull = open("/dev/null", O_RDWR);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		close(devnull);
	}
	dup2(logfd, STDOUT_FILENO);
	dup2(logfd, STDERR_FILENO);
	signal(SIGPIPE, SIG_DFL);
	return 0;
}

int e2e_wait_port(struct e2e_server *s)
{
	int64_t deadline = e2e_now_ms() + E2E_START_TIMEOUT_MS;
	for (;;) {
		int port = e2e_read_port(s);
		if (port > 0) {
			s->port = port;
			snprintf(s->address, sizeof(s->address), "127.0.0.1:%d", port);
			return 0;
		}
		int status;
		pid_t r = waitpid(s->pid, &status, WNOHANG);
		if (r == s->pid) {
			s->pid = 0;
			fprintf(stderr, "e2e: whizbangd exited during start-up with status %d\n",
			        decode_status(status));
			e2e_log_tail(s, 30);
			return -1;
		}
		if (e2e_now_ms() >= deadline) {
			fprintf(stderr, "e2e: whizbangd wrote no port file within %d ms\n",
			        E2E_START_TIMEOUT_MS);
			e2e_log_tail(s, 30);
			e2e_kill(s);
			return -1;
		}
		e2e_sleep_ms(5);
	}
}

static int spawn(struct e2e_server *s)
{
	const char *bin = getenv("WHIZBANGD");
	if (bin == NULL || bin[0] == '\0') {
		fprintf(stderr, "e2e: WHIZBANGD is not set (run through meson test)\n");
		return -1;
	}
	const char *argv[12 + E2E_MAX_EXTRA];
	size_t n = 0;
	argv[n++] = bin;
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--data-dir";
	argv[n++] = s->data_dir;
	argv[n++] = "--port-file";
	argv[n++] = s->port_file;
	argv[n++] = "--log-level";
	argv[n++] = "info";
	/* Tests of everything but access talk over TCP without credentials:
	 * they get the development setting (a test's own --anonymous-role,
	 * later on the line, wins). */
	argv[n++] = "--anonymous-role=admin";
	for (size_t i = 0; s->extra[i] != NULL; i++)
		argv[n++] = s->extra[i];
	argv[n] = NULL;

	unlink(s->port_file);
	int logfd = open(s->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		fprintf(stderr, "e2e: cannot open %s: %s\n", s->log_file, strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "e2e: fork failed: %s\n", strerror(errno));
		close(logfd);
		return -1;
	}
	if (pid == 0) {
		if (e2e_child_stdio(parent, logfd) != 0)
			_exit(127);
		execv(bin, (char *const *)argv);
		dprintf(STDERR_FILENO, "e2e: cannot exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(logfd);
	s->pid = pid;
	return e2e_wait_port(s);
}

int e2e_set_args(struct e2e_server *s, const char *const *extra_args)
{
	for (size_t i = 0; i < E2E_MAX_EXTRA && s->extra[i] != NULL; i++) {
		free(s->extra[i]);
		s->extra[i] = NULL;
	}
	size_t n = 0;
	for (; extra_args != NULL && extra_args[n] != NULL; n++) {
		if (n == E2E_MAX_EXTRA) {
			fprintf(stderr, "e2e: more than %d extra arguments\n", E2E_MAX_EXTRA);
			return -1;
		}
		s->extra[n] = strdup(extra_args[n]);
		if (s->extra[n] == NULL)
			return -1;
	}
	s->extra[n] = NULL;
	return 0;
}

int e2e_start(struct e2e_server *s, const char *const *extra_args)
{
	/* A server started before on s (and stopped) goes first: its
	 * directory and its arguments' copies would be lost otherwise. */
	if (s->dir[0] != '\0')
		e2e_cleanup(s);
	if (e2e_prepare(s) != 0)
		return -1;
	if (e2e_set_args(s, extra_args) != 0)
		return -1;
	return spawn(s);
}

int e2e_restart(struct e2e_server *s)
{
	if (s->pid != 0) {
		fprintf(stderr, "e2e: restart while the server still runs\n");
		return -1;
	}
	return spawn(s);
}

int e2e_stop(struct e2e_server *s)
{
	if (s->pid == 0)
		return -1;
	kill(s->pid, SIGTERM);
	return e2e_wait_exit(s);
}

int e2e_wait_exit(struct e2e_server *s)
{
	if (s->pid == 0)
		return -1;
	int status = 0;
	if (!reap_within(s->pid, E2E_STOP_TIMEOUT_MS, &status)) {
		fprintf(stderr,
		        "e2e: whizbangd (pid %d) did not exit within %d ms of its stop "
		        "signal; killing it\n",
		        (int)s->pid, E2E_STOP_TIMEOUT_MS);
		e2e_log_tail(s, 30);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &status, 0);
		s->pid = 0;
		return -1;
	}
	s->pid = 0;
	int rc = decode_status(status);
	/* UBSan reports without stopping the process; ASan and LSan change
	 * the exit status, but say more in the log. */
	size_t reports = e2e_log_count(s, "runtime error:") + e2e_log_count(s, "Sanitizer");
	if (rc == 0 && reports > 0) {
		fprintf(stderr, "e2e: the server log holds %zu sanitizer reports\n", reports);
		rc = -2;
	}
	if (rc != 0) {
		fprintf(stderr, "e2e: whizbangd exited with status %d after its stop signal\n", rc);
		e2e_log_tail(s, 60);
	}
	return rc;
}

void e2e_kill(struct e2e_server *s)
{
	if (s->pid == 0)
		return;
	int status;
	kill(s->pid, SIGKILL);
	if (!reap_within(s->pid, E2E_STOP_TIMEOUT_MS, &status))
		fprintf(stderr, "e2e: whizbangd (pid %d) survived SIGKILL for %d ms\n", (int)s->pid,
		        E2E_STOP_TIMEOUT_MS);
	s->pid = 0;
}

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void e2e_remove_tree(const char *dir)
{
	if (dir[0] != '\0')
		nftw(dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Keeps s's server log in $WB_KEEP_SERVER_LOGS when that names a directory
 * (tests/secret-scan.sh reads them after the suite). */
static void keep_log(const struct e2e_server *s)
{
	const char *keep = getenv("WB_KEEP_SERVER_LOGS");
	if (keep == NULL || keep[0] == '\0' || s->log_file[0] == '\0')
		return;
	FILE *in = fopen(s->log_file, "r");
	if (in == NULL)
		return;
	static unsigned seq;
	char path[512];
	snprintf(path, sizeof(path), "%s/%d-%u.log", keep, (int)getpid(), seq++);
	FILE *out = fopen(path, "w");
	if (out != NULL) {
		char buf[8192];
		size_t n;
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, n, out);
		fclose(out);
	}
	fclose(in);
}

void e2e_cleanup(struct e2e_server *s)
{
	e2e_kill(s);
	if (s->dir[0] != '\0')
		keep_log(s);
	e2e_remove_tree(s->dir);
	s->dir[0] = '\0';
	for (size_t i = 0; i < E2E_MAX_EXTRA && s->extra[i] != NULL; i++) {
		free(s->extra[i]);
		s->extra[i] = NULL;
	}
}

struct wb_client *e2e_client(const struct e2e_server *s, const char *name)
{
	struct wb_options opts = {
	        .client_name = name,
	        .timeout_ms = E2E_CLIENT_TIMEOUT_MS,
	        .max_response = 0,
	};
	struct wb_client *c = NULL;
	char msg[512] = "";
	int rc = wb_connect(&c, s->address, &opts, msg, sizeof(msg));
	if (rc != 0) {
		fprintf(stderr, "e2e: wb_connect(%s) failed: %s: %s\n", s->address,
		        wb_error_name(rc), msg);
		return NULL;
	}
	return c;
}

int e2e_connections(struct wb_client *c, uint64_t *out)
{
	Whizbang__V1__ServerStats *st = NULL;
	int rc = wb_stats(c, &st);
	if (rc != 0)
		return rc;
	*out = st->connections_current;
	wb_stats_free(st);
	return 0;
}

/* ------------------------------------------------------------ reading */

static int copy_page(const struct wb_page *page, struct e2e_event **evs, size_t *n, size_t *cap)
{
	if (*n + page->count > *cap) {
		size_t c = *cap > 0 ? *cap : 256;
		while (c < *n + page->count)
			c *= 2;
		struct e2e_event *p = realloc(*evs, c * sizeof(*p));
		if (p == NULL)
			return WB_E_NOMEM;
		*evs = p;
		*cap = c;
	}
	for (size_t i = 0; i < page->count; i++) {
		const struct wb_event *e = &page->events[i];
		struct e2e_event *d = &(*evs)[*n];
		memset(d, 0, sizeof(*d));
		memcpy(d->id, e->id, 16);
		snprintf(d->stream, sizeof(d->stream), "%s", e->stream);
		snprintf(d->type, sizeof(d->type), "%s", e->type);
		d->version = e->version;
		d->position = e->position;
		d->timestamp_us = e->timestamp_us;
		d->data = malloc(e->data_len + 1);
		d->metadata = malloc(e->metadata_len + 1);
		if (d->data == NULL || d->metadata == NULL) {
			free(d->data);
			free(d->metadata);
			return WB_E_NOMEM;
		}
		memcpy(d->data, e->data, e->data_len);
		d->data[e->data_len] = 0;
		d->data_len = e->data_len;
		memcpy(d->metadata, e->metadata, e->metadata_len);
		d->metadata[e->metadata_len] = 0;
		d->metadata_len = e->metadata_len;
		(*n)++;
	}
	return 0;
}

/* Pages through a stream (stream != NULL) or $all forwards. */
static int read_pages(struct wb_client *c, const char *stream, uint32_t page_size,
                      const char *prefix, const char *const *types, size_t ntypes,
                      struct e2e_event **out, size_t *nout)
{
	struct e2e_event *evs = NULL;
	size_t n = 0, cap = 0;
	uint64_t from = stream != NULL ? 0 : 1;
	int rc;
	for (;;) {
		struct wb_page page;
		if (stream != NULL)
			rc = wb_read_stream(c, stream, from, false, page_size, &page);
		else
			rc = wb_read_all(c, from, false, page_size, prefix, types, ntypes, &page);
		if (rc != 0)
			goto err;
		rc = copy_page(&page, &evs, &n, &cap);
		bool end = page.end;
		bool stuck = !end && page.next == from && page.count == 0;
		from = page.next;
		wb_page_free(&page);
		if (rc != 0)
			goto err;
		if (end)
			break;
		if (stuck) {
			fprintf(stderr, "e2e: a read page did not advance (next %llu)\n",
			        (unsigned long long)from);
			rc = WB_INTERNAL;
			goto err;
		}
	}
	*out = evs;
	*nout = n;
	return 0;
err:
	e2e_events_free(evs, n);
	return rc;
}

int e2e_append_mib(struct wb_client *c, const char *stream, unsigned mib)
{
	static uint8_t data[E2E_BIG_EVENT];
	memset(data, '7', sizeof(data));
	struct wb_new_event evs[64];
	for (size_t i = 0; i < 64; i++)
		evs[i] = (struct wb_new_event){
		        .type = "Big", .data = data, .data_len = sizeof(data)};
	for (unsigned k = 0; k < mib; k++) {
		struct wb_append_result res;
		int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, evs, 64, &res);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int e2e_read_all(struct wb_client *c, uint32_t page_size, const char *prefix,
                 const char *const *types, size_t ntypes, struct e2e_event **out, size_t *n)
{
	return read_pages(c, NULL, page_size, prefix, types, ntypes, out, n);
}

int e2e_read_stream(struct wb_client *c, const char *stream, uint32_t page_size,
                    struct e2e_event **out, size_t *n)
{
	return read_pages(c, stream, page_size, NULL, NULL, 0, out, n);
}

void e2e_events_free(struct e2e_event *evs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(evs[i].data);
		free(evs[i].metadata);
	}
	free(evs);
}

/* ------------------------------------------------------------ raw sockets */

int e2e_raw_connect(const struct e2e_server *s)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int rc;
	do
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (rc != 0 && errno == EINTR);
	if (rc != 0) {
		fprintf(stderr, "e2e: connect to %s failed: %s\n", s->address, strerror(errno));
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Waits for events on fd until deadline: 1 ready, 0 timed out, -errno. */
static int wait_until(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - e2e_now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n > 0)
			return 1;
	}
}

int e2e_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	const uint8_t *p = buf;
	int64_t deadline = e2e_now_ms() + timeout_ms;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int w = wait_until(fd, POLLOUT, deadline);
		if (w == 0)
			return -ETIMEDOUT;
		if (w < 0)
			return w;
	}
	return 0;
}

uint8_t *e2e_pack(const Whizbang__V1__Request *req, size_t *len)
{
	return wire_pack_frame(&req->base, len);
}

int e2e_send_request(int fd, const Whizbang__V1__Request *req)
{
	size_t len;
	uint8_t *buf = e2e_pack(req, &len);
	if (buf == NULL)
		return -ENOMEM;
	int rc = e2e_send_all(fd, buf, len, 10000);
	free(buf);
	return rc;
}

/* Reads exactly len bytes before deadline: 0, WB_E_TIMEOUT or WB_E_CLOSED. */
static int read_exact(int fd, uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		int w = wait_until(fd, POLLIN, deadline);
		if (w == 0)
			return WB_E_TIMEOUT;
		if (w < 0)
			return WB_E_CLOSED;
		ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n == 0)
			return WB_E_CLOSED;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return WB_E_CLOSED;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int e2e_recv_response(int fd, int timeout_ms, Whizbang__V1__Response **out)
{
	int64_t deadline = e2e_now_ms() + timeout_ms;
	uint8_t hdr[FRAME_HEADER];
	int rc = read_exact(fd, hdr, sizeof(hdr), deadline);
	if (rc != 0)
		return rc;
	uint32_t len = frame_get_header(hdr);
	if (len > RAW_MAX_RESPONSE)
		return WB_E_IO;
	uint8_t *buf = malloc(len > 0 ? len : 1);
	if (buf == NULL)
		return WB_E_NOMEM;
	rc = read_exact(fd, buf, len, deadline);
	if (rc == 0) {
		*out = wire_unpack_response(buf, len, (size_t)len * 128 + 65536);
		if (*out == NULL)
			rc = WB_E_IO;
	}
	free(buf);
	return rc;
}

bool e2e_wait_closed(int fd, int timeout_ms)
{
	int64_t deadline = e2e_now_ms() + timeout_ms;
	uint8_t buf[4096];
	for (;;) {
		int w = wait_until(fd, POLLIN, deadline);
		if (w == 0)
			return false;
		if (w < 0)
			return true;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			return true;
		if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return true;
	}
}

void e2e_req_ping(Whizbang__V1__Request *req, Whizbang__V1__Ping *ping, uint64_t id, uint64_t nonce)
{
	whizbang__v1__request__init(req);
	whizbang__v1__ping__init(ping);
	ping->nonce = nonce;
	req->id = id;
	req->body_case = WHIZBANG__V1__REQUEST__BODY_PING;
	req->ping = ping;
}

int e2e_error_code(const Whizbang__V1__Response *r)
{
	return r->error != NULL ? (int)r->error->code : 0;
}

int e2e_raw_call(int fd, Whizbang__V1__Request *req, Whizbang__V1__Response **out)
{
	int rc = e2e_send_request(fd, req);
	if (rc != 0)
		return WB_E_CLOSED;
	return e2e_recv_response(fd, E2E_CLIENT_TIMEOUT_MS, out);
}

int e2e_raw_hello(int fd, uint64_t id)
{
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = WB_PROTOCOL_VERSION;
	h.client_name = (char *)"e2e-raw";
	Whizbang__V1__Request req = E2E_REQUEST(HELLO, hello, &h);
	req.id = id;
	Whizbang__V1__Response *r = NULL;
	int rc = e2e_raw_call(fd, &req, &r);
	if (rc != 0)
		return rc;
	if (e2e_error_code(r) != 0)
		rc = e2e_error_code(r);
	else if (r->id != id || r->body_case != WHIZBANG__V1__RESPONSE__BODY_HELLO)
		rc = WB_INTERNAL;
	whizbang__v1__response__free_unpacked(r, NULL);
	return rc;
}

/* ------------------------------------------------------------ suites */

struct e2e_server e2e_srv;

void e2e_suite_fini(void)
{
	e2e_cleanup(&e2e_srv);
}

void e2e_start_ok_at(struct e2e_server *s, const char *const *extra_args, const char *file,
                     int line)
{
	cr_assert_eq(e2e_start(s, extra_args), 0, "%s:%d: whizbangd did not start (log above)",
	             file, line);
}

void e2e_restart_ok_at(struct e2e_server *s, const char *file, int line)
{
	cr_assert_eq(e2e_restart(s), 0, "%s:%d: whizbangd did not start again (log above)", file,
	             line);
}

void e2e_exit_ok_at(struct e2e_server *s, bool send_sigterm, const char *file, int line)
{
	const char *how = send_sigterm ? "on SIGTERM" : "after its stop signal";
	if (s->pid == 0)
		cr_assert_fail("%s:%d: whizbangd is not running, so it cannot exit %s", file, line,
		               how);
	int rc = send_sigterm ? e2e_stop(s) : e2e_wait_exit(s);
	cr_assert_neq(rc, -1, "%s:%d: whizbangd did not exit within %d ms %s (killed; log above)",
	              file, line, E2E_STOP_TIMEOUT_MS, how);
	cr_assert_neq(rc, -2, "%s:%d: whizbangd exited 0 %s, but its log holds a sanitizer report",
	              file, line, how);
	cr_assert_eq(rc, 0, "%s:%d: whizbangd exited with status %d %s (log above)", file, line, rc,
	             how);
}

struct wb_client *e2e_client_ok_at(const struct e2e_server *s, const char *name, const char *file,
                                   int line)
{
	struct wb_client *c = e2e_client(s, name);
	cr_assert_not_null(c, "%s:%d: cannot connect client %s to %s (reason above)", file, line,
	                   name, s->address);
	return c;
}

int e2e_raw_ok_at(const struct e2e_server *s, bool hello, const char *file, int line)
{
	int fd = e2e_raw_connect(s);
	cr_assert_geq(fd, 0, "%s:%d: raw connect to %s failed (reason above)", file, line,
	              s->address);
	if (hello) {
		int rc = e2e_raw_hello(fd, 1);
		cr_assert_eq(rc, 0, "%s:%d: raw Hello to %s: %s", file, line, s->address,
		             wb_error_name(rc));
	}
	return fd;
}

int e2e_loopback_socket(bool listening, int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind 127.0.0.1:0: %s",
	             strerror(errno));
	if (listening)
		cr_assert_eq(listen(fd, 16), 0, "listen: %s", strerror(errno));
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0, "getsockname: %s",
	             strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

int e2e_metrics_port(const struct e2e_server *s)
{
	char path[160];
	snprintf(path, sizeof(path), "%s.metrics", s->port_file);
	int64_t deadline = e2e_now_ms() + 15000;
	for (;;) {
		FILE *f = fopen(path, "r");
		int port = 0;
		if (f != NULL) {
			int ok = fscanf(f, "%d", &port);
			fclose(f);
			if (ok == 1 && port > 0)
				return port;
		}
		cr_assert(e2e_now_ms() < deadline, "no %s", path);
		e2e_sleep_ms(20);
	}
}

int e2e_loopback_connect(int port, int timeout_s)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = timeout_s};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}
