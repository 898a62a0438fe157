/* A helper: a thread that runs one job at a time for one owner thread, so
 * that a slow system call (an fdatasync, a file's preparation) overlaps the
 * owner's own work. The owner asks for the job with helper_ask() and collects
 * its result with helper_take(); it asks again only after taking the result.
 * The job function and its argument are fixed at helper_start(); whatever the
 * job reads is set by the owner before helper_ask() (the helper's mutex
 * orders the two) and not changed until helper_take() returned true.
 *
 * Errors: helper_start() fails only when the system refuses a thread or a
 * mutex; a job's own result is its int and the sentence in why. */
#ifndef WB_HELPER_H
#define WB_HELPER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HELPER_WHY_LEN 256

typedef int (*helper_fn)(void *arg, char *why, size_t whylen);

struct helper {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool asked, done, stop;
	helper_fn fn;
	void *arg;
	/* The last job's result */
	int rc;
	uint64_t us;
	char why[HELPER_WHY_LEN];
};

/* Starts h's thread, named name (at most 15 bytes: what top -H and perf
 * show), to run fn(arg, ...) each time it is asked. 0, or -1 with nothing
 * left to undo. Keeps arg; name is copied. */
int helper_start(struct helper *h, const char *name, helper_fn fn, void *arg);

/* Stops and joins h's thread once the job it runs, if any, has ended. */
void helper_stop(struct helper *h);

/* Starts the job. The previous one must have been taken. */
void helper_ask(struct helper *h);

/* Takes the result of the job helper_ask() started, waiting for it when wait
 * is true: false (and nothing written) when it has not ended. rc receives the
 * job's result, us (may be NULL) how long it ran, why (may be NULL)
 * HELPER_WHY_LEN bytes of its sentence. */
bool helper_take(struct helper *h, bool wait, int *rc, uint64_t *us, char *why);

#endif
