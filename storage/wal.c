/* The write-ahead log (wal.h). Happy path: wal_add() encodes each record
 * into the batch buffer (header, body, zero padding, CRC32C); wal_write()
 * puts the whole batch into the current segment with one pwrite at its tail,
 * first switching to a new segment when the batch does not fit; wal_sync()
 * fdatasyncs it; wal_release() turns segments a checkpoint covers into spares
 * or removes them.
 *
 * Files in the directory:
 *   <16 hex digits>.wal  a live segment, named after the sequence of its
 *                        first record; only these are scanned.
 *   spare-<n>.wal        a spare: a segment the checkpoint covered (still
 *                        holding its old records) or one being prepared. The
 *                        scan never reads them, whatever they contain.
 * A segment is prepared under a spare name: a new one is created and its
 * space allocated (posix_fallocate, so that writes inside it never meet a
 * full disk), a reused spare is allocated again (a no-op when it is whole);
 * then the header is written and fsynced, and only then is the file renamed
 * to its live name and the directory fsynced. A live name therefore always
 * carries a durable header, and a batch goes in only after both are durable.
 * A reused spare keeps its old records; their sequences are lower than any
 * the log expects, so the scan tells them apart (wal.h).
 *
 * Zeroing ahead: posix_fallocate() leaves a new segment's blocks unwritten,
 * and on ext4 (and XFS) the first write into such a block changes the file's
 * extent map, which the next fdatasync must then write as well: a second,
 * dependent I/O per batch. So a helper thread writes zeros ahead of the tail,
 * ZERO_CHUNK at a time while less than ZERO_AHEAD is zeroed beyond it, and
 * fdatasyncs them through a descriptor of its own (an error it meets is then
 * still reported to the writer's fdatasync). The writer never writes into
 * the range a job is zeroing (it waits for the job first, as it does before
 * switching segments), and the range starts on a page boundary past the
 * last batch, so the two never touch the same page. A recycled segment was
 * written whole by its first use and is not zeroed. Zeroing only ever
 * writes zeros where a new segment reads as zeros already, or over what
 * lies after the tail of a recovered one, so a crash during it changes
 * nothing the scan reads; a failed job costs only speed.
 *
 * wal_write() fdatasyncs the previous batch itself when the caller has not
 * (a no-op for a writer that syncs every batch): the torn-tail rule of the
 * scan depends on batch B+1 never being written before B is durable.
 *
 * The scan at open walks the records from the segment holding applied+1
 * while each is the valid record with the expected sequence, continuing into
 * the next segment when that one is named after the expected sequence (the
 * writer moved on because a batch did not fit). Where the walk stops:
 *   - Damage, WB_E_CORRUPT, nothing changed: a valid record further on in
 *     that segment (any 8-byte offset) whose batch starts after the expected
 *     sequence; a segment named after the expected sequence with a bad header
 *     that holds a valid record of a batch from there on (its header was
 *     durable before that batch went in); any other live segment after the
 *     end (a hole or an overlap); a log that ends before applied; a first
 *     segment that starts after applied+1.
 *   - Otherwise the torn tail is cut: from the end of the last valid record
 *     up to the end of the last valid record of the torn batch found further
 *     on, or of the torn record at the end (its length as far as it can be
 *     read, up to the first intact record of an older use of the segment),
 *     whichever is later, the bytes are zeroed, and the segment is
 *     fdatasynced (which also makes durable the unsynced records of a killed
 *     process that the walk took). Zeroing the torn batch's valid records
 *     matters: the next batch reuses their sequences, and a stale one could
 *     otherwise continue the new batch in a later scan. Every batch is
 *     written with a record header's worth of zeros after it (in the same
 *     pwrite, when the segment has room), so the end of a log that was shut
 *     down cleanly is a zero slot, and in a recycled segment the remains of
 *     an older record are not taken for a torn one.
 *   - A valid prefix of a torn batch is kept: the records carry no batch
 *     length, so a last batch whose later records are gone cannot be told
 *     from a complete one, and a complete last batch may have been
 *     acknowledged. A segment named after the expected sequence whose header is bad
 *     and that holds nothing newer (its preparation was cut short) becomes a
 *     spare or is removed.
 * The scan reads through a window of READ_CHUNK bytes, larger only for a
 * record's body given to wal_replay()'s callback (at most WAL_RECORD_MAX).
 * Given opts->replay, the walk hands it each record after applied as it
 * passes it, so that a start-up reads the log once (the checks after the
 * walk may still fail the open: wal.h says what the caller then owes).
 *
 * Failure modes: ENOSPC (or EDQUOT) while preparing a segment, or on a
 * batch's write before any byte went in, is WB_E_NOSPC, with the batch
 * dropped and the log as it was. Any other failure of a write, a sync or a
 * rename is WB_E_IO and leaves the log broken: every later write fails. */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "codec.h"
#include "helper.h"
#include "wb_error.h"

#define FORMAT 1u
#define SEGMENT_MAX (1ull << 30)
/* A segment's header claims at most this size (an own segment of a huge
 * batch included); anything larger is not a header of ours. */
#define SEGMENT_SANE (1ull << 40)
#define HEADER_USED 36u
#define READ_CHUNK ((size_t)1 << 20)
/* The batch buffer is freed after a batch that made it larger than this. */
#define BATCH_KEEP ((size_t)1 << 20)
#define BATCH_INITIAL ((size_t)64 << 10)
#define NAME_MAX_LEN 32
#define ZERO_CHUNK ((uint64_t)1 << 20)
#define ZERO_AHEAD ((uint64_t)4 << 20)
#define NONE SIZE_MAX

static const uint8_t seg_magic[8] = {'W', 'B', 'W', 'A', 'L', 'S', 'E', 'G'};
static const uint8_t zeros[64 << 10];

struct seg {
	uint64_t first; /* from the name (checked against the header when read) */
	uint64_t size;  /* from the header once read, else the file's size */
};

struct wal {
	char *dir;
	int dirfd;
	uint64_t segment_size;
	unsigned spare_max;
	bool no_sync;
	bool broken;
	uint64_t applied; /* as given to wal_open(): where wal_replay() starts */
	int (*replay)(void *arg, const struct wal_record *r); /* the open's scan hands it */
	void *replay_arg;

	struct seg *segs; /* live segments, oldest first */
	size_t nsegs, segcap;
	unsigned *spares; /* n of each spare-<n>.wal */
	size_t nspares, sparecap;
	unsigned next_spare;

	int fd;            /* the current segment, segs[nsegs - 1]; -1: none */
	uint64_t cur_size; /* where its room ends */
	uint64_t tail;     /* where the next batch goes */
	bool dirty;        /* written since the last sync */

	/* Zeroing ahead (the file comment): the current segment is written
	 * (zeros at least) up to zeroed; while zero_out, the zeroer thread
	 * zeroes [zero_from, zero_to) of zero_name. */
	struct helper zeroer;
	bool zeroer_on;
	bool zero_out;
	uint64_t zeroed, zero_from, zero_to;
	char zero_name[NAME_MAX_LEN];

	uint64_t last_seq; /* the last record written (or applied, if later) */
	uint8_t *batch;
	size_t blen, bcap;
	uint64_t brecords;
	uint64_t since_release;

	uint64_t batches, records, bytes, syncs, sync_us;
	uint64_t created, recycled, removed;
};

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errmsg == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errmsg, errlen, fmt, ap);
	va_end(ap);
}

uint32_t wal_crc32c(uint32_t crc, const void *p, size_t n)
{
	/* ISA-L's crc32_iscsi() takes an int length and leaves the
	 * pre- and post-inversion to the caller. */
	const unsigned char *b = p;
	crc = ~crc;
	while (n > 0) {
		size_t k = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
		crc = crc32_iscsi((unsigned char *)b, (int)k, crc);
		b += k;
		n -= k;
	}
	return ~crc;
}

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void seg_name(char name[NAME_MAX_LEN], uint64_t first)
{
	snprintf(name, NAME_MAX_LEN, "%016" PRIx64 ".wal", first);
}

static void spare_name(char name[NAME_MAX_LEN], unsigned n)
{
	snprintf(name, NAME_MAX_LEN, "spare-%u.wal", n);
}

static bool nospace(int e)
{
	return e == ENOSPC || e == EDQUOT;
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t k = pwrite(fd, p, n, (off_t)off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

static int sync_fd(const struct wal *w, int fd)
{
	if (w->no_sync)
		return 0;
	return fdatasync(fd);
}

static int sync_dir(const struct wal *w)
{
	if (w->no_sync)
		return 0;
	return fsync(w->dirfd);
}

/* ---------------------------------------------------------------- reading */

/* A window on a file: buf holds its bytes [off, off + len). */
struct reader {
	int fd;
	uint64_t limit; /* the bytes that can hold records */
	uint8_t *buf;
	size_t cap;
	uint64_t off;
	size_t len;
};

static void reader_reset(struct reader *r, int fd, uint64_t limit)
{
	r->fd = fd;
	r->limit = limit;
	r->off = 0;
	r->len = 0;
}

/* Points *out at the n bytes at off (off + n <= r->limit). */
static int view(struct reader *r, uint64_t off, size_t n, const uint8_t **out)
{
	if (off >= r->off && off + n <= r->off + r->len) {
		*out = r->buf + (off - r->off);
		return 0;
	}
	size_t want = n > READ_CHUNK ? n : READ_CHUNK;
	if (want > r->limit - off)
		want = (size_t)(r->limit - off);
	/* End on a page boundary when that still covers n: a page read in
	 * part is cached whole, and SEEK_DATA would take it for data. */
	uint64_t end = (off + want) & ~(uint64_t)4095;
	if (end >= off + n && end > off)
		want = (size_t)(end - off);
	if (want > r->cap) {
		/* Only a large body grows the window; free the old one first
		 * so that the two never coexist. */
		free(r->buf);
		r->buf = malloc(want);
		r->cap = r->buf != NULL ? want : 0;
		r->len = 0;
		if (r->buf == NULL)
			return WB_E_NOMEM;
	}
	size_t got = 0;
	while (got < want) {
		ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r->len = 0;
			return WB_E_IO;
		}
		got += (size_t)k;
	}
	r->off = off;
	r->len = want;
	*out = r->buf;
	return 0;
}

/* Drops a window that a large body made large. */
static void reader_trim(struct reader *r)
{
	if (r->cap > READ_CHUNK) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
		r->len = 0;
	}
}

struct rec {
	uint64_t seq, batch_first;
	uint32_t len;
	uint16_t type, version;
	uint64_t end; /* the offset after its padding */
};

/* Checks the record at off: *valid when its magic and CRC check and it fits
 * the limit. */
static int read_record(struct reader *r, uint64_t off, struct rec *rec, bool *valid)
{
	const uint8_t *p;
	int rc;

	*valid = false;
	if (off + WAL_RECORD_HEADER > r->limit)
		return 0;
	if ((rc = view(r, off, WAL_RECORD_HEADER, &p)) != 0)
		return rc;
	if (get_u32(p) != WAL_RECORD_MAGIC)
		return 0;
	uint32_t crc = get_u32(p + 4);
	rec->len = get_u32(p + 8);
	rec->type = get_u16(p + 12);
	rec->version = get_u16(p + 14);
	rec->seq = get_u64(p + 16);
	rec->batch_first = get_u64(p + 24);
	if (rec->len > WAL_RECORD_MAX)
		return 0;
	rec->end = off + WAL_RECORD_HEADER + pad8(rec->len);
	if (rec->end > r->limit)
		return 0;
	uint64_t pos = off + WAL_RECORD_HEADER, body_end = pos + rec->len;
	uint32_t c;
	if (body_end <= r->off + r->len) {
		/* The whole record is in the window: one CRC call, which for
		 * records of a few hundred bytes costs about half of two. */
		*valid = wal_crc32c(0, p + 8, WAL_RECORD_HEADER - 8 + rec->len) == crc;
		return 0;
	}
	c = wal_crc32c(0, p + 8, WAL_RECORD_HEADER - 8);
	while (pos < body_end) {
		size_t n = body_end - pos < READ_CHUNK ? (size_t)(body_end - pos) : READ_CHUNK;
		if ((rc = view(r, pos, n, &p)) != 0)
			return rc;
		c = wal_crc32c(c, p, n);
		pos += n;
	}
	*valid = c == crc;
	return 0;
}

/* Why the header h of the segment named after first is not ours (NULL: it
 * is); *size receives the size it claims. */
static const char *check_header(const uint8_t *h, uint64_t first, uint64_t *size)
{
	if (memcmp(h, seg_magic, sizeof(seg_magic)) != 0)
		return "its header has no segment magic";
	if (wal_crc32c(0, h, 32) != get_u32(h + 32))
		return "its header fails its CRC";
	if (get_u32(h + 8) != FORMAT)
		return "its header names a format this version does not read";
	if (get_u64(h + 16) != first)
		return "its header names another first sequence than its file name";
	*size = get_u64(h + 24);
	if (*size < WAL_SEGMENT_HEADER + WAL_RECORD_HEADER || *size > SEGMENT_SANE)
		return "its header claims an impossible size";
	return NULL;
}

/* ---------------------------------------------------------------- the directory */

static int push_seg(struct wal *w, uint64_t first, uint64_t size)
{
	if (w->nsegs == w->segcap) {
		size_t cap = w->segcap ? w->segcap * 2 : 16;
		struct seg *s = realloc(w->segs, cap * sizeof(*s));
		if (s == NULL)
			return WB_E_NOMEM;
		w->segs = s;
		w->segcap = cap;
	}
	w->segs[w->nsegs++] = (struct seg){.first = first, .size = size};
	return 0;
}

static int push_spare(struct wal *w, unsigned n)
{
	if (w->nspares == w->sparecap) {
		size_t cap = w->sparecap ? w->sparecap * 2 : 8;
		unsigned *s = realloc(w->spares, cap * sizeof(*s));
		if (s == NULL)
			return WB_E_NOMEM;
		w->spares = s;
		w->sparecap = cap;
	}
	w->spares[w->nspares++] = n;
	if (n >= w->next_spare)
		w->next_spare = n + 1;
	return 0;
}

static bool parse_seg_name(const char *s, uint64_t *first)
{
	if (strlen(s) != 20 || strcmp(s + 16, ".wal") != 0)
		return false;
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	*first = v;
	return v != 0;
}

static bool parse_spare_name(const char *s, unsigned *n)
{
	if (strncmp(s, "spare-", 6) != 0)
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s + 6, &end, 10);
	if (end == s + 6 || errno != 0 || v >= 0xffffffffUL || strcmp(end, ".wal") != 0 ||
	    s[6] < '0' || s[6] > '9')
		return false;
	*n = (unsigned)v;
	return true;
}

static int cmp_seg(const void *a, const void *b)
{
	uint64_t x = ((const struct seg *)a)->first, y = ((const struct seg *)b)->first;
	return x < y ? -1 : x > y;
}

/* Lists the live segments (sorted) and the spares, removing spares of
 * another size than the segments' and those past spare_max. */
static int list_dir(struct wal *w, char *errmsg, size_t errlen)
{
	int fd = dup(w->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		set_err(errmsg, errlen, "wal: cannot list %s: %s", w->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return WB_E_IO;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		uint64_t first;
		unsigned n;
		bool live = parse_seg_name(de->d_name, &first);
		if (!live && !parse_spare_name(de->d_name, &n))
			continue;
		struct stat sb;
		if (fstatat(w->dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			set_err(errmsg, errlen, "wal: stat %s/%s: %s", w->dir, de->d_name,
			        strerror(errno));
			rc = WB_E_IO;
			break;
		}
		if (!S_ISREG(sb.st_mode))
			continue;
		if (live) {
			rc = push_seg(w, first, (uint64_t)sb.st_size);
		} else if ((uint64_t)sb.st_size != w->segment_size || w->nspares >= w->spare_max) {
			if (unlinkat(w->dirfd, de->d_name, 0) != 0) {
				set_err(errmsg, errlen, "wal: cannot remove %s/%s: %s", w->dir,
				        de->d_name, strerror(errno));
				rc = WB_E_IO;
			}
			w->removed++;
			if (n >= w->next_spare)
				w->next_spare = n + 1;
		} else {
			rc = push_spare(w, n);
		}
	}
	if (rc == 0 && errno != 0) {
		set_err(errmsg, errlen, "wal: cannot list %s: %s", w->dir, strerror(errno));
		rc = WB_E_IO;
	}
	closedir(d);
	if (rc == WB_E_NOMEM)
		set_err(errmsg, errlen, "wal: out of memory");
	if (rc == 0 && w->nsegs > 1)
		qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seg);
	return rc;
}

/* Takes segs[i] out of the log: it becomes a spare when it has the
 * segments' size and there is room for one, else it is removed. The caller
 * fsyncs the directory. */
static int retire(struct wal *w, size_t i)
{
	char name[NAME_MAX_LEN], spare[NAME_MAX_LEN];
	seg_name(name, w->segs[i].first);
	if (w->segs[i].size == w->segment_size && w->nspares < w->spare_max) {
		if (push_spare(w, w->next_spare) != 0)
			return WB_E_NOMEM;
		spare_name(spare, w->spares[w->nspares - 1]);
		if (renameat(w->dirfd, name, w->dirfd, spare) != 0) {
			w->nspares--;
			return WB_E_IO;
		}
	} else {
		if (unlinkat(w->dirfd, name, 0) != 0)
			return WB_E_IO;
		w->removed++;
	}
	memmove(w->segs + i, w->segs + i + 1, (w->nsegs - i - 1) * sizeof(*w->segs));
	w->nsegs--;
	return 0;
}

/* ---------------------------------------------------------------- the walk */

struct walk {
	size_t seg;        /* the last segment walked into (NONE: none) */
	int fd;            /* its descriptor, which the caller closes */
	uint64_t limit;    /* the bytes of it that can hold records */
	uint64_t off;      /* where the walk stopped in it */
	uint64_t expected; /* the sequence it looked for there */
	uint64_t batch;    /* batch_first of the last record taken in it (0: none) */
	size_t bad;        /* the segment named `expected` whose header is bad (NONE) */
	const char *bad_why;
};

typedef int (*record_fn)(void *arg, const struct wal_record *r);

static int open_seg(struct wal *w, size_t i, int oflags, int *fd, uint64_t *fsize, char *errmsg,
                    size_t errlen)
{
	char name[NAME_MAX_LEN];
	struct stat sb;
	seg_name(name, w->segs[i].first);
	*fd = openat(w->dirfd, name, oflags | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &sb) != 0) {
		set_err(errmsg, errlen, "wal: cannot open %s/%s: %s", w->dir, name,
		        strerror(errno));
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return WB_E_IO;
	}
	*fsize = (uint64_t)sb.st_size;
	/* No read-ahead: the reads come 1 MiB at a time anyway, and pages it
	 * brought in past the written part would make SEEK_DATA (scan_rest())
	 * take the unwritten rest of the segment for data. */
	(void)posix_fadvise(*fd, 0, 0, POSIX_FADV_RANDOM);
	return 0;
}

/* Walks the records from segs[start] while each is the valid record with the
 * expected sequence, up to the record until; calls cb (when not NULL) for
 * those after w->applied. */
static int walk(struct wal *w, struct reader *r, size_t start, uint64_t until, int oflags,
                record_fn cb, void *arg, struct walk *e, char *errmsg, size_t errlen)
{
	int rc = 0;

	*e = (struct walk){.seg = NONE, .fd = -1, .bad = NONE, .expected = w->segs[start].first};
	for (size_t i = start; i < w->nsegs && w->segs[i].first == e->expected; i++) {
		int fd;
		uint64_t fsize, size = 0;
		const uint8_t *h;
		if ((rc = open_seg(w, i, oflags, &fd, &fsize, errmsg, errlen)) != 0)
			return rc;
		reader_reset(r, fd, fsize);
		e->bad_why = "it is shorter than a header";
		if (fsize >= WAL_SEGMENT_HEADER) {
			if ((rc = view(r, 0, HEADER_USED, &h)) != 0) {
				close(fd);
				set_err(errmsg, errlen, "wal: cannot read %s: %s", w->dir,
				        strerror(errno));
				return rc;
			}
			e->bad_why = check_header(h, w->segs[i].first, &size);
		}
		if (e->bad_why != NULL) {
			close(fd);
			e->bad = i;
			break;
		}
		if (e->fd >= 0)
			close(e->fd);
		w->segs[i].size = size;
		e->seg = i;
		e->fd = fd;
		e->limit = fsize < size ? fsize : size;
		e->off = WAL_SEGMENT_HEADER;
		e->batch = 0;
		r->limit = e->limit;
		while (e->expected <= until) {
			struct rec rec;
			bool valid;
			if ((rc = read_record(r, e->off, &rec, &valid)) != 0)
				goto err_read;
			if (!valid || rec.seq != e->expected ||
			    (rec.batch_first != rec.seq &&
			     (e->batch == 0 || rec.batch_first != e->batch)))
				break;
			if (cb != NULL && rec.seq > w->applied) {
				/* Never NULL, even for an empty body: a caller
				 * may memcpy or memcmp zero bytes from it. */
				static const uint8_t empty[1];
				const uint8_t *body = empty;
				if (rec.len > 0 &&
				    (rc = view(r, e->off + WAL_RECORD_HEADER, rec.len, &body)) != 0)
					goto err_read;
				struct wal_record wr = {.seq = rec.seq,
				                        .batch_first = rec.batch_first,
				                        .type = rec.type,
				                        .version = rec.version,
				                        .body = body,
				                        .len = rec.len};
				if ((rc = cb(arg, &wr)) != 0)
					return rc;
			}
			e->expected++;
			e->batch = rec.batch_first;
			e->off = rec.end;
		}
		reader_trim(r);
		if (e->expected > until)
			break;
	}
	return 0;

err_read:
	set_err(errmsg, errlen, "wal: cannot read %s/%016" PRIx64 ".wal at offset %" PRIu64 ": %s",
	        w->dir, w->segs[e->seg].first, e->off,
	        rc == WB_E_NOMEM ? "out of memory" : strerror(errno));
	return rc;
}

/* What lies after the end of the walk in one segment. */
struct rest {
	bool damage;         /* a valid record of a batch after `newer` */
	uint64_t damage_off; /* where */
	uint64_t damage_seq; /* its sequence and batch */
	uint64_t damage_batch;
	uint64_t torn_end;  /* end of the last valid record of a batch >= thr (0: none) */
	uint64_t first_old; /* first valid record of a batch < thr (limit: none) */
};

/* Looks at every 8-byte offset of [from, r->limit) for a valid record (a
 * valid one is stepped over whole). */
static int scan_rest(struct reader *r, uint64_t from, uint64_t newer, uint64_t thr,
                     struct rest *out)
{
	*out = (struct rest){.first_old = r->limit};
	for (uint64_t off = from; off + WAL_RECORD_HEADER <= r->limit;) {
		if (off < r->off || off >= r->off + r->len) {
			/* Allocated but unwritten (or sparse) ranges read as zeros
			 * and hold no record: skip them unread, or the kernel
			 * zeroes every page of them (half a 1 GiB segment's
			 * start-up). */
			off_t d = lseek(r->fd, (off_t)off, SEEK_DATA);
			if (d < 0 && errno == ENXIO)
				break;
			if (d > (off_t)off) {
				off = ((uint64_t)d + 7) & ~(uint64_t)7;
				continue;
			}
		}
		/* Only a slot that starts with the magic can hold a record:
		 * skip the others a window at a time (the rest of a segment is
		 * mostly zeros, and this runs over all of it at every start). */
		const uint8_t *p;
		/* Windows end on page boundaries (see view()). */
		size_t n = READ_CHUNK - (size_t)((off + READ_CHUNK) & 4095);
		if (n > r->limit - off)
			n = (size_t)(r->limit - off);
		int rc = view(r, off, n, &p);
		if (rc != 0)
			return rc;
		size_t k = 0;
		while (k + 4 <= n && (p[k] != 0x57 || get_u32(p + k) != WAL_RECORD_MAGIC))
			k += 8;
		off += k;
		if (k + 4 > n)
			continue;
		struct rec rec;
		bool valid;
		rc = read_record(r, off, &rec, &valid);
		if (rc != 0)
			return rc;
		if (!valid) {
			off += 8;
			continue;
		}
		if (rec.batch_first > newer) {
			out->damage = true;
			out->damage_off = off;
			out->damage_seq = rec.seq;
			out->damage_batch = rec.batch_first;
			return 0;
		}
		if (rec.batch_first >= thr)
			out->torn_end = rec.end;
		else if (out->first_old == r->limit)
			out->first_old = off;
		off = rec.end;
	}
	return 0;
}

/* Where the record a torn write left at off ends: off when its header slot
 * is all zeros (nothing of a batch was written there: every batch is written
 * with a header's worth of zeros after it), else where its length says (a
 * header's worth when the length is unreadable), clipped to `to`. */
static int torn_record_end(struct reader *r, uint64_t off, uint64_t to, uint64_t *end)
{
	const uint8_t *p;
	bool any = false;

	*end = off;
	if (off >= to)
		return 0;
	size_t n = to - off < WAL_RECORD_HEADER ? (size_t)(to - off) : WAL_RECORD_HEADER;
	int rc = view(r, off, n, &p);
	if (rc != 0)
		return rc;
	for (size_t k = 0; k < n; k++)
		any |= p[k] != 0;
	if (!any)
		return 0;
	uint64_t claim = WAL_RECORD_HEADER;
	if (n >= 12 && get_u32(p + 8) <= WAL_RECORD_MAX)
		claim += pad8(get_u32(p + 8));
	*end = claim < to - off ? off + claim : to;
	return 0;
}

static int zero_range(int fd, uint64_t from, uint64_t to)
{
	while (from < to) {
		size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
		if (pwrite_all(fd, zeros, n, from) != 0)
			return -1;
		from += n;
	}
	return 0;
}

/* ---------------------------------------------------------------- open */

#define PROCEED_CUT                                                                                \
	"To proceed, restore the data directory from a backup; or, knowingly losing record "       \
	"%" PRIu64 " and every record after it, truncate %s/%s to %" PRIu64                        \
	" bytes and move every segment named after it out of %s, then start again."

/* Scans the log (the file comment says how) and leaves w ready to write. */
static int recover(struct wal *w, uint64_t applied, struct wal_open_info *info, char *errmsg,
                   size_t errlen)
{
	struct reader r = {.fd = -1};
	struct walk e = {.seg = NONE, .fd = -1, .bad = NONE};
	char name[NAME_MAX_LEN], other[NAME_MAX_LEN];
	int rc = 0;

	w->last_seq = applied;
	if (w->nsegs == 0)
		goto out; /* an empty log continues after applied */

	size_t start = NONE;
	for (size_t i = 0; i < w->nsegs && w->segs[i].first <= applied + 1; i++)
		start = i;
	if (start == NONE) {
		seg_name(name, w->segs[0].first);
		set_err(errmsg, errlen,
		        "wal: the log in %s starts at record %" PRIu64 " (%s), but the store's "
		        "checkpoint covers only the records up to %" PRIu64 ": records %" PRIu64
		        " to %" PRIu64
		        " are missing. Put the missing segments back, or restore the "
		        "data directory from a backup.",
		        w->dir, w->segs[0].first, name, applied, applied + 1, w->segs[0].first - 1);
		return WB_E_CORRUPT;
	}

	rc = walk(w, &r, start, UINT64_MAX, O_RDWR, w->replay, w->replay_arg, &e, errmsg, errlen);
	if (rc != 0)
		goto out;
	uint64_t expected = e.expected;

	/* Evidence of damage after the end, in the segment it is in. */
	struct rest rest = {0};
	if (e.seg != NONE) {
		seg_name(name, w->segs[e.seg].first);
		reader_reset(&r, e.fd, e.limit);
		uint64_t thr = e.batch != 0 ? e.batch : expected;
		if ((rc = scan_rest(&r, e.off, expected, thr, &rest)) != 0) {
			set_err(errmsg, errlen, "wal: cannot read %s/%s: %s", w->dir, name,
			        rc == WB_E_NOMEM ? "out of memory" : strerror(errno));
			goto out;
		}
		if (rest.damage) {
			set_err(errmsg, errlen,
			        "wal: %s/%s is damaged at offset %" PRIu64 ": record %" PRIu64
			        " is not there, yet a valid record further on (record %" PRIu64
			        " of the batch from %" PRIu64 ", at offset %" PRIu64
			        ") shows that it had been made durable. Nothing was "
			        "changed. " PROCEED_CUT,
			        w->dir, name, e.off, expected, rest.damage_seq, rest.damage_batch,
			        rest.damage_off, expected, w->dir, name, e.off, w->dir);
			rc = WB_E_CORRUPT;
			goto out;
		}
	}
	/* A segment named after the expected record with a bad header: its
	 * preparation was cut short, unless a batch went in after it. */
	if (e.bad != NONE) {
		int fd;
		uint64_t fsize;
		struct rest bad;
		seg_name(other, w->segs[e.bad].first);
		if ((rc = open_seg(w, e.bad, O_RDONLY, &fd, &fsize, errmsg, errlen)) != 0)
			goto out;
		reader_reset(&r, fd, fsize);
		rc = scan_rest(&r, WAL_SEGMENT_HEADER, expected - 1, expected, &bad);
		close(fd);
		if (rc != 0) {
			set_err(errmsg, errlen, "wal: cannot read %s/%s: %s", w->dir, other,
			        rc == WB_E_NOMEM ? "out of memory" : strerror(errno));
			goto out;
		}
		if (bad.damage) {
			set_err(errmsg, errlen,
			        "wal: the header of %s/%s is damaged (%s), yet the segment holds "
			        "record "
			        "%" PRIu64 " at offset %" PRIu64
			        ", written after the header was made "
			        "durable. Nothing was changed. To proceed, restore the data "
			        "directory "
			        "from a backup; or, knowingly losing record %" PRIu64
			        " and every record "
			        "after it, move %s and every segment named after it out of %s, "
			        "then "
			        "start again.",
			        w->dir, other, e.bad_why, bad.damage_seq, bad.damage_off, expected,
			        other, w->dir);
			rc = WB_E_CORRUPT;
			goto out;
		}
	}
	/* Any other segment after the end: a hole, or segments that overlap. */
	size_t next = e.bad != NONE ? e.bad + 1 : e.seg + 1;
	if (next < w->nsegs) {
		seg_name(other, w->segs[next].first);
		if (e.seg != NONE) {
			set_err(errmsg, errlen,
			        "wal: the log ends in %s/%s at offset %" PRIu64
			        " before record %" PRIu64
			        ", but the next segment, %s, starts at record %" PRIu64
			        ": records are missing or damaged there. Nothing was "
			        "changed. " PROCEED_CUT,
			        w->dir, name, e.off, expected, other, w->segs[next].first, expected,
			        w->dir, name, e.off, w->dir);
		} else {
			set_err(errmsg, errlen,
			        "wal: segment %s/%016" PRIx64
			        ".wal is damaged (%s) and is followed by "
			        "%s. Nothing was changed. Restore the data directory from a "
			        "backup.",
			        w->dir, w->segs[e.bad].first, e.bad_why, other);
		}
		rc = WB_E_CORRUPT;
		goto out;
	}
	if (expected <= applied) {
		set_err(errmsg, errlen,
		        "wal: the log in %s ends before record %" PRIu64 " (%s at offset %" PRIu64
		        "), but the store's checkpoint covers the records up to %" PRIu64
		        ": the log has lost records that were durable. Nothing was changed. "
		        "Restore the data directory from a backup.",
		        w->dir, expected, e.seg != NONE ? name : "no segment",
		        e.seg != NONE ? e.off : 0, applied);
		rc = WB_E_CORRUPT;
		goto out;
	}

	/* The end is the end: cut the torn tail and make the segment durable. */
	if (e.seg != NONE) {
		uint64_t torn, end = rest.torn_end;
		reader_reset(&r, e.fd, e.limit);
		if ((rc = torn_record_end(&r, e.off, rest.first_old, &torn)) != 0) {
			set_err(errmsg, errlen, "wal: cannot read %s/%s: %s", w->dir, name,
			        rc == WB_E_NOMEM ? "out of memory" : strerror(errno));
			goto out;
		}
		if (torn > end)
			end = torn;
		if (end > e.off) {
			if (zero_range(e.fd, e.off, end) != 0) {
				set_err(errmsg, errlen,
				        "wal: cannot cut the torn tail of %s/%s: %s", w->dir, name,
				        strerror(errno));
				rc = WB_E_IO;
				goto out;
			}
			if (info != NULL) {
				info->cut_bytes = end - e.off;
				info->cut_offset = e.off;
				snprintf(info->cut_segment, sizeof(info->cut_segment), "%s", name);
			}
		}
		uint64_t size = w->segs[e.seg].size;
		w->cur_size = e.limit;
		if (e.limit < size && posix_fallocate(e.fd, 0, (off_t)size) == 0)
			w->cur_size = size;
		if (sync_fd(w, e.fd) != 0) {
			set_err(errmsg, errlen, "wal: fdatasync %s/%s: %s", w->dir, name,
			        strerror(errno));
			rc = WB_E_IO;
			goto out;
		}
		w->fd = e.fd;
		e.fd = -1;
		w->tail = e.off;
		w->zeroed = w->tail; /* unknown: zeroing ahead starts at the tail */
	}
	if (e.bad != NONE) {
		if ((rc = retire(w, e.bad)) != 0) {
			set_err(errmsg, errlen, "wal: cannot retire %s/%s: %s", w->dir, other,
			        rc == WB_E_NOMEM ? "out of memory" : strerror(errno));
			goto out;
		}
	}
	if (sync_dir(w) != 0) {
		set_err(errmsg, errlen, "wal: fsync %s: %s", w->dir, strerror(errno));
		rc = WB_E_IO;
		goto out;
	}
	w->last_seq = expected - 1;

out:
	if (e.fd >= 0)
		close(e.fd);
	free(r.buf);
	if (rc == 0 && info != NULL) {
		info->last_seq = w->nsegs > 0 && w->last_seq >= w->segs[0].first ? w->last_seq : 0;
		info->first_seq = info->last_seq != 0 ? w->segs[0].first : 0;
		info->records = w->last_seq > applied ? w->last_seq - applied : 0;
		info->segments = (unsigned)w->nsegs;
	}
	return rc;
}

int wal_open(struct wal **out, const struct wal_options *opts, uint64_t applied,
             struct wal_open_info *info, char *errmsg, size_t errlen)
{
	struct wal_open_info oi = {0};
	int rc;

	if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0') {
		set_err(errmsg, errlen, "wal: no directory given");
		return WB_E_INVAL;
	}
	uint64_t size = opts->segment_size != 0 ? opts->segment_size : WAL_SEGMENT_DEFAULT;
	if (size < WAL_SEGMENT_MIN || size > SEGMENT_MAX) {
		set_err(errmsg, errlen, "wal: segment size %" PRIu64 " is outside %u..%llu bytes",
		        size, WAL_SEGMENT_MIN, SEGMENT_MAX);
		return WB_E_INVAL;
	}
	struct wal *w = calloc(1, sizeof(*w));
	if (w == NULL)
		goto err_nomem;
	w->dir = strdup(opts->dir);
	if (w->dir == NULL)
		goto err_after_alloc;
	w->segment_size = size;
	w->spare_max = opts->spare_segments;
	w->no_sync = opts->no_sync;
	w->applied = applied;
	w->replay = opts->replay;
	w->replay_arg = opts->replay_arg;
	w->fd = -1;
	if (mkdir(w->dir, 0750) != 0 && errno != EEXIST) {
		set_err(errmsg, errlen, "wal: mkdir %s: %s", w->dir, strerror(errno));
		rc = WB_E_IO;
		goto err_after_dir;
	}
	w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		set_err(errmsg, errlen, "wal: cannot open %s: %s", w->dir, strerror(errno));
		rc = WB_E_IO;
		goto err_after_dir;
	}
	if ((rc = list_dir(w, errmsg, errlen)) != 0)
		goto err_after_open;
	if ((rc = recover(w, applied, &oi, errmsg, errlen)) != 0)
		goto err_after_open;
	if (info != NULL)
		*info = oi;
	*out = w;
	return 0;

err_after_open:
	if (w->fd >= 0)
		close(w->fd);
	close(w->dirfd);
err_after_dir:
	free(w->segs);
	free(w->spares);
	free(w->dir);
	free(w);
	return rc;
err_after_alloc:
	free(w);
err_nomem:
	set_err(errmsg, errlen, "wal: out of memory");
	return WB_E_NOMEM;
}

void wal_close(struct wal *w)
{
	if (w == NULL)
		return;
	if (w->zeroer_on)
		helper_stop(&w->zeroer);
	if (w->fd >= 0)
		close(w->fd);
	close(w->dirfd);
	free(w->batch);
	free(w->segs);
	free(w->spares);
	free(w->dir);
	free(w);
}

int wal_replay(struct wal *w, record_fn cb, void *arg)
{
	struct reader r = {.fd = -1};
	struct walk e;
	size_t start = NONE;

	if (w->last_seq <= w->applied)
		return 0;
	for (size_t i = 0; i < w->nsegs && w->segs[i].first <= w->applied + 1; i++)
		start = i;
	if (start == NONE)
		return WB_E_CORRUPT;
	int rc = walk(w, &r, start, w->last_seq, O_RDONLY, cb, arg, &e, NULL, 0);
	if (e.fd >= 0)
		close(e.fd);
	free(r.buf);
	if (rc == 0 && e.expected <= w->last_seq)
		rc = WB_E_CORRUPT; /* the log changed under us since the open */
	return rc;
}

/* ---------------------------------------------------------------- writing */

static void batch_reset(struct wal *w)
{
	w->blen = 0;
	w->brecords = 0;
	if (w->bcap > BATCH_KEEP) {
		free(w->batch);
		w->batch = NULL;
		w->bcap = 0;
	}
}

int wal_add(struct wal *w, uint16_t type, uint16_t version, const void *body, size_t len,
            uint64_t *seq)
{
	if (len > WAL_RECORD_MAX)
		return WB_E_INVAL;
	size_t total = WAL_RECORD_HEADER + (size_t)pad8(len);
	/* The buffer keeps room for the zeros wal_write() puts after a batch. */
	if (total + WAL_RECORD_HEADER > w->bcap - w->blen) {
		size_t cap = w->bcap > BATCH_INITIAL ? w->bcap : BATCH_INITIAL;
		while (cap < w->blen + total + WAL_RECORD_HEADER)
			cap *= 2;
		uint8_t *b = realloc(w->batch, cap);
		if (b == NULL)
			return WB_E_NOMEM;
		w->batch = b;
		w->bcap = cap;
	}
	uint8_t *p = w->batch + w->blen;
	uint64_t s = w->last_seq + 1 + w->brecords;
	put_u32(p, WAL_RECORD_MAGIC);
	put_u32(p + 8, (uint32_t)len);
	put_u16(p + 12, type);
	put_u16(p + 14, version);
	put_u64(p + 16, s);
	put_u64(p + 24, w->last_seq + 1);
	if (len > 0)
		memcpy(p + WAL_RECORD_HEADER, body, len);
	memset(p + WAL_RECORD_HEADER + len, 0, total - WAL_RECORD_HEADER - len);
	put_u32(p + 4, wal_crc32c(0, p + 8, WAL_RECORD_HEADER - 8 + len));
	w->blen += total;
	w->brecords++;
	if (seq != NULL)
		*seq = s;
	return 0;
}

void wal_discard(struct wal *w)
{
	batch_reset(w);
}

/* The zeroer's job: zeros over [zero_from, zero_to) of zero_name, made
 * durable through a descriptor of its own. */
static int zero_job(void *arg, char *why, size_t whylen)
{
	struct wal *w = arg;
	int fd = openat(w->dirfd, w->zero_name, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		set_err(why, whylen, "open: %s", strerror(errno));
		return WB_E_IO;
	}
	int rc = 0;
	if (zero_range(fd, w->zero_from, w->zero_to) != 0 || (!w->no_sync && fdatasync(fd) != 0)) {
		set_err(why, whylen, "%s", strerror(errno));
		rc = WB_E_IO;
	}
	close(fd);
	return rc;
}

/* Takes the zeroing job's result once it has ended (waiting for it with
 * wait). A failed job costs only speed: the rest of the segment is left to
 * the batches' own writes. */
static void zero_collect(struct wal *w, bool wait)
{
	int rc;
	if (!w->zero_out || !helper_take(&w->zeroer, wait, &rc, NULL, NULL))
		return;
	w->zero_out = false;
	w->zeroed = rc == 0 ? w->zero_to : w->cur_size;
}

/* Starts a zeroing job when less than ZERO_AHEAD of the current segment
 * beyond end (where the last write ended) is zeroed, and none runs. */
static void zero_ahead(struct wal *w, uint64_t end)
{
	zero_collect(w, false);
	if (w->zero_out || w->zeroed >= w->cur_size || w->zeroed >= end + ZERO_AHEAD)
		return;
	uint64_t from = w->zeroed > end ? w->zeroed : (end + 4095) & ~(uint64_t)4095;
	if (from >= w->cur_size) {
		w->zeroed = w->cur_size;
		return;
	}
	if (!w->zeroer_on) {
		if (helper_start(&w->zeroer, "wb-log-zero", zero_job, w) != 0) {
			w->zeroed = w->cur_size; /* no thread: no zeroing for this segment */
			return;
		}
		w->zeroer_on = true;
	}
	seg_name(w->zero_name, w->segs[w->nsegs - 1].first);
	w->zero_from = from;
	w->zero_to = w->cur_size - from > ZERO_CHUNK ? from + ZERO_CHUNK : w->cur_size;
	w->zero_out = true;
	helper_ask(&w->zeroer);
}

/* Makes segment `first` of `size` bytes the current one, prepared as the
 * file comment says. WB_E_NOSPC leaves everything as it was. */
static int switch_segment(struct wal *w, uint64_t first, uint64_t size)
{
	char name[NAME_MAX_LEN], tmp[NAME_MAX_LEN];
	uint8_t h[HEADER_USED];
	bool reuse = size == w->segment_size && w->nspares > 0;
	int fd, e;

	if (w->nsegs == w->segcap) {
		/* Room first, so that nothing can fail after the rename. */
		if (push_seg(w, 0, 0) != 0)
			return WB_E_NOMEM;
		w->nsegs--;
	}
	seg_name(name, first);
	if (reuse) {
		spare_name(tmp, w->spares[w->nspares - 1]);
		fd = openat(w->dirfd, tmp, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return WB_E_IO;
	} else {
		for (int tries = 0;; tries++) {
			spare_name(tmp, w->next_spare++);
			fd = openat(w->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
			if (fd >= 0 || errno != EEXIST || tries == 16)
				break;
		}
		if (fd < 0)
			return nospace(errno) ? WB_E_NOSPC : WB_E_IO;
	}
	e = posix_fallocate(fd, 0, (off_t)size);
	if (e != 0)
		goto err_after_open;
	memset(h, 0, sizeof(h));
	memcpy(h, seg_magic, sizeof(seg_magic));
	put_u32(h + 8, FORMAT);
	put_u64(h + 16, first);
	put_u64(h + 24, size);
	put_u32(h + 32, wal_crc32c(0, h, 32));
	/* The rest of a new file's header area is zeros already; a recycled
	 * one's is rewritten whole. */
	if (pwrite_all(fd, h, sizeof(h), 0) != 0 ||
	    (reuse && zero_range(fd, sizeof(h), WAL_SEGMENT_HEADER) != 0) ||
	    (!w->no_sync && fsync(fd) != 0) || renameat(w->dirfd, tmp, w->dirfd, name) != 0) {
		e = errno;
		goto err_after_open;
	}
	if (reuse)
		w->nspares--;
	w->segs[w->nsegs++] = (struct seg){.first = first, .size = size};
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	w->cur_size = size;
	w->tail = WAL_SEGMENT_HEADER;
	w->zeroed = reuse ? size : WAL_SEGMENT_HEADER;
	w->dirty = false;
	if (reuse)
		w->recycled++;
	else
		w->created++;
	/* Once renamed the segment is in the log: a failure from here on
	 * breaks it. */
	return sync_dir(w) != 0 ? WB_E_IO : 0;

err_after_open:
	close(fd);
	if (!reuse)
		unlinkat(w->dirfd, tmp, 0);
	return nospace(e) ? WB_E_NOSPC : WB_E_IO;
}

int wal_write(struct wal *w)
{
	int rc;

	if (w->blen == 0)
		return 0;
	if (w->broken) {
		batch_reset(w);
		return WB_E_IO;
	}
	if (w->dirty && (rc = wal_sync(w)) != 0)
		goto err;
	if (w->fd < 0 || w->blen > w->cur_size - w->tail) {
		zero_collect(w, true);
		uint64_t size = w->segment_size;
		if (WAL_SEGMENT_HEADER + w->blen > size)
			size = (WAL_SEGMENT_HEADER + w->blen + 4095) & ~(uint64_t)4095;
		if ((rc = switch_segment(w, w->last_seq + 1, size)) != 0)
			goto err;
	}
	size_t n = w->blen;
	if (WAL_RECORD_HEADER <= w->cur_size - w->tail - w->blen) {
		memset(w->batch + n, 0, WAL_RECORD_HEADER);
		n += WAL_RECORD_HEADER;
	}
	if (w->zero_out && w->tail + n > w->zero_from)
		zero_collect(w, true);
	ssize_t k;
	do
		k = pwrite(w->fd, w->batch, n, (off_t)w->tail);
	while (k < 0 && errno == EINTR);
	if (k < 0 && nospace(errno)) {
		/* Nothing went in: the log is as it was. */
		rc = WB_E_NOSPC;
		goto err;
	}
	if (k < 0 || ((size_t)k < n &&
	              pwrite_all(w->fd, w->batch + k, n - (size_t)k, w->tail + (uint64_t)k) != 0)) {
		rc = WB_E_IO;
		goto err;
	}
	uint64_t end = w->tail + n;
	w->tail += w->blen;
	w->dirty = true;
	w->last_seq += w->brecords;
	w->batches++;
	w->records += w->brecords;
	w->bytes += w->blen;
	w->since_release += w->blen;
	batch_reset(w);
	zero_ahead(w, end);
	return 0;

err:
	if (rc != WB_E_NOSPC)
		w->broken = true;
	batch_reset(w);
	return rc;
}

int wal_sync(struct wal *w)
{
	if (w->broken)
		return WB_E_IO;
	if (!w->dirty || w->no_sync) {
		w->dirty = false;
		return 0;
	}
	uint64_t t0 = now_us();
	if (fdatasync(w->fd) != 0) {
		w->broken = true;
		return WB_E_IO;
	}
	w->syncs++;
	w->sync_us += now_us() - t0;
	w->dirty = false;
	return 0;
}

uint64_t wal_last_seq(const struct wal *w)
{
	return w->last_seq;
}

uint64_t wal_bytes_since_release(const struct wal *w)
{
	return w->since_release;
}

int wal_release(struct wal *w, uint64_t applied)
{
	int rc = 0;
	size_t n = 0;

	while (w->nsegs > 0 && !(w->fd >= 0 && w->nsegs == 1)) {
		uint64_t upper = (w->nsegs > 1 ? w->segs[1].first : w->last_seq + 1) - 1;
		if (upper > applied)
			break;
		if ((rc = retire(w, 0)) != 0)
			break;
		n++;
	}
	if (n > 0 && sync_dir(w) != 0)
		rc = WB_E_IO;
	w->since_release = 0;
	return rc;
}

void wal_get_stats(const struct wal *w, struct wal_stats *out)
{
	*out = (struct wal_stats){
	        .last_seq = w->last_seq,
	        .batches = w->batches,
	        .records = w->records,
	        .bytes = w->bytes,
	        .syncs = w->syncs,
	        .sync_us_total = w->sync_us,
	        .segments = w->nsegs,
	        .spares = w->nspares,
	        .segments_created = w->created,
	        .segments_recycled = w->recycled,
	        .segments_removed = w->removed,
	};
	for (size_t i = 0; i < w->nsegs; i++)
		out->disk_bytes += w->segs[i].size;
	out->disk_bytes += w->nspares * w->segment_size;
}
