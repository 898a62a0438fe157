/* The whizbangd server: the core state, the listener, signals and shutdown,
 * the bridge to the writer thread, and the table of modules that handle
 * requests (DESIGN.md §3).
 *
 * main.c uses srv_init() and srv_close(); the modules (srv_events.c,
 * srv_lease.c, srv_proj.c, srv_sub.c, srv_consumer.c, srv_backup.c,
 * metrics.c) use the rest of this header, and none of them calls another
 * by name but metrics.c, which reads the subscriptions' figures and the
 * tokens allowed to scrape.
 * Everything here runs on the loop thread unless a comment says otherwise. */
#ifndef WB_SERVER_H
#define WB_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "conn.h"
#include "module.h"
#include "reply.h"
#include "storage.h"
#include "writer.h"

struct srv;

struct wal;

/* Opens cfg's store as a start does: in log mode (cfg->durability "log")
 * the checkpoint is restored and the log replayed, and *wal receives the open
 * log; in sync mode *wal is NULL, and a store last run in log mode is first
 * recovered that way and its log removed. Used by srv_init() and by the
 * tools that work on a stopped store (whizbangd replay, check). On failure
 * nothing is open and errmsg says why. */
int srv_open_store(const struct srv_config *cfg, struct storage **st, struct wal **wal,
                   char *errmsg, size_t errlen);

/* Opens the store in cfg->data_dir, sets every module up (ledger recovery
 * included), starts the writer thread, listens on cfg->listen (or on the
 * socket systemd passed), writes cfg->port_file when set, and installs
 * SIGTERM/SIGINT handlers that shut the server down cleanly. Keeps loop
 * and a copy of cfg until srv_close(). On failure nothing is left running,
 * errmsg says why, and *out is not written. */
int srv_init(struct srv **out, uv_loop_t *loop, const struct srv_config *cfg, char *errmsg,
             size_t errlen);

/* Begins a clean shutdown, as SIGTERM does: uv_run() returns once every
 * answer is written and every handle closed (or after
 * --shutdown-timeout-ms). Nothing when one began already. */
void srv_shutdown(struct srv *srv);

/* Commits what the writer still holds, closes every module and the store,
 * and frees srv. Call after uv_run() has returned (the loop ends once a
 * shutdown has closed every handle). */
void srv_close(struct srv *srv);

/* Loads the TLS certificate, key and CAs again from their files, as SIGHUP
 * does (and the Reload request): new connections (and the metrics listener,
 * through the modules' reload hooks) get them, open connections keep what
 * they began with. Nothing without a certificate set. *tls_not_after gets
 * the expiry of the certificate served afterwards (0: none). Returns 0, or an
 * error with errmsg (logged as reload_failed; what failed to load is not
 * served, what was served before stays). */
int srv_reload(struct srv *srv, int64_t *tls_not_after, char *errmsg, size_t errlen);

/* Every module's figures for c (their conn_figures hooks) added into info. */
void srv_conn_figures(struct srv *srv, const struct conn *c, Whizbang__V1__ClientInfo *info);

/* The connections, for ListClients and Disconnect. */
struct conns *srv_conns(struct srv *srv);

/* ------------------------------------------------------------ modules */

/* The modules, in the order they are set up (server.c's table). */
extern const struct srv_module srv_events_module;
extern const struct srv_module srv_lease_module;
extern const struct srv_module srv_proj_module;
extern const struct srv_module srv_sub_module;
extern const struct srv_module srv_consumer_module;
extern const struct srv_module srv_backup_module;
extern const struct srv_module srv_metrics_module;
extern const struct srv_module srv_auth_module;
extern const struct srv_module srv_clients_module;
extern const struct srv_module srv_quota_module;

/* A client identity, for quotas: "user:NAME" (the user, or token:ID, that
 * c authenticated as) or "addr:HOST" (its address without the port, or
 * unix:... for the Unix socket). */
#define SRV_IDENTITY_MAX 300u
void srv_identity(const struct srv *srv, const struct conn *c, char key[SRV_IDENTITY_MAX]);

/* Per-identity quotas (srv_quota.c). srv_quota_admit(): whether c's next
 * frame, of len bytes, is taken now: not while c's identity waits out a
 * refusal backoff (c is then paused until it ends); a frame taken is charged
 * to the identity's request and byte rates, and c is paused after it when
 * they are in debt. srv_quota_refused(): c was refused by a quota or a cost
 * limit; it and its identity's other connections wait a backoff that grows
 * while refusals keep coming. srv_quota_hello(): c said Hello and is bound
 * to its identity now; 0, or RESOURCE_EXHAUSTED with msg past
 * --max-connections-per-identity. srv_quota_same_identity(): a and b count
 * under one identity. srv_quota_identity(): c's ("" before its first
 * frame). */
bool srv_quota_admit(struct srv *srv, struct conn *c, uint32_t len);
void srv_quota_refused(struct srv *srv, struct conn *c);
int srv_quota_hello(struct srv *srv, struct conn *c, char *msg, size_t msglen);
bool srv_quota_same_identity(const struct srv *srv, const struct conn *a, const struct conn *b);
/* The lease account (lease/lease.h) of c's identity, which lives while a
 * lease counts in it; NULL for no quota (--max-leases-per-identity 0, the
 * admin role, or no memory for it: the grant goes on, bounded by the
 * server-wide limits). */
struct lease_account;
struct lease_account *srv_quota_lease_account(struct srv *srv, struct conn *c);
const char *srv_quota_identity(const struct srv *srv, const struct conn *c);
/* The push work c's identity had in one pass of the subscription pump
 * (srv_sub.c): all its subscriptions together get one subscription's
 * share a pass, so that a thousand of them cost the loop what one does.
 * The pump starts a share afresh when pass is not its own. Scheduling,
 * not a quota: the admin role has one too. NULL: no memory for an
 * identity (the pump then bounds c by its subscriptions alone). */
struct srv_push_share {
	uint64_t pass;
	uint32_t items;
	uint64_t bytes;
};
struct srv_push_share *srv_quota_push_share(struct srv *srv, struct conn *c);

/* Whether c acts as the built-in admin role, which no quota limits. */
bool srv_conn_is_admin(const struct conn *c);

/* Who c authenticated as (srv_auth.c): the user, or "token:ID"; NULL when
 * it did not. Valid until c's next Hello. */
const char *srv_auth_user(const struct srv *srv, const struct conn *c);

struct auth_token_record;
/* The tokens (srv_auth.c) whose role allows perm of kind with the name "":
 * copies of up to cap of their records into out (revoked ones left out,
 * expired ones not: auth_token_check() refuses them by the clock). Returns
 * how many there are, which may exceed cap. For /metrics' bearer tokens. */
size_t srv_auth_tokens_allowed(const struct srv *srv, unsigned kind, uint32_t perm,
                               struct auth_token_record *out, size_t cap);

/* The subscriptions' figures for /metrics (srv_sub.c): how many are open,
 * and how far behind they are: positions of $all up to last_position and
 * ledger sequences up to watermark not yet pushed (a $all subscription's
 * filters are not applied; stream subscriptions count no lag). */
void srv_sub_figures(const struct srv *srv, uint64_t last_position, uint64_t watermark,
                     size_t *count, uint64_t *lag_total, uint64_t *lag_max);

/* The state of module m (as its init set it), or NULL. */
void *srv_module_state(const struct srv *srv, const struct srv_module *m);

/* ------------------------------------------------------------ core state */

uv_loop_t *srv_loop(const struct srv *srv);
const struct srv_config *srv_config(const struct srv *srv);
struct storage *srv_storage(const struct srv *srv);

/* True once a shutdown began. */
bool srv_shutting_down(const struct srv *srv);

/* True when recovered, listening and not shutting down (/health/ready). */
bool srv_ready(const struct srv *srv);

/* The largest event the server accepts (--max-frame less the envelope). */
uint32_t srv_max_event_size(const struct srv *srv);

/* The max_count a read is served with: 0, or more than --max-read-count,
 * reads --max-read-count. */
uint32_t srv_clamp_count(const struct srv *srv, uint32_t asked);

/* Bytes of envelope allowed for around the items of a read answer: a page
 * of events or ledger entries fills at most max_frame minus this. */
#define SRV_READ_ENVELOPE 4096u

/* The page budget of a read answer: --max-frame less SRV_READ_ENVELOPE. */
size_t srv_page_budget(const struct srv *srv);

/* A new subscription id, unique in this process (subscriptions and
 * consumer-group memberships share them). */
uint64_t srv_new_subscription_id(struct srv *srv);

/* Wall clock, microseconds since the epoch. Any thread. */
uint64_t srv_wall_us(void);

/* What crossed the wire (conn.h), for the figures. */
struct conn_counters *srv_counters(struct srv *srv);

/* Fills s with every figure of GetStats: the core's, the writer's, the
 * store's and each module's (stats hook). Strings and arrays it sets stay
 * valid until the next call. Used by GetStats and /metrics alike. */
void srv_fill_stats(struct srv *srv, Whizbang__V1__ServerStats *s);

/* The writer's figures (histograms for /metrics). */
void srv_writer_stats(const struct srv *srv, struct writer_stats *out);

/* ------------------------------------------------------------ writes */

struct srv_op;

/* Runs on the loop thread once the op's batch is durable (or failed:
 * op->base.status). It answers (when op->conn is set and not closing) and
 * frees the op, or submits it again. */
typedef void (*srv_done_fn)(struct srv *srv, struct srv_op *op);

/* A write for the writer thread. Embed it first in the op's own struct
 * and set base.apply (runs on the writer thread), base.size_hint, done,
 * conn (NULL for the server's own writes) and req_id. */
struct srv_op {
	struct writer_op base; /* first */
	srv_done_fn done;
	struct conn *conn;
	uint64_t req_id;
	size_t held; /* srv_submit(): base.size_hint, counted for conn until done */
};

/* Hands op to the writer; op->done fires on the loop once its batch is
 * durable or failed. op->conn is held until then, and base.size_hint bytes
 * are counted against the memory budget for it (CONN_MEM_WRITES). */
void srv_submit(struct srv *srv, struct srv_op *op);

/* Work for c off the loop (a libuv worker): begin holds c and counts the
 * work, so neither c nor the server goes away before it ends; done ends
 * it (on the loop, after the answer was queued) and flushes. */
void srv_work_begin(struct srv *srv, struct conn *c);
void srv_work_done(struct srv *srv, struct conn *c);

/* Writes every connection's queued output and completes a shutdown that
 * waits for nothing more. The end of every loop callback of a module
 * (timers, async wake-ups) calls it. */
void srv_flush(struct srv *srv);

#endif
