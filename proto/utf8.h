/* UTF-8 validation (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
#ifndef WB_UTF8_H
#define WB_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Returns the length (1-4) of the valid UTF-8 sequence at the start of
 * s[0..n), n >= 1, or 0 when it is not valid. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* Returns true when s[0..n) is valid UTF-8; otherwise false, with the
 * offset of the first bad byte in *bad when bad is not NULL. */
bool utf8_valid(const char *s, size_t n, size_t *bad);

#endif
