/* whizbangd's configuration: one table of settings with their defaults and
 * checked bounds (server/config.c), filled from the defaults, then from the
 * config file (--config FILE, INI, parsed by libinih), then from the command
 * line. The file and the flags go through the same table and the same value
 * parsers. */
#ifndef WB_CONFIG_H
#define WB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The longest path a Unix domain socket can be bound to (sun_path, less
 * its NUL). */
#define CONFIG_UNIX_PATH_MAX 107u

struct srv_config {
	char listen[256];
	char data_dir[1024];
	/* Where Backup writes ("" when it is off): an absolute path
	 * (config_validate); the server checks the directory at start. */
	char backup_dir[1024];
	char port_file[1024];
	char metrics_listen[256];
	uint64_t map_size;
	uint64_t max_frame;
	uint64_t max_unauth_frame;
	uint64_t max_connections;
	uint64_t max_connections_per_address;
	uint64_t max_bytes_per_s;
	uint64_t max_connections_per_identity;
	uint64_t max_identity_requests_per_s;
	uint64_t max_identity_bytes_per_s;
	uint64_t refusal_backoff_ms;
	uint64_t max_read_count;
	uint64_t max_append_events;
	uint64_t max_output;
	uint64_t memory_budget; /* 0: from the machine's memory (srv_init) */
	uint64_t push_buffer;
	uint64_t max_inflight;
	uint64_t frame_timeout_ms;
	uint64_t idle_timeout_ms;
	uint64_t tcp_keepalive_ms;
	uint64_t keepalive_ms;
	uint64_t shutdown_timeout_ms;
	uint64_t lease_max_lifetime_ms;
	uint64_t lease_grace_ms;
	uint64_t lease_max_ms;
	uint64_t lease_default_ms;
	uint64_t cascade_threshold;
	uint64_t max_leases;
	uint64_t max_leases_per_connection;
	uint64_t max_leases_per_identity;
	uint64_t max_lease_count;
	uint64_t lease_reserve_chunk;
	uint64_t max_scan;
	uint64_t max_candidates;
	uint64_t max_query_bytes;
	uint64_t max_explosion_bytes; /* index entries one where clause's plan may read */
	/* The where-clause size limits (eval.h, struct proj_where_limits),
	 * checked when a clause is admitted, never when it is applied. */
	uint64_t max_where_terms;
	uint64_t max_where_depth;
	uint64_t max_where_in_list;
	uint64_t max_where_bytes;
	uint64_t max_where_literal;
	uint64_t max_query_count;
	uint64_t max_queries_queued;
	uint64_t max_queries_per_connection;
	uint64_t max_subscriptions_per_connection;
	uint64_t max_subscriptions_per_identity;
	uint64_t max_consumer_groups;
	uint64_t max_consumer_groups_per_identity;
	uint64_t max_consumer_members;
	uint64_t consumer_window;
	char durability[8]; /* "log" or "sync" (config_validate) */
	uint64_t checkpoint_bytes;
	uint64_t checkpoint_growth;
	uint64_t checkpoint_interval_ms;
	uint64_t wal_segment_size;
	uint64_t wal_spare_segments;
	bool unsafe_no_checkpoint_pin;
	bool unsafe_no_meta_restore;
	bool unsafe_ack_before_sync;
	/* The ledger-size harness's negative control: Commit and Stage ops and
	 * applied entries are not bounded by what one answer carries. */
	bool unsafe_unbounded_ledger_entries;
	int log_level;
	/* The log's limit per event (log.h: log_set_limit()); rate 0: none. */
	uint64_t log_rate;
	uint64_t log_burst;
	uint64_t log_summary_ms;
	/* Listening (or serving metrics) on a non-loopback address without TLS
	 * and authentication is refused unless this is set (config_validate). */
	bool insecure;
	/* The built-in role of a connection that has not authenticated, or
	 * "none" (config_validate). */
	char anonymous_role[16];
	/* The Unix domain socket to listen on: "auto" (DATA_DIR/whizbangd.sock),
	 * "off", or a path. */
	char unix_socket[1024];
	/* TLS (server/conn.c): "off", "auto" or "required", the PEM files, and
	 * whether clients are asked for certificates. */
	char tls[16];
	char tls_cert_file[1024];
	char tls_key_file[1024];
	char tls_ca_file[1024];
	char tls_client_cert[16];
	uint64_t tls_handshake_timeout_ms;
	uint64_t auth_failures_per_minute; /* per source address, then refused */
	uint64_t scram_iterations;         /* of mock credentials; the least a user's may have */

	/* Command-line only, not settings of the table: the file --config
	 * named ("" when none) and whether --check-config was given. */
	char config_file[1024];
	bool check_config;
};

/* Fills cfg with every default. */
void config_defaults(struct srv_config *cfg);

/* Applies the command line argv[1..argc) to cfg: first the file named by
 * `--config FILE` (when given; no file is read otherwise), then every other
 * option, so flags win over the file. Records --config and --check-config in
 * cfg. Returns 0, 1 when the process should exit 0 (--help, --version; the
 * text is printed), or -1 with the errors in errmsg (one per line; a file's
 * errors name the file, the line and the key). Does not apply
 * config_validate. */
int config_parse_args(struct srv_config *cfg, int argc, char **argv, char *errmsg, size_t errlen);

/* Applies the INI file at path to cfg. Keys are the long option names
 * without "--", either before any section or in a [whizbangd] section; other
 * sections, unknown keys, bad and out-of-bounds values, lines that are not
 * key = value and lines longer than libinih's buffer are errors. Every
 * error is reported as "PATH:LINE: KEY: reason", one per line, in errmsg
 * (truncated to errlen). Returns 0, or -1 when the file cannot be read or
 * holds any error; cfg may then hold some of the file's values. */
int config_load_file(struct srv_config *cfg, const char *path, char *errmsg, size_t errlen);

/* Checks the rules that span settings: durability is log or sync, and the
 * unsafe-* controls need log; memory-budget is 0 or at least twice
 * max-frame; backup-dir is empty or an absolute path (its
 * length is bounded by its buffer, as every string setting's is; the
 * directory itself is checked by the backup module at start); listening on
 * an address other than loopback (127.0.0.0/8, ::1, localhost) needs TLS
 * (a certificate, tls not off) and anonymous-role none, and metrics-listen
 * beyond loopback needs TLS (metrics.c then asks for a bearer token), unless
 * insecure is set.
 * Returns 0, or -1 with a sentence in errmsg. */
int config_validate(const struct srv_config *cfg, char *errmsg, size_t errlen);

/* Prints every setting of the table as "key = value", one a line, in the
 * table's order; the output is itself a valid config file. */
void config_print(const struct srv_config *cfg, FILE *out);

/* Prints the annotated example config file (deploy/whizbangd.conf): every
 * key commented out with its default, bounds and meaning. */
void config_example(FILE *out);

/* The table, for tests and docs: how many settings, and the long name (no
 * "--") and default text of setting i < config_option_count(). The strings
 * are static. */
size_t config_option_count(void);
const char *config_option_name(size_t i);
const char *config_option_default(size_t i);

/* Prints the usage text, with every option, its bounds and its default. */
void config_usage(FILE *out);

#endif
