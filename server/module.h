/* What a part of the server is to the rest of it: a module with its
 * handlers (server.h lists them, dispatch.c routes to them). */
#ifndef WB_MODULE_H
#define WB_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "storage.h"
#include "whizbang.pb-c.h"

struct srv;

/* One request a module handles: the body case and the handler. The
 * handler answers c (reply.h) now or later; it returns true when it keeps
 * req (it then frees it with whizbang__v1__request__free_unpacked() once
 * done), false when the dispatcher frees it on return. */
struct srv_handler {
	Whizbang__V1__Request__BodyCase body;
	bool (*handle)(void *state, struct conn *c, Whizbang__V1__Request *req);
};

/* A part of the server, with its state: size bytes that the server
 * allocates (zeroed) before init and frees after close. Every hook may be
 * NULL. The server calls init in table order before the listener opens
 * (slot is the module's conn_slot() index; on failure init undoes what it
 * did and says why in errmsg), conn_closed for every connection that
 * closes, pump after every writer batch and whenever a connection's output
 * drained, shutdown once when a shutdown begins (stop timers, answer what
 * waits), stats whenever figures are taken (GetStats, /metrics), and close
 * in reverse order after the loop has ended and the writer has drained. */
/* The log records (storage/wal.h) the modules write: each write a module
 * hands to the writer is one of these deterministic commands. The numbers
 * are on disk: never reuse one. */
enum srv_record_type {
	SRV_REC_APPEND = 1,        /* srv_events.c */
	SRV_REC_STREAM_META = 2,   /* srv_events.c */
	SRV_REC_STREAM_DELETE = 3, /* srv_events.c */
	SRV_REC_SCAVENGE = 4,      /* srv_events.c: one step */
	SRV_REC_CONSUMER = 5,      /* srv_consumer.c */
	SRV_REC_LEASE = 6,         /* srv_lease.c: a coordinator write */
	SRV_REC_AUTH = 7,          /* srv_auth.c: a user, role or token change */
};

/* How a module applies one type of its records again at start-up replay,
 * before any module is set up: from the transaction and the record alone.
 * The live apply of the same write must do exactly this (it decodes the
 * same record). Returns what the live apply returned for it. */
struct srv_record {
	uint16_t type;
	uint16_t version; /* the newest version this build reads */
	int (*apply)(struct storage_txn *txn, uint16_t version, const uint8_t *rec, size_t len);
};

struct srv_module {
	const char *name;
	size_t size;
	int (*init)(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen);
	void (*conn_closed)(void *state, struct conn *c);
	void (*pump)(void *state);
	void (*shutdown)(void *state);
	void (*close)(void *state);
	void (*stats)(void *state, Whizbang__V1__ServerStats *s);
	/* The TLS certificate was loaded again (srv_reload()): a module that
	 * serves it as well takes the new files. Returns 0, or an error with
	 * errmsg; it then keeps serving what it served. */
	int (*reload)(void *state, char *errmsg, size_t errlen);
	/* What the module holds for c, added into info for ListClients and
	 * the idle timeout: subscriptions, leases, consumers (counts), user and
	 * roles (pointers that stay valid until the loop turns). */
	void (*conn_figures)(void *state, const struct conn *c, Whizbang__V1__ClientInfo *info);
	/* A Hello with credentials (a token, or a mechanism) arrived on c; its
	 * version is checked and c has its default subject (dispatch.h). The
	 * module authenticates it: it may set c's subject and fill r's user,
	 * roles and auth_data (which must stay valid until the next call on
	 * c). Returns 0, or a wire error code with msg for the client (the
	 * Hello is then answered with it, and c has no subject). One module
	 * at most has it. */
	int (*hello)(void *state, struct conn *c, const Whizbang__V1__Hello *h,
	             Whizbang__V1__HelloResult *r, char *msg, size_t msglen);
	/* True when subscription id on c is this module's: Credit and
	 * Unsubscribe go to the module that owns the subscription. */
	bool (*owns_subscription)(void *state, const struct conn *c, uint64_t id);
	const struct srv_handler *handlers;
	size_t nhandlers;
	const struct srv_record *records;
	size_t nrecords;
};

#endif
