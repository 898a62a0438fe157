/* Command lines read from tables: the parser and the help of the whizbang
 * tool's commands (cli.h) and of whizbang-bench's subcommands (bench/).
 *
 * A command is a row of struct cli_command: its name, its positional
 * arguments, a table of its options (struct cli_opt: name, type, bounds,
 * default, meaning) and what it does. One parser (cli_read_args) reads any
 * command's arguments from its table into the struct the table describes,
 * and the help (synopsis, option list with defaults) is written from the
 * same table, as whizbangd's settings are from server/config.c's table.
 *
 * Compiled into its own library (client/meson.build: wbcliopts), which needs
 * only proto's parse.h and wb_error.h: numbers, counts, sizes and durations
 * mean the same here as on whizbangd's command line. */
#ifndef WB_CLI_OPTS_H
#define WB_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit status of a usage error (0: success, 1: the command failed). */
enum { EXIT_USAGE = 2 };

/* Values in the order given: positional arguments and repeated options. */
struct cli_list {
	const char **v;
	size_t n;
};

enum cli_type {
	CLI_FLAG,     /* takes no value; sets a bool */
	CLI_TEXT,     /* the value itself, a const char * (the last one given) */
	CLI_TEXTS,    /* may be repeated: every value in order, a struct cli_list */
	CLI_UINT,     /* digits: an unsigned integer in [min, max] */
	CLI_COUNT,    /* digits with k, M or G (10^3, 10^6, 10^9): in [min, max] */
	CLI_SIZE,     /* digits with K, M, G or T (powers of 1024), in bytes */
	CLI_DURATION, /* digits with ms, s, m, h or d, as milliseconds */
	CLI_PARSE,    /* read by the option's parse function; with arg NULL it
	               * takes no value and parse gets NULL */
};

struct cli_opt {
	/* With its dashes: "--limit". */
	const char *name;
	/* What the value is called in the help ("N"); NULL: it takes none. */
	const char *arg;
	enum cli_type type;
	/* The field of the command's argument struct that the option fills. */
	size_t offset;
	/* CLI_UINT, CLI_COUNT, CLI_SIZE, CLI_DURATION: the size of that field,
	 * a uint32_t or a uint64_t (the _AT macros below set it). */
	size_t width;
	/* 1 + the offset of a bool set when the option is given; 0: none. */
	size_t given;
	uint64_t min, max;
	/* Parsed like a given value before the arguments are read (NULL: the
	 * field stays zero); shown in the help. */
	const char *dflt;
	/* The command needs it; the help shows it without brackets. */
	bool required;
	/* One of the consecutive options marked alt must be given, and only
	 * one: "(--all | --stream S | --ledger)". */
	bool alt;
	/* CLI_PARSE: reads value into field; 0, or WB_E_INVAL for a bad
	 * value. */
	int (*parse)(const char *value, void *field);
	/* How the usage error for a bad value goes on after the name: "needs a
	 * number of milliseconds" in "--wait-ms needs a number of
	 * milliseconds, not "x"". NULL: "needs a number", "needs a size" or
	 * "needs a duration". A number of the right form outside [min, max]
	 * is told the bounds too: "needs a number from 1 to 1024". */
	const char *bad;
	/* What the option does, for the help. */
	const char *help;
};

/* Shorthands for the rows of a table of struct cli_opt. */
#define CLI_AT(T, f) .offset = offsetof(T, f)
#define CLI_FLAG_AT(T, f) .type = CLI_FLAG, CLI_AT(T, f)
#define CLI_TEXT_AT(T, f) .type = CLI_TEXT, CLI_AT(T, f)
#define CLI_TEXTS_AT(T, f) .type = CLI_TEXTS, CLI_AT(T, f)
#define CLI_NUMBER_AT(kind, T, f, lo, hi)                                                          \
	.type = (kind), CLI_AT(T, f), .width = sizeof(((T *)0)->f), .min = (lo), .max = (hi)
#define CLI_UINT_AT(T, f, lo, hi) CLI_NUMBER_AT(CLI_UINT, T, f, lo, hi)
#define CLI_COUNT_AT(T, f, lo, hi) CLI_NUMBER_AT(CLI_COUNT, T, f, lo, hi)
#define CLI_SIZE_AT(T, f, lo, hi) CLI_NUMBER_AT(CLI_SIZE, T, f, lo, hi)
#define CLI_DURATION_AT(T, f, lo, hi) CLI_NUMBER_AT(CLI_DURATION, T, f, lo, hi)
#define CLI_PARSE_AT(T, f, fn) .type = CLI_PARSE, CLI_AT(T, f), .parse = (fn)
#define CLI_GIVEN(T, f) .given = offsetof(T, f) + 1

/* The whizbang tool's state (cli.h), which its commands run with. */
struct cli;

struct cli_command {
	/* A group ("consumer", "index") whose subcommand name is; NULL for a
	 * command of its own. */
	const char *group;
	const char *name;
	/* The positional arguments, for the help ("STREAM", "TYPE ID"). */
	const char *args;
	/* How many it takes (max SIZE_MAX: any number), and the words of the
	 * usage errors: "append needs <needs>" with fewer, "append takes
	 * <takes>, not also "x"" with more. */
	size_t min_args, max_args;
	const char *needs;
	const char *takes;
	/* Its positional arguments may start with '-' (token ids are
	 * base64url): an argument that names no option is one, rather than
	 * an unknown option. */
	bool dash_args;
	/* Its options, ended by a row with a NULL name; NULL for none. */
	const struct cli_opt *opts;
	/* The size of the argument struct the options fill (0: none). */
	size_t size;
	/* The whizbang tool's commands: runs the command with its arguments
	 * in cli->args and cli->pos: 0, 1 when it failed (reported), or
	 * EXIT_USAGE (reported). NULL in a program that runs its commands
	 * another way (whizbang-bench). */
	int (*run)(struct cli *cli);
	/* What it does, in a sentence or two, for the help. */
	const char *help;
};

/* The positional arguments in a row of struct cli_command: what the help
 * calls them, how many (hi SIZE_MAX: any number), and the words of the
 * usage errors. */
#define CLI_ARGS(names, lo, hi, needs_, takes_)                                                    \
	.args = (names), .min_args = (lo), .max_args = (hi), .needs = (needs_), .takes = (takes_)

/* The options in a row of struct cli_command: their table and the struct
 * of type T they fill. */
#define CLI_OPTS(table, T) .opts = (table), .size = sizeof(T)

/* ---------------------------------------------------------------- parsing */

/* Whether a is an option: "-" and at least one more character. */
bool cli_is_option(const char *a);

/* A word an option takes, and the value it stands for. */
struct cli_word {
	const char *word;
	int value;
};

/* Finds v among words (ended by a NULL word): 0 with its value in *value,
 * or WB_E_INVAL with *value untouched. For the parse functions of options
 * that take words ("--ack durable|applied"). */
int cli_word(const char *v, const struct cli_word *words, int *value);

/* Sets every option of table that has a default in base. Aborts on a table
 * that is a bug: a default its own option refuses, a number field that is
 * neither a uint32_t nor a uint64_t or cannot hold max, more rows than the
 * parser counts. */
void cli_defaults(const struct cli_opt *table, void *base);

/* The option of table (NULL: none) that a names, as "--name" or, for one
 * that takes a value, "--name=VALUE"; *value then receives what follows
 * '=' (NULL without). NULL when a names none. */
const struct cli_opt *cli_find_opt(const struct cli_opt *table, const char *a, const char **value);

/* Reads option o, which argv[*i] names, into base: value (NULL: the next
 * argument, and *i moves past it). Returns 0; EXIT_USAGE with the reason in
 * why[0..len); or WB_E_NOMEM (why untouched) when a list cannot grow. */
int cli_read_opt(const struct cli_opt *o, void *base, const char *value, int argc, char **argv,
                 int *i, char *why, size_t len);

/* Reads the arguments argv[i..argc) of cmd: its options into args (the
 * caller's struct of cmd->size bytes, zeroed; defaults are applied here),
 * the options of globals (NULL: none) into gbase, everything else (and all
 * after "--") into *pos (NULL when cmd->max_args is 0), then checks the
 * counts of positional arguments, the required options and the
 * alternatives. Returns 0; EXIT_USAGE with the reason in why[0..len); or
 * WB_E_NOMEM. Keeps pointers into argv in args and *pos; free their lists
 * with cli_free_args() whatever this returns. */
int cli_read_args(const struct cli_command *cmd, void *args, struct cli_list *pos,
                  const struct cli_opt *globals, void *gbase, int argc, char **argv, int i,
                  char *why, size_t len);

/* Frees the lists cli_read_args() allocated in args and *pos (pos may be
 * NULL); not args itself. */
void cli_free_args(const struct cli_command *cmd, void *args, struct cli_list *pos);

/* ---------------------------------------------------------------- help */

/* Appends fmt to the text in buf[0..len) that has *used bytes, moving
 * *used; the text is cut short (and stays NUL-terminated) when full. */
__attribute__((format(printf, 4, 5))) void cli_append(char *buf, size_t len, size_t *used,
                                                      const char *fmt, ...);

/* Appends o as the help writes it: "--limit N", or "--json". */
void cli_append_opt(char *buf, size_t len, size_t *used, const struct cli_opt *o);

/* The synopsis of cmd ("append STREAM --type T ..."), written from column
 * col (the caller wrote that much of the line), wrapped at 79 columns with
 * continuation lines under its first argument, without the line's end;
 * returns the column it ended at. */
size_t cli_put_synopsis(FILE *f, const struct cli_command *cmd, size_t col);

/* The options of table, one a line with their meaning and default. */
void cli_put_options(FILE *f, const struct cli_opt *table);

/* Prints text wrapped at 79 columns, every line indented by indent spaces
 * (the first by first_indent: the caller may have written that much). */
void cli_put_wrapped(FILE *f, const char *text, size_t first_indent, size_t indent);

/* A command's own help: "usage: <program> <synopsis>", what it does, and
 * its options under "Options:". */
void cli_put_command_help(FILE *f, const char *program, const struct cli_command *cmd);

#endif
