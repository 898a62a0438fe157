/* Per-identity quotas against a real whizbangd: leases held by one client
 * identity (its user or token once it authenticated, its address before)
 * over all its connections, those it closed with leases left to expire
 * included. Another identity, and the admin role, are not limited by it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"
#include "wb.h"
#include "wb_error.h"

TestSuite(quota_e2e, .fini = e2e_suite_fini, .timeout = 120);

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

static uint64_t next_id = 100;

/* A raw connection that said Hello (with token, when not NULL). */
static int raw_client(const char *token)
{
	int fd = e2e_raw_connect(&e2e_srv);
	cr_assert(fd >= 0);
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	if (token != NULL) {
		h.token.data = (uint8_t *)token;
		h.token.len = strlen(token);
	}
	Request req = E2E_REQUEST(HELLO, hello, &h);
	req.id = next_id++;
	Response *r;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	return fd;
}

/* Leases count sequences on fd: 0 or the error code (the message must name
 * the quota when it is RESOURCE_EXHAUSTED). */
static int lease(int fd, uint32_t count)
{
	Whizbang__V1__Lease l = WHIZBANG__V1__LEASE__INIT;
	l.projection = "p";
	l.count = count;
	l.duration_ms = 60000;
	Request req = E2E_REQUEST(LEASE, lease, &l);
	req.id = next_id++;
	Response *r;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	int code = e2e_error_code(r);
	if (code == WB_RESOURCE_EXHAUSTED)
		cr_assert_not_null(strstr(r->error->message, "--max-leases-per-identity"), "%s",
		                   r->error->message);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

Test(quota_e2e, leases_are_counted_per_identity_over_its_connections)
{
	const char *args[] = {"--anonymous-role=writer", "--max-leases-per-identity=5", NULL};
	e2e_suite_start(args);
	/* The administrator, over the Unix socket. */
	char address[200], err[300];
	snprintf(address, sizeof(address), "unix:%s/whizbangd.sock", e2e_srv.data_dir);
	struct wb_options opts = {.client_name = "quota-admin", .timeout_ms = 15000};
	struct wb_client *admin = NULL;
	cr_assert_eq(wb_connect(&admin, address, &opts, err, sizeof(err)), 0, "%s", err);

	/* Two connections of one address: 5 in all. */
	int a = raw_client(NULL), b = raw_client(NULL);
	cr_assert_eq(lease(a, 3), 0);
	cr_assert_eq(lease(b, 3), WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(lease(b, 2), 0);
	cr_assert_eq(lease(b, 1), WB_RESOURCE_EXHAUSTED);
	/* a closes: its leases (on_disconnect keep) still count until they end. */
	close(a);
	e2e_sleep_ms(100);
	cr_assert_eq(lease(b, 1), WB_RESOURCE_EXHAUSTED);

	/* A token is an identity of its own, on the same address. */
	Whizbang__V1__CreateTokenResult *tok;
	cr_assert_eq(wb_create_token(admin, "writer", 0, "quota", &tok), 0, "%s", wb_errmsg(admin));
	int t = raw_client(tok->token);
	wb_token_result_free(tok);
	cr_assert_eq(lease(t, 5), 0);
	cr_assert_eq(lease(t, 1), WB_RESOURCE_EXHAUSTED);

	/* The admin role has no quota. */
	for (int i = 0; i < 3; i++) {
		struct wb_lease_args la = {.projection = "p", .count = 4, .duration_ms = 60000};
		struct wb_lease_grant g[4];
		size_t n = 0;
		cr_assert_eq(wb_lease(admin, &la, g, 4, &n), 0, "admin lease %d: %s", i,
		             wb_errmsg(admin));
		cr_assert_eq(n, 4u);
	}
	close(b);
	close(t);
	wb_close(admin);
	e2e_suite_stop();
}
