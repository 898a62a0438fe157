/* whizbangd check: verifies a stopped store.
 *
 * The store is opened as a start would open it (check.h): in log mode that
 * scans every log record's CRC from the checkpoint on and replays them, so a
 * damaged log is reported exactly as a start would refuse it. Then one read
 * snapshot is walked:
 *
 *   - every database, record by record (LMDB's own tree walk);
 *   - the event log: positions ascending and none above the last one handed
 *     out; every record decodes; its stream index entry and its event id
 *     entry point back at it; every stream index and event id entry points
 *     at an event that agrees; each stream's versions are dense from its
 *     first kept one to its last, and the counts of the three tables agree;
 *   - the ledger: every sequence up to the watermark has exactly one final
 *     entry, which decodes; no final entry above the ceiling.
 *
 * Each problem is one line on out; the walk goes on after a problem, up to a
 * bound, so that one report shows the extent of the damage. */
#include "check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "events.h"
#include "ledger.h"

#define MAX_REPORTED 50u

struct check {
	FILE *out;
	uint64_t problems;
};

static void problem(struct check *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *ck, const char *fmt, ...)
{
	ck->problems++;
	if (ck->problems > MAX_REPORTED)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("PROBLEM: ", ck->out);
	vfprintf(ck->out, fmt, ap);
	fputc('\n', ck->out);
	va_end(ap);
	if (ck->problems == MAX_REPORTED)
		fprintf(ck->out, "(further problems are counted, not shown)\n");
}

static const char *const db_names[STORAGE_DB_COUNT] = {
        "meta",     "events", "streams",   "stream_events", "event_ids", "ledger", "staged",
        "entities", "index",  "proj_meta", "stream_meta",   "consumers", "parked", "auth",
};

/* Walks every entry of every database; returns the entries of each. */
static int walk_all(struct check *ck, struct storage_txn *txn, uint64_t counts[STORAGE_DB_COUNT])
{
	for (int db = 0; db < STORAGE_DB_COUNT; db++) {
		struct storage_cursor *cur;
		int rc = storage_cursor_open(txn, (enum storage_db)db, &cur);
		if (rc != 0)
			return rc;
		struct storage_val k, v;
		uint64_t n = 0;
		rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v);
		while (rc == 0) {
			n++;
			rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v);
		}
		storage_cursor_close(cur);
		if (rc != WB_E_NOTFOUND) {
			problem(ck, "database %s cannot be walked after %" PRIu64 " entries: %s",
			        db_names[db], n, wb_strerror(rc));
			continue;
		}
		counts[db] = n;
	}
	return 0;
}

static void check_events(struct check *ck, struct storage_txn *txn,
                         const uint64_t counts[STORAGE_DB_COUNT])
{
	uint64_t last = 0;
	int rc = ev_last_position(txn, &last);
	if (rc != 0) {
		problem(ck, "the last position cannot be read: %s", wb_strerror(rc));
		return;
	}
	struct storage_cursor *cur;
	if (storage_cursor_open(txn, STORAGE_DB_EVENTS, &cur) != 0)
		return;
	struct storage_val k, v;
	uint64_t prev = 0, n = 0;
	rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v);
	for (; rc == 0; rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
		n++;
		if (k.len != 8) {
			problem(ck, "events: a key of %zu bytes", k.len);
			continue;
		}
		uint64_t pos = get_u64(k.data);
		if (pos == 0 || pos <= prev)
			problem(ck, "events: position %" PRIu64 " after %" PRIu64, pos, prev);
		if (pos > last)
			problem(ck,
			        "events: position %" PRIu64 " is above the last position %" PRIu64,
			        pos, last);
		prev = pos;
		struct ev_record r;
		if (ev_decode(pos, v.data, v.len, &r) != 0) {
			problem(ck, "events: the record at position %" PRIu64 " does not decode",
			        pos);
			continue;
		}
		uint64_t at;
		if (ev_position_of_id(txn, r.id, &at) != 0 || at != pos)
			problem(ck,
			        "events: the event id of position %" PRIu64 " is not indexed to it",
			        pos);
		struct ev_stream_info info;
		if (ev_stream_info(txn, r.stream, r.stream_len, &info) != 0) {
			problem(ck,
			        "events: position %" PRIu64
			        " names stream '%.*s', which has no record",
			        pos, (int)r.stream_len, r.stream);
			continue;
		}
		if (r.version >= info.count)
			problem(ck,
			        "events: position %" PRIu64 " has version %" PRIu64
			        " but its stream has %" PRIu64 " events",
			        pos, r.version, info.count);
		if (ev_position_at(txn, info.stream_id, r.version, &at) != 0 || at != pos)
			problem(ck,
			        "events: stream '%.*s' version %" PRIu64
			        " does not point at position %" PRIu64,
			        (int)r.stream_len, r.stream, r.version, pos);
	}
	storage_cursor_close(cur);
	if (rc != WB_E_NOTFOUND)
		problem(ck, "events: the walk stopped: %s", wb_strerror(rc));

	/* The two indexes hold exactly one entry per event (checked one way
	 * above): equal counts (walk_all()'s) make it both ways. */
	if (counts[STORAGE_DB_STREAM_EVENTS] != n)
		problem(ck, "stream_events holds %" PRIu64 " entries for %" PRIu64 " events",
		        counts[STORAGE_DB_STREAM_EVENTS], n);
	if (counts[STORAGE_DB_EVENT_IDS] != n)
		problem(ck, "event_ids holds %" PRIu64 " entries for %" PRIu64 " events",
		        counts[STORAGE_DB_EVENT_IDS], n);
	fprintf(ck->out, "events: %" PRIu64 " stored, last position %" PRIu64 "\n", n, last);
}

/* Each stream's stored versions are dense: from its first kept version to
 * its last, with no hole (a scavenge or a truncation removes a prefix). */
static void check_streams(struct check *ck, struct storage_txn *txn)
{
	struct storage_cursor *cur;
	if (storage_cursor_open(txn, STORAGE_DB_STREAM_EVENTS, &cur) != 0)
		return;
	struct storage_val k, v;
	uint64_t sid = 0, expect = 0, streams = 0;
	bool first = true;
	int rc;
	for (rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
	     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
		if (k.len != 16 || v.len != 8) {
			problem(ck, "stream_events: an entry of %zu/%zu bytes", k.len, v.len);
			continue;
		}
		uint64_t s = get_u64(k.data), ver = get_u64((const uint8_t *)k.data + 8);
		if (first || s != sid) {
			sid = s;
			streams++;
		} else if (ver != expect) {
			problem(ck,
			        "stream %" PRIu64 ": version %" PRIu64 " follows %" PRIu64
			        " (a hole)",
			        s, ver, expect - 1);
		}
		first = false;
		expect = ver + 1;
		struct ev_record r;
		if (ev_get(txn, get_u64(v.data), &r) != 0)
			problem(ck,
			        "stream %" PRIu64 " version %" PRIu64 ": position %" PRIu64
			        " holds no event",
			        s, ver, get_u64(v.data));
		else if (r.version != ver)
			problem(ck,
			        "stream %" PRIu64 " version %" PRIu64 ": position %" PRIu64
			        " holds version %" PRIu64,
			        s, ver, get_u64(v.data), r.version);
	}
	storage_cursor_close(cur);
	if (rc != WB_E_NOTFOUND)
		problem(ck, "stream_events: the walk stopped: %s", wb_strerror(rc));
	fprintf(ck->out, "streams: %" PRIu64 " with stored events\n", streams);
}

static void check_ledger(struct check *ck, struct storage_txn *txn)
{
	struct ledger_state ls;
	int rc = ledger_get_state(txn, &ls);
	if (rc != 0) {
		problem(ck, "ledger: the watermark cannot be read: %s", wb_strerror(rc));
		return;
	}
	if (ls.watermark > ls.ceiling && ls.ceiling != 0)
		problem(ck, "ledger: watermark %" PRIu64 " is above the ceiling %" PRIu64,
		        ls.watermark, ls.ceiling);
	struct storage_cursor *cur;
	if (storage_cursor_open(txn, STORAGE_DB_LEDGER, &cur) != 0)
		return;
	struct storage_val k, v;
	uint64_t expect = 1, n = 0;
	for (rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
	     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
		if (k.len != 8) {
			problem(ck, "ledger: a key of %zu bytes", k.len);
			continue;
		}
		uint64_t seq = get_u64(k.data);
		n++;
		if (seq <= ls.watermark && seq != expect)
			problem(ck,
			        "ledger: sequence %" PRIu64 " follows %" PRIu64
			        " below the watermark %" PRIu64 " (a sequence with no final entry)",
			        seq, expect - 1, ls.watermark);
		if (ls.ceiling != 0 && seq > ls.ceiling)
			problem(ck, "ledger: sequence %" PRIu64 " is above the ceiling %" PRIu64,
			        seq, ls.ceiling);
		expect = seq + 1;
		struct ledger_entry e;
		if (ledger_decode(seq, v.data, v.len, &e) != 0)
			problem(ck, "ledger: the entry of sequence %" PRIu64 " does not decode",
			        seq);
	}
	storage_cursor_close(cur);
	if (rc != WB_E_NOTFOUND)
		problem(ck, "ledger: the walk stopped: %s", wb_strerror(rc));
	if (ls.watermark > 0 && expect <= ls.watermark)
		problem(ck, "ledger: the entries end at %" PRIu64 ", below the watermark %" PRIu64,
		        expect - 1, ls.watermark);
	fprintf(ck->out,
	        "ledger: %" PRIu64 " final entries, watermark %" PRIu64 ", ceiling %" PRIu64 "\n",
	        n, ls.watermark, ls.ceiling);
}

uint64_t srv_check(struct storage *st, FILE *out)
{
	struct check ck = {.out = out};
	struct storage_txn *txn;
	int rc = storage_txn_begin(st, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		problem(&ck, "no read snapshot: %s", wb_strerror(rc));
		return ck.problems;
	}
	uint64_t counts[STORAGE_DB_COUNT] = {0};
	walk_all(&ck, txn, counts);
	for (int db = 0; db < STORAGE_DB_COUNT; db++)
		fprintf(out, "%s%s %" PRIu64, db == 0 ? "tables: " : ", ", db_names[db],
		        counts[db]);
	fputc('\n', out);
	check_events(&ck, txn, counts);
	check_streams(&ck, txn);
	check_ledger(&ck, txn);
	storage_txn_abort(txn);
	return ck.problems;
}
