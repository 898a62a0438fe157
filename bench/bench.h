/* Helpers shared by the whizbang-bench subcommands: clocks, a fast random
 * generator for event ids, number parsing, temporary directories on a real
 * disk, the workload's naming conventions, latency samples and percentiles, a
 * JSON writer, the spawned whizbangd (server.c) and the append load
 * (append.c) that other subcommands run beside their own.
 *
 * Every function that can fail returns 0 or a code of enum wb_error and, when
 * it takes an errmsg buffer, writes a sentence there. */
#ifndef BENCH_H
#define BENCH_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "cli_opts.h"

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

/* Event ids as a load writes them: UUIDv7 (RFC 9562; the Unix time in ms,
 * then a counter in the 74 bits of rand_a and rand_b, method 1), which is
 * what the client libraries generate, so ids from one generator only grow;
 * or, with random set, 16 random bytes: the worst case for the server's id
 * index, every insert on another page. */
struct bench_ids {
	struct bench_rng rng;
	uint64_t counter;
	bool random;
};

/* Seeds ids as bench_rng_seed() does; the counter starts at random, so two
 * runs against one store never repeat an id within a millisecond. */
void bench_ids_seed(struct bench_ids *ids, uint64_t salt, bool random);

/* Writes n ids of 16 bytes, stride bytes apart (16: back to back). */
void bench_ids_fill(struct bench_ids *ids, uint8_t *out, size_t n, size_t stride);

/* Parses a decimal integer in [min, max] into *out. A suffix k, M or G
 * multiplies by 10^3, 10^6 or 10^9 ("200k"): proto/parse.h's PARSE_COUNT.
 * Returns 0 or WB_E_INVAL; *out is written only on success. */
int bench_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* True when path lives on tmpfs or ramfs, where fsync costs nothing and a
 * durability benchmark means nothing. */
bool bench_on_tmpfs(const char *path);

/* Makes the fresh directory a run keeps its data in,
 * "<parent>/whizbang-bench.XXXXXX", where parent is data_dir when it is not
 * NULL, otherwise /tmp, or /var/tmp when /tmp is a tmpfs (it warns on
 * stderr when the parent is on tmpfs). Writes the parent into parent_out
 * and the new directory into out, which the caller removes with
 * bench_rmtree(). Returns 0, or 1 after saying why on stderr: the exit
 * status of a subcommand that cannot start. */
int bench_make_root(const char *data_dir, char parent_out[BENCH_PATH_MAX],
                    char out[BENCH_PATH_MAX]);

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

/* user + system CPU seconds of who (RUSAGE_SELF or RUSAGE_CHILDREN). */
double bench_cpu_seconds(int who);

/* qsort() comparison of two uint64_t. */
int bench_cmp_u64(const void *a, const void *b);

/* The nearest-rank percentile q (0.5, 0.99, ...) of sorted[0..n) nanoseconds,
 * in microseconds; 0 when n is 0. */
double bench_pct_us(const uint64_t *sorted, size_t n, double q);

/* A sample of durations in nanoseconds, kept whole so that its percentiles
 * are exact. */
struct bench_lat {
	uint64_t *v;
	size_t n;
	size_t cap;
};

/* Appends ns to l, growing it: 0 or WB_E_NOMEM. */
int bench_lat_push(struct bench_lat *l, uint64_t ns);

/* Moves every sample of from into to (from is left empty, its memory freed):
 * 0 or WB_E_NOMEM, with both untouched then. */
int bench_lat_take(struct bench_lat *to, struct bench_lat *from);

void bench_lat_free(struct bench_lat *l);

/* Summary of a sample in microseconds: p50, p99, p99.9, max, mean. The sample
 * is sorted in place. */
struct bench_lat_summary {
	size_t n;
	double p50, p99, p999, max, mean;
};
void bench_lat_summarize(struct bench_lat *l, struct bench_lat_summary *out);

/* A latency histogram of nanoseconds with a fixed footprint, for loads whose
 * samples are too many to keep: values below 2^BENCH_HIST_SUB_BITS are
 * counted exactly, larger ones in 2^BENCH_HIST_SUB_BITS buckets per power of
 * two, so a percentile read from it is within 1/128 (0.8 %) of the exact
 * one. Recording is a few instructions and never allocates; n, sum and max
 * are exact. Zero it (= {0} or memset) before use. */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_BUCKETS ((64 - BENCH_HIST_SUB_BITS + 1) << BENCH_HIST_SUB_BITS)
struct bench_hist {
	uint64_t n;
	uint64_t sum;
	uint64_t max;
	uint64_t count[BENCH_HIST_BUCKETS];
};

static inline void bench_hist_record(struct bench_hist *h, uint64_t ns)
{
	uint32_t i;
	if (ns < (1u << BENCH_HIST_SUB_BITS)) {
		i = (uint32_t)ns;
	} else {
		uint32_t shift = (uint32_t)(63 - __builtin_clzll(ns)) - BENCH_HIST_SUB_BITS;
		i = ((shift + 1) << BENCH_HIST_SUB_BITS) +
		    (uint32_t)((ns >> shift) - (1u << BENCH_HIST_SUB_BITS));
	}
	h->count[i]++;
	h->n++;
	h->sum += ns;
	if (ns > h->max)
		h->max = ns;
}

/* The summary of h as bench_lat_summarize() gives it of a sample (a
 * percentile is the middle of the bucket that holds its nearest rank, never
 * above the maximum). */
void bench_hist_summarize(const struct bench_hist *h, struct bench_lat_summary *out);

/* A minimal JSON writer on stdout: keys are fixed ASCII, strings go through
 * bench_json_str(). first is true right after an opening brace; start with
 * {true}. */
struct bench_jw {
	bool first;
};
void bench_j_key(struct bench_jw *j, const char *key);
/* Opens an object, as the value of key, or at the top when key is NULL. */
void bench_j_open(struct bench_jw *j, const char *key);
void bench_j_close(struct bench_jw *j);
void bench_j_u64(struct bench_jw *j, const char *key, uint64_t v);
/* A number with three decimals; NaN and infinities are written as null. */
void bench_j_num(struct bench_jw *j, const char *key, double v);
void bench_j_str(struct bench_jw *j, const char *key, const char *v);
/* Writes literal as it is: true, false, null, -1. */
void bench_j_lit(struct bench_jw *j, const char *key, const char *literal);
/* An object {"n", "p50", "p99", "p999", "max", "mean"} of s, in µs. */
void bench_j_lat(struct bench_jw *j, const char *key, const struct bench_lat_summary *s);

/* Set by the first SIGINT while bench_sigint_catch() is in force: a load
 * stops taking work, waits for what it has in flight, and the run ends
 * with the server stopped and the temporary directory removed. Lock-free,
 * so safe in a signal handler. */
extern atomic_bool bench_interrupted;

/* Makes the first SIGINT set bench_interrupted (a second one ends the
 * process, as SIGINT does), keeping the disposition it replaces in *old;
 * bench_sigint_restore(old) puts that back. */
void bench_sigint_catch(struct sigaction *old);
void bench_sigint_restore(const struct sigaction *old);

/* ---------------------------------------------------------------- the server (server.c) */

/* A whizbangd the benchmark talks to. pid is 0 when it was not spawned by
 * this process (--server), or once it has been stopped. */
struct bench_server {
	pid_t pid;
	char data[BENCH_PATH_MAX + 16];
	char port_file[BENCH_PATH_MAX + 16];
	char address[64];
	/* Set before bench_server_start(): the server's standard output and
	 * error go to this file (created, or appended to) instead of this
	 * process's; NULL: inherited. */
	const char *log_file;
};

/* The most arguments beyond its own that a spawned server takes. */
#define BENCH_SERVER_EXTRA_MAX 16

/* Starts whizbangd (the binary whizbangd, or NULL for ../server/whizbangd
 * next to this program) on 127.0.0.1:0 with its data directory
 * "<root>/server", its port file "<root>/server.port", --log-level log_level
 * (NULL: warn), --map-size map_size and the arguments extra (NULL-terminated,
 * at most BENCH_SERVER_EXTRA_MAX; NULL: none), and waits up to 10 s until
 * the port file names the port; s->address then holds "127.0.0.1:<port>".
 * On failure, a server that was started is still in s->pid: stop it with
 * bench_server_stop(). The child gets SIGTERM if this process dies. */
int bench_server_start(struct bench_server *s, const char *whizbangd, const char *log_level,
                       const char *root, uint64_t map_size, const char *const *extra, char *errmsg,
                       size_t errlen);

/* Stops a spawned server with SIGTERM, waiting up to 20 s before SIGKILL.
 * Returns its wait status (0 when it was not spawned), or -1 when it had to
 * be killed or could not be waited for. */
int bench_server_stop(struct bench_server *s);

/* The per-call timeout of the load's clients. */
#define BENCH_CLIENT_TIMEOUT_MS 60000

struct wb_client;

/* Connects *out to address as client name, the index-th of its kind, with
 * BENCH_CLIENT_TIMEOUT_MS. Returns 0, or an error with "<name> #<index>:
 * <why>" in errmsg (*out is then NULL). */
int bench_connect(struct wb_client **out, const char *address, const char *name, uint32_t index,
                  char *errmsg, size_t errlen);

/* How a load's connections reach the server: over TLS verified with the CA
 * file tls_ca_file (NULL: plaintext), and logged in with SCRAM-SHA-256 as
 * user with password, or with the API token token ("wbt_..."; NULL, NULL:
 * no login). */
struct bench_secure {
	const char *tls_ca_file;
	const char *user;
	const char *password;
	const char *token;
};

/* bench_connect() with sec (NULL: plaintext, no login). */
int bench_connect_secure(struct wb_client **out, const char *address, const char *name,
                         uint32_t index, const struct bench_secure *sec, char *errmsg,
                         size_t errlen);

/* The whizbangd a run talks to and its control connection. */
struct bench_target {
	struct bench_server srv; /* srv.pid is 0 when the server was not spawned */
	const char *address;
	struct wb_client *ctl;
};

/* Uses the running server at address (--server) or, when address is NULL,
 * spawns one as bench_server_start() does (whizbangd, log_level, the data
 * under root, map_size, extra); then connects t->ctl to it, as client
 * "whizbang-bench-control", in plaintext. Returns 0, or an error with a
 * sentence in errmsg, after stopping the server it spawned. */
int bench_target_open(struct bench_target *t, const char *address, const char *whizbangd,
                      const char *log_level, const char *root, uint64_t map_size,
                      const char *const *extra, char *errmsg, size_t errlen);

/* bench_server_stop() for the end of a run: also writes into *cpu_s the
 * CPU seconds of the children (the server is the only child a subcommand
 * waits for) and says on stderr how the server ended when that was not
 * with status 0. Returns the status as bench_server_stop() does. */
int bench_server_finish(struct bench_server *s, double *cpu_s);

/* Describes a wait status in words ("exited with status 1"). */
void bench_describe_status(int status, char *out, size_t len);

void bench_sleep_ms(long ms);

/* Writes the exit status of a spawned server under key: its exit code,
 * 128 + the signal that killed it, -1 when it had to be killed, or null when
 * the server was not spawned. */
void bench_json_exit_status(struct bench_jw *j, const char *key, bool spawned, int status);

/* ---------------------------------------------------------------- the append load (append.c) */

/* The append load of `whizbang-bench append`, callable from another
 * subcommand against a server it already runs: C connections with P appends
 * in flight, one event of size bytes per append, over streams bench-0..
 * bench-(streams-1), until events events are appended. No baseline, one
 * round. */
struct bench_append_params {
	uint32_t clients;
	uint32_t pipeline;
	uint64_t events;
	uint32_t size;
	uint32_t streams;
};

struct bench_append_result {
	uint64_t events;
	uint64_t errors; /* appends answered with an error; any fails the run */
	double secs;
	double events_per_s;
	struct bench_lat_summary lat; /* per append, µs */
	double mean_batch;            /* requests per group-commit batch; 0: no stats */
	double mean_batch_ms;
};

/* Runs that load against the server at address, with its own connections,
 * and fills *out (also when appends were answered with errors, which it
 * counts and reports on stderr). Returns 0, or the failure that stopped the
 * load with a sentence in errmsg. */
int bench_append_load(const char *address, const struct bench_append_params *p,
                      struct bench_append_result *out, char *errmsg, size_t errlen);

/* The same load by the clock, on connections kept open between measured
 * spells (`whizbang-bench noisy` measures it beside other loads): p->events
 * is ignored; each bench_steady_run() keeps the pipelines full for ms
 * milliseconds, then waits for the appends in flight. */
struct bench_steady;

/* Connects p->clients connections to address with sec (NULL: plaintext, no
 * login) and builds the requests. Returns 0 with *out set, or an error with
 * a sentence in errmsg (*out untouched). */
int bench_steady_open(struct bench_steady **out, const char *address,
                      const struct bench_append_params *p, const struct bench_secure *sec,
                      char *errmsg, size_t errlen);

/* One spell of ms milliseconds; *out receives its figures alone (the
 * latency of every append answered, events counted only for those answered
 * without an error, so that out->events_per_s is what the load got done).
 * Returns 0, or the failure that stopped the spell (a connection the server
 * closed, no answer within BENCH_CLIENT_TIMEOUT_MS) with a sentence in
 * errmsg, *out then holding what was done until it. After a failure the
 * load takes no more work: close it. */
int bench_steady_run(struct bench_steady *s, uint64_t ms, struct bench_append_result *out,
                     char *errmsg, size_t errlen);

/* Closes the connections and frees s. NULL is allowed. */
void bench_steady_close(struct bench_steady *s);

/* ---------------------------------------------------------------- the subcommands */

/* A subcommand: its command line, a row of the option tables (cli_opts.h:
 * its name, the table of its options, the size of the struct they fill and
 * what it does), and the function that runs it with that struct, filled
 * and checked against the table. run returns the process's exit status:
 * 0, 1 when the run failed, or EXIT_USAGE for options that the table
 * cannot refuse on its own (two that do not fit together), after saying
 * why on stderr. bench.c lists the subcommands and reads their command
 * lines; --help prints the help written from the table. */
struct bench_command {
	struct cli_command line;
	int (*run)(void *opts);
};

/* The row of a subcommand: its name, its options' table and their struct
 * T, the function that runs it, and what it does. */
#define BENCH_COMMAND(name_, table, T, run_, help_)                                                \
	{                                                                                          \
		.line = {.name = (name_), CLI_OPTS(table, T), .help = (help_)}, .run = (run_)      \
	}

extern const struct bench_command bench_append_command;
extern const struct bench_command bench_lease_command;
extern const struct bench_command bench_raw_command;
extern const struct bench_command bench_explode_command;
extern const struct bench_command bench_subscribe_command;
extern const struct bench_command bench_noisy_command;

/* Rows that several subcommands' tables share, for a field f of their
 * options' struct T (or the fields named). */
// clang-format off
#define BENCH_OPT_SERVER(T, f)                                                                     \
	{"--server", "HOST:PORT", CLI_TEXT_AT(T, f),                                               \
	 .help = "use a running whizbangd instead of spawning one"}
#define BENCH_OPT_WHIZBANGD(T, f)                                                                  \
	{"--whizbangd", "PATH", CLI_TEXT_AT(T, f),                                                 \
	 .help = "the whizbangd to spawn on 127.0.0.1:0 (default: ../server/whizbangd next to "    \
	         "this program)"}
#define BENCH_OPT_DATA_DIR(T, f)                                                                   \
	{"--data-dir", "DIR", CLI_TEXT_AT(T, f),                                                   \
	 .help = "where the fresh whizbang-bench.XXXXXX directory goes (default: /tmp, or "        \
	         "/var/tmp when /tmp is a tmpfs)"}
#define BENCH_OPT_LOG_LEVEL(T, f)                                                                  \
	{"--log-level", "LEVEL", CLI_TEXT_AT(T, f), .dflt = "warn",                                \
	 .help = "the spawned whizbangd's --log-level"}
#define BENCH_OPT_JSON(T, f)                                                                       \
	{"--json", NULL, CLI_FLAG_AT(T, f), .help = "print one JSON object with every figure"}
/* The storage work of an append load, in `append` and in `raw`. */
#define BENCH_OPTS_APPENDS(T, events, size, streams)                                               \
	{"--events", "N", CLI_COUNT_AT(T, events, 1, UINT64_MAX / 2), .required = true,            \
	 .help = "events to append in all"},                                                       \
	{"--size", "B", CLI_COUNT_AT(T, size, 0, BENCH_SIZE_MAX), .required = true,                \
	 .help = "data bytes per event"},                                                          \
	{"--streams", "S", CLI_COUNT_AT(T, streams, 1, 1000000), .required = true,                 \
	 .help = "streams bench-0..bench-(S-1), appended to in turn"}
#define BENCH_OPT_BATCH_EVENTS(T, f)                                                               \
	{"--batch-events", "K", CLI_COUNT_AT(T, f, 1, 100000), .dflt = "1",                        \
	 .help = "events per append request"}
#define BENCH_OPT_MAP_SIZE(T, f)                                                                   \
	{"--map-size", "BYTES", CLI_SIZE_AT(T, f, 1u << 20, UINT64_MAX / 4),                       \
	 .help = "the initial LMDB map size (default: estimated from N and B so that the map "     \
	         "need not grow)"}
#define BENCH_OPT_SERVER_EXTRAS(T, f)                                                              \
	{"--server-extras", NULL, CLI_FLAG_AT(T, f),                                               \
	 .help = "the baseline also does the lookups whizbangd does beyond the layout (see "       \
	         "docs/BENCHMARKS.md)"}
#define BENCH_OPT_RANDOM_IDS(T, f)                                                                 \
	{"--random-ids", NULL, CLI_FLAG_AT(T, f),                                                  \
	 .help = "random event ids (the worst case for the server's id index) instead of UUIDv7 "  \
	         "ids, which the client libraries generate"}
// clang-format on

#endif
