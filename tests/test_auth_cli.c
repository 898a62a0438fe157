/* Authentication through the `whizbang` CLI against a real whizbangd that
 * gives nothing to a connection that does not authenticate
 * (--anonymous-role=none; --scram-iterations=4096 keeps PBKDF2 fast). The
 * administrator is the test's own user on the server's Unix socket
 * (whizbang+unix://); everyone else comes over TCP with a password
 * (SCRAM-SHA-256) or a token. Each refusal here sits next to its control,
 * the same step done right succeeding, and the last test looks for every
 * password and token secret it used in the server's log and in everything
 * the CLI printed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_util.h"
#include "e2e_util.h"

static void clear_env(void)
{
	static const char *const vars[] = {"WHIZBANG_SERVER",   "WHIZBANG_SOCKET",
	                                   "WHIZBANG_PASSWORD", "WHIZBANG_NEW_PASSWORD",
	                                   "WHIZBANG_TOKEN",    NULL};
	for (size_t i = 0; vars[i] != NULL; i++)
		unsetenv(vars[i]);
}

TestSuite(auth_cli, .init = clear_env, .fini = e2e_suite_fini, .timeout = 240);

/* Distinctive, so that finding one anywhere means it leaked. */
#define PW_ALICE "Plover-Quartz-7741"
#define PW_ALICE_NEW "Tangerine-Gravel-2093"
#define PW_WRONG "Walrus-Umbra-5518"

static const char *const server_args[] = {"--anonymous-role=none", "--scram-iterations=4096",
                                          "--log-level=debug", NULL};

/* whizbang+unix:// of e2e_srv's socket. */
static char sock_url[200];
/* whizbang://alice@ of e2e_srv's TCP address. */
static char alice_url[200];

/* Everything the CLI printed in this test, but what token create printed
 * on stdout (the one place a secret belongs). */
static char *transcript;
static size_t transcript_len;
static FILE *transcript_f;

static void start(void)
{
	e2e_suite_start(server_args);
	snprintf(sock_url, sizeof(sock_url), "whizbang+unix://%s/whizbangd.sock", e2e_srv.data_dir);
	snprintf(alice_url, sizeof(alice_url), "whizbang://alice@%s", e2e_srv.address);
	transcript_f = open_memstream(&transcript, &transcript_len);
	cr_assert_not_null(transcript_f);
}

static void stop(struct cli_run *r)
{
	cli_suite_stop(r);
	fclose(transcript_f);
	transcript_f = NULL;
	free(transcript);
	transcript = NULL;
}

/* Runs the CLI with args into r and adds what it printed to the transcript
 * (its stdout only when keep_out). */
static void run(struct cli_run *r, bool keep_out, const char *const *args)
{
	cli_run(r, args);
	if (keep_out)
		fputs(r->out, transcript_f);
	fputs(r->err, transcript_f);
	fflush(transcript_f);
}

#define RUN(r, ...) run((r), true, (const char *const[]){__VA_ARGS__, NULL})
/* The administrator: the test's own user on the server's Unix socket. */
#define ADMIN(r, ...) RUN((r), "--server", sock_url, __VA_ARGS__)
/* Over TCP, with whatever credentials the arguments and environment give. */
#define TCP(r, ...) RUN((r), "--server", e2e_srv.address, __VA_ARGS__)
/* Alice over TCP, her password from $WHIZBANG_PASSWORD. */
#define ALICE(r, ...) RUN((r), "--server", e2e_srv.address, "--user", "alice", __VA_ARGS__)

/* The role app (read and append streams under orders-) and alice, who
 * holds it, with the password PW_ALICE; then $WHIZBANG_PASSWORD is hers. */
static void make_alice(struct cli_run *r)
{
	ADMIN(r, "role", "put", "app", "--grant", "streams:read,append:orders-");
	cli_expect_status(r, 0, "role put app");
	setenv("WHIZBANG_NEW_PASSWORD", PW_ALICE, 1);
	ADMIN(r, "user", "add", "alice", "--role", "app", "--iterations", "4096");
	unsetenv("WHIZBANG_NEW_PASSWORD");
	cli_expect_status(r, 0, "user add alice");
	CLI_HAS(r->out, "user add", "added alice", "roles=app", "password=yes");
	setenv("WHIZBANG_PASSWORD", PW_ALICE, 1);
}

/* Creates a token for role over the socket and copies it into token (and
 * its id into id when not NULL). */
static void make_token(struct cli_run *r, const char *role, char token[80], char id[24])
{
	run(r, false,
	    (const char *const[]){"--server", sock_url, "token", "create", "--role", role,
	                          "--description", "from the test", NULL});
	cli_expect_status(r, 0, "token create");
	cli_nth_line(r->out, 0, token, 80);
	cr_assert_eq(strlen(token), 64, "token \"%s\"", token);
	cr_assert_eq(strncmp(token, "wbt_", 4), 0);
	/* Standard output holds the token alone. */
	cr_assert_eq(strlen(r->out), 65);
	if (id != NULL) {
		memcpy(id, token + 4, 16);
		id[16] = '\0';
		cli_expect_has(r->err, id, "token create names the token's id");
	}
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

/* Whether needle occurs in text; for the searches below and their
 * controls. */
static bool holds(const char *text, const char *needle)
{
	return strstr(text, needle) != NULL;
}

/* ---------------------------------------------------------------- tests */

Test(auth_cli, admin_on_the_socket_makes_a_user_who_logs_in_over_tcp)
{
	struct cli_run r = {0};
	start();
	ADMIN(&r, "whoami");
	cli_expect_status(&r, 0, "whoami on the socket");
	char want[40];
	snprintf(want, sizeof(want), "user: uid:%u", (unsigned)geteuid());
	CLI_HAS(r.out, "whoami on the socket", want, "roles: admin", "server: unix:");
	make_alice(&r);
	ADMIN(&r, "user", "list");
	cli_expect_status(&r, 0, "user list");
	cli_expect_has(r.out, "alice  roles=app  password=yes", "user list");
	/* user add does not replace a user. */
	setenv("WHIZBANG_NEW_PASSWORD", PW_WRONG, 1);
	ADMIN(&r, "user", "add", "alice", "--role", "reader");
	unsetenv("WHIZBANG_NEW_PASSWORD");
	cli_expect_status(&r, 1, "user add of an existing user");
	cli_expect_has(r.err, "exists", "user add of an existing user");

	/* Over TCP without credentials: nobody, with no role. */
	unsetenv("WHIZBANG_PASSWORD");
	TCP(&r, "whoami");
	cli_expect_status(&r, 0, "whoami without credentials");
	CLI_HAS(r.out, "whoami without credentials", "user: (none: not authenticated)", "roles: -");
	/* With her password, as --user and as the URL's user. */
	setenv("WHIZBANG_PASSWORD", PW_ALICE, 1);
	ALICE(&r, "whoami");
	cli_expect_status(&r, 0, "whoami as alice");
	CLI_HAS(r.out, "whoami as alice", "user: alice\n", "roles: app\n", e2e_srv.address);
	RUN(&r, "--server", alice_url, "--json", "whoami");
	cli_expect_status(&r, 0, "whoami through whizbang://alice@");
	CLI_HAS(r.out, "whoami --json", "\"user\":\"alice\"", "\"roles\":[\"app\"]",
	        "\"authenticated\":true");
	/* A wrong password is refused; the right one, tried next, is the
	 * control. */
	setenv("WHIZBANG_PASSWORD", PW_WRONG, 1);
	ALICE(&r, "whoami");
	cli_expect_status(&r, 1, "a wrong password");
	cli_expect_has(r.err, "UNAUTHENTICATED: authentication failed", "a wrong password");
	cli_expect_not(r.out, "alice", "a wrong password");
	setenv("WHIZBANG_PASSWORD", PW_ALICE, 1);
	ALICE(&r, "whoami");
	cli_expect_status(&r, 0, "the right password after a wrong one");
	/* An unknown user is refused the same way. */
	RUN(&r, "--server", e2e_srv.address, "--user", "mallory", "whoami");
	cli_expect_status(&r, 1, "an unknown user");
	cli_expect_has(r.err, "UNAUTHENTICATED: authentication failed", "an unknown user");
	/* --user and a URL that names someone else. */
	RUN(&r, "--server", alice_url, "--user", "bob", "whoami");
	cli_expect_status(&r, 1, "two users");
	stop(&r);
}

Test(auth_cli, a_role_allows_what_it_grants_and_nothing_more)
{
	struct cli_run r = {0};
	start();
	make_alice(&r);
	/* The controls: what app grants. */
	ALICE(&r, "append", "orders-1", "--type", "Placed", "--data", "{}");
	cli_expect_status(&r, 0, "append under orders- as alice");
	ALICE(&r, "read", "orders-1");
	cli_expect_status(&r, 0, "read under orders- as alice");
	cli_expect_has(r.out, "Placed", "read under orders- as alice");
	/* What it does not. */
	ALICE(&r, "append", "payments-1", "--type", "Paid", "--data", "{}");
	cli_expect_status(&r, 1, "append outside orders- as alice");
	CLI_HAS(r.err, "append outside orders-", "PERMISSION_DENIED", "streams:append",
	        "payments-1");
	ALICE(&r, "stats");
	cli_expect_status(&r, 1, "stats as alice");
	cli_expect_has(r.err, "PERMISSION_DENIED", "stats as alice");
	ALICE(&r, "user", "list");
	cli_expect_status(&r, 1, "user list as alice");
	CLI_HAS(r.err, "user list as alice", "PERMISSION_DENIED", "admin:users");
	/* Nobody may do anything. */
	unsetenv("WHIZBANG_PASSWORD");
	TCP(&r, "read", "orders-1");
	cli_expect_status(&r, 1, "read without credentials");
	cli_expect_has(r.err, "UNAUTHENTICATED", "read without credentials");
	stop(&r);
}

Test(auth_cli, user_set_changes_password_and_roles_and_delete_locks_out)
{
	struct cli_run r = {0};
	start();
	make_alice(&r);
	setenv("WHIZBANG_NEW_PASSWORD", PW_ALICE_NEW, 1);
	ADMIN(&r, "user", "set", "alice", "--password", "--iterations", "4096");
	unsetenv("WHIZBANG_NEW_PASSWORD");
	cli_expect_status(&r, 0, "user set --password");
	CLI_HAS(r.out, "user set --password", "changed alice", "roles=app", "password=yes");
	ALICE(&r, "whoami");
	cli_expect_status(&r, 1, "the old password");
	setenv("WHIZBANG_PASSWORD", PW_ALICE_NEW, 1);
	ALICE(&r, "whoami");
	cli_expect_status(&r, 0, "the new password");
	/* New roles keep the password. */
	ADMIN(&r, "user", "set", "alice", "--role", "reader", "--role", "app");
	cli_expect_status(&r, 0, "user set --role");
	cli_expect_has(r.out, "roles=reader, app  password=yes", "user set --role");
	ALICE(&r, "whoami");
	cli_expect_status(&r, 0, "the password after new roles");
	cli_expect_has(r.out, "roles: reader, app\n", "whoami after new roles");
	ADMIN(&r, "user", "set", "alice");
	cli_expect_status(&r, 2, "user set with nothing to set");
	ADMIN(&r, "user", "set", "bob", "--role", "reader");
	cli_expect_status(&r, 1, "user set of nobody");
	cli_expect_has(r.err, "NOT_FOUND", "user set of nobody");
	ADMIN(&r, "role", "list");
	cli_expect_has(r.out, "app\n  streams:read,append:orders-\n", "role list");
	/* A role that a user holds stays; a built-in one always does. */
	ADMIN(&r, "role", "delete", "app");
	cli_expect_status(&r, 1, "role delete of a held role");
	cli_expect_has(r.err, "held by user", "role delete of a held role");
	ADMIN(&r, "role", "delete", "reader");
	cli_expect_status(&r, 1, "role delete of a built-in role");
	cli_expect_has(r.err, "BAD_REQUEST", "role delete of a built-in role");
	/* Deleted, alice is locked out, and her role can go. */
	ADMIN(&r, "user", "delete", "alice");
	cli_expect_status(&r, 0, "user delete");
	ALICE(&r, "whoami");
	cli_expect_status(&r, 1, "whoami as a deleted user");
	cli_expect_has(r.err, "authentication failed", "whoami as a deleted user");
	ADMIN(&r, "user", "delete", "alice");
	cli_expect_status(&r, 1, "user delete of nobody");
	cli_expect_has(r.err, "NOT_FOUND", "user delete of nobody");
	ADMIN(&r, "role", "delete", "app");
	cli_expect_status(&r, 0, "role delete");
	ADMIN(&r, "role", "list");
	cli_expect_status(&r, 0, "role list");
	CLI_HAS(r.out, "role list", "admin (built-in)\n", "reader (built-in)\n", "  streams:");
	cli_expect_not(r.out, "orders-", "role list after role delete");
	ADMIN(&r, "--json", "role", "list");
	cli_expect_has(r.out, "{\"role\":\"admin\",\"grants\":[", "role list --json");
	/* A grant that does not parse names itself. */
	ADMIN(&r, "role", "put", "bad", "--grant", "streams:fly:x");
	cli_expect_status(&r, 1, "role put with a bad grant");
	CLI_HAS(r.err, "role put with a bad grant", "BAD_REQUEST", "grant 1");
	stop(&r);
}

Test(auth_cli, a_token_works_until_it_is_revoked)
{
	struct cli_run r = {0};
	start();
	char token[80], id[24];
	make_token(&r, "reader", token, id);
	setenv("WHIZBANG_TOKEN", token, 1);
	TCP(&r, "whoami");
	cli_expect_status(&r, 0, "whoami with the token");
	char who[40];
	snprintf(who, sizeof(who), "user: token:%s\n", id);
	CLI_HAS(r.out, "whoami with the token", who, "roles: reader\n");
	/* It reads (the control) and may not write. */
	TCP(&r, "read-all");
	cli_expect_status(&r, 0, "read-all as reader");
	TCP(&r, "append", "orders-1", "--type", "Placed", "--data", "{}");
	cli_expect_status(&r, 1, "append as reader");
	cli_expect_has(r.err, "PERMISSION_DENIED", "append as reader");
	unsetenv("WHIZBANG_TOKEN");
	ADMIN(&r, "token", "list");
	cli_expect_status(&r, 0, "token list");
	CLI_HAS(r.out, "token list", id, "role=reader  active", "from the test",
	        "bootstrap: the first administrator");
	ADMIN(&r, "token", "revoke", id);
	cli_expect_status(&r, 0, "token revoke");
	ADMIN(&r, "--json", "token", "list");
	cli_expect_has(r.out, "\"state\":\"revoked\"", "token list after revoke");
	setenv("WHIZBANG_TOKEN", token, 1);
	TCP(&r, "whoami");
	cli_expect_status(&r, 1, "whoami with a revoked token");
	cli_expect_has(r.err, "UNAUTHENTICATED: authentication failed",
	               "whoami with a revoked token");
	/* A text that is no token is refused before anything is sent. */
	setenv("WHIZBANG_TOKEN", "wbt_not-a-token", 1);
	TCP(&r, "whoami");
	cli_expect_status(&r, 1, "whoami with a malformed token");
	cli_expect_has(r.err, "not an API token", "whoami with a malformed token");
	unsetenv("WHIZBANG_TOKEN");
	ADMIN(&r, "token", "revoke", "AAAAAAAAAAAAAAAA");
	cli_expect_status(&r, 1, "token revoke of nothing");
	cli_expect_has(r.err, "NOT_FOUND", "token revoke of nothing");
	/* An id may start with '-' (base64url): it is taken as the id, not as
	 * an unknown option, which other commands still refuse (the control). */
	ADMIN(&r, "token", "revoke", "-AAAAAAAAAAAAAAA");
	cli_expect_status(&r, 1, "token revoke of an id that starts with '-'");
	cli_expect_has(r.err, "NOT_FOUND", "token revoke of an id that starts with '-'");
	ADMIN(&r, "token", "list", "-AAAAAAAAAAAAAAA");
	cli_expect_status(&r, 2, "token list with an unknown option");
	ADMIN(&r, "token", "create", "--role", "nobody");
	cli_expect_status(&r, 1, "token create for no role");
	cli_expect_has(r.err, "NOT_FOUND", "token create for no role");
	/* --json carries the token for programs. */
	run(&r, false,
	    (const char *const[]){"--server", sock_url, "--json", "token", "create", "--role",
	                          "ops", "--ttl", "1h", NULL});
	cli_expect_status(&r, 0, "token create --json");
	CLI_HAS(r.out, "token create --json", "{\"token\":\"wbt_", "\"role\":\"ops\"",
	        "\"expires_ms\":");
	stop(&r);
}

Test(auth_cli, a_token_file_must_be_private)
{
	struct cli_run r = {0};
	start();
	char token[80], path[160], line[90];
	make_token(&r, "reader", token, NULL);
	snprintf(path, sizeof(path), "%s/reader.token", e2e_srv.dir);
	snprintf(line, sizeof(line), "%s\n", token);
	write_file(path, line, 0644);
	TCP(&r, "--token-file", path, "whoami");
	cli_expect_status(&r, 1, "a token file of mode 0644");
	CLI_HAS(r.err, "a token file of mode 0644", "mode 0644", "0600", path);
	write_file(path, line, 0640);
	TCP(&r, "--token-file", path, "whoami");
	cli_expect_status(&r, 1, "a token file of mode 0640");
	/* The controls: 0600 and 0400. */
	write_file(path, line, 0600);
	TCP(&r, "--token-file", path, "whoami");
	cli_expect_status(&r, 0, "a token file of mode 0600");
	cli_expect_has(r.out, "roles: reader", "a token file of mode 0600");
	write_file(path, line, 0400);
	TCP(&r, "--token-file", path, "whoami");
	cli_expect_status(&r, 0, "a token file of mode 0400");
	/* --token-file wins over $WHIZBANG_TOKEN, and is not taken with a user. */
	setenv("WHIZBANG_TOKEN", "wbt_not-a-token", 1);
	TCP(&r, "--token-file", path, "whoami");
	cli_expect_status(&r, 0, "--token-file over $WHIZBANG_TOKEN");
	unsetenv("WHIZBANG_TOKEN");
	setenv("WHIZBANG_PASSWORD", PW_ALICE, 1);
	TCP(&r, "--token-file", path, "--user", "alice", "whoami");
	cli_expect_status(&r, 1, "--token-file with --user");
	unsetenv("WHIZBANG_PASSWORD");
	stop(&r);
}

Test(auth_cli, the_bootstrap_token_is_admin_over_tcp_until_rotated)
{
	struct cli_run r = {0};
	start();
	char boot[200];
	snprintf(boot, sizeof(boot), "%s/bootstrap-admin.token", e2e_srv.data_dir);
	struct stat st;
	cr_assert_eq(stat(boot, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	/* The control: nobody over TCP may list users. */
	TCP(&r, "user", "list");
	cli_expect_status(&r, 1, "user list without credentials");
	cli_expect_has(r.err, "UNAUTHENTICATED", "user list without credentials");
	TCP(&r, "--token-file", boot, "whoami");
	cli_expect_status(&r, 0, "whoami with the bootstrap token");
	CLI_HAS(r.out, "whoami with the bootstrap token", "user: token:", "roles: admin\n");
	/* Rotation (docs/OPERATIONS.md): an administrator of one's own, then
	 * the bootstrap token revoked. */
	setenv("WHIZBANG_NEW_PASSWORD", PW_ALICE, 1);
	TCP(&r, "--token-file", boot, "user", "add", "root-admin", "--role", "admin",
	    "--iterations", "4096");
	unsetenv("WHIZBANG_NEW_PASSWORD");
	cli_expect_status(&r, 0, "user add with the bootstrap token");
	setenv("WHIZBANG_PASSWORD", PW_ALICE, 1);
	TCP(&r, "--user", "root-admin", "--json", "token", "list");
	cli_expect_status(&r, 0, "token list as the new administrator");
	/* Its id is on the line that describes it as the bootstrap token. */
	const char *desc = strstr(r.out, "\"description\":\"bootstrap");
	cr_assert_not_null(desc, "no bootstrap token in %s", r.out);
	const char *line = desc;
	while (line > r.out && line[-1] != '\n')
		line--;
	cr_assert_eq(strncmp(line, "{\"id\":\"", 7), 0);
	char id[24];
	memcpy(id, line + 7, 16);
	id[16] = '\0';
	TCP(&r, "--user", "root-admin", "token", "revoke", id);
	cli_expect_status(&r, 0, "token revoke of the bootstrap token");
	TCP(&r, "--token-file", boot, "whoami");
	cli_expect_status(&r, 1, "the bootstrap token after its revocation");
	TCP(&r, "--user", "root-admin", "user", "list");
	cli_expect_status(&r, 0, "user list as the new administrator");
	cli_expect_has(r.out, "root-admin  roles=admin", "user list");
	unsetenv("WHIZBANG_PASSWORD");
	stop(&r);
}

Test(auth_cli, the_local_socket_is_found_without_a_server)
{
	struct cli_run r = {0};
	start();
	char path[200];
	snprintf(path, sizeof(path), "%s/whizbangd.sock", e2e_srv.data_dir);
	setenv("WHIZBANG_SOCKET", path, 1);
	RUN(&r, "whoami");
	cli_expect_status(&r, 0, "whoami through $WHIZBANG_SOCKET");
	CLI_HAS(r.out, "whoami through $WHIZBANG_SOCKET", "roles: admin", "server: unix:", path);
	/* The control: a socket that is not there is passed over for TCP's
	 * default (when no other local socket is found first). */
	snprintf(path, sizeof(path), "%s/none.sock", e2e_srv.data_dir);
	setenv("WHIZBANG_SOCKET", path, 1);
	struct stat st;
	if (stat("whizbang-data/whizbangd.sock", &st) != 0 &&
	    stat("/var/lib/whizbang/whizbangd.sock", &st) != 0) {
		RUN(&r, "--timeout-ms", "2000", "whoami");
		cr_assert(holds(r.out, "127.0.0.1:7411") || holds(r.err, "127.0.0.1:7411"),
		          "not TCP's default: %s%s", r.out, r.err);
	}
	/* --server wins over the socket; $WHIZBANG_SERVER takes a URL too. */
	setenv("WHIZBANG_SERVER", sock_url, 1);
	RUN(&r, "whoami");
	cli_expect_status(&r, 0, "whoami through $WHIZBANG_SERVER");
	cli_expect_has(r.out, "roles: admin", "whoami through $WHIZBANG_SERVER");
	RUN(&r, "--server", e2e_srv.address, "whoami");
	cli_expect_has(r.out, "roles: -", "--server over $WHIZBANG_SERVER");
	RUN(&r, "--server", "whizbang://127.0.0.1?tls=1", "whoami");
	cli_expect_status(&r, 1, "a URL with a bad TLS parameter");
	cli_expect_has(r.err, "parameter 'tls' takes true or false",
	               "a URL with a bad TLS parameter");
	unsetenv("WHIZBANG_SERVER");
	unsetenv("WHIZBANG_SOCKET");
	stop(&r);
}

Test(auth_cli, no_password_or_token_secret_reaches_a_log_or_an_output)
{
	struct cli_run r = {0};
	start();
	make_alice(&r);
	ALICE(&r, "append", "orders-1", "--type", "Placed", "--data", "{}");
	cli_expect_status(&r, 0, "append as alice");
	setenv("WHIZBANG_PASSWORD", PW_WRONG, 1);
	ALICE(&r, "whoami");
	cli_expect_status(&r, 1, "a wrong password");
	setenv("WHIZBANG_NEW_PASSWORD", PW_ALICE_NEW, 1);
	ADMIN(&r, "user", "set", "alice", "--password", "--iterations", "4096");
	unsetenv("WHIZBANG_NEW_PASSWORD");
	setenv("WHIZBANG_PASSWORD", PW_ALICE_NEW, 1);
	ALICE(&r, "whoami");
	cli_expect_status(&r, 0, "the new password");
	unsetenv("WHIZBANG_PASSWORD");

	char token[80], id[24], path[160], line[90];
	make_token(&r, "reader", token, id);
	char token_out[200];
	snprintf(token_out, sizeof(token_out), "%s", r.out);
	setenv("WHIZBANG_TOKEN", token, 1);
	TCP(&r, "whoami");
	cli_expect_status(&r, 0, "whoami with the token");
	unsetenv("WHIZBANG_TOKEN");
	snprintf(path, sizeof(path), "%s/reader.token", e2e_srv.dir);
	snprintf(line, sizeof(line), "%s\n", token);
	write_file(path, line, 0644);
	TCP(&r, "--token-file", path, "whoami");
	cli_expect_status(&r, 1, "a token file of mode 0644");
	ADMIN(&r, "token", "list");
	ADMIN(&r, "--json", "token", "list");
	ADMIN(&r, "token", "revoke", id);
	cli_expect_status(&r, 0, "token revoke");
	setenv("WHIZBANG_TOKEN", token, 1);
	TCP(&r, "whoami");
	cli_expect_status(&r, 1, "whoami with a revoked token");
	TCP(&r, "--json", "whoami");
	unsetenv("WHIZBANG_TOKEN");
	char boot_path[200], boot[80];
	snprintf(boot_path, sizeof(boot_path), "%s/bootstrap-admin.token", e2e_srv.data_dir);
	FILE *bf = fopen(boot_path, "r");
	cr_assert_not_null(bf);
	cr_assert_not_null(fgets(boot, sizeof(boot), bf));
	fclose(bf);
	boot[strcspn(boot, "\n")] = '\0';
	TCP(&r, "--token-file", boot_path, "user", "list");
	cli_expect_status(&r, 0, "user list with the bootstrap token");

	/* The server's whole log, once it has stopped. */
	cli_suite_stop(&r);
	fflush(transcript_f);
	FILE *f = fopen(e2e_srv.log_file, "r");
	cr_assert_not_null(f);
	static char log[1 << 20];
	size_t n = fread(log, 1, sizeof(log) - 1, f);
	log[n] = '\0';
	fclose(f);

	/* The secrets: each password, each token, and each token's secret
	 * part (after its id and '_'). */
	const char *secrets[] = {PW_ALICE,   PW_ALICE_NEW, PW_WRONG, token,
	                         token + 21, boot,         boot + 21};
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		cr_expect_not(holds(log, secrets[i]), "the server's log holds secret %zu", i);
		cr_expect_not(holds(transcript, secrets[i]), "the CLI printed secret %zu", i);
	}
	/* The controls: the same search finds what is known to be there: the
	 * user and the token ids in both, the token where it was printed, and
	 * a secret planted in a copy of the log. */
	cr_assert(holds(log, "user=\"alice\""), "the log names the failed user");
	cr_assert(holds(log, id), "the log names the token's id");
	cr_assert(holds(transcript, "alice"));
	cr_assert(holds(transcript, id));
	cr_assert(holds(token_out, token));
	cr_assert(holds(token_out, token + 21));
	char planted[256];
	snprintf(planted, sizeof(planted), "%.60s event=x secret=%s", log, PW_ALICE);
	cr_assert(holds(planted, PW_ALICE));
	cr_assert_gt(n, 1000, "a log of %zu bytes", n);
	fclose(transcript_f);
	transcript_f = NULL;
	free(transcript);
	transcript = NULL;
}

/* ---------------------------------------------------------------- the terminal */

/* What a program run on a pseudo-terminal printed (the terminal's echo
 * included), and how it exited. */
struct tty_run {
	char out[8192];
	size_t len;
	int status;
};

/* Runs argv on a new pseudo-terminal, its controlling terminal. Whenever
 * its output ends with the prompt prompts[k] (in order), types answers[k]
 * and a return. Reads until it exits; fails the test after 20 s. */
static void tty_run(struct tty_run *t, const char *const *argv, const char *const *prompts,
                    const char *const *answers)
{
	memset(t, 0, sizeof(*t));
	int master;
	pid_t pid = forkpty(&master, NULL, NULL, NULL);
	cr_assert_geq(pid, 0, "forkpty: %s", strerror(errno));
	if (pid == 0) {
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	size_t k = 0;
	int64_t deadline = e2e_now_ms() + 20000;
	for (;;) {
		struct pollfd p = {.fd = master, .events = POLLIN};
		int left = (int)(deadline - e2e_now_ms());
		cr_assert_gt(left, 0, "no end on the terminal; it shows: %s", t->out);
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t n = read(master, t->out + t->len, sizeof(t->out) - 1 - t->len);
		if (n <= 0)
			break; /* EIO: the program and its terminal are gone */
		t->len += (size_t)n;
		t->out[t->len] = '\0';
		if (prompts != NULL && prompts[k] != NULL && t->len >= strlen(prompts[k]) &&
		    strcmp(t->out + t->len - strlen(prompts[k]), prompts[k]) == 0) {
			char line[128];
			snprintf(line, sizeof(line), "%s\n", answers[k++]);
			cr_assert_eq(write(master, line, strlen(line)), (ssize_t)strlen(line));
		}
	}
	close(master);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	t->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(auth_cli, passwords_asked_on_the_terminal_are_not_echoed)
{
	struct cli_run r = {0};
	start();
	make_alice(&r);
	unsetenv("WHIZBANG_PASSWORD");
	const char *cli = getenv("WHIZBANG_CLI");
	struct tty_run t;
	const char *const login[] = {cli,      "--server", e2e_srv.address, "--user", "alice",
	                             "whoami", NULL};
	tty_run(&t, login, (const char *const[]){"Enter the password: ", NULL},
	        (const char *const[]){PW_ALICE});
	cr_assert_eq(t.status, 0, "whoami on a terminal: %s", t.out);
	cr_assert(holds(t.out, "user: alice"), "%s", t.out);
	cr_assert_not(holds(t.out, PW_ALICE), "the password was echoed: %s", t.out);
	/* A new password is asked twice, and two that differ change nothing. */
	const char *const add[] = {cli,      "--server", sock_url,       "user", "add", "bob",
	                           "--role", "app",      "--iterations", "4096", NULL};
	tty_run(&t, add,
	        (const char *const[]){
	                "Enter the new password: ", "Enter the new password again: ", NULL},
	        (const char *const[]){PW_ALICE_NEW, PW_WRONG});
	cr_assert_eq(t.status, 1, "%s", t.out);
	cr_assert(holds(t.out, "differ"), "%s", t.out);
	cr_assert_not(holds(t.out, PW_ALICE_NEW), "%s", t.out);
	cr_assert_not(holds(t.out, PW_WRONG), "%s", t.out);
	tty_run(&t, add,
	        (const char *const[]){
	                "Enter the new password: ", "Enter the new password again: ", NULL},
	        (const char *const[]){PW_ALICE_NEW, PW_ALICE_NEW});
	cr_assert_eq(t.status, 0, "%s", t.out);
	cr_assert(holds(t.out, "added bob"), "%s", t.out);
	cr_assert_not(holds(t.out, PW_ALICE_NEW), "%s", t.out);
	/* The control: the same harness sees what is typed to a program that
	 * leaves echo on. */
	const char *const sh[] = {"/bin/sh", "-c", "printf 'Enter the password: '; read x", NULL};
	tty_run(&t, sh, (const char *const[]){"Enter the password: ", NULL},
	        (const char *const[]){PW_ALICE});
	cr_assert(holds(t.out, PW_ALICE), "the harness missed the echo: %s", t.out);
	stop(&r);
}
