/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Packed virtqueue mechanics (VIRTIO_F_RING_PACKED): one descriptor ring
 * that the driver and the device both write, told apart by wrap counters,
 * plus an event-suppression structure in each direction.  As for the
 * split ring, everything read from the ring is validated; a malformed
 * ring is reported as -EPROTO/-EFAULT and the caller stops the queue.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "internal.h"

#define F_AVAIL (1u << VRING_PACKED_DESC_F_AVAIL)
#define F_USED (1u << VRING_PACKED_DESC_F_USED)
#define WRAP_BIT (1u << VRING_PACKED_EVENT_F_WRAP_CTR)

#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define load_acquire16(p) le16toh(__atomic_load_n((p), __ATOMIC_ACQUIRE))
#define store_release16(p, v) __atomic_store_n((p), htole16(v), __ATOMIC_RELEASE)
#define load16(p) le16toh(__atomic_load_n((p), __ATOMIC_RELAXED))
#define store16(p, v) __atomic_store_n((p), htole16(v), __ATOMIC_RELAXED)

/* Is the descriptor at pos available in the driver's wrap round wrap? */
static inline bool desc_avail(uint16_t flags, bool wrap)
{
	return !!(flags & F_AVAIL) == wrap && !!(flags & F_USED) != wrap;
}

static int packed_map(struct vdu_vring *vr, struct vdu_iova *map)
{
	vr->pdesc = vdu_iova_ptr(map, vr->desc_iova,
				 (uint64_t)vr->num * sizeof(struct vring_packed_desc),
				 VDU_PERM_READ | VDU_PERM_WRITE);
	vr->driver_ev = vdu_iova_ptr(map, vr->avail_iova,
				     sizeof(struct vring_packed_desc_event),
				     VDU_PERM_READ);
	vr->device_ev = vdu_iova_ptr(map, vr->used_iova,
				     sizeof(struct vring_packed_desc_event),
				     VDU_PERM_READ | VDU_PERM_WRITE);
	return vr->pdesc && vr->driver_ev && vr->device_ev ? 0 : -EFAULT;
}

static int add_buffer(struct vdu_vring *vr, struct vdu_iova *map,
		      struct vdu_req *req, const struct vring_packed_desc *d,
		      uint16_t flags, bool *writing, int *niov)
{
	int n;

	if (flags & VRING_DESC_F_WRITE)
		*writing = true;
	else if (*writing)
		return -EPROTO; /* readable after writable */
	n = vdu_iova_translate(map, le64toh(d->addr), le32toh(d->len),
			       *writing ? VDU_PERM_WRITE : VDU_PERM_READ,
			       req->iov + *niov, vr->iov_max - *niov);
	if (n < 0)
		return n;
	*niov += n;
	if (*writing)
		req->in_num += n;
	else
		req->out_num += n;
	return 0;
}

/* An indirect table: entries are consumed in order, NEXT is ignored. */
static int walk_indirect(struct vdu_vring *vr, struct vdu_iova *map,
			 struct vdu_req *req, const struct vring_packed_desc *d,
			 bool *writing, int *niov)
{
	uint32_t len = le32toh(d->len);
	const struct vring_packed_desc *table;

	if (!vr->indirect || len == 0 || len % sizeof(*table) ||
	    len / sizeof(*table) > vr->num)
		return -EPROTO;
	table = vdu_iova_ptr(map, le64toh(d->addr), len, VDU_PERM_READ);
	if (!table)
		return -EFAULT;
	for (unsigned i = 0; i < len / sizeof(*table); i++) {
		struct vring_packed_desc e;
		uint16_t f;
		int r;

		memcpy(&e, &table[i], sizeof(e));
		f = le16toh(e.flags);
		if (f & VRING_DESC_F_INDIRECT)
			return -EPROTO; /* nested */
		r = add_buffer(vr, map, req, &e, f, writing, niov);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Turn a chain's descriptors (a linear copy) into req's iovecs. */
static int process_chain(struct vdu_vring *vr, struct vdu_iova *map,
			 struct vdu_req *req,
			 const struct vring_packed_desc *descs, unsigned ndesc)
{
	bool writing = false;
	int niov = 0;

	req->out_num = req->in_num = 0;
	for (unsigned i = 0; i < ndesc; i++) {
		const struct vring_packed_desc *d = &descs[i];
		uint16_t flags = le16toh(d->flags);
		int r;

		if (flags & VRING_DESC_F_INDIRECT) {
			if (flags & VRING_DESC_F_NEXT)
				return -EPROTO;
			r = walk_indirect(vr, map, req, d, &writing, &niov);
		} else
			r = add_buffer(vr, map, req, d, flags, &writing, &niov);
		if (r < 0)
			return r;
	}
	return 0;
}

static void take_slot(struct vdu_vring *vr, struct vdu_req *req, unsigned ndesc)
{
	req->ndesc = ndesc;
	req->inflight = true;
	req->status = NULL;
	req->used_len = 0;
	vr->inflight++;
}

static int packed_pop(struct vdu_vring *vr, struct vdu_iova *map,
		      struct vdu_req **out)
{
	uint16_t pos = vr->last_avail, flags, id;
	bool wrap = vr->avail_wrap;
	unsigned ndesc = 0;
	struct vdu_req *req;
	int r;

	flags = load_acquire16(&vr->pdesc[pos].flags);
	if (!desc_avail(flags, wrap))
		return 0;
	/* Copy the chain out first: the driver may not change it, but we
	 * read each descriptor once, and the log keeps this copy. */
	for (;;) {
		struct vring_packed_desc *d = &vr->chain[ndesc];

		if (ndesc == vr->chain_cap)
			return -EPROTO; /* longer than the ring or seg_max */
		memcpy(d, &vr->pdesc[pos], sizeof(*d));
		flags = le16toh(d->flags);
		if (ndesc++ && !desc_avail(flags, wrap))
			return -EPROTO; /* chain runs into unavailable slots */
		if (++pos == vr->num) {
			pos = 0;
			wrap = !wrap;
		}
		if (!(flags & VRING_DESC_F_NEXT))
			break;
	}
	/* The buffer id is in the last descriptor. */
	id = le16toh(vr->chain[ndesc - 1].id);
	if (id >= vr->num || vr->reqs[id].inflight)
		return -EPROTO;
	req = &vr->reqs[id];
	r = process_chain(vr, map, req, vr->chain, ndesc);
	if (r < 0)
		return r;
	if (vr->ilog) {
		struct vdu_inflight_ent *e = vdu_inflight_ent(vr->ilog, id);

		/* Struct copies: chains are short, a memcpy call costs more. */
		for (unsigned i = 0; i < ndesc; i++)
			e->descs[i] = vr->chain[i];
		e->ndesc = ndesc;
		vdu_inflight_take(vr->ilog, id);
	}
	vr->last_avail = pos;
	vr->avail_wrap = wrap;
	take_slot(vr, req, ndesc);
	*out = req;
	return 1;
}

/*
 * With a log, returning a buffer is bracketed by two atomic stores of the
 * log's pstate word: {position, wrap, id} before the used descriptor is
 * written, {new position, new wrap, NONE} after.  Recovery then knows the
 * one id that may be half returned and where to look (packed_recover).
 */
static void packed_push(struct vdu_vring *vr, struct vdu_req *req)
{
	struct vring_packed_desc *e = &vr->pdesc[vr->used_idx];
	struct vdu_inflight *lg = vr->ilog;

	if (lg) {
		__atomic_store_n(&lg->hdr->pstate,
				 VDU_PSTATE(vr->used_idx, vr->used_wrap, req->head),
				 __ATOMIC_RELAXED);
		vdu_inflight_barrier();
	}
	e->id = htole16(req->head);
	e->len = htole32(req->used_len);
	/* Flags last: they hand the slot back to the driver. */
	store_release16(&e->flags, vr->used_wrap ? F_AVAIL | F_USED : 0);
	vr->used_idx += req->ndesc;
	if (vr->used_idx >= vr->num) {
		vr->used_idx -= vr->num;
		vr->used_wrap = !vr->used_wrap;
	}
	vr->pending_used++;
	if (lg) {
		vdu_inflight_barrier();
		vdu_inflight_ent(lg, req->head)->inflight = 0;
		vdu_inflight_barrier();
		__atomic_store_n(&lg->hdr->pstate,
				 VDU_PSTATE(vr->used_idx, vr->used_wrap,
					    VDU_INFLIGHT_NONE),
				 __ATOMIC_RELAXED);
	}
}

static bool packed_publish(struct vdu_vring *vr)
{
	uint16_t flags, off_wrap, old, new, off;

	if (!vr->pending_used)
		return false;
	vr->pending_used = 0;
	/* Our used descriptors before the driver's suppression state. */
	smp_mb();
	flags = load16(&vr->driver_ev->flags);
	old = vr->signalled_used;
	new = vr->signalled_used = vr->used_idx;
	if (flags == VRING_PACKED_EVENT_FLAG_DISABLE)
		return false;
	if (flags != VRING_PACKED_EVENT_FLAG_DESC || !vr->event_idx)
		return true;
	if (!vr->signalled_valid) {
		vr->signalled_valid = true;
		return true;
	}
	off_wrap = load16(&vr->driver_ev->off_wrap);
	off = off_wrap & ~WRAP_BIT;
	if (!!(off_wrap & WRAP_BIT) != vr->used_wrap)
		off -= vr->num;
	return (uint16_t)(new - off - 1) < (uint16_t)(new - old);
}

static void packed_disable_notify(struct vdu_vring *vr)
{
	store16(&vr->device_ev->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
}

static bool packed_enable_notify(struct vdu_vring *vr)
{
	if (vr->event_idx) {
		store16(&vr->device_ev->off_wrap,
			vr->last_avail | (vr->avail_wrap ? WRAP_BIT : 0));
		store16(&vr->device_ev->flags, VRING_PACKED_EVENT_FLAG_DESC);
	} else
		store16(&vr->device_ev->flags, VRING_PACKED_EVENT_FLAG_ENABLE);
	smp_mb();
	return desc_avail(load_acquire16(&vr->pdesc[vr->last_avail].flags),
			  vr->avail_wrap);
}

static void advance(uint16_t *idx, bool *wrap, unsigned n, unsigned num)
{
	unsigned v = *idx + n;

	if (v >= num) {
		v -= num;
		*wrap = !*wrap;
	}
	*idx = v;
}

static int packed_recover(struct vdu_vring *vr)
{
	struct vdu_inflight_hdr *h = vr->ilog->hdr;
	uint32_t st = h->pstate;
	uint16_t used = st & 0x7fff, pend = st >> 16;
	bool uwrap = st & 0x8000;
	unsigned total = 0;

	if (used >= vr->num)
		return -EPROTO;
	if (pend != VDU_INFLIGHT_NONE) {
		/*
		 * Killed while returning pend at position used.  That slot
		 * held a descriptor the driver made available in lap uwrap
		 * and we took; if it still reads so, our used descriptor was
		 * never written.  Anything else -- our used descriptor, or
		 * the driver's next lap -- means the driver got it back.
		 */
		struct vdu_inflight_ent *e;

		if (pend >= vr->num)
			return -EPROTO;
		e = vdu_inflight_ent(vr->ilog, pend);
		if (e->ndesc == 0 || e->ndesc > vr->chain_cap)
			return -EPROTO;
		if (!desc_avail(load_acquire16(&vr->pdesc[used].flags), uwrap)) {
			e->inflight = 0;
			advance(&used, &uwrap, e->ndesc, vr->num);
		}
	}
	h->pstate = VDU_PSTATE(used, uwrap, VDU_INFLIGHT_NONE);
	for (unsigned i = 0; i < vr->num; i++) {
		struct vdu_inflight_ent *e = vdu_inflight_ent(vr->ilog, i);

		if (!e->inflight)
			continue;
		if (e->ndesc == 0 || e->ndesc > vr->chain_cap)
			return -EPROTO;
		total += e->ndesc;
	}
	if (total > vr->num)
		return -EPROTO;
	vr->used_idx = vr->signalled_used = used;
	vr->used_wrap = uwrap;
	vr->last_avail = used;
	vr->avail_wrap = uwrap;
	advance(&vr->last_avail, &vr->avail_wrap, total, vr->num);
	return 0;
}

/* Returning other buffers overwrote this chain in the ring: use the
 * copy in the log. */
static int packed_resubmit(struct vdu_vring *vr, struct vdu_iova *map,
			   uint16_t slot, struct vdu_req **out)
{
	struct vdu_inflight_ent *e = vdu_inflight_ent(vr->ilog, slot);
	struct vdu_req *req = &vr->reqs[slot];
	int r = process_chain(vr, map, req, e->descs, e->ndesc);

	if (r < 0)
		return r;
	take_slot(vr, req, e->ndesc);
	*out = req;
	return 0;
}

static void packed_get_state(const struct vdu_vring *vr, struct vduse_vq_state *st)
{
	st->packed.last_avail_idx = vr->last_avail;
	st->packed.last_avail_counter = vr->avail_wrap;
	st->packed.last_used_idx = vr->used_idx;
	st->packed.last_used_counter = vr->used_wrap;
}

static bool packed_in_use(struct vdu_vring *vr)
{
	return __atomic_load_n(&vr->pdesc[0].flags, __ATOMIC_ACQUIRE) != 0;
}

const struct vdu_vring_ops vdu_vring_packed_ops = {
	.name = "packed",
	.packed = true,
	.get_state = packed_get_state,
	.in_use = packed_in_use,
	.recover = packed_recover,
	.resubmit = packed_resubmit,
	.map = packed_map,
	.pop = packed_pop,
	.push = packed_push,
	.publish = packed_publish,
	.enable_notify = packed_enable_notify,
	.disable_notify = packed_disable_notify,
};
