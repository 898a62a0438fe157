/* The raw-LMDB baseline (see raw_lmdb.h), and the subcommand that runs it on
 * its own:
 *
 *   whizbang-bench raw --events N --size B --streams S --batch R
 *                      [--batch-events K] [--data-dir DIR] [--map-size BYTES] [--json]
 *
 * The happy path: open an environment with the server's flags (default flags
 * plus MDB_NOTLS, so every commit syncs data and meta pages), open the five
 * databases, then for every batch begin a write transaction, run R requests
 * in nested transactions and commit. MDB_MAP_FULL aborts the batch, doubles
 * the map and runs the batch again, as the server grows its map; any other
 * LMDB error ends the run with the error translated to enum wb_error. */
#include "raw_lmdb.h"

#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "wb_error.h"

#define RAW_EVENT_HEADER 44u
#define RAW_STREAM_RECORD 56u
#define RAW_FORMAT 1u

/* The cursor of the workload: everything a batch must rewind when it is run
 * again after the map grew. */
struct raw_pos {
	uint64_t request;  /* requests done */
	uint64_t position; /* the next global position */
	struct bench_ids ids;
};

struct raw_lmdb {
	MDB_env *env;
	MDB_dbi meta;
	MDB_dbi events;
	MDB_dbi streams;
	MDB_dbi stream_events;
	MDB_dbi event_ids;
	size_t map_size;
	struct raw_params p;
	struct raw_pos pos;
	struct raw_result res;
	uint8_t *data;
	uint8_t *ids; /* 16 bytes per event of a request */
	char *errmsg;
	size_t errlen;
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int from_mdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return WB_OK;
	case MDB_NOTFOUND:
		return WB_E_NOTFOUND;
	case MDB_KEYEXIST:
		return WB_E_KEYEXIST;
	case MDB_MAP_FULL:
		return WB_E_MAPFULL;
	case ENOMEM:
		return WB_E_NOMEM;
	case MDB_TXN_FULL:
	case MDB_READERS_FULL:
	case MDB_DBS_FULL:
		return WB_RESOURCE_EXHAUSTED;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return WB_E_CORRUPT;
	default:
		return WB_E_IO;
	}
}

static int fail(struct raw_lmdb *r, int mdb_rc, const char *what)
{
	snprintf(r->errmsg, r->errlen, "%s: %s", what, mdb_strerror(mdb_rc));
	return from_mdb(mdb_rc);
}

static int env_open(struct raw_lmdb *r, const char *dir)
{
	int rc = mdb_env_create(&r->env);
	if (rc != 0)
		return fail(r, rc, "mdb_env_create");
	rc = mdb_env_set_maxdbs(r->env, 8);
	if (rc != 0)
		goto err_after_create;
	rc = mdb_env_set_mapsize(r->env, r->map_size);
	if (rc != 0)
		goto err_after_create;
	rc = mdb_env_open(r->env, dir, MDB_NOTLS, 0644);
	if (rc != 0)
		goto err_after_create;

	MDB_txn *txn;
	rc = mdb_txn_begin(r->env, NULL, 0, &txn);
	if (rc != 0)
		goto err_after_create;
	struct {
		const char *name;
		MDB_dbi *dbi;
	} dbs[] = {
	        {"meta", &r->meta},           {"events", &r->events},
	        {"streams", &r->streams},     {"stream_events", &r->stream_events},
	        {"event_ids", &r->event_ids},
	};
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
		if (rc != 0) {
			mdb_txn_abort(txn);
			goto err_after_create;
		}
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		goto err_after_create;
	return 0;

err_after_create:
	mdb_env_close(r->env);
	r->env = NULL;
	return fail(r, rc, "opening the LMDB environment");
}

/* Takes the next stream id from meta "next_stream_id" (first id: 1). */
static int alloc_stream_id(struct raw_lmdb *r, MDB_txn *txn, uint64_t *id)
{
	static const char key_text[] = "next_stream_id";
	MDB_val k = {sizeof(key_text) - 1, (void *)key_text};
	MDB_val v;
	uint64_t next = 1;
	int rc = mdb_get(txn, r->meta, &k, &v);
	if (rc == 0) {
		if (v.mv_size != 8) {
			snprintf(r->errmsg, r->errlen, "meta next_stream_id is %zu bytes",
			         v.mv_size);
			return WB_E_CORRUPT;
		}
		next = get64(v.mv_data);
	} else if (rc != MDB_NOTFOUND) {
		return fail(r, rc, "mdb_get meta");
	}
	uint8_t buf[8];
	put64(buf, next + 1);
	v.mv_size = sizeof(buf);
	v.mv_data = buf;
	rc = mdb_put(txn, r->meta, &k, &v, 0);
	if (rc != 0)
		return fail(r, rc, "mdb_put meta");
	*id = next;
	return 0;
}

/* The counter whizbangd keeps beyond the bare layout; see
 * raw_params.server_extras. (Its replay check is no extra: ev_append claims
 * the first event's id with the same no-overwrite put the layout makes.) */
static int server_extras(struct raw_lmdb *r, MDB_txn *txn, uint64_t last)
{
	static const char key_text[] = "last_position";
	MDB_val k = {sizeof(key_text) - 1, (void *)key_text};
	MDB_val v;
	int rc = mdb_get(txn, r->meta, &k, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return fail(r, rc, "mdb_get meta");
	uint8_t buf[8];
	put64(buf, last);
	v.mv_size = sizeof(buf);
	v.mv_data = buf;
	rc = mdb_put(txn, r->meta, &k, &v, 0);
	return rc != 0 ? fail(r, rc, "mdb_put meta") : 0;
}

/* One append request of n events to stream s, in a nested transaction of
 * parent, as whizbangd's writer runs it. */
static int request(struct raw_lmdb *r, MDB_txn *parent, uint32_t s, uint32_t n, struct raw_pos *pos)
{
	char name[BENCH_STREAM_MAX];
	bench_stream_name(s, name);
	size_t name_len = strlen(name);
	uint32_t type_len = (uint32_t)(sizeof(BENCH_EVENT_TYPE) - 1);
	uint64_t now = bench_wall_us();

	MDB_txn *txn;
	int rc = mdb_txn_begin(r->env, parent, 0, &txn);
	if (rc != 0)
		return fail(r, rc, "mdb_txn_begin (nested)");

	uint8_t *ids = r->ids;
	bench_ids_fill(&pos->ids, ids, n, 16);
	if (r->p.server_extras) {
		rc = server_extras(r, txn, pos->position + n - 1);
		if (rc != 0)
			goto err_after_begin;
	}

	uint8_t rec[RAW_STREAM_RECORD];
	MDB_val k = {name_len, name};
	MDB_val v;
	rc = mdb_get(txn, r->streams, &k, &v);
	if (rc == MDB_NOTFOUND) {
		uint64_t id = 0;
		rc = alloc_stream_id(r, txn, &id);
		if (rc != 0)
			goto err_after_begin;
		memset(rec, 0, sizeof(rec));
		rec[0] = RAW_FORMAT;
		put64(rec + 8, id);
		put64(rec + 16, 0);
		put64(rec + 24, pos->position);
		put64(rec + 40, now);
	} else if (rc != 0) {
		rc = fail(r, rc, "mdb_get streams");
		goto err_after_begin;
	} else if (v.mv_size != RAW_STREAM_RECORD || ((uint8_t *)v.mv_data)[0] != RAW_FORMAT) {
		snprintf(r->errmsg, r->errlen, "the record of stream %s is malformed", name);
		rc = WB_E_CORRUPT;
		goto err_after_begin;
	} else {
		memcpy(rec, v.mv_data, sizeof(rec));
	}
	uint64_t stream_id = get64(rec + 8);
	uint64_t version = get64(rec + 16);

	for (uint32_t i = 0; i < n; i++) {
		uint64_t position = pos->position + i;
		uint8_t pkey[8];
		put64(pkey, position);
		const uint8_t *id = ids + 16u * i;

		/* The value is written in place (MDB_RESERVE): the ceiling
		 * should not pay for a copy the server could avoid too. */
		k.mv_size = sizeof(pkey);
		k.mv_data = pkey;
		v.mv_size = RAW_EVENT_HEADER + name_len + type_len + r->p.size;
		rc = mdb_put(txn, r->events, &k, &v, MDB_APPEND | MDB_RESERVE);
		if (rc != 0) {
			rc = fail(r, rc, "mdb_put events");
			goto err_after_begin;
		}
		uint8_t *h = v.mv_data;
		h[0] = RAW_FORMAT;
		h[1] = (uint8_t)name_len;
		h[2] = (uint8_t)(type_len >> 8);
		h[3] = (uint8_t)type_len;
		put32(h + 4, r->p.size);
		put32(h + 8, 0);
		put64(h + 12, version + i);
		put64(h + 20, now);
		memcpy(h + 28, id, 16);
		uint8_t *body = h + RAW_EVENT_HEADER;
		memcpy(body, name, name_len);
		memcpy(body + name_len, BENCH_EVENT_TYPE, type_len);
		memcpy(body + name_len + type_len, r->data, r->p.size);

		uint8_t sekey[16];
		put64(sekey, stream_id);
		put64(sekey + 8, version + i);
		k.mv_size = sizeof(sekey);
		k.mv_data = sekey;
		v.mv_size = sizeof(pkey);
		v.mv_data = pkey;
		rc = mdb_put(txn, r->stream_events, &k, &v, 0);
		if (rc != 0) {
			rc = fail(r, rc, "mdb_put stream_events");
			goto err_after_begin;
		}

		k.mv_size = 16;
		k.mv_data = (void *)id;
		v.mv_size = sizeof(pkey);
		v.mv_data = pkey;
		rc = mdb_put(txn, r->event_ids, &k, &v, MDB_NOOVERWRITE);
		if (rc != 0) {
			rc = fail(r, rc, "mdb_put event_ids");
			goto err_after_begin;
		}
	}

	put64(rec + 16, version + n);
	put64(rec + 32, pos->position + n - 1);
	put64(rec + 48, now);
	k.mv_size = name_len;
	k.mv_data = name;
	v.mv_size = sizeof(rec);
	v.mv_data = rec;
	rc = mdb_put(txn, r->streams, &k, &v, 0);
	if (rc != 0) {
		rc = fail(r, rc, "mdb_put streams");
		goto err_after_begin;
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		return fail(r, rc, "mdb_txn_commit (nested)");
	pos->position += n;
	return 0;

err_after_begin:
	mdb_txn_abort(txn);
	return rc;
}

/* Runs one batch of up to batch_size requests, stopping at request number
 * until; advances r->pos only when the batch committed. */
static int batch(struct raw_lmdb *r, uint64_t until, uint32_t batch_size)
{
	const struct raw_params *p = &r->p;
	struct raw_result *res = &r->res;
	struct raw_pos cur = r->pos;
	MDB_txn *txn;
	uint64_t tb = bench_now_ns();
	int rc = mdb_txn_begin(r->env, NULL, 0, &txn);
	if (rc != 0)
		return fail(r, rc, "mdb_txn_begin");
	for (uint32_t j = 0; j < batch_size && cur.request < until; j++) {
		uint64_t done = cur.request * p->batch_events;
		uint64_t left = p->events - done;
		uint32_t n = left < p->batch_events ? (uint32_t)left : p->batch_events;
		rc = request(r, txn, (uint32_t)(cur.request % p->streams), n, &cur);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return rc;
		}
		cur.request++;
	}
	uint64_t t0 = bench_now_ns();
	rc = mdb_txn_commit(txn);
	uint64_t t1 = bench_now_ns();
	uint64_t dt = t1 - t0;
	if (rc != 0)
		return fail(r, rc, "mdb_txn_commit");
	res->batch_ns_total += t1 - tb;
	res->commit_ns_total += dt;
	if (dt > res->commit_ns_max)
		res->commit_ns_max = dt;
	res->batches++;
	r->pos = cur;
	return 0;
}

int raw_lmdb_open(struct raw_lmdb **out, const char *dir, const struct raw_params *p, char *errmsg,
                  size_t errlen)
{
	if (p->events == 0 || p->streams == 0 || p->batch_events == 0) {
		snprintf(errmsg, errlen, "events, streams and batch events must be > 0");
		return WB_E_INVAL;
	}
	struct raw_lmdb *r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto err_nomem;
	r->p = *p;
	r->errmsg = errmsg;
	r->errlen = errlen;
	r->map_size = (size_t)(p->map_size != 0 ? p->map_size : bench_map_size(p->events, p->size));
	r->pos.position = 1;
	bench_ids_seed(&r->pos.ids, 0, p->random_ids);
	r->data = malloc(p->size > 0 ? p->size : 1);
	r->ids = malloc((size_t)p->batch_events * 16u);
	if (r->data == NULL || r->ids == NULL)
		goto err_after_alloc;
	bench_rng_fill(&r->pos.ids.rng, r->data, p->size);

	int rc = env_open(r, dir);
	if (rc != 0) {
		free(r->ids);
		free(r->data);
		free(r);
		return rc;
	}
	r->errmsg = NULL;
	r->errlen = 0;
	*out = r;
	return 0;

err_after_alloc:
	free(r->ids);
	free(r->data);
	free(r);
err_nomem:
	snprintf(errmsg, errlen, "out of memory");
	return WB_E_NOMEM;
}

int raw_lmdb_advance(struct raw_lmdb *r, uint64_t upto, uint32_t batch_size, char *errmsg,
                     size_t errlen)
{
	if (batch_size == 0) {
		snprintf(errmsg, errlen, "the batch size must be > 0");
		return WB_E_INVAL;
	}
	r->errmsg = errmsg;
	r->errlen = errlen;
	uint64_t k = r->p.batch_events;
	if (upto > r->p.events)
		upto = r->p.events;
	uint64_t until = (upto + k - 1) / k;
	uint64_t t0 = bench_now_ns();
	while (r->pos.request < until) {
		if (r->p.stop != NULL && atomic_load(r->p.stop)) {
			snprintf(errmsg, errlen, "the baseline was interrupted after %llu events",
			         (unsigned long long)(r->pos.position - 1));
			return WB_E_AGAIN;
		}
		int rc = batch(r, until, batch_size);
		if (rc == WB_E_MAPFULL) {
			/* No transaction is open here, as mdb_env_set_mapsize
			 * requires. */
			size_t bigger = r->map_size * 2;
			int mrc = mdb_env_set_mapsize(r->env, bigger);
			if (mrc != 0)
				return fail(r, mrc, "growing the map");
			r->map_size = bigger;
			r->res.map_grows++;
			continue;
		}
		if (rc != 0)
			return rc;
	}
	r->errmsg = NULL;
	r->errlen = 0;
	r->res.elapsed_ns += bench_now_ns() - t0;
	r->res.requests = r->pos.request;
	r->res.events = r->pos.position - 1;
	return 0;
}

void raw_lmdb_result(struct raw_lmdb *r, struct raw_result *out)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(r->env, &info) == 0 && mdb_env_stat(r->env, &st) == 0)
		r->res.map_used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
	*out = r->res;
}

void raw_lmdb_close(struct raw_lmdb *r)
{
	if (r == NULL)
		return;
	mdb_env_close(r->env);
	free(r->ids);
	free(r->data);
	free(r);
}

int raw_lmdb_run(const char *dir, const struct raw_params *p, struct raw_result *out, char *errmsg,
                 size_t errlen)
{
	struct raw_lmdb *r;
	int rc = raw_lmdb_open(&r, dir, p, errmsg, errlen);
	if (rc != 0)
		return rc;
	rc = raw_lmdb_advance(r, p->events, p->batch, errmsg, errlen);
	if (rc == 0)
		raw_lmdb_result(r, out);
	raw_lmdb_close(r);
	return rc;
}

/* ---------------------------------------------------------------- raw subcommand */

/* The raw subcommand's options: the baseline's parameters and where it
 * runs. */
struct raw_opts {
	struct raw_params p;
	const char *data_dir;
	bool json;
};

/* The options of `whizbang-bench raw`, their defaults and bounds: the
 * command line is read from this table and its --help written from it. */
static const struct cli_opt raw_table[] = {
        BENCH_OPTS_APPENDS(struct raw_opts, p.events, p.size, p.streams),
        {"--batch", "R", CLI_COUNT_AT(struct raw_opts, p.batch, 1, 1000000), .required = true,
         .help = "requests per fsync'd write transaction"},
        BENCH_OPT_BATCH_EVENTS(struct raw_opts, p.batch_events),
        BENCH_OPT_DATA_DIR(struct raw_opts, data_dir),
        BENCH_OPT_MAP_SIZE(struct raw_opts, p.map_size),
        BENCH_OPT_SERVER_EXTRAS(struct raw_opts, p.server_extras),
        BENCH_OPT_RANDOM_IDS(struct raw_opts, p.random_ids),
        BENCH_OPT_JSON(struct raw_opts, json),
        {0},
};

static int raw_run(void *opts)
{
	const struct raw_opts *o = opts;
	const struct raw_params *p = &o->p;
	char errmsg[BENCH_ERRMSG_MAX];
	char parent[BENCH_PATH_MAX];
	char dir[BENCH_PATH_MAX];
	if (bench_make_root(o->data_dir, parent, dir) != 0)
		return 1;
	struct raw_result res;
	int rc = raw_lmdb_run(dir, p, &res, errmsg, sizeof(errmsg));
	if (bench_rmtree(dir) != 0)
		fprintf(stderr, "whizbang-bench raw: warning: cannot remove %s\n", dir);
	if (rc != 0) {
		fprintf(stderr, "whizbang-bench raw: %s (%s)\n", errmsg, wb_error_name(rc));
		return 1;
	}

	double secs = (double)res.elapsed_ns / 1e9;
	double eps = (double)res.events / secs;
	double rps = (double)res.requests / secs;
	double mbps = (double)res.events * p->size / secs / 1e6;
	double batch_ms = (double)res.batch_ns_total / (double)res.batches / 1e6;
	double commit_ms = (double)res.commit_ns_total / (double)res.batches / 1e6;
	if (o->json) {
		printf("{\"events\":%llu,\"size\":%u,\"streams\":%u,\"batch\":%u,"
		       "\"batch_events\":%u,\"server_extras\":%s,\"requests\":%llu,"
		       "\"batches\":%llu,\"elapsed_s\":%.6f,\"events_per_s\":%.1f,"
		       "\"appends_per_s\":%.1f,\"mb_per_s\":%.3f,\"mean_batch_ms\":%.3f,"
		       "\"mean_commit_ms\":%.3f,\"max_commit_ms\":%.3f,\"map_grows\":%llu,"
		       "\"map_used\":%llu,\"dir\":",
		       (unsigned long long)res.events, p->size, p->streams, p->batch,
		       p->batch_events, p->server_extras ? "true" : "false",
		       (unsigned long long)res.requests, (unsigned long long)res.batches, secs, eps,
		       rps, mbps, batch_ms, commit_ms, (double)res.commit_ns_max / 1e6,
		       (unsigned long long)res.map_grows, (unsigned long long)res.map_used);
		bench_json_str(stdout, parent);
		printf("}\n");
	} else {
		printf("raw LMDB baseline: %llu events of %u B in %u streams, %u event(s) per "
		       "request, %u requests per fsync'd batch%s, under %s\n",
		       (unsigned long long)res.events, p->size, p->streams, p->batch_events,
		       p->batch, p->server_extras ? ", with the server's extras" : "", parent);
		printf("  elapsed      %.3f s, %llu requests in %llu batches\n", secs,
		       (unsigned long long)res.requests, (unsigned long long)res.batches);
		printf("  throughput   %.0f events/s  %.0f appends/s  %.2f MB/s\n", eps, rps, mbps);
		printf("  per batch    mean %.3f ms from begin to durable, of which commit "
		       "(fsync) mean %.3f ms, max %.3f ms\n",
		       batch_ms, commit_ms, (double)res.commit_ns_max / 1e6);
		printf("  map          %.1f MB used, %llu grows\n", (double)res.map_used / 1e6,
		       (unsigned long long)res.map_grows);
	}
	return 0;
}

const struct bench_command bench_raw_command =
        BENCH_COMMAND("raw", raw_table, struct raw_opts, raw_run,
                      "Appends N events of B bytes to S streams straight into LMDB, R requests "
                      "of K events per fsync'd transaction. See docs/BENCHMARKS.md.");
