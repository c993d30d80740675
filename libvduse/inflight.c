/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The inflight log: per queue, a small file mapped MAP_SHARED that
 * records which requests were taken off the ring and not yet returned to
 * the driver.  It survives SIGKILL (the page cache keeps it), so a new
 * daemon can rebuild the ring position and resubmit exactly the requests
 * the driver is still waiting for -- and never one whose completion it
 * has already seen, which could overwrite newer data.
 *
 * Rule: a request's entry is cleared only after its completion is
 * visible to the driver; the ring-specific hooks in vring_split.c and
 * vring_packed.c keep enough in the header to finish a publish that was
 * interrupted half-way.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "internal.h"

#define INFLIGHT_MAGIC 0x31464c4655445600ULL /* "\0VDUFLF1" */
#define INFLIGHT_VERSION 2

static size_t ent_size(unsigned desc_cap)
{
	return sizeof(struct vdu_inflight_ent) +
	       desc_cap * sizeof(struct vring_packed_desc);
}

int vdu_inflight_open(const char *path, unsigned max_num, unsigned desc_cap,
		      bool keep, struct vdu_inflight **out)
{
	struct vdu_inflight *lg;
	size_t len = sizeof(struct vdu_inflight_hdr) +
		     (size_t)max_num * ent_size(desc_cap);
	struct stat st;
	int fd, r;

	/* O_NOFOLLOW: never write through a link planted in the state dir. */
	fd = open(path, O_RDWR | (keep ? 0 : O_CREAT) | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (keep && (size_t)st.st_size != len) {
		vdu_err("%s: inflight log does not match the device geometry", path);
		close(fd);
		return -ESTALE;
	}
	if (!keep && (ftruncate(fd, 0) < 0 || ftruncate(fd, len) < 0)) {
		r = -errno;
		close(fd);
		return r;
	}
	lg = calloc(1, sizeof(*lg));
	if (!lg) {
		close(fd);
		return -ENOMEM;
	}
	lg->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (lg->map == MAP_FAILED) {
		r = -errno;
		free(lg);
		return r;
	}
	lg->len = len;
	lg->hdr = lg->map;
	lg->ents = (char *)lg->map + sizeof(struct vdu_inflight_hdr);
	lg->max_num = max_num;
	lg->desc_cap = desc_cap;
	lg->ent_size = ent_size(desc_cap);
	if (keep && (lg->hdr->magic != INFLIGHT_MAGIC ||
		     lg->hdr->version != INFLIGHT_VERSION ||
		     lg->hdr->max_num != max_num ||
		     lg->hdr->desc_cap != desc_cap)) {
		vdu_err("%s: not an inflight log of this device", path);
		vdu_inflight_close(lg);
		return -ESTALE;
	}
	if (!keep) {
		lg->hdr->version = INFLIGHT_VERSION;
		lg->hdr->max_num = max_num;
		lg->hdr->desc_cap = desc_cap;
		__atomic_store_n(&lg->hdr->magic, INFLIGHT_MAGIC, __ATOMIC_RELEASE);
	}
	*out = lg;
	return 0;
}

void vdu_inflight_close(struct vdu_inflight *lg)
{
	if (!lg)
		return;
	munmap(lg->map, lg->len);
	free(lg);
}

void vdu_inflight_start(struct vdu_inflight *lg, const struct vdu_vring *vr,
			bool packed)
{
	struct vdu_inflight_hdr *h = lg->hdr;

	h->valid = 0;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memset(lg->ents, 0, (size_t)lg->max_num * lg->ent_size);
	h->num = vr->num;
	h->packed = packed;
	h->counter = 0;
	h->desc_iova = vr->desc_iova;
	h->avail_iova = vr->avail_iova;
	h->used_iova = vr->used_iova;
	h->used_idx = vr->used_idx;
	h->pstate = VDU_PSTATE(vr->used_idx, vr->used_wrap, VDU_INFLIGHT_NONE);
	__atomic_store_n(&h->valid, 1, __ATOMIC_RELEASE);
}

void vdu_inflight_stop(struct vdu_inflight *lg)
{
	__atomic_store_n(&lg->hdr->valid, 0, __ATOMIC_RELEASE);
}

bool vdu_inflight_matches(const struct vdu_inflight *lg,
			  const struct vdu_vring *vr, bool packed)
{
	const struct vdu_inflight_hdr *h = lg->hdr;

	return h->valid && h->num == vr->num && h->packed == packed &&
	       h->desc_iova == vr->desc_iova && h->avail_iova == vr->avail_iova &&
	       h->used_iova == vr->used_iova;
}

static int cmp_counter(const void *a, const void *b, void *arg)
{
	const struct vdu_inflight *lg = arg;
	uint64_t ca = vdu_inflight_ent(lg, *(const uint16_t *)a)->counter;
	uint64_t cb = vdu_inflight_ent(lg, *(const uint16_t *)b)->counter;

	return ca < cb ? -1 : ca > cb;
}

unsigned vdu_inflight_pending(const struct vdu_inflight *lg, unsigned num,
			      uint16_t *slots)
{
	unsigned n = 0;

	for (unsigned i = 0; i < num; i++)
		if (vdu_inflight_ent(lg, i)->inflight)
			slots[n++] = i;
	/* Resubmit in the order the old daemon took them. */
	qsort_r(slots, n, sizeof(*slots), cmp_counter, (void *)lg);
	return n;
}
