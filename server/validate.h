/* The checks a request passes before the server acts on it. Pure functions
 * (no libuv, no storage), shared by the server and the fuzz harness, so the
 * fuzzer exercises exactly what the server runs. Each returns 0, or
 * WB_BAD_REQUEST with a sentence for the client in why[0..whylen). */
#ifndef WB_VALIDATE_H
#define WB_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "consumers.h"
#include "eval.h"
#include "events.h"
#include "whizbang.pb-c.h"

/* Most event types one ReadAll may filter on. */
#define VALIDATE_MAX_FILTER_TYPES 64u

/* Checks an AppendEvents against the limits. On success *evs receives a
 * new array of a->n_events views into a (valid as long as a is; the caller
 * frees the array) and *size_hint an estimate of the bytes the append
 * writes. WB_E_NOMEM when the array cannot be allocated. */
int validate_append(const Whizbang__V1__AppendEvents *a, uint64_t max_events,
                    uint32_t max_event_size, struct ev_new **evs, size_t *size_hint, char *why,
                    size_t whylen);

/* Checks a ReadAll's filters and fills *filter with views into r, using
 * type_lens (VALIDATE_MAX_FILTER_TYPES entries) for the types' lengths. */
int validate_read_all(const Whizbang__V1__ReadAll *r, size_t *type_lens, struct ev_filter *filter,
                      char *why, size_t whylen);

/* Checks a Subscribe: its target, the filters that go with it (a $all
 * target's with the same checks as ReadAll, filling *filter and type_lens
 * as validate_read_all() does; a stream target's name) and its start. */
int validate_subscribe(const Whizbang__V1__Subscribe *r, size_t *type_lens,
                       struct ev_filter *filter, char *why, size_t whylen);

/* Most ids one Ack or Nack may name. */
#define VALIDATE_MAX_ACK_IDS 1000u
/* A consumer group's bounds, and what 0 means. */
#define VALIDATE_ACK_TIMEOUT_DEFAULT 30000u
#define VALIDATE_ACK_TIMEOUT_MIN 10u
#define VALIDATE_ACK_TIMEOUT_MAX 86400000u
#define VALIDATE_MAX_DELIVERIES_DEFAULT 10u
#define VALIDATE_MAX_DELIVERIES_MAX 1000u

/* Checks a CreateConsumer's config (in may be NULL) and fills *r from it,
 * defaults applied (the checkpoint and resume are the writer's to set). */
int validate_consumer(const Whizbang__V1__ConsumerConfig *in, struct cons_record *r, char *why,
                      size_t whylen);

/* Checks the ids and reason of an Ack (nack NULL) or a Nack. */
int validate_ack(const ProtobufCBinaryData *ids, size_t n, const Whizbang__V1__NackEvents *nack,
                 char *why, size_t whylen);

/* The where-clause limits cfg's settings give (--max-where-*). */
void validate_where_limits(const struct srv_config *cfg, struct proj_where_limits *out);

/* Checks a read-model request (GetEntity, QueryEntities, Explain,
 * ListIndexes; anything else passes): the names' sizes and the where
 * clause, its form (proj_check_expr()) and then its size against lim
 * (proj_check_where_limits()). Returns 0, WB_BAD_REQUEST,
 * WB_INVALID_EXPRESSION or WB_QUERY_TOO_EXPENSIVE. One pass over the
 * clause; nothing is allocated. */
int validate_read_model(const Whizbang__V1__Request *req, const struct proj_where_limits *lim,
                        char *why, size_t whylen);

/* Checks the ops of a Commit or Stage before anything is leased or
 * written: each op's form (proj_check_op()) and the size of its where
 * clause against lim (proj_check_op_limits()). The limits are checked here
 * only, when the ops are admitted, never when the entry is applied or
 * replayed. Returns 0, or the first failure's code (WB_BAD_REQUEST,
 * WB_INVALID_EXPRESSION, WB_QUERY_TOO_EXPENSIVE) with why naming the op
 * ("op 2: update: where: ..."). */
int validate_ops(Whizbang__V1__Op *const *ops, size_t n, const struct proj_where_limits *lim,
                 char *why, size_t whylen);

#endif
