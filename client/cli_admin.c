/* The CLI's commands on streams and the server: stream-info, stream-meta,
 * delete, scavenge, stats, backup. */
#include "cli.h"

#include <inttypes.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"

/* ---------------------------------------------------------------- streams */

/* A stream's metadata: an object (or, with as_fields, its fields after a
 * comma) for programs, one field a line for people. */
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
	parse_format(PARSE_DURATION, md->max_age_ms, age, sizeof(age));
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

static int run_stream_info(struct cli *cli)
{
	const char *stream = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	struct wb_stream_info si;
	rc = wb_stream_info(cli->client, stream, &si);
	if (rc != 0)
		return cli_report_client(cli, rc);
	char created[40], updated[40];
	cli_format_time(si.created_us, created);
	cli_format_time(si.updated_us, updated);
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		cli_json_cstr(stream);
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
	cli_put_cstr(stream);
	printf("\nlast_version: %" PRIu64 "\nevent_count: %" PRIu64 "\nfirst_position: %" PRIu64
	       "\nlast_position: %" PRIu64 "\ncreated: %s\nupdated: %s\n",
	       si.last_version, si.event_count, si.first_position, si.last_position, created,
	       updated);
	printf("deleted: %s\ntombstoned: %s\n", si.deleted ? "yes" : "no",
	       si.tombstoned ? "yes" : "no");
	print_metadata(cli, &si.metadata, false);
	return 0;
}

struct meta_args {
	struct wb_stream_metadata set;
	bool count_set, age_set, trunc_set;
};

static const struct cli_opt stream_meta_opts[] = {
        {"--max-count", "N", CLI_UINT_AT(struct meta_args, set.max_count, 0, UINT64_MAX),
         CLI_GIVEN(struct meta_args, count_set),
         .help = "only the last N events are readable (0 unsets it)"},
        {"--max-age", "DUR", CLI_DURATION_AT(struct meta_args, set.max_age_ms, 0, UINT64_MAX),
         CLI_GIVEN(struct meta_args, age_set), .bad = "needs a duration (90s, 7d)",
         .help = "only events younger than DUR are readable (0 unsets it)"},
        {"--truncate-before", "V",
         CLI_UINT_AT(struct meta_args, set.truncate_before, 0, UINT64_MAX),
         CLI_GIVEN(struct meta_args, trunc_set), .bad = "needs a version",
         .help = "events below version V are not readable (0 unsets it)"},
        {0},
};

static int run_stream_meta(struct cli *cli)
{
	const struct meta_args *a = cli->args;
	const char *stream = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	struct wb_stream_metadata md;
	rc = wb_get_stream_metadata(cli->client, stream, &md);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (a->count_set || a->age_set || a->trunc_set) {
		/* Options not given keep their value: the request sets every field. */
		if (a->count_set)
			md.max_count = a->set.max_count;
		if (a->age_set)
			md.max_age_ms = a->set.max_age_ms;
		if (a->trunc_set)
			md.truncate_before = a->set.truncate_before;
		rc = wb_set_stream_metadata(cli->client, stream, &md);
		if (rc != 0)
			return cli_report_client(cli, rc);
	}
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		cli_json_cstr(stream);
		print_metadata(cli, &md, true);
		fputs("}\n", stdout);
		return 0;
	}
	fputs("stream: ", stdout);
	cli_put_cstr(stream);
	putchar('\n');
	print_metadata(cli, &md, false);
	return 0;
}

struct delete_args {
	bool hard;
};

static const struct cli_opt delete_opts[] = {
        {"--hard", NULL, CLI_FLAG_AT(struct delete_args, hard),
         .help = "delete it for good: appends and reads answer STREAM_DELETED from now on"},
        {0},
};

static int run_delete(struct cli *cli)
{
	bool hard = ((const struct delete_args *)cli->args)->hard;
	const char *stream = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	uint64_t last;
	rc = wb_delete_stream(cli->client, stream, hard, &last);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		fputs("{\"stream\":", stdout);
		cli_json_cstr(stream);
		printf(",\"hard\":%s,\"last_version\":%" PRIu64 "}\n", hard ? "true" : "false",
		       last);
		return 0;
	}
	fputs("deleted ", stdout);
	cli_put_cstr(stream);
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

static int run_scavenge(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	bool tty = !cli->json && isatty(STDERR_FILENO);
	struct wb_scavenge_result res;
	rc = wb_scavenge(cli->client, tty ? scavenge_progress_cb : NULL, NULL, &res);
	if (tty)
		fputs("\r\033[K", stderr);
	if (rc != 0)
		return cli_report_client(cli, rc);
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

/* ---------------------------------------------------------------- the server */

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
			cli_json_cstr(p->projection);
			printf(",\"leases_active\":%" PRIu64 ",\"committed\":%" PRIu64
			       ",\"released\":%" PRIu64 ",\"expired\":%" PRIu64
			       ",\"recovered\":%" PRIu64 ",\"efficiency\":%s"
			       ",\"adaptive_duration_ms\":%" PRIu64 ",\"entries_waiting\":%" PRIu64
			       ",\"apply_wait_ms_mean\":%s,\"apply_wait_ms_max\":%" PRIu64
			       ",\"gaps\":%" PRIu64 ",\"lease_overrun\":%" PRIu64 ",\"health\":",
			       p->leases_active, p->committed, p->released, p->expired,
			       p->recovered, eff, p->adaptive_duration_ms, p->entries_waiting, wait,
			       p->apply_wait_ms_max, p->gaps, p->lease_overrun);
			cli_json_cstr(health);
			fputs(",\"health_reason\":", stdout);
			cli_json_cstr(reason);
			putchar('}');
			continue;
		}
		fputs("projection ", stdout);
		cli_put_cstr(p->projection);
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
			cli_put_cstr(reason);
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
				cli_json_cstr(text);
			else
				fputs(num, stdout);
		} else {
			printf("%s: ", f->name);
			if (text != NULL)
				cli_put_cstr(text);
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

static int run_stats(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__ServerStats *s;
	rc = wb_stats(cli->client, &s);
	if (rc != 0)
		return cli_report_client(cli, rc);
	print_stats(cli, s);
	wb_stats_free(s);
	return 0;
}

static int run_reload(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	bool tls;
	int64_t not_after;
	rc = wb_reload(cli->client, &tls, &not_after);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json)
		printf("{\"tls\":%s,\"tls_not_after\":%" PRId64 "}\n", tls ? "true" : "false",
		       not_after);
	else if (!tls)
		printf("reloaded: the server serves no TLS certificate (nothing to load)\n");
	else
		printf("reloaded: the TLS certificate served now expires at %" PRId64
		       " (seconds since the epoch), in %" PRId64 " days\n",
		       not_after, (not_after - (int64_t)time(NULL)) / 86400);
	return 0;
}

static int run_clients(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__ClientList *l;
	rc = wb_list_clients(cli->client, &l);
	if (rc != 0)
		return cli_report_client(cli, rc);
	for (size_t i = 0; i < l->n_clients; i++) {
		const Whizbang__V1__ClientInfo *ci = l->clients[i];
		double age_s = (double)ci->age_ms / 1000.0;
		double rate = age_s > 0 ? (double)ci->requests / age_s : 0;
		if (cli->json) {
			printf("{\"id\":%" PRIu64 ",\"peer\":", ci->id);
			cli_json_cstr(ci->peer);
			fputs(",\"client_name\":", stdout);
			cli_json_cstr(ci->client_name);
			fputs(",\"user\":", stdout);
			cli_json_cstr(ci->user);
			fputs(",\"identity\":", stdout);
			cli_json_cstr(ci->identity);
			fputs(",\"roles\":[", stdout);
			for (size_t r = 0; r < ci->n_roles; r++) {
				if (r > 0)
					putchar(',');
				cli_json_cstr(ci->roles[r]);
			}
			printf("],\"tls\":%s,\"unix_socket\":%s,\"age_ms\":%" PRIu64
			       ",\"idle_ms\":%" PRIu64 ",\"requests\":%" PRIu64
			       ",\"requests_per_s\":%.1f,\"bytes_in\":%" PRIu64
			       ",\"bytes_out\":%" PRIu64 ",\"input_buffer\":%" PRIu64
			       ",\"output_buffer\":%" PRIu64 ",\"queued_reads\":%" PRIu64
			       ",\"writes\":%" PRIu64 ",\"memory\":%" PRIu64
			       ",\"in_flight\":%" PRIu64
			       ",\"subscriptions\":%u,\"leases\":%u,\"consumers\":%u,"
			       "\"quota_pauses\":%" PRIu64 ",\"self\":%s}\n",
			       ci->tls ? "true" : "false", ci->unix_socket ? "true" : "false",
			       ci->age_ms, ci->idle_ms, ci->requests, rate, ci->bytes_in,
			       ci->bytes_out, ci->input_buffer, ci->output_buffer, ci->queued_reads,
			       ci->writes, ci->memory, ci->in_flight, ci->subscriptions, ci->leases,
			       ci->consumers, ci->quota_pauses, ci->self ? "true" : "false");
			continue;
		}
		printf("%" PRIu64 "%s  ", ci->id, ci->self ? "*" : "");
		cli_put_cstr(ci->peer);
		fputs("  user=", stdout);
		cli_put_cstr(ci->user[0] != '\0' ? ci->user : "-");
		fputs("  roles=", stdout);
		for (size_t r = 0; r < ci->n_roles; r++) {
			if (r > 0)
				putchar(',');
			cli_put_cstr(ci->roles[r]);
		}
		if (ci->n_roles == 0)
			putchar('-');
		fputs("  identity=", stdout);
		cli_put_cstr(ci->identity[0] != '\0' ? ci->identity : "-");
		if (ci->quota_pauses > 0)
			printf("  quota_pauses=%" PRIu64, ci->quota_pauses);
		printf("%s  age=%.1fs  idle=%.1fs  requests=%" PRIu64 " (%.1f/s)  in=%" PRIu64
		       "B  out=%" PRIu64 "B  buffers=%" PRIu64 "B/%" PRIu64 "B  reads=%" PRIu64
		       "B  writes=%" PRIu64 "B  held=%" PRIu64 "B  in_flight=%" PRIu64
		       "  subscriptions=%u  leases=%u  consumers=%u",
		       ci->tls           ? "  tls"
		       : ci->unix_socket ? "  unix"
		                         : "",
		       age_s, (double)ci->idle_ms / 1000.0, ci->requests, rate, ci->bytes_in,
		       ci->bytes_out, ci->input_buffer, ci->output_buffer, ci->queued_reads,
		       ci->writes, ci->memory, ci->in_flight, ci->subscriptions, ci->leases,
		       ci->consumers);
		if (ci->client_name[0] != '\0') {
			fputs("  name=", stdout);
			cli_put_cstr(ci->client_name);
		}
		putchar('\n');
	}
	wb_client_list_free(l);
	return 0;
}

static int run_disconnect(struct cli *cli)
{
	uint64_t id;
	if (parse_u64(cli->pos.v[0], PARSE_INTEGER, &id) != 0)
		return cli_usage_error(cli, "disconnect needs a connection id, not \"%s\"",
		                       cli->pos.v[0]);
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = wb_disconnect(cli->client, id);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json)
		printf("{\"disconnected\":%" PRIu64 "}\n", id);
	else
		printf("disconnected %" PRIu64 "\n", id);
	return 0;
}

static void backup_progress_cb(void *arg, const struct wb_backup_result *p)
{
	(void)arg;
	fprintf(stderr, "\rbacking up: %.1f MiB written in %.1f s ", (double)p->bytes / 1048576.0,
	        (double)p->micros / 1e6);
	fflush(stderr);
}

static int run_backup(struct cli *cli)
{
	const char *path = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	bool tty = !cli->json && isatty(STDERR_FILENO);
	struct wb_backup_result res;
	rc = wb_backup(cli->client, path, tty ? backup_progress_cb : NULL, NULL, &res);
	if (tty)
		fputs("\r\033[K", stderr);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		fputs("{\"path\":", stdout);
		cli_json_cstr(res.path);
		printf(",\"bytes\":%" PRIu64 ",\"micros\":%" PRIu64 ",\"watermark\":%" PRIu64
		       ",\"last_position\":%" PRIu64 "}\n",
		       res.bytes, res.micros, res.watermark, res.last_position);
		return 0;
	}
	fputs("path: ", stdout);
	cli_put_cstr(res.path);
	printf("/data.mdb\nbytes: %" PRIu64 "\ntime: %.3f s\nwatermark: %" PRIu64
	       "\nlast_position: %" PRIu64 "\n",
	       res.bytes, (double)res.micros / 1e6, res.watermark, res.last_position);
	return 0;
}

const struct cli_command cli_admin_commands[] = {
        {.name = "stream-info",
         CLI_ONE_STREAM,
         .run = run_stream_info,
         .help = "print a stream's versions, positions, times, whether it is deleted, and its "
                 "metadata"},
        {.name = "stream-meta",
         CLI_ONE_STREAM,
         CLI_OPTS(stream_meta_opts, struct meta_args),
         .run = run_stream_meta,
         .help = "print a stream's metadata, or change the fields given (0 unsets one)"},
        {.name = "delete",
         CLI_ONE_STREAM,
         CLI_OPTS(delete_opts, struct delete_args),
         .run = run_delete,
         .help = "soft-delete a stream (it may be written again, its versions continuing) or, "
                 "with --hard, delete it for good"},
        {.name = "scavenge",
         .run = run_scavenge,
         .help = "remove what metadata and deletes made unreadable; progress on a terminal, "
                 "then the figures"},
        {.name = "stats",
         .run = run_stats,
         .help = "print the server's figures, leases and the ledger's too"},
        {.name = "clients",
         .run = run_clients,
         .help = "list the server's connections: id (* this one), peer, user and roles, TLS, "
                 "age, idle time, requests and their rate, bytes, buffers (input/output), "
                 "queued reads, writes, all held against the memory budget, work in flight, "
                 "subscriptions, leases, consumer memberships"},
        {.name = "disconnect",
         CLI_ARGS("ID", 1, 1, "an ID (from whizbang clients)", "one ID"),
         .run = run_disconnect,
         .help = "close the server's connection ID: it gets a last error saying so; what it "
                 "held goes as on any close"},
        {.name = "reload",
         .run = run_reload,
         .help = "make the server load its TLS certificate, key and CA files again (as SIGHUP "
                 "does): new connections get them, open ones keep theirs"},
        {.name = "backup",
         CLI_ARGS("NAME", 1, 1, "a NAME (the backup's new directory in the server's backup-dir)",
                  "one NAME"),
         .run = run_backup,
         .help = "copy the whole store, consistent and compacted, into a new directory NAME "
                 "in the server's backup-dir (the one directory its operator set for backups; "
                 "BACKUP_DIR/NAME is accepted too) while the server keeps serving; progress "
                 "on a terminal, then the figures and the backup's path"},
        {0},
};
