/* Tests of whizbangd's configuration (server/config.h): defaults, option
 * forms, bounds and the messages of refused options; the config file, its
 * precedence under the flags, --check-config, the remote rule, and that the
 * example file and docs/OPERATIONS.md list exactly the table. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fixture.h"
#include "log.h"

#define KIB (1024ull)
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define TIB (1024ull * GIB)

/* --help and --version print to stdout; keep the test output clean. */
static void quiet(void)
{
	cr_redirect_stdout();
}

TestSuite(config, .init = quiet);

/* Runs config_parse_args over the NULL-terminated option list given after
 * the program name. */
#define PARSE(cfg, msg, ...)                                                                       \
	parse_list((cfg), (msg), sizeof(msg), (const char *[]){"whizbangd", __VA_ARGS__, NULL})

static int parse_list(struct srv_config *cfg, char *msg, size_t msglen, const char **list)
{
	char *argv[32];
	int argc = 0;
	while (list[argc] != NULL) {
		cr_assert_lt(argc, 31);
		argv[argc] = (char *)list[argc];
		argc++;
	}
	argv[argc] = NULL;
	msg[0] = '\0';
	return config_parse_args(cfg, argc, argv, msg, msglen);
}

Test(config, defaults_match_the_table)
{
	struct srv_config c;
	memset(&c, 0xA5, sizeof(c));
	config_defaults(&c);
	cr_assert_str_eq(c.listen, "127.0.0.1:7411");
	cr_assert_str_eq(c.data_dir, "whizbang-data");
	cr_assert_str_eq(c.port_file, "");
	cr_assert_eq(c.map_size, 64 * MIB);
	cr_assert_eq(c.max_frame, 4 * MIB);
	cr_assert_eq(c.max_connections, 1024);
	cr_assert_eq(c.max_read_count, 1000);
	cr_assert_eq(c.max_append_events, 10000);
	cr_assert_eq(c.max_output, 16 * MIB);
	cr_assert_eq(c.max_inflight, 1024);
	cr_assert_eq(c.frame_timeout_ms, 30000);
	cr_assert_eq(c.shutdown_timeout_ms, 10000);
	cr_assert_eq(c.log_level, WB_LOG_INFO);
}

Test(config, no_options_keeps_the_defaults)
{
	struct srv_config c;
	struct srv_config d;
	char msg[256];
	char *argv[] = {"whizbangd", NULL};
	config_defaults(&c);
	config_defaults(&d);
	cr_assert_eq(config_parse_args(&c, 1, argv, msg, sizeof(msg)), 0);
	cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0);
}

Test(config, value_as_next_argument_and_after_equals)
{
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	int rc = PARSE(&c, msg, "--map-size", "1G", "--max-frame=64K", "--listen", "0.0.0.0:0",
	               "--data-dir=/var/lib/wb", "--max-connections", "7", "--log-level=debug",
	               "--port-file", "/tmp/port");
	cr_assert_eq(rc, 0, "%s", msg);
	cr_assert_eq(c.map_size, 1 * GIB);
	cr_assert_eq(c.max_frame, 64 * KIB);
	cr_assert_str_eq(c.listen, "0.0.0.0:0");
	cr_assert_str_eq(c.data_dir, "/var/lib/wb");
	cr_assert_eq(c.max_connections, 7);
	cr_assert_eq(c.log_level, WB_LOG_DEBUG);
	cr_assert_str_eq(c.port_file, "/tmp/port");
	/* Untouched settings keep their defaults. */
	cr_assert_eq(c.max_read_count, 1000);
}

Test(config, size_suffixes)
{
	static const struct {
		const char *text;
		uint64_t value;
	} cases[] = {
	        {"1048576", 1 * MIB}, {"1024k", 1 * MIB}, {"1024K", 1 * MIB}, {"5M", 5 * MIB},
	        {"5m", 5 * MIB},      {"5MiB", 5 * MIB},  {"5MB", 5 * MIB},   {"5Mi", 5 * MIB},
	        {"1G", GIB},          {"1g", GIB},        {"1GiB", GIB},      {"16T", 16 * TIB},
	        {"2t", 2 * TIB},      {"0001M", 1 * MIB},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct srv_config c;
		char msg[256];
		config_defaults(&c);
		int rc = PARSE(&c, msg, "--map-size", cases[i].text);
		cr_assert_eq(rc, 0, "'%s': %s", cases[i].text, msg);
		cr_assert_eq(c.map_size, cases[i].value, "'%s' gave %llu", cases[i].text,
		             (unsigned long long)c.map_size);
	}
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--max-frame", "4096"), 0, "%s", msg);
	cr_assert_eq(c.max_frame, 4096);
	cr_assert_eq(PARSE(&c, msg, "--max-frame", "4k"), 0, "%s", msg);
	cr_assert_eq(c.max_frame, 4096);
}

Test(config, later_options_win)
{
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--max-frame", "8K", "--max-frame=16K"), 0, "%s", msg);
	cr_assert_eq(c.max_frame, 16 * KIB);
}

Test(config, bounds_are_inclusive)
{
	static const char *const ok[][2] = {
	        {"--max-frame", "4K"},          {"--max-frame", "64M"},
	        {"--map-size", "1M"},           {"--map-size", "16T"},
	        {"--max-connections", "1"},     {"--max-connections", "100000"},
	        {"--max-read-count", "100000"}, {"--frame-timeout-ms", "10"},
	        {"--max-inflight", "1000000"},  {"--max-output-per-connection", "4G"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct srv_config c;
		char msg[256];
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, ok[i][0], ok[i][1]), 0, "%s %s: %s", ok[i][0], ok[i][1],
		             msg);
	}
}

/* Each refused option answers -1 with a message that names it. */
struct bad_case {
	const char *args[3];
	const char *named; /* the option the message must name */
};

static void check_refused(const struct bad_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct srv_config c;
		char msg[256];
		const char *list[5] = {"whizbangd"};
		size_t k = 1;
		for (size_t j = 0; j < 3 && cases[i].args[j] != NULL; j++)
			list[k++] = cases[i].args[j];
		list[k] = NULL;
		config_defaults(&c);
		int rc = parse_list(&c, msg, sizeof(msg), list);
		cr_assert_eq(rc, -1, "case %zu (%s %s) was accepted", i, cases[i].args[0],
		             cases[i].args[1] != NULL ? cases[i].args[1] : "");
		cr_assert_not_null(strstr(msg, cases[i].named), "case %zu: '%s' does not name %s",
		                   i, msg, cases[i].named);
	}
}

Test(config, out_of_bounds_values)
{
	static const struct bad_case cases[] = {
	        {{"--max-frame", "4095"}, "--max-frame"},
	        {{"--max-frame", "64M1"}, "--max-frame"},
	        {{"--max-frame=67108865"}, "--max-frame"},
	        {{"--max-frame", "1G"}, "--max-frame"},
	        {{"--map-size", "1023K"}, "--map-size"},
	        {{"--map-size", "0"}, "--map-size"},
	        {{"--map-size", "17T"}, "--map-size"},
	        {{"--max-connections", "0"}, "--max-connections"},
	        {{"--max-connections", "100001"}, "--max-connections"},
	        {{"--max-read-count", "0"}, "--max-read-count"},
	        {{"--max-append-events", "100001"}, "--max-append-events"},
	        {{"--frame-timeout-ms", "9"}, "--frame-timeout-ms"},
	        {{"--shutdown-timeout-ms", "3600001"}, "--shutdown-timeout-ms"},
	        {{"--max-output-per-connection", "63K"}, "--max-output-per-connection"},
	        {{"--max-inflight", "1000001"}, "--max-inflight"},
	};
	check_refused(cases, sizeof(cases) / sizeof(cases[0]));

	/* The bounds are in the message, so the user knows what to give. */
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--max-frame", "1K"), -1);
	cr_assert_not_null(strstr(msg, "4096"), "%s", msg);
	cr_assert_not_null(strstr(msg, "67108864"), "%s", msg);
}

Test(config, values_that_are_not_numbers)
{
	static const struct bad_case cases[] = {
	        {{"--map-size", "abc"}, "--map-size"},
	        {{"--map-size", "12X"}, "--map-size"},
	        {{"--map-size", ""}, "--map-size"},
	        {{"--map-size="}, "--map-size"},
	        {{"--map-size", "-5"}, "--map-size"},
	        {{"--map-size", "+5M"}, "--map-size"},
	        {{"--map-size", " 5M"}, "--map-size"},
	        {{"--map-size", "5M "}, "--map-size"},
	        {{"--map-size", "1.5G"}, "--map-size"},
	        {{"--map-size", "5MM"}, "--map-size"},
	        {{"--map-size", "0x100000"}, "--map-size"},
	        {{"--map-size", "99999999999999999999"}, "--map-size"},
	        {{"--map-size", "17179869184T"}, "--map-size"}, /* 2^34 TiB wraps 64 bits */
	        {{"--map-size", "18446744073709551615K"}, "--map-size"},
	        /* (2^54 + 2^10) KiB wraps to exactly 1 MiB, inside the bounds. */
	        {{"--map-size", "18014398509483008K"}, "--map-size"},
	        {{"--max-connections", "10K"}, "--max-connections"},
	        {{"--max-connections", "1.5"}, "--max-connections"},
	        {{"--max-connections", "ten"}, "--max-connections"},
	        {{"--frame-timeout-ms", "5s"}, "--frame-timeout-ms"},
	        {{"--log-level", "loud"}, "--log-level"},
	        {{"--log-level", "INFO"}, "--log-level"},
	        {{"--log-level="}, "--log-level"},
	};
	check_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(config, unknown_options_and_arguments)
{
	static const struct bad_case cases[] = {
	        {{"--bogus", "1"}, "--bogus"},
	        {{"--bogus=1"}, "--bogus"},
	        {{"--map"}, "--map"},
	        {{"--map-size-x", "1G"}, "--map-size-x"},
	        {{"--MAP-SIZE", "1G"}, "--MAP-SIZE"},
	        {{"-m", "1G"}, "-m"},
	        {{"stray"}, "stray"},
	        {{"--max-frame", "8K", "extra"}, "extra"},
	};
	check_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(config, missing_value)
{
	static const struct bad_case cases[] = {
	        {{"--map-size"}, "--map-size"},
	        {{"--listen"}, "--listen"},
	        {{"--max-frame", "8K", "--log-level"}, "--log-level"},
	};
	check_refused(cases, sizeof(cases) / sizeof(cases[0]));
	/* An option where the value belongs is taken as the value, and
	 * refused as one. */
	static const struct bad_case swallowed[] = {
	        {{"--max-frame", "--map-size", "1G"}, "--max-frame"},
	};
	check_refused(swallowed, 1);
}

Test(config, string_longer_than_its_buffer)
{
	struct srv_config c;
	char msg[256];
	char longval[1100];
	memset(longval, 'x', sizeof(longval) - 1);
	longval[sizeof(longval) - 1] = '\0';

	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--data-dir", longval), -1);
	cr_assert_not_null(strstr(msg, "--data-dir"), "%s", msg);
	longval[255] = '\0';
	cr_assert_eq(PARSE(&c, msg, "--listen", longval), 0, "255 bytes fit: %s", msg);
	cr_assert_eq(strlen(c.listen), 255);
	longval[255] = 'x';
	longval[256] = '\0';
	cr_assert_eq(PARSE(&c, msg, "--listen", longval), -1);
	cr_assert_not_null(strstr(msg, "--listen"), "%s", msg);
}

Test(config, a_short_message_buffer_is_not_overrun)
{
	struct srv_config c;
	char msg[16];
	memset(msg, 'Z', sizeof(msg));
	config_defaults(&c);
	char *argv[] = {"whizbangd", "--a-very-long-unknown-option-name", NULL};
	cr_assert_eq(config_parse_args(&c, 2, argv, msg, 8), -1);
	cr_assert_eq(strlen(msg), 7);
	cr_assert_eq(msg[8], 'Z');
}

Test(config, help_and_version_ask_to_exit)
{
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--help"), 1);
	cr_assert_eq(PARSE(&c, msg, "-h"), 1);
	cr_assert_eq(PARSE(&c, msg, "--version"), 1);
	/* --help wins over what follows it, even a bad option. */
	cr_assert_eq(PARSE(&c, msg, "--help", "--bogus"), 1);
}

Test(config, usage_lists_every_option_with_its_default)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	config_usage(f);
	fclose(f);
	static const char *const names[] = {
	        "--listen",
	        "--data-dir",
	        "--port-file",
	        "--map-size",
	        "--max-frame",
	        "--max-connections",
	        "--max-read-count",
	        "--max-append-events",
	        "--max-output-per-connection",
	        "--max-inflight",
	        "--frame-timeout-ms",
	        "--shutdown-timeout-ms",
	        "--log-level",
	        "--help",
	        "--version",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_assert_not_null(strstr(text, names[i]), "usage lacks %s", names[i]);
	for (size_t i = 0; i < config_option_count(); i++) {
		char flag[80];
		snprintf(flag, sizeof(flag), "--%s ", config_option_name(i));
		cr_assert_not_null(strstr(text, flag), "usage lacks %s", flag);
	}
	cr_assert_not_null(strstr(text, "--config FILE"));
	cr_assert_not_null(strstr(text, "--check-config"));
	cr_assert_not_null(strstr(text, "127.0.0.1:7411"));
	cr_assert_not_null(strstr(text, "4M"));
	free(text);
}

/* ------------------------------------------------------------ the file */

/* Writes text to a new temporary file and returns its path (static). */
static const char *write_conf(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/wb-test-config-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	FILE *f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Loads text as a config file over the defaults; returns config_load_file's
 * answer, with the messages in msg. */
static int load_text(struct srv_config *c, const char *text, char *msg, size_t msglen,
                     char *path_out)
{
	const char *path = write_conf(text);
	if (path_out != NULL)
		strcpy(path_out, path);
	config_defaults(c);
	int rc = config_load_file(c, path, msg, msglen);
	unlink(path);
	return rc;
}

Test(config, file_with_comments_sections_and_spacing)
{
	struct srv_config c;
	char msg[1024];
	int rc = load_text(&c,
	                   "# a comment\n"
	                   "; another comment\n"
	                   "\n"
	                   "max-frame = 8K\n"
	                   "  map-size=1G\n"
	                   "[whizbangd]\n"
	                   "listen   =   127.0.0.1:9000   \n"
	                   "log-level = debug ; an inline comment\n"
	                   "lease-max = 5m\n"
	                   "data-dir = /var/lib/whizbang\n"
	                   "insecure = yes\n"
	                   "port-file =\n",
	                   msg, sizeof(msg), NULL);
	cr_assert_eq(rc, 0, "%s", msg);
	cr_assert_eq(c.max_frame, 8 * KIB);
	cr_assert_eq(c.map_size, 1 * GIB);
	cr_assert_str_eq(c.listen, "127.0.0.1:9000");
	cr_assert_eq(c.log_level, WB_LOG_DEBUG);
	cr_assert_eq(c.lease_max_ms, 5 * 60000);
	cr_assert_str_eq(c.data_dir, "/var/lib/whizbang");
	cr_assert(c.insecure);
	cr_assert_str_eq(c.port_file, "");
	/* Keys the file does not name keep their defaults. */
	cr_assert_eq(c.max_connections, 1024);
}

Test(config, an_empty_file_keeps_the_defaults)
{
	struct srv_config c, d;
	char msg[256];
	cr_assert_eq(load_text(&c, "", msg, sizeof(msg), NULL), 0, "%s", msg);
	config_defaults(&d);
	cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0);
}

/* Each case: a file, and what the one error message must hold (the file's
 * path is checked separately, with the line number and the key). */
struct file_case {
	const char *text;
	const char *where; /* ":LINE: KEY" */
	const char *also;  /* a further part of the message, or NULL */
};

static void check_file_refused(const struct file_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct srv_config c;
		char msg[1024], path[64], want[256];
		int rc = load_text(&c, cases[i].text, msg, sizeof(msg), path);
		cr_assert_eq(rc, -1, "case %zu was accepted", i);
		snprintf(want, sizeof(want), "%s%s", path, cases[i].where);
		cr_assert_not_null(strstr(msg, want), "case %zu: '%s' lacks '%s'", i, msg, want);
		if (cases[i].also != NULL)
			cr_assert_not_null(strstr(msg, cases[i].also), "case %zu: '%s' lacks '%s'",
			                   i, msg, cases[i].also);
	}
}

Test(config, file_unknown_key_names_file_line_and_key)
{
	static const struct file_case cases[] = {
	        {"max-frame = 8K\n\n# comment\nbogus = 1\n", ":4: bogus", "unknown key"},
	        {"--max-frame = 8K\n", ":1: --max-frame", "unknown key"},
	        {"MAX-FRAME = 8K\n", ":1: MAX-FRAME", "unknown key"},
	        /* The command-line-only options are not keys. */
	        {"config = /etc/other.conf\n", ":1: config", "unknown key"},
	        {"check-config = true\n", ":1: check-config", "unknown key"},
	};
	check_file_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(config, file_bad_and_out_of_bounds_values)
{
	static const struct file_case cases[] = {
	        {"[whizbangd]\nmax-frame = lots\n", ":2: max-frame", "'lots' is not a size"},
	        {"max-frame = 1K\n", ":1: max-frame", "outside 4096..67108864"},
	        {"max-connections = 0\n", ":1: max-connections", "outside"},
	        {"map-size = 17T\n", ":1: map-size", "outside"},
	        {"lease-max = 5 minutes\n", ":1: lease-max", "duration"},
	        {"log-level = loud\n", ":1: log-level", "debug, info"},
	        {"insecure = maybe\n", ":1: insecure", "boolean"},
	        {"max-frame =\n", ":1: max-frame", "not a size"},
	        /* A '#' after a value is not a comment (only ';' is, after a space). */
	        {"max-frame = 8K # eight\n", ":1: max-frame", "not a size"},
	};
	check_file_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(config, file_keys_in_another_section_are_refused)
{
	static const struct file_case cases[] = {
	        {"max-frame = 8K\n[server]\nmax-frame = 16K\n", ":3: max-frame", "[server]"},
	        {"[whizbangd]\nmax-frame = 8K\n[Whizbangd]\nmap-size = 1G\n", ":4: map-size",
	         "[Whizbangd]"},
	};
	check_file_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(config, file_line_that_is_not_a_setting)
{
	static const struct file_case cases[] = {
	        {"max-frame = 8K\njust some words\n", ":2:", "not a 'key = value' line"},
	        {"[whizbangd\nmax-frame = 8K\n", ":1:", "not a 'key = value' line"},
	};
	check_file_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(config, file_line_too_long_is_an_error_not_a_cut_value)
{
	struct srv_config c;
	char text[600], msg[1024], path[64], want[128];
	int n = snprintf(text, sizeof(text), "data-dir = /");
	memset(text + n, 'a', 300);
	snprintf(text + n + 300, sizeof(text) - (size_t)n - 300, "\nbogus = 1\n");
	cr_assert_eq(load_text(&c, text, msg, sizeof(msg), path), -1);
	snprintf(want, sizeof(want), "%s:1: the line is longer than", path);
	cr_assert_not_null(strstr(msg, want), "%s", msg);
	/* The next line keeps its own number. */
	snprintf(want, sizeof(want), "%s:2: bogus", path);
	cr_assert_not_null(strstr(msg, want), "%s", msg);
	cr_assert_str_eq(c.data_dir, "whizbang-data");
}

Test(config, file_reports_every_error_on_its_own_line)
{
	struct srv_config c;
	char msg[2048], path[64], want[128];
	int rc = load_text(&c, "bogus = 1\nmax-frame = 8K\nmax-frame = 1\nlog-level = x\n", msg,
	                   sizeof(msg), path);
	cr_assert_eq(rc, -1);
	static const char *const wants[] = {":1: bogus", ":3: max-frame", ":4: log-level"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(want, sizeof(want), "%s%s", path, wants[i]);
		cr_assert_not_null(strstr(msg, want), "'%s' lacks '%s'", msg, want);
	}
	size_t lines = 1;
	for (const char *p = msg; *p != '\0'; p++)
		lines += *p == '\n';
	cr_assert_eq(lines, 3, "%s", msg);
	/* The good key between them is still applied. */
	cr_assert_eq(c.max_frame, 8 * KIB);
}

Test(config, file_a_later_key_wins)
{
	struct srv_config c;
	char msg[256];
	cr_assert_eq(load_text(&c, "max-frame = 8K\n[whizbangd]\nmax-frame = 16K\n", msg,
	                       sizeof(msg), NULL),
	             0, "%s", msg);
	cr_assert_eq(c.max_frame, 16 * KIB);
}

Test(config, file_that_cannot_be_read)
{
	struct srv_config c;
	char msg[512];
	config_defaults(&c);
	cr_assert_eq(config_load_file(&c, "/nonexistent/whizbangd.conf", msg, sizeof(msg)), -1);
	cr_assert_not_null(strstr(msg, "/nonexistent/whizbangd.conf"), "%s", msg);
	cr_assert_not_null(strstr(msg, "No such file"), "%s", msg);
	/* Through the command line, too. */
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--config", "/nonexistent/whizbangd.conf"), -1);
	cr_assert_not_null(strstr(msg, "/nonexistent/whizbangd.conf"), "%s", msg);
}

/* ------------------------------------------------------------ precedence */

Test(config, flags_win_over_the_file_wherever_config_stands)
{
	const char *path = write_conf("max-frame = 8K\nmap-size = 1G\nlog-level = warn\n");
	char p[64];
	strcpy(p, path);
	for (int order = 0; order < 2; order++) {
		struct srv_config c;
		char msg[512];
		config_defaults(&c);
		int rc = order == 0 ? PARSE(&c, msg, "--config", p, "--max-frame", "16K")
		                    : PARSE(&c, msg, "--max-frame=16K", "--config=", p);
		if (order == 1) {
			/* "--config=" with an empty path is its own mistake. */
			cr_assert_eq(rc, -1);
			config_defaults(&c);
			rc = PARSE(&c, msg, "--max-frame=16K", "--config", p);
		}
		cr_assert_eq(rc, 0, "order %d: %s", order, msg);
		cr_assert_eq(c.max_frame, 16 * KIB, "order %d", order); /* the flag */
		cr_assert_eq(c.map_size, 1 * GIB, "order %d", order);   /* the file */
		cr_assert_eq(c.log_level, WB_LOG_WARN, "order %d", order);
		cr_assert_eq(c.max_connections, 1024, "order %d", order); /* the default */
		cr_assert_str_eq(c.config_file, p);
		cr_assert(!c.check_config);
	}
	unlink(p);
}

Test(config, no_file_is_read_without_config)
{
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--max-frame", "8K"), 0, "%s", msg);
	cr_assert_str_eq(c.config_file, "");
}

Test(config, a_bad_file_stops_before_the_flags)
{
	const char *path = write_conf("max-frame = huge\n");
	char p[64];
	strcpy(p, path);
	struct srv_config c;
	char msg[512];
	config_defaults(&c);
	/* The flag would set a good value; the file's error still stops. */
	cr_assert_eq(PARSE(&c, msg, "--config", p, "--max-frame", "8K"), -1);
	cr_assert_not_null(strstr(msg, ":1: max-frame"), "%s", msg);
	unlink(p);
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--config"), -1);
	cr_assert_not_null(strstr(msg, "--config"), "%s", msg);
}

/* ------------------------------------------------------------ --check-config */

Test(config, check_config_is_recorded_and_takes_no_value)
{
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--check-config", "--max-frame", "8K"), 0, "%s", msg);
	cr_assert(c.check_config);
	cr_assert_eq(c.max_frame, 8 * KIB);
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--check-config=yes"), -1);
	cr_assert_not_null(strstr(msg, "--check-config"), "%s", msg);
}

static char *print_to_string(const struct srv_config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	config_print(c, f);
	fclose(f);
	return text;
}

Test(config, check_config_prints_every_key_once_and_reads_back)
{
	struct srv_config c, back;
	char msg[512];
	config_defaults(&c);
	int rc = PARSE(&c, msg, "--max-frame", "12K", "--map-size", "3G", "--lease-max", "90s",
	               "--lease-grace", "1500", "--max-scan", "0", "--log-level", "error",
	               "--listen", "0.0.0.0:7411", "--insecure", "--port-file", "/run/wb.port");
	cr_assert_eq(rc, 0, "%s", msg);
	char *text = print_to_string(&c);
	cr_assert_not_null(strstr(text, "max-frame = 12K\n"), "%s", text);
	cr_assert_not_null(strstr(text, "map-size = 3G\n"), "%s", text);
	cr_assert_not_null(strstr(text, "lease-max = 90s\n"), "%s", text);
	cr_assert_not_null(strstr(text, "lease-grace = 1500ms\n"), "%s", text);
	cr_assert_not_null(strstr(text, "log-level = error\n"), "%s", text);
	cr_assert_not_null(strstr(text, "insecure = true\n"), "%s", text);
	/* One line per setting of the table, each key once. */
	size_t lines = 0;
	for (const char *p = text; *p != '\0'; p++)
		lines += *p == '\n';
	cr_assert_eq(lines, config_option_count(), "%s", text);
	for (size_t i = 0; i < config_option_count(); i++) {
		char key[80];
		snprintf(key, sizeof(key), "\n%s =", config_option_name(i));
		const char *at = i == 0 ? text : strstr(text, key);
		cr_assert_not_null(at, "no %s", key);
	}
	/* The printed configuration is a config file that gives the same
	 * settings back. */
	cr_assert_eq(load_text(&back, text, msg, sizeof(msg), NULL), 0, "%s", msg);
	back.check_config = c.check_config;
	memcpy(back.config_file, c.config_file, sizeof(c.config_file));
	cr_assert_eq(memcmp(&back, &c, sizeof(c)), 0, "%s", text);
	free(text);
}

/* ------------------------------------------------------------ remote rule */

Test(config, loopback_listen_addresses_need_no_flag)
{
	static const char *const ok[] = {
	        "127.0.0.1:7411", "127.0.0.1:0",    "127.8.9.10:7411",
	        "[::1]:7411",     "localhost:7411", "[::ffff:127.0.0.1]:1",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct srv_config c;
		char msg[512];
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, "--listen", ok[i]), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s: %s", ok[i], msg);
	}
	struct srv_config d;
	char msg[512];
	config_defaults(&d);
	cr_assert_eq(config_validate(&d, msg, sizeof(msg)), 0, "the defaults: %s", msg);
}

Test(config, remote_listen_is_refused_without_the_flag)
{
	static const char *const remote[] = {
	        "0.0.0.0:7411",       "[::]:7411",      "10.0.0.5:7411",    "192.168.1.1:0",
	        "[2001:db8::1]:7411", "128.0.0.1:7411", "example.com:7411",
	};
	for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
		struct srv_config c;
		char msg[512];
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, "--listen", remote[i]), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1, "%s was allowed",
		             remote[i]);
		cr_assert_not_null(strstr(msg, remote[i]), "%s", msg);
		cr_assert_not_null(strstr(msg, "--insecure"), "%s", msg);
		cr_assert_not_null(strstr(msg, "in the clear"), "%s", msg);

		/* TLS with no anonymous role is safe without the flag... */
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, "--listen", remote[i], "--tls-cert-file", "/c.crt",
		                   "--tls-key-file", "/c.key"),
		             0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s: %s", remote[i], msg);
		/* ...but not with TLS off, or with an anonymous role. */
		cr_assert_eq(PARSE(&c, msg, "--tls", "off"), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1, "%s with tls off",
		             remote[i]);
		cr_assert_eq(PARSE(&c, msg, "--tls", "auto", "--anonymous-role", "reader"), 0, "%s",
		             msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1, "%s with a role for anyone",
		             remote[i]);

		/* The flag makes it an explicit choice... */
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, "--listen", remote[i], "--insecure"), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s: %s", remote[i], msg);
		/* ...and =false takes it back. */
		config_defaults(&c);
		cr_assert_eq(
		        PARSE(&c, msg, "--listen", remote[i], "--insecure", "--insecure=false"), 0,
		        "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1);
	}
}

Test(config, metrics_beyond_loopback_need_tls_or_insecure)
{
	static const char *const remote[] = {"0.0.0.0:7412", "[::]:7412", "10.0.0.5:7412"};
	for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
		struct srv_config c;
		char msg[1024];
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, "--metrics-listen", remote[i]), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1, "%s was allowed",
		             remote[i]);
		cr_assert_not_null(strstr(msg, remote[i]), "%s", msg);
		cr_assert_not_null(strstr(msg, "--insecure"), "%s", msg);
		/* With a certificate it is HTTPS (and a bearer token), whatever the
		 * anonymous role of the API... */
		cr_assert_eq(PARSE(&c, msg, "--tls-cert-file", "/c.crt", "--tls-key-file", "/c.key",
		                   "--anonymous-role", "reader"),
		             0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s: %s", remote[i], msg);
		/* ...but not with TLS off. */
		cr_assert_eq(PARSE(&c, msg, "--tls", "off"), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1, "%s with tls off",
		             remote[i]);
		cr_assert_eq(PARSE(&c, msg, "--insecure"), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s: %s", remote[i], msg);
	}
	/* Loopback and off need nothing (the control). */
	static const char *const fine[] = {"127.0.0.1:7412", "[::1]:0", "localhost:7412", "off"};
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		struct srv_config c;
		char msg[1024];
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, "--metrics-listen", fine[i]), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s: %s", fine[i], msg);
	}
}

Test(config, the_old_name_of_insecure_is_refused_with_the_new_one)
{
	struct srv_config c;
	char msg[512];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--allow-unauthenticated-remote"), -1);
	cr_assert_not_null(strstr(msg, "renamed --insecure"), "%s", msg);
	cr_assert_eq(load_text(&c, "allow-unauthenticated-remote = true\n", msg, sizeof(msg), NULL),
	             -1);
	cr_assert_not_null(strstr(msg, ":1: allow-unauthenticated-remote: the key was renamed "
	                               "insecure"),
	                   "%s", msg);
	cr_assert(!c.insecure);
}

/* --max-output-total counted output only; --memory-budget counts every kind
 * of memory held for clients, so the old name is refused, not taken as the
 * new one. */
Test(config, the_old_name_of_memory_budget_is_refused_with_the_new_one)
{
	struct srv_config c;
	char msg[512];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--max-output-total", "1G"), -1);
	cr_assert_not_null(strstr(msg, "--max-output-total was renamed --memory-budget"), "%s",
	                   msg);
	cr_assert_eq(load_text(&c, "max-output-total = 1G\n", msg, sizeof(msg), NULL), -1);
	cr_assert_not_null(strstr(msg, ":1: max-output-total: the key was renamed memory-budget"),
	                   "%s", msg);
	cr_assert_eq(c.memory_budget, 0u);
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--memory-budget", "1G"), 0, "%s", msg);
	cr_assert_eq(c.memory_budget, 1ull << 30);
}

/* A budget is 0 (from the machine's memory) or at least twice max-frame. */
Test(config, memory_budget_holds_two_largest_frames)
{
	struct srv_config c;
	char msg[512];
	config_defaults(&c);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(PARSE(&c, msg, "--memory-budget", "7M"), 0, "%s", msg);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1);
	cr_assert_not_null(strstr(msg, "less than twice max-frame"), "%s", msg);
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--memory-budget", "8M"), 0, "%s", msg);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(PARSE(&c, msg, "--max-frame", "64M"), 0, "%s", msg);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1);
}

Test(config, remote_rule_through_the_file)
{
	struct srv_config c;
	char msg[512];
	cr_assert_eq(load_text(&c, "listen = 0.0.0.0:7411\n", msg, sizeof(msg), NULL), 0, "%s",
	             msg);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1);
	cr_assert_eq(
	        load_text(&c, "listen = 0.0.0.0:7411\ninsecure = true\n", msg, sizeof(msg), NULL),
	        0, "%s", msg);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s", msg);
	/* The flag allows what the file listens on. */
	const char *path = write_conf("listen = [::]:7411\n");
	char p[64];
	strcpy(p, path);
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--config", p, "--insecure"), 0, "%s", msg);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s", msg);
	unlink(p);
}

Test(config, backup_dir_is_off_by_default_or_an_absolute_path)
{
	struct srv_config c;
	char msg[2048];
	config_defaults(&c);
	cr_assert_str_eq(c.backup_dir, "", "Backup is off unless the operator says where");
	static const char *const bad[] = {"backups", "./backups", "~/backups", " /srv/b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		config_defaults(&c);
		cr_assert_eq(PARSE(&c, msg, "--backup-dir", bad[i]), 0, "%s", msg);
		cr_assert_eq(config_validate(&c, msg, sizeof(msg)), -1, "%s was allowed", bad[i]);
		cr_assert_not_null(strstr(msg, "backup-dir"), "%s", msg);
		cr_assert_not_null(strstr(msg, "absolute"), "%s", msg);
	}
	/* The control: an absolute path passes, from a flag or the file. */
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--backup-dir", "/srv/whizbang-backups"), 0, "%s", msg);
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(load_text(&c, "backup-dir = /srv/whizbang-backups/\n", msg, sizeof(msg), NULL),
	             0, "%s", msg);
	cr_assert_str_eq(c.backup_dir, "/srv/whizbang-backups/");
	cr_assert_eq(config_validate(&c, msg, sizeof(msg)), 0, "%s", msg);
	/* Its length is bounded by the table. */
	char longer[1100];
	longer[0] = '/';
	memset(longer + 1, 'b', sizeof(longer) - 2);
	longer[sizeof(longer) - 1] = '\0';
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--backup-dir", longer), -1);
	cr_assert_not_null(strstr(msg, "--backup-dir: the value is longer than 1023 bytes"), "%s",
	                   msg);
}

Test(config, a_boolean_flag_does_not_take_the_next_argument)
{
	struct srv_config c;
	char msg[256];
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--insecure", "true"), -1);
	cr_assert_not_null(strstr(msg, "'true'"), "%s", msg);
	config_defaults(&c);
	cr_assert_eq(PARSE(&c, msg, "--insecure=on"), 0, "%s", msg);
	cr_assert(c.insecure);
	cr_assert_eq(PARSE(&c, msg, "--insecure=sure"), -1);
	cr_assert_not_null(strstr(msg, "--insecure"), "%s", msg);
}

/* ------------------------------------------------------------ example, docs */

/* The repository's root, from this file's path as the compiler saw it
 * (meson gives it relative to the build directory, where tests run). */
Test(config, example_file_is_the_generated_one)
{
	char *file = fixture_repo_text("deploy/whizbangd.conf");
	char *gen = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&gen, &len);
	config_example(f);
	fclose(f);
	/* WB_REGENERATE_EXAMPLE=1 ./tests/test_config --filter '*generated*'
	 * writes the file (then this test passes on the next run). */
	if (getenv("WB_REGENERATE_EXAMPLE") != NULL) {
		char path[1024];
		FILE *out =
		        fopen(fixture_repo_path("deploy/whizbangd.conf", path, sizeof(path)), "w");
		cr_assert_not_null(out);
		fputs(gen, out);
		cr_assert_eq(fclose(out), 0);
	}
	cr_assert_str_eq(file, gen,
	                 "deploy/whizbangd.conf differs from config_example(): regenerate it "
	                 "(WB_REGENERATE_EXAMPLE=1 tests/test_config --filter '*generated*')");
	free(file);
	free(gen);
}

Test(config, example_file_parses_and_uncommented_gives_every_default)
{
	char path[1024];
	fixture_repo_path("deploy/whizbangd.conf", path, sizeof(path));
	struct srv_config c, d;
	char msg[2048];
	config_defaults(&c);
	cr_assert_eq(config_load_file(&c, path, msg, sizeof(msg)), 0, "%s", msg);
	config_defaults(&d);
	cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0, "the example, as shipped, changes nothing");

	/* Uncomment every "#key =" line: each key of the table is there once,
	 * and with its default. */
	char *text = fixture_repo_text("deploy/whizbangd.conf");
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	size_t found = 0;
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (line[0] == '#' && line[1] != ' ' && line[1] != '\0' && strchr(line, '=')) {
			fprintf(f, "%s\n", line + 1);
			found++;
		}
	}
	fclose(f);
	cr_assert_eq(found, config_option_count(), "%s", out);
	for (size_t i = 0; i < config_option_count(); i++) {
		char key[80];
		snprintf(key, sizeof(key), "%s =", config_option_name(i));
		cr_assert_not_null(strstr(out, key), "the example lacks %s", key);
	}
	memset(&c, 0x5A, sizeof(c));
	cr_assert_eq(load_text(&c, out, msg, sizeof(msg), NULL), 0, "%s", msg);
	cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0);
	free(text);
	free(out);
}

/* Strips backticks and spaces around a table cell. */
static void cell(const char *from, const char *to, char *out, size_t len)
{
	size_t n = 0;
	for (const char *p = from; p < to && n + 1 < len; p++)
		if (*p != '`' && *p != ' ')
			out[n++] = *p;
	out[n] = '\0';
}

Test(config, operations_md_lists_exactly_the_table)
{
	char *text = fixture_repo_text("docs/OPERATIONS.md");
	char *start = strstr(text, "## Options\n");
	cr_assert_not_null(start);
	char *end = strstr(start + 1, "\n## ");
	if (end != NULL)
		*end = '\0';
	size_t rows = 0;
	for (char *line = strtok(start, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (strncmp(line, "| `--", 5) != 0)
			continue;
		char *c1 = strchr(line + 1, '|');
		cr_assert_not_null(c1);
		char *c2 = strchr(c1 + 1, '|');
		cr_assert_not_null(c2);
		char name[80], dflt[80];
		cell(line + 1, c1, name, sizeof(name));
		cell(c1 + 1, c2, dflt, sizeof(dflt));
		cr_assert_lt(rows, config_option_count(), "extra row %s", name);
		cr_assert_str_eq(name + 2, config_option_name(rows), "row %zu", rows);
		const char *want = config_option_default(rows);
		cr_assert_str_eq(dflt, want[0] != '\0' ? want : "none", "default of %s", name);
		rows++;
	}
	cr_assert_eq(rows, config_option_count(), "OPERATIONS.md has %zu of %zu options", rows,
	             config_option_count());
	free(text);
}
