/* Building and reading the bodies of log records (storage/wal.h).
 *
 * A record body is a deterministic command: everything the server chose when
 * it took the request (times, generated ids, settings that decide outcomes) is
 * written into it, so applying it again gives the same state. Bodies are flat
 * big-endian fields; a string or byte field is a u32 length and the bytes.
 *
 * The builder grows its buffer as it goes and remembers a failure (no memory)
 * instead of returning one from every call: check rec_out() at the end. The
 * reader never reads past the end: a short or inconsistent body sets bad, and
 * every later read returns zeros, so a decoder checks rec_ok() once. */
#ifndef WB_RECORD_H
#define WB_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "wb_error.h"

struct rec_builder {
	uint8_t *p;
	size_t len, cap;
	bool failed;
};

static inline uint8_t *rec_room(struct rec_builder *b, size_t n)
{
	if (b->failed)
		return NULL;
	if (b->cap - b->len < n) {
		size_t cap = b->cap > 0 ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = true;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	uint8_t *at = b->p + b->len;
	b->len += n;
	return at;
}

static inline void rec_u8(struct rec_builder *b, uint8_t v)
{
	uint8_t *p = rec_room(b, 1);
	if (p != NULL)
		*p = v;
}

static inline void rec_u32(struct rec_builder *b, uint32_t v)
{
	uint8_t *p = rec_room(b, 4);
	if (p != NULL)
		put_u32(p, v);
}

static inline void rec_u64(struct rec_builder *b, uint64_t v)
{
	uint8_t *p = rec_room(b, 8);
	if (p != NULL)
		put_u64(p, v);
}

/* A fixed number of bytes, without a length. */
static inline void rec_raw(struct rec_builder *b, const void *v, size_t n)
{
	uint8_t *p = rec_room(b, n);
	if (p != NULL && n > 0)
		memcpy(p, v, n);
}

static inline void rec_bytes(struct rec_builder *b, const void *v, size_t n)
{
	if (n > UINT32_MAX) {
		b->failed = true;
		return;
	}
	rec_u32(b, (uint32_t)n);
	rec_raw(b, v, n);
}

/* Hands the body over: 0 and *out (the caller frees it), or WB_E_NOMEM
 * (the buffer is freed). */
static inline int rec_out(struct rec_builder *b, uint8_t **out, size_t *len)
{
	if (b->failed) {
		free(b->p);
		*b = (struct rec_builder){0};
		return WB_E_NOMEM;
	}
	*out = b->p;
	*len = b->len;
	*b = (struct rec_builder){0};
	return 0;
}

struct rec_reader {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static inline struct rec_reader rec_reader(const uint8_t *p, size_t len)
{
	return (struct rec_reader){.p = p, .len = len};
}

static inline const uint8_t *rec_take(struct rec_reader *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *at = r->p + r->off;
	r->off += n;
	return at;
}

static inline uint8_t rec_get_u8(struct rec_reader *r)
{
	const uint8_t *p = rec_take(r, 1);
	return p != NULL ? *p : 0;
}

static inline uint32_t rec_get_u32(struct rec_reader *r)
{
	const uint8_t *p = rec_take(r, 4);
	return p != NULL ? get_u32(p) : 0;
}

static inline uint64_t rec_get_u64(struct rec_reader *r)
{
	const uint8_t *p = rec_take(r, 8);
	return p != NULL ? get_u64(p) : 0;
}

/* A length-prefixed field: points into the body; *n receives its length. */
static inline const uint8_t *rec_get_bytes(struct rec_reader *r, size_t *n)
{
	uint32_t len = rec_get_u32(r);
	const uint8_t *p = rec_take(r, len);
	*n = p != NULL ? len : 0;
	return p;
}

/* True when every read so far fitted and the body is used up. */
static inline bool rec_ok(const struct rec_reader *r)
{
	return !r->bad && r->off == r->len;
}

#endif
