/* Tests of values, records, index keys and id lists (projection/value.h).
 *
 * Records are checked byte for byte against the format in value.h and held
 * to two properties on hostile input: every truncation is CORRUPT, and any
 * one-byte change either is CORRUPT or decodes to fields that encode back
 * to exactly those bytes (so decode accepts only canonical records). Each
 * decode reads a malloc'd copy of exactly the record's size, so valgrind
 * and ASan see any read past it.
 *
 * Index keys are held to the order property over seeded random values of
 * every type: the memcmp order of two keys has the sign of
 * proj_value_order(), equal values share a key, key classes follow their
 * tags, and values longer than PROJ_KEY_TEXT_MAX keep the order non-strictly.
 * Number order itself is checked against long double arithmetic, which is
 * exact for int64 and double where it has a 64-bit mantissa. */
#include <criterion/criterion.h>

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "value.h"
#include "value_util.h"
#include "wb_error.h"

/* ------------------------------------------------ helpers */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s ? s : 1;
}

static uint64_t rng(void)
{
	return fixture_xorshift(&rng_state);
}

static size_t rnd(size_t n)
{
	return (size_t)(rng() % n);
}

static uint64_t bits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof u);
	return u;
}

/* Identical values: same type and the same bits (so -0.0 != 0.0 here). */
static bool same_value(const struct proj_value *a, const struct proj_value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PROJ_NULL:
		return true;
	case PROJ_BOOL:
		return a->u.b == b->u.b;
	case PROJ_INT:
		return a->u.i == b->u.i;
	case PROJ_DOUBLE:
		return bits(a->u.d) == bits(b->u.d);
	case PROJ_STRING:
	case PROJ_BYTES:
		return a->u.s.len == b->u.s.len &&
		       (a->u.s.len == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0);
	}
	return false;
}

static int sign(int c)
{
	return (c > 0) - (c < 0);
}

/* memcmp order where a proper prefix sorts first, written byte by byte. */
static int ref_bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	for (size_t i = 0; i < alen && i < blen; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static void *dup_exact(const void *p, size_t n)
{
	void *q = malloc(n > 0 ? n : 1);
	cr_assert_not_null(q);
	if (n > 0)
		memcpy(q, p, n);
	return q;
}

/* ------------------------------------------------ buffers and values */

Test(value, buffer_appends_and_grows)
{
	struct proj_buf b = {0};
	uint8_t chunk[100];
	for (size_t i = 0; i < sizeof chunk; i++)
		chunk[i] = (uint8_t)i;
	for (int k = 0; k < 100; k++)
		cr_assert_eq(proj_buf_append(&b, chunk, sizeof chunk), 0);
	cr_assert_eq(b.len, 10000);
	cr_assert_geq(b.cap, b.len);
	for (size_t i = 0; i < b.len; i++)
		cr_assert_eq(b.p[i], (uint8_t)(i % 100));
	cr_assert_eq(proj_buf_reserve(&b, 5000), 0);
	cr_assert_geq(b.cap - b.len, 5000);
	cr_assert_eq(b.len, 10000);
	cr_assert_eq(proj_buf_append(&b, NULL, 0), 0);
	cr_assert_eq(b.len, 10000);
	cr_assert_eq(proj_buf_reserve(&b, SIZE_MAX), WB_E_NOMEM);
	cr_assert_eq(b.len, 10000);
	proj_buf_free(&b);
	cr_assert_null(b.p);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
}

Test(value, protocol_values_convert_both_ways)
{
	uint8_t raw[] = {0, 1, 0xFF};
	Whizbang__V1__Value in[6];
	for (int k = 0; k < 6; k++) {
		Whizbang__V1__Value init = WHIZBANG__V1__VALUE__INIT;
		in[k] = init;
	}
	in[0].kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
	in[0].string_value = "héllo";
	in[1].kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	in[1].int_value = INT64_MIN;
	in[2].kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
	in[2].double_value = -INFINITY;
	in[3].kind_case = WHIZBANG__V1__VALUE__KIND_BOOL_VALUE;
	in[3].bool_value = 1;
	in[4].kind_case = WHIZBANG__V1__VALUE__KIND_BYTES_VALUE;
	in[4].bytes_value.data = raw;
	in[4].bytes_value.len = sizeof raw;
	in[5].kind_case = WHIZBANG__V1__VALUE__KIND_NULL_VALUE;
	in[5].null_value = 0; /* any value: null */

	const struct proj_value want[6] = {
	        v_str("héllo"),
	        v_int(INT64_MIN),
	        v_dbl(-INFINITY),
	        v_bool(true),
	        v_text(PROJ_BYTES, raw, sizeof raw),
	        v_null(),
	};
	for (int k = 0; k < 6; k++) {
		struct proj_value v;
		cr_assert_eq(proj_value_from_pb(&in[k], &v), 0, "value %d", k);
		cr_assert(same_value(&v, &want[k]), "value %d", k);
		Whizbang__V1__Value back = WHIZBANG__V1__VALUE__INIT;
		proj_value_to_pb(&v, &back);
		cr_assert_eq(back.kind_case, in[k].kind_case, "value %d", k);
		struct proj_value again;
		cr_assert_eq(proj_value_from_pb(&back, &again), 0);
		cr_assert(same_value(&again, &want[k]), "value %d after a round trip", k);
	}
	/* The view points into the message. */
	struct proj_value v;
	cr_assert_eq(proj_value_from_pb(&in[0], &v), 0);
	cr_assert_eq((const char *)v.u.s.p, in[0].string_value);
}

Test(value, values_without_a_kind_and_nan_are_refused)
{
	Whizbang__V1__Value v = WHIZBANG__V1__VALUE__INIT;
	struct proj_value out;
	cr_assert_eq(proj_value_from_pb(&v, &out), WB_BAD_REQUEST);
	cr_assert_eq(proj_value_from_pb(NULL, &out), WB_BAD_REQUEST);
	v.kind_case = WHIZBANG__V1__VALUE__KIND_DOUBLE_VALUE;
	v.double_value = NAN;
	cr_assert_eq(proj_value_from_pb(&v, &out), WB_BAD_REQUEST);
	v.double_value = -NAN;
	cr_assert_eq(proj_value_from_pb(&v, &out), WB_BAD_REQUEST);
	v.double_value = INFINITY;
	cr_assert_eq(proj_value_from_pb(&v, &out), 0);
	cr_assert_eq(out.type, PROJ_DOUBLE);
}

/* Expected: 2 = not ordered, else the sign of the order; eq = equal. */
struct order_case {
	struct proj_value a, b;
	int cmp;
	bool eq;
};

#define NOT_ORDERED 2

Test(value, equality_and_order_are_exact_across_int_and_double)
{
	const double two53 = 9007199254740992.0, two63 = 9223372036854775808.0;
	const struct order_case cases[] = {
	        {v_int(100), v_dbl(100.0), 0, true},
	        {v_int(100), v_dbl(100.5), -1, false},
	        {v_int(-100), v_dbl(-100.5), 1, false},
	        {v_int(-100), v_dbl(-99.5), -1, false},
	        {v_int(0), v_dbl(-0.0), 0, true},
	        {v_dbl(0.0), v_dbl(-0.0), 0, true},
	        {v_int(0), v_dbl(-4.9e-324), 1, false},
	        {v_int(0), v_dbl(4.9e-324), -1, false},
	        /* 2^53 + 1 is no double: converting it would make these equal */
	        {v_int(9007199254740993), v_dbl(two53), 1, false},
	        {v_int(9007199254740993), v_dbl(two53 + 2), -1, false},
	        {v_int(-9007199254740993), v_dbl(-two53), -1, false},
	        {v_int(9007199254740992), v_dbl(two53), 0, true},
	        /* INT64_MAX converts to 2^63, which is above it */
	        {v_int(INT64_MAX), v_dbl(two63), -1, false},
	        {v_int(INT64_MAX), v_dbl(nextafter(two63, 0)), 1, false},
	        {v_int(INT64_MAX - 1023), v_dbl(nextafter(two63, 0)), 0, true},
	        {v_int(INT64_MIN), v_dbl(-two63), 0, true},
	        {v_int(INT64_MIN), v_dbl(nextafter(-two63, -INFINITY)), 1, false},
	        {v_int(INT64_MIN + 1), v_dbl(-two63), 1, false},
	        {v_int(INT64_MAX), v_dbl(INFINITY), -1, false},
	        {v_int(INT64_MIN), v_dbl(-INFINITY), 1, false},
	        {v_int(INT64_MIN), v_int(INT64_MAX), -1, false},
	        {v_dbl(-INFINITY), v_dbl(INFINITY), -1, false},
	        {v_dbl(INFINITY), v_dbl(INFINITY), 0, true},
	        {v_dbl(DBL_MAX), v_dbl(INFINITY), -1, false},
	        {v_str("abc"), v_str("abd"), -1, false},
	        {v_str("ab"), v_str("abc"), -1, false},
	        {v_str(""), v_str(""), 0, true},
	        {v_str("b"), v_str("abc"), 1, false},
	        {v_str("\xC3\xA9"), v_str("z"), 1, false}, /* unsigned bytes */
	        {v_text(PROJ_BYTES, "a\0", 2), v_text(PROJ_BYTES, "a", 1), 1, false},
	        {v_text(PROJ_BYTES, "a\0", 2), v_text(PROJ_BYTES, "a\x01", 2), -1, false},
	        {v_bool(false), v_bool(true), -1, false},
	        {v_bool(true), v_bool(true), 0, true},
	        /* cross-type pairs are neither equal nor ordered */
	        {v_str("abc"), v_text(PROJ_BYTES, "abc", 3), NOT_ORDERED, false},
	        {v_str("1"), v_int(1), NOT_ORDERED, false},
	        {v_bool(true), v_int(1), NOT_ORDERED, false},
	        {v_bool(false), v_dbl(0), NOT_ORDERED, false},
	        {v_null(), v_int(0), NOT_ORDERED, false},
	        {v_null(), v_str(""), NOT_ORDERED, false},
	        /* null equals null but is not ordered */
	        {v_null(), v_null(), NOT_ORDERED, true},
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		const struct order_case *c = &cases[k];
		for (int swap = 0; swap < 2; swap++) {
			const struct proj_value *a = swap ? &c->b : &c->a;
			const struct proj_value *b = swap ? &c->a : &c->b;
			int want = c->cmp == NOT_ORDERED ? NOT_ORDERED : swap ? -c->cmp : c->cmp;
			cr_assert_eq(proj_value_equal(a, b), c->eq, "case %zu swap %d: equal", k,
			             swap);
			int cmp = 42;
			bool ordered = proj_value_order(a, b, &cmp);
			if (want == NOT_ORDERED) {
				cr_assert(!ordered, "case %zu swap %d: ordered", k, swap);
			} else {
				cr_assert(ordered, "case %zu swap %d: not ordered", k, swap);
				cr_assert_eq(sign(cmp), want, "case %zu swap %d: cmp %d", k, swap,
				             cmp);
			}
		}
	}
}

/* ------------------------------------------------ random values */

static const int64_t special_ints[] = {
        0,
        1,
        -1,
        7,
        100,
        -100,
        INT64_MAX,
        INT64_MAX - 1,
        INT64_MAX - 1023,
        INT64_MAX - 1024,
        INT64_MAX - 1025,
        INT64_MIN,
        INT64_MIN + 1,
        INT64_MIN + 1024,
        INT64_MIN + 1025,
        (INT64_C(1) << 53) - 1,
        INT64_C(1) << 53,
        (INT64_C(1) << 53) + 1,
        (INT64_C(1) << 53) + 2,
        (INT64_C(1) << 53) + 3,
        -(INT64_C(1) << 53) - 1,
        -(INT64_C(1) << 53),
        -(INT64_C(1) << 53) + 1,
        INT64_C(1) << 62,
        (INT64_C(1) << 62) + 511,
        (INT64_C(1) << 62) + 512,
        -(INT64_C(1) << 62) - 513,
};

static double special_double(void)
{
	static const double d[] = {
	        0.0,
	        -0.0,
	        1.0,
	        -1.0,
	        0.5,
	        -0.5,
	        100.0,
	        100.25,
	        -100.0,
	        2.5,
	        INFINITY,
	        -INFINITY,
	        DBL_MAX,
	        -DBL_MAX,
	        DBL_MIN,
	        -DBL_MIN,
	        4.9e-324,
	        -4.9e-324,
	        9007199254740992.0,
	        9007199254740994.0,
	        -9007199254740992.0,
	        9007199254740991.5,
	        9223372036854775808.0,
	        -9223372036854775808.0,
	        4611686018427387904.0,
	        1e300,
	        -1e-300,
	};
	switch (rnd(6)) {
	case 0:
		return nextafter(9223372036854775808.0, rnd(2) ? 0.0 : INFINITY);
	case 1:
		return nextafter(-9223372036854775808.0, rnd(2) ? 0.0 : -INFINITY);
	case 2: {
		/* a random bit pattern that is not NaN */
		double x;
		do {
			uint64_t u = rng();
			memcpy(&x, &u, sizeof x);
		} while (isnan(x));
		return x;
	}
	case 3:
		/* an int-valued double, often equal to a pool int */
		return (double)special_ints[rnd(sizeof special_ints / sizeof special_ints[0])];
	case 4:
		return (double)(int64_t)(rng() % 2001 - 1000) / 8.0;
	default:
		return d[rnd(sizeof d / sizeof d[0])];
	}
}

static int64_t random_int(void)
{
	switch (rnd(4)) {
	case 0:
		return (int64_t)rng();
	case 1:
		return (int64_t)(rng() % 2001) - 1000;
	case 2: {
		int64_t base = special_ints[rnd(sizeof special_ints / sizeof special_ints[0])];
		int64_t delta = (int64_t)(rng() % 5) - 2;
		if ((delta > 0 && base > INT64_MAX - delta) ||
		    (delta < 0 && base < INT64_MIN - delta))
			return base;
		return base + delta;
	}
	default:
		return special_ints[rnd(sizeof special_ints / sizeof special_ints[0])];
	}
}

/* Text values live in a pool of slots so that values can be kept. */
#define SLOTS 4096
#define SLOT_SIZE 260
static uint8_t slot[SLOTS][SLOT_SIZE];

static struct proj_value random_text(enum proj_vtype t, size_t k)
{
	static const uint8_t str_alpha[] = {'a', 'b', 0x01, 0xFF, 0x7F};
	static const uint8_t bytes_alpha[] = {0x00, 0x01, 0xFF, 'a', 0x00};
	const uint8_t *alpha = t == PROJ_STRING ? str_alpha : bytes_alpha;
	size_t len;
	uint8_t *p = slot[k % SLOTS];
	if (rnd(4) == 0) {
		/* near the key's cut-off, sharing a long prefix */
		len = PROJ_KEY_TEXT_MAX - 3 + rnd(7);
		memset(p, 'a', len);
		for (size_t i = PROJ_KEY_TEXT_MAX - 4; i < len; i++)
			p[i] = alpha[rnd(5)];
	} else {
		len = rnd(6);
		for (size_t i = 0; i < len; i++)
			p[i] = alpha[rnd(3)];
	}
	return v_text(t, p, len);
}

static struct proj_value random_value(size_t k)
{
	switch (rnd(9)) {
	case 0:
		return v_null();
	case 1:
		return v_bool(rnd(2) == 1);
	case 2:
	case 3:
		return v_int(random_int());
	case 4:
	case 5:
		return v_dbl(special_double());
	case 6:
	case 7:
		return random_text(PROJ_STRING, k);
	default:
		return random_text(PROJ_BYTES, k);
	}
}

/* A text whose encoding (each 0x00 escaped into two bytes) is longer than
 * PROJ_KEY_TEXT_MAX: its key is cut. */
static bool long_text(const struct proj_value *v)
{
	if (v->type != PROJ_STRING && v->type != PROJ_BYTES)
		return false;
	size_t enc = v->u.s.len;
	for (size_t i = 0; i < v->u.s.len; i++)
		enc += v->u.s.p[i] == 0;
	return enc > PROJ_KEY_TEXT_MAX;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return sign(ref_bytes_cmp(a, alen, b, blen));
}

/* ------------------------------------------------ index keys */

static size_t key_of(struct proj_value v, uint8_t *out)
{
	size_t n = proj_key_encode(&v, out);
	cr_assert_gt(n, 0);
	cr_assert_leq(n, PROJ_KEY_MAX);
	return n;
}

Test(value, keys_have_the_documented_bytes)
{
	uint8_t k[PROJ_KEY_MAX], k2[PROJ_KEY_MAX];
	size_t n;

	n = key_of(v_null(), k);
	cr_assert_eq(n, 1);
	cr_assert_eq(k[0], PROJ_KEY_NULL);

	n = key_of(v_bool(true), k);
	cr_assert_eq(n, 2);
	cr_assert_eq(k[0], PROJ_KEY_BOOL);
	cr_assert_eq(k[1], 1);

	/* 1.0 is 0x3FF0000000000000; the sign bit flips for D >= 0 */
	n = key_of(v_int(1), k);
	const uint8_t one[] = {PROJ_KEY_NUMBER, 0xBF, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0};
	cr_assert_eq(n, sizeof one);
	cr_assert_arr_eq(k, one, n);
	/* every bit flips for D < 0: -1.0 is 0xBFF0000000000000 */
	n = key_of(v_dbl(-1.0), k);
	const uint8_t minus_one[] = {
	        PROJ_KEY_NUMBER, 0x40, 0x0F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0};
	cr_assert_arr_eq(k, minus_one, n);

	/* int and double of one value share a key; -0.0 is +0.0 */
	cr_assert_eq(key_of(v_int(100), k), key_of(v_dbl(100.0), k2));
	cr_assert_arr_eq(k, k2, 11);
	key_of(v_int(0), k);
	key_of(v_dbl(-0.0), k2);
	cr_assert_arr_eq(k, k2, 11);
	const uint8_t zero[] = {PROJ_KEY_NUMBER, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	cr_assert_arr_eq(k, zero, 11);

	/* INT64_MAX: D = 2^63 - 1024 (0x43DFFFFFFFFFFFFF), remainder 1023 */
	n = key_of(v_int(INT64_MAX), k);
	const uint8_t max[] = {
	        PROJ_KEY_NUMBER, 0xC3, 0xDF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0xFF};
	cr_assert_arr_eq(k, max, n);
	/* 2^53 + 1: D = 2^53, remainder 1 */
	n = key_of(v_int(9007199254740993), k);
	key_of(v_dbl(9007199254740992.0), k2);
	cr_assert_arr_eq(k, k2, 9);
	cr_assert_eq(k[9], 0);
	cr_assert_eq(k[10], 1);
	cr_assert_eq(k2[10], 0);

	/* text: 0x00 is escaped as 0x00 0xFF, then 0x00 0x01 */
	n = key_of(v_text(PROJ_BYTES, "a\0b", 3), k);
	const uint8_t text[] = {PROJ_KEY_BYTES, 'a', 0, 0xFF, 'b', 0, 1};
	cr_assert_eq(n, sizeof text);
	cr_assert_arr_eq(k, text, n);
	n = key_of(v_str(""), k);
	const uint8_t empty[] = {PROJ_KEY_STRING, 0, 1};
	cr_assert_eq(n, sizeof empty);
	cr_assert_arr_eq(k, empty, n);

	/* at most PROJ_KEY_TEXT_MAX encoded bytes: of all zeros, half as
	 * many fit, escaped */
	static uint8_t zeros[PROJ_KEY_TEXT_MAX + 50];
	n = key_of(v_text(PROJ_BYTES, zeros, sizeof zeros), k);
	cr_assert_eq(n, PROJ_KEY_MAX);
	cr_assert_eq(key_of(v_text(PROJ_BYTES, zeros, PROJ_KEY_TEXT_MAX / 2), k2), n);
	cr_assert_arr_eq(k, k2, n);
	cr_assert_eq(k[n - 2], 0);
	cr_assert_eq(k[n - 1], 1);

	struct proj_value tags[] = {v_null(), v_bool(false), v_int(1),
	                            v_dbl(1), v_str("x"),    v_text(PROJ_BYTES, "x", 1)};
	const uint8_t want_tags[] = {PROJ_KEY_NULL,   PROJ_KEY_BOOL,   PROJ_KEY_NUMBER,
	                             PROJ_KEY_NUMBER, PROJ_KEY_STRING, PROJ_KEY_BYTES};
	for (size_t i = 0; i < 6; i++) {
		cr_assert_eq(proj_key_tag(&tags[i]), want_tags[i]);
		key_of(tags[i], k);
		cr_assert_eq(k[0], want_tags[i]);
	}
}

Test(value, key_order_is_value_order_for_random_pairs)
{
	enum { N = 4000, PAIRS = 40000 };
	static struct proj_value vals[N];
	static uint8_t keys[N][PROJ_KEY_MAX];
	static size_t lens[N];
	rng_seed(20240611);
	for (size_t i = 0; i < N; i++) {
		vals[i] = random_value(i);
		lens[i] = key_of(vals[i], keys[i]);
	}
	size_t ordered = 0, equal = 0, cross = 0, truncated = 0;
	for (size_t p = 0; p < PAIRS + N; p++) {
		/* every value once against its neighbour, then random pairs */
		size_t i = p < N ? p : rnd(N), j = p < N ? (p + 1) % N : rnd(N);
		const struct proj_value *a = &vals[i], *b = &vals[j];
		int kc = key_cmp(keys[i], lens[i], keys[j], lens[j]);
		int c;
		if (proj_value_equal(a, b)) {
			equal++;
			cr_assert_eq(kc, 0, "equal values %zu and %zu have different keys", i, j);
		}
		if (proj_value_order(a, b, &c)) {
			ordered++;
			if (long_text(a) || long_text(b)) {
				truncated++;
				cr_assert(c >= 0 || kc <= 0, "pair %zu %zu: value < but key >", i,
				          j);
				cr_assert(c <= 0 || kc >= 0, "pair %zu %zu: value > but key <", i,
				          j);
				if (c == 0)
					cr_assert_eq(kc, 0);
			} else {
				cr_assert_eq(kc, sign(c),
				             "pair %zu %zu: key order %d, value order %d", i, j, kc,
				             c);
			}
		} else if (proj_key_tag(a) != proj_key_tag(b)) {
			cross++;
			cr_assert_eq(kc, sign((int)proj_key_tag(a) - (int)proj_key_tag(b)),
			             "pair %zu %zu across key classes", i, j);
		} else {
			cr_assert(a->type == PROJ_NULL && b->type == PROJ_NULL);
			cr_assert_eq(kc, 0);
		}
		/* Equal keys and no truncation: equal values. */
		if (kc == 0 && !long_text(a) && !long_text(b))
			cr_assert(proj_value_equal(a, b), "pair %zu %zu share a key", i, j);
	}
	/* The generator must exercise every branch. */
	cr_assert_gt(ordered, 5000);
	cr_assert_gt(equal, 500);
	cr_assert_gt(cross, 5000);
	cr_assert_gt(truncated, 100);
}

/* An exact comparison of an int64 with a double, written independently of
 * value.c: the double is m * 2^e with an integer m of at most 53 bits, and
 * both sides are compared as 128-bit integers. */
__extension__ typedef __int128 i128;

static int ref_cmp_int_double(int64_t i, double d)
{
	if (isinf(d))
		return d > 0 ? -1 : 1;
	if (d == 0)
		return sign(i > 0 ? 1 : i < 0 ? -1 : 0);
	int e;
	double fr = frexp(d, &e); /* d = fr * 2^e, 0.5 <= |fr| < 1 */
	int64_t m = (int64_t)ldexp(fr, 53);
	e -= 53; /* d = m * 2^e exactly */
	if (e >= 0) {
		if (e > 62) /* |d| >= 2^114: beyond every int64 */
			return d > 0 ? -1 : 1;
		i128 dv = (i128)m * ((i128)1 << e);
		return (i128)i < dv ? -1 : (i128)i > dv ? 1 : 0;
	}
	if (e < -53) /* 0 < |d| < 1 */
		return i != 0 ? sign(i > 0 ? 1 : -1) : (d > 0 ? -1 : 1);
	i128 iv = (i128)i * ((i128)1 << -e);
	return iv < (i128)m ? -1 : iv > (i128)m ? 1 : 0;
}

static int ref_cmp_number(const struct proj_value *a, const struct proj_value *b)
{
	if (a->type == PROJ_INT && b->type == PROJ_INT)
		return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
	if (a->type == PROJ_DOUBLE && b->type == PROJ_DOUBLE)
		return a->u.d < b->u.d ? -1 : a->u.d > b->u.d;
	if (a->type == PROJ_INT)
		return ref_cmp_int_double(a->u.i, b->u.d);
	return -ref_cmp_int_double(b->u.i, a->u.d);
}

Test(value, number_order_matches_exact_arithmetic)
{
	rng_seed(77);
	size_t equal = 0, near = 0;
	for (int k = 0; k < 200000; k++) {
		struct proj_value a = rnd(2) ? v_int(random_int()) : v_dbl(special_double());
		struct proj_value b = rnd(2) ? v_int(random_int()) : v_dbl(special_double());
		int want = ref_cmp_number(&a, &b);
		int c;
		cr_assert(proj_value_order(&a, &b, &c));
		cr_assert_eq(sign(c), want, "iteration %d", k);
		cr_assert_eq(proj_value_equal(&a, &b), want == 0, "iteration %d", k);
		equal += want == 0;
		/* a pair that a conversion to double would call equal */
		if (a.type != b.type && want != 0) {
			double x = a.type == PROJ_INT ? (double)a.u.i : a.u.d;
			double y = b.type == PROJ_INT ? (double)b.u.i : b.u.d;
			near += x == y;
		}
	}
	cr_assert_gt(equal, 1000);
	cr_assert_gt(near, 100);
}

Test(value, key_len_finds_the_end_of_every_key)
{
	uint8_t k[PROJ_KEY_MAX + 300];
	rng_seed(99);
	for (size_t i = 0; i < 3000; i++) {
		struct proj_value v = random_value(i);
		size_t n = key_of(v, k);
		cr_assert_eq(proj_key_len(k, n), n);
		/* an index entry: the value key, then the entity id */
		size_t id_len = 1 + rnd(255);
		for (size_t j = 0; j < id_len; j++)
			k[n + j] = (uint8_t)(rnd(3) == 0 ? rnd(3) : rng());
		cr_assert_eq(proj_key_len(k, n + id_len), n, "value %zu", i);
		/* no proper prefix is a key */
		for (size_t cut = 0; cut < n; cut++) {
			uint8_t *c = dup_exact(k, cut);
			cr_assert_eq(proj_key_len(c, cut), 0, "value %zu cut at %zu", i, cut);
			free(c);
		}
	}
}

Test(value, malformed_keys_have_no_length)
{
	const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
	        {"", 0},
	        {"\x00", 1},
	        {"\x11", 1},
	        {"\x60\x00\x01", 3},
	        {"\x20\x02", 2},
	        {"\x30\x80\x00\x00\x00\x00\x00\x00\x00\x08\x00", 11}, /* remainder 2048 */
	        {"\x40\x61\x00\x02", 4},                              /* 0x00 then 0x02 */
	        {"\x40\x61\x00", 3},
	        {"\x50\x00\xFF", 3},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint8_t *c = dup_exact(bad[i].bytes, bad[i].len);
		cr_assert_eq(proj_key_len(c, bad[i].len), 0, "case %zu", i);
		free(c);
	}
	/* A text key longer than any proj_key_encode() writes. */
	uint8_t k[PROJ_KEY_TEXT_MAX + 4];
	k[0] = PROJ_KEY_STRING;
	memset(k + 1, 'a', PROJ_KEY_TEXT_MAX + 1);
	k[PROJ_KEY_TEXT_MAX + 2] = 0;
	k[PROJ_KEY_TEXT_MAX + 3] = 1;
	cr_assert_eq(proj_key_len(k, sizeof k), 0);
	/* One byte shorter is what a long value encodes to. */
	k[PROJ_KEY_TEXT_MAX + 1] = 0;
	k[PROJ_KEY_TEXT_MAX + 2] = 1;
	cr_assert_eq(proj_key_len(k, sizeof k - 1), sizeof k - 1);
}

/* ------------------------------------------------ records */

/* Encodes, decodes and checks every field comes back identical and sorted. */
static void round_trip(struct proj_field *in, size_t n, uint64_t version)
{
	struct proj_field copy[64];
	cr_assert_leq(n, 64);
	memcpy(copy, in, n * sizeof *in);
	struct proj_buf b = {0};
	cr_assert_eq(proj_record_encode(version, version + 1, version + 2, copy, n, &b), 0);
	uint8_t *p = dup_exact(b.p, b.len);
	struct proj_record r;
	cr_assert_eq(proj_record_decode(p, b.len, &r), 0);
	cr_assert_eq(r.version, version);
	cr_assert_eq(r.created_seq, version + 1);
	cr_assert_eq(r.updated_seq, version + 2);
	cr_assert_eq(r.nfields, n);
	size_t off = 0, count = 0;
	struct proj_field f, prev = {0};
	while (proj_record_next(&r, &off, &f)) {
		if (count > 0)
			cr_assert_lt(ref_bytes_cmp((const uint8_t *)prev.name, prev.name_len,
			                           (const uint8_t *)f.name, f.name_len),
			             0, "fields out of order");
		/* it is one of the inputs, with its value */
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			if (in[i].name_len == f.name_len &&
			    memcmp(in[i].name, f.name, f.name_len) == 0) {
				found = true;
				cr_assert(same_value(&in[i].v, &f.v), "field %.*s", (int)f.name_len,
				          f.name);
			}
		cr_assert(found);
		struct proj_value v;
		cr_assert(proj_record_find(&r, f.name, f.name_len, &v));
		cr_assert(same_value(&v, &f.v));
		prev = f;
		count++;
	}
	cr_assert_eq(count, n);
	free(p);
	proj_buf_free(&b);
}

Test(value, records_round_trip_every_type)
{
	static const uint8_t raw[] = {0x00, 0xFF, 0x00, 0x01};
	struct proj_field f[] = {
	        fld("status", v_str("Pending")),
	        fld("total", v_int(-120)),
	        fld("price", v_dbl(19.99)),
	        fld("paid", v_bool(false)),
	        fld("blob", v_text(PROJ_BYTES, raw, sizeof raw)),
	        fld("note", v_null()),
	        fld("empty", v_str("")),
	        fld("nothing", v_text(PROJ_BYTES, NULL, 0)),
	        fld("min", v_int(INT64_MIN)),
	        fld("max", v_int(INT64_MAX)),
	        fld("negzero", v_dbl(-0.0)),
	        fld("inf", v_dbl(INFINITY)),
	        fld("ninf", v_dbl(-INFINITY)),
	        fld("tiny", v_dbl(4.9e-324)),
	        fld("yes", v_bool(true)),
	        fld("a", v_int(0)),
	        fld("ab", v_int(1)), /* a prefix of another name sorts first */
	        fld("\xFF", v_int(2)),
	};
	size_t n = sizeof f / sizeof f[0];
	round_trip(f, n, 1);
	round_trip(f, 0, UINT64_MAX - 2);
	round_trip(f + 3, 1, 7);
	/* Every subset size, shuffled. */
	rng_seed(5);
	for (int k = 0; k < 200; k++) {
		for (size_t i = n - 1; i > 0; i--) {
			size_t j = rnd(i + 1);
			struct proj_field t = f[i];
			f[i] = f[j];
			f[j] = t;
		}
		round_trip(f, rnd(n + 1), (uint64_t)k);
	}
}

Test(value, records_have_the_documented_bytes)
{
	struct proj_field f[] = {
	        fld("s", v_str("hi")), fld("b", v_bool(true)), fld("i", v_int(-2)),
	        fld("n", v_null()),    fld("d", v_dbl(1.0)),
	};
	struct proj_buf b = {0};
	cr_assert_eq(proj_record_encode(0x0102, 0x0304, 0x0506, f, 5, &b), 0);
	const uint8_t want[] = {
	        1, 0,   0,           0,    0,    0,    0,    0, /* format, reserved */
	        0, 0,   0,           0,    0,    0,    1,    2, /* version */
	        0, 0,   0,           0,    0,    0,    3,    4, /* created */
	        0, 0,   0,           0,    0,    0,    5,    6, /* updated */
	        0, 0,   0,           5,                         /* field count */
	        1, 'b', PROJ_BOOL,   1,                         /* sorted by name */
	        1, 'd', PROJ_DOUBLE, 0x3F, 0xF0, 0,    0,    0,    0,    0,    0, /* 1.0 */
	        1, 'i', PROJ_INT,    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
	        1, 'n', PROJ_NULL, /* no payload */
	        1, 's', PROJ_STRING, 0,    0,    0,    2,    'h',  'i',
	};
	cr_assert_eq(b.len, sizeof want);
	cr_assert_arr_eq(b.p, want, sizeof want);
	cr_assert_eq(PROJ_RECORD_HEADER, 36);

	/* Appends: a second record follows the first. */
	cr_assert_eq(proj_record_encode(1, 1, 1, f, 0, &b), 0);
	cr_assert_eq(b.len, sizeof want + PROJ_RECORD_HEADER);
	proj_buf_free(&b);
}

Test(value, same_fields_in_any_order_encode_to_the_same_bytes)
{
	struct proj_field f[] = {
	        fld("c", v_int(3)),  fld("a", v_str("x")),   fld("b", v_dbl(2.5)),
	        fld("aa", v_null()), fld("A", v_bool(true)),
	};
	struct proj_buf first = {0};
	cr_assert_eq(proj_record_encode(9, 8, 7, f, 5, &first), 0);
	rng_seed(3);
	for (int k = 0; k < 50; k++) {
		for (size_t i = 4; i > 0; i--) {
			size_t j = rnd(i + 1);
			struct proj_field t = f[i];
			f[i] = f[j];
			f[j] = t;
		}
		struct proj_buf b = {0};
		cr_assert_eq(proj_record_encode(9, 8, 7, f, 5, &b), 0);
		cr_assert_eq(b.len, first.len);
		cr_assert_arr_eq(b.p, first.p, b.len);
		proj_buf_free(&b);
	}
	proj_buf_free(&first);
}

static int encode_one(struct proj_field *f, size_t n, struct proj_buf *b)
{
	size_t before = b->len;
	int rc = proj_record_encode(1, 1, 1, f, n, b);
	if (rc != 0)
		cr_assert_eq(b->len, before, "a refused record left bytes behind");
	return rc;
}

Test(value, bad_records_are_refused_before_encoding)
{
	struct proj_buf b = {0};
	cr_assert_eq(proj_buf_append(&b, "xyz", 3), 0);
	static char long_name[PROJ_NAME_MAX + 2];
	memset(long_name, 'n', PROJ_NAME_MAX + 1);

	struct proj_field dup[] = {fld("a", v_int(1)), fld("b", v_int(2)), fld("a", v_int(1))};
	cr_assert_eq(encode_one(dup, 3, &b), WB_E_INVAL);
	struct proj_field empty[] = {fld("", v_int(1))};
	cr_assert_eq(encode_one(empty, 1, &b), WB_E_INVAL);
	struct proj_field too_long[] = {fld(long_name, v_int(1))};
	cr_assert_eq(encode_one(too_long, 1, &b), WB_E_INVAL);
	too_long[0].name_len = PROJ_NAME_MAX;
	cr_assert_eq(encode_one(too_long, 1, &b), 0);
	struct proj_field nan[] = {fld("a", v_dbl(NAN))};
	cr_assert_eq(encode_one(nan, 1, &b), WB_E_INVAL);
	struct proj_field bad_type[] = {fld("a", v_int(1))};
	bad_type[0].v.type = (enum proj_vtype)7;
	cr_assert_eq(encode_one(bad_type, 1, &b), WB_E_INVAL);

	/* PROJ_MAX_FIELDS fields, then one more. */
	static struct proj_field many[PROJ_MAX_FIELDS + 1];
	static char names[PROJ_MAX_FIELDS + 1][8];
	for (size_t i = 0; i <= PROJ_MAX_FIELDS; i++) {
		snprintf(names[i], sizeof names[i], "f%zu", i);
		many[i] = fld(names[i], v_int((int64_t)i));
	}
	size_t at = b.len;
	cr_assert_eq(encode_one(many, PROJ_MAX_FIELDS, &b), 0);
	struct proj_record r;
	cr_assert_eq(proj_record_decode(b.p + at, b.len - at, &r), 0);
	cr_assert_eq(r.nfields, PROJ_MAX_FIELDS);
	cr_assert_eq(encode_one(many, PROJ_MAX_FIELDS + 1, &b), WB_E_INVAL);
	/* A stored record with one field more than the limit is corrupt. */
	struct proj_buf more = {0};
	cr_assert_eq(proj_buf_append(&more, b.p + at, b.len - at), 0);
	cr_assert_eq(proj_buf_append(&more, "\x02zz\x01", 4), 0); /* zz: null, sorts last */
	more.p[34] = (uint8_t)((PROJ_MAX_FIELDS + 1) >> 8);
	more.p[35] = (uint8_t)(PROJ_MAX_FIELDS + 1);
	cr_assert_eq(proj_record_decode(more.p, more.len, &r), WB_E_CORRUPT);
	more.p[34] = (uint8_t)(PROJ_MAX_FIELDS >> 8);
	more.p[35] = (uint8_t)PROJ_MAX_FIELDS;
	more.len -= 4;
	cr_assert_eq(proj_record_decode(more.p, more.len, &r), 0);
	proj_buf_free(&more);

	/* The largest record is PROJ_RECORD_MAX bytes. */
	size_t big_len = PROJ_RECORD_MAX - PROJ_RECORD_HEADER - 1 - 1 - 1 - 4;
	uint8_t *big = calloc(1, big_len + 1);
	cr_assert_not_null(big);
	struct proj_field fits[] = {fld("x", v_text(PROJ_BYTES, big, big_len))};
	at = b.len;
	cr_assert_eq(encode_one(fits, 1, &b), 0);
	cr_assert_eq(b.len - at, PROJ_RECORD_MAX);
	struct proj_field over[] = {fld("x", v_text(PROJ_BYTES, big, big_len + 1))};
	cr_assert_eq(encode_one(over, 1, &b), WB_RESOURCE_EXHAUSTED);
	struct proj_field huge[] = {fld("x", v_text(PROJ_BYTES, big, SIZE_MAX))};
	cr_assert_eq(encode_one(huge, 1, &b), WB_RESOURCE_EXHAUSTED);
	free(big);
	cr_assert_arr_eq(b.p, "xyz", 3);
	proj_buf_free(&b);
}

/* A record with every type, for the corruption tests. */
static struct proj_buf sample_record(void)
{
	static const uint8_t raw[] = {0x00, 0x01};
	struct proj_field f[] = {
	        fld("b", v_bool(true)), fld("bytes", v_text(PROJ_BYTES, raw, 2)),
	        fld("d", v_dbl(-2.5)),  fld("i", v_int(42)),
	        fld("n", v_null()),     fld("s", v_str("hello")),
	        fld("z", v_str("")),
	};
	struct proj_buf b = {0};
	cr_assert_eq(proj_record_encode(3, 2, 1, f, 7, &b), 0);
	return b;
}

static int decode_copy(const uint8_t *p, size_t len, struct proj_record *r)
{
	uint8_t *c = dup_exact(p, len);
	int rc = proj_record_decode(c, len, r);
	if (rc == 0) {
		/* Accepted bytes are canonical: their fields encode back to them. */
		struct proj_field f[PROJ_MAX_FIELDS];
		size_t off = 0, n = 0;
		while (n < PROJ_MAX_FIELDS && proj_record_next(r, &off, &f[n]))
			n++;
		cr_assert_eq(n, r->nfields);
		struct proj_buf again = {0};
		cr_assert_eq(proj_record_encode(r->version, r->created_seq, r->updated_seq, f, n,
		                                &again),
		             0);
		cr_assert_eq(again.len, len);
		cr_assert_arr_eq(again.p, c, len, "decode accepted bytes encode would not write");
		proj_buf_free(&again);
	}
	free(c);
	return rc;
}

Test(value, truncated_records_are_corrupt)
{
	struct proj_buf b = sample_record();
	struct proj_record r;
	cr_assert_eq(decode_copy(b.p, b.len, &r), 0);
	for (size_t cut = 0; cut < b.len; cut++)
		cr_assert_eq(decode_copy(b.p, cut, &r), WB_E_CORRUPT, "cut at %zu", cut);
	/* and a byte too many */
	cr_assert_eq(proj_buf_append(&b, "", 1), 0);
	cr_assert_eq(decode_copy(b.p, b.len, &r), WB_E_CORRUPT);
	proj_buf_free(&b);
}

Test(value, changed_bytes_are_corrupt_or_canonical)
{
	struct proj_buf b = sample_record();
	static const uint8_t values[] = {0x00, 0x01, 0x02, 0x06, 0x07, 0x7F, 0x80, 0xFF};
	size_t corrupt = 0, accepted = 0;
	for (size_t off = 0; off < b.len; off++) {
		for (size_t k = 0; k < sizeof values + 2; k++) {
			uint8_t *c = dup_exact(b.p, b.len);
			if (k < sizeof values)
				c[off] = values[k];
			else
				c[off] ^= k == sizeof values ? 0x01 : 0x80;
			struct proj_record r;
			int rc = decode_copy(c, b.len, &r);
			cr_assert(rc == 0 || rc == WB_E_CORRUPT, "offset %zu: rc %d", off, rc);
			if (rc == 0)
				accepted++;
			else
				corrupt++;
			free(c);
		}
	}
	cr_assert_gt(corrupt, 0);
	cr_assert_gt(accepted, 0);
	proj_buf_free(&b);
}

Test(value, specific_corruptions_are_caught)
{
	struct proj_buf b = sample_record();
	/* Offsets in the sample: header 36, then "b" bool at 36. */
	const size_t f0 = PROJ_RECORD_HEADER;
	struct proj_record r;
	struct {
		size_t off;
		uint8_t value;
		const char *what;
	} changes[] = {
	        {0, 0, "format 0"},
	        {0, 2, "format 2"},
	        {1, 1, "reserved byte"},
	        {7, 1, "last reserved byte"},
	        {35, 6, "one field too few"},
	        {35, 8, "one field too many"},
	        {32, 1, "field count beyond the limit"},
	        {f0, 0, "empty name"},
	        {f0 + 1, 'c', "names out of order"},
	        {f0 + 29, 'd', "duplicate name (i becomes d)"},
	        {f0 + 2, 0, "type 0"},
	        {f0 + 2, 7, "type 7"},
	        {f0 + 3, 2, "bool 2"},
	        {f0 + 4, 6, "name runs past the next field"},
	        {f0 + 4 + 6 + 1 + 3, 0xFF, "bytes length past the end"},
	};
	for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
		uint8_t *c = dup_exact(b.p, b.len);
		c[changes[i].off] = changes[i].value;
		cr_assert_eq(decode_copy(c, b.len, &r), WB_E_CORRUPT, "%s", changes[i].what);
		free(c);
	}
	/* Every NaN pattern in the double: quiet, signalling, negative. */
	const uint64_t nans[] = {UINT64_C(0x7FF8000000000000), UINT64_C(0x7FF0000000000001),
	                         UINT64_C(0xFFF8000000000000), UINT64_C(0xFFFFFFFFFFFFFFFF)};
	/* "b" takes 4 bytes, "bytes" 13, then d's name length, name and type */
	size_t d_off = f0 + 4 + 13 + 3;
	cr_assert_eq(b.p[d_off - 3], 1);
	cr_assert_eq(b.p[d_off - 2], 'd');
	cr_assert_eq(b.p[d_off - 1], PROJ_DOUBLE);
	for (size_t i = 0; i < 4; i++) {
		uint8_t *c = dup_exact(b.p, b.len);
		for (int k = 0; k < 8; k++)
			c[d_off + (size_t)k] = (uint8_t)(nans[i] >> (56 - 8 * k));
		cr_assert_eq(decode_copy(c, b.len, &r), WB_E_CORRUPT, "NaN %zu", i);
		free(c);
	}
	proj_buf_free(&b);
}

Test(value, find_stops_at_the_right_place)
{
	struct proj_field f[] = {fld("b", v_int(1)), fld("d", v_int(2)), fld("dd", v_int(3)),
	                         fld("f", v_int(4))};
	struct proj_buf b = {0};
	cr_assert_eq(proj_record_encode(1, 1, 1, f, 4, &b), 0);
	struct proj_record r;
	cr_assert_eq(proj_record_decode(b.p, b.len, &r), 0);
	struct proj_value v;
	const char *absent[] = {"a", "c", "d\x01", "de", "e", "g", "bb", "ddd"};
	for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
		cr_assert(!proj_record_find(&r, absent[i], strlen(absent[i]), &v), "%s", absent[i]);
	cr_assert(proj_record_find(&r, "dd", 2, &v));
	cr_assert_eq(v.u.i, 3);
	cr_assert(proj_record_find(&r, "ddx", 2, &v), "the length decides, not a NUL");
	cr_assert_eq(v.u.i, 3);
	cr_assert(proj_record_find(&r, "f", 1, &v));
	cr_assert_eq(v.u.i, 4);
	proj_buf_free(&b);
}

/* ------------------------------------------------ id lists */

struct idv {
	uint8_t b[PROJ_ID_MAX];
	size_t len;
};

static int idv_cmp(const void *a, const void *b)
{
	const struct idv *x = a, *y = b;
	return ref_bytes_cmp(x->b, x->len, y->b, y->len);
}

static struct idv random_id(void)
{
	static const uint8_t alpha[] = {0x00, 'a', 'b', 0xFF};
	struct idv v;
	v.len = rnd(8) == 0 ? PROJ_ID_MAX - rnd(3) : 1 + rnd(5);
	for (size_t i = 0; i < v.len; i++)
		v.b[i] = alpha[rnd(4)];
	return v;
}

Test(value, ids_sort_in_byte_order_without_duplicates)
{
	struct proj_ids ids = {0};
	const char *in[] = {"b", "ab", "a", "a\x01", "ab", "a", "\xFF", "a\0"};
	const size_t lens[] = {1, 2, 1, 2, 2, 1, 1, 2};
	for (size_t i = 0; i < 8; i++)
		cr_assert_eq(proj_ids_add(&ids, in[i], lens[i]), 0);
	cr_assert_eq(proj_ids_sort_unique(&ids), 0);
	const char *want[] = {"a", "a\0", "a\x01", "ab", "b", "\xFF"};
	const size_t want_lens[] = {1, 2, 2, 2, 1, 1};
	cr_assert_eq(ids.n, 6);
	for (size_t i = 0; i < 6; i++) {
		size_t len;
		const uint8_t *p = proj_ids_get(&ids, i, &len);
		cr_assert_eq(len, want_lens[i], "id %zu", i);
		cr_assert_arr_eq(p, want[i], len, "id %zu", i);
	}

	/* Random sets against a sort written here. */
	rng_seed(11);
	static struct idv ref[3000];
	for (int round = 0; round < 20; round++) {
		proj_ids_clear(&ids);
		cr_assert_eq(ids.n, 0);
		size_t n = rnd(3000);
		for (size_t i = 0; i < n; i++) {
			ref[i] = random_id();
			cr_assert_eq(proj_ids_add(&ids, ref[i].b, ref[i].len), 0);
		}
		cr_assert_eq(proj_ids_sort_unique(&ids), 0);
		qsort(ref, n, sizeof ref[0], idv_cmp);
		size_t u = 0;
		for (size_t i = 0; i < n; i++)
			if (u == 0 || idv_cmp(&ref[u - 1], &ref[i]) != 0)
				ref[u++] = ref[i];
		cr_assert_eq(ids.n, u, "round %d", round);
		for (size_t i = 0; i < u; i++) {
			size_t len;
			const uint8_t *p = proj_ids_get(&ids, i, &len);
			cr_assert_eq(len, ref[i].len);
			cr_assert_arr_eq(p, ref[i].b, len);
		}
	}
	proj_ids_free(&ids);
	cr_assert_eq(ids.n, 0);
	cr_assert_null(ids.off);
}

Test(value, ids_must_be_1_to_255_bytes)
{
	struct proj_ids ids = {0};
	uint8_t id[PROJ_ID_MAX + 1] = {0};
	cr_assert_eq(proj_ids_add(&ids, id, 0), WB_E_INVAL);
	cr_assert_eq(proj_ids_add(&ids, id, PROJ_ID_MAX + 1), WB_E_INVAL);
	cr_assert_eq(ids.n, 0);
	cr_assert_eq(proj_ids_add(&ids, id, PROJ_ID_MAX), 0);
	cr_assert_eq(proj_ids_add(&ids, id, 1), 0);
	cr_assert_eq(ids.n, 2);
	proj_ids_free(&ids);
}

/* Decodes a whole list into ids (cleared first); returns the last code. */
static int decode_all(const uint8_t *p, size_t len, struct idv *out, size_t *n)
{
	uint8_t *c = dup_exact(p, len);
	struct proj_idlist_iter it;
	proj_idlist_iter_init(&it, c, len);
	int rc;
	*n = 0;
	while ((rc = proj_idlist_next(&it)) == 1) {
		cr_assert_geq(it.id_len, 1);
		cr_assert_leq(it.id_len, PROJ_ID_MAX);
		memcpy(out[*n].b, it.id, it.id_len);
		out[*n].len = it.id_len;
		(*n)++;
	}
	free(c);
	return rc;
}

Test(value, id_lists_round_trip)
{
	rng_seed(13);
	static struct idv got[4000];
	struct proj_ids ids = {0};
	struct proj_buf b = {0};
	for (int round = 0; round < 40; round++) {
		proj_ids_clear(&ids);
		size_t n = round == 0 ? 0 : round == 1 ? 1 : rnd(3000);
		for (size_t i = 0; i < n; i++) {
			struct idv v = random_id();
			cr_assert_eq(proj_ids_add(&ids, v.b, v.len), 0);
		}
		cr_assert_eq(proj_ids_sort_unique(&ids), 0);
		b.len = 0;
		cr_assert_eq(proj_buf_append(&b, "?", 1), 0);
		cr_assert_eq(proj_idlist_encode(&ids, &b), 0);
		cr_assert_eq(b.p[0], '?', "encode appends");
		size_t m;
		cr_assert_eq(decode_all(b.p + 1, b.len - 1, got, &m), 0, "round %d", round);
		cr_assert_eq(m, ids.n);
		for (size_t i = 0; i < m; i++) {
			size_t len;
			const uint8_t *p = proj_ids_get(&ids, i, &len);
			cr_assert_eq(got[i].len, len);
			cr_assert_arr_eq(got[i].b, p, len);
		}
	}
	proj_ids_free(&ids);
	proj_buf_free(&b);
}

Test(value, truncated_id_lists_end_early_only_on_a_boundary)
{
	rng_seed(17);
	struct proj_ids ids = {0};
	for (int i = 0; i < 60; i++) {
		struct idv v = random_id();
		cr_assert_eq(proj_ids_add(&ids, v.b, v.len), 0);
	}
	cr_assert_eq(proj_ids_sort_unique(&ids), 0);
	struct proj_buf b = {0};
	cr_assert_eq(proj_idlist_encode(&ids, &b), 0);
	/* The offsets where an id ends. */
	size_t *ends = calloc(ids.n + 1, sizeof *ends);
	cr_assert_not_null(ends);
	for (size_t i = 0, off = 0; i < ids.n; i++) {
		off += 2 + b.p[off + 1];
		ends[i + 1] = off;
	}
	cr_assert_eq(ends[ids.n], b.len);
	static struct idv got[64];
	for (size_t cut = 0; cut <= b.len; cut++) {
		size_t m;
		int rc = decode_all(b.p, cut, got, &m);
		bool boundary = false;
		for (size_t i = 0; i <= ids.n; i++)
			boundary |= ends[i] == cut;
		cr_assert_eq(rc, boundary ? 0 : WB_E_CORRUPT, "cut at %zu", cut);
		for (size_t i = 0; i < m; i++) {
			size_t len;
			const uint8_t *p = proj_ids_get(&ids, i, &len);
			cr_assert_eq(got[i].len, len);
			cr_assert_arr_eq(got[i].b, p, len);
		}
	}
	free(ends);
	proj_ids_free(&ids);
	proj_buf_free(&b);
}

Test(value, malformed_id_lists_are_corrupt)
{
	const struct {
		const char *bytes;
		size_t len;
		size_t good; /* ids before the error */
		const char *what;
	} bad[] = {
	        {"\x01\x01"
	         "a",
	         3, 0, "first id shares a prefix"},
	        {"\x00\x00", 2, 0, "empty id"},
	        {"\x00\x01"
	         "a"
	         "\x00\x01"
	         "a",
	         6, 1, "repeated id"},
	        {"\x00\x01"
	         "b"
	         "\x00\x01"
	         "a",
	         6, 1, "descending ids"},
	        {"\x00\x02"
	         "ab"
	         "\x01\x00",
	         6, 1, "a prefix of the previous id"},
	        {"\x00\x02"
	         "ab"
	         "\x03\x01"
	         "c",
	         7, 1, "shares more than the previous id has"},
	        {"\x00\x05"
	         "ab",
	         4, 0, "rest past the end"},
	        {"\x00", 1, 0, "one byte"},
	        {"\x00\x01"
	         "a"
	         "\x00",
	         4, 1, "a trailing byte"},
	};
	static struct idv got[8];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t m;
		int rc = decode_all((const uint8_t *)bad[i].bytes, bad[i].len, got, &m);
		cr_assert_eq(rc, WB_E_CORRUPT, "%s", bad[i].what);
		cr_assert_eq(m, bad[i].good, "%s", bad[i].what);
	}
	/* The control: "a", then "aa" sharing 1. */
	size_t m;
	cr_assert_eq(decode_all((const uint8_t *)"\x00\x01"
	                                         "a"
	                                         "\x01\x01"
	                                         "a",
	                        6, got, &m),
	             0);
	cr_assert_eq(m, 2);
	/* An id longer than PROJ_ID_MAX: previous 255 bytes + shared 200 + 56 */
	uint8_t over[2 + 255 + 2 + 56];
	over[0] = 0;
	over[1] = 255;
	memset(over + 2, 'a', 255);
	over[257] = 200;
	over[258] = 56;
	memset(over + 259, 'b', 56);
	cr_assert_eq(decode_all(over, sizeof over, got, &m), WB_E_CORRUPT);
	cr_assert_eq(m, 1);
	over[258] = 55; /* exactly 255 */
	cr_assert_eq(decode_all(over, sizeof over - 1, got, &m), 0);
	cr_assert_eq(m, 2);

	/* A second call after an error keeps the error. */
	struct proj_idlist_iter it;
	proj_idlist_iter_init(&it, (const uint8_t *)"\x00\x00", 2);
	cr_assert_eq(proj_idlist_next(&it), WB_E_CORRUPT);
	cr_assert_eq(proj_idlist_next(&it), WB_E_CORRUPT);
}

Test(value, unsorted_ids_are_not_encoded)
{
	struct proj_ids ids = {0};
	cr_assert_eq(proj_ids_add(&ids, "b", 1), 0);
	cr_assert_eq(proj_ids_add(&ids, "a", 1), 0);
	struct proj_buf b = {0};
	cr_assert_eq(proj_idlist_encode(&ids, &b), WB_E_INVAL);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(proj_ids_add(&ids, "a", 1), 0);
	cr_assert_eq(proj_ids_sort_unique(&ids), 0);
	cr_assert_eq(proj_idlist_encode(&ids, &b), 0);
	cr_assert_eq(b.len, 6);
	cr_assert_arr_eq(b.p,
	                 "\x00\x01"
	                 "a"
	                 "\x00\x01"
	                 "b",
	                 6);
	proj_ids_free(&ids);
	proj_buf_free(&b);
}

Test(value, front_coding_is_compact)
{
	enum { N = 100000 };
	struct proj_ids ids = {0};
	char id[16];
	/* added in reverse so that the sort has work to do */
	for (int i = N - 1; i >= 0; i--) {
		int n = snprintf(id, sizeof id, "o-%08d", i);
		cr_assert_eq(proj_ids_add(&ids, id, (size_t)n), 0);
	}
	cr_assert_eq(proj_ids_sort_unique(&ids), 0);
	struct proj_buf b = {0};
	cr_assert_eq(proj_idlist_encode(&ids, &b), 0);
	cr_assert_lt(b.len, (size_t)N * 4, "%zu bytes for %d ids", b.len, N);
	struct proj_idlist_iter it;
	proj_idlist_iter_init(&it, b.p, b.len);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(proj_idlist_next(&it), 1);
		int n = snprintf(id, sizeof id, "o-%08d", i);
		cr_assert_eq(it.id_len, (size_t)n);
		cr_assert_arr_eq(it.id, id, (size_t)n);
	}
	cr_assert_eq(proj_idlist_next(&it), 0);
	proj_ids_free(&ids);
	proj_buf_free(&b);
}
