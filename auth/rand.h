/* Randomness for the authentication module (auth/).
 *
 * Nothing in auth/ draws random bytes by itself: every function that needs
 * them (salts, nonces, token ids and secrets) takes an auth_random_fn and its
 * argument. The server and the client pass auth_rand_bytes(), backed by
 * OpenSSL's RAND_bytes(); tests pass a scripted source so that nonces and
 * salts, and with them every message of an exchange, are fixed. */
#ifndef WB_AUTH_RAND_H
#define WB_AUTH_RAND_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf[0..n) with unpredictable bytes. Returns 0, or a wb_error code
 * which the calling auth_ function returns as it is (the bytes in buf are
 * then not used). Called on the caller's thread, synchronously. */
typedef int (*auth_random_fn)(void *arg, uint8_t *buf, size_t n);

/* The production source: OpenSSL's RAND_bytes() (the process-wide DRBG,
 * seeded by the kernel). arg is ignored and may be NULL. Returns 0, or
 * WB_INTERNAL when OpenSSL cannot produce the bytes (its DRBG failed to
 * seed) or n is above INT_MAX. Safe to call from any thread. */
int auth_rand_bytes(void *arg, uint8_t *buf, size_t n);

#endif
