/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A simulated virtio-blk driver for host tests and fuzzing.
 *
 * It plays the kernel and the guest driver at once: it owns "guest" memory
 * (several host buffers mapped at IOVA ranges of its choosing), lays out
 * split virtqueues there (virtio 1.x, little endian), hands the memory to
 * the library through the transport's iova_fault hook, and drives the
 * device with the same VDUSE messages the kernel would send
 * (vdu_dev_handle_request).  Kicks are eventfd writes; interrupts are
 * counted.  Nothing here knows how the library processes a ring.
 */
#ifndef VDU_TESTS_SIMDRV_H
#define VDU_TESTS_SIMDRV_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/virtio_ring.h>

#include "internal.h"

/* Default "guest" memory layout (sim_default_layout). */
#define SIM_RING_IOVA   0x100000ULL  /* 1 MiB RW: rings, one slot per queue */
#define SIM_RING_SIZE   0x100000ULL
#define SIM_RING_STRIDE 0x40000ULL   /* per-queue slot: rings up to 4096 */
#define SIM_DATA_IOVA   0x200000ULL  /* data space: adjacent RW regions */
#define SIM_DATA_NREG   16
#define SIM_DATA_REGSZ  0x20000ULL   /* 128 KiB each: 0x200000..0x3fffff */
#define SIM_HOLE_IOVA   0x400000ULL  /* 0x400000..0x4fffff: never mapped */
#define SIM_RO_IOVA     0x500000ULL  /* 64 KiB, device may only read */
#define SIM_RO_SIZE     0x10000ULL

#define SIM_MAX_REGIONS 32
#define SIM_MAX_VQ      8
#define SIM_MAX_SEG     300

struct sim_region {
	uint64_t iova, len;
	uint8_t *host;          /* where the data is now: own, or the
				 * device's memory registered over it */
	uint8_t *own;           /* malloc()ed exactly len bytes (or mmap()ed
				 * secret memory, see sim.secret_mem) */
	uint8_t perm;           /* VDU_PERM_* */
	bool bounce;            /* the bounce buffer (sim_add_bounce) */
	bool secret;            /* own is memfd_secret memory */
	unsigned faults;        /* times the library faulted it in */
};

struct sim_vq {
	bool ready;
	unsigned num;
	uint64_t desc_iova, avail_iova, used_iova;
	struct vring_desc *desc;     /* host views of the rings */
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t start_idx;          /* avail/used index at DRIVER_OK */
	uint16_t avail_shadow;       /* next avail idx the driver publishes */
	uint16_t last_used;          /* next used entry the driver reads */
	int kickfd;
	unsigned irqs;               /* interrupts injected */
	unsigned kicks;
	int irq_cpu;                 /* the one CPU of the last set_irq_affinity,
				      * -1: never, -2: several */
	int irq_cpu_count;           /* CPUs in it */
	unsigned irq_cpu_sets;       /* set_irq_affinity calls */
	int irq_cpu_err;             /* set_irq_affinity fails with this if < 0 */
	/* descriptor bookkeeping (driver side) */
	uint16_t *free_stack;
	unsigned nfree;
	uint16_t *chain_next;        /* our record of each chain */
	uint16_t *chain_len;         /* per head; 0: not posted by us */
	/* packed layout (VIRTIO_F_RING_PACKED negotiated) */
	bool packed;
	struct vring_packed_desc *pdesc;
	struct vring_packed_desc_event *driver_ev, *device_ev;
	uint16_t start_pos;          /* ring position at DRIVER_OK */
	bool start_wrap;
	uint16_t avail_pos;          /* next ring slot the driver fills */
	bool avail_wrap;
	uint16_t used_pos;           /* next ring slot the driver reads */
	bool used_wrap;
	unsigned pfree;              /* ring slots not owned by the device */
	uint16_t *id_stack;          /* free buffer ids */
	unsigned nids;
	uint16_t *id_ndesc;          /* per id: ring slots; 0: not posted */
};

struct sim {
	struct event_base *base;
	struct vdu_dev *dev;
	struct sim_region reg[SIM_MAX_REGIONS];
	unsigned nreg;
	unsigned faults;             /* iova_fault calls (all) */
	unsigned fault_misses;       /* faults for unmapped IOVAs */
	uint64_t features;           /* what get_features reports */
	struct sim_vq vq[SIM_MAX_VQ];
	unsigned nvq;
	uint32_t request_id;
	unsigned bad_used;           /* used ids we never posted */
	/* The kernel side of VDUSE_IOTLB_{GET_INFO,REG_UMEM,DEREG_UMEM}
	 * over the bounce region: registering copies its pages into the
	 * device's memory, which then holds the data (region host),
	 * deregistering copies them back. */
	int umem_err;                /* REG_UMEM fails with this (-ENOTTY: the
				      * kernel has no such ioctls) */
	int umem_dereg_err;          /* DEREG_UMEM fails with this */
	unsigned umem_regs, umem_deregs, umem_info_calls;
	/* Regions added from now on are memfd_secret memory, which the
	 * kernel refuses to pin (O_DIRECT into it fails with EFAULT, like
	 * VDUSE's own bounce pages on Linux 6.12.118+). */
	bool secret_mem;
	/* With VDU_DEV_F_QUEUE_THREADS the transport callbacks run on queue
	 * threads: vq[].irqs/kicks, faults and fault_misses are then updated
	 * atomically (read them with sim_load()). */
	/* data allocator */
	uint64_t alloc_start, alloc_end, alloc_cur;
	/* The kernel's copy of the config space (from create, changed by
	 * VDUSE_DEV_SET_CONFIG) and VDUSE_DEV_INJECT_CONFIG_IRQ, which the
	 * kernel refuses (-EINVAL) before DRIVER_OK. */
	uint8_t config[64];
	uint32_t config_size;
	unsigned config_sets, config_irqs;
	uint8_t status;              /* last SET_STATUS the device accepted */
};

/* A driver-side descriptor: addr/len/VRING_DESC_F_WRITE (NEXT is added). */
struct sim_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
};

struct sim *sim_new(struct event_base *base);
void sim_free(struct sim *s);
/* Map len bytes of fresh zeroed memory at iova; returns the host pointer. */
uint8_t *sim_add_region(struct sim *s, uint64_t iova, uint64_t len,
			uint8_t perm);
/* The bounce buffer at IOVA 0 (len <= SIM_RING_IOVA), RW. */
uint8_t *sim_add_bounce(struct sim *s, uint64_t len);
/* memfd_secret works here (else: -errno). */
int sim_secret_mem_ok(void);
/* The layout described above; data allocation in the data space. */
int sim_default_layout(struct sim *s);
/* Install the transport and vdu_dev_start() the device. */
int sim_attach(struct sim *s, struct vdu_dev *dev);
/* A new device object takes over from one that was abandoned
 * (vdu_dev_abandon): vdu_dev_reconnect through the sim. */
int sim_reattach(struct sim *s, struct vdu_dev *dev);
/* sim_new + sim_default_layout + sim_attach; *out is set even on failure
 * (NULL only when sim_new failed), for the caller to sim_free. */
int sim_open_default(struct event_base *base, struct vdu_dev *dev,
		     struct sim **out);

/* Memory helpers (may cross region boundaries). */
struct sim_region *sim_region_of(struct sim *s, uint64_t iova);
void *sim_host(struct sim *s, uint64_t iova, uint64_t len);
int sim_write(struct sim *s, uint64_t iova, const void *buf, uint64_t len);
int sim_read(struct sim *s, uint64_t iova, void *buf, uint64_t len);
/* Bump-allocate len bytes (16-aligned) in the data space. */
uint64_t sim_alloc(struct sim *s, uint64_t len);
/* Allocate len bytes straddling the next data region boundary, with
 * 'before' bytes in the lower region. */
uint64_t sim_alloc_cross(struct sim *s, uint64_t len, uint64_t before);
/* Count of data regions covering [iova, iova+len). */
unsigned sim_regions_spanned(struct sim *s, uint64_t iova, uint64_t len);

/* The capacity (512-byte sectors) in the config space the driver reads. */
uint64_t sim_config_capacity(struct sim *s);

/* ---- control path: VDUSE messages, result is VDUSE_REQ_RESULT_* ---- */
int sim_set_status(struct sim *s, uint8_t status);
/* Lay out queue q (ring memory zeroed) at SIM_RING_IOVA + q * stride with
 * avail->idx = used->idx = start_idx; ready = true. */
int sim_setup_vq(struct sim *s, unsigned q, unsigned num, uint16_t start_idx);
/* ACK, DRIVER, FEATURES_OK with features; returns that step's result. */
int sim_negotiate(struct sim *s, uint64_t features);
/* Full bring-up: reset, negotiate, set up nq queues, DRIVER_OK. */
int sim_init(struct sim *s, uint64_t features, unsigned nq, unsigned num,
	     uint16_t start_idx);
int sim_reset(struct sim *s);
int sim_get_vq_state(struct sim *s, unsigned q, uint16_t *avail_index);
int sim_update_iotlb(struct sim *s, uint64_t start, uint64_t last);

/* ---- data path ---- */
/* Post a chain (direct, or as one indirect table in data memory) and
 * publish avail->idx; no kick.  Returns the head, or -1 when the ring has
 * no free descriptors. */
int sim_post(struct sim *s, unsigned q, const struct sim_desc *d, int n,
	     bool indirect);
/* Put a raw head index on the avail ring and publish (malformed tests). */
void sim_post_head(struct sim *s, unsigned q, uint16_t head);
/* Set avail->idx to any value (keeps the shadow in step). */
void sim_set_avail_idx(struct sim *s, unsigned q, uint16_t idx);
void sim_set_used_event(struct sim *s, unsigned q, uint16_t v);
uint16_t sim_avail_event(struct sim *s, unsigned q);
void sim_set_avail_flags(struct sim *s, unsigned q, uint16_t flags);
uint16_t sim_used_flags(struct sim *s, unsigned q);
uint16_t sim_used_idx(struct sim *s, unsigned q);
/* Write the kick eventfd and run the loop until idle. */
void sim_kick(struct sim *s, unsigned q);
/* Run the event loop (no kick) until nothing is active. */
void sim_run(struct sim *s);
/* Run the event loop until at least n used entries wait to be taken on
 * queue q (for backends that complete asynchronously), or timeout_ms
 * passes; returns how many there are. */
unsigned sim_wait_used(struct sim *s, unsigned q, unsigned n, int timeout_ms);
/* Take one used entry: 1 and id, len, or 0 if none.  Reclaims the
 * descriptors of chains we posted. */
int sim_get_used(struct sim *s, unsigned q, uint32_t *id, uint32_t *len);

/* ---- packed layout (features include VIRTIO_F_RING_PACKED) ----
 * sim_init() lays out packed rings when the features say so, starting at
 * ring position start_idx % num with both wrap counters 1 (what
 * virtio_vdpa sets).  sim_post/sim_get_used/sim_blk_post work for both
 * layouts: for packed, the value returned as "head" is the buffer id. */
int sim_setup_vq_packed(struct sim *s, unsigned q, unsigned num,
			uint16_t start_pos, bool start_wrap);
/* Like sim_init, packed, with any start position and wrap counter. */
int sim_init_packed(struct sim *s, uint64_t features, unsigned nq,
		    unsigned num, uint16_t start_pos, bool start_wrap);
/* Post a chain with a chosen buffer id (reuse tests); -1 if no room. */
int sim_post_id(struct sim *s, unsigned q, const struct sim_desc *d, int n,
		bool indirect, uint16_t id);
/* Write n raw descriptors at the driver's position with the avail/used
 * bits of its wrap counter added to d[i].flags (NEXT, WRITE, INDIRECT as
 * given), head last; advances the position.  No bookkeeping. */
void sim_packed_raw(struct sim *s, unsigned q,
		    const struct vring_packed_desc *d, int n);
void sim_set_driver_event(struct sim *s, unsigned q, uint16_t flags,
			  uint16_t off_wrap);
void sim_get_device_event(struct sim *s, unsigned q, uint16_t *flags,
			  uint16_t *off_wrap);
/* Would a driver kick now?  (device event suppression, packed only;
 * old_pos/old_wrap: the driver position before it posted.) */
bool sim_packed_need_kick(struct sim *s, unsigned q, uint16_t old_pos,
			  bool old_wrap);
/* GET_VQ_STATE: the whole answer. */
int sim_get_vq_state_raw(struct sim *s, unsigned q, struct vduse_vq_state *st);

/* ---- queue threads ---- */
#define sim_load(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* Write the kick eventfd and return (the queue thread does the work). */
void sim_kick_async(struct sim *s, unsigned q);
/* Like sim_wait_used, but polls (every 100 us, running the loop without
 * blocking): for completions that come from another thread. */
int sim_poll_used(struct sim *s, unsigned q, unsigned n, int timeout_ms);
/* Used entries the driver has not taken yet. */
unsigned sim_used_pending(struct sim *s, unsigned q);

/* ---- virtio-blk requests ---- */
#define SIM_BLK_INDIRECT  (1u << 0) /* whole request in an indirect table */
#define SIM_BLK_SPLIT_HDR (1u << 1) /* header as two 8-byte descriptors */
#define SIM_BLK_DATA_IN   (1u << 2) /* data segments device-writable */
#define SIM_BLK_NO_STATUS (1u << 3) /* no status descriptor at all */

struct sim_blk {
	uint32_t type, ioprio;
	uint64_t sector;
	unsigned flags;              /* SIM_BLK_* */
	uint32_t hdr_len;            /* 0: 16 */
	int nseg;
	struct sim_desc seg[SIM_MAX_SEG]; /* addr/len; flags ignored */
	/* filled by sim_blk_post */
	int head;
	uint64_t hdr_iova, status_iova;
};

/* Allocate header and status (status preset to 0xff), build the chain,
 * post it.  Returns the head or -1. */
int sim_blk_post(struct sim *s, unsigned q, struct sim_blk *b);
uint8_t sim_blk_status(struct sim *s, const struct sim_blk *b);

#endif
