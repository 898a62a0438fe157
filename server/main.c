/* whizbangd: parse options, open the server, run the loop until SIGTERM or
 * SIGINT has shut it down, exit 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "config.h"
#include "log.h"
#include "srv.h"

int main(int argc, char **argv)
{
	struct srv_config cfg;
	char errmsg[512];
	struct srv *srv;

	config_defaults(&cfg);
	int rc = config_parse_args(&cfg, argc, argv, errmsg, sizeof(errmsg));
	if (rc == 1)
		return 0;
	if (rc != 0) {
		fprintf(stderr, "whizbangd: %s\n", errmsg);
		return 2;
	}
	log_set_level((enum log_level)cfg.log_level);
	signal(SIGPIPE, SIG_IGN);

	uv_loop_t *loop = uv_default_loop();
	if (srv_init(&srv, loop, &cfg, errmsg, sizeof(errmsg)) != 0) {
		srv_log(LOG_ERROR, "startup_failed", "reason=\"%s\"", errmsg);
		return 1;
	}
	uv_run(loop, UV_RUN_DEFAULT);
	srv_close(srv);
	uv_loop_close(loop);
	srv_log(LOG_INFO, "stopped", NULL);
	return 0;
}
