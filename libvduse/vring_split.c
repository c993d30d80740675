/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Split virtqueue mechanics: taking descriptor chains off the available
 * ring, returning them on the used ring, and notification suppression
 * (flags or VIRTIO_RING_F_EVENT_IDX).  Everything read from the ring is
 * driver-controlled and validated before use; a malformed ring is
 * reported as -EPROTO/-EFAULT and the caller stops the queue.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_config.h>

#include "internal.h"

/* Ring memory is shared with the driver on another CPU. */
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define load_acquire16(p) le16toh(__atomic_load_n((p), __ATOMIC_ACQUIRE))
#define store_release16(p, v) __atomic_store_n((p), htole16(v), __ATOMIC_RELEASE)
#define load16(p) le16toh(__atomic_load_n((p), __ATOMIC_RELAXED))
#define store16(p, v) __atomic_store_n((p), htole16(v), __ATOMIC_RELAXED)

static inline uint16_t *used_event(struct vdu_vring *vr)
{
	return &vr->avail->ring[vr->num];
}

static inline uint16_t *avail_event(struct vdu_vring *vr)
{
	return (uint16_t *)&vr->used->ring[vr->num];
}

static int split_map(struct vdu_vring *vr, struct vdu_iova *map)
{
	size_t n = vr->num;

	vr->desc = vdu_iova_ptr(map, vr->desc_iova, 16 * n, VDU_PERM_READ);
	vr->avail = vdu_iova_ptr(map, vr->avail_iova, 6 + 2 * n, VDU_PERM_READ);
	vr->used = vdu_iova_ptr(map, vr->used_iova, 6 + 8 * n,
				VDU_PERM_READ | VDU_PERM_WRITE);
	if (!vr->desc || !vr->avail || !vr->used)
		return -EFAULT;
	if (!vr->used_loaded) {
		vr->used_idx = vr->signalled_used = load16(&vr->used->idx);
		vr->used_loaded = true;
	}
	return 0;
}

/* Walk one chain from head into req->iov.  Descriptors are copied out
 * before use so the driver cannot change them under us. */
static int walk_chain(struct vdu_vring *vr, struct vdu_iova *map,
		      struct vdu_req *req, uint16_t head)
{
	const struct vring_desc *table = vr->desc;
	unsigned max = vr->num, idx = head, count = 0;
	bool indirect = false, writing = false;
	int niov = 0;

	req->out_num = req->in_num = 0;
	for (;;) {
		struct vring_desc d;
		uint16_t flags;
		int n;

		if (++count > max)
			return -EPROTO; /* loop or over-long chain */
		memcpy(&d, &table[idx], sizeof(d));
		flags = le16toh(d.flags);
		if (flags & VRING_DESC_F_INDIRECT) {
			uint32_t len = le32toh(d.len);
			if (!vr->indirect || indirect ||
			    (flags & VRING_DESC_F_NEXT) || len == 0 ||
			    len % sizeof(struct vring_desc) ||
			    len / sizeof(struct vring_desc) > vr->num)
				return -EPROTO;
			table = vdu_iova_ptr(map, le64toh(d.addr), len,
					     VDU_PERM_READ);
			if (!table)
				return -EFAULT;
			max = len / sizeof(struct vring_desc);
			idx = 0;
			count = 0;
			indirect = true;
			continue;
		}
		if (flags & VRING_DESC_F_WRITE)
			writing = true;
		else if (writing)
			return -EPROTO; /* readable after writable */
		n = vdu_iova_translate(map, le64toh(d.addr), le32toh(d.len),
				       writing ? VDU_PERM_WRITE : VDU_PERM_READ,
				       req->iov + niov, vr->iov_max - niov);
		if (n < 0)
			return n;
		niov += n;
		if (writing)
			req->in_num += n;
		else
			req->out_num += n;
		if (!(flags & VRING_DESC_F_NEXT))
			return 0;
		idx = le16toh(d.next);
		if (idx >= max)
			return -EPROTO;
	}
}

static int split_pop(struct vdu_vring *vr, struct vdu_iova *map,
		     struct vdu_req **out)
{
	uint16_t avail_idx, head;
	struct vdu_req *req;
	int r;

	avail_idx = load_acquire16(&vr->avail->idx);
	if (avail_idx == vr->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vr->last_avail) > vr->num)
		return -EPROTO;
	head = load16(&vr->avail->ring[vr->last_avail % vr->num]);
	if (head >= vr->num)
		return -EPROTO;
	req = &vr->reqs[head];
	if (req->inflight)
		return -EPROTO; /* head reused while we own it */
	r = walk_chain(vr, map, req, head);
	if (r < 0)
		return r;
	if (vr->ilog)
		vdu_inflight_take(vr->ilog, head);
	vr->last_avail++;
	req->inflight = true;
	req->status = NULL;
	req->used_len = 0;
	vr->inflight++;
	*out = req;
	return 1;
}

static void split_push(struct vdu_vring *vr, struct vdu_req *req)
{
	struct vring_used_elem *e = &vr->used->ring[vr->used_idx % vr->num];

	e->id = htole32(req->head);
	e->len = htole32(req->used_len);
	vr->used_idx++;
	vr->pending_used++;
}

/* The driver can see used entries up to upto: forget them in the log.
 * Also finishes a commit a killed daemon left half done. */
static void inflight_commit(struct vdu_vring *vr, uint16_t upto)
{
	struct vdu_inflight *lg = vr->ilog;
	uint16_t i = lg->hdr->used_idx;

	vdu_inflight_barrier();
	if ((uint16_t)(upto - i) <= vr->num)
		for (; i != upto; i++) {
			uint32_t id = le32toh(vr->used->ring[i % vr->num].id);

			if (id < vr->num)
				vdu_inflight_ent(lg, id)->inflight = 0;
		}
	vdu_inflight_barrier();
	lg->hdr->used_idx = upto;
}

static bool split_publish(struct vdu_vring *vr)
{
	uint16_t old, new;

	if (!vr->pending_used)
		return false;
	vr->pending_used = 0;
	new = vr->used_idx;
	store_release16(&vr->used->idx, new);
	if (vr->ilog)
		inflight_commit(vr, new);
	/* Order the idx store before reading the driver's suppression
	 * state, or we may miss that it wants an interrupt. */
	smp_mb();
	if (!vr->event_idx)
		return !(load16(&vr->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	old = vr->signalled_used;
	vr->signalled_used = new;
	if (!vr->signalled_valid) {
		vr->signalled_valid = true;
		return true;
	}
	return (uint16_t)(new - load16(used_event(vr)) - 1) < (uint16_t)(new - old);
}

static void split_disable_notify(struct vdu_vring *vr)
{
	/* With EVENT_IDX a stale avail_event already suppresses kicks. */
	if (!vr->event_idx)
		store16(&vr->used->flags, VRING_USED_F_NO_NOTIFY);
}

static bool split_enable_notify(struct vdu_vring *vr)
{
	if (vr->event_idx)
		store16(avail_event(vr), vr->last_avail);
	else
		store16(&vr->used->flags, 0);
	/* The driver checks our flag after publishing avail->idx; check its
	 * idx after publishing our flag, so that one of us sees the other. */
	smp_mb();
	return load_acquire16(&vr->avail->idx) != vr->last_avail;
}

static int split_recover(struct vdu_vring *vr)
{
	unsigned n = 0;

	/* used_idx was read from the ring: what the driver has seen. */
	if ((uint16_t)(vr->used_idx - vr->ilog->hdr->used_idx) > vr->num)
		return -EPROTO;
	inflight_commit(vr, vr->used_idx);
	for (unsigned i = 0; i < vr->num; i++)
		n += vdu_inflight_ent(vr->ilog, i)->inflight ? 1 : 0;
	vr->last_avail = vr->used_idx + n;
	if ((uint16_t)(load_acquire16(&vr->avail->idx) - vr->last_avail) > vr->num)
		return -EPROTO;
	return 0;
}

/* The driver leaves descriptors alone until they come back on the used
 * ring, so an in-flight chain can be walked again from its head. */
static int split_resubmit(struct vdu_vring *vr, struct vdu_iova *map,
			  uint16_t slot, struct vdu_req **out)
{
	struct vdu_req *req = &vr->reqs[slot];
	int r = walk_chain(vr, map, req, slot);

	if (r < 0)
		return r;
	req->inflight = true;
	req->status = NULL;
	req->used_len = 0;
	vr->inflight++;
	*out = req;
	return 0;
}

static void split_get_state(const struct vdu_vring *vr, struct vduse_vq_state *st)
{
	st->split.avail_index = vr->last_avail;
}

static bool split_in_use(struct vdu_vring *vr)
{
	return vr->used_idx != 0 ||
	       __atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE) != 0;
}

const struct vdu_vring_ops vdu_vring_split_ops = {
	.name = "split",
	.packed = false,
	.get_state = split_get_state,
	.in_use = split_in_use,
	.recover = split_recover,
	.resubmit = split_resubmit,
	.map = split_map,
	.pop = split_pop,
	.push = split_push,
	.publish = split_publish,
	.enable_notify = split_enable_notify,
	.disable_notify = split_disable_notify,
};
