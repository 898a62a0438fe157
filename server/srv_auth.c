/* Users, roles and tokens, and authentication on Hello.
 *
 * Happy path: at start-up the module loads every user, role and token from
 * the store into memory (the store is the truth: backup, restore and later
 * replication carry them). Hello with a token is decided at once (its hash
 * is compared); Hello with SCRAM-SHA-256 starts an exchange kept per
 * connection, which Authenticate ends. An authenticated connection gets a
 * principal of its own: its subject (auth/acl.h) names the roles of its
 * user or token, and is re-resolved after every change, so a change takes
 * effect on open connections at once. Changes (PutUser, PutRole,
 * CreateToken, ...) are log records (SRV_REC_AUTH): the writer puts the
 * stored value, and once durable the loop updates memory and answers.
 *
 * Failure modes: every failed authentication is answered UNAUTHENTICATED
 * with one text, whatever the reason (unknown user, wrong password, bad or
 * expired or revoked token, a broken exchange); the reason goes to the log
 * and the figures only, never a password, proof, token or key. An address
 * that failed auth-failures-per-minute times in its current minute is
 * refused unexamined until the minute ends. Malformed admin requests are
 * BAD_REQUEST naming the field; a change that cannot be made durable is
 * answered with the writer's error and memory stays as it was.
 *
 * On the first start of a store, the module keeps a random secret for the
 * mock credentials of unknown users, and makes a bootstrap token for the
 * role admin, written once to DATA_DIR/bootstrap-admin.token (0600): the
 * first administrator of a server reached only over the network. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "auth/acl.h"
#include "auth/rand.h"
#include "auth/scram.h"
#include "auth/b64.h"
#include "auth/token.h"
#include "log.h"
#include "record.h"
#include "server.h"
#include "wb_error.h"

#define AUTH_REC_VERSION 1u

/* Bounds of what admins may define. */
#define MAX_USERS 10000u
#define MAX_ROLES 1000u
#define MAX_TOKENS 10000u
#define MAX_GRANTS 64u
#define ROLE_NAME_MAX 64u
#define DESC_MAX 255u
#define DEFAULT_TOKEN_TTL_MS (90ull * 24 * 3600 * 1000)
#define MAX_TOKEN_TTL_MS (10ull * 365 * 24 * 3600 * 1000)
/* Addresses whose failures are counted at once (the oldest is forgotten). */
#define THROTTLE_SLOTS 256u
#define THROTTLE_WINDOW_MS 60000u

/* The one answer to every failed authentication. */
#define AUTH_FAILED "authentication failed"

/* Record operations (the first byte of a SRV_REC_AUTH body; on disk). */
enum {
	OP_PUT_USER = 1,
	OP_DEL_USER = 2,
	OP_PUT_ROLE = 3,
	OP_DEL_ROLE = 4,
	OP_PUT_TOKEN = 5,
	OP_REVOKE_TOKEN = 6,
	OP_SECRET = 7,
};

/* Keys of STORAGE_DB_AUTH: a kind byte and the name. */
enum { KEY_USER = 'u', KEY_ROLE = 'r', KEY_TOKEN = 't', KEY_SECRET = 's' };

struct role_ent {
	char name[ROLE_NAME_MAX + 1];
	struct auth_role role;     /* points at grants */
	struct auth_grant *grants; /* prefixes point into texts */
	char **texts;
	size_t n;
};

struct user_ent {
	char name[AUTH_SCRAM_USER_MAX + 1];
	bool has_cred;
	struct auth_scram_cred cred;
	char roles[AUTH_ROLES_MAX][ROLE_NAME_MAX + 1];
	size_t nroles;
};

struct token_ent {
	struct auth_token_record rec;
	char id[AUTH_TOKEN_ID_CHARS + 1];
	char role[ROLE_NAME_MAX + 1];
	char desc[DESC_MAX + 1];
};

/* Who an authenticated connection is: its own, freed when it closes. */
struct principal {
	struct auth_subject subject;
	const struct auth_role *roles[AUTH_ROLES_MAX];
	bool is_token;
	uint8_t token_id[AUTH_TOKEN_ID_LEN]; /* is_token */
	char name[AUTH_SCRAM_USER_MAX + 1];  /* the user, or the token's id */
	char shown[AUTH_SCRAM_USER_MAX + 8]; /* the user, or "token:ID" */
	struct conn *conn;
	struct principal *prev, *next;
};

/* A connection's authentication state (its conn slot). */
struct conn_auth {
	struct auth_scram_server *scram; /* an exchange Hello began */
	struct principal *who;
};

struct throttle {
	char addr[64];
	uint64_t window_ms;
	uint64_t failures;
};

struct auths {
	struct srv *srv;
	unsigned slot;
	struct user_ent *users;
	size_t nusers;
	struct role_ent *roles;
	size_t nroles;
	struct token_ent *tokens;
	size_t ntokens;
	uint32_t *token_slots; /* tokens by id (find_token) */
	size_t token_cap;
	uv_timer_t expiry; /* takes expired tokens' roles from open connections */
	bool expiry_open;
	uint8_t secret[AUTH_SCRAM_SECRET_LEN];
	struct principal *principals;
	struct throttle throttle[THROTTLE_SLOTS];
	uint64_t failures, throttled;
};

static uint64_t wall_ms(void)
{
	return srv_wall_us() / 1000u;
}

/* Makes room for one more element at the end of the array arr holding n:
 * false when out of memory (arr is then unchanged). */
#define GROW(arr, n) grow_array((void *)&(arr), (n), sizeof(*(arr)))

static bool grow_array(void *arrp, size_t n, size_t size)
{
	void *old;
	memcpy(&old, arrp, sizeof(old));
	void *p = realloc(old, (n + 1) * size);
	if (p == NULL)
		return false;
	memcpy(arrp, &p, sizeof(p));
	return true;
}

/* ------------------------------------------------------------ stored values */

/* A user's stored value: credential text, then its role names. */
static int user_value(const struct user_ent *u, uint8_t **out, size_t *len)
{
	struct rec_builder b = {0};
	char cred[AUTH_SCRAM_CRED_STR_MAX + 1] = "";
	size_t cl = 0;
	if (u->has_cred && auth_scram_cred_format(&u->cred, cred, sizeof(cred), &cl) != 0)
		return WB_E_INVAL;
	rec_bytes(&b, cred, cl);
	rec_u32(&b, (uint32_t)u->nroles);
	for (size_t i = 0; i < u->nroles; i++)
		rec_bytes(&b, u->roles[i], strlen(u->roles[i]));
	return rec_out(&b, out, len);
}

/* Copies field[0..n) into a NUL-terminated buffer of cap; false when it
 * does not fit or holds a NUL. */
static bool copy_name(char *dst, size_t cap, const uint8_t *field, size_t n)
{
	if (field == NULL || n >= cap || memchr(field, '\0', n) != NULL)
		return false;
	memcpy(dst, field, n);
	dst[n] = '\0';
	return true;
}

static int user_parse(struct user_ent *u, const char *name, const uint8_t *v, size_t len)
{
	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "%s", name);
	struct rec_reader r = rec_reader(v, len);
	size_t cl;
	const uint8_t *cred = rec_get_bytes(&r, &cl);
	if (cl > 0) {
		if (auth_scram_cred_parse(&u->cred, (const char *)cred, cl) != 0)
			return WB_E_CORRUPT;
		u->has_cred = true;
	}
	uint32_t n = rec_get_u32(&r);
	if (n > AUTH_ROLES_MAX)
		return WB_E_CORRUPT;
	for (uint32_t i = 0; i < n; i++) {
		size_t rl;
		const uint8_t *rn = rec_get_bytes(&r, &rl);
		if (!copy_name(u->roles[i], sizeof(u->roles[i]), rn, rl))
			return WB_E_CORRUPT;
	}
	u->nroles = n;
	return rec_ok(&r) ? 0 : WB_E_CORRUPT;
}

static void role_free(struct role_ent *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->texts[i]);
	free(r->texts);
	free(r->grants);
	memset(r, 0, sizeof(*r));
}

/* Parses grant texts into r (which it owns after 0); why says what is
 * wrong with which. */
static int role_build(struct role_ent *r, const char *name, char *const *texts, const size_t *lens,
                      size_t n, char *why, size_t whylen)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->grants = calloc(n > 0 ? n : 1, sizeof(*r->grants));
	r->texts = calloc(n > 0 ? n : 1, sizeof(*r->texts));
	if (r->grants == NULL || r->texts == NULL) {
		free(r->grants);
		free(r->texts);
		snprintf(why, whylen, "out of memory");
		return WB_E_NOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		r->texts[i] = strndup(texts[i], lens[i]);
		if (r->texts[i] == NULL) {
			r->n = i;
			role_free(r);
			snprintf(why, whylen, "out of memory");
			return WB_E_NOMEM;
		}
		char g[200];
		int rc = auth_grant_parse(r->texts[i], lens[i], &r->grants[i], g, sizeof(g));
		if (rc != 0) {
			r->n = i + 1;
			role_free(r);
			snprintf(why, whylen, "grant %zu: %s", i + 1, g);
			return WB_E_INVAL;
		}
	}
	r->n = n;
	r->role.name = r->name;
	r->role.grants = r->grants;
	r->role.ngrants = n;
	return 0;
}

static int role_value(char *const *texts, const size_t *lens, size_t n, uint8_t **out, size_t *len)
{
	struct rec_builder b = {0};
	rec_u32(&b, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		rec_bytes(&b, texts[i], lens[i]);
	return rec_out(&b, out, len);
}

static int role_parse(struct role_ent *r, const char *name, const uint8_t *v, size_t len)
{
	struct rec_reader rd = rec_reader(v, len);
	uint32_t n = rec_get_u32(&rd);
	if (n > MAX_GRANTS)
		return WB_E_CORRUPT;
	char *texts[MAX_GRANTS];
	size_t lens[MAX_GRANTS];
	for (uint32_t i = 0; i < n; i++) {
		texts[i] = (char *)rec_get_bytes(&rd, &lens[i]);
		if (texts[i] == NULL)
			return WB_E_CORRUPT;
	}
	if (!rec_ok(&rd))
		return WB_E_CORRUPT;
	char why[200];
	return role_build(r, name, texts, lens, n, why, sizeof(why)) == 0 ? 0 : WB_E_CORRUPT;
}

static int token_value(const struct token_ent *t, uint8_t **out, size_t *len)
{
	struct rec_builder b = {0};
	rec_raw(&b, t->rec.hash, sizeof(t->rec.hash));
	rec_bytes(&b, t->role, strlen(t->role));
	rec_bytes(&b, t->desc, strlen(t->desc));
	rec_u64(&b, t->rec.created_ms);
	rec_u64(&b, t->rec.expires_ms);
	rec_u8(&b, t->rec.revoked ? 1 : 0);
	return rec_out(&b, out, len);
}

static int token_parse(struct token_ent *t, const uint8_t id[AUTH_TOKEN_ID_LEN], const uint8_t *v,
                       size_t len)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->rec.id, id, AUTH_TOKEN_ID_LEN);
	auth_token_id_format(t->id, id);
	struct rec_reader r = rec_reader(v, len);
	const uint8_t *h = rec_take(&r, AUTH_TOKEN_HASH_LEN);
	if (h != NULL)
		memcpy(t->rec.hash, h, AUTH_TOKEN_HASH_LEN);
	size_t rl, dl;
	const uint8_t *role = rec_get_bytes(&r, &rl);
	const uint8_t *desc = rec_get_bytes(&r, &dl);
	t->rec.created_ms = rec_get_u64(&r);
	t->rec.expires_ms = rec_get_u64(&r);
	t->rec.revoked = rec_get_u8(&r) != 0;
	if (!rec_ok(&r) || !copy_name(t->role, sizeof(t->role), role, rl) ||
	    !copy_name(t->desc, sizeof(t->desc), desc, dl))
		return WB_E_CORRUPT;
	return 0;
}

/* ------------------------------------------------------------ records */

/* The key of kind and name[0..n) in buf (n + 1 bytes). */
static struct storage_val key_of(uint8_t *buf, char kind, const void *name, size_t n)
{
	buf[0] = (uint8_t)kind;
	memcpy(buf + 1, name, n);
	return (struct storage_val){buf, n + 1};
}

/* Applies a SRV_REC_AUTH body: [op u8][name bytes][value bytes] for puts,
 * [op][name] for deletes, [op][id] for a revoke. The writer runs it live
 * and at replay alike. */
static int auth_rec_apply(struct storage_txn *txn, const uint8_t *rec, size_t len)
{
	struct rec_reader r = rec_reader(rec, len);
	uint8_t op = rec_get_u8(&r);
	size_t nl, vl = 0;
	const uint8_t *name = rec_get_bytes(&r, &nl);
	const uint8_t *val = NULL;
	if (op == OP_PUT_USER || op == OP_PUT_ROLE || op == OP_PUT_TOKEN || op == OP_SECRET)
		val = rec_get_bytes(&r, &vl);
	if (!rec_ok(&r) || nl > 512)
		return WB_E_CORRUPT;
	uint8_t kb[520];
	char kind = op == OP_PUT_USER || op == OP_DEL_USER   ? KEY_USER
	            : op == OP_PUT_ROLE || op == OP_DEL_ROLE ? KEY_ROLE
	            : op == OP_SECRET                        ? KEY_SECRET
	                                                     : KEY_TOKEN;
	struct storage_val k = key_of(kb, kind, name, nl);
	switch (op) {
	case OP_PUT_USER:
	case OP_PUT_ROLE:
	case OP_PUT_TOKEN:
	case OP_SECRET:
		return storage_put(txn, STORAGE_DB_AUTH, k, (struct storage_val){val, vl}, 0);
	case OP_DEL_USER:
	case OP_DEL_ROLE: {
		int rc = storage_del(txn, STORAGE_DB_AUTH, k);
		return rc == WB_E_NOTFOUND ? 0 : rc;
	}
	case OP_REVOKE_TOKEN: {
		struct storage_val v;
		int rc = storage_get(txn, STORAGE_DB_AUTH, k, &v);
		if (rc == WB_E_NOTFOUND)
			return 0;
		if (rc != 0 || v.len == 0)
			return rc != 0 ? rc : WB_E_CORRUPT;
		uint8_t *copy = malloc(v.len);
		if (copy == NULL)
			return WB_E_NOMEM;
		memcpy(copy, v.data, v.len);
		copy[v.len - 1] = 1; /* the revoked flag ends the value */
		rc = storage_put(txn, STORAGE_DB_AUTH, k, (struct storage_val){copy, v.len}, 0);
		free(copy);
		return rc;
	}
	default:
		return WB_E_CORRUPT;
	}
}

static int auth_replay(struct storage_txn *txn, uint16_t version, const uint8_t *rec, size_t len)
{
	if (version != AUTH_REC_VERSION)
		return WB_E_CORRUPT;
	return auth_rec_apply(txn, rec, len);
}

/* ------------------------------------------------------------ lookups */

static struct user_ent *find_user(struct auths *as, const char *name, size_t n)
{
	for (size_t i = 0; i < as->nusers; i++)
		if (strlen(as->users[i].name) == n && memcmp(as->users[i].name, name, n) == 0)
			return &as->users[i];
	return NULL;
}

static struct role_ent *find_role(struct auths *as, const char *name)
{
	for (size_t i = 0; i < as->nroles; i++)
		if (strcmp(as->roles[i].name, name) == 0)
			return &as->roles[i];
	return NULL;
}

static const struct auth_role *resolve_role(struct auths *as, const char *name)
{
	const struct auth_role *r = auth_builtin_role(name);
	if (r != NULL)
		return r;
	struct role_ent *e = find_role(as, name);
	return e != NULL ? &e->role : NULL;
}

/* Tokens by id: open addressing over as->tokens (positions + 1), at most
 * half full. Ids are random bytes made by the server, so their first bytes
 * are the hash; an id a client makes up only probes what is there. Tokens
 * are never removed (a revoked one stays, marked). */
static size_t id_hash(const uint8_t id[AUTH_TOKEN_ID_LEN])
{
	uint64_t h;
	memcpy(&h, id, sizeof(h));
	return (size_t)h;
}

static struct token_ent *find_token(struct auths *as, const uint8_t id[AUTH_TOKEN_ID_LEN])
{
	size_t mask = as->token_cap - 1;
	for (size_t j = id_hash(id) & mask; as->token_cap != 0 && as->token_slots[j] != 0;
	     j = (j + 1) & mask) {
		struct token_ent *t = &as->tokens[as->token_slots[j] - 1];
		if (memcmp(t->rec.id, id, AUTH_TOKEN_ID_LEN) == 0)
			return t;
	}
	return NULL;
}

static void index_token(uint32_t *slots, size_t cap, const struct token_ent *t, size_t pos)
{
	size_t j = id_hash(t->rec.id) & (cap - 1);
	while (slots[j] != 0)
		j = (j + 1) & (cap - 1);
	slots[j] = (uint32_t)pos + 1;
}

/* Appends *t and indexes it: false when out of memory (nothing changed). */
static bool add_token(struct auths *as, const struct token_ent *t)
{
	size_t cap = as->token_cap != 0 ? as->token_cap : 64;
	while (cap < 2 * (as->ntokens + 1))
		cap *= 2;
	uint32_t *slots = as->token_slots;
	if (cap != as->token_cap && (slots = calloc(cap, sizeof(*slots))) == NULL)
		return false;
	if (!GROW(as->tokens, as->ntokens)) {
		if (slots != as->token_slots)
			free(slots);
		return false;
	}
	as->tokens[as->ntokens] = *t;
	if (slots != as->token_slots) {
		for (size_t i = 0; i < as->ntokens; i++)
			index_token(slots, cap, &as->tokens[i], i);
		free(as->token_slots);
		as->token_slots = slots;
		as->token_cap = cap;
	}
	index_token(as->token_slots, as->token_cap, t, as->ntokens);
	as->ntokens++;
	return true;
}

/* Points p's subject at the roles its user or token holds now: none when
 * the user was deleted or the token revoked. */
static void resolve(struct auths *as, struct principal *p)
{
	size_t n = 0;
	if (p->is_token) {
		struct token_ent *t = find_token(as, p->token_id);
		bool live = t != NULL && !t->rec.revoked &&
		            (t->rec.expires_ms == 0 || wall_ms() < t->rec.expires_ms);
		const struct auth_role *r = live ? resolve_role(as, t->role) : NULL;
		if (r != NULL)
			p->roles[n++] = r;
	} else {
		struct user_ent *u = find_user(as, p->name, strlen(p->name));
		for (size_t i = 0; u != NULL && i < u->nroles; i++) {
			const struct auth_role *r = resolve_role(as, u->roles[i]);
			if (r != NULL)
				p->roles[n++] = r;
		}
	}
	p->subject.roles = p->roles;
	p->subject.nroles = n;
}

static void resolve_all(struct auths *as)
{
	for (struct principal *p = as->principals; p != NULL; p = p->next)
		resolve(as, p);
}

/* ------------------------------------------------------------ connections */

static struct conn_auth *conn_state(struct auths *as, struct conn *c, bool make)
{
	struct conn_auth *ca = conn_slot(c, as->slot);
	if (ca == NULL && make) {
		ca = calloc(1, sizeof(*ca));
		if (ca != NULL)
			conn_set_slot(c, as->slot, ca);
	}
	return ca;
}

static void drop_principal(struct auths *as, struct principal *p)
{
	if (p == NULL)
		return;
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		as->principals = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	free(p);
}

/* Ends c's exchange and identity (a new Hello, or a close). */
static void conn_reset(struct auths *as, struct conn *c)
{
	struct conn_auth *ca = conn_state(as, c, false);
	if (ca == NULL)
		return;
	auth_scram_server_free(ca->scram);
	ca->scram = NULL;
	if (ca->who != NULL && conn_subject(c) == &ca->who->subject)
		conn_set_subject(c, NULL);
	drop_principal(as, ca->who);
	ca->who = NULL;
}

static void auth_conn_figures(void *state, const struct conn *c, Whizbang__V1__ClientInfo *info)
{
	const struct auths *as = state;
	const struct conn_auth *ca = conn_slot(c, as->slot);
	if (ca != NULL && ca->who != NULL)
		info->user = (char *)ca->who->shown;
}

static void auth_conn_closed(void *state, struct conn *c)
{
	struct auths *as = state;
	conn_reset(as, c);
	free(conn_slot(c, as->slot));
	conn_set_slot(c, as->slot, NULL);
}

/* Gives c the identity of a user or a token. */
/* Signs c in as the user name, or as the token t when t is not NULL. */
static struct principal *sign_in(struct auths *as, struct conn *c, const char *name,
                                 const struct token_ent *t)
{
	bool is_token = t != NULL;
	struct conn_auth *ca = conn_state(as, c, true);
	struct principal *p = calloc(1, sizeof(*p));
	if (ca == NULL || p == NULL) {
		free(p);
		return NULL;
	}
	p->is_token = is_token;
	if (is_token)
		memcpy(p->token_id, t->rec.id, AUTH_TOKEN_ID_LEN);
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->shown, sizeof(p->shown), "%s%s", is_token ? "token:" : "", name);
	p->conn = c;
	p->next = as->principals;
	if (as->principals != NULL)
		as->principals->prev = p;
	as->principals = p;
	resolve(as, p);
	ca->who = p;
	conn_set_subject(c, &p->subject);
	return p;
}

/* ------------------------------------------------------------ throttling */

/* The address c's attempts are counted under: its host, without the port. */
static void addr_of(struct conn *c, char *out, size_t cap)
{
	const char *peer = conn_peer(c);
	const char *end = strrchr(peer, ':');
	if (peer[0] == '[') {
		const char *close = strchr(peer, ']');
		snprintf(out, cap, "%.*s", close != NULL ? (int)(close - peer - 1) : 0, peer + 1);
	} else if (strncmp(peer, "unix:", 5) == 0) {
		/* "unix:uid=N,pid=P": counted per uid, whatever the process. */
		const char *comma = strchr(peer, ',');
		snprintf(out, cap, "%.*s", comma != NULL ? (int)(comma - peer) : (int)strlen(peer),
		         peer);
	} else if (end == NULL) {
		snprintf(out, cap, "%s", peer);
	} else {
		snprintf(out, cap, "%.*s", (int)(end - peer), peer);
	}
}

static struct throttle *throttle_of(struct auths *as, const char *addr, bool make)
{
	uint64_t now = wall_ms();
	struct throttle *oldest = &as->throttle[0];
	for (size_t i = 0; i < THROTTLE_SLOTS; i++) {
		struct throttle *t = &as->throttle[i];
		if (strcmp(t->addr, addr) == 0) {
			if (now - t->window_ms >= THROTTLE_WINDOW_MS) {
				t->window_ms = now;
				t->failures = 0;
			}
			return t;
		}
		if (t->window_ms < oldest->window_ms)
			oldest = t;
	}
	if (!make)
		return NULL;
	snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
	oldest->window_ms = now;
	oldest->failures = 0;
	return oldest;
}

static bool throttled(struct auths *as, struct conn *c)
{
	char addr[64];
	addr_of(c, addr, sizeof(addr));
	struct throttle *t = throttle_of(as, addr, false);
	return t != NULL && t->failures >= srv_config(as->srv)->auth_failures_per_minute;
}

/* Counts and logs a failed attempt: the claimed user (quoted) and the
 * reason, never a secret. Returns the answer's code, filling msg. */
static int failed(struct auths *as, struct conn *c, const char *mechanism, const char *user,
                  size_t user_len, const char *reason, char *msg, size_t msglen)
{
	char addr[64], q[300];
	addr_of(c, addr, sizeof(addr));
	struct throttle *t = throttle_of(as, addr, true);
	t->failures++;
	as->failures++;
	srv_log(WB_LOG_WARN, "auth_failed", "conn=%llu peer=%s mechanism=%s user=%s reason=%s",
	        (unsigned long long)conn_id(c), conn_peer(c), mechanism,
	        log_quote(user, user_len, q, sizeof(q)), reason);
	snprintf(msg, msglen, AUTH_FAILED);
	return WB_UNAUTHENTICATED;
}

/* ------------------------------------------------------------ Hello, Authenticate */

static int lookup_cb(void *arg, const char *user, size_t len, struct auth_scram_cred *out)
{
	struct user_ent *u = find_user(arg, user, len);
	if (u == NULL || !u->has_cred)
		return WB_E_NOTFOUND;
	*out = u->cred;
	return 0;
}

/* The HelloResult's role names of p (valid while p is). */
static void fill_roles(struct principal *p, char **names, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < p->subject.nroles; i++)
		names[(*n)++] = (char *)p->subject.roles[i]->name;
}

static int auth_hello(void *state, struct conn *c, const Whizbang__V1__Hello *h,
                      Whizbang__V1__HelloResult *r, char *msg, size_t msglen)
{
	struct auths *as = state;
	static char *roles[AUTH_ROLES_MAX];
	conn_reset(as, c);
	if (h->token.len > 0 && h->mechanism[0] != '\0') {
		snprintf(msg, msglen, "send a token or a mechanism in Hello, not both");
		return WB_BAD_REQUEST;
	}
	bool scram = strcmp(h->mechanism, AUTH_SCRAM_MECHANISM) == 0;
	bool external = strcmp(h->mechanism, "EXTERNAL") == 0;
	if (h->mechanism[0] != '\0' && !scram && !external) {
		snprintf(msg, msglen,
		         "unknown mechanism '%.40s': this server takes %s, EXTERNAL or a token",
		         h->mechanism, AUTH_SCRAM_MECHANISM);
		return WB_BAD_REQUEST;
	}
	if (throttled(as, c)) {
		as->throttled++;
		srv_log(WB_LOG_WARN, "auth_throttled", "conn=%llu peer=%s",
		        (unsigned long long)conn_id(c), conn_peer(c));
		snprintf(msg, msglen, AUTH_FAILED);
		return WB_UNAUTHENTICATED;
	}
	if (external) {
		/* The user the verified client certificate names (its CN). */
		const char *cn = conn_tls_peer(c);
		if (cn == NULL || cn[0] == '\0')
			return failed(as, c, "EXTERNAL", "", 0, "no_client_certificate", msg,
			              msglen);
		if (find_user(as, cn, strlen(cn)) == NULL)
			return failed(as, c, "EXTERNAL", cn, strlen(cn), "unknown_user", msg,
			              msglen);
		struct principal *p = sign_in(as, c, cn, NULL);
		if (p == NULL) {
			snprintf(msg, msglen, "the server is out of memory");
			return WB_RESOURCE_EXHAUSTED;
		}
		r->user = p->shown;
		fill_roles(p, roles, &r->n_roles);
		r->roles = roles;
		return 0;
	}
	if (!scram) {
		struct auth_token tok;
		if (auth_token_parse(&tok, (const char *)h->token.data, h->token.len) != 0)
			return failed(as, c, "token", "", 0, "malformed", msg, msglen);
		struct token_ent *t = find_token(as, tok.id);
		enum auth_token_status st =
		        t != NULL ? auth_token_check(&t->rec, &tok, wall_ms()) : AUTH_TOKEN_WRONG;
		auth_token_clear(&tok);
		if (st != AUTH_TOKEN_VALID)
			return failed(as, c, "token", t != NULL ? t->id : "",
			              t != NULL ? strlen(t->id) : 0, auth_token_status_name(st),
			              msg, msglen);
		struct principal *p = sign_in(as, c, t->id, t);
		if (p == NULL) {
			snprintf(msg, msglen, "the server is out of memory");
			return WB_RESOURCE_EXHAUSTED;
		}
		r->user = p->shown;
		fill_roles(p, roles, &r->n_roles);
		r->roles = roles;
		return 0;
	}
	struct conn_auth *ca = conn_state(as, c, true);
	struct auth_scram_server_config cfg = {
	        .lookup = lookup_cb,
	        .lookup_arg = as,
	        .random = auth_rand_bytes,
	        .iterations = (uint32_t)srv_config(as->srv)->scram_iterations,
	};
	memcpy(cfg.secret, as->secret, sizeof(cfg.secret));
	if (ca == NULL || auth_scram_server_new(&ca->scram, &cfg) != 0) {
		snprintf(msg, msglen, "the server is out of memory");
		return WB_RESOURCE_EXHAUSTED;
	}
	const char *reply;
	size_t rl;
	if (auth_scram_server_first(ca->scram, (const char *)h->auth_data.data, h->auth_data.len,
	                            &reply, &rl) != 0) {
		size_t ul = 0;
		const char *u = auth_scram_server_claimed_user(ca->scram, &ul);
		int code = failed(
		        as, c, AUTH_SCRAM_MECHANISM, u != NULL ? u : "", u != NULL ? ul : 0,
		        auth_scram_reason_name(auth_scram_server_reason(ca->scram)), msg, msglen);
		conn_reset(as, c);
		return code;
	}
	r->auth_data.data = (uint8_t *)reply;
	r->auth_data.len = rl;
	return 0;
}

static bool authenticate(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	struct conn_auth *ca = conn_state(as, c, false);
	char msg[200];
	if (ca == NULL || ca->scram == NULL) {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "no exchange to continue: begin one with Hello's mechanism");
		return false;
	}
	const Whizbang__V1__Authenticate *a = req->authenticate;
	const char *reply;
	size_t rl;
	int rc = auth_scram_server_final(ca->scram, (const char *)a->auth_data.data,
	                                 a->auth_data.len, &reply, &rl);
	size_t ul = 0;
	const char *u = auth_scram_server_claimed_user(ca->scram, &ul);
	if (rc != 0) {
		int code =
		        failed(as, c, AUTH_SCRAM_MECHANISM, u != NULL ? u : "", u != NULL ? ul : 0,
		               auth_scram_reason_name(auth_scram_server_reason(ca->scram)), msg,
		               sizeof(msg));
		conn_reset(as, c);
		srv_error(c, req->id, code, "%s", msg);
		return false;
	}
	char name[AUTH_SCRAM_USER_MAX + 1];
	snprintf(name, sizeof(name), "%.*s", (int)ul, u);
	Whizbang__V1__AuthenticateResult res = WHIZBANG__V1__AUTHENTICATE_RESULT__INIT;
	res.auth_data.data = (uint8_t *)reply;
	res.auth_data.len = rl;
	struct principal *p = sign_in(as, c, name, false);
	if (p == NULL) {
		conn_reset(as, c);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	char *roles[AUTH_ROLES_MAX];
	res.user = p->shown;
	fill_roles(p, roles, &res.n_roles);
	res.roles = roles;
	/* A user name may hold spaces and '=': quoted, as auth_failed's is. */
	char q[4 * sizeof(p->shown) + 3];
	srv_log(WB_LOG_INFO, "authenticated", "conn=%llu peer=%s user=%s roles=%zu",
	        (unsigned long long)conn_id(c), conn_peer(c),
	        log_quote(p->shown, strlen(p->shown), q, sizeof(q)), res.n_roles);
	SRV_REPLY(c, req->id, AUTHENTICATE, authenticate, &res);
	auth_scram_server_free(ca->scram);
	ca->scram = NULL;
	return false;
}

/* ------------------------------------------------------------ changes */

struct auth_op {
	struct srv_op base; /* first */
	struct auths *as;
	uint8_t *rec;
	uint8_t op;
	/* What memory becomes once durable. */
	struct user_ent user;
	struct role_ent role; /* owned until applied */
	struct token_ent token;
	char name[AUTH_SCRAM_USER_MAX + 1];
	char token_text[AUTH_TOKEN_STR_LEN + 1];
};

static int auth_op_apply(struct storage_txn *txn, struct writer_op *base)
{
	return auth_rec_apply(txn, base->rec, base->rec_len);
}

/* Memory follows the durable change. */
static void commit_memory(struct auths *as, struct auth_op *op)
{
	switch (op->op) {
	case OP_PUT_USER: {
		struct user_ent *u = find_user(as, op->user.name, strlen(op->user.name));
		if (u != NULL) {
			*u = op->user;
		} else {
			if (!GROW(as->users, as->nusers))
				break; /* durable: the next start loads it */
			as->users[as->nusers++] = op->user;
		}
		break;
	}
	case OP_DEL_USER: {
		struct user_ent *u = find_user(as, op->name, strlen(op->name));
		if (u != NULL)
			*u = as->users[--as->nusers];
		break;
	}
	case OP_PUT_ROLE: {
		struct role_ent *r = find_role(as, op->role.name);
		if (r != NULL) {
			role_free(r);
			*r = op->role;
		} else {
			if (!GROW(as->roles, as->nroles)) {
				role_free(&op->role);
				break;
			}
			as->roles[as->nroles++] = op->role;
		}
		/* realloc may have moved every role: re-point them. */
		for (size_t i = 0; i < as->nroles; i++)
			as->roles[i].role.grants = as->roles[i].grants,
			as->roles[i].role.name = as->roles[i].name;
		memset(&op->role, 0, sizeof(op->role));
		break;
	}
	case OP_DEL_ROLE: {
		struct role_ent *r = find_role(as, op->name);
		if (r != NULL) {
			role_free(r);
			*r = as->roles[--as->nroles];
			for (size_t i = 0; i < as->nroles; i++)
				as->roles[i].role.grants = as->roles[i].grants,
				as->roles[i].role.name = as->roles[i].name;
		}
		break;
	}
	case OP_PUT_TOKEN:
		(void)add_token(as, &op->token);
		break;
	case OP_REVOKE_TOKEN: {
		struct token_ent *t = find_token(as, op->token.rec.id);
		if (t != NULL)
			t->rec.revoked = true;
		break;
	}
	default:
		break;
	}
	resolve_all(as);
}

static void auth_op_done(struct srv *srv, struct srv_op *base)
{
	struct auth_op *op = (struct auth_op *)base;
	struct conn *c = base->conn;
	int rc = base->base.status;
	(void)srv;
	if (rc == 0)
		commit_memory(op->as, op);
	if (c != NULL && !conn_is_closing(c)) {
		if (rc != 0) {
			srv_error(c, base->req_id, wb_error_to_wire(rc),
			          "the change was not made: %s", wb_strerror(rc));
		} else {
			switch (op->op) {
			case OP_PUT_USER: {
				Whizbang__V1__PutUserResult r = WHIZBANG__V1__PUT_USER_RESULT__INIT;
				SRV_REPLY(c, base->req_id, PUT_USER, put_user, &r);
				break;
			}
			case OP_DEL_USER: {
				Whizbang__V1__DeleteUserResult r =
				        WHIZBANG__V1__DELETE_USER_RESULT__INIT;
				SRV_REPLY(c, base->req_id, DELETE_USER, delete_user, &r);
				break;
			}
			case OP_PUT_ROLE: {
				Whizbang__V1__PutRoleResult r = WHIZBANG__V1__PUT_ROLE_RESULT__INIT;
				SRV_REPLY(c, base->req_id, PUT_ROLE, put_role, &r);
				break;
			}
			case OP_DEL_ROLE: {
				Whizbang__V1__DeleteRoleResult r =
				        WHIZBANG__V1__DELETE_ROLE_RESULT__INIT;
				SRV_REPLY(c, base->req_id, DELETE_ROLE, delete_role, &r);
				break;
			}
			case OP_PUT_TOKEN: {
				Whizbang__V1__CreateTokenResult r =
				        WHIZBANG__V1__CREATE_TOKEN_RESULT__INIT;
				r.token = op->token_text;
				r.id = op->token.id;
				r.expires_ms = op->token.rec.expires_ms;
				SRV_REPLY(c, base->req_id, CREATE_TOKEN, create_token, &r);
				break;
			}
			default: {
				Whizbang__V1__RevokeTokenResult r =
				        WHIZBANG__V1__REVOKE_TOKEN_RESULT__INIT;
				SRV_REPLY(c, base->req_id, REVOKE_TOKEN, revoke_token, &r);
				break;
			}
			}
		}
	}
	role_free(&op->role);
	explicit_bzero(op->token_text, sizeof(op->token_text));
	free(op->rec);
	free(op);
}

/* Hands a change to the writer: [op][name][value?]. Frees value. */
static bool submit(struct auths *as, struct conn *c, uint64_t req_id, struct auth_op *op,
                   const void *name, size_t nl, uint8_t *value, size_t vl, bool has_value)
{
	struct rec_builder b = {0};
	rec_u8(&b, op->op);
	rec_bytes(&b, name, nl);
	if (has_value)
		rec_bytes(&b, value, vl);
	free(value);
	if (rec_out(&b, &op->rec, &op->base.base.rec_len) != 0) {
		role_free(&op->role);
		free(op);
		srv_error(c, req_id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	op->as = as;
	op->base.base.apply = auth_op_apply;
	op->base.base.size_hint = 4096;
	op->base.base.rec_type = SRV_REC_AUTH;
	op->base.base.rec_version = AUTH_REC_VERSION;
	op->base.base.rec = op->rec;
	op->base.done = auth_op_done;
	op->base.conn = c;
	op->base.req_id = req_id;
	srv_submit(as->srv, &op->base);
	return true;
}

static struct auth_op *new_op(struct conn *c, uint64_t req_id, uint8_t kind)
{
	struct auth_op *op = calloc(1, sizeof(*op));
	if (op == NULL)
		srv_error(c, req_id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	else
		op->op = kind;
	return op;
}

/* A role name: 1..64 bytes of letters, digits, '-', '_' and '.'. */
static bool role_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > ROLE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

static bool put_user(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	const Whizbang__V1__PutUser *m = req->put_user;
	size_t nl = strlen(m->name);
	if (auth_scram_user_check(m->name, nl) != 0) {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "name: a user name is 1 to %u bytes of UTF-8 without control characters",
		          AUTH_SCRAM_USER_MAX);
		return false;
	}
	if (m->n_roles > AUTH_ROLES_MAX) {
		srv_error(c, req->id, WB_BAD_REQUEST, "roles: at most %u", AUTH_ROLES_MAX);
		return false;
	}
	struct user_ent *old = find_user(as, m->name, nl);
	if (old == NULL && as->nusers >= MAX_USERS) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server keeps at most %u users",
		          MAX_USERS);
		return false;
	}
	struct auth_op *op = new_op(c, req->id, OP_PUT_USER);
	if (op == NULL)
		return false;
	snprintf(op->user.name, sizeof(op->user.name), "%s", m->name);
	for (size_t i = 0; i < m->n_roles; i++) {
		if (resolve_role(as, m->roles[i]) == NULL) {
			srv_error(c, req->id, WB_NOT_FOUND, "roles: no role '%.64s'", m->roles[i]);
			free(op);
			return false;
		}
		snprintf(op->user.roles[i], sizeof(op->user.roles[i]), "%s", m->roles[i]);
	}
	op->user.nroles = m->n_roles;
	if (m->credential[0] != '\0') {
		if (auth_scram_cred_parse(&op->user.cred, m->credential, strlen(m->credential)) !=
		    0) {
			srv_error(c, req->id, WB_BAD_REQUEST,
			          "credential: not a SCRAM-SHA-256 verifier in stored form "
			          "(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)");
			free(op);
			return false;
		}
		if (op->user.cred.iterations < srv_config(as->srv)->scram_iterations) {
			srv_error(c, req->id, WB_BAD_REQUEST,
			          "credential: %u iterations; this server wants at least %llu "
			          "(--scram-iterations)",
			          op->user.cred.iterations,
			          (unsigned long long)srv_config(as->srv)->scram_iterations);
			free(op);
			return false;
		}
		op->user.has_cred = true;
	} else if (old != NULL) {
		op->user.has_cred = old->has_cred;
		op->user.cred = old->cred;
	}
	uint8_t *v;
	size_t vl;
	if (user_value(&op->user, &v, &vl) != 0) {
		free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	submit(as, c, req->id, op, m->name, nl, v, vl, true);
	return false;
}

static bool delete_user(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	const char *name = req->delete_user->name;
	if (find_user(as, name, strlen(name)) == NULL) {
		srv_error(c, req->id, WB_NOT_FOUND, "no user '%.255s'", name);
		return false;
	}
	struct auth_op *op = new_op(c, req->id, OP_DEL_USER);
	if (op == NULL)
		return false;
	snprintf(op->name, sizeof(op->name), "%s", name);
	submit(as, c, req->id, op, name, strlen(name), NULL, 0, false);
	return false;
}

static bool put_role(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	const Whizbang__V1__PutRole *m = req->put_role;
	if (!role_name_ok(m->name)) {
		srv_error(c, req->id, WB_BAD_REQUEST,
		          "name: a role name is 1 to %u letters, digits, '-', '_' or '.'",
		          ROLE_NAME_MAX);
		return false;
	}
	if (auth_builtin_role(m->name) != NULL || strcmp(m->name, "none") == 0) {
		srv_error(c, req->id, WB_BAD_REQUEST, "name: %s is a built-in role", m->name);
		return false;
	}
	if (m->n_grants > MAX_GRANTS) {
		srv_error(c, req->id, WB_BAD_REQUEST, "grants: at most %u", MAX_GRANTS);
		return false;
	}
	if (find_role(as, m->name) == NULL && as->nroles >= MAX_ROLES) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server keeps at most %u roles",
		          MAX_ROLES);
		return false;
	}
	struct auth_op *op = new_op(c, req->id, OP_PUT_ROLE);
	if (op == NULL)
		return false;
	size_t lens[MAX_GRANTS];
	for (size_t i = 0; i < m->n_grants; i++)
		lens[i] = strlen(m->grants[i]);
	char why[300];
	int rc = role_build(&op->role, m->name, m->grants, lens, m->n_grants, why, sizeof(why));
	if (rc != 0) {
		srv_error(c, req->id, rc == WB_E_NOMEM ? WB_RESOURCE_EXHAUSTED : WB_BAD_REQUEST,
		          "grants: %s", why);
		free(op);
		return false;
	}
	uint8_t *v;
	size_t vl;
	if (role_value(m->grants, lens, m->n_grants, &v, &vl) != 0) {
		role_free(&op->role);
		free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	submit(as, c, req->id, op, m->name, strlen(m->name), v, vl, true);
	return false;
}

static bool delete_role(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	const char *name = req->delete_role->name;
	if (auth_builtin_role(name) != NULL) {
		srv_error(c, req->id, WB_BAD_REQUEST, "%s is a built-in role", name);
		return false;
	}
	if (find_role(as, name) == NULL) {
		srv_error(c, req->id, WB_NOT_FOUND, "no role '%.64s'", name);
		return false;
	}
	for (size_t i = 0; i < as->nusers; i++)
		for (size_t j = 0; j < as->users[i].nroles; j++)
			if (strcmp(as->users[i].roles[j], name) == 0) {
				srv_error(c, req->id, WB_BAD_REQUEST,
				          "role %s is held by user '%s': take it from its users "
				          "first",
				          name, as->users[i].name);
				return false;
			}
	for (size_t i = 0; i < as->ntokens; i++)
		if (!as->tokens[i].rec.revoked && strcmp(as->tokens[i].role, name) == 0) {
			srv_error(c, req->id, WB_BAD_REQUEST,
			          "role %s is held by token %s: revoke it first", name,
			          as->tokens[i].id);
			return false;
		}
	struct auth_op *op = new_op(c, req->id, OP_DEL_ROLE);
	if (op == NULL)
		return false;
	snprintf(op->name, sizeof(op->name), "%s", name);
	submit(as, c, req->id, op, name, strlen(name), NULL, 0, false);
	return false;
}

/* Makes a token for role in op (op->token, op->token_text). */
static int make_token(struct auths *as, struct auth_op *op, const char *role, const char *desc,
                      uint64_t ttl_ms)
{
	uint64_t now = wall_ms();
	int rc = auth_token_generate(op->token_text, sizeof(op->token_text), &op->token.rec, 0, now,
	                             now + ttl_ms, auth_rand_bytes, NULL);
	if (rc != 0)
		return rc;
	(void)as;
	auth_token_id_format(op->token.id, op->token.rec.id);
	snprintf(op->token.role, sizeof(op->token.role), "%s", role);
	snprintf(op->token.desc, sizeof(op->token.desc), "%s", desc);
	return 0;
}

static bool create_token(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	const Whizbang__V1__CreateToken *m = req->create_token;
	if (resolve_role(as, m->role) == NULL) {
		srv_error(c, req->id, WB_NOT_FOUND, "role: no role '%.64s'", m->role);
		return false;
	}
	if (strlen(m->description) > DESC_MAX) {
		srv_error(c, req->id, WB_BAD_REQUEST, "description: at most %u bytes", DESC_MAX);
		return false;
	}
	if (m->ttl_ms > MAX_TOKEN_TTL_MS) {
		srv_error(c, req->id, WB_BAD_REQUEST, "ttl_ms: at most ten years");
		return false;
	}
	if (as->ntokens >= MAX_TOKENS) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server keeps at most %u tokens",
		          MAX_TOKENS);
		return false;
	}
	struct auth_op *op = new_op(c, req->id, OP_PUT_TOKEN);
	if (op == NULL)
		return false;
	if (make_token(as, op, m->role, m->description,
	               m->ttl_ms > 0 ? m->ttl_ms : DEFAULT_TOKEN_TTL_MS) != 0) {
		free(op);
		srv_error(c, req->id, WB_INTERNAL, "no random bytes for the token");
		return false;
	}
	uint8_t *v;
	size_t vl;
	if (token_value(&op->token, &v, &vl) != 0) {
		free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	submit(as, c, req->id, op, op->token.rec.id, AUTH_TOKEN_ID_LEN, v, vl, true);
	return false;
}

static bool revoke_token(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	const char *id = req->revoke_token->id;
	uint8_t raw[AUTH_TOKEN_ID_LEN];
	size_t rl = 0;
	struct token_ent *t = NULL;
	if (strlen(id) == AUTH_TOKEN_ID_CHARS &&
	    auth_b64url_decode(raw, sizeof(raw), &rl, id, AUTH_TOKEN_ID_CHARS) == 0 &&
	    rl == AUTH_TOKEN_ID_LEN)
		t = find_token(as, raw);
	if (t == NULL) {
		srv_error(c, req->id, WB_NOT_FOUND, "no token '%.40s'", id);
		return false;
	}
	struct auth_op *op = new_op(c, req->id, OP_REVOKE_TOKEN);
	if (op == NULL)
		return false;
	memcpy(op->token.rec.id, t->rec.id, AUTH_TOKEN_ID_LEN);
	submit(as, c, req->id, op, t->rec.id, AUTH_TOKEN_ID_LEN, NULL, 0, false);
	return false;
}

/* ------------------------------------------------------------ lists */

static bool list_users(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	Whizbang__V1__UserList l = WHIZBANG__V1__USER_LIST__INIT;
	Whizbang__V1__UserInfo *infos = calloc(as->nusers + 1, sizeof(*infos));
	Whizbang__V1__UserInfo **ptrs = calloc(as->nusers + 1, sizeof(*ptrs));
	char *(*roles)[AUTH_ROLES_MAX] = calloc(as->nusers + 1, sizeof(*roles));
	if (infos == NULL || ptrs == NULL || roles == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	} else {
		for (size_t i = 0; i < as->nusers; i++) {
			whizbang__v1__user_info__init(&infos[i]);
			infos[i].name = as->users[i].name;
			infos[i].has_password = as->users[i].has_cred;
			for (size_t j = 0; j < as->users[i].nroles; j++)
				roles[i][j] = as->users[i].roles[j];
			infos[i].n_roles = as->users[i].nroles;
			infos[i].roles = roles[i];
			ptrs[i] = &infos[i];
		}
		l.n_users = as->nusers;
		l.users = ptrs;
		SRV_REPLY(c, req->id, USERS, users, &l);
	}
	free(infos);
	free(ptrs);
	free(roles);
	return false;
}

static bool list_roles(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	size_t nb = 0;
	while (auth_builtin_role_names[nb] != NULL)
		nb++;
	size_t n = nb + as->nroles;
	Whizbang__V1__RoleList l = WHIZBANG__V1__ROLE_LIST__INIT;
	Whizbang__V1__RoleInfo *infos = calloc(n, sizeof(*infos));
	Whizbang__V1__RoleInfo **ptrs = calloc(n, sizeof(*ptrs));
	char **texts = calloc(n * MAX_GRANTS + 1, sizeof(*texts));
	/* The built-in roles' grants, formatted: a few each. */
	char(*bufs)[AUTH_PREFIX_MAX + 80] = calloc(nb * MAX_GRANTS + 1, sizeof(*bufs));
	if (infos == NULL || ptrs == NULL || texts == NULL || bufs == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	} else {
		size_t t = 0, bi = 0;
		for (size_t i = 0; i < n; i++) {
			whizbang__v1__role_info__init(&infos[i]);
			ptrs[i] = &infos[i];
			infos[i].grants = &texts[t];
			if (i < nb) {
				const struct auth_role *r =
				        auth_builtin_role(auth_builtin_role_names[i]);
				infos[i].name = (char *)r->name;
				infos[i].builtin = true;
				for (size_t g = 0; g < r->ngrants && g < MAX_GRANTS; g++) {
					auth_grant_format(&r->grants[g], bufs[bi],
					                  sizeof(bufs[bi]));
					texts[t++] = bufs[bi++];
					infos[i].n_grants++;
				}
			} else {
				struct role_ent *r = &as->roles[i - nb];
				infos[i].name = r->name;
				for (size_t g = 0; g < r->n; g++) {
					texts[t++] = r->texts[g];
					infos[i].n_grants++;
				}
			}
		}
		l.n_roles = n;
		l.roles = ptrs;
		SRV_REPLY(c, req->id, ROLES, roles, &l);
	}
	free(infos);
	free(ptrs);
	free(texts);
	free(bufs);
	return false;
}

static bool list_tokens(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	Whizbang__V1__TokenList l = WHIZBANG__V1__TOKEN_LIST__INIT;
	Whizbang__V1__TokenInfo *infos = calloc(as->ntokens + 1, sizeof(*infos));
	Whizbang__V1__TokenInfo **ptrs = calloc(as->ntokens + 1, sizeof(*ptrs));
	if (infos == NULL || ptrs == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
	} else {
		for (size_t i = 0; i < as->ntokens; i++) {
			struct token_ent *t = &as->tokens[i];
			whizbang__v1__token_info__init(&infos[i]);
			infos[i].id = t->id;
			infos[i].role = t->role;
			infos[i].description = t->desc;
			infos[i].created_ms = t->rec.created_ms;
			infos[i].expires_ms = t->rec.expires_ms;
			infos[i].revoked = t->rec.revoked;
			ptrs[i] = &infos[i];
		}
		l.n_tokens = as->ntokens;
		l.tokens = ptrs;
		SRV_REPLY(c, req->id, TOKENS, tokens, &l);
	}
	free(infos);
	free(ptrs);
	return false;
}

/* ------------------------------------------------------------ start-up */

/* Loads every user, role and token; returns 0 or a storage error. */
static int load(struct auths *as, struct storage_txn *txn, bool *have_secret)
{
	struct storage_cursor *cur;
	int rc = storage_cursor_open(txn, STORAGE_DB_AUTH, &cur);
	if (rc != 0)
		return rc;
	struct storage_val k, v;
	*have_secret = false;
	for (rc = storage_cursor_get(cur, STORAGE_FIRST, &k, &v); rc == 0;
	     rc = storage_cursor_get(cur, STORAGE_NEXT, &k, &v)) {
		const uint8_t *kp = k.data;
		if (k.len < 1) {
			rc = WB_E_CORRUPT;
			break;
		}
		char name[AUTH_SCRAM_USER_MAX + 1];
		if (kp[0] == KEY_SECRET) {
			if (v.len != sizeof(as->secret)) {
				rc = WB_E_CORRUPT;
				break;
			}
			memcpy(as->secret, v.data, v.len);
			*have_secret = true;
		} else if (kp[0] == KEY_USER) {
			if (!copy_name(name, sizeof(name), kp + 1, k.len - 1)) {
				rc = WB_E_CORRUPT;
				break;
			}
			if (!GROW(as->users, as->nusers)) {
				rc = WB_E_NOMEM;
				break;
			}
			if ((rc = user_parse(&as->users[as->nusers], name, v.data, v.len)) != 0)
				break;
			as->nusers++;
		} else if (kp[0] == KEY_ROLE) {
			if (!copy_name(name, ROLE_NAME_MAX + 1, kp + 1, k.len - 1)) {
				rc = WB_E_CORRUPT;
				break;
			}
			if (!GROW(as->roles, as->nroles)) {
				rc = WB_E_NOMEM;
				break;
			}
			if ((rc = role_parse(&as->roles[as->nroles], name, v.data, v.len)) != 0)
				break;
			as->nroles++;
		} else if (kp[0] == KEY_TOKEN) {
			if (k.len != 1 + AUTH_TOKEN_ID_LEN) {
				rc = WB_E_CORRUPT;
				break;
			}
			struct token_ent t;
			if ((rc = token_parse(&t, kp + 1, v.data, v.len)) != 0)
				break;
			if (!add_token(as, &t)) {
				rc = WB_E_NOMEM;
				break;
			}
		} else {
			rc = WB_E_CORRUPT;
			break;
		}
	}
	storage_cursor_close(cur);
	for (size_t i = 0; i < as->nroles; i++)
		as->roles[i].role.grants = as->roles[i].grants,
		as->roles[i].role.name = as->roles[i].name;
	return rc == WB_E_NOTFOUND ? 0 : rc;
}

/* Writes the bootstrap token's text to DATA_DIR/bootstrap-admin.token, 0600:
 * into a new temporary file (O_EXCL, never through a link), fsynced, then
 * renamed over the name and the directory fsynced. A file already there is
 * replaced: it can only be from a first start that crashed before its
 * store was checkpointed, so the token in it is in no store (and a later
 * start, which finds the secret, never comes here). */
static int write_bootstrap(const char *data_dir, const char *text, char *errmsg, size_t errlen)
{
	char path[1100], tmp[1110];
	snprintf(path, sizeof(path), "%s/bootstrap-admin.token", data_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	(void)unlink(tmp); /* a leftover of a crash, or nothing */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(errmsg, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return WB_E_IO;
	}
	char line[AUTH_TOKEN_STR_LEN + 2];
	int n = snprintf(line, sizeof(line), "%s\n", text);
	bool ok = fchmod(fd, 0600) == 0 && write(fd, line, (size_t)n) == n && fsync(fd) == 0;
	explicit_bzero(line, sizeof(line));
	if (close(fd) != 0)
		ok = false;
	if (ok && rename(tmp, path) != 0)
		ok = false;
	if (!ok) {
		snprintf(errmsg, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return WB_E_IO;
	}
	int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* The first start of a store: the mock credentials' secret, and a
 * bootstrap token for admin, written straight into the store (start-up
 * writes are made durable by the start-up checkpoint) and then to its
 * file. */
static int first_start(struct auths *as, char *errmsg, size_t errlen)
{
	struct storage *st = srv_storage(as->srv);
	if (auth_rand_bytes(NULL, as->secret, sizeof(as->secret)) != 0) {
		snprintf(errmsg, errlen, "no random bytes for the authentication secret");
		return WB_E_IO;
	}
	struct auth_op op = {0};
	int rc = make_token(as, &op, "admin", "bootstrap: the first administrator",
	                    MAX_TOKEN_TTL_MS);
	if (rc != 0) {
		snprintf(errmsg, errlen, "no random bytes for the bootstrap token");
		return WB_E_IO;
	}
	uint8_t *v = NULL;
	size_t vl;
	struct storage_txn *txn;
	if ((rc = token_value(&op.token, &v, &vl)) != 0 ||
	    (rc = storage_txn_begin(st, NULL, 0, &txn)) != 0) {
		free(v);
		snprintf(errmsg, errlen, "cannot store the bootstrap token: %s", wb_strerror(rc));
		return rc;
	}
	uint8_t kb[1 + AUTH_TOKEN_ID_LEN], ks[1];
	rc = storage_put(txn, STORAGE_DB_AUTH, key_of(ks, KEY_SECRET, "", 0),
	                 (struct storage_val){as->secret, sizeof(as->secret)}, 0);
	if (rc == 0)
		rc = storage_put(txn, STORAGE_DB_AUTH,
		                 key_of(kb, KEY_TOKEN, op.token.rec.id, AUTH_TOKEN_ID_LEN),
		                 (struct storage_val){v, vl}, 0);
	free(v);
	if (rc == 0)
		rc = storage_txn_commit(txn);
	else
		storage_txn_abort(txn);
	if (rc != 0) {
		explicit_bzero(op.token_text, sizeof(op.token_text));
		snprintf(errmsg, errlen, "cannot store the bootstrap token: %s", wb_strerror(rc));
		return rc;
	}
	(void)add_token(as, &op.token);
	rc = write_bootstrap(srv_config(as->srv)->data_dir, op.token_text, errmsg, errlen);
	explicit_bzero(op.token_text, sizeof(op.token_text));
	if (rc == 0)
		srv_log(WB_LOG_WARN, "bootstrap_token",
		        "file=%s/bootstrap-admin.token id=%s role=admin (revoke it once you have "
		        "other administrators: whizbang token revoke %s)",
		        srv_config(as->srv)->data_dir, op.token.id, op.token.id);
	return rc;
}

static void auth_close(void *state);

/* Every EXPIRY_CHECK_MS: a connection signed in with a token that has
 * expired since loses its role, as a revoked one's does at once. */
#define EXPIRY_CHECK_MS 1000

static void expiry_cb(uv_timer_t *timer)
{
	struct auths *as = timer->data;
	uint64_t now = wall_ms();
	for (struct principal *p = as->principals; p != NULL; p = p->next) {
		if (!p->is_token || p->subject.nroles == 0)
			continue;
		const struct token_ent *t = find_token(as, p->token_id);
		if (t == NULL || t->rec.expires_ms == 0 || now < t->rec.expires_ms)
			continue;
		resolve(as, p);
		srv_log(WB_LOG_INFO, "token_expired", "conn=%llu token=%s (its role is gone)",
		        (unsigned long long)conn_id(p->conn), t->id);
	}
}

static void expiry_closed_cb(uv_handle_t *h)
{
	(void)h;
}

static void expiry_stop(struct auths *as, bool run)
{
	if (!as->expiry_open)
		return;
	as->expiry_open = false;
	uv_close((uv_handle_t *)&as->expiry, expiry_closed_cb);
	if (run)
		uv_run(srv_loop(as->srv), UV_RUN_NOWAIT);
}

static void auth_shutdown(void *state)
{
	expiry_stop(state, false);
}

static int auth_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct auths *as = state;
	as->srv = srv;
	as->slot = slot;
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(srv), NULL, STORAGE_RDONLY, &txn);
	bool have_secret = false;
	if (rc == 0) {
		rc = load(as, txn, &have_secret);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot load the users, roles and tokens: %s",
		         wb_strerror(rc));
		auth_close(as);
		return rc;
	}
	if (!have_secret && (rc = first_start(as, errmsg, errlen)) != 0) {
		auth_close(as);
		return rc;
	}
	if (strcmp(srv_config(srv)->anonymous_role, "none") != 0)
		srv_log(WB_LOG_WARN, "anonymous_role",
		        "role=%s: connections that do not authenticate may do what it allows "
		        "(--anonymous-role)",
		        srv_config(srv)->anonymous_role);
	if ((rc = uv_timer_init(srv_loop(srv), &as->expiry)) != 0) {
		snprintf(errmsg, errlen, "cannot make the token expiry timer: %s", uv_strerror(rc));
		auth_close(as);
		return WB_E_IO;
	}
	as->expiry.data = as;
	as->expiry_open = true;
	uv_timer_start(&as->expiry, expiry_cb, EXPIRY_CHECK_MS, EXPIRY_CHECK_MS);
	uv_unref((uv_handle_t *)&as->expiry);
	srv_log(WB_LOG_INFO, "auth_loaded", "users=%zu roles=%zu tokens=%zu", as->nusers,
	        as->nroles, as->ntokens);
	return 0;
}

static void auth_close(void *state)
{
	struct auths *as = state;
	/* Closed by the shutdown hook unless the loop ended some other way. */
	expiry_stop(as, true);
	for (size_t i = 0; i < as->nroles; i++)
		role_free(&as->roles[i]);
	free(as->roles);
	/* explicit_bzero() is declared nonnull: a store without users has no
	 * array (UBSan reports the call at every clean stop otherwise). */
	if (as->users != NULL)
		explicit_bzero(as->users, as->nusers * sizeof(*as->users));
	free(as->users);
	free(as->tokens);
	free(as->token_slots);
	while (as->principals != NULL)
		drop_principal(as, as->principals);
	explicit_bzero(as->secret, sizeof(as->secret));
}

const char *srv_auth_user(const struct srv *srv, const struct conn *c)
{
	const struct auths *as = srv_module_state(srv, &srv_auth_module);
	const struct conn_auth *ca = as != NULL ? conn_slot(c, as->slot) : NULL;
	return ca != NULL && ca->who != NULL ? ca->who->shown : NULL;
}

size_t srv_auth_tokens_allowed(const struct srv *srv, unsigned kind, uint32_t perm,
                               struct auth_token_record *out, size_t cap)
{
	struct auths *as = srv_module_state(srv, &srv_auth_module);
	size_t n = 0;
	for (size_t i = 0; as != NULL && i < as->ntokens; i++) {
		const struct token_ent *t = &as->tokens[i];
		const struct auth_role *r = resolve_role(as, t->role);
		if (t->rec.revoked || r == NULL)
			continue;
		const struct auth_role *roles[1] = {r};
		struct auth_subject s = {.roles = roles, .nroles = 1};
		if (!auth_allowed(&s, kind, perm, "", 0))
			continue;
		if (n < cap)
			out[n] = t->rec;
		n++;
	}
	return n;
}

static void auth_stats(void *state, Whizbang__V1__ServerStats *s)
{
	struct auths *as = state;
	s->auth_failures = as->failures;
	s->auth_throttled = as->throttled;
}

/* Reload: the TLS files again (srv_reload()), asked for over the wire. */
static bool reload(void *state, struct conn *c, Request *req)
{
	struct auths *as = state;
	char why[500];
	int64_t not_after = 0;
	srv_log(WB_LOG_INFO, "reload_requested", "conn=%llu peer=%s",
	        (unsigned long long)conn_id(c), conn_peer(c));
	if (srv_reload(as->srv, &not_after, why, sizeof(why)) != 0) {
		srv_error(c, req->id, WB_INTERNAL, "the TLS files did not load: %s", why);
		return false;
	}
	Whizbang__V1__ReloadResult r = WHIZBANG__V1__RELOAD_RESULT__INIT;
	r.tls = srv_config(as->srv)->tls_cert_file[0] != '\0';
	r.tls_not_after = not_after;
	SRV_REPLY(c, req->id, RELOAD, reload, &r);
	return false;
}

static const struct srv_handler auth_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_AUTHENTICATE, authenticate},
        {WHIZBANG__V1__REQUEST__BODY_PUT_USER, put_user},
        {WHIZBANG__V1__REQUEST__BODY_DELETE_USER, delete_user},
        {WHIZBANG__V1__REQUEST__BODY_LIST_USERS, list_users},
        {WHIZBANG__V1__REQUEST__BODY_PUT_ROLE, put_role},
        {WHIZBANG__V1__REQUEST__BODY_DELETE_ROLE, delete_role},
        {WHIZBANG__V1__REQUEST__BODY_LIST_ROLES, list_roles},
        {WHIZBANG__V1__REQUEST__BODY_CREATE_TOKEN, create_token},
        {WHIZBANG__V1__REQUEST__BODY_REVOKE_TOKEN, revoke_token},
        {WHIZBANG__V1__REQUEST__BODY_LIST_TOKENS, list_tokens},
        {WHIZBANG__V1__REQUEST__BODY_RELOAD, reload},
};

static const struct srv_record auth_records[] = {
        {SRV_REC_AUTH, AUTH_REC_VERSION, auth_replay},
};

const struct srv_module srv_auth_module = {
        .name = "auth",
        .size = sizeof(struct auths),
        .init = auth_init,
        .conn_closed = auth_conn_closed,
        .conn_figures = auth_conn_figures,
        .shutdown = auth_shutdown,
        .close = auth_close,
        .stats = auth_stats,
        .hello = auth_hello,
        .handlers = auth_handlers,
        .nhandlers = sizeof(auth_handlers) / sizeof(auth_handlers[0]),
        .records = auth_records,
        .nrecords = sizeof(auth_records) / sizeof(auth_records[0]),
};
