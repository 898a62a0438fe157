#include "health.h"

#include <stdio.h>
#include <string.h>

/* The bucket of the current minute, emptied when it last held an older
 * (or, after the clock went back, a newer) minute. */
static struct health_minute *minute_now(struct health_figures *f, uint64_t now_ms)
{
	uint64_t m = now_ms / 60000;
	struct health_minute *b = &f->minutes[m % HEALTH_MINUTES];
	if (b->minute != m) {
		memset(b, 0, sizeof(*b));
		b->minute = m;
	}
	return b;
}

void health_expired(struct health_figures *f, uint64_t now_ms)
{
	minute_now(f, now_ms)->expired++;
}

void health_durable(struct health_figures *f, bool gap, uint64_t now_ms)
{
	if (gap) {
		f->gaps++;
		minute_now(f, now_ms)->gaps++;
	} else {
		minute_now(f, now_ms)->committed++;
	}
}

void health_waiting(struct health_figures *f)
{
	f->waiting++;
}

void health_applied(struct health_figures *f, bool gap, uint64_t wait_ms, uint64_t now_ms)
{
	f->waiting--;
	if (gap)
		return;
	f->wait_sum_ms += wait_ms;
	f->wait_count++;
	if (wait_ms > f->wait_max_ms)
		f->wait_max_ms = wait_ms;
	struct health_minute *m = minute_now(f, now_ms);
	m->wait_sum_ms += wait_ms;
	m->wait_count++;
}

double health_wait_mean(const struct health_figures *f)
{
	return f->wait_count > 0 ? (double)f->wait_sum_ms / (double)f->wait_count : 0.0;
}

double health_efficiency(uint64_t committed, uint64_t expired)
{
	return committed + expired == 0 ? 1.0 : (double)committed / (double)(committed + expired);
}

const char *health_judge(const struct health_figures *f, uint64_t active, uint64_t now_ms,
                         char *reason, size_t reason_len)
{
	uint64_t now_min = now_ms / 60000;
	uint64_t committed = 0, expired = 0, gaps = 0, wsum = 0, wcount = 0;
	for (size_t i = 0; i < HEALTH_MINUTES; i++) {
		const struct health_minute *m = &f->minutes[i];
		if (m->minute + HEALTH_MINUTES <= now_min || m->minute > now_min)
			continue;
		committed += m->committed;
		expired += m->expired;
		gaps += m->gaps;
		wsum += m->wait_sum_ms;
		wcount += m->wait_count;
	}
	char *r = reason;
	size_t cap = reason_len;
	size_t o = 0;
	r[0] = '\0';
	if (expired > 0 && expired * 20 > committed + expired && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%sexpiry rate %.1f%% > 5%%", o ? "; " : "",
		                      100.0 * (double)expired / (double)(committed + expired));
	if (wcount > 0 && wsum > 5000 * wcount && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%smean apply wait %.0f ms > 5000 ms",
		                      o ? "; " : "", (double)wsum / (double)wcount);
	if (active > 1000 && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%s%llu active leases > 1000", o ? "; " : "",
		                      (unsigned long long)active);
	if (gaps > 100 && o < cap)
		o += (size_t)snprintf(r + o, cap - o, "%s%llu gaps in the last hour > 100",
		                      o ? "; " : "", (unsigned long long)gaps);
	return o > 0 ? "degraded" : "ok";
}
