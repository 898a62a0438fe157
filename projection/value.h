/* Typed values, entity records, index keys and id lists (DESIGN.md §7).
 * Pure C: no libuv, no storage; every function is deterministic.
 *
 * Entity record (the value stored for an entity; integers big-endian):
 *   u8 format (1), 7 zero bytes, u64 version, u64 created sequence,
 *   u64 updated sequence, u32 field count, then the fields sorted by name
 *   (byte order, no duplicates), each: u8 name length (1..255), the name,
 *   u8 type (enum proj_vtype), the payload:
 *     null: nothing; bool: u8 0|1; int: 8 bytes two's complement;
 *     double: 8 bytes IEEE 754 (never NaN); string, bytes: u32 length, bytes.
 * The same entity always encodes to the same bytes: that is what makes a
 * replay comparable byte for byte.
 *
 * Index key of a value (order-preserving: memcmp order of two keys equals
 * the logical order of their values, proj_value_order()):
 *   tag byte: PROJ_KEY_NULL < PROJ_KEY_BOOL < PROJ_KEY_NUMBER <
 *             PROJ_KEY_STRING < PROJ_KEY_BYTES
 *   null:    tag
 *   bool:    tag, 0|1
 *   number:  tag, 8 bytes: the largest double D <= the value, with its bits
 *            made sortable (sign bit flipped for D >= 0, every bit flipped
 *            for D < 0; -0.0 encoded as +0.0), then 2 bytes: value - D (an
 *            int64 above 2^53 is not always a double; the remainder is < 2048).
 *            So int 100 and double 100.0 share one key: they are equal.
 *   string, bytes: tag, the bytes with 0x00 written as 0x00 0xFF, then the
 *            terminator 0x00 0x01. At most PROJ_KEY_TEXT_MAX encoded bytes
 *            of the value are written (an escaped 0x00 that would not fit
 *            whole is left out), then the terminator: longer values share
 *            keys with others of the same prefix, so an index yields
 *            candidates that the full clause then filters. With the id
 *            after it, an index entry key stays within LMDB's 511 bytes.
 * Every encoding is self-delimiting, so an index entry key can be the value
 * key followed by the entity id. */
#ifndef WB_PROJ_VALUE_H
#define WB_PROJ_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "whizbang.pb-c.h"

/* ------------------------------------------------------------ buffers */

/* A growable byte buffer. Zero-initialise; free with proj_buf_free(). */
struct proj_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

/* Makes room for n more bytes; WB_E_NOMEM on failure (buf unchanged). */
int proj_buf_reserve(struct proj_buf *b, size_t n);
/* Appends n bytes; WB_E_NOMEM on failure. */
int proj_buf_append(struct proj_buf *b, const void *p, size_t n);
void proj_buf_free(struct proj_buf *b);

/* ------------------------------------------------------------ values */

enum proj_vtype {
	PROJ_NULL = 1,
	PROJ_BOOL = 2,
	PROJ_INT = 3,
	PROJ_DOUBLE = 4,
	PROJ_STRING = 5,
	PROJ_BYTES = 6,
};

/* A value; string and bytes point into memory the value does not own. */
struct proj_value {
	enum proj_vtype type;
	union {
		bool b;
		int64_t i;
		double d;
		struct {
			const uint8_t *p;
			size_t len;
		} s;
	} u;
};

/* Converts a protocol value. WB_BAD_REQUEST for a value with no kind set
 * or a NaN double (NaN is not a value here: it has no order). The result
 * points into v. */
int proj_value_from_pb(const Whizbang__V1__Value *v, struct proj_value *out);

/* Fills out (initialised by the caller with WHIZBANG__V1__VALUE__INIT) from
 * v; out points into v's memory. */
void proj_value_to_pb(const struct proj_value *v, Whizbang__V1__Value *out);

/* True when a and b are equal in the where-clause sense: the same type and
 * equal, or both numbers (int or double) and numerically equal (exactly:
 * int64 2^53+1 is not equal to the double 2^53). null equals null. */
bool proj_value_equal(const struct proj_value *a, const struct proj_value *b);

/* Orders a and b when they are comparable: both numbers (exactly, as
 * above), both strings or both bytes (unsigned byte order), both bools
 * (false < true). Returns true and sets *cmp to <0, 0 or >0; returns false
 * for any other pair (null is not ordered). */
bool proj_value_order(const struct proj_value *a, const struct proj_value *b, int *cmp);

/* ------------------------------------------------------------ index keys */

#define PROJ_KEY_NULL 0x10
#define PROJ_KEY_BOOL 0x20
#define PROJ_KEY_NUMBER 0x30
#define PROJ_KEY_STRING 0x40
#define PROJ_KEY_BYTES 0x50
#define PROJ_KEY_TEXT_MAX 200u
/* The longest key proj_key_encode() writes. */
#define PROJ_KEY_MAX (1u + PROJ_KEY_TEXT_MAX + 2u)

/* Writes the index key of v into out[0..PROJ_KEY_MAX) and returns its
 * length. */
size_t proj_key_encode(const struct proj_value *v, uint8_t *out);

/* Returns the length of the value key at the start of k[0..len) (the rest
 * of an index entry key is the entity id), or 0 when k does not start with
 * a well-formed key. */
size_t proj_key_len(const uint8_t *k, size_t len);

/* The tag byte of the key class v belongs to (numbers share one). */
uint8_t proj_key_tag(const struct proj_value *v);

/* ------------------------------------------------------------ records */

#define PROJ_RECORD_HEADER 36u
#define PROJ_NAME_MAX 255u
#define PROJ_MAX_FIELDS 1024u
/* An entity record larger than this is refused when an op would make it. */
#define PROJ_RECORD_MAX (1u << 20)

struct proj_field {
	const char *name;
	size_t name_len;
	struct proj_value v;
};

/* A decoded record header; fields stay encoded until iterated. */
struct proj_record {
	uint64_t version;
	uint64_t created_seq;
	uint64_t updated_seq;
	uint32_t nfields;
	const uint8_t *fields; /* the encoded fields */
	size_t fields_len;
};

/* Checks p[0..len) completely (format, lengths, types, sorted unique names,
 * no NaN, nothing after the last field) and fills *out, pointing into p.
 * WB_E_CORRUPT when anything is wrong: stored bytes are never trusted. */
int proj_record_decode(const uint8_t *p, size_t len, struct proj_record *out);

/* Iterates the fields of a decoded record: start with *off = 0; returns
 * true and fills *f (pointing into the record) while there is a field. */
bool proj_record_next(const struct proj_record *r, size_t *off, struct proj_field *f);

/* Looks a field up by name; true and *out when present. */
bool proj_record_find(const struct proj_record *r, const char *name, size_t name_len,
                      struct proj_value *out);

/* Encodes a record from n fields into out (appending). The fields need not
 * be sorted; duplicate names are WB_E_INVAL, as are empty or over-long
 * names, NaN and more than PROJ_MAX_FIELDS fields; a record above
 * PROJ_RECORD_MAX is WB_RESOURCE_EXHAUSTED. fields may be reordered. */
int proj_record_encode(uint64_t version, uint64_t created_seq, uint64_t updated_seq,
                       struct proj_field *fields, size_t n, struct proj_buf *out);

/* ------------------------------------------------------------ id lists */

#define PROJ_ID_MAX 255u

/* A list of ids (1..255 bytes each), kept in one buffer. Zero-initialise;
 * free with proj_ids_free(). */
struct proj_ids {
	struct proj_buf bytes;
	uint32_t *off; /* start of id i in bytes */
	uint8_t *len;  /* length of id i */
	size_t n;
	size_t cap;
};

/* Appends a copy of id[0..len); WB_E_INVAL for a length outside 1..255. */
int proj_ids_add(struct proj_ids *ids, const void *id, size_t len);
/* Sorts in byte order (shorter first on a common prefix) and removes
 * duplicates. */
int proj_ids_sort_unique(struct proj_ids *ids);
static inline const uint8_t *proj_ids_get(const struct proj_ids *ids, size_t i, size_t *len)
{
	*len = ids->len[i];
	return ids->bytes.p + ids->off[i];
}
void proj_ids_clear(struct proj_ids *ids);
void proj_ids_free(struct proj_ids *ids);

/* Front-codes sorted, unique ids (Explosion.ids): per id, u8 shared prefix
 * length, u8 rest length, the rest. Appends to out. */
int proj_idlist_encode(const struct proj_ids *ids, struct proj_buf *out);

/* Decodes front-coded ids one at a time. */
struct proj_idlist_iter {
	const uint8_t *p;
	size_t len;
	size_t off;
	uint8_t id[PROJ_ID_MAX];
	size_t id_len;
};

void proj_idlist_iter_init(struct proj_idlist_iter *it, const uint8_t *p, size_t len);
/* Returns 1 with it->id[0..id_len) the next id, 0 at the end, WB_E_CORRUPT
 * when the list is malformed (a shared length above the previous id's, an
 * empty or over-long id, an id not above the previous one, a short
 * buffer). */
int proj_idlist_next(struct proj_idlist_iter *it);

#endif
