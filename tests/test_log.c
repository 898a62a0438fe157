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
