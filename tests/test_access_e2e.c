/* The permission matrix over the wire: for each built-in role (given to
 * every connection with --anonymous-role, since Hello cannot authenticate
 * yet) and for "none", every request body of the access table is sent to a
 * real whizbangd on a connection of its own. The server must refuse exactly
 * what the table decides for that role (PERMISSION_DENIED, or
 * UNAUTHENTICATED without a role), and must not refuse the rest on access
 * grounds: those are answered by their handlers (often NOT_FOUND or
 * BAD_REQUEST, since the requests are minimal). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access.h"
#include "access_requests.h"
#include "e2e_util.h"
#include "wb_error.h"

TestSuite(access_e2e, .fini = e2e_suite_fini, .timeout = 240);

typedef Whizbang__V1__Request Request;

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
		struct access_request ar;
		access_request_make(&ar, &rules[i],
		                    rules[i].body == WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER
		                            ? "acl-group"
		                            : "acl-1",
		                    NULL, 0);
		Request *req = &ar.req;
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
		access_request_free(&ar);
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
	run("--anonymous-role=writer", "writer", 5, 25);
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

/* ------------------------------------------------------------ the Unix socket */

/* A connection to the server's Unix socket at path; -1 with errno set. */
static int unix_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Says Hello on fd and returns the HelloResult's answer (the caller frees). */
static Whizbang__V1__Response *hello(int fd)
{
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.client_name = "access-e2e";
	Request req = E2E_REQUEST(HELLO, hello, &h);
	req.id = 1;
	Whizbang__V1__Response *r = NULL;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_HELLO);
	return r;
}

/* GetStats on fd (an admin action): its error code. */
static int get_stats(int fd)
{
	Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
	Request req = E2E_REQUEST(GET_STATS, get_stats, &g);
	req.id = 2;
	Whizbang__V1__Response *r = NULL;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	int code = e2e_error_code(r);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

Test(access_e2e, the_servers_own_user_is_admin_on_the_unix_socket_and_nobody_on_tcp)
{
	const char *args[] = {"--anonymous-role=none", NULL};
	e2e_suite_start(args);
	char path[160];
	snprintf(path, sizeof(path), "%s/whizbangd.sock", e2e_srv.data_dir);
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "no socket at %s", path);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0660, "mode %o", st.st_mode & 0777);

	int fd = unix_connect(path);
	cr_assert_geq(fd, 0, "connect %s: %s", path, strerror(errno));
	Whizbang__V1__Response *r = hello(fd);
	char want[32];
	snprintf(want, sizeof(want), "uid:%u", (unsigned)geteuid());
	cr_assert_str_eq(r->hello->user, want);
	cr_assert_eq(r->hello->n_roles, 1u);
	cr_assert_str_eq(r->hello->roles[0], "admin");
	cr_assert_not(r->hello->auth_required);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(get_stats(fd), 0);
	close(fd);

	/* The control: the same requests over TCP have no role. */
	fd = e2e_suite_raw();
	r = hello(fd);
	cr_assert_str_eq(r->hello->user, "");
	cr_assert_eq(r->hello->n_roles, 0u);
	cr_assert(r->hello->auth_required);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(get_stats(fd), WB_UNAUTHENTICATED);
	close(fd);

	/* A clean stop removes the socket. */
	e2e_suite_stop();
	cr_assert_neq(lstat(path, &st), 0, "the socket outlived the server");
}

Test(access_e2e, another_user_on_the_unix_socket_gets_only_the_anonymous_role)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to connect as another user");
	const char *args[] = {"--anonymous-role=reader", NULL};
	e2e_suite_start(args);
	char path[160];
	snprintf(path, sizeof(path), "%s/whizbangd.sock", e2e_srv.data_dir);
	/* The socket's mode keeps other users out by default: a child that
	 * becomes nobody shows it first. */
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pipefd[0]);
		int out[1] = {0};
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(2);
		/* Refused by the socket's mode (0660, root's): EACCES. */
		int fd = unix_connect(path);
		out[0] = fd < 0 ? errno : 0;
		if (fd >= 0)
			close(fd);
		(void)!write(pipefd[1], out, sizeof(out[0]));
		_exit(0);
	}
	close(pipefd[1]);
	int first = -1;
	cr_assert_eq(read(pipefd[0], &first, sizeof(first)), (ssize_t)sizeof(first));
	close(pipefd[0]);
	int status;
	waitpid(pid, &status, 0);
	cr_assert_eq(first, EACCES, "another user connected to a 0660 socket (errno %d)", first);

	/* Opened up: the other user connects, and is no administrator. */
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(chmod(e2e_srv.data_dir, 0755), 0);
	cr_assert_eq(chmod(e2e_srv.dir, 0755), 0);
	cr_assert_eq(pipe(pipefd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pipefd[0]);
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(2);
		int fd = unix_connect(path);
		if (fd < 0)
			_exit(4);
		Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
		h.protocol_version = 1;
		Request req = E2E_REQUEST(HELLO, hello, &h);
		req.id = 1;
		Whizbang__V1__Response *r = NULL;
		if (e2e_raw_call(fd, &req, &r) != 0 ||
		    r->body_case != WHIZBANG__V1__RESPONSE__BODY_HELLO)
			_exit(5);
		int out[3] = {(int)strlen(r->hello->user), (int)r->hello->n_roles, 0};
		if (r->hello->n_roles == 1 && strcmp(r->hello->roles[0], "reader") == 0)
			out[1] = 100;
		whizbang__v1__response__free_unpacked(r, NULL);
		Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
		Request sreq = E2E_REQUEST(GET_STATS, get_stats, &g);
		sreq.id = 2;
		if (e2e_raw_call(fd, &sreq, &r) != 0)
			_exit(6);
		out[2] = e2e_error_code(r);
		(void)!write(pipefd[1], out, sizeof(out));
		_exit(0);
	}
	close(pipefd[1]);
	int got[3] = {-1, -1, -1};
	ssize_t n = read(pipefd[0], got, sizeof(got));
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	cr_assert_eq(n, (ssize_t)sizeof(got), "the child failed (status %d)", status);
	cr_assert_eq(got[0], 0, "another user was given a user name");
	cr_assert_eq(got[1], 100, "another user did not get just the anonymous role");
	cr_assert_eq(got[2], WB_PERMISSION_DENIED, "another user may read the stats");
	e2e_suite_stop();
}

Test(access_e2e, a_file_in_the_sockets_place_stops_the_start_and_off_listens_on_none)
{
	struct e2e_server s = {0};
	char dir[] = "/tmp/wb-access-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char path[160];
	snprintf(path, sizeof(path), "%s/not-a-socket", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	char flag[200];
	snprintf(flag, sizeof(flag), "--unix-socket=%s", path);
	const char *args[] = {flag, "--metrics-listen=off", NULL};
	cr_assert_neq(e2e_start(&s, args), 0, "started over a regular file");
	size_t said = e2e_log_count(&s, "is not a socket");
	if (said == 0)
		e2e_log_tail(&s, 30);
	cr_assert_gt(said, 0u, "the log does not say why (%s)", s.log_file);
	e2e_cleanup(&s);
	cr_assert_eq(unlink(path), 0, "the file in the socket's place was removed");
	rmdir(dir);

	const char *off[] = {"--unix-socket=off", NULL};
	e2e_suite_start(off);
	snprintf(path, sizeof(path), "%s/whizbangd.sock", e2e_srv.data_dir);
	struct stat st;
	cr_assert_neq(lstat(path, &st), 0, "a socket with unix-socket = off");
	e2e_suite_stop();
}
