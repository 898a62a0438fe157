/* The raw-LMDB baseline: the storage work of whizbangd's appends, done with
 * mdb_* calls directly, in one process and one thread, with no network, no
 * protobuf and no threads. It is the ceiling the server is measured against.
 *
 * Per append request of k events to stream S, inside a nested transaction of
 * the batch's write transaction: one get of S in "streams" (a new stream also
 * takes an id from meta "next_stream_id"); per event a put in "events"
 * (position -> 44-byte header, stream name, type, data, metadata; MDB_APPEND),
 * in "stream_events" (stream id, version -> position) and in "event_ids"
 * (event id -> position, MDB_NOOVERWRITE); then a put of the updated stream
 * record. Every batch of requests commits once, with fsync.
 *
 * Stream records keep at offset 16 the stream's event count, which is the
 * next version to write; whizbangd's storage/events.c reads it the same way. */
#ifndef BENCH_RAW_LMDB_H
#define BENCH_RAW_LMDB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct raw_params {
	uint64_t events;       /* events appended in total */
	uint32_t size;         /* data bytes per event */
	uint32_t streams;      /* streams bench-0 .. bench-(streams-1), used in turn */
	uint32_t batch;        /* requests per write transaction (per fsync) */
	uint32_t batch_events; /* events per request; the last one may hold fewer */
	uint64_t map_size;     /* the initial map size; 0 estimates one */
	/* Also do what whizbangd's ev_append does beyond the layout above: a
	 * get and put of meta "last_position". Off by default: the baseline
	 * is the storage work an append needs, not the server's choices. */
	bool server_extras;
	/* Random event ids instead of UUIDv7 ones (bench.h, bench_ids). */
	bool random_ids;
	/* When not NULL and set, raw_lmdb_advance() stops between two batches
	 * and returns WB_E_AGAIN. For ^C; read with atomic_load(). */
	const atomic_bool *stop;
};

struct raw_result {
	uint64_t events;
	uint64_t requests;
	uint64_t batches;
	uint64_t elapsed_ns;      /* time spent appending (summed over slices) */
	uint64_t batch_ns_total;  /* from each batch's txn begin to its commit's return */
	uint64_t commit_ns_total; /* time inside mdb_txn_commit of the batches */
	uint64_t commit_ns_max;
	uint64_t map_grows; /* MDB_MAP_FULL answered by doubling the map */
	uint64_t map_used;  /* bytes of the map in use at the end */
};

struct raw_lmdb;

/* Opens a new LMDB environment in dir, which must exist and should be empty
 * and on the filesystem the server uses, with whizbangd's flags, and its five
 * databases. p->batch is not used. On success *out receives a baseline that
 * raw_lmdb_advance() runs and raw_lmdb_close() frees; on failure returns a
 * code of enum wb_error with a sentence in errmsg[0..errlen). Keeps no
 * reference to dir, p or errmsg. */
int raw_lmdb_open(struct raw_lmdb **out, const char *dir, const struct raw_params *p, char *errmsg,
                  size_t errlen);

/* Appends until upto events (at most p->events) are stored, batch_size
 * requests per write transaction; a batch never crosses upto, so that a run
 * in slices commits as the server's does. The time spent is added to the
 * figures. */
int raw_lmdb_advance(struct raw_lmdb *r, uint64_t upto, uint32_t batch_size, char *errmsg,
                     size_t errlen);

/* Writes the figures so far into *out. */
void raw_lmdb_result(struct raw_lmdb *r, struct raw_result *out);

/* Closes the environment and frees r; its files stay in dir. NULL is
 * allowed. */
void raw_lmdb_close(struct raw_lmdb *r);

/* The whole baseline in one call: open, advance to p->events with p->batch,
 * result, close. Runs the baseline against a new LMDB environment in dir, which must exist
 * and should be empty and on the filesystem the server uses. Writes *out on
 * success; on failure returns a code of enum wb_error and writes a sentence
 * into errmsg[0..errlen). Leaves the environment's files in dir; the caller
 * removes them. Keeps no reference to its arguments. */
int raw_lmdb_run(const char *dir, const struct raw_params *p, struct raw_result *out, char *errmsg,
                 size_t errlen);

#endif
