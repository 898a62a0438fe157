/* Protobuf views of stored records, shared by every module that answers
 * with them: an event as a RecordedEvent, a ledger entry as a LedgerEntry,
 * and the arena and page that a paged answer is built in.
 *
 * A view points into the record it was made from (data, metadata, ops
 * bytes), so it is packed before the snapshot the record came from ends;
 * its strings are copied, NUL-terminated, because protobuf-c wants them
 * so. No libuv inside: workers use these too. */
#ifndef WB_PB_H
#define WB_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events.h"
#include "ledger.h"
#include "whizbang.pb-c.h"

/* ------------------------------------------------------------ arena */

/* Memory for building one answer, freed all at once. Zero it to start. */
struct arena {
	struct arena_block *blocks;
};

/* n zeroed bytes, aligned for any type, or NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t n);

/* A NUL-terminated copy of s[0..n), or NULL. */
char *arena_strndup(struct arena *a, const void *s, size_t n);

/* Frees every block; a is empty again. */
void arena_free(struct arena *a);

/* ------------------------------------------------------------ pages */

/* The items of one paged answer: pointers to messages made on the page's
 * arena, at most budget bytes of them (estimated by the caller), but
 * always at least one. Zero it and set budget to start. */
struct page {
	struct arena a;
	void **items;
	size_t n, cap;
	size_t bytes, budget;
	bool nomem; /* an item could not be made or kept: answer RESOURCE_EXHAUSTED */
};

/* True when an item of est bytes still fits (the first always does). */
bool page_fits(const struct page *p, size_t est);

/* Keeps item (est bytes): false, with p->nomem set, when out of memory. */
bool page_add(struct page *p, void *item, size_t est);

void page_free(struct page *p);

/* ------------------------------------------------------------ events */

/* The strings a RecordedEvent view needs. */
struct pb_event_names {
	char stream[EV_STREAM_MAX + 1];
	char type[EV_TYPE_MAX + 1];
};

/* Makes e a view of rec, its strings in names. */
void pb_event_view(const struct ev_record *rec, struct pb_event_names *names,
                   Whizbang__V1__RecordedEvent *e);

/* A view of rec made on a, or NULL when out of memory. */
Whizbang__V1__RecordedEvent *pb_event_new(struct arena *a, const struct ev_record *rec);

/* What an event costs in a page (its bytes and an envelope). */
size_t pb_event_size(const struct ev_record *rec);

/* Keeps a view of rec in p when it fits: the visitor of a paged read
 * (ev_read_stream(), ev_read_all() with p as arg). Stops the read when the
 * page is full or memory runs out. */
bool pb_page_event_cb(const struct ev_record *rec, void *p);

/* ------------------------------------------------------------ ledger entries */

/* The strings a LedgerEntry view needs. */
struct pb_ledger_names {
	char projection[256];
	char operation_id[256];
};

/* Makes le a view of e as ReadLedger and ledger subscriptions show it, its
 * strings in names. *list receives the unpacked ops, which le points into
 * (free with whizbang__v1__op_list__free_unpacked(); NULL when the entry
 * has none). WB_E_CORRUPT when the stored ops do not decode; nothing to
 * free then. */
int pb_ledger_view(const struct ledger_entry *e, struct pb_ledger_names *names,
                   Whizbang__V1__LedgerEntry *le, Whizbang__V1__OpList **list);

/* The bytes a LedgerEntry takes in an answer besides its ops' bytes (the
 * packed OpList the ledger stores) and its projection and operation id: its
 * other fields and the length and tag of the field that holds it (73 at
 * most). */
#define PB_LEDGER_ENVELOPE 96u

/* What an entry costs in a page: at least its packed size in a
 * ReadLedgerResult or a SubscriptionItem, with its field's tag and length
 * (e->ops_len + e->projection_len + e->operation_id_len +
 * PB_LEDGER_ENVELOPE). */
size_t pb_ledger_size(const struct ledger_entry *e);

#endif
