#include "coord.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"

#define EXPIRY_BATCH 64u
#define FINAL_RETRIES 3
#define WAIT_MAX_MS 3600000u
#define RECOVERY_ATTEMPTS 8
#define RECOVERY_GROW (64u << 20)

/* A projection's figures, hung on the table's slot for it. */
struct coord_pstat {
	struct coord_pstat *next;
	struct health_figures f;
	char reason[256];
};

enum pend_kind { PEND_LEASE, PEND_RESEQ, PEND_INDEX };

/* A request waiting for a durable reservation ceiling. */
struct pend {
	struct pend *next;
	enum pend_kind kind;
	struct coord_req req;
	/* PEND_LEASE: the grant asked for; PEND_RESEQ: what the expired
	 * lease was; PEND_INDEX: "$index". The strings point into names. */
	struct lease_grant_args args;
	/* PEND_RESEQ, PEND_INDEX: what to commit at the new sequence */
	uint8_t *ops;
	size_t ops_len;
	bool ack_applied;
	uint64_t orig_seq;
	uint64_t orig_expiry_us;
	char names[]; /* projection, NUL, operation id, NUL */
};

enum waiter_kind { WAIT_WATERMARK, WAIT_COMMIT, WAIT_INDEX };

struct waiter {
	struct coord_req req;
	uint64_t seq;
	uint64_t deadline_ms; /* UINT64_MAX: none */
	enum waiter_kind kind;
	bool resequenced;
	uint64_t orig_seq;
};

/* A final entry above the watermark, followed until it is applied. */
struct settled {
	uint64_t seq;
	uint64_t durable_ms;
	struct coord_pstat *ps;
	bool gap;
};

struct coord {
	struct coord_config cfg;
	struct coord_io *io;
	struct storage *st;
	struct lease_table *t;
	uint64_t watermark;
	uint64_t reserving; /* the ceiling being written; 0 when none */
	bool shutting_down;
	struct pend *pend_head, *pend_tail;
	struct waiter *waiters;
	size_t nwaiters, capwaiters;
	uint64_t waiter_deadline;   /* the earliest of the waiters' */
	bool waiters_dropped;       /* waiter_deadline may be early: compute it again */
	uint64_t deadline;          /* as last told to the I/O */
	bool deadline_told;         /* false: tell it again even if unchanged */
	struct coord_write *writes; /* out at the I/O */
	/* figures */
	uint64_t cascade_level; /* last logged */
	struct coord_applied applied;
	struct health_figures all;
	char all_reason[256];
	struct coord_pstat *pstats;
	struct settled *settled; /* a min-heap by sequence */
	size_t nsettled, capsettled;
	/* scratch, sized at start */
	struct lease **got;
	struct coord_grant *grants;
	struct lease_projection_stats *pbuf;
};

/* ------------------------------------------------------------ helpers */

static void say(struct coord *c, enum coord_log_level level, const char *event, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

static void say(struct coord *c, enum coord_log_level level, const char *event, const char *fmt,
                ...)
{
	if (c->io->log == NULL)
		return;
	char fields[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(fields, sizeof(fields), fmt, ap);
	va_end(ap);
	c->io->log(c->io, level, event, fields);
}

/* The wall-clock millisecond of the monotonic moment mono. */
static uint64_t wall_ms_at(uint64_t mono, struct coord_time now)
{
	uint64_t wall = now.wall_us / 1000;
	return mono >= now.ms ? wall + (mono - now.ms) : wall - (now.ms - mono);
}

/* A request to answer, as opposed to the none of the server's own writes. */
static bool has_req(struct coord_req req)
{
	return req.handle != NULL || req.owner != NULL;
}

static void answer(struct coord *c, struct coord_req req, struct coord_answer *a)
{
	a->watermark = c->watermark;
	c->io->answer(c->io, req, a);
}

static void answer_kind(struct coord *c, struct coord_req req, enum coord_answer_kind kind)
{
	struct coord_answer a = {.kind = kind};
	answer(c, req, &a);
}

static void answer_error(struct coord *c, struct coord_req req, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void answer_error(struct coord *c, struct coord_req req, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct coord_answer a = {.kind = COORD_ERROR, .code = code, .message = msg};
	answer(c, req, &a);
}

static void answer_storage_error(struct coord *c, struct coord_req req, int rc, const char *what)
{
	struct coord_answer a = {.kind = COORD_STORAGE_ERROR, .code = rc, .message = what};
	answer(c, req, &a);
}

static void answer_nomem(struct coord *c, struct coord_req req)
{
	answer_error(c, req, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
}

static void answer_commit(struct coord *c, struct coord_req req, uint64_t seq, bool resequenced,
                          uint64_t orig_seq, bool applied)
{
	struct coord_answer a = {
	        .kind = COORD_COMMITTED,
	        .seq = seq,
	        .resequenced = resequenced,
	        .original_seq = orig_seq,
	        .read_outcome = applied && seq <= c->watermark,
	};
	answer(c, req, &a);
}

static void answer_durable(struct coord *c, struct coord_req req, uint64_t seq, bool index,
                           bool applied, bool reseq, uint64_t orig);

static void answer_watermark(struct coord *c, struct coord_req req, bool reached)
{
	struct coord_answer a = {
	        .kind = COORD_WATERMARK,
	        .reached = reached,
	        .next_seq = lease_next_seq(c->t),
	};
	answer(c, req, &a);
}

/* Tells the I/O when coord_tick() next has work, if that changed. Every
 * public call that may change it ends here. */
static void tell_deadline(struct coord *c)
{
	if (c->waiters_dropped) {
		c->waiter_deadline = UINT64_MAX;
		for (size_t i = 0; i < c->nwaiters; i++)
			if (c->waiters[i].deadline_ms < c->waiter_deadline)
				c->waiter_deadline = c->waiters[i].deadline_ms;
		c->waiters_dropped = false;
	}
	uint64_t next = lease_next_expiry(c->t);
	if (c->waiter_deadline < next)
		next = c->waiter_deadline;
	if (next == c->deadline && c->deadline_told)
		return;
	c->deadline = next;
	c->deadline_told = true;
	if (c->io->deadline != NULL)
		c->io->deadline(c->io, next);
}

/* ------------------------------------------------------------ waiters */

static int add_waiter(struct coord *c, const struct waiter *w)
{
	if (c->nwaiters == c->capwaiters) {
		size_t cap = c->capwaiters > 0 ? c->capwaiters * 2 : 64;
		struct waiter *p = realloc(c->waiters, cap * sizeof(*p));
		if (p == NULL)
			return WB_E_NOMEM;
		c->waiters = p;
		c->capwaiters = cap;
	}
	c->waiters[c->nwaiters++] = *w;
	if (w->req.owner != NULL)
		w->req.owner->waiting++;
	if (w->deadline_ms < c->waiter_deadline)
		c->waiter_deadline = w->deadline_ms;
	return 0;
}

/* Takes waiter i out (the last one moves into its place). */
static struct waiter take_waiter(struct coord *c, size_t i)
{
	struct waiter w = c->waiters[i];
	if (w.req.owner != NULL)
		w.req.owner->waiting--;
	c->waiters[i] = c->waiters[--c->nwaiters];
	c->waiters_dropped = true;
	return w;
}

/* Answers every waiter the watermark has reached or whose time is up. */
static void check_waiters(struct coord *c, uint64_t now_ms)
{
	for (size_t i = 0; i < c->nwaiters;) {
		const struct waiter *p = &c->waiters[i];
		bool reached = p->seq <= c->watermark;
		if (!reached && p->deadline_ms > now_ms) {
			i++;
			continue;
		}
		struct waiter w = take_waiter(c, i);
		if (w.kind == WAIT_COMMIT) {
			answer_commit(c, w.req, w.seq, w.resequenced, w.orig_seq, reached);
		} else if (w.kind == WAIT_INDEX && reached) {
			struct coord_answer a = {.kind = COORD_INDEXED, .seq = w.seq};
			answer(c, w.req, &a);
		} else if (w.kind == WAIT_INDEX) {
			answer_error(c, w.req, WB_SHUTTING_DOWN,
			             "the index change is durable, but the server is shutting down "
			             "before applying it");
		} else {
			answer_watermark(c, w.req, reached);
		}
	}
}

/* ------------------------------------------------------------ figures */

/* The figures of l's projection, made on first use (NULL when out of
 * memory: the projection then only counts in the totals). */
static struct coord_pstat *pstat_of(struct coord *c, struct lease *l)
{
	void **slot = lease_projection_slot(l);
	if (*slot == NULL) {
		struct coord_pstat *ps = calloc(1, sizeof(*ps));
		if (ps == NULL)
			return NULL;
		ps->next = c->pstats;
		c->pstats = ps;
		*slot = ps;
	}
	return *slot;
}

static void settled_swap(struct coord *c, size_t a, size_t b)
{
	struct settled t = c->settled[a];
	c->settled[a] = c->settled[b];
	c->settled[b] = t;
}

/* Follows a final entry above the watermark until it is applied. */
static void settled_push(struct coord *c, const struct settled *e)
{
	if (c->nsettled == c->capsettled) {
		size_t cap = c->capsettled > 0 ? c->capsettled * 2 : 256;
		struct settled *p = realloc(c->settled, cap * sizeof(*p));
		if (p == NULL)
			return; /* only the figures lose it */
		c->settled = p;
		c->capsettled = cap;
	}
	size_t i = c->nsettled++;
	c->settled[i] = *e;
	while (i > 0 && c->settled[(i - 1) / 2].seq > c->settled[i].seq) {
		settled_swap(c, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	health_waiting(&c->all);
	if (e->ps != NULL)
		health_waiting(&e->ps->f);
}

/* The watermark moved: the entries it passed are applied. Their
 * commit-to-apply wait runs from the moment they were durable. */
static void settled_apply(struct coord *c, uint64_t now_ms)
{
	while (c->nsettled > 0 && c->settled[0].seq <= c->watermark) {
		struct settled e = c->settled[0];
		c->settled[0] = c->settled[--c->nsettled];
		size_t i = 0;
		for (;;) {
			size_t k = 2 * i + 1;
			if (k >= c->nsettled)
				break;
			if (k + 1 < c->nsettled && c->settled[k + 1].seq < c->settled[k].seq)
				k++;
			if (c->settled[i].seq <= c->settled[k].seq)
				break;
			settled_swap(c, i, k);
			i = k;
		}
		uint64_t wait = now_ms - e.durable_ms;
		health_applied(&c->all, e.gap, wait, now_ms);
		if (e.ps != NULL)
			health_applied(&e.ps->f, e.gap, wait, now_ms);
	}
}

/* Logs a change of the cascade level (adaptive durations doubled). */
static void note_cascade(struct coord *c)
{
	struct lease_counts lc;
	lease_get_counts(c->t, &lc);
	if (lc.cascade_level == c->cascade_level)
		return;
	say(c, lc.cascade_level > c->cascade_level ? COORD_LOG_WARN : COORD_LOG_INFO,
	    "lease_cascade", "level=%llu previous=%llu expired_total=%llu",
	    (unsigned long long)lc.cascade_level, (unsigned long long)c->cascade_level,
	    (unsigned long long)(lc.outcomes[LEASE_EXPIRED] + lc.outcomes[LEASE_RECOVERED]));
	c->cascade_level = lc.cascade_level;
}

/* A final entry is durable: count it, and follow it until applied. */
static void record_final(struct coord *c, const struct coord_write *w, uint64_t now_ms)
{
	bool gap = w->entry.kind == LEDGER_GAP && !w->recovered;
	health_durable(&c->all, gap, now_ms);
	if (w->ps != NULL)
		health_durable(&w->ps->f, gap, now_ms);
	struct settled e = {w->seq, now_ms, w->ps, gap};
	settled_push(c, &e);
	c->applied.entries += w->applied.entries;
	c->applied.failures += w->applied.failures;
	c->applied.explosions += w->applied.explosions;
	c->applied.exploded_ids += w->applied.exploded_ids;
	c->applied.explosion_us += w->applied.explosion_us;
	if (w->applied.failures > 0)
		say(c, COORD_LOG_INFO, "apply_failed", "entries=%llu watermark=%llu",
		    (unsigned long long)w->applied.failures, (unsigned long long)w->watermark);
	if (w->watermark > c->watermark)
		c->watermark = w->watermark;
	settled_apply(c, now_ms);
}

/* ------------------------------------------------------------ writes */

static struct coord_write *write_new(struct coord *c, enum coord_write_kind kind,
                                     struct coord_req req)
{
	struct coord_write *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->kind = kind;
	w->req = req;
	w->size_hint = 4096;
	w->apply = c->cfg.apply;
	w->apply_arg = c->cfg.apply_arg;
	return w;
}

static void write_free(struct coord_write *w)
{
	free(w->ops);
	free(w);
}

static int write_copy_ops(struct coord_write *w, const uint8_t *ops, size_t len)
{
	if (len == 0)
		return 0;
	w->ops = malloc(len);
	if (w->ops == NULL)
		return WB_E_NOMEM;
	memcpy(w->ops, ops, len);
	w->ops_len = len;
	w->size_hint = 4096 + len;
	return 0;
}

/* Hands w to the I/O; on failure w is still the caller's. */
static int submit(struct coord *c, struct coord_write *w)
{
	int rc = c->io->submit(c->io, w);
	if (rc != 0)
		return rc;
	/* Only the loop reads and writes the links (and req): the writer's
	 * thread touches the result fields alone. */
	w->prev = NULL;
	w->next = c->writes;
	if (c->writes != NULL)
		c->writes->prev = w;
	c->writes = w;
	return 0;
}

static void unlink_write(struct coord *c, struct coord_write *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		c->writes = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

struct final_args {
	enum ledger_kind kind;
	enum ledger_reason reason;
	struct coord_req req; /* who is answered; {NULL, NULL} for none */
	enum coord_answer_as as;
	bool ack_applied;
	const uint8_t *ops;
	size_t ops_len;
	uint64_t orig_seq;
	uint64_t orig_expiry_us;
	bool from_staged; /* expiry: recovered when staged work is stored */
};

/* Submits the final entry of l. On failure (no memory) nothing is kept. */
static int submit_final(struct coord *c, struct lease *l, const struct final_args *a,
                        struct coord_time now)
{
	struct coord_write *w = write_new(c, COORD_WRITE_FINAL, a->req);
	if (w == NULL)
		return WB_E_NOMEM;
	if (write_copy_ops(w, a->ops, a->ops_len) != 0) {
		write_free(w);
		return WB_E_NOMEM;
	}
	const char *proj = lease_projection_name(l);
	size_t plen = strlen(proj);
	size_t olen = strlen(l->operation_id);
	memcpy(w->projection, proj, plen + 1);
	memcpy(w->operation_id, l->operation_id, olen + 1);
	w->seq = l->seq;
	w->token = l->token;
	w->as = a->as;
	w->ack_applied = a->ack_applied;
	w->from_staged = a->from_staged;
	w->ps = pstat_of(c, l);
	w->entry = (struct ledger_entry){
	        .seq = l->seq,
	        .kind = a->kind,
	        .reason = a->reason,
	        .time_us = now.wall_us,
	        .source_position = l->source_position,
	        .original_expiry_us = a->orig_expiry_us,
	        .original_seq = a->orig_seq,
	        .token = l->token,
	        .projection = w->projection,
	        .projection_len = plen,
	        .operation_id = w->operation_id,
	        .operation_id_len = olen,
	        .ops = w->ops,
	        .ops_len = w->ops_len,
	};
	int rc = submit(c, w);
	if (rc != 0)
		write_free(w);
	return rc;
}

/* A lease that finished (commit, release) must still end final: when its
 * entry cannot be submitted, a released gap is tried instead. */
static void submit_final_or_gap(struct coord *c, struct lease *l, const struct final_args *a,
                                struct coord_time now)
{
	if (submit_final(c, l, a, now) == 0)
		return;
	struct final_args gap = {.kind = LEDGER_GAP, .reason = LEDGER_GAP_RELEASED};
	submit_final(c, l, &gap, now);
	if (has_req(a->req))
		answer_nomem(c, a->req);
}

static int apply_hook(struct storage_txn *txn, const struct ledger_entry *e, void *arg)
{
	struct coord_write *w = arg;
	if (w->apply == NULL)
		return 0;
	return w->apply(txn, e, w->apply_arg, &w->applied);
}

void coord_write_encode(const struct coord_write *w, struct rec_builder *b)
{
	rec_u8(b, (uint8_t)w->kind);
	switch (w->kind) {
	case COORD_WRITE_RESERVE:
		rec_u64(b, w->ceiling);
		return;
	case COORD_WRITE_STAGE:
		rec_u64(b, w->seq);
		rec_u64(b, w->token);
		rec_bytes(b, w->ops, w->ops_len);
		return;
	case COORD_WRITE_FINAL:
		break;
	}
	const struct ledger_entry *e = &w->entry;
	rec_u8(b, w->from_staged ? 1 : 0);
	rec_u64(b, e->seq);
	rec_u8(b, (uint8_t)e->kind);
	rec_u8(b, (uint8_t)e->reason);
	rec_u64(b, e->time_us);
	rec_u64(b, e->source_position);
	rec_u64(b, e->original_expiry_us);
	rec_u64(b, e->original_seq);
	rec_u64(b, e->token);
	rec_bytes(b, e->projection, e->projection_len);
	rec_bytes(b, e->operation_id, e->operation_id_len);
	rec_bytes(b, e->ops, e->ops_len);
}

int coord_write_decode(const uint8_t *rec, size_t len, struct coord_write *w)
{
	struct rec_reader r = rec_reader(rec, len);
	uint8_t kind = rec_get_u8(&r);
	switch (kind) {
	case COORD_WRITE_RESERVE:
		w->kind = COORD_WRITE_RESERVE;
		w->ceiling = rec_get_u64(&r);
		return rec_ok(&r) ? 0 : WB_E_CORRUPT;
	case COORD_WRITE_STAGE:
		w->kind = COORD_WRITE_STAGE;
		w->seq = rec_get_u64(&r);
		w->token = rec_get_u64(&r);
		w->ops = (uint8_t *)rec_get_bytes(&r, &w->ops_len);
		return rec_ok(&r) ? 0 : WB_E_CORRUPT;
	case COORD_WRITE_FINAL:
		break;
	default:
		return WB_E_CORRUPT;
	}
	struct ledger_entry *e = &w->entry;
	w->kind = COORD_WRITE_FINAL;
	w->from_staged = rec_get_u8(&r) != 0;
	e->seq = rec_get_u64(&r);
	e->kind = (enum ledger_kind)rec_get_u8(&r);
	e->reason = (enum ledger_reason)rec_get_u8(&r);
	e->time_us = rec_get_u64(&r);
	e->source_position = rec_get_u64(&r);
	e->original_expiry_us = rec_get_u64(&r);
	e->original_seq = rec_get_u64(&r);
	e->token = rec_get_u64(&r);
	e->projection = (const char *)rec_get_bytes(&r, &e->projection_len);
	e->operation_id = (const char *)rec_get_bytes(&r, &e->operation_id_len);
	e->ops = rec_get_bytes(&r, &e->ops_len);
	w->seq = e->seq;
	return rec_ok(&r) ? 0 : WB_E_CORRUPT;
}

int coord_write_apply(struct coord_write *w, struct storage_txn *txn)
{
	memset(&w->applied, 0, sizeof(w->applied));
	w->recovered = false;
	switch (w->kind) {
	case COORD_WRITE_RESERVE:
		return ledger_set_ceiling(txn, w->ceiling);
	case COORD_WRITE_STAGE:
		return ledger_stage(txn, w->seq, w->token, w->ops, w->ops_len);
	case COORD_WRITE_FINAL:
		break;
	}
	int rc = ledger_finish(txn, &w->entry, w->from_staged, &w->recovered);
	if (rc == 0)
		rc = ledger_advance(txn, UINT64_MAX, apply_hook, w, &w->watermark);
	return rc;
}

/* ------------------------------------------------------------ expiry */

/* Finishes due leases in ascending sequence order: each becomes a gap
 * (expired), or a recovered entry when its staged work is stored. */
static void run_expiry(struct coord *c, struct coord_time now)
{
	struct lease *due[EXPIRY_BATCH];
	size_t n;
	do {
		n = lease_collect_expired(c->t, now.ms, due, EXPIRY_BATCH);
		for (size_t i = 0; i < n; i++) {
			struct lease *l = due[i];
			struct final_args a = {
			        .kind = LEDGER_GAP,
			        .reason = LEDGER_GAP_EXPIRED,
			        .orig_expiry_us = wall_ms_at(l->expires_ms, now) * 1000,
			        .from_staged = true,
			};
			struct coord_pstat *ps = pstat_of(c, l);
			health_expired(&c->all, now.ms);
			if (ps != NULL)
				health_expired(&ps->f, now.ms);
			if (submit_final(c, l, &a, now) != 0)
				say(c, COORD_LOG_ERROR, "lease_expiry_failed",
				    "seq=%llu reason=no_memory", (unsigned long long)l->seq);
			else
				say(c, COORD_LOG_DEBUG, "lease_expired", "seq=%llu staged=%d",
				    (unsigned long long)l->seq, (int)l->staged);
		}
	} while (n == EXPIRY_BATCH);
	note_cascade(c);
}

/* ------------------------------------------------------------ the reservation queue */

static void grant_and_answer(struct coord *c, struct coord_req req,
                             const struct lease_grant_args *args, struct coord_time now)
{
	char why[256];
	int rc = lease_grant(c->t, now.ms, args, c->got, why, sizeof(why));
	if (rc != 0) {
		answer_error(c, req, rc == WB_E_NOMEM ? WB_RESOURCE_EXHAUSTED : rc, "%s", why);
		return;
	}
	for (uint32_t i = 0; i < args->count; i++) {
		const struct lease *l = c->got[i];
		c->grants[i] = (struct coord_grant){
		        .seq = l->seq,
		        .token = l->token,
		        .expires_at_ms = wall_ms_at(l->expires_ms, now),
		        .duration_ms = l->expires_ms - now.ms,
		};
	}
	struct coord_answer a = {
	        .kind = COORD_GRANTED, .grants = c->grants, .n_grants = args->count};
	answer(c, req, &a);
}

/* Leases one new sequence (p->args) for the queued request p and commits
 * its ops there as a final entry of kind and reason; the write answers p's
 * request. On a failure the request gets the error (what names the call).
 * Frees p. */
static void commit_at_new_sequence(struct coord *c, struct pend *p, enum ledger_kind kind,
                                   enum ledger_reason reason, const char *what,
                                   struct coord_time now)
{
	struct lease *got[1];
	char why[256];
	int rc = lease_grant(c->t, now.ms, &p->args, got, why, sizeof(why));
	if (rc != 0) {
		answer_error(c, p->req, rc == WB_E_NOMEM ? WB_RESOURCE_EXHAUSTED : rc, "%s: %s",
		             what, why);
	} else {
		lease_finish(c->t, got[0], LEASE_COMMITTED, now.ms);
		struct final_args a = {
		        .kind = kind,
		        .reason = reason,
		        .req = p->req,
		        .as = p->kind == PEND_INDEX ? COORD_AS_INDEX : COORD_AS_COMMIT,
		        .ack_applied = p->ack_applied,
		        .ops = p->ops,
		        .ops_len = p->ops_len,
		        .orig_seq = p->orig_seq,
		        .orig_expiry_us = p->orig_expiry_us,
		};
		/* The new sequence is handed out: it must end final. */
		submit_final_or_gap(c, got[0], &a, now);
	}
	free(p->ops);
	free(p);
}

/* The ceiling cannot be raised (status says why): every queued request is
 * answered rather than left waiting for a reservation nobody writes. */
static void fail_pending(struct coord *c, int status)
{
	while (c->pend_head != NULL) {
		struct pend *p = c->pend_head;
		c->pend_head = p->next;
		answer_storage_error(c, p->req, status, "Lease");
		free(p->ops);
		free(p);
	}
	c->pend_tail = NULL;
}

static void ensure_reservation(struct coord *c, uint32_t count)
{
	if (c->reserving != 0)
		return;
	uint64_t ceiling = lease_reservation_needed(c->t, count);
	if (ceiling == 0)
		return;
	struct coord_write *w = write_new(c, COORD_WRITE_RESERVE, (struct coord_req){0});
	if (w != NULL) {
		w->ceiling = ceiling;
		if (submit(c, w) == 0) {
			c->reserving = ceiling;
			return;
		}
		write_free(w);
	}
	say(c, COORD_LOG_ERROR, "reservation_failed", "reason=no_memory");
	fail_pending(c, WB_E_NOMEM);
}

/* Serves queued requests in order while the ceiling allows. */
static void drain_pending(struct coord *c, struct coord_time now)
{
	while (c->pend_head != NULL) {
		struct pend *p = c->pend_head;
		if (lease_reservation_needed(c->t, p->args.count) != 0) {
			ensure_reservation(c, p->args.count);
			return;
		}
		c->pend_head = p->next;
		if (c->pend_head == NULL)
			c->pend_tail = NULL;
		switch (p->kind) {
		case PEND_LEASE:
			grant_and_answer(c, p->req, &p->args, now);
			free(p);
			break;
		case PEND_RESEQ:
			commit_at_new_sequence(c, p, LEDGER_RECOVERED, LEDGER_RECOVERED_RESEQUENCED,
			                       "resequencing failed", now);
			break;
		case PEND_INDEX:
			commit_at_new_sequence(c, p, LEDGER_COMMITTED, LEDGER_REASON_NONE,
			                       "no sequence for the index change", now);
			break;
		}
	}
}

/* What a queued request asks for: a grant, and for PEND_RESEQ and
 * PEND_INDEX the ops to commit at its sequence. */
struct pend_args {
	enum pend_kind kind;
	const struct lease_grant_args *grant;
	const uint8_t *ops;
	size_t ops_len;
	bool ack_applied;
	uint64_t orig_seq;
	uint64_t orig_expiry_us;
};

/* Queues req behind the reservation (copying a's strings and ops), and
 * serves the queue now when no reservation is being written; answers the
 * request when out of memory. */
static void queue(struct coord *c, struct coord_req req, const struct pend_args *a,
                  struct coord_time now)
{
	const struct lease_grant_args *g = a->grant;
	size_t plen = g->projection != NULL ? strlen(g->projection) : 0;
	size_t olen = g->operation_id != NULL ? strlen(g->operation_id) : 0;
	struct pend *p = calloc(1, sizeof(*p) + plen + olen + 2);
	if (p == NULL)
		goto err_nomem;
	if (a->ops_len > 0) {
		p->ops = malloc(a->ops_len);
		if (p->ops == NULL)
			goto err_after_pend;
		memcpy(p->ops, a->ops, a->ops_len);
		p->ops_len = a->ops_len;
	}
	p->kind = a->kind;
	p->req = req;
	p->args = *g;
	if (plen > 0)
		memcpy(p->names, g->projection, plen);
	if (olen > 0)
		memcpy(p->names + plen + 1, g->operation_id, olen);
	p->args.projection = p->names;
	p->args.operation_id = p->names + plen + 1;
	p->ack_applied = a->ack_applied;
	p->orig_seq = a->orig_seq;
	p->orig_expiry_us = a->orig_expiry_us;

	if (c->pend_tail != NULL)
		c->pend_tail->next = p;
	else
		c->pend_head = p;
	c->pend_tail = p;
	/* Served now when the ceiling allows, else once it is raised. */
	if (c->reserving == 0)
		drain_pending(c, now);
	return;

err_after_pend:
	free(p);
err_nomem:
	answer_nomem(c, req);
}

/* ------------------------------------------------------------ requests */

/* Answers why rc (of lease_get()) refuses the request for seq; true for
 * 0. */
static bool check_lease_rc(struct coord *c, struct coord_req req, int rc, uint64_t seq)
{
	switch (rc) {
	case 0:
		return true;
	case WB_LEASE_TOKEN_MISMATCH:
		answer_error(c, req, rc,
		             "the token does not match sequence %llu's lease: another worker "
		             "holds it, or the token was mistyped",
		             (unsigned long long)seq);
		return false;
	case WB_LEASE_EXPIRED:
		answer_error(c, req, rc,
		             "the lease of sequence %llu has expired: the sequence becomes a gap, "
		             "or holds the lease's staged work if it had any; lease a new "
		             "sequence, or commit with on_expired=RESEQUENCE",
		             (unsigned long long)seq);
		return false;
	default:
		answer_error(c, req, WB_LEASE_NOT_FOUND,
		             "sequence %llu has no open lease: it was never handed out, or it is "
		             "already committed or released",
		             (unsigned long long)seq);
		return false;
	}
}

/* The ACTIVE lease of seq with token, or NULL after answering why not.
 * Leases that are due are finished first, in order. */
static struct lease *open_lease(struct coord *c, struct coord_req req, uint64_t seq, uint64_t token,
                                struct coord_time now)
{
	struct lease *l = NULL;
	int rc = lease_get(c->t, seq, token, now.ms, &l);
	if (rc == WB_LEASE_EXPIRED)
		run_expiry(c, now);
	return check_lease_rc(c, req, rc, seq) ? l : NULL;
}

void coord_lease(struct coord *c, struct coord_req req, const struct lease_grant_args *args,
                 struct coord_time now)
{
	struct lease_grant_args a = *args;
	a.owner = req.owner;
	/* A count out of bounds is refused by lease_grant() at once: it can
	 * never be reserved for. */
	if ((c->pend_head == NULL && lease_reservation_needed(c->t, a.count) == 0) ||
	    a.count == 0 || a.count > c->cfg.lease.max_count) {
		grant_and_answer(c, req, &a, now);
	} else {
		queue(c, req, &(struct pend_args){.kind = PEND_LEASE, .grant = &a}, now);
	}
	tell_deadline(c);
}

void coord_extend(struct coord *c, struct coord_req req, uint64_t seq, uint64_t token,
                  uint64_t duration_ms, struct coord_time now)
{
	char why[256];
	struct lease *l = open_lease(c, req, seq, token, now);
	if (l != NULL) {
		int rc = lease_extend(c->t, l, duration_ms, now.ms, why, sizeof(why));
		if (rc != 0) {
			answer_error(c, req, rc, "%s", why);
		} else {
			struct coord_answer a = {
			        .kind = COORD_EXTENDED,
			        .expires_at_ms = wall_ms_at(l->expires_ms, now),
			        .duration_ms = l->expires_ms - now.ms,
			};
			answer(c, req, &a);
		}
	}
	tell_deadline(c);
}

void coord_release(struct coord *c, struct coord_req req, uint64_t seq, uint64_t token,
                   struct coord_time now)
{
	struct lease *l = open_lease(c, req, seq, token, now);
	if (l != NULL) {
		lease_finish(c->t, l, LEASE_RELEASED, now.ms);
		struct final_args a = {
		        .kind = LEDGER_GAP,
		        .reason = LEDGER_GAP_RELEASED,
		        .req = req,
		        .as = COORD_AS_RELEASE,
		};
		submit_final_or_gap(c, l, &a, now);
	}
	tell_deadline(c);
}

void coord_stage(struct coord *c, struct coord_req req, uint64_t seq, uint64_t token,
                 const uint8_t *ops, size_t ops_len, struct coord_time now)
{
	struct lease *l = open_lease(c, req, seq, token, now);
	if (l == NULL)
		goto out;
	struct coord_write *w = write_new(c, COORD_WRITE_STAGE, req);
	if (w == NULL)
		goto err_nomem;
	w->seq = l->seq;
	w->token = l->token;
	if (write_copy_ops(w, ops, ops_len) != 0 || submit(c, w) != 0)
		goto err_after_write;
	/* Marked now: if the lease expires before the write lands, the
	 * expiry's entry is written after it and recovers the staged work. */
	lease_stage(c->t, l);
	goto out;

err_after_write:
	write_free(w);
err_nomem:
	answer_nomem(c, req);
out:
	tell_deadline(c);
}

/* A commit whose lease has expired, with on_expired = RESEQUENCE: queues a
 * new sequence for it, under what the expired lease was. */
static void resequence(struct coord *c, struct coord_req req, const struct coord_commit_args *ca,
                       const struct lease_grant_args *args, uint64_t orig_expiry_us,
                       struct coord_time now)
{
	struct pend_args a = {
	        .kind = PEND_RESEQ,
	        .grant = args,
	        .ops = ca->ops,
	        .ops_len = ca->ops_len,
	        .ack_applied = ca->ack_applied,
	        .orig_seq = ca->seq,
	        .orig_expiry_us = orig_expiry_us,
	};
	queue(c, req, &a, now);
}

/* A commit of a sequence the table no longer holds: the ledger says what
 * became of it. Restart gaps carry no token (leases live in memory), so
 * they cannot check it. */
static void handle_finished(struct coord *c, struct coord_req req,
                            const struct coord_commit_args *a, struct coord_time now)
{
	struct storage_txn *txn;
	struct ledger_entry e;
	int rc = storage_txn_begin(c->st, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		answer_storage_error(c, req, rc, "Commit");
		return;
	}
	rc = ledger_get(txn, a->seq, &e);
	bool expired =
	        rc == 0 && (e.reason == LEDGER_GAP_EXPIRED || e.reason == LEDGER_GAP_RESTART ||
	                    e.reason == LEDGER_RECOVERED_STAGED);
	/* Staged work that was recovered is the lease's result already:
	 * resequencing would commit the work a second time. */
	bool reseq = a->resequence && !(rc == 0 && e.reason == LEDGER_RECOVERED_STAGED);
	/* A restart gap knows neither the lease's projection nor its token
	 * (leases live in memory): it cannot be resequenced faithfully. */
	bool restart = rc == 0 && e.reason == LEDGER_GAP_RESTART;
	/* Committed with this token and these ops: a retry of that Commit,
	 * whose answer was lost. */
	bool retry = rc == 0 && e.kind == LEDGER_COMMITTED && e.reason == LEDGER_REASON_NONE &&
	             e.token == a->token && c->io->same_ops != NULL &&
	             c->io->same_ops(c->io, e.ops, e.ops_len, a->ops, a->ops_len);
	if (rc != 0 && rc != WB_E_NOTFOUND) {
		answer_storage_error(c, req, rc, "Commit");
	} else if (retry) {
		say(c, COORD_LOG_DEBUG, "commit_retried", "seq=%llu", (unsigned long long)a->seq);
		answer_durable(c, req, a->seq, false, a->ack_applied, false, 0);
	} else if (!expired) {
		check_lease_rc(c, req, WB_LEASE_NOT_FOUND, a->seq);
	} else if (e.token != 0 && e.token != a->token) {
		check_lease_rc(c, req, WB_LEASE_TOKEN_MISMATCH, a->seq);
	} else if (restart) {
		answer_error(c, req, WB_LEASE_EXPIRED,
		             "sequence %llu was lost to a server restart and is now a gap "
		             "(restart); it cannot be resequenced: lease a new sequence under "
		             "your projection and commit there",
		             (unsigned long long)a->seq);
	} else if (reseq) {
		char proj[LEASE_NAME_MAX + 1];
		char opid[LEASE_NAME_MAX + 1];
		snprintf(proj, sizeof(proj), "%.*s", (int)e.projection_len, e.projection);
		snprintf(opid, sizeof(opid), "%.*s", (int)e.operation_id_len, e.operation_id);
		struct lease_grant_args args = {
		        .projection = proj,
		        .count = 1,
		        .operation_id = opid,
		        .source_position = e.source_position,
		};
		uint64_t expiry = e.original_expiry_us;
		storage_txn_abort(txn);
		resequence(c, req, a, &args, expiry, now);
		return;
	} else {
		answer_error(c, req, WB_LEASE_EXPIRED,
		             "the lease of sequence %llu expired; the sequence is now %s: lease a "
		             "new sequence, or commit with on_expired=RESEQUENCE",
		             (unsigned long long)a->seq,
		             e.reason == LEDGER_GAP_RESTART   ? "a gap (restart)"
		             : e.reason == LEDGER_GAP_EXPIRED ? "a gap (expired)"
		                                              : "recovered from its staged work");
	}
	storage_txn_abort(txn);
}

static void commit(struct coord *c, struct coord_req req, const struct coord_commit_args *a,
                   struct coord_time now)
{
	struct lease *l;
	int rc = lease_get(c->t, a->seq, a->token, now.ms, &l);
	if (rc == WB_LEASE_EXPIRED) {
		/* Finish what is due first, so gaps keep their order. */
		run_expiry(c, now);
		l = lease_lookup(c->t, a->seq);
		/* A staged lease is recovered at its own sequence: nothing to
		 * resequence. */
		if (l != NULL && !l->staged && a->resequence) {
			struct lease_grant_args args = {
			        .projection = lease_projection_name(l),
			        .count = 1,
			        .operation_id = l->operation_id,
			        .source_position = l->source_position,
			};
			resequence(c, req, a, &args, wall_ms_at(l->expires_ms, now) * 1000, now);
			return;
		}
	}
	if (rc == WB_LEASE_NOT_FOUND && a->seq != 0 && a->seq < lease_next_seq(c->t) &&
	    lease_lookup(c->t, a->seq) == NULL) {
		handle_finished(c, req, a, now);
		return;
	}
	if (!check_lease_rc(c, req, rc, a->seq))
		return;
	lease_finish(c->t, l, LEASE_COMMITTED, now.ms);
	note_cascade(c);
	struct final_args fa = {
	        .kind = LEDGER_COMMITTED,
	        .reason = LEDGER_REASON_NONE,
	        .req = req,
	        .as = COORD_AS_COMMIT,
	        .ack_applied = a->ack_applied,
	        .ops = a->ops,
	        .ops_len = a->ops_len,
	};
	submit_final_or_gap(c, l, &fa, now);
}

void coord_commit(struct coord *c, struct coord_req req, const struct coord_commit_args *a,
                  struct coord_time now)
{
	commit(c, req, a, now);
	tell_deadline(c);
}

/* CreateIndex and DropIndex are ledger operations of their own, so that
 * replay rebuilds the indexes: a sequence of projection "$index" is leased
 * and committed at once with the one op. */
void coord_index(struct coord *c, struct coord_req req, const uint8_t *ops, size_t ops_len,
                 struct coord_time now)
{
	struct lease_grant_args args = {.projection = "$index", .count = 1};
	struct pend_args a = {.kind = PEND_INDEX, .grant = &args, .ops = ops, .ops_len = ops_len};
	queue(c, req, &a, now);
	tell_deadline(c);
}

void coord_wait(struct coord *c, struct coord_req req, uint64_t seq, uint64_t timeout_ms,
                struct coord_time now)
{
	if (seq <= c->watermark || timeout_ms == 0) {
		answer_watermark(c, req, seq <= c->watermark);
	} else if (req.owner != NULL && req.owner->waiting >= c->cfg.max_waiting_per_owner) {
		answer_error(c, req, WB_RESOURCE_EXHAUSTED,
		             "this connection already has %zu requests waiting (--max-inflight)",
		             req.owner->waiting);
	} else {
		uint64_t timeout = timeout_ms > WAIT_MAX_MS ? WAIT_MAX_MS : timeout_ms;
		struct waiter w = {req, seq, now.ms + timeout, WAIT_WATERMARK, false, 0};
		if (add_waiter(c, &w) != 0)
			answer_nomem(c, req);
	}
	tell_deadline(c);
}

void coord_owner_closed(struct coord *c, struct lease_owner *owner, struct coord_time now)
{
	struct lease *rel[EXPIRY_BATCH];
	size_t n;
	do {
		n = lease_owner_detach(c->t, owner, rel, EXPIRY_BATCH);
		for (size_t i = 0; i < n; i++) {
			lease_finish(c->t, rel[i], LEASE_RELEASED, now.ms);
			struct final_args a = {.kind = LEDGER_GAP, .reason = LEDGER_GAP_RELEASED};
			if (submit_final(c, rel[i], &a, now) != 0)
				say(c, COORD_LOG_ERROR, "release_failed",
				    "seq=%llu reason=no_memory", (unsigned long long)rel[i]->seq);
		}
	} while (n == EXPIRY_BATCH);
	for (size_t i = 0; i < c->nwaiters;) {
		if (c->waiters[i].req.owner == owner)
			answer_kind(c, take_waiter(c, i).req, COORD_DROPPED);
		else
			i++;
	}
	struct pend **pp = &c->pend_head;
	c->pend_tail = NULL;
	while (*pp != NULL) {
		struct pend *p = *pp;
		if (p->req.owner == owner) {
			*pp = p->next;
			answer_kind(c, p->req, COORD_DROPPED);
			free(p->ops);
			free(p);
		} else {
			c->pend_tail = p;
			pp = &p->next;
		}
	}
	for (struct coord_write *w = c->writes; w != NULL; w = w->next) {
		if (w->req.owner == owner) {
			answer_kind(c, w->req, COORD_DROPPED);
			w->req = (struct coord_req){0};
		}
	}
	tell_deadline(c);
}

void coord_tick(struct coord *c, struct coord_time now)
{
	run_expiry(c, now);
	check_waiters(c, now.ms);
	/* The I/O's timer has fired: arm it again. */
	c->deadline_told = false;
	tell_deadline(c);
}

/* ------------------------------------------------------------ writes done */

static void reserve_done(struct coord *c, struct coord_write *w, int status, struct coord_time now)
{
	c->reserving = 0;
	if (status == 0) {
		lease_set_ceiling(c->t, w->ceiling);
	} else {
		say(c, COORD_LOG_ERROR, "reservation_failed", "ceiling=%llu error=%s",
		    (unsigned long long)w->ceiling, wb_error_name(status));
		fail_pending(c, status);
	}
	write_free(w);
	drain_pending(c, now);
}

/* A final entry is durable: its request is answered now, or waits for the
 * watermark (ack APPLIED, index changes). */
static void answer_final(struct coord *c, const struct coord_write *w)
{
	struct coord_req req = w->req;
	if (w->as == COORD_AS_RELEASE) {
		answer_kind(c, req, COORD_RELEASED);
		return;
	}
	bool reseq = w->entry.reason == LEDGER_RECOVERED_RESEQUENCED;
	uint64_t orig = w->entry.original_seq;
	bool index = w->as == COORD_AS_INDEX;
	answer_durable(c, req, w->seq, index, index || w->ack_applied, reseq, orig);
}

/* A durable final entry at seq answered to req: at once, or once the
 * watermark passed it (applied). */
static void answer_durable(struct coord *c, struct coord_req req, uint64_t seq, bool index,
                           bool applied, bool reseq, uint64_t orig)
{
	if (applied && c->watermark < seq && c->shutting_down) {
		answer_error(c, req, WB_SHUTTING_DOWN,
		             "the change is durable, but the server is shutting down before the "
		             "watermark reached it");
	} else if (applied && c->watermark < seq) {
		struct waiter wt = {req,   seq, UINT64_MAX, index ? WAIT_INDEX : WAIT_COMMIT,
		                    reseq, orig};
		if (add_waiter(c, &wt) != 0)
			answer_error(
			        c, req, WB_RESOURCE_EXHAUSTED,
			        "the change is durable, but the server is out of memory to wait "
			        "for the watermark");
	} else if (index) {
		struct coord_answer a = {.kind = COORD_INDEXED, .seq = seq};
		answer(c, req, &a);
	} else {
		answer_commit(c, req, seq, reseq, orig, applied);
	}
}

void coord_write_done(struct coord *c, struct coord_write *w, int status, struct coord_time now)
{
	unlink_write(c, w);
	bool answering = has_req(w->req);
	switch (w->kind) {
	case COORD_WRITE_RESERVE:
		reserve_done(c, w, status, now);
		break;
	case COORD_WRITE_STAGE:
		if (answering && status == 0)
			answer_kind(c, w->req, COORD_STAGED);
		else if (answering)
			answer_storage_error(c, w->req, status, "Stage");
		write_free(w);
		break;
	case COORD_WRITE_FINAL:
		if (status != 0) {
			/* Not durable. The lease stays FINISHING and holds the
			 * watermark until the entry is written: retry, then
			 * leave it to restart recovery. */
			say(c, w->retries < FINAL_RETRIES ? COORD_LOG_WARN : COORD_LOG_ERROR,
			    "ledger_write_failed", "seq=%llu error=%s retry=%d",
			    (unsigned long long)w->seq, wb_error_name(status), w->retries);
			if (w->retries < FINAL_RETRIES && !c->shutting_down) {
				w->retries++;
				if (submit(c, w) == 0)
					break;
			}
			if (answering)
				answer_storage_error(c, w->req, status, "Commit");
			write_free(w);
			break;
		}
		lease_settle(c->t, w->seq);
		record_final(c, w, now.ms);
		if (answering)
			answer_final(c, w);
		write_free(w);
		check_waiters(c, now.ms);
		break;
	}
	tell_deadline(c);
}

/* ------------------------------------------------------------ start, stop */

struct recovery_arg {
	const struct coord_config *cfg;
	struct coord_applied applied;
};

static int recovery_apply(struct storage_txn *txn, const struct ledger_entry *e, void *arg)
{
	struct recovery_arg *ra = arg;
	if (ra->cfg->apply == NULL)
		return 0;
	return ra->cfg->apply(txn, e, ra->cfg->apply_arg, &ra->applied);
}

/* Start-up recovery in one write transaction. Recovery applies entries
 * too, which may fill the map: grow and run it again (nothing of a failed
 * attempt stays). */
static int recover(struct storage *st, const struct coord_config *cfg, uint64_t wall_us,
                   struct coord_recovery *rec)
{
	struct recovery_arg ra = {.cfg = cfg};
	int rc = 0;
	for (int attempt = 0; attempt < RECOVERY_ATTEMPTS; attempt++) {
		struct storage_txn *txn;
		memset(&ra.applied, 0, sizeof(ra.applied));
		rc = storage_txn_begin(st, NULL, 0, &txn);
		if (rc != 0)
			break;
		rc = ledger_recover(txn, wall_us, recovery_apply, &ra, &rec->ledger);
		if (rc == 0)
			rc = storage_txn_commit(txn);
		else
			storage_txn_abort(txn);
		if (rc != WB_E_MAPFULL)
			break;
		rc = storage_grow(st, RECOVERY_GROW);
		if (rc != 0)
			break;
	}
	rec->applied = ra.applied;
	return rc;
}

int coord_start(struct coord **out, const struct coord_config *cfg, struct coord_io *io,
                struct storage *st, struct coord_time now, struct coord_recovery *rec, char *errmsg,
                size_t errlen)
{
	struct coord_recovery r;
	int rc = recover(st, cfg, now.wall_us, &r);
	if (rc != 0) {
		snprintf(errmsg, errlen, "ledger recovery failed: %s", wb_strerror(rc));
		return rc;
	}
	struct coord *c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto err_nomem;
	c->cfg = *cfg;
	c->io = io;
	c->st = st;
	c->watermark = r.ledger.watermark;
	c->applied = r.applied;
	c->all.gaps = r.ledger.gaps;
	c->deadline = UINT64_MAX;
	c->deadline_told = true;
	c->waiter_deadline = UINT64_MAX;
	c->got = calloc(cfg->lease.max_count > 0 ? cfg->lease.max_count : 1, sizeof(*c->got));
	c->grants = calloc(cfg->lease.max_count > 0 ? cfg->lease.max_count : 1, sizeof(*c->grants));
	c->pbuf = calloc(cfg->lease.max_projections > 0 ? cfg->lease.max_projections : 1,
	                 sizeof(*c->pbuf));
	if (c->got == NULL || c->grants == NULL || c->pbuf == NULL)
		goto err_after_alloc;
	rc = lease_table_new(&c->t, &cfg->lease, r.ledger.watermark + 1, r.ledger.watermark,
	                     cfg->rand, cfg->rand_arg);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot create the lease table: %s", wb_strerror(rc));
		coord_close(c);
		return rc;
	}
	*out = c;
	*rec = r;
	return 0;

err_after_alloc:
	coord_close(c);
err_nomem:
	snprintf(errmsg, errlen, "out of memory");
	return WB_E_NOMEM;
}

void coord_shutdown(struct coord *c)
{
	/* Waiters are answered: their commits are durable, but the watermark
	 * will not move any more in this process. */
	while (c->nwaiters > 0) {
		struct waiter w = take_waiter(c, c->nwaiters - 1);
		answer_error(c, w.req, WB_SHUTTING_DOWN, "%s",
		             w.kind == WAIT_COMMIT
		                     ? "the commit is durable, but the server is shutting down "
		                       "before the watermark reached it"
		                     : "the server is shutting down");
	}
	c->shutting_down = true;
	tell_deadline(c);
}

void coord_close(struct coord *c)
{
	if (c == NULL)
		return;
	while (c->pend_head != NULL) {
		struct pend *p = c->pend_head;
		c->pend_head = p->next;
		answer_kind(c, p->req, COORD_DROPPED);
		free(p->ops);
		free(p);
	}
	while (c->nwaiters > 0)
		answer_kind(c, take_waiter(c, c->nwaiters - 1).req, COORD_DROPPED);
	while (c->writes != NULL) {
		struct coord_write *w = c->writes;
		unlink_write(c, w);
		if (has_req(w->req))
			answer_kind(c, w->req, COORD_DROPPED);
		write_free(w);
	}
	lease_table_free(c->t);
	while (c->pstats != NULL) {
		struct coord_pstat *ps = c->pstats;
		c->pstats = ps->next;
		free(ps);
	}
	free(c->settled);
	free(c->waiters);
	free(c->got);
	free(c->grants);
	free(c->pbuf);
	free(c);
}

/* ------------------------------------------------------------ figures */

uint64_t coord_watermark(const struct coord *c)
{
	return c->watermark;
}

uint64_t coord_next_seq(const struct coord *c)
{
	return lease_next_seq(c->t);
}

const struct lease_table *coord_leases(const struct coord *c)
{
	return c->t;
}

static void figures(const struct health_figures *f, uint64_t active, uint64_t now_ms, char *reason,
                    size_t reason_len, struct coord_figures *out)
{
	out->waiting = f->waiting;
	out->wait_mean_ms = health_wait_mean(f);
	out->wait_max_ms = f->wait_max_ms;
	out->gaps = f->gaps;
	out->health = health_judge(f, active, now_ms, reason, reason_len);
	out->health_reason = reason;
}

void coord_stats(struct coord *c, uint64_t now_ms, struct coord_stats *out)
{
	lease_get_counts(c->t, &out->leases);
	out->applied = c->applied;
	figures(&c->all, out->leases.active, now_ms, c->all_reason, sizeof(c->all_reason),
	        &out->all);
	out->watermark = c->watermark;
	out->next_seq = lease_next_seq(c->t);
	out->ceiling = lease_ceiling(c->t);
}

size_t coord_projection_stats(struct coord *c, uint64_t now_ms, struct coord_projection_stats *out,
                              size_t max)
{
	size_t cap = c->cfg.lease.max_projections;
	size_t n = lease_projection_stats(c->t, c->pbuf, cap < max ? cap : max);
	size_t k = n < max ? n : max;
	for (size_t i = 0; i < k; i++) {
		out[i].lease = c->pbuf[i];
		struct coord_pstat *ps = c->pbuf[i].slot;
		if (ps != NULL) {
			figures(&ps->f, c->pbuf[i].active, now_ms, ps->reason, sizeof(ps->reason),
			        &out[i].f);
		} else {
			out[i].f = (struct coord_figures){.health = "ok", .health_reason = ""};
		}
	}
	return n;
}
