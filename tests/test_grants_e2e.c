/* Custom roles over the wire: the permission matrix of test_access_e2e
 * for roles an administrator makes, with a resource in and out of their
 * grants. One real whizbangd (--anonymous-role=none) for the whole file:
 * the administrator (the server's own user on its Unix socket) makes the
 * roles and an API token for each, and each role's connection logs in with
 * its token in Hello. Checked:
 * - for every kind of resource that the access table names by a field, a
 *   role with every permission of the kind on "in-": every request body of
 *   that kind in the table is not refused on "in-x" and refused on "out-x"
 *   (the lease requests on a lease of projection in-x or out-x), and the
 *   kind's requests that name no resource are refused;
 * - deny wins: allow on "in-", deny on "in-secret-";
 * - reads of $all filtered by a stream prefix, and a subscription to one
 *   stream, with streams:read on "in-";
 * - permissions within a kind: streams:read alone writes nothing;
 * - a narrowed role reaches an open connection with its next request.
 * Every expectation is stated here and also checked against the server's
 * own table (srv_access_check) with the role's grants, so that the test and
 * the table cannot drift apart unnoticed; the wire must then agree.
 *
 * The negative control (tests/meson.build runs it, and it must fail): with
 * WB_GRANTS_E2E_LIE set, the server is given every grant with "out-" where
 * the test means "in-". */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "access_requests.h"
#include "e2e_util.h"
#include "wb_error.h"

TestSuite(grants_e2e, .fini = e2e_suite_fini, .timeout = 240);

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

#define GRANTS_MAX 4

/* A custom role as the test means it, its grants parsed for the table's
 * decisions, and the API token that logs in as it. */
struct role {
	char name[40];
	char text[GRANTS_MAX][200];
	size_t n;
	struct auth_grant grants[GRANTS_MAX];
	struct auth_role role;
	const struct auth_role *roles[1];
	struct auth_subject subject;
	char token[128];
};

static struct wb_client *admin;
static uint64_t next_id = 10;

/* The control's lie: text with the prefix "in-" of its grant as "out-". */
static void lie(const char *text, char *out, size_t cap)
{
	const char *p = strrchr(text, ':');
	cr_assert_not_null(p);
	if (strncmp(p + 1, "in-", 3) == 0)
		snprintf(out, cap, "%.*s:out-%s", (int)(p - text), text, p + 4);
	else
		snprintf(out, cap, "%s", text);
}

/* Sends r's grants to the server as role r->name (PutRole). */
static void put_role(const struct role *r)
{
	char lied[GRANTS_MAX][220];
	const char *g[GRANTS_MAX];
	bool lying = getenv("WB_GRANTS_E2E_LIE") != NULL;
	for (size_t i = 0; i < r->n; i++) {
		if (lying) {
			lie(r->text[i], lied[i], sizeof(lied[i]));
			g[i] = lied[i];
		} else {
			g[i] = r->text[i];
		}
	}
	int rc = wb_put_role(admin, r->name, g, r->n);
	cr_assert_eq(rc, 0, "PutRole %s: %s", r->name, wb_errmsg(admin));
}

/* (Re)defines r as name with grants[0..n): parses them for the table's
 * decisions and puts the role on the server. */
static void define_role(struct role *r, const char *name, const char *const *grants, size_t n)
{
	cr_assert_leq(n, GRANTS_MAX);
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->n = n;
	for (size_t i = 0; i < n; i++) {
		char why[200];
		snprintf(r->text[i], sizeof(r->text[i]), "%s", grants[i]);
		cr_assert_eq(auth_grant_parse(r->text[i], strlen(r->text[i]), &r->grants[i], why,
		                              sizeof(why)),
		             0, "grant \"%s\": %s", grants[i], why);
	}
	r->role = (struct auth_role){r->name, r->grants, n};
	r->roles[0] = &r->role;
	r->subject = (struct auth_subject){r->roles, 1};
	put_role(r);
}

/* define_role(), and an API token for the role. */
static void make_role(struct role *r, const char *name, const char *const *grants, size_t n)
{
	define_role(r, name, grants, n);
	Whizbang__V1__CreateTokenResult *t = NULL;
	int rc = wb_create_token(admin, name, 0, "test_grants_e2e", &t);
	cr_assert_eq(rc, 0, "CreateToken %s: %s", name, wb_errmsg(admin));
	snprintf(r->token, sizeof(r->token), "%s", t->token);
	wb_token_result_free(t);
}

/* Sends req with a fresh id on fd and returns the answer to it; pushes of
 * an earlier Subscribe or JoinConsumer on fd are skipped. */
static Response *call(int fd, Request *req)
{
	req->id = next_id++;
	cr_assert_eq(e2e_send_request(fd, req), 0, "the server closed the connection");
	for (;;) {
		Response *r = NULL;
		int rc = e2e_recv_response(fd, E2E_CLIENT_TIMEOUT_MS, &r);
		cr_assert_eq(rc, 0, "no answer to request %llu (%d)", (unsigned long long)req->id,
		             rc);
		if (r->id == req->id &&
		    r->body_case != WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM)
			return r;
		whizbang__v1__response__free_unpacked(r, NULL);
	}
}

/* A connection logged in with r's token, whose HelloResult names r. */
static int connect_as(const struct role *r)
{
	int fd = e2e_suite_raw();
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.client_name = "grants-e2e";
	h.token.data = (uint8_t *)r->token;
	h.token.len = strlen(r->token);
	Request req = E2E_REQUEST(HELLO, hello, &h);
	Response *resp = call(fd, &req);
	cr_assert_eq(e2e_error_code(resp), 0, "Hello with %s's token refused", r->name);
	cr_assert_eq(resp->hello->n_roles, 1u);
	cr_assert_str_eq(resp->hello->roles[0], r->name);
	whizbang__v1__response__free_unpacked(resp, NULL);
	return fd;
}

static const char *body_name(Whizbang__V1__Request__BodyCase body)
{
	const ProtobufCFieldDescriptor *f =
	        protobuf_c_message_descriptor_get_field(&whizbang__v1__request__descriptor, body);
	return f != NULL ? f->name : "?";
}

/* Where a check's request names its resource. */
struct target {
	const char *name;   /* the rule's name (field, group, lease's projection) */
	const char *source; /* the stream a Subscribe or CreateConsumer reads */
	uint64_t seq;       /* for the lease requests: a lease of projection name */
};

/* Sends rule's request naming t on fd as role r, and checks that it is
 * refused with PERMISSION_DENIED exactly when allow is false; the table,
 * given r's grants, must decide the same. Returns whether it was refused. */
static bool check(int fd, const struct role *r, const struct srv_access_rule *rule, struct target t,
                  bool allow)
{
	struct access_request ar;
	access_request_make(&ar, rule, t.name, t.source, t.seq);
	char why[300];
	int table = rule->name == ACCESS_BY_LEASE
	                    ? srv_access_allowed(&r->subject, rule->kind, rule->perm, t.name, why,
	                                         sizeof(why))
	                    : srv_access_check(&r->subject, &ar.req, why, sizeof(why));
	cr_assert_eq(table == 0, allow,
	             "the table %s %s on \"%s\" for role %s, the test expects %s",
	             table == 0 ? "allows" : "refuses", body_name(rule->body), t.name, r->name,
	             allow ? "allowed" : "refused");
	Response *resp = call(fd, &ar.req);
	int got = e2e_error_code(resp);
	const char *msg = resp->error != NULL ? resp->error->message : "";
	if (allow)
		cr_assert(got != WB_PERMISSION_DENIED && got != WB_UNAUTHENTICATED,
		          "role %s, %s on \"%s\": refused (%s), granted", r->name,
		          body_name(rule->body), t.name, msg);
	else
		cr_assert_eq(got, WB_PERMISSION_DENIED,
		             "role %s, %s on \"%s\": answered %d (%s), not granted", r->name,
		             body_name(rule->body), t.name, got, msg);
	whizbang__v1__response__free_unpacked(resp, NULL);
	access_request_free(&ar);
	return !allow;
}

/* Whether the table names resources of kind by a field of the request. */
static bool kind_has_names(unsigned kind)
{
	size_t nr;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	for (size_t i = 0; i < nr; i++)
		if (rules[i].kind == kind && rules[i].name == ACCESS_FIELD)
			return true;
	return false;
}

/* "KIND:P1,P2,...:prefix" with every permission of kind. */
static void every_perm(unsigned kind, const char *prefix, char *out, size_t cap)
{
	size_t len = (size_t)snprintf(out, cap, "%s:", auth_kind_name(kind));
	uint32_t perms = auth_kind_perms(kind);
	for (uint32_t bit = 1; bit != 0 && bit <= perms; bit <<= 1)
		if (perms & bit)
			len += (size_t)snprintf(out + len, cap - len, "%s%s",
			                        out[len - 1] == ':' ? "" : ",",
			                        auth_perm_name(kind, bit));
	snprintf(out + len, cap - len, ":%s", prefix);
}

/* A lease of projection, held by the administrator: its sequence. */
static uint64_t admin_lease(const char *projection)
{
	struct wb_lease_args a = {.projection = projection, .duration_ms = 120000};
	struct wb_lease_grant g;
	size_t n = 0;
	int rc = wb_lease(admin, &a, &g, 1, &n);
	cr_assert_eq(rc, 0, "Lease %s: %s", projection, wb_errmsg(admin));
	cr_assert_eq(n, 1u);
	return g.sequence;
}

/* Every body of kind in the table, against a role with every permission of
 * kind on "in-"; returns how many bodies were checked. */
static size_t kind_matrix(unsigned kind, uint64_t lease_in, uint64_t lease_out)
{
	struct role r;
	char name[40], all[200];
	snprintf(name, sizeof(name), "g-%s", auth_kind_name(kind));
	every_perm(kind, "in-", all, sizeof(all));
	/* A consumer group reads a source, which needs its own grant. */
	const char *grants[] = {all, "streams:read:in-"};
	make_role(&r, name, grants, kind == AUTH_GROUPS ? 2 : 1);
	int fd = connect_as(&r);

	size_t nr, checked = 0, of_kind = 0;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	for (size_t i = 0; i < nr; i++) {
		const struct srv_access_rule *rule = &rules[i];
		if (rule->name == ACCESS_OPEN || rule->kind != kind)
			continue;
		of_kind++;
		switch (rule->name) {
		case ACCESS_NONE:
			/* A grant on names covers no action without one. */
			check(fd, &r, rule, (struct target){"", NULL, 0}, false);
			checked++;
			break;
		case ACCESS_FIELD:
		case ACCESS_BY_LEASE:
		case ACCESS_SPECIAL:
			check(fd, &r, rule, (struct target){"in-x", "in-x", lease_in}, true);
			check(fd, &r, rule, (struct target){"out-x", "in-x", lease_out}, false);
			checked++;
			if (rule->body == WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER)
				/* A group of its own reading a stream it may not. */
				check(fd, &r, rule, (struct target){"in-y", "out-x", 0}, false);
			break;
		default:
			cr_assert_fail("rule of %s: name %u", body_name(rule->body), rule->name);
		}
	}
	close(fd);
	cr_assert_eq(checked, of_kind);
	return checked;
}

/* The rules of the table for streams named by a field. */
static size_t stream_rules(const struct srv_access_rule **out, size_t cap)
{
	size_t nr, n = 0;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	for (size_t i = 0; i < nr; i++)
		if (rules[i].kind == AUTH_STREAMS && rules[i].name == ACCESS_FIELD) {
			cr_assert_lt(n, cap, "more stream rules than the test holds");
			out[n++] = &rules[i];
		}
	return n;
}

static void read_all(int fd, const struct role *r, const char *prefix, bool allow)
{
	const struct srv_access_rule *rule = srv_access_rule(WHIZBANG__V1__REQUEST__BODY_READ_ALL);
	cr_assert_not_null(rule);
	struct access_request ar;
	access_request_make(&ar, rule, prefix, NULL, 0);
	ar.req.read_all->stream_prefix = (char *)prefix;
	char why[300];
	int table = srv_access_check(&r->subject, &ar.req, why, sizeof(why));
	cr_assert_eq(table == 0, allow, "the table decides ReadAll \"%s\" for %s otherwise (%s)",
	             prefix, r->name, why);
	Response *resp = call(fd, &ar.req);
	int got = e2e_error_code(resp);
	if (allow)
		cr_assert_eq(got, 0, "role %s: ReadAll with prefix \"%s\" answered %d (%s)",
		             r->name, prefix, got, resp->error != NULL ? resp->error->message : "");
	else
		cr_assert_eq(got, WB_PERMISSION_DENIED,
		             "role %s: ReadAll with prefix \"%s\" answered %d, not granted",
		             r->name, prefix, got);
	whizbang__v1__response__free_unpacked(resp, NULL);
	access_request_free(&ar);
}

/* An append of one event to stream on fd: its error code. */
static int append(int fd, const char *stream)
{
	Whizbang__V1__NewEvent ev = WHIZBANG__V1__NEW_EVENT__INIT;
	ev.type = "t";
	Whizbang__V1__NewEvent *evs[] = {&ev};
	Whizbang__V1__AppendEvents m = WHIZBANG__V1__APPEND_EVENTS__INIT;
	m.stream = (char *)stream;
	m.n_events = 1;
	m.events = evs;
	Request req = E2E_REQUEST(APPEND_EVENTS, append_events, &m);
	Response *resp = call(fd, &req);
	int code = e2e_error_code(resp);
	whizbang__v1__response__free_unpacked(resp, NULL);
	return code;
}

Test(grants_e2e, custom_roles_get_exactly_their_grants_over_the_wire)
{
	const char *args[] = {"--anonymous-role=none", "--metrics-listen=off", NULL};
	e2e_suite_start(args);
	char addr[200], err[300];
	snprintf(addr, sizeof(addr), "unix:%s/whizbangd.sock", e2e_srv.data_dir);
	struct wb_options o = {.client_name = "grants-admin", .timeout_ms = E2E_CLIENT_TIMEOUT_MS};
	cr_assert_eq(wb_connect(&admin, addr, &o, err, sizeof(err)), 0, "%s", err);
	/* Leases the lease requests (Extend, Release, Stage, Commit) name:
	 * their projection is what the lease module decides on. */
	uint64_t lease_in = admin_lease("in-x"), lease_out = admin_lease("out-x");

	/* Every kind named by a field, every body of that kind. */
	size_t kinds = 0, bodies = 0;
	for (unsigned k = 1; k <= AUTH_KIND_MAX; k++) {
		if (!kind_has_names(k))
			continue;
		bodies += kind_matrix(k, lease_in, lease_out);
		kinds++;
	}
	/* Not vacuous: streams, groups, projections, entities, indexes. */
	cr_assert_geq(kinds, 5u, "%zu kinds", kinds);
	cr_assert_geq(bodies, 25u, "%zu bodies", bodies);

	/* Deny wins: a deny under an allow refuses its names only. */
	const struct srv_access_rule *srules[16];
	size_t ns = stream_rules(srules, 16);
	cr_assert_geq(ns, 6u);
	char all[200], secret[200], deny[220];
	every_perm(AUTH_STREAMS, "in-", all, sizeof(all));
	every_perm(AUTH_STREAMS, "in-secret-", secret, sizeof(secret));
	snprintf(deny, sizeof(deny), "deny %s", secret);
	struct role dr;
	const char *dg[] = {all, deny};
	make_role(&dr, "g-deny", dg, 2);
	int fd = connect_as(&dr);
	for (size_t i = 0; i < ns; i++) {
		check(fd, &dr, srules[i], (struct target){"in-x", NULL, 0}, true);
		check(fd, &dr, srules[i], (struct target){"in-secret-x", NULL, 0}, false);
	}
	close(fd);

	/* $all filtered by a prefix: streams:read over the whole prefix. */
	struct role rd, rdd;
	const char *rg[] = {"streams:read:in-"};
	make_role(&rd, "g-read", rg, 1);
	fd = connect_as(&rd);
	read_all(fd, &rd, "in-", true);
	read_all(fd, &rd, "in-sub-", true);
	read_all(fd, &rd, "", false);
	read_all(fd, &rd, "out-", false);
	read_all(fd, &rd, "in", false); /* wider than the grant: "inx" too */
	/* A subscription to one stream is a read of that stream. */
	const struct srv_access_rule *sub = srv_access_rule(WHIZBANG__V1__REQUEST__BODY_SUBSCRIBE);
	cr_assert_not_null(sub);
	check(fd, &rd, sub, (struct target){"in-x", "in-x", 0}, true);
	check(fd, &rd, sub, (struct target){"out-x", "out-x", 0}, false);
	/* Permissions within a kind: read alone, every write refused. */
	uint32_t refused = 0;
	for (size_t i = 0; i < ns; i++) {
		bool allow = srules[i]->perm == AUTH_STREAM_READ;
		if (check(fd, &rd, srules[i], (struct target){"in-x", NULL, 0}, allow))
			refused |= srules[i]->perm;
	}
	cr_assert_eq(refused, AUTH_STREAM_APPEND | AUTH_STREAM_DELETE | AUTH_STREAM_METADATA,
	             "refused permissions 0x%x", refused);
	close(fd);
	const char *rdg[] = {"streams:read:in-", "deny streams:read:in-secret-"};
	make_role(&rdd, "g-read-deny", rdg, 2);
	fd = connect_as(&rdd);
	read_all(fd, &rdd, "in-", false);
	read_all(fd, &rdd, "in-secret-", false);
	read_all(fd, &rdd, "in-public-", true);
	close(fd);

	/* A narrowed role reaches an open connection at once. */
	struct role ch;
	const char *wide[] = {"streams:read,append:in-"}, *narrow[] = {"streams:read:in-"};
	make_role(&ch, "g-change", wide, 1);
	fd = connect_as(&ch);
	cr_assert_eq(append(fd, "in-change"), 0, "role g-change may append to in-change");
	define_role(&ch, "g-change", narrow, 1);
	cr_assert_eq(append(fd, "in-change"), WB_PERMISSION_DENIED,
	             "the narrowed role did not reach the open connection");
	Whizbang__V1__GetStreamInfo gi = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	gi.stream = "in-change";
	Request greq = E2E_REQUEST(GET_STREAM_INFO, get_stream_info, &gi);
	Response *resp = call(fd, &greq);
	cr_assert_eq(e2e_error_code(resp), 0, "the read it kept was refused");
	cr_assert_eq(resp->stream_info->event_count, 1u);
	whizbang__v1__response__free_unpacked(resp, NULL);
	close(fd);

	wb_close(admin);
	e2e_suite_stop();
}
