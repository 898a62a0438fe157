/* Certificates (wb_certs.h): keys, X.509 v3 certificates and their files,
 * through OpenSSL's API.
 *
 * Names from the command line never pass through OpenSSL's configuration
 * syntax: subjectAltNames are built as GENERAL_NAMEs, so a DNS name with a
 * comma in it cannot add a name of its own (and is refused before
 * anyway). Only the fixed extensions use configuration strings, which are
 * constants here. */
#include "wb_certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ossl.h"
#include "utf8.h"

struct wb_certs_pair {
	X509 *cert;
	EVP_PKEY *key;
};

enum kind {
	KIND_CA,
	KIND_NODE,
	KIND_CLIENT,
};

/* The common name of a node whose first name is too long for one. */
#define NODE_CN_FALLBACK "whizbang node"
#define DNS_NAME_MAX 253u
#define DNS_LABEL_MAX 63u

struct wb_certs_validity wb_certs_days(uint32_t days)
{
	return (struct wb_certs_validity){.not_before_s = -WB_CERTS_BACKDATE_S,
	                                  .not_after_s = (int64_t)days * 86400};
}

time_t wb_certs_not_after(const struct wb_certs_pair *p)
{
	return ossl_not_after(p->cert);
}

void wb_certs_free(struct wb_certs_pair *p)
{
	if (p == NULL)
		return;
	X509_free(p->cert);
	EVP_PKEY_free(p->key);
	free(p);
}

/* ---------------------------------------------------------------- checks */

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* 1 to WB_CERTS_CN_MAX bytes of UTF-8 without control characters. */
static bool cn_ok(const char *cn)
{
	size_t len = strlen(cn);
	if (len == 0 || len > WB_CERTS_CN_MAX || !utf8_valid(cn, len, NULL))
		return false;
	for (size_t k = 0; k < len; k++)
		if ((unsigned char)cn[k] < 0x20 || cn[k] == 0x7f)
			return false;
	return true;
}

static bool user_ok(const char *user)
{
	size_t len = strlen(user);
	if (len == 0 || len > WB_CERTS_CN_MAX || !is_alnum(user[0]))
		return false;
	for (size_t k = 0; k < len; k++)
		if (!is_alnum(user[k]) && strchr("._-@", user[k]) == NULL)
			return false;
	return true;
}

/* Letters, digits and inner hyphens in labels of 1 to 63 bytes, at most
 * 253 bytes in all. */
static bool dns_name_ok(const char *name)
{
	size_t len = strlen(name), label = 0;
	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	for (size_t k = 0; k <= len; k++) {
		char c = name[k];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > DNS_LABEL_MAX || name[k - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alnum(c) && (c != '-' || label == 0))
			return false;
		label++;
	}
	return true;
}

static bool ip_ok(const char *text)
{
	unsigned char addr[16];
	return inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1;
}

static int check_names(const struct wb_certs_names *names, char *errmsg, size_t errlen)
{
	size_t n = names->n_dns + names->n_ips;
	if (n == 0 || n > WB_CERTS_NAMES_MAX) {
		snprintf(errmsg, errlen, "a node certificate needs 1 to %u DNS names and addresses",
		         WB_CERTS_NAMES_MAX);
		return WB_E_INVAL;
	}
	for (size_t k = 0; k < names->n_dns; k++) {
		if (!dns_name_ok(names->dns[k])) {
			snprintf(errmsg, errlen,
			         "\"%.*s\" is not a DNS name (letters, digits and hyphens in "
			         "dot-separated labels; no wildcards)",
			         (int)DNS_NAME_MAX, names->dns[k]);
			return WB_E_INVAL;
		}
	}
	for (size_t k = 0; k < names->n_ips; k++) {
		if (!ip_ok(names->ips[k])) {
			snprintf(errmsg, errlen, "\"%.*s\" is not an IPv4 or IPv6 address",
			         (int)DNS_NAME_MAX, names->ips[k]);
			return WB_E_INVAL;
		}
	}
	return 0;
}

/* Checks v, and that a certificate valid as v says ends before ca does
 * (ca NULL: a CA of its own). */
static int check_validity(const struct wb_certs_validity *v, const struct wb_certs_pair *ca,
                          char *errmsg, size_t errlen)
{
	if (v->not_after_s <= v->not_before_s || v->not_before_s < -WB_CERTS_OFFSET_MAX ||
	    v->not_after_s > WB_CERTS_OFFSET_MAX) {
		snprintf(errmsg, errlen,
		         "a certificate's validity must end after it starts, within 100 years of "
		         "now");
		return WB_E_INVAL;
	}
	if (ca == NULL)
		return 0;
	time_t ca_end = wb_certs_not_after(ca);
	if ((int64_t)time(NULL) + v->not_after_s > (int64_t)ca_end) {
		struct tm tm;
		char day[32] = "?";
		if (gmtime_r(&ca_end, &tm) != NULL)
			strftime(day, sizeof(day), "%Y-%m-%d", &tm);
		snprintf(errmsg, errlen,
		         "the certificate would outlive its CA, which expires on %s: make it "
		         "valid for fewer days",
		         day);
		return WB_E_INVAL;
	}
	return 0;
}

/* ---------------------------------------------------------------- building */

/* A positive serial of 128 random bits. */
static int set_serial(X509 *x, char *errmsg, size_t errlen)
{
	unsigned char bytes[16];
	BIGNUM *bn = NULL;
	do {
		BN_free(bn);
		bn = NULL;
		if (RAND_bytes(bytes, (int)sizeof(bytes)) != 1)
			return ossl_fail(errmsg, errlen, WB_E_IO, "no random bytes for a serial");
		bn = BN_bin2bn(bytes, (int)sizeof(bytes), NULL);
		if (bn == NULL)
			return ossl_fail(errmsg, errlen, WB_E_NOMEM, "no memory for a serial");
	} while (BN_is_zero(bn));
	ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	if (serial == NULL)
		return ossl_fail(errmsg, errlen, WB_E_NOMEM, "no memory for a serial");
	return 0;
}

/* One extension from a constant configuration string. */
static int add_ext(X509 *x, X509V3_CTX *xc, int nid, const char *value, char *errmsg, size_t errlen)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, xc, nid, value);
	if (ext == NULL)
		return ossl_fail(errmsg, errlen, WB_E_INVAL, "cannot make the extension %s",
		                 OBJ_nid2sn(nid));
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (ok != 1)
		return ossl_fail(errmsg, errlen, WB_E_NOMEM, "no memory for the extension %s",
		                 OBJ_nid2sn(nid));
	return 0;
}

/* Appends a DNS name (GEN_DNS) or an address (GEN_IPADD) to gens; text
 * was checked. 0 or WB_E_NOMEM. */
static int push_name(GENERAL_NAMES *gens, int type, const char *text)
{
	ASN1_STRING *value;
	if (type == GEN_DNS) {
		value = ASN1_IA5STRING_new();
		if (value != NULL && ASN1_STRING_set(value, text, -1) != 1) {
			ASN1_IA5STRING_free(value);
			value = NULL;
		}
	} else {
		value = a2i_IPADDRESS(text);
	}
	if (value == NULL)
		return WB_E_NOMEM;
	GENERAL_NAME *g = GENERAL_NAME_new();
	if (g == NULL) {
		ASN1_STRING_free(value);
		return WB_E_NOMEM;
	}
	GENERAL_NAME_set0_value(g, type, value);
	if (sk_GENERAL_NAME_push(gens, g) <= 0) {
		GENERAL_NAME_free(g);
		return WB_E_NOMEM;
	}
	return 0;
}

static int add_alt_names(X509 *x, const struct wb_certs_names *names, char *errmsg, size_t errlen)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	if (gens == NULL)
		return ossl_fail(errmsg, errlen, WB_E_NOMEM, "no memory for the names");
	int rc = 0;
	for (size_t k = 0; rc == 0 && k < names->n_dns; k++)
		rc = push_name(gens, GEN_DNS, names->dns[k]);
	for (size_t k = 0; rc == 0 && k < names->n_ips; k++)
		rc = push_name(gens, GEN_IPADD, names->ips[k]);
	if (rc == 0 && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
		rc = WB_E_NOMEM;
	GENERAL_NAMES_free(gens);
	if (rc != 0)
		return ossl_fail(errmsg, errlen, rc, "no memory for the names");
	return 0;
}

/* The extensions of kind (wb_certs.h). issuer is the CA's certificate, or
 * x itself for the CA. */
static int add_extensions(X509 *x, X509 *issuer, enum kind kind, const struct wb_certs_names *names,
                          char *errmsg, size_t errlen)
{
	X509V3_CTX xc;
	X509V3_set_ctx(&xc, issuer, x, NULL, NULL, 0);
	int rc = add_ext(x, &xc, NID_subject_key_identifier, "hash", errmsg, errlen);
	if (rc != 0)
		return rc;
	if (kind == KIND_CA) {
		rc = add_ext(x, &xc, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", errmsg,
		             errlen);
		if (rc == 0)
			rc = add_ext(x, &xc, NID_key_usage, "critical,keyCertSign,cRLSign", errmsg,
			             errlen);
		return rc;
	}
	rc = add_ext(x, &xc, NID_authority_key_identifier, "keyid:always", errmsg, errlen);
	if (rc == 0)
		rc = add_ext(x, &xc, NID_basic_constraints, "critical,CA:FALSE", errmsg, errlen);
	if (rc == 0)
		rc = add_ext(x, &xc, NID_key_usage, "critical,digitalSignature", errmsg, errlen);
	if (rc == 0)
		rc = add_ext(x, &xc, NID_ext_key_usage,
		             kind == KIND_NODE ? "serverAuth" : "clientAuth", errmsg, errlen);
	if (rc == 0 && kind == KIND_NODE)
		rc = add_alt_names(x, names, errmsg, errlen);
	return rc;
}

/* Fills x, which holds key's public half: everything but the signature. */
static int fill(X509 *x, EVP_PKEY *key, const struct wb_certs_pair *ca, enum kind kind,
                const char *cn, const struct wb_certs_names *names,
                const struct wb_certs_validity *v, char *errmsg, size_t errlen)
{
	int rc = set_serial(x, errmsg, errlen);
	if (rc != 0)
		return rc;
	X509_NAME *subject = X509_get_subject_name(x);
	/* The offsets were checked to be within 100 years: they fit a long. */
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), (long)v->not_before_s) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), (long)v->not_after_s) == NULL ||
	    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
	                               -1, 0) != 1 ||
	    X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(ca->cert) : subject) != 1 ||
	    X509_set_pubkey(x, key) != 1)
		return ossl_fail(errmsg, errlen, WB_E_NOMEM, "cannot fill the certificate");
	return add_extensions(x, ca != NULL ? ca->cert : x, kind, names, errmsg, errlen);
}

/* Makes a key and a certificate of kind for it, signed by ca (NULL: by
 * the new key itself). Names and validity were checked. */
static int make(const struct wb_certs_pair *ca, enum kind kind, const char *cn,
                const struct wb_certs_names *names, const struct wb_certs_validity *v,
                struct wb_certs_pair **out, char *errmsg, size_t errlen)
{
	ERR_clear_error();
	struct wb_certs_pair *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		snprintf(errmsg, errlen, "no memory for a certificate");
		return WB_E_NOMEM;
	}
	int rc;
	p->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (p->key == NULL) {
		rc = ossl_fail(errmsg, errlen, WB_E_NOMEM, "cannot make a P-256 key");
		goto err_after_alloc;
	}
	p->cert = X509_new();
	if (p->cert == NULL) {
		rc = ossl_fail(errmsg, errlen, WB_E_NOMEM, "no memory for a certificate");
		goto err_after_key;
	}
	rc = fill(p->cert, p->key, ca, kind, cn, names, v, errmsg, errlen);
	if (rc != 0)
		goto err_after_cert;
	EVP_PKEY *signer = ca != NULL ? ca->key : p->key;
	int id = EVP_PKEY_get_id(signer);
	const EVP_MD *md = id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
	if (X509_sign(p->cert, signer, md) <= 0) {
		rc = ossl_fail(errmsg, errlen, WB_E_INVAL, "cannot sign the certificate");
		goto err_after_cert;
	}
	*out = p;
	return 0;

err_after_cert:
	X509_free(p->cert);
err_after_key:
	EVP_PKEY_free(p->key);
err_after_alloc:
	free(p);
	return rc;
}

int wb_certs_make_ca(const char *cn, const struct wb_certs_validity *v, struct wb_certs_pair **out,
                     char *errmsg, size_t errlen)
{
	if (!cn_ok(cn)) {
		snprintf(errmsg, errlen,
		         "a CA's name is 1 to %u bytes of UTF-8 without control characters",
		         WB_CERTS_CN_MAX);
		return WB_E_INVAL;
	}
	int rc = check_validity(v, NULL, errmsg, errlen);
	if (rc != 0)
		return rc;
	return make(NULL, KIND_CA, cn, NULL, v, out, errmsg, errlen);
}

int wb_certs_make_node(const struct wb_certs_pair *ca, const struct wb_certs_names *names,
                       const struct wb_certs_validity *v, struct wb_certs_pair **out, char *errmsg,
                       size_t errlen)
{
	int rc = check_names(names, errmsg, errlen);
	if (rc == 0)
		rc = check_validity(v, ca, errmsg, errlen);
	if (rc != 0)
		return rc;
	const char *first = names->n_dns > 0 ? names->dns[0] : names->ips[0];
	const char *cn = strlen(first) <= WB_CERTS_CN_MAX ? first : NODE_CN_FALLBACK;
	return make(ca, KIND_NODE, cn, names, v, out, errmsg, errlen);
}

int wb_certs_make_client(const struct wb_certs_pair *ca, const char *user,
                         const struct wb_certs_validity *v, struct wb_certs_pair **out,
                         char *errmsg, size_t errlen)
{
	if (!user_ok(user)) {
		snprintf(errmsg, errlen,
		         "a user name is 1 to %u letters, digits, '.', '_', '-' or '@', starting "
		         "with a letter or digit",
		         WB_CERTS_CN_MAX);
		return WB_E_INVAL;
	}
	int rc = check_validity(v, ca, errmsg, errlen);
	if (rc != 0)
		return rc;
	return make(ca, KIND_CLIENT, user, NULL, v, out, errmsg, errlen);
}

/* ---------------------------------------------------------------- files */

static int code_of_errno(int e)
{
	switch (e) {
	case EEXIST:
		return WB_E_KEYEXIST;
	case ENOENT:
	case ENOTDIR:
		return WB_E_NOTFOUND;
	case ENOSPC:
	case EDQUOT:
		return WB_E_NOSPC;
	case ENOMEM:
		return WB_E_NOMEM;
	default:
		return WB_E_IO;
	}
}

int wb_certs_load_ca(const char *cert_path, const char *key_path, struct wb_certs_pair **out,
                     char *errmsg, size_t errlen)
{
	ERR_clear_error();
	FILE *f = fopen(cert_path, "re");
	if (f == NULL) {
		int e = errno;
		snprintf(errmsg, errlen, "cannot open the CA certificate %s: %s", cert_path,
		         strerror(e));
		return e == ENOENT ? WB_E_NOTFOUND : WB_E_IO;
	}
	X509 *cert = PEM_read_X509(f, NULL, ossl_no_passphrase_cb, NULL);
	fclose(f);
	if (cert == NULL)
		return ossl_fail(errmsg, errlen, WB_E_INVAL, "cannot read the CA certificate %s",
		                 cert_path);
	int rc;
	if (X509_check_ca(cert) < 1) {
		snprintf(errmsg, errlen, "%s is not a CA certificate", cert_path);
		rc = WB_E_INVAL;
		goto err_after_cert;
	}
	EVP_PKEY *key;
	rc = ossl_read_key(key_path, &key, errmsg, errlen);
	if (rc != 0)
		goto err_after_cert;
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		snprintf(errmsg, errlen, "the private key %s does not match the certificate %s",
		         key_path, cert_path);
		rc = WB_E_INVAL;
		goto err_after_key;
	}
	struct wb_certs_pair *p = malloc(sizeof(*p));
	if (p == NULL) {
		snprintf(errmsg, errlen, "no memory for the CA");
		rc = WB_E_NOMEM;
		goto err_after_key;
	}
	p->cert = cert;
	p->key = key;
	*out = p;
	return 0;

err_after_key:
	EVP_PKEY_free(key);
err_after_cert:
	X509_free(cert);
	return rc;
}

/* Makes path a new file of mode 0600 and writes its descriptor into *fd.
 * With force, a regular file there is removed first; nothing else is. */
static int create_file(const char *path, bool force, int *fd, char *errmsg, size_t errlen)
{
	struct stat st;
	if (force && lstat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			snprintf(errmsg, errlen,
			         "%s exists and is not a regular file (a symbolic link?): not "
			         "replaced",
			         path);
			return WB_E_INVAL;
		}
		if (unlink(path) != 0 && errno != ENOENT) {
			int e = errno;
			snprintf(errmsg, errlen, "cannot replace %s: %s", path, strerror(e));
			return code_of_errno(e);
		}
	}
	/* O_EXCL never follows a link, and O_NOFOLLOW says so twice. */
	int f = open(path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f < 0) {
		int e = errno;
		if (e == EEXIST)
			snprintf(errmsg, errlen, "%s already exists", path);
		else
			snprintf(errmsg, errlen, "cannot create %s: %s", path, strerror(e));
		return code_of_errno(e);
	}
	/* The umask may have taken bits away; 0600 it is. */
	if (fchmod(f, 0600) != 0) {
		int e = errno;
		close(f);
		unlink(path);
		snprintf(errmsg, errlen, "cannot set the mode of %s: %s", path, strerror(e));
		return code_of_errno(e);
	}
	*fd = f;
	return 0;
}

/* Writes key (when not NULL) or cert as PEM to fd, which it closes in any
 * case, and syncs it. */
static int write_pem(int fd, const char *path, EVP_PKEY *key, X509 *cert, char *errmsg,
                     size_t errlen)
{
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		int e = errno;
		close(fd);
		snprintf(errmsg, errlen, "cannot write %s: %s", path, strerror(e));
		return code_of_errno(e);
	}
	ERR_clear_error();
	errno = 0;
	int ok = key != NULL ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
	                     : PEM_write_X509(f, cert);
	if (ok == 1 && fflush(f) == 0 && fsync(fileno(f)) == 0) {
		if (fclose(f) == 0)
			return 0;
		f = NULL;
	}
	int e = errno;
	if (f != NULL)
		fclose(f);
	if (e != 0) {
		ERR_clear_error();
		snprintf(errmsg, errlen, "cannot write %s: %s", path, strerror(e));
		return code_of_errno(e);
	}
	return ossl_fail(errmsg, errlen, WB_E_IO, "cannot write %s", path);
}

int wb_certs_save(const struct wb_certs_pair *p, const char *cert_path, const char *key_path,
                  bool force, char *errmsg, size_t errlen)
{
	int key_fd, cert_fd;
	int rc = create_file(key_path, force, &key_fd, errmsg, errlen);
	if (rc != 0)
		return rc;
	rc = create_file(cert_path, force, &cert_fd, errmsg, errlen);
	if (rc != 0) {
		close(key_fd);
		goto err_after_key_file;
	}
	rc = write_pem(key_fd, key_path, p->key, NULL, errmsg, errlen);
	if (rc == 0)
		rc = write_pem(cert_fd, cert_path, NULL, p->cert, errmsg, errlen);
	else
		close(cert_fd);
	if (rc != 0)
		goto err_after_cert_file;
	return 0;

err_after_cert_file:
	unlink(cert_path);
err_after_key_file:
	unlink(key_path);
	return rc;
}
