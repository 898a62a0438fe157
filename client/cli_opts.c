/* Option tables at work (cli_opts.h): one parser for every command's
 * arguments, and the help written from the same tables. */
#include "cli_opts.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "wb_error.h"

/* A table holds at most this many options: the parser counts how often
 * each row was given, for the required ones and the alternatives. */
#define CLI_MAX_OPTS 32
/* The help is wrapped at this column. */
#define CLI_WIDTH 79

bool cli_is_option(const char *a)
{
	return a[0] == '-' && a[1] != '\0';
}

void cli_append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
	if (*used >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(buf + *used, len - *used, fmt, ap);
	va_end(ap);
	if (w > 0)
		*used = *used + (size_t)w < len ? *used + (size_t)w : len;
}

/* Keeps the reason the command line is refused in why[0..len); returns
 * EXIT_USAGE. */
__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return EXIT_USAGE;
}

int cli_word(const char *v, const struct cli_word *words, int *value)
{
	for (const struct cli_word *w = words; w->word != NULL; w++) {
		if (strcmp(v, w->word) == 0) {
			*value = w->value;
			return 0;
		}
	}
	return WB_E_INVAL;
}

void cli_append_opt(char *buf, size_t len, size_t *used, const struct cli_opt *o)
{
	cli_append(buf, len, used, "%s%s%s", o->name, o->arg != NULL ? " " : "",
	           o->arg != NULL ? o->arg : "");
}

/* The command's name as it is typed: "read", or "consumer create". */
static void command_name(const struct cli_command *cmd, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", cmd->group != NULL ? cmd->group : "",
	         cmd->group != NULL ? " " : "", cmd->name);
}

const struct cli_opt *cli_find_opt(const struct cli_opt *table, const char *a, const char **value)
{
	for (const struct cli_opt *o = table; o != NULL && o->name != NULL; o++) {
		size_t n = strlen(o->name);
		if (strncmp(a, o->name, n) != 0)
			continue;
		if (a[n] == '\0') {
			*value = NULL;
			return o;
		}
		if (a[n] == '=' && o->arg != NULL) {
			*value = a + n + 1;
			return o;
		}
	}
	return NULL;
}

static void *field_of(void *base, size_t offset)
{
	return (char *)base + offset;
}

static void set_bool(void *base, size_t offset)
{
	*(bool *)field_of(base, offset) = true;
}

/* Appends value to the list at field, which can hold argc values. */
static int list_add(struct cli_list *l, const char *value, int argc)
{
	if (l->v == NULL) {
		l->v = calloc((size_t)argc, sizeof(*l->v));
		if (l->v == NULL)
			return WB_E_NOMEM;
	}
	l->v[l->n++] = value;
	return 0;
}

/* The grammar of a number option's value (parse.h), by its type. */
static enum parse_kind kind_of(enum cli_type type)
{
	switch (type) {
	case CLI_COUNT:
		return PARSE_COUNT;
	case CLI_SIZE:
		return PARSE_SIZE;
	case CLI_DURATION:
		return PARSE_DURATION;
	default:
		return PARSE_INTEGER;
	}
}

static bool is_number(enum cli_type type)
{
	return type == CLI_UINT || type == CLI_COUNT || type == CLI_SIZE || type == CLI_DURATION;
}

/* Reads value into the field of o in base: 0 or WB_E_INVAL. */
static int set_value(const struct cli_opt *o, void *base, const char *value)
{
	void *field = field_of(base, o->offset);
	uint64_t v;
	switch (o->type) {
	case CLI_FLAG:
		*(bool *)field = true;
		return 0;
	case CLI_TEXT:
		*(const char **)field = value;
		return 0;
	case CLI_TEXTS:
		return WB_E_INVAL; /* lists are filled by cli_read_opt() */
	case CLI_UINT:
	case CLI_COUNT:
	case CLI_SIZE:
	case CLI_DURATION:
		if (parse_u64_in(value, kind_of(o->type), o->min, o->max, &v) != 0)
			return WB_E_INVAL;
		if (o->width == sizeof(uint32_t))
			*(uint32_t *)field = (uint32_t)v;
		else
			*(uint64_t *)field = v;
		return 0;
	case CLI_PARSE:
		return o->parse(value, field);
	}
	return WB_E_INVAL;
}

/* Whether the row is one the parser can fill: a number's field is a
 * uint32_t or a uint64_t that holds every value up to max. */
static bool row_ok(const struct cli_opt *o)
{
	if (!is_number(o->type))
		return true;
	return o->width == sizeof(uint64_t) ||
	       (o->width == sizeof(uint32_t) && o->max <= UINT32_MAX);
}

void cli_defaults(const struct cli_opt *table, void *base)
{
	size_t rows = 0;
	for (const struct cli_opt *o = table; o != NULL && o->name != NULL; o++, rows++) {
		if (!row_ok(o))
			abort(); /* a field the parser cannot fill is a bug */
		if (o->dflt != NULL && set_value(o, base, o->dflt) != 0)
			abort(); /* so is a default its own option refuses */
	}
	if (rows > CLI_MAX_OPTS)
		abort(); /* and a table longer than the parser counts */
}

/* The usage error for value, which o refused. */
static int bad_value(const struct cli_opt *o, const char *value, char *why, size_t len)
{
	const char *bad = o->bad != NULL            ? o->bad
	                  : o->type == CLI_SIZE     ? "needs a size"
	                  : o->type == CLI_DURATION ? "needs a duration"
	                                            : "needs a number";
	uint64_t v;
	if (is_number(o->type) && parse_u64(value, kind_of(o->type), &v) == 0) {
		/* Of the right form, so outside the bounds: say them. */
		char lo[32], hi[32];
		parse_format(kind_of(o->type), o->min, lo, sizeof(lo));
		parse_format(kind_of(o->type), o->max, hi, sizeof(hi));
		return fail(why, len, "%s %s from %s to %s, not \"%s\"", o->name, bad, lo, hi,
		            value);
	}
	return fail(why, len, "%s %s, not \"%s\"", o->name, bad, value);
}

int cli_read_opt(const struct cli_opt *o, void *base, const char *value, int argc, char **argv,
                 int *i, char *why, size_t len)
{
	if (o->arg != NULL && value == NULL) {
		if (*i + 1 >= argc)
			return fail(why, len, "%s needs a value", o->name);
		value = argv[++*i];
	}
	int rc = o->type == CLI_TEXTS ? list_add(field_of(base, o->offset), value, argc)
	                              : set_value(o, base, value);
	if (rc == WB_E_NOMEM)
		return rc;
	if (rc != 0)
		return bad_value(o, value, why, len);
	if (o->given != 0)
		set_bool(base, o->given - 1);
	return 0;
}

/* The run of alternatives from o as words: "--all or --stream S" (with
 * their arguments, for "needs") or "--all, --stream and --ledger" (for
 * "give one of"). */
static void alt_names(const struct cli_opt *o, bool with_args, char *buf, size_t len)
{
	size_t n = 0, used = 0;
	while (o[n].name != NULL && o[n].alt)
		n++;
	buf[0] = '\0';
	for (size_t k = 0; k < n; k++) {
		cli_append(buf, len, &used, "%s",
		           k == 0       ? ""
		           : with_args  ? " or "
		           : k + 1 == n ? " and "
		                        : ", ");
		if (with_args)
			cli_append_opt(buf, len, &used, &o[k]);
		else
			cli_append(buf, len, &used, "%s", o[k].name);
	}
}

/* After the arguments: the count npos of positionals, the required options
 * and the alternatives, in that order. seen[k] counts row k of the table;
 * name is the command's. */
static int check_counts(const struct cli_command *cmd, size_t npos, const unsigned *seen,
                        const char *name, char *why, size_t len)
{
	if (npos < cmd->min_args)
		return fail(why, len, "%s needs %s", name, cmd->needs);
	/* Every required option missing: "append needs --type T and --data ...". */
	const struct cli_opt *t = cmd->opts;
	char words[256] = "";
	size_t used = 0;
	for (size_t k = 0; t != NULL && t[k].name != NULL; k++) {
		if (!t[k].required || seen[k] != 0)
			continue;
		cli_append(words, sizeof(words), &used, "%s", used != 0 ? " and " : "");
		cli_append_opt(words, sizeof(words), &used, &t[k]);
	}
	if (used != 0)
		return fail(why, len, "%s needs %s", name, words);
	for (size_t k = 0; t != NULL && t[k].name != NULL; k++) {
		if (!t[k].alt || (k > 0 && t[k - 1].alt))
			continue;
		unsigned given = 0;
		for (size_t j = k; t[j].name != NULL && t[j].alt; j++)
			given += seen[j];
		alt_names(&t[k], given == 0, words, sizeof(words));
		if (given == 0)
			return fail(why, len, "%s needs %s", name, words);
		if (given > 1)
			return fail(why, len, "give one of %s", words);
	}
	return 0;
}

int cli_read_args(const struct cli_command *cmd, void *args, struct cli_list *pos,
                  const struct cli_opt *globals, void *gbase, int argc, char **argv, int i,
                  char *why, size_t len)
{
	unsigned seen[CLI_MAX_OPTS] = {0};
	char name[64];
	command_name(cmd, name, sizeof(name));
	cli_defaults(cmd->opts, args);
	bool dashdash = false;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
			continue;
		}
		/* The command's own options first: watermark's --timeout-ms is
		 * not the global one. */
		const char *value = NULL;
		const struct cli_opt *o = NULL;
		bool own = false;
		if (!dashdash && cli_is_option(a)) {
			o = cli_find_opt(cmd->opts, a, &value);
			own = o != NULL;
			if (o == NULL)
				o = cli_find_opt(globals, a, &value);
			if (o == NULL && !cmd->dash_args)
				return fail(why, len, "unknown option %s for %s", a, name);
		}
		if (o == NULL) {
			if (pos == NULL || pos->n == cmd->max_args) {
				if (cmd->max_args == 0)
					return fail(why, len, "%s takes no argument \"%s\"", name,
					            a);
				return fail(why, len, "%s takes %s, not also \"%s\"", name,
				            cmd->takes, a);
			}
			if (list_add(pos, a, argc) != 0)
				return WB_E_NOMEM;
			continue;
		}
		if (own)
			seen[o - cmd->opts]++;
		int rc = cli_read_opt(o, own ? args : gbase, value, argc, argv, &i, why, len);
		if (rc != 0)
			return rc;
	}
	return check_counts(cmd, pos != NULL ? pos->n : 0, seen, name, why, len);
}

void cli_free_args(const struct cli_command *cmd, void *args, struct cli_list *pos)
{
	for (const struct cli_opt *o = cmd->opts; args != NULL && o != NULL && o->name != NULL; o++)
		if (o->type == CLI_TEXTS)
			free(((struct cli_list *)field_of(args, o->offset))->v);
	if (pos != NULL) {
		free(pos->v);
		memset(pos, 0, sizeof(*pos));
	}
}

/* ---------------------------------------------------------------- help */

/* A line being written in words, wrapped at CLI_WIDTH columns; a
 * continuation line starts at indent. */
struct line {
	FILE *f;
	size_t col;
	size_t indent;
	/* Nothing written yet on this line after its indent. */
	bool fresh;
};

static void put_word(struct line *l, const char *word, size_t len)
{
	if (!l->fresh && l->col + 1 + len > CLI_WIDTH) {
		fprintf(l->f, "\n%*s", (int)l->indent, "");
		l->col = l->indent;
		l->fresh = true;
	}
	if (!l->fresh) {
		fputc(' ', l->f);
		l->col++;
	}
	fwrite(word, 1, len, l->f);
	l->col += len;
	l->fresh = false;
}

void cli_put_wrapped(FILE *f, const char *text, size_t first_indent, size_t indent)
{
	struct line l = {.f = f, .col = first_indent, .indent = indent, .fresh = true};
	if (first_indent < indent) {
		fprintf(f, "%*s", (int)(indent - first_indent), "");
		l.col = indent;
	} else if (first_indent > indent) {
		l.fresh = false;
	}
	for (;;) {
		text += strspn(text, " ");
		size_t len = strcspn(text, " ");
		if (len == 0)
			break;
		put_word(&l, text, len);
		text += len;
	}
	fputc('\n', f);
}

size_t cli_put_synopsis(FILE *f, const struct cli_command *cmd, size_t col)
{
	char word[160];
	command_name(cmd, word, sizeof(word));
	struct line l = {.f = f, .col = col, .indent = col + strlen(word) + 1, .fresh = true};
	put_word(&l, word, strlen(word));
	if (cmd->args != NULL && cmd->args[0] != '\0')
		put_word(&l, cmd->args, strlen(cmd->args));
	const struct cli_opt *t = cmd->opts;
	for (size_t k = 0; t != NULL && t[k].name != NULL; k++) {
		size_t used = 0;
		if (t[k].alt) {
			/* A run of alternatives: "(--all | --stream S)". */
			cli_append(word, sizeof(word), &used, "(");
			for (; t[k].name != NULL && t[k].alt; k++) {
				cli_append(word, sizeof(word), &used, "%s", used > 1 ? " | " : "");
				cli_append_opt(word, sizeof(word), &used, &t[k]);
			}
			k--;
			cli_append(word, sizeof(word), &used, ")");
		} else {
			/* "--limit N", "[--from VERSION]", "[--type T]...". */
			cli_append(word, sizeof(word), &used, "%s", t[k].required ? "" : "[");
			cli_append_opt(word, sizeof(word), &used, &t[k]);
			cli_append(word, sizeof(word), &used, "%s%s", t[k].required ? "" : "]",
			           t[k].type == CLI_TEXTS ? "..." : "");
		}
		put_word(&l, word, strlen(word));
	}
	return l.col;
}

void cli_put_options(FILE *f, const struct cli_opt *table)
{
	for (const struct cli_opt *o = table; o != NULL && o->name != NULL; o++) {
		char head[64], text[400];
		size_t hused = 0, tused = 0;
		cli_append(head, sizeof(head), &hused, "  ");
		cli_append_opt(head, sizeof(head), &hused, o);
		cli_append(text, sizeof(text), &tused, "%s", o->help);
		if (o->dflt != NULL)
			cli_append(text, sizeof(text), &tused, " (default: %s)", o->dflt);
		fputs(head, f);
		/* The meaning starts at column 26, on a line of its own after a
		 * long head. */
		size_t col = hused;
		if (col + 2 > 26) {
			fputc('\n', f);
			col = 0;
		}
		cli_put_wrapped(f, text, col, 26);
	}
}

void cli_put_command_help(FILE *f, const char *program, const struct cli_command *cmd)
{
	fprintf(f, "usage: %s ", program);
	cli_put_synopsis(f, cmd, strlen("usage: ") + strlen(program) + 1);
	fputs("\n\n", f);
	cli_put_wrapped(f, cmd->help, 0, 0);
	if (cmd->opts != NULL && cmd->opts[0].name != NULL) {
		fputs("\nOptions:\n", f);
		cli_put_options(f, cmd->opts);
	}
}
