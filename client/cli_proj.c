/* The CLI's projection commands: apply, get, query, explain, index create,
 * drop and list, verify. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* verify replays the whole ledger: without --timeout-ms it may take this
 * long. */
#define CLI_VERIFY_TIMEOUT_MS 600000

/* ---------------------------------------------------------------- entities */

/* A field value as JSON: strings, numbers, booleans and null as themselves
 * (a double always with a '.' or an exponent, so that it reads back as one;
 * NaN and the infinities, which JSON lacks, as the strings "nan", "inf",
 * "-inf"), bytes as {"base64":"..."}. */
static void json_value(const Whizbang__V1__Value *v, struct cli_tbuf *b)
{
	switch (v == NULL ? WHIZBANG__V1__VALUE__KIND__NOT_SET : v->kind_case) {
	case WHIZBANG__V1__VALUE__KIND_STRING_VALUE:
		cli_json_cstr(v->string_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_INT_VALUE:
		printf("%" PRId64, v->int_value);
		break;
	case WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE: {
		const char *t = cli_value_text(v, b);
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
		cli_base64(v->bytes_value.data, v->bytes_value.len);
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
                         struct cli_tbuf *b)
{
	if (cli->json) {
		fputs("{\"type\":", stdout);
		cli_json_cstr(e->type);
		fputs(",\"id\":", stdout);
		cli_json_cstr(e->id);
		printf(",\"version\":%" PRIu64 ",\"created_sequence\":%" PRIu64
		       ",\"updated_sequence\":%" PRIu64 ",\"fields\":{",
		       e->version, e->created_sequence, e->updated_sequence);
		for (size_t k = 0; k < e->n_fields; k++) {
			if (k > 0)
				putchar(',');
			cli_json_cstr(e->fields[k]->name);
			putchar(':');
			json_value(e->fields[k]->value, b);
		}
		fputs("}}\n", stdout);
		return;
	}
	if (one_line) {
		cli_put_cstr(e->id);
		printf("  version=%" PRIu64 "  {", e->version);
	} else {
		cli_put_cstr(e->type);
		putchar(' ');
		cli_put_cstr(e->id);
		printf("\nversion: %" PRIu64 "\ncreated_sequence: %" PRIu64
		       "\nupdated_sequence: %" PRIu64 "\nfields:%s\n",
		       e->version, e->created_sequence, e->updated_sequence,
		       e->n_fields == 0 ? " (none)" : "");
	}
	for (size_t k = 0; k < e->n_fields; k++) {
		fputs(one_line ? (k > 0 ? ", " : "") : "  ", stdout);
		cli_put_cstr(e->fields[k]->name);
		fputs(": ", stdout);
		cli_put_cstr(cli_value_text(e->fields[k]->value, b));
		if (!one_line)
			putchar('\n');
	}
	if (one_line)
		fputs("}\n", stdout);
}

static int run_get(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__Entity *e;
	rc = wb_get_entity(cli->client, cli->pos.v[0], cli->pos.v[1], &e);
	if (rc != 0)
		return cli_report_client(cli, rc);
	struct cli_tbuf b = {0};
	print_entity(cli, e, false, &b);
	free(b.p);
	wb_entity_free(e);
	return 0;
}

/* ---------------------------------------------------------------- queries */

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
		return cli_report_parse(cli, text, &err, "", EXIT_USAGE);
	if (rc != 0)
		return cli_report(cli, rc, "cannot parse the where clause");
	return 0;
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
			cli_json_cstr(res->next_after);
		}
		printf(",\"strategy\":\"%s\",\"plan\":", strategy);
		cli_json_cstr(res->plan);
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
		cli_put_cstr(res->next_after);
		fputs(" (--after ", stdout);
		cli_put_cstr(res->next_after);
		fputs(")\n", stdout);
	}
	fputs("-- plan: ", stdout);
	cli_put_one_line(res->plan[0] != '\0' ? res->plan : strategy);
	printf(" (%s, examined %" PRIu64, strategy, examined);
	if (pages > 1)
		printf(" over %" PRIu64 " pages", pages);
	printf(", watermark %" PRIu64 ")\n", res->watermark);
}

struct query_args {
	uint64_t limit;
	const char *after;
	bool all;
};

static const struct cli_opt query_opts[] = {
        {"--limit", "N", CLI_UINT_AT(struct query_args, limit, 0, UINT32_MAX),
         .help = "a page of N entities (default and most: the server's --max-query-count)"},
        {"--after", "ID", CLI_TEXT_AT(struct query_args, after),
         .help = "only entities after ID: the cursor a page ends with"},
        {"--all", NULL, CLI_FLAG_AT(struct query_args, all),
         .help = "follow the cursor page after page to the end"},
        {0},
};

static int run_query(struct cli *cli)
{
	const struct query_args *a = cli->args;
	const char *type = cli->pos.v[0], *text = cli->pos.n == 2 ? cli->pos.v[1] : "";
	Whizbang__V1__Expr *where;
	int rc = parse_where_arg(cli, text, true, &where);
	if (rc != 0)
		return rc;
	rc = cli_connect(cli);
	char *cursor = NULL;
	struct cli_tbuf b = {0};
	uint64_t entities = 0, examined = 0, pages = 0;
	while (rc == 0) {
		Whizbang__V1__QueryResult *res;
		const char *after = cursor != NULL ? cursor : a->after;
		rc = wb_query(cli->client, type, where, where != NULL ? text : NULL, after,
		              (uint32_t)a->limit, &res);
		if (rc != 0) {
			rc = cli_report_client(cli, rc);
			break;
		}
		pages++;
		for (size_t k = 0; k < res->n_entities; k++)
			print_entity(cli, res->entities[k], true, &b);
		entities += res->n_entities;
		examined += res->examined;
		bool more = a->all && !res->end;
		if (more && (res->n_entities == 0 ||
		             strcmp(res->next_after, after != NULL ? after : "") == 0)) {
			wb_query_free(res);
			rc = cli_report(
			        cli, WB_INTERNAL,
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
			rc = cli_report(cli, WB_E_NOMEM, "no memory for the cursor");
	}
	free(cursor);
	free(b.p);
	optext_free_expr(where);
	return rc;
}

static int run_explain(struct cli *cli)
{
	Whizbang__V1__Expr *where;
	int rc = parse_where_arg(cli, cli->pos.v[1], false, &where);
	if (rc != 0)
		return rc;
	Whizbang__V1__PlanResult *plan = NULL;
	rc = cli_connect(cli);
	if (rc == 0) {
		rc = wb_explain(cli->client, cli->pos.v[0], where, cli->pos.v[1], &plan);
		if (rc != 0)
			rc = cli_report_client(cli, rc);
	}
	optext_free_expr(where);
	if (rc != 0)
		return rc;
	const char *strategy = optext_strategy_name(plan->strategy);
	if (cli->json) {
		printf("{\"strategy\":\"%s\",\"plan\":", strategy);
		cli_json_cstr(plan->plan);
		printf(",\"estimated_candidates\":%" PRIu64 ",\"type_entities\":%" PRIu64
		       ",\"max_scan\":%" PRIu64 ",\"max_candidates\":%" PRIu64 ",\"refused\":%s}\n",
		       plan->estimated_candidates, plan->type_entities, plan->max_scan,
		       plan->max_candidates, plan->refused ? "true" : "false");
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
		cli_put_text((const uint8_t *)p, n, SIZE_MAX);
		putchar('\n');
		p += n + (nl != NULL ? 1 : 0);
	}
	printf("estimated_candidates: %" PRIu64 "\ntype_entities: %" PRIu64 "\nmax_scan: %" PRIu64
	       "\nmax_candidates: %" PRIu64 "\n",
	       plan->estimated_candidates, plan->type_entities, plan->max_scan,
	       plan->max_candidates);
	if (plan->refused && plan->strategy == WHIZBANG__V1__PLAN_STRATEGY__PLAN_SCAN)
		printf("refused: yes (a scan of more than max_scan entities answers "
		       "QUERY_TOO_EXPENSIVE)\n");
	else if (plan->refused)
		printf("refused: yes (an index plan reading more than max_candidates index entries "
		       "answers QUERY_TOO_EXPENSIVE)\n");
	else
		puts("refused: no");
	wb_plan_free(plan);
	return 0;
}

/* ---------------------------------------------------------------- indexes */

static void print_index(const struct cli *cli, const char *verb, const Whizbang__V1__IndexInfo *x,
                        uint64_t sequence)
{
	if (cli->json) {
		fputs("{\"type\":", stdout);
		cli_json_cstr(x->type);
		fputs(",\"field\":", stdout);
		cli_json_cstr(x->field);
		printf(",\"entries\":%" PRIu64 ",\"created_sequence\":%" PRIu64, x->entries,
		       x->created_sequence);
		if (verb != NULL)
			printf(",\"%s\":true,\"sequence\":%" PRIu64, verb, sequence);
		fputs("}\n", stdout);
		return;
	}
	if (verb != NULL)
		printf("%s index ", verb);
	cli_put_cstr(x->type);
	putchar('.');
	cli_put_cstr(x->field);
	if (verb != NULL && strcmp(verb, "dropped") == 0)
		printf(" at sequence %" PRIu64 "\n", sequence);
	else if (verb != NULL)
		printf(" at sequence %" PRIu64 " entries=%" PRIu64 "\n", sequence, x->entries);
	else
		printf("  entries=%" PRIu64 "  created_sequence=%" PRIu64 "\n", x->entries,
		       x->created_sequence);
}

/* index create and index drop. */
static int run_index_change(struct cli *cli)
{
	bool create = strcmp(cli->cmd->name, "create") == 0;
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__IndexResult *res;
	rc = create ? wb_create_index(cli->client, cli->pos.v[0], cli->pos.v[1], &res)
	            : wb_drop_index(cli->client, cli->pos.v[0], cli->pos.v[1], &res);
	if (rc != 0)
		return cli_report_client(cli, rc);
	/* A server may leave the dropped index out of the answer. */
	Whizbang__V1__IndexInfo spec = WHIZBANG__V1__INDEX_INFO__INIT;
	spec.type = (char *)cli->pos.v[0];
	spec.field = (char *)cli->pos.v[1];
	print_index(cli, create ? "created" : "dropped", res->index != NULL ? res->index : &spec,
	            res->sequence);
	wb_index_result_free(res);
	return 0;
}

static int run_index_list(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__IndexList *list;
	rc = wb_list_indexes(cli->client, cli->pos.n == 1 ? cli->pos.v[0] : NULL, &list);
	if (rc != 0)
		return cli_report_client(cli, rc);
	for (size_t k = 0; k < list->n_indexes; k++)
		print_index(cli, NULL, list->indexes[k], 0);
	if (list->n_indexes == 0 && !cli->json)
		puts("(no indexes)");
	wb_index_list_free(list);
	return 0;
}

/* ---------------------------------------------------------------- apply, verify */

struct apply_args {
	const char *projection;
	const char *operation_id;
};

static const struct cli_opt apply_opts[] = {
        {"--projection", "P", CLI_TEXT_AT(struct apply_args, projection), .required = true,
         .help = "the projection the sequence is leased for"},
        {"--operation-id", "S", CLI_TEXT_AT(struct apply_args, operation_id),
         .help = "an id for the work, recorded in the ledger entry"},
        {0},
};

static int run_apply(struct cli *cli)
{
	const struct apply_args *a = cli->args;
	struct wb_lease_args la = {
	        .projection = a->projection,
	        .count = 1,
	        .operation_id = a->operation_id,
	        .release_on_disconnect = true,
	};
	/* Every op parses before anything is leased. */
	struct cli_ops ops;
	int rc = cli_ops_parse(cli, &cli->pos, "argument", EXIT_USAGE, &ops);
	if (rc == 0)
		rc = cli_connect(cli);
	struct wb_lease_grant g;
	size_t got = 0;
	if (rc == 0) {
		rc = wb_lease(cli->client, &la, &g, 1, &got);
		if (rc != 0)
			rc = cli_report_client(cli, rc);
	}
	Whizbang__V1__CommitResult *res = NULL;
	if (rc == 0) {
		rc = wb_commit_full(cli->client, g.sequence, g.token, &ops.merged, true, false,
		                    &res);
		if (rc != 0)
			rc = cli_report_client(cli, rc);
	}
	if (rc == 0)
		rc = cli_print_commit(cli, res, &ops.merged, true);
	wb_commit_result_free(res);
	cli_ops_free(&ops);
	return rc;
}

static int run_verify(struct cli *cli)
{
	if (!cli->timeout_set)
		cli->timeout_ms = CLI_VERIFY_TIMEOUT_MS;
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__VerifyResult *v;
	rc = wb_verify(cli->client, &v);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		printf("{\"match\":%s,\"live_digest\":\"", v->match ? "true" : "false");
		cli_put_hex(&v->live_digest);
		fputs("\",\"replay_digest\":\"", stdout);
		cli_put_hex(&v->replay_digest);
		printf("\",\"watermark\":%" PRIu64 ",\"entries_replayed\":%" PRIu64
		       ",\"entities\":%" PRIu64 ",\"micros\":%" PRIu64 ",\"first_difference\":",
		       v->watermark, v->entries_replayed, v->entities, v->micros);
		cli_json_cstr(v->first_difference);
		fputs("}\n", stdout);
	} else {
		printf("verify: %s\nlive_digest: ", v->match ? "match" : "MISMATCH");
		cli_put_hex(&v->live_digest);
		fputs("\nreplay_digest: ", stdout);
		cli_put_hex(&v->replay_digest);
		printf("\nwatermark: %" PRIu64 "\nentries_replayed: %" PRIu64 "\nentities: %" PRIu64
		       "\nmicros: %" PRIu64 "\n",
		       v->watermark, v->entries_replayed, v->entities, v->micros);
		if (!v->match) {
			fputs("first_difference: ", stdout);
			cli_put_cstr(v->first_difference);
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

const struct cli_command cli_proj_commands[] = {
        {.name = "apply",
         CLI_ARGS("'OP[; OP...]'...", 1, SIZE_MAX,
                  "operations, e.g. 'upsert Order \"o-1\" {total: 5}'", NULL),
         CLI_OPTS(apply_opts, struct apply_args),
         .run = run_apply,
         .help = "lease one sequence, commit the ops and wait until they are applied; prints "
                 "what each op did (exit status 1 when applying failed: then no op took "
                 "effect)"},
        {.name = "get",
         CLI_ARGS("TYPE ID", 2, 2, "TYPE and ID", "TYPE and ID"),
         .run = run_get,
         .help = "print an entity: version, sequences, typed fields"},
        {.name = "query",
         CLI_ARGS("TYPE ['WHERE']", 1, 2, "a TYPE", "TYPE and one WHERE clause (quote it)"),
         CLI_OPTS(query_opts, struct query_args),
         .run = run_query,
         .help = "print the entities WHERE matches (all without it), by id, a page at a time "
                 "after the cursor; then the cursor and the plan used"},
        {.name = "explain",
         CLI_ARGS("TYPE 'WHERE'", 2, 2, "TYPE and a WHERE clause",
                  "TYPE and one WHERE clause (quote it)"),
         .run = run_explain,
         .help = "print how the server would evaluate WHERE: strategy, plan, estimates, and "
                 "whether it would be refused"},
        {.group = "index",
         .name = "create",
         CLI_ARGS("TYPE FIELD", 2, 2, "TYPE and FIELD", "TYPE and FIELD"),
         .run = run_index_change,
         .help = "create a secondary index (through the ledger)"},
        {.group = "index",
         .name = "drop",
         CLI_ARGS("TYPE FIELD", 2, 2, "TYPE and FIELD", "TYPE and FIELD"),
         .run = run_index_change,
         .help = "drop a secondary index (through the ledger)"},
        {.group = "index",
         .name = "list",
         CLI_ARGS("[TYPE]", 0, 1, NULL, "at most a TYPE"),
         .run = run_index_list,
         .help = "list the secondary indexes, of one type or of all"},
        {.name = "verify",
         .run = run_verify,
         .help = "rebuild the entities from the ledger and compare with the live state (exit "
                 "status 1 on a mismatch; waits up to 10 minutes unless --timeout-ms says "
                 "otherwise)"},
        {0},
};
