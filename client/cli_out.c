/* The CLI's output (cli.h): one line per item, as text for people or, with
 * --json, one JSON object per line for programs; errors as "error: CODE:
 * message" on stderr. */
#include "cli.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"

/* Human output shortens data to this many characters, or bytes as hex. */
#define CLI_TEXT_MAX 80u
#define CLI_HEX_MAX 32u

static bool is_control(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0);
}

/* Valid UTF-8 without control characters other than tab and line breaks. */
static bool printable(const uint8_t *s, size_t n)
{
	uint32_t cp;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_decode(s + i, n - i, &cp);
		if (k == 0 || (is_control(cp) && cp != '\t' && cp != '\n' && cp != '\r'))
			return false;
		i += k;
	}
	return true;
}

/* The escapes of the characters that JSON strings escape (the line breaks
 * and tab are escaped for people too). */
static const char *const escapes[] = {
        ['"'] = "\\\"", ['\\'] = "\\\\", ['\n'] = "\\n", ['\r'] = "\\r",
        ['\t'] = "\\t", ['\b'] = "\\b",  ['\f'] = "\\f",
};

static const char *escape(uint32_t cp)
{
	return cp < sizeof(escapes) / sizeof(escapes[0]) ? escapes[cp] : NULL;
}

void cli_put_text(const uint8_t *s, size_t n, size_t max)
{
	size_t chars = 0;
	for (size_t i = 0; i < n; chars++) {
		if (chars == max) {
			fputs("…", stdout);
			return;
		}
		uint32_t cp;
		size_t k = utf8_decode(s + i, n - i, &cp);
		if (k == 0) {
			printf("\\x%02x", s[i]);
			i++;
			continue;
		}
		if (cp == '\n' || cp == '\r' || cp == '\t')
			fputs(escape(cp), stdout);
		else if (is_control(cp))
			printf("\\u%04" PRIx32, cp);
		else
			fwrite(s + i, 1, k, stdout);
		i += k;
	}
}

void cli_put_cstr(const char *s)
{
	cli_put_text((const uint8_t *)s, strlen(s), SIZE_MAX);
}

void cli_put_data(const uint8_t *s, size_t n)
{
	if (n == 0) {
		fputs("\"\"", stdout);
		return;
	}
	if (printable(s, n)) {
		cli_put_text(s, n, CLI_TEXT_MAX);
		return;
	}
	fputs("0x", stdout);
	for (size_t i = 0; i < n && i < CLI_HEX_MAX; i++)
		printf("%02x", s[i]);
	if (n > CLI_HEX_MAX)
		fputs("…", stdout);
}

void cli_put_one_line(const char *s)
{
	bool first = true;
	while (*s != '\0') {
		while (*s == ' ' || *s == '\t')
			s++;
		const char *nl = strchr(s, '\n');
		size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
		if (n > 0) {
			if (!first)
				fputs("; ", stdout);
			cli_put_text((const uint8_t *)s, n, SIZE_MAX);
			first = false;
		}
		s += n + (nl != NULL ? 1 : 0);
	}
}

void cli_put_hex(const ProtobufCBinaryData *b)
{
	for (size_t k = 0; k < b->len; k++)
		printf("%02x", b->data[k]);
}

void cli_json_str(const uint8_t *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t k = utf8_decode(s + i, n - i, &cp);
		if (k == 0) {
			fputs("\\ufffd", stdout);
			i++;
			continue;
		}
		if (escape(cp) != NULL)
			fputs(escape(cp), stdout);
		else if (cp < 0x20 || cp == 0x7f)
			printf("\\u%04" PRIx32, cp);
		else
			fwrite(s + i, 1, k, stdout);
		i += k;
	}
	putchar('"');
}

void cli_json_cstr(const char *s)
{
	cli_json_str((const uint8_t *)s, strlen(s));
}

void cli_base64(const uint8_t *s, size_t n)
{
	static const char tab[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		/* The last group may be short: '=' stands for the bytes missing. */
		size_t have = n - i < 3 ? n - i : 3;
		uint32_t v = (uint32_t)s[i] << 16;
		if (have > 1)
			v |= (uint32_t)s[i + 1] << 8;
		if (have > 2)
			v |= s[i + 2];
		putchar(tab[v >> 18]);
		putchar(tab[v >> 12 & 63]);
		putchar(have > 1 ? tab[v >> 6 & 63] : '=');
		putchar(have > 2 ? tab[v & 63] : '=');
	}
}

void cli_json_bytes(const char *key, const uint8_t *s, size_t n)
{
	if (utf8_valid((const char *)s, n, NULL)) {
		printf(",\"%s\":", key);
		cli_json_str(s, n);
	} else {
		printf(",\"%s_base64\":\"", key);
		cli_base64(s, n);
		putchar('"');
	}
}

/* ISO-8601 UTC of secs, then frac (".123456Z"); when the time cannot be
 * shown so, the raw figure with its unit. */
static void format_iso(time_t secs, const char *frac, uint64_t raw, const char *unit, char out[40])
{
	struct tm tm;
	if (gmtime_r(&secs, &tm) == NULL || strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, 40, "%" PRIu64 "%s", raw, unit);
		return;
	}
	size_t n = strlen(out);
	snprintf(out + n, 40 - n, "%s", frac);
}

void cli_format_time(uint64_t us, char out[40])
{
	char frac[16];
	snprintf(frac, sizeof(frac), ".%06uZ", (unsigned)(us % 1000000));
	format_iso((time_t)(us / 1000000), frac, us, "us", out);
}

void cli_format_time_ms(uint64_t ms, char out[40])
{
	char frac[16];
	snprintf(frac, sizeof(frac), ".%03uZ", (unsigned)(ms % 1000));
	format_iso((time_t)(ms / 1000), frac, ms, "ms", out);
}

const char *cli_name_of(const char *const *names, size_t n, int value, const char *dflt)
{
	return value >= 0 && (size_t)value < n && names[value] != NULL ? names[value] : dflt;
}

const char *cli_code_name(Whizbang__V1__ErrorCode code)
{
	return code == WHIZBANG__V1__ERROR_CODE__OK ? "OK" : wb_error_name((int)code);
}

/* ---------------------------------------------------------------- optext's formatters */

/* Makes room for need bytes and a NUL; false when out of memory. */
static bool tbuf_fit(struct cli_tbuf *b, size_t need)
{
	if (need < b->cap)
		return true;
	size_t cap = need + 1 > 256 ? need + 1 : 256;
	char *p = realloc(b->p, cap);
	if (p == NULL)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

/* One of optext's snprintf-like formatters, over x with max_ids. */
typedef size_t (*formatter)(const void *x, size_t max_ids, char *buf, size_t len);

static size_t format_value(const void *x, size_t max_ids, char *buf, size_t len)
{
	(void)max_ids;
	return optext_format_value(x, buf, len);
}

static size_t format_op(const void *x, size_t max_ids, char *buf, size_t len)
{
	(void)max_ids;
	return optext_format_op(x, buf, len);
}

static size_t format_explosion(const void *x, size_t max_ids, char *buf, size_t len)
{
	return optext_format_explosion(x, max_ids, buf, len);
}

/* Formats x into b, grown to fit; what names it when memory runs out. */
static const char *tbuf_format(struct cli_tbuf *b, formatter format, const void *x, size_t max_ids,
                               const char *nomem)
{
	size_t n = format(x, max_ids, b->p, b->cap);
	if (n >= b->cap) {
		if (!tbuf_fit(b, n))
			return nomem;
		format(x, max_ids, b->p, b->cap);
	}
	return b->p;
}

const char *cli_value_text(const Whizbang__V1__Value *v, struct cli_tbuf *b)
{
	return tbuf_format(b, format_value, v, 0, "(no memory to format the value)");
}

const char *cli_explosion_text(const Whizbang__V1__Explosion *x, size_t max_ids, struct cli_tbuf *b)
{
	return tbuf_format(b, format_explosion, x, max_ids, "(no memory to format the explosion)");
}

const char *cli_op_text(const Whizbang__V1__Op *op, struct cli_tbuf *b)
{
	return tbuf_format(b, format_op, op, 0, "(no memory to format the operation)");
}

/* ---------------------------------------------------------------- errors and the connection */

int cli_report(const struct cli *cli, int code, const char *msg)
{
	if (msg == NULL || msg[0] == '\0')
		msg = wb_strerror(code);
	fflush(stdout);
	fprintf(stderr, "error: %s: %s\n", wb_error_name(code), msg);
	if (cli->json) {
		printf("{\"error\":\"%s\",\"message\":", wb_error_name(code));
		cli_json_cstr(msg);
		if (code == WB_WRONG_EXPECTED_VERSION && cli->client != NULL)
			printf(",\"actual_version\":%" PRId64, wb_actual_version(cli->client));
		fputs("}\n", stdout);
	}
	return EXIT_FAILURE;
}

int cli_reportf(const struct cli *cli, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cli_report(cli, code, msg);
}

int cli_report_client(const struct cli *cli, int code)
{
	return cli_report(cli, code, wb_errmsg(cli->client));
}

int cli_report_parse(const struct cli *cli, const char *text, const struct optext_error *err,
                     const char *suffix, int status)
{
	char msg[512];
	/* The message names its column already. */
	if (strncmp(err->message, "column ", 7) == 0)
		snprintf(msg, sizeof(msg), "%s%s", err->message, suffix);
	else
		snprintf(msg, sizeof(msg), "column %zu: %s%s", err->column, err->message, suffix);
	fflush(stdout);
	fprintf(stderr, "error: %s: %s\n", wb_error_name(WB_INVALID_EXPRESSION), msg);
	if (cli->json) {
		printf("{\"error\":\"%s\",\"message\":", wb_error_name(WB_INVALID_EXPRESSION));
		cli_json_cstr(msg);
		printf(",\"column\":%zu}\n", err->column);
	}
	/* The caret only lines up under one line of printable text. */
	size_t n = strlen(text);
	uint32_t cp;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_decode((const uint8_t *)text + i, n - i, &cp);
		if (k == 0 || (is_control(cp) && cp != '\t'))
			return status;
		i += k;
	}
	fprintf(stderr, "  %s\n  ", text);
	size_t col = 1;
	for (size_t i = 0; i < n && col < err->column; col++) {
		size_t k = utf8_decode((const uint8_t *)text + i, n - i, &cp);
		fputc(cp == '\t' ? '\t' : ' ', stderr);
		i += k;
	}
	fputs("^\n", stderr);
	return status;
}
