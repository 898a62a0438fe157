/* The checks a request passes before the server acts on it. Pure functions
 * (no libuv, no storage), shared by the server and the fuzz harness, so the
 * fuzzer exercises exactly what the server runs. Each returns 0, or
 * WB_BAD_REQUEST with a sentence for the client in why[0..whylen). */
#ifndef WB_VALIDATE_H
#define WB_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

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

#endif
