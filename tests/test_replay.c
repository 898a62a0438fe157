/* Tests of replay and verification (projection/replay.h) against real
 * stores in a fresh temporary directory per test.
 *
 * The live store is built the way the server builds it: each entry is
 * written to the ledger (ledger_put, kind committed, the packed OpList),
 * and the watermark advances over it with an apply hook that runs
 * proj_apply() in PROJ_LIVE mode and stores the rewritten ops back with
 * ledger_set_ops() (server/srv_lease.c apply_entry()). Entries are written
 * out of order within small batches and gaps are mixed in, so the
 * watermark waits as it does for leases.
 *
 * Asserted: the digest after a replay into a fresh store, after a replay in
 * place and after a restart equals the live one; proj_verify() agrees and
 * names the first entity that differs once a live record is changed behind
 * its back; replay applies the recorded ids and never a clause; the rebuild
 * marker is set while a rebuild runs and removed when it completes. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "ledger.h"
#include "meta.h"
#include "optext.h"
#include "proj.h"
#include "replay.h"
#include "storage.h"
#include "value.h"
#include "wb_error.h"

typedef Whizbang__V1__OpList OpList;
typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__Explosion Explosion;

/* ------------------------------------------------ fixture */

static struct fixture fx;
static struct storage *st;

static struct storage *open_at(const char *name)
{
	return fixture_open(&fx, name,
	                    &(struct storage_options){.map_size = 32u << 20, .no_sync = true});
}

static void setup(void)
{
	fixture_setup(&fx, "replay");
	st = open_at("live");
}

static void teardown(void)
{
	storage_close(st);
	st = NULL;
	fixture_teardown(&fx);
}

TestSuite(replay, .init = setup, .fini = teardown);

/* ------------------------------------------------ the live side */

struct live {
	struct proj_config cfg;
	uint64_t applied;  /* entries with ops the watermark passed */
	uint64_t failures; /* of them, recorded as failed */
	uint64_t explosions;
};

/* The apply hook, as server/srv_lease.c apply_entry() does it. */
static int apply_cb(struct storage_txn *txn, const struct ledger_entry *e, void *arg)
{
	struct live *lv = arg;
	if (e->ops_len == 0)
		return 0;
	uint64_t seq = e->seq; /* e points into the store: read it first */
	struct proj_buf rw = {0};
	struct proj_outcome o;
	int rc = proj_apply(txn, seq, e->ops, e->ops_len, &lv->cfg, PROJ_LIVE, &rw, &o);
	if (rc == 0 && rw.len > 0)
		rc = ledger_set_ops(txn, seq, rw.p, rw.len);
	proj_buf_free(&rw);
	if (rc == 0) {
		lv->applied++;
		lv->failures += o.error != 0;
		lv->explosions += o.explosions;
	}
	return rc;
}

static void pack_text(const char *text, struct proj_buf *out)
{
	OpList *l = NULL;
	struct optext_error err = {0};
	int rc = optext_parse_ops(text, &l, &err);
	cr_assert_eq(rc, 0, "parse %.300s: column %zu: %s", text, err.column, err.message);
	size_t n = whizbang__v1__op_list__get_packed_size(l);
	cr_assert_eq(proj_buf_reserve(out, n), 0);
	whizbang__v1__op_list__pack(l, out->p + out->len);
	out->len += n;
	optext_free_ops(l);
}

/* Writes the final entry of seq (ops text, or a gap when text is NULL) and
 * advances the watermark as far as it goes, in one write transaction. */
static uint64_t write_entry(struct storage *s, uint64_t seq, const char *text, struct live *lv)
{
	struct proj_buf ops = {0};
	if (text != NULL)
		pack_text(text, &ops);
	char opid[32];
	int n = snprintf(opid, sizeof(opid), "op-%" PRIu64, seq);
	struct ledger_entry e = {
	        .seq = seq,
	        .kind = text != NULL ? LEDGER_COMMITTED : LEDGER_GAP,
	        .reason = text != NULL ? LEDGER_REASON_NONE : LEDGER_GAP_RELEASED,
	        .time_us = 1700000000000000ull + seq,
	        .projection = "proj",
	        .projection_len = 4,
	        .operation_id = opid,
	        .operation_id_len = (size_t)n,
	        .ops = ops.p,
	        .ops_len = ops.len,
	};
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(s, NULL, 0, &t), 0);
	/* the server reserves a sequence before it hands it out */
	cr_assert_eq(ledger_set_ceiling(t, seq), 0);
	int rc = ledger_put(t, &e);
	cr_assert_eq(rc, 0, "ledger_put %" PRIu64 ": %s", seq, wb_error_name(rc));
	uint64_t wm;
	rc = ledger_advance(t, UINT64_MAX, apply_cb, lv, &wm);
	cr_assert_eq(rc, 0, "advance over %" PRIu64 ": %s", seq, wb_error_name(rc));
	cr_assert_eq(storage_txn_commit(t), 0);
	proj_buf_free(&ops);
	return wm;
}

static void digest_on(struct storage *s, uint8_t d[PROJ_DIGEST_LEN], uint64_t *entities)
{
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(s, NULL, STORAGE_RDONLY, &t), 0);
	cr_assert_eq(proj_digest(t, d, entities), 0);
	storage_txn_abort(t);
}

static uint64_t watermark_of(struct storage *s)
{
	struct storage_txn *t;
	struct ledger_state ls;
	cr_assert_eq(storage_txn_begin(s, NULL, STORAGE_RDONLY, &t), 0);
	cr_assert_eq(ledger_get_state(t, &ls), 0);
	storage_txn_abort(t);
	return ls.watermark;
}

static bool rebuild_key_set(struct storage *s)
{
	struct storage_txn *t;
	struct storage_val k = {PROJ_REBUILD_KEY, strlen(PROJ_REBUILD_KEY)}, v;
	cr_assert_eq(storage_txn_begin(s, NULL, STORAGE_RDONLY, &t), 0);
	int rc = storage_get(t, STORAGE_DB_META, k, &v);
	storage_txn_abort(t);
	cr_assert(rc == 0 || rc == WB_E_NOTFOUND, "%s", wb_error_name(rc));
	return rc == 0;
}

static void replay_into(struct storage *src, struct storage *dst, const struct proj_config *cfg,
                        struct proj_replay_stats *stats)
{
	char errmsg[256] = "";
	int rc = proj_replay(src, dst, cfg, NULL, NULL, stats, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "replay: %s: %s", wb_error_name(rc), errmsg);
}

static void verify(struct storage *live, const struct proj_config *cfg,
                   struct proj_verify_result *res)
{
	char scratch[128], errmsg[256] = "";
	fixture_path(&fx, "scratch", scratch, sizeof(scratch));
	int rc = proj_verify(live, scratch, cfg, NULL, NULL, res, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "verify: %s: %s", wb_error_name(rc), errmsg);
	cr_assert_neq(access(scratch, F_OK), 0, "the scratch store is removed afterwards");
}

/* Renders an entity: "v2 c5 u6 fields 3" or "absent". */
static const char *entity_of(struct storage *s, const char *type, const char *id)
{
	static char ring[4][128];
	static unsigned next;
	char *b = ring[next++ % 4];
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(s, NULL, STORAGE_RDONLY, &t), 0);
	struct proj_record r;
	int rc = proj_get(t, type, strlen(type), id, strlen(id), &r);
	if (rc == WB_E_NOTFOUND) {
		snprintf(b, 128, "absent");
	} else {
		cr_assert_eq(rc, 0);
		struct proj_value hit;
		bool has = proj_record_find(&r, "hit", 3, &hit);
		snprintf(b, 128, "v%" PRIu64 " c%" PRIu64 " u%" PRIu64 " fields %u%s", r.version,
		         r.created_seq, r.updated_seq, r.nfields, has ? " hit" : "");
	}
	storage_txn_abort(t);
	return b;
}

/* ------------------------------------------------ random op sequences */

static uint64_t rng_state;

static size_t rndn(size_t n)
{
	return (size_t)(fixture_splitmix(&rng_state) % n);
}

static bool chance(unsigned percent)
{
	return rndn(100) < percent;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const TYPES[] = {"Order", "Item"};
static const char *const FIELDS[] = {"status", "total", "tag", "flag", "note", "rev"};
static const char *const STATUS[] = {"\"Pending\"", "\"Paid\"", "\"Shipped\"", "\"Pend\"",
                                     "\"Cancelled\""};

static const char *value_for(size_t f)
{
	static const char *total[] = {"0", "1", "5", "100", "-3", "2.5", "100.0", "1e10"};
	static const char *tag[] = {"\"a\"", "\"ab\"", "\"b\"", "\"\"", "7"};
	static const char *note[] = {"null", "x\"00\"", "x\"0102\"", "\"n\""};
	switch (f) {
	case 0:
		return STATUS[rndn(NELEM(STATUS))];
	case 1:
		return total[rndn(NELEM(total))];
	case 2:
		return tag[rndn(NELEM(tag))];
	case 3:
		return chance(50) ? "true" : "false";
	case 4:
		return note[rndn(NELEM(note))];
	default:
		return chance(80) ? "1" : "\"r\""; /* rev: a string makes inc fail */
	}
}

static size_t add(char *buf, size_t len, size_t o, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static size_t add(char *buf, size_t len, size_t o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + o, len - o, fmt, ap);
	va_end(ap);
	cr_assert(n >= 0 && o + (size_t)n < len);
	return o + (size_t)n;
}

static size_t gen_clause(char *buf, size_t len, size_t o, int depth)
{
	static const char *ops[] = {"==", "!=", "<", "<=", ">", ">="};
	if (depth >= 2 || chance(55)) {
		size_t f = rndn(NELEM(FIELDS));
		switch (rndn(6)) {
		case 0:
		case 1:
			return add(buf, len, o, "%s %s %s", FIELDS[f], ops[rndn(6)], value_for(f));
		case 2:
			return add(buf, len, o, "%s %sin (%s, %s)", FIELDS[f],
			           chance(30) ? "not " : "", value_for(f), value_for(f));
		case 3:
			return add(buf, len, o, "exists(%s)", FIELDS[f]);
		case 4:
			return add(buf, len, o, "starts_with(status, \"P%s\")",
			           chance(50) ? "e" : "");
		default:
			return add(buf, len, o, "status == %s", STATUS[rndn(NELEM(STATUS))]);
		}
	}
	if (chance(20)) {
		o = add(buf, len, o, "not (");
		o = gen_clause(buf, len, o, depth + 1);
		return add(buf, len, o, ")");
	}
	const char *join = chance(50) ? " and " : " or ";
	o = add(buf, len, o, "(");
	o = gen_clause(buf, len, o, depth + 1);
	o = add(buf, len, o, ")%s(", join);
	o = gen_clause(buf, len, o, depth + 1);
	return add(buf, len, o, ")");
}

static size_t gen_fields(char *buf, size_t len, size_t o)
{
	o = add(buf, len, o, "{");
	bool first = true;
	for (size_t f = 0; f < NELEM(FIELDS); f++) {
		if (chance(30))
			continue;
		o = add(buf, len, o, "%s%s: %s", first ? "" : ", ", FIELDS[f], value_for(f));
		first = false;
	}
	return add(buf, len, o, "}");
}

static size_t gen_op(char *buf, size_t len, size_t o)
{
	const char *type = TYPES[chance(75) ? 0 : 1];
	char id[16];
	snprintf(id, sizeof(id), "%c-%zu", type[0] == 'O' ? 'o' : 'i', rndn(45));
	size_t r = rndn(100);
	if (r < 42) {
		o = add(buf, len, o, "upsert %s \"%s\" %s", type, id, chance(40) ? "merge " : "");
		return gen_fields(buf, len, o);
	}
	if (r < 68) {
		o = add(buf, len, o, "update %s where ", type);
		o = gen_clause(buf, len, o, 0);
		size_t f = rndn(NELEM(FIELDS));
		switch (rndn(4)) {
		case 0:
			o = add(buf, len, o, " unset %s", FIELDS[f]);
			break;
		case 1:
			o = add(buf, len, o, " inc %s by %s", chance(50) ? "rev" : "total",
			        chance(70) ? "1" : "0.5");
			break;
		default:
			o = add(buf, len, o, " set %s = %s, inc rev by 1", FIELDS[f], value_for(f));
			break;
		}
		if (chance(30)) {
			o = add(buf, len, o, " create \"%s\" ", id);
			o = gen_fields(buf, len, o);
		}
		return o;
	}
	if (r < 78)
		return add(buf, len, o, "delete %s \"%s\"", type, id);
	if (r < 82) {
		o = add(buf, len, o, "delete %s where ", type);
		return gen_clause(buf, len, o, 1);
	}
	/* index changes; a duplicate create or a missing drop fails the entry */
	const char *f = FIELDS[rndn(3)];
	return add(buf, len, o, "%s index %s %s", chance(60) ? "create" : "drop", type, f);
}

/* Builds a live store from n random entries (seeded); returns the final
 * watermark. Gaps and out-of-order writes are mixed in. */
static uint64_t build_random(struct storage *s, uint64_t seed, size_t n, struct live *lv)
{
	rng_state = seed;
	char *text = malloc(8192);
	cr_assert_not_null(text);
	uint64_t seq = 1, wm = 0;
	while (seq <= n) {
		/* a batch of 1..3 sequences, written in a random order */
		size_t k = 1 + rndn(3);
		uint64_t order[3] = {seq, seq + 1, seq + 2};
		for (size_t i = k; i > 1; i--) {
			size_t j = rndn(i);
			uint64_t tmp = order[i - 1];
			order[i - 1] = order[j];
			order[j] = tmp;
		}
		for (size_t i = 0; i < k; i++) {
			if (chance(6)) {
				wm = write_entry(s, order[i], NULL, lv);
				continue;
			}
			size_t o = 0, nops = 1 + (chance(25) ? rndn(3) : 0);
			for (size_t j = 0; j < nops; j++) {
				if (j)
					o = add(text, 8192, o, "; ");
				o = gen_op(text, 8192, o);
			}
			wm = write_entry(s, order[i], text, lv);
			cr_assert_leq(wm, order[i] + 2);
		}
		cr_assert_eq(wm, seq + k - 1, "the batch is contiguous: the watermark passes it");
		seq += k;
	}
	free(text);
	return wm;
}

/* Writes a changed record for an entity of the live store behind the
 * ledger's back: same version, one field more. Returns its id. */
static void corrupt_entity(struct storage *s, const char *type, char *id_out, size_t len)
{
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(s, NULL, 0, &t), 0);
	struct storage_cursor *c;
	cr_assert_eq(storage_cursor_open(t, STORAGE_DB_ENTITIES, &c), 0);
	uint8_t pre[64];
	size_t tl = strlen(type);
	memcpy(pre, type, tl);
	pre[tl] = 0;
	struct storage_val k = {pre, tl + 1}, v;
	/* the middle entity of the type */
	size_t n = 0;
	int rc = storage_cursor_get(c, STORAGE_SET_RANGE, &k, &v);
	while (rc == 0 && k.len > tl + 1 && memcmp(k.data, pre, tl + 1) == 0) {
		n++;
		rc = storage_cursor_get(c, STORAGE_NEXT, &k, &v);
	}
	cr_assert_gt(n, 0, "the type has entities");
	k.data = pre;
	k.len = tl + 1;
	rc = storage_cursor_get(c, STORAGE_SET_RANGE, &k, &v);
	for (size_t i = 0; i < n / 2; i++)
		rc = storage_cursor_get(c, STORAGE_NEXT, &k, &v);
	cr_assert_eq(rc, 0);
	uint8_t key[600];
	size_t kl = k.len;
	memcpy(key, k.data, kl);
	snprintf(id_out, len, "%.*s", (int)(kl - tl - 1), (const char *)key + tl + 1);
	struct proj_buf old = {0}, enc = {0};
	cr_assert_eq(proj_buf_append(&old, v.data, v.len), 0);
	storage_cursor_close(c);
	struct proj_record r;
	cr_assert_eq(proj_record_decode(old.p, old.len, &r), 0);
	struct proj_field f[64];
	size_t nf = 0, off = 0;
	while (nf < 63 && proj_record_next(&r, &off, &f[nf]))
		nf++;
	f[nf].name = "zz_tampered";
	f[nf].name_len = strlen(f[nf].name);
	f[nf].v.type = PROJ_BOOL;
	f[nf].v.u.b = true;
	nf++;
	cr_assert_eq(proj_record_encode(r.version, r.created_seq, r.updated_seq, f, nf, &enc), 0);
	struct storage_val kv = {key, kl}, vv = {enc.p, enc.len};
	cr_assert_eq(storage_put(t, STORAGE_DB_ENTITIES, kv, vv, 0), 0);
	cr_assert_eq(storage_txn_commit(t), 0);
	proj_buf_free(&old);
	proj_buf_free(&enc);
}

/* ------------------------------------------------ determinism */

Test(replay, random_sequences_replay_to_the_same_digest, .timeout = 600)
{
	bool vg = fixture_under_valgrind();
	size_t seeds = vg ? 1 : 8, n = vg ? 80 : 500;
	uint64_t total_entries = 0, total_failed = 0, total_explosions = 0;
	for (size_t si = 0; si < seeds; si++) {
		if (si > 0) {
			/* a fresh live store per seed */
			storage_close(st);
			char name[32];
			snprintf(name, sizeof(name), "live%zu", si);
			st = open_at(name);
		}
		struct live lv = {.cfg = {.max_scan = 30, .max_candidates = UINT64_MAX}};
		uint64_t wm = build_random(st, 7000 + si, n, &lv);
		cr_assert_eq(watermark_of(st), wm);
		uint8_t live_d[PROJ_DIGEST_LEN], d[PROJ_DIGEST_LEN];
		uint64_t live_n, nn;
		digest_on(st, live_d, &live_n);
		cr_assert_gt(live_n, 10, "seed %zu: entities exist", si);
		cr_assert_gt(lv.failures, 0, "seed %zu: some entries fail", si);
		cr_assert_lt(lv.failures, lv.applied / 2, "seed %zu: most entries apply", si);

		/* into a fresh store */
		char name[32];
		snprintf(name, sizeof(name), "fresh%zu", si);
		struct storage *fresh = open_at(name);
		struct proj_replay_stats rs;
		replay_into(st, fresh, &lv.cfg, &rs);
		digest_on(fresh, d, &nn);
		cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN, "seed %zu: replay into a fresh store",
		                 si);
		cr_assert_eq(nn, live_n);
		cr_assert_eq(rs.watermark, wm);
		cr_assert_eq(rs.entries, lv.applied, "entries with ops");
		cr_assert_eq(rs.failed, lv.failures, "entries recorded as failed are skipped");
		cr_assert_not(rebuild_key_set(fresh));
		struct storage_txn *ta, *tb;
		cr_assert_eq(storage_txn_begin(st, NULL, STORAGE_RDONLY, &ta), 0);
		cr_assert_eq(storage_txn_begin(fresh, NULL, STORAGE_RDONLY, &tb), 0);
		char msg[512];
		cr_assert_eq(proj_diff(ta, tb, "live", "replay", msg, sizeof(msg)), 0, "%s", msg);
		storage_txn_abort(ta);
		storage_txn_abort(tb);
		storage_close(fresh);

		/* a replay of a replay: the fresh store has no ledger, st does */
		struct proj_verify_result vr;
		verify(st, &lv.cfg, &vr);
		cr_assert(vr.match, "seed %zu: %s", si, vr.first_difference);
		cr_assert_arr_eq(vr.live_digest, live_d, PROJ_DIGEST_LEN);
		cr_assert_arr_eq(vr.replay_digest, live_d, PROJ_DIGEST_LEN);
		cr_assert_eq(vr.entities, live_n);
		cr_assert_str_eq(vr.first_difference, "");

		/* in place */
		replay_into(st, st, &lv.cfg, &rs);
		digest_on(st, d, NULL);
		cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN, "seed %zu: replay in place", si);
		cr_assert_not(rebuild_key_set(st));
		cr_assert_eq(watermark_of(st), wm, "a replay leaves the ledger alone");

		/* a restart */
		storage_close(st);
		snprintf(name, sizeof(name), si > 0 ? "live%zu" : "live", si);
		st = open_at(name);
		digest_on(st, d, NULL);
		cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN, "seed %zu: after a restart", si);

		/* the live store goes on; replay still agrees */
		wm = write_entry(st, wm + 1, "upsert Order \"late\" {status: \"Paid\"}", &lv);
		verify(st, &lv.cfg, &vr);
		cr_assert(vr.match, "%s", vr.first_difference);

		/* a live entity changed behind the ledger's back */
		char id[300];
		corrupt_entity(st, "Order", id, sizeof(id));
		verify(st, &lv.cfg, &vr);
		cr_assert_not(vr.match);
		char want[400];
		snprintf(want, sizeof(want), "entity Order/%s", id);
		cr_assert(strncmp(vr.first_difference, want, strlen(want)) == 0,
		          "first difference \"%s\", want \"%s...\"", vr.first_difference, want);
		cr_assert_not_null(strstr(vr.first_difference, "fields differ"), "%s",
		                   vr.first_difference);
		cr_assert(memcmp(vr.live_digest, vr.replay_digest, PROJ_DIGEST_LEN) != 0);

		total_entries += lv.applied;
		total_failed += lv.failures;
		total_explosions += lv.explosions;
	}
	cr_log_info("replay determinism: %zu seeds, %" PRIu64 " entries with ops, %" PRIu64
	            " failed, %" PRIu64 " explosions",
	            seeds, total_entries, total_failed, total_explosions);
}

Test(replay, verify_names_index_and_version_differences)
{
	struct live lv = {.cfg = {.max_scan = 1000, .max_candidates = UINT64_MAX}};
	write_entry(st, 1, "create index Order status", &lv);
	write_entry(st, 2,
	            "upsert Order \"o-1\" {status: \"A\"}; upsert Order \"o-2\" {status: \"B\"}",
	            &lv);
	write_entry(st, 3, "update Order where status == \"B\" set status = \"C\"", &lv);
	struct proj_verify_result vr;
	verify(st, &lv.cfg, &vr);
	cr_assert(vr.match, "%s", vr.first_difference);
	cr_assert_eq(vr.replay.watermark, 3);
	cr_assert_eq(vr.replay.entries, 3);
	cr_assert_eq(vr.entities, 2);

	/* an index entry missing from the live store */
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	struct storage_cursor *c;
	cr_assert_eq(storage_cursor_open(t, STORAGE_DB_INDEX, &c), 0);
	struct storage_val k, v;
	cr_assert_eq(storage_cursor_get(c, STORAGE_FIRST, &k, &v), 0);
	uint8_t key[600];
	size_t kl = k.len;
	memcpy(key, k.data, kl);
	storage_cursor_close(c);
	struct storage_val kv = {key, kl};
	cr_assert_eq(storage_del(t, STORAGE_DB_INDEX, kv), 0);
	cr_assert_eq(storage_txn_commit(t), 0);
	verify(st, &lv.cfg, &vr);
	cr_assert_not(vr.match);
	cr_assert_not_null(strstr(vr.first_difference, "index entry"), "%s", vr.first_difference);
	cr_assert_not_null(strstr(vr.first_difference, "o-1"), "%s", vr.first_difference);
	cr_assert_not_null(strstr(vr.first_difference, "only in the replay"), "%s",
	                   vr.first_difference);

	/* put it back; then bump a version */
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	cr_assert_eq(storage_put(t, STORAGE_DB_INDEX, kv, (struct storage_val){"", 0}, 0), 0);
	struct proj_record r;
	cr_assert_eq(proj_get(t, "Order", 5, "o-2", 3, &r), 0);
	struct proj_field f[8];
	size_t nf = 0, off = 0;
	struct proj_buf enc = {0};
	while (nf < 8 && proj_record_next(&r, &off, &f[nf]))
		nf++;
	cr_assert_eq(proj_record_encode(r.version + 1, r.created_seq, r.updated_seq, f, nf, &enc),
	             0);
	uint8_t ek[16] = "Order\0o-2";
	cr_assert_eq(storage_put(t, STORAGE_DB_ENTITIES, (struct storage_val){ek, 9},
	                         (struct storage_val){enc.p, enc.len}, 0),
	             0);
	cr_assert_eq(storage_txn_commit(t), 0);
	proj_buf_free(&enc);
	verify(st, &lv.cfg, &vr);
	cr_assert_not(vr.match);
	cr_assert_str_eq(vr.first_difference,
	                 "entity Order/o-2: version 3 in the live store, 2 in the replay");
}

Test(replay, entries_above_the_watermark_are_not_replayed)
{
	struct live lv = {.cfg = {.max_scan = 1000, .max_candidates = UINT64_MAX}};
	write_entry(st, 1, "upsert Order \"o-1\" {status: \"A\"}", &lv);
	/* 3 without 2: committed, not yet applied */
	uint64_t wm = write_entry(st, 3, "upsert Order \"o-3\" {status: \"A\"}", &lv);
	cr_assert_eq(wm, 1);
	cr_assert_str_eq(entity_of(st, "Order", "o-3"), "absent");
	struct storage *fresh = open_at("fresh");
	struct proj_replay_stats rs;
	replay_into(st, fresh, &lv.cfg, &rs);
	cr_assert_eq(rs.watermark, 1);
	cr_assert_eq(rs.entries, 1);
	cr_assert_str_eq(entity_of(fresh, "Order", "o-3"), "absent");
	cr_assert_str_eq(entity_of(fresh, "Order", "o-1"), "v1 c1 u1 fields 1");
	/* 2 arrives: both apply */
	wm = write_entry(st, 2, "upsert Order \"o-2\" {}", &lv);
	cr_assert_eq(wm, 3);
	replay_into(st, fresh, &lv.cfg, &rs);
	cr_assert_eq(rs.watermark, 3);
	cr_assert_str_eq(entity_of(fresh, "Order", "o-3"), "v1 c3 u3 fields 1");
	uint8_t a[PROJ_DIGEST_LEN], b[PROJ_DIGEST_LEN];
	digest_on(st, a, NULL);
	digest_on(fresh, b, NULL);
	cr_assert_arr_eq(a, b, PROJ_DIGEST_LEN);
	storage_close(fresh);
}

/* ------------------------------------------------ no predicate in replay */

/* Replaces the stored ops of seq with edit(ops). */
static void edit_entry(struct storage *s, uint64_t seq, void (*edit)(OpList *l, void *arg),
                       void *arg)
{
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(s, NULL, 0, &t), 0);
	struct ledger_entry e;
	cr_assert_eq(ledger_get(t, seq, &e), 0);
	OpList *l = whizbang__v1__op_list__unpack(NULL, e.ops_len, e.ops);
	cr_assert_not_null(l);
	cr_assert(l->applied);
	edit(l, arg);
	size_t n = whizbang__v1__op_list__get_packed_size(l);
	uint8_t *b = malloc(n);
	cr_assert_not_null(b);
	whizbang__v1__op_list__pack(l, b);
	whizbang__v1__op_list__free_unpacked(l, NULL);
	cr_assert_eq(ledger_set_ops(t, seq, b, n), 0);
	free(b);
	cr_assert_eq(storage_txn_commit(t), 0);
}

/* The where clause of op 0 becomes `status == "Q"`; the explosion stays. */
static void change_clause(OpList *l, void *arg)
{
	(void)arg;
	Whizbang__V1__Update *u = l->ops[0]->update;
	Whizbang__V1__Expr *e;
	struct optext_error err;
	cr_assert_eq(optext_parse_where("status == \"Q\"", &e, &err), 0);
	whizbang__v1__expr__free_unpacked(u->where->expr, NULL);
	u->where->expr = e;
}

/* The recorded ids of op 0 become the one id in arg. */
static void change_ids(OpList *l, void *arg)
{
	Explosion *x = l->ops[0]->update->exploded;
	cr_assert_not_null(x);
	struct proj_ids ids = {0};
	struct proj_buf enc = {0};
	cr_assert_eq(proj_ids_add(&ids, arg, strlen(arg)), 0);
	cr_assert_eq(proj_idlist_encode(&ids, &enc), 0);
	free(x->ids.data);
	x->ids.data = malloc(enc.len);
	cr_assert_not_null(x->ids.data);
	memcpy(x->ids.data, enc.p, enc.len);
	x->ids.len = enc.len;
	x->count = 1;
	proj_ids_free(&ids);
	proj_buf_free(&enc);
}

/* Op 0 is recorded as having matched nothing and created nothing. */
static void record_nothing(OpList *l, void *arg)
{
	(void)arg;
	Explosion *x = l->ops[0]->update->exploded;
	cr_assert_not_null(x);
	free(x->ids.data);
	x->ids.data = NULL;
	x->ids.len = 0;
	x->count = 0;
	x->created = false;
}

Test(replay, replay_applies_recorded_ids_never_the_clause)
{
	struct live lv = {.cfg = {.max_scan = 1000, .max_candidates = UINT64_MAX}};
	write_entry(st, 1,
	            "upsert Order \"o-1\" {status: \"P\"}; upsert Order \"o-2\" {status: \"Q\"}; "
	            "upsert Order \"o-3\" {status: \"P\"}; upsert Order \"o-4\" {status: \"Q\"}",
	            &lv);
	write_entry(st, 2, "update Order where status == \"P\" set hit = true", &lv);
	cr_assert_str_eq(entity_of(st, "Order", "o-1"), "v2 c1 u2 fields 2 hit");
	cr_assert_str_eq(entity_of(st, "Order", "o-2"), "v1 c1 u1 fields 1");
	uint8_t live_d[PROJ_DIGEST_LEN], d[PROJ_DIGEST_LEN];
	digest_on(st, live_d, NULL);

	/* the stored clause now says Q: replay still follows the ids (P) */
	edit_entry(st, 2, change_clause, NULL);
	struct storage *fresh = open_at("fresh");
	struct proj_replay_stats rs;
	replay_into(st, fresh, &lv.cfg, &rs);
	digest_on(fresh, d, NULL);
	cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN);
	cr_assert_str_eq(entity_of(fresh, "Order", "o-1"), "v2 c1 u2 fields 2 hit");
	cr_assert_str_eq(entity_of(fresh, "Order", "o-2"), "v1 c1 u1 fields 1");

	/* and with max_scan 0 and no index, where a clause could not even be
	 * planned, replay does not refuse */
	const struct proj_config none = {.max_scan = 0, .max_candidates = UINT64_MAX};
	replay_into(st, fresh, &none, &rs);
	cr_assert_eq(rs.failed, 0);
	digest_on(fresh, d, NULL);
	cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN);

	/* the recorded ids now say o-4 (a Q): replay changes o-4 */
	edit_entry(st, 2, change_ids, "o-4");
	replay_into(st, fresh, &lv.cfg, &rs);
	cr_assert_str_eq(entity_of(fresh, "Order", "o-1"), "v1 c1 u1 fields 1");
	cr_assert_str_eq(entity_of(fresh, "Order", "o-3"), "v1 c1 u1 fields 1");
	cr_assert_str_eq(entity_of(fresh, "Order", "o-4"), "v2 c1 u2 fields 2 hit");
	storage_close(fresh);
	/* a creation is replayed as recorded too, not because nothing matched */
	write_entry(st, 3, "update Order where status == \"Z\" set hit = true create \"o-9\" {}",
	            &lv);
	cr_assert_str_eq(entity_of(st, "Order", "o-9"), "v1 c3 u3 fields 0");
	edit_entry(st, 3, record_nothing, NULL);
	fresh = open_at("fresh");
	replay_into(st, fresh, &lv.cfg, &rs);
	cr_assert_str_eq(entity_of(fresh, "Order", "o-9"), "absent");
	storage_close(fresh);
	/* which verify reports as a difference from the live store */
	struct proj_verify_result vr;
	verify(st, &lv.cfg, &vr);
	cr_assert_not(vr.match);
	cr_assert(strncmp(vr.first_difference, "entity Order/o-1:", 17) == 0, "%s",
	          vr.first_difference);
}

Test(replay, failed_entries_stay_failed_in_replay)
{
	/* live: the update is refused (3 entities, max_scan 2) */
	struct live lv = {.cfg = {.max_scan = 2, .max_candidates = UINT64_MAX}};
	write_entry(st, 1,
	            "create index A k; upsert A \"a\" {k: 1, j: 1}; upsert A \"b\" {k: 1}; "
	            "upsert A \"c\" {k: 2}",
	            &lv);
	write_entry(st, 2, "update A where j == 1 set hit = true", &lv);
	cr_assert_eq(lv.failures, 1);
	/* create_if_none through the index, recorded as created */
	write_entry(st, 3, "update A where k == 9 set hit = true create \"d\" {k: 9}", &lv);
	cr_assert_eq(lv.failures, 1);
	uint8_t live_d[PROJ_DIGEST_LEN], d[PROJ_DIGEST_LEN];
	digest_on(st, live_d, NULL);
	/* a replay that could scan would apply entry 2; it must not */
	const struct proj_config big = {.max_scan = 1000000, .max_candidates = UINT64_MAX};
	struct storage *fresh = open_at("fresh");
	struct proj_replay_stats rs;
	replay_into(st, fresh, &big, &rs);
	cr_assert_eq(rs.failed, 1);
	cr_assert_eq(rs.entries, 3);
	digest_on(fresh, d, NULL);
	cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN);
	cr_assert_str_eq(entity_of(fresh, "A", "a"), "v1 c1 u1 fields 2");
	cr_assert_str_eq(entity_of(fresh, "A", "d"), "v1 c3 u3 fields 1");
	storage_close(fresh);
}

Test(replay, an_entry_never_applied_is_applied_live)
{
	struct live lv = {.cfg = {.max_scan = 1000, .max_candidates = UINT64_MAX}};
	write_entry(st, 1, "upsert A \"a\" {k: 1}; upsert A \"b\" {k: 2}", &lv);
	/* entry 2 passes the watermark without the apply hook (as from a
	 * server that had no projections): its ops carry no record */
	struct proj_buf ops = {0};
	pack_text("update A where k == 2 set hit = true", &ops);
	struct ledger_entry e = {.seq = 2,
	                         .kind = LEDGER_COMMITTED,
	                         .projection = "p",
	                         .projection_len = 1,
	                         .ops = ops.p,
	                         .ops_len = ops.len};
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	cr_assert_eq(ledger_set_ceiling(t, 2), 0);
	cr_assert_eq(ledger_put(t, &e), 0);
	uint64_t wm;
	cr_assert_eq(ledger_advance(t, UINT64_MAX, NULL, NULL, &wm), 0);
	cr_assert_eq(storage_txn_commit(t), 0);
	proj_buf_free(&ops);
	cr_assert_eq(wm, 2);
	cr_assert_str_eq(entity_of(st, "A", "b"), "v1 c1 u1 fields 1");
	struct storage *fresh = open_at("fresh");
	struct proj_replay_stats rs;
	replay_into(st, fresh, &lv.cfg, &rs);
	cr_assert_str_eq(entity_of(fresh, "A", "b"), "v2 c1 u2 fields 2 hit");
	cr_assert_str_eq(entity_of(fresh, "A", "a"), "v1 c1 u1 fields 1");
	storage_close(fresh);
}

/* ------------------------------------------------ the rebuild marker */

struct progress {
	struct storage *dst;
	uint64_t calls, last_done, last_total;
	bool marked_midway, monotonic;
};

static void progress_cb(uint64_t done, uint64_t total, void *arg)
{
	struct progress *p = arg;
	if (done < p->last_done)
		p->monotonic = false;
	if (done < total && rebuild_key_set(p->dst))
		p->marked_midway = true;
	p->calls++;
	p->last_done = done;
	p->last_total = total;
}

Test(replay, rebuild_marker_and_progress)
{
	cr_assert_str_eq(PROJ_REBUILD_KEY, "proj_rebuild");
	bool vg = fixture_under_valgrind();
	/* more than one progress step (every 4096 entries) */
	const uint64_t n = vg ? 4200 : 9000;
	struct live lv = {.cfg = {.max_scan = 100000, .max_candidates = UINT64_MAX}};
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	cr_assert_eq(ledger_set_ceiling(t, n), 0);
	for (uint64_t seq = 1; seq <= n; seq++) {
		char text[96];
		snprintf(text, sizeof(text), "upsert Order \"o-%" PRIu64 "\" {n: %" PRIu64 "}",
		         seq % 500, seq);
		struct proj_buf ops = {0};
		pack_text(text, &ops);
		struct ledger_entry e = {.seq = seq,
		                         .kind = LEDGER_COMMITTED,
		                         .projection = "p",
		                         .projection_len = 1,
		                         .ops = ops.p,
		                         .ops_len = ops.len};
		cr_assert_eq(ledger_put(t, &e), 0);
		proj_buf_free(&ops);
	}
	uint64_t wm;
	cr_assert_eq(ledger_advance(t, UINT64_MAX, apply_cb, &lv, &wm), 0);
	cr_assert_eq(storage_txn_commit(t), 0);
	cr_assert_eq(wm, n);
	uint8_t live_d[PROJ_DIGEST_LEN], d[PROJ_DIGEST_LEN];
	digest_on(st, live_d, NULL);

	/* a rebuild in place cut short: cleared and marked, never finished */
	cr_assert_eq(storage_txn_begin(st, NULL, 0, &t), 0);
	cr_assert_eq(proj_clear(t), 0);
	cr_assert_eq(meta_put_u64(t, PROJ_REBUILD_KEY, 1), 0);
	cr_assert_eq(storage_txn_commit(t), 0);
	cr_assert(rebuild_key_set(st));
	uint64_t ents;
	digest_on(st, d, &ents);
	cr_assert_eq(ents, 0);

	/* run again: the marker is there while it runs, gone when done */
	struct progress p = {.dst = st, .monotonic = true};
	struct proj_replay_stats rs;
	char errmsg[256] = "";
	cr_assert_eq(proj_replay(st, st, &lv.cfg, progress_cb, &p, &rs, errmsg, sizeof(errmsg)), 0,
	             "%s", errmsg);
	cr_assert_not(rebuild_key_set(st));
	cr_assert(p.marked_midway, "the marker is set while the rebuild runs");
	cr_assert(p.monotonic);
	cr_assert_geq(p.calls, 2);
	cr_assert_eq(p.last_done, n, "the last call is at the end");
	cr_assert_eq(p.last_total, n);
	cr_assert_eq(rs.watermark, n);
	cr_assert_eq(rs.entries, n);
	digest_on(st, d, &ents);
	cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN);
	cr_assert_eq(ents, 500);

	/* a replay into another store marks that one, not the source */
	struct storage *fresh = open_at("fresh");
	struct progress p2 = {.dst = fresh, .monotonic = true};
	cr_assert_eq(proj_replay(st, fresh, &lv.cfg, progress_cb, &p2, &rs, errmsg, sizeof(errmsg)),
	             0, "%s", errmsg);
	cr_assert(p2.marked_midway);
	cr_assert_not(rebuild_key_set(fresh));
	cr_assert_not(rebuild_key_set(st));
	storage_close(fresh);

	/* verify refuses a scratch path that exists, and leaves it */
	char scratch[128];
	fixture_path(&fx, "fresh", scratch, sizeof(scratch));
	struct proj_verify_result vr;
	int rc = proj_verify(st, scratch, &lv.cfg, NULL, NULL, &vr, errmsg, sizeof(errmsg));
	cr_assert_neq(rc, 0);
	cr_assert_not_null(strstr(errmsg, "exists"), "%s", errmsg);
	cr_assert_eq(access(scratch, F_OK), 0);
}

/* A tiny map that fills: replay grows the destination and goes on. */
Test(replay, replay_grows_a_small_destination_map)
{
	bool vg = fixture_under_valgrind();
	const int n = vg ? 300 : 2000;
	struct live lv = {.cfg = {.max_scan = 100000, .max_candidates = UINT64_MAX}};
	char *text = malloc(64 * 1024);
	cr_assert_not_null(text);
	char pad[1001];
	memset(pad, 'p', 1000);
	pad[1000] = 0;
	uint64_t seq = 1;
	write_entry(st, seq++, "create index Order k", &lv);
	for (int i = 0; i < n;) {
		size_t o = 0;
		for (int k = 0; k < 50 && i < n; k++, i++)
			o += (size_t)snprintf(text + o, 64 * 1024 - o,
			                      "upsert Order \"o-%05d\" {k: %d, pad: \"%s\"};", i,
			                      i % 10, pad);
		write_entry(st, seq++, text, &lv);
	}
	free(text);
	write_entry(st, seq++, "update Order where k == 3 set pad = \"short\"", &lv);
	uint8_t live_d[PROJ_DIGEST_LEN], d[PROJ_DIGEST_LEN];
	digest_on(st, live_d, NULL);

	struct storage *small = fixture_open(
	        &fx, "small", &(struct storage_options){.map_size = 256u << 10, .no_sync = true});
	struct storage_stats ss;
	cr_assert_eq(storage_stats(small, &ss), 0);
	uint64_t map0 = ss.map_size;
	struct proj_replay_stats rs;
	replay_into(st, small, &lv.cfg, &rs);
	cr_assert_eq(storage_stats(small, &ss), 0);
	cr_assert_gt(ss.grow_count, 0, "the map grew (from %" PRIu64 " to %" PRIu64 ")", map0,
	             ss.map_size);
	digest_on(small, d, NULL);
	cr_assert_arr_eq(d, live_d, PROJ_DIGEST_LEN);
	storage_close(small);
}
