/* Checking one crash image (pcut.h): a restart after a power cut.
 *
 * Happy path: start whizbangd on the image; it listens; through
 * libwhizbang, $all is dense from 1, every event is one the load sent (its
 * stream, type, data and metadata derive from its id), every stream's
 * versions are dense from 0, an append is all there or not at all; every
 * append acknowledged at or before the crash point is there at its
 * acknowledged positions and version and a retry of it is answered as a
 * replay; the ledger holds exactly one final entry per sequence up to the
 * watermark, acknowledged commits committed with their ops and releases as
 * released gaps; the entities of acknowledged commits exist and no entity
 * lacks its entry; the consumer group's checkpoint is not behind an
 * acknowledged one; a new lease gets a sequence never handed out and a new
 * append the next position. Then SIGTERM (exit 0), then `whizbangd replay
 * --verify` (exit 0).
 *
 * Failure modes: a server that exits non-zero before listening with a
 * message in its log refused the image (PCUT_REFUSED); a crash, a silent
 * or zero exit, a hang, or any broken promise above is PCUT_VIOLATION with
 * what broke; a fork that fails is PCUT_HARNESS. */
#include "pcut.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wb.h"

#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 20000
#define REPLAY_TIMEOUT_MS 60000

struct seen {
	uint64_t first;
	uint64_t last_version;
	uint32_t count;
};

struct ctx {
	const struct pcut_run *run;
	uint64_t point;
	char *why;
	size_t whylen;
	struct wb_client *c;
	/* $all */
	uint64_t last_position;
	struct seen *seen[PCUT_APPENDERS];
	/* the ledger, by sequence: kind + 1 (0: absent) */
	uint64_t watermark;
	uint8_t *kind;
	uint8_t *reason;
	bool *upsert_ok; /* a committed entry's first op upserts o-SEQ */
	size_t nledger;
	bool *entity; /* o-SEQ exists, by sequence */
	size_t nentity;
};

__attribute__((format(printf, 2, 3))) static enum pcut_verdict violation(struct ctx *x,
                                                                         const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->why, x->whylen, fmt, ap);
	va_end(ap);
	return PCUT_VIOLATION;
}

static enum pcut_verdict call_failed(struct ctx *x, const char *what, int rc)
{
	return violation(x, "%s failed: %s: %s", what, wb_error_name(rc), wb_errmsg(x->c));
}

/* ------------------------------------------------------------ $all */

static enum pcut_verdict check_event(struct ctx *x, const struct wb_event *e, uint64_t *versions)
{
	uint32_t t, seq, i;
	if (e->position != x->last_position + 1)
		return violation(x, "$all is not dense: position %llu follows %llu",
		                 (unsigned long long)e->position,
		                 (unsigned long long)x->last_position);
	x->last_position = e->position;
	if (!pcut_event_parse(e->id, &t, &seq, &i) || seq >= x->run->sent[t])
		return violation(x, "garbage at position %llu: an event id the load never sent",
		                 (unsigned long long)e->position);
	char stream[32], data[4096], meta[16];
	pcut_event_stream(t, seq, stream, sizeof(stream));
	size_t len = pcut_event_data(t, seq, i, data, sizeof(data));
	snprintf(meta, sizeof(meta), "m%u", i);
	if (strcmp(e->stream, stream) != 0 || strcmp(e->type, PCUT_EVENT_TYPE) != 0 ||
	    e->data_len != len || memcmp(e->data, data, len) != 0 ||
	    e->metadata_len != strlen(meta) || memcmp(e->metadata, meta, e->metadata_len) != 0)
		return violation(x,
		                 "garbage at position %llu: append %u/%u event %u does not hold "
		                 "what was sent (stream %s, %zu bytes of data)",
		                 (unsigned long long)e->position, t, seq, i, e->stream,
		                 e->data_len);
	unsigned k = 0;
	sscanf(stream, "pc-%u", &k);
	if (e->version != versions[k])
		return violation(x,
		                 "stream %s is not dense: version %llu at position %llu, %llu "
		                 "expected",
		                 stream, (unsigned long long)e->version,
		                 (unsigned long long)e->position, (unsigned long long)versions[k]);
	versions[k]++;
	struct seen *s = &x->seen[t][seq];
	if (i == 0) {
		if (s->count != 0)
			return violation(
			        x, "append %u/%u is stored twice (positions %llu and %llu)", t, seq,
			        (unsigned long long)s->first, (unsigned long long)e->position);
		s->first = e->position;
	} else if (s->count != i || e->position != s->first + i) {
		return violation(x,
		                 "append %u/%u is torn: event %u at position %llu after %u of its "
		                 "events",
		                 t, seq, i, (unsigned long long)e->position, s->count);
	}
	s->count++;
	s->last_version = e->version;
	return PCUT_OK;
}

static enum pcut_verdict check_all(struct ctx *x)
{
	uint64_t versions[PCUT_STREAMS] = {0};
	uint64_t from = 1;
	for (;;) {
		struct wb_page page;
		int rc = wb_read_all(x->c, from, false, 0, NULL, NULL, 0, &page);
		if (rc != 0)
			return call_failed(x, "reading $all", rc);
		enum pcut_verdict v = PCUT_OK;
		for (size_t i = 0; i < page.count && v == PCUT_OK; i++)
			v = check_event(x, &page.events[i], versions);
		bool end = page.end || page.count == 0;
		from = page.next;
		wb_page_free(&page);
		if (v != PCUT_OK)
			return v;
		if (end)
			break;
	}
	for (uint32_t t = 0; t < PCUT_APPENDERS; t++)
		for (uint32_t seq = 0; seq < x->run->sent[t]; seq++)
			if (x->seen[t][seq].count != 0 &&
			    x->seen[t][seq].count != pcut_batch_size(t, seq))
				return violation(
				        x, "append %u/%u is torn: %u of its %u events stored", t,
				        seq, x->seen[t][seq].count, pcut_batch_size(t, seq));
	return PCUT_OK;
}

/* Every acknowledged append is there as acknowledged; the last few are
 * retried and must be answered as replays of the original. */
static enum pcut_verdict check_appends(struct ctx *x)
{
	const struct pcut_ack *retry[3] = {NULL, NULL, NULL};
	for (size_t k = 0; k < x->run->nacks && x->run->acks[k].stamp <= x->point; k++) {
		const struct pcut_ack *a = &x->run->acks[k];
		if (a->kind != PCUT_ACK_APPEND)
			continue;
		const struct seen *s = &x->seen[a->thread][a->seq];
		if (s->count == 0)
			return violation(
			        x,
			        "acknowledged append %u/%u (positions %llu..%llu, stamp %llu) "
			        "is missing",
			        a->thread, a->seq, (unsigned long long)a->first,
			        (unsigned long long)a->last, (unsigned long long)a->stamp);
		if (s->first != a->first || s->first + s->count - 1 != a->last ||
		    s->last_version != a->version)
			return violation(
			        x,
			        "acknowledged append %u/%u moved: acknowledged at %llu..%llu "
			        "version %llu, stored at %llu..%llu version %llu",
			        a->thread, a->seq, (unsigned long long)a->first,
			        (unsigned long long)a->last, (unsigned long long)a->version,
			        (unsigned long long)s->first,
			        (unsigned long long)(s->first + s->count - 1),
			        (unsigned long long)s->last_version);
		retry[0] = retry[1];
		retry[1] = retry[2];
		retry[2] = a;
	}
	for (int r = 0; r < 3; r++) {
		const struct pcut_ack *a = retry[r];
		if (a == NULL)
			continue;
		uint8_t ids[PCUT_MAX_BATCH][16];
		char data[PCUT_MAX_BATCH][4096], meta[PCUT_MAX_BATCH][16], stream[32];
		struct wb_new_event evs[PCUT_MAX_BATCH];
		pcut_event_stream(a->thread, a->seq, stream, sizeof(stream));
		for (uint32_t i = 0; i < a->n; i++) {
			pcut_event_id(a->thread, a->seq, i, ids[i]);
			size_t len =
			        pcut_event_data(a->thread, a->seq, i, data[i], sizeof(data[i]));
			snprintf(meta[i], sizeof(meta[i]), "m%u", i);
			evs[i] = (struct wb_new_event){ids[i], PCUT_EVENT_TYPE, data[i],
			                               len,    meta[i],         strlen(meta[i])};
		}
		struct wb_append_result res;
		int rc = wb_append(x->c, stream, WB_EXPECT_ANY, 0, evs, a->n, &res);
		if (rc != 0)
			return call_failed(x, "retrying an acknowledged append", rc);
		if (!res.idempotent_replay || res.first_position != a->first ||
		    res.last_position != a->last)
			return violation(
			        x,
			        "a retry of acknowledged append %u/%u was not a replay of it: "
			        "%llu..%llu%s",
			        a->thread, a->seq, (unsigned long long)res.first_position,
			        (unsigned long long)res.last_position,
			        res.idempotent_replay ? "" : " (stored again)");
	}
	return PCUT_OK;
}

/* ------------------------------------------------------------ the ledger */

static enum pcut_verdict check_ledger(struct ctx *x)
{
	uint64_t next_seq = 0;
	int rc = wb_watermark(x->c, &x->watermark, &next_seq);
	if (rc != 0)
		return call_failed(x, "reading the watermark", rc);
	x->nledger = (size_t)x->watermark + 1;
	x->kind = calloc(x->nledger, 1);
	x->reason = calloc(x->nledger, 1);
	x->upsert_ok = calloc(x->nledger, sizeof(bool));
	if (x->kind == NULL || x->reason == NULL || x->upsert_ok == NULL)
		return violation(x, "out of memory for a ledger of %llu",
		                 (unsigned long long)x->watermark);
	uint64_t expect = 1;
	while (expect <= x->watermark) {
		Whizbang__V1__ReadLedgerResult *res = NULL;
		rc = wb_read_ledger(x->c, expect, 0, &res);
		if (rc != 0)
			return call_failed(x, "reading the ledger", rc);
		size_t n = res->n_entries;
		for (size_t i = 0; i < n; i++) {
			const Whizbang__V1__LedgerEntry *e = res->entries[i];
			if (e->sequence != expect) {
				uint64_t got = e->sequence;
				wb_ledger_free(res);
				return violation(
				        x,
				        "the ledger is not one entry per sequence: %llu where "
				        "%llu was due (watermark %llu)",
				        (unsigned long long)got, (unsigned long long)expect,
				        (unsigned long long)x->watermark);
			}
			x->kind[expect] = (uint8_t)(e->kind + 1);
			x->reason[expect] = (uint8_t)e->reason;
			char want[32];
			snprintf(want, sizeof(want), "o-%llu", (unsigned long long)expect);
			if (e->kind == WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED) {
				bool ok = e->n_ops >= 1 &&
				          e->ops[0]->kind_case == WHIZBANG__V1__OP__KIND_UPSERT &&
				          strcmp(e->ops[0]->upsert->id, want) == 0 &&
				          strcmp(e->projection, PCUT_PROJECTION) == 0;
				if (!ok) {
					wb_ledger_free(res);
					return violation(
					        x,
					        "garbage in the ledger: committed entry %llu does "
					        "not hold the ops committed at it",
					        (unsigned long long)expect);
				}
				x->upsert_ok[expect] = true;
			}
			expect++;
		}
		bool end = res->end;
		wb_ledger_free(res);
		if (n == 0 || end)
			break;
	}
	if (expect != x->watermark + 1)
		return violation(x, "the ledger ends at %llu below its watermark %llu",
		                 (unsigned long long)(expect - 1),
		                 (unsigned long long)x->watermark);
	uint64_t max_leased = 0;
	for (size_t k = 0; k < x->run->nacks && x->run->acks[k].stamp <= x->point; k++) {
		const struct pcut_ack *a = &x->run->acks[k];
		if (a->kind == PCUT_ACK_LEASE && a->sequence > max_leased)
			max_leased = a->sequence;
		if (a->kind != PCUT_ACK_COMMIT && a->kind != PCUT_ACK_RELEASE)
			continue;
		if (a->sequence > x->watermark)
			return violation(
			        x,
			        "acknowledged %s of sequence %llu (stamp %llu) is above the "
			        "watermark %llu after restart",
			        a->kind == PCUT_ACK_COMMIT ? "commit" : "release",
			        (unsigned long long)a->sequence, (unsigned long long)a->stamp,
			        (unsigned long long)x->watermark);
		int kind = x->kind[a->sequence] - 1;
		if (a->kind == PCUT_ACK_COMMIT && kind != WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED)
			return violation(
			        x,
			        "acknowledged commit of sequence %llu (stamp %llu) is lost: "
			        "the ledger holds %s there",
			        (unsigned long long)a->sequence, (unsigned long long)a->stamp,
			        kind == WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP ? "a gap"
			                                                    : "another entry");
		if (a->kind == PCUT_ACK_RELEASE &&
		    (kind != WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP ||
		     x->reason[a->sequence] != WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED))
			return violation(
			        x,
			        "acknowledged release of sequence %llu (stamp %llu) is not a "
			        "released gap after restart",
			        (unsigned long long)a->sequence, (unsigned long long)a->stamp);
	}
	/* A sequence is never handed out twice, even across a crash. */
	struct wb_lease_args la = {.projection = PCUT_PROJECTION, .duration_ms = 10000};
	struct wb_lease_grant g;
	size_t n = 0;
	rc = wb_lease(x->c, &la, &g, 1, &n);
	if (rc != 0)
		return call_failed(x, "leasing after restart", rc);
	if (g.sequence <= max_leased || g.sequence <= x->watermark)
		return violation(x,
		                 "sequence %llu was handed out again after restart (acknowledged "
		                 "leases reached %llu, watermark %llu)",
		                 (unsigned long long)g.sequence, (unsigned long long)max_leased,
		                 (unsigned long long)x->watermark);
	rc = wb_release(x->c, g.sequence, g.token, "pcut check");
	if (rc != 0)
		return call_failed(x, "releasing after restart", rc);
	return PCUT_OK;
}

/* ------------------------------------------------------------ entities */

static enum pcut_verdict check_entities(struct ctx *x)
{
	char after[256] = "";
	for (;;) {
		Whizbang__V1__QueryResult *res = NULL;
		int rc = wb_query(x->c, PCUT_ENTITY, NULL, NULL, after, 0, &res);
		if (rc != 0)
			return call_failed(x, "querying the entities", rc);
		for (size_t i = 0; i < res->n_entities; i++) {
			unsigned long long s = 0;
			const char *id = res->entities[i]->id;
			if (sscanf(id, "o-%llu", &s) != 1 || s > x->watermark || !x->upsert_ok[s]) {
				char copy[64];
				snprintf(copy, sizeof(copy), "%s", id);
				wb_query_free(res);
				return violation(
				        x,
				        "garbage in the read model: entity %s has no committed "
				        "entry at or below the watermark %llu",
				        copy, (unsigned long long)x->watermark);
			}
			x->entity[s] = true;
		}
		bool end = res->end || res->n_entities == 0;
		snprintf(after, sizeof(after), "%s", res->next_after);
		wb_query_free(res);
		if (end)
			break;
	}
	for (size_t k = 0; k < x->run->nacks && x->run->acks[k].stamp <= x->point; k++) {
		const struct pcut_ack *a = &x->run->acks[k];
		if (a->kind == PCUT_ACK_COMMIT && !x->entity[a->sequence])
			return violation(
			        x,
			        "the entity of acknowledged commit %llu (stamp %llu) is not in "
			        "the read model",
			        (unsigned long long)a->sequence, (unsigned long long)a->stamp);
	}
	return PCUT_OK;
}

/* ------------------------------------------------------------ consumers */

static enum pcut_verdict check_consumer(struct ctx *x)
{
	bool created = false;
	uint64_t acked = 0;
	for (size_t k = 0; k < x->run->nacks && x->run->acks[k].stamp <= x->point; k++) {
		const struct pcut_ack *a = &x->run->acks[k];
		if (a->kind == PCUT_ACK_GROUP)
			created = true;
		if (a->kind == PCUT_ACK_CHECKPOINT && a->checkpoint > acked)
			acked = a->checkpoint;
	}
	Whizbang__V1__ConsumerList *list = NULL;
	int rc = wb_list_consumers(x->c, &list);
	if (rc != 0)
		return call_failed(x, "listing the consumer groups", rc);
	const Whizbang__V1__ConsumerInfo *g = NULL;
	for (size_t i = 0; i < list->n_consumers; i++)
		if (list->consumers[i]->config != NULL &&
		    strcmp(list->consumers[i]->config->name, PCUT_GROUP) == 0)
			g = list->consumers[i];
	enum pcut_verdict v = PCUT_OK;
	if (g == NULL && created)
		v = violation(x, "the acknowledged consumer group %s is missing", PCUT_GROUP);
	else if (g != NULL && g->checkpoint < acked)
		v = violation(
		        x, "consumer checkpoint went back: %llu after restart, %llu acknowledged",
		        (unsigned long long)g->checkpoint, (unsigned long long)acked);
	else if (g != NULL && g->checkpoint > x->last_position)
		v = violation(x, "consumer checkpoint %llu is past the end of $all (%llu)",
		              (unsigned long long)g->checkpoint,
		              (unsigned long long)x->last_position);
	wb_consumer_list_free(list);
	return v;
}

static enum pcut_verdict check_new_append(struct ctx *x)
{
	struct wb_new_event ev = {.type = "PcutCheck", .data = "after", .data_len = 5};
	struct wb_append_result res;
	int rc = wb_append(x->c, "pc-check", WB_EXPECT_ANY, 0, &ev, 1, &res);
	if (rc != 0)
		return call_failed(x, "appending after restart", rc);
	if (res.first_position != x->last_position + 1)
		return violation(x, "an append after restart got position %llu, %llu expected",
		                 (unsigned long long)res.first_position,
		                 (unsigned long long)(x->last_position + 1));
	return PCUT_OK;
}

/* ------------------------------------------------------------ replay */

static enum pcut_verdict replay_verify(struct ctx *x, const char *bin, const char *img,
                                       const char *scratch)
{
	char log[1024];
	snprintf(log, sizeof(log), "%s/replay.log", scratch);
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(x->why, x->whylen, "cannot open %s: %s", log, strerror(errno));
		return PCUT_HARNESS;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		close(fd);
		snprintf(x->why, x->whylen, "fork: %s", strerror(errno));
		return PCUT_HARNESS;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execl(bin, bin, "replay", "--data-dir", img, "--verify", (char *)NULL);
		_exit(127);
	}
	close(fd);
	int64_t deadline = pcut_now_ms() + REPLAY_TIMEOUT_MS;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (pcut_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return violation(x, "whizbangd replay --verify did not finish within %d ms",
			                 REPLAY_TIMEOUT_MS);
		}
		pcut_sleep_ms(2);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char last[512];
		pcut_log_last(log, last, sizeof(last));
		return violation(x, "whizbangd replay --verify failed (status %d): %s",
		                 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), last);
	}
	return PCUT_OK;
}

/* ------------------------------------------------------------ one image */

enum pcut_verdict pcut_check_image(const char *whizbangd, const char *const *flags,
                                   const struct pcut_run *run, uint64_t point, const char *img,
                                   const char *scratch, char *why, size_t whylen)
{
	struct ctx x = {.run = run, .point = point, .why = why, .whylen = whylen};
	why[0] = '\0';
	struct pcut_server srv;
	int status = 0;
	int rc = pcut_server_start(&srv, whizbangd, img, scratch, flags, NULL, START_TIMEOUT_MS,
	                           &status, why, whylen);
	if (rc == -1)
		return PCUT_HARNESS;
	if (rc == -2)
		return PCUT_VIOLATION;
	if (rc == 1) {
		char last[512];
		pcut_log_last(srv.log_file, last, sizeof(last));
		if (WIFSIGNALED(status))
			return violation(&x, "whizbangd crashed opening the image (signal %d): %s",
			                 WTERMSIG(status), last);
		if (WEXITSTATUS(status) == 0 || last[0] == '\0')
			return violation(
			        &x, "whizbangd exited %d opening the image without a message: %s",
			        WEXITSTATUS(status), last);
		snprintf(why, whylen, "refused (exit %d): %s", WEXITSTATUS(status), last);
		return PCUT_REFUSED;
	}
	enum pcut_verdict v = PCUT_OK;
	for (uint32_t t = 0; t < PCUT_APPENDERS; t++) {
		x.seen[t] = calloc(run->sent[t] + 1, sizeof(struct seen));
		if (x.seen[t] == NULL) {
			snprintf(why, whylen, "out of memory");
			v = PCUT_HARNESS;
		}
	}
	struct wb_options opts = {.client_name = "pcut-check", .timeout_ms = 15000};
	char msg[256] = "";
	if (v == PCUT_OK) {
		rc = wb_connect(&x.c, srv.address, &opts, msg, sizeof(msg));
		if (rc != 0)
			v = violation(&x, "cannot connect to the restarted server: %s: %s",
			              wb_error_name(rc), msg);
	}
	if (v == PCUT_OK)
		v = check_all(&x);
	if (v == PCUT_OK)
		v = check_appends(&x);
	if (v == PCUT_OK)
		v = check_ledger(&x);
	if (v == PCUT_OK) {
		x.nentity = x.nledger;
		x.entity = calloc(x.nentity + 1, sizeof(bool));
		v = x.entity != NULL ? check_entities(&x) : PCUT_HARNESS;
	}
	if (v == PCUT_OK)
		v = check_consumer(&x);
	if (v == PCUT_OK)
		v = check_new_append(&x);
	wb_close(x.c);
	if (v == PCUT_OK) {
		int code = pcut_server_signal(&srv, SIGTERM, STOP_TIMEOUT_MS);
		if (code != 0) {
			char last[512];
			pcut_log_last(srv.log_file, last, sizeof(last));
			v = violation(&x, "the restarted whizbangd exited %d after SIGTERM: %s",
			              code, last);
		}
	} else {
		pcut_server_signal(&srv, SIGKILL, STOP_TIMEOUT_MS);
	}
	if (v == PCUT_OK)
		v = replay_verify(&x, whizbangd, img, scratch);
	for (uint32_t t = 0; t < PCUT_APPENDERS; t++)
		free(x.seen[t]);
	free(x.kind);
	free(x.reason);
	free(x.upsert_ok);
	free(x.entity);
	return v;
}
