/* Durable consumer groups on the loop (DESIGN.md §5, docs/SUBSCRIPTIONS.md
 * section 2).
 *
 * Happy path: CreateConsumer stores the group's record (through the writer:
 * answered once durable). Members JoinConsumer and grant credits; after
 * every writer batch, every drained output and every request of this
 * module, the pump reads the group's next matching events into its
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
#include "pb.h"
#include "record.h"
#include "server.h"
#include "validate.h"
#include "wb_error.h"

/* Credits a member may hold. */
#define GROUP_CREDITS_MAX 100000u
/* Memberships in the whole server (a connection may join many groups). */
#define GROUP_MEMBERS_TOTAL_MAX 65536u
/* Work per group per pump; what is left is picked up by a zero timer. */
#define GROUP_READ_PER_PUMP 512u
#define GROUP_SEND_PER_PUMP 1024u
/* Reading stops filling the window while this many events are queued. */
#define GROUP_QUEUED_LOW 1024u
/* Expiry scans are at least this far apart. */
#define GROUP_TIMER_SLACK_MS 10u

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
	size_t nrp, rpcap; /* rpcap: slots allocated */
	/* What win and rp hold, as counted against --memory-budget
	 * (group_mem()). */
	uint64_t mem;
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

struct cgroups {
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
	struct cgroups *cs;
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
	uint8_t *recbuf; /* the op's log record (cop_seal()) */
	/* results, written by the writer thread */
	uint64_t out_checkpoint;
	uint64_t out_removed;
};

/* A group's name as a log value. The client chose it, spaces, quotes and
 * '=' included (cons_check_name() refuses only control bytes), so it is
 * quoted: a name cannot pose as fields of the line. */
#define QNAME_MAX (4u * CONS_NAME_MAX + 3u)

static const char *qname(const char *name, char out[QNAME_MAX])
{
	return log_quote(name, strlen(name), out, QNAME_MAX);
}

static void arm_timer(struct cgroups *cs, uint64_t due);
static void pump_group(struct cgroups *cs, struct group *g, struct storage_txn *txn, uint64_t now,
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
		rc = ev_position_at(txn, info.stream_id, v, &r->checkpoint);
		if (rc == WB_E_NOTFOUND)
			r->checkpoint = 0;
		else if (rc != 0)
			return rc;
	}
	return 0;
}

/* A group write's record:
 *
 *   u8 kind | name bytes | u64 time us | then by kind:
 *   CREATE  the group's record (cons_encode()) as bytes
 *   DELETE  nothing
 *   FLUSH   u64 checkpoint | u64 resume | u32 n | n × (u64 position |
 *           u32 deliveries | reason bytes) | u32 m | m × u64 position
 *           (parked events, then events taken out of the parked list) */
#define COP_REC_VERSION 1

struct cop_out {
	uint64_t checkpoint;
	uint64_t removed;
	struct cons_record created; /* CREATE: with its resolved start */
};

static int cop_rec_apply(struct storage_txn *txn, const uint8_t *rec, size_t len,
                         struct cop_out *out)
{
	struct rec_reader r = rec_reader(rec, len);
	struct cons_record cur;
	int rc;

	out->checkpoint = 0;
	out->removed = 0;
	uint8_t kind = rec_get_u8(&r);
	size_t name_len;
	const char *name = (const char *)rec_get_bytes(&r, &name_len);
	uint64_t now_us = rec_get_u64(&r);
	if (r.bad || name_len == 0 || name_len > CONS_NAME_MAX)
		return WB_E_CORRUPT;
	switch (kind) {
	case COP_CREATE: {
		size_t n;
		const uint8_t *v = rec_get_bytes(&r, &n);
		if (!rec_ok(&r) || cons_decode(name, name_len, v, n, &out->created) != 0)
			return WB_E_CORRUPT;
		rc = cons_get(txn, name, name_len, &cur);
		if (rc == 0)
			return WB_E_KEYEXIST;
		if (rc != WB_E_NOTFOUND)
			return rc;
		rc = resolve_start(txn, &out->created);
		if (rc == 0)
			rc = cons_put(txn, &out->created);
		return rc;
	}
	case COP_DELETE:
		return rec_ok(&r) ? cons_delete(txn, name, name_len, &out->removed) : WB_E_CORRUPT;
	case COP_FLUSH:
		break;
	default:
		return WB_E_CORRUPT;
	}
	uint64_t checkpoint = rec_get_u64(&r);
	uint64_t resume = rec_get_u64(&r);
	if (r.bad)
		return WB_E_CORRUPT;
	rc = cons_get(txn, name, name_len, &cur);
	if (rc != 0)
		return rc; /* deleted meanwhile: WB_E_NOTFOUND */
	uint32_t nparks = rec_get_u32(&r);
	for (uint32_t i = 0; i < nparks && !r.bad; i++) {
		uint64_t pos = rec_get_u64(&r);
		uint32_t deliveries = rec_get_u32(&r);
		size_t reason_len;
		const char *reason = (const char *)rec_get_bytes(&r, &reason_len);
		if (r.bad)
			break;
		rc = cons_park(txn, name, name_len, pos, deliveries, now_us, reason, reason_len);
		if (rc != 0)
			return rc;
	}
	uint32_t nunparks = rec_get_u32(&r);
	for (uint32_t i = 0; i < nunparks && !r.bad; i++) {
		uint64_t pos = rec_get_u64(&r);
		if (r.bad)
			break;
		rc = cons_unpark(txn, name, name_len, pos);
		if (rc != 0 && rc != WB_E_NOTFOUND)
			return rc;
	}
	if (!rec_ok(&r))
		return WB_E_CORRUPT;
	rc = cons_set_checkpoint(txn, name, name_len, checkpoint, resume);
	if (rc != 0)
		return rc;
	rc = cons_get(txn, name, name_len, &cur);
	if (rc == 0)
		out->checkpoint = cur.checkpoint;
	return rc;
}

static int cop_replay(struct storage_txn *txn, uint16_t version, const uint8_t *rec, size_t len)
{
	struct cop_out out;
	(void)version;
	return cop_rec_apply(txn, rec, len, &out);
}

/* Runs on the writer thread. */
static int cop_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct cop *op = (struct cop *)base;
	struct cop_out out;
	int rc = cop_rec_apply(txn, base->rec, base->rec_len, &out);
	op->out_checkpoint = out.checkpoint;
	op->out_removed = out.removed;
	if (rc == 0 && op->kind == COP_CREATE)
		op->rec = out.created;
	return rc;
}

/* Encodes op's record; 0 or WB_E_NOMEM / WB_E_INVAL. */
static int cop_seal(struct cop *op)
{
	struct rec_builder b = {0};
	rec_u8(&b, (uint8_t)op->kind);
	rec_bytes(&b, op->name, op->name_len);
	rec_u64(&b, op->now_us);
	if (op->kind == COP_CREATE) {
		uint8_t v[CONS_RECORD_MAX];
		size_t n;
		int rc = cons_encode(&op->rec, v, &n);
		if (rc != 0) {
			free(b.p);
			return rc;
		}
		rec_bytes(&b, v, n);
	} else if (op->kind == COP_FLUSH) {
		rec_u64(&b, op->checkpoint);
		rec_u64(&b, op->resume);
		rec_u32(&b, (uint32_t)op->nparks);
		for (size_t i = 0; i < op->nparks; i++) {
			rec_u64(&b, op->parks[i].pos);
			rec_u32(&b, op->parks[i].deliveries);
			rec_bytes(&b, op->parks[i].reason, op->parks[i].reason_len);
		}
		rec_u32(&b, (uint32_t)op->nunparks);
		for (size_t i = 0; i < op->nunparks; i++)
			rec_u64(&b, op->unparks[i]);
	}
	int rc = rec_out(&b, &op->recbuf, &op->base.base.rec_len);
	if (rc == 0) {
		op->base.base.rec = op->recbuf;
		op->base.base.rec_type = SRV_REC_CONSUMER;
		op->base.base.rec_version = COP_REC_VERSION;
	}
	return rc;
}

static void cop_free(struct cop *op)
{
	free(op->recbuf);
	for (size_t i = 0; i < op->nparks; i++)
		free(op->parks[i].reason);
	free(op->parks);
	free(op->unparks);
	free(op);
}

static void cop_done(struct srv *srv, struct srv_op *base);

static struct cop *cop_new(struct cgroups *cs, enum cop_kind kind, struct conn *c, uint64_t req_id,
                           const char *name, size_t name_len)
{
	struct cop *op = calloc(1, sizeof(*op));
	if (op == NULL)
		return NULL;
	op->cs = cs;
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

static struct group *find_group(struct cgroups *cs, const char *name, size_t len)
{
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		if (g->cfg.name_len == len && memcmp(g->cfg.name, name, len) == 0)
			return g;
	return NULL;
}

static struct group *find_gid(struct cgroups *cs, uint64_t gid)
{
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		if (g->gid == gid)
			return g;
	return NULL;
}

/* Counts what g's window and replayed slots take now into the memory
 * budget (they hold positions, not events, but up to --consumer-window of
 * them a group); gone: g is being freed. */
static void group_mem(struct cgroups *cs, struct group *g, bool gone)
{
	uint64_t now = gone ? 0 : (uint64_t)(g->cap + g->rpcap) * sizeof(struct slot);
	conns_mem_held_add(srv_conns(cs->srv), (int64_t)now - (int64_t)g->mem);
	g->mem = now;
}

static struct group *group_new(struct cgroups *cs, const struct cons_record *r)
{
	struct group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->gid = ++cs->next_gid;
	g->cfg = *r;
	g->window_max = srv_config(cs->srv)->consumer_window;
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
static void group_free(struct cgroups *cs, struct group *g, bool tell)
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
		if (tell && !conn_is_closing(m->conn))
			srv_error(m->conn, m->req_id, WB_NOT_FOUND,
			          "consumer group '%s' was deleted: subscription %llu ended",
			          g->cfg.name, (unsigned long long)m->sub_id);
		free(m);
	}
	parks_clear(g);
	free(g->parks);
	free(g->unparks);
	group_mem(cs, g, true);
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
static bool submit_flush(struct cgroups *cs, struct group *g, struct conn *c, uint64_t req_id,
                         enum cop_answer answer)
{
	advance(g);
	if (g->cp_mem <= g->cp_submitted && g->nparks == 0 && g->nunparks == 0)
		return false;
	struct cop *op = cop_new(cs, COP_FLUSH, c, req_id, g->cfg.name, g->cfg.name_len);
	if (op == NULL) {
		char q[QNAME_MAX];
		srv_log(WB_LOG_ERROR, "consumer_flush_failed", "group=%s error=no_memory",
		        qname(g->cfg.name, q));
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
	if (cop_seal(op) != 0) {
		/* the parks stay the group's, for the next flush */
		op->parks = NULL;
		op->nparks = 0;
		op->unparks = NULL;
		op->nunparks = 0;
		cop_free(op);
		char q[QNAME_MAX];
		srv_log(WB_LOG_ERROR, "consumer_flush_failed", "group=%s error=no_memory",
		        qname(g->cfg.name, q));
		return false;
	}
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
	if (answer == ANSWER_ACK) {
		Whizbang__V1__AckResult a = WHIZBANG__V1__ACK_RESULT__INIT;
		a.checkpoint = cp;
		SRV_REPLY(c, id, ACK, ack, &a);
	} else {
		Whizbang__V1__NackResult n = WHIZBANG__V1__NACK_RESULT__INIT;
		n.checkpoint = cp;
		SRV_REPLY(c, id, NACK, nack, &n);
	}
}

static void cop_done(struct srv *srv, struct srv_op *base)
{
	struct cop *op = (struct cop *)base;
	struct cgroups *cs = op->cs;
	struct conn *c = base->conn;
	int rc = base->base.status;
	struct group *g = find_gid(cs, op->gid);
	bool answer = c != NULL && !conn_is_closing(c);

	switch (op->kind) {
	case COP_CREATE:
		if (rc != 0) {
			if (g != NULL)
				group_free(cs, g, false);
			if (!answer)
				break;
			if (rc == WB_E_KEYEXIST)
				srv_error(c, base->req_id, WB_BAD_REQUEST,
				          "consumer group '%s' already exists", op->name);
			else
				srv_storage_error(c, base->req_id, rc, "CreateConsumer");
			break;
		}
		if (g != NULL) {
			group_load(g, &op->rec);
			char q[QNAME_MAX];
			srv_log(WB_LOG_INFO, "consumer_created", "group=%s checkpoint=%llu",
			        qname(op->name, q), (unsigned long long)g->cp_durable);
		}
		if (answer && g != NULL) {
			Whizbang__V1__ConsumerInfo info;
			Whizbang__V1__ConsumerConfig cfg;
			fill_info(g, &info, &cfg);
			SRV_REPLY(c, base->req_id, CONSUMER, consumer, &info);
		}
		break;
	case COP_DELETE:
		if (!answer)
			break;
		if (rc == 0) {
			Whizbang__V1__DeleteConsumerResult d =
			        WHIZBANG__V1__DELETE_CONSUMER_RESULT__INIT;
			SRV_REPLY(c, base->req_id, DELETE_CONSUMER, delete_consumer, &d);
		} else if (rc == WB_E_NOTFOUND) {
			srv_error(c, base->req_id, WB_NOT_FOUND, "no consumer group '%s'",
			          op->name);
		} else {
			srv_storage_error(c, base->req_id, rc, "DeleteConsumer");
		}
		break;
	case COP_FLUSH:
		if (rc != 0 && rc != WB_E_NOTFOUND) {
			char q[QNAME_MAX];
			srv_log(WB_LOG_ERROR, "consumer_flush_failed", "group=%s error=%s",
			        qname(op->name, q), wb_error_name(rc));
		}
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
				arm_timer(cs, uv_now(srv_loop(srv)) + 1000);
		}
		if (!answer || op->answer == ANSWER_NONE)
			break;
		if (rc == 0)
			send_checkpoint(c, base->req_id, op->answer, op->out_checkpoint);
		else if (rc == WB_E_NOTFOUND)
			srv_error(c, base->req_id, WB_NOT_FOUND, "consumer group '%s' was deleted",
			          op->name);
		else
			srv_storage_error(c, base->req_id, rc,
			                  op->answer == ANSWER_ACK ? "AckEvents" : "NackEvents");
		break;
	}
	cop_free(op);
}

/* ------------------------------------------------------------ delivery */

static bool member_ready(const struct member *m)
{
	return m->credits > 0 && conn_can_push(m->conn);
}

/* The next member (round-robin) that can take an event, or NULL. */
static struct member *pick_member(struct group *g)
{
	struct member *m = g->rr != NULL ? g->rr : g->members;
	for (size_t i = 0; i < g->nmembers && m != NULL; i++) {
		if (member_ready(m)) {
			g->rr = m->next;
			return m;
		}
		m = m->next != NULL ? m->next : g->members;
	}
	return NULL;
}

/* Sends the event of s to m. Returns 0, or WB_E_NOTFOUND when the event is
 * no longer stored (it is then settled as skipped). */
static int deliver(struct cgroups *cs, struct group *g, struct member *m, struct slot *s,
                   struct storage_txn *txn, uint64_t now)
{
	struct ev_record rec;
	int rc = ev_get(txn, s->pos, &rec);
	if (rc != 0)
		return rc;
	struct pb_event_names names;
	Whizbang__V1__RecordedEvent e;
	pb_event_view(&rec, &names, &e);
	s->deliveries++;
	Whizbang__V1__SubscriptionItem item = WHIZBANG__V1__SUBSCRIPTION_ITEM__INIT;
	item.subscription = m->sub_id;
	item.item_case = WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT;
	item.event = &e;
	item.delivery = s->deliveries;
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
	SRV_REPLY(m->conn, m->req_id, SUBSCRIPTION_ITEM, subscription_item, &item);
	return 0;
}

struct fill {
	struct cgroups *cs;
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
		group_mem(f->cs, g, false);
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

/* Reads the group's next events into its window. Near the memory budget
 * only into the slots the window has: it grows again once the budget is
 * below 3/4, and acks free slots meanwhile. */
static void fill_window(struct cgroups *cs, struct group *g, struct storage_txn *txn, bool *more)
{
	size_t used = g->len - g->head;
	if (used >= g->window_max || g->nqueued >= GROUP_QUEUED_LOW)
		return;
	size_t room = g->window_max - used;
	/* Near the budget, only into the slots it has. */
	if (conns_near_budget(srv_conns(cs->srv)) && g->cap - g->len < room)
		room = g->cap - g->len;
	if (room == 0)
		return;
	uint32_t want = room > GROUP_READ_PER_PUMP ? GROUP_READ_PER_PUMP : (uint32_t)room;
	struct fill f = {cs, g, txn, 0};
	struct ev_page page;
	int rc;
	if (g->cfg.target == CONS_TARGET_ALL) {
		struct ev_filter filter = {
		        .prefix = g->cfg.prefix,
		        .prefix_len = g->cfg.prefix_len,
		        .types = g->types,
		        .type_lens = g->cfg.type_lens,
		        .ntypes = g->cfg.ntypes,
		        .max_examined = GROUP_READ_PER_PUMP * 8,
		};
		rc = ev_read_all(txn, g->next_read, false, want, &filter, fill_cb, &f, &page);
	} else {
		rc = ev_read_stream(txn, g->cfg.stream, g->cfg.stream_len, g->next_read, false,
		                    want, fill_cb, &f, &page);
	}
	if (rc == WB_E_NOTFOUND || rc == WB_STREAM_DELETED)
		return; /* no stream (yet, or soft-deleted), or hard-deleted: nothing to read */
	if (rc != 0 || f.rc != 0) {
		char q[QNAME_MAX];
		srv_log(WB_LOG_ERROR, "consumer_read_failed", "group=%s error=%s",
		        qname(g->cfg.name, q), wb_error_name(rc != 0 ? rc : f.rc));
		return;
	}
	if (page.next > g->next_read)
		g->next_read = page.next;
	if (!page.end)
		*more = true;
	advance(g); /* events parked before a restart may be settled already */
}

/* One pump's deliveries to one group. */
struct offer {
	struct cgroups *cs;
	struct group *g;
	struct storage_txn *txn;
	uint64_t now;
	unsigned sent;
	bool *more;   /* set when the pump's share ran out with events queued */
	bool settled; /* the last slot offered was settled: its event is gone */
};

/* Delivers the queued slot s to the next member that can take it. Returns
 * false when the pump stops here: no member can take it, the share is used
 * up, or reading failed. */
static bool offer(struct offer *o, struct slot *s)
{
	o->settled = false;
	if (o->sent == GROUP_SEND_PER_PUMP) {
		*o->more = true;
		return false;
	}
	struct member *m = pick_member(o->g);
	if (m == NULL)
		return false;
	int rc = deliver(o->cs, o->g, m, s, o->txn, o->now);
	if (rc == WB_E_NOTFOUND) {
		slot_settle(o->g, s, false, NULL, 0);
		o->settled = true;
	} else if (rc != 0) {
		return false;
	}
	o->sent++;
	return true;
}

static void pump_group(struct cgroups *cs, struct group *g, struct storage_txn *txn, uint64_t now,
                       bool *more)
{
	if (!g->ready || g->nmembers == 0)
		return;
	fill_window(cs, g, txn, more);
	struct offer o = {cs, g, txn, now, 0, more, false};
	/* replayed parked events first: they are the oldest */
	for (size_t i = 0; i < g->nrp && g->nqueued > 0; i++) {
		struct slot *s = &g->rp[i];
		if (s->state != SLOT_QUEUED)
			continue;
		if (!offer(&o, s))
			return;
		if (o.settled)
			i--; /* settling a replayed slot removed it */
	}
	for (size_t i = g->qhint; i < g->len && g->nqueued > 0; i++) {
		struct slot *s = &g->win[i];
		if (s->state == SLOT_QUEUED && !offer(&o, s))
			return;
		if (i == g->qhint)
			g->qhint++;
	}
}

static void groups_pump(void *state)
{
	struct cgroups *cs = state;
	if (cs->closing || cs->groups == NULL)
		return;
	bool any = false;
	for (struct group *g = cs->groups; g != NULL && !any; g = g->next)
		any = g->ready && g->nmembers > 0;
	if (!any)
		return;
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(cs->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_log(WB_LOG_ERROR, "consumer_read_failed", "error=%s", wb_error_name(rc));
		return;
	}
	uint64_t now = uv_now(srv_loop(cs->srv));
	bool more = false;
	for (struct group *g = cs->groups; g != NULL; g = g->next) {
		bool gmore = false;
		pump_group(cs, g, txn, now, &gmore);
		/* only worth coming back for when someone can take it */
		for (struct member *m = g->members; gmore && !more && m != NULL; m = m->next)
			more = member_ready(m);
	}
	storage_txn_abort(txn);
	if (more)
		arm_timer(cs, now);
}

/* ------------------------------------------------------------ the timer */

/* Requeues (or parks) g's events whose ack timeout passed; returns the
 * earliest deadline still ahead. */
static uint64_t expire_slots(struct cgroups *cs, struct group *g, struct slot *slots, size_t from,
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
	struct cgroups *cs = t->data;
	if (cs->closing)
		return;
	cs->timer_due = UINT64_MAX;
	uint64_t now = uv_now(srv_loop(cs->srv));
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
		arm_timer(cs,
		          next > now + GROUP_TIMER_SLACK_MS ? next : now + GROUP_TIMER_SLACK_MS);
	groups_pump(cs);
	srv_flush(cs->srv);
}

static void arm_timer(struct cgroups *cs, uint64_t due)
{
	if (!cs->timer_open || cs->closing || due >= cs->timer_due)
		return;
	uint64_t now = uv_now(srv_loop(cs->srv));
	cs->timer_due = due;
	uv_timer_start(&cs->timer, timer_cb, due > now ? due - now : 0, 0);
}

/* ------------------------------------------------------------ requests */

static struct group *ready_group(struct cgroups *cs, struct conn *c, uint64_t id, const char *name)
{
	struct group *g = find_group(cs, name, strlen(name));
	if (g == NULL || !g->ready) {
		srv_error(c, id, WB_NOT_FOUND, "no consumer group '%s'", name);
		return NULL;
	}
	return g;
}

static void create(struct cgroups *cs, struct conn *c, Request *req)
{
	const struct srv_config *cfg = srv_config(cs->srv);
	struct cons_record r;
	char why[256];
	if (validate_consumer(req->create_consumer->config, &r, why, sizeof(why)) != 0) {
		srv_error(c, req->id, WB_BAD_REQUEST, "%s", why);
		return;
	}
	r.created_us = srv_wall_us();
	if (find_group(cs, r.name, r.name_len) != NULL) {
		srv_error(c, req->id, WB_BAD_REQUEST, "consumer group '%s' already exists", r.name);
		return;
	}
	if (cs->ngroups >= cfg->max_consumer_groups) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "this server keeps at most %llu consumer groups (--max-consumer-groups)",
		          (unsigned long long)cfg->max_consumer_groups);
		return;
	}
	/* Who makes it owns it, durably: an identity may own at most
	 * --max-consumer-groups-per-identity (the admin role, any number). */
	char owner[SRV_IDENTITY_MAX];
	srv_identity(cs->srv, c, owner);
	snprintf(r.owner, sizeof(r.owner), "%s", owner);
	r.owner_len = strlen(r.owner);
	uint64_t quota = cfg->max_consumer_groups_per_identity;
	if (quota != 0 && !srv_conn_is_admin(c)) {
		uint64_t mine = 0;
		for (const struct group *o = cs->groups; o != NULL; o = o->next)
			mine += o->cfg.owner_len == r.owner_len &&
			        memcmp(o->cfg.owner, r.owner, r.owner_len) == 0;
		if (mine >= quota) {
			srv_error(
			        c, req->id, WB_RESOURCE_EXHAUSTED,
			        "this client (its user, token or address) owns %llu consumer "
			        "groups, "
			        "the most one may (--max-consumer-groups-per-identity): delete one",
			        (unsigned long long)mine);
			srv_quota_refused(cs->srv, c);
			return;
		}
	}
	struct cop *op = cop_new(cs, COP_CREATE, c, req->id, r.name, r.name_len);
	struct group *g = op != NULL ? group_new(cs, &r) : NULL;
	if (g == NULL) {
		free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	op->gid = g->gid;
	op->rec = r;
	if (cop_seal(op) != 0) {
		group_free(cs, g, false);
		cop_free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	srv_submit(cs->srv, &op->base);
}

static void delete (struct cgroups *cs, struct conn *c, Request *req)
{
	struct group *g = ready_group(cs, c, req->id, req->delete_consumer->name);
	if (g == NULL)
		return;
	struct cop *op = cop_new(cs, COP_DELETE, c, req->id, g->cfg.name, g->cfg.name_len);
	if (op == NULL || cop_seal(op) != 0) {
		if (op != NULL)
			cop_free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	char q[QNAME_MAX];
	srv_log(WB_LOG_INFO, "consumer_deleted", "group=%s members=%zu", qname(g->cfg.name, q),
	        g->nmembers);
	/* Gone from memory at once: no more pushes, joins or acks; the writes
	 * it still has in flight find no record and write nothing. */
	group_free(cs, g, true);
	srv_submit(cs->srv, &op->base);
}

static void list(struct cgroups *cs, struct conn *c, Request *req)
{
	size_t n = 0;
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		n += g->ready;
	Whizbang__V1__ConsumerInfo *infos = calloc(n > 0 ? n : 1, sizeof(*infos));
	Whizbang__V1__ConsumerConfig *cfgs = calloc(n > 0 ? n : 1, sizeof(*cfgs));
	Whizbang__V1__ConsumerInfo **ptrs = calloc(n > 0 ? n : 1, sizeof(*ptrs));
	if (infos == NULL || cfgs == NULL || ptrs == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
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
	Whizbang__V1__ConsumerList l = WHIZBANG__V1__CONSUMER_LIST__INIT;
	l.n_consumers = n;
	l.consumers = ptrs;
	SRV_REPLY(c, req->id, CONSUMERS, consumers, &l);
out:
	free(infos);
	free(cfgs);
	free(ptrs);
}

static void join(struct cgroups *cs, struct conn *c, Request *req)
{
	struct group *g = ready_group(cs, c, req->id, req->join_consumer->name);
	if (g == NULL)
		return;
	if (cs->nmembers >= GROUP_MEMBERS_TOTAL_MAX) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "this server keeps at most %u consumer memberships",
		          GROUP_MEMBERS_TOTAL_MAX);
		return;
	}
	if (g->nmembers >= srv_config(cs->srv)->max_consumer_members) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "consumer group '%s' has %zu members already (--max-consumer-members)",
		          g->cfg.name, g->nmembers);
		return;
	}
	struct member *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	m->g = g;
	m->conn = c;
	m->req_id = req->id;
	m->sub_id = srv_new_subscription_id(cs->srv);
	m->credits = req->join_consumer->credits < GROUP_CREDITS_MAX ? req->join_consumer->credits
	                                                             : GROUP_CREDITS_MAX;
	/* at the end, so round-robin order is join order */
	struct member **pp = &g->members;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = m;
	g->nmembers++;
	cs->nmembers++;
	char q[QNAME_MAX];
	srv_log(WB_LOG_DEBUG, "consumer_joined", "group=%s conn=%llu subscription=%llu",
	        qname(g->cfg.name, q), (unsigned long long)conn_id(c),
	        (unsigned long long)m->sub_id);
	Whizbang__V1__SubscribeResult r = WHIZBANG__V1__SUBSCRIBE_RESULT__INIT;
	r.subscription = m->sub_id;
	r.start = g->cp_mem + 1;
	/* Last: an answer that cannot be queued closes c, which frees m. */
	SRV_REPLY(c, req->id, SUBSCRIBE, subscribe, &r);
}

static struct member *find_member(struct cgroups *cs, const struct conn *c, uint64_t sub)
{
	for (struct group *g = cs->groups; g != NULL; g = g->next)
		for (struct member *m = g->members; m != NULL; m = m->next)
			if (m->conn == c && m->sub_id == sub)
				return m;
	return NULL;
}

/* Removes m from its group; its in-flight events go back to the queue. */
static void member_remove(struct cgroups *cs, struct member *m)
{
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

/* Resolves the event ids to positions (pos[i]); answers the request and
 * returns false when one is not stored or not delivered by g. */
static bool resolve_ids(struct cgroups *cs, struct conn *c, uint64_t id, struct group *g,
                        const ProtobufCBinaryData *ids, size_t n, uint64_t *pos)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(cs->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_storage_error(c, id, rc, "reading event ids");
		return false;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = ev_position_of_id(txn, ids[i].data, &pos[i]);
	storage_txn_abort(txn);
	if (rc == WB_E_NOTFOUND) {
		srv_error(c, id, WB_NOT_FOUND, "an id is not the id of a stored event");
		return false;
	}
	if (rc != 0) {
		srv_storage_error(c, id, rc, "reading event ids");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (rp_find(g, pos[i]) != NULL || win_find(g, pos[i]) != NULL ||
		    pos[i] <= g->cp_mem)
			continue;
		srv_error(c, id, WB_BAD_REQUEST,
		          "ids[%zu] (position %llu) was not delivered by consumer group '%s'", i,
		          (unsigned long long)pos[i], g->cfg.name);
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

static void ack_nack(struct cgroups *cs, struct conn *c, Request *req)
{
	bool ack = req->body_case == WHIZBANG__V1__REQUEST__BODY_ACK;
	const Whizbang__V1__NackEvents *nack = ack ? NULL : req->nack;
	const char *name = ack ? req->ack->name : nack->name;
	const ProtobufCBinaryData *ids = ack ? req->ack->ids : nack->ids;
	size_t n = ack ? req->ack->n_ids : nack->n_ids;
	char why[256];
	struct group *g = ready_group(cs, c, req->id, name);
	if (g == NULL)
		return;
	if (validate_ack(ids, n, nack, why, sizeof(why)) != 0) {
		srv_error(c, req->id, WB_BAD_REQUEST, "%s", why);
		return;
	}
	Whizbang__V1__NackAction action = ack ? WHIZBANG__V1__NACK_ACTION__NACK_SKIP : nack->action;
	const char *reason = ack ? "" : nack->reason;
	size_t reason_len = strlen(reason);
	if (action == WHIZBANG__V1__NACK_ACTION__NACK_PARK && reason_len == 0) {
		reason = "parked by a nack";
		reason_len = strlen(reason);
	}
	uint64_t *pos = malloc((n > 0 ? n : 1) * sizeof(*pos));
	if (pos == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (!resolve_ids(cs, c, req->id, g, ids, n, pos)) {
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
				char r[96];
				int k = snprintf(r, sizeof(r),
				                 "nacked after %u deliveries (max_deliveries)",
				                 s->deliveries);
				slot_settle(g, s, true, r, (size_t)k);
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

/* One page of parked events, built on an arena. */
struct plist {
	struct group *g;
	struct storage_txn *txn;
	struct page page;
	int rc;
};

static bool plist_cb(const struct cons_parked *p, void *arg)
{
	struct plist *l = arg;
	if (rp_find(l->g, p->position) != NULL)
		return true; /* being replayed */
	struct ev_record rec;
	int rc = ev_get(l->txn, p->position, &rec);
	if (rc == WB_E_NOTFOUND)
		return true; /* removed since */
	if (rc != 0) {
		l->rc = rc;
		return false;
	}
	size_t est = rec.data_len + rec.meta_len + p->reason_len + 600;
	if (!page_fits(&l->page, est))
		return false;
	Whizbang__V1__ParkedEvent *pe = arena_alloc(&l->page.a, sizeof(*pe));
	if (pe != NULL) {
		whizbang__v1__parked_event__init(pe);
		pe->event = pb_event_new(&l->page.a, &rec);
		pe->reason = arena_strndup(&l->page.a, p->reason, p->reason_len);
		pe->deliveries = p->deliveries;
		pe->parked_at_us = p->parked_at_us;
		if (pe->event == NULL || pe->reason == NULL)
			pe = NULL;
	}
	if (!page_add(&l->page, pe, est)) {
		l->rc = WB_E_NOMEM;
		return false;
	}
	return true;
}

static void list_parked(struct cgroups *cs, struct conn *c, Request *req)
{
	const Whizbang__V1__ListParked *lp = req->list_parked;
	struct group *g = ready_group(cs, c, req->id, lp->name);
	if (g == NULL)
		return;
	uint32_t max = srv_clamp_count(cs->srv, lp->max_count);
	if (max > 256)
		max = 256;
	struct plist l = {.g = g, .page = {.budget = srv_page_budget(cs->srv)}};
	int rc = storage_txn_begin(srv_storage(cs->srv), NULL, STORAGE_RDONLY, &l.txn);
	if (rc != 0) {
		srv_storage_error(c, req->id, rc, "ListParked");
		return;
	}
	uint64_t next;
	bool end;
	rc = cons_parked_list(l.txn, g->cfg.name, g->cfg.name_len, lp->from_position, max, plist_cb,
	                      &l, &next, &end);
	if (rc == 0)
		rc = l.rc;
	if (rc == WB_E_NOMEM) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
	} else if (rc != 0) {
		srv_storage_error(c, req->id, rc, "ListParked");
	} else {
		Whizbang__V1__ParkedList pl = WHIZBANG__V1__PARKED_LIST__INIT;
		pl.n_events = l.page.n;
		pl.events = (Whizbang__V1__ParkedEvent **)l.page.items;
		pl.next_position = next;
		pl.end = end;
		SRV_REPLY(c, req->id, PARKED, parked, &pl);
	}
	storage_txn_abort(l.txn);
	page_free(&l.page);
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

static void replay_parked(struct cgroups *cs, struct conn *c, Request *req)
{
	struct group *g = ready_group(cs, c, req->id, req->replay_parked->name);
	if (g == NULL)
		return;
	struct replay r = {.g = g, .cap = g->window_max > g->nrp ? g->window_max - g->nrp : 0};
	r.pos = malloc((r.cap > 0 ? r.cap : 1) * sizeof(*r.pos));
	struct slot *rp = realloc(g->rp, (g->nrp + r.cap + 1) * sizeof(*rp));
	if (r.pos == NULL || rp == NULL) {
		if (rp != NULL) {
			g->rp = rp;
			g->rpcap = g->nrp + r.cap + 1;
			group_mem(cs, g, false);
		}
		free(r.pos);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	g->rp = rp;
	g->rpcap = g->nrp + r.cap + 1;
	group_mem(cs, g, false);
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(cs->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		uint64_t next;
		bool end;
		rc = cons_parked_list(txn, g->cfg.name, g->cfg.name_len, 0, 0, replay_cb, &r, &next,
		                      &end);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		free(r.pos);
		srv_storage_error(c, req->id, rc, "ReplayParked");
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
	SRV_REPLY(c, req->id, REPLAY_PARKED, replay_parked, &res);
}

static void credit(struct cgroups *cs, struct conn *c, Request *req)
{
	struct member *m = find_member(cs, c, req->credit->subscription); /* dispatch checked it */
	uint64_t sum = m->credits + req->credit->n;
	m->credits = sum < GROUP_CREDITS_MAX ? sum : GROUP_CREDITS_MAX;
	Whizbang__V1__CreditResult r = WHIZBANG__V1__CREDIT_RESULT__INIT;
	r.credits = m->credits;
	SRV_REPLY(c, req->id, CREDIT, credit, &r);
}

static void unsubscribe(struct cgroups *cs, struct conn *c, Request *req)
{
	/* dispatch checked it */
	struct member *m = find_member(cs, c, req->unsubscribe->subscription);
	member_remove(cs, m);
	Whizbang__V1__UnsubscribeResult r = WHIZBANG__V1__UNSUBSCRIBE_RESULT__INIT;
	SRV_REPLY(c, req->id, UNSUBSCRIBE, unsubscribe, &r);
}

/* ------------------------------------------------------------ the module */

static bool groups_owns(void *state, const struct conn *c, uint64_t id)
{
	return find_member(state, c, id) != NULL;
}

static void groups_conn_figures(void *state, const struct conn *c, Whizbang__V1__ClientInfo *info)
{
	const struct cgroups *cs = state;
	for (const struct group *g = cs->groups; g != NULL; g = g->next)
		for (const struct member *m = g->members; m != NULL; m = m->next)
			if (m->conn == c)
				info->consumers++;
}

static void groups_conn_closed(void *state, struct conn *c)
{
	struct cgroups *cs = state;
	bool any = false;
	for (struct group *g = cs->groups; g != NULL; g = g->next) {
		struct member *m = g->members;
		while (m != NULL) {
			struct member *next = m->next;
			if (m->conn == c) {
				member_remove(cs, m);
				any = true;
			}
			m = next;
		}
	}
	/* Its events go to the other members; not from inside conn_close's
	 * caller chain, but on the timer's next turn. */
	if (any)
		arm_timer(cs, uv_now(srv_loop(cs->srv)));
}

struct load {
	struct cgroups *cs;
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

static int groups_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct cgroups *cs = state;
	(void)slot;
	cs->srv = srv;
	cs->timer_due = UINT64_MAX;
	struct storage_txn *txn;
	struct load l = {cs, 0};
	int rc = storage_txn_begin(srv_storage(srv), NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = cons_list(txn, load_cb, &l);
		if (rc == 0)
			rc = l.rc;
		for (struct group *g = cs->groups; g != NULL && rc == 0; g = g->next)
			rc = cons_parked_count(txn, g->cfg.name, g->cfg.name_len, &g->nparked);
		storage_txn_abort(txn);
	}
	if (rc == 0) {
		rc = uv_timer_init(srv_loop(srv), &cs->timer);
		if (rc != 0) {
			snprintf(errmsg, errlen, "cannot make the consumer timer: %s",
			         uv_strerror(rc));
			rc = WB_E_IO;
		}
	} else {
		snprintf(errmsg, errlen, "cannot load the consumer groups: %s", wb_strerror(rc));
	}
	if (rc != 0) {
		while (cs->groups != NULL)
			group_free(cs, cs->groups, false);
		return rc;
	}
	cs->timer.data = cs;
	cs->timer_open = true;
	srv_log(WB_LOG_INFO, "consumers_loaded", "groups=%zu", cs->ngroups);
	return 0;
}

static void groups_shutdown(void *state)
{
	struct cgroups *cs = state;
	if (cs->closing)
		return;
	cs->closing = true;
	if (cs->timer_open) {
		cs->timer_open = false;
		uv_close((uv_handle_t *)&cs->timer, NULL);
	}
}

static void groups_close(void *state)
{
	struct cgroups *cs = state;
	while (cs->groups != NULL)
		group_free(cs, cs->groups, false);
}

/* Every request of this module may let events go out (joins, credits,
 * settled events, replays): the pump runs after it. */
#define GROUP_HANDLER(fn)                                                                          \
	static bool fn##_handler(void *state, struct conn *c, Request *req)                        \
	{                                                                                          \
		fn(state, c, req);                                                                 \
		groups_pump(state);                                                                \
		return false;                                                                      \
	}
GROUP_HANDLER(create)
GROUP_HANDLER(delete)
GROUP_HANDLER(list)
GROUP_HANDLER(join)
GROUP_HANDLER(ack_nack)
GROUP_HANDLER(list_parked)
GROUP_HANDLER(replay_parked)
GROUP_HANDLER(credit)
GROUP_HANDLER(unsubscribe)

static const struct srv_handler group_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER, create_handler},
        {WHIZBANG__V1__REQUEST__BODY_DELETE_CONSUMER, delete_handler},
        {WHIZBANG__V1__REQUEST__BODY_LIST_CONSUMERS, list_handler},
        {WHIZBANG__V1__REQUEST__BODY_JOIN_CONSUMER, join_handler},
        {WHIZBANG__V1__REQUEST__BODY_ACK, ack_nack_handler},
        {WHIZBANG__V1__REQUEST__BODY_NACK, ack_nack_handler},
        {WHIZBANG__V1__REQUEST__BODY_LIST_PARKED, list_parked_handler},
        {WHIZBANG__V1__REQUEST__BODY_REPLAY_PARKED, replay_parked_handler},
        {WHIZBANG__V1__REQUEST__BODY_CREDIT, credit_handler},
        {WHIZBANG__V1__REQUEST__BODY_UNSUBSCRIBE, unsubscribe_handler},
};

static const struct srv_record group_records[] = {
        {SRV_REC_CONSUMER, COP_REC_VERSION, cop_replay},
};

const struct srv_module srv_consumer_module = {
        .name = "consumer groups",
        .size = sizeof(struct cgroups),
        .init = groups_init,
        .conn_closed = groups_conn_closed,
        .conn_figures = groups_conn_figures,
        .pump = groups_pump,
        .shutdown = groups_shutdown,
        .close = groups_close,
        .owns_subscription = groups_owns,
        .handlers = group_handlers,
        .nhandlers = sizeof(group_handlers) / sizeof(group_handlers[0]),
        .records = group_records,
        .nrecords = 1,
};
