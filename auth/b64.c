#include "b64.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "wb_error.h"

static bool is_b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

static bool is_b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

size_t auth_b64_encode(char *out, const uint8_t *in, size_t n)
{
	assert(n <= AUTH_B64_BYTES_MAX);
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return (size_t)len;
}

int auth_b64_decode(uint8_t *out, size_t cap, size_t *out_len, const char *text, size_t len)
{
	/* EVP_DecodeBlock() writes 3 bytes for every 4 characters, padding
	 * included, so the scratch space is sized for the longest text. */
	uint8_t buf[AUTH_B64_BYTES_MAX];
	char again[AUTH_B64_TEXT_MAX + 1];
	size_t pad = 0;
	int rc = WB_E_INVAL;

	if (len == 0) {
		*out_len = 0;
		return 0;
	}
	if (len > AUTH_B64_TEXT_MAX || len % 4 != 0)
		return WB_E_INVAL;
	if (text[len - 1] == '=')
		pad = text[len - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < len - pad; i++) {
		if (!is_b64_char(text[i]))
			return WB_E_INVAL;
	}
	int n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
	if (n < 0 || (size_t)n != len / 4 * 3)
		goto out;
	size_t got = (size_t)n - pad;
	/* Only the canonical text of these bytes is accepted: this also
	 * refuses set bits after the last byte, which EVP_DecodeBlock()
	 * drops. */
	if (auth_b64_encode(again, buf, got) != len || memcmp(again, text, len) != 0)
		goto out;
	if (got > cap)
		goto out;
	memcpy(out, buf, got);
	*out_len = got;
	rc = 0;
out:
	/* The decoded bytes may be key material (stored credentials). */
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

size_t auth_b64url_encode(char *out, const uint8_t *in, size_t n)
{
	size_t len = auth_b64_encode(out, in, n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return len;
}

int auth_b64url_decode(uint8_t *out, size_t cap, size_t *out_len, const char *text, size_t len)
{
	char padded[AUTH_B64_TEXT_MAX];
	size_t n = 0;

	if (len > AUTH_B64_TEXT_MAX || len % 4 == 1)
		return WB_E_INVAL;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (!is_b64url_char(c))
			return WB_E_INVAL;
		padded[n++] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	while (n % 4 != 0) {
		if (n == sizeof(padded))
			return WB_E_INVAL;
		padded[n++] = '=';
	}
	return auth_b64_decode(out, cap, out_len, padded, n);
}
