/* The text form of projection operations and where clauses (DESIGN.md §7),
 * for people and the CLI. Pure C: no libuv, no storage.
 *
 *   upsert Order "o-1" {customer_id: "c-42", status: "Pending", total: 120}
 *   upsert Order "o-1" merge {status: "Paid"}
 *   update Order where customer_id == "c-42" set status = "Cancelled", inc revision by 1
 *   update Order where id == "o-9" set status = "New" create "o-9" {status: "New"}
 *   update Order where total < 0 unset discount
 *   delete Order "o-1"
 *   delete Order where status == "Cancelled"
 *
 * Several operations are separated by ';'. Where clauses: comparisons
 * == != < <= > >=, `in (...)`, `not in (...)`, exists(f), starts_with(f, "p"),
 * and, or, not, parentheses; literals: strings with escapes (\" \\ \n \t \r
 * \uXXXX), int64, double, true, false, null. Field and type names are
 * identifiers ([A-Za-z_][A-Za-z0-9_.-]*) or backquoted (`like this`, with
 * the string escapes and \`). Keywords are case-insensitive and reserved
 * everywhere (a field named `set` is backquoted; the formatter does so).
 * Bytes literals are x"0a0b" (hex, even length). \u0000, raw control
 * characters and invalid UTF-8 in strings are refused. Columns count code
 * points from the start of the text. */
#ifndef WB_OPTEXT_H
#define WB_OPTEXT_H

#include <stddef.h>

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

#endif
