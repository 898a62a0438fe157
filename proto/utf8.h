/* UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
#ifndef WB_UTF8_H
#define WB_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the UTF-8 sequence at the start of s[0..n), n >= 1: returns its
 * length (1-4) and writes the code point to *cp, or returns 0 when the
 * bytes there are not valid UTF-8. */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* The length of the valid sequence at the start of s[0..n), or 0. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* Returns true when s[0..n) is valid UTF-8; otherwise false, with the
 * offset of the first bad byte in *bad when bad is not NULL. */
bool utf8_valid(const char *s, size_t n, size_t *bad);

#endif
