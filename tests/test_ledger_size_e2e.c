/* End-to-end tests of the ledger entry size (docs/PROTOCOL.md §4.8, "Every
 * entry fits one answer") against a real whizbangd with --max-frame 1M:
 * a Commit or Stage whose ops take max_frame - 5120 bytes is accepted and
 * one byte more is refused with BAD_REQUEST before anything is written (the
 * lease stays usable: committed to, or released into a gap); an entry whose
 * ops and explosions take max_frame - 4192 bytes once applied applies, one
 * byte more makes it a no-op with QUERY_TOO_EXPENSIVE; an entry whose
 * explosion alone would take it past the frame is refused the same way. In
 * each test every entry is then read back whole through ReadLedger (page by
 * page), a ledger subscription and `whizbang ledger`, by readers that refuse
 * any frame over the server's max_frame, as PROTOCOL.md §1 lets a client.
 *
 * Negative control: with WB_LEDGER_SIZE_E2E_UNBOUNDED set, the server runs
 * with --unsafe-unbounded-ledger-entries, which lets the oversized ops and
 * entries in: each test must then fail (tests/meson.build runs them so,
 * should_fail), the explosion test at reading the entry it stored, which no
 * such reader can fetch. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "e2e_util.h"
#include "optext.h"
#include "wb.h"

typedef Whizbang__V1__OpList OpList;
typedef Whizbang__V1__LedgerEntry LedgerEntry;

TestSuite(ledger_size_e2e, .fini = e2e_suite_fini, .timeout = 180);

/* The server's frame, and what PROTOCOL.md derives from it. */
#define FRAME (1u << 20)
#define OPS_MAX (FRAME - 5120u)
#define ENTRY_MAX (FRAME - 4192u)

#define PROJECTION "sizes"
#define OPERATION_ID "ledger-size-e2e"

static bool unbounded(void)
{
	return getenv("WB_LEDGER_SIZE_E2E_UNBOUNDED") != NULL;
}

/* The server's arguments: frame, then more (NULL-terminated, may be NULL),
 * then the control's flag under the control. Static storage. */
static const char *const *server_args(const char *frame, const char *const *more)
{
	static const char *args[E2E_MAX_EXTRA + 1];
	size_t n = 0;
	args[n++] = frame;
	for (size_t i = 0; more != NULL && more[i] != NULL; i++)
		args[n++] = more[i];
	if (unbounded())
		args[n++] = "--unsafe-unbounded-ledger-entries";
	args[n] = NULL;
	return args;
}

/* Starts the suite's server with --max-frame 1M (and more) and returns a
 * client for the writes. */
static struct wb_client *start_with(const char *const *more)
{
	return e2e_suite_start_client(server_args("--max-frame=1M", more), "test_ledger_size_e2e");
}

static struct wb_client *start(void)
{
	return start_with(NULL);
}

/* A client that refuses any response frame over the server's max_frame. */
static struct wb_client *strict_reader(void)
{
	struct wb_options o = {.client_name = "strict-reader",
	                       .timeout_ms = E2E_CLIENT_TIMEOUT_MS,
	                       .max_response = FRAME};
	struct wb_client *c = NULL;
	char err[256];
	cr_assert_eq(wb_connect(&c, e2e_srv.address, &o, err, sizeof(err)), 0, "connect: %s", err);
	cr_assert_eq(wb_server_info(c)->max_frame, FRAME);
	return c;
}

/* ---------------------------------------------------------------- ops of a size */

/* Sets the string of pad upsert op to len 'x' bytes. */
static void set_pad(Whizbang__V1__Op *op, size_t len)
{
	Whizbang__V1__Value *v = op->upsert->fields[0]->value;
	char *s = malloc(len + 1);
	cr_assert_not_null(s);
	memset(s, 'x', len);
	s[len] = '\0';
	free(v->string_value);
	v->string_value = s;
}

/* Ops whose OpList packs into exactly bytes: upserts of Pad entities of
 * about 60000 bytes each (an entity holds at most 1 MiB), the last sized
 * to fit, then the ops of tail (may be NULL). Free with optext_free_ops(). */
static OpList *ops_of_size(size_t bytes, const char *tail)
{
	size_t tail_len = tail != NULL ? strlen(tail) : 0;
	cr_assert_gt(bytes, 40000u + 2 * tail_len);
	size_t n = (bytes - 20000 - 2 * tail_len) / 60000 + 1;
	size_t tlen = n * 40 + tail_len + 8;
	char *text = malloc(tlen);
	cr_assert_not_null(text);
	size_t off = 0;
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(text + off, tlen - off,
		                        "upsert Pad \"pad-%zu\" {p: \"\"}; ", i);
	snprintf(text + off, tlen - off, "%s", tail != NULL ? tail : "");
	if (tail == NULL)
		text[off - 2] = '\0'; /* the last "; " */
	OpList *l = NULL;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops(text, &l, &err), 0, "%s", err.message);
	free(text);
	for (size_t i = 0; i + 1 < n; i++)
		set_pad(l->ops[i], 60000);
	/* Each step lands exactly unless a length's varint changed size: the
	 * last pad stays between 16 KiB and 2 MiB, so none does after one. */
	size_t last = 20000;
	for (int step = 0; step < 8; step++) {
		set_pad(l->ops[n - 1], last);
		size_t got = whizbang__v1__op_list__get_packed_size(l);
		if (got == bytes)
			return l;
		last = last + bytes - got;
		cr_assert(last >= 16384 && last < (2u << 20), "pad of %zu bytes", last);
	}
	cr_assert_fail("no pad makes %zu bytes", bytes);
	return NULL;
}

/* ---------------------------------------------------------------- leases */

static struct wb_lease_grant lease(struct wb_client *c, uint64_t duration_ms)
{
	struct wb_lease_args la = {.projection = PROJECTION,
	                           .operation_id = OPERATION_ID,
	                           .count = 1,
	                           .duration_ms = duration_ms};
	struct wb_lease_grant g;
	size_t n;
	cr_assert_eq(wb_lease(c, &la, &g, 1, &n), 0, "lease: %s", wb_errmsg(c));
	return g;
}

/* Commits ops at g with ACK_APPLIED; the answer is the caller's to free. */
static Whizbang__V1__CommitResult *commit_applied(struct wb_client *c,
                                                  const struct wb_lease_grant *g, const OpList *ops)
{
	Whizbang__V1__CommitResult *res = NULL;
	cr_assert_eq(wb_commit_full(c, g->sequence, g->token, ops, true, false, &res), 0,
	             "commit of %zu bytes of ops at %" PRIu64 ": %s",
	             whizbang__v1__op_list__get_packed_size(ops), g->sequence, wb_errmsg(c));
	return res;
}

/* Commits ops at g and requires the entry to apply. */
static void commit_ok(struct wb_client *c, const struct wb_lease_grant *g, const OpList *ops)
{
	Whizbang__V1__CommitResult *res = commit_applied(c, g, ops);
	cr_assert_eq(res->apply_error, 0, "%s", res->apply_error_message);
	wb_commit_result_free(res);
}

/* Requires the refusal of a Commit (or Stage) of ops of size bytes: the
 * documented code and a message with the sizes and what to do. */
static void expect_refused(struct wb_client *c, int rc, const char *what, size_t bytes)
{
	cr_assert_eq(rc, WB_BAD_REQUEST, "%s of %zu bytes of ops: %s (%s)", what, bytes,
	             wb_error_name(rc), wb_errmsg(c));
	char want[200];
	snprintf(want, sizeof(want), "the ops of this %s take %zu bytes, more than the %u", what,
	         bytes, OPS_MAX);
	cli_expect_has(wb_errmsg(c), want, what);
	cli_expect_has(wb_errmsg(c), "--max-frame 1048576 less 5120", what);
	cli_expect_has(wb_errmsg(c), "split the work over several leases", what);
}

/* ---------------------------------------------------------------- reading it all */

/* What the server counts for an entry (PROTOCOL.md §4.8): its ops with
 * their explosions and outcome as an OpList, its projection and operation
 * id. */
static size_t entry_bytes(const LedgerEntry *e)
{
	size_t names = strlen(e->projection) + strlen(e->operation_id);
	if (e->n_ops == 0)
		return names; /* a gap, or a commit without ops: nothing stored */
	OpList l = WHIZBANG__V1__OP_LIST__INIT;
	l.n_ops = e->n_ops;
	l.ops = e->ops;
	l.applied = e->applied;
	l.error_code = e->apply_error;
	l.error_message = e->apply_error_message;
	l.failed_op = e->failed_op;
	return whizbang__v1__op_list__get_packed_size(&l) + names;
}

/* An entry as every reader saw it. */
struct seen {
	bool set;
	Whizbang__V1__EntryKind kind;
	Whizbang__V1__EntryReason reason;
	Whizbang__V1__ErrorCode apply_error;
	uint32_t failed_op;
	size_t bytes;
};

static void note(struct seen *s, const LedgerEntry *e, const char *who)
{
	size_t bytes = entry_bytes(e);
	cr_assert(e->applied, "%s: entry %" PRIu64 " is not applied", who, e->sequence);
	cr_assert_leq(bytes, ENTRY_MAX, "%s: entry %" PRIu64 " takes %zu bytes", who, e->sequence,
	              bytes);
	if (!s->set) {
		*s = (struct seen){true, e->kind, e->reason, e->apply_error, e->failed_op, bytes};
		return;
	}
	cr_assert(s->kind == e->kind && s->reason == e->reason &&
	                  s->apply_error == e->apply_error && s->failed_op == e->failed_op &&
	                  s->bytes == bytes,
	          "%s: entry %" PRIu64 " is not what ReadLedger read", who, e->sequence);
}

/* Reads the ledger up to its watermark n through each reader: ReadLedger
 * page by page (every page holds at least one entry and moves past it),
 * a ledger subscription from the start, and `whizbang ledger --json`.
 * Returns what they saw, by sequence (1..n; free() it). */
static struct seen *read_everything(uint64_t n)
{
	struct seen *seen = calloc(n + 1, sizeof(*seen));
	cr_assert_not_null(seen);
	struct wb_client *r = strict_reader();
	uint64_t from = 1, pages = 0;
	for (;;) {
		Whizbang__V1__ReadLedgerResult *res = NULL;
		cr_assert_eq(wb_read_ledger(r, from, 0, &res), 0, "ReadLedger from %" PRIu64 ": %s",
		             from, wb_errmsg(r));
		cr_assert_eq(res->watermark, n);
		if (from <= n)
			cr_assert_geq(res->n_entries, 1, "a page from %" PRIu64 " holds no entry",
			              from);
		for (size_t i = 0; i < res->n_entries; i++) {
			const LedgerEntry *e = res->entries[i];
			cr_assert_eq(e->sequence, from + i, "page from %" PRIu64, from);
			note(&seen[e->sequence], e, "ReadLedger");
		}
		cr_assert_eq(res->next_sequence, from + res->n_entries);
		from = res->next_sequence;
		bool end = res->end;
		wb_ledger_free(res);
		pages++;
		if (end)
			break;
		cr_assert_leq(pages, n, "ReadLedger does not end");
	}
	cr_assert_eq(from, n + 1);
	wb_close(r);

	r = strict_reader();
	struct wb_subscribe_args sa = {
	        .target = WB_TARGET_LEDGER, .from = WB_FROM_START, .credits = (uint32_t)n + 1};
	uint64_t sub;
	cr_assert_eq(wb_subscribe(r, &sa, &sub), 0, "subscribe: %s", wb_errmsg(r));
	for (uint64_t want = 1;;) {
		Whizbang__V1__SubscriptionItem *it = NULL;
		cr_assert_eq(wb_next_item(r, E2E_CLIENT_TIMEOUT_MS, &it), 0,
		             "the ledger subscription, at %" PRIu64 ": %s", want, wb_errmsg(r));
		if (it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP) {
			wb_item_free(it);
			cr_assert_eq(want, n + 1, "caught up before entry %" PRIu64, want);
			break;
		}
		cr_assert_eq(it->item_case, WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_ENTRY);
		cr_assert_eq(it->entry->sequence, want);
		note(&seen[want], it->entry, "the ledger subscription");
		wb_item_free(it);
		want++;
	}
	wb_close(r);

	struct cli_run run = {0};
	CLI_EXPECT(&run, 0, "whizbang ledger", "--json", "ledger");
	for (uint64_t s = 1; s <= n; s++) {
		char needle[48];
		snprintf(needle, sizeof(needle), "{\"sequence\":%" PRIu64 ",", s);
		cli_expect_has(run.out, needle, "whizbang ledger");
	}
	cli_run_free(&run);
	return seen;
}

/* ---------------------------------------------------------------- tests */

/* Admission: ops of max_frame - 5120 bytes are committed, staged and read
 * back; one byte more is refused at once, and the lease is left as it
 * was: committed to with less, or released into a gap. */
Test(ledger_size_e2e, commit_and_stage_ops_over_the_bound_are_refused_before_anything_is_written)
{
	struct wb_client *c = start();
	OpList *at = ops_of_size(OPS_MAX, NULL);
	OpList *over = ops_of_size(OPS_MAX + 1, NULL);

	/* 1: at the bound */
	struct wb_lease_grant g = lease(c, 60000);
	commit_ok(c, &g, at);

	/* 2: over it, refused; the lease then takes the work at the bound */
	g = lease(c, 60000);
	int rc = wb_commit(c, g.sequence, g.token, over, true, false, NULL);
	expect_refused(c, rc, "Commit", OPS_MAX + 1);
	uint64_t wm;
	cr_assert_eq(wb_watermark(c, &wm, NULL), 0);
	cr_assert_eq(wm, g.sequence - 1, "nothing was written at %" PRIu64, g.sequence);
	commit_ok(c, &g, at);

	/* 3: over it, refused, then released: a gap */
	g = lease(c, 60000);
	rc = wb_commit(c, g.sequence, g.token, over, false, false, NULL);
	expect_refused(c, rc, "Commit", OPS_MAX + 1);
	cr_assert_eq(wb_release(c, g.sequence, g.token, "too large"), 0, "%s", wb_errmsg(c));

	/* 4: staged over the bound, refused; at it, recovered on expiry */
	g = lease(c, 3000);
	rc = wb_stage(c, g.sequence, g.token, over);
	expect_refused(c, rc, "Stage", OPS_MAX + 1);
	cr_assert_eq(wb_stage(c, g.sequence, g.token, at), 0, "stage: %s", wb_errmsg(c));
	bool reached = false;
	cr_assert_eq(wb_wait_watermark(c, g.sequence, 15000, &wm, &reached), 0);
	cr_assert(reached, "the staged lease was not recovered (watermark %" PRIu64 ")", wm);

	struct seen *s = read_everything(4);
	for (uint64_t q = 1; q <= 4; q++)
		cr_assert_eq(s[q].apply_error, 0, "entry %" PRIu64, q);
	cr_assert_eq(s[1].kind, WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED);
	cr_assert_eq(s[2].kind, WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED);
	cr_assert_eq(s[3].kind, WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP);
	cr_assert_eq(s[3].reason, WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED);
	cr_assert_eq(s[4].kind, WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED);
	cr_assert_eq(s[4].reason, WHIZBANG__V1__ENTRY_REASON__RECOVERED_STAGED);
	/* The ops as committed, the outcome (applied) and the names. */
	size_t names = strlen(PROJECTION) + strlen(OPERATION_ID);
	cr_assert_eq(s[1].bytes, OPS_MAX + 2 + names);
	cr_assert_eq(s[4].bytes, OPS_MAX + 2 + names);
	free(s);
	optext_free_ops(at);
	optext_free_ops(over);
	e2e_suite_stop_client(c);
}

/* Items with unrelated 250-byte ids, g = "a": an update of all of them
 * records about 252 bytes of ids for each. */
static void make_items(struct wb_client *c, int n)
{
	size_t tlen = (size_t)n * 300 + 1;
	char *text = malloc(tlen);
	cr_assert_not_null(text);
	size_t off = 0;
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(text + off, tlen - off,
		                        "%supsert Item \"%03d-%0246d\" {g: \"a\"}",
		                        i > 0 ? "; " : "", (i * 7919) % 1000, i);
	OpList *l;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops(text, &l, &err), 0, "%s", err.message);
	free(text);
	struct wb_lease_grant g = lease(c, 60000);
	commit_ok(c, &g, l);
	optext_free_ops(l);
}

#define UPDATE_ALL "update Item where g == \"a\" set h = 1"

/* Ops at the bound and an update whose explosion (about 100 KB) would take
 * the entry past the frame itself: applied as a no-op, and readable. Under
 * the control the entry is stored with its explosion, larger than the
 * frame, and reading it fails. */
Test(ledger_size_e2e, explosion_past_the_frame_makes_the_entry_a_readable_no_op)
{
	struct wb_client *c = start();
	make_items(c, 400);
	OpList *ops = ops_of_size(OPS_MAX, UPDATE_ALL);
	struct wb_lease_grant g = lease(c, 60000);
	Whizbang__V1__CommitResult *res = commit_applied(c, &g, ops);
	Whizbang__V1__ErrorCode apply_error = res->apply_error;
	char message[512];
	snprintf(message, sizeof(message), "%s", res->apply_error_message);
	uint32_t failed_op = res->failed_op;
	wb_commit_result_free(res);

	/* Read first: under the control this is what fails. */
	struct seen *s = read_everything(2);
	cr_assert_eq(apply_error, WHIZBANG__V1__ERROR_CODE__QUERY_TOO_EXPENSIVE, "%s", message);
	cr_assert_eq(failed_op, ops->n_ops, "the update took it past: %s", message);
	char want[96];
	snprintf(want, sizeof(want), "more than the %u one reader's answer carries", ENTRY_MAX);
	cli_expect_has(message, want, "the outcome");
	cli_expect_has(message, "split the work over several leases", "the outcome");
	cr_assert_eq(s[2].apply_error, WHIZBANG__V1__ERROR_CODE__QUERY_TOO_EXPENSIVE);
	cr_assert_eq(s[2].failed_op, ops->n_ops);
	free(s);
	/* Nothing of the entry took effect: the items have no h, and no pad
	 * was made. */
	char id[256];
	snprintf(id, sizeof(id), "000-%0246d", 0);
	Whizbang__V1__Entity *e = NULL;
	cr_assert_eq(wb_get_entity(c, "Item", id, &e), 0, "%s", wb_errmsg(c));
	cr_assert_eq(e->version, 1);
	cr_assert_eq(e->n_fields, 1, "only g");
	wb_entity_free(e);
	e = NULL;
	cr_assert_eq(wb_get_entity(c, "Pad", "pad-0", &e), WB_NOT_FOUND);
	wb_entity_free(e);
	optext_free_ops(ops);
	e2e_suite_stop_client(c);
}

/* The entry bound is exact: ops plus explosion at max_frame - 4192 bytes
 * apply and are read back, one byte more is a no-op. The sizes come from
 * a first entry read back, measured as the server measures. */
Test(ledger_size_e2e, boundary_of_ops_and_explosion_together_is_exact)
{
	struct wb_client *c = start();
	make_items(c, 200);
	/* 2: the calibration, well within the bound */
	size_t ops0 = 500000;
	OpList *ops = ops_of_size(ops0, UPDATE_ALL);
	struct wb_lease_grant g = lease(c, 60000);
	commit_ok(c, &g, ops);
	optext_free_ops(ops);
	struct seen *s = read_everything(2);
	size_t bytes0 = s[2].bytes;
	free(s);
	cr_assert_gt(bytes0, ops0 + 200 * 240, "the explosion is stored: %zu", bytes0);
	size_t at = ops0 + (ENTRY_MAX - bytes0);
	cr_assert_lt(at, OPS_MAX, "the explosion needs room under the ops' bound");

	/* 3: exactly at the bound */
	ops = ops_of_size(at, UPDATE_ALL);
	g = lease(c, 60000);
	Whizbang__V1__CommitResult *res = commit_applied(c, &g, ops);
	cr_assert_eq(res->apply_error, 0, "at the bound: %s", res->apply_error_message);
	cr_assert_eq(res->n_results, ops->n_ops);
	cr_assert_eq(res->results[ops->n_ops - 1]->matched, 200);
	wb_commit_result_free(res);
	optext_free_ops(ops);

	/* 4: one byte over it */
	ops = ops_of_size(at + 1, UPDATE_ALL);
	size_t n_ops = ops->n_ops;
	g = lease(c, 60000);
	res = commit_applied(c, &g, ops);
	Whizbang__V1__ErrorCode apply_error = res->apply_error;
	char message[512];
	snprintf(message, sizeof(message), "%s", res->apply_error_message);
	uint32_t failed_op = res->failed_op;
	wb_commit_result_free(res);
	optext_free_ops(ops);

	s = read_everything(4);
	cr_assert_eq(s[3].apply_error, 0);
	cr_assert_eq(s[3].bytes, ENTRY_MAX, "the entry at the bound takes %zu bytes", s[3].bytes);
	cr_assert_eq(apply_error, WHIZBANG__V1__ERROR_CODE__QUERY_TOO_EXPENSIVE,
	             "one byte over the bound: %s", message);
	cr_assert_eq(failed_op, n_ops);
	char want[160];
	snprintf(want, sizeof(want), "this entry would take %u bytes", ENTRY_MAX + 1);
	cli_expect_has(message, want, "the outcome");
	snprintf(want, sizeof(want), "more than the %u one reader's answer carries", ENTRY_MAX);
	cli_expect_has(message, want, "the outcome");
	cr_assert_eq(s[4].apply_error, WHIZBANG__V1__ERROR_CODE__QUERY_TOO_EXPENSIVE);
	cr_assert_eq(s[4].failed_op, n_ops);
	free(s);
	e2e_suite_stop_client(c);
}

/* The limit in force is stamped into the log record: after a crash the
 * record is applied again as it was decided, even by a server whose frame
 * would now let the entry in. */
Test(ledger_size_e2e, refused_entry_replays_as_decided_under_a_larger_frame)
{
	/* Checkpoints far away, so that the restart replays the log. */
	static const char *const keep_log[] = {"--checkpoint-bytes=1G",
	                                       "--checkpoint-interval-ms=86400000", NULL};
	struct wb_client *c = start_with(keep_log);
	make_items(c, 400);
	OpList *ops = ops_of_size(OPS_MAX, UPDATE_ALL);
	struct wb_lease_grant g = lease(c, 60000);
	Whizbang__V1__CommitResult *res = commit_applied(c, &g, ops);
	cr_assert_eq(res->apply_error, WHIZBANG__V1__ERROR_CODE__QUERY_TOO_EXPENSIVE, "%s",
	             res->apply_error_message);
	wb_commit_result_free(res);
	optext_free_ops(ops);
	wb_close(c);

	e2e_kill(&e2e_srv);
	cr_assert_eq(e2e_set_args(&e2e_srv, server_args("--max-frame=2M", keep_log)), 0);
	e2e_suite_restart();
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=log_replayed"), 1);
	c = e2e_suite_client("test_ledger_size_e2e");
	Whizbang__V1__ReadLedgerResult *rl = NULL;
	cr_assert_eq(wb_read_ledger(c, 2, 1, &rl), 0, "%s", wb_errmsg(c));
	cr_assert_eq(rl->n_entries, 1);
	cr_assert_eq(rl->entries[0]->apply_error, WHIZBANG__V1__ERROR_CODE__QUERY_TOO_EXPENSIVE,
	             "replayed under --max-frame 2M, the entry applied: %s",
	             rl->entries[0]->apply_error_message);
	wb_ledger_free(rl);
	char id[256];
	snprintf(id, sizeof(id), "000-%0246d", 0);
	Whizbang__V1__Entity *e = NULL;
	cr_assert_eq(wb_get_entity(c, "Item", id, &e), 0, "%s", wb_errmsg(c));
	cr_assert_eq(e->n_fields, 1, "the refused update took effect on replay");
	wb_entity_free(e);
	e2e_suite_stop_client(c);
}
