#include "bench.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "parse.h"
#include "wb_error.h"

/* From <linux/magic.h>, spelled out so that the bench builds without kernel
 * headers. */
#define TMPFS_MAGIC_ 0x01021994L
#define RAMFS_MAGIC_ 0x858458f6L

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void bench_rng_seed(struct bench_rng *r, uint64_t salt)
{
	uint64_t seed = 0;
	/* Falling back to the clock is fine: the ids only have to differ
	 * between runs against the same data directory, and each run starts
	 * with a fresh one unless --server is given. */
	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		seed = bench_now_ns() ^ ((uint64_t)getpid() << 32);
	r->s = seed ^ (salt * 0x9e3779b97f4a7c15u);
}

uint64_t bench_rng_next(struct bench_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

void bench_rng_fill(struct bench_rng *r, uint8_t *buf, size_t len)
{
	while (len >= 8) {
		uint64_t v = bench_rng_next(r);
		memcpy(buf, &v, 8);
		buf += 8;
		len -= 8;
	}
	if (len > 0) {
		uint64_t v = bench_rng_next(r);
		memcpy(buf, &v, len);
	}
}

void bench_ids_seed(struct bench_ids *ids, uint64_t salt, bool random)
{
	bench_rng_seed(&ids->rng, salt);
	ids->counter = bench_rng_next(&ids->rng) >> 8;
	ids->random = random;
}

void bench_ids_fill(struct bench_ids *ids, uint8_t *out, size_t n, size_t stride)
{
	if (ids->random) {
		for (size_t i = 0; i < n; i++)
			bench_rng_fill(&ids->rng, out + i * stride, 16);
		return;
	}
	uint64_t ms = bench_wall_us() / 1000u;
	for (size_t i = 0; i < n; i++) {
		uint8_t *id = out + i * stride;
		uint64_t c = ids->counter++;
		for (int b = 0; b < 6; b++)
			id[b] = (uint8_t)(ms >> (40 - 8 * b));
		id[6] = (uint8_t)(0x70u | (c >> 60));
		id[7] = (uint8_t)(c >> 52);
		id[8] = (uint8_t)(0x80u | ((c >> 46) & 0x3fu));
		uint64_t low = (c & ((UINT64_C(1) << 46) - 1)) << 10; /* 56 bits */
		for (int b = 9; b < 16; b++)
			id[b] = (uint8_t)(low >> (48 - 8 * (b - 9)));
	}
}

int bench_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	return parse_u64_in(text, PARSE_COUNT, min, max, out);
}

atomic_bool bench_interrupted;

static void interrupt_cb(int sig)
{
	(void)sig;
	atomic_store(&bench_interrupted, true);
}

void bench_sigint_catch(struct sigaction *old)
{
	struct sigaction sa = {.sa_handler = interrupt_cb, .sa_flags = SA_RESETHAND};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, old);
}

void bench_sigint_restore(const struct sigaction *old)
{
	sigaction(SIGINT, old, NULL);
}

bool bench_on_tmpfs(const char *path)
{
	struct statfs sf;
	if (statfs(path, &sf) != 0)
		return false;
	return (long)sf.f_type == TMPFS_MAGIC_ || (long)sf.f_type == RAMFS_MAGIC_;
}

static int pick_parent(const char *parent, char *out, size_t len, char *errmsg, size_t errlen)
{
	const char *dir = parent;
	if (dir == NULL)
		dir = bench_on_tmpfs("/tmp") ? "/var/tmp" : "/tmp";
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(errmsg, errlen, "%s is not a directory", dir);
		return WB_E_INVAL;
	}
	if ((size_t)snprintf(out, len, "%s", dir) >= len) {
		snprintf(errmsg, errlen, "the path %s is too long", dir);
		return WB_E_INVAL;
	}
	if (bench_on_tmpfs(dir))
		fprintf(stderr,
		        "whizbang-bench: warning: %s is on tmpfs; fsync is free there and the "
		        "figures say nothing about a disk\n",
		        dir);
	return 0;
}

static int make_temp_dir(const char *parent, char *out, size_t len, char *errmsg, size_t errlen)
{
	if ((size_t)snprintf(out, len, "%s/whizbang-bench.XXXXXX", parent) >= len) {
		snprintf(errmsg, errlen, "the path %s is too long", parent);
		return WB_E_INVAL;
	}
	if (mkdtemp(out) == NULL) {
		snprintf(errmsg, errlen, "cannot create a directory under %s: %s", parent,
		         strerror(errno));
		return WB_E_IO;
	}
	return 0;
}

int bench_make_root(const char *data_dir, char parent_out[BENCH_PATH_MAX], char out[BENCH_PATH_MAX])
{
	char errmsg[BENCH_ERRMSG_MAX];
	int rc = pick_parent(data_dir, parent_out, BENCH_PATH_MAX, errmsg, sizeof(errmsg));
	if (rc == 0)
		rc = make_temp_dir(parent_out, out, BENCH_PATH_MAX, errmsg, sizeof(errmsg));
	if (rc != 0) {
		fprintf(stderr, "whizbang-bench: %s\n", errmsg);
		return 1;
	}
	return 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int rc = (flag == FTW_DP) ? rmdir(path) : unlink(path);
	return rc == 0 || errno == ENOENT ? 0 : -1;
}

int bench_rmtree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : WB_E_IO;
	return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : WB_E_IO;
}

void bench_stream_name(uint32_t i, char out[BENCH_STREAM_MAX])
{
	snprintf(out, BENCH_STREAM_MAX, BENCH_STREAM_FMT, i);
}

uint64_t bench_map_size(uint64_t events, uint32_t size)
{
	/* Per event: a 44-byte header, the stream name and type and the data
	 * in "events", 24 bytes of key and value in "stream_events" and in
	 * "event_ids", and LMDB's node headers. Randomly keyed pages are about
	 * two thirds full, and copy-on-write keeps up to two versions of the
	 * tree alive, so the estimate is doubled and padded. */
	uint64_t per_event = 44u + BENCH_STREAM_MAX + sizeof(BENCH_EVENT_TYPE) + size + 200u;
	uint64_t bytes = events * per_event * 2u + (256u << 20);
	return (bytes + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
}

void bench_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

double bench_cpu_seconds(int who)
{
	struct rusage ru;
	if (getrusage(who, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

double bench_pct_us(const uint64_t *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	double rank = ceil(q * (double)n);
	size_t i = rank < 1 ? 0 : (size_t)rank - 1;
	if (i >= n)
		i = n - 1;
	return (double)sorted[i] / 1e3;
}

int bench_lat_push(struct bench_lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap != 0 ? l->cap * 2 : 1024;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return WB_E_NOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
	return 0;
}

int bench_lat_take(struct bench_lat *to, struct bench_lat *from)
{
	if (to->n + from->n > to->cap) {
		size_t cap = to->n + from->n;
		uint64_t *v = realloc(to->v, (cap > 0 ? cap : 1) * sizeof(*v));
		if (v == NULL)
			return WB_E_NOMEM;
		to->v = v;
		to->cap = cap;
	}
	if (from->n > 0)
		memcpy(to->v + to->n, from->v, from->n * sizeof(*from->v));
	to->n += from->n;
	bench_lat_free(from);
	return 0;
}

void bench_lat_free(struct bench_lat *l)
{
	free(l->v);
	*l = (struct bench_lat){0};
}

void bench_lat_summarize(struct bench_lat *l, struct bench_lat_summary *out)
{
	qsort(l->v, l->n, sizeof(*l->v), bench_cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < l->n; i++)
		sum += (double)l->v[i];
	out->n = l->n;
	out->p50 = bench_pct_us(l->v, l->n, 0.50);
	out->p99 = bench_pct_us(l->v, l->n, 0.99);
	out->p999 = bench_pct_us(l->v, l->n, 0.999);
	out->max = l->n > 0 ? (double)l->v[l->n - 1] / 1e3 : 0;
	out->mean = l->n > 0 ? sum / (double)l->n / 1e3 : 0;
}

/* The middle of bucket i of a bench_hist, in nanoseconds. */
static double hist_value(uint32_t i)
{
	if (i < (2u << BENCH_HIST_SUB_BITS))
		return i;
	uint32_t shift = (i >> BENCH_HIST_SUB_BITS) - 1;
	uint64_t m = (1u << BENCH_HIST_SUB_BITS) + (i & ((1u << BENCH_HIST_SUB_BITS) - 1));
	return ((double)(m << shift) + (double)((m + 1) << shift) - 1) / 2;
}

static double hist_pct_us(const struct bench_hist *h, double q)
{
	if (h->n == 0)
		return 0;
	double r = ceil(q * (double)h->n);
	uint64_t rank = r < 1 ? 1 : (uint64_t)r;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			double v = hist_value(i);
			return (v < (double)h->max ? v : (double)h->max) / 1e3;
		}
	}
	return (double)h->max / 1e3;
}

void bench_hist_summarize(const struct bench_hist *h, struct bench_lat_summary *out)
{
	out->n = (size_t)h->n;
	out->p50 = hist_pct_us(h, 0.50);
	out->p99 = hist_pct_us(h, 0.99);
	out->p999 = hist_pct_us(h, 0.999);
	out->max = (double)h->max / 1e3;
	out->mean = h->n > 0 ? (double)h->sum / (double)h->n / 1e3 : 0;
}

void bench_j_key(struct bench_jw *j, const char *key)
{
	if (!j->first)
		fputc(',', stdout);
	j->first = false;
	printf("\"%s\":", key);
}

void bench_j_open(struct bench_jw *j, const char *key)
{
	if (key != NULL)
		bench_j_key(j, key);
	fputc('{', stdout);
	j->first = true;
}

void bench_j_close(struct bench_jw *j)
{
	fputc('}', stdout);
	j->first = false;
}

void bench_j_u64(struct bench_jw *j, const char *key, uint64_t v)
{
	bench_j_key(j, key);
	printf("%llu", (unsigned long long)v);
}

void bench_j_num(struct bench_jw *j, const char *key, double v)
{
	bench_j_key(j, key);
	if (isfinite(v))
		printf("%.3f", v);
	else
		fputs("null", stdout);
}

void bench_j_str(struct bench_jw *j, const char *key, const char *v)
{
	bench_j_key(j, key);
	bench_json_str(stdout, v);
}

void bench_j_lit(struct bench_jw *j, const char *key, const char *literal)
{
	bench_j_key(j, key);
	fputs(literal, stdout);
}

void bench_j_lat(struct bench_jw *j, const char *key, const struct bench_lat_summary *s)
{
	bench_j_open(j, key);
	bench_j_u64(j, "n", s->n);
	bench_j_num(j, "p50", s->p50);
	bench_j_num(j, "p99", s->p99);
	bench_j_num(j, "p999", s->p999);
	bench_j_num(j, "max", s->max);
	bench_j_num(j, "mean", s->mean);
	bench_j_close(j);
}
