/* Access control decisions (acl.h). */
#include "acl.h"

#include <stdio.h>
#include <string.h>

#include "wb_error.h"

struct perm_name {
	uint32_t bit;
	const char *name;
};

struct kind_desc {
	const char *name;
	const struct perm_name *perms;
	size_t nperms;
};

static const struct perm_name stream_perms[] = {
        {AUTH_STREAM_READ, "read"},
        {AUTH_STREAM_APPEND, "append"},
        {AUTH_STREAM_DELETE, "delete"},
        {AUTH_STREAM_METADATA, "metadata"},
};
static const struct perm_name all_perms[] = {{AUTH_ALL_READ, "read"}};
static const struct perm_name group_perms[] = {
        {AUTH_GROUP_CREATE, "create"},
        {AUTH_GROUP_JOIN, "join"},
        {AUTH_GROUP_ACK, "ack"},
        {AUTH_GROUP_MANAGE, "manage"},
};
static const struct perm_name proj_perms[] = {
        {AUTH_PROJ_LEASE, "lease"},
        {AUTH_PROJ_STAGE, "stage"},
        {AUTH_PROJ_COMMIT, "commit"},
        {AUTH_PROJ_LEDGER, "ledger"},
};
static const struct perm_name entity_perms[] = {{AUTH_ENTITY_QUERY, "query"}};
static const struct perm_name index_perms[] = {
        {AUTH_INDEX_READ, "read"},
        {AUTH_INDEX_MANAGE, "manage"},
};
static const struct perm_name admin_perms[] = {
        {AUTH_ADMIN_STATS, "stats"},       {AUTH_ADMIN_BACKUP, "backup"},
        {AUTH_ADMIN_SCAVENGE, "scavenge"}, {AUTH_ADMIN_VERIFY, "verify"},
        {AUTH_ADMIN_USERS, "users"},       {AUTH_ADMIN_RELOAD, "reload"},
        {AUTH_ADMIN_CLIENTS, "clients"},
};

#define KIND(n, p)                                                                                 \
	{                                                                                          \
		n, p, sizeof(p) / sizeof(p[0])                                                     \
	}
static const struct kind_desc kinds[AUTH_KIND_MAX + 1] = {
        [AUTH_STREAMS] = KIND("streams", stream_perms),
        [AUTH_ALL] = KIND("all", all_perms),
        [AUTH_GROUPS] = KIND("groups", group_perms),
        [AUTH_PROJECTIONS] = KIND("projections", proj_perms),
        [AUTH_ENTITIES] = KIND("entities", entity_perms),
        [AUTH_INDEXES] = KIND("indexes", index_perms),
        [AUTH_ADMIN] = KIND("admin", admin_perms),
};

uint32_t auth_kind_perms(unsigned kind)
{
	if (kind == 0 || kind > AUTH_KIND_MAX)
		return 0;
	uint32_t all = 0;
	for (size_t i = 0; i < kinds[kind].nperms; i++)
		all |= kinds[kind].perms[i].bit;
	return all;
}

const char *auth_kind_name(unsigned kind)
{
	return kind == 0 || kind > AUTH_KIND_MAX ? "?" : kinds[kind].name;
}

const char *auth_perm_name(unsigned kind, uint32_t perm)
{
	if (kind == 0 || kind > AUTH_KIND_MAX)
		return "?";
	for (size_t i = 0; i < kinds[kind].nperms; i++)
		if (kinds[kind].perms[i].bit == perm)
			return kinds[kind].perms[i].name;
	return "?";
}

/* ------------------------------------------------------------ decisions */

/* True when p[0..plen) is a prefix of s[0..slen). */
static bool starts_with(const char *s, size_t slen, const char *p, size_t plen)
{
	return plen <= slen && (plen == 0 || memcmp(s, p, plen) == 0);
}

static bool applies(const struct auth_grant *g, unsigned kind, uint32_t perm)
{
	return g->kind == kind && (g->perms & perm) != 0;
}

bool auth_allowed(const struct auth_subject *s, unsigned kind, uint32_t perm, const char *name,
                  size_t len)
{
	bool allow = false;
	for (size_t r = 0; r < s->nroles; r++) {
		const struct auth_role *role = s->roles[r];
		for (size_t i = 0; i < role->ngrants; i++) {
			const struct auth_grant *g = &role->grants[i];
			if (!applies(g, kind, perm) ||
			    !starts_with(name, len, g->prefix, g->prefix_len))
				continue;
			if (g->deny)
				return false;
			allow = true;
		}
	}
	return allow;
}

bool auth_allowed_prefix(const struct auth_subject *s, unsigned kind, uint32_t perm,
                         const char *prefix, size_t len)
{
	bool allow = false;
	for (size_t r = 0; r < s->nroles; r++) {
		const struct auth_role *role = s->roles[r];
		for (size_t i = 0; i < role->ngrants; i++) {
			const struct auth_grant *g = &role->grants[i];
			if (!applies(g, kind, perm))
				continue;
			bool covers = starts_with(prefix, len, g->prefix, g->prefix_len);
			/* A deny under the prefix denies some name the prefix
			 * reaches: the prefix as a whole is denied. */
			if (g->deny &&
			    (covers || starts_with(g->prefix, g->prefix_len, prefix, len)))
				return false;
			if (!g->deny && covers)
				allow = true;
		}
	}
	return allow;
}

bool auth_denied_under(const struct auth_subject *s, unsigned kind, uint32_t perm,
                       const char *prefix, size_t len)
{
	for (size_t r = 0; r < s->nroles; r++) {
		const struct auth_role *role = s->roles[r];
		for (size_t i = 0; i < role->ngrants; i++) {
			const struct auth_grant *g = &role->grants[i];
			if (g->deny && applies(g, kind, perm) &&
			    (starts_with(prefix, len, g->prefix, g->prefix_len) ||
			     starts_with(g->prefix, g->prefix_len, prefix, len)))
				return true;
		}
	}
	return false;
}

/* ------------------------------------------------------------ built-in roles */

#define ALLOW(k, p)                                                                                \
	{                                                                                          \
		.kind = (k), .deny = false, .perms = (p), .prefix = "", .prefix_len = 0            \
	}

static const struct auth_grant admin_grants[] = {
        ALLOW(AUTH_STREAMS,
              AUTH_STREAM_READ | AUTH_STREAM_APPEND | AUTH_STREAM_DELETE | AUTH_STREAM_METADATA),
        ALLOW(AUTH_ALL, AUTH_ALL_READ),
        ALLOW(AUTH_GROUPS,
              AUTH_GROUP_CREATE | AUTH_GROUP_JOIN | AUTH_GROUP_ACK | AUTH_GROUP_MANAGE),
        ALLOW(AUTH_PROJECTIONS,
              AUTH_PROJ_LEASE | AUTH_PROJ_STAGE | AUTH_PROJ_COMMIT | AUTH_PROJ_LEDGER),
        ALLOW(AUTH_ENTITIES, AUTH_ENTITY_QUERY),
        ALLOW(AUTH_INDEXES, AUTH_INDEX_READ | AUTH_INDEX_MANAGE),
        ALLOW(AUTH_ADMIN, AUTH_ADMIN_STATS | AUTH_ADMIN_BACKUP | AUTH_ADMIN_SCAVENGE |
                                  AUTH_ADMIN_VERIFY | AUTH_ADMIN_USERS | AUTH_ADMIN_RELOAD |
                                  AUTH_ADMIN_CLIENTS),
};

/* Operations without the event data: a backup lands only in the server's
 * own backup directory, never on the wire. */
static const struct auth_grant ops_grants[] = {
        ALLOW(AUTH_ADMIN, AUTH_ADMIN_STATS | AUTH_ADMIN_BACKUP | AUTH_ADMIN_SCAVENGE |
                                  AUTH_ADMIN_VERIFY | AUTH_ADMIN_RELOAD | AUTH_ADMIN_CLIENTS),
        ALLOW(AUTH_GROUPS, AUTH_GROUP_MANAGE),
        ALLOW(AUTH_INDEXES, AUTH_INDEX_READ | AUTH_INDEX_MANAGE),
};

static const struct auth_grant writer_grants[] = {
        ALLOW(AUTH_STREAMS, AUTH_STREAM_READ | AUTH_STREAM_APPEND | AUTH_STREAM_METADATA),
        ALLOW(AUTH_ALL, AUTH_ALL_READ),
        ALLOW(AUTH_GROUPS, AUTH_GROUP_CREATE | AUTH_GROUP_JOIN | AUTH_GROUP_ACK),
        ALLOW(AUTH_PROJECTIONS,
              AUTH_PROJ_LEASE | AUTH_PROJ_STAGE | AUTH_PROJ_COMMIT | AUTH_PROJ_LEDGER),
        ALLOW(AUTH_ENTITIES, AUTH_ENTITY_QUERY),
        ALLOW(AUTH_INDEXES, AUTH_INDEX_READ),
};

static const struct auth_grant reader_grants[] = {
        ALLOW(AUTH_STREAMS, AUTH_STREAM_READ),
        ALLOW(AUTH_ALL, AUTH_ALL_READ),
        ALLOW(AUTH_GROUPS, AUTH_GROUP_JOIN | AUTH_GROUP_ACK),
        ALLOW(AUTH_PROJECTIONS, AUTH_PROJ_LEDGER),
        ALLOW(AUTH_ENTITIES, AUTH_ENTITY_QUERY),
        ALLOW(AUTH_INDEXES, AUTH_INDEX_READ),
};

#define ROLE(n, g)                                                                                 \
	{                                                                                          \
		n, g, sizeof(g) / sizeof(g[0])                                                     \
	}
static const struct auth_role builtin[] = {
        ROLE("admin", admin_grants),
        ROLE("ops", ops_grants),
        ROLE("writer", writer_grants),
        ROLE("reader", reader_grants),
};

const char *const auth_builtin_role_names[] = {"admin", "ops", "writer", "reader", NULL};

const struct auth_role *auth_builtin_role(const char *name)
{
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (strcmp(builtin[i].name, name) == 0)
			return &builtin[i];
	return NULL;
}

/* ------------------------------------------------------------ text form */

int auth_grant_parse(const char *text, size_t len, struct auth_grant *out, char *why, size_t whylen)
{
	struct auth_grant g = {0};
	const char *p = text, *end = text + len;
	if (len >= 5 && memcmp(p, "deny ", 5) == 0) {
		g.deny = true;
		p += 5;
	}
	const char *colon = memchr(p, ':', (size_t)(end - p));
	if (colon == NULL) {
		snprintf(why, whylen, "a grant is [deny ]KIND:PERM[,PERM...]:PREFIX");
		return WB_E_INVAL;
	}
	for (unsigned k = 1; k <= AUTH_KIND_MAX; k++) {
		size_t n = strlen(kinds[k].name);
		if ((size_t)(colon - p) == n && memcmp(p, kinds[k].name, n) == 0)
			g.kind = (uint8_t)k;
	}
	if (g.kind == 0) {
		snprintf(why, whylen,
		         "unknown kind %.*s: one of streams, all, groups, projections, entities, "
		         "indexes, admin",
		         (int)(colon - p > 32 ? 32 : colon - p), p);
		return WB_E_INVAL;
	}
	p = colon + 1;
	const char *pend = memchr(p, ':', (size_t)(end - p));
	if (pend == NULL) {
		snprintf(why, whylen,
		         "a grant is [deny ]KIND:PERM[,PERM...]:PREFIX (no prefix part)");
		return WB_E_INVAL;
	}
	while (p < pend) {
		const char *comma = memchr(p, ',', (size_t)(pend - p));
		const char *e = comma != NULL ? comma : pend;
		size_t n = (size_t)(e - p);
		uint32_t bit = 0;
		if (n == 1 && *p == '*')
			bit = auth_kind_perms(g.kind);
		for (size_t i = 0; i < kinds[g.kind].nperms && bit == 0; i++) {
			const char *pn = kinds[g.kind].perms[i].name;
			if (strlen(pn) == n && memcmp(pn, p, n) == 0)
				bit = kinds[g.kind].perms[i].bit;
		}
		if (bit == 0) {
			snprintf(why, whylen, "%s have no permission %.*s", kinds[g.kind].name,
			         (int)(n > 32 ? 32 : n), p);
			return WB_E_INVAL;
		}
		g.perms |= bit;
		p = comma != NULL ? comma + 1 : pend;
		if (comma != NULL && p == pend) {
			snprintf(why, whylen, "an empty permission after a comma");
			return WB_E_INVAL;
		}
	}
	if (g.perms == 0) {
		snprintf(why, whylen, "a grant needs at least one permission");
		return WB_E_INVAL;
	}
	g.prefix = pend + 1;
	g.prefix_len = (size_t)(end - g.prefix);
	if (g.prefix_len > AUTH_PREFIX_MAX) {
		snprintf(why, whylen, "the prefix is longer than %u bytes", AUTH_PREFIX_MAX);
		return WB_E_INVAL;
	}
	if ((g.kind == AUTH_ALL || g.kind == AUTH_ADMIN) && g.prefix_len != 0) {
		snprintf(why, whylen, "%s grants name no resource: leave the prefix empty",
		         kinds[g.kind].name);
		return WB_E_INVAL;
	}
	*out = g;
	return 0;
}

size_t auth_grant_format(const struct auth_grant *g, char *buf, size_t cap)
{
	size_t n = 0;
#define PUT(...)                                                                                   \
	do {                                                                                       \
		int k_ = snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, __VA_ARGS__);  \
		n += k_ > 0 ? (size_t)k_ : 0;                                                      \
	} while (0)
	PUT("%s%s:", g->deny ? "deny " : "", auth_kind_name(g->kind));
	if (g->kind >= 1 && g->kind <= AUTH_KIND_MAX && g->perms == auth_kind_perms(g->kind)) {
		PUT("*");
	} else {
		bool first = true;
		for (unsigned b = 0; b < 32; b++) {
			uint32_t bit = 1u << b;
			if ((g->perms & bit) == 0)
				continue;
			PUT("%s%s", first ? "" : ",", auth_perm_name(g->kind, bit));
			first = false;
		}
	}
	PUT(":%.*s", (int)g->prefix_len, g->prefix);
#undef PUT
	return n;
}
