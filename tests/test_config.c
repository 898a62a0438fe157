/* Tests of whizbangd's configuration (server/config.h): defaults, option
 * forms, bounds and the messages of refused options. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
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
	cr_assert_eq(c.log_level, LOG_INFO);
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
	cr_assert_eq(c.log_level, LOG_DEBUG);
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
	cr_assert_not_null(strstr(text, "127.0.0.1:7411"));
	cr_assert_not_null(strstr(text, "4M"));
	free(text);
}
