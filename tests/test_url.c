/* Connection URLs (client/wb_url.h) against the table every client must
 * pass, which lives in docs/PROTOCOL.md ("Connection URLs") and is read from
 * there: the table the document shows is the table that runs, with no
 * second copy here to drift from it. A row connects (user, TLS settings and
 * address as wb_connect() takes it) or is refused (WB_E_INVAL, with a
 * message holding the words the row gives). The controls: a row whose
 * expectation is changed in any column is caught, so the check can fail;
 * and messages never repeat a password or a parameter's value. */
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
	/* The TLS settings as tls_text() writes them; "" for none. */
	char tls[256];
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
		const char *bar[5];
		const char *q = line;
		for (int k = 0; k < 5; k++) {
			q = memchr(q, '|', (size_t)(eol - q));
			cr_assert_not_null(q, "a row without five '|': %.*s", (int)(eol - line),
			                   line);
			bar[k] = q++;
		}
		cr_assert_lt(n, max);
		struct row *r = &rows[n++];
		cell(bar[0] + 1, bar[1], r->url, sizeof(r->url));
		cell(bar[1] + 1, bar[2], r->user, sizeof(r->user));
		cell(bar[2] + 1, bar[3], r->tls, sizeof(r->tls));
		char last[256];
		cell(bar[3] + 1, bar[4], last, sizeof(last));
		r->refused = strncmp(last, "refused: ", 9) == 0;
		snprintf(r->want, sizeof(r->want), "%s", r->refused ? last + 9 : last);
	}
	free(doc);
	return n;
}

/* The TLS settings of u as the table's column shows them: "tls", then
 * ca=, cert=, key= and name= for those given, and "external"; "" for a
 * plaintext URL. */
static void tls_text(const struct wb_url *u, char *out, size_t len)
{
	size_t used = 0;
	out[0] = '\0';
	const struct {
		const char *key;
		const char *v;
	} parts[] = {{"ca", u->tls_ca_file},
	             {"cert", u->tls_cert_file},
	             {"key", u->tls_key_file},
	             {"name", u->tls_server_name}};
	if (u->tls)
		used += (size_t)snprintf(out + used, len - used, "tls");
	for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]) && used < len; k++)
		if (parts[k].v[0] != '\0')
			used += (size_t)snprintf(out + used, len - used, " %s=%s", parts[k].key,
			                         parts[k].v);
	if (u->external && used < len)
		snprintf(out + used, len - used, "%sexternal", used > 0 ? " " : "");
}

/* Whether wb_url_parse() gives what row r says; why it does not into why. */
static bool holds(const struct row *r, char *why, size_t len)
{
	static struct wb_url u;
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
	char tls[512];
	tls_text(&u, tls, sizeof(tls));
	if (strcmp(tls, r->tls) != 0) {
		snprintf(why, len, "%.100s: TLS \"%.200s\", not \"%.200s\"", r->url, tls, r->tls);
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
	cr_assert_geq(n - refused, 16, "%zu URLs that connect", n - refused);
	cr_assert_geq(refused, 30, "%zu refused URLs", refused);
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
			/* Another address, another user, other TLS settings, or
			 * refused. */
			snprintf(r.want, sizeof(r.want), "%s:1", rows[i].want);
			cr_assert_not(holds(&r, why, sizeof(why)), "%s", rows[i].url);
			r = rows[i];
			snprintf(r.user, sizeof(r.user), "%s", r.user[0] != '\0' ? "" : "mallory");
			cr_assert_not(holds(&r, why, sizeof(why)), "%s", rows[i].url);
			r = rows[i];
			snprintf(r.tls, sizeof(r.tls), "%s", r.tls[0] != '\0' ? "" : "tls");
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
	        "whizbang://alice:s3cret@db1",
	        "whizbang://alice:s3cret@db1:0",
	        "whizbang://db1?key=s3cret",
	        "whizbang://db1?password=s3cret",
	        "whizbang://db1?tls=true&x=s3cret",
	        "whizbang+unix:///w.sock?cert=s3cret",
	        "whizbang://db1?tls=s3cret",
	        "whizbang://db1?authMechanism=s3cret",
	        "whizbang://db1?tlsServerName=s3cret%20x",
	        "whizbang://db1?tlsCaFile=s3cret%ZZ",
	        "whizbang://db1?tlsCaFile=s3cret&tlsCaFile=s3cret",
	        "whizbang://db1?tls=false&tlsKeyFile=s3cret",
	        "whizbang+unix:///w.sock?tlsKeyFile=s3cret",
	        "whizbang://db1?tlsCertFile=s3cret",
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
	/* A TLS file of 1024 bytes fits; 1025 does not. */
	static char file[1100], furl[1200];
	memset(file, 'f', sizeof(file));
	file[1024] = '\0';
	snprintf(furl, sizeof(furl), "whizbang://h?tlsCaFile=%s", file);
	cr_assert_eq(wb_url_parse(&u, furl, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(strlen(u.tls_ca_file), 1024);
	file[1024] = 'f';
	file[1025] = '\0';
	snprintf(furl, sizeof(furl), "whizbang://h?tlsCaFile=%s", file);
	cr_assert_eq(wb_url_parse(&u, furl, msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_not_null(strstr(msg, "longer than 1024 bytes"), "%s", msg);
	/* A NULL message buffer is allowed. */
	cr_assert_eq(wb_url_parse(&u, "whizbang://", NULL, 0), WB_E_INVAL);
	cr_assert(wb_url_is_url("whizbang://x"));
	cr_assert_not(wb_url_is_url("127.0.0.1:7411"));
}

/* What a URL says of TLS reaches wb_connect()'s options, and only that. */
Test(url, options_carry_the_tls_settings)
{
	struct wb_url u;
	char msg[256];
	cr_assert_eq(wb_url_parse(&u,
	                          "whizbang://db1?tlsCaFile=/c/ca.crt&tlsCertFile=a.crt&"
	                          "tlsKeyFile=a.key&tlsServerName=db1.example&authMechanism="
	                          "EXTERNAL",
	                          msg, sizeof(msg)),
	             0, "%s", msg);
	struct wb_options o = {.client_name = "kept", .timeout_ms = 7};
	wb_url_options(&u, &o);
	cr_assert(o.tls);
	cr_assert_str_eq(o.tls_ca_file, "/c/ca.crt");
	cr_assert_str_eq(o.tls_cert_file, "a.crt");
	cr_assert_str_eq(o.tls_key_file, "a.key");
	cr_assert_str_eq(o.tls_server_name, "db1.example");
	cr_assert(o.external);
	cr_assert_str_eq(o.client_name, "kept");
	cr_assert_eq(o.timeout_ms, 7);
	/* The control: a plaintext URL leaves every TLS option off. */
	cr_assert_eq(wb_url_parse(&u, "whizbang://db1", msg, sizeof(msg)), 0);
	wb_url_options(&u, &o);
	cr_assert_not(o.tls);
	cr_assert_null(o.tls_ca_file);
	cr_assert_null(o.tls_cert_file);
	cr_assert_null(o.tls_key_file);
	cr_assert_null(o.tls_server_name);
	cr_assert_not(o.external);
}
