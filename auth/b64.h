/* Strict base64 (RFC 4648 §4, padded) and base64url (§5, unpadded) over
 * OpenSSL's EVP_EncodeBlock() and EVP_DecodeBlock().
 *
 * EVP_DecodeBlock() alone is too lenient for text an attacker writes: it
 * skips leading and trailing white space, counts padding as decoded zero
 * bytes (3 bytes for every 4 characters, whatever the '='), and accepts
 * characters whose unused low bits are set, so that several texts decode to
 * the same bytes. The decoders here accept exactly the text the encoders
 * produce for some input: the alphabet only, the length a multiple of 4
 * (base64) or not 1 modulo 4 (base64url), padding only at the end, and the
 * unused bits zero. They check this by encoding the result again and
 * comparing it with the input.
 *
 * Every text and every byte string here is short (salts, keys, proofs,
 * tokens): at most AUTH_B64_TEXT_MAX characters, AUTH_B64_BYTES_MAX bytes. */
#ifndef WB_AUTH_B64_H
#define WB_AUTH_B64_H

#include <stddef.h>
#include <stdint.h>

/* The longest text the decoders take. */
#define AUTH_B64_TEXT_MAX 1024u
/* The most bytes the encoders take (their text is then AUTH_B64_TEXT_MAX). */
#define AUTH_B64_BYTES_MAX 768u

/* The length of the padded base64 text of n bytes. */
#define AUTH_B64_LEN(n) ((((n) + 2u) / 3u) * 4u)
/* The length of the unpadded base64url text of n bytes. */
#define AUTH_B64URL_LEN(n) (((n)*4u + 2u) / 3u)

/* Writes the padded base64 text of in[0..n) and a NUL into out, which has
 * room for AUTH_B64_LEN(n) + 1 bytes, and returns the text's length
 * (AUTH_B64_LEN(n)). n must be at most AUTH_B64_BYTES_MAX. */
size_t auth_b64_encode(char *out, const uint8_t *in, size_t n);

/* Decodes the padded base64 text[0..len) into out (room for cap bytes) and
 * writes the decoded length into *out_len. Returns 0, or WB_E_INVAL when the
 * text is not exactly what auth_b64_encode() makes of some input, is longer
 * than AUTH_B64_TEXT_MAX, or decodes to more than cap bytes; out and
 * *out_len are written only on success. The empty text decodes to 0 bytes. */
int auth_b64_decode(uint8_t *out, size_t cap, size_t *out_len, const char *text, size_t len);

/* Writes the unpadded base64url text of in[0..n) ('-' and '_' for '+' and
 * '/', no '=') and a NUL into out, which has room for AUTH_B64URL_LEN(n) + 1
 * bytes, and returns the text's length. n must be at most
 * AUTH_B64_BYTES_MAX. */
size_t auth_b64url_encode(char *out, const uint8_t *in, size_t n);

/* The base64url counterpart of auth_b64_decode(), with the same contract:
 * the text has no padding and only the base64url alphabet, and must be what
 * auth_b64url_encode() makes of some input. */
int auth_b64url_decode(uint8_t *out, size_t cap, size_t *out_len, const char *text, size_t len);

#endif
