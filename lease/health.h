/* Health figures of the ledger (DESIGN.md §6, "Metrics and health"): gaps,
 * final entries waiting above the watermark, their commit-to-apply wait,
 * and a verdict over the last hour by the seed design's thresholds.
 *
 * One struct health_figures holds the figures of one scope: the whole
 * server, or one projection. The lease coordinator (coord.h) feeds them as
 * entries become durable and applied; Stats and the metrics read them.
 *
 * Pure: no libuv, no clock. Time comes in as now_ms (the monotonic clock the
 * coordinator is driven with); the last hour is kept in minute buckets. A
 * clock that goes back only makes buckets look older or newer, never an
 * out-of-bounds access. Loop thread only. */
#ifndef WB_HEALTH_H
#define WB_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Minute buckets of the health window (one hour). */
#define HEALTH_MINUTES 60u

struct health_minute {
	uint64_t minute; /* now_ms / 60000 of the minute the bucket holds */
	uint64_t committed;
	uint64_t expired;
	uint64_t gaps;
	uint64_t wait_sum_ms;
	uint64_t wait_count;
};

struct health_figures {
	uint64_t gaps;    /* gap entries made durable since start */
	uint64_t waiting; /* final entries durable above the watermark */
	uint64_t wait_sum_ms, wait_count, wait_max_ms;
	struct health_minute minutes[HEALTH_MINUTES];
};

/* A lease expired (it becomes a gap or a recovered entry). */
void health_expired(struct health_figures *f, uint64_t now_ms);

/* A final entry became durable: a gap (gap true) or an entry with a result
 * (committed, or recovered from staged work or resequenced). */
void health_durable(struct health_figures *f, bool gap, uint64_t now_ms);

/* A durable final entry waits above the watermark (paired with one
 * health_applied() call later). */
void health_waiting(struct health_figures *f);

/* A waiting entry was applied (the watermark passed it) wait_ms after it
 * became durable. Gaps count only as no longer waiting. */
void health_applied(struct health_figures *f, bool gap, uint64_t wait_ms, uint64_t now_ms);

/* The mean commit-to-apply wait in ms (0 with none). */
double health_wait_mean(const struct health_figures *f);

/* committed / (committed + expired); 1 with no history. */
double health_efficiency(uint64_t committed, uint64_t expired);

/* Judges the last hour at now_ms, with active the leases held now: returns
 * "ok", or "degraded" with the reasons (expiry rate over 5%, mean apply wait
 * over 5 s, more than 1000 active leases, more than 100 gaps), separated by
 * "; ", written into reason (always NUL-terminated; "" when ok). */
const char *health_judge(const struct health_figures *f, uint64_t active, uint64_t now_ms,
                         char *reason, size_t reason_len);

#endif
