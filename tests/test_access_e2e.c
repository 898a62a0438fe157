/* The permission matrix over the wire: for each built-in role (given to
 * every connection with --anonymous-role, since Hello cannot authenticate
 * yet) and for "none", every request body of the access table is sent to a
 * real whizbangd on a connection of its own. The server must refuse exactly
 * what the table decides for that role (PERMISSION_DENIED, or
 * UNAUTHENTICATED without a role), and must not refuse the rest on access
 * grounds: those are answered by their handlers (often NOT_FOUND or
 * BAD_REQUEST, since the requests are minimal). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "e2e_util.h"
#include "wb_error.h"

TestSuite(access_e2e, .fini = e2e_suite_fini, .timeout = 240);

typedef Whizbang__V1__Request Request;

/* A minimal request for rule r: its body message with defaults, the
 * rule's name field set, and what the special rules read filled in. */
static Request *make_request(const struct srv_access_rule *r, ProtobufCMessage **parts,
                             size_t *nparts)
{
	static Request req;
	whizbang__v1__request__init(&req);
	const ProtobufCFieldDescriptor *bf = protobuf_c_message_descriptor_get_field(
	        &whizbang__v1__request__descriptor, (unsigned)r->body);
	cr_assert_not_null(bf);
	const ProtobufCMessageDescriptor *md = bf->descriptor;
	ProtobufCMessage *body = calloc(1, md->sizeof_message);
	protobuf_c_message_init(md, body);
	parts[(*nparts)++] = body;
	req.body_case = r->body;
	*(ProtobufCMessage **)((char *)&req + bf->offset) = body;
	if (r->name == ACCESS_FIELD) {
		const ProtobufCFieldDescriptor *f =
		        protobuf_c_message_descriptor_get_field_by_name(md, r->field);
		*(const char **)((char *)body + f->offset) = "acl-1";
	}
	switch (r->body) {
	case WHIZBANG__V1__REQUEST__BODY_HELLO:
		req.hello->protocol_version = 1;
		break;
	case WHIZBANG__V1__REQUEST__BODY_WAIT_FOR_WATERMARK:
		req.wait_for_watermark->timeout_ms = 1;
		break;
	case WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER: {
		Whizbang__V1__ConsumerConfig *cfg = calloc(1, sizeof(*cfg));
		whizbang__v1__consumer_config__init(cfg);
		cfg->name = "acl-group";
		parts[(*nparts)++] = &cfg->base;
		req.create_consumer->config = cfg;
		break;
	}
	case WHIZBANG__V1__REQUEST__BODY_BACKUP:
		req.backup->path = "/nonexistent/acl-backup";
		break;
	default:
		break;
	}
	return &req;
}

/* What the table decides for role (NULL: none) on req. */
static int expected(const char *role, const Request *req)
{
	if (role == NULL)
		return srv_access_rule(req->body_case)->name == ACCESS_OPEN ? 0
		                                                            : WB_UNAUTHENTICATED;
	const struct auth_role *roles[] = {auth_builtin_role(role)};
	struct auth_subject s = {roles, 1};
	char why[300];
	return srv_access_check(&s, req, why, sizeof(why));
}

/* Sends every body of the table on a fresh connection; returns how many
 * were refused. */
static size_t matrix(const char *role)
{
	size_t nr, refused = 0;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	for (size_t i = 0; i < nr; i++) {
		ProtobufCMessage *parts[4];
		size_t nparts = 0;
		Request *req = make_request(&rules[i], parts, &nparts);
		req->id = 100 + i;
		int want = expected(role, req);
		int fd = e2e_suite_raw_hello();
		Whizbang__V1__Response *resp = NULL;
		cr_assert_eq(e2e_raw_call(fd, req, &resp), 0, "role %s body %u: no answer",
		             role ? role : "none", (unsigned)rules[i].body);
		int got = e2e_error_code(resp);
		const char *msg = resp->error != NULL ? resp->error->message : "";
		if (want != 0) {
			cr_assert_eq(got, want,
			             "role %s body %u: answered %d (%s), the table says %d",
			             role ? role : "none", (unsigned)rules[i].body, got, msg, want);
			refused++;
		} else {
			cr_assert(got != WB_PERMISSION_DENIED && got != WB_UNAUTHENTICATED,
			          "role %s body %u: refused (%s) what the table allows",
			          role ? role : "none", (unsigned)rules[i].body, msg);
		}
		whizbang__v1__response__free_unpacked(resp, NULL);
		close(fd);
		for (size_t k = 0; k < nparts; k++)
			free(parts[k]);
	}
	return refused;
}

/* The harness's negative control (tests/meson.build runs it, and it must
 * fail): with WB_ACCESS_E2E_LIE set, every server is started with
 * --anonymous-role=writer whatever the test expects. */
static void run(const char *flag, const char *role, size_t min_refused, size_t max_refused)
{
	if (getenv("WB_ACCESS_E2E_LIE") != NULL)
		flag = "--anonymous-role=writer";
	const char *args[] = {flag, NULL};
	e2e_suite_start(args);
	size_t refused = matrix(role);
	cr_assert(refused >= min_refused && refused <= max_refused,
	          "role %s: %zu requests refused, expected %zu..%zu", role ? role : "none", refused,
	          min_refused, max_refused);
	e2e_suite_stop();
}

/* The bounds are the control that the matrix is not vacuous: a role that
 * refuses nothing, or everything, would be caught. */
Test(access_e2e, admin_is_refused_nothing)
{
	run("--anonymous-role=admin", "admin", 0, 0);
}

Test(access_e2e, reader_is_refused_every_write_and_admin_operation)
{
	run("--anonymous-role=reader", "reader", 10, 30);
}

Test(access_e2e, writer_is_refused_deletes_and_admin_operations)
{
	run("--anonymous-role=writer", "writer", 5, 20);
}

Test(access_e2e, ops_is_refused_event_data)
{
	run("--anonymous-role=ops", "ops", 10, 30);
}

Test(access_e2e, none_is_refused_everything_but_hello_and_ping)
{
	size_t nr;
	size_t open = 0;
	const struct srv_access_rule *rules = srv_access_rules(&nr);
	for (size_t i = 0; i < nr; i++)
		open += rules[i].name == ACCESS_OPEN;
	run("--anonymous-role=none", NULL, nr - open, nr - open);
}

/* The table's verdicts that matter most, spelled out (the matrix above
 * derives its expectations from the table itself). */
Test(access_e2e, the_table_refuses_what_the_roles_promise)
{
	Whizbang__V1__DeleteStream del = WHIZBANG__V1__DELETE_STREAM__INIT;
	del.stream = "s";
	Request r1 = E2E_REQUEST(DELETE_STREAM, delete_stream, &del);
	cr_assert_eq(expected("reader", &r1), WB_PERMISSION_DENIED);
	cr_assert_eq(expected("writer", &r1), WB_PERMISSION_DENIED);
	cr_assert_eq(expected("admin", &r1), 0);
	Whizbang__V1__Backup b = WHIZBANG__V1__BACKUP__INIT;
	Request r2 = E2E_REQUEST(BACKUP, backup, &b);
	cr_assert_eq(expected("writer", &r2), WB_PERMISSION_DENIED);
	cr_assert_eq(expected("ops", &r2), 0);
	Whizbang__V1__AppendEvents ap = WHIZBANG__V1__APPEND_EVENTS__INIT;
	ap.stream = "s";
	Request r3 = E2E_REQUEST(APPEND_EVENTS, append_events, &ap);
	cr_assert_eq(expected("reader", &r3), WB_PERMISSION_DENIED);
	cr_assert_eq(expected("ops", &r3), WB_PERMISSION_DENIED);
	cr_assert_eq(expected("writer", &r3), 0);
}
