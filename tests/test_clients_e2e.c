/* The server's connections as an operator sees them, against a real
 * whizbangd: ListClients (who, from where, holding what), Disconnect (the
 * connection named gets a last error and closes; NOT_FOUND for one that is
 * not open), and the idle timeout (a connection that sends nothing is
 * closed with RESOURCE_EXHAUSTED; one holding a subscription or a lease is
 * kept). Every wait is bounded. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"
#include "wb.h"
#include "wb_error.h"

TestSuite(clients_e2e, .fini = e2e_suite_fini, .timeout = 120);

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

static uint64_t next_id = 100;

/* Sends req on fd and expects an answer without an error. */
static void call_ok(int fd, Request *req)
{
	Response *r;
	req->id = next_id++;
	cr_assert_eq(e2e_raw_call(fd, req, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0, "%s", r->error != NULL ? r->error->message : "");
	whizbang__v1__response__free_unpacked(r, NULL);
}

/* A raw connection that said Hello, or with token, Hello with it. */
static int raw_client(const char *token)
{
	int fd = e2e_raw_connect(&e2e_srv);
	cr_assert(fd >= 0);
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.client_name = "clients-test";
	if (token != NULL) {
		h.token.data = (uint8_t *)token;
		h.token.len = strlen(token);
	}
	Request req = E2E_REQUEST(HELLO, hello, &h);
	call_ok(fd, &req);
	return fd;
}

/* Subscribes fd to $all from the start; returns once SubscribeResult came. */
static void subscribe(int fd)
{
	Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
	s.credits = 10;
	Request req = E2E_REQUEST(SUBSCRIBE, subscribe, &s);
	call_ok(fd, &req);
}

/* Leases 2 sequences of projection p on fd; returns the first. */
static uint64_t lease(int fd)
{
	Whizbang__V1__Lease l = WHIZBANG__V1__LEASE__INIT;
	l.projection = "p";
	l.count = 2;
	Request req = E2E_REQUEST(LEASE, lease, &l);
	Response *r;
	req.id = next_id++;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->lease->n_leases, 2u);
	uint64_t seq = r->lease->leases[0]->sequence;
	whizbang__v1__response__free_unpacked(r, NULL);
	return seq;
}

/* The entry of the list whose id is id, or NULL. */
static const Whizbang__V1__ClientInfo *find(const Whizbang__V1__ClientList *l, uint64_t id)
{
	for (size_t i = 0; i < l->n_clients; i++)
		if (l->clients[i]->id == id)
			return l->clients[i];
	return NULL;
}

/* The id of the one entry that is not self and matches what. */
static uint64_t id_where(const Whizbang__V1__ClientList *l, uint32_t subs, uint32_t leases,
                         const char *user)
{
	uint64_t id = 0;
	for (size_t i = 0; i < l->n_clients; i++) {
		const Whizbang__V1__ClientInfo *ci = l->clients[i];
		if (!ci->self && ci->subscriptions == subs && ci->leases == leases &&
		    strcmp(ci->user, user) == 0) {
			cr_assert_eq(id, 0u, "two connections match");
			id = ci->id;
		}
	}
	cr_assert_neq(id, 0u, "no connection with %u subscriptions, %u leases, user '%s'", subs,
	              leases, user);
	return id;
}

Test(clients_e2e, the_list_says_who_holds_what_and_disconnect_closes_one)
{
	const char *args[] = {"--anonymous-role=admin", NULL};
	struct wb_client *admin = e2e_suite_start_client(args, "clients-admin");
	Whizbang__V1__CreateTokenResult *tok;
	cr_assert_eq(wb_create_token(admin, "writer", 0, "clients test", &tok), 0, "%s",
	             wb_errmsg(admin));
	char shown[64];
	snprintf(shown, sizeof(shown), "token:%s", tok->id);

	int sub = raw_client(NULL);
	subscribe(sub);
	int holder = raw_client(tok->token);
	uint64_t seq = lease(holder);
	wb_token_result_free(tok);

	Whizbang__V1__ClientList *l;
	cr_assert_eq(wb_list_clients(admin, &l), 0, "%s", wb_errmsg(admin));
	cr_assert_eq(l->n_clients, 3u);
	size_t selves = 0;
	for (size_t i = 0; i < l->n_clients; i++)
		selves += l->clients[i]->self;
	cr_assert_eq(selves, 1u);
	uint64_t sub_id = id_where(l, 1, 0, "");
	uint64_t holder_id = id_where(l, 0, 2, shown);
	const Whizbang__V1__ClientInfo *h = find(l, holder_id);
	cr_assert_eq(h->n_roles, 1u);
	cr_assert_str_eq(h->roles[0], "writer");
	cr_assert_str_eq(h->client_name, "clients-test");
	cr_assert(!h->tls && !h->unix_socket);
	cr_assert_eq(h->requests, 2u, "Hello and Lease");
	cr_assert(h->bytes_in > 0 && h->bytes_out > 0 && h->input_buffer > 0);
	cr_assert_not_null(strstr(h->peer, "127.0.0.1:"), "%s", h->peer);
	const Whizbang__V1__ClientInfo *s = find(l, sub_id);
	cr_assert_eq(s->n_roles, 1u);
	cr_assert_str_eq(s->roles[0], "admin", "the anonymous role");
	wb_client_list_free(l);

	/* Disconnect: the subscriber gets the last error, then the close. */
	cr_assert_eq(wb_disconnect(admin, sub_id), 0, "%s", wb_errmsg(admin));
	Response *r = NULL;
	int rc;
	while ((rc = e2e_recv_response(sub, 5000, &r)) == 0 && e2e_error_code(r) == 0)
		whizbang__v1__response__free_unpacked(r, NULL); /* pushes before it */
	cr_assert_eq(rc, 0, "closed without the last error");
	cr_assert_eq(r->id, 0u);
	cr_assert_eq(e2e_error_code(r), WB_RESOURCE_EXHAUSTED);
	cr_assert_not_null(strstr(r->error->message, "an administrator closed this connection"),
	                   "%s", r->error->message);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert(e2e_wait_closed(sub, 5000));
	close(sub);
	cr_assert_eq(wb_disconnect(admin, sub_id), WB_NOT_FOUND);
	cr_assert_eq(wb_disconnect(admin, 999999), WB_NOT_FOUND);
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=disconnected_by_admin"), 1u);

	cr_assert_eq(wb_list_clients(admin, &l), 0, "%s", wb_errmsg(admin));
	cr_assert_eq(l->n_clients, 2u);
	cr_assert_null(find(l, sub_id));
	cr_assert_not_null(find(l, holder_id));
	wb_client_list_free(l);

	/* A forced release: refused to the holder (a writer), done by the
	 * administrator without the token; the holder holds one lease less. */
	Whizbang__V1__Release rl = WHIZBANG__V1__RELEASE__INIT;
	rl.sequence = seq;
	rl.force = true;
	Request req = E2E_REQUEST(RELEASE, release, &rl);
	req.id = next_id++;
	cr_assert_eq(e2e_raw_call(holder, &req, &r), 0);
	cr_assert_eq(e2e_error_code(r), WB_PERMISSION_DENIED);
	cr_assert_not_null(strstr(r->error->message, "admin:clients"), "%s", r->error->message);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(wb_release_force(admin, seq, "stuck worker"), 0, "%s", wb_errmsg(admin));
	cr_assert_eq(wb_release_force(admin, seq, NULL), WB_LEASE_NOT_FOUND, "released already");
	cr_assert_eq(wb_list_clients(admin, &l), 0, "%s", wb_errmsg(admin));
	cr_assert_eq(find(l, holder_id)->leases, 1u);
	wb_client_list_free(l);
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=lease_released_by_admin"), 2u);
	close(holder);
	wb_close(admin);
	e2e_suite_stop();
}

Test(clients_e2e, an_idle_connection_is_closed_and_one_that_holds_something_is_not)
{
	const char *args[] = {"--anonymous-role=admin", "--idle-timeout=300ms", NULL};
	e2e_suite_start(args);
	int idle = raw_client(NULL);
	int sub = raw_client(NULL);
	subscribe(sub);
	int holder = raw_client(NULL);
	lease(holder);
	/* Never saying anything at all is idle too. */
	int mute = e2e_raw_connect(&e2e_srv);
	cr_assert(mute >= 0);

	int fds[] = {idle, mute};
	for (size_t i = 0; i < 2; i++) {
		Response *r;
		cr_assert_eq(e2e_recv_response(fds[i], 5000, &r), 0, "connection %zu stayed", i);
		cr_assert_eq(r->id, 0u);
		cr_assert_eq(e2e_error_code(r), WB_RESOURCE_EXHAUSTED);
		cr_assert_not_null(strstr(r->error->message, "--idle-timeout"), "%s",
		                   r->error->message);
		whizbang__v1__response__free_unpacked(r, NULL);
		cr_assert(e2e_wait_closed(fds[i], 5000));
		close(fds[i]);
	}
	/* Three idle periods later the holders are still served. */
	e2e_sleep_ms(900);
	int keep[] = {sub, holder};
	for (size_t i = 0; i < 2; i++) {
		Whizbang__V1__Ping ping;
		Request req;
		e2e_req_ping(&req, &ping, next_id++, 7);
		Response *r;
		cr_assert_eq(e2e_raw_call(keep[i], &req, &r), 0, "holder %zu was closed", i);
		cr_assert_eq(e2e_error_code(r), 0);
		whizbang__v1__response__free_unpacked(r, NULL);
		close(keep[i]);
	}
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=idle_timeout"), 2u);
	e2e_suite_stop();
}

/* Sends n GetEntity requests in one write on fd; returns how many were
 * answered (found or not) and how many refused RESOURCE_EXHAUSTED. */
static void burst_of_reads(int fd, size_t n, size_t *answered, size_t *refused)
{
	uint8_t *all = NULL;
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		Whizbang__V1__GetEntity g = WHIZBANG__V1__GET_ENTITY__INIT;
		g.type = "Acct";
		g.id = "a-1";
		Request req = E2E_REQUEST(GET_ENTITY, get_entity, &g);
		req.id = next_id++;
		size_t flen;
		uint8_t *f = e2e_pack(&req, &flen);
		all = realloc(all, len + flen);
		cr_assert_not_null(all);
		memcpy(all + len, f, flen);
		len += flen;
		free(f);
	}
	cr_assert_eq(e2e_send_all(fd, all, len, 5000), 0);
	free(all);
	*answered = *refused = 0;
	for (size_t i = 0; i < n; i++) {
		Response *r;
		cr_assert_eq(e2e_recv_response(fd, 5000, &r), 0, "answer %zu of %zu", i, n);
		int code = e2e_error_code(r);
		if (code == WB_RESOURCE_EXHAUSTED) {
			cr_assert_not_null(strstr(r->error->message, "--max-queries-"), "%s",
			                   r->error->message);
			(*refused)++;
		} else {
			(*answered)++;
		}
		whizbang__v1__response__free_unpacked(r, NULL);
	}
}

/* Read-model requests wait for a worker holding their request: a
 * connection may have --max-queries-per-connection of them in progress and
 * the server --max-queries-queued; the rest are refused at once, and every
 * request gets an answer. */
Test(clients_e2e, read_model_requests_in_progress_are_bounded)
{
	/* Per connection, then for the server: in one write the loop takes
	 * all 30 before any worker is done, so exactly the bound goes on. */
	static const struct {
		const char *per_conn, *total;
		size_t bound;
	} runs[] = {
	        {"--max-queries-per-connection=4", "--max-queries-queued=256", 4},
	        {"--max-queries-per-connection=16", "--max-queries-queued=6", 6},
	};
	for (size_t k = 0; k < 2; k++) {
		const char *args[] = {"--anonymous-role=admin", runs[k].per_conn, runs[k].total,
		                      NULL};
		e2e_suite_start(args);
		int a = raw_client(NULL);
		size_t answered, refused;
		burst_of_reads(a, 30, &answered, &refused);
		cr_assert_eq(answered, runs[k].bound, "%s %s", runs[k].per_conn, runs[k].total);
		cr_assert_eq(refused, 30 - runs[k].bound);
		/* Bounded, not broken: the next ones go through. */
		burst_of_reads(a, 3, &answered, &refused);
		cr_assert_eq(answered, 3u);
		close(a);
		e2e_suite_stop();
	}
}

/* Subscribers that do not read hold at most --push-buffer (and an item) of
 * queued output each, not --max-output-per-connection: ListClients shows
 * it, and a reader is served meanwhile. */
Test(clients_e2e, a_subscriber_that_does_not_read_holds_the_push_buffer)
{
	const char *args[] = {"--anonymous-role=admin", "--push-buffer=256K", NULL};
	struct wb_client *w = e2e_suite_start_client(args, "clients-writer");
	/* 16 MiB of events: more than the sockets' buffers take. */
	cr_assert_eq(e2e_append_mib(w, "big", 16), 0, "%s", wb_errmsg(w));
	int subs[3];
	for (size_t i = 0; i < 3; i++) {
		subs[i] = raw_client(NULL);
		Whizbang__V1__Subscribe sb = WHIZBANG__V1__SUBSCRIBE__INIT;
		sb.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
		sb.credits = 100000;
		Request req = E2E_REQUEST(SUBSCRIBE, subscribe, &sb);
		req.id = next_id++;
		cr_assert_eq(e2e_send_request(subs[i], &req), 0);
	}
	e2e_sleep_ms(500);
	Whizbang__V1__ClientList *l;
	cr_assert_eq(wb_list_clients(w, &l), 0, "%s", wb_errmsg(w));
	uint64_t most = 0;
	for (size_t i = 0; i < l->n_clients; i++) {
		const Whizbang__V1__ClientInfo *ci = l->clients[i];
		if (ci->subscriptions == 0)
			continue;
		cr_assert_leq(ci->output_buffer, (256u << 10) + E2E_BIG_EVENT + 4096,
		              "a subscriber holds %llu bytes",
		              (unsigned long long)ci->output_buffer);
		/* What the kernel holds for it counts against the buffer too
		 * (conn_push_check()): its output may be empty while it is at
		 * the bound, but something must have been pushed. */
		most = ci->bytes_out > most ? ci->bytes_out : most;
	}
	wb_client_list_free(l);
	cr_assert_gt(most, 0u, "nothing was pushed: the check above proved nothing");
	/* The writer is served meanwhile. */
	struct wb_new_event ev = {.type = "Small", .data = "x", .data_len = 1};
	struct wb_append_result res;
	cr_assert_eq(wb_append(w, "small", WB_EXPECT_ANY, 0, &ev, 1, &res), 0, "%s", wb_errmsg(w));
	for (size_t i = 0; i < 3; i++)
		close(subs[i]);
	wb_close(w);
	e2e_suite_stop();
}

/* A connection the server sent nothing to for --keepalive-interval gets a
 * keepalive, Response{id 0, pong}; libwhizbang skips them, so a call after
 * a quiet spell gets its own answer. */
Test(clients_e2e, quiet_connections_get_keepalives_that_clients_skip)
{
	const char *args[] = {"--anonymous-role=admin", "--keepalive-interval=200ms", NULL};
	struct wb_client *c = e2e_suite_start_client(args, "keepalive");
	int fd = raw_client(NULL);
	for (int k = 0; k < 2; k++) {
		Response *r;
		cr_assert_eq(e2e_recv_response(fd, 3000, &r), 0, "keepalive %d did not come", k);
		cr_assert_eq(r->id, 0u);
		cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_PONG);
		cr_assert_eq(e2e_error_code(r), 0);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	close(fd);
	e2e_sleep_ms(700);
	cr_assert_eq(wb_ping(c), 0, "%s", wb_errmsg(c));
	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(c, &st), 0, "%s", wb_errmsg(c));
	wb_stats_free(st);
	wb_close(c);
	e2e_suite_stop();
}
