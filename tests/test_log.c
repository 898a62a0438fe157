/* server/log.c: levels, the line format, quoting. The file includes
 * <syslog.h> first on purpose: its LOG_DEBUG, LOG_INFO... macros collided
 * with log.h's level names before they were WB_LOG_*, and this file did not
 * compile then. */
#include <syslog.h>

#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs srv_log with stderr redirected into buf. */
static void capture(char *buf, size_t cap, enum log_level level, const char *event,
                    const char *fields)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	int saved = dup(STDERR_FILENO);
	cr_assert_geq(saved, 0);
	dup2(p[1], STDERR_FILENO);
	if (fields != NULL)
		srv_log(level, event, "%s", fields);
	else
		srv_log(level, event, NULL);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	ssize_t n = read(p[0], buf, cap - 1);
	close(p[0]);
	buf[n > 0 ? n : 0] = '\0';
}

Test(log, levels_parse_and_filter)
{
	cr_assert_eq(log_parse_level("debug"), WB_LOG_DEBUG);
	cr_assert_eq(log_parse_level("info"), WB_LOG_INFO);
	cr_assert_eq(log_parse_level("warn"), WB_LOG_WARN);
	cr_assert_eq(log_parse_level("error"), WB_LOG_ERROR);
	cr_assert_eq(log_parse_level("warning"), -1);
	cr_assert_eq(log_parse_level(""), -1);
	/* The syslog names are macros of their own, untouched. */
	cr_assert_eq(LOG_ERR, 3);
	cr_assert_neq((int)WB_LOG_DEBUG, LOG_DEBUG);

	char buf[512];
	log_set_level(WB_LOG_WARN);
	cr_assert(!log_enabled(WB_LOG_INFO));
	cr_assert(log_enabled(WB_LOG_ERROR));
	capture(buf, sizeof(buf), WB_LOG_INFO, "dropped", "k=v");
	cr_assert_str_empty(buf);
	capture(buf, sizeof(buf), WB_LOG_ERROR, "kept", "k=v");
	cr_assert(strstr(buf, " level=error event=kept k=v\n") != NULL, "%s", buf);
	/* 2026-11-26T20:18:45.123Z */
	cr_assert_eq(buf[4], '-');
	cr_assert_eq(buf[10], 'T');
	cr_assert_eq(buf[23], 'Z');
	capture(buf, sizeof(buf), WB_LOG_WARN, "bare", NULL);
	cr_assert(strstr(buf, " level=warn event=bare\n") != NULL, "%s", buf);
}

Test(log, quoting_escapes_and_truncates)
{
	char out[64];
	cr_assert_str_eq(log_quote("a \"b\" \\c", 8, out, sizeof(out)), "\"a \\\"b\\\" \\\\c\"");
	cr_assert_str_eq(log_quote("x\ny\x7f", 4, out, sizeof(out)), "\"x\\x0ay\\x7f\"");
	char small[8];
	log_quote("abcdefghij", 10, small, sizeof(small));
	cr_assert_eq(small[0], '"');
	cr_assert_eq(small[strlen(small) - 1], '"');
	cr_assert_lt(strlen(small), sizeof(small));
	char tiny[2];
	cr_assert_str_empty(log_quote("abc", 3, tiny, sizeof(tiny)));
}

/* ------------------------------------------------------------ the limit */

/* Admits one line of event at level at now and says whether it may be
 * written; a summary it hands back is kept in *sum (count 0: none). */
static bool admit(struct log_limiter *l, enum log_level level, const char *event, uint64_t now,
                  struct log_summary *sum)
{
	return log_limiter_admit(l, level, event, now, sum);
}

/* Admits n info lines at now; returns how many may be written. */
static unsigned admit_n(struct log_limiter *l, const char *event, unsigned n, uint64_t now)
{
	unsigned ok = 0;
	struct log_summary sum;
	for (unsigned i = 0; i < n; i++)
		ok += admit(l, WB_LOG_INFO, event, now, &sum);
	return ok;
}

static struct log_limiter lim; /* 20 KiB: not on the stack */

static void burst_then_rate(void)
{
	log_limiter_init(&lim, 10, 20, 5000);
	cr_assert_eq(admit_n(&lim, "bad_frame", 25, 1000), 20u, "the burst is 20 lines");
	/* 10 lines a second: one every 100 ms, no sooner. */
	cr_assert_eq(admit_n(&lim, "bad_frame", 1, 1099), 0u);
	cr_assert_eq(admit_n(&lim, "bad_frame", 3, 1100), 1u);
	cr_assert_eq(admit_n(&lim, "bad_frame", 30, 2100), 10u, "a second gives 10 lines");
	/* Quiet long enough, the bucket is full again, never fuller. */
	cr_assert_eq(admit_n(&lim, "bad_frame", 30, 1000000), 20u);
	cr_assert_eq(lim.suppressed_total, 5u + 1 + 2 + 20 + 10);
	/* A clock that goes back gives no tokens and breaks nothing. */
	cr_assert_eq(admit_n(&lim, "bad_frame", 5, 500), 0u);
	cr_assert_eq(admit_n(&lim, "bad_frame", 5, 1000100), 1u);
}

static void errors_get_five_bursts_and_levels_are_apart(void)
{
	log_limiter_init(&lim, 10, 20, 5000);
	struct log_summary sum;
	unsigned errors = 0, warns = 0;
	for (int i = 0; i < 200; i++) {
		errors += admit(&lim, WB_LOG_ERROR, "storage_error", 7, &sum);
		warns += admit(&lim, WB_LOG_WARN, "storage_error", 7, &sum);
	}
	cr_assert_eq(errors, 20u * LOG_ERROR_BURST_FACTOR);
	cr_assert_eq(warns, 20u);
}

static void events_are_independent(void)
{
	log_limiter_init(&lim, 10, 20, 5000);
	cr_assert_eq(admit_n(&lim, "bad_frame", 1000, 50), 20u);
	cr_assert_eq(admit_n(&lim, "auth_failed", 1000, 50), 20u, "one flood spent another's");
	/* A name the table keeps is the name, not the pointer. */
	char copy[] = "bad_frame";
	cr_assert_eq(admit_n(&lim, copy, 1, 50), 0u);
}

static void summary_counts_and_text(void)
{
	log_limiter_init(&lim, 10, 20, 5000);
	struct log_summary sum;
	size_t cursor = 0;
	cr_assert_eq(admit_n(&lim, "bad_frame", 20, 10000), 20u);
	/* 120344 lines over 5 s: none written, none summarised yet. */
	for (unsigned i = 0; i < 120344; i++) {
		uint64_t now = 10000 + (uint64_t)i * 4999 / 120344;
		admit(&lim, WB_LOG_INFO, "bad_frame", now, &sum);
		cr_assert_eq(sum.count, 0u, "a summary before 5 s, at line %u", i);
	}
	cr_assert(!log_limiter_take(&lim, 14999, false, &cursor, &sum), "a summary before 5 s");
	/* The timer's summary, once the first suppressed line is 5 s old. */
	cursor = 0;
	cr_assert(log_limiter_take(&lim, 15000, false, &cursor, &sum));
	uint64_t written = 20 + 49; /* the burst, and 10 a second over 4.999 s */
	cr_assert_eq(sum.count, 20 + 120344 - written, "%llu", (unsigned long long)sum.count);
	cr_assert_eq(sum.count, lim.suppressed_total);
	char text[128];
	cr_assert_str_eq(log_summary_fields(&sum, text, sizeof(text)),
	                 "of=bad_frame count=120295 seconds=5.0");
	cr_assert_eq(sum.level, WB_LOG_INFO);
	cr_assert(!log_limiter_take(&lim, 99999, true, &cursor, &sum), "taken twice");
	/* A flood that goes on is summarised by its own next line once due
	 * (here one that is written: 1.001 s gave 11 lines with the 0.99 left). */
	cr_assert_eq(admit_n(&lim, "bad_frame", 100, 16000), 11u);
	cr_assert(!admit(&lim, WB_LOG_INFO, "bad_frame", 16001, &sum));
	cr_assert_eq(sum.count, 0u);
	cr_assert(admit(&lim, WB_LOG_INFO, "bad_frame", 21000, &sum));
	cr_assert_eq(sum.count, 90u, "%llu", (unsigned long long)sum.count);
	cr_assert_str_eq(log_summary_fields(&sum, text, sizeof(text)),
	                 "of=bad_frame count=90 seconds=5.0");
	/* At shutdown every pending count comes out, due or not. */
	cr_assert_eq(admit_n(&lim, "auth_failed", 25, 21000), 20u);
	cursor = 0;
	cr_assert(!log_limiter_take(&lim, 21001, false, &cursor, &sum));
	cursor = 0;
	cr_assert(log_limiter_take(&lim, 21001, true, &cursor, &sum));
	cr_assert_str_eq(log_summary_fields(&sum, text, sizeof(text)),
	                 "of=auth_failed count=5 seconds=0.0");
	cr_assert(!log_limiter_take(&lim, 21001, true, &cursor, &sum));
}

static void a_full_table_shares_the_other_bucket(void)
{
	log_limiter_init(&lim, 10, 20, 5000);
	struct log_summary sum;
	unsigned written = 0, names = 3 * LOG_LIMIT_SLOTS;
	for (unsigned i = 0; i < names; i++) {
		char name[32];
		snprintf(name, sizeof(name), "event_%u", i);
		written += admit(&lim, WB_LOG_WARN, name, 1, &sum);
		cr_assert_eq(sum.count, 0u);
	}
	/* Each name with a slot of its own wrote its line; the others share
	 * one burst. */
	cr_assert_eq(written + lim.suppressed_total, names);
	cr_assert_geq(lim.suppressed_total, names - LOG_LIMIT_SLOTS - 20);
	size_t cursor = 0;
	cr_assert(log_limiter_take(&lim, 5001, false, &cursor, &sum));
	cr_assert_str_eq(sum.of, "other");
	cr_assert_eq(sum.level, WB_LOG_WARN);
	cr_assert_eq(sum.count, lim.suppressed_total);
	/* The first names still have their own buckets, while the shared
	 * one is spent. */
	char last[32];
	snprintf(last, sizeof(last), "event_%u", names - 1);
	cr_assert(!admit(&lim, WB_LOG_WARN, last, 2, &sum));
	cr_assert(admit(&lim, WB_LOG_WARN, "event_0", 2, &sum), "event_0's bucket is not its own");
}

static void rate_zero_is_no_limit(void)
{
	log_limiter_init(&lim, 0, 20, 5000);
	cr_assert_eq(admit_n(&lim, "bad_frame", 10000, 1), 10000u);
	cr_assert_eq(lim.suppressed_total, 0u);
}

/* The pure limiter, one scenario after another (one test process: under
 * valgrind each costs a start-up). */
Test(log_limit, limiter)
{
	burst_then_rate();
	errors_get_five_bursts_and_levels_are_apart();
	events_are_independent();
	summary_counts_and_text();
	a_full_table_shares_the_other_bucket();
	rate_zero_is_no_limit();
}

/* srv_log itself: the limit, its summary line, the total, and the bound on
 * a line's length. */
Test(log_limit, srv_log_writes_the_burst_and_a_summary)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	int saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	log_set_level(WB_LOG_INFO);
	log_set_limit(1, 3, 60000);
	char huge[10000];
	memset(huge, 'x', sizeof(huge));
	huge[sizeof(huge) - 1] = '\0';
	for (int i = 0; i < 10; i++)
		srv_log(WB_LOG_INFO, "flood", "i=%d v=%s", i, huge);
	uint64_t total = log_suppressed_total();
	log_flush_summaries(true);
	log_set_limit(0, 1, 100);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	static char buf[65536], copy[65536];
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	memcpy(copy, buf, (size_t)n + 1);
	/* Ten calls take far less than the second a fourth line needs. */
	unsigned lines = 0, floods = 0;
	for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		lines++;
		cr_assert_leq(strlen(line) + 1, 2048u, "a line of %zu bytes", strlen(line) + 1);
		floods += strstr(line, " event=flood i=") != NULL;
	}
	cr_assert_eq(floods, 3u);
	cr_assert_eq(total, 7u);
	cr_assert_eq(lines, 4u);
	cr_assert(strstr(copy, " level=info event=log_suppressed of=flood count=7 seconds=") !=
	                  NULL,
	          "%s", copy);
}
