/* Tests of certificate creation (tls/wb_certs.h).
 *
 * Certificates are checked the way a peer checks them: read back from the
 * files written, and verified by OpenSSL's X509_verify_cert() against the
 * CA file with the purpose of their role (a server's or a client's) and
 * strict checking, as wb_tls verifies them. Every refusal has its control
 * next to it: the same call, with only the one thing changed, succeeds. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fixture.h"
#include "wb_certs.h"

static struct fixture fx;

static void setup(void)
{
	fixture_setup(&fx, "certs");
}

static void teardown(void)
{
	fixture_teardown(&fx);
}

TestSuite(certs, .init = setup, .fini = teardown);

static const char *const node_dns[] = {"node1.example", "localhost"};
static const char *const node_ips[] = {"127.0.0.1", "::1"};
static const struct wb_certs_names node_names = {node_dns, 2, node_ips, 2};

static char errmsg[512];

static struct wb_certs_pair *make_ca(const char *cn)
{
	struct wb_certs_pair *ca = NULL;
	struct wb_certs_validity v = wb_certs_days(365);
	int rc = wb_certs_make_ca(cn, &v, &ca, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "make_ca: %s", errmsg);
	return ca;
}

static struct wb_certs_pair *make_node(const struct wb_certs_pair *ca,
                                       const struct wb_certs_validity *v)
{
	struct wb_certs_pair *node = NULL;
	int rc = wb_certs_make_node(ca, &node_names, v, &node, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "make_node: %s", errmsg);
	return node;
}

static struct wb_certs_pair *make_client(const struct wb_certs_pair *ca, const char *user)
{
	struct wb_certs_pair *c = NULL;
	struct wb_certs_validity v = wb_certs_days(30);
	int rc = wb_certs_make_client(ca, user, &v, &c, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "make_client: %s", errmsg);
	return c;
}

/* Saves p as <name>.crt and <name>.key in the test's directory. */
static void save(const struct wb_certs_pair *p, const char *name)
{
	char crt[256], key[256], n[64];
	snprintf(n, sizeof(n), "%s.crt", name);
	fixture_path(&fx, n, crt, sizeof(crt));
	snprintf(n, sizeof(n), "%s.key", name);
	fixture_path(&fx, n, key, sizeof(key));
	int rc = wb_certs_save(p, crt, key, false, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "save %s: %s", name, errmsg);
}

static char *path(const char *name)
{
	static char bufs[4][256];
	static unsigned next;
	return fixture_path(&fx, name, bufs[next++ % 4], sizeof(bufs[0]));
}

static X509 *read_cert(const char *name)
{
	FILE *f = fopen(path(name), "r");
	cr_assert_not_null(f, "%s: %s", name, strerror(errno));
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(x, "%s does not parse", name);
	return x;
}

/* X509_verify_cert() of the certificate file cert against the CA file ca
 * for purpose (X509_PURPOSE_SSL_SERVER or _CLIENT), strict: 0 when it
 * verifies, else the verification error. */
static int verify(const char *ca, const char *cert, int purpose)
{
	X509_STORE *store = X509_STORE_new();
	cr_assert_not_null(store);
	cr_assert_eq(X509_STORE_load_file(store, path(ca)), 1);
	X509 *x = read_cert(cert);
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	cr_assert_not_null(ctx);
	cr_assert_eq(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
	X509_STORE_CTX_set_purpose(ctx, purpose);
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
	int ok = X509_verify_cert(ctx);
	int err = ok == 1 ? 0 : X509_STORE_CTX_get_error(ctx);
	if (err == 0)
		cr_assert_eq(ok, 1);
	X509_STORE_CTX_free(ctx);
	X509_free(x);
	X509_STORE_free(store);
	return err;
}

/* The whole file, NUL-terminated; free it. */
static char *slurp(const char *name)
{
	FILE *f = fopen(path(name), "r");
	cr_assert_not_null(f, "%s: %s", name, strerror(errno));
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strdup(buf);
}

Test(certs, node_and_client_verify_against_their_ca)
{
	struct wb_certs_pair *ca = make_ca("Test CA");
	struct wb_certs_validity v = wb_certs_days(30);
	struct wb_certs_pair *node = make_node(ca, &v);
	struct wb_certs_pair *client = make_client(ca, "alice");
	save(ca, "ca");
	save(node, "node");
	save(client, "client-alice");

	cr_assert_eq(verify("ca.crt", "node.crt", X509_PURPOSE_SSL_SERVER), 0);
	cr_assert_eq(verify("ca.crt", "client-alice.crt", X509_PURPOSE_SSL_CLIENT), 0);
	/* Each is good for its own role only (extendedKeyUsage). */
	cr_assert_eq(verify("ca.crt", "node.crt", X509_PURPOSE_SSL_CLIENT),
	             X509_V_ERR_INVALID_PURPOSE);
	cr_assert_eq(verify("ca.crt", "client-alice.crt", X509_PURPOSE_SSL_SERVER),
	             X509_V_ERR_INVALID_PURPOSE);

	/* The CA: a CA, self-signed, critical basicConstraints, its key usage. */
	X509 *cax = read_cert("ca.crt");
	cr_assert_eq(X509_check_ca(cax), 1);
	cr_assert(X509_get_extension_flags(cax) & EXFLAG_SS);
	int crit = -1;
	BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cax, NID_basic_constraints, &crit, NULL);
	cr_assert_not_null(bc);
	cr_assert(bc->ca);
	cr_assert_eq(crit, 1);
	BASIC_CONSTRAINTS_free(bc);
	cr_assert_eq(X509_get_key_usage(cax), (uint32_t)(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
	char cn[128];
	X509_NAME_get_text_by_NID(X509_get_subject_name(cax), NID_commonName, cn, sizeof(cn));
	cr_assert_str_eq(cn, "Test CA");

	/* The node: every name given, and no other. */
	X509 *nodex = read_cert("node.crt");
	cr_assert_eq(X509_check_host(nodex, "node1.example", 0, 0, NULL), 1);
	cr_assert_eq(X509_check_host(nodex, "localhost", 0, 0, NULL), 1);
	cr_assert_eq(X509_check_ip_asc(nodex, "127.0.0.1", 0), 1);
	cr_assert_eq(X509_check_ip_asc(nodex, "::1", 0), 1);
	cr_assert_eq(X509_check_host(nodex, "node2.example", 0, 0, NULL), 0);
	cr_assert_eq(X509_check_ip_asc(nodex, "127.0.0.2", 0), 0);
	cr_assert_eq(X509_get_extended_key_usage(nodex), (uint32_t)XKU_SSL_SERVER);
	X509_NAME_get_text_by_NID(X509_get_subject_name(nodex), NID_commonName, cn, sizeof(cn));
	cr_assert_str_eq(cn, "node1.example");
	cr_assert_eq(X509_check_ca(nodex), 0);

	/* The client: the user as CN. */
	X509 *clientx = read_cert("client-alice.crt");
	X509_NAME_get_text_by_NID(X509_get_subject_name(clientx), NID_commonName, cn, sizeof(cn));
	cr_assert_str_eq(cn, "alice");
	cr_assert_eq(X509_get_extended_key_usage(clientx), (uint32_t)XKU_SSL_CLIENT);

	/* Keys are P-256; serials positive, at most 128 bits, and differ. */
	EVP_PKEY *pub = X509_get0_pubkey(nodex);
	char group[32];
	cr_assert_eq(EVP_PKEY_get_utf8_string_param(pub, "group", group, sizeof(group), NULL), 1);
	cr_assert_str_eq(group, "prime256v1");
	BIGNUM *s1 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(nodex), NULL);
	BIGNUM *s2 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(clientx), NULL);
	cr_assert(!BN_is_negative(s1) && !BN_is_zero(s1));
	cr_assert_leq(BN_num_bits(s1), 128);
	cr_assert_gt(BN_num_bits(s1), 64, "a 128-bit random serial has its high bits");
	cr_assert_neq(BN_cmp(s1, s2), 0);
	BN_free(s1);
	BN_free(s2);

	/* Valid from a few minutes ago (backdated) for 30 days. */
	time_t now = time(NULL);
	cr_assert_lt(llabs((long long)(wb_certs_not_after(node) - (now + 30 * 86400))), 60);
	cr_assert_lt(X509_cmp_time(X509_get0_notBefore(nodex), &now), 0);

	X509_free(cax);
	X509_free(nodex);
	X509_free(clientx);
	wb_certs_free(ca);
	wb_certs_free(node);
	wb_certs_free(client);
}

Test(certs, files_are_0600_whatever_the_umask)
{
	struct wb_certs_pair *ca = make_ca("Test CA");
	mode_t old = umask(0);
	save(ca, "ca");
	umask(old);
	const char *names[] = {"ca.crt", "ca.key"};
	for (size_t k = 0; k < 2; k++) {
		struct stat st;
		cr_assert_eq(stat(path(names[k]), &st), 0);
		cr_assert(S_ISREG(st.st_mode));
		cr_assert_eq(st.st_mode & 07777, 0600, "%s: mode %o", names[k],
		             (unsigned)(st.st_mode & 07777));
	}
	char *key = slurp("ca.key");
	cr_assert_not_null(strstr(key, "-----BEGIN PRIVATE KEY-----"), "unencrypted PKCS#8");
	free(key);
	wb_certs_free(ca);
}

Test(certs, refuses_to_overwrite_unless_forced)
{
	struct wb_certs_pair *a = make_ca("A");
	struct wb_certs_pair *b = make_ca("B");
	save(a, "ca");
	char *key_a = slurp("ca.key"), *crt_a = slurp("ca.crt");

	int rc = wb_certs_save(b, path("ca.crt"), path("ca.key"), false, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_KEYEXIST);
	cr_assert_not_null(strstr(errmsg, "already exists"), "%s", errmsg);
	char *key = slurp("ca.key"), *crt = slurp("ca.crt");
	cr_assert_str_eq(key, key_a);
	cr_assert_str_eq(crt, crt_a);
	free(key);
	free(crt);

	/* Both or neither: with only the key in the way, no certificate is
	 * written either. */
	cr_assert_eq(unlink(path("ca.crt")), 0);
	rc = wb_certs_save(b, path("ca.crt"), path("ca.key"), false, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_KEYEXIST);
	cr_assert_eq(access(path("ca.crt"), F_OK), -1);
	/* And with only the certificate in the way, the new key is removed. */
	cr_assert_eq(rename(path("ca.key"), path("ca.crt")), 0);
	rc = wb_certs_save(b, path("ca.crt"), path("ca.key"), false, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_KEYEXIST);
	cr_assert_eq(access(path("ca.key"), F_OK), -1);

	/* Control: force replaces them with b's. */
	save(a, "other");
	rc = wb_certs_save(b, path("other.crt"), path("other.key"), true, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "%s", errmsg);
	key = slurp("other.key");
	cr_assert_str_neq(key, key_a);
	free(key);
	X509 *x = read_cert("other.crt");
	char cn[16];
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	cr_assert_str_eq(cn, "B");
	X509_free(x);

	free(key_a);
	free(crt_a);
	wb_certs_free(a);
	wb_certs_free(b);
}

Test(certs, never_follows_or_replaces_a_symlink)
{
	struct wb_certs_pair *ca = make_ca("Test CA");
	FILE *f = fopen(path("victim"), "w");
	cr_assert_not_null(f);
	fputs("untouched\n", f);
	fclose(f);
	cr_assert_eq(symlink(path("victim"), path("ca.key")), 0);
	/* A dangling link, whose target must not be created either. */
	cr_assert_eq(symlink(path("nowhere"), path("ca.crt")), 0);

	int rc = wb_certs_save(ca, path("ca.crt"), path("ca.key"), false, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_KEYEXIST, "%s", errmsg);
	rc = wb_certs_save(ca, path("ca.crt"), path("ca.key"), true, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_INVAL, "%s", errmsg);
	cr_assert_not_null(strstr(errmsg, "not a regular file"), "%s", errmsg);

	char *victim = slurp("victim");
	cr_assert_str_eq(victim, "untouched\n");
	free(victim);
	cr_assert_eq(access(path("nowhere"), F_OK), -1);
	struct stat st;
	cr_assert_eq(lstat(path("ca.key"), &st), 0);
	cr_assert(S_ISLNK(st.st_mode), "the link is still a link");

	/* Control: with the links gone, the same save succeeds. */
	cr_assert_eq(unlink(path("ca.key")), 0);
	cr_assert_eq(unlink(path("ca.crt")), 0);
	rc = wb_certs_save(ca, path("ca.crt"), path("ca.key"), false, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "%s", errmsg);
	wb_certs_free(ca);
}

Test(certs, a_node_of_another_ca_does_not_verify)
{
	struct wb_certs_pair *ca1 = make_ca("CA one");
	struct wb_certs_pair *ca2 = make_ca("CA two");
	struct wb_certs_validity v = wb_certs_days(30);
	struct wb_certs_pair *node2 = make_node(ca2, &v);
	save(ca1, "ca1");
	save(ca2, "ca2");
	save(node2, "node2");
	cr_assert_eq(verify("ca1.crt", "node2.crt", X509_PURPOSE_SSL_SERVER),
	             X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	/* Control: its own CA verifies it. */
	cr_assert_eq(verify("ca2.crt", "node2.crt", X509_PURPOSE_SSL_SERVER), 0);
	wb_certs_free(ca1);
	wb_certs_free(ca2);
	wb_certs_free(node2);
}

Test(certs, an_expired_certificate_does_not_verify)
{
	struct wb_certs_pair *ca = make_ca("Test CA");
	struct wb_certs_validity past = {.not_before_s = -2 * 86400, .not_after_s = -86400};
	struct wb_certs_pair *old = make_node(ca, &past);
	struct wb_certs_validity v = wb_certs_days(1);
	struct wb_certs_pair *fresh = make_node(ca, &v);
	save(ca, "ca");
	save(old, "old");
	save(fresh, "fresh");
	cr_assert_eq(verify("ca.crt", "old.crt", X509_PURPOSE_SSL_SERVER),
	             X509_V_ERR_CERT_HAS_EXPIRED);
	cr_assert_eq(verify("ca.crt", "fresh.crt", X509_PURPOSE_SSL_SERVER), 0);
	wb_certs_free(ca);
	wb_certs_free(old);
	wb_certs_free(fresh);
}

Test(certs, a_loaded_ca_signs_what_verifies)
{
	struct wb_certs_pair *made = make_ca("Test CA");
	save(made, "ca");
	struct wb_certs_pair *ca = NULL;
	int rc = wb_certs_load_ca(path("ca.crt"), path("ca.key"), &ca, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "%s", errmsg);
	cr_assert_eq(wb_certs_not_after(ca), wb_certs_not_after(made));
	struct wb_certs_pair *client = make_client(ca, "bob");
	save(client, "client-bob");
	cr_assert_eq(verify("ca.crt", "client-bob.crt", X509_PURPOSE_SSL_CLIENT), 0);

	/* A key that is not the certificate's. */
	struct wb_certs_pair *other = make_ca("Other");
	save(other, "other");
	struct wb_certs_pair *bad = NULL;
	rc = wb_certs_load_ca(path("ca.crt"), path("other.key"), &bad, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "does not match"), "%s", errmsg);
	cr_assert_null(bad);
	/* A certificate that is not a CA's. */
	rc = wb_certs_load_ca(path("client-bob.crt"), path("client-bob.key"), &bad, errmsg,
	                      sizeof(errmsg));
	cr_assert_eq(rc, WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "not a CA"), "%s", errmsg);
	/* Files that are not there. */
	rc = wb_certs_load_ca(path("none.crt"), path("ca.key"), &bad, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_NOTFOUND);
	rc = wb_certs_load_ca(path("ca.crt"), path("none.key"), &bad, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, WB_E_NOTFOUND);
	cr_assert_not_null(strstr(errmsg, "none.key"), "%s", errmsg);
	cr_assert_null(bad);

	wb_certs_free(made);
	wb_certs_free(ca);
	wb_certs_free(client);
	wb_certs_free(other);
}

Test(certs, bad_names_and_validities_are_refused)
{
	struct wb_certs_pair *ca = make_ca("Test CA");
	struct wb_certs_validity v = wb_certs_days(30);
	struct wb_certs_pair *out = NULL;
	static const char *const bad_dns[] = {
	        "a,IP:1.2.3.4", "*.example", "-a.example", "a-.example",       "a..example",
	        ".example",     "",          "a b",        "\xc3\xa9.example",
	};
	for (size_t k = 0; k < sizeof(bad_dns) / sizeof(bad_dns[0]); k++) {
		struct wb_certs_names n = {&bad_dns[k], 1, NULL, 0};
		cr_assert_eq(wb_certs_make_node(ca, &n, &v, &out, errmsg, sizeof(errmsg)),
		             WB_E_INVAL, "%s", bad_dns[k]);
	}
	static const char *const bad_ips[] = {"1.2.3", "1.2.3.4.5", "::g", "localhost", ""};
	for (size_t k = 0; k < sizeof(bad_ips) / sizeof(bad_ips[0]); k++) {
		struct wb_certs_names n = {NULL, 0, &bad_ips[k], 1};
		cr_assert_eq(wb_certs_make_node(ca, &n, &v, &out, errmsg, sizeof(errmsg)),
		             WB_E_INVAL, "%s", bad_ips[k]);
	}
	struct wb_certs_names none = {NULL, 0, NULL, 0};
	cr_assert_eq(wb_certs_make_node(ca, &none, &v, &out, errmsg, sizeof(errmsg)), WB_E_INVAL);
	static const char *const bad_users[] = {"", "../x", "a/b", ".x", "-x", "a b", "a\n"};
	for (size_t k = 0; k < sizeof(bad_users) / sizeof(bad_users[0]); k++)
		cr_assert_eq(
		        wb_certs_make_client(ca, bad_users[k], &v, &out, errmsg, sizeof(errmsg)),
		        WB_E_INVAL, "\"%s\"", bad_users[k]);
	cr_assert_eq(wb_certs_make_ca("bad\x01", &v, &out, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_eq(wb_certs_make_ca("\xff", &v, &out, errmsg, sizeof(errmsg)), WB_E_INVAL);
	struct wb_certs_validity backwards = {.not_before_s = 10, .not_after_s = 5};
	cr_assert_eq(wb_certs_make_ca("X", &backwards, &out, errmsg, sizeof(errmsg)), WB_E_INVAL);
	/* Longer than the CA (365 days). */
	struct wb_certs_validity longer = wb_certs_days(366);
	cr_assert_eq(wb_certs_make_client(ca, "alice", &longer, &out, errmsg, sizeof(errmsg)),
	             WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "outlive its CA"), "%s", errmsg);
	cr_assert_null(out);

	/* Controls: names of the same shapes that are right. */
	static const char *const good_dns[] = {"a.example", "a-b.example", "x1", "localhost"};
	static const char *const good_ips[] = {"10.0.0.1", "fe80::1"};
	struct wb_certs_names good = {good_dns, 4, good_ips, 2};
	cr_assert_eq(wb_certs_make_node(ca, &good, &v, &out, errmsg, sizeof(errmsg)), 0, "%s",
	             errmsg);
	wb_certs_free(out);
	out = NULL;
	cr_assert_eq(wb_certs_make_client(ca, "a.b_c-d@example", &v, &out, errmsg, sizeof(errmsg)),
	             0, "%s", errmsg);
	wb_certs_free(out);
	out = NULL;
	cr_assert_eq(wb_certs_make_ca("Caf\xc3\xa9 CA", &v, &out, errmsg, sizeof(errmsg)), 0, "%s",
	             errmsg);
	wb_certs_free(out);
	wb_certs_free(ca);
}
