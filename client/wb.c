/* libwhizbang's calls (wb.h), on the connection of transport.c.
 *
 * Every call has the same shape: wbt_begin(), the checks of its arguments
 * (WB_E_INVAL with a message, before anything is sent), a request body
 * filled on the stack, and WBT_CALL(), which sends the body and hands back
 * the answer's body detached from its Response. The call then copies out
 * what its caller asked for and frees the body, or gives the body itself to
 * the caller, who frees it with the wb_*_free() named in wb.h. Pipelining
 * (wb_send(), the *_send() calls), subscriptions and the progress reports of
 * Scavenge and Backup use the same pieces: wbt_request() and
 * wbt_answer(). */
#include "wb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/acl.h"
#include "auth/rand.h"
#include "auth/scram.h"
#include "auth/token.h"
#include "transport.h"
#include "wire.h"

_Static_assert(WB_SCRAM_ITERATIONS_MIN == AUTH_SCRAM_ITER_MIN &&
                       WB_SCRAM_ITERATIONS_MAX == AUTH_SCRAM_ITER_MAX &&
                       WB_SCRAM_ITERATIONS_DEFAULT == AUTH_SCRAM_ITER_DEFAULT,
               "wb.h's iteration bounds are auth/scram.h's");
_Static_assert(WB_USER_ROLES_MAX == AUTH_ROLES_MAX, "wb.h's role bound is auth/acl.h's");

#define WB_MAX_NAME 255u
/* Hello's mechanism for a login by the TLS client certificate. */
#define WB_MECH_EXTERNAL "EXTERNAL"
/* The server caps a WaitForWatermark at an hour; the client waits this much
 * longer than the wait for the answer to arrive. */
#define WB_WAIT_MAX_MS 3600000u
#define WB_WAIT_SLACK_MS 5000

static const uint8_t empty_bytes[1];

/* ---------------------------------------------------------------- the connection */

/* Keeps user and roles[0..n) as the client's identity, in one allocation. */
static int set_identity(struct wb_client *c, const char *user, char *const *roles, size_t n)
{
	size_t bytes = (n + 1) * sizeof(char *) + strlen(user) + 1;
	for (size_t i = 0; i < n; i++)
		bytes += strlen(roles[i]) + 1;
	char **buf = malloc(bytes);
	if (buf == NULL)
		return wbt_fail(c, WB_E_NOMEM, "no memory to keep who the connection is");
	char *p = (char *)(buf + n + 1);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(roles[i]) + 1;
		buf[i] = memcpy(p, roles[i], len);
		p += len;
	}
	buf[n] = NULL;
	free(c->who_buf);
	c->who_buf = buf;
	c->who.user = memcpy(p, user, strlen(user) + 1);
	c->who.roles = (const char *const *)buf;
	c->who.nroles = n;
	return 0;
}

/* The credentials of opts, checked before anything is sent. */
static int check_credentials(struct wb_client *c, const struct wb_options *opts)
{
	if (opts == NULL)
		return 0;
	if (opts->token != NULL && (opts->user != NULL || opts->password != NULL))
		return wbt_fail(c, WB_E_INVAL, "give a token or a user and password, not both");
	if (opts->external && (opts->token != NULL || opts->user != NULL))
		return wbt_fail(c, WB_E_INVAL,
		                "EXTERNAL logs in the user the client certificate names: give no "
		                "token or user with it");
	if (opts->external && (!opts->tls || opts->tls_cert_file == NULL))
		return wbt_fail(c, WB_E_INVAL,
		                "EXTERNAL needs TLS with a client certificate (tls_cert_file and "
		                "tls_key_file; in a URL, tlsCertFile and tlsKeyFile)");
	if ((opts->user != NULL) != (opts->password != NULL))
		return wbt_fail(c, WB_E_INVAL, "a user needs a password, and a password a user");
	if (opts->token != NULL) {
		struct auth_token t;
		if (auth_token_parse(&t, opts->token, strlen(opts->token)) != 0)
			return wbt_fail(c, WB_E_INVAL,
			                "the token is not an API token: \"wbt_\" and %u characters "
			                "of base64url",
			                AUTH_TOKEN_STR_LEN - 4);
		auth_token_clear(&t);
	}
	if (opts->user != NULL && auth_scram_user_check(opts->user, strlen(opts->user)) != 0)
		return wbt_fail(c, WB_E_INVAL,
		                "the user name is not 1 to %u bytes of UTF-8 without control "
		                "characters",
		                AUTH_SCRAM_USER_MAX);
	if (opts->password != NULL &&
	    auth_scram_password_check(opts->password, strlen(opts->password)) != 0)
		return wbt_fail(c, WB_E_INVAL,
		                "the password is not 1 to %u bytes of UTF-8 without control "
		                "characters",
		                AUTH_SCRAM_PASSWORD_MAX);
	return 0;
}

/* Ends the exchange that Hello began: the client-final message from the
 * server-first one in hr, then Authenticate, and the server's signature
 * checked in its answer. The identity comes from that answer. */
static int authenticate(struct wb_client *c, struct auth_scram_client *sc,
                        const Whizbang__V1__HelloResult *hr)
{
	const char *msg;
	size_t len;
	int rc = auth_scram_client_final(sc, (const char *)hr->auth_data.data, hr->auth_data.len,
	                                 &msg, &len);
	if (rc == WB_UNAUTHENTICATED)
		return wbt_fail(
		        c, rc,
		        "the server's answer to Hello is not a SCRAM-SHA-256 challenge this "
		        "client takes (%s)",
		        auth_scram_reason_name(auth_scram_client_reason(sc)));
	if (rc != 0)
		return wbt_fail(c, rc, "SCRAM-SHA-256 failed here: %s", wb_strerror(rc));
	Whizbang__V1__Authenticate a = WHIZBANG__V1__AUTHENTICATE__INIT;
	a.auth_data.data = (uint8_t *)msg;
	a.auth_data.len = len;
	Whizbang__V1__AuthenticateResult *ar;
	rc = WBT_CALL(c, &a, authenticate, &ar);
	if (rc != 0)
		return rc;
	rc = auth_scram_client_verify(sc, (const char *)ar->auth_data.data, ar->auth_data.len);
	if (rc != 0) {
		rc = wbt_fail(c, WB_UNAUTHENTICATED,
		              "the server's SCRAM-SHA-256 signature does not verify (%s): it does "
		              "not know this user's keys, so it is not the server the user was "
		              "made on; not connected",
		              auth_scram_reason_name(auth_scram_client_reason(sc)));
	} else {
		rc = set_identity(c, ar->user, ar->roles, ar->n_roles);
		c->info.auth_required = false;
	}
	WBT_FREE(ar);
	return rc;
}

static int hello(struct wb_client *c, const struct wb_options *opts)
{
	int rc;
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = WB_PROTOCOL_VERSION;
	h.client_name = (char *)(opts != NULL && opts->client_name != NULL ? opts->client_name
	                                                                   : "libwhizbang");
	struct auth_scram_client *sc = NULL;
	if (opts != NULL && opts->token != NULL) {
		h.token.data = (uint8_t *)opts->token;
		h.token.len = strlen(opts->token);
	} else if (opts != NULL && opts->external) {
		h.mechanism = (char *)WB_MECH_EXTERNAL;
	} else if (opts != NULL && opts->user != NULL) {
		struct auth_scram_client_config cfg = {
		        .user = opts->user,
		        .user_len = strlen(opts->user),
		        .password = opts->password,
		        .password_len = strlen(opts->password),
		        .random = auth_rand_bytes,
		};
		rc = auth_scram_client_new(&sc, &cfg);
		if (rc != 0)
			return wbt_fail(c, rc, "cannot start SCRAM-SHA-256: %s", wb_strerror(rc));
		const char *first;
		size_t len;
		rc = auth_scram_client_first(sc, &first, &len);
		if (rc != 0) {
			rc = wbt_fail(c, rc, "cannot start SCRAM-SHA-256: %s", wb_strerror(rc));
			goto err_after_scram;
		}
		h.mechanism = (char *)AUTH_SCRAM_MECHANISM;
		h.auth_data.data = (uint8_t *)first;
		h.auth_data.len = len;
	}
	Whizbang__V1__HelloResult *hr;
	rc = WBT_CALL(c, &h, hello, &hr);
	if (rc != 0)
		goto err_after_scram;
	c->info.protocol_version = hr->protocol_version;
	snprintf(c->info.server_version, sizeof(c->info.server_version), "%s", hr->server_version);
	c->info.max_frame = hr->max_frame;
	c->info.max_read_count = hr->max_read_count;
	c->info.max_append_events = hr->max_append_events;
	c->info.max_event_size = hr->max_event_size;
	c->info.auth_required = hr->auth_required;
	if (sc != NULL)
		rc = authenticate(c, sc, hr);
	else
		rc = set_identity(c, hr->user, hr->roles, hr->n_roles);
	WBT_FREE(hr);
err_after_scram:
	/* On success too: this wipes the password's copy and the keys. */
	auth_scram_client_free(sc);
	return rc;
}

int wb_connect(struct wb_client **out, const char *address, const struct wb_options *opts,
               char *errmsg, size_t errlen)
{
	if (out == NULL) {
		if (errmsg != NULL && errlen > 0)
			snprintf(errmsg, errlen, "wb_connect: out is NULL");
		return WB_E_INVAL;
	}
	return wbt_open(out, address != NULL ? address : WB_DEFAULT_ADDRESS, opts,
	                check_credentials, hello, errmsg, errlen);
}

void wb_close(struct wb_client *c)
{
	wbt_close(c);
}

const struct wb_server_info *wb_server_info(const struct wb_client *c)
{
	return &c->info;
}

const struct wb_identity *wb_whoami(const struct wb_client *c)
{
	return &c->who;
}

const char *wb_errmsg(const struct wb_client *c)
{
	return c->errmsg;
}

int64_t wb_actual_version(const struct wb_client *c)
{
	return c->actual_version;
}

int wb_fd(const struct wb_client *c)
{
	return c->fd;
}

bool wb_connection_tls(const struct wb_client *c, const char **version, const char **cipher)
{
	return wbt_tls_info(c, version, cipher);
}

int wb_raw_write(struct wb_client *c, const void *p, size_t n, size_t *taken)
{
	return wbt_raw_write(c, p, n, taken);
}

bool wb_raw_pending(const struct wb_client *c)
{
	return wbt_raw_pending(c);
}

int wb_raw_read(struct wb_client *c, void *buf, size_t cap, size_t *n)
{
	return wbt_raw_read(c, buf, cap, n);
}

int wb_ping(struct wb_client *c)
{
	wbt_begin(c);
	Whizbang__V1__Ping p = WHIZBANG__V1__PING__INIT;
	p.nonce = (uint64_t)wbt_now_ms() ^ (c->next_id << 32);
	Whizbang__V1__Pong *pong;
	int rc = WBT_CALL(c, &p, pong, &pong);
	if (rc != 0)
		return rc;
	if (pong->nonce != p.nonce)
		rc = wbt_fail(c, WB_INTERNAL, "the server's Pong carries nonce %llu, not %llu",
		              (unsigned long long)pong->nonce, (unsigned long long)p.nonce);
	WBT_FREE(pong);
	return rc;
}

/* ---------------------------------------------------------------- argument checks */

static int check_name(struct wb_client *c, const char *what, const char *s)
{
	if (s == NULL || s[0] == '\0')
		return wbt_fail(c, WB_E_INVAL, "%s is empty", what);
	size_t n = strlen(s);
	if (n > WB_MAX_NAME)
		return wbt_fail(c, WB_E_INVAL, "%s is %zu bytes, more than %u", what, n,
		                WB_MAX_NAME);
	return 0;
}

/* An entity id or a cursor: at most WB_MAX_NAME bytes (the front coding of
 * stored id lists has one byte for a length); empty only when allowed. */
static int check_id(struct wb_client *c, const char *what, const char *s, bool may_be_empty)
{
	if (s == NULL || (s[0] == '\0' && !may_be_empty))
		return wbt_fail(c, WB_E_INVAL, "%s is empty", what);
	size_t n = strlen(s);
	if (n > WB_MAX_NAME)
		return wbt_fail(c, WB_E_INVAL, "%s is %zu bytes, more than %u", what, n,
		                WB_MAX_NAME);
	return 0;
}

/* The filters of $all: a stream prefix and event types[0..ntypes). */
static int check_filters(struct wb_client *c, const char *prefix, const char *const *types,
                         size_t ntypes)
{
	if (ntypes != 0 && types == NULL)
		return wbt_fail(c, WB_E_INVAL, "types is NULL with %zu types", ntypes);
	for (size_t i = 0; i < ntypes; i++) {
		int rc = check_name(c, "an event type filter", types[i]);
		if (rc != 0)
			return rc;
	}
	if (prefix != NULL && strlen(prefix) > WB_MAX_NAME)
		return wbt_fail(c, WB_E_INVAL, "the stream prefix is longer than %u bytes",
		                WB_MAX_NAME);
	return 0;
}

/* Sends body, a request that pipelines (wb_send() and the *_send() calls):
 * its answer comes through wb_recv(). */
static int send_body(struct wb_client *c, const ProtobufCMessage *body, uint64_t *id)
{
	uint64_t sent;
	int rc = wbt_request(c, body, &sent);
	if (rc != 0)
		return rc;
	c->outstanding++;
	if (id != NULL)
		*id = sent;
	return 0;
}

/* ---------------------------------------------------------------- events */

/* An AppendEvents with the NewEvents it points to, which live only until
 * the request is packed. */
struct append {
	Whizbang__V1__AppendEvents a;
	Whizbang__V1__NewEvent *evs;
	Whizbang__V1__NewEvent **ptrs;
};

static void append_free(struct append *ap)
{
	free(ap->ptrs);
	free(ap->evs);
}

/* Checks the arguments of wb_append() and builds its request into *ap; the
 * caller frees it with append_free() after sending. */
static int append_build(struct wb_client *c, const char *stream, enum wb_expected expected,
                        uint64_t expected_version, const struct wb_new_event *events, size_t n,
                        struct append *ap)
{
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (expected < WB_EXPECT_ANY || expected > WB_EXPECT_EXACT)
		return wbt_fail(c, WB_E_INVAL, "expected is not a value of enum wb_expected");
	if (events == NULL || n == 0)
		return wbt_fail(c, WB_E_INVAL, "an append needs at least one event");
	for (size_t i = 0; i < n; i++) {
		const struct wb_new_event *e = &events[i];
		rc = check_name(c, "the event type", e->type);
		if (rc != 0)
			return rc;
		if ((e->data == NULL && e->data_len != 0) ||
		    (e->metadata == NULL && e->metadata_len != 0))
			return wbt_fail(c, WB_E_INVAL, "event %zu has a length without bytes", i);
	}
	ap->evs = calloc(n, sizeof(*ap->evs));
	ap->ptrs = calloc(n, sizeof(*ap->ptrs));
	if (ap->evs == NULL || ap->ptrs == NULL) {
		append_free(ap);
		return wbt_fail(c, WB_E_NOMEM, "no memory for %zu events", n);
	}
	for (size_t i = 0; i < n; i++) {
		const struct wb_new_event *e = &events[i];
		Whizbang__V1__NewEvent *ev = &ap->evs[i];
		whizbang__v1__new_event__init(ev);
		/* protobuf-c only reads these while packing. */
		if (e->id != NULL) {
			ev->id.data = (uint8_t *)e->id;
			ev->id.len = 16;
		}
		ev->type = (char *)e->type;
		ev->data.data = (uint8_t *)e->data;
		ev->data.len = e->data_len;
		ev->metadata.data = (uint8_t *)e->metadata;
		ev->metadata.len = e->metadata_len;
		ap->ptrs[i] = ev;
	}
	whizbang__v1__append_events__init(&ap->a);
	ap->a.stream = (char *)stream;
	ap->a.expected = (Whizbang__V1__ExpectedVersion)expected;
	ap->a.expected_version = expected == WB_EXPECT_EXACT ? expected_version : 0;
	ap->a.n_events = n;
	ap->a.events = ap->ptrs;
	return 0;
}

int wb_append(struct wb_client *c, const char *stream, enum wb_expected expected,
              uint64_t expected_version, const struct wb_new_event *events, size_t n,
              struct wb_append_result *out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_append: out is NULL");
	struct append ap;
	int rc = append_build(c, stream, expected, expected_version, events, n, &ap);
	if (rc != 0)
		return rc;
	Whizbang__V1__AppendResult *res;
	rc = WBT_CALL(c, &ap.a, append_events, &res);
	append_free(&ap);
	if (rc != 0)
		return rc;
	out->first_position = res->first_position;
	out->last_position = res->last_position;
	out->stream_version = res->stream_version;
	out->idempotent_replay = res->idempotent_replay;
	WBT_FREE(res);
	return 0;
}

int wb_append_send(struct wb_client *c, const char *stream, enum wb_expected expected,
                   uint64_t expected_version, const struct wb_new_event *events, size_t n,
                   uint64_t *id)
{
	wbt_begin(c);
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	struct append ap;
	rc = append_build(c, stream, expected, expected_version, events, n, &ap);
	if (rc != 0)
		return rc;
	rc = send_body(c, &ap.a.base, id);
	append_free(&ap);
	return rc;
}

/* Fills page from the events rec[0..n) of the read answer res, which the
 * page then owns; on failure the caller still owns res. */
static int make_page(struct wb_client *c, ProtobufCMessage *res, Whizbang__V1__RecordedEvent **rec,
                     size_t n, struct wb_page *page)
{
	struct wb_event *ev = NULL;
	if (n != 0) {
		ev = calloc(n, sizeof(*ev));
		if (ev == NULL)
			return wbt_fail(c, WB_E_NOMEM, "no memory for %zu events", n);
	}
	for (size_t i = 0; i < n; i++) {
		const Whizbang__V1__RecordedEvent *e = rec[i];
		if (e->id.len != 16) {
			free(ev);
			return wbt_fail(
			        c, WB_INTERNAL,
			        "the server sent event %llu with an id of %zu bytes, not 16",
			        (unsigned long long)e->position, e->id.len);
		}
		memcpy(ev[i].id, e->id.data, 16);
		ev[i].stream = e->stream;
		ev[i].version = e->version;
		ev[i].position = e->position;
		ev[i].timestamp_us = e->timestamp_us;
		ev[i].type = e->type;
		ev[i].data = e->data.len != 0 ? e->data.data : empty_bytes;
		ev[i].data_len = e->data.len;
		ev[i].metadata = e->metadata.len != 0 ? e->metadata.data : empty_bytes;
		ev[i].metadata_len = e->metadata.len;
	}
	page->events = ev;
	page->count = n;
	page->priv_ = res;
	return 0;
}

int wb_read_stream(struct wb_client *c, const char *stream, uint64_t from_version, bool backwards,
                   uint32_t max_count, struct wb_page *out)
{
	wbt_begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_read_stream: out is NULL");
	Whizbang__V1__ReadStream rs = WHIZBANG__V1__READ_STREAM__INIT;
	rs.stream = (char *)stream;
	rs.from_version = from_version;
	rs.direction =
	        backwards ? WHIZBANG__V1__DIRECTION__BACKWARD : WHIZBANG__V1__DIRECTION__FORWARD;
	rs.max_count = max_count;
	Whizbang__V1__ReadStreamResult *res;
	rc = WBT_CALL(c, &rs, read_stream, &res);
	if (rc != 0)
		return rc;
	struct wb_page page = {
	        .next = res->next_version, .end = res->end_of_stream, .last = res->last_version};
	rc = make_page(c, &res->base, res->events, res->n_events, &page);
	if (rc != 0) {
		WBT_FREE(res);
		return rc;
	}
	*out = page;
	return 0;
}

int wb_read_all(struct wb_client *c, uint64_t from_position, bool backwards, uint32_t max_count,
                const char *stream_prefix, const char *const *types, size_t ntypes,
                struct wb_page *out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_read_all: out is NULL");
	if (ntypes != 0 && types == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_read_all: types is NULL");
	int rc = check_filters(c, stream_prefix, types, ntypes);
	if (rc != 0)
		return rc;
	Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
	ra.from_position = from_position;
	ra.direction =
	        backwards ? WHIZBANG__V1__DIRECTION__BACKWARD : WHIZBANG__V1__DIRECTION__FORWARD;
	ra.max_count = max_count;
	if (stream_prefix != NULL)
		ra.stream_prefix = (char *)stream_prefix;
	ra.n_event_types = ntypes;
	ra.event_types = (char **)types;
	Whizbang__V1__ReadAllResult *res;
	rc = WBT_CALL(c, &ra, read_all, &res);
	if (rc != 0)
		return rc;
	struct wb_page page = {
	        .next = res->next_position, .end = res->end_of_log, .last = res->last_position};
	rc = make_page(c, &res->base, res->events, res->n_events, &page);
	if (rc != 0) {
		WBT_FREE(res);
		return rc;
	}
	*out = page;
	return 0;
}

void wb_page_free(struct wb_page *page)
{
	if (page == NULL)
		return;
	free(page->events);
	if (page->priv_ != NULL)
		protobuf_c_message_free_unpacked(page->priv_, NULL);
	memset(page, 0, sizeof(*page));
}

static struct wb_stream_metadata metadata_of(const Whizbang__V1__StreamMetadata *m)
{
	struct wb_stream_metadata md = {0};
	if (m != NULL) {
		md.max_count = m->max_count;
		md.max_age_ms = m->max_age_ms;
		md.truncate_before = m->truncate_before;
	}
	return md;
}

int wb_stream_info(struct wb_client *c, const char *stream, struct wb_stream_info *out)
{
	wbt_begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_stream_info: out is NULL");
	Whizbang__V1__GetStreamInfo g = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	g.stream = (char *)stream;
	Whizbang__V1__StreamInfo *si;
	rc = WBT_CALL(c, &g, stream_info, &si);
	if (rc != 0)
		return rc;
	out->last_version = si->last_version;
	out->event_count = si->event_count;
	out->first_position = si->first_position;
	out->last_position = si->last_position;
	out->created_us = si->created_us;
	out->updated_us = si->updated_us;
	out->deleted = si->deleted;
	out->tombstoned = si->tombstoned;
	out->metadata = metadata_of(si->metadata);
	WBT_FREE(si);
	return 0;
}

int wb_stats(struct wb_client *c, Whizbang__V1__ServerStats **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_stats: out is NULL");
	Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
	return WBT_CALL(c, &g, stats, out);
}

void wb_stats_free(Whizbang__V1__ServerStats *stats)
{
	if (stats != NULL)
		whizbang__v1__server_stats__free_unpacked(stats, NULL);
}

/* ---------------------------------------------------------------- pipelining */

int wb_send(struct wb_client *c, Whizbang__V1__Request *req, uint64_t *id)
{
	wbt_begin(c);
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	if (req == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_send: req is NULL");
	uint64_t sent = 0;
	rc = wbt_queue(c, req, &sent);
	if (rc != 0)
		return rc;
	c->outstanding++;
	if (id != NULL)
		*id = sent;
	return 0;
}

int wb_flush(struct wb_client *c)
{
	wbt_begin(c);
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	return wbt_flush(c);
}

int wb_recv(struct wb_client *c, Whizbang__V1__Response **out)
{
	wbt_begin(c);
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_recv: out is NULL");
	return wbt_recv(c, out);
}

/* ---------------------------------------------------------------- leases and the ledger */

/* Checks args and fills the Lease of wb_lease() and wb_lease_send(). */
static int lease_body(struct wb_client *c, const struct wb_lease_args *args, Whizbang__V1__Lease *l)
{
	if (args == NULL)
		return wbt_fail(c, WB_E_INVAL, "the lease arguments are NULL");
	int rc = check_name(c, "the projection name", args->projection);
	if (rc != 0)
		return rc;
	if (args->operation_id != NULL && strlen(args->operation_id) > WB_LEASE_NAME_MAX)
		return wbt_fail(c, WB_E_INVAL, "the operation id is %zu bytes, more than %u",
		                strlen(args->operation_id), WB_LEASE_NAME_MAX);
	whizbang__v1__lease__init(l);
	l->projection = (char *)args->projection;
	l->duration_ms = args->duration_ms;
	l->count = args->count != 0 ? args->count : 1;
	if (args->operation_id != NULL)
		l->operation_id = (char *)args->operation_id;
	l->source_position = args->source_position;
	l->on_disconnect = args->release_on_disconnect
	                           ? WHIZBANG__V1__ON_DISCONNECT__ON_DISCONNECT_RELEASE
	                           : WHIZBANG__V1__ON_DISCONNECT__ON_DISCONNECT_KEEP;
	return 0;
}

int wb_lease(struct wb_client *c, const struct wb_lease_args *args, struct wb_lease_grant *out,
             size_t max_out, size_t *n)
{
	wbt_begin(c);
	if (out == NULL || n == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_lease: out or n is NULL");
	uint32_t want = args != NULL && args->count != 0 ? args->count : 1;
	if (want > max_out)
		return wbt_fail(c, WB_E_INVAL, "%u sequences asked for, room for %zu grants", want,
		                max_out);
	Whizbang__V1__Lease l;
	int rc = lease_body(c, args, &l);
	if (rc != 0)
		return rc;
	Whizbang__V1__LeaseResult *lr;
	rc = WBT_CALL(c, &l, lease, &lr);
	if (rc != 0)
		return rc;
	if (lr->n_leases != want) {
		rc = wbt_fail(c, WB_INTERNAL,
		              "the server granted %zu sequences, not the %u asked for",
		              lr->n_leases, want);
		goto out;
	}
	for (size_t i = 0; i < lr->n_leases; i++) {
		const Whizbang__V1__LeaseGrant *g = lr->leases[i];
		out[i] = (struct wb_lease_grant){
		        .sequence = g->sequence,
		        .token = g->token,
		        .expires_at_ms = g->expires_at_ms,
		        .duration_ms = g->duration_ms,
		};
	}
	*n = lr->n_leases;
out:
	WBT_FREE(lr);
	return rc;
}

int wb_lease_send(struct wb_client *c, const struct wb_lease_args *args, uint64_t *id)
{
	wbt_begin(c);
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	Whizbang__V1__Lease l;
	rc = lease_body(c, args, &l);
	if (rc != 0)
		return rc;
	return send_body(c, &l.base, id);
}

int wb_extend(struct wb_client *c, uint64_t seq, uint64_t token, uint64_t duration_ms,
              uint64_t *expires_at_ms)
{
	wbt_begin(c);
	Whizbang__V1__Extend e = WHIZBANG__V1__EXTEND__INIT;
	e.sequence = seq;
	e.token = token;
	e.duration_ms = duration_ms;
	Whizbang__V1__ExtendResult *res;
	int rc = WBT_CALL(c, &e, extend, &res);
	if (rc != 0)
		return rc;
	if (expires_at_ms != NULL)
		*expires_at_ms = res->expires_at_ms;
	WBT_FREE(res);
	return 0;
}

static int release(struct wb_client *c, uint64_t seq, uint64_t token, bool force,
                   const char *reason)
{
	wbt_begin(c);
	Whizbang__V1__Release rl = WHIZBANG__V1__RELEASE__INIT;
	rl.sequence = seq;
	rl.token = token;
	rl.force = force;
	if (reason != NULL)
		rl.reason = (char *)reason;
	return WBT_CALL_ACK(c, &rl, release);
}

int wb_release(struct wb_client *c, uint64_t seq, uint64_t token, const char *reason)
{
	return release(c, seq, token, false, reason);
}

int wb_release_force(struct wb_client *c, uint64_t seq, const char *reason)
{
	return release(c, seq, 0, true, reason);
}

int wb_stage(struct wb_client *c, uint64_t seq, uint64_t token, const Whizbang__V1__OpList *ops)
{
	wbt_begin(c);
	Whizbang__V1__Stage st = WHIZBANG__V1__STAGE__INIT;
	st.sequence = seq;
	st.token = token;
	/* protobuf-c only reads the ops while packing. */
	if (ops != NULL) {
		st.n_ops = ops->n_ops;
		st.ops = ops->ops;
	}
	return WBT_CALL_ACK(c, &st, stage);
}

/* Fills the Commit of wb_commit(), wb_commit_full() and wb_commit_send(). */
static void commit_body(uint64_t seq, uint64_t token, const Whizbang__V1__OpList *ops, bool applied,
                        bool resequence, Whizbang__V1__Commit *cm)
{
	whizbang__v1__commit__init(cm);
	cm->sequence = seq;
	cm->token = token;
	if (ops != NULL) {
		cm->n_ops = ops->n_ops;
		cm->ops = ops->ops;
	}
	cm->ack = applied ? WHIZBANG__V1__ACK__ACK_APPLIED : WHIZBANG__V1__ACK__ACK_DURABLE;
	cm->on_expired = resequence ? WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_RESEQUENCE
	                            : WHIZBANG__V1__ON_EXPIRED__ON_EXPIRED_FAIL;
}

int wb_commit(struct wb_client *c, uint64_t seq, uint64_t token, const Whizbang__V1__OpList *ops,
              bool applied, bool resequence, struct wb_commit_result *out)
{
	wbt_begin(c);
	Whizbang__V1__Commit cm;
	commit_body(seq, token, ops, applied, resequence, &cm);
	Whizbang__V1__CommitResult *cr;
	int rc = WBT_CALL(c, &cm, commit, &cr);
	if (rc != 0)
		return rc;
	if (out != NULL) {
		out->sequence = cr->sequence;
		out->resequenced = cr->resequenced;
		out->original_sequence = cr->original_sequence;
		out->watermark = cr->watermark;
	}
	WBT_FREE(cr);
	return 0;
}

int wb_commit_full(struct wb_client *c, uint64_t seq, uint64_t token,
                   const Whizbang__V1__OpList *ops, bool applied, bool resequence,
                   Whizbang__V1__CommitResult **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_commit_full: out is NULL");
	Whizbang__V1__Commit cm;
	commit_body(seq, token, ops, applied, resequence, &cm);
	return WBT_CALL(c, &cm, commit, out);
}

void wb_commit_result_free(Whizbang__V1__CommitResult *res)
{
	if (res != NULL)
		whizbang__v1__commit_result__free_unpacked(res, NULL);
}

int wb_commit_send(struct wb_client *c, uint64_t seq, uint64_t token,
                   const Whizbang__V1__OpList *ops, bool applied, bool resequence, uint64_t *id)
{
	wbt_begin(c);
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	Whizbang__V1__Commit cm;
	commit_body(seq, token, ops, applied, resequence, &cm);
	return send_body(c, &cm.base, id);
}

int wb_read_ledger(struct wb_client *c, uint64_t from, uint32_t max_count,
                   Whizbang__V1__ReadLedgerResult **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_read_ledger: out is NULL");
	Whizbang__V1__ReadLedger rl = WHIZBANG__V1__READ_LEDGER__INIT;
	rl.from_sequence = from;
	rl.max_count = max_count;
	return WBT_CALL(c, &rl, read_ledger, out);
}

void wb_ledger_free(Whizbang__V1__ReadLedgerResult *res)
{
	if (res != NULL)
		whizbang__v1__read_ledger_result__free_unpacked(res, NULL);
}

int wb_watermark(struct wb_client *c, uint64_t *watermark, uint64_t *next_seq)
{
	wbt_begin(c);
	Whizbang__V1__GetWatermark g = WHIZBANG__V1__GET_WATERMARK__INIT;
	Whizbang__V1__WatermarkResult *w;
	int rc = WBT_CALL(c, &g, watermark, &w);
	if (rc != 0)
		return rc;
	if (watermark != NULL)
		*watermark = w->watermark;
	if (next_seq != NULL)
		*next_seq = w->next_sequence;
	WBT_FREE(w);
	return 0;
}

int wb_wait_watermark(struct wb_client *c, uint64_t seq, uint64_t timeout_ms, uint64_t *watermark,
                      bool *reached)
{
	wbt_begin(c);
	/* The server answers when the wait ends; the client must not give up
	 * before it does. */
	if (c->deadline_ms >= 0) {
		uint64_t wait = timeout_ms < WB_WAIT_MAX_MS ? timeout_ms : WB_WAIT_MAX_MS;
		int64_t need = (int64_t)wait + WB_WAIT_SLACK_MS;
		if (need > c->call_timeout_ms)
			wbt_deadline(c, need);
	}
	Whizbang__V1__WaitForWatermark ww = WHIZBANG__V1__WAIT_FOR_WATERMARK__INIT;
	ww.sequence = seq;
	ww.timeout_ms = timeout_ms;
	Whizbang__V1__WatermarkResult *w;
	int rc = WBT_CALL(c, &ww, watermark, &w);
	if (rc != 0)
		return rc;
	if (watermark != NULL)
		*watermark = w->watermark;
	if (reached != NULL)
		*reached = w->reached;
	WBT_FREE(w);
	return 0;
}

/* ---------------------------------------------------------------- entities, queries, indexes */

/* Fills w from a where tree and its text for a request; *wp receives w, or
 * NULL when there is no clause. A text without a tree is refused: the tree
 * is what the server evaluates. */
static int where_arg(struct wb_client *c, const Whizbang__V1__Expr *where, const char *text,
                     Whizbang__V1__Where *w, Whizbang__V1__Where **wp)
{
	(void)c;
	*wp = NULL;
	if (where == NULL && (text == NULL || text[0] == '\0'))
		return 0;
	whizbang__v1__where__init(w);
	/* protobuf-c only reads these while packing. Text alone: the server
	 * parses it. */
	w->expr = (Whizbang__V1__Expr *)where;
	if (text != NULL)
		w->text = (char *)text;
	*wp = w;
	return 0;
}

int wb_get_entity(struct wb_client *c, const char *type, const char *id, Whizbang__V1__Entity **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_get_entity: out is NULL");
	int rc = check_name(c, "the entity type", type);
	if (rc == 0)
		rc = check_id(c, "the entity id", id, false);
	if (rc != 0)
		return rc;
	Whizbang__V1__GetEntity g = WHIZBANG__V1__GET_ENTITY__INIT;
	g.type = (char *)type;
	g.id = (char *)id;
	Whizbang__V1__GetEntityResult *res;
	rc = WBT_CALL(c, &g, get_entity, &res);
	if (rc != 0)
		return rc;
	Whizbang__V1__Entity *e = res->entity;
	res->entity = NULL;
	WBT_FREE(res);
	if (e == NULL)
		return wbt_fail(c, WB_INTERNAL, "the server's GetEntityResult holds no entity");
	*out = e;
	return 0;
}

void wb_entity_free(Whizbang__V1__Entity *e)
{
	if (e != NULL)
		whizbang__v1__entity__free_unpacked(e, NULL);
}

int wb_query(struct wb_client *c, const char *type, const Whizbang__V1__Expr *where,
             const char *where_text, const char *after, uint32_t limit,
             Whizbang__V1__QueryResult **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_query: out is NULL");
	int rc = check_name(c, "the entity type", type);
	if (rc == 0 && after != NULL)
		rc = check_id(c, "the cursor (after)", after, true);
	Whizbang__V1__Where w;
	Whizbang__V1__QueryEntities q = WHIZBANG__V1__QUERY_ENTITIES__INIT;
	if (rc == 0)
		rc = where_arg(c, where, where_text, &w, &q.where);
	if (rc != 0)
		return rc;
	q.type = (char *)type;
	q.limit = limit;
	if (after != NULL)
		q.after = (char *)after;
	return WBT_CALL(c, &q, query, out);
}

void wb_query_free(Whizbang__V1__QueryResult *res)
{
	if (res != NULL)
		whizbang__v1__query_result__free_unpacked(res, NULL);
}

/* CreateIndex and DropIndex: the same arguments and the same answer. */
static int index_call(struct wb_client *c, bool create, const char *type, const char *field,
                      Whizbang__V1__IndexResult **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "%s: out is NULL",
		                create ? "wb_create_index" : "wb_drop_index");
	int rc = check_name(c, "the entity type", type);
	if (rc == 0)
		rc = check_name(c, "the field name", field);
	if (rc != 0)
		return rc;
	Whizbang__V1__CreateIndex ci = WHIZBANG__V1__CREATE_INDEX__INIT;
	Whizbang__V1__DropIndex di = WHIZBANG__V1__DROP_INDEX__INIT;
	if (!create) {
		di.type = (char *)type;
		di.field = (char *)field;
		return WBT_CALL(c, &di, index, out);
	}
	ci.type = (char *)type;
	ci.field = (char *)field;
	return WBT_CALL(c, &ci, index, out);
}

int wb_create_index(struct wb_client *c, const char *type, const char *field,
                    Whizbang__V1__IndexResult **out)
{
	return index_call(c, true, type, field, out);
}

int wb_drop_index(struct wb_client *c, const char *type, const char *field,
                  Whizbang__V1__IndexResult **out)
{
	return index_call(c, false, type, field, out);
}

void wb_index_result_free(Whizbang__V1__IndexResult *res)
{
	if (res != NULL)
		whizbang__v1__index_result__free_unpacked(res, NULL);
}

int wb_list_indexes(struct wb_client *c, const char *type, Whizbang__V1__IndexList **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_list_indexes: out is NULL");
	if (type != NULL && strlen(type) > WB_MAX_NAME)
		return wbt_fail(c, WB_E_INVAL, "the entity type is %zu bytes, more than %u",
		                strlen(type), WB_MAX_NAME);
	Whizbang__V1__ListIndexes li = WHIZBANG__V1__LIST_INDEXES__INIT;
	if (type != NULL)
		li.type = (char *)type;
	return WBT_CALL(c, &li, indexes, out);
}

void wb_index_list_free(Whizbang__V1__IndexList *list)
{
	if (list != NULL)
		whizbang__v1__index_list__free_unpacked(list, NULL);
}

int wb_explain(struct wb_client *c, const char *type, const Whizbang__V1__Expr *where,
               const char *where_text, Whizbang__V1__PlanResult **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_explain: out is NULL");
	int rc = check_name(c, "the entity type", type);
	Whizbang__V1__Where w;
	Whizbang__V1__Explain ex = WHIZBANG__V1__EXPLAIN__INIT;
	if (rc == 0)
		rc = where_arg(c, where, where_text, &w, &ex.where);
	if (rc != 0)
		return rc;
	ex.type = (char *)type;
	return WBT_CALL(c, &ex, plan, out);
}

void wb_plan_free(Whizbang__V1__PlanResult *plan)
{
	if (plan != NULL)
		whizbang__v1__plan_result__free_unpacked(plan, NULL);
}

int wb_verify(struct wb_client *c, Whizbang__V1__VerifyResult **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_verify: out is NULL");
	Whizbang__V1__Verify v = WHIZBANG__V1__VERIFY__INIT;
	return WBT_CALL(c, &v, verify, out);
}

void wb_verify_free(Whizbang__V1__VerifyResult *res)
{
	if (res != NULL)
		whizbang__v1__verify_result__free_unpacked(res, NULL);
}

/* ---------------------------------------------------------------- ids */

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

int wb_uuid_parse(const char *text, uint8_t out[16])
{
	if (text == NULL || out == NULL || strlen(text) != 36)
		return WB_E_INVAL;
	uint8_t id[16];
	size_t j = 0;
	for (size_t i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (text[i] != '-')
				return WB_E_INVAL;
			i++;
			continue;
		}
		int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
		if (hi < 0 || lo < 0)
			return WB_E_INVAL;
		id[j++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	memcpy(out, id, 16);
	return 0;
}

void wb_uuid_format(const uint8_t id[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	size_t j = 0;
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[id[i] >> 4];
		out[j++] = hex[id[i] & 15];
	}
	out[j] = '\0';
}

/* ---------------------------------------------------------------- subscriptions */

static int check_target(struct wb_client *c, enum wb_target target, const char *stream,
                        enum wb_from from, bool ledger_ok)
{
	if (target != WB_TARGET_ALL && target != WB_TARGET_STREAM &&
	    !(ledger_ok && target == WB_TARGET_LEDGER))
		return wbt_fail(c, WB_E_INVAL, "target is not a value of enum wb_target%s",
		                ledger_ok ? "" : " that a consumer group takes (all or stream)");
	if (from != WB_FROM_START && from != WB_FROM_END && from != WB_FROM_POSITION)
		return wbt_fail(c, WB_E_INVAL, "from is not a value of enum wb_from");
	if (target == WB_TARGET_STREAM)
		return check_name(c, "the stream name", stream);
	return 0;
}

/* Sends body, a request that starts a subscription (Subscribe or
 * JoinConsumer), and registers the subscription once its SubscribeResult is
 * there. */
static int start_sub(struct wb_client *c, const ProtobufCMessage *body, uint64_t *subscription,
                     uint64_t *start)
{
	uint64_t id;
	int rc = wbt_ready(c);
	/* Room first, so that a failure cannot come after the server started
	 * pushing. */
	if (rc == 0)
		rc = wbt_sub_reserve(c);
	if (rc == 0)
		rc = wbt_request(c, body, &id);
	if (rc != 0)
		return rc;
	Whizbang__V1__SubscribeResult *res;
	rc = WBT_ANSWER(c, id, subscribe, &res);
	if (rc != 0) {
		/* Items may have come before the refusal; nobody will ask for them. */
		wbt_drop_pushes(c, id);
		return rc;
	}
	wbt_sub_add(c, id, res->subscription);
	*subscription = res->subscription;
	if (start != NULL)
		*start = res->start;
	WBT_FREE(res);
	return 0;
}

int wb_subscribe_start(struct wb_client *c, const struct wb_subscribe_args *args,
                       uint64_t *subscription, uint64_t *start)
{
	wbt_begin(c);
	if (args == NULL || subscription == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_subscribe: args or subscription is NULL");
	int rc = check_target(c, args->target, args->stream, args->from, true);
	if (rc == 0)
		rc = check_filters(c, args->stream_prefix, args->types, args->ntypes);
	if (rc != 0)
		return rc;
	Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = (Whizbang__V1__SubscriptionTarget)args->target;
	if (args->target == WB_TARGET_STREAM)
		s.stream = (char *)args->stream;
	s.from = (Whizbang__V1__StartFrom)args->from;
	s.position = args->from == WB_FROM_POSITION ? args->position : 0;
	if (args->stream_prefix != NULL)
		s.stream_prefix = (char *)args->stream_prefix;
	s.n_event_types = args->ntypes;
	s.event_types = (char **)args->types;
	s.credits = args->credits;
	return start_sub(c, &s.base, subscription, start);
}

int wb_subscribe(struct wb_client *c, const struct wb_subscribe_args *args, uint64_t *subscription)
{
	return wb_subscribe_start(c, args, subscription, NULL);
}

int wb_next_item(struct wb_client *c, int timeout_ms, Whizbang__V1__SubscriptionItem **item)
{
	wbt_begin(c);
	int rc = wbt_usable(c);
	if (rc != 0)
		return rc;
	if (item == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_next_item: item is NULL");
	return wbt_next_item(c, timeout_ms, item);
}

void wb_item_free(Whizbang__V1__SubscriptionItem *item)
{
	if (item != NULL)
		whizbang__v1__subscription_item__free_unpacked(item, NULL);
}

size_t wb_queued(const struct wb_client *c)
{
	return c->qcount;
}

int wb_credit_n(struct wb_client *c, uint64_t subscription, uint32_t n, uint64_t *credits)
{
	wbt_begin(c);
	Whizbang__V1__Credit cr = WHIZBANG__V1__CREDIT__INIT;
	cr.subscription = subscription;
	cr.n = n;
	Whizbang__V1__CreditResult *res;
	int rc = WBT_CALL(c, &cr, credit, &res);
	if (rc != 0)
		return rc;
	if (credits != NULL)
		*credits = res->credits;
	WBT_FREE(res);
	return 0;
}

int wb_credit(struct wb_client *c, uint64_t subscription, uint32_t n)
{
	return wb_credit_n(c, subscription, n, NULL);
}

int wb_unsubscribe(struct wb_client *c, uint64_t subscription)
{
	wbt_begin(c);
	Whizbang__V1__Unsubscribe u = WHIZBANG__V1__UNSUBSCRIBE__INIT;
	u.subscription = subscription;
	int rc = WBT_CALL_ACK(c, &u, unsubscribe);
	if (rc != 0)
		return rc;
	wbt_sub_end(c, subscription);
	return 0;
}

/* ---------------------------------------------------------------- durable consumers */

int wb_create_consumer(struct wb_client *c, const struct wb_consumer_args *args,
                       Whizbang__V1__ConsumerInfo **out)
{
	wbt_begin(c);
	if (args == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_create_consumer: args is NULL");
	int rc = check_name(c, "the consumer name", args->name);
	if (rc == 0)
		rc = check_target(c, args->target, args->stream, args->from, false);
	if (rc == 0)
		rc = check_filters(c, args->stream_prefix, args->types, args->ntypes);
	if (rc != 0)
		return rc;
	Whizbang__V1__ConsumerConfig cfg = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	cfg.name = (char *)args->name;
	cfg.target = (Whizbang__V1__SubscriptionTarget)args->target;
	if (args->target == WB_TARGET_STREAM)
		cfg.stream = (char *)args->stream;
	if (args->stream_prefix != NULL)
		cfg.stream_prefix = (char *)args->stream_prefix;
	cfg.n_event_types = args->ntypes;
	cfg.event_types = (char **)args->types;
	cfg.from = (Whizbang__V1__StartFrom)args->from;
	cfg.position = args->from == WB_FROM_POSITION ? args->position : 0;
	cfg.ack_timeout_ms = args->ack_timeout_ms;
	cfg.max_deliveries = args->max_deliveries;
	Whizbang__V1__CreateConsumer cc = WHIZBANG__V1__CREATE_CONSUMER__INIT;
	cc.config = &cfg;
	if (out == NULL)
		return WBT_CALL_ACK(c, &cc, consumer);
	return WBT_CALL(c, &cc, consumer, out);
}

void wb_consumer_info_free(Whizbang__V1__ConsumerInfo *info)
{
	if (info != NULL)
		whizbang__v1__consumer_info__free_unpacked(info, NULL);
}

int wb_delete_consumer(struct wb_client *c, const char *name)
{
	wbt_begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__DeleteConsumer d = WHIZBANG__V1__DELETE_CONSUMER__INIT;
	d.name = (char *)name;
	return WBT_CALL_ACK(c, &d, delete_consumer);
}

int wb_list_consumers(struct wb_client *c, Whizbang__V1__ConsumerList **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_list_consumers: out is NULL");
	Whizbang__V1__ListConsumers l = WHIZBANG__V1__LIST_CONSUMERS__INIT;
	return WBT_CALL(c, &l, consumers, out);
}

void wb_consumer_list_free(Whizbang__V1__ConsumerList *list)
{
	if (list != NULL)
		whizbang__v1__consumer_list__free_unpacked(list, NULL);
}

int wb_join_consumer(struct wb_client *c, const char *name, uint32_t credits,
                     uint64_t *subscription)
{
	wbt_begin(c);
	if (subscription == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_join_consumer: subscription is NULL");
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__JoinConsumer j = WHIZBANG__V1__JOIN_CONSUMER__INIT;
	j.name = (char *)name;
	j.credits = credits;
	return start_sub(c, &j.base, subscription, NULL);
}

/* Points bins[0..n) at ids for a request; protobuf-c only reads them while
 * packing. *out is freed by the caller. */
static int id_list(struct wb_client *c, const uint8_t (*ids)[16], size_t n,
                   ProtobufCBinaryData **out)
{
	if (n == 0 || ids == NULL)
		return wbt_fail(c, WB_E_INVAL, "no event ids given");
	ProtobufCBinaryData *bins = calloc(n, sizeof(*bins));
	if (bins == NULL)
		return wbt_fail(c, WB_E_NOMEM, "no memory for %zu ids", n);
	for (size_t i = 0; i < n; i++) {
		bins[i].data = (uint8_t *)ids[i];
		bins[i].len = 16;
	}
	*out = bins;
	return 0;
}

int wb_ack(struct wb_client *c, const char *name, const uint8_t (*ids)[16], size_t n,
           uint64_t *checkpoint)
{
	wbt_begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__AckEvents a = WHIZBANG__V1__ACK_EVENTS__INIT;
	rc = id_list(c, ids, n, &a.ids);
	if (rc != 0)
		return rc;
	a.name = (char *)name;
	a.n_ids = n;
	Whizbang__V1__AckResult *res;
	rc = WBT_CALL(c, &a, ack, &res);
	free(a.ids);
	if (rc != 0)
		return rc;
	if (checkpoint != NULL)
		*checkpoint = res->checkpoint;
	WBT_FREE(res);
	return 0;
}

int wb_nack(struct wb_client *c, const char *name, const uint8_t (*ids)[16], size_t n,
            enum wb_nack_action action, const char *reason, uint64_t *checkpoint)
{
	wbt_begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	if (action != WB_NACK_RETRY && action != WB_NACK_PARK && action != WB_NACK_SKIP)
		return wbt_fail(c, WB_E_INVAL, "action is not a value of enum wb_nack_action");
	Whizbang__V1__NackEvents a = WHIZBANG__V1__NACK_EVENTS__INIT;
	rc = id_list(c, ids, n, &a.ids);
	if (rc != 0)
		return rc;
	a.name = (char *)name;
	a.n_ids = n;
	a.action = (Whizbang__V1__NackAction)action;
	if (reason != NULL)
		a.reason = (char *)reason;
	Whizbang__V1__NackResult *res;
	rc = WBT_CALL(c, &a, nack, &res);
	free(a.ids);
	if (rc != 0)
		return rc;
	if (checkpoint != NULL)
		*checkpoint = res->checkpoint;
	WBT_FREE(res);
	return 0;
}

int wb_list_parked(struct wb_client *c, const char *name, uint64_t from_position,
                   uint32_t max_count, Whizbang__V1__ParkedList **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_list_parked: out is NULL");
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__ListParked l = WHIZBANG__V1__LIST_PARKED__INIT;
	l.name = (char *)name;
	l.from_position = from_position;
	l.max_count = max_count;
	return WBT_CALL(c, &l, parked, out);
}

void wb_parked_free(Whizbang__V1__ParkedList *list)
{
	if (list != NULL)
		whizbang__v1__parked_list__free_unpacked(list, NULL);
}

int wb_replay_parked(struct wb_client *c, const char *name, uint64_t *replayed)
{
	wbt_begin(c);
	int rc = check_name(c, "the consumer name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__ReplayParked rp = WHIZBANG__V1__REPLAY_PARKED__INIT;
	rp.name = (char *)name;
	Whizbang__V1__ReplayParkedResult *res;
	rc = WBT_CALL(c, &rp, replay_parked, &res);
	if (rc != 0)
		return rc;
	if (replayed != NULL)
		*replayed = res->replayed;
	WBT_FREE(res);
	return 0;
}

/* ---------------------------------------------------------------- stream life cycle */

int wb_set_stream_metadata(struct wb_client *c, const char *stream,
                           const struct wb_stream_metadata *md)
{
	wbt_begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (md == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_set_stream_metadata: md is NULL");
	Whizbang__V1__StreamMetadata m = WHIZBANG__V1__STREAM_METADATA__INIT;
	m.max_count = md->max_count;
	m.max_age_ms = md->max_age_ms;
	m.truncate_before = md->truncate_before;
	Whizbang__V1__SetStreamMetadata s = WHIZBANG__V1__SET_STREAM_METADATA__INIT;
	s.stream = (char *)stream;
	s.metadata = &m;
	return WBT_CALL_ACK(c, &s, stream_metadata);
}

int wb_get_stream_metadata(struct wb_client *c, const char *stream, struct wb_stream_metadata *out)
{
	wbt_begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_get_stream_metadata: out is NULL");
	Whizbang__V1__GetStreamMetadata g = WHIZBANG__V1__GET_STREAM_METADATA__INIT;
	g.stream = (char *)stream;
	Whizbang__V1__StreamMetadataResult *res;
	rc = WBT_CALL(c, &g, stream_metadata, &res);
	if (rc != 0)
		return rc;
	*out = metadata_of(res->metadata);
	WBT_FREE(res);
	return 0;
}

int wb_delete_stream(struct wb_client *c, const char *stream, bool hard, uint64_t *last_version)
{
	wbt_begin(c);
	int rc = check_name(c, "the stream name", stream);
	if (rc != 0)
		return rc;
	Whizbang__V1__DeleteStream d = WHIZBANG__V1__DELETE_STREAM__INIT;
	d.stream = (char *)stream;
	d.hard = hard;
	Whizbang__V1__DeleteStreamResult *res;
	rc = WBT_CALL(c, &d, delete_stream, &res);
	if (rc != 0)
		return rc;
	if (last_version != NULL)
		*last_version = res->last_version;
	WBT_FREE(res);
	return 0;
}

/* Scavenge and Backup: the server answers the one request with progress
 * reports (the member answer of Response) until one says it is done.
 * step(ctx, report) is given each report and says whether it was the last;
 * the client's timeout runs anew after each. */
static int progress_call(struct wb_client *c, const ProtobufCMessage *body, const char *answer,
                         bool (*step)(void *ctx, const void *report), void *ctx)
{
	uint64_t id;
	int rc = wbt_ready(c);
	if (rc == 0)
		rc = wbt_request(c, body, &id);
	while (rc == 0) {
		ProtobufCMessage *report;
		rc = wbt_answer(c, id, answer, &report);
		if (rc != 0)
			break;
		bool done = step(ctx, report);
		protobuf_c_message_free_unpacked(report, NULL);
		if (done)
			break;
		wbt_deadline(c, c->timeout_ms);
	}
	return rc;
}

struct scavenge_ctx {
	wb_scavenge_cb cb;
	void *arg;
	struct wb_scavenge_result *out;
};

static bool scavenge_step(void *ctx, const void *report)
{
	const struct scavenge_ctx *x = ctx;
	const Whizbang__V1__ScavengeResult *s = report;
	struct wb_scavenge_result figures = {
	        .events_examined = s->events_examined,
	        .events_removed = s->events_removed,
	        .bytes_reclaimed = s->bytes_reclaimed,
	        .micros = s->micros,
	        .position = s->position,
	        .last_position = s->last_position,
	};
	if (s->done && x->out != NULL)
		*x->out = figures;
	else if (!s->done && x->cb != NULL)
		x->cb(x->arg, &figures);
	return s->done;
}

int wb_scavenge(struct wb_client *c, wb_scavenge_cb cb, void *arg, struct wb_scavenge_result *out)
{
	wbt_begin(c);
	Whizbang__V1__Scavenge sc = WHIZBANG__V1__SCAVENGE__INIT;
	struct scavenge_ctx ctx = {.cb = cb, .arg = arg, .out = out};
	return progress_call(c, &sc.base, WBT_MEMBER(scavenge), scavenge_step, &ctx);
}

struct backup_ctx {
	wb_backup_cb cb;
	void *arg;
	struct wb_backup_result *out;
	struct wb_backup_result progress; /* what cb is given */
};

static bool backup_step(void *ctx, const void *report)
{
	struct backup_ctx *x = ctx;
	const Whizbang__V1__BackupResult *b = report;
	if (b->done && x->out == NULL)
		return true;
	if (!b->done && x->cb == NULL)
		return false;
	struct wb_backup_result *figures = b->done ? x->out : &x->progress;
	snprintf(figures->path, sizeof(figures->path), "%s", b->path != NULL ? b->path : "");
	figures->bytes = b->bytes;
	figures->micros = b->micros;
	figures->watermark = b->watermark;
	figures->last_position = b->last_position;
	if (!b->done)
		x->cb(x->arg, figures);
	return b->done;
}

int wb_backup(struct wb_client *c, const char *path, wb_backup_cb cb, void *arg,
              struct wb_backup_result *out)
{
	wbt_begin(c);
	if (path == NULL || path[0] == '\0')
		return wbt_fail(c, WB_E_INVAL, "the backup path is empty");
	Whizbang__V1__Backup b = WHIZBANG__V1__BACKUP__INIT;
	b.path = (char *)path;
	struct backup_ctx ctx = {.cb = cb, .arg = arg, .out = out};
	return progress_call(c, &b.base, WBT_MEMBER(backup), backup_step, &ctx);
}

/* ---------------------------------------------------------------- users, roles and tokens */

/* names[0..n), each a name (check_name()); what says what they are. */
static int check_names(struct wb_client *c, const char *what, const char *const *names, size_t n)
{
	if (n != 0 && names == NULL)
		return wbt_fail(c, WB_E_INVAL, "%s is NULL with %zu of them", what, n);
	for (size_t i = 0; i < n; i++) {
		int rc = check_name(c, what, names[i]);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int wb_put_user(struct wb_client *c, const char *name, const char *const *roles, size_t nroles,
                const char *password, uint32_t iterations)
{
	wbt_begin(c);
	int rc = check_name(c, "the user name", name);
	if (rc == 0)
		rc = check_names(c, "a role name", roles, nroles);
	if (rc != 0)
		return rc;
	if (nroles > WB_USER_ROLES_MAX)
		return wbt_fail(c, WB_E_INVAL, "a user holds at most %u roles, not %zu",
		                WB_USER_ROLES_MAX, nroles);
	uint32_t iter = iterations != 0 ? iterations : WB_SCRAM_ITERATIONS_DEFAULT;
	if (iter < WB_SCRAM_ITERATIONS_MIN || iter > WB_SCRAM_ITERATIONS_MAX)
		return wbt_fail(c, WB_E_INVAL, "iterations is %u, not %u to %u", iter,
		                WB_SCRAM_ITERATIONS_MIN, WB_SCRAM_ITERATIONS_MAX);
	char text[AUTH_SCRAM_CRED_STR_MAX + 1] = "";
	if (password != NULL) {
		struct auth_scram_cred cred;
		size_t len;
		rc = auth_scram_cred_derive(&cred, password, strlen(password), iter,
		                            auth_rand_bytes, NULL);
		if (rc == 0)
			rc = auth_scram_cred_format(&cred, text, sizeof(text), &len);
		explicit_bzero(&cred, sizeof(cred));
		if (rc == WB_E_INVAL)
			return wbt_fail(
			        c, rc,
			        "the password is not 1 to %u bytes of UTF-8 without control "
			        "characters",
			        AUTH_SCRAM_PASSWORD_MAX);
		if (rc != 0)
			return wbt_fail(c, rc, "cannot derive the password's credential: %s",
			                wb_strerror(rc));
		/* PBKDF2 took its time before the call: the timeout starts now. */
		wbt_deadline(c, c->timeout_ms);
	}
	Whizbang__V1__PutUser m = WHIZBANG__V1__PUT_USER__INIT;
	m.name = (char *)name;
	m.roles = (char **)roles;
	m.n_roles = nroles;
	m.credential = text;
	rc = WBT_CALL_ACK(c, &m, put_user);
	explicit_bzero(text, sizeof(text));
	return rc;
}

int wb_delete_user(struct wb_client *c, const char *name)
{
	wbt_begin(c);
	int rc = check_name(c, "the user name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__DeleteUser m = WHIZBANG__V1__DELETE_USER__INIT;
	m.name = (char *)name;
	return WBT_CALL_ACK(c, &m, delete_user);
}

int wb_list_users(struct wb_client *c, Whizbang__V1__UserList **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_list_users: out is NULL");
	Whizbang__V1__ListUsers m = WHIZBANG__V1__LIST_USERS__INIT;
	return WBT_CALL(c, &m, users, out);
}

void wb_user_list_free(Whizbang__V1__UserList *list)
{
	if (list != NULL)
		WBT_FREE(list);
}

int wb_put_role(struct wb_client *c, const char *name, const char *const *grants, size_t ngrants)
{
	wbt_begin(c);
	int rc = check_name(c, "the role name", name);
	if (rc != 0)
		return rc;
	if (ngrants != 0 && grants == NULL)
		return wbt_fail(c, WB_E_INVAL, "grants is NULL with %zu grants", ngrants);
	for (size_t i = 0; i < ngrants; i++)
		if (grants[i] == NULL)
			return wbt_fail(c, WB_E_INVAL, "grant %zu is NULL", i + 1);
	Whizbang__V1__PutRole m = WHIZBANG__V1__PUT_ROLE__INIT;
	m.name = (char *)name;
	m.grants = (char **)grants;
	m.n_grants = ngrants;
	return WBT_CALL_ACK(c, &m, put_role);
}

int wb_delete_role(struct wb_client *c, const char *name)
{
	wbt_begin(c);
	int rc = check_name(c, "the role name", name);
	if (rc != 0)
		return rc;
	Whizbang__V1__DeleteRole m = WHIZBANG__V1__DELETE_ROLE__INIT;
	m.name = (char *)name;
	return WBT_CALL_ACK(c, &m, delete_role);
}

int wb_list_roles(struct wb_client *c, Whizbang__V1__RoleList **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_list_roles: out is NULL");
	Whizbang__V1__ListRoles m = WHIZBANG__V1__LIST_ROLES__INIT;
	return WBT_CALL(c, &m, roles, out);
}

void wb_role_list_free(Whizbang__V1__RoleList *list)
{
	if (list != NULL)
		WBT_FREE(list);
}

int wb_create_token(struct wb_client *c, const char *role, uint64_t ttl_ms, const char *description,
                    Whizbang__V1__CreateTokenResult **out)
{
	wbt_begin(c);
	int rc = check_name(c, "the role name", role);
	if (rc != 0)
		return rc;
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_create_token: out is NULL");
	Whizbang__V1__CreateToken m = WHIZBANG__V1__CREATE_TOKEN__INIT;
	m.role = (char *)role;
	m.ttl_ms = ttl_ms;
	m.description = (char *)(description != NULL ? description : "");
	return WBT_CALL(c, &m, create_token, out);
}

void wb_token_result_free(Whizbang__V1__CreateTokenResult *res)
{
	if (res == NULL)
		return;
	if (res->token != NULL)
		explicit_bzero(res->token, strlen(res->token));
	WBT_FREE(res);
}

int wb_revoke_token(struct wb_client *c, const char *id)
{
	wbt_begin(c);
	int rc = check_name(c, "the token id", id);
	if (rc != 0)
		return rc;
	Whizbang__V1__RevokeToken m = WHIZBANG__V1__REVOKE_TOKEN__INIT;
	m.id = (char *)id;
	return WBT_CALL_ACK(c, &m, revoke_token);
}

int wb_list_tokens(struct wb_client *c, Whizbang__V1__TokenList **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_list_tokens: out is NULL");
	Whizbang__V1__ListTokens m = WHIZBANG__V1__LIST_TOKENS__INIT;
	return WBT_CALL(c, &m, tokens, out);
}

void wb_token_list_free(Whizbang__V1__TokenList *list)
{
	if (list != NULL)
		WBT_FREE(list);
}

int wb_list_clients(struct wb_client *c, Whizbang__V1__ClientList **out)
{
	wbt_begin(c);
	if (out == NULL)
		return wbt_fail(c, WB_E_INVAL, "wb_list_clients: out is NULL");
	Whizbang__V1__ListClients m = WHIZBANG__V1__LIST_CLIENTS__INIT;
	return WBT_CALL(c, &m, clients, out);
}

void wb_client_list_free(Whizbang__V1__ClientList *list)
{
	if (list != NULL)
		WBT_FREE(list);
}

int wb_disconnect(struct wb_client *c, uint64_t id)
{
	wbt_begin(c);
	Whizbang__V1__Disconnect m = WHIZBANG__V1__DISCONNECT__INIT;
	m.id = id;
	return WBT_CALL_ACK(c, &m, disconnect);
}

int wb_reload(struct wb_client *c, bool *tls, int64_t *tls_not_after)
{
	wbt_begin(c);
	Whizbang__V1__Reload m = WHIZBANG__V1__RELOAD__INIT;
	Whizbang__V1__ReloadResult *r;
	int rc = WBT_CALL(c, &m, reload, &r);
	if (rc != 0)
		return rc;
	if (tls != NULL)
		*tls = r->tls;
	if (tls_not_after != NULL)
		*tls_not_after = r->tls_not_after;
	WBT_FREE(r);
	return 0;
}
