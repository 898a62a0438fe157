/* The request -> action table (access.h). */
#include "access.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "wb_error.h"

#define B(x) WHIZBANG__V1__REQUEST__BODY_##x
#define OPEN(b)                                                                                    \
	{                                                                                          \
		B(b), 0, 0, ACCESS_OPEN, NULL                                                      \
	}
#define NONE(b, k, p)                                                                              \
	{                                                                                          \
		B(b), AUTH_##k, AUTH_##p, ACCESS_NONE, NULL                                        \
	}
#define FIELD(b, k, p, f)                                                                          \
	{                                                                                          \
		B(b), AUTH_##k, AUTH_##p, ACCESS_FIELD, f                                          \
	}
#define LEASE(b, p)                                                                                \
	{                                                                                          \
		B(b), AUTH_PROJECTIONS, AUTH_##p, ACCESS_BY_LEASE, NULL                            \
	}
#define SPECIAL(b, k, p)                                                                           \
	{                                                                                          \
		B(b), AUTH_##k, AUTH_##p, ACCESS_SPECIAL, NULL                                     \
	}

static const struct srv_access_rule rules[] = {
        OPEN(HELLO),
        OPEN(PING),
        FIELD(APPEND_EVENTS, STREAMS, STREAM_APPEND, "stream"),
        FIELD(READ_STREAM, STREAMS, STREAM_READ, "stream"),
        SPECIAL(READ_ALL, ALL, ALL_READ),
        FIELD(GET_STREAM_INFO, STREAMS, STREAM_READ, "stream"),
        NONE(GET_STATS, ADMIN, ADMIN_STATS),
        FIELD(LEASE, PROJECTIONS, PROJ_LEASE, "projection"),
        LEASE(EXTEND, PROJ_LEASE),
        LEASE(RELEASE, PROJ_LEASE),
        LEASE(STAGE, PROJ_STAGE),
        LEASE(COMMIT, PROJ_COMMIT),
        NONE(READ_LEDGER, PROJECTIONS, PROJ_LEDGER),
        NONE(GET_WATERMARK, PROJECTIONS, PROJ_LEDGER),
        NONE(WAIT_FOR_WATERMARK, PROJECTIONS, PROJ_LEDGER),
        FIELD(GET_ENTITY, ENTITIES, ENTITY_QUERY, "type"),
        FIELD(QUERY_ENTITIES, ENTITIES, ENTITY_QUERY, "type"),
        FIELD(CREATE_INDEX, INDEXES, INDEX_MANAGE, "type"),
        FIELD(DROP_INDEX, INDEXES, INDEX_MANAGE, "type"),
        FIELD(LIST_INDEXES, INDEXES, INDEX_READ, "type"),
        FIELD(EXPLAIN, ENTITIES, ENTITY_QUERY, "type"),
        NONE(VERIFY, ADMIN, ADMIN_VERIFY),
        SPECIAL(SUBSCRIBE, ALL, ALL_READ),
        OPEN(CREDIT),
        OPEN(UNSUBSCRIBE),
        SPECIAL(CREATE_CONSUMER, GROUPS, GROUP_CREATE),
        FIELD(DELETE_CONSUMER, GROUPS, GROUP_MANAGE, "name"),
        NONE(LIST_CONSUMERS, GROUPS, GROUP_MANAGE),
        FIELD(JOIN_CONSUMER, GROUPS, GROUP_JOIN, "name"),
        FIELD(ACK, GROUPS, GROUP_ACK, "name"),
        FIELD(NACK, GROUPS, GROUP_ACK, "name"),
        FIELD(LIST_PARKED, GROUPS, GROUP_MANAGE, "name"),
        FIELD(REPLAY_PARKED, GROUPS, GROUP_MANAGE, "name"),
        FIELD(SET_STREAM_METADATA, STREAMS, STREAM_METADATA, "stream"),
        FIELD(GET_STREAM_METADATA, STREAMS, STREAM_READ, "stream"),
        FIELD(DELETE_STREAM, STREAMS, STREAM_DELETE, "stream"),
        NONE(SCAVENGE, ADMIN, ADMIN_SCAVENGE),
        NONE(BACKUP, ADMIN, ADMIN_BACKUP),
        OPEN(AUTHENTICATE),
        NONE(PUT_USER, ADMIN, ADMIN_USERS),
        NONE(DELETE_USER, ADMIN, ADMIN_USERS),
        NONE(LIST_USERS, ADMIN, ADMIN_USERS),
        NONE(PUT_ROLE, ADMIN, ADMIN_USERS),
        NONE(DELETE_ROLE, ADMIN, ADMIN_USERS),
        NONE(LIST_ROLES, ADMIN, ADMIN_USERS),
        NONE(CREATE_TOKEN, ADMIN, ADMIN_USERS),
        NONE(REVOKE_TOKEN, ADMIN, ADMIN_USERS),
        NONE(LIST_TOKENS, ADMIN, ADMIN_USERS),
        NONE(RELOAD, ADMIN, ADMIN_RELOAD),
        NONE(LIST_CLIENTS, ADMIN, ADMIN_CLIENTS),
        NONE(DISCONNECT, ADMIN, ADMIN_CLIENTS),
};

const struct srv_access_rule *srv_access_rules(size_t *n)
{
	*n = sizeof(rules) / sizeof(rules[0]);
	return rules;
}

/* The table indexed by body case, built once: each body's rule and, for
 * ACCESS_FIELD, the descriptors of the body message in Request and of the
 * name field in it, so that a request costs no search. A body at or above
 * MAX_BODY has no entry (test_access fails for a body without a rule). */
#define MAX_BODY 128
static struct {
	const struct srv_access_rule *rule;
	const ProtobufCFieldDescriptor *body_f, *name_f;
} by_body[MAX_BODY];
static pthread_once_t by_body_once = PTHREAD_ONCE_INIT;

static void index_rules(void)
{
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		unsigned b = (unsigned)rules[i].body;
		if (b >= MAX_BODY)
			continue;
		by_body[b].rule = &rules[i];
		if (rules[i].name != ACCESS_FIELD)
			continue;
		const ProtobufCFieldDescriptor *bf = protobuf_c_message_descriptor_get_field(
		        &whizbang__v1__request__descriptor, b);
		if (bf == NULL || bf->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
		        bf->descriptor, rules[i].field);
		if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING ||
		    f->label == PROTOBUF_C_LABEL_REPEATED)
			continue;
		by_body[b].body_f = bf;
		by_body[b].name_f = f;
	}
}

const struct srv_access_rule *srv_access_rule(Whizbang__V1__Request__BodyCase body)
{
	pthread_once(&by_body_once, index_rules);
	return (unsigned)body < MAX_BODY ? by_body[body].rule : NULL;
}

static int deny(unsigned kind, uint32_t perm, const char *name, char *why, size_t whylen)
{
	if (name[0] == '\0')
		snprintf(why, whylen, "permission denied: %s:%s", auth_kind_name(kind),
		         auth_perm_name(kind, perm));
	else
		snprintf(why, whylen, "permission denied: %s:%s on \"%.200s\"",
		         auth_kind_name(kind), auth_perm_name(kind, perm), name);
	return WB_PERMISSION_DENIED;
}

int srv_access_allowed(const struct auth_subject *s, unsigned kind, uint32_t perm, const char *name,
                       char *why, size_t whylen)
{
	if (auth_allowed(s, kind, perm, name, strlen(name)))
		return 0;
	return deny(kind, perm, name, why, whylen);
}

/* Reading $all, whole or filtered by a stream prefix: allowed with all:read
 * or with streams:read over the whole prefix, and never when a deny on
 * streams:read reaches under the prefix ($all would show those streams). */
static int read_all(const struct auth_subject *s, const char *prefix, char *why, size_t whylen)
{
	size_t len = strlen(prefix);
	bool ok = (auth_allowed(s, AUTH_ALL, AUTH_ALL_READ, "", 0) ||
	           auth_allowed_prefix(s, AUTH_STREAMS, AUTH_STREAM_READ, prefix, len)) &&
	          !auth_denied_under(s, AUTH_STREAMS, AUTH_STREAM_READ, prefix, len);
	if (ok)
		return 0;
	if (len == 0)
		return deny(AUTH_ALL, AUTH_ALL_READ, "", why, whylen);
	snprintf(why, whylen,
	         "permission denied: all:read, or streams:read on every stream under \"%.200s\"",
	         prefix);
	return WB_PERMISSION_DENIED;
}

/* What a subscription or a consumer group reads: a stream, $all (maybe
 * filtered), or the ledger. */
static int read_source(const struct auth_subject *s, Whizbang__V1__SubscriptionTarget target,
                       const char *stream, const char *prefix, char *why, size_t whylen)
{
	switch (target) {
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM:
		return srv_access_allowed(s, AUTH_STREAMS, AUTH_STREAM_READ, stream, why, whylen);
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER:
		return srv_access_allowed(s, AUTH_PROJECTIONS, AUTH_PROJ_LEDGER, "", why, whylen);
	default:
		/* TARGET_ALL, and a target this build does not know (the
		 * module refuses it; decide as for the widest read). */
		return read_all(s, prefix != NULL ? prefix : "", why, whylen);
	}
}

static int special(const struct auth_subject *s, const Whizbang__V1__Request *req, char *why,
                   size_t whylen)
{
	switch (req->body_case) {
	case B(READ_ALL):
		return read_all(s, req->read_all->stream_prefix, why, whylen);
	case B(SUBSCRIBE): {
		const Whizbang__V1__Subscribe *m = req->subscribe;
		return read_source(s, m->target, m->stream, m->stream_prefix, why, whylen);
	}
	case B(CREATE_CONSUMER): {
		const Whizbang__V1__ConsumerConfig *c = req->create_consumer->config;
		if (c == NULL) /* the module answers BAD_REQUEST */
			return srv_access_allowed(s, AUTH_GROUPS, AUTH_GROUP_CREATE, "", why,
			                          whylen);
		int rc =
		        srv_access_allowed(s, AUTH_GROUPS, AUTH_GROUP_CREATE, c->name, why, whylen);
		if (rc == 0)
			rc = read_source(s, c->target, c->stream, c->stream_prefix, why, whylen);
		return rc;
	}
	default:
		snprintf(why, whylen, "permission denied: the request has no access rule");
		return WB_PERMISSION_DENIED;
	}
}

/* The name field of an ACCESS_FIELD request (by_body), or NULL when the
 * table names a field the message lacks. */
static const char *field_of(const Whizbang__V1__Request *req)
{
	unsigned b = (unsigned)req->body_case;
	const ProtobufCFieldDescriptor *bf = by_body[b].body_f, *f = by_body[b].name_f;
	if (bf == NULL)
		return NULL;
	/* Fields are read through memcpy: their offsets are not known to be
	 * aligned to the compiler. */
	const ProtobufCMessage *body;
	memcpy(&body, (const char *)req + bf->offset, sizeof(body));
	if (body == NULL)
		return NULL;
	const char *name;
	memcpy(&name, (const char *)body + f->offset, sizeof(name));
	return name;
}

int srv_access_check(const struct auth_subject *s, const Whizbang__V1__Request *req, char *why,
                     size_t whylen)
{
	const struct srv_access_rule *r = srv_access_rule(req->body_case);
	if (r == NULL) {
		snprintf(why, whylen, "permission denied: the request has no access rule");
		return WB_PERMISSION_DENIED;
	}
	switch (r->name) {
	case ACCESS_OPEN:
	case ACCESS_BY_LEASE:
		return 0;
	case ACCESS_NONE:
		return srv_access_allowed(s, r->kind, r->perm, "", why, whylen);
	case ACCESS_FIELD: {
		const char *name = field_of(req);
		/* An unset string is "" in protobuf-c; NULL only when the
		 * table names a field the message lacks (the unit test
		 * catches that). */
		if (name == NULL) {
			snprintf(why, whylen, "permission denied: the request has no field %s",
			         r->field);
			return WB_PERMISSION_DENIED;
		}
		return srv_access_allowed(s, r->kind, r->perm, name, why, whylen);
	}
	default:
		return special(s, req, why, whylen);
	}
}
