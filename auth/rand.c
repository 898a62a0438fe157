#include "rand.h"

#include <limits.h>

#include <openssl/rand.h>

#include "wb_error.h"

int auth_rand_bytes(void *arg, uint8_t *buf, size_t n)
{
	(void)arg;
	if (n > INT_MAX)
		return WB_INTERNAL;
	if (n == 0)
		return 0;
	if (RAND_bytes(buf, (int)n) != 1)
		return WB_INTERNAL;
	return 0;
}
