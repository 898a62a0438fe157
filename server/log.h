/* Log lines to stderr: one line per event, a UTC timestamp, the level, the
 * event name and key=value fields, for example
 *   2026-11-26T20:18:45.123Z level=info event=listening addr=127.0.0.1:7411
 * Values that may hold spaces or quotes are written with log_quote(). */
#ifndef WB_LOG_H
#define WB_LOG_H

#include <stddef.h>

enum log_level { WB_LOG_DEBUG = 0, WB_LOG_INFO = 1, WB_LOG_WARN = 2, WB_LOG_ERROR = 3 };

/* Messages below level are dropped. Not thread-safe against log calls: set
 * it before threads start. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn" or "error"; -1 for anything else. */
int log_parse_level(const char *text);

/* Returns true when a message of level would be written. */
int log_enabled(enum log_level level);

/* Writes one line: event, then fields formatted from fmt (key=value pairs
 * separated by spaces; may be NULL). Thread-safe: the line is written with
 * one write(2). */
void srv_log(enum log_level level, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Writes s (len bytes) as a double-quoted value into out[0..outlen),
 * escaping quotes, backslashes and control bytes, truncating when needed.
 * Returns out. */
const char *log_quote(const char *s, size_t len, char *out, size_t outlen);

#endif
