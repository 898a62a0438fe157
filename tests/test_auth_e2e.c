/* Authentication and its effect over the wire, against a real whizbangd
 * started with --anonymous-role=none (so every permission below comes from
 * authenticating): the bootstrap token, SCRAM-SHA-256 logins of users an
 * administrator made, API tokens, changes that reach open connections at
 * once, the per-address throttle, persistence across a restart, and no
 * secret in the server's log. Raw frames and auth/scram.h's client side,
 * so that the wire protocol itself is what is tested. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth/rand.h"
#include "auth/scram.h"
#include "e2e_util.h"
#include "wb_error.h"

TestSuite(auth_e2e, .fini = e2e_suite_fini, .timeout = 240);

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

static const char *const server_args[] = {"--anonymous-role=none", "--scram-iterations=4096",
                                          "--metrics-listen=off", NULL};

static uint64_t next_id = 10;

/* A TCP connection to the suite's server from source address src
 * ("127.0.0.1" or another loopback address). */
static int tcp_from(const char *src)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, src, &a.sin_addr);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind %s: %s", src,
	             strerror(errno));
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e2e_srv.port)};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0, "connect: %s",
	             strerror(errno));
	return fd;
}

/* The administrator's way in: the Unix socket, as the server's own user. */
static int admin_conn(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int n = snprintf(a.sun_path, sizeof(a.sun_path), "%.90s/whizbangd.sock", e2e_srv.data_dir);
	cr_assert_lt((size_t)n, sizeof(a.sun_path));
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s: %s", a.sun_path,
	             strerror(errno));
	cr_assert_eq(e2e_raw_hello(fd, 1), 0);
	return fd;
}

static Response *call(int fd, Request *req)
{
	req->id = next_id++;
	Response *r = NULL;
	cr_assert_eq(e2e_raw_call(fd, req, &r), 0, "no answer");
	return r;
}

/* The error code of one call (the answer is freed). */
static int code_of(int fd, Request *req)
{
	Response *r = call(fd, req);
	int code = e2e_error_code(r);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

static int hello_token(int fd, const char *token, char *user, size_t ulen)
{
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.token.data = (uint8_t *)token;
	h.token.len = strlen(token);
	Request req = E2E_REQUEST(HELLO, hello, &h);
	Response *r = call(fd, &req);
	int code = e2e_error_code(r);
	if (code != 0)
		cr_assert_str_eq(r->error->message, "authentication failed");
	else if (user != NULL)
		snprintf(user, ulen, "%s", r->hello->user);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

/* The first half of an exchange on fd: Hello with SCRAM's client-first;
 * returns the client (the caller frees it) and the server-first, or NULL
 * when the Hello was refused. */
static struct auth_scram_client *begin(int fd, const char *user, const char *pw, char *sfirst,
                                       size_t cap)
{
	struct auth_scram_client *sc;
	struct auth_scram_client_config cfg = {
	        .user = user,
	        .user_len = strlen(user),
	        .password = pw,
	        .password_len = strlen(pw),
	        .random = auth_rand_bytes,
	};
	cr_assert_eq(auth_scram_client_new(&sc, &cfg), 0);
	const char *first;
	size_t fl;
	cr_assert_eq(auth_scram_client_first(sc, &first, &fl), 0);
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.mechanism = AUTH_SCRAM_MECHANISM;
	h.auth_data.data = (uint8_t *)first;
	h.auth_data.len = fl;
	Request req = E2E_REQUEST(HELLO, hello, &h);
	Response *r = call(fd, &req);
	if (e2e_error_code(r) != 0) {
		/* Refused at once (a throttled address): the one answer. */
		cr_assert_eq(e2e_error_code(r), WB_UNAUTHENTICATED);
		cr_assert_str_eq(r->error->message, "authentication failed");
		whizbang__v1__response__free_unpacked(r, NULL);
		auth_scram_client_free(sc);
		return NULL;
	}
	cr_assert(r->hello->auth_required, "roles before the exchange ended");
	cr_assert_lt(r->hello->auth_data.len, cap);
	memcpy(sfirst, r->hello->auth_data.data, r->hello->auth_data.len);
	sfirst[r->hello->auth_data.len] = '\0';
	whizbang__v1__response__free_unpacked(r, NULL);
	return sc;
}

/* A SCRAM-SHA-256 login on fd: 0 with the user and first role, or the
 * error code of the step that failed (every failure must read the same). */
static int login(int fd, const char *user, const char *pw, char *role, size_t rlen)
{
	char sfirst[1100];
	struct auth_scram_client *sc = begin(fd, user, pw, sfirst, sizeof(sfirst));
	if (sc == NULL)
		return WB_UNAUTHENTICATED;
	const char *fin;
	size_t finl;
	cr_assert_eq(auth_scram_client_final(sc, sfirst, strlen(sfirst), &fin, &finl), 0);
	Whizbang__V1__Authenticate a = WHIZBANG__V1__AUTHENTICATE__INIT;
	a.auth_data.data = (uint8_t *)fin;
	a.auth_data.len = finl;
	Request areq = E2E_REQUEST(AUTHENTICATE, authenticate, &a);
	Response *r = call(fd, &areq);
	int code = e2e_error_code(r);
	if (code != 0) {
		cr_assert_str_eq(r->error->message, "authentication failed");
	} else {
		/* Mutual: the server proves it knows the password's keys. */
		cr_assert_eq(auth_scram_client_verify(sc,
		                                      (const char *)r->authenticate->auth_data.data,
		                                      r->authenticate->auth_data.len),
		             0, "the server's signature does not verify");
		cr_assert_str_eq(r->authenticate->user, user);
		if (role != NULL)
			snprintf(role, rlen, "%s",
			         r->authenticate->n_roles > 0 ? r->authenticate->roles[0] : "");
	}
	whizbang__v1__response__free_unpacked(r, NULL);
	auth_scram_client_free(sc);
	return code;
}

static int put_role(int fd, const char *name, const char *grant)
{
	Whizbang__V1__PutRole m = WHIZBANG__V1__PUT_ROLE__INIT;
	m.name = (char *)name;
	char *g[] = {(char *)grant};
	m.n_grants = 1;
	m.grants = g;
	Request req = E2E_REQUEST(PUT_ROLE, put_role, &m);
	return code_of(fd, &req);
}

static int put_user(int fd, const char *name, const char *role, const char *pw)
{
	struct auth_scram_cred cred;
	cr_assert_eq(auth_scram_cred_derive(&cred, pw, strlen(pw), 4096, auth_rand_bytes, NULL), 0);
	char text[AUTH_SCRAM_CRED_STR_MAX + 1];
	size_t tl;
	cr_assert_eq(auth_scram_cred_format(&cred, text, sizeof(text), &tl), 0);
	Whizbang__V1__PutUser m = WHIZBANG__V1__PUT_USER__INIT;
	m.name = (char *)name;
	char *roles[] = {(char *)role};
	m.n_roles = 1;
	m.roles = roles;
	m.credential = text;
	Request req = E2E_REQUEST(PUT_USER, put_user, &m);
	return code_of(fd, &req);
}

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
	return code_of(fd, &req);
}

static int stats(int fd, Whizbang__V1__ServerStats *out)
{
	Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
	Request req = E2E_REQUEST(GET_STATS, get_stats, &g);
	Response *r = call(fd, &req);
	int code = e2e_error_code(r);
	if (code == 0 && out != NULL)
		*out = *r->stats; /* only its numbers are read */
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

static void read_file(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
}

Test(auth_e2e, the_bootstrap_token_is_the_first_administrator)
{
	e2e_suite_start(server_args);
	char path[200], token[200];
	snprintf(path, sizeof(path), "%s/bootstrap-admin.token", e2e_srv.data_dir);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	read_file(path, token, sizeof(token));
	token[strcspn(token, "\n")] = '\0';
	cr_assert_eq(strlen(token), 64u);

	int fd = tcp_from("127.0.0.1");
	char user[80];
	cr_assert_eq(hello_token(fd, token, user, sizeof(user)), 0);
	cr_assert_eq(strncmp(user, "token:", 6), 0, "%s", user);
	cr_assert_eq(stats(fd, NULL), 0);
	close(fd);

	/* The control: one character changed is nobody. */
	token[40] = token[40] == 'A' ? 'B' : 'A';
	fd = tcp_from("127.0.0.1");
	cr_assert_eq(hello_token(fd, token, NULL, 0), WB_UNAUTHENTICATED);
	cr_assert_eq(stats(fd, NULL), WB_UNAUTHENTICATED);
	close(fd);

	/* Written once: a restart makes no other. */
	cr_assert_eq(unlink(path), 0);
	e2e_suite_stop();
	e2e_suite_restart();
	cr_assert_neq(stat(path, &st), 0, "a second bootstrap token");
	e2e_suite_stop();
}

Test(auth_e2e, a_user_logs_in_with_scram_and_gets_exactly_its_roles)
{
	e2e_suite_start(server_args);
	int admin = admin_conn();
	cr_assert_eq(put_role(admin, "orders-writer", "streams:read,append:orders-"), 0);
	cr_assert_eq(put_user(admin, "alice", "orders-writer", "correct horse"), 0);

	int fd = tcp_from("127.0.0.1");
	char role[80];
	cr_assert_eq(login(fd, "alice", "correct horse", role, sizeof(role)), 0);
	cr_assert_str_eq(role, "orders-writer");
	cr_assert_eq(append(fd, "orders-1"), 0);
	cr_assert_eq(append(fd, "invoices-1"), WB_PERMISSION_DENIED);
	cr_assert_eq(stats(fd, NULL), WB_PERMISSION_DENIED);

	/* A change reaches the open connection at once. */
	cr_assert_eq(put_role(admin, "orders-writer", "streams:read:orders-"), 0);
	cr_assert_eq(append(fd, "orders-1"), WB_PERMISSION_DENIED);
	Whizbang__V1__DeleteUser du = WHIZBANG__V1__DELETE_USER__INIT;
	du.name = "alice";
	Request dreq = E2E_REQUEST(DELETE_USER, delete_user, &du);
	cr_assert_eq(code_of(admin, &dreq), 0);
	Whizbang__V1__GetStreamInfo gi = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	gi.stream = "orders-1";
	Request greq = E2E_REQUEST(GET_STREAM_INFO, get_stream_info, &gi);
	cr_assert_eq(code_of(fd, &greq), WB_PERMISSION_DENIED);
	close(fd);
	close(admin);
	e2e_suite_stop();
}

Test(auth_e2e, wrong_passwords_and_unknown_users_get_the_same_answer)
{
	e2e_suite_start(server_args);
	int admin = admin_conn();
	cr_assert_eq(put_user(admin, "bob", "reader", "s3cret-pw"), 0);
	int fd = tcp_from("127.0.0.1");
	cr_assert_eq(login(fd, "bob", "wrong-pw", NULL, 0), WB_UNAUTHENTICATED);
	cr_assert_eq(stats(fd, NULL), WB_UNAUTHENTICATED);
	close(fd);
	fd = tcp_from("127.0.0.1");
	cr_assert_eq(login(fd, "nobody", "s3cret-pw", NULL, 0), WB_UNAUTHENTICATED);
	close(fd);
	/* The control: the right password. */
	fd = tcp_from("127.0.0.1");
	cr_assert_eq(login(fd, "bob", "s3cret-pw", NULL, 0), 0);
	close(fd);
	Whizbang__V1__ServerStats s;
	cr_assert_eq(stats(admin, &s), 0);
	cr_assert_eq(s.auth_failures, 2u);
	close(admin);
	e2e_suite_stop();

	/* No password and no proof in the log; the control finds a name. */
	cr_assert_eq(e2e_log_count(&e2e_srv, "s3cret-pw"), 0u);
	cr_assert_eq(e2e_log_count(&e2e_srv, "wrong-pw"), 0u);
	cr_assert_eq(e2e_log_count(&e2e_srv, "p="), 0u);
	cr_assert_gt(e2e_log_count(&e2e_srv, "nobody"), 0u);
}

Test(auth_e2e, an_address_that_fails_too_often_is_refused_and_others_are_not)
{
	const char *args[] = {"--anonymous-role=none", "--scram-iterations=4096",
	                      "--metrics-listen=off", "--auth-failures-per-minute=3", NULL};
	e2e_suite_start(args);
	int admin = admin_conn();
	cr_assert_eq(put_user(admin, "carol", "reader", "pw-carol"), 0);
	for (int i = 0; i < 3; i++) {
		int fd = tcp_from("127.0.0.1");
		cr_assert_eq(login(fd, "carol", "nope", NULL, 0), WB_UNAUTHENTICATED);
		close(fd);
	}
	/* The right password, from the throttled address: refused. */
	int fd = tcp_from("127.0.0.1");
	cr_assert_eq(login(fd, "carol", "pw-carol", NULL, 0), WB_UNAUTHENTICATED);
	close(fd);
	/* The control: another address gets in. */
	fd = tcp_from("127.0.0.2");
	cr_assert_eq(login(fd, "carol", "pw-carol", NULL, 0), 0);
	close(fd);
	Whizbang__V1__ServerStats s;
	cr_assert_eq(stats(admin, &s), 0);
	cr_assert_eq(s.auth_failures, 3u);
	cr_assert_eq(s.auth_throttled, 1u);
	close(admin);
	e2e_suite_stop();
}

Test(auth_e2e, tokens_act_as_their_role_until_revoked_and_users_survive_a_restart)
{
	e2e_suite_start(server_args);
	int admin = admin_conn();
	Whizbang__V1__CreateToken ct = WHIZBANG__V1__CREATE_TOKEN__INIT;
	ct.role = "reader";
	ct.description = "a dashboard";
	Request creq = E2E_REQUEST(CREATE_TOKEN, create_token, &ct);
	Response *r = call(admin, &creq);
	cr_assert_eq(e2e_error_code(r), 0);
	char token[100], id[40];
	snprintf(token, sizeof(token), "%s", r->create_token->token);
	snprintf(id, sizeof(id), "%s", r->create_token->id);
	whizbang__v1__response__free_unpacked(r, NULL);

	int fd = tcp_from("127.0.0.1");
	cr_assert_eq(hello_token(fd, token, NULL, 0), 0);
	Whizbang__V1__GetStreamInfo gi = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	gi.stream = "s";
	Request greq = E2E_REQUEST(GET_STREAM_INFO, get_stream_info, &gi);
	cr_assert_neq(code_of(fd, &greq), WB_PERMISSION_DENIED);
	cr_assert_eq(append(fd, "s"), WB_PERMISSION_DENIED);

	Whizbang__V1__RevokeToken rt = WHIZBANG__V1__REVOKE_TOKEN__INIT;
	rt.id = id;
	Request rreq = E2E_REQUEST(REVOKE_TOKEN, revoke_token, &rt);
	cr_assert_eq(code_of(admin, &rreq), 0);
	/* At once on the open connection, and for a new one. */
	cr_assert_eq(code_of(fd, &greq), WB_PERMISSION_DENIED);
	close(fd);
	fd = tcp_from("127.0.0.1");
	cr_assert_eq(hello_token(fd, token, NULL, 0), WB_UNAUTHENTICATED);
	close(fd);

	cr_assert_eq(put_role(admin, "auditor", "all:read:"), 0);
	cr_assert_eq(put_user(admin, "dave", "auditor", "pw-dave"), 0);
	close(admin);
	e2e_suite_stop();
	e2e_suite_restart();
	fd = tcp_from("127.0.0.1");
	char role[80];
	cr_assert_eq(login(fd, "dave", "pw-dave", role, sizeof(role)), 0);
	cr_assert_str_eq(role, "auditor");
	close(fd);
	fd = tcp_from("127.0.0.1");
	cr_assert_eq(hello_token(fd, token, NULL, 0), WB_UNAUTHENTICATED,
	             "revoked, then restarted");
	close(fd);
	e2e_suite_stop();
	cr_assert_eq(e2e_log_count(&e2e_srv, token + 21), 0u, "a token's secret in the log");
}

/* A token that expires while its connection is open: the connection loses
 * the role within the server's check interval (about a second), as it
 * would at once on a revocation, and the token no longer logs in. */
Test(auth_e2e, an_open_connection_loses_the_role_of_a_token_that_expires)
{
	e2e_suite_start(server_args);
	int admin = admin_conn();
	Whizbang__V1__CreateToken ct = WHIZBANG__V1__CREATE_TOKEN__INIT;
	ct.role = "writer";
	ct.ttl_ms = 1500;
	Request creq = E2E_REQUEST(CREATE_TOKEN, create_token, &ct);
	Response *r = call(admin, &creq);
	cr_assert_eq(e2e_error_code(r), 0);
	char token[100];
	snprintf(token, sizeof(token), "%s", r->create_token->token);
	whizbang__v1__response__free_unpacked(r, NULL);
	close(admin);

	int fd = tcp_from("127.0.0.1");
	cr_assert_eq(hello_token(fd, token, NULL, 0), 0);
	cr_assert_eq(append(fd, "s"), 0, "before it expires");
	int64_t deadline = e2e_now_ms() + 6000;
	int code;
	while ((code = append(fd, "s")) == 0) {
		cr_assert(e2e_now_ms() < deadline, "the role outlived its token by seconds");
		e2e_sleep_ms(100);
	}
	cr_assert_eq(code, WB_PERMISSION_DENIED);
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=token_expired"), 1u);
	close(fd);
	fd = tcp_from("127.0.0.1");
	cr_assert_eq(hello_token(fd, token, NULL, 0), WB_UNAUTHENTICATED);
	close(fd);
	e2e_suite_stop();
}

/* Many tokens: every one is found by its id (the index grows through
 * several sizes, and is rebuilt from the store at a restart), revoking one
 * touches no other, and a made-up id is not found. */
Test(auth_e2e, every_one_of_many_tokens_is_found_by_its_id)
{
	enum { N = 150 };
	static char tokens[N][100], ids[N][40];
	/* The revoked ones fail on purpose: no throttle for them here. */
	const char *args[] = {"--anonymous-role=none", "--metrics-listen=off",
	                      "--auth-failures-per-minute=1000", NULL};
	e2e_suite_start(args);
	int admin = admin_conn();
	for (int i = 0; i < N; i++) {
		Whizbang__V1__CreateToken ct = WHIZBANG__V1__CREATE_TOKEN__INIT;
		ct.role = i % 2 == 0 ? "reader" : "writer";
		Request creq = E2E_REQUEST(CREATE_TOKEN, create_token, &ct);
		Response *r = call(admin, &creq);
		cr_assert_eq(e2e_error_code(r), 0);
		snprintf(tokens[i], sizeof(tokens[i]), "%s", r->create_token->token);
		snprintf(ids[i], sizeof(ids[i]), "%s", r->create_token->id);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	for (int i = 0; i < N; i += 3) {
		Whizbang__V1__RevokeToken rt = WHIZBANG__V1__REVOKE_TOKEN__INIT;
		rt.id = ids[i];
		Request rreq = E2E_REQUEST(REVOKE_TOKEN, revoke_token, &rt);
		cr_assert_eq(code_of(admin, &rreq), 0);
	}
	Whizbang__V1__RevokeToken rt = WHIZBANG__V1__REVOKE_TOKEN__INIT;
	rt.id = "AAAAAAAAAAAAAAAA";
	Request rreq = E2E_REQUEST(REVOKE_TOKEN, revoke_token, &rt);
	cr_assert_eq(code_of(admin, &rreq), WB_NOT_FOUND);
	rt.id = "not an id";
	cr_assert_eq(code_of(admin, &rreq), WB_NOT_FOUND);
	close(admin);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < N; i++) {
			int fd = tcp_from("127.0.0.1");
			char user[80] = "", want[sizeof(ids[0]) + 8];
			int rc = hello_token(fd, tokens[i], user, sizeof(user));
			close(fd);
			snprintf(want, sizeof(want), "token:%.39s", ids[i]);
			if (i % 3 == 0) {
				cr_assert_eq(rc, WB_UNAUTHENTICATED, "revoked token %d, pass %d", i,
				             pass);
			} else {
				cr_assert_eq(rc, 0, "token %d, pass %d", i, pass);
				cr_assert_str_eq(user, want);
			}
		}
		e2e_suite_stop();
		if (pass == 0)
			e2e_suite_restart();
	}
}

Test(auth_e2e, bad_admin_requests_are_refused_with_their_reason)
{
	e2e_suite_start(server_args);
	int admin = admin_conn();
	cr_assert_eq(put_role(admin, "admin", "streams:read:"), WB_BAD_REQUEST);
	cr_assert_eq(put_role(admin, "bad name!", "streams:read:"), WB_BAD_REQUEST);
	cr_assert_eq(put_role(admin, "r1", "streams:write:"), WB_BAD_REQUEST);
	cr_assert_eq(put_role(admin, "r1", "streams:read:"), 0);
	cr_assert_eq(put_user(admin, "erin", "no-such-role", "pw"), WB_NOT_FOUND);
	cr_assert_eq(put_user(admin, "erin", "r1", "pw-erin"), 0);
	/* A role in use cannot go. */
	Whizbang__V1__DeleteRole dr = WHIZBANG__V1__DELETE_ROLE__INIT;
	dr.name = "r1";
	Request dreq = E2E_REQUEST(DELETE_ROLE, delete_role, &dr);
	cr_assert_eq(code_of(admin, &dreq), WB_BAD_REQUEST);
	/* A verifier with too few iterations for this server. */
	Whizbang__V1__PutUser pu = WHIZBANG__V1__PUT_USER__INIT;
	pu.name = "frank";
	pu.credential = "SCRAM-SHA-256$4096:not-base64$x:y";
	Request preq = E2E_REQUEST(PUT_USER, put_user, &pu);
	cr_assert_eq(code_of(admin, &preq), WB_BAD_REQUEST);
	close(admin);
	e2e_suite_stop();
}

static int authenticate(int fd, const char *data, size_t len)
{
	Whizbang__V1__Authenticate a = WHIZBANG__V1__AUTHENTICATE__INIT;
	a.auth_data.data = (uint8_t *)data;
	a.auth_data.len = len;
	Request req = E2E_REQUEST(AUTHENTICATE, authenticate, &a);
	Response *r = call(fd, &req);
	int code = e2e_error_code(r);
	if (code == WB_UNAUTHENTICATED)
		cr_assert_str_eq(r->error->message, "authentication failed");
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

Test(auth_e2e, replayed_truncated_and_flooded_exchanges_fail_alike)
{
	e2e_suite_start(server_args);
	int admin = admin_conn();
	cr_assert_eq(put_user(admin, "gina", "reader", "pw-gina"), 0);

	/* A client-final made for one connection's exchange, presented on
	 * another: the server nonce differs, so it fails. */
	int a = tcp_from("127.0.0.1"), b = tcp_from("127.0.0.1");
	char sa[1100], sb[1100];
	struct auth_scram_client *ca = begin(a, "gina", "pw-gina", sa, sizeof(sa));
	struct auth_scram_client *cb = begin(b, "gina", "pw-gina", sb, sizeof(sb));
	const char *fa;
	size_t fal;
	cr_assert_eq(auth_scram_client_final(ca, sa, strlen(sa), &fa, &fal), 0);
	cr_assert_eq(authenticate(b, fa, fal), WB_UNAUTHENTICATED);
	/* The control: on its own connection it passes... */
	cr_assert_eq(authenticate(a, fa, fal), 0);
	/* ...once: the exchange is over. */
	cr_assert_eq(authenticate(a, fa, fal), WB_BAD_REQUEST);
	auth_scram_client_free(ca);
	auth_scram_client_free(cb);
	close(a);
	close(b);

	/* Truncated client-finals, and Authenticate without a Hello. */
	const char *ff;
	size_t ffl;
	/* Five cuts: the address stays under its limit of ten a minute. */
	for (size_t cut = 0; cut <= 28; cut += 7) {
		int fd = tcp_from("127.0.0.2");
		char s1[1100];
		struct auth_scram_client *sc = begin(fd, "gina", "pw-gina", s1, sizeof(s1));
		cr_assert_eq(auth_scram_client_final(sc, s1, strlen(s1), &ff, &ffl), 0);
		cr_assert_eq(authenticate(fd, ff, cut), WB_UNAUTHENTICATED, "cut at %zu", cut);
		auth_scram_client_free(sc);
		close(fd);
	}
	int fd = tcp_from("127.0.0.3");
	cr_assert_eq(e2e_raw_hello(fd, 1), 0);
	cr_assert_eq(authenticate(fd, "c=biws,r=x,p=AAAA", 17), WB_BAD_REQUEST);

	/* A flood of Hellos on one connection, each beginning an exchange it
	 * drops: each replaces the last, and a login then still works. */
	for (int i = 0; i < 2000; i++) {
		char s1[1100];
		struct auth_scram_client *sc = begin(fd, "gina", "pw-gina", s1, sizeof(s1));
		auth_scram_client_free(sc);
	}
	cr_assert_eq(login(fd, "gina", "pw-gina", NULL, 0), 0);
	close(fd);
	close(admin);
	e2e_suite_stop();
}

Test(auth_e2e, a_stale_bootstrap_file_from_a_crashed_first_start_is_replaced)
{
	/* A first start that crashed after writing its token file but before
	 * its store was checkpointed leaves a file whose token no store holds:
	 * the next first start replaces it (and starts at all). */
	cr_assert_eq(e2e_prepare(&e2e_srv), 0);
	cr_assert_eq(mkdir(e2e_srv.data_dir, 0700), 0);
	char path[200], token[200];
	snprintf(path, sizeof(path), "%s/bootstrap-admin.token", e2e_srv.data_dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("wbt_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n", f);
	fclose(f);
	cr_assert_eq(e2e_set_args(&e2e_srv, server_args), 0);
	cr_assert_eq(e2e_restart(&e2e_srv), 0, "the server did not start over a stale token file");
	read_file(path, token, sizeof(token));
	token[strcspn(token, "\n")] = '\0';
	cr_assert_neq(strncmp(token, "wbt_AAAA", 8), 0, "the stale token was kept");
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	/* The control: the new token is the administrator. */
	int fd = tcp_from("127.0.0.1");
	cr_assert_eq(hello_token(fd, token, NULL, 0), 0);
	cr_assert_eq(stats(fd, NULL), 0);
	close(fd);
	e2e_suite_stop();
}
