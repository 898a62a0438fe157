/* Access control: grants, roles, and the decision whether a subject may do
 * one action on one named resource.
 *
 * A grant names a kind of resource, a set of permissions on it, a name
 * prefix, and whether it allows or denies. A subject holds roles, a role
 * holds grants. The decision is default deny, and deny wins: an action on
 * name N is allowed when some allow grant of the subject's roles covers the
 * action's permission on a prefix of N, and no deny grant covers it.
 *
 * Pure: no I/O, no clock, no allocation in the decision. Roles and users
 * live in the store (so that backup and replication carry them); this file
 * only decides. The built-in roles are constant tables here. */
#ifndef WB_AUTH_ACL_H
#define WB_AUTH_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Kinds of resource. The numbers are stored with grants: never reuse one. */
enum auth_kind {
	AUTH_STREAMS = 1,     /* a stream, by name */
	AUTH_ALL = 2,         /* the global log $all (name always "") */
	AUTH_GROUPS = 3,      /* a consumer group, by name */
	AUTH_PROJECTIONS = 4, /* a projection, by name; the ledger is "" */
	AUTH_ENTITIES = 5,    /* an entity type, by name */
	AUTH_INDEXES = 6,     /* the indexes of an entity type, by its name */
	AUTH_ADMIN = 7,       /* server operations (name always "") */
};
#define AUTH_KIND_MAX 7u

/* Permissions, per kind (bits; stored with grants: never renumber). */
enum {
	AUTH_STREAM_READ = 1u << 0,
	AUTH_STREAM_APPEND = 1u << 1,
	AUTH_STREAM_DELETE = 1u << 2,
	AUTH_STREAM_METADATA = 1u << 3,

	AUTH_ALL_READ = 1u << 0,

	AUTH_GROUP_CREATE = 1u << 0,
	AUTH_GROUP_JOIN = 1u << 1,
	AUTH_GROUP_ACK = 1u << 2,
	AUTH_GROUP_MANAGE = 1u << 3,

	AUTH_PROJ_LEASE = 1u << 0,
	AUTH_PROJ_STAGE = 1u << 1,
	AUTH_PROJ_COMMIT = 1u << 2,
	AUTH_PROJ_LEDGER = 1u << 3,

	AUTH_ENTITY_QUERY = 1u << 0,

	AUTH_INDEX_READ = 1u << 0,
	AUTH_INDEX_MANAGE = 1u << 1,

	AUTH_ADMIN_STATS = 1u << 0,
	AUTH_ADMIN_BACKUP = 1u << 1,
	AUTH_ADMIN_SCAVENGE = 1u << 2,
	AUTH_ADMIN_VERIFY = 1u << 3,
	AUTH_ADMIN_USERS = 1u << 4,
	AUTH_ADMIN_RELOAD = 1u << 5,
	AUTH_ADMIN_CLIENTS = 1u << 6, /* list connections, close one */
};

/* Every permission bit a kind has (0 for a kind that does not exist). */
uint32_t auth_kind_perms(unsigned kind);

/* The most roles one subject holds (a user's roles). */
#define AUTH_ROLES_MAX 16u

/* The longest name prefix a grant may hold. */
#define AUTH_PREFIX_MAX 255u

struct auth_grant {
	uint8_t kind;   /* enum auth_kind */
	bool deny;      /* a deny grant; else it allows */
	uint32_t perms; /* a subset of auth_kind_perms(kind) */
	/* Names starting with these prefix_len bytes; "" covers every name.
	 * Not necessarily NUL-terminated. */
	const char *prefix;
	size_t prefix_len;
};

struct auth_role {
	const char *name;
	const struct auth_grant *grants;
	size_t ngrants;
};

/* What a subject holds: its roles. Nothing held allows nothing. */
struct auth_subject {
	const struct auth_role *const *roles;
	size_t nroles;
};

/* True when s may use perm (one bit) of kind on the resource named
 * name[0..len): default deny, deny wins. */
bool auth_allowed(const struct auth_subject *s, unsigned kind, uint32_t perm, const char *name,
                  size_t len);

/* True when s may use perm of kind on every name that starts with
 * prefix[0..len) — present and future — which is what reading $all
 * filtered by a stream prefix needs: an allow grant whose prefix is a
 * prefix of it, and no deny grant that covers any name under it. */
bool auth_allowed_prefix(const struct auth_subject *s, unsigned kind, uint32_t perm,
                         const char *prefix, size_t len);

/* True when some deny grant of s for perm of kind covers a name that starts
 * with prefix[0..len): a read of $all filtered by that prefix would show
 * something denied. */
bool auth_denied_under(const struct auth_subject *s, unsigned kind, uint32_t perm,
                       const char *prefix, size_t len);

/* The built-in roles: admin (everything), ops (server operations, groups
 * and indexes to manage; no event data over the wire), writer (read and
 * append streams and their metadata, $all, consume groups, work on
 * projections, query entities; not delete), reader (read streams, $all,
 * consume groups, the ledger and entities). NULL for another name. */
const struct auth_role *auth_builtin_role(const char *name);

/* The built-in role names, NULL-terminated, in the order above. */
extern const char *const auth_builtin_role_names[];

/* Parses a grant from its text form into *out, pointing into text (which
 * must outlive it):
 *
 *     [deny ]KIND:PERM[,PERM...]:PREFIX
 *
 * KIND is streams, all, groups, projections, entities, indexes or admin;
 * PERM one of the kind's permissions (read, append, delete, metadata;
 * read; create, join, ack, manage; lease, stage, commit, ledger; query;
 * read, manage; stats, backup, scavenge, verify, users, reload, clients) or * for
 * all of them; PREFIX the rest of the text, possibly empty (every name).
 * 0, or WB_E_INVAL with the reason in why. */
int auth_grant_parse(const char *text, size_t len, struct auth_grant *out, char *why,
                     size_t whylen);

/* Writes g's text form (the grammar above) into buf, NUL-terminated.
 * Returns the length it needs without the NUL, like snprintf. */
size_t auth_grant_format(const struct auth_grant *g, char *buf, size_t cap);

/* The name of kind, and of one permission bit of it ("?" when unknown). */
const char *auth_kind_name(unsigned kind);
const char *auth_perm_name(unsigned kind, uint32_t perm);

#endif
