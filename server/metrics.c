/* Metrics and health over HTTP (Prometheus text format 0.0.4), served by
 * libmicrohttpd from its own thread on --metrics-listen.
 *
 * Happy path: the module's init starts the HTTP daemon and a loop timer. Every
 * SNAPSHOT_MS the timer reads the figures on the loop (the server's
 * counters, the writer's histograms, GetStats' lease and watermark
 * figures, the subscriptions' lag, the store's map) and renders the whole
 * /metrics text into a fresh buffer, which it swaps in under the mutex,
 * together with the readiness flag. The HTTP thread never reads loop
 * state: it copies the latest text (or flag) out under the mutex.
 * Its shutdown hook marks the server not ready at once and closes the timer
 * (the last text keeps being served); its close hook stops the daemon after
 * the loop has ended.
 *
 * HTTPS and bearer tokens: when a TLS certificate is served and either tls
 * is required or the address is not loopback, the daemon serves HTTPS with
 * the same certificate and key (read into memory for GnuTLS, libmicrohttpd's
 * TLS library), TLS 1.2 at least, and /metrics answers only a request whose
 * "Authorization: Bearer" header carries a live token whose role has
 * admin:stats (401 otherwise, the same for every reason); the health paths
 * stay open. The HTTP thread checks the token against copies of those
 * tokens' records, published with each snapshot, so a revoked token stops
 * working within SNAPSHOT_MS. A reload (SIGHUP, Reload) reads the files
 * again and starts a new daemon on the listening socket of the old one
 * (quiesced, then stopped): scrapes in flight on the old one are cut.
 *
 * Failure modes: an address that does not parse fails start-up. One that
 * cannot be bound (in use) is logged (metrics_listen_failed) and the server
 * runs without metrics: every test server and every instance on a host
 * would otherwise fight for the default port. A snapshot that cannot be
 * allocated keeps the previous one. The text is bounded (MAX_TEXT): the
 * series come from fixed tables and at most MAX_PROJECTION_STATS
 * projections. */
#include <microhttpd.h>

#include <fcntl.h>
#include <strings.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/acl.h"
#include "auth/token.h"
#include "events.h"
#include "log.h"
#include "netaddr.h"
#include "server.h"
#include "wb_error.h"

#define SNAPSHOT_MS 500
#define MAX_TEXT (1u << 20)
#define MAX_HTTP_CONNECTIONS 32
#define HTTP_TIMEOUT_S 10
#define MAX_PEM (1u << 20)
/* Only TLS 1.2 and 1.3 (GnuTLS priority string). */
#define HTTPS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

struct metrics {
	struct srv *srv;
	uv_timer_t timer;
	bool timer_open;
	struct MHD_Daemon *daemon;
	int port;
	bool https;               /* HTTPS, and /metrics asks for a bearer token */
	char *cert_pem, *key_pem; /* the daemon's, kept while it runs */
	pthread_mutex_t mu;       /* guards text, text_len, ready, bearers, refused */
	char *text;
	size_t text_len;
	bool ready;
	struct auth_token_record *bearers; /* the tokens that may scrape */
	size_t nbearers;
	uint64_t refused; /* scrapes answered 401 */
};

/* ------------------------------------------------------------ rendering */

struct buf {
	char *p;
	size_t len, cap;
	bool failed; /* out of memory or above MAX_TEXT: the snapshot is dropped */
};

__attribute__((format(printf, 2, 3))) static void put(struct buf *b, const char *fmt, ...)
{
	if (b->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = cap <= MAX_TEXT ? realloc(b->p, cap) : NULL;
		if (p == NULL) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

static void head(struct buf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP whizbang_%s %s\n# TYPE whizbang_%s %s\n", name, help, name, type);
}

/* Writes s as a label value: backslash, double quote and newline escaped,
 * other control bytes dropped, at most 200 bytes. */
static void put_label(struct buf *b, const char *s)
{
	char out[512];
	size_t o = 0;
	for (size_t i = 0; s[i] != '\0' && i < 200; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\\' || ch == '"') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else if (ch >= 0x20) {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
	put(b, "%s", out);
}

/* The GetStats fields that count up (exported as counters, named _total);
 * every other numeric field is a gauge. */
static const char *const counter_fields[] = {
        "connections_total",
        "requests_total",
        "errors_total",
        "batches",
        "batch_requests",
        "batch_events",
        "commit_us_total",
        "map_grow_count",
        "leases_committed",
        "leases_released",
        "leases_expired",
        "leases_recovered",
        "gaps",
        "lease_overrun",
        "entries_applied",
        "apply_failures",
        "explosions",
        "exploded_ids",
        "explosion_us_total",
        "queries",
        "auth_failures",
        "auth_throttled",
        "log_lines_suppressed",
        "throttled",
        "quota_pauses",
        "quota_refusals",
        "memory_pauses",
        "memory_disconnects",
        "committed",
        "released",
        "expired",
        "recovered",
};

static bool is_counter(const char *field)
{
	for (size_t i = 0; i < sizeof(counter_fields) / sizeof(counter_fields[0]); i++)
		if (strcmp(counter_fields[i], field) == 0)
			return true;
	return false;
}

/* Help for the GetStats fields (PROTOCOL.md's Stats); a field missing here
 * is still exported, with a generic help. */
static const struct {
	const char *field, *help;
} field_help[] = {
        {"uptime_ms", "Milliseconds since the server started (when the figures were taken)"},
        {"connections_current", "Client connections open"},
        {"connections_total", "Client connections accepted"},
        {"requests_total", "Requests received (every frame, those that do not decode included)"},
        {"errors_total", "Error answers sent"},
        {"batches", "Group-commit batches committed"},
        {"batch_requests", "Requests in the committed batches"},
        {"batch_events", "Events appended (acknowledged)"},
        {"commit_us_total", "Microseconds spent in batch transactions, commit and fsync included"},
        {"batch_requests_max", "The largest batch, in requests"},
        {"last_position", "The position of the last event stored"},
        {"map_size", "LMDB map size, bytes"},
        {"map_used", "LMDB map in use, bytes"},
        {"map_grow_count", "Times the LMDB map grew since start"},
        {"leases_active", "Leases held"},
        {"leases_committed", "Leases committed"},
        {"leases_released", "Leases released (gaps)"},
        {"leases_expired", "Leases that expired"},
        {"leases_recovered", "Leases recovered at start (staged work or a gap)"},
        {"lease_efficiency", "committed / (committed + expired); 1 with no history"},
        {"entries_waiting",
         "Final ledger entries above the watermark, waiting on a lower sequence"},
        {"apply_wait_ms_mean", "Mean commit-to-apply wait of committed entries, ms"},
        {"apply_wait_ms_max", "Longest commit-to-apply wait of a committed entry, ms"},
        {"gaps", "Gap entries written (released, expired, restart)"},
        {"lease_overrun", "Extends refused by the lease lifetime cap"},
        {"watermark", "The ledger's watermark"},
        {"next_sequence", "The next sequence a lease gets"},
        {"lease_ceiling", "The durable reservation ceiling of sequences"},
        {"cascade_level", "0, or how many times adaptive lease durations were doubled"},
        {"entries_applied", "Ledger entries applied to the read models"},
        {"apply_failures", "Ledger entries whose ops failed to apply"},
        {"explosions", "Where clauses exploded into id lists (of entries that applied)"},
        {"exploded_ids", "The ids those where clauses matched"},
        {"explosion_us_total", "Microseconds spent exploding where clauses"},
        {"queries", "Entity queries served"},
        {"auth_failures", "Failed authentication attempts (every reason counts the same)"},
        {"tls", "1 when TLS is served (a certificate is loaded)"},
        {"tls_cert_days_left",
         "Whole days until the served certificate expires (negative: expired)"},
        {"auth_throttled",
         "Authentication attempts refused unexamined: their address failed too often"},
        {"log_lines_suppressed",
         "Log lines not written because their event was over its rate limit"},
        {"output_buffered",
         "Response bytes queued and being written over all connections (whizbang clients: "
         "who)"},
        {"output_budget", "The memory budget (memory_budget's name from when it covered output)"},
        {"throttled", "Times a connection was held back for sending more than "
                      "--max-bytes-per-second"},
        {"quota_pauses", "Times a connection was paused for its identity's rates or refusal "
                         "backoff"},
        {"quota_refusals", "Refusals by a quota or a cost limit that started or lengthened a "
                           "backoff"},
        {"memory_budget", "Bytes the server may hold for its clients (--memory-budget)"},
        {"memory_held",
         "Bytes held for clients against the memory budget, every kind (whizbang clients: who)"},
        {"memory_input", "Bytes of input buffers held for clients (frames being decoded included)"},
        {"memory_output", "Bytes of output queued and being written to clients"},
        {"memory_queued_reads", "Bytes of read-model requests queued or running"},
        {"memory_writes", "Bytes of writes waiting to be durable"},
        {"memory_consumers", "Bytes of consumer groups' windows (--consumer-window)"},
        {"memory_pauses",
         "Times a connection holding much stopped being read at 7/8 of the memory budget"},
        {"memory_disconnects",
         "Connections closed at the memory budget, each the heaviest then (RESOURCE_EXHAUSTED)"},
        {"committed", "Leases committed"},
        {"released", "Leases released (gaps)"},
        {"expired", "Leases that expired"},
        {"recovered", "Leases recovered at start"},
        {"efficiency", "committed / (committed + expired); 1 with no history"},
        {"adaptive_duration_ms", "The adaptive lease duration, ms"},
};

static const char *help_of(const char *field)
{
	for (size_t i = 0; i < sizeof(field_help) / sizeof(field_help[0]); i++)
		if (strcmp(field_help[i].field, field) == 0)
			return field_help[i].help;
	return NULL;
}

/* The metric name of a GetStats field: counters end in _total. */
static void field_name(char *out, size_t outlen, const char *prefix, const char *field)
{
	size_t n = strlen(field);
	bool total = n >= 6 && strcmp(field + n - 6, "_total") == 0;
	snprintf(out, outlen, "%s%s%s", prefix, field, is_counter(field) && !total ? "_total" : "");
}

/* Returns false when f is not a number (strings, messages, repeated). */
static bool field_value(const ProtobufCFieldDescriptor *f, const void *msg, double *out)
{
	const char *p = (const char *)msg + f->offset;
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return false;
	switch (f->type) {
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: {
		uint64_t v;
		memcpy(&v, p, sizeof(v));
		*out = (double)v;
		return true;
	}
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64: {
		int64_t v;
		memcpy(&v, p, sizeof(v));
		*out = (double)v;
		return true;
	}
	case PROTOBUF_C_TYPE_UINT32: {
		uint32_t v;
		memcpy(&v, p, sizeof(v));
		*out = (double)v;
		return true;
	}
	case PROTOBUF_C_TYPE_INT32: {
		int32_t v;
		memcpy(&v, p, sizeof(v));
		*out = (double)v;
		return true;
	}
	case PROTOBUF_C_TYPE_DOUBLE: {
		double v;
		memcpy(&v, p, sizeof(v));
		*out = v;
		return true;
	}
	case PROTOBUF_C_TYPE_BOOL: {
		protobuf_c_boolean v;
		memcpy(&v, p, sizeof(v));
		*out = v ? 1.0 : 0.0;
		return true;
	}
	default:
		return false;
	}
}

/* Every numeric field of GetStats' ServerStats, named after the field, so
 * that a field added to Stats appears here too. */
static void render_stats(struct buf *b, const Whizbang__V1__ServerStats *s)
{
	const ProtobufCMessageDescriptor *d = &whizbang__v1__server_stats__descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		double v;
		char name[128];
		if (!field_value(f, s, &v))
			continue;
		field_name(name, sizeof(name), "", f->name);
		char help[160];
		const char *h = help_of(f->name);
		snprintf(help, sizeof(help), "%s (GetStats %s)", h != NULL ? h : "GetStats field",
		         f->name);
		head(b, name, is_counter(f->name) ? "counter" : "gauge", help);
		put(b, "whizbang_%s %.17g\n", name, v);
	}
	head(b, "degraded", "gauge",
	     "1 when GetStats' health is not ok (see health_reason there).");
	put(b, "whizbang_degraded %d\n", s->health != NULL && strcmp(s->health, "ok") != 0);

	/* Per projection: one family per field, one series per projection. */
	d = &whizbang__v1__projection_stats__descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		double v;
		char name[128];
		if (s->n_projections == 0 || !field_value(f, s->projections[0], &v))
			continue;
		field_name(name, sizeof(name), "projection_", f->name);
		char help[160];
		const char *h = help_of(f->name);
		snprintf(help, sizeof(help), "Per projection: %s (GetStats %s)",
		         h != NULL ? h : "GetStats field", f->name);
		head(b, name, is_counter(f->name) ? "counter" : "gauge", help);
		for (size_t j = 0; j < s->n_projections; j++) {
			const Whizbang__V1__ProjectionStats *p = s->projections[j];
			field_value(f, p, &v);
			put(b, "whizbang_%s{projection=\"", name);
			put_label(b, p->projection != NULL ? p->projection : "");
			put(b, "\"} %.17g\n", v);
		}
	}
	head(b, "projection_degraded", "gauge", "1 when a projection's health is not ok.");
	for (size_t j = 0; j < s->n_projections; j++) {
		const Whizbang__V1__ProjectionStats *p = s->projections[j];
		put(b, "whizbang_projection_degraded{projection=\"");
		put_label(b, p->projection != NULL ? p->projection : "");
		put(b, "\"} %d\n", p->health != NULL && strcmp(p->health, "ok") != 0);
	}
}

static void render_histogram(struct buf *b, const char *name, const char *help,
                             const uint64_t *bounds, size_t nbounds, const uint64_t *counts,
                             double scale, double sum)
{
	uint64_t cum = 0;
	head(b, name, "histogram", help);
	for (size_t i = 0; i < nbounds; i++) {
		cum += counts[i];
		put(b, "whizbang_%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds[i] * scale,
		    (unsigned long long)cum);
	}
	cum += counts[nbounds];
	put(b, "whizbang_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	put(b, "whizbang_%s_sum %.17g\n", name, sum);
	put(b, "whizbang_%s_count %llu\n", name, (unsigned long long)cum);
}

static void render(struct srv *srv, struct buf *b)
{
	const struct conn_counters *n = srv_counters(srv);
	struct writer_stats ws;
	struct storage_stats ss;

	srv_writer_stats(srv, &ws);
	memset(&ss, 0, sizeof(ss));
	storage_stats(srv_storage(srv), &ss);

	/* The same figures as GetStats answers. */
	Whizbang__V1__ServerStats s = WHIZBANG__V1__SERVER_STATS__INIT;
	srv_fill_stats(srv, &s);
	render_stats(b, &s);

	head(b, "requests_by_type_total", "counter", "Requests received, by body type.");
	const ProtobufCMessageDescriptor *rd = &whizbang__v1__request__descriptor;
	for (unsigned i = 0; i < rd->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &rd->fields[i];
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0 || f->id >= 64)
			continue;
		put(b, "whizbang_requests_by_type_total{type=\"%s\"} %llu\n", f->name,
		    (unsigned long long)n->requests_by_body[f->id]);
	}

	head(b, "errors_by_code_total", "counter", "Error responses sent, by code.");
#define PUT_ERROR(name, value, text)                                                               \
	if ((value) > 0 && (value) < 32)                                                           \
		put(b, "whizbang_errors_by_code_total{code=\"%s\"} %llu\n", #name,                 \
		    (unsigned long long)n->errors_by_code[(value) % 32]);
	WB_ERRORS(PUT_ERROR)
#undef PUT_ERROR

	head(b, "append_events_total", "counter", "Events appended (acknowledged durable).");
	put(b, "whizbang_append_events_total %llu\n", (unsigned long long)s.batch_events);
	head(b, "batch_bytes_total", "counter",
	     "Bytes of writes handed to the writer, as estimated at submission (events, "
	     "ledger entries and their indexes).");
	put(b, "whizbang_batch_bytes_total %llu\n", (unsigned long long)ws.bytes);

	render_histogram(b, "batch_size", "Group-commit batches by the requests in them.",
	                 writer_ops_bounds, WRITER_OPS_BUCKETS, ws.ops_hist, 1.0, (double)ws.ops);
	render_histogram(b, "batch_commit_seconds",
	                 "Time a batch's write transaction took, its apply, commit and fsync.",
	                 writer_commit_bounds, WRITER_COMMIT_BUCKETS, ws.commit_hist, 1e-6,
	                 (double)ws.commit_us_total * 1e-6);

	head(b, "log_bytes_total", "counter",
	     "Bytes of log records written (durability = log; record bodies).");
	put(b, "whizbang_log_bytes_total %llu\n", (unsigned long long)ws.log_bytes);
	head(b, "log_sync_seconds_total", "counter",
	     "Time spent in the log's fdatasync, one per batch.");
	put(b, "whizbang_log_sync_seconds_total %.6f\n", (double)ws.log_sync_us_total * 1e-6);
	head(b, "log_applied_sequence", "gauge",
	     "The last log record applied and visible to readers.");
	put(b, "whizbang_log_applied_sequence %llu\n", (unsigned long long)ws.applied_seq);
	head(b, "checkpoints_total", "counter",
	     "Checkpoints taken (data file synced, checkpoint saved, log released).");
	put(b, "whizbang_checkpoints_total %llu\n", (unsigned long long)ws.checkpoints);
	head(b, "checkpoint_seconds_total", "counter", "Time spent taking checkpoints.");
	put(b, "whizbang_checkpoint_seconds_total %.6f\n", (double)ws.checkpoint_us_total * 1e-6);
	head(b, "batch_reruns_total", "counter",
	     "Batches run a second time, a nested transaction per request, because a request "
	     "failed (wrong expected version, idempotency conflict...) in the first, flat run.");
	put(b, "whizbang_batch_reruns_total %llu\n", (unsigned long long)ws.reruns);
	head(b, "writes_refused_disk_full_total", "counter",
	     "Batches answered RESOURCE_EXHAUSTED because the disk was full before they were "
	     "logged.");
	put(b, "whizbang_writes_refused_disk_full_total %llu\n", (unsigned long long)ws.nospc);

	size_t nsubs = 0;
	uint64_t lag_total = 0, lag_max = 0;
	srv_sub_figures(srv, s.last_position, s.watermark, &nsubs, &lag_total, &lag_max);
	head(b, "subscriptions", "gauge", "Catch-up subscriptions open.");
	put(b, "whizbang_subscriptions %zu\n", nsubs);
	head(b, "subscription_lag_events", "gauge",
	     "Positions of $all and ledger sequences stored but not yet pushed, summed over "
	     "subscriptions (stream subscriptions not counted).");
	put(b, "whizbang_subscription_lag_events %llu\n", (unsigned long long)lag_total);
	head(b, "subscription_lag_events_max", "gauge", "The largest lag of one subscription.");
	put(b, "whizbang_subscription_lag_events_max %llu\n", (unsigned long long)lag_max);

	head(b, "lmdb_readers_used", "gauge", "LMDB reader slots in use.");
	put(b, "whizbang_lmdb_readers_used %u\n", ss.readers_used);
	head(b, "lmdb_readers_max", "gauge", "LMDB reader slots.");
	put(b, "whizbang_lmdb_readers_max %u\n", ss.max_readers);
	head(b, "lmdb_page_size_bytes", "gauge", "LMDB page size.");
	put(b, "whizbang_lmdb_page_size_bytes %llu\n", (unsigned long long)ss.page_size);
	head(b, "ready", "gauge", "1 when /health/ready answers 200.");
	put(b, "whizbang_ready %d\n", srv_ready(srv));
}

/* Renders on the loop and publishes the text and the readiness flag. */
static void snapshot(struct metrics *m)
{
	struct buf b = {.p = malloc(16384), .cap = 16384};
	if (b.p == NULL)
		return;
	render(m->srv, &b);
	if (m->https) {
		pthread_mutex_lock(&m->mu);
		uint64_t refused = m->refused;
		pthread_mutex_unlock(&m->mu);
		head(&b, "metrics_unauthorized_total", "counter",
		     "Scrapes of /metrics refused for a missing or wrong bearer token.");
		put(&b, "whizbang_metrics_unauthorized_total %llu\n", (unsigned long long)refused);
	}
	if (b.failed) {
		free(b.p);
		b.p = NULL;
	}
	/* The tokens that may scrape, copied for the HTTP thread. When they
	 * cannot be copied (out of memory) the previous copies stay. */
	struct auth_token_record *bearers = NULL;
	size_t nbearers = 0;
	bool new_bearers = false;
	if (m->https) {
		nbearers = srv_auth_tokens_allowed(m->srv, AUTH_ADMIN, AUTH_ADMIN_STATS, NULL, 0);
		bearers = nbearers > 0 ? calloc(nbearers, sizeof(*bearers)) : NULL;
		new_bearers = nbearers == 0 || bearers != NULL;
		if (bearers != NULL)
			nbearers = srv_auth_tokens_allowed(m->srv, AUTH_ADMIN, AUTH_ADMIN_STATS,
			                                   bearers, nbearers);
	}
	pthread_mutex_lock(&m->mu);
	m->ready = srv_ready(m->srv);
	if (b.p != NULL) {
		char *old = m->text;
		m->text = b.p;
		m->text_len = b.len;
		b.p = old;
	}
	if (new_bearers) {
		struct auth_token_record *old = m->bearers;
		m->bearers = bearers;
		m->nbearers = nbearers;
		bearers = old;
	}
	pthread_mutex_unlock(&m->mu);
	free(b.p);
	if (bearers != NULL)
		explicit_bzero(bearers, sizeof(*bearers));
	free(bearers);
}

static void timer_cb(uv_timer_t *t)
{
	struct metrics *m = t->data;
	if (!m->timer_open)
		return;
	snapshot(m);
}

/* ------------------------------------------------------------ HTTP thread */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		                        "Bearer realm=\"whizbang\"");
	enum MHD_Result rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	char *body = strdup(text);
	if (body == NULL)
		return MHD_NO;
	return reply(conn, status, "text/plain; charset=utf-8", body, strlen(body));
}

/* Whether the request carries "Authorization: Bearer TOKEN" with a live
 * token that may scrape. Counts a refusal. */
static bool bearer_ok(struct metrics *m, struct MHD_Connection *conn)
{
	const char *h =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	struct auth_token tok;
	bool parsed = false, ok = false;
	if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
		h += 7;
		while (*h == ' ')
			h++;
		parsed = auth_token_parse(&tok, h, strlen(h)) == 0;
	}
	uint64_t now_ms = srv_wall_us() / 1000u;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; parsed && i < m->nbearers; i++)
		if (memcmp(m->bearers[i].id, tok.id, AUTH_TOKEN_ID_LEN) == 0) {
			ok = auth_token_check(&m->bearers[i], &tok, now_ms) == AUTH_TOKEN_VALID;
			break;
		}
	if (!ok)
		m->refused++;
	pthread_mutex_unlock(&m->mu);
	if (parsed)
		auth_token_clear(&tok);
	return ok;
}

static enum MHD_Result handler_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct metrics *m = cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/health/live") == 0)
		return reply_text(conn, MHD_HTTP_OK, "live\n");
	if (strcmp(url, "/health/ready") == 0) {
		pthread_mutex_lock(&m->mu);
		bool ready = m->ready;
		pthread_mutex_unlock(&m->mu);
		return ready ? reply_text(conn, MHD_HTTP_OK, "ready\n")
		             : reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
	}
	if (strcmp(url, "/metrics") == 0) {
		if (m->https && !bearer_ok(m, conn))
			return reply_text(conn, MHD_HTTP_UNAUTHORIZED,
			                  "a bearer token whose role has admin:stats is needed\n");
		pthread_mutex_lock(&m->mu);
		size_t len = m->text_len;
		char *body = malloc(len > 0 ? len : 1);
		if (body != NULL && len > 0)
			memcpy(body, m->text, len);
		pthread_mutex_unlock(&m->mu);
		if (body == NULL)
			return MHD_NO;
		return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
		             len);
	}
	return reply_text(conn, MHD_HTTP_NOT_FOUND,
	                  "not found: /metrics, /health/live, "
	                  "/health/ready\n");
}

/* ------------------------------------------------------------ life cycle */

static void timer_closed_cb(uv_handle_t *h)
{
	(void)h;
}

/* The whole file at path, NUL-terminated, at most MAX_PEM bytes. */
static char *read_pem(const char *path, char *errmsg, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = fd >= 0 ? malloc(MAX_PEM + 1) : NULL;
	size_t len = 0;
	ssize_t n = 0;
	while (buf != NULL && len < MAX_PEM && (n = read(fd, buf + len, MAX_PEM - len)) != 0) {
		if (n < 0)
			break;
		len += (size_t)n;
	}
	if (fd >= 0)
		close(fd);
	if (buf == NULL || n < 0 || len == 0 || len >= MAX_PEM) {
		snprintf(errmsg, errlen, "metrics: cannot read %s (%s)", path,
		         buf == NULL && fd >= 0 ? "out of memory"
		         : fd < 0 || n < 0      ? "unreadable"
		                                : "empty, or above 1 MiB");
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

static void free_pem(char *p)
{
	if (p != NULL)
		explicit_bzero(p, strlen(p));
	free(p);
}

/* What init made before the daemon, once no daemon runs. */
static void free_state(struct metrics *m)
{
	pthread_mutex_destroy(&m->mu);
	free(m->text);
	m->text = NULL;
	free(m->bearers);
	m->bearers = NULL;
	free_pem(m->cert_pem);
	free_pem(m->key_pem);
	m->cert_pem = m->key_pem = NULL;
}

/* Starts a daemon on addr, or on the listening socket fd when addr is
 * NULL; with cert and key it serves HTTPS. */
static struct MHD_Daemon *start_daemon(struct metrics *m, const struct sockaddr_storage *addr,
                                       MHD_socket fd, const char *cert, const char *key)
{
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC;
	if (addr != NULL && addr->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cert != NULL)
		flags |= MHD_USE_TLS;
	struct MHD_OptionItem opts[] = {
	        addr != NULL
	                ? (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, (void *)addr}
	                : (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, (intptr_t)fd, NULL},
	        {MHD_OPTION_CONNECTION_LIMIT, MAX_HTTP_CONNECTIONS, NULL},
	        {MHD_OPTION_CONNECTION_TIMEOUT, HTTP_TIMEOUT_S, NULL},
	        {cert != NULL ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cert},
	        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key},
	        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)HTTPS_PRIORITIES},
	        {MHD_OPTION_END, 0, NULL},
	};
	return MHD_start_daemon(flags, 0, NULL, NULL, handler_cb, m, MHD_OPTION_ARRAY, opts,
	                        MHD_OPTION_END);
}

/* Metrics are off (not asked for, or the address could not be bound)
 * while m->daemon is NULL: the hooks then do nothing. */
static int metrics_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct metrics *m = state;
	struct sockaddr_storage addr;
	const struct srv_config *cfg = srv_config(srv);
	const char *listen = cfg->metrics_listen;
	(void)slot;
	m->srv = srv;
	if (listen[0] == '\0' || strcmp(listen, "off") == 0)
		return 0;
	if (netaddr_parse("metrics-listen", listen, &addr, errmsg, errlen) != 0)
		return WB_E_INVAL;
	m->https = cfg->tls_cert_file[0] != '\0' &&
	           (strcmp(cfg->tls, "required") == 0 ||
	            (strcmp(cfg->tls, "auto") == 0 && !netaddr_is_loopback(&addr)));
	if (m->https) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(errmsg, errlen,
			         "metrics-listen = %s would serve HTTPS, but this libmicrohttpd "
			         "has no TLS",
			         listen);
			return WB_E_INVAL;
		}
		m->cert_pem = read_pem(cfg->tls_cert_file, errmsg, errlen);
		m->key_pem =
		        m->cert_pem != NULL ? read_pem(cfg->tls_key_file, errmsg, errlen) : NULL;
		if (m->key_pem == NULL) {
			free_pem(m->cert_pem);
			m->cert_pem = NULL;
			return WB_E_IO;
		}
	}
	if (pthread_mutex_init(&m->mu, NULL) != 0) {
		snprintf(errmsg, errlen, "cannot create the metrics mutex");
		free_pem(m->cert_pem);
		free_pem(m->key_pem);
		m->cert_pem = m->key_pem = NULL;
		return WB_E_IO;
	}
	/* The first text exists before the first request can arrive. */
	snapshot(m);

	m->daemon = start_daemon(m, &addr, MHD_INVALID_SOCKET, m->cert_pem, m->key_pem);
	if (m->daemon == NULL) {
		srv_log(WB_LOG_WARN, "metrics_listen_failed",
		        "addr=%s reason=\"cannot listen (in use?)%s\" metrics=off", listen,
		        m->https ? ", or GnuTLS refused the certificate or key" : "");
		goto err_free;
	}
	const union MHD_DaemonInfo *info =
	        MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info != NULL ? info->port : 0;
	if (cfg->port_file[0] != '\0') {
		char path[1100];
		snprintf(path, sizeof(path), "%s.metrics", cfg->port_file);
		if (netaddr_write_port_file(path, m->port, errmsg, errlen) != 0)
			goto err_after_daemon;
	}

	int rc = uv_timer_init(srv_loop(srv), &m->timer);
	if (rc != 0) {
		snprintf(errmsg, errlen, "cannot make the metrics timer: %s", uv_strerror(rc));
		goto err_after_daemon;
	}
	m->timer.data = m;
	m->timer_open = true;
	/* First tick on the first loop turn, once the server is ready. uv_timer_start()
	 * with a callback cannot fail. */
	uv_timer_start(&m->timer, timer_cb, 0, SNAPSHOT_MS);
	uv_unref((uv_handle_t *)&m->timer);
	srv_log(WB_LOG_INFO, "metrics_listening", "addr=%s port=%d scheme=%s", listen, m->port,
	        m->https ? "https (bearer token)" : "http");
	return 0;

err_after_daemon:
	MHD_stop_daemon(m->daemon);
	m->daemon = NULL;
	free_state(m);
	return WB_E_IO;

err_free:
	/* Not listening is not fatal (see the top of the file). */
	free_state(m);
	return 0;
}

/* A new daemon with the files as they are now, on the old one's socket.
 * When GnuTLS refuses them, a daemon with the old ones takes the socket
 * back; only if that fails too are metrics off. */
static int metrics_reload(void *state, char *errmsg, size_t errlen)
{
	struct metrics *m = state;
	if (m->daemon == NULL || !m->https)
		return 0;
	const struct srv_config *cfg = srv_config(m->srv);
	char *cert = read_pem(cfg->tls_cert_file, errmsg, errlen);
	char *key = cert != NULL ? read_pem(cfg->tls_key_file, errmsg, errlen) : NULL;
	if (key == NULL) {
		free_pem(cert);
		return WB_E_IO;
	}
	MHD_socket fd = MHD_quiesce_daemon(m->daemon);
	if (fd == MHD_INVALID_SOCKET) {
		snprintf(errmsg, errlen, "metrics: cannot take the listening socket over");
		free_pem(cert);
		free_pem(key);
		return WB_E_IO;
	}
	struct MHD_Daemon *d = start_daemon(m, NULL, fd, cert, key);
	int rc = 0;
	if (d == NULL) {
		snprintf(errmsg, errlen,
		         "metrics: GnuTLS refused %s or %s (the certificate served so far stays)",
		         cfg->tls_cert_file, cfg->tls_key_file);
		free_pem(cert);
		free_pem(key);
		cert = m->cert_pem;
		key = m->key_pem;
		d = start_daemon(m, NULL, fd, cert, key);
		rc = WB_E_INVAL;
	}
	MHD_stop_daemon(m->daemon);
	if (cert != m->cert_pem) {
		free_pem(m->cert_pem);
		free_pem(m->key_pem);
		m->cert_pem = cert;
		m->key_pem = key;
	}
	m->daemon = d;
	if (d == NULL) {
		close(fd);
		srv_log(WB_LOG_ERROR, "metrics_listen_failed",
		        "reason=\"no daemon could be started again after a reload\" metrics=off");
		if (m->timer_open) {
			m->timer_open = false;
			uv_close((uv_handle_t *)&m->timer, timer_closed_cb);
		}
		free_state(m);
	}
	return rc;
}

static void metrics_shutdown(void *state)
{
	struct metrics *m = state;
	if (m->daemon == NULL)
		return;
	pthread_mutex_lock(&m->mu);
	m->ready = false;
	pthread_mutex_unlock(&m->mu);
	if (m->timer_open) {
		m->timer_open = false;
		uv_close((uv_handle_t *)&m->timer, timer_closed_cb);
	}
}

static void metrics_close(void *state)
{
	struct metrics *m = state;
	if (m->daemon == NULL)
		return;
	/* The timer was closed by the shutdown hook unless the loop ended some
	 * other way: then close it here, before m goes. */
	if (m->timer_open) {
		m->timer_open = false;
		uv_close((uv_handle_t *)&m->timer, timer_closed_cb);
		uv_run(srv_loop(m->srv), UV_RUN_NOWAIT);
	}
	/* Stopping the daemon joins its thread: no handler runs after it. */
	MHD_stop_daemon(m->daemon);
	free_state(m);
}

const struct srv_module srv_metrics_module = {
        .name = "metrics",
        .size = sizeof(struct metrics),
        .init = metrics_init,
        .shutdown = metrics_shutdown,
        .close = metrics_close,
        .reload = metrics_reload,
};
