/* Allocation fault injection for the tests that link with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
 * (tests/meson.build): every call to those three from code linked into the
 * test executable, the server's static libraries included, goes through
 * here. Libraries linked dynamically (libc's own callers, libuv, LMDB,
 * protobuf-c without our allocator) are not affected. Thread-safe: the
 * writer thread and libuv's workers count and fail like the loop. */
#ifndef WB_TEST_FAULT_H
#define WB_TEST_FAULT_H

#include <stdbool.h>
#include <stddef.h>

/* From now on, the nth allocation (1: the next one) fails, and when
 * persist every one after it too. The count starts again at 0. */
void fault_arm(size_t nth, bool persist);

/* With only, allocations of threads other than the one that calls
 * fault_arm() are neither counted nor failed (the log-mode writer stops the
 * process on a failed allocation once a record is durable, by design). */
void fault_scope_thread(bool only);

/* Allocations succeed again. */
void fault_disarm(void);

/* Allocations counted since the last fault_arm() (all of them, failed or
 * not; counting goes on after fault_disarm() until the next arm). */
size_t fault_count(void);

/* Allocations that were made to fail since the last fault_arm(). */
size_t fault_failed(void);

#endif
