/* The CLI's event commands: ping, append, read, read-all. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parse.h"

/* An event's limit when the server announces none. */
#define CLI_FALLBACK_EVENT_MAX (64u << 20)

static int run_ping(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = wb_ping(cli->client);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc != 0)
		return cli_report_client(cli, rc);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	if (cli->json)
		printf("{\"pong\":true,\"ms\":%.3f}\n", ms);
	else
		printf("pong (%.3f ms)\n", ms);
	return 0;
}

/* ---------------------------------------------------------------- append */

struct expected {
	enum wb_expected how;
	uint64_t version;
};

/* any, no-stream, exists, or a version N. */
static int parse_expected(const char *v, void *field)
{
	static const struct cli_word words[] = {
	        {"any", WB_EXPECT_ANY},
	        {"no-stream", WB_EXPECT_NO_STREAM},
	        {"exists", WB_EXPECT_EXISTS},
	        {NULL, 0},
	};
	struct expected *e = field;
	int how = WB_EXPECT_EXACT;
	if (cli_word(v, words, &how) != 0 && parse_u64(v, PARSE_INTEGER, &e->version) != 0)
		return WB_E_INVAL;
	e->how = (enum wb_expected)how;
	return 0;
}

struct append_args {
	struct cli_list types, datas, metas, ids;
	struct expected expected;
};

static const struct cli_opt append_opts[] = {
        {"--type", "T", CLI_TEXTS_AT(struct append_args, types), .required = true,
         .help = "the event type: once for all events, or once per --data"},
        {"--data", "STRING|@FILE", CLI_TEXTS_AT(struct append_args, datas), .required = true,
         .help = "the event's data; repeat it to append several events atomically"},
        {"--metadata", "STRING|@FILE", CLI_TEXTS_AT(struct append_args, metas),
         .help = "the event's metadata: once for all events, or once per --data"},
        {"--expected-version", "any|no-stream|exists|N",
         CLI_PARSE_AT(struct append_args, expected, parse_expected), .dflt = "any",
         .bad = "takes any, no-stream, exists or a version",
         .help = "what the stream must be for the append to succeed: anything, absent, "
                 "present, or at version N"},
        {"--id", "UUID", CLI_TEXTS_AT(struct append_args, ids),
         .help = "the event's id, once per --data (default: the server makes a UUIDv7)"},
        {0},
};

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
			return cli_report(cli, WB_E_INVAL,
			                  "standard input (@-) can be read only once");
		*stdin_used = true;
		f = stdin;
	} else {
		f = fopen(path, "rb");
		if (f == NULL)
			return cli_reportf(cli, WB_E_IO, "cannot open %s: %s", path,
			                   strerror(errno));
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
			if (ncap == cap)
				break;
			uint8_t *p = realloc(buf, ncap);
			if (p == NULL) {
				rc = cli_report(cli, WB_E_NOMEM, "no memory to read the file");
				goto err_after_open;
			}
			buf = p;
			cap = ncap;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				rc = cli_reportf(cli, WB_E_IO, "cannot read %s: %s", path,
				                 strerror(errno));
				goto err_after_open;
			}
			break;
		}
	}
	if (len > limit) {
		rc = cli_reportf(cli, WB_E_INVAL,
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

/* The events of an append, once their --data, --metadata and --id are
 * read. */
struct batch {
	struct value *values;
	size_t nvalues;
	struct wb_new_event *events;
	uint8_t (*ids)[16];
};

static void batch_free(struct batch *b)
{
	for (size_t k = 0; b->values != NULL && k < b->nvalues; k++)
		free(b->values[k].owned);
	free(b->values);
	free(b->events);
	free(b->ids);
}

static void put_appended(const struct cli *cli, const char *stream, size_t n,
                         const struct wb_append_result *res)
{
	uint64_t first_version = res->stream_version >= n - 1 ? res->stream_version - (n - 1) : 0;
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		cli_json_cstr(stream);
		printf(",\"first_version\":%" PRIu64 ",\"version\":%" PRIu64
		       ",\"first_position\":%" PRIu64 ",\"position\":%" PRIu64
		       ",\"idempotent_replay\":%s}\n",
		       first_version, res->stream_version, res->first_position, res->last_position,
		       res->idempotent_replay ? "true" : "false");
		return;
	}
	fputs("appended ", stdout);
	cli_put_cstr(stream);
	if (n == 1)
		printf(" version=%" PRIu64 " position=%" PRIu64, res->stream_version,
		       res->last_position);
	else
		printf(" versions=%" PRIu64 "..%" PRIu64 " positions=%" PRIu64 "..%" PRIu64,
		       first_version, res->stream_version, res->first_position, res->last_position);
	puts(res->idempotent_replay ? " (idempotent replay: already stored)" : "");
}

static int run_append(struct cli *cli)
{
	const struct append_args *a = cli->args;
	const char *stream = cli->pos.v[0];
	size_t n = a->datas.n, nmetas = a->metas.n;
	if ((a->types.n != 1 && a->types.n != n) || (nmetas > 1 && nmetas != n) ||
	    (a->ids.n != 0 && a->ids.n != n))
		return cli_usage_error(cli,
		                       "with %zu --data, give --type and --metadata once or %zu "
		                       "times, and --id never or %zu times",
		                       n, n, n);
	struct batch b = {.nvalues = n + nmetas};
	b.ids = calloc(n, sizeof(*b.ids));
	b.values = calloc(n + nmetas, sizeof(*b.values));
	b.events = calloc(n, sizeof(*b.events));
	int rc = 0;
	if (b.ids == NULL || b.values == NULL || b.events == NULL) {
		rc = cli_report(cli, WB_E_NOMEM, "no memory for the events");
		goto out;
	}
	for (size_t k = 0; k < a->ids.n; k++) {
		if (wb_uuid_parse(a->ids.v[k], b.ids[k]) != 0) {
			rc = cli_usage_error(cli,
			                     "--id takes a UUID such as "
			                     "0190f5c4-6a2b-7cde-8f01-23456789abcd, not \"%s\"",
			                     a->ids.v[k]);
			goto out;
		}
	}
	rc = cli_connect(cli);
	if (rc != 0)
		goto out;
	const struct wb_server_info *info = wb_server_info(cli->client);
	size_t limit = info->max_event_size;
	if (limit == 0)
		limit = info->max_frame > 1024 ? info->max_frame - 1024u : CLI_FALLBACK_EVENT_MAX;
	bool stdin_used = false;
	for (size_t k = 0; k < n + nmetas; k++) {
		const char *spec = k < n ? a->datas.v[k] : a->metas.v[k - n];
		rc = load_value(cli, spec, limit, &stdin_used, &b.values[k]);
		if (rc != 0)
			goto out;
	}
	for (size_t k = 0; k < n; k++) {
		b.events[k].id = a->ids.n != 0 ? b.ids[k] : NULL;
		b.events[k].type = a->types.v[a->types.n == 1 ? 0 : k];
		b.events[k].data = b.values[k].bytes;
		b.events[k].data_len = b.values[k].len;
		if (nmetas != 0) {
			const struct value *m = &b.values[n + (nmetas == 1 ? 0 : k)];
			b.events[k].metadata = m->bytes;
			b.events[k].metadata_len = m->len;
		}
	}
	struct wb_append_result res;
	rc = wb_append(cli->client, stream, a->expected.how, a->expected.version, b.events, n,
	               &res);
	if (rc != 0) {
		rc = cli_report_client(cli, rc);
		goto out;
	}
	put_appended(cli, stream, n, &res);
out:
	batch_free(&b);
	return rc;
}

/* ---------------------------------------------------------------- reading */

void cli_print_event(const struct cli *cli, const struct wb_event *e, uint32_t delivery,
                     const Whizbang__V1__ParkedEvent *parked)
{
	char when[40] = "";
	if (parked != NULL)
		cli_format_time(parked->parked_at_us, when);
	char id[37], ts[40];
	wb_uuid_format(e->id, id);
	cli_format_time(e->timestamp_us, ts);
	if (cli->json) {
		printf("{\"id\":\"%s\",\"stream\":", id);
		cli_json_cstr(e->stream);
		printf(",\"version\":%" PRIu64 ",\"position\":%" PRIu64 ",\"type\":", e->version,
		       e->position);
		cli_json_cstr(e->type);
		printf(",\"timestamp\":\"%s\"", ts);
		cli_json_bytes("data", e->data, e->data_len);
		cli_json_bytes("metadata", e->metadata, e->metadata_len);
		if (delivery != 0)
			printf(",\"delivery\":%u", delivery);
		if (parked != NULL) {
			printf(",\"parked_at\":\"%s\",\"reason\":", when);
			cli_json_cstr(parked->reason);
		}
		fputs("}\n", stdout);
		return;
	}
	printf("%" PRIu64 "  ", e->position);
	cli_put_cstr(e->stream);
	printf("@%" PRIu64 "  ", e->version);
	cli_put_cstr(e->type);
	printf("  %s  %s  ", id, ts);
	cli_put_data(e->data, e->data_len);
	if (delivery != 0)
		printf("  delivery=%u", delivery);
	if (parked != NULL) {
		printf("  parked %s", when);
		if (parked->reason[0] != '\0') {
			fputs(": ", stdout);
			cli_put_cstr(parked->reason);
		}
	}
	putchar('\n');
}

void cli_print_recorded(const struct cli *cli, const Whizbang__V1__RecordedEvent *r,
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
	cli_print_event(cli, &e, delivery, parked);
}

/* The arguments of read and read-all (which alone takes the filters). */
struct read_args {
	bool backwards;
	bool from_set;
	uint64_t from;
	bool limit_set;
	uint64_t limit;
	const char *prefix;
	struct cli_list types;
};

/* read-all's options; read takes the last three, without the filters. */
static const struct cli_opt read_all_opts[] = {
        {"--stream-prefix", "S", CLI_TEXT_AT(struct read_args, prefix),
         .help = "only events of streams whose names start with S"},
        {"--type", "T", CLI_TEXTS_AT(struct read_args, types),
         .help = "only events of type T (repeat it for several types)"},
        {"--from", "N", CLI_UINT_AT(struct read_args, from, 0, UINT64_MAX),
         CLI_GIVEN(struct read_args, from_set),
         .help = "start at N, a version of the stream or a position of the log (default: the "
                 "first, or the last with --backwards)"},
        {"--backwards", NULL, CLI_FLAG_AT(struct read_args, backwards),
         .help = "read towards the start"},
        {"--limit", "N", CLI_UINT_AT(struct read_args, limit, 0, UINT64_MAX),
         CLI_GIVEN(struct read_args, limit_set),
         .help = "print at most N events (default: all of them, page after page)"},
        {0},
};
/* Reads page after page of stream (NULL: $all) until the end, or until
 * --limit events are printed. */
static int read_pages(struct cli *cli, const char *stream, const struct read_args *ra)
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
		int rc = stream != NULL ? wb_read_stream(cli->client, stream, from, ra->backwards,
		                                         want, &page)
		                        : wb_read_all(cli->client, from, ra->backwards, want,
		                                      ra->prefix, ra->types.v, ra->types.n, &page);
		if (rc != 0)
			return cli_report_client(cli, rc);
		for (size_t k = 0; k < page.count; k++) {
			if (ra->limit_set && printed == ra->limit)
				break;
			cli_print_event(cli, &page.events[k], 0, NULL);
			printed++;
		}
		bool stuck = page.count == 0 && !page.end && page.next == from;
		bool end = page.end;
		from = page.next;
		wb_page_free(&page);
		if (end)
			return 0;
		if (stuck)
			return cli_reportf(
			        cli, WB_INTERNAL,
			        "the server answered an empty page that does not advance "
			        "(next is %" PRIu64 ")",
			        from);
	}
}

static int run_read(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	return read_pages(cli, cli->pos.n != 0 ? cli->pos.v[0] : NULL, cli->args);
}

const struct cli_command cli_event_commands[] = {
        {.name = "ping", .run = run_ping, .help = "measure a round trip to the server"},
        {.name = "append",
         CLI_ONE_STREAM,
         CLI_OPTS(append_opts, struct append_args),
         .run = run_append,
         .help = "append an event; repeat --data to append several atomically (--type, "
                 "--metadata and --id then once for all or once per event)"},
        {.name = "read",
         CLI_ONE_STREAM,
         CLI_OPTS(read_all_opts + 2, struct read_args),
         .run = run_read,
         .help = "print a stream's events (all of them without --limit)"},
        {.name = "read-all",
         CLI_OPTS(read_all_opts, struct read_args),
         .run = run_read,
         .help = "print the global log, optionally filtered"},
        {0},
};
