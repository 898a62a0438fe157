/* powercut: the power-cut harness (DESIGN.md §8, issue 11).
 *
 * For each of --runs traced runs (load.c), builds --images crash images
 * over many crash points (image.h has the model) and checks each one by
 * starting whizbangd on it (check.c), --jobs images at a time. Everything
 * random comes from the seed, which is printed; given the same trace, a
 * seed names the same images byte for byte. On a violation the run's
 * directory (trace, acks) and a fresh copy of the failing image are kept,
 * and the command that checks that one image again is printed.
 *
 * Exit status: 0 every image passed; 1 an image broke a promise (what a
 * negative control must produce); 99 the harness itself failed or the load
 * proved too little (meson reports an error, never a pass, even for a
 * should_fail test).
 *
 *   powercut --whizbangd PATH --interposer PATH [--seed N] [--runs N]
 *            [--images N] [--jobs N] [--drop-sync | --drop-fsync]
 *            [--server-flag F]...
 *            [--strict] [--keep] [--discard] [--work DIR]
 *
 * --drop-sync and --drop-fsync are the interposer's negative controls
 * (WB_PCUT_DROP_SYNC=1 and =fsync, interpose.c).
 * --strict counts a refusal to start as a violation when anything was
 * acknowledged at or before the crash point: a store that acknowledged
 * writes must open again after a power cut. Without it a server that exits
 * non-zero with a message refused the image, which the issue allows;
 * refusals are counted and the first ones printed either way. (A crash
 * while a new store is being made, before any answer, may leave one that
 * LMDB refuses: today's server does.)
 * --keep keeps the work directory even when every image held; --discard
 * removes it even after a violation (for the negative controls, whose
 * violations are expected).
 *   powercut --whizbangd PATH --reproduce RUN_DIR --point P --image-seed S
 *            [--server-flag F]...
 *
 * Environment: WB_PCUT_SEED (the seed), WB_PCUT_LONG=1 (the long mode: 8
 * runs of 2000 images), WB_PCUT_IMAGES, WB_PCUT_RUNS, WB_PCUT_JOBS. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "pcut.h"

#define EXIT_VIOLATION 1
#define EXIT_HARNESS 99
#define MAX_FLAGS 32
#define MAX_FAILURES 3
#define IMAGES_PER_POINT 4

struct opts {
	const char *whizbangd;
	const char *interposer;
	const char *flags[MAX_FLAGS + 1];
	size_t nflags;
	uint64_t seed;
	unsigned runs, images, jobs;
	const char *drop_sync;
	bool keep, discard, strict;
	const char *work;
	const char *reproduce;
	uint64_t point, image_seed;
	int kill_min_ms, kill_max_ms;
};

struct job {
	uint64_t point;
	uint64_t seed;
};

struct pool {
	const struct opts *o;
	const struct pcut_trace *trace;
	const struct pcut_run *run;
	const char *run_dir;
	struct job *jobs;
	size_t njobs;
	atomic_size_t next;
	atomic_uint failures;
	pthread_mutex_t mu;
	uint64_t ok, refused, checked;
	struct pcut_image_stats totals;
	char refusals[3][512];
	unsigned nrefusals;
	bool harness_failed;
};

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t mix(uint64_t a, uint64_t b)
{
	uint64_t s = a ^ (b * 0x9e3779b97f4a7c15ull);
	return pcut_rand(&s);
}

static void add_totals(struct pcut_image_stats *t, const struct pcut_image_stats *s)
{
	t->files += s->files;
	t->durable_ops += s->durable_ops;
	t->unsynced_writes += s->unsynced_writes;
	t->dropped += s->dropped;
	t->pages_new += s->pages_new;
	t->pages_old += s->pages_old;
	t->torn += s->torn;
	t->cut += s->cut;
	t->names_lost += s->names_lost;
}

static void print_flags(const struct opts *o, FILE *f)
{
	for (size_t i = 0; i < o->nflags; i++)
		fprintf(f, " --server-flag '%s'", o->flags[i]);
}

/* Builds and checks images until the jobs run out or enough failed. */
static void *worker_main(void *arg)
{
	struct pool *p = arg;
	static atomic_uint ids;
	unsigned id = atomic_fetch_add(&ids, 1);
	char scratch[1024], img[1100];
	snprintf(scratch, sizeof(scratch), "%s/worker-%u", p->run_dir, id);
	snprintf(img, sizeof(img), "%s/image", scratch);
	mkdir(scratch, 0750);
	for (;;) {
		size_t j = atomic_fetch_add(&p->next, 1);
		if (j >= p->njobs || atomic_load(&p->failures) >= MAX_FAILURES)
			break;
		const struct job *jb = &p->jobs[j];
		rm_rf(img);
		char why[2048] = "";
		struct pcut_image_stats st;
		enum pcut_verdict v = PCUT_HARNESS;
		if (mkdir(img, 0750) == 0 && pcut_image_build(p->trace, jb->point, jb->seed, img,
		                                              &st, why, sizeof(why)) == 0)
			v = pcut_check_image(p->o->whizbangd, p->o->flags, p->run, jb->point, img,
			                     scratch, why, sizeof(why));
		/* A store that acknowledged something must open again. */
		if (v == PCUT_REFUSED && p->o->strict && p->run->nacks > 0 &&
		    p->run->acks[0].stamp <= jb->point) {
			v = PCUT_VIOLATION;
			size_t n = strlen(why);
			snprintf(why + n, sizeof(why) - n,
			         " (with acknowledged writes at or before the crash point; "
			         "--strict)");
		}
		pthread_mutex_lock(&p->mu);
		p->checked++;
		if (v == PCUT_OK || v == PCUT_REFUSED)
			add_totals(&p->totals, &st);
		if (v == PCUT_OK) {
			p->ok++;
		} else if (v == PCUT_REFUSED) {
			p->refused++;
			if (p->nrefusals < 3)
				snprintf(p->refusals[p->nrefusals++], sizeof(p->refusals[0]),
				         "point %" PRIu64 ": %s", jb->point, why);
		} else {
			atomic_fetch_add(&p->failures, 1);
			if (v == PCUT_HARNESS)
				p->harness_failed = true;
			/* A pristine copy of the image (the server changed this one). */
			char keep[1200] = "not kept (--discard)";
			if (!p->o->discard) {
				snprintf(keep, sizeof(keep), "%s/failed-%" PRIu64 "-%016" PRIx64,
				         p->run_dir, jb->point, jb->seed);
				mkdir(keep, 0750);
				char err[512] = "";
				pcut_image_build(p->trace, jb->point, jb->seed, keep, NULL, err,
				                 sizeof(err));
			}
			fprintf(stderr,
			        "powercut: %s at crash point %" PRIu64 " of %" PRIu64
			        " (image seed %016" PRIx64 "):\n  %s\n"
			        "  image (as built, before the server opened it): %s\n"
			        "  server log: %s/server.log\n"
			        "  check it again: %s --whizbangd %s --reproduce %s --point "
			        "%" PRIu64 " --image-seed 0x%016" PRIx64,
			        v == PCUT_HARNESS ? "HARNESS FAILURE" : "VIOLATION", jb->point,
			        pcut_trace_ops(p->trace), jb->seed, why, keep, scratch, "powercut",
			        p->o->whizbangd, p->run_dir, jb->point, jb->seed);
			print_flags(p->o, stderr);
			fprintf(stderr, "\n");
		}
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

/* The crash points of a run: uniform ones, ones just before and just after
 * a sync (where durability changes), and the kill point itself. */
static struct job *plan_jobs(const struct pcut_trace *t, uint64_t seed, unsigned images,
                             size_t *njobs)
{
	uint64_t rng = seed;
	uint64_t n = pcut_trace_ops(t);
	const uint64_t *syncs;
	size_t nsyncs = pcut_trace_syncs(t, &syncs);
	size_t npoints = (images + IMAGES_PER_POINT - 1) / IMAGES_PER_POINT;
	struct job *jobs = calloc(npoints * IMAGES_PER_POINT, sizeof(*jobs));
	if (jobs == NULL)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < npoints; i++) {
		uint64_t r = pcut_rand(&rng) % 100, point;
		if (i == 0)
			point = n;
		else if (r < 40 || nsyncs == 0)
			point = 1 + pcut_rand(&rng) % n;
		else
			point = syncs[pcut_rand(&rng) % nsyncs] + (r < 70 ? 0 : 1);
		for (unsigned j = 0; j < IMAGES_PER_POINT && k < images; j++)
			jobs[k++] = (struct job){point, mix(seed, point * IMAGES_PER_POINT + j)};
	}
	*njobs = k;
	return jobs;
}

/* One traced run and its images. Returns the exit status it deserves. */
static int one_run(const struct opts *o, const char *work, unsigned r)
{
	uint64_t run_seed = mix(o->seed, r + 1);
	char dir[1100];
	snprintf(dir, sizeof(dir), "%s/run-%u", work, r);
	if (mkdir(dir, 0750) != 0) {
		fprintf(stderr, "powercut: mkdir %s: %s\n", dir, strerror(errno));
		return EXIT_HARNESS;
	}
	struct pcut_load_opts lo = {
	        .whizbangd = o->whizbangd,
	        .interposer = o->interposer,
	        .flags = o->flags,
	        .drop_sync = o->drop_sync,
	        .seed = run_seed,
	        .kill_min_ms = o->kill_min_ms,
	        .kill_max_ms = o->kill_max_ms,
	};
	struct pcut_run run;
	char err[1024] = "";
	int64_t t0 = pcut_now_ms();
	if (pcut_load_run(&lo, dir, &run, err, sizeof(err)) != 0) {
		fprintf(stderr, "powercut: run %u: %s (kept in %s)\n", r, err, dir);
		pcut_run_free(&run);
		return EXIT_HARNESS;
	}
	pcut_run_save(&run, dir);
	char trace_path[1200];
	snprintf(trace_path, sizeof(trace_path), "%s/trace", dir);
	struct pcut_trace *t = NULL;
	if (pcut_trace_load(trace_path, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "powercut: run %u: %s (kept in %s)\n", r, err, dir);
		pcut_run_free(&run);
		return EXIT_HARNESS;
	}
	size_t counts[7] = {0};
	for (size_t i = 0; i < run.nacks; i++)
		if (run.acks[i].kind < 7)
			counts[run.acks[i].kind]++;
	const uint64_t *syncs;
	size_t nsyncs = pcut_trace_syncs(t, &syncs);
	int64_t t1 = pcut_now_ms();
	printf("run %u: seed %016" PRIx64 ", %" PRIu64 " ops traced (%zu syncs) in %.1f s; "
	       "acknowledged: %zu appends, %zu leases, %zu commits, %zu releases, %zu consumer "
	       "acks\n",
	       r, run_seed, pcut_trace_ops(t), nsyncs, (double)(t1 - t0) / 1000.0,
	       counts[PCUT_ACK_APPEND], counts[PCUT_ACK_LEASE], counts[PCUT_ACK_COMMIT],
	       counts[PCUT_ACK_RELEASE], counts[PCUT_ACK_CHECKPOINT]);
	fflush(stdout);

	struct pool p = {
	        .o = o, .trace = t, .run = &run, .run_dir = dir, .mu = PTHREAD_MUTEX_INITIALIZER};
	p.jobs = plan_jobs(t, run_seed, o->images, &p.njobs);
	if (p.jobs == NULL) {
		pcut_trace_free(t);
		pcut_run_free(&run);
		return EXIT_HARNESS;
	}
	pthread_t tids[64];
	unsigned nj = o->jobs < 64 ? o->jobs : 64;
	for (unsigned i = 0; i < nj; i++)
		pthread_create(&tids[i], NULL, worker_main, &p);
	for (unsigned i = 0; i < nj; i++)
		pthread_join(tids[i], NULL);
	int64_t t2 = pcut_now_ms();
	size_t points = 0;
	for (size_t i = 0; i < p.njobs; i++)
		if (i == 0 || p.jobs[i].point != p.jobs[i - 1].point)
			points++;
	printf("run %u: %" PRIu64 " images checked over %zu crash points in %.1f s: %" PRIu64
	       " opened and held, %" PRIu64 " refused, %u failed\n",
	       r, p.checked, points, (double)(t2 - t1) / 1000.0, p.ok, p.refused,
	       atomic_load(&p.failures));
	printf("run %u: unsynced writes %" PRIu64 " (%" PRIu64 " dropped whole), 4 KiB pieces "
	       "%" PRIu64 " new / %" PRIu64 " old / %" PRIu64 " torn, %" PRIu64
	       " tails cut, %" PRIu64 " name ops lost\n",
	       r, p.totals.unsynced_writes, p.totals.dropped, p.totals.pages_new,
	       p.totals.pages_old, p.totals.torn, p.totals.cut, p.totals.names_lost);
	for (unsigned i = 0; i < p.nrefusals; i++)
		printf("run %u: %s\n", r, p.refusals[i]);
	fflush(stdout);
	int status = p.harness_failed               ? EXIT_HARNESS
	             : atomic_load(&p.failures) > 0 ? EXIT_VIOLATION
	                                            : 0;
	free(p.jobs);
	pcut_trace_free(t);
	pcut_run_free(&run);
	if ((status == 0 && !o->keep) || (status == EXIT_VIOLATION && o->discard))
		rm_rf(dir);
	return status;
}

static int reproduce(const struct opts *o)
{
	struct pcut_run run;
	if (pcut_run_load(&run, o->reproduce) != 0) {
		fprintf(stderr, "powercut: no acks in %s\n", o->reproduce);
		return EXIT_HARNESS;
	}
	char path[1100], err[2048] = "";
	snprintf(path, sizeof(path), "%s/trace", o->reproduce);
	struct pcut_trace *t = NULL;
	if (pcut_trace_load(path, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "powercut: %s\n", err);
		pcut_run_free(&run);
		return EXIT_HARNESS;
	}
	char scratch[1100], img[1200];
	snprintf(scratch, sizeof(scratch), "%s/reproduce", o->reproduce);
	snprintf(img, sizeof(img), "%s/image", scratch);
	rm_rf(scratch);
	mkdir(scratch, 0750);
	mkdir(img, 0750);
	enum pcut_verdict v = PCUT_HARNESS;
	if (pcut_image_build(t, o->point, o->image_seed, img, NULL, err, sizeof(err)) == 0)
		v = pcut_check_image(o->whizbangd, o->flags, &run, o->point, img, scratch, err,
		                     sizeof(err));
	printf("point %" PRIu64 " image seed 0x%016" PRIx64 ": %s%s%s\n  image: %s\n", o->point,
	       o->image_seed,
	       v == PCUT_OK        ? "held"
	       : v == PCUT_REFUSED ? "refused"
	       : v == PCUT_HARNESS ? "HARNESS FAILURE"
	                           : "VIOLATION",
	       err[0] != '\0' ? ": " : "", err, img);
	pcut_trace_free(t);
	pcut_run_free(&run);
	return v == PCUT_OK || v == PCUT_REFUSED ? 0 : v == PCUT_HARNESS ? EXIT_HARNESS : 1;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: powercut --whizbangd PATH --interposer PATH [--seed N] [--runs N]\n"
	        "                [--images N] [--jobs N] [--drop-sync | --drop-fsync]\n"
	        "                [--server-flag F]...\n"
	        "                [--strict] [--keep] [--discard] [--work DIR]\n"
	        "       powercut --whizbangd PATH --reproduce RUN_DIR --point P --image-seed S\n"
	        "                [--server-flag F]...\n");
}

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v != NULL && v[0] != '\0' ? (unsigned)strtoul(v, NULL, 0) : dflt;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	bool longmode = getenv("WB_PCUT_LONG") != NULL && strcmp(getenv("WB_PCUT_LONG"), "1") == 0;
	o.runs = env_uint("WB_PCUT_RUNS", longmode ? 8 : 2);
	o.images = env_uint("WB_PCUT_IMAGES", longmode ? 2000 : 520);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	o.jobs = env_uint("WB_PCUT_JOBS", cpus > 1 ? (unsigned)cpus : 2);
	o.kill_min_ms = 300;
	o.kill_max_ms = longmode ? 4000 : 1500;
	const char *seed_env = getenv("WB_PCUT_SEED");
	bool have_seed = seed_env != NULL && seed_env[0] != '\0';
	if (have_seed)
		o.seed = strtoull(seed_env, NULL, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--drop-sync") == 0) {
			o.drop_sync = "1";
			continue;
		}
		if (strcmp(a, "--drop-fsync") == 0) {
			o.drop_sync = "fsync";
			continue;
		}
		if (strcmp(a, "--keep") == 0) {
			o.keep = true;
			continue;
		}
		if (strcmp(a, "--discard") == 0) {
			o.discard = true;
			continue;
		}
		if (strcmp(a, "--strict") == 0) {
			o.strict = true;
			continue;
		}
		if (v == NULL) {
			usage();
			return EXIT_HARNESS;
		}
		i++;
		if (strcmp(a, "--whizbangd") == 0) {
			o.whizbangd = v;
		} else if (strcmp(a, "--interposer") == 0) {
			o.interposer = v;
		} else if (strcmp(a, "--seed") == 0) {
			o.seed = strtoull(v, NULL, 0);
			have_seed = true;
		} else if (strcmp(a, "--runs") == 0) {
			o.runs = (unsigned)strtoul(v, NULL, 0);
		} else if (strcmp(a, "--images") == 0) {
			o.images = (unsigned)strtoul(v, NULL, 0);
		} else if (strcmp(a, "--jobs") == 0) {
			o.jobs = (unsigned)strtoul(v, NULL, 0);
		} else if (strcmp(a, "--server-flag") == 0 && o.nflags < MAX_FLAGS) {
			o.flags[o.nflags++] = v;
		} else if (strcmp(a, "--work") == 0) {
			o.work = v;
		} else if (strcmp(a, "--reproduce") == 0) {
			o.reproduce = v;
		} else if (strcmp(a, "--point") == 0) {
			o.point = strtoull(v, NULL, 0);
		} else if (strcmp(a, "--image-seed") == 0) {
			o.image_seed = strtoull(v, NULL, 0);
		} else {
			usage();
			return EXIT_HARNESS;
		}
	}
	o.flags[o.nflags] = NULL;
	signal(SIGPIPE, SIG_IGN);
	if (o.whizbangd == NULL || (o.reproduce == NULL && o.interposer == NULL) || o.jobs == 0) {
		usage();
		return EXIT_HARNESS;
	}
	if (o.reproduce != NULL)
		return reproduce(&o);
	if (!have_seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		o.seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
		         (uint64_t)getpid() << 32;
	}
	char work[1024];
	if (o.work != NULL) {
		snprintf(work, sizeof(work), "%s", o.work);
		mkdir(work, 0750);
	} else {
		snprintf(work, sizeof(work), "/tmp/wb-pcut-XXXXXX");
		if (mkdtemp(work) == NULL) {
			fprintf(stderr, "powercut: mkdtemp: %s\n", strerror(errno));
			return EXIT_HARNESS;
		}
	}
	printf("powercut: seed 0x%016" PRIx64 " (WB_PCUT_SEED=0x%016" PRIx64
	       " repeats the choices), %u runs x %u images, %u at a time, %s%s",
	       o.seed, o.seed, o.runs, o.images, o.jobs,
	       o.drop_sync == NULL             ? ""
	       : strcmp(o.drop_sync, "1") == 0 ? "syncs DROPPED, "
	                                       : "fsync and fdatasync DROPPED, ",
	       "server flags:");
	for (size_t i = 0; i < o.nflags; i++)
		printf(" %s", o.flags[i]);
	printf("%s\n  work: %s\n", o.nflags == 0 ? " none" : "", work);
	fflush(stdout);
	int64_t t0 = pcut_now_ms();
	int status = 0;
	for (unsigned r = 0; r < o.runs && status == 0; r++)
		status = one_run(&o, work, r);
	printf("powercut: %s in %.1f s (seed 0x%016" PRIx64 ")\n",
	       status == 0                ? "every image held"
	       : status == EXIT_VIOLATION ? "VIOLATIONS found"
	                                  : "harness failure",
	       (double)(pcut_now_ms() - t0) / 1000.0, o.seed);
	if ((status == 0 && !o.keep) || (status == EXIT_VIOLATION && o.discard))
		rm_rf(work);
	else
		printf("  kept: %s\n", work);
	return status;
}
