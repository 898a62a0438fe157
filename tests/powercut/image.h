/* Crash images from a power-cut trace (trace.h).
 *
 * The model of what survives a power cut at crash point P (every op with an
 * index below P was issued and had returned; nothing later was issued):
 *
 * - File data. An fsync or fdatasync of a file makes every write, size
 *   change and allocation of that file recorded before the sync started
 *   durable. A write through an O_DSYNC or O_SYNC descriptor is durable
 *   once it returned. Every other write issued before P may or may not be
 *   there: each is dropped, kept, or split into 4 KiB pages (aligned on
 *   file offsets) that are each old, new, or torn (one 2 KiB half old, the
 *   other new); the unsynced writes land in a random order, so an older one
 *   may land over a newer one (never over a later durable O_DSYNC write).
 *   Unsynced truncates and allocations happen or not. A file that unsynced
 *   ops made longer than its durable size may end anywhere between the two.
 *   sync_file_range() is never durability.
 * - Names. A create, rename, unlink, mkdir or rmdir is durable once its
 *   directory (both directories, for a rename) was fsynced after it. A
 *   file's creation is also durable once the file itself was fsynced or
 *   fdatasynced after it (ext4, XFS and btrfs commit a new inode's entry
 *   with it, and LMDB, which never syncs its directory, relies on it).
 *   Every other name op may or may not have happened, each on its own,
 *   applied in trace order; a rename is atomic. This is weaker than ext4's
 *   data=ordered, which keeps name ops in order.
 * - The traced directory itself exists; a directory holding a surviving
 *   name exists. sync(2) and syncfs(2) count as an fsync of everything.
 *
 * Given the same trace, point and seed, the image is the same byte for
 * byte. */
#ifndef WB_PCUT_IMAGE_H
#define WB_PCUT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

struct pcut_trace;

/* Maps the trace file at path and indexes its records. On success *out
 * receives the trace, freed with pcut_trace_free(). Fails (with the reason
 * in err) on a record out of sequence, or on a PCUT_UNMODELED record for
 * anything but lock.mdb. A short last record is dropped. */
int pcut_trace_load(const char *path, struct pcut_trace **out, char *err, size_t errlen);

void pcut_trace_free(struct pcut_trace *t);

/* The number of complete records (crash points run from 0 to this). */
uint64_t pcut_trace_ops(const struct pcut_trace *t);

/* The indices of the syncs that count (fsync, fdatasync, O_DSYNC writes,
 * sync): the interesting crash points lie just before and after them.
 * Owned by the trace. */
size_t pcut_trace_syncs(const struct pcut_trace *t, const uint64_t **idx);

/* What a built image is made of, for the report. */
struct pcut_image_stats {
	uint64_t files;
	uint64_t durable_ops;
	uint64_t unsynced_writes;
	uint64_t dropped;   /* unsynced writes left out whole */
	uint64_t pages_new; /* 4 KiB pieces of unsynced writes that landed */
	uint64_t pages_old;
	uint64_t torn;
	uint64_t cut;        /* files whose tail was cut */
	uint64_t names_lost; /* name ops that did not survive */
};

/* Builds the image of the trace at crash point point with the choices that
 * seed makes into dir, which must exist and be empty. Returns 0, or -1 with
 * the reason in err. */
int pcut_image_build(const struct pcut_trace *t, uint64_t point, uint64_t seed, const char *dir,
                     struct pcut_image_stats *stats, char *err, size_t errlen);

/* A splitmix64 step: the generator every random choice of the harness
 * comes from. */
uint64_t pcut_rand(uint64_t *state);

#endif
