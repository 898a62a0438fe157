/* The text form of projection operations and where clauses (DESIGN.md §7),
 * for people and the CLI. Pure C: no libuv, no storage.
 *
 *   upsert Order "o-1" {customer_id: "c-42", status: "Pending", total: 120}
 *   upsert Order "o-1" merge {status: "Paid"}
 *   update Order where customer_id == "c-42" set status = "Cancelled", inc revision by 1
 *   update Order where order_no == "o-9" set status = "New" create "o-9" {order_no: "o-9", status: "New"}
 *   update Order where total < 0 unset discount
 *   delete Order "o-1"
 *   delete Order where status == "Cancelled"
 *   create index Order customer_id
 *   drop index Order customer_id
 *
 * Several operations are separated by ';'. Where clauses: comparisons
 * == != < <= > >=, `in (...)`, `not in (...)`, exists(f), starts_with(f, "p"),
 * and, or, not, parentheses; literals: strings with escapes (\" \\ \n \t \r
 * \uXXXX), int64, double (a magnitude past the largest double is infinity;
 * infinities format as 1e999 and -1e999), true, false, null. Field and type names are
 * identifiers ([A-Za-z_][A-Za-z0-9_.-]*) or backquoted (`like this`, with
 * the string escapes and \`). Keywords are case-insensitive and reserved
 * everywhere (a field named `set` is backquoted; the formatter does so).
 * `drop` and `index` are not keywords: they are words of the index
 * operations only, recognised (in any case) at the start of an operation
 * and after `create`, so fields named index or drop stay bare names.
 * Bytes literals are x"0a0b" (hex, even length). \u0000, raw control
 * characters and invalid UTF-8 in strings are refused. Columns count code
 * points from the start of the text. */
#ifndef WB_OPTEXT_H
#define WB_OPTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "whizbang.pb-c.h"

/* A parse error: the 1-based column where it was found and what was
 * expected there, e.g. "column 17: expected a value after '=='". */
struct optext_error {
	size_t column;
	char message[256];
};

/* Parses one or more operations separated by ';' from text. On success
 * *out receives a new OpList the caller frees with optext_free_ops(); the
 * Where of updates and deletes holds both the tree and the original clause
 * text. On failure returns WB_INVALID_EXPRESSION and fills *err; *out is
 * untouched. WB_E_NOMEM when out of memory. Input is bounded: at most
 * OPTEXT_MAX_DEPTH nested parentheses or nots. */
#define OPTEXT_MAX_DEPTH 64
int optext_parse_ops(const char *text, Whizbang__V1__OpList **out, struct optext_error *err);

/* Parses a where clause alone into a new Expr, freed with
 * optext_free_expr(). Errors as above. */
int optext_parse_where(const char *text, Whizbang__V1__Expr **out, struct optext_error *err);

void optext_free_ops(Whizbang__V1__OpList *ops);
void optext_free_expr(Whizbang__V1__Expr *expr);

/* Writes op in the text form above into buf[0..len), NUL-terminated,
 * truncated with "..." when it does not fit; returns the length the full
 * text needs (like snprintf). Parsing the output gives back an equal op,
 * except that a Where's text is then the canonical clause. */
size_t optext_format_op(const Whizbang__V1__Op *op, char *buf, size_t len);

/* The same for a where-clause tree. */
size_t optext_format_expr(const Whizbang__V1__Expr *expr, char *buf, size_t len);

/* The same for one value, as a literal of the text form: "text", 42, 2.5,
 * true, null, x"0a0b" (a Value with no kind set is null). */
size_t optext_format_value(const Whizbang__V1__Value *v, char *buf, size_t len);

/* "scan", "index", "index union" or "id" (a delete by id); "unknown" for a
 * value this build does not know. A static string. */
const char *optext_strategy_name(Whizbang__V1__PlanStrategy s);

/* ---------------------------------------------------------------- explosions
 *
 * An Explosion (the ids a where clause matched when its op was applied) as
 * text for people. Its id list is front-coded: for each id, one byte with
 * the length of the prefix it shares with the previous id, one byte with
 * the length of the rest, then the rest. */

/* The longest id the coding can carry: a 255-byte prefix and a 255-byte
 * rest. */
#define OPTEXT_ID_MAX 510

/* Walks the ids of an Explosion without allocating. Fill it with
 * optext_ids_init(); the Explosion must outlive it. */
struct optext_ids {
	const uint8_t *p;
	size_t len, pos;
	uint64_t count, seen;
	bool bad;
	/* After optext_ids_next() answered 1: the id, id[0..id_len), also
	 * NUL-terminated (an id may hold a NUL byte; id_len is the truth). */
	size_t id_len;
	char id[OPTEXT_ID_MAX + 1];
};

/* Starts a walk over x's ids; x NULL walks an empty list. */
void optext_ids_init(struct optext_ids *it, const Whizbang__V1__Explosion *x);

/* Decodes the next id: 1 when it->id holds it, 0 at the end of a well-formed
 * list, -1 (then always) when the list is malformed: truncated, a shared
 * prefix longer than the previous id, ids not in strictly ascending byte
 * order, or more or fewer ids than the Explosion's count. A list can turn
 * out malformed after some ids were answered; a caller that must not show
 * part of a bad list walks it once to the end first. */
int optext_ids_next(struct optext_ids *it);

/* Writes x for people into buf[0..len) like optext_format_op() (NUL, "..."
 * when cut, returns the full length). At most max_ids ids are listed, then
 * how many more (SIZE_MAX lists all, 0 none); ids that could be misread in
 * the list are quoted with escapes. The forms:
 *
 *   matched 3 [o-1, o-2, o-7] via index Order.customer_id == "c-42" (examined 3, 41 µs)
 *   no-op (matched 0, scan, examined 1000, 812 µs)
 *   created (matched 0, index Order.id == "o-9", examined 0, 6 µs)
 *
 * The plan is x->plan, or the strategy's name when the plan is empty (a
 * delete by id: "matched 1 [o-1] via id (examined 1, 3 µs)"). A
 * malformed id list (see optext_ids_next()) shows as "<corrupt id list>"
 * in place of the ids, whatever max_ids. x NULL writes "". Never parsed
 * back: this is not part of the operation text form. */
size_t optext_format_explosion(const Whizbang__V1__Explosion *x, size_t max_ids, char *buf,
                               size_t len);

#endif
