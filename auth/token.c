#include "token.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "b64.h"

static const char *const status_names[] = {
        [AUTH_TOKEN_VALID] = "valid",
        [AUTH_TOKEN_WRONG] = "wrong",
        [AUTH_TOKEN_EXPIRED] = "expired",
        [AUTH_TOKEN_REVOKED] = "revoked",
};

const char *auth_token_status_name(enum auth_token_status s)
{
	if ((unsigned)s >= sizeof(status_names) / sizeof(status_names[0]))
		return "unknown";
	return status_names[s];
}

static int hash_secret(uint8_t out[AUTH_TOKEN_HASH_LEN], const uint8_t *secret)
{
	unsigned int len = 0;
	if (EVP_Digest(secret, AUTH_TOKEN_SECRET_LEN, out, &len, EVP_sha256(), NULL) != 1 ||
	    len != AUTH_TOKEN_HASH_LEN)
		return WB_INTERNAL;
	return 0;
}

int auth_token_generate(char *out, size_t cap, struct auth_token_record *rec, uint32_t role,
                        uint64_t now_ms, uint64_t expires_ms, auth_random_fn random,
                        void *random_arg)
{
	struct auth_token t;
	struct auth_token_record r;
	char text[AUTH_TOKEN_STR_LEN + 1];
	size_t at = 0;
	int rc;

	if (cap < sizeof(text) || random == NULL || (expires_ms != 0 && expires_ms <= now_ms))
		return WB_E_INVAL;
	rc = random(random_arg, t.id, sizeof(t.id));
	if (rc != 0)
		goto out;
	rc = random(random_arg, t.secret, sizeof(t.secret));
	if (rc != 0)
		goto out;
	memset(&r, 0, sizeof(r));
	memcpy(r.id, t.id, sizeof(r.id));
	rc = hash_secret(r.hash, t.secret);
	if (rc != 0)
		goto out;
	r.role = role;
	r.created_ms = now_ms;
	r.expires_ms = expires_ms;
	r.revoked = false;

	memcpy(text, AUTH_TOKEN_PREFIX, 4);
	at = 4;
	at += auth_b64url_encode(text + at, t.id, sizeof(t.id));
	text[at++] = '_';
	at += auth_b64url_encode(text + at, t.secret, sizeof(t.secret));
	memcpy(out, text, at + 1);
	*rec = r;
out:
	OPENSSL_cleanse(&t, sizeof(t));
	OPENSSL_cleanse(text, sizeof(text));
	return rc;
}

int auth_token_parse(struct auth_token *out, const char *s, size_t len)
{
	static const size_t sep = 4u + AUTH_TOKEN_ID_CHARS;
	struct auth_token t;
	size_t got;
	int rc = WB_E_INVAL;

	if (s == NULL || len != AUTH_TOKEN_STR_LEN || memcmp(s, AUTH_TOKEN_PREFIX, 4) != 0 ||
	    s[sep] != '_')
		return WB_E_INVAL;
	if (auth_b64url_decode(t.id, sizeof(t.id), &got, s + 4, AUTH_TOKEN_ID_CHARS) != 0 ||
	    got != sizeof(t.id))
		goto out;
	if (auth_b64url_decode(t.secret, sizeof(t.secret), &got, s + sep + 1,
	                       AUTH_TOKEN_SECRET_CHARS) != 0 ||
	    got != sizeof(t.secret))
		goto out;
	*out = t;
	rc = 0;
out:
	OPENSSL_cleanse(&t, sizeof(t));
	return rc;
}

void auth_token_id_format(char out[AUTH_TOKEN_ID_CHARS + 1], const uint8_t id[AUTH_TOKEN_ID_LEN])
{
	auth_b64url_encode(out, id, AUTH_TOKEN_ID_LEN);
}

enum auth_token_status auth_token_check(const struct auth_token_record *rec,
                                        const struct auth_token *presented, uint64_t now_ms)
{
	uint8_t hash[AUTH_TOKEN_HASH_LEN];
	bool id_ok, secret_ok;

	if (hash_secret(hash, presented->secret) != 0)
		return AUTH_TOKEN_WRONG;
	/* The id is public; the hash is compared in constant time so that the
	 * time taken tells nothing about how much of it matched. */
	id_ok = memcmp(rec->id, presented->id, AUTH_TOKEN_ID_LEN) == 0;
	secret_ok = CRYPTO_memcmp(hash, rec->hash, AUTH_TOKEN_HASH_LEN) == 0;
	OPENSSL_cleanse(hash, sizeof(hash));
	if (!id_ok || !secret_ok)
		return AUTH_TOKEN_WRONG;
	if (rec->revoked)
		return AUTH_TOKEN_REVOKED;
	if (rec->expires_ms != 0 && now_ms >= rec->expires_ms)
		return AUTH_TOKEN_EXPIRED;
	return AUTH_TOKEN_VALID;
}

void auth_token_clear(struct auth_token *t)
{
	OPENSSL_cleanse(t, sizeof(*t));
}
