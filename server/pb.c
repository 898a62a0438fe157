#include "pb.h"

#include <stdlib.h>
#include <string.h>

#include "wb_error.h"

/* ------------------------------------------------------------ arena */

#define ARENA_BLOCK 65536u

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	max_align_t data[];
};

void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	struct arena_block *b = a->blocks;
	if (b == NULL || b->cap - b->used < n) {
		size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		b = malloc(sizeof(*b) + cap);
		if (b == NULL)
			return NULL;
		b->used = 0;
		b->cap = cap;
		b->next = a->blocks;
		a->blocks = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

char *arena_strndup(struct arena *a, const void *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

void arena_free(struct arena *a)
{
	while (a->blocks != NULL) {
		struct arena_block *b = a->blocks;
		a->blocks = b->next;
		free(b);
	}
}

/* ------------------------------------------------------------ pages */

bool page_fits(const struct page *p, size_t est)
{
	return p->n == 0 || p->bytes + est <= p->budget;
}

bool page_add(struct page *p, void *item, size_t est)
{
	if (item == NULL) {
		p->nomem = true;
		return false;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap > 0 ? p->cap * 2 : 64;
		void **items = realloc(p->items, cap * sizeof(*items));
		if (items == NULL) {
			p->nomem = true;
			return false;
		}
		p->items = items;
		p->cap = cap;
	}
	p->items[p->n++] = item;
	p->bytes += est;
	return true;
}

void page_free(struct page *p)
{
	free(p->items);
	arena_free(&p->a);
	p->items = NULL;
	p->n = p->cap = 0;
}

/* ------------------------------------------------------------ events */

void pb_event_view(const struct ev_record *rec, struct pb_event_names *names,
                   Whizbang__V1__RecordedEvent *e)
{
	memcpy(names->stream, rec->stream, rec->stream_len);
	names->stream[rec->stream_len] = '\0';
	memcpy(names->type, rec->type, rec->type_len);
	names->type[rec->type_len] = '\0';
	whizbang__v1__recorded_event__init(e);
	e->id.data = (uint8_t *)rec->id;
	e->id.len = EV_ID_LEN;
	e->stream = names->stream;
	e->version = rec->version;
	e->position = rec->position;
	e->type = names->type;
	e->data.data = (uint8_t *)rec->data;
	e->data.len = rec->data_len;
	e->metadata.data = (uint8_t *)rec->meta;
	e->metadata.len = rec->meta_len;
	e->timestamp_us = rec->timestamp_us;
}

Whizbang__V1__RecordedEvent *pb_event_new(struct arena *a, const struct ev_record *rec)
{
	Whizbang__V1__RecordedEvent *e = arena_alloc(a, sizeof(*e));
	char *stream = arena_strndup(a, rec->stream, rec->stream_len);
	char *type = arena_strndup(a, rec->type, rec->type_len);
	if (e == NULL || stream == NULL || type == NULL)
		return NULL;
	whizbang__v1__recorded_event__init(e);
	e->id.data = (uint8_t *)rec->id;
	e->id.len = EV_ID_LEN;
	e->stream = stream;
	e->version = rec->version;
	e->position = rec->position;
	e->type = type;
	e->data.data = (uint8_t *)rec->data;
	e->data.len = rec->data_len;
	e->metadata.data = (uint8_t *)rec->meta;
	e->metadata.len = rec->meta_len;
	e->timestamp_us = rec->timestamp_us;
	return e;
}

size_t pb_event_size(const struct ev_record *rec)
{
	return rec->data_len + rec->meta_len + rec->stream_len + rec->type_len + 64;
}

bool pb_page_event_cb(const struct ev_record *rec, void *arg)
{
	struct page *p = arg;
	size_t est = pb_event_size(rec);
	if (!page_fits(p, est))
		return false;
	return page_add(p, pb_event_new(&p->a, rec), est);
}

/* ------------------------------------------------------------ ledger entries */

int pb_ledger_view(const struct ledger_entry *e, struct pb_ledger_names *names,
                   Whizbang__V1__LedgerEntry *le, Whizbang__V1__OpList **list)
{
	*list = NULL;
	if (e->ops_len > 0) {
		*list = whizbang__v1__op_list__unpack(NULL, e->ops_len, e->ops);
		if (*list == NULL)
			return WB_E_CORRUPT;
	}
	whizbang__v1__ledger_entry__init(le);
	memcpy(names->projection, e->projection, e->projection_len);
	names->projection[e->projection_len] = '\0';
	memcpy(names->operation_id, e->operation_id, e->operation_id_len);
	names->operation_id[e->operation_id_len] = '\0';
	le->projection = names->projection;
	le->operation_id = names->operation_id;
	le->sequence = e->seq;
	le->kind = e->kind == LEDGER_COMMITTED ? WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED
	           : e->kind == LEDGER_GAP     ? WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP
	                                       : WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED;
	le->reason = (Whizbang__V1__EntryReason)e->reason;
	le->source_position = e->source_position;
	le->time_us = e->time_us;
	le->original_expiry_us = e->original_expiry_us;
	le->original_sequence = e->original_seq;
	if (*list != NULL) {
		le->n_ops = (*list)->n_ops;
		le->ops = (*list)->ops;
		le->applied = (*list)->applied;
		le->apply_error = (*list)->error_code;
		le->apply_error_message = (*list)->error_message;
		le->failed_op = (*list)->failed_op;
	} else {
		/* Nothing to apply: a gap, or an entry without ops. */
		le->applied = true;
	}
	return 0;
}

size_t pb_ledger_size(const struct ledger_entry *e)
{
	return e->ops_len + e->projection_len + e->operation_id_len + PB_LEDGER_ENVELOPE;
}
