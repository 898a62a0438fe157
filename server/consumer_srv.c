/* Durable consumer groups on the loop (DESIGN.md §5, docs/SUBSCRIPTIONS.md
 * section 2).
 *
 * Happy path: CreateConsumer stores the group's record (through the writer:
 * answered once durable). Members JoinConsumer and grant credits; after
 * every writer batch, every drained output and every request of this
 * module, csrv_pump() reads the group's next matching events into its
 * window (a short read transaction, bounded per pump) and pushes each
 * queued one to one member that has credits and output room, round-robin.
 * Ack and Nack settle events; the done prefix of the window becomes the
 * checkpoint, which is written (with the events parked meanwhile) by a
 * writer op, and an Ack or Nack that moved it is answered once it is
 * durable, with the durable checkpoint.
 *
 * Failure modes: an event not acked within ack_timeout goes back to the
 * queue (one timer for the whole module scans the in-flight events); after
 * max_deliveries deliveries it is parked instead. A member that leaves or
 * disconnects hands its in-flight events back to the queue. After a restart
 * reading resumes from the durable checkpoint, so events acked above it are
 * delivered again (at least once). A window of --consumer-window events bounds
 * the memory of a group whose oldest event is never settled: nothing beyond
 * it is read or delivered until that event is acked, skipped or parked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers.h"
#include "events.h"
#include "log.h"
#include "srv_int.h"

#include "codec.h"

/* Events read and not yet below the checkpoint, per group. */
/* Ids in one Ack or Nack. */
#define CSRV_IDS_MAX 1000u
/* Credits a member may hold. */
#define CSRV_CREDITS_MAX 100000u
/* Memberships in the whole server (a connection may join many groups). */
#define CSRV_MEMBERS_TOTAL_MAX 65536u
/* Work per group per pump; what is left is picked up by a zero timer. */
#define CSRV_READ_PER_PUMP 512u
#define CSRV_SEND_PER_PUMP 1024u
/* Reading stops filling the window while this many events are queued. */
#define CSRV_QUEUED_LOW 1024u
#define CSRV_ACK_TIMEOUT_DEFAULT 30000u
#define CSRV_ACK_TIMEOUT_MIN 10u
#define CSRV_ACK_TIMEOUT_MAX 86400000u
#define CSRV_MAX_DELIVERIES_DEFAULT 10u
#define CSRV_MAX_DELIVERIES_MAX 1000u
/* Expiry scans are at least this far apart. */
#define CSRV_TIMER_SLACK_MS 10u

enum slot_state { SLOT_QUEUED, SLOT_INFLIGHT, SLOT_DONE };

struct member;

/* One event of a group's window (or of its replay set). */
struct slot {
	uint64_t pos; /* $all position */
	uint64_t seq; /* the position, or the stream version of a stream group */
	uint64_t deadline_ms;
	struct member *owner;
	uint32_t deliveries;
	uint8_t state;
};

struct member {
	struct member *next; /* in the group */
	struct group *g;
	struct conn *conn;
	uint64_t sub_id;
	uint64_t req_id;
	uint64_t credits;
	uint64_t inflight;
};

/* A park not yet handed to the writer. */
struct park {
	uint64_t pos;
	uint32_t deliveries;
	bool is_new; /* not parked before (a replayed event parks again) */
	char *reason;
	size_t reason_len;
};

struct group {
	struct group *next;
	uint64_t gid;
	struct cons_record cfg;
	const char *types[CONS_TYPES_MAX];
	bool ready; /* its record is durable */
	uint64_t cp_durable;
	uint64_t cp_mem; /* every matching event <= it is settled in memory */
	uint64_t resume_mem;
	uint64_t cp_submitted;
	uint64_t next_read; /* position, or stream version */
	/* the window: win[head..len) in position order */
	struct slot *win;
	size_t head, len, cap;
	size_t qhint; /* no queued slot below this index */
	size_t nqueued;
	/* parked events being replayed, in position order */
	struct slot *rp;
	size_t nrp, rpcap;
	/* writes for the next op */
	struct park *parks;
	size_t nparks, parkcap;
	uint64_t *unparks;
	size_t nunparks, unparkcap;
	struct member *members;
	size_t nmembers;
	struct member *rr;
	size_t window_max; /* --consumer-window */
	/* figures */
	uint64_t nparked;
	uint64_t delivered, acked, redelivered;
};

struct csrv {
	struct srv *srv;
	struct group *groups;
	size_t ngroups;
	size_t nmembers; /* in all groups */
	uint64_t next_gid;
	uv_timer_t timer;
	uint64_t timer_due; /* UINT64_MAX: not armed */
	bool timer_open;
	bool closing;
};

enum cop_kind { COP_CREATE, COP_DELETE, COP_FLUSH };
enum cop_answer { ANSWER_NONE, ANSWER_ACK, ANSWER_NACK };

/* A write of this module. */
struct cop {
	struct srv_op base; /* first */
	enum cop_kind kind;
	enum cop_answer answer;
	uint64_t gid;
	char name[CONS_NAME_MAX + 1];
	size_t name_len;
	struct cons_record rec; /* COP_CREATE: in, and out with the start */
	uint64_t checkpoint, resume;
	struct park *parks;
	size_t nparks;
	uint64_t *unparks;
	size_t nunparks;
	uint64_t now_us;
	/* results, written by the writer thread */
	uint64_t out_checkpoint;
	uint64_t out_removed;
};

static void arm_timer(struct csrv *cs, uint64_t due);
static void csrv_pump_group(struct csrv *cs, struct group *g, struct storage_txn *txn, uint64_t now,
                            bool *more);

/* ------------------------------------------------------------ writer side */

/* The first checkpoint and resume point of a new group, from its start. */
static int resolve_start(struct storage_txn *txn, struct cons_record *r)
{
	int rc;
	if (r->target == CONS_TARGET_ALL) {
		uint64_t last;
		rc = ev_last_position(txn, &last);
		if (rc != 0)
			return rc;
		if (r->from == CONS_FROM_START)
			r->resume = 1;
		else if (r->from == CONS_FROM_END)
			r->resume = last + 1;
		else
			r->resume = r->position > 0 ? r->position : 1;
		r->checkpoint = r->resume - 1;
		return 0;
	}
	struct ev_stream_info info;
	rc = ev_stream_info(txn, r->stream, r->stream_len, &info);
	if (rc == WB_E_NOTFOUND) {
		memset(&info, 0, sizeof(info));
	} else if (rc != 0) {
		return rc;
	}
	if (r->from == CONS_FROM_START)
		r->resume = 0;
	else if (r->from == CONS_FROM_END)
		r->resume = info.count;
	else
		r->resume = r->position;
	r->checkpoint = 0;
	if (r->resume > 0 && info.count > 0) {
		/* below the first version it reads: settled by definition */
		uint64_t v = r->resume - 1 < info.count - 1 ? r->resume - 1 : info.count - 1;
		struct storage_val k, val;
		uint8_t kb[16];
		put_u64(kb, info.stream_id);
		put_u64(kb + 8, v);
		k.data = kb;
		k.len = 16;
		rc = storage_get(txn, STORAGE_DB_STREAM_EVENTS, k, &val);
		if (rc == 0 && val.len == 8)
			r->checkpoint = get_u64(val.data);
		else if (rc != 0 && rc != WB_E_NOTFOUND)
			return rc;
	}
	return 0;
}

/* Runs on the writer thread. */
static int cop_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct cop *op = (struct cop *)base;
	struct cons_record r;
	int rc;

	op->out_checkpoint = 0;
	op->out_removed = 0;
	switch (op->kind) {
	case COP_CREATE:
		rc = cons_get(txn, op->name, op->name_len, &r);
		if (rc == 0)
			return WB_E_KEYEXIST;
		if (rc != WB_E_NOTFOUND)
			return rc;
		rc = resolve_start(txn, &op->rec);
		if (rc == 0)
			rc = cons_put(txn, &op->rec);
		return rc;
	case COP_DELETE:
		return cons_delete(txn, op->name, op->name_len, &op->out_removed);
	case COP_FLUSH:
		break;
	}
	rc = cons_get(txn, op->name, op->name_len, &r);
	if (rc != 0)
		return rc; /* deleted meanwhile: WB_E_NOTFOUND */
	for (size_t i = 0; i < op->nparks; i++) {
		const struct park *p = &op->parks[i];
		rc = cons_park(txn, op->name, op->name_len, p->pos, p->deliveries, op->now_us,
		               p->reason, p->reason_len);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < op->nunparks; i++) {
		rc = cons_unpark(txn, op->name, op->name_len, op->unparks[i]);
		if (rc != 0 && rc != WB_E_NOTFOUND)
			return rc;
	}
	rc = cons_set_checkpoint(txn, op->name, op->name_len, op->checkpoint, op->resume);
	if (rc != 0)
		return rc;
	rc = cons_get(txn, op->name, op->name_len, &r);
	if (rc == 0)
		op->out_checkpoint = r.checkpoint;
	return rc;
}

static void cop_free(struct cop *op)
{
	for (size_t i = 0; i < op->nparks; i++)
		free(op->parks[i].reason);
	free(op->parks);
	free(op->unparks);
	free(op);
}

static void cop_done(struct srv *srv, struct srv_op *base);

static struct cop *cop_new(enum cop_kind kind, struct conn *c, uint64_t req_id, const char *name,
                           size_t name_len)
{
	struct cop *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return NULL;
	op->kind = kind;
	op->base.base.apply = cop_apply;
	op->base.base.size_hint = 4096;
	op->base.done = cop_done;
	op->base.conn = c;
	op->base.req_id = req_id;
	memcpy(op->name, name, name_len);
	op->name_len = name_len;
	return op;
}

/* ------------------------------------------------------------ groups */

static struct group *find_group(struct csrv *cs, const char *name, size_t len)
{
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		if (g->cfg.name_len == len && memcmp(g->cfg.name, name, len) == 0)
			return g;
	return NULL;
}

static struct group *find_gid(struct csrv *cs, uint64_t gid)
{
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		if (g->gid == gid)
			return g;
	return NULL;
}

static struct group *group_new(struct csrv *cs, const struct cons_record *r)
{
	struct group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->gid = ++cs->next_gid;
	g->cfg = *r;
	g->window_max = cs->srv->cfg.consumer_window;
	for (size_t i = 0; i < r->ntypes; i++)
		g->types[i] = g->cfg.types[i];
	g->next = cs->groups;
	cs->groups = g;
	cs->ngroups++;
	return g;
}

/* Sets the in-memory state from the durable record. */
static void group_load(struct group *g, const struct cons_record *r)
{
	g->cfg.checkpoint = r->checkpoint;
	g->cfg.resume = r->resume;
	g->cp_durable = g->cp_mem = g->cp_submitted = r->checkpoint;
	g->resume_mem = g->next_read = r->resume;
	g->ready = true;
}

static void parks_clear(struct group *g)
{
	for (size_t i = 0; i < g->nparks; i++)
		free(g->parks[i].reason);
	g->nparks = 0;
}

/* Unlinks and frees g; its members are told the group is gone. */
static void group_free(struct csrv *cs, struct group *g, bool tell)
{
	struct group **pp = &cs->groups;
	while (*pp != NULL && *pp != g)
		pp = &(*pp)->next;
	if (*pp == g) {
		*pp = g->next;
		cs->ngroups--;
	}
	while (g->members != NULL) {
		struct member *m = g->members;
		g->members = m->next;
		cs->nmembers--;
		if (tell && !m->conn->closing)
			srv_send_error(m->conn, m->req_id, WB_NOT_FOUND,
			               "consumer group '%s' was deleted: subscription %llu ended",
			               g->cfg.name, (unsigned long long)m->sub_id);
		free(m);
	}
	parks_clear(g);
	free(g->parks);
	free(g->unparks);
	free(g->win);
	free(g->rp);
	free(g);
}

/* The slot of window position pos, or NULL. */
static struct slot *win_find(struct group *g, uint64_t pos)
{
	size_t lo = g->head, hi = g->len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (g->win[mid].pos < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < g->len && g->win[lo].pos == pos ? &g->win[lo] : NULL;
}

static size_t rp_index(const struct group *g, uint64_t pos)
{
	size_t lo = 0, hi = g->nrp;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (g->rp[mid].pos < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct slot *rp_find(struct group *g, uint64_t pos)
{
	size_t i = rp_index(g, pos);
	return i < g->nrp && g->rp[i].pos == pos ? &g->rp[i] : NULL;
}

static int add_park(struct group *g, uint64_t pos, uint32_t deliveries, bool is_new,
                    const char *reason, size_t reason_len)
{
	if (g->nparks == g->parkcap) {
		size_t cap = g->parkcap > 0 ? g->parkcap * 2 : 16;
		struct park *p = realloc(g->parks, cap * sizeof(*p));
		if (p == NULL)
			return WB_E_NOMEM;
		g->parks = p;
		g->parkcap = cap;
	}
	char *copy = malloc(reason_len + 1);
	if (copy == NULL)
		return WB_E_NOMEM;
	memcpy(copy, reason, reason_len);
	copy[reason_len] = '\0';
	g->parks[g->nparks++] = (struct park){pos, deliveries, is_new, copy, reason_len};
	return 0;
}

static int add_unpark(struct group *g, uint64_t pos)
{
	if (g->nunparks == g->unparkcap) {
		size_t cap = g->unparkcap > 0 ? g->unparkcap * 2 : 16;
		uint64_t *p = realloc(g->unparks, cap * sizeof(*p));
		if (p == NULL)
			return WB_E_NOMEM;
		g->unparks = p;
		g->unparkcap = cap;
	}
	g->unparks[g->nunparks++] = pos;
	return 0;
}

/* Takes a slot out of its member's hands. */
static void slot_release(struct slot *s)
{
	if (s->state == SLOT_INFLIGHT && s->owner != NULL)
		s->owner->inflight--;
	s->owner = NULL;
}

static void slot_requeue(struct group *g, struct slot *s, bool replay)
{
	slot_release(s);
	s->state = SLOT_QUEUED;
	g->nqueued++;
	if (!replay) {
		size_t i = (size_t)(s - g->win);
		if (i < g->qhint)
			g->qhint = i;
	}
}

/* Settles s: done (acked or skipped), or parked with reason. A replayed
 * event leaves the replay set. */
static int slot_settle(struct group *g, struct slot *s, bool park, const char *reason,
                       size_t reason_len)
{
	bool replay = g->nrp > 0 && s >= g->rp && s < g->rp + g->nrp;
	int rc = 0;
	if (s->state == SLOT_QUEUED)
		g->nqueued--;
	slot_release(s);
	s->state = SLOT_DONE;
	if (park)
		rc = add_park(g, s->pos, s->deliveries, !replay, reason, reason_len);
	else
		g->acked++;
	if (rc != 0 && !replay) {
		/* Unparked, it must not count as settled: the checkpoint would
		 * pass an event that is nowhere. It is delivered again. */
		slot_requeue(g, s, false);
		return rc;
	}
	if (replay) {
		if (!park && rc == 0)
			rc = add_unpark(g, s->pos);
		size_t i = (size_t)(s - g->rp);
		memmove(&g->rp[i], &g->rp[i + 1], (g->nrp - i - 1) * sizeof(*s));
		g->nrp--;
	}
	return rc;
}

/* Pops the settled prefix of the window and recomputes the in-memory
 * checkpoint and resume point. */
static void advance(struct group *g)
{
	while (g->head < g->len && g->win[g->head].state == SLOT_DONE) {
		g->cp_mem = g->win[g->head].pos;
		g->head++;
	}
	bool all = g->cfg.target == CONS_TARGET_ALL;
	if (g->head < g->len) {
		if (all && g->win[g->head].pos - 1 > g->cp_mem)
			g->cp_mem = g->win[g->head].pos - 1;
		g->resume_mem = g->win[g->head].seq;
	} else {
		if (all && g->next_read - 1 > g->cp_mem)
			g->cp_mem = g->next_read - 1;
		g->resume_mem = g->next_read;
	}
	if (g->head == g->len) {
		g->head = g->len = 0;
		g->qhint = 0;
	} else if (g->head > g->cap / 2) {
		memmove(g->win, g->win + g->head, (g->len - g->head) * sizeof(*g->win));
		/* owners keep pointing at members, not at slots: moving is safe */
		g->len -= g->head;
		g->qhint = g->qhint > g->head ? g->qhint - g->head : 0;
		g->head = 0;
	}
	if (g->qhint < g->head)
		g->qhint = g->head;
}

/* Submits the group's pending writes with its checkpoint when there is
 * anything to write, answering req_id on c (may be NULL) once durable.
 * Returns true when an op was submitted (it answers), false when nothing
 * needed writing (the caller answers). */
static bool submit_flush(struct csrv *cs, struct group *g, struct conn *c, uint64_t req_id,
                         enum cop_answer answer)
{
	advance(g);
	if (g->cp_mem <= g->cp_submitted && g->nparks == 0 && g->nunparks == 0)
		return false;
	struct cop *op = cop_new(COP_FLUSH, c, req_id, g->cfg.name, g->cfg.name_len);
	if (op == NULL) {
		srv_log(LOG_ERROR, "consumer_flush_failed", "group=%s error=no_memory",
		        g->cfg.name);
		return false;
	}
	op->answer = answer;
	op->gid = g->gid;
	op->checkpoint = g->cp_mem;
	op->resume = g->resume_mem;
	op->now_us = srv_wall_us();
	op->parks = g->parks;
	op->nparks = g->nparks;
	op->unparks = g->unparks;
	op->nunparks = g->nunparks;
	op->base.base.size_hint = 4096 + g->nparks * (64 + CONS_REASON_MAX) + g->nunparks * 64;
	g->parks = NULL;
	g->nparks = g->parkcap = 0;
	g->unparks = NULL;
	g->nunparks = g->unparkcap = 0;
	g->cp_submitted = g->cp_mem;
	srv_submit(cs->srv, &op->base);
	return true;
}

/* ------------------------------------------------------------ answers */

static void fill_info(const struct group *g, Whizbang__V1__ConsumerInfo *info,
                      Whizbang__V1__ConsumerConfig *cfg)
{
	whizbang__v1__consumer_info__init(info);
	whizbang__v1__consumer_config__init(cfg);
	cfg->name = (char *)g->cfg.name;
	cfg->target = g->cfg.target == CONS_TARGET_ALL
	                      ? WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL
	                      : WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
	cfg->stream = (char *)g->cfg.stream;
	cfg->stream_prefix = (char *)g->cfg.prefix;
	cfg->n_event_types = g->cfg.ntypes;
	cfg->event_types = (char **)g->types;
	cfg->from = (Whizbang__V1__StartFrom)g->cfg.from;
	cfg->position = g->cfg.position;
	cfg->ack_timeout_ms = g->cfg.ack_timeout_ms;
	cfg->max_deliveries = g->cfg.max_deliveries;
	info->config = cfg;
	info->checkpoint = g->cp_durable;
	info->members = g->nmembers;
	uint64_t inflight = 0;
	for (size_t i = g->head; i < g->len; i++)
		inflight += g->win[i].state == SLOT_INFLIGHT;
	for (size_t i = 0; i < g->nrp; i++)
		inflight += g->rp[i].state == SLOT_INFLIGHT;
	info->in_flight = inflight;
	info->parked = g->nparked;
	info->delivered = g->delivered;
	info->acked = g->acked;
	info->redelivered = g->redelivered;
}

static void send_checkpoint(struct conn *c, uint64_t id, enum cop_answer answer, uint64_t cp)
{
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	Whizbang__V1__AckResult a = WHIZBANG__V1__ACK_RESULT__INIT;
	Whizbang__V1__NackResult n = WHIZBANG__V1__NACK_RESULT__INIT;
	resp.id = id;
	if (answer == ANSWER_ACK) {
		a.checkpoint = cp;
		resp.body_case = WHIZBANG__V1__RESPONSE__BODY_ACK;
		resp.ack = &a;
	} else {
		n.checkpoint = cp;
		resp.body_case = WHIZBANG__V1__RESPONSE__BODY_NACK;
		resp.nack = &n;
	}
	srv_send(c, &resp);
}

static void cop_done(struct srv *srv, struct srv_op *base)
{
	struct cop *op = (struct cop *)base;
	struct csrv *cs = srv->csrv;
	struct conn *c = base->conn;
	int rc = base->base.status;
	struct group *g = cs != NULL ? find_gid(cs, op->gid) : NULL;
	bool answer = c != NULL && !c->closing;

	switch (op->kind) {
	case COP_CREATE:
		if (rc != 0) {
			if (g != NULL)
				group_free(cs, g, false);
			if (!answer)
				break;
			if (rc == WB_E_KEYEXIST)
				srv_send_error(c, base->req_id, WB_BAD_REQUEST,
				               "consumer group '%s' already exists", op->name);
			else
				srv_send_storage_error(c, base->req_id, rc, "CreateConsumer");
			break;
		}
		if (g != NULL) {
			group_load(g, &op->rec);
			srv_log(LOG_INFO, "consumer_created", "group=%s checkpoint=%llu", op->name,
			        (unsigned long long)g->cp_durable);
		}
		if (answer && g != NULL) {
			Whizbang__V1__ConsumerInfo info;
			Whizbang__V1__ConsumerConfig cfg;
			fill_info(g, &info, &cfg);
			Response resp = WHIZBANG__V1__RESPONSE__INIT;
			resp.id = base->req_id;
			resp.body_case = WHIZBANG__V1__RESPONSE__BODY_CONSUMER;
			resp.consumer = &info;
			srv_send(c, &resp);
		}
		break;
	case COP_DELETE:
		if (!answer)
			break;
		if (rc == 0) {
			Whizbang__V1__DeleteConsumerResult d =
			        WHIZBANG__V1__DELETE_CONSUMER_RESULT__INIT;
			Response resp = WHIZBANG__V1__RESPONSE__INIT;
			resp.id = base->req_id;
			resp.body_case = WHIZBANG__V1__RESPONSE__BODY_DELETE_CONSUMER;
			resp.delete_consumer = &d;
			srv_send(c, &resp);
		} else if (rc == WB_E_NOTFOUND) {
			srv_send_error(c, base->req_id, WB_NOT_FOUND, "no consumer group '%s'",
			               op->name);
		} else {
			srv_send_storage_error(c, base->req_id, rc, "DeleteConsumer");
		}
		break;
	case COP_FLUSH:
		if (rc != 0 && rc != WB_E_NOTFOUND)
			srv_log(LOG_ERROR, "consumer_flush_failed", "group=%s error=%s", op->name,
			        wb_error_name(rc));
		if (g != NULL && rc == 0) {
			if (op->out_checkpoint > g->cp_durable)
				g->cp_durable = op->out_checkpoint;
			for (size_t i = 0; i < op->nparks; i++)
				g->nparked += op->parks[i].is_new;
			g->nparked = g->nparked >= op->nunparks ? g->nparked - op->nunparks : 0;
		} else if (g != NULL) {
			/* Written again with the next op, parks included: a later
			 * checkpoint must not pass a park that is not durable. */
			if (g->cp_submitted > g->cp_durable)
				g->cp_submitted = g->cp_durable;
			for (size_t i = 0; i < op->nparks; i++) {
				const struct park *p = &op->parks[i];
				add_park(g, p->pos, p->deliveries, p->is_new, p->reason,
				         p->reason_len);
			}
			for (size_t i = 0; i < op->nunparks; i++)
				add_unpark(g, op->unparks[i]);
			if (op->nparks > 0 || op->nunparks > 0)
				arm_timer(cs, uv_now(srv->loop) + 1000);
		}
		if (!answer || op->answer == ANSWER_NONE)
			break;
		if (rc == 0)
			send_checkpoint(c, base->req_id, op->answer, op->out_checkpoint);
		else if (rc == WB_E_NOTFOUND)
			srv_send_error(c, base->req_id, WB_NOT_FOUND,
			               "consumer group '%s' was deleted", op->name);
		else
			srv_send_storage_error(c, base->req_id, rc,
			                       op->answer == ANSWER_ACK ? "AckEvents"
			                                                : "NackEvents");
		break;
	}
	cop_free(op);
}

/* ------------------------------------------------------------ delivery */

static bool member_ready(const struct csrv *cs, const struct member *m)
{
	const struct conn *c = m->conn;
	return m->credits > 0 && !c->closing && !c->close_after_flush &&
	       c->out_len + c->out_pending < cs->srv->cfg.max_output;
}

/* The next member (round-robin) that can take an event, or NULL. */
static struct member *pick_member(struct csrv *cs, struct group *g)
{
	struct member *m = g->rr != NULL ? g->rr : g->members;
	for (size_t i = 0; i < g->nmembers && m != NULL; i++) {
		if (member_ready(cs, m)) {
			g->rr = m->next;
			return m;
		}
		m = m->next != NULL ? m->next : g->members;
	}
	return NULL;
}

/* Sends the event of s to m. Returns 0, or WB_E_NOTFOUND when the event is
 * no longer stored (it is then settled as skipped). */
static int deliver(struct csrv *cs, struct group *g, struct member *m, struct slot *s,
                   struct storage_txn *txn, uint64_t now)
{
	uint8_t kb[8];
	put_u64(kb, s->pos);
	struct storage_val k = {kb, 8}, v;
	struct ev_record rec;
	int rc = storage_get(txn, STORAGE_DB_EVENTS, k, &v);
	if (rc == 0)
		rc = ev_decode(s->pos, v.data, v.len, &rec);
	if (rc != 0)
		return rc;
	char stream[EV_STREAM_MAX + 1], type[EV_TYPE_MAX + 1];
	memcpy(stream, rec.stream, rec.stream_len);
	stream[rec.stream_len] = '\0';
	memcpy(type, rec.type, rec.type_len);
	type[rec.type_len] = '\0';
	Whizbang__V1__RecordedEvent e = WHIZBANG__V1__RECORDED_EVENT__INIT;
	e.id.data = (uint8_t *)rec.id;
	e.id.len = EV_ID_LEN;
	e.stream = stream;
	e.type = type;
	e.version = rec.version;
	e.position = rec.position;
	e.timestamp_us = rec.timestamp_us;
	e.data.data = (uint8_t *)rec.data;
	e.data.len = rec.data_len;
	e.metadata.data = (uint8_t *)rec.meta;
	e.metadata.len = rec.meta_len;
	s->deliveries++;
	Whizbang__V1__SubscriptionItem item = WHIZBANG__V1__SUBSCRIPTION_ITEM__INIT;
	item.subscription = m->sub_id;
	item.item_case = WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT;
	item.event = &e;
	item.delivery = s->deliveries;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = m->req_id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM;
	resp.subscription_item = &item;
	s->state = SLOT_INFLIGHT;
	s->owner = m;
	s->deadline_ms = now + g->cfg.ack_timeout_ms;
	g->nqueued--;
	m->credits--;
	m->inflight++;
	g->delivered++;
	if (s->deliveries > 1)
		g->redelivered++;
	arm_timer(cs, s->deadline_ms);
	/* Last: when the output cannot take it the connection closes, which
	 * frees m and hands s back to the queue. */
	srv_send(m->conn, &resp);
	return 0;
}

struct fill {
	struct group *g;
	struct storage_txn *txn;
	int rc;
};

/* True when the group parked pos durably (before a restart, above the
 * checkpoint): it is settled, not to be delivered again. */
static bool parked_on_disk(struct fill *f, uint64_t pos)
{
	const struct group *g = f->g;
	struct cons_parked p;
	return g->nparked > 0 &&
	       cons_get_parked(f->txn, g->cfg.name, g->cfg.name_len, pos, &p) == 0;
}

static bool fill_cb(const struct ev_record *rec, void *arg)
{
	struct fill *f = arg;
	struct group *g = f->g;
	if (g->cfg.target == CONS_TARGET_STREAM && g->cfg.ntypes > 0) {
		bool match = false;
		for (size_t i = 0; i < g->cfg.ntypes && !match; i++)
			match = g->cfg.type_lens[i] == rec->type_len &&
			        memcmp(g->cfg.types[i], rec->type, rec->type_len) == 0;
		if (!match)
			return true;
	}
	if (g->len == g->cap) {
		size_t cap = g->cap > 0 ? g->cap * 2 : 256;
		struct slot *w = realloc(g->win, cap * sizeof(*w));
		if (w == NULL) {
			f->rc = WB_E_NOMEM;
			return false;
		}
		g->win = w;
		g->cap = cap;
	}
	struct slot *s = &g->win[g->len++];
	memset(s, 0, sizeof(*s));
	s->pos = rec->position;
	s->seq = g->cfg.target == CONS_TARGET_ALL ? rec->position : rec->version;
	if (parked_on_disk(f, rec->position)) {
		s->state = SLOT_DONE;
		return true;
	}
	s->state = SLOT_QUEUED;
	g->nqueued++;
	return true;
}

/* Reads the group's next events into its window. */
static void fill_window(struct group *g, struct storage_txn *txn, bool *more)
{
	size_t used = g->len - g->head;
	if (used >= g->window_max || g->nqueued >= CSRV_QUEUED_LOW)
		return;
	size_t room = g->window_max - used;
	uint32_t want = room > CSRV_READ_PER_PUMP ? CSRV_READ_PER_PUMP : (uint32_t)room;
	struct fill f = {g, txn, 0};
	struct ev_page page;
	int rc;
	if (g->cfg.target == CONS_TARGET_ALL) {
		struct ev_filter filter = {
		        .prefix = g->cfg.prefix,
		        .prefix_len = g->cfg.prefix_len,
		        .types = g->types,
		        .type_lens = g->cfg.type_lens,
		        .ntypes = g->cfg.ntypes,
		        .max_examined = CSRV_READ_PER_PUMP * 8,
		};
		rc = ev_read_all(txn, g->next_read, false, want, &filter, fill_cb, &f, &page);
	} else {
		rc = ev_read_stream(txn, g->cfg.stream, g->cfg.stream_len, g->next_read, false,
		                    want, fill_cb, &f, &page);
	}
	if (rc == WB_E_NOTFOUND || rc == WB_STREAM_DELETED)
		return; /* no stream (yet, or soft-deleted), or hard-deleted: nothing to read */
	if (rc != 0 || f.rc != 0) {
		srv_log(LOG_ERROR, "consumer_read_failed", "group=%s error=%s", g->cfg.name,
		        wb_error_name(rc != 0 ? rc : f.rc));
		return;
	}
	if (page.next > g->next_read)
		g->next_read = page.next;
	if (!page.end)
		*more = true;
	advance(g); /* events parked before a restart may be settled already */
}

static void csrv_pump_group(struct csrv *cs, struct group *g, struct storage_txn *txn, uint64_t now,
                            bool *more)
{
	if (!g->ready || g->nmembers == 0)
		return;
	fill_window(g, txn, more);
	unsigned sent = 0;
	/* replayed parked events first: they are the oldest */
	for (size_t i = 0; i < g->nrp && g->nqueued > 0; i++) {
		struct slot *s = &g->rp[i];
		if (s->state != SLOT_QUEUED)
			continue;
		if (sent == CSRV_SEND_PER_PUMP) {
			*more = true;
			return;
		}
		struct member *m = pick_member(cs, g);
		if (m == NULL)
			return;
		int rc = deliver(cs, g, m, s, txn, now);
		if (rc == WB_E_NOTFOUND) {
			slot_settle(g, s, false, NULL, 0);
			i--;
		} else if (rc != 0) {
			return;
		}
		sent++;
	}
	for (size_t i = g->qhint; i < g->len && g->nqueued > 0; i++) {
		struct slot *s = &g->win[i];
		if (s->state != SLOT_QUEUED) {
			if (i == g->qhint)
				g->qhint++;
			continue;
		}
		if (sent == CSRV_SEND_PER_PUMP) {
			*more = true;
			return;
		}
		struct member *m = pick_member(cs, g);
		if (m == NULL)
			return;
		int rc = deliver(cs, g, m, s, txn, now);
		if (rc == WB_E_NOTFOUND)
			slot_settle(g, s, false, NULL, 0);
		else if (rc != 0)
			return;
		if (i == g->qhint)
			g->qhint++;
		sent++;
	}
}

void csrv_pump(struct srv *srv)
{
	struct csrv *cs = srv->csrv;
	if (cs == NULL || cs->closing || cs->groups == NULL)
		return;
	bool any = false;
	for (struct group *g = cs->groups; g != NULL && !any; g = g->next)
		any = g->ready && g->nmembers > 0;
	if (!any)
		return;
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_log(LOG_ERROR, "consumer_read_failed", "error=%s", wb_error_name(rc));
		return;
	}
	uint64_t now = uv_now(srv->loop);
	bool more = false;
	for (struct group *g = cs->groups; g != NULL; g = g->next) {
		bool gmore = false;
		csrv_pump_group(cs, g, txn, now, &gmore);
		/* only worth coming back for when someone can take it */
		for (struct member *m = g->members; gmore && !more && m != NULL; m = m->next)
			more = member_ready(cs, m);
	}
	storage_txn_abort(txn);
	if (more)
		arm_timer(cs, now);
}

/* ------------------------------------------------------------ the timer */

/* Requeues (or parks) g's events whose ack timeout passed; returns the
 * earliest deadline still ahead. */
static uint64_t expire_slots(struct csrv *cs, struct group *g, struct slot *slots, size_t from,
                             size_t to, bool replay, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	(void)cs;
	for (size_t i = from; i < to; i++) {
		struct slot *s = &slots[i];
		if (s->state != SLOT_INFLIGHT)
			continue;
		if (s->deadline_ms > now) {
			if (s->deadline_ms < next)
				next = s->deadline_ms;
			continue;
		}
		if (s->deliveries >= g->cfg.max_deliveries) {
			char reason[96];
			int n = snprintf(reason, sizeof(reason),
			                 "not acked after %u deliveries (max_deliveries)",
			                 s->deliveries);
			slot_settle(g, s, true, reason, (size_t)n);
			if (replay) {
				i--;
				to--;
			}
		} else {
			slot_requeue(g, s, replay);
		}
	}
	return next;
}

static void timer_cb(uv_timer_t *t)
{
	struct csrv *cs = t->data;
	if (cs->closing)
		return;
	cs->timer_due = UINT64_MAX;
	uint64_t now = uv_now(cs->srv->loop);
	uint64_t next = UINT64_MAX;
	for (struct group *g = cs->groups; g != NULL; g = g->next) {
		if (!g->ready)
			continue;
		uint64_t a = expire_slots(cs, g, g->rp, 0, g->nrp, true, now);
		uint64_t b = expire_slots(cs, g, g->win, g->head, g->len, false, now);
		if (a < next)
			next = a;
		if (b < next)
			next = b;
		if (g->nparks > 0 || g->nunparks > 0)
			submit_flush(cs, g, NULL, 0, ANSWER_NONE);
	}
	/* Deadlines close together are served by one scan. */
	if (next != UINT64_MAX)
		arm_timer(cs, next > now + CSRV_TIMER_SLACK_MS ? next : now + CSRV_TIMER_SLACK_MS);
	csrv_pump(cs->srv);
	srv_flush(cs->srv);
}

static void arm_timer(struct csrv *cs, uint64_t due)
{
	if (!cs->timer_open || cs->closing || due >= cs->timer_due)
		return;
	uint64_t now = uv_now(cs->srv->loop);
	cs->timer_due = due;
	uv_timer_start(&cs->timer, timer_cb, due > now ? due - now : 0, 0);
}

/* ------------------------------------------------------------ requests */

static struct group *ready_group(struct conn *c, uint64_t id, const char *name)
{
	struct group *g = find_group(c->srv->csrv, name, strlen(name));
	if (g == NULL || !g->ready) {
		srv_send_error(c, id, WB_NOT_FOUND, "no consumer group '%s'", name);
		return NULL;
	}
	return g;
}

static void handle_create(struct conn *c, Request *req)
{
	struct csrv *cs = c->srv->csrv;
	const Whizbang__V1__ConsumerConfig *in = req->create_consumer->config;
	char why[256];
	if (in == NULL) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "CreateConsumer needs a config");
		return;
	}
	size_t nlen = strlen(in->name);
	if (cons_check_name(in->name, nlen, why, sizeof(why)) != 0) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "%s", why);
		return;
	}
	struct cons_record r;
	memset(&r, 0, sizeof(r));
	memcpy(r.name, in->name, nlen);
	r.name_len = nlen;
	if (in->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL) {
		r.target = CONS_TARGET_ALL;
		if (in->stream[0] != '\0') {
			srv_send_error(
			        c, req->id, WB_BAD_REQUEST,
			        "a $all group (TARGET_ALL) takes no stream; use stream_prefix "
			        "or TARGET_STREAM");
			return;
		}
	} else if (in->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM) {
		r.target = CONS_TARGET_STREAM;
		r.stream_len = strlen(in->stream);
		if (ev_check_stream_name(in->stream, r.stream_len, why, sizeof(why)) != 0) {
			srv_send_error(c, req->id, WB_BAD_REQUEST, "stream: %s", why);
			return;
		}
		if (in->stream_prefix[0] != '\0') {
			srv_send_error(c, req->id, WB_BAD_REQUEST,
			               "stream_prefix applies to $all groups only");
			return;
		}
		memcpy(r.stream, in->stream, r.stream_len);
	} else {
		srv_send_error(c, req->id, WB_BAD_REQUEST,
		               "a consumer group follows $all (TARGET_ALL) or one stream "
		               "(TARGET_STREAM), not target %d",
		               (int)in->target);
		return;
	}
	r.prefix_len = strlen(in->stream_prefix);
	if (r.prefix_len > CONS_NAME_MAX) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "stream_prefix is %zu bytes; at most %u",
		               r.prefix_len, CONS_NAME_MAX);
		return;
	}
	memcpy(r.prefix, in->stream_prefix, r.prefix_len);
	if (in->n_event_types > CONS_TYPES_MAX) {
		srv_send_error(c, req->id, WB_BAD_REQUEST,
		               "%zu event types; a group filters on at most %u", in->n_event_types,
		               CONS_TYPES_MAX);
		return;
	}
	for (size_t i = 0; i < in->n_event_types; i++) {
		size_t tl = strlen(in->event_types[i]);
		if (ev_check_type(in->event_types[i], tl, why, sizeof(why)) != 0) {
			srv_send_error(c, req->id, WB_BAD_REQUEST, "event_types[%zu]: %s", i, why);
			return;
		}
		memcpy(r.types[i], in->event_types[i], tl);
		r.type_lens[i] = tl;
	}
	r.ntypes = in->n_event_types;
	if (in->from > WHIZBANG__V1__START_FROM__FROM_POSITION) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "from %d is not a StartFrom",
		               (int)in->from);
		return;
	}
	r.from = (uint8_t)in->from;
	r.position = in->position;
	r.ack_timeout_ms = in->ack_timeout_ms > 0 ? in->ack_timeout_ms : CSRV_ACK_TIMEOUT_DEFAULT;
	if (r.ack_timeout_ms < CSRV_ACK_TIMEOUT_MIN || r.ack_timeout_ms > CSRV_ACK_TIMEOUT_MAX) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "ack_timeout_ms must be %u..%u (0: %u)",
		               CSRV_ACK_TIMEOUT_MIN, CSRV_ACK_TIMEOUT_MAX,
		               CSRV_ACK_TIMEOUT_DEFAULT);
		return;
	}
	r.max_deliveries =
	        in->max_deliveries > 0 ? in->max_deliveries : CSRV_MAX_DELIVERIES_DEFAULT;
	if (r.max_deliveries > CSRV_MAX_DELIVERIES_MAX) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "max_deliveries must be 1..%u (0: %u)",
		               CSRV_MAX_DELIVERIES_MAX, CSRV_MAX_DELIVERIES_DEFAULT);
		return;
	}
	r.created_us = srv_wall_us();
	if (find_group(cs, r.name, r.name_len) != NULL) {
		srv_send_error(c, req->id, WB_BAD_REQUEST, "consumer group '%s' already exists",
		               r.name);
		return;
	}
	if (cs->ngroups >= c->srv->cfg.max_consumer_groups) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		               "this server keeps at most %llu consumer groups (--max-consumer-groups)",
		               (unsigned long long)c->srv->cfg.max_consumer_groups);
		return;
	}
	struct cop *op = cop_new(COP_CREATE, c, req->id, r.name, r.name_len);
	struct group *g = op != NULL ? group_new(cs, &r) : NULL;
	if (g == NULL) {
		free(op);
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	op->gid = g->gid;
	op->rec = r;
	srv_submit(c->srv, &op->base);
}

static void handle_delete(struct conn *c, Request *req)
{
	struct csrv *cs = c->srv->csrv;
	const char *name = req->delete_consumer->name;
	struct group *g = ready_group(c, req->id, name);
	if (g == NULL)
		return;
	struct cop *op = cop_new(COP_DELETE, c, req->id, g->cfg.name, g->cfg.name_len);
	if (op == NULL) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	srv_log(LOG_INFO, "consumer_deleted", "group=%s members=%zu", g->cfg.name, g->nmembers);
	/* Gone from memory at once: no more pushes, joins or acks; the
	 * writes it still has in flight find no record and write nothing. */
	group_free(cs, g, true);
	srv_submit(c->srv, &op->base);
}

static void handle_list(struct conn *c, Request *req)
{
	struct csrv *cs = c->srv->csrv;
	size_t n = 0;
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		n += g->ready;
	Whizbang__V1__ConsumerInfo *infos = calloc(n > 0 ? n : 1, sizeof(*infos));
	Whizbang__V1__ConsumerConfig *cfgs = calloc(n > 0 ? n : 1, sizeof(*cfgs));
	Whizbang__V1__ConsumerInfo **ptrs = calloc(n > 0 ? n : 1, sizeof(*ptrs));
	if (infos == NULL || cfgs == NULL || ptrs == NULL) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	/* in name order, as stored */
	size_t i = 0;
	for (struct group *g = cs->groups; g != NULL; g = g->next) {
		if (!g->ready)
			continue;
		size_t at = i++;
		while (at > 0 && strcmp(ptrs[at - 1]->config->name, g->cfg.name) > 0) {
			ptrs[at] = ptrs[at - 1];
			at--;
		}
		fill_info(g, &infos[i - 1], &cfgs[i - 1]);
		ptrs[at] = &infos[i - 1];
	}
	Whizbang__V1__ConsumerList list = WHIZBANG__V1__CONSUMER_LIST__INIT;
	list.n_consumers = n;
	list.consumers = ptrs;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = req->id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_CONSUMERS;
	resp.consumers = &list;
	srv_send(c, &resp);
out:
	free(infos);
	free(cfgs);
	free(ptrs);
}

static void handle_join(struct conn *c, Request *req)
{
	struct srv *srv = c->srv;
	struct group *g = ready_group(c, req->id, req->join_consumer->name);
	if (g == NULL)
		return;
	if (srv->csrv->nmembers >= CSRV_MEMBERS_TOTAL_MAX) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		               "this server keeps at most %u consumer memberships",
		               CSRV_MEMBERS_TOTAL_MAX);
		return;
	}
	if (g->nmembers >= srv->cfg.max_consumer_members) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		               "consumer group '%s' has %zu members already (--max-consumer-members)",
		               g->cfg.name, g->nmembers);
		return;
	}
	struct member *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	m->g = g;
	m->conn = c;
	m->req_id = req->id;
	m->sub_id = ++srv->next_subscription_id;
	m->credits = req->join_consumer->credits < CSRV_CREDITS_MAX ? req->join_consumer->credits
	                                                            : CSRV_CREDITS_MAX;
	/* at the end, so round-robin order is join order */
	struct member **pp = &g->members;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = m;
	g->nmembers++;
	srv->csrv->nmembers++;
	Whizbang__V1__SubscribeResult r = WHIZBANG__V1__SUBSCRIBE_RESULT__INIT;
	r.subscription = m->sub_id;
	r.start = g->cp_mem + 1;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = req->id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE;
	resp.subscribe = &r;
	srv_send(c, &resp);
	srv_log(LOG_DEBUG, "consumer_joined", "group=%s conn=%llu subscription=%llu", g->cfg.name,
	        (unsigned long long)c->id, (unsigned long long)m->sub_id);
}

static struct member *find_member(struct csrv *cs, const struct conn *c, uint64_t sub)
{
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		for (struct member *m = g->members; m != NULL; m = m->next)
			if (m->conn == c && m->sub_id == sub)
				return m;
	return NULL;
}

/* Removes m from its group; its in-flight events go back to the queue. */
static void member_remove(struct member *m)
{
	struct csrv *cs = m->conn->srv->csrv;
	struct group *g = m->g;
	struct member **pp = &g->members;
	while (*pp != m)
		pp = &(*pp)->next;
	*pp = m->next;
	g->nmembers--;
	cs->nmembers--;
	if (g->rr == m)
		g->rr = m->next;
	for (size_t i = g->head; i < g->len && m->inflight > 0; i++)
		if (g->win[i].owner == m)
			slot_requeue(g, &g->win[i], false);
	for (size_t i = 0; i < g->nrp && m->inflight > 0; i++)
		if (g->rp[i].owner == m)
			slot_requeue(g, &g->rp[i], true);
	free(m);
}

/* Resolves ids to slots of g: settled[i] is true for an event already
 * below the checkpoint (nothing to do), else slots[i] is its slot.
 * Answers the request and returns false when one id does not belong. */
static bool resolve_ids(struct conn *c, uint64_t id, struct group *g, ProtobufCBinaryData *ids,
                        size_t n, uint64_t *pos)
{
	if (n > CSRV_IDS_MAX) {
		srv_send_error(c, id, WB_BAD_REQUEST, "%zu ids in one request; at most %u", n,
		               CSRV_IDS_MAX);
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if (ids[i].len != EV_ID_LEN) {
			srv_send_error(c, id, WB_BAD_REQUEST,
			               "ids[%zu] is %zu bytes; an event id is %u bytes", i,
			               ids[i].len, EV_ID_LEN);
			return false;
		}
	struct storage_txn *txn;
	int rc = storage_txn_begin(c->srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_send_storage_error(c, id, rc, "reading event ids");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		struct storage_val k = {ids[i].data, EV_ID_LEN}, v;
		rc = storage_get(txn, STORAGE_DB_EVENT_IDS, k, &v);
		if (rc == 0 && v.len != 8)
			rc = WB_E_CORRUPT;
		if (rc != 0)
			break;
		pos[i] = get_u64(v.data);
	}
	storage_txn_abort(txn);
	if (rc == WB_E_NOTFOUND) {
		srv_send_error(c, id, WB_NOT_FOUND, "an id is not the id of a stored event");
		return false;
	}
	if (rc != 0) {
		srv_send_storage_error(c, id, rc, "reading event ids");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (rp_find(g, pos[i]) != NULL || win_find(g, pos[i]) != NULL ||
		    pos[i] <= g->cp_mem)
			continue;
		srv_send_error(c, id, WB_BAD_REQUEST,
		               "ids[%zu] (position %llu) was not delivered by consumer group '%s'",
		               i, (unsigned long long)pos[i], g->cfg.name);
		return false;
	}
	return true;
}

/* The slot an ack or nack of pos settles: a replayed one first, then the
 * window's; NULL when it is settled already. */
static struct slot *target_slot(struct group *g, uint64_t pos)
{
	struct slot *s = rp_find(g, pos);
	if (s != NULL)
		return s;
	s = win_find(g, pos);
	return s != NULL && s->state != SLOT_DONE ? s : NULL;
}

static void handle_ack_nack(struct conn *c, Request *req, bool ack)
{
	struct csrv *cs = c->srv->csrv;
	const char *name = ack ? req->ack->name : req->nack->name;
	ProtobufCBinaryData *ids = ack ? req->ack->ids : req->nack->ids;
	size_t n = ack ? req->ack->n_ids : req->nack->n_ids;
	struct group *g = ready_group(c, req->id, name);
	if (g == NULL)
		return;
	Whizbang__V1__NackAction action =
	        ack ? WHIZBANG__V1__NACK_ACTION__NACK_SKIP : req->nack->action;
	const char *reason = ack ? "" : req->nack->reason;
	size_t reason_len = strlen(reason);
	if (!ack) {
		if (action > WHIZBANG__V1__NACK_ACTION__NACK_SKIP) {
			srv_send_error(c, req->id, WB_BAD_REQUEST, "action %d is not a NackAction",
			               (int)action);
			return;
		}
		if (reason_len > CONS_REASON_MAX) {
			srv_send_error(c, req->id, WB_BAD_REQUEST,
			               "reason is %zu bytes; at most %u", reason_len,
			               CONS_REASON_MAX);
			return;
		}
		if (action == WHIZBANG__V1__NACK_ACTION__NACK_PARK && reason_len == 0) {
			reason = "parked by a nack";
			reason_len = strlen(reason);
		}
	}
	uint64_t *pos = malloc((n > 0 ? n : 1) * sizeof(*pos));
	if (pos == NULL) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (!resolve_ids(c, req->id, g, ids, n, pos)) {
		free(pos);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct slot *s = target_slot(g, pos[i]);
		if (s == NULL)
			continue;
		bool replay = g->nrp > 0 && s >= g->rp && s < g->rp + g->nrp;
		switch (action) {
		case WHIZBANG__V1__NACK_ACTION__NACK_RETRY:
			if (s->state != SLOT_INFLIGHT)
				break;
			if (s->deliveries >= g->cfg.max_deliveries) {
				char why[96];
				int k = snprintf(why, sizeof(why),
				                 "nacked after %u deliveries (max_deliveries)",
				                 s->deliveries);
				slot_settle(g, s, true, why, (size_t)k);
			} else {
				slot_requeue(g, s, replay);
			}
			break;
		case WHIZBANG__V1__NACK_ACTION__NACK_PARK:
			slot_settle(g, s, true, reason, reason_len);
			break;
		default: /* ack, skip */
			slot_settle(g, s, false, NULL, 0);
			break;
		}
	}
	free(pos);
	enum cop_answer answer = ack ? ANSWER_ACK : ANSWER_NACK;
	if (!submit_flush(cs, g, c, req->id, answer))
		send_checkpoint(c, req->id, answer, g->cp_durable);
}

struct plist {
	struct group *g;
	struct storage_txn *txn;
	Whizbang__V1__ParkedEvent *pe;
	Whizbang__V1__RecordedEvent *re;
	char *strings; /* per event: stream 256, type 256, reason 1025 */
	size_t n, cap;
	size_t bytes, budget;
	int rc;
};

#define PLIST_STRINGS (256u + 256u + CONS_REASON_MAX + 1u)

static bool plist_cb(const struct cons_parked *p, void *arg)
{
	struct plist *l = arg;
	if (rp_find(l->g, p->position) != NULL)
		return true; /* being replayed */
	uint8_t kb[8];
	put_u64(kb, p->position);
	struct storage_val k = {kb, 8}, v;
	struct ev_record rec;
	int rc = storage_get(l->txn, STORAGE_DB_EVENTS, k, &v);
	if (rc == 0)
		rc = ev_decode(p->position, v.data, v.len, &rec);
	if (rc == WB_E_NOTFOUND)
		return true; /* removed since */
	if (rc != 0) {
		l->rc = rc;
		return false;
	}
	size_t est = rec.data_len + rec.meta_len + p->reason_len + 600;
	if (l->n > 0 && l->bytes + est > l->budget)
		return false;
	if (l->n == l->cap) {
		l->rc = WB_E_NOMEM;
		return false;
	}
	char *str = l->strings + l->n * PLIST_STRINGS;
	memcpy(str, rec.stream, rec.stream_len);
	str[rec.stream_len] = '\0';
	memcpy(str + 256, rec.type, rec.type_len);
	str[256 + rec.type_len] = '\0';
	memcpy(str + 512, p->reason, p->reason_len);
	str[512 + p->reason_len] = '\0';
	Whizbang__V1__RecordedEvent *e = &l->re[l->n];
	whizbang__v1__recorded_event__init(e);
	e->id.data = (uint8_t *)rec.id;
	e->id.len = EV_ID_LEN;
	e->stream = str;
	e->type = str + 256;
	e->version = rec.version;
	e->position = rec.position;
	e->timestamp_us = rec.timestamp_us;
	e->data.data = (uint8_t *)rec.data;
	e->data.len = rec.data_len;
	e->metadata.data = (uint8_t *)rec.meta;
	e->metadata.len = rec.meta_len;
	Whizbang__V1__ParkedEvent *pe = &l->pe[l->n];
	whizbang__v1__parked_event__init(pe);
	pe->event = e;
	pe->deliveries = p->deliveries;
	pe->reason = str + 512;
	pe->parked_at_us = p->parked_at_us;
	l->n++;
	l->bytes += est;
	return true;
}

static void handle_list_parked(struct conn *c, Request *req)
{
	struct srv *srv = c->srv;
	const Whizbang__V1__ListParked *lp = req->list_parked;
	struct group *g = ready_group(c, req->id, lp->name);
	if (g == NULL)
		return;
	uint32_t max = srv_clamp_count(srv, lp->max_count);
	if (max > 256)
		max = 256;
	struct plist l = {.g = g, .cap = max, .budget = srv->cfg.max_frame - READ_ENVELOPE};
	l.pe = calloc(max, sizeof(*l.pe));
	l.re = calloc(max, sizeof(*l.re));
	l.strings = malloc((size_t)max * PLIST_STRINGS);
	Whizbang__V1__ParkedEvent **ptrs = calloc(max, sizeof(*ptrs));
	if (l.pe == NULL || l.re == NULL || l.strings == NULL || ptrs == NULL) {
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &l.txn);
	if (rc != 0) {
		srv_send_storage_error(c, req->id, rc, "ListParked");
		goto out;
	}
	uint64_t next;
	bool end;
	rc = cons_parked_list(l.txn, g->cfg.name, g->cfg.name_len, lp->from_position, max, plist_cb,
	                      &l, &next, &end);
	if (rc == 0)
		rc = l.rc;
	if (rc != 0) {
		storage_txn_abort(l.txn);
		srv_send_storage_error(c, req->id, rc, "ListParked");
		goto out;
	}
	for (size_t i = 0; i < l.n; i++)
		ptrs[i] = &l.pe[i];
	Whizbang__V1__ParkedList pl = WHIZBANG__V1__PARKED_LIST__INIT;
	pl.n_events = l.n;
	pl.events = ptrs;
	pl.next_position = next;
	pl.end = end;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = req->id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_PARKED;
	resp.parked = &pl;
	srv_send(c, &resp);
	storage_txn_abort(l.txn);
out:
	free(l.pe);
	free(l.re);
	free(l.strings);
	free(ptrs);
}

struct replay {
	struct group *g;
	uint64_t *pos;
	size_t n, cap;
};

static bool replay_cb(const struct cons_parked *p, void *arg)
{
	struct replay *r = arg;
	if (rp_find(r->g, p->position) != NULL)
		return true;
	if (r->n == r->cap)
		return false;
	r->pos[r->n++] = p->position;
	return true;
}

static void handle_replay(struct conn *c, Request *req)
{
	struct srv *srv = c->srv;
	struct group *g = ready_group(c, req->id, req->replay_parked->name);
	if (g == NULL)
		return;
	struct replay r = {.g = g, .cap = g->window_max > g->nrp ? g->window_max - g->nrp : 0};
	r.pos = malloc((r.cap > 0 ? r.cap : 1) * sizeof(*r.pos));
	struct slot *rp = realloc(g->rp, (g->nrp + r.cap + 1) * sizeof(*rp));
	if (r.pos == NULL || rp == NULL) {
		if (rp != NULL)
			g->rp = rp;
		free(r.pos);
		srv_send_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	g->rp = rp;
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		uint64_t next;
		bool end;
		rc = cons_parked_list(txn, g->cfg.name, g->cfg.name_len, 0, 0, replay_cb, &r, &next,
		                      &end);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		free(r.pos);
		srv_send_storage_error(c, req->id, rc, "ReplayParked");
		return;
	}
	/* Merged into the replay set in position order. They stay parked on
	 * disk until acked or skipped, so a restart does not lose them. */
	for (size_t i = 0; i < r.n; i++) {
		size_t at = rp_index(g, r.pos[i]);
		memmove(&g->rp[at + 1], &g->rp[at], (g->nrp - at) * sizeof(*g->rp));
		memset(&g->rp[at], 0, sizeof(*g->rp));
		g->rp[at].pos = g->rp[at].seq = r.pos[i];
		g->rp[at].state = SLOT_QUEUED;
		g->nrp++;
		g->nqueued++;
	}
	free(r.pos);
	Whizbang__V1__ReplayParkedResult res = WHIZBANG__V1__REPLAY_PARKED_RESULT__INIT;
	res.replayed = r.n;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = req->id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_REPLAY_PARKED;
	resp.replay_parked = &res;
	srv_send(c, &resp);
}

static void handle_credit(struct conn *c, Request *req)
{
	struct member *m = find_member(c->srv->csrv, c, req->credit->subscription);
	if (m == NULL) {
		srv_send_error(c, req->id, WB_NOT_FOUND, "no subscription %llu on this connection",
		               (unsigned long long)req->credit->subscription);
		return;
	}
	uint64_t sum = m->credits + req->credit->n;
	m->credits = sum < CSRV_CREDITS_MAX ? sum : CSRV_CREDITS_MAX;
	Whizbang__V1__CreditResult r = WHIZBANG__V1__CREDIT_RESULT__INIT;
	r.credits = m->credits;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = req->id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_CREDIT;
	resp.credit = &r;
	srv_send(c, &resp);
}

static void handle_unsubscribe(struct conn *c, Request *req)
{
	struct member *m = find_member(c->srv->csrv, c, req->unsubscribe->subscription);
	if (m == NULL) {
		srv_send_error(c, req->id, WB_NOT_FOUND, "no subscription %llu on this connection",
		               (unsigned long long)req->unsubscribe->subscription);
		return;
	}
	member_remove(m);
	Whizbang__V1__UnsubscribeResult r = WHIZBANG__V1__UNSUBSCRIBE_RESULT__INIT;
	Response resp = WHIZBANG__V1__RESPONSE__INIT;
	resp.id = req->id;
	resp.body_case = WHIZBANG__V1__RESPONSE__BODY_UNSUBSCRIBE;
	resp.unsubscribe = &r;
	srv_send(c, &resp);
}

bool csrv_dispatch(struct conn *c, Request *req)
{
	struct srv *srv = c->srv;
	if (srv->csrv == NULL || srv->csrv->closing) {
		srv_send_error(c, req->id, WB_SHUTTING_DOWN, "the server is shutting down");
		return false;
	}
	switch (req->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER:
		handle_create(c, req);
		break;
	case WHIZBANG__V1__REQUEST__BODY_DELETE_CONSUMER:
		handle_delete(c, req);
		break;
	case WHIZBANG__V1__REQUEST__BODY_LIST_CONSUMERS:
		handle_list(c, req);
		break;
	case WHIZBANG__V1__REQUEST__BODY_JOIN_CONSUMER:
		handle_join(c, req);
		break;
	case WHIZBANG__V1__REQUEST__BODY_ACK:
		handle_ack_nack(c, req, true);
		break;
	case WHIZBANG__V1__REQUEST__BODY_NACK:
		handle_ack_nack(c, req, false);
		break;
	case WHIZBANG__V1__REQUEST__BODY_LIST_PARKED:
		handle_list_parked(c, req);
		break;
	case WHIZBANG__V1__REQUEST__BODY_REPLAY_PARKED:
		handle_replay(c, req);
		break;
	case WHIZBANG__V1__REQUEST__BODY_CREDIT:
		handle_credit(c, req);
		break;
	case WHIZBANG__V1__REQUEST__BODY_UNSUBSCRIBE:
		handle_unsubscribe(c, req);
		break;
	default:
		srv_send_error(c, req->id, WB_BAD_REQUEST, "not a consumer group request");
		return false;
	}
	/* Joins, credits, settled events and replays may let events go out;
	 * read_cb flushes the output afterwards. */
	csrv_pump(srv);
	return false;
}

bool csrv_owns(struct conn *c, uint64_t id)
{
	struct csrv *cs = c->srv->csrv;
	return cs != NULL && find_member(cs, c, id) != NULL;
}

void csrv_conn_closed(struct conn *c)
{
	struct csrv *cs = c->srv->csrv;
	if (cs == NULL)
		return;
	bool any = false;
	for (struct group *g = cs->groups; g != NULL; g = g->next) {
		struct member *m = g->members;
		while (m != NULL) {
			struct member *next = m->next;
			if (m->conn == c) {
				member_remove(m);
				any = true;
			}
			m = next;
		}
	}
	/* Its events go to the other members; not from inside conn_close's
	 * caller chain, but on the timer's next turn. */
	if (any)
		arm_timer(cs, uv_now(c->srv->loop));
}

/* ------------------------------------------------------------ life cycle */

struct load {
	struct csrv *cs;
	int rc;
};

static bool load_cb(const struct cons_record *r, void *arg)
{
	struct load *l = arg;
	struct group *g = group_new(l->cs, r);
	if (g == NULL) {
		l->rc = WB_E_NOMEM;
		return false;
	}
	group_load(g, r);
	return true;
}

int csrv_init(struct srv *srv, char *errmsg, size_t errlen)
{
	struct csrv *cs = calloc(1, sizeof(*cs));
	if (cs == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	cs->srv = srv;
	cs->timer_due = UINT64_MAX;
	struct storage_txn *txn;
	struct load l = {cs, 0};
	int rc = storage_txn_begin(srv->st, NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = cons_list(txn, load_cb, &l);
		if (rc == 0)
			rc = l.rc;
		for (struct group *g = cs->groups; g != NULL && rc == 0; g = g->next)
			rc = cons_parked_count(txn, g->cfg.name, g->cfg.name_len, &g->nparked);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot load the consumer groups: %s", wb_strerror(rc));
		while (cs->groups != NULL)
			group_free(cs, cs->groups, false);
		free(cs);
		return rc;
	}
	uv_timer_init(srv->loop, &cs->timer);
	cs->timer.data = cs;
	cs->timer_open = true;
	srv->csrv = cs;
	srv_log(LOG_INFO, "consumers_loaded", "groups=%zu", cs->ngroups);
	return 0;
}

void csrv_shutdown(struct srv *srv)
{
	struct csrv *cs = srv->csrv;
	if (cs == NULL || cs->closing)
		return;
	cs->closing = true;
	if (cs->timer_open) {
		cs->timer_open = false;
		uv_close((uv_handle_t *)&cs->timer, NULL);
	}
}

void csrv_close(struct srv *srv)
{
	struct csrv *cs = srv->csrv;
	if (cs == NULL)
		return;
	while (cs->groups != NULL)
		group_free(cs, cs->groups, false);
	free(cs);
	srv->csrv = NULL;
}
