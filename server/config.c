#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "auth/acl.h"
#include "eval.h"
#include "log.h"
#include "parse.h"
#include "wb_version.h"

enum opt_type { OPT_STRING, OPT_SIZE, OPT_UINT, OPT_DURATION, OPT_LEVEL, OPT_BOOL };

struct opt {
	const char *name;
	enum opt_type type;
	size_t offset;
	size_t size;  /* OPT_STRING: the buffer size */
	uint64_t min; /* OPT_SIZE, OPT_UINT */
	uint64_t max;
	const char *dflt;
	const char *help;
};

#define KIB (1024ull)
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define TIB (1024ull * GIB)

#define STR(field)                                                                                 \
	OPT_STRING, offsetof(struct srv_config, field), sizeof(((struct srv_config *)0)->field)
#define NUM(type, field) type, offsetof(struct srv_config, field), 0

/* The one table of settings: name, type, bounds, default and meaning. */
static const struct opt opts[] = {
        {"listen", STR(listen), 0, 0, "127.0.0.1:7411",
         "address to listen on, HOST:PORT (port 0: any free port)"},
        {"data-dir", STR(data_dir), 0, 0, "whizbang-data", "data directory, created when missing"},
        {"backup-dir", STR(backup_dir), 0, 0, "",
         "absolute directory that Backup writes into, each backup a new directory in it "
         "(this one is created 0700 when missing, and must not be writable by group or others "
         "or overlap the data directory); empty: Backup is off"},
        {"port-file", STR(port_file), 0, 0, "", "write the bound port to this file once listening"},
        {"metrics-listen", STR(metrics_listen), 0, 0, "127.0.0.1:7412",
         "HTTP address of /metrics and /health (\"off\": none; port 0: any free port)"},
        {"map-size", NUM(OPT_SIZE, map_size), 1 * MIB, 16 * TIB, "64M",
         "initial LMDB map size; the map grows automatically"},
        {"max-frame", NUM(OPT_SIZE, max_frame), 4 * KIB, 64 * MIB, "4M",
         "largest request frame accepted; it bounds ledger entries too, so that each fits one "
         "answer: the ops of a Commit or Stage take at most max-frame less 5K"},
        {"max-unauthenticated-frame", NUM(OPT_SIZE, max_unauth_frame), 4 * KIB, 64 * MIB, "64K",
         "largest frame of a connection that has not authenticated (before its Hello, or "
         "without credentials under anonymous-role none): it may only say Hello and Ping; "
         "larger ones get FRAME_TOO_LARGE and a close (max-frame bounds it too)"},
        {"max-connections", NUM(OPT_UINT, max_connections), 1, 100000, "1024",
         "concurrent client connections"},
        {"max-bytes-per-second", NUM(OPT_SIZE, max_bytes_per_s), 0, 64 * GIB, "64M",
         "bytes one connection may send a second (a second's worth, at least one largest "
         "frame, at once); past it, it is not read until they are paid for (0: no limit)"},
        {"max-connections-per-address", NUM(OPT_UINT, max_connections_per_address), 0, 100000,
         "256",
         "open connections from one IP address (or one Unix user other than root and the "
         "server's own) before more are refused (0: no limit)"},
        {"max-connections-per-identity", NUM(OPT_UINT, max_connections_per_identity), 0, 100000,
         "256",
         "open connections one authenticated user or token may have; the Hello of one more "
         "is refused and the connection closed (the admin role: no limit; 0: no limit)"},
        {"max-identity-requests-per-second", NUM(OPT_UINT, max_identity_requests_per_s), 0,
         100000000, "0",
         "requests one client identity (its user or token; before authentication, its "
         "address) may send a second over all its connections (a second's worth at once); "
         "past it, its connections are not read until it is paid for (the admin role: no "
         "limit; 0: no limit)"},
        {"max-identity-bytes-per-second", NUM(OPT_SIZE, max_identity_bytes_per_s), 0, 64 * GIB, "0",
         "request bytes one client identity may send a second over all its connections (a "
         "second's worth, at least one largest frame, at once); past it, its connections "
         "are not read until they are paid for (the admin role: no limit; 0: no limit)"},
        {"refusal-backoff", NUM(OPT_DURATION, refusal_backoff_ms), 0, 60000, "1s",
         "the longest pause of a client identity whose requests keep being refused by a "
         "quota or a cost limit: 1 ms after a refusal, doubled per further one, cleared by "
         "a second without one; its connections are not read meanwhile (the admin role: "
         "none; 0: no pause)"},
        {"max-read-count", NUM(OPT_UINT, max_read_count), 1, 100000, "1000",
         "most events one read answers"},
        {"max-append-events", NUM(OPT_UINT, max_append_events), 1, 100000, "10000",
         "most events in one append"},
        {"max-output-per-connection", NUM(OPT_SIZE, max_output), 64 * KIB, 4 * GIB, "16M",
         "queued response bytes before a client is paused"},
        {"memory-budget", NUM(OPT_SIZE, memory_budget), 0, 1024 * GIB, "0",
         "bytes the server may hold for its clients: input buffers, queued output, queued "
         "reads and writes waiting to be durable; from 7/8 of it the connections holding "
         "much are paused, at it the heaviest is disconnected (RESOURCE_EXHAUSTED); at least "
         "twice max-frame (0: an eighth of the machine's memory, at least 256M)"},
        {"push-buffer", NUM(OPT_SIZE, push_buffer), 64 * KIB, 4 * GIB, "2M",
         "queued bytes below which subscription and consumer items are pushed to a "
         "connection (what a subscriber that does not read holds; for subscriptions, what "
         "the kernel holds for the peer counts too)"},
        {"max-inflight", NUM(OPT_UINT, max_inflight), 1, 1000000, "1024",
         "writes in flight per connection before it is paused"},
        {"frame-timeout-ms", NUM(OPT_UINT, frame_timeout_ms), 10, 3600000, "30000",
         "time a started frame may take to arrive"},
        {"idle-timeout", NUM(OPT_DURATION, idle_timeout_ms), 0, 7 * 86400000ull, "5m",
         "a connection that sends no request for this long is closed, unless it holds a "
         "subscription, a lease or a consumer membership, or waits for an answer (0: never)"},
        {"keepalive-interval", NUM(OPT_DURATION, keepalive_ms), 0, 3600000, "30s",
         "a connection the server has sent nothing for this long gets a keepalive "
         "(Response id 0 with a Pong), so that clients can tell a quiet server from a dead "
         "one (0: none)"},
        {"tcp-keepalive", NUM(OPT_DURATION, tcp_keepalive_ms), 0, 86400000, "60s",
         "TCP keepalive probes after this much silence, so that a peer that vanished is "
         "closed (whole seconds; 0: off)"},
        {"shutdown-timeout-ms", NUM(OPT_UINT, shutdown_timeout_ms), 10, 3600000, "10000",
         "time to finish in-flight work on SIGTERM"},
        {"lease-max-lifetime", NUM(OPT_DURATION, lease_max_lifetime_ms), 1000, 86400000, "30m",
         "longest a lease may live, extends included"},
        {"lease-grace", NUM(OPT_DURATION, lease_grace_ms), 0, 3600000, "0",
         "time past its expiry before a lease is finalised"},
        {"lease-max", NUM(OPT_DURATION, lease_max_ms), 10, 86400000, "10m",
         "longest duration one lease or extend gets (asked or adaptive)"},
        {"lease-default", NUM(OPT_DURATION, lease_default_ms), 10, 86400000, "30s",
         "adaptive duration for a projection with no history"},
        {"cascade-threshold", NUM(OPT_UINT, cascade_threshold), 1, 100000000, "100",
         "expiries within a minute that double adaptive durations"},
        {"max-leases", NUM(OPT_UINT, max_leases), 1, 10000000, "100000",
         "leases held at once (active and finishing)"},
        {"max-leases-per-connection", NUM(OPT_UINT, max_leases_per_connection), 1, 10000000,
         "10000", "active leases one connection may hold"},
        {"max-leases-per-identity", NUM(OPT_UINT, max_leases_per_identity), 0, 10000000, "25000",
         "active leases one client identity (its user or token; before authentication, its "
         "address) may hold over all its connections, those it left open to expire included "
         "(the admin role: no limit; 0: no limit)"},
        {"max-lease-count", NUM(OPT_UINT, max_lease_count), 1, 1024, "1024",
         "most sequences one Lease may ask for"},
        {"lease-reserve-chunk", NUM(OPT_UINT, lease_reserve_chunk), 1, 1000000, "1000",
         "sequences reserved ahead with each durable ceiling write"},
        {"max-scan", NUM(OPT_UINT, max_scan), 0, 1000000000, "100000",
         "most entities a where clause may scan without an index (QUERY_TOO_EXPENSIVE)"},
        {"max-explosion-bytes", NUM(OPT_SIZE, max_explosion_bytes), 64 * KIB, 64 * MIB, "1M",
         "the encoded id lists one ledger entry's update/delete-by-where ops may record; past "
         "it the entry is a no-op (QUERY_TOO_EXPENSIVE), so that every entry fits a reader's "
         "page (half of max-frame when that is less)"},
        {"max-query-bytes", NUM(OPT_SIZE, max_query_bytes), 0, 64 * MIB, "256K",
         "QueryEntities, Explain, GetEntity and ListIndexes frames larger than this are "
         "refused (QUERY_TOO_EXPENSIVE, request id 0) before they are decoded (0: no limit)"},
        {"max-candidates", NUM(OPT_UINT, max_candidates), 0, 1000000000, "100000",
         "most index entries the plan of one where clause may read (QUERY_TOO_EXPENSIVE)"},
        {"max-where-terms", NUM(OPT_UINT, max_where_terms), 1, 1000000, "2000",
         "most terms in one where clause: its nodes (comparisons, in, exists, starts_with, "
         "and, or, not) plus the values of its in lists (QUERY_TOO_EXPENSIVE)"},
        {"max-where-depth", NUM(OPT_UINT, max_where_depth), 1, PROJ_EXPR_MAX_DEPTH, "32",
         "most levels of nesting in one where clause (QUERY_TOO_EXPENSIVE)"},
        {"max-where-in-list", NUM(OPT_UINT, max_where_in_list), 1, PROJ_EXPR_MAX_TERMS, "1000",
         "most values in one in list of a where clause (QUERY_TOO_EXPENSIVE)"},
        {"max-where-bytes", NUM(OPT_SIZE, max_where_bytes), 1, 64 * MIB, "64K",
         "most bytes of field names and literals in one where clause, a number, bool or null "
         "counting 8 (QUERY_TOO_EXPENSIVE)"},
        {"max-where-literal", NUM(OPT_SIZE, max_where_literal), 1, 64 * MIB, "16K",
         "most bytes of one string or bytes literal or starts_with prefix in a where clause "
         "(QUERY_TOO_EXPENSIVE)"},
        {"max-query-count", NUM(OPT_UINT, max_query_count), 1, 100000, "1000",
         "most entities one QueryEntities answers"},
        {"max-queries-queued", NUM(OPT_UINT, max_queries_queued), 1, 100000, "256",
         "read-model requests (GetEntity, QueryEntities, Explain, ListIndexes, Verify) queued "
         "or running at once; more are refused (RESOURCE_EXHAUSTED)"},
        {"max-queries-per-connection", NUM(OPT_UINT, max_queries_per_connection), 1, 100000, "16",
         "read-model requests one connection may have queued or running"},
        {"max-subscriptions-per-connection", NUM(OPT_UINT, max_subscriptions_per_connection), 1,
         100000, "64", "catch-up subscriptions one connection may hold"},
        {"max-subscriptions-per-identity", NUM(OPT_UINT, max_subscriptions_per_identity), 0,
         10000000, "1024",
         "catch-up subscriptions one client identity (its user or token; before "
         "authentication, its address) may hold over all its connections (the admin role: "
         "no limit; 0: no limit)"},
        {"max-consumer-groups", NUM(OPT_UINT, max_consumer_groups), 1, 1000000, "1024",
         "durable consumer groups the server keeps"},
        {"max-consumer-groups-per-identity", NUM(OPT_UINT, max_consumer_groups_per_identity), 0,
         1000000, "256",
         "consumer groups one client identity (its user or token; before authentication, "
         "its address) may own, counted across restarts (the admin role: no limit; 0: no "
         "limit)"},
        {"max-consumer-members", NUM(OPT_UINT, max_consumer_members), 1, 65536, "1024",
         "members one consumer group may have at once"},
        {"consumer-window", NUM(OPT_UINT, consumer_window), 16, 10000000, "10000",
         "events a consumer group holds between its checkpoint and its reading position"},
        {"durability", STR(durability), 0, 0, "log",
         "log: an answer leaves once its batch is in the write-ahead log (one sequential "
         "fdatasync), the store is checkpointed; sync: every batch is an fsynced LMDB commit"},
        {"checkpoint-bytes", NUM(OPT_SIZE, checkpoint_bytes), 64 * KIB, 64 * GIB, "256M",
         "log written before the store is checkpointed (a restart replays at most this much)"},
        {"checkpoint-growth", NUM(OPT_SIZE, checkpoint_growth), 64 * KIB, 1 * TIB, "1G",
         "growth of the data file's used part before the store is checkpointed (bounds the "
         "pages the pinned checkpoint keeps from reuse)"},
        {"checkpoint-interval-ms", NUM(OPT_UINT, checkpoint_interval_ms), 100, 86400000, "60000",
         "longest time between checkpoints while anything is logged"},
        {"wal-segment-size", NUM(OPT_SIZE, wal_segment_size), 1 * MIB, 1 * GIB, "64M",
         "size of one preallocated log segment"},
        {"wal-spare-segments", NUM(OPT_UINT, wal_spare_segments), 0, 64, "2",
         "log segments kept for reuse after a checkpoint"},
        {"unsafe-no-checkpoint-pin", NUM(OPT_BOOL, unsafe_no_checkpoint_pin), 0, 1, "false",
         "power-cut harness only: do not pin the checkpoint's pages (loses data on a power cut)"},
        {"unsafe-no-meta-restore", NUM(OPT_BOOL, unsafe_no_meta_restore), 0, 1, "false",
         "power-cut harness only: open without restoring the checkpoint (loses data on a "
         "power cut)"},
        {"unsafe-ack-before-sync", NUM(OPT_BOOL, unsafe_ack_before_sync), 0, 1, "false",
         "power-cut harness only: answer writes before the log's fdatasync (loses "
         "acknowledged writes on a power cut)"},
        {"unsafe-unbounded-ledger-entries", NUM(OPT_BOOL, unsafe_unbounded_ledger_entries), 0, 1,
         "false",
         "ledger-size harness only: accept Commit and Stage ops, and apply entries, larger "
         "than one reader's answer carries (makes ledger entries that readers cannot fetch)"},
        {"log-level", NUM(OPT_LEVEL, log_level), 0, 3, "info", "debug, info, warn or error"},
        {"log-rate", NUM(OPT_UINT, log_rate), 0, 1000000, "10",
         "lines a second each event may log once its burst is spent (0: no limit); the lines "
         "over it are counted, not written, and summarised (event=log_suppressed)"},
        {"log-burst", NUM(OPT_UINT, log_burst), 1, 1000000, "20",
         "lines each event may log at once before log-rate applies (error lines: five times "
         "as many)"},
        {"log-summary-interval", NUM(OPT_DURATION, log_summary_ms), 100, 3600000, "5s",
         "age of the first suppressed line of an event when the count is logged: at most one "
         "summary per event per interval"},
        {"insecure", NUM(OPT_BOOL, insecure), 0, 1, "false",
         "allow a listen or metrics-listen address other than loopback without TLS (and, "
         "for listen, with an anonymous role): what crosses the network can be read, and "
         "for metrics anyone who reaches the port reads the figures"},
        {"unix-socket", STR(unix_socket), 0, 0, "auto",
         "Unix domain socket to listen on as well (mode 0660): auto (DATA_DIR/whizbangd.sock), "
         "off, or a path; root and the server's own user connect through it as admin"},
        {"tls", STR(tls), 0, 0, "auto",
         "off: plaintext only; auto: TLS when the client starts with it, plaintext from "
         "loopback and the Unix socket (and from anywhere while no certificate is set); "
         "required: TLS on every TCP connection"},
        {"tls-cert-file", STR(tls_cert_file), 0, 0, "",
         "PEM certificate (and chain) the server presents; with tls-key-file, TLS is served"},
        {"tls-key-file", STR(tls_key_file), 0, 0, "",
         "PEM private key of tls-cert-file (unencrypted)"},
        {"tls-ca-file", STR(tls_ca_file), 0, 0, "",
         "PEM CAs that client certificates must chain to (tls-client-cert)"},
        {"tls-client-cert", STR(tls_client_cert), 0, 0, "none",
         "none, optional or required: ask TLS clients for a certificate (its CN names the user "
         "of the EXTERNAL mechanism)"},
        {"tls-handshake-timeout-ms", NUM(OPT_UINT, tls_handshake_timeout_ms), 100, 600000, "10000",
         "time a TLS client has to finish its handshake"},
        {"auth-failures-per-minute", NUM(OPT_UINT, auth_failures_per_minute), 1, 1000000, "10",
         "failed authentications one address may make in a minute; beyond, its attempts are "
         "refused unexamined until the minute is over"},
        {"scram-iterations", NUM(OPT_UINT, scram_iterations), 4096, 10000000, "100000",
         "PBKDF2 iterations a SCRAM-SHA-256 password must have been stored with (the least "
         "PutUser accepts)"},
        {"anonymous-role", STR(anonymous_role), 0, 0, "none",
         "role of a connection that has not authenticated: none, admin, ops, writer or reader; "
         "for development only (a warning is logged at start when it is not none)"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Parses a boolean: true, yes, on, 1 or false, no, off, 0. */
static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* Sets o from its text. who names the setting in a message: "--max-frame"
 * for a flag, "FILE:LINE: max-frame" for a file's key. */
static int set_opt(struct srv_config *cfg, const struct opt *o, const char *value, const char *who,
                   char *errmsg, size_t errlen)
{
	char *base = (char *)cfg;
	uint64_t v;

	switch (o->type) {
	case OPT_STRING:
		if (strlen(value) >= o->size) {
			snprintf(errmsg, errlen, "%s: the value is longer than %zu bytes", who,
			         o->size - 1);
			return -1;
		}
		memcpy(base + o->offset, value, strlen(value) + 1);
		return 0;
	case OPT_LEVEL: {
		int level = log_parse_level(value);
		if (level < 0) {
			snprintf(errmsg, errlen, "%s: '%s' is not one of debug, info, warn, error",
			         who, value);
			return -1;
		}
		*(int *)(void *)(base + o->offset) = level;
		return 0;
	}
	case OPT_BOOL: {
		bool b;
		if (parse_bool(value, &b) != 0) {
			snprintf(errmsg, errlen,
			         "%s: '%s' is not a boolean (true, false, yes, no, on, off, 1, 0)",
			         who, value);
			return -1;
		}
		*(bool *)(void *)(base + o->offset) = b;
		return 0;
	}
	case OPT_DURATION:
	case OPT_SIZE:
	case OPT_UINT: {
		enum parse_kind kind = o->type == OPT_SIZE       ? PARSE_SIZE
		                       : o->type == OPT_DURATION ? PARSE_DURATION
		                                                 : PARSE_INTEGER;
		if (parse_u64(value, kind, &v) != 0) {
			if (kind == PARSE_INTEGER)
				snprintf(errmsg, errlen, "%s: '%s' is not a whole number", who,
				         value);
			else
				snprintf(errmsg, errlen,
				         "%s: '%s' is not a %s (digits with an optional %s)", who,
				         value, kind == PARSE_SIZE ? "size" : "duration",
				         parse_units(kind));
			return -1;
		}
		if (v < o->min || v > o->max) {
			snprintf(errmsg, errlen, "%s: %llu is outside %llu..%llu", who,
			         (unsigned long long)v, (unsigned long long)o->min,
			         (unsigned long long)o->max);
			return -1;
		}
		*(uint64_t *)(void *)(base + o->offset) = v;
		return 0;
	}
	}
	return -1;
}

/* Settings that were renamed: their old name is refused with the new one,
 * so an old config file fails loudly instead of silently meaning nothing
 * (or, for max-output-total, less than it now does). */
static const char *renamed_to(const char *name, size_t nlen)
{
	static const struct {
		const char *old, *now;
	} renamed[] = {
	        {"allow-unauthenticated-remote", "insecure"},
	        {"max-output-total", "memory-budget"},
	};
	for (size_t i = 0; i < sizeof(renamed) / sizeof(renamed[0]); i++)
		if (strlen(renamed[i].old) == nlen && strncmp(name, renamed[i].old, nlen) == 0)
			return renamed[i].now;
	return NULL;
}

static const struct opt *find_opt(const char *name, size_t nlen)
{
	for (size_t k = 0; k < NOPTS; k++)
		if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, name, nlen) == 0)
			return &opts[k];
	return NULL;
}

void config_defaults(struct srv_config *cfg)
{
	char errmsg[256];
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NOPTS; i++)
		if (set_opt(cfg, &opts[i], opts[i].dflt, opts[i].name, errmsg, sizeof(errmsg)) != 0)
			abort(); /* a default outside its own bounds is a bug */
}

void config_usage(FILE *out)
{
	fprintf(out,
	        "usage: whizbangd [--config FILE] [--check-config] [--OPTION VALUE]...\n"
	        "       whizbangd replay --data-dir DIR [--verify]\n\n"
	        "whizbangd %s: the Whizbang event-store server.\n\nOptions:\n",
	        WB_VERSION);
	for (size_t i = 0; i < NOPTS; i++)
		fprintf(out, "  --%-27s %s (default: %s)\n", opts[i].name, opts[i].help,
		        opts[i].dflt[0] != '\0' ? opts[i].dflt : "none");
	fprintf(out, "  --%-27s %s\n  --%-27s %s\n  --%-27s %s\n  --%-27s %s\n", "config FILE",
	        "read settings from this INI file first (flags win; none is read otherwise)",
	        "check-config", "validate, print the effective settings and exit (2 on errors)",
	        "help", "print this text and exit", "version", "print the version and exit");
}

/* Appends a line to a newline-separated list of messages, truncating at
 * errlen. */
static void append_line(char *errmsg, size_t errlen, const char *line)
{
	size_t used = strnlen(errmsg, errlen);
	if (errlen == 0 || used + 1 >= errlen)
		return;
	snprintf(errmsg + used, errlen - used, "%s%s", used > 0 ? "\n" : "", line);
}

struct file_ctx {
	struct srv_config *cfg;
	const char *path;
	FILE *f;
	int line;
	int line_max;            /* the longest line inih takes */
	int first_handler_error; /* 0: none */
	char *errmsg;
	size_t errlen;
};

/* The key the reader puts in place of a line longer than inih's buffer, so
 * that the handler reports it instead of inih applying a cut value. */
#define TOO_LONG_KEY "\x01"

/* inih's line reader: counts lines so that the handler can name the line of
 * each key (Debian's libinih is built without INI_HANDLER_LINENO), and turns
 * a line longer than inih's buffer into an error rather than two lines. */
static char *file_reader(char *str, int num, void *stream)
{
	struct file_ctx *ctx = stream;
	char *got = fgets(str, num, ctx->f);
	if (got == NULL)
		return NULL;
	ctx->line++;
	size_t n = strlen(got);
	if (n > 0 && got[n - 1] != '\n' && !feof(ctx->f)) {
		int ch;
		while ((ch = getc(ctx->f)) != EOF && ch != '\n')
			;
		ctx->line_max = num - 2;
		snprintf(str, (size_t)num, "%s = \n", TOO_LONG_KEY);
	}
	return got;
}

static int file_handler(void *user, const char *section, const char *name, const char *value)
{
	struct file_ctx *ctx = user;
	char who[1400];
	char msg[2048];
	if (name == NULL)
		return 1;
	snprintf(who, sizeof(who), "%s:%d: %s", ctx->path, ctx->line, name);
	const struct opt *o = find_opt(name, strlen(name));
	if (strcmp(name, TOO_LONG_KEY) == 0)
		snprintf(msg, sizeof(msg), "%s:%d: the line is longer than %d bytes", ctx->path,
		         ctx->line, ctx->line_max);
	else if (section[0] != '\0' && strcmp(section, "whizbangd") != 0)
		snprintf(msg, sizeof(msg),
		         "%s: the key is in section [%s]; keys go before any section or in "
		         "[whizbangd]",
		         who, section);
	else if (o == NULL && renamed_to(name, strlen(name)) != NULL)
		snprintf(msg, sizeof(msg), "%s: the key was renamed %s", who,
		         renamed_to(name, strlen(name)));
	else if (o == NULL)
		snprintf(msg, sizeof(msg), "%s: unknown key (see whizbangd --help)", who);
	else if (set_opt(ctx->cfg, o, value, who, msg, sizeof(msg)) == 0)
		return 1;
	append_line(ctx->errmsg, ctx->errlen, msg);
	if (ctx->first_handler_error == 0)
		ctx->first_handler_error = ctx->line;
	return 0;
}

int config_load_file(struct srv_config *cfg, const char *path, char *errmsg, size_t errlen)
{
	if (errlen > 0)
		errmsg[0] = '\0';
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(errmsg, errlen, "%s: cannot read the config file: %s", path,
		         strerror(errno));
		return -1;
	}
	struct file_ctx ctx = {
	        .cfg = cfg, .path = path, .f = f, .errmsg = errmsg, .errlen = errlen};
	/* A line that starts with white space would otherwise continue the
	 * previous key's value (Python's configparser style), so that an
	 * indented key became part of a number. Debian's libinih makes this
	 * a run-time switch; whizbangd is its only user in the process. */
	ini_allow_multiline = false;
	int rc = ini_parse_stream(file_reader, &ctx, file_handler, &ctx);
	bool read_error = ferror(f) != 0;
	fclose(f);
	if (rc < 0 || read_error) {
		char msg[1400];
		snprintf(msg, sizeof(msg), "%s: cannot read the config file", path);
		append_line(errmsg, errlen, msg);
		return -1;
	}
	/* inih returns the first line in error; one before the handler's
	 * first is a line that is neither a section nor key = value. */
	if (rc > 0 && (ctx.first_handler_error == 0 || rc < ctx.first_handler_error)) {
		char msg[1400];
		snprintf(msg, sizeof(msg), "%s:%d: not a 'key = value' line or a [section]", path,
		         rc);
		append_line(errmsg, errlen, msg);
	}
	return rc == 0 ? 0 : -1;
}

/* Whether the option name of length nlen is the command-line-only meta. */
static bool is_meta(const char *name, size_t nlen, const char *meta)
{
	return strlen(meta) == nlen && strncmp(meta, name, nlen) == 0;
}

int config_parse_args(struct srv_config *cfg, int argc, char **argv, char *errmsg, size_t errlen)
{
	if (errlen > 0)
		errmsg[0] = '\0';
	/* Two passes, so that the file comes before every flag wherever
	 * --config stands: the first finds --config, --check-config, --help
	 * and --version; the second applies the other options. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && cfg->config_file[0] != '\0' &&
		    config_load_file(cfg, cfg->config_file, errmsg, errlen) != 0)
			return -1;
		for (int i = 1; i < argc; i++) {
			const char *arg = argv[i];
			if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
				config_usage(stdout);
				return 1;
			}
			if (strcmp(arg, "--version") == 0) {
				printf("whizbangd %s\n", WB_VERSION);
				return 1;
			}
			if (strncmp(arg, "--", 2) != 0) {
				if (pass == 0)
					continue;
				snprintf(errmsg, errlen,
				         "unexpected argument '%s' (options start with --)", arg);
				return -1;
			}
			const char *name = arg + 2;
			const char *eq = strchr(name, '=');
			size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
			const char *value = eq != NULL ? eq + 1 : NULL;
			const struct opt *o = find_opt(name, nlen);
			bool takes_value =
			        is_meta(name, nlen, "config") || (o != NULL && o->type != OPT_BOOL);
			if (is_meta(name, nlen, "check-config")) {
				if (value != NULL) {
					snprintf(errmsg, errlen, "--check-config takes no value");
					return -1;
				}
				cfg->check_config = true;
				continue;
			}
			if (o == NULL && !takes_value) {
				if (pass == 0)
					continue;
				if (renamed_to(name, nlen) != NULL)
					snprintf(errmsg, errlen, "--%.*s was renamed --%s",
					         (int)nlen, name, renamed_to(name, nlen));
				else
					snprintf(errmsg, errlen,
					         "unknown option '--%.*s' (see --help)", (int)nlen,
					         name);
				return -1;
			}
			if (value == NULL && takes_value) {
				if (i + 1 >= argc) {
					snprintf(errmsg, errlen, "--%.*s needs a value", (int)nlen,
					         name);
					return -1;
				}
				value = argv[++i];
			}
			if (o == NULL) { /* --config */
				if (pass == 1)
					continue;
				if (strlen(value) >= sizeof(cfg->config_file)) {
					snprintf(errmsg, errlen,
					         "--config: the path is longer than %zu bytes",
					         sizeof(cfg->config_file) - 1);
					return -1;
				}
				memcpy(cfg->config_file, value, strlen(value) + 1);
				continue;
			}
			char who[80];
			snprintf(who, sizeof(who), "--%s", o->name);
			if (pass == 1 && set_opt(cfg, o, value != NULL ? value : "true", who,
			                         errmsg, errlen) != 0)
				return -1;
		}
	}
	return 0;
}

/* Whether HOST of HOST:PORT or [HOST]:PORT is a loopback address. */
static bool listen_is_loopback(const char *listen)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	size_t hlen = colon != NULL ? (size_t)(colon - listen) : strlen(listen);
	if (hlen >= 2 && listen[0] == '[' && listen[hlen - 1] == ']') {
		listen++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		return false;
	memcpy(host, listen, hlen);
	host[hlen] = '\0';
	if (strcmp(host, "localhost") == 0)
		return true;
	unsigned char a[16];
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, host, a) == 1) {
		static const unsigned char one[16] = {[15] = 1};
		static const unsigned char v4mapped[12] = {[10] = 0xff, [11] = 0xff};
		return memcmp(a, one, 16) == 0 || (memcmp(a, v4mapped, 12) == 0 && a[12] == 127);
	}
	return false;
}

int config_validate(const struct srv_config *cfg, char *errmsg, size_t errlen)
{
	if (strcmp(cfg->durability, "log") != 0 && strcmp(cfg->durability, "sync") != 0) {
		snprintf(errmsg, errlen, "durability = %s: it is log or sync", cfg->durability);
		return -1;
	}
	bool unsafe = cfg->unsafe_no_checkpoint_pin || cfg->unsafe_no_meta_restore ||
	              cfg->unsafe_ack_before_sync;
	if (unsafe && strcmp(cfg->durability, "log") != 0) {
		snprintf(errmsg, errlen, "the unsafe-* settings apply to durability = log only");
		return -1;
	}
	if (cfg->memory_budget != 0 && cfg->memory_budget / 2 < cfg->max_frame) {
		snprintf(errmsg, errlen,
		         "memory-budget = %llu is less than twice max-frame (%llu): one client's "
		         "largest frame and its answer would fill it. Raise memory-budget (0: from "
		         "the machine's memory) or lower max-frame",
		         (unsigned long long)cfg->memory_budget,
		         (unsigned long long)cfg->max_frame);
		return -1;
	}
	if (cfg->backup_dir[0] != '\0' && cfg->backup_dir[0] != '/') {
		snprintf(errmsg, errlen,
		         "backup-dir = %s: it is an absolute path (or empty, which turns Backup "
		         "off)",
		         cfg->backup_dir);
		return -1;
	}
	if (strcmp(cfg->tls, "off") != 0 && strcmp(cfg->tls, "auto") != 0 &&
	    strcmp(cfg->tls, "required") != 0) {
		snprintf(errmsg, errlen, "tls = %s: it is off, auto or required", cfg->tls);
		return -1;
	}
	if (strcmp(cfg->tls_client_cert, "none") != 0 &&
	    strcmp(cfg->tls_client_cert, "optional") != 0 &&
	    strcmp(cfg->tls_client_cert, "required") != 0) {
		snprintf(errmsg, errlen, "tls-client-cert = %s: it is none, optional or required",
		         cfg->tls_client_cert);
		return -1;
	}
	if ((cfg->tls_cert_file[0] == '\0') != (cfg->tls_key_file[0] == '\0')) {
		snprintf(errmsg, errlen,
		         "tls-cert-file and tls-key-file go together: set both or neither");
		return -1;
	}
	if (strcmp(cfg->tls, "required") == 0 && cfg->tls_cert_file[0] == '\0') {
		snprintf(errmsg, errlen,
		         "tls = required needs a certificate: set tls-cert-file and tls-key-file "
		         "(whizbang certs create-node makes one)");
		return -1;
	}
	if (strcmp(cfg->tls_client_cert, "none") != 0 && cfg->tls_ca_file[0] == '\0') {
		snprintf(errmsg, errlen,
		         "tls-client-cert = %s needs tls-ca-file, the CAs client certificates "
		         "chain to",
		         cfg->tls_client_cert);
		return -1;
	}
	if (strcmp(cfg->anonymous_role, "none") != 0 &&
	    auth_builtin_role(cfg->anonymous_role) == NULL) {
		snprintf(errmsg, errlen,
		         "anonymous-role = %s: it is none, admin, ops, writer or reader",
		         cfg->anonymous_role);
		return -1;
	}
	if (strcmp(cfg->unix_socket, "auto") != 0 && strcmp(cfg->unix_socket, "off") != 0 &&
	    (cfg->unix_socket[0] == '\0' || strlen(cfg->unix_socket) > CONFIG_UNIX_PATH_MAX)) {
		snprintf(errmsg, errlen,
		         "unix-socket = %s: it is auto, off, or a path of 1 to %u bytes (the "
		         "kernel's limit for a socket's name)",
		         cfg->unix_socket, CONFIG_UNIX_PATH_MAX);
		return -1;
	}
	/* Beyond loopback: TLS for every remote client and no anonymous role,
	 * or the operator's explicit choice. */
	bool tls_served = cfg->tls_cert_file[0] != '\0' && strcmp(cfg->tls, "off") != 0;
	bool safe_remote = tls_served && strcmp(cfg->anonymous_role, "none") == 0;
	if (!cfg->insecure && !safe_remote && !listen_is_loopback(cfg->listen)) {
		snprintf(errmsg, errlen,
		         "listen = %s is not a loopback address, and it would serve without TLS "
		         "(no tls-cert-file, or tls = off) or to anyone (anonymous-role is not "
		         "none): passwords, tokens and events would cross the network in the "
		         "clear, or strangers could act. Serve TLS with tls-cert-file and "
		         "tls-key-file and keep anonymous-role = none, listen on 127.0.0.1 or ::1, "
		         "or make it an explicit choice with --insecure (insecure = true in the "
		         "config file)",
		         cfg->listen);
		return -1;
	}
	/* Metrics beyond loopback: HTTPS with the same certificate and a bearer
	 * token (metrics.c), or the operator's explicit choice. */
	if (!cfg->insecure && !tls_served && cfg->metrics_listen[0] != '\0' &&
	    strcmp(cfg->metrics_listen, "off") != 0 && !listen_is_loopback(cfg->metrics_listen)) {
		snprintf(
		        errmsg, errlen,
		        "metrics-listen = %s is not a loopback address, and it would serve "
		        "without TLS (no tls-cert-file, or tls = off): anyone who reaches it would "
		        "read the server's figures in the clear. Set tls-cert-file and "
		        "tls-key-file (metrics are then served over HTTPS to bearer tokens whose "
		        "role has admin:stats), listen on 127.0.0.1 or ::1, or make it an explicit "
		        "choice with --insecure (insecure = true in the config file)",
		        cfg->metrics_listen);
		return -1;
	}
	return 0;
}

/* Formats v with the largest unit that divides it exactly. */
static void format_number(const struct opt *o, uint64_t v, char *buf, size_t len)
{
	static const struct {
		uint64_t mul;
		const char *unit;
	} sizes[] = {{TIB, "T"}, {GIB, "G"}, {MIB, "M"}, {KIB, "K"}},
	  durations[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}};
	size_t n = o->type == OPT_SIZE ? 4 : o->type == OPT_DURATION ? 3 : 0;
	for (size_t i = 0; i < n && v != 0; i++) {
		uint64_t mul = o->type == OPT_SIZE ? sizes[i].mul : durations[i].mul;
		const char *unit = o->type == OPT_SIZE ? sizes[i].unit : durations[i].unit;
		if (v % mul == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(v / mul), unit);
			return;
		}
	}
	snprintf(buf, len, "%llu%s", (unsigned long long)v,
	         o->type == OPT_DURATION && v != 0 ? "ms" : "");
}

static void format_value(const struct srv_config *cfg, const struct opt *o, char *buf, size_t len)
{
	const char *base = (const char *)cfg;
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	switch (o->type) {
	case OPT_STRING:
		snprintf(buf, len, "%s", base + o->offset);
		return;
	case OPT_LEVEL: {
		int level = *(const int *)(const void *)(base + o->offset);
		snprintf(buf, len, "%s", level >= 0 && level <= 3 ? levels[level] : "?");
		return;
	}
	case OPT_BOOL:
		snprintf(buf, len, "%s",
		         *(const bool *)(const void *)(base + o->offset) ? "true" : "false");
		return;
	case OPT_SIZE:
	case OPT_UINT:
	case OPT_DURATION:
		format_number(o, *(const uint64_t *)(const void *)(base + o->offset), buf, len);
		return;
	}
}

void config_print(const struct srv_config *cfg, FILE *out)
{
	char buf[1100];
	for (size_t i = 0; i < NOPTS; i++) {
		format_value(cfg, &opts[i], buf, sizeof(buf));
		fprintf(out, "%s =%s%s\n", opts[i].name, buf[0] != '\0' ? " " : "", buf);
	}
}

static void format_bounds(const struct opt *o, char *buf, size_t len)
{
	char lo[32], hi[32];
	switch (o->type) {
	case OPT_STRING:
		snprintf(buf, len, "at most %zu bytes", o->size - 1);
		return;
	case OPT_LEVEL:
		snprintf(buf, len, "debug, info, warn or error");
		return;
	case OPT_BOOL:
		snprintf(buf, len, "true or false");
		return;
	case OPT_SIZE:
	case OPT_UINT:
	case OPT_DURATION:
		format_number(o, o->min, lo, sizeof(lo));
		format_number(o, o->max, hi, sizeof(hi));
		snprintf(buf, len, "%s..%s", lo, hi);
		return;
	}
}

void config_example(FILE *out)
{
	char bounds[80];
	fputs("# whizbangd's configuration file: the annotated example.\n"
	      "#\n"
	      "# Use it with `whizbangd --config FILE`; no file is read without --config.\n"
	      "# Keys are the long command-line options without \"--\"; settings given as\n"
	      "# flags win over the file, which wins over the defaults. Every key below is\n"
	      "# commented out and shows its default: remove the '#' to change one.\n"
	      "# Sizes take K, M, G or T (powers of 1024); durations take ms, s, m, h or d\n"
	      "# (plain digits are milliseconds). A line starting with '#' or ';' is a\n"
	      "# comment. Check a file with `whizbangd --config FILE --check-config`.\n"
	      "#\n"
	      "# This file is generated from the table in server/config.c (config_example);\n"
	      "# tests/test_config.c fails when they differ.\n"
	      "\n"
	      "[whizbangd]\n",
	      out);
	for (size_t i = 0; i < NOPTS; i++) {
		format_bounds(&opts[i], bounds, sizeof(bounds));
		/* The meaning, wrapped at 76 columns. */
		const char *h = opts[i].help;
		fputc('\n', out);
		while (*h != '\0') {
			size_t n = strlen(h);
			if (n > 74) {
				n = 74;
				while (n > 0 && h[n] != ' ')
					n--;
			}
			fprintf(out, "# %.*s%s\n", (int)n, h, h[n] == '\0' ? "." : "");
			h += n + (h[n] == ' ');
		}
		fprintf(out, "# Default: %s. Bounds: %s.\n#%s =%s%s\n",
		        opts[i].dflt[0] != '\0' ? opts[i].dflt : "none", bounds, opts[i].name,
		        opts[i].dflt[0] != '\0' ? " " : "", opts[i].dflt);
	}
}

size_t config_option_count(void)
{
	return NOPTS;
}

const char *config_option_name(size_t i)
{
	return i < NOPTS ? opts[i].name : NULL;
}

const char *config_option_default(size_t i)
{
	return i < NOPTS ? opts[i].dflt : NULL;
}
