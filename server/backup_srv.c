/* SCAFFOLDING (issue 6, being written): refuses Backup until it lands. */
#include "srv_int.h"

bool bsrv_dispatch(struct conn *c, Request *req)
{
	srv_send_error(c, req->id, WB_BAD_REQUEST, "not available yet");
	return false;
}
