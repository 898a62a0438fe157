#include "parse.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "wb_error.h"

struct unit {
	const char *suffix;
	uint64_t mul;
};

/* Each table is in ascending order and ends with a NULL suffix. The entry
 * with the empty suffix is the bare number; an entry with another suffix
 * and the multiplier 1 ("ms") names the base unit. */
static const struct unit integer_units[] = {
        {"", 1},
        {NULL, 0},
};
static const struct unit count_units[] = {
        {"", 1}, {"k", 1000}, {"M", 1000000}, {"G", 1000000000}, {NULL, 0},
};
static const struct unit size_units[] = {
        {"", 1},           {"K", 1ull << 10}, {"M", 1ull << 20},
        {"G", 1ull << 30}, {"T", 1ull << 40}, {NULL, 0},
};
static const struct unit duration_units[] = {
        {"", 1},
        {"ms", 1},
        {"s", 1000},
        {"m", 60 * 1000},
        {"h", 60 * 60 * 1000},
        {"d", 24 * 60 * 60 * 1000},
        {NULL, 0},
};

static const struct kind {
	const struct unit *units;
	/* Sizes: a one-letter unit in either case, then optionally i, B or
	 * iB ("64m", "64MiB", "64MB"), as whizbangd has always read them. */
	bool binary;
	/* The units in words; tests/test_parse.c checks that each is read. */
	const char *phrase;
} kinds[] = {
        [PARSE_INTEGER] = {integer_units, false, ""},
        [PARSE_COUNT] = {count_units, false, "k, M or G"},
        [PARSE_SIZE] = {size_units, true, "K, M, G or T"},
        [PARSE_DURATION] = {duration_units, false, "ms, s, m, h or d"},
};

#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static const struct kind *kind_of(enum parse_kind kind)
{
	return (unsigned)kind < NKINDS ? &kinds[kind] : NULL;
}

static char upper(char ch)
{
	return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
}

/* Whether rest, all that follows the digits, is unit u of k. */
static bool is_unit(const struct kind *k, const struct unit *u, const char *rest)
{
	if (!k->binary || u->suffix[0] == '\0')
		return strcmp(rest, u->suffix) == 0;
	if (upper(rest[0]) != u->suffix[0])
		return false;
	rest++;
	return strcmp(rest, "") == 0 || strcmp(rest, "i") == 0 || strcmp(rest, "B") == 0 ||
	       strcmp(rest, "iB") == 0;
}

int parse_u64(const char *text, enum parse_kind kind, uint64_t *out)
{
	const struct kind *k = kind_of(kind);
	if (k == NULL || text == NULL || text[0] < '0' || text[0] > '9')
		return WB_E_INVAL;
	uint64_t v = 0;
	const char *p = text;
	for (; *p >= '0' && *p <= '9'; p++) {
		uint64_t digit = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - digit) / 10)
			return WB_E_INVAL;
		v = v * 10 + digit;
	}
	for (const struct unit *u = k->units; u->suffix != NULL; u++) {
		if (!is_unit(k, u, p))
			continue;
		if (v != 0 && u->mul > UINT64_MAX / v)
			return WB_E_INVAL;
		*out = v * u->mul;
		return 0;
	}
	return WB_E_INVAL;
}

int parse_u64_in(const char *text, enum parse_kind kind, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;
	int rc = parse_u64(text, kind, &v);
	if (rc != 0)
		return rc;
	if (v < min || v > max)
		return WB_E_INVAL;
	*out = v;
	return 0;
}

const char *parse_units(enum parse_kind kind)
{
	const struct kind *k = kind_of(kind);
	return k != NULL ? k->phrase : "";
}

size_t parse_format(enum parse_kind kind, uint64_t v, char *buf, size_t len)
{
	const struct kind *k = kind_of(kind);
	const struct unit *units = k != NULL ? k->units : integer_units;
	const char *base = "";
	const struct unit *best = NULL;
	for (const struct unit *u = units; u->suffix != NULL; u++) {
		if (u->mul == 1 && u->suffix[0] != '\0')
			base = u->suffix;
		if (u->mul > 1 && v != 0 && v % u->mul == 0)
			best = u;
	}
	int n = best != NULL ? snprintf(buf, len, "%llu%s", (unsigned long long)(v / best->mul),
	                                best->suffix)
	                     : snprintf(buf, len, "%llu%s", (unsigned long long)v, base);
	return n > 0 ? (size_t)n : 0;
}
