/* The CLI's commands on who may do what: whoami; user add, set, delete and
 * list; role put, delete and list; token create, revoke and list. All but
 * whoami need admin:users on the server.
 *
 * New passwords come from $WHIZBANG_NEW_PASSWORD, else are asked twice on
 * the terminal; the library turns them into a SCRAM-SHA-256 credential
 * before anything is sent, so no password reaches the server. A token is
 * printed once, by token create, alone on standard output so that it can be
 * redirected into a file; nothing else here prints a secret. */
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Ten years, the server's bound on a token's life. */
#define TTL_MAX_MS (3650ull * 24 * 3600 * 1000)

/* Prints names[0..n) as a JSON array, or as "a, b" ("-" for none). */
static void put_names(const struct cli *cli, char *const *names, size_t n)
{
	if (cli->json) {
		putchar('[');
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				putchar(',');
			cli_json_cstr(names[i]);
		}
		putchar(']');
		return;
	}
	if (n == 0)
		fputs("-", stdout);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			fputs(", ", stdout);
		cli_put_cstr(names[i]);
	}
}

/* ---------------------------------------------------------------- whoami */

static int run_whoami(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	const struct wb_identity *who = wb_whoami(cli->client);
	bool authenticated = who->user[0] != '\0';
	const char *version = "", *cipher = "";
	bool tls = wb_connection_tls(cli->client, &version, &cipher);
	if (cli->json) {
		fputs("{\"user\":", stdout);
		cli_json_cstr(who->user);
		fputs(",\"roles\":", stdout);
		put_names(cli, (char *const *)who->roles, who->nroles);
		printf(",\"authenticated\":%s,\"server\":", authenticated ? "true" : "false");
		cli_json_cstr(cli->address);
		fputs(",\"tls\":", stdout);
		if (tls) {
			fputs("{\"version\":", stdout);
			cli_json_cstr(version);
			fputs(",\"cipher\":", stdout);
			cli_json_cstr(cipher);
			fputs("}", stdout);
		} else {
			fputs("null", stdout);
		}
		fputs("}\n", stdout);
		return 0;
	}
	fputs("user: ", stdout);
	if (authenticated)
		cli_put_cstr(who->user);
	else
		fputs("(none: not authenticated)", stdout);
	fputs("\nroles: ", stdout);
	put_names(cli, (char *const *)who->roles, who->nroles);
	fputs("\nserver: ", stdout);
	cli_put_cstr(cli->address);
	if (tls)
		printf("\ntls: %s %s", version, cipher);
	putchar('\n');
	return 0;
}

/* ---------------------------------------------------------------- users */

struct user_args {
	struct cli_list roles;
	uint32_t iterations;
	bool password;
	bool no_password;
};

#define ITERATIONS_OPT                                                                             \
	{                                                                                          \
		"--iterations", "N",                                                               \
		        CLI_UINT_AT(struct user_args, iterations, WB_SCRAM_ITERATIONS_MIN,         \
		                    WB_SCRAM_ITERATIONS_MAX),                                      \
		        .dflt = "100000", .bad = "needs a number of PBKDF2 iterations",            \
		        .help = "PBKDF2 iterations of the new password's credential (at least "    \
		                "the server's --scram-iterations)"                                 \
	}

static const struct cli_opt user_add_opts[] = {
        {"--role", "R", CLI_TEXTS_AT(struct user_args, roles), .required = true,
         .help = "a role the user holds (repeat for more, at most 16)"},
        ITERATIONS_OPT,
        {"--no-password", NULL, CLI_FLAG_AT(struct user_args, no_password),
         .help = "a user without a password, who logs in only with a TLS client certificate "
                 "that names it (EXTERNAL); user set --password gives it one later"},
        {0},
};

static const struct cli_opt user_set_opts[] = {
        {"--role", "R", CLI_TEXTS_AT(struct user_args, roles),
         .help = "the roles the user holds from now on, replacing the old ones (repeat for "
                 "more); without it they stay"},
        {"--password", NULL, CLI_FLAG_AT(struct user_args, password),
         .help = "give the user a new password: $WHIZBANG_NEW_PASSWORD, else asked twice on "
                 "the terminal"},
        ITERATIONS_OPT,
        {0},
};

/* The user name of the server's list, or NULL. */
static const Whizbang__V1__UserInfo *find_user(const Whizbang__V1__UserList *l, const char *name)
{
	for (size_t i = 0; i < l->n_users; i++)
		if (strcmp(l->users[i]->name, name) == 0)
			return l->users[i];
	return NULL;
}

static void print_user(const struct cli *cli, const char *verb, const char *name,
                       char *const *roles, size_t nroles, bool has_password)
{
	if (cli->json) {
		fputs("{\"user\":", stdout);
		cli_json_cstr(name);
		fputs(",\"roles\":", stdout);
		put_names(cli, roles, nroles);
		printf(",\"has_password\":%s}\n", has_password ? "true" : "false");
		return;
	}
	if (verb != NULL)
		printf("%s ", verb);
	cli_put_cstr(name);
	fputs("  roles=", stdout);
	put_names(cli, roles, nroles);
	printf("  password=%s\n", has_password ? "yes" : "no");
}

/* Puts user name with roles, and a new password when password is true:
 * 0, or 1 after reporting. */
static int put_user(struct cli *cli, const char *name, char *const *roles, size_t nroles,
                    bool password, uint32_t iterations)
{
	char secret[CLI_SECRET_MAX + 1];
	if (password) {
		int rc = cli_secret(cli, "WHIZBANG_NEW_PASSWORD", "new password", true, secret,
		                    sizeof(secret));
		if (rc != 0)
			return rc;
	}
	int rc = wb_put_user(cli->client, name, (const char *const *)roles, nroles,
	                     password ? secret : NULL, iterations);
	if (password)
		explicit_bzero(secret, sizeof(secret));
	return rc != 0 ? cli_report_client(cli, rc) : 0;
}

static int run_user_add(struct cli *cli)
{
	const struct user_args *a = cli->args;
	const char *name = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	/* PutUser replaces: add makes sure it does not. */
	Whizbang__V1__UserList *l;
	rc = wb_list_users(cli->client, &l);
	if (rc != 0)
		return cli_report_client(cli, rc);
	bool exists = find_user(l, name) != NULL;
	wb_user_list_free(l);
	if (exists)
		return cli_reportf(cli, WB_E_KEYEXIST,
		                   "user %.255s exists: change it with whizbang user set", name);
	rc = put_user(cli, name, (char *const *)a->roles.v, a->roles.n, !a->no_password,
	              a->iterations);
	if (rc != 0)
		return rc;
	print_user(cli, "added", name, (char *const *)a->roles.v, a->roles.n, !a->no_password);
	return 0;
}

static int run_user_set(struct cli *cli)
{
	const struct user_args *a = cli->args;
	const char *name = cli->pos.v[0];
	if (a->roles.n == 0 && !a->password)
		return cli_usage_error(cli, "user set needs --role or --password");
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__UserList *l;
	rc = wb_list_users(cli->client, &l);
	if (rc != 0)
		return cli_report_client(cli, rc);
	const Whizbang__V1__UserInfo *u = find_user(l, name);
	if (u == NULL) {
		wb_user_list_free(l);
		return cli_reportf(cli, WB_NOT_FOUND,
		                   "no user %.255s (whizbang user add makes one)", name);
	}
	char *const *roles = a->roles.n != 0 ? (char *const *)a->roles.v : u->roles;
	size_t nroles = a->roles.n != 0 ? a->roles.n : u->n_roles;
	rc = put_user(cli, name, roles, nroles, a->password, a->iterations);
	if (rc == 0)
		print_user(cli, "changed", name, roles, nroles, a->password || u->has_password);
	wb_user_list_free(l);
	return rc;
}

static int run_user_delete(struct cli *cli)
{
	const char *name = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = wb_delete_user(cli->client, name);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		fputs("{\"deleted_user\":", stdout);
		cli_json_cstr(name);
		fputs("}\n", stdout);
		return 0;
	}
	fputs("deleted user ", stdout);
	cli_put_cstr(name);
	putchar('\n');
	return 0;
}

static int run_user_list(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__UserList *l;
	rc = wb_list_users(cli->client, &l);
	if (rc != 0)
		return cli_report_client(cli, rc);
	for (size_t i = 0; i < l->n_users; i++) {
		const Whizbang__V1__UserInfo *u = l->users[i];
		print_user(cli, NULL, u->name, u->roles, u->n_roles, u->has_password);
	}
	wb_user_list_free(l);
	return 0;
}

/* ---------------------------------------------------------------- roles */

struct role_args {
	struct cli_list grants;
};

static const struct cli_opt role_put_opts[] = {
        {"--grant", "TEXT", CLI_TEXTS_AT(struct role_args, grants), .required = true,
         .help = "a grant, [deny ]KIND:PERM[,PERM...]:PREFIX, such as "
                 "streams:read,append:orders- (repeat for more, at most 64)"},
        {0},
};

static void print_role(const struct cli *cli, const char *name, char *const *grants, size_t n,
                       bool builtin)
{
	if (cli->json) {
		fputs("{\"role\":", stdout);
		cli_json_cstr(name);
		fputs(",\"grants\":", stdout);
		put_names(cli, grants, n);
		printf(",\"builtin\":%s}\n", builtin ? "true" : "false");
		return;
	}
	cli_put_cstr(name);
	puts(builtin ? " (built-in)" : "");
	for (size_t i = 0; i < n; i++) {
		fputs("  ", stdout);
		cli_put_cstr(grants[i]);
		putchar('\n');
	}
}

static int run_role_put(struct cli *cli)
{
	const struct role_args *a = cli->args;
	const char *name = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = wb_put_role(cli->client, name, (const char *const *)a->grants.v, a->grants.n);
	if (rc != 0)
		return cli_report_client(cli, rc);
	print_role(cli, name, (char *const *)a->grants.v, a->grants.n, false);
	return 0;
}

static int run_role_delete(struct cli *cli)
{
	const char *name = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = wb_delete_role(cli->client, name);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		fputs("{\"deleted_role\":", stdout);
		cli_json_cstr(name);
		fputs("}\n", stdout);
		return 0;
	}
	fputs("deleted role ", stdout);
	cli_put_cstr(name);
	putchar('\n');
	return 0;
}

static int run_role_list(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__RoleList *l;
	rc = wb_list_roles(cli->client, &l);
	if (rc != 0)
		return cli_report_client(cli, rc);
	for (size_t i = 0; i < l->n_roles; i++) {
		const Whizbang__V1__RoleInfo *r = l->roles[i];
		print_role(cli, r->name, r->grants, r->n_grants, r->builtin);
	}
	wb_role_list_free(l);
	return 0;
}

/* ---------------------------------------------------------------- tokens */

struct token_args {
	const char *role;
	uint64_t ttl_ms;
	const char *description;
};

static const struct cli_opt token_create_opts[] = {
        {"--role", "R", CLI_TEXT_AT(struct token_args, role), .required = true,
         .help = "the role the token acts as"},
        {"--ttl", "DUR", CLI_DURATION_AT(struct token_args, ttl_ms, 1000, TTL_MAX_MS),
         .dflt = "90d", .bad = "needs a duration (12h, 30d)",
         .help = "how long the token is valid, at most 3650d"},
        {"--description", "TEXT", CLI_TEXT_AT(struct token_args, description),
         .help = "what the token is for, shown by token list (at most 255 bytes)"},
        {0},
};

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int run_token_create(struct cli *cli)
{
	const struct token_args *a = cli->args;
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__CreateTokenResult *t;
	rc = wb_create_token(cli->client, a->role, a->ttl_ms, a->description, &t);
	if (rc != 0)
		return cli_report_client(cli, rc);
	char expires[40];
	cli_format_time_ms(t->expires_ms, expires);
	if (cli->json) {
		fputs("{\"token\":", stdout);
		cli_json_cstr(t->token);
		fputs(",\"id\":", stdout);
		cli_json_cstr(t->id);
		fputs(",\"role\":", stdout);
		cli_json_cstr(a->role);
		printf(",\"expires_ms\":%" PRIu64 ",\"expires\":\"%s\"}\n", t->expires_ms, expires);
	} else {
		/* The token alone on standard output, for a redirect into a file;
		 * what it is on standard error. */
		printf("%s\n", t->token);
		fflush(stdout);
		fprintf(stderr,
		        "token %s for role %s, expires %s: shown this once, keep it secret\n",
		        t->id, a->role, expires);
	}
	wb_token_result_free(t);
	return 0;
}

static int run_token_revoke(struct cli *cli)
{
	const char *id = cli->pos.v[0];
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	rc = wb_revoke_token(cli->client, id);
	if (rc != 0)
		return cli_report_client(cli, rc);
	if (cli->json) {
		fputs("{\"revoked_token\":", stdout);
		cli_json_cstr(id);
		fputs("}\n", stdout);
		return 0;
	}
	fputs("revoked token ", stdout);
	cli_put_cstr(id);
	putchar('\n');
	return 0;
}

static int run_token_list(struct cli *cli)
{
	int rc = cli_connect(cli);
	if (rc != 0)
		return rc;
	Whizbang__V1__TokenList *l;
	rc = wb_list_tokens(cli->client, &l);
	if (rc != 0)
		return cli_report_client(cli, rc);
	uint64_t now = wall_ms();
	for (size_t i = 0; i < l->n_tokens; i++) {
		const Whizbang__V1__TokenInfo *t = l->tokens[i];
		const char *state = t->revoked                                   ? "revoked"
		                    : t->expires_ms != 0 && now >= t->expires_ms ? "expired"
		                                                                 : "active";
		char created[40], expires[40];
		cli_format_time_ms(t->created_ms, created);
		cli_format_time_ms(t->expires_ms, expires);
		if (cli->json) {
			fputs("{\"id\":", stdout);
			cli_json_cstr(t->id);
			fputs(",\"role\":", stdout);
			cli_json_cstr(t->role);
			fputs(",\"description\":", stdout);
			cli_json_cstr(t->description);
			printf(",\"created_ms\":%" PRIu64 ",\"expires_ms\":%" PRIu64
			       ",\"created\":\"%s\",\"expires\":\"%s\",\"state\":\"%s\"}\n",
			       t->created_ms, t->expires_ms, created, expires, state);
			continue;
		}
		cli_put_cstr(t->id);
		fputs("  role=", stdout);
		cli_put_cstr(t->role);
		printf("  %s  created=%s  expires=%s", state, created, expires);
		if (t->description[0] != '\0') {
			fputs("  ", stdout);
			cli_put_cstr(t->description);
		}
		putchar('\n');
	}
	wb_token_list_free(l);
	return 0;
}

/* ---------------------------------------------------------------- the table */

#define ONE_NAME(what) CLI_ARGS("NAME", 1, 1, "a NAME: the " what, "one NAME")

const struct cli_command cli_auth_commands[] = {
        {.name = "whoami",
         .run = run_whoami,
         .help = "print who the connection acts as (user and roles) and the server it reached"},
        {.group = "user",
         .name = "add",
         ONE_NAME("user's"),
         CLI_OPTS(user_add_opts, struct user_args),
         .run = run_user_add,
         .help = "make a user with roles and a password ($WHIZBANG_NEW_PASSWORD, else asked "
                 "twice; none with --no-password); only its credential reaches the server"},
        {.group = "user",
         .name = "set",
         ONE_NAME("user's"),
         CLI_OPTS(user_set_opts, struct user_args),
         .run = run_user_set,
         .help = "change a user's roles, or its password, or both"},
        {.group = "user",
         .name = "delete",
         ONE_NAME("user's"),
         .run = run_user_delete,
         .help = "delete a user; its connections lose its roles at once"},
        {.group = "user",
         .name = "list",
         .run = run_user_list,
         .help = "list the users with their roles and whether each has a password"},
        {.group = "role",
         .name = "put",
         ONE_NAME("role's"),
         CLI_OPTS(role_put_opts, struct role_args),
         .run = run_role_put,
         .help = "make or replace a role with its grants"},
        {.group = "role",
         .name = "delete",
         ONE_NAME("role's"),
         .run = run_role_delete,
         .help = "delete a role that no user or token holds"},
        {.group = "role",
         .name = "list",
         .run = run_role_list,
         .help = "list the roles, built-in ones first, with their grants"},
        {.group = "token",
         .name = "create",
         CLI_OPTS(token_create_opts, struct token_args),
         .run = run_token_create,
         .help = "make an API token for a role and print it, this once"},
        {.group = "token",
         .name = "revoke",
         CLI_ARGS("ID", 1, 1, "an ID: the token's, from token list", "one ID"),
         .dash_args = true,
         .run = run_token_revoke,
         .help = "revoke a token; connections that use it lose its role at once"},
        {.group = "token",
         .name = "list",
         .run = run_token_list,
         .help = "list the tokens (ids, roles, expiry, revoked or not; never a secret)"},
        {0},
};
