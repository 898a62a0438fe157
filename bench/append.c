/* whizbang-bench append: pipelined appends from many connections, measured
 * against the raw-LMDB baseline.
 *
 * The happy path: spawn whizbangd on 127.0.0.1:0 with a fresh data directory
 * (unless --server names a running one), read its port file, connect C client
 * threads and a control connection, take ServerStats, release the clients
 * (each keeps P appends in flight until N events are appended between them),
 * take ServerStats again, stop the server with SIGTERM, then run the raw-LMDB
 * baseline with the batch size the server reached and print both. With
 * --tls the load's connections are TLS (a spawned server gets a CA and a
 * certificate made for the run); with --scram each logs in with
 * SCRAM-SHA-256 as a user the run makes; with --handshakes N, N fresh
 * connections made one after another after the load measure what
 * connecting costs.
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
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "append_wire.h"
#include "bench.h"
#include "frame.h"
#include "raw_lmdb.h"
#include "wb.h"
#include "wb_certs.h"
#include "wb_error.h"

/* The user the load's connections log in as with --scram. */
#define SCRAM_USER "whizbang-bench"

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
	bool random_ids;    /* UUIDv4-like ids instead of UUIDv7 */
	bool tls;
	const char *tls_ca_file; /* with --server */
	bool scram;
	uint32_t scram_iterations;
	uint32_t handshakes;
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
        BENCH_OPT_RANDOM_IDS(struct append_opts, random_ids),
        {"--no-baseline", NULL, CLI_FLAG_AT(struct append_opts, no_baseline),
         .help = "skip the raw-LMDB baseline"},
        {"--tls", NULL, CLI_FLAG_AT(struct append_opts, tls),
         .help = "the load's connections use TLS: a spawned whizbangd gets a CA and a "
                 "certificate made for the run (--tls=auto, so the control connection stays "
                 "plaintext on loopback); with --server, give --tls-ca-file"},
        {"--tls-ca-file", "FILE", CLI_TEXT_AT(struct append_opts, tls_ca_file),
         .help = "the CA file that a running server's certificate chains to (--server and "
                 "--tls)"},
        {"--scram", NULL, CLI_FLAG_AT(struct append_opts, scram),
         .help = "each connection logs in with SCRAM-SHA-256 as user " SCRAM_USER
                 " (role writer), which the control connection makes (a running server's "
                 "anonymous role must be admin)"},
        {"--scram-iterations", "N",
         CLI_UINT_AT(struct append_opts, scram_iterations, 4096, 10000000), .dflt = "100000",
         .help = "PBKDF2 iterations of that user's password, which each login repeats on the "
                 "client (a spawned whizbangd gets --scram-iterations N)"},
        {"--handshakes", "N", CLI_COUNT_AT(struct append_opts, handshakes, 0, 1000000), .dflt = "0",
         .help = "after the load, N fresh connections one after another, made as the load's "
                 "were (TCP, TLS handshake, Hello, login), each closed once made: how many "
                 "per second"},
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

/* ---------------------------------------------------------------- the clients
 *
 * One thread and one epoll set drive every connection, as redis-benchmark
 * does: a load generator that costs a thread and a wake-up per client, and a
 * protobuf pack and unpack per append, takes a real share of a small machine
 * from the server it measures. Each connection keeps P appends in flight:
 * when answers arrive, the freed slots are refilled at once and everything
 * queued goes out in one send(). A request is the events' template (packed
 * once by protobuf-c) behind a few bytes of envelope, with fresh random ids
 * written in place; an answer is read by walking its fields. Nothing is
 * allocated per append, and latencies go into a histogram of fixed size.
 *
 * A request's id carries its slot in the low 16 bits (P <= 65536), so an
 * answer finds its slot without a search. */

#define SLOT_BITS 16
/* The largest response frame read; an append's answer is a few bytes, an
 * error's a sentence. */
#define RESPONSE_MAX (1u << 20)
/* Requests queued in a connection's output buffer at most: enough for one
 * send() to carry a whole pipeline of small appends. */
#define OUT_BYTES (256u << 10)
#define IN_BYTES (64u << 10)

struct slot {
	uint64_t id;
	uint64_t sent_ns;
	uint32_t n;
	bool busy;
};

struct load;

struct conn {
	struct load *ld;
	struct wb_client *c; /* connected and greeted; its socket is used directly */
	int fd;
	uint32_t index;
	bool dead;
	bool pollout; /* EPOLLOUT is asked for: out holds bytes the socket refused */
	uint64_t seq; /* requests sent: the stream rotation and the ids */
	struct slot *slots;
	uint32_t *free_slots;
	uint32_t nfree;
	uint8_t *out; /* unsent requests are out[opos..olen) */
	size_t opos;
	size_t olen;
	uint8_t *in; /* unparsed input is in[0..ilen) */
	size_t ilen;
	size_t icap;
	uint64_t appends;
	uint64_t events;
	uint64_t errors;
	char first_error[256]; /* the first error response */
};

struct load {
	const struct append_opts *o;
	const struct bench_secure *sec;
	char (*names)[BENCH_STREAM_MAX];
	size_t *name_lens;
	uint8_t *data;
	struct aw_events full; /* K events */
	struct aw_events last; /* the events % K of the last append; n 0: none */
	size_t frame_max;
	size_t ocap;
	struct conn *conns;
	uint32_t nconns;
	int ep;
	struct bench_rng rng;
	struct bench_ids ids;
	uint64_t total_appends;
	uint64_t next_append; /* the next append to send, counted from 0 */
	uint64_t limit;       /* appends this round may reach */
	uint64_t deadline_ns; /* no append is sent from then on; 0: none */
	uint64_t inflight;
	bool stop; /* a connection failed: take no more work */
	int rc;
	char errmsg[256];
	struct bench_hist hist; /* per append, ns */
};

static void load_fail(struct load *ld, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void load_fail(struct load *ld, int rc, const char *fmt, ...)
{
	ld->stop = true;
	if (ld->rc != 0)
		return;
	ld->rc = rc;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->errmsg, sizeof(ld->errmsg), fmt, ap);
	va_end(ap);
}

/* Ends a connection's part in the load: its appends in flight are given up
 * and the load takes no more work. */
static void conn_fail(struct conn *cn, int rc, const char *what, const char *why)
{
	struct load *ld = cn->ld;
	load_fail(ld, rc, "client %u: %s: %s: %s", cn->index, what, wb_error_name(rc), why);
	if (cn->dead)
		return;
	cn->dead = true;
	ld->inflight -= ld->o->pipeline - cn->nfree;
	epoll_ctl(ld->ep, EPOLL_CTL_DEL, cn->fd, NULL);
}

static void conn_want_write(struct conn *cn, bool on)
{
	if (cn->pollout == on)
		return;
	struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u), .data.ptr = cn};
	if (epoll_ctl(cn->ld->ep, EPOLL_CTL_MOD, cn->fd, &ev) != 0) {
		conn_fail(cn, WB_E_IO, "epoll_ctl", strerror(errno));
		return;
	}
	cn->pollout = on;
}

/* Writes what out holds, through TLS when the connection has it; what the
 * socket refuses (and, with TLS, ciphertext the library still holds) waits
 * for EPOLLOUT. out is empty again once the library has taken it all. */
static void conn_flush(struct conn *cn)
{
	while (!cn->dead) {
		size_t taken = 0;
		int rc = wb_raw_write(cn->c, cn->out + cn->opos, cn->olen - cn->opos, &taken);
		if (rc != 0) {
			conn_fail(cn, rc, "send", wb_errmsg(cn->c));
			return;
		}
		cn->opos += taken;
		if (cn->opos == cn->olen)
			cn->opos = cn->olen = 0;
		bool waiting = cn->olen != 0 || wb_raw_pending(cn->c);
		if (!waiting || taken == 0) {
			conn_want_write(cn, waiting);
			return;
		}
	}
}

/* Queues an append in every free slot while the round has work left, once
 * the output buffer is empty. */
static void conn_fill(struct conn *cn)
{
	struct load *ld = cn->ld;
	const struct append_opts *o = ld->o;
	if (cn->dead || cn->olen != 0 || cn->nfree == 0)
		return;
	uint64_t now = 0;
	while (cn->nfree > 0 && cn->olen + ld->frame_max <= ld->ocap) {
		if (ld->stop || ld->next_append >= ld->limit || atomic_load(&bench_interrupted))
			break;
		if (now == 0)
			now = bench_now_ns();
		if (ld->deadline_ns != 0 && now >= ld->deadline_ns)
			break;
		uint64_t a = ld->next_append++;
		uint64_t left = o->events - a * o->batch_events;
		const struct aw_events *ev = left < o->batch_events ? &ld->last : &ld->full;
		/* Each client walks the streams from its own offset, so every
		 * stream is written by several clients at once. */
		uint64_t s = cn->seq++;
		uint32_t stream = (uint32_t)((cn->index + s) % o->streams);
		uint32_t j = cn->free_slots[--cn->nfree];
		struct slot *sl = &cn->slots[j];
		sl->id = ((s + 1) << SLOT_BITS) | j;
		sl->sent_ns = now;
		sl->n = ev->n;
		sl->busy = true;
		size_t at;
		uint8_t *frame = cn->out + cn->olen;
		cn->olen += aw_request_put(frame, sl->id, ld->names[stream], ld->name_lens[stream],
		                           ev, &at);
		for (uint32_t i = 0; i < ev->n; i++)
			bench_ids_fill(&ld->ids, frame + at + ev->id_off[i], 1, 16);
		ld->inflight++;
	}
}

/* Checks one append's answer; counts an error answer and remembers the
 * first. */
static void conn_answer(struct conn *cn, const uint8_t *payload, uint32_t len, uint64_t now)
{
	struct load *ld = cn->ld;
	struct aw_response r;
	if (aw_response_decode(payload, len, &r) != 0) {
		conn_fail(cn, WB_E_IO, "reading a response", "the response is malformed");
		return;
	}
	uint32_t j = (uint32_t)(r.id & ((1u << SLOT_BITS) - 1));
	if (j >= ld->o->pipeline || !cn->slots[j].busy || cn->slots[j].id != r.id) {
		conn_fail(cn, WB_INTERNAL, "reading a response",
		          "a response to no request in flight");
		return;
	}
	struct slot *sl = &cn->slots[j];
	const char *problem = NULL;
	char buf[200];
	if (r.code != WHIZBANG__V1__ERROR_CODE__OK) {
		snprintf(buf, sizeof(buf), "%s: %.*s", wb_error_name((int)r.code),
		         (int)(r.message_len < 150 ? r.message_len : 150), (const char *)r.message);
		problem = buf;
	} else if (!r.has_append) {
		problem = "the response holds no AppendResult";
	} else if (r.last_position - r.first_position + 1 != sl->n) {
		problem = "the positions answered do not match the number of events";
	} else if (r.idempotent_replay) {
		problem = "the server took fresh events for a replay";
	}
	if (problem == NULL) {
		cn->appends++;
		cn->events += sl->n;
	} else if (cn->errors++ == 0) {
		snprintf(cn->first_error, sizeof(cn->first_error), "%s", problem);
	}
	bench_hist_record(&ld->hist, now - sl->sent_ns);
	sl->busy = false;
	cn->free_slots[cn->nfree++] = j;
	ld->inflight--;
}

/* Handles every whole answer in the input buffer, keeping a partial one. */
static void conn_answers(struct conn *cn)
{
	uint64_t now = bench_now_ns();
	size_t pos = 0;
	for (;;) {
		const uint8_t *payload;
		uint32_t len;
		size_t used;
		enum frame_status st = frame_decode(cn->in + pos, cn->ilen - pos, RESPONSE_MAX,
		                                    &payload, &len, &used);
		if (st == FRAME_AGAIN)
			break;
		if (st == FRAME_ERROR) {
			conn_fail(cn, WB_E_IO, "reading", "a response frame above 1 MiB");
			return;
		}
		conn_answer(cn, payload, len, now);
		if (cn->dead)
			return;
		pos += used;
	}
	cn->ilen -= pos;
	if (cn->ilen > 0 && pos > 0)
		memmove(cn->in, cn->in + pos, cn->ilen);
}

/* Reads everything the connection holds (decrypted, with TLS: the library
 * may hold bytes that epoll cannot see, so it reads until there are none)
 * and handles every whole answer in it. */
static void conn_read(struct conn *cn)
{
	while (!cn->dead) {
		if (cn->ilen == cn->icap) {
			size_t cap = cn->icap * 2;
			uint8_t *in =
			        cap <= RESPONSE_MAX + FRAME_HEADER ? realloc(cn->in, cap) : NULL;
			if (in == NULL) {
				conn_fail(cn, WB_E_NOMEM, "reading", "no room for a response");
				return;
			}
			cn->in = in;
			cn->icap = cap;
		}
		size_t n = 0;
		int rc = wb_raw_read(cn->c, cn->in + cn->ilen, cn->icap - cn->ilen, &n);
		if (rc != 0) {
			conn_fail(cn, rc, "recv", wb_errmsg(cn->c));
			return;
		}
		if (n == 0)
			return;
		cn->ilen += n;
		conn_answers(cn);
	}
}

/* One round: keeps P appends in flight on every connection until limit
 * appends have been sent, then waits for the answers to those in flight. */
static void load_round(struct load *ld, uint64_t limit)
{
	ld->limit = limit;
	for (uint32_t i = 0; i < ld->nconns; i++) {
		conn_fill(&ld->conns[i]);
		conn_flush(&ld->conns[i]);
	}
	struct epoll_event evs[64];
	while (ld->inflight > 0) {
		int n = epoll_wait(ld->ep, evs, 64, BENCH_CLIENT_TIMEOUT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			load_fail(ld, WB_E_IO, "epoll_wait: %s", strerror(errno));
			return;
		}
		if (n == 0) {
			load_fail(ld, WB_E_TIMEOUT,
			          "no answer in %d ms with %llu appends in flight",
			          BENCH_CLIENT_TIMEOUT_MS, (unsigned long long)ld->inflight);
			return;
		}
		for (int i = 0; i < n; i++) {
			struct conn *cn = evs[i].data.ptr;
			if (!cn->dead && (evs[i].events & EPOLLOUT))
				conn_flush(cn);
			if (!cn->dead && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				conn_read(cn);
			conn_fill(cn);
			conn_flush(cn);
		}
	}
}

static void load_close(struct load *ld)
{
	if (ld == NULL)
		return;
	for (uint32_t i = 0; i < ld->nconns; i++) {
		struct conn *cn = &ld->conns[i];
		free(cn->in);
		free(cn->out);
		free(cn->free_slots);
		free(cn->slots);
		wb_close(cn->c);
	}
	if (ld->ep >= 0)
		close(ld->ep);
	aw_events_free(&ld->last);
	aw_events_free(&ld->full);
	free(ld->conns);
	free(ld->data);
	free(ld->name_lens);
	free(ld->names);
	free(ld);
}

/* Builds the templates, connects every client and adds it to the epoll
 * set. Returns 0 with *out set, or an error with a sentence in errmsg. */
static int load_open(struct load **out, const struct append_opts *o, const struct bench_secure *sec,
                     const char *address, char *errmsg, size_t errlen)
{
	int rc = WB_E_NOMEM;
	struct load *ld = calloc(1, sizeof(*ld));
	if (ld == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	ld->o = o;
	ld->sec = sec;
	ld->ep = -1;
	ld->total_appends = (o->events + o->batch_events - 1) / o->batch_events;
	ld->names = calloc(o->streams, sizeof(*ld->names));
	ld->name_lens = calloc(o->streams, sizeof(*ld->name_lens));
	ld->data = malloc(o->size > 0 ? o->size : 1);
	ld->conns = calloc(o->clients, sizeof(*ld->conns));
	if (ld->names == NULL || ld->name_lens == NULL || ld->data == NULL || ld->conns == NULL)
		goto nomem;
	size_t longest = 0;
	for (uint32_t i = 0; i < o->streams; i++) {
		bench_stream_name(i, ld->names[i]);
		ld->name_lens[i] = strlen(ld->names[i]);
		if (ld->name_lens[i] > longest)
			longest = ld->name_lens[i];
	}
	bench_rng_seed(&ld->rng, 1);
	bench_rng_fill(&ld->rng, ld->data, o->size);
	bench_ids_seed(&ld->ids, 2, o->random_ids);
	rc = aw_events_build(&ld->full, o->batch_events, BENCH_EVENT_TYPE, ld->data, o->size,
	                     errmsg, errlen);
	uint32_t rest = (uint32_t)(o->events % o->batch_events);
	if (rc == 0 && rest != 0)
		rc = aw_events_build(&ld->last, rest, BENCH_EVENT_TYPE, ld->data, o->size, errmsg,
		                     errlen);
	if (rc == 0)
		rc = aw_self_check(&ld->full, ld->names[o->streams - 1], BENCH_EVENT_TYPE, o->size,
		                   errmsg, errlen);
	if (rc != 0)
		goto err;
	ld->frame_max = aw_request_max(&ld->full, longest);
	size_t frames = OUT_BYTES / ld->frame_max;
	if (frames > o->pipeline)
		frames = o->pipeline;
	ld->ocap = ld->frame_max * (frames > 0 ? frames : 1);

	ld->ep = epoll_create1(EPOLL_CLOEXEC);
	if (ld->ep < 0) {
		snprintf(errmsg, errlen, "epoll_create1: %s", strerror(errno));
		rc = WB_E_IO;
		goto err;
	}
	for (uint32_t i = 0; i < o->clients; i++) {
		struct conn *cn = &ld->conns[i];
		cn->ld = ld;
		cn->index = i;
		cn->slots = calloc(o->pipeline, sizeof(*cn->slots));
		cn->free_slots = calloc(o->pipeline, sizeof(*cn->free_slots));
		cn->out = malloc(ld->ocap);
		cn->icap = IN_BYTES;
		cn->in = malloc(cn->icap);
		ld->nconns = i + 1;
		if (cn->slots == NULL || cn->free_slots == NULL || cn->out == NULL ||
		    cn->in == NULL) {
			rc = WB_E_NOMEM;
			goto nomem;
		}
		for (uint32_t j = 0; j < o->pipeline; j++)
			cn->free_slots[j] = o->pipeline - 1 - j;
		cn->nfree = o->pipeline;
		rc = bench_connect_secure(&cn->c, address, "whizbang-bench", i, sec, errmsg,
		                          errlen);
		if (rc != 0)
			goto err;
		/* The socket has TCP_NODELAY; wb_raw_write() and wb_raw_read()
		 * never block on it, and start with what the library read
		 * ahead. */
		cn->fd = wb_fd(cn->c);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = cn};
		if (epoll_ctl(ld->ep, EPOLL_CTL_ADD, cn->fd, &ev) != 0) {
			snprintf(errmsg, errlen, "epoll_ctl: %s", strerror(errno));
			rc = WB_E_IO;
			goto err;
		}
	}
	*out = ld;
	return 0;

nomem:
	snprintf(errmsg, errlen, "out of memory");
	rc = WB_E_NOMEM;
err:
	load_close(ld);
	return rc;
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
	/* The load's transport: the TLS version and cipher ("" in plaintext). */
	char tls_version[32];
	char tls_cipher[64];
	/* --handshakes: how many were made, in how long, at what CPU here. */
	uint32_t handshakes;
	double hs_secs;
	double hs_cpu_s;
};

static double per(uint64_t a, uint64_t b)
{
	return b != 0 ? (double)a / (double)b : 0;
}

/* Seconds per count, in microseconds. */
static double per_us(double secs, uint64_t n)
{
	return n != 0 ? secs * 1e6 / (double)n : 0;
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
	if (f->tls_version[0] != '\0')
		printf("transport: %s %s", f->tls_version, f->tls_cipher);
	else
		printf("transport: plaintext");
	if (o->scram)
		printf(", SCRAM-SHA-256 login (%u iterations)\n", o->scram_iterations);
	else
		printf(", no login\n");
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
	printf("  clients      %.2f s, %.2f us per append\n", f->client_cpu_s,
	       per_us(f->client_cpu_s, f->appends + f->errors));
	if (f->spawned)
		printf("  whizbangd    %.2f s, from start to exit\n", f->server_cpu_s);
	if (f->handshakes > 0)
		printf("connects (one after another, each closed once made)\n"
		       "  made         %u in %.3f s: %.1f per second, mean %.3f ms, client cpu "
		       "%.3f ms each\n",
		       f->handshakes, f->hs_secs, (double)f->handshakes / f->hs_secs,
		       f->hs_secs * 1e3 / f->handshakes, f->hs_cpu_s * 1e3 / f->handshakes);
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
	bench_j_lit(&j, "tls", o->tls ? "true" : "false");
	bench_j_lit(&j, "scram", o->scram ? "true" : "false");
	bench_j_u64(&j, "scram_iterations", o->scram ? o->scram_iterations : 0);
	bench_j_close(&j);
	if (f->tls_version[0] != '\0') {
		bench_j_open(&j, "tls");
		bench_j_str(&j, "version", f->tls_version);
		bench_j_str(&j, "cipher", f->tls_cipher);
		bench_j_close(&j);
	} else {
		bench_j_lit(&j, "tls", "null");
	}

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
	bench_j_num(&j, "clients_us_per_append", per_us(f->client_cpu_s, f->appends + f->errors));
	if (f->spawned)
		bench_j_num(&j, "whizbangd", f->server_cpu_s);
	else
		bench_j_lit(&j, "whizbangd", "null");
	bench_j_close(&j);

	if (f->handshakes > 0) {
		bench_j_open(&j, "connects");
		bench_j_u64(&j, "n", f->handshakes);
		bench_j_num(&j, "elapsed_s", f->hs_secs);
		bench_j_num(&j, "per_s", (double)f->handshakes / f->hs_secs);
		bench_j_num(&j, "mean_ms", f->hs_secs * 1e3 / f->handshakes);
		bench_j_num(&j, "client_cpu_ms_each", f->hs_cpu_s * 1e3 / f->handshakes);
		bench_j_close(&j);
	} else {
		bench_j_lit(&j, "connects", "null");
	}

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
static int run_rounds(const struct append_opts *o, struct load *ld, struct wb_client *ctl,
                      struct raw_lmdb *raw, struct figures *f, char *errmsg, size_t errlen)
{
	for (uint32_t r = 1; r <= o->rounds; r++) {
		struct stats before, after;
		int src = fetch_stats(ctl, &before, errmsg, errlen);
		if (src != 0 && r == 1)
			fprintf(stderr, "whizbang-bench: no server stats: %s\n", errmsg);
		if (r == 1) {
			f->have_stats = src == 0;
			f->before = before;
		}
		uint64_t limit = ld->total_appends * r / o->rounds;
		double cpu0 = bench_cpu_seconds(RUSAGE_SELF);
		uint64_t t0 = bench_now_ns();
		load_round(ld, limit);
		f->secs += (double)(bench_now_ns() - t0) / 1e9;
		f->client_cpu_s += bench_cpu_seconds(RUSAGE_SELF) - cpu0;

		if (f->have_stats && src == 0 && fetch_stats(ctl, &after, errmsg, errlen) == 0) {
			add_stats(f, &before, &after);
		} else if (f->have_stats) {
			fprintf(stderr, "whizbang-bench: no server stats after round %u: %s\n", r,
			        errmsg);
			f->have_stats = false;
		}
		if (ld->stop || atomic_load(&bench_interrupted))
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

/* Connects the clients, runs the rounds, closes the clients and collects
 * their figures. raw may be NULL (no baseline). */
static int run_load(const struct append_opts *o, const struct bench_secure *sec,
                    const char *address, struct wb_client *ctl, struct raw_lmdb *raw,
                    struct figures *f, char *errmsg, size_t errlen)
{
	struct load *ld;
	int rc = load_open(&ld, o, sec, address, errmsg, errlen);
	if (rc != 0)
		return rc;
	const char *version, *cipher;
	if (ld->nconns > 0 && wb_connection_tls(ld->conns[0].c, &version, &cipher)) {
		snprintf(f->tls_version, sizeof(f->tls_version), "%s", version);
		snprintf(f->tls_cipher, sizeof(f->tls_cipher), "%s", cipher);
	}
	rc = run_rounds(o, ld, ctl, raw, f, errmsg, errlen);
	for (uint32_t i = 0; i < ld->nconns; i++) {
		const struct conn *cn = &ld->conns[i];
		f->events += cn->events;
		f->appends += cn->appends;
		f->errors += cn->errors;
		if (cn->errors > 0)
			fprintf(stderr,
			        "whizbang-bench: client %u: %llu error responses, the first: %s\n",
			        i, (unsigned long long)cn->errors, cn->first_error);
	}
	/* A client's failure explains the run better than what followed. */
	if (ld->rc != 0) {
		rc = ld->rc;
		snprintf(errmsg, errlen, "%s", ld->errmsg);
	}
	bench_hist_summarize(&ld->hist, &f->lat);
	load_close(ld);
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
		rc = run_load(&o, NULL, address, ctl, NULL, &f, errmsg, errlen);
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

/* ---------------------------------------------------------------- the load by the clock */

struct bench_steady {
	struct append_opts o;
	struct bench_secure sec;
	struct load *ld;
};

int bench_steady_open(struct bench_steady **out, const char *address,
                      const struct bench_append_params *p, const struct bench_secure *sec,
                      char *errmsg, size_t errlen)
{
	struct bench_steady *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	/* events only sizes the sequence of appends: the clock ends a spell. */
	s->o = (struct append_opts){
	        .clients = p->clients,
	        .pipeline = p->pipeline,
	        .events = UINT64_MAX / 2,
	        .size = p->size,
	        .streams = p->streams,
	        .batch_events = 1,
	        .rounds = 1,
	        .no_baseline = true,
	};
	if (sec != NULL)
		s->sec = *sec;
	int rc = load_open(&s->ld, &s->o, &s->sec, address, errmsg, errlen);
	if (rc != 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int bench_steady_run(struct bench_steady *s, uint64_t ms, struct bench_append_result *out,
                     char *errmsg, size_t errlen)
{
	struct load *ld = s->ld;
	memset(&ld->hist, 0, sizeof(ld->hist));
	for (uint32_t i = 0; i < ld->nconns; i++) {
		struct conn *cn = &ld->conns[i];
		cn->appends = cn->events = cn->errors = 0;
		cn->first_error[0] = '\0';
	}
	uint64_t t0 = bench_now_ns();
	ld->deadline_ns = t0 + ms * 1000000u;
	load_round(ld, ld->total_appends);
	double secs = (double)(bench_now_ns() - t0) / 1e9;

	*out = (struct bench_append_result){.secs = secs};
	uint64_t appends = 0;
	for (uint32_t i = 0; i < ld->nconns; i++) {
		const struct conn *cn = &ld->conns[i];
		out->events += cn->events;
		out->errors += cn->errors;
		appends += cn->appends;
		if (cn->errors > 0)
			fprintf(stderr,
			        "whizbang-bench: client %u: %llu error responses, the first: %s\n",
			        i, (unsigned long long)cn->errors, cn->first_error);
	}
	out->events_per_s = secs > 0 ? (double)out->events / secs : 0;
	bench_hist_summarize(&ld->hist, &out->lat);
	out->lat.n = (size_t)appends;
	if (ld->rc != 0) {
		snprintf(errmsg, errlen, "%s", ld->errmsg);
		return ld->rc;
	}
	return 0;
}

void bench_steady_close(struct bench_steady *s)
{
	if (s == NULL)
		return;
	load_close(s->ld);
	free(s);
}

/* --handshakes: o->handshakes fresh connections one after another, made as
 * the load's (TCP, TLS, Hello, login) and closed once made; their time and
 * this process's CPU go into f. */
static int measure_handshakes(const struct append_opts *o, const struct bench_secure *sec,
                              const char *address, struct figures *f, char *errmsg, size_t errlen)
{
	if (!o->json)
		fprintf(stderr, "whizbang-bench: %u fresh connections to %s ...\n", o->handshakes,
		        address);
	double cpu0 = bench_cpu_seconds(RUSAGE_SELF);
	uint64_t t0 = bench_now_ns();
	for (uint32_t i = 0; i < o->handshakes; i++) {
		if (atomic_load(&bench_interrupted))
			break;
		struct wb_client *c;
		int rc = bench_connect_secure(&c, address, "whizbang-bench-connect", i, sec, errmsg,
		                              errlen);
		if (rc != 0)
			return rc;
		wb_close(c);
		f->handshakes++;
	}
	f->hs_secs = (double)(bench_now_ns() - t0) / 1e9;
	f->hs_cpu_s = bench_cpu_seconds(RUSAGE_SELF) - cpu0;
	return 0;
}

/* What --tls and --scram need before the load: for a server to spawn, a CA
 * and a node certificate for 127.0.0.1 in root and the arguments that serve
 * them (into extra, with their strings in args); the CA file the load
 * verifies with and a password for SCRAM_USER (into sec, pw). */
struct secure_setup {
	char ca[BENCH_PATH_MAX + 16];
	char args[3][BENCH_PATH_MAX + 32];
	const char *extra[BENCH_SERVER_EXTRA_MAX + 1];
	char pw[33];
	struct bench_secure sec;
};

static int secure_prepare(const struct append_opts *o, const char *root, struct secure_setup *ss,
                          char *errmsg, size_t errlen)
{
	memset(ss, 0, sizeof(*ss));
	size_t n = 0;
	if (o->scram) {
		struct bench_rng rng;
		bench_rng_seed(&rng, 3);
		for (size_t k = 0; k < sizeof(ss->pw) - 1; k++)
			ss->pw[k] =
			        "abcdefghijklmnopqrstuvwxyz0123456789"[bench_rng_next(&rng) % 36];
		ss->sec.user = SCRAM_USER;
		ss->sec.password = ss->pw;
		if (o->server == NULL) {
			snprintf(ss->args[2], sizeof(ss->args[2]), "--scram-iterations=%u",
			         o->scram_iterations);
			ss->extra[n++] = ss->args[2];
		}
	}
	if (!o->tls)
		return 0;
	if (o->server != NULL) {
		if (o->tls_ca_file == NULL) {
			snprintf(errmsg, errlen, "--tls with --server needs --tls-ca-file");
			return WB_E_INVAL;
		}
		ss->sec.tls_ca_file = o->tls_ca_file;
		return 0;
	}
	char cakey[BENCH_PATH_MAX + 16], node[BENCH_PATH_MAX + 16], nodekey[BENCH_PATH_MAX + 16];
	snprintf(ss->ca, sizeof(ss->ca), "%s/ca.crt", root);
	snprintf(cakey, sizeof(cakey), "%s/ca.key", root);
	snprintf(node, sizeof(node), "%s/node.crt", root);
	snprintf(nodekey, sizeof(nodekey), "%s/node.key", root);
	struct wb_certs_pair *ca, *srv;
	struct wb_certs_validity v = wb_certs_days(2);
	const char *ips[] = {"127.0.0.1"};
	struct wb_certs_names names = {.ips = ips, .n_ips = 1};
	int rc = wb_certs_make_ca("whizbang-bench CA", &v, &ca, errmsg, errlen);
	if (rc != 0)
		return rc;
	rc = wb_certs_make_node(ca, &names, &v, &srv, errmsg, errlen);
	if (rc == 0) {
		rc = wb_certs_save(ca, ss->ca, cakey, false, errmsg, errlen);
		if (rc == 0)
			rc = wb_certs_save(srv, node, nodekey, false, errmsg, errlen);
		wb_certs_free(srv);
	}
	wb_certs_free(ca);
	if (rc != 0)
		return rc;
	snprintf(ss->args[0], sizeof(ss->args[0]), "--tls-cert-file=%s", node);
	snprintf(ss->args[1], sizeof(ss->args[1]), "--tls-key-file=%s", nodekey);
	ss->extra[n++] = "--tls=auto";
	ss->extra[n++] = ss->args[0];
	ss->extra[n++] = ss->args[1];
	ss->sec.tls_ca_file = ss->ca;
	return 0;
}

/* With --scram, makes SCRAM_USER (role writer) over the control
 * connection; the credential is derived here (o->scram_iterations). */
static int secure_user(const struct append_opts *o, struct wb_client *ctl,
                       const struct secure_setup *ss, char *errmsg, size_t errlen)
{
	if (!o->scram)
		return 0;
	const char *roles[] = {"writer"};
	int rc = wb_put_user(ctl, SCRAM_USER, roles, 1, ss->pw, o->scram_iterations);
	if (rc != 0)
		snprintf(errmsg, errlen, "making user " SCRAM_USER ": %s: %s", wb_error_name(rc),
		         wb_errmsg(ctl));
	return rc;
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
	static struct secure_setup ss;
	int rc = secure_prepare(o, root, &ss, errmsg, sizeof(errmsg));
	if (rc != 0)
		goto err_after_mkdtemp;
	rc = bench_target_open(&t, o->server, o->whizbangd, o->log_level, root, map_size, ss.extra,
	                       errmsg, sizeof(errmsg));
	if (rc != 0)
		goto err_after_mkdtemp;
	const char *address = t.address;
	f.spawned = t.srv.pid > 0;
	rc = check_limits(o, wb_server_info(t.ctl), errmsg, sizeof(errmsg));
	if (rc == 0)
		rc = secure_user(o, t.ctl, &ss, errmsg, sizeof(errmsg));
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
		        .random_ids = o->random_ids,
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
	rc = run_load(o, &ss.sec, address, t.ctl, raw, &f, errmsg, sizeof(errmsg));
	if (rc == 0 && o->handshakes > 0 && !atomic_load(&bench_interrupted))
		rc = measure_handshakes(o, &ss.sec, address, &f, errmsg, sizeof(errmsg));
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
