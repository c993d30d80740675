/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One blocking-operations thread per queue; see worker.h. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>

#include "worker.h"

struct vbe_worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vbe_work *todo, **todo_tail;
	struct vbe_work *done;       /* LIFO; reversed when delivered */
	bool stop;
	int efd;
	struct event *ev;
};

static void *worker_main(void *arg)
{
	struct vbe_worker *wk = arg;

	pthread_mutex_lock(&wk->lock);
	for (;;) {
		struct vbe_work *w = wk->todo;

		if (!w) {
			if (wk->stop)
				break;
			pthread_cond_wait(&wk->cond, &wk->lock);
			continue;
		}
		wk->todo = w->next;
		if (!wk->todo)
			wk->todo_tail = &wk->todo;
		pthread_mutex_unlock(&wk->lock);
		w->result = w->fn(w);
		pthread_mutex_lock(&wk->lock);
		w->next = wk->done;
		wk->done = w;
		eventfd_write(wk->efd, 1);
	}
	pthread_mutex_unlock(&wk->lock);
	return NULL;
}

static void deliver(struct vbe_worker *wk)
{
	struct vbe_work *list, *prev = NULL;

	pthread_mutex_lock(&wk->lock);
	list = wk->done;
	wk->done = NULL;
	pthread_mutex_unlock(&wk->lock);
	while (list) { /* restore submission order */
		struct vbe_work *n = list->next;
		list->next = prev;
		prev = list;
		list = n;
	}
	while (prev) {
		struct vbe_work *n = prev->next;
		prev->done(prev);
		prev = n;
	}
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	eventfd_t v;

	eventfd_read(fd, &v);
	deliver(arg);
}

int vbe_worker_new(struct event_base *base, struct vbe_worker **out)
{
	struct vbe_worker *wk = calloc(1, sizeof(*wk));
	int r;

	if (!wk)
		return -ENOMEM;
	wk->todo_tail = &wk->todo;
	wk->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wk->efd < 0) {
		r = -errno;
		free(wk);
		return r;
	}
	pthread_mutex_init(&wk->lock, NULL);
	pthread_cond_init(&wk->cond, NULL);
	wk->ev = event_new(base, wk->efd, EV_READ | EV_PERSIST, done_cb, wk);
	if (!wk->ev || event_add(wk->ev, NULL) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	r = -pthread_create(&wk->thread, NULL, worker_main, wk);
	if (r < 0)
		goto fail;
	*out = wk;
	return 0;
fail:
	if (wk->ev)
		event_free(wk->ev);
	close(wk->efd);
	free(wk);
	return r;
}

void vbe_worker_queue(struct vbe_worker *wk, struct vbe_work *w)
{
	w->next = NULL;
	pthread_mutex_lock(&wk->lock);
	*wk->todo_tail = w;
	wk->todo_tail = &w->next;
	pthread_cond_signal(&wk->cond);
	pthread_mutex_unlock(&wk->lock);
}

void vbe_worker_free(struct vbe_worker *wk)
{
	if (!wk)
		return;
	pthread_mutex_lock(&wk->lock);
	wk->stop = true;
	pthread_cond_signal(&wk->cond);
	pthread_mutex_unlock(&wk->lock);
	pthread_join(wk->thread, NULL);
	deliver(wk);
	event_free(wk->ev);
	close(wk->efd);
	pthread_mutex_destroy(&wk->lock);
	pthread_cond_destroy(&wk->cond);
	free(wk);
}
