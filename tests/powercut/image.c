/* Crash images from a power-cut trace (image.h has the model).
 *
 * Loading maps the trace and replays its name ops once, as they happened,
 * to give every record its object (a file or directory generation: an
 * inode number that is unlinked and reused is a new object) and every name
 * op the directories it changed. Building an image for a point walks the
 * name ops before it, decides which survive, then builds each surviving
 * file from its durable ops and a random selection of its unsynced ones.
 *
 * Failure modes: a trace that is out of sequence or holds an op the model
 * cannot represent is refused at load; an image that cannot be written is
 * an error. Both name the record or path. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trace.h"

#define PAGE 4096u
#define HALF 2048u

struct op {
	struct pcut_rec h;
	const char *path; /* NUL-terminated copies */
	const char *path2;
	const uint8_t *data; /* into the mapping */
	uint32_t obj;        /* the object the op acts on */
	uint32_t dir;        /* name ops: the directory of path */
	uint32_t dir2;       /* renames: the directory of path2 */
};

struct obj {
	uint64_t ino;
	bool is_dir;
	uint32_t *ops; /* its data ops and syncs, by index */
	size_t nops, cap;
};

struct pcut_trace {
	void *map;
	size_t map_len;
	struct op *ops;
	size_t n;
	char *strings;
	struct obj *objs;
	size_t nobjs;
	uint32_t *name_ops; /* indices of create, rename, unlink, mkdir, rmdir */
	size_t nname;
	uint64_t *syncs;
	size_t nsyncs;
	uint32_t *sync_all; /* SYNC_ALL records that count */
	size_t nsync_all;
};

uint64_t pcut_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t *rng, uint64_t n)
{
	return n == 0 ? 0 : pcut_rand(rng) % n;
}

static bool push_u32(uint32_t **a, size_t *n, size_t *cap, uint32_t v)
{
	if (*n == *cap) {
		size_t c = *cap > 0 ? *cap * 2 : 64;
		uint32_t *p = realloc(*a, c * sizeof(*p));
		if (p == NULL)
			return false;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return true;
}

/* ------------------------------------------------------------ loading */

/* The trace-time namespace: path -> object, for resolving directories. */
struct tname {
	char *path;
	uint32_t obj;
};

struct tspace {
	struct tname *v;
	size_t n, cap;
};

static struct tname *tspace_find(struct tspace *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].path, path) == 0)
			return &s->v[i];
	return NULL;
}

static int tspace_set(struct tspace *s, const char *path, uint32_t obj)
{
	struct tname *t = tspace_find(s, path);
	if (t != NULL) {
		t->obj = obj;
		return 0;
	}
	if (s->n == s->cap) {
		size_t c = s->cap > 0 ? s->cap * 2 : 32;
		struct tname *p = realloc(s->v, c * sizeof(*p));
		if (p == NULL)
			return -1;
		s->v = p;
		s->cap = c;
	}
	s->v[s->n].path = strdup(path);
	if (s->v[s->n].path == NULL)
		return -1;
	s->v[s->n++].obj = obj;
	return 0;
}

static void tspace_del(struct tspace *s, const char *path)
{
	struct tname *t = tspace_find(s, path);
	if (t == NULL)
		return;
	free(t->path);
	*t = s->v[--s->n];
}

static void tspace_free(struct tspace *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].path);
	free(s->v);
}

/* The directory part of path ("" for a name in the root). */
static void dirname_of(const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(out, len, "%s", "");
	else
		snprintf(out, len, "%.*s", (int)(slash - path), path);
}

static uint32_t new_obj(struct pcut_trace *t, uint64_t ino, bool is_dir)
{
	struct obj *p = realloc(t->objs, (t->nobjs + 1) * sizeof(*p));
	if (p == NULL)
		return UINT32_MAX;
	t->objs = p;
	memset(&p[t->nobjs], 0, sizeof(p[0]));
	p[t->nobjs].ino = ino;
	p[t->nobjs].is_dir = is_dir;
	return (uint32_t)t->nobjs++;
}

/* The current object of inode ino, made (as existing from the start) when
 * the trace never showed its creation. */
static uint32_t obj_of(struct pcut_trace *t, uint64_t ino)
{
	for (size_t i = t->nobjs; i-- > 0;)
		if (t->objs[i].ino == ino)
			return (uint32_t)i;
	return new_obj(t, ino, false);
}

static uint32_t dir_obj(struct pcut_trace *t, struct tspace *ns, const char *path)
{
	char d[4096];
	dirname_of(path, d, sizeof(d));
	struct tname *n = tspace_find(ns, d);
	if (n != NULL)
		return n->obj;
	(void)t;
	return 0; /* the root */
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int pcut_trace_load(const char *path, struct pcut_trace **out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, "cannot open the trace %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(struct pcut_rec)) {
		close(fd);
		return fail(err, errlen, "the trace %s is empty (%llu bytes)", path,
		            (unsigned long long)st.st_size);
	}
	struct pcut_trace *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		close(fd);
		return fail(err, errlen, "%s: out of memory", path);
	}
	t->map_len = (size_t)st.st_size;
	t->map = mmap(NULL, t->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (t->map == MAP_FAILED) {
		free(t);
		return fail(err, errlen, "cannot map the trace %s: %s", path, strerror(errno));
	}
	/* First pass: count the records and the bytes of their paths. */
	const uint8_t *base = t->map;
	size_t at = 0, n = 0, strbytes = 0;
	while (at + sizeof(struct pcut_rec) <= t->map_len) {
		struct pcut_rec h;
		memcpy(&h, base + at, sizeof(h));
		if (h.magic != PCUT_MAGIC) {
			pcut_trace_free(t);
			return fail(err, errlen, "trace %s: bad magic at byte %llu", path,
			            (unsigned long long)at);
		}
		size_t len = sizeof(h) + h.path_len + h.path2_len +
		             (h.op == PCUT_WRITE ? (size_t)h.len : 0);
		if (at + len > t->map_len)
			break; /* the process was killed while writing it */
		if (h.index != n) {
			pcut_trace_free(t);
			return fail(err, errlen, "trace %s: record %llu out of sequence", path,
			            (unsigned long long)n);
		}
		strbytes += h.path_len + h.path2_len + 2;
		at += len;
		n++;
	}
	t->ops = calloc(n > 0 ? n : 1, sizeof(*t->ops));
	t->strings = malloc(strbytes + 1);
	if (t->ops == NULL || t->strings == NULL) {
		pcut_trace_free(t);
		return fail(err, errlen, "%s: out of memory", path);
	}
	t->n = n;
	at = 0;
	char *s = t->strings;
	for (size_t i = 0; i < n; i++) {
		struct op *o = &t->ops[i];
		memcpy(&o->h, base + at, sizeof(o->h));
		at += sizeof(o->h);
		o->path = s;
		memcpy(s, base + at, o->h.path_len);
		s[o->h.path_len] = '\0';
		s += o->h.path_len + 1;
		at += o->h.path_len;
		o->path2 = s;
		memcpy(s, base + at, o->h.path2_len);
		s[o->h.path2_len] = '\0';
		s += o->h.path2_len + 1;
		at += o->h.path2_len;
		if (o->h.op == PCUT_WRITE) {
			o->data = base + at;
			at += (size_t)o->h.len;
		}
	}

	/* Second pass: objects, directories, syncs. */
	struct tspace ns = {0};
	size_t cap_name = 0, cap_sync = 0, cap_all = 0;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct op *o = &t->ops[i];
		switch (o->h.op) {
		case PCUT_MKDIR:
			o->dir = dir_obj(t, &ns, o->path);
			o->obj = new_obj(t, o->h.ino, true);
			if (o->obj == UINT32_MAX || tspace_set(&ns, o->path, o->obj) != 0 ||
			    !push_u32(&t->name_ops, &t->nname, &cap_name, (uint32_t)i))
				rc = fail(err, errlen, "%s: out of memory", path);
			break;
		case PCUT_CREATE:
			o->dir = dir_obj(t, &ns, o->path);
			o->obj = new_obj(t, o->h.ino, false);
			if (o->obj == UINT32_MAX || tspace_set(&ns, o->path, o->obj) != 0 ||
			    !push_u32(&t->name_ops, &t->nname, &cap_name, (uint32_t)i))
				rc = fail(err, errlen, "%s: out of memory", path);
			break;
		case PCUT_RENAME: {
			o->dir = dir_obj(t, &ns, o->path);
			o->dir2 = dir_obj(t, &ns, o->path2);
			o->obj = obj_of(t, o->h.ino);
			tspace_del(&ns, o->path);
			if (tspace_set(&ns, o->path2, o->obj) != 0 ||
			    !push_u32(&t->name_ops, &t->nname, &cap_name, (uint32_t)i))
				rc = fail(err, errlen, "%s: out of memory", path);
			break;
		}
		case PCUT_UNLINK:
		case PCUT_RMDIR:
			o->dir = dir_obj(t, &ns, o->path);
			o->obj = obj_of(t, o->h.ino);
			tspace_del(&ns, o->path);
			if (!push_u32(&t->name_ops, &t->nname, &cap_name, (uint32_t)i))
				rc = fail(err, errlen, "%s: out of memory", path);
			break;
		case PCUT_WRITE:
		case PCUT_TRUNCATE:
		case PCUT_FALLOCATE:
		case PCUT_SYNC: {
			o->obj = obj_of(t, o->h.ino);
			struct obj *b = &t->objs[o->obj];
			if (o->h.op == PCUT_SYNC &&
			    (o->h.flags & (PCUT_F_DROPPED | PCUT_F_RANGE_ONLY)) != 0)
				break;
			if (!push_u32(&b->ops, &b->nops, &b->cap, (uint32_t)i))
				rc = fail(err, errlen, "%s: out of memory", path);
			bool counts = o->h.op == PCUT_SYNC ||
			              (o->h.op == PCUT_WRITE && (o->h.flags & PCUT_F_DSYNC) != 0);
			if (rc == 0 && counts) {
				uint64_t *p = t->syncs;
				if (t->nsyncs == cap_sync) {
					cap_sync = cap_sync > 0 ? cap_sync * 2 : 256;
					p = realloc(t->syncs, cap_sync * sizeof(*p));
					if (p == NULL) {
						rc = fail(err, errlen, "%s: out of memory", path);
						break;
					}
					t->syncs = p;
				}
				t->syncs[t->nsyncs++] = i;
			}
			break;
		}
		case PCUT_SYNC_ALL:
			if ((o->h.flags & PCUT_F_DROPPED) == 0 &&
			    !push_u32(&t->sync_all, &t->nsync_all, &cap_all, (uint32_t)i))
				rc = fail(err, errlen, "%s: out of memory", path);
			break;
		case PCUT_UNMODELED:
			if (strcmp(o->path, "lock.mdb") != 0)
				rc = fail(err, errlen,
				          "the trace holds what the model cannot represent: %s "
				          "(record %llu); see its reason in the trace",
				          o->path, (unsigned long long)i);
			break;
		default:
			rc = fail(err, errlen, "trace %s: unknown op in record %llu", path,
			          (unsigned long long)i);
		}
	}
	tspace_free(&ns);
	if (rc != 0) {
		pcut_trace_free(t);
		return -1;
	}
	*out = t;
	return 0;
}

void pcut_trace_free(struct pcut_trace *t)
{
	if (t == NULL)
		return;
	if (t->map != NULL && t->map != MAP_FAILED)
		munmap(t->map, t->map_len);
	for (size_t i = 0; i < t->nobjs; i++)
		free(t->objs[i].ops);
	free(t->objs);
	free(t->ops);
	free(t->strings);
	free(t->name_ops);
	free(t->syncs);
	free(t->sync_all);
	free(t);
}

uint64_t pcut_trace_ops(const struct pcut_trace *t)
{
	return t->n;
}

size_t pcut_trace_syncs(const struct pcut_trace *t, const uint64_t **idx)
{
	*idx = t->syncs;
	return t->nsyncs;
}

/* ------------------------------------------------------------ building */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int buf_resize(struct buf *b, size_t len)
{
	if (len > b->cap) {
		size_t c = b->cap > 0 ? b->cap : 65536;
		while (c < len)
			c *= 2;
		uint8_t *p = realloc(b->p, c);
		if (p == NULL)
			return -1;
		b->p = p;
		b->cap = c;
	}
	if (len > b->len)
		memset(b->p + b->len, 0, len - b->len);
	b->len = len;
	return 0;
}

/* Writes data[from, to) of a write at off into b, except where a durable
 * write that came later (mask[0..nmask), op indices) covers it. */
static int put(struct buf *b, const struct pcut_trace *t, const struct op *o, uint64_t from,
               uint64_t to, const uint32_t *mask, size_t nmask)
{
	if (from >= to)
		return 0;
	uint64_t off = o->h.off;
	if (off + to > b->len && buf_resize(b, (size_t)(off + to)) != 0)
		return -1;
	memcpy(b->p + off + from, o->data + from, (size_t)(to - from));
	for (size_t m = 0; m < nmask; m++) {
		const struct op *d = &t->ops[mask[m]];
		if (d->h.index <= o->h.index)
			continue;
		uint64_t lo = d->h.off > off + from ? d->h.off : off + from;
		uint64_t hi = d->h.off + d->h.len < off + to ? d->h.off + d->h.len : off + to;
		if (lo < hi)
			memcpy(b->p + lo, d->data + (lo - d->h.off), (size_t)(hi - lo));
	}
	return 0;
}

/* Applies a whole op to b, as it happened. */
static int apply(struct buf *b, const struct pcut_trace *t, const struct op *o)
{
	switch (o->h.op) {
	case PCUT_WRITE:
		return put(b, t, o, 0, o->h.len, NULL, 0);
	case PCUT_TRUNCATE:
		if (o->h.off < b->len) {
			b->len = (size_t)o->h.off;
			return 0;
		}
		return buf_resize(b, (size_t)o->h.off);
	case PCUT_FALLOCATE:
		if ((o->h.flags & PCUT_F_KEEP_SIZE) == 0 && o->h.off + o->h.len > b->len)
			return buf_resize(b, (size_t)(o->h.off + o->h.len));
		return 0;
	default:
		return 0;
	}
}

/* Every record below the returned index is durable for object obj at
 * point: the latest sync of it, or sync of everything, that completed
 * before point. */
static uint64_t covered(const struct pcut_trace *t, uint32_t obj, uint64_t point)
{
	uint64_t c = 0;
	const struct obj *b = &t->objs[obj];
	for (size_t i = 0; i < b->nops && b->ops[i] < point; i++) {
		const struct op *o = &t->ops[b->ops[i]];
		if (o->h.op == PCUT_SYNC && o->h.covers > c)
			c = o->h.covers;
	}
	for (size_t i = 0; i < t->nsync_all && t->sync_all[i] < point; i++)
		if (t->ops[t->sync_all[i]].h.covers > c)
			c = t->ops[t->sync_all[i]].h.covers;
	return c;
}

static int write_file(const char *path, const struct buf *b, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	for (size_t done = 0; done < b->len;) {
		ssize_t w = write(fd, b->p + done, b->len - done);
		if (w <= 0) {
			snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		done += (size_t)w;
	}
	close(fd);
	return 0;
}

/* Builds the contents of object obj at point into b. */
static int build_file(const struct pcut_trace *t, uint32_t obj, uint64_t point, uint64_t *rng,
                      struct buf *b, struct pcut_image_stats *st)
{
	const struct obj *f = &t->objs[obj];
	uint64_t c = covered(t, obj, point);
	b->len = 0;
	uint32_t *unsynced = NULL, *mask = NULL;
	size_t nu = 0, capu = 0, nm = 0, capm = 0;
	int rc = 0;
	for (size_t i = 0; i < f->nops && f->ops[i] < point && rc == 0; i++) {
		const struct op *o = &t->ops[f->ops[i]];
		if (o->h.op == PCUT_SYNC)
			continue;
		bool dsync = o->h.op == PCUT_WRITE && (o->h.flags & PCUT_F_DSYNC) != 0;
		if (o->h.index < c || dsync) {
			rc = apply(b, t, o);
			st->durable_ops++;
			if (dsync && o->h.index >= c && !push_u32(&mask, &nm, &capm, f->ops[i]))
				rc = -1;
		} else if (!push_u32(&unsynced, &nu, &capu, f->ops[i])) {
			rc = -1;
		}
	}
	size_t durable_len = b->len;
	/* The unsynced ops land in any order. */
	for (size_t i = nu; i > 1 && rc == 0; i--) {
		size_t j = (size_t)below(rng, i);
		uint32_t tmp = unsynced[i - 1];
		unsynced[i - 1] = unsynced[j];
		unsynced[j] = tmp;
	}
	for (size_t i = 0; i < nu && rc == 0; i++) {
		const struct op *o = &t->ops[unsynced[i]];
		if (o->h.op != PCUT_WRITE) {
			if (below(rng, 2) == 0)
				rc = apply(b, t, o);
			continue;
		}
		st->unsynced_writes++;
		uint64_t mode = below(rng, 4);
		if (mode == 0) {
			st->dropped++;
			continue;
		}
		if (mode == 1) {
			rc = put(b, t, o, 0, o->h.len, mask, nm);
			st->pages_new++;
			continue;
		}
		/* Page by page, on file-offset boundaries. */
		uint64_t pos = 0;
		while (pos < o->h.len && rc == 0) {
			uint64_t abs = o->h.off + pos;
			uint64_t page_end = (abs / PAGE + 1) * PAGE - o->h.off;
			if (page_end > o->h.len)
				page_end = o->h.len;
			uint64_t r = below(rng, 100);
			if (r < 45) {
				rc = put(b, t, o, pos, page_end, mask, nm);
				st->pages_new++;
			} else if (r < 90) {
				st->pages_old++;
			} else {
				/* Torn: one 2 KiB half of the page new, the other
				 * old (in absolute offsets, then back). */
				uint64_t lo = o->h.off + pos, hi = o->h.off + page_end;
				uint64_t mid = abs / PAGE * PAGE + HALF;
				if (below(rng, 2) == 0) {
					if (hi > mid)
						hi = mid;
				} else if (lo < mid) {
					lo = mid;
				}
				if (lo < hi)
					rc = put(b, t, o, lo - o->h.off, hi - o->h.off, mask, nm);
				st->torn++;
			}
			pos = page_end;
		}
	}
	/* A file that unsynced ops made longer may end anywhere past its
	 * durable size. */
	if (rc == 0 && b->len > durable_len && below(rng, 4) == 0) {
		b->len = durable_len + (size_t)below(rng, b->len - durable_len + 1);
		st->cut++;
	}
	free(unsynced);
	free(mask);
	return rc;
}

struct iname {
	const char *path;
	uint32_t obj;
	bool is_dir;
};

static int mkdirs(const char *root, const char *rel, char *err, size_t errlen)
{
	char p[8192];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	for (char *s = p + strlen(root) + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0750) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "cannot make %s: %s", p, strerror(errno));
			return -1;
		}
		*s = '/';
	}
	return 0;
}

int pcut_image_build(const struct pcut_trace *t, uint64_t point, uint64_t seed, const char *dir,
                     struct pcut_image_stats *stats, char *err, size_t errlen)
{
	uint64_t rng = seed;
	struct pcut_image_stats st = {0};
	if (point > t->n)
		point = t->n;
	/* Which name ops survive, applied in trace order. */
	struct iname *names = NULL;
	size_t nnames = 0, cap = 0;
	int rc = 0;
	for (size_t k = 0; k < t->nname && rc == 0; k++) {
		const struct op *o = &t->ops[t->name_ops[k]];
		if (o->h.index >= point)
			break;
		bool durable = o->path[0] == '\0' && o->h.op == PCUT_MKDIR; /* the root */
		if (!durable) {
			durable = covered(t, o->dir, point) > o->h.index;
			if (durable && o->h.op == PCUT_RENAME)
				durable = covered(t, o->dir2, point) > o->h.index;
			if (!durable && o->h.op == PCUT_CREATE)
				durable = covered(t, o->obj, point) > o->h.index;
		}
		if (!durable && below(&rng, 2) == 0) {
			st.names_lost++;
			continue;
		}
		const char *target = o->h.op == PCUT_RENAME ? o->path2 : o->path;
		size_t at = nnames;
		for (size_t i = 0; i < nnames; i++)
			if (strcmp(names[i].path, target) == 0)
				at = i;
		switch (o->h.op) {
		case PCUT_CREATE:
		case PCUT_MKDIR:
		case PCUT_RENAME:
			if (at == nnames) {
				if (nnames == cap) {
					cap = cap > 0 ? cap * 2 : 32;
					struct iname *p = realloc(names, cap * sizeof(*p));
					if (p == NULL) {
						rc = -1;
						snprintf(err, errlen, "out of memory");
						break;
					}
					names = p;
				}
				nnames++;
			}
			names[at] = (struct iname){target, o->obj, t->objs[o->obj].is_dir};
			if (o->h.op == PCUT_RENAME) {
				for (size_t i = 0; i < nnames; i++) {
					if (strcmp(names[i].path, o->path) == 0 &&
					    names[i].obj == o->obj) {
						names[i] = names[--nnames];
						break;
					}
				}
			}
			break;
		case PCUT_UNLINK:
		case PCUT_RMDIR:
			if (at < nnames && names[at].obj == o->obj)
				names[at] = names[--nnames];
			break;
		default:
			break;
		}
	}
	/* Directories first (a shorter path is never inside a longer one),
	 * then the files, each built from its ops. */
	struct buf b = {0};
	char path[8192];
	for (size_t i = 0; i < nnames && rc == 0; i++) {
		if (!names[i].is_dir || names[i].path[0] == '\0')
			continue;
		snprintf(path, sizeof(path), "%s/%s/", dir, names[i].path);
		rc = mkdirs(dir, path + strlen(dir) + 1, err, errlen);
	}
	for (size_t i = 0; i < nnames && rc == 0; i++) {
		if (names[i].is_dir)
			continue;
		rc = mkdirs(dir, names[i].path, err, errlen);
		if (rc != 0)
			break;
		if (build_file(t, names[i].obj, point, &rng, &b, &st) != 0) {
			snprintf(err, errlen, "out of memory building %s", names[i].path);
			rc = -1;
			break;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i].path);
		rc = write_file(path, &b, err, errlen);
		st.files++;
	}
	free(b.p);
	free(names);
	if (stats != NULL)
		*stats = st;
	return rc;
}
