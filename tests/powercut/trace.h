/* The power-cut trace: what the interposer (interpose.c) writes and the
 * image builder (image.c) reads.
 *
 * One record per mutating file operation that whizbangd made under the
 * traced directory, in the order the operations completed, each numbered
 * by a global op index from 0. A record is written with one write(2) after
 * the operation returned, and only then is the shared counter (the number
 * of complete records) advanced, so a record whose index is below the
 * counter a client read after an acknowledgement completed before that
 * acknowledgement was sent. A process killed in the middle of writing a
 * record leaves a short last record, which the reader drops.
 *
 * Files are named by inode number (st_ino) as well as by path, so that
 * writes through a descriptor land on the right file after renames and
 * unlinks; paths are relative to the traced directory ("" is the directory
 * itself). */
#ifndef WB_PCUT_TRACE_H
#define WB_PCUT_TRACE_H

#include <stdint.h>

#define PCUT_MAGIC 0x54554350u /* "PCUT" */

enum pcut_op {
	/* A file came into existence: path, ino. */
	PCUT_CREATE = 1,
	/* Data: len bytes at off, the bytes follow the paths. */
	PCUT_WRITE = 2,
	/* The size became off (ftruncate, truncate, O_TRUNC). */
	PCUT_TRUNCATE = 3,
	/* Space [off, off + len) was allocated; the size grows to its end
	 * unless PCUT_F_KEEP_SIZE. Reads as zeros where nothing was written. */
	PCUT_FALLOCATE = 4,
	/* fsync or fdatasync of ino (a file or a directory) completed; covers
	 * is the counter when it started: every record below it is covered. */
	PCUT_SYNC = 5,
	/* path was renamed to path2; ino is the file moved, ino2 the file
	 * path2 named before (0: none). */
	PCUT_RENAME = 6,
	/* path (ino) was unlinked. */
	PCUT_UNLINK = 7,
	/* Directory path (ino) was made / removed. */
	PCUT_MKDIR = 8,
	PCUT_RMDIR = 9,
	/* sync(2) or syncfs(2): every record below covers is durable. */
	PCUT_SYNC_ALL = 10,
	/* Something the model cannot represent happened to path: a shared
	 * writable mapping of it, or a sync of a file the interposer never saw
	 * opened (written through stdio, say). The checker refuses the trace
	 * and names the path unless it is lock.mdb (LMDB's reader table,
	 * rebuilt on every open). */
	PCUT_UNMODELED = 11,
};

enum pcut_flags {
	/* A write through a descriptor opened O_DSYNC or O_SYNC: durable once
	 * it returned. */
	PCUT_F_DSYNC = 1u << 0,
	/* A sync that WB_PCUT_DROP_SYNC turned into a no-op: the server was
	 * told it succeeded, the model treats it as never having happened. */
	PCUT_F_DROPPED = 1u << 1,
	PCUT_F_KEEP_SIZE = 1u << 2,
	/* sync_file_range(2): recorded, never counted as durability (it
	 * flushes neither the disk cache nor metadata). */
	PCUT_F_RANGE_ONLY = 1u << 3,
	/* fdatasync rather than fsync. */
	PCUT_F_DATA_ONLY = 1u << 4,
};

/* The fixed part of a record; path, path2 and then the data follow it. */
struct pcut_rec {
	uint32_t magic;
	uint16_t op;
	uint16_t flags;
	uint64_t index;
	uint64_t covers;
	uint64_t ino;
	uint64_t ino2;
	uint64_t off;
	uint64_t len;
	uint32_t path_len;
	uint32_t path2_len;
};

/* The counter file: one 64-bit counter at offset 0 of a page, mapped shared
 * by the interposer (writer) and the load driver (reader). */
#define PCUT_COUNTER_SIZE 4096

#endif
