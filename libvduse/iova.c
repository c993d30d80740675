/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * IOVA map: the driver's I/O virtual addresses -> our host addresses.
 * Regions are learnt lazily on a miss (the transport's fault handler maps
 * them) and dropped on UPDATE_IOTLB or reset.  A dropped region may still
 * be referenced by requests the backend is working on, so its munmap is
 * deferred until the device has nothing in flight (vdu_iova_reap).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

struct vdu_iova {
	struct vdu_region *r;   /* sorted by start, non-overlapping */
	size_t n, cap;
	struct vdu_region *dead; /* awaiting munmap */
	size_t ndead, capdead;
	size_t hint;            /* last region hit */
	uint64_t gen;
	vdu_iova_fault_fn fault;
	void *opaque;
};

struct vdu_iova *vdu_iova_new(vdu_iova_fault_fn fault, void *opaque)
{
	struct vdu_iova *m = calloc(1, sizeof(*m));

	if (m) {
		m->fault = fault;
		m->opaque = opaque;
	}
	return m;
}

static void region_unmap(struct vdu_region *r)
{
	if (r->unmap_addr)
		munmap(r->unmap_addr, r->unmap_len);
}

void vdu_iova_free(struct vdu_iova *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		region_unmap(&m->r[i]);
	vdu_iova_reap(m);
	free(m->r);
	free(m->dead);
	free(m);
}

uint64_t vdu_iova_generation(const struct vdu_iova *m)
{
	return m->gen;
}

static int bury(struct vdu_iova *m, const struct vdu_region *r)
{
	if (!r->unmap_addr)
		return 0;
	if (m->ndead == m->capdead) {
		size_t cap = m->capdead ? m->capdead * 2 : 8;
		struct vdu_region *d = realloc(m->dead, cap * sizeof(*d));
		if (!d) {
			/* Cannot defer: leaking the mapping is safer than
			 * pulling memory out from under a request. */
			return -ENOMEM;
		}
		m->dead = d;
		m->capdead = cap;
	}
	m->dead[m->ndead++] = *r;
	return 0;
}

void vdu_iova_reap(struct vdu_iova *m)
{
	for (size_t i = 0; i < m->ndead; i++)
		region_unmap(&m->dead[i]);
	m->ndead = 0;
}

void vdu_iova_invalidate(struct vdu_iova *m, uint64_t start, uint64_t last)
{
	size_t j = 0;

	for (size_t i = 0; i < m->n; i++) {
		struct vdu_region *r = &m->r[i];
		if (r->last < start || r->start > last)
			m->r[j++] = *r;
		else
			bury(m, r);
	}
	m->n = j;
	m->hint = 0;
	m->gen++;
}

int vdu_iova_add(struct vdu_iova *m, const struct vdu_region *r)
{
	size_t pos;

	if (r->last < r->start || !r->host)
		return -EINVAL;
	/* The kernel never hands out overlapping regions; if it seems to,
	 * the old ones are stale. */
	vdu_iova_invalidate(m, r->start, r->last);
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		struct vdu_region *n = realloc(m->r, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->r = n;
		m->cap = cap;
	}
	for (pos = 0; pos < m->n && m->r[pos].start < r->start; pos++)
		;
	memmove(&m->r[pos + 1], &m->r[pos], (m->n - pos) * sizeof(*r));
	m->r[pos] = *r;
	m->n++;
	return 0;
}

/* The region containing iova, faulting it in if needed. */
static struct vdu_region *lookup(struct vdu_iova *m, uint64_t iova)
{
	size_t lo = 0, hi = m->n;
	struct vdu_region nr;

	if (m->hint < m->n && iova >= m->r[m->hint].start &&
	    iova <= m->r[m->hint].last)
		return &m->r[m->hint];
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (iova < m->r[mid].start)
			hi = mid;
		else if (iova > m->r[mid].last)
			lo = mid + 1;
		else {
			m->hint = mid;
			return &m->r[mid];
		}
	}
	if (!m->fault)
		return NULL;
	memset(&nr, 0, sizeof(nr));
	if (m->fault(m->opaque, iova, &nr) < 0)
		return NULL;
	if (iova < nr.start || iova > nr.last || vdu_iova_add(m, &nr) < 0) {
		region_unmap(&nr);
		return NULL;
	}
	/* Adding bumped the generation; that is fine: it only makes
	 * rings re-resolve once. */
	for (size_t i = 0; i < m->n; i++)
		if (iova >= m->r[i].start && iova <= m->r[i].last) {
			m->hint = i;
			return &m->r[i];
		}
	return NULL;
}

int vdu_iova_translate(struct vdu_iova *m, uint64_t iova, uint64_t len,
		       uint8_t perm, struct iovec *iov, int max)
{
	int n = 0;

	if (len && iova + len - 1 < iova)
		return -EFAULT; /* wraps around */
	/* Fast path: all in the last region hit. */
	if (m->hint < m->n && len && max > 0) {
		const struct vdu_region *h = &m->r[m->hint];

		if (iova >= h->start && iova + len - 1 <= h->last &&
		    (h->perm & perm) == perm) {
			iov[0].iov_base = h->host + (iova - h->start);
			iov[0].iov_len = len;
			return 1;
		}
	}
	while (len) {
		struct vdu_region *r = lookup(m, iova);
		uint64_t avail, chunk;

		if (!r)
			return -EFAULT;
		if ((r->perm & perm) != perm)
			return -EACCES;
		if (n == max)
			return -E2BIG;
		avail = r->last - iova + 1; /* 0 means the full 2^64 */
		chunk = avail && avail < len ? avail : len;
		iov[n].iov_base = r->host + (iova - r->start);
		iov[n].iov_len = chunk;
		n++;
		iova += chunk;
		len -= chunk;
	}
	return n;
}

void *vdu_iova_ptr(struct vdu_iova *m, uint64_t iova, uint64_t len,
		   uint8_t perm)
{
	struct iovec v;

	if (len == 0)
		return NULL;
	if (vdu_iova_translate(m, iova, len, perm, &v, 1) != 1)
		return NULL;
	return v.iov_base;
}
