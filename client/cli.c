/* whizbang: the command-line client of whizbangd, built on libwhizbang.
 *
 * One invocation is one connection and one command. Output is one line per
 * item, as text for people or, with --json, one JSON object per line for
 * programs. Exit status: 0 on success, 1 when the command failed (the reason
 * goes to stderr as "error: CODE: message"), 2 for a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "optext.h"
#include "parse.h"
#include "utf8.h"
#include "wb.h"
#include "wb_version.h"

#define CLI_DEFAULT_TIMEOUT_MS 30000
/* watermark --wait without a timeout, when the per-call timeout is 0
 * (forever): the server's own cap on a wait. */
#define CLI_WAIT_FOREVER_MS 3600000u
/* A sanity bound on lease --count; the server's --max-lease-count (at most
 * 1024) is the real limit and answers BAD_REQUEST above it. */
#define CLI_MAX_LEASE_COUNT 65536u
/* Human output shortens data to this many characters, or bytes as hex. */
#define CLI_TEXT_MAX 80u
#define CLI_HEX_MAX 32u
#define CLI_FALLBACK_EVENT_MAX (64u << 20)
/* verify replays the whole ledger: without --timeout-ms it may take this
 * long. */
#define CLI_VERIFY_TIMEOUT_MS 600000
/* ledger lists this many ids of an explosion, all of them with --ids. */
#define CLI_LEDGER_IDS 8u

enum { EXIT_USAGE = 2 };

/* Results of matching one argument against an option. */
enum { OPT_NO = 0, OPT_YES = 1, OPT_BAD = -1 };

struct cli {
	const char *server;
	bool json;
	int timeout_ms;
	/* --timeout-ms was given (verify has a longer default otherwise). */
	bool timeout_set;
	struct wb_client *client;
};

/* In parts: C11 compilers need only take string literals of 4095 bytes. */
static const char usage_commands[] =
        "usage: whizbang [--server HOST:PORT] [--json] [--timeout-ms N] COMMAND [ARGS...]\n"
        "\n"
        "Commands:\n"
        "  ping                    measure a round trip to the server\n"
        "  append STREAM --type T --data STRING|@FILE [--metadata STRING|@FILE]\n"
        "         [--expected-version any|no-stream|exists|N] [--id UUID]\n"
        "                          append an event; repeat --data to append several\n"
        "                          atomically (--type, --metadata and --id then once\n"
        "                          for all or once per event)\n"
        "  read STREAM [--from VERSION] [--backwards] [--limit N]\n"
        "                          print a stream's events (all of them without --limit)\n"
        "  read-all [--from POSITION] [--backwards] [--limit N] [--stream-prefix S]\n"
        "           [--type T]...  print the global log, optionally filtered\n"
        "  stream-info STREAM      print a stream's versions, positions, times, whether\n"
        "                          it is deleted, and its metadata\n"
        "  stats                   print the server's figures, leases and the ledger's too\n"
        "  backup PATH             copy the whole store, consistent and compacted, into\n"
        "                          PATH (absolute, on the server's machine, absent or an\n"
        "                          empty directory) while the server keeps serving;\n"
        "                          progress on a terminal, then the figures\n"
        "\n"
        "Leases and the ledger:\n"
        "  lease --projection P [--duration-ms N] [--count N] [--operation-id S]\n"
        "        [--source-position N] [--release-on-disconnect]\n"
        "                          lease sequences; prints SEQUENCE TOKEN EXPIRES_AT each\n"
        "  extend SEQ --token T [--duration-ms N]\n"
        "                          renew a lease (duration 0 or none: adaptive)\n"
        "  release SEQ --token T [--reason TEXT]\n"
        "                          give a lease up: the sequence becomes a gap\n"
        "  stage SEQ --token T --op TEXT...\n"
        "                          store finished work, committed if the lease expires\n"
        "  commit SEQ --token T [--op TEXT]... [--ack durable|applied] [--reseq]\n"
        "                          commit ops (none is valid); --reseq commits at a new\n"
        "                          sequence when the lease has expired\n"
        "  ledger [--from SEQ] [--limit N] [--ids]\n"
        "                          print ledger entries up to the watermark, with how\n"
        "                          each was applied and the ids each where clause\n"
        "                          matched (the first few; --ids: all of them)\n"
        "  watermark [--wait SEQ [--timeout-ms MS]]\n"
        "                          print the watermark, or wait until it reaches SEQ\n"
        "                          (exit status 1 when the wait timed out)\n"
        "\n";

static const char usage_projections[] =
        "Projections (entities built from the ledger):\n"
        "  apply --projection P [--operation-id S] 'OP[; OP...]'\n"
        "                          lease one sequence, commit the ops and wait until they\n"
        "                          are applied; prints what each op did (exit status 1\n"
        "                          when applying failed: then no op took effect)\n"
        "  get TYPE ID             print an entity: version, sequences, typed fields\n"
        "  query TYPE ['WHERE'] [--limit N] [--after ID] [--all]\n"
        "                          print the entities WHERE matches (all without it), by\n"
        "                          id, N a page, after the cursor ID; --all follows the\n"
        "                          cursor to the end; then the cursor and the plan used\n"
        "  explain TYPE 'WHERE'    print how the server would evaluate WHERE: strategy,\n"
        "                          plan, estimates, and whether it would be refused\n"
        "  index create TYPE FIELD | index drop TYPE FIELD | index list [TYPE]\n"
        "                          manage secondary indexes (changes go through the ledger)\n"
        "  verify                  rebuild the entities from the ledger and compare with\n"
        "                          the live state (exit status 1 on a mismatch; waits up\n"
        "                          to 10 minutes unless --timeout-ms says otherwise)\n"
        "\n";

static const char usage_subscriptions[] =
        "Subscriptions, consumer groups and the stream life cycle:\n"
        "  subscribe (--all | --stream S | --ledger) [--from start|end|P]\n"
        "            [--stream-prefix P] [--type T]... [--credits N] [--count N]\n"
        "                          print stored items from P (default: start), a line when\n"
        "                          caught up, then live items until interrupted (Ctrl-C\n"
        "                          unsubscribes; exit status 0) or --count events; keeps\n"
        "                          N items granted ahead (default 256)\n"
        "  consumer create NAME (--all | --stream S) [--stream-prefix P] [--type T]...\n"
        "           [--from start|end|P] [--ack-timeout DUR] [--max-deliveries N]\n"
        "  consumer delete NAME | consumer list\n"
        "  consumer read NAME [--count N] [--ack] [--wait-ms MS]\n"
        "                          join the group, print up to N events (default 10) with\n"
        "                          their delivery count, waiting MS (default 1000) for\n"
        "                          each; --ack acknowledges them, else they return to the\n"
        "                          group\n"
        "  consumer ack NAME ID... | consumer nack NAME ID... --action retry|park|skip\n"
        "           [--reason R]   settle events by id; prints the group's checkpoint\n"
        "  consumer parked NAME | consumer replay-parked NAME\n"
        "                          list the parked events, or hand them all back\n"
        "  stream-meta STREAM [--max-count N] [--max-age DUR] [--truncate-before V]\n"
        "                          print a stream's metadata, or change the fields given\n"
        "                          (0 unsets one)\n"
        "  delete STREAM [--hard]  soft-delete a stream (it may be written again) or,\n"
        "                          with --hard, delete it for good\n"
        "  scavenge                remove what metadata and deletes made unreadable;\n"
        "                          progress on a terminal, then the figures\n"
        "DUR is a number with ms, s, m, h or d (a bare number is milliseconds).\n"
        "\n"
        "  help                    print this text\n";

static const char usage_options[] =
        "\n"
        "Options (before or after the command):\n"
        "  --server HOST:PORT      the server (default: $WHIZBANG_SERVER, else " WB_DEFAULT_ADDRESS
        ")\n"
        "  --json                  print one JSON object per line\n"
        "  --timeout-ms N          per-call timeout (default 30000; 0 waits forever)\n"
        "  --version               print the version\n"
        "\n"
        "@FILE reads a value from FILE, @- from standard input. A token is the 16 hex\n"
        "digits lease prints. --op takes operations in their text form, several\n"
        "separated by ';', for example:\n"
        "  --op 'upsert Order \"o-1\" {status: \"Paid\", total: 120}'\n"
        "  --op 'update Order where customer_id == \"c-42\" set status = \"Cancelled\"'\n"
        "  --op 'create index Order customer_id'\n"
        "Where clauses: == != < <= > >= in (...) not in (...) exists(f)\n"
        "starts_with(f, \"p\") and or not ( ), for example\n"
        "  'customer_id == \"c-42\" and status in (\"Pending\", \"OnHold\") and total >= 100'\n"
        "A WHERE or OP that does not parse is refused before anything is sent, with the\n"
        "column and what was expected there (exit status 2 for apply, query and explain).\n";

static void put_usage(FILE *f)
{
	fputs(usage_commands, f);
	fputs(usage_projections, f);
	fputs(usage_subscriptions, f);
	fputs(usage_options, f);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("whizbang: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	put_usage(stderr);
	return EXIT_USAGE;
}

/* ---------------------------------------------------------------- text and JSON output */

static bool is_control(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0);
}

/* Valid UTF-8 without control characters other than tab and line breaks. */
static bool printable(const uint8_t *s, size_t n)
{
	uint32_t cp;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_decode(s + i, n - i, &cp);
		if (k == 0 || (is_control(cp) && cp != '\t' && cp != '\n' && cp != '\r'))
			return false;
		i += k;
	}
	return true;
}

/* Prints s as one line of text: control characters and invalid bytes are
 * escaped, and after max characters the rest becomes "…". */
static void put_text(const uint8_t *s, size_t n, size_t max)
{
	size_t chars = 0;
	for (size_t i = 0; i < n; chars++) {
		if (chars == max) {
			fputs("…", stdout);
			return;
		}
		uint32_t cp;
		size_t k = utf8_decode(s + i, n - i, &cp);
		if (k == 0) {
			printf("\\x%02x", s[i]);
			i++;
			continue;
		}
		if (cp == '\n')
			fputs("\\n", stdout);
		else if (cp == '\r')
			fputs("\\r", stdout);
		else if (cp == '\t')
			fputs("\\t", stdout);
		else if (is_control(cp))
			printf("\\u%04" PRIx32, cp);
		else
			fwrite(s + i, 1, k, stdout);
		i += k;
	}
}

static void put_cstr(const char *s)
{
	put_text((const uint8_t *)s, strlen(s), SIZE_MAX);
}

/* Human form of data: text when printable, else hex, shortened either way. */
static void put_data(const uint8_t *s, size_t n)
{
	if (n == 0) {
		fputs("\"\"", stdout);
		return;
	}
	if (printable(s, n)) {
		put_text(s, n, CLI_TEXT_MAX);
		return;
	}
	fputs("0x", stdout);
	for (size_t i = 0; i < n && i < CLI_HEX_MAX; i++)
		printf("%02x", s[i]);
	if (n > CLI_HEX_MAX)
		fputs("…", stdout);
}

/* Prints s as a JSON string. Invalid UTF-8 becomes U+FFFD so that the output
 * is always valid JSON; callers that must not lose bytes check first. */
static void json_str(const uint8_t *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t k = utf8_decode(s + i, n - i, &cp);
		if (k == 0) {
			fputs("\\ufffd", stdout);
			i++;
			continue;
		}
		switch (cp) {
		case '"':
			fputs("\\\"", stdout);
			break;
		case '\\':
			fputs("\\\\", stdout);
			break;
		case '\n':
			fputs("\\n", stdout);
			break;
		case '\r':
			fputs("\\r", stdout);
			break;
		case '\t':
			fputs("\\t", stdout);
			break;
		case '\b':
			fputs("\\b", stdout);
			break;
		case '\f':
			fputs("\\f", stdout);
			break;
		default:
			if (cp < 0x20 || cp == 0x7f)
				printf("\\u%04" PRIx32, cp);
			else
				fwrite(s + i, 1, k, stdout);
		}
		i += k;
	}
	putchar('"');
}

static void json_cstr(const char *s)
{
	json_str((const uint8_t *)s, strlen(s));
}

static void base64(const uint8_t *s, size_t n)
{
	static const char tab[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		putchar(tab[v >> 18]);
		putchar(tab[v >> 12 & 63]);
		putchar(tab[v >> 6 & 63]);
		putchar(tab[v & 63]);
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		putchar(tab[v >> 18]);
		putchar(tab[v >> 12 & 63]);
		fputs("==", stdout);
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		putchar(tab[v >> 18]);
		putchar(tab[v >> 12 & 63]);
		putchar(tab[v >> 6 & 63]);
		putchar('=');
	}
}

/* ,"key":"text" when the bytes are UTF-8, else ,"key_base64":"..." */
static void json_bytes(const char *key, const uint8_t *s, size_t n)
{
	if (utf8_valid((const char *)s, n, NULL)) {
		printf(",\"%s\":", key);
		json_str(s, n);
	} else {
		printf(",\"%s_base64\":\"", key);
		base64(s, n);
		putchar('"');
	}
}

/* ISO-8601 UTC with microseconds: 2024-05-01T12:00:00.123456Z. */
static void format_time(uint64_t us, char out[40])
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	if (gmtime_r(&secs, &tm) == NULL || strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, 40, "%" PRIu64 "us", us);
		return;
	}
	size_t n = strlen(out);
	snprintf(out + n, 40 - n, ".%06uZ", (unsigned)(us % 1000000));
}

/* ---------------------------------------------------------------- errors and connection */

/* Reports a failed command and returns the exit status for it. */
static int report(const struct cli *cli, int code, const char *msg)
{
	if (msg == NULL || msg[0] == '\0')
		msg = wb_strerror(code);
	fflush(stdout);
	fprintf(stderr, "error: %s: %s\n", wb_error_name(code), msg);
	if (cli->json) {
		printf("{\"error\":\"%s\",\"message\":", wb_error_name(code));
		json_cstr(msg);
		if (code == WB_WRONG_EXPECTED_VERSION && cli->client != NULL)
			printf(",\"actual_version\":%" PRId64, wb_actual_version(cli->client));
		fputs("}\n", stdout);
	}
	return EXIT_FAILURE;
}

__attribute__((format(printf, 3, 4))) static int reportf(const struct cli *cli, int code,
                                                         const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return report(cli, code, msg);
}

static int report_client(const struct cli *cli, int code)
{
	return report(cli, code, wb_errmsg(cli->client));
}

/* Reports text that does not parse as INVALID_EXPRESSION with the column and
 * what was expected there (suffix, e.g. "(in --op number 2)", follows), then,
 * for people, the text with a caret under the column. Answers status. */
static int report_parse(const struct cli *cli, const char *text, const struct optext_error *err,
                        const char *suffix, int status)
{
	char msg[512];
	/* The message names its column already. */
	if (strncmp(err->message, "column ", 7) == 0)
		snprintf(msg, sizeof(msg), "%s%s", err->message, suffix);
	else
		snprintf(msg, sizeof(msg), "column %zu: %s%s", err->column, err->message, suffix);
	fflush(stdout);
	fprintf(stderr, "error: %s: %s\n", wb_error_name(WB_INVALID_EXPRESSION), msg);
	if (cli->json) {
		printf("{\"error\":\"%s\",\"message\":", wb_error_name(WB_INVALID_EXPRESSION));
		json_cstr(msg);
		printf(",\"column\":%zu}\n", err->column);
	}
	/* The caret only lines up under one line of printable text. */
	size_t n = strlen(text);
	uint32_t cp;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_decode((const uint8_t *)text + i, n - i, &cp);
		if (k == 0 || (is_control(cp) && cp != '\t'))
			return status;
		i += k;
	}
	fprintf(stderr, "  %s\n  ", text);
	size_t col = 1;
	for (size_t i = 0; i < n && col < err->column; col++) {
		size_t k = utf8_decode((const uint8_t *)text + i, n - i, &cp);
		fputc(cp == '\t' ? '\t' : ' ', stderr);
		i += k;
	}
	fputs("^\n", stderr);
	return status;
}

static int connect_server(struct cli *cli)
{
	struct wb_options opts = {
	        .client_name = "whizbang-cli",
	        .timeout_ms = cli->timeout_ms,
	        .max_response = 0,
	};
	char msg[512] = "";
	int rc = wb_connect(&cli->client, cli->server, &opts, msg, sizeof(msg));
	if (rc != 0)
		return report(cli, rc, msg);
	return 0;
}

/* ---------------------------------------------------------------- argument parsing */

/* Matches argv[*i] against "--name VALUE" or "--name=VALUE". */
static int match_value(const char *name, int argc, char **argv, int *i, const char **value)
{
	const char *a = argv[*i];
	size_t n = strlen(name);
	if (strncmp(a, name, n) != 0)
		return OPT_NO;
	if (a[n] == '=') {
		*value = a + n + 1;
		return OPT_YES;
	}
	if (a[n] != '\0')
		return OPT_NO;
	if (*i + 1 >= argc) {
		usage_error("%s needs a value", name);
		return OPT_BAD;
	}
	*i += 1;
	*value = argv[*i];
	return OPT_YES;
}

static bool parse_uint(const char *s, uint64_t *out)
{
	return parse_u64_in(s, PARSE_INTEGER, 0, UINT64_MAX, out) == 0;
}

/* Global options are accepted before and after the command. */
static int global_option(struct cli *cli, int argc, char **argv, int *i)
{
	const char *v;
	int r;
	if (strcmp(argv[*i], "--json") == 0) {
		cli->json = true;
		return OPT_YES;
	}
	if ((r = match_value("--server", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_YES)
			cli->server = v;
		return r;
	}
	if ((r = match_value("--timeout-ms", argc, argv, i, &v)) != OPT_NO) {
		uint64_t n;
		if (r == OPT_BAD)
			return r;
		if (!parse_uint(v, &n) || n > INT32_MAX) {
			usage_error("--timeout-ms needs a number of milliseconds, not \"%s\"", v);
			return OPT_BAD;
		}
		cli->timeout_ms = (int)n;
		cli->timeout_set = true;
		return OPT_YES;
	}
	return OPT_NO;
}

/* One step of a command's argument loop. Returns OPT_YES when argv[*i] was a
 * global option, OPT_NO when the command should look at it, OPT_BAD after a
 * usage error was printed. */
static int common_arg(struct cli *cli, const char *cmd, int argc, char **argv, int *i)
{
	int r = global_option(cli, argc, argv, i);
	if (r != OPT_NO)
		return r;
	const char *a = argv[*i];
	if (a[0] == '-' && a[1] != '\0') {
		usage_error("unknown option %s for %s", a, cmd);
		return OPT_BAD;
	}
	return OPT_NO;
}

static bool is_option(const char *a)
{
	return a[0] == '-' && a[1] != '\0';
}

/* ---------------------------------------------------------------- commands */

static int cmd_ping(struct cli *cli, int argc, char **argv, int i)
{
	for (; i < argc; i++) {
		int r = common_arg(cli, "ping", argc, argv, &i);
		if (r == OPT_BAD)
			return EXIT_USAGE;
		if (r == OPT_NO)
			return usage_error("ping takes no arguments");
	}
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = wb_ping(cli->client);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc != 0)
		return report_client(cli, rc);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	if (cli->json)
		printf("{\"pong\":true,\"ms\":%.3f}\n", ms);
	else
		printf("pong (%.3f ms)\n", ms);
	return 0;
}

struct value {
	const uint8_t *bytes;
	size_t len;
	uint8_t *owned;
};

/* Loads a --data or --metadata argument: the string itself, or with @FILE
 * the file's bytes (@- standard input), refused above limit bytes. */
static int load_value(const struct cli *cli, const char *spec, size_t limit, bool *stdin_used,
                      struct value *out)
{
	if (spec[0] != '@') {
		out->bytes = (const uint8_t *)spec;
		out->len = strlen(spec);
		out->owned = NULL;
		return 0;
	}
	const char *path = spec + 1;
	FILE *f;
	if (strcmp(path, "-") == 0) {
		if (*stdin_used)
			return report(cli, WB_E_INVAL, "standard input (@-) can be read only once");
		*stdin_used = true;
		f = stdin;
	} else {
		f = fopen(path, "rb");
		if (f == NULL)
			return reportf(cli, WB_E_IO, "cannot open %s: %s", path, strerror(errno));
	}
	int rc = 0;
	size_t len = 0, cap = 0;
	uint8_t *buf = NULL;
	for (;;) {
		if (len == cap) {
			/* One byte beyond the limit is enough to know the file is too large. */
			size_t ncap = cap == 0 ? 65536 : cap * 2;
			if (ncap > limit + 1)
				ncap = limit + 1;
			if (ncap == cap) {
				rc = reportf(cli, WB_E_INVAL,
				             "%s is larger than the server's max_event_size of %zu "
				             "bytes",
				             path, limit);
				goto err_after_open;
			}
			uint8_t *p = realloc(buf, ncap);
			if (p == NULL) {
				rc = report(cli, WB_E_NOMEM, "no memory to read the file");
				goto err_after_open;
			}
			buf = p;
			cap = ncap;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				rc = reportf(cli, WB_E_IO, "cannot read %s: %s", path,
				             strerror(errno));
				goto err_after_open;
			}
			break;
		}
	}
	if (len > limit) {
		rc = reportf(cli, WB_E_INVAL,
		             "%s is larger than the server's max_event_size of %zu bytes", path,
		             limit);
		goto err_after_open;
	}
	if (f != stdin)
		fclose(f);
	out->bytes = buf != NULL ? buf : (const uint8_t *)"";
	out->len = len;
	out->owned = buf;
	return 0;

err_after_open:
	free(buf);
	if (f != stdin)
		fclose(f);
	return rc;
}

static bool parse_expected(const char *v, enum wb_expected *exp, uint64_t *version)
{
	if (strcmp(v, "any") == 0)
		*exp = WB_EXPECT_ANY;
	else if (strcmp(v, "no-stream") == 0)
		*exp = WB_EXPECT_NO_STREAM;
	else if (strcmp(v, "exists") == 0)
		*exp = WB_EXPECT_EXISTS;
	else if (parse_uint(v, version))
		*exp = WB_EXPECT_EXACT;
	else
		return false;
	return true;
}

static int cmd_append(struct cli *cli, int argc, char **argv, int i)
{
	const char *stream = NULL;
	/* Each list can hold at most one entry per argument. */
	size_t cap = (size_t)argc;
	const char **types = calloc(cap, sizeof(*types));
	const char **datas = calloc(cap, sizeof(*datas));
	const char **metas = calloc(cap, sizeof(*metas));
	const char **ids = calloc(cap, sizeof(*ids));
	size_t ntypes = 0, ndatas = 0, nmetas = 0, nids = 0;
	enum wb_expected expected = WB_EXPECT_ANY;
	uint64_t expected_version = 0;
	struct value *values = NULL;
	struct wb_new_event *events = NULL;
	uint8_t(*idbytes)[16] = NULL;
	int rc = EXIT_USAGE;
	if (types == NULL || datas == NULL || metas == NULL || ids == NULL) {
		rc = report(cli, WB_E_NOMEM, "no memory for the arguments");
		goto out;
	}
	bool dashdash = false;
	for (; i < argc; i++) {
		const char *a = argv[i], *v;
		int r = OPT_NO;
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(a)) {
			if ((r = match_value("--type", argc, argv, &i, &v)) == OPT_YES)
				types[ntypes++] = v;
			else if (r == OPT_NO &&
			         (r = match_value("--data", argc, argv, &i, &v)) == OPT_YES)
				datas[ndatas++] = v;
			else if (r == OPT_NO &&
			         (r = match_value("--metadata", argc, argv, &i, &v)) == OPT_YES)
				metas[nmetas++] = v;
			else if (r == OPT_NO &&
			         (r = match_value("--id", argc, argv, &i, &v)) == OPT_YES)
				ids[nids++] = v;
			else if (r == OPT_NO && (r = match_value("--expected-version", argc, argv,
			                                         &i, &v)) == OPT_YES) {
				if (!parse_expected(v, &expected, &expected_version)) {
					rc = usage_error("--expected-version takes any, no-stream, "
					                 "exists or a version, not \"%s\"",
					                 v);
					goto out;
				}
			}
			if (r == OPT_NO)
				r = common_arg(cli, "append", argc, argv, &i);
			if (r == OPT_BAD)
				goto out;
			continue;
		}
		if (stream != NULL) {
			rc = usage_error("append takes one stream, not also \"%s\"", a);
			goto out;
		}
		stream = a;
	}
	if (stream == NULL) {
		rc = usage_error("append needs a STREAM");
		goto out;
	}
	if (ndatas == 0 || ntypes == 0) {
		rc = usage_error("append needs --type and --data");
		goto out;
	}
	if ((ntypes != 1 && ntypes != ndatas) || (nmetas > 1 && nmetas != ndatas) ||
	    (nids != 0 && nids != ndatas)) {
		rc = usage_error("with %zu --data, give --type and --metadata once or %zu times, "
		                 "and --id never or %zu times",
		                 ndatas, ndatas, ndatas);
		goto out;
	}
	idbytes = calloc(ndatas, sizeof(*idbytes));
	values = calloc(ndatas + nmetas, sizeof(*values));
	events = calloc(ndatas, sizeof(*events));
	if (idbytes == NULL || values == NULL || events == NULL) {
		rc = report(cli, WB_E_NOMEM, "no memory for the events");
		goto out;
	}
	for (size_t k = 0; k < nids; k++) {
		if (wb_uuid_parse(ids[k], idbytes[k]) != 0) {
			rc = usage_error("--id takes a UUID such as "
			                 "0190f5c4-6a2b-7cde-8f01-23456789abcd, not \"%s\"",
			                 ids[k]);
			goto out;
		}
	}

	rc = connect_server(cli);
	if (rc != 0)
		goto out;
	const struct wb_server_info *info = wb_server_info(cli->client);
	size_t limit = info->max_event_size;
	if (limit == 0)
		limit = info->max_frame > 1024 ? info->max_frame - 1024u : CLI_FALLBACK_EVENT_MAX;
	bool stdin_used = false;
	for (size_t k = 0; k < ndatas + nmetas; k++) {
		const char *spec = k < ndatas ? datas[k] : metas[k - ndatas];
		rc = load_value(cli, spec, limit, &stdin_used, &values[k]);
		if (rc != 0)
			goto out;
	}
	for (size_t k = 0; k < ndatas; k++) {
		events[k].id = nids != 0 ? idbytes[k] : NULL;
		events[k].type = types[ntypes == 1 ? 0 : k];
		events[k].data = values[k].bytes;
		events[k].data_len = values[k].len;
		if (nmetas != 0) {
			const struct value *m = &values[ndatas + (nmetas == 1 ? 0 : k)];
			events[k].metadata = m->bytes;
			events[k].metadata_len = m->len;
		}
	}
	struct wb_append_result res;
	rc = wb_append(cli->client, stream, expected, expected_version, events, ndatas, &res);
	if (rc != 0) {
		rc = report_client(cli, rc);
		goto out;
	}
	uint64_t first_version =
	        res.stream_version >= ndatas - 1 ? res.stream_version - (ndatas - 1) : 0;
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		json_cstr(stream);
		printf(",\"first_version\":%" PRIu64 ",\"version\":%" PRIu64
		       ",\"first_position\":%" PRIu64 ",\"position\":%" PRIu64
		       ",\"idempotent_replay\":%s}\n",
		       first_version, res.stream_version, res.first_position, res.last_position,
		       res.idempotent_replay ? "true" : "false");
	} else {
		fputs("appended ", stdout);
		put_cstr(stream);
		if (ndatas == 1)
			printf(" version=%" PRIu64 " position=%" PRIu64, res.stream_version,
			       res.last_position);
		else
			printf(" versions=%" PRIu64 "..%" PRIu64 " positions=%" PRIu64 "..%" PRIu64,
			       first_version, res.stream_version, res.first_position,
			       res.last_position);
		puts(res.idempotent_replay ? " (idempotent replay: already stored)" : "");
	}
	rc = 0;
out:
	if (values != NULL)
		for (size_t k = 0; k < ndatas + nmetas; k++)
			free(values[k].owned);
	free(values);
	free(events);
	free(idbytes);
	free(types);
	free(datas);
	free(metas);
	free(ids);
	return rc;
}

/* Prints e; a delivery count above 0 (durable consumers) and, for a parked
 * event (parked not NULL), when and why it was parked follow the event's
 * own fields. */
static void print_event_ex(const struct cli *cli, const struct wb_event *e, uint32_t delivery,
                           const Whizbang__V1__ParkedEvent *parked)
{
	char when[40] = "";
	if (parked != NULL)
		format_time(parked->parked_at_us, when);
	char id[37], ts[40];
	wb_uuid_format(e->id, id);
	format_time(e->timestamp_us, ts);
	if (cli->json) {
		printf("{\"id\":\"%s\",\"stream\":", id);
		json_cstr(e->stream);
		printf(",\"version\":%" PRIu64 ",\"position\":%" PRIu64 ",\"type\":", e->version,
		       e->position);
		json_cstr(e->type);
		printf(",\"timestamp\":\"%s\"", ts);
		json_bytes("data", e->data, e->data_len);
		json_bytes("metadata", e->metadata, e->metadata_len);
		if (delivery != 0)
			printf(",\"delivery\":%u", delivery);
		if (parked != NULL) {
			printf(",\"parked_at\":\"%s\",\"reason\":", when);
			json_cstr(parked->reason);
		}
		fputs("}\n", stdout);
		return;
	}
	printf("%" PRIu64 "  ", e->position);
	put_cstr(e->stream);
	printf("@%" PRIu64 "  ", e->version);
	put_cstr(e->type);
	printf("  %s  %s  ", id, ts);
	put_data(e->data, e->data_len);
	if (delivery != 0)
		printf("  delivery=%u", delivery);
	if (parked != NULL) {
		printf("  parked %s", when);
		if (parked->reason[0] != '\0') {
			fputs(": ", stdout);
			put_cstr(parked->reason);
		}
	}
	putchar('\n');
}

static void print_event(const struct cli *cli, const struct wb_event *e)
{
	print_event_ex(cli, e, 0, NULL);
}

struct read_args {
	const char *stream; /* NULL: $all */
	bool backwards;
	bool from_set;
	uint64_t from;
	bool limit_set;
	uint64_t limit;
	const char *prefix;
	const char **types;
	size_t ntypes;
};

/* Reads page after page until the end, or until --limit events are printed. */
static int read_pages(struct cli *cli, const struct read_args *ra)
{
	uint64_t from = ra->from_set ? ra->from : ra->backwards ? WB_END : 0;
	uint64_t printed = 0;
	for (;;) {
		uint32_t want = 0;
		if (ra->limit_set) {
			uint64_t left = ra->limit - printed;
			if (left == 0)
				return 0;
			want = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
		}
		struct wb_page page;
		int rc = ra->stream != NULL ? wb_read_stream(cli->client, ra->stream, from,
		                                             ra->backwards, want, &page)
		                            : wb_read_all(cli->client, from, ra->backwards, want,
		                                          ra->prefix, ra->types, ra->ntypes, &page);
		if (rc != 0)
			return report_client(cli, rc);
		for (size_t k = 0; k < page.count; k++) {
			if (ra->limit_set && printed == ra->limit)
				break;
			print_event(cli, &page.events[k]);
			printed++;
		}
		bool stuck = page.count == 0 && !page.end && page.next == from;
		bool end = page.end;
		from = page.next;
		wb_page_free(&page);
		if (end)
			return 0;
		if (stuck)
			return reportf(cli, WB_INTERNAL,
			               "the server answered an empty page that does not advance "
			               "(next is %" PRIu64 ")",
			               from);
	}
}

/* The options read and read-all share; OPT_NO for anything else. */
static int read_option(struct read_args *ra, int argc, char **argv, int *i)
{
	const char *v;
	int r;
	if (strcmp(argv[*i], "--backwards") == 0) {
		ra->backwards = true;
		return OPT_YES;
	}
	if ((r = match_value("--from", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_YES && !parse_uint(v, &ra->from)) {
			usage_error("--from needs a number, not \"%s\"", v);
			return OPT_BAD;
		}
		ra->from_set = true;
		return r;
	}
	if ((r = match_value("--limit", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_YES && !parse_uint(v, &ra->limit)) {
			usage_error("--limit needs a number, not \"%s\"", v);
			return OPT_BAD;
		}
		ra->limit_set = true;
		return r;
	}
	return OPT_NO;
}

static int cmd_read(struct cli *cli, int argc, char **argv, int i)
{
	struct read_args ra = {0};
	bool dashdash = false;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(a)) {
			int r = read_option(&ra, argc, argv, &i);
			if (r == OPT_NO)
				r = common_arg(cli, "read", argc, argv, &i);
			if (r == OPT_BAD)
				return EXIT_USAGE;
			continue;
		}
		if (ra.stream != NULL)
			return usage_error("read takes one stream, not also \"%s\"", a);
		ra.stream = a;
	}
	if (ra.stream == NULL)
		return usage_error("read needs a STREAM");
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	return read_pages(cli, &ra);
}

static int cmd_read_all(struct cli *cli, int argc, char **argv, int i)
{
	struct read_args ra = {0};
	ra.types = calloc((size_t)argc, sizeof(*ra.types));
	if (ra.types == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the arguments");
	int rc = EXIT_USAGE;
	for (; i < argc; i++) {
		const char *v;
		int r = read_option(&ra, argc, argv, &i);
		if (r == OPT_NO &&
		    (r = match_value("--stream-prefix", argc, argv, &i, &v)) == OPT_YES)
			ra.prefix = v;
		else if (r == OPT_NO && (r = match_value("--type", argc, argv, &i, &v)) == OPT_YES)
			ra.types[ra.ntypes++] = v;
		if (r == OPT_NO && (r = common_arg(cli, "read-all", argc, argv, &i)) == OPT_NO) {
			usage_error("read-all takes no argument \"%s\"", argv[i]);
			goto out;
		}
		if (r == OPT_BAD)
			goto out;
	}
	rc = connect_server(cli);
	if (rc == 0)
		rc = read_pages(cli, &ra);
out:
	free(ra.types);
	return rc;
}

/* A command whose only argument is one STREAM. */
static int stream_arg(struct cli *cli, const char *cmd, int argc, char **argv, int i,
                      const char **stream)
{
	bool dashdash = false;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(a)) {
			if (common_arg(cli, cmd, argc, argv, &i) == OPT_BAD)
				return EXIT_USAGE;
			continue;
		}
		if (*stream != NULL)
			return usage_error("%s takes one stream, not also \"%s\"", cmd, a);
		*stream = a;
	}
	if (*stream == NULL)
		return usage_error("%s needs a STREAM", cmd);
	return 0;
}

static void print_metadata(const struct cli *cli, const struct wb_stream_metadata *md,
                           bool as_fields);

static int cmd_stream_info(struct cli *cli, int argc, char **argv, int i)
{
	const char *stream = NULL;
	int rc = stream_arg(cli, "stream-info", argc, argv, i, &stream);
	if (rc != 0)
		return rc;
	rc = connect_server(cli);
	if (rc != 0)
		return rc;
	struct wb_stream_info si;
	rc = wb_stream_info(cli->client, stream, &si);
	if (rc != 0)
		return report_client(cli, rc);
	char created[40], updated[40];
	format_time(si.created_us, created);
	format_time(si.updated_us, updated);
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		json_cstr(stream);
		printf(",\"last_version\":%" PRIu64 ",\"event_count\":%" PRIu64
		       ",\"first_position\":%" PRIu64 ",\"last_position\":%" PRIu64
		       ",\"created_us\":%" PRIu64 ",\"updated_us\":%" PRIu64
		       ",\"created\":\"%s\",\"updated\":\"%s\",\"deleted\":%s,\"tombstoned\":%s,"
		       "\"metadata\":",
		       si.last_version, si.event_count, si.first_position, si.last_position,
		       si.created_us, si.updated_us, created, updated,
		       si.deleted ? "true" : "false", si.tombstoned ? "true" : "false");
		print_metadata(cli, &si.metadata, false);
		fputs("}\n", stdout);
		return 0;
	}
	fputs("stream: ", stdout);
	put_cstr(stream);
	printf("\nlast_version: %" PRIu64 "\nevent_count: %" PRIu64 "\nfirst_position: %" PRIu64
	       "\nlast_position: %" PRIu64 "\ncreated: %s\nupdated: %s\n",
	       si.last_version, si.event_count, si.first_position, si.last_position, created,
	       updated);
	printf("deleted: %s\ntombstoned: %s\n", si.deleted ? "yes" : "no",
	       si.tombstoned ? "yes" : "no");
	print_metadata(cli, &si.metadata, false);
	return 0;
}

/* Doubles: three decimals for people, JSON numbers (never NaN or infinite,
 * which JSON cannot hold) for programs. */
static void format_double(double v, bool json, char *out, size_t len)
{
	if (v != v || v > 1e300 || v < -1e300)
		v = 0;
	snprintf(out, len, json ? "%.6g" : "%.3f", v);
}

/* The per-projection lease figures: one line each, or a JSON array. */
static void print_projection_stats(const struct cli *cli, const Whizbang__V1__ServerStats *s)
{
	if (cli->json)
		fputs(",\"projections\":[", stdout);
	for (size_t k = 0; k < s->n_projections; k++) {
		const Whizbang__V1__ProjectionStats *p = s->projections[k];
		char eff[32];
		char wait[32];
		format_double(p->efficiency, cli->json, eff, sizeof(eff));
		format_double(p->apply_wait_ms_mean, cli->json, wait, sizeof(wait));
		const char *health = p->health != NULL ? p->health : "";
		const char *reason = p->health_reason != NULL ? p->health_reason : "";
		if (cli->json) {
			fputs(k > 0 ? ",{\"projection\":" : "{\"projection\":", stdout);
			json_cstr(p->projection);
			printf(",\"leases_active\":%" PRIu64 ",\"committed\":%" PRIu64
			       ",\"released\":%" PRIu64 ",\"expired\":%" PRIu64
			       ",\"recovered\":%" PRIu64 ",\"efficiency\":%s"
			       ",\"adaptive_duration_ms\":%" PRIu64 ",\"entries_waiting\":%" PRIu64
			       ",\"apply_wait_ms_mean\":%s,\"apply_wait_ms_max\":%" PRIu64
			       ",\"gaps\":%" PRIu64 ",\"lease_overrun\":%" PRIu64 ",\"health\":",
			       p->leases_active, p->committed, p->released, p->expired,
			       p->recovered, eff, p->adaptive_duration_ms, p->entries_waiting, wait,
			       p->apply_wait_ms_max, p->gaps, p->lease_overrun);
			json_cstr(health);
			fputs(",\"health_reason\":", stdout);
			json_cstr(reason);
			putchar('}');
			continue;
		}
		fputs("projection ", stdout);
		put_cstr(p->projection);
		printf(": leases_active=%" PRIu64 " committed=%" PRIu64 " released=%" PRIu64
		       " expired=%" PRIu64 " recovered=%" PRIu64 " efficiency=%s"
		       " adaptive_duration_ms=%" PRIu64 " entries_waiting=%" PRIu64
		       " apply_wait_ms_mean=%s apply_wait_ms_max=%" PRIu64 " gaps=%" PRIu64
		       " lease_overrun=%" PRIu64 " health=%s",
		       p->leases_active, p->committed, p->released, p->expired, p->recovered, eff,
		       p->adaptive_duration_ms, p->entries_waiting, wait, p->apply_wait_ms_max,
		       p->gaps, p->lease_overrun, health);
		if (reason[0] != '\0') {
			fputs(" (", stdout);
			put_cstr(reason);
			putchar(')');
		}
		putchar('\n');
	}
	if (cli->json)
		putchar(']');
}

/* Prints every field of ServerStats from its descriptor, so that fields added
 * to the proto show up without a change here. */
static void print_stats(const struct cli *cli, const Whizbang__V1__ServerStats *s)
{
	const ProtobufCMessageDescriptor *d = s->base.descriptor;
	if (cli->json)
		putchar('{');
	bool first = true;
	for (unsigned k = 0; k < d->n_fields; k++) {
		const ProtobufCFieldDescriptor *f = &d->fields[k];
		const char *p = (const char *)s + f->offset;
		char num[32];
		const char *text = NULL;
		if (f->label == PROTOBUF_C_LABEL_REPEATED)
			continue;
		switch (f->type) {
		case PROTOBUF_C_TYPE_UINT64: {
			uint64_t v;
			memcpy(&v, p, sizeof(v));
			snprintf(num, sizeof(num), "%" PRIu64, v);
			break;
		}
		case PROTOBUF_C_TYPE_UINT32: {
			uint32_t v;
			memcpy(&v, p, sizeof(v));
			snprintf(num, sizeof(num), "%" PRIu32, v);
			break;
		}
		case PROTOBUF_C_TYPE_BOOL: {
			protobuf_c_boolean v;
			memcpy(&v, p, sizeof(v));
			snprintf(num, sizeof(num), "%s", v ? "true" : "false");
			break;
		}
		case PROTOBUF_C_TYPE_DOUBLE: {
			double v;
			memcpy(&v, p, sizeof(v));
			format_double(v, cli->json, num, sizeof(num));
			break;
		}
		case PROTOBUF_C_TYPE_STRING:
			memcpy(&text, p, sizeof(text));
			if (text == NULL)
				text = "";
			break;
		default:
			continue;
		}
		if (cli->json) {
			printf("%s\"%s\":", first ? "" : ",", f->name);
			if (text != NULL)
				json_cstr(text);
			else
				fputs(num, stdout);
		} else {
			printf("%s: ", f->name);
			if (text != NULL)
				put_cstr(text);
			else
				fputs(num, stdout);
			putchar('\n');
		}
		first = false;
	}
	print_projection_stats(cli, s);
	if (cli->json)
		fputs("}\n", stdout);
}

static int cmd_stats(struct cli *cli, int argc, char **argv, int i)
{
	for (; i < argc; i++) {
		int r = common_arg(cli, "stats", argc, argv, &i);
		if (r == OPT_BAD)
			return EXIT_USAGE;
		if (r == OPT_NO)
			return usage_error("stats takes no arguments");
	}
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__ServerStats *s;
	rc = wb_stats(cli->client, &s);
	if (rc != 0)
		return report_client(cli, rc);
	print_stats(cli, s);
	wb_stats_free(s);
	return 0;
}

/* ---------------------------------------------------------------- leases and the ledger */

/* A growing buffer for the text the optext formatters write. */
struct tbuf {
	char *p;
	size_t cap;
};

/* Makes room for need bytes and a NUL; false when out of memory. */
static bool tbuf_fit(struct tbuf *b, size_t need)
{
	if (need < b->cap)
		return true;
	size_t cap = need + 1 > 256 ? need + 1 : 256;
	char *p = realloc(b->p, cap);
	if (p == NULL)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

static const char *value_text(const Whizbang__V1__Value *v, struct tbuf *b)
{
	size_t n = optext_format_value(v, b->p, b->cap);
	if (n >= b->cap) {
		if (!tbuf_fit(b, n))
			return "(no memory to format the value)";
		optext_format_value(v, b->p, b->cap);
	}
	return b->p;
}

static const char *explosion_text(const Whizbang__V1__Explosion *x, size_t max_ids, struct tbuf *b)
{
	size_t n = optext_format_explosion(x, max_ids, b->p, b->cap);
	if (n >= b->cap) {
		if (!tbuf_fit(b, n))
			return "(no memory to format the explosion)";
		optext_format_explosion(x, max_ids, b->p, b->cap);
	}
	return b->p;
}

/* Whether op evaluates a where clause (and so has an explosion). */
static bool op_has_where(const Whizbang__V1__Op *op)
{
	return op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE ||
	       (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE && op->delete_ != NULL &&
	        op->delete_->target_case == WHIZBANG__V1__DELETE__TARGET_WHERE);
}

static const char *op_kind(const Whizbang__V1__Op *op)
{
	switch (op->kind_case) {
	case WHIZBANG__V1__OP__KIND_UPSERT:
		return "upsert";
	case WHIZBANG__V1__OP__KIND_UPDATE:
		return "update";
	case WHIZBANG__V1__OP__KIND_DELETE:
		return "delete";
	case WHIZBANG__V1__OP__KIND_CREATE_INDEX:
		return "create index";
	case WHIZBANG__V1__OP__KIND_DROP_INDEX:
		return "drop index";
	default:
		return "op";
	}
}

/* The error name of a code the server sent, which may be one this build
 * does not know. */
static const char *code_name(Whizbang__V1__ErrorCode code)
{
	return code == WHIZBANG__V1__ERROR_CODE__OK ? "OK" : wb_error_name((int)code);
}

/* ISO-8601 UTC with milliseconds: 2024-05-01T12:00:00.123Z. */
static void format_time_ms(uint64_t ms, char out[40])
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	if (gmtime_r(&secs, &tm) == NULL || strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, 40, "%" PRIu64 "ms", ms);
		return;
	}
	size_t n = strlen(out);
	snprintf(out + n, 40 - n, ".%03uZ", (unsigned)(ms % 1000));
}

/* A fencing token as lease prints it: exactly 16 hex digits. */
static bool parse_token(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		char ch = s[n];
		unsigned d;
		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			d = (unsigned)(ch - 'A' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	if (n != 16)
		return false;
	*out = v;
	return true;
}

/* The --op texts of one command, parsed into one OpList. */
struct op_args {
	const char **texts;
	size_t n;
	Whizbang__V1__OpList **lists;
	Whizbang__V1__Op **all;
	Whizbang__V1__OpList merged;
};

static void op_args_free(struct op_args *oa)
{
	if (oa->lists != NULL)
		for (size_t k = 0; k < oa->n; k++)
			optext_free_ops(oa->lists[k]);
	free(oa->lists);
	free(oa->all);
	free(oa->texts);
	memset(oa, 0, sizeof(*oa));
}

static int report_parse(const struct cli *cli, const char *text, const struct optext_error *err,
                        const char *where, int status);

/* Parses every --op and joins their ops, in order, into oa->merged. A text
 * that does not parse is reported as INVALID_EXPRESSION with its column,
 * and answered with bad_status. */
static int op_args_parse(const struct cli *cli, struct op_args *oa, const char *what,
                         int bad_status)
{
	whizbang__v1__op_list__init(&oa->merged);
	oa->lists = calloc(oa->n > 0 ? oa->n : 1, sizeof(*oa->lists));
	if (oa->lists == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the operations");
	size_t total = 0;
	for (size_t k = 0; k < oa->n; k++) {
		struct optext_error err = {0};
		int rc = optext_parse_ops(oa->texts[k], &oa->lists[k], &err);
		if (rc == WB_INVALID_EXPRESSION) {
			char where[64] = "";
			if (oa->n > 1)
				snprintf(where, sizeof(where), " (in %s number %zu)", what, k + 1);
			return report_parse(cli, oa->texts[k], &err, where, bad_status);
		}
		if (rc != 0)
			return reportf(cli, rc, "cannot parse %s \"%s\"", what, oa->texts[k]);
		total += oa->lists[k]->n_ops;
	}
	oa->all = calloc(total > 0 ? total : 1, sizeof(*oa->all));
	if (oa->all == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the operations");
	size_t j = 0;
	for (size_t k = 0; k < oa->n; k++)
		for (size_t m = 0; m < oa->lists[k]->n_ops; m++)
			oa->all[j++] = oa->lists[k]->ops[m];
	oa->merged.n_ops = total;
	oa->merged.ops = oa->all;
	return 0;
}

/* Options the lease commands take besides SEQ and --token. */
enum {
	LC_DURATION = 1 << 0,
	LC_REASON = 1 << 1,
	LC_OP = 1 << 2,
	LC_ACK = 1 << 3,
};

struct lease_cmd {
	bool have_seq;
	uint64_t seq;
	bool have_token;
	uint64_t token;
	uint64_t duration_ms;
	const char *reason;
	struct op_args ops;
	bool applied;
	bool reseq;
};

/* Parses "CMD SEQ --token T" and the options of allowed. The caller frees
 * lc->ops with op_args_free() whatever this returns. */
static int lease_cmd_args(struct cli *cli, const char *cmd, unsigned allowed, int argc, char **argv,
                          int i, struct lease_cmd *lc)
{
	lc->ops.texts = calloc((size_t)argc, sizeof(*lc->ops.texts));
	if (lc->ops.texts == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the arguments");
	bool dashdash = false;
	for (; i < argc; i++) {
		const char *a = argv[i], *v;
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(a)) {
			int r;
			if ((r = match_value("--token", argc, argv, &i, &v)) == OPT_YES) {
				if (!parse_token(v, &lc->token))
					return usage_error("--token takes the 16 hex digits lease "
					                   "printed, not \"%s\"",
					                   v);
				lc->have_token = true;
			} else if (r == OPT_NO && (allowed & LC_DURATION) &&
			           (r = match_value("--duration-ms", argc, argv, &i, &v)) ==
			                   OPT_YES) {
				if (!parse_uint(v, &lc->duration_ms))
					return usage_error("--duration-ms needs a number of "
					                   "milliseconds, not \"%s\"",
					                   v);
			} else if (r == OPT_NO && (allowed & LC_REASON) &&
			           (r = match_value("--reason", argc, argv, &i, &v)) == OPT_YES) {
				lc->reason = v;
			} else if (r == OPT_NO && (allowed & LC_OP) &&
			           (r = match_value("--op", argc, argv, &i, &v)) == OPT_YES) {
				lc->ops.texts[lc->ops.n++] = v;
			} else if (r == OPT_NO && (allowed & LC_ACK) &&
			           (r = match_value("--ack", argc, argv, &i, &v)) == OPT_YES) {
				if (strcmp(v, "durable") == 0)
					lc->applied = false;
				else if (strcmp(v, "applied") == 0)
					lc->applied = true;
				else
					return usage_error(
					        "--ack takes durable or applied, not \"%s\"", v);
			} else if (r == OPT_NO && (allowed & LC_ACK) && strcmp(a, "--reseq") == 0) {
				lc->reseq = true;
				r = OPT_YES;
			}
			if (r == OPT_NO)
				r = common_arg(cli, cmd, argc, argv, &i);
			if (r == OPT_BAD)
				return EXIT_USAGE;
			continue;
		}
		if (lc->have_seq)
			return usage_error("%s takes one sequence, not also \"%s\"", cmd, a);
		if (!parse_uint(a, &lc->seq))
			return usage_error("%s needs a sequence number, not \"%s\"", cmd, a);
		lc->have_seq = true;
	}
	if (!lc->have_seq || !lc->have_token)
		return usage_error("%s needs SEQ and --token T", cmd);
	if (allowed & LC_OP)
		return op_args_parse(cli, &lc->ops, "--op", EXIT_FAILURE);
	return 0;
}

static int cmd_lease(struct cli *cli, int argc, char **argv, int i)
{
	struct wb_lease_args args = {.count = 1};
	uint64_t n;
	for (; i < argc; i++) {
		const char *a = argv[i], *v;
		int r;
		if ((r = match_value("--projection", argc, argv, &i, &v)) == OPT_YES) {
			args.projection = v;
		} else if (r == OPT_NO &&
		           (r = match_value("--duration-ms", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_uint(v, &args.duration_ms))
				return usage_error(
				        "--duration-ms needs a number of milliseconds, not \"%s\"",
				        v);
		} else if (r == OPT_NO &&
		           (r = match_value("--count", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_uint(v, &n) || n == 0 || n > CLI_MAX_LEASE_COUNT)
				return usage_error(
				        "--count needs a number from 1 to %u, not \"%s\"",
				        CLI_MAX_LEASE_COUNT, v);
			args.count = (uint32_t)n;
		} else if (r == OPT_NO &&
		           (r = match_value("--operation-id", argc, argv, &i, &v)) == OPT_YES) {
			args.operation_id = v;
		} else if (r == OPT_NO &&
		           (r = match_value("--source-position", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_uint(v, &args.source_position))
				return usage_error("--source-position needs a number, not \"%s\"",
				                   v);
		} else if (r == OPT_NO && strcmp(a, "--release-on-disconnect") == 0) {
			args.release_on_disconnect = true;
			r = OPT_YES;
		}
		if (r == OPT_NO && (r = common_arg(cli, "lease", argc, argv, &i)) == OPT_NO)
			return usage_error("lease takes no argument \"%s\"", a);
		if (r == OPT_BAD)
			return EXIT_USAGE;
	}
	if (args.projection == NULL)
		return usage_error("lease needs --projection P");
	struct wb_lease_grant *grants = calloc(args.count, sizeof(*grants));
	if (grants == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the grants");
	int rc = connect_server(cli);
	if (rc != 0)
		goto out;
	size_t got = 0;
	rc = wb_lease(cli->client, &args, grants, args.count, &got);
	if (rc != 0) {
		rc = report_client(cli, rc);
		goto out;
	}
	for (size_t k = 0; k < got; k++) {
		const struct wb_lease_grant *g = &grants[k];
		char at[40];
		format_time_ms(g->expires_at_ms, at);
		if (cli->json)
			printf("{\"sequence\":%" PRIu64 ",\"token\":\"%016" PRIx64
			       "\",\"expires_at\":\"%s\",\"expires_at_ms\":%" PRIu64
			       ",\"duration_ms\":%" PRIu64 "}\n",
			       g->sequence, g->token, at, g->expires_at_ms, g->duration_ms);
		else
			printf("%" PRIu64 " %016" PRIx64 " %s\n", g->sequence, g->token, at);
	}
out:
	free(grants);
	return rc;
}

static int cmd_extend(struct cli *cli, int argc, char **argv, int i)
{
	struct lease_cmd lc = {0};
	int rc = lease_cmd_args(cli, "extend", LC_DURATION, argc, argv, i, &lc);
	op_args_free(&lc.ops);
	if (rc != 0)
		return rc;
	rc = connect_server(cli);
	if (rc != 0)
		return rc;
	uint64_t until;
	rc = wb_extend(cli->client, lc.seq, lc.token, lc.duration_ms, &until);
	if (rc != 0)
		return report_client(cli, rc);
	char at[40];
	format_time_ms(until, at);
	if (cli->json)
		printf("{\"sequence\":%" PRIu64 ",\"expires_at\":\"%s\",\"expires_at_ms\":%" PRIu64
		       "}\n",
		       lc.seq, at, until);
	else
		printf("extended %" PRIu64 " expires_at=%s\n", lc.seq, at);
	return 0;
}

static int cmd_release(struct cli *cli, int argc, char **argv, int i)
{
	struct lease_cmd lc = {0};
	int rc = lease_cmd_args(cli, "release", LC_REASON, argc, argv, i, &lc);
	op_args_free(&lc.ops);
	if (rc != 0)
		return rc;
	rc = connect_server(cli);
	if (rc != 0)
		return rc;
	rc = wb_release(cli->client, lc.seq, lc.token, lc.reason);
	if (rc != 0)
		return report_client(cli, rc);
	if (cli->json)
		printf("{\"sequence\":%" PRIu64 ",\"released\":true}\n", lc.seq);
	else
		printf("released %" PRIu64 "\n", lc.seq);
	return 0;
}

static int cmd_stage(struct cli *cli, int argc, char **argv, int i)
{
	struct lease_cmd lc = {0};
	int rc = lease_cmd_args(cli, "stage", LC_OP, argc, argv, i, &lc);
	if (rc == 0 && lc.ops.n == 0)
		rc = usage_error("stage needs at least one --op TEXT");
	if (rc == 0)
		rc = connect_server(cli);
	if (rc == 0) {
		rc = wb_stage(cli->client, lc.seq, lc.token, &lc.ops.merged);
		if (rc != 0)
			rc = report_client(cli, rc);
	}
	if (rc == 0) {
		if (cli->json)
			printf("{\"sequence\":%" PRIu64 ",\"staged\":true,\"ops\":%zu}\n", lc.seq,
			       lc.ops.merged.n_ops);
		else
			printf("staged %" PRIu64 " ops=%zu\n", lc.seq, lc.ops.merged.n_ops);
	}
	op_args_free(&lc.ops);
	return rc;
}

static int print_commit(const struct cli *cli, const Whizbang__V1__CommitResult *res,
                        const Whizbang__V1__OpList *ops, bool applied);

static int cmd_commit(struct cli *cli, int argc, char **argv, int i)
{
	struct lease_cmd lc = {0};
	int rc = lease_cmd_args(cli, "commit", LC_OP | LC_ACK, argc, argv, i, &lc);
	Whizbang__V1__CommitResult *res = NULL;
	if (rc == 0)
		rc = connect_server(cli);
	if (rc == 0) {
		rc = wb_commit_full(cli->client, lc.seq, lc.token, &lc.ops.merged, lc.applied,
		                    lc.reseq, &res);
		if (rc != 0)
			rc = report_client(cli, rc);
	}
	if (rc == 0)
		rc = print_commit(cli, res, &lc.ops.merged, lc.applied);
	wb_commit_result_free(res);
	op_args_free(&lc.ops);
	return rc;
}

static const char *reason_name(Whizbang__V1__EntryReason r)
{
	switch (r) {
	case WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED:
		return "released";
	case WHIZBANG__V1__ENTRY_REASON__GAP_EXPIRED:
		return "expired";
	case WHIZBANG__V1__ENTRY_REASON__GAP_RESTART:
		return "restart";
	case WHIZBANG__V1__ENTRY_REASON__RECOVERED_STAGED:
		return "staged";
	case WHIZBANG__V1__ENTRY_REASON__RECOVERED_RESEQUENCED:
		return "resequenced";
	default:
		return NULL;
	}
}

static const char *kind_name(Whizbang__V1__EntryKind k)
{
	switch (k) {
	case WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED:
		return "committed";
	case WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP:
		return "gap";
	case WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED:
		return "recovered";
	default:
		return "unknown";
	}
}

/* Formats op into *buf (grown as needed): its text form. */
static const char *op_text(const Whizbang__V1__Op *op, char **buf, size_t *cap)
{
	if (*cap == 0) {
		*buf = malloc(256);
		if (*buf == NULL)
			return "(no memory to format the operation)";
		*cap = 256;
	}
	size_t need = optext_format_op(op, *buf, *cap) + 1;
	if (need > *cap) {
		char *p = realloc(*buf, need);
		if (p == NULL)
			return *buf != NULL ? *buf : "";
		*buf = p;
		*cap = need;
		optext_format_op(op, *buf, *cap);
	}
	return *buf;
}

/* The Explosion an applied op carries, or NULL. */
static const Whizbang__V1__Explosion *op_explosion(const Whizbang__V1__Op *op)
{
	if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE && op->update != NULL)
		return op->update->exploded;
	if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE && op->delete_ != NULL)
		return op->delete_->exploded;
	return NULL;
}

/* An Explosion as a JSON object; at most max_ids ids, "more" counting the
 * rest; a malformed id list as "ids_corrupt":true and no ids. */
static void json_explosion(size_t op, const Whizbang__V1__Explosion *x, size_t max_ids)
{
	struct optext_ids it;
	optext_ids_init(&it, x);
	int rc;
	while ((rc = optext_ids_next(&it)) > 0)
		;
	printf("{\"op\":%zu,\"count\":%" PRIu64 ",\"created\":%s,\"strategy\":\"%s\",\"plan\":", op,
	       x->count, x->created ? "true" : "false", optext_strategy_name(x->strategy));
	json_cstr(x->plan);
	printf(",\"examined\":%" PRIu64 ",\"micros\":%" PRIu64, x->examined, x->micros);
	if (rc < 0) {
		fputs(",\"ids_corrupt\":true}", stdout);
		return;
	}
	fputs(",\"ids\":[", stdout);
	optext_ids_init(&it, x);
	size_t k = 0;
	for (; k < max_ids && optext_ids_next(&it) > 0; k++) {
		if (k > 0)
			putchar(',');
		json_str((const uint8_t *)it.id, it.id_len);
	}
	printf("],\"more\":%" PRIu64 "}", x->count > k ? x->count - k : 0);
}

/* Prints one ledger entry: SEQ  KIND(REASON)  PROJECTION  OPERATION_ID  TIME
 * OPS, and once applied the outcome, then a line for each explosion; or a
 * JSON object. */
static void print_entry(const struct cli *cli, const Whizbang__V1__LedgerEntry *e, size_t max_ids,
                        char **buf, size_t *cap, struct tbuf *xb)
{
	char time[40], expiry[40];
	format_time(e->time_us, time);
	format_time(e->original_expiry_us, expiry);
	const char *kind = kind_name(e->kind);
	const char *reason = reason_name(e->reason);
	bool failed = e->apply_error != WHIZBANG__V1__ERROR_CODE__OK;
	if (cli->json) {
		printf("{\"sequence\":%" PRIu64 ",\"kind\":\"%s\"", e->sequence, kind);
		if (reason != NULL)
			printf(",\"reason\":\"%s\"", reason);
		fputs(",\"projection\":", stdout);
		json_cstr(e->projection);
		fputs(",\"operation_id\":", stdout);
		json_cstr(e->operation_id);
		printf(",\"source_position\":%" PRIu64 ",\"time\":\"%s\",\"time_us\":%" PRIu64,
		       e->source_position, time, e->time_us);
		if (e->original_expiry_us != 0)
			printf(",\"original_expiry\":\"%s\",\"original_expiry_us\":%" PRIu64,
			       expiry, e->original_expiry_us);
		if (e->original_sequence != 0)
			printf(",\"original_sequence\":%" PRIu64, e->original_sequence);
		fputs(",\"ops\":[", stdout);
		for (size_t k = 0; k < e->n_ops; k++) {
			if (k > 0)
				putchar(',');
			json_cstr(op_text(e->ops[k], buf, cap));
		}
		putchar(']');
		printf(",\"applied\":%s", e->applied ? "true" : "false");
		if (e->applied || failed)
			printf(",\"apply_error\":\"%s\"", code_name(e->apply_error));
		if (failed) {
			fputs(",\"apply_error_message\":", stdout);
			json_cstr(e->apply_error_message);
			printf(",\"failed_op\":%" PRIu32, e->failed_op);
		}
		fputs(",\"explosions\":[", stdout);
		bool first = true;
		for (size_t k = 0; k < e->n_ops; k++) {
			const Whizbang__V1__Explosion *x = op_explosion(e->ops[k]);
			if (x == NULL)
				continue;
			if (!first)
				putchar(',');
			first = false;
			json_explosion(k + 1, x, max_ids);
		}
		fputs("]}\n", stdout);
		return;
	}
	printf("%" PRIu64 "  %s", e->sequence, kind);
	if (e->reason == WHIZBANG__V1__ENTRY_REASON__RECOVERED_RESEQUENCED)
		printf("(resequenced from %" PRIu64 ")", e->original_sequence);
	else if (reason != NULL)
		printf("(%s)", reason);
	fputs("  ", stdout);
	put_cstr(e->projection[0] != '\0' ? e->projection : "-");
	fputs("  ", stdout);
	put_cstr(e->operation_id[0] != '\0' ? e->operation_id : "-");
	printf("  %s", time);
	for (size_t k = 0; k < e->n_ops; k++) {
		fputs(k == 0 ? "  " : "; ", stdout);
		put_cstr(op_text(e->ops[k], buf, cap));
	}
	/* Gaps have nothing to apply; their outcome is no news. */
	if (failed) {
		printf("  [failed at op %" PRIu32 ": %s: ", e->failed_op,
		       code_name(e->apply_error));
		put_cstr(e->apply_error_message);
		putchar(']');
	} else if (e->applied && e->n_ops > 0) {
		fputs("  [applied ok]", stdout);
	}
	putchar('\n');
	for (size_t k = 0; k < e->n_ops; k++) {
		const Whizbang__V1__Explosion *x = op_explosion(e->ops[k]);
		if (x == NULL)
			continue;
		printf("    op %zu: ", k + 1);
		put_cstr(explosion_text(x, max_ids, xb));
		putchar('\n');
	}
}

static int cmd_ledger(struct cli *cli, int argc, char **argv, int i)
{
	struct read_args ra = {0};
	size_t max_ids = CLI_LEDGER_IDS;
	for (; i < argc; i++) {
		int r = strcmp(argv[i], "--backwards") == 0 ? OPT_NO
		                                            : read_option(&ra, argc, argv, &i);
		if (r == OPT_NO && strcmp(argv[i], "--ids") == 0) {
			max_ids = SIZE_MAX;
			r = OPT_YES;
		}
		if (r == OPT_NO && (r = common_arg(cli, "ledger", argc, argv, &i)) == OPT_NO)
			return usage_error("ledger takes no argument \"%s\"", argv[i]);
		if (r == OPT_BAD)
			return EXIT_USAGE;
	}
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	uint64_t from = ra.from_set ? ra.from : 1;
	uint64_t printed = 0;
	char *buf = NULL;
	size_t cap = 0;
	struct tbuf xb = {0};
	for (;;) {
		uint32_t want = 0;
		if (ra.limit_set) {
			uint64_t left = ra.limit - printed;
			if (left == 0)
				break;
			want = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
		}
		Whizbang__V1__ReadLedgerResult *res;
		rc = wb_read_ledger(cli->client, from, want, &res);
		if (rc != 0) {
			rc = report_client(cli, rc);
			break;
		}
		for (size_t k = 0; k < res->n_entries; k++) {
			if (ra.limit_set && printed == ra.limit)
				break;
			print_entry(cli, res->entries[k], max_ids, &buf, &cap, &xb);
			printed++;
		}
		bool stuck = res->n_entries == 0 && !res->end && res->next_sequence <= from;
		bool end = res->end;
		from = res->next_sequence;
		wb_ledger_free(res);
		if (end)
			break;
		if (stuck) {
			rc = reportf(
			        cli, WB_INTERNAL,
			        "the server answered an empty ledger page that does not advance "
			        "(next is %" PRIu64 ")",
			        from);
			break;
		}
	}
	free(buf);
	free(xb.p);
	return rc;
}

static int cmd_watermark(struct cli *cli, int argc, char **argv, int i)
{
	bool wait = false, timeout_set = false;
	uint64_t seq = 0, timeout = 0;
	for (; i < argc; i++) {
		const char *v;
		int r;
		/* After this command --timeout-ms is the wait's (with --wait). */
		if ((r = match_value("--wait", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_uint(v, &seq))
				return usage_error("--wait needs a sequence number, not \"%s\"", v);
			wait = true;
		} else if (r == OPT_NO &&
		           (r = match_value("--timeout-ms", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_uint(v, &timeout) || timeout > INT32_MAX)
				return usage_error(
				        "--timeout-ms needs a number of milliseconds, not \"%s\"",
				        v);
			timeout_set = true;
		}
		if (r == OPT_NO && (r = common_arg(cli, "watermark", argc, argv, &i)) == OPT_NO)
			return usage_error("watermark takes no argument \"%s\"", argv[i]);
		if (r == OPT_BAD)
			return EXIT_USAGE;
	}
	if (timeout_set && !wait)
		cli->timeout_ms = (int)timeout;
	else if (!timeout_set)
		timeout = cli->timeout_ms > 0 ? (uint64_t)cli->timeout_ms : CLI_WAIT_FOREVER_MS;
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	uint64_t w = 0, next = 0;
	bool reached = true;
	if (wait)
		rc = wb_wait_watermark(cli->client, seq, timeout, &w, &reached);
	else
		rc = wb_watermark(cli->client, &w, &next);
	if (rc != 0)
		return report_client(cli, rc);
	if (cli->json) {
		printf("{\"watermark\":%" PRIu64, w);
		if (wait)
			printf(",\"sequence\":%" PRIu64 ",\"reached\":%s", seq,
			       reached ? "true" : "false");
		else
			printf(",\"next_sequence\":%" PRIu64, next);
		fputs("}\n", stdout);
	} else if (wait) {
		printf("watermark %" PRIu64 " %s\n", w, reached ? "reached" : "timed out");
	} else {
		printf("watermark %" PRIu64 "\n", w);
	}
	return reached ? 0 : EXIT_FAILURE;
}

/* ---------------------------------------------------------------- entities, queries, indexes */

/* A field value as JSON: strings, numbers, booleans and null as themselves
 * (a double always with a '.' or an exponent, so that it reads back as one;
 * NaN and the infinities, which JSON lacks, as the strings "nan", "inf",
 * "-inf"), bytes as {"base64":"..."}. */
static void json_value(const Whizbang__V1__Value *v, struct tbuf *b)
{
	switch (v == NULL ? WHIZBANG__V1__VALUE__KIND__NOT_SET : v->kind_case) {
	case WHIZBANG__V1__VALUE__KIND_STRING_VALUE:
		json_cstr(v->string_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_INT_VALUE:
		printf("%" PRId64, v->int_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE: {
		const char *t = value_text(v, b);
		if (strcmp(t, "nan") == 0 || strcmp(t, "inf") == 0 || strcmp(t, "-inf") == 0)
			printf("\"%s\"", t);
		else
			fputs(t, stdout);
		break;
	}
	case WHIZBANG__V1__VALUE__KIND_BOOL_VALUE:
		fputs(v->bool_value ? "true" : "false", stdout);
		break;
	case WHIZBANG__V1__VALUE__KIND_BYTES_VALUE:
		fputs("{\"base64\":\"", stdout);
		base64(v->bytes_value.data, v->bytes_value.len);
		fputs("\"}", stdout);
		break;
	default:
		fputs("null", stdout);
		break;
	}
}

/* An entity as one JSON object, or for people: with one_line, ID
 * version=N {fields} (query); otherwise a heading and one field a line
 * (get). Values are literals of the operation text form, so their types
 * show: "120" is a string, 120 an int, 120.0 a double. */
static void print_entity(const struct cli *cli, const Whizbang__V1__Entity *e, bool one_line,
                         struct tbuf *b)
{
	if (cli->json) {
		fputs("{\"type\":", stdout);
		json_cstr(e->type);
		fputs(",\"id\":", stdout);
		json_cstr(e->id);
		printf(",\"version\":%" PRIu64 ",\"created_sequence\":%" PRIu64
		       ",\"updated_sequence\":%" PRIu64 ",\"fields\":{",
		       e->version, e->created_sequence, e->updated_sequence);
		for (size_t k = 0; k < e->n_fields; k++) {
			if (k > 0)
				putchar(',');
			json_cstr(e->fields[k]->name);
			putchar(':');
			json_value(e->fields[k]->value, b);
		}
		fputs("}}\n", stdout);
		return;
	}
	if (one_line) {
		put_cstr(e->id);
		printf("  version=%" PRIu64 "  {", e->version);
		for (size_t k = 0; k < e->n_fields; k++) {
			if (k > 0)
				fputs(", ", stdout);
			put_cstr(e->fields[k]->name);
			fputs(": ", stdout);
			put_cstr(value_text(e->fields[k]->value, b));
		}
		fputs("}\n", stdout);
		return;
	}
	put_cstr(e->type);
	putchar(' ');
	put_cstr(e->id);
	printf("\nversion: %" PRIu64 "\ncreated_sequence: %" PRIu64 "\nupdated_sequence: %" PRIu64
	       "\nfields:%s\n",
	       e->version, e->created_sequence, e->updated_sequence,
	       e->n_fields == 0 ? " (none)" : "");
	for (size_t k = 0; k < e->n_fields; k++) {
		fputs("  ", stdout);
		put_cstr(e->fields[k]->name);
		fputs(": ", stdout);
		put_cstr(value_text(e->fields[k]->value, b));
		putchar('\n');
	}
}

/* The positional arguments of a command. */
struct cmd_args {
	const char *pos[4];
	size_t npos;
};

/* Reads the arguments of a command that takes only the common options
 * and at most max positionals (after "--" everything is positional).
 * Returns 0, or EXIT_USAGE after saying why (too_many names what the
 * command takes). */
static int positionals(struct cli *cli, const char *cmd, int argc, char **argv, int i, size_t max,
                       const char *too_many, struct cmd_args *a)
{
	bool dashdash = false;
	memset(a, 0, sizeof(*a));
	for (; i < argc; i++) {
		if (!dashdash && strcmp(argv[i], "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(argv[i])) {
			if (common_arg(cli, cmd, argc, argv, &i) == OPT_BAD)
				return EXIT_USAGE;
			continue;
		}
		if (a->npos == max || a->npos == sizeof(a->pos) / sizeof(a->pos[0]))
			return usage_error("%s takes %s, not also \"%s\"", cmd, too_many, argv[i]);
		a->pos[a->npos++] = argv[i];
	}
	return 0;
}

static int cmd_get(struct cli *cli, int argc, char **argv, int i)
{
	struct cmd_args a;
	if (positionals(cli, "get", argc, argv, i, 2, "TYPE and ID", &a) != 0)
		return EXIT_USAGE;
	if (a.npos != 2)
		return usage_error("get needs TYPE and ID");
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__Entity *e;
	rc = wb_get_entity(cli->client, a.pos[0], a.pos[1], &e);
	if (rc != 0)
		return report_client(cli, rc);
	struct tbuf b = {0};
	print_entity(cli, e, false, &b);
	free(b.p);
	wb_entity_free(e);
	return 0;
}

/* Parses a where clause given on the command line: 0 with *out (NULL for
 * an empty clause when allow_empty), or the usage status after reporting
 * the column and what was expected. */
static int parse_where_arg(const struct cli *cli, const char *text, bool allow_empty,
                           Whizbang__V1__Expr **out)
{
	*out = NULL;
	const char *p = text;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p == '\0' && allow_empty)
		return 0;
	struct optext_error err = {0};
	int rc = optext_parse_where(text, out, &err);
	if (rc == WB_INVALID_EXPRESSION)
		return report_parse(cli, text, &err, "", EXIT_USAGE);
	if (rc != 0)
		return report(cli, rc, "cannot parse the where clause");
	return 0;
}

static bool parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	if (!parse_uint(s, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Prints text of several lines on one: its non-empty lines, stripped of
 * their indent, joined with "; ". */
static void put_one_line(const char *s)
{
	bool first = true;
	while (*s != '\0') {
		while (*s == ' ' || *s == '\t')
			s++;
		const char *nl = strchr(s, '\n');
		size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
		if (n > 0) {
			if (!first)
				fputs("; ", stdout);
			put_text((const uint8_t *)s, n, SIZE_MAX);
			first = false;
		}
		s += n + (nl != NULL ? 1 : 0);
	}
}

static void print_query_summary(const struct cli *cli, const Whizbang__V1__QueryResult *res,
                                uint64_t entities, uint64_t examined, uint64_t pages)
{
	const char *strategy = optext_strategy_name(res->strategy);
	if (cli->json) {
		printf("{\"entities\":%" PRIu64 ",\"end\":%s", entities,
		       res->end ? "true" : "false");
		if (!res->end) {
			fputs(",\"next_after\":", stdout);
			json_cstr(res->next_after);
		}
		printf(",\"strategy\":\"%s\",\"plan\":", strategy);
		json_cstr(res->plan);
		printf(",\"examined\":%" PRIu64 ",\"watermark\":%" PRIu64 ",\"pages\":%" PRIu64
		       "}\n",
		       examined, res->watermark, pages);
		return;
	}
	printf("-- %" PRIu64 " %s", entities, entities == 1 ? "entity" : "entities");
	if (res->end) {
		fputs(", end\n", stdout);
	} else {
		fputs(", more after ", stdout);
		put_cstr(res->next_after);
		fputs(" (--after ", stdout);
		put_cstr(res->next_after);
		fputs(")\n", stdout);
	}
	fputs("-- plan: ", stdout);
	put_one_line(res->plan[0] != '\0' ? res->plan : strategy);
	printf(" (%s, examined %" PRIu64, strategy, examined);
	if (pages > 1)
		printf(" over %" PRIu64 " pages", pages);
	printf(", watermark %" PRIu64 ")\n", res->watermark);
}

static int cmd_query(struct cli *cli, int argc, char **argv, int i)
{
	struct cmd_args a = {0};
	uint32_t limit = 0;
	const char *after = NULL;
	bool all = false, dashdash = false;
	for (; i < argc; i++) {
		const char *v;
		int r = OPT_NO;
		if (!dashdash && strcmp(argv[i], "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(argv[i])) {
			if ((r = match_value("--limit", argc, argv, &i, &v)) == OPT_YES) {
				if (!parse_u32(v, &limit))
					return usage_error("--limit needs a number, not \"%s\"", v);
			} else if (r == OPT_NO &&
			           (r = match_value("--after", argc, argv, &i, &v)) == OPT_YES) {
				after = v;
			} else if (r == OPT_NO && strcmp(argv[i], "--all") == 0) {
				all = true;
				r = OPT_YES;
			}
			if (r == OPT_NO)
				r = common_arg(cli, "query", argc, argv, &i);
			if (r == OPT_BAD)
				return EXIT_USAGE;
			continue;
		}
		if (a.npos == 2)
			return usage_error("query takes TYPE and one WHERE clause (quote it), not "
			                   "also \"%s\"",
			                   argv[i]);
		a.pos[a.npos++] = argv[i];
	}
	if (a.npos == 0)
		return usage_error("query needs a TYPE");
	const char *text = a.npos == 2 ? a.pos[1] : "";
	Whizbang__V1__Expr *where;
	int rc = parse_where_arg(cli, text, true, &where);
	if (rc != 0)
		return rc;
	rc = connect_server(cli);
	char *cursor = NULL;
	struct tbuf b = {0};
	uint64_t entities = 0, examined = 0, pages = 0;
	while (rc == 0) {
		Whizbang__V1__QueryResult *res;
		rc = wb_query(cli->client, a.pos[0], where, where != NULL ? text : NULL,
		              cursor != NULL ? cursor : after, limit, &res);
		if (rc != 0) {
			rc = report_client(cli, rc);
			break;
		}
		pages++;
		for (size_t k = 0; k < res->n_entities; k++)
			print_entity(cli, res->entities[k], true, &b);
		entities += res->n_entities;
		examined += res->examined;
		bool more = all && !res->end;
		if (more &&
		    (res->n_entities == 0 || strcmp(res->next_after, cursor != NULL  ? cursor
		                                                     : after != NULL ? after
		                                                                     : "") == 0)) {
			wb_query_free(res);
			rc = report(cli, WB_INTERNAL,
			            "the server answered a page that does not advance the cursor");
			break;
		}
		if (!more) {
			print_query_summary(cli, res, entities, examined, pages);
			wb_query_free(res);
			break;
		}
		free(cursor);
		cursor = strdup(res->next_after);
		wb_query_free(res);
		if (cursor == NULL)
			rc = report(cli, WB_E_NOMEM, "no memory for the cursor");
	}
	free(cursor);
	free(b.p);
	optext_free_expr(where);
	return rc;
}

static void print_index(const struct cli *cli, const char *verb, const Whizbang__V1__IndexInfo *x,
                        uint64_t sequence)
{
	if (cli->json) {
		fputs("{\"type\":", stdout);
		json_cstr(x->type);
		fputs(",\"field\":", stdout);
		json_cstr(x->field);
		printf(",\"entries\":%" PRIu64 ",\"created_sequence\":%" PRIu64, x->entries,
		       x->created_sequence);
		if (verb != NULL)
			printf(",\"%s\":true,\"sequence\":%" PRIu64, verb, sequence);
		fputs("}\n", stdout);
		return;
	}
	if (verb != NULL)
		printf("%s index ", verb);
	put_cstr(x->type);
	putchar('.');
	put_cstr(x->field);
	if (verb != NULL && strcmp(verb, "dropped") == 0)
		printf(" at sequence %" PRIu64 "\n", sequence);
	else if (verb != NULL)
		printf(" at sequence %" PRIu64 " entries=%" PRIu64 "\n", sequence, x->entries);
	else
		printf("  entries=%" PRIu64 "  created_sequence=%" PRIu64 "\n", x->entries,
		       x->created_sequence);
}

static int cmd_index(struct cli *cli, int argc, char **argv, int i)
{
	struct cmd_args a;
	if (positionals(cli, "index", argc, argv, i, 3, "at most a subcommand, TYPE and FIELD",
	                &a) != 0)
		return EXIT_USAGE;
	const char *sub = a.npos > 0 ? a.pos[0] : "";
	bool create = strcmp(sub, "create") == 0, drop = strcmp(sub, "drop") == 0;
	if (strcmp(sub, "list") == 0) {
		if (a.npos > 2)
			return usage_error("index list takes at most a TYPE");
	} else if (create || drop) {
		if (a.npos != 3)
			return usage_error("index %s needs TYPE and FIELD", sub);
	} else {
		return usage_error("index needs create TYPE FIELD, drop TYPE FIELD or list [TYPE]");
	}
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	if (create || drop) {
		Whizbang__V1__IndexResult *res;
		rc = create ? wb_create_index(cli->client, a.pos[1], a.pos[2], &res)
		            : wb_drop_index(cli->client, a.pos[1], a.pos[2], &res);
		if (rc != 0)
			return report_client(cli, rc);
		/* A server may leave the dropped index out of the answer. */
		Whizbang__V1__IndexInfo spec = WHIZBANG__V1__INDEX_INFO__INIT;
		spec.type = (char *)a.pos[1];
		spec.field = (char *)a.pos[2];
		print_index(cli, create ? "created" : "dropped",
		            res->index != NULL ? res->index : &spec, res->sequence);
		wb_index_result_free(res);
		return 0;
	}
	Whizbang__V1__IndexList *list;
	rc = wb_list_indexes(cli->client, a.npos == 2 ? a.pos[1] : NULL, &list);
	if (rc != 0)
		return report_client(cli, rc);
	for (size_t k = 0; k < list->n_indexes; k++)
		print_index(cli, NULL, list->indexes[k], 0);
	if (list->n_indexes == 0 && !cli->json)
		puts("(no indexes)");
	wb_index_list_free(list);
	return 0;
}

static int cmd_explain(struct cli *cli, int argc, char **argv, int i)
{
	struct cmd_args a;
	if (positionals(cli, "explain", argc, argv, i, 2, "TYPE and one WHERE clause (quote it)",
	                &a) != 0)
		return EXIT_USAGE;
	if (a.npos != 2)
		return usage_error("explain needs TYPE and a WHERE clause");
	Whizbang__V1__Expr *where;
	int rc = parse_where_arg(cli, a.pos[1], false, &where);
	if (rc != 0)
		return rc;
	Whizbang__V1__PlanResult *plan = NULL;
	rc = connect_server(cli);
	if (rc == 0) {
		rc = wb_explain(cli->client, a.pos[0], where, a.pos[1], &plan);
		if (rc != 0)
			rc = report_client(cli, rc);
	}
	optext_free_expr(where);
	if (rc != 0)
		return rc;
	const char *strategy = optext_strategy_name(plan->strategy);
	if (cli->json) {
		printf("{\"strategy\":\"%s\",\"plan\":", strategy);
		json_cstr(plan->plan);
		printf(",\"estimated_candidates\":%" PRIu64 ",\"type_entities\":%" PRIu64
		       ",\"max_scan\":%" PRIu64 ",\"refused\":%s}\n",
		       plan->estimated_candidates, plan->type_entities, plan->max_scan,
		       plan->refused ? "true" : "false");
		wb_plan_free(plan);
		return 0;
	}
	printf("strategy: %s\nplan:\n", strategy);
	/* The plan is indented text, one step a line. */
	const char *p = plan->plan;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		fputs("  ", stdout);
		put_text((const uint8_t *)p, n, SIZE_MAX);
		putchar('\n');
		p += n + (nl != NULL ? 1 : 0);
	}
	printf("estimated_candidates: %" PRIu64 "\ntype_entities: %" PRIu64 "\nmax_scan: %" PRIu64
	       "\n",
	       plan->estimated_candidates, plan->type_entities, plan->max_scan);
	if (plan->refused)
		printf("refused: yes (a scan of more than max_scan entities answers "
		       "QUERY_TOO_EXPENSIVE)\n");
	else
		puts("refused: no");
	wb_plan_free(plan);
	return 0;
}

/* Prints a CommitResult with the ops that were sent: the sequence and
 * watermark, then (applied commits) what each op did or why none did.
 * Answers 0, or EXIT_FAILURE after reporting an apply error. */
static int print_commit(const struct cli *cli, const Whizbang__V1__CommitResult *res,
                        const Whizbang__V1__OpList *ops, bool applied)
{
	bool failed = applied && res->apply_error != WHIZBANG__V1__ERROR_CODE__OK;
	if (cli->json) {
		printf("{\"sequence\":%" PRIu64 ",\"watermark\":%" PRIu64 ",\"resequenced\":%s",
		       res->sequence, res->watermark, res->resequenced ? "true" : "false");
		if (res->resequenced)
			printf(",\"original_sequence\":%" PRIu64, res->original_sequence);
		printf(",\"ack\":\"%s\",\"ops\":%zu", applied ? "applied" : "durable", ops->n_ops);
		if (applied) {
			printf(",\"applied\":%s,\"apply_error\":\"%s\"", failed ? "false" : "true",
			       code_name(res->apply_error));
			if (failed) {
				fputs(",\"apply_error_message\":", stdout);
				json_cstr(res->apply_error_message);
				printf(",\"failed_op\":%" PRIu32, res->failed_op);
			}
			fputs(",\"results\":[", stdout);
			for (size_t k = 0; k < res->n_results; k++) {
				const Whizbang__V1__OpResult *o = res->results[k];
				printf("%s{\"op\":%zu,\"kind\":\"%s\",\"affected\":%" PRIu64
				       ",\"matched\":%" PRIu64
				       ",\"created\":%s,\"strategy\":\"%s\","
				       "\"plan\":",
				       k > 0 ? "," : "", k + 1,
				       k < ops->n_ops ? op_kind(ops->ops[k]) : "op", o->affected,
				       o->matched, o->created ? "true" : "false",
				       optext_strategy_name(o->strategy));
				json_cstr(o->plan);
				printf(",\"examined\":%" PRIu64 ",\"micros\":%" PRIu64 "}",
				       o->examined, o->micros);
			}
			putchar(']');
		}
		fputs("}\n", stdout);
	} else {
		printf("committed %" PRIu64 " watermark=%" PRIu64, res->sequence, res->watermark);
		if (res->resequenced)
			printf(" resequenced from %" PRIu64, res->original_sequence);
		putchar('\n');
		for (size_t k = 0; applied && !failed && k < res->n_results; k++) {
			const Whizbang__V1__OpResult *o = res->results[k];
			bool where = k < ops->n_ops && op_has_where(ops->ops[k]);
			printf("  op %zu %s: ", k + 1,
			       k < ops->n_ops ? op_kind(ops->ops[k]) : "op");
			if (where)
				printf("matched %" PRIu64 ", ", o->matched);
			printf("affected %" PRIu64 "%s", o->affected,
			       o->created ? ", created" : "");
			if (where) {
				fputs(" via ", stdout);
				put_one_line(o->plan[0] != '\0'
				                     ? o->plan
				                     : optext_strategy_name(o->strategy));
				printf(" (examined %" PRIu64 ", %" PRIu64 " µs)", o->examined,
				       o->micros);
			}
			putchar('\n');
		}
	}
	if (!failed)
		return 0;
	fflush(stdout);
	fprintf(stderr, "error: %s: not applied, no op took effect: failed at op %" PRIu32,
	        code_name(res->apply_error), res->failed_op);
	if (res->failed_op >= 1 && res->failed_op <= ops->n_ops)
		fprintf(stderr, " (%s)", op_kind(ops->ops[res->failed_op - 1]));
	fprintf(stderr, ": %s\n",
	        res->apply_error_message[0] != '\0' ? res->apply_error_message
	                                            : wb_strerror((int)res->apply_error));
	return EXIT_FAILURE;
}

static int cmd_apply(struct cli *cli, int argc, char **argv, int i)
{
	struct op_args oa = {0};
	struct wb_lease_args args = {.count = 1, .release_on_disconnect = true};
	oa.texts = calloc((size_t)argc, sizeof(*oa.texts));
	if (oa.texts == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the arguments");
	int rc = 0;
	bool dashdash = false;
	for (; i < argc && rc == 0; i++) {
		const char *v;
		int r = OPT_NO;
		if (!dashdash && strcmp(argv[i], "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && is_option(argv[i])) {
			if ((r = match_value("--projection", argc, argv, &i, &v)) == OPT_YES)
				args.projection = v;
			else if (r == OPT_NO &&
			         (r = match_value("--operation-id", argc, argv, &i, &v)) == OPT_YES)
				args.operation_id = v;
			if (r == OPT_NO)
				r = common_arg(cli, "apply", argc, argv, &i);
			if (r == OPT_BAD)
				rc = EXIT_USAGE;
			continue;
		}
		oa.texts[oa.n++] = argv[i];
	}
	if (rc == 0 && args.projection == NULL)
		rc = usage_error("apply needs --projection P");
	if (rc == 0 && oa.n == 0)
		rc = usage_error("apply needs operations, e.g. 'upsert Order \"o-1\" {total: 5}'");
	/* Every op parses before anything is leased. */
	if (rc == 0)
		rc = op_args_parse(cli, &oa, "argument", EXIT_USAGE);
	if (rc == 0)
		rc = connect_server(cli);
	struct wb_lease_grant g;
	size_t got = 0;
	if (rc == 0) {
		rc = wb_lease(cli->client, &args, &g, 1, &got);
		if (rc != 0)
			rc = report_client(cli, rc);
	}
	Whizbang__V1__CommitResult *res = NULL;
	if (rc == 0) {
		rc = wb_commit_full(cli->client, g.sequence, g.token, &oa.merged, true, false,
		                    &res);
		if (rc != 0)
			rc = report_client(cli, rc);
	}
	if (rc == 0)
		rc = print_commit(cli, res, &oa.merged, true);
	wb_commit_result_free(res);
	op_args_free(&oa);
	return rc;
}

static void put_hex(const ProtobufCBinaryData *b)
{
	for (size_t k = 0; k < b->len; k++)
		printf("%02x", b->data[k]);
}

static int cmd_verify(struct cli *cli, int argc, char **argv, int i)
{
	for (; i < argc; i++) {
		int r = common_arg(cli, "verify", argc, argv, &i);
		if (r == OPT_BAD)
			return EXIT_USAGE;
		if (r == OPT_NO)
			return usage_error("verify takes no arguments");
	}
	if (!cli->timeout_set)
		cli->timeout_ms = CLI_VERIFY_TIMEOUT_MS;
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__VerifyResult *v;
	rc = wb_verify(cli->client, &v);
	if (rc != 0)
		return report_client(cli, rc);
	if (cli->json) {
		printf("{\"match\":%s,\"live_digest\":\"", v->match ? "true" : "false");
		put_hex(&v->live_digest);
		fputs("\",\"replay_digest\":\"", stdout);
		put_hex(&v->replay_digest);
		printf("\",\"watermark\":%" PRIu64 ",\"entries_replayed\":%" PRIu64
		       ",\"entities\":%" PRIu64 ",\"micros\":%" PRIu64 ",\"first_difference\":",
		       v->watermark, v->entries_replayed, v->entities, v->micros);
		json_cstr(v->first_difference);
		fputs("}\n", stdout);
	} else {
		printf("verify: %s\nlive_digest: ", v->match ? "match" : "MISMATCH");
		put_hex(&v->live_digest);
		fputs("\nreplay_digest: ", stdout);
		put_hex(&v->replay_digest);
		printf("\nwatermark: %" PRIu64 "\nentries_replayed: %" PRIu64 "\nentities: %" PRIu64
		       "\nmicros: %" PRIu64 "\n",
		       v->watermark, v->entries_replayed, v->entities, v->micros);
		if (!v->match) {
			fputs("first_difference: ", stdout);
			put_cstr(v->first_difference);
			putchar('\n');
		}
	}
	rc = 0;
	if (!v->match) {
		fflush(stdout);
		fprintf(stderr,
		        "error: the state replayed from the ledger differs from the live "
		        "state: %s\n",
		        v->first_difference[0] != '\0' ? v->first_difference : "(no detail)");
		rc = EXIT_FAILURE;
	}
	wb_verify_free(v);
	return rc;
}

/* ---------------------------------------------------------------- subscriptions and consumers */

/* --credits without a value: items the server may push ahead of the
 * printing. */
#define CLI_DEFAULT_CREDITS 256u
/* consumer read: events asked for without --count, and how long to wait for
 * the next one before deciding the group has nothing more. */
#define CLI_CONSUMER_COUNT 10u
#define CLI_CONSUMER_WAIT_MS 1000
/* How often a waiting subscribe looks at the interrupt flag. */
#define CLI_POLL_MS 200

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Parses DUR: a number with ms, s, m, h or d; a bare number is milliseconds. */
static bool parse_duration_ms(const char *s, uint64_t *out)
{
	return parse_u64(s, PARSE_DURATION, out) == 0;
}

static void format_duration_ms(uint64_t ms, char out[40])
{
	parse_format(PARSE_DURATION, ms, out, 40);
}

/* Prints a pushed or parked event; delivery 0 prints no delivery count. */
static void print_recorded(const struct cli *cli, const Whizbang__V1__RecordedEvent *r,
                           uint32_t delivery, const Whizbang__V1__ParkedEvent *parked)
{
	struct wb_event e = {0};
	if (r->id.len == 16)
		memcpy(e.id, r->id.data, 16);
	e.stream = r->stream;
	e.version = r->version;
	e.position = r->position;
	e.timestamp_us = r->timestamp_us;
	e.type = r->type;
	e.data = r->data.data;
	e.data_len = r->data.len;
	e.metadata = r->metadata.data;
	e.metadata_len = r->metadata.len;
	print_event_ex(cli, &e, delivery, parked);
}

/* The options subscribe and consumer create share; OPT_NO for others. */
struct target_args {
	enum wb_target target;
	bool target_set;
	const char *stream;
	enum wb_from from;
	uint64_t position;
	const char *prefix;
	const char **types;
	size_t ntypes;
};

static int target_option(struct target_args *t, bool ledger_ok, int argc, char **argv, int *i)
{
	const char *v;
	int r;
	const char *a = argv[*i];
	if (strcmp(a, "--all") == 0 || (ledger_ok && strcmp(a, "--ledger") == 0)) {
		if (t->target_set) {
			usage_error("give one of --all, --stream%s",
			            ledger_ok ? " and --ledger" : "");
			return OPT_BAD;
		}
		t->target = a[2] == 'a' ? WB_TARGET_ALL : WB_TARGET_LEDGER;
		t->target_set = true;
		return OPT_YES;
	}
	if ((r = match_value("--stream-prefix", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_YES)
			t->prefix = v;
		return r;
	}
	if ((r = match_value("--stream", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_YES) {
			if (t->target_set) {
				usage_error("give one of --all, --stream%s",
				            ledger_ok ? " and --ledger" : "");
				return OPT_BAD;
			}
			t->target = WB_TARGET_STREAM;
			t->target_set = true;
			t->stream = v;
		}
		return r;
	}
	if ((r = match_value("--type", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_YES)
			t->types[t->ntypes++] = v;
		return r;
	}
	if ((r = match_value("--from", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_BAD)
			return r;
		if (strcmp(v, "start") == 0) {
			t->from = WB_FROM_START;
		} else if (strcmp(v, "end") == 0) {
			t->from = WB_FROM_END;
		} else if (parse_uint(v, &t->position)) {
			t->from = WB_FROM_POSITION;
		} else {
			usage_error("--from takes start, end or a position, not \"%s\"", v);
			return OPT_BAD;
		}
		return OPT_YES;
	}
	return OPT_NO;
}

static int target_check(const char *cmd, const struct target_args *t, bool ledger_ok)
{
	if (!t->target_set)
		return usage_error("%s needs --all or --stream S%s", cmd,
		                   ledger_ok ? " or --ledger" : "");
	if (t->target != WB_TARGET_ALL && (t->prefix != NULL || t->ntypes != 0))
		return usage_error("--stream-prefix and --type filter --all only");
	return 0;
}

/* Prints one pushed item. Returns true when it used a credit (an event or
 * an entry). */
static bool print_item(const struct cli *cli, const Whizbang__V1__SubscriptionItem *it, char **buf,
                       size_t *cap, struct tbuf *xb)
{
	switch (it->item_case) {
	case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT:
		print_recorded(cli, it->event, it->delivery, NULL);
		return true;
	case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_ENTRY:
		print_entry(cli, it->entry, CLI_LEDGER_IDS, buf, cap, xb);
		return true;
	case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP:
		if (cli->json)
			printf("{\"caught_up\":true,\"subscription\":%" PRIu64 "}\n",
			       it->subscription);
		else
			puts("-- caught up: live from here --");
		return false;
	default:
		return false;
	}
}

static int cmd_subscribe(struct cli *cli, int argc, char **argv, int i)
{
	struct target_args t = {0};
	t.types = calloc((size_t)argc, sizeof(*t.types));
	if (t.types == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the arguments");
	uint32_t credits = CLI_DEFAULT_CREDITS;
	uint64_t count = 0;
	int rc = EXIT_USAGE;
	for (; i < argc; i++) {
		const char *v;
		int r = target_option(&t, true, argc, argv, &i);
		if (r == OPT_NO && (r = match_value("--credits", argc, argv, &i, &v)) == OPT_YES &&
		    (!parse_u32(v, &credits) || credits == 0)) {
			usage_error("--credits needs a number from 1, not \"%s\"", v);
			goto out;
		}
		if (r == OPT_NO && (r = match_value("--count", argc, argv, &i, &v)) == OPT_YES &&
		    !parse_uint(v, &count)) {
			usage_error("--count needs a number, not \"%s\"", v);
			goto out;
		}
		if (r == OPT_NO && (r = common_arg(cli, "subscribe", argc, argv, &i)) == OPT_NO) {
			usage_error("subscribe takes no argument \"%s\"", argv[i]);
			goto out;
		}
		if (r == OPT_BAD)
			goto out;
	}
	rc = target_check("subscribe", &t, true);
	if (rc != 0)
		goto out;
	rc = connect_server(cli);
	if (rc != 0)
		goto out;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct wb_subscribe_args args = {
	        .target = t.target,
	        .stream = t.stream,
	        .from = t.from,
	        .position = t.position,
	        .stream_prefix = t.prefix,
	        .types = t.types,
	        .ntypes = t.ntypes,
	        .credits = credits,
	};
	uint64_t sub;
	rc = wb_subscribe(cli->client, &args, &sub);
	if (rc != 0) {
		rc = report_client(cli, rc);
		goto out;
	}
	/* The window: credits are given back in halves, so that the server
	 * always has about credits items it may send. */
	uint32_t used = 0, refill = credits / 2 != 0 ? credits / 2 : 1;
	uint64_t printed = 0;
	char *buf = NULL;
	size_t cap = 0;
	struct tbuf xb = {0};
	while (!interrupted && (count == 0 || printed < count)) {
		Whizbang__V1__SubscriptionItem *it;
		rc = wb_next_item(cli->client, CLI_POLL_MS, &it);
		if (rc == WB_E_TIMEOUT)
			continue;
		if (rc != 0)
			break;
		if (print_item(cli, it, &buf, &cap, &xb)) {
			used++;
			printed++;
		}
		wb_item_free(it);
		fflush(stdout);
		if (used >= refill && (count == 0 || printed < count)) {
			rc = wb_credit(cli->client, sub, used);
			if (rc != 0)
				break;
			used = 0;
		}
	}
	free(buf);
	free(xb.p);
	if (rc == 0 || rc == WB_E_TIMEOUT)
		rc = wb_unsubscribe(cli->client, sub);
	rc = rc != 0 ? report_client(cli, rc) : 0;
out:
	free(t.types);
	return rc;
}

static const char *target_name(Whizbang__V1__SubscriptionTarget t)
{
	switch (t) {
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL:
		return "all";
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM:
		return "stream";
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER:
		return "ledger";
	default:
		return "unknown";
	}
}

static void print_consumer(const struct cli *cli, const Whizbang__V1__ConsumerInfo *ci)
{
	static const Whizbang__V1__ConsumerConfig none = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	const Whizbang__V1__ConsumerConfig *cfg = ci->config != NULL ? ci->config : &none;
	if (cli->json) {
		fputs("{\"name\":", stdout);
		json_cstr(cfg->name);
		printf(",\"target\":\"%s\"", target_name(cfg->target));
		if (cfg->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM) {
			fputs(",\"stream\":", stdout);
			json_cstr(cfg->stream);
		}
		if (cfg->stream_prefix[0] != '\0') {
			fputs(",\"stream_prefix\":", stdout);
			json_cstr(cfg->stream_prefix);
		}
		fputs(",\"types\":[", stdout);
		for (size_t k = 0; k < cfg->n_event_types; k++) {
			if (k != 0)
				putchar(',');
			json_cstr(cfg->event_types[k]);
		}
		printf("],\"ack_timeout_ms\":%" PRIu64
		       ",\"max_deliveries\":%u,\"checkpoint\":%" PRIu64 ",\"members\":%" PRIu64
		       ",\"in_flight\":%" PRIu64 ",\"parked\":%" PRIu64 ",\"delivered\":%" PRIu64
		       ",\"acked\":%" PRIu64 ",\"redelivered\":%" PRIu64 "}\n",
		       cfg->ack_timeout_ms, cfg->max_deliveries, ci->checkpoint, ci->members,
		       ci->in_flight, ci->parked, ci->delivered, ci->acked, ci->redelivered);
		return;
	}
	put_cstr(cfg->name);
	printf("  %s", target_name(cfg->target));
	if (cfg->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM) {
		putchar(' ');
		put_cstr(cfg->stream);
	}
	if (cfg->stream_prefix[0] != '\0') {
		fputs(" prefix=", stdout);
		put_cstr(cfg->stream_prefix);
	}
	for (size_t k = 0; k < cfg->n_event_types; k++) {
		fputs(k == 0 ? " types=" : ",", stdout);
		put_cstr(cfg->event_types[k]);
	}
	char ack[40];
	format_duration_ms(cfg->ack_timeout_ms, ack);
	printf("  ack_timeout=%s max_deliveries=%u  checkpoint=%" PRIu64 " members=%" PRIu64
	       " in_flight=%" PRIu64 " parked=%" PRIu64 " delivered=%" PRIu64 " acked=%" PRIu64
	       " redelivered=%" PRIu64 "\n",
	       ack, cfg->max_deliveries, ci->checkpoint, ci->members, ci->in_flight, ci->parked,
	       ci->delivered, ci->acked, ci->redelivered);
}

static int consumer_create(struct cli *cli, int argc, char **argv, int i)
{
	struct target_args t = {0};
	t.types = calloc((size_t)argc, sizeof(*t.types));
	if (t.types == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the arguments");
	const char *name = NULL;
	uint64_t ack_ms = 0;
	uint32_t max_del = 0;
	int rc = EXIT_USAGE;
	for (; i < argc; i++) {
		const char *v;
		if (!is_option(argv[i])) {
			if (name != NULL) {
				usage_error("consumer create takes one NAME, not also \"%s\"",
				            argv[i]);
				goto out;
			}
			name = argv[i];
			continue;
		}
		int r = target_option(&t, false, argc, argv, &i);
		if (r == OPT_NO &&
		    (r = match_value("--ack-timeout", argc, argv, &i, &v)) == OPT_YES &&
		    !parse_duration_ms(v, &ack_ms)) {
			usage_error("--ack-timeout needs a duration (30s, 500ms, 2m), not \"%s\"",
			            v);
			goto out;
		}
		if (r == OPT_NO &&
		    (r = match_value("--max-deliveries", argc, argv, &i, &v)) == OPT_YES &&
		    (!parse_u32(v, &max_del) || max_del == 0)) {
			usage_error("--max-deliveries needs a number from 1, not \"%s\"", v);
			goto out;
		}
		if (r == OPT_NO &&
		    (r = common_arg(cli, "consumer create", argc, argv, &i)) == OPT_NO)
			r = OPT_BAD;
		if (r == OPT_BAD)
			goto out;
	}
	if (name == NULL) {
		usage_error("consumer create needs a NAME");
		goto out;
	}
	rc = target_check("consumer create", &t, false);
	if (rc != 0)
		goto out;
	rc = connect_server(cli);
	if (rc != 0)
		goto out;
	struct wb_consumer_args args = {
	        .name = name,
	        .target = t.target,
	        .stream = t.stream,
	        .stream_prefix = t.prefix,
	        .types = t.types,
	        .ntypes = t.ntypes,
	        .from = t.from,
	        .position = t.position,
	        .ack_timeout_ms = ack_ms,
	        .max_deliveries = max_del,
	};
	Whizbang__V1__ConsumerInfo *ci;
	rc = wb_create_consumer(cli->client, &args, &ci);
	if (rc != 0) {
		rc = report_client(cli, rc);
		goto out;
	}
	print_consumer(cli, ci);
	wb_consumer_info_free(ci);
out:
	free(t.types);
	return rc;
}

static int consumer_list(struct cli *cli)
{
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__ConsumerList *list;
	rc = wb_list_consumers(cli->client, &list);
	if (rc != 0)
		return report_client(cli, rc);
	for (size_t k = 0; k < list->n_consumers; k++)
		print_consumer(cli, list->consumers[k]);
	if (list->n_consumers == 0 && !cli->json)
		puts("(no consumer groups)");
	wb_consumer_list_free(list);
	return 0;
}

static int consumer_read(struct cli *cli, const char *name, int argc, char **argv, int i)
{
	uint64_t count = CLI_CONSUMER_COUNT;
	uint64_t wait_ms = CLI_CONSUMER_WAIT_MS;
	bool ack = false;
	for (; i < argc; i++) {
		const char *v;
		int r = OPT_NO;
		if (strcmp(argv[i], "--ack") == 0) {
			ack = true;
			continue;
		}
		if ((r = match_value("--count", argc, argv, &i, &v)) == OPT_YES &&
		    (!parse_uint(v, &count) || count == 0 || count > UINT32_MAX))
			return usage_error("--count needs a number from 1, not \"%s\"", v);
		if (r == OPT_NO && (r = match_value("--wait-ms", argc, argv, &i, &v)) == OPT_YES &&
		    (!parse_uint(v, &wait_ms) || wait_ms > INT32_MAX))
			return usage_error("--wait-ms needs a number of milliseconds, not \"%s\"",
			                   v);
		if (r == OPT_NO && (r = common_arg(cli, "consumer read", argc, argv, &i)) == OPT_NO)
			return usage_error("consumer read takes one NAME, not also \"%s\"",
			                   argv[i]);
		if (r == OPT_BAD)
			return EXIT_USAGE;
	}
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	uint8_t(*ids)[16] = calloc((size_t)count, 16);
	if (ids == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the event ids");
	uint64_t sub;
	rc = wb_join_consumer(cli->client, name, (uint32_t)count, &sub);
	if (rc != 0) {
		rc = report_client(cli, rc);
		goto out;
	}
	size_t n = 0;
	while (n < count) {
		Whizbang__V1__SubscriptionItem *it;
		rc = wb_next_item(cli->client, (int)wait_ms, &it);
		if (rc == WB_E_TIMEOUT) {
			rc = 0;
			break;
		}
		if (rc != 0)
			break;
		bool caught_up = it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP;
		if (it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT) {
			print_recorded(cli, it->event, it->delivery != 0 ? it->delivery : 1, NULL);
			if (it->event->id.len == 16)
				memcpy(ids[n], it->event->id.data, 16);
			n++;
		}
		wb_item_free(it);
		if (caught_up)
			break;
	}
	uint64_t checkpoint = 0;
	if (rc == 0 && ack && n != 0)
		rc = wb_ack(cli->client, name, (const uint8_t(*)[16])ids, n, &checkpoint);
	/* Leaving hands unacked events back to the group at once. */
	if (rc == 0)
		rc = wb_unsubscribe(cli->client, sub);
	if (rc != 0) {
		rc = report_client(cli, rc);
		goto out;
	}
	if (ack && n != 0) {
		if (cli->json)
			printf("{\"acked\":%zu,\"checkpoint\":%" PRIu64 "}\n", n, checkpoint);
		else
			printf("acked %zu, checkpoint %" PRIu64 "\n", n, checkpoint);
	}
out:
	free(ids);
	return rc;
}

/* consumer ack NAME ID... and consumer nack NAME ID... --action A. */
static int consumer_ack(struct cli *cli, bool nack, const char *name, int argc, char **argv, int i)
{
	const char *cmd = nack ? "consumer nack" : "consumer ack";
	uint8_t(*ids)[16] = calloc((size_t)argc, 16);
	if (ids == NULL)
		return report(cli, WB_E_NOMEM, "no memory for the event ids");
	size_t n = 0;
	const char *action = NULL, *reason = NULL;
	int rc = EXIT_USAGE;
	for (; i < argc; i++) {
		const char *v;
		if (!is_option(argv[i])) {
			if (wb_uuid_parse(argv[i], ids[n]) != 0) {
				usage_error("%s: \"%s\" is not an event id (a UUID)", cmd, argv[i]);
				goto out;
			}
			n++;
			continue;
		}
		int r = OPT_NO;
		if (nack && (r = match_value("--action", argc, argv, &i, &v)) == OPT_YES)
			action = v;
		else if (nack && r == OPT_NO &&
		         (r = match_value("--reason", argc, argv, &i, &v)) == OPT_YES)
			reason = v;
		if (r == OPT_NO && (r = common_arg(cli, cmd, argc, argv, &i)) == OPT_NO)
			r = OPT_BAD;
		if (r == OPT_BAD)
			goto out;
	}
	if (n == 0) {
		usage_error("%s needs at least one event ID", cmd);
		goto out;
	}
	enum wb_nack_action act = WB_NACK_RETRY;
	if (nack) {
		if (action == NULL) {
			usage_error("consumer nack needs --action retry|park|skip");
			goto out;
		} else if (strcmp(action, "retry") == 0) {
			act = WB_NACK_RETRY;
		} else if (strcmp(action, "park") == 0) {
			act = WB_NACK_PARK;
		} else if (strcmp(action, "skip") == 0) {
			act = WB_NACK_SKIP;
		} else {
			usage_error("--action takes retry, park or skip, not \"%s\"", action);
			goto out;
		}
	}
	rc = connect_server(cli);
	if (rc != 0)
		goto out;
	uint64_t checkpoint;
	const uint8_t(*cids)[16] = (const uint8_t(*)[16])ids;
	rc = nack ? wb_nack(cli->client, name, cids, n, act, reason, &checkpoint)
	          : wb_ack(cli->client, name, cids, n, &checkpoint);
	if (rc != 0) {
		rc = report_client(cli, rc);
		goto out;
	}
	if (cli->json)
		printf("{\"%s\":%zu,\"checkpoint\":%" PRIu64 "}\n", nack ? "nacked" : "acked", n,
		       checkpoint);
	else
		printf("%s %zu, checkpoint %" PRIu64 "\n", nack ? "nacked" : "acked", n,
		       checkpoint);
out:
	free(ids);
	return rc;
}

static int consumer_parked(struct cli *cli, const char *name)
{
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	uint64_t from = 0;
	size_t total = 0;
	for (;;) {
		Whizbang__V1__ParkedList *list;
		rc = wb_list_parked(cli->client, name, from, 0, &list);
		if (rc != 0)
			return report_client(cli, rc);
		for (size_t k = 0; k < list->n_events; k++) {
			const Whizbang__V1__ParkedEvent *p = list->events[k];
			if (p->event == NULL)
				continue;
			print_recorded(cli, p->event, p->deliveries != 0 ? p->deliveries : 1, p);
			total++;
		}
		bool end = list->end || list->n_events == 0 || list->next_position <= from;
		from = list->next_position;
		wb_parked_free(list);
		if (end)
			break;
	}
	if (total == 0 && !cli->json)
		puts("(no parked events)");
	return 0;
}

static int cmd_consumer(struct cli *cli, int argc, char **argv, int i)
{
	static const char subs[] = "create, delete, list, read, ack, nack, parked or replay-parked";
	if (i >= argc || is_option(argv[i]))
		return usage_error("consumer needs a subcommand: %s", subs);
	const char *sub = argv[i++];
	if (strcmp(sub, "create") == 0)
		return consumer_create(cli, argc, argv, i);
	if (strcmp(sub, "list") == 0) {
		struct cmd_args a;
		int rc = positionals(cli, "consumer list", argc, argv, i, 0, "no arguments", &a);
		return rc != 0 ? rc : consumer_list(cli);
	}
	bool known = strcmp(sub, "delete") == 0 || strcmp(sub, "read") == 0 ||
	             strcmp(sub, "ack") == 0 || strcmp(sub, "nack") == 0 ||
	             strcmp(sub, "parked") == 0 || strcmp(sub, "replay-parked") == 0;
	if (!known)
		return usage_error("consumer has no subcommand \"%s\" (%s)", sub, subs);
	if (i >= argc || is_option(argv[i]))
		return usage_error("consumer %s needs a NAME", sub);
	const char *name = argv[i++];
	if (strcmp(sub, "read") == 0)
		return consumer_read(cli, name, argc, argv, i);
	if (strcmp(sub, "ack") == 0 || strcmp(sub, "nack") == 0)
		return consumer_ack(cli, sub[0] == 'n', name, argc, argv, i);
	struct cmd_args a;
	int rc = positionals(cli, sub, argc, argv, i, 0, "one NAME", &a);
	if (rc != 0)
		return rc;
	if (strcmp(sub, "parked") == 0)
		return consumer_parked(cli, name);
	rc = connect_server(cli);
	if (rc != 0)
		return rc;
	if (strcmp(sub, "delete") == 0) {
		rc = wb_delete_consumer(cli->client, name);
		if (rc != 0)
			return report_client(cli, rc);
		if (cli->json) {
			fputs("{\"deleted\":", stdout);
			json_cstr(name);
			fputs("}\n", stdout);
		} else {
			fputs("deleted ", stdout);
			put_cstr(name);
			putchar('\n');
		}
		return 0;
	}
	uint64_t replayed;
	rc = wb_replay_parked(cli->client, name, &replayed);
	if (rc != 0)
		return report_client(cli, rc);
	if (cli->json)
		printf("{\"replayed\":%" PRIu64 "}\n", replayed);
	else
		printf("replayed %" PRIu64 "\n", replayed);
	return 0;
}

/* ---------------------------------------------------------------- stream life cycle */

static void print_metadata(const struct cli *cli, const struct wb_stream_metadata *md,
                           bool as_fields)
{
	if (cli->json) {
		printf("%s\"max_count\":%" PRIu64 ",\"max_age_ms\":%" PRIu64
		       ",\"truncate_before\":%" PRIu64 "%s",
		       as_fields ? "," : "{", md->max_count, md->max_age_ms, md->truncate_before,
		       as_fields ? "" : "}");
		return;
	}
	char age[40];
	format_duration_ms(md->max_age_ms, age);
	if (md->max_count != 0)
		printf("max_count: %" PRIu64 "\n", md->max_count);
	else
		puts("max_count: unset");
	if (md->max_age_ms != 0)
		printf("max_age: %s\n", age);
	else
		puts("max_age: unset");
	if (md->truncate_before != 0)
		printf("truncate_before: %" PRIu64 "\n", md->truncate_before);
	else
		puts("truncate_before: unset");
}

static int cmd_stream_meta(struct cli *cli, int argc, char **argv, int i)
{
	const char *stream = NULL;
	struct wb_stream_metadata set = {0};
	bool count_set = false, age_set = false, trunc_set = false;
	bool dashdash = false;
	for (; i < argc; i++) {
		const char *v;
		if (!dashdash && strcmp(argv[i], "--") == 0) {
			dashdash = true;
			continue;
		}
		if (dashdash || !is_option(argv[i])) {
			if (stream != NULL)
				return usage_error("stream-meta takes one stream, not also \"%s\"",
				                   argv[i]);
			stream = argv[i];
			continue;
		}
		int r;
		if ((r = match_value("--max-count", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_uint(v, &set.max_count))
				return usage_error("--max-count needs a number, not \"%s\"", v);
			count_set = true;
		} else if (r == OPT_NO &&
		           (r = match_value("--max-age", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_duration_ms(v, &set.max_age_ms))
				return usage_error(
				        "--max-age needs a duration (90s, 7d), not \"%s\"", v);
			age_set = true;
		} else if (r == OPT_NO &&
		           (r = match_value("--truncate-before", argc, argv, &i, &v)) == OPT_YES) {
			if (!parse_uint(v, &set.truncate_before))
				return usage_error("--truncate-before needs a version, not \"%s\"",
				                   v);
			trunc_set = true;
		}
		if (r == OPT_NO)
			r = common_arg(cli, "stream-meta", argc, argv, &i);
		if (r == OPT_BAD)
			return EXIT_USAGE;
	}
	if (stream == NULL)
		return usage_error("stream-meta needs a STREAM");
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	struct wb_stream_metadata md;
	rc = wb_get_stream_metadata(cli->client, stream, &md);
	if (rc != 0)
		return report_client(cli, rc);
	if (count_set || age_set || trunc_set) {
		/* Options not given keep their value: the request sets every field. */
		if (count_set)
			md.max_count = set.max_count;
		if (age_set)
			md.max_age_ms = set.max_age_ms;
		if (trunc_set)
			md.truncate_before = set.truncate_before;
		rc = wb_set_stream_metadata(cli->client, stream, &md);
		if (rc != 0)
			return report_client(cli, rc);
	}
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		json_cstr(stream);
		print_metadata(cli, &md, true);
		fputs("}\n", stdout);
		return 0;
	}
	fputs("stream: ", stdout);
	put_cstr(stream);
	putchar('\n');
	print_metadata(cli, &md, false);
	return 0;
}

static int cmd_delete(struct cli *cli, int argc, char **argv, int i)
{
	const char *stream = NULL;
	bool hard = false, dashdash = false;
	for (; i < argc; i++) {
		if (!dashdash && strcmp(argv[i], "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && strcmp(argv[i], "--hard") == 0) {
			hard = true;
			continue;
		}
		if (!dashdash && is_option(argv[i])) {
			if (common_arg(cli, "delete", argc, argv, &i) == OPT_BAD)
				return EXIT_USAGE;
			continue;
		}
		if (stream != NULL)
			return usage_error("delete takes one stream, not also \"%s\"", argv[i]);
		stream = argv[i];
	}
	if (stream == NULL)
		return usage_error("delete needs a STREAM");
	int rc = connect_server(cli);
	if (rc != 0)
		return rc;
	uint64_t last;
	rc = wb_delete_stream(cli->client, stream, hard, &last);
	if (rc != 0)
		return report_client(cli, rc);
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		json_cstr(stream);
		printf(",\"hard\":%s,\"last_version\":%" PRIu64 "}\n", hard ? "true" : "false",
		       last);
		return 0;
	}
	fputs("deleted ", stdout);
	put_cstr(stream);
	printf(" (%s) at version %" PRIu64 "\n", hard ? "hard: for good" : "soft", last);
	return 0;
}

static void scavenge_progress_cb(void *arg, const struct wb_scavenge_result *p)
{
	(void)arg;
	double pct = p->last_position != 0 ? 100.0 * (double)p->position / (double)p->last_position
	                                   : 100.0;
	fprintf(stderr,
	        "\rscavenging: position %" PRIu64 " of %" PRIu64 " (%.1f%%), %" PRIu64
	        " removed, %" PRIu64 " bytes reclaimed ",
	        p->position, p->last_position, pct, p->events_removed, p->bytes_reclaimed);
	fflush(stderr);
}

static int cmd_scavenge(struct cli *cli, int argc, char **argv, int i)
{
	struct cmd_args a;
	int rc = positionals(cli, "scavenge", argc, argv, i, 0, "no arguments", &a);
	if (rc != 0)
		return rc;
	rc = connect_server(cli);
	if (rc != 0)
		return rc;
	bool tty = !cli->json && isatty(STDERR_FILENO);
	struct wb_scavenge_result res;
	rc = wb_scavenge(cli->client, tty ? scavenge_progress_cb : NULL, NULL, &res);
	if (tty)
		fputs("\r\033[K", stderr);
	if (rc != 0)
		return report_client(cli, rc);
	if (cli->json) {
		printf("{\"events_examined\":%" PRIu64 ",\"events_removed\":%" PRIu64
		       ",\"bytes_reclaimed\":%" PRIu64 ",\"micros\":%" PRIu64 "}\n",
		       res.events_examined, res.events_removed, res.bytes_reclaimed, res.micros);
		return 0;
	}
	printf("events_examined: %" PRIu64 "\nevents_removed: %" PRIu64
	       "\nbytes_reclaimed: %" PRIu64 "\ntime: %.3f s\n",
	       res.events_examined, res.events_removed, res.bytes_reclaimed,
	       (double)res.micros / 1e6);
	return 0;
}

static void backup_progress_cb(void *arg, const struct wb_backup_result *p)
{
	(void)arg;
	fprintf(stderr, "\rbacking up: %.1f MiB written in %.1f s ", (double)p->bytes / 1048576.0,
	        (double)p->micros / 1e6);
	fflush(stderr);
}

static int cmd_backup(struct cli *cli, int argc, char **argv, int i)
{
	struct cmd_args a;
	int rc = positionals(cli, "backup", argc, argv, i, 1, "one PATH", &a);
	if (rc != 0)
		return rc;
	if (a.npos != 1)
		return usage_error("backup needs a PATH: a directory on the server's machine");
	rc = connect_server(cli);
	if (rc != 0)
		return rc;
	bool tty = !cli->json && isatty(STDERR_FILENO);
	struct wb_backup_result res;
	rc = wb_backup(cli->client, a.pos[0], tty ? backup_progress_cb : NULL, NULL, &res);
	if (tty)
		fputs("\r\033[K", stderr);
	if (rc != 0)
		return report_client(cli, rc);
	if (cli->json) {
		fputs("{\"path\":", stdout);
		json_cstr(a.pos[0]);
		printf(",\"bytes\":%" PRIu64 ",\"micros\":%" PRIu64 ",\"watermark\":%" PRIu64
		       ",\"last_position\":%" PRIu64 "}\n",
		       res.bytes, res.micros, res.watermark, res.last_position);
		return 0;
	}
	fputs("path: ", stdout);
	put_cstr(a.pos[0]);
	printf("/data.mdb\nbytes: %" PRIu64 "\ntime: %.3f s\nwatermark: %" PRIu64
	       "\nlast_position: %" PRIu64 "\n",
	       res.bytes, (double)res.micros / 1e6, res.watermark, res.last_position);
	return 0;
}

static const struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv, int i);
} commands[] = {
        {"ping", cmd_ping},
        {"append", cmd_append},
        {"read", cmd_read},
        {"read-all", cmd_read_all},
        {"stream-info", cmd_stream_info},
        {"stats", cmd_stats},
        {"lease", cmd_lease},
        {"extend", cmd_extend},
        {"release", cmd_release},
        {"stage", cmd_stage},
        {"commit", cmd_commit},
        {"ledger", cmd_ledger},
        {"watermark", cmd_watermark},
        {"get", cmd_get},
        {"query", cmd_query},
        {"index", cmd_index},
        {"explain", cmd_explain},
        {"apply", cmd_apply},
        {"verify", cmd_verify},
        {"subscribe", cmd_subscribe},
        {"consumer", cmd_consumer},
        {"stream-meta", cmd_stream_meta},
        {"delete", cmd_delete},
        {"scavenge", cmd_scavenge},
        {"backup", cmd_backup},
};

int main(int argc, char **argv)
{
	struct cli cli = {
	        .server = getenv("WHIZBANG_SERVER"),
	        .json = false,
	        .timeout_ms = CLI_DEFAULT_TIMEOUT_MS,
	        .client = NULL,
	};
	if (cli.server == NULL || cli.server[0] == '\0')
		cli.server = WB_DEFAULT_ADDRESS;
	/* --help and --version win wherever they stand, except as an option's value. */
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--") == 0)
			break;
		if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
			put_usage(stdout);
			return 0;
		}
		if (strcmp(argv[k], "--version") == 0) {
			printf("whizbang %s\n", WB_VERSION);
			return 0;
		}
		/* Skip the value of an option that takes one. */
		if (strncmp(argv[k], "--", 2) == 0 && strchr(argv[k], '=') == NULL &&
		    strcmp(argv[k], "--json") != 0 && strcmp(argv[k], "--backwards") != 0 &&
		    strcmp(argv[k], "--reseq") != 0 && strcmp(argv[k], "--all") != 0 &&
		    strcmp(argv[k], "--ids") != 0 && strcmp(argv[k], "--ledger") != 0 &&
		    strcmp(argv[k], "--hard") != 0 && strcmp(argv[k], "--ack") != 0 &&
		    strcmp(argv[k], "--release-on-disconnect") != 0)
			k++;
	}
	int i = 1;
	for (; i < argc && is_option(argv[i]); i++) {
		int r = global_option(&cli, argc, argv, &i);
		if (r == OPT_BAD)
			return EXIT_USAGE;
		if (r == OPT_NO)
			return usage_error("unknown option %s", argv[i]);
	}
	if (i == argc)
		return usage_error("no command given");
	const char *name = argv[i++];
	if (strcmp(name, "help") == 0) {
		put_usage(stdout);
		return 0;
	}
	const struct command *cmd = NULL;
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (strcmp(commands[k].name, name) == 0)
			cmd = &commands[k];
	if (cmd == NULL)
		return usage_error("unknown command \"%s\"", name);
	int rc = cmd->run(&cli, argc, argv, i);
	wb_close(cli.client);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "error: %s: writing the output failed\n", wb_error_name(WB_E_IO));
		return EXIT_FAILURE;
	}
	return rc;
}
