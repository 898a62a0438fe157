/* Connection URLs (client/wb_url.h) against the table every client must
 * pass, which lives in docs/PROTOCOL.md ("Connection URLs") and is read from
 * there: the table the document shows is the table that runs, with no
 * second copy here to drift from it. A row connects (user and address as
 * wb_connect() takes it) or is refused (WB_E_INVAL, with a message holding
 * the words the row gives). The controls: a row whose expectation is changed
 * in any column is caught, so the check can fail; and messages never repeat
 * a password or a parameter's value. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wb_error.h"
#include "wb_url.h"

TestSuite(url);

/* One row of the table. */
struct row {
	char url[256];
	char user[256];
	bool refused;
	/* The address, or the words of the refusal. */
	char want[256];
};

/* The repository's file rel (from this source file's directory). */
static char *slurp_repo(const char *rel)
{
	const char *me = __FILE__;
	const char *slash = strrchr(me, '/');
	int dir = slash != NULL ? (int)(slash - me) : 0;
	char path[1024];
	snprintf(path, sizeof(path), "%.*s%s../%s", dir, me, slash != NULL ? "/" : "", rel);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, m);
	fclose(f);
	fclose(m);
	return text;
}

/* The text of cell between its bounds, trimmed; a cell in backticks gives
 * what is inside them. */
static void cell(const char *from, const char *to, char *out, size_t cap)
{
	while (from < to && *from == ' ')
		from++;
	while (to > from && to[-1] == ' ')
		to--;
	if (to - from >= 2 && from[0] == '`' && to[-1] == '`') {
		from++;
		to--;
	}
	cr_assert_lt((size_t)(to - from), cap);
	memcpy(out, from, (size_t)(to - from));
	out[to - from] = '\0';
}

/* Reads the rows of the table under "### Connection URLs" into rows (at
 * most max); returns how many. */
static size_t read_table(struct row *rows, size_t max)
{
	char *doc = slurp_repo("docs/PROTOCOL.md");
	const char *sec = strstr(doc, "\n### Connection URLs\n");
	cr_assert_not_null(sec, "docs/PROTOCOL.md has no section \"Connection URLs\"");
	const char *end = strstr(sec + 1, "\n#");
	cr_assert_not_null(end);
	size_t n = 0;
	for (const char *p = strstr(sec, "\n| `"); p != NULL && p < end;
	     p = strstr(p + 1, "\n| `")) {
		const char *line = p + 1;
		const char *eol = strchr(line, '\n');
		const char *bar[4];
		const char *q = line;
		for (int k = 0; k < 4; k++) {
			q = memchr(q, '|', (size_t)(eol - q));
			cr_assert_not_null(q, "a row without four '|': %.*s", (int)(eol - line),
			                   line);
			bar[k] = q++;
		}
		cr_assert_lt(n, max);
		struct row *r = &rows[n++];
		cell(bar[0] + 1, bar[1], r->url, sizeof(r->url));
		cell(bar[1] + 1, bar[2], r->user, sizeof(r->user));
		char third[256];
		cell(bar[2] + 1, bar[3], third, sizeof(third));
		r->refused = strncmp(third, "refused: ", 9) == 0;
		snprintf(r->want, sizeof(r->want), "%s", r->refused ? third + 9 : third);
	}
	free(doc);
	return n;
}

/* Whether wb_url_parse() gives what row r says; why it does not into why. */
static bool holds(const struct row *r, char *why, size_t len)
{
	struct wb_url u;
	memset(&u, 0x5a, sizeof(u));
	char msg[256] = "";
	int rc = wb_url_parse(&u, r->url, msg, sizeof(msg));
	if (r->refused) {
		if (rc != WB_E_INVAL) {
			snprintf(why, len, "%.100s: accepted as %.100s, not refused", r->url,
			         u.address);
			return false;
		}
		if (strstr(msg, r->want) == NULL) {
			snprintf(why, len,
			         "%.100s: refused with \"%.200s\", which lacks \"%.100s\"", r->url,
			         msg, r->want);
			return false;
		}
		/* *out is written only on success. */
		if (u.address[0] != 0x5a) {
			snprintf(why, len, "%.100s: refused, but *out was written", r->url);
			return false;
		}
		return true;
	}
	if (rc != 0) {
		snprintf(why, len, "%.100s: refused (%.200s)", r->url, msg);
		return false;
	}
	if (strcmp(u.address, r->want) != 0 || strcmp(u.user, r->user) != 0) {
		snprintf(why, len,
		         "%.100s: user \"%.100s\" address \"%.100s\", not \"%.100s\" \"%.100s\"",
		         r->url, u.user, u.address, r->user, r->want);
		return false;
	}
	if (u.unix_socket != (strncmp(r->want, "unix:", 5) == 0)) {
		snprintf(why, len, "%.100s: unix_socket is %d", r->url, u.unix_socket);
		return false;
	}
	return true;
}

Test(url, the_documented_table)
{
	static struct row rows[128];
	size_t n = read_table(rows, 128);
	size_t refused = 0;
	for (size_t i = 0; i < n; i++) {
		char why[600];
		cr_expect(holds(&rows[i], why, sizeof(why)), "%s", why);
		refused += rows[i].refused;
	}
	cr_assert_geq(n - refused, 8, "%zu URLs that connect", n - refused);
	cr_assert_geq(refused, 15, "%zu refused URLs", refused);
}

/* The controls: each kind of changed expectation is caught. */
Test(url, a_wrong_row_is_caught)
{
	static struct row rows[128];
	size_t n = read_table(rows, 128);
	size_t changed = 0;
	char why[600];
	for (size_t i = 0; i < n; i++) {
		struct row r = rows[i];
		if (r.refused) {
			/* Refused for another reason. */
			snprintf(r.want, sizeof(r.want), "%s", "the moon is made of cheese");
			cr_assert_not(holds(&r, why, sizeof(why)), "%s", rows[i].url);
			/* Said to connect. */
			r = rows[i];
			r.refused = false;
			snprintf(r.want, sizeof(r.want), "%s", "db1:7411");
			cr_assert_not(holds(&r, why, sizeof(why)), "%s", rows[i].url);
		} else {
			/* Another address, another user, or refused. */
			snprintf(r.want, sizeof(r.want), "%s:1", rows[i].want);
			cr_assert_not(holds(&r, why, sizeof(why)), "%s", rows[i].url);
			r = rows[i];
			snprintf(r.user, sizeof(r.user), "%s", r.user[0] != '\0' ? "" : "mallory");
			cr_assert_not(holds(&r, why, sizeof(why)), "%s", rows[i].url);
			r = rows[i];
			r.refused = true;
			cr_assert_not(holds(&r, why, sizeof(why)), "%s", rows[i].url);
		}
		changed++;
	}
	cr_assert_eq(changed, n);
	cr_assert_geq(n, 20);
}

Test(url, messages_never_repeat_a_password_or_a_value)
{
	static const char *const urls[] = {
	        "whizbang://alice:s3cret@db1",   "whizbang://alice:s3cret@db1:0",
	        "whizbang://db1?key=s3cret",     "whizbang://db1?password=s3cret",
	        "whizbang://db1?tls=1&x=s3cret", "whizbang+unix:///w.sock?cert=s3cret",
	};
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		struct wb_url u;
		char msg[256] = "";
		cr_assert_eq(wb_url_parse(&u, urls[i], msg, sizeof(msg)), WB_E_INVAL, "%s",
		             urls[i]);
		cr_assert_neq(msg[0], '\0');
		cr_assert_null(strstr(msg, "s3cret"), "%s: \"%s\"", urls[i], msg);
	}
	/* The control: the same search finds the word where it is. */
	cr_assert_not_null(strstr(urls[0], "s3cret"));
}

Test(url, bounds)
{
	struct wb_url u;
	char url[400], msg[256];
	/* A socket path of 107 bytes fits; 108 does not. */
	char path[120];
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	snprintf(url, sizeof(url), "whizbang+unix://%s", path);
	cr_assert_eq(wb_url_parse(&u, url, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(strlen(u.address), 5 + 107);
	path[107] = 'p';
	path[108] = '\0';
	snprintf(url, sizeof(url), "whizbang+unix://%s", path);
	cr_assert_eq(wb_url_parse(&u, url, msg, sizeof(msg)), WB_E_INVAL);
	/* A host of 253 bytes fits; 254 does not. */
	char host[260];
	memset(host, 'h', sizeof(host));
	host[253] = '\0';
	snprintf(url, sizeof(url), "whizbang://%s:1", host);
	cr_assert_eq(wb_url_parse(&u, url, msg, sizeof(msg)), 0, "%s", msg);
	host[253] = 'h';
	host[254] = '\0';
	snprintf(url, sizeof(url), "whizbang://%s:1", host);
	cr_assert_eq(wb_url_parse(&u, url, msg, sizeof(msg)), WB_E_INVAL);
	/* A user of 255 bytes fits; 256 does not. */
	char user[260];
	memset(user, 'u', sizeof(user));
	user[255] = '\0';
	snprintf(url, sizeof(url), "whizbang://%s@h", user);
	cr_assert_eq(wb_url_parse(&u, url, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(strlen(u.user), 255);
	user[255] = 'u';
	user[256] = '\0';
	snprintf(url, sizeof(url), "whizbang://%s@h", user);
	cr_assert_eq(wb_url_parse(&u, url, msg, sizeof(msg)), WB_E_INVAL);
	/* A NULL message buffer is allowed. */
	cr_assert_eq(wb_url_parse(&u, "whizbang://", NULL, 0), WB_E_INVAL);
	cr_assert(wb_url_is_url("whizbang://x"));
	cr_assert_not(wb_url_is_url("127.0.0.1:7411"));
}
