/* The text forms on the wire (issue 14; docs/PROTOCOL.md "Text forms"): a
 * Where may carry its clause as text only, and an Op may be its text
 * (Op.text). The server parses them with the grammar of
 * projection/optext.h into the structured form, which is what it checks,
 * runs, and stores in the ledger, so that replay never parses. Runs where
 * the request is decoded (on a worker for a large frame). */
#ifndef WB_TEXTFORM_H
#define WB_TEXTFORM_H

#include <stddef.h>

#include "whizbang.pb-c.h"

/* Replaces, in place, every text form in req (QueryEntities' and Explain's
 * where; the ops of Commit and Stage, and the wheres of their structured
 * update and delete ops) with the structured form. A Where with a tree
 * keeps it (its text is then for people only). Returns 0;
 * WB_INVALID_EXPRESSION with why ("ops[2]: column 17: expected a value
 * after '=='") for text that does not parse, or an Op whose text holds
 * other than one operation; WB_E_NOMEM. On an error req stays valid to
 * free. */
int textform_resolve(Whizbang__V1__Request *req, char *why, size_t whylen);

#endif
