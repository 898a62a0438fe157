/* Dispatch: from a frame's bytes to the module that handles the request.
 *
 * One table keyed by the Request's body case, built from the modules'
 * handler lists, serves every request; Hello, Ping and GetStats are
 * answered here. Before the table: the Request is unpacked under the
 * allocation budget, its strings are checked, a server that is shutting
 * down answers SHUTTING_DOWN, and a connection that has not said Hello
 * may say nothing else. Loop thread only. */
#ifndef WB_DISPATCH_H
#define WB_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct srv;
struct srv_module;
struct dispatch;

/* Builds the table from mods[0..n) with their states. WB_E_INVAL, with the
 * reason in errmsg, when two modules claim one body case or a handler is
 * listed for a case the protocol does not have; WB_E_NOMEM. *out is
 * written only on success. Keeps mods and states (they outlive it). */
int dispatch_init(struct dispatch **out, struct srv *srv, const struct srv_module *const *mods,
                  void *const *states, size_t n, char *errmsg, size_t errlen);

void dispatch_free(struct dispatch *d);

/* Handles one frame's payload from c (conn_hooks.frame). */
void dispatch_frame(struct dispatch *d, struct conn *c, const uint8_t *payload, uint32_t len);

#endif
