/* A randomized model-based test of the lease table (lease/lease.h).
 *
 * A seeded random walk drives the table the way the server does: grants
 * (with a reservation ceiling that lags and is raised only after E_AGAIN),
 * extends, stages, commits, releases, expiry collection, owner detach,
 * settles of finishing leases in any order, clock jumps both ways and
 * restarts (a new table from ceiling + 1, every unsettled sequence up to the
 * ceiling lost to a restart gap, or recovered when staged). A small reference
 * model, one record per sequence number, is checked against the table after
 * every step: no sequence handed out twice, a frontier that never moves
 * backwards with exactly one final outcome at or below it, lease_get answers,
 * expiry order, counts and the next expiry.
 *
 * WB_SEED=<n> replays a run; otherwise the seed comes from the clock. Every
 * failure message names the seed and the step. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "lease.h"

#define STEPS 20000
#define OWNERS 3
#define PROJECTIONS 3
#define MAX_COUNT 4u
#define MAX_LEASES 40u
#define MAX_PER_OWNER 12u
#define CHUNK 8u
#define MAX_DURATION 5000u
#define DEFAULT_DURATION 2000u
#define MAX_LIFETIME 6000u
#define NO_OWNER (-1)
#define RESTART_GAP LEASE_OUTCOMES /* a final outcome besides the table's four */

enum mstate {
	M_UNUSED = 0, /* never handed out */
	M_ACTIVE,
	M_FINISHING,
	M_SETTLED,
	M_LOST, /* unsettled at a restart: a restart gap or a recovery */
};

struct mseq {
	enum mstate state;
	enum lease_outcome pending; /* while FINISHING */
	int final;                  /* final outcome once settled or lost, else -1 */
	unsigned finals;            /* how many final outcomes it was given */
	bool staged;
	int proj;
	int owner;
	enum lease_on_disconnect od;
	uint64_t token, granted, expires;
	struct lease *l;
};

/* What the walk did, to show it reached the interesting paths. */
enum event {
	EV_AGAIN,
	EV_REFUSED,
	EV_GRANTED,
	EV_OVERRUN,
	EV_EXTENDED,
	EV_EXPIRED,
	EV_DETACHED,
	EV_SETTLED,
	EV_RESTARTS,
	EV_BACKJUMPS,
	EV_COUNT,
};

static const char *const projections[PROJECTIONS] = {"orders", "stock", "mail"};

static struct {
	struct fixture_walk walk;
	uint64_t rng;
	uint64_t token_rng;
	struct lease_config cfg;
	struct lease_table *t;
	uint64_t now;
	uint64_t next, ceiling;
	struct mseq *seqs;
	size_t cap;
	uint64_t live[MAX_LEASES]; /* ACTIVE and FINISHING sequences, unordered */
	size_t n_live;
	struct lease_owner owners[OWNERS];
	uint64_t owner_count[OWNERS];
	uint64_t outcomes[LEASE_OUTCOMES]; /* since the table was made */
	uint64_t proj_outcomes[PROJECTIONS][LEASE_OUTCOMES];
	uint64_t proj_active[PROJECTIONS];
	bool proj_known[PROJECTIONS]; /* granted for since the table was made */
	uint64_t overrun;
	uint64_t frontier;   /* highest frontier seen */
	uint64_t checked_to; /* sequences <= this had one final outcome checked */
	unsigned long events[EV_COUNT];
} m;

#define MCHECK(cond, fmt, ...) FIXTURE_WALK_CHECK(m.walk, (cond), fmt, __VA_ARGS__)

/* A value in [0, n). */
static uint64_t rnd(uint64_t n)
{
	return fixture_splitmix(&m.rng) % n;
}

static bool chance(unsigned percent)
{
	return rnd(100) < percent;
}

static struct mseq *ms(uint64_t seq)
{
	MCHECK(seq < m.cap, "sequence %llu outside the model", (unsigned long long)seq);
	return &m.seqs[seq];
}

/* Makes room in the model for every sequence up to seq. */
static void model_reserve(uint64_t seq)
{
	if (seq < m.cap)
		return;
	size_t cap = m.cap ? m.cap : 1024;
	while (cap <= seq)
		cap *= 2;
	struct mseq *s = realloc(m.seqs, cap * sizeof(*s));
	cr_assert_not_null(s);
	for (size_t i = m.cap; i < cap; i++)
		s[i] = (struct mseq){.state = M_UNUSED, .final = -1, .owner = NO_OWNER};
	m.seqs = s;
	m.cap = cap;
}

static bool due(const struct mseq *s)
{
	return m.now >= s->expires + m.cfg.grace_ms;
}

static void live_add(uint64_t seq)
{
	MCHECK(m.n_live < MAX_LEASES, "model holds %zu leases", m.n_live);
	m.live[m.n_live++] = seq;
}

static void live_remove(uint64_t seq)
{
	for (size_t i = 0; i < m.n_live; i++) {
		if (m.live[i] == seq) {
			m.live[i] = m.live[--m.n_live];
			return;
		}
	}
	MCHECK(false, "sequence %llu is not live in the model", (unsigned long long)seq);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* The live sequences for which keep() holds, ascending; returns how many. */
static size_t live_where(bool (*keep)(const struct mseq *, int), int arg, uint64_t *out)
{
	size_t n = 0;
	for (size_t i = 0; i < m.n_live; i++)
		if (keep(ms(m.live[i]), arg))
			out[n++] = m.live[i];
	qsort(out, n, sizeof(*out), cmp_u64);
	return n;
}

static bool is_usable(const struct mseq *s, int arg)
{
	(void)arg;
	return s->state == M_ACTIVE && !due(s);
}

static bool is_due(const struct mseq *s, int arg)
{
	(void)arg;
	return s->state == M_ACTIVE && due(s);
}

static bool is_finishing(const struct mseq *s, int arg)
{
	(void)arg;
	return s->state == M_FINISHING;
}

static bool is_released_on_detach(const struct mseq *s, int owner)
{
	return s->state == M_ACTIVE && s->owner == owner && s->od == LEASE_RELEASE;
}

static bool is_kept_on_detach(const struct mseq *s, int owner)
{
	return s->state == M_ACTIVE && s->owner == owner && s->od == LEASE_KEEP;
}

static void leave_owner(struct mseq *s)
{
	if (s->owner != NO_OWNER) {
		MCHECK(m.owner_count[s->owner] > 0, "owner %d count underflow", s->owner);
		m.owner_count[s->owner]--;
		s->owner = NO_OWNER;
	}
}

/* The model's half of lease_finish() and of expiry collection. */
static void model_finish(uint64_t seq, enum lease_outcome outcome)
{
	struct mseq *s = ms(seq);
	MCHECK(s->state == M_ACTIVE, "finishing seq %llu in state %d", (unsigned long long)seq,
	       s->state);
	leave_owner(s);
	s->state = M_FINISHING;
	s->pending = outcome;
	m.outcomes[outcome]++;
	m.proj_outcomes[s->proj][outcome]++;
	m.proj_active[s->proj]--;
}

static void give_final(uint64_t seq, int outcome)
{
	struct mseq *s = ms(seq);
	s->finals++;
	s->final = outcome;
	MCHECK(s->finals == 1, "seq %llu got a second final outcome", (unsigned long long)seq);
}

/* What lease_get() must answer for seq with token. Sets *alt to a second
 * acceptable answer where the contract does not order the checks (a wrong
 * token on a lease that is also expired or finished). */
static int expected_get(uint64_t seq, bool right_token, int *alt)
{
	*alt = -1;
	if (seq >= m.cap)
		return WB_LEASE_NOT_FOUND;
	const struct mseq *s = &m.seqs[seq];
	int want;
	switch (s->state) {
	case M_ACTIVE:
		if (due(s)) {
			want = WB_LEASE_EXPIRED;
			break;
		}
		return right_token ? 0 : WB_LEASE_TOKEN_MISMATCH;
	case M_FINISHING:
		want = s->pending == LEASE_EXPIRED || s->pending == LEASE_RECOVERED
		               ? WB_LEASE_EXPIRED
		               : WB_LEASE_NOT_FOUND;
		break;
	default:
		return WB_LEASE_NOT_FOUND;
	}
	if (!right_token)
		*alt = WB_LEASE_TOKEN_MISMATCH;
	return want;
}

static void check_get(uint64_t seq, bool right_token)
{
	uint64_t token = seq < m.cap ? m.seqs[seq].token : 0;
	if (!right_token)
		token ^= 1 + rnd(1000);
	int alt;
	int want = expected_get(seq, right_token, &alt);
	struct lease *got = NULL;
	int rc = lease_get(m.t, seq, token, m.now, &got);
	MCHECK(rc == want || rc == alt, "lease_get(%llu, %s token) = %s, model says %s",
	       (unsigned long long)seq, right_token ? "right" : "wrong", wb_error_name(rc),
	       wb_error_name(want));
	if (rc == 0)
		MCHECK(got == m.seqs[seq].l, "lease_get(%llu) returned another lease",
		       (unsigned long long)seq);
}

/* The per-projection figures: active leases and outcomes since the table
 * was made, and an adaptive duration that agrees with
 * lease_adaptive_duration(). */
static void check_projections(void)
{
	struct lease_projection_stats st[PROJECTIONS + 1];
	memset(st, 0, sizeof(st));
	size_t n = lease_projection_stats(m.t, st, PROJECTIONS + 1);
	MCHECK(n <= PROJECTIONS, "%zu projections tracked", n);
	bool seen[PROJECTIONS] = {false};
	for (size_t i = 0; i < n; i++) {
		int p = -1;
		for (int k = 0; k < PROJECTIONS; k++)
			if (st[i].name != NULL && strcmp(st[i].name, projections[k]) == 0)
				p = k;
		MCHECK(p >= 0 && !seen[p], "unexpected projection figures %zu (%s)", i,
		       st[i].name ? st[i].name : "NULL");
		seen[p] = true;
		MCHECK(st[i].active == m.proj_active[p], "%s active %llu, model %llu",
		       projections[p], (unsigned long long)st[i].active,
		       (unsigned long long)m.proj_active[p]);
		for (int o = 0; o < LEASE_OUTCOMES; o++)
			MCHECK(st[i].outcomes[o] == m.proj_outcomes[p][o],
			       "%s outcome %d total %llu, model %llu", projections[p], o,
			       (unsigned long long)st[i].outcomes[o],
			       (unsigned long long)m.proj_outcomes[p][o]);
		uint64_t ad = lease_adaptive_duration(m.t, projections[p]);
		MCHECK(st[i].adaptive_ms == ad, "%s adaptive %llu in figures, %llu asked",
		       projections[p], (unsigned long long)st[i].adaptive_ms,
		       (unsigned long long)ad);
	}
	for (int p = 0; p < PROJECTIONS; p++)
		MCHECK(seen[p] || !m.proj_known[p], "no figures for %s", projections[p]);
}

/* Every invariant, after every step. */
static void check_all(void)
{
	MCHECK(lease_next_seq(m.t) == m.next, "next_seq %llu, model %llu",
	       (unsigned long long)lease_next_seq(m.t), (unsigned long long)m.next);
	MCHECK(lease_ceiling(m.t) == m.ceiling, "ceiling %llu, model %llu",
	       (unsigned long long)lease_ceiling(m.t), (unsigned long long)m.ceiling);

	uint64_t active = 0, finishing = 0, next_exp = UINT64_MAX, lowest_live = m.next;
	for (size_t i = 0; i < m.n_live; i++) {
		uint64_t seq = m.live[i];
		const struct mseq *s = ms(seq);
		struct lease *l = lease_lookup(m.t, seq);
		MCHECK(l == s->l, "lookup(%llu) gave %p, model %p", (unsigned long long)seq,
		       (void *)l, (void *)s->l);
		MCHECK(l->seq == seq && l->token == s->token, "lease %llu lost its seq or token",
		       (unsigned long long)seq);
		MCHECK(l->staged == s->staged, "lease %llu staged %d, model %d",
		       (unsigned long long)seq, l->staged, s->staged);
		if (seq < lowest_live)
			lowest_live = seq;
		if (s->state == M_ACTIVE) {
			active++;
			MCHECK(l->state == LEASE_ACTIVE, "lease %llu not ACTIVE",
			       (unsigned long long)seq);
			MCHECK(l->expires_ms == s->expires, "lease %llu expires %llu, model %llu",
			       (unsigned long long)seq, (unsigned long long)l->expires_ms,
			       (unsigned long long)s->expires);
			if (s->expires + m.cfg.grace_ms < next_exp)
				next_exp = s->expires + m.cfg.grace_ms;
		} else {
			finishing++;
			MCHECK(l->state == LEASE_FINISHING && l->outcome == s->pending,
			       "lease %llu state %d outcome %d, model FINISHING %d",
			       (unsigned long long)seq, l->state, l->outcome, s->pending);
		}
		MCHECK(strcmp(lease_projection_name(l), projections[s->proj]) == 0,
		       "lease %llu of projection %s, model %s", (unsigned long long)seq,
		       lease_projection_name(l), projections[s->proj]);
		check_get(seq, true);
	}

	struct lease_counts c;
	lease_get_counts(m.t, &c);
	MCHECK(c.active == active && c.finishing == finishing,
	       "counts active %llu finishing %llu, model %llu %llu", (unsigned long long)c.active,
	       (unsigned long long)c.finishing, (unsigned long long)active,
	       (unsigned long long)finishing);
	for (int o = 0; o < LEASE_OUTCOMES; o++)
		MCHECK(c.outcomes[o] == m.outcomes[o], "outcome %d total %llu, model %llu", o,
		       (unsigned long long)c.outcomes[o], (unsigned long long)m.outcomes[o]);
	MCHECK(c.overrun == m.overrun, "overrun %llu, model %llu", (unsigned long long)c.overrun,
	       (unsigned long long)m.overrun);
	MCHECK(lease_next_expiry(m.t) == next_exp, "next expiry %llu, model %llu",
	       (unsigned long long)lease_next_expiry(m.t), (unsigned long long)next_exp);

	check_projections();

	for (int o = 0; o < OWNERS; o++)
		MCHECK(m.owners[o].count == m.owner_count[o], "owner %d holds %zu, model %llu", o,
		       m.owners[o].count, (unsigned long long)m.owner_count[o]);

	uint64_t f = lease_frontier(m.t);
	MCHECK(f == lowest_live - 1, "frontier %llu, model %llu", (unsigned long long)f,
	       (unsigned long long)(lowest_live - 1));
	MCHECK(f >= m.frontier, "frontier went back from %llu to %llu",
	       (unsigned long long)m.frontier, (unsigned long long)f);
	m.frontier = f;
	for (uint64_t seq = m.checked_to + 1; seq <= f; seq++) {
		const struct mseq *s = ms(seq);
		MCHECK(s->finals == 1 && (s->state == M_SETTLED || s->state == M_LOST),
		       "seq %llu <= frontier %llu has %u final outcomes (state %d)",
		       (unsigned long long)seq, (unsigned long long)f, s->finals, s->state);
	}
	if (f > m.checked_to)
		m.checked_to = f;

	/* A few probes beyond the live leases: settled, lost, never handed
	 * out, and wrong tokens. */
	for (int i = 0; i < 3; i++)
		check_get(rnd(m.next + 3), chance(50));
	if (m.n_live > 0)
		check_get(m.live[rnd(m.n_live)], false);
}

static void open_table(void)
{
	int rc = lease_table_new(&m.t, &m.cfg, m.next, m.ceiling, fixture_splitmix, &m.token_rng);
	MCHECK(rc == 0, "lease_table_new: %s", wb_error_name(rc));
	memset(m.owners, 0, sizeof(m.owners));
	memset(m.owner_count, 0, sizeof(m.owner_count));
	memset(m.outcomes, 0, sizeof(m.outcomes));
	memset(m.proj_outcomes, 0, sizeof(m.proj_outcomes));
	memset(m.proj_active, 0, sizeof(m.proj_active));
	memset(m.proj_known, 0, sizeof(m.proj_known));
	m.overrun = 0;
}

/* ---- the steps ---- */

static void step_grant(void)
{
	uint32_t count = (uint32_t)(1 + rnd(MAX_COUNT));
	if (chance(3))
		count = chance(50) ? 0 : MAX_COUNT + 1;
	int owner = (int)rnd(OWNERS + 1);
	if (owner == OWNERS)
		owner = NO_OWNER;
	int proj_idx = (int)rnd(PROJECTIONS);
	const char *proj = projections[proj_idx];
	uint64_t dur;
	uint64_t pick = rnd(10);
	if (pick < 2)
		dur = 0;
	else if (pick < 9)
		dur = 1 + rnd(MAX_DURATION);
	else
		dur = MAX_DURATION + 1 + rnd(2 * MAX_DURATION);
	uint64_t want_dur = dur == 0 ? lease_adaptive_duration(m.t, proj)
	                             : (dur > MAX_DURATION ? MAX_DURATION : dur);
	MCHECK(want_dur <= MAX_DURATION, "adaptive %llu above the cap",
	       (unsigned long long)want_dur);

	bool bad = count == 0 || count > MAX_COUNT;
	bool full = m.n_live + count > MAX_LEASES;
	bool owner_full = owner != NO_OWNER && m.owner_count[owner] + count > MAX_PER_OWNER;
	bool again = m.next + count - 1 > m.ceiling;
	if (!bad) {
		uint64_t need = lease_reservation_needed(m.t, count);
		uint64_t want_need = again ? m.next + count - 1 + CHUNK : 0;
		MCHECK(need == want_need, "reservation_needed(%u) = %llu, model %llu", count,
		       (unsigned long long)need, (unsigned long long)want_need);
	}

	struct lease *out[MAX_COUNT + 1];
	struct lease_grant_args a = {
	        .projection = proj,
	        .duration_ms = dur,
	        .count = count,
	        .operation_id = chance(50) ? "op" : NULL,
	        .source_position = m.walk.step,
	        .on_disconnect = chance(50) ? LEASE_KEEP : LEASE_RELEASE,
	        .owner = owner == NO_OWNER ? NULL : &m.owners[owner],
	};
	char why[128] = "";
	int rc = lease_grant(m.t, m.now, &a, out, why, sizeof(why));
	if (bad || full || owner_full || again) {
		bool ok = (bad && rc == WB_BAD_REQUEST) || (full && rc == WB_RESOURCE_EXHAUSTED) ||
		          (owner_full && rc == WB_RESOURCE_EXHAUSTED) ||
		          (again && rc == WB_E_AGAIN);
		MCHECK(ok, "grant of %u (bad %d full %d owner_full %d again %d) answered %s (%s)",
		       count, bad, full, owner_full, again, wb_error_name(rc), why);
		MCHECK(why[0] != '\0', "grant refused with %s and no reason", wb_error_name(rc));
		m.events[rc == WB_E_AGAIN ? EV_AGAIN : EV_REFUSED]++;
		if (rc == WB_E_AGAIN && chance(20)) {
			/* A stale, lower report: ignored. */
			lease_set_ceiling(m.t, m.ceiling - rnd(m.ceiling + 1));
		} else if (rc == WB_E_AGAIN && chance(60)) {
			uint64_t need = m.next + count - 1 + CHUNK;
			lease_set_ceiling(m.t, need);
			model_reserve(need);
			m.ceiling = need;
		}
		return;
	}
	MCHECK(rc == 0, "grant of %u answered %s (%s)", count, wb_error_name(rc), why);
	m.events[EV_GRANTED]++;
	for (uint32_t i = 0; i < count; i++) {
		struct lease *l = out[i];
		uint64_t seq = m.next + i;
		MCHECK(l != NULL && l->seq == seq, "grant %u of %u: seq %llu, model %llu", i, count,
		       l ? (unsigned long long)l->seq : 0ull, (unsigned long long)seq);
		struct mseq *s = ms(seq);
		MCHECK(s->state == M_UNUSED, "seq %llu handed out twice (state %d)",
		       (unsigned long long)seq, s->state);
		MCHECK(l->state == LEASE_ACTIVE && !l->staged, "new lease %llu not fresh",
		       (unsigned long long)seq);
		MCHECK(l->granted_ms == m.now && l->expires_ms == m.now + want_dur,
		       "lease %llu granted %llu expires %llu, model %llu + %llu",
		       (unsigned long long)seq, (unsigned long long)l->granted_ms,
		       (unsigned long long)l->expires_ms, (unsigned long long)m.now,
		       (unsigned long long)want_dur);
		MCHECK(l->on_disconnect == a.on_disconnect, "lease %llu lost on_disconnect",
		       (unsigned long long)seq);
		for (uint32_t j = 0; j < i; j++)
			MCHECK(out[j]->token != l->token, "grant shares token between %u and %u", j,
			       i);
		*s = (struct mseq){
		        .state = M_ACTIVE,
		        .final = -1,
		        .proj = proj_idx,
		        .owner = owner,
		        .od = a.on_disconnect,
		        .token = l->token,
		        .granted = m.now,
		        .expires = m.now + want_dur,
		        .l = l,
		};
		live_add(seq);
		m.proj_active[proj_idx]++;
		m.proj_known[proj_idx] = true;
		if (owner != NO_OWNER)
			m.owner_count[owner]++;
	}
	m.next += count;
}

/* A usable lease, found as the server would: through lease_get(). */
static struct mseq *pick_usable(uint64_t *seq_out)
{
	uint64_t c[MAX_LEASES];
	size_t n = live_where(is_usable, 0, c);
	if (n == 0)
		return NULL;
	uint64_t seq = c[rnd(n)];
	struct mseq *s = ms(seq);
	struct lease *got = NULL;
	int rc = lease_get(m.t, seq, s->token, m.now, &got);
	MCHECK(rc == 0 && got == s->l, "usable lease %llu: lease_get %s", (unsigned long long)seq,
	       wb_error_name(rc));
	*seq_out = seq;
	return s;
}

static void step_extend(void)
{
	uint64_t seq;
	struct mseq *s = pick_usable(&seq);
	if (s == NULL)
		return;
	uint64_t dur = chance(20) ? 0 : 1 + rnd(MAX_DURATION);
	/* Now and then exactly to the lifetime cap, or one past it. */
	uint64_t to_cap = s->granted + MAX_LIFETIME - m.now;
	if (m.now < s->granted + MAX_LIFETIME && to_cap < MAX_DURATION && chance(30))
		dur = to_cap + rnd(2);
	uint64_t want =
	        m.now + (dur == 0 ? lease_adaptive_duration(m.t, projections[s->proj]) : dur);
	char why[128] = "";
	int rc = lease_extend(m.t, s->l, dur, m.now, why, sizeof(why));
	if (want > s->granted + MAX_LIFETIME) {
		MCHECK(rc == WB_RESOURCE_EXHAUSTED, "extend of %llu past its lifetime answered %s",
		       (unsigned long long)seq, wb_error_name(rc));
		MCHECK(why[0] != '\0', "%s", "refused extend without a reason");
		m.overrun++;
		m.events[EV_OVERRUN]++;
	} else {
		MCHECK(rc == 0, "extend of %llu to %llu answered %s (%s)", (unsigned long long)seq,
		       (unsigned long long)want, wb_error_name(rc), why);
		s->expires = want;
		m.events[EV_EXTENDED]++;
	}
}

static void step_stage(void)
{
	uint64_t seq;
	struct mseq *s = pick_usable(&seq);
	if (s == NULL)
		return;
	lease_stage(m.t, s->l);
	s->staged = true;
}

static void step_finish(enum lease_outcome outcome)
{
	uint64_t seq;
	struct mseq *s = pick_usable(&seq);
	if (s == NULL)
		return;
	lease_finish(m.t, s->l, outcome, m.now);
	model_finish(seq, outcome);
}

static void step_collect(void)
{
	uint64_t want[MAX_LEASES];
	size_t n_want = live_where(is_due, 0, want);
	size_t max = 1 + (size_t)rnd(6);
	struct lease *out[8];
	size_t got = 0;
	for (;;) {
		size_t n = lease_collect_expired(m.t, m.now, out, max);
		MCHECK(n <= max, "collect returned %zu of max %zu", n, max);
		for (size_t i = 0; i < n; i++) {
			MCHECK(got < n_want, "collect returned %zu+ leases, model has %zu due",
			       got + 1, n_want);
			MCHECK(out[i]->seq == want[got],
			       "collect #%zu gave seq %llu, model wants %llu (ascending)", got,
			       (unsigned long long)out[i]->seq, (unsigned long long)want[got]);
			struct mseq *s = ms(want[got]);
			MCHECK(out[i] == s->l && out[i]->state == LEASE_FINISHING,
			       "collected %llu is not the FINISHING lease",
			       (unsigned long long)want[got]);
			model_finish(want[got], s->staged ? LEASE_RECOVERED : LEASE_EXPIRED);
			got++;
		}
		if (n < max)
			break;
	}
	MCHECK(got == n_want, "collect returned %zu leases, model has %zu due", got, n_want);
	m.events[EV_EXPIRED] += got;
}

static void step_detach(void)
{
	int owner = (int)rnd(OWNERS);
	uint64_t want[MAX_LEASES], keep[MAX_LEASES];
	size_t n_want = live_where(is_released_on_detach, owner, want);
	size_t n_keep = live_where(is_kept_on_detach, owner, keep);
	size_t max = 1 + (size_t)rnd(4);
	struct lease *out[4];
	size_t got = 0;
	for (;;) {
		size_t n = lease_owner_detach(m.t, &m.owners[owner], out, max);
		MCHECK(n <= max, "detach returned %zu of max %zu", n, max);
		for (size_t i = 0; i < n; i++) {
			MCHECK(got < n_want, "detach returned %zu+ leases, model %zu", got + 1,
			       n_want);
			MCHECK(out[i]->seq == want[got],
			       "detach #%zu gave seq %llu, model wants %llu (ascending)", got,
			       (unsigned long long)out[i]->seq, (unsigned long long)want[got]);
			MCHECK(out[i]->state == LEASE_ACTIVE, "detach returned %llu not ACTIVE",
			       (unsigned long long)want[got]);
			/* The server releases each one. */
			lease_finish(m.t, out[i], LEASE_RELEASED, m.now);
			model_finish(want[got], LEASE_RELEASED);
			got++;
		}
		if (n < max)
			break;
	}
	MCHECK(got == n_want, "detach returned %zu leases, model %zu", got, n_want);
	for (size_t i = 0; i < n_keep; i++)
		leave_owner(ms(keep[i]));
	MCHECK(m.owners[owner].count == 0 && m.owners[owner].head == NULL,
	       "owner %d still holds %zu after detach", owner, m.owners[owner].count);
	m.events[EV_DETACHED] += got;
}

/* The writer makes some final entries durable, in any order. */
static void step_settle(void)
{
	uint64_t c[MAX_LEASES];
	size_t n = live_where(is_finishing, 0, c);
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rnd(i);
		uint64_t tmp = c[i - 1];
		c[i - 1] = c[j];
		c[j] = tmp;
	}
	for (size_t i = 0; i < n; i++) {
		if (chance(40))
			continue;
		struct mseq *s = ms(c[i]);
		lease_settle(m.t, c[i]);
		s->state = M_SETTLED;
		s->l = NULL;
		give_final(c[i], (int)s->pending);
		live_remove(c[i]);
		m.events[EV_SETTLED]++;
	}
}

/* Settles of sequences the table does not hold change nothing. */
static void step_settle_unknown(void)
{
	uint64_t seq;
	if (chance(50) || m.next < 2)
		seq = m.next + rnd(10);
	else
		seq = rnd(m.next);
	if (seq < m.cap && (m.seqs[seq].state == M_ACTIVE || m.seqs[seq].state == M_FINISHING))
		return;
	lease_settle(m.t, seq);
}

static void step_restart(void)
{
	uint64_t old_frontier = lease_frontier(m.t);
	lease_table_free(m.t);
	m.t = NULL;
	/* Start-up: every sequence up to the ceiling without a durable final
	 * entry becomes a restart gap, or is recovered when it was staged. */
	for (uint64_t seq = m.checked_to + 1; seq <= m.ceiling; seq++) {
		struct mseq *s = ms(seq);
		if (s->state == M_SETTLED || s->state == M_LOST)
			continue;
		bool recovered = (s->state == M_ACTIVE && s->staged) ||
		                 (s->state == M_FINISHING && s->pending == LEASE_RECOVERED);
		s->state = M_LOST;
		s->l = NULL;
		give_final(seq, recovered ? LEASE_RECOVERED : RESTART_GAP);
	}
	m.n_live = 0;
	m.next = m.ceiling + 1;
	open_table();
	uint64_t f = lease_frontier(m.t);
	MCHECK(f == m.ceiling && f >= old_frontier,
	       "frontier after restart %llu, ceiling %llu, before %llu", (unsigned long long)f,
	       (unsigned long long)m.ceiling, (unsigned long long)old_frontier);
	m.events[EV_RESTARTS]++;
}

static void step_clock(void)
{
	static const struct fixture_clock clock = {
	        .step_pct = 80, .step = 400, .jump_pct = 12, .jump = 20000};
	if (fixture_clock_step(&clock, &m.now, &m.rng))
		m.events[EV_BACKJUMPS]++;
}

static void step(void)
{
	uint64_t pick = rnd(1000);
	if (pick < 250)
		step_grant();
	else if (pick < 330)
		step_extend();
	else if (pick < 380)
		step_stage();
	else if (pick < 480)
		step_finish(LEASE_COMMITTED);
	else if (pick < 520)
		step_finish(LEASE_RELEASED);
	else if (pick < 680)
		step_clock();
	else if (pick < 780)
		step_collect();
	else if (pick < 810)
		step_detach();
	else if (pick < 950)
		step_settle();
	else if (pick < 965)
		step_settle_unknown();
	else if (pick < 968)
		step_restart();
	else if (pick < 971)
		m.now += 50000 + rnd(1000000); /* a big jump forwards */
	else
		check_get(rnd(m.next + 5), chance(50));
}

static void run(uint64_t seed_offset)
{
	m.rng = fixture_walk_start(&m.walk, "lease model", seed_offset);
	m.token_rng = m.walk.seed ^ 0x5eed;
	m.cfg = (struct lease_config){
	        .max_lifetime_ms = MAX_LIFETIME,
	        .grace_ms = m.walk.seed % 2 == 0 ? 0 : 50,
	        .max_duration_ms = MAX_DURATION,
	        .default_duration_ms = DEFAULT_DURATION,
	        .cascade_threshold = 6,
	        .max_leases = MAX_LEASES,
	        .max_leases_per_owner = MAX_PER_OWNER,
	        .max_count = MAX_COUNT,
	        .reserve_chunk = CHUNK,
	        .max_projections = 8,
	};
	m.now = 1000000000u;
	m.next = 1;
	m.ceiling = 0;
	model_reserve(64);
	open_table();
	check_all();
	for (m.walk.step = 1; m.walk.step <= STEPS; m.walk.step++) {
		step();
		check_all();
	}
	cr_log_info("seed %llu: again %lu refused %lu granted %lu overrun %lu extended %lu "
	            "expired %lu detached %lu settled %lu restarts %lu backjumps %lu",
	            (unsigned long long)m.walk.seed, m.events[EV_AGAIN], m.events[EV_REFUSED],
	            m.events[EV_GRANTED], m.events[EV_OVERRUN], m.events[EV_EXTENDED],
	            m.events[EV_EXPIRED], m.events[EV_DETACHED], m.events[EV_SETTLED],
	            m.events[EV_RESTARTS], m.events[EV_BACKJUMPS]);
	/* The walk must have exercised the interesting paths. */
	MCHECK(m.events[EV_AGAIN] > 0 && m.events[EV_GRANTED] > 0 && m.events[EV_OVERRUN] > 0 &&
	               m.events[EV_EXPIRED] > 0 && m.events[EV_DETACHED] > 0 &&
	               m.events[EV_RESTARTS] > 0 && m.events[EV_BACKJUMPS] > 0,
	       "thin walk: again %lu refused %lu granted %lu overrun %lu expired %lu detached "
	       "%lu restarts %lu backjumps %lu",
	       m.events[EV_AGAIN], m.events[EV_REFUSED], m.events[EV_GRANTED], m.events[EV_OVERRUN],
	       m.events[EV_EXPIRED], m.events[EV_DETACHED], m.events[EV_RESTARTS],
	       m.events[EV_BACKJUMPS]);
}

static void setup(void)
{
	memset(&m, 0, sizeof(m));
}

static void teardown(void)
{
	lease_table_free(m.t);
	free(m.seqs);
	memset(&m, 0, sizeof(m));
}

TestSuite(lease_model, .init = setup, .fini = teardown);

FIXTURE_WALK_TESTS(lease_model, run)
