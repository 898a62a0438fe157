/* The write-ahead log: the durability point of log-first mode (DESIGN.md §3, §8).
 *
 * A log is a directory of preallocated segment files. Each record is a
 * deterministic command (the writer's ops encode themselves; see
 * storage/record.h) with a sequence number of its own, numbered from 1 without
 * gaps over the life of the store. The writer adds the records of one batch,
 * writes them with one write, and makes them durable with one fdatasync; a
 * batch is never written before the previous one is durable, which is what
 * lets the scan at open tell a torn tail from damage (below).
 *
 * On disk (all integers big-endian):
 *
 *   segment file  <dir>/<first seq as 16 hex digits>.wal, WAL_SEGMENT_HEADER
 *                 bytes of header, then records back to back from there
 *   header        "WBWALSEG" | u32 format (1) | u32 0 | u64 first seq |
 *                 u64 segment size | u32 crc32c of the 32 bytes before it |
 *                 zeros up to WAL_SEGMENT_HEADER
 *   record        u32 magic WAL_RECORD_MAGIC | u32 crc32c of every byte after
 *                 it up to the end of the body | u32 body length | u16 type |
 *                 u16 type version | u64 seq | u64 first seq of the record's
 *                 batch | body | zeros to a multiple of 8 bytes
 *
 * A record is valid when its magic and CRC check and its length fits the
 * segment. Scanning from the checkpoint's sequence, the log ends at the first
 * place that is not the valid record with the expected sequence (zeros, a
 * record of an older use of a recycled segment, a torn write). The writer
 * writes batch B+1 only after B is durable, so a valid record found further
 * on (at any 8-byte offset, in this or a later segment) whose batch starts
 * after the expected sequence proves that a durable record was damaged: the
 * open then fails, naming segment and offset. Anything else after the end is
 * the unsynced tail of the last batch, never acknowledged: it is cut (the
 * open reports what it cut) and overwritten by the next batch.
 *
 * Threads: one thread uses a wal at a time (the writer thread after start;
 * the opening thread before). Errors: WB_E_IO, WB_E_NOSPC, WB_E_NOMEM,
 * WB_E_CORRUPT, WB_E_INVAL (wb_error.h). */
#ifndef WB_WAL_H
#define WB_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_SEGMENT_HEADER 4096u
#define WAL_RECORD_HEADER 32u
#define WAL_RECORD_MAGIC 0x57424c52u /* "WBLR" */
/* A record body is at most this long (a request frame is smaller). */
#define WAL_RECORD_MAX (64u << 20)

#define WAL_SEGMENT_MIN (1u << 20)
#define WAL_SEGMENT_DEFAULT (64u << 20)

struct wal;

struct wal_record {
	uint64_t seq;
	uint64_t batch_first;
	uint16_t type;
	uint16_t version;
	const uint8_t *body; /* valid during the callback only; never NULL */
	uint32_t len;
};

struct wal_options {
	/* The log's directory; created (0750) when it does not exist. */
	const char *dir;
	/* Bytes per segment (WAL_SEGMENT_MIN..1 GiB; 0: the default). A
	 * batch larger than a segment gets a segment of its own, as large as
	 * it needs. */
	uint64_t segment_size;
	/* Segments kept for reuse once a checkpoint covers them (the rest are
	 * removed). */
	unsigned spare_segments;
	/* Tests of the harness only: skip fdatasync and fsync. */
	bool no_sync;
	/* When not NULL, the open's scan hands replay every valid record after
	 * applied as it walks past it, in sequence order: the records
	 * wal_replay() would give, read once at start-up instead of twice. A
	 * non-zero return fails the open with it. The scan is still checking
	 * the log while it hands records on, so an open that fails may come
	 * after records were handed: the caller throws away what it made of
	 * them (a log-mode store returns to its checkpoint at the next open). */
	int (*replay)(void *arg, const struct wal_record *r);
	void *replay_arg;
};

/* What wal_open() found. */
struct wal_open_info {
	uint64_t first_seq;   /* the oldest record kept (0: none) */
	uint64_t last_seq;    /* the last valid record (0: none) */
	uint64_t records;     /* valid records after `applied` */
	uint64_t cut_bytes;   /* bytes of torn tail cut */
	char cut_segment[64]; /* the segment file the tail was cut in ("" none) */
	uint64_t cut_offset;  /* and where */
	unsigned segments;    /* segment files in use */
};

/* Opens (creating when empty) the log in opts->dir and scans it. applied is
 * the sequence the checkpoint of the store covers: the records after it are
 * the ones wal_replay() gives. The log must hold every record after applied
 * (else WB_E_CORRUPT: a missing segment); an empty log continues after
 * applied. A damaged record before the end fails with WB_E_CORRUPT, and
 * errmsg says segment, offset and what to do. On success *out is written and
 * *info (may be NULL) filled; the torn tail is cut (overwritten with zeros and
 * made durable) before it returns. Keeps no reference to opts. */
int wal_open(struct wal **out, const struct wal_options *opts, uint64_t applied,
             struct wal_open_info *info, char *errmsg, size_t errlen);

/* Closes the log (a batch added but not written is dropped). NULL allowed. */
void wal_close(struct wal *w);

/* Calls cb for every valid record after applied (given to wal_open), in
 * sequence order; a non-zero return stops the walk and is returned. Reads
 * the segments again (the open kept no records in memory). */
int wal_replay(struct wal *w, int (*cb)(void *arg, const struct wal_record *r), void *arg);

/* Adds a record to the batch being built, numbering it; *seq (may be NULL)
 * receives its sequence. The body is copied. WB_E_INVAL when len exceeds
 * WAL_RECORD_MAX; WB_E_NOMEM. */
int wal_add(struct wal *w, uint16_t type, uint16_t version, const void *body, size_t len,
            uint64_t *seq);

/* Writes the batch (one write; a segment switch first when it does not fit:
 * the new segment, recycled or created with its space allocated, is made
 * durable with its directory before the batch goes in). Not yet durable: call
 * wal_sync(). On WB_E_NOSPC (no room for a new segment) nothing was written,
 * the batch is dropped and its sequences are given out again; other errors
 * (WB_E_IO) leave the log unusable: the caller stops the process. An empty
 * batch writes nothing. */
int wal_write(struct wal *w);

/* Makes everything written durable (fdatasync). A failure is WB_E_IO and the
 * caller must stop the process: the kernel may have dropped the pages. */
int wal_sync(struct wal *w);

/* Drops the batch being built; its sequences are given out again. */
void wal_discard(struct wal *w);

/* The sequence of the last record written (0: none yet). */
uint64_t wal_last_seq(const struct wal *w);

/* Bytes written since the last wal_release(). */
uint64_t wal_bytes_since_release(const struct wal *w);

/* A checkpoint covers every record up to applied: segments holding only such
 * records are kept as spares (up to spare_segments, renamed when reused) or
 * removed, and the directory is fsynced. The segment being written stays. */
int wal_release(struct wal *w, uint64_t applied);

struct wal_stats {
	uint64_t last_seq;
	uint64_t batches, records, bytes; /* written since open */
	uint64_t syncs, sync_us_total;
	uint64_t segments, spares, disk_bytes;
	uint64_t segments_created, segments_recycled, segments_removed;
};

void wal_get_stats(const struct wal *w, struct wal_stats *out);

/* CRC32C (Castagnoli) of p[0..n) continuing from crc (0 to start). */
uint32_t wal_crc32c(uint32_t crc, const void *p, size_t n);

#endif
