/* The `whizbang` CLI's help and option arity, which come from the commands'
 * option tables (client/cli.h): every command in the overview has a --help
 * with the same synopsis, every option in a synopsis is described, and
 * --help wins after a flag but is the value of an option that takes one —
 * for every option of every command, as the tables say, with no second
 * list. No server is needed: nothing here connects anywhere but a closed
 * port. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

TestSuite(cli_help, .timeout = 300);

/* Where nothing listens, so that a command that gets as far as connecting
 * fails at once. */
#define NOWHERE "--server 127.0.0.1:1 --timeout-ms 2000"

struct run {
	int status;
	char out[65536];
};

/* Runs "$WHIZBANG_CLI args" through sh, stdout into r->out, stderr
 * dropped. args is a fixed string of this file: no quoting needed. */
static void run(struct run *r, const char *args)
{
	cr_assert(getenv("WHIZBANG_CLI") != NULL, "WHIZBANG_CLI is not set");
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "\"$WHIZBANG_CLI\" %s 2>/dev/null </dev/null", args);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(r->out, 1, sizeof(r->out) - 1, p);
	r->out[n] = '\0';
	int st = pclose(p);
	cr_assert(WIFEXITED(st), "%s: did not exit", args);
	r->status = WEXITSTATUS(st);
}

/* The commands of the overview: the first words of its lines "  name ..."
 * (two for a group: "consumer create"), in order. A group is a first word
 * that starts more than one line, so the overview alone says which words
 * are groups. */
static size_t overview_commands(char names[][40], size_t max)
{
	static struct run r;
	run(&r, "--help");
	cr_assert_eq(r.status, 0);
	static char w1[64][20], w2[64][20];
	size_t n = 0;
	for (char *line = strtok(r.out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (strncmp(line, "  ", 2) != 0 || line[2] < 'a' || line[2] > 'z')
			continue;
		cr_assert_lt(n, max);
		cr_assert_lt(n, 64);
		w2[n][0] = '\0';
		sscanf(line + 2, "%19s %19s", w1[n], w2[n]);
		if (strcmp(w1[n], "help") != 0)
			n++;
	}
	for (size_t k = 0; k < n; k++) {
		size_t starts = 0;
		for (size_t j = 0; j < n; j++)
			starts += strcmp(w1[j], w1[k]) == 0;
		bool group = starts > 1;
		snprintf(names[k], 40, "%.19s%s%.19s", w1[k], group ? " " : "", group ? w2[k] : "");
	}
	return n;
}

Test(cli_help, every_command_has_its_help_with_the_overview_synopsis)
{
	static char names[64][40];
	size_t n = overview_commands(names, 64);
	cr_assert_geq(n, 30, "the overview lists %zu commands", n);
	static struct run overview;
	run(&overview, "help");
	for (size_t k = 0; k < n; k++) {
		static struct run r, h;
		char args[128];
		snprintf(args, sizeof(args), "%.39s --help", names[k]);
		run(&r, args);
		cr_assert_eq(r.status, 0, "%s", args);
		char want[64];
		snprintf(want, sizeof(want), "usage: whizbang %.39s", names[k]);
		cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s: %.80s", args, r.out);
		/* The synopsis words are the overview's. */
		char first[256];
		snprintf(first, sizeof(first), "%.*s", (int)strcspn(r.out + 16, "\n"), r.out + 16);
		cr_assert_not_null(strstr(overview.out, first), "%s: \"%s\" is not in the overview",
		                   names[k], first);
		/* help NAME says the same. */
		snprintf(args, sizeof(args), "help %.39s", names[k]);
		run(&h, args);
		cr_assert_eq(h.status, 0);
		cr_assert_str_eq(h.out, r.out, "%s", args);
	}
}

/* The options a command's help lists: name and whether it takes a value. */
struct opt {
	char name[40];
	bool takes_value;
};

static size_t help_options(const char *help, struct opt *opts, size_t max)
{
	const char *p = strstr(help, "\nOptions:\n");
	if (p == NULL)
		return 0;
	size_t n = 0;
	for (p = strchr(p + 1, '\n') + 1; strncmp(p, "  ", 2) == 0 || *p == ' ';
	     p = strchr(p, '\n') + 1) {
		if (strncmp(p, "  --", 4) == 0) {
			cr_assert_lt(n, max);
			size_t len = strcspn(p + 2, " \n");
			snprintf(opts[n].name, sizeof(opts[n].name), "%.*s", (int)len, p + 2);
			/* "  --name ARG   meaning" or "  --name      meaning". */
			const char *after = p + 2 + len;
			opts[n].takes_value =
			        after[0] == ' ' && after[1] != ' ' && after[1] != '\n';
			n++;
		}
	}
	return n;
}

Test(cli_help, help_wins_after_a_flag_and_is_the_value_of_an_option)
{
	static char names[64][40];
	size_t n = overview_commands(names, 64), checked = 0, flags = 0;
	for (size_t k = 0; k < n; k++) {
		static struct run r;
		char args[256];
		snprintf(args, sizeof(args), "%.39s --help", names[k]);
		run(&r, args);
		struct opt opts[32];
		size_t nopts = help_options(r.out, opts, 32);
		for (size_t j = 0; j < nopts; j++) {
			/* Every option the help describes is in the synopsis. */
			const char *usage_end = strstr(r.out, "\n\n");
			cr_assert_not_null(usage_end);
			char *in_usage = strstr(r.out, opts[j].name);
			cr_assert(in_usage != NULL && in_usage < usage_end,
			          "%s: %s not in the synopsis", names[k], opts[j].name);
			static struct run o;
			snprintf(args, sizeof(args), NOWHERE " %.39s %.39s --help", names[k],
			         opts[j].name);
			run(&o, args);
			if (opts[j].takes_value) {
				cr_assert_neq(o.status, 0, "%s: --help was not taken as the value",
				              args);
				cr_assert_null(strstr(o.out, "usage:"), "%s printed help", args);
			} else {
				cr_assert_eq(o.status, 0, "%s: exit %d", args, o.status);
				cr_assert_eq(strncmp(o.out, "usage: whizbang ", 16), 0, "%s", args);
				flags++;
			}
			checked++;
		}
	}
	cr_assert_geq(checked, 50, "%zu options checked", checked);
	cr_assert_geq(flags, 8, "%zu flags checked", flags);
}

/* Negative controls: the same word is a flag for one command and takes a
 * value for another (--ack), and an option that takes a value swallows
 * --help even when it is a global one. */
Test(cli_help, the_arity_is_per_command)
{
	static struct run r;
	run(&r, NOWHERE " consumer read g --ack --help");
	cr_assert_eq(r.status, 0);
	cr_assert_eq(strncmp(r.out, "usage: whizbang consumer read", 29), 0);
	run(&r, NOWHERE " commit 1 --token 0123456789abcdef --ack --help");
	cr_assert_eq(r.status, 2, "commit's --ack takes durable or applied");
	run(&r, NOWHERE " read s --backwards --help");
	cr_assert_eq(r.status, 0);
	run(&r, NOWHERE " read s --from --help");
	cr_assert_eq(r.status, 2);
	run(&r, "--server --help ping");
	cr_assert_eq(r.status, 1, "--help is the server's address: the connect fails");
	run(&r, NOWHERE " read s -- --help");
	cr_assert_neq(r.status, 0, "after --, --help is an argument");
	cr_assert_null(strstr(r.out, "usage:"));
}
