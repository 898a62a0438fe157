/* The CLI's certificate commands (tls/wb_certs.h): certs create-ca,
 * create-node and create-client. They make files and connect nowhere.
 *
 * The files, in the directories given (which must exist):
 *   create-ca      ca.crt, ca.key
 *   create-node    node.crt, node.key
 *   create-client  client-USER.crt, client-USER.key
 * each PEM, mode 0600, never written over an existing file (or through a
 * link) unless --force. The CA's key signs every other certificate: keep it
 * off the servers. */
#include "cli.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "wb_certs.h"

#define CA_DAYS_DEFAULT "3650"
/* Apple's platforms refuse TLS server certificates valid for longer. */
#define LEAF_DAYS_DEFAULT "825"
#define DAYS_MAX 36500

struct create_ca_args {
	const char *out_dir;
	uint32_t days;
	const char *name;
	bool force;
};

struct create_node_args {
	const char *ca_dir;
	const char *out_dir;
	struct cli_list dns;
	struct cli_list ips;
	uint32_t days;
	bool force;
};

struct create_client_args {
	const char *ca_dir;
	const char *out_dir;
	const char *user;
	uint32_t days;
	bool force;
};

/* The options every command here has: where, for how long, and --force. */
#define OUT_DIR_OPT(T)                                                                             \
	{                                                                                          \
		"--out-dir", "DIR", CLI_TEXT_AT(T, out_dir),                                       \
		        .required = true, .help = "the directory the files go into; it must exist" \
	}
#define CA_DIR_OPT(T)                                                                              \
	{                                                                                          \
		"--ca-dir", "CA_DIR", CLI_TEXT_AT(T, ca_dir),                                      \
		        .required = true,                                                          \
		        .help = "the directory holding ca.crt and ca.key (from certs create-ca)"   \
	}
#define DAYS_OPT(T, days_default)                                                                  \
	{                                                                                          \
		"--days", "N", CLI_UINT_AT(T, days, 1, DAYS_MAX),                                  \
		        .dflt = (days_default), .bad = "needs a number of days",                   \
		        .help = "how long the certificate is valid"                                \
	}
#define FORCE_OPT(T)                                                                               \
	{                                                                                          \
		"--force", NULL, CLI_FLAG_AT(T, force),                                            \
		        .help = "replace files of the same names (regular files only)"             \
	}

static const struct cli_opt create_ca_opts[] = {
        OUT_DIR_OPT(struct create_ca_args),
        DAYS_OPT(struct create_ca_args, CA_DAYS_DEFAULT),
        {"--name", "CN", CLI_TEXT_AT(struct create_ca_args, name), .dflt = "Whizbang CA",
         .help = "the CA's common name"},
        FORCE_OPT(struct create_ca_args),
        {0},
};

static const struct cli_opt create_node_opts[] = {
        CA_DIR_OPT(struct create_node_args),
        OUT_DIR_OPT(struct create_node_args),
        {"--dns", "NAME", CLI_TEXTS_AT(struct create_node_args, dns),
         .help = "a DNS name clients reach the server by (repeat for more)"},
        {"--ip", "ADDR", CLI_TEXTS_AT(struct create_node_args, ips),
         .help = "an IPv4 or IPv6 address clients reach the server at (repeat for more)"},
        DAYS_OPT(struct create_node_args, LEAF_DAYS_DEFAULT),
        FORCE_OPT(struct create_node_args),
        {0},
};

static const struct cli_opt create_client_opts[] = {
        CA_DIR_OPT(struct create_client_args),
        OUT_DIR_OPT(struct create_client_args),
        {"--user", "NAME", CLI_TEXT_AT(struct create_client_args, user), .required = true,
         .help = "the user the certificate names: letters, digits, '.', '_', '-', '@'"},
        DAYS_OPT(struct create_client_args, LEAF_DAYS_DEFAULT),
        FORCE_OPT(struct create_client_args),
        {0},
};

/* dir/name into buf; 0, or 1 after reporting a path too long. */
static int join(const struct cli *cli, const char *dir, const char *name, char *buf, size_t len)
{
	int w = snprintf(buf, len, "%s/%s", dir, name);
	if (w < 0 || (size_t)w >= len)
		return cli_reportf(cli, WB_E_INVAL, "the path %s/%s is too long", dir, name);
	return 0;
}

/* 0 when dir is a directory; else 1 after reporting. */
static int check_dir(const struct cli *cli, const char *option, const char *dir)
{
	struct stat st;
	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return cli_reportf(cli, WB_E_NOTFOUND,
	                   "%s %s is not a directory (make it first: mkdir -m 700 %s)", option, dir,
	                   dir);
}

/* Saves p as dir/<base>.crt and dir/<base>.key and prints what was
 * written: names (for people) and the expiry. 0, or 1 after reporting. */
static int save_and_print(const struct cli *cli, const struct wb_certs_pair *p, const char *dir,
                          const char *base, bool force, const char *subject)
{
	char crt_name[128], key_name[128], crt[PATH_MAX], key[PATH_MAX];
	snprintf(crt_name, sizeof(crt_name), "%s.crt", base);
	snprintf(key_name, sizeof(key_name), "%s.key", base);
	if (join(cli, dir, crt_name, crt, sizeof(crt)) != 0 ||
	    join(cli, dir, key_name, key, sizeof(key)) != 0)
		return 1;
	char errmsg[512];
	int rc = wb_certs_save(p, crt, key, force, errmsg, sizeof(errmsg));
	if (rc == WB_E_KEYEXIST)
		return cli_reportf(cli, rc, "%s; --force replaces it", errmsg);
	if (rc != 0)
		return cli_report(cli, rc, errmsg);
	char expires[40];
	cli_format_time_ms((uint64_t)wb_certs_not_after(p) * 1000u, expires);
	if (cli->json) {
		fputs("{\"cert\":", stdout);
		cli_json_cstr(crt);
		fputs(",\"key\":", stdout);
		cli_json_cstr(key);
		fputs(",\"subject\":", stdout);
		cli_json_cstr(subject);
		printf(",\"not_after\":\"%s\"}\n", expires);
		return 0;
	}
	fputs("certificate: ", stdout);
	cli_put_cstr(crt);
	fputs("\nprivate key: ", stdout);
	cli_put_cstr(key);
	fputs(" (mode 0600: keep it secret)\nsubject: CN=", stdout);
	cli_put_cstr(subject);
	printf("\nexpires: %s\n", expires);
	return 0;
}

/* Loads the CA of ca_dir; 0, or 1 after reporting. */
static int load_ca(const struct cli *cli, const char *ca_dir, struct wb_certs_pair **ca)
{
	char crt[PATH_MAX], key[PATH_MAX], errmsg[512];
	if (join(cli, ca_dir, "ca.crt", crt, sizeof(crt)) != 0 ||
	    join(cli, ca_dir, "ca.key", key, sizeof(key)) != 0)
		return 1;
	int rc = wb_certs_load_ca(crt, key, ca, errmsg, sizeof(errmsg));
	if (rc != 0)
		return cli_report(cli, rc, errmsg);
	return 0;
}

static int run_create_ca(struct cli *cli)
{
	const struct create_ca_args *a = cli->args;
	if (check_dir(cli, "--out-dir", a->out_dir) != 0)
		return 1;
	struct wb_certs_validity v = wb_certs_days(a->days);
	struct wb_certs_pair *ca;
	char errmsg[512];
	int rc = wb_certs_make_ca(a->name, &v, &ca, errmsg, sizeof(errmsg));
	if (rc != 0)
		return cli_report(cli, rc, errmsg);
	rc = save_and_print(cli, ca, a->out_dir, "ca", a->force, a->name);
	wb_certs_free(ca);
	return rc;
}

static int run_create_node(struct cli *cli)
{
	const struct create_node_args *a = cli->args;
	if (a->dns.n + a->ips.n == 0)
		return cli_usage_error(cli, "certs create-node needs at least one --dns NAME or "
		                            "--ip ADDR");
	if (check_dir(cli, "--out-dir", a->out_dir) != 0)
		return 1;
	struct wb_certs_pair *ca, *node;
	if (load_ca(cli, a->ca_dir, &ca) != 0)
		return 1;
	struct wb_certs_names names = {a->dns.v, a->dns.n, a->ips.v, a->ips.n};
	struct wb_certs_validity v = wb_certs_days(a->days);
	char errmsg[512];
	int rc = wb_certs_make_node(ca, &names, &v, &node, errmsg, sizeof(errmsg));
	if (rc != 0) {
		rc = cli_report(cli, rc, errmsg);
		goto out;
	}
	rc = save_and_print(cli, node, a->out_dir, "node", a->force,
	                    a->dns.n > 0 ? a->dns.v[0] : a->ips.v[0]);
	wb_certs_free(node);
out:
	wb_certs_free(ca);
	return rc;
}

static int run_create_client(struct cli *cli)
{
	const struct create_client_args *a = cli->args;
	if (check_dir(cli, "--out-dir", a->out_dir) != 0)
		return 1;
	struct wb_certs_pair *ca, *client;
	if (load_ca(cli, a->ca_dir, &ca) != 0)
		return 1;
	struct wb_certs_validity v = wb_certs_days(a->days);
	char errmsg[512];
	int rc = wb_certs_make_client(ca, a->user, &v, &client, errmsg, sizeof(errmsg));
	if (rc != 0) {
		rc = cli_report(cli, rc, errmsg);
		goto out;
	}
	/* The user name was checked: letters, digits and ._-@ only. */
	char base[16 + WB_CERTS_CN_MAX];
	snprintf(base, sizeof(base), "client-%s", a->user);
	rc = save_and_print(cli, client, a->out_dir, base, a->force, a->user);
	wb_certs_free(client);
out:
	wb_certs_free(ca);
	return rc;
}

const struct cli_command cli_certs_commands[] = {
        {.group = "certs",
         .name = "create-ca",
         CLI_OPTS(create_ca_opts, struct create_ca_args),
         .run = run_create_ca,
         .help = "make a private CA for TLS: a new P-256 key and its self-signed certificate, "
                 "written to DIR/ca.crt and DIR/ca.key (mode 0600, never over an existing "
                 "file unless --force); keep ca.key off the servers"},
        {.group = "certs",
         .name = "create-node",
         CLI_OPTS(create_node_opts, struct create_node_args),
         .run = run_create_node,
         .help = "make a server's certificate signed by the CA, for the DNS names and "
                 "addresses given (at least one), written to DIR/node.crt and DIR/node.key"},
        {.group = "certs",
         .name = "create-client",
         CLI_OPTS(create_client_opts, struct create_client_args),
         .run = run_create_client,
         .help = "make a client certificate naming the user, signed by the CA, written to "
                 "DIR/client-NAME.crt and DIR/client-NAME.key"},
        {0},
};
