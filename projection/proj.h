/* Read models (DESIGN.md §7): entities and their secondary indexes, kept in
 * the store, changed only by applying ledger entries in sequence order.
 *
 * Layout (all derived from the ledger; replay rebuilds it byte for byte):
 *   entities   type, 0x00, id -> entity record (value.h)
 *   index      index id (u32be), value key (value.h), entity id -> empty
 *   proj_meta  "c" type            -> u64be entities of the type
 *              "i" type 0x00 field -> u32be index id, u64be entries,
 *                                     u64be sequence that created it
 *              "n"                 -> u32be the next index id
 * Types, ids and field names hold no 0x00 byte (the wire refuses it), so
 * the keys are unambiguous and a type's entities are contiguous, in id
 * order.
 *
 * Pure C: no libuv. Every function takes the transaction it works in and
 * returns 0 or a code of wb_error.h; storage failures (WB_E_MAPFULL,
 * WB_E_NOMEM, WB_E_IO) pass up unchanged so the writer can grow the map and
 * run the batch again. */
#ifndef WB_PROJ_H
#define WB_PROJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"
#include "value.h"
#include "whizbang.pb-c.h"

struct proj_config {
	/* A scan that evaluates a clause over a type with more entities than
	 * this is refused with WB_QUERY_TOO_EXPENSIVE before it starts (a
	 * query without a clause is not: it reads no more than it answers). */
	uint64_t max_scan;
	/* An index plan whose ranges hold more index entries than this (a
	 * union's branches added up) is given up as soon as the count passes
	 * it, before any candidate is fetched: the clause is then scanned
	 * when its type is within max_scan, else refused with
	 * WB_QUERY_TOO_EXPENSIVE. Counts of the state, never a timer: the
	 * same entry decides the same on every replay. */
	uint64_t max_candidates;
	/* The encoded id lists of one entry's explosions, added up, may not
	 * pass this: the entry is then a no-op refused with
	 * WB_QUERY_TOO_EXPENSIVE, so that every ledger entry fits a reader's
	 * page. Sizes of the state, never a timer: the same on every replay. */
	uint64_t max_explosion_bytes;
	/* The most bytes one entry may take once applied: its packed OpList
	 * (the ops with their Explosions and the outcome) plus entry_names.
	 * Checked after each op of a live application, so that an entry's
	 * explosions get what its ops leave: past it the entry is a no-op
	 * refused with WB_QUERY_TOO_EXPENSIVE (its stored ops are then the
	 * ops as committed and the outcome), so that every ledger entry fits
	 * one reader's answer. 0: no limit. Sizes of the ops and the state,
	 * never a timer: the same on every replay. */
	uint64_t max_entry_bytes;
	/* The bytes of the entry's projection and operation id, which count
	 * towards max_entry_bytes: set for each entry by the caller. */
	uint64_t entry_names;
	/* Tests: plan every clause as a scan (to compare with index plans). */
	bool force_scan;
};

/* ------------------------------------------------------------ applying */

enum proj_mode {
	/* Evaluates where clauses and records what they matched. */
	PROJ_LIVE,
	/* Applies the recorded matches without evaluating any clause; entries
	 * recorded as failed are skipped. An entry with no record (never
	 * applied) is applied as PROJ_LIVE. */
	PROJ_REPLAY,
};

struct proj_outcome {
	/* 0, or the wire code that made the entry a no-op */
	int error;
	uint32_t failed_op; /* 1-based, with error */
	char message[256];
	uint64_t ops;
	uint64_t affected; /* entities created, changed or deleted */
	uint64_t explosions;
	uint64_t exploded_ids;
	uint64_t explosion_us;
};

/* Applies the ops of the ledger entry at seq (ops: a packed OpList, as the
 * ledger stores it; len 0 means no ops). All or nothing: when an op fails
 * for a reason that lies in the ops and the state (QUERY_TOO_EXPENSIVE, an
 * increment of a non-number, an entity too large, ...) none of the entry's
 * effects stay, out->error says why and 0 is returned: a deterministic
 * failure is an outcome, not an error. In PROJ_LIVE mode *rewritten
 * receives (appended) the packed OpList to store back in the entry: the
 * ops with their Explosions, applied set and the outcome; in PROJ_REPLAY
 * mode it is left empty unless the entry had no record. ops may point into
 * the store: it is copied before anything is written. Returns a storage
 * code when the transaction itself failed (the caller aborts it). */
int proj_apply(struct storage_txn *txn, uint64_t seq, const uint8_t *ops, size_t len,
               const struct proj_config *cfg, enum proj_mode mode, struct proj_buf *rewritten,
               struct proj_outcome *out);

/* ------------------------------------------------------------ planning */

struct proj_plan {
	Whizbang__V1__PlanStrategy strategy;
	uint64_t estimate;      /* candidates the plan expects to read */
	uint64_t type_entities; /* the kept count of the type */
	/* A scan over more than max_scan entities, or an index plan over
	 * more than max_candidates entries of a type over max_scan (known
	 * once its ranges were read: proj_explain() reads them). */
	bool refused;
	char text[1024]; /* the plan, one step per line */
};

/* Writes why the plan of a clause over type was refused under cfg into
 * buf[0..len): "a scan of Order would examine 120000 entities, more than
 * --max-scan 100000: ..." or "the index plan of Order reads more than
 * --max-candidates 100000 index entries: ...". */
void proj_refusal(const struct proj_plan *plan, const char *type, const struct proj_config *cfg,
                  char *buf, size_t len);

/* Plans where (NULL: every entity) over type without running it. For an
 * index plan the candidates are then counted, at most max_candidates + 1
 * of them (no more than running it would read): out->estimate is that
 * count when it is within the budget; past it the plan is the scan or the
 * refusal that running it would meet (proj_config.max_candidates). A
 * refused plan is an answer here (refused set), not an error. */
int proj_explain(struct storage_txn *txn, const char *type, size_t type_len,
                 const Whizbang__V1__Expr *where, const struct proj_config *cfg,
                 struct proj_plan *out);

/* Computes the ids of type's entities matching where (checked by
 * proj_check_expr()), sorted, into ids (appended after clearing).
 * *examined receives the candidates read. WB_QUERY_TOO_EXPENSIVE for a
 * refused plan (a scan over max_scan, an index plan over max_candidates
 * that could not be scanned instead); plan (may be NULL) receives the
 * plan. */
int proj_explode(struct storage_txn *txn, const char *type, size_t type_len,
                 const Whizbang__V1__Expr *where, const struct proj_config *cfg,
                 struct proj_ids *ids, struct proj_plan *plan, uint64_t *examined);

/* ------------------------------------------------------------ reading */

/* Reads one entity; *out points into the transaction's memory.
 * WB_E_NOTFOUND when there is none. */
int proj_get(struct storage_txn *txn, const char *type, size_t type_len, const char *id,
             size_t id_len, struct proj_record *out);

/* Called for each entity a query yields, in id order; id and r point into
 * the transaction's memory. Return non-zero to stop (returned by
 * proj_query() unless it is PROJ_STOP). */
#define PROJ_STOP 1
typedef int (*proj_visit_fn)(const char *id, size_t id_len, const struct proj_record *r, void *arg);

struct proj_query_info {
	struct proj_plan plan;
	uint64_t examined;
	/* No entity after the last one visited matches. */
	bool end;
};

/* Visits, in id order, up to limit entities of type with an id after
 * `after` (exclusive; after_len 0: from the first) that match where (NULL:
 * all). Refused like proj_explode(). */
int proj_query(struct storage_txn *txn, const char *type, size_t type_len,
               const Whizbang__V1__Expr *where, const char *after, size_t after_len, uint32_t limit,
               const struct proj_config *cfg, proj_visit_fn visit, void *arg,
               struct proj_query_info *info);

/* Entities of a type (the kept count). */
int proj_type_count(struct storage_txn *txn, const char *type, size_t type_len, uint64_t *out);

struct proj_index_info {
	char type[PROJ_NAME_MAX + 1];
	char field[PROJ_NAME_MAX + 1];
	uint32_t index_id;
	uint64_t entries;
	uint64_t created_seq;
};

/* Reads the index on type.field; WB_E_NOTFOUND when there is none. */
int proj_index_get(struct storage_txn *txn, const char *type, const char *field,
                   struct proj_index_info *out);

/* Visits the indexes of type (NULL or "": every type), ordered by type
 * then field. visit returns non-zero to stop. */
typedef int (*proj_index_visit_fn)(const struct proj_index_info *info, void *arg);
int proj_index_list(struct storage_txn *txn, const char *type, proj_index_visit_fn visit,
                    void *arg);

/* ------------------------------------------------------------ digests */

#define PROJ_DIGEST_LEN 16

/* An XXH3-128 digest (libxxhash) over every record of the read models
 * (entities, index entries, proj_meta), keys and values, in key order.
 * *entities receives the entity count (may be NULL). */
int proj_digest(struct storage_txn *txn, uint8_t out[PROJ_DIGEST_LEN], uint64_t *entities);

/* Compares the read models of a and b record by record. Returns 0 when
 * they are equal; otherwise 1 with msg naming the first record that
 * differs ("entity Order/o-7: version 3 vs 4", "index Order.status: entry
 * ... only in the live store"). */
int proj_diff(struct storage_txn *a, struct storage_txn *b, const char *a_name, const char *b_name,
              char *msg, size_t len);

/* Deletes every read-model record (before a replay in place). */
int proj_clear(struct storage_txn *txn);

#endif
