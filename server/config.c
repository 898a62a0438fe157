#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "wb_version.h"

enum opt_type { OPT_STRING, OPT_SIZE, OPT_UINT, OPT_DURATION, OPT_LEVEL };

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
        {"port-file", STR(port_file), 0, 0, "", "write the bound port to this file once listening"},
        {"metrics-listen", STR(metrics_listen), 0, 0, "127.0.0.1:7412",
         "HTTP address of /metrics and /health (\"off\": none; port 0: any free port)"},
        {"map-size", NUM(OPT_SIZE, map_size), 1 * MIB, 16 * TIB, "64M",
         "initial LMDB map size; the map grows automatically"},
        {"max-frame", NUM(OPT_SIZE, max_frame), 4 * KIB, 64 * MIB, "4M",
         "largest request frame accepted"},
        {"max-connections", NUM(OPT_UINT, max_connections), 1, 100000, "1024",
         "concurrent client connections"},
        {"max-read-count", NUM(OPT_UINT, max_read_count), 1, 100000, "1000",
         "most events one read answers"},
        {"max-append-events", NUM(OPT_UINT, max_append_events), 1, 100000, "10000",
         "most events in one append"},
        {"max-output-per-connection", NUM(OPT_SIZE, max_output), 64 * KIB, 4 * GIB, "16M",
         "queued response bytes before a client is paused"},
        {"max-inflight", NUM(OPT_UINT, max_inflight), 1, 1000000, "1024",
         "writes in flight per connection before it is paused"},
        {"frame-timeout-ms", NUM(OPT_UINT, frame_timeout_ms), 10, 3600000, "30000",
         "time a started frame may take to arrive"},
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
        {"max-lease-count", NUM(OPT_UINT, max_lease_count), 1, 1024, "1024",
         "most sequences one Lease may ask for"},
        {"lease-reserve-chunk", NUM(OPT_UINT, lease_reserve_chunk), 1, 1000000, "1000",
         "sequences reserved ahead with each durable ceiling write"},
        {"max-scan", NUM(OPT_UINT, max_scan), 0, 1000000000, "100000",
         "most entities a where clause may scan without an index (QUERY_TOO_EXPENSIVE)"},
        {"max-query-count", NUM(OPT_UINT, max_query_count), 1, 100000, "1000",
         "most entities one QueryEntities answers"},
        {"max-subscriptions-per-connection", NUM(OPT_UINT, max_subscriptions_per_connection), 1,
         100000, "64", "catch-up subscriptions one connection may hold"},
        {"max-consumer-groups", NUM(OPT_UINT, max_consumer_groups), 1, 1000000, "1024",
         "durable consumer groups the server keeps"},
        {"max-consumer-members", NUM(OPT_UINT, max_consumer_members), 1, 65536, "1024",
         "members one consumer group may have at once"},
        {"consumer-window", NUM(OPT_UINT, consumer_window), 16, 10000000, "10000",
         "events a consumer group holds between its checkpoint and its reading position"},
        {"log-level", NUM(OPT_LEVEL, log_level), 0, 3, "info", "debug, info, warn or error"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Parses a byte size: digits with an optional K, M, G or T suffix (powers
 * of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	uint64_t mul = 1;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mul = KIB;
		end++;
		break;
	case 'm':
	case 'M':
		mul = MIB;
		end++;
		break;
	case 'g':
	case 'G':
		mul = GIB;
		end++;
		break;
	case 't':
	case 'T':
		mul = TIB;
		end++;
		break;
	default:
		return -1;
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' && end[1] == 'B' ? 2 : 1;
	if (*end != '\0' || (v != 0 && mul > UINT64_MAX / v))
		return -1;
	*out = v * mul;
	return 0;
}

/* Parses a duration: digits with an optional unit ms, s, m or h; plain
 * digits are milliseconds. */
static int parse_duration(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s < '0' || *s > '9')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	uint64_t mul;
	if (*end == '\0' || strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -1;
	if (v != 0 && mul > UINT64_MAX / v)
		return -1;
	*out = v * mul;
	return 0;
}

static int set_opt(struct srv_config *cfg, const struct opt *o, const char *value, char *errmsg,
                   size_t errlen)
{
	char *base = (char *)cfg;
	uint64_t v;

	switch (o->type) {
	case OPT_STRING:
		if (strlen(value) >= o->size) {
			snprintf(errmsg, errlen, "--%s: the value is longer than %zu bytes",
			         o->name, o->size - 1);
			return -1;
		}
		memcpy(base + o->offset, value, strlen(value) + 1);
		return 0;
	case OPT_LEVEL: {
		int level = log_parse_level(value);
		if (level < 0) {
			snprintf(errmsg, errlen,
			         "--%s: '%s' is not one of debug, info, warn, error", o->name,
			         value);
			return -1;
		}
		*(int *)(void *)(base + o->offset) = level;
		return 0;
	}
	case OPT_DURATION:
	case OPT_SIZE:
	case OPT_UINT: {
		bool bad = o->type == OPT_DURATION
		                   ? parse_duration(value, &v) != 0
		                   : parse_size(value, &v) != 0 ||
		                             (o->type == OPT_UINT &&
		                              strspn(value, "0123456789") != strlen(value));
		if (bad) {
			snprintf(errmsg, errlen, "--%s: '%s' is not a %s", o->name, value,
			         o->type == OPT_SIZE ? "size (digits with an optional K, M, G or T)"
			         : o->type == OPT_DURATION
			                 ? "duration (digits with an optional ms, s, m "
			                   "or h)"
			                 : "whole number");
			return -1;
		}
		if (v < o->min || v > o->max) {
			snprintf(errmsg, errlen, "--%s: %llu is outside %llu..%llu", o->name,
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

void config_defaults(struct srv_config *cfg)
{
	char errmsg[256];
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NOPTS; i++)
		if (set_opt(cfg, &opts[i], opts[i].dflt, errmsg, sizeof(errmsg)) != 0)
			abort(); /* a default outside its own bounds is a bug */
}

void config_usage(FILE *out)
{
	fprintf(out,
	        "usage: whizbangd [--OPTION VALUE]...\n\n"
	        "whizbangd %s: the Whizbang event-store server.\n\nOptions:\n",
	        WB_VERSION);
	for (size_t i = 0; i < NOPTS; i++)
		fprintf(out, "  --%-27s %s (default: %s)\n", opts[i].name, opts[i].help,
		        opts[i].dflt[0] != '\0' ? opts[i].dflt : "none");
	fprintf(out, "  --%-27s %s\n  --%-27s %s\n", "help", "print this text and exit", "version",
	        "print the version and exit");
}

int config_parse_args(struct srv_config *cfg, int argc, char **argv, char *errmsg, size_t errlen)
{
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
			snprintf(errmsg, errlen, "unexpected argument '%s' (options start with --)",
			         arg);
			return -1;
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
		const struct opt *o = NULL;
		for (size_t k = 0; k < NOPTS; k++)
			if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, name, nlen) == 0)
				o = &opts[k];
		if (o == NULL) {
			snprintf(errmsg, errlen, "unknown option '--%.*s' (see --help)", (int)nlen,
			         name);
			return -1;
		}
		const char *value = eq != NULL ? eq + 1 : NULL;
		if (value == NULL) {
			if (i + 1 >= argc) {
				snprintf(errmsg, errlen, "--%s needs a value", o->name);
				return -1;
			}
			value = argv[++i];
		}
		if (set_opt(cfg, o, value, errmsg, errlen) != 0)
			return -1;
	}
	return 0;
}
