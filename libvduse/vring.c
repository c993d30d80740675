/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Ring state shared by both layouts: request slots and address mapping. */
#include <errno.h>
#include <stdlib.h>
#include <linux/virtio_config.h>

#include "internal.h"

struct vdu_vring *vdu_vring_new(struct vdu_queue *q, unsigned num,
				const struct vduse_vq_info *info,
				uint64_t features, size_t priv_size,
				int iov_max)
{
	struct vdu_vring *vr = calloc(1, sizeof(*vr));
	bool packed = features & (1ULL << VIRTIO_F_RING_PACKED);
	unsigned slots = num + 1; /* + scratch for the packed ring's walk */

	if (!vr)
		return NULL;
	vr->ops = packed ? &vdu_vring_packed_ops : &vdu_vring_split_ops;
	vr->q = vr->owner = q;
	vr->num = num;
	vr->desc_iova = info->desc_addr;
	vr->avail_iova = info->driver_addr;
	vr->used_iova = info->device_addr;
	vr->event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	vr->indirect = features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	if (packed) {
		vr->last_avail = info->packed.last_avail_idx;
		vr->avail_wrap = info->packed.last_avail_counter;
		vr->used_idx = vr->signalled_used = info->packed.last_used_idx;
		vr->used_wrap = info->packed.last_used_counter;
		if (vr->last_avail >= num || vr->used_idx >= num) {
			free(vr);
			return NULL;
		}
	} else
		vr->last_avail = info->split.avail_index;
	vr->iov_max = iov_max;
	if (packed) {
		/* A chain is at most the ring, and at most seg_max data
		 * segments plus header and status: iov_max covers both. */
		vr->chain_cap = VDU_MIN(num, (unsigned)iov_max);
		vr->chain = calloc(vr->chain_cap, sizeof(*vr->chain));
		if (!vr->chain) {
			free(vr);
			return NULL;
		}
	}
	vr->reqs = calloc(slots, sizeof(*vr->reqs));
	vr->iov_area = calloc((size_t)slots * iov_max, sizeof(struct iovec));
	priv_size = (priv_size + 15) & ~(size_t)15;
	if (priv_size)
		vr->priv_area = calloc(slots, priv_size);
	if (!vr->reqs || !vr->iov_area || (priv_size && !vr->priv_area)) {
		vdu_vring_free(vr);
		return NULL;
	}
	for (unsigned i = 0; i < slots; i++) {
		struct vdu_req *r = &vr->reqs[i];
		r->vr = vr;
		r->head = i;
		r->iov = vr->iov_area + (size_t)i * iov_max;
		r->io.priv = priv_size ? (char *)vr->priv_area + i * priv_size : NULL;
	}
	return vr;
}

void vdu_vring_free(struct vdu_vring *vr)
{
	if (!vr)
		return;
	free(vr->chain);
	free(vr->reqs);
	free(vr->iov_area);
	free(vr->priv_area);
	free(vr);
}

int vdu_vring_map(struct vdu_vring *vr, struct vdu_iova *map)
{
	if (vr->mapped && vr->iova_gen == vdu_iova_generation(map))
		return 0;
	vr->mapped = vr->ops->map(vr, map) == 0;
	/* Faulting regions in may itself bump the generation; take the
	 * value after the lookups. */
	vr->iova_gen = vdu_iova_generation(map);
	return vr->mapped ? 0 : -EFAULT;
}
