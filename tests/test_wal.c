/* Tests of the write-ahead log (storage/wal.h) on real files in a fresh
 * temporary directory: CRC32C, round trips across segment switches, replay
 * points, release and spares, a torn last batch at every byte offset, damage
 * before the end, a batch larger than a segment, zeroing ahead of the tail,
 * and a full disk (a small tmpfs, where mounting is allowed). */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "wal.h"
#include "wb_error.h"

#define SEG WAL_SEGMENT_MIN

static struct fixture fx;
static char dir[FIXTURE_PATH_MAX + 16];
static bool mounted;

static void setup(void)
{
	fixture_setup(&fx, "wal");
	fixture_path(&fx, "wal", dir, sizeof(dir));
	mounted = false;
}

static void teardown(void)
{
	if (mounted)
		umount2(dir, MNT_DETACH);
	fixture_teardown(&fx);
}

TestSuite(wal, .init = setup, .fini = teardown);

/* ---------------------------------------------------------------- helpers */

/* Record seq's body: its length and bytes follow from seq alone. */
static uint32_t body_len(uint64_t seq)
{
	return (uint32_t)(seq * 7919u % 301u);
}

static void make_body(uint64_t seq, uint8_t *b, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seq * 31u + i * 7u + 1u);
}

static struct wal *open_log(uint64_t applied, unsigned spares, struct wal_open_info *info)
{
	struct wal_options o = {.dir = dir, .segment_size = SEG, .spare_segments = spares};
	struct wal *w = NULL;
	char err[512] = "";
	int rc = wal_open(&w, &o, applied, info, err, sizeof(err));
	cr_assert_eq(rc, 0, "wal_open: %s (%s)", wb_strerror(rc), err);
	return w;
}

/* wal_open() that must fail with WB_E_CORRUPT; returns its message. */
static void open_corrupt(uint64_t applied, char *err, size_t errlen)
{
	struct wal_options o = {.dir = dir, .segment_size = SEG};
	struct wal *w = NULL;
	int rc = wal_open(&w, &o, applied, NULL, err, errlen);
	cr_assert_eq(rc, WB_E_CORRUPT, "wal_open gave %s, not CORRUPT (%s)", wb_strerror(rc), err);
	cr_assert_null(w);
}

/* Adds n records with bodies of their own lengths (len 0: body_len), writes
 * and syncs them as one batch. Returns the batch's first sequence. */
static uint64_t put_batch(struct wal *w, unsigned n, uint32_t len)
{
	uint8_t b[4096];
	uint64_t first = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t seq = wal_last_seq(w) + 1 + i;
		uint32_t l = len != 0 ? len : body_len(seq);
		make_body(seq, b, l);
		uint64_t got;
		cr_assert_eq(wal_add(w, (uint16_t)seq, 3, b, l, &got), 0);
		cr_assert_eq(got, seq);
		if (i == 0)
			first = got;
	}
	cr_assert_eq(wal_write(w), 0);
	cr_assert_eq(wal_sync(w), 0);
	return first;
}

/* What a replay gave: checked record by record against the generator. */
struct seen {
	uint64_t first, next; /* records first..next-1 seen */
	uint64_t batch;       /* batch_first of the last one */
	unsigned bad;
	char why[200];
};

static int seen_cb(void *arg, const struct wal_record *r)
{
	struct seen *s = arg;
	uint8_t b[4096];
	if (s->next == 0)
		s->first = s->next = r->seq;
	bool ok = r->seq == s->next && r->type == (uint16_t)r->seq && r->version == 3 &&
	          r->batch_first <= r->seq && r->batch_first >= s->batch;
	if (ok && r->len <= sizeof(b)) {
		make_body(r->seq, b, r->len);
		ok = memcmp(b, r->body, r->len) == 0;
	}
	if (!ok && s->bad++ == 0)
		snprintf(s->why, sizeof(s->why), "record %" PRIu64 " (expected %" PRIu64 ")",
		         r->seq, s->next);
	s->next = r->seq + 1;
	s->batch = r->batch_first;
	return 0;
}

/* Replays w and checks that exactly records from..to came, intact. */
static void expect_replay(struct wal *w, uint64_t from, uint64_t to)
{
	struct seen s = {0};
	cr_assert_eq(wal_replay(w, seen_cb, &s), 0);
	cr_assert_eq(s.bad, 0, "replay: %s", s.why);
	if (to < from) {
		cr_assert_eq(s.next, 0,
		             "replay gave records %" PRIu64 "..%" PRIu64 ", none expected", s.first,
		             s.next - 1);
		return;
	}
	cr_assert(s.first == from && s.next == to + 1,
	          "replay gave %" PRIu64 "..%" PRIu64 ", expected %" PRIu64 "..%" PRIu64, s.first,
	          s.next - 1, from, to);
}

static char *seg_path(uint64_t first, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%016" PRIx64 ".wal", dir, first);
	return buf;
}

static bool exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static unsigned count_files(const char *prefix)
{
	unsigned n = 0;
	char p[FIXTURE_PATH_MAX + 64];
	for (unsigned i = 0; i < 64; i++) {
		snprintf(p, sizeof(p), "%s/%s%u.wal", dir, prefix, i);
		n += exists(p);
	}
	return n;
}

static void patch(const char *path, uint64_t off, const void *b, size_t n)
{
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, b, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static uint8_t peek(const char *path, uint64_t off)
{
	uint8_t b = 0;
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	close(fd);
	return b;
}

static void flip(const char *path, uint64_t off)
{
	uint8_t b = (uint8_t)(peek(path, off) ^ 0x5a);
	patch(path, off, &b, 1);
}

static bool all_zero(const char *path, uint64_t off, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (peek(path, off + i) != 0)
			return false;
	return true;
}

static uint64_t rec_size(uint64_t seq)
{
	return WAL_RECORD_HEADER + ((body_len(seq) + 7u) & ~7u);
}

/* ---------------------------------------------------------------- CRC32C */

/* Bit by bit, from the definition (reflected 0x1EDC6F41). */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? crc >> 1 ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

Test(wal, crc32c_known_vectors)
{
	uint8_t z[32] = {0};
	cr_assert_eq(wal_crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(wal_crc32c(0, z, sizeof(z)), 0x8A9136AAu);
	cr_assert_eq(wal_crc32c(0, "", 0), 0);
	cr_assert_eq(wal_crc32c(wal_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

Test(wal, crc32c_matches_the_definition_at_any_length_and_alignment)
{
	static uint8_t buf[8192 + 16];
	uint64_t rng = 42;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)fixture_splitmix(&rng);
	for (int t = 0; t < 400; t++) {
		size_t align = fixture_splitmix(&rng) % 16;
		size_t len = fixture_splitmix(&rng) % 8193;
		size_t cut = len > 0 ? fixture_splitmix(&rng) % len : 0;
		uint32_t want = crc_ref(0, buf + align, len);
		cr_assert_eq(wal_crc32c(0, buf + align, len), want, "len %zu align %zu", len,
		             align);
		cr_assert_eq(
		        wal_crc32c(wal_crc32c(0, buf + align, cut), buf + align + cut, len - cut),
		        want, "len %zu split at %zu", len, cut);
	}
}

/* ---------------------------------------------------------------- round trips */

Test(wal, empty_log_continues_after_applied)
{
	struct wal_open_info info;
	char p[256];
	struct wal *w = open_log(100, 0, &info);
	cr_assert_eq(info.last_seq, 0);
	cr_assert_eq(info.segments, 0);
	cr_assert_eq(wal_last_seq(w), 100);
	expect_replay(w, 1, 0);
	cr_assert_eq(put_batch(w, 3, 0), 101);
	cr_assert(exists(seg_path(101, p, sizeof(p))));
	wal_close(w);
	w = open_log(100, 0, &info);
	cr_assert_eq(info.first_seq, 101);
	cr_assert_eq(info.last_seq, 103);
	cr_assert_eq(info.records, 3);
	cr_assert_str_empty(info.cut_segment);
	expect_replay(w, 101, 103);
	wal_close(w);
}

/* Writes batches of 1..40 records until the log has `segments` segments;
 * returns the first sequence of each segment in firsts[]. */
static unsigned fill(struct wal *w, unsigned segments, uint64_t *firsts, unsigned max)
{
	unsigned n = 0;
	struct wal_stats st;
	for (unsigned b = 0;; b++) {
		uint64_t before = wal_last_seq(w);
		wal_get_stats(w, &st);
		uint64_t segs = st.segments;
		put_batch(w, 1 + b * 7 % 40, 0);
		wal_get_stats(w, &st);
		if (st.segments != segs || n == 0) {
			cr_assert_lt(n, max);
			firsts[n++] = before + 1;
		}
		if (st.segments == segments && st.segments != segs)
			break;
	}
	return n;
}

Test(wal, round_trip_across_segments_and_replay_points)
{
	uint64_t firsts[16];
	char p[256];
	struct wal_open_info info;
	struct wal *w = open_log(0, 0, &info);
	unsigned n = fill(w, 5, firsts, 16);
	put_batch(w, 5, 0);
	uint64_t last = wal_last_seq(w);
	struct wal_stats st;
	wal_get_stats(w, &st);
	cr_assert_eq(st.segments, 5);
	cr_assert_eq(st.segments_created, 5);
	cr_assert_eq(st.records, last);
	cr_assert_eq(st.syncs, st.batches);
	cr_assert_eq(st.disk_bytes, 5u * SEG);
	wal_close(w);
	for (unsigned i = 0; i < n; i++)
		cr_assert(exists(seg_path(firsts[i], p, sizeof(p))), "%s", p);

	uint64_t points[] = {0,        1,   firsts[1] - 1, firsts[1], firsts[2] + 3, firsts[4] - 1,
	                     last - 1, last};
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		w = open_log(points[i], 0, &info);
		cr_assert_eq(info.first_seq, 1);
		cr_assert_eq(info.last_seq, last);
		cr_assert_eq(info.records, last - points[i]);
		cr_assert_eq(info.segments, 5);
		cr_assert_eq(info.cut_bytes, 0);
		cr_assert_str_empty(info.cut_segment);
		expect_replay(w, points[i] + 1, last);
		wal_close(w);
	}
	/* The log goes on where it ended, and a reopen sees it. */
	w = open_log(last, 0, NULL);
	cr_assert_eq(put_batch(w, 2, 0), last + 1);
	wal_close(w);
	w = open_log(firsts[4], 0, NULL);
	expect_replay(w, firsts[4] + 1, last + 2);
	wal_close(w);
}

Test(wal, a_replay_callback_stops_the_walk)
{
	struct wal *w = open_log(0, 0, NULL);
	put_batch(w, 4, 0);
	struct seen s = {0};
	cr_assert_eq(wal_replay(w, seen_cb, &s), 0);
	cr_assert_eq(s.next, 5);
	wal_close(w);
}

Test(wal, discard_and_empty_write_give_sequences_again)
{
	struct wal *w = open_log(0, 0, NULL);
	uint64_t seq;
	cr_assert_eq(wal_write(w), 0);
	cr_assert_eq(wal_add(w, 1, 3, "x", 1, &seq), 0);
	cr_assert_eq(seq, 1);
	wal_discard(w);
	cr_assert_eq(wal_last_seq(w), 0);
	cr_assert_eq(put_batch(w, 2, 0), 1);
	wal_close(w);
	w = open_log(0, 0, NULL);
	expect_replay(w, 1, 2);
	wal_close(w);
}

Test(wal, oversize_record_is_inval)
{
	struct wal *w = open_log(0, 0, NULL);
	uint8_t b[8] = {0};
	uint64_t seq = 77;
	cr_assert_eq(wal_add(w, 1, 3, b, (size_t)WAL_RECORD_MAX + 1, &seq), WB_E_INVAL);
	cr_assert_eq(seq, 77);
	cr_assert_eq(put_batch(w, 1, 0), 1);
	wal_close(w);
}

Test(wal, bad_options_are_inval)
{
	struct wal *w = NULL;
	char err[200];
	struct wal_options o = {.dir = dir, .segment_size = SEG - 1};
	cr_assert_eq(wal_open(&w, &o, 0, NULL, err, sizeof(err)), WB_E_INVAL);
	o.dir = "";
	o.segment_size = 0;
	cr_assert_eq(wal_open(&w, &o, 0, NULL, err, sizeof(err)), WB_E_INVAL);
	cr_assert_null(w);
}

Test(wal, a_batch_larger_than_a_segment_gets_its_own)
{
	char p[256];
	struct wal *w = open_log(0, 4, NULL);
	put_batch(w, 3, 0);
	size_t big = 700u << 10;
	uint8_t *b = malloc(big);
	cr_assert_not_null(b);
	for (int i = 0; i < 2; i++) {
		uint64_t seq = wal_last_seq(w) + 1 + (uint64_t)i;
		memset(b, (int)seq, big);
		cr_assert_eq(wal_add(w, (uint16_t)seq, 3, b, big, NULL), 0);
	}
	cr_assert_eq(wal_write(w), 0);
	cr_assert_eq(wal_sync(w), 0);
	free(b);
	struct stat sb;
	cr_assert_eq(stat(seg_path(4, p, sizeof(p)), &sb), 0);
	cr_assert_geq((uint64_t)sb.st_size, WAL_SEGMENT_HEADER + 2 * (WAL_RECORD_HEADER + big));
	cr_assert_lt((uint64_t)sb.st_size,
	             WAL_SEGMENT_HEADER + 2 * (WAL_RECORD_HEADER + big) + 4096);
	/* The next batches go on after it, in a segment of the usual size. */
	put_batch(w, 200, 0);
	put_batch(w, 2, 0);
	uint64_t last = wal_last_seq(w);
	wal_close(w);

	struct seen s = {0};
	w = open_log(0, 4, NULL);
	cr_assert_eq(wal_replay(w, seen_cb, &s), 0);
	cr_assert_eq(s.next, last + 1); /* the big bodies are not checked by seen_cb */
	/* Released, the big segment is removed, not kept as a spare. */
	cr_assert_eq(wal_release(w, last), 0);
	cr_assert_not(exists(seg_path(4, p, sizeof(p))));
	struct wal_stats st;
	wal_get_stats(w, &st);
	cr_assert_eq(st.spares, 1); /* the first segment */
	cr_assert_eq(st.segments_removed, 1);
	wal_close(w);
}

Test(wal, a_record_of_the_largest_size_round_trips)
{
	struct wal *w = open_log(0, 0, NULL);
	uint8_t *b = malloc(WAL_RECORD_MAX);
	cr_assert_not_null(b);
	memset(b, 0xab, WAL_RECORD_MAX);
	b[WAL_RECORD_MAX - 1] = 1;
	cr_assert_eq(wal_add(w, 1, 3, b, WAL_RECORD_MAX, NULL), 0);
	cr_assert_eq(wal_write(w), 0);
	cr_assert_eq(wal_sync(w), 0);
	free(b);
	wal_close(w);

	struct wal_open_info info;
	w = open_log(0, 0, &info);
	cr_assert_eq(info.last_seq, 1);
	struct seen s = {0};
	cr_assert_eq(wal_replay(w, seen_cb, &s), 0);
	cr_assert_eq(s.next, 2);
	wal_close(w);
}

/* ---------------------------------------------------------------- release and spares */

Test(wal, release_keeps_spares_and_reuses_them)
{
	uint64_t firsts[16];
	char p[256];
	struct wal *w = open_log(0, 2, NULL);
	fill(w, 5, firsts, 16);
	uint64_t last = wal_last_seq(w);
	/* A checkpoint inside segment 3: segments 1 and 2 go. */
	cr_assert_eq(wal_release(w, firsts[2] + 1), 0);
	cr_assert_eq(wal_bytes_since_release(w), 0);
	struct wal_stats st;
	wal_get_stats(w, &st);
	cr_assert_eq(st.segments, 3);
	cr_assert_eq(st.spares, 2);
	cr_assert_not(exists(seg_path(firsts[0], p, sizeof(p))));
	cr_assert_not(exists(seg_path(firsts[1], p, sizeof(p))));
	cr_assert_eq(count_files("spare-"), 2);
	/* Everything: all but the current segment; one more than the spares
	 * allowed is removed. */
	cr_assert_eq(wal_release(w, last), 0);
	wal_get_stats(w, &st);
	cr_assert_eq(st.segments, 1);
	cr_assert_eq(st.spares, 2);
	cr_assert_eq(st.segments_removed, 2);
	cr_assert_eq(count_files("spare-"), 2);

	/* The next two segments are the spares, renamed; a third is new. */
	uint64_t more[8];
	fill(w, 4, more, 8);
	wal_get_stats(w, &st);
	cr_assert_eq(st.segments_recycled, 2);
	cr_assert_eq(st.segments_created, 6);
	cr_assert_eq(st.spares, 0);
	cr_assert_eq(count_files("spare-"), 0);
	put_batch(w, 3, 0);
	uint64_t end = wal_last_seq(w);
	cr_assert_gt(wal_bytes_since_release(w), 0);
	wal_close(w);

	/* The recycled segments still hold their old records past the tail:
	 * a reopen is clean and reads only the new ones. */
	struct wal_open_info info;
	w = open_log(last, 2, &info);
	cr_assert_eq(info.last_seq, end);
	cr_assert_eq(info.cut_bytes, 0);
	cr_assert_str_empty(info.cut_segment);
	cr_assert_eq(info.segments, 4);
	expect_replay(w, last + 1, end);
	wal_close(w);
}

Test(wal, a_recycled_spare_with_old_records_is_not_read_as_new)
{
	char p[256];
	struct wal *w = open_log(0, 1, NULL);
	/* Segment 1 full of small records, then segment B. */
	uint64_t firsts[4];
	fill(w, 2, firsts, 4);
	cr_assert_eq(wal_release(w, firsts[1] - 1), 0);
	/* Segment C reuses segment 1's file; one small batch goes in. */
	uint64_t more[4];
	fill(w, 2, more, 4);
	struct wal_stats st;
	wal_get_stats(w, &st);
	cr_assert_eq(st.segments_recycled, 1);
	uint64_t c = more[1];
	uint64_t end = wal_last_seq(w);
	wal_close(w);
	seg_path(c, p, sizeof(p));
	/* Past the new records, the old ones are intact (record 1 of the old
	 * use would sit right after the header if nothing had been written). */
	uint64_t off = WAL_SEGMENT_HEADER;
	for (uint64_t s = c; s <= end; s++)
		off += rec_size(s);
	cr_assert_not(all_zero(p, off + WAL_RECORD_HEADER, 4096));

	struct wal_open_info info;
	w = open_log(c - 1, 1, &info);
	cr_assert_eq(info.last_seq, end);
	cr_assert_eq(info.cut_bytes, 0);
	expect_replay(w, c, end);
	/* A torn batch in it: its first record garbled; the old records after
	 * it are not taken for damage, and the batch is cut. */
	uint64_t first = put_batch(w, 3, 0);
	wal_close(w);
	flip(p, off + 20);
	w = open_log(c - 1, 1, &info);
	cr_assert_eq(info.last_seq, first - 1);
	cr_assert_str_eq(info.cut_segment, strrchr(p, '/') + 1);
	cr_assert_eq(info.cut_offset, off);
	expect_replay(w, c, first - 1);
	wal_close(w);
}

/* ---------------------------------------------------------------- torn tails */

enum tear { TRUNCATE, ZERO, GARBLE };

/* The log of every torn-tail case: batches of 2, 1 and 3 records, then the
 * last batch of 3 records (lengths 5, 40, 13); returns its first sequence
 * and the offsets of its records' starts (and its end) in starts[4]. */
static uint64_t torn_log(uint64_t starts[4])
{
	struct wal_options o = {.dir = dir, .segment_size = SEG, .no_sync = true};
	struct wal *w;
	char err[200];
	cr_assert_eq(wal_open(&w, &o, 0, NULL, err, sizeof(err)), 0, "%s", err);
	put_batch(w, 2, 0);
	put_batch(w, 1, 0);
	put_batch(w, 3, 0);
	uint64_t off = WAL_SEGMENT_HEADER;
	for (uint64_t s = 1; s <= 6; s++)
		off += rec_size(s);
	uint64_t first = wal_last_seq(w) + 1;
	static const uint32_t lens[3] = {5, 40, 13};
	for (int i = 0; i < 3; i++) {
		uint8_t b[64];
		make_body(first + (uint64_t)i, b, lens[i]);
		cr_assert_eq(wal_add(w, (uint16_t)(first + (uint64_t)i), 3, b, lens[i], NULL), 0);
		starts[i] = off;
		off += WAL_RECORD_HEADER + ((lens[i] + 7u) & ~7u);
	}
	starts[3] = off;
	cr_assert_eq(wal_write(w), 0);
	wal_close(w);
	return first;
}

static void tear_at(enum tear how, const char *path, uint64_t k, uint64_t end)
{
	if (how == TRUNCATE) {
		cr_assert_eq(truncate(path, (off_t)k), 0);
	} else if (how == ZERO) {
		static const uint8_t z[256];
		cr_assert_leq(end - k, sizeof(z));
		patch(path, k, z, end - k);
	} else {
		flip(path, k);
	}
}

static void torn_case(enum tear how, uint64_t k)
{
	uint64_t st[4];
	char p[256], err[200];
	uint64_t first = torn_log(st);
	seg_path(1, p, sizeof(p));
	tear_at(how, p, k, st[3]);

	/* Which records of the last batch survive, and where the cut starts. */
	int j = 0;
	while (k >= st[j + 1])
		j++;
	uint64_t body_end = st[j] + WAL_RECORD_HEADER + (uint32_t[]){5, 40, 13}[j];
	/* Padding is not covered by the CRC: a garbled padding byte harms
	 * nothing, and zeros from there on leave record j whole. */
	bool padding = how != TRUNCATE && k >= body_end;
	uint64_t kept = first + (uint64_t)j - 1;
	if (padding)
		kept = how == GARBLE ? first + 2 : first + (uint64_t)j;
	bool cut = !padding && (how == GARBLE || k > st[j]);

	struct wal_options o = {.dir = dir, .segment_size = SEG, .no_sync = true};
	struct wal_open_info info;
	struct wal *w;
	int rc = wal_open(&w, &o, 0, &info, err, sizeof(err));
	cr_assert_eq(rc, 0, "tear %d at %" PRIu64 ": %s (%s)", how, k, wb_strerror(rc), err);
	cr_assert_eq(info.last_seq, kept, "tear %d at %" PRIu64 ": last %" PRIu64, how, k,
	             info.last_seq);
	expect_replay(w, 1, kept);
	if (cut) {
		cr_assert_str_eq(info.cut_segment, "0000000000000001.wal", "tear %d at %" PRIu64,
		                 how, k);
		cr_assert_eq(info.cut_offset, st[j], "tear %d at %" PRIu64, how, k);
		if (how == TRUNCATE)
			cr_assert_eq(info.cut_bytes, k - st[j]);
		else if (how == GARBLE && j < 2 && (k < st[j] + 8 || k >= st[j] + 12))
			cr_assert_eq(info.cut_bytes, st[3] - st[j], "tear %d at %" PRIu64, how, k);
		else if (how == GARBLE && j < 2) /* a garbled length may claim more */
			cr_assert(info.cut_bytes >= st[3] - st[j] && info.cut_bytes <= SEG - st[j],
			          "tear %d at %" PRIu64 ": cut %" PRIu64, how, k, info.cut_bytes);
		else
			cr_assert(info.cut_bytes >= 8 && info.cut_bytes <= SEG - st[j],
			          "tear %d at %" PRIu64 ": cut %" PRIu64, how, k, info.cut_bytes);
		/* Cut means overwritten with zeros: no record of the torn batch
		 * is left to be read again. */
		cr_assert(
		        all_zero(p, info.cut_offset,
		                 info.cut_bytes < st[3] - st[j] ? info.cut_bytes : st[3] - st[j]));
	} else {
		cr_assert_str_empty(info.cut_segment, "tear %d at %" PRIu64, how, k);
		cr_assert_eq(info.cut_bytes, 0);
	}
	/* The log goes on with the next sequence; a short record now ends
	 * where a stale one of the torn batch began. */
	uint8_t b[64];
	uint64_t seq;
	uint32_t len = j < 2 ? (uint32_t[]){5, 40, 13}[j] : 5;
	make_body(kept + 1, b, len);
	cr_assert_eq(wal_add(w, (uint16_t)(kept + 1), 3, b, len, &seq), 0);
	cr_assert_eq(seq, kept + 1);
	cr_assert_eq(wal_write(w), 0);
	wal_close(w);
	w = open_log(0, 0, &info);
	cr_assert_eq(info.last_seq, kept + 1, "tear %d at %" PRIu64 ": reopen ends at %" PRIu64,
	             how, k, info.last_seq);
	cr_assert_str_empty(info.cut_segment);
	expect_replay(w, 1, kept + 1);
	wal_close(w);
	fixture_teardown(&fx);
	setup();
}

static void torn_every_offset(enum tear how)
{
	uint64_t st[4];
	torn_log(st);
	fixture_teardown(&fx);
	setup();
	/* Under valgrind every third offset (and all record starts). */
	uint64_t step = fixture_under_valgrind() ? 3 : 1;
	for (uint64_t k = st[0]; k < st[3]; k++)
		if ((k - st[0]) % step == 0 || k == st[1] || k == st[2])
			torn_case(how, k);
}

Test(wal, torn_tail_truncated_at_every_offset)
{
	torn_every_offset(TRUNCATE);
}

Test(wal, torn_tail_zeroed_from_every_offset)
{
	torn_every_offset(ZERO);
}

Test(wal, torn_tail_garbled_at_every_offset)
{
	torn_every_offset(GARBLE);
}

Test(wal, torn_batch_in_a_new_segment_and_a_cut_short_preparation)
{
	uint64_t firsts[4];
	char p[256], q[256];
	struct wal *w = open_log(0, 0, NULL);
	fill(w, 2, firsts, 4);
	uint64_t b = firsts[1];
	uint64_t last = wal_last_seq(w);
	wal_close(w);
	/* The first batch of segment 2 torn at its first record: the log ends
	 * at the end of segment 1; segment 2 stays, as the current one. */
	flip(seg_path(b, p, sizeof(p)), WAL_SEGMENT_HEADER + 3);
	struct wal_open_info info;
	w = open_log(0, 0, &info);
	cr_assert_eq(info.last_seq, b - 1);
	cr_assert_str_eq(info.cut_segment, strrchr(p, '/') + 1);
	cr_assert_eq(info.cut_offset, WAL_SEGMENT_HEADER);
	cr_assert_eq(put_batch(w, 2, 0), b);
	wal_close(w);
	w = open_log(0, 0, NULL);
	expect_replay(w, 1, b + 1);
	wal_close(w);
	(void)last;

	/* A segment named after the next record whose header never became
	 * durable (all zeros): it holds nothing, and goes. */
	int fd = open(seg_path(b + 2, q, sizeof(q)), O_WRONLY | O_CREAT, 0640);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, SEG), 0);
	close(fd);
	w = open_log(0, 0, &info);
	cr_assert_eq(info.last_seq, b + 1);
	cr_assert_eq(info.segments, 2);
	cr_assert_not(exists(q));
	cr_assert_eq(put_batch(w, 1, 0), b + 2);
	wal_close(w);
	w = open_log(b, 0, NULL);
	expect_replay(w, b + 1, b + 2);
	wal_close(w);
}

/* Record 6 of a batch 4..6, put right after a log's record 5 of batch 5:
 * the right sequence at the right place, but it does not continue batch 5
 * and does not start one, so the log ends at 5 (a stale record of a torn
 * batch whose sequences were given again looks like this). */
Test(wal, a_record_that_does_not_continue_its_batch_ends_the_log)
{
	char main_dir[sizeof(dir)], a[300], b[300];
	memcpy(main_dir, dir, sizeof(dir));
	fixture_path(&fx, "other", dir, sizeof(dir));
	struct wal *w = open_log(0, 0, NULL);
	put_batch(w, 3, 0);
	put_batch(w, 3, 0);
	wal_close(w);
	seg_path(1, a, sizeof(a));
	memcpy(dir, main_dir, sizeof(dir));
	w = open_log(0, 0, NULL);
	put_batch(w, 3, 0);
	put_batch(w, 1, 0);
	put_batch(w, 1, 0);
	wal_close(w);
	seg_path(1, b, sizeof(b));
	uint64_t off = WAL_SEGMENT_HEADER;
	for (uint64_t s = 1; s < 6; s++)
		off += rec_size(s);
	uint8_t rec[512];
	int fd = open(a, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, rec, rec_size(6), (off_t)off), (ssize_t)rec_size(6));
	close(fd);
	patch(b, off, rec, rec_size(6));

	struct wal_open_info info;
	w = open_log(0, 0, &info);
	cr_assert_eq(info.last_seq, 5);
	/* Of a batch older than the last one: never read as new, so left. */
	cr_assert_eq(info.cut_bytes, 0);
	expect_replay(w, 1, 5);
	cr_assert_eq(put_batch(w, 2, 0), 6);
	wal_close(w);
	w = open_log(0, 0, NULL);
	expect_replay(w, 1, 7);
	wal_close(w);
}

/* ---------------------------------------------------------------- damage */

Test(wal, damage_before_the_end_names_segment_and_offset)
{
	char p[256], err[1024], want[128];
	struct wal *w = open_log(0, 0, NULL);
	for (int i = 0; i < 6; i++)
		put_batch(w, 3, 0);
	wal_close(w);
	/* Record 8 (the second of batch 7..9) damaged: batch 10 proves it was
	 * durable. */
	uint64_t off = WAL_SEGMENT_HEADER;
	for (uint64_t s = 1; s < 8; s++)
		off += rec_size(s);
	seg_path(1, p, sizeof(p));
	flip(p, off + WAL_RECORD_HEADER - 1);
	open_corrupt(0, err, sizeof(err));
	snprintf(want, sizeof(want), "0000000000000001.wal is damaged at offset %" PRIu64, off);
	cr_assert(strstr(err, want) != NULL, "%s", err);
	cr_assert(strstr(err, "record 8 ") != NULL, "%s", err);
	cr_assert(strstr(err, "backup") != NULL && strstr(err, "truncate") != NULL, "%s", err);
	/* Nothing was changed: the damaged byte and everything after it stay. */
	open_corrupt(0, err, sizeof(err));
	cr_assert(strstr(err, want) != NULL, "%s", err);
	/* Also when the damaged record is one the checkpoint covers. */
	open_corrupt(12, err, sizeof(err));
	cr_assert(strstr(err, want) != NULL, "%s", err);
	/* Following the message's way out loses records 8 and later, knowingly. */
	cr_assert_eq(truncate(p, (off_t)off), 0);
	struct wal_open_info info;
	w = open_log(0, 0, &info);
	cr_assert_eq(info.last_seq, 7);
	expect_replay(w, 1, 7);
	wal_close(w);
}

Test(wal, damage_at_a_segment_end_is_a_hole_before_the_next)
{
	uint64_t firsts[4];
	char p[256], err[1024];
	struct wal *w = open_log(0, 0, NULL);
	fill(w, 3, firsts, 4);
	wal_close(w);
	/* The first record of segment 2 is damaged. */
	flip(seg_path(firsts[1], p, sizeof(p)), WAL_SEGMENT_HEADER + 40);
	open_corrupt(0, err, sizeof(err));
	cr_assert(strstr(err, strrchr(p, '/') + 1) != NULL, "%s", err);
	cr_assert(strstr(err, "offset 4096") != NULL, "%s", err);
}

Test(wal, missing_segments_are_corrupt)
{
	uint64_t firsts[4];
	char p[256], err[1024];
	struct wal *w = open_log(0, 0, NULL);
	fill(w, 3, firsts, 4);
	uint64_t last = wal_last_seq(w);
	wal_close(w);
	/* The log must reach the checkpoint. */
	open_corrupt(last + 5, err, sizeof(err));
	cr_assert(strstr(err, "checkpoint") != NULL, "%s", err);
	/* A segment in the middle gone. */
	seg_path(firsts[1], p, sizeof(p));
	char moved[300];
	snprintf(moved, sizeof(moved), "%s.moved", p);
	cr_assert_eq(rename(p, moved), 0);
	open_corrupt(0, err, sizeof(err));
	cr_assert(strstr(err, "0000000000000001.wal") != NULL, "%s", err);
	cr_assert_eq(rename(moved, p), 0);
	/* The first segment gone while the checkpoint needs its records. */
	seg_path(1, p, sizeof(p));
	cr_assert_eq(unlink(p), 0);
	open_corrupt(0, err, sizeof(err));
	cr_assert(strstr(err, "missing") != NULL, "%s", err);
	/* Not needed once the checkpoint covers them. */
	w = open_log(firsts[1] - 1, 0, NULL);
	expect_replay(w, firsts[1], last);
	wal_close(w);
}

Test(wal, a_damaged_header_of_a_segment_in_use_is_corrupt)
{
	uint64_t firsts[4];
	char p[256], err[1024];
	struct wal *w = open_log(0, 0, NULL);
	fill(w, 2, firsts, 4);
	wal_close(w);
	flip(seg_path(firsts[1], p, sizeof(p)), 20);
	open_corrupt(0, err, sizeof(err));
	cr_assert(strstr(err, "header") != NULL && strstr(err, strrchr(p, '/') + 1) != NULL, "%s",
	          err);
}

/* ---------------------------------------------------------------- a full disk */

/* Bytes of path's first `len` that are allocated but unwritten (FIEMAP), or
 * -1 when the file system does not say. */
static long long unwritten_bytes(const char *path, uint64_t len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	enum { N = 256 };
	struct fiemap *fm = calloc(1, sizeof(*fm) + N * sizeof(struct fiemap_extent));
	cr_assert_not_null(fm);
	fm->fm_start = 0;
	fm->fm_length = len;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = N;
	long long n = 0;
	if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
		n = -1;
	} else {
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
			if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN)
				n += (long long)fm->fm_extents[i].fe_length;
	}
	free(fm);
	close(fd);
	return n;
}

Test(wal, a_new_segment_is_written_with_zeros_ahead_of_its_tail)
{
	/* The control: a file only allocated is seen as unwritten, so the
	 * check below can fail. */
	char plain[FIXTURE_PATH_MAX + 32];
	fixture_path(&fx, "allocated", plain, sizeof(plain));
	int fd = open(plain, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(posix_fallocate(fd, 0, SEG), 0);
	close(fd);
	long long before = unwritten_bytes(plain, SEG);
	if (before <= 0)
		cr_skip_test("this file system does not report unwritten extents");

	struct wal *w = open_log(0, 0, NULL);
	put_batch(w, 3, 100);
	char path[FIXTURE_PATH_MAX + 64];
	seg_path(1, path, sizeof(path));
	/* The zeroer runs on a thread of its own: wait for it, boundedly. */
	long long left = 0;
	for (int i = 0; i < 1000; i++) {
		left = unwritten_bytes(path, SEG);
		if (left == 0)
			break;
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	cr_expect_eq(left, 0, "%lld bytes of the segment are still unwritten", left);
	/* The zeros went after the batch, never over it. */
	put_batch(w, 2, 50);
	wal_close(w);
	w = open_log(0, 0, NULL);
	expect_replay(w, 1, 5);
	wal_close(w);
}

/* Bytes this process has read with read(2) and friends (/proc/self/io). */
static unsigned long long bytes_read(void)
{
	long long n = fixture_proc_number("/proc/self/io", "rchar");
	cr_assert_geq(n, 0, "no rchar in /proc/self/io");
	return (unsigned long long)n;
}

Test(wal, the_open_does_not_read_the_unwritten_rest_of_a_segment)
{
	const uint64_t big = 16u << 20;
	struct wal_options o = {.dir = dir, .segment_size = big};
	struct wal *w = NULL;
	char err[512] = "";
	cr_assert_eq(wal_open(&w, &o, 0, NULL, err, sizeof(err)), 0, "%s", err);
	put_batch(w, 3, 100);
	wal_close(w);
	char path[FIXTURE_PATH_MAX + 64];
	seg_path(1, path, sizeof(path));
	if (unwritten_bytes(path, big) <= 0)
		cr_skip_test("this file system does not report unwritten extents");

	unsigned long long before = bytes_read();
	cr_assert_eq(wal_open(&w, &o, 0, NULL, err, sizeof(err)), 0, "%s", err);
	unsigned long long got = bytes_read() - before;
	wal_close(w);
	cr_expect_lt(got, 6u << 20, "the open read %llu bytes of a 16 MiB segment", got);

	/* The control: the same segment with its rest written (zeros) is
	 * read whole, so the figure above can fail. */
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	static const uint8_t z[1 << 16];
	for (uint64_t off = 8u << 20; off < big; off += sizeof(z))
		cr_assert_eq(pwrite(fd, z, sizeof(z), (off_t)off), (ssize_t)sizeof(z));
	close(fd);
	before = bytes_read();
	cr_assert_eq(wal_open(&w, &o, 0, NULL, err, sizeof(err)), 0, "%s", err);
	got = bytes_read() - before;
	expect_replay(w, 1, 3);
	wal_close(w);
	cr_expect_gt(got, 10u << 20, "the control read only %llu bytes", got);
}

Test(wal, a_full_disk_is_nospc_and_the_log_goes_on_after_space_is_freed)
{
	cr_assert_eq(mkdir(dir, 0750), 0);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=3m,mode=0750") != 0)
		cr_skip_test("cannot mount a small tmpfs here (%s)", strerror(errno));
	mounted = true;
	static uint8_t big[4000];
	struct wal *w = open_log(0, 0, NULL);
	int rc = 0;
	uint64_t last = 0;
	for (int i = 0; i < 200 && rc == 0; i++) {
		last = wal_last_seq(w);
		for (int r = 0; r < 20; r++)
			cr_assert_eq(wal_add(w, (uint16_t)(last + 1 + (uint64_t)r), 3, big,
			                     sizeof(big), NULL),
			             0);
		rc = wal_write(w);
		if (rc == 0)
			cr_assert_eq(wal_sync(w), 0);
	}
	cr_assert_eq(rc, WB_E_NOSPC);
	/* Nothing went in; the sequences are given again, and the batch fails
	 * the same way while the disk is full. */
	cr_assert_eq(wal_last_seq(w), last);
	uint64_t seq;
	for (int r = 0; r < 20; r++) {
		cr_assert_eq(wal_add(w, 1, 3, big, sizeof(big), &seq), 0);
		cr_assert_eq(seq, last + 1 + (uint64_t)r);
	}
	cr_assert_eq(wal_write(w), WB_E_NOSPC);
	cr_assert_eq(wal_last_seq(w), last);
	/* Space freed by a checkpoint: the log goes on. */
	cr_assert_eq(wal_release(w, last), 0);
	for (int r = 0; r < 20; r++)
		cr_assert_eq(wal_add(w, 1, 3, big, sizeof(big), NULL), 0);
	cr_assert_eq(wal_write(w), 0);
	cr_assert_eq(wal_sync(w), 0);
	wal_close(w);
	struct wal_open_info info;
	w = open_log(last, 0, &info);
	cr_assert_eq(info.last_seq, last + 20);
	cr_assert_eq(info.records, 20);
	cr_assert_eq(info.cut_bytes, 0);
	wal_close(w);
	cr_assert_eq(umount2(dir, 0), 0);
	mounted = false;
}
