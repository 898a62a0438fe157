/* Access control decisions (auth/acl.h): default deny, deny wins, prefixes,
 * the built-in roles and the text form of grants. */
#include <criterion/criterion.h>
#include <string.h>

#include "auth/acl.h"
#include "wb_error.h"

static struct auth_grant grant(const char *text)
{
	struct auth_grant g;
	char why[200];
	int rc = auth_grant_parse(text, strlen(text), &g, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s: %s", text, why);
	return g;
}

static bool can(const struct auth_role *role, unsigned kind, uint32_t perm, const char *name)
{
	const struct auth_role *roles[] = {role};
	struct auth_subject s = {roles, 1};
	return auth_allowed(&s, kind, perm, name, strlen(name));
}

Test(acl, nothing_held_allows_nothing)
{
	struct auth_subject none = {NULL, 0};
	cr_assert_not(auth_allowed(&none, AUTH_STREAMS, AUTH_STREAM_READ, "a", 1));
	cr_assert_not(auth_allowed_prefix(&none, AUTH_STREAMS, AUTH_STREAM_READ, "", 0));
	struct auth_role empty = {"empty", NULL, 0};
	cr_assert_not(can(&empty, AUTH_ADMIN, AUTH_ADMIN_STATS, ""));
}

Test(acl, a_grant_covers_its_prefix_its_kind_and_its_permissions_only)
{
	struct auth_grant g[] = {grant("streams:read,append:orders-")};
	struct auth_role r = {"r", g, 1};
	cr_assert(can(&r, AUTH_STREAMS, AUTH_STREAM_READ, "orders-1"));
	cr_assert(can(&r, AUTH_STREAMS, AUTH_STREAM_APPEND, "orders-"));
	/* The control for each refusal below is the allowed call above with
	 * one thing changed. */
	cr_assert_not(can(&r, AUTH_STREAMS, AUTH_STREAM_READ, "order"));
	cr_assert_not(can(&r, AUTH_STREAMS, AUTH_STREAM_READ, "invoices-1"));
	cr_assert_not(can(&r, AUTH_STREAMS, AUTH_STREAM_DELETE, "orders-1"));
	cr_assert_not(can(&r, AUTH_GROUPS, AUTH_GROUP_CREATE, "orders-1"));
}

Test(acl, deny_wins_within_a_role_and_across_roles)
{
	struct auth_grant g[] = {grant("streams:*:"), grant("deny streams:delete:orders-")};
	struct auth_role r = {"r", g, 2};
	cr_assert(can(&r, AUTH_STREAMS, AUTH_STREAM_DELETE, "invoices-1"));
	cr_assert_not(can(&r, AUTH_STREAMS, AUTH_STREAM_DELETE, "orders-1"));
	cr_assert(can(&r, AUTH_STREAMS, AUTH_STREAM_READ, "orders-1"));

	/* The deny in a second role beats the admin role's allow. */
	struct auth_grant d[] = {grant("deny streams:read:secret-")};
	struct auth_role deny = {"deny", d, 1};
	const struct auth_role *roles[] = {auth_builtin_role("admin"), &deny};
	struct auth_subject s = {roles, 2};
	cr_assert_not(auth_allowed(&s, AUTH_STREAMS, AUTH_STREAM_READ, "secret-1", 8));
	cr_assert(auth_allowed(&s, AUTH_STREAMS, AUTH_STREAM_READ, "public-1", 8));
	cr_assert(auth_allowed(&s, AUTH_STREAMS, AUTH_STREAM_APPEND, "secret-1", 8));
}

Test(acl, a_prefix_is_allowed_only_when_every_name_under_it_is)
{
	struct auth_grant g[] = {grant("streams:read:orders-"),
	                         grant("deny streams:read:orders-secret-")};
	struct auth_role r = {"r", g, 2};
	const struct auth_role *roles[] = {&r};
	struct auth_subject s = {roles, 1};
#define PFX(p) auth_allowed_prefix(&s, AUTH_STREAMS, AUTH_STREAM_READ, p, strlen(p))
	cr_assert(PFX("orders-eu-"));
	cr_assert(PFX("orders-e"));
	/* Wider than the grant: names outside it are reachable. */
	cr_assert_not(PFX("orders"));
	cr_assert_not(PFX(""));
	/* Reaches the denied names. */
	cr_assert_not(PFX("orders-"));
	cr_assert_not(PFX("orders-s"));
	cr_assert_not(PFX("orders-secret-x"));
#undef PFX
}

Test(acl, the_builtin_roles)
{
	const struct auth_role *admin = auth_builtin_role("admin");
	const struct auth_role *ops = auth_builtin_role("ops");
	const struct auth_role *writer = auth_builtin_role("writer");
	const struct auth_role *reader = auth_builtin_role("reader");
	cr_assert(admin && ops && writer && reader);
	cr_assert_null(auth_builtin_role("root"));
	cr_assert_null(auth_builtin_role(""));
	for (size_t i = 0; auth_builtin_role_names[i] != NULL; i++)
		cr_assert_not_null(auth_builtin_role(auth_builtin_role_names[i]));

	/* admin may do every permission of every kind. */
	for (unsigned k = 1; k <= AUTH_KIND_MAX; k++) {
		uint32_t all = auth_kind_perms(k);
		cr_assert_neq(all, 0u, "kind %u", k);
		for (unsigned b = 0; b < 32; b++)
			if (all & (1u << b))
				cr_assert(can(admin, k, 1u << b, "x"), "admin %s:%s",
				          auth_kind_name(k), auth_perm_name(k, 1u << b));
	}
	cr_assert_eq(auth_kind_perms(0), 0u);
	cr_assert_eq(auth_kind_perms(AUTH_KIND_MAX + 1), 0u);

	cr_assert(can(reader, AUTH_STREAMS, AUTH_STREAM_READ, "s"));
	cr_assert_not(can(reader, AUTH_STREAMS, AUTH_STREAM_APPEND, "s"));
	cr_assert_not(can(reader, AUTH_PROJECTIONS, AUTH_PROJ_COMMIT, "p"));
	cr_assert(can(writer, AUTH_STREAMS, AUTH_STREAM_APPEND, "s"));
	cr_assert(can(writer, AUTH_PROJECTIONS, AUTH_PROJ_COMMIT, "p"));
	cr_assert_not(can(writer, AUTH_STREAMS, AUTH_STREAM_DELETE, "s"));
	cr_assert_not(can(writer, AUTH_ADMIN, AUTH_ADMIN_BACKUP, ""));
	cr_assert(can(ops, AUTH_ADMIN, AUTH_ADMIN_SCAVENGE, ""));
	cr_assert_not(can(ops, AUTH_ADMIN, AUTH_ADMIN_USERS, ""));
	cr_assert_not(can(ops, AUTH_STREAMS, AUTH_STREAM_READ, "s"));
	const struct auth_role *others[] = {ops, writer, reader};
	for (size_t i = 0; i < 3; i++)
		cr_assert_not(can(others[i], AUTH_ADMIN, AUTH_ADMIN_USERS, ""));
}

Test(acl, grants_parse_and_format_back)
{
	const char *canonical[] = {
	        "streams:read:",
	        "streams:read,append:orders-",
	        "deny streams:delete:orders-",
	        "streams:*:x",
	        "all:*:",
	        "groups:join,ack:billing-",
	        "projections:lease,stage,commit:inv",
	        "projections:ledger:",
	        "entities:*:order",
	        "indexes:manage:order",
	        "admin:stats,backup:",
	        "deny admin:users:",
	        "streams:read:with:colons and spaces",
	};
	for (size_t i = 0; i < sizeof(canonical) / sizeof(canonical[0]); i++) {
		struct auth_grant g = grant(canonical[i]);
		char buf[300];
		size_t n = auth_grant_format(&g, buf, sizeof(buf));
		cr_assert_eq(n, strlen(buf));
		cr_assert_str_eq(buf, canonical[i]);
	}
	struct auth_grant g = grant("streams:read,append,delete,metadata:");
	char buf[64];
	auth_grant_format(&g, buf, sizeof(buf));
	cr_assert_str_eq(buf, "streams:*:");
	/* A short buffer: the length it needs, a terminated prefix. */
	char small[8];
	size_t need = auth_grant_format(&g, small, sizeof(small));
	cr_assert_eq(need, strlen("streams:*:"));
	cr_assert_eq(strlen(small), sizeof(small) - 1);
}

Test(acl, bad_grants_are_refused_with_a_reason)
{
	const char *bad[] = {
	        "",
	        "streams",
	        "streams:read",
	        "stream:read:",
	        "streams:write:",
	        "streams::",
	        "streams:read,:",
	        "streams:,read:",
	        "deny streams",
	        "deny  streams:read:",
	        "all:read:x",
	        "admin:stats:x",
	        "admin:read:",
	        "Streams:read:",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct auth_grant g;
		char why[200] = "";
		cr_assert_eq(auth_grant_parse(bad[i], strlen(bad[i]), &g, why, sizeof(why)),
		             WB_E_INVAL, "%s was accepted", bad[i]);
		cr_assert_neq(why[0], '\0', "%s: no reason", bad[i]);
	}
	char longp[400] = "streams:read:";
	memset(longp + 13, 'a', AUTH_PREFIX_MAX + 1);
	struct auth_grant g;
	char why[200];
	cr_assert_eq(auth_grant_parse(longp, strlen(longp), &g, why, sizeof(why)), WB_E_INVAL);
	longp[13 + AUTH_PREFIX_MAX] = '\0';
	cr_assert_eq(auth_grant_parse(longp, strlen(longp), &g, why, sizeof(why)), 0);
}
