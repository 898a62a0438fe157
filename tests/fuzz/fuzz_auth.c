/* libFuzzer harness for the parsers of auth/: the four SCRAM messages, the
 * stored credential, the API token and the base64 codecs. The input's first
 * byte picks the target (modulo 7), the rest is the text, passed in a
 * malloc'd buffer of its exact size so that ASan sees a read past it.
 *
 * Each target starts from RFC 7677 §3's exchange (its nonces and salt fixed
 * through the random callback) and holds the parser to an oracle, not just
 * to not crashing:
 *   0  server-first step on the text: a success answers "r=<client nonce>
 *      <server nonce>,s=...,i=4096", and the claimed user is known;
 *   1  server-final step after the RFC's client-first: only the RFC's
 *      client-final is accepted (a proof cannot be forged), and then the
 *      answer is the RFC's server-final;
 *   2  client-final step after the RFC's client-first: a success answers
 *      "c=biws,r=" with the nonce the text carried;
 *   3  verify step after the RFC's server-first: only a text that starts
 *      with the RFC's server-final is accepted;
 *   4  credential parse: a success formats back to the same text;
 *   5  token parse: a success generates back to the same text;
 *   6  base64 and base64url decode: a success encodes back to the same text.
 * A broken oracle aborts with the text on stderr; sanitizer reports and
 * leaks are findings too. The corpus is tests/fuzz/corpus_auth/. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "scram.h"
#include "token.h"

#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static void broken(const char *what, const char *text, size_t len)
{
	fprintf(stderr, "fuzz_auth: %s\n  text: %.*s\n", what, (int)len, text);
	abort();
}

/* Hands out the script's bytes, then zeros. */
struct script {
	const uint8_t *bytes;
	size_t len, off;
};

static int script_cb(void *arg, uint8_t *buf, size_t n)
{
	struct script *s = arg;
	for (size_t i = 0; i < n; i++)
		buf[i] = s->off < s->len ? s->bytes[s->off++] : 0;
	return 0;
}

static struct auth_scram_cred rfc_cred;
static struct auth_scram_keys rfc_keys;

static int lookup_cb(void *arg, const char *user, size_t len, struct auth_scram_cred *out)
{
	(void)arg;
	if (len == 4 && memcmp(user, "user", 4) == 0) {
		*out = rfc_cred;
		return 0;
	}
	return WB_E_NOTFOUND;
}

static void init(void)
{
	uint8_t salt[AUTH_SCRAM_SALT_LEN];
	size_t n = 0;
	if (auth_b64_decode(salt, sizeof(salt), &n, RFC_SALT, strlen(RFC_SALT)) != 0 ||
	    auth_scram_keys_derive(&rfc_keys, "pencil", 6, salt, n, 4096) != 0 ||
	    auth_scram_cred_from_keys(&rfc_cred, &rfc_keys) != 0)
		abort();
}

static struct auth_scram_server *server(struct script *nonce)
{
	struct auth_scram_server_config cfg = {
	        .lookup = lookup_cb,
	        .random = script_cb,
	        .random_arg = nonce,
	        .iterations = 4096,
	        .nonce_len = strlen(RFC_SNONCE),
	};
	struct auth_scram_server *s = NULL;
	memset(cfg.secret, 0x5c, sizeof(cfg.secret));
	*nonce = (struct script){(const uint8_t *)RFC_SNONCE, strlen(RFC_SNONCE), 0};
	if (auth_scram_server_new(&s, &cfg) != 0)
		abort();
	return s;
}

/* A client of the RFC's user whose cache holds the RFC's keys, so that only
 * a server-first with another salt runs PBKDF2, and then at 4096
 * iterations at most. */
static struct auth_scram_client *client(struct script *nonce, struct auth_scram_keys *cache)
{
	struct auth_scram_client_config cfg = {
	        .user = "user",
	        .user_len = 4,
	        .password = "pencil",
	        .password_len = 6,
	        .random = script_cb,
	        .random_arg = nonce,
	        .nonce_len = strlen(RFC_CNONCE),
	        .max_iterations = 4096,
	        .cache = cache,
	};
	struct auth_scram_client *c = NULL;
	const char *m;
	size_t len;
	*nonce = (struct script){(const uint8_t *)RFC_CNONCE, strlen(RFC_CNONCE), 0};
	*cache = rfc_keys;
	if (auth_scram_client_new(&c, &cfg) != 0 || auth_scram_client_first(c, &m, &len) != 0)
		abort();
	return c;
}

static void fuzz_server_first(const char *text, size_t len)
{
	struct script nonce;
	struct auth_scram_server *s = server(&nonce);
	const char *reply;
	size_t rlen, ulen;
	if (auth_scram_server_first(s, text, len, &reply, &rlen) == 0) {
		const char *user = auth_scram_server_claimed_user(s, &ulen);
		const char *r = reply + 2;
		size_t n = strcspn(r, ",");
		if (user == NULL || ulen == 0 || strncmp(reply, "r=", 2) != 0 ||
		    strlen(reply) != rlen || rlen > AUTH_SCRAM_MSG_MAX || n <= strlen(RFC_SNONCE) ||
		    memcmp(r + n - strlen(RFC_SNONCE), RFC_SNONCE, strlen(RFC_SNONCE)) != 0 ||
		    strcmp(reply + rlen - 7, ",i=4096") != 0)
			broken("server-first answer", text, len);
	} else if (auth_scram_server_reason(s) == AUTH_SCRAM_R_NONE) {
		broken("a failure without a reason", text, len);
	}
	auth_scram_server_free(s);
}

static void fuzz_server_final(const char *text, size_t len)
{
	struct script nonce;
	struct auth_scram_server *s = server(&nonce);
	const char *reply;
	size_t rlen;
	if (auth_scram_server_first(s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &reply, &rlen) !=
	            0 ||
	    strcmp(reply, RFC_SERVER_FIRST) != 0)
		abort();
	if (auth_scram_server_final(s, text, len, &reply, &rlen) == 0) {
		if (len != strlen(RFC_CLIENT_FINAL) || memcmp(text, RFC_CLIENT_FINAL, len) != 0)
			broken("a client-final other than the RFC's was accepted", text, len);
		if (strcmp(reply, RFC_SERVER_FINAL) != 0)
			broken("server-final", reply, rlen);
	}
	auth_scram_server_free(s);
}

static void fuzz_client_final(const char *text, size_t len)
{
	struct script nonce;
	struct auth_scram_keys cache;
	struct auth_scram_client *c = client(&nonce, &cache);
	const char *reply;
	size_t rlen;
	if (auth_scram_client_final(c, text, len, &reply, &rlen) == 0) {
		const char *r = memchr(text, ',', len);
		size_t n = r == NULL ? 0 : (size_t)(r - text);
		if (strncmp(reply, "c=biws,r=", 9) != 0 || n < 2 || strncmp(text, "r=", 2) != 0 ||
		    strncmp(reply + 7, text, n) != 0 || reply[7 + n] != ',')
			broken("client-final answer", text, len);
	}
	auth_scram_client_free(c);
}

static void fuzz_verify(const char *text, size_t len)
{
	struct script nonce;
	struct auth_scram_keys cache;
	struct auth_scram_client *c = client(&nonce, &cache);
	const char *reply;
	size_t rlen, vlen = strlen(RFC_SERVER_FINAL);
	if (auth_scram_client_final(c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &reply, &rlen) !=
	            0 ||
	    strcmp(reply, RFC_CLIENT_FINAL) != 0)
		abort();
	if (auth_scram_client_verify(c, text, len) == 0 &&
	    (len < vlen || memcmp(text, RFC_SERVER_FINAL, vlen) != 0 ||
	     (len > vlen && text[vlen] != ',')))
		broken("a server-final other than the RFC's was accepted", text, len);
	auth_scram_client_free(c);
}

static void fuzz_cred(const char *text, size_t len)
{
	struct auth_scram_cred cred;
	char again[AUTH_SCRAM_CRED_STR_MAX + 1];
	size_t n = 0;
	if (auth_scram_cred_parse(&cred, text, len) != 0)
		return;
	if (auth_scram_cred_format(&cred, again, sizeof(again), &n) != 0 || n != len ||
	    memcmp(again, text, len) != 0)
		broken("a credential that does not format back", text, len);
}

static void fuzz_token(const char *text, size_t len)
{
	struct auth_token t;
	struct auth_token_record rec;
	uint8_t bytes[AUTH_TOKEN_ID_LEN + AUTH_TOKEN_SECRET_LEN];
	char again[AUTH_TOKEN_STR_LEN + 1];
	if (auth_token_parse(&t, text, len) != 0)
		return;
	memcpy(bytes, t.id, sizeof(t.id));
	memcpy(bytes + sizeof(t.id), t.secret, sizeof(t.secret));
	struct script s = {bytes, sizeof(bytes), 0};
	if (auth_token_generate(again, sizeof(again), &rec, 0, 1, 0, script_cb, &s) != 0 ||
	    len != AUTH_TOKEN_STR_LEN || memcmp(again, text, len) != 0)
		broken("a token that does not generate back", text, len);
	if (auth_token_check(&rec, &t, 2) != AUTH_TOKEN_VALID)
		broken("a token that does not check against its own record", text, len);
}

static void fuzz_b64(const char *text, size_t len)
{
	uint8_t bytes[AUTH_B64_BYTES_MAX];
	char again[AUTH_B64_TEXT_MAX + 1];
	size_t n = 0;
	if (auth_b64_decode(bytes, sizeof(bytes), &n, text, len) == 0 &&
	    (auth_b64_encode(again, bytes, n) != len || memcmp(again, text, len) != 0))
		broken("base64 that does not encode back", text, len);
	if (auth_b64url_decode(bytes, sizeof(bytes), &n, text, len) == 0 &&
	    (auth_b64url_encode(again, bytes, n) != len || memcmp(again, text, len) != 0))
		broken("base64url that does not encode back", text, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		init();
		ready = true;
	}
	if (size == 0)
		return 0;
	size_t len = size - 1;
	char *text = malloc(len > 0 ? len : 1);
	if (text == NULL)
		abort();
	memcpy(text, data + 1, len);
	switch (data[0] % 7) {
	case 0:
		fuzz_server_first(text, len);
		break;
	case 1:
		fuzz_server_final(text, len);
		break;
	case 2:
		fuzz_client_final(text, len);
		break;
	case 3:
		fuzz_verify(text, len);
		break;
	case 4:
		fuzz_cred(text, len);
		break;
	case 5:
		fuzz_token(text, len);
		break;
	default:
		fuzz_b64(text, len);
		break;
	}
	free(text);
	return 0;
}
