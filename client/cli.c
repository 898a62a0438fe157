/* whizbang: the command-line client of whizbangd, built on libwhizbang.
 *
 * One invocation is one connection and one command. Output is one line per
 * item, as text for people or, with --json, one JSON object per line for
 * programs. Exit status: 0 on success, 1 when the command failed (the reason
 * goes to stderr as "error: CODE: message"), 2 for a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"
#include "wb.h"
#include "wb_version.h"

#define CLI_DEFAULT_TIMEOUT_MS 30000
/* Human output shortens data to this many characters, or bytes as hex. */
#define CLI_TEXT_MAX 80u
#define CLI_HEX_MAX 32u
#define CLI_FALLBACK_EVENT_MAX (64u << 20)

enum { EXIT_USAGE = 2 };

/* Results of matching one argument against an option. */
enum { OPT_NO = 0, OPT_YES = 1, OPT_BAD = -1 };

struct cli {
	const char *server;
	bool json;
	int timeout_ms;
	struct wb_client *client;
};

static const char usage_text[] =
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
        "  stream-info STREAM      print a stream's versions, positions and times\n"
        "  stats                   print the server's figures\n"
        "  help                    print this text\n"
        "\n"
        "Options (before or after the command):\n"
        "  --server HOST:PORT      the server (default: $WHIZBANG_SERVER, else " WB_DEFAULT_ADDRESS
        ")\n"
        "  --json                  print one JSON object per line\n"
        "  --timeout-ms N          per-call timeout (default 30000; 0 waits forever)\n"
        "  --version               print the version\n"
        "\n"
        "@FILE reads a value from FILE, @- from standard input.\n";

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("whizbang: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	fputs(usage_text, stderr);
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

static bool parse_u64(const char *s, uint64_t *out)
{
	if (s[0] < '0' || s[0] > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
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
		if (!parse_u64(v, &n) || n > INT32_MAX) {
			usage_error("--timeout-ms needs a number of milliseconds, not \"%s\"", v);
			return OPT_BAD;
		}
		cli->timeout_ms = (int)n;
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
	else if (parse_u64(v, version))
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

static void print_event(const struct cli *cli, const struct wb_event *e)
{
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
		fputs("}\n", stdout);
		return;
	}
	printf("%" PRIu64 "  ", e->position);
	put_cstr(e->stream);
	printf("@%" PRIu64 "  ", e->version);
	put_cstr(e->type);
	printf("  %s  %s  ", id, ts);
	put_data(e->data, e->data_len);
	putchar('\n');
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
		if (r == OPT_YES && !parse_u64(v, &ra->from)) {
			usage_error("--from needs a number, not \"%s\"", v);
			return OPT_BAD;
		}
		ra->from_set = true;
		return r;
	}
	if ((r = match_value("--limit", argc, argv, i, &v)) != OPT_NO) {
		if (r == OPT_YES && !parse_u64(v, &ra->limit)) {
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
		       ",\"created\":\"%s\",\"updated\":\"%s\"}\n",
		       si.last_version, si.event_count, si.first_position, si.last_position,
		       si.created_us, si.updated_us, created, updated);
		return 0;
	}
	fputs("stream: ", stdout);
	put_cstr(stream);
	printf("\nlast_version: %" PRIu64 "\nevent_count: %" PRIu64 "\nfirst_position: %" PRIu64
	       "\nlast_position: %" PRIu64 "\ncreated: %s\nupdated: %s\n",
	       si.last_version, si.event_count, si.first_position, si.last_position, created,
	       updated);
	return 0;
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

static const struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv, int i);
} commands[] = {
        {"ping", cmd_ping},         {"append", cmd_append},           {"read", cmd_read},
        {"read-all", cmd_read_all}, {"stream-info", cmd_stream_info}, {"stats", cmd_stats},
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
			fputs(usage_text, stdout);
			return 0;
		}
		if (strcmp(argv[k], "--version") == 0) {
			printf("whizbang %s\n", WB_VERSION);
			return 0;
		}
		/* Skip the value of an option that takes one. */
		if (strncmp(argv[k], "--", 2) == 0 && strchr(argv[k], '=') == NULL &&
		    strcmp(argv[k], "--json") != 0 && strcmp(argv[k], "--backwards") != 0)
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
		fputs(usage_text, stdout);
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
