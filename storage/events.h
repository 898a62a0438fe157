/* Event streams (DESIGN.md §5) on the storage engine.
 *
 * Layout (all integers big-endian):
 *   events         position(8)                -> event record (below)
 *   streams        stream name                -> stream record, 56 bytes
 *   stream_events  stream id(8) version(8)    -> position(8)
 *   event_ids      event id(16)               -> position(8)
 *   meta           "last_position"            -> u64; "next_stream_id" -> u64
 *   stream_meta    stream id(8)               -> stream metadata record, 48 bytes
 *
 * Event record: u8 format (1), u8 stream name length, u16 type length,
 * u32 data length, u32 metadata length, u64 version, u64 timestamp_us,
 * id(16), then stream name, type, data and metadata bytes.
 * Stream record: u8 format (1), 7 bytes zero, u64 stream id, u64 event
 * count (the next version), u64 first position, u64 last position,
 * u64 created_us, u64 updated_us.
 * Stream metadata record: u8 format (1), u8 flags (bit 0: hard-deleted),
 * 6 bytes zero, u64 max_count, u64 max_age_ms, u64 truncate_before,
 * u64 deleted_before (a soft or hard delete hides every version below it;
 * it is the event count at the delete). A stream without metadata and
 * never deleted has no record. The stream record of a deleted stream stays,
 * so that versions continue after a soft delete and a hard delete is
 * remembered after a scavenge has removed every event.
 *
 * Readable events: version >= the effective start, which is the largest of
 * truncate_before, deleted_before and (when max_count is set) count -
 * max_count; and, when max_age_ms is set, timestamp_us + max_age_ms * 1000
 * >= now. Stream reads skip the others at once; $all reads return them until
 * a scavenge (ev_scavenge_step) removes them from events, stream_events and
 * event_ids.
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

/* A stream's metadata as set by the client; 0 is "not set". */
struct ev_stream_meta {
	uint64_t max_count;
	uint64_t max_age_ms;
	uint64_t truncate_before;
};

struct ev_stream_info {
	uint64_t stream_id;
	uint64_t count; /* events in the stream; the last version is count - 1 */
	uint64_t first_position;
	uint64_t last_position;
	uint64_t created_us;
	uint64_t updated_us;
	struct ev_stream_meta meta;
	uint64_t deleted_before; /* 0, or the event count at the last delete */
	bool deleted;            /* soft-deleted and not written since */
	bool tombstoned;         /* hard-deleted */
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
 * caller aborts txn (which should be a nested transaction).
 *
 * Deletes: a hard-deleted stream answers WB_STREAM_DELETED, retries
 * included. A soft-deleted stream (deleted set) is written again with
 * versions continuing: ANY and NO_STREAM succeed, EXACT succeeds for the
 * last version before the delete, EXISTS fails (actual_version -1). A retry
 * whose events are all stored (even hidden) is still answered as a replay
 * and un-deletes nothing; ids a scavenge removed are new ids again. */
int ev_append(struct storage_txn *txn, const char *stream, size_t stream_len,
              enum ev_expected expected, uint64_t expected_version, const struct ev_new *evs,
              size_t n, uint64_t now_us, struct ev_append_result *out);

/* Fills *out for stream, metadata and delete state included;
 * WB_E_NOTFOUND when the stream does not exist. A deleted stream (soft or
 * hard) is answered, with deleted or tombstoned set. */
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

/* Visits at most max_count readable events of stream (see the top of this
 * file; max_age is judged against now_us) from version from (inclusive),
 * forwards or backwards, stopping early when visit returns false. Versions
 * below the effective start are never visited: a forward read from below
 * starts there, a backward read ends there (page->end). Events hidden by
 * max_age are skipped. WB_E_NOTFOUND for a missing or soft-deleted stream,
 * WB_STREAM_DELETED for a hard-deleted one. page->last is the stream's last
 * version, hidden or not. */
int ev_read_stream_at(struct storage_txn *txn, const char *stream, size_t stream_len, uint64_t from,
                      bool backwards, uint32_t max_count, uint64_t now_us, ev_visit_fn visit,
                      void *arg, struct ev_page *page);

/* ev_read_stream_at() with now_us from the wall clock. */
int ev_read_stream(struct storage_txn *txn, const char *stream, size_t stream_len, uint64_t from,
                   bool backwards, uint32_t max_count, ev_visit_fn visit, void *arg,
                   struct ev_page *page);

/* The first version a read of a stream with info may return (the effective
 * start above, max_age aside). */
uint64_t ev_visible_from(const struct ev_stream_info *info);

/* True when rec is readable in its stream with info at now_us (the effective
 * start and max_age). */
bool ev_readable(const struct ev_stream_info *info, const struct ev_record *rec, uint64_t now_us);

/* Sets the client metadata of an existing stream, replacing all three
 * fields (all zero clears them); the delete state is kept. WB_E_NOTFOUND
 * when the stream does not exist (metadata is not stored ahead of a
 * stream), WB_STREAM_DELETED when it is hard-deleted. Takes effect for
 * reads in the same transaction. */
int ev_set_stream_meta(struct storage_txn *txn, const char *stream, size_t stream_len,
                       const struct ev_stream_meta *meta);

/* Deletes stream: soft (hard false) hides every current event and marks the
 * stream deleted until it is written again; hard hides them for good and
 * refuses every later append and read with WB_STREAM_DELETED. *last_version
 * receives the stream's last version. WB_E_NOTFOUND when the stream does
 * not exist; WB_STREAM_DELETED when it is hard-deleted already. Soft-
 * deleting a soft-deleted stream again succeeds and changes nothing. */
int ev_delete_stream(struct storage_txn *txn, const char *stream, size_t stream_len, bool hard,
                     uint64_t *last_version);

struct ev_scavenge_step {
	uint64_t examined;
	uint64_t removed;
	uint64_t bytes; /* key + value bytes of the records removed, all three dbs */
	uint64_t next;  /* the position the next step starts from */
	bool done;      /* no event at or after next up to the step's limit */
};

/* One bounded step of a scavenge in the write transaction txn: examines at
 * most max_examined events from position from (inclusive) up to position
 * upto (inclusive), and removes each that is not readable at now_us (under
 * the metadata and delete state as txn sees them) from events,
 * stream_events and event_ids. Positions are never handed out again (the
 * last_position counter is untouched). Stream records stay. On error the
 * caller aborts txn; *out is rewritten by every call. */
int ev_scavenge_step(struct storage_txn *txn, uint64_t from, uint64_t upto, uint32_t max_examined,
                     uint64_t now_us, struct ev_scavenge_step *out);

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

/* Reads the event stored at position into *out, whose pointers point into
 * txn's snapshot (valid until it ends). WB_E_NOTFOUND when no event is
 * stored there (never written, or scavenged). */
int ev_get(struct storage_txn *txn, uint64_t position, struct ev_record *out);

/* The position of the event with id; WB_E_NOTFOUND when no stored event
 * has it. */
int ev_position_of_id(struct storage_txn *txn, const uint8_t id[EV_ID_LEN], uint64_t *position);

/* The position of version of the stream with stream_id (from
 * ev_stream_info()); WB_E_NOTFOUND when that version is not stored. */
int ev_position_at(struct storage_txn *txn, uint64_t stream_id, uint64_t version,
                   uint64_t *position);

/* Decodes the event record stored at position from its value bytes. */
int ev_decode(uint64_t position, const uint8_t *v, size_t len, struct ev_record *out);

/* Writes a new UUIDv7 (RFC 9562) for time now_ms into out. */
void ev_uuid7(uint8_t out[EV_ID_LEN], uint64_t now_ms);

#endif
