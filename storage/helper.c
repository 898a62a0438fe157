/* Helper threads (helper.h): one mutex and one condition carry both the ask
 * and the answer; the job runs with the mutex released. */
#include "helper.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *helper_main(void *arg)
{
	struct helper *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->asked && !h->stop)
			pthread_cond_wait(&h->cond, &h->mu);
		if (!h->asked)
			break;
		h->asked = false;
		pthread_mutex_unlock(&h->mu);
		char why[HELPER_WHY_LEN] = "";
		uint64_t t0 = now_us();
		int rc = h->fn(h->arg, why, sizeof(why));
		uint64_t us = now_us() - t0;
		pthread_mutex_lock(&h->mu);
		h->rc = rc;
		h->us = us;
		memcpy(h->why, why, sizeof(why));
		h->done = true;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

int helper_start(struct helper *h, const char *name, helper_fn fn, void *arg)
{
	memset(h, 0, sizeof(*h));
	h->fn = fn;
	h->arg = arg;
	if (pthread_mutex_init(&h->mu, NULL) != 0)
		return -1;
	if (pthread_cond_init(&h->cond, NULL) != 0)
		goto err_after_mutex;
	if (pthread_create(&h->thread, NULL, helper_main, h) != 0)
		goto err_after_cond;
	char short_name[16];
	snprintf(short_name, sizeof(short_name), "%s", name);
	pthread_setname_np(h->thread, short_name); /* only a label: its failure is harmless */
	return 0;

err_after_cond:
	pthread_cond_destroy(&h->cond);
err_after_mutex:
	pthread_mutex_destroy(&h->mu);
	return -1;
}

void helper_stop(struct helper *h)
{
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->mu);
}

void helper_ask(struct helper *h)
{
	pthread_mutex_lock(&h->mu);
	h->done = false;
	h->asked = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->mu);
}

bool helper_take(struct helper *h, bool wait, int *rc, uint64_t *us, char *why)
{
	pthread_mutex_lock(&h->mu);
	while (wait && !h->done)
		pthread_cond_wait(&h->cond, &h->mu);
	bool done = h->done;
	if (done) {
		*rc = h->rc;
		if (us != NULL)
			*us = h->us;
		if (why != NULL)
			memcpy(why, h->why, sizeof(h->why));
	}
	pthread_mutex_unlock(&h->mu);
	return done;
}
