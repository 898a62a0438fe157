/* The one table from requests to actions: every request body of the
 * protocol maps to exactly one action (a kind of resource and one
 * permission, auth/acl.h) and says where the resource's name comes from.
 * Dispatch checks it before any handler runs; a request body without an
 * entry is refused, and a unit test fails when the protocol gains a body
 * the table lacks.
 *
 * Requests on a lease (Extend, Release, Stage, Commit) name a sequence,
 * not the projection: their entry says ACCESS_BY_LEASE and the lease
 * module checks the lease's projection with srv_access_allowed() once it
 * has found the lease. Credit and Unsubscribe act on the connection's own
 * subscription, which was checked when it started; Hello and Ping need
 * nothing. Any thread: the table is constant, and its index by body is
 * built once (pthread_once) on the first lookup. */
#ifndef WB_ACCESS_H
#define WB_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/acl.h"
#include "whizbang.pb-c.h"

/* Where an entry's resource name comes from. */
enum srv_access_name {
	ACCESS_OPEN,     /* no permission needed (Hello, Ping, own subscriptions) */
	ACCESS_NONE,     /* the action names no resource: the name is "" */
	ACCESS_FIELD,    /* a string field of the request (the entry's field) */
	ACCESS_BY_LEASE, /* the lease's projection: the lease module checks */
	ACCESS_SPECIAL,  /* ReadAll, Subscribe, CreateConsumer: see access.c */
};

struct srv_access_rule {
	Whizbang__V1__Request__BodyCase body;
	uint8_t kind;  /* enum auth_kind; 0 with ACCESS_OPEN */
	uint32_t perm; /* one permission bit of kind */
	uint8_t name;  /* enum srv_access_name */
	/* ACCESS_FIELD: the name field of the body message. */
	const char *field;
};

/* The rule for body, or NULL when the table has none (such a request is
 * refused). */
const struct srv_access_rule *srv_access_rule(Whizbang__V1__Request__BodyCase body);

/* The whole table, for the tests and the docs: *n entries. */
const struct srv_access_rule *srv_access_rules(size_t *n);

/* Decides req for s: 0 when allowed (or left to the lease module:
 * ACCESS_BY_LEASE), WB_PERMISSION_DENIED with why saying which action on
 * which resource was refused (safe to send to the client: it names only
 * what the client sent). A body without a rule is WB_PERMISSION_DENIED. */
int srv_access_check(const struct auth_subject *s, const Whizbang__V1__Request *req, char *why,
                     size_t whylen);

/* One decision with the refusal's text, for modules that find the name
 * themselves (ACCESS_BY_LEASE): 0 or WB_PERMISSION_DENIED. */
int srv_access_allowed(const struct auth_subject *s, unsigned kind, uint32_t perm, const char *name,
                       char *why, size_t whylen);

#endif
