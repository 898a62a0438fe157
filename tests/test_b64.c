/* Tests of the strict base64 and base64url codecs (auth/b64.h): round trips
 * at every length, and the texts EVP_DecodeBlock() alone would take but the
 * codecs must refuse (white space, padding in the middle or missing, set
 * unused bits, the other alphabet), each next to the accepted text it
 * differs from in one place. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "b64.h"
#include "fixture.h"

static int dec(const char *text, uint8_t *out, size_t cap, size_t *len)
{
	return auth_b64_decode(out, cap, len, text, strlen(text));
}

static int decurl(const char *text, uint8_t *out, size_t cap, size_t *len)
{
	return auth_b64url_decode(out, cap, len, text, strlen(text));
}

Test(b64, rfc4648_vectors)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
	                                  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		char text[16];
		uint8_t bytes[16];
		size_t n = strlen(plain[i]), got = 99;
		cr_assert_eq(auth_b64_encode(text, (const uint8_t *)plain[i], n), strlen(enc[i]));
		cr_assert_str_eq(text, enc[i]);
		cr_assert_eq(dec(enc[i], bytes, sizeof(bytes), &got), 0, "%s", enc[i]);
		cr_assert_eq(got, n);
		cr_assert_eq(memcmp(bytes, plain[i], n), 0);
	}
}

/* Every length from 0 to 200 bytes, random contents, both alphabets. */
Test(b64, round_trip_every_length)
{
	uint64_t rng = 7;
	for (size_t n = 0; n <= 200; n++) {
		uint8_t in[200], out[200];
		char text[AUTH_B64_LEN(200) + 1], url[AUTH_B64URL_LEN(200) + 1];
		size_t got = 0;
		for (size_t i = 0; i < n; i++)
			in[i] = (uint8_t)fixture_splitmix(&rng);
		size_t len = auth_b64_encode(text, in, n);
		cr_assert_eq(len, AUTH_B64_LEN(n));
		cr_assert_eq(strlen(text), len);
		cr_assert_eq(auth_b64_decode(out, sizeof(out), &got, text, len), 0);
		cr_assert_eq(got, n);
		cr_assert_eq(memcmp(in, out, n), 0);

		len = auth_b64url_encode(url, in, n);
		cr_assert_eq(len, AUTH_B64URL_LEN(n));
		cr_assert_eq(strlen(url), len);
		cr_assert_null(strpbrk(url, "+/="));
		cr_assert_eq(auth_b64url_decode(out, sizeof(out), &got, url, len), 0, "n=%zu", n);
		cr_assert_eq(got, n);
		cr_assert_eq(memcmp(in, out, n), 0);
	}
}

Test(b64, refuses_what_evp_decodeblock_accepts)
{
	uint8_t out[16];
	size_t got;
	/* The control: "Zg==" decodes to "f". */
	cr_assert_eq(dec("Zg==", out, sizeof(out), &got), 0);
	cr_assert_eq(got, 1);
	/* White space EVP_DecodeBlock() skips. */
	cr_assert_eq(dec(" Zg==", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("Zg==\n", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("Zg== ", out, sizeof(out), &got), WB_E_INVAL);
	/* Unused bits set: "Zh==" is 'f' with a stray bit. */
	cr_assert_eq(dec("Zh==", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("Zm9=", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("Zm8=", out, sizeof(out), &got), 0);
	/* Padding missing, in the middle, or too much. */
	cr_assert_eq(dec("Zg", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("Zg=", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("Zg==Zg==", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("Z===", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("====", out, sizeof(out), &got), WB_E_INVAL);
	/* The other alphabet. */
	cr_assert_eq(dec("-_-_", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(dec("+/+/", out, sizeof(out), &got), 0);
	/* A NUL inside. */
	cr_assert_eq(auth_b64_decode(out, sizeof(out), &got, "Zm\0v", 4), WB_E_INVAL);
	cr_assert_eq(auth_b64_decode(out, sizeof(out), &got, "Zm9v", 4), 0);
}

Test(b64, capacity_and_length_bounds)
{
	uint8_t out[AUTH_B64_BYTES_MAX];
	char text[AUTH_B64_TEXT_MAX + 5];
	size_t got = 12345;
	/* "Zm9vYmFy" is 6 bytes: a 5-byte buffer is refused and untouched. */
	memset(out, 0xAA, sizeof(out));
	cr_assert_eq(dec("Zm9vYmFy", out, 5, &got), WB_E_INVAL);
	cr_assert_eq(got, 12345);
	cr_assert_eq(out[0], 0xAA);
	cr_assert_eq(dec("Zm9vYmFy", out, 6, &got), 0);
	cr_assert_eq(got, 6);
	/* The longest text is taken, one block more is not. */
	memset(text, 'A', sizeof(text));
	cr_assert_eq(auth_b64_decode(out, sizeof(out), &got, text, AUTH_B64_TEXT_MAX), 0);
	cr_assert_eq(got, AUTH_B64_BYTES_MAX);
	cr_assert_eq(auth_b64_decode(out, sizeof(out), &got, text, AUTH_B64_TEXT_MAX + 4),
	             WB_E_INVAL);
}

Test(b64, url_strictness)
{
	uint8_t out[16];
	size_t got;
	/* 0xFB 0xFF: "-_8" in base64url, "+/8=" in base64. */
	cr_assert_eq(decurl("-_8", out, sizeof(out), &got), 0);
	cr_assert_eq(got, 2);
	cr_assert_eq(out[0], 0xFB);
	cr_assert_eq(out[1], 0xFF);
	cr_assert_eq(decurl("+/8", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(decurl("-_8=", out, sizeof(out), &got), WB_E_INVAL);
	/* A length of 1 modulo 4 cannot be a whole number of bytes. */
	cr_assert_eq(decurl("Zm9vY", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(decurl("Zm9vYg", out, sizeof(out), &got), 0);
	/* Unused bits set. */
	cr_assert_eq(decurl("Zh", out, sizeof(out), &got), WB_E_INVAL);
	cr_assert_eq(decurl("Zg", out, sizeof(out), &got), 0);
	cr_assert_eq(decurl("Zm9vYh", out, sizeof(out), &got), WB_E_INVAL);
	/* White space. */
	cr_assert_eq(decurl("Zg ", out, sizeof(out), &got), WB_E_INVAL);
}
