/* systemd integration: socket activation, readiness and the watchdog.
 *
 * Happy path: srv_init() asks sysd_listen_fd() for a socket systemd passed
 * (LISTEN_FDS, addressed to this pid by LISTEN_PID) and listens on it
 * instead of binding --listen. Once the data directory is recovered and the
 * listener is open, sysd_ready() sends READY=1 and, when the unit sets
 * WatchdogSec= (WATCHDOG_USEC, for this pid), starts a loop timer that sends
 * WATCHDOG=1 at half that interval. The keep-alives come from the loop on
 * purpose: a loop that hangs stops sending them, and systemd restarts the
 * service. On SIGTERM sysd_stopping() sends STOPPING=1 and closes the timer,
 * so it cannot keep the loop running.
 *
 * Failure modes: without NOTIFY_SOCKET (not started by systemd, or not
 * Type=notify) nothing is sent and no timer starts. A notification that
 * cannot be sent is logged once and the server carries on; systemd then
 * decides (a start timeout, or a watchdog restart). A passed socket that is
 * not a listening stream socket is logged and ignored, and --listen is bound
 * instead. Without libsystemd at build time every function here does
 * nothing and sysd_listen_fd() returns -1. */
#include "systemd.h"
#include "wb_systemd.h"

#ifdef WB_HAVE_SYSTEMD

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <systemd/sd-daemon.h>

#include "log.h"

/* What sysd_ready() sets up once READY=1 is sent: the keep-alive timer
 * (started only when the watchdog is on). Freed by the timer's close
 * callback; the caller's pointer is NULL again once STOPPING=1 is sent. */
struct sysd {
	uv_timer_t timer;     /* first: data points back here anyway */
	uint64_t interval_ms; /* 0: no watchdog */
	bool closing;
	bool warned; /* a failed keep-alive was logged */
};

int sysd_listen_fd(void)
{
	/* 1: the LISTEN_* variables are removed, so nothing this process starts
	 * mistakes the socket for its own. */
	int n = sd_listen_fds(1);
	if (n < 0) {
		srv_log(WB_LOG_WARN, "socket_activation_failed", "reason=\"%s\"", strerror(-n));
		return -1;
	}
	if (n == 0)
		return -1;
	int fd = SD_LISTEN_FDS_START;
	if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
		srv_log(WB_LOG_WARN, "socket_activation_ignored",
		        "fd=%d reason=\"not a listening stream socket\"", fd);
		return -1;
	}
	if (n > 1)
		srv_log(WB_LOG_WARN, "socket_activation_extra",
		        "fds=%d reason=\"only the first socket is used\"", n);
	srv_log(WB_LOG_INFO, "socket_activation", "fd=%d", fd);
	return fd;
}

static void keepalive_cb(uv_timer_t *t)
{
	struct sysd *sd = t->data;
	if (sd->closing)
		return;
	int rc = sd_notify(0, "WATCHDOG=1");
	if (rc < 0 && !sd->warned) {
		sd->warned = true;
		srv_log(WB_LOG_WARN, "watchdog_notify_failed", "reason=\"%s\"", strerror(-rc));
	}
}

static void sysd_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

void sysd_ready(struct sysd **out, uv_loop_t *loop, const char *listen_name)
{
	char msg[160];
	if (*out != NULL || getenv("NOTIFY_SOCKET") == NULL)
		return;
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=Listening on %s", listen_name);
	int rc = sd_notify(0, msg);
	if (rc < 0) {
		srv_log(WB_LOG_WARN, "ready_notify_failed", "reason=\"%s\"", strerror(-rc));
		return;
	}

	struct sysd *sd = calloc(1, sizeof(*sd));
	if (sd == NULL) {
		/* systemd restarts the service when keep-alives it asked for
		 * miss: say why first. */
		srv_log(WB_LOG_ERROR, "sysd_failed", "reason=\"out of memory\"");
		return;
	}
	int err = uv_timer_init(loop, &sd->timer);
	if (err != 0) {
		srv_log(WB_LOG_ERROR, "sysd_failed", "reason=\"%s\"", uv_strerror(err));
		free(sd);
		return;
	}
	sd->timer.data = sd;
	/* Only the signal handlers end the loop, and they close this timer;
	 * unreferenced, it could not hold the loop open even if they did not. */
	uv_unref((uv_handle_t *)&sd->timer);
	*out = sd;

	uint64_t usec = 0;
	rc = sd_watchdog_enabled(0, &usec);
	if (rc < 0)
		srv_log(WB_LOG_WARN, "watchdog_ignored", "reason=\"%s\"", strerror(-rc));
	if (rc <= 0)
		return; /* no WatchdogSec=, or meant for another pid */
	sd->interval_ms = usec / 2000u > 0 ? usec / 2000u : 1;
	uv_timer_start(&sd->timer, keepalive_cb, sd->interval_ms, sd->interval_ms);
	srv_log(WB_LOG_INFO, "watchdog", "interval_ms=%llu timeout_ms=%llu",
	        (unsigned long long)sd->interval_ms, (unsigned long long)(usec / 1000u));
}

void sysd_stopping(struct sysd **sdp)
{
	struct sysd *sd = *sdp;
	if (sd == NULL)
		return; /* never READY, or STOPPING sent already */
	*sdp = NULL;
	int rc = sd_notify(0, "STOPPING=1\nSTATUS=Shutting down");
	if (rc < 0)
		srv_log(WB_LOG_WARN, "stopping_notify_failed", "reason=\"%s\"", strerror(-rc));
	sd->closing = true;
	uv_timer_stop(&sd->timer);
	uv_close((uv_handle_t *)&sd->timer, sysd_closed_cb);
}

#else /* !WB_HAVE_SYSTEMD */

int sysd_listen_fd(void)
{
	return -1;
}

void sysd_ready(struct sysd **out, uv_loop_t *loop, const char *listen_name)
{
	(void)out;
	(void)loop;
	(void)listen_name;
}

void sysd_stopping(struct sysd **sd)
{
	(void)sd;
}

#endif
