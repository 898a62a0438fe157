/* Certificates for Whizbang's TLS (wb_tls.h), made with OpenSSL: a private
 * CA, node certificates that servers present, and client certificates
 * that name a user.
 *
 * Every key is a new EC P-256 key (quick to make, accepted by every TLS
 * stack our clients use, at OpenSSL's security level 2). Every certificate
 * is X.509 v3 with a random positive 128-bit serial, signed with SHA-256
 * (by a P-256 or RSA CA key; an Ed25519 CA key signs without a digest),
 * carries a subject key identifier and, below the CA, an authority key
 * identifier, so that it passes OpenSSL's strict verification:
 * - the CA: self-signed, subject CN as given, basicConstraints critical
 *   CA:TRUE with pathlen 0 (it signs end certificates only), keyUsage
 *   critical keyCertSign and cRLSign;
 * - a node: CN the first DNS name (or address), subjectAltNames the DNS
 *   names and IP addresses given, basicConstraints critical CA:FALSE,
 *   keyUsage critical digitalSignature, extendedKeyUsage serverAuth;
 * - a client: CN the user name, no subjectAltName, the same constraints
 *   and extendedKeyUsage clientAuth. wb_tls_session_peer_cn() reads the
 *   user back on the server.
 *
 * Files are PEM, written with mode 0600 into new files only
 * (wb_certs_save()). Nothing here keeps global state; every function may
 * run on any thread. */
#ifndef WB_CERTS_H
#define WB_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "wb_error.h"

/* The longest common name of a CA (X.509's upper bound) and the longest
 * user name, in bytes. */
#define WB_CERTS_CN_MAX 64u
/* The most DNS names plus IP addresses one node certificate carries. */
#define WB_CERTS_NAMES_MAX 64u
/* How far before now wb_certs_days() starts a certificate's validity, so
 * that a peer whose clock is a little behind accepts it at once. */
#define WB_CERTS_BACKDATE_S 300
/* The furthest either end of a validity may be from now: 100 years. */
#define WB_CERTS_OFFSET_MAX ((int64_t)100 * 366 * 86400)

/* When a certificate is valid, as offsets in seconds from the moment it
 * is made: notBefore = now + not_before_s, notAfter = now + not_after_s.
 * not_after_s must be above not_before_s, and both within
 * WB_CERTS_OFFSET_MAX of 0 (negative offsets make a certificate that has
 * already expired, for tests of expiry). */
struct wb_certs_validity {
	int64_t not_before_s;
	int64_t not_after_s;
};

/* The validity of days days from now, backdated WB_CERTS_BACKDATE_S. */
struct wb_certs_validity wb_certs_days(uint32_t days);

/* A certificate and its private key, in memory. */
struct wb_certs_pair;

/* The names a node certificate carries: DNS names (letters, digits and
 * hyphens in dot-separated labels of 1 to 63 bytes, at most 253 bytes in
 * all; no wildcards) and IPv4 or IPv6 addresses in text form. At least one
 * name, at most WB_CERTS_NAMES_MAX. The arrays are read during the call
 * only. */
struct wb_certs_names {
	const char *const *dns;
	size_t n_dns;
	const char *const *ips;
	size_t n_ips;
};

/* Makes a new CA: a key and its self-signed certificate whose subject CN
 * is cn (1 to WB_CERTS_CN_MAX bytes of UTF-8, no control characters),
 * valid as v says. Returns 0 and writes *out, owned by the caller
 * (wb_certs_free()); WB_E_INVAL (a bad name or validity) or WB_E_NOMEM
 * with a sentence in errmsg[0..errlen), *out untouched. */
int wb_certs_make_ca(const char *cn, const struct wb_certs_validity *v, struct wb_certs_pair **out,
                     char *errmsg, size_t errlen);

/* Makes a node (server) certificate with a new key, signed by ca, carrying
 * names. Refuses (WB_E_INVAL) a bad name, a bad validity, and a notAfter
 * past ca's own (the certificate would outlive its CA). Otherwise as
 * wb_certs_make_ca(). Keeps no reference to ca or names. */
int wb_certs_make_node(const struct wb_certs_pair *ca, const struct wb_certs_names *names,
                       const struct wb_certs_validity *v, struct wb_certs_pair **out, char *errmsg,
                       size_t errlen);

/* Makes a client certificate for user with a new key, signed by ca. user
 * is 1 to WB_CERTS_CN_MAX bytes of letters, digits, '.', '_', '-' and '@',
 * starting with a letter or digit (so that it can name a file too).
 * Otherwise as wb_certs_make_node(). */
int wb_certs_make_client(const struct wb_certs_pair *ca, const char *user,
                         const struct wb_certs_validity *v, struct wb_certs_pair **out,
                         char *errmsg, size_t errlen);

/* Loads a CA to sign with: the PEM certificate at cert_path and its
 * unencrypted PEM private key at key_path. Refuses (WB_E_INVAL) a
 * certificate that is not a CA's, a key that does not match it and an
 * encrypted key; WB_E_NOTFOUND when a file does not exist; WB_E_IO when it
 * cannot be read otherwise. Otherwise as wb_certs_make_ca(). */
int wb_certs_load_ca(const char *cert_path, const char *key_path, struct wb_certs_pair **out,
                     char *errmsg, size_t errlen);

/* Writes p's certificate to cert_path and its key to key_path, PEM, each a
 * new file of mode 0600 (made with O_CREAT | O_EXCL | O_NOFOLLOW, so a
 * link there is never followed), synced to disk. A path that exists is
 * refused (WB_E_KEYEXIST) unless force is true, and even then only a
 * regular file is replaced (anything else, a symbolic link included:
 * WB_E_INVAL). Both files or neither: when the second cannot be written,
 * the first is removed again (files replaced by force are gone all the
 * same). Returns 0; else WB_E_KEYEXIST, WB_E_INVAL, WB_E_NOTFOUND (no such
 * directory), WB_E_NOSPC or WB_E_IO with the path and the reason in
 * errmsg[0..errlen). */
int wb_certs_save(const struct wb_certs_pair *p, const char *cert_path, const char *key_path,
                  bool force, char *errmsg, size_t errlen);

/* The notAfter time of p's certificate, in seconds since the epoch. */
time_t wb_certs_not_after(const struct wb_certs_pair *p);

/* Frees p, clearing its key. NULL is ignored. */
void wb_certs_free(struct wb_certs_pair *p);

#endif
