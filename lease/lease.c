#include "lease.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Cascade bookkeeping: expiries and commits per second over the last
 * minute, in a ring of one-second buckets. */
#define RING_SECONDS 60u
#define CASCADE_MAX_LEVEL 10u
#define CASCADE_HOLD_MS 60000u

struct lease_projection {
	struct lease_projection *next;
	char name[LEASE_NAME_MAX + 1];
	uint64_t history[LEASE_HISTORY]; /* lease-to-commit times, ms */
	uint64_t history_sum;
	unsigned history_len;
	unsigned history_pos;
	uint64_t outcomes[LEASE_OUTCOMES];
	uint64_t active;
	uint64_t overrun;
	void *slot;
};

struct lease_table {
	struct lease_config cfg;
	lease_rand_fn rand;
	void *rand_arg;
	uint64_t next_seq;
	uint64_t ceiling;
	/* seq -> lease */
	struct lease **buckets;
	size_t nbuckets;
	/* ACTIVE leases by (expires_ms, seq) */
	struct lease **heap;
	size_t heap_len;
	/* every lease in the table by seq: its minimum gives the frontier */
	struct lease **sheap;
	size_t sheap_len;
	size_t cap; /* of heap and sheap */
	/* expired leases collected but not yet handed out, ascending seq */
	struct lease **due;
	size_t due_len;
	struct lease_projection *projs;
	uint64_t nprojs;
	uint64_t active;
	uint64_t finishing;
	uint64_t outcomes[LEASE_OUTCOMES];
	uint64_t overrun;
	uint64_t ring_expired[RING_SECONDS];
	uint64_t ring_committed[RING_SECONDS];
	uint64_t ring_second;
	uint64_t cascade_level;
	uint64_t cascade_changed_ms;
};

/* ------------------------------------------------------------ hash */

static size_t hash_slot(const struct lease_table *t, uint64_t seq)
{
	return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 32) & (t->nbuckets - 1);
}

static struct lease *hash_find(const struct lease_table *t, uint64_t seq)
{
	for (struct lease *l = t->buckets[hash_slot(t, seq)]; l != NULL; l = l->hash_next)
		if (l->seq == seq)
			return l;
	return NULL;
}

static void hash_insert(struct lease_table *t, struct lease *l)
{
	size_t i = hash_slot(t, l->seq);
	l->hash_next = t->buckets[i];
	t->buckets[i] = l;
}

static void hash_remove(struct lease_table *t, struct lease *l)
{
	struct lease **pp = &t->buckets[hash_slot(t, l->seq)];
	while (*pp != l)
		pp = &(*pp)->hash_next;
	*pp = l->hash_next;
}

/* Doubles the bucket array when the load passes 1. */
static int hash_reserve(struct lease_table *t, size_t entries)
{
	if (entries <= t->nbuckets)
		return 0;
	size_t n = t->nbuckets;
	while (n < entries)
		n *= 2;
	struct lease **b = calloc(n, sizeof(*b));
	if (b == NULL)
		return WB_E_NOMEM;
	struct lease **old = t->buckets;
	size_t oldn = t->nbuckets;
	t->buckets = b;
	t->nbuckets = n;
	for (size_t i = 0; i < oldn; i++) {
		struct lease *l = old[i];
		while (l != NULL) {
			struct lease *next = l->hash_next;
			hash_insert(t, l);
			l = next;
		}
	}
	free(old);
	return 0;
}

/* ------------------------------------------------------------ heaps */

static bool expires_before(const struct lease *a, const struct lease *b)
{
	return a->expires_ms < b->expires_ms || (a->expires_ms == b->expires_ms && a->seq < b->seq);
}

static bool seq_before(const struct lease *a, const struct lease *b)
{
	return a->seq < b->seq;
}

/* One heap implementation for both orders: the index field differs. */
struct heap {
	struct lease **a;
	size_t *len;
	bool (*before)(const struct lease *, const struct lease *);
	size_t offset; /* of the index field in struct lease */
};

static size_t *heap_idx(const struct heap *h, struct lease *l)
{
	return (size_t *)(void *)((char *)l + h->offset);
}

static void heap_set(const struct heap *h, size_t i, struct lease *l)
{
	h->a[i] = l;
	*heap_idx(h, l) = i;
}

static void heap_up(const struct heap *h, size_t i)
{
	struct lease *l = h->a[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!h->before(l, h->a[parent]))
			break;
		heap_set(h, i, h->a[parent]);
		i = parent;
	}
	heap_set(h, i, l);
}

static void heap_down(const struct heap *h, size_t i)
{
	struct lease *l = h->a[i];
	size_t n = *h->len;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && h->before(h->a[c + 1], h->a[c]))
			c++;
		if (!h->before(h->a[c], l))
			break;
		heap_set(h, i, h->a[c]);
		i = c;
	}
	heap_set(h, i, l);
}

static void heap_push(const struct heap *h, struct lease *l)
{
	size_t i = (*h->len)++;
	heap_set(h, i, l);
	heap_up(h, i);
}

static void heap_remove(const struct heap *h, struct lease *l)
{
	size_t i = *heap_idx(h, l);
	size_t last = --*h->len;
	if (i == last)
		return;
	struct lease *moved = h->a[last];
	heap_set(h, i, moved);
	heap_down(h, i);
	heap_up(h, *heap_idx(h, moved));
}

static struct heap expiry_heap(struct lease_table *t)
{
	return (struct heap){t->heap, &t->heap_len, expires_before,
	                     offsetof(struct lease, heap_idx)};
}

static struct heap seq_heap(struct lease_table *t)
{
	return (struct heap){t->sheap, &t->sheap_len, seq_before,
	                     offsetof(struct lease, seq_heap_idx)};
}

static int heaps_reserve(struct lease_table *t, size_t entries)
{
	if (entries <= t->cap)
		return 0;
	size_t cap = t->cap > 0 ? t->cap : 64;
	while (cap < entries)
		cap *= 2;
	struct lease **h = realloc(t->heap, cap * sizeof(*h));
	if (h == NULL)
		return WB_E_NOMEM;
	t->heap = h;
	struct lease **s = realloc(t->sheap, cap * sizeof(*s));
	if (s == NULL)
		return WB_E_NOMEM;
	t->sheap = s;
	struct lease **d = realloc(t->due, cap * sizeof(*d));
	if (d == NULL)
		return WB_E_NOMEM;
	t->due = d;
	t->cap = cap;
	return 0;
}

/* ------------------------------------------------------------ figures */

/* Moves the one-second ring to now, clearing the seconds it skips. A clock
 * that goes backwards leaves the ring where it is. */
static void ring_advance(struct lease_table *t, uint64_t now_ms)
{
	uint64_t sec = now_ms / 1000;
	if (sec <= t->ring_second)
		return;
	uint64_t steps = sec - t->ring_second;
	if (steps > RING_SECONDS)
		steps = RING_SECONDS;
	for (uint64_t k = 1; k <= steps; k++) {
		size_t i = (size_t)((t->ring_second + k) % RING_SECONDS);
		t->ring_expired[i] = 0;
		t->ring_committed[i] = 0;
	}
	t->ring_second = sec;
}

/* Raises the cascade level (adaptive durations double) while more than
 * cascade_threshold leases expire within a minute, at most once a minute,
 * and lowers it once the expiry rate is back under 5%. */
static void cascade_check(struct lease_table *t, uint64_t now_ms)
{
	uint64_t expired = 0;
	uint64_t committed = 0;
	for (size_t i = 0; i < RING_SECONDS; i++) {
		expired += t->ring_expired[i];
		committed += t->ring_committed[i];
	}
	bool held = t->cascade_level > 0 && now_ms - t->cascade_changed_ms < CASCADE_HOLD_MS;
	if (now_ms < t->cascade_changed_ms)
		held = true; /* the clock went back: wait for it */
	if (expired > t->cfg.cascade_threshold) {
		if (!held && t->cascade_level < CASCADE_MAX_LEVEL) {
			t->cascade_level++;
			t->cascade_changed_ms = now_ms;
		}
	} else if (t->cascade_level > 0 && !held && expired * 20 < expired + committed) {
		t->cascade_level--;
		t->cascade_changed_ms = now_ms;
	}
}

static void count_outcome(struct lease_table *t, struct lease *l, enum lease_outcome o,
                          uint64_t now_ms)
{
	t->outcomes[o]++;
	l->proj->outcomes[o]++;
	ring_advance(t, now_ms);
	size_t i = (size_t)(t->ring_second % RING_SECONDS);
	if (o == LEASE_EXPIRED || o == LEASE_RECOVERED)
		t->ring_expired[i]++;
	else if (o == LEASE_COMMITTED)
		t->ring_committed[i]++;
}

static struct lease_projection *projection_get(struct lease_table *t, const char *name, bool create)
{
	for (struct lease_projection *p = t->projs; p != NULL; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	if (!create || t->nprojs >= t->cfg.max_projections)
		return NULL;
	struct lease_projection *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	memcpy(p->name, name, strlen(name) + 1);
	p->next = t->projs;
	t->projs = p;
	t->nprojs++;
	return p;
}

static uint64_t adaptive(const struct lease_table *t, const struct lease_projection *p)
{
	uint64_t d;
	if (p == NULL || p->history_len == 0) {
		d = t->cfg.default_duration_ms;
	} else {
		d = 2 * (p->history_sum / p->history_len);
		for (uint64_t k = 0; k < t->cascade_level && d < t->cfg.max_duration_ms; k++)
			d *= 2;
		if (d < LEASE_MIN_ADAPTIVE_MS)
			d = LEASE_MIN_ADAPTIVE_MS;
	}
	return d < t->cfg.max_duration_ms ? d : t->cfg.max_duration_ms;
}

uint64_t lease_adaptive_duration(struct lease_table *t, const char *projection)
{
	return adaptive(t, projection_get(t, projection, false));
}

/* ------------------------------------------------------------ life cycle */

int lease_table_new(struct lease_table **out, const struct lease_config *cfg, uint64_t next_seq,
                    uint64_t ceiling, lease_rand_fn rand, void *rand_arg)
{
	if (next_seq == 0 || next_seq - 1 > ceiling || rand == NULL || cfg->max_count == 0)
		return WB_E_INVAL;
	struct lease_table *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return WB_E_NOMEM;
	t->cfg = *cfg;
	t->rand = rand;
	t->rand_arg = rand_arg;
	t->next_seq = next_seq;
	t->ceiling = ceiling;
	t->nbuckets = 64;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (t->buckets == NULL || heaps_reserve(t, 64) != 0) {
		lease_table_free(t);
		return WB_E_NOMEM;
	}
	*out = t;
	return 0;
}

void lease_table_free(struct lease_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->sheap_len; i++)
		free(t->sheap[i]);
	while (t->projs != NULL) {
		struct lease_projection *p = t->projs;
		t->projs = p->next;
		free(p);
	}
	free(t->buckets);
	free(t->heap);
	free(t->sheap);
	free(t->due);
	free(t);
}

uint64_t lease_next_seq(const struct lease_table *t)
{
	return t->next_seq;
}

uint64_t lease_ceiling(const struct lease_table *t)
{
	return t->ceiling;
}

uint64_t lease_reservation_needed(const struct lease_table *t, uint32_t count)
{
	uint64_t last = t->next_seq + count - 1;
	if (count > 0 && last <= t->ceiling)
		return 0;
	return last + t->cfg.reserve_chunk;
}

void lease_set_ceiling(struct lease_table *t, uint64_t ceiling)
{
	if (ceiling > t->ceiling)
		t->ceiling = ceiling;
}

static void owner_link(struct lease_owner *o, struct lease *l)
{
	l->owner = o;
	l->owner_prev = NULL;
	l->owner_next = o->head;
	if (o->head != NULL)
		o->head->owner_prev = l;
	o->head = l;
	o->count++;
}

static void owner_unlink(struct lease *l)
{
	struct lease_owner *o = l->owner;
	if (o == NULL)
		return;
	if (l->owner_prev != NULL)
		l->owner_prev->owner_next = l->owner_next;
	else
		o->head = l->owner_next;
	if (l->owner_next != NULL)
		l->owner_next->owner_prev = l->owner_prev;
	o->count--;
	l->owner = NULL;
	l->owner_prev = l->owner_next = NULL;
}

int lease_grant(struct lease_table *t, uint64_t now_ms, const struct lease_grant_args *args,
                struct lease **out, char *why, size_t whylen)
{
	size_t plen = args->projection != NULL ? strlen(args->projection) : 0;
	size_t olen = args->operation_id != NULL ? strlen(args->operation_id) : 0;
	uint32_t n = args->count;

	if (n == 0 || n > t->cfg.max_count) {
		snprintf(why, whylen, "count is %u: ask for 1 to %u sequences", n,
		         t->cfg.max_count);
		return WB_BAD_REQUEST;
	}
	if (plen == 0 || plen > LEASE_NAME_MAX) {
		snprintf(why, whylen, "the projection name is %zu bytes: give 1 to %u", plen,
		         LEASE_NAME_MAX);
		return WB_BAD_REQUEST;
	}
	if (olen > LEASE_NAME_MAX) {
		snprintf(why, whylen, "the operation id is %zu bytes: at most %u", olen,
		         LEASE_NAME_MAX);
		return WB_BAD_REQUEST;
	}
	if (t->active + t->finishing + n > t->cfg.max_leases) {
		snprintf(why, whylen,
		         "the server holds %llu leases and allows %llu (--max-leases): commit or "
		         "release some, or retry later",
		         (unsigned long long)(t->active + t->finishing),
		         (unsigned long long)t->cfg.max_leases);
		return WB_RESOURCE_EXHAUSTED;
	}
	if (args->owner != NULL && args->owner->count + n > t->cfg.max_leases_per_owner) {
		snprintf(why, whylen,
		         "this connection holds %zu active leases and may hold %llu "
		         "(--max-leases-per-connection)",
		         args->owner->count, (unsigned long long)t->cfg.max_leases_per_owner);
		return WB_RESOURCE_EXHAUSTED;
	}
	if (args->account != NULL && args->account->max != 0 &&
	    args->account->active + n > args->account->max) {
		snprintf(
		        why, whylen,
		        "this client (its user, token or address) holds %llu active leases and may "
		        "hold %llu (--max-leases-per-identity): commit or release some",
		        (unsigned long long)args->account->active,
		        (unsigned long long)args->account->max);
		return WB_RESOURCE_EXHAUSTED;
	}
	if (t->next_seq + n - 1 > t->ceiling) {
		snprintf(why, whylen, "the reservation ceiling must be raised first");
		return WB_E_AGAIN;
	}
	struct lease_projection *p = projection_get(t, args->projection, true);
	if (p == NULL) {
		snprintf(why, whylen,
		         "the server tracks %llu projections and allows no more: reuse a name",
		         (unsigned long long)t->cfg.max_projections);
		return WB_RESOURCE_EXHAUSTED;
	}
	size_t total = t->sheap_len + n;
	if (hash_reserve(t, total) != 0 || heaps_reserve(t, total) != 0)
		goto err_nomem;
	for (uint32_t i = 0; i < n; i++) {
		out[i] = calloc(1, sizeof(struct lease));
		if (out[i] == NULL) {
			for (uint32_t k = 0; k < i; k++)
				free(out[k]);
			goto err_nomem;
		}
	}

	uint64_t d = args->duration_ms > 0 ? args->duration_ms : adaptive(t, p);
	if (d > t->cfg.max_duration_ms)
		d = t->cfg.max_duration_ms;
	struct heap eh = expiry_heap(t);
	struct heap sh = seq_heap(t);
	for (uint32_t i = 0; i < n; i++) {
		struct lease *l = out[i];
		l->seq = t->next_seq++;
		l->token = t->rand(t->rand_arg);
		l->granted_ms = now_ms;
		l->expires_ms = now_ms + d;
		l->source_position = args->source_position;
		l->proj = p;
		if (olen > 0)
			memcpy(l->operation_id, args->operation_id, olen);
		l->on_disconnect = args->on_disconnect;
		l->state = LEASE_ACTIVE;
		hash_insert(t, l);
		heap_push(&eh, l);
		heap_push(&sh, l);
		if (args->owner != NULL)
			owner_link(args->owner, l);
		l->account = args->account;
		if (l->account != NULL)
			l->account->active++;
		t->active++;
		p->active++;
	}
	return 0;

err_nomem:
	snprintf(why, whylen, "the server is out of memory");
	return WB_E_NOMEM;
}

const char *lease_projection_name(const struct lease *l)
{
	return l->proj->name;
}

const char *lease_projection_of(const struct lease_table *t, uint64_t seq)
{
	const struct lease *l = hash_find(t, seq);
	return l != NULL ? l->proj->name : NULL;
}

uint64_t lease_token_of(const struct lease_table *t, uint64_t seq)
{
	const struct lease *l = hash_find(t, seq);
	return l != NULL ? l->token : 0;
}

void **lease_projection_slot(struct lease *l)
{
	return &l->proj->slot;
}

struct lease *lease_lookup(struct lease_table *t, uint64_t seq)
{
	return hash_find(t, seq);
}

int lease_get(struct lease_table *t, uint64_t seq, uint64_t token, uint64_t now_ms,
              struct lease **out)
{
	struct lease *l = hash_find(t, seq);
	if (l == NULL)
		return WB_LEASE_NOT_FOUND;
	if (l->token != token)
		return WB_LEASE_TOKEN_MISMATCH;
	if (l->state == LEASE_FINISHING)
		return l->outcome == LEASE_EXPIRED || l->outcome == LEASE_RECOVERED
		               ? WB_LEASE_EXPIRED
		               : WB_LEASE_NOT_FOUND;
	if (now_ms >= l->expires_ms + t->cfg.grace_ms)
		return WB_LEASE_EXPIRED;
	*out = l;
	return 0;
}

int lease_extend(struct lease_table *t, struct lease *l, uint64_t duration_ms, uint64_t now_ms,
                 char *why, size_t whylen)
{
	uint64_t d = duration_ms > 0 ? duration_ms : adaptive(t, l->proj);
	if (d > t->cfg.max_duration_ms)
		d = t->cfg.max_duration_ms;
	uint64_t limit = l->granted_ms + t->cfg.max_lifetime_ms;
	if (now_ms + d > limit) {
		t->overrun++;
		l->proj->overrun++;
		snprintf(why, whylen,
		         "the lease would live %llu ms, past its lifetime cap of %llu ms "
		         "(--lease-max-lifetime): commit, stage or release the work",
		         (unsigned long long)(now_ms + d - l->granted_ms),
		         (unsigned long long)t->cfg.max_lifetime_ms);
		return WB_RESOURCE_EXHAUSTED;
	}
	l->expires_ms = now_ms + d;
	struct heap eh = expiry_heap(t);
	heap_down(&eh, l->heap_idx);
	heap_up(&eh, l->heap_idx);
	return 0;
}

void lease_stage(struct lease_table *t, struct lease *l)
{
	(void)t;
	l->staged = true;
}

/* ACTIVE -> FINISHING without the figures. */
static void to_finishing(struct lease_table *t, struct lease *l, enum lease_outcome o)
{
	struct heap eh = expiry_heap(t);
	heap_remove(&eh, l);
	owner_unlink(l);
	if (l->account != NULL) {
		l->account->active--;
		l->account = NULL;
	}
	l->state = LEASE_FINISHING;
	l->outcome = o;
	l->proj->active--;
	t->active--;
	t->finishing++;
}

void lease_finish(struct lease_table *t, struct lease *l, enum lease_outcome outcome,
                  uint64_t now_ms)
{
	if (l->state != LEASE_ACTIVE)
		return;
	to_finishing(t, l, outcome);
	count_outcome(t, l, outcome, now_ms);
	if (outcome == LEASE_COMMITTED) {
		struct lease_projection *p = l->proj;
		uint64_t took = now_ms > l->granted_ms ? now_ms - l->granted_ms : 0;
		if (p->history_len == LEASE_HISTORY)
			p->history_sum -= p->history[p->history_pos];
		else
			p->history_len++;
		p->history[p->history_pos] = took;
		p->history_sum += took;
		p->history_pos = (p->history_pos + 1) % LEASE_HISTORY;
	}
	cascade_check(t, now_ms);
}

static int cmp_seq(const void *a, const void *b)
{
	const struct lease *x = *(struct lease *const *)a;
	const struct lease *y = *(struct lease *const *)b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

size_t lease_collect_expired(struct lease_table *t, uint64_t now_ms, struct lease **out, size_t max)
{
	size_t before = t->due_len;
	while (t->heap_len > 0 && t->heap[0]->expires_ms + t->cfg.grace_ms <= now_ms) {
		struct lease *l = t->heap[0];
		enum lease_outcome o = l->staged ? LEASE_RECOVERED : LEASE_EXPIRED;
		to_finishing(t, l, o);
		count_outcome(t, l, o, now_ms);
		t->due[t->due_len++] = l;
	}
	if (t->due_len > before) {
		qsort(t->due, t->due_len, sizeof(*t->due), cmp_seq);
		cascade_check(t, now_ms);
	}
	size_t n = t->due_len < max ? t->due_len : max;
	memcpy(out, t->due, n * sizeof(*out));
	memmove(t->due, t->due + n, (t->due_len - n) * sizeof(*t->due));
	t->due_len -= n;
	return n;
}

uint64_t lease_next_expiry(const struct lease_table *t)
{
	if (t->heap_len == 0)
		return UINT64_MAX;
	return t->heap[0]->expires_ms + t->cfg.grace_ms;
}

void lease_settle(struct lease_table *t, uint64_t seq)
{
	struct lease *l = hash_find(t, seq);
	if (l == NULL)
		return;
	if (l->state == LEASE_ACTIVE) {
		/* Settled without finishing: misuse, but leave no dangling
		 * pointer behind. */
		to_finishing(t, l, LEASE_COMMITTED);
	}
	for (size_t i = 0; i < t->due_len; i++) {
		if (t->due[i] == l) {
			memmove(t->due + i, t->due + i + 1, (t->due_len - i - 1) * sizeof(*t->due));
			t->due_len--;
			break;
		}
	}
	struct heap sh = seq_heap(t);
	heap_remove(&sh, l);
	hash_remove(t, l);
	t->finishing--;
	free(l);
}

uint64_t lease_frontier(const struct lease_table *t)
{
	if (t->sheap_len == 0)
		return t->next_seq - 1;
	return t->sheap[0]->seq - 1;
}

size_t lease_owner_detach(struct lease_table *t, struct lease_owner *owner, struct lease **out,
                          size_t max)
{
	(void)t;
	struct lease *l = owner->head;
	if (l == NULL || max == 0)
		return 0;
	while (l->owner_next != NULL)
		l = l->owner_next;
	/* l is the oldest, so the lowest sequence: walk towards the newest. */
	size_t n = 0;
	while (l != NULL && n < max) {
		struct lease *prev = l->owner_prev;
		owner_unlink(l);
		if (l->on_disconnect == LEASE_RELEASE)
			out[n++] = l;
		l = prev;
	}
	return n;
}

void lease_get_counts(const struct lease_table *t, struct lease_counts *out)
{
	out->active = t->active;
	out->finishing = t->finishing;
	memcpy(out->outcomes, t->outcomes, sizeof(out->outcomes));
	out->overrun = t->overrun;
	out->cascade_level = t->cascade_level;
}

size_t lease_projection_stats(struct lease_table *t, struct lease_projection_stats *out, size_t max)
{
	size_t n = 0;
	for (struct lease_projection *p = t->projs; p != NULL; p = p->next, n++) {
		if (n >= max)
			continue;
		out[n].name = p->name;
		out[n].active = p->active;
		memcpy(out[n].outcomes, p->outcomes, sizeof(p->outcomes));
		out[n].adaptive_ms = adaptive(t, p);
		out[n].overrun = p->overrun;
		out[n].slot = p->slot;
	}
	return n;
}
