/* Tests of API tokens (auth/token.h): a token generated from fixed random
 * bytes is a known string whose record holds the known SHA-256 of its
 * secret; parse and check round trips; a wrong secret or id, expiry and
 * revocation, each next to the valid check it differs from in one thing;
 * every prefix and every single-byte change of a valid token. That the
 * secret's hash is compared in constant time is by inspection
 * (auth_token_check() uses CRYPTO_memcmp); no test here measures time. */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "token.h"

#define NOW 1700000000000ull /* ms since the epoch, 2023-11-14 */
#define HOUR 3600000ull

/* The id is bytes 0..11, the secret bytes 100..131. */
#define KNOWN_TOKEN "wbt_AAECAwQFBgcICQoL_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoM"
static const uint8_t known_hash[AUTH_TOKEN_HASH_LEN] = {
        0xe3, 0xe1, 0x67, 0x80, 0xbe, 0xcf, 0x60, 0x1d, 0x55, 0xe4, 0x75,
        0x1e, 0x7d, 0x72, 0x2e, 0xf9, 0x1d, 0x75, 0x0b, 0xb0, 0xce, 0xa6,
        0x1b, 0x1b, 0xb5, 0xea, 0x8b, 0xc3, 0x08, 0xcd, 0xf2, 0x62,
};

struct rng {
	uint8_t script[64];
	size_t len, off;
	uint64_t state;
	int fail;
};

static int rng_cb(void *arg, uint8_t *buf, size_t n)
{
	struct rng *r = arg;
	if (r->fail != 0)
		return r->fail;
	for (size_t i = 0; i < n; i++) {
		if (r->off < r->len)
			buf[i] = r->script[r->off++];
		else
			buf[i] = (uint8_t)fixture_splitmix(&r->state);
	}
	return 0;
}

static struct rng known_rng(void)
{
	struct rng r = {.len = AUTH_TOKEN_ID_LEN + AUTH_TOKEN_SECRET_LEN, .state = 1};
	for (uint8_t i = 0; i < AUTH_TOKEN_ID_LEN; i++)
		r.script[i] = i;
	for (uint8_t i = 0; i < AUTH_TOKEN_SECRET_LEN; i++)
		r.script[AUTH_TOKEN_ID_LEN + i] = (uint8_t)(100 + i);
	return r;
}

static char text[AUTH_TOKEN_STR_LEN + 1];
static struct auth_token_record rec;

/* Generates the known token at NOW, expiring in an hour, role 7. */
static void setup(void)
{
	struct rng r = known_rng();
	cr_assert_eq(auth_token_generate(text, sizeof(text), &rec, 7, NOW, NOW + HOUR, rng_cb, &r),
	             0);
}

TestSuite(token, .init = setup);

static enum auth_token_status check_text(const char *s, uint64_t now)
{
	struct auth_token t;
	if (auth_token_parse(&t, s, strlen(s)) != 0)
		return AUTH_TOKEN_WRONG;
	enum auth_token_status st = auth_token_check(&rec, &t, now);
	auth_token_clear(&t);
	return st;
}

Test(token, generate_known_bytes)
{
	cr_assert_str_eq(text, KNOWN_TOKEN);
	cr_assert_eq(strlen(text), AUTH_TOKEN_STR_LEN);
	for (uint8_t i = 0; i < AUTH_TOKEN_ID_LEN; i++)
		cr_assert_eq(rec.id[i], i);
	cr_assert_eq(memcmp(rec.hash, known_hash, sizeof(known_hash)), 0, "SHA-256 of the secret");
	cr_assert_eq(rec.role, 7);
	cr_assert_eq(rec.created_ms, NOW);
	cr_assert_eq(rec.expires_ms, NOW + HOUR);
	cr_assert(!rec.revoked);

	char id[AUTH_TOKEN_ID_CHARS + 1];
	auth_token_id_format(id, rec.id);
	cr_assert_str_eq(id, "AAECAwQFBgcICQoL");
}

Test(token, parse_and_check)
{
	struct auth_token t;
	cr_assert_eq(auth_token_parse(&t, text, strlen(text)), 0);
	cr_assert_eq(memcmp(t.id, rec.id, sizeof(t.id)), 0);
	for (uint8_t i = 0; i < AUTH_TOKEN_SECRET_LEN; i++)
		cr_assert_eq(t.secret[i], 100 + i);
	cr_assert_eq(auth_token_check(&rec, &t, NOW), AUTH_TOKEN_VALID);
	auth_token_clear(&t);
	uint8_t zero[sizeof(t)];
	memset(zero, 0, sizeof(zero));
	cr_assert_eq(memcmp(&t, zero, sizeof(t)), 0, "cleared");
}

/* Random tokens: each differs, each checks against its own record only. */
Test(token, random_tokens)
{
	char a[AUTH_TOKEN_STR_LEN + 1], b[AUTH_TOKEN_STR_LEN + 1];
	struct auth_token_record ra, rb;
	struct auth_token ta, tb;
	cr_assert_eq(auth_token_generate(a, sizeof(a), &ra, 1, NOW, 0, auth_rand_bytes, NULL), 0);
	cr_assert_eq(auth_token_generate(b, sizeof(b), &rb, 1, NOW, 0, auth_rand_bytes, NULL), 0);
	cr_assert_str_neq(a, b);
	cr_assert_eq(auth_token_parse(&ta, a, strlen(a)), 0);
	cr_assert_eq(auth_token_parse(&tb, b, strlen(b)), 0);
	cr_assert_eq(auth_token_check(&ra, &ta, NOW), AUTH_TOKEN_VALID);
	cr_assert_eq(auth_token_check(&rb, &tb, NOW), AUTH_TOKEN_VALID);
	cr_assert_eq(auth_token_check(&ra, &tb, NOW), AUTH_TOKEN_WRONG);
	cr_assert_eq(auth_token_check(&rb, &ta, NOW), AUTH_TOKEN_WRONG);
	/* expires_ms 0: never. */
	cr_assert_eq(auth_token_check(&ra, &ta, UINT64_MAX), AUTH_TOKEN_VALID);
}

Test(token, wrong_secret)
{
	char other[AUTH_TOKEN_STR_LEN + 1];
	memcpy(other, text, sizeof(other));
	/* 'Z' -> 'Y' in the secret's first character: another canonical
	 * secret. */
	cr_assert_eq(other[21], 'Z');
	other[21] = 'Y';
	cr_assert_eq(check_text(other, NOW), AUTH_TOKEN_WRONG);
	cr_assert_eq(check_text(text, NOW), AUTH_TOKEN_VALID, "the control");
}

Test(token, wrong_id)
{
	struct auth_token t;
	cr_assert_eq(auth_token_parse(&t, text, strlen(text)), 0);
	t.id[0] ^= 1;
	cr_assert_eq(auth_token_check(&rec, &t, NOW), AUTH_TOKEN_WRONG);
	t.id[0] ^= 1;
	cr_assert_eq(auth_token_check(&rec, &t, NOW), AUTH_TOKEN_VALID, "the control");
}

Test(token, expiry)
{
	cr_assert_eq(check_text(text, NOW + HOUR - 1), AUTH_TOKEN_VALID, "the control");
	cr_assert_eq(check_text(text, NOW + HOUR), AUTH_TOKEN_EXPIRED);
	cr_assert_eq(check_text(text, UINT64_MAX), AUTH_TOKEN_EXPIRED);
	/* A clock that jumped back before the token's creation does not
	 * matter: only expiry is judged. */
	cr_assert_eq(check_text(text, 0), AUTH_TOKEN_VALID);
}

Test(token, revocation)
{
	rec.revoked = true;
	cr_assert_eq(check_text(text, NOW), AUTH_TOKEN_REVOKED);
	/* Revoked and expired: revoked. */
	cr_assert_eq(check_text(text, NOW + HOUR), AUTH_TOKEN_REVOKED);
	/* A wrong secret learns nothing about revocation. */
	char other[AUTH_TOKEN_STR_LEN + 1];
	memcpy(other, text, sizeof(other));
	other[21] = 'Y';
	cr_assert_eq(check_text(other, NOW), AUTH_TOKEN_WRONG);
	rec.revoked = false;
	cr_assert_eq(check_text(text, NOW), AUTH_TOKEN_VALID, "the control");
	/* Nor about expiry. */
	cr_assert_eq(check_text(other, NOW + HOUR), AUTH_TOKEN_WRONG);
}

Test(token, every_prefix_and_extension_is_refused)
{
	struct auth_token t;
	for (size_t n = 0; n < AUTH_TOKEN_STR_LEN; n++) {
		char *copy = malloc(n == 0 ? 1 : n);
		memcpy(copy, text, n);
		cr_assert_eq(auth_token_parse(&t, copy, n), WB_E_INVAL, "prefix %zu", n);
		free(copy);
	}
	char longer[AUTH_TOKEN_STR_LEN + 2];
	memcpy(longer, text, AUTH_TOKEN_STR_LEN);
	for (int c = 0; c < 256; c++) {
		longer[AUTH_TOKEN_STR_LEN] = (char)c;
		cr_assert_eq(auth_token_parse(&t, longer, AUTH_TOKEN_STR_LEN + 1), WB_E_INVAL);
	}
	cr_assert_eq(auth_token_parse(&t, longer, AUTH_TOKEN_STR_LEN), 0, "the control");
	cr_assert_eq(auth_token_parse(&t, NULL, 0), WB_E_INVAL);
}

/* Every byte replaced by every other value either fails to parse or
 * parses into another token, which the record refuses. */
Test(token, every_single_byte_change)
{
	char bad[AUTH_TOKEN_STR_LEN];
	size_t parsed = 0;
	for (size_t i = 0; i < AUTH_TOKEN_STR_LEN; i++) {
		for (int v = 1; v < 256; v++) {
			struct auth_token t;
			memcpy(bad, text, sizeof(bad));
			bad[i] = (char)((unsigned char)text[i] ^ v);
			if (auth_token_parse(&t, bad, sizeof(bad)) != 0)
				continue;
			parsed++;
			cr_assert_eq(auth_token_check(&rec, &t, NOW), AUTH_TOKEN_WRONG,
			             "byte %zu ^ %d", i, v);
		}
	}
	cr_assert_gt(parsed, 0);
	/* Only characters of the two base64url parts can change and still
	 * parse: never the prefix or the separator. */
	cr_assert_lt(parsed, (AUTH_TOKEN_ID_CHARS + AUTH_TOKEN_SECRET_CHARS) * 64);
}

Test(token, strict_form)
{
	static const char *const bad[] = {
	        "WBT_AAECAwQFBgcICQoL_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoM",
	        "wbt-AAECAwQFBgcICQoL_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoM",
	        "wbt_AAECAwQFBgcICQoL-ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoM",
	        "wbt_AAECAwQFBgcICQoL_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM",
	        "wbt_AAECAwQFBgcICQoL_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoN",
	        "wbt_AAECAwQFBgcICQoL_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgo=",
	        "wbt_AAECAwQFBgcICQoL ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoM",
	        " wbt_AAECAwQFBgcICQoL_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgo",
	};
	struct auth_token t;
	cr_assert_eq(auth_token_parse(&t, KNOWN_TOKEN, strlen(KNOWN_TOKEN)), 0, "the control");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(strlen(bad[i]), AUTH_TOKEN_STR_LEN);
		cr_assert_eq(auth_token_parse(&t, bad[i], strlen(bad[i])), WB_E_INVAL, "%s",
		             bad[i]);
	}
}

Test(token, generate_refuses_bad_arguments)
{
	char out[AUTH_TOKEN_STR_LEN + 1];
	struct auth_token_record r;
	struct rng g = known_rng();
	memset(out, 'x', sizeof(out));
	memset(&r, 0x5A, sizeof(r));
	cr_assert_eq(auth_token_generate(out, AUTH_TOKEN_STR_LEN, &r, 1, NOW, 0, rng_cb, &g),
	             WB_E_INVAL, "no room for the NUL");
	cr_assert_eq(auth_token_generate(out, sizeof(out), &r, 1, NOW, NOW, rng_cb, &g), WB_E_INVAL,
	             "expires when made");
	cr_assert_eq(auth_token_generate(out, sizeof(out), &r, 1, NOW, NOW - 1, rng_cb, &g),
	             WB_E_INVAL);
	cr_assert_eq(auth_token_generate(out, sizeof(out), &r, 1, NOW, 0, NULL, NULL), WB_E_INVAL);
	g.fail = WB_E_IO;
	cr_assert_eq(auth_token_generate(out, sizeof(out), &r, 1, NOW, 0, rng_cb, &g), WB_E_IO);
	cr_assert_eq(out[0], 'x', "out untouched on failure");
	cr_assert_eq(r.role, 0x5A5A5A5A, "*rec untouched on failure");
	g.fail = 0;
	cr_assert_eq(auth_token_generate(out, sizeof(out), &r, 1, NOW, NOW + 1, rng_cb, &g), 0,
	             "the control");
	cr_assert_str_eq(out, KNOWN_TOKEN);
}

Test(token, status_names)
{
	cr_assert_str_eq(auth_token_status_name(AUTH_TOKEN_VALID), "valid");
	cr_assert_str_eq(auth_token_status_name(AUTH_TOKEN_WRONG), "wrong");
	cr_assert_str_eq(auth_token_status_name(AUTH_TOKEN_EXPIRED), "expired");
	cr_assert_str_eq(auth_token_status_name(AUTH_TOKEN_REVOKED), "revoked");
	cr_assert_str_eq(auth_token_status_name((enum auth_token_status)99), "unknown");
}
