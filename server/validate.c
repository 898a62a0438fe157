#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "value.h"
#include "wb_error.h"

int validate_append(const Whizbang__V1__AppendEvents *a, uint64_t max_events,
                    uint32_t max_event_size, struct ev_new **evs_out, size_t *size_hint, char *why,
                    size_t whylen)
{
	char sub[200];
	size_t slen = strlen(a->stream);

	if (ev_check_stream_name(a->stream, slen, why, whylen) != 0)
		return WB_BAD_REQUEST;
	if (a->n_events == 0) {
		snprintf(why, whylen, "an append needs at least one event");
		return WB_BAD_REQUEST;
	}
	if (a->n_events > max_events) {
		snprintf(why, whylen,
		         "the append holds %zu events: at most %llu are allowed "
		         "(--max-append-events); split it",
		         a->n_events, (unsigned long long)max_events);
		return WB_BAD_REQUEST;
	}
	if ((unsigned)a->expected > WHIZBANG__V1__EXPECTED_VERSION__EXACT) {
		snprintf(why, whylen, "unknown expected-version kind %d", (int)a->expected);
		return WB_BAD_REQUEST;
	}
	struct ev_new *evs = calloc(a->n_events, sizeof(*evs));
	if (evs == NULL) {
		snprintf(why, whylen, "the server is out of memory");
		return WB_E_NOMEM;
	}
	size_t bytes = 0;
	for (size_t i = 0; i < a->n_events; i++) {
		const Whizbang__V1__NewEvent *e = a->events[i];
		size_t tlen = strlen(e->type);
		if (ev_check_type(e->type, tlen, sub, sizeof(sub)) != 0) {
			snprintf(why, whylen, "event %zu: %s", i, sub);
			goto err_after_alloc;
		}
		if (e->id.len != 0 && e->id.len != EV_ID_LEN) {
			snprintf(why, whylen,
			         "event %zu: the id is %zu bytes: give 16 bytes or none", i,
			         e->id.len);
			goto err_after_alloc;
		}
		size_t size = slen + tlen + e->data.len + e->metadata.len;
		if (size > max_event_size) {
			snprintf(why, whylen,
			         "event %zu is %zu bytes (stream name, type, data and metadata): "
			         "at most %u are allowed",
			         i, size, max_event_size);
			goto err_after_alloc;
		}
		evs[i] = (struct ev_new){
		        .id = e->id.len == EV_ID_LEN ? e->id.data : NULL,
		        .type = e->type,
		        .type_len = tlen,
		        .data = e->data.data,
		        .data_len = e->data.len,
		        .meta = e->metadata.data,
		        .meta_len = e->metadata.len,
		};
		bytes += size + EV_RECORD_HEADER + 64;
	}
	*evs_out = evs;
	*size_hint = bytes;
	return 0;

err_after_alloc:
	free(evs);
	return WB_BAD_REQUEST;
}

int validate_read_all(const Whizbang__V1__ReadAll *r, size_t *type_lens, struct ev_filter *filter,
                      char *why, size_t whylen)
{
	char sub[200];

	if (r->n_event_types > VALIDATE_MAX_FILTER_TYPES) {
		snprintf(why, whylen, "%zu event types given: at most %u may be", r->n_event_types,
		         VALIDATE_MAX_FILTER_TYPES);
		return WB_BAD_REQUEST;
	}
	for (size_t i = 0; i < r->n_event_types; i++) {
		type_lens[i] = strlen(r->event_types[i]);
		if (ev_check_type(r->event_types[i], type_lens[i], sub, sizeof(sub)) != 0) {
			snprintf(why, whylen, "event_types[%zu]: %s", i, sub);
			return WB_BAD_REQUEST;
		}
	}
	size_t plen = strlen(r->stream_prefix);
	if (plen > EV_STREAM_MAX) {
		snprintf(why, whylen, "the stream prefix is %zu bytes: at most %u", plen,
		         EV_STREAM_MAX);
		return WB_BAD_REQUEST;
	}
	*filter = (struct ev_filter){
	        .prefix = r->stream_prefix,
	        .prefix_len = plen,
	        .types = (const char *const *)r->event_types,
	        .type_lens = type_lens,
	        .ntypes = r->n_event_types,
	};
	return 0;
}

int validate_subscribe(const Whizbang__V1__Subscribe *r, size_t *type_lens,
                       struct ev_filter *filter, char *why, size_t whylen)
{
	size_t stream_len = strlen(r->stream);
	memset(filter, 0, sizeof(*filter));
	switch (r->target) {
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL: {
		if (stream_len > 0) {
			snprintf(why, whylen,
			         "stream is for TARGET_STREAM only; a $all subscription filters "
			         "with "
			         "stream_prefix");
			return WB_BAD_REQUEST;
		}
		/* The same filter checks as ReadAll. */
		Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
		ra.stream_prefix = r->stream_prefix;
		ra.n_event_types = r->n_event_types;
		ra.event_types = r->event_types;
		if (validate_read_all(&ra, type_lens, filter, why, whylen) != 0)
			return WB_BAD_REQUEST;
		break;
	}
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM: {
		char sub[200];
		if (ev_check_stream_name(r->stream, stream_len, sub, sizeof(sub)) != 0) {
			snprintf(why, whylen, "stream: %s", sub);
			return WB_BAD_REQUEST;
		}
		break;
	}
	case WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER:
		if (stream_len > 0) {
			snprintf(why, whylen, "stream is for TARGET_STREAM only");
			return WB_BAD_REQUEST;
		}
		break;
	default:
		snprintf(why, whylen,
		         "unknown subscription target %d: TARGET_ALL, TARGET_STREAM or "
		         "TARGET_LEDGER",
		         (int)r->target);
		return WB_BAD_REQUEST;
	}
	if (r->target != WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL &&
	    (r->stream_prefix[0] != '\0' || r->n_event_types > 0)) {
		snprintf(why, whylen, "stream_prefix and event_types filter TARGET_ALL only");
		return WB_BAD_REQUEST;
	}
	switch (r->from) {
	case WHIZBANG__V1__START_FROM__FROM_START:
	case WHIZBANG__V1__START_FROM__FROM_END:
		if (r->position != 0) {
			snprintf(why, whylen, "position is for FROM_POSITION only");
			return WB_BAD_REQUEST;
		}
		break;
	case WHIZBANG__V1__START_FROM__FROM_POSITION:
		break;
	default:
		snprintf(why, whylen, "unknown start %d: FROM_START, FROM_END or FROM_POSITION",
		         (int)r->from);
		return WB_BAD_REQUEST;
	}
	return 0;
}

int validate_consumer(const Whizbang__V1__ConsumerConfig *in, struct cons_record *r, char *why,
                      size_t whylen)
{
	char sub[256];
	if (in == NULL) {
		snprintf(why, whylen, "CreateConsumer needs a config");
		return WB_BAD_REQUEST;
	}
	memset(r, 0, sizeof(*r));
	size_t nlen = strlen(in->name);
	if (cons_check_name(in->name, nlen, why, whylen) != 0)
		return WB_BAD_REQUEST;
	memcpy(r->name, in->name, nlen);
	r->name_len = nlen;
	if (in->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL) {
		r->target = CONS_TARGET_ALL;
		if (in->stream[0] != '\0') {
			snprintf(why, whylen,
			         "a $all group (TARGET_ALL) takes no stream; use stream_prefix or "
			         "TARGET_STREAM");
			return WB_BAD_REQUEST;
		}
	} else if (in->target == WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM) {
		r->target = CONS_TARGET_STREAM;
		r->stream_len = strlen(in->stream);
		if (ev_check_stream_name(in->stream, r->stream_len, sub, sizeof(sub)) != 0) {
			snprintf(why, whylen, "stream: %s", sub);
			return WB_BAD_REQUEST;
		}
		if (in->stream_prefix[0] != '\0') {
			snprintf(why, whylen, "stream_prefix applies to $all groups only");
			return WB_BAD_REQUEST;
		}
		memcpy(r->stream, in->stream, r->stream_len);
	} else {
		snprintf(
		        why, whylen,
		        "a consumer group follows $all (TARGET_ALL) or one stream (TARGET_STREAM), "
		        "not target %d",
		        (int)in->target);
		return WB_BAD_REQUEST;
	}
	r->prefix_len = strlen(in->stream_prefix);
	if (r->prefix_len > CONS_NAME_MAX) {
		snprintf(why, whylen, "stream_prefix is %zu bytes; at most %u", r->prefix_len,
		         CONS_NAME_MAX);
		return WB_BAD_REQUEST;
	}
	memcpy(r->prefix, in->stream_prefix, r->prefix_len);
	if (in->n_event_types > CONS_TYPES_MAX) {
		snprintf(why, whylen, "%zu event types; a group filters on at most %u",
		         in->n_event_types, CONS_TYPES_MAX);
		return WB_BAD_REQUEST;
	}
	for (size_t i = 0; i < in->n_event_types; i++) {
		size_t tl = strlen(in->event_types[i]);
		if (ev_check_type(in->event_types[i], tl, sub, sizeof(sub)) != 0) {
			snprintf(why, whylen, "event_types[%zu]: %s", i, sub);
			return WB_BAD_REQUEST;
		}
		memcpy(r->types[i], in->event_types[i], tl);
		r->type_lens[i] = tl;
	}
	r->ntypes = in->n_event_types;
	if (in->from > WHIZBANG__V1__START_FROM__FROM_POSITION) {
		snprintf(why, whylen, "from %d is not a StartFrom", (int)in->from);
		return WB_BAD_REQUEST;
	}
	r->from = (uint8_t)in->from;
	r->position = in->position;
	r->ack_timeout_ms =
	        in->ack_timeout_ms > 0 ? in->ack_timeout_ms : VALIDATE_ACK_TIMEOUT_DEFAULT;
	if (r->ack_timeout_ms < VALIDATE_ACK_TIMEOUT_MIN ||
	    r->ack_timeout_ms > VALIDATE_ACK_TIMEOUT_MAX) {
		snprintf(why, whylen, "ack_timeout_ms must be %u..%u (0: %u)",
		         VALIDATE_ACK_TIMEOUT_MIN, VALIDATE_ACK_TIMEOUT_MAX,
		         VALIDATE_ACK_TIMEOUT_DEFAULT);
		return WB_BAD_REQUEST;
	}
	r->max_deliveries =
	        in->max_deliveries > 0 ? in->max_deliveries : VALIDATE_MAX_DELIVERIES_DEFAULT;
	if (r->max_deliveries > VALIDATE_MAX_DELIVERIES_MAX) {
		snprintf(why, whylen, "max_deliveries must be 1..%u (0: %u)",
		         VALIDATE_MAX_DELIVERIES_MAX, VALIDATE_MAX_DELIVERIES_DEFAULT);
		return WB_BAD_REQUEST;
	}
	return 0;
}

int validate_ack(const ProtobufCBinaryData *ids, size_t n, const Whizbang__V1__NackEvents *nack,
                 char *why, size_t whylen)
{
	if (nack != NULL) {
		if (nack->action > WHIZBANG__V1__NACK_ACTION__NACK_SKIP) {
			snprintf(why, whylen, "action %d is not a NackAction", (int)nack->action);
			return WB_BAD_REQUEST;
		}
		size_t reason_len = strlen(nack->reason);
		if (reason_len > CONS_REASON_MAX) {
			snprintf(why, whylen, "reason is %zu bytes; at most %u", reason_len,
			         CONS_REASON_MAX);
			return WB_BAD_REQUEST;
		}
	}
	if (n > VALIDATE_MAX_ACK_IDS) {
		snprintf(why, whylen, "%zu ids in one request; at most %u", n,
		         VALIDATE_MAX_ACK_IDS);
		return WB_BAD_REQUEST;
	}
	for (size_t i = 0; i < n; i++)
		if (ids[i].len != EV_ID_LEN) {
			snprintf(why, whylen, "ids[%zu] is %zu bytes; an event id is %u bytes", i,
			         ids[i].len, EV_ID_LEN);
			return WB_BAD_REQUEST;
		}
	return 0;
}

void validate_where_limits(const struct srv_config *cfg, struct proj_where_limits *out)
{
	*out = (struct proj_where_limits){
	        .terms = cfg->max_where_terms,
	        .depth = cfg->max_where_depth,
	        .in_list = cfg->max_where_in_list,
	        .bytes = cfg->max_where_bytes,
	        .literal = cfg->max_where_literal,
	};
}

int validate_ops(Whizbang__V1__Op *const *ops, size_t n, const struct proj_where_limits *lim,
                 char *why, size_t whylen)
{
	for (size_t i = 0; i < n; i++) {
		char msg[300];
		int rc = proj_check_op(ops[i], msg, sizeof(msg));
		if (rc == 0)
			rc = proj_check_op_limits(ops[i], lim, msg, sizeof(msg));
		if (rc != 0) {
			snprintf(why, whylen, "op %zu: %s", i + 1, msg);
			return rc;
		}
	}
	return 0;
}

int validate_read_model(const Whizbang__V1__Request *req, const struct proj_where_limits *lim,
                        char *why, size_t whylen)
{
	const Whizbang__V1__Where *where = NULL;
	const char *type = NULL;
	switch (req->body_case) {
	case WHIZBANG__V1__REQUEST__BODY_GET_ENTITY:
		type = req->get_entity->type;
		if (strlen(req->get_entity->id) == 0 || strlen(req->get_entity->id) > PROJ_ID_MAX) {
			snprintf(why, whylen, "id must be 1..255 bytes");
			return WB_BAD_REQUEST;
		}
		break;
	case WHIZBANG__V1__REQUEST__BODY_QUERY_ENTITIES:
		type = req->query_entities->type;
		where = req->query_entities->where;
		if (strlen(req->query_entities->after) > PROJ_ID_MAX) {
			snprintf(why, whylen, "after must be 0..255 bytes");
			return WB_BAD_REQUEST;
		}
		break;
	case WHIZBANG__V1__REQUEST__BODY_EXPLAIN:
		type = req->explain->type;
		where = req->explain->where;
		break;
	case WHIZBANG__V1__REQUEST__BODY_LIST_INDEXES:
		if (strlen(req->list_indexes->type) > PROJ_NAME_MAX) {
			snprintf(why, whylen, "type must be 0..255 bytes");
			return WB_BAD_REQUEST;
		}
		return 0;
	default:
		return 0;
	}
	if (strlen(type) == 0 || strlen(type) > PROJ_NAME_MAX) {
		snprintf(why, whylen, "type must be 1..255 bytes");
		return WB_BAD_REQUEST;
	}
	if (where != NULL) {
		if (where->expr == NULL) {
			snprintf(why, whylen, "where has no expression (omit where to match all)");
			return WB_INVALID_EXPRESSION;
		}
		int rc = proj_check_expr(where->expr, why, whylen);
		if (rc == 0)
			rc = proj_check_where_limits(where->expr, lim, why, whylen);
		return rc;
	}
	return 0;
}
