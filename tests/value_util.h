/* proj_value and proj_field literals for the projection unit tests
 * (test_value, test_eval). They only fill a struct, so they are static
 * inline here rather than a library: a test that does not call one pays
 * nothing, and no compiler warns about the ones it leaves unused. Text
 * values point into the caller's bytes, which must outlive them. */
#ifndef WB_TEST_VALUE_UTIL_H
#define WB_TEST_VALUE_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "value.h"

static inline struct proj_value v_null(void)
{
	struct proj_value v = {.type = PROJ_NULL};
	return v;
}

static inline struct proj_value v_bool(bool b)
{
	struct proj_value v = {.type = PROJ_BOOL, .u.b = b};
	return v;
}

static inline struct proj_value v_int(int64_t i)
{
	struct proj_value v = {.type = PROJ_INT, .u.i = i};
	return v;
}

static inline struct proj_value v_dbl(double d)
{
	struct proj_value v = {.type = PROJ_DOUBLE, .u.d = d};
	return v;
}

/* A string or bytes value (t) over len bytes at p. */
static inline struct proj_value v_text(enum proj_vtype t, const void *p, size_t len)
{
	struct proj_value v = {.type = t};
	v.u.s.p = p;
	v.u.s.len = len;
	return v;
}

static inline struct proj_value v_str(const char *s)
{
	return v_text(PROJ_STRING, s, strlen(s));
}

/* A field named name (NUL-terminated) with value v. */
static inline struct proj_field fld(const char *name, struct proj_value v)
{
	struct proj_field f = {.name = name, .name_len = strlen(name), .v = v};
	return f;
}

#endif
