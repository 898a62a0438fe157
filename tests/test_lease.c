/* Tests of the lease table (lease/lease.h) against its contract, with an
 * injected clock (every call takes now_ms) and a deterministic token source:
 * grants and their limits, the reservation ceiling, lookups and their error
 * codes, the grace period, extend and its lifetime cap, expiry collection in
 * sequence order, the settled frontier, owner detach, adaptive durations,
 * cascades and clock jumps in both directions. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "fixture.h"
#include "lease.h"

#define MINUTE_MS 60000u

static struct lease_config cfg;
static struct lease_table *t;
static uint64_t rand_state;
static char why[256];

static void setup(void)
{
	cfg = (struct lease_config){
	        .max_lifetime_ms = 30 * MINUTE_MS,
	        .grace_ms = 0,
	        .max_duration_ms = 10 * MINUTE_MS,
	        .default_duration_ms = 30000,
	        .cascade_threshold = 100,
	        .max_leases = 1000,
	        .max_leases_per_owner = 100,
	        .max_count = 16,
	        .reserve_chunk = 64,
	        .max_projections = 16,
	};
	t = NULL;
	rand_state = 1;
	why[0] = '\0';
}

static void teardown(void)
{
	lease_table_free(t);
	t = NULL;
}

TestSuite(lease, .init = setup, .fini = teardown);

/* Opens the suite's table with the current cfg. */
static void open_table(uint64_t next_seq, uint64_t ceiling)
{
	cr_assert_eq(lease_table_new(&t, &cfg, next_seq, ceiling, fixture_splitmix, &rand_state),
	             0);
	cr_assert_not_null(t);
}

static int grant_full(const char *projection, uint32_t count, uint64_t duration_ms, uint64_t now,
                      struct lease_owner *owner, enum lease_on_disconnect od, struct lease **out)
{
	struct lease_grant_args a = {
	        .projection = projection,
	        .duration_ms = duration_ms,
	        .count = count,
	        .operation_id = NULL,
	        .source_position = 0,
	        .on_disconnect = od,
	        .owner = owner,
	};
	why[0] = '\0';
	return lease_grant(t, now, &a, out, why, sizeof(why));
}

/* Grants count leases of projection "p" and asserts success. */
static void grant_n(uint32_t count, uint64_t duration_ms, uint64_t now, struct lease **out)
{
	int rc = grant_full("p", count, duration_ms, now, NULL, LEASE_KEEP, out);
	cr_assert_eq(rc, 0, "grant of %u at %llu: %s (%s)", count, (unsigned long long)now,
	             wb_error_name(rc), why);
}

static struct lease *grant_one(uint64_t duration_ms, uint64_t now)
{
	struct lease *l = NULL;
	grant_n(1, duration_ms, now, &l);
	return l;
}

static struct lease *grant_proj(const char *projection, uint64_t duration_ms, uint64_t now)
{
	struct lease *l = NULL;
	int rc = grant_full(projection, 1, duration_ms, now, NULL, LEASE_KEEP, &l);
	cr_assert_eq(rc, 0, "grant for %s: %s (%s)", projection, wb_error_name(rc), why);
	return l;
}

static struct lease *grant_owned(struct lease_owner *owner, enum lease_on_disconnect od,
                                 uint64_t now)
{
	struct lease *l = NULL;
	int rc = grant_full("p", 1, 1000, now, owner, od, &l);
	cr_assert_eq(rc, 0, "owned grant: %s (%s)", wb_error_name(rc), why);
	return l;
}

static struct lease_counts counts(void)
{
	struct lease_counts c;
	memset(&c, 0xA5, sizeof(c));
	lease_get_counts(t, &c);
	return c;
}

/* Finishes l with outcome and settles it at once; l is gone afterwards. */
static void finish_settle(struct lease *l, enum lease_outcome outcome, uint64_t now)
{
	uint64_t seq = l->seq;
	lease_finish(t, l, outcome, now);
	lease_settle(t, seq);
}

/* Collects every due lease at now, max at a time, into seqs; returns how
 * many. Each call's batch must continue the ascending order. */
static size_t collect_all(uint64_t now, size_t max, uint64_t *seqs, size_t cap)
{
	struct lease *out[64];
	size_t total = 0;
	cr_assert_leq(max, 64);
	for (;;) {
		size_t n = lease_collect_expired(t, now, out, max);
		cr_assert_leq(n, max);
		for (size_t i = 0; i < n; i++) {
			cr_assert_lt(total, cap);
			cr_assert_eq(out[i]->state, LEASE_FINISHING,
			             "collected seq %llu not FINISHING",
			             (unsigned long long)out[i]->seq);
			seqs[total++] = out[i]->seq;
		}
		if (n < max)
			return total;
	}
}

static void assert_seqs(const uint64_t *got, size_t n, const uint64_t *want, size_t wn)
{
	cr_assert_eq(n, wn, "got %zu sequences, want %zu", n, wn);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(got[i], want[i], "position %zu: got seq %llu, want %llu", i,
		             (unsigned long long)got[i], (unsigned long long)want[i]);
}

/* ---- creation and the reservation ceiling ---- */

Test(lease, new_refuses_ceiling_below_handed_out)
{
	struct lease_table *sentinel = (struct lease_table *)&cfg;
	struct lease_table *out = sentinel;
	cr_assert_eq(lease_table_new(&out, &cfg, 10, 8, fixture_splitmix, &rand_state), WB_E_INVAL);
	cr_assert_eq(out, sentinel, "*out written on failure");
	/* next_seq - 1 == ceiling is the tightest valid table. */
	open_table(10, 9);
	cr_assert_eq(lease_next_seq(t), 10);
	cr_assert_eq(lease_ceiling(t), 9);
}

Test(lease, free_null_is_allowed)
{
	lease_table_free(NULL);
}

Test(lease, grant_past_ceiling_needs_reservation)
{
	cfg.reserve_chunk = 16;
	open_table(1, 2);
	struct lease *ls[4];
	cr_assert_eq(lease_reservation_needed(t, 2), 0);
	cr_assert_eq(lease_reservation_needed(t, 3), 1 + 3 - 1 + 16);

	cr_assert_eq(grant_full("p", 3, 1000, 0, NULL, LEASE_KEEP, ls), WB_E_AGAIN);
	cr_assert_neq(why[0], '\0', "no reason given for E_AGAIN");
	cr_assert_eq(lease_next_seq(t), 1, "a refused grant moved next_seq");
	cr_assert_eq(counts().active, 0);
	cr_assert_eq(lease_frontier(t), 0);

	lease_set_ceiling(t, lease_reservation_needed(t, 3));
	cr_assert_eq(lease_ceiling(t), 19);
	cr_assert_eq(lease_reservation_needed(t, 3), 0);
	grant_n(3, 1000, 0, ls);
	cr_assert_eq(ls[0]->seq, 1);
	cr_assert_eq(ls[2]->seq, 3);
	cr_assert_eq(lease_next_seq(t), 4);

	/* A lower ceiling is ignored. */
	lease_set_ceiling(t, 5);
	cr_assert_eq(lease_ceiling(t), 19);
	/* The ceiling is inclusive: 16 more fit exactly, 17 do not. */
	cr_assert_eq(lease_reservation_needed(t, 16), 0);
	cr_assert_eq(lease_reservation_needed(t, 17), 4 + 17 - 1 + 16);
}

Test(lease, grant_up_to_ceiling_exactly)
{
	open_table(1, 3);
	struct lease *ls[3];
	grant_n(3, 1000, 0, ls);
	cr_assert_eq(ls[2]->seq, 3);
	cr_assert_eq(lease_reservation_needed(t, 1), 4 + 1 - 1 + cfg.reserve_chunk);
	cr_assert_eq(grant_full("p", 1, 1000, 0, NULL, LEASE_KEEP, ls), WB_E_AGAIN);
}

/* ---- grant ---- */

Test(lease, grant_gives_consecutive_sequences_from_next_seq)
{
	open_table(10, 100);
	struct lease_owner owner = {0};
	struct lease *ls[3] = {NULL};
	struct lease_grant_args a = {
	        .projection = "orders",
	        .duration_ms = 500,
	        .count = 3,
	        .operation_id = "op-1",
	        .source_position = 77,
	        .on_disconnect = LEASE_RELEASE,
	        .owner = &owner,
	};
	cr_assert_eq(lease_grant(t, 1000, &a, ls, why, sizeof(why)), 0, "%s", why);
	for (size_t i = 0; i < 3; i++) {
		struct lease *l = ls[i];
		cr_assert_not_null(l);
		cr_assert_eq(l->seq, 10 + i);
		cr_assert_eq(l->granted_ms, 1000);
		cr_assert_eq(l->expires_ms, 1500);
		cr_assert_eq(l->source_position, 77);
		cr_assert_str_eq(l->operation_id, "op-1");
		cr_assert_eq(l->on_disconnect, LEASE_RELEASE);
		cr_assert_eq(l->state, LEASE_ACTIVE);
		cr_assert_not(l->staged);
		for (size_t j = 0; j < i; j++)
			cr_assert_neq(l->token, ls[j]->token, "leases %zu and %zu share a token", i,
			              j);
		cr_assert_eq(lease_lookup(t, l->seq), l);
		struct lease *got = NULL;
		cr_assert_eq(lease_get(t, l->seq, l->token, 1000, &got), 0);
		cr_assert_eq(got, l);
	}
	cr_assert_eq(lease_next_seq(t), 13);
	cr_assert_eq(owner.count, 3);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 3);
	cr_assert_eq(c.finishing, 0);
	cr_assert_eq(lease_frontier(t), 9);

	struct lease *next = grant_one(1000, 1000);
	cr_assert_eq(next->seq, 13);
	cr_assert_str_eq(next->operation_id, "", "a NULL operation id should read as empty");
}

Test(lease, grant_caps_asked_duration)
{
	open_table(1, 100);
	struct lease *at_cap = grant_one(cfg.max_duration_ms, 1000);
	cr_assert_eq(at_cap->expires_ms, 1000 + cfg.max_duration_ms);
	struct lease *over = grant_one(cfg.max_duration_ms + 1, 1000);
	cr_assert_eq(over->expires_ms, 1000 + cfg.max_duration_ms);
	struct lease *huge = grant_one(UINT64_MAX / 4, 1000);
	cr_assert_eq(huge->expires_ms, 1000 + cfg.max_duration_ms);
}

Test(lease, grant_adaptive_without_history_is_default)
{
	open_table(1, 100);
	cr_assert_eq(lease_adaptive_duration(t, "p"), cfg.default_duration_ms);
	struct lease *l = grant_one(0, 5000);
	cr_assert_eq(l->expires_ms, 5000 + cfg.default_duration_ms);
}

Test(lease, adaptive_is_twice_the_mean_commit_time)
{
	open_table(1, 100);
	struct lease *a = grant_proj("p", 50000, 1000);
	lease_finish(t, a, LEASE_COMMITTED, 1200); /* 200 ms */
	cr_assert_eq(lease_adaptive_duration(t, "p"), 400);
	struct lease *b = grant_proj("p", 50000, 2000);
	lease_finish(t, b, LEASE_COMMITTED, 2400); /* 400 ms: mean 300 */
	cr_assert_eq(lease_adaptive_duration(t, "p"), 600);

	struct lease *c = grant_proj("p", 0, 3000);
	cr_assert_eq(c->expires_ms, 3600);
	/* Another projection has its own (empty) history. */
	cr_assert_eq(lease_adaptive_duration(t, "q"), cfg.default_duration_ms);
	struct lease *q = grant_proj("q", 0, 3000);
	cr_assert_eq(q->expires_ms, 3000 + cfg.default_duration_ms);
}

Test(lease, release_and_expiry_do_not_feed_adaptive)
{
	open_table(1, 100);
	struct lease *a = grant_proj("p", 50000, 1000);
	lease_finish(t, a, LEASE_COMMITTED, 1100);
	cr_assert_eq(lease_adaptive_duration(t, "p"), 200);
	struct lease *r = grant_proj("p", 50000, 1000);
	lease_finish(t, r, LEASE_RELEASED, 41000);
	cr_assert_eq(lease_adaptive_duration(t, "p"), 200, "a release fed the mean");
	(void)grant_proj("p", 500, 1000);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(1500, 4, seqs, 4), 1);
	cr_assert_eq(lease_adaptive_duration(t, "p"), 200, "an expiry fed the mean");
}

Test(lease, adaptive_has_a_floor)
{
	open_table(1, 100);
	struct lease *a = grant_proj("p", 50000, 1000);
	lease_finish(t, a, LEASE_COMMITTED, 1010); /* 2 x 10 ms is below the floor */
	cr_assert_eq(lease_adaptive_duration(t, "p"), LEASE_MIN_ADAPTIVE_MS);
	struct lease *b = grant_proj("p", 0, 2000);
	cr_assert_eq(b->expires_ms, 2000 + LEASE_MIN_ADAPTIVE_MS);
}

Test(lease, adaptive_mean_is_of_the_last_commits)
{
	open_table(1, 1000);
	for (unsigned i = 0; i < LEASE_HISTORY; i++) {
		struct lease *l = grant_proj("p", 50000, 0);
		uint64_t seq = l->seq;
		lease_finish(t, l, LEASE_COMMITTED, 1000);
		lease_settle(t, seq);
	}
	cr_assert_eq(lease_adaptive_duration(t, "p"), 2000);
	/* Half the window now holds 3000 ms commits: mean 2000. */
	for (unsigned i = 0; i < LEASE_HISTORY / 2; i++) {
		struct lease *l = grant_proj("p", 50000, 0);
		uint64_t seq = l->seq;
		lease_finish(t, l, LEASE_COMMITTED, 3000);
		lease_settle(t, seq);
	}
	cr_assert_eq(lease_adaptive_duration(t, "p"), 4000);
	for (unsigned i = 0; i < LEASE_HISTORY / 2; i++) {
		struct lease *l = grant_proj("p", 50000, 0);
		uint64_t seq = l->seq;
		lease_finish(t, l, LEASE_COMMITTED, 3000);
		lease_settle(t, seq);
	}
	cr_assert_eq(lease_adaptive_duration(t, "p"), 6000, "the oldest commits still count");
}

Test(lease, adaptive_default_is_capped)
{
	cfg.default_duration_ms = cfg.max_duration_ms + 5;
	open_table(1, 100);
	cr_assert_eq(lease_adaptive_duration(t, "p"), cfg.max_duration_ms);
	struct lease *l = grant_one(0, 100);
	cr_assert_eq(l->expires_ms, 100 + cfg.max_duration_ms);
}

Test(lease, adaptive_is_capped)
{
	open_table(1, 100);
	struct lease *a = grant_proj("p", 50000, 0);
	lease_finish(t, a, LEASE_COMMITTED, 8 * MINUTE_MS);
	cr_assert_eq(lease_adaptive_duration(t, "p"), cfg.max_duration_ms);
	struct lease *b = grant_proj("p", 0, 1000);
	cr_assert_eq(b->expires_ms, 1000 + cfg.max_duration_ms);
}

Test(lease, extend_zero_uses_adaptive)
{
	open_table(1, 100);
	struct lease *a = grant_proj("p", 50000, 0);
	lease_finish(t, a, LEASE_COMMITTED, 250);
	struct lease *b = grant_proj("p", 100, 1000);
	cr_assert_eq(lease_extend(t, b, 0, 1050, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(b->expires_ms, 1050 + 500);
}

Test(lease, grant_bad_requests)
{
	cfg.max_count = 4;
	open_table(1, 100);
	struct lease *ls[8];
	char long_name[LEASE_NAME_MAX + 2];
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0'; /* 256 bytes */

	cr_assert_eq(grant_full("p", 0, 1000, 0, NULL, LEASE_KEEP, ls), WB_BAD_REQUEST);
	cr_assert_neq(why[0], '\0');
	cr_assert_eq(grant_full("p", 5, 1000, 0, NULL, LEASE_KEEP, ls), WB_BAD_REQUEST);
	cr_assert_neq(why[0], '\0');
	cr_assert_eq(grant_full("", 1, 1000, 0, NULL, LEASE_KEEP, ls), WB_BAD_REQUEST);
	cr_assert_neq(why[0], '\0');
	cr_assert_eq(grant_full(long_name, 1, 1000, 0, NULL, LEASE_KEEP, ls), WB_BAD_REQUEST);
	cr_assert_neq(why[0], '\0');

	struct lease_grant_args a = {.projection = "p", .duration_ms = 1000, .count = 1};
	a.operation_id = long_name;
	why[0] = '\0';
	cr_assert_eq(lease_grant(t, 0, &a, ls, why, sizeof(why)), WB_BAD_REQUEST);
	cr_assert_neq(why[0], '\0');

	cr_assert_eq(lease_next_seq(t), 1, "a refused grant moved next_seq");
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 0);
	cr_assert_eq(c.finishing, 0);

	/* The limits themselves are allowed. */
	long_name[LEASE_NAME_MAX] = '\0'; /* 255 bytes */
	grant_n(4, 1000, 0, ls);
	cr_assert_eq(ls[0]->seq, 1);
	cr_assert_eq(grant_full(long_name, 1, 1000, 0, NULL, LEASE_KEEP, ls), 0, "%s", why);
	a.operation_id = long_name;
	cr_assert_eq(lease_grant(t, 0, &a, ls, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(ls[0]->operation_id, long_name);
	a.operation_id = "";
	cr_assert_eq(lease_grant(t, 0, &a, ls, why, sizeof(why)), 0, "%s", why);
}

Test(lease, grant_max_leases_counts_finishing)
{
	cfg.max_leases = 4;
	open_table(1, 100);
	struct lease *ls[4];
	grant_n(3, 1000, 0, ls);
	cr_assert_eq(grant_full("p", 2, 1000, 0, NULL, LEASE_KEEP, ls), WB_RESOURCE_EXHAUSTED);
	cr_assert_neq(why[0], '\0');
	cr_assert_eq(lease_next_seq(t), 4, "a refused grant moved next_seq");
	cr_assert_eq(counts().active, 3, "a refused grant granted some");
	struct lease *fourth = grant_one(1000, 0);
	cr_assert_eq(fourth->seq, 4);

	/* A FINISHING lease still occupies the table until it settles. */
	lease_finish(t, fourth, LEASE_COMMITTED, 10);
	cr_assert_eq(grant_full("p", 1, 1000, 0, NULL, LEASE_KEEP, ls), WB_RESOURCE_EXHAUSTED);
	lease_settle(t, 4);
	struct lease *fifth = grant_one(1000, 0);
	cr_assert_eq(fifth->seq, 5);
}

Test(lease, grant_max_leases_per_owner)
{
	cfg.max_leases_per_owner = 2;
	open_table(1, 100);
	struct lease_owner a = {0}, b = {0};
	struct lease *ls[3];
	cr_assert_eq(grant_full("p", 2, 1000, 0, &a, LEASE_KEEP, ls), 0, "%s", why);
	cr_assert_eq(a.count, 2);
	cr_assert_eq(grant_full("p", 1, 1000, 0, &a, LEASE_KEEP, ls), WB_RESOURCE_EXHAUSTED);
	cr_assert_neq(why[0], '\0');
	cr_assert_eq(a.count, 2);
	cr_assert_eq(lease_next_seq(t), 3);
	cr_assert_eq(grant_full("p", 3, 1000, 0, &b, LEASE_KEEP, ls), WB_RESOURCE_EXHAUSTED,
	             "three for an owner of two");
	cr_assert_eq(b.count, 0);
	cr_assert_eq(counts().active, 2);

	/* Other owners and ownerless grants are not limited by a's leases. */
	cr_assert_eq(grant_full("p", 2, 1000, 0, &b, LEASE_KEEP, ls), 0, "%s", why);
	cr_assert_eq(grant_full("p", 3, 1000, 0, NULL, LEASE_KEEP, ls), 0, "%s", why);
	cr_assert_eq(b.count, 2);
}

/* An account counts its identity's ACTIVE leases over all its owners,
 * and past an owner's detach (LEASE_KEEP), until each finishes. */
Test(lease, grant_account_quota_spans_owners_and_detach)
{
	open_table(1, 1000);
	struct lease_account acct = {.max = 3};
	struct lease_owner a = {0}, b = {0};
	struct lease *ls[4];
	struct lease_grant_args args = {
	        .projection = "p", .duration_ms = 1000, .count = 2, .owner = &a, .account = &acct};
	cr_assert_eq(lease_grant(t, 0, &args, ls, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(acct.active, 2);
	/* Another connection of the same identity: one more fits, two do not. */
	args.owner = &b;
	cr_assert_eq(lease_grant(t, 0, &args, ls + 2, why, sizeof(why)), WB_RESOURCE_EXHAUSTED);
	cr_assert_not_null(strstr(why, "--max-leases-per-identity"), "%s", why);
	cr_assert_eq(acct.active, 2);
	args.count = 1;
	cr_assert_eq(lease_grant(t, 0, &args, ls + 2, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(acct.active, 3);
	/* a's connection closes: its LEASE_KEEP leases still count. */
	struct lease *out[4];
	cr_assert_eq(lease_owner_detach(t, &a, out, 4), 0);
	cr_assert_eq(acct.active, 3);
	cr_assert_eq(lease_grant(t, 0, &args, ls + 3, why, sizeof(why)), WB_RESOURCE_EXHAUSTED);
	/* Finishing frees room: a commit, then an expiry. */
	finish_settle(ls[0], LEASE_COMMITTED, 10);
	cr_assert_eq(acct.active, 2);
	cr_assert_eq(lease_collect_expired(t, 5000, out, 4), 2);
	cr_assert_eq(acct.active, 0);
	/* Without an account (or max 0) nothing is counted or refused. */
	args.account = NULL;
	args.count = 4;
	cr_assert_eq(lease_grant(t, 6000, &args, out, why, sizeof(why)), 0, "%s", why);
	struct lease_account open_ended = {0};
	args.account = &open_ended;
	cr_assert_eq(lease_grant(t, 6000, &args, out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(open_ended.active, 4);
}

Test(lease, grant_max_projections)
{
	cfg.max_projections = 2;
	open_table(1, 100);
	(void)grant_proj("a", 1000, 0);
	(void)grant_proj("b", 1000, 0);
	(void)grant_proj("a", 1000, 0);
	struct lease *l;
	cr_assert_eq(grant_full("c", 1, 1000, 0, NULL, LEASE_KEEP, &l), WB_RESOURCE_EXHAUSTED);
	cr_assert_neq(why[0], '\0');
	cr_assert_eq(lease_next_seq(t), 4);
}

/* ---- lease_get and lease_lookup ---- */

Test(lease, get_checks_the_token)
{
	open_table(1, 100);
	struct lease *l = grant_one(1000, 0);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, l->seq, l->token, 10, &got), 0);
	cr_assert_eq(got, l);
	cr_assert_eq(lease_get(t, l->seq, l->token ^ 1, 10, &got), WB_LEASE_TOKEN_MISMATCH);
	cr_assert_eq(lease_get(t, l->seq, l->token + 12345, 10, &got), WB_LEASE_TOKEN_MISMATCH);
}

Test(lease, get_unknown_sequence)
{
	open_table(5, 100);
	struct lease *l = grant_one(1000, 0);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 0, l->token, 0, &got), WB_LEASE_NOT_FOUND);
	cr_assert_eq(lease_get(t, 4, l->token, 0, &got), WB_LEASE_NOT_FOUND, "below next_seq");
	cr_assert_eq(lease_get(t, 6, l->token, 0, &got), WB_LEASE_NOT_FOUND, "next_seq");
	cr_assert_eq(lease_get(t, 1000, l->token, 0, &got), WB_LEASE_NOT_FOUND);
	cr_assert_eq(lease_get(t, UINT64_MAX, l->token, 0, &got), WB_LEASE_NOT_FOUND);
	cr_assert_null(lease_lookup(t, 4));
	cr_assert_null(lease_lookup(t, 6));
}

Test(lease, get_expired_when_due_before_collection)
{
	open_table(1, 100);
	struct lease *l = grant_one(1000, 0);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, l->token, 999, &got), 0);
	cr_assert_eq(lease_get(t, 1, l->token, 1000, &got), WB_LEASE_EXPIRED);
	cr_assert_eq(lease_get(t, 1, l->token, 5000, &got), WB_LEASE_EXPIRED);
	/* Still ACTIVE until collected. */
	cr_assert_eq(counts().active, 1);
}

Test(lease, get_after_commit_and_release_is_not_found)
{
	open_table(1, 100);
	struct lease *ls[2];
	grant_n(2, 1000, 0, ls);
	uint64_t tok0 = ls[0]->token, tok1 = ls[1]->token;
	lease_finish(t, ls[0], LEASE_COMMITTED, 10);
	lease_finish(t, ls[1], LEASE_RELEASED, 10);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, tok0, 20, &got), WB_LEASE_NOT_FOUND);
	cr_assert_eq(lease_get(t, 2, tok1, 20, &got), WB_LEASE_NOT_FOUND);
	/* Still FINISHING, and still answers NOT_FOUND once past its expiry. */
	cr_assert_eq(lease_get(t, 1, tok0, 5000, &got), WB_LEASE_NOT_FOUND);
	cr_assert_eq(lease_lookup(t, 1), ls[0]);
	cr_assert_eq(ls[0]->state, LEASE_FINISHING);
	lease_settle(t, 1);
	lease_settle(t, 2);
	cr_assert_eq(lease_get(t, 1, tok0, 20, &got), WB_LEASE_NOT_FOUND);
	cr_assert_eq(lease_get(t, 2, tok1, 20, &got), WB_LEASE_NOT_FOUND);
	cr_assert_null(lease_lookup(t, 1));
	cr_assert_null(lease_lookup(t, 2));
}

Test(lease, get_finishing_after_expiry_is_expired)
{
	open_table(1, 100);
	struct lease *l = grant_one(1000, 0);
	uint64_t tok = l->token;
	uint64_t seqs[2];
	cr_assert_eq(collect_all(1000, 2, seqs, 2), 1);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, tok, 1000, &got), WB_LEASE_EXPIRED);
	/* Also at a clock that went back to before the expiry. */
	cr_assert_eq(lease_get(t, 1, tok, 10, &got), WB_LEASE_EXPIRED);
	cr_assert_eq(lease_lookup(t, 1), l);
	lease_settle(t, 1);
	cr_assert_eq(lease_get(t, 1, tok, 1000, &got), WB_LEASE_NOT_FOUND);
}

Test(lease, grace_keeps_a_lease_usable)
{
	cfg.grace_ms = 100;
	open_table(1, 100);
	struct lease *l = grant_one(1000, 0);
	cr_assert_eq(l->expires_ms, 1000, "expires_ms is without the grace");
	cr_assert_eq(lease_next_expiry(t), 1100);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, l->token, 1099, &got), 0);
	cr_assert_eq(got, l);
	uint64_t seqs[2];
	cr_assert_eq(collect_all(1099, 2, seqs, 2), 0);
	cr_assert_eq(lease_get(t, 1, l->token, 1100, &got), WB_LEASE_EXPIRED);
	cr_assert_eq(collect_all(1100, 2, seqs, 2), 1);
	cr_assert_eq(seqs[0], 1);
	cr_assert_eq(lease_next_expiry(t), UINT64_MAX);
}

Test(lease, lookup_finds_any_state)
{
	open_table(1, 100);
	struct lease *ls[3];
	grant_n(3, 1000, 0, ls);
	lease_finish(t, ls[1], LEASE_COMMITTED, 5);
	cr_assert_eq(lease_lookup(t, 1), ls[0]);
	cr_assert_eq(lease_lookup(t, 2), ls[1]);
	cr_assert_eq(lease_lookup(t, 2)->state, LEASE_FINISHING);
	lease_settle(t, 2);
	cr_assert_null(lease_lookup(t, 2));
	cr_assert_eq(lease_lookup(t, 3), ls[2]);
}

/* ---- extend ---- */

Test(lease, extend_moves_expiry_both_ways)
{
	open_table(1, 100);
	struct lease *ls[2];
	grant_n(2, 1000, 0, ls);
	cr_assert_eq(lease_extend(t, ls[0], 5000, 500, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(ls[0]->expires_ms, 5500);
	cr_assert_eq(ls[0]->granted_ms, 0, "extend moved granted_ms");
	cr_assert_eq(lease_next_expiry(t), 1000);
	cr_assert_eq(lease_extend(t, ls[1], 5000, 600, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(lease_next_expiry(t), 5500);
	/* A shorter duration brings the expiry forward. */
	cr_assert_eq(lease_extend(t, ls[1], 100, 700, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(ls[1]->expires_ms, 800);
	cr_assert_eq(lease_next_expiry(t), 800);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, ls[0]->token, 5499, &got), 0);
	cr_assert_eq(lease_get(t, 1, ls[0]->token, 5500, &got), WB_LEASE_EXPIRED);
}

Test(lease, extend_caps_the_duration)
{
	open_table(1, 100);
	struct lease *l = grant_one(1000, 0);
	cr_assert_eq(lease_extend(t, l, cfg.max_duration_ms + 1, 10, why, sizeof(why)), 0, "%s",
	             why);
	cr_assert_eq(l->expires_ms, 10 + cfg.max_duration_ms);
}

Test(lease, extend_refused_past_max_lifetime)
{
	cfg.max_lifetime_ms = 1000;
	open_table(1, 100);
	struct lease *l = grant_one(300, 1000);
	cr_assert_eq(lease_extend(t, l, 400, 1200, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(l->expires_ms, 1600);
	why[0] = '\0';
	cr_assert_eq(lease_extend(t, l, 900, 1500, why, sizeof(why)), WB_RESOURCE_EXHAUSTED);
	cr_assert_neq(why[0], '\0');
	cr_assert_eq(l->expires_ms, 1600, "a refused extend changed the lease");
	cr_assert_eq(l->state, LEASE_ACTIVE);
	cr_assert_eq(lease_next_expiry(t), 1600);
	struct lease_counts c = counts();
	cr_assert_eq(c.overrun, 1);
	cr_assert_eq(c.active, 1);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, l->token, 1599, &got), 0, "the lease is still usable");
	cr_assert_eq(lease_extend(t, l, 10000, 1500, why, sizeof(why)), WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(counts().overrun, 2);
}

Test(lease, extend_to_exactly_max_lifetime_is_allowed)
{
	cfg.max_lifetime_ms = 1000;
	open_table(1, 100);
	struct lease *l = grant_one(300, 1000);
	/* granted 1000 + lifetime 1000 = 2000: reaching it is not passing it. */
	cr_assert_eq(lease_extend(t, l, 500, 1500, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(l->expires_ms, 2000);
	cr_assert_eq(lease_extend(t, l, 501, 1500, why, sizeof(why)), WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(l->expires_ms, 2000);
	cr_assert_eq(counts().overrun, 1);
}

/* ---- finish, stage and outcomes ---- */

Test(lease, finish_leaves_the_expiry_order)
{
	open_table(1, 100);
	struct lease *ls[3];
	grant_n(1, 100, 0, &ls[0]);
	grant_n(1, 200, 0, &ls[1]);
	grant_n(1, 300, 0, &ls[2]);
	cr_assert_eq(lease_next_expiry(t), 100);
	lease_finish(t, ls[0], LEASE_COMMITTED, 50);
	cr_assert_eq(ls[0]->state, LEASE_FINISHING);
	cr_assert_eq(ls[0]->outcome, LEASE_COMMITTED);
	cr_assert_eq(lease_next_expiry(t), 200);
	lease_finish(t, ls[2], LEASE_RELEASED, 50);
	cr_assert_eq(ls[2]->outcome, LEASE_RELEASED);
	cr_assert_eq(lease_next_expiry(t), 200);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 1);
	cr_assert_eq(c.finishing, 2);
	cr_assert_eq(c.outcomes[LEASE_COMMITTED], 1);
	cr_assert_eq(c.outcomes[LEASE_RELEASED], 1);
	cr_assert_eq(c.outcomes[LEASE_EXPIRED], 0);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(10000, 4, seqs, 4), 1);
	cr_assert_eq(seqs[0], 2);
	cr_assert_eq(lease_next_expiry(t), UINT64_MAX);
	/* Settling does not change the totals. */
	lease_settle(t, 1);
	lease_settle(t, 2);
	lease_settle(t, 3);
	c = counts();
	cr_assert_eq(c.finishing, 0);
	cr_assert_eq(c.outcomes[LEASE_COMMITTED], 1);
	cr_assert_eq(c.outcomes[LEASE_RELEASED], 1);
	cr_assert_eq(c.outcomes[LEASE_EXPIRED], 1);
}

Test(lease, stage_marks_the_lease)
{
	open_table(1, 100);
	struct lease *l = grant_one(1000, 0);
	lease_stage(t, l);
	cr_assert(l->staged);
	cr_assert_eq(l->state, LEASE_ACTIVE);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, l->token, 10, &got), 0, "a staged lease is still usable");
	lease_finish(t, l, LEASE_COMMITTED, 20);
	cr_assert_eq(counts().outcomes[LEASE_COMMITTED], 1);
	cr_assert_eq(counts().outcomes[LEASE_RECOVERED], 0);
}

/* ---- expiry collection ---- */

Test(lease, collect_in_sequence_order_not_expiry_order)
{
	open_table(1, 100);
	const uint64_t durations[5] = {300, 500, 200, 400, 100}; /* expiry order 5,3,1,4,2 */
	for (size_t i = 0; i < 5; i++)
		(void)grant_one(durations[i], 0);
	cr_assert_eq(lease_next_expiry(t), 100);
	uint64_t seqs[8];
	const uint64_t want[5] = {1, 2, 3, 4, 5};
	assert_seqs(seqs, collect_all(1000, 8, seqs, 8), want, 5);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 0);
	cr_assert_eq(c.finishing, 5);
	cr_assert_eq(c.outcomes[LEASE_EXPIRED], 5);
	cr_assert_eq(lease_next_expiry(t), UINT64_MAX);
	cr_assert_eq(collect_all(1000, 8, seqs, 8), 0, "collected twice");
}

Test(lease, collect_only_due_after_extend)
{
	open_table(1, 100);
	struct lease *ls[4];
	grant_n(4, 1000, 0, ls);
	/* 1 now expires last, 4 first. */
	cr_assert_eq(lease_extend(t, ls[0], 3000, 0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(lease_extend(t, ls[3], 500, 0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(lease_next_expiry(t), 500);
	uint64_t seqs[8];
	const uint64_t want_a[1] = {4};
	assert_seqs(seqs, collect_all(999, 8, seqs, 8), want_a, 1);
	cr_assert_eq(lease_next_expiry(t), 1000);
	const uint64_t want_b[2] = {2, 3};
	assert_seqs(seqs, collect_all(1000, 8, seqs, 8), want_b, 2);
	cr_assert_eq(lease_next_expiry(t), 3000);
	cr_assert_eq(collect_all(2999, 8, seqs, 8), 0);
	const uint64_t want_c[1] = {1};
	assert_seqs(seqs, collect_all(3000, 8, seqs, 8), want_c, 1);
}

Test(lease, collect_marks_staged_as_recovered)
{
	open_table(1, 100);
	struct lease *ls[4];
	grant_n(4, 1000, 0, ls);
	lease_stage(t, ls[1]);
	lease_stage(t, ls[3]);
	struct lease *out[4];
	cr_assert_eq(lease_collect_expired(t, 1000, out, 4), 4);
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(out[i], ls[i]);
		cr_assert_eq(out[i]->state, LEASE_FINISHING);
		cr_assert_eq(out[i]->outcome, i % 2 == 1 ? LEASE_RECOVERED : LEASE_EXPIRED,
		             "lease %zu", i);
	}
	struct lease_counts c = counts();
	cr_assert_eq(c.outcomes[LEASE_EXPIRED], 2);
	cr_assert_eq(c.outcomes[LEASE_RECOVERED], 2);
	cr_assert_eq(c.outcomes[LEASE_COMMITTED], 0);
	cr_assert_eq(c.active, 0);
	cr_assert_eq(c.finishing, 4);
	cr_assert_eq(lease_collect_expired(t, 1000, out, 4), 0, "collected twice");
}

Test(lease, collect_respects_max_and_keeps_the_rest)
{
	open_table(1, 100);
	/* Expiry order is the reverse of sequence order. */
	for (uint64_t i = 0; i < 5; i++)
		(void)grant_one(500 - 50 * i, 0);
	(void)grant_one(5000, 0); /* 6 is not due */
	struct lease *out[2];
	uint64_t seen[8];
	size_t n_seen = 0;
	size_t n;
	while ((n = lease_collect_expired(t, 1000, out, 2)) > 0) {
		cr_assert_leq(n, 2);
		for (size_t i = 0; i < n; i++) {
			cr_assert_lt(n_seen, 8);
			seen[n_seen++] = out[i]->seq;
		}
		if (n < 2)
			break;
	}
	const uint64_t want[5] = {1, 2, 3, 4, 5};
	assert_seqs(seen, n_seen, want, 5);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 1);
	cr_assert_eq(c.finishing, 5);
	cr_assert_eq(c.outcomes[LEASE_EXPIRED], 5);
	cr_assert_eq(lease_next_expiry(t), 5000);
}

Test(lease, collect_first_batch_is_the_lowest_sequences)
{
	open_table(1, 100);
	for (uint64_t i = 0; i < 4; i++)
		(void)grant_one(400 - 100 * i, 0); /* 4 expires first */
	struct lease *out[2];
	cr_assert_eq(lease_collect_expired(t, 1000, out, 2), 2);
	cr_assert_eq(out[0]->seq, 1);
	cr_assert_eq(out[1]->seq, 2);
	/* The contract leaves open whether 3 and 4 are FINISHING yet; only that
	 * the next call returns them. */
	cr_assert_eq(lease_collect_expired(t, 1000, out, 2), 2);
	cr_assert_eq(out[0]->seq, 3);
	cr_assert_eq(out[1]->seq, 4);
	cr_assert_eq(lease_collect_expired(t, 1000, out, 2), 0);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 0);
	cr_assert_eq(c.finishing, 4);
	cr_assert_eq(c.outcomes[LEASE_EXPIRED], 4);
}

Test(lease, next_expiry_tracks_the_minimum)
{
	open_table(1, 100);
	cr_assert_eq(lease_next_expiry(t), UINT64_MAX);
	struct lease *a = grant_one(700, 0);
	cr_assert_eq(lease_next_expiry(t), 700);
	struct lease *b = grant_one(300, 0);
	cr_assert_eq(lease_next_expiry(t), 300);
	struct lease *c = grant_one(500, 0);
	cr_assert_eq(lease_next_expiry(t), 300);
	lease_finish(t, b, LEASE_COMMITTED, 10);
	cr_assert_eq(lease_next_expiry(t), 500);
	cr_assert_eq(lease_extend(t, a, 100, 10, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(lease_next_expiry(t), 110);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(110, 4, seqs, 4), 1);
	cr_assert_eq(lease_next_expiry(t), 500);
	lease_finish(t, c, LEASE_RELEASED, 20);
	cr_assert_eq(lease_next_expiry(t), UINT64_MAX);
}

/* ---- the settled frontier ---- */

Test(lease, frontier_waits_for_the_lowest_sequence)
{
	open_table(1, 100);
	struct lease *ls[5];
	grant_n(5, 1000, 0, ls);
	cr_assert_eq(lease_frontier(t), 0);
	finish_settle(ls[1], LEASE_COMMITTED, 10);
	finish_settle(ls[2], LEASE_RELEASED, 10);
	cr_assert_eq(lease_frontier(t), 0, "settled above an unsettled 1");
	lease_finish(t, ls[0], LEASE_COMMITTED, 10);
	cr_assert_eq(lease_frontier(t), 0, "a FINISHING lease moved the frontier");
	lease_settle(t, 1);
	cr_assert_eq(lease_frontier(t), 3);
	lease_settle(t, 99); /* never held */
	cr_assert_eq(lease_frontier(t), 3);
	finish_settle(ls[4], LEASE_COMMITTED, 10);
	cr_assert_eq(lease_frontier(t), 3);
	finish_settle(ls[3], LEASE_COMMITTED, 10);
	cr_assert_eq(lease_frontier(t), 5);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 0);
	cr_assert_eq(c.finishing, 0);
}

Test(lease, frontier_ignores_expiry_order)
{
	open_table(1, 100);
	struct lease *ls[3];
	grant_n(1, 5000, 0, &ls[0]); /* the lowest sequence expires last */
	grant_n(1, 100, 0, &ls[1]);
	grant_n(1, 200, 0, &ls[2]);
	finish_settle(ls[1], LEASE_COMMITTED, 10);
	cr_assert_eq(lease_frontier(t), 0);
	cr_assert_eq(lease_extend(t, ls[0], 50, 20, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(lease_frontier(t), 0);
	finish_settle(ls[0], LEASE_COMMITTED, 30);
	cr_assert_eq(lease_frontier(t), 2);
	finish_settle(ls[2], LEASE_RELEASED, 30);
	cr_assert_eq(lease_frontier(t), 3);
}

Test(lease, frontier_of_an_empty_table)
{
	open_table(42, 50);
	cr_assert_eq(lease_frontier(t), 41);
	struct lease *l = grant_one(1000, 0);
	cr_assert_eq(lease_frontier(t), 41);
	finish_settle(l, LEASE_COMMITTED, 1);
	cr_assert_eq(lease_frontier(t), 42);
}

Test(lease, frontier_after_expiry_settles)
{
	open_table(1, 100);
	struct lease *ls[3];
	grant_n(3, 1000, 0, ls);
	lease_finish(t, ls[2], LEASE_COMMITTED, 5);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(1000, 4, seqs, 4), 2);
	cr_assert_eq(lease_frontier(t), 0);
	lease_settle(t, 2);
	lease_settle(t, 3);
	cr_assert_eq(lease_frontier(t), 0);
	lease_settle(t, 1);
	cr_assert_eq(lease_frontier(t), 3);
}

Test(lease, settle_unknown_is_a_noop)
{
	open_table(1, 100);
	struct lease *a = grant_one(1000, 0);
	lease_settle(t, 2);    /* not handed out yet */
	lease_settle(t, 1000); /* far above */
	lease_settle(t, 0);    /* below everything */
	cr_assert_eq(lease_frontier(t), 0);
	cr_assert_eq(lease_next_seq(t), 2);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 1);
	cr_assert_eq(c.finishing, 0);
	/* 2 is handed out now, and the early settle did not count for it. */
	struct lease *b = grant_one(1000, 0);
	cr_assert_eq(b->seq, 2);
	finish_settle(a, LEASE_COMMITTED, 5);
	cr_assert_eq(lease_frontier(t), 1, "an early settle of 2 was remembered");
	lease_settle(t, 1); /* twice */
	cr_assert_eq(lease_frontier(t), 1);
	cr_assert_eq(lease_lookup(t, 2), b);
	cr_assert_eq(b->state, LEASE_ACTIVE);
}

/* ---- owners ---- */

Test(lease, owner_detach_returns_release_leases_in_order)
{
	open_table(1, 100);
	struct lease_owner owner = {0};
	struct lease *ls[6];
	for (size_t i = 0; i < 6; i++)
		ls[i] = grant_owned(&owner, i % 2 == 0 ? LEASE_RELEASE : LEASE_KEEP, 0);
	cr_assert_eq(owner.count, 6);
	struct lease *out[8];
	size_t n = lease_owner_detach(t, &owner, out, 8);
	cr_assert_eq(n, 3);
	cr_assert_eq(out[0]->seq, 1);
	cr_assert_eq(out[1]->seq, 3);
	cr_assert_eq(out[2]->seq, 5);
	cr_assert_eq(owner.count, 0);
	cr_assert_null(owner.head);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(out[i]->state, LEASE_ACTIVE, "detach finished a lease itself");
		lease_finish(t, out[i], LEASE_RELEASED, 10);
		cr_assert_eq(out[i]->outcome, LEASE_RELEASED);
	}
	/* KEEP leases run on, usable by a reconnecting client. */
	for (size_t i = 1; i < 6; i += 2) {
		struct lease *got = NULL;
		cr_assert_eq(lease_get(t, ls[i]->seq, ls[i]->token, 20, &got), 0);
		cr_assert_eq(got, ls[i]);
	}
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 3);
	cr_assert_eq(c.finishing, 3);
	cr_assert_eq(c.outcomes[LEASE_RELEASED], 3);
	lease_finish(t, ls[1], LEASE_COMMITTED, 30);
	cr_assert_eq(counts().outcomes[LEASE_COMMITTED], 1);
	cr_assert_eq(lease_owner_detach(t, &owner, out, 8), 0);
	/* The owner starts afresh. */
	(void)grant_owned(&owner, LEASE_KEEP, 40);
	cr_assert_eq(owner.count, 1);
}

Test(lease, owner_detach_respects_max)
{
	open_table(1, 100);
	struct lease_owner owner = {0}, other = {0};
	for (size_t i = 0; i < 7; i++) {
		(void)grant_owned(&owner, i == 3 ? LEASE_KEEP : LEASE_RELEASE, 0);
		(void)grant_owned(&other, LEASE_RELEASE, 0);
	}
	/* owner holds 1,3,5,(7 keep),9,11,13. */
	uint64_t seen[8];
	size_t n_seen = 0;
	struct lease *out[2];
	size_t n;
	do {
		n = lease_owner_detach(t, &owner, out, 2);
		cr_assert_leq(n, 2);
		for (size_t i = 0; i < n; i++) {
			cr_assert_lt(n_seen, 8);
			seen[n_seen++] = out[i]->seq;
			lease_finish(t, out[i], LEASE_RELEASED, 5);
		}
	} while (n == 2);
	const uint64_t want[6] = {1, 3, 5, 9, 11, 13};
	assert_seqs(seen, n_seen, want, 6);
	cr_assert_eq(owner.count, 0);
	cr_assert_eq(other.count, 7, "detach touched another owner");
	cr_assert_eq(lease_lookup(t, 7)->state, LEASE_ACTIVE);
}

Test(lease, finished_leases_leave_their_owner)
{
	cfg.max_leases_per_owner = 3;
	open_table(1, 100);
	struct lease_owner owner = {0};
	struct lease *a = grant_owned(&owner, LEASE_RELEASE, 0);
	struct lease *b = grant_owned(&owner, LEASE_RELEASE, 0);
	struct lease *c = grant_owned(&owner, LEASE_RELEASE, 0);
	(void)c;
	cr_assert_eq(owner.count, 3);
	lease_finish(t, a, LEASE_COMMITTED, 10);
	cr_assert_eq(owner.count, 2);
	lease_finish(t, b, LEASE_RELEASED, 10);
	cr_assert_eq(owner.count, 1);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(1000, 4, seqs, 4), 1);
	cr_assert_eq(owner.count, 0);
	cr_assert_null(owner.head);
	struct lease *out[4];
	cr_assert_eq(lease_owner_detach(t, &owner, out, 4), 0);
	/* The per-owner limit counts only what the owner still holds. */
	struct lease *ls[3];
	cr_assert_eq(grant_full("p", 3, 1000, 2000, &owner, LEASE_KEEP, ls), 0, "%s", why);
}

/* ---- clock jumps ---- */

Test(lease, clock_jump_backwards_expires_nothing)
{
	open_table(1, 100);
	struct lease *a = grant_one(1000, 10000);
	cr_assert_eq(a->expires_ms, 11000);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(5000, 4, seqs, 4), 0);
	struct lease *got = NULL;
	cr_assert_eq(lease_get(t, 1, a->token, 5000, &got), 0);
	cr_assert_eq(lease_next_expiry(t), 11000);
	cr_assert_eq(collect_all(0, 4, seqs, 4), 0);

	struct lease *b = grant_one(1000, 5000);
	cr_assert_eq(b->expires_ms, 6000);
	cr_assert_eq(lease_next_expiry(t), 6000);
	/* Extend with the clock behind granted_ms is within the lifetime. */
	cr_assert_eq(lease_extend(t, a, 1000, 4000, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(a->expires_ms, 5000);
	cr_assert_eq(counts().overrun, 0);
	/* A commit "before" its grant must not poison the mean: whether it
	 * counts as 0 ms or not at all, with a 200 ms commit beside it the
	 * adaptive duration is at most 2 x 200 ms. */
	lease_finish(t, a, LEASE_COMMITTED, 3000);
	struct lease *c = grant_one(5000, 3000);
	lease_finish(t, c, LEASE_COMMITTED, 3200);
	uint64_t ad = lease_adaptive_duration(t, "p");
	cr_assert_leq(ad, 400, "adaptive %llu after a commit before its grant",
	              (unsigned long long)ad);
	cr_assert_eq(collect_all(5999, 4, seqs, 4), 0);
	cr_assert_eq(collect_all(6000, 4, seqs, 4), 1);
	cr_assert_eq(seqs[0], 2);
	struct lease_counts n = counts();
	cr_assert_eq(n.active, 0);
	cr_assert_eq(n.finishing, 3);
}

Test(lease, clock_jump_forwards_expires_everything_in_order)
{
	cfg.grace_ms = 250;
	open_table(1, 100);
	struct lease *ls[12];
	for (size_t i = 0; i < 12; i++)
		ls[i] = grant_one(1000 + ((i * 7919) % 13) * 1000, 1000);
	cr_assert_eq(lease_extend(t, ls[0], 60000, 1500, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(lease_extend(t, ls[11], 10, 1500, why, sizeof(why)), 0, "%s", why);
	lease_stage(t, ls[5]);
	uint64_t seqs[16];
	uint64_t want[12];
	for (size_t i = 0; i < 12; i++)
		want[i] = i + 1;
	assert_seqs(seqs, collect_all((uint64_t)1 << 50, 5, seqs, 16), want, 12);
	struct lease_counts c = counts();
	cr_assert_eq(c.active, 0);
	cr_assert_eq(c.outcomes[LEASE_EXPIRED], 11);
	cr_assert_eq(c.outcomes[LEASE_RECOVERED], 1);
	cr_assert_eq(lease_next_expiry(t), UINT64_MAX);
}

/* ---- cascades ---- */

Test(lease, cascade_doubles_adaptive_durations)
{
	cfg.cascade_threshold = 3;
	open_table(1, 100);
	struct lease *h = grant_proj("p", 50000, 0);
	lease_finish(t, h, LEASE_COMMITTED, 1000);
	cr_assert_eq(lease_adaptive_duration(t, "p"), 2000);

	struct lease *ls[4];
	grant_n(3, 100, 10000, ls);
	grant_n(1, 200, 10000, &ls[3]);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(10100, 4, seqs, 4), 3);
	cr_assert_eq(counts().cascade_level, 0, "threshold expiries are not yet a cascade");
	cr_assert_eq(lease_adaptive_duration(t, "p"), 2000);
	cr_assert_eq(collect_all(10200, 4, seqs, 4), 1);
	cr_assert_eq(counts().cascade_level, 1, "threshold + 1 expiries within a minute");
	cr_assert_eq(lease_adaptive_duration(t, "p"), 4000);
	struct lease *l = grant_proj("p", 0, 10300);
	cr_assert_eq(l->expires_ms, 10300 + 4000);
}

Test(lease, cascade_spares_projections_without_history)
{
	cfg.cascade_threshold = 1;
	open_table(1, 100);
	struct lease *ls[2];
	grant_n(2, 100, 0, ls);
	uint64_t seqs[2];
	cr_assert_eq(collect_all(100, 2, seqs, 2), 2);
	cr_assert_eq(counts().cascade_level, 1);
	cr_assert_eq(lease_adaptive_duration(t, "fresh"), cfg.default_duration_ms);
}

Test(lease, cascade_multiplies_before_the_floor)
{
	cfg.cascade_threshold = 1;
	open_table(1, 100);
	struct lease *h = grant_proj("p", 50000, 0);
	lease_finish(t, h, LEASE_COMMITTED, 10); /* 2 x 10 ms */
	struct lease *ls[2];
	grant_n(2, 100, 0, ls);
	uint64_t seqs[2];
	cr_assert_eq(collect_all(100, 2, seqs, 2), 2);
	cr_assert_eq(counts().cascade_level, 1);
	/* 2 x 10 x 2^1 = 40, raised to the floor: the floor is not doubled. */
	uint64_t got = lease_adaptive_duration(t, "p");
	cr_assert_eq(got, LEASE_MIN_ADAPTIVE_MS, "adaptive %llu, want %u", (unsigned long long)got,
	             LEASE_MIN_ADAPTIVE_MS);
}

Test(lease, no_cascade_for_expiries_spread_out)
{
	cfg.cascade_threshold = 3;
	open_table(1, 100);
	struct lease *h = grant_proj("p", 50000, 0);
	lease_finish(t, h, LEASE_COMMITTED, 1000);
	uint64_t seqs[4];
	for (uint64_t i = 0; i < 5; i++) {
		uint64_t now = 100000 + i * 40000;
		(void)grant_one(100, now);
		cr_assert_eq(collect_all(now + 100, 4, seqs, 4), 1);
	}
	cr_assert_eq(counts().cascade_level, 0, "5 expiries 40 s apart made a cascade");
	cr_assert_eq(lease_adaptive_duration(t, "p"), 2000);
}

/* ---- per-projection figures ---- */

Test(lease, projection_name_of_a_lease)
{
	open_table(1, 100);
	struct lease *a = grant_proj("orders", 1000, 0);
	struct lease *b = grant_proj("stock", 1000, 0);
	cr_assert_str_eq(lease_projection_name(a), "orders");
	cr_assert_str_eq(lease_projection_name(b), "stock");
	lease_finish(t, a, LEASE_COMMITTED, 5);
	cr_assert_str_eq(lease_projection_name(a), "orders");
}

static const struct lease_projection_stats *find_stats(const struct lease_projection_stats *st,
                                                       size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (st[i].name != NULL && strcmp(st[i].name, name) == 0)
			return &st[i];
	cr_assert_fail("no figures for projection %s", name);
	return NULL;
}

Test(lease, projection_stats)
{
	open_table(1, 100);
	struct lease *o1 = grant_proj("orders", 1000, 0);
	struct lease *o2 = grant_proj("orders", 1000, 0);
	(void)grant_proj("orders", 50000, 0);
	struct lease *s1 = grant_proj("stock", 1000, 0);
	(void)grant_proj("mail", 50000, 0);
	lease_finish(t, o1, LEASE_COMMITTED, 300);
	lease_finish(t, o2, LEASE_RELEASED, 300);
	lease_stage(t, s1);
	uint64_t seqs[4];
	cr_assert_eq(collect_all(1000, 4, seqs, 4), 1);

	struct lease_projection_stats st[4];
	memset(st, 0, sizeof(st));
	cr_assert_eq(lease_projection_stats(t, st, 4), 3);
	const struct lease_projection_stats *o = find_stats(st, 3, "orders");
	cr_assert_eq(o->active, 1);
	cr_assert_eq(o->outcomes[LEASE_COMMITTED], 1);
	cr_assert_eq(o->outcomes[LEASE_RELEASED], 1);
	cr_assert_eq(o->outcomes[LEASE_EXPIRED], 0);
	cr_assert_eq(o->adaptive_ms, 600);
	const struct lease_projection_stats *k = find_stats(st, 3, "stock");
	cr_assert_eq(k->active, 0);
	cr_assert_eq(k->outcomes[LEASE_RECOVERED], 1);
	cr_assert_eq(k->adaptive_ms, cfg.default_duration_ms);
	const struct lease_projection_stats *m = find_stats(st, 3, "mail");
	cr_assert_eq(m->active, 1);

	/* A short array gets max entries; the answer is still the total. */
	struct lease_projection_stats few[3];
	memset(few, 0, sizeof(few));
	cr_assert_eq(lease_projection_stats(t, few, 2), 3);
	cr_assert_not_null(few[0].name);
	cr_assert_not_null(few[1].name);
	cr_assert_null(few[2].name, "wrote past max");
}

/* ---- teardown ---- */

Test(lease, free_with_leases_in_every_state)
{
	open_table(1, 1000);
	struct lease_owner a = {0}, b = {0};
	struct lease *ls[8];
	(void)grant_owned(&a, LEASE_KEEP, 0);
	(void)grant_owned(&a, LEASE_RELEASE, 0);
	(void)grant_owned(&b, LEASE_RELEASE, 0);
	(void)grant_proj("q", 50000, 0);
	struct lease *staged = grant_proj("r", 50000, 0);
	lease_stage(t, staged);
	grant_n(8, 100, 0, ls);
	lease_stage(t, ls[0]);
	lease_finish(t, ls[2], LEASE_COMMITTED, 50);
	lease_finish(t, ls[3], LEASE_RELEASED, 50);
	finish_settle(ls[4], LEASE_COMMITTED, 50);
	cr_assert_eq(lease_extend(t, ls[6], 60000, 50, why, sizeof(why)), 0, "%s", why);
	uint64_t seqs[8];
	cr_assert_eq(collect_all(100, 8, seqs, 8), 4); /* 0, 1, 5, 7: one recovered */
	lease_settle(t, seqs[0]);
	struct lease *out[4];
	cr_assert_eq(lease_owner_detach(t, &b, out, 4), 1);
	struct lease_counts c = counts();
	cr_assert_eq(c.outcomes[LEASE_RECOVERED], 1);
	cr_assert_eq(c.active, 6);
	cr_assert_eq(c.finishing, 5);
	lease_table_free(t);
	t = NULL;
}
