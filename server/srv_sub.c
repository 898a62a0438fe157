/* Catch-up subscriptions (DESIGN.md §5, docs/SUBSCRIPTIONS.md): Subscribe,
 * Credit and Unsubscribe to $all, one stream, or the operation ledger.
 *
 * Happy path: a subscription is a cursor, never a buffer: the connection,
 * the Subscribe's request id, the target and filters, the next position
 * (a $all position, a stream version or a ledger sequence) and the credits
 * left. The pump reads from each cursor in a short read transaction on the
 * loop and packs one SubscriptionItem per event (entry) straight into the
 * connection's output while the snapshot is open. Catch-up and live are
 * the same read, so the switch-over has no gap and no duplicate by
 * construction: whatever committed after the snapshot is read by a later
 * pump, which the server runs after every answered writer batch (and so
 * after every watermark move) and after a connection's output drained. The first
 * time a cursor reaches the end of its snapshot it pushes caught_up, once.
 *
 * Bounds: one pump reads at most PUMP_ITEMS items (PUMP_BYTES bytes) and
 * examines at most PUMP_EXAMINED events per subscription, and pushes at
 * most as much for all the subscriptions of one client identity together
 * (srv_quota_push_share()): fifty subscriptions catching up cost a pass
 * what one does, and the loop's time between passes goes to the other
 * clients. The pass starts one subscription further each time, so that
 * an identity's share goes round its subscriptions. When a subscription
 * has more due after its share, an idle handle runs the pump again on the
 * next loop turn (after I/O was polled) and stops when nothing is due. A
 * subscription with no credits, or whose connection holds --push-buffer
 * (what the kernel holds for the peer included), is skipped (paused):
 * however far behind it falls, it costs its cursor; one that waits only
 * for its peer to read is looked at again after RECHECK_MS.
 *
 * Failure modes: bad input is answered BAD_REQUEST (RESOURCE_EXHAUSTED past
 * --max-subscriptions-per-connection subscriptions on one connection, SHUTTING_DOWN during
 * shutdown) and nothing is kept. A storage error while pushing ends the
 * subscription with an error Response tagged with its id. A closed
 * connection frees its subscriptions at once; while the pump runs (a push
 * may close a connection that ran out of memory) they are only marked and
 * freed when the pump ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "ledger.h"
#include "log.h"
#include "pb.h"
#include "server.h"
#include "validate.h"
#include "wb_error.h"

/* Per subscription and pump: items pushed, bytes pushed, events examined
 * (a filter that matches nothing still costs examining). */
#define PUMP_ITEMS 256u
#define PUMP_BYTES (1u << 20)
#define PUMP_EXAMINED 10000u
/* Credits beyond this are capped (the sum cannot overflow). */
#define SUB_MAX_CREDITS (UINT64_C(1) << 62)

struct sub {
	struct sub *prev, *next; /* ss->subs */
	struct conn *conn;
	uint64_t id;     /* the subscription id */
	uint64_t req_id; /* the Subscribe's request id: pushes carry it */
	Whizbang__V1__SubscriptionTarget target;
	char *stream; /* TARGET_STREAM */
	size_t stream_len;
	char *prefix; /* TARGET_ALL filters */
	size_t prefix_len;
	char **types;
	size_t *type_lens;
	size_t ntypes;
	uint64_t pos; /* next position, version or sequence to deliver */
	uint64_t credits;
	bool caught_up_sent;
	bool dead; /* its connection closed during a pump: freed after it */
};

struct subs {
	struct srv *srv;
	uv_idle_t idle;
	struct sub *subs;
	size_t nsubs;
	bool idle_active;
	bool idle_open;
	bool pumping;
	bool shut;
	bool dead_pending;
	uint64_t pass; /* pumps run: the identities' shares are per pass */
	/* Runs the pump again while a subscription waits for its peer to read
	 * what the kernel holds (conn_push_waits_for_peer()): nothing else
	 * would. */
	uv_timer_t recheck;
	bool recheck_open;
};

/* How soon a subscription waiting for its peer is looked at again. */
#define RECHECK_MS 20u

/* ------------------------------------------------------------ life cycle */

static void sub_free(struct sub *s)
{
	free(s->stream);
	free(s->prefix);
	for (size_t i = 0; i < s->ntypes; i++)
		free(s->types[i]);
	free(s->types);
	free(s->type_lens);
	free(s);
}

static void sub_unlink(struct subs *ss, struct sub *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		ss->subs = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	ss->nsubs--;
}

static void idle_cb(uv_idle_t *h);
static void recheck_cb(uv_timer_t *h);

static void idle_closed_cb(uv_handle_t *h)
{
	(void)h;
}

static int sub_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct subs *ss = state;
	(void)slot;
	ss->srv = srv;
	int rc = uv_idle_init(srv_loop(srv), &ss->idle);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot set the subscription pump up: %s",
		         uv_strerror(rc));
		return WB_E_IO;
	}
	ss->idle.data = ss;
	ss->idle_open = true;
	rc = uv_timer_init(srv_loop(srv), &ss->recheck);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot set the subscription pump up: %s",
		         uv_strerror(rc));
		ss->idle_open = false;
		uv_close((uv_handle_t *)&ss->idle, idle_closed_cb);
		return WB_E_IO;
	}
	ss->recheck.data = ss;
	ss->recheck_open = true;
	return 0;
}

static void sub_shutdown(void *state)
{
	struct subs *ss = state;
	ss->shut = true;
	if (ss->idle_open) {
		ss->idle_open = false;
		ss->idle_active = false;
		uv_close((uv_handle_t *)&ss->idle, idle_closed_cb);
	}
	if (ss->recheck_open) {
		ss->recheck_open = false;
		uv_close((uv_handle_t *)&ss->recheck, idle_closed_cb);
	}
}

static void sub_close(void *state)
{
	struct subs *ss = state;
	/* The loop has ended, so the idle handle's close has completed
	 * (sub_shutdown always runs before this). */
	while (ss->subs != NULL) {
		struct sub *s = ss->subs;
		sub_unlink(ss, s);
		sub_free(s);
	}
}

static void sub_conn_figures(void *state, const struct conn *c, Whizbang__V1__ClientInfo *info)
{
	const struct subs *ss = state;
	for (const struct sub *s = ss->subs; s != NULL; s = s->next)
		if (s->conn == c && !s->dead)
			info->subscriptions++;
}

static void sub_conn_closed(void *state, struct conn *c)
{
	struct subs *ss = state;
	struct sub *s = ss->subs;
	while (s != NULL) {
		struct sub *next = s->next;
		if (s->conn == c) {
			if (ss->pumping) {
				s->dead = true;
				ss->dead_pending = true;
			} else {
				sub_unlink(ss, s);
				sub_free(s);
			}
		}
		s = next;
	}
}

static struct sub *find_sub(struct subs *ss, const struct conn *c, uint64_t id)
{
	for (struct sub *s = ss->subs; s != NULL; s = s->next)
		if (s->id == id && s->conn == c && !s->dead)
			return s;
	return NULL;
}

static bool sub_owns(void *state, const struct conn *c, uint64_t id)
{
	return find_sub(state, c, id) != NULL;
}

/* Runs the pump on the next loop turn. */
static void kick(struct subs *ss)
{
	if (ss->shut || !ss->idle_open || ss->idle_active)
		return;
	if (uv_idle_start(&ss->idle, idle_cb) == 0)
		ss->idle_active = true;
}

/* ------------------------------------------------------------ pushing */

static void push_item(struct sub *s, Whizbang__V1__SubscriptionItem *item)
{
	item->subscription = s->id;
	SRV_REPLY(s->conn, s->req_id, SUBSCRIPTION_ITEM, subscription_item, item);
}

static void push_caught_up(struct sub *s)
{
	Whizbang__V1__SubscriptionItem item = WHIZBANG__V1__SUBSCRIPTION_ITEM__INIT;
	item.item_case = WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP;
	item.caught_up = true;
	push_item(s, &item);
	s->caught_up_sent = true;
}

/* One subscription's share of a pump, and its identity's. */
struct push {
	struct sub *s;
	struct srv_push_share *share; /* NULL: none */
	uint32_t items;
	size_t bytes;
	uint64_t watermark; /* ledger */
	bool corrupt;
};

/* Whether the identity has had its share of this pass. */
static bool share_spent(const struct push *p)
{
	return p->share != NULL && (p->share->items >= PUMP_ITEMS || p->share->bytes >= PUMP_BYTES);
}

/* May one more item go out now? */
static bool push_may(const struct push *p)
{
	return p->s->credits > 0 && p->items < PUMP_ITEMS && p->bytes < PUMP_BYTES &&
	       !share_spent(p) && conn_can_push(p->s->conn);
}

static void pushed(struct push *p, size_t bytes)
{
	p->s->credits--;
	p->items++;
	p->bytes += bytes;
	if (p->share != NULL) {
		p->share->items++;
		p->share->bytes += bytes;
	}
}

static bool push_event_cb(const struct ev_record *rec, void *arg)
{
	struct push *p = arg;
	if (!push_may(p))
		return false; /* stops before rec: the cursor stays on it */
	struct pb_event_names names;
	Whizbang__V1__RecordedEvent e;
	pb_event_view(rec, &names, &e);
	Whizbang__V1__SubscriptionItem item = WHIZBANG__V1__SUBSCRIPTION_ITEM__INIT;
	item.item_case = WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT;
	item.event = &e;
	push_item(p->s, &item);
	pushed(p, pb_event_size(rec));
	return true;
}

/* The ledger entry as ReadLedger shows it. */
static bool push_entry_cb(const struct ledger_entry *e, void *arg)
{
	struct push *p = arg;
	if (e->seq > p->watermark || !push_may(p))
		return false;
	Whizbang__V1__OpList *list;
	Whizbang__V1__LedgerEntry le;
	struct pb_ledger_names names;
	if (pb_ledger_view(e, &names, &le, &list) != 0) {
		p->corrupt = true;
		return false;
	}
	Whizbang__V1__SubscriptionItem item = WHIZBANG__V1__SUBSCRIPTION_ITEM__INIT;
	item.item_case = WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_ENTRY;
	item.entry = &le;
	push_item(p->s, &item);
	if (list != NULL)
		whizbang__v1__op_list__free_unpacked(list, NULL);
	pushed(p, pb_ledger_size(e));
	return true;
}

/* Ends s with an error tagged with its request id (it is then freed by
 * the pump). */
static void sub_fail(struct sub *s, int rc, const char *what)
{
	srv_log(WB_LOG_ERROR, "subscription_failed", "conn=%llu subscription=%llu op=%s error=%s",
	        (unsigned long long)conn_id(s->conn), (unsigned long long)s->id, what,
	        wb_error_name(rc));
	srv_error(s->conn, s->req_id, rc,
	          "subscription %llu ended: %s failed in storage: %s (subscribe again from "
	          "the last position received)",
	          (unsigned long long)s->id, what, wb_strerror(rc));
	s->dead = true;
}

/* Pushes s's share from the snapshot txn. Returns true when more is due
 * that this pump left (the pump must run again soon). */
static bool pump_one(struct storage_txn *txn, struct sub *s, struct srv_push_share *share,
                     uint64_t last_position, uint64_t watermark, bool *recheck)
{
	struct push p = {.s = s, .share = share, .watermark = watermark};
	struct ev_page page;
	int rc = 0;
	bool at_end = false;

	/* Its identity had its share: due again in the next pass. */
	if (share_spent(&p))
		return s->credits > 0;
	/* What the kernel holds for the peer counts against --push-buffer. */
	if (s->credits > 0 && !conn_push_check(s->conn) && conn_push_waits_for_peer(s->conn))
		*recheck = true;

	switch (s->target) {
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL: {
		if (s->pos > last_position) {
			at_end = true;
			break;
		}
		if (!push_may(&p))
			return false;
		struct ev_filter f = {
		        .prefix = s->prefix,
		        .prefix_len = s->prefix_len,
		        .types = (const char *const *)s->types,
		        .type_lens = s->type_lens,
		        .ntypes = s->ntypes,
		        .max_examined = PUMP_EXAMINED,
		};
		rc = ev_read_all(txn, s->pos, false, PUMP_ITEMS, &f, push_event_cb, &p, &page);
		if (rc == 0) {
			s->pos = page.next;
			at_end = s->pos > page.last;
		}
		break;
	}
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM: {
		struct ev_stream_info info;
		rc = ev_stream_info(txn, s->stream, s->stream_len, &info);
		if (rc == WB_E_NOTFOUND) {
			/* Not written yet: version 0 is the end. */
			rc = 0;
			at_end = true;
			break;
		}
		if (rc != 0)
			break;
		if (info.tombstoned) {
			rc = WB_STREAM_DELETED;
			break;
		}
		/* Versions a delete, truncate_before or max_count hid are
		 * skipped, as reads skip them (a soft-deleted stream hides
		 * all it has: its cursor waits at the next version). */
		uint64_t visible = ev_visible_from(&info);
		if (s->pos < visible)
			s->pos = visible;
		if (s->pos >= info.count) {
			at_end = true;
			break;
		}
		if (!push_may(&p))
			return false;
		rc = ev_read_stream(txn, s->stream, s->stream_len, s->pos, false, PUMP_ITEMS,
		                    push_event_cb, &p, &page);
		if (rc == WB_E_NOTFOUND) {
			rc = 0;
			at_end = true;
		} else if (rc == 0) {
			s->pos = page.next;
			at_end = s->pos >= info.count;
		}
		break;
	}
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER: {
		if (s->pos > watermark) {
			at_end = true;
			break;
		}
		if (!push_may(&p))
			return false;
		uint64_t next;
		rc = ledger_read(txn, s->pos, PUMP_ITEMS, push_entry_cb, &p, &next);
		if (rc == 0 && p.corrupt)
			rc = WB_E_CORRUPT;
		if (rc == 0) {
			s->pos = next;
			at_end = s->pos > watermark;
		}
		break;
	}
	default:
		break;
	}
	if (rc == WB_STREAM_DELETED) {
		srv_error(s->conn, s->req_id, WB_STREAM_DELETED,
		          "subscription %llu ended: stream '%s' was hard-deleted",
		          (unsigned long long)s->id, s->stream);
		s->dead = true;
		return false;
	}
	if (rc != 0) {
		sub_fail(s, rc,
		         s->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER
		                 ? "ReadLedger"
		                 : "reading");
		return false;
	}
	if (at_end) {
		if (!s->caught_up_sent && conn_can_push(s->conn))
			push_caught_up(s);
		return false;
	}
	/* More is stored: due again soon if it may go out, or once the peer
	 * read what the kernel holds. */
	if (s->credits > 0 && conn_push_waits_for_peer(s->conn))
		*recheck = true;
	return s->credits > 0 && conn_can_push(s->conn);
}

static void free_dead(struct subs *ss)
{
	if (!ss->dead_pending)
		return;
	ss->dead_pending = false;
	struct sub *s = ss->subs;
	while (s != NULL) {
		struct sub *next = s->next;
		if (s->dead) {
			sub_unlink(ss, s);
			sub_free(s);
		}
		s = next;
	}
}

static void sub_pump(void *state)
{
	struct subs *ss = state;
	if (ss->shut || ss->pumping)
		return;
	bool more = false, recheck = false;
	if (ss->subs != NULL) {
		struct storage_txn *txn;
		int rc = storage_txn_begin(srv_storage(ss->srv), NULL, STORAGE_RDONLY, &txn);
		if (rc != 0) {
			srv_log(WB_LOG_ERROR, "subscription_pump", "error=%s", wb_error_name(rc));
			kick(ss); /* retried on the next turn */
			return;
		}
		uint64_t last = 0;
		struct ledger_state ls = {0, 0};
		rc = ev_last_position(txn, &last);
		if (rc == 0)
			rc = ledger_get_state(txn, &ls);
		if (rc != 0) {
			storage_txn_abort(txn);
			srv_log(WB_LOG_ERROR, "subscription_pump", "error=%s", wb_error_name(rc));
			kick(ss);
			return;
		}
		ss->pumping = true;
		ss->pass++;
		struct sub *tail = NULL;
		for (struct sub *s = ss->subs; s != NULL; s = s->next) {
			tail = s;
			if (s->dead || conn_is_closing(s->conn))
				continue;
			struct srv_push_share *share = srv_quota_push_share(ss->srv, s->conn);
			if (share != NULL && share->pass != ss->pass)
				*share = (struct srv_push_share){.pass = ss->pass};
			if (pump_one(txn, s, share, last, ls.watermark, &recheck))
				more = true;
			if (s->dead)
				ss->dead_pending = true;
		}
		/* The next pass starts one further: the first goes last. */
		struct sub *head = ss->subs;
		if (head != NULL && tail != head) {
			ss->subs = head->next;
			ss->subs->prev = NULL;
			head->prev = tail;
			head->next = NULL;
			tail->next = head;
		}
		ss->pumping = false;
		/* Everything pushed was packed: only now may the snapshot go. */
		storage_txn_abort(txn);
		free_dead(ss);
	}
	if (more) {
		kick(ss);
	} else if (ss->idle_active) {
		uv_idle_stop(&ss->idle);
		ss->idle_active = false;
	}
	if (recheck && !more && ss->recheck_open && !uv_is_active((uv_handle_t *)&ss->recheck))
		uv_timer_start(&ss->recheck, recheck_cb, RECHECK_MS, 0);
}

/* A pump run by the loop (the idle handle, the recheck timer), not after
 * a batch: what it pushed is flushed here. */
static void pump_and_flush(struct subs *ss)
{
	sub_pump(ss);
	srv_flush(ss->srv);
}

static void recheck_cb(uv_timer_t *h)
{
	struct subs *ss = h->data;
	if (!ss->shut)
		pump_and_flush(ss);
}

static void idle_cb(uv_idle_t *h)
{
	struct subs *ss = h->data;
	if (ss->shut)
		return;
	/* Stopped first: the pump starts it again when more is due. */
	uv_idle_stop(&ss->idle);
	ss->idle_active = false;
	pump_and_flush(ss);
}

/* ------------------------------------------------------------ requests */

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static uint64_t add_credits(uint64_t have, uint64_t n)
{
	return have >= SUB_MAX_CREDITS - n ? SUB_MAX_CREDITS : have + n;
}

/* Checks a Subscribe (validate.c) and copies its target and filters into
 * s. */
static int sub_setup(struct sub *s, const Whizbang__V1__Subscribe *r, char *why, size_t whylen)
{
	size_t lens[VALIDATE_MAX_FILTER_TYPES];
	struct ev_filter f;
	int rc = validate_subscribe(r, lens, &f, why, whylen);
	if (rc != 0)
		return rc;
	s->target = r->target;
	if (r->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM) {
		s->stream_len = strlen(r->stream);
		s->stream = dup_n(r->stream, s->stream_len);
		return s->stream != NULL ? 0 : WB_E_NOMEM;
	}
	if (r->target != WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL)
		return 0;
	s->prefix_len = f.prefix_len;
	s->prefix = dup_n(r->stream_prefix, f.prefix_len);
	if (s->prefix == NULL)
		return WB_E_NOMEM;
	if (r->n_event_types == 0)
		return 0;
	s->types = calloc(r->n_event_types, sizeof(*s->types));
	s->type_lens = calloc(r->n_event_types, sizeof(*s->type_lens));
	if (s->types == NULL || s->type_lens == NULL)
		return WB_E_NOMEM;
	for (size_t i = 0; i < r->n_event_types; i++) {
		s->types[i] = dup_n(r->event_types[i], lens[i]);
		if (s->types[i] == NULL)
			return WB_E_NOMEM;
		s->type_lens[i] = lens[i];
		s->ntypes = i + 1;
	}
	return 0;
}

/* Where s starts, as of a snapshot taken now. */
static int sub_start(struct srv *srv, struct sub *s, Whizbang__V1__StartFrom from,
                     uint64_t position)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0)
		return rc;
	uint64_t end = 0; /* the first item after the current end */
	uint64_t first = 0;
	switch (s->target) {
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL: {
		uint64_t last;
		rc = ev_last_position(txn, &last);
		end = last + 1;
		first = 1;
		break;
	}
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM: {
		struct ev_stream_info info;
		rc = ev_stream_info(txn, s->stream, s->stream_len, &info);
		if (rc == WB_E_NOTFOUND) {
			rc = 0;
			info.count = 0;
			first = 0;
		} else if (rc == 0 && info.tombstoned) {
			rc = WB_STREAM_DELETED;
		} else if (rc == 0) {
			first = ev_visible_from(&info);
		}
		end = info.count;
		break;
	}
	default: {
		struct ledger_state ls;
		rc = ledger_get_state(txn, &ls);
		end = ls.watermark + 1;
		first = 1;
		break;
	}
	}
	storage_txn_abort(txn);
	if (rc != 0)
		return rc;
	if (from == WHIZBANG__V1__START_FROM__FROM_END)
		s->pos = end;
	else if (from == WHIZBANG__V1__START_FROM__FROM_POSITION && position > first)
		s->pos = position;
	else
		s->pos = first;
	return 0;
}

static bool subscribe(void *state, struct conn *c, Request *req)
{
	struct subs *ss = state;
	struct srv *srv = ss->srv;
	const Whizbang__V1__Subscribe *r = req->subscribe;
	char why[300];

	if (ss->shut || srv_shutting_down(srv)) {
		srv_error(c, req->id, WB_SHUTTING_DOWN,
		          "the server is shutting down; subscribe again after it restarts");
		return false;
	}
	/* Its connection's, and its identity's over all its connections
	 * (the admin role: no identity limit). */
	size_t mine = 0, ours = 0;
	for (struct sub *s = ss->subs; s != NULL; s = s->next)
		if (!s->dead) {
			mine += s->conn == c;
			ours += srv_quota_same_identity(srv, s->conn, c);
		}
	uint64_t max_ours = srv_config(srv)->max_subscriptions_per_identity;
	if (mine >= srv_config(srv)->max_subscriptions_per_connection) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "this connection holds %zu subscriptions, the most one may "
		          "(--max-subscriptions-per-connection): unsubscribe one or use another "
		          "connection",
		          mine);
		srv_quota_refused(srv, c);
		return false;
	}
	if (max_ours != 0 && ours >= max_ours && !srv_conn_is_admin(c)) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "this client (its user, token or address) holds %zu subscriptions over "
		          "its connections, the most one may (--max-subscriptions-per-identity): "
		          "unsubscribe one",
		          ours);
		srv_quota_refused(srv, c);
		return false;
	}
	struct sub *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	int rc = sub_setup(s, r, why, sizeof(why));
	if (rc == 0)
		rc = sub_start(srv, s, r->from, r->position);
	if (rc != 0) {
		if (rc == WB_BAD_REQUEST)
			srv_error(c, req->id, rc, "%s", why);
		else if (rc == WB_STREAM_DELETED)
			srv_error(c, req->id, rc,
			          "stream '%s' is hard-deleted: it has nothing to subscribe to",
			          r->stream);
		else if (rc == WB_E_NOMEM)
			srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		else
			srv_storage_error(c, req->id, rc, "Subscribe");
		sub_free(s);
		return false;
	}
	s->conn = c;
	s->req_id = req->id;
	s->id = srv_new_subscription_id(srv);
	s->credits = r->credits;
	s->caught_up_sent = false;
	s->next = ss->subs;
	if (ss->subs != NULL)
		ss->subs->prev = s;
	ss->subs = s;
	ss->nsubs++;

	srv_log(WB_LOG_DEBUG, "subscribed", "conn=%llu subscription=%llu target=%d start=%llu",
	        (unsigned long long)conn_id(c), (unsigned long long)s->id, (int)s->target,
	        (unsigned long long)s->pos);
	Whizbang__V1__SubscribeResult res = WHIZBANG__V1__SUBSCRIBE_RESULT__INIT;
	res.subscription = s->id;
	res.start = s->pos;
	/* Last: an answer that cannot be queued closes c, which frees s. */
	SRV_REPLY(c, req->id, SUBSCRIBE, subscribe, &res);
	/* The first items (or caught_up) go out on the next loop turn, after
	 * this answer. */
	kick(ss);
	return false;
}

static bool credit(void *state, struct conn *c, Request *req)
{
	struct subs *ss = state;
	struct sub *s = find_sub(ss, c, req->credit->subscription); /* dispatch checked it */
	s->credits = add_credits(s->credits, req->credit->n);
	Whizbang__V1__CreditResult res = WHIZBANG__V1__CREDIT_RESULT__INIT;
	res.credits = s->credits;
	SRV_REPLY(c, req->id, CREDIT, credit, &res);
	if (s->credits > 0)
		kick(ss);
	return false;
}

static bool unsubscribe(void *state, struct conn *c, Request *req)
{
	struct subs *ss = state;
	struct sub *s = find_sub(ss, c, req->unsubscribe->subscription); /* dispatch checked it */
	if (ss->pumping) {
		s->dead = true;
		ss->dead_pending = true;
	} else {
		sub_unlink(ss, s);
		sub_free(s);
	}
	Whizbang__V1__UnsubscribeResult res = WHIZBANG__V1__UNSUBSCRIBE_RESULT__INIT;
	SRV_REPLY(c, req->id, UNSUBSCRIBE, unsubscribe, &res);
	return false;
}

/* ------------------------------------------------------------ figures */

void srv_sub_figures(const struct srv *srv, uint64_t last_position, uint64_t watermark,
                     size_t *count, uint64_t *lag_total, uint64_t *lag_max)
{
	const struct subs *ss = srv_module_state(srv, &srv_sub_module);
	*count = 0;
	*lag_total = 0;
	*lag_max = 0;
	if (ss == NULL)
		return;
	for (const struct sub *s = ss->subs; s != NULL; s = s->next) {
		uint64_t head = 0, lag = 0;
		if (s->dead)
			continue;
		(*count)++;
		if (s->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL)
			head = last_position;
		else if (s->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER)
			head = watermark;
		else
			continue; /* a stream's head would need a read: not counted */
		if (s->pos <= head)
			lag = head - s->pos + 1;
		*lag_total += lag;
		if (lag > *lag_max)
			*lag_max = lag;
	}
}

/* ------------------------------------------------------------ the module */

static const struct srv_handler sub_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_SUBSCRIBE, subscribe},
        {WHIZBANG__V1__REQUEST__BODY_CREDIT, credit},
        {WHIZBANG__V1__REQUEST__BODY_UNSUBSCRIBE, unsubscribe},
};

const struct srv_module srv_sub_module = {
        .name = "subscriptions",
        .size = sizeof(struct subs),
        .init = sub_init,
        .conn_closed = sub_conn_closed,
        .conn_figures = sub_conn_figures,
        .pump = sub_pump,
        .shutdown = sub_shutdown,
        .close = sub_close,
        .owns_subscription = sub_owns,
        .handlers = sub_handlers,
        .nhandlers = sizeof(sub_handlers) / sizeof(sub_handlers[0]),
};
