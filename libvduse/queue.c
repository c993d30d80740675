/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A virtqueue at work: kick eventfd -> drain the available ring into
 * virtio-blk requests -> backend -> completions -> one used-ring publish
 * and at most one interrupt per batch.
 *
 * Each queue owns its IOVA map and, with VDU_DEV_F_QUEUE_THREADS, a thread
 * running its own event loop, so the I/O path takes no locks.  The device
 * thread reaches a queue's state only through vdu_queue_call(), which runs
 * a function on the queue's thread and waits for it (control messages are
 * rare; requests are not).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>

#include "internal.h"

static void queue_break(struct vdu_queue *q, int err)
{
	if (!q->broken)
		vdu_err("%s: queue %u: malformed ring (%s); queue stopped until "
			"the driver resets the device", q->dev->name, q->idx,
			strerror(-err));
	q->broken = true;
	q->st.broken = 1;
}

static unsigned queue_inflight(const struct vdu_queue *q)
{
	return (q->vr ? q->vr->inflight : 0) + q->retired;
}

/* Unmap regions dropped by invalidations once nothing points into them. */
static void queue_maybe_reap(struct vdu_queue *q)
{
	if (q->iova && queue_inflight(q) == 0)
		vdu_iova_reap(q->iova);
}

#define VDU_PUBLISH_EARLY_BYTES (256u << 10)

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * VDU_DEV_F_IRQ_FOLLOW.  The kernel runs an interrupt's completion work
 * (virtio-blk completion, and for reads the copy out of the bounce pages)
 * on a CPU of the queue's irq_cb_affinity.  For small requests that work
 * is mostly fixed cost: next to this thread it needs no cross-CPU wake-up
 * and stays off the submitters' CPUs.  For large ones it is mostly the
 * copy, which should run in parallel with this thread's own copying:
 * then every CPU but this one.  The choice follows a moving average of
 * the data per interrupt, with hysteresis, and the kernel's setting is
 * rewritten only when it changes (at most every 10 ms).
 */
#define IRQ_SPREAD_BYTES (256u << 10)
#define IRQ_LOCAL_BYTES (128u << 10)

static void queue_irq_follow(struct vdu_queue *q, uint64_t bytes)
{
	const struct vdu_transport *tp = q->dev->tp;
	int cpu = sched_getcpu(), ncpu = q->irq_ncpu, r;
	int cpus[VDU_CPUS_MAX];
	unsigned n = 0;
	bool spread;
	uint64_t now;

	/* Exponential moving average, weight 1/8. */
	q->irq_avg_bytes += ((int64_t)VDU_MIN(bytes, 1u << 30) -
			     (int64_t)q->irq_avg_bytes) / 8;
	spread = q->irq_avg_bytes >= (q->irq_spread ? IRQ_LOCAL_BYTES :
				      IRQ_SPREAD_BYTES);
	if (cpu < 0 || ncpu < 2 || ncpu > VDU_CPUS_MAX)
		spread = false;
	if (cpu < 0 || (cpu == q->irq_cpu && spread == q->irq_spread))
		return;
	now = now_us();
	if (q->irq_cpu >= 0 && now - q->irq_cpu_at < 10000)
		return; /* a migrating thread: do not chase it */
	q->irq_cpu_at = now;
	if (spread) {
		for (int i = 0; i < ncpu; i++)
			if (i != cpu)
				cpus[n++] = i;
	} else
		cpus[n++] = cpu;
	r = tp->set_irq_affinity ?
	    tp->set_irq_affinity(q->dev, q->idx, cpus, n) : -ENOTSUP;
	if (r < 0) {
		q->irq_follow = false;
		vdu_info("%s: queue %u: interrupt CPU left to the driver (%s)",
			 q->dev->name, q->idx, strerror(-r));
		return;
	}
	vdu_dbg("%s: queue %u: interrupts %s CPU %d", q->dev->name, q->idx,
		spread ? "away from" : "on", cpu);
	q->irq_cpu = cpu;
	q->irq_spread = spread;
}

static void queue_publish(struct vdu_queue *q)
{
	struct vdu_vring *vr = q->vr;
	uint64_t bytes;

	if (!vr || q->broken || !vr->pending_used)
		return;
	if (vdu_vring_map(vr, q->iova) < 0) {
		queue_break(q, -EFAULT);
		return;
	}
	bytes = q->unpublished_bytes;
	q->unpublished_bytes = 0;
	if (vdu_vring_publish(vr)) {
		if (q->irq_follow)
			queue_irq_follow(q, bytes);
		if (q->dev->tp->inject_irq(q->dev, q->idx) == 0)
			q->st.irqs++;
	}
}

static void publish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vdu_queue *q = arg;

	q->publish_armed = false;
	queue_publish(q);
	queue_maybe_reap(q);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vdu_queue *q = arg;
	eventfd_t v;

	if (eventfd_read(fd, &v) == 0)
		q->st.kicks++;
	vdu_queue_process(q);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
	vdu_queue_process(arg);
}

/* ------------------------------------------------ cross-thread calls */

static void call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vdu_queue *q = arg;
	eventfd_t v;

	eventfd_read(fd, &v);
	pthread_mutex_lock(&q->call_lock);
	if (q->call_fn && !q->call_done) {
		void (*fn)(struct vdu_queue *, void *) = q->call_fn;
		void *a = q->call_arg;

		pthread_mutex_unlock(&q->call_lock);
		fn(q, a);
		pthread_mutex_lock(&q->call_lock);
		q->call_done = true;
		pthread_cond_broadcast(&q->call_cond);
	}
	pthread_mutex_unlock(&q->call_lock);
}

void vdu_queue_call(struct vdu_queue *q, void (*fn)(struct vdu_queue *, void *),
		    void *arg)
{
	/* Not threaded, or the thread is not (or no longer) running: the
	 * caller owns the queue's state. */
	if (!q->threaded || !q->running ||
	    pthread_equal(pthread_self(), q->thread)) {
		fn(q, arg);
		return;
	}
	pthread_mutex_lock(&q->caller_lock); /* one caller at a time */
	pthread_mutex_lock(&q->call_lock);
	q->call_fn = fn;
	q->call_arg = arg;
	q->call_done = false;
	eventfd_write(q->callfd, 1);
	while (!q->call_done)
		pthread_cond_wait(&q->call_cond, &q->call_lock);
	q->call_fn = NULL;
	pthread_mutex_unlock(&q->call_lock);
	pthread_mutex_unlock(&q->caller_lock);
}

static void *queue_thread(void *arg)
{
	struct vdu_queue *q = arg;
	char name[16];

	snprintf(name, sizeof(name), "vduse-q%u", q->idx);
	pthread_setname_np(pthread_self(), name);
	event_base_loop(q->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void stop_fn(struct vdu_queue *q, void *arg)
{
	event_base_loopbreak(q->base);
}

/* ------------------------------------------------------- life cycle */

int vdu_queue_init(struct vdu_dev *dev, struct vdu_queue *q, unsigned idx,
		   bool threaded)
{
	memset(q, 0, sizeof(*q));
	q->dev = dev;
	q->idx = idx;
	q->kickfd = -1;
	q->callfd = -1;
	pthread_mutex_init(&q->call_lock, NULL);
	pthread_mutex_init(&q->caller_lock, NULL);
	pthread_cond_init(&q->call_cond, NULL);
	q->threaded = threaded;
	if (threaded) {
		q->own_base = event_base_new();
		if (!q->own_base)
			return -ENOMEM;
		q->base = q->own_base;
		q->callfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->callfd < 0)
			return -errno;
		q->call_ev = event_new(q->base, q->callfd, EV_READ | EV_PERSIST,
				       call_cb, q);
		if (!q->call_ev || event_add(q->call_ev, NULL) < 0)
			return -ENOMEM;
	} else
		q->base = dev->base;
	q->publish_ev = event_new(q->base, -1, 0, publish_cb, q);
	q->poll_ev = event_new(q->base, -1, 0, poll_cb, q);
	return q->publish_ev && q->poll_ev ? 0 : -ENOMEM;
}

static int open_inflight_log(struct vdu_queue *q)
{
	struct vdu_dev *dev = q->dev;
	char path[4096];
	/* Only the packed ring needs chain copies in the log. */
	unsigned cap = dev->opts.flags & VDU_DEV_F_RING_PACKED ?
		       VDU_MIN(dev->queue_size, dev->seg_max + 18) : 0;
	int r;

	if (!dev->opts.state_path)
		return 0;
	if (snprintf(path, sizeof(path), "%s.q%u.inflight", dev->opts.state_path,
		     q->idx) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	r = vdu_inflight_open(path, dev->queue_size, cap, dev->reconnecting,
			      &q->ilog);
	if (r == -ELOOP)
		vdu_err("%s: inflight log %s is a symbolic link: refusing to "
			"follow it (remove it)", dev->name, path);
	else if (r < 0)
		vdu_err("%s: inflight log %s: %s", dev->name, path, strerror(-r));
	return r;
}

int vdu_queue_start(struct vdu_queue *q, int cpu)
{
	int r;

	q->iova = vdu_iova_new(vdu_bounce_fault, q->dev);
	if (!q->iova)
		return -ENOMEM;
	r = open_inflight_log(q);
	if (r < 0)
		return r;
	if (!q->threaded)
		return 0;
	r = -pthread_create(&q->thread, NULL, queue_thread, q);
	if (r < 0)
		return r;
	q->running = true;
	if (cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		r = -pthread_setaffinity_np(q->thread, sizeof(set), &set);
		if (r < 0)
			vdu_warn("%s: queue %u: cannot pin to CPU %d: %s",
				 q->dev->name, q->idx, cpu, strerror(-r));
	}
	return 0;
}

static void reset_fn(struct vdu_queue *q, void *arg)
{
	vdu_queue_disable(q);
	if (q->iova)
		vdu_iova_invalidate(q->iova, 0, UINT64_MAX);
	queue_maybe_reap(q);
}

void vdu_queue_reset(struct vdu_queue *q)
{
	vdu_queue_call(q, reset_fn, NULL);
}

void vdu_queue_stop(struct vdu_queue *q)
{
	vdu_queue_reset(q);
	if (q->running) {
		vdu_queue_call(q, stop_fn, NULL);
		pthread_join(q->thread, NULL);
		q->running = false;
	}
}

static void abandon_fn(struct vdu_queue *q, void *arg)
{
	struct vdu_vring *vr = q->vr;
	unsigned inflight;

	if (q->threaded)
		event_base_loopbreak(q->base);
	if (!vr)
		return;
	/* As a killed process leaves it: the log stays valid, the requests
	 * taken are in it, not answered. */
	inflight = vr->inflight;
	vr->ilog = NULL;
	vdu_queue_disable(q); /* frees vr when nothing is in flight */
	if (inflight) {
		q->retired -= inflight;
		vdu_vring_free(vr);
	}
}

void vdu_queue_abandon(struct vdu_queue *q)
{
	vdu_queue_call(q, abandon_fn, NULL);
	if (q->running) {
		pthread_join(q->thread, NULL);
		q->running = false;
	}
}

void vdu_queue_release(struct vdu_queue *q)
{
	vdu_iova_free(q->iova);
	q->iova = NULL;
	vdu_inflight_close(q->ilog);
	q->ilog = NULL;
}

void vdu_queue_fini(struct vdu_queue *q)
{
	vdu_queue_disable(q);
	if (q->publish_ev)
		event_free(q->publish_ev);
	if (q->poll_ev)
		event_free(q->poll_ev);
	if (q->call_ev)
		event_free(q->call_ev);
	if (q->callfd >= 0)
		close(q->callfd);
	if (q->own_base)
		event_base_free(q->own_base);
	pthread_mutex_destroy(&q->call_lock);
	pthread_mutex_destroy(&q->caller_lock);
	pthread_cond_destroy(&q->call_cond);
	memset(q, 0, sizeof(*q));
	q->kickfd = q->callfd = -1;
}

/* ------------------------------------------- calls from the device */

struct range { uint64_t start, last; };

static void invalidate_fn(struct vdu_queue *q, void *arg)
{
	const struct range *r = arg;

	if (q->iova)
		vdu_iova_invalidate(q->iova, r->start, r->last);
	queue_maybe_reap(q);
}

void vdu_queue_invalidate(struct vdu_queue *q, uint64_t start, uint64_t last)
{
	struct range r = { start, last };

	vdu_queue_call(q, invalidate_fn, &r);
}

static void state_fn(struct vdu_queue *q, void *arg)
{
	struct vduse_vq_state *st = arg;
	struct vdu_vring *vr = q->vr;

	if (vr)
		vr->ops->get_state(vr, st);
}

void vdu_queue_get_state(struct vdu_queue *q, struct vduse_vq_state *st)
{
	vdu_queue_call(q, state_fn, st);
}

struct stats_arg { struct vdu_queue_stats *st; unsigned inflight; };

static void stats_fn(struct vdu_queue *q, void *arg)
{
	struct stats_arg *a = arg;

	if (a->st)
		*a->st = q->st;
	a->inflight = queue_inflight(q);
}

void vdu_queue_get_stats(struct vdu_queue *q, struct vdu_queue_stats *st,
			 unsigned *inflight)
{
	struct stats_arg a = { st, 0 };

	vdu_queue_call(q, stats_fn, &a);
	if (inflight)
		*inflight = a.inflight;
}

static void enable_fn(struct vdu_queue *q, void *arg)
{
	*(int *)arg = vdu_queue_enable(q);
}

int vdu_queue_enable_sync(struct vdu_queue *q)
{
	int r = 0;

	vdu_queue_call(q, enable_fn, &r);
	return r;
}

static void disable_fn(struct vdu_queue *q, void *arg)
{
	vdu_queue_disable(q);
}

void vdu_queue_disable_sync(struct vdu_queue *q)
{
	vdu_queue_call(q, disable_fn, NULL);
}

/* --------------------------------------------- on the queue thread */

/*
 * Start logging, or -- when taking over from a dead daemon whose log
 * matches this ring -- rebuild the ring position from the log and
 * resubmit what the driver is still waiting for, oldest first.
 */
static int inflight_attach(struct vdu_queue *q)
{
	struct vdu_vring *vr = q->vr;
	bool packed = vr->ops->packed;
	uint16_t *slots;
	unsigned n;
	int r;

	vr->ilog = q->ilog;
	if (q->dev->reconnecting && !vdu_inflight_matches(q->ilog, vr, packed) &&
	    vr->ops->in_use(vr)) {
		/* The old daemon had no live log for a ring the driver has
		 * used: it died handling a reset.  Its position is unknown;
		 * starting at 0 could replay old requests.  Wait for the
		 * reset the kernel re-queues to us. */
		vdu_warn("%s: queue %u: no inflight log for a used ring; waiting "
			 "for the driver's reset", q->dev->name, q->idx);
		vr->ilog = NULL;
		return -EAGAIN;
	}
	if (!q->dev->reconnecting || !vdu_inflight_matches(q->ilog, vr, packed)) {
		vdu_inflight_start(q->ilog, vr, packed);
		return 0;
	}
	r = vr->ops->recover(vr);
	if (r < 0) {
		vdu_err("%s: queue %u: inflight log inconsistent with the ring",
			q->dev->name, q->idx);
		return r;
	}
	slots = calloc(vr->num, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	n = vdu_inflight_pending(q->ilog, vr->num, slots);
	vdu_info("%s: queue %u: recovered at avail %u used %u, resubmitting %u "
		 "request(s)", q->dev->name, q->idx, vr->last_avail, vr->used_idx, n);
	for (unsigned i = 0; i < n; i++) {
		struct vdu_req *req;

		r = vr->ops->resubmit(vr, q->iova, slots[i], &req);
		if (r < 0) {
			queue_break(q, r);
			break;
		}
		q->st.inflight++;
		vdu_blk_handle(q, req);
	}
	free(slots);
	/* The old daemon may have died between making completions visible
	 * and interrupting the driver: interrupt once (a spurious interrupt
	 * is harmless, a missing one can stall an idle queue for good). */
	if (q->dev->tp->inject_irq(q->dev, q->idx) == 0)
		q->st.irqs++;
	return 0;
}

int vdu_queue_enable(struct vdu_queue *q)
{
	struct vdu_dev *dev = q->dev;
	struct vduse_vq_info info = { .index = q->idx };
	int r;

	if (q->vr)
		return 0;
	r = dev->tp->get_vq_info(dev, &info);
	if (r < 0)
		return r;
	if (!info.ready)
		return 0; /* the driver does not use this queue */
	if (info.num < 2 || info.num > dev->queue_size ||
	    (info.num & (info.num - 1))) {
		vdu_err("%s: queue %u: driver chose invalid size %u", dev->name,
			q->idx, info.num);
		return -EINVAL;
	}
	q->vr = vdu_vring_new(q, info.num, &info, dev->negotiated,
			      dev->be.io_priv_size, dev->seg_max + 18);
	if (!q->vr)
		return -ENOMEM;
	q->broken = false;
	q->st.broken = 0;
	q->st.enabled = 1;
	/* The driver set its own affinity while probing: set ours again. */
	q->irq_follow = dev->opts.flags & VDU_DEV_F_IRQ_FOLLOW;
	q->irq_cpu = -1;
	q->irq_spread = false;
	q->irq_avg_bytes = 0;
	q->gap_avg = 0;
	q->poll_from = 0;
	q->poll_until = 0;
	/* Read once: glibc finds it by listing a sysfs directory. */
	q->irq_ncpu = (int)sysconf(_SC_NPROCESSORS_CONF);
	if (vdu_vring_map(q->vr, q->iova) < 0) {
		vdu_err("%s: queue %u: ring addresses are not mapped",
			dev->name, q->idx);
		vdu_queue_disable(q);
		return -EFAULT;
	}
	if (q->ilog) {
		r = inflight_attach(q);
		if (r < 0) {
			vdu_queue_disable(q);
			return r == -EAGAIN ? 0 : r;
		}
	}
	q->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->kickfd < 0) {
		r = -errno;
		vdu_queue_disable(q);
		return r;
	}
	q->kick_ev = event_new(q->base, q->kickfd, EV_READ | EV_PERSIST,
			       kick_cb, q);
	if (!q->kick_ev || event_add(q->kick_ev, NULL) < 0) {
		vdu_queue_disable(q);
		return -ENOMEM;
	}
	r = dev->tp->set_vq_kickfd(dev, q->idx, q->kickfd);
	if (r < 0) {
		vdu_queue_disable(q);
		return r;
	}
	vdu_dbg("%s: queue %u enabled: %s ring of %u, avail %u used %u",
		dev->name, q->idx, q->vr->ops->name, info.num, q->vr->last_avail, q->vr->used_idx);
	/* The driver may have posted buffers before the kickfd existed. */
	vdu_queue_process(q);
	return 0;
}

void vdu_queue_disable(struct vdu_queue *q)
{
	struct vdu_dev *dev = q->dev;
	struct vdu_vring *vr = q->vr;

	if (q->kick_ev) {
		event_free(q->kick_ev);
		q->kick_ev = NULL;
	}
	if (q->kickfd >= 0) {
		dev->tp->set_vq_kickfd(dev, q->idx, VDUSE_EVENTFD_DEASSIGN);
		close(q->kickfd);
		q->kickfd = -1;
	}
	if (q->publish_ev)
		event_del(q->publish_ev);
	q->publish_armed = false;
	if (q->poll_ev)
		event_del(q->poll_ev);
	q->vr = NULL;
	q->broken = false;
	q->st.broken = 0;
	q->st.enabled = 0;
	if (!vr)
		return;
	/* Requests still with the backend finish into the detached vring,
	 * which frees itself with the last one. */
	vr->q = NULL;
	if (vr->ilog) {
		vdu_inflight_stop(vr->ilog);
		vr->ilog = NULL;
	}
	/* Those finish without their queue: count them as retired only. */
	q->st.inflight -= vr->inflight;
	if (vr->inflight)
		q->retired += vr->inflight;
	else
		vdu_vring_free(vr);
}

void vdu_queue_process(struct vdu_queue *q)
{
	struct vdu_dev *dev = q->dev;
	struct vdu_vring *vr = q->vr;
	unsigned poll_us = dev->opts.poll_us;
	struct vdu_req *req;
	int r;

	if (!vr || q->broken)
		return;
	q->processing = true;
	do {
		unsigned n = 0;

		/* The ring may have moved (UPDATE_IOTLB unmaps it): resolve
		 * it before writing the suppression flag into it. */
		if (vdu_vring_map(vr, q->iova) < 0) {
			queue_break(q, -EFAULT);
			goto unplug;
		}
		vdu_vring_disable_notify(vr);
		while ((r = vdu_vring_pop(vr, q->iova, &req)) > 0) {
			n++;
			q->st.inflight++;
			vdu_blk_handle(q, req);
			if (q->broken || q->vr != vr)
				goto unplug;
			/* Large completions that came back at once (a fast
			 * backend) go out now: the driver's copy out of its
			 * bounce pages then overlaps with the next ones. */
			if (q->unpublished_bytes >= VDU_PUBLISH_EARLY_BYTES)
				queue_publish(q);
		}
		if (r < 0) {
			queue_break(q, r);
			goto unplug;
		}
		if (poll_us) {
			/* Busy-poll: keep kicks off and look again soon,
			 * letting completions run in between. */
			uint64_t now = now_us();

			if (n) {
				q->poll_until = now +
					vdu_poll_window(&q->gap_avg, poll_us,
							now - q->poll_from);
				q->poll_from = now;
			} else if (now < q->poll_until)
				/* Polling on: let the interrupt's completion
				 * work run when it is queued on this CPU. */
				sched_yield();
			if (now < q->poll_until) {
				/* A zero timer, not event_active(): libevent
				 * runs re-activated events in the same pass,
				 * so kicks, backend completions and calls
				 * would wait for the whole window. */
				static const struct timeval now_tv = { 0, 0 };

				event_add(q->poll_ev, &now_tv);
				goto unplug;
			}
		}
	} while (vdu_vring_enable_notify(vr));
unplug:
	/* Even when the ring broke mid-batch: what was submitted must
	 * start, or a batching backend would hold it forever. */
	if (dev->be.unplug && q->backend_open)
		dev->be.unplug(q->backend_qctx);
	q->processing = false;
	queue_publish(q);
}

void vdu_req_finish(struct vdu_req *req, uint8_t status)
{
	struct vdu_vring *vr = req->vr;
	struct vdu_queue *q = vr->q;

	req->inflight = false;
	vr->inflight--;
	if (!q) {
		/* The device was reset meanwhile: nothing to return. */
		struct vdu_queue *owner = vr->owner;

		owner->retired--;
		if (vr->inflight == 0)
			vdu_vring_free(vr);
		queue_maybe_reap(owner);
		return;
	}
	q->st.inflight--;
	q->st.requests++;
	if (req->io.op == VDU_IO_READ || req->io.op == VDU_IO_WRITE)
		q->unpublished_bytes += req->io.len;
	if (status != 0)
		q->st.errors++;
	if (req->status)
		*req->status = status;
	if (q->broken)
		return;
	if (vdu_vring_map(vr, q->iova) < 0) {
		queue_break(q, -EFAULT);
		return;
	}
	vdu_vring_push(vr, req);
	/* Completions inside vdu_queue_process are published at its end;
	 * the others once per loop iteration. */
	if (!q->processing && !q->publish_armed) {
		q->publish_armed = true;
		event_active(q->publish_ev, EV_WRITE, 1);
	}
}
