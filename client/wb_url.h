/* Connection URLs: where a client connects, and as whom, in one string.
 *
 *	whizbang://[USER@]HOST[:PORT][/][?PARAMS]
 *	whizbang+unix:///PATH[?PARAMS]
 *
 * The first is TCP: HOST a name or an IPv4 address, or an IPv6 address in
 * brackets; PORT 1 to 65535, 7411 when absent. USER (percent-encoded, so
 * that '@' is written %40) names who authenticates; a password never goes
 * in a URL, so "USER:PASSWORD@" is refused. The second is the server's Unix
 * domain socket at the absolute PATH (percent-encoded), which the three
 * slashes begin: its authority is empty. PARAMS are NAME=VALUE pairs
 * between '&', each at most once, values percent-encoded:
 *
 *	tls=true|false        TLS from the first byte; any tls* parameter below
 *	                      turns it on too, and tls=false with one is refused
 *	tlsCaFile=PATH        the CA file the server's certificate must chain to
 *	tlsCertFile=PATH      a client certificate, with tlsKeyFile (both or
 *	tlsKeyFile=PATH       neither)
 *	tlsServerName=NAME    the name the certificate must carry (default: HOST)
 *	authMechanism=EXTERNAL|SCRAM-SHA-256
 *	                      EXTERNAL logs in as the client certificate's user
 *	                      (needs TLS, and no USER@); SCRAM-SHA-256 (the
 *	                      default with USER@) needs USER@
 *
 * Every other parameter is refused, named (never its value), as is TLS
 * for whizbang+unix:// (a Unix socket never leaves the machine). Schemes
 * are matched without regard to case; nothing else is. A fragment (#...)
 * is refused. docs/PROTOCOL.md §1 has the grammar and the table of cases
 * that tests/test_url.c runs.
 *
 * Pure: no I/O, no allocation, no global state; the result is what
 * wb_connect() takes (wb.h): the address, the user to authenticate as and
 * the TLS options. */
#ifndef WB_URL_H
#define WB_URL_H

#include <stdbool.h>
#include <stddef.h>

#include "wb.h"

#define WB_URL_SCHEME "whizbang://"
#define WB_URL_UNIX_SCHEME "whizbang+unix://"
/* The longest user name (as SCRAM-SHA-256 takes it), host name and socket
 * path accepted, in bytes after percent-decoding. */
#define WB_URL_USER_MAX 255u
#define WB_URL_HOST_MAX 253u
#define WB_URL_PATH_MAX 107u
/* The longest file a TLS parameter names, in bytes after percent-decoding. */
#define WB_URL_FILE_MAX 1024u

struct wb_url {
	/* The user before '@', percent-decoded: valid UTF-8 without control
	 * characters. "" when the URL names none. */
	char user[WB_URL_USER_MAX + 1];
	/* What wb_connect() takes: "HOST:PORT", "[V6]:PORT" or "unix:PATH". */
	char address[WB_URL_HOST_MAX + 16];
	/* True for whizbang+unix://. */
	bool unix_socket;
	/* TLS: on with tls=true or any tls* parameter. The files and the name
	 * are percent-decoded, "" when not given. */
	bool tls;
	char tls_ca_file[WB_URL_FILE_MAX + 1];
	char tls_cert_file[WB_URL_FILE_MAX + 1];
	char tls_key_file[WB_URL_FILE_MAX + 1];
	char tls_server_name[WB_URL_HOST_MAX + 1];
	/* authMechanism=EXTERNAL. */
	bool external;
};

/* True when text looks like a URL (it holds "://"), and so should be read
 * with wb_url_parse() rather than as HOST:PORT. */
bool wb_url_is_url(const char *text);

/* Parses text as a connection URL into *out. Returns 0, or WB_E_INVAL with a
 * sentence into errmsg[0..errlen) (when errmsg is not NULL) saying what is
 * wrong; the sentence never repeats a password or a parameter's value.
 * *out is written only on success. Keeps no reference to text. */
int wb_url_parse(struct wb_url *out, const char *text, char *errmsg, size_t errlen);

/* Sets what u says of TLS and EXTERNAL in opts (tls, tls_ca_file,
 * tls_cert_file, tls_key_file, tls_server_name, external; a part u does not
 * give is NULL), leaving the rest of opts alone. The strings point into
 * u, which must outlive opts' use. The address (u->address) and the user
 * are the caller's to pass on. */
void wb_url_options(const struct wb_url *u, struct wb_options *opts);

#endif
