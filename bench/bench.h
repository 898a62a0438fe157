/* Helpers shared by the whizbang-bench subcommands: clocks, a fast random
 * generator for event ids, number parsing, temporary directories on a real
 * disk, and the workload's naming conventions.
 *
 * Every function that can fail returns 0 or a code of enum wb_error and, when
 * it takes an errmsg buffer, writes a sentence there. */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The event type every benchmark event carries, on the server and in the
 * baseline alike, so that both store the same bytes. */
#define BENCH_EVENT_TYPE "bench"
/* Stream i is named "bench-<i>". */
#define BENCH_STREAM_FMT "bench-%u"
#define BENCH_STREAM_MAX 24

/* Buffers for the paths the bench builds (temporary directories, the server's
 * files) and for error messages that may quote two of them. */
#define BENCH_PATH_MAX 1024
#define BENCH_ERRMSG_MAX 3072

/* The largest --size accepted before asking the server (16 MiB). */
#define BENCH_SIZE_MAX (16u << 20)

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* CLOCK_REALTIME in microseconds since the Unix epoch. */
uint64_t bench_wall_us(void);

/* splitmix64: one 64-bit state, fast enough that event ids cost nothing next
 * to the work measured. Not for cryptography. */
struct bench_rng {
	uint64_t s;
};

/* Seeds r from the kernel's random pool mixed with salt (a thread index), so
 * that two runs, and two threads of one run, never produce the same ids. */
void bench_rng_seed(struct bench_rng *r, uint64_t salt);

uint64_t bench_rng_next(struct bench_rng *r);

/* Fills buf[0..len) with random bytes. */
void bench_rng_fill(struct bench_rng *r, uint8_t *buf, size_t len);

/* Parses a decimal integer in [min, max] into *out. A suffix k, M or G
 * multiplies by 10^3, 10^6 or 10^9 ("200k"). Returns 0 or WB_E_INVAL; *out
 * is written only on success. */
int bench_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* Parses text as bench_parse_u64() does, or prints "<what>: bad value" to
 * stderr and returns WB_E_INVAL. For option parsing. */
int bench_opt_u64(const char *what, const char *text, uint64_t min, uint64_t max, uint64_t *out);
int bench_opt_u32(const char *what, const char *text, uint32_t min, uint32_t max, uint32_t *out);

/* The same for a byte size, with whizbangd's binary suffixes K, M, G and T
 * (powers of 1024): "--map-size 1G". */
int bench_opt_size(const char *what, const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* True when path lives on tmpfs or ramfs, where fsync costs nothing and a
 * durability benchmark means nothing. */
bool bench_on_tmpfs(const char *path);

/* Chooses the directory under which temporary data directories go: parent
 * when it is not NULL, otherwise /tmp, or /var/tmp when /tmp is a tmpfs.
 * Writes it into out[0..len). Warns on stderr when the choice is on tmpfs. */
int bench_pick_parent(const char *parent, char *out, size_t len, char *errmsg, size_t errlen);

/* Creates a fresh directory "<parent>/whizbang-bench.XXXXXX" and writes its
 * path into out[0..len). The caller removes it with bench_rmtree(). */
int bench_mkdtemp(const char *parent, char *out, size_t len, char *errmsg, size_t errlen);

/* Removes path and everything below it, without following symbolic links.
 * A path that does not exist is not an error. */
int bench_rmtree(const char *path);

/* Formats the name of stream i into out. */
void bench_stream_name(uint32_t i, char out[BENCH_STREAM_MAX]);

/* An LMDB map size large enough for events events of size data bytes, with
 * room for the indexes and for copy-on-write, rounded up to 1 MiB. */
uint64_t bench_map_size(uint64_t events, uint32_t size);

/* Writes s to f as a JSON string literal, quotes included. */
void bench_json_str(FILE *f, const char *s);

/* The subcommands: argv[0] is the subcommand's name. They return the
 * process's exit status. */
int bench_append_main(int argc, char **argv);
int bench_raw_main(int argc, char **argv);

#endif
