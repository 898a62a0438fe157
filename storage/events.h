/* Event streams (DESIGN.md §5) on the storage engine.
 *
 * Layout (all integers big-endian):
 *   events         position(8)                -> event record (below)
 *   streams        stream name                -> stream record, 56 bytes
 *   stream_events  stream id(8) version(8)    -> position(8)
 *   event_ids      event id(16)               -> position(8)
 *   meta           "last_position"            -> u64; "next_stream_id" -> u64
 *
 * Event record: u8 format (1), u8 stream name length, u16 type length,
 * u32 data length, u32 metadata length, u64 version, u64 timestamp_us,
 * id(16), then stream name, type, data and metadata bytes.
 * Stream record: u8 format (1), 7 bytes zero, u64 stream id, u64 event
 * count (the next version), u64 first position, u64 last position,
 * u64 created_us, u64 updated_us.
 *
 * The counters live in meta rather than in memory so that a nested
 * transaction that aborts takes its counter changes with it, and so that
 * removing events later never makes a position be handed out again. Every
 * function here takes the transaction it works in; none keeps state. Stored
 * bytes are checked when decoded: a record that does not add up answers
 * WB_E_CORRUPT, never an out-of-bounds read. */
#ifndef WB_EVENTS_H
#define WB_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

#define EV_STREAM_MAX 255u
#define EV_TYPE_MAX 255u
#define EV_ID_LEN 16u
#define EV_RECORD_HEADER 44u
#define EV_STREAM_RECORD 56u

enum ev_expected {
	EV_EXPECT_ANY = 0,
	EV_EXPECT_NO_STREAM = 1,
	EV_EXPECT_EXISTS = 2,
	EV_EXPECT_EXACT = 3,
};

struct ev_new {
	const uint8_t *id; /* EV_ID_LEN bytes, or NULL: a UUIDv7 is generated */
	const char *type;
	size_t type_len;
	const uint8_t *data;
	size_t data_len;
	const uint8_t *meta;
	size_t meta_len;
};

struct ev_append_result {
	uint64_t first_position;
	uint64_t last_position;
	uint64_t stream_version;
	bool replay;            /* all events were stored already: nothing written */
	int64_t actual_version; /* for WB_WRONG_EXPECTED_VERSION: -1 = no stream */
	char errmsg[256];       /* for any error: a sentence for the client */
};

/* A stored event as decoded; pointers point into storage memory and are
 * valid as long as the transaction it was read in. */
struct ev_record {
	uint64_t position;
	uint64_t version;
	uint64_t timestamp_us;
	const uint8_t *id;
	const char *stream;
	size_t stream_len;
	const char *type;
	size_t type_len;
	const uint8_t *data;
	size_t data_len;
	const uint8_t *meta;
	size_t meta_len;
};

struct ev_stream_info {
	uint64_t stream_id;
	uint64_t count; /* events in the stream; the last version is count - 1 */
	uint64_t first_position;
	uint64_t last_position;
	uint64_t created_us;
	uint64_t updated_us;
};

/* Checks a stream name: 1..255 bytes of valid UTF-8 without control
 * characters. Returns 0 or WB_BAD_REQUEST with a reason in errmsg. */
int ev_check_stream_name(const char *name, size_t len, char *errmsg, size_t errlen);

/* Checks an event type: 1..255 bytes of valid UTF-8 without control
 * characters. Returns 0 or WB_BAD_REQUEST with a reason in errmsg. */
int ev_check_type(const char *type, size_t len, char *errmsg, size_t errlen);

/* Appends evs[0..n) (n >= 1, arguments already checked with the two
 * functions above) to stream in the write transaction txn, all or nothing.
 * now_us is the commit timestamp. Idempotency: when every id is already
 * stored, in this stream, at consecutive versions in this order, answers the
 * original positions with out->replay set and writes nothing; when only some
 * are, or one is in another stream, or an id repeats within the append,
 * answers WB_IDEMPOTENCY_CONFLICT. Also WB_WRONG_EXPECTED_VERSION (with
 * out->actual_version), WB_E_MAPFULL and storage errors. On any error the
 * caller aborts txn (which should be a nested transaction). */
int ev_append(struct storage_txn *txn, const char *stream, size_t stream_len,
              enum ev_expected expected, uint64_t expected_version, const struct ev_new *evs,
              size_t n, uint64_t now_us, struct ev_append_result *out);

/* Fills *out for stream; WB_E_NOTFOUND when the stream does not exist. */
int ev_stream_info(struct storage_txn *txn, const char *stream, size_t stream_len,
                   struct ev_stream_info *out);

/* The highest position ever written (0 for an empty log). */
int ev_last_position(struct storage_txn *txn, uint64_t *out);

/* Called for each event a read yields; return false to stop after it. */
typedef bool (*ev_visit_fn)(const struct ev_record *rec, void *arg);

struct ev_page {
	uint64_t next; /* where the next page starts (version or position) */
	bool end;      /* nothing lies beyond this page in its direction */
	uint64_t last; /* last version of the stream / last position of the log */
	size_t count;  /* events visited */
};

/* Visits at most max_count events of stream from version from (inclusive),
 * forwards or backwards, stopping early when visit returns false. */
int ev_read_stream(struct storage_txn *txn, const char *stream, size_t stream_len, uint64_t from,
                   bool backwards, uint32_t max_count, ev_visit_fn visit, void *arg,
                   struct ev_page *page);

struct ev_filter {
	const char *prefix; /* NULL or "" for every stream */
	size_t prefix_len;
	const char *const *types; /* types[0..ntypes); ntypes 0 for every type */
	const size_t *type_lens;
	size_t ntypes;
	uint32_t max_examined; /* events examined per page at most (filters) */
};

/* Visits at most max_count events of $all matching filter from position
 * from (inclusive), forwards or backwards. */
int ev_read_all(struct storage_txn *txn, uint64_t from, bool backwards, uint32_t max_count,
                const struct ev_filter *filter, ev_visit_fn visit, void *arg, struct ev_page *page);

/* Decodes the event record stored at position from its value bytes. */
int ev_decode(uint64_t position, const uint8_t *v, size_t len, struct ev_record *out);

/* Writes a new UUIDv7 (RFC 9562) for time now_ms into out. */
void ev_uuid7(uint8_t out[EV_ID_LEN], uint64_t now_ms);

#endif
