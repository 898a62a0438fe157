/* The CLI's lease and ledger commands: lease, extend, release, stage,
 * commit, ledger, watermark; and the printers of ledger entries and commit
 * results, and the parsing of operations, that other groups use too. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

/* A sanity bound on lease --count; the server's --max-lease-count (at most
 * 1024) is the real limit and answers BAD_REQUEST above it. Without a
 * suffix, so that the usage error can spell it. */
#define CLI_MAX_LEASE_COUNT 65536
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)
/* watermark --wait without a timeout, when the per-call timeout is 0
 * (forever): the server's own cap on a wait. */
#define CLI_WAIT_FOREVER_MS 3600000u

/* ---------------------------------------------------------------- operations */

void cli_ops_free(struct cli_ops *ops)
{
	if (ops->lists != NULL)
		for (size_t k = 0; k < ops->n; k++)
			optext_free_ops(ops->lists[k]);
	free(ops->lists);
	free(ops->all);
	memset(ops, 0, sizeof(*ops));
}

int cli_ops_parse(const struct cli *cli, const struct cli_list *texts, const char *what,
                  int bad_status, struct cli_ops *ops)
{
	memset(ops, 0, sizeof(*ops));
	whizbang__v1__op_list__init(&ops->merged);
	ops->lists = calloc(texts->n > 0 ? texts->n : 1, sizeof(*ops->lists));
	if (ops->lists == NULL)
		return cli_report(cli, WB_E_NOMEM, "no memory for the operations");
	ops->n = texts->n;
	size_t total = 0;
	for (size_t k = 0; k < texts->n; k++) {
		struct optext_error err = {0};
		int rc = optext_parse_ops(texts->v[k], &ops->lists[k], &err);
		if (rc == WB_INVALID_EXPRESSION) {
			char where[64] = "";
			if (texts->n > 1)
				snprintf(where, sizeof(where), " (in %s number %zu)", what, k + 1);
			return cli_report_parse(cli, texts->v[k], &err, where, bad_status);
		}
		if (rc != 0)
			return cli_reportf(cli, rc, "cannot parse %s \"%s\"", what, texts->v[k]);
		total += ops->lists[k]->n_ops;
	}
	ops->all = calloc(total > 0 ? total : 1, sizeof(*ops->all));
	if (ops->all == NULL)
		return cli_report(cli, WB_E_NOMEM, "no memory for the operations");
	size_t j = 0;
	for (size_t k = 0; k < texts->n; k++)
		for (size_t m = 0; m < ops->lists[k]->n_ops; m++)
			ops->all[j++] = ops->lists[k]->ops[m];
	ops->merged.n_ops = total;
	ops->merged.ops = ops->all;
	return 0;
}

/* Whether op evaluates a where clause (and so has an explosion). */
static bool op_has_where(const Whizbang__V1__Op *op)
{
	return op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE ||
	       (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE && op->delete_ != NULL &&
	        op->delete_->target_case == WHIZBANG__V1__DELETE__TARGET_WHERE);
}

/* What kind of op ops[k] is, in words. */
static const char *op_kind(const Whizbang__V1__OpList *ops, size_t k)
{
	static const char *const kinds[] = {
	        [WHIZBANG__V1__OP__KIND_UPSERT] = "upsert",
	        [WHIZBANG__V1__OP__KIND_UPDATE] = "update",
	        [WHIZBANG__V1__OP__KIND_DELETE] = "delete",
	        [WHIZBANG__V1__OP__KIND_CREATE_INDEX] = "create index",
	        [WHIZBANG__V1__OP__KIND_DROP_INDEX] = "drop index",
	};
	return k < ops->n_ops ? CLI_NAME(kinds, ops->ops[k]->kind_case, "op") : "op";
}

/* ---------------------------------------------------------------- lease */

struct lease_args {
	const char *projection;
	uint64_t duration_ms;
	uint64_t count;
	const char *operation_id;
	uint64_t source_position;
	bool release_on_disconnect;
};

static const struct cli_opt lease_opts[] = {
        {"--projection", "P", CLI_TEXT_AT(struct lease_args, projection), .required = true,
         .help = "the projection the sequences are for"},
        {"--duration-ms", "N", CLI_UINT_AT(struct lease_args, duration_ms, 0, UINT64_MAX),
         .bad = "needs a number of milliseconds",
         .help = "how long the leases last; 0: adaptive, twice the projection's recent "
                 "lease-to-commit time"},
        {"--count", "N", CLI_UINT_AT(struct lease_args, count, 1, CLI_MAX_LEASE_COUNT), .dflt = "1",
         .bad = "needs a number from 1 to " CLI_STR(CLI_MAX_LEASE_COUNT),
         .help = "how many consecutive sequences to lease"},
        {"--operation-id", "S", CLI_TEXT_AT(struct lease_args, operation_id),
         .help = "an id for the work, recorded in the ledger entry"},
        {"--source-position", "N", CLI_UINT_AT(struct lease_args, source_position, 0, UINT64_MAX),
         .help = "the $all position the work comes from, recorded in the ledger entry"},
        {"--release-on-disconnect", NULL, CLI_FLAG_AT(struct lease_args, release_on_disconnect),
         .help = "release the leases when this connection closes (else they run to expiry "
                 "and may be committed from another connection)"},
        {0},
};

static int run_lease(struct cli *cli)
{
	const struct lease_args *a = cli->args;
	struct wb_lease_args la = {
	        .projection = a->projection,
	        .duration_ms = a->duration_ms,
	        .count = (uint32_t)a->count,
	        .operation_id = a->operation_id,
	        .source_position = a->source_position,
	        .release_on_disconnect = a->release_on_disconnect,
	};
	struct wb_lease_grant *grants = calloc(la.count, sizeof(*grants));
	if (grants == NULL)
		return cli_report(cli, WB_E_NOMEM, "no memory for the grants");
	int rc = cli_connect(cli);
	if (rc != 0)
		goto out;
	size_t got = 0;
	rc = wb_lease(cli->client, &la, grants, la.count, &got);
	if (rc != 0) {
		rc = cli_report_client(cli, rc);
		goto out;
	}
	for (size_t k = 0; k < got; k++) {
		const struct wb_lease_grant *g = &grants[k];
		char at[40];
		cli_format_time_ms(g->expires_at_ms, at);
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

/* ---------------------------------------------------------------- SEQ --token T */

/* A fencing token as lease prints it: exactly 16 hex digits. */
static int parse_token(const char *s, void *field)
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
			return WB_E_INVAL;
		v = v << 4 | d;
	}
	if (n != 16)
		return WB_E_INVAL;
	memcpy(field, &v, sizeof(v));
	return 0;
}

static int parse_ack(const char *v, void *field)
{
	static const struct cli_word words[] = {{"durable", 0}, {"applied", 1}, {NULL, 0}};
	int applied;
	if (cli_word(v, words, &applied) != 0)
		return WB_E_INVAL;
	*(bool *)field = applied != 0;
	return 0;
}

/* The arguments of extend, release, stage and commit, each of which takes
 * the options it needs of these. */
struct seq_args {
	uint64_t token;
	uint64_t duration_ms;
	const char *reason;
	bool force;
	struct cli_list ops;
	bool applied;
	bool reseq;
};

#define TOKEN_OPT                                                                                  \
	{                                                                                          \
		"--token", "T", CLI_PARSE_AT(struct seq_args, token, parse_token),                 \
		        .required = true, .bad = "takes the 16 hex digits lease printed",          \
		        .help = "the lease's fencing token, as lease printed it"                   \
	}

static const struct cli_opt extend_opts[] = {
        TOKEN_OPT,
        {"--duration-ms", "N", CLI_UINT_AT(struct seq_args, duration_ms, 0, UINT64_MAX),
         .bad = "needs a number of milliseconds",
         .help = "the new duration from now; 0 or none: adaptive"},
        {0},
};

static const struct cli_opt release_opts[] = {
        {"--token", "T", CLI_PARSE_AT(struct seq_args, token, parse_token),
         .bad = "takes the 16 hex digits lease printed",
         .help = "the lease's fencing token, as lease printed it (or --force)"},
        {"--force", NULL, CLI_FLAG_AT(struct seq_args, force),
         .help = "release it without its token: an operator freeing a stuck worker's sequence "
                 "(needs admin:clients)"},
        {"--reason", "TEXT", CLI_TEXT_AT(struct seq_args, reason),
         .help = "why, recorded with the gap"},
        {0},
};

static const struct cli_opt stage_opts[] = {
        TOKEN_OPT,
        {"--op", "TEXT", CLI_TEXTS_AT(struct seq_args, ops), .required = true,
         .help = "operations in their text form, several separated by ';' (repeatable)"},
        {0},
};

static const struct cli_opt commit_opts[] = {
        TOKEN_OPT,
        {"--op", "TEXT", CLI_TEXTS_AT(struct seq_args, ops),
         .help = "operations in their text form, several separated by ';' (repeatable; none "
                 "is valid)"},
        {"--ack", "durable|applied", CLI_PARSE_AT(struct seq_args, applied, parse_ack),
         .dflt = "durable", .bad = "takes durable or applied",
         .help = "answer once the entry is on disk, or once it is applied (then with what each "
                 "op did)"},
        {"--reseq", NULL, CLI_FLAG_AT(struct seq_args, reseq),
         .help = "when the lease has expired, commit at a new sequence instead of failing"},
        {0},
};

/* SEQ, the positional argument of the four. */
static int seq_of(const struct cli *cli, uint64_t *seq)
{
	if (parse_u64(cli->pos.v[0], PARSE_INTEGER, seq) != 0)
		return cli_usage_error(cli, "%s needs a sequence number, not \"%s\"",
		                       cli->cmd->name, cli->pos.v[0]);
	return 0;
}

static int run_extend(struct cli *cli)
{
	const struct seq_args *a = cli->args;
	uint64_t seq, until;
	int rc = seq_of(cli, &seq);
	if (rc == 0)
		rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = wb_extend(cli->client, seq, a->token, a->duration_ms, &until);
	if (rc != 0)
		return cli_report_client(cli, rc);
	char at[40];
	cli_format_time_ms(until, at);
	if (cli->json)
		printf("{\"sequence\":%" PRIu64 ",\"expires_at\":\"%s\",\"expires_at_ms\":%" PRIu64
		       "}\n",
		       seq, at, until);
	else
		printf("extended %" PRIu64 " expires_at=%s\n", seq, at);
	return 0;
}

static int run_release(struct cli *cli)
{
	const struct seq_args *a = cli->args;
	uint64_t seq;
	if (!a->force && a->token == 0)
		return cli_usage_error(cli,
		                       "release needs --token T (or --force, for an operator)");
	if (a->force && a->token != 0)
		return cli_usage_error(cli, "release takes --token T or --force, not both");
	int rc = seq_of(cli, &seq);
	if (rc == 0)
		rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = a->force ? wb_release_force(cli->client, seq, a->reason)
	              : wb_release(cli->client, seq, a->token, a->reason);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json)
		printf("{\"sequence\":%" PRIu64 ",\"released\":true}\n", seq);
	else
		printf("released %" PRIu64 "\n", seq);
	return 0;
}

static int run_stage(struct cli *cli)
{
	const struct seq_args *a = cli->args;
	struct cli_ops ops = {0};
	uint64_t seq;
	int rc = seq_of(cli, &seq);
	if (rc == 0)
		rc = cli_ops_parse(cli, &a->ops, "--op", EXIT_FAILURE, &ops);
	if (rc == 0)
		rc = cli_connect(cli);
	if (rc == 0) {
		rc = wb_stage(cli->client, seq, a->token, &ops.merged);
		if (rc != 0)
			rc = cli_report_client(cli, rc);
	}
	if (rc == 0) {
		if (cli->json)
			printf("{\"sequence\":%" PRIu64 ",\"staged\":true,\"ops\":%zu}\n", seq,
			       ops.merged.n_ops);
		else
			printf("staged %" PRIu64 " ops=%zu\n", seq, ops.merged.n_ops);
	}
	cli_ops_free(&ops);
	return rc;
}

static int run_commit(struct cli *cli)
{
	const struct seq_args *a = cli->args;
	struct cli_ops ops = {0};
	Whizbang__V1__CommitResult *res = NULL;
	uint64_t seq;
	int rc = seq_of(cli, &seq);
	if (rc == 0)
		rc = cli_ops_parse(cli, &a->ops, "--op", EXIT_FAILURE, &ops);
	if (rc == 0)
		rc = cli_connect(cli);
	if (rc == 0) {
		rc = wb_commit_full(cli->client, seq, a->token, &ops.merged, a->applied, a->reseq,
		                    &res);
		if (rc != 0)
			rc = cli_report_client(cli, rc);
	}
	if (rc == 0)
		rc = cli_print_commit(cli, res, &ops.merged, a->applied);
	wb_commit_result_free(res);
	cli_ops_free(&ops);
	return rc;
}

/* Prints what each op did after an applied commit, for people. */
static void put_op_results(const Whizbang__V1__CommitResult *res, const Whizbang__V1__OpList *ops)
{
	for (size_t k = 0; k < res->n_results; k++) {
		const Whizbang__V1__OpResult *o = res->results[k];
		bool where = k < ops->n_ops && op_has_where(ops->ops[k]);
		printf("  op %zu %s: ", k + 1, op_kind(ops, k));
		if (where)
			printf("matched %" PRIu64 ", ", o->matched);
		printf("affected %" PRIu64 "%s", o->affected, o->created ? ", created" : "");
		if (where) {
			fputs(" via ", stdout);
			cli_put_one_line(o->plan[0] != '\0' ? o->plan
			                                    : optext_strategy_name(o->strategy));
			printf(" (examined %" PRIu64, o->examined);
			if (o->micros > 0) /* entries stored before log-first durability */
				printf(", %" PRIu64 " µs", o->micros);
			putchar(')');
		}
		putchar('\n');
	}
}

static void json_op_results(const Whizbang__V1__CommitResult *res, const Whizbang__V1__OpList *ops)
{
	fputs(",\"results\":[", stdout);
	for (size_t k = 0; k < res->n_results; k++) {
		const Whizbang__V1__OpResult *o = res->results[k];
		printf("%s{\"op\":%zu,\"kind\":\"%s\",\"affected\":%" PRIu64 ",\"matched\":%" PRIu64
		       ",\"created\":%s,\"strategy\":\"%s\",\"plan\":",
		       k > 0 ? "," : "", k + 1, op_kind(ops, k), o->affected, o->matched,
		       o->created ? "true" : "false", optext_strategy_name(o->strategy));
		cli_json_cstr(o->plan);
		printf(",\"examined\":%" PRIu64 ",\"micros\":%" PRIu64 "}", o->examined, o->micros);
	}
	putchar(']');
}

int cli_print_commit(const struct cli *cli, const Whizbang__V1__CommitResult *res,
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
			       cli_code_name(res->apply_error));
			if (failed) {
				fputs(",\"apply_error_message\":", stdout);
				cli_json_cstr(res->apply_error_message);
				printf(",\"failed_op\":%" PRIu32, res->failed_op);
			}
			json_op_results(res, ops);
		}
		fputs("}\n", stdout);
	} else {
		printf("committed %" PRIu64 " watermark=%" PRIu64, res->sequence, res->watermark);
		if (res->resequenced)
			printf(" resequenced from %" PRIu64, res->original_sequence);
		putchar('\n');
		if (applied && !failed)
			put_op_results(res, ops);
	}
	if (!failed)
		return 0;
	fflush(stdout);
	fprintf(stderr, "error: %s: not applied, no op took effect: failed at op %" PRIu32,
	        cli_code_name(res->apply_error), res->failed_op);
	if (res->failed_op >= 1 && res->failed_op <= ops->n_ops)
		fprintf(stderr, " (%s)", op_kind(ops, res->failed_op - 1));
	fprintf(stderr, ": %s\n",
	        res->apply_error_message[0] != '\0' ? res->apply_error_message
	                                            : wb_strerror((int)res->apply_error));
	return EXIT_FAILURE;
}

/* ---------------------------------------------------------------- ledger */

static const char *const reason_names[] = {
        [WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED] = "released",
        [WHIZBANG__V1__ENTRY_REASON__GAP_EXPIRED] = "expired",
        [WHIZBANG__V1__ENTRY_REASON__GAP_RESTART] = "restart",
        [WHIZBANG__V1__ENTRY_REASON__RECOVERED_STAGED] = "staged",
        [WHIZBANG__V1__ENTRY_REASON__RECOVERED_RESEQUENCED] = "resequenced",
};

static const char *const kind_names[] = {
        [WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED] = "committed",
        [WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP] = "gap",
        [WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED] = "recovered",
};

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
	cli_json_cstr(x->plan);
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
		cli_json_str((const uint8_t *)it.id, it.id_len);
	}
	printf("],\"more\":%" PRIu64 "}", x->count > k ? x->count - k : 0);
}

static void json_entry(const Whizbang__V1__LedgerEntry *e, size_t max_ids, struct cli_tbuf *ob)
{
	char time[40], expiry[40];
	cli_format_time(e->time_us, time);
	cli_format_time(e->original_expiry_us, expiry);
	const char *reason = CLI_NAME(reason_names, e->reason, NULL);
	bool failed = e->apply_error != WHIZBANG__V1__ERROR_CODE__OK;
	printf("{\"sequence\":%" PRIu64 ",\"kind\":\"%s\"", e->sequence,
	       CLI_NAME(kind_names, e->kind, "unknown"));
	if (reason != NULL)
		printf(",\"reason\":\"%s\"", reason);
	fputs(",\"projection\":", stdout);
	cli_json_cstr(e->projection);
	fputs(",\"operation_id\":", stdout);
	cli_json_cstr(e->operation_id);
	printf(",\"source_position\":%" PRIu64 ",\"time\":\"%s\",\"time_us\":%" PRIu64,
	       e->source_position, time, e->time_us);
	if (e->original_expiry_us != 0)
		printf(",\"original_expiry\":\"%s\",\"original_expiry_us\":%" PRIu64, expiry,
		       e->original_expiry_us);
	if (e->original_sequence != 0)
		printf(",\"original_sequence\":%" PRIu64, e->original_sequence);
	fputs(",\"ops\":[", stdout);
	for (size_t k = 0; k < e->n_ops; k++) {
		if (k > 0)
			putchar(',');
		cli_json_cstr(cli_op_text(e->ops[k], ob));
	}
	putchar(']');
	printf(",\"applied\":%s", e->applied ? "true" : "false");
	if (e->applied || failed)
		printf(",\"apply_error\":\"%s\"", cli_code_name(e->apply_error));
	if (failed) {
		fputs(",\"apply_error_message\":", stdout);
		cli_json_cstr(e->apply_error_message);
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
}

/* One ledger entry for people: SEQ  KIND(REASON)  PROJECTION  OPERATION_ID
 * TIME  OPS, once applied the outcome, then a line for each explosion. */
void cli_print_entry(const struct cli *cli, const Whizbang__V1__LedgerEntry *e, size_t max_ids,
                     struct cli_tbuf *ob, struct cli_tbuf *xb)
{
	if (cli->json) {
		json_entry(e, max_ids, ob);
		return;
	}
	char time[40];
	cli_format_time(e->time_us, time);
	const char *reason = CLI_NAME(reason_names, e->reason, NULL);
	printf("%" PRIu64 "  %s", e->sequence, CLI_NAME(kind_names, e->kind, "unknown"));
	if (e->reason == WHIZBANG__V1__ENTRY_REASON__RECOVERED_RESEQUENCED)
		printf("(resequenced from %" PRIu64 ")", e->original_sequence);
	else if (reason != NULL)
		printf("(%s)", reason);
	fputs("  ", stdout);
	cli_put_cstr(e->projection[0] != '\0' ? e->projection : "-");
	fputs("  ", stdout);
	cli_put_cstr(e->operation_id[0] != '\0' ? e->operation_id : "-");
	printf("  %s", time);
	for (size_t k = 0; k < e->n_ops; k++) {
		fputs(k == 0 ? "  " : "; ", stdout);
		cli_put_cstr(cli_op_text(e->ops[k], ob));
	}
	/* Gaps have nothing to apply; their outcome is no news. */
	if (e->apply_error != WHIZBANG__V1__ERROR_CODE__OK) {
		printf("  [failed at op %" PRIu32 ": %s: ", e->failed_op,
		       cli_code_name(e->apply_error));
		cli_put_cstr(e->apply_error_message);
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
		cli_put_cstr(cli_explosion_text(x, max_ids, xb));
		putchar('\n');
	}
}

struct ledger_args {
	bool from_set;
	uint64_t from;
	bool limit_set;
	uint64_t limit;
	bool ids;
};

static const struct cli_opt ledger_opts[] = {
        {"--from", "SEQ", CLI_UINT_AT(struct ledger_args, from, 0, UINT64_MAX),
         CLI_GIVEN(struct ledger_args, from_set), .help = "start at SEQ (default: 1)"},
        {"--limit", "N", CLI_UINT_AT(struct ledger_args, limit, 0, UINT64_MAX),
         CLI_GIVEN(struct ledger_args, limit_set),
         .help = "print at most N entries (default: all of them up to the watermark)"},
        {"--ids", NULL, CLI_FLAG_AT(struct ledger_args, ids),
         .help = "list every id a where clause matched (default: the first " CLI_STR(
                 CLI_LEDGER_IDS) ")"},
        {0},
};

static int run_ledger(struct cli *cli)
{
	const struct ledger_args *a = cli->args;
	size_t max_ids = a->ids ? SIZE_MAX : CLI_LEDGER_IDS;
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	uint64_t from = a->from_set ? a->from : 1;
	uint64_t printed = 0;
	struct cli_tbuf ob = {0}, xb = {0};
	for (;;) {
		uint32_t want = 0;
		if (a->limit_set) {
			uint64_t left = a->limit - printed;
			if (left == 0)
				break;
			want = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
		}
		Whizbang__V1__ReadLedgerResult *res;
		rc = wb_read_ledger(cli->client, from, want, &res);
		if (rc != 0) {
			rc = cli_report_client(cli, rc);
			break;
		}
		for (size_t k = 0; k < res->n_entries; k++) {
			if (a->limit_set && printed == a->limit)
				break;
			cli_print_entry(cli, res->entries[k], max_ids, &ob, &xb);
			printed++;
		}
		bool stuck = res->n_entries == 0 && !res->end && res->next_sequence <= from;
		bool end = res->end;
		from = res->next_sequence;
		wb_ledger_free(res);
		if (end)
			break;
		if (stuck) {
			rc = cli_reportf(cli, WB_INTERNAL,
			                 "the server answered an empty ledger page that does not "
			                 "advance (next is %" PRIu64 ")",
			                 from);
			break;
		}
	}
	free(ob.p);
	free(xb.p);
	return rc;
}

/* ---------------------------------------------------------------- watermark */

struct watermark_args {
	bool wait_set;
	uint64_t wait;
	bool timeout_set;
	uint64_t timeout_ms;
};

static const struct cli_opt watermark_opts[] = {
        {"--wait", "SEQ", CLI_UINT_AT(struct watermark_args, wait, 0, UINT64_MAX),
         CLI_GIVEN(struct watermark_args, wait_set), .bad = "needs a sequence number",
         .help = "wait until the watermark reaches SEQ (exit status 1 when the wait timed out)"},
        {"--timeout-ms", "MS", CLI_UINT_AT(struct watermark_args, timeout_ms, 0, INT32_MAX),
         CLI_GIVEN(struct watermark_args, timeout_set), .bad = "needs a number of milliseconds",
         .help = "with --wait, how long to wait (default: the per-call timeout); without, the "
                 "per-call timeout"},
        {0},
};

static int run_watermark(struct cli *cli)
{
	const struct watermark_args *a = cli->args;
	uint64_t timeout = a->timeout_ms;
	if (a->timeout_set && !a->wait_set)
		cli->timeout_ms = timeout;
	else if (!a->timeout_set)
		timeout = cli->timeout_ms > 0 ? cli->timeout_ms : CLI_WAIT_FOREVER_MS;
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	uint64_t w = 0, next = 0;
	bool reached = true;
	if (a->wait_set)
		rc = wb_wait_watermark(cli->client, a->wait, timeout, &w, &reached);
	else
		rc = wb_watermark(cli->client, &w, &next);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		printf("{\"watermark\":%" PRIu64, w);
		if (a->wait_set)
			printf(",\"sequence\":%" PRIu64 ",\"reached\":%s", a->wait,
			       reached ? "true" : "false");
		else
			printf(",\"next_sequence\":%" PRIu64, next);
		fputs("}\n", stdout);
	} else if (a->wait_set) {
		printf("watermark %" PRIu64 " %s\n", w, reached ? "reached" : "timed out");
	} else {
		printf("watermark %" PRIu64 "\n", w);
	}
	return reached ? 0 : EXIT_FAILURE;
}

/* The rows of extend, release, stage and commit differ in their options,
 * their meaning and the function that runs them. */
#define SEQ_COMMAND(cmd, opts_, run_, help_)                                                       \
	{                                                                                          \
		.name = (cmd), CLI_ARGS("SEQ", 1, 1, "SEQ and --token T", "one sequence"),         \
		CLI_OPTS(opts_, struct seq_args), .run = (run_), .help = (help_)                   \
	}

const struct cli_command cli_lease_commands[] = {
        {.name = "lease",
         CLI_OPTS(lease_opts, struct lease_args),
         .run = run_lease,
         .help = "lease sequences; prints SEQUENCE TOKEN EXPIRES_AT each"},
        SEQ_COMMAND("extend", extend_opts, run_extend,
                    "renew a lease (duration 0 or none: adaptive)"),
        SEQ_COMMAND("release", release_opts, run_release,
                    "give a lease up: the sequence becomes a gap"),
        SEQ_COMMAND("stage", stage_opts, run_stage,
                    "store finished work, committed if the lease expires"),
        SEQ_COMMAND("commit", commit_opts, run_commit,
                    "commit ops (none is valid); --reseq commits at a new sequence when the "
                    "lease has expired"),
        {.name = "ledger",
         CLI_OPTS(ledger_opts, struct ledger_args),
         .run = run_ledger,
         .help = "print ledger entries up to the watermark, with how each was applied and the "
                 "ids each where clause matched (the first few; --ids: all of them)"},
        {.name = "watermark",
         CLI_OPTS(watermark_opts, struct watermark_args),
         .run = run_watermark,
         .help = "print the watermark, or wait until it reaches SEQ (exit status 1 when the "
                 "wait timed out)"},
        {0},
};
