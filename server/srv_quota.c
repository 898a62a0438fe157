/* Per-identity quotas (issue 13; docs/OPERATIONS.md "Connections").
 *
 * An identity is what srv_identity() names: the user (or token) a
 * connection authenticated as, or before that its address. Every
 * connection is bound to one on its first frame and again after each
 * Hello. The identity holds what its connections share:
 *
 * - request and byte rates (--max-identity-requests-per-second,
 *   --max-identity-bytes-per-second): token buckets holding a second's
 *   worth. A frame is always handled; past the bucket, the connection is
 *   not read (conn_pause()) until its debt is paid, so that a client is
 *   slowed by TCP rather than answered with errors it would retry at once;
 * - a backoff after refusals (--refusal-backoff): a request refused by a
 *   quota or a cost limit (srv_quota_refused()) pauses the connection 1 ms,
 *   then 2, 4, ... up to the setting while refusals keep coming, and no
 *   frame of any connection of the identity is taken (srv_quota_admit())
 *   until the pause ends; a connection's Hello excepted, which may move it
 *   from its address to another identity.
 *   Refusing costs the server little, but a client that retries at once
 *   can make it refuse a hundred thousand times a second; the backoff
 *   makes that a handful. A second without a refusal (after the pause)
 *   clears it;
 * - leases (--max-leases-per-identity): the lease table counts them into
 *   the identity's account (srv_quota_lease_account());
 * - connections (--max-connections-per-identity, checked at Hello: a
 *   connection's identity before authentication is its address, which
 *   --max-connections-per-address bounds at accept) and subscriptions
 *   (--max-subscriptions-per-identity, srv_quota_may_subscribe()).
 *
 * The admin role is exempt from all of it. An identity without
 * connections is kept while it still owes (a debt in a bucket, a pause, a
 * recent refusal), so reconnecting clears nothing; such leftovers are swept
 * once there are many more identities than connections. Nothing here is
 * logged or replayed: it decides when requests are read, never what they
 * do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "lease.h"
#include "log.h"
#include "module.h"
#include "reply.h"
#include "server.h"
#include "wb_error.h"

#define QUOTA_BUCKETS 1024u
/* The first pause after a refusal, doubled per further refusal. */
#define BACKOFF_FIRST_MS 1u
/* A refusal this long after the last pause ended starts afresh. */
#define BACKOFF_FORGET_MS 1000u

struct ident {
	struct ident *next; /* in its hash bucket */
	char key[SRV_IDENTITY_MAX];
	uint32_t conns; /* bound connections */
	int64_t req_tokens, byte_tokens;
	uint64_t req_ms, byte_ms; /* when the buckets were last filled */
	uint32_t strikes;         /* refusals in a row (BACKOFF_FORGET_MS apart at most) */
	uint64_t pause_until;     /* loop ms: its connections take no frame before */
	uint64_t last_refusal_ms;
	/* Its leases (--max-leases-per-identity), counted by the lease table
	 * (lease/lease.h), those its closed connections left included: the
	 * identity is kept while one counts in it. */
	struct lease_account leases;
	struct srv_push_share push; /* srv_quota_push_share() */
};

/* A connection's slot. */
struct qconn {
	struct ident *id;
	uint64_t pauses; /* times it was paused for its identity (ClientInfo) */
};

struct quota {
	struct srv *srv;
	unsigned slot;
	struct ident *buckets[QUOTA_BUCKETS];
	size_t nidents;
	uint64_t pauses;   /* connections paused for a rate or a backoff */
	uint64_t refusals; /* srv_quota_refused() calls that counted */
};

static struct quota *state_of(const struct srv *srv)
{
	return srv_module_state(srv, &srv_quota_module);
}

static size_t bucket_of(const char *key)
{
	/* FNV-1a */
	uint64_t h = 1469598103934665603u;
	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211u;
	return (size_t)(h % QUOTA_BUCKETS);
}

/* Whether id may go: no connection, nothing owed, no pause to wait out,
 * no refusal recent enough to count. */
static bool forgettable(const struct ident *id, uint64_t now)
{
	return id->conns == 0 && id->leases.active == 0 && id->req_tokens >= 0 &&
	       id->byte_tokens >= 0 && now >= id->pause_until + BACKOFF_FORGET_MS &&
	       now >= id->last_refusal_ms + BACKOFF_FORGET_MS;
}

static void sweep(struct quota *q, uint64_t now)
{
	for (size_t b = 0; b < QUOTA_BUCKETS; b++) {
		struct ident **pp = &q->buckets[b];
		while (*pp != NULL) {
			struct ident *id = *pp;
			if (forgettable(id, now)) {
				*pp = id->next;
				free(id);
				q->nidents--;
			} else {
				pp = &id->next;
			}
		}
	}
}

static void unbind(struct quota *q, struct qconn *qc)
{
	struct ident *id = qc->id;
	qc->id = NULL;
	if (id == NULL || --id->conns > 0)
		return;
	if (!forgettable(id, uv_now(srv_loop(q->srv))))
		return; /* kept while it owes; sweep() frees it later */
	struct ident **pp = &q->buckets[bucket_of(id->key)];
	while (*pp != id)
		pp = &(*pp)->next;
	*pp = id->next;
	free(id);
	q->nidents--;
}

/* c's slot, bound to its identity now; NULL when out of memory (c then goes
 * unlimited by identity, bounded by the server-wide limits). */
static struct qconn *bind_identity(struct quota *q, struct conn *c)
{
	struct qconn *qc = conn_slot(c, q->slot);
	if (qc == NULL) {
		qc = calloc(1, sizeof(*qc));
		if (qc == NULL)
			return NULL;
		conn_set_slot(c, q->slot, qc);
	}
	char key[SRV_IDENTITY_MAX];
	srv_identity(q->srv, c, key);
	if (qc->id != NULL && strcmp(qc->id->key, key) == 0)
		return qc;
	unbind(q, qc);
	uint64_t now = uv_now(srv_loop(q->srv));
	size_t b = bucket_of(key);
	struct ident *id = q->buckets[b];
	while (id != NULL && strcmp(id->key, key) != 0)
		id = id->next;
	if (id == NULL) {
		if (q->nidents >= 2 * conns_open(srv_conns(q->srv)) + 64)
			sweep(q, now);
		id = calloc(1, sizeof(*id));
		if (id == NULL)
			return qc;
		snprintf(id->key, sizeof(id->key), "%s", key);
		const struct srv_config *cfg = srv_config(q->srv);
		id->req_tokens = (int64_t)cfg->max_identity_requests_per_s;
		id->byte_tokens = (int64_t)cfg->max_identity_bytes_per_s;
		id->req_ms = id->byte_ms = now;
		id->next = q->buckets[b];
		q->buckets[b] = id;
		q->nidents++;
	}
	id->conns++;
	qc->id = id;
	return qc;
}

/* The identity c counts under: bound on its first call (then again after
 * each Hello, srv_quota_hello()); NULL when out of memory. */
static struct ident *identity_of(struct quota *q, struct conn *c)
{
	struct qconn *qc = conn_slot(c, q->slot);
	if (qc == NULL || qc->id == NULL)
		qc = bind_identity(q, c);
	return qc != NULL ? qc->id : NULL;
}

/* Charges n against a bucket of rate per second holding at most burst;
 * returns the ms until it is out of debt (0: none). */
static uint64_t charge(int64_t *tokens, uint64_t *last_ms, uint64_t rate, uint64_t burst,
                       uint64_t now, uint64_t n)
{
	if (rate == 0)
		return 0;
	uint64_t earned = (now - *last_ms) * rate / 1000;
	if (earned > 0)
		*last_ms = now;
	int64_t t = *tokens + (int64_t)(earned > burst ? burst : earned);
	if (t > (int64_t)burst)
		t = (int64_t)burst;
	t -= (int64_t)n;
	*tokens = t;
	if (t >= 0)
		return 0;
	uint64_t wait = ((uint64_t)-t * 1000 + rate - 1) / rate;
	return wait > 0 ? wait : 1;
}

static void pause_conn(struct quota *q, struct conn *c, struct qconn *qc, uint64_t ms)
{
	conn_pause(c, ms);
	qc->pauses++;
	q->pauses++;
}

bool srv_quota_admit(struct srv *srv, struct conn *c, uint32_t len)
{
	struct quota *q = state_of(srv);
	struct ident *id = identity_of(q, c);
	if (id == NULL)
		return true;
	struct qconn *qc = conn_slot(c, q->slot);
	const struct srv_config *cfg = srv_config(srv);
	uint64_t now = uv_now(srv_loop(srv));
	if ((cfg->max_identity_requests_per_s == 0 && cfg->max_identity_bytes_per_s == 0 &&
	     now >= id->pause_until) ||
	    srv_conn_is_admin(c))
		return true;
	/* Backing off: the frame waits. Before its Hello a connection counts
	 * under its address, which it may share with a client that backs off
	 * (another process of the host): its Hello, which names who it is,
	 * does not wait for that. */
	if (now < id->pause_until && conn_greeted(c)) {
		pause_conn(q, c, qc, id->pause_until - now);
		return false;
	}
	uint64_t wait = 0;
	uint64_t rate = cfg->max_identity_requests_per_s;
	uint64_t w = charge(&id->req_tokens, &id->req_ms, rate, rate, now, 1);
	wait = w > wait ? w : wait;
	rate = cfg->max_identity_bytes_per_s;
	uint64_t burst = rate > cfg->max_frame + 16 ? rate : cfg->max_frame + 16;
	w = charge(&id->byte_tokens, &id->byte_ms, rate, burst, now, (uint64_t)len + 4);
	wait = w > wait ? w : wait;
	if (wait > 0)
		pause_conn(q, c, qc, wait);
	return true;
}

void srv_quota_refused(struct srv *srv, struct conn *c)
{
	struct quota *q = state_of(srv);
	uint64_t max = srv_config(srv)->refusal_backoff_ms;
	if (max == 0 || conn_is_closing(c) || srv_conn_is_admin(c))
		return;
	struct ident *id = identity_of(q, c);
	if (id == NULL)
		return;
	struct qconn *qc = conn_slot(c, q->slot);
	uint64_t now = uv_now(srv_loop(srv));
	uint64_t ended =
	        id->pause_until > id->last_refusal_ms ? id->pause_until : id->last_refusal_ms;
	if (now >= ended + BACKOFF_FORGET_MS)
		id->strikes = 0;
	if (id->strikes < 32)
		id->strikes++;
	id->last_refusal_ms = now;
	uint64_t ms = id->strikes > 20 ? max : (uint64_t)BACKOFF_FIRST_MS << (id->strikes - 1);
	if (ms > max)
		ms = max;
	if (now + ms > id->pause_until)
		id->pause_until = now + ms;
	q->refusals++;
	pause_conn(q, c, qc, id->pause_until - now);
}

int srv_quota_hello(struct srv *srv, struct conn *c, char *msg, size_t msglen)
{
	struct quota *q = state_of(srv);
	struct qconn *qc = bind_identity(q, c);
	uint64_t max = srv_config(srv)->max_connections_per_identity;
	if (qc == NULL || qc->id == NULL || max == 0 || srv_conn_is_admin(c) ||
	    strncmp(qc->id->key, "user:", 5) != 0 || qc->id->conns <= max)
		return 0;
	snprintf(msg, msglen,
	         "%s has %u connections open, the most one identity may "
	         "(--max-connections-per-identity): this one is closed; close one or share one",
	         qc->id->key + 5, qc->id->conns - 1u);
	srv_quota_refused(srv, c);
	return WB_RESOURCE_EXHAUSTED;
}

struct srv_push_share *srv_quota_push_share(struct srv *srv, struct conn *c)
{
	struct ident *id = identity_of(state_of(srv), c);
	return id != NULL ? &id->push : NULL;
}

struct lease_account *srv_quota_lease_account(struct srv *srv, struct conn *c)
{
	struct quota *q = state_of(srv);
	uint64_t max = srv_config(srv)->max_leases_per_identity;
	if (max == 0 || srv_conn_is_admin(c))
		return NULL;
	struct ident *id = identity_of(q, c);
	if (id == NULL)
		return NULL;
	id->leases.max = max;
	return &id->leases;
}

bool srv_quota_same_identity(const struct srv *srv, const struct conn *a, const struct conn *b)
{
	const struct quota *q = state_of(srv);
	const struct qconn *qa = conn_slot(a, q->slot), *qb = conn_slot(b, q->slot);
	return a == b || (qa != NULL && qb != NULL && qa->id != NULL && qa->id == qb->id);
}

const char *srv_quota_identity(const struct srv *srv, const struct conn *c)
{
	const struct quota *q = state_of(srv);
	const struct qconn *qc = conn_slot(c, q->slot);
	return qc != NULL && qc->id != NULL ? qc->id->key : "";
}

/* ------------------------------------------------------------ module */

static int quota_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct quota *q = state;
	(void)errmsg;
	(void)errlen;
	q->srv = srv;
	q->slot = slot;
	return 0;
}

static void quota_conn_closed(void *state, struct conn *c)
{
	struct quota *q = state;
	struct qconn *qc = conn_slot(c, q->slot);
	if (qc == NULL)
		return;
	unbind(q, qc);
	conn_set_slot(c, q->slot, NULL);
	free(qc);
}

static void quota_close(void *state)
{
	struct quota *q = state;
	for (size_t b = 0; b < QUOTA_BUCKETS; b++)
		while (q->buckets[b] != NULL) {
			struct ident *id = q->buckets[b];
			q->buckets[b] = id->next;
			free(id);
		}
	q->nidents = 0;
}

static void quota_stats(void *state, Whizbang__V1__ServerStats *s)
{
	const struct quota *q = state;
	s->quota_pauses = q->pauses;
	s->quota_refusals = q->refusals;
}

static void quota_conn_figures(void *state, const struct conn *c, Whizbang__V1__ClientInfo *info)
{
	const struct quota *q = state;
	const struct qconn *qc = conn_slot(c, q->slot);
	if (qc == NULL)
		return;
	info->identity = qc->id != NULL ? (char *)qc->id->key : (char *)"";
	info->quota_pauses = qc->pauses;
}

const struct srv_module srv_quota_module = {
        .name = "quota",
        .size = sizeof(struct quota),
        .init = quota_init,
        .conn_closed = quota_conn_closed,
        .close = quota_close,
        .stats = quota_stats,
        .conn_figures = quota_conn_figures,
};
