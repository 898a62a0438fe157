/* The request -> action table (server/access.h): it covers every request
 * body of the protocol, each entry names a field the request has, and the
 * decision follows the entry for a subject granted exactly that action. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "fixture.h"
#include "wb_error.h"

typedef Whizbang__V1__Request Request;

/* The body cases of Request: every field of the oneof. */
static size_t body_cases(unsigned *out, size_t cap)
{
	const ProtobufCMessageDescriptor *d = &whizbang__v1__request__descriptor;
	size_t n = 0;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 && n < cap)
			out[n++] = f->id;
	}
	return n;
}

/* The bodies the table lacks, for bodies[0..n). */
static size_t uncovered(const unsigned *bodies, size_t n)
{
	size_t missing = 0;
	for (size_t i = 0; i < n; i++)
		if (srv_access_rule((Whizbang__V1__Request__BodyCase)bodies[i]) == NULL)
			missing++;
	return missing;
}

Test(access, every_request_body_has_exactly_one_rule)
{
	unsigned bodies[128];
	size_t n = body_cases(bodies, 128);
	cr_assert_gt(n, 30u, "the oneof was not found");
	for (size_t i = 0; i < n; i++) {
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
		        &whizbang__v1__request__descriptor, bodies[i]);
		cr_assert_not_null(srv_access_rule((Whizbang__V1__Request__BodyCase)bodies[i]),
		                   "request body %s (field %u) has no access rule: add it to "
		                   "server/access.c",
		                   f->name, bodies[i]);
	}
	cr_assert_eq(uncovered(bodies, n), 0u);
	/* The control: a body the protocol does not have is reported. */
	unsigned fake[] = {bodies[0], 63};
	cr_assert_eq(uncovered(fake, 2), 1u);

	size_t nr;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	cr_assert_eq(nr, n, "the table has %zu rules for %zu bodies", nr, n);
	for (size_t i = 0; i < nr; i++)
		for (size_t j = i + 1; j < nr; j++)
			cr_assert_neq(rules[i].body, rules[j].body, "body %u twice",
			              (unsigned)rules[i].body);
}

/* A request with body case body, every message field allocated, and its
 * rule's name field (if any) set to name. Freed with free_request(). */
static Request *make_request(const struct srv_access_rule *r, const char *name)
{
	Request *req = calloc(1, sizeof(*req));
	whizbang__v1__request__init(req);
	const ProtobufCFieldDescriptor *bf = protobuf_c_message_descriptor_get_field(
	        &whizbang__v1__request__descriptor, (unsigned)r->body);
	cr_assert_not_null(bf);
	const ProtobufCMessageDescriptor *md = bf->descriptor;
	ProtobufCMessage *body = calloc(1, md->sizeof_message);
	protobuf_c_message_init(md, body);
	req->body_case = r->body;
	memcpy((char *)req + bf->offset, &body, sizeof(body));
	if (r->name == ACCESS_FIELD) {
		const ProtobufCFieldDescriptor *f =
		        protobuf_c_message_descriptor_get_field_by_name(md, r->field);
		cr_assert_not_null(f, "%s has no field %s", md->name, r->field);
		cr_assert_eq(f->type, PROTOBUF_C_TYPE_STRING, "%s.%s is not a string", md->name,
		             r->field);
		memcpy((char *)body + f->offset, &name, sizeof(name));
	}
	return req;
}

static void free_request(Request *req)
{
	const ProtobufCFieldDescriptor *bf = protobuf_c_message_descriptor_get_field(
	        &whizbang__v1__request__descriptor, (unsigned)req->body_case);
	ProtobufCMessage *body;
	memcpy(&body, (char *)req + bf->offset, sizeof(body));
	free(body);
	free(req);
}

static int decide(const struct auth_role *role, const Request *req)
{
	const struct auth_role *roles[] = {role};
	struct auth_subject s = {roles, role != NULL ? 1u : 0u};
	char why[300] = "";
	int rc = srv_access_check(&s, req, why, sizeof(why));
	if (rc != 0)
		cr_assert_not_null(strstr(why, "permission denied"), "%s", why);
	return rc;
}

Test(access, each_rule_allows_exactly_its_action_on_its_name)
{
	size_t nr;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	for (size_t i = 0; i < nr; i++) {
		const struct srv_access_rule *r = &rules[i];
		if (r->name == ACCESS_SPECIAL)
			continue; /* below */
		Request *req = make_request(r, "orders-1");
		if (r->name == ACCESS_OPEN || r->name == ACCESS_BY_LEASE) {
			cr_assert_eq(decide(NULL, req), 0, "body %u", (unsigned)r->body);
			free_request(req);
			continue;
		}
		const char *prefix = r->name == ACCESS_NONE ? "" : "orders-";
		struct auth_grant exact = {r->kind, false, r->perm, prefix, strlen(prefix)};
		struct auth_role role = {"exact", &exact, 1};
		cr_assert_eq(decide(&role, req), 0, "body %u", (unsigned)r->body);
		cr_assert_eq(decide(auth_builtin_role("admin"), req), 0);
		/* One thing changed each time: no role, another permission,
		 * another name, a deny beside the allow. */
		cr_assert_eq(decide(NULL, req), WB_PERMISSION_DENIED);
		uint32_t others = auth_kind_perms(r->kind) & ~r->perm;
		struct auth_grant other = {r->kind, false, others, prefix, strlen(prefix)};
		struct auth_role orole = {"other", &other, 1};
		if (others != 0)
			cr_assert_eq(decide(&orole, req), WB_PERMISSION_DENIED, "body %u",
			             (unsigned)r->body);
		if (r->name == ACCESS_FIELD) {
			struct auth_grant elsewhere = {r->kind, false, r->perm, "invoices-", 9};
			struct auth_role erole = {"elsewhere", &elsewhere, 1};
			cr_assert_eq(decide(&erole, req), WB_PERMISSION_DENIED);
		}
		struct auth_grant both[] = {exact, {r->kind, true, r->perm, "", 0}};
		struct auth_role drole = {"deny", both, 2};
		cr_assert_eq(decide(&drole, req), WB_PERMISSION_DENIED);
		free_request(req);
	}
}

static struct auth_role role_of(struct auth_grant *g, size_t n)
{
	return (struct auth_role){"t", g, n};
}

Test(access, reading_all_needs_all_read_or_the_whole_prefix_and_no_deny_under_it)
{
	Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
	Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_READ_ALL;
	req.read_all = &ra;

	struct auth_grant all[] = {{AUTH_ALL, false, AUTH_ALL_READ, "", 0}};
	struct auth_role r_all = role_of(all, 1);
	cr_assert_eq(decide(&r_all, &req), 0);
	cr_assert_eq(decide(auth_builtin_role("reader"), &req), 0);
	cr_assert_eq(decide(auth_builtin_role("ops"), &req), WB_PERMISSION_DENIED);

	struct auth_grant pfx[] = {{AUTH_STREAMS, false, AUTH_STREAM_READ, "orders-", 7}};
	struct auth_role r_pfx = role_of(pfx, 1);
	cr_assert_eq(decide(&r_pfx, &req), WB_PERMISSION_DENIED);
	ra.stream_prefix = "orders-eu";
	cr_assert_eq(decide(&r_pfx, &req), 0);
	ra.stream_prefix = "ord";
	cr_assert_eq(decide(&r_pfx, &req), WB_PERMISSION_DENIED);

	/* all:read does not reach streams a deny keeps out. */
	struct auth_grant alld[] = {{AUTH_ALL, false, AUTH_ALL_READ, "", 0},
	                            {AUTH_STREAMS, true, AUTH_STREAM_READ, "secret-", 7}};
	struct auth_role r_alld = role_of(alld, 2);
	ra.stream_prefix = "";
	cr_assert_eq(decide(&r_alld, &req), WB_PERMISSION_DENIED);
	ra.stream_prefix = "public-";
	cr_assert_eq(decide(&r_alld, &req), 0);
	ra.stream_prefix = "secret-x";
	cr_assert_eq(decide(&r_alld, &req), WB_PERMISSION_DENIED);
}

Test(access, subscriptions_and_consumer_groups_need_read_on_their_source)
{
	Whizbang__V1__Subscribe sub = WHIZBANG__V1__SUBSCRIBE__INIT;
	Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_SUBSCRIBE;
	req.subscribe = &sub;
	struct auth_grant g[] = {{AUTH_STREAMS, false, AUTH_STREAM_READ, "orders-", 7}};
	struct auth_role r = role_of(g, 1);
	sub.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
	sub.stream = "orders-1";
	cr_assert_eq(decide(&r, &req), 0);
	sub.stream = "invoices-1";
	cr_assert_eq(decide(&r, &req), WB_PERMISSION_DENIED);
	sub.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
	cr_assert_eq(decide(&r, &req), WB_PERMISSION_DENIED);
	sub.stream_prefix = "orders-";
	cr_assert_eq(decide(&r, &req), 0);
	sub.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER;
	cr_assert_eq(decide(&r, &req), WB_PERMISSION_DENIED);
	cr_assert_eq(decide(auth_builtin_role("reader"), &req), 0);

	Whizbang__V1__ConsumerConfig cfg = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	Whizbang__V1__CreateConsumer cc = WHIZBANG__V1__CREATE_CONSUMER__INIT;
	cc.config = &cfg;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER;
	req.create_consumer = &cc;
	cfg.name = "billing";
	cfg.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
	cfg.stream = "orders-1";
	struct auth_grant create[] = {{AUTH_GROUPS, false, AUTH_GROUP_CREATE, "bill", 4},
	                              {AUTH_STREAMS, false, AUTH_STREAM_READ, "orders-", 7}};
	struct auth_role rc = role_of(create, 2);
	cr_assert_eq(decide(&rc, &req), 0);
	struct auth_role rc1 = role_of(create, 1); /* without the stream */
	cr_assert_eq(decide(&rc1, &req), WB_PERMISSION_DENIED);
	cfg.name = "shipping";
	cr_assert_eq(decide(&rc, &req), WB_PERMISSION_DENIED);
	cc.config = NULL;
	cr_assert_eq(decide(&rc, &req), WB_PERMISSION_DENIED);
	cr_assert_eq(decide(auth_builtin_role("admin"), &req), 0);
}

Test(access, a_body_without_a_rule_is_refused)
{
	Request req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = (Whizbang__V1__Request__BodyCase)63;
	cr_assert_eq(decide(auth_builtin_role("admin"), &req), WB_PERMISSION_DENIED);
}

/* The rows of docs/PROTOCOL.md's permission table that the table holds:
 * how many of the rules have their row, naming their action. */
static size_t documented(const char *doc, const struct srv_access_rule *rules, size_t nr)
{
	size_t found = 0;
	for (size_t i = 0; i < nr; i++) {
		const ProtobufCFieldDescriptor *bf = protobuf_c_message_descriptor_get_field(
		        &whizbang__v1__request__descriptor, (unsigned)rules[i].body);
		const struct srv_access_rule *r = &rules[i];
		char row[200];
		if (r->name == ACCESS_OPEN)
			snprintf(row, sizeof(row), "\n| `%s` | none |",
			         ((const ProtobufCMessageDescriptor *)bf->descriptor)->short_name);
		else
			snprintf(row, sizeof(row), "\n| `%s` | `%s:%s` |",
			         ((const ProtobufCMessageDescriptor *)bf->descriptor)->short_name,
			         auth_kind_name(r->kind), auth_perm_name(r->kind, r->perm));
		found += strstr(doc, row) != NULL;
	}
	return found;
}

Test(access, protocol_md_lists_exactly_the_table)
{
	char *doc = fixture_repo_text("docs/PROTOCOL.md");
	const char *sec = strstr(doc, "### Permissions");
	cr_assert_not_null(sec);
	const char *end = strstr(sec, "\n## ");
	cr_assert_not_null(end);
	size_t nr;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	char *part = strndup(sec, (size_t)(end - sec));
	cr_assert_eq(documented(part, rules, nr), nr, "docs/PROTOCOL.md lists %zu of %zu rules",
	             documented(part, rules, nr), nr);
	size_t rows = 0;
	for (const char *p = strstr(part, "\n| `"); p != NULL; p = strstr(p + 1, "\n| `"))
		rows++;
	cr_assert_eq(rows, nr, "docs/PROTOCOL.md's permission table has %zu rows for %zu rules",
	             rows, nr);
	/* The control: a rule with another action is not found. */
	struct srv_access_rule changed = rules[2];
	changed.perm = AUTH_STREAM_DELETE;
	cr_assert_eq(documented(part, &changed, 1), 0u);
	free(part);
	free(doc);
}
