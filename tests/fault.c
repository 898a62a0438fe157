#include "fault.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static atomic_size_t count;
static atomic_size_t failed;
static atomic_size_t nth; /* 0: armed for nothing */
static atomic_bool persist;
static atomic_bool one_thread;
static pthread_t armer; /* written before nth is stored */

void fault_scope_thread(bool only)
{
	atomic_store(&one_thread, only);
}

void fault_arm(size_t n, bool keep_failing)
{
	atomic_store(&nth, 0);
	armer = pthread_self();
	atomic_store(&count, 0);
	atomic_store(&failed, 0);
	atomic_store(&persist, keep_failing);
	atomic_store(&nth, n);
}

void fault_disarm(void)
{
	atomic_store(&nth, 0);
}

size_t fault_count(void)
{
	return atomic_load(&count);
}

size_t fault_failed(void)
{
	return atomic_load(&failed);
}

/* True when this allocation is to fail. */
static bool fail_now(void)
{
	if (atomic_load(&one_thread) && atomic_load(&nth) != 0 &&
	    !pthread_equal(armer, pthread_self()))
		return false;
	size_t i = atomic_fetch_add(&count, 1) + 1;
	size_t n = atomic_load(&nth);
	if (n == 0 || i < n || (i > n && !atomic_load(&persist)))
		return false;
	atomic_fetch_add(&failed, 1);
	return true;
}

void *__wrap_malloc(size_t size)
{
	return fail_now() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return fail_now() ? NULL : __real_realloc(p, size);
}
