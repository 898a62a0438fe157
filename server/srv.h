/* The whizbangd server: listener, connections, dispatch, and the hand-off
 * of writes to the writer thread. Everything here runs on the loop thread
 * except the apply functions, which the writer thread runs. */
#ifndef WB_SRV_H
#define WB_SRV_H

#include <stddef.h>
#include <uv.h>

#include "config.h"

struct srv;

/* Opens the store in cfg->data_dir, starts the writer thread, listens on
 * cfg->listen, writes cfg->port_file when set, and installs SIGTERM/SIGINT
 * handlers that shut the server down cleanly. Keeps loop and cfg until
 * srv_close(). On failure nothing is left running and errmsg says why. */
int srv_init(struct srv **out, uv_loop_t *loop, const struct srv_config *cfg, char *errmsg,
             size_t errlen);

/* Stops the writer, closes the store and frees srv. Call after uv_run()
 * has returned (the loop ends once a shutdown has closed every handle). */
void srv_close(struct srv *srv);

#endif
