#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
