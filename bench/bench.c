/* whizbang-bench: load generators for whizbangd (appends, lease cycles), the
 * raw-LMDB baseline they are measured against, the projections' explosion,
 * scan and replay figures, and the append load beside hostile clients. See
 * docs/BENCHMARKS.md.
 *
 * Every subcommand is a row of the table below; its command line is read
 * from its option table (cli_opts.h) and its help is written from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "wb_error.h"

#define PROGRAM "whizbang-bench"

static const struct bench_command *const commands[] = {
        &bench_append_command,  &bench_lease_command,     &bench_raw_command,
        &bench_explode_command, &bench_subscribe_command, &bench_noisy_command,
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	for (size_t k = 0; k < NCOMMANDS; k++) {
		fputs(k == 0 ? "usage: " PROGRAM " " : "       " PROGRAM " ", f);
		cli_put_synopsis(f, &commands[k]->line, strlen("usage: " PROGRAM " "));
		fputc('\n', f);
	}
	fputs("       " PROGRAM " SUBCOMMAND --help\n", f);
}

static bool is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Whether argv[i..argc) asks for the help: --help or -h before "--",
 * except as the value of an option of table. */
static bool help_asked(const struct cli_opt *table, int argc, char **argv, int i)
{
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *value;
		const struct cli_opt *o = cli_find_opt(table, argv[i], &value);
		if (o != NULL && o->arg != NULL && value == NULL)
			i++;
		else if (is_help(argv[i]))
			return true;
	}
	return false;
}

/* Reads the command line of c from argv[2..argc) and runs it. */
static int run_command(const struct bench_command *c, int argc, char **argv)
{
	if (help_asked(c->line.opts, argc, argv, 2)) {
		cli_put_command_help(stdout, PROGRAM, &c->line);
		return 0;
	}
	void *opts = calloc(1, c->line.size);
	if (opts == NULL) {
		fprintf(stderr, PROGRAM ": %s\n", wb_strerror(WB_E_NOMEM));
		return 1;
	}
	char why[256];
	int rc = cli_read_args(&c->line, opts, NULL, NULL, NULL, argc, argv, 2, why, sizeof(why));
	if (rc == 0) {
		rc = c->run(opts);
	} else if (rc == EXIT_USAGE) {
		fprintf(stderr, PROGRAM ": %s\n\n", why);
		cli_put_command_help(stderr, PROGRAM, &c->line);
	} else {
		fprintf(stderr, PROGRAM ": %s\n", wb_strerror(rc));
		rc = 1;
	}
	cli_free_args(&c->line, opts, NULL);
	free(opts);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	for (size_t k = 0; k < NCOMMANDS; k++)
		if (strcmp(cmd, commands[k]->line.name) == 0)
			return run_command(commands[k], argc, argv);
	if (strcmp(cmd, "help") == 0 || is_help(cmd)) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, PROGRAM ": unknown subcommand '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
