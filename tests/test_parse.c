/* Tests of the number, size and duration parsers (proto/parse.h) that
 * whizbangd's config, the whizbang CLI and whizbang-bench share: every unit
 * of every kind, the edges of 64 bits, junk, empty text, bounds, and the
 * formatter that writes what the parsers read back. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "parse.h"
#include "wb_error.h"

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define TIB (1024ull * GIB)

struct good {
	const char *text;
	enum parse_kind kind;
	uint64_t want;
};

static const struct good goods[] = {
        /* Integers: digits only. */
        {"0", PARSE_INTEGER, 0},
        {"7", PARSE_INTEGER, 7},
        {"000123", PARSE_INTEGER, 123},
        {"18446744073709551615", PARSE_INTEGER, UINT64_MAX},
        /* Counts: decimal k, M, G. */
        {"5", PARSE_COUNT, 5},
        {"200k", PARSE_COUNT, 200000},
        {"3M", PARSE_COUNT, 3000000},
        {"2G", PARSE_COUNT, 2000000000},
        {"0k", PARSE_COUNT, 0},
        /* Sizes: binary K, M, G, T in either case, with i, B or iB. */
        {"512", PARSE_SIZE, 512},
        {"4K", PARSE_SIZE, 4 * KIB},
        {"4k", PARSE_SIZE, 4 * KIB},
        {"64M", PARSE_SIZE, 64 * MIB},
        {"64m", PARSE_SIZE, 64 * MIB},
        {"64MiB", PARSE_SIZE, 64 * MIB},
        {"64Mi", PARSE_SIZE, 64 * MIB},
        {"64MB", PARSE_SIZE, 64 * MIB},
        {"1G", PARSE_SIZE, GIB},
        {"1g", PARSE_SIZE, GIB},
        {"16T", PARSE_SIZE, 16 * TIB},
        {"16t", PARSE_SIZE, 16 * TIB},
        {"16777215T", PARSE_SIZE, 16777215 * TIB},
        /* Durations: ms, s, m, h, d; plain digits are milliseconds. */
        {"250", PARSE_DURATION, 250},
        {"250ms", PARSE_DURATION, 250},
        {"30s", PARSE_DURATION, 30000},
        {"2m", PARSE_DURATION, 120000},
        {"3h", PARSE_DURATION, 3 * 3600000ull},
        {"7d", PARSE_DURATION, 7 * 86400000ull},
        {"0s", PARSE_DURATION, 0},
        {"0", PARSE_DURATION, 0},
        {"213503982334d", PARSE_DURATION, 213503982334ull * 86400000ull},
};

Test(parse, every_unit_of_every_kind)
{
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		uint64_t v = 12345;
		int rc = parse_u64(goods[i].text, goods[i].kind, &v);
		cr_assert_eq(rc, 0, "\"%s\" (kind %d): %s", goods[i].text, goods[i].kind,
		             wb_error_name(rc));
		cr_assert_eq(v, goods[i].want, "\"%s\": %llu, want %llu", goods[i].text,
		             (unsigned long long)v, (unsigned long long)goods[i].want);
	}
}

struct bad {
	const char *text;
	enum parse_kind kind;
};

static const struct bad bads[] = {
        /* Empty, white space, signs, other bases, fractions. */
        {"", PARSE_INTEGER},
        {"", PARSE_SIZE},
        {"", PARSE_DURATION},
        {"", PARSE_COUNT},
        {" 1", PARSE_INTEGER},
        {"1 ", PARSE_INTEGER},
        {"+1", PARSE_INTEGER},
        {"-1", PARSE_INTEGER},
        {"-1", PARSE_DURATION},
        {"0x10", PARSE_INTEGER},
        {"1.5", PARSE_INTEGER},
        {"1.5s", PARSE_DURATION},
        {"1e3", PARSE_INTEGER},
        /* A unit without digits, or a unit the kind does not have. */
        {"s", PARSE_DURATION},
        {"ms", PARSE_DURATION},
        {"K", PARSE_SIZE},
        {"k", PARSE_COUNT},
        {"5k", PARSE_INTEGER},
        {"5K", PARSE_COUNT},
        {"5T", PARSE_COUNT},
        {"5s", PARSE_SIZE},
        {"5M", PARSE_DURATION},
        {"5S", PARSE_DURATION},
        {"5D", PARSE_DURATION},
        {"5y", PARSE_DURATION},
        {"5w", PARSE_DURATION},
        {"5sec", PARSE_DURATION},
        {"5 s", PARSE_DURATION},
        {"5mss", PARSE_DURATION},
        {"1m1s", PARSE_DURATION},
        {"5B", PARSE_SIZE},
        {"5i", PARSE_SIZE},
        {"5KB2", PARSE_SIZE},
        {"5Kib", PARSE_SIZE},
        {"5KiBB", PARSE_SIZE},
        {"5KK", PARSE_SIZE},
        {"5P", PARSE_SIZE},
        {"soon", PARSE_DURATION},
        {"5 minutes", PARSE_DURATION},
        /* Past 64 bits: the digits alone, or with the unit. */
        {"18446744073709551616", PARSE_INTEGER},
        {"99999999999999999999999", PARSE_INTEGER},
        {"16777216T", PARSE_SIZE},
        {"18446744073709551615K", PARSE_SIZE},
        {"213503982335d", PARSE_DURATION},
        {"18446744073709552G", PARSE_COUNT},
};

Test(parse, junk_empty_and_overflow_are_refused_without_writing)
{
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		uint64_t v = 12345;
		int rc = parse_u64(bads[i].text, bads[i].kind, &v);
		cr_assert_eq(rc, WB_E_INVAL, "\"%s\" (kind %d) was read as %llu", bads[i].text,
		             bads[i].kind, (unsigned long long)v);
		cr_assert_eq(v, 12345, "\"%s\": *out written on failure", bads[i].text);
	}
	uint64_t v = 1;
	cr_assert_eq(parse_u64(NULL, PARSE_INTEGER, &v), WB_E_INVAL);
	cr_assert_eq(parse_u64("1", (enum parse_kind)42, &v), WB_E_INVAL);
	cr_assert_eq(v, 1);
}

Test(parse, bounds_are_inclusive)
{
	uint64_t v = 0;
	cr_assert_eq(parse_u64_in("10ms", PARSE_DURATION, 10, 86400000, &v), 0);
	cr_assert_eq(v, 10);
	cr_assert_eq(parse_u64_in("24h", PARSE_DURATION, 10, 86400000, &v), 0);
	cr_assert_eq(v, 86400000);
	cr_assert_eq(parse_u64_in("1d", PARSE_DURATION, 10, 86400000, &v), 0);
	cr_assert_eq(v, 86400000);
	v = 7;
	cr_assert_eq(parse_u64_in("9ms", PARSE_DURATION, 10, 86400000, &v), WB_E_INVAL);
	cr_assert_eq(parse_u64_in("86400001", PARSE_DURATION, 10, 86400000, &v), WB_E_INVAL);
	cr_assert_eq(parse_u64_in("2d", PARSE_DURATION, 10, 86400000, &v), WB_E_INVAL);
	cr_assert_eq(parse_u64_in("4K", PARSE_SIZE, 4096, 64 * MIB, &v), 0);
	cr_assert_eq(v, 4096);
	v = 7;
	cr_assert_eq(parse_u64_in("4095", PARSE_SIZE, 4096, 64 * MIB, &v), WB_E_INVAL);
	cr_assert_eq(parse_u64_in("65M", PARSE_SIZE, 4096, 64 * MIB, &v), WB_E_INVAL);
	cr_assert_eq(parse_u64_in("0", PARSE_INTEGER, 1, 10, &v), WB_E_INVAL);
	/* Junk stays junk whatever the bounds. */
	cr_assert_eq(parse_u64_in("x", PARSE_INTEGER, 0, UINT64_MAX, &v), WB_E_INVAL);
	cr_assert_eq(v, 7, "*out written on failure");
}

/* The phrase used in messages and help names units that are read, and only
 * those: each unit it names parses, and the same letter in the other case
 * does not (except for sizes, which take either). */
Test(parse, the_unit_phrase_lists_what_is_read)
{
	static const enum parse_kind kinds[] = {PARSE_COUNT, PARSE_SIZE, PARSE_DURATION};
	cr_assert_str_eq(parse_units(PARSE_DURATION), "ms, s, m, h or d");
	cr_assert_str_eq(parse_units(PARSE_INTEGER), "");
	cr_assert_str_eq(parse_units((enum parse_kind)42), "");
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		char phrase[64];
		snprintf(phrase, sizeof(phrase), "%s", parse_units(kinds[k]));
		size_t named = 0;
		for (char *w = strtok(phrase, ", "); w != NULL; w = strtok(NULL, ", ")) {
			if (strcmp(w, "or") == 0)
				continue;
			char text[16];
			uint64_t v;
			snprintf(text, sizeof(text), "3%s", w);
			cr_assert_eq(parse_u64(text, kinds[k], &v), 0, "\"%s\" is in \"%s\"", text,
			             parse_units(kinds[k]));
			cr_assert_gt(v, 0);
			named++;
		}
		cr_assert_geq(named, 3, "\"%s\"", parse_units(kinds[k]));
	}
}

Test(parse, format_reads_back)
{
	static const struct {
		enum parse_kind kind;
		uint64_t v;
		const char *want;
	} cases[] = {
	        {PARSE_DURATION, 0, "0ms"},
	        {PARSE_DURATION, 1500, "1500ms"},
	        {PARSE_DURATION, 30000, "30s"},
	        {PARSE_DURATION, 90000, "90s"},
	        {PARSE_DURATION, 120000, "2m"},
	        {PARSE_DURATION, 7200000, "2h"},
	        {PARSE_DURATION, 86400000, "1d"},
	        {PARSE_DURATION, 7 * 86400000ull, "7d"},
	        {PARSE_SIZE, 0, "0"},
	        {PARSE_SIZE, 1000, "1000"},
	        {PARSE_SIZE, 64 * MIB, "64M"},
	        {PARSE_SIZE, 16 * TIB, "16T"},
	        {PARSE_COUNT, 200000, "200k"},
	        {PARSE_INTEGER, 86400000, "86400000"},
	        {PARSE_INTEGER, UINT64_MAX, "18446744073709551615"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[32];
		size_t n = parse_format(cases[i].kind, cases[i].v, buf, sizeof(buf));
		cr_assert_str_eq(buf, cases[i].want);
		cr_assert_eq(n, strlen(cases[i].want));
		uint64_t back;
		cr_assert_eq(parse_u64(buf, cases[i].kind, &back), 0, "%s", buf);
		cr_assert_eq(back, cases[i].v, "%s", buf);
	}
	/* Like snprintf: the whole length, whatever fits. */
	char small[3];
	cr_assert_eq(parse_format(PARSE_DURATION, 1500, small, sizeof(small)), 6);
	cr_assert_str_eq(small, "15");
}

/* Negative control: a parser that ignored its unit, or its kind, would make
 * these equal; they must not be. */
Test(parse, negative_control_units_change_the_value)
{
	uint64_t a, b, c;
	cr_assert_eq(parse_u64("5", PARSE_DURATION, &a), 0);
	cr_assert_eq(parse_u64("5s", PARSE_DURATION, &b), 0);
	cr_assert_eq(parse_u64("5m", PARSE_DURATION, &c), 0);
	cr_assert_neq(a, b);
	cr_assert_neq(b, c);
	cr_assert_eq(parse_u64("5M", PARSE_SIZE, &a), 0);
	cr_assert_eq(parse_u64("5M", PARSE_COUNT, &b), 0);
	cr_assert_neq(a, b, "binary and decimal M differ");
	cr_assert_eq(parse_u64("5m", PARSE_SIZE, &a), 0);
	cr_assert_eq(parse_u64("5m", PARSE_DURATION, &b), 0);
	cr_assert_neq(a, b, "m is MiB for a size and minutes for a duration");
}
