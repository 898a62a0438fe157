/* SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash): password authentication in
 * which the server keeps no password and no password equivalent, and the
 * client learns that the server knew the credential.
 *
 * This module is pure: it turns byte strings into byte strings. It does no
 * I/O, has no libuv and no storage; the user's credential comes in through a
 * lookup callback and randomness through an auth_random_fn, so an exchange
 * can be replayed byte for byte in a test (RFC 7677 §3's example is one).
 * The transport carries the four messages (inside Hello and an
 * auth-continue request; the server's two inside their answers).
 *
 * The exchange, on each side, one call per message:
 *
 *	client                                      server
 *	auth_scram_client_first()  -- client-first -->  auth_scram_server_first()
 *	auth_scram_client_final()  <-- server-first --
 *	  (PBKDF2 unless cached)   -- client-final -->  auth_scram_server_final()
 *	auth_scram_client_verify() <-- server-final --
 *
 *	client-first  n,,n=<user>,r=<client nonce>
 *	server-first  r=<client nonce><server nonce>,s=<salt, base64>,i=<iterations>
 *	client-final  c=biws,r=<both nonces>,p=<ClientProof, base64>
 *	server-final  v=<ServerSignature, base64>
 *
 * What is supported, and what is refused on purpose:
 * - No channel binding. The client sends the gs2 header "n,," (or
 *   "n,a=<user>,"); the server refuses 'p=' (binding asked for) and also
 *   'y' (the client could bind but believes the server cannot). RFC 5802
 *   lets a server without -PLUS accept 'y'; this one refuses it because its
 *   own clients never send it, and 'y' from one of them would mean that a
 *   -PLUS offer was stripped on the way.
 * - The authorization identity a= must be absent or equal to the user name.
 * - A mandatory extension (m=) is refused; optional extensions (any other
 *   letter, after the defined attributes) are checked for syntax and
 *   ignored, as RFC 5802 §5.1 requires.
 * - Names are compared as bytes: no SASLprep. Passwords are not normalised
 *   either: a password is valid UTF-8 with no control character (U+0000 to
 *   U+001F, U+007F to U+009F) and is used as its UTF-8 bytes, which is RFC
 *   8265's OpaqueString without its NFC step. Full SASLprep (RFC 4013) needs
 *   Unicode tables (NFKC, the stringprep mappings) that only a library can
 *   keep right, and no such library is a dependency. Both of our clients
 *   (libwhizbang and the CLI) send the bytes they were given. For a
 *   printable ASCII password this is exactly SASLprep; a non-ASCII password
 *   must be typed in the same normalisation form on every client.
 *
 * Errors. Every step returns 0 or WB_UNAUTHENTICATED for anything the peer
 * did: an unknown user, a wrong password, a bad nonce, a message replayed
 * from another exchange, a malformed, truncated or oversized message, a call
 * out of order. Which it was is kept as an enum auth_scram_reason for logs
 * and metrics (it never holds the password, the proof or a key). A failed
 * exchange stays failed: every later call returns WB_UNAUTHENTICATED. Other
 * codes mean something failed locally: WB_E_NOMEM, WB_INTERNAL (libcrypto),
 * the random source's or the lookup's own code, WB_E_INVAL for arguments the
 * caller got wrong (documented per function).
 *
 * Cost. auth_scram_cred_derive(), auth_scram_keys_derive() and
 * auth_scram_client_final() (unless its cache hits) run PBKDF2 with the
 * credential's iteration count: tens of milliseconds at the default of
 * 100000. They must not run on an event loop's thread. The server's steps
 * cost a few HMACs each and may.
 *
 * No object here is thread-safe; one exchange is driven from one thread at a
 * time. */
#ifndef WB_AUTH_SCRAM_H
#define WB_AUTH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rand.h"
#include "wb_error.h"

#define AUTH_SCRAM_MECHANISM "SCRAM-SHA-256"
/* The size of SHA-256's output, and so of every key, signature and proof. */
#define AUTH_SCRAM_KEY_LEN 32u
/* The salt auth_scram_cred_derive() draws, and the salts accepted from a
 * stored credential or a server. */
#define AUTH_SCRAM_SALT_LEN 16u
#define AUTH_SCRAM_SALT_MIN 16u
#define AUTH_SCRAM_SALT_MAX 64u
/* Iteration counts: nothing below the floor is derived, stored or accepted
 * (RFC 7677 §4's minimum); the default for new credentials; the ceiling a
 * client accepts from a server, so that a hostile server cannot make it
 * spend minutes in PBKDF2. */
#define AUTH_SCRAM_ITER_MIN 4096u
#define AUTH_SCRAM_ITER_DEFAULT 100000u
#define AUTH_SCRAM_ITER_MAX 10000000u
/* The longest message either side accepts or sends, in bytes. */
#define AUTH_SCRAM_MSG_MAX 1024u
/* User names: 1 to AUTH_SCRAM_USER_MAX bytes of UTF-8 with no control
 * character (before the =2C / =3D escaping of the messages). */
#define AUTH_SCRAM_USER_MAX 255u
/* Passwords: 1 to AUTH_SCRAM_PASSWORD_MAX bytes (see the top of the file). */
#define AUTH_SCRAM_PASSWORD_MAX 1024u
/* The nonce each side makes: printable ASCII other than ',' (RFC 5802's
 * "printable"), drawn uniformly from those 93 characters: 6.5 bits a
 * character, so the default of 32 characters holds 209 bits and the
 * shortest allowed 130. The lengths of 20 and 30 characters that RFC 7677's
 * example uses are in range, so tests can reproduce it. */
#define AUTH_SCRAM_NONCE_LEN 32u
#define AUTH_SCRAM_NONCE_LEN_MIN 20u
#define AUTH_SCRAM_NONCE_LEN_MAX 64u
/* The longest nonce part accepted from the peer: the client's in
 * client-first, the server's continuation in server-first. */
#define AUTH_SCRAM_PEER_NONCE_MAX 128u
/* The server secret the mock credentials of unknown users derive from. */
#define AUTH_SCRAM_SECRET_LEN 32u
/* The longest serialized credential (auth_scram_cred_format()), without its
 * NUL: "SCRAM-SHA-256$" 4294967295 ":" salt "$" StoredKey ":" ServerKey. */
#define AUTH_SCRAM_CRED_STR_MAX (14u + 10u + 1u + 88u + 1u + 44u + 1u + 44u)

/* Why an exchange failed, for logs and metrics only: the peer gets
 * WB_UNAUTHENTICATED whatever the reason, so that it cannot tell an unknown
 * user from a wrong password. */
enum auth_scram_reason {
	AUTH_SCRAM_R_NONE = 0,
	AUTH_SCRAM_R_STATE,            /* a step called out of order, or again */
	AUTH_SCRAM_R_TOO_LONG,         /* a message or a field over its bound */
	AUTH_SCRAM_R_MALFORMED,        /* not the grammar of RFC 5802 §7 */
	AUTH_SCRAM_R_CHANNEL_BINDING,  /* gs2 flag 'p=' or 'y' */
	AUTH_SCRAM_R_AUTHZID,          /* a= other than the user */
	AUTH_SCRAM_R_EXTENSION,        /* a mandatory extension (m=) */
	AUTH_SCRAM_R_CHANNEL,          /* c= is not the gs2 header sent first */
	AUTH_SCRAM_R_NONCE,            /* r= is not the exchange's nonce */
	AUTH_SCRAM_R_UNKNOWN_USER,     /* no such user (told at the last step) */
	AUTH_SCRAM_R_PROOF,            /* wrong proof: wrong password */
	AUTH_SCRAM_R_SALT,             /* client: salt length out of range */
	AUTH_SCRAM_R_ITERATIONS,       /* client: iteration count out of range */
	AUTH_SCRAM_R_SERVER_SIGNATURE, /* client: v= wrong; the server lacks the key */
	AUTH_SCRAM_R_SERVER_ERROR,     /* client: the server sent e= */
	AUTH_SCRAM_R_LOOKUP,           /* server: the lookup callback failed */
	AUTH_SCRAM_R_CREDENTIAL,       /* server: the stored credential is invalid */
	AUTH_SCRAM_R_RANDOM,           /* the random source failed */
	AUTH_SCRAM_R_CRYPTO,           /* libcrypto failed */
	AUTH_SCRAM_R_COUNT
};

/* Returns a static lower-case name for r ("proof", "unknown_user"), or
 * "unknown" for a value outside the enum. */
const char *auth_scram_reason_name(enum auth_scram_reason r);

/* Returns 0 when user[0..len) is a valid user name (see AUTH_SCRAM_USER_MAX),
 * otherwise WB_E_INVAL. */
int auth_scram_user_check(const char *user, size_t len);

/* Returns 0 when pw[0..len) is a valid password: 1 to
 * AUTH_SCRAM_PASSWORD_MAX bytes of UTF-8 with no control character;
 * otherwise WB_E_INVAL. */
int auth_scram_password_check(const char *pw, size_t len);

/* What the server stores for a user: never the password nor SaltedPassword,
 * only what RFC 5802 §3 lets it verify a proof with. StoredKey is
 * H(ClientKey): whoever reads it can neither log in nor recover ClientKey
 * without guessing the password through PBKDF2. */
struct auth_scram_cred {
	uint8_t salt[AUTH_SCRAM_SALT_MAX];
	size_t salt_len; /* AUTH_SCRAM_SALT_MIN..AUTH_SCRAM_SALT_MAX */
	uint32_t iterations;
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
};

/* What a client derives from its password for one salt and iteration
 * count: ClientKey and ServerKey. Its holder can log in as the user to any
 * server with that salt and count (so it is kept like the password), and
 * can skip PBKDF2 on the next exchange with them: see
 * auth_scram_client_config.cache. iterations 0 marks an empty one. */
struct auth_scram_keys {
	uint8_t salt[AUTH_SCRAM_SALT_MAX];
	size_t salt_len;
	uint32_t iterations;
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
};

/* Runs PBKDF2-HMAC-SHA-256 over the password with salt and iterations and
 * writes ClientKey and ServerKey (with the salt and count) into *out. No
 * copy of the password or of SaltedPassword is left in memory. Expensive:
 * not on a loop thread. Returns 0; WB_E_INVAL for an invalid password
 * (auth_scram_password_check()), a salt length outside
 * AUTH_SCRAM_SALT_MIN..AUTH_SCRAM_SALT_MAX or iterations outside
 * AUTH_SCRAM_ITER_MIN..AUTH_SCRAM_ITER_MAX; WB_INTERNAL when libcrypto
 * fails. *out is written only on success. */
int auth_scram_keys_derive(struct auth_scram_keys *out, const char *pw, size_t pw_len,
                           const uint8_t *salt, size_t salt_len, uint32_t iterations);

/* Makes the credential a server stores from derived keys: the same salt and
 * count, StoredKey = SHA-256(ClientKey), ServerKey. Lets a client derive a
 * credential for a new password itself, so that the password never reaches
 * the server. Returns 0, WB_E_INVAL for keys that auth_scram_keys_derive()
 * cannot have made, or WB_INTERNAL; *out is written only on success. */
int auth_scram_cred_from_keys(struct auth_scram_cred *out, const struct auth_scram_keys *keys);

/* Derives a new credential from a password: a salt of AUTH_SCRAM_SALT_LEN
 * bytes from random, then auth_scram_keys_derive() and
 * auth_scram_cred_from_keys(). iterations is at least AUTH_SCRAM_ITER_MIN
 * (AUTH_SCRAM_ITER_DEFAULT is the advice) and at most AUTH_SCRAM_ITER_MAX.
 * Expensive: not on a loop thread. Returns 0; WB_E_INVAL (the password, the
 * count, a NULL random); random's own code; WB_INTERNAL. *out is written
 * only on success. */
int auth_scram_cred_derive(struct auth_scram_cred *out, const char *pw, size_t pw_len,
                           uint32_t iterations, auth_random_fn random, void *random_arg);

/* Writes the storage form of cred and a NUL into buf (cap bytes, at least
 * AUTH_SCRAM_CRED_STR_MAX + 1), and its length into *len:
 *
 *	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
 *
 * with the three byte strings in padded base64: PostgreSQL's layout, so
 * that a credential can move between the two. The mechanism name is the
 * format's version: another hash or layout gets another name. Returns 0, or
 * WB_E_INVAL (cap too small, a salt length or count out of range); buf and
 * *len are written only on success. */
int auth_scram_cred_format(const struct auth_scram_cred *cred, char *buf, size_t cap, size_t *len);

/* Parses the storage form strictly: the exact prefix, a decimal count with
 * no sign or leading zero within AUTH_SCRAM_ITER_MIN..AUTH_SCRAM_ITER_MAX,
 * canonical base64 (auth/b64.h) of a salt of AUTH_SCRAM_SALT_MIN to
 * AUTH_SCRAM_SALT_MAX bytes and of two 32-byte keys, nothing after them, no
 * NUL. Returns 0, or WB_E_INVAL for anything else; *out is written only on
 * success (its unused salt bytes zeroed). */
int auth_scram_cred_parse(struct auth_scram_cred *out, const char *s, size_t len);

/* ---- The server side. ---- */

/* Looks up user[0..user_len) (valid per auth_scram_user_check(), also
 * NUL-terminated). Returns 0 and writes its credential into *out; returns
 * WB_E_NOTFOUND for no such user (the exchange then goes on with a mock
 * credential and fails at its last step); any other code is a local failure
 * that auth_scram_server_first() returns as it is. Called synchronously from
 * auth_scram_server_first(), at most once per exchange. */
typedef int (*auth_scram_lookup_fn)(void *arg, const char *user, size_t user_len,
                                    struct auth_scram_cred *out);

struct auth_scram_server_config {
	/* Finds a user's credential; required. */
	auth_scram_lookup_fn lookup;
	void *lookup_arg;
	/* Draws the server nonces; required (auth_rand_bytes in production). */
	auth_random_fn random;
	void *random_arg;
	/* The key of the mock credentials: an unknown user's salt is the first
	 * AUTH_SCRAM_SALT_LEN bytes of HMAC-SHA-256(secret, user). Generate it
	 * once and keep it with the user store: a salt that changed across a
	 * restart for the same unknown name while a real user's did not would
	 * tell the two apart. All zero bytes are refused as unset. */
	uint8_t secret[AUTH_SCRAM_SECRET_LEN];
	/* The iteration count mock credentials show: the count new credentials
	 * are derived with. 0 means AUTH_SCRAM_ITER_DEFAULT. */
	uint32_t iterations;
	/* The server nonce's length in characters; 0 means
	 * AUTH_SCRAM_NONCE_LEN, otherwise AUTH_SCRAM_NONCE_LEN_MIN to
	 * AUTH_SCRAM_NONCE_LEN_MAX. */
	size_t nonce_len;
};

struct auth_scram_server;

/* Starts one server exchange. Copies cfg (the secret included) and keeps
 * the lookup and random callbacks and their arguments until
 * auth_scram_server_free(). Returns 0 and writes *out; WB_E_INVAL (a NULL
 * callback, a count or nonce length out of range, an all-zero secret) or
 * WB_E_NOMEM. */
int auth_scram_server_new(struct auth_scram_server **out,
                          const struct auth_scram_server_config *cfg);

/* Frees the exchange and wipes what it held. NULL is allowed. */
void auth_scram_server_free(struct auth_scram_server *s);

/* Takes the client-first message msg[0..len), looks its user up and answers
 * with the server-first message: on 0, *reply and *reply_len point at it
 * (NUL-terminated, owned by s, valid until the next call on s or its free).
 * An unknown user gets a server-first of the same shape as a known one: a
 * mock salt of AUTH_SCRAM_SALT_LEN bytes, stable for that name, and the
 * configured count. Both paths run the same HMACs. Returns 0;
 * WB_UNAUTHENTICATED (see auth_scram_server_reason()); the lookup's or the
 * random source's code, WB_E_CORRUPT for a stored credential out of range,
 * WB_INTERNAL: each of these ends the exchange. *reply and *reply_len are
 * written only on success. */
int auth_scram_server_first(struct auth_scram_server *s, const char *msg, size_t len,
                            const char **reply, size_t *reply_len);

/* Takes the client-final message msg[0..len), checks its channel binding
 * (the gs2 header of the first message), its nonce (both nonces of this
 * exchange) and its proof (constant-time), and on success answers with the
 * server-final message (v=ServerSignature), through *reply and *reply_len
 * as auth_scram_server_first() does. Returns 0: the user is authenticated
 * (auth_scram_server_user()); WB_UNAUTHENTICATED; WB_INTERNAL. Ends the
 * exchange either way. */
int auth_scram_server_final(struct auth_scram_server *s, const char *msg, size_t len,
                            const char **reply, size_t *reply_len);

/* Why the exchange failed (the first failure's reason: later calls on a
 * failed exchange do not change it); AUTH_SCRAM_R_NONE while it has not. */
enum auth_scram_reason auth_scram_server_reason(const struct auth_scram_server *s);

/* The authenticated user name (NUL-terminated, owned by s) and its length
 * in *len, once auth_scram_server_final() has returned 0; NULL before and
 * after a failure. */
const char *auth_scram_server_user(const struct auth_scram_server *s, size_t *len);

/* The user name the client-first message claimed, authenticated or not, for
 * log lines about failed attempts; NULL when the first message was not
 * parsed that far. Owned by s. */
const char *auth_scram_server_claimed_user(const struct auth_scram_server *s, size_t *len);

/* How many HMAC-SHA-256 and SHA-256 computations the exchange has run (the
 * server never runs PBKDF2). A known and an unknown user cost the same at
 * each step up to the proof's check, which tests assert through this. */
uint64_t auth_scram_server_work(const struct auth_scram_server *s);

/* ---- The client side. ---- */

struct auth_scram_client_config {
	/* The user name (auth_scram_user_check()) and the password
	 * (auth_scram_password_check()), both copied. */
	const char *user;
	size_t user_len;
	const char *password;
	size_t password_len;
	/* Draws the client nonce; required (auth_rand_bytes in production). */
	auth_random_fn random;
	void *random_arg;
	/* The client nonce's length, as the server's nonce_len. */
	size_t nonce_len;
	/* The highest iteration count accepted from a server; 0 means
	 * AUTH_SCRAM_ITER_MAX, otherwise AUTH_SCRAM_ITER_MIN to
	 * AUTH_SCRAM_ITER_MAX. */
	uint32_t max_iterations;
	/* NULL, or the keys of an earlier exchange for this user and password,
	 * kept by the caller across connections and borrowed until
	 * auth_scram_client_free(). auth_scram_client_final() uses them instead
	 * of PBKDF2 when the server's salt and count are theirs, and
	 * auth_scram_client_verify() writes the exchange's keys into it once the
	 * server has proved it knows them. The caller zeroes it when the user or
	 * password changes or a server refuses a proof made with it. */
	struct auth_scram_keys *cache;
};

struct auth_scram_client;

/* Starts one client exchange; copies the user name and the password (wiped
 * as soon as the keys are derived, and on free). Returns 0 and writes *out;
 * WB_E_INVAL (an invalid user name or password, a NULL random, a length or
 * count out of range) or WB_E_NOMEM. */
int auth_scram_client_new(struct auth_scram_client **out,
                          const struct auth_scram_client_config *cfg);

/* Frees the exchange and wipes what it held. NULL is allowed. */
void auth_scram_client_free(struct auth_scram_client *c);

/* Makes the client-first message ("n,,n=<user>,r=<nonce>") with a fresh
 * nonce; *msg and *len point at it (NUL-terminated, owned by c, valid until
 * the next call on c or its free). Returns 0; WB_UNAUTHENTICATED when called
 * twice (AUTH_SCRAM_R_STATE); the random source's code. */
int auth_scram_client_first(struct auth_scram_client *c, const char **msg, size_t *len);

/* Takes the server-first message msg[0..len): checks that its nonce extends
 * the client's, that its salt is AUTH_SCRAM_SALT_MIN to AUTH_SCRAM_SALT_MAX
 * bytes and its count AUTH_SCRAM_ITER_MIN to max_iterations, derives the
 * keys (PBKDF2, expensive, unless the cache has them), and answers with the
 * client-final message through *reply and *reply_len as
 * auth_scram_client_first() does. Returns 0, WB_UNAUTHENTICATED (see
 * auth_scram_client_reason()) or WB_INTERNAL. */
int auth_scram_client_final(struct auth_scram_client *c, const char *msg, size_t len,
                            const char **reply, size_t *reply_len);

/* Takes the server-final message msg[0..len) and checks the server's
 * signature (constant-time): 0 means the server knew this user's
 * credential (mutual authentication), and the cache, when there is one,
 * holds the exchange's keys. WB_UNAUTHENTICATED for a wrong signature
 * (AUTH_SCRAM_R_SERVER_SIGNATURE: this server does not have the credential;
 * treat it as an impostor) or an "e=" error from the server
 * (AUTH_SCRAM_R_SERVER_ERROR; its text in auth_scram_client_server_error()).
 * Ends the exchange. */
int auth_scram_client_verify(struct auth_scram_client *c, const char *msg, size_t len);

/* Why the exchange failed, as auth_scram_server_reason(). */
enum auth_scram_reason auth_scram_client_reason(const struct auth_scram_client *c);

/* The value of the server's "e=" attribute (such as "invalid-proof"),
 * NUL-terminated and owned by c, after auth_scram_client_verify() failed
 * with AUTH_SCRAM_R_SERVER_ERROR; otherwise "". At most 64 printable ASCII
 * characters: a longer or unprintable value is refused as malformed. */
const char *auth_scram_client_server_error(const struct auth_scram_client *c);

#endif
