/* What wb_tls.c and wb_certs.c share of OpenSSL, private to tls/: its
 * error queue turned into a sentence, the one way a private key is read,
 * and a certificate's expiry. */
#ifndef WB_TLS_OSSL_H
#define WB_TLS_OSSL_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* The reason of the earliest error on OpenSSL's queue, which is then
 * emptied; NULL when the queue was empty. buf[0..len) holds the text when
 * OpenSSL has no static one. */
const char *ossl_take_reason(char *buf, size_t len);

/* Writes fmt and, when OpenSSL queued an error, ": <its reason>" into
 * errmsg[0..errlen); returns code. */
__attribute__((format(printf, 4, 5))) int ossl_fail(char *errmsg, size_t errlen, int code,
                                                    const char *fmt, ...);

/* A passphrase callback that refuses: keys are never encrypted here, since
 * nobody is there to type a passphrase, and OpenSSL's default would prompt
 * on the terminal. When arg is not NULL it is a bool set to true. */
int ossl_no_passphrase_cb(char *buf, int size, int rwflag, void *arg);

/* Reads the unencrypted PEM private key at path. Returns 0 and writes
 * *out, owned by the caller (EVP_PKEY_free()); WB_E_NOTFOUND when there is
 * no such file, WB_E_INVAL for an encrypted key or one that does not
 * parse, WB_E_IO when it cannot be read otherwise, with a sentence naming
 * the path in errmsg. */
int ossl_read_key(const char *path, EVP_PKEY **out, char *errmsg, size_t errlen);

/* The notAfter time of cert in seconds since the epoch; 0 for NULL or a
 * time that does not convert. */
time_t ossl_not_after(const X509 *cert);

#endif
