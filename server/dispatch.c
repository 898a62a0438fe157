/* Dispatch (dispatch.h).
 *
 * Happy path: unpack the frame as a Request (bounded allocation), check its
 * strings, pass the gates (shutting down, Hello first), and call the
 * handler the table holds for its body case. Requests that name a
 * subscription (Credit, Unsubscribe) go to whichever module owns it.
 *
 * Failure modes: bytes that do not decode are answered BAD_REQUEST with
 * request id 0 and the connection stays; a string that is not UTF-8 (or
 * holds a NUL) is answered BAD_REQUEST; a body this server does not know is
 * answered BAD_REQUEST naming its field number. */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "log.h"
#include "reply.h"
#include "textform.h"
#include "wb_error.h"
#include "wb_version.h"
#include "wire.h"

/* Body cases are field numbers: the table covers 0..DISPATCH_CASES-1. */
#define DISPATCH_CASES 64u
/* Modules that may claim one body case (requests routed by subscription). */
#define DISPATCH_CLAIMS 4u

struct route {
	size_t n;
	const struct srv_module *mod[DISPATCH_CLAIMS];
	void *state[DISPATCH_CLAIMS];
	bool (*handle[DISPATCH_CLAIMS])(void *state, struct conn *c, Request *req);
};

struct dispatch {
	struct dispatch_env env;
	/* The modules, for their hello hooks. */
	const struct srv_module *const *mods;
	void *const *states;
	size_t nmods;
	struct route routes[DISPATCH_CASES];
};

/* ------------------------------------------------------------ Hello, Ping, GetStats */

static void hello(struct dispatch *d, struct conn *c, const Request *req)
{
	const Whizbang__V1__Hello *h = req->hello;
	if (h->protocol_version != WB_PROTOCOL_VERSION) {
		srv_error(
		        c, req->id, WB_UNSUPPORTED_VERSION,
		        "this server speaks protocol version %u; the client asked for %u: upgrade "
		        "the client library",
		        WB_PROTOCOL_VERSION, h->protocol_version);
		return;
	}
	conn_greet(c, h->client_name);
	/* Who it is: a trusted Unix socket peer by its uid, else nobody (and
	 * the anonymous role, if the operator gave one). */
	const struct auth_subject *who = d->env.anonymous;
	char user[32] = "";
	uint32_t uid;
	if (conn_peer_uid(c, &uid) && (uid == 0 || uid == d->env.service_uid) &&
	    d->env.local_admin != NULL) {
		who = d->env.local_admin;
		snprintf(user, sizeof(user), "uid:%u", (unsigned)uid);
	}
	conn_set_subject(c, who);
	Whizbang__V1__HelloResult r = WHIZBANG__V1__HELLO_RESULT__INIT;
	r.user = user;
	if (h->token.len > 0 || h->mechanism[0] != '\0') {
		/* Credentials: the module that authenticates decides. */
		char msg[300] = "";
		int code = WB_BAD_REQUEST;
		snprintf(msg, sizeof(msg), "this server takes no credentials in Hello");
		for (size_t i = 0; i < d->nmods; i++)
			if (d->mods[i]->hello != NULL) {
				code = d->mods[i]->hello(d->states[i], c, h, &r, msg, sizeof(msg));
				break;
			}
		if (code != 0) {
			conn_set_subject(c, NULL);
			srv_error(c, req->id, code, "%s", msg);
			return;
		}
		who = conn_subject(c);
	}
	if (d->env.greeted != NULL) {
		char msg[300];
		int code = d->env.greeted(d->env.arg, c, msg, sizeof(msg));
		if (code != 0) {
			srv_error(c, req->id, code, "%s", msg);
			conn_close_after_flush(c);
			return;
		}
	}
	char q[80];
	const char *name = conn_client_name(c);
	srv_log(WB_LOG_DEBUG, "hello", "conn=%llu client=%s user=%s roles=%zu",
	        (unsigned long long)conn_id(c), log_quote(name, strlen(name), q, sizeof(q)),
	        r.user[0] != '\0' ? r.user : "-", who != NULL ? who->nroles : 0u);
	r.protocol_version = WB_PROTOCOL_VERSION;
	r.server_version = (char *)WB_VERSION;
	r.max_frame = (uint32_t)d->env.max_frame;
	r.max_read_count = (uint32_t)d->env.max_read_count;
	r.max_append_events = (uint32_t)d->env.max_append_events;
	r.max_event_size = d->env.max_event_size;
	r.auth_required = who == NULL;
	char *roles[AUTH_ROLES_MAX];
	if (r.n_roles == 0) {
		for (size_t i = 0; who != NULL && i < who->nroles && i < AUTH_ROLES_MAX; i++)
			roles[r.n_roles++] = (char *)who->roles[i]->name;
		r.roles = roles;
	}
	SRV_REPLY(c, req->id, HELLO, hello, &r);
}

static void ping(struct conn *c, const Request *req)
{
	Whizbang__V1__Pong pong = WHIZBANG__V1__PONG__INIT;
	pong.nonce = req->ping->nonce;
	SRV_REPLY(c, req->id, PONG, pong, &pong);
}

static void stats(struct dispatch *d, struct conn *c, const Request *req)
{
	Whizbang__V1__ServerStats s = WHIZBANG__V1__SERVER_STATS__INIT;
	d->env.stats(d->env.arg, &s);
	s.server_version = (char *)WB_VERSION;
	SRV_REPLY(c, req->id, STATS, stats, &s);
}

/* ------------------------------------------------------------ the table */

/* Requests that name a subscription: they go to the module that owns it. */
static bool names_subscription(unsigned body)
{
	return body == WHIZBANG__V1__REQUEST__BODY_CREDIT ||
	       body == WHIZBANG__V1__REQUEST__BODY_UNSUBSCRIBE;
}

int dispatch_init(struct dispatch **out, const struct dispatch_env *env,
                  const struct srv_module *const *mods, void *const *states, size_t n, char *errmsg,
                  size_t errlen)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	d->env = *env;
	d->mods = mods;
	d->states = states;
	d->nmods = n;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < mods[i]->nhandlers; j++) {
			const struct srv_handler *h = &mods[i]->handlers[j];
			unsigned body = (unsigned)h->body;
			const char *why = NULL;
			if (body == 0 || body >= DISPATCH_CASES ||
			    body == WHIZBANG__V1__REQUEST__BODY_HELLO ||
			    body == WHIZBANG__V1__REQUEST__BODY_PING ||
			    body == WHIZBANG__V1__REQUEST__BODY_GET_STATS)
				why = "is not a body a module may handle";
			else if (d->routes[body].n == DISPATCH_CLAIMS)
				why = "is claimed by too many modules";
			else if (d->routes[body].n > 0 && !names_subscription(body))
				why = "is claimed twice, and does not name a subscription";
			else if (names_subscription(body) && mods[i]->owns_subscription == NULL)
				why = "names a subscription, and the module owns none";
			if (why != NULL) {
				snprintf(errmsg, errlen, "module %s: request body %u %s",
				         mods[i]->name, body, why);
				free(d);
				return WB_E_INVAL;
			}
			struct route *r = &d->routes[body];
			r->mod[r->n] = mods[i];
			r->state[r->n] = states[i];
			r->handle[r->n] = h->handle;
			r->n++;
		}
	}
	*out = d;
	return 0;
}

void dispatch_free(struct dispatch *d)
{
	free(d);
}

/* Decides req by the access table for c's subject; answers and returns
 * false when it is refused. */
static bool permitted(struct conn *c, const Request *req)
{
	const struct srv_access_rule *r = srv_access_rule(req->body_case);
	if (r != NULL && r->name == ACCESS_OPEN)
		return true;
	const struct auth_subject *s = conn_subject(c);
	if (s == NULL) {
		srv_error(c, req->id, WB_UNAUTHENTICATED,
		          "authentication is required: this connection has no role");
		return false;
	}
	char why[300];
	if (srv_access_check(s, req, why, sizeof(why)) == 0)
		return true;
	srv_error(c, req->id, WB_PERMISSION_DENIED, "%s", why);
	return false;
}

/* Runs the handler of req's body; true when it kept req. */
static bool route(struct dispatch *d, struct conn *c, Request *req)
{
	unsigned body = (unsigned)req->body_case;
	const struct route *r = body < DISPATCH_CASES ? &d->routes[body] : NULL;
	bool own = req->body_case == WHIZBANG__V1__REQUEST__BODY_HELLO ||
	           req->body_case == WHIZBANG__V1__REQUEST__BODY_PING ||
	           req->body_case == WHIZBANG__V1__REQUEST__BODY_GET_STATS;
	if (!own && (r == NULL || r->n == 0)) {
		srv_error(
		        c, req->id, WB_BAD_REQUEST,
		        "the request has no body this server knows (field %d): check the client's "
		        "protocol version",
		        (int)req->body_case);
		return false;
	}
	if (!permitted(c, req))
		return false;
	switch (req->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_HELLO:
		hello(d, c, req);
		return false;
	case WHIZBANG__V1__REQUEST__BODY_PING:
		ping(c, req);
		return false;
	case WHIZBANG__V1__REQUEST__BODY_GET_STATS:
		stats(d, c, req);
		return false;
	default:
		break;
	}
	if (!names_subscription(body))
		return r->handle[0](r->state[0], c, req);
	/* To the module that owns the subscription: its handler finds it. */
	uint64_t sub = req->body_case == WHIZBANG__V1__REQUEST__BODY_CREDIT
	                       ? req->credit->subscription
	                       : req->unsubscribe->subscription;
	for (size_t i = 0; i < r->n; i++)
		if (r->mod[i]->owns_subscription(r->state[i], c, sub))
			return r->handle[i](r->state[i], c, req);
	srv_error(c, req->id, WB_NOT_FOUND,
	          "this connection has no subscription %llu (ended, or never started here)",
	          (unsigned long long)sub);
	return false;
}

/* What the decoding of a frame gave: the Request, or why there is none
 * (rc), and the strings' check. Made on the loop or on a worker. */
struct decoded {
	int rc;
	Request *req;
	int strings_rc;
	int text_rc;
	char why[320];
};

static void decode(const uint8_t *payload, uint32_t len, struct decoded *out)
{
	/* protobuf-c allocates per element: allow a generous multiple of the
	 * frame, not an unbounded one. */
	size_t budget = (size_t)len * 16 + 65536;
	out->req = NULL;
	out->rc = wire_decode_request(payload, len, budget, &out->req);
	out->strings_rc = out->rc == 0
	                          ? wire_check_strings(&whizbang__v1__request__descriptor, payload,
	                                               len, out->why, sizeof(out->why))
	                          : 0;
	/* Text forms (a Where as text, Op.text) become the structured form
	 * here, off the loop with the rest of a large frame's decoding. */
	out->text_rc = out->rc == 0 && out->strings_rc == 0
	                       ? textform_resolve(out->req, out->why, sizeof(out->why))
	                       : 0;
}

/* The rest of a frame's handling, on the loop, once it is decoded. */
static void dispatch_decoded(struct dispatch *d, struct conn *c, struct decoded *dec, uint32_t len)
{
	struct conn_counters *n = conn_counters(c);
	if (dec->rc == WB_E_NOMEM) {
		srv_error(c, 0, WB_RESOURCE_EXHAUSTED,
		          "the server is out of memory to decode the request; retry later");
		return;
	}
	if (dec->rc != 0) {
		srv_log(WB_LOG_INFO, "bad_frame", "conn=%llu bytes=%u",
		        (unsigned long long)conn_id(c), len);
		/* A client that keeps sending what does not decode speaks
		 * something else: answering each one would let it spend the
		 * loop's time at will. */
		if (conn_bad_frame(c) >= DISPATCH_BAD_FRAMES_MAX) {
			srv_error(c, 0, WB_BAD_REQUEST,
			          "%u frames on this connection did not decode as a "
			          "whizbang.v1.Request: it is closed",
			          DISPATCH_BAD_FRAMES_MAX);
			conn_close_after_flush(c);
			return;
		}
		srv_error(c, 0, WB_BAD_REQUEST,
		          "the frame's %u bytes do not decode as a whizbang.v1.Request", len);
		return;
	}
	Request *req = dec->req;
	n->requests_by_body[(size_t)req->body_case % 64]++;
	if (dec->strings_rc != 0) {
		srv_error(c, req->id, WB_BAD_REQUEST, "%s", dec->why);
	} else if (dec->text_rc == WB_E_NOMEM) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "the server is out of memory to parse the request's text; retry later");
	} else if (dec->text_rc != 0) {
		srv_error(c, req->id, WB_INVALID_EXPRESSION, "%s", dec->why);
	} else if (d->env.shutting_down(d->env.arg)) {
		srv_error(c, req->id, WB_SHUTTING_DOWN,
		          "the server is shutting down; reconnect later");
	} else if (!conn_greeted(c) && req->body_case != WHIZBANG__V1__REQUEST__BODY_HELLO) {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "send Hello first: the first request on a connection must be Hello");
	} else if (route(d, c, req)) {
		return; /* kept until its answer */
	}
	whizbang__v1__request__free_unpacked(req, NULL);
}

/* A large frame decoded on a libuv worker. */
struct offloop {
	uv_work_t work;
	struct dispatch *d;
	struct conn *c;
	uint8_t *payload;
	uint32_t len;
	struct decoded dec;
};

static void offloop_work(uv_work_t *w)
{
	struct offloop *o = w->data;
	decode(o->payload, o->len, &o->dec);
}

static void offloop_done(uv_work_t *w, int status)
{
	struct offloop *o = w->data;
	struct conn *c = o->c;
	struct dispatch *d = o->d;
	if (status != 0) {
		o->dec.rc = WB_E_NOMEM;
		o->dec.req = NULL;
	}
	if (!conn_is_closing(c))
		dispatch_decoded(d, c, &o->dec, o->len);
	else if (o->dec.req != NULL)
		whizbang__v1__request__free_unpacked(o->dec.req, NULL);
	conn_mem_add(c, CONN_MEM_INPUT, -(int64_t)o->len);
	free(o->payload);
	free(o);
	/* Its next frames (c may be freed here when it closed), then the
	 * answers out. */
	conn_resume(c);
	d->env.after(d->env.arg);
}

/* Whether a request of this body case is a read of the read models,
 * whose size a where clause makes (dispatch_env.max_query_bytes). */
static bool is_query(uint32_t body)
{
	return body == WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES ||
	       body == WHIZBANG__V1__REQUEST__BODY_EXPLAIN ||
	       body == WHIZBANG__V1__REQUEST__BODY_GET_ENTITY ||
	       body == WHIZBANG__V1__REQUEST__BODY_LIST_INDEXES;
}

void dispatch_frame(struct dispatch *d, struct conn *c, const uint8_t *payload, uint32_t len)
{
	conn_counters(c)->requests_total++;
	/* A query larger than any clause the limits let through is refused
	 * before its bytes are decoded: decoding it is what would cost. */
	uint64_t id;
	if (d->env.max_query_bytes != 0 && len > d->env.max_query_bytes &&
	    is_query(wire_peek_request(payload, len, &id))) {
		srv_error(c, id, WB_QUERY_TOO_EXPENSIVE,
		          "a query of %u bytes is larger than this server takes "
		          "(--max-query-bytes %llu): its where clause is over the --max-where-* "
		          "limits",
		          len, (unsigned long long)d->env.max_query_bytes);
		if (d->env.refused != NULL)
			d->env.refused(d->env.arg, c);
		return;
	}
	/* A large frame takes milliseconds to decode (a where clause of
	 * tens of thousands of terms): off the loop, with c suspended so
	 * that its next frames keep their order. */
	if (d->env.loop != NULL && len >= DISPATCH_OFFLOOP_BYTES) {
		struct offloop *o = calloc(1, sizeof(*o));
		uint8_t *copy = o != NULL ? malloc(len) : NULL;
		if (copy != NULL) {
			memcpy(copy, payload, len);
			o->work.data = o;
			o->d = d;
			o->c = c;
			o->payload = copy;
			o->len = len;
			if (uv_queue_work(d->env.loop, &o->work, offloop_work, offloop_done) == 0) {
				conn_suspend(c);
				/* The copy is c's input until it is decoded. */
				conn_mem_add(c, CONN_MEM_INPUT, (int64_t)len);
				return;
			}
			free(copy);
		}
		free(o);
		/* No memory or no worker: decode here. */
	}
	struct decoded dec;
	decode(payload, len, &dec);
	dispatch_decoded(d, c, &dec, len);
}
