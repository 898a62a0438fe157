/* libwhizbang's side of authentication (client/wb.h: wb_connect()'s
 * credentials, wb_whoami(), wb_put_user()) against a scripted server on a
 * Unix socket ("unix:PATH") in the test's directory: a thread that answers
 * Hello, Authenticate and PutUser with auth/scram.h's server side and keeps
 * every frame it received.
 *
 * What a user would notice: a password logs in and the identity is kept;
 * a server whose signature does not verify (one that lacks the user's keys,
 * or that accepts any proof) fails the connect, with the right server as the
 * control; the server's "authentication failed" comes back as
 * WB_UNAUTHENTICATED with its message; no frame ever holds the password
 * (the control: the same search finds the user name); a token reaches the
 * server as it was given, and a malformed one never leaves; wb_put_user()
 * sends a verifier made from the password, not the password. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth/rand.h"
#include "auth/scram.h"
#include "fixture.h"
#include "wb.h"
#include "wire.h"

#define PASSWORD "Correct-Horse-8812"
#define ITER 4096u
#define TOKEN "wbt_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA"

static struct fixture fx;

enum mode {
	HONEST,     /* knows alice's credential */
	WRONG_KEY,  /* knows her StoredKey but not her ServerKey */
	ACCEPT_ALL, /* takes any proof and makes up a signature */
};

/* The scripted server. */
static struct {
	enum mode mode;
	int listen_fd;
	pthread_t thread;
	struct auth_scram_cred cred;
	/* Every frame received, one after the other. */
	uint8_t seen[1 << 16];
	size_t seen_len;
	size_t frames;
	char token[128];
	char credential[AUTH_SCRAM_CRED_STR_MAX + 1];
	/* Set when the server thread met something it was not scripted for
	 * (criterion's asserts belong to the test's own thread). */
	bool broken;
	/* The connection being served, for teardown to cut. */
	int conn_fd;
} srv;

/* In the server thread: gives up on the connection when cond is false. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			srv.broken = true;                                                         \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)

static char address[FIXTURE_PATH_MAX + 16];

static int lookup_cb(void *arg, const char *user, size_t len, struct auth_scram_cred *out)
{
	(void)arg;
	if (len != 5 || memcmp(user, "alice", 5) != 0)
		return WB_E_NOTFOUND;
	*out = srv.cred;
	if (srv.mode == WRONG_KEY)
		out->server_key[0] ^= 1;
	return 0;
}

static bool read_all(int fd, void *buf, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t k = read(fd, (uint8_t *)buf + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

static void reply(int fd, Whizbang__V1__Response *r)
{
	size_t len;
	uint8_t *frame = wire_pack_frame(&r->base, &len);
	if (frame == NULL || write(fd, frame, len) != (ssize_t)len)
		srv.broken = true;
	free(frame);
}

static void fail(int fd, uint64_t id, const char *msg)
{
	Whizbang__V1__Error e = WHIZBANG__V1__ERROR__INIT;
	e.code = WHIZBANG__V1__ERROR_CODE__UNAUTHENTICATED;
	e.message = (char *)msg;
	Whizbang__V1__Response r = WHIZBANG__V1__RESPONSE__INIT;
	r.id = id;
	r.error = &e;
	reply(fd, &r);
}

/* Answers one connection's requests until it closes. */
static void serve(int fd)
{
	static char *roles[] = {"app", "reader"};
	struct auth_scram_server *s = NULL;
	uint8_t hdr[4];
	while (read_all(fd, hdr, 4)) {
		uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
		               (uint32_t)hdr[2] << 8 | hdr[3];
		CHECK(len > 0 && len < (1u << 15) && srv.seen_len + len < sizeof(srv.seen));
		uint8_t *buf = malloc(len);
		CHECK(buf != NULL);
		if (!read_all(fd, buf, len)) {
			free(buf);
			CHECK(false);
		}
		memcpy(srv.seen + srv.seen_len, buf, len);
		srv.seen_len += len;
		srv.frames++;
		Whizbang__V1__Request *q = wire_unpack_request(buf, len, 1 << 20);
		free(buf);
		CHECK(q != NULL);
		Whizbang__V1__Response r = WHIZBANG__V1__RESPONSE__INIT;
		r.id = q->id;
		const char *out;
		size_t olen;
		if (q->body_case == WHIZBANG__V1__REQUEST__BODY_HELLO) {
			Whizbang__V1__HelloResult h = WHIZBANG__V1__HELLO_RESULT__INIT;
			h.protocol_version = 1;
			h.server_version = (char *)"scripted";
			h.max_frame = 1 << 20;
			h.user = (char *)"";
			h.auth_required = true;
			if (q->hello->token.len > 0) {
				snprintf(srv.token, sizeof(srv.token), "%.*s",
				         (int)q->hello->token.len, (char *)q->hello->token.data);
				h.user = (char *)"token:AAAAAAAAAAAAAAAA";
				h.roles = roles + 1;
				h.n_roles = 1;
				h.auth_required = false;
			} else if (strcmp(q->hello->mechanism, AUTH_SCRAM_MECHANISM) == 0) {
				struct auth_scram_server_config cfg = {
				        .lookup = lookup_cb,
				        .random = auth_rand_bytes,
				        .iterations = ITER,
				};
				memset(cfg.secret, 7, sizeof(cfg.secret));
				auth_scram_server_free(s);
				if (auth_scram_server_new(&s, &cfg) != 0 ||
				    auth_scram_server_first(
				            s, (const char *)q->hello->auth_data.data,
				            q->hello->auth_data.len, &out, &olen) != 0) {
					whizbang__v1__request__free_unpacked(q, NULL);
					CHECK(false);
				}
				h.auth_data.data = (uint8_t *)out;
				h.auth_data.len = olen;
			}
			r.body_case = WHIZBANG__V1__RESPONSE__BODY_HELLO;
			r.hello = &h;
			reply(fd, &r);
		} else if (q->body_case == WHIZBANG__V1__REQUEST__BODY_AUTHENTICATE) {
			char forged[64];
			int rc = auth_scram_server_final(
			        s, (const char *)q->authenticate->auth_data.data,
			        q->authenticate->auth_data.len, &out, &olen);
			if (srv.mode == ACCEPT_ALL) {
				/* Any proof will do, and the signature is made up. */
				snprintf(forged, sizeof(forged), "v=%s",
				         "c2lnbmF0dXJlIG1hZGUgdXAgYnkgYW4gaW1wb3N0b3I=");
				out = forged;
				olen = strlen(forged);
				rc = 0;
			}
			if (rc != 0) {
				fail(fd, q->id, "authentication failed");
			} else {
				Whizbang__V1__AuthenticateResult a =
				        WHIZBANG__V1__AUTHENTICATE_RESULT__INIT;
				a.auth_data.data = (uint8_t *)out;
				a.auth_data.len = olen;
				a.user = (char *)"alice";
				a.roles = roles;
				a.n_roles = 2;
				r.body_case = WHIZBANG__V1__RESPONSE__BODY_AUTHENTICATE;
				r.authenticate = &a;
				reply(fd, &r);
			}
		} else if (q->body_case == WHIZBANG__V1__REQUEST__BODY_PUT_USER) {
			snprintf(srv.credential, sizeof(srv.credential), "%s",
			         q->put_user->credential);
			Whizbang__V1__PutUserResult p = WHIZBANG__V1__PUT_USER_RESULT__INIT;
			r.body_case = WHIZBANG__V1__RESPONSE__BODY_PUT_USER;
			r.put_user = &p;
			reply(fd, &r);
		} else {
			fail(fd, q->id, "not scripted");
		}
		whizbang__v1__request__free_unpacked(q, NULL);
	}
out:
	auth_scram_server_free(s);
}

static void *server_cb(void *arg)
{
	(void)arg;
	int fd;
	while ((fd = accept(srv.listen_fd, NULL, NULL)) >= 0) {
		__atomic_store_n(&srv.conn_fd, fd, __ATOMIC_SEQ_CST);
		serve(fd);
		__atomic_store_n(&srv.conn_fd, -1, __ATOMIC_SEQ_CST);
		close(fd);
	}
	return NULL;
}

static void setup(void)
{
	fixture_setup(&fx, "wbauth");
	memset(&srv, 0, sizeof(srv));
	srv.conn_fd = -1;
	cr_assert_eq(auth_scram_cred_derive(&srv.cred, PASSWORD, strlen(PASSWORD), ITER,
	                                    auth_rand_bytes, NULL),
	             0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	cr_assert_lt(strlen(fx.root) + strlen("/s.sock"), sizeof(sa.sun_path));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/s.sock", fx.root);
	snprintf(address, sizeof(address), "unix:%s", sa.sun_path);
	srv.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(srv.listen_fd, 0);
	cr_assert_eq(bind(srv.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(srv.listen_fd, 8), 0);
	cr_assert_eq(pthread_create(&srv.thread, NULL, server_cb, NULL), 0);
}

static void teardown(void)
{
	/* A test that failed may have left a client connected: the server's
	 * read must end too. */
	shutdown(srv.listen_fd, SHUT_RDWR);
	int conn = __atomic_load_n(&srv.conn_fd, __ATOMIC_SEQ_CST);
	if (conn >= 0)
		shutdown(conn, SHUT_RDWR);
	close(srv.listen_fd);
	pthread_join(srv.thread, NULL);
	fixture_teardown(&fx);
	cr_assert_not(srv.broken, "the scripted server met a request it did not expect");
}

TestSuite(wb_auth, .init = setup, .fini = teardown, .timeout = 60);

static bool seen(const char *needle)
{
	return memmem(srv.seen, srv.seen_len, needle, strlen(needle)) != NULL;
}

static int connect_as(struct wb_client **c, const char *user, const char *password,
                      const char *token, char *msg, size_t len)
{
	struct wb_options o = {
	        .timeout_ms = 10000, .user = user, .password = password, .token = token};
	return wb_connect(c, address, &o, msg, len);
}

Test(wb_auth, a_password_logs_in_and_the_identity_is_kept)
{
	struct wb_client *c = NULL;
	char msg[512] = "";
	cr_assert_eq(connect_as(&c, "alice", PASSWORD, NULL, msg, sizeof(msg)), 0, "%s", msg);
	const struct wb_identity *who = wb_whoami(c);
	cr_assert_str_eq(who->user, "alice");
	cr_assert_eq(who->nroles, 2);
	cr_assert_str_eq(who->roles[0], "app");
	cr_assert_str_eq(who->roles[1], "reader");
	cr_assert_not(wb_server_info(c)->auth_required);
	wb_close(c);
	/* Hello and Authenticate went out, and neither held the password; the
	 * control: the same search finds the user name in them. */
	cr_assert_eq(srv.frames, 2);
	cr_assert(seen("n=alice"));
	cr_assert_not(seen(PASSWORD));
}

Test(wb_auth, a_server_without_the_users_keys_is_refused)
{
	struct wb_client *c = NULL;
	char msg[512] = "";
	srv.mode = WRONG_KEY;
	cr_assert_eq(connect_as(&c, "alice", PASSWORD, NULL, msg, sizeof(msg)), WB_UNAUTHENTICATED);
	cr_assert_null(c, "*out was written on a failure");
	cr_assert_not_null(strstr(msg, "signature does not verify"), "%s", msg);
	srv.mode = ACCEPT_ALL;
	cr_assert_eq(connect_as(&c, "alice", "anything at all", NULL, msg, sizeof(msg)),
	             WB_UNAUTHENTICATED);
	cr_assert_null(c);
	cr_assert_not_null(strstr(msg, "signature does not verify"), "%s", msg);
	/* The control: the server that has her keys. */
	srv.mode = HONEST;
	cr_assert_eq(connect_as(&c, "alice", PASSWORD, NULL, msg, sizeof(msg)), 0, "%s", msg);
	wb_close(c);
}

Test(wb_auth, the_servers_refusal_comes_back_with_its_message)
{
	struct wb_client *c = NULL;
	char msg[512] = "";
	cr_assert_eq(connect_as(&c, "alice", "Not-Her-Password", NULL, msg, sizeof(msg)),
	             WB_UNAUTHENTICATED);
	cr_assert_null(c);
	cr_assert_str_eq(msg, "authentication failed");
	cr_assert_eq(connect_as(&c, "mallory", PASSWORD, NULL, msg, sizeof(msg)),
	             WB_UNAUTHENTICATED);
	cr_assert_str_eq(msg, "authentication failed");
	cr_assert_not(seen(PASSWORD));
	cr_assert_not(seen("Not-Her-Password"));
}

Test(wb_auth, credentials_that_cannot_be_right_never_leave)
{
	struct wb_client *c = NULL;
	char msg[512] = "";
	cr_assert_eq(connect_as(&c, "alice", NULL, NULL, msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_eq(connect_as(&c, NULL, PASSWORD, NULL, msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_eq(connect_as(&c, "alice", PASSWORD, TOKEN, msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_eq(connect_as(&c, "alice", "", NULL, msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_eq(connect_as(&c, "", PASSWORD, NULL, msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_eq(connect_as(&c, NULL, NULL, "wbt_short", msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_null(strstr(msg, "wbt_short"), "the message repeats the token: %s", msg);
	cr_assert_null(c);
	cr_assert_eq(srv.frames, 0, "%zu frames were sent", srv.frames);
	/* The control: a well-formed token goes out, as it was given. */
	cr_assert_eq(connect_as(&c, NULL, NULL, TOKEN, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_str_eq(srv.token, TOKEN);
	cr_assert_str_eq(wb_whoami(c)->user, "token:AAAAAAAAAAAAAAAA");
	cr_assert_eq(wb_whoami(c)->nroles, 1);
	cr_assert_eq(srv.frames, 1);
	wb_close(c);
}

Test(wb_auth, put_user_sends_a_verifier_made_from_the_password)
{
	struct wb_client *c = NULL;
	char msg[512] = "";
	cr_assert_eq(connect_as(&c, NULL, NULL, NULL, msg, sizeof(msg)), 0, "%s", msg);
	const char *roles[] = {"app"};
	cr_assert_eq(wb_put_user(c, "bob", roles, 1, "Bobs-Own-Secret-1", ITER), 0, "%s",
	             wb_errmsg(c));
	cr_assert_not(seen("Bobs-Own-Secret-1"));
	struct auth_scram_cred sent;
	cr_assert_eq(auth_scram_cred_parse(&sent, srv.credential, strlen(srv.credential)), 0, "%s",
	             srv.credential);
	cr_assert_eq(sent.iterations, ITER);
	/* The password gives the verifier's StoredKey with its salt; the
	 * control: another password does not. */
	struct auth_scram_keys keys;
	struct auth_scram_cred again;
	cr_assert_eq(auth_scram_keys_derive(&keys, "Bobs-Own-Secret-1", 17, sent.salt,
	                                    sent.salt_len, ITER),
	             0);
	cr_assert_eq(auth_scram_cred_from_keys(&again, &keys), 0);
	cr_assert_eq(memcmp(again.stored_key, sent.stored_key, sizeof(sent.stored_key)), 0);
	cr_assert_eq(auth_scram_keys_derive(&keys, "Bobs-Own-Secret-2", 17, sent.salt,
	                                    sent.salt_len, ITER),
	             0);
	cr_assert_eq(auth_scram_cred_from_keys(&again, &keys), 0);
	cr_assert_neq(memcmp(again.stored_key, sent.stored_key, sizeof(sent.stored_key)), 0);
	/* Without a password the credential is left as it is: an empty one. */
	cr_assert_eq(wb_put_user(c, "bob", roles, 1, NULL, 0), 0);
	cr_assert_str_eq(srv.credential, "");
	/* Out of range, refused here. */
	cr_assert_eq(wb_put_user(c, "bob", roles, 1, "pw", 4095), WB_E_INVAL);
	cr_assert_eq(wb_put_user(c, "bob", roles, 1, "", 0), WB_E_INVAL);
	wb_close(c);
}

Test(wb_auth, a_socket_path_too_long_is_refused)
{
	char long_addr[300] = "unix:/";
	memset(long_addr + 6, 'x', 200);
	long_addr[206] = '\0';
	struct wb_client *c = NULL;
	char msg[512] = "";
	cr_assert_eq(wb_connect(&c, long_addr, NULL, msg, sizeof(msg)), WB_E_INVAL);
	cr_assert_not_null(strstr(msg, "socket path"), "%s", msg);
	cr_assert_null(c);
}
