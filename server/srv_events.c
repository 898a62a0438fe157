/* Events (DESIGN.md §5): AppendEvents, ReadStream, ReadAll, GetStreamInfo,
 * the stream life cycle (GetStreamMetadata, SetStreamMetadata,
 * DeleteStream) and Scavenge.
 *
 * Happy path: reads are answered at once from a read snapshot on the loop,
 * packed while the snapshot is open (the answer points into it) and bounded
 * by --max-read-count, the frame and, for filtered $all pages, the events
 * examined. Appends and the stream writes are validated here and handed to
 * the writer; they are answered once their batch is durable. Scavenge is a
 * chain of writer ops, one bounded step each, so appends join the batches
 * in between: each step that comes back pushes progress (when the client
 * reads) and submits the next, until the log as it was at the start has
 * been walked; then the final answer. One scavenge at a time.
 *
 * Failure modes: a request that does not pass validate.c is answered
 * BAD_REQUEST; a missing or deleted stream NOT_FOUND or STREAM_DELETED; a
 * failed write the mapped error (WRONG_EXPECTED_VERSION with the actual
 * version). A connection that closes with writes at the writer gets no
 * answer; the writes are durable all the same. A scavenge stops at a
 * shutdown (what it removed stays removed) and answers SHUTTING_DOWN. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "pb.h"
#include "record.h"
#include "server.h"
#include "validate.h"
#include "wb_error.h"

/* Events a filtered ReadAll examines per page at most. */
#define MAX_EXAMINED 10000u
/* Events one scavenge step examines at most. */
#define SCAVENGE_STEP 1000u

struct scavenge;

struct events {
	struct srv *srv;
	struct scavenge *scavenge; /* the one running, or NULL */
	uint64_t appended;         /* events appended (acknowledged) */
};

/* ------------------------------------------------------------ reads */

static bool check_stream(struct conn *c, uint64_t id, const char *stream)
{
	char why[256];
	if (ev_check_stream_name(stream, strlen(stream), why, sizeof(why)) != 0) {
		srv_error(c, id, WB_BAD_REQUEST, "%s", why);
		return false;
	}
	return true;
}

static void stream_error(struct conn *c, uint64_t id, int rc, const char *stream, const char *what)
{
	if (rc == WB_E_NOTFOUND)
		srv_error(c, id, WB_NOT_FOUND, "stream '%s' does not exist", stream);
	else if (rc == WB_STREAM_DELETED)
		srv_error(c, id, WB_STREAM_DELETED, "stream '%s' is hard-deleted", stream);
	else
		srv_storage_error(c, id, rc, what);
}

static bool read_stream(void *state, struct conn *c, Request *req)
{
	struct events *ev = state;
	const Whizbang__V1__ReadStream *r = req->read_stream;
	if (!check_stream(c, req->id, r->stream))
		return false;
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(ev->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_storage_error(c, req->id, rc, "ReadStream");
		return false;
	}
	struct page p = {.budget = srv_page_budget(ev->srv)};
	struct ev_page page;
	rc = ev_read_stream(txn, r->stream, strlen(r->stream), r->from_version,
	                    r->direction == WHIZBANG__V1__DIRECTION__BACKWARD,
	                    srv_clamp_count(ev->srv, r->max_count), pb_page_event_cb, &p, &page);
	if (rc == WB_E_NOTFOUND) {
		srv_error(
		        c, req->id, WB_NOT_FOUND,
		        "stream '%s' does not exist or is soft-deleted (GetStreamInfo tells which)",
		        r->stream);
	} else if (rc != 0) {
		stream_error(c, req->id, rc, r->stream, "ReadStream");
	} else if (p.nomem) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "the server is out of memory; retry with a smaller max_count");
	} else {
		Whizbang__V1__ReadStreamResult res = WHIZBANG__V1__READ_STREAM_RESULT__INIT;
		res.n_events = p.n;
		res.events = (Whizbang__V1__RecordedEvent **)p.items;
		res.next_version = page.next;
		res.end_of_stream = page.end;
		res.last_version = page.last;
		SRV_REPLY(c, req->id, READ_STREAM, read_stream, &res);
	}
	/* Packed above: only now may the snapshot go. */
	storage_txn_abort(txn);
	page_free(&p);
	return false;
}

static bool read_all(void *state, struct conn *c, Request *req)
{
	struct events *ev = state;
	const Whizbang__V1__ReadAll *r = req->read_all;
	size_t type_lens[VALIDATE_MAX_FILTER_TYPES];
	struct ev_filter filter;
	char why[256];

	if (validate_read_all(r, type_lens, &filter, why, sizeof(why)) != 0) {
		srv_error(c, req->id, WB_BAD_REQUEST, "%s", why);
		return false;
	}
	/* An unfiltered page examines exactly what it returns; a filtered one
	 * is bounded so a selective filter cannot stall the loop. */
	filter.max_examined = filter.prefix_len == 0 && filter.ntypes == 0 ? 0 : MAX_EXAMINED;
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(ev->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc != 0) {
		srv_storage_error(c, req->id, rc, "ReadAll");
		return false;
	}
	struct page p = {.budget = srv_page_budget(ev->srv)};
	struct ev_page page;
	rc = ev_read_all(txn, r->from_position, r->direction == WHIZBANG__V1__DIRECTION__BACKWARD,
	                 srv_clamp_count(ev->srv, r->max_count), &filter, pb_page_event_cb, &p,
	                 &page);
	if (rc != 0) {
		srv_storage_error(c, req->id, rc, "ReadAll");
	} else if (p.nomem) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "the server is out of memory; retry with a smaller max_count");
	} else {
		Whizbang__V1__ReadAllResult res = WHIZBANG__V1__READ_ALL_RESULT__INIT;
		res.n_events = p.n;
		res.events = (Whizbang__V1__RecordedEvent **)p.items;
		res.next_position = page.next;
		res.end_of_log = page.end;
		res.last_position = page.last;
		SRV_REPLY(c, req->id, READ_ALL, read_all, &res);
	}
	storage_txn_abort(txn);
	page_free(&p);
	return false;
}

/* Reads stream's info in a snapshot of its own. */
static int stream_info(struct events *ev, const char *stream, struct ev_stream_info *info)
{
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(ev->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = ev_stream_info(txn, stream, strlen(stream), info);
		storage_txn_abort(txn);
	}
	return rc;
}

static void meta_pb(const struct ev_stream_meta *m, Whizbang__V1__StreamMetadata *md)
{
	whizbang__v1__stream_metadata__init(md);
	md->max_count = m->max_count;
	md->max_age_ms = m->max_age_ms;
	md->truncate_before = m->truncate_before;
}

static bool get_stream_info(void *state, struct conn *c, Request *req)
{
	const Whizbang__V1__GetStreamInfo *r = req->get_stream_info;
	struct ev_stream_info info;
	if (!check_stream(c, req->id, r->stream))
		return false;
	int rc = stream_info(state, r->stream, &info);
	if (rc != 0) {
		stream_error(c, req->id, rc, r->stream, "GetStreamInfo");
		return false;
	}
	Whizbang__V1__StreamMetadata md;
	meta_pb(&info.meta, &md);
	Whizbang__V1__StreamInfo si = WHIZBANG__V1__STREAM_INFO__INIT;
	si.stream = r->stream;
	si.last_version = info.count - 1;
	si.event_count = info.count;
	si.first_position = info.first_position;
	si.last_position = info.last_position;
	si.created_us = info.created_us;
	si.updated_us = info.updated_us;
	si.deleted = info.deleted;
	si.tombstoned = info.tombstoned;
	si.metadata = &md;
	SRV_REPLY(c, req->id, STREAM_INFO, stream_info, &si);
	return false;
}

static void reply_stream_meta(struct conn *c, uint64_t id, const char *stream,
                              const struct ev_stream_meta *m)
{
	Whizbang__V1__StreamMetadata md;
	meta_pb(m, &md);
	Whizbang__V1__StreamMetadataResult r = WHIZBANG__V1__STREAM_METADATA_RESULT__INIT;
	r.stream = (char *)stream;
	r.metadata = &md;
	SRV_REPLY(c, id, STREAM_METADATA, stream_metadata, &r);
}

static bool get_stream_meta(void *state, struct conn *c, Request *req)
{
	const Whizbang__V1__GetStreamMetadata *r = req->get_stream_metadata;
	struct ev_stream_info info;
	if (!check_stream(c, req->id, r->stream))
		return false;
	int rc = stream_info(state, r->stream, &info);
	if (rc == 0 && info.tombstoned)
		rc = WB_STREAM_DELETED;
	if (rc != 0)
		stream_error(c, req->id, rc, r->stream, "GetStreamMetadata");
	else
		reply_stream_meta(c, req->id, r->stream, &info.meta);
	return false;
}

/* ------------------------------------------------------------ appends */

/* An append's record: the stream, the expectation, the time of the append
 * and every event with its id (the ids the client left out are generated
 * when the record is made, so that applying it again stores the same ones).
 *
 *   stream bytes | u8 expected | u64 expected version | u64 time us |
 *   u32 n | n × (16-byte id | type bytes | data bytes | metadata bytes) */
#define APPEND_REC_VERSION 1

static int append_record(const Whizbang__V1__AppendEvents *a, const struct ev_new *evs, size_t n,
                         uint64_t now_us, uint8_t **out, size_t *len)
{
	struct rec_builder b = {0};
	rec_bytes(&b, a->stream, strlen(a->stream));
	rec_u8(&b, (uint8_t)a->expected);
	rec_u64(&b, a->expected_version);
	rec_u64(&b, now_us);
	rec_u32(&b, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t gen[EV_ID_LEN];
		const uint8_t *id = evs[i].id;
		if (id == NULL) {
			ev_uuid7(gen, now_us / 1000);
			id = gen;
		}
		rec_raw(&b, id, EV_ID_LEN);
		rec_bytes(&b, evs[i].type, evs[i].type_len);
		rec_bytes(&b, evs[i].data, evs[i].data_len);
		rec_bytes(&b, evs[i].meta, evs[i].meta_len);
	}
	return rec_out(&b, out, len);
}

/* Applies an append's record; *out receives what ev_append() found. */
static int append_rec_apply(struct storage_txn *txn, const uint8_t *rec, size_t len,
                            struct ev_append_result *out)
{
	struct rec_reader r = rec_reader(rec, len);
	size_t stream_len;
	const char *stream = (const char *)rec_get_bytes(&r, &stream_len);
	uint8_t expected = rec_get_u8(&r);
	uint64_t expected_version = rec_get_u64(&r);
	uint64_t now_us = rec_get_u64(&r);
	uint32_t n = rec_get_u32(&r);
	/* Each event takes at least 28 bytes of the record. */
	if (r.bad || n == 0 || n > (len - r.off) / 28)
		return WB_E_CORRUPT;
	struct ev_new small[16];
	struct ev_new *evs = n <= 16 ? small : malloc(n * sizeof(*evs));
	if (evs == NULL)
		return WB_E_NOMEM;
	for (uint32_t i = 0; i < n; i++) {
		evs[i].id = rec_take(&r, EV_ID_LEN);
		evs[i].type = (const char *)rec_get_bytes(&r, &evs[i].type_len);
		evs[i].data = rec_get_bytes(&r, &evs[i].data_len);
		evs[i].meta = rec_get_bytes(&r, &evs[i].meta_len);
	}
	int rc = rec_ok(&r) ? ev_append(txn, stream, stream_len, (enum ev_expected)expected,
	                                expected_version, evs, n, now_us, out)
	                    : WB_E_CORRUPT;
	if (evs != small)
		free(evs);
	return rc;
}

static int append_replay(struct storage_txn *txn, uint16_t version, const uint8_t *rec, size_t len)
{
	struct ev_append_result res;
	(void)version;
	return append_rec_apply(txn, rec, len, &res);
}

struct append_op {
	struct srv_op base; /* first */
	struct events *ev;
	uint8_t *rec;
	size_t nevs;
	struct ev_append_result result;
};

/* Runs on the writer thread. */
static int append_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct append_op *op = (struct append_op *)base;
	return append_rec_apply(txn, base->rec, base->rec_len, &op->result);
}

static void append_done(struct srv *srv, struct srv_op *base)
{
	struct append_op *op = (struct append_op *)base;
	struct conn *c = base->conn;
	int rc = base->base.status;
	(void)srv;
	if (rc == 0 && !op->result.replay)
		op->ev->appended += op->nevs;
	if (conn_is_closing(c)) {
		/* durable all the same; the answer has nowhere to go */
	} else if (rc == 0) {
		Whizbang__V1__AppendResult r = WHIZBANG__V1__APPEND_RESULT__INIT;
		r.first_position = op->result.first_position;
		r.last_position = op->result.last_position;
		r.stream_version = op->result.stream_version;
		r.idempotent_replay = op->result.replay;
		SRV_REPLY(c, base->req_id, APPEND_EVENTS, append_events, &r);
	} else if (rc == WB_WRONG_EXPECTED_VERSION) {
		srv_error_version(c, base->req_id, rc, op->result.actual_version, "%s",
		                  op->result.errmsg);
	} else if (rc < 100 && op->result.errmsg[0] != '\0') {
		srv_error(c, base->req_id, rc, "%s", op->result.errmsg);
	} else {
		srv_storage_error(c, base->req_id, rc, "AppendEvents");
	}
	free(op->rec);
	free(op);
}

static bool append(void *state, struct conn *c, Request *req)
{
	struct events *ev = state;
	char why[256];
	struct ev_new *evs;
	size_t bytes;

	int rc = validate_append(req->append_events, srv_config(ev->srv)->max_append_events,
	                         srv_max_event_size(ev->srv), &evs, &bytes, why, sizeof(why));
	if (rc != 0) {
		srv_error(c, req->id, rc == WB_E_NOMEM ? WB_RESOURCE_EXHAUSTED : rc, "%s", why);
		return false;
	}
	struct append_op *op = calloc(1, sizeof(*op));
	size_t n = req->append_events->n_events;
	if (op == NULL || append_record(req->append_events, evs, n, srv_wall_us(), &op->rec,
	                                &op->base.base.rec_len) != 0) {
		free(op);
		free(evs);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	free(evs);
	op->base.base.apply = append_apply;
	op->base.base.size_hint = bytes;
	op->base.base.rec_type = SRV_REC_APPEND;
	op->base.base.rec_version = APPEND_REC_VERSION;
	op->base.base.rec = op->rec;
	op->base.done = append_done;
	op->base.conn = c;
	op->base.req_id = req->id;
	op->ev = ev;
	op->nevs = n;
	srv_submit(ev->srv, &op->base);
	return false; /* the record holds all the op needs */
}

/* ------------------------------------------------------------ stream writes */

/* The records of SetStreamMetadata (stream bytes | u64 max count | u64 max
 * age ms | u64 truncate before) and DeleteStream (stream bytes | u8 hard). */
#define STREAM_REC_VERSION 1

static int stream_rec_apply(struct storage_txn *txn, uint16_t type, const uint8_t *rec, size_t len,
                            uint64_t *last_version)
{
	struct rec_reader r = rec_reader(rec, len);
	size_t stream_len;
	const char *stream = (const char *)rec_get_bytes(&r, &stream_len);
	if (type == SRV_REC_STREAM_META) {
		struct ev_stream_meta m = {0};
		m.max_count = rec_get_u64(&r);
		m.max_age_ms = rec_get_u64(&r);
		m.truncate_before = rec_get_u64(&r);
		return rec_ok(&r) ? ev_set_stream_meta(txn, stream, stream_len, &m) : WB_E_CORRUPT;
	}
	bool hard = rec_get_u8(&r) != 0;
	return rec_ok(&r) ? ev_delete_stream(txn, stream, stream_len, hard, last_version)
	                  : WB_E_CORRUPT;
}

static int stream_meta_replay(struct storage_txn *txn, uint16_t version, const uint8_t *rec,
                              size_t len)
{
	(void)version;
	return stream_rec_apply(txn, SRV_REC_STREAM_META, rec, len, NULL);
}

static int stream_delete_replay(struct storage_txn *txn, uint16_t version, const uint8_t *rec,
                                size_t len)
{
	uint64_t last;
	(void)version;
	return stream_rec_apply(txn, SRV_REC_STREAM_DELETE, rec, len, &last);
}

struct stream_op {
	struct srv_op base; /* first */
	Request *req;
	uint8_t *rec;
	struct ev_stream_meta meta;
	uint64_t last_version;
};

static const char *stream_of(const Request *req)
{
	return req->body_case == WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA
	               ? req->set_stream_metadata->stream
	               : req->delete_stream->stream;
}

/* Runs on the writer thread. */
static int stream_op_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct stream_op *op = (struct stream_op *)base;
	return stream_rec_apply(txn, base->rec_type, base->rec, base->rec_len, &op->last_version);
}

static void stream_op_done(struct srv *srv, struct srv_op *base)
{
	struct stream_op *op = (struct stream_op *)base;
	struct conn *c = base->conn;
	int rc = base->base.status;
	bool set = op->req->body_case == WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA;
	(void)srv;
	if (conn_is_closing(c)) {
		/* durable; nobody to tell */
	} else if (rc != 0) {
		stream_error(c, base->req_id, rc, stream_of(op->req),
		             set ? "SetStreamMetadata" : "DeleteStream");
	} else if (set) {
		reply_stream_meta(c, base->req_id, stream_of(op->req), &op->meta);
	} else {
		Whizbang__V1__DeleteStreamResult r = WHIZBANG__V1__DELETE_STREAM_RESULT__INIT;
		r.last_version = op->last_version;
		SRV_REPLY(c, base->req_id, DELETE_STREAM, delete_stream, &r);
	}
	whizbang__v1__request__free_unpacked(op->req, NULL);
	free(op->rec);
	free(op);
}

/* SetStreamMetadata and DeleteStream: validated, then written. */
static bool stream_write(void *state, struct conn *c, Request *req)
{
	struct events *ev = state;
	const char *stream = stream_of(req);
	if (!check_stream(c, req->id, stream))
		return false;
	struct stream_op *op = calloc(1, sizeof(*op));
	if (op == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	bool set = req->body_case == WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA;
	if (set && req->set_stream_metadata->metadata != NULL) {
		const Whizbang__V1__StreamMetadata *m = req->set_stream_metadata->metadata;
		op->meta.max_count = m->max_count;
		op->meta.max_age_ms = m->max_age_ms;
		op->meta.truncate_before = m->truncate_before;
	}
	struct rec_builder b = {0};
	rec_bytes(&b, stream, strlen(stream));
	if (set) {
		rec_u64(&b, op->meta.max_count);
		rec_u64(&b, op->meta.max_age_ms);
		rec_u64(&b, op->meta.truncate_before);
	} else {
		rec_u8(&b, req->delete_stream->hard ? 1 : 0);
	}
	if (rec_out(&b, &op->rec, &op->base.base.rec_len) != 0) {
		free(op);
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	op->base.base.apply = stream_op_apply;
	op->base.base.size_hint = 4096;
	op->base.base.rec_type = set ? SRV_REC_STREAM_META : SRV_REC_STREAM_DELETE;
	op->base.base.rec_version = STREAM_REC_VERSION;
	op->base.base.rec = op->rec;
	op->base.done = stream_op_done;
	op->base.conn = c;
	op->base.req_id = req->id;
	op->req = req;
	srv_submit(ev->srv, &op->base);
	return true;
}

/* ------------------------------------------------------------ scavenge */

struct scavenge {
	struct srv_op base; /* first */
	struct events *ev;
	uint64_t start_us; /* removal is judged as of this time */
	uint64_t start_ns; /* uv_hrtime() at the start */
	uint64_t upto;     /* the log's last position at the start */
	uint64_t from;     /* where the next step starts */
	uint64_t examined, removed, bytes;
	struct ev_scavenge_step step; /* rewritten by every run of a step */
	uint8_t rec[28];              /* the step's record */
};

/* A step's record: u64 from | u64 upto | u32 events at most | u64 now us
 * (the time removal is judged at). */
#define SCAVENGE_REC_VERSION 1

static int scavenge_rec_apply(struct storage_txn *txn, const uint8_t *rec, size_t len,
                              struct ev_scavenge_step *out)
{
	if (len != 28)
		return WB_E_CORRUPT;
	return ev_scavenge_step(txn, get_u64(rec), get_u64(rec + 8), get_u32(rec + 16),
	                        get_u64(rec + 20), out);
}

static int scavenge_replay(struct storage_txn *txn, uint16_t version, const uint8_t *rec,
                           size_t len)
{
	struct ev_scavenge_step step;
	(void)version;
	return scavenge_rec_apply(txn, rec, len, &step);
}

/* Runs on the writer thread. */
static int scavenge_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct scavenge *sc = (struct scavenge *)base;
	return scavenge_rec_apply(txn, base->rec, base->rec_len, &sc->step);
}

/* Stamps the next step's record and hands it to the writer. */
static void scavenge_submit(struct srv *srv, struct scavenge *sc)
{
	/* A wall clock that stepped back must not judge an event older than it
	 * was at the start. */
	uint64_t now = srv_wall_us();
	if (now > sc->start_us)
		now = sc->start_us;
	put_u64(sc->rec, sc->from);
	put_u64(sc->rec + 8, sc->upto);
	put_u32(sc->rec + 16, SCAVENGE_STEP);
	put_u64(sc->rec + 20, now);
	sc->base.base.rec = sc->rec;
	sc->base.base.rec_len = sizeof(sc->rec);
	srv_submit(srv, &sc->base);
}

static void reply_scavenge(struct conn *c, const struct scavenge *sc, bool done)
{
	Whizbang__V1__ScavengeResult r = WHIZBANG__V1__SCAVENGE_RESULT__INIT;
	r.events_examined = sc->examined;
	r.events_removed = sc->removed;
	r.bytes_reclaimed = sc->bytes;
	r.micros = (uv_hrtime() - sc->start_ns) / 1000u;
	r.position = done ? sc->upto : (sc->from > 0 ? sc->from - 1 : 0);
	r.last_position = sc->upto;
	r.done = done;
	SRV_REPLY(c, sc->base.req_id, SCAVENGE, scavenge, &r);
}

static void scavenge_done(struct srv *srv, struct srv_op *base)
{
	struct scavenge *sc = (struct scavenge *)base;
	struct conn *c = base->conn;
	int rc = base->base.status;

	if (rc == 0) {
		sc->examined += sc->step.examined;
		sc->removed += sc->step.removed;
		sc->bytes += sc->step.bytes;
		sc->from = sc->step.next;
	}
	bool finished = rc != 0 || sc->step.done || conn_is_closing(c) || srv_shutting_down(srv);
	if (!finished) {
		/* Progress is a courtesy: a client that does not read its answers
		 * gets none rather than a growing buffer. */
		if (conn_can_take_more(c))
			reply_scavenge(c, sc, false);
		scavenge_submit(srv, sc);
		return;
	}
	srv_log(WB_LOG_INFO, "scavenge_end",
	        "conn=%llu examined=%llu removed=%llu bytes=%llu position=%llu last_position=%llu "
	        "status=%s",
	        (unsigned long long)conn_id(c), (unsigned long long)sc->examined,
	        (unsigned long long)sc->removed, (unsigned long long)sc->bytes,
	        (unsigned long long)sc->from, (unsigned long long)sc->upto,
	        rc == 0 ? (sc->step.done ? "done" : "stopped") : wb_error_name(rc));
	if (conn_is_closing(c))
		; /* what it removed stays removed */
	else if (rc != 0)
		srv_storage_error(c, base->req_id, rc, "Scavenge");
	else if (sc->step.done)
		reply_scavenge(c, sc, true);
	else
		srv_error(
		        c, base->req_id, WB_SHUTTING_DOWN,
		        "the server is shutting down: the scavenge stopped before position %llu of "
		        "%llu after removing %llu events (%llu bytes), which stay removed; run it "
		        "again after the restart",
		        (unsigned long long)sc->from, (unsigned long long)sc->upto,
		        (unsigned long long)sc->removed, (unsigned long long)sc->bytes);
	sc->ev->scavenge = NULL;
	free(sc);
}

static bool scavenge(void *state, struct conn *c, Request *req)
{
	struct events *ev = state;
	if (ev->scavenge != NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED,
		          "a scavenge is running already (at position %llu of %llu): one at a time",
		          (unsigned long long)ev->scavenge->from,
		          (unsigned long long)ev->scavenge->upto);
		return false;
	}
	struct scavenge *sc = calloc(1, sizeof(*sc));
	if (sc == NULL) {
		srv_error(c, req->id, WB_RESOURCE_EXHAUSTED, "the server is out of memory");
		return false;
	}
	struct storage_txn *txn;
	int rc = storage_txn_begin(srv_storage(ev->srv), NULL, STORAGE_RDONLY, &txn);
	if (rc == 0) {
		rc = ev_last_position(txn, &sc->upto);
		storage_txn_abort(txn);
	}
	if (rc != 0) {
		free(sc);
		srv_storage_error(c, req->id, rc, "Scavenge");
		return false;
	}
	sc->ev = ev;
	sc->start_us = srv_wall_us();
	sc->start_ns = uv_hrtime();
	sc->from = 1;
	sc->base.base.apply = scavenge_apply;
	sc->base.base.size_hint = 1u << 20;
	sc->base.base.rec_type = SRV_REC_SCAVENGE;
	sc->base.base.rec_version = SCAVENGE_REC_VERSION;
	sc->base.done = scavenge_done;
	sc->base.conn = c;
	sc->base.req_id = req->id;
	ev->scavenge = sc;
	srv_log(WB_LOG_INFO, "scavenge_start", "conn=%llu last_position=%llu",
	        (unsigned long long)conn_id(c), (unsigned long long)sc->upto);
	scavenge_submit(ev->srv, sc);
	return false;
}

/* ------------------------------------------------------------ the module */

static int events_init(void *state, struct srv *srv, unsigned slot, char *errmsg, size_t errlen)
{
	struct events *ev = state;
	(void)slot;
	(void)errmsg;
	(void)errlen;
	ev->srv = srv;
	return 0;
}

static void events_stats(void *state, Whizbang__V1__ServerStats *s)
{
	const struct events *ev = state;
	s->batch_events = ev->appended;
}

static const struct srv_handler events_handlers[] = {
        {WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS, append},
        {WHIZBANG__V1__REQUEST__BODY_READ_STREAM, read_stream},
        {WHIZBANG__V1__REQUEST__BODY_READ_ALL, read_all},
        {WHIZBANG__V1__REQUEST__BODY_GET_STREAM_INFO, get_stream_info},
        {WHIZBANG__V1__REQUEST__BODY_GET_STREAM_METADATA, get_stream_meta},
        {WHIZBANG__V1__REQUEST__BODY_SET_STREAM_METADATA, stream_write},
        {WHIZBANG__V1__REQUEST__BODY_DELETE_STREAM, stream_write},
        {WHIZBANG__V1__REQUEST__BODY_SCAVENGE, scavenge},
};

static const struct srv_record events_records[] = {
        {SRV_REC_APPEND, APPEND_REC_VERSION, append_replay},
        {SRV_REC_STREAM_META, STREAM_REC_VERSION, stream_meta_replay},
        {SRV_REC_STREAM_DELETE, STREAM_REC_VERSION, stream_delete_replay},
        {SRV_REC_SCAVENGE, SCAVENGE_REC_VERSION, scavenge_replay},
};

const struct srv_module srv_events_module = {
        .name = "events",
        .size = sizeof(struct events),
        .init = events_init,
        .stats = events_stats,
        .handlers = events_handlers,
        .nhandlers = sizeof(events_handlers) / sizeof(events_handlers[0]),
        .records = events_records,
        .nrecords = sizeof(events_records) / sizeof(events_records[0]),
};
