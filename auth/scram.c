/* SCRAM-SHA-256, both sides (scram.h).
 *
 * Each side is a small state machine over fixed buffers sized from
 * AUTH_SCRAM_MSG_MAX, so that an exchange allocates once, at its start, and
 * a message is checked against its bound before anything is parsed. The
 * parsers walk a message once, left to right, in the order of RFC 5802 §7's
 * grammar; anything the grammar does not allow ends the exchange. A failure
 * moves the machine to FAILED, where it stays: a second attempt needs a new
 * exchange, and with it a new server nonce. */
#include "scram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64.h"
#include "utf8.h"

/* The gs2 header our client sends: no channel binding, no authzid. Its
 * base64, "biws", is what client-final's c= then carries. */
#define GS2_PLAIN "n,,"
#define NONCE_ROUNDS_MAX 64

static const char *const reason_names[AUTH_SCRAM_R_COUNT] = {
        [AUTH_SCRAM_R_NONE] = "none",
        [AUTH_SCRAM_R_STATE] = "state",
        [AUTH_SCRAM_R_TOO_LONG] = "too_long",
        [AUTH_SCRAM_R_MALFORMED] = "malformed",
        [AUTH_SCRAM_R_CHANNEL_BINDING] = "channel_binding",
        [AUTH_SCRAM_R_AUTHZID] = "authzid",
        [AUTH_SCRAM_R_EXTENSION] = "extension",
        [AUTH_SCRAM_R_CHANNEL] = "channel",
        [AUTH_SCRAM_R_NONCE] = "nonce",
        [AUTH_SCRAM_R_UNKNOWN_USER] = "unknown_user",
        [AUTH_SCRAM_R_PROOF] = "proof",
        [AUTH_SCRAM_R_SALT] = "salt",
        [AUTH_SCRAM_R_ITERATIONS] = "iterations",
        [AUTH_SCRAM_R_SERVER_SIGNATURE] = "server_signature",
        [AUTH_SCRAM_R_SERVER_ERROR] = "server_error",
        [AUTH_SCRAM_R_LOOKUP] = "lookup",
        [AUTH_SCRAM_R_CREDENTIAL] = "credential",
        [AUTH_SCRAM_R_RANDOM] = "random",
        [AUTH_SCRAM_R_CRYPTO] = "crypto",
};

const char *auth_scram_reason_name(enum auth_scram_reason r)
{
	if ((unsigned)r >= AUTH_SCRAM_R_COUNT)
		return "unknown";
	return reason_names[r];
}

/* ---- Checks of names and passwords. ---- */

/* UTF-8 with no NUL or other control character (C0, DEL, C1). */
static bool text_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t k = utf8_decode(p + i, len - i, &cp);
		if (k == 0 || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
			return false;
		i += k;
	}
	return true;
}

int auth_scram_user_check(const char *user, size_t len)
{
	if (user == NULL || len == 0 || len > AUTH_SCRAM_USER_MAX || !text_ok(user, len))
		return WB_E_INVAL;
	return 0;
}

int auth_scram_password_check(const char *pw, size_t len)
{
	if (pw == NULL || len == 0 || len > AUTH_SCRAM_PASSWORD_MAX || !text_ok(pw, len))
		return WB_E_INVAL;
	return 0;
}

/* ---- Hashes. Each counts one unit of work in *work when work is set. ---- */

static int hmac(uint8_t out[AUTH_SCRAM_KEY_LEN], const uint8_t *key, size_t key_len,
                const void *data, size_t n, uint64_t *work)
{
	unsigned int len = 0;
	if (work != NULL)
		(*work)++;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, n, out, &len) == NULL ||
	    len != AUTH_SCRAM_KEY_LEN)
		return WB_INTERNAL;
	return 0;
}

static int sha256(uint8_t out[AUTH_SCRAM_KEY_LEN], const void *data, size_t n, uint64_t *work)
{
	unsigned int len = 0;
	if (work != NULL)
		(*work)++;
	if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1 || len != AUTH_SCRAM_KEY_LEN)
		return WB_INTERNAL;
	return 0;
}

/* ---- Keys and credentials. ---- */

static bool salt_len_ok(size_t n)
{
	return n >= AUTH_SCRAM_SALT_MIN && n <= AUTH_SCRAM_SALT_MAX;
}

static bool iterations_ok(uint32_t n)
{
	return n >= AUTH_SCRAM_ITER_MIN && n <= AUTH_SCRAM_ITER_MAX;
}

int auth_scram_keys_derive(struct auth_scram_keys *out, const char *pw, size_t pw_len,
                           const uint8_t *salt, size_t salt_len, uint32_t iterations)
{
	uint8_t salted[AUTH_SCRAM_KEY_LEN];
	struct auth_scram_keys k;
	int rc = WB_INTERNAL;

	if (auth_scram_password_check(pw, pw_len) != 0 || salt == NULL || !salt_len_ok(salt_len) ||
	    !iterations_ok(iterations))
		return WB_E_INVAL;
	memset(&k, 0, sizeof(k));
	memcpy(k.salt, salt, salt_len);
	k.salt_len = salt_len;
	k.iterations = iterations;
	/* SaltedPassword := Hi(password, salt, i), which is PBKDF2 with
	 * HMAC-SHA-256 and one block of output (RFC 5802 §2.2). */
	if (PKCS5_PBKDF2_HMAC(pw, (int)pw_len, salt, (int)salt_len, (int)iterations, EVP_sha256(),
	                      (int)sizeof(salted), salted) != 1)
		goto out;
	if (hmac(k.client_key, salted, sizeof(salted), "Client Key", 10, NULL) != 0 ||
	    hmac(k.server_key, salted, sizeof(salted), "Server Key", 10, NULL) != 0)
		goto out;
	*out = k;
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(&k, sizeof(k));
	return rc;
}

int auth_scram_cred_from_keys(struct auth_scram_cred *out, const struct auth_scram_keys *keys)
{
	struct auth_scram_cred c;

	if (!salt_len_ok(keys->salt_len) || !iterations_ok(keys->iterations))
		return WB_E_INVAL;
	memset(&c, 0, sizeof(c));
	memcpy(c.salt, keys->salt, keys->salt_len);
	c.salt_len = keys->salt_len;
	c.iterations = keys->iterations;
	if (sha256(c.stored_key, keys->client_key, AUTH_SCRAM_KEY_LEN, NULL) != 0) {
		OPENSSL_cleanse(&c, sizeof(c));
		return WB_INTERNAL;
	}
	memcpy(c.server_key, keys->server_key, AUTH_SCRAM_KEY_LEN);
	*out = c;
	OPENSSL_cleanse(&c, sizeof(c));
	return 0;
}

int auth_scram_cred_derive(struct auth_scram_cred *out, const char *pw, size_t pw_len,
                           uint32_t iterations, auth_random_fn random, void *random_arg)
{
	uint8_t salt[AUTH_SCRAM_SALT_LEN];
	struct auth_scram_keys keys;
	int rc;

	if (random == NULL || auth_scram_password_check(pw, pw_len) != 0 ||
	    !iterations_ok(iterations))
		return WB_E_INVAL;
	rc = random(random_arg, salt, sizeof(salt));
	if (rc != 0)
		return rc;
	rc = auth_scram_keys_derive(&keys, pw, pw_len, salt, sizeof(salt), iterations);
	if (rc != 0)
		return rc;
	rc = auth_scram_cred_from_keys(out, &keys);
	OPENSSL_cleanse(&keys, sizeof(keys));
	return rc;
}

/* Parses a decimal count of 1 to 10 digits with no sign and no leading zero
 * into *out. */
static bool parse_count(const char *s, size_t n, uint32_t *out)
{
	uint64_t v = 0;
	if (n == 0 || n > 10 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* The length of s[0..n) up to the first c, or n. */
static size_t span_until(const char *s, size_t n, char c)
{
	const char *hit = memchr(s, c, n);
	return hit == NULL ? n : (size_t)(hit - s);
}

int auth_scram_cred_format(const struct auth_scram_cred *cred, char *buf, size_t cap, size_t *len)
{
	char tmp[AUTH_SCRAM_CRED_STR_MAX + 1];
	int n;
	size_t at;

	if (cap < sizeof(tmp) || !salt_len_ok(cred->salt_len) || !iterations_ok(cred->iterations))
		return WB_E_INVAL;
	n = snprintf(tmp, sizeof(tmp), AUTH_SCRAM_MECHANISM "$%u:", (unsigned)cred->iterations);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return WB_E_INVAL;
	at = (size_t)n;
	at += auth_b64_encode(tmp + at, cred->salt, cred->salt_len);
	tmp[at++] = '$';
	at += auth_b64_encode(tmp + at, cred->stored_key, AUTH_SCRAM_KEY_LEN);
	tmp[at++] = ':';
	at += auth_b64_encode(tmp + at, cred->server_key, AUTH_SCRAM_KEY_LEN);
	memcpy(buf, tmp, at + 1);
	*len = at;
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return 0;
}

int auth_scram_cred_parse(struct auth_scram_cred *out, const char *s, size_t len)
{
	static const char prefix[] = AUTH_SCRAM_MECHANISM "$";
	struct auth_scram_cred c;
	size_t n, got;
	int rc = WB_E_INVAL;

	memset(&c, 0, sizeof(c));
	if (s == NULL || len > AUTH_SCRAM_CRED_STR_MAX || len < sizeof(prefix) - 1 ||
	    memcmp(s, prefix, sizeof(prefix) - 1) != 0)
		return WB_E_INVAL;
	s += sizeof(prefix) - 1;
	len -= sizeof(prefix) - 1;

	n = span_until(s, len, ':');
	if (n == len || !parse_count(s, n, &c.iterations) || !iterations_ok(c.iterations))
		goto out;
	s += n + 1;
	len -= n + 1;

	n = span_until(s, len, '$');
	if (n == len || auth_b64_decode(c.salt, sizeof(c.salt), &c.salt_len, s, n) != 0 ||
	    !salt_len_ok(c.salt_len))
		goto out;
	s += n + 1;
	len -= n + 1;

	n = span_until(s, len, ':');
	if (n == len || auth_b64_decode(c.stored_key, sizeof(c.stored_key), &got, s, n) != 0 ||
	    got != AUTH_SCRAM_KEY_LEN)
		goto out;
	s += n + 1;
	len -= n + 1;

	if (auth_b64_decode(c.server_key, sizeof(c.server_key), &got, s, len) != 0 ||
	    got != AUTH_SCRAM_KEY_LEN)
		goto out;
	*out = c;
	rc = 0;
out:
	OPENSSL_cleanse(&c, sizeof(c));
	return rc;
}

/* ---- Message parsing. ---- */

struct cur {
	const char *p;
	const char *end;
};

static bool at_end(const struct cur *c)
{
	return c->p == c->end;
}

static size_t left(const struct cur *c)
{
	return (size_t)(c->end - c->p);
}

/* Consumes the literal lit when the message continues with it. */
static bool eat(struct cur *c, const char *lit)
{
	size_t n = strlen(lit);
	if (left(c) < n || memcmp(c->p, lit, n) != 0)
		return false;
	c->p += n;
	return true;
}

/* The bytes up to the next ',' or the end, consumed. */
static size_t take_value(struct cur *c, const char **start)
{
	size_t n = span_until(c->p, left(c), ',');
	*start = c->p;
	c->p += n;
	return n;
}

static bool is_printable(char ch)
{
	return ch >= 0x21 && ch <= 0x7E && ch != ',';
}

static bool is_alpha(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

/* A saslname up to the next ',' or the end, decoded ("=2C" is ',', "=3D"
 * is '='; any other '=' is malformed) into dst, which has room for cap
 * bytes. */
static enum auth_scram_reason read_saslname(struct cur *c, char *dst, size_t cap, size_t *len)
{
	size_t n = 0;
	while (!at_end(c) && *c->p != ',') {
		char ch = *c->p;
		if (ch == '=') {
			if (eat(c, "=2C"))
				ch = ',';
			else if (eat(c, "=3D"))
				ch = '=';
			else
				return AUTH_SCRAM_R_MALFORMED;
		} else {
			c->p++;
		}
		if (n == cap)
			return AUTH_SCRAM_R_TOO_LONG;
		dst[n++] = ch;
	}
	if (n == 0)
		return AUTH_SCRAM_R_MALFORMED;
	*len = n;
	return AUTH_SCRAM_R_NONE;
}

/* A nonce (1*printable) up to the next ',' or the end, at most max bytes. */
static enum auth_scram_reason read_nonce(struct cur *c, size_t max, const char **start, size_t *len)
{
	size_t n = take_value(c, start);
	if (n == 0)
		return AUTH_SCRAM_R_MALFORMED;
	if (n > max)
		return AUTH_SCRAM_R_TOO_LONG;
	for (size_t i = 0; i < n; i++) {
		if (!is_printable((*start)[i]))
			return AUTH_SCRAM_R_MALFORMED;
	}
	*len = n;
	return AUTH_SCRAM_R_NONE;
}

/* One optional extension, "," ALPHA "=" 1*value-char, whose value is UTF-8
 * with no NUL and no ','. Its meaning is ignored (RFC 5802 §5.1). */
static enum auth_scram_reason read_extension(struct cur *c)
{
	const char *v;
	size_t n;

	if (!eat(c, ",") || left(c) < 2 || !is_alpha(c->p[0]) || c->p[1] != '=')
		return AUTH_SCRAM_R_MALFORMED;
	c->p += 2;
	n = take_value(c, &v);
	if (n == 0 || memchr(v, '\0', n) != NULL || !utf8_valid(v, n, NULL))
		return AUTH_SCRAM_R_MALFORMED;
	return AUTH_SCRAM_R_NONE;
}

static enum auth_scram_reason read_extensions(struct cur *c)
{
	while (!at_end(c)) {
		enum auth_scram_reason r = read_extension(c);
		if (r != AUTH_SCRAM_R_NONE)
			return r;
	}
	return AUTH_SCRAM_R_NONE;
}

/* Decodes a base64 value of exactly AUTH_SCRAM_KEY_LEN bytes. */
static bool decode_key(uint8_t out[AUTH_SCRAM_KEY_LEN], const char *text, size_t n)
{
	size_t got;
	return auth_b64_decode(out, AUTH_SCRAM_KEY_LEN, &got, text, n) == 0 &&
	       got == AUTH_SCRAM_KEY_LEN;
}

/* ---- Message building. ---- */

/* Text appended into a fixed buffer; an overflow is remembered, not
 * written, and the message is then refused. */
struct out {
	char *buf;
	size_t cap; /* NUL included */
	size_t len;
	bool overflow;
};

static void put(struct out *o, const void *s, size_t n)
{
	if (o->overflow || n >= o->cap - o->len) {
		o->overflow = true;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_b64(struct out *o, const uint8_t *bytes, size_t n)
{
	char text[AUTH_B64_LEN(AUTH_SCRAM_SALT_MAX) + 1];
	put(o, text, auth_b64_encode(text, bytes, n));
}

/* Draws a nonce of n characters, each uniform over the 93 printable
 * characters: a random byte's low 7 bits are kept when they are one of
 * them (each then has exactly two byte values), and dropped otherwise. */
static int make_nonce(auth_random_fn random, void *arg, char *out, size_t n)
{
	uint8_t bytes[AUTH_SCRAM_NONCE_LEN_MAX];
	size_t have = 0;
	int rc = 0;

	for (int round = 0; have < n; round++) {
		size_t want = n - have;
		if (round == NONCE_ROUNDS_MAX) {
			/* About 73% of bytes are kept: a source that gives this
			 * few in 64 rounds is broken. */
			rc = WB_INTERNAL;
			break;
		}
		rc = random(arg, bytes, want);
		if (rc != 0)
			break;
		for (size_t i = 0; i < want; i++) {
			char ch = (char)(bytes[i] & 0x7F);
			if (is_printable(ch))
				out[have++] = ch;
		}
	}
	OPENSSL_cleanse(bytes, sizeof(bytes));
	return rc;
}

static bool nonce_len_ok(size_t n)
{
	return n >= AUTH_SCRAM_NONCE_LEN_MIN && n <= AUTH_SCRAM_NONCE_LEN_MAX;
}

/* ---- The server. ---- */

enum server_state {
	SERVER_NEW,
	SERVER_FIRST_SENT,
	SERVER_DONE,
	SERVER_FAILED,
};

struct auth_scram_server {
	enum server_state state;
	enum auth_scram_reason reason;
	struct auth_scram_server_config cfg;
	/* The user name from client-first, NUL-terminated. */
	char user[AUTH_SCRAM_USER_MAX + 1];
	size_t user_len;
	/* The gs2 header as the client sent it, which c= must repeat. */
	char gs2[AUTH_SCRAM_MSG_MAX];
	size_t gs2_len;
	/* The client's nonce followed by ours. */
	char nonce[AUTH_SCRAM_PEER_NONCE_MAX + AUTH_SCRAM_NONCE_LEN_MAX];
	size_t nonce_len;
	/* The user's credential, or the mock one of an unknown user. */
	struct auth_scram_cred cred;
	bool mock;
	/* AuthMessage: client-first-message-bare "," server-first-message ","
	 * client-final-message-without-proof, as the messages arrive. */
	char auth[3 * AUTH_SCRAM_MSG_MAX + 2];
	size_t auth_len;
	/* The last reply. */
	char reply[AUTH_SCRAM_MSG_MAX + 1];
	size_t reply_len;
	uint64_t work;
};

int auth_scram_server_new(struct auth_scram_server **out,
                          const struct auth_scram_server_config *cfg)
{
	struct auth_scram_server *s;
	uint32_t iterations = cfg->iterations == 0 ? AUTH_SCRAM_ITER_DEFAULT : cfg->iterations;
	size_t nonce_len = cfg->nonce_len == 0 ? AUTH_SCRAM_NONCE_LEN : cfg->nonce_len;

	uint8_t unset = 0;

	for (size_t i = 0; i < sizeof(cfg->secret); i++)
		unset |= cfg->secret[i];
	/* An all-zero secret is one nobody set: every server would then give
	 * an unknown name the same mock salt. */
	if (cfg->lookup == NULL || cfg->random == NULL || !iterations_ok(iterations) ||
	    !nonce_len_ok(nonce_len) || unset == 0)
		return WB_E_INVAL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return WB_E_NOMEM;
	s->state = SERVER_NEW;
	s->cfg = *cfg;
	s->cfg.iterations = iterations;
	s->cfg.nonce_len = nonce_len;
	*out = s;
	return 0;
}

void auth_scram_server_free(struct auth_scram_server *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

/* Ends the exchange for reason. A peer's fault gives WB_UNAUTHENTICATED; a
 * local failure passes its own code. */
static int server_fail(struct auth_scram_server *s, enum auth_scram_reason reason, int code)
{
	s->state = SERVER_FAILED;
	s->reason = reason;
	s->reply_len = 0;
	s->reply[0] = '\0';
	return code;
}

/* A call in a state that does not take it. A failed exchange keeps the
 * reason it failed for. */
static int server_out_of_order(struct auth_scram_server *s)
{
	if (s->state == SERVER_FAILED)
		return WB_UNAUTHENTICATED;
	return server_fail(s, AUTH_SCRAM_R_STATE, WB_UNAUTHENTICATED);
}

/* Parses client-first into s: the gs2 header, the user, the client nonce
 * (*cnonce, *cnonce_len, pointing into msg) and the start of the bare
 * message (*bare). */
static enum auth_scram_reason parse_client_first(struct auth_scram_server *s, const char *msg,
                                                 size_t len, const char **bare, const char **cnonce,
                                                 size_t *cnonce_len)
{
	struct cur c = {msg, msg + len};
	char authzid[AUTH_SCRAM_USER_MAX];
	size_t authzid_len = 0;
	bool has_authzid = false;
	enum auth_scram_reason r;

	/* gs2-header: "n" "," [authzid] ",". */
	if (eat(&c, "y,") || eat(&c, "p="))
		return AUTH_SCRAM_R_CHANNEL_BINDING;
	if (!eat(&c, "n,"))
		return AUTH_SCRAM_R_MALFORMED;
	if (eat(&c, "a=")) {
		r = read_saslname(&c, authzid, sizeof(authzid), &authzid_len);
		if (r != AUTH_SCRAM_R_NONE)
			return r;
		has_authzid = true;
	}
	if (!eat(&c, ","))
		return AUTH_SCRAM_R_MALFORMED;
	s->gs2_len = (size_t)(c.p - msg);
	memcpy(s->gs2, msg, s->gs2_len);

	/* client-first-message-bare: [m=...,] n=user,r=nonce[,extensions]. */
	*bare = c.p;
	if (eat(&c, "m="))
		return AUTH_SCRAM_R_EXTENSION;
	if (!eat(&c, "n="))
		return AUTH_SCRAM_R_MALFORMED;
	r = read_saslname(&c, s->user, AUTH_SCRAM_USER_MAX, &s->user_len);
	if (r != AUTH_SCRAM_R_NONE)
		return r;
	s->user[s->user_len] = '\0';
	if (auth_scram_user_check(s->user, s->user_len) != 0) {
		s->user_len = 0;
		s->user[0] = '\0';
		return AUTH_SCRAM_R_MALFORMED;
	}
	if (!eat(&c, ",r="))
		return AUTH_SCRAM_R_MALFORMED;
	r = read_nonce(&c, AUTH_SCRAM_PEER_NONCE_MAX, cnonce, cnonce_len);
	if (r != AUTH_SCRAM_R_NONE)
		return r;
	r = read_extensions(&c);
	if (r != AUTH_SCRAM_R_NONE)
		return r;
	if (has_authzid &&
	    (authzid_len != s->user_len || memcmp(authzid, s->user, authzid_len) != 0))
		return AUTH_SCRAM_R_AUTHZID;
	return AUTH_SCRAM_R_NONE;
}

/* Writes the mock credential of s->user into *cred: salt and keys from
 * HMAC-SHA-256(secret, user), the configured count. */
static int mock_cred(struct auth_scram_server *s, struct auth_scram_cred *cred)
{
	uint8_t mac[AUTH_SCRAM_KEY_LEN];
	int rc = hmac(mac, s->cfg.secret, sizeof(s->cfg.secret), s->user, s->user_len, &s->work);
	if (rc != 0)
		return rc;
	memset(cred, 0, sizeof(*cred));
	memcpy(cred->salt, mac, AUTH_SCRAM_SALT_LEN);
	cred->salt_len = AUTH_SCRAM_SALT_LEN;
	cred->iterations = s->cfg.iterations;
	/* Never compared successfully: a mock exchange fails whatever the
	 * proof. The keys only give the last step the same work to do. */
	memcpy(cred->stored_key, mac, AUTH_SCRAM_KEY_LEN);
	memcpy(cred->server_key, mac, AUTH_SCRAM_KEY_LEN);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

int auth_scram_server_first(struct auth_scram_server *s, const char *msg, size_t len,
                            const char **reply, size_t *reply_len)
{
	struct auth_scram_cred mock;
	const char *bare, *cnonce;
	size_t cnonce_len = 0;
	enum auth_scram_reason r;
	char iter[16];
	int rc;

	if (s->state != SERVER_NEW)
		return server_out_of_order(s);
	if (msg == NULL)
		return server_fail(s, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
	if (len > AUTH_SCRAM_MSG_MAX)
		return server_fail(s, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	r = parse_client_first(s, msg, len, &bare, &cnonce, &cnonce_len);
	if (r != AUTH_SCRAM_R_NONE)
		return server_fail(s, r, WB_UNAUTHENTICATED);

	/* The mock credential is made for every user, known or not, so that
	 * both cost the same. */
	rc = mock_cred(s, &mock);
	if (rc != 0)
		return server_fail(s, AUTH_SCRAM_R_CRYPTO, rc);
	memset(&s->cred, 0, sizeof(s->cred));
	rc = s->cfg.lookup(s->cfg.lookup_arg, s->user, s->user_len, &s->cred);
	if (rc == WB_E_NOTFOUND) {
		s->cred = mock;
		s->mock = true;
	} else if (rc != 0) {
		OPENSSL_cleanse(&mock, sizeof(mock));
		return server_fail(s, AUTH_SCRAM_R_LOOKUP, rc);
	}
	OPENSSL_cleanse(&mock, sizeof(mock));
	if (!salt_len_ok(s->cred.salt_len) || !iterations_ok(s->cred.iterations))
		return server_fail(s, AUTH_SCRAM_R_CREDENTIAL, WB_E_CORRUPT);

	memcpy(s->nonce, cnonce, cnonce_len);
	rc = make_nonce(s->cfg.random, s->cfg.random_arg, s->nonce + cnonce_len, s->cfg.nonce_len);
	if (rc != 0)
		return server_fail(s, AUTH_SCRAM_R_RANDOM, rc);
	s->nonce_len = cnonce_len + s->cfg.nonce_len;

	struct out o = {s->reply, sizeof(s->reply), 0, false};
	puts_(&o, "r=");
	put(&o, s->nonce, s->nonce_len);
	puts_(&o, ",s=");
	put_b64(&o, s->cred.salt, s->cred.salt_len);
	snprintf(iter, sizeof(iter), ",i=%u", (unsigned)s->cred.iterations);
	puts_(&o, iter);

	struct out a = {s->auth, sizeof(s->auth), 0, false};
	put(&a, bare, len - (size_t)(bare - msg));
	puts_(&a, ",");
	put(&a, o.buf, o.len);
	puts_(&a, ",");
	if (o.overflow || a.overflow)
		return server_fail(s, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	s->reply_len = o.len;
	s->auth_len = a.len;
	s->state = SERVER_FIRST_SENT;
	*reply = s->reply;
	*reply_len = s->reply_len;
	return 0;
}

/* Parses client-final: its channel binding and nonce must be this
 * exchange's; *proof receives the proof and *without_proof the length of
 * client-final-message-without-proof. */
static enum auth_scram_reason parse_client_final(struct auth_scram_server *s, const char *msg,
                                                 size_t len, uint8_t proof[AUTH_SCRAM_KEY_LEN],
                                                 size_t *without_proof)
{
	struct cur c = {msg, msg + len};
	uint8_t cbind[AUTH_B64_BYTES_MAX];
	const char *v;
	size_t n, got;

	if (!eat(&c, "c="))
		return AUTH_SCRAM_R_MALFORMED;
	n = take_value(&c, &v);
	if (auth_b64_decode(cbind, sizeof(cbind), &got, v, n) != 0)
		return AUTH_SCRAM_R_MALFORMED;
	if (got != s->gs2_len || memcmp(cbind, s->gs2, got) != 0)
		return AUTH_SCRAM_R_CHANNEL;
	if (!eat(&c, ",r="))
		return AUTH_SCRAM_R_MALFORMED;
	n = take_value(&c, &v);
	if (n != s->nonce_len || memcmp(v, s->nonce, n) != 0)
		return AUTH_SCRAM_R_NONCE;
	/* Optional extensions, then the proof, which is last. */
	for (;;) {
		const char *attr = c.p;
		if (eat(&c, ",p=")) {
			if (!decode_key(proof, c.p, left(&c)))
				return AUTH_SCRAM_R_MALFORMED;
			*without_proof = (size_t)(attr - msg);
			return AUTH_SCRAM_R_NONE;
		}
		enum auth_scram_reason r = at_end(&c) ? AUTH_SCRAM_R_MALFORMED : read_extension(&c);
		if (r != AUTH_SCRAM_R_NONE)
			return r;
	}
}

int auth_scram_server_final(struct auth_scram_server *s, const char *msg, size_t len,
                            const char **reply, size_t *reply_len)
{
	uint8_t proof[AUTH_SCRAM_KEY_LEN], sig[AUTH_SCRAM_KEY_LEN];
	uint8_t client_key[AUTH_SCRAM_KEY_LEN], stored[AUTH_SCRAM_KEY_LEN];
	size_t without_proof = 0;
	enum auth_scram_reason r;
	int rc;

	if (s->state != SERVER_FIRST_SENT)
		return server_out_of_order(s);
	if (msg == NULL)
		return server_fail(s, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
	if (len > AUTH_SCRAM_MSG_MAX)
		return server_fail(s, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	r = parse_client_final(s, msg, len, proof, &without_proof);
	if (r != AUTH_SCRAM_R_NONE)
		return server_fail(s, r, WB_UNAUTHENTICATED);

	struct out a = {s->auth, sizeof(s->auth), s->auth_len, false};
	put(&a, msg, without_proof);
	if (a.overflow)
		return server_fail(s, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	s->auth_len = a.len;

	/* ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage), and the
	 * proof is right when H(ClientKey) is StoredKey (RFC 5802 §3). */
	rc = hmac(sig, s->cred.stored_key, AUTH_SCRAM_KEY_LEN, s->auth, s->auth_len, &s->work);
	if (rc != 0)
		goto crypto;
	for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
		client_key[i] = (uint8_t)(proof[i] ^ sig[i]);
	rc = sha256(stored, client_key, sizeof(client_key), &s->work);
	if (rc != 0)
		goto crypto;
	bool match = CRYPTO_memcmp(stored, s->cred.stored_key, AUTH_SCRAM_KEY_LEN) == 0;
	/* ClientSignature and the proof together give ClientKey. */
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	if (!match || s->mock)
		return server_fail(s, s->mock ? AUTH_SCRAM_R_UNKNOWN_USER : AUTH_SCRAM_R_PROOF,
		                   WB_UNAUTHENTICATED);

	rc = hmac(sig, s->cred.server_key, AUTH_SCRAM_KEY_LEN, s->auth, s->auth_len, &s->work);
	if (rc != 0)
		goto crypto;
	struct out o = {s->reply, sizeof(s->reply), 0, false};
	puts_(&o, "v=");
	put_b64(&o, sig, sizeof(sig));
	s->reply_len = o.len;
	s->state = SERVER_DONE;
	*reply = s->reply;
	*reply_len = s->reply_len;
	return 0;
crypto:
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	return server_fail(s, AUTH_SCRAM_R_CRYPTO, rc);
}

enum auth_scram_reason auth_scram_server_reason(const struct auth_scram_server *s)
{
	return s->reason;
}

const char *auth_scram_server_user(const struct auth_scram_server *s, size_t *len)
{
	if (s->state != SERVER_DONE)
		return NULL;
	*len = s->user_len;
	return s->user;
}

const char *auth_scram_server_claimed_user(const struct auth_scram_server *s, size_t *len)
{
	if (s->user_len == 0)
		return NULL;
	*len = s->user_len;
	return s->user;
}

uint64_t auth_scram_server_work(const struct auth_scram_server *s)
{
	return s->work;
}

/* ---- The client. ---- */

enum client_state {
	CLIENT_NEW,
	CLIENT_FIRST_SENT,
	CLIENT_FINAL_SENT,
	CLIENT_DONE,
	CLIENT_FAILED,
};

#define SERVER_ERROR_MAX 64

struct auth_scram_client {
	enum client_state state;
	enum auth_scram_reason reason;
	char user[AUTH_SCRAM_USER_MAX];
	size_t user_len;
	/* Wiped once the keys are derived. */
	char password[AUTH_SCRAM_PASSWORD_MAX];
	size_t password_len;
	auth_random_fn random;
	void *random_arg;
	size_t nonce_len;
	uint32_t max_iterations;
	struct auth_scram_keys *cache;
	char nonce[AUTH_SCRAM_NONCE_LEN_MAX];
	struct auth_scram_keys keys;
	uint8_t server_signature[AUTH_SCRAM_KEY_LEN];
	char auth[3 * AUTH_SCRAM_MSG_MAX + 2];
	size_t auth_len;
	char reply[AUTH_SCRAM_MSG_MAX + 1];
	size_t reply_len;
	char server_error[SERVER_ERROR_MAX + 1];
};

int auth_scram_client_new(struct auth_scram_client **out,
                          const struct auth_scram_client_config *cfg)
{
	struct auth_scram_client *c;
	size_t nonce_len = cfg->nonce_len == 0 ? AUTH_SCRAM_NONCE_LEN : cfg->nonce_len;
	uint32_t max_iter = cfg->max_iterations == 0 ? AUTH_SCRAM_ITER_MAX : cfg->max_iterations;

	if (cfg->random == NULL || auth_scram_user_check(cfg->user, cfg->user_len) != 0 ||
	    auth_scram_password_check(cfg->password, cfg->password_len) != 0 ||
	    !nonce_len_ok(nonce_len) || !iterations_ok(max_iter))
		return WB_E_INVAL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return WB_E_NOMEM;
	c->state = CLIENT_NEW;
	memcpy(c->user, cfg->user, cfg->user_len);
	c->user_len = cfg->user_len;
	memcpy(c->password, cfg->password, cfg->password_len);
	c->password_len = cfg->password_len;
	c->random = cfg->random;
	c->random_arg = cfg->random_arg;
	c->nonce_len = nonce_len;
	c->max_iterations = max_iter;
	c->cache = cfg->cache;
	*out = c;
	return 0;
}

void auth_scram_client_free(struct auth_scram_client *c)
{
	if (c == NULL)
		return;
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}

static int client_fail(struct auth_scram_client *c, enum auth_scram_reason reason, int code)
{
	c->state = CLIENT_FAILED;
	c->reason = reason;
	c->reply_len = 0;
	c->reply[0] = '\0';
	OPENSSL_cleanse(c->password, sizeof(c->password));
	c->password_len = 0;
	OPENSSL_cleanse(&c->keys, sizeof(c->keys));
	return code;
}

static int client_out_of_order(struct auth_scram_client *c)
{
	if (c->state == CLIENT_FAILED)
		return WB_UNAUTHENTICATED;
	return client_fail(c, AUTH_SCRAM_R_STATE, WB_UNAUTHENTICATED);
}

int auth_scram_client_first(struct auth_scram_client *c, const char **msg, size_t *len)
{
	int rc;

	if (c->state != CLIENT_NEW)
		return client_out_of_order(c);
	rc = make_nonce(c->random, c->random_arg, c->nonce, c->nonce_len);
	if (rc != 0)
		return client_fail(c, AUTH_SCRAM_R_RANDOM, rc);

	struct out o = {c->reply, sizeof(c->reply), 0, false};
	puts_(&o, GS2_PLAIN "n=");
	for (size_t i = 0; i < c->user_len; i++) {
		if (c->user[i] == ',')
			puts_(&o, "=2C");
		else if (c->user[i] == '=')
			puts_(&o, "=3D");
		else
			put(&o, &c->user[i], 1);
	}
	puts_(&o, ",r=");
	put(&o, c->nonce, c->nonce_len);
	/* The longest user name escaped and the longest nonce fit. */
	if (o.overflow)
		return client_fail(c, AUTH_SCRAM_R_TOO_LONG, WB_INTERNAL);

	/* AuthMessage starts with the bare message: after "n,,". */
	struct out a = {c->auth, sizeof(c->auth), 0, false};
	put(&a, o.buf + strlen(GS2_PLAIN), o.len - strlen(GS2_PLAIN));
	c->auth_len = a.len;
	c->reply_len = o.len;
	c->state = CLIENT_FIRST_SENT;
	*msg = c->reply;
	*len = c->reply_len;
	return 0;
}

/* Parses server-first: *nonce (pointing into msg) extends the client's
 * nonce; the salt and count are within bounds. */
static enum auth_scram_reason parse_server_first(struct auth_scram_client *c, const char *msg,
                                                 size_t len, const char **nonce, size_t *nonce_len,
                                                 uint8_t *salt, size_t *salt_len,
                                                 uint32_t *iterations)
{
	struct cur cur = {msg, msg + len};
	uint8_t bytes[AUTH_B64_BYTES_MAX];
	enum auth_scram_reason r;
	const char *v;
	size_t n;

	if (eat(&cur, "m="))
		return AUTH_SCRAM_R_EXTENSION;
	if (!eat(&cur, "r="))
		return AUTH_SCRAM_R_MALFORMED;
	r = read_nonce(&cur, c->nonce_len + AUTH_SCRAM_PEER_NONCE_MAX, nonce, nonce_len);
	if (r != AUTH_SCRAM_R_NONE)
		return r;
	if (*nonce_len <= c->nonce_len || memcmp(*nonce, c->nonce, c->nonce_len) != 0)
		return AUTH_SCRAM_R_NONCE;
	if (!eat(&cur, ",s="))
		return AUTH_SCRAM_R_MALFORMED;
	n = take_value(&cur, &v);
	if (auth_b64_decode(bytes, sizeof(bytes), salt_len, v, n) != 0)
		return AUTH_SCRAM_R_MALFORMED;
	if (!salt_len_ok(*salt_len))
		return AUTH_SCRAM_R_SALT;
	memcpy(salt, bytes, *salt_len);
	if (!eat(&cur, ",i="))
		return AUTH_SCRAM_R_MALFORMED;
	n = take_value(&cur, &v);
	if (!parse_count(v, n, iterations))
		return AUTH_SCRAM_R_MALFORMED;
	if (*iterations < AUTH_SCRAM_ITER_MIN || *iterations > c->max_iterations)
		return AUTH_SCRAM_R_ITERATIONS;
	return read_extensions(&cur);
}

static bool cache_hit(const struct auth_scram_keys *cache, const uint8_t *salt, size_t salt_len,
                      uint32_t iterations)
{
	return cache != NULL && cache->iterations != 0 && cache->iterations == iterations &&
	       cache->salt_len == salt_len && memcmp(cache->salt, salt, salt_len) == 0;
}

int auth_scram_client_final(struct auth_scram_client *c, const char *msg, size_t len,
                            const char **reply, size_t *reply_len)
{
	uint8_t salt[AUTH_SCRAM_SALT_MAX];
	uint8_t stored[AUTH_SCRAM_KEY_LEN], sig[AUTH_SCRAM_KEY_LEN], proof[AUTH_SCRAM_KEY_LEN];
	size_t salt_len = 0, nonce_len = 0;
	uint32_t iterations = 0;
	const char *nonce;
	enum auth_scram_reason r;
	int rc;

	if (c->state != CLIENT_FIRST_SENT)
		return client_out_of_order(c);
	if (msg == NULL)
		return client_fail(c, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
	if (len > AUTH_SCRAM_MSG_MAX)
		return client_fail(c, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	r = parse_server_first(c, msg, len, &nonce, &nonce_len, salt, &salt_len, &iterations);
	if (r != AUTH_SCRAM_R_NONE)
		return client_fail(c, r, WB_UNAUTHENTICATED);

	if (cache_hit(c->cache, salt, salt_len, iterations)) {
		c->keys = *c->cache;
	} else {
		rc = auth_scram_keys_derive(&c->keys, c->password, c->password_len, salt, salt_len,
		                            iterations);
		if (rc != 0)
			return client_fail(c, AUTH_SCRAM_R_CRYPTO, WB_INTERNAL);
	}
	OPENSSL_cleanse(c->password, sizeof(c->password));
	c->password_len = 0;

	struct out o = {c->reply, sizeof(c->reply), 0, false};
	puts_(&o, "c=biws,r=");
	put(&o, nonce, nonce_len);
	struct out a = {c->auth, sizeof(c->auth), c->auth_len, false};
	puts_(&a, ",");
	put(&a, msg, len);
	puts_(&a, ",");
	put(&a, o.buf, o.len);
	if (o.overflow || a.overflow)
		return client_fail(c, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	c->auth_len = a.len;

	/* ClientProof := ClientKey XOR HMAC(H(ClientKey), AuthMessage);
	 * ServerSignature := HMAC(ServerKey, AuthMessage). */
	if (sha256(stored, c->keys.client_key, AUTH_SCRAM_KEY_LEN, NULL) != 0 ||
	    hmac(sig, stored, sizeof(stored), c->auth, c->auth_len, NULL) != 0 ||
	    hmac(c->server_signature, c->keys.server_key, AUTH_SCRAM_KEY_LEN, c->auth, c->auth_len,
	         NULL) != 0) {
		OPENSSL_cleanse(stored, sizeof(stored));
		return client_fail(c, AUTH_SCRAM_R_CRYPTO, WB_INTERNAL);
	}
	for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
		proof[i] = (uint8_t)(c->keys.client_key[i] ^ sig[i]);
	puts_(&o, ",p=");
	put_b64(&o, proof, sizeof(proof));
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(sig, sizeof(sig));
	if (o.overflow)
		return client_fail(c, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	c->reply_len = o.len;
	c->state = CLIENT_FINAL_SENT;
	*reply = c->reply;
	*reply_len = c->reply_len;
	return 0;
}

int auth_scram_client_verify(struct auth_scram_client *c, const char *msg, size_t len)
{
	struct cur cur;
	uint8_t sig[AUTH_SCRAM_KEY_LEN];
	enum auth_scram_reason r;
	const char *v;
	size_t n;

	if (c->state != CLIENT_FINAL_SENT)
		return client_out_of_order(c);
	if (msg == NULL)
		return client_fail(c, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
	if (len > AUTH_SCRAM_MSG_MAX)
		return client_fail(c, AUTH_SCRAM_R_TOO_LONG, WB_UNAUTHENTICATED);
	cur = (struct cur){msg, msg + len};
	if (eat(&cur, "e=")) {
		n = take_value(&cur, &v);
		if (n == 0 || n > SERVER_ERROR_MAX)
			return client_fail(c, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
		for (size_t i = 0; i < n; i++) {
			if (!is_printable(v[i]))
				return client_fail(c, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
		}
		r = read_extensions(&cur);
		if (r != AUTH_SCRAM_R_NONE)
			return client_fail(c, r, WB_UNAUTHENTICATED);
		memcpy(c->server_error, v, n);
		c->server_error[n] = '\0';
		return client_fail(c, AUTH_SCRAM_R_SERVER_ERROR, WB_UNAUTHENTICATED);
	}
	if (!eat(&cur, "v="))
		return client_fail(c, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
	n = take_value(&cur, &v);
	if (!decode_key(sig, v, n))
		return client_fail(c, AUTH_SCRAM_R_MALFORMED, WB_UNAUTHENTICATED);
	r = read_extensions(&cur);
	if (r != AUTH_SCRAM_R_NONE)
		return client_fail(c, r, WB_UNAUTHENTICATED);
	if (CRYPTO_memcmp(sig, c->server_signature, AUTH_SCRAM_KEY_LEN) != 0)
		return client_fail(c, AUTH_SCRAM_R_SERVER_SIGNATURE, WB_UNAUTHENTICATED);
	/* Only keys the server has proved it knows go into the cache: a server
	 * that offered another salt cannot evict good keys with bad ones. */
	if (c->cache != NULL)
		*c->cache = c->keys;
	OPENSSL_cleanse(&c->keys, sizeof(c->keys));
	c->state = CLIENT_DONE;
	return 0;
}

enum auth_scram_reason auth_scram_client_reason(const struct auth_scram_client *c)
{
	return c->reason;
}

const char *auth_scram_client_server_error(const struct auth_scram_client *c)
{
	return c->server_error;
}
