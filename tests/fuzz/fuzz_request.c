/* libFuzzer harness for what a connection does with the bytes a client
 * sends: frame decoding, Request unpacking under the server's allocation
 * budget, the wire-level string check, and the checks (server/validate.c)
 * an append, a read, a stream-info, a subscription, a consumer group, an
 * ack or nack, a read-model request and the ops of a commit or stage pass
 * before the server acts on them.
 *
 * The input is decoded twice: once as if it had all arrived in one read, and
 * once as a stream split at an offset derived from the input, through a
 * connection-style buffer that keeps the unfinished tail between reads. Both
 * must yield the same frames and end in the same state; a difference aborts,
 * as does any sanitizer report. Two more oracles: every string of a request
 * that passed wire_check_strings() is valid UTF-8 in full (no NUL cut it
 * short), and the UTF-8 validator agrees with an independent one written
 * from the Unicode standard's table of well-formed sequences. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consumers.h"
#include "events.h"
#include "frame.h"
#include "utf8.h"
#include "validate.h"
#include "wire.h"

/* The server's limit in this harness; larger inputs exercise FRAME_ERROR. */
#define MAX_FRAME (64u * 1024u)

/* The defaults of the --max-where-* settings. */
static const struct proj_where_limits WHERE_LIMITS = {
        .terms = 2000, .depth = 32, .in_list = 1000, .bytes = 64 * 1024, .literal = 16 * 1024};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The checks the server makes before it accepts an append (validate.c),
 * then a touch of every byte the writer would copy, so that a view that
 * lies about its length shows up under the sanitizers. */
static void check_append(const Whizbang__V1__AppendEvents *a)
{
	char why[256];
	struct ev_new *evs;
	size_t hint;

	if (validate_append(a, UINT64_MAX, MAX_FRAME - 1024, &evs, &hint, why, sizeof(why)) != 0)
		return;
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < a->n_events; i++) {
		for (size_t k = 0; k < evs[i].data_len; k++)
			sink ^= evs[i].data[k];
		for (size_t k = 0; k < evs[i].meta_len; k++)
			sink ^= evs[i].meta[k];
		for (size_t k = 0; k < evs[i].type_len; k++)
			sink ^= (uint8_t)evs[i].type[k];
		if (evs[i].id != NULL)
			for (size_t k = 0; k < EV_ID_LEN; k++)
				sink ^= evs[i].id[k];
	}
	(void)sink;
	free(evs);
}

static void check_read_all(const Whizbang__V1__ReadAll *r)
{
	char why[256];
	size_t type_lens[VALIDATE_MAX_FILTER_TYPES];
	struct ev_filter filter;

	if (validate_read_all(r, type_lens, &filter, why, sizeof(why)) != 0)
		return;
	volatile size_t sink = filter.prefix_len;
	for (size_t i = 0; i < filter.ntypes; i++)
		sink ^= (size_t)filter.types[i][filter.type_lens[i] - 1];
	(void)sink;
}

/* A Subscribe the server accepts has filters whose views cover what they
 * claim. */
static void check_subscribe(const Whizbang__V1__Subscribe *s)
{
	char why[256];
	size_t type_lens[VALIDATE_MAX_FILTER_TYPES];
	struct ev_filter filter;

	if (validate_subscribe(s, type_lens, &filter, why, sizeof(why)) != 0)
		return;
	volatile size_t sink = filter.prefix_len;
	for (size_t i = 0; i < filter.ntypes; i++)
		sink ^= (size_t)filter.types[i][filter.type_lens[i] - 1];
	(void)sink;
}

/* A consumer config the server accepts fills a record within the limits
 * the record's encoder checks. */
static void check_consumer(const Whizbang__V1__ConsumerConfig *in)
{
	char why[256];
	struct cons_record r;
	uint8_t buf[CONS_RECORD_MAX];
	size_t len;

	if (validate_consumer(in, &r, why, sizeof(why)) != 0)
		return;
	if (cons_encode(&r, buf, &len) != 0)
		abort();
}

/* Unicode 15, table 3-7: the well-formed UTF-8 byte sequences. Returns the
 * length of the sequence at s[0..n) or 0. */
static size_t ref_seq(const uint8_t *s, size_t n)
{
	static const struct {
		uint8_t lo[4];
		uint8_t hi[4];
		size_t len;
	} rows[] = {
	        {{0x00}, {0x7F}, 1},
	        {{0xC2, 0x80}, {0xDF, 0xBF}, 2},
	        {{0xE0, 0xA0, 0x80}, {0xE0, 0xBF, 0xBF}, 3},
	        {{0xE1, 0x80, 0x80}, {0xEC, 0xBF, 0xBF}, 3},
	        {{0xED, 0x80, 0x80}, {0xED, 0x9F, 0xBF}, 3},
	        {{0xEE, 0x80, 0x80}, {0xEF, 0xBF, 0xBF}, 3},
	        {{0xF0, 0x90, 0x80, 0x80}, {0xF0, 0xBF, 0xBF, 0xBF}, 4},
	        {{0xF1, 0x80, 0x80, 0x80}, {0xF3, 0xBF, 0xBF, 0xBF}, 4},
	        {{0xF4, 0x80, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF}, 4},
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		if (s[0] < rows[r].lo[0] || s[0] > rows[r].hi[0])
			continue;
		if (n < rows[r].len)
			return 0;
		for (size_t i = 1; i < rows[r].len; i++)
			if (s[i] < rows[r].lo[i] || s[i] > rows[r].hi[i])
				return 0;
		return rows[r].len;
	}
	return 0;
}

static bool ref_valid(const uint8_t *s, size_t n, size_t *bad)
{
	for (size_t i = 0; i < n;) {
		size_t k = ref_seq(s + i, n - i);
		if (k == 0) {
			*bad = i;
			return false;
		}
		i += k;
	}
	return true;
}

static void check_utf8(const uint8_t *s, size_t n)
{
	size_t bad = SIZE_MAX;
	size_t ref_bad = SIZE_MAX;
	bool ok = utf8_valid((const char *)s, n, &bad);
	if (ok != ref_valid(s, n, &ref_bad) || (!ok && bad != ref_bad))
		abort();
}

/* A string of a request that passed wire_check_strings(). */
static void check_clean(const char *s)
{
	size_t bad;
	if (s == NULL || !utf8_valid(s, strlen(s), &bad))
		abort();
}

/* Every string field of a Request (whizbang.proto). */
static void check_all_clean(const Whizbang__V1__Request *r)
{
	switch (r->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_HELLO:
		check_clean(r->hello->client_name);
		break;
	case WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS:
		check_clean(r->append_events->stream);
		for (size_t i = 0; i < r->append_events->n_events; i++)
			check_clean(r->append_events->events[i]->type);
		break;
	case WHIZBANG__V1__REQUEST__BODY_READ_STREAM:
		check_clean(r->read_stream->stream);
		break;
	case WHIZBANG__V1__REQUEST__BODY_READ_ALL:
		check_clean(r->read_all->stream_prefix);
		for (size_t i = 0; i < r->read_all->n_event_types; i++)
			check_clean(r->read_all->event_types[i]);
		break;
	case WHIZBANG__V1__REQUEST__BODY_GET_STREAM_INFO:
		check_clean(r->get_stream_info->stream);
		break;
	default:
		break;
	}
}

/* Unpacks one payload as dispatch() does and validates what decodes. */
static void handle_payload(const uint8_t *payload, uint32_t len)
{
	char why[256];
	size_t budget = (size_t)len * 16 + 65536;
	Whizbang__V1__Request *r = wire_unpack_request(payload, len, budget);

	if (r == NULL)
		return;
	if (wire_check_strings(&whizbang__v1__request__descriptor, payload, len, why,
	                       sizeof(why)) != 0) {
		whizbang__v1__request__free_unpacked(r, NULL);
		return;
	}
	check_all_clean(r);
	switch (r->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_HELLO:
		(void)strlen(r->hello->client_name);
		break;
	case WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS:
		check_append(r->append_events);
		break;
	case WHIZBANG__V1__REQUEST__BODY_READ_STREAM:
		(void)ev_check_stream_name(r->read_stream->stream, strlen(r->read_stream->stream),
		                           why, sizeof(why));
		break;
	case WHIZBANG__V1__REQUEST__BODY_READ_ALL:
		check_read_all(r->read_all);
		break;
	case WHIZBANG__V1__REQUEST__BODY_GET_STREAM_INFO:
		(void)ev_check_stream_name(r->get_stream_info->stream,
		                           strlen(r->get_stream_info->stream), why, sizeof(why));
		break;
	case WHIZBANG__V1__REQUEST__BODY_SUBSCRIBE:
		check_subscribe(r->subscribe);
		break;
	case WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER:
		check_consumer(r->create_consumer->config);
		break;
	case WHIZBANG__V1__REQUEST__BODY_ACK:
		(void)validate_ack(r->ack->ids, r->ack->n_ids, NULL, why, sizeof(why));
		break;
	case WHIZBANG__V1__REQUEST__BODY_NACK:
		(void)validate_ack(r->nack->ids, r->nack->n_ids, r->nack, why, sizeof(why));
		break;
	case WHIZBANG__V1__REQUEST__BODY_COMMIT:
		(void)validate_ops(r->commit->ops, r->commit->n_ops, &WHERE_LIMITS, why,
		                   sizeof(why));
		break;
	case WHIZBANG__V1__REQUEST__BODY_STAGE:
		(void)validate_ops(r->stage->ops, r->stage->n_ops, &WHERE_LIMITS, why, sizeof(why));
		break;
	case WHIZBANG__V1__REQUEST__BODY_GET_ENTITY:
	case WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES:
	case WHIZBANG__V1__REQUEST__BODY_EXPLAIN:
	case WHIZBANG__V1__REQUEST__BODY_LIST_INDEXES:
		(void)validate_read_model(r, &WHERE_LIMITS, why, sizeof(why));
		break;
	default:
		break;
	}
	whizbang__v1__request__free_unpacked(r, NULL);
}

/* What a run over the input yielded. */
struct outcome {
	size_t frames;
	uint64_t digest; /* over every payload's length and bytes, in order */
	bool error;      /* a frame above the limit closed the connection */
	uint32_t error_len;
	size_t left; /* bytes of an unfinished frame at the end */
};

static uint64_t mix(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001B3ull;
	return h;
}

static void record(struct outcome *o, const uint8_t *payload, uint32_t len)
{
	uint8_t l[4];
	frame_put_header(l, len);
	o->digest = mix(o->digest, l, sizeof(l));
	o->digest = mix(o->digest, payload, len);
	o->frames++;
}

/* Handles every whole frame at the front of buf[0..len); returns the bytes
 * used. Sets o->error when the connection would be closed. */
static size_t consume(const uint8_t *buf, size_t len, struct outcome *o, bool handle)
{
	size_t pos = 0;

	while (!o->error) {
		const uint8_t *payload;
		uint32_t plen = 0;
		size_t used;
		enum frame_status st =
		        frame_decode(buf + pos, len - pos, MAX_FRAME, &payload, &plen, &used);
		if (st == FRAME_AGAIN)
			break;
		if (st == FRAME_ERROR) {
			if (plen <= MAX_FRAME)
				abort(); /* an error for a frame within the limit */
			o->error = true;
			o->error_len = plen;
			break;
		}
		if (st != FRAME_OK || plen > MAX_FRAME || used != FRAME_HEADER + (size_t)plen ||
		    used > len - pos || payload != buf + pos + FRAME_HEADER)
			abort();
		record(o, payload, plen);
		if (handle)
			handle_payload(payload, plen);
		pos += used;
	}
	return pos;
}

/* The input as two reads into a connection buffer that grows to what it
 * holds, exactly, so that reads past the buffered bytes are caught. */
static void as_stream(const uint8_t *data, size_t size, size_t split, struct outcome *o)
{
	const size_t chunk_at[2] = {0, split};
	const size_t chunk_len[2] = {split, size - split};
	uint8_t *in = NULL;
	size_t in_len = 0;

	for (size_t c = 0; c < 2 && !o->error; c++) {
		size_t n = in_len + chunk_len[c];
		uint8_t *grown = malloc(n > 0 ? n : 1);
		if (grown == NULL)
			abort();
		if (in_len > 0)
			memcpy(grown, in, in_len);
		if (chunk_len[c] > 0)
			memcpy(grown + in_len, data + chunk_at[c], chunk_len[c]);
		free(in);
		in = grown;
		in_len = n;
		size_t used = consume(in, in_len, o, false);
		memmove(in, in + used, in_len - used);
		in_len -= used;
	}
	o->left = o->error ? 0 : in_len;
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole = {0};
	struct outcome split = {0};

	check_utf8(data, size);

	size_t used = consume(data, size, &whole, true);
	whole.left = whole.error ? 0 : size - used;

	uint64_t h = mix(0xCBF29CE484222325ull, data, size);
	as_stream(data, size, (size_t)(h % (size + 1)), &split);

	if (whole.frames != split.frames || whole.digest != split.digest ||
	    whole.error != split.error || whole.error_len != split.error_len ||
	    whole.left != split.left)
		abort();
	return 0;
}
