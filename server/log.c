/* Log lines, and the limit on them (log.h).
 *
 * Happy path: srv_log() drops a line below the level, asks the limiter
 * (under limit_mu: the writer thread logs its fatal error too) whether the
 * line's event has a token left, formats the line outside the lock and
 * writes it with one write(2). A line whose event has no token left costs a
 * hash, a compare and the lock, and is counted.
 *
 * Failure modes: a flood of one event is cut to its burst and rate, and
 * summarised by the next line of the event or by the server's timer
 * (log_flush_summaries()); the table of events is fixed, so unknown events
 * past its capacity share one bucket per level. A write that fails or is
 * short is not retried: a log line is never worth blocking the loop. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = WB_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* The process's limiter; zeroed, its rate is 0: nothing is limited until
 * log_set_limit(). */
static pthread_mutex_t limit_mu = PTHREAD_MUTEX_INITIALIZER;
static struct log_limiter limiter;

/* How many slots a name may probe before it goes to the other bucket: keeps
 * the cost of an unknown event bounded once the table is nearly full. */
#define LOG_LIMIT_PROBES 16u

void log_set_level(enum log_level level)
{
	min_level = level;
}

int log_parse_level(const char *text)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(text, level_names[i]) == 0)
			return i;
	return -1;
}

int log_enabled(enum log_level level)
{
	return level >= min_level;
}

/* Formats and writes one line; the limit has been applied. */
__attribute__((format(printf, 3, 0))) static void
vwrite_line(enum log_level level, const char *event, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
	                 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s event=%s", tm.tm_year + 1900,
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	                 (int)(tv.tv_usec / 1000), level_names[level], event);
	if (fmt != NULL && n > 0 && (size_t)n < sizeof(line) - 2) {
		line[n++] = ' ';
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		if (m > 0)
			n += m;
	}
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t r = write(STDERR_FILENO, line, (size_t)n);
	(void)r;
}

static void write_line(enum log_level level, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void write_line(enum log_level level, const char *event, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(level, event, fmt, ap);
	va_end(ap);
}

static void write_summary(const struct log_summary *sum)
{
	char fields[LOG_EVENT_MAX + 96];
	write_line(sum->level, "log_suppressed", "%s",
	           log_summary_fields(sum, fields, sizeof(fields)));
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void srv_log(enum log_level level, const char *event, const char *fmt, ...)
{
	struct log_summary sum;

	if (level < min_level)
		return;
	pthread_mutex_lock(&limit_mu);
	bool write = log_limiter_admit(&limiter, level, event, mono_ms(), &sum);
	pthread_mutex_unlock(&limit_mu);
	if (sum.count > 0)
		write_summary(&sum);
	if (!write)
		return;
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(level, event, fmt, ap);
	va_end(ap);
}

void log_flush_summaries(bool all)
{
	struct log_summary sum;
	size_t cursor = 0;
	for (;;) {
		pthread_mutex_lock(&limit_mu);
		bool got = log_limiter_take(&limiter, mono_ms(), all, &cursor, &sum);
		pthread_mutex_unlock(&limit_mu);
		if (!got)
			return;
		write_summary(&sum);
	}
}

void log_set_limit(uint64_t rate, uint64_t burst, uint64_t summary_ms)
{
	log_flush_summaries(true);
	pthread_mutex_lock(&limit_mu);
	uint64_t total = limiter.suppressed_total;
	log_limiter_init(&limiter, rate, burst, summary_ms);
	limiter.suppressed_total = total;
	pthread_mutex_unlock(&limit_mu);
}

uint64_t log_suppressed_total(void)
{
	pthread_mutex_lock(&limit_mu);
	uint64_t n = limiter.suppressed_total;
	pthread_mutex_unlock(&limit_mu);
	return n;
}

/* ------------------------------------------------------------ the limiter */

static uint64_t since(uint64_t then, uint64_t now)
{
	return now > then ? now - then : 0; /* a clock that went back: no time */
}

static uint64_t capacity_milli(const struct log_limiter *l, enum log_level level)
{
	return l->burst * (level == WB_LOG_ERROR ? LOG_ERROR_BURST_FACTOR : 1u) * 1000u;
}

void log_limiter_init(struct log_limiter *l, uint64_t rate, uint64_t burst, uint64_t summary_ms)
{
	memset(l, 0, sizeof(*l));
	l->rate = rate;
	l->burst = burst;
	l->summary_ms = summary_ms;
	for (int i = 0; i < 4; i++) {
		struct log_slot *s = &l->other[i];
		snprintf(s->event, sizeof(s->event), "other");
		s->level = (enum log_level)i;
		s->tokens_milli = capacity_milli(l, s->level);
	}
}

/* FNV-1a over the name as the slot keeps it, and the level. */
static size_t slot_hash(enum log_level level, const char *event)
{
	uint32_t h = 2166136261u ^ (uint32_t)level;
	for (size_t i = 0; i < LOG_EVENT_MAX - 1 && event[i] != '\0'; i++)
		h = (h ^ (unsigned char)event[i]) * 16777619u;
	return h;
}

/* The slot of (event, level), claimed on first use with a full bucket. */
static struct log_slot *find_slot(struct log_limiter *l, enum log_level level, const char *event,
                                  uint64_t now_ms)
{
	if (event == NULL || event[0] == '\0')
		return &l->other[level];
	size_t h = slot_hash(level, event);
	for (size_t k = 0; k < LOG_LIMIT_PROBES; k++) {
		struct log_slot *s = &l->slots[(h + k) % LOG_LIMIT_SLOTS];
		if (s->event[0] == '\0') {
			snprintf(s->event, sizeof(s->event), "%s", event);
			s->level = level;
			s->tokens_milli = capacity_milli(l, level);
			s->last_ms = now_ms;
			return s;
		}
		if (s->level == level && strncmp(s->event, event, LOG_EVENT_MAX - 1) == 0)
			return s;
	}
	return &l->other[level];
}

static void refill(const struct log_limiter *l, struct log_slot *s, uint64_t now_ms)
{
	uint64_t cap = capacity_milli(l, s->level);
	uint64_t dt = since(s->last_ms, now_ms);
	if (dt == 0)
		return;
	s->last_ms = now_ms;
	/* rate lines a second are rate thousandths of a line a millisecond;
	 * dt is compared first so that the product cannot overflow. */
	uint64_t need = cap > s->tokens_milli ? cap - s->tokens_milli : 0;
	s->tokens_milli = dt > need / l->rate ? cap : s->tokens_milli + dt * l->rate;
}

static void take_summary(struct log_limiter *l, struct log_slot *s, uint64_t now_ms,
                         struct log_summary *sum)
{
	memcpy(sum->of, s->event, sizeof(sum->of));
	sum->level = s->level;
	sum->count = s->suppressed;
	sum->ms = since(s->since_ms, now_ms);
	s->suppressed = 0;
	l->pending--;
}

static bool summary_due(const struct log_limiter *l, const struct log_slot *s, uint64_t now_ms)
{
	return s->suppressed > 0 && since(s->since_ms, now_ms) >= l->summary_ms;
}

bool log_limiter_admit(struct log_limiter *l, enum log_level level, const char *event,
                       uint64_t now_ms, struct log_summary *sum)
{
	sum->count = 0;
	if (l->rate == 0)
		return true;
	struct log_slot *s = find_slot(l, level, event, now_ms);
	refill(l, s, now_ms);
	bool ok = s->tokens_milli >= 1000u;
	if (ok) {
		s->tokens_milli -= 1000u;
	} else {
		if (s->suppressed++ == 0) {
			s->since_ms = now_ms;
			l->pending++;
		}
		l->suppressed_total++;
	}
	if (summary_due(l, s, now_ms))
		take_summary(l, s, now_ms, sum);
	return ok;
}

bool log_limiter_take(struct log_limiter *l, uint64_t now_ms, bool all, size_t *cursor,
                      struct log_summary *sum)
{
	for (; l->pending > 0 && *cursor < LOG_LIMIT_SLOTS + 4; (*cursor)++) {
		size_t i = *cursor;
		struct log_slot *s =
		        i < LOG_LIMIT_SLOTS ? &l->slots[i] : &l->other[i - LOG_LIMIT_SLOTS];
		if (s->suppressed > 0 && (all || summary_due(l, s, now_ms))) {
			take_summary(l, s, now_ms, sum);
			(*cursor)++;
			return true;
		}
	}
	return false;
}

const char *log_summary_fields(const struct log_summary *sum, char *out, size_t outlen)
{
	snprintf(out, outlen, "of=%s count=%llu seconds=%llu.%llu", sum->of,
	         (unsigned long long)sum->count, (unsigned long long)(sum->ms / 1000u),
	         (unsigned long long)(sum->ms % 1000u / 100u));
	return out;
}

const char *log_quote(const char *s, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (outlen < 3) {
		if (outlen > 0)
			out[0] = '\0';
		return out;
	}
	out[o++] = '"';
	for (size_t i = 0; i < len && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7F) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}
