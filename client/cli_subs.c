/* The CLI's subscription commands: subscribe, and the consumer group
 * commands consumer create, delete, list, read, ack, nack, parked and
 * replay-parked. */
#include "cli.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

/* How often a waiting subscribe looks at the interrupt flag. */
#define CLI_POLL_MS 200

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* --from start|end|P. */
struct from {
	enum wb_from from;
	uint64_t position;
};

/* start, end, or a position P. */
static int parse_from(const char *v, void *field)
{
	static const struct cli_word words[] = {
	        {"start", WB_FROM_START},
	        {"end", WB_FROM_END},
	        {NULL, 0},
	};
	struct from *f = field;
	int from = WB_FROM_POSITION;
	if (cli_word(v, words, &from) != 0 && parse_u64(v, PARSE_INTEGER, &f->position) != 0)
		return WB_E_INVAL;
	f->from = (enum wb_from)from;
	return 0;
}

/* The arguments of subscribe and consumer create. */
struct sub_args {
	/* The target: one of them (the alternatives of the tables). */
	bool all;
	const char *stream;
	bool ledger;
	struct from from;
	const char *prefix;
	struct cli_list types;
	/* subscribe */
	uint64_t credits;
	uint64_t count;
	/* consumer create */
	uint64_t ack_timeout_ms;
	uint64_t max_deliveries;
};

/* The rows subscribe and consumer create share. */
#define FROM_OPT                                                                                   \
	{                                                                                          \
		"--from", "start|end|P", CLI_PARSE_AT(struct sub_args, from, parse_from),          \
		        .bad = "takes start, end or a position",                                   \
		        .help = "where to start: the first event or entry, only what commits "     \
		                "from now on, or position, version or sequence P (default: "       \
		                "start)"                                                           \
	}
#define PREFIX_OPT                                                                                 \
	{                                                                                          \
		"--stream-prefix", "P", CLI_TEXT_AT(struct sub_args, prefix),                      \
		        .help = "with --all: only events of streams whose names start with P"      \
	}
#define TYPES_OPT                                                                                  \
	{                                                                                          \
		"--type", "T", CLI_TEXTS_AT(struct sub_args, types),                               \
		        .help = "with --all: only events of type T (repeat it for several)"        \
	}

static const struct cli_opt subscribe_opts[] = {
        {"--all", NULL, CLI_FLAG_AT(struct sub_args, all), .alt = true,
         .help = "the global log ($all)"},
        {"--stream", "S", CLI_TEXT_AT(struct sub_args, stream), .alt = true, .help = "one stream"},
        {"--ledger", NULL, CLI_FLAG_AT(struct sub_args, ledger), .alt = true,
         .help = "the ledger of projection operations"},
        FROM_OPT,
        PREFIX_OPT,
        TYPES_OPT,
        {"--credits", "N", CLI_UINT_AT(struct sub_args, credits, 1, UINT32_MAX), .dflt = "256",
         .bad = "needs a number from 1",
         .help = "items the server may push ahead of the printing; given back in halves"},
        {"--count", "N", CLI_UINT_AT(struct sub_args, count, 0, UINT64_MAX),
         .help = "stop after N events or entries (default: run until interrupted)"},
        {0},
};

static const struct cli_opt consumer_create_opts[] = {
        {"--all", NULL, CLI_FLAG_AT(struct sub_args, all), .alt = true,
         .help = "the global log ($all)"},
        {"--stream", "S", CLI_TEXT_AT(struct sub_args, stream), .alt = true, .help = "one stream"},
        FROM_OPT,
        PREFIX_OPT,
        TYPES_OPT,
        {"--ack-timeout", "DUR", CLI_DURATION_AT(struct sub_args, ack_timeout_ms, 0, UINT64_MAX),
         .bad = "needs a duration (30s, 500ms, 2m)",
         .help = "redeliver an event not acked within DUR (default: the server's, 30s)"},
        {"--max-deliveries", "N", CLI_UINT_AT(struct sub_args, max_deliveries, 1, UINT32_MAX),
         .bad = "needs a number from 1",
         .help = "park an event after N deliveries without an ack (default: the server's, 10)"},
        {0},
};

/* The target of a (the alternatives made sure there is exactly one); once
 * its filters are checked (only $all takes them), connects. */
static int target_connect(struct cli *cli, const struct sub_args *a, enum wb_target *target)
{
	*target = a->all ? WB_TARGET_ALL : a->stream != NULL ? WB_TARGET_STREAM : WB_TARGET_LEDGER;
	if (*target != WB_TARGET_ALL && (a->prefix != NULL || a->types.n != 0))
		return cli_usage_error(cli, "--stream-prefix and --type filter --all only");
	return cli_connect(cli);
}

/* Prints one pushed item. Returns true when it used a credit (an event or
 * an entry). */
static bool print_item(const struct cli *cli, const Whizbang__V1__SubscriptionItem *it,
                       struct cli_tbuf *ob, struct cli_tbuf *xb)
{
	switch (it->item_case) {
	case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT:
		cli_print_recorded(cli, it->event, it->delivery, NULL);
		return true;
	case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_ENTRY:
		cli_print_entry(cli, it->entry, CLI_LEDGER_IDS, ob, xb);
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

/* Prints the items of subscription sub until interrupted or count (0: no
 * end) events or entries are printed, giving credits back in halves of
 * credits so that the server always has about credits items it may send. */
static int follow(struct cli *cli, uint64_t sub, uint32_t credits, uint64_t count)
{
	uint32_t used = 0, refill = credits / 2 != 0 ? credits / 2 : 1;
	uint64_t printed = 0;
	struct cli_tbuf ob = {0}, xb = {0};
	int rc = 0;
	while (!interrupted && (count == 0 || printed < count)) {
		Whizbang__V1__SubscriptionItem *it;
		rc = wb_next_item(cli->client, CLI_POLL_MS, &it);
		if (rc == WB_E_TIMEOUT)
			continue;
		if (rc != 0)
			break;
		if (print_item(cli, it, &ob, &xb)) {
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
	free(ob.p);
	free(xb.p);
	return rc;
}

static int run_subscribe(struct cli *cli)
{
	const struct sub_args *a = cli->args;
	enum wb_target target;
	int rc = target_connect(cli, a, &target);
	if (rc != 0)
		return rc;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct wb_subscribe_args sargs = {
	        .target = target,
	        .stream = a->stream,
	        .from = a->from.from,
	        .position = a->from.position,
	        .stream_prefix = a->prefix,
	        .types = a->types.v,
	        .ntypes = a->types.n,
	        .credits = (uint32_t)a->credits,
	};
	uint64_t sub;
	rc = wb_subscribe(cli->client, &sargs, &sub);
	if (rc != 0)
		return cli_report_client(cli, rc);
	rc = follow(cli, sub, (uint32_t)a->credits, a->count);
	if (rc == 0 || rc == WB_E_TIMEOUT)
		rc = wb_unsubscribe(cli->client, sub);
	return rc != 0 ? cli_report_client(cli, rc) : 0;
}

/* ---------------------------------------------------------------- consumer groups */

static const char *const target_names[] = {
        [WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL] = "all",
        [WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM] = "stream",
        [WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER] = "ledger",
};

static void json_consumer(const Whizbang__V1__ConsumerConfig *cfg,
                          const Whizbang__V1__ConsumerInfo *ci)
{
	fputs("{\"name\":", stdout);
	cli_json_cstr(cfg->name);
	printf(",\"target\":\"%s\"", CLI_NAME(target_names, cfg->target, "unknown"));
	if (cfg->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM) {
		fputs(",\"stream\":", stdout);
		cli_json_cstr(cfg->stream);
	}
	if (cfg->stream_prefix[0] != '\0') {
		fputs(",\"stream_prefix\":", stdout);
		cli_json_cstr(cfg->stream_prefix);
	}
	fputs(",\"types\":[", stdout);
	for (size_t k = 0; k < cfg->n_event_types; k++) {
		if (k != 0)
			putchar(',');
		cli_json_cstr(cfg->event_types[k]);
	}
	printf("],\"ack_timeout_ms\":%" PRIu64 ",\"max_deliveries\":%u,\"checkpoint\":%" PRIu64
	       ",\"members\":%" PRIu64 ",\"in_flight\":%" PRIu64 ",\"parked\":%" PRIu64
	       ",\"delivered\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"redelivered\":%" PRIu64 "}\n",
	       cfg->ack_timeout_ms, cfg->max_deliveries, ci->checkpoint, ci->members, ci->in_flight,
	       ci->parked, ci->delivered, ci->acked, ci->redelivered);
}

static void print_consumer(const struct cli *cli, const Whizbang__V1__ConsumerInfo *ci)
{
	static const Whizbang__V1__ConsumerConfig none = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	const Whizbang__V1__ConsumerConfig *cfg = ci->config != NULL ? ci->config : &none;
	if (cli->json) {
		json_consumer(cfg, ci);
		return;
	}
	cli_put_cstr(cfg->name);
	printf("  %s", CLI_NAME(target_names, cfg->target, "unknown"));
	if (cfg->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM) {
		putchar(' ');
		cli_put_cstr(cfg->stream);
	}
	if (cfg->stream_prefix[0] != '\0') {
		fputs(" prefix=", stdout);
		cli_put_cstr(cfg->stream_prefix);
	}
	for (size_t k = 0; k < cfg->n_event_types; k++) {
		fputs(k == 0 ? " types=" : ",", stdout);
		cli_put_cstr(cfg->event_types[k]);
	}
	char ack[40];
	parse_format(PARSE_DURATION, cfg->ack_timeout_ms, ack, sizeof(ack));
	printf("  ack_timeout=%s max_deliveries=%u  checkpoint=%" PRIu64 " members=%" PRIu64
	       " in_flight=%" PRIu64 " parked=%" PRIu64 " delivered=%" PRIu64 " acked=%" PRIu64
	       " redelivered=%" PRIu64 "\n",
	       ack, cfg->max_deliveries, ci->checkpoint, ci->members, ci->in_flight, ci->parked,
	       ci->delivered, ci->acked, ci->redelivered);
}

static int run_consumer_create(struct cli *cli)
{
	const struct sub_args *a = cli->args;
	enum wb_target target;
	int rc = target_connect(cli, a, &target);
	if (rc != 0)
		return rc;
	struct wb_consumer_args cargs = {
	        .name = cli->pos.v[0],
	        .target = target,
	        .stream = a->stream,
	        .stream_prefix = a->prefix,
	        .types = a->types.v,
	        .ntypes = a->types.n,
	        .from = a->from.from,
	        .position = a->from.position,
	        .ack_timeout_ms = a->ack_timeout_ms,
	        .max_deliveries = (uint32_t)a->max_deliveries,
	};
	Whizbang__V1__ConsumerInfo *ci;
	rc = wb_create_consumer(cli->client, &cargs, &ci);
	if (rc != 0)
		return cli_report_client(cli, rc);
	print_consumer(cli, ci);
	wb_consumer_info_free(ci);
	return 0;
}

static int run_consumer_list(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__ConsumerList *list;
	rc = wb_list_consumers(cli->client, &list);
	if (rc != 0)
		return cli_report_client(cli, rc);
	for (size_t k = 0; k < list->n_consumers; k++)
		print_consumer(cli, list->consumers[k]);
	if (list->n_consumers == 0 && !cli->json)
		puts("(no consumer groups)");
	wb_consumer_list_free(list);
	return 0;
}

static int run_consumer_delete(struct cli *cli)
{
	const char *name = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = wb_delete_consumer(cli->client, name);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		fputs("{\"deleted\":", stdout);
		cli_json_cstr(name);
		fputs("}\n", stdout);
	} else {
		fputs("deleted ", stdout);
		cli_put_cstr(name);
		putchar('\n');
	}
	return 0;
}

struct read_group_args {
	uint64_t count;
	uint64_t wait_ms;
	bool ack;
};

static const struct cli_opt consumer_read_opts[] = {
        {"--count", "N", CLI_UINT_AT(struct read_group_args, count, 1, UINT32_MAX), .dflt = "10",
         .bad = "needs a number from 1", .help = "print up to N events"},
        {"--ack", NULL, CLI_FLAG_AT(struct read_group_args, ack),
         .help = "acknowledge the events printed (else they go back to the group)"},
        {"--wait-ms", "MS", CLI_UINT_AT(struct read_group_args, wait_ms, 0, INT32_MAX),
         .dflt = "1000", .bad = "needs a number of milliseconds",
         .help = "how long to wait for each event before deciding the group has no more"},
        {0},
};

/* Joins the group, prints up to a->count events, acks them with --ack, and
 * leaves (which hands unacked events back at once). ids holds a->count. */
static int read_group(struct cli *cli, const char *name, const struct read_group_args *a,
                      uint8_t (*ids)[16])
{
	uint64_t sub;
	int rc = wb_join_consumer(cli->client, name, (uint32_t)a->count, &sub);
	if (rc != 0)
		return cli_report_client(cli, rc);
	size_t n = 0;
	while (n < a->count) {
		Whizbang__V1__SubscriptionItem *it;
		rc = wb_next_item(cli->client, (int)a->wait_ms, &it);
		if (rc == WB_E_TIMEOUT) {
			rc = 0;
			break;
		}
		if (rc != 0)
			break;
		bool caught_up = it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP;
		if (it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT) {
			cli_print_recorded(cli, it->event, it->delivery != 0 ? it->delivery : 1,
			                   NULL);
			if (it->event->id.len == 16)
				memcpy(ids[n], it->event->id.data, 16);
			n++;
		}
		wb_item_free(it);
		if (caught_up)
			break;
	}
	uint64_t checkpoint = 0;
	if (rc == 0 && a->ack && n != 0)
		rc = wb_ack(cli->client, name, (const uint8_t(*)[16])ids, n, &checkpoint);
	if (rc == 0)
		rc = wb_unsubscribe(cli->client, sub);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (a->ack && n != 0) {
		if (cli->json)
			printf("{\"acked\":%zu,\"checkpoint\":%" PRIu64 "}\n", n, checkpoint);
		else
			printf("acked %zu, checkpoint %" PRIu64 "\n", n, checkpoint);
	}
	return 0;
}

static int run_consumer_read(struct cli *cli)
{
	const struct read_group_args *a = cli->args;
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	uint8_t(*ids)[16] = calloc((size_t)a->count, 16);
	if (ids == NULL)
		return cli_report(cli, WB_E_NOMEM, "no memory for the event ids");
	rc = read_group(cli, cli->pos.v[0], a, ids);
	free(ids);
	return rc;
}

struct settle_args {
	enum wb_nack_action action;
	const char *reason;
};

static int parse_action(const char *v, void *field)
{
	static const struct cli_word words[] = {
	        {"retry", WB_NACK_RETRY},
	        {"park", WB_NACK_PARK},
	        {"skip", WB_NACK_SKIP},
	        {NULL, 0},
	};
	int action;
	if (cli_word(v, words, &action) != 0)
		return WB_E_INVAL;
	*(enum wb_nack_action *)field = (enum wb_nack_action)action;
	return 0;
}

static const struct cli_opt consumer_nack_opts[] = {
        {"--action", "retry|park|skip", CLI_PARSE_AT(struct settle_args, action, parse_action),
         .required = true, .bad = "takes retry, park or skip",
         .help = "deliver the events again, park them until replay-parked, or give up on "
                 "them"},
        {"--reason", "R", CLI_TEXT_AT(struct settle_args, reason),
         .help = "why, kept with a parked event"},
        {0},
};

/* consumer ack NAME ID... and consumer nack NAME ID... --action A. */
static int run_consumer_settle(struct cli *cli)
{
	const struct settle_args *a = cli->args;
	bool nack = strcmp(cli->cmd->name, "nack") == 0;
	const char *name = cli->pos.v[0];
	size_t n = cli->pos.n - 1;
	if (n == 0)
		return cli_usage_error(cli, "consumer %s needs at least one event ID",
		                       cli->cmd->name);
	uint8_t(*ids)[16] = calloc(n, 16);
	if (ids == NULL)
		return cli_report(cli, WB_E_NOMEM, "no memory for the event ids");
	int rc = 0;
	for (size_t k = 0; k < n && rc == 0; k++)
		if (wb_uuid_parse(cli->pos.v[k + 1], ids[k]) != 0)
			rc = cli_usage_error(cli, "consumer %s: \"%s\" is not an event id (a UUID)",
			                     cli->cmd->name, cli->pos.v[k + 1]);
	if (rc == 0)
		rc = cli_connect(cli);
	uint64_t checkpoint;
	const uint8_t(*cids)[16] = (const uint8_t(*)[16])ids;
	if (rc == 0) {
		rc = nack ? wb_nack(cli->client, name, cids, n, a->action, a->reason, &checkpoint)
		          : wb_ack(cli->client, name, cids, n, &checkpoint);
		if (rc != 0)
			rc = cli_report_client(cli, rc);
	}
	if (rc == 0 && cli->json)
		printf("{\"%s\":%zu,\"checkpoint\":%" PRIu64 "}\n", nack ? "nacked" : "acked", n,
		       checkpoint);
	else if (rc == 0)
		printf("%s %zu, checkpoint %" PRIu64 "\n", nack ? "nacked" : "acked", n,
		       checkpoint);
	free(ids);
	return rc;
}

static int run_consumer_parked(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	uint64_t from = 0;
	size_t total = 0;
	for (;;) {
		Whizbang__V1__ParkedList *list;
		rc = wb_list_parked(cli->client, cli->pos.v[0], from, 0, &list);
		if (rc != 0)
			return cli_report_client(cli, rc);
		for (size_t k = 0; k < list->n_events; k++) {
			const Whizbang__V1__ParkedEvent *p = list->events[k];
			if (p->event == NULL)
				continue;
			cli_print_recorded(cli, p->event, p->deliveries != 0 ? p->deliveries : 1,
			                   p);
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

static int run_consumer_replay(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	uint64_t replayed;
	rc = wb_replay_parked(cli->client, cli->pos.v[0], &replayed);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json)
		printf("{\"replayed\":%" PRIu64 "}\n", replayed);
	else
		printf("replayed %" PRIu64 "\n", replayed);
	return 0;
}

/* A consumer subcommand whose first argument is the group's NAME. */
#define CONSUMER(sub, args_, max, opts_, size_, run_, help_)                                       \
	{                                                                                          \
		.group = "consumer", .name = (sub),                                                \
		CLI_ARGS((args_), 1, (max), "a NAME", "one NAME"), .opts = (opts_),                \
		.size = (size_), .run = (run_), .help = (help_)                                    \
	}

const struct cli_command cli_sub_commands[] = {
        {.name = "subscribe",
         CLI_OPTS(subscribe_opts, struct sub_args),
         .run = run_subscribe,
         .help = "print stored items from P (default: start), a line when caught up, then "
                 "live items until interrupted (Ctrl-C unsubscribes; exit status 0) or --count "
                 "events"},
        CONSUMER("create", "NAME", 1, consumer_create_opts, sizeof(struct sub_args),
                 run_consumer_create, "create a durable consumer group"),
        CONSUMER("delete", "NAME", 1, NULL, 0, run_consumer_delete,
                 "delete a group, its checkpoint and its parked events"),
        {.group = "consumer",
         .name = "list",
         .run = run_consumer_list,
         .help = "list the groups with their figures"},
        CONSUMER("read", "NAME", 1, consumer_read_opts, sizeof(struct read_group_args),
                 run_consumer_read,
                 "join the group and print up to N events with their delivery count; --ack "
                 "acknowledges them, else they return to the group"),
        CONSUMER("ack", "NAME ID...", SIZE_MAX, NULL, 0, run_consumer_settle,
                 "acknowledge events by id; prints the group's checkpoint"),
        CONSUMER("nack", "NAME ID...", SIZE_MAX, consumer_nack_opts, sizeof(struct settle_args),
                 run_consumer_settle,
                 "settle events by id without handling them; prints the group's checkpoint"),
        CONSUMER("parked", "NAME", 1, NULL, 0, run_consumer_parked, "list the parked events"),
        CONSUMER("replay-parked", "NAME", 1, NULL, 0, run_consumer_replay,
                 "hand every parked event back to the group"),
        {0},
};
