/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Our memory under the kernel's bounce buffer (VDUSE_IOTLB_REG_UMEM).
 *
 * A virtio_vdpa driver's data reaches us through a bounce buffer at IOVA
 * 0: the kernel copies it there from the driver's pages and back.  Its
 * own pages cannot be pinned by userspace on every kernel (6.12.118 and
 * later refuse, so O_DIRECT into them fails with EFAULT), so a device
 * whose backend does direct I/O registers pages of its own instead.  The
 * kernel creates the buffer lazily, with the driver's first data mapping,
 * and accepts memory only once it exists: the first IOTLB miss inside it
 * is the moment, before the request that missed is served (the kernel
 * copies pages already in use into ours).  Every reset deregisters (the
 * kernel copies pages in use back to its own, and a detached device pins
 * nothing); the next cycle registers again.  A daemon that dies loses
 * nothing either: closing the device fd deregisters the same way.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "internal.h"

#define HUGE_2M (2ULL << 20)

void vdu_bounce_init(struct vdu_dev *dev)
{
	pthread_mutex_init(&dev->bounce.lock, NULL);
}

void vdu_bounce_choose(struct vdu_dev *dev)
{
	dev->bounce.want = dev->opts.bounce == VDU_BOUNCE_USER ||
			   (dev->opts.bounce == VDU_BOUNCE_AUTO &&
			    (dev->be_info.caps & VDU_CAP_DIRECT_IO));
}

/*
 * size bytes, 2 MiB aligned so that transparent huge pages can back it
 * (fewer pages to pin and to walk).  The slack around it stays mapped
 * PROT_NONE: the buffer is then a VMA of its own, whose smaps lines are
 * its own (see vdu_dev_get_bounce).
 */
static int buf_alloc(struct vdu_bounce *b, uint64_t size)
{
	size_t len = size + HUGE_2M;
	uint8_t *p, *al;

	p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	al = (uint8_t *)(((uintptr_t)p + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1));
	if (mprotect(al, size, PROT_READ | PROT_WRITE) < 0) {
		int r = -errno;

		munmap(p, len);
		return r;
	}
	/* Only a hint: without THP the buffer is made of 4 KiB pages. */
	madvise(al, size, MADV_HUGEPAGE);
	b->map = p;
	b->map_len = len;
	/* Atomic: vdu_dev_get_user_bounce() reads them without the lock. */
	__atomic_store_n(&b->buf, al, __ATOMIC_RELAXED);
	__atomic_store_n(&b->size, size, __ATOMIC_RELAXED);
	return 0;
}

static void buf_free(struct vdu_bounce *b)
{
	/* Whatever deregistering left: readers must not see a registration
	 * of a buffer that is gone. */
	if (__atomic_load_n(&b->user_gen, __ATOMIC_RELAXED) & 1)
		__atomic_add_fetch(&b->user_gen, 1, __ATOMIC_RELEASE);
	if (b->map)
		munmap(b->map, b->map_len);
	b->map = NULL;
	b->map_len = 0;
	__atomic_store_n(&b->buf, NULL, __ATOMIC_RELAXED);
}

/* With b->lock held.  The generation turns odd when ours is registered
 * and even again when it is not (release: buf and size are set first). */
static void set_registered(struct vdu_bounce *b, bool on)
{
	b->registered = on;
	__atomic_add_fetch(&b->user_gen, 1, __ATOMIC_RELEASE);
	/* Turning even: order the increment before later stores to buf. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

/* The kernel checks RLIMIT_MEMLOCK even for root: make room for size
 * more bytes (raising the hard limit too, which root may). */
static bool raise_memlock(uint64_t size)
{
	struct rlimit rl, want;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > RLIM_INFINITY - size)
		return false;
	want.rlim_cur = rl.rlim_cur + size;
	want.rlim_max = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want.rlim_cur ?
			rl.rlim_max : want.rlim_cur;
	if (setrlimit(RLIMIT_MEMLOCK, &want) < 0)
		return false;
	vdu_info("raised RLIMIT_MEMLOCK to %" PRIu64 " KiB to pin a bounce buffer",
		 (uint64_t)want.rlim_cur >> 10);
	return true;
}

static void fall_back(struct vdu_dev *dev, int err)
{
	struct vdu_bounce *b = &dev->bounce;

	b->fallback_err = err;
	buf_free(b);
	vdu_warn("%s: the bounce buffer stays in the kernel's pages: %s%s",
		 dev->name, strerror(-err),
		 err == -ENOTTY ? " (this kernel has no VDUSE_IOTLB_REG_UMEM: "
				  "Linux 6.0 or later)" :
		 err == -ENOMEM ? " (RLIMIT_MEMLOCK: raise it, e.g. "
				  "LimitMEMLOCK=infinity or ulimit -l)" :
		 err == -EPERM ? " (not allowed to pin memory)" : "");
}

/* With b->lock held: register ours if iova lies in the bounce buffer. */
static void try_register(struct vdu_dev *dev, uint64_t iova)
{
	struct vdu_bounce *b = &dev->bounce;
	long page = sysconf(_SC_PAGESIZE);
	uint64_t size = 0;
	int r;

	r = dev->tp->bounce_info(dev, iova, &size);
	if (r == -ENOTTY) {
		fall_back(dev, r);
		return;
	}
	if (r <= 0)
		return; /* not the bounce buffer (a VM's memory), or no entry */
	if (size == 0 || size % (uint64_t)page || size > SIZE_MAX - HUGE_2M) {
		fall_back(dev, -EINVAL);
		return;
	}
	if (b->buf && b->size != size)
		buf_free(b);
	if (!b->buf) {
		r = buf_alloc(b, size);
		if (r < 0) {
			fall_back(dev, r);
			return;
		}
	}
	r = dev->tp->reg_umem(dev, b->buf, size);
	if (r == -ENOMEM && !b->memlock_raised && raise_memlock(size)) {
		b->memlock_raised = true;
		r = dev->tp->reg_umem(dev, b->buf, size);
	}
	if (r < 0) {
		fall_back(dev, r);
		return;
	}
	set_registered(b, true);
	vdu_info("%s: bounce buffer: %" PRIu64 " KiB of our memory registered",
		 dev->name, size >> 10);
}

int vdu_bounce_fault(void *opaque, uint64_t iova, struct vdu_region *out)
{
	struct vdu_dev *dev = opaque;
	struct vdu_bounce *b = &dev->bounce;
	bool ours = false;

	if (b->want && dev->tp->bounce_info) {
		/* Faults are rare (once per region and queue): a lock is
		 * cheap here, and queue threads fault concurrently. */
		pthread_mutex_lock(&b->lock);
		if (!b->registered && !b->fallback_err)
			try_register(dev, iova);
		if (b->registered && iova < b->size) {
			memset(out, 0, sizeof(*out));
			out->start = 0;
			out->last = b->size - 1;
			out->host = b->buf;
			out->perm = VDU_PERM_READ | VDU_PERM_WRITE;
			ours = true; /* no unmap_addr: the region is not the map's */
		}
		pthread_mutex_unlock(&b->lock);
		if (ours)
			return 0;
	}
	return dev->tp->iova_fault(dev, iova, out);
}

void vdu_bounce_reset(struct vdu_dev *dev, bool idle)
{
	struct vdu_bounce *b = &dev->bounce;

	pthread_mutex_lock(&b->lock);
	if (b->registered) {
		int r = dev->tp->dereg_umem(dev, b->size);

		if (r == 0 || r == -ENOENT) {
			set_registered(b, false);
			/* Unpinned: give the pages back until the next
			 * registration, unless a request the reset abandoned
			 * still uses them. */
			if (idle)
				madvise(b->buf, b->size, MADV_DONTNEED);
		} else {
			/* The kernel may still use our pages: keep serving
			 * the bounce buffer from them. */
			vdu_warn("%s: deregistering the bounce buffer: %s",
				 dev->name, strerror(-r));
		}
	}
	/* The next cycle tries again, unless the kernel cannot. */
	if (b->fallback_err != -ENOTTY && b->fallback_err != -EPERM)
		b->fallback_err = 0;
	pthread_mutex_unlock(&b->lock);
}

void vdu_bounce_fini(struct vdu_dev *dev)
{
	vdu_bounce_reset(dev, false); /* unmapped right after */
	buf_free(&dev->bounce);
	pthread_mutex_destroy(&dev->bounce.lock);
}

void vdu_io_copied(struct vdu_io *io)
{
	struct vdu_req *req = (struct vdu_req *)((char *)io - offsetof(struct vdu_req, io));

	__atomic_add_fetch(&req->vr->owner->dev->bounce.copied, 1,
			   __ATOMIC_RELAXED);
}

/* Rss and AnonHugePages of the VMA starting at buf, from smaps. */
static void read_smaps(const void *buf, uint64_t *rss, uint64_t *huge)
{
	char line[256], head[32];
	bool in = false;
	FILE *f;

	*rss = *huge = 0;
	f = fopen("/proc/self/smaps", "re");
	if (!f)
		return;
	snprintf(head, sizeof(head), "%lx-", (unsigned long)(uintptr_t)buf);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;

		if (!in) {
			in = strncmp(line, head, strlen(head)) == 0;
			continue;
		}
		if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			*rss = kb << 10;
		else if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1)
			*huge = kb << 10;
		else if ((line[0] >= '0' && line[0] <= '9') ||
			 (line[0] >= 'a' && line[0] <= 'f'))
			break; /* the next VMA's header (fields are capitalised) */
	}
	fclose(f);
}

int vdu_dev_get_bounce(const struct vdu_dev *cdev, struct vdu_bounce_info *info)
{
	struct vdu_dev *dev = (struct vdu_dev *)cdev; /* the lock */
	struct vdu_bounce *b = &dev->bounce;
	struct vdu_bounce_info bi = { .struct_size = sizeof(bi) };
	uint32_t size;

	if (!info || info->struct_size < offsetof(struct vdu_bounce_info, copied) +
					  sizeof(info->copied))
		return -EINVAL;
	size = info->struct_size;
	pthread_mutex_lock(&b->lock);
	if (b->registered) {
		bi.mode = VDU_BOUNCE_USER;
		bi.size = bi.pinned = b->size;
		read_smaps(b->buf, &bi.resident, &bi.huge);
	} else if (!b->want || b->fallback_err) {
		bi.mode = VDU_BOUNCE_KERNEL;
		bi.fallback_err = b->fallback_err;
	}
	pthread_mutex_unlock(&b->lock);
	bi.copied = __atomic_load_n(&b->copied, __ATOMIC_RELAXED);
	memcpy(info, &bi, VDU_MIN(size, sizeof(bi)));
	info->struct_size = size;
	return 0;
}

/*
 * Lock-free, for backends that check it per request: a seqlock read of
 * the generation around buf and size, which change only while it is even.
 */
int vdu_dev_get_user_bounce(const struct vdu_dev *dev, void **buf,
			    uint64_t *size, uint64_t *gen)
{
	const struct vdu_bounce *b = &dev->bounce;
	uint64_t g, sz;
	void *p;

	do {
		g = __atomic_load_n(&b->user_gen, __ATOMIC_ACQUIRE);
		if (!(g & 1))
			return -ENOENT;
		p = __atomic_load_n(&b->buf, __ATOMIC_RELAXED);
		sz = __atomic_load_n(&b->size, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while (__atomic_load_n(&b->user_gen, __ATOMIC_RELAXED) != g);
	if (buf)
		*buf = p;
	if (size)
		*size = sz;
	if (gen)
		*gen = (g + 1) / 2; /* 1 for the first registration, 2 for the next... */
	return 0;
}
