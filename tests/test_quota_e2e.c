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

/* CreateConsumer from fd for group name: 0 or the error code (the message
 * must name the quota when it is RESOURCE_EXHAUSTED). */
static int create_group(int fd, const char *name)
{
	Whizbang__V1__ConsumerConfig cfg = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	cfg.name = (char *)name;
	cfg.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
	Whizbang__V1__CreateConsumer cc = WHIZBANG__V1__CREATE_CONSUMER__INIT;
	cc.config = &cfg;
	Request req = E2E_REQUEST(CREATE_CONSUMER, create_consumer, &cc);
	req.id = next_id++;
	Response *r;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	int code = e2e_error_code(r);
	if (code == WB_RESOURCE_EXHAUSTED)
		cr_assert_not_null(strstr(r->error->message, "--max-consumer-groups-per-identity"),
		                   "%s", r->error->message);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

/* Consumer groups are owned by who made them, durably: an identity may own
 * --max-consumer-groups-per-identity, across restarts; deleting one frees
 * room; another identity and the admin are not limited by it. */
Test(quota_e2e, consumer_groups_are_owned_and_counted_per_identity)
{
	const char *args[] = {"--anonymous-role=writer", "--max-consumer-groups-per-identity=3",
	                      NULL};
	e2e_suite_start(args);
	char address[200], err[300];
	snprintf(address, sizeof(address), "unix:%s/whizbangd.sock", e2e_srv.data_dir);
	struct wb_options opts = {.client_name = "quota-admin", .timeout_ms = 15000};
	struct wb_client *admin = NULL;
	cr_assert_eq(wb_connect(&admin, address, &opts, err, sizeof(err)), 0, "%s", err);
	Whizbang__V1__CreateTokenResult *tok;
	cr_assert_eq(wb_create_token(admin, "writer", 0, "quota", &tok), 0, "%s", wb_errmsg(admin));
	char token[128];
	snprintf(token, sizeof(token), "%s", tok->token);
	wb_token_result_free(tok);
	wb_close(admin);

	int a = raw_client(NULL);
	char name[32];
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "a-%d", i);
		cr_assert_eq(create_group(a, name), 0, "%s", name);
	}
	cr_assert_eq(create_group(a, "a-3"), WB_RESOURCE_EXHAUSTED);
	int t = raw_client(token);
	cr_assert_eq(create_group(t, "t-0"), 0);
	close(a);
	close(t);

	/* Ownership is durable: after a restart the address still owns 3. */
	e2e_suite_stop();
	e2e_suite_restart();
	a = raw_client(NULL);
	cr_assert_eq(create_group(a, "a-3"), WB_RESOURCE_EXHAUSTED, "after a restart");
	/* Deleting one (an administrator may) makes room. */
	cr_assert_eq(wb_connect(&admin, address, &opts, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(wb_delete_consumer(admin, "a-1"), 0, "%s", wb_errmsg(admin));
	cr_assert_eq(create_group(a, "a-3"), 0);
	close(a);
	/* The admin is not limited. */
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "admin-%d", i);
		struct wb_consumer_args ca = {.name = name, .target = WB_TARGET_ALL};
		Whizbang__V1__ConsumerInfo *info = NULL;
		cr_assert_eq(wb_create_consumer(admin, &ca, &info), 0, "%s: %s", name,
		             wb_errmsg(admin));
		wb_consumer_info_free(info);
	}
	wb_close(admin);
	e2e_suite_stop();
}
