/* whizbangd check: the verification of a stopped store (check.c). */
#ifndef WB_CHECK_H
#define WB_CHECK_H

#include <stdint.h>
#include <stdio.h>

#include "storage.h"

/* Walks st in one read snapshot (every database; the event log and its two
 * indexes; stream versions; the ledger's rules), printing what it found and
 * one line per problem on out. Returns the number of problems (0: sound). */
uint64_t srv_check(struct storage *st, FILE *out);

#endif
