/* The whizbang command-line tool's shared parts; private to client/.
 *
 * Every command is a row of a table (struct cli_command): its name, its
 * positional arguments, a table of its options (struct cli_opt: name, type,
 * bounds, default, meaning), the function that runs it, and what it does.
 * One parser (cli_parse) reads any command's arguments from its table, and
 * the help texts, the overview and each command's --help, are written from
 * the same tables, as whizbangd's settings are from server/config.c's
 * table. The commands live by group in cli_events.c, cli_leases.c,
 * cli_proj.c, cli_subs.c and cli_admin.c, each exporting its table; cli.c
 * holds main, the global options and the list of groups. cli_out.c holds
 * the output helpers: text for people, JSON for programs, and errors. */
#ifndef WB_CLI_H
#define WB_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "optext.h"
#include "wb.h"

/* Exit status of a usage error (0: success, 1: the command failed). */
enum { EXIT_USAGE = 2 };

#define CLI_DEFAULT_TIMEOUT_MS 30000

/* Values in the order given: positional arguments and repeated options. */
struct cli_list {
	const char **v;
	size_t n;
};

struct cli_command;

struct cli {
	/* The global options. */
	const char *server;
	bool json;
	uint64_t timeout_ms;
	/* --timeout-ms was given (verify has a longer default otherwise). */
	bool timeout_set;
	/* The command being run (NULL before it is known), for usage errors,
	 * and its arguments: the struct its options fill (cmd->size bytes),
	 * and its positional arguments. */
	const struct cli_command *cmd;
	void *args;
	struct cli_list pos;
	/* Connected by cli_connect(); main closes it. */
	struct wb_client *client;
	/* Why the parser refused the command line (EXIT_USAGE), for main to
	 * print with the usage. */
	char why[256];
};

/* ---------------------------------------------------------------- option tables */

enum cli_type {
	CLI_FLAG,     /* takes no value; sets a bool */
	CLI_TEXT,     /* the value itself, a const char * (the last one given) */
	CLI_TEXTS,    /* may be repeated: every value in order, a struct cli_list */
	CLI_UINT,     /* digits, a uint64_t in [min, max] */
	CLI_DURATION, /* digits with ms, s, m, h or d (proto/parse.h), as
	               * milliseconds: a uint64_t in [min, max] */
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
	 * milliseconds, not "x"". NULL: "needs a number" or "needs a
	 * duration". */
	const char *bad;
	/* What the option does, for the help. */
	const char *help;
};

/* Shorthands for the rows of a table of struct cli_opt. */
#define CLI_AT(T, f) .offset = offsetof(T, f)
#define CLI_FLAG_AT(T, f) .type = CLI_FLAG, CLI_AT(T, f)
#define CLI_TEXT_AT(T, f) .type = CLI_TEXT, CLI_AT(T, f)
#define CLI_TEXTS_AT(T, f) .type = CLI_TEXTS, CLI_AT(T, f)
#define CLI_UINT_AT(T, f, lo, hi) .type = CLI_UINT, CLI_AT(T, f), .min = (lo), .max = (hi)
#define CLI_DURATION_AT(T, f, lo, hi) .type = CLI_DURATION, CLI_AT(T, f), .min = (lo), .max = (hi)
#define CLI_PARSE_AT(T, f, fn) .type = CLI_PARSE, CLI_AT(T, f), .parse = (fn)
#define CLI_GIVEN(T, f) .given = offsetof(T, f) + 1

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
	/* Its options, ended by a row with a NULL name; NULL for none. */
	const struct cli_opt *opts;
	/* The size of the argument struct the options fill (0: none). */
	size_t size;
	/* Runs the command with its arguments in cli->args and cli->pos: 0, 1
	 * when it failed (reported), or EXIT_USAGE (reported). */
	int (*run)(struct cli *cli);
	/* What it does, in a sentence or two, for the help. */
	const char *help;
};

/* The global options (cli.c): --server, --json, --timeout-ms. */
extern const struct cli_opt cli_global_opts[];

/* The positional arguments in a row of struct cli_command: what the help
 * calls them, how many (hi SIZE_MAX: any number), and the words of the
 * usage errors. */
#define CLI_ARGS(names, lo, hi, needs_, takes_)                                                    \
	.args = (names), .min_args = (lo), .max_args = (hi), .needs = (needs_), .takes = (takes_)

/* One STREAM, the positional argument of many commands. */
#define CLI_ONE_STREAM CLI_ARGS("STREAM", 1, 1, "a STREAM", "one stream")

/* The options in a row of struct cli_command: their table and the struct
 * of type T they fill. */
#define CLI_OPTS(table, T) .opts = (table), .size = sizeof(T)

/* The tables of the command groups; each ends with a row whose name is
 * NULL. */
extern const struct cli_command cli_event_commands[];
extern const struct cli_command cli_lease_commands[];
extern const struct cli_command cli_proj_commands[];
extern const struct cli_command cli_sub_commands[];
extern const struct cli_command cli_admin_commands[];

/* Appends o as the help writes it: "--limit N", or "--json". */
void cli_append_opt(char *buf, size_t len, size_t *used, const struct cli_opt *o);

/* A word an option takes, and the value it stands for. */
struct cli_word {
	const char *word;
	int value;
};

/* Finds v among words (ended by a NULL word): 0 with its value in *value,
 * or WB_E_INVAL with *value untouched. For the parse functions of options
 * that take words ("--ack durable|applied"). */
int cli_word(const char *v, const struct cli_word *words, int *value);

/* Sets every option of table that has a default in base. */
void cli_defaults(const struct cli_opt *table, void *base);

/* The option of table (NULL: none) that a names, as "--name" or, for one
 * that takes a value, "--name=VALUE"; *value then receives what follows
 * '=' (NULL without). NULL when a names none. */
const struct cli_opt *cli_find_opt(const struct cli_opt *table, const char *a, const char **value);

/* Reads option o, which argv[*i] names, into base: value (NULL: the next
 * argument, and *i moves past it). Returns 0, or EXIT_USAGE with the reason
 * in cli->why. */
int cli_apply_opt(struct cli *cli, const struct cli_opt *o, void *base, const char *value, int argc,
                  char **argv, int *i);

/* Reads the arguments argv[i..argc) of cli->cmd: its options into
 * cli->args (allocated here, zeroed, defaults applied), the options of
 * globals into cli, everything else (and all after "--") into cli->pos,
 * then checks the counts, the required options and the alternatives.
 * Returns 0, EXIT_USAGE with the reason in cli->why, or 1 (reported) when
 * out of memory. The caller frees with cli_args_free() whatever this
 * returns. */
int cli_parse(struct cli *cli, const struct cli_opt *globals, int argc, char **argv, int i);

/* Frees what cli_parse() allocated. */
void cli_args_free(struct cli *cli);

/* Whether a is an option: "-" and at least one more character. */
bool cli_is_option(const char *a);

/* Appends fmt to the text in buf[0..len) that has *used bytes, moving
 * *used; the text is cut short (and stays NUL-terminated) when full. */
__attribute__((format(printf, 4, 5))) void cli_append(char *buf, size_t len, size_t *used,
                                                      const char *fmt, ...);

/* The help: the synopsis of cmd ("append STREAM --type T ..."), written
 * from column col (the caller wrote that much of the line), wrapped at 79
 * columns with continuation lines under its first argument, without the
 * line's end; returns the column it ended at.
 * And the list of the options of table, one a line with their meaning and
 * default. */
size_t cli_put_synopsis(FILE *f, const struct cli_command *cmd, size_t col);
void cli_put_options(FILE *f, const struct cli_opt *table);

/* Prints text wrapped at 79 columns, every line indented by indent spaces
 * (the first by first_indent: the caller may have written that much). */
void cli_put_wrapped(FILE *f, const char *text, size_t first_indent, size_t indent);

/* The usage text: the command's own with cmd, else the overview (cli.c). */
void cli_put_usage(FILE *f, const struct cli_command *cmd);

/* Prints "whizbang: <message>" and the usage of cli->cmd to stderr;
 * returns EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) int cli_usage_error(const struct cli *cli, const char *fmt,
                                                          ...);

/* ---------------------------------------------------------------- output */

/* Prints s[0..n) as one line of text: control characters and invalid bytes
 * escaped, and after max characters the rest as "…". */
void cli_put_text(const uint8_t *s, size_t n, size_t max);
void cli_put_cstr(const char *s);
/* Data for people: text when printable, else hex, shortened either way. */
void cli_put_data(const uint8_t *s, size_t n);
/* Text of several lines on one: its non-empty lines, unindented, joined
 * with "; ". */
void cli_put_one_line(const char *s);
void cli_put_hex(const ProtobufCBinaryData *b);

/* s as a JSON string (invalid UTF-8 becomes U+FFFD); bytes as
 * ,"key":"text" when UTF-8, else ,"key_base64":"...". */
void cli_json_str(const uint8_t *s, size_t n);
void cli_json_cstr(const char *s);
void cli_json_bytes(const char *key, const uint8_t *s, size_t n);
void cli_base64(const uint8_t *s, size_t n);

/* ISO-8601 UTC: with microseconds (2024-05-01T12:00:00.123456Z) or with
 * milliseconds (2024-05-01T12:00:00.123Z). */
void cli_format_time(uint64_t us, char out[40]);
void cli_format_time_ms(uint64_t ms, char out[40]);

/* names[value] when value indexes the array names and it has a name
 * there, else dflt: the words for the values of a protocol enum. */
#define CLI_NAME(names, value, dflt)                                                               \
	cli_name_of((names), sizeof(names) / sizeof((names)[0]), (int)(value), (dflt))
const char *cli_name_of(const char *const *names, size_t n, int value, const char *dflt);

/* The error name of a code the server sent ("OK" for none), which may be
 * one this build does not know. */
const char *cli_code_name(Whizbang__V1__ErrorCode code);

/* A growing buffer for the text that optext's formatters write; free p. */
struct cli_tbuf {
	char *p;
	size_t cap;
};
const char *cli_value_text(const Whizbang__V1__Value *v, struct cli_tbuf *b);
const char *cli_explosion_text(const Whizbang__V1__Explosion *x, size_t max_ids,
                               struct cli_tbuf *b);
const char *cli_op_text(const Whizbang__V1__Op *op, struct cli_tbuf *b);

/* Reports a failed command ("error: CODE: message" on stderr, and with
 * --json an object on stdout) and returns 1; msg NULL or "": the code's
 * text. */
int cli_report(const struct cli *cli, int code, const char *msg);
__attribute__((format(printf, 3, 4))) int cli_reportf(const struct cli *cli, int code,
                                                      const char *fmt, ...);
/* cli_report() with the client's message. */
int cli_report_client(const struct cli *cli, int code);
/* Reports text that does not parse as INVALID_EXPRESSION with the column
 * and what was expected there (suffix follows the message), then the text
 * with a caret under the column; returns status. */
int cli_report_parse(const struct cli *cli, const char *text, const struct optext_error *err,
                     const char *suffix, int status);

/* Connects cli->client to the server with the global options; 0, or 1
 * after reporting. */
int cli_connect(struct cli *cli);

/* ---------------------------------------------------------------- printers shared by groups */

/* Prints e; a delivery count above 0 (durable consumers) and, for a parked
 * event (parked not NULL), when and why it was parked follow its fields. */
void cli_print_event(const struct cli *cli, const struct wb_event *e, uint32_t delivery,
                     const Whizbang__V1__ParkedEvent *parked);
/* The same for an event as the protocol carries it. */
void cli_print_recorded(const struct cli *cli, const Whizbang__V1__RecordedEvent *r,
                        uint32_t delivery, const Whizbang__V1__ParkedEvent *parked);

/* Prints one ledger entry, with at most max_ids ids of each explosion. */
void cli_print_entry(const struct cli *cli, const Whizbang__V1__LedgerEntry *e, size_t max_ids,
                     struct cli_tbuf *ob, struct cli_tbuf *xb);
/* ledger and subscriptions list this many ids of an explosion by default. */
#define CLI_LEDGER_IDS 8

/* Prints a CommitResult with the ops that were sent; returns 0, or 1 after
 * reporting that applying failed. */
int cli_print_commit(const struct cli *cli, const Whizbang__V1__CommitResult *res,
                     const Whizbang__V1__OpList *ops, bool applied);

/* Operations given as text (--op, or apply's arguments), parsed into one
 * OpList. */
struct cli_ops {
	Whizbang__V1__OpList **lists;
	Whizbang__V1__Op **all;
	size_t n;
	Whizbang__V1__OpList merged;
};

/* Parses texts into ops->merged, in order. A text that does not parse is
 * reported as INVALID_EXPRESSION with its column (what names the source
 * when there are several: "--op number 2") and answered with bad_status.
 * Free with cli_ops_free() whatever this returns. */
int cli_ops_parse(const struct cli *cli, const struct cli_list *texts, const char *what,
                  int bad_status, struct cli_ops *ops);
void cli_ops_free(struct cli_ops *ops);

#endif
