/* whizbang-bench subscribe: catch-up delivery to 1 and to S subscribers of
 * a log of N events, beside a raw LMDB cursor pass over the same events in
 * the same run, and the live latency from an append's acknowledgement to
 * the delivery of its event (docs/BENCHMARKS.md, "Subscriptions").
 *
 * It spawns whizbangd on a temporary data directory (there is no --server:
 * the raw pass reads the server's files), appends N events with the append
 * load, then:
 *   - catch-up: K subscribers (1, then S), each on its own connection and
 *     thread, subscribe to $all from the start with a credit window of W
 *     and read until they hold all N events (checked in order, no gap);
 *   - raw: opens the server's environment read-only with the LMDB API
 *     (beside the running server, as LMDB allows) and walks the events
 *     database, touching every key and value;
 *   - live: one subscriber from the end; one client appends M events one
 *     at a time; per event, delivery time minus acknowledgement time.
 * Rounds of catch-up and raw alternate; medians are reported. */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "wb.h"
#include "wb_error.h"

#define CLIENT_TIMEOUT_MS 120000

struct sub_opts {
	uint64_t events;
	uint32_t size;
	uint32_t subscribers;
	uint32_t window;
	uint32_t rounds;
	uint32_t live;
	const char *whizbangd;
	const char *data_dir;
	bool json;
};

/* The options of `whizbang-bench subscribe`, their defaults and bounds: the
 * command line is read from this table and its --help written from it. */
static const struct cli_opt subscribe_table[] = {
        {"--events", "N", CLI_COUNT_AT(struct sub_opts, events, 1, 100000000), .dflt = "1000000",
         .help = "events appended, then read by every catch-up"},
        {"--size", "B", CLI_COUNT_AT(struct sub_opts, size, 0, 65536), .dflt = "100",
         .help = "data bytes per event"},
        {"--subscribers", "S", CLI_COUNT_AT(struct sub_opts, subscribers, 1, 256), .dflt = "16",
         .help = "subscribers of the catch-up at once"},
        {"--window", "W", CLI_COUNT_AT(struct sub_opts, window, 2, 1000000), .dflt = "4096",
         .help = "the credit window of every subscription"},
        {"--rounds", "R", CLI_COUNT_AT(struct sub_opts, rounds, 1, 99), .dflt = "3",
         .help = "alternating rounds; the figures are their medians"},
        {"--live", "M", CLI_COUNT_AT(struct sub_opts, live, 1, 1000000), .dflt = "2000",
         .help = "single appends timed from acknowledgement to delivery"},
        BENCH_OPT_DATA_DIR(struct sub_opts, data_dir),
        BENCH_OPT_WHIZBANGD(struct sub_opts, whizbangd),
        BENCH_OPT_JSON(struct sub_opts, json),
        {0},
};

/* ------------------------------------------------------------ catch-up */

struct reader {
	pthread_t th;
	const char *address;
	uint64_t expect;
	uint32_t window;
	/* results */
	uint64_t got;
	uint64_t ns;
	int rc;
	char err[256];
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct wb_client *c;
	struct wb_options wo = {.client_name = "bench-subscriber", .timeout_ms = CLIENT_TIMEOUT_MS};
	r->rc = wb_connect(&c, r->address, &wo, r->err, sizeof(r->err));
	if (r->rc != 0)
		return NULL;
	uint64_t t0 = bench_now_ns();
	struct wb_subscribe_args sa = {
	        .target = WB_TARGET_ALL, .from = WB_FROM_START, .credits = r->window};
	uint64_t subscription = 0, next_pos = 1, unacked = 0;
	r->rc = wb_subscribe(c, &sa, &subscription);
	while (r->rc == 0 && r->got < r->expect) {
		Whizbang__V1__SubscriptionItem *it;
		r->rc = wb_next_item(c, CLIENT_TIMEOUT_MS, &it);
		if (r->rc != 0)
			break;
		if (it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT) {
			uint64_t pos = it->event->position;
			if (pos != next_pos) {
				snprintf(r->err, sizeof(r->err), "got position %llu, want %llu",
				         (unsigned long long)pos, (unsigned long long)next_pos);
				r->rc = WB_INTERNAL;
			}
			next_pos = pos + 1;
			r->got++;
			/* Keep the window full: grant half of it back at a time. */
			if (++unacked >= r->window / 2) {
				r->rc = wb_credit(c, subscription, (uint32_t)unacked);
				unacked = 0;
			}
		}
		wb_item_free(it);
	}
	r->ns = bench_now_ns() - t0;
	if (r->rc != 0 && r->err[0] == '\0')
		snprintf(r->err, sizeof(r->err), "%s: %s", wb_error_name(r->rc), wb_errmsg(c));
	wb_close(c);
	return NULL;
}

/* K subscribers at once; *rate is the events delivered per second over all
 * of them (K × N / the slowest one's time), *per is the mean per
 * subscriber. */
static int catch_up(const char *address, uint32_t k, const struct sub_opts *o, double *rate,
                    double *per, char *errmsg, size_t errlen)
{
	struct reader *rs = calloc(k, sizeof(*rs));
	if (rs == NULL)
		return WB_E_NOMEM;
	for (uint32_t i = 0; i < k; i++) {
		rs[i].address = address;
		rs[i].expect = o->events;
		rs[i].window = o->window;
		pthread_create(&rs[i].th, NULL, reader_main, &rs[i]);
	}
	uint64_t slowest = 0;
	double sum = 0;
	int rc = 0;
	for (uint32_t i = 0; i < k; i++) {
		pthread_join(rs[i].th, NULL);
		if (rs[i].rc != 0 && rc == 0) {
			rc = rs[i].rc;
			snprintf(errmsg, errlen, "subscriber %u: %s", i, rs[i].err);
		}
		if (rs[i].ns > slowest)
			slowest = rs[i].ns;
		sum += (double)rs[i].got / ((double)rs[i].ns / 1e9);
	}
	*rate = (double)k * (double)o->events / ((double)slowest / 1e9);
	*per = sum / k;
	free(rs);
	return rc;
}

/* ------------------------------------------------------------ raw */

static int raw_pass(const char *dir, uint64_t expect, double *rate, char *errmsg, size_t errlen)
{
	MDB_env *env;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_cursor *cur;
	int rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(env, 64);
	if (rc == 0)
		rc = mdb_env_set_mapsize(env, 0);
	if (rc == 0)
		rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0640);
	if (rc != 0) {
		snprintf(errmsg, errlen, "raw: mdb_env_open %s: %s", dir, mdb_strerror(rc));
		mdb_env_close(env);
		return WB_E_IO;
	}
	uint64_t t0 = bench_now_ns(), n = 0, sum = 0;
	rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "events", 0, &dbi);
	if (rc == 0)
		rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc == 0) {
		MDB_val k, v;
		int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (r == 0) {
			sum += k.mv_size + v.mv_size + ((const uint8_t *)v.mv_data)[v.mv_size - 1];
			n++;
			r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	uint64_t ns = bench_now_ns() - t0;
	if (txn != NULL)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	if (rc != 0 || n < expect) {
		snprintf(errmsg, errlen, "raw: read %llu of %llu events (%s)",
		         (unsigned long long)n, (unsigned long long)expect,
		         rc != 0 ? mdb_strerror(rc) : "short");
		return WB_E_IO;
	}
	*rate = (double)n / ((double)ns / 1e9) + (double)(sum & 1) * 1e-9;
	return 0;
}

/* ------------------------------------------------------------ live */

struct live {
	const char *address;
	uint64_t from; /* the first position the subscriber will see */
	uint32_t n;
	uint64_t *ack_ns;     /* by index: when the append was acknowledged */
	uint64_t *deliver_ns; /* by index: when its event arrived */
	uint64_t *send_ns;
	atomic_bool ready;
	int rc;
	char err[256];
};

static void *live_reader(void *arg)
{
	struct live *l = arg;
	struct wb_client *c;
	struct wb_options wo = {.client_name = "bench-live", .timeout_ms = CLIENT_TIMEOUT_MS};
	l->rc = wb_connect(&c, l->address, &wo, l->err, sizeof(l->err));
	if (l->rc != 0) {
		atomic_store(&l->ready, true);
		return NULL;
	}
	struct wb_subscribe_args sa = {.target = WB_TARGET_ALL,
	                               .from = WB_FROM_POSITION,
	                               .position = l->from,
	                               .credits = l->n + 16};
	uint64_t subscription;
	l->rc = wb_subscribe(c, &sa, &subscription);
	atomic_store(&l->ready, true);
	uint32_t got = 0;
	while (l->rc == 0 && got < l->n) {
		Whizbang__V1__SubscriptionItem *it;
		l->rc = wb_next_item(c, CLIENT_TIMEOUT_MS, &it);
		if (l->rc != 0)
			break;
		if (it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT) {
			uint64_t i = it->event->position - l->from;
			if (i < l->n)
				l->deliver_ns[i] = bench_now_ns();
			got++;
		}
		wb_item_free(it);
	}
	if (l->rc != 0 && l->err[0] == '\0')
		snprintf(l->err, sizeof(l->err), "%s", wb_errmsg(c));
	wb_close(c);
	return NULL;
}

static int live_latency(const char *address, uint64_t last_position, const struct sub_opts *o,
                        struct bench_lat_summary *after_ack, struct bench_lat_summary *after_send,
                        char *errmsg, size_t errlen)
{
	struct live l = {.address = address, .from = last_position + 1, .n = o->live};
	l.ack_ns = calloc(o->live, sizeof(uint64_t));
	l.deliver_ns = calloc(o->live, sizeof(uint64_t));
	l.send_ns = calloc(o->live, sizeof(uint64_t));
	if (l.ack_ns == NULL || l.deliver_ns == NULL || l.send_ns == NULL)
		return WB_E_NOMEM;
	pthread_t th;
	pthread_create(&th, NULL, live_reader, &l);
	while (!atomic_load(&l.ready))
		bench_sleep_ms(1);
	struct wb_client *c = NULL;
	struct wb_options wo = {.client_name = "bench-live-writer",
	                        .timeout_ms = CLIENT_TIMEOUT_MS};
	int rc = wb_connect(&c, address, &wo, errmsg, errlen);
	uint8_t *data = calloc(1, o->size > 0 ? o->size : 1);
	for (uint32_t i = 0; rc == 0 && i < o->live; i++) {
		struct wb_new_event ev = {
		        .type = BENCH_EVENT_TYPE, .data = data, .data_len = o->size};
		struct wb_append_result ar;
		l.send_ns[i] = bench_now_ns();
		rc = wb_append(c, "bench-live", WB_EXPECT_ANY, 0, &ev, 1, &ar);
		l.ack_ns[i] = bench_now_ns();
		if (rc == 0 && ar.last_position != l.from + i) {
			snprintf(errmsg, errlen, "live append %u went to position %llu, want %llu",
			         i, (unsigned long long)ar.last_position,
			         (unsigned long long)(l.from + i));
			rc = WB_INTERNAL;
		}
		/* Paced: one at a time, as a live trickle. */
		bench_sleep_ms(1);
	}
	if (rc != 0 && errmsg[0] == '\0')
		snprintf(errmsg, errlen, "live append: %s", wb_errmsg(c));
	wb_close(c);
	pthread_join(th, NULL);
	free(data);
	if (rc == 0 && l.rc != 0) {
		snprintf(errmsg, errlen, "live subscriber: %s %s", wb_error_name(l.rc), l.err);
		rc = l.rc;
	}
	struct bench_lat a = {0}, s = {0};
	for (uint32_t i = 0; rc == 0 && i < o->live; i++) {
		if (l.deliver_ns[i] == 0) {
			snprintf(errmsg, errlen, "live event %u was not delivered", i);
			rc = WB_INTERNAL;
			break;
		}
		/* Delivery may beat the acknowledgement's arrival at the other
		 * thread: both leave the server in the same loop turn. */
		uint64_t d = l.deliver_ns[i] > l.ack_ns[i] ? l.deliver_ns[i] - l.ack_ns[i] : 0;
		bench_lat_push(&a, d);
		bench_lat_push(&s, l.deliver_ns[i] - l.send_ns[i]);
	}
	if (rc == 0) {
		bench_lat_summarize(&a, after_ack);
		bench_lat_summarize(&s, after_send);
	}
	bench_lat_free(&a);
	bench_lat_free(&s);
	free(l.ack_ns);
	free(l.deliver_ns);
	free(l.send_ns);
	return rc;
}

/* ------------------------------------------------------------ main */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int subscribe_run(void *opts)
{
	const struct sub_opts *o = opts;
	char errmsg[BENCH_ERRMSG_MAX] = "";
	char parent[BENCH_PATH_MAX], root[BENCH_PATH_MAX];
	struct bench_server srv = {0};
	if (bench_make_root(o->data_dir, parent, root) != 0)
		return 1;
	int rc = bench_server_start(&srv, o->whizbangd, NULL, root,
	                            bench_map_size(o->events + o->live, o->size), NULL, errmsg,
	                            sizeof(errmsg));
	struct bench_append_result ar = {0};
	if (rc == 0) {
		fprintf(stderr, "whizbang-bench subscribe: appending %llu events of %u bytes ...\n",
		        (unsigned long long)o->events, o->size);
		struct bench_append_params ap = {.clients = 8,
		                                 .pipeline = 32,
		                                 .events = o->events,
		                                 .size = o->size,
		                                 .streams = 16};
		rc = bench_append_load(srv.address, &ap, &ar, errmsg, sizeof(errmsg));
	}
	double *one = calloc(o->rounds, sizeof(double)), *many = calloc(o->rounds, sizeof(double));
	double *many_per = calloc(o->rounds, sizeof(double)),
	       *raw = calloc(o->rounds, sizeof(double));
	for (uint32_t r = 0; rc == 0 && r < o->rounds; r++) {
		double per;
		fprintf(stderr, "whizbang-bench subscribe: round %u ...\n", r + 1);
		rc = raw_pass(srv.data, o->events, &raw[r], errmsg, sizeof(errmsg));
		if (rc == 0)
			rc = catch_up(srv.address, 1, o, &one[r], &per, errmsg, sizeof(errmsg));
		if (rc == 0)
			rc = catch_up(srv.address, o->subscribers, o, &many[r], &many_per[r],
			              errmsg, sizeof(errmsg));
	}
	struct bench_lat_summary after_ack = {0}, after_send = {0};
	if (rc == 0)
		rc = live_latency(srv.address, o->events, o, &after_ack, &after_send, errmsg,
		                  sizeof(errmsg));
	int st = bench_server_stop(&srv);
	bench_rmtree(root);
	if (rc != 0) {
		fprintf(stderr, "whizbang-bench subscribe: %s\n", errmsg);
		return 1;
	}
	double m_one = median(one, o->rounds), m_many = median(many, o->rounds);
	double m_per = median(many_per, o->rounds), m_raw = median(raw, o->rounds);
	if (o->json) {
		printf("{\"events\":%llu,\"size\":%u,\"subscribers\":%u,\"window\":%u,\"rounds\":%"
		       "u,"
		       "\"append_events_per_s\":%.0f,\"catchup_1\":%.0f,\"catchup_s_total\":%.0f,"
		       "\"catchup_s_each\":%.0f,\"raw\":%.0f,\"ratio_1\":%.4f,\"ratio_s\":%.4f,"
		       "\"live_after_ack_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
		       "\"live_after_send_us\":{\"p50\":%.1f,\"p99\":%.1f},\"server_exit\":%d}\n",
		       (unsigned long long)o->events, o->size, o->subscribers, o->window, o->rounds,
		       ar.events_per_s, m_one, m_many, m_per, m_raw, m_one / m_raw, m_many / m_raw,
		       after_ack.p50, after_ack.p99, after_ack.max, after_send.p50, after_send.p99,
		       st);
	} else {
		printf("subscribe: %llu events of %u bytes in $all (appended at %.0f events/s), "
		       "credit window %u, medians of %u rounds\n",
		       (unsigned long long)o->events, o->size, ar.events_per_s, o->window,
		       o->rounds);
		printf("  catch-up, 1 subscriber          %12.0f events/s   ratio to raw %.3f\n",
		       m_one, m_one / m_raw);
		printf("  catch-up, %2u subscribers (sum)  %12.0f events/s   ratio to raw %.3f "
		       "(each %.0f)\n",
		       o->subscribers, m_many, m_many / m_raw, m_per);
		printf("  raw LMDB cursor pass            %12.0f events/s\n", m_raw);
		printf("  live, append ack -> delivery    p50 %.1f us  p99 %.1f us  max %.1f us "
		       "(%u appends)\n",
		       after_ack.p50, after_ack.p99, after_ack.max, o->live);
		printf("  live, append sent -> delivery   p50 %.1f us  p99 %.1f us\n",
		       after_send.p50, after_send.p99);
	}
	free(one);
	free(many);
	free(many_per);
	free(raw);
	return 0;
}

const struct bench_command bench_subscribe_command =
        BENCH_COMMAND("subscribe", subscribe_table, struct sub_opts, subscribe_run,
                      "Appends N events to a spawned whizbangd, times in R rounds the catch-up "
                      "of 1 and of S subscribers beside a raw LMDB cursor pass, then the live "
                      "latency of M appends. See docs/BENCHMARKS.md.");
