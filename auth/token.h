/* API tokens: a random string shown to its owner once, of which the server
 * keeps only a hash.
 *
 *	wbt_<id>_<secret>
 *
 * "wbt_" names the kind (a secret scanner or a reader of a log can tell what
 * leaked); <id> is AUTH_TOKEN_ID_LEN random bytes and <secret>
 * AUTH_TOKEN_SECRET_LEN (256 bits), both in unpadded base64url, always
 * AUTH_TOKEN_ID_CHARS and AUTH_TOKEN_SECRET_CHARS long, so that a token is
 * always AUTH_TOKEN_STR_LEN characters and the '_' that base64url may also
 * hold inside a part is never ambiguous. The id is not secret: the server
 * finds the stored record by it without scanning, and may log it. The secret
 * is never stored; the record holds SHA-256 of its bytes.
 *
 * Why a plain SHA-256 and not a slow password hash: a slow hash protects a
 * low-entropy secret against guessing when the hashes leak. This secret is
 * 256 uniformly random bits, so guessing it from its hash costs 2^255 hash
 * computations on average, however fast each is; a slow hash would only
 * make every request dearer. What the hash buys is that a copy of the token
 * store (a backup, a stolen disk) holds no usable token.
 *
 * The module is pure: randomness comes through an auth_random_fn, time as
 * now_ms (wall-clock milliseconds since the Unix epoch, since a token's
 * expiry must survive restarts), and storage is the caller's. */
#ifndef WB_AUTH_TOKEN_H
#define WB_AUTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rand.h"
#include "wb_error.h"

#define AUTH_TOKEN_PREFIX "wbt_"
#define AUTH_TOKEN_ID_LEN 12u
#define AUTH_TOKEN_SECRET_LEN 32u
#define AUTH_TOKEN_HASH_LEN 32u
#define AUTH_TOKEN_ID_CHARS 16u     /* base64url of 12 bytes */
#define AUTH_TOKEN_SECRET_CHARS 43u /* base64url of 32 bytes, unpadded */
/* "wbt_" id "_" secret, without a NUL. */
#define AUTH_TOKEN_STR_LEN (4u + AUTH_TOKEN_ID_CHARS + 1u + AUTH_TOKEN_SECRET_CHARS)

/* A token as presented by a client, parsed. The secret is as sensitive as
 * the token: wipe it with auth_token_clear() once checked. */
struct auth_token {
	uint8_t id[AUTH_TOKEN_ID_LEN];
	uint8_t secret[AUTH_TOKEN_SECRET_LEN];
};

/* What the server stores for a token, found by its id. */
struct auth_token_record {
	uint8_t id[AUTH_TOKEN_ID_LEN];
	uint8_t hash[AUTH_TOKEN_HASH_LEN]; /* SHA-256 of the secret's bytes */
	uint32_t role;                     /* the server's role number; not read here */
	uint64_t created_ms;               /* wall clock, ms since the Unix epoch */
	uint64_t expires_ms;               /* wall clock; 0: never expires */
	bool revoked;
};

/* The outcome of auth_token_check(). Only for logs and metrics: the client
 * gets one error (WB_UNAUTHENTICATED) for every outcome but VALID, so that
 * it learns nothing about a token it does not hold. */
enum auth_token_status {
	AUTH_TOKEN_VALID = 0,
	AUTH_TOKEN_WRONG,   /* not this record's secret (or id) */
	AUTH_TOKEN_EXPIRED, /* the right secret, past expires_ms */
	AUTH_TOKEN_REVOKED, /* the right secret, revoked */
};

/* Returns a static lower-case name for s ("valid", "wrong", ...), or
 * "unknown" for a value outside the enum. */
const char *auth_token_status_name(enum auth_token_status s);

/* Makes a new token: draws its id and secret from random, writes the token
 * string and a NUL into out (cap bytes, at least AUTH_TOKEN_STR_LEN + 1) to
 * be shown to its owner once, and its record into *rec (role, created at
 * now_ms, expiring at expires_ms or never for 0, not revoked) to be stored
 * under its id. No copy of the secret is left behind but the string in out,
 * which the caller wipes after showing it. The caller stores the record
 * with a no-overwrite put: a second token with the same 96-bit id is not
 * expected, but must not replace the first. Returns 0; WB_E_INVAL (cap too
 * small, a NULL random, expires_ms not after now_ms); random's own code.
 * out and *rec are written only on success. */
int auth_token_generate(char *out, size_t cap, struct auth_token_record *rec, uint32_t role,
                        uint64_t now_ms, uint64_t expires_ms, auth_random_fn random,
                        void *random_arg);

/* Parses a presented token s[0..len) strictly: exactly AUTH_TOKEN_STR_LEN
 * bytes, the prefix, the separator, and both parts canonical base64url
 * (auth/b64.h). Returns 0, or WB_E_INVAL for anything else (which the
 * caller answers as a wrong token); *out is written only on success. */
int auth_token_parse(struct auth_token *out, const char *s, size_t len);

/* Writes the base64url form of an id (AUTH_TOKEN_ID_CHARS characters and a
 * NUL) into out, for log lines and for naming a token to revoke. */
void auth_token_id_format(char out[AUTH_TOKEN_ID_CHARS + 1], const uint8_t id[AUTH_TOKEN_ID_LEN]);

/* Checks a presented token against the record found under its id, at
 * now_ms: AUTH_TOKEN_WRONG unless the ids are equal and SHA-256 of the
 * secret equals the stored hash (compared in constant time with
 * CRYPTO_memcmp); then AUTH_TOKEN_REVOKED, then AUTH_TOKEN_EXPIRED
 * (expires_ms != 0 and now_ms >= expires_ms), else AUTH_TOKEN_VALID. The
 * secret is checked first, so that revocation and expiry are told only to
 * whoever holds the secret. Fails closed: AUTH_TOKEN_WRONG when libcrypto
 * cannot hash. */
enum auth_token_status auth_token_check(const struct auth_token_record *rec,
                                        const struct auth_token *presented, uint64_t now_ms);

/* Wipes a parsed token's bytes. */
void auth_token_clear(struct auth_token *t);

#endif
