/* Tests of SCRAM-SHA-256 (auth/scram.h), both sides, with randomness fixed
 * through the callback so that every message is known:
 * - RFC 7677 §3's example, byte for byte, each side fed the RFC's messages
 *   and the two sides talking to each other;
 * - an unknown user and a wrong password give the same public error, an
 *   unknown user's server-first has a known user's shape, is stable per
 *   name and differs between names, and both paths do the same work;
 * - replays, a second completion, every prefix of every message, oversized
 *   fields, bad base64, channel binding flags, authzid, extensions, calls
 *   out of order;
 * - the client detects a wrong server signature (a server without
 *   ServerKey), refuses iteration counts outside its bounds, handles e=;
 * - credentials: derivation limits, the storage form's round trip and its
 *   strict parser under every single-byte corruption;
 * - the client's key cache.
 * Each failure is shown next to the success that differs from it in one
 * thing only (the "control"), so that the failure is known to come from
 * that thing. Every message a server or client parses is a heap copy of
 * exactly its length, so that a read past its end shows under ASan and
 * valgrind. */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "fixture.h"
#include "scram.h"

#define ITER AUTH_SCRAM_ITER_MIN

/* RFC 7677 §3. */
#define RFC_USER "user"
#define RFC_PASSWORD "pencil"
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* ---- A scripted random source: the script's bytes, then splitmix64. ---- */

struct rng {
	const char *script;
	size_t len, off;
	uint64_t state;
	int fail; /* returned instead of bytes when set */
	size_t calls;
};

static int rng_cb(void *arg, uint8_t *buf, size_t n)
{
	struct rng *r = arg;
	r->calls++;
	if (r->fail != 0)
		return r->fail;
	for (size_t i = 0; i < n; i++) {
		if (r->off < r->len)
			buf[i] = (uint8_t)r->script[r->off++];
		else
			buf[i] = (uint8_t)fixture_splitmix(&r->state);
	}
	return 0;
}

static struct rng rng_seeded(uint64_t seed)
{
	return (struct rng){.state = seed};
}

static struct rng rng_script(const char *script, size_t len)
{
	return (struct rng){.script = script, .len = len, .state = 99};
}

/* ---- The user store behind the lookup callback. ---- */

#define STORE_MAX 4

static struct {
	const char *name;
	struct auth_scram_cred cred;
} store[STORE_MAX];
static size_t store_n;
static size_t lookups;
static int lookup_fail; /* returned by every lookup when set */

static int lookup_cb(void *arg, const char *user, size_t len, struct auth_scram_cred *out)
{
	(void)arg;
	lookups++;
	cr_assert_eq(user[len], '\0', "the lookup's user name is NUL-terminated");
	if (lookup_fail != 0)
		return lookup_fail;
	for (size_t i = 0; i < store_n; i++) {
		if (strlen(store[i].name) == len && memcmp(store[i].name, user, len) == 0) {
			*out = store[i].cred;
			return 0;
		}
	}
	return WB_E_NOTFOUND;
}

static void store_add(const char *name, const char *pw)
{
	struct rng r = rng_seeded(1000 + store_n);
	cr_assert_lt(store_n, STORE_MAX);
	store[store_n].name = name;
	cr_assert_eq(auth_scram_cred_derive(&store[store_n].cred, pw, strlen(pw), ITER, rng_cb, &r),
	             0);
	store_n++;
}

static const uint8_t secret[AUTH_SCRAM_SECRET_LEN] = {
        0x5e, 0xc7, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
        0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14,
        0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
};

/* Fixed per test process: the random sources outlive the exchanges. */
static struct rng srng, crng;
static struct auth_scram_server *srv;
static struct auth_scram_client *cli;

static void setup(void)
{
	store_n = 0;
	lookups = 0;
	lookup_fail = 0;
	srv = NULL;
	cli = NULL;
	store_add("alice", "correct horse battery staple");
	store_add("a,b=c", "pw");
}

static void teardown(void)
{
	auth_scram_server_free(srv);
	auth_scram_client_free(cli);
}

TestSuite(scram, .init = setup, .fini = teardown);

static struct auth_scram_server *server_new(struct rng *r, size_t nonce_len)
{
	struct auth_scram_server_config cfg = {
	        .lookup = lookup_cb,
	        .random = rng_cb,
	        .random_arg = r,
	        .iterations = ITER,
	        .nonce_len = nonce_len,
	};
	struct auth_scram_server *s = NULL;
	memcpy(cfg.secret, secret, sizeof(secret));
	cr_assert_eq(auth_scram_server_new(&s, &cfg), 0);
	cr_assert_not_null(s);
	return s;
}

static struct auth_scram_client *client_new(const char *user, const char *pw, struct rng *r,
                                            size_t nonce_len, struct auth_scram_keys *cache)
{
	struct auth_scram_client_config cfg = {
	        .user = user,
	        .user_len = strlen(user),
	        .password = pw,
	        .password_len = strlen(pw),
	        .random = rng_cb,
	        .random_arg = r,
	        .nonce_len = nonce_len,
	        .cache = cache,
	};
	struct auth_scram_client *c = NULL;
	cr_assert_eq(auth_scram_client_new(&c, &cfg), 0);
	cr_assert_not_null(c);
	return c;
}

/* A heap copy of exactly n bytes (no NUL), so that reading past n is
 * caught; the caller frees it. */
static char *copy_n(const char *s, size_t n)
{
	char *p = malloc(n == 0 ? 1 : n);
	cr_assert_not_null(p);
	memcpy(p, s, n);
	return p;
}

static int server_first_n(struct auth_scram_server *s, const char *msg, size_t n, char *reply,
                          size_t cap)
{
	const char *r = NULL;
	size_t rlen = 0;
	char *m = copy_n(msg, n);
	int rc = auth_scram_server_first(s, m, n, &r, &rlen);
	free(m);
	if (rc == 0) {
		cr_assert_lt(rlen, cap);
		cr_assert_eq(strlen(r), rlen);
		memcpy(reply, r, rlen + 1);
	}
	return rc;
}

static int server_final_n(struct auth_scram_server *s, const char *msg, size_t n, char *reply,
                          size_t cap)
{
	const char *r = NULL;
	size_t rlen = 0;
	char *m = copy_n(msg, n);
	int rc = auth_scram_server_final(s, m, n, &r, &rlen);
	free(m);
	if (rc == 0) {
		cr_assert_lt(rlen, cap);
		cr_assert_eq(strlen(r), rlen);
		memcpy(reply, r, rlen + 1);
	}
	return rc;
}

static int client_first(struct auth_scram_client *c, char *out, size_t cap)
{
	const char *m = NULL;
	size_t len = 0;
	int rc = auth_scram_client_first(c, &m, &len);
	if (rc == 0) {
		cr_assert_lt(len, cap);
		cr_assert_eq(strlen(m), len);
		memcpy(out, m, len + 1);
	}
	return rc;
}

static int client_final_n(struct auth_scram_client *c, const char *msg, size_t n, char *reply,
                          size_t cap)
{
	const char *r = NULL;
	size_t rlen = 0;
	char *m = copy_n(msg, n);
	int rc = auth_scram_client_final(c, m, n, &r, &rlen);
	free(m);
	if (rc == 0) {
		cr_assert_lt(rlen, cap);
		cr_assert_eq(strlen(r), rlen);
		memcpy(reply, r, rlen + 1);
	}
	return rc;
}

static int client_verify_n(struct auth_scram_client *c, const char *msg, size_t n)
{
	char *m = copy_n(msg, n);
	int rc = auth_scram_client_verify(c, m, n);
	free(m);
	return rc;
}

#define SF(s, msg, out) server_first_n(s, msg, strlen(msg), out, sizeof(out))
#define SFIN(s, msg, out) server_final_n(s, msg, strlen(msg), out, sizeof(out))
#define CFIN(c, msg, out) client_final_n(c, msg, strlen(msg), out, sizeof(out))
#define CV(c, msg) client_verify_n(c, msg, strlen(msg))

/* One whole exchange between a fresh client and a fresh server. */
struct run {
	int rc;   /* the first non-zero code, or 0 */
	int step; /* the call that returned it (1 client-first, 2 server-first,
	           * 3 client-final, 4 server-final, 5 verify); 0 for none */
	enum auth_scram_reason sreason, creason;
	char msg[4][AUTH_SCRAM_MSG_MAX + 1];
	uint64_t work[2]; /* the server's work after each of its steps */
};

static struct run exchange(const char *user, const char *pw, uint64_t cseed, uint64_t sseed,
                           struct auth_scram_keys *cache)
{
	struct run run;
	struct rng cr = rng_seeded(cseed), sr = rng_seeded(sseed);
	struct auth_scram_client *c = client_new(user, pw, &cr, 0, cache);
	struct auth_scram_server *s = server_new(&sr, 0);

	memset(&run, 0, sizeof(run));
	for (int step = 1; step <= 5 && run.rc == 0; step++) {
		run.step = step;
		switch (step) {
		case 1:
			run.rc = client_first(c, run.msg[0], sizeof(run.msg[0]));
			break;
		case 2:
			run.rc = SF(s, run.msg[0], run.msg[1]);
			run.work[0] = auth_scram_server_work(s);
			break;
		case 3:
			run.rc = CFIN(c, run.msg[1], run.msg[2]);
			break;
		case 4:
			run.rc = SFIN(s, run.msg[2], run.msg[3]);
			run.work[1] = auth_scram_server_work(s);
			break;
		default:
			run.rc = CV(c, run.msg[3]);
			break;
		}
	}
	if (run.rc == 0) {
		size_t len = 0;
		run.step = 0;
		cr_assert_str_eq(auth_scram_server_user(s, &len), user);
		cr_assert_eq(len, strlen(user));
	}
	run.sreason = auth_scram_server_reason(s);
	run.creason = auth_scram_client_reason(c);
	auth_scram_server_free(s);
	auth_scram_client_free(c);
	return run;
}

/* Whether two credentials hold the same salt, count and keys. */
static bool cred_eq(const struct auth_scram_cred *a, const struct auth_scram_cred *b)
{
	return a->salt_len == b->salt_len && memcmp(a->salt, b->salt, a->salt_len) == 0 &&
	       a->iterations == b->iterations &&
	       memcmp(a->stored_key, b->stored_key, sizeof(a->stored_key)) == 0 &&
	       memcmp(a->server_key, b->server_key, sizeof(a->server_key)) == 0;
}

/* ---- RFC 7677 §3. ---- */

/* The RFC's credential: "pencil", its salt (through the random source),
 * 4096 iterations. */
static void store_rfc_user(void)
{
	uint8_t salt[AUTH_SCRAM_SALT_LEN];
	size_t n = 0;
	cr_assert_eq(auth_b64_decode(salt, sizeof(salt), &n, RFC_SALT, strlen(RFC_SALT)), 0);
	cr_assert_eq(n, sizeof(salt));
	struct rng r = rng_script((const char *)salt, n);
	cr_assert_lt(store_n, STORE_MAX);
	store[store_n].name = RFC_USER;
	cr_assert_eq(auth_scram_cred_derive(&store[store_n].cred, RFC_PASSWORD,
	                                    strlen(RFC_PASSWORD), 4096, rng_cb, &r),
	             0);
	cr_assert_eq(memcmp(store[store_n].cred.salt, salt, sizeof(salt)), 0);
	store_n++;
}

Test(scram, rfc7677_client_side)
{
	char out[AUTH_SCRAM_MSG_MAX + 1];
	crng = rng_script(RFC_CNONCE, strlen(RFC_CNONCE));
	cli = client_new(RFC_USER, RFC_PASSWORD, &crng, strlen(RFC_CNONCE), NULL);

	cr_assert_eq(client_first(cli, out, sizeof(out)), 0);
	cr_assert_str_eq(out, RFC_CLIENT_FIRST);
	cr_assert_eq(CFIN(cli, RFC_SERVER_FIRST, out), 0);
	cr_assert_str_eq(out, RFC_CLIENT_FINAL);
	cr_assert_eq(CV(cli, RFC_SERVER_FINAL), 0);
	cr_assert_eq(auth_scram_client_reason(cli), AUTH_SCRAM_R_NONE);
}

Test(scram, rfc7677_server_side)
{
	char out[AUTH_SCRAM_MSG_MAX + 1];
	size_t len = 0;
	store_rfc_user();
	srng = rng_script(RFC_SNONCE, strlen(RFC_SNONCE));
	srv = server_new(&srng, strlen(RFC_SNONCE));

	cr_assert_eq(SF(srv, RFC_CLIENT_FIRST, out), 0);
	cr_assert_str_eq(out, RFC_SERVER_FIRST);
	cr_assert_null(auth_scram_server_user(srv, &len), "not authenticated yet");
	cr_assert_eq(SFIN(srv, RFC_CLIENT_FINAL, out), 0);
	cr_assert_str_eq(out, RFC_SERVER_FINAL);
	cr_assert_str_eq(auth_scram_server_user(srv, &len), RFC_USER);
	cr_assert_eq(len, 4);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_NONE);
}

/* The two sides talk to each other; every message is the RFC's. */
Test(scram, rfc7677_end_to_end)
{
	char m1[AUTH_SCRAM_MSG_MAX + 1], m2[AUTH_SCRAM_MSG_MAX + 1];
	char m3[AUTH_SCRAM_MSG_MAX + 1], m4[AUTH_SCRAM_MSG_MAX + 1];
	store_rfc_user();
	srng = rng_script(RFC_SNONCE, strlen(RFC_SNONCE));
	crng = rng_script(RFC_CNONCE, strlen(RFC_CNONCE));
	srv = server_new(&srng, strlen(RFC_SNONCE));
	cli = client_new(RFC_USER, RFC_PASSWORD, &crng, strlen(RFC_CNONCE), NULL);

	cr_assert_eq(client_first(cli, m1, sizeof(m1)), 0);
	cr_assert_eq(SF(srv, m1, m2), 0);
	cr_assert_eq(CFIN(cli, m2, m3), 0);
	cr_assert_eq(SFIN(srv, m3, m4), 0);
	cr_assert_eq(CV(cli, m4), 0);
	cr_assert_str_eq(m1, RFC_CLIENT_FIRST);
	cr_assert_str_eq(m2, RFC_SERVER_FIRST);
	cr_assert_str_eq(m3, RFC_CLIENT_FINAL);
	cr_assert_str_eq(m4, RFC_SERVER_FINAL);
}

/* ---- Whole exchanges. ---- */

Test(scram, exchange_succeeds_with_the_right_password)
{
	struct run r = exchange("alice", "correct horse battery staple", 1, 2, NULL);
	cr_assert_eq(r.rc, 0, "step %d: %s, %s", r.step, wb_error_name(r.rc),
	             auth_scram_reason_name(r.sreason));
	/* Default nonce lengths: 32 characters each. */
	cr_assert_eq(strncmp(r.msg[1], "r=", 2), 0);
	cr_assert_eq(strcspn(r.msg[1] + 2, ","), 2 * AUTH_SCRAM_NONCE_LEN);
}

/* A user name with ',' and '=' travels escaped (=2C, =3D). */
Test(scram, user_name_escapes)
{
	struct run r = exchange("a,b=c", "pw", 1, 2, NULL);
	cr_assert_eq(r.rc, 0, "step %d: %s", r.step, auth_scram_reason_name(r.sreason));
	const char *head = "n,,n=a=2Cb=3Dc,r=";
	cr_assert_eq(strncmp(r.msg[0], head, strlen(head)), 0, "%s", r.msg[0]);

	/* The escapes must be exact: lower case or a bare '=' is refused. */
	char out[AUTH_SCRAM_MSG_MAX + 1];
	srng = rng_seeded(2);
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=a=2cb=3Dc,r=abcdefgh", out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_MALFORMED);
	auth_scram_server_free(srv);
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=a=b,r=abcdefgh", out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_MALFORMED);
	auth_scram_server_free(srv);
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=a=2Cb=3Dc,r=abcdefgh", out), 0);
	size_t len = 0;
	cr_assert_str_eq(auth_scram_server_claimed_user(srv, &len), "a,b=c");
}

/* The same public error for an unknown user as for a wrong password, and
 * the same work on the server up to it. */
Test(scram, unknown_user_and_wrong_password_look_the_same)
{
	struct run ok = exchange("alice", "correct horse battery staple", 1, 2, NULL);
	struct run wrong = exchange("alice", "correct horse battery stapler", 1, 2, NULL);
	struct run unknown = exchange("mallory", "correct horse battery staple", 1, 2, NULL);

	cr_assert_eq(ok.rc, 0, "the control");
	cr_assert_eq(wrong.rc, WB_UNAUTHENTICATED);
	cr_assert_eq(unknown.rc, WB_UNAUTHENTICATED);
	/* Both fail at the same step, the server's last. */
	cr_assert_eq(wrong.step, 4);
	cr_assert_eq(unknown.step, 4);
	cr_assert_eq(wrong.sreason, AUTH_SCRAM_R_PROOF);
	cr_assert_eq(unknown.sreason, AUTH_SCRAM_R_UNKNOWN_USER);
	/* The server's work is the same at each step; the successful one does
	 * one HMAC more (ServerSignature). */
	cr_assert_eq(unknown.work[0], wrong.work[0]);
	cr_assert_eq(unknown.work[0], ok.work[0]);
	cr_assert_eq(unknown.work[1], wrong.work[1]);
	cr_assert_eq(ok.work[1], wrong.work[1] + 1);
	cr_assert_gt(unknown.work[1], unknown.work[0]);
	/* The lookup ran for every exchange. */
	cr_assert_eq(lookups, 3);
}

/* Decodes the salt and count of a server-first message. */
static void server_first_shape(const char *sf, uint8_t *salt, size_t *salt_len, unsigned long *iter)
{
	const char *s = strstr(sf, ",s="), *i = strstr(sf, ",i=");
	cr_assert_not_null(s);
	cr_assert_not_null(i);
	s += 3;
	cr_assert_eq(auth_b64_decode(salt, AUTH_SCRAM_SALT_MAX, salt_len, s, (size_t)(i - s)), 0);
	*iter = strtoul(i + 3, NULL, 10);
}

Test(scram, unknown_user_server_first_has_the_shape_of_a_known_one)
{
	uint8_t salt[4][AUTH_SCRAM_SALT_MAX];
	size_t salt_len[4];
	unsigned long iter[4];
	const char *names[4] = {"alice", "mallory", "mallory", "trent"};
	char out[AUTH_SCRAM_MSG_MAX + 1];

	for (int k = 0; k < 4; k++) {
		struct rng r = rng_seeded(50 + (uint64_t)k);
		char cf[64];
		struct auth_scram_server *s = server_new(&r, 0);
		snprintf(cf, sizeof(cf), "n,,n=%s,r=abcdefghijklmnopqrst", names[k]);
		cr_assert_eq(SF(s, cf, out), 0, "%s", names[k]);
		server_first_shape(out, salt[k], &salt_len[k], &iter[k]);
		auth_scram_server_free(s);
	}
	/* Same salt length and count as the known user alice. */
	for (int k = 1; k < 4; k++) {
		cr_assert_eq(salt_len[k], salt_len[0]);
		cr_assert_eq(iter[k], iter[0]);
	}
	cr_assert_eq(salt_len[0], AUTH_SCRAM_SALT_LEN);
	cr_assert_eq(iter[0], ITER);
	/* Stable for the same name across exchanges, different between names
	 * and from the known user's. */
	cr_assert_eq(memcmp(salt[1], salt[2], salt_len[1]), 0);
	cr_assert_neq(memcmp(salt[1], salt[3], salt_len[1]), 0);
	cr_assert_neq(memcmp(salt[1], salt[0], salt_len[1]), 0);
}

/* The mock salt is keyed by the server secret: another secret, another
 * salt for the same name. */
Test(scram, mock_salt_depends_on_the_secret)
{
	char a[AUTH_SCRAM_MSG_MAX + 1], b[AUTH_SCRAM_MSG_MAX + 1];
	struct rng r1 = rng_seeded(5), r2 = rng_seeded(5);
	struct auth_scram_server_config cfg = {
	        .lookup = lookup_cb, .random = rng_cb, .random_arg = &r1, .iterations = ITER};
	struct auth_scram_server *s1 = NULL, *s2 = NULL;
	memcpy(cfg.secret, secret, sizeof(secret));
	cr_assert_eq(auth_scram_server_new(&s1, &cfg), 0);
	cfg.secret[0] ^= 1;
	cfg.random_arg = &r2;
	cr_assert_eq(auth_scram_server_new(&s2, &cfg), 0);
	cr_assert_eq(SF(s1, "n,,n=mallory,r=abcdefgh", a), 0);
	cr_assert_eq(SF(s2, "n,,n=mallory,r=abcdefgh", b), 0);
	/* Same nonces (same seed), so only the salt can differ. */
	cr_assert_str_neq(a, b);
	cr_assert_eq(strncmp(a, b, (size_t)(strstr(a, ",s=") - a)), 0);
	auth_scram_server_free(s1);
	auth_scram_server_free(s2);
}

/* ---- Replay. ---- */

/* Runs client-first and server-first for alice with the given seeds, then
 * the client's final message into cfin. */
static void first_half(uint64_t cseed, uint64_t sseed, struct auth_scram_keys *cache,
                       struct auth_scram_client **c, struct auth_scram_server **s, char *cfin,
                       size_t cap)
{
	char m1[AUTH_SCRAM_MSG_MAX + 1], m2[AUTH_SCRAM_MSG_MAX + 1];
	static struct rng cr[4], sr[4];
	static int slot;
	slot = (slot + 1) % 4;
	cr[slot] = rng_seeded(cseed);
	sr[slot] = rng_seeded(sseed);
	*c = client_new("alice", "correct horse battery staple", &cr[slot], 0, cache);
	*s = server_new(&sr[slot], 0);
	cr_assert_eq(client_first(*c, m1, sizeof(m1)), 0);
	cr_assert_eq(SF(*s, m1, m2), 0);
	cr_assert_eq(client_final_n(*c, m2, strlen(m2), cfin, cap), 0);
}

Test(scram, client_final_from_another_exchange_is_refused)
{
	char fa[AUTH_SCRAM_MSG_MAX + 1], fb[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_client *ca, *cb;
	struct auth_scram_server *sa, *sb;
	/* Same client nonce, different server nonces. */
	first_half(1, 2, NULL, &ca, &sa, fa, sizeof(fa));
	first_half(1, 3, NULL, &cb, &sb, fb, sizeof(fb));
	cr_assert_str_neq(fa, fb);

	/* A's final message on B: the nonce is not B's. */
	cr_assert_eq(SFIN(sb, fa, out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(sb), AUTH_SCRAM_R_NONCE);
	/* The control: A's final message on A. */
	cr_assert_eq(SFIN(sa, fa, out), 0);
	cr_assert_eq(CV(ca, out), 0);
	auth_scram_client_free(ca);
	auth_scram_client_free(cb);
	auth_scram_server_free(sa);
	auth_scram_server_free(sb);
}

/* A's final message with B's nonce patched in: the nonce passes, the proof
 * (made over A's AuthMessage) does not. */
Test(scram, replay_with_the_nonce_patched_fails_on_the_proof)
{
	char fa[AUTH_SCRAM_MSG_MAX + 1], fb[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1];
	char forged[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_client *ca, *cb;
	struct auth_scram_server *sa, *sb;
	first_half(1, 2, NULL, &ca, &sa, fa, sizeof(fa));
	first_half(1, 3, NULL, &cb, &sb, fb, sizeof(fb));
	/* B's message up to its proof, then A's proof. */
	size_t head = (size_t)(strstr(fb, ",p=") - fb);
	snprintf(forged, sizeof(forged), "%.*s%s", (int)head, fb, strstr(fa, ",p="));
	cr_assert_str_neq(forged, fb);
	cr_assert_eq(strlen(forged), strlen(fb));

	cr_assert_eq(SFIN(sb, forged, out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(sb), AUTH_SCRAM_R_PROOF);
	/* The control: B's own message on a server in B's state. */
	struct auth_scram_client *cc;
	struct auth_scram_server *sc;
	char fc[AUTH_SCRAM_MSG_MAX + 1];
	first_half(1, 3, NULL, &cc, &sc, fc, sizeof(fc));
	cr_assert_str_eq(fc, fb);
	cr_assert_eq(SFIN(sc, fb, out), 0);
	auth_scram_client_free(ca);
	auth_scram_client_free(cb);
	auth_scram_client_free(cc);
	auth_scram_server_free(sa);
	auth_scram_server_free(sb);
	auth_scram_server_free(sc);
}

Test(scram, an_exchange_completes_once)
{
	char fin[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1];
	first_half(1, 2, NULL, &cli, &srv, fin, sizeof(fin));
	cr_assert_eq(SFIN(srv, fin, out), 0);
	cr_assert_eq(SFIN(srv, fin, out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_STATE);
	/* Once failed, the user is no longer reported authenticated. */
	size_t len;
	cr_assert_null(auth_scram_server_user(srv, &len));
}

/* ---- Every prefix of every message. ---- */

/* Every proper prefix of a valid client-first either is refused, or (cut
 * inside the nonce) is itself a valid client-first with a shorter nonce,
 * after which the real client's final message is refused. The whole
 * message is the control. */
Test(scram, every_prefix_of_client_first)
{
	char m1[AUTH_SCRAM_MSG_MAX + 1], m2[AUTH_SCRAM_MSG_MAX + 1], m3[AUTH_SCRAM_MSG_MAX + 1];
	char out[AUTH_SCRAM_MSG_MAX + 1];
	struct rng cr = rng_seeded(1);
	struct auth_scram_client *c = client_new("alice", "x", &cr, 0, NULL);
	cr_assert_eq(client_first(c, m1, sizeof(m1)), 0);
	auth_scram_client_free(c);
	size_t len = strlen(m1), nonce_at = strlen("n,,n=alice,r=");

	for (size_t n = 0; n <= len; n++) {
		struct rng sr = rng_seeded(2);
		struct auth_scram_server *s = server_new(&sr, 0);
		int rc = server_first_n(s, m1, n, m2, sizeof(m2));
		if (n > nonce_at) {
			cr_assert_eq(rc, 0, "prefix %zu", n);
		} else {
			cr_assert_eq(rc, WB_UNAUTHENTICATED, "prefix %zu", n);
			cr_assert_neq(auth_scram_server_reason(s), AUTH_SCRAM_R_NONE);
			/* Refused for good: the full message no longer helps. */
			cr_assert_eq(server_first_n(s, m1, len, out, sizeof(out)),
			             WB_UNAUTHENTICATED);
		}
		auth_scram_server_free(s);
	}

	/* A truncated nonce on the server: the client's final message (over
	 * its whole nonce) is refused. */
	struct auth_scram_keys cache;
	memset(&cache, 0, sizeof(cache));
	for (size_t n = nonce_at + 1; n <= len; n++) {
		struct rng sr = rng_seeded(2);
		cr = rng_seeded(1);
		struct auth_scram_server *s = server_new(&sr, 0);
		c = client_new("alice", "correct horse battery staple", &cr, 0, &cache);
		cr_assert_eq(client_first(c, m1, sizeof(m1)), 0);
		cr_assert_eq(server_first_n(s, m1, n, m2, sizeof(m2)), 0);
		/* The server's answer repeats the truncated nonce, which the
		 * client refuses, and the control: the whole one, accepted. */
		int rc = client_final_n(c, m2, strlen(m2), m3, sizeof(m3));
		if (n < len) {
			cr_assert_eq(rc, WB_UNAUTHENTICATED, "prefix %zu", n);
			cr_assert_eq(auth_scram_client_reason(c), AUTH_SCRAM_R_NONCE);
		} else {
			cr_assert_eq(rc, 0);
			cr_assert_eq(server_final_n(s, m3, strlen(m3), out, sizeof(out)), 0);
			cr_assert_eq(client_verify_n(c, out, strlen(out)), 0);
		}
		auth_scram_server_free(s);
		auth_scram_client_free(c);
	}
}

/* Derives alice's keys once, so that the prefix loops skip PBKDF2. */
static void alice_cache(struct auth_scram_keys *cache)
{
	struct auth_scram_client *c;
	struct auth_scram_server *s;
	char fin[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1];
	memset(cache, 0, sizeof(*cache));
	first_half(1, 2, cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(SFIN(s, fin, out), 0);
	cr_assert_eq(CV(c, out), 0);
	cr_assert_eq(cache->iterations, ITER);
	auth_scram_client_free(c);
	auth_scram_server_free(s);
}

Test(scram, every_prefix_of_client_final)
{
	struct auth_scram_keys cache;
	char fin[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_client *c;
	struct auth_scram_server *s;
	alice_cache(&cache);
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	auth_scram_client_free(c);
	auth_scram_server_free(s);
	size_t len = strlen(fin);

	for (size_t n = 0; n <= len; n++) {
		first_half(1, 2, &cache, &c, &s, out, sizeof(out));
		cr_assert_str_eq(out, fin);
		int rc = server_final_n(s, fin, n, out, sizeof(out));
		if (n < len) {
			cr_assert_eq(rc, WB_UNAUTHENTICATED, "prefix %zu", n);
			cr_assert_neq(auth_scram_server_reason(s), AUTH_SCRAM_R_NONE);
		} else {
			cr_assert_eq(rc, 0, "the control");
		}
		auth_scram_client_free(c);
		auth_scram_server_free(s);
	}
}

Test(scram, every_prefix_of_server_first)
{
	struct auth_scram_keys cache;
	char m1[AUTH_SCRAM_MSG_MAX + 1], m2[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1];
	alice_cache(&cache);
	struct rng sr = rng_seeded(2), cr = rng_seeded(1);
	srv = server_new(&sr, 0);
	cli = client_new("alice", "wrong", &cr, 0, &cache);
	cr_assert_eq(client_first(cli, m1, sizeof(m1)), 0);
	cr_assert_eq(SF(srv, m1, m2), 0);
	size_t len = strlen(m2);

	for (size_t n = 0; n <= len; n++) {
		cr = rng_seeded(1);
		struct auth_scram_client *c = client_new("alice", "wrong", &cr, 0, &cache);
		cr_assert_eq(client_first(c, out, sizeof(out)), 0);
		cr_assert_str_eq(out, m1);
		int rc = client_final_n(c, m2, n, out, sizeof(out));
		if (n < len) {
			cr_assert_eq(rc, WB_UNAUTHENTICATED, "prefix %zu: %s", n,
			             auth_scram_reason_name(auth_scram_client_reason(c)));
		} else {
			cr_assert_eq(rc, 0, "the control");
		}
		auth_scram_client_free(c);
	}
}

Test(scram, every_prefix_of_server_final)
{
	struct auth_scram_keys cache;
	char fin[AUTH_SCRAM_MSG_MAX + 1], sfin[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_client *c;
	struct auth_scram_server *s;
	alice_cache(&cache);
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(SFIN(s, fin, sfin), 0);
	auth_scram_client_free(c);
	auth_scram_server_free(s);
	size_t len = strlen(sfin);

	for (size_t n = 0; n <= len; n++) {
		first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
		int rc = client_verify_n(c, sfin, n);
		if (n < len)
			cr_assert_eq(rc, WB_UNAUTHENTICATED, "prefix %zu", n);
		else
			cr_assert_eq(rc, 0, "the control");
		auth_scram_client_free(c);
		auth_scram_server_free(s);
	}
}

/* ---- Bounds. ---- */

static int server_first_reason(const char *msg, size_t n, enum auth_scram_reason *reason)
{
	char out[AUTH_SCRAM_MSG_MAX + 1];
	struct rng r = rng_seeded(2);
	struct auth_scram_server *s = server_new(&r, 0);
	int rc = server_first_n(s, msg, n, out, sizeof(out));
	*reason = auth_scram_server_reason(s);
	auth_scram_server_free(s);
	return rc;
}

Test(scram, message_of_the_limit_is_taken_one_byte_more_is_not)
{
	char msg[AUTH_SCRAM_MSG_MAX + 2];
	enum auth_scram_reason why;
	/* An optional extension pads a valid message to the limit. */
	int head = snprintf(msg, sizeof(msg), "n,,n=alice,r=abcdefgh,x=");
	memset(msg + head, 'y', sizeof(msg) - (size_t)head);
	cr_assert_eq(server_first_reason(msg, AUTH_SCRAM_MSG_MAX, &why), 0);
	cr_assert_eq(server_first_reason(msg, AUTH_SCRAM_MSG_MAX + 1, &why), WB_UNAUTHENTICATED);
	cr_assert_eq(why, AUTH_SCRAM_R_TOO_LONG);
}

Test(scram, user_name_and_nonce_bounds)
{
	char msg[AUTH_SCRAM_MSG_MAX + 1], user[AUTH_SCRAM_USER_MAX + 2];
	char nonce[AUTH_SCRAM_PEER_NONCE_MAX + 2];
	enum auth_scram_reason why;

	memset(user, 'u', sizeof(user));
	user[AUTH_SCRAM_USER_MAX] = '\0';
	snprintf(msg, sizeof(msg), "n,,n=%s,r=abcdefgh", user);
	cr_assert_eq(server_first_reason(msg, strlen(msg), &why), 0);
	user[AUTH_SCRAM_USER_MAX] = 'u';
	user[AUTH_SCRAM_USER_MAX + 1] = '\0';
	snprintf(msg, sizeof(msg), "n,,n=%s,r=abcdefgh", user);
	cr_assert_eq(server_first_reason(msg, strlen(msg), &why), WB_UNAUTHENTICATED);
	cr_assert_eq(why, AUTH_SCRAM_R_TOO_LONG);

	memset(nonce, 'r', sizeof(nonce));
	nonce[AUTH_SCRAM_PEER_NONCE_MAX] = '\0';
	snprintf(msg, sizeof(msg), "n,,n=alice,r=%s", nonce);
	cr_assert_eq(server_first_reason(msg, strlen(msg), &why), 0);
	nonce[AUTH_SCRAM_PEER_NONCE_MAX] = 'r';
	nonce[AUTH_SCRAM_PEER_NONCE_MAX + 1] = '\0';
	snprintf(msg, sizeof(msg), "n,,n=alice,r=%s", nonce);
	cr_assert_eq(server_first_reason(msg, strlen(msg), &why), WB_UNAUTHENTICATED);
	cr_assert_eq(why, AUTH_SCRAM_R_TOO_LONG);
}

/* Each malformed client-first next to the valid one it differs from. */
Test(scram, client_first_grammar)
{
	static const struct {
		const char *msg;
		enum auth_scram_reason why;
	} cases[] = {
	        {"n,,n=alice,r=abcdefgh", AUTH_SCRAM_R_NONE},
	        {"y,,n=alice,r=abcdefgh", AUTH_SCRAM_R_CHANNEL_BINDING},
	        {"p=tls-server-end-point,,n=alice,r=abcdefgh", AUTH_SCRAM_R_CHANNEL_BINDING},
	        {"x,,n=alice,r=abcdefgh", AUTH_SCRAM_R_MALFORMED},
	        {"n,a=alice,n=alice,r=abcdefgh", AUTH_SCRAM_R_NONE},
	        {"n,a=bob,n=alice,r=abcdefgh", AUTH_SCRAM_R_AUTHZID},
	        {"n,a=,n=alice,r=abcdefgh", AUTH_SCRAM_R_MALFORMED},
	        {"n,,m=ext,n=alice,r=abcdefgh", AUTH_SCRAM_R_EXTENSION},
	        {"n,,n=alice,r=abcdefgh,x=opt", AUTH_SCRAM_R_NONE},
	        {"n,,n=alice,r=abcdefgh,x=", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=alice,r=abcdefgh,1=opt", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=alice,r=abcdefgh,", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=,r=abcdefgh", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=alice,r=", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=alice,r=abc defgh", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=alice,r=abc\x7f", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=al\tice,r=abcdefgh", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=al\xc3\xa9,r=abcdefgh", AUTH_SCRAM_R_NONE},
	        {"n,,n=al\xc3,r=abcdefgh", AUTH_SCRAM_R_MALFORMED},
	        {"n,,r=abcdefgh,n=alice", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=alice", AUTH_SCRAM_R_MALFORMED},
	        {"n,n=alice,r=abcdefgh", AUTH_SCRAM_R_MALFORMED},
	        {"n,,n=alice,,r=abcdefgh", AUTH_SCRAM_R_MALFORMED},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum auth_scram_reason why;
		int rc = server_first_reason(cases[i].msg, strlen(cases[i].msg), &why);
		cr_assert_eq(rc, cases[i].why == AUTH_SCRAM_R_NONE ? 0 : WB_UNAUTHENTICATED, "%s",
		             cases[i].msg);
		cr_assert_eq(why, cases[i].why, "%s: %s", cases[i].msg,
		             auth_scram_reason_name(why));
	}
	/* A NUL inside the user name; the control is the same bytes with 'x'. */
	enum auth_scram_reason why;
	cr_assert_eq(server_first_reason("n,,n=al\0ce,r=abcdefgh", 21, &why), WB_UNAUTHENTICATED);
	cr_assert_eq(why, AUTH_SCRAM_R_MALFORMED);
	cr_assert_eq(server_first_reason("n,,n=alxce,r=abcdefgh", 21, &why), 0);
}

/* A gs2 header with an authzid is accepted, and c= must then repeat that
 * header: "biws" ("n,,") no longer matches. */
Test(scram, channel_binding_must_repeat_the_gs2_header)
{
	char fin[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1], m2[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_keys cache;
	alice_cache(&cache);

	/* Our client's final message, over a first message that had a=. */
	first_half(1, 2, &cache, &cli, &srv, fin, sizeof(fin));
	auth_scram_server_free(srv);
	struct rng sr = rng_seeded(2);
	srv = server_new(&sr, 0);
	struct rng cr = rng_seeded(1);
	struct auth_scram_client *c = client_new("alice", "x", &cr, 0, NULL);
	cr_assert_eq(client_first(c, out, sizeof(out)), 0);
	auth_scram_client_free(c);
	char with_authzid[2 * AUTH_SCRAM_MSG_MAX];
	snprintf(with_authzid, sizeof(with_authzid), "n,a=alice,%s", out + 3);
	cr_assert_eq(SF(srv, with_authzid, m2), 0);
	cr_assert_eq(SFIN(srv, fin, out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_CHANNEL);

	/* c= naming 'y' ("eSws" is "y,,") after "n,,": the same refusal;
	 * the control is the unchanged message. */
	char forged[AUTH_SCRAM_MSG_MAX + 1];
	cr_assert_eq(strncmp(fin, "c=biws,", 7), 0);
	snprintf(forged, sizeof(forged), "c=eSws,%s", fin + 7);
	struct auth_scram_client *c2;
	struct auth_scram_server *s2;
	first_half(1, 2, &cache, &c2, &s2, out, sizeof(out));
	cr_assert_eq(SFIN(s2, forged, out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(s2), AUTH_SCRAM_R_CHANNEL);
	auth_scram_server_free(s2);
	auth_scram_client_free(c2);
	first_half(1, 2, &cache, &c2, &s2, out, sizeof(out));
	cr_assert_eq(SFIN(s2, fin, out), 0);
	auth_scram_server_free(s2);
	auth_scram_client_free(c2);
}

/* Client-final's grammar and base64, each case against the valid message
 * with one part changed. */
Test(scram, client_final_grammar_and_base64)
{
	struct auth_scram_keys cache;
	char fin[AUTH_SCRAM_MSG_MAX + 1], out[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_client *c;
	struct auth_scram_server *s;
	alice_cache(&cache);
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	auth_scram_client_free(c);
	auth_scram_server_free(s);

	const char *p = strstr(fin, ",p=");
	const char *r = strstr(fin, ",r=");
	int head = (int)(p - fin);
	/* The proof's last character before its '=' carries 2 unused bits. */
	static const char alphabet[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t last = (size_t)(strchr(alphabet, p[3 + 42]) - alphabet);
	cr_assert_eq(last & 3, 0);
	cr_assert_eq(p[3 + 43], '=');
	char forged[16][AUTH_SCRAM_MSG_MAX + 1];
	enum auth_scram_reason want[16];
	int n = 0;
	/* The proof with a set unused bit: not canonical base64. */
	snprintf(forged[n], sizeof(forged[n]), "%s", fin);
	forged[n][head + 3 + 42] = alphabet[last | 1];
	want[n++] = AUTH_SCRAM_R_MALFORMED;
	/* The proof one character short, or without its padding. */
	snprintf(forged[n], sizeof(forged[n]), "%.*s", (int)strlen(fin) - 1, fin);
	want[n++] = AUTH_SCRAM_R_MALFORMED;
	/* An optional extension before the proof is ignored... */
	snprintf(forged[n], sizeof(forged[n]), "%.*s,x=y%s", head, fin, p);
	want[n++] = AUTH_SCRAM_R_PROOF; /* ...but it is part of AuthMessage */
	/* Anything after the proof. */
	snprintf(forged[n], sizeof(forged[n]), "%s,x=y", fin);
	want[n++] = AUTH_SCRAM_R_MALFORMED;
	/* No proof. */
	snprintf(forged[n], sizeof(forged[n]), "%.*s", head, fin);
	want[n++] = AUTH_SCRAM_R_MALFORMED;
	/* c= not base64, c= missing. */
	snprintf(forged[n], sizeof(forged[n]), "c=biw*%s", fin + 6);
	want[n++] = AUTH_SCRAM_R_MALFORMED;
	snprintf(forged[n], sizeof(forged[n]), "%s", r + 1);
	want[n++] = AUTH_SCRAM_R_MALFORMED;
	/* The nonce one character longer or shorter. */
	snprintf(forged[n], sizeof(forged[n]), "%.*sX%s", head, fin, p);
	want[n++] = AUTH_SCRAM_R_NONCE;
	snprintf(forged[n], sizeof(forged[n]), "%.*s%s", head - 1, fin, p);
	want[n++] = AUTH_SCRAM_R_NONCE;
	/* The control last: the message itself. */
	snprintf(forged[n], sizeof(forged[n]), "%s", fin);
	want[n++] = AUTH_SCRAM_R_NONE;

	for (int i = 0; i < n; i++) {
		first_half(1, 2, &cache, &c, &s, out, sizeof(out));
		int rc = SFIN(s, forged[i], out);
		cr_assert_eq(rc, want[i] == AUTH_SCRAM_R_NONE ? 0 : WB_UNAUTHENTICATED, "%s",
		             forged[i]);
		cr_assert_eq(auth_scram_server_reason(s), want[i], "%s: %s", forged[i],
		             auth_scram_reason_name(auth_scram_server_reason(s)));
		auth_scram_client_free(c);
		auth_scram_server_free(s);
	}
}

/* ---- Calls out of order. ---- */

Test(scram, server_calls_out_of_order)
{
	char out[AUTH_SCRAM_MSG_MAX + 1];
	srng = rng_seeded(2);
	/* Final before first. */
	srv = server_new(&srng, 0);
	cr_assert_eq(SFIN(srv, "c=biws,r=abc,p=xyz", out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_STATE);
	/* ...after which the exchange is over, first message or not. */
	cr_assert_eq(SF(srv, "n,,n=alice,r=abcdefgh", out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_STATE);
	auth_scram_server_free(srv);

	/* First twice; the control is the first call. */
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=alice,r=abcdefgh", out), 0);
	cr_assert_eq(SF(srv, "n,,n=alice,r=abcdefgh", out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_STATE);
	auth_scram_server_free(srv);

	/* A failure keeps its reason through later calls. */
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "y,,n=alice,r=abcdefgh", out), WB_UNAUTHENTICATED);
	cr_assert_eq(SFIN(srv, "c=biws,r=abc,p=xyz", out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_CHANNEL_BINDING);

	/* NULL messages are refused, not dereferenced. */
	const char *r;
	size_t rlen;
	struct auth_scram_server *s = server_new(&srng, 0);
	cr_assert_eq(auth_scram_server_first(s, NULL, 0, &r, &rlen), WB_UNAUTHENTICATED);
	auth_scram_server_free(s);
}

Test(scram, client_calls_out_of_order)
{
	char out[AUTH_SCRAM_MSG_MAX + 1];
	crng = rng_seeded(1);
	/* Verify before anything, final before first. */
	cli = client_new("alice", "pw", &crng, 0, NULL);
	cr_assert_eq(CV(cli, RFC_SERVER_FINAL), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_client_reason(cli), AUTH_SCRAM_R_STATE);
	auth_scram_client_free(cli);
	cli = client_new("alice", "pw", &crng, 0, NULL);
	cr_assert_eq(CFIN(cli, RFC_SERVER_FIRST, out), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_client_reason(cli), AUTH_SCRAM_R_STATE);
	auth_scram_client_free(cli);
	/* First twice; verify before final. */
	cli = client_new("alice", "pw", &crng, 0, NULL);
	cr_assert_eq(client_first(cli, out, sizeof(out)), 0);
	cr_assert_eq(CV(cli, RFC_SERVER_FINAL), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_client_reason(cli), AUTH_SCRAM_R_STATE);
	cr_assert_eq(client_first(cli, out, sizeof(out)), WB_UNAUTHENTICATED);
}

/* ---- The client's checks of the server. ---- */

/* A server that has StoredKey but not ServerKey (a stolen StoredKey, say)
 * can check the proof but cannot sign: the client detects it. */
Test(scram, server_without_server_key_is_detected)
{
	struct run ok = exchange("alice", "correct horse battery staple", 1, 2, NULL);
	cr_assert_eq(ok.rc, 0, "the control");
	store[0].cred.server_key[0] ^= 1;
	struct run bad = exchange("alice", "correct horse battery staple", 1, 2, NULL);
	cr_assert_eq(bad.rc, WB_UNAUTHENTICATED);
	cr_assert_eq(bad.step, 5, "the server accepted the proof; the client refused it");
	cr_assert_eq(bad.creason, AUTH_SCRAM_R_SERVER_SIGNATURE);
	cr_assert_eq(bad.sreason, AUTH_SCRAM_R_NONE);
}

Test(scram, wrong_server_signature_is_detected)
{
	char fin[AUTH_SCRAM_MSG_MAX + 1], sfin[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_keys cache;
	struct auth_scram_client *c;
	struct auth_scram_server *s;
	alice_cache(&cache);
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(SFIN(s, fin, sfin), 0);
	auth_scram_client_free(c);
	auth_scram_server_free(s);

	/* Another signature, canonical base64 ('A' <-> 'B' in its first
	 * character changes the first byte only). */
	char forged[AUTH_SCRAM_MSG_MAX + 1];
	snprintf(forged, sizeof(forged), "%s", sfin);
	forged[2] = forged[2] == 'A' ? 'B' : 'A';
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(CV(c, forged), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_client_reason(c), AUTH_SCRAM_R_SERVER_SIGNATURE);
	auth_scram_client_free(c);
	auth_scram_server_free(s);
	/* The control. */
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(CV(c, sfin), 0);
	/* An optional extension after v= is ignored. */
	auth_scram_client_free(c);
	auth_scram_server_free(s);
	snprintf(forged, sizeof(forged), "%s,x=1", sfin);
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(CV(c, forged), 0);
	auth_scram_client_free(c);
	auth_scram_server_free(s);
}

Test(scram, server_error_attribute)
{
	char fin[AUTH_SCRAM_MSG_MAX + 1];
	struct auth_scram_keys cache;
	struct auth_scram_client *c;
	struct auth_scram_server *s;
	alice_cache(&cache);

	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_str_eq(auth_scram_client_server_error(c), "");
	cr_assert_eq(CV(c, "e=invalid-proof"), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_client_reason(c), AUTH_SCRAM_R_SERVER_ERROR);
	cr_assert_str_eq(auth_scram_client_server_error(c), "invalid-proof");
	auth_scram_client_free(c);
	auth_scram_server_free(s);

	/* Empty, unprintable or too long: malformed. */
	static const char *const bad[] = {"e=", "e=a b", "e=\x01", "x=invalid-proof"};
	for (size_t i = 0; i < 4; i++) {
		first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
		cr_assert_eq(CV(c, bad[i]), WB_UNAUTHENTICATED);
		cr_assert_eq(auth_scram_client_reason(c), AUTH_SCRAM_R_MALFORMED, "%s", bad[i]);
		cr_assert_str_eq(auth_scram_client_server_error(c), "");
		auth_scram_client_free(c);
		auth_scram_server_free(s);
	}
	char longer[80] = "e=";
	memset(longer + 2, 'x', 65);
	longer[67] = '\0';
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(CV(c, longer), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_client_reason(c), AUTH_SCRAM_R_MALFORMED);
	auth_scram_client_free(c);
	auth_scram_server_free(s);
	longer[66] = '\0'; /* 64 characters: taken */
	first_half(1, 2, &cache, &c, &s, fin, sizeof(fin));
	cr_assert_eq(CV(c, longer), WB_UNAUTHENTICATED);
	cr_assert_eq(auth_scram_client_reason(c), AUTH_SCRAM_R_SERVER_ERROR);
	cr_assert_eq(strlen(auth_scram_client_server_error(c)), 64);
	auth_scram_client_free(c);
	auth_scram_server_free(s);
}

/* Server-first messages the client must refuse, each against the control
 * that differs in one attribute. The client's nonce is "abcdefghijklmnopqrst"
 * (scripted). A cache for the RFC salt at the counts used keeps PBKDF2 out
 * of the accepted cases. */
Test(scram, client_checks_server_first)
{
	static const struct {
		const char *msg;
		uint32_t max_iterations;
		enum auth_scram_reason why;
	} cases[] = {
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4096", 0, AUTH_SCRAM_R_NONE},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4095", 0, AUTH_SCRAM_R_ITERATIONS},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=0", 0, AUTH_SCRAM_R_ITERATIONS},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=10000000", 0, AUTH_SCRAM_R_NONE},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=10000001", 0, AUTH_SCRAM_R_ITERATIONS},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4294967295", 0,
	         AUTH_SCRAM_R_ITERATIONS},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4294967296", 0,
	         AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=5000", 5000, AUTH_SCRAM_R_NONE},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=5001", 5000, AUTH_SCRAM_R_ITERATIONS},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=04096", 0, AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=-4096", 0, AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4096x", 0, AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=", 0, AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4096,x=ext", 0, AUTH_SCRAM_R_NONE},
	        {"r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4096,", 0, AUTH_SCRAM_R_MALFORMED},
	        {"m=x,r=abcdefghijklmnopqrstSRV,s=" RFC_SALT ",i=4096", 0, AUTH_SCRAM_R_EXTENSION},
	        {"r=abcdefghijklmnopqrsXSRV,s=" RFC_SALT ",i=4096", 0, AUTH_SCRAM_R_NONCE},
	        {"r=abcdefghijklmnopqrst,s=" RFC_SALT ",i=4096", 0, AUTH_SCRAM_R_NONCE},
	        {"r=abcdefghijklmnopqrs,s=" RFC_SALT ",i=4096", 0, AUTH_SCRAM_R_NONCE},
	        {"r=abcdefghijklmnopqrstS V,s=" RFC_SALT ",i=4096", 0, AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,s=AAAAAAAAAAA=,i=4096", 0, AUTH_SCRAM_R_SALT},
	        {"r=abcdefghijklmnopqrstSRV,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", 0,
	         AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,s=W22ZaJ0SNY7soEsUEjb6gR==,i=4096", 0,
	         AUTH_SCRAM_R_MALFORMED},
	        {"r=abcdefghijklmnopqrstSRV,i=4096,s=" RFC_SALT, 0, AUTH_SCRAM_R_MALFORMED},
	        {"e=other-error", 0, AUTH_SCRAM_R_MALFORMED},
	};
	uint8_t salt[AUTH_SCRAM_SALT_LEN];
	size_t salt_len = 0;
	cr_assert_eq(auth_b64_decode(salt, sizeof(salt), &salt_len, RFC_SALT, strlen(RFC_SALT)), 0);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[AUTH_SCRAM_MSG_MAX + 1];
		const char *nonce = "abcdefghijklmnopqrst";
		struct rng r = rng_script(nonce, strlen(nonce));
		/* A cache filled by hand for the count accepted cases name:
		 * their keys are not checked here, only that no PBKDF2 of
		 * millions of iterations runs. */
		struct auth_scram_keys cache;
		memset(&cache, 0, sizeof(cache));
		memcpy(cache.salt, salt, salt_len);
		cache.salt_len = salt_len;
		const char *count = strstr(cases[i].msg, ",i=");
		cache.iterations = count != NULL ? (uint32_t)strtoul(count + 3, NULL, 10) : 0;
		struct auth_scram_client_config cfg = {
		        .user = "alice",
		        .user_len = 5,
		        .password = "pw",
		        .password_len = 2,
		        .random = rng_cb,
		        .random_arg = &r,
		        .nonce_len = strlen(nonce),
		        .max_iterations = cases[i].max_iterations,
		        .cache = &cache,
		};
		struct auth_scram_client *c = NULL;
		cr_assert_eq(auth_scram_client_new(&c, &cfg), 0);
		cr_assert_eq(client_first(c, out, sizeof(out)), 0);
		int rc = CFIN(c, cases[i].msg, out);
		cr_assert_eq(rc, cases[i].why == AUTH_SCRAM_R_NONE ? 0 : WB_UNAUTHENTICATED, "%s",
		             cases[i].msg);
		cr_assert_eq(auth_scram_client_reason(c), cases[i].why, "%s: %s", cases[i].msg,
		             auth_scram_reason_name(auth_scram_client_reason(c)));
		auth_scram_client_free(c);
	}
}

/* ---- Failures of the random source and the lookup. ---- */

Test(scram, local_failures_pass_their_codes)
{
	char out[AUTH_SCRAM_MSG_MAX + 1];
	srng = rng_seeded(2);
	srng.fail = WB_E_IO;
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=alice,r=abcdefgh", out), WB_E_IO);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_RANDOM);
	auth_scram_server_free(srv);

	srng.fail = 0;
	lookup_fail = WB_E_IO;
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=alice,r=abcdefgh", out), WB_E_IO);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_LOOKUP);
	auth_scram_server_free(srv);

	/* A stored credential below the floor is refused as corrupt... */
	lookup_fail = 0;
	store[0].cred.iterations = AUTH_SCRAM_ITER_MIN - 1;
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=alice,r=abcdefgh", out), WB_E_CORRUPT);
	cr_assert_eq(auth_scram_server_reason(srv), AUTH_SCRAM_R_CREDENTIAL);
	auth_scram_server_free(srv);
	/* ...and the control at the floor is served. */
	store[0].cred.iterations = AUTH_SCRAM_ITER_MIN;
	srv = server_new(&srng, 0);
	cr_assert_eq(SF(srv, "n,,n=alice,r=abcdefgh", out), 0);

	crng = rng_seeded(1);
	crng.fail = WB_INTERNAL;
	cli = client_new("alice", "pw", &crng, 0, NULL);
	cr_assert_eq(client_first(cli, out, sizeof(out)), WB_INTERNAL);
	cr_assert_eq(auth_scram_client_reason(cli), AUTH_SCRAM_R_RANDOM);
}

/* Nonces use only printable characters other than ','; a source that
 * never yields one fails instead of looping forever. */
Test(scram, nonce_characters)
{
	char out[AUTH_SCRAM_MSG_MAX + 1];
	/* ',' (0x2C), 0x80|',' , space, DEL and NUL are skipped; 'A' | 0x80
	 * counts as 'A'. */
	static const char script[] = ",\xac \x7f\x00\xc1"
	                             "BCDEFGHIJKLMNOPQRSTUVWXYZ";
	crng = rng_script(script, sizeof(script) - 1);
	cli = client_new("alice", "pw", &crng, AUTH_SCRAM_NONCE_LEN_MIN, NULL);
	cr_assert_eq(client_first(cli, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "n,,n=alice,r=ABCDEFGHIJKLMNOPQRST");
	auth_scram_client_free(cli);

	static const char commas[AUTH_SCRAM_NONCE_LEN_MAX * 70] = {0};
	crng = rng_script(commas, sizeof(commas));
	cli = client_new("alice", "pw", &crng, AUTH_SCRAM_NONCE_LEN_MIN, NULL);
	cr_assert_eq(client_first(cli, out, sizeof(out)), WB_INTERNAL);
	cr_assert_eq(auth_scram_client_reason(cli), AUTH_SCRAM_R_RANDOM);

	/* Random nonces: every character printable, no ','. */
	for (uint64_t seed = 0; seed < 50; seed++) {
		struct run r =
		        exchange("alice", "correct horse battery staple", seed, seed + 1, NULL);
		cr_assert_eq(r.rc, 0);
		const char *n = r.msg[1] + 2;
		size_t len = strcspn(n, ",");
		for (size_t i = 0; i < len; i++)
			cr_assert(n[i] >= 0x21 && n[i] <= 0x7E, "seed %llu",
			          (unsigned long long)seed);
		if (fixture_under_valgrind() && seed >= 4)
			break;
	}
}

/* ---- Configuration limits. ---- */

Test(scram, configuration_limits)
{
	struct rng r = rng_seeded(1);
	struct auth_scram_server_config scfg = {.lookup = lookup_cb, .random = rng_cb};
	struct auth_scram_server *s = NULL;
	cr_assert_eq(auth_scram_server_new(&s, &scfg), WB_E_INVAL, "an unset secret");
	scfg.secret[AUTH_SCRAM_SECRET_LEN - 1] = 1;
	cr_assert_eq(auth_scram_server_new(&s, &scfg), 0, "defaults");
	auth_scram_server_free(s);
	s = NULL;
	scfg.iterations = AUTH_SCRAM_ITER_MIN - 1;
	cr_assert_eq(auth_scram_server_new(&s, &scfg), WB_E_INVAL);
	scfg.iterations = 0;
	scfg.nonce_len = AUTH_SCRAM_NONCE_LEN_MIN - 1;
	cr_assert_eq(auth_scram_server_new(&s, &scfg), WB_E_INVAL);
	scfg.nonce_len = AUTH_SCRAM_NONCE_LEN_MAX + 1;
	cr_assert_eq(auth_scram_server_new(&s, &scfg), WB_E_INVAL);
	scfg.nonce_len = 0;
	scfg.lookup = NULL;
	cr_assert_eq(auth_scram_server_new(&s, &scfg), WB_E_INVAL);
	cr_assert_null(s);

	struct auth_scram_client_config ccfg = {.user = "alice",
	                                        .user_len = 5,
	                                        .password = "pw",
	                                        .password_len = 2,
	                                        .random = rng_cb,
	                                        .random_arg = &r};
	struct auth_scram_client *c = NULL;
	cr_assert_eq(auth_scram_client_new(&c, &ccfg), 0, "defaults");
	auth_scram_client_free(c);
	c = NULL;
	ccfg.max_iterations = AUTH_SCRAM_ITER_MAX + 1;
	cr_assert_eq(auth_scram_client_new(&c, &ccfg), WB_E_INVAL);
	ccfg.max_iterations = 0;
	ccfg.user_len = 0;
	cr_assert_eq(auth_scram_client_new(&c, &ccfg), WB_E_INVAL);
	ccfg.user_len = 5;
	ccfg.password = "p\nw";
	ccfg.password_len = 3;
	cr_assert_eq(auth_scram_client_new(&c, &ccfg), WB_E_INVAL);
	cr_assert_null(c);
}

/* ---- Passwords and credentials. ---- */

Test(scram, password_rules)
{
	char longest[AUTH_SCRAM_PASSWORD_MAX + 1];
	memset(longest, 'p', sizeof(longest));
	cr_assert_eq(auth_scram_password_check(longest, AUTH_SCRAM_PASSWORD_MAX), 0);
	cr_assert_eq(auth_scram_password_check(longest, AUTH_SCRAM_PASSWORD_MAX + 1), WB_E_INVAL);
	cr_assert_eq(auth_scram_password_check("", 0), WB_E_INVAL);
	cr_assert_eq(auth_scram_password_check("pencil", 6), 0);
	cr_assert_eq(auth_scram_password_check("pen\tcil", 7), WB_E_INVAL);
	cr_assert_eq(auth_scram_password_check("pen\0cil", 7), WB_E_INVAL);
	cr_assert_eq(auth_scram_password_check("pen\x7f"
	                                       "cil",
	                                       7),
	             WB_E_INVAL);
	cr_assert_eq(auth_scram_password_check("pen\xc2\x85"
	                                       "cil",
	                                       8),
	             WB_E_INVAL); /* U+0085, a C1 control */
	cr_assert_eq(auth_scram_password_check("pen\xc2\xa0"
	                                       "cil",
	                                       8),
	             0); /* U+00A0, a space, not a control */
	cr_assert_eq(auth_scram_password_check("pen\xc3"
	                                       "cil",
	                                       7),
	             WB_E_INVAL); /* truncated UTF-8 */
	cr_assert_eq(auth_scram_password_check("pen\xed\xa0\x80", 6), WB_E_INVAL); /* surrogate */
}

/* Non-ASCII passwords are their UTF-8 bytes, unnormalised: the composed
 * and decomposed forms of "é" are different passwords. */
Test(scram, non_ascii_password_is_its_bytes)
{
	store_n = 0;
	store_add("alice", "caf\xc3\xa9"); /* U+00E9 */
	struct run ok = exchange("alice", "caf\xc3\xa9", 1, 2, NULL);
	cr_assert_eq(ok.rc, 0, "the control");
	struct run nfd = exchange("alice", "cafe\xcc\x81", 1, 2, NULL); /* e + U+0301 */
	cr_assert_eq(nfd.rc, WB_UNAUTHENTICATED);
	cr_assert_eq(nfd.sreason, AUTH_SCRAM_R_PROOF);
}

Test(scram, derive_limits)
{
	struct auth_scram_cred cred;
	struct rng r = rng_seeded(3);
	memset(&cred, 0x5A, sizeof(cred));
	cr_assert_eq(auth_scram_cred_derive(&cred, "pw", 2, AUTH_SCRAM_ITER_MIN - 1, rng_cb, &r),
	             WB_E_INVAL);
	cr_assert_eq(auth_scram_cred_derive(&cred, "pw", 2, AUTH_SCRAM_ITER_MAX + 1, rng_cb, &r),
	             WB_E_INVAL);
	cr_assert_eq(auth_scram_cred_derive(&cred, "", 0, ITER, rng_cb, &r), WB_E_INVAL);
	cr_assert_eq(auth_scram_cred_derive(&cred, "pw", 2, ITER, NULL, NULL), WB_E_INVAL);
	r.fail = WB_E_IO;
	cr_assert_eq(auth_scram_cred_derive(&cred, "pw", 2, ITER, rng_cb, &r), WB_E_IO);
	cr_assert_eq(cred.iterations, 0x5A5A5A5A, "*out untouched on failure");
	r.fail = 0;
	cr_assert_eq(auth_scram_cred_derive(&cred, "pw", 2, ITER, rng_cb, &r), 0);
	cr_assert_eq(cred.iterations, ITER);
	cr_assert_eq(cred.salt_len, AUTH_SCRAM_SALT_LEN);

	/* Keys from the password give the stored credential. */
	struct auth_scram_keys keys;
	struct auth_scram_cred again;
	cr_assert_eq(auth_scram_keys_derive(&keys, "pw", 2, cred.salt, cred.salt_len, ITER), 0);
	cr_assert_eq(auth_scram_cred_from_keys(&again, &keys), 0);
	cr_assert(cred_eq(&again, &cred));
	/* Salts out of range. */
	cr_assert_eq(
	        auth_scram_keys_derive(&keys, "pw", 2, cred.salt, AUTH_SCRAM_SALT_MIN - 1, ITER),
	        WB_E_INVAL);
}

static size_t format(const struct auth_scram_cred *c, char *buf)
{
	size_t len = 0;
	cr_assert_eq(auth_scram_cred_format(c, buf, AUTH_SCRAM_CRED_STR_MAX + 1, &len), 0);
	cr_assert_eq(strlen(buf), len);
	return len;
}

Test(scram, credential_round_trip)
{
	char buf[AUTH_SCRAM_CRED_STR_MAX + 1];
	struct auth_scram_cred back;
	for (size_t i = 0; i < store_n; i++) {
		size_t len = format(&store[i].cred, buf);
		cr_assert_eq(strncmp(buf, "SCRAM-SHA-256$4096:", 19), 0, "%s", buf);
		memset(&back, 0x77, sizeof(back));
		cr_assert_eq(auth_scram_cred_parse(&back, buf, len), 0, "%s", buf);
		cr_assert(cred_eq(&back, &store[i].cred));
	}
	/* The longest form: the largest salt and count. */
	struct auth_scram_cred big = store[0].cred;
	memset(big.salt, 0xFF, sizeof(big.salt));
	big.salt_len = AUTH_SCRAM_SALT_MAX;
	big.iterations = AUTH_SCRAM_ITER_MAX;
	size_t len = format(&big, buf);
	cr_assert_leq(len, AUTH_SCRAM_CRED_STR_MAX);
	cr_assert_eq(auth_scram_cred_parse(&back, buf, len), 0);
	cr_assert(cred_eq(&back, &big));
	/* A buffer one byte short is refused. */
	cr_assert_eq(auth_scram_cred_format(&big, buf, AUTH_SCRAM_CRED_STR_MAX, &len), WB_E_INVAL);
}

/* The RFC's credential in storage form, as computed outside this code
 * (PBKDF2-HMAC-SHA-256 of "pencil" with the RFC's salt, 4096 iterations,
 * then RFC 5802's ClientKey, StoredKey and ServerKey): the string
 * PostgreSQL would store for that password and salt. */
Test(scram, rfc_credential_known_answer)
{
	static const char want[] = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	                           "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	                           "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
	char buf[AUTH_SCRAM_CRED_STR_MAX + 1];
	store_rfc_user();
	size_t len = format(&store[store_n - 1].cred, buf);
	cr_assert_str_eq(buf, want);
	cr_assert_eq(len, sizeof(want) - 1);
}

Test(scram, credential_parser_is_strict)
{
	char good[AUTH_SCRAM_CRED_STR_MAX + 1];
	size_t len = format(&store[0].cred, good);
	struct auth_scram_cred c;
	cr_assert_eq(auth_scram_cred_parse(&c, good, len), 0, "the control");

	const char *salt = strchr(good, ':') + 1;
	const char *keys = strchr(good, '$') + 1;
	keys = strchr(keys, '$') + 1;
	char bad[64][AUTH_SCRAM_CRED_STR_MAX + 8];
	int n = 0;
	snprintf(bad[n++], sizeof(bad[0]), "scram-sha-256$%s", good + 14);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-1$%s", good + 14);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$04096:%s", salt);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$+4096:%s", salt);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$4095:%s", salt);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$10000001:%s", salt);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$:%s", salt);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$4096%s", salt);
	snprintf(bad[n++], sizeof(bad[0]), "%s:", good);
	snprintf(bad[n++], sizeof(bad[0]), "%s ", good);
	snprintf(bad[n++], sizeof(bad[0]), " %s", good);
	snprintf(bad[n++], sizeof(bad[0]), "%.*s", (int)len - 1, good);
	snprintf(bad[n++], sizeof(bad[0]), "%.*s$%s", (int)(keys - good), good, keys);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$4096:AAAAAAAAAAA=$%s", keys);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$4096:$%s", keys);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$4096:%.*s", (int)(keys - salt - 1), salt);
	snprintf(bad[n++], sizeof(bad[0]), "SCRAM-SHA-256$");
	bad[n++][0] = '\0';
	for (int i = 0; i < n; i++) {
		memset(&c, 0x33, sizeof(c));
		cr_assert_eq(auth_scram_cred_parse(&c, bad[i], strlen(bad[i])), WB_E_INVAL, "%s",
		             bad[i]);
		cr_assert_eq(c.iterations, 0x33333333, "*out untouched: %s", bad[i]);
	}
	/* A NUL inside, where the control has the character it replaced. */
	char nul[AUTH_SCRAM_CRED_STR_MAX + 1];
	memcpy(nul, good, len);
	nul[len - 5] = '\0';
	cr_assert_eq(auth_scram_cred_parse(&c, nul, len), WB_E_INVAL);
}

/* Whether a client with the password authenticates against a server that
 * stores cred for alice. */
static bool cred_accepts(const struct auth_scram_cred *cred, const char *pw,
                         struct auth_scram_keys *cache)
{
	store[0].cred = *cred;
	struct auth_scram_keys copy = *cache; /* never let a success rewrite it */
	struct run r = exchange("alice", pw, 1, 2, &copy);
	return r.rc == 0;
}

/* Every byte of a stored credential replaced by every other byte value
 * either fails to parse or parses into a different credential against
 * which the right password no longer authenticates. Under valgrind, a
 * sample of the replacement values. */
Test(scram, every_single_byte_corruption_of_a_credential, .timeout = 600)
{
	const char *pw = "correct horse battery staple";
	char good[AUTH_SCRAM_CRED_STR_MAX + 1], bad[AUTH_SCRAM_CRED_STR_MAX + 1];
	struct auth_scram_cred orig = store[0].cred, c;
	struct auth_scram_keys cache;
	size_t len = format(&orig, good), parsed = 0, checked = 0;
	int step = fixture_under_valgrind() ? 37 : 1;

	cr_assert(cred_accepts(&orig, pw, &(struct auth_scram_keys){0}), "the control");
	alice_cache(&cache);
	for (size_t i = 0; i < len; i++) {
		for (int v = 1; v < 256; v += step) {
			memcpy(bad, good, len);
			bad[i] = (char)((unsigned char)good[i] ^ v);
			memset(&c, 0, sizeof(c));
			if (auth_scram_cred_parse(&c, bad, len) != 0)
				continue;
			parsed++;
			cr_assert(!cred_eq(&c, &orig), "byte %zu ^ %d", i, v);
			cr_assert(!cred_accepts(&c, pw, &cache), "byte %zu ^ %d", i, v);
			checked++;
		}
	}
	cr_assert_gt(parsed, 0, "some corruptions parse (into other credentials)");
	cr_assert_eq(checked, parsed);
}

/* ---- The client's key cache. ---- */

Test(scram, key_cache)
{
	struct auth_scram_keys cache;
	memset(&cache, 0, sizeof(cache));

	/* A failed exchange leaves the cache empty. */
	struct run bad = exchange("alice", "wrong", 1, 2, &cache);
	cr_assert_eq(bad.rc, WB_UNAUTHENTICATED);
	cr_assert_eq(cache.iterations, 0);
	/* A server without ServerKey: the proof passes, the client refuses
	 * the signature, and the cache stays empty. */
	store[0].cred.server_key[0] ^= 1;
	bad = exchange("alice", "correct horse battery staple", 1, 2, &cache);
	cr_assert_eq(bad.creason, AUTH_SCRAM_R_SERVER_SIGNATURE);
	cr_assert_eq(cache.iterations, 0);
	store[0].cred.server_key[0] ^= 1;

	/* A successful one fills it with alice's salt and count. */
	struct run ok = exchange("alice", "correct horse battery staple", 1, 2, &cache);
	cr_assert_eq(ok.rc, 0);
	cr_assert_eq(cache.iterations, ITER);
	cr_assert_eq(cache.salt_len, store[0].cred.salt_len);
	cr_assert_eq(memcmp(cache.salt, store[0].cred.salt, cache.salt_len), 0);

	/* The next exchange uses the cached keys, not the password: proved by
	 * a password that would fail without them. */
	struct run cached = exchange("alice", "not the password", 1, 2, &cache);
	cr_assert_eq(cached.rc, 0);
	/* The control: without the cache that password fails. */
	struct run uncached = exchange("alice", "not the password", 1, 2, NULL);
	cr_assert_eq(uncached.rc, WB_UNAUTHENTICATED);

	/* Another salt (the credential was reset) is a miss: the password is
	 * used again. */
	struct rng r = rng_seeded(77);
	cr_assert_eq(auth_scram_cred_derive(&store[0].cred, "new password", 12, ITER, rng_cb, &r),
	             0);
	struct run miss = exchange("alice", "new password", 1, 2, &cache);
	cr_assert_eq(miss.rc, 0);
	cr_assert_eq(memcmp(cache.salt, store[0].cred.salt, cache.salt_len), 0);
}

Test(scram, reason_names)
{
	for (int r = 0; r < AUTH_SCRAM_R_COUNT; r++) {
		const char *name = auth_scram_reason_name((enum auth_scram_reason)r);
		cr_assert_not_null(name);
		cr_assert_str_neq(name, "unknown", "reason %d has a name", r);
	}
	cr_assert_str_eq(auth_scram_reason_name(AUTH_SCRAM_R_COUNT), "unknown");
	cr_assert_str_eq(auth_scram_reason_name(AUTH_SCRAM_R_PROOF), "proof");
}
