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
struct vbe_worker;

struct vbe_work {
	struct vbe_work *next;
	int (*fn)(struct vbe_work *w);    /* runs on the worker thread */
	void (*done)(struct vbe_work *w); /* runs on the event loop */
	int result;                       /* fn's return value */
};

int vbe_worker_new(struct event_base *base, struct vbe_worker **out);
/* Jobs run one at a time, in order. */
void vbe_worker_queue(struct vbe_worker *wk, struct vbe_work *w);
/* Waits for queued jobs, then stops the thread; their done() still runs. */
void vbe_worker_free(struct vbe_worker *wk);

#endif
