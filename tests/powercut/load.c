/* The traced run (pcut.h): whizbangd under the interposer, a mixed load,
 * and a SIGKILL while the load is in flight.
 *
 * Happy path: make DIR/data (empty), DIR/trace and DIR/counter, start the
 * server with LD_PRELOAD and the WB_PCUT_* variables, start the load
 * threads (PCUT_APPENDERS appenders pipelining appends with client-chosen
 * ids over PCUT_STREAMS streams; one projection worker leasing, committing
 * upserts and update-by-where ops, sometimes two leases committed out of
 * order, sometimes releasing; one consumer group member acking what it
 * reads), sleep a random time, kill the server, and collect the
 * acknowledgements, each stamped with the counter read as it arrived.
 *
 * Failure modes: a server that does not start, a load thread that cannot
 * connect, or an error answer from the server before the kill are harness
 * failures (-1 with the reason): the run proves nothing then. After the
 * kill every thread stops at its first failed call. */
#include "pcut.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "optext.h"
#include "trace.h"
#include "wb.h"

#define PIPELINE 4

extern char **environ;

struct shared {
	_Atomic uint64_t *counter;
	atomic_bool stop;
	atomic_bool killed;
	atomic_uint appends;
	pthread_mutex_t mu;
	struct pcut_ack *acks;
	size_t nacks, cap;
	char address[32];
	char err[512];
	uint32_t sent[PCUT_APPENDERS];
};

struct worker {
	pthread_t tid;
	struct shared *sh;
	uint32_t thread;
	uint64_t seed;
};

/* Stamps a with the ops recorded so far (everything the acknowledgement
 * depends on completed before it was sent) and keeps it. */
static void record(struct shared *sh, struct pcut_ack *a)
{
	a->stamp = atomic_load(sh->counter);
	pthread_mutex_lock(&sh->mu);
	if (sh->nacks == sh->cap) {
		size_t c = sh->cap > 0 ? sh->cap * 2 : 4096;
		struct pcut_ack *p = realloc(sh->acks, c * sizeof(*p));
		if (p == NULL) {
			pthread_mutex_unlock(&sh->mu);
			return;
		}
		sh->acks = p;
		sh->cap = c;
	}
	sh->acks[sh->nacks++] = *a;
	pthread_mutex_unlock(&sh->mu);
}

/* Notes an unexpected failure before the kill (after it, every call
 * fails and that is the point). */
static void unexpected(struct shared *sh, const char *what, int rc, const char *msg)
{
	if (atomic_load(&sh->killed))
		return;
	pthread_mutex_lock(&sh->mu);
	if (sh->err[0] == '\0')
		snprintf(sh->err, sizeof(sh->err), "%s: %s: %s", what, wb_error_name(rc), msg);
	pthread_mutex_unlock(&sh->mu);
	atomic_store(&sh->stop, true);
}

static struct wb_client *connect_client(struct shared *sh, const char *name)
{
	struct wb_options opts = {.client_name = name, .timeout_ms = 10000};
	struct wb_client *c = NULL;
	char msg[256] = "";
	int rc = wb_connect(&c, sh->address, &opts, msg, sizeof(msg));
	if (rc != 0) {
		unexpected(sh, "connect", rc, msg);
		return NULL;
	}
	return c;
}

/* ------------------------------------------------------------ appenders */

static void *appender_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct wb_client *c = connect_client(sh, "pcut-append");
	if (c == NULL)
		return NULL;
	uint64_t req[PIPELINE];
	uint32_t seqs[PIPELINE];
	size_t inflight = 0;
	uint32_t next = 0;
	char data[PCUT_MAX_BATCH][4096];
	while (!atomic_load(&sh->stop)) {
		while (inflight < PIPELINE) {
			uint32_t n = pcut_batch_size(w->thread, next);
			uint8_t ids[PCUT_MAX_BATCH][16];
			char meta[PCUT_MAX_BATCH][16];
			struct wb_new_event evs[PCUT_MAX_BATCH];
			char stream[32];
			pcut_event_stream(w->thread, next, stream, sizeof(stream));
			for (uint32_t i = 0; i < n; i++) {
				pcut_event_id(w->thread, next, i, ids[i]);
				size_t len = pcut_event_data(w->thread, next, i, data[i],
				                             sizeof(data[i]));
				snprintf(meta[i], sizeof(meta[i]), "m%u", i);
				evs[i] = (struct wb_new_event){
				        .id = ids[i],
				        .type = PCUT_EVENT_TYPE,
				        .data = data[i],
				        .data_len = len,
				        .metadata = meta[i],
				        .metadata_len = strlen(meta[i]),
				};
			}
			int rc =
			        wb_append_send(c, stream, WB_EXPECT_ANY, 0, evs, n, &req[inflight]);
			if (rc != 0) {
				unexpected(sh, "append send", rc, wb_errmsg(c));
				goto out;
			}
			seqs[inflight++] = next++;
			pthread_mutex_lock(&sh->mu);
			sh->sent[w->thread] = next;
			pthread_mutex_unlock(&sh->mu);
		}
		Whizbang__V1__Response *r;
		int rc = wb_recv(c, &r);
		if (rc != 0) {
			unexpected(sh, "append receive", rc, wb_errmsg(c));
			goto out;
		}
		size_t k = 0;
		while (k < inflight && req[k] != r->id)
			k++;
		if (k == inflight || r->body_case != WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS) {
			unexpected(sh, "append answer", r->error != NULL ? (int)r->error->code : 0,
			           r->error != NULL ? r->error->message : "not an AppendResult");
			whizbang__v1__response__free_unpacked(r, NULL);
			goto out;
		}
		struct pcut_ack a = {
		        .kind = PCUT_ACK_APPEND,
		        .thread = w->thread,
		        .seq = seqs[k],
		        .n = pcut_batch_size(w->thread, seqs[k]),
		        .first = r->append_events->first_position,
		        .last = r->append_events->last_position,
		        .version = r->append_events->stream_version,
		};
		record(sh, &a);
		atomic_fetch_add(&sh->appends, 1);
		whizbang__v1__response__free_unpacked(r, NULL);
		req[k] = req[inflight - 1];
		seqs[k] = seqs[inflight - 1];
		inflight--;
	}
out:
	wb_close(c);
	return NULL;
}

/* ------------------------------------------------------------ projection */

/* Commits seq with ops that upsert o-SEQ and, every fourth time, update
 * by a where clause. */
static int commit_one(struct shared *sh, struct wb_client *c, const struct wb_lease_grant *g,
                      bool applied)
{
	char text[512];
	int n = snprintf(text, sizeof(text),
	                 "upsert " PCUT_ENTITY " \"o-%llu\" {n: %llu, grp: %llu, status: \"new\"}",
	                 (unsigned long long)g->sequence, (unsigned long long)g->sequence,
	                 (unsigned long long)(g->sequence % 5));
	if (g->sequence % 4 == 0 && n > 0)
		snprintf(text + n, sizeof(text) - (size_t)n,
		         "; update " PCUT_ENTITY " where grp == %llu and n < %llu set status = "
		         "\"seen-%llu\", inc touched by 1",
		         (unsigned long long)(g->sequence % 5), (unsigned long long)g->sequence,
		         (unsigned long long)g->sequence);
	Whizbang__V1__OpList *ops = NULL;
	struct optext_error perr;
	if (optext_parse_ops(text, &ops, &perr) != 0) {
		unexpected(sh, "ops text", 0, perr.message);
		return -1;
	}
	int rc = wb_commit(c, g->sequence, g->token, ops, applied, false, NULL);
	optext_free_ops(ops);
	if (rc != 0) {
		unexpected(sh, "commit", rc, wb_errmsg(c));
		return -1;
	}
	struct pcut_ack a = {.kind = PCUT_ACK_COMMIT, .sequence = g->sequence};
	record(sh, &a);
	return 0;
}

static void *projector_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct wb_client *c = connect_client(sh, "pcut-project");
	if (c == NULL)
		return NULL;
	char opid[64];
	for (uint32_t i = 0; !atomic_load(&sh->stop); i++) {
		snprintf(opid, sizeof(opid), "op-%u", i);
		struct wb_lease_args la = {
		        .projection = PCUT_PROJECTION,
		        .duration_ms = 60000,
		        .count = i % 10 == 9 ? 2 : 1,
		        .operation_id = opid,
		};
		struct wb_lease_grant g[2];
		size_t n = 0;
		int rc = wb_lease(c, &la, g, 2, &n);
		if (rc != 0) {
			unexpected(sh, "lease", rc, wb_errmsg(c));
			break;
		}
		for (size_t k = 0; k < n; k++) {
			struct pcut_ack a = {.kind = PCUT_ACK_LEASE, .sequence = g[k].sequence};
			record(sh, &a);
		}
		if (n == 2) {
			/* The higher one first: the watermark waits on the lower. */
			if (commit_one(sh, c, &g[1], false) != 0 ||
			    commit_one(sh, c, &g[0], true) != 0)
				break;
			continue;
		}
		if (i % 7 == 3) {
			rc = wb_release(c, g[0].sequence, g[0].token, "pcut");
			if (rc != 0) {
				unexpected(sh, "release", rc, wb_errmsg(c));
				break;
			}
			struct pcut_ack a = {.kind = PCUT_ACK_RELEASE, .sequence = g[0].sequence};
			record(sh, &a);
			continue;
		}
		if (commit_one(sh, c, &g[0], i % 2 == 0) != 0)
			break;
	}
	wb_close(c);
	return NULL;
}

/* ------------------------------------------------------------ consumer */

static void *consumer_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct wb_client *c = connect_client(sh, "pcut-consume");
	if (c == NULL)
		return NULL;
	struct wb_consumer_args ca = {
	        .name = PCUT_GROUP,
	        .target = WB_TARGET_ALL,
	        .from = WB_FROM_START,
	        .ack_timeout_ms = 60000,
	};
	int rc = wb_create_consumer(c, &ca, NULL);
	if (rc != 0) {
		unexpected(sh, "create consumer", rc, wb_errmsg(c));
		goto out;
	}
	struct pcut_ack a = {.kind = PCUT_ACK_GROUP};
	record(sh, &a);
	uint64_t sub;
	rc = wb_join_consumer(c, PCUT_GROUP, 64, &sub);
	if (rc != 0) {
		unexpected(sh, "join consumer", rc, wb_errmsg(c));
		goto out;
	}
	uint8_t ids[16][16];
	size_t n = 0;
	while (!atomic_load(&sh->stop)) {
		Whizbang__V1__SubscriptionItem *item = NULL;
		rc = wb_next_item(c, 20, &item);
		if (rc == 0) {
			if (item->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT &&
			    item->event->id.len == 16)
				memcpy(ids[n++], item->event->id.data, 16);
			wb_item_free(item);
		} else if (rc != WB_E_TIMEOUT) {
			unexpected(sh, "consumer item", rc, wb_errmsg(c));
			break;
		}
		if (n == 16 || (rc == WB_E_TIMEOUT && n > 0)) {
			uint64_t cp = 0;
			rc = wb_ack(c, PCUT_GROUP, (const uint8_t(*)[16])ids, n, &cp);
			if (rc != 0) {
				unexpected(sh, "consumer ack", rc, wb_errmsg(c));
				break;
			}
			struct pcut_ack k = {.kind = PCUT_ACK_CHECKPOINT, .checkpoint = cp};
			record(sh, &k);
			rc = wb_credit(c, sub, (uint32_t)n);
			if (rc != 0) {
				unexpected(sh, "consumer credit", rc, wb_errmsg(c));
				break;
			}
			n = 0;
		}
	}
out:
	wb_close(c);
	return NULL;
}

/* ------------------------------------------------------------ the run */

static int cmp_ack(const void *a, const void *b)
{
	const struct pcut_ack *x = a, *y = b;
	return x->stamp < y->stamp ? -1 : x->stamp > y->stamp;
}

int pcut_load_run(const struct pcut_load_opts *o, const char *dir, struct pcut_run *run, char *err,
                  size_t errlen)
{
	memset(run, 0, sizeof(*run));
	char data[1024], trace[1024], counter[1024];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(trace, sizeof(trace), "%s/trace", dir);
	snprintf(counter, sizeof(counter), "%s/counter", dir);
	if (mkdir(data, 0750) != 0) {
		snprintf(err, errlen, "mkdir %s: %s", data, strerror(errno));
		return -1;
	}
	int cfd = open(counter, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (cfd < 0 || ftruncate(cfd, PCUT_COUNTER_SIZE) != 0) {
		snprintf(err, errlen, "counter %s: %s", counter, strerror(errno));
		if (cfd >= 0)
			close(cfd);
		return -1;
	}
	void *m = mmap(NULL, PCUT_COUNTER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	close(cfd);
	if (m == MAP_FAILED) {
		snprintf(err, errlen, "mmap %s: %s", counter, strerror(errno));
		return -1;
	}
	struct shared sh = {.counter = m, .mu = PTHREAD_MUTEX_INITIALIZER};

	/* The server's environment: ours plus the interposer's. */
	size_t nenv = 0;
	while (environ[nenv] != NULL)
		nenv++;
	char **env = calloc(nenv + 8, sizeof(*env));
	char e_pre[1200], e_dir[1100], e_trace[1100], e_counter[1100], e_drop[64];
	snprintf(e_pre, sizeof(e_pre), "LD_PRELOAD=%s", o->interposer);
	snprintf(e_dir, sizeof(e_dir), "WB_PCUT_DIR=%s", data);
	snprintf(e_trace, sizeof(e_trace), "WB_PCUT_TRACE=%s", trace);
	snprintf(e_counter, sizeof(e_counter), "WB_PCUT_COUNTER=%s", counter);
	size_t k = 0;
	for (size_t i = 0; i < nenv; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 &&
		    strncmp(environ[i], "WB_PCUT_", 8) != 0)
			env[k++] = environ[i];
	env[k++] = e_pre;
	env[k++] = e_dir;
	env[k++] = e_trace;
	env[k++] = e_counter;
	if (o->drop_sync != NULL) {
		snprintf(e_drop, sizeof(e_drop), "WB_PCUT_DROP_SYNC=%s", o->drop_sync);
		env[k++] = e_drop;
	}
	env[k] = NULL;

	struct pcut_server srv;
	int status = 0;
	int rc = pcut_server_start(&srv, o->whizbangd, data, dir, o->flags, env, 20000, &status,
	                           err, errlen);
	free(env);
	if (rc != 0) {
		if (rc == 1) {
			char last[512];
			pcut_log_last(srv.log_file, last, sizeof(last));
			snprintf(err, errlen,
			         "the traced whizbangd exited at start (status %d): %s", status,
			         last);
		}
		munmap(m, PCUT_COUNTER_SIZE);
		return -1;
	}
	snprintf(sh.address, sizeof(sh.address), "%s", srv.address);

	uint64_t rng = o->seed;
	struct worker ws[PCUT_APPENDERS + 2];
	size_t nw = 0;
	for (uint32_t t = 0; t < PCUT_APPENDERS; t++)
		ws[nw++] = (struct worker){.sh = &sh, .thread = t};
	ws[nw++] = (struct worker){.sh = &sh, .thread = 100};
	ws[nw++] = (struct worker){.sh = &sh, .thread = 101};
	for (size_t i = 0; i < nw; i++) {
		void *(*fn)(void *) = i < PCUT_APPENDERS    ? appender_main
		                      : i == PCUT_APPENDERS ? projector_main
		                                            : consumer_main;
		pthread_create(&ws[i].tid, NULL, fn, &ws[i]);
	}
	int span = o->kill_max_ms - o->kill_min_ms;
	int wait_ms = o->kill_min_ms + (span > 0 ? (int)(pcut_rand(&rng) % (uint64_t)span) : 0);
	pcut_sleep_ms(wait_ms);
	/* Enough acknowledged to prove something, within a bound. */
	for (int64_t until = pcut_now_ms() + 10000;
	     atomic_load(&sh.appends) < 50 && pcut_now_ms() < until && !atomic_load(&sh.stop);)
		pcut_sleep_ms(10);
	atomic_store(&sh.killed, true);
	pcut_server_signal(&srv, SIGKILL, 10000);
	atomic_store(&sh.stop, true);
	for (size_t i = 0; i < nw; i++)
		pthread_join(ws[i].tid, NULL);

	run->ops = atomic_load(sh.counter);
	munmap(m, PCUT_COUNTER_SIZE);
	qsort(sh.acks, sh.nacks, sizeof(*sh.acks), cmp_ack);
	run->acks = sh.acks;
	run->nacks = sh.nacks;
	memcpy(run->sent, sh.sent, sizeof(run->sent));
	if (sh.err[0] != '\0') {
		snprintf(err, errlen, "the load failed before the kill: %s", sh.err);
		return -1;
	}
	if (atomic_load(&sh.appends) < 50) {
		snprintf(err, errlen, "only %u appends were acknowledged before the kill",
		         atomic_load(&sh.appends));
		return -1;
	}
	return 0;
}
