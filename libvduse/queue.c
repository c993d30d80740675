/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A virtqueue at work: kick eventfd -> drain the available ring into
 * virtio-blk requests -> backend -> completions -> one used-ring publish
 * and at most one interrupt per batch.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
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

static void queue_publish(struct vdu_queue *q)
{
	struct vdu_vring *vr = q->vr;

	if (!vr || q->broken || !vr->pending_used)
		return;
	if (vdu_vring_map(vr, q->dev->iova) < 0) {
		queue_break(q, -EFAULT);
		return;
	}
	if (vdu_vring_publish(vr)) {
		if (q->dev->tp->inject_irq(q->dev, q->idx) == 0)
			q->st.irqs++;
	}
}

static void publish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vdu_queue *q = arg;

	queue_publish(q);
	vdu_dev_maybe_reap(q->dev);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vdu_queue *q = arg;
	eventfd_t v;

	if (eventfd_read(fd, &v) == 0)
		q->st.kicks++;
	vdu_queue_process(q);
}

int vdu_queue_init(struct vdu_dev *dev, struct vdu_queue *q, unsigned idx)
{
	memset(q, 0, sizeof(*q));
	q->dev = dev;
	q->idx = idx;
	q->base = dev->base;
	q->kickfd = -1;
	q->publish_ev = event_new(q->base, -1, 0, publish_cb, q);
	return q->publish_ev ? 0 : -ENOMEM;
}

void vdu_queue_fini(struct vdu_queue *q)
{
	vdu_queue_disable(q);
	if (q->publish_ev)
		event_free(q->publish_ev);
	q->publish_ev = NULL;
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
			      dev->be->io_priv_size, dev->seg_max + 18);
	if (!q->vr)
		return -ENOMEM;
	q->broken = false;
	q->st.broken = 0;
	q->st.enabled = 1;
	if (vdu_vring_map(q->vr, dev->iova) < 0) {
		vdu_err("%s: queue %u: ring addresses are not mapped",
			dev->name, q->idx);
		vdu_queue_disable(q);
		return -EFAULT;
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
	vdu_dbg("%s: queue %u enabled: size %u avail %u used %u", dev->name,
		q->idx, info.num, q->vr->last_avail, q->vr->used_idx);
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
	q->vr = NULL;
	q->broken = false;
	q->st.broken = 0;
	q->st.enabled = 0;
	if (!vr)
		return;
	/* Requests still with the backend finish into the detached vring,
	 * which frees itself with the last one. */
	vr->q = NULL;
	/* Those finish without their queue: count them as retired only. */
	q->st.inflight -= vr->inflight;
	if (vr->inflight)
		dev->retired_inflight += vr->inflight;
	else
		vdu_vring_free(vr);
}

void vdu_queue_process(struct vdu_queue *q)
{
	struct vdu_dev *dev = q->dev;
	struct vdu_vring *vr = q->vr;
	struct vdu_req *req;
	int r;

	if (!vr || q->broken)
		return;
	do {
		vdu_vring_disable_notify(vr);
		while ((r = vdu_vring_pop(vr, dev->iova, &req)) > 0) {
			q->st.inflight++;
			vdu_blk_handle(q, req);
			if (q->broken || q->vr != vr)
				goto unplug;
		}
		if (r < 0) {
			queue_break(q, r);
			goto unplug;
		}
	} while (vdu_vring_enable_notify(vr));
unplug:
	/* Even when the ring broke mid-batch: what was submitted must
	 * start, or a batching backend would hold it forever. */
	if (dev->be->unplug && q->backend_qctx)
		dev->be->unplug(q->backend_qctx);
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
		struct vdu_dev *dev = vr->dev;

		dev->retired_inflight--;
		if (vr->inflight == 0)
			vdu_vring_free(vr);
		vdu_dev_maybe_reap(dev);
		return;
	}
	q->st.inflight--;
	q->st.requests++;
	if (status != 0)
		q->st.errors++;
	if (req->status)
		*req->status = status;
	if (q->broken)
		return;
	if (vdu_vring_map(vr, q->dev->iova) < 0) {
		queue_break(q, -EFAULT);
		return;
	}
	vdu_vring_push(vr, req);
	event_active(q->publish_ev, EV_WRITE, 1);
}
