/* whizbang-bench lease: lease -> commit cycles through the real server, with a
 * fraction of slow leases, and the append figure from the same server beside
 * them (docs/BENCHMARKS.md, "Leases").
 *
 * The happy path: spawn whizbangd (bench/server.c) unless --server names a
 * running one, connect C client threads, a control connection and a sampler
 * connection, take ServerStats, release the clients. Each client keeps P
 * cycles in flight: Lease{count 1}, and on its answer Commit{ack DURABLE} at
 * once, or, for a slow cycle, after holding the lease M ms in a per-thread
 * timer heap, so that a held lease never stops the thread's other cycles.
 * Meanwhile the sampler asks GetWatermark every 10 ms. When N cycles are
 * committed, the bench waits for the watermark to reach the last commit,
 * takes ServerStats again, runs the append load of `whizbang-bench append`
 * (append.c) with the same C and P against the same server, stops the server
 * and prints the figures.
 *
 * Failure modes: a server that does not start ends the run before any load.
 * A client whose connection fails stops every client from taking more work
 * and the run exits 1 with that failure. Every answer is checked (an error,
 * a missing or wrong result): the first error stops new work, the cycles in
 * flight are drained, and the run exits 1. So does a watermark that does not
 * reach the last commit within 10 s, an error of the append load, and a
 * nonzero exit of the spawned server. The first ^C drains the cycles in
 * flight and ends the run without the append load. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "wb.h"
#include "wb_error.h"

#define SAMPLE_MS 10
/* Every this many watermark samples, the sampler also takes ServerStats for
 * entries_waiting (GetStats costs the server more than GetWatermark). */
#define STATS_EVERY 10
/* After the load, how long the watermark may take to reach the last commit. */
#define SETTLE_MS 10000
/* Slow cycles are chosen by their global index at this resolution: F = 0.01
 * is exactly every 100th cycle. */
#define PPM 1000000u
/* The append load after the cycles: events of this many data bytes over this
 * many streams (docs/BENCHMARKS.md). */
#define APPEND_SIZE 100u
#define APPEND_STREAMS 16u

struct lease_opts {
	uint32_t clients;
	uint32_t pipeline;
	uint64_t cycles;
	uint32_t slow_ppm; /* the slow fraction in parts per million */
	uint32_t slow_ms;
	/* Held slow leases do not count against the pipeline: each client
	 * keeps P cycles leasing or committing, and holds beside them. */
	bool slow_beside;
	uint64_t lease_ms;
	const char *projection;
	bool no_ops;
	uint64_t append_events; /* 0: no append load */
	const char *server;
	const char *whizbangd;
	const char *data_dir;
	const char *log_level;
	bool json;
};

/* --slow-fraction: a fraction in [0, 1] ("0.01", "1e-3", "1%") into parts
 * per million, a uint32_t. */
static int parse_fraction(const char *text, void *field)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (end != text && *end == '%') {
		v /= 100.0;
		end++;
	}
	if (errno != 0 || end == text || *end != '\0' || !(v >= 0.0 && v <= 1.0))
		return WB_E_INVAL;
	*(uint32_t *)field = (uint32_t)llround(v * PPM);
	return 0;
}

/* --projection: 1 to WB_LEASE_NAME_MAX bytes, as its .bad below says. */
_Static_assert(WB_LEASE_NAME_MAX == 255, "--projection's usage error names the limit");
static int parse_projection(const char *text, void *field)
{
	size_t n = strlen(text);
	if (n == 0 || n > WB_LEASE_NAME_MAX)
		return WB_E_INVAL;
	*(const char **)field = text;
	return 0;
}

/* --no-append: no append load after the cycles. */
static int no_append(const char *text, void *field)
{
	(void)text;
	*(uint64_t *)field = 0;
	return 0;
}

/* The options of `whizbang-bench lease`, their defaults and bounds: the
 * command line is read from this table and its --help written from it. */
static const struct cli_opt lease_table[] = {
        {"--clients", "C", CLI_COUNT_AT(struct lease_opts, clients, 1, 1024), .required = true,
         .help = "client connections"},
        {"--pipeline", "P", CLI_COUNT_AT(struct lease_opts, pipeline, 1, 4096), .required = true,
         .help = "lease -> commit cycles each connection keeps in flight"},
        {"--cycles", "N", CLI_COUNT_AT(struct lease_opts, cycles, 1, UINT64_MAX / PPM),
         .required = true, .help = "cycles to commit in all"},
        {"--slow-fraction", "F", CLI_PARSE_AT(struct lease_opts, slow_ppm, parse_fraction),
         .dflt = "0", .bad = "needs a fraction in [0, 1] (0.01, 1e-3 or 1%)",
         .help = "the fraction of the cycles that hold their lease M ms before committing"},
        {"--slow-ms", "M", CLI_COUNT_AT(struct lease_opts, slow_ms, 0, 3600000), .dflt = "100",
         .help = "how long a slow cycle holds its lease"},
        {"--slow-beside", NULL, CLI_FLAG_AT(struct lease_opts, slow_beside),
         .help = "hold the slow leases beside the P cycles in flight instead of in their place"},
        {"--lease-ms", "D", CLI_COUNT_AT(struct lease_opts, lease_ms, 1, 86400000), .dflt = "30000",
         .help = "the duration every Lease asks for"},
        {"--projection", "NAME", CLI_PARSE_AT(struct lease_opts, projection, parse_projection),
         .dflt = "bench", .bad = "needs 1 to 255 bytes",
         .help = "the projection the leases are for"},
        {"--no-ops", NULL, CLI_FLAG_AT(struct lease_opts, no_ops),
         .help = "commit without the one small op"},
        {"--append-events", "N", CLI_COUNT_AT(struct lease_opts, append_events, 1, UINT64_MAX / 2),
         .dflt = "100000", .help = "events of the append load after the cycles"},
        {"--no-append", NULL, CLI_PARSE_AT(struct lease_opts, append_events, no_append),
         .help = "skip the append load"},
        BENCH_OPT_SERVER(struct lease_opts, server),
        BENCH_OPT_WHIZBANGD(struct lease_opts, whizbangd),
        BENCH_OPT_DATA_DIR(struct lease_opts, data_dir),
        BENCH_OPT_LOG_LEVEL(struct lease_opts, log_level),
        BENCH_OPT_JSON(struct lease_opts, json),
        {0},
};

/* The ServerStats figures this benchmark reports. */
struct lstats {
	char server_version[32];
	uint64_t leases_active;
	uint64_t leases_committed;
	uint64_t leases_released;
	uint64_t leases_expired;
	uint64_t leases_recovered;
	uint64_t gaps;
	uint64_t entries_waiting;
	double apply_wait_ms_mean;
	uint64_t apply_wait_ms_max;
	uint64_t watermark;
	uint64_t next_sequence;
	uint64_t batches;
	uint64_t batch_requests;
	uint64_t commit_us_total;
	uint64_t errors_total;
	char health[16];
	char health_reason[160];
};

struct lworker;

struct lshared {
	const struct lease_opts *o;
	const char *address;
	struct lworker *ws;
	uint32_t nws;
	atomic_uint_fast64_t next_cycle;
	/* The highest sequence whose commit has been answered, for the lag. */
	atomic_uint_fast64_t max_committed;
	atomic_bool abort;
	/* The start gate: clients connect and count themselves in ready; the
	 * driver takes the stats, starts the clock and sets go; each client
	 * counts itself in done when its last cycle is answered. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t ready;
	uint32_t done;
	bool go;
};

enum cycle_state { CY_FREE, CY_LEASING, CY_HOLDING, CY_COMMITTING };

struct cycle {
	enum cycle_state st;
	bool slow;
	uint64_t id; /* the request in flight */
	uint64_t index;
	uint64_t seq;
	uint64_t token;
	uint64_t sent_ns; /* the Lease, then the Commit */
	uint64_t granted_ns;
	uint64_t due_ns; /* CY_HOLDING: when to commit */
};

struct lworker {
	pthread_t thread;
	uint32_t index;
	struct lshared *sh;
	struct wb_client *c;
	/* cy, free_slots and heap have cap entries: the pipeline, or more with
	 * --slow-beside. */
	struct cycle *cy;
	uint32_t cap;
	uint32_t *free_slots;
	uint32_t nfree;
	/* The timer queue: held slots, a binary min-heap on due_ns. */
	uint32_t *heap;
	uint32_t nheap;
	/* Requests sent and not yet answered. */
	uint32_t outstanding;
	/* The lowest sequence of this client's slow leases not yet answered
	 * committed (UINT64_MAX: none), read by the sampler. */
	atomic_uint_fast64_t min_slow;
	/* Slots holding a lease (between its answer and its commit), read by the
	 * sampler: what the slow cycles take from the pipeline. */
	atomic_uint_fast32_t holding;
	struct bench_lat lease_lat;
	struct bench_lat fast_lat;
	struct bench_lat slow_lat;
	struct bench_lat hold;
	uint64_t committed;
	uint64_t slow_committed;
	uint64_t errors;
	int rc; /* a failure that stopped this client */
	char errmsg[256];
	char first_error[256]; /* the first error response or wrong answer */
	/* The one small op every commit carries (unless --no-ops). */
	Whizbang__V1__Value value;
	Whizbang__V1__Field field;
	Whizbang__V1__Field *fieldp;
	Whizbang__V1__Upsert upsert;
	Whizbang__V1__Op op;
	Whizbang__V1__Op *opp;
	Whizbang__V1__OpList ops;
	char entity_id[32];
};

struct sampler {
	pthread_t thread;
	struct lshared *sh;
	struct wb_client *c;
	atomic_bool stop;
	uint64_t samples;
	double lag_sum;
	uint64_t lag_max;
	uint64_t holding_sum;
	uint64_t holding_max;
	uint64_t waiting_samples;
	uint64_t waiting_sum;
	uint64_t waiting_max;
	uint64_t held_ns;
	uint64_t held_samples;
	uint64_t stretches;
	uint64_t longest_ns;
	uint64_t span_ns; /* first to last sample */
	int rc;
	char errmsg[256];
};

/* ---------------------------------------------------------------- stats */

static int fetch_stats(struct wb_client *c, struct lstats *out, char *errmsg, size_t errlen)
{
	Whizbang__V1__ServerStats *st;
	int rc = wb_stats(c, &st);
	if (rc != 0) {
		snprintf(errmsg, errlen, "GetStats: %s: %s", wb_error_name(rc), wb_errmsg(c));
		return rc;
	}
	*out = (struct lstats){
	        .leases_active = st->leases_active,
	        .leases_committed = st->leases_committed,
	        .leases_released = st->leases_released,
	        .leases_expired = st->leases_expired,
	        .leases_recovered = st->leases_recovered,
	        .gaps = st->gaps,
	        .entries_waiting = st->entries_waiting,
	        .apply_wait_ms_mean = st->apply_wait_ms_mean,
	        .apply_wait_ms_max = st->apply_wait_ms_max,
	        .watermark = st->watermark,
	        .next_sequence = st->next_sequence,
	        .batches = st->batches,
	        .batch_requests = st->batch_requests,
	        .commit_us_total = st->commit_us_total,
	        .errors_total = st->errors_total,
	};
	snprintf(out->server_version, sizeof(out->server_version), "%s",
	         st->server_version != NULL ? st->server_version : "");
	snprintf(out->health, sizeof(out->health), "%s", st->health != NULL ? st->health : "");
	snprintf(out->health_reason, sizeof(out->health_reason), "%s",
	         st->health_reason != NULL ? st->health_reason : "");
	wb_stats_free(st);
	return 0;
}

/* ---------------------------------------------------------------- the timer heap */

static bool due_before(const struct lworker *w, uint32_t a, uint32_t b)
{
	return w->cy[a].due_ns < w->cy[b].due_ns;
}

static void heap_push(struct lworker *w, uint32_t slot)
{
	uint32_t i = w->nheap++;
	w->heap[i] = slot;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!due_before(w, w->heap[i], w->heap[parent]))
			break;
		uint32_t t = w->heap[i];
		w->heap[i] = w->heap[parent];
		w->heap[parent] = t;
		i = parent;
	}
}

static uint32_t heap_pop(struct lworker *w)
{
	uint32_t top = w->heap[0];
	w->heap[0] = w->heap[--w->nheap];
	uint32_t i = 0;
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < w->nheap && due_before(w, w->heap[l], w->heap[m]))
			m = l;
		if (r < w->nheap && due_before(w, w->heap[r], w->heap[m]))
			m = r;
		if (m == i)
			break;
		uint32_t t = w->heap[i];
		w->heap[i] = w->heap[m];
		w->heap[m] = t;
		i = m;
	}
	return top;
}

/* ---------------------------------------------------------------- the clients */

static int worker_fail(struct lworker *w, int rc, const char *what)
{
	if (w->rc == 0) {
		w->rc = rc;
		snprintf(w->errmsg, sizeof(w->errmsg), "client %u: %s: %s: %s", w->index, what,
		         wb_error_name(rc), w->c != NULL ? wb_errmsg(w->c) : "");
	}
	atomic_store(&w->sh->abort, true);
	return rc;
}

/* Counts a wrong answer, remembers the first, and stops new work: any error
 * fails the run, so there is no point in going on. */
static void answer_error(struct lworker *w, const char *what, const Whizbang__V1__Response *resp,
                         const char *problem)
{
	if (w->errors++ == 0) {
		if (resp->error != NULL && resp->error->code != WHIZBANG__V1__ERROR_CODE__OK)
			snprintf(w->first_error, sizeof(w->first_error), "%s: %s: %s", what,
			         wb_error_name((int)resp->error->code),
			         resp->error->message != NULL ? resp->error->message : "");
		else
			snprintf(w->first_error, sizeof(w->first_error), "%s: %s", what, problem);
	}
	atomic_store(&w->sh->abort, true);
}

static bool is_error(const Whizbang__V1__Response *resp)
{
	return resp->error != NULL && resp->error->code != WHIZBANG__V1__ERROR_CODE__OK;
}

/* Cycle i of the run is slow when floor((i + 1) F) > floor(i F): exactly
 * floor(N F) slow cycles, evenly spread over the run. */
static bool cycle_is_slow(uint64_t i, uint32_t ppm)
{
	return ((i + 1) * ppm) / PPM > (i * ppm) / PPM;
}

static void publish_min_slow(struct lworker *w)
{
	uint64_t min = UINT64_MAX;
	for (uint32_t i = 0; i < w->cap; i++) {
		const struct cycle *cy = &w->cy[i];
		if (cy->slow && (cy->st == CY_HOLDING || cy->st == CY_COMMITTING) && cy->seq < min)
			min = cy->seq;
	}
	atomic_store(&w->min_slow, min);
}

static int send_lease(struct lworker *w, struct cycle *cy)
{
	const struct lease_opts *o = w->sh->o;
	struct wb_lease_args a = {
	        .projection = o->projection,
	        .duration_ms = o->lease_ms,
	        .count = 1,
	};
	cy->sent_ns = bench_now_ns();
	int rc = wb_lease_send(w->c, &a, &cy->id);
	if (rc != 0)
		return worker_fail(w, rc, "wb_lease_send");
	cy->st = CY_LEASING;
	w->outstanding++;
	return 0;
}

static int send_commit(struct lworker *w, struct cycle *cy, uint64_t now)
{
	const Whizbang__V1__OpList *ops = NULL;
	if (!w->sh->o->no_ops) {
		/* Read by protobuf-c while the request is packed, inside the
		 * call: one set of structs serves every commit. */
		snprintf(w->entity_id, sizeof(w->entity_id), "e-%llu",
		         (unsigned long long)cy->index);
		w->value.int_value = (int64_t)cy->seq;
		ops = &w->ops;
	}
	cy->sent_ns = now;
	int rc = wb_commit_send(w->c, cy->seq, cy->token, ops, false, false, &cy->id);
	if (rc != 0)
		return worker_fail(w, rc, "wb_commit_send");
	cy->st = CY_COMMITTING;
	w->outstanding++;
	if (cy->slow && bench_lat_push(&w->hold, now - cy->granted_ns) != 0)
		return worker_fail(w, WB_E_NOMEM, "recording latency");
	return 0;
}

static void free_slot(struct lworker *w, uint32_t slot)
{
	w->cy[slot].st = CY_FREE;
	w->free_slots[w->nfree++] = slot;
}

static void note_committed(struct lworker *w, uint64_t seq)
{
	atomic_uint_fast64_t *mc = &w->sh->max_committed;
	uint64_t cur = atomic_load(mc);
	while (seq > cur && !atomic_compare_exchange_weak(mc, &cur, seq))
		;
}

/* Handles the answer to a Lease. */
static int on_lease(struct lworker *w, uint32_t slot, const Whizbang__V1__Response *resp,
                    uint64_t now)
{
	struct cycle *cy = &w->cy[slot];
	const char *problem = NULL;
	if (is_error(resp))
		problem = "error";
	else if (resp->body_case != WHIZBANG__V1__RESPONSE__BODY_LEASE)
		problem = "the response holds no LeaseResult";
	else if (resp->lease->n_leases != 1 || resp->lease->leases[0] == NULL ||
	         resp->lease->leases[0]->sequence == 0)
		problem = "the LeaseResult does not hold exactly one grant";
	if (problem != NULL) {
		answer_error(w, "Lease", resp, problem);
		free_slot(w, slot);
		return 0;
	}
	if (bench_lat_push(&w->lease_lat, now - cy->sent_ns) != 0)
		return worker_fail(w, WB_E_NOMEM, "recording latency");
	cy->seq = resp->lease->leases[0]->sequence;
	cy->token = resp->lease->leases[0]->token;
	cy->granted_ns = now;
	if (!cy->slow)
		return send_commit(w, cy, now);
	cy->st = CY_HOLDING;
	cy->due_ns = now + (uint64_t)w->sh->o->slow_ms * 1000000u;
	heap_push(w, slot);
	atomic_fetch_add(&w->holding, 1);
	publish_min_slow(w);
	return 0;
}

/* Handles the answer to a Commit. */
static int on_commit(struct lworker *w, uint32_t slot, const Whizbang__V1__Response *resp,
                     uint64_t now)
{
	struct cycle *cy = &w->cy[slot];
	const char *problem = NULL;
	if (is_error(resp))
		problem = "error";
	else if (resp->body_case != WHIZBANG__V1__RESPONSE__BODY_COMMIT)
		problem = "the response holds no CommitResult";
	else if (resp->commit->sequence != cy->seq || resp->commit->resequenced)
		problem = "the commit landed at another sequence than its lease";
	if (problem != NULL) {
		answer_error(w, "Commit", resp, problem);
	} else {
		if (bench_lat_push(cy->slow ? &w->slow_lat : &w->fast_lat, now - cy->sent_ns) != 0)
			return worker_fail(w, WB_E_NOMEM, "recording latency");
		w->committed++;
		w->slow_committed += cy->slow ? 1u : 0u;
		note_committed(w, cy->seq);
	}
	bool slow = cy->slow;
	free_slot(w, slot);
	if (slow)
		publish_min_slow(w);
	return 0;
}

/* Waits for the next event of this client: an answer, or the first held
 * lease coming due.
 *
 * libwhizbang reads the socket in chunks, so answers may sit decoded-ready
 * in its buffer while the socket has nothing to read; poll() on the socket
 * would not see them. So while requests are outstanding the client blocks
 * in wb_recv(), which answers at once from that buffer, and fires due
 * timers when it returns: an answer comes within a group-commit batch or two
 * (milliseconds), which bounds how late a slow commit goes out (the "hold"
 * figure shows it). Only with nothing outstanding, when no answer can be
 * buffered, does it poll() the socket with the timeout of the first timer. */
static int wait_event(struct lworker *w, Whizbang__V1__Response **resp)
{
	*resp = NULL;
	if (w->outstanding > 0) {
		int rc = wb_recv(w->c, resp);
		return rc != 0 ? worker_fail(w, rc, "wb_recv") : 0;
	}
	uint64_t now = bench_now_ns();
	uint64_t due = w->cy[w->heap[0]].due_ns;
	if (due <= now)
		return 0;
	int timeout = (int)((due - now + 999999u) / 1000000u);
	struct pollfd p = {.fd = wb_fd(w->c), .events = POLLIN};
	int n = poll(&p, 1, timeout);
	if (n < 0 && errno != EINTR)
		return worker_fail(w, WB_E_IO, "poll");
	if (n > 0) {
		/* Nothing was asked: this is the server closing, or an error
		 * for the connection. wb_recv() says which. */
		int rc = wb_recv(w->c, resp);
		if (rc != 0)
			return worker_fail(w, rc, "wb_recv");
		whizbang__v1__response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return worker_fail(w, WB_INTERNAL, "an answer nothing was asked for");
	}
	return 0;
}

/* Adds free slots (--slow-beside, when the held leases fill the ones there
 * are). */
static int grow_slots(struct lworker *w)
{
	uint32_t cap = w->cap * 2;
	struct cycle *cy = realloc(w->cy, cap * sizeof(*cy));
	if (cy != NULL)
		w->cy = cy;
	uint32_t *fs = realloc(w->free_slots, cap * sizeof(*fs));
	if (fs != NULL)
		w->free_slots = fs;
	uint32_t *heap = realloc(w->heap, cap * sizeof(*heap));
	if (heap != NULL)
		w->heap = heap;
	if (cy == NULL || fs == NULL || heap == NULL)
		return worker_fail(w, WB_E_NOMEM, "allocating");
	memset(w->cy + w->cap, 0, (cap - w->cap) * sizeof(*cy));
	for (uint32_t i = cap; i > w->cap; i--)
		w->free_slots[w->nfree++] = i - 1;
	w->cap = cap;
	return 0;
}

/* Cycles that count against the pipeline: all but the free ones, or with
 * --slow-beside all but the free and the held ones. */
static uint32_t in_flight(const struct lworker *w)
{
	uint32_t busy = w->cap - w->nfree;
	return w->sh->o->slow_beside ? busy - w->nheap : busy;
}

/* Runs this client's share of the cycles. */
static int worker_run(struct lworker *w)
{
	struct lshared *sh = w->sh;
	const struct lease_opts *o = sh->o;
	uint32_t p = o->pipeline;
	bool more = true;
	for (;;) {
		uint64_t now = bench_now_ns();
		while (w->nheap > 0 && w->cy[w->heap[0]].due_ns <= now) {
			uint32_t slot = heap_pop(w);
			atomic_fetch_sub(&w->holding, 1);
			if (send_commit(w, &w->cy[slot], now) != 0)
				return w->rc;
		}
		while (more && in_flight(w) < p) {
			uint64_t i = atomic_fetch_add(&sh->next_cycle, 1);
			if (i >= o->cycles || atomic_load(&sh->abort) ||
			    atomic_load(&bench_interrupted)) {
				more = false;
				break;
			}
			if (w->nfree == 0 && grow_slots(w) != 0)
				return w->rc;
			struct cycle *cy = &w->cy[w->free_slots[--w->nfree]];
			cy->index = i;
			cy->slow = cycle_is_slow(i, o->slow_ppm);
			if (send_lease(w, cy) != 0)
				return w->rc;
		}
		if (w->outstanding == 0 && w->nheap == 0) {
			if (w->nfree == w->cap)
				return 0;
			return worker_fail(w, WB_INTERNAL, "a cycle is neither free nor in flight");
		}
		Whizbang__V1__Response *resp;
		if (wait_event(w, &resp) != 0)
			return w->rc;
		if (resp == NULL)
			continue;
		now = bench_now_ns();
		uint32_t j = 0;
		while (j < w->cap &&
		       !((w->cy[j].st == CY_LEASING || w->cy[j].st == CY_COMMITTING) &&
		         w->cy[j].id == resp->id))
			j++;
		if (j == w->cap) {
			whizbang__v1__response__free_unpacked(resp, NULL);
			return worker_fail(w, WB_INTERNAL, "a response to no request in flight");
		}
		w->outstanding--;
		int rc = w->cy[j].st == CY_LEASING ? on_lease(w, j, resp, now)
		                                   : on_commit(w, j, resp, now);
		whizbang__v1__response__free_unpacked(resp, NULL);
		if (rc != 0)
			return rc;
	}
}

static int worker_setup(struct lworker *w)
{
	uint32_t p = w->sh->o->pipeline;
	w->cap = p;
	w->cy = calloc(p, sizeof(*w->cy));
	w->free_slots = calloc(p, sizeof(*w->free_slots));
	w->heap = calloc(p, sizeof(*w->heap));
	if (w->cy == NULL || w->free_slots == NULL || w->heap == NULL)
		return worker_fail(w, WB_E_NOMEM, "allocating");
	for (uint32_t i = 0; i < p; i++)
		w->free_slots[i] = p - 1 - i;
	w->nfree = p;
	whizbang__v1__value__init(&w->value);
	w->value.kind_case = WHIZBANG__V1__VALUE__KIND_INT_VALUE;
	whizbang__v1__field__init(&w->field);
	w->field.name = "seq";
	w->field.value = &w->value;
	w->fieldp = &w->field;
	whizbang__v1__upsert__init(&w->upsert);
	w->upsert.type = BENCH_EVENT_TYPE;
	w->upsert.id = w->entity_id;
	w->upsert.n_fields = 1;
	w->upsert.fields = &w->fieldp;
	whizbang__v1__op__init(&w->op);
	w->op.kind_case = WHIZBANG__V1__OP__KIND_UPSERT;
	w->op.upsert = &w->upsert;
	w->opp = &w->op;
	whizbang__v1__op_list__init(&w->ops);
	w->ops.n_ops = 1;
	w->ops.ops = &w->opp;
	return 0;
}

static void *worker_main(void *arg)
{
	struct lworker *w = arg;
	struct lshared *sh = w->sh;
	w->rc = bench_connect(&w->c, sh->address, "whizbang-bench-lease", w->index, w->errmsg,
	                      sizeof(w->errmsg));
	if (w->rc != 0)
		atomic_store(&sh->abort, true);
	else
		worker_setup(w);
	pthread_mutex_lock(&sh->lock);
	sh->ready++;
	pthread_cond_broadcast(&sh->cond);
	while (!sh->go)
		pthread_cond_wait(&sh->cond, &sh->lock);
	pthread_mutex_unlock(&sh->lock);
	if (w->c != NULL && w->rc == 0 && !atomic_load(&sh->abort))
		worker_run(w);
	pthread_mutex_lock(&sh->lock);
	sh->done++;
	pthread_cond_broadcast(&sh->cond);
	pthread_mutex_unlock(&sh->lock);
	wb_close(w->c);
	w->c = NULL;
	return NULL;
}

/* ---------------------------------------------------------------- the watermark sampler */

/* The lowest sequence of a slow lease not yet committed, over every client,
 * and the slots holding a lease. */
static uint64_t min_slow(struct lshared *sh, uint64_t *holding)
{
	uint64_t min = UINT64_MAX;
	*holding = 0;
	for (uint32_t i = 0; i < sh->nws; i++) {
		uint64_t v = atomic_load(&sh->ws[i].min_slow);
		if (v < min)
			min = v;
		*holding += atomic_load(&sh->ws[i].holding);
	}
	return min;
}

/* Every SAMPLE_MS: the lag of the watermark behind the highest committed
 * sequence, and whether a slow lease holds it (the sequence right above the
 * watermark is a slow lease not yet committed). A sample stands for the
 * interval up to the next one. */
static void *sampler_main(void *arg)
{
	struct sampler *s = arg;
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	uint64_t first = 0, prev = 0, stretch_start = 0;
	bool prev_held = false;
	while (!atomic_load(&s->stop)) {
		uint64_t wm;
		int rc = wb_watermark(s->c, &wm, NULL);
		uint64_t t = bench_now_ns();
		if (rc != 0) {
			s->rc = rc;
			snprintf(s->errmsg, sizeof(s->errmsg), "GetWatermark: %s: %s",
			         wb_error_name(rc), wb_errmsg(s->c));
			atomic_store(&s->sh->abort, true);
			break;
		}
		uint64_t hi = atomic_load(&s->sh->max_committed);
		uint64_t lag = hi > wm ? hi - wm : 0;
		uint64_t holding;
		bool held = min_slow(s->sh, &holding) == wm + 1;
		s->holding_sum += holding;
		if (holding > s->holding_max)
			s->holding_max = holding;
		if (s->samples == 0)
			first = t;
		else if (prev_held)
			s->held_ns += t - prev;
		if (held && !prev_held) {
			stretch_start = t;
			s->stretches++;
		} else if (!held && prev_held && t - stretch_start > s->longest_ns) {
			s->longest_ns = t - stretch_start;
		}
		s->samples++;
		s->held_samples += held ? 1u : 0u;
		s->lag_sum += (double)lag;
		if (lag > s->lag_max)
			s->lag_max = lag;
		prev = t;
		prev_held = held;
		/* After the figures above, which belong to the instant of the
		 * watermark's answer. */
		if (s->samples % STATS_EVERY == 1) {
			Whizbang__V1__ServerStats *st;
			rc = wb_stats(s->c, &st);
			if (rc != 0) {
				s->rc = rc;
				snprintf(s->errmsg, sizeof(s->errmsg), "GetStats: %s: %s",
				         wb_error_name(rc), wb_errmsg(s->c));
				atomic_store(&s->sh->abort, true);
				break;
			}
			s->waiting_samples++;
			s->waiting_sum += st->entries_waiting;
			if (st->entries_waiting > s->waiting_max)
				s->waiting_max = st->entries_waiting;
			wb_stats_free(st);
		}

		next.tv_nsec += SAMPLE_MS * 1000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		/* Behind schedule (a slow answer): sample again at once, and keep
		 * the 10 ms from there rather than catch up in a burst. */
		uint64_t due = (uint64_t)next.tv_sec * 1000000000u + (uint64_t)next.tv_nsec;
		if (due < bench_now_ns())
			clock_gettime(CLOCK_MONOTONIC, &next);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
	if (prev_held && prev - stretch_start > s->longest_ns)
		s->longest_ns = prev - stretch_start;
	s->span_ns = prev - first;
	return NULL;
}

/* ---------------------------------------------------------------- figures */

struct lfigures {
	uint64_t committed;
	uint64_t slow_committed;
	uint64_t errors;
	double secs;
	struct bench_lat_summary lease, fast, slow, hold;
	struct sampler smp;
	bool have_stats;
	struct lstats before, after;
	bool settled;
	uint64_t max_committed;
	uint64_t final_watermark;
	bool have_append;
	struct bench_append_result app;
	int server_status;
	bool spawned;
	double client_cpu_s;
	double server_cpu_s;
	long cores;
};

static double per(uint64_t a, uint64_t b)
{
	return b != 0 ? (double)a / (double)b : 0;
}

static void print_lat(const char *label, const struct bench_lat_summary *s)
{
	if (s->n == 0) {
		printf("  %-12s none\n", label);
		return;
	}
	printf("  %-12s p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (%zu)\n", label,
	       s->p50 / 1e3, s->p99 / 1e3, s->p999 / 1e3, s->max / 1e3, s->n);
}

static void print_human(const struct lease_opts *o, const char *address, const char *root,
                        const struct lfigures *f)
{
	double cps = f->secs > 0 ? (double)f->committed / f->secs : 0;
	printf("whizbang-bench lease: %llu cycles, %u clients x %u in flight, slow %.2f %% held "
	       "%u ms, projection %s, %s per commit, leases of %llu ms\n",
	       (unsigned long long)o->cycles, o->clients, o->pipeline,
	       (double)o->slow_ppm * 100.0 / PPM, o->slow_ms, o->projection,
	       o->no_ops ? "no op" : "1 op", (unsigned long long)o->lease_ms);
	printf("server: whizbangd %s at %s (%s)\n", f->have_stats ? f->before.server_version : "?",
	       address, f->spawned ? "spawned" : "given with --server");
	if (f->spawned)
		printf("data under %s\n", root);
	printf("\ncycles (Lease, then Commit ack DURABLE)\n");
	printf("  committed    %llu cycles (%llu slow), %llu errors, in %.3f s\n",
	       (unsigned long long)f->committed, (unsigned long long)f->slow_committed,
	       (unsigned long long)f->errors, f->secs);
	printf("  throughput   %.0f cycles/s\n", cps);
	print_lat("lease", &f->lease);
	print_lat("commit fast", &f->fast);
	print_lat("commit slow", &f->slow);
	if (f->hold.n > 0)
		printf("  slow hold    p50 %.1f ms  p99 %.1f ms  max %.1f ms (asked %u ms; lease "
		       "answer to commit sent)\n",
		       f->hold.p50 / 1e3, f->hold.p99 / 1e3, f->hold.max / 1e3, o->slow_ms);
	const struct sampler *s = &f->smp;
	double span = (double)s->span_ns / 1e9;
	printf("watermark (GetWatermark every %d ms on its own connection, %llu samples)\n",
	       SAMPLE_MS, (unsigned long long)s->samples);
	double lag_mean = s->samples > 0 ? s->lag_sum / (double)s->samples : 0.0;
	printf("  lag          mean %.1f  max %llu sequences behind the highest committed "
	       "(mean %.1f ms of cycles)\n",
	       lag_mean, (unsigned long long)s->lag_max, cps > 0 ? lag_mean / cps * 1e3 : 0.0);
	printf("  holding      mean %.1f  max %llu of the %u slots hold a slow lease\n",
	       s->samples > 0 ? (double)s->holding_sum / (double)s->samples : 0.0,
	       (unsigned long long)s->holding_max, o->clients * o->pipeline);
	printf("  waiting      mean %.1f  max %llu entries final above the watermark "
	       "(ServerStats every %d ms)\n",
	       s->waiting_samples > 0 ? (double)s->waiting_sum / (double)s->waiting_samples : 0.0,
	       (unsigned long long)s->waiting_max, SAMPLE_MS * STATS_EVERY);
	printf("  held slow    %.3f s of %.3f s (%.1f %%) by a slow lease, in %llu stretches, "
	       "longest %.1f ms\n",
	       (double)s->held_ns / 1e9, span,
	       span > 0 ? 100.0 * (double)s->held_ns / 1e9 / span : 0.0,
	       (unsigned long long)s->stretches, (double)s->longest_ns / 1e6);
	printf("  after        %s %llu, the last commit %llu\n",
	       f->settled ? "reached" : "did NOT reach", (unsigned long long)f->final_watermark,
	       (unsigned long long)f->max_committed);
	if (f->have_stats) {
		const struct lstats *b = &f->before, *a = &f->after;
		uint64_t batches = a->batches - b->batches;
		printf("server (ServerStats)\n");
		printf("  leases       %llu committed, %llu expired, %llu released, %llu "
		       "recovered, %llu gaps (during the load)\n",
		       (unsigned long long)(a->leases_committed - b->leases_committed),
		       (unsigned long long)(a->leases_expired - b->leases_expired),
		       (unsigned long long)(a->leases_released - b->leases_released),
		       (unsigned long long)(a->leases_recovered - b->leases_recovered),
		       (unsigned long long)(a->gaps - b->gaps));
		printf("  after        %llu active, %llu entries waiting, watermark %llu, health "
		       "%s%s%s\n",
		       (unsigned long long)a->leases_active, (unsigned long long)a->entries_waiting,
		       (unsigned long long)a->watermark, a->health, a->health_reason[0] ? ": " : "",
		       a->health_reason);
		printf("  apply wait   mean %.2f ms  max %llu ms (commit to apply, since the "
		       "server started)\n",
		       a->apply_wait_ms_mean, (unsigned long long)a->apply_wait_ms_max);
		printf("  batches      %llu, mean %.1f requests, %.3f ms per batch\n",
		       (unsigned long long)batches,
		       per(a->batch_requests - b->batch_requests, batches),
		       per(a->commit_us_total - b->commit_us_total, batches) / 1e3);
	}
	if (f->have_append) {
		const struct bench_append_result *ap = &f->app;
		printf("append (the append load, same server, %u clients x %u in flight, %llu "
		       "events of %u B)\n",
		       o->clients, o->pipeline, (unsigned long long)o->append_events, APPEND_SIZE);
		printf("  throughput   %.0f events/s, %llu errors, in %.3f s\n", ap->events_per_s,
		       (unsigned long long)ap->errors, ap->secs);
		printf("  latency      p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", ap->lat.p50 / 1e3,
		       ap->lat.p99 / 1e3, ap->lat.max / 1e3);
		printf("  batches      mean %.1f requests, %.3f ms per batch\n", ap->mean_batch,
		       ap->mean_batch_ms);
		printf("cycles/s / append events/s = %.2f\n",
		       ap->events_per_s > 0 ? cps / ap->events_per_s : 0.0);
	}
	printf("cpu (user + system, of %.1f s on %ld cores, during the cycles)\n",
	       f->secs * (double)f->cores, f->cores);
	printf("  clients      %.2f s\n", f->client_cpu_s);
	if (f->spawned)
		printf("  whizbangd    %.2f s, from start to exit (cycles and append)\n",
		       f->server_cpu_s);
}

static void print_json(const struct lease_opts *o, const char *address, const char *root,
                       const struct lfigures *f, bool ok)
{
	struct bench_jw j = {true};
	double cps = f->secs > 0 ? (double)f->committed / f->secs : 0;
	bench_j_open(&j, NULL);
	bench_j_open(&j, "params");
	bench_j_u64(&j, "clients", o->clients);
	bench_j_u64(&j, "pipeline", o->pipeline);
	bench_j_u64(&j, "cycles", o->cycles);
	bench_j_num(&j, "slow_fraction", (double)o->slow_ppm / PPM);
	bench_j_u64(&j, "slow_ms", o->slow_ms);
	bench_j_u64(&j, "lease_ms", o->lease_ms);
	bench_j_str(&j, "projection", o->projection);
	bench_j_u64(&j, "ops_per_commit", o->no_ops ? 0u : 1u);
	bench_j_u64(&j, "append_events", o->append_events);
	bench_j_str(&j, "server", address);
	bench_j_lit(&j, "spawned", f->spawned ? "true" : "false");
	if (f->spawned)
		bench_j_str(&j, "data_dir", root);
	else
		bench_j_lit(&j, "data_dir", "null");
	bench_j_close(&j);

	bench_j_open(&j, "cycles");
	bench_j_u64(&j, "committed", f->committed);
	bench_j_u64(&j, "slow", f->slow_committed);
	bench_j_u64(&j, "errors", f->errors);
	bench_j_num(&j, "elapsed_s", f->secs);
	bench_j_num(&j, "cycles_per_s", cps);
	bench_j_lat(&j, "lease_us", &f->lease);
	bench_j_lat(&j, "commit_fast_us", &f->fast);
	bench_j_lat(&j, "commit_slow_us", &f->slow);
	bench_j_lat(&j, "slow_hold_us", &f->hold);
	bench_j_close(&j);

	const struct sampler *s = &f->smp;
	bench_j_open(&j, "watermark");
	bench_j_u64(&j, "interval_ms", SAMPLE_MS);
	bench_j_u64(&j, "samples", s->samples);
	bench_j_num(&j, "lag_mean", s->samples > 0 ? s->lag_sum / (double)s->samples : 0.0);
	bench_j_u64(&j, "lag_max", s->lag_max);
	bench_j_num(&j, "lag_mean_ms",
	            cps > 0 && s->samples > 0 ? s->lag_sum / (double)s->samples / cps * 1e3 : 0.0);
	bench_j_num(&j, "holding_mean",
	            s->samples > 0 ? (double)s->holding_sum / (double)s->samples : 0.0);
	bench_j_u64(&j, "holding_max", s->holding_max);
	bench_j_num(&j, "entries_waiting_mean",
	            s->waiting_samples > 0 ? (double)s->waiting_sum / (double)s->waiting_samples
	                                   : 0.0);
	bench_j_u64(&j, "entries_waiting_max", s->waiting_max);
	bench_j_num(&j, "sampled_s", (double)s->span_ns / 1e9);
	bench_j_num(&j, "held_by_slow_s", (double)s->held_ns / 1e9);
	bench_j_num(&j, "held_by_slow_fraction",
	            s->span_ns > 0 ? (double)s->held_ns / (double)s->span_ns : 0.0);
	bench_j_u64(&j, "held_stretches", s->stretches);
	bench_j_num(&j, "held_longest_ms", (double)s->longest_ns / 1e6);
	bench_j_lit(&j, "settled", f->settled ? "true" : "false");
	bench_j_u64(&j, "final", f->final_watermark);
	bench_j_u64(&j, "last_committed", f->max_committed);
	bench_j_close(&j);

	if (f->have_stats) {
		const struct lstats *b = &f->before, *a = &f->after;
		uint64_t batches = a->batches - b->batches;
		bench_j_open(&j, "server_stats");
		bench_j_str(&j, "server_version", b->server_version);
		bench_j_u64(&j, "leases_committed", a->leases_committed - b->leases_committed);
		bench_j_u64(&j, "leases_expired", a->leases_expired - b->leases_expired);
		bench_j_u64(&j, "leases_released", a->leases_released - b->leases_released);
		bench_j_u64(&j, "leases_recovered", a->leases_recovered - b->leases_recovered);
		bench_j_u64(&j, "gaps", a->gaps - b->gaps);
		bench_j_u64(&j, "leases_active", a->leases_active);
		bench_j_u64(&j, "entries_waiting", a->entries_waiting);
		bench_j_num(&j, "apply_wait_ms_mean", a->apply_wait_ms_mean);
		bench_j_u64(&j, "apply_wait_ms_max", a->apply_wait_ms_max);
		bench_j_u64(&j, "watermark", a->watermark);
		bench_j_u64(&j, "batches", batches);
		bench_j_num(&j, "mean_requests_per_batch",
		            per(a->batch_requests - b->batch_requests, batches));
		bench_j_num(&j, "mean_batch_ms",
		            per(a->commit_us_total - b->commit_us_total, batches) / 1e3);
		bench_j_u64(&j, "errors_total", a->errors_total - b->errors_total);
		bench_j_str(&j, "health", a->health);
		bench_j_str(&j, "health_reason", a->health_reason);
		bench_j_close(&j);
	} else {
		bench_j_lit(&j, "server_stats", "null");
	}

	if (f->have_append) {
		const struct bench_append_result *ap = &f->app;
		bench_j_open(&j, "append");
		bench_j_u64(&j, "events", ap->events);
		bench_j_u64(&j, "size", APPEND_SIZE);
		bench_j_u64(&j, "errors", ap->errors);
		bench_j_num(&j, "elapsed_s", ap->secs);
		bench_j_num(&j, "events_per_s", ap->events_per_s);
		bench_j_lat(&j, "latency_us", &ap->lat);
		bench_j_num(&j, "mean_requests_per_batch", ap->mean_batch);
		bench_j_num(&j, "mean_batch_ms", ap->mean_batch_ms);
		bench_j_close(&j);
		bench_j_num(&j, "cycles_per_append_event",
		            ap->events_per_s > 0 ? cps / ap->events_per_s : 0.0);
	} else {
		bench_j_lit(&j, "append", "null");
		bench_j_lit(&j, "cycles_per_append_event", "null");
	}

	bench_j_open(&j, "cpu_s");
	bench_j_u64(&j, "cores", (uint64_t)f->cores);
	bench_j_num(&j, "clients", f->client_cpu_s);
	if (f->spawned)
		bench_j_num(&j, "whizbangd", f->server_cpu_s);
	else
		bench_j_lit(&j, "whizbangd", "null");
	bench_j_close(&j);
	bench_json_exit_status(&j, "server_exit_status", f->spawned, f->server_status);
	bench_j_lit(&j, "ok", ok ? "true" : "false");
	bench_j_close(&j);
	fputc('\n', stdout);
}

/* ---------------------------------------------------------------- the load */

/* Starts the clients and the sampler, runs the cycles, and collects the
 * figures; then waits for the watermark to reach the last commit. */
static int run_cycles(const struct lease_opts *o, const char *address, struct wb_client *ctl,
                      struct lfigures *f, char *errmsg, size_t errlen)
{
	struct lworker *ws = calloc(o->clients, sizeof(*ws));
	if (ws == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	struct lshared sh = {.o = o, .address = address, .ws = ws, .nws = o->clients};
	atomic_init(&sh.next_cycle, 0);
	atomic_init(&sh.max_committed, 0);
	atomic_init(&sh.abort, false);
	pthread_mutex_init(&sh.lock, NULL);
	pthread_cond_init(&sh.cond, NULL);
	for (uint32_t i = 0; i < o->clients; i++) {
		atomic_init(&ws[i].min_slow, UINT64_MAX);
		atomic_init(&ws[i].holding, 0);
	}

	int rc = 0;
	struct sampler *s = &f->smp;
	s->sh = &sh;
	atomic_init(&s->stop, false);
	rc = bench_connect(&s->c, address, "whizbang-bench-watermark", 0, errmsg, errlen);
	if (rc != 0) {
		free(ws);
		return rc;
	}

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

	bool sampling = false;
	if (!atomic_load(&sh.abort)) {
		int src = fetch_stats(ctl, &f->before, errmsg, errlen);
		f->have_stats = src == 0;
		if (src != 0)
			fprintf(stderr, "whizbang-bench: no server stats: %s\n", errmsg);
		sampling = pthread_create(&s->thread, NULL, sampler_main, s) == 0;
		if (!sampling) {
			rc = WB_RESOURCE_EXHAUSTED;
			snprintf(errmsg, errlen, "cannot start the watermark sampler");
			atomic_store(&sh.abort, true);
		}
	}
	double cpu0 = bench_cpu_seconds(RUSAGE_SELF);
	uint64_t t0 = bench_now_ns();
	pthread_mutex_lock(&sh.lock);
	sh.go = true;
	pthread_cond_broadcast(&sh.cond);
	while (sh.done < started)
		pthread_cond_wait(&sh.cond, &sh.lock);
	pthread_mutex_unlock(&sh.lock);
	f->secs = (double)(bench_now_ns() - t0) / 1e9;
	f->client_cpu_s = bench_cpu_seconds(RUSAGE_SELF) - cpu0;
	atomic_store(&s->stop, true);
	for (uint32_t i = 0; i < started; i++)
		pthread_join(ws[i].thread, NULL);
	if (sampling)
		pthread_join(s->thread, NULL);
	wb_close(s->c);
	s->c = NULL;
	if (s->rc != 0 && rc == 0) {
		rc = s->rc;
		snprintf(errmsg, errlen, "the watermark sampler: %s", s->errmsg);
	}

	struct bench_lat lease = {0}, fast = {0}, slow = {0}, hold = {0};
	int crc = 0;
	for (uint32_t i = 0; i < o->clients; i++) {
		struct lworker *w = &ws[i];
		f->committed += w->committed;
		f->slow_committed += w->slow_committed;
		f->errors += w->errors;
		if (w->rc != 0 && crc == 0) {
			crc = w->rc;
			snprintf(errmsg, errlen, "%s", w->errmsg);
		}
		if (w->errors > 0)
			fprintf(stderr,
			        "whizbang-bench: client %u: %llu wrong answers, the first: %s\n", i,
			        (unsigned long long)w->errors, w->first_error);
		if (crc == 0 && (bench_lat_take(&lease, &w->lease_lat) != 0 ||
		                 bench_lat_take(&fast, &w->fast_lat) != 0 ||
		                 bench_lat_take(&slow, &w->slow_lat) != 0 ||
		                 bench_lat_take(&hold, &w->hold) != 0)) {
			crc = WB_E_NOMEM;
			snprintf(errmsg, errlen, "out of memory");
		}
		bench_lat_free(&w->lease_lat);
		bench_lat_free(&w->fast_lat);
		bench_lat_free(&w->slow_lat);
		bench_lat_free(&w->hold);
		free(w->cy);
		free(w->free_slots);
		free(w->heap);
	}
	/* A client's failure explains the run better than what followed. */
	if (crc != 0)
		rc = crc;
	bench_lat_summarize(&lease, &f->lease);
	bench_lat_summarize(&fast, &f->fast);
	bench_lat_summarize(&slow, &f->slow);
	bench_lat_summarize(&hold, &f->hold);
	bench_lat_free(&lease);
	bench_lat_free(&fast);
	bench_lat_free(&slow);
	bench_lat_free(&hold);
	f->max_committed = atomic_load(&sh.max_committed);

	/* Every commit was answered durable; the watermark must now reach the
	 * last of them, since no lease is left open below it. */
	if (rc == 0 && f->committed > 0) {
		bool reached = false;
		int wrc = wb_wait_watermark(ctl, f->max_committed, SETTLE_MS, &f->final_watermark,
		                            &reached);
		if (wrc != 0) {
			rc = wrc;
			snprintf(errmsg, errlen, "WaitForWatermark: %s: %s", wb_error_name(wrc),
			         wb_errmsg(ctl));
		}
		f->settled = wrc == 0 && reached;
	}
	if (f->have_stats && fetch_stats(ctl, &f->after, errmsg, errlen) != 0) {
		fprintf(stderr, "whizbang-bench: no server stats after the load: %s\n", errmsg);
		f->have_stats = false;
	}
	pthread_cond_destroy(&sh.cond);
	pthread_mutex_destroy(&sh.lock);
	free(ws);
	return rc;
}

/* ---------------------------------------------------------------- the subcommand */

static int lease_run(void *opts)
{
	const struct lease_opts *o = opts;
	if (o->slow_ppm > 0 && (uint64_t)o->slow_ms >= o->lease_ms) {
		fprintf(stderr,
		        "whizbang-bench: --slow-ms %u does not fit in leases of --lease-ms %llu\n",
		        o->slow_ms, (unsigned long long)o->lease_ms);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);

	char errmsg[BENCH_ERRMSG_MAX] = "";
	char parent[BENCH_PATH_MAX];
	char root[BENCH_PATH_MAX];
	struct bench_target t = {0};
	struct lfigures f = {0};
	f.cores = sysconf(_SC_NPROCESSORS_ONLN);
	/* Ledger entries are smaller than 100-byte events; counting them as
	 * events leaves room to spare. */
	uint64_t map_size = bench_map_size(o->cycles + o->append_events, APPEND_SIZE);

	int rc = 0;
	if (o->server == NULL) {
		if (bench_make_root(o->data_dir, parent, root) != 0)
			return 1;
	} else {
		root[0] = '\0';
	}
	rc = bench_target_open(&t, o->server, o->whizbangd, o->log_level, root, map_size, NULL,
	                       errmsg, sizeof(errmsg));
	if (rc != 0)
		goto err_after_mkdtemp;
	const char *address = t.address;
	f.spawned = t.srv.pid > 0;

	if (!o->json)
		fprintf(stderr, "whizbang-bench: %u clients running %llu lease cycles on %s ...\n",
		        o->clients, (unsigned long long)o->cycles, address);
	struct sigaction old_sa;
	bench_sigint_catch(&old_sa);
	rc = run_cycles(o, address, t.ctl, &f, errmsg, sizeof(errmsg));
	bench_sigint_restore(&old_sa);
	wb_close(t.ctl);
	t.ctl = NULL;
	if (rc == 0 && atomic_load(&bench_interrupted)) {
		rc = WB_E_AGAIN;
		snprintf(errmsg, sizeof(errmsg), "interrupted after %llu of %llu cycles",
		         (unsigned long long)f.committed, (unsigned long long)o->cycles);
	}
	if (rc != 0)
		goto err_after_server;

	if (o->append_events > 0 && f.errors == 0) {
		if (!o->json)
			fprintf(stderr,
			        "whizbang-bench: the append load, %llu events, on the same server "
			        "...\n",
			        (unsigned long long)o->append_events);
		struct bench_append_params ap = {
		        .clients = o->clients,
		        .pipeline = o->pipeline,
		        .events = o->append_events,
		        .size = APPEND_SIZE,
		        .streams = APPEND_STREAMS,
		};
		rc = bench_append_load(address, &ap, &f.app, errmsg, sizeof(errmsg));
		if (rc != 0)
			goto err_after_server;
		f.have_append = true;
	}

	if (f.spawned)
		f.server_status = bench_server_finish(&t.srv, &f.server_cpu_s);

	bool app_ok = o->append_events == 0 ||
	              (f.have_append && f.app.errors == 0 && f.app.events == o->append_events);
	bool ok = f.errors == 0 && f.committed == o->cycles && f.settled && f.server_status == 0 &&
	          app_ok;
	if (o->json)
		print_json(o, address, root, &f, ok);
	else
		print_human(o, address, root, &f);
	if (f.errors > 0)
		fprintf(stderr, "whizbang-bench: FAILED: %llu answers were errors or wrong\n",
		        (unsigned long long)f.errors);
	else if (f.committed != o->cycles)
		fprintf(stderr, "whizbang-bench: FAILED: %llu of %llu cycles were committed\n",
		        (unsigned long long)f.committed, (unsigned long long)o->cycles);
	else if (!f.settled)
		fprintf(stderr,
		        "whizbang-bench: FAILED: the watermark did not reach the last commit "
		        "within "
		        "%d ms\n",
		        SETTLE_MS);
	else if (!app_ok)
		fprintf(stderr, "whizbang-bench: FAILED: the append load had errors\n");
	if (o->server == NULL)
		bench_rmtree(root);
	return ok ? 0 : 1;

err_after_server:
	wb_close(t.ctl);
	if (t.srv.pid > 0)
		bench_server_stop(&t.srv);
err_after_mkdtemp:
	fprintf(stderr, "whizbang-bench: %s (%s)\n", errmsg, wb_error_name(rc));
	if (o->server == NULL)
		bench_rmtree(root);
	return 1;
}

const struct bench_command bench_lease_command = BENCH_COMMAND(
        "lease", lease_table, struct lease_opts, lease_run,
        "C connections keep P Lease -> Commit cycles in flight until N are committed, a fraction "
        "F holding their lease M ms first, while the watermark is sampled; then the append load "
        "runs against the same server. See docs/BENCHMARKS.md.");
