/* Tests of the read models (projection/proj.h) against a real store in a
 * fresh temporary directory per test.
 *
 * Ops are written in the text form (optext.h, tested on its own), packed
 * and applied with proj_apply() in PROJ_LIVE mode inside a write
 * transaction, as the server's apply hook does. What a user would see is
 * asserted: entities rendered as "v2 c5 u6 {status: "Paid", total: 120}",
 * the outcome and the rewritten OpList (explosions, failed op), index
 * entries compared with keys computed here from the entities, query pages,
 * and digests before and after a failed entry.
 *
 * The planner is held to equivalence: over seeded random entity sets and
 * seeded random clauses, the ids of every index plan equal those of a
 * forced scan. Heavy tests scale down under valgrind. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval.h"
#include "fixture.h"
#include "optext.h"
#include "proj.h"
#include "storage.h"
#include "value.h"
#include "wb_error.h"

typedef Whizbang__V1__OpList OpList;
typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__Expr Expr;
typedef Whizbang__V1__Explosion Explosion;

/* ------------------------------------------------ fixture */

static struct fixture fx;
static struct storage *st;

static const struct proj_config CFG = {.max_scan = 1000000, .max_candidates = UINT64_MAX};

static struct storage *open_at(const char *name, size_t map_size)
{
	return fixture_open(&fx, name,
	                    &(struct storage_options){.map_size = map_size, .no_sync = true});
}

static void setup(void)
{
	fixture_setup(&fx, "proj");
	st = open_at("live", 64u << 20);
}

static void teardown(void)
{
	storage_close(st);
	st = NULL;
	fixture_teardown(&fx);
}

TestSuite(proj, .init = setup, .fini = teardown);

/* ------------------------------------------------ helpers */

static struct storage_txn *wtxn(struct storage *s)
{
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(s, NULL, 0, &t), 0);
	return t;
}

static struct storage_txn *rtxn(struct storage *s)
{
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(s, NULL, STORAGE_RDONLY, &t), 0);
	return t;
}

static void commit(struct storage_txn *t)
{
	cr_assert_eq(storage_txn_commit(t), 0);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parses ops text and appends the packed OpList to out. */
static void pack_text(const char *text, struct proj_buf *out)
{
	OpList *l = NULL;
	struct optext_error err = {0};
	int rc = optext_parse_ops(text, &l, &err);
	cr_assert_eq(rc, 0, "parse %.200s: column %zu: %s", text, err.column, err.message);
	size_t n = whizbang__v1__op_list__get_packed_size(l);
	cr_assert_eq(proj_buf_reserve(out, n), 0);
	whizbang__v1__op_list__pack(l, out->p + out->len);
	out->len += n;
	optext_free_ops(l);
}

static Expr *parse_where(const char *text)
{
	Expr *e = NULL;
	struct optext_error err = {0};
	int rc = optext_parse_where(text, &e, &err);
	cr_assert_eq(rc, 0, "parse %.300s: column %zu: %s", text, err.column, err.message);
	return e;
}

/* Applies packed ops as the entry at seq within txn (PROJ_LIVE); *rw
 * (may be NULL) receives the unpacked rewritten OpList. */
static void apply_packed_in(struct storage_txn *txn, uint64_t seq, const struct proj_buf *ops,
                            const struct proj_config *cfg, struct proj_outcome *o, OpList **rw,
                            struct proj_buf *rw_bytes)
{
	struct proj_buf b = {0};
	int rc = proj_apply(txn, seq, ops->p, ops->len, cfg, PROJ_LIVE, &b, o);
	cr_assert_eq(rc, 0, "proj_apply seq %" PRIu64 ": %s", seq, wb_error_name(rc));
	cr_assert_gt(b.len, 0, "a live apply rewrites the entry");
	if (rw != NULL) {
		*rw = whizbang__v1__op_list__unpack(NULL, b.len, b.p);
		cr_assert_not_null(*rw);
	}
	if (rw_bytes != NULL)
		cr_assert_eq(proj_buf_append(rw_bytes, b.p, b.len), 0);
	proj_buf_free(&b);
}

/* Applies text as the entry at seq in its own write transaction. */
static void apply_on(struct storage *s, uint64_t seq, const char *text,
                     const struct proj_config *cfg, struct proj_outcome *o, OpList **rw)
{
	struct proj_buf ops = {0};
	pack_text(text, &ops);
	struct storage_txn *t = wtxn(s);
	apply_packed_in(t, seq, &ops, cfg, o, rw, NULL);
	commit(t);
	proj_buf_free(&ops);
}

static void apply(uint64_t seq, const char *text, struct proj_outcome *o, OpList **rw)
{
	apply_on(st, seq, text, &CFG, o, rw);
}

/* Applies text and requires it to succeed. */
static void apply_ok(uint64_t seq, const char *text)
{
	struct proj_outcome o;
	apply(seq, text, &o, NULL);
	cr_assert_eq(o.error, 0, "seq %" PRIu64 " %.200s: %s %s", seq, text, wb_error_name(o.error),
	             o.message);
}

/* A value as a literal of the text form (long strings abbreviated). */
static void fmt_value(const struct proj_value *v, char *buf, size_t len)
{
	Whizbang__V1__Value pb = WHIZBANG__V1__VALUE__INIT;
	char *tmp = NULL;
	if (v->type == PROJ_STRING) {
		if (v->u.s.len > 40) {
			snprintf(buf, len, "<string of %zu bytes>", v->u.s.len);
			return;
		}
		tmp = malloc(v->u.s.len + 1);
		cr_assert_not_null(tmp);
		memcpy(tmp, v->u.s.p, v->u.s.len);
		tmp[v->u.s.len] = 0;
		pb.kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
		pb.string_value = tmp;
	} else {
		proj_value_to_pb(v, &pb);
	}
	optext_format_value(&pb, buf, len);
	free(tmp);
}

/* "v2 c5 u6 {status: "Paid", total: 120}" or "absent". The result stays
 * valid for the next 7 calls. */
static const char *render_on(struct storage *s, const char *type, const char *id)
{
	static char ring[8][4096];
	static unsigned next;
	char *b = ring[next++ % 8];
	struct storage_txn *t = rtxn(s);
	struct proj_record r;
	int rc = proj_get(t, type, strlen(type), id, strlen(id), &r);
	if (rc == WB_E_NOTFOUND) {
		storage_txn_abort(t);
		return "absent";
	}
	cr_assert_eq(rc, 0, "get %s/%s: %s", type, id, wb_error_name(rc));
	size_t o = (size_t)snprintf(b, 4096, "v%" PRIu64 " c%" PRIu64 " u%" PRIu64 " {", r.version,
	                            r.created_seq, r.updated_seq);
	size_t off = 0;
	struct proj_field f;
	bool first = true;
	while (proj_record_next(&r, &off, &f) && o < 4000) {
		char v[128];
		fmt_value(&f.v, v, sizeof(v));
		o += (size_t)snprintf(b + o, 4096 - o, "%s%.*s: %s", first ? "" : ", ",
		                      (int)f.name_len, f.name, v);
		first = false;
	}
	snprintf(b + o, 4096 - o, "}");
	storage_txn_abort(t);
	return b;
}

static const char *render(const char *type, const char *id)
{
	return render_on(st, type, id);
}

static uint64_t type_count_on(struct storage *s, const char *type)
{
	struct storage_txn *t = rtxn(s);
	uint64_t n;
	cr_assert_eq(proj_type_count(t, type, strlen(type), &n), 0);
	storage_txn_abort(t);
	return n;
}

static void digest_on(struct storage *s, uint8_t d[PROJ_DIGEST_LEN])
{
	struct storage_txn *t = rtxn(s);
	cr_assert_eq(proj_digest(t, d, NULL), 0);
	storage_txn_abort(t);
}

/* The ids of a front-coded list, joined by ','. */
static void ids_text(const Explosion *x, char *buf, size_t len)
{
	struct proj_idlist_iter it;
	proj_idlist_iter_init(&it, x->ids.data, x->ids.len);
	size_t o = 0;
	buf[0] = 0;
	int r;
	uint64_t n = 0;
	while ((r = proj_idlist_next(&it)) == 1) {
		o += (size_t)snprintf(buf + (o < len ? o : len), o < len ? len - o : 0, "%s%.*s",
		                      n ? "," : "", (int)it.id_len, (const char *)it.id);
		n++;
	}
	cr_assert_eq(r, 0, "the stored id list decodes");
	cr_assert_eq(n, x->count, "count %" PRIu64 " matches the list (%" PRIu64 ")", x->count, n);
}

static const Explosion *explosion_of(const OpList *l, size_t i)
{
	cr_assert_lt(i, l->n_ops);
	const Op *op = l->ops[i];
	if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE)
		return op->update->exploded;
	if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE)
		return op->delete_->exploded;
	cr_assert_fail("op %zu has no explosion field", i);
	return NULL;
}

/* ------------------------------------------------ apply semantics */

Test(proj, upsert_creates_then_replaces_or_merges)
{
	struct proj_outcome o;
	apply(5, "upsert Order \"o-1\" {status: \"Pending\", total: 120}", &o, NULL);
	cr_assert_eq(o.error, 0);
	cr_assert_eq(o.ops, 1);
	cr_assert_eq(o.affected, 1);
	cr_assert_str_eq(render("Order", "o-1"), "v1 c5 u5 {status: \"Pending\", total: 120}");
	cr_assert_eq(type_count_on(st, "Order"), 1);

	/* replace: the old fields go */
	apply_ok(6, "upsert Order \"o-1\" {paid: true}");
	cr_assert_str_eq(render("Order", "o-1"), "v2 c5 u6 {paid: true}");
	/* merge: the given fields are set, the others kept */
	apply_ok(7, "upsert Order \"o-1\" merge {total: 3.5, a: null}");
	cr_assert_str_eq(render("Order", "o-1"), "v3 c5 u7 {a: null, paid: true, total: 3.5}");
	/* a merge that changes nothing is still a change: version + 1 */
	apply_ok(8, "upsert Order \"o-1\" merge {paid: true}");
	cr_assert_str_eq(render("Order", "o-1"), "v4 c5 u8 {a: null, paid: true, total: 3.5}");
	/* a merge on a missing entity creates it */
	apply_ok(9, "upsert Order \"o-2\" merge {x: x\"00ff\"}");
	cr_assert_str_eq(render("Order", "o-2"), "v1 c9 u9 {x: x\"00ff\"}");
	/* types are separate */
	apply_ok(10, "upsert Item \"o-1\" {}");
	cr_assert_str_eq(render("Item", "o-1"), "v1 c10 u10 {}");
	cr_assert_eq(type_count_on(st, "Order"), 2);
	cr_assert_eq(type_count_on(st, "Item"), 1);
	cr_assert_str_eq(render("Order", "o-3"), "absent");
}

Test(proj, update_set_unset_increment)
{
	apply_ok(1, "upsert Order \"o-1\" {status: \"Paid\", total: 120, n: 3, d: 1.5}");
	apply_ok(2, "upsert Order \"o-2\" {status: \"Open\", n: 1}");
	struct proj_outcome o;
	OpList *rw;
	apply(3,
	      "update Order where status == \"Paid\" set note = \"x\", unset total, inc n by 2, "
	      "inc count by 7, inc d by 1",
	      &o, &rw);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, 1);
	cr_assert_eq(o.explosions, 1);
	cr_assert_eq(o.exploded_ids, 1);
	/* missing -> by (int), int + int -> int, double + int -> double */
	cr_assert_str_eq(render("Order", "o-1"),
	                 "v2 c1 u3 {count: 7, d: 2.5, n: 5, note: \"x\", status: \"Paid\"}");
	cr_assert_str_eq(render("Order", "o-2"), "v1 c2 u2 {n: 1, status: \"Open\"}");
	whizbang__v1__op_list__free_unpacked(rw, NULL);

	/* int + double -> double, even when the sum is whole; missing -> by
	 * (double) */
	apply_ok(4, "update Order where status == \"Paid\" inc n by 1.0, inc e by 0.25");
	cr_assert_str_eq(
	        render("Order", "o-1"),
	        "v3 c1 u4 {count: 7, d: 2.5, e: 0.25, n: 6.0, note: \"x\", status: \"Paid\"}");
	apply_ok(5, "update Order where status == \"Paid\" inc count by -10");
	cr_assert_str_eq(
	        render("Order", "o-1"),
	        "v4 c1 u5 {count: -3, d: 2.5, e: 0.25, n: 6.0, note: \"x\", status: \"Paid\"}");
	/* unset of a missing field is a no-op for the field, still a change */
	apply_ok(6, "update Order where status == \"Open\" unset nothing_here");
	cr_assert_str_eq(render("Order", "o-2"), "v2 c2 u6 {n: 1, status: \"Open\"}");
	/* set replaces a value of another type */
	apply_ok(7, "update Order where n == 1 set n = \"one\"");
	cr_assert_str_eq(render("Order", "o-2"), "v3 c2 u7 {n: \"one\", status: \"Open\"}");
}

Test(proj, increment_of_a_non_number_fails_the_whole_entry)
{
	apply_ok(1, "upsert Order \"o-1\" {status: \"Paid\", n: 1}");
	apply_ok(2, "upsert Order \"o-2\" {status: \"Paid\", n: \"text\"}");
	uint8_t before[PROJ_DIGEST_LEN], after[PROJ_DIGEST_LEN];
	digest_on(st, before);
	struct proj_outcome o;
	OpList *rw;
	/* o-1 would be fine; o-2 fails: neither changes */
	apply(3, "update Order where status == \"Paid\" inc n by 1", &o, &rw);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_eq(o.failed_op, 1);
	cr_assert_not_null(strstr(o.message, "not a number"), "%s", o.message);
	cr_assert_eq(o.affected, 0);
	digest_on(st, after);
	cr_assert_arr_eq(before, after, PROJ_DIGEST_LEN);
	cr_assert_str_eq(render("Order", "o-1"), "v1 c1 u1 {n: 1, status: \"Paid\"}");
	cr_assert(rw->applied);
	cr_assert_eq(rw->error_code, WB_BAD_REQUEST);
	cr_assert_eq(rw->failed_op, 1);
	cr_assert_str_eq(rw->error_message, o.message);
	cr_assert_null(rw->ops[0]->update->exploded, "a failed entry records no explosion");
	whizbang__v1__op_list__free_unpacked(rw, NULL);

	/* bool, null and bytes are not numbers either */
	apply_ok(4, "upsert Order \"o-3\" {b: true, z: null, x: x\"01\"}");
	const char *bad[] = {"inc b by 1", "inc z by 1", "inc x by 1.5"};
	for (size_t i = 0; i < 3; i++) {
		char text[128];
		snprintf(text, sizeof(text), "update Order where exists(b) %s", bad[i]);
		apply(5 + i, text, &o, NULL);
		cr_assert_eq(o.error, WB_BAD_REQUEST, "%s", text);
	}
	cr_assert_str_eq(render("Order", "o-3"), "v1 c4 u4 {b: true, x: x\"01\", z: null}");
}

Test(proj, int64_overflow_fails)
{
	apply_ok(1, "upsert N \"max\" {n: 9223372036854775807, k: 1}");
	apply_ok(2, "upsert N \"min\" {n: -9223372036854775808, k: 2}");
	struct proj_outcome o;
	apply(3, "update N where k == 1 inc n by 1", &o, NULL);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_not_null(strstr(o.message, "overflow"), "%s", o.message);
	apply(4, "update N where k == 2 inc n by -1", &o, NULL);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_str_eq(render("N", "max"), "v1 c1 u1 {k: 1, n: 9223372036854775807}");
	cr_assert_str_eq(render("N", "min"), "v1 c2 u2 {k: 2, n: -9223372036854775808}");
	/* right at the edge is fine */
	apply_ok(5, "update N where k == 1 inc n by 0");
	apply_ok(6, "update N where k == 2 inc n by 9223372036854775807");
	cr_assert_str_eq(render("N", "min"), "v2 c2 u6 {k: 2, n: -1}");
	/* a double sum never overflows int64: it becomes a double */
	apply_ok(7, "update N where k == 1 inc n by 1.0");
	cr_assert_str_eq(render("N", "max"), "v3 c1 u7 {k: 1, n: 9.223372036854776e+18}");
}

Test(proj, create_if_none)
{
	apply_ok(1, "upsert Order \"o-1\" {status: \"Open\"}");
	struct proj_outcome o;
	OpList *rw;
	apply(2, "update Order where status == \"Nope\" set x = 1 create \"o-9\" {status: \"New\"}",
	      &o, &rw);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, 1);
	/* exactly the create fields: the actions are not applied to it */
	cr_assert_str_eq(render("Order", "o-9"), "v1 c2 u2 {status: \"New\"}");
	const Explosion *x = explosion_of(rw, 0);
	cr_assert_not_null(x);
	cr_assert(x->created);
	cr_assert_eq(x->count, 0);
	cr_assert_eq(x->ids.len, 0);
	cr_assert_eq(type_count_on(st, "Order"), 2);
	whizbang__v1__op_list__free_unpacked(rw, NULL);

	/* again: nothing matches, but o-9 exists and did not match */
	apply(3, "update Order where status == \"Nope\" set x = 1 create \"o-9\" {status: \"New\"}",
	      &o, NULL);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_eq(o.failed_op, 1);
	cr_assert_str_eq(render("Order", "o-9"), "v1 c2 u2 {status: \"New\"}");

	/* a match: the actions apply, nothing is created */
	apply(4, "update Order where status == \"New\" set x = 1 create \"o-10\" {status: \"New\"}",
	      &o, &rw);
	cr_assert_eq(o.error, 0);
	cr_assert_str_eq(render("Order", "o-9"), "v2 c2 u4 {status: \"New\", x: 1}");
	cr_assert_str_eq(render("Order", "o-10"), "absent");
	x = explosion_of(rw, 0);
	cr_assert_not(x->created);
	cr_assert_eq(x->count, 1);
	whizbang__v1__op_list__free_unpacked(rw, NULL);
}

Test(proj, delete_by_id_and_by_where)
{
	apply_ok(1, "upsert Order \"o-1\" {s: 1}; upsert Order \"o-2\" {s: 2}; "
	            "upsert Order \"o-3\" {s: 1}; upsert Order \"o-4\" {s: 3}");
	cr_assert_eq(type_count_on(st, "Order"), 4);
	struct proj_outcome o;
	OpList *rw;
	char ids[256];

	apply(2, "delete Order \"o-2\"", &o, &rw);
	cr_assert_eq(o.error, 0);
	cr_assert_eq(o.affected, 1);
	cr_assert_str_eq(render("Order", "o-2"), "absent");
	const Explosion *x = explosion_of(rw, 0);
	cr_assert_eq(x->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_ID);
	ids_text(x, ids, sizeof(ids));
	cr_assert_str_eq(ids, "o-2");
	whizbang__v1__op_list__free_unpacked(rw, NULL);

	/* a missing id: a no-op, not an error */
	apply(3, "delete Order \"o-2\"", &o, &rw);
	cr_assert_eq(o.error, 0);
	cr_assert_eq(o.affected, 0);
	x = explosion_of(rw, 0);
	cr_assert_eq(x->count, 0);
	whizbang__v1__op_list__free_unpacked(rw, NULL);

	apply(4, "delete Order where s == 1", &o, &rw);
	cr_assert_eq(o.error, 0);
	cr_assert_eq(o.affected, 2);
	x = explosion_of(rw, 0);
	ids_text(x, ids, sizeof(ids));
	cr_assert_str_eq(ids, "o-1,o-3");
	cr_assert_eq(x->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
	cr_assert_eq(x->examined, 3);
	whizbang__v1__op_list__free_unpacked(rw, NULL);
	cr_assert_str_eq(render("Order", "o-1"), "absent");
	cr_assert_str_eq(render("Order", "o-3"), "absent");
	cr_assert_str_eq(render("Order", "o-4"), "v1 c1 u1 {s: 3}");
	cr_assert_eq(type_count_on(st, "Order"), 1);

	/* nothing matches: recorded as a no-op */
	apply(5, "delete Order where s == 1", &o, &rw);
	cr_assert_eq(o.error, 0);
	cr_assert_eq(o.affected, 0);
	x = explosion_of(rw, 0);
	cr_assert_not_null(x);
	cr_assert_eq(x->count, 0);
	cr_assert_eq(x->examined, 1);
	whizbang__v1__op_list__free_unpacked(rw, NULL);

	apply_ok(6, "delete Order \"o-4\"");
	cr_assert_eq(type_count_on(st, "Order"), 0);
}

Test(proj, entry_is_all_or_nothing)
{
	apply_ok(1, "create index Order status");
	apply_ok(2, "upsert Order \"o-1\" {status: \"Pending\", total: 10}");
	uint8_t before[PROJ_DIGEST_LEN], after[PROJ_DIGEST_LEN];
	digest_on(st, before);
	struct proj_outcome o;
	OpList *rw;
	/* op 3 sees ops 1-2 and fails on o-1's status, a string */
	apply(3,
	      "upsert Order \"o-2\" {status: \"Pending\"}; "
	      "update Order where status == \"Pending\" set status = \"B\", inc total by 1; "
	      "update Order where status == \"B\" inc status by 1; "
	      "upsert Order \"o-3\" {}",
	      &o, &rw);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_eq(o.failed_op, 3);
	cr_assert_eq(o.ops, 4);
	cr_assert_eq(o.affected, 0);
	digest_on(st, after);
	cr_assert_arr_eq(before, after, PROJ_DIGEST_LEN, "no effect of ops 1-2 stays");
	cr_assert_str_eq(render("Order", "o-1"), "v1 c2 u2 {status: \"Pending\", total: 10}");
	cr_assert_str_eq(render("Order", "o-2"), "absent");
	cr_assert_eq(type_count_on(st, "Order"), 1);
	struct storage_txn *t = rtxn(st);
	struct proj_index_info ii;
	cr_assert_eq(proj_index_get(t, "Order", "status", &ii), 0);
	cr_assert_eq(ii.entries, 1);
	storage_txn_abort(t);

	cr_assert(rw->applied);
	cr_assert_eq(rw->error_code, WB_BAD_REQUEST);
	cr_assert_eq(rw->failed_op, 3);
	cr_assert_gt(strlen(rw->error_message), 0);
	cr_assert_eq(rw->n_ops, 4);
	cr_assert_null(rw->ops[1]->update->exploded);
	cr_assert_null(rw->ops[2]->update->exploded);
	whizbang__v1__op_list__free_unpacked(rw, NULL);

	/* the same ops without the bad one all apply */
	apply_ok(4, "upsert Order \"o-2\" {status: \"Pending\"}; "
	            "update Order where status == \"Pending\" set status = \"B\", inc total by 1");
	cr_assert_str_eq(render("Order", "o-1"), "v2 c2 u4 {status: \"B\", total: 11}");
	cr_assert_str_eq(render("Order", "o-2"), "v2 c4 u4 {status: \"B\", total: 1}");
}

Test(proj, entity_too_large_fails_with_resource_exhausted)
{
	size_t n = PROJ_RECORD_MAX + 16;
	char *text = malloc(n + 64);
	cr_assert_not_null(text);
	int o0 = snprintf(text, 64, "upsert Order \"o-1\" merge {big: \"");
	memset(text + o0, 'y', n);
	strcpy(text + (size_t)o0 + n, "\"}");
	apply_ok(1, "upsert Order \"o-1\" {a: 1}");
	struct proj_outcome o;
	apply(2, text, &o, NULL);
	free(text);
	cr_assert_eq(o.error, WB_RESOURCE_EXHAUSTED, "%s", wb_error_name(o.error));
	cr_assert_eq(o.failed_op, 1);
	cr_assert_str_eq(render("Order", "o-1"), "v1 c1 u1 {a: 1}");
}

Test(proj, rewritten_oplist_records_explosions)
{
	/* o-01..o-20: status P for the even ones, total = number */
	char text[8192];
	size_t off = 0;
	for (int i = 1; i <= 20; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
		                        "upsert Order \"o-%02d\" {status: \"%s\", total: %d};", i,
		                        i % 2 == 0 ? "P" : "Q", i);
	apply_ok(1, text);
	apply_ok(2, "create index Order status");
	struct proj_outcome o;
	OpList *rw;
	apply(3,
	      "update Order where status == \"P\" and total > 5 set flag = true; "
	      "delete Order where total < 3; "
	      "update Order where status == \"nothing\" set flag = false",
	      &o, &rw);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert(rw->applied);
	cr_assert_eq(rw->error_code, 0);
	cr_assert_eq(rw->failed_op, 0);
	cr_assert_eq(o.explosions, 3);
	cr_assert_eq(o.exploded_ids, 8 + 2);
	cr_assert_eq(o.affected, 10);

	const Explosion *x = explosion_of(rw, 0);
	char ids[512];
	ids_text(x, ids, sizeof(ids));
	cr_assert_str_eq(ids, "o-06,o-08,o-10,o-12,o-14,o-16,o-18,o-20");
	cr_assert_eq(x->count, 8);
	cr_assert_eq(x->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	cr_assert_eq(x->examined, 10, "the candidates of status == \"P\"");
	cr_assert_not_null(strstr(x->plan, "index Order.status"), "%s", x->plan);
	cr_assert_null(strchr(x->plan, '\n'), "one line: %s", x->plan);
	cr_assert_not(x->created);
	/* front coding, byte for byte: o-06 whole, then 3 shared + "8", then
	 * 2 shared + "10" */
	const uint8_t want[] = {0, 4, 'o', '-', '0', '6', 3, 1, '8', 2, 2, '1', '0'};
	cr_assert_geq(x->ids.len, sizeof(want));
	cr_assert_arr_eq(x->ids.data, want, sizeof(want));
	/* 6 + 3 + 4 (o-10) + 3 * 4 + 4 (o-20) */
	cr_assert_eq(x->ids.len, 29, "%zu bytes", x->ids.len);

	x = explosion_of(rw, 1);
	ids_text(x, ids, sizeof(ids));
	cr_assert_str_eq(ids, "o-01,o-02");
	cr_assert_eq(x->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
	cr_assert_eq(x->examined, 20);
	cr_assert_not_null(strstr(x->plan, "scan Order"), "%s", x->plan);

	x = explosion_of(rw, 2);
	cr_assert_eq(x->count, 0);
	cr_assert_eq(x->examined, 0);
	cr_assert_eq(x->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);

	/* the ops themselves come back as they were sent */
	cr_assert_eq(rw->n_ops, 3);
	cr_assert_str_eq(rw->ops[0]->update->where->text, "status == \"P\" and total > 5");
	whizbang__v1__op_list__free_unpacked(rw, NULL);
	cr_assert_str_eq(render("Order", "o-06"), "v2 c1 u3 {flag: true, status: \"P\", total: 6}");
	cr_assert_str_eq(render("Order", "o-01"), "absent");
}

/* A first application checks the ops again (the ledger may hold entries
 * from an older server): a bad op is an outcome, and so are ops that do
 * not decode. */
Test(proj, ops_are_checked_when_first_applied)
{
	OpList *l = NULL;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops("upsert T \"a\" {k: 1}; upsert T \"b\" {k: 2}", &l, &err), 0);
	free(l->ops[1]->upsert->id);
	l->ops[1]->upsert->id = strdup("");
	cr_assert_not_null(l->ops[1]->upsert->id);
	struct proj_buf ops = {0};
	size_t n = whizbang__v1__op_list__get_packed_size(l);
	cr_assert_eq(proj_buf_reserve(&ops, n), 0);
	whizbang__v1__op_list__pack(l, ops.p);
	ops.len = n;
	optext_free_ops(l);
	struct storage_txn *t = wtxn(st);
	struct proj_outcome o;
	OpList *rw;
	apply_packed_in(t, 1, &ops, &CFG, &o, &rw, NULL);
	commit(t);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_eq(o.failed_op, 2);
	cr_assert_gt(strlen(o.message), 0);
	cr_assert_eq(rw->failed_op, 2);
	whizbang__v1__op_list__free_unpacked(rw, NULL);
	cr_assert_str_eq(render("T", "a"), "absent");

	/* an op that carries an explosion of its own is refused */
	proj_buf_free(&ops);
	pack_text("update T where k == 1 set z = 1", &ops);
	l = whizbang__v1__op_list__unpack(NULL, ops.len, ops.p);
	cr_assert_not_null(l);
	l->ops[0]->update->exploded = malloc(sizeof(Explosion));
	cr_assert_not_null(l->ops[0]->update->exploded);
	whizbang__v1__explosion__init(l->ops[0]->update->exploded);
	ops.len = 0;
	n = whizbang__v1__op_list__get_packed_size(l);
	cr_assert_eq(proj_buf_reserve(&ops, n), 0);
	whizbang__v1__op_list__pack(l, ops.p);
	ops.len = n;
	whizbang__v1__op_list__free_unpacked(l, NULL);
	t = wtxn(st);
	apply_packed_in(t, 2, &ops, &CFG, &o, NULL, NULL);
	commit(t);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	proj_buf_free(&ops);

	/* bytes that are no OpList */
	const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
	struct proj_buf b = {0};
	t = wtxn(st);
	cr_assert_eq(proj_apply(t, 3, junk, sizeof(junk), &CFG, PROJ_LIVE, &b, &o), 0);
	commit(t);
	cr_assert_eq(o.error, WB_INTERNAL);
	cr_assert_eq(b.len, 0);
	/* no ops at all: nothing to do */
	t = wtxn(st);
	cr_assert_eq(proj_apply(t, 4, NULL, 0, &CFG, PROJ_LIVE, &b, &o), 0);
	commit(t);
	cr_assert_eq(o.error, 0);
	cr_assert_eq(o.ops, 0);
	proj_buf_free(&b);
	uint8_t d[PROJ_DIGEST_LEN];
	uint64_t ents = 9;
	t = rtxn(st);
	cr_assert_eq(proj_digest(t, d, &ents), 0);
	storage_txn_abort(t);
	cr_assert_eq(ents, 0);
}

/* ------------------------------------------------ index checking */

struct keyl {
	uint8_t **k;
	size_t *len;
	size_t n, cap;
};

static void keyl_add(struct keyl *l, const uint8_t *k, size_t len)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->k = realloc(l->k, l->cap * sizeof(*l->k));
		l->len = realloc(l->len, l->cap * sizeof(*l->len));
		cr_assert(l->k != NULL && l->len != NULL);
	}
	l->k[l->n] = malloc(len);
	cr_assert_not_null(l->k[l->n]);
	memcpy(l->k[l->n], k, len);
	l->len[l->n++] = len;
}

static void keyl_free(struct keyl *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->k[i]);
	free(l->k);
	free(l->len);
	memset(l, 0, sizeof(*l));
}

static int bytecmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c != 0 ? c : (al > bl) - (al < bl);
}

static void keyl_sort(struct keyl *l)
{
	/* insertion sort of an index of positions: lists are small */
	for (size_t i = 1; i < l->n; i++) {
		uint8_t *k = l->k[i];
		size_t kl = l->len[i], j = i;
		while (j > 0 && bytecmp(l->k[j - 1], l->len[j - 1], k, kl) > 0) {
			l->k[j] = l->k[j - 1];
			l->len[j] = l->len[j - 1];
			j--;
		}
		l->k[j] = k;
		l->len[j] = kl;
	}
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The entries of index id (keys without the index id prefix). */
static void index_entries(struct storage_txn *t, uint32_t index_id, struct keyl *out)
{
	uint8_t pre[4];
	put_be32(pre, index_id);
	struct storage_cursor *c;
	cr_assert_eq(storage_cursor_open(t, STORAGE_DB_INDEX, &c), 0);
	struct storage_val k = {pre, 4}, v;
	int rc = storage_cursor_get(c, STORAGE_SET_RANGE, &k, &v);
	while (rc == 0 && k.len >= 4 && memcmp(k.data, pre, 4) == 0) {
		cr_assert_eq(v.len, 0, "index entries have empty values");
		keyl_add(out, (const uint8_t *)k.data + 4, k.len - 4);
		rc = storage_cursor_get(c, STORAGE_NEXT, &k, &v);
	}
	cr_assert(rc == 0 || rc == WB_E_NOTFOUND);
	storage_cursor_close(c);
}

/* The entries an index on type.field must hold, computed here from the
 * entities: value key then id, sorted. Also counts the type's entities. */
static void expected_entries(struct storage_txn *t, const char *type, const char *field,
                             struct keyl *out, uint64_t *entities)
{
	uint8_t pre[PROJ_NAME_MAX + 1];
	size_t tl = strlen(type);
	memcpy(pre, type, tl);
	pre[tl] = 0;
	struct storage_cursor *c;
	cr_assert_eq(storage_cursor_open(t, STORAGE_DB_ENTITIES, &c), 0);
	struct storage_val k = {pre, tl + 1}, v;
	*entities = 0;
	int rc = storage_cursor_get(c, STORAGE_SET_RANGE, &k, &v);
	while (rc == 0 && k.len > tl + 1 && memcmp(k.data, pre, tl + 1) == 0) {
		struct proj_record r;
		cr_assert_eq(proj_record_decode(v.data, v.len, &r), 0);
		struct proj_value fv;
		if (proj_record_find(&r, field, strlen(field), &fv)) {
			uint8_t key[PROJ_KEY_MAX + PROJ_ID_MAX];
			size_t kl = proj_key_encode(&fv, key);
			memcpy(key + kl, (const uint8_t *)k.data + tl + 1, k.len - tl - 1);
			keyl_add(out, key, kl + k.len - tl - 1);
		}
		(*entities)++;
		rc = storage_cursor_get(c, STORAGE_NEXT, &k, &v);
	}
	cr_assert(rc == 0 || rc == WB_E_NOTFOUND);
	storage_cursor_close(c);
	keyl_sort(out);
}

/* The index on type.field holds exactly the entries its entities call for,
 * its kept entry count is right, and so is the type's entity count. */
static void check_index_exact(struct storage *s, const char *type, const char *field)
{
	struct storage_txn *t = rtxn(s);
	struct proj_index_info ii;
	cr_assert_eq(proj_index_get(t, type, field, &ii), 0, "index %s.%s exists", type, field);
	struct keyl got = {0}, want = {0};
	uint64_t ents;
	index_entries(t, ii.index_id, &got);
	expected_entries(t, type, field, &want, &ents);
	cr_assert_eq(got.n, want.n, "index %s.%s: %zu entries, %zu expected", type, field, got.n,
	             want.n);
	for (size_t i = 0; i < got.n; i++)
		cr_assert(bytecmp(got.k[i], got.len[i], want.k[i], want.len[i]) == 0,
		          "index %s.%s: entry %zu differs", type, field, i);
	cr_assert_eq(ii.entries, want.n, "index %s.%s: kept count %" PRIu64 ", %zu entries", type,
	             field, ii.entries, want.n);
	uint64_t kept;
	cr_assert_eq(proj_type_count(t, type, strlen(type), &kept), 0);
	cr_assert_eq(kept, ents, "type %s: kept count %" PRIu64 ", %" PRIu64 " entities", type,
	             kept, ents);
	keyl_free(&got);
	keyl_free(&want);
	storage_txn_abort(t);
}

struct idxlist {
	char type[8][PROJ_NAME_MAX + 1];
	char field[8][PROJ_NAME_MAX + 1];
	uint32_t id[8];
	uint64_t entries[8];
	size_t n;
};

static int collect_index_cb(const struct proj_index_info *info, void *arg)
{
	struct idxlist *l = arg;
	cr_assert_lt(l->n, 8);
	snprintf(l->type[l->n], sizeof(l->type[0]), "%s", info->type);
	snprintf(l->field[l->n], sizeof(l->field[0]), "%s", info->field);
	l->id[l->n] = info->index_id;
	l->entries[l->n] = info->entries;
	l->n++;
	return 0;
}

static void list_indexes(struct storage *s, const char *type, struct idxlist *l)
{
	memset(l, 0, sizeof(*l));
	struct storage_txn *t = rtxn(s);
	cr_assert_eq(proj_index_list(t, type, collect_index_cb, l), 0);
	storage_txn_abort(t);
}

static void check_all_indexes(struct storage *s)
{
	struct idxlist l;
	list_indexes(s, NULL, &l);
	for (size_t i = 0; i < l.n; i++)
		check_index_exact(s, l.type[i], l.field[i]);
}

/* ------------------------------------------------ random values and clauses */

static uint64_t rng_state;

static size_t rndn(size_t n)
{
	return (size_t)(fixture_splitmix(&rng_state) % n);
}

static bool chance(unsigned percent)
{
	return rndn(100) < percent;
}

/* Literal pools, by kind. Long strings share a 200-byte prefix (the length
 * an index key keeps) or differ just before it. */
static const char *lit_int[] = {"0",
                                "1",
                                "-1",
                                "2",
                                "3",
                                "5",
                                "-5",
                                "100",
                                "9007199254740992",
                                "9007199254740993",
                                "-9007199254740993",
                                "9223372036854775807",
                                "-9223372036854775808"};
static const char *lit_dbl[] = {"0.0",
                                "-0.0",
                                "0.5",
                                "-2.5",
                                "1.0",
                                "100.0",
                                "2.0",
                                "9007199254740992.0",
                                "1e300",
                                "-1e300",
                                "5e-324",
                                "1.5",
                                "9.2233720368547758e+18"};
static const char *lit_str[] = {"\"\"",         "\"a\"",     "\"ab\"",      "\"abc\"",
                                "\"abd\"",      "\"b\"",     "\"Pending\"", "\"Pend\"",
                                "\"P\\u00e9\"", "\"a\\nb\"", "\"Pending \""};
static const char *lit_other[] = {"true",    "false",     "null",    "x\"\"",
                                  "x\"00\"", "x\"0001\"", "x\"ff\"", "x\"61\""};
static char lit_long[6][300];

static void init_long_literals(void)
{
	/* "L"*200, "L"*200+"a", "L"*200+"b", "L"*199+"M", "L"*250, "LL" */
	static const size_t base[] = {200, 200, 200, 199, 250, 2};
	static const char *tail[] = {"", "a", "b", "M", "", ""};
	for (size_t i = 0; i < 6; i++) {
		char *p = lit_long[i];
		*p++ = '"';
		memset(p, 'L', base[i]);
		p += base[i];
		p += sprintf(p, "%s\"", tail[i]);
	}
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *pick_int(void)
{
	return lit_int[rndn(NELEM(lit_int))];
}
static const char *pick_dbl(void)
{
	return lit_dbl[rndn(NELEM(lit_dbl))];
}
static const char *pick_str(void)
{
	return lit_str[rndn(NELEM(lit_str))];
}
static const char *pick_long(void)
{
	return chance(80) ? lit_long[rndn(6)] : pick_str();
}
static const char *pick_any(void)
{
	switch (rndn(5)) {
	case 0:
		return pick_int();
	case 1:
		return pick_dbl();
	case 2:
		return pick_str();
	case 3:
		return lit_long[rndn(6)];
	default:
		return lit_other[rndn(NELEM(lit_other))];
	}
}

/* Fields of the random entities, each with its kind of values; q is never
 * set. */
static const char *const FIELDS[] = {"n", "d", "s", "l", "b", "x", "z", "m", "u"};
#define NFIELDS 9

static const char *value_for(size_t f)
{
	switch (f) {
	case 0: /* numbers, int and double mixed */
		return chance(50) ? pick_int() : pick_dbl();
	case 1:
		return pick_dbl();
	case 2:
		return pick_str();
	case 3:
		return pick_long();
	case 4:
		return chance(50) ? "true" : "false";
	case 5:
		return lit_other[3 + rndn(5)];
	case 6:
		return chance(40) ? "null" : pick_int();
	default:
		return pick_any();
	}
}

/* Appends an upsert of a random entity of type T with id to text. */
static size_t gen_upsert(char *buf, size_t len, const char *type, const char *id, bool merge)
{
	size_t o =
	        (size_t)snprintf(buf, len, "upsert %s \"%s\" %s{", type, id, merge ? "merge " : "");
	bool first = true;
	for (size_t f = 0; f < NFIELDS; f++) {
		if (chance(25))
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%s: %s", first ? "" : ", ", FIELDS[f],
		                      value_for(f));
		first = false;
	}
	o += (size_t)snprintf(buf + o, len - o, "}");
	cr_assert_lt(o, len);
	return o;
}

struct sb {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sb *b, const char *s)
{
	size_t n = strlen(s);
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
	memcpy(b->p + b->len, s, n + 1);
	b->len += n;
}

static const char *pick_field(void)
{
	return chance(8) ? "q" : FIELDS[rndn(NFIELDS)];
}

static const char *pick_literal_for_compare(void)
{
	return chance(75) ? value_for(rndn(NFIELDS)) : pick_any();
}

static void gen_expr(struct sb *b, int depth)
{
	static const char *ops[] = {"==", "!=", "<", "<=", ">", ">="};
	if (depth >= 3 || chance(40)) {
		char tmp[512];
		size_t r = rndn(100);
		if (r < 45) {
			snprintf(tmp, sizeof(tmp), "%s %s %s", pick_field(), ops[rndn(6)],
			         pick_literal_for_compare());
			sb_add(b, tmp);
		} else if (r < 70) {
			sb_add(b, pick_field());
			sb_add(b, chance(30) ? " not in (" : " in (");
			size_t n = 1 + rndn(4);
			for (size_t i = 0; i < n; i++) {
				if (i)
					sb_add(b, ", ");
				sb_add(b, pick_literal_for_compare());
			}
			sb_add(b, ")");
		} else if (r < 80) {
			snprintf(tmp, sizeof(tmp), "exists(%s)", pick_field());
			sb_add(b, tmp);
		} else {
			const char *p;
			size_t k = rndn(10);
			if (k < 4)
				p = lit_long[rndn(6)];
			else if (k < 5)
				p = "\"\"";
			else if (k < 6)
				p = "\"Pen\"";
			else
				p = lit_str[rndn(NELEM(lit_str))];
			snprintf(tmp, sizeof(tmp), "starts_with(%s, %s)",
			         chance(50) ? "l" : pick_field(), p);
			sb_add(b, tmp);
		}
		return;
	}
	size_t r = rndn(10);
	if (r < 2) {
		sb_add(b, "not (");
		gen_expr(b, depth + 1);
		sb_add(b, ")");
		return;
	}
	const char *join = r < 6 ? " and " : " or ";
	size_t n = 2 + rndn(3);
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_add(b, join);
		sb_add(b, "(");
		gen_expr(b, depth + 1);
		sb_add(b, ")");
	}
}

/* Random entity ids: short ones sharing prefixes, and a few long ones. */
static void gen_id(char *buf, size_t len, size_t i)
{
	if (i % 97 == 96) {
		memset(buf, 'k', 240);
		snprintf(buf + 240, len - 240, "%zu", i);
		return;
	}
	snprintf(buf, len, "e%zu", i);
}

static void populate(struct storage *s, uint64_t *seq, const char *type, size_t n)
{
	char *text = malloc(256 * 1024);
	cr_assert_not_null(text);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char id[300];
		gen_id(id, sizeof(id), i);
		o += gen_upsert(text + o, 256 * 1024 - o, type, id, false);
		text[o++] = ';';
		text[o] = 0;
		if (o > 200 * 1024 || i + 1 == n) {
			struct proj_outcome out;
			apply_on(s, (*seq)++, text, &CFG, &out, NULL);
			cr_assert_eq(out.error, 0, "%s", out.message);
			o = 0;
		}
	}
	free(text);
}

/* One random mutation of type's entities (ids from 0..n). */
static void gen_mutation(char *buf, size_t len, const char *type, size_t n)
{
	char id[300];
	gen_id(id, sizeof(id), rndn(n + n / 4));
	size_t r = rndn(100);
	if (r < 50) {
		gen_upsert(buf, len, type, id, chance(50));
	} else if (r < 80) {
		struct sb w = {0};
		gen_expr(&w, 2);
		const char *f = FIELDS[rndn(NFIELDS)];
		size_t k = rndn(10);
		if (k < 5)
			snprintf(buf, len, "update %s where %s set %s = %s", type, w.p, f,
			         value_for(rndn(NFIELDS)));
		else if (k < 8)
			snprintf(buf, len, "update %s where %s unset %s", type, w.p, f);
		else /* fails when a match holds a non-number in n */
			snprintf(buf, len, "update %s where %s inc n by %s", type, w.p,
			         chance(50) ? "1" : "0.5");
		free(w.p);
	} else if (r < 97) {
		snprintf(buf, len, "delete %s \"%s\"", type, id);
	} else {
		/* narrow clauses: a broad one would empty the type */
		size_t f = rndn(NFIELDS);
		snprintf(buf, len, "delete %s where %s == %s", type, FIELDS[f], value_for(f));
	}
}

/* ------------------------------------------------ indexes */

Test(proj, create_index_over_existing_entities)
{
	apply_ok(1, "upsert Order \"o-1\" {status: \"A\"}; upsert Order \"o-2\" {status: 2}; "
	            "upsert Order \"o-3\" {other: 1}; upsert Order \"o-4\" {status: null}; "
	            "upsert Item \"o-5\" {status: \"A\"}");
	struct proj_outcome o;
	apply(7, "create index Order status", &o, NULL);
	cr_assert_eq(o.error, 0, "%s", o.message);
	struct storage_txn *t = rtxn(st);
	struct proj_index_info ii;
	cr_assert_eq(proj_index_get(t, "Order", "status", &ii), 0);
	cr_assert_eq(ii.entries, 3, "o-3 has no status; Item is another type");
	cr_assert_eq(ii.created_seq, 7);
	cr_assert_str_eq(ii.type, "Order");
	cr_assert_str_eq(ii.field, "status");
	cr_assert_eq(proj_index_get(t, "Item", "status", &ii), WB_E_NOTFOUND);
	storage_txn_abort(t);
	check_index_exact(st, "Order", "status");

	/* within one entry: an index sees the ops before it, and the ops after
	 * it keep it */
	apply_ok(8, "upsert Order \"o-6\" {status: \"B\"}; drop index Order status; "
	            "create index Order status; create index Order other; "
	            "upsert Order \"o-7\" {status: \"C\", other: 2}; "
	            "update Order where status == \"A\" set status = \"D\", set other = 3");
	check_index_exact(st, "Order", "status");
	check_index_exact(st, "Order", "other");
	t = rtxn(st);
	cr_assert_eq(proj_index_get(t, "Order", "status", &ii), 0);
	cr_assert_eq(ii.entries, 5);
	cr_assert_eq(ii.created_seq, 8);
	storage_txn_abort(t);
}

Test(proj, index_list_duplicate_and_missing)
{
	apply_ok(1, "create index Order status; create index Order customer; "
	            "create index Ord x; create index Item sku; create index Order2 a");
	struct idxlist l;
	list_indexes(st, NULL, &l);
	cr_assert_eq(l.n, 5);
	/* ordered by type then field */
	const char *want[][2] = {{"Item", "sku"},
	                         {"Ord", "x"},
	                         {"Order", "customer"},
	                         {"Order", "status"},
	                         {"Order2", "a"}};
	for (size_t i = 0; i < 5; i++) {
		cr_assert_str_eq(l.type[i], want[i][0]);
		cr_assert_str_eq(l.field[i], want[i][1]);
	}
	list_indexes(st, "", &l);
	cr_assert_eq(l.n, 5);
	list_indexes(st, "Order", &l);
	cr_assert_eq(l.n, 2, "type Order only, not Ord or Order2");
	cr_assert_str_eq(l.field[0], "customer");
	cr_assert_str_eq(l.field[1], "status");
	list_indexes(st, "Ord", &l);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.field[0], "x");
	list_indexes(st, "Nothing", &l);
	cr_assert_eq(l.n, 0);

	uint8_t before[PROJ_DIGEST_LEN], after[PROJ_DIGEST_LEN];
	digest_on(st, before);
	struct proj_outcome o;
	apply(2, "create index Order status", &o, NULL);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_eq(o.failed_op, 1);
	cr_assert_not_null(strstr(o.message, "exists"), "%s", o.message);
	apply(3, "drop index Order nothing", &o, NULL);
	cr_assert_eq(o.error, WB_NOT_FOUND);
	cr_assert_eq(o.failed_op, 1);
	apply(4, "drop index Nothing status", &o, NULL);
	cr_assert_eq(o.error, WB_NOT_FOUND);
	/* in the middle of an entry: the drop before it does not stay */
	apply(5, "drop index Order customer; create index Order status", &o, NULL);
	cr_assert_eq(o.error, WB_BAD_REQUEST);
	cr_assert_eq(o.failed_op, 2);
	digest_on(st, after);
	cr_assert_arr_eq(before, after, PROJ_DIGEST_LEN);
	list_indexes(st, "Order", &l);
	cr_assert_eq(l.n, 2);
}

Test(proj, drop_index_removes_its_entries_only)
{
	char text[256];
	for (int i = 0; i < 300; i++) {
		snprintf(text, sizeof(text), "upsert Order \"o-%d\" {a: %d, b: \"%d\"}", i, i % 7,
		         i);
		apply_ok((uint64_t)i + 1, text);
	}
	apply_ok(1000, "create index Order a; create index Order b");
	struct idxlist l;
	list_indexes(st, "Order", &l);
	cr_assert_eq(l.n, 2);
	uint32_t a_id = l.id[0], b_id = l.id[1];
	cr_assert_eq(l.entries[0], 300);
	struct proj_outcome o;
	apply(1001, "drop index Order a", &o, NULL);
	cr_assert_eq(o.error, 0, "%s", o.message);
	struct storage_txn *t = rtxn(st);
	struct keyl k = {0};
	index_entries(t, a_id, &k);
	cr_assert_eq(k.n, 0, "%zu entries of the dropped index remain", k.n);
	index_entries(t, b_id, &k);
	cr_assert_eq(k.n, 300);
	keyl_free(&k);
	struct proj_index_info ii;
	cr_assert_eq(proj_index_get(t, "Order", "a", &ii), WB_E_NOTFOUND);
	storage_txn_abort(t);
	check_index_exact(st, "Order", "b");
	/* recreated: a new id, built again */
	apply_ok(1002, "create index Order a");
	t = rtxn(st);
	cr_assert_eq(proj_index_get(t, "Order", "a", &ii), 0);
	cr_assert_neq(ii.index_id, a_id);
	cr_assert_eq(ii.entries, 300);
	storage_txn_abort(t);
	check_index_exact(st, "Order", "a");
	/* the plans use it again */
	Expr *e = parse_where("a == 3");
	t = rtxn(st);
	struct proj_plan plan;
	cr_assert_eq(proj_explain(t, "Order", 5, e, &CFG, &plan), 0);
	cr_assert_eq(plan.strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	storage_txn_abort(t);
	optext_free_expr(e);
}

Test(proj, indexes_stay_exact_under_random_ops)
{
	init_long_literals();
	bool vg = fixture_under_valgrind();
	size_t nops = vg ? 120 : 1500;
	uint64_t seq = 1;
	rng_state = 42;
	/* some indexes before the entities exist, some after */
	apply_ok(seq++, "create index T n; create index T s; create index T m; create index U n");
	populate(st, &seq, "T", 60);
	populate(st, &seq, "U", 20);
	apply_ok(seq++, "create index T l; create index T x; create index T z; create index T b");
	check_all_indexes(st);
	char *text = malloc(4096);
	cr_assert_not_null(text);
	size_t failed = 0;
	uint64_t affected = 0;
	for (size_t i = 0; i < nops; i++) {
		gen_mutation(text, 4096, chance(80) ? "T" : "U", 60);
		struct proj_outcome o;
		apply(seq++, text, &o, NULL);
		failed += o.error != 0;
		affected += o.affected;
		if (i % 25 == 24)
			check_all_indexes(st);
		if (i % 300 == 150) {
			/* an index dropped and created again mid-run */
			apply_ok(seq++, "drop index T s");
			apply_ok(seq++, "create index T s");
		}
	}
	free(text);
	check_all_indexes(st);
	cr_log_info("random index ops: %zu, %zu refused, %" PRIu64 " entity changes, %" PRIu64
	            " entities left",
	            nops, failed, affected, type_count_on(st, "T"));
	cr_assert_gt(affected, nops, "the random ops change entities");
	cr_assert_lt(failed, nops / 4, "most random ops apply (%zu of %zu failed)", failed, nops);
}

/* ------------------------------------------------ planner */

struct ids_copy {
	struct proj_ids ids;
	uint64_t examined;
	struct proj_plan plan;
};

static int explode(struct storage_txn *t, const char *type, const Expr *e,
                   const struct proj_config *cfg, struct ids_copy *out)
{
	return proj_explode(t, type, strlen(type), e, cfg, &out->ids, &out->plan, &out->examined);
}

static bool same_ids(const struct proj_ids *a, const struct proj_ids *b, size_t *at)
{
	size_t n = a->n < b->n ? a->n : b->n;
	for (size_t i = 0; i < n; i++) {
		size_t al, bl;
		const uint8_t *ap = proj_ids_get(a, i, &al), *bp = proj_ids_get(b, i, &bl);
		if (al != bl || memcmp(ap, bp, al) != 0) {
			*at = i;
			return false;
		}
	}
	*at = n;
	return a->n == b->n;
}

Test(proj, planner_index_plans_equal_scans)
{
	init_long_literals();
	bool vg = fixture_under_valgrind();
	size_t rounds = vg ? 1 : 4, nent = vg ? 120 : 300, nexpr = vg ? 150 : 800;
	const struct proj_config scan = {.max_scan = UINT64_MAX, .force_scan = true};
	const struct proj_config idx = {.max_scan = UINT64_MAX, .max_candidates = UINT64_MAX};
	size_t total = 0, by_strategy[3] = {0}, nonempty = 0, examined_less = 0;
	char *text = malloc(4096);
	cr_assert_not_null(text);
	for (size_t round = 0; round < rounds; round++) {
		/* each round its own store, seed and set of indexed fields */
		char name[32];
		snprintf(name, sizeof(name), "plan%zu", round);
		struct storage *s = open_at(name, 64u << 20);
		rng_state = 1000 + round;
		uint64_t seq = 1;
		char idx_text[256] = "";
		size_t o = 0, nidx = 0;
		for (size_t f = 0; f + 1 < NFIELDS; f++) /* u is never indexed */
			if (chance(65)) {
				o += (size_t)snprintf(idx_text + o, sizeof(idx_text) - o,
				                      "%screate index T %s", nidx ? "; " : "",
				                      FIELDS[f]);
				nidx++;
			}
		if (nidx == 0)
			snprintf(idx_text, sizeof(idx_text), "create index T s");
		/* half of the indexes exist before the entities */
		if (round % 2 == 0)
			apply_on(s, seq++, idx_text, &CFG, &(struct proj_outcome){0}, NULL);
		populate(s, &seq, "T", nent);
		populate(s, &seq, "Tx", 20); /* a neighbouring type */
		if (round % 2 == 1)
			apply_on(s, seq++, idx_text, &CFG, &(struct proj_outcome){0}, NULL);
		for (size_t phase = 0; phase < 2; phase++) {
			if (phase == 1) {
				/* change the entities through the indexes */
				for (size_t i = 0; i < nent / 3; i++) {
					gen_mutation(text, 4096, "T", nent);
					struct proj_outcome out;
					apply_on(s, seq++, text, &CFG, &out, NULL);
				}
			}
			struct storage_txn *t = rtxn(s);
			struct ids_copy a = {0}, b = {0};
			for (size_t i = 0; i < nexpr / 2; i++) {
				struct sb w = {0};
				gen_expr(&w, 0);
				Expr *e = parse_where(w.p);
				int ra = explode(t, "T", e, &idx, &a);
				int rb = explode(t, "T", e, &scan, &b);
				cr_assert_eq(ra, 0, "%s: %s", w.p, wb_error_name(ra));
				cr_assert_eq(rb, 0, "%s: %s", w.p, wb_error_name(rb));
				size_t at;
				if (!same_ids(&a.ids, &b.ids, &at)) {
					size_t l1 = 0, l2 = 0;
					const uint8_t *p1 =
					        at < a.ids.n ? proj_ids_get(&a.ids, at, &l1) : NULL;
					const uint8_t *p2 =
					        at < b.ids.n ? proj_ids_get(&b.ids, at, &l2) : NULL;
					cr_assert_fail("round %zu phase %zu: %s\nindex plan (%s): "
					               "%zu ids, "
					               "scan: %zu ids; first difference at %zu: "
					               "%.*s vs %.*s",
					               round, phase, w.p, a.plan.text, a.ids.n,
					               b.ids.n, at, (int)l1,
					               p1 ? (const char *)p1 : "-", (int)l2,
					               p2 ? (const char *)p2 : "-");
				}
				cr_assert_eq(b.plan.strategy,
				             WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
				cr_assert_eq(b.examined, b.plan.type_entities);
				cr_assert_leq(a.ids.n, a.examined);
				by_strategy[a.plan.strategy]++;
				examined_less += a.examined < b.examined;
				nonempty += a.ids.n > 0;
				total++;
				optext_free_expr(e);
				free(w.p);
			}
			proj_ids_free(&a.ids);
			proj_ids_free(&b.ids);
			storage_txn_abort(t);
		}
		check_all_indexes(s);
		storage_close(s);
	}
	free(text);
	cr_log_info("planner equivalence: %zu clauses, %zu scan, %zu index, %zu union, %zu "
	            "non-empty, %zu read fewer candidates than a scan",
	            total, by_strategy[0], by_strategy[1], by_strategy[2], nonempty, examined_less);
	/* the comparison means something only when both sides vary */
	cr_assert_gt(by_strategy[1], total / 5, "index plans: %zu of %zu", by_strategy[1], total);
	cr_assert_gt(by_strategy[2], total / 50, "union plans: %zu of %zu", by_strategy[2], total);
	cr_assert_gt(nonempty, total / 5);
	cr_assert_lt(nonempty, total - total / 10);
}

static Whizbang__V1__PlanStrategy strategy_of(struct storage_txn *t, const char *where,
                                              char *first_line, size_t len)
{
	Expr *e = parse_where(where);
	struct proj_plan p;
	cr_assert_eq(proj_explain(t, "Order", 5, e, &CFG, &p), 0);
	optext_free_expr(e);
	const char *nl = strchr(p.text, '\n');
	size_t n = nl ? (size_t)(nl - p.text) : strlen(p.text);
	snprintf(first_line, len, "%.*s", (int)n, p.text);
	return p.strategy;
}

Test(proj, planner_strategies)
{
	char text[16384];
	size_t o = 0;
	/* status: 4 values over 200 entities; customer: 50 values; total not
	 * indexed */
	for (int i = 0; i < 200; i++)
		o += (size_t)snprintf(
		        text + o, sizeof(text) - o,
		        "upsert Order \"o-%03d\" {status: \"s%d\", customer: \"c%d\", "
		        "total: %d};",
		        i, i % 4, i % 50, i);
	apply_ok(1, text);
	apply_ok(2, "create index Order status; create index Order customer");
	struct storage_txn *t = rtxn(st);
	char line[1100];
	struct {
		const char *where;
		Whizbang__V1__PlanStrategy s;
		const char *first; /* the plan's first line starts with this */
	} cases[] = {
	        {"status == \"s1\"", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX, "index Order.status"},
	        {"status == \"s1\" and total > 3", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX,
	         "index Order.status"},
	        {"total > 3 and status in (\"s1\", \"s2\")",
	         WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX, "index Order.status"},
	        /* the most selective index drives */
	        {"status == \"s1\" and customer == \"c5\"", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX,
	         "index Order.customer"},
	        {"customer == \"c5\" and status == \"s1\"", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX,
	         "index Order.customer"},
	        {"status == \"s1\" or customer == \"c5\"",
	         WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX_UNION, "union of 2"},
	        {"customer >= \"c4\"", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX,
	         "index Order.customer"},
	        {"starts_with(customer, \"c1\")", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX,
	         "index Order.customer"},
	        {"exists(status)", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX, "index Order.status"},
	        {"status != \"s1\"", WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN, "scan Order"},
	        {"not (status == \"s1\")", WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN, "scan Order"},
	        {"status not in (\"s1\")", WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN, "scan Order"},
	        {"status == \"s1\" or total > 3", WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN,
	         "scan Order"},
	        {"total > 3", WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN, "scan Order"},
	        {"status != \"s1\" and customer == \"c5\"", WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX,
	         "index Order.customer"},
	};
	for (size_t i = 0; i < NELEM(cases); i++) {
		Whizbang__V1__PlanStrategy s = strategy_of(t, cases[i].where, line, sizeof(line));
		cr_assert_eq(s, cases[i].s, "%s: strategy %d, want %d (%s)", cases[i].where, s,
		             cases[i].s, line);
		cr_assert(strncmp(line, cases[i].first, strlen(cases[i].first)) == 0,
		          "%s: plan starts \"%s\", want \"%s\"", cases[i].where, line,
		          cases[i].first);
	}
	/* estimates: an index equality estimates its matches, a scan the type */
	Expr *e = parse_where("customer == \"c5\"");
	struct proj_plan p;
	cr_assert_eq(proj_explain(t, "Order", 5, e, &CFG, &p), 0);
	cr_assert_eq(p.estimate, 4);
	cr_assert_eq(p.type_entities, 200);
	cr_assert_not(p.refused);
	optext_free_expr(e);
	e = parse_where("total > 3");
	cr_assert_eq(proj_explain(t, "Order", 5, e, &CFG, &p), 0);
	cr_assert_eq(p.estimate, 200);
	optext_free_expr(e);
	storage_txn_abort(t);
}

struct page {
	char ids[64][300];
	size_t n;
	int stop_after; /* > 0: return PROJ_STOP at this visit */
	int fail_after; /* > 0: return 77 at this visit */
};

static int page_cb(const char *id, size_t id_len, const struct proj_record *r, void *arg)
{
	(void)r;
	struct page *p = arg;
	cr_assert_lt(p->n, 64);
	cr_assert_lt(id_len, 300);
	memcpy(p->ids[p->n], id, id_len);
	p->ids[p->n][id_len] = 0;
	p->n++;
	if (p->stop_after > 0 && (int)p->n == p->stop_after)
		return PROJ_STOP;
	if (p->fail_after > 0 && (int)p->n == p->fail_after)
		return 77;
	return 0;
}

/* ------------------------------------------------ QUERY_TOO_EXPENSIVE */

/* Runs the refusal scenario on s and returns the rewritten bytes of the
 * refused entry in rw. */
static void refusal_scenario(struct storage *s, struct proj_buf *rw, struct proj_outcome *o)
{
	const struct proj_config cfg = {.max_scan = 10, .max_candidates = UINT64_MAX};
	char text[4096];
	size_t off = 0;
	for (int i = 0; i < 10; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
		                        "upsert Order \"o-%02d\" {status: \"%s\", n: %d};", i,
		                        i < 3 ? "P" : "Q", i);
	apply_on(s, 1, text, &cfg, o, NULL);
	cr_assert_eq(o->error, 0);
	/* exactly max_scan entities: a scan is allowed */
	apply_on(s, 2, "update Order where status == \"P\" set y = 1", &cfg, o, NULL);
	cr_assert_eq(o->error, 0, "%s", o->message);
	apply_on(s, 3, "upsert Order \"o-10\" {status: \"P\"}", &cfg, o, NULL);
	cr_assert_eq(type_count_on(s, "Order"), 11);
	uint8_t before[PROJ_DIGEST_LEN], after[PROJ_DIGEST_LEN];
	digest_on(s, before);
	struct proj_buf ops = {0};
	pack_text("upsert Order \"o-new\" {status: \"P\"}; update Order where status == \"P\" set "
	          "y = 2",
	          &ops);
	struct storage_txn *t = wtxn(s);
	apply_packed_in(t, 4, &ops, &cfg, o, NULL, rw);
	commit(t);
	proj_buf_free(&ops);
	digest_on(s, after);
	cr_assert_arr_eq(before, after, PROJ_DIGEST_LEN, "nothing changed");
}

Test(proj, query_too_expensive_refuses_unindexed_scans)
{
	struct proj_buf rw1 = {0}, rw2 = {0};
	struct proj_outcome o1, o2;
	refusal_scenario(st, &rw1, &o1);
	cr_assert_eq(o1.error, WB_QUERY_TOO_EXPENSIVE, "%s", wb_error_name(o1.error));
	cr_assert_eq(o1.failed_op, 2);
	/* op 1 made it 12 entities: the refusal sees the state before it */
	cr_assert_not_null(strstr(o1.message, "12 entities"), "%s", o1.message);
	cr_assert_not_null(strstr(o1.message, "max-scan"), "%s", o1.message);
	cr_assert_str_eq(render("Order", "o-new"), "absent");
	cr_assert_str_eq(render("Order", "o-00"), "v2 c1 u2 {n: 0, status: \"P\", y: 1}");

	/* deterministic: a second store gives the same outcome, byte for byte */
	struct storage *s2 = open_at("again", 16u << 20);
	refusal_scenario(s2, &rw2, &o2);
	storage_close(s2);
	cr_assert_eq(o2.error, o1.error);
	cr_assert_eq(o2.failed_op, o1.failed_op);
	cr_assert_str_eq(o2.message, o1.message);
	cr_assert_eq(rw1.len, rw2.len);
	cr_assert_arr_eq(rw1.p, rw2.p, rw1.len);
	proj_buf_free(&rw1);
	proj_buf_free(&rw2);

	/* the same in every entry point: explode, explain, query, delete */
	const struct proj_config cfg = {.max_scan = 10, .max_candidates = UINT64_MAX};
	struct storage_txn *t = rtxn(st);
	Expr *e = parse_where("status == \"P\"");
	struct proj_ids ids = {0};
	uint64_t ex = 99;
	cr_assert_eq(proj_explode(t, "Order", 5, e, &cfg, &ids, NULL, &ex), WB_QUERY_TOO_EXPENSIVE);
	cr_assert_eq(ex, 0, "refused before it starts");
	struct proj_plan p;
	cr_assert_eq(proj_explain(t, "Order", 5, e, &cfg, &p), 0);
	cr_assert(p.refused);
	struct proj_query_info qi;
	cr_assert_eq(proj_query(t, "Order", 5, e, NULL, 0, 1, &cfg, NULL, NULL, &qi),
	             WB_QUERY_TOO_EXPENSIVE);
	/* without a clause a query reads no more than it answers: allowed */
	struct page pg = {0};
	cr_assert_eq(proj_query(t, "Order", 5, NULL, NULL, 0, 2, &cfg, page_cb, &pg, &qi), 0);
	cr_assert_eq(pg.n, 2);
	cr_assert_eq(qi.examined, 2);
	cr_assert_not(qi.end);
	optext_free_expr(e);
	storage_txn_abort(t);
	struct proj_outcome o;
	apply_on(st, 5, "delete Order where n > 100", &cfg, &o, NULL);
	cr_assert_eq(o.error, WB_QUERY_TOO_EXPENSIVE);

	/* with an index the update is allowed; clauses that still scan are not */
	apply_on(st, 6, "create index Order status", &cfg, &o, NULL);
	cr_assert_eq(o.error, 0);
	OpList *rw;
	apply_on(st, 7, "update Order where status == \"P\" set y = 2", &cfg, &o, &rw);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, 4);
	cr_assert_eq(explosion_of(rw, 0)->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	whizbang__v1__op_list__free_unpacked(rw, NULL);
	const char *still[] = {"status == \"P\" or n == 1", "not (status == \"Q\")",
	                       "status != \"Q\"", "n == 1"};
	for (size_t i = 0; i < NELEM(still); i++) {
		char text[128];
		snprintf(text, sizeof(text), "update Order where %s set y = 3", still[i]);
		apply_on(st, 8 + i, text, &cfg, &o, NULL);
		cr_assert_eq(o.error, WB_QUERY_TOO_EXPENSIVE, "%s", still[i]);
	}
	/* a delete by id never scans */
	apply_on(st, 20, "delete Order \"o-00\"", &cfg, &o, NULL);
	cr_assert_eq(o.error, 0);
}

/* The candidate budget's scenario on s: 10 orders, 4 of them "P", an
 * index on status; an update by status == "P" at the budget (4), one more
 * "P", the same update over it. The refused entry's rewritten bytes go to
 * rw. */
static void budget_scenario(struct storage *s, const struct proj_config *cfg, struct proj_buf *rw,
                            struct proj_outcome *o)
{
	char text[4096];
	size_t off = 0;
	for (int i = 0; i < 10; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
		                        "upsert Order \"o-%02d\" {status: \"%s\", n: %d};", i,
		                        i < 4 ? "P" : "Q", i);
	off += (size_t)snprintf(text + off, sizeof(text) - off, "create index Order status");
	apply_on(s, 1, text, cfg, o, NULL);
	cr_assert_eq(o->error, 0, "%s", o->message);
	/* exactly max_candidates index entries: allowed */
	OpList *l;
	apply_on(s, 2, "update Order where status == \"P\" set y = 1", cfg, o, &l);
	cr_assert_eq(o->error, 0, "%s", o->message);
	cr_assert_eq(explosion_of(l, 0)->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	cr_assert_eq(explosion_of(l, 0)->examined, 4);
	whizbang__v1__op_list__free_unpacked(l, NULL);
	apply_on(s, 3, "upsert Order \"o-10\" {status: \"P\"}", cfg, o, NULL);
	uint8_t before[PROJ_DIGEST_LEN], after[PROJ_DIGEST_LEN];
	digest_on(s, before);
	struct proj_buf ops = {0};
	pack_text("update Order where status == \"P\" set y = 2", &ops);
	struct storage_txn *t = wtxn(s);
	apply_packed_in(t, 4, &ops, cfg, o, NULL, rw);
	commit(t);
	proj_buf_free(&ops);
	digest_on(s, after);
	cr_assert_arr_eq(before, after, PROJ_DIGEST_LEN, "nothing changed");
}

/* One entry's explosions may record at most max_explosion_bytes of id
 * lists, added up over its ops: past it the entry is a no-op refused with
 * QUERY_TOO_EXPENSIVE (nothing changes), within it it applies; 0 is no
 * limit. So no entry is too large for a reader's page. */
Test(proj, explosions_of_one_entry_are_bounded_in_bytes)
{
	/* 300 entities with unrelated 60-byte ids: about 61 bytes each. */
	char text[128];
	for (int i = 0; i < 300; i++) {
		snprintf(text, sizeof(text), "upsert Acct \"%03d-%056d\" {g: \"a\", k: %d}",
		         (i * 7919) % 1000, i, i % 2);
		apply_ok((uint64_t)i + 1, text);
	}
	const struct proj_config small = {.max_scan = 1000000,
	                                  .max_candidates = UINT64_MAX,
	                                  .max_explosion_bytes = 8192};
	struct proj_outcome o;
	apply_on(st, 301, "update Acct where g == \"a\" set g = \"b\"", &small, &o, NULL);
	cr_assert_eq(o.error, WB_QUERY_TOO_EXPENSIVE, "%s", wb_error_name(o.error));
	cr_assert_not_null(strstr(o.message, "--max-explosion-bytes (8192)"), "%s", o.message);
	cr_assert_eq(o.affected, 0);
	/* Two ops that each fit but not together: refused as a whole. */
	const struct proj_config half = {.max_scan = 1000000,
	                                 .max_candidates = UINT64_MAX,
	                                 .max_explosion_bytes = 12000};
	apply_on(st, 302,
	         "update Acct where g == \"a\" and k == 0 set h = 1; "
	         "update Acct where g == \"a\" and k == 1 set h = 2",
	         &half, &o, NULL);
	cr_assert_eq(o.error, WB_QUERY_TOO_EXPENSIVE, "%s %s", wb_error_name(o.error), o.message);
	cr_assert_eq(o.failed_op, 2);
	/* Within the budget (or without one) the same entry applies. */
	const struct proj_config big = {.max_scan = 1000000,
	                                .max_candidates = UINT64_MAX,
	                                .max_explosion_bytes = 1u << 20};
	apply_on(st, 303, "update Acct where g == \"a\" set g = \"b\"", &big, &o, NULL);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, 300);
	apply_on(st, 304, "update Acct where g == \"b\" set g = \"c\"", &CFG, &o, NULL);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, 300);
}

/* Applies text at seq under cfg and returns the bytes of the rewritten
 * OpList, what the ledger stores for the entry. */
static size_t applied_size(uint64_t seq, const char *text, const struct proj_config *cfg,
                           struct proj_outcome *o)
{
	struct proj_buf ops = {0}, rw = {0};
	pack_text(text, &ops);
	struct storage_txn *t = wtxn(st);
	apply_packed_in(t, seq, &ops, cfg, o, NULL, &rw);
	commit(t);
	size_t n = rw.len;
	proj_buf_free(&ops);
	proj_buf_free(&rw);
	return n;
}

/* An entry once applied (its ops with their explosions and outcome, plus
 * its names) may take at most max_entry_bytes: exactly that applies, a
 * byte less makes the whole entry a no-op refused with QUERY_TOO_EXPENSIVE
 * naming the op that took it past, whose stored form is the ops as
 * committed. So no explosion can make an entry too large for a reader. */
Test(proj, an_entry_with_its_explosions_is_bounded_in_bytes)
{
	char text[128];
	for (int i = 0; i < 100; i++) {
		snprintf(text, sizeof(text), "upsert Acct \"%03d-%056d\" {g: \"a\", k: %d}",
		         (i * 7919) % 1000, i, i % 2);
		apply_ok((uint64_t)i + 1, text);
	}
	const char *one = "update Acct where g == \"a\" set h = 1";
	const char *two = "update Acct where g == \"a\" and k == 0 set h = 2; "
	                  "update Acct where g == \"a\" and k == 1 set h = 3";
	struct proj_outcome o;
	/* Without a limit: the sizes the limits are set from. */
	size_t s1 = applied_size(101, one, &CFG, &o);
	cr_assert_eq(o.error, 0, "%s", o.message);
	size_t s2 = applied_size(102, two, &CFG, &o);
	cr_assert_eq(o.error, 0, "%s", o.message);
	struct proj_buf committed = {0};
	pack_text(one, &committed);
	cr_assert_gt(s1, committed.len + 50 * 60, "the explosion is stored: %zu", s1);

	struct proj_config cfg = CFG;
	cfg.entry_names = 10;
	cfg.max_entry_bytes = s1 + 10 - 1;
	uint8_t before[PROJ_DIGEST_LEN], after[PROJ_DIGEST_LEN];
	digest_on(st, before);
	size_t refused = applied_size(103, one, &cfg, &o);
	digest_on(st, after);
	cr_assert_eq(o.error, WB_QUERY_TOO_EXPENSIVE, "%s", wb_error_name(o.error));
	cr_assert_eq(o.failed_op, 1);
	cr_assert_eq(o.affected, 0);
	cr_assert_arr_eq(before, after, PROJ_DIGEST_LEN, "nothing of the entry stays");
	char want[160];
	snprintf(want, sizeof(want), "this entry would take %zu bytes", s1 + 10);
	cr_assert_not_null(strstr(o.message, want), "%s", o.message);
	snprintf(want, sizeof(want), "more than the %zu one reader's answer carries", s1 + 9);
	cr_assert_not_null(strstr(o.message, want), "%s", o.message);
	cr_assert_not_null(strstr(o.message, "split the work over several leases"), "%s",
	                   o.message);
	/* The refused entry stores the ops as committed and its outcome. */
	cr_assert_lt(refused, committed.len + 300, "%zu of %zu", refused, committed.len);
	proj_buf_free(&committed);

	cfg.max_entry_bytes = s1 + 10;
	cr_assert_eq(applied_size(104, one, &cfg, &o), s1);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, 100);

	/* Two ops: the second is the one that takes the entry past. */
	cfg.entry_names = 0;
	cfg.max_entry_bytes = s2 - 1;
	applied_size(105, two, &cfg, &o);
	cr_assert_eq(o.error, WB_QUERY_TOO_EXPENSIVE, "%s", wb_error_name(o.error));
	cr_assert_eq(o.failed_op, 2);
	cfg.max_entry_bytes = s2;
	cr_assert_eq(applied_size(106, two, &cfg, &o), s2);
	cr_assert_eq(o.error, 0, "%s", o.message);
}

Test(proj, query_too_expensive_refuses_index_plans_over_max_candidates)
{
	/* 10 orders may be scanned, 11 may not: past the budget, a plan over
	 * 11 orders is refused. */
	const struct proj_config cfg = {.max_scan = 10, .max_candidates = 4};
	struct proj_buf rw1 = {0}, rw2 = {0};
	struct proj_outcome o1, o2;
	budget_scenario(st, &cfg, &rw1, &o1);
	cr_assert_eq(o1.error, WB_QUERY_TOO_EXPENSIVE, "%s", wb_error_name(o1.error));
	cr_assert_eq(o1.failed_op, 1);
	cr_assert_str_eq(
	        o1.message,
	        "the index plan over Order reads more than --max-candidates 4 index "
	        "entries: narrow the clause or index a more selective field (see Explain)");
	cr_assert_str_eq(render("Order", "o-00"), "v2 c1 u2 {n: 0, status: \"P\", y: 1}");
	/* deterministic: a second store gives the same outcome, byte for byte */
	struct storage *s2 = open_at("again", 16u << 20);
	budget_scenario(s2, &cfg, &rw2, &o2);
	storage_close(s2);
	cr_assert_str_eq(o2.message, o1.message);
	cr_assert_eq(rw1.len, rw2.len);
	cr_assert_arr_eq(rw1.p, rw2.p, rw1.len);
	proj_buf_free(&rw1);
	proj_buf_free(&rw2);
	/* and without the budget the same entry applies */
	struct proj_outcome o;
	apply_on(st, 5, "update Order where status == \"P\" set y = 2", &CFG, &o, NULL);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, 5);

	/* every entry point: explode, query, explain */
	struct storage_txn *t = rtxn(st);
	const char *over[] = {"status == \"P\"",
	                      "status in (\"P\")",
	                      "exists(status)",
	                      "status == \"Q\" and n >= 0",
	                      "status == \"P\" or status == \"Z\"",
	                      "status >= \"A\""};
	for (size_t i = 0; i < NELEM(over); i++) {
		Expr *e = parse_where(over[i]);
		struct proj_ids ids = {0};
		uint64_t ex = 99;
		struct proj_plan p;
		cr_assert_eq(proj_explode(t, "Order", 5, e, &cfg, &ids, &p, &ex),
		             WB_QUERY_TOO_EXPENSIVE, "%s", over[i]);
		cr_assert_eq(ex, 0, "%s: refused before a candidate was read", over[i]);
		cr_assert(p.refused);
		cr_assert_neq(p.strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
		proj_ids_free(&ids);
		struct proj_query_info qi;
		struct page pg = {0};
		cr_assert_eq(proj_query(t, "Order", 5, e, NULL, 0, 1, &cfg, page_cb, &pg, &qi),
		             WB_QUERY_TOO_EXPENSIVE, "%s", over[i]);
		cr_assert_eq(pg.n, 0);
		cr_assert(qi.plan.refused);
		cr_assert_eq(proj_explain(t, "Order", 5, e, &cfg, &p), 0);
		cr_assert(p.refused, "%s", over[i]);
		cr_assert_not_null(strstr(p.text, "candidates: more than 4, over --max-candidates: "
		                                  "refused\n"),
		                   "%s: %s", over[i], p.text);
		optext_free_expr(e);
	}
	/* within the budget: Explain's estimate is the exact count */
	const char *within[] = {"status == \"Z\"", "status == \"P\" and n == 0"};
	struct proj_config four = {.max_scan = 100, .max_candidates = 5};
	uint64_t want[] = {0, 5};
	for (size_t i = 0; i < NELEM(within); i++) {
		Expr *e = parse_where(within[i]);
		struct proj_plan p;
		cr_assert_eq(proj_explain(t, "Order", 5, e, &four, &p), 0);
		cr_assert_not(p.refused, "%s", within[i]);
		cr_assert_eq(p.estimate, want[i], "%s: %llu", within[i],
		             (unsigned long long)p.estimate);
		char line[64];
		snprintf(line, sizeof line, "candidates: %llu\n", (unsigned long long)want[i]);
		cr_assert_not_null(strstr(p.text, line), "%s: %s", within[i], p.text);
		struct proj_ids ids = {0};
		uint64_t ex;
		cr_assert_eq(proj_explode(t, "Order", 5, e, &four, &ids, NULL, &ex), 0);
		proj_ids_free(&ids);
		optext_free_expr(e);
	}
	/* When the type may be scanned, an index plan past the budget is
	 * scanned instead, with the same result; Explain says so. A scan is
	 * never counted against the budget. */
	const struct proj_config scan_ok = {.max_scan = 11, .max_candidates = 4};
	const char *scanned[] = {"status == \"P\"", "status == \"P\" or status == \"Q\"", "n >= 0"};
	const size_t want_n[] = {5, 11, 10};
	for (size_t i = 0; i < NELEM(scanned); i++) {
		Expr *e = parse_where(scanned[i]);
		struct proj_ids ids = {0};
		uint64_t ex;
		struct proj_plan p;
		cr_assert_eq(proj_explode(t, "Order", 5, e, &scan_ok, &ids, &p, &ex), 0, "%s",
		             scanned[i]);
		cr_assert_eq(p.strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN, "%s", scanned[i]);
		cr_assert_not(p.refused);
		cr_assert_eq(ids.n, want_n[i], "%s: %zu", scanned[i], ids.n);
		cr_assert_eq(ex, 11);
		struct proj_ids by_index = {0};
		cr_assert_eq(proj_explode(t, "Order", 5, e, &CFG, &by_index, NULL, &ex), 0);
		cr_assert_eq(by_index.n, ids.n);
		cr_assert_eq(by_index.bytes.len, ids.bytes.len);
		cr_assert_arr_eq(by_index.bytes.p, ids.bytes.p, ids.bytes.len);
		proj_ids_free(&by_index);
		proj_ids_free(&ids);
		cr_assert_eq(proj_explain(t, "Order", 5, e, &scan_ok, &p), 0);
		cr_assert_eq(p.strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
		cr_assert_not(p.refused);
		if (i < 2)
			cr_assert_not_null(strstr(p.text,
			                          "scan Order (11 entities; the index plan reads "
			                          "more than --max-candidates 4)\n"),
			                   "%s", p.text);
		optext_free_expr(e);
	}
	storage_txn_abort(t);
}

/* ------------------------------------------------ queries */

/* Pages through the query with limit and checks that the ids are exactly
 * want (sorted), each once, in order. */
static void check_pages(struct storage_txn *t, const Expr *e, uint32_t limit,
                        const struct proj_ids *want, Whizbang__V1__PlanStrategy strategy)
{
	char after[300] = "";
	size_t got = 0, pages = 0;
	for (;;) {
		struct page pg = {0};
		struct proj_query_info qi;
		int rc = proj_query(t, "Q", 1, e, after, strlen(after), limit, &CFG, page_cb, &pg,
		                    &qi);
		cr_assert_eq(rc, 0, "%s", wb_error_name(rc));
		cr_assert_eq(qi.plan.strategy, strategy);
		cr_assert_leq(pg.n, limit);
		for (size_t i = 0; i < pg.n; i++) {
			cr_assert_lt(got, want->n, "more ids than match (limit %u)", limit);
			size_t wl;
			const uint8_t *w = proj_ids_get(want, got, &wl);
			cr_assert(strlen(pg.ids[i]) == wl && memcmp(pg.ids[i], w, wl) == 0,
			          "limit %u: id %zu is %s, want %.*s", limit, got, pg.ids[i],
			          (int)wl, (const char *)w);
			got++;
		}
		if (pg.n < limit)
			cr_assert(qi.end, "a short page is the last");
		pages++;
		cr_assert_leq(pages, want->n + 2);
		if (qi.end)
			break;
		cr_assert_gt(pg.n, 0, "a page that is not the end has ids");
		snprintf(after, sizeof(after), "%s", pg.ids[pg.n - 1]);
	}
	cr_assert_eq(got, want->n, "limit %u: %zu ids, want %zu", limit, got, want->n);
}

Test(proj, query_order_cursor_limit_and_end)
{
	/* ids sharing prefixes, so byte order matters: a < a0 < a00 < a1 < ab < b */
	static const char *ids[] = {"b", "a", "ab", "a00", "a1", "a0", "c", "a000", "aa", "ba"};
	char text[8192];
	size_t o = 0;
	for (int r = 0; r < 4; r++)
		for (size_t i = 0; i < NELEM(ids); i++)
			o += (size_t)snprintf(text + o, sizeof(text) - o,
			                      "upsert Q \"%s%s\" {k: %d, j: %zu};", ids[i],
			                      r == 0 ? "" : (r == 1 ? "x" : (r == 2 ? "-" : "~")),
			                      (int)((i + (size_t)r) % 3), i);
	apply_ok(1, text);
	apply_ok(2, "upsert Other \"a\" {k: 1}; create index Q k");

	struct storage_txn *t = rtxn(st);
	const struct proj_config scan = {.max_scan = UINT64_MAX, .force_scan = true};
	const char *clauses[] = {"k == 1", "k != 1", "k in (0, 2)", "j >= 5", "exists(k)"};
	Whizbang__V1__PlanStrategy strat[] = {
	        WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN,
	        WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN,
	        WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX};
	for (size_t c = 0; c < NELEM(clauses); c++) {
		Expr *e = parse_where(clauses[c]);
		struct proj_ids want = {0};
		uint64_t ex;
		cr_assert_eq(proj_explode(t, "Q", 1, e, &scan, &want, NULL, &ex), 0);
		cr_assert_gt(want.n, 3);
		uint32_t limits[] = {1, 2, 3, 7, 13, (uint32_t)want.n, (uint32_t)want.n + 1, 1000};
		for (size_t l = 0; l < NELEM(limits); l++)
			check_pages(t, e, limits[l], &want, strat[c]);
		proj_ids_free(&want);
		optext_free_expr(e);
	}

	/* no clause: every entity of the type, in byte order */
	struct page pg = {0};
	struct proj_query_info qi;
	cr_assert_eq(proj_query(t, "Q", 1, NULL, NULL, 0, 64, &CFG, page_cb, &pg, &qi), 0);
	cr_assert_eq(pg.n, 40);
	cr_assert(qi.end);
	cr_assert_str_eq(pg.ids[0], "a");
	cr_assert_str_eq(pg.ids[1], "a-");
	for (size_t i = 1; i < pg.n; i++)
		cr_assert(strcmp(pg.ids[i - 1], pg.ids[i]) < 0, "%s before %s", pg.ids[i - 1],
		          pg.ids[i]);

	/* after is exclusive, and need not exist */
	memset(&pg, 0, sizeof(pg));
	cr_assert_eq(proj_query(t, "Q", 1, NULL, "a0", 2, 3, &CFG, page_cb, &pg, &qi), 0);
	cr_assert_eq(pg.n, 3);
	cr_assert_str_eq(pg.ids[0], "a0-");
	cr_assert_not(qi.end);
	memset(&pg, 0, sizeof(pg));
	cr_assert_eq(proj_query(t, "Q", 1, NULL, "a0.", 3, 2, &CFG, page_cb, &pg, &qi), 0);
	cr_assert_str_eq(pg.ids[0], "a00");
	memset(&pg, 0, sizeof(pg));
	cr_assert_eq(proj_query(t, "Q", 1, NULL, "c-", 2, 5, &CFG, page_cb, &pg, &qi), 0);
	cr_assert_eq(pg.n, 2, "cx and c~ are after c-");
	cr_assert_str_eq(pg.ids[0], "cx");
	cr_assert_str_eq(pg.ids[1], "c~");
	cr_assert(qi.end);
	memset(&pg, 0, sizeof(pg));
	cr_assert_eq(proj_query(t, "Q", 1, NULL, "zz", 2, 5, &CFG, page_cb, &pg, &qi), 0);
	cr_assert_eq(pg.n, 0);
	cr_assert(qi.end);

	/* the visitor stops a page: PROJ_STOP is not an error, others are */
	Expr *e = parse_where("k == 1");
	memset(&pg, 0, sizeof(pg));
	pg.stop_after = 2;
	cr_assert_eq(proj_query(t, "Q", 1, e, NULL, 0, 100, &CFG, page_cb, &pg, &qi), 0);
	cr_assert_eq(pg.n, 2);
	cr_assert_not(qi.end);
	memset(&pg, 0, sizeof(pg));
	pg.fail_after = 1;
	cr_assert_eq(proj_query(t, "Q", 1, e, NULL, 0, 100, &CFG, page_cb, &pg, &qi), 77);
	optext_free_expr(e);
	/* an unknown type is empty */
	memset(&pg, 0, sizeof(pg));
	cr_assert_eq(proj_query(t, "Nope", 4, NULL, NULL, 0, 10, &CFG, page_cb, &pg, &qi), 0);
	cr_assert_eq(pg.n, 0);
	cr_assert(qi.end);
	storage_txn_abort(t);
}

/* ------------------------------------------------ a 100k-id explosion */

Test(proj, explosion_of_100k_ids, .timeout = 600)
{
	bool vg = fixture_under_valgrind();
	const size_t N = vg ? 5000 : 100000;
	storage_close(st);
	st = open_at("big", (size_t)1 << 30);
	uint64_t seq = 1;
	apply_ok(seq++, "create index Order status");
	double t0 = now_s();
	char *text = malloc(128 * 1024);
	cr_assert_not_null(text);
	for (size_t i = 1; i <= N;) {
		size_t o = 0;
		for (size_t k = 0; k < 1000 && i <= N; k++, i++)
			o += (size_t)snprintf(
			        text + o, 128 * 1024 - o,
			        "upsert Order \"o-%06zu\" {status: \"Pending\", total: %zu};", i,
			        i);
		apply_ok(seq++, text);
	}
	free(text);
	double t_load = now_s() - t0;

	struct proj_buf ops = {0};
	pack_text("update Order where status == \"Pending\" set status = \"Shipped\"", &ops);
	struct storage_txn *t = wtxn(st);

	/* live, in a child transaction that is then dropped */
	struct storage_txn *c;
	cr_assert_eq(storage_txn_begin(st, t, 0, &c), 0);
	struct proj_outcome o;
	OpList *rw;
	struct proj_buf rw_bytes = {0};
	t0 = now_s();
	apply_packed_in(c, seq, &ops, &CFG, &o, &rw, &rw_bytes);
	double t_live = now_s() - t0;
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_eq(o.affected, N);
	uint8_t d_live[PROJ_DIGEST_LEN], d_replay[PROJ_DIGEST_LEN];
	cr_assert_eq(proj_digest(c, d_live, NULL), 0);
	storage_txn_abort(c);

	const Explosion *x = explosion_of(rw, 0);
	cr_assert_eq(x->count, N);
	cr_assert_eq(x->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	cr_assert_eq(x->examined, N);
	/* every id once, in order */
	struct proj_idlist_iter it;
	proj_idlist_iter_init(&it, x->ids.data, x->ids.len);
	size_t n = 0;
	while (proj_idlist_next(&it) == 1) {
		char want[16];
		snprintf(want, sizeof(want), "o-%06zu", n + 1);
		cr_assert(it.id_len == 8 && memcmp(it.id, want, 8) == 0, "id %zu", n);
		n++;
	}
	cr_assert_eq(n, N);
	double per_id = (double)x->ids.len / (double)N;
	cr_assert_lt(per_id, 4.0, "%.2f bytes per 8-byte id", per_id);

	/* the same entry replayed from its record, from the same state */
	cr_assert_eq(storage_txn_begin(st, t, 0, &c), 0);
	t0 = now_s();
	struct proj_outcome ro;
	cr_assert_eq(proj_apply(c, seq, rw_bytes.p, rw_bytes.len, &CFG, PROJ_REPLAY, NULL, &ro), 0);
	double t_replay = now_s() - t0;
	cr_assert_eq(ro.error, 0);
	cr_assert_eq(ro.explosions, 0, "replay evaluates no clause");
	cr_assert_eq(proj_digest(c, d_replay, NULL), 0);
	cr_assert_arr_eq(d_live, d_replay, PROJ_DIGEST_LEN);
	storage_txn_abort(c);

	/* the same update as a scan (no index used) */
	const struct proj_config scan = {.max_scan = UINT64_MAX, .force_scan = true};
	cr_assert_eq(storage_txn_begin(st, t, 0, &c), 0);
	struct proj_outcome so;
	OpList *srw;
	t0 = now_s();
	apply_packed_in(c, seq, &ops, &scan, &so, &srw, NULL);
	double t_scan = now_s() - t0;
	cr_assert_eq(so.affected, N);
	const Explosion *sx = explosion_of(srw, 0);
	cr_assert_eq(sx->strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN);
	cr_assert_eq(sx->ids.len, x->ids.len, "the same ids, the same bytes");
	storage_txn_abort(c);

	/* and for real: committed */
	struct proj_outcome fo;
	apply_packed_in(t, seq, &ops, &CFG, &fo, NULL, NULL);
	commit(t);
	cr_assert_eq(fo.affected, N);
	struct storage_txn *r = rtxn(st);
	struct proj_index_info ii;
	cr_assert_eq(proj_index_get(r, "Order", "status", &ii), 0);
	cr_assert_eq(ii.entries, N);
	storage_txn_abort(r);
	char want[128], id[16];
	snprintf(want, sizeof(want), "v2 c2 u%" PRIu64 " {status: \"Shipped\", total: 1}", seq);
	cr_assert_str_eq(render("Order", "o-000001"), want);
	snprintf(want, sizeof(want), "v2 c%zu u%" PRIu64 " {status: \"Shipped\", total: %zu}",
	         1 + (N + 999) / 1000, seq, N);
	snprintf(id, sizeof(id), "o-%06zu", N);
	cr_assert_str_eq(render("Order", id), want);

	fprintf(stderr,
	        "100k explosion (N=%zu%s): load %.2f s; update live %.3f s (explosion %" PRIu64
	        " us, %" PRIu64
	        " examined, index plan); update as a scan %.3f s (explosion %" PRIu64
	        " us); replay of the recorded entry %.3f s; Explosion.ids %zu bytes (%.2f per id), "
	        "rewritten entry %zu bytes\n",
	        N, vg ? ", scaled down under valgrind" : "", t_load, t_live, x->micros, x->examined,
	        t_scan, sx->micros, t_replay, x->ids.len, per_id, rw_bytes.len);
	whizbang__v1__op_list__free_unpacked(rw, NULL);
	whizbang__v1__op_list__free_unpacked(srw, NULL);
	proj_buf_free(&rw_bytes);
	proj_buf_free(&ops);
}

Test(proj, index_keys_fit_for_the_longest_values_and_ids)
{
	/* a 255-byte id and values whose keys are as long as they get: 200
	 * NUL bytes (each escaped to two), a 300-byte string */
	char id[256];
	memset(id, 'i', 255);
	id[255] = 0;
	char text[4096];
	size_t o =
	        (size_t)snprintf(text, sizeof(text),
	                         "create index T x; create index T s; upsert T \"%s\" {s: \"", id);
	memset(text + o, 's', 300);
	o += 300;
	o += (size_t)snprintf(text + o, sizeof(text) - o, "\", x: x\"");
	for (int i = 0; i < 200; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "00");
	snprintf(text + o, sizeof(text) - o, "\"}");
	struct proj_outcome out;
	apply(1, text, &out, NULL);
	cr_assert_eq(out.error, 0, "%s: %s", wb_error_name(out.error), out.message);
	check_index_exact(st, "T", "x");
	check_index_exact(st, "T", "s");
	Expr *e = parse_where("starts_with(s, \"sss\") and exists(x)");
	struct storage_txn *t = rtxn(st);
	struct proj_ids ids = {0};
	uint64_t ex;
	struct proj_plan plan;
	cr_assert_eq(proj_explode(t, "T", 1, e, &CFG, &ids, &plan, &ex), 0);
	cr_assert_eq(plan.strategy, WHIZBANG__V1__PLAN_STRATEGY__PLAN_INDEX);
	cr_assert_eq(ids.n, 1);
	proj_ids_free(&ids);
	storage_txn_abort(t);
	optext_free_expr(e);
}

/* Bug found by this test: the plan stored in an Explosion squeezed every
 * run of spaces to one, inside the clause's string literals too, so it
 * misquoted what was matched. */
Test(proj, explosion_plan_is_one_line_and_keeps_literals)
{
	apply_ok(1, "create index T s; create index T k; "
	            "upsert T \"a\" {s: \"a  b\", k: 1}; upsert T \"b\" {s: \"c\", k: 2}");
	OpList *rw;
	struct proj_outcome o;
	apply(2,
	      "update T where s == \"a  b\" set z = 1; "
	      "update T where s == \"a  b\" or k == 2 set z = 2; "
	      "delete T where z == \"  \"",
	      &o, &rw);
	cr_assert_eq(o.error, 0, "%s", o.message);
	cr_assert_str_eq(explosion_of(rw, 0)->plan,
	                 "index T.s: s == \"a  b\" (estimate 1); filter: s == \"a  b\"");
	cr_assert_str_eq(explosion_of(rw, 1)->plan,
	                 "union of 2 (estimate 2); index T.s: s == \"a  b\" (estimate 1); "
	                 "index T.k: k == 2 (estimate 1); filter: s == \"a  b\" or k == 2");
	cr_assert_str_eq(explosion_of(rw, 2)->plan, "scan T (2 entities); filter: z == \"  \"");
	whizbang__v1__op_list__free_unpacked(rw, NULL);
}
