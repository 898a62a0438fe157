/* Where-clause semantics (docs/QUERIES.md) and the checks every operation
 * passes before it is accepted. Pure C, deterministic.
 *
 * The semantics, exactly:
 *   f == v    f is present and proj_value_equal(f, v) (int and double
 *             compare numerically; other cross-type pairs are unequal;
 *             null == null).
 *   f != v    f is present and not (f == v). A missing field gives false.
 *   f < <= > >= v
 *             f is present and proj_value_order(f, v) holds with that
 *             result. Pairs that are not ordered (cross-type, null) give
 *             false.
 *   f in (l)       f is present and f == some value of l.
 *   f not in (l)   f is present and f == no value of l.
 *   exists(f)      f is present (a null value counts as present).
 *   starts_with(f, "p")  f is present, a string, and begins with p.
 *   a and b, a or b      as usual; an empty `and` is true, an empty `or`
 *                        false.
 *   not e          exactly the complement of e: true where e is false,
 *                  including for missing fields (not (f == 1) holds when f
 *                  is missing, f != 1 does not). */
#ifndef WB_PROJ_EVAL_H
#define WB_PROJ_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include "value.h"
#include "whizbang.pb-c.h"

/* Nesting limit of a clause tree (the text parser's too). */
#define PROJ_EXPR_MAX_DEPTH 64
/* Terms in one `and`/`or`, values in one `in` list. */
#define PROJ_EXPR_MAX_TERMS 1024

/* Evaluates a checked clause (proj_check_expr() returned 0) against a
 * record. */
bool proj_eval(const Whizbang__V1__Expr *e, const struct proj_record *r);

/* Checks a clause from the network: every node set, every field name
 * 1..255 bytes, every value set and not NaN, compare ops in range, at most
 * PROJ_EXPR_MAX_DEPTH levels and PROJ_EXPR_MAX_TERMS terms per list, and a
 * non-empty in list. Returns 0 or WB_INVALID_EXPRESSION with msg[0..len)
 * saying where ("in_list: no values"). */
int proj_check_expr(const Whizbang__V1__Expr *e, char *msg, size_t len);

/* Checks one operation as a client sends it: type 1..255 bytes, ids
 * 1..255 bytes, field names 1..255 bytes and unique within an upsert or
 * create_if_none, values set and not NaN, at most PROJ_MAX_FIELDS fields,
 * an update with at least one action, increments by an int or double, a
 * where clause that passes proj_check_expr() (a Where with no expr is
 * refused), a delete with an id or a where, index specs with a type and a
 * field. Explosion fields are the server's: a client op carrying one is
 * refused. Returns 0, WB_INVALID_EXPRESSION for a bad clause, or
 * WB_BAD_REQUEST; msg says what. */
int proj_check_op(const Whizbang__V1__Op *op, char *msg, size_t len);

#endif
