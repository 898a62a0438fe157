/* The CLI's connection (cli.h): where it goes and as whom, and the secrets
 * it reads on the way.
 *
 * Where: --server or $WHIZBANG_SERVER, as HOST:PORT (as always) or as a URL
 * (wb_url.h); with neither, the first local Unix socket that exists (and
 * that this user may connect to) of $WHIZBANG_SOCKET,
 * ./whizbang-data/whizbangd.sock and /var/lib/whizbang/whizbangd.sock, else
 * 127.0.0.1:7411 (at once when TLS is asked for: a socket has none).
 *
 * How: TLS when the URL's parameters or the flags named after them (--tls,
 * --tls-ca-file, ...) ask for it; HOST:PORT alone stays plaintext. A flag
 * and the URL that say different things are refused rather than one
 * quietly winning.
 *
 * As whom: --user NAME (or a URL's USER@) with a password from
 * $WHIZBANG_PASSWORD or the terminal; the client certificate's user
 * (--auth-mechanism EXTERNAL, or the URL's authMechanism=EXTERNAL);
 * --token-file FILE (mode 0600 or stricter); else $WHIZBANG_TOKEN; else
 * nobody (the socket's own user, or the server's anonymous role).
 *
 * Secrets never reach a message: a refused token file is named by its path
 * and mode, a bad URL by the part at fault, and every buffer that held a
 * password or a token is wiped before it is given back. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "wb_url.h"

/* The sockets looked for when no server is named, after $WHIZBANG_SOCKET. */
static const char *const local_sockets[] = {
        "./whizbang-data/whizbangd.sock",
        "/var/lib/whizbang/whizbangd.sock",
        NULL,
};

/* A token file holds one token of 64 characters and maybe a line end. */
#define TOKEN_FILE_MAX 256

/* A socket this process may connect to: connecting needs write permission
 * on it, so one that is there but not ours (another user's server) is
 * passed over rather than failing with EACCES. */
static bool is_socket(const char *path)
{
	struct stat st;
	return path != NULL && path[0] != '\0' && stat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0;
}

/* Whether the TLS flags ask for TLS. */
static bool tls_flags(const struct cli *cli)
{
	return cli->tls || cli->tls_ca_file != NULL || cli->tls_server_name != NULL ||
	       cli->tls_cert_file != NULL || cli->tls_key_file != NULL;
}

/* The address to connect to into cli->address, and a URL's parts into *u
 * (all empty for an address that is no URL): 0, or 1 after reporting. */
static int resolve_address(struct cli *cli, struct wb_url *u)
{
	memset(u, 0, sizeof(*u));
	const char *server = cli->server;
	if (server != NULL && wb_url_is_url(server)) {
		char why[256];
		if (wb_url_parse(u, server, why, sizeof(why)) != 0)
			return cli_reportf(cli, WB_E_INVAL, "the server's URL: %s", why);
		snprintf(cli->address, sizeof(cli->address), "%s", u->address);
		return 0;
	}
	if (server == NULL && tls_flags(cli)) {
		snprintf(cli->address, sizeof(cli->address), "%s", WB_DEFAULT_ADDRESS);
		return 0;
	}
	if (server == NULL) {
		const char *env = getenv("WHIZBANG_SOCKET");
		const char *found = is_socket(env) ? env : NULL;
		for (size_t i = 0; found == NULL && local_sockets[i] != NULL; i++)
			if (is_socket(local_sockets[i]))
				found = local_sockets[i];
		if (found == NULL) {
			snprintf(cli->address, sizeof(cli->address), "%s", WB_DEFAULT_ADDRESS);
			return 0;
		}
		int w = snprintf(cli->address, sizeof(cli->address), "%s%s", WB_UNIX_PREFIX, found);
		if (w < 0 || (size_t)w >= sizeof(cli->address))
			return cli_reportf(cli, WB_E_INVAL, "the socket path %s is too long",
			                   found);
		return 0;
	}
	int w = snprintf(cli->address, sizeof(cli->address), "%s", server);
	if (w < 0 || (size_t)w >= sizeof(cli->address))
		return cli_reportf(cli, WB_E_INVAL, "the server's address is too long");
	return 0;
}

/* ---------------------------------------------------------------- the terminal */

/* The terminal's settings while echo is off, for the signal handler that
 * puts them back. */
static volatile sig_atomic_t tty_fd = -1;
static struct termios tty_saved;

static void restore_tty_cb(int sig)
{
	if (tty_fd >= 0)
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

static const int tty_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define NTTY_SIGNALS (sizeof(tty_signals) / sizeof(tty_signals[0]))

/* Asks prompt on the terminal fd and reads one line with echo off into
 * buf[0..len): 0, WB_E_INVAL when the line does not fit, WB_E_IO. */
static int ask(int fd, const char *prompt, char *buf, size_t len)
{
	struct termios quiet;
	if (tcgetattr(fd, &tty_saved) != 0)
		return WB_E_IO;
	quiet = tty_saved;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	struct sigaction sa = {.sa_handler = restore_tty_cb}, old[NTTY_SIGNALS];
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < NTTY_SIGNALS; i++)
		sigaction(tty_signals[i], &sa, &old[i]);
	tty_fd = fd;
	/* Echo goes off before the prompt shows: nothing typed after the
	 * prompt is ever echoed (nor lost to the flush). */
	int rc = tcsetattr(fd, TCSAFLUSH, &quiet) == 0 && write(fd, prompt, strlen(prompt)) >= 0
	                 ? 0
	                 : WB_E_IO;
	size_t n = 0;
	while (rc == 0) {
		char ch;
		ssize_t got = read(fd, &ch, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rc = WB_E_IO;
			break;
		}
		if (ch == '\n' || ch == '\r')
			break;
		if (n + 1 >= len) {
			rc = WB_E_INVAL; /* read on to the line's end, keeping nothing */
			continue;
		}
		buf[n++] = ch;
	}
	buf[n] = '\0';
	tcsetattr(fd, TCSAFLUSH, &tty_saved);
	tty_fd = -1;
	for (size_t i = 0; i < NTTY_SIGNALS; i++)
		sigaction(tty_signals[i], &old[i], NULL);
	if (write(fd, "\n", 1) < 0 && rc == 0)
		rc = WB_E_IO;
	if (rc != 0)
		explicit_bzero(buf, len);
	return rc;
}

int cli_secret(const struct cli *cli, const char *env, const char *what, bool confirm, char *buf,
               size_t len)
{
	const char *v = getenv(env);
	if (v != NULL && v[0] != '\0') {
		size_t n = strlen(v);
		if (n >= len)
			return cli_reportf(cli, WB_E_INVAL, "$%s is longer than %zu bytes", env,
			                   len - 1);
		memcpy(buf, v, n + 1);
		return 0;
	}
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return cli_reportf(cli, WB_E_INVAL,
		                   "no %s: set $%s, or run whizbang on a terminal to be asked",
		                   what, env);
	char prompt[128];
	snprintf(prompt, sizeof(prompt), "Enter the %s: ", what);
	int rc = ask(fd, prompt, buf, len);
	if (rc == 0 && buf[0] == '\0')
		rc = WB_E_NOTFOUND;
	if (rc == 0 && confirm) {
		char again[CLI_SECRET_MAX + 1];
		snprintf(prompt, sizeof(prompt), "Enter the %s again: ", what);
		rc = ask(fd, prompt, again, sizeof(again));
		if (rc == 0 && strcmp(again, buf) != 0)
			rc = WB_E_KEYEXIST;
		explicit_bzero(again, sizeof(again));
	}
	close(fd);
	if (rc == 0)
		return 0;
	explicit_bzero(buf, len);
	switch (rc) {
	case WB_E_NOTFOUND:
		return cli_reportf(cli, WB_E_INVAL, "the %s is empty", what);
	case WB_E_KEYEXIST:
		return cli_reportf(cli, WB_E_INVAL, "the two %ss differ; nothing was changed",
		                   what);
	case WB_E_INVAL:
		return cli_reportf(cli, WB_E_INVAL, "the %s is longer than %zu bytes", what,
		                   len - 1);
	default:
		return cli_reportf(cli, WB_E_IO, "cannot read the %s from the terminal", what);
	}
}

/* ---------------------------------------------------------------- tokens */

/* Reads the token in path into buf[0..len): the file must be a regular file
 * that only its owner may read or write (mode 0600 or stricter), holding one
 * line. 0, or 1 after reporting (never with the file's content). */
static int read_token_file(const struct cli *cli, const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return cli_reportf(cli, WB_E_IO, "--token-file %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cli_reportf(cli, WB_E_INVAL, "--token-file %s is not a regular file", path);
	}
	if ((st.st_mode & 077) != 0) {
		close(fd);
		return cli_reportf(cli, WB_E_INVAL,
		                   "--token-file %s is mode %04o: a token file must be readable "
		                   "by its owner alone, mode 0600 or stricter (chmod 600 %s)",
		                   path, (unsigned)(st.st_mode & 07777), path);
	}
	char raw[TOKEN_FILE_MAX + 1];
	size_t n = 0;
	for (;;) {
		ssize_t got = read(fd, raw + n, sizeof(raw) - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
		if (n == sizeof(raw) - 1)
			break;
	}
	close(fd);
	raw[n] = '\0';
	size_t end = n;
	while (end > 0 && (raw[end - 1] == '\n' || raw[end - 1] == '\r' || raw[end - 1] == ' '))
		end--;
	raw[end] = '\0';
	int rc = 0;
	if (n == sizeof(raw) - 1 || end >= len)
		rc = cli_reportf(cli, WB_E_INVAL, "--token-file %s holds more than a token", path);
	else if (end == 0 || memchr(raw, '\n', end) != NULL)
		rc = cli_reportf(cli, WB_E_INVAL, "--token-file %s does not hold one line", path);
	else
		memcpy(buf, raw, end + 1);
	explicit_bzero(raw, sizeof(raw));
	return rc;
}

/* ---------------------------------------------------------------- connecting */

/* The TLS settings of the URL u and of the flags into opts: a flag and the
 * URL that say different things are refused. 0, or 1 after reporting. */
static int tls_options(const struct cli *cli, const struct wb_url *u, struct wb_options *opts)
{
	wb_url_options(u, opts);
	const struct {
		const char *flag;
		const char *param;
		const char *value;
		const char **into;
	} texts[] = {
	        {"--tls-ca-file", "tlsCaFile", cli->tls_ca_file, &opts->tls_ca_file},
	        {"--tls-server-name", "tlsServerName", cli->tls_server_name,
	         &opts->tls_server_name},
	        {"--tls-cert-file", "tlsCertFile", cli->tls_cert_file, &opts->tls_cert_file},
	        {"--tls-key-file", "tlsKeyFile", cli->tls_key_file, &opts->tls_key_file},
	};
	for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
		if (texts[k].value == NULL)
			continue;
		if (*texts[k].into != NULL && strcmp(*texts[k].into, texts[k].value) != 0)
			return cli_reportf(cli, WB_E_INVAL, "%s and the server's URL's %s differ",
			                   texts[k].flag, texts[k].param);
		*texts[k].into = texts[k].value;
	}
	opts->tls = opts->tls || tls_flags(cli);
	if ((opts->tls_cert_file == NULL) != (opts->tls_key_file == NULL))
		return cli_reportf(cli, WB_E_INVAL,
		                   "--tls-cert-file and --tls-key-file go together: a client "
		                   "certificate and its key");
	if (cli->auth_mechanism == CLI_MECH_SCRAM && opts->external)
		return cli_reportf(cli, WB_E_INVAL,
		                   "--auth-mechanism and the server's URL's authMechanism differ");
	if (cli->auth_mechanism == CLI_MECH_EXTERNAL)
		opts->external = true;
	return 0;
}

int cli_connect(struct cli *cli)
{
	struct wb_url url;
	int rc = resolve_address(cli, &url);
	if (rc != 0)
		return rc;
	struct wb_options opts = {
	        .client_name = "whizbang-cli",
	        .timeout_ms = (int)cli->timeout_ms,
	        .max_response = 0,
	};
	rc = tls_options(cli, &url, &opts);
	if (rc != 0)
		return rc;
	const char *user = cli->user;
	if (url.user[0] != '\0') {
		if (user != NULL && strcmp(user, url.user) != 0)
			return cli_reportf(cli, WB_E_INVAL,
			                   "--user and the server's URL name different users");
		user = url.user;
	}
	if (user != NULL && cli->token_file != NULL)
		return cli_reportf(cli, WB_E_INVAL,
		                   "log in with a user or with --token-file, not both");
	if (opts.external && (user != NULL || cli->token_file != NULL))
		return cli_reportf(cli, WB_E_INVAL,
		                   "EXTERNAL logs in the user the client certificate names: give "
		                   "no --user or --token-file with it");
	if (cli->auth_mechanism == CLI_MECH_SCRAM && user == NULL)
		return cli_reportf(cli, WB_E_INVAL,
		                   "--auth-mechanism SCRAM-SHA-256 needs --user NAME (or the "
		                   "server's URL's USER@)");
	char secret[CLI_SECRET_MAX + 1];
	secret[0] = '\0';
	/* With EXTERNAL the certificate says who: no password, and no token
	 * from the environment either. */
	if (user != NULL) {
		rc = cli_secret(cli, "WHIZBANG_PASSWORD", "password", false, secret,
		                sizeof(secret));
		if (rc != 0)
			return rc;
		opts.user = user;
		opts.password = secret;
	} else if (cli->token_file != NULL) {
		rc = read_token_file(cli, cli->token_file, secret, sizeof(secret));
		if (rc != 0)
			return rc;
		opts.token = secret;
	} else if (!opts.external) {
		const char *env = getenv("WHIZBANG_TOKEN");
		if (env != NULL && env[0] != '\0')
			opts.token = env;
	}
	char msg[512] = "";
	rc = wb_connect(&cli->client, cli->address, &opts, msg, sizeof(msg));
	explicit_bzero(secret, sizeof(secret));
	if (rc != 0)
		return cli_report(cli, rc, msg);
	return 0;
}
