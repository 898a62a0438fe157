/* whizbangd's configuration: one table of settings with their defaults and
 * checked bounds (server/config.c), filled from defaults and then from the
 * command line. */
#ifndef WB_CONFIG_H
#define WB_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct srv_config {
	char listen[256];
	char data_dir[1024];
	char port_file[1024];
	char metrics_listen[256];
	uint64_t map_size;
	uint64_t max_frame;
	uint64_t max_connections;
	uint64_t max_read_count;
	uint64_t max_append_events;
	uint64_t max_output;
	uint64_t max_inflight;
	uint64_t frame_timeout_ms;
	uint64_t shutdown_timeout_ms;
	uint64_t lease_max_lifetime_ms;
	uint64_t lease_grace_ms;
	uint64_t lease_max_ms;
	uint64_t lease_default_ms;
	uint64_t cascade_threshold;
	uint64_t max_leases;
	uint64_t max_leases_per_connection;
	uint64_t max_lease_count;
	uint64_t lease_reserve_chunk;
	uint64_t max_scan;
	uint64_t max_query_count;
	uint64_t max_subscriptions_per_connection;
	uint64_t max_consumer_groups;
	uint64_t max_consumer_members;
	uint64_t consumer_window;
	int log_level;
};

/* Fills cfg with every default. */
void config_defaults(struct srv_config *cfg);

/* Applies the command-line options argv[1..argc) to cfg. Returns 0, 1 when
 * the process should exit 0 (--help, --version; the text is printed), or -1
 * with a sentence in errmsg for a bad option or value. */
int config_parse_args(struct srv_config *cfg, int argc, char **argv, char *errmsg, size_t errlen);

/* Prints the usage text, with every option, its bounds and its default. */
void config_usage(FILE *out);

#endif
