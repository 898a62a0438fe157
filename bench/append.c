/* whizbang-bench append: pipelined appends from many connections, measured
 * against the raw-LMDB baseline.
 *
 * The happy path: spawn whizbangd on 127.0.0.1:0 with a fresh data directory
 * (unless --server names a running one), read its port file, connect C client
 * threads and a control connection, take ServerStats, release the clients
 * (each keeps P appends in flight until N events are appended between them),
 * take ServerStats again, stop the server with SIGTERM, then run the raw-LMDB
 * baseline with the batch size the server reached and print both.
 *
 * Failure modes: a server that does not start, exits early or does not write
 * its port file within 10 s ends the run before any load. A client whose
 * connection fails stops every client from taking more work; the run then
 * reports the first such failure and exits 1. Error responses are counted,
 * the run goes on, and it exits 1 at the end. A server that does not exit
 * within 20 s of SIGTERM is killed and reported; so is a nonzero exit. The
 * first ^C during the load drains the appends in flight and ends the run
 * cleanly; a spawned server also gets SIGTERM if this process dies. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "raw_lmdb.h"
#include "wb.h"
#include "wb_error.h"

struct append_opts {
	uint32_t clients;
	uint32_t pipeline;
	uint64_t events;
	uint32_t size;
	uint32_t streams;
	uint32_t batch_events;
	uint32_t baseline_batch; /* 0: the server's mean batch */
	uint32_t rounds;         /* load and baseline alternate in this many slices */
	uint64_t map_size;       /* 0: estimated from events and size */
	const char *server;
	const char *whizbangd;
	const char *data_dir;
	const char *log_level;
	bool json;
	bool no_baseline;
	bool server_extras; /* passed to the baseline */
};

/* The options of `whizbang-bench append`, their defaults and bounds: the
 * command line is read from this table and its --help written from it. */
static const struct cli_opt append_table[] = {
        {"--clients", "C", CLI_COUNT_AT(struct append_opts, clients, 1, 1024), .required = true,
         .help = "client connections"},
        {"--pipeline", "P", CLI_COUNT_AT(struct append_opts, pipeline, 1, 65536), .required = true,
         .help = "appends each connection keeps in flight"},
        BENCH_OPTS_APPENDS(struct append_opts, events, size, streams),
        BENCH_OPT_BATCH_EVENTS(struct append_opts, batch_events),
        BENCH_OPT_SERVER(struct append_opts, server),
        BENCH_OPT_WHIZBANGD(struct append_opts, whizbangd),
        BENCH_OPT_DATA_DIR(struct append_opts, data_dir),
        BENCH_OPT_MAP_SIZE(struct append_opts, map_size),
        BENCH_OPT_LOG_LEVEL(struct append_opts, log_level),
        {"--baseline-batch", "R", CLI_COUNT_AT(struct append_opts, baseline_batch, 1, 1000000),
         .help = "requests per baseline batch (default: the server's mean batch size)"},
        {"--rounds", "M", CLI_COUNT_AT(struct append_opts, rounds, 1, 1000), .dflt = "1",
         .help = "slices in which the load and the baseline alternate"},
        BENCH_OPT_SERVER_EXTRAS(struct append_opts, server_extras),
        {"--no-baseline", NULL, CLI_FLAG_AT(struct append_opts, no_baseline),
         .help = "skip the raw-LMDB baseline"},
        BENCH_OPT_JSON(struct append_opts, json),
        {0},
};

/* The ServerStats fields the benchmark reports. */
struct stats {
	char server_version[32];
	uint64_t requests_total;
	uint64_t errors_total;
	uint64_t batches;
	uint64_t batch_requests;
	uint64_t batch_events;
	uint64_t commit_us_total;
	uint64_t batch_requests_max;
	uint64_t map_used;
	uint64_t map_grow_count;
};

struct shared {
	const struct append_opts *o;
	const char *address;
	char (*names)[BENCH_STREAM_MAX];
	uint64_t total_appends;
	atomic_uint_fast64_t next_append;
	atomic_bool abort;
	/* The round gate. Clients connect and count themselves in ready; the
	 * driver then takes the stats, sets limit, bumps round and starts the
	 * clock; each client appends until next_append reaches limit, drains
	 * what it has in flight and counts itself in done. finish ends the
	 * threads. So stats and clock cover only the load, and with --rounds
	 * the baseline can run between rounds while every client waits. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t ready;
	uint32_t round;
	uint32_t done;
	uint64_t limit; /* appends, counted from 0, that this round may reach */
	bool finish;
};

struct slot {
	uint64_t id;
	uint64_t sent_ns;
	uint32_t n;
	bool busy;
};

struct worker {
	pthread_t thread;
	uint32_t index;
	struct shared *sh;
	struct wb_client *c;
	struct bench_lat lat; /* per-append latency in ns, in completion order */
	uint64_t appends;
	uint64_t events;
	uint64_t errors;
	int rc; /* a failure that stopped this client */
	char errmsg[256];
	char first_error[256]; /* the first error response */
	/* Kept across rounds: the stream rotation, ids and buffers. */
	struct bench_rng rng;
	uint64_t seq;
	struct slot *slots;
	uint32_t *free_slots;
	struct wb_new_event *evs;
	uint8_t *ids;
	uint8_t *data;
};

/* ---------------------------------------------------------------- stats */

static int fetch_stats(struct wb_client *c, struct stats *out, char *errmsg, size_t errlen)
{
	Whizbang__V1__ServerStats *st;
	int rc = wb_stats(c, &st);
	if (rc != 0) {
		snprintf(errmsg, errlen, "GetStats: %s: %s", wb_error_name(rc), wb_errmsg(c));
		return rc;
	}
	memset(out, 0, sizeof(*out));
	snprintf(out->server_version, sizeof(out->server_version), "%s",
	         st->server_version != NULL ? st->server_version : "");
	out->requests_total = st->requests_total;
	out->errors_total = st->errors_total;
	out->batches = st->batches;
	out->batch_requests = st->batch_requests;
	out->batch_events = st->batch_events;
	out->commit_us_total = st->commit_us_total;
	out->batch_requests_max = st->batch_requests_max;
	out->map_used = st->map_used;
	out->map_grow_count = st->map_grow_count;
	wb_stats_free(st);
	return 0;
}

/* ---------------------------------------------------------------- the clients */

static int worker_fail(struct worker *w, int rc, const char *what)
{
	if (w->rc == 0) {
		w->rc = rc;
		snprintf(w->errmsg, sizeof(w->errmsg), "client %u: %s: %s: %s", w->index, what,
		         wb_error_name(rc), w->c != NULL ? wb_errmsg(w->c) : "");
	}
	atomic_store(&w->sh->abort, true);
	return rc;
}

/* Checks one append's response; counts an error response and remembers the
 * first. */
static void check_response(struct worker *w, const Whizbang__V1__Response *resp, uint32_t n)
{
	const char *problem = NULL;
	char buf[200];
	if (resp->error != NULL && resp->error->code != WHIZBANG__V1__ERROR_CODE__OK) {
		snprintf(buf, sizeof(buf), "%s: %s", wb_error_name((int)resp->error->code),
		         resp->error->message != NULL ? resp->error->message : "");
		problem = buf;
	} else if (resp->body_case != WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS) {
		problem = "the response holds no AppendResult";
	} else if (resp->append_events->last_position - resp->append_events->first_position + 1 !=
	           n) {
		problem = "the positions answered do not match the number of events";
	} else if (resp->append_events->idempotent_replay) {
		problem = "the server took fresh events for a replay";
	}
	if (problem == NULL) {
		w->appends++;
		w->events += n;
		return;
	}
	if (w->errors++ == 0)
		snprintf(w->first_error, sizeof(w->first_error), "%s", problem);
}

static int worker_setup(struct worker *w)
{
	const struct append_opts *o = w->sh->o;
	uint32_t p = o->pipeline;
	uint32_t k = o->batch_events;
	bench_rng_seed(&w->rng, w->index + 1u);
	w->slots = calloc(p, sizeof(*w->slots));
	w->free_slots = calloc(p, sizeof(*w->free_slots));
	w->evs = calloc(k, sizeof(*w->evs));
	w->ids = malloc((size_t)k * 16u);
	w->data = malloc(o->size > 0 ? o->size : 1);
	/* Room for every sample, so that none has to wait for a realloc. */
	w->lat.cap = (size_t)(w->sh->total_appends / o->clients) + 1024u;
	w->lat.v = malloc(w->lat.cap * sizeof(*w->lat.v));
	if (w->slots == NULL || w->free_slots == NULL || w->evs == NULL || w->ids == NULL ||
	    w->data == NULL || w->lat.v == NULL)
		return worker_fail(w, WB_E_NOMEM, "allocating");
	bench_rng_fill(&w->rng, w->data, o->size);
	for (uint32_t i = 0; i < k; i++) {
		w->evs[i].id = w->ids + 16u * i;
		w->evs[i].type = BENCH_EVENT_TYPE;
		w->evs[i].data = w->data;
		w->evs[i].data_len = o->size;
	}
	return 0;
}

static void worker_teardown(struct worker *w)
{
	free(w->data);
	free(w->ids);
	free(w->evs);
	free(w->free_slots);
	free(w->slots);
	wb_close(w->c);
	w->c = NULL;
}

/* One round: keeps P appends in flight until the shared counter reaches
 * limit, then waits for the answers to those still in flight. */
static int worker_round(struct worker *w, uint64_t limit)
{
	struct shared *sh = w->sh;
	const struct append_opts *o = sh->o;
	uint32_t p = o->pipeline;
	uint32_t k = o->batch_events;
	struct slot *slots = w->slots;
	for (uint32_t i = 0; i < p; i++)
		w->free_slots[i] = p - 1 - i;
	uint32_t nfree = p;
	bool more = true;
	for (;;) {
		while (more && nfree > 0) {
			uint64_t a = atomic_fetch_add(&sh->next_append, 1);
			if (a >= limit || atomic_load(&sh->abort) ||
			    atomic_load(&bench_interrupted)) {
				more = false;
				break;
			}
			uint64_t left = o->events - a * k;
			uint32_t n = left < k ? (uint32_t)left : k;
			bench_rng_fill(&w->rng, w->ids, (size_t)n * 16u);
			/* Each client walks the streams from its own offset, so
			 * every stream is written by several clients at once. */
			uint32_t stream = (uint32_t)((w->index + w->seq++) % o->streams);
			struct slot *sl = &slots[w->free_slots[--nfree]];
			sl->sent_ns = bench_now_ns();
			int rc = wb_append_send(w->c, sh->names[stream], WB_EXPECT_ANY, 0, w->evs,
			                        n, &sl->id);
			if (rc != 0)
				return worker_fail(w, rc, "wb_append_send");
			sl->n = n;
			sl->busy = true;
		}
		if (nfree == p)
			return 0;
		Whizbang__V1__Response *resp;
		int rc = wb_recv(w->c, &resp);
		uint64_t now = bench_now_ns();
		if (rc != 0)
			return worker_fail(w, rc, "wb_recv");
		uint32_t j = 0;
		while (j < p && !(slots[j].busy && slots[j].id == resp->id))
			j++;
		if (j == p) {
			whizbang__v1__response__free_unpacked(resp, NULL);
			return worker_fail(w, WB_INTERNAL, "a response to no request in flight");
		}
		check_response(w, resp, slots[j].n);
		whizbang__v1__response__free_unpacked(resp, NULL);
		slots[j].busy = false;
		w->free_slots[nfree++] = j;
		if (bench_lat_push(&w->lat, now - slots[j].sent_ns) != 0)
			return worker_fail(w, WB_E_NOMEM, "recording latency");
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	w->rc = bench_connect(&w->c, sh->address, "whizbang-bench", w->index, w->errmsg,
	                      sizeof(w->errmsg));
	if (w->rc != 0)
		atomic_store(&sh->abort, true);
	else
		worker_setup(w);
	pthread_mutex_lock(&sh->lock);
	sh->ready++;
	pthread_cond_broadcast(&sh->cond);
	for (uint32_t round = 1;; round++) {
		while (sh->round < round && !sh->finish)
			pthread_cond_wait(&sh->cond, &sh->lock);
		if (sh->finish)
			break;
		uint64_t limit = sh->limit;
		pthread_mutex_unlock(&sh->lock);
		if (w->c != NULL && w->rc == 0 && !atomic_load(&sh->abort))
			worker_round(w, limit);
		pthread_mutex_lock(&sh->lock);
		sh->done++;
		pthread_cond_broadcast(&sh->cond);
	}
	pthread_mutex_unlock(&sh->lock);
	worker_teardown(w);
	return NULL;
}

/* ---------------------------------------------------------------- figures */

struct figures {
	uint64_t events;
	uint64_t appends;
	uint64_t errors;
	double secs;
	struct bench_lat_summary lat; /* per append, µs */
	bool have_stats;
	struct stats before;
	struct stats d; /* after - before, except the max and the version */
	bool have_raw;
	uint32_t raw_batch_min; /* the baseline's batch sizes over the rounds */
	uint32_t raw_batch_max;
	struct raw_result raw;
	int server_status; /* wait status, -1 killed, 0 when not spawned */
	bool spawned;
	double client_cpu_s; /* this process's user + system time during the load */
	double server_cpu_s; /* the spawned server's user + system time, start to exit */
	long cores;
};

static int merge_latencies(struct worker *ws, uint32_t n, struct figures *f)
{
	struct bench_lat all = {0};
	for (uint32_t i = 0; i < n; i++) {
		if (bench_lat_take(&all, &ws[i].lat) != 0) {
			bench_lat_free(&all);
			return WB_E_NOMEM;
		}
	}
	bench_lat_summarize(&all, &f->lat);
	bench_lat_free(&all);
	return 0;
}

static double per(uint64_t a, uint64_t b)
{
	return b != 0 ? (double)a / (double)b : 0;
}

static void print_human(const struct append_opts *o, const char *address, const char *root,
                        const struct figures *f)
{
	double eps = (double)f->events / f->secs;
	printf("whizbang-bench append: %llu events of %u B, %u per append, %u streams, "
	       "%u clients x %u in flight, %u round%s\n",
	       (unsigned long long)o->events, o->size, o->batch_events, o->streams, o->clients,
	       o->pipeline, o->rounds, o->rounds == 1 ? "" : "s");
	printf("server: whizbangd %s at %s (%s)\n", f->have_stats ? f->before.server_version : "?",
	       address, f->spawned ? "spawned" : "given with --server");
	printf("data under %s\n\n", root);
	printf("load\n");
	printf("  appended     %llu events in %llu appends, %llu errors, in %.3f s\n",
	       (unsigned long long)f->events, (unsigned long long)f->appends,
	       (unsigned long long)f->errors, f->secs);
	printf("  throughput   %.0f events/s  %.0f appends/s  %.2f MB/s of event data\n", eps,
	       (double)f->appends / f->secs, (double)f->events * o->size / f->secs / 1e6);
	printf("  latency      p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  mean %.3f "
	       "ms\n",
	       f->lat.p50 / 1e3, f->lat.p99 / 1e3, f->lat.p999 / 1e3, f->lat.max / 1e3,
	       f->lat.mean / 1e3);
	if (f->have_stats) {
		printf("server group commit (ServerStats, after minus before)\n");
		printf("  batches      %llu, mean %.1f requests and %.1f events per batch, "
		       "largest %llu requests\n",
		       (unsigned long long)f->d.batches, per(f->d.batch_requests, f->d.batches),
		       per(f->d.batch_events, f->d.batches),
		       (unsigned long long)f->d.batch_requests_max);
		printf("  per batch    mean %.3f ms from begin to durable (commit_us_total / "
		       "batches)\n",
		       per(f->d.commit_us_total, f->d.batches) / 1e3);
		printf("  writer busy  %.0f %% of the load (batch time / elapsed)\n",
		       (double)f->d.commit_us_total / 1e4 / f->secs);
		printf("  map          %.1f MB used, %llu grows during the load\n",
		       (double)f->d.map_used / 1e6, (unsigned long long)f->d.map_grow_count);
	}
	printf("cpu (user + system, of %.1f s on %ld cores)\n", f->secs * (double)f->cores,
	       f->cores);
	printf("  clients      %.2f s\n", f->client_cpu_s);
	if (f->spawned)
		printf("  whizbangd    %.2f s, from start to exit\n", f->server_cpu_s);
	if (f->have_raw) {
		double rsecs = (double)f->raw.elapsed_ns / 1e9;
		double reps = (double)f->raw.events / rsecs;
		if (f->raw_batch_min == f->raw_batch_max)
			printf("baseline (raw LMDB, one thread, %u requests per fsync'd batch%s)\n",
			       f->raw_batch_max,
			       o->server_extras ? ", with the server's extras" : "");
		else
			printf("baseline (raw LMDB, one thread, %u to %u requests per fsync'd "
			       "batch%s)\n",
			       f->raw_batch_min, f->raw_batch_max,
			       o->server_extras ? ", with the server's extras" : "");
		printf("  throughput   %.0f events/s  %.0f appends/s  in %.3f s\n", reps,
		       (double)f->raw.requests / rsecs, rsecs);
		printf("  per batch    %llu batches, mean %.3f ms from begin to durable, of which "
		       "commit %.3f ms\n",
		       (unsigned long long)f->raw.batches,
		       per(f->raw.batch_ns_total, f->raw.batches) / 1e6,
		       per(f->raw.commit_ns_total, f->raw.batches) / 1e6);
		printf("  map          %.1f MB used, %llu grows\n", (double)f->raw.map_used / 1e6,
		       (unsigned long long)f->raw.map_grows);
		printf("ratio          server / baseline = %.3f\n", eps / reps);
	}
}

static void print_json(const struct append_opts *o, const char *address, const char *root,
                       const struct figures *f, bool ok)
{
	struct bench_jw j = {true};
	double eps = (double)f->events / f->secs;
	bench_j_open(&j, NULL);
	bench_j_open(&j, "params");
	bench_j_u64(&j, "clients", o->clients);
	bench_j_u64(&j, "pipeline", o->pipeline);
	bench_j_u64(&j, "events", o->events);
	bench_j_u64(&j, "size", o->size);
	bench_j_u64(&j, "streams", o->streams);
	bench_j_u64(&j, "batch_events", o->batch_events);
	bench_j_u64(&j, "rounds", o->rounds);
	bench_j_str(&j, "server", address);
	bench_j_lit(&j, "spawned", f->spawned ? "true" : "false");
	bench_j_str(&j, "data_dir", root);
	bench_j_close(&j);

	bench_j_open(&j, "load");
	bench_j_u64(&j, "events", f->events);
	bench_j_u64(&j, "appends", f->appends);
	bench_j_u64(&j, "errors", f->errors);
	bench_j_num(&j, "elapsed_s", f->secs);
	bench_j_num(&j, "events_per_s", eps);
	bench_j_num(&j, "appends_per_s", (double)f->appends / f->secs);
	bench_j_num(&j, "mb_per_s", (double)f->events * o->size / f->secs / 1e6);
	bench_j_open(&j, "latency_us");
	bench_j_num(&j, "p50", f->lat.p50);
	bench_j_num(&j, "p99", f->lat.p99);
	bench_j_num(&j, "p999", f->lat.p999);
	bench_j_num(&j, "max", f->lat.max);
	bench_j_num(&j, "mean", f->lat.mean);
	bench_j_close(&j);
	bench_j_close(&j);

	bench_j_open(&j, "cpu_s");
	bench_j_u64(&j, "cores", (uint64_t)f->cores);
	bench_j_num(&j, "clients", f->client_cpu_s);
	if (f->spawned)
		bench_j_num(&j, "whizbangd", f->server_cpu_s);
	else
		bench_j_lit(&j, "whizbangd", "null");
	bench_j_close(&j);

	if (f->have_stats) {
		bench_j_open(&j, "server_stats");
		bench_j_str(&j, "server_version", f->before.server_version);
		bench_j_u64(&j, "batches", f->d.batches);
		bench_j_u64(&j, "batch_requests", f->d.batch_requests);
		bench_j_u64(&j, "batch_events", f->d.batch_events);
		bench_j_u64(&j, "commit_us_total", f->d.commit_us_total);
		bench_j_num(&j, "mean_requests_per_batch", per(f->d.batch_requests, f->d.batches));
		bench_j_num(&j, "mean_events_per_batch", per(f->d.batch_events, f->d.batches));
		bench_j_num(&j, "mean_batch_ms", per(f->d.commit_us_total, f->d.batches) / 1e3);
		bench_j_num(&j, "writer_busy", (double)f->d.commit_us_total / 1e6 / f->secs);
		bench_j_u64(&j, "batch_requests_max", f->d.batch_requests_max);
		bench_j_u64(&j, "requests_total", f->d.requests_total);
		bench_j_u64(&j, "errors_total", f->d.errors_total);
		bench_j_u64(&j, "map_used", f->d.map_used);
		bench_j_u64(&j, "map_grow_count", f->d.map_grow_count);
		bench_j_close(&j);
	} else {
		bench_j_lit(&j, "server_stats", "null");
	}

	if (f->have_raw) {
		double rsecs = (double)f->raw.elapsed_ns / 1e9;
		double reps = (double)f->raw.events / rsecs;
		bench_j_open(&j, "baseline");
		bench_j_u64(&j, "batch", f->raw_batch_max);
		bench_j_u64(&j, "batch_min", f->raw_batch_min);
		bench_j_lit(&j, "server_extras", o->server_extras ? "true" : "false");
		bench_j_u64(&j, "events", f->raw.events);
		bench_j_u64(&j, "requests", f->raw.requests);
		bench_j_u64(&j, "batches", f->raw.batches);
		bench_j_num(&j, "elapsed_s", rsecs);
		bench_j_num(&j, "events_per_s", reps);
		bench_j_num(&j, "appends_per_s", (double)f->raw.requests / rsecs);
		bench_j_num(&j, "mean_batch_ms", per(f->raw.batch_ns_total, f->raw.batches) / 1e6);
		bench_j_num(&j, "mean_commit_ms",
		            per(f->raw.commit_ns_total, f->raw.batches) / 1e6);
		bench_j_num(&j, "max_commit_ms", (double)f->raw.commit_ns_max / 1e6);
		bench_j_u64(&j, "map_used", f->raw.map_used);
		bench_j_u64(&j, "map_grows", f->raw.map_grows);
		bench_j_close(&j);
		bench_j_num(&j, "ratio", eps / reps);
	} else {
		bench_j_lit(&j, "baseline", "null");
		bench_j_lit(&j, "ratio", "null");
	}

	bench_json_exit_status(&j, "server_exit_status", f->spawned, f->server_status);
	bench_j_lit(&j, "ok", ok ? "true" : "false");
	bench_j_close(&j);
	fputc('\n', stdout);
}

/* ---------------------------------------------------------------- the subcommand */

/* Checks the workload against the limits the server announced in Hello. */
static int check_limits(const struct append_opts *o, const struct wb_server_info *info,
                        char *errmsg, size_t errlen)
{
	char longest[BENCH_STREAM_MAX];
	bench_stream_name(o->streams - 1, longest);
	size_t event_size = o->size + (sizeof(BENCH_EVENT_TYPE) - 1) + strlen(longest);
	if (info->max_append_events != 0 && o->batch_events > info->max_append_events) {
		snprintf(errmsg, errlen, "--batch-events %u is above the server's limit of %u",
		         o->batch_events, info->max_append_events);
		return WB_E_INVAL;
	}
	if (info->max_event_size != 0 && event_size > info->max_event_size) {
		snprintf(errmsg, errlen, "--size %u is above the server's event size limit of %u",
		         o->size, info->max_event_size);
		return WB_E_INVAL;
	}
	return 0;
}

/* Runs the load: starts the clients, takes the stats around it. */
/* Adds the difference of two ServerStats to the running totals in f->d. */
static void add_stats(struct figures *f, const struct stats *before, const struct stats *after)
{
	f->d.batches += after->batches - before->batches;
	f->d.batch_requests += after->batch_requests - before->batch_requests;
	f->d.batch_events += after->batch_events - before->batch_events;
	f->d.commit_us_total += after->commit_us_total - before->commit_us_total;
	f->d.requests_total += after->requests_total - before->requests_total;
	f->d.errors_total += after->errors_total - before->errors_total;
	f->d.map_grow_count += after->map_grow_count - before->map_grow_count;
	f->d.batch_requests_max = after->batch_requests_max;
	f->d.map_used = after->map_used;
}

/* The baseline's batch: --baseline-batch, or the server's mean requests per
 * batch so far, rounded, at least 1; 0 when neither is known. */
static uint32_t baseline_batch(const struct append_opts *o, const struct figures *f)
{
	if (o->baseline_batch != 0)
		return o->baseline_batch;
	if (!f->have_stats || f->d.batches == 0)
		return 0;
	double mean = per(f->d.batch_requests, f->d.batches);
	return mean < 1.5 ? 1u : (uint32_t)llround(mean);
}

/* Runs one round of the baseline up to the events the server has stored. */
static int baseline_round(const struct append_opts *o, struct raw_lmdb *raw, uint64_t upto,
                          struct figures *f, char *errmsg, size_t errlen)
{
	uint32_t batch = baseline_batch(o, f);
	if (batch == 0) {
		snprintf(errmsg, errlen,
		         "the server reported no batches, so the baseline has no batch size: "
		         "give --baseline-batch R or --no-baseline");
		return WB_E_INVAL;
	}
	if (!o->json)
		fprintf(stderr,
		        "whizbang-bench: raw LMDB baseline to %llu events, %u requests "
		        "per batch ...\n",
		        (unsigned long long)upto, batch);
	if (f->raw_batch_min == 0 || batch < f->raw_batch_min)
		f->raw_batch_min = batch;
	if (batch > f->raw_batch_max)
		f->raw_batch_max = batch;
	return raw_lmdb_advance(raw, upto, batch, errmsg, errlen);
}

/* Runs the load in o->rounds rounds, each followed by its slice of the
 * baseline when raw is not NULL, and takes the stats around every round. */
static int run_rounds(const struct append_opts *o, struct shared *sh, uint32_t nthreads,
                      struct wb_client *ctl, struct raw_lmdb *raw, struct figures *f, char *errmsg,
                      size_t errlen)
{
	uint64_t prev = 0;
	for (uint32_t r = 1; r <= o->rounds; r++) {
		struct stats before, after;
		int src = fetch_stats(ctl, &before, errmsg, errlen);
		if (src != 0 && r == 1)
			fprintf(stderr, "whizbang-bench: no server stats: %s\n", errmsg);
		if (r == 1) {
			f->have_stats = src == 0;
			f->before = before;
		}
		uint64_t limit = sh->total_appends * r / o->rounds;
		/* Claims past the last limit were refused; start from it. */
		atomic_store(&sh->next_append, prev);
		double cpu0 = bench_cpu_seconds(RUSAGE_SELF);
		uint64_t t0 = bench_now_ns();
		pthread_mutex_lock(&sh->lock);
		sh->limit = limit;
		sh->done = 0;
		sh->round = r;
		pthread_cond_broadcast(&sh->cond);
		while (sh->done < nthreads)
			pthread_cond_wait(&sh->cond, &sh->lock);
		pthread_mutex_unlock(&sh->lock);
		f->secs += (double)(bench_now_ns() - t0) / 1e9;
		f->client_cpu_s += bench_cpu_seconds(RUSAGE_SELF) - cpu0;
		prev = limit;

		if (f->have_stats && src == 0 && fetch_stats(ctl, &after, errmsg, errlen) == 0) {
			add_stats(f, &before, &after);
		} else if (f->have_stats) {
			fprintf(stderr, "whizbang-bench: no server stats after round %u: %s\n", r,
			        errmsg);
			f->have_stats = false;
		}
		if (atomic_load(&sh->abort) || atomic_load(&bench_interrupted))
			return 0;
		if (raw != NULL) {
			uint64_t upto = limit * o->batch_events;
			int rc = baseline_round(o, raw, upto < o->events ? upto : o->events, f,
			                        errmsg, errlen);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* Starts the clients, runs the rounds, stops the clients and collects their
 * figures. raw may be NULL (no baseline). */
static int run_load(const struct append_opts *o, const char *address, struct wb_client *ctl,
                    struct raw_lmdb *raw, struct figures *f, char *errmsg, size_t errlen)
{
	int rc = 0;
	char(*names)[BENCH_STREAM_MAX] = calloc(o->streams, sizeof(*names));
	struct worker *ws = calloc(o->clients, sizeof(*ws));
	if (names == NULL || ws == NULL) {
		free(names);
		free(ws);
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	for (uint32_t i = 0; i < o->streams; i++)
		bench_stream_name(i, names[i]);

	struct shared sh = {
	        .o = o,
	        .address = address,
	        .names = names,
	        .total_appends = (o->events + o->batch_events - 1) / o->batch_events,
	};
	atomic_init(&sh.next_append, 0);
	atomic_init(&sh.abort, false);
	pthread_mutex_init(&sh.lock, NULL);
	pthread_cond_init(&sh.cond, NULL);

	uint32_t started = 0;
	for (; started < o->clients; started++) {
		ws[started].index = started;
		ws[started].sh = &sh;
		if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]) != 0)
			break;
	}
	if (started < o->clients) {
		rc = WB_RESOURCE_EXHAUSTED;
		snprintf(errmsg, errlen, "cannot start client thread %u", started);
		atomic_store(&sh.abort, true);
	}
	pthread_mutex_lock(&sh.lock);
	while (sh.ready < started)
		pthread_cond_wait(&sh.cond, &sh.lock);
	pthread_mutex_unlock(&sh.lock);

	if (!atomic_load(&sh.abort))
		rc = run_rounds(o, &sh, started, ctl, raw, f, errmsg, errlen);

	pthread_mutex_lock(&sh.lock);
	sh.finish = true;
	pthread_cond_broadcast(&sh.cond);
	pthread_mutex_unlock(&sh.lock);
	for (uint32_t i = 0; i < started; i++)
		pthread_join(ws[i].thread, NULL);

	int crc = 0;
	for (uint32_t i = 0; i < o->clients; i++) {
		f->events += ws[i].events;
		f->appends += ws[i].appends;
		f->errors += ws[i].errors;
		if (ws[i].rc != 0 && crc == 0) {
			crc = ws[i].rc;
			snprintf(errmsg, errlen, "%s", ws[i].errmsg);
		}
		if (ws[i].errors > 0)
			fprintf(stderr,
			        "whizbang-bench: client %u: %llu error responses, the first: %s\n",
			        i, (unsigned long long)ws[i].errors, ws[i].first_error);
	}
	/* A client's failure explains the run better than what followed. */
	if (crc != 0)
		rc = crc;
	if (rc == 0 && merge_latencies(ws, o->clients, f) != 0) {
		rc = WB_E_NOMEM;
		snprintf(errmsg, errlen, "out of memory");
	}
	for (uint32_t i = 0; i < o->clients; i++)
		bench_lat_free(&ws[i].lat);
	pthread_cond_destroy(&sh.cond);
	pthread_mutex_destroy(&sh.lock);
	free(ws);
	free(names);
	return rc;
}

int bench_append_load(const char *address, const struct bench_append_params *p,
                      struct bench_append_result *out, char *errmsg, size_t errlen)
{
	struct append_opts o = {
	        .clients = p->clients,
	        .pipeline = p->pipeline,
	        .events = p->events,
	        .size = p->size,
	        .streams = p->streams,
	        .batch_events = 1,
	        .rounds = 1,
	        .no_baseline = true,
	};
	struct figures f = {0};
	struct wb_client *ctl = NULL;
	int rc = bench_connect(&ctl, address, "whizbang-bench-control", 0, errmsg, errlen);
	if (rc != 0)
		return rc;
	rc = check_limits(&o, wb_server_info(ctl), errmsg, errlen);
	if (rc == 0) {
		struct sigaction old_sa;
		bench_sigint_catch(&old_sa);
		rc = run_load(&o, address, ctl, NULL, &f, errmsg, errlen);
		bench_sigint_restore(&old_sa);
	}
	wb_close(ctl);
	if (rc == 0 && atomic_load(&bench_interrupted)) {
		rc = WB_E_AGAIN;
		snprintf(errmsg, errlen, "interrupted after %llu of %llu events",
		         (unsigned long long)f.events, (unsigned long long)o.events);
	}
	if (rc != 0)
		return rc;
	*out = (struct bench_append_result){
	        .events = f.events,
	        .errors = f.errors,
	        .secs = f.secs,
	        .events_per_s = f.secs > 0 ? (double)f.events / f.secs : 0,
	        .lat = f.lat,
	        .mean_batch = f.have_stats ? per(f.d.batch_requests, f.d.batches) : 0,
	        .mean_batch_ms = f.have_stats ? per(f.d.commit_us_total, f.d.batches) / 1e3 : 0,
	};
	/* n counts the appends answered without an error, not every answer. */
	out->lat.n = (size_t)f.appends;
	return 0;
}

static int append_run(void *opts)
{
	const struct append_opts *o = opts;
	signal(SIGPIPE, SIG_IGN);

	char errmsg[BENCH_ERRMSG_MAX] = "";
	char parent[BENCH_PATH_MAX];
	char root[BENCH_PATH_MAX];
	char rdir[BENCH_PATH_MAX + 16];
	struct bench_target t = {0};
	struct figures f = {0};
	struct raw_lmdb *raw = NULL;
	uint64_t map_size = o->map_size != 0 ? o->map_size : bench_map_size(o->events, o->size);
	f.cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (bench_make_root(o->data_dir, parent, root) != 0)
		return 1;
	int rc = bench_target_open(&t, o->server, o->whizbangd, o->log_level, root, map_size,
	                           errmsg, sizeof(errmsg));
	if (rc != 0)
		goto err_after_mkdtemp;
	const char *address = t.address;
	f.spawned = t.srv.pid > 0;
	rc = check_limits(o, wb_server_info(t.ctl), errmsg, sizeof(errmsg));
	if (rc != 0)
		goto err_after_connect;

	if (!o->no_baseline) {
		/* Opened before the load so that a failure here costs no
		 * load; its first append waits for the first round's batch
		 * size. */
		snprintf(rdir, sizeof(rdir), "%s/raw", root);
		struct raw_params rp = {
		        .events = o->events,
		        .size = o->size,
		        .streams = o->streams,
		        .batch_events = o->batch_events,
		        .map_size = map_size,
		        .server_extras = o->server_extras,
		        .stop = &bench_interrupted,
		};
		if (mkdir(rdir, 0755) != 0) {
			snprintf(errmsg, sizeof(errmsg), "mkdir %s: %s", rdir, strerror(errno));
			rc = WB_E_IO;
			goto err_after_connect;
		}
		rc = raw_lmdb_open(&raw, rdir, &rp, errmsg, sizeof(errmsg));
		if (rc != 0)
			goto err_after_connect;
	}

	if (!o->json)
		fprintf(stderr, "whizbang-bench: %u clients appending %llu events to %s ...\n",
		        o->clients, (unsigned long long)o->events, address);
	struct sigaction old_sa;
	bench_sigint_catch(&old_sa);
	rc = run_load(o, address, t.ctl, raw, &f, errmsg, sizeof(errmsg));
	bench_sigint_restore(&old_sa);
	if (rc == 0 && atomic_load(&bench_interrupted)) {
		rc = WB_E_AGAIN;
		snprintf(errmsg, sizeof(errmsg), "interrupted after %llu of %llu events",
		         (unsigned long long)f.events, (unsigned long long)o->events);
	}
	if (raw != NULL && rc == 0) {
		raw_lmdb_result(raw, &f.raw);
		f.have_raw = f.raw.events == o->events;
	}
	raw_lmdb_close(raw);
	raw = NULL;
	wb_close(t.ctl);
	t.ctl = NULL;

	if (f.spawned)
		f.server_status = bench_server_finish(&t.srv, &f.server_cpu_s);
	if (rc != 0)
		goto err_after_server;

	bool ok = f.errors == 0 && f.server_status == 0 && f.events == o->events;
	if (o->json)
		print_json(o, address, root, &f, ok);
	else
		print_human(o, address, root, &f);
	if (f.errors > 0)
		fprintf(stderr,
		        "whizbang-bench: FAILED: %llu appends were answered with an error\n",
		        (unsigned long long)f.errors);
	else if (f.events != o->events)
		fprintf(stderr, "whizbang-bench: FAILED: %llu of %llu events were appended\n",
		        (unsigned long long)f.events, (unsigned long long)o->events);
	bench_rmtree(root);
	return ok ? 0 : 1;

err_after_connect:
	raw_lmdb_close(raw);
	wb_close(t.ctl);
err_after_server:
	if (t.srv.pid > 0)
		bench_server_stop(&t.srv);
err_after_mkdtemp:
	fprintf(stderr, "whizbang-bench: %s (%s)\n", errmsg, wb_error_name(rc));
	bench_rmtree(root);
	return 1;
}

const struct bench_command bench_append_command = BENCH_COMMAND(
        "append", append_table, struct append_opts, append_run,
        "C connections keep P appends of K events of B bytes in flight over S streams until N "
        "events are stored; then the raw-LMDB baseline does the same storage work and the ratio "
        "server/baseline is printed. See docs/BENCHMARKS.md.");
