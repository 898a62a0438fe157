/* Numbers as people type them, on the command lines of whizbangd, whizbang
 * and whizbang-bench and in whizbangd's config file: one grammar per kind,
 * shared by every program, so that "30s" or "64M" means the same
 * everywhere.
 *
 * Every kind is one or more decimal digits (nothing before them: no sign, no
 * white space), then an optional unit from the kind's table, then the end of
 * the text:
 *
 *   PARSE_INTEGER   no unit                                  "1024"
 *   PARSE_COUNT     k (10^3), M (10^6) or G (10^9)           "200k"
 *   PARSE_SIZE      K, M, G or T: powers of 1024, in either  "64M", "1GiB"
 *                   case, optionally followed by i, B or iB
 *   PARSE_DURATION  ms, s, m (minutes), h or d (days); plain  "30s", "7d"
 *                   digits are milliseconds
 *
 * A value that does not fit in 64 bits, digits and unit multiplied, is
 * refused like any other text outside the grammar. Pure C: no allocation,
 * no locale, no errno. */
#ifndef WB_PARSE_H
#define WB_PARSE_H

#include <stddef.h>
#include <stdint.h>

enum parse_kind {
	PARSE_INTEGER = 0,
	PARSE_COUNT = 1,
	PARSE_SIZE = 2,
	PARSE_DURATION = 3,
};

/* Parses text as kind into *out: sizes in bytes, durations in milliseconds.
 * Returns 0, or WB_E_INVAL when text is NULL or empty, is not of the kind's
 * grammar, or names a value above UINT64_MAX (kind not a value of enum
 * parse_kind is WB_E_INVAL too). *out is written only on success. Keeps no
 * reference to text. */
int parse_u64(const char *text, enum parse_kind kind, uint64_t *out);

/* parse_u64(), also answering WB_E_INVAL for a value outside [min, max]. */
int parse_u64_in(const char *text, enum parse_kind kind, uint64_t min, uint64_t max, uint64_t *out);

/* The units kind takes, as a phrase for messages and help texts: "ms, s, m,
 * h or d", "K, M, G or T", "k, M or G"; "" for PARSE_INTEGER (and for a
 * value that is not a kind). The string is static. */
const char *parse_units(enum parse_kind kind);

/* Writes v as text that parse_u64() reads back as v: the digits with the
 * largest unit of kind that divides v exactly ("90s", "2h", "64M"), else
 * with the kind's base unit ("1500ms", "0ms", "1000"). Writes at most len
 * bytes, NUL included, and returns the length of the whole text, as
 * snprintf() does. */
size_t parse_format(enum parse_kind kind, uint64_t v, char *buf, size_t len);

#endif
