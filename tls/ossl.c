/* OpenSSL helpers shared by tls/ (ossl.h). */
#include "ossl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "wb_error.h"

const char *ossl_take_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	if (e == 0)
		return NULL;
	if (ERR_SYSTEM_ERROR(e))
		return strerror(ERR_GET_REASON(e));
	const char *r = ERR_reason_error_string(e);
	if (r != NULL)
		return r;
	ERR_error_string_n(e, buf, len);
	return buf;
}

int ossl_fail(char *errmsg, size_t errlen, int code, const char *fmt, ...)
{
	char rbuf[128];
	const char *reason = ossl_take_reason(rbuf, sizeof(rbuf));
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(errmsg, errlen, fmt, ap);
	va_end(ap);
	if (reason != NULL && w >= 0 && (size_t)w < errlen)
		snprintf(errmsg + w, errlen - (size_t)w, ": %s", reason);
	return code;
}

int ossl_no_passphrase_cb(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	if (arg != NULL)
		*(bool *)arg = true;
	return -1;
}

int ossl_read_key(const char *path, EVP_PKEY **out, char *errmsg, size_t errlen)
{
	ERR_clear_error();
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		int e = errno;
		snprintf(errmsg, errlen, "cannot open the private key %s: %s", path, strerror(e));
		return e == ENOENT ? WB_E_NOTFOUND : WB_E_IO;
	}
	bool asked = false;
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, ossl_no_passphrase_cb, &asked);
	fclose(f);
	if (key == NULL && asked) {
		ERR_clear_error();
		snprintf(errmsg, errlen,
		         "the private key %s is encrypted: give an unencrypted key, readable only "
		         "by the user that uses it",
		         path);
		return WB_E_INVAL;
	}
	if (key == NULL)
		return ossl_fail(errmsg, errlen, WB_E_INVAL, "cannot read the private key %s",
		                 path);
	*out = key;
	return 0;
}

time_t ossl_not_after(const X509 *cert)
{
	struct tm tm;
	if (cert == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
		return 0;
	return timegm(&tm);
}
