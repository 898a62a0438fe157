/* libFuzzer harness for the connection URL parser (client/wb_url.c). The
 * input is the URL, NUL-terminated in a malloc'd buffer of its exact size
 * so that ASan sees a read past it. Oracles, not just not crashing:
 *   - the same text parses the same way twice (no hidden state);
 *   - a failure says why in errmsg, and leaves *out untouched;
 *   - a failure never repeats what stands between ':' and '@' in the
 *     authority (a password put into the URL);
 *   - a success is well formed: every string ends inside its array; the
 *     address is "unix:/..." for whizbang+unix:// (never with TLS), and
 *     "HOST:PORT" or "[V6]:PORT" with PORT 1..65535 otherwise; a client
 *     certificate comes with its key; EXTERNAL needs TLS and no user; the
 *     user has no control characters.
 * A broken oracle aborts with the text on stderr. The corpus is
 * tests/fuzz/corpus_url/. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wb_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static void broken(const char *what, const char *text)
{
	fprintf(stderr, "fuzz_url: %s\n  text: %s\n", what, text);
	abort();
}

static bool ends_inside(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

/* The password of "whizbang://USER:PASSWORD@..." (either scheme, any
 * case), if the text has one of at least 4 bytes that appears nowhere else
 * in the text (so that a reason quoting another part cannot repeat it by
 * chance): into pw (NUL-terminated); false otherwise. */
static bool password_of(const char *text, char *pw, size_t cap)
{
	const char *a = NULL;
	if (strncasecmp(text, WB_URL_SCHEME, strlen(WB_URL_SCHEME)) == 0)
		a = text + strlen(WB_URL_SCHEME);
	else if (strncasecmp(text, WB_URL_UNIX_SCHEME, strlen(WB_URL_UNIX_SCHEME)) == 0)
		a = text + strlen(WB_URL_UNIX_SCHEME);
	if (a == NULL)
		return false;
	size_t auth = strcspn(a, "/?#");
	const char *at = memchr(a, '@', auth);
	const char *colon = at != NULL ? memchr(a, ':', (size_t)(at - a)) : NULL;
	if (colon == NULL)
		return false;
	size_t n = (size_t)(at - colon - 1);
	if (n < 4 || n >= cap)
		return false;
	memcpy(pw, colon + 1, n);
	pw[n] = '\0';
	/* Without regard to case: a reason may quote the scheme lower-cased. */
	const char *first = strcasestr(text, pw);
	return strcasestr(first + 1, pw) == NULL;
}

static void check_success(const struct wb_url *u, const char *text)
{
	if (!ends_inside(u->user, sizeof(u->user)) ||
	    !ends_inside(u->address, sizeof(u->address)) ||
	    !ends_inside(u->tls_ca_file, sizeof(u->tls_ca_file)) ||
	    !ends_inside(u->tls_cert_file, sizeof(u->tls_cert_file)) ||
	    !ends_inside(u->tls_key_file, sizeof(u->tls_key_file)) ||
	    !ends_inside(u->tls_server_name, sizeof(u->tls_server_name)))
		broken("a string does not end inside its array", text);
	for (const unsigned char *p = (const unsigned char *)u->user; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			broken("a control character in the user", text);
	if (u->unix_socket) {
		if (strncmp(u->address, "unix:/", 6) != 0)
			broken("a Unix socket address that is not unix:/PATH", text);
		if (u->tls)
			broken("TLS over a Unix socket", text);
	} else {
		const char *colon = strrchr(u->address, ':');
		if (colon == NULL || colon == u->address)
			broken("a TCP address without HOST:PORT", text);
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if (*end != '\0' || port < 1 || port > 65535)
			broken("a port outside 1..65535", text);
		if (u->address[0] == '[' && colon[-1] != ']')
			broken("an IPv6 address without its closing bracket", text);
	}
	if ((u->tls_cert_file[0] != '\0') != (u->tls_key_file[0] != '\0'))
		broken("a client certificate without its key, or the reverse", text);
	if (u->external && (!u->tls || u->user[0] != '\0'))
		broken("EXTERNAL without TLS, or with a user", text);
	if (!u->tls && (u->tls_ca_file[0] != '\0' || u->tls_server_name[0] != '\0' ||
	                u->tls_cert_file[0] != '\0'))
		broken("a TLS parameter with TLS off", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	static struct wb_url a, b;
	memset(&a, 0xa5, sizeof(a));
	memset(&b, 0x5a, sizeof(b));
	struct wb_url untouched;
	memset(&untouched, 0xa5, sizeof(untouched));
	char ea[512] = "", eb[512] = "";
	int ra = wb_url_parse(&a, text, ea, sizeof(ea));
	int rb = wb_url_parse(&b, text, eb, sizeof(eb));
	if (ra != rb || strcmp(ea, eb) != 0)
		broken("two parses of the same text differ", text);
	if (ra == 0) {
		/* Compare field by field: padding bytes keep their fill. */
		if (strcmp(a.user, b.user) != 0 || strcmp(a.address, b.address) != 0 ||
		    a.unix_socket != b.unix_socket || a.tls != b.tls || a.external != b.external ||
		    strcmp(a.tls_ca_file, b.tls_ca_file) != 0 ||
		    strcmp(a.tls_cert_file, b.tls_cert_file) != 0 ||
		    strcmp(a.tls_key_file, b.tls_key_file) != 0 ||
		    strcmp(a.tls_server_name, b.tls_server_name) != 0)
			broken("two parses of the same text give different URLs", text);
		check_success(&a, text);
		if (!wb_url_is_url(text))
			broken("parsed, yet wb_url_is_url() says it is no URL", text);
	} else {
		if (ea[0] == '\0')
			broken("a failure without a reason", text);
		if (memcmp(&a, &untouched, sizeof(a)) != 0)
			broken("a failure wrote into *out", text);
		char pw[256];
		if (password_of(text, pw, sizeof(pw)) && strstr(ea, pw) != NULL) {
			fprintf(stderr, "fuzz_url: reason: %s\n", ea);
			broken("the reason repeats the password", text);
		}
	}
	free(text);
	return 0;
}
