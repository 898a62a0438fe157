/* Per-identity quotas against a real whizbangd: leases held by one client
 * identity (its user or token once it authenticated, its address before)
 * over all its connections, those it closed with leases left to expire
 * included; consumer groups it owns; its subscriptions and connections;
 * the backoff after refusals in a row; request and byte rates. Another
 * identity, and the admin role, are not limited by them. */
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

/* A raw connection's Hello, with token when not NULL: its error code (0:
 * accepted), the message in msg. */
static int hello_code(int fd, const char *token, char *msg, size_t msglen)
{
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
	int code = e2e_error_code(r);
	snprintf(msg, msglen, "%s", code != 0 ? r->error->message : "");
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

/* A raw connection that said Hello (with token, when not NULL). */
static int raw_client(const char *token)
{
	int fd = e2e_raw_connect(&e2e_srv);
	cr_assert(fd >= 0);
	char msg[300];
	cr_assert_eq(hello_code(fd, token, msg, sizeof(msg)), 0, "%s", msg);
	return fd;
}

/* Sends req on fd with a fresh id: the answer's error code (0: none). A
 * RESOURCE_EXHAUSTED answer must name setting, when it is not NULL. */
static int call_code(int fd, Request *req, const char *setting)
{
	req->id = next_id++;
	Response *r;
	cr_assert_eq(e2e_raw_call(fd, req, &r), 0);
	int code = e2e_error_code(r);
	if (code == WB_RESOURCE_EXHAUSTED && setting != NULL)
		cr_assert_not_null(strstr(r->error->message, setting), "%s", r->error->message);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
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
	return call_code(fd, &req, "--max-leases-per-identity");
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
	return call_code(fd, &req, "--max-consumer-groups-per-identity");
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

/* ------------------------------------------------------------ per identity */

/* The administrator over the Unix socket. */
static struct wb_client *admin_client(void)
{
	char address[200], err[300];
	snprintf(address, sizeof(address), "unix:%s/whizbangd.sock", e2e_srv.data_dir);
	struct wb_options opts = {.client_name = "quota-admin", .timeout_ms = 15000};
	struct wb_client *admin = NULL;
	cr_assert_eq(wb_connect(&admin, address, &opts, err, sizeof(err)), 0, "%s", err);
	return admin;
}

/* A writer token made by admin, copied into token[128]. */
static void writer_token(struct wb_client *admin, char token[128])
{
	Whizbang__V1__CreateTokenResult *tok;
	cr_assert_eq(wb_create_token(admin, "writer", 0, "quota", &tok), 0, "%s", wb_errmsg(admin));
	snprintf(token, 128, "%s", tok->token);
	wb_token_result_free(tok);
}

/* Subscribe on fd to $all: 0 or the error code; setting, when not NULL,
 * must be named by a RESOURCE_EXHAUSTED answer. */
static int subscribe(int fd, const char *setting)
{
	Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
	s.from = WHIZBANG__V1__START_FROM__FROM_END;
	s.credits = 10;
	Request req = E2E_REQUEST(SUBSCRIBE, subscribe, &s);
	int code = call_code(fd, &req, setting);
	if (code == 0) {
		Response *r;
		/* Its first push, caught up (at the end of the log), comes
		 * next: read it, so that the next call reads its own answer. */
		cr_assert_eq(e2e_recv_response(fd, 10000, &r), 0);
		cr_assert_eq(r->id, req.id);
		cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM);
		cr_assert(r->subscription_item->caught_up);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	return code;
}

/* Subscriptions count per connection and, over its connections, per
 * identity; a closed connection gives its back; a token and the admin are
 * identities of their own. */
Test(quota_e2e, subscriptions_are_counted_per_identity_over_its_connections)
{
	const char *args[] = {"--anonymous-role=writer", "--max-subscriptions-per-identity=3",
	                      "--max-subscriptions-per-connection=2", NULL};
	e2e_suite_start(args);
	struct wb_client *admin = admin_client();
	char token[128];
	writer_token(admin, token);

	int a = raw_client(NULL), b = raw_client(NULL);
	cr_assert_eq(subscribe(a, NULL), 0);
	cr_assert_eq(subscribe(a, NULL), 0);
	cr_assert_eq(subscribe(a, "--max-subscriptions-per-connection"), WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(subscribe(b, NULL), 0);
	cr_assert_eq(subscribe(b, "--max-subscriptions-per-identity"), WB_RESOURCE_EXHAUSTED);
	/* Another identity on the same address: its own count. */
	int t = raw_client(token);
	cr_assert_eq(subscribe(t, NULL), 0);
	cr_assert_eq(subscribe(t, NULL), 0);
	/* a's two go with it. */
	close(a);
	e2e_sleep_ms(100);
	cr_assert_eq(subscribe(b, NULL), 0);
	cr_assert_eq(subscribe(b, "--max-subscriptions-per-connection"), WB_RESOURCE_EXHAUSTED);
	int c = raw_client(NULL);
	cr_assert_eq(subscribe(c, NULL), 0);
	cr_assert_eq(subscribe(c, "--max-subscriptions-per-identity"), WB_RESOURCE_EXHAUSTED);
	close(b);
	close(c);
	close(t);
	wb_close(admin);
	e2e_suite_stop();
}

/* A user (here a token) may have --max-connections-per-identity
 * connections: the Hello of one more is refused, naming the setting, and
 * the connection closed; one closing makes room. Addresses are limited at
 * accept by their own setting, not this one; the admin not at all. */
Test(quota_e2e, connections_are_counted_per_authenticated_identity)
{
	const char *args[] = {"--anonymous-role=writer", "--max-connections-per-identity=2", NULL};
	e2e_suite_start(args);
	struct wb_client *admin = admin_client();
	char token[128], msg[300];
	writer_token(admin, token);

	int t1 = raw_client(token), t2 = raw_client(token);
	int t3 = e2e_raw_connect(&e2e_srv);
	cr_assert(t3 >= 0);
	cr_assert_eq(hello_code(t3, token, msg, sizeof(msg)), WB_RESOURCE_EXHAUSTED, "%s", msg);
	cr_assert_not_null(strstr(msg, "--max-connections-per-identity"), "%s", msg);
	cr_assert(e2e_wait_closed(t3, 5000), "the refused connection is closed");
	close(t3);
	/* The two are served. */
	Whizbang__V1__Ping ping = WHIZBANG__V1__PING__INIT;
	Request req;
	e2e_req_ping(&req, &ping, 0, 1);
	Response *r;
	cr_assert_eq(e2e_raw_call(t1, &req, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	/* One closes: another may say Hello. */
	close(t2);
	e2e_sleep_ms(100);
	int t4 = raw_client(token);
	/* Connections without credentials count by address, not here. */
	int anon[4];
	for (int i = 0; i < 4; i++)
		anon[i] = raw_client(NULL);
	for (int i = 0; i < 4; i++)
		close(anon[i]);
	close(t1);
	close(t4);
	wb_close(admin);
	e2e_suite_stop();
}

/* Sends n Lease requests on fd at once (pipelined) and reads their n
 * answers; returns how many were RESOURCE_EXHAUSTED. */
static int refused_leases(int fd, int n)
{
	Whizbang__V1__Lease l = WHIZBANG__V1__LEASE__INIT;
	l.projection = "p";
	l.count = 1;
	l.duration_ms = 60000;
	for (int i = 0; i < n; i++) {
		Request req = E2E_REQUEST(LEASE, lease, &l);
		req.id = next_id++;
		cr_assert_eq(e2e_send_request(fd, &req), 0);
	}
	int refused = 0;
	for (int i = 0; i < n; i++) {
		Response *r;
		cr_assert_eq(e2e_recv_response(fd, 30000, &r), 0, "answer %d of %d", i, n);
		refused += e2e_error_code(r) == WB_RESOURCE_EXHAUSTED;
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	return refused;
}

/* The negative control (WB_QUOTA_E2E_NO_BACKOFF): the server runs with
 * --refusal-backoff=0 and without rates, and the tests that expect the
 * backoff or the rates must fail. */
static bool no_backoff(void)
{
	const char *v = getenv("WB_QUOTA_E2E_NO_BACKOFF");
	return v != NULL && v[0] == '1';
}

/* A client that keeps retrying what a quota refuses is slowed: each
 * refusal pauses its identity (1, 2, 4 ... ms up to --refusal-backoff), so
 * 12 refusals in a row take at least the sum of their pauses; every
 * request is still answered; another connection of the identity waits the
 * pause out; the pauses are counted in GetStats and in the connection's
 * ListClients entry, under its identity. Another identity is served at
 * once meanwhile, even a new connection from the same address (its Hello,
 * which names who it is, does not wait). */
Test(quota_e2e, refusals_in_a_row_back_the_identity_off)
{
	const char *args[] = {"--anonymous-role=writer", "--max-leases-per-identity=1",
	                      no_backoff() ? "--refusal-backoff=0" : "--refusal-backoff=2s", NULL};
	e2e_suite_start(args);
	struct wb_client *admin = admin_client();
	char token[128];
	writer_token(admin, token);
	int a = raw_client(NULL);
	cr_assert_eq(lease(a, 1), 0);

	/* 12 refusals: the 11 pauses between them, 1+2+4+...+1024 ms, come to
	 * 2 s. */
	int64_t t0 = e2e_now_ms();
	cr_assert_eq(refused_leases(a, 12), 12);
	int64_t took = e2e_now_ms() - t0;
	cr_assert_geq(took, 1500, "12 refusals in a row took %lld ms: no backoff", (long long)took);

	/* The identity is paused now (the last pause, 2 s, runs): a token's
	 * new connection does not wait... */
	t0 = e2e_now_ms();
	int t = raw_client(token);
	cr_assert_eq(lease(t, 1), 0);
	cr_assert_lt(e2e_now_ms() - t0, 1000, "another identity waited for a's backoff");
	/* ... another connection of the address does, after its Hello. */
	int b = raw_client(NULL);
	t0 = e2e_now_ms();
	cr_assert_eq(lease(b, 1), WB_RESOURCE_EXHAUSTED);
	took = e2e_now_ms() - t0;
	cr_assert_geq(took, 1000, "a's identity on another connection waited %lld ms",
	              (long long)took);

	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(admin, &st), 0, "%s", wb_errmsg(admin));
	cr_assert_geq(st->quota_refusals, 13u);
	cr_assert_geq(st->quota_pauses, 13u);
	wb_stats_free(st);
	Whizbang__V1__ClientList *list;
	cr_assert_eq(wb_list_clients(admin, &list), 0, "%s", wb_errmsg(admin));
	bool found = false;
	for (size_t i = 0; i < list->n_clients; i++) {
		const Whizbang__V1__ClientInfo *ci = list->clients[i];
		if (ci->quota_pauses >= 12) {
			found = true;
			cr_assert_str_eq(ci->identity, "addr:127.0.0.1");
		}
		if (ci->user[0] != '\0' && strncmp(ci->user, "token:", 6) == 0)
			cr_assert_eq(strncmp(ci->identity, "user:token:", 11), 0, "%s",
			             ci->identity);
	}
	cr_assert(found, "ListClients shows the connection that was paused");
	wb_client_list_free(list);
	close(a);
	close(b);
	close(t);
	wb_close(admin);
	e2e_suite_stop();
}

/* Request and byte rates per identity: two connections of one address
 * share one bucket (their requests all answered, at the rate); another
 * identity is not slowed by it. */
Test(quota_e2e, request_and_byte_rates_are_shared_by_an_identity)
{
	const char *args[] = {"--anonymous-role=writer", "--max-frame=64K",
	                      "--max-identity-requests-per-second=40",
	                      "--max-identity-bytes-per-second=200K", NULL};
	if (no_backoff()) /* the control: no rates */
		args[2] = NULL;
	e2e_suite_start(args);
	struct wb_client *admin = admin_client();
	char token[128];
	writer_token(admin, token);
	int a = raw_client(NULL), b = raw_client(NULL), t = raw_client(token);

	/* 60 pings from each of a and b: 120 at 40 a second, 40 at once: at
	 * least 2 s. */
	Whizbang__V1__Ping ping = WHIZBANG__V1__PING__INIT;
	int64_t t0 = e2e_now_ms();
	for (int i = 0; i < 60; i++) {
		Request req;
		e2e_req_ping(&req, &ping, next_id++, 1);
		cr_assert_eq(e2e_send_request(a, &req), 0);
		e2e_req_ping(&req, &ping, next_id++, 1);
		cr_assert_eq(e2e_send_request(b, &req), 0);
	}
	/* Meanwhile the token's identity is served at once. */
	int64_t t1 = e2e_now_ms();
	Request req;
	e2e_req_ping(&req, &ping, next_id++, 1);
	Response *r;
	cr_assert_eq(e2e_raw_call(t, &req, &r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_lt(e2e_now_ms() - t1, 1000, "another identity was slowed");
	for (int i = 0; i < 60; i++) {
		cr_assert_eq(e2e_recv_response(a, 30000, &r), 0, "a's answer %d", i);
		cr_assert_eq(e2e_error_code(r), 0);
		whizbang__v1__response__free_unpacked(r, NULL);
		cr_assert_eq(e2e_recv_response(b, 30000, &r), 0, "b's answer %d", i);
		cr_assert_eq(e2e_error_code(r), 0);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	int64_t took = e2e_now_ms() - t0;
	cr_assert_geq(took, 1500, "120 requests at 40 a second took %lld ms", (long long)took);

	/* Bytes: 12 frames of 60 KiB, each a Ping followed by an unknown
	 * field that fills it (it decodes, and is answered), at 200K a second
	 * with 200K at once: at least 2.5 s. */
	static uint8_t big[60 * 1024 + 16];
	size_t blen = sizeof(big) - 16;
	Whizbang__V1__Ping p2 = WHIZBANG__V1__PING__INIT;
	e2e_req_ping(&req, &p2, 7, 1);
	size_t head = whizbang__v1__request__pack(&req, big + 4);
	/* An unknown field 1000 (length-delimited) fills the frame. */
	uint8_t *q = big + 4 + head;
	*q++ = (uint8_t)((1000 << 3) | 2) | 0x80;
	*q++ = (uint8_t)(1000 >> 4);
	size_t fill = blen - 4 - head - 2 - 3;
	*q++ = (uint8_t)(fill | 0x80);
	*q++ = (uint8_t)((fill >> 7) | 0x80);
	*q++ = (uint8_t)(fill >> 14);
	memset(q, 'x', fill);
	uint32_t plen = (uint32_t)(blen - 4);
	big[0] = (uint8_t)(plen >> 24);
	big[1] = (uint8_t)(plen >> 16);
	big[2] = (uint8_t)(plen >> 8);
	big[3] = (uint8_t)plen;
	t0 = e2e_now_ms();
	for (int i = 0; i < 12; i++) {
		cr_assert_eq(e2e_send_all(i % 2 ? a : b, big, blen, 30000), 0);
	}
	for (int i = 0; i < 12; i++) {
		cr_assert_eq(e2e_recv_response(i % 2 ? a : b, 30000, &r), 0, "big answer %d", i);
		cr_assert_eq(e2e_error_code(r), 0, "%s", r->error != NULL ? r->error->message : "");
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	took = e2e_now_ms() - t0;
	cr_assert_geq(took, 2000, "720 KiB at 200K a second took %lld ms", (long long)took);

	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(admin, &st), 0, "%s", wb_errmsg(admin));
	cr_assert_gt(st->quota_pauses, 0u);
	wb_stats_free(st);
	close(a);
	close(b);
	close(t);
	wb_close(admin);
	e2e_suite_stop();
}
