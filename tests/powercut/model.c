/* pcut_model: the harness checked on itself, without whizbangd.
 *
 * A child process runs a fixed script of the file operations log-first
 * mode is made of (a preallocated segment written with pwrite and writev
 * and fdatasynced, a temporary file fsynced and renamed over a checkpoint,
 * directory fsyncs, O_DSYNC writes, a file created and unlinked without a
 * directory fsync) under the interposer; then images of its trace are
 * built with many seeds and each is compared with what the crash model
 * (image.h) allows: what was synced is always there, what was not is
 * sometimes there and sometimes not, a rename is atomic, and nothing
 * appears that was never written. A model that kept everything, or lost
 * something synced, fails here before it can make powercut pass or fail
 * for the wrong reason.
 *
 *   pcut_model --interposer PATH
 *
 * Exit status: 0 the model holds, 1 it does not (what differed is
 * printed), 99 the test could not run. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image.h"
#include "trace.h"

#define SEG_SIZE 65536
#define SEEDS 400

extern char **environ;

static int failures;

#define EXPECT(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "pcut_model: " __VA_ARGS__);                               \
			fputc('\n', stderr);                                                       \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* ------------------------------------------------------------ the script */

static void must(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "pcut_model script: %s: %s\n", what, strerror(errno));
		exit(99);
	}
}

static void fill(char *buf, char c, size_t n)
{
	memset(buf, c, n);
}

/* The operations, in the order the checks below assume. */
static int script(const char *root)
{
	char p[4096], q[4096];
	char buf[8192];
	must(chdir(root) == 0, "chdir");
	int dir = open(".", O_RDONLY | O_DIRECTORY);
	must(dir >= 0, "open .");
	/* A segment directory, durable. */
	must(mkdir("wal", 0750) == 0, "mkdir wal");
	must(fsync(dir) == 0, "fsync root");
	int wal = open("wal", O_RDONLY | O_DIRECTORY);
	must(wal >= 0, "open wal");
	/* A preallocated segment, durable with its name and size. */
	int seg = openat(wal, "seg-1", O_RDWR | O_CREAT | O_EXCL, 0640);
	must(seg >= 0, "create seg-1");
	must(posix_fallocate(seg, 0, SEG_SIZE) == 0, "posix_fallocate");
	must(fsync(seg) == 0, "fsync seg-1");
	must(fsync(wal) == 0, "fsync wal");
	/* Record A, synced. */
	fill(buf, 'A', 4096);
	must(pwrite(seg, buf, 4096, 0) == 4096, "pwrite A");
	must(fdatasync(seg) == 0, "fdatasync A");
	/* Record B, never synced; record C through writev, never synced. */
	fill(buf, 'B', 4096);
	must(pwrite(seg, buf, 4096, 4096) == 4096, "pwrite B");
	fill(buf, 'C', 8192);
	struct iovec iov[2] = {{buf, 2048}, {buf + 2048, 6144}};
	must(lseek(seg, 8192, SEEK_SET) == 8192, "lseek");
	must(writev(seg, iov, 2) == 8192, "writev C");
	/* An O_DSYNC write: durable when it returns. */
	int meta = open("meta", O_WRONLY | O_CREAT | O_DSYNC, 0640);
	must(meta >= 0, "create meta");
	must(fsync(dir) == 0, "fsync root after meta");
	must(pwrite(meta, "M1M1", 4, 0) == 4, "pwrite meta");
	/* A checkpoint file: temp, fsync, rename, directory fsync (no
	 * directory fsync follows the second one). */
	for (int round = 1; round <= 2; round++) {
		snprintf(p, sizeof(p), "checkpoint.tmp");
		int t = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
		must(t >= 0, "create checkpoint.tmp");
		int n = snprintf(q, sizeof(q), "checkpoint-%d", round);
		must(write(t, q, (size_t)n) == n, "write checkpoint");
		must(fsync(t) == 0, "fsync checkpoint.tmp");
		must(close(t) == 0, "close checkpoint.tmp");
		must(rename(p, "checkpoint") == 0, "rename checkpoint");
		/* Only the first rename is made durable. */
		if (round == 1)
			must(fsync(dir) == 0, "fsync root after rename");
	}
	/* A second segment: created and fdatasynced (its creation durable by
	 * the model), then unlinked with no directory fsync. */
	int seg2 = openat(wal, "seg-2", O_RDWR | O_CREAT, 0640);
	must(seg2 >= 0, "create seg-2");
	fill(buf, 'D', 4096);
	must(write(seg2, buf, 4096) == 4096, "write D");
	must(fdatasync(seg2) == 0, "fdatasync seg-2");
	must(close(seg2) == 0, "close seg-2");
	must(unlinkat(wal, "seg-2", 0) == 0, "unlink seg-2");
	/* A file made longer by an unsynced write (its tail may be cut). */
	int grow = open("grow", O_WRONLY | O_CREAT, 0640);
	must(grow >= 0, "create grow");
	fill(buf, 'G', 100);
	must(write(grow, buf, 100) == 100, "write G1");
	must(fsync(grow) == 0, "fsync grow");
	fill(buf, 'H', 8000);
	must(write(grow, buf, 8000) == 8000, "write G2");
	close(grow);
	close(meta);
	close(seg);
	close(wal);
	close(dir);
	return 0;
}

/* ------------------------------------------------------------ checks */

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return NULL;
	}
	char *b = malloc((size_t)st.st_size + 1);
	ssize_t n = b != NULL ? read(fd, b, (size_t)st.st_size) : -1;
	close(fd);
	if (n != st.st_size) {
		free(b);
		return NULL;
	}
	b[n] = '\0';
	*len = (size_t)n;
	return b;
}

static bool all(const char *b, size_t from, size_t to, char c)
{
	for (size_t i = from; i < to; i++)
		if (b[i] != c)
			return false;
	return true;
}

/* Each 2 KiB half of [from, to) is all c or all zero (old). */
static bool halves(const char *b, size_t from, size_t to, char c, int *news, int *olds)
{
	for (size_t h = from; h < to; h += 2048) {
		if (all(b, h, h + 2048, c))
			(*news)++;
		else if (all(b, h, h + 2048, 0))
			(*olds)++;
		else
			return false;
	}
	return true;
}

struct seen {
	int b_new, b_old, c_new, c_old, ck1, ck2, seg2_there, seg2_gone, cut, whole;
};

static void check_end(const char *img, struct seen *s)
{
	size_t len = 0;
	char *seg = slurp(img, "wal/seg-1", &len);
	EXPECT(seg != NULL, "wal/seg-1 (created, synced, directory synced) is missing");
	if (seg != NULL) {
		EXPECT(len == SEG_SIZE, "wal/seg-1 is %zu bytes, its synced allocation %d", len,
		       SEG_SIZE);
		if (len == SEG_SIZE) {
			EXPECT(all(seg, 0, 4096, 'A'), "synced record A is not intact");
			EXPECT(halves(seg, 4096, 8192, 'B', &s->b_new, &s->b_old),
			       "unsynced record B holds bytes never written");
			EXPECT(halves(seg, 8192, 16384, 'C', &s->c_new, &s->c_old),
			       "unsynced record C holds bytes never written");
			EXPECT(all(seg, 16384, SEG_SIZE, 0), "the allocated tail is not zeros");
		}
		free(seg);
	}
	char *ck = slurp(img, "checkpoint", &len);
	EXPECT(ck != NULL, "the checkpoint (renamed, directory synced) is missing");
	if (ck != NULL) {
		bool one = strcmp(ck, "checkpoint-1") == 0, two = strcmp(ck, "checkpoint-2") == 0;
		EXPECT(one || two, "the checkpoint holds \"%s\": neither version whole", ck);
		s->ck1 += one;
		s->ck2 += two;
		free(ck);
	}
	char *meta = slurp(img, "meta", &len);
	EXPECT(meta != NULL && strcmp(meta, "M1M1") == 0, "the O_DSYNC write to meta is not there");
	free(meta);
	char *seg2 = slurp(img, "wal/seg-2", &len);
	if (seg2 != NULL) {
		EXPECT(len == 4096 && all(seg2, 0, 4096, 'D'),
		       "wal/seg-2 is there but its synced data is not");
		s->seg2_there++;
	} else {
		s->seg2_gone++;
	}
	free(seg2);
	char *grow = slurp(img, "grow", &len);
	EXPECT(grow != NULL && len >= 100 && len <= 8100 && all(grow, 0, 100, 'G'),
	       "grow lost its synced 100 bytes (size %zu)", len);
	if (grow != NULL && len >= 100) {
		for (size_t i = 100; i < len; i++)
			if (grow[i] != 'H' && grow[i] != 0) {
				EXPECT(false, "grow holds a byte never written at %zu", i);
				break;
			}
		s->cut += len < 8100;
		s->whole += len == 8100;
	}
	free(grow);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--script") == 0)
		return script(argv[2]);
	if (argc != 3 || strcmp(argv[1], "--interposer") != 0) {
		fprintf(stderr, "usage: pcut_model --interposer PATH\n");
		return 99;
	}
	char work[] = "/tmp/wb-pcut-model-XXXXXX";
	if (mkdtemp(work) == NULL)
		return 99;
	char root[4200], trace[4200], counter[4200], img[4200];
	snprintf(root, sizeof(root), "%s/root", work);
	snprintf(trace, sizeof(trace), "%s/trace", work);
	snprintf(counter, sizeof(counter), "%s/counter", work);
	snprintf(img, sizeof(img), "%s/image", work);
	mkdir(root, 0750);
	int cfd = open(counter, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (cfd < 0 || ftruncate(cfd, PCUT_COUNTER_SIZE) != 0)
		return 99;
	close(cfd);

	char e1[4300], e2[4300], e3[4300], e4[4300];
	snprintf(e1, sizeof(e1), "LD_PRELOAD=%s", argv[2]);
	snprintf(e2, sizeof(e2), "WB_PCUT_DIR=%s", root);
	snprintf(e3, sizeof(e3), "WB_PCUT_TRACE=%s", trace);
	snprintf(e4, sizeof(e4), "WB_PCUT_COUNTER=%s", counter);
	char *env[] = {e1, e2, e3, e4, NULL};
	pid_t pid = fork();
	if (pid == 0) {
		execve("/proc/self/exe", (char *[]){argv[0], "--script", root, NULL}, env);
		_exit(99);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "pcut_model: the script failed\n");
		return 99;
	}
	struct pcut_trace *t = NULL;
	char err[1024];
	if (pcut_trace_load(trace, &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "pcut_model: %s\n", err);
		return 99;
	}
	uint64_t n = pcut_trace_ops(t);
	EXPECT(n >= 30, "the trace holds %llu records; the script makes more than 30",
	       (unsigned long long)n);

	/* At the end: what was synced is there, the rest varies. */
	struct seen s = {0};
	for (uint64_t seed = 1; seed <= SEEDS && failures < 10; seed++) {
		nftw(img, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
		mkdir(img, 0750);
		if (pcut_image_build(t, n, seed, img, NULL, err, sizeof(err)) != 0) {
			fprintf(stderr, "pcut_model: %s\n", err);
			return 99;
		}
		check_end(img, &s);
	}
	EXPECT(s.b_new > 0 && s.b_old > 0, "unsynced record B was never (%d) or always (%d) lost",
	       s.b_old, s.b_new);
	EXPECT(s.c_new > 0 && s.c_old > 0, "unsynced writev C was never (%d) or always (%d) lost",
	       s.c_old, s.c_new);
	EXPECT(s.ck1 > 0 && s.ck2 > 0,
	       "the unsynced rename always (%d) or never (%d) survived; it may or may not", s.ck2,
	       s.ck1);
	EXPECT(s.seg2_there > 0 && s.seg2_gone > 0,
	       "the unsynced unlink always (%d) or never (%d) survived", s.seg2_gone, s.seg2_there);
	EXPECT(s.cut > 0 && s.whole > 0,
	       "the unsynced tail of grow was never cut (%d) or never "
	       "whole (%d)",
	       s.cut, s.whole);

	/* Just before record A's fdatasync returned, A may be lost: the
	 * fourth sync of the script is that fdatasync. */
	const uint64_t *syncs;
	size_t nsyncs = pcut_trace_syncs(t, &syncs);
	int a_there = 0, a_lost = 0;
	for (uint64_t seed = 1; nsyncs >= 4 && seed <= SEEDS; seed++) {
		nftw(img, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
		mkdir(img, 0750);
		if (pcut_image_build(t, syncs[3], seed, img, NULL, err, sizeof(err)) != 0) {
			fprintf(stderr, "pcut_model: %s\n", err);
			return 99;
		}
		size_t len = 0;
		char *seg = slurp(img, "wal/seg-1", &len);
		if (seg != NULL && len == SEG_SIZE && all(seg, 0, 4096, 'A'))
			a_there++;
		else
			a_lost++;
		free(seg);
	}
	EXPECT(a_there > 0 && a_lost > 0,
	       "before its fdatasync, record A was always (%d) or never (%d) there", a_there,
	       a_lost);

	/* Before anything: the image is the empty root. At every point,
	 * building must work and must be deterministic. */
	for (uint64_t point = 0; point <= n && failures < 10; point++) {
		nftw(img, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
		mkdir(img, 0750);
		if (pcut_image_build(t, point, point * 7 + 1, img, NULL, err, sizeof(err)) != 0) {
			fprintf(stderr, "pcut_model: point %llu: %s\n", (unsigned long long)point,
			        err);
			return 99;
		}
	}
	printf("pcut_model: %llu records; at the end over %d seeds: record B new/old halves "
	       "%d/%d, writev C %d/%d, checkpoint-1/-2 %d/%d, unlinked seg-2 there/gone %d/%d, "
	       "grow cut/whole %d/%d; before A's fdatasync A there/lost %d/%d\n",
	       (unsigned long long)n, SEEDS, s.b_new, s.b_old, s.c_new, s.c_old, s.ck1, s.ck2,
	       s.seg2_there, s.seg2_gone, s.cut, s.whole, a_there, a_lost);
	pcut_trace_free(t);
	nftw(work, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	if (failures > 0) {
		fprintf(stderr, "pcut_model: %d failures\n", failures);
		return 1;
	}
	return 0;
}
