/* The text forms on the wire (textform.h). */
#include "textform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optext.h"
#include "wb_error.h"

typedef Whizbang__V1__Op Op;
typedef Whizbang__V1__Where Where;

/* w's text parsed into its tree when it has text and no tree. */
static int resolve_where(Where *w, const char *what, char *why, size_t whylen)
{
	if (w == NULL || w->expr != NULL || w->text == NULL || w->text[0] == '\0')
		return 0;
	struct optext_error err;
	int rc = optext_parse_where(w->text, &w->expr, &err);
	if (rc == WB_INVALID_EXPRESSION)
		snprintf(why, whylen, "%s: %s", what, err.message);
	return rc;
}

/* The where clauses inside a structured op. */
static int resolve_op_wheres(Op *op, const char *what, char *why, size_t whylen)
{
	if (op->kind_case == WHIZBANG__V1__OP__KIND_UPDATE && op->update != NULL)
		return resolve_where(op->update->where, what, why, whylen);
	if (op->kind_case == WHIZBANG__V1__OP__KIND_DELETE && op->delete_ != NULL &&
	    op->delete_->target_case == WHIZBANG__V1__DELETE__TARGET_WHERE)
		return resolve_where(op->delete_->where, what, why, whylen);
	return 0;
}

/* op's text parsed into the structured op it names, in place. */
static int resolve_op(Op *op, const char *what, char *why, size_t whylen)
{
	if (op->kind_case != WHIZBANG__V1__OP__KIND_TEXT)
		return resolve_op_wheres(op, what, why, whylen);
	Whizbang__V1__OpList *list;
	struct optext_error err;
	int rc = optext_parse_ops(op->text, &list, &err);
	if (rc == WB_INVALID_EXPRESSION) {
		snprintf(why, whylen, "%s: %s", what, err.message);
		return rc;
	}
	if (rc != 0)
		return rc;
	if (list->n_ops != 1) {
		snprintf(why, whylen,
		         "%s: the text holds %zu operations; an Op is one (send one Op for each)",
		         what, list->n_ops);
		optext_free_ops(list);
		return WB_INVALID_EXPRESSION;
	}
	/* The parsed op's contents move into op; its shell and the text go. */
	Op *parsed = list->ops[0];
	list->ops[0] = NULL;
	list->n_ops = 0;
	optext_free_ops(list);
	free(op->text);
	*op = *parsed;
	free(parsed);
	return 0;
}

static int resolve_ops(Op **ops, size_t n, char *why, size_t whylen)
{
	for (size_t i = 0; i < n; i++) {
		char what[32];
		snprintf(what, sizeof(what), "ops[%zu]", i);
		int rc = resolve_op(ops[i], what, why, whylen);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int textform_resolve(Whizbang__V1__Request *req, char *why, size_t whylen)
{
	switch (req->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES:
		return resolve_where(req->query_entities->where, "where", why, whylen);
	case WHIZBANG__V1__REQUEST__BODY_EXPLAIN:
		return resolve_where(req->explain->where, "where", why, whylen);
	case WHIZBANG__V1__REQUEST__BODY_COMMIT:
		return resolve_ops(req->commit->ops, req->commit->n_ops, why, whylen);
	case WHIZBANG__V1__REQUEST__BODY_STAGE:
		return resolve_ops(req->stage->ops, req->stage->n_ops, why, whylen);
	default:
		return 0;
	}
}
