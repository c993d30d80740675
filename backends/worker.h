/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A helper thread for the few operations that have no asynchronous form
 * (fallocate, BLKDISCARD, fdatasync on old kernels): the event loop hands
 * a job over, the thread runs it, and the completion comes back on the
 * loop through an eventfd, so the queue never blocks.
 */
#ifndef VDU_WORKER_H
#define VDU_WORKER_H

struct event_base;
struct vdu_worker;

struct vdu_work {
	struct vdu_work *next;
	int (*fn)(struct vdu_work *w);    /* runs on the worker thread */
	void (*done)(struct vdu_work *w); /* runs on the event loop */
	int result;                       /* fn's return value */
};

int vdu_worker_new(struct event_base *base, struct vdu_worker **out);
/* Jobs run one at a time, in order. */
void vdu_worker_queue(struct vdu_worker *wk, struct vdu_work *w);
/* Waits for queued jobs, then stops the thread; their done() still runs. */
void vdu_worker_free(struct vdu_worker *wk);

#endif
