/* whizbang: the command-line client of whizbangd, built on libwhizbang.
 *
 * One invocation is one connection and one command. Output is one line per
 * item, as text for people or, with --json, one JSON object per line for
 * programs. Exit status: 0 on success, 1 when the command failed (the reason
 * goes to stderr as "error: CODE: message"), 2 for a usage error.
 *
 * This file holds main, the global options and the list of command groups;
 * the commands and their option tables are in cli_*.c, and the help is
 * written from those tables (cli.h). */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "wb_version.h"

/* --auth-mechanism's words. */
static int parse_mechanism(const char *value, void *field)
{
	static const struct cli_word words[] = {
	        {"EXTERNAL", CLI_MECH_EXTERNAL},
	        {"SCRAM-SHA-256", CLI_MECH_SCRAM},
	        {NULL, 0},
	};
	return cli_word(value, words, field);
}

/* The options every command takes, before or after its name. */
const struct cli_opt cli_global_opts[] = {
        {"--server", "ADDRESS", CLI_TEXT_AT(struct cli, server),
         .help = "the server: HOST:PORT, whizbang://[USER@]HOST[:PORT] or "
                 "whizbang+unix:///PATH (default: $WHIZBANG_SERVER, else the first of "
                 "$WHIZBANG_SOCKET, ./whizbang-data/whizbangd.sock and "
                 "/var/lib/whizbang/whizbangd.sock that exists, else " WB_DEFAULT_ADDRESS ")"},
        {"--user", "NAME", CLI_TEXT_AT(struct cli, user),
         .help = "log in as NAME with a password: $WHIZBANG_PASSWORD, else asked on the "
                 "terminal (never on the command line)"},
        {"--token-file", "FILE", CLI_TEXT_AT(struct cli, token_file),
         .help = "log in with the API token in FILE (mode 0600 or stricter); with neither "
                 "this nor --user, $WHIZBANG_TOKEN when set"},
        {"--tls", NULL, CLI_FLAG_AT(struct cli, tls),
         .help = "connect with TLS (as a URL's tls=true; each --tls-* flag implies it): the "
                 "server's certificate must verify, or nothing is sent"},
        {"--tls-ca-file", "FILE", CLI_TEXT_AT(struct cli, tls_ca_file),
         .help = "the CA file (PEM) the server's certificate must chain to (tlsCaFile)"},
        {"--tls-server-name", "NAME", CLI_TEXT_AT(struct cli, tls_server_name),
         .help = "the name the server's certificate must carry (tlsServerName; default: the "
                 "host connected to)"},
        {"--tls-cert-file", "FILE", CLI_TEXT_AT(struct cli, tls_cert_file),
         .help = "a client certificate (PEM) for a server that asks for one, with "
                 "--tls-key-file (tlsCertFile)"},
        {"--tls-key-file", "FILE", CLI_TEXT_AT(struct cli, tls_key_file),
         .help = "the client certificate's unencrypted key (tlsKeyFile)"},
        {"--auth-mechanism", "MECH", CLI_PARSE_AT(struct cli, auth_mechanism, parse_mechanism),
         .bad = "takes EXTERNAL or SCRAM-SHA-256",
         .help = "EXTERNAL: log in as the user the client certificate names; SCRAM-SHA-256: "
                 "with --user's password, as without this flag (authMechanism)"},
        {"--json", NULL, CLI_FLAG_AT(struct cli, json), .help = "print one JSON object per line"},
        {"--timeout-ms", "N", CLI_UINT_AT(struct cli, timeout_ms, 0, INT32_MAX),
         CLI_GIVEN(struct cli, timeout_set), .dflt = "30000",
         .bad = "needs a number of milliseconds", .help = "per-call timeout; 0 waits forever"},
        {0},
};

/* The command groups, in the order the overview lists them. */
static const struct section {
	const char *title;
	const struct cli_command *commands;
} sections[] = {
        {"Events", cli_event_commands},
        {"Leases and the ledger", cli_lease_commands},
        {"Projections (entities built from the ledger)", cli_proj_commands},
        {"Subscriptions and consumer groups", cli_sub_commands},
        {"Streams and the server", cli_admin_commands},
        {"Users, roles and tokens (whoami; the others need admin:users)", cli_auth_commands},
        {"TLS certificates (made here: no server is needed)", cli_certs_commands},
};

#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

/* The command name (group NULL) or subcommand name of group; NULL when
 * there is none. */
static const struct cli_command *find_command(const char *group, const char *name)
{
	for (size_t s = 0; s < NSECTIONS; s++)
		for (const struct cli_command *c = sections[s].commands; c->name != NULL; c++)
			if ((group == NULL) == (c->group == NULL) &&
			    (group == NULL || strcmp(c->group, group) == 0) &&
			    strcmp(c->name, name) == 0)
				return c;
	return NULL;
}

static bool is_group(const char *name)
{
	for (size_t s = 0; s < NSECTIONS; s++)
		for (const struct cli_command *c = sections[s].commands; c->name != NULL; c++)
			if (c->group != NULL && strcmp(c->group, name) == 0)
				return true;
	return false;
}

/* The subcommands of group as words: "create, drop or list". */
static void subcommands(const char *group, char *buf, size_t len)
{
	size_t n = 0, k = 0, used = 0;
	for (size_t s = 0; s < NSECTIONS; s++)
		for (const struct cli_command *c = sections[s].commands; c->name != NULL; c++)
			n += c->group != NULL && strcmp(c->group, group) == 0;
	buf[0] = '\0';
	for (size_t s = 0; s < NSECTIONS; s++) {
		for (const struct cli_command *c = sections[s].commands; c->name != NULL; c++) {
			if (c->group == NULL || strcmp(c->group, group) != 0)
				continue;
			const char *sep = k == 0 ? "" : k + 1 == n ? " or " : ", ";
			cli_append(buf, len, &used, "%s%s", sep, c->name);
			k++;
		}
	}
}

/* The global options as the help lists them: "[--server HOST:PORT]
 * [--json] ..." with brackets, else "--server HOST:PORT, --json, ...". */
static void global_words(bool brackets, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (const struct cli_opt *o = cli_global_opts; o->name != NULL; o++) {
		if (o != cli_global_opts)
			cli_append(buf, len, &used, "%s", brackets ? " " : ", ");
		cli_append(buf, len, &used, "%s", brackets ? "[" : "");
		cli_append_opt(buf, len, &used, o);
		cli_append(buf, len, &used, "%s", brackets ? "]" : "");
	}
}

/* One command in the overview: its synopsis, then what it does from column
 * 26 (on the same line when the synopsis leaves room). */
static void put_command(FILE *f, const struct cli_command *c)
{
	fputs("  ", f);
	size_t col = cli_put_synopsis(f, c, 2);
	if (col + 2 > 26) {
		fputc('\n', f);
		col = 0;
	}
	cli_put_wrapped(f, c->help, col, 26);
}

static void put_global_usage(FILE *f)
{
	char words[512];
	global_words(true, words, sizeof(words));
	size_t used = strlen(words);
	cli_append(words, sizeof(words), &used, " COMMAND [ARGS...]");
	fputs("usage: whizbang", f);
	cli_put_wrapped(f, words, strlen("usage: whizbang"), strlen("usage: whizbang "));
}

static void put_overview(FILE *f)
{
	put_global_usage(f);
	for (size_t s = 0; s < NSECTIONS; s++) {
		fprintf(f, "\n%s:\n", sections[s].title);
		for (const struct cli_command *c = sections[s].commands; c->name != NULL; c++)
			put_command(f, c);
	}
	fputs("\n  help [COMMAND]          print this text, or what COMMAND takes and does\n"
	      "\nOptions (before or after the command):\n",
	      f);
	cli_put_options(f, cli_global_opts);
	fputs("  --version               print the version\n"
	      "  --help, -h              print this text, or after a command what it takes\n",
	      f);
	char dur[256];
	snprintf(dur, sizeof(dur),
	         "DUR is a number with %s (a bare number is milliseconds). @FILE reads a value "
	         "from FILE, @- from standard input. A token is the 16 hex digits lease prints. "
	         "--op takes operations in their text form, several separated by ';', for "
	         "example:",
	         parse_units(PARSE_DURATION));
	fputc('\n', f);
	cli_put_wrapped(f, dur, 0, 0);
	fputs("  --op 'upsert Order \"o-1\" {status: \"Paid\", total: 120}'\n"
	      "  --op 'update Order where customer_id == \"c-42\" set status = \"Cancelled\"'\n"
	      "  --op 'create index Order customer_id'\n"
	      "Where clauses: == != < <= > >= in (...) not in (...) exists(f)\n"
	      "starts_with(f, \"p\") and or not ( ), for example\n"
	      "  'customer_id == \"c-42\" and status in (\"Pending\", \"OnHold\") and total >= "
	      "100'\n"
	      "A WHERE or OP that does not parse is refused before anything is sent, with the\n"
	      "column and what was expected there (exit status 2 for apply, query and explain).\n",
	      f);
}

/* A command's own help: its synopsis, what it does, its options, and the
 * global ones. */
static void put_command_usage(FILE *f, const struct cli_command *c)
{
	cli_put_command_help(f, "whizbang", c);
	char words[512], text[600];
	global_words(false, words, sizeof(words));
	snprintf(text, sizeof(text), "Global options: %s (whizbang --help).", words);
	fputc('\n', f);
	cli_put_wrapped(f, text, 0, 0);
}

/* The help of every subcommand of group. */
static void put_group_usage(FILE *f, const char *group)
{
	put_global_usage(f);
	fputc('\n', f);
	for (size_t s = 0; s < NSECTIONS; s++)
		for (const struct cli_command *c = sections[s].commands; c->name != NULL; c++)
			if (c->group != NULL && strcmp(c->group, group) == 0)
				put_command(f, c);
}

/* The help of cmd, else of group, else the overview. */
static void put_help(FILE *f, const struct cli_command *cmd, const char *group)
{
	if (cmd != NULL)
		put_command_usage(f, cmd);
	else if (group != NULL)
		put_group_usage(f, group);
	else
		put_overview(f);
}

void cli_put_usage(FILE *f, const struct cli_command *cmd)
{
	put_help(f, cmd, NULL);
}

int cli_usage_error(const struct cli *cli, const char *fmt, ...)
{
	va_list ap;
	fputs("whizbang: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	cli_put_usage(stderr, cli->cmd);
	return EXIT_USAGE;
}

/* Prints the help that argv asks for with --help or -h (or the version for
 * --version) anywhere before "--", except as an option's value: the tables
 * say which options take one. The help is the command's when argv names
 * one, a group's when it names only the group, else the overview. Returns
 * true when it printed something. */
static bool help_asked(int argc, char **argv)
{
	const struct cli_command *cmd = NULL;
	const char *group = NULL;
	bool named = false;
	for (int k = 1; k < argc; k++) {
		const char *a = argv[k], *value;
		if (strcmp(a, "--") == 0)
			break;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			put_help(stdout, cmd, group);
			return true;
		}
		if (strcmp(a, "--version") == 0) {
			printf("whizbang %s\n", WB_VERSION);
			return true;
		}
		if (!cli_is_option(a)) {
			/* The first word names the command, or its group and then
			 * the second the subcommand. */
			if (named)
				continue;
			if (group == NULL && is_group(a)) {
				group = a;
				continue;
			}
			cmd = find_command(group, a);
			named = true;
			continue;
		}
		const struct cli_opt *o = cmd != NULL ? cli_find_opt(cmd->opts, a, &value) : NULL;
		if (o == NULL)
			o = cli_find_opt(cli_global_opts, a, &value);
		if (o != NULL && o->arg != NULL && value == NULL)
			k++;
	}
	return false;
}

/* help [COMMAND [SUBCOMMAND]]: an unknown name gets the overview, which
 * lists the known ones. */
static int help_command(int argc, char **argv, int i)
{
	const char *group = i < argc && is_group(argv[i]) ? argv[i++] : NULL;
	put_help(stdout, i < argc ? find_command(group, argv[i]) : NULL, group);
	return 0;
}

/* Finds the command argv[*i] names (with a group, and its subcommand after
 * it), moving *i past the names; NULL after a usage error. */
static const struct cli_command *command_of(const struct cli *cli, int argc, char **argv, int *i)
{
	const char *name = argv[(*i)++];
	if (!is_group(name)) {
		const struct cli_command *cmd = find_command(NULL, name);
		if (cmd == NULL)
			cli_usage_error(cli, "unknown command \"%s\"", name);
		return cmd;
	}
	char subs[160];
	subcommands(name, subs, sizeof(subs));
	if (*i >= argc || cli_is_option(argv[*i])) {
		cli_usage_error(cli, "%s needs a subcommand: %s", name, subs);
		return NULL;
	}
	const char *sub = argv[(*i)++];
	const struct cli_command *cmd = find_command(name, sub);
	if (cmd == NULL)
		cli_usage_error(cli, "%s has no subcommand \"%s\" (%s)", name, sub, subs);
	return cmd;
}

/* Reads the global option argv[*i] into cli, moving *i past its value;
 * 0, or EXIT_USAGE with the reason in cli->why. */
static int read_global(struct cli *cli, int argc, char **argv, int *i)
{
	const char *value;
	const struct cli_opt *o = cli_find_opt(cli_global_opts, argv[*i], &value);
	if (o == NULL) {
		snprintf(cli->why, sizeof(cli->why), "unknown option %s", argv[*i]);
		return EXIT_USAGE;
	}
	/* The global options are no lists: nothing to run out of memory. */
	return cli_read_opt(o, cli, value, argc, argv, i, cli->why, sizeof(cli->why));
}

/* Reads the arguments argv[i..argc) of cli->cmd into cli->args (allocated
 * here) and cli->pos, and the global options among them into cli: 0,
 * EXIT_USAGE with the reason in cli->why, or 1 (reported) when out of
 * memory. free_command() frees whatever this allocated. */
static int read_command(struct cli *cli, int argc, char **argv, int i)
{
	const struct cli_command *cmd = cli->cmd;
	if (cmd->size != 0) {
		cli->args = calloc(1, cmd->size);
		if (cli->args == NULL)
			return cli_report(cli, WB_E_NOMEM, "no memory for the arguments");
	}
	int rc = cli_read_args(cmd, cli->args, &cli->pos, cli_global_opts, cli, argc, argv, i,
	                       cli->why, sizeof(cli->why));
	if (rc == WB_E_NOMEM)
		return cli_report(cli, rc, "no memory for the arguments");
	return rc;
}

static void free_command(struct cli *cli)
{
	if (cli->cmd != NULL)
		cli_free_args(cli->cmd, cli->args, &cli->pos);
	free(cli->args);
	cli->args = NULL;
}

int main(int argc, char **argv)
{
	struct cli cli = {.server = getenv("WHIZBANG_SERVER")};
	cli_defaults(cli_global_opts, &cli);
	if (cli.server != NULL && cli.server[0] == '\0')
		cli.server = NULL;
	if (help_asked(argc, argv))
		return 0;
	int i = 1;
	for (; i < argc && cli_is_option(argv[i]); i++)
		if (read_global(&cli, argc, argv, &i) != 0)
			return cli_usage_error(&cli, "%s", cli.why);
	if (i == argc)
		return cli_usage_error(&cli, "no command given");
	if (strcmp(argv[i], "help") == 0)
		return help_command(argc, argv, i + 1);
	const struct cli_command *cmd = command_of(&cli, argc, argv, &i);
	if (cmd == NULL)
		return EXIT_USAGE;
	cli.cmd = cmd;
	int rc = read_command(&cli, argc, argv, i);
	if (rc == EXIT_USAGE)
		cli_usage_error(&cli, "%s", cli.why);
	else if (rc == 0)
		rc = cmd->run(&cli);
	free_command(&cli);
	wb_close(cli.client);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "error: %s: writing the output failed\n", wb_error_name(WB_E_IO));
		return EXIT_FAILURE;
	}
	return rc;
}
