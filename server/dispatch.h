/* Dispatch: from a frame's bytes to the module that handles the request.
 *
 * One table keyed by the Request's body case, built from the modules'
 * handler lists, serves every request; Hello, Ping and GetStats are
 * answered here. Before the table, every request but Hello and Ping
 * passes the access table (access.h) for the connection's subject. Before
 * that: the Request is unpacked under the
 * allocation budget, its strings are checked, a server that is shutting
 * down answers SHUTTING_DOWN, and a connection that has not said Hello
 * may say nothing else. A connection whose frames do not decode is
 * answered BAD_REQUEST each time, and closed at the
 * DISPATCH_BAD_FRAMES_MAX-th. Loop thread only. */
#ifndef WB_DISPATCH_H
#define WB_DISPATCH_H

#define DISPATCH_BAD_FRAMES_MAX 100u
/* Frames from this size on are decoded on a libuv worker. */
#define DISPATCH_OFFLOOP_BYTES (64u * 1024u)

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

#include "module.h"

struct dispatch;

/* What dispatch needs of the server: the limits Hello announces, whether a
 * shutdown began, and the figures GetStats answers with (arg is passed to
 * both callbacks). */
struct dispatch_env {
	void *arg;
	uint64_t max_frame;
	uint64_t max_read_count;
	uint64_t max_append_events;
	uint32_t max_event_size;
	/* The subject a connection acts as once it said Hello without
	 * authenticating (anonymous-role), or NULL: then it may do nothing
	 * that needs a permission. Kept, not copied. */
	const struct auth_subject *anonymous;
	/* The subject of a Unix socket peer whose uid is 0 or service_uid (the
	 * server's own): the local administrator. Kept, not copied. */
	const struct auth_subject *local_admin;
	uint32_t service_uid;
	bool (*shutting_down)(void *arg);
	void (*stats)(void *arg, Whizbang__V1__ServerStats *s);
	/* For frames decoded off the loop (NULL: every frame is decoded on
	 * it), and what to call after answering one from there (a flush). */
	uv_loop_t *loop;
	void (*after)(void *arg);
	/* QueryEntities, Explain, GetEntity and ListIndexes frames larger than
	 * this are refused before they are decoded; 0: no limit. */
	uint64_t max_query_bytes;
	/* After a Hello that authenticated (or not) c: 0, or a wire error code
	 * with msg, with which the Hello is answered and c closed (a quota on
	 * the identity it now has). May be NULL. */
	int (*greeted)(void *arg, struct conn *c, char *msg, size_t msglen);
	/* c was refused by a limit it could retry at once (srv_quota_refused()).
	 * May be NULL. */
	void (*refused)(void *arg, struct conn *c);
};

/* Builds the table from mods[0..n) with their states. WB_E_INVAL, with the
 * reason in errmsg, when two modules claim one body case, a module claims a
 * request dispatch answers itself, or one claims a request naming a
 * subscription without owning subscriptions; WB_E_NOMEM. *out is written
 * only on success. Copies env; keeps mods and states (they outlive it). */
int dispatch_init(struct dispatch **out, const struct dispatch_env *env,
                  const struct srv_module *const *mods, void *const *states, size_t n, char *errmsg,
                  size_t errlen);

void dispatch_free(struct dispatch *d);

/* Handles one frame's payload from c (conn_hooks.frame). */
void dispatch_frame(struct dispatch *d, struct conn *c, const uint8_t *payload, uint32_t len);

#endif
