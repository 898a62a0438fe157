/* Log lines to stderr: one line per event, a UTC timestamp, the level, the
 * event name and key=value fields, for example
 *   2026-11-26T20:18:45.123Z level=info event=listening addr=127.0.0.1:7411
 * Values that may hold spaces or quotes are written with log_quote().
 *
 * Lines are rate-limited per event (DESIGN.md section 9, "rate-limited
 * logging"): a client that sends a million bad frames must not be able to
 * fill the disk or drown every other line. Each (event, level) has a token
 * bucket: a burst of lines, then at most a rate of lines per second. A line
 * over the limit is counted, not written, and the count comes out as one
 * summary line of its own,
 *   ... level=info event=log_suppressed of=bad_frame count=120344 seconds=5.0
 * once the first line it counts is summary_ms old (so at most one summary
 * per event per summary_ms while a flood goes on, and one after it stops),
 * written by the next line of that event or by log_flush_summaries(), which
 * the server calls from a timer and at shutdown. */
#ifndef WB_LOG_H
#define WB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { WB_LOG_DEBUG = 0, WB_LOG_INFO = 1, WB_LOG_WARN = 2, WB_LOG_ERROR = 3 };

/* Messages below level are dropped. Not thread-safe against log calls: set
 * it before threads start. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn" or "error"; -1 for anything else. */
int log_parse_level(const char *text);

/* Returns true when a message of level would be written. */
int log_enabled(enum log_level level);

/* Writes one line: event, then fields formatted from fmt (key=value pairs
 * separated by spaces; may be NULL), unless the event's rate limit
 * suppresses it (it is then only counted). A line is at most 2 KiB: longer
 * fields are cut. Thread-safe: the limit is kept under a mutex and the line
 * is written with one write(2). event need not outlive the call. */
void srv_log(enum log_level level, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Writes s (len bytes) as a double-quoted value into out[0..outlen),
 * escaping quotes, backslashes and control bytes, truncating when needed.
 * Returns out. */
const char *log_quote(const char *s, size_t len, char *out, size_t outlen);

/* ------------------------------------------------------------ the limit */

/* Error lines get this many times the burst: they are rare when all is
 * well and each says something is wrong, but a client can provoke some of
 * them on every request (a storage failure, an answer dropped for want of
 * memory), so they are limited too. */
#define LOG_ERROR_BURST_FACTOR 5u
/* The events the limiter tells apart, and the longest name it tells apart
 * (longer names share the slot of their first LOG_EVENT_MAX - 1 bytes).
 * Events past the table's capacity share one bucket per level, summarised
 * as of=other. */
#define LOG_LIMIT_SLOTS 256u
#define LOG_EVENT_MAX 48u

/* Sets the process's limit: after a burst of burst lines (burst *
 * LOG_ERROR_BURST_FACTOR for errors), at most rate lines per second of each
 * event and level; rate 0 turns limiting off. A run of suppressed lines is
 * summarised once its first line is summary_ms old. Buckets start full.
 * Until it is called nothing is limited. Thread-safe; meant for start-up:
 * the summaries pending are written first, the buckets start over, and the
 * total (log_suppressed_total()) is kept. */
void log_set_limit(uint64_t rate, uint64_t burst, uint64_t summary_ms);

/* Writes the summary lines that are due, or every pending one when all is
 * true (at shutdown, so that no count is lost). Thread-safe. */
void log_flush_summaries(bool all);

/* Lines suppressed since the process started. Thread-safe. */
uint64_t log_suppressed_total(void);

/* The limiter itself, pure: time comes in as now_ms (a monotonic clock), so
 * that it can be tested without sleeping. srv_log() runs one instance under
 * its mutex; these calls are not thread-safe on their own. */

struct log_slot {
	char event[LOG_EVENT_MAX]; /* "" while free */
	enum log_level level;
	uint64_t tokens_milli; /* thousandths of a line */
	uint64_t last_ms;      /* of the last refill */
	uint64_t suppressed;   /* since the last summary */
	uint64_t since_ms;     /* when the first of those was suppressed */
};

struct log_limiter {
	uint64_t rate, burst, summary_ms;
	uint64_t suppressed_total;
	size_t pending; /* slots with suppressed > 0 */
	struct log_slot slots[LOG_LIMIT_SLOTS];
	struct log_slot other[4]; /* per level, once the table is full */
};

/* A summary to write: count lines of event of (or "other") at level were
 * suppressed over the ms before it was taken. */
struct log_summary {
	char of[LOG_EVENT_MAX];
	enum log_level level;
	uint64_t count;
	uint64_t ms;
};

/* Empties l and sets its limit (as log_set_limit()). */
void log_limiter_init(struct log_limiter *l, uint64_t rate, uint64_t burst, uint64_t summary_ms);

/* Decides on one line of event at level at now_ms: returns true when it may
 * be written, false when it is suppressed (and counted). Sets sum->count to
 * 0, or, when this event's summary is due, fills *sum (the caller writes it
 * before the line) and starts the event's count again. */
bool log_limiter_admit(struct log_limiter *l, enum log_level level, const char *event,
                       uint64_t now_ms, struct log_summary *sum);

/* Takes the next summary due at now_ms (any pending one when all is true)
 * from slot *cursor on (start at 0), fills *sum, starts that event's count
 * again and returns true; false when there is none left. */
bool log_limiter_take(struct log_limiter *l, uint64_t now_ms, bool all, size_t *cursor,
                      struct log_summary *sum);

/* The fields of sum's line ("of=EVENT count=N seconds=S.T") into
 * out[0..outlen). Returns out. */
const char *log_summary_fields(const struct log_summary *sum, char *out, size_t outlen);

#endif
