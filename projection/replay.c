/* Replay and verification (replay.h). */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "meta.h"
#include "wb_error.h"

/* Entries read per read transaction and applied per write transaction. */
#define CHUNK 512u
#define PROGRESS_EVERY 4096u

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One chunk of entries copied out of the source's read transaction. */
struct chunk {
	uint64_t seq[CHUNK];
	size_t off[CHUNK];
	size_t len[CHUNK];
	size_t n;
	struct proj_buf ops;
	uint64_t watermark;
	bool nomem;
};

static bool copy_cb(const struct ledger_entry *e, void *arg)
{
	struct chunk *c = arg;
	if (e->seq > c->watermark)
		return false;
	c->seq[c->n] = e->seq;
	c->off[c->n] = c->ops.len;
	c->len[c->n] = e->ops_len;
	if (e->ops_len > 0 && proj_buf_append(&c->ops, e->ops, e->ops_len) != 0) {
		c->nomem = true;
		return false;
	}
	c->n++;
	return true;
}

static int read_chunk(struct storage *src, uint64_t from, struct chunk *c, uint64_t *next)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(src, NULL, STORAGE_RDONLY, &txn);
	if (rc != 0)
		return rc;
	c->n = 0;
	c->ops.len = 0;
	rc = ledger_read(txn, from, CHUNK, copy_cb, c, next);
	storage_txn_abort(txn);
	if (rc == 0 && c->nomem)
		rc = WB_E_NOMEM;
	return rc;
}

/* Applies a chunk in one write transaction of dst, growing the map and
 * starting over when it fills. */
static int apply_chunk(struct storage *dst, const struct chunk *c, const struct proj_config *cfg,
                       struct proj_replay_stats *st)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		struct storage_txn *txn;
		int rc = storage_txn_begin(dst, NULL, 0, &txn);
		if (rc != 0)
			return rc;
		struct proj_replay_stats add = {0};
		for (size_t i = 0; rc == 0 && i < c->n; i++) {
			if (c->len[i] == 0)
				continue;
			struct proj_outcome o;
			rc = proj_apply(txn, c->seq[i], c->ops.p + c->off[i], c->len[i], cfg,
			                PROJ_REPLAY, NULL, &o);
			if (rc == 0) {
				add.entries++;
				add.ops += o.ops;
				add.failed += o.error != 0;
			}
		}
		if (rc == 0)
			rc = storage_txn_commit(txn);
		else
			storage_txn_abort(txn);
		if (rc == 0) {
			st->entries += add.entries;
			st->ops += add.ops;
			st->failed += add.failed;
			return 0;
		}
		if (rc != WB_E_MAPFULL)
			return rc;
		rc = storage_grow(dst, c->ops.len * 4 + (16u << 20));
		if (rc != 0)
			return rc;
	}
	return WB_E_MAPFULL;
}

static int set_rebuild_mark(struct storage *s, bool on)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(s, NULL, 0, &txn);
	if (rc != 0)
		return rc;
	if (on) {
		rc = meta_put_u64(txn, PROJ_REBUILD_KEY, 1);
		if (rc == 0)
			rc = proj_clear(txn);
	} else {
		struct storage_val k = {PROJ_REBUILD_KEY, strlen(PROJ_REBUILD_KEY)};
		rc = storage_del(txn, STORAGE_DB_META, k);
		if (rc == WB_E_NOTFOUND)
			rc = 0;
	}
	if (rc == 0)
		return storage_txn_commit(txn);
	storage_txn_abort(txn);
	return rc;
}

int proj_replay(struct storage *src, struct storage *dst, const struct proj_config *cfg,
                proj_progress_fn progress, void *arg, struct proj_replay_stats *out,
                char *errmsg, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	uint64_t t0 = now_us();
	struct storage_txn *txn;
	struct ledger_state ls;
	int rc = storage_txn_begin(src, NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = ledger_get_state(txn, &ls);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		snprintf(errmsg, errlen, "reading the ledger's state: %s", wb_strerror(rc));
		return rc;
	}
	out->watermark = ls.watermark;
	rc = set_rebuild_mark(dst, true);
	if (rc != 0) {
		snprintf(errmsg, errlen, "clearing the read models: %s", wb_strerror(rc));
		return rc;
	}
	struct chunk *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return WB_E_NOMEM;
	}
	c->watermark = ls.watermark;
	uint64_t from = 1, shown = 0;
	while (from <= ls.watermark) {
		uint64_t next;
		rc = read_chunk(src, from, c, &next);
		if (rc != 0) {
			snprintf(errmsg, errlen, "reading the ledger at %llu: %s",
			         (unsigned long long)from, wb_strerror(rc));
			break;
		}
		if (c->n == 0)
			break;
		rc = apply_chunk(dst, c, cfg, out);
		if (rc != 0) {
			snprintf(errmsg, errlen, "applying entries %llu..%llu: %s",
			         (unsigned long long)c->seq[0], (unsigned long long)c->seq[c->n - 1],
			         wb_strerror(rc));
			break;
		}
		from = c->seq[c->n - 1] + 1;
		if (progress != NULL && from - 1 - shown >= PROGRESS_EVERY) {
			shown = from - 1;
			progress(shown, ls.watermark, arg);
		}
	}
	proj_buf_free(&c->ops);
	free(c);
	if (rc == 0)
		rc = set_rebuild_mark(dst, false);
	if (rc == 0 && progress != NULL)
		progress(ls.watermark, ls.watermark, arg);
	out->micros = now_us() - t0;
	return rc;
}

void proj_remove_store(const char *path)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/data.mdb", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s/whizbang.lock", path);
	unlink(p);
	rmdir(path);
}

int proj_verify(struct storage *live, const char *scratch_path, const struct proj_config *cfg,
                proj_progress_fn progress, void *arg, struct proj_verify_result *out,
                char *errmsg, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (errlen > 0)
		errmsg[0] = '\0';
	struct storage *scratch;
	struct storage_options so = {.path = scratch_path, .no_sync = true};
	if (access(scratch_path, F_OK) == 0) {
		snprintf(errmsg, errlen, "%s exists: the scratch store must be new", scratch_path);
		return WB_E_INVAL;
	}
	int rc = storage_open(&scratch, &so, errmsg, errlen);
	if (rc != 0)
		return rc;
	rc = proj_replay(live, scratch, cfg, progress, arg, &out->replay, errmsg, errlen);
	struct storage_txn *a = NULL, *b = NULL;
	if (rc == 0)
		rc = storage_txn_begin(live, NULL, STORAGE_RDONLY, &a);
	if (rc == 0)
		rc = storage_txn_begin(scratch, NULL, STORAGE_RDONLY, &b);
	uint64_t rebuilt = 0;
	if (rc == 0)
		rc = proj_digest(a, out->live_digest, &out->entities);
	if (rc == 0)
		rc = proj_digest(b, out->replay_digest, &rebuilt);
	if (rc == 0) {
		out->match = memcmp(out->live_digest, out->replay_digest, PROJ_DIGEST_LEN) == 0;
		if (!out->match) {
			rc = proj_diff(a, b, "the live store", "the replay", out->first_difference,
			               sizeof(out->first_difference));
			rc = rc == 1 ? 0 : rc;
			if (rc == 0 && out->first_difference[0] == '\0')
				snprintf(out->first_difference, sizeof(out->first_difference),
				         "the digests differ but no record does");
		}
	} else if (errmsg[0] == '\0') {
		snprintf(errmsg, errlen, "computing digests: %s", wb_strerror(rc));
	}
	if (a != NULL)
		storage_txn_abort(a);
	if (b != NULL)
		storage_txn_abort(b);
	storage_close(scratch);
	proj_remove_store(scratch_path);
	return rc;
}
