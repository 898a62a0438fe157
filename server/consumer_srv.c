/* SCAFFOLDING (issue 5, being written): answers every request of this
 * module with an error until the module lands. */
#include "srv_int.h"

int csrv_init(struct srv *srv, char *errmsg, size_t errlen)
{
	(void)srv;
	(void)errmsg;
	(void)errlen;
	return 0;
}

void csrv_close(struct srv *srv)
{
	(void)srv;
}

bool csrv_dispatch(struct conn *c, Request *req)
{
	srv_send_error(c, req->id, WB_BAD_REQUEST, "not available yet");
	return false;
}

bool csrv_owns(struct conn *c, uint64_t id)
{
	(void)c;
	(void)id;
	return false;
}

void csrv_pump(struct srv *srv)
{
	(void)srv;
}

void csrv_conn_closed(struct conn *c)
{
	(void)c;
}

void csrv_shutdown(struct srv *srv)
{
	(void)srv;
}
