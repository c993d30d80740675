/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal structures shared by the libvduse sources (not installed). */
#ifndef VDU_INTERNAL_H
#define VDU_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <linux/vduse.h>
#include <linux/virtio_ring.h>

#include "libvduse.h"

#define VDU_HIDDEN __attribute__((visibility("hidden")))
#define VDU_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VDU_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VDU_MAX(a, b) ((a) > (b) ? (a) : (b))
/* CPUs vdu_set_irq_affinity_by_name can name (glibc's CPU_SETSIZE). */
#define VDU_CPUS_MAX 1024

#define vdu_err(...) vdu_log(VDU_LOG_ERR, __VA_ARGS__)
#define vdu_warn(...) vdu_log(VDU_LOG_WARNING, __VA_ARGS__)
#define vdu_info(...) vdu_log(VDU_LOG_INFO, __VA_ARGS__)
#define vdu_dbg(...) vdu_log(VDU_LOG_DEBUG, __VA_ARGS__)

/* Copy ours (len bytes) into a caller's struct of size bytes: the common
 * part, zeroes past it. */
static inline void vdu_copy_out(void *dst, size_t size, const void *src,
				size_t len)
{
	memcpy(dst, src, VDU_MIN(size, len));
	if (size > len)
		memset((char *)dst + len, 0, size - len);
}

/* ------------------------------------------------------------ backends */

/* Backend API 1 (libvduse 0.1 and 0.2): one struct for library and front
 * end.  Backends built against it still load (backend.c). */
struct vdu_backend_v1 {
	uint32_t struct_size;
	uint32_t api_version;
	const char *name;
	const char *description;
	const char *usage;
	size_t io_priv_size;
	int (*open)(const struct vdu_param *params, size_t nparams,
		    void **handle);
	void (*close)(void *handle);
	int (*get_info)(void *handle, struct vdu_backend_info *info);
	int (*queue_open)(void *handle, unsigned qidx, struct event_base *base,
			  void **qctx);
	void (*queue_close)(void *qctx);
	void (*submit)(void *qctx, struct vdu_io *io);
	void (*unplug)(void *qctx);
};

/* be (any API version) as the current struct in out: 0, or -EPROTO for a
 * size or version we do not know, -EINVAL without get_info or submit. */
VDU_HIDDEN int vdu_backend_import(const struct vdu_backend *be,
				  struct vdu_backend *out);

/* ------------------------------------------------------------ IOVA map */

/* Permissions, same bits as VDUSE_ACCESS_*: RO = device may read. */
#define VDU_PERM_READ VDUSE_ACCESS_RO
#define VDU_PERM_WRITE VDUSE_ACCESS_WO

struct vdu_region {
	uint64_t start, last; /* IOVA range, inclusive */
	uint8_t *host;        /* host address of start */
	uint8_t perm;
	void *unmap_addr;     /* mmap()ed area to munmap, NULL if not ours */
	size_t unmap_len;
};

struct vdu_iova;

/*
 * Resolves a miss: find the region containing iova and make it
 * addressable.  The kernel transport uses IOTLB_GET_FD + mmap; the
 * simulated driver in tests/ hands out its own memory.
 */
typedef int (*vdu_iova_fault_fn)(void *opaque, uint64_t iova,
				 struct vdu_region *out);

VDU_HIDDEN struct vdu_iova *vdu_iova_new(vdu_iova_fault_fn fault, void *opaque);
VDU_HIDDEN void vdu_iova_free(struct vdu_iova *map);
/* Add a region directly (tests, and the fault path). */
VDU_HIDDEN int vdu_iova_add(struct vdu_iova *map, const struct vdu_region *r);
/*
 * Translate [iova, iova+len) with the needed permission into at most
 * max iovecs appended at iov; returns the count or -EFAULT/-EACCES/-E2BIG.
 */
VDU_HIDDEN int vdu_iova_translate(struct vdu_iova *map, uint64_t iova,
				  uint64_t len, uint8_t perm,
				  struct iovec *iov, int max);
/* A contiguous host pointer for [iova, iova+len), or NULL. */
VDU_HIDDEN void *vdu_iova_ptr(struct vdu_iova *map, uint64_t iova,
			      uint64_t len, uint8_t perm);
/* Drop every region intersecting [start, last]. Unmaps are deferred
 * while requests are in flight (see vdu_iova_reap). */
VDU_HIDDEN void vdu_iova_invalidate(struct vdu_iova *map, uint64_t start,
				    uint64_t last);
/* Release deferred unmaps; call when no request is in flight. */
VDU_HIDDEN void vdu_iova_reap(struct vdu_iova *map);
/* Bumped by every invalidation: cached ring pointers are stale. */
VDU_HIDDEN uint64_t vdu_iova_generation(const struct vdu_iova *map);

/* -------------------------------------------------------- inflight log */

#define VDU_INFLIGHT_NONE 0xffff
#define VDU_PSTATE(idx, wrap, id) \
	((uint32_t)(idx) | (uint32_t)(wrap) << 15 | (uint32_t)(id) << 16)

/* Layout of the log file (native endian: read back on this host only). */
struct vdu_inflight_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t max_num, desc_cap; /* geometry of the file */
	uint32_t valid;            /* a ring is running with this log */
	uint32_t num, packed;      /* that ring */
	uint64_t desc_iova, avail_iova, used_iova;
	uint64_t counter;          /* requests taken so far */
	uint16_t used_idx;         /* split, committed: completions the driver saw */
	uint16_t reserved;
	/* packed, one word so that it changes atomically: the used
	 * position and wrap before the id being returned, and that id
	 * (NONE when no return is under way) -- see vring_packed.c */
	uint32_t pstate;
};

struct vdu_inflight_ent {
	uint64_t counter;          /* when it was taken (resubmit order) */
	uint16_t inflight;
	uint16_t ndesc;            /* packed: ring descriptors of the chain */
	uint32_t reserved;
	/* packed: copy of the chain's ring descriptors, desc_cap entries,
	 * since returning other buffers overwrites them in the ring */
	struct vring_packed_desc descs[];
};

struct vdu_inflight {
	void *map;
	size_t len;
	struct vdu_inflight_hdr *hdr;
	char *ents;
	unsigned max_num, desc_cap;
	size_t ent_size;
};

VDU_HIDDEN int vdu_inflight_open(const char *path, unsigned max_num,
				 unsigned desc_cap, bool keep,
				 struct vdu_inflight **out);
VDU_HIDDEN void vdu_inflight_close(struct vdu_inflight *lg);

static inline struct vdu_inflight_ent *
vdu_inflight_ent(const struct vdu_inflight *lg, unsigned slot)
{
	return (struct vdu_inflight_ent *)(lg->ents + slot * lg->ent_size);
}

/* The compiler must not move log stores across ring stores. */
#define vdu_inflight_barrier() __atomic_signal_fence(__ATOMIC_SEQ_CST)

static inline void vdu_inflight_take(struct vdu_inflight *lg, unsigned slot)
{
	struct vdu_inflight_ent *e = vdu_inflight_ent(lg, slot);

	e->counter = ++lg->hdr->counter;
	vdu_inflight_barrier();
	e->inflight = 1;
	vdu_inflight_barrier();
}

/* ----------------------------------------------------------- transport */

struct vdu_dev;

/*
 * What the device needs from the outside world.  The kernel transport is
 * VDUSE ioctls; tests plug in a simulated driver.  Everything above this
 * line (message handling, queues, rings, virtio-blk) is the same code in
 * both cases.
 */
struct vdu_transport {
	int (*get_features)(struct vdu_dev *dev, uint64_t *features);
	int (*get_vq_info)(struct vdu_dev *dev, struct vduse_vq_info *info);
	int (*set_vq_kickfd)(struct vdu_dev *dev, unsigned idx, int fd);
	int (*inject_irq)(struct vdu_dev *dev, unsigned idx);
	/* Optional: run queue idx's interrupt work on these n CPUs. */
	int (*set_irq_affinity)(struct vdu_dev *dev, unsigned idx,
				const int *cpus, unsigned n);
	vdu_iova_fault_fn iova_fault;
	/* Device life cycle.  create: make the device and serve its
	 * messages on dev->base (vdu_dev_handle_request); reconnect: take
	 * over one whose server died (NULL: cannot); destroy: stop serving
	 * and remove it; close: stop serving, leave it; attached: a driver
	 * uses it, so it cannot be destroyed; broken: the other side gave
	 * up on us for good.  All but create and destroy may be NULL. */
	int (*create)(struct vdu_dev *dev);
	int (*reconnect)(struct vdu_dev *dev);
	int (*destroy)(struct vdu_dev *dev);
	void (*close)(struct vdu_dev *dev);
	bool (*attached)(struct vdu_dev *dev);
	bool (*broken)(const struct vdu_dev *dev);
	/* Optional, our memory under the bounce buffer (bounce.c).
	 * bounce_info: 1 and *size when iova lies in the bounce buffer and
	 * it takes our memory, 0 when not, -ENOTTY when the kernel cannot. */
	int (*bounce_info)(struct vdu_dev *dev, uint64_t iova, uint64_t *size);
	int (*reg_umem)(struct vdu_dev *dev, void *addr, uint64_t size);
	int (*dereg_umem)(struct vdu_dev *dev, uint64_t size);
	/* Optional, a new capacity: write len bytes of the config space at
	 * offset; then the config interrupt (-EINVAL: no driver is ready). */
	int (*set_config)(struct vdu_dev *dev, uint32_t offset,
			  const void *buf, uint32_t len);
	int (*config_irq)(struct vdu_dev *dev);
};

/* ------------------------------------------------------------- vrings */

/* One request slot; indexed by descriptor head. */
struct vdu_req {
	struct vdu_io io;          /* what the backend sees */
	struct vdu_vring *vr;
	uint16_t head;             /* slot index: split head / packed id */
	uint16_t ndesc;            /* ring descriptors used (packed) */
	bool inflight;
	uint8_t *status;           /* host address of the status byte */
	uint32_t used_len;         /* bytes the device wrote, incl. status */
	uint32_t type;             /* VIRTIO_BLK_T_* */
	struct iovec *iov;         /* scratch, iov_max entries */
	int out_num, in_num;       /* readable then writable iovecs */
};

struct vdu_vring;

/* What differs between the split and the packed layout. */
struct vdu_vring_ops {
	const char *name;          /* "split", "packed" */
	bool packed;               /* recorded in the inflight log */
	/* The ring position for GET_VQ_STATE. */
	void (*get_state)(const struct vdu_vring *vr, struct vduse_vq_state *st);
	/* Has the driver ever put a buffer on this ring? */
	bool (*in_use)(struct vdu_vring *vr);
	/* Resolve the ring addresses in map; -EFAULT if unmapped. */
	int (*map)(struct vdu_vring *vr, struct vdu_iova *map);
	int (*pop)(struct vdu_vring *vr, struct vdu_iova *map,
		   struct vdu_req **out);
	void (*push)(struct vdu_vring *vr, struct vdu_req *req);
	bool (*publish)(struct vdu_vring *vr);
	bool (*enable_notify)(struct vdu_vring *vr);
	void (*disable_notify)(struct vdu_vring *vr);
	/* Crash recovery: restore the ring position from vr->ilog (finishing
	 * a publish the old daemon was in the middle of), then rebuild the
	 * request of an in-flight slot. */
	int (*recover)(struct vdu_vring *vr);
	int (*resubmit)(struct vdu_vring *vr, struct vdu_iova *map,
			uint16_t slot, struct vdu_req **out);
};

VDU_HIDDEN extern const struct vdu_vring_ops vdu_vring_split_ops;
VDU_HIDDEN extern const struct vdu_vring_ops vdu_vring_packed_ops;

/* Ring state for one enabled queue.  A reset detaches it from its
 * queue; it lives on until the backend has completed every request. */
struct vdu_vring {
	const struct vdu_vring_ops *ops;
	struct vdu_queue *q;       /* NULL once detached by a reset */
	struct vdu_queue *owner;   /* never NULL */
	unsigned num;
	uint64_t desc_iova, avail_iova, used_iova;
	uint64_t iova_gen;         /* generation the pointers below match */
	bool mapped;
	bool event_idx, indirect;
	/* split layout */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	bool used_loaded;          /* used_idx read from the ring */
	/* packed layout */
	struct vring_packed_desc *pdesc;
	struct vring_packed_desc_event *driver_ev, *device_ev;
	bool avail_wrap, used_wrap;
	/* both: indexes in the ring (packed: 0..num-1) */
	uint16_t last_avail;       /* next avail entry to take */
	uint16_t used_idx;         /* next used entry to fill */
	uint16_t signalled_used;   /* used idx at the last interrupt */
	bool signalled_valid;
	uint16_t pending_used;     /* entries filled but not yet published */
	unsigned inflight;
	struct vdu_inflight *ilog; /* inflight log, NULL: none */
	struct vring_packed_desc *chain; /* packed: the chain being taken */
	unsigned chain_cap;
	int iov_max;
	struct vdu_req *reqs;      /* num slots + 1 scratch */
	void *priv_area;
	struct iovec *iov_area;
};

struct vdu_queue {
	struct vdu_dev *dev;
	unsigned idx;
	struct event_base *base;   /* own_base, or the device's */
	struct event_base *own_base;
	struct vdu_iova *iova;     /* this queue's view of the driver memory */
	struct event *kick_ev;
	struct event *publish_ev;
	struct event *poll_ev;
	uint64_t poll_until;       /* busy-poll deadline, us */
	uint64_t poll_from;        /* end of the last batch with work, us */
	unsigned gap_avg;          /* us from a batch to the next request, avg */
	bool irq_follow;           /* VDU_DEV_F_IRQ_FOLLOW, while it works */
	int irq_cpu;               /* thread's CPU when last set, -1: unknown */
	bool irq_spread;           /* set to all CPUs but irq_cpu */
	int irq_ncpu;              /* CPUs configured, for the spread set */
	uint64_t irq_avg_bytes;    /* data per interrupt, moving average */
	uint64_t irq_cpu_at;       /* when it was last set, us */
	int kickfd;
	struct vdu_vring *vr;      /* NULL while disabled */
	void *backend_qctx;
	bool backend_open;         /* queue_open done (qctx may be NULL) */
	bool broken;
	bool processing;           /* in vdu_queue_process: it publishes */
	bool publish_armed;        /* publish_ev is active */
	uint64_t unpublished_bytes;/* data of the completions not yet published */
	unsigned retired;          /* requests of vrings detached by reset */
	struct vdu_queue_stats st;
	struct vdu_inflight *ilog; /* inflight log, NULL without a state path */
	/* queue thread and calls into it (vdu_queue_call) */
	bool threaded, running;
	pthread_t thread;
	int callfd;
	struct event *call_ev;
	pthread_mutex_t call_lock, caller_lock;
	pthread_cond_t call_cond;
	void (*call_fn)(struct vdu_queue *q, void *arg);
	void *call_arg;
	bool call_done;
};

struct vdu_vring;
/* inflight.c, needing struct vdu_vring */
VDU_HIDDEN void vdu_inflight_start(struct vdu_inflight *lg,
				   const struct vdu_vring *vr, bool packed);
VDU_HIDDEN void vdu_inflight_stop(struct vdu_inflight *lg);
VDU_HIDDEN bool vdu_inflight_matches(const struct vdu_inflight *lg,
				     const struct vdu_vring *vr, bool packed);
/* Slots still in flight, oldest first; returns the count. */
VDU_HIDDEN unsigned vdu_inflight_pending(const struct vdu_inflight *lg,
					 unsigned num, uint16_t *slots);

/* vring.c: layout-independent part; the rest through vr->ops. */
VDU_HIDDEN struct vdu_vring *vdu_vring_new(struct vdu_queue *q, unsigned num,
					   const struct vduse_vq_info *info,
					   uint64_t features, size_t priv_size,
					   int iov_max);
VDU_HIDDEN void vdu_vring_free(struct vdu_vring *vr);
/* (Re)resolve the ring addresses if the IOVA map changed. */
VDU_HIDDEN int vdu_vring_map(struct vdu_vring *vr, struct vdu_iova *map);

/*
 * Adaptive busy-poll window, fed with each gap from the end of a batch to
 * the next request (found by polling or by a kick): twice the recent gaps'
 * moving average (weight 1/4), at least VDU_POLL_WIN_MIN, at most max.  A
 * stream of requests is caught by polling, and a queue spins little longer
 * than its stream needs (a deep queue's gaps are short, so is its window:
 * the CPU stays with the submitter); a gap over max means the queue went
 * idle: closed (kicks from then on) and the average forgotten.
 */
#define VDU_POLL_WIN_MIN 4u
static inline unsigned vdu_poll_window(unsigned *gap_avg, unsigned max,
				       uint64_t gap_us)
{
	uint64_t w; /* 64-bit: max may be any unsigned */

	if (gap_us > max) {
		*gap_avg = 0;
		return 0;
	}
	*gap_avg = (unsigned)(*gap_avg ? ((uint64_t)*gap_avg * 3 + gap_us) / 4 :
				       gap_us);
	w = 2 * (uint64_t)*gap_avg;
	w = w > VDU_POLL_WIN_MIN ? w : VDU_POLL_WIN_MIN;
	return (unsigned)(w < max ? w : max);
}

/* Take the next available chain.  1: *out filled; 0: ring empty;
 * -EPROTO/-EFAULT...: malformed ring, the queue must be stopped. */
static inline int vdu_vring_pop(struct vdu_vring *vr, struct vdu_iova *map,
				struct vdu_req **out)
{
	if (vdu_vring_map(vr, map) < 0)
		return -EFAULT;
	return vr->ops->pop(vr, map, out);
}
/* Fill a used entry (split: not yet visible to the driver).  The ring
 * must be mapped (vdu_vring_map) first. */
static inline void vdu_vring_push(struct vdu_vring *vr, struct vdu_req *req)
{
	vr->ops->push(vr, req);
}
/* Make pushed entries visible; true when the driver wants an interrupt. */
static inline bool vdu_vring_publish(struct vdu_vring *vr)
{
	return vr->ops->publish(vr);
}
/* Ask for kicks again; true if new buffers arrived meanwhile. */
static inline bool vdu_vring_enable_notify(struct vdu_vring *vr)
{
	return vr->ops->enable_notify(vr);
}
static inline void vdu_vring_disable_notify(struct vdu_vring *vr)
{
	vr->ops->disable_notify(vr);
}

/* Write a whole string to a sysfs attribute in one write(): 0 or -errno
 * (-EIO for a short write). */
VDU_HIDDEN int vdu_sysfs_write(const char *path, const char *val);

/* iov helpers */
VDU_HIDDEN size_t vdu_iov_size(const struct iovec *iov, int cnt);
VDU_HIDDEN size_t vdu_iov_to_buf(const struct iovec *iov, int cnt,
				 size_t off, void *buf, size_t len);
VDU_HIDDEN size_t vdu_iov_from_buf(const struct iovec *iov, int cnt,
				   size_t off, const void *buf, size_t len);

/* ------------------------------------------------------------- bounce */

/* Our memory under the kernel's bounce buffer (bounce.c). */
struct vdu_bounce {
	pthread_mutex_t lock;      /* queue threads fault concurrently */
	bool want;                 /* register ours (opts.bounce, backend) */
	bool registered;
	bool memlock_raised;       /* by its size, once per device */
	int fallback_err;          /* why registering failed (this cycle,
				    * or for good: -ENOTTY, -EPERM) */
	void *map;                 /* mmap()ed, with alignment slack */
	size_t map_len;
	uint8_t *buf;              /* 2 MiB aligned, size bytes */
	uint64_t size;
	uint64_t copied;           /* atomic: vdu_io_copied() calls */
	/* atomic: odd while ours is registered, bumped at each registration
	 * and deregistration (vdu_dev_get_user_bounce reads it unlocked) */
	uint64_t user_gen;
};

/* ------------------------------------------------------------- device */

struct vdu_dev {
	struct vdu_dev_opts opts;
	char name[VDU_NAME_MAX + 1];
	char serial[VDU_SERIAL_MAX + 1];
	struct vdu_backend be;     /* the caller's, as the current API */
	void *be_handle;
	struct vdu_backend_info be_info;
	struct event_base *base;
	const struct vdu_transport *tp;
	void *tp_opaque;           /* the transport's own state */

	uint64_t features;         /* offered */
	uint64_t negotiated;
	uint8_t status;
	uint8_t config[64];        /* struct virtio_blk_config */
	uint32_t config_size;
	/* 512-byte sectors; queue threads read it (vdu_dev_capacity) while
	 * another thread may change it (vdu_dev_set_capacity) */
	uint64_t capacity_sectors;
	/* Held while the capacity, its copy in config and what the kernel
	 * has are brought in line, and across created changing. */
	pthread_mutex_t config_lock;
	bool set_dev_called;       /* be.set_dev(handle, dev) was called */
	uint32_t block_size;
	bool read_only;
	unsigned num_queues;
	unsigned queue_size;
	int *irq_cpus;             /* copy of opts.irq_cpus, or NULL */
	uint32_t seg_max;
	struct vdu_queue *queues;

	bool created;
	bool reconnecting;         /* queues recover from their logs */
	struct vdu_bounce bounce;
};

static inline uint64_t vdu_dev_capacity(const struct vdu_dev *dev)
{
	return __atomic_load_n(&dev->capacity_sectors, __ATOMIC_RELAXED);
}

/* bounce.c */
VDU_HIDDEN void vdu_bounce_init(struct vdu_dev *dev);
/* Whether to register ours: opts.bounce and the backend's caps. */
VDU_HIDDEN void vdu_bounce_choose(struct vdu_dev *dev);
/* The queues' IOVA fault handler: the bounce buffer from our memory
 * where it is registered, the rest through the transport. */
VDU_HIDDEN int vdu_bounce_fault(void *dev, uint64_t iova,
				struct vdu_region *out);
/* Deregister (device reset); the next data mapping registers again.
 * idle: no request is in flight, so the pages may be given back. */
VDU_HIDDEN void vdu_bounce_reset(struct vdu_dev *dev, bool idle);
VDU_HIDDEN void vdu_bounce_fini(struct vdu_dev *dev);

/* blk.c */
VDU_HIDDEN int vdu_blk_build_config(struct vdu_dev *dev);
VDU_HIDDEN void vdu_blk_handle(struct vdu_queue *q, struct vdu_req *req);

/* queue.c: life cycle, from the device thread */
VDU_HIDDEN int vdu_queue_init(struct vdu_dev *dev, struct vdu_queue *q,
			      unsigned idx, bool threaded);
VDU_HIDDEN int vdu_queue_start(struct vdu_queue *q, int cpu);
VDU_HIDDEN void vdu_queue_stop(struct vdu_queue *q);
/* Tests: stop as a killed daemon would (no reset, no log write, nothing
 * answered); the backend must have dropped its requests. */
VDU_HIDDEN void vdu_queue_abandon(struct vdu_queue *q);
/* After the backend queues are closed: unmap the driver memory. */
VDU_HIDDEN void vdu_queue_release(struct vdu_queue *q);
VDU_HIDDEN void vdu_queue_fini(struct vdu_queue *q);
/* Run fn on the queue's thread and wait for it. */
VDU_HIDDEN void vdu_queue_call(struct vdu_queue *q,
			       void (*fn)(struct vdu_queue *q, void *arg),
			       void *arg);
VDU_HIDDEN int vdu_queue_enable_sync(struct vdu_queue *q);
VDU_HIDDEN void vdu_queue_disable_sync(struct vdu_queue *q);
/* Disable and drop every mapping (device reset). */
VDU_HIDDEN void vdu_queue_reset(struct vdu_queue *q);
VDU_HIDDEN void vdu_queue_invalidate(struct vdu_queue *q, uint64_t start,
				     uint64_t last);
VDU_HIDDEN void vdu_queue_get_state(struct vdu_queue *q,
				    struct vduse_vq_state *st);
VDU_HIDDEN void vdu_queue_get_stats(struct vdu_queue *q,
				    struct vdu_queue_stats *st,
				    unsigned *inflight);
/* queue.c: on the queue's thread */
VDU_HIDDEN int vdu_queue_enable(struct vdu_queue *q);
VDU_HIDDEN void vdu_queue_disable(struct vdu_queue *q);
/* Drain the available ring (the kick handler's work). */
VDU_HIDDEN void vdu_queue_process(struct vdu_queue *q);
VDU_HIDDEN void vdu_req_finish(struct vdu_req *req, uint8_t status);

/* dev.c: one VDUSE message in, one response out. */
VDU_HIDDEN void vdu_dev_handle_request(struct vdu_dev *dev,
				       const struct vduse_dev_request *req,
				       struct vduse_dev_response *resp);
/* Tests: drop the object as if its process had been killed: no reset,
 * no completion, the inflight logs left as they are (then reconnect a
 * new object).  The backend must have dropped its pending requests. */
VDU_HIDDEN void vdu_dev_abandon(struct vdu_dev *dev);
/* Test seam: use another transport instead of the kernel. */
VDU_HIDDEN void vdu_dev_set_transport(struct vdu_dev *dev,
				      const struct vdu_transport *tp,
				      void *opaque);

/* kernel.c: VDUSE, the transport devices get unless a test sets another */
VDU_HIDDEN extern const struct vdu_transport vdu_kernel_transport;

#endif
