/* Crash safety (issue 2): four clients pipeline multi-event appends, the
 * server is killed with SIGKILL in the middle of the load and restarted on
 * the same data directory, three times over. After each restart every
 * acknowledged append must be readable at exactly its acknowledged
 * positions, positions and versions must have no gaps, no append may be
 * half there, a retry of an unanswered append must never conflict, and
 * appending must still work. In log mode the checkpoint is far enough
 * that every restart replays the log. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

enum {
	CLIENTS = 4,
	CYCLES = 3,
	PIPELINE = 4,
	MAX_BATCH = 5,
	STREAMS = 6,
	MIN_ACKS = 150, /* acknowledged appends before the kill may come */
};

TestSuite(crash, .fini = e2e_suite_fini, .timeout = 120);

/* One append: cycle, client and sequence number name it; its events carry
 * that, their index and the count in their id and data. */
struct append {
	uint32_t cycle, client, seq, n;
	/* Filled when acknowledged. */
	bool acked;
	uint64_t first, last, version;
};

static uint32_t batch_size(uint32_t client, uint32_t seq)
{
	return 1 + (seq * 7 + client) % MAX_BATCH;
}

static void stream_of(const struct append *a, char *out, size_t len)
{
	snprintf(out, len, "crash-%u", (a->seq * 3 + a->client + a->cycle) % STREAMS);
}

static void event_id(const struct append *a, uint32_t i, uint8_t id[16])
{
	memset(id, 0, 16);
	id[0] = 0xc7;
	id[1] = (uint8_t)a->cycle;
	id[2] = (uint8_t)a->client;
	id[3] = (uint8_t)(a->seq >> 24);
	id[4] = (uint8_t)(a->seq >> 16);
	id[5] = (uint8_t)(a->seq >> 8);
	id[6] = (uint8_t)a->seq;
	id[7] = (uint8_t)i;
	id[8] = (uint8_t)a->n;
	id[15] = 0x99;
}

static void event_data(const struct append *a, uint32_t i, char *out, size_t len)
{
	snprintf(out, len, "c=%u t=%u s=%u i=%u n=%u", a->cycle, a->client, a->seq, i, a->n);
}

/* Builds the events of a (their buffers in ids and texts). */
/* The events of an append as it is sent (again), and its stream. */
struct batch {
	uint8_t ids[MAX_BATCH][16];
	char texts[MAX_BATCH][64];
	struct wb_new_event evs[MAX_BATCH];
	char stream[32];
};

static void build(const struct append *a, struct batch *b)
{
	for (uint32_t i = 0; i < a->n; i++) {
		event_id(a, i, b->ids[i]);
		event_data(a, i, b->texts[i], sizeof(b->texts[i]));
		b->evs[i] = (struct wb_new_event){
		        .id = b->ids[i],
		        .type = "Load",
		        .data = b->texts[i],
		        .data_len = strlen(b->texts[i]),
		        .metadata = b->texts[i],
		        .metadata_len = 3,
		};
	}
	stream_of(a, b->stream, sizeof(b->stream));
}

struct loader {
	pthread_t tid;
	char address[32];
	uint32_t cycle, client;
	struct append *sent; /* every append sent, by seq */
	size_t nsent, cap;
	atomic_size_t *acked_total;
	char err[512]; /* an unexpected answer; "" if none */
};

static void *loader_main(void *arg)
{
	struct loader *l = arg;
	struct wb_options opts = {.client_name = "crash", .timeout_ms = 5000};
	struct wb_client *c = NULL;
	char msg[256];
	if (wb_connect(&c, l->address, &opts, msg, sizeof(msg)) != 0) {
		snprintf(l->err, sizeof(l->err), "connect: %s", msg);
		return NULL;
	}
	uint64_t req_ids[PIPELINE];
	uint32_t seqs[PIPELINE];
	size_t inflight = 0;
	for (;;) {
		while (inflight < PIPELINE) {
			if (l->nsent == l->cap) {
				size_t cap = l->cap > 0 ? l->cap * 2 : 1024;
				struct append *p = realloc(l->sent, cap * sizeof(*p));
				if (p == NULL) {
					snprintf(l->err, sizeof(l->err), "out of memory");
					goto out;
				}
				l->sent = p;
				l->cap = cap;
			}
			struct append *a = &l->sent[l->nsent];
			memset(a, 0, sizeof(*a));
			a->cycle = l->cycle;
			a->client = l->client;
			a->seq = (uint32_t)l->nsent;
			a->n = batch_size(a->client, a->seq);
			struct batch b;
			build(a, &b);
			if (wb_append_send(c, b.stream, WB_EXPECT_ANY, 0, b.evs, a->n,
			                   &req_ids[inflight]) != 0)
				goto out; /* the server is gone */
			seqs[inflight++] = a->seq;
			l->nsent++;
		}
		Whizbang__V1__Response *r;
		if (wb_recv(c, &r) != 0)
			goto out; /* the server is gone */
		size_t k = 0;
		while (k < inflight && req_ids[k] != r->id)
			k++;
		if (k == inflight || e2e_error_code(r) != 0 ||
		    r->body_case != WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS) {
			snprintf(l->err, sizeof(l->err), "client %u: answer %llu: %s: %s",
			         l->client, (unsigned long long)r->id,
			         wb_error_name(e2e_error_code(r)),
			         r->error != NULL ? r->error->message : "unexpected body");
			whizbang__v1__response__free_unpacked(r, NULL);
			goto out;
		}
		struct append *a = &l->sent[seqs[k]];
		a->acked = true;
		a->first = r->append_events->first_position;
		a->last = r->append_events->last_position;
		a->version = r->append_events->stream_version;
		whizbang__v1__response__free_unpacked(r, NULL);
		atomic_fetch_add(l->acked_total, 1);
		req_ids[k] = req_ids[inflight - 1];
		seqs[k] = seqs[inflight - 1];
		inflight--;
	}
out:
	wb_close(c);
	return NULL;
}

/* Every append of every cycle so far. */
static struct loader loaders[CYCLES][CLIENTS];

static struct append *lookup(uint32_t cycle, uint32_t client, uint32_t seq)
{
	if (cycle >= CYCLES || client >= CLIENTS)
		return NULL;
	struct loader *l = &loaders[cycle][client];
	return seq < l->nsent ? &l->sent[seq] : NULL;
}

/* Where each append was found in the log: its first position, 0 if absent. */
static uint64_t *found[CYCLES][CLIENTS];

/* Reads the whole log and checks it against everything sent so far. */
static void verify(struct wb_client *c, uint32_t upto_cycle)
{
	struct e2e_event *all;
	size_t n;
	int rc = e2e_read_all(c, 0, NULL, NULL, 0, &all, &n);
	cr_assert_eq(rc, 0, "read-all: %s: %s", wb_error_name(rc), wb_errmsg(c));
	for (uint32_t y = 0; y <= upto_cycle; y++)
		for (uint32_t t = 0; t < CLIENTS; t++) {
			free(found[y][t]);
			found[y][t] = calloc(loaders[y][t].nsent + 1, sizeof(uint64_t));
			cr_assert_not_null(found[y][t]);
		}

	/* Positions 1..n without gaps; every Load append whole. */
	for (size_t p = 0; p < n;) {
		const struct e2e_event *e = &all[p];
		cr_assert_eq(e->position, p + 1, "position %llu at index %zu: a gap",
		             (unsigned long long)e->position, p);
		if (strcmp(e->type, "Load") != 0) {
			p++;
			continue;
		}
		unsigned y, t, s, i, k;
		cr_assert_eq(sscanf((const char *)e->data, "c=%u t=%u s=%u i=%u n=%u", &y, &t, &s,
		                    &i, &k),
		             5, "position %zu holds \"%s\"", p + 1, (const char *)e->data);
		struct append *a = lookup(y, t, s);
		cr_assert_not_null(a, "position %zu holds an append never sent", p + 1);
		cr_assert_eq(i, 0, "position %zu starts inside append c%u/t%u/s%u: half an append",
		             p + 1, y, t, s);
		cr_assert_eq(k, a->n);
		cr_assert_eq(found[y][t][s], 0, "append c%u/t%u/s%u stored twice", y, t, s);
		cr_assert(p + a->n <= n, "append c%u/t%u/s%u cut off at the end of the log", y, t,
		          s);
		found[y][t][s] = p + 1;
		char stream[32];
		stream_of(a, stream, sizeof(stream));
		for (uint32_t q = 0; q < a->n; q++) {
			const struct e2e_event *f = &all[p + q];
			uint8_t id[16];
			char text[64];
			event_id(a, q, id);
			event_data(a, q, text, sizeof(text));
			cr_assert_eq(f->position, p + q + 1);
			cr_assert_eq(memcmp(f->id, id, 16), 0,
			             "position %zu: not event %u of append c%u/t%u/s%u", p + q + 1,
			             q, y, t, s);
			cr_assert_str_eq((const char *)f->data, text);
			cr_assert_eq(f->metadata_len, 3);
			cr_assert_str_eq(f->stream, stream);
			cr_assert_eq(f->version, e->version + q, "append c%u/t%u/s%u: versions", y,
			             t, s);
		}
		p += a->n;
	}

	/* Every acknowledged append is where its answer said. */
	size_t acked = 0;
	for (uint32_t y = 0; y <= upto_cycle; y++)
		for (uint32_t t = 0; t < CLIENTS; t++)
			for (size_t s = 0; s < loaders[y][t].nsent; s++) {
				const struct append *a = &loaders[y][t].sent[s];
				if (!a->acked)
					continue;
				acked++;
				cr_assert_eq(found[y][t][s], a->first,
				             "acknowledged append c%u/t%u/s%zu at %llu..%llu is %s",
				             y, t, s, (unsigned long long)a->first,
				             (unsigned long long)a->last,
				             found[y][t][s] == 0 ? "lost" : "elsewhere");
				cr_assert_eq(a->last, a->first + a->n - 1);
				cr_assert_eq(all[a->last - 1].version, a->version);
			}

	/* Each stream's versions run 0..k-1 and match the log. */
	size_t sum = 0;
	for (int s = 0; s < STREAMS; s++) {
		char name[32];
		snprintf(name, sizeof(name), "crash-%d", s);
		struct e2e_event *se;
		size_t sn;
		rc = e2e_read_stream(c, name, 0, &se, &sn);
		if (rc == WB_NOT_FOUND)
			continue;
		cr_assert_eq(rc, 0, "read %s: %s", name, wb_errmsg(c));
		for (size_t i = 0; i < sn; i++) {
			cr_assert_eq(se[i].version, i, "%s: version %llu at index %zu: a gap", name,
			             (unsigned long long)se[i].version, i);
			cr_assert(se[i].position >= 1 && se[i].position <= n);
			const struct e2e_event *f = &all[se[i].position - 1];
			cr_assert_str_eq(f->stream, name);
			cr_assert_eq(f->version, i);
			cr_assert_eq(memcmp(f->id, se[i].id, 16), 0);
			if (i > 0)
				cr_assert(se[i].position > se[i - 1].position);
		}
		sum += sn;
		e2e_events_free(se, sn);
	}
	size_t load = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].type, "Load") == 0)
			load++;
	cr_assert_eq(sum, load, "streams hold %zu events, the log %zu", sum, load);
	cr_log_info("cycle %u: %zu events in the log, %zu acknowledged appends checked", upto_cycle,
	            n, acked);
	e2e_events_free(all, n);
}

/* Retries every append of cycle y that was sent but not answered: it must
 * succeed, as a replay exactly when it was stored. */
static void retry_unanswered(struct wb_client *c, uint32_t y)
{
	size_t replays = 0, fresh = 0;
	for (uint32_t t = 0; t < CLIENTS; t++)
		for (size_t s = 0; s < loaders[y][t].nsent; s++) {
			struct append *a = &loaders[y][t].sent[s];
			if (a->acked)
				continue;
			struct batch b;
			build(a, &b);
			struct wb_append_result r;
			int rc = wb_append(c, b.stream, WB_EXPECT_ANY, 0, b.evs, a->n, &r);
			cr_assert_eq(rc, 0, "retry of unanswered append c%u/t%u/s%zu: %s: %s", y, t,
			             s, wb_error_name(rc), wb_errmsg(c));
			if (found[y][t][s] != 0) {
				cr_assert(r.idempotent_replay,
				          "stored append c%u/t%u/s%zu written again", y, t, s);
				cr_assert_eq(r.first_position, found[y][t][s]);
				replays++;
			} else {
				cr_assert(!r.idempotent_replay,
				          "append c%u/t%u/s%zu replayed but not in the log", y, t,
				          s);
				fresh++;
			}
			/* From now on it is acknowledged. */
			a->acked = true;
			a->first = r.first_position;
			a->last = r.last_position;
			a->version = r.stream_version;
		}
	cr_log_info("cycle %u: %zu unanswered appends were stored, %zu were not", y, replays,
	            fresh);
}

Test(crash, sigkill_mid_load_loses_nothing_acknowledged)
{
	/* Log mode (the default) replays the log after each kill; meson also
	 * runs this test with WB_CRASH_DURABILITY=sync. */
	const char *mode = getenv("WB_CRASH_DURABILITY");
	const char *const args[] = {"--durability", mode != NULL ? mode : "log", NULL};
	e2e_suite_start(args);
	int64_t t_start = e2e_now_ms();
	for (uint32_t y = 0; y < CYCLES; y++) {
		atomic_size_t acked_total = 0;
		for (uint32_t t = 0; t < CLIENTS; t++) {
			struct loader *l = &loaders[y][t];
			memset(l, 0, sizeof(*l));
			snprintf(l->address, sizeof(l->address), "%s", e2e_srv.address);
			l->cycle = y;
			l->client = t;
			l->acked_total = &acked_total;
			cr_assert_eq(pthread_create(&l->tid, NULL, loader_main, l), 0);
		}
		/* Let the load get going, then kill at a different moment in
		 * each cycle. */
		int64_t deadline = e2e_now_ms() + 15000;
		while (atomic_load(&acked_total) < MIN_ACKS && e2e_now_ms() < deadline)
			e2e_sleep_ms(5);
		size_t before = atomic_load(&acked_total);
		e2e_sleep_ms(250 + 350 * (int)y);
		e2e_kill(&e2e_srv);
		for (uint32_t t = 0; t < CLIENTS; t++)
			pthread_join(loaders[y][t].tid, NULL);
		size_t sent = 0, acked = 0;
		for (uint32_t t = 0; t < CLIENTS; t++) {
			cr_assert_eq(loaders[y][t].err[0], '\0', "%s", loaders[y][t].err);
			sent += loaders[y][t].nsent;
			for (size_t s = 0; s < loaders[y][t].nsent; s++)
				acked += loaders[y][t].sent[s].acked;
		}
		cr_assert_geq(before, MIN_ACKS, "the load did not get going: %zu acknowledged",
		              before);
		cr_log_info("cycle %u: %zu appends sent, %zu acknowledged before SIGKILL", y, sent,
		            acked);

		e2e_suite_restart();
		if (y == 1) {
			/* Killed again at once: the start took no checkpoint
			 * of what it replayed (nor wrote anything), so the
			 * next start must replay the log from the old
			 * checkpoint again. */
			e2e_kill(&e2e_srv);
			e2e_suite_restart();
		}
		struct wb_client *c = e2e_suite_client("crash-check");
		verify(c, y);
		retry_unanswered(c, y);
		verify(c, y);

		/* Appending still works, right after the end of the log. */
		struct wb_page p;
		cr_assert_eq(wb_read_all(c, WB_END, true, 1, NULL, NULL, 0, &p), 0);
		uint64_t last = p.last;
		wb_page_free(&p);
		struct wb_new_event e = {.type = "Probe", .data = "probe", .data_len = 5};
		struct wb_append_result r;
		cr_assert_eq(wb_append(c, "probe", WB_EXPECT_ANY, 0, &e, 1, &r), 0, "%s",
		             wb_errmsg(c));
		cr_assert_eq(r.first_position, last + 1);
		wb_close(c);
		cr_assert_lt(e2e_now_ms() - t_start, 60000, "the crash cycles took over 60 s");
	}
	e2e_suite_stop();
	for (uint32_t y = 0; y < CYCLES; y++)
		for (uint32_t t = 0; t < CLIENTS; t++) {
			free(loaders[y][t].sent);
			free(found[y][t]);
		}
}
