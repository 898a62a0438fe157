/* systemd integration (libsystemd, optional at build time: without it
 * these do nothing and sysd_listen_fd() returns -1). Loop thread only. */
#ifndef WB_SYSTEMD_H
#define WB_SYSTEMD_H

#include <uv.h>

struct sysd;

/* A listening socket passed by systemd (LISTEN_FDS), or -1. */
int sysd_listen_fd(void);

/* The data directory is recovered and the listener open on listen_name:
 * sends READY=1 (when started by systemd as Type=notify) and starts the
 * watchdog keep-alives from the loop when WATCHDOG_USEC asks for them. *sd
 * (NULL before) then holds what sysd_stopping() ends. */
void sysd_ready(struct sysd **sd, uv_loop_t *loop, const char *listen_name);

/* Shutdown began: sends STOPPING=1, closes the keep-alive timer and sets *sd
 * to NULL. Nothing when *sd is NULL. */
void sysd_stopping(struct sysd **sd);

#endif
