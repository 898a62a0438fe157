/* whizbangd internals shared by the files of server/ (srv.c: connections
 * and events; lease_srv.c: leases and the ledger). Loop thread only, except
 * where a comment says otherwise. */
#ifndef WB_SRV_INT_H
#define WB_SRV_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "lease.h"
#include "storage.h"
#include "whizbang.pb-c.h"
#include "writer.h"

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

struct lsrv;
struct ssrv;
struct csrv;
struct scavenge;
struct msrv;

/* The most sequences one Lease may ask for (--max-lease-count's bound). */
#define LEASE_COUNT_MAX 1024u

struct conn {
	uv_tcp_t tcp; /* first: the handle's data points back here anyway */
	uv_timer_t timer;
	struct srv *srv;
	struct conn *prev, *next; /* srv->conns */
	struct conn *dirty_next;  /* srv->dirty, when dirty */
	uint64_t id;
	char peer[64];
	char name[64];
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_len, out_cap;
	size_t out_pending; /* bytes in writes not yet completed */
	size_t inflight;    /* ops of this connection with the writer */
	struct lease_owner leases;
	int handles_open;
	bool hello_done;
	bool closing;
	bool dirty;
	bool reading;
	bool close_after_flush;
	bool timer_active;
};

struct srv_op;

/* Runs on the loop thread once the op's batch is durable (or failed: see
 * op->base.status). It answers (when op->conn is set and not closing) and
 * frees the op. The connection's in-flight count has been dropped already. */
typedef void (*srv_done_fn)(struct srv *srv, struct srv_op *op);

/* A write for the writer thread. Embed it first in the op's own struct. */
struct srv_op {
	struct writer_op base; /* first */
	srv_done_fn done;
	struct conn *conn; /* NULL for the server's own writes */
	uint64_t req_id;
};

struct srv {
	uv_loop_t *loop;
	struct srv_config cfg;
	struct storage *st;
	struct writer *writer;
	struct lsrv *lsrv;
	uv_tcp_t listener;
	uv_async_t async;
	pthread_mutex_t async_mu;
	bool async_closed;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	uv_timer_t shutdown_timer;
	struct conn *conns;
	struct conn *dirty;
	size_t nconns;
	size_t inflight;
	uint64_t next_conn_id;
	uint64_t start_ms;
	uint32_t max_event_size;
	bool shutting_down;
	bool listener_open;
	/* figures for GetStats */
	uint64_t connections_total;
	uint64_t requests_total;
	uint64_t errors_total;
	uint64_t events_appended;
	uint64_t queries;
	bool verifying;
	/* Subscription ids, shared by sub_srv.c and consumer_srv.c */
	uint64_t next_subscription_id;
	struct ssrv *ssrv;
	struct csrv *csrv;
	/* The Scavenge running, if any (one at a time) */
	struct scavenge *scavenge;
	/* Production (issue 6) */
	struct msrv *msrv;     /* metrics and health over HTTP */
	struct sysd *sysd;     /* systemd keep-alives, after READY=1 (systemd.c) */
	bool ready;            /* recovered and listening, not shutting down */
	bool backing_up;       /* a Backup is running (one at a time) */
	/* Figures by request body and by error code, for the metrics. */
	uint64_t requests_by_body[64];
	uint64_t errors_by_code[32];
};

/* Bytes of envelope allowed for around the items of a read answer: a page
 * of events or ledger entries fills at most max_frame minus this. */
#define READ_ENVELOPE 4096u

/* The max_count a read is served with: 0 or more than --max-read-count
 * reads --max-read-count. */
uint32_t srv_clamp_count(const struct srv *srv, uint32_t asked);

/* Wall clock, microseconds since the epoch. Any thread. */
uint64_t srv_wall_us(void);

/* Parses "HOST:PORT" (IPv4, [IPv6], or localhost) of the option named
 * option into *ss. 0, or -1 with a sentence naming the option in errmsg. */
int srv_parse_addr(const char *option, const char *text, struct sockaddr_storage *ss,
                   char *errmsg, size_t errlen);

/* Writes port (decimal, newline) to path atomically (a temporary file,
 * then rename). 0, or -1 with the reason in errmsg. */
int srv_write_port_file(const char *path, int port, char *errmsg, size_t errlen);

/* Packs resp into c's output (written at the end of the loop turn). */
void srv_send(struct conn *c, const Response *resp);

/* Queues an already packed Response (n bytes) on c, framed. */
void srv_send_packed(struct conn *c, const uint8_t *resp, size_t n);

/* Work off the loop (a libuv worker) for c: begin counts it in flight, so
 * neither c nor the server goes away before it ends; done ends it (on the
 * loop, after the answer). */
void srv_work_begin(struct srv *srv, struct conn *c);
void srv_work_done(struct srv *srv, struct conn *c);

/* Answers request id on c with an error: code, and a message from fmt. */
void srv_send_error(struct conn *c, uint64_t id, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Answers a storage failure (rc) of the call named what. */
void srv_send_storage_error(struct conn *c, uint64_t id, int rc, const char *what);

/* Writes every connection's queued output (end of a callback). */
void srv_flush(struct srv *srv);

/* Hands op to the writer; op->done fires on the loop when it is durable. */
void srv_submit(struct srv *srv, struct srv_op *op);

/* ---- lease_srv.c ---- */

/* Recovers the ledger (restart gaps, staged work) and builds the lease table.
 * Runs before the listener opens. */
int lsrv_init(struct srv *srv, char *errmsg, size_t errlen);

/* Frees the lease state (after the writer has drained). */
void lsrv_close(struct srv *srv);

/* Handles a lease or ledger request. Returns true when it kept req (it is
 * then freed by the op that answers it). */
bool lsrv_dispatch(struct conn *c, Request *req);

/* A connection is closing: release its RELEASE leases, drop its waiters. */
void lsrv_conn_closed(struct conn *c);

/* Stops the lease timers at shutdown. */
void lsrv_shutdown(struct srv *srv);

/* ---- proj_srv.c ---- */

/* Handles GetEntity, QueryEntities, Explain, ListIndexes and Verify on a
 * worker thread. Returns true when it kept req (freed after the answer). */
bool psrv_dispatch(struct conn *c, Request *req);

/* Removes the scratch stores of a Verify that a crash interrupted
 * (DATA_DIR/.verify-*), at start-up. */
void psrv_remove_leftovers(const char *data_dir);

/* ---- sub_srv.c: catch-up subscriptions (Subscribe, Credit, Unsubscribe) ----
 *
 * The loop calls these hooks; the module keeps its state in srv->ssrv. */

/* Sets srv->ssrv up (before the listener opens). */
int ssrv_init(struct srv *srv, char *errmsg, size_t errlen);
/* Frees it (after the writer has drained). */
void ssrv_close(struct srv *srv);
/* Handles Subscribe; Credit and Unsubscribe for subscriptions it owns
 * (ssrv_owns()). Returns true when it kept req. */
bool ssrv_dispatch(struct conn *c, Request *req);
/* True when subscription id on c is one of this module's. */
bool ssrv_owns(struct conn *c, uint64_t id);
/* Something may be due: events committed (after every batch), the
 * watermark moved, credits arrived or output drained. Pushes within
 * credits and output bounds. */
void ssrv_pump(struct srv *srv);
/* c is closing: free its subscriptions. */
void ssrv_conn_closed(struct conn *c);
/* Shutdown began: stop timers, push nothing more. */
void ssrv_shutdown(struct srv *srv);
/* For the metrics, on the loop: *count live subscriptions, and how far
 * behind they are: positions of $all up to last_position and ledger
 * sequences up to watermark not yet pushed (a $all subscription's filters
 * are not applied; stream subscriptions count no lag). */
void ssrv_figures(struct srv *srv, uint64_t last_position, uint64_t watermark, size_t *count,
                  uint64_t *lag_total, uint64_t *lag_max);

/* ---- consumer_srv.c: durable consumer groups ----
 * The same hooks for CreateConsumer, DeleteConsumer, ListConsumers,
 * JoinConsumer, Ack, Nack, ListParked, ReplayParked, and Credit and
 * Unsubscribe of joined members. */
int csrv_init(struct srv *srv, char *errmsg, size_t errlen);
void csrv_close(struct srv *srv);
bool csrv_dispatch(struct conn *c, Request *req);
bool csrv_owns(struct conn *c, uint64_t id);
void csrv_pump(struct srv *srv);
void csrv_conn_closed(struct conn *c);
void csrv_shutdown(struct srv *srv);

/* ---- systemd.c: readiness, watchdog and socket activation (libsystemd,
 * optional at build time: without it these do nothing and return -1) ---- */

/* A listening socket passed by systemd (LISTEN_FDS), or -1. */
int sysd_listen_fd(void);
/* The data directory is recovered and the listener open: READY=1, and
 * the watchdog keep-alives start from the loop when WATCHDOG_USEC asks. */
void sysd_ready(struct srv *srv);
/* Shutdown began: STOPPING=1; the keep-alive timer is closed. */
void sysd_stopping(struct srv *srv);

/* ---- metrics.c: Prometheus /metrics, /health/live, /health/ready over
 * libmicrohttpd on --metrics-listen, served from its own thread ---- */
int msrv_init(struct srv *srv, char *errmsg, size_t errlen);
/* Shutdown began: /health/ready answers 503 from now on. */
void msrv_shutdown(struct srv *srv);
/* Stops the HTTP thread and frees (after the loop ended). NULL state ok. */
void msrv_close(struct srv *srv);

/* ---- backup_srv.c: Backup {path} ---- */
bool bsrv_dispatch(struct conn *c, Request *req);

/* Fills le from the ledger entry e as ReadLedger and ledger subscriptions
 * show it. names (512 bytes) receives the projection (at 0) and the
 * operation id (at 256), NUL-terminated, and le points into it; *list the
 * unpacked ops, which le points into (the caller frees *list with
 * whizbang__v1__op_list__free_unpacked(); NULL when the entry has none).
 * WB_E_CORRUPT when the stored ops do not decode. */
struct ledger_entry;
int lsrv_ledger_entry_pb(const struct ledger_entry *e, char names[512],
                         Whizbang__V1__LedgerEntry *le, Whizbang__V1__OpList **list);

/* Adds the lease and ledger figures to s. Strings and arrays it sets stay
 * valid until the next call. */
void lsrv_fill_stats(struct srv *srv, Whizbang__V1__ServerStats *s);

#endif
