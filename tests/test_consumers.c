/* Tests of the durable consumer records (storage/consumers.h) against a
 * real store in a fresh temporary directory: the group record codec with
 * hostile bytes, checkpoints and parked events across a reopen. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers.h"
#include "fixture.h"
#include "storage.h"

/* The store is opened with these, and reopened with them where a test
 * checks what survives a close. */
static const struct storage_options STORE_OPTS = {.map_size = 16u << 20};
FIXTURE_STORE_SUITE(consumers, &STORE_OPTS);

static void fill(struct cons_record *r, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->name_len = strlen(name);
	memcpy(r->name, name, r->name_len);
	r->target = CONS_TARGET_ALL;
	r->from = CONS_FROM_POSITION;
	r->position = 7;
	r->prefix_len = 6;
	memcpy(r->prefix, "order-", 6);
	r->ntypes = 2;
	strcpy(r->types[0], "Placed");
	r->type_lens[0] = 6;
	strcpy(r->types[1], "Shipped");
	r->type_lens[1] = 7;
	r->ack_timeout_ms = 200;
	r->max_deliveries = 3;
	r->checkpoint = 6;
	r->resume = 7;
	r->created_us = 1700000000000000ull;
	strcpy(r->owner, "user:alice");
	r->owner_len = 10;
}

static struct storage_txn *wtxn(void)
{
	return fixture_txn(st, NULL, 0);
}

static struct storage_txn *rtxn(void)
{
	return fixture_txn(st, NULL, STORAGE_RDONLY);
}

Test(consumers, record_round_trip)
{
	struct cons_record r, back;
	fill(&r, "billing");
	uint8_t buf[CONS_RECORD_MAX];
	size_t len = 0;
	cr_assert_eq(cons_encode(&r, buf, &len), 0);
	cr_assert_eq(len, CONS_RECORD_HEADER + 6 + 1 + 6 + 1 + 7 + 2 + 10);
	cr_assert_eq(cons_decode("billing", 7, buf, len, &back), 0);
	cr_assert_str_eq(back.owner, "user:alice");
	cr_assert_eq(back.owner_len, 10);
	cr_assert_eq(back.name_len, 7);
	cr_assert_str_eq(back.name, "billing");
	cr_assert_str_eq(back.prefix, "order-");
	cr_assert_eq(back.ntypes, 2);
	cr_assert_str_eq(back.types[1], "Shipped");
	cr_assert_eq(back.ack_timeout_ms, 200);
	cr_assert_eq(back.max_deliveries, 3);
	cr_assert_eq(back.checkpoint, 6);
	cr_assert_eq(back.resume, 7);
	cr_assert_eq(back.position, 7);
	cr_assert_eq(back.from, CONS_FROM_POSITION);
	/* A record of format 1 (before owners were kept) decodes, ownerless. */
	buf[0] = 1;
	cr_assert_eq(cons_decode("billing", 7, buf, len - 12, &back), 0);
	cr_assert_eq(back.owner_len, 0);
	cr_assert_str_eq(back.types[1], "Shipped");
}

Test(consumers, encode_refuses_out_of_range)
{
	struct cons_record r;
	fill(&r, "g");
	uint8_t buf[CONS_RECORD_MAX];
	size_t len = 12345;
	r.ntypes = CONS_TYPES_MAX + 1;
	cr_assert_eq(cons_encode(&r, buf, &len), WB_E_INVAL);
	cr_assert_eq(len, 12345);
	fill(&r, "g");
	r.target = 2;
	cr_assert_eq(cons_encode(&r, buf, &len), WB_E_INVAL);
}

/* Every truncation and every single-byte corruption of the header's
 * lengths either decodes to something within bounds or answers
 * WB_E_CORRUPT; it never reads past the value (ASan would say). */
Test(consumers, decode_hostile_bytes)
{
	struct cons_record r, back;
	fill(&r, "billing");
	uint8_t buf[CONS_RECORD_MAX];
	size_t len;
	cr_assert_eq(cons_encode(&r, buf, &len), 0);
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *copy = malloc(cut > 0 ? cut : 1);
		memcpy(copy, buf, cut);
		cr_assert_eq(cons_decode("billing", 7, copy, cut, &back), WB_E_CORRUPT,
		             "cut at %zu", cut);
		free(copy);
	}
	for (size_t i = 0; i < len; i++) {
		for (int b = 0; b < 256; b += 17) {
			uint8_t *copy = malloc(len);
			memcpy(copy, buf, len);
			copy[i] = (uint8_t)b;
			int rc = cons_decode("billing", 7, copy, len, &back);
			cr_assert(rc == 0 || rc == WB_E_CORRUPT);
			if (rc == 0) {
				cr_assert_leq(back.ntypes, CONS_TYPES_MAX);
				cr_assert_leq(back.stream_len, CONS_NAME_MAX);
				cr_assert_leq(back.prefix_len, CONS_NAME_MAX);
			}
			free(copy);
		}
	}
	/* an extra trailing byte does not add up either */
	uint8_t longer[CONS_RECORD_MAX + 1];
	memcpy(longer, buf, len);
	longer[len] = 'x';
	cr_assert_eq(cons_decode("billing", 7, longer, len + 1, &back), WB_E_CORRUPT);
	cr_assert_eq(cons_decode("", 0, buf, len, &back), WB_E_CORRUPT);
	buf[0] = 9; /* unknown format */
	cr_assert_eq(cons_decode("billing", 7, buf, len, &back), WB_E_CORRUPT);
}

Test(consumers, stored_garbage_is_corrupt)
{
	struct storage_txn *t = wtxn();
	struct storage_val k = {"bad", 3}, v = {"\x01\x00", 2};
	cr_assert_eq(storage_put(t, STORAGE_DB_CONSUMERS, k, v, 0), 0);
	struct cons_record r;
	cr_assert_eq(cons_get(t, "bad", 3, &r), WB_E_CORRUPT);
	cr_assert_eq(cons_get(t, "none", 4, &r), WB_E_NOTFOUND);
	storage_txn_abort(t);
}

static bool collect_parked(const struct cons_parked *p, void *arg)
{
	uint64_t *out = arg;
	out[++out[0]] = p->position;
	return true;
}

Test(consumers, checkpoint_and_parked_survive_reopen)
{
	struct cons_record r;
	fill(&r, "g1");
	struct storage_txn *t = wtxn();
	cr_assert_eq(cons_put(t, &r), 0);
	fill(&r, "g10");
	cr_assert_eq(cons_put(t, &r), 0);
	cr_assert_eq(cons_set_checkpoint(t, "g1", 2, 40, 41), 0);
	/* never back */
	cr_assert_eq(cons_set_checkpoint(t, "g1", 2, 30, 31), 0);
	cr_assert_eq(cons_set_checkpoint(t, "nope", 4, 30, 31), WB_E_NOTFOUND);
	cr_assert_eq(cons_park(t, "g1", 2, 12, 3, 99, "max deliveries", 14), 0);
	cr_assert_eq(cons_park(t, "g1", 2, 5, 1, 98, "bad data", 8), 0);
	/* "g10"'s parked events share the prefix "g1" but not "g1\0" */
	cr_assert_eq(cons_park(t, "g10", 3, 6, 1, 98, "", 0), 0);
	cr_assert_eq(storage_txn_commit(t), 0);
	storage_close(st);
	st = fixture_open(&fx, NULL, &STORE_OPTS);

	t = rtxn();
	cr_assert_eq(cons_get(t, "g1", 2, &r), 0);
	cr_assert_eq(r.checkpoint, 40);
	cr_assert_eq(r.resume, 41);
	uint64_t got[8] = {0}, next = 0, n = 0;
	bool end = false;
	cr_assert_eq(cons_parked_list(t, "g1", 2, 0, 0, collect_parked, got, &next, &end), 0);
	cr_assert_eq(got[0], 2);
	cr_assert_eq(got[1], 5);
	cr_assert_eq(got[2], 12);
	cr_assert(end);
	cr_assert_eq(next, 13);
	/* paged */
	memset(got, 0, sizeof(got));
	cr_assert_eq(cons_parked_list(t, "g1", 2, 0, 1, collect_parked, got, &next, &end), 0);
	cr_assert_eq(got[0], 1);
	cr_assert_eq(next, 6);
	cr_assert(!end);
	memset(got, 0, sizeof(got));
	cr_assert_eq(cons_parked_list(t, "g1", 2, next, 1, collect_parked, got, &next, &end), 0);
	cr_assert_eq(got[1], 12);
	cr_assert_eq(cons_parked_count(t, "g10", 3, &n), 0);
	cr_assert_eq(n, 1);
	struct cons_parked one;
	cr_assert_eq(cons_get_parked(t, "g1", 2, 12, &one), 0);
	cr_assert_eq(one.deliveries, 3);
	cr_assert_eq(one.parked_at_us, 99);
	cr_assert_eq(one.reason_len, 14);
	cr_assert_eq(memcmp(one.reason, "max deliveries", 14), 0);
	cr_assert_eq(cons_get_parked(t, "g1", 2, 6, &one), WB_E_NOTFOUND);
	storage_txn_abort(t);

	t = wtxn();
	cr_assert_eq(cons_unpark(t, "g1", 2, 5), 0);
	cr_assert_eq(cons_unpark(t, "g1", 2, 5), WB_E_NOTFOUND);
	uint64_t removed = 0;
	cr_assert_eq(cons_delete(t, "g1", 2, &removed), 0);
	cr_assert_eq(removed, 1);
	cr_assert_eq(cons_delete(t, "g1", 2, &removed), WB_E_NOTFOUND);
	cr_assert_eq(storage_txn_commit(t), 0);
	t = rtxn();
	cr_assert_eq(cons_get(t, "g1", 2, &r), WB_E_NOTFOUND);
	cr_assert_eq(cons_parked_count(t, "g1", 2, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(cons_parked_count(t, "g10", 3, &n), 0);
	cr_assert_eq(n, 1);
	storage_txn_abort(t);
}

static bool take_one(const struct cons_parked *p, void *arg)
{
	uint64_t *taken = arg;
	if (taken[0] == 1)
		return false; /* full: stop before p */
	taken[0] = 1;
	taken[1] = p->position;
	return true;
}

/* A visitor that stops (a page that is full) leaves the event it refused
 * for the next page. */
Test(consumers, refused_event_starts_the_next_page)
{
	struct storage_txn *t = wtxn();
	for (uint64_t p = 10; p <= 12; p++)
		cr_assert_eq(cons_park(t, "g", 1, p, 1, 1, "", 0), 0);
	uint64_t taken[2] = {0, 0}, next = 0;
	bool end = true;
	cr_assert_eq(cons_parked_list(t, "g", 1, 0, 0, take_one, taken, &next, &end), 0);
	cr_assert_eq(taken[1], 10);
	cr_assert_eq(next, 11);
	cr_assert(!end);
	taken[0] = 0;
	cr_assert_eq(cons_parked_list(t, "g", 1, next, 0, take_one, taken, &next, &end), 0);
	cr_assert_eq(taken[1], 11);
	taken[0] = 0;
	cr_assert_eq(cons_parked_list(t, "g", 1, next, 0, take_one, taken, &next, &end), 0);
	cr_assert_eq(taken[1], 12);
	cr_assert(end);
	cr_assert_eq(next, 13);
	storage_txn_abort(t);
}

Test(consumers, delete_removes_many_parked)
{
	struct cons_record r;
	fill(&r, "big");
	struct storage_txn *t = wtxn();
	cr_assert_eq(cons_put(t, &r), 0);
	for (uint64_t p = 1; p <= 1000; p++)
		cr_assert_eq(cons_park(t, "big", 3, p, 1, 1, "r", 1), 0);
	uint64_t removed = 0, n = 1;
	cr_assert_eq(cons_delete(t, "big", 3, &removed), 0);
	cr_assert_eq(removed, 1000);
	cr_assert_eq(cons_parked_count(t, "big", 3, &n), 0);
	cr_assert_eq(n, 0);
	storage_txn_abort(t);
}

Test(consumers, parked_reason_is_bounded)
{
	char reason[CONS_REASON_MAX + 100];
	memset(reason, 'x', sizeof(reason));
	struct storage_txn *t = wtxn();
	cr_assert_eq(cons_park(t, "g", 1, 1, 1, 1, reason, sizeof(reason)), 0);
	struct storage_val v;
	uint8_t kb[10] = {'g', 0, 0, 0, 0, 0, 0, 0, 0, 1};
	struct storage_val k = {kb, 10};
	cr_assert_eq(storage_get(t, STORAGE_DB_PARKED, k, &v), 0);
	cr_assert_eq(v.len, CONS_PARKED_HEADER + CONS_REASON_MAX);
	storage_txn_abort(t);
}

Test(consumers, group_names)
{
	char why[128];
	char name[300];
	memset(name, 'n', sizeof(name));
	cr_assert_eq(cons_check_name("billing", 7, why, sizeof(why)), 0);
	cr_assert_eq(cons_check_name("gr\xc3\xbcn", 5, why, sizeof(why)), 0);
	cr_assert_eq(cons_check_name(name, 255, why, sizeof(why)), 0);
	cr_assert_eq(cons_check_name(name, 256, why, sizeof(why)), WB_BAD_REQUEST);
	cr_assert_eq(cons_check_name("", 0, why, sizeof(why)), WB_BAD_REQUEST);
	cr_assert_not_null(strstr(why, "consumer group name"));
	cr_assert_eq(cons_check_name("a\tb", 3, why, sizeof(why)), WB_BAD_REQUEST);
	cr_assert_eq(cons_check_name("a\0b", 3, why, sizeof(why)), WB_BAD_REQUEST);
	cr_assert_eq(cons_check_name("\xff", 1, why, sizeof(why)), WB_BAD_REQUEST);
}
