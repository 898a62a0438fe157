/* End-to-end test of Backup and of restoring from it (docs/OPERATIONS.md,
 * "Backup and restore"): a real whizbangd takes appends and projection
 * commits from threads while a Backup copies it; the copy is then put into
 * the emptied data directory of a second server, which must hold every
 * acknowledged event up to the backup's last_position (ids and data), the
 * ledger up to its watermark, and read models that replay to the same
 * digest. Also: progress pushes arrive, a second Backup while one runs is
 * refused, and bad paths are refused with their reason. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e_util.h"
#include "optext.h"
#include "wb.h"

/* The store is filled to about this many bytes before the Backup, so that
 * the copy takes long enough for a second Backup to meet it. */
#define PRELOAD_BYTES (64u << 20)
#define PRELOAD_EVENT_SIZE 8192u
#define PRELOAD_BATCH 100u
/* Bounds of the writers that run during the Backup. */
#define LOAD_EVENTS_MAX 20000u
#define LOAD_COMMITS_MAX 2000u
#define LOAD_EVENT_SIZE 512u

/* The server the backup is restored into (the suite's is e2e_srv). */
static struct e2e_server srv2;

struct acked {
	uint8_t id[16];
	uint64_t position;
	uint64_t seed; /* the data is fill(seed) */
	int64_t at_ms; /* when the acknowledgement arrived */
};

struct load {
	struct acked *events;
	size_t nevents;
	uint64_t *commit_seq; /* the sequence each entity a-K was committed at */
	size_t ncommits;
	atomic_bool stop;
	int append_rc, commit_rc;
};

static struct load load;

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

static void make_id(uint8_t id[16], uint64_t seed)
{
	memset(id, 0, 16);
	memcpy(id, &seed, sizeof(seed));
	id[8] = 0xbb;
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* a version-4 shape */
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
}

/* Appends n events of size bytes with seeds from *seed on, recording them. */
static int append_batch(struct wb_client *c, const char *stream, size_t n, size_t size,
                        uint64_t *seed)
{
	struct wb_new_event evs[PRELOAD_BATCH];
	uint8_t ids[PRELOAD_BATCH][16];
	uint8_t *data = malloc(n * size);
	cr_assert_not_null(data);
	for (size_t i = 0; i < n; i++) {
		make_id(ids[i], *seed + i);
		fill(data + i * size, size, *seed + i);
		evs[i] = (struct wb_new_event){
		        .id = ids[i], .type = "Filled", .data = data + i * size, .data_len = size};
	}
	struct wb_append_result res;
	int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, evs, n, &res);
	int64_t now = e2e_now_ms();
	if (rc == 0) {
		for (size_t i = 0; i < n; i++) {
			struct acked *a = &load.events[load.nevents++];
			memcpy(a->id, ids[i], 16);
			a->position = res.first_position + i;
			a->seed = *seed + i;
			a->at_ms = now;
		}
		*seed += n;
	}
	free(data);
	return rc;
}

static uint64_t next_seed = 1;

static void *appender(void *arg)
{
	(void)arg;
	struct wb_client *c = e2e_client(&e2e_srv, "backup-appender");
	if (c == NULL) {
		load.append_rc = -1;
		return NULL;
	}
	size_t done = 0;
	while (!atomic_load(&load.stop) && done < LOAD_EVENTS_MAX) {
		char stream[32];
		snprintf(stream, sizeof(stream), "live-%zu", done % 7);
		int rc = append_batch(c, stream, 10, LOAD_EVENT_SIZE, &next_seed);
		if (rc != 0) {
			fprintf(stderr, "append: %s\n", wb_errmsg(c));
			load.append_rc = rc;
			break;
		}
		done += 10;
	}
	wb_close(c);
	return NULL;
}

/* Leases a sequence for projection "bk", commits "upsert Acct a-K" with
 * ACK_APPLIED, and records the sequence. */
static int commit_one(struct wb_client *c, size_t k)
{
	char text[160];
	snprintf(text, sizeof(text), "upsert Acct \"a-%zu\" {n: %zu, grp: \"g%zu\"}", k, k, k % 5);
	Whizbang__V1__OpList *ops;
	struct optext_error err;
	int rc = optext_parse_ops(text, &ops, &err);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", text, err.message);
		return rc;
	}
	struct wb_lease_args la = {.projection = "bk", .count = 1};
	struct wb_lease_grant g;
	size_t n;
	rc = wb_lease(c, &la, &g, 1, &n);
	struct wb_commit_result cres;
	if (rc == 0)
		rc = wb_commit(c, g.sequence, g.token, ops, true, false, &cres);
	optext_free_ops(ops);
	if (rc != 0) {
		fprintf(stderr, "lease/commit: %s\n", wb_errmsg(c));
		return rc;
	}
	load.commit_seq[k] = cres.sequence;
	load.ncommits = k + 1;
	return 0;
}

static void *committer(void *arg)
{
	(void)arg;
	struct wb_client *c = e2e_client(&e2e_srv, "backup-committer");
	if (c == NULL) {
		load.commit_rc = -1;
		return NULL;
	}
	for (size_t k = load.ncommits; !atomic_load(&load.stop) && k < LOAD_COMMITS_MAX; k++) {
		int rc = commit_one(c, k);
		if (rc != 0) {
			load.commit_rc = rc;
			break;
		}
	}
	wb_close(c);
	return NULL;
}

/* ---------------------------------------------------------------- progress */

struct progress {
	size_t pushes;
	uint64_t last_bytes;
	bool rising;
	int second_rc; /* what a second Backup got, asked at the first push */
	char second_msg[256];
	char second_path[128];
};

static void progress_cb(void *arg, const struct wb_backup_result *p)
{
	struct progress *pr = arg;
	if (p->bytes < pr->last_bytes)
		pr->rising = false;
	pr->last_bytes = p->bytes;
	if (pr->pushes++ > 0)
		return;
	/* The first Backup is running now: a second one is refused. */
	struct wb_client *c2 = e2e_client(&e2e_srv, "backup-second");
	if (c2 == NULL) {
		pr->second_rc = -1;
		return;
	}
	pr->second_rc = wb_backup(c2, pr->second_path, NULL, NULL, NULL);
	snprintf(pr->second_msg, sizeof(pr->second_msg), "%s", wb_errmsg(c2));
	wb_close(c2);
}

/* ---------------------------------------------------------------- helpers */

static void empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s", dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (strcmp(e->d_name, "wal") == 0) { /* the log's segments */
			empty_dir(p);
			cr_assert_eq(rmdir(p), 0, "cannot remove %s", p);
			continue;
		}
		cr_assert_eq(unlink(p), 0, "cannot remove %s (a directory?)", p);
	}
	closedir(d);
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb");
	cr_assert_not_null(in, "%s", from);
	FILE *out = fopen(to, "wb");
	cr_assert_not_null(out, "%s", to);
	char buf[1 << 16];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		cr_assert_eq(fwrite(buf, 1, n, out), n);
	cr_assert_eq(fclose(out), 0);
	fclose(in);
}

/* Restores the backup at path as docs/OPERATIONS.md says, into srv2:
 * stop the server, put the copy's data.mdb into an emptied data directory,
 * start. Returns a client of the restored server (closed by the caller). */
static struct wb_client *restore(const char *path)
{
	e2e_start_ok(&srv2, NULL);
	e2e_stop_ok(&srv2);
	empty_dir(srv2.data_dir);
	char from[256], to[256];
	snprintf(from, sizeof(from), "%s/data.mdb", path);
	snprintf(to, sizeof(to), "%s/data.mdb", srv2.data_dir);
	copy_file(from, to);
	e2e_restart_ok(&srv2);
	return e2e_client_ok(&srv2, "backup-restored");
}

static int by_position(const void *a, const void *b)
{
	uint64_t x = ((const struct acked *)a)->position, y = ((const struct acked *)b)->position;
	return x < y ? -1 : x > y;
}

/* The ledger entries 1..upto of c, packed one by one into *out. */
static size_t read_ledger(struct wb_client *c, uint64_t upto, uint8_t ***out, size_t **lens)
{
	size_t n = 0, cap = 0;
	uint8_t **bufs = NULL;
	size_t *ls = NULL;
	uint64_t from = 1;
	while (from <= upto) {
		Whizbang__V1__ReadLedgerResult *r;
		cr_assert_eq(wb_read_ledger(c, from, 0, &r), 0, "read ledger: %s", wb_errmsg(c));
		for (size_t i = 0; i < r->n_entries && r->entries[i]->sequence <= upto; i++) {
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				bufs = realloc(bufs, cap * sizeof(*bufs));
				ls = realloc(ls, cap * sizeof(*ls));
				cr_assert(bufs != NULL && ls != NULL);
			}
			ls[n] = whizbang__v1__ledger_entry__get_packed_size(r->entries[i]);
			bufs[n] = malloc(ls[n] + 1);
			whizbang__v1__ledger_entry__pack(r->entries[i], bufs[n]);
			n++;
		}
		bool end = r->end || r->n_entries == 0;
		cr_assert(r->next_sequence > from || end, "the ledger read does not advance");
		from = r->next_sequence;
		wb_ledger_free(r);
		if (end)
			break;
	}
	*out = bufs;
	*lens = ls;
	return n;
}

static bool same_entity(struct wb_client *a, struct wb_client *b, const char *id)
{
	Whizbang__V1__Entity *ea, *eb;
	cr_assert_eq(wb_get_entity(a, "Acct", id, &ea), 0, "%s: %s", id, wb_errmsg(a));
	cr_assert_eq(wb_get_entity(b, "Acct", id, &eb), 0, "%s: %s", id, wb_errmsg(b));
	size_t la = whizbang__v1__entity__get_packed_size(ea);
	size_t lb = whizbang__v1__entity__get_packed_size(eb);
	uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);
	whizbang__v1__entity__pack(ea, pa);
	whizbang__v1__entity__pack(eb, pb);
	bool same = la == lb && memcmp(pa, pb, la) == 0;
	free(pa);
	free(pb);
	wb_entity_free(ea);
	wb_entity_free(eb);
	return same;
}

static void fini(void)
{
	e2e_suite_fini();
	e2e_cleanup(&srv2);
	free(load.events);
	free(load.commit_seq);
}

TestSuite(backup, .fini = fini, .timeout = 60);

/* ---------------------------------------------------------------- tests */

Test(backup, bad_paths_are_refused_with_their_reason)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "backup-bad");
	char p[256];
	struct {
		const char *path;
		const char *says;
	} cases[] = {
	        {"relative/dir", "absolute"},
	        {e2e_srv.data_dir, "inside the data directory"},
	        {NULL, "inside the data directory"}, /* DATA/sub */
	        {e2e_srv.dir, "not empty"},          /* holds server.log */
	        {e2e_srv.log_file, "not a directory"},
	        {"/nonexistent-whizbang-dir/backup", "parent"},
	};
	snprintf(p, sizeof(p), "%s/sub", e2e_srv.data_dir);
	cases[2].path = p;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = wb_backup(c, cases[i].path, NULL, NULL, NULL);
		cr_assert_eq(rc, WB_BAD_REQUEST, "%s: %s (%s)", cases[i].path, wb_error_name(rc),
		             wb_errmsg(c));
		cr_assert_not_null(strstr(wb_errmsg(c), cases[i].says),
		                   "%s: '%s' does not say '%s'", cases[i].path, wb_errmsg(c),
		                   cases[i].says);
	}
	struct stat st;
	cr_assert_neq(stat(p, &st), 0, "a refused path inside the data directory was created");
	/* An empty directory is accepted; the copy then exists, and a second
	 * Backup into it is refused. */
	snprintf(p, sizeof(p), "%s/empty", e2e_srv.dir);
	cr_assert_eq(mkdir(p, 0700), 0);
	struct wb_backup_result res;
	cr_assert_eq(wb_backup(c, p, NULL, NULL, &res), 0, "%s", wb_errmsg(c));
	cr_assert_gt(res.bytes, 0);
	char file[300];
	snprintf(file, sizeof(file), "%s/data.mdb", p);
	cr_assert_eq(stat(file, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, res.bytes, "bytes names the size of data.mdb");
	cr_assert_eq(wb_backup(c, p, NULL, NULL, NULL), WB_BAD_REQUEST);
	cr_assert_not_null(strstr(wb_errmsg(c), "not empty"), "%s", wb_errmsg(c));
	/* A new directory is created 0750. */
	snprintf(p, sizeof(p), "%s/fresh", e2e_srv.dir);
	cr_assert_eq(wb_backup(c, p, NULL, NULL, NULL), 0, "%s", wb_errmsg(c));
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0750, "mode %o", st.st_mode & 0777);
	e2e_suite_stop_client(c);
}

Test(backup, under_load_then_restored_holds_every_acknowledged_write)
{
	e2e_suite_start(NULL);
	load.events = calloc(PRELOAD_BYTES / PRELOAD_EVENT_SIZE + LOAD_EVENTS_MAX + 16,
	                     sizeof(*load.events));
	load.commit_seq = calloc(LOAD_COMMITS_MAX, sizeof(*load.commit_seq));
	cr_assert(load.events != NULL && load.commit_seq != NULL);

	/* Enough data that the copy takes a while, and some read models. */
	struct wb_client *c = e2e_suite_client("backup-main");
	for (size_t done = 0; done < PRELOAD_BYTES / PRELOAD_EVENT_SIZE; done += PRELOAD_BATCH)
		cr_assert_eq(
		        append_batch(c, "preload", PRELOAD_BATCH, PRELOAD_EVENT_SIZE, &next_seed),
		        0, "%s", wb_errmsg(c));
	for (size_t k = 0; k < 20; k++)
		cr_assert_eq(commit_one(c, k), 0);
	Whizbang__V1__IndexResult *ir;
	cr_assert_eq(wb_create_index(c, "Acct", "grp", &ir), 0, "%s", wb_errmsg(c));
	wb_index_result_free(ir);

	pthread_t ta, tc;
	cr_assert_eq(pthread_create(&ta, NULL, appender, NULL), 0);
	cr_assert_eq(pthread_create(&tc, NULL, committer, NULL), 0);
	while (load.nevents < PRELOAD_BYTES / PRELOAD_EVENT_SIZE + 50 && load.append_rc == 0)
		e2e_sleep_ms(5);

	char path[128];
	snprintf(path, sizeof(path), "%s/copy", e2e_srv.dir);
	struct progress pr = {.rising = true};
	snprintf(pr.second_path, sizeof(pr.second_path), "%s/copy2", e2e_srv.dir);
	struct wb_backup_result res;
	int64_t t0 = e2e_now_ms();
	int rc = wb_backup(c, path, progress_cb, &pr, &res);
	int64_t t1 = e2e_now_ms();
	cr_assert_eq(rc, 0, "backup: %s (%s)", wb_error_name(rc), wb_errmsg(c));
	/* Writes go on for a little after the copy, then stop. */
	e2e_sleep_ms(100);
	atomic_store(&load.stop, true);
	pthread_join(ta, NULL);
	pthread_join(tc, NULL);
	cr_assert_eq(load.append_rc, 0);
	cr_assert_eq(load.commit_rc, 0);

	cr_assert_geq(pr.pushes, 1, "no progress push arrived");
	cr_assert(pr.rising, "progress went backwards");
	cr_assert_leq(pr.last_bytes, res.bytes);
	cr_assert_eq(pr.second_rc, WB_RESOURCE_EXHAUSTED, "a second Backup got %s (%s)",
	             wb_error_name(pr.second_rc), pr.second_msg);
	cr_assert_not_null(strstr(pr.second_msg, "already running"), "%s", pr.second_msg);
	size_t during = 0;
	for (size_t i = 0; i < load.nevents; i++)
		during += load.events[i].at_ms > t0 && load.events[i].at_ms < t1;
	cr_assert_gt(during, 0, "no append was acknowledged while the backup ran (%lld ms)",
	             (long long)(t1 - t0));
	cr_log_info("backup: %llu bytes in %.1f ms, %zu progress pushes, %zu appends during it, "
	            "watermark %llu, last position %llu",
	            (unsigned long long)res.bytes, (double)res.micros / 1000.0, pr.pushes, during,
	            (unsigned long long)res.watermark, (unsigned long long)res.last_position);
	cr_assert_geq(res.last_position, PRELOAD_BYTES / PRELOAD_EVENT_SIZE);
	cr_assert_geq(res.watermark, 21, "the preloaded commits and the index are below it");

	/* Restore as docs/OPERATIONS.md says. */
	struct wb_client *r = restore(path);

	/* Every acknowledged event up to last_position, with its id and data. */
	struct e2e_event *evs;
	size_t nev;
	cr_assert_eq(e2e_read_all(r, 0, NULL, NULL, 0, &evs, &nev), 0, "%s", wb_errmsg(r));
	qsort(load.events, load.nevents, sizeof(*load.events), by_position);
	size_t j = 0, checked = 0;
	uint8_t *want = malloc(PRELOAD_EVENT_SIZE);
	for (size_t i = 0; i < load.nevents && load.events[i].position <= res.last_position; i++) {
		const struct acked *a = &load.events[i];
		while (j < nev && evs[j].position < a->position)
			j++;
		cr_assert(j < nev && evs[j].position == a->position,
		          "acknowledged position %llu is missing from the restored store",
		          (unsigned long long)a->position);
		cr_assert_eq(memcmp(evs[j].id, a->id, 16), 0, "position %llu: another id",
		             (unsigned long long)a->position);
		fill(want, evs[j].data_len, a->seed);
		cr_assert_eq(memcmp(evs[j].data, want, evs[j].data_len), 0,
		             "position %llu: other data", (unsigned long long)a->position);
		checked++;
	}
	free(want);
	cr_assert_geq(checked, PRELOAD_BYTES / PRELOAD_EVENT_SIZE + 50);
	e2e_events_free(evs, nev);

	/* The ledger up to the watermark, entry for entry. */
	uint8_t **la, **lb;
	size_t *lla, *llb;
	size_t na = read_ledger(c, res.watermark, &la, &lla);
	size_t nb = read_ledger(r, res.watermark, &lb, &llb);
	cr_assert_eq(na, res.watermark, "the live ledger has %zu entries up to %llu", na,
	             (unsigned long long)res.watermark);
	cr_assert_eq(nb, na, "the restored ledger has %zu of %zu entries", nb, na);
	for (size_t i = 0; i < na; i++) {
		cr_assert(lla[i] == llb[i] && memcmp(la[i], lb[i], lla[i]) == 0,
		          "ledger entry %zu differs", i + 1);
		free(la[i]);
		free(lb[i]);
	}
	free(la);
	free(lb);
	free(lla);
	free(llb);

	/* The read models: they replay to the same digest, and every entity
	 * committed at or below the watermark reads as on the live server (each
	 * was written once). */
	Whizbang__V1__VerifyResult *v;
	cr_assert_eq(wb_verify(r, &v), 0, "verify: %s", wb_errmsg(r));
	cr_assert(v->match, "the restored read models do not replay to the same digest");
	cr_assert_geq(v->watermark, res.watermark);
	wb_verify_free(v);
	size_t below = 0;
	for (size_t k = 0; k < load.ncommits; k++) {
		if (load.commit_seq[k] > res.watermark)
			continue;
		char id[32];
		snprintf(id, sizeof(id), "a-%zu", k);
		cr_assert(same_entity(c, r, id), "entity %s differs", id);
		below++;
	}
	cr_assert_geq(below, 20);
	/* A query through the index answers the same entities below the
	 * watermark on both. */
	Whizbang__V1__Expr *where;
	struct optext_error err;
	cr_assert_eq(optext_parse_where("grp == \"g3\"", &where, &err), 0);
	Whizbang__V1__QueryResult *qa, *qb;
	cr_assert_eq(wb_query(c, "Acct", where, "grp == \"g3\"", NULL, 0, &qa), 0, "%s",
	             wb_errmsg(c));
	cr_assert_eq(wb_query(r, "Acct", where, "grp == \"g3\"", NULL, 0, &qb), 0, "%s",
	             wb_errmsg(r));
	size_t ia = 0, ib = 0, matched = 0;
	for (; ia < qa->n_entities; ia++) {
		const char *id = qa->entities[ia]->id;
		size_t k = (size_t)strtoul(id + 2, NULL, 10);
		if (load.commit_seq[k] > res.watermark)
			continue;
		while (ib < qb->n_entities && strcmp(qb->entities[ib]->id, id) < 0)
			ib++;
		cr_assert(ib < qb->n_entities && strcmp(qb->entities[ib]->id, id) == 0,
		          "%s is missing from the restored query", id);
		matched++;
	}
	cr_assert_geq(matched, 4);
	wb_query_free(qa);
	wb_query_free(qb);
	optext_free_expr(where);

	wb_close(r);
	wb_close(c);
	e2e_stop_ok(&srv2);
	e2e_suite_stop();
}

static void sigterm_cb(void *arg, const struct wb_backup_result *p)
{
	(void)p;
	int *sent = arg;
	if ((*sent)++ == 0)
		kill(e2e_srv.pid, SIGTERM);
}

/* A SIGTERM while the copy runs: the server stops taking requests, lets
 * the copy complete, answers it, and exits 0; the copy restores. */
Test(backup, a_shutdown_waits_for_the_copy)
{
	e2e_suite_start(NULL);
	load.events = calloc(PRELOAD_BYTES / PRELOAD_EVENT_SIZE + 16, sizeof(*load.events));
	cr_assert_not_null(load.events);
	struct wb_client *c = e2e_suite_client("backup-sigterm");
	for (size_t done = 0; done < PRELOAD_BYTES / PRELOAD_EVENT_SIZE; done += PRELOAD_BATCH)
		cr_assert_eq(
		        append_batch(c, "preload", PRELOAD_BATCH, PRELOAD_EVENT_SIZE, &next_seed),
		        0, "%s", wb_errmsg(c));
	char path[128];
	snprintf(path, sizeof(path), "%s/copy", e2e_srv.dir);
	int sent = 0;
	struct wb_backup_result res;
	int rc = wb_backup(c, path, sigterm_cb, &sent, &res);
	cr_assert_eq(sent >= 1, true, "no progress push arrived");
	cr_assert_eq(rc, 0, "backup: %s (%s)", wb_error_name(rc), wb_errmsg(c));
	cr_assert_eq(res.last_position, load.nevents);
	wb_close(c);
	e2e_suite_wait_exit();
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=backup_done"), 1);

	struct wb_client *r = restore(path);
	struct e2e_event *evs;
	size_t nev;
	cr_assert_eq(e2e_read_all(r, 0, NULL, NULL, 0, &evs, &nev), 0, "%s", wb_errmsg(r));
	cr_assert_eq(nev, load.nevents);
	for (size_t i = 0; i < nev; i++)
		cr_assert_eq(memcmp(evs[i].id, load.events[i].id, 16), 0, "position %zu", i + 1);
	e2e_events_free(evs, nev);
	wb_close(r);
	e2e_stop_ok(&srv2);
}
