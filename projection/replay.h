/* Replay and verification (DESIGN.md §7): the read models rebuilt from the
 * ledger alone, applying each entry's recorded id lists without evaluating
 * a predicate, and compared with the live ones by digest.
 *
 * Pure C, no libuv; these run off the loop (whizbangd replay, or a worker
 * thread for the online Verify request). */
#ifndef WB_PROJ_REPLAY_H
#define WB_PROJ_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proj.h"
#include "storage.h"

/* Meta key set while a replay in place rebuilds the read models; a server
 * refuses to start on a store where it is set (the rebuild was cut short:
 * run it again). */
#define PROJ_REBUILD_KEY "proj_rebuild"

/* Called every few thousand entries and at the end; total is the
 * watermark. */
typedef void (*proj_progress_fn)(uint64_t done, uint64_t total, void *arg);

struct proj_replay_stats {
	uint64_t watermark; /* entries 1..watermark were replayed */
	uint64_t entries;   /* entries with ops */
	uint64_t ops;
	uint64_t failed; /* entries recorded as failed (skipped) */
	uint64_t micros;
};

/* Clears dst's read models and rebuilds them from src's ledger, every
 * entry up to src's watermark, in order, in PROJ_REPLAY mode. dst may be
 * src (a rebuild in place; PROJ_REBUILD_KEY marks it until it completes).
 * Neither store may be written by anyone else meanwhile. Commits in chunks
 * and grows dst's map as needed. progress may be NULL. On failure errmsg
 * says where. */
int proj_replay(struct storage *src, struct storage *dst, const struct proj_config *cfg,
                proj_progress_fn progress, void *arg, struct proj_replay_stats *out,
                char *errmsg, size_t errlen);

struct proj_verify_result {
	bool match;
	uint8_t live_digest[PROJ_DIGEST_LEN];
	uint8_t replay_digest[PROJ_DIGEST_LEN];
	uint64_t entities;
	struct proj_replay_stats replay;
	char first_difference[512]; /* "" on a match */
};

/* Replays live's ledger into a new store at scratch_path (a directory
 * that must not exist; removed afterwards) and compares the digests of the
 * rebuilt and the live read models; on a difference, names the first
 * record that differs. live must not change meanwhile (stop the server, or
 * pass a snapshot copy). Returns 0 whether or not they match. */
int proj_verify(struct storage *live, const char *scratch_path, const struct proj_config *cfg,
                proj_progress_fn progress, void *arg, struct proj_verify_result *out,
                char *errmsg, size_t errlen);

/* Removes a store directory made by proj_verify() or a backup: its
 * data.mdb and lock.mdb, then the directory. */
void proj_remove_store(const char *path);

#endif
