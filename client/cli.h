/* The whizbang command-line tool's shared parts; private to client/.
 *
 * Every command is a row of a table (struct cli_command, cli_opts.h): its
 * name, its positional arguments, a table of its options (struct cli_opt:
 * name, type, bounds, default, meaning), the function that runs it, and
 * what it does. One parser (cli_read_args) reads any command's arguments
 * from its table, and the help texts, the overview and each command's
 * --help, are written from the same tables, as whizbangd's settings are
 * from server/config.c's table. The commands live by group in cli_events.c, cli_leases.c,
 * cli_proj.c, cli_subs.c, cli_admin.c, cli_auth.c and cli_certs.c, each exporting its table;
 * cli.c holds main, the global options and the list of groups. cli_out.c holds
 * the output helpers: text for people, JSON for programs, and errors;
 * cli_conn.c the connection, its credentials and the secrets it reads. */
#ifndef WB_CLI_H
#define WB_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli_opts.h"
#include "optext.h"
#include "wb.h"

#define CLI_DEFAULT_TIMEOUT_MS 30000

/* --auth-mechanism: not given, or the mechanism named. */
enum { CLI_MECH_NONE = 0, CLI_MECH_EXTERNAL = 1, CLI_MECH_SCRAM = 2 };

/* The longest password or token the CLI reads (SCRAM-SHA-256's bound). */
#define CLI_SECRET_MAX 1024

struct cli {
	/* The global options. server NULL: none given (cli_connect() looks
	 * for a local socket); user and token_file NULL: not given. */
	const char *server;
	const char *user;
	const char *token_file;
	/* TLS: --tls, --tls-ca-file, --tls-server-name, --tls-cert-file and
	 * --tls-key-file, the URL parameters' flags (NULL, false: not
	 * given); --auth-mechanism (CLI_MECH_*). */
	bool tls;
	const char *tls_ca_file;
	const char *tls_server_name;
	const char *tls_cert_file;
	const char *tls_key_file;
	int auth_mechanism;
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
	/* What cli_connect() connected to: "HOST:PORT" or "unix:PATH". */
	char address[512];
	/* Why the parser refused the command line (EXIT_USAGE), for main to
	 * print with the usage. */
	char why[256];
};

/* The global options (cli.c): --server, --user, --token-file, the TLS
 * flags and --auth-mechanism, --json, --timeout-ms. */
extern const struct cli_opt cli_global_opts[];

/* One STREAM, the positional argument of many commands. */
#define CLI_ONE_STREAM CLI_ARGS("STREAM", 1, 1, "a STREAM", "one stream")

/* The tables of the command groups; each ends with a row whose name is
 * NULL. */
extern const struct cli_command cli_event_commands[];
extern const struct cli_command cli_lease_commands[];
extern const struct cli_command cli_proj_commands[];
extern const struct cli_command cli_sub_commands[];
extern const struct cli_command cli_admin_commands[];
extern const struct cli_command cli_auth_commands[];
extern const struct cli_command cli_certs_commands[];

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

/* Connects cli->client with the global options (cli_conn.c): to --server
 * or $WHIZBANG_SERVER, HOST:PORT or a URL (whizbang://[USER@]HOST[:PORT]
 * with its TLS parameters, whizbang+unix:///PATH), else to the first local
 * socket that exists and this user may connect to of $WHIZBANG_SOCKET,
 * ./whizbang-data/whizbangd.sock and /var/lib/whizbang/whizbangd.sock, else
 * to 127.0.0.1:7411; with TLS when the URL or the TLS flags ask for it (a
 * flag and the URL that disagree are refused); as --user (or the URL's
 * user) with $WHIZBANG_PASSWORD or a password asked on the terminal, as the
 * client certificate's user (--auth-mechanism EXTERNAL), or with the token
 * in --token-file (mode 0600 or stricter), or $WHIZBANG_TOKEN. Writes where
 * to cli->address. 0, or 1 after reporting; no message holds a password or
 * a token. */
int cli_connect(struct cli *cli);

/* Reads a secret (what: "password", "new password") into buf[0..len): the
 * value of the environment variable env when it is set and not empty, else
 * a line typed on the terminal with echo off, asked twice when confirm is
 * true. 0, or 1 after reporting (buf wiped); the caller wipes buf after
 * use. */
int cli_secret(const struct cli *cli, const char *env, const char *what, bool confirm, char *buf,
               size_t len);

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
