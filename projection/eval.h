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
#include <stdint.h>

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

/* The cost limits a where clause must meet to be admitted: the settings
 * --max-where-terms, --max-where-depth, --max-where-in-list,
 * --max-where-bytes and --max-where-literal (server/config.c).
 *
 * They are checked where a clause enters the server (QueryEntities,
 * Explain, and the update and delete ops of a Commit or Stage), before the
 * request is queued for a worker or the writer, and never when a ledger
 * entry is applied or replayed: an entry that was admitted stays valid
 * whatever the limits are later (a restart with lower limits replays the
 * log exactly as it was accepted). proj_check_op() and proj_check_expr(),
 * which applying runs too, only hold the fixed bounds of the language
 * (PROJ_EXPR_MAX_DEPTH, PROJ_EXPR_MAX_TERMS); the settings cannot be set
 * beyond them. */
struct proj_where_limits {
	/* Nodes of the tree (each comparison, in, exists, starts_with, and,
	 * or, not) plus the values of its in lists: what one evaluation of the
	 * clause may cost per entity. */
	uint64_t terms;
	/* Levels of nesting: a comparison alone is 1, `not` and a list add one
	 * each (the counting of PROJ_EXPR_MAX_DEPTH); at most that. */
	uint64_t depth;
	/* Values of one in list; at most PROJ_EXPR_MAX_TERMS. */
	uint64_t in_list;
	/* Bytes of every field name and literal of the clause together; a
	 * string or bytes literal counts its length, any other value 8. */
	uint64_t bytes;
	/* Bytes of one string or bytes literal or starts_with prefix. */
	uint64_t literal;
};

/* Checks that a clause that passed proj_check_expr() is within lim. One
 * pass over the tree, allocating nothing; it descends no deeper than
 * lim->depth + 1 levels. Returns 0, or WB_QUERY_TOO_EXPENSIVE with msg
 * naming the limit, the clause's figure and the setting ("the where clause
 * holds 2001 terms: at most 2000 are allowed (--max-where-terms)"). The
 * depth is checked first, then terms, in lists, literals and bytes. */
int proj_check_where_limits(const Whizbang__V1__Expr *e, const struct proj_where_limits *lim,
                            char *msg, size_t len);

/* proj_check_where_limits() for the where clause of an update or delete
 * op (other ops pass), on an op that passed proj_check_op(); msg is
 * prefixed with the op ("update: where: ..."). */
int proj_check_op_limits(const Whizbang__V1__Op *op, const struct proj_where_limits *lim, char *msg,
                         size_t len);

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
