/* Connection URLs (wb_url.h): a strict parser of the two schemes.
 *
 * The text is cut from the outside in: the scheme, a fragment (refused), the
 * query (its parameters read one by one from one table, by name), then the
 * rest by scheme: for TCP the authority (user, host, port) and at most a
 * "/"; for the Unix socket an empty authority and the path. What the
 * parameters say together, and with the user, is checked last. Every
 * refusal is WB_E_INVAL with a sentence that names the part at fault; the
 * user part is never quoted back (it could be "user:password"), nor a
 * parameter's value. */
#include "wb_url.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"
#include "wb_error.h"

#define DEFAULT_PORT 7411u

/* The parameters, the same in every client (docs/PROTOCOL.md §1). */
enum param { P_TLS, P_CA, P_CERT, P_KEY, P_NAME, P_MECH, NPARAMS };
static const char *const param_names[NPARAMS] = {
        [P_TLS] = "tls",        [P_CA] = "tlsCaFile",       [P_CERT] = "tlsCertFile",
        [P_KEY] = "tlsKeyFile", [P_NAME] = "tlsServerName", [P_MECH] = "authMechanism",
};
/* Names other clients use, and what this one calls them. */
static const struct {
	const char *name;
	enum param is;
} other_names[] = {
        {"ca", P_CA},    {"cert", P_CERT},    {"key", P_KEY},         {"ssl", P_TLS},
        {"sni", P_NAME}, {"tlsCAFile", P_CA}, {"servername", P_NAME},
};

/* What the query says, before it is checked against the rest. */
struct query {
	bool given[NPARAMS];
	bool tls_value;
	bool external;
	bool scram;
};

__attribute__((format(printf, 3, 4))) static int refuse(char *errmsg, size_t errlen,
                                                        const char *fmt, ...)
{
	if (errmsg != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errmsg, errlen, fmt, ap);
		va_end(ap);
	}
	return WB_E_INVAL;
}

bool wb_url_is_url(const char *text)
{
	return text != NULL && strstr(text, "://") != NULL;
}

static bool starts_with_nocase(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* RFC 3986's unreserved and sub-delims characters: what a user or a path
 * may hold without percent-encoding (a path also ':', '@' and '/'). */
static bool plain_char(char ch, bool in_path)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	if (strchr("-._~!$&'()*+,;=", ch) != NULL)
		return true;
	return in_path && (ch == ':' || ch == '@' || ch == '/');
}

/* Percent-decodes s[0..n) into out (cap bytes, NUL-terminated): the decoded
 * bytes must be valid UTF-8 without control characters. what names the
 * part in messages. */
static int decode(const char *s, size_t n, bool in_path, char *out, size_t cap, const char *what,
                  char *errmsg, size_t errlen)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
			int lo = i + 2 < n ? hex_digit(s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return refuse(errmsg, errlen,
				              "a %% in the %s starts no escape of two hex digits",
				              what);
			ch = (char)(hi * 16 + lo);
			i += 2;
		} else if (!plain_char(ch, in_path)) {
			return refuse(errmsg, errlen,
			              "a character in the %s must be percent-encoded (%%XX): byte "
			              "0x%02x at offset %zu",
			              what, (unsigned)(unsigned char)ch, i);
		}
		if (k + 1 >= cap)
			return refuse(errmsg, errlen, "the %s is longer than %zu bytes", what,
			              cap - 1);
		out[k++] = ch;
	}
	out[k] = '\0';
	for (size_t i = 0; i < k;) {
		uint32_t cp;
		size_t len = utf8_decode((const unsigned char *)out + i, k - i, &cp);
		if (len == 0)
			return refuse(errmsg, errlen, "the %s is not valid UTF-8", what);
		if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
			return refuse(errmsg, errlen, "the %s holds a control character", what);
		i += len;
	}
	return 0;
}

/* A parameter's name, shown in a refusal: at most 32 characters, each
 * printable ASCII or '?'. */
static void shown_name(const char *s, size_t n, char out[33])
{
	size_t k = 0;
	for (; k < n && k < 32; k++)
		out[k] = s[k] > ' ' && s[k] < 0x7f ? s[k] : '?';
	out[k] = '\0';
}

/* Whether h[0..n) holds only what a host name may: letters, digits, '-',
 * '.' and '_'; the first other byte into *bad. */
static bool host_chars(const char *h, size_t n, unsigned char *bad)
{
	for (size_t i = 0; i < n; i++) {
		char ch = h[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_')) {
			*bad = (unsigned char)ch;
			return false;
		}
	}
	return true;
}

/* The refusal of an unknown parameter name[0..n), with the name this
 * client has for it when it looks like one. */
static int unknown_param(const char *name, size_t n, char *errmsg, size_t errlen)
{
	char shown[33];
	shown_name(name, n, shown);
	for (size_t k = 0; k < NPARAMS; k++)
		if (strlen(param_names[k]) == n && strncasecmp(param_names[k], name, n) == 0)
			return refuse(errmsg, errlen,
			              "unknown parameter '%s' (names are case-sensitive: %s)",
			              shown, param_names[k]);
	for (size_t k = 0; k < sizeof(other_names) / sizeof(other_names[0]); k++)
		if (strlen(other_names[k].name) == n && memcmp(other_names[k].name, name, n) == 0)
			return refuse(errmsg, errlen, "unknown parameter '%s' (did you mean %s?)",
			              shown, param_names[other_names[k].is]);
	return refuse(errmsg, errlen,
	              "unknown parameter '%s' (this client takes tls, tlsCaFile, tlsCertFile, "
	              "tlsKeyFile, tlsServerName and authMechanism)",
	              shown);
}

/* tlsServerName's value v[0..n), decoded into u->tls_server_name: a DNS
 * name or an IPv4 address as a host is written, or an IPv6 address, bare
 * or in brackets (kept bare: that is what a certificate holds). */
static int server_name(struct wb_url *u, const char *v, size_t n, char *errmsg, size_t errlen)
{
	char *out = u->tls_server_name;
	int rc = decode(v, n, true, out, sizeof(u->tls_server_name),
	                "value of parameter 'tlsServerName'", errmsg, errlen);
	if (rc != 0)
		return rc;
	size_t len = strlen(out);
	if (len >= 2 && out[0] == '[' && out[len - 1] == ']') {
		memmove(out, out + 1, len - 2);
		out[len - 2] = '\0';
		len -= 2;
	}
	struct in6_addr in6;
	unsigned char bad;
	if (inet_pton(AF_INET6, out, &in6) == 1 || (len > 0 && host_chars(out, len, &bad)))
		return 0;
	return refuse(errmsg, errlen,
	              "parameter 'tlsServerName' is not a DNS name or an IP address");
}

/* One parameter, value v[0..n) of parameter k, into u and q. */
static int param(struct wb_url *u, struct query *q, enum param k, const char *v, size_t n,
                 char *errmsg, size_t errlen)
{
	char what[64];
	snprintf(what, sizeof(what), "value of parameter '%s'", param_names[k]);
	switch (k) {
	case P_TLS:
		if (n == 4 && memcmp(v, "true", 4) == 0)
			q->tls_value = true;
		else if (!(n == 5 && memcmp(v, "false", 5) == 0))
			return refuse(errmsg, errlen, "parameter 'tls' takes true or false");
		return 0;
	case P_CA:
		return decode(v, n, true, u->tls_ca_file, sizeof(u->tls_ca_file), what, errmsg,
		              errlen);
	case P_CERT:
		return decode(v, n, true, u->tls_cert_file, sizeof(u->tls_cert_file), what, errmsg,
		              errlen);
	case P_KEY:
		return decode(v, n, true, u->tls_key_file, sizeof(u->tls_key_file), what, errmsg,
		              errlen);
	case P_NAME:
		return server_name(u, v, n, errmsg, errlen);
	case P_MECH:
		if (n == 8 && memcmp(v, "EXTERNAL", 8) == 0)
			q->external = true;
		else if (n == 13 && memcmp(v, "SCRAM-SHA-256", 13) == 0)
			q->scram = true;
		else
			return refuse(errmsg, errlen,
			              "parameter 'authMechanism' takes EXTERNAL or SCRAM-SHA-256");
		return 0;
	case NPARAMS:
		break;
	}
	return refuse(errmsg, errlen, "unknown parameter");
}

/* The query q[0..n) (after '?'): NAME=VALUE pairs between '&', each name
 * at most once, into u and *qs. An empty query ("?" alone) holds none. */
static int params(struct wb_url *u, struct query *qs, const char *q, size_t n, char *errmsg,
                  size_t errlen)
{
	for (size_t i = 0; i < n;) {
		size_t end = i;
		while (end < n && q[end] != '&')
			end++;
		size_t name_len = 0;
		while (i + name_len < end && q[i + name_len] != '=')
			name_len++;
		if (name_len == 0)
			return refuse(errmsg, errlen, "a parameter of the URL has no name");
		size_t k = 0;
		while (k < NPARAMS && !(strlen(param_names[k]) == name_len &&
		                        memcmp(param_names[k], q + i, name_len) == 0))
			k++;
		if (k == NPARAMS)
			return unknown_param(q + i, name_len, errmsg, errlen);
		if (qs->given[k])
			return refuse(errmsg, errlen, "parameter '%s' is given twice",
			              param_names[k]);
		const char *v = q + i + name_len + 1;
		if (i + name_len == end || v == q + end)
			return refuse(errmsg, errlen, "parameter '%s' has no value",
			              param_names[k]);
		int rc = param(u, qs, (enum param)k, v, (size_t)(q + end - v), errmsg, errlen);
		if (rc != 0)
			return rc;
		qs->given[k] = true;
		i = end < n ? end + 1 : end;
		if (end + 1 == n)
			return refuse(errmsg, errlen, "a parameter of the URL has no name");
	}
	return 0;
}

/* What the parameters say together, and with the rest of the URL. */
static int check_query(struct wb_url *u, const struct query *q, char *errmsg, size_t errlen)
{
	bool tls_params = false;
	for (size_t k = P_CA; k <= P_NAME; k++) {
		if (!q->given[k])
			continue;
		tls_params = true;
		if (q->given[P_TLS] && !q->tls_value)
			return refuse(errmsg, errlen, "tls=false contradicts parameter '%s'",
			              param_names[k]);
	}
	u->tls = q->tls_value || tls_params;
	if (u->tls && u->unix_socket) {
		size_t k = P_TLS;
		while (!q->given[k])
			k++;
		return refuse(errmsg, errlen,
		              "parameter '%s': TLS does not apply to a Unix socket (it never "
		              "leaves the machine)",
		              param_names[k]);
	}
	if (q->given[P_CERT] != q->given[P_KEY])
		return refuse(errmsg, errlen,
		              "tlsCertFile and tlsKeyFile go together: a client certificate and "
		              "its key");
	if (q->external && !u->tls)
		return refuse(errmsg, errlen,
		              "authMechanism=EXTERNAL needs TLS with a client certificate "
		              "(tlsCertFile and tlsKeyFile)");
	if (q->external && u->user[0] != '\0')
		return refuse(errmsg, errlen,
		              "authMechanism=EXTERNAL takes its user from the client certificate: "
		              "leave USER@ out");
	if (q->scram && u->user[0] == '\0')
		return refuse(errmsg, errlen,
		              "authMechanism=SCRAM-SHA-256 needs a user: whizbang://USER@HOST");
	u->external = q->external;
	return 0;
}

/* The port p[0..n): 1 to 65535 in at most five digits. */
static int port_of(const char *p, size_t n, unsigned *port, char *errmsg, size_t errlen)
{
	unsigned v = 0;
	if (n == 0)
		return refuse(errmsg, errlen, "the port after ':' is empty");
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9' || n > 5)
			return refuse(errmsg, errlen, "the port is not a number from 1 to 65535");
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v == 0 || v > 65535)
		return refuse(errmsg, errlen, "the port is not a number from 1 to 65535");
	*port = v;
	return 0;
}

/* whizbang://: the authority a[0..n) and what follows it, rest[0..rn)
 * (nothing, or "/"). */
static int parse_tcp(struct wb_url *u, const char *a, size_t n, const char *rest, size_t rn,
                     char *errmsg, size_t errlen)
{
	if (!(rn == 0 || (rn == 1 && rest[0] == '/')))
		return refuse(
		        errmsg, errlen,
		        "a whizbang:// URL has no path: it ends after HOST[:PORT] (or one '/')");
	const char *at = memchr(a, '@', n);
	if (at != NULL) {
		size_t ul = (size_t)(at - a);
		if (memchr(a, ':', ul) != NULL)
			return refuse(errmsg, errlen,
			              "a password does not belong in a URL: give the user alone "
			              "and the password through WHIZBANG_PASSWORD or the prompt");
		if (ul == 0)
			return refuse(errmsg, errlen, "the user before '@' is empty");
		int rc = decode(a, ul, false, u->user, sizeof(u->user), "user", errmsg, errlen);
		if (rc != 0)
			return rc;
		n -= ul + 1;
		a = at + 1;
	}
	if (n == 0)
		return refuse(errmsg, errlen, "the URL names no host: whizbang://HOST[:PORT]");
	char host[WB_URL_HOST_MAX + 1];
	size_t hl;
	const char *after;
	bool v6 = a[0] == '[';
	if (v6) {
		const char *close = memchr(a, ']', n);
		if (close == NULL)
			return refuse(errmsg, errlen, "the IPv6 address has no closing ']'");
		hl = (size_t)(close - a - 1);
		after = close + 1;
		struct in6_addr in6;
		if (hl == 0 || hl >= sizeof(host))
			return refuse(errmsg, errlen,
			              "the host in brackets is not an IPv6 address");
		memcpy(host, a + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, &in6) != 1)
			return refuse(errmsg, errlen,
			              "the host in brackets is not an IPv6 address");
	} else {
		const char *colon = memchr(a, ':', n);
		if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon + 1 - a)) != NULL)
			return refuse(errmsg, errlen,
			              "write an IPv6 address in brackets: whizbang://[::1]:7411");
		hl = colon != NULL ? (size_t)(colon - a) : n;
		after = a + hl;
		if (hl == 0)
			return refuse(errmsg, errlen,
			              "the URL names no host: whizbang://HOST[:PORT]");
		if (hl > WB_URL_HOST_MAX)
			return refuse(errmsg, errlen, "the host is longer than %u bytes",
			              WB_URL_HOST_MAX);
		unsigned char bad;
		if (!host_chars(a, hl, &bad))
			return refuse(errmsg, errlen,
			              "the host holds a character other than letters, digits, "
			              "'-', '.' and '_' (byte 0x%02x)",
			              (unsigned)bad);
		memcpy(host, a, hl);
		host[hl] = '\0';
	}
	size_t left = n - (size_t)(after - a);
	unsigned port = DEFAULT_PORT;
	if (left > 0) {
		if (after[0] != ':')
			return refuse(errmsg, errlen,
			              "after the IPv6 address comes ':PORT' or nothing");
		int rc = port_of(after + 1, left - 1, &port, errmsg, errlen);
		if (rc != 0)
			return rc;
	}
	snprintf(u->address, sizeof(u->address), "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
	         port);
	return 0;
}

/* whizbang+unix://: r[0..n) is everything after the scheme, before '?'. */
static int parse_unix(struct wb_url *u, const char *r, size_t n, char *errmsg, size_t errlen)
{
	if (n == 0 || r[0] != '/')
		return refuse(errmsg, errlen,
		              "a whizbang+unix URL names no host: its path follows the scheme, "
		              "three slashes in all (whizbang+unix:///PATH)");
	if (n == 1)
		return refuse(errmsg, errlen, "the URL names no socket path");
	char path[WB_URL_PATH_MAX + 1];
	int rc = decode(r, n, true, path, sizeof(path), "socket path", errmsg, errlen);
	if (rc != 0)
		return rc;
	snprintf(u->address, sizeof(u->address), "unix:%s", path);
	u->unix_socket = true;
	return 0;
}

int wb_url_parse(struct wb_url *out, const char *text, char *errmsg, size_t errlen)
{
	if (text == NULL)
		return refuse(errmsg, errlen, "no URL");
	bool is_unix = starts_with_nocase(text, WB_URL_UNIX_SCHEME);
	if (!is_unix && !starts_with_nocase(text, WB_URL_SCHEME)) {
		const char *sep = strstr(text, "://");
		if (sep == NULL)
			return refuse(errmsg, errlen,
			              "not a URL: whizbang://[USER@]HOST[:PORT] or "
			              "whizbang+unix:///PATH");
		char scheme[33];
		shown_name(text, (size_t)(sep - text), scheme);
		return refuse(errmsg, errlen,
		              "unknown scheme '%s': whizbang:// (TCP) or whizbang+unix:// (a Unix "
		              "socket)",
		              scheme);
	}
	const char *r = text + strlen(is_unix ? WB_URL_UNIX_SCHEME : WB_URL_SCHEME);
	if (strchr(r, '#') != NULL)
		return refuse(errmsg, errlen, "a connection URL has no fragment (#...)");
	struct wb_url u;
	memset(&u, 0, sizeof(u));
	struct query q;
	memset(&q, 0, sizeof(q));
	size_t n = strcspn(r, "?");
	if (r[n] == '?') {
		int rc = params(&u, &q, r + n + 1, strlen(r + n + 1), errmsg, errlen);
		if (rc != 0)
			return rc;
	}
	int rc;
	if (is_unix) {
		rc = parse_unix(&u, r, n, errmsg, errlen);
	} else {
		size_t an = strcspn(r, "/?");
		rc = parse_tcp(&u, r, an, r + an, n - an, errmsg, errlen);
	}
	if (rc == 0)
		rc = check_query(&u, &q, errmsg, errlen);
	if (rc != 0)
		return rc;
	*out = u;
	return 0;
}

/* s, or NULL when it is "". */
static const char *given(const char *s)
{
	return s[0] != '\0' ? s : NULL;
}

void wb_url_options(const struct wb_url *u, struct wb_options *opts)
{
	opts->tls = u->tls;
	opts->tls_ca_file = given(u->tls_ca_file);
	opts->tls_cert_file = given(u->tls_cert_file);
	opts->tls_key_file = given(u->tls_key_file);
	opts->tls_server_name = given(u->tls_server_name);
	opts->external = u->external;
}
