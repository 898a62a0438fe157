/* whizbang-bench noisy: the append load of `whizbang-bench append` (16
 * clients x 16 in flight by default) measured beside each hostile load in
 * turn, each time against the same load alone just before, on one whizbangd
 * (issue 13, "No client can hurt another"; docs/BENCHMARKS.md, "Noisy
 * neighbours").
 *
 * The happy path: spawn whizbangd on 127.0.0.1:0 with --anonymous-role=writer,
 * its log in a file and a map of NOISY_MAP_SIZE (so that the map does not
 * grow during a measurement); connect the control connection over its Unix
 * socket (the local administrator); make an API token of the role writer for
 * the steady load; build what the chosen hostile loads need (entities, an
 * index, the large clause), once. Then, for each hostile load, --rounds
 * rounds of two phases of --seconds each: "quiet" (the steady load alone),
 * then the hostile phase (the steady load's connections are made first, then
 * the hostile client starts on its own threads and connections, and once its
 * load is in place the steady load is measured); and "quiet again" at the
 * end. A hostile phase's ratio is against the quiet phase just before it, so
 * that the machine's drift over a run (on two shared cores, +-50 % between
 * phases seconds apart) cancels as far as it can; a load's verdict is on the
 * medians over its rounds. Beside every phase a probe, another client of the
 * steady load's identity, makes a fresh connection four times a second and
 * asks Ping, GetEntity, Lease + Release and CreateConsumer: what a neighbour
 * gets that the append figures cannot show (a full connection table, a
 * starved query pool, a lease or group limit taken by someone else). After
 * each phase the hostile client stops by itself, the control connection
 * deletes the consumer groups it and the probe made, and the next phase
 * waits until the watermark has caught up with every sequence leased.
 *
 * Who is who, and why: the hostile client is the anonymous role (writer, so
 * it may append, lease, commit, query and create groups) over TCP, with the
 * identity of its address; it must not be admin, which no quota limits. The
 * steady load and the probe log in with the token (role writer) over TCP:
 * an ordinary application, with an identity of its own and no exemption.
 * Only set-up, clean-up and measurement use the administrator.
 *
 * Failure modes: a server that does not start, a set-up step that fails, a
 * control connection that breaks or a server that dies end the run with
 * exit status 1 and a sentence on stderr. A steady load that cannot connect
 * or is cut off during a phase, quiet or hostile, makes that round's load
 * FAIL with the reason, and the next phase connects again. A load that
 * misses the goal is a finding, not an error: the exit status stays 0. A map
 * that grows during a phase anyway (a longer run than NOISY_MAP_SIZE holds)
 * is marked on that round's row. The first ^C ends the phase under way and
 * skips the rest, and the report covers the rounds done; the server is
 * stopped and the temporary directory removed either way. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "append_wire.h"
#include "bench.h"
#include "frame.h"
#include "optext.h"
#include "wb.h"
#include "wb_error.h"

/* The goal for the steady load beside every hostile load. */
#define GOAL_RATIO 0.8
#define GOAL_P999_MS 50.0

/* Entity types: Order (indexed on g, for the explosion), Wide (unindexed,
 * for the large clause), Probe (one entity the probe reads). */
#define ORDER_TYPE "Order"
#define ORDER_FIELD "g"
#define WIDE_TYPE "Wide"
#define WIDE_FIELD "f"
#define PROBE_TYPE "Probe"
#define PROBE_ID "p-1"
/* Upserts per set-up commit. */
#define SETUP_BATCH 5000u
/* Consumer groups the hostile client and the probe make start with this;
 * the control connection deletes them after every phase. */
#define GROUP_PREFIX "noisy-"

/* The hostile loads' sizes: the table. */
#define IDLE_CONNS 1100u
#define FRAME_CONNS 200u
#define SUBSCRIBERS 50u
#define QUERY_CONNS 4u
#define EXPLAIN_CONNS 4u
#define EXPLAIN_INFLIGHT 32u
#define LEASE_CONNS 4u
#define LEASE_INFLIGHT 4u
#define LEASE_COUNT 1024u
/* A hostile call's timeout: long enough for a query over the whole type. */
#define HOSTILE_TIMEOUT_MS 120000
/* How long a hostile load may take to be in place before the steady load
 * is measured anyway. */
#define ENGAGE_MS 60000
/* How long the watermark may take to catch up after a phase. */
#define SETTLE_MS 60000
#define PROBE_EVERY_MS 250
/* The negative control's freeze: this long in every second. */
#define STALL_MS 250
/* The spawned server's --map-size. The map must not grow during a phase:
 * a grow waits for every reader, remaps, and (with durability = log)
 * reserves the new part of the data file, which shows as a stall and as
 * RSS dropping, not as anything a hostile client did. A default run on two
 * cores (28M events) used 10.4 GiB of it, the pages a checkpoint keeps from
 * reuse included; a round during which the map grows anyway is marked in
 * the report. The data file is sparse with
 * durability = sync, but log mode reserves the whole map with
 * posix_fallocate(), so this much disk must be free. An explicit
 * --server-arg --map-size=SIZE comes later on whizbangd's command line and
 * wins. */
#define NOISY_MAP_SIZE (16ull << 30)
/* The bound of --rounds. */
#define MAX_ROUNDS 100

struct noisy_opts {
	uint32_t seconds;
	uint32_t rounds;
	const char *loads;
	uint64_t entities;
	uint64_t scan_entities;
	uint32_t terms;
	uint32_t clients;
	uint32_t pipeline;
	uint32_t size;
	uint32_t streams;
	const char *whizbangd;
	const char *data_dir;
	const char *log_level;
	struct cli_list server_args;
};

#define DEFAULT_LOADS "explode,where,explain,idle,frames,subscribers,leases,groups,garbage"

/* The options of `whizbang-bench noisy`, their defaults and bounds: the
 * command line is read from this table and its --help written from it. */
static const struct cli_opt noisy_table[] = {
        {"--seconds", "S", CLI_UINT_AT(struct noisy_opts, seconds, 1, 3600), .dflt = "5",
         .help = "how long the steady load is measured in each phase"},
        {"--rounds", "N", CLI_UINT_AT(struct noisy_opts, rounds, 1, MAX_ROUNDS), .dflt = "3",
         .help = "rounds per hostile load, each a quiet phase and then the hostile phase, whose "
                 "ratio is against that quiet phase; a load's verdict is on the medians over "
                 "its rounds"},
        {"--loads", "LIST", CLI_TEXT_AT(struct noisy_opts, loads), .dflt = DEFAULT_LOADS,
         .help = "the hostile loads to run, in order, comma-separated (see docs/BENCHMARKS.md); "
                 "also the controls `none` (a hostile client that does nothing) and `sigstop` "
                 "(the harness freezes the server 250 ms in every second: must FAIL)"},
        {"--entities", "N", CLI_COUNT_AT(struct noisy_opts, entities, 10, 100000000),
         .dflt = "200k",
         .help = "entities of type Order, 90 % of them matched by the explosion's indexed "
                 "clause (explode)"},
        {"--scan-entities", "N", CLI_COUNT_AT(struct noisy_opts, scan_entities, 1, 100000000),
         .dflt = "1000",
         .help = "unindexed entities of type Wide that the large clause scans (where, explain): "
                 "a query's time grows with N x T (at 1000 x 62464, seconds; the issue's 100k "
                 "takes minutes a query, past the end of the phase); above the server's "
                 "--max-scan (100000) the query is refused"},
        {"--terms", "T", CLI_COUNT_AT(struct noisy_opts, terms, 1, 1048576), .dflt = "62464",
         .help = "terms of the large clause: an `or` of `or`s of 1024 string comparisons each"},
        {"--clients", "C", CLI_COUNT_AT(struct noisy_opts, clients, 1, 1024), .dflt = "16",
         .help = "the steady load's connections"},
        {"--pipeline", "P", CLI_COUNT_AT(struct noisy_opts, pipeline, 1, 65536), .dflt = "16",
         .help = "appends each steady connection keeps in flight"},
        {"--size", "B", CLI_COUNT_AT(struct noisy_opts, size, 0, 65536), .dflt = "100",
         .help = "data bytes per steady event"},
        {"--streams", "S", CLI_COUNT_AT(struct noisy_opts, streams, 1, 1000000), .dflt = "16",
         .help = "streams bench-0..bench-(S-1) the steady load appends to"},
        BENCH_OPT_WHIZBANGD(struct noisy_opts, whizbangd),
        BENCH_OPT_DATA_DIR(struct noisy_opts, data_dir),
        {"--log-level", "LEVEL", CLI_TEXT_AT(struct noisy_opts, log_level), .dflt = "info",
         .help = "the spawned whizbangd's --log-level (info, its default, so that what a load "
                 "makes it log is counted)"},
        {"--server-arg", "ARG", CLI_TEXTS_AT(struct noisy_opts, server_args),
         .help = "one more argument for whizbangd (repeatable), e.g. --server-arg "
                 "--max-connections=64; it comes after the bench's own, so --server-arg "
                 "--map-size=SIZE replaces the map of 16G"},
        {0},
};

/* ---------------------------------------------------------------- shared state */

/* What every phase and load reads; written before the first phase. */
struct noisy {
	const struct noisy_opts *o;
	struct bench_server srv;
	char log_path[BENCH_PATH_MAX + 16];
	char unix_addr[BENCH_PATH_MAX + 64];
	uint16_t port;
	uint32_t max_frame;
	char token[128];
	struct bench_secure sec;    /* the steady load's and the probe's login */
	Whizbang__V1__Expr *clause; /* the large clause, NULL until built */
	size_t clause_bytes;
	uint32_t phase;
};

/* Answers a hostile client or the probe got: by code, 0 (OK) and the wire's
 * codes from the server, 100 and up (WB_E_CLOSED, WB_E_TIMEOUT, ...) on this
 * side. */
#define NCODES 128
struct tally {
	uint64_t n;
	uint64_t code[NCODES];
};

static void tally_add(struct tally *t, int rc)
{
	t->n++;
	t->code[rc >= 0 && rc < NCODES ? rc : WB_INTERNAL]++;
}

static void tally_merge(struct tally *to, const struct tally *from)
{
	to->n += from->n;
	for (int i = 0; i < NCODES; i++)
		to->code[i] += from->code[i];
}

/* "12 ok, RESOURCE_EXHAUSTED 40, E_CLOSED 1" into out. */
static void tally_words(const struct tally *t, char *out, size_t len)
{
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < NCODES && used < len; i++) {
		if (t->code[i] == 0)
			continue;
		int k = snprintf(out + used, len - used, "%s%llu %s", used > 0 ? ", " : "",
		                 (unsigned long long)t->code[i], i == 0 ? "ok" : wb_error_name(i));
		if (k > 0)
			used += (size_t)k;
	}
	if (used == 0)
		snprintf(out, len, "none");
}

/* One hostile load under way: its threads share this. */
struct hostile {
	const struct noisy *n;
	atomic_bool stop;
	atomic_bool engaged;
	atomic_bool done;
	pthread_mutex_t mu; /* guards what follows */
	struct tally t;
	char note[256]; /* what it did, in words, beside the tally */
	int rc;         /* a failure of the harness, not of the server */
	char errmsg[256];
};

static bool stopped(struct hostile *h)
{
	return atomic_load(&h->stop) || atomic_load(&bench_interrupted);
}

static void merge(struct hostile *h, const struct tally *t)
{
	pthread_mutex_lock(&h->mu);
	tally_merge(&h->t, t);
	pthread_mutex_unlock(&h->mu);
}

/* Sleeps up to ms, waking early once h is stopped. */
static void nap(struct hostile *h, long ms)
{
	for (long slept = 0; slept < ms && !stopped(h); slept += 10)
		bench_sleep_ms(ms - slept < 10 ? ms - slept : 10);
}

/* Connects as the hostile client (anonymous: the server's --anonymous-role)
 * with a timeout that lets a query over the whole type finish. */
static int hostile_connect(struct hostile *h, struct wb_client **out, const char *name)
{
	struct wb_options wo = {.client_name = name, .timeout_ms = HOSTILE_TIMEOUT_MS};
	char address[64];
	snprintf(address, sizeof(address), "127.0.0.1:%u", h->n->port);
	return wb_connect(out, address, &wo, NULL, 0);
}

/* A TCP connection to the server with nothing said on it; -1 on failure.
 * It comes from 127.0.0.2, another loopback address than the steady load's
 * and the probe's (127.0.0.1): a hostile client is another machine, and
 * limits per address must not count it with them. */
static int raw_connect(uint16_t port, bool nonblocking)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in src = {.sin_family = AF_INET};
	src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
		close(fd);
		return -1;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	if (nonblocking) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	} else {
		/* A server that stops reading must not hold this thread past
		 * the phase. */
		struct timeval tv = {.tv_sec = 10};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

/* Reads what a raw connection holds without waiting and counts the
 * responses in it into t, keeping a partial one in buf[0..*have). Returns
 * true when the server closed the connection. */
static bool raw_drain(int fd, struct tally *t, uint8_t *buf, size_t cap, size_t *have)
{
	for (;;) {
		ssize_t r = recv(fd, buf + *have, cap - *have, MSG_DONTWAIT);
		if (r == 0)
			return true;
		if (r < 0)
			return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
		*have += (size_t)r;
		size_t pos = 0;
		for (;;) {
			const uint8_t *payload;
			uint32_t len;
			size_t used;
			enum frame_status st =
			        frame_decode(buf + pos, *have - pos, (uint32_t)(cap - FRAME_HEADER),
			                     &payload, &len, &used);
			if (st != FRAME_OK)
				break;
			struct aw_response resp;
			tally_add(t, aw_response_decode(payload, len, &resp) == 0 ? (int)resp.code
			                                                          : WB_E_IO);
			pos += used;
		}
		*have -= pos;
		memmove(buf, buf + pos, *have);
	}
}

/* ---------------------------------------------------------------- set-up */

/* Leases one sequence as the administrator and commits ops there, waiting
 * until they are applied; an op that fails to apply is an error here. */
static int commit_text(struct wb_client *ctl, const char *text, char *errmsg, size_t errlen)
{
	Whizbang__V1__OpList *ops;
	struct optext_error err;
	int rc = optext_parse_ops(text, &ops, &err);
	if (rc != 0) {
		snprintf(errmsg, errlen, "parsing set-up ops: %s",
		         rc == WB_INVALID_EXPRESSION ? err.message : wb_strerror(rc));
		return rc;
	}
	struct wb_lease_args la = {.projection = "noisy-setup", .duration_ms = 600000};
	struct wb_lease_grant g;
	size_t ng;
	rc = wb_lease(ctl, &la, &g, 1, &ng);
	Whizbang__V1__CommitResult *res = NULL;
	if (rc == 0)
		rc = wb_commit_full(ctl, g.sequence, g.token, ops, true, false, &res);
	optext_free_ops(ops);
	if (rc != 0) {
		snprintf(errmsg, errlen, "set-up commit: %s: %s", wb_error_name(rc),
		         wb_errmsg(ctl));
		return rc;
	}
	rc = (int)res->apply_error;
	if (rc != 0)
		snprintf(errmsg, errlen, "set-up commit did not apply: %s: %s", wb_error_name(rc),
		         res->apply_error_message);
	wb_commit_result_free(res);
	return rc;
}

/* Upserts n entities of type, SETUP_BATCH to a commit; fields(i) writes
 * entity i's fields in text form. */
static int upsert_many(struct wb_client *ctl, const char *type, const char *prefix, uint64_t n,
                       void (*fields)(uint64_t i, char *out, size_t len), char *errmsg,
                       size_t errlen)
{
	size_t cap = (size_t)SETUP_BATCH * 96 + 64;
	char *text = malloc(cap);
	if (text == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	int rc = 0;
	for (uint64_t i = 0; i < n && rc == 0;) {
		if (atomic_load(&bench_interrupted)) {
			snprintf(errmsg, errlen, "interrupted during set-up");
			rc = WB_E_AGAIN;
			break;
		}
		size_t used = 0;
		for (uint32_t k = 0; k < SETUP_BATCH && i < n; k++, i++) {
			char f[64];
			fields(i, f, sizeof(f));
			used += (size_t)snprintf(text + used, cap - used,
			                         "upsert %s \"%s%07llu\" {%s};", type, prefix,
			                         (unsigned long long)i, f);
		}
		rc = commit_text(ctl, text, errmsg, errlen);
	}
	free(text);
	return rc;
}

/* Order i: g is "hot" for 9 in 10 (the explosion's match), else one of 100
 * cold values. */
static void order_fields(uint64_t i, char *out, size_t len)
{
	if (i % 10 != 0)
		snprintf(out, len, ORDER_FIELD ": \"hot\", n: %llu", (unsigned long long)i);
	else
		snprintf(out, len, ORDER_FIELD ": \"cold-%llu\", n: %llu",
		         (unsigned long long)(i / 10 % 100), (unsigned long long)i);
}

static void wide_fields(uint64_t i, char *out, size_t len)
{
	snprintf(out, len, WIDE_FIELD ": \"w-%llu\", n: %llu", (unsigned long long)i,
	         (unsigned long long)i);
}

/* The large clause, built by hand (the text parser keeps to 1024 terms a
 * list too, and would take long over megabytes): an `or` of ceil(T/1024)
 * `or`s of up to 1024 comparisons `f == "x-<k>"`, which no Wide entity
 * matches, so a scan tests every term against every entity. The nodes live
 * in a few arrays freed by clause_free(). */
struct clause_mem {
	Whizbang__V1__Expr *exprs;
	Whizbang__V1__Compare *cmps;
	Whizbang__V1__Value *vals;
	Whizbang__V1__Expr **ptrs;
	Whizbang__V1__ExprList *lists;
	char *strs;
};
static struct clause_mem clause_mem;

static void clause_free(void)
{
	free(clause_mem.exprs);
	free(clause_mem.cmps);
	free(clause_mem.vals);
	free(clause_mem.ptrs);
	free(clause_mem.lists);
	free(clause_mem.strs);
	memset(&clause_mem, 0, sizeof(clause_mem));
}

static int clause_build(struct noisy *n, char *errmsg, size_t errlen)
{
	uint32_t t = n->o->terms;
	uint32_t groups = (t + 1023) / 1024;
	struct clause_mem *m = &clause_mem;
	m->exprs = calloc((size_t)t + groups + 1, sizeof(*m->exprs));
	m->cmps = calloc(t, sizeof(*m->cmps));
	m->vals = calloc(t, sizeof(*m->vals));
	m->ptrs = calloc((size_t)t + groups, sizeof(*m->ptrs));
	m->lists = calloc((size_t)groups + 1, sizeof(*m->lists));
	m->strs = malloc((size_t)t * 16);
	if (m->exprs == NULL || m->cmps == NULL || m->vals == NULL || m->ptrs == NULL ||
	    m->lists == NULL || m->strs == NULL) {
		clause_free();
		snprintf(errmsg, errlen, "out of memory for the clause");
		return WB_E_NOMEM;
	}
	Whizbang__V1__Expr *leaf = m->exprs;
	Whizbang__V1__Expr *inner = m->exprs + t;
	Whizbang__V1__Expr *top = m->exprs + t + groups;
	Whizbang__V1__Expr **inner_ptrs = m->ptrs + t;
	for (uint32_t k = 0; k < t; k++) {
		char *s = m->strs + (size_t)k * 16;
		snprintf(s, 16, "x-%u", k);
		m->vals[k] = (Whizbang__V1__Value)WHIZBANG__V1__VALUE__INIT;
		m->vals[k].kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
		m->vals[k].string_value = s;
		m->cmps[k] = (Whizbang__V1__Compare)WHIZBANG__V1__COMPARE__INIT;
		m->cmps[k].field = WIDE_FIELD;
		m->cmps[k].op = WHIZBANG__V1__COMPARE_OP__EQ;
		m->cmps[k].value = &m->vals[k];
		leaf[k] = (Whizbang__V1__Expr)WHIZBANG__V1__EXPR__INIT;
		leaf[k].node_case = WHIZBANG__V1__EXPR__NODE_COMPARE;
		leaf[k].compare = &m->cmps[k];
		m->ptrs[k] = &leaf[k];
	}
	for (uint32_t g = 0; g < groups; g++) {
		m->lists[g] = (Whizbang__V1__ExprList)WHIZBANG__V1__EXPR_LIST__INIT;
		m->lists[g].terms = m->ptrs + (size_t)g * 1024;
		m->lists[g].n_terms = g + 1 < groups ? 1024 : t - (size_t)g * 1024;
		inner[g] = (Whizbang__V1__Expr)WHIZBANG__V1__EXPR__INIT;
		inner[g].node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
		inner[g].any_of = &m->lists[g];
		inner_ptrs[g] = &inner[g];
	}
	m->lists[groups] = (Whizbang__V1__ExprList)WHIZBANG__V1__EXPR_LIST__INIT;
	m->lists[groups].terms = inner_ptrs;
	m->lists[groups].n_terms = groups;
	*top = (Whizbang__V1__Expr)WHIZBANG__V1__EXPR__INIT;
	top->node_case = WHIZBANG__V1__EXPR__NODE_ANY_OF;
	top->any_of = &m->lists[groups];
	n->clause = top;
	n->clause_bytes = whizbang__v1__expr__get_packed_size(top);
	return 0;
}

static bool wants(const struct noisy_opts *o, const char *name);

/* Builds what the chosen loads need: the probe's entity always; Order with
 * its index for explode; Wide and the clause for where and explain. */
static int setup(struct noisy *n, struct wb_client *ctl, char *errmsg, size_t errlen)
{
	const struct noisy_opts *o = n->o;
	int rc = commit_text(ctl, "upsert " PROBE_TYPE " \"" PROBE_ID "\" {v: 1}", errmsg, errlen);
	if (rc == 0 && wants(o, "explode")) {
		fprintf(stderr,
		        "whizbang-bench: set-up: %llu entities of " ORDER_TYPE
		        ", indexed on " ORDER_FIELD " ...\n",
		        (unsigned long long)o->entities);
		Whizbang__V1__IndexResult *ir;
		rc = wb_create_index(ctl, ORDER_TYPE, ORDER_FIELD, &ir);
		if (rc != 0)
			snprintf(errmsg, errlen, "CreateIndex: %s: %s", wb_error_name(rc),
			         wb_errmsg(ctl));
		else
			wb_index_result_free(ir);
		if (rc == 0)
			rc = upsert_many(ctl, ORDER_TYPE, "o-", o->entities, order_fields, errmsg,
			                 errlen);
	}
	if (rc == 0 && (wants(o, "where") || wants(o, "explain"))) {
		fprintf(stderr,
		        "whizbang-bench: set-up: %llu unindexed entities of " WIDE_TYPE
		        ", a clause of %u terms ...\n",
		        (unsigned long long)o->scan_entities, o->terms);
		rc = upsert_many(ctl, WIDE_TYPE, "w-", o->scan_entities, wide_fields, errmsg,
		                 errlen);
		if (rc == 0)
			rc = clause_build(n, errmsg, errlen);
		if (rc == 0 && n->clause_bytes + 1024 > n->max_frame) {
			snprintf(errmsg, errlen,
			         "a clause of %u terms packs into %zu bytes, above the server's "
			         "max frame of %u: give fewer --terms",
			         o->terms, n->clause_bytes, n->max_frame);
			rc = WB_E_INVAL;
		}
	}
	return rc;
}

/* ---------------------------------------------------------------- the hostile loads
 *
 * Each runs on its own thread (and may start more), from loopback only,
 * until h->stop, then undoes what it holds open and returns: a bounded
 * number of connections, requests in flight and seconds. It sets
 * h->engaged once its load is in place. Every answer goes into the tally:
 * a refusal is what the load is there to provoke. */

/* explode: lease, then commit `update Order where g == "hot" set k = <i>`
 * with ack APPLIED, back to back: 90 % of --entities rewritten by the
 * single writer per commit, and an Explosion of their ids stored in the
 * entry. */
static void load_explode(struct hostile *h)
{
	struct tally t = {0};
	struct wb_client *c = NULL;
	uint64_t matched = 0, commits = 0;
	atomic_store(&h->engaged, true);
	for (uint64_t i = 1; !stopped(h); i++) {
		if (c == NULL) {
			int rc = hostile_connect(h, &c, "noisy-explode");
			if (rc != 0) {
				tally_add(&t, rc);
				nap(h, 100);
				continue;
			}
		}
		char text[128];
		snprintf(text, sizeof(text),
		         "update " ORDER_TYPE " where " ORDER_FIELD " == \"hot\" set k = %llu",
		         (unsigned long long)i);
		Whizbang__V1__OpList *ops;
		struct optext_error err;
		if (optext_parse_ops(text, &ops, &err) != 0) {
			h->rc = WB_INTERNAL;
			snprintf(h->errmsg, sizeof(h->errmsg), "explode: %.200s", err.message);
			break;
		}
		struct wb_lease_args la = {.projection = "noisy-explode",
		                           .duration_ms = 600000,
		                           .release_on_disconnect = true};
		struct wb_lease_grant g;
		size_t ng;
		int rc = wb_lease(c, &la, &g, 1, &ng);
		Whizbang__V1__CommitResult *res = NULL;
		if (rc == 0)
			rc = wb_commit_full(c, g.sequence, g.token, ops, true, false, &res);
		optext_free_ops(ops);
		if (rc == 0) {
			/* Refused at apply time (a limit on explosions, say) is
			 * an outcome in the entry, not an error answer. */
			rc = (int)res->apply_error;
			if (rc == 0 && res->n_results > 0)
				matched += res->results[0]->matched;
			commits++;
			wb_commit_result_free(res);
		}
		tally_add(&t, rc);
		if (rc >= WB_E_NOTFOUND) {
			wb_close(c);
			c = NULL;
		}
	}
	wb_close(c);
	pthread_mutex_lock(&h->mu);
	snprintf(h->note, sizeof(h->note), "%llu commits, %llu entities matched per commit",
	         (unsigned long long)commits,
	         (unsigned long long)(commits > 0 ? matched / commits : 0));
	pthread_mutex_unlock(&h->mu);
	merge(h, &t);
}

/* where and explain: one thread per connection, each keeping inflight
 * copies of one request frame in flight, packed once (a megabyte of clause
 * packed per request would cost this process more CPU than the server
 * spends refusing it, on a machine of two cores). Every copy carries the
 * same request id: this client counts answers and never matches them. */
struct clause_worker {
	struct hostile *h;
	const uint8_t *frame;
	size_t frame_len;
	uint32_t inflight;
	const char *name;
	pthread_t th;
	uint64_t max_ms; /* the slowest answer, with one in flight */
};

/* Packs Request{id 1, body} into a frame of its own, which the caller
 * frees. */
static uint8_t *pack_request(Whizbang__V1__Request *req, size_t *len)
{
	req->id = 1;
	size_t n = whizbang__v1__request__get_packed_size(req);
	uint8_t *f = malloc(n + FRAME_HEADER);
	if (f == NULL)
		return NULL;
	frame_put_header(f, (uint32_t)n);
	whizbang__v1__request__pack(req, f + FRAME_HEADER);
	*len = n + FRAME_HEADER;
	return f;
}

static void *clause_main(void *arg)
{
	struct clause_worker *w = arg;
	struct hostile *h = w->h;
	struct tally t = {0};
	struct wb_client *c = NULL;
	int rc = hostile_connect(h, &c, w->name);
	size_t cap = 1 << 20;
	uint8_t *in = malloc(cap);
	if (rc != 0 || in == NULL) {
		tally_add(&t, rc != 0 ? rc : WB_E_NOMEM);
		wb_close(c);
		free(in);
		merge(h, &t);
		return NULL;
	}
	int fd = wb_fd(c);
	uint32_t outstanding = 0;
	size_t off = 0; /* of the frame being written; 0: none under way */
	size_t have = 0;
	uint64_t sent_ns = 0;
	atomic_store(&h->engaged, true);
	uint64_t stop_ns = 0;
	while (rc == 0) {
		bool stopping = stopped(h);
		if (stopping && stop_ns == 0)
			stop_ns = bench_now_ns();
		if (stopping &&
		    (outstanding == 0 ||
		     bench_now_ns() - stop_ns > (uint64_t)HOSTILE_TIMEOUT_MS * 1000000u))
			break;
		bool more = !stopping && outstanding < w->inflight;
		if (more || off != 0) {
			size_t taken = 0;
			rc = wb_raw_write(c, w->frame + off, w->frame_len - off, &taken);
			off += taken;
			if (off == w->frame_len) {
				off = 0;
				outstanding++;
				sent_ns = bench_now_ns();
				continue;
			}
		}
		struct pollfd p = {.fd = fd, .events = POLLIN | (off != 0 ? POLLOUT : 0)};
		if (poll(&p, 1, 100) <= 0)
			continue;
		for (;;) {
			size_t got = 0;
			if (have == cap ||
			    (rc = wb_raw_read(c, in + have, cap - have, &got)) != 0 || got == 0)
				break;
			have += got;
			size_t pos = 0;
			for (;;) {
				const uint8_t *payload;
				uint32_t len;
				size_t used;
				if (frame_decode(in + pos, have - pos,
				                 (uint32_t)(cap - FRAME_HEADER), &payload, &len,
				                 &used) != FRAME_OK)
					break;
				struct aw_response resp;
				tally_add(&t, aw_response_decode(payload, len, &resp) == 0
				                      ? (int)resp.code
				                      : WB_E_IO);
				outstanding -= outstanding > 0;
				uint64_t ms = (bench_now_ns() - sent_ns) / 1000000u;
				if (w->inflight == 1 && ms > w->max_ms)
					w->max_ms = ms;
				pos += used;
			}
			have -= pos;
			memmove(in, in + pos, have);
		}
	}
	if (rc != 0)
		tally_add(&t, rc);
	wb_close(c);
	free(in);
	merge(h, &t);
	return NULL;
}

static void load_clause(struct hostile *h, bool explain)
{
	Whizbang__V1__Where where = WHIZBANG__V1__WHERE__INIT;
	where.expr = h->n->clause;
	Whizbang__V1__Request req = WHIZBANG__V1__REQUEST__INIT;
	Whizbang__V1__Explain ex = WHIZBANG__V1__EXPLAIN__INIT;
	Whizbang__V1__QueryEntities q = WHIZBANG__V1__QUERY_ENTITIES__INIT;
	if (explain) {
		ex.type = WIDE_TYPE;
		ex.where = &where;
		req.body_case = WHIZBANG__V1__REQUEST__BODY_EXPLAIN;
		req.explain = &ex;
	} else {
		q.type = WIDE_TYPE;
		q.where = &where;
		req.body_case = WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES;
		req.query_entities = &q;
	}
	size_t len;
	uint8_t *frame = pack_request(&req, &len);
	if (frame == NULL) {
		h->rc = WB_E_NOMEM;
		snprintf(h->errmsg, sizeof(h->errmsg), "out of memory");
		return;
	}
	/* What decoding one copy costs, here: the server does as much on its
	 * loop for every copy it reads, refused or not. */
	uint64_t t0 = bench_now_ns();
	Whizbang__V1__Request *back =
	        whizbang__v1__request__unpack(NULL, len - FRAME_HEADER, frame + FRAME_HEADER);
	double unpack_ms = (double)(bench_now_ns() - t0) / 1e6;
	if (back != NULL)
		whizbang__v1__request__free_unpacked(back, NULL);
	uint32_t nw = explain ? EXPLAIN_CONNS : QUERY_CONNS;
	struct clause_worker w[QUERY_CONNS > EXPLAIN_CONNS ? QUERY_CONNS : EXPLAIN_CONNS];
	uint32_t started = 0;
	for (; started < nw; started++) {
		w[started] = (struct clause_worker){
		        .h = h,
		        .frame = frame,
		        .frame_len = len,
		        .inflight = explain ? EXPLAIN_INFLIGHT : 1,
		        .name = explain ? "noisy-explain" : "noisy-where",
		};
		if (pthread_create(&w[started].th, NULL, clause_main, &w[started]) != 0)
			break;
	}
	uint64_t max_ms = 0;
	for (uint32_t i = 0; i < started; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].max_ms > max_ms)
			max_ms = w[i].max_ms;
	}
	free(frame);
	pthread_mutex_lock(&h->mu);
	if (explain)
		snprintf(h->note, sizeof(h->note),
		         "%u connections x %u in flight, a clause of %u terms (%zu bytes, unpacked "
		         "in %.1f ms here)",
		         started, EXPLAIN_INFLIGHT, h->n->o->terms, h->n->clause_bytes, unpack_ms);
	else
		snprintf(h->note, sizeof(h->note),
		         "%u connections x 1 in flight, a clause of %u terms (%zu bytes, unpacked "
		         "in "
		         "%.1f ms here) over %llu entities, slowest answer %llu ms",
		         started, h->n->o->terms, h->n->clause_bytes, unpack_ms,
		         (unsigned long long)h->n->o->scan_entities, (unsigned long long)max_ms);
	pthread_mutex_unlock(&h->mu);
}

static void load_where(struct hostile *h)
{
	load_clause(h, false);
}

static void load_explain(struct hostile *h)
{
	load_clause(h, true);
}

/* Opens count raw connections (sending first[0..first_len) on each, when
 * first is not NULL), keeps them while the phase lasts, then counts what
 * the server said on them: a refusal of the connection, an answer to the
 * frame, a close. */
static void hold_connections(struct hostile *h, uint32_t count, const uint8_t *first,
                             size_t first_len, const char *what)
{
	struct tally t = {0};
	int *fds = malloc(count * sizeof(*fds));
	size_t cap = 64 << 10;
	uint8_t *buf = malloc(cap);
	if (fds == NULL || buf == NULL) {
		h->rc = WB_E_NOMEM;
		snprintf(h->errmsg, sizeof(h->errmsg), "out of memory");
		free(fds);
		free(buf);
		return;
	}
	uint32_t opened = 0, connect_failed = 0, send_failed = 0;
	for (uint32_t i = 0; i < count && !stopped(h); i++) {
		int fd = raw_connect(h->n->port, false);
		if (fd < 0) {
			connect_failed++;
			continue;
		}
		if (first != NULL) {
			size_t off = 0;
			while (off < first_len) {
				ssize_t w = send(fd, first + off, first_len - off, MSG_NOSIGNAL);
				if (w <= 0 && errno == EINTR)
					continue;
				if (w <= 0)
					break;
				off += (size_t)w;
			}
			if (off < first_len)
				send_failed++;
		}
		fds[opened++] = fd;
	}
	atomic_store(&h->engaged, true);
	while (!stopped(h))
		bench_sleep_ms(10);
	uint32_t closed = 0;
	for (uint32_t i = 0; i < opened; i++) {
		size_t have = 0;
		if (raw_drain(fds[i], &t, buf, cap, &have))
			closed++;
		close(fds[i]);
	}
	pthread_mutex_lock(&h->mu);
	snprintf(h->note, sizeof(h->note),
	         "%u connections%s opened, %u refused by connect(), %u sends cut short, %u closed "
	         "by the server",
	         opened, what, connect_failed, send_failed, closed);
	pthread_mutex_unlock(&h->mu);
	merge(h, &t);
	free(buf);
	free(fds);
}

/* idle: IDLE_CONNS connections that never send a byte. */
static void load_idle(struct hostile *h)
{
	hold_connections(h, IDLE_CONNS, NULL, 0, "");
}

/* frames: FRAME_CONNS connections that each send one frame of the
 * server's max frame (4 MiB by default), then nothing. The frame is a
 * Request {id 1, ping {}} followed by an unknown field that fills it, so
 * it would decode (and be answered "send Hello first"). It comes before
 * any Hello, as the client sent it: the server refuses it from its
 * header (--max-unauthenticated-frame) and closes the connection. */
static void load_frames(struct hostile *h)
{
	uint32_t len = h->n->max_frame;
	uint8_t *f = malloc((size_t)len + FRAME_HEADER);
	if (f == NULL) {
		h->rc = WB_E_NOMEM;
		snprintf(h->errmsg, sizeof(h->errmsg), "out of memory");
		return;
	}
	frame_put_header(f, len);
	uint8_t *p = f + FRAME_HEADER;
	size_t k = 0;
	p[k++] = 0x08; /* id = 1 */
	p[k++] = 0x01;
	p[k++] = 0x1a; /* ping = {} */
	p[k++] = 0x00;
	p[k++] = 0xc2; /* field 1000, length-delimited */
	p[k++] = 0x3e;
	uint32_t rest = len - (uint32_t)k - 4; /* a 4-byte varint below 2^28 */
	for (int b = 0; b < 4; b++)
		p[k++] = (uint8_t)(((rest >> (7 * b)) & 0x7f) | (b < 3 ? 0x80 : 0));
	memset(p + k, 'x', rest);
	char what[64];
	snprintf(what, sizeof(what), " each sending a frame of %u bytes", len);
	hold_connections(h, FRAME_CONNS, f, (size_t)len + FRAME_HEADER, what);
	free(f);
}

/* subscribers: SUBSCRIBERS subscriptions to $all from the start with a
 * million credits each, whose connections are never read. */
static void load_subscribers(struct hostile *h)
{
	struct tally t = {0};
	struct wb_client *c[SUBSCRIBERS] = {0};
	uint32_t subscribed = 0;
	for (uint32_t i = 0; i < SUBSCRIBERS && !stopped(h); i++) {
		int rc = hostile_connect(h, &c[i], "noisy-subscriber");
		if (rc == 0) {
			struct wb_subscribe_args a = {
			        .target = WB_TARGET_ALL, .from = WB_FROM_START, .credits = 1000000};
			uint64_t sub;
			rc = wb_subscribe(c[i], &a, &sub);
		}
		tally_add(&t, rc);
		if (rc == 0)
			subscribed++;
	}
	atomic_store(&h->engaged, true);
	while (!stopped(h))
		bench_sleep_ms(10);
	for (uint32_t i = 0; i < SUBSCRIBERS; i++)
		wb_close(c[i]);
	pthread_mutex_lock(&h->mu);
	snprintf(h->note, sizeof(h->note),
	         "%u subscriptions to $all from the start, 1000000 credits each, never read",
	         subscribed);
	pthread_mutex_unlock(&h->mu);
	merge(h, &t);
}

/* leases: LEASE_CONNS connections, each keeping LEASE_INFLIGHT
 * Lease{count LEASE_COUNT} in flight, released when they close. */
struct lease_worker {
	struct hostile *h;
	pthread_t th;
	uint64_t granted;
};

static void *lease_main(void *arg)
{
	struct lease_worker *w = arg;
	struct hostile *h = w->h;
	struct tally t = {0};
	struct wb_client *c;
	int rc = hostile_connect(h, &c, "noisy-leases");
	if (rc != 0) {
		tally_add(&t, rc);
		merge(h, &t);
		return NULL;
	}
	struct wb_lease_args la = {.projection = "noisy-leases",
	                           .duration_ms = 600000,
	                           .count = LEASE_COUNT,
	                           .release_on_disconnect = true};
	uint32_t inflight = 0;
	for (; inflight < LEASE_INFLIGHT && rc == 0; inflight++)
		rc = wb_lease_send(c, &la, NULL);
	atomic_store(&h->engaged, true);
	while (rc == 0 && inflight > 0) {
		Whizbang__V1__Response *resp;
		rc = wb_recv(c, &resp);
		if (rc != 0)
			break;
		inflight--;
		if (resp->error != NULL && resp->error->code != 0) {
			tally_add(&t, (int)resp->error->code);
		} else {
			tally_add(&t, 0);
			if (resp->body_case == WHIZBANG__V1__RESPONSE__BODY_LEASE)
				w->granted += resp->lease->n_leases;
		}
		whizbang__v1__response__free_unpacked(resp, NULL);
		if (!stopped(h)) {
			rc = wb_lease_send(c, &la, NULL);
			if (rc == 0)
				inflight++;
		}
	}
	if (rc != 0)
		tally_add(&t, rc);
	wb_close(c);
	merge(h, &t);
	return NULL;
}

static void load_leases(struct hostile *h)
{
	struct lease_worker w[LEASE_CONNS];
	uint32_t started = 0;
	for (; started < LEASE_CONNS; started++) {
		w[started] = (struct lease_worker){.h = h};
		if (pthread_create(&w[started].th, NULL, lease_main, &w[started]) != 0)
			break;
	}
	uint64_t granted = 0;
	for (uint32_t i = 0; i < started; i++) {
		pthread_join(w[i].th, NULL);
		granted += w[i].granted;
	}
	pthread_mutex_lock(&h->mu);
	snprintf(h->note, sizeof(h->note),
	         "%u connections x %u Lease{count %u} in flight: %llu leases granted", started,
	         LEASE_INFLIGHT, LEASE_COUNT, (unsigned long long)granted);
	pthread_mutex_unlock(&h->mu);
}

/* groups: CreateConsumer GROUP_PREFIX "g-<i>" back to back, past the first
 * refusal too. */
static void load_groups(struct hostile *h)
{
	struct tally t = {0};
	struct wb_client *c = NULL;
	uint64_t created = 0;
	atomic_store(&h->engaged, true);
	for (uint64_t i = 0; !stopped(h); i++) {
		if (c == NULL) {
			int rc = hostile_connect(h, &c, "noisy-groups");
			if (rc != 0) {
				tally_add(&t, rc);
				nap(h, 100);
				continue;
			}
		}
		char name[64];
		snprintf(name, sizeof(name), GROUP_PREFIX "g-%u-%llu", h->n->phase,
		         (unsigned long long)i);
		struct wb_consumer_args a = {
		        .name = name, .target = WB_TARGET_ALL, .from = WB_FROM_END};
		int rc = wb_create_consumer(c, &a, NULL);
		tally_add(&t, rc);
		if (rc == 0)
			created++;
		if (rc >= WB_E_NOTFOUND) {
			wb_close(c);
			c = NULL;
		}
	}
	wb_close(c);
	pthread_mutex_lock(&h->mu);
	snprintf(h->note, sizeof(h->note), "%llu durable consumer groups created",
	         (unsigned long long)created);
	pthread_mutex_unlock(&h->mu);
	merge(h, &t);
}

/* garbage: 5-byte frames (length 1, the byte 0xff, which does not decode)
 * on one connection as fast as the socket takes them, the answers read as
 * they come. */
static void load_garbage(struct hostile *h)
{
	struct tally t = {0};
	int fd = raw_connect(h->n->port, true);
	if (fd < 0) {
		tally_add(&t, WB_E_IO);
		merge(h, &t);
		return;
	}
	enum { FRAMES = 13107 };
	static const uint8_t one[5] = {0, 0, 0, 1, 0xff};
	uint8_t *out = malloc(FRAMES * sizeof(one));
	size_t cap = 1 << 20;
	uint8_t *in = malloc(cap);
	if (out == NULL || in == NULL) {
		h->rc = WB_E_NOMEM;
		snprintf(h->errmsg, sizeof(h->errmsg), "out of memory");
		free(out);
		free(in);
		close(fd);
		return;
	}
	for (size_t i = 0; i < FRAMES; i++)
		memcpy(out + i * sizeof(one), one, sizeof(one));
	size_t off = 0, have = 0;
	uint64_t bytes = 0;
	bool closed = false;
	atomic_store(&h->engaged, true);
	while (!stopped(h) && !closed) {
		struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
		if (poll(&p, 1, 100) <= 0)
			continue;
		if (p.revents & POLLOUT) {
			ssize_t w = send(fd, out + off, FRAMES * sizeof(one) - off,
			                 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0) {
				bytes += (size_t)w;
				off = (off + (size_t)w) % (FRAMES * sizeof(one));
			} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
				closed = true;
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			closed = raw_drain(fd, &t, in, cap, &have) || closed;
	}
	/* The answers still coming, for a second at most. */
	uint64_t frames = bytes / sizeof(one);
	for (int i = 0; i < 100 && !closed && t.n < frames; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) > 0)
			closed = raw_drain(fd, &t, in, cap, &have);
	}
	close(fd);
	pthread_mutex_lock(&h->mu);
	snprintf(h->note, sizeof(h->note), "%llu frames of 5 bytes sent, %llu answers read%s",
	         (unsigned long long)frames, (unsigned long long)t.n,
	         closed ? ", then the server closed the connection" : "");
	pthread_mutex_unlock(&h->mu);
	merge(h, &t);
	free(out);
	free(in);
}

/* none: a hostile client that does nothing (a control: the row should be
 * as good as quiet's, within the machine's noise). */
static void load_none(struct hostile *h)
{
	atomic_store(&h->engaged, true);
	while (!stopped(h))
		bench_sleep_ms(10);
	snprintf(h->note, sizeof(h->note), "nothing");
}

/* sigstop: the negative control. The harness itself freezes the server
 * (SIGSTOP) for STALL_MS in every second, so appends wait that long: the
 * row must FAIL, or the harness cannot see a stall. */
static void load_sigstop(struct hostile *h)
{
	uint32_t stops = 0;
	atomic_store(&h->engaged, true);
	while (!stopped(h)) {
		kill(h->n->srv.pid, SIGSTOP);
		stops++;
		bench_sleep_ms(STALL_MS);
		kill(h->n->srv.pid, SIGCONT);
		nap(h, 1000 - STALL_MS);
	}
	kill(h->n->srv.pid, SIGCONT);
	snprintf(h->note, sizeof(h->note), "the server frozen %u times for %d ms", stops, STALL_MS);
}

struct load_def {
	const char *name;
	void (*run)(struct hostile *h);
	const char *what;
};

static const struct load_def loads[] = {
        {"explode", load_explode,
         "update-by-where over --entities, 90 % matched by an index, back to back"},
        {"where", load_where, "QueryEntities, a --terms clause over --scan-entities unindexed"},
        {"explain", load_explain, "Explain with that clause, 4 x 32 pipelined"},
        {"idle", load_idle, "1100 connections that send nothing"},
        {"frames", load_frames, "200 connections, one max-frame frame each, then idle"},
        {"subscribers", load_subscribers, "50 subscribers of $all that never read"},
        {"leases", load_leases, "Lease{count 1024}, 4 x 4 in flight, as fast as answered"},
        {"groups", load_groups, "CreateConsumer back to back, past the first refusal"},
        {"garbage", load_garbage, "5-byte frames that do not decode, as fast as taken"},
        {"none", load_none, "control: a hostile client that does nothing"},
        {"sigstop", load_sigstop, "control: the server frozen 250 ms in every second"},
};
#define NLOADS (sizeof(loads) / sizeof(loads[0]))

static const struct load_def *find_load(const char *name, size_t len)
{
	for (size_t i = 0; i < NLOADS; i++)
		if (strlen(loads[i].name) == len && strncmp(loads[i].name, name, len) == 0)
			return &loads[i];
	return NULL;
}

static bool wants(const struct noisy_opts *o, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = o->loads; *p != '\0';) {
		size_t k = strcspn(p, ",");
		if (k == len && strncmp(p, name, len) == 0)
			return true;
		p += k;
		if (*p == ',')
			p++;
	}
	return false;
}

/* ---------------------------------------------------------------- the probe */

enum { PROBE_CONNECT, PROBE_PING, PROBE_GET, PROBE_LEASE, PROBE_GROUP, NPROBE };
static const char *const probe_names[NPROBE] = {"connect", "Ping", "GetEntity", "Lease",
                                                "CreateConsumer"};

/* The server's memory as /proc/PID/status says it: VmRSS, everything
 * resident (the store's mapped pages too, which grow with the data), and
 * RssAnon, the heap and the other anonymous memory (what held buffers and
 * queues take). KiB; 0 when it cannot be read. */
struct mem {
	uint64_t rss_kb;
	uint64_t anon_kb;
};

/* What the probe got: per phase, or summed over several. */
struct probe_figs {
	uint32_t ticks;
	struct tally op[NPROBE];
	uint64_t worst_ns; /* the slowest tick, connect to close */
};

static void probe_figs_merge(struct probe_figs *to, const struct probe_figs *from)
{
	to->ticks += from->ticks;
	for (int i = 0; i < NPROBE; i++)
		tally_merge(&to->op[i], &from->op[i]);
	if (from->worst_ns > to->worst_ns)
		to->worst_ns = from->worst_ns;
}

struct probe {
	const struct noisy *n;
	atomic_bool stop;
	pthread_t th;
	struct probe_figs f;
	struct mem max;
};

static struct mem server_mem(pid_t pid)
{
	char path[64], line[256];
	struct mem m = {0};
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return m;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			m.rss_kb = strtoull(line + 6, NULL, 10);
		else if (strncmp(line, "RssAnon:", 8) == 0)
			m.anon_kb = strtoull(line + 8, NULL, 10);
	}
	fclose(f);
	return m;
}

static void mem_max(struct mem *to, struct mem m)
{
	if (m.rss_kb > to->rss_kb)
		to->rss_kb = m.rss_kb;
	if (m.anon_kb > to->anon_kb)
		to->anon_kb = m.anon_kb;
}

static void probe_tick(struct probe *p)
{
	const struct noisy *n = p->n;
	char address[64];
	snprintf(address, sizeof(address), "127.0.0.1:%u", n->port);
	struct wb_client *c;
	uint64_t t0 = bench_now_ns();
	struct probe_figs *f = &p->f;
	int rc = bench_connect_secure(&c, address, "noisy-probe", f->ticks, &n->sec, NULL, 0);
	tally_add(&f->op[PROBE_CONNECT], rc);
	if (rc == 0) {
		tally_add(&f->op[PROBE_PING], wb_ping(c));
		Whizbang__V1__Entity *e = NULL;
		rc = wb_get_entity(c, PROBE_TYPE, PROBE_ID, &e);
		wb_entity_free(e);
		tally_add(&f->op[PROBE_GET], rc);
		struct wb_lease_args la = {.projection = "noisy-probe",
		                           .duration_ms = 10000,
		                           .release_on_disconnect = true};
		struct wb_lease_grant g;
		size_t ng;
		rc = wb_lease(c, &la, &g, 1, &ng);
		if (rc == 0)
			rc = wb_release(c, g.sequence, g.token, NULL);
		tally_add(&f->op[PROBE_LEASE], rc);
		char name[64];
		snprintf(name, sizeof(name), GROUP_PREFIX "probe-%u-%u", n->phase, f->ticks);
		struct wb_consumer_args a = {
		        .name = name, .target = WB_TARGET_ALL, .from = WB_FROM_END};
		tally_add(&f->op[PROBE_GROUP], wb_create_consumer(c, &a, NULL));
		wb_close(c);
	}
	uint64_t ns = bench_now_ns() - t0;
	if (ns > f->worst_ns)
		f->worst_ns = ns;
	f->ticks++;
}

static void *probe_main(void *arg)
{
	struct probe *p = arg;
	while (!atomic_load(&p->stop) && !atomic_load(&bench_interrupted)) {
		uint64_t t0 = bench_now_ns();
		mem_max(&p->max, server_mem(p->n->srv.pid));
		probe_tick(p);
		uint64_t ms = (bench_now_ns() - t0) / 1000000u;
		for (uint64_t s = ms; s < PROBE_EVERY_MS && !atomic_load(&p->stop); s += 10)
			bench_sleep_ms(10);
	}
	return NULL;
}

/* ---------------------------------------------------------------- phases */

/* One phase: a quiet phase or a hostile phase of a load's round, or the
 * quiet phase at the end of the run. */
struct phase {
	char label[96];              /* "none, round 2 of 3: quiet" (or hostile), for progress */
	const struct load_def *load; /* the hostile load; NULL: quiet */
	bool ran;                    /* the steady load was measured */
	char failed[256];            /* why the steady load could not be measured or broke */
	struct bench_append_result r;
	struct mem before, max, after; /* the server's, around and during the phase */
	uint64_t log_bytes;
	struct probe probe;
	struct tally hostile;
	char hostile_note[256];
	uint64_t engage_ms; /* how long the hostile load took to be in place */
	uint64_t map_grows; /* times the server's map grew during the phase */
};

static uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The server's map as GetStats says it: its size, the bytes in use and how
 * often it grew since the server started. */
struct map_figs {
	uint64_t size, used, grows;
};

static int map_stats(struct wb_client *ctl, struct map_figs *out, char *errmsg, size_t errlen)
{
	Whizbang__V1__ServerStats *st;
	int rc = wb_stats(ctl, &st);
	if (rc != 0) {
		snprintf(errmsg, errlen, "GetStats: %s: %s", wb_error_name(rc), wb_errmsg(ctl));
		return rc;
	}
	*out = (struct map_figs){st->map_size, st->map_used, st->map_grow_count};
	wb_stats_free(st);
	return 0;
}

/* Deletes every consumer group whose name starts with GROUP_PREFIX. */
static int delete_groups(struct wb_client *ctl, char *errmsg, size_t errlen)
{
	Whizbang__V1__ConsumerList *l;
	int rc = wb_list_consumers(ctl, &l);
	for (size_t i = 0; rc == 0 && i < l->n_consumers; i++) {
		const char *name = l->consumers[i]->config->name;
		if (strncmp(name, GROUP_PREFIX, strlen(GROUP_PREFIX)) == 0)
			rc = wb_delete_consumer(ctl, name);
	}
	if (rc == 0)
		wb_consumer_list_free(l);
	else
		snprintf(errmsg, errlen, "deleting the phase's consumer groups: %s: %s",
		         wb_error_name(rc), wb_errmsg(ctl));
	return rc;
}

/* Waits until every sequence leased is final and applied (the leases a
 * hostile client left released, its explosions applied), and a little
 * longer for the connections it closed to be gone. */
static int settle(struct wb_client *ctl, char *errmsg, size_t errlen)
{
	for (long waited = 0;; waited += 50) {
		uint64_t wm, next;
		int rc = wb_watermark(ctl, &wm, &next);
		if (rc != 0) {
			snprintf(errmsg, errlen, "GetWatermark: %s: %s", wb_error_name(rc),
			         wb_errmsg(ctl));
			return rc;
		}
		if (wm + 1 >= next)
			break;
		if (waited >= SETTLE_MS) {
			fprintf(stderr,
			        "whizbang-bench: the watermark (%llu) is still below the next "
			        "sequence (%llu) after %d ms; going on\n",
			        (unsigned long long)wm, (unsigned long long)next, SETTLE_MS);
			break;
		}
		bench_sleep_ms(50);
	}
	bench_sleep_ms(500);
	return 0;
}

struct hostile_run {
	struct hostile h;
	const struct load_def *d;
	pthread_t th;
};

static void *hostile_thread(void *arg)
{
	struct hostile_run *hr = arg;
	hr->d->run(&hr->h);
	atomic_store(&hr->h.engaged, true);
	atomic_store(&hr->h.done, true);
	return NULL;
}

/* One phase: the steady load connects, the hostile load (if any) starts
 * and gets in place, the steady load and the probe are measured for
 * --seconds, the hostile load stops, and what it left is cleaned up.
 * Returns 0, or a failure of the harness (the control connection, the
 * server gone) with a sentence in errmsg. */
static int run_phase(struct noisy *n, struct wb_client *ctl, struct phase *ph, char *errmsg,
                     size_t errlen)
{
	const struct noisy_opts *o = n->o;
	int rc = settle(ctl, errmsg, errlen);
	struct map_figs map0, map1;
	if (rc == 0)
		rc = map_stats(ctl, &map0, errmsg, errlen);
	if (rc != 0)
		return rc;
	fprintf(stderr, "whizbang-bench: %s ...\n", ph->label);
	ph->before = server_mem(n->srv.pid);
	uint64_t log0 = file_size(n->log_path);

	struct bench_append_params ap = {.clients = o->clients,
	                                 .pipeline = o->pipeline,
	                                 .size = o->size,
	                                 .streams = o->streams};
	struct bench_steady *st = NULL;
	char why[BENCH_ERRMSG_MAX];
	int src = bench_steady_open(&st, n->srv.address, &ap, &n->sec, why, sizeof(why));
	if (src != 0)
		snprintf(ph->failed, sizeof(ph->failed), "the steady load did not connect: %.200s",
		         why);

	static struct hostile_run hr;
	memset(&hr, 0, sizeof(hr));
	bool hostile = ph->load != NULL;
	if (hostile) {
		hr.h.n = n;
		hr.d = ph->load;
		pthread_mutex_init(&hr.h.mu, NULL);
		if (pthread_create(&hr.th, NULL, hostile_thread, &hr) != 0) {
			snprintf(errmsg, errlen, "pthread_create: %s", strerror(errno));
			bench_steady_close(st);
			return WB_E_NOMEM;
		}
		uint64_t t0 = bench_now_ns();
		while (!atomic_load(&hr.h.engaged) && !atomic_load(&bench_interrupted) &&
		       bench_now_ns() - t0 < (uint64_t)ENGAGE_MS * 1000000u)
			bench_sleep_ms(5);
		ph->engage_ms = (bench_now_ns() - t0) / 1000000u;
	}

	ph->probe.n = n;
	bool probing = pthread_create(&ph->probe.th, NULL, probe_main, &ph->probe) == 0;
	if (src == 0) {
		src = bench_steady_run(st, (uint64_t)o->seconds * 1000u, &ph->r, why, sizeof(why));
		ph->ran = true;
		if (src != 0)
			snprintf(ph->failed, sizeof(ph->failed), "the steady load broke: %.200s",
			         why);
	} else {
		for (uint32_t s = 0; s < o->seconds * 100u && !atomic_load(&bench_interrupted); s++)
			bench_sleep_ms(10);
	}
	if (probing) {
		atomic_store(&ph->probe.stop, true);
		pthread_join(ph->probe.th, NULL);
	}
	ph->max = ph->probe.max;
	mem_max(&ph->max, server_mem(n->srv.pid));

	if (hostile) {
		atomic_store(&hr.h.stop, true);
		pthread_join(hr.th, NULL);
		pthread_mutex_destroy(&hr.h.mu);
		ph->hostile = hr.h.t;
		snprintf(ph->hostile_note, sizeof(ph->hostile_note), "%s", hr.h.note);
		if (hr.h.rc != 0) {
			snprintf(errmsg, errlen, "hostile load %s: %s", ph->load->name,
			         hr.h.errmsg);
			bench_steady_close(st);
			return hr.h.rc;
		}
	}
	bench_steady_close(st);

	int status;
	if (waitpid(n->srv.pid, &status, WNOHANG) == n->srv.pid) {
		char how[96];
		bench_describe_status(status, how, sizeof(how));
		n->srv.pid = 0;
		snprintf(errmsg, errlen, "whizbangd %s during phase %s (its log: %s)", how,
		         ph->label, n->log_path);
		return WB_E_IO;
	}
	rc = map_stats(ctl, &map1, errmsg, errlen);
	if (rc != 0)
		return rc;
	ph->map_grows = map1.grows - map0.grows;
	rc = delete_groups(ctl, errmsg, errlen);
	if (rc == 0)
		rc = settle(ctl, errmsg, errlen);
	ph->after = server_mem(n->srv.pid);
	ph->log_bytes = file_size(n->log_path) - log0;
	n->phase++;
	return rc;
}

/* ---------------------------------------------------------------- the report */

/* Whether a round (its quiet phase q, its hostile phase h) could not be
 * measured: a steady load that did not connect or broke in either phase, or
 * a quiet phase that appended nothing to compare with. Sets *why. */
static bool round_broken(const struct phase *q, const struct phase *h, const char **why)
{
	if (q->failed[0] != '\0')
		*why = q->failed;
	else if (h->failed[0] != '\0')
		*why = h->failed;
	else if (!q->ran || !h->ran)
		*why = "the steady load did not run";
	else if (q->r.events_per_s <= 0)
		*why = "the quiet phase appended nothing";
	else
		return false;
	return true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The median of v[0..n), which it sorts: the middle value, or the mean of
 * the two middle ones; 0 when n is 0. */
static double median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A load's rounds, summarised. The ratio and the latencies are of the rounds
 * measured; memory, log, answers and probe are of every round done. */
struct load_sum {
	const struct load_def *load;
	size_t rounds;   /* rounds done: both phases ran */
	size_t measured; /* rounds not broken (round_broken()) */
	double ratio_med, ratio_min, ratio_max;
	double p999_med, p999_max, p50_med, p99_med, max_max; /* µs, of the hostile phases */
	double quiet_p999_med;                                /* µs */
	struct mem before, max, after; /* first round's before, highest, last round's after */
	uint64_t log_max;              /* the most one hostile phase made the log grow */
	uint64_t engage_max;
	uint64_t map_grows; /* in its quiet and hostile phases */
	struct tally hostile;
	struct probe_figs probe;
	const struct phase *last; /* the last round's hostile phase */
	const char *why;          /* why the first broken round is, NULL: none */
};

/* Summarises the rounds of the load whose first phase is ph[first], rounds
 * pairs of phases, as far as the done phases reach. */
static void summarise(const struct phase *ph, size_t first, uint32_t rounds, size_t done,
                      struct load_sum *s)
{
	double ratio[MAX_ROUNDS], p999[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS];
	double quiet_p999[MAX_ROUNDS];
	memset(s, 0, sizeof(*s));
	s->load = ph[first + 1].load;
	for (uint32_t r = 0; r < rounds && first + 2 * r + 1 < done; r++) {
		const struct phase *q = &ph[first + 2 * r], *h = q + 1;
		if (s->rounds++ == 0)
			s->before = h->before;
		mem_max(&s->max, h->max);
		s->after = h->after;
		if (h->log_bytes > s->log_max)
			s->log_max = h->log_bytes;
		if (h->engage_ms > s->engage_max)
			s->engage_max = h->engage_ms;
		s->map_grows += q->map_grows + h->map_grows;
		tally_merge(&s->hostile, &h->hostile);
		probe_figs_merge(&s->probe, &h->probe.f);
		s->last = h;
		const char *why;
		if (round_broken(q, h, &why)) {
			if (s->why == NULL)
				s->why = why;
			continue;
		}
		size_t k = s->measured++;
		ratio[k] = h->r.events_per_s / q->r.events_per_s;
		p999[k] = h->r.lat.p999;
		p50[k] = h->r.lat.p50;
		p99[k] = h->r.lat.p99;
		quiet_p999[k] = q->r.lat.p999;
		if (h->r.lat.p999 > s->p999_max)
			s->p999_max = h->r.lat.p999;
		if (h->r.lat.max > s->max_max)
			s->max_max = h->r.lat.max;
	}
	size_t n = s->measured;
	s->ratio_med = median(ratio, n);
	s->ratio_min = n > 0 ? ratio[0] : 0;
	s->ratio_max = n > 0 ? ratio[n - 1] : 0;
	s->p999_med = median(p999, n);
	s->p50_med = median(p50, n);
	s->p99_med = median(p99, n);
	s->quiet_p999_med = median(quiet_p999, n);
}

/* The goal, on the medians; a broken round fails the load whatever the
 * others say, since a steady load cut off is harm, not noise. */
static bool within_goal(const struct load_sum *s)
{
	return s->measured > 0 && s->measured == s->rounds && s->ratio_med >= GOAL_RATIO &&
	       s->p999_med <= GOAL_P999_MS * 1000.0;
}

static void probe_words(const struct probe_figs *p, char *out, size_t len)
{
	size_t used = (size_t)snprintf(out, len, "%u ticks, worst %.0f ms", p->ticks,
	                               (double)p->worst_ns / 1e6);
	for (int i = 0; i < NPROBE && used < len; i++) {
		uint64_t bad = p->op[i].n - p->op[i].code[0];
		if (bad == 0)
			continue;
		char w[160];
		tally_words(&p->op[i], w, sizeof(w));
		int k = snprintf(out + used, len - used, "; %s: %s", probe_names[i], w);
		if (k > 0)
			used += (size_t)k;
	}
}

/* events/s and p99.9 of a phase, or dashes when its steady load did not
 * run. */
static void steady_words(const struct phase *p, int w1, int w2, char *out, size_t len)
{
	if (p->ran)
		snprintf(out, len, "%*.0f %*.2f", w1, p->r.events_per_s, w2, p->r.lat.p999 / 1e3);
	else
		snprintf(out, len, "%*s %*s", w1, "-", w2, "-");
}

/* Every round's raw figures, so that the spread behind a median shows. */
static void print_rounds(const struct noisy *n, const struct phase *ph, size_t nloads, size_t done)
{
	uint32_t rounds = n->o->rounds;
	printf("every round: the hostile phase against the quiet phase just before it\n");
	printf("%-12s %5s %10s %8s %12s %8s %8s %6s\n", "load", "round", "quiet ev/s", "p99.9 ms",
	       "hostile ev/s", "p99.9 ms", "max ms", "xquiet");
	for (size_t l = 0; l < nloads; l++) {
		for (uint32_t r = 0; r < rounds; r++) {
			size_t qi = l * 2 * rounds + 2 * r;
			if (qi + 1 >= done)
				break;
			const struct phase *q = &ph[qi], *h = q + 1;
			char round[24], qw[48], hw[48], ratio[16], max[16];
			snprintf(round, sizeof(round), "%u/%u", r + 1, rounds);
			steady_words(q, 10, 8, qw, sizeof(qw));
			steady_words(h, 12, 8, hw, sizeof(hw));
			const char *why;
			bool broken = round_broken(q, h, &why);
			snprintf(ratio, sizeof(ratio), "%6s", "-");
			if (!broken)
				snprintf(ratio, sizeof(ratio), "%6.2f",
				         h->r.events_per_s / q->r.events_per_s);
			snprintf(max, sizeof(max), "%8s", "-");
			if (h->ran)
				snprintf(max, sizeof(max), "%8.2f", h->r.lat.max / 1e3);
			printf("%-12s %5s %s %s %s %s", h->load->name, round, qw, hw, max, ratio);
			if (q->map_grows + h->map_grows > 0)
				printf("  the map grew (quiet %llu, hostile %llu)",
				       (unsigned long long)q->map_grows,
				       (unsigned long long)h->map_grows);
			printf("\n");
			if (q->failed[0] != '\0')
				printf("%18s quiet: FAIL: %s\n", "", q->failed);
			if (h->failed[0] != '\0')
				printf("%18s %s: FAIL: %s\n", "", h->load->name, h->failed);
		}
	}
	size_t last = nloads * 2 * rounds;
	if (last < done && ph[last].ran) {
		const struct phase *again = &ph[last], *q = &ph[last - 2];
		printf("%-12s after every load: %.0f events/s", "quiet again",
		       again->r.events_per_s);
		if (q->ran && q->r.events_per_s > 0)
			printf(", %.2f x the last quiet phase",
			       again->r.events_per_s / q->r.events_per_s);
		printf(", p99.9 %.2f ms%s\n", again->r.lat.p999 / 1e3,
		       again->map_grows > 0 ? ", the map grew" : "");
	}
	if (last < done && ph[last].failed[0] != '\0')
		printf("%-12s FAIL: %s\n", "quiet again", ph[last].failed);
}

static void print_report(const struct noisy *n, const struct phase *ph, size_t nloads, size_t done,
                         const struct map_figs *map)
{
	const struct noisy_opts *o = n->o;
	printf("whizbang-bench noisy: the steady load, %u clients x %u appends in flight, %u B "
	       "events over %u streams, for %u s per phase, %u rounds of a quiet and a hostile "
	       "phase per load\n",
	       o->clients, o->pipeline, o->size, o->streams, o->seconds, o->rounds);
	printf("server: whizbangd at %s, --anonymous-role=writer (the hostile client); the "
	       "steady load and the probe log in with an API token of the role writer; a map of "
	       "%llu MiB, %llu MiB of it used at the end\n",
	       n->srv.address, (unsigned long long)(map->size >> 20),
	       (unsigned long long)(map->used >> 20));
	printf("goal: the medians over a load's rounds of events/s against the quiet phase just "
	       "before (at least %.1f) and of p99.9 (at most %.0f ms)\n\n",
	       GOAL_RATIO, GOAL_P999_MS);
	print_rounds(n, ph, nloads, done);

	struct load_sum *sums = calloc(nloads, sizeof(*sums));
	if (sums == NULL) {
		fprintf(stderr, "whizbang-bench: out of memory for the report\n");
		return;
	}
	size_t within = 0, hostile = 0;
	uint64_t grows = 0;
	for (size_t i = 0; i < done; i++)
		grows += ph[i].map_grows;
	printf("\nper load: xquiet, p99.9, p50 and p99 are medians over the rounds, p99.9 max and "
	       "max ms the highest of a round; RSS and anon: before the first hostile phase / the "
	       "most during one / after the last; log KB: the most one hostile phase added\n");
	printf("%-12s %6s %6s %-11s %8s %9s %7s %7s %8s %-7s %-16s %-16s %7s\n", "load", "rounds",
	       "xquiet", "(min-max)", "p99.9 ms", "p99.9 max", "p50 ms", "p99 ms", "max ms",
	       "verdict", "RSS MB b/max/a", "anon MB b/max/a", "log KB");
	for (size_t l = 0; l < nloads; l++) {
		struct load_sum *s = &sums[l];
		summarise(ph, l * 2 * o->rounds, o->rounds, done, s);
		if (s->rounds == 0)
			continue;
		hostile++;
		bool pass = within_goal(s);
		within += pass;
		char range[32], lat[96], rss[48], anon[48];
		if (s->measured > 0) {
			snprintf(range, sizeof(range), "(%.2f-%.2f)", s->ratio_min, s->ratio_max);
			snprintf(lat, sizeof(lat), "%6.2f %-11s %8.2f %9.2f %7.2f %7.2f %8.2f",
			         s->ratio_med, range, s->p999_med / 1e3, s->p999_max / 1e3,
			         s->p50_med / 1e3, s->p99_med / 1e3, s->max_max / 1e3);
		} else {
			snprintf(lat, sizeof(lat), "%6s %-11s %8s %9s %7s %7s %8s", "-", "", "-",
			         "-", "-", "-", "-");
		}
		snprintf(rss, sizeof(rss), "%.0f/%.0f/%.0f", (double)s->before.rss_kb / 1024,
		         (double)s->max.rss_kb / 1024, (double)s->after.rss_kb / 1024);
		snprintf(anon, sizeof(anon), "%.0f/%.0f/%.0f", (double)s->before.anon_kb / 1024,
		         (double)s->max.anon_kb / 1024, (double)s->after.anon_kb / 1024);
		printf("%-12s %6zu %s %-7s %-16s %-16s %7.0f\n", s->load->name, s->rounds, lat,
		       pass ? "PASS" : "FAIL", rss, anon, (double)s->log_max / 1024);
	}
	for (size_t l = 0; l < nloads; l++) {
		const struct load_sum *s = &sums[l];
		if (s->rounds > 0 && s->why != NULL)
			printf("%-12s FAIL: %zu of %zu rounds not measured: %s\n", s->load->name,
			       s->rounds - s->measured, s->rounds, s->why);
		if (s->measured > 0 && s->quiet_p999_med > GOAL_P999_MS * 1000.0)
			printf("%-12s note: its quiet phases' median p99.9 was %.2f ms, above the "
			       "goal with no hostile load\n",
			       s->load->name, s->quiet_p999_med / 1e3);
	}

	printf("\nwhat each load's hostile client got (answers over every round, what it did in "
	       "the last), and what the probe got beside it (over every round)\n");
	struct probe_figs quiet = {0};
	size_t nquiet = 0;
	for (size_t i = 0; i < done; i++) {
		if (ph[i].load == NULL) {
			probe_figs_merge(&quiet, &ph[i].probe.f);
			nquiet++;
		}
	}
	char w[512], pw[512];
	probe_words(&quiet, pw, sizeof(pw));
	printf("%-12s probe over %zu quiet phases: %s\n", "quiet", nquiet, pw);
	for (size_t l = 0; l < nloads; l++) {
		const struct load_sum *s = &sums[l];
		if (s->rounds == 0)
			continue;
		tally_words(&s->hostile, w, sizeof(w));
		probe_words(&s->probe, pw, sizeof(pw));
		printf("%-12s %s (in place after at most %llu ms)\n%12s answers: %s\n",
		       s->load->name, s->load->what, (unsigned long long)s->engage_max, "", w);
		if (s->last->hostile_note[0] != '\0')
			printf("%12s last round: %s\n", "", s->last->hostile_note);
		printf("%12s probe: %s\n", "", pw);
	}
	free(sums);
	if (grows > 0)
		printf("\nthe map grew %llu times during the phases (marked above): those rounds "
		       "include a regrowth; give a larger --server-arg --map-size\n",
		       (unsigned long long)grows);
	printf("\nnoisy-neighbour: %zu of %zu hostile loads within the goal\n", within, hostile);
}

/* ---------------------------------------------------------------- the run */

static int check_loads(const struct noisy_opts *o, size_t *count)
{
	*count = 0;
	for (const char *p = o->loads; *p != '\0';) {
		size_t k = strcspn(p, ",");
		if (k > 0 && find_load(p, k) == NULL) {
			fprintf(stderr, "whizbang-bench: --loads: no load named '%.*s' (", (int)k,
			        p);
			for (size_t i = 0; i < NLOADS; i++)
				fprintf(stderr, "%s%s", i > 0 ? ", " : "", loads[i].name);
			fprintf(stderr, ")\n");
			return EXIT_USAGE;
		}
		*count += k > 0;
		p += k;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* The control connection over the Unix socket: the local administrator. */
static int connect_admin(struct noisy *n, struct wb_client **out, char *errmsg, size_t errlen)
{
	int rc = WB_E_IO;
	for (int i = 0; i < 200; i++) {
		rc = bench_connect(out, n->unix_addr, "noisy-control", 0, errmsg, errlen);
		if (rc == 0)
			break;
		bench_sleep_ms(10);
	}
	if (rc != 0)
		return rc;
	const struct wb_identity *id = wb_whoami(*out);
	bool admin = false;
	for (size_t i = 0; id != NULL && i < id->nroles; i++)
		admin = admin || strcmp(id->roles[i], "admin") == 0;
	if (!admin) {
		snprintf(errmsg, errlen,
		         "the control connection on %s is not admin (run as root or as the "
		         "server's user)",
		         n->unix_addr);
		wb_close(*out);
		*out = NULL;
		return WB_PERMISSION_DENIED;
	}
	return 0;
}

static int make_token(struct noisy *n, struct wb_client *ctl, char *errmsg, size_t errlen)
{
	Whizbang__V1__CreateTokenResult *res;
	int rc = wb_create_token(ctl, "writer", 86400000u, "whizbang-bench noisy: steady load",
	                         &res);
	if (rc != 0) {
		snprintf(errmsg, errlen, "CreateToken: %s: %s", wb_error_name(rc), wb_errmsg(ctl));
		return rc;
	}
	snprintf(n->token, sizeof(n->token), "%s", res->token);
	wb_token_result_free(res);
	n->sec.token = n->token;
	return 0;
}

/* Warns when the data directory's filesystem has less room than the map
 * the server reserves there (durability = log reserves all of it), unless
 * --server-arg gives a map size of its own. */
static void check_room(const struct noisy_opts *o, const char *root)
{
	for (size_t i = 0; i < o->server_args.n; i++)
		if (strncmp(o->server_args.v[i], "--map-size", strlen("--map-size")) == 0)
			return;
	struct statvfs fs;
	if (statvfs(root, &fs) != 0)
		return;
	uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;
	if (avail < NOISY_MAP_SIZE)
		fprintf(stderr,
		        "whizbang-bench: warning: %s has %llu MiB free, and whizbangd reserves its "
		        "map of %llu MiB there (durability = log); give --data-dir elsewhere or "
		        "--server-arg --map-size=SIZE\n",
		        root, (unsigned long long)(avail >> 20),
		        (unsigned long long)(NOISY_MAP_SIZE >> 20));
}

/* The fds the idle and frame loads hold, with room for the rest. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int noisy_run(void *opts)
{
	const struct noisy_opts *o = opts;
	size_t nloads;
	if (check_loads(o, &nloads) != 0)
		return EXIT_USAGE;
	if (nloads == 0) {
		fprintf(stderr, "whizbang-bench: --loads names no load\n");
		return EXIT_USAGE;
	}
	if (o->server_args.n + 2 > BENCH_SERVER_EXTRA_MAX) {
		fprintf(stderr, "whizbang-bench: at most %d --server-arg\n",
		        BENCH_SERVER_EXTRA_MAX - 2);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	static struct noisy n;
	memset(&n, 0, sizeof(n));
	n.o = o;
	char errmsg[BENCH_ERRMSG_MAX] = "";
	char parent[BENCH_PATH_MAX];
	char root[BENCH_PATH_MAX];
	if (bench_make_root(o->data_dir, parent, root) != 0)
		return 1;
	snprintf(n.log_path, sizeof(n.log_path), "%s/server.log", root);
	n.srv.log_file = n.log_path;
	check_room(o, root);
	const char *extra[BENCH_SERVER_EXTRA_MAX + 1] = {"--anonymous-role=writer"};
	size_t ne = 1;
	for (size_t i = 0; i < o->server_args.n; i++)
		extra[ne++] = o->server_args.v[i];
	extra[ne] = NULL;

	/* For each load, its rounds of a quiet and a hostile phase; then
	 * quiet again. */
	size_t nph = nloads * 2 * o->rounds + 1;
	struct phase *ph = calloc(nph, sizeof(*ph));
	struct wb_client *ctl = NULL;
	int rc = ph == NULL ? WB_E_NOMEM : 0;
	if (rc == 0)
		rc = bench_server_start(&n.srv, o->whizbangd, o->log_level, root, NOISY_MAP_SIZE,
		                        extra, errmsg, sizeof(errmsg));
	if (rc != 0)
		goto out;
	n.port = (uint16_t)atoi(strrchr(n.srv.address, ':') + 1);
	snprintf(n.unix_addr, sizeof(n.unix_addr), WB_UNIX_PREFIX "%s/whizbangd.sock", n.srv.data);
	rc = connect_admin(&n, &ctl, errmsg, sizeof(errmsg));
	if (rc == 0) {
		n.max_frame = wb_server_info(ctl)->max_frame;
		rc = make_token(&n, ctl, errmsg, sizeof(errmsg));
	}
	struct sigaction old_sa;
	bench_sigint_catch(&old_sa);
	if (rc == 0)
		rc = setup(&n, ctl, errmsg, sizeof(errmsg));

	size_t k = 0;
	for (const char *p = o->loads; *p != '\0';) {
		size_t len = strcspn(p, ",");
		const struct load_def *d = len > 0 ? find_load(p, len) : NULL;
		for (uint32_t r = 1; d != NULL && r <= o->rounds; r++) {
			snprintf(ph[k].label, sizeof(ph[k].label), "%s, round %u of %u: quiet",
			         d->name, r, o->rounds);
			k++;
			ph[k].load = d;
			snprintf(ph[k].label, sizeof(ph[k].label), "%s, round %u of %u: hostile",
			         d->name, r, o->rounds);
			k++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	snprintf(ph[k++].label, sizeof(ph[0].label), "quiet again");
	size_t done = 0;
	for (; rc == 0 && done < nph && !atomic_load(&bench_interrupted); done++)
		rc = run_phase(&n, ctl, &ph[done], errmsg, sizeof(errmsg));
	bench_sigint_restore(&old_sa);
	struct map_figs map;
	if (rc == 0 && done > 0)
		rc = map_stats(ctl, &map, errmsg, sizeof(errmsg));
	if (rc == 0 && done > 0)
		print_report(&n, ph, nloads, done, &map);
	if (rc == 0 && atomic_load(&bench_interrupted)) {
		snprintf(errmsg, sizeof(errmsg), "interrupted after %zu of %zu phases", done, nph);
		rc = WB_E_AGAIN;
	}
out:
	wb_close(ctl);
	if (n.srv.pid > 0) {
		double cpu;
		if (bench_server_finish(&n.srv, &cpu) != 0 && rc == 0) {
			snprintf(errmsg, sizeof(errmsg),
			         "whizbangd did not stop cleanly (its log: %s)", n.log_path);
			rc = WB_E_IO;
		}
	}
	clause_free();
	free(ph);
	if (rc != 0)
		fprintf(stderr, "whizbang-bench: %s (%s)\n", errmsg, wb_error_name(rc));
	/* A failure keeps the server's log and data to look at; a ^C does not
	 * (the data file holds the whole map's blocks). */
	if (rc != 0 && !atomic_load(&bench_interrupted)) {
		fprintf(stderr,
		        "whizbang-bench: the server's log and data are kept in %s (remove it: its "
		        "data file reserves the whole map)\n",
		        root);
		return 1;
	}
	bench_rmtree(root);
	return rc != 0 ? 1 : 0;
}

const struct bench_command bench_noisy_command = BENCH_COMMAND(
        "noisy", noisy_table, struct noisy_opts, noisy_run,
        "The steady append load (C clients x P in flight) measured beside each hostile load in "
        "turn, in rounds of a quiet phase (the load alone) and then the hostile phase, on one "
        "spawned whizbangd; prints every round's throughput and p99.9, then per load the "
        "medians and PASS/FAIL against the goal (0.8 x quiet, p99.9 <= 50 ms), what each "
        "hostile client got and what a probe client got beside it. See docs/BENCHMARKS.md.");
