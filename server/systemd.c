/* SCAFFOLDING (issue 6, being written): no systemd integration yet. */
#include "srv_int.h"

int sysd_listen_fd(void)
{
	return -1;
}

void sysd_ready(struct srv *srv)
{
	(void)srv;
}

void sysd_stopping(struct srv *srv)
{
	(void)srv;
}
