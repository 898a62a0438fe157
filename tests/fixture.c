/* Unit-test fixtures (see fixture.h). */
#include "fixture.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define HAVE_VALGRIND_H 1
#endif
#endif

#include "wb_error.h"

void fixture_setup(struct fixture *fx, const char *tag)
{
	char tmpl[FIXTURE_PATH_MAX];
	int n = snprintf(tmpl, sizeof(tmpl), "/tmp/wb-test-%s-XXXXXX", tag);
	fx->root[0] = '\0';
	cr_assert(n > 0 && (size_t)n < sizeof(tmpl), "fixture: tag \"%s\" is too long", tag);
	cr_assert_not_null(mkdtemp(tmpl), "fixture: mkdtemp(%s): %s", tmpl, strerror(errno));
	memcpy(fx->root, tmpl, (size_t)n + 1);
}

/* nftw() passes no argument to its callback: the first failure is kept
 * here for fixture_teardown() to report. */
static char remove_failed[FIXTURE_PATH_MAX * 2];
static int remove_errno;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) == 0)
		return 0;
	remove_errno = errno;
	snprintf(remove_failed, sizeof(remove_failed), "%s", path);
	return 1;
}

void fixture_teardown(struct fixture *fx)
{
	if (fx->root[0] == '\0')
		return;
	remove_failed[0] = '\0';
	remove_errno = 0;
	int rc = nftw(fx->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	int walk_errno = errno;
	char root[FIXTURE_PATH_MAX];
	memcpy(root, fx->root, sizeof(root));
	fx->root[0] = '\0';
	if (rc == 0)
		return;
	if (remove_failed[0] != '\0')
		cr_log_error("fixture: cannot remove %s: %s", remove_failed,
		             strerror(remove_errno));
	else
		cr_log_error("fixture: cannot walk %s: %s", root, strerror(walk_errno));
	/* Criterion only prints an assertion that fails in a .fini; exiting
	 * makes the run fail ("exited during its setup or teardown"). */
	exit(EXIT_FAILURE);
}

char *fixture_path(const struct fixture *fx, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", fx->root, name);
	cr_assert(n > 0 && (size_t)n < len, "fixture: %s/%s does not fit in %zu bytes", fx->root,
	          name, len);
	return buf;
}

struct storage *fixture_open(const struct fixture *fx, const char *name,
                             const struct storage_options *opts)
{
	cr_assert_null(opts->path, "fixture_open: opts->path is set; name the store instead");
	char path[FIXTURE_PATH_MAX * 2];
	struct storage_options o = *opts;
	o.path = name != NULL ? fixture_path(fx, name, path, sizeof(path)) : fx->root;
	struct storage *s = NULL;
	char errmsg[256] = "";
	int rc = storage_open(&s, &o, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "storage_open(%s): %s (%s)", o.path, wb_strerror(rc), errmsg);
	cr_assert_not_null(s, "storage_open(%s) returned 0 and no store", o.path);
	return s;
}

bool fixture_under_valgrind(void)
{
#ifdef HAVE_VALGRIND_H
	if (RUNNING_ON_VALGRIND)
		return true;
#endif
	const char *p = getenv("LD_PRELOAD");
	return p != NULL && strstr(p, "vgpreload") != NULL;
}

char *fixture_repo_path(const char *rel, char *buf, size_t len)
{
	const char *me = __FILE__;
	const char *slash = strrchr(me, '/');
	int dir = slash != NULL ? (int)(slash - me) : 0;
	snprintf(buf, len, "%.*s%s../%s", dir, me, slash != NULL ? "/" : "", rel);
	return buf;
}

char *fixture_repo_text(const char *rel)
{
	char path[1024];
	fixture_repo_path(rel, path, sizeof(path));
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s (the build directory must be the cwd)", path);
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	cr_assert_not_null(m);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, m);
	fclose(f);
	fclose(m);
	return text;
}

long long fixture_proc_number(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	char line[256];
	size_t klen = strlen(key);
	long long n = -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ':' &&
		    sscanf(line + klen + 1, "%lld", &n) == 1)
			break;
	fclose(f);
	return n;
}

uint64_t fixture_splitmix(void *state)
{
	uint64_t *s = state;
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

uint64_t fixture_xorshift(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * UINT64_C(2685821657736338717);
}

uint64_t fixture_walk_start(struct fixture_walk *w, const char *name, uint64_t seed_offset)
{
	uint64_t base;
	const char *env = getenv("WB_SEED");
	if (env != NULL && *env != '\0') {
		base = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		base = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec;
	}
	*w = (struct fixture_walk){.seed = base + seed_offset, .seed_offset = seed_offset};
	cr_log_info("%s: seed %llu (replay with WB_SEED=%llu)", name, (unsigned long long)w->seed,
	            (unsigned long long)base);
	return w->seed;
}

bool fixture_clock_step(const struct fixture_clock *c, uint64_t *now, uint64_t *rng)
{
	uint64_t pick = fixture_splitmix(rng) % 100;
	if (pick < c->step_pct) {
		*now += fixture_splitmix(rng) % c->step;
		return false;
	}
	if (pick < (uint64_t)c->step_pct + c->jump_pct) {
		*now += 1000 + fixture_splitmix(rng) % c->jump;
		return false;
	}
	*now -= 1 + fixture_splitmix(rng) % c->jump;
	return true;
}

struct storage_txn *fixture_txn(struct storage *st, struct storage_txn *parent, unsigned flags)
{
	struct storage_txn *t = NULL;
	int rc = storage_txn_begin(st, parent, flags, &t);
	cr_assert_eq(rc, 0, "storage_txn_begin: %s", wb_error_name(rc));
	return t;
}

void fixture_commit(struct storage_txn *t)
{
	int rc = storage_txn_commit(t);
	cr_assert_eq(rc, 0, "storage_txn_commit: %s", wb_error_name(rc));
}
