/* SCAFFOLDING (issue 6, being written): no metrics endpoint yet. */
#include "srv_int.h"

int msrv_init(struct srv *srv, char *errmsg, size_t errlen)
{
	(void)srv;
	(void)errmsg;
	(void)errlen;
	return 0;
}

void msrv_shutdown(struct srv *srv)
{
	(void)srv;
}

void msrv_close(struct srv *srv)
{
	(void)srv;
}
