/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Simulated virtio-blk driver + VDUSE kernel side; see simdrv.h. */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "simdrv.h"

/* ------------------------------------------------------------ transport */

static struct sim *sim_of(struct vdu_dev *dev)
{
	return dev->tp_opaque;
}

static int tp_get_features(struct vdu_dev *dev, uint64_t *features)
{
	*features = sim_of(dev)->features;
	return 0;
}

static int tp_get_vq_info(struct vdu_dev *dev, struct vduse_vq_info *info)
{
	struct sim *s = sim_of(dev);
	struct sim_vq *vq;

	if (info->index >= SIM_MAX_VQ)
		return -EINVAL;
	vq = &s->vq[info->index];
	info->num = vq->num;
	info->desc_addr = vq->desc_iova;
	info->driver_addr = vq->avail_iova;
	info->device_addr = vq->used_iova;
	if (vq->packed) {
		info->packed.last_avail_idx = vq->start_pos;
		info->packed.last_avail_counter = vq->start_wrap;
		info->packed.last_used_idx = vq->start_pos;
		info->packed.last_used_counter = vq->start_wrap;
	} else
		info->split.avail_index = vq->start_idx;
	info->ready = vq->ready;
	return 0;
}

static int tp_set_vq_kickfd(struct vdu_dev *dev, unsigned idx, int fd)
{
	struct sim *s = sim_of(dev);

	if (idx >= SIM_MAX_VQ)
		return -EINVAL;
	__atomic_store_n(&s->vq[idx].kickfd, fd, __ATOMIC_RELEASE);
	return 0;
}

static int tp_inject_irq(struct vdu_dev *dev, unsigned idx)
{
	struct sim *s = sim_of(dev);

	if (idx >= SIM_MAX_VQ)
		return -EINVAL;
	__atomic_add_fetch(&s->vq[idx].irqs, 1, __ATOMIC_RELAXED);
	return 0;
}

static int tp_set_irq_affinity(struct vdu_dev *dev, unsigned idx,
			       const int *cpus, unsigned n)
{
	struct sim *s = sim_of(dev);

	if (idx >= SIM_MAX_VQ)
		return -EINVAL;
	s->vq[idx].irq_cpu_sets++;
	if (s->vq[idx].irq_cpu_err < 0)
		return s->vq[idx].irq_cpu_err;
	s->vq[idx].irq_cpu = n == 1 ? cpus[0] : -2;
	s->vq[idx].irq_cpu_count = (int)n;
	return 0;
}

/* iova_fault's opaque is the device (vdu_dev_start passes dev). */
static int tp_iova_fault(void *opaque, uint64_t iova, struct vdu_region *out)
{
	struct sim *s = sim_of(opaque);
	struct sim_region *r;

	__atomic_add_fetch(&s->faults, 1, __ATOMIC_RELAXED);
	r = sim_region_of(s, iova);
	if (!r) {
		__atomic_add_fetch(&s->fault_misses, 1, __ATOMIC_RELAXED);
		return -EFAULT;
	}
	__atomic_add_fetch(&r->faults, 1, __ATOMIC_RELAXED);
	memset(out, 0, sizeof(*out));
	out->start = r->iova;
	out->last = r->iova + r->len - 1;
	out->host = r->host;
	out->perm = r->perm;
	return 0;
}

static struct sim_region *bounce_region(struct sim *s)
{
	for (unsigned i = 0; i < s->nreg; i++)
		if (s->reg[i].bounce)
			return &s->reg[i];
	return NULL;
}

static int tp_bounce_info(struct vdu_dev *dev, uint64_t iova, uint64_t *size)
{
	struct sim *s = sim_of(dev);
	struct sim_region *r = bounce_region(s);

	__atomic_add_fetch(&s->umem_info_calls, 1, __ATOMIC_RELAXED);
	if (s->umem_err == -ENOTTY)
		return -ENOTTY;
	if (!r || iova >= r->len)
		return 0;
	*size = r->len;
	return 1;
}

static int tp_reg_umem(struct vdu_dev *dev, void *addr, uint64_t size)
{
	struct sim *s = sim_of(dev);
	struct sim_region *r = bounce_region(s);

	if (s->umem_err)
		return s->umem_err;
	if (!r || size != r->len || ((uintptr_t)addr & 4095))
		return -EINVAL;
	if (r->host != r->own)
		return -EEXIST;
	memcpy(addr, r->own, size);
	r->host = addr;
	s->umem_regs++;
	return 0;
}

static int tp_dereg_umem(struct vdu_dev *dev, uint64_t size)
{
	struct sim *s = sim_of(dev);
	struct sim_region *r = bounce_region(s);

	if (!r || r->host == r->own)
		return -ENOENT;
	if (s->umem_dereg_err)
		return s->umem_dereg_err;
	if (size != r->len)
		return -EINVAL;
	memcpy(r->own, r->host, size);
	r->host = r->own;
	s->umem_deregs++;
	return 0;
}

static int tp_set_config(struct vdu_dev *dev, uint32_t offset, const void *buf,
			 uint32_t len)
{
	struct sim *s = sim_of(dev);

	/* The kernel's checks (vduse_dev_ioctl). */
	if (offset > s->config_size || len == 0 || len > s->config_size - offset)
		return -EINVAL;
	memcpy(s->config + offset, buf, len);
	s->config_sets++;
	return 0;
}

static int tp_config_irq(struct vdu_dev *dev)
{
	struct sim *s = sim_of(dev);

	if (!(s->status & VIRTIO_CONFIG_S_DRIVER_OK))
		return -EINVAL;
	s->config_irqs++;
	return 0;
}

uint64_t sim_config_capacity(struct sim *s)
{
	uint64_t cap;

	memcpy(&cap, s->config + offsetof(struct virtio_blk_config, capacity),
	       sizeof(cap));
	return le64toh(cap);
}

/* The device lives as long as the sim: nothing to remove.  The config
 * space is copied as VDUSE_CREATE_DEV does. */
static int tp_create(struct vdu_dev *dev)
{
	struct sim *s = sim_of(dev);

	s->config_size = dev->config_size;
	memcpy(s->config, dev->config, dev->config_size);
	return 0;
}

static int tp_destroy(struct vdu_dev *dev)
{
	return 0;
}

/* The rings, the negotiation and the memory stay: a new device object
 * takes them over as a new daemon takes over the kernel's device. */
static int tp_reconnect(struct vdu_dev *dev)
{
	return 0;
}

static const struct vdu_transport sim_transport = {
	.get_features = tp_get_features,
	.get_vq_info = tp_get_vq_info,
	.set_vq_kickfd = tp_set_vq_kickfd,
	.inject_irq = tp_inject_irq,
	.set_irq_affinity = tp_set_irq_affinity,
	.iova_fault = tp_iova_fault,
	.create = tp_create,
	.reconnect = tp_reconnect,
	.destroy = tp_destroy,
	.bounce_info = tp_bounce_info,
	.reg_umem = tp_reg_umem,
	.dereg_umem = tp_dereg_umem,
	.set_config = tp_set_config,
	.config_irq = tp_config_irq,
};

/* --------------------------------------------------------------- memory */

struct sim *sim_new(struct event_base *base)
{
	struct sim *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->base = base;
	for (unsigned i = 0; i < SIM_MAX_VQ; i++)
		s->vq[i].kickfd = -1;
	return s;
}

static void vq_free_book(struct sim_vq *vq)
{
	free(vq->free_stack);
	free(vq->chain_next);
	free(vq->chain_len);
	free(vq->id_stack);
	free(vq->id_ndesc);
	vq->free_stack = vq->chain_next = vq->chain_len = NULL;
	vq->id_stack = vq->id_ndesc = NULL;
}

void sim_free(struct sim *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nreg; i++) {
		if (s->reg[i].secret)
			munmap(s->reg[i].own, s->reg[i].len);
		else
			free(s->reg[i].own);
	}
	for (unsigned i = 0; i < SIM_MAX_VQ; i++)
		vq_free_book(&s->vq[i]);
	free(s);
}

uint8_t *sim_add_region(struct sim *s, uint64_t iova, uint64_t len,
			uint8_t perm)
{
	struct sim_region *r;

	if (s->nreg == SIM_MAX_REGIONS || !len)
		return NULL;
	r = &s->reg[s->nreg];
	memset(r, 0, sizeof(*r));
	if (s->secret_mem) {
#ifdef SYS_memfd_secret
		int fd = (int)syscall(SYS_memfd_secret, 0);
#else
		int fd = -1;
#endif
		void *p = MAP_FAILED;

		if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
			p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (fd >= 0)
			close(fd);
		if (p == MAP_FAILED)
			return NULL;
		r->own = p;
		r->secret = true;
	} else if (posix_memalign((void **)&r->own, 4096, len)) {
		/* Exactly len bytes, so ASan flags any access past the
		 * region; page aligned like the kernel's bounce pages. */
		return NULL;
	}
	memset(r->own, 0, len);
	r->host = r->own;
	r->iova = iova;
	r->len = len;
	r->perm = perm;
	r->faults = 0;
	s->nreg++;
	return r->host;
}

uint8_t *sim_add_bounce(struct sim *s, uint64_t len)
{
	uint8_t *p;

	if (len > SIM_RING_IOVA)
		return NULL;
	p = sim_add_region(s, 0, len, VDU_PERM_READ | VDU_PERM_WRITE);
	if (p)
		s->reg[s->nreg - 1].bounce = true;
	return p;
}

int sim_secret_mem_ok(void)
{
#ifdef SYS_memfd_secret
	int fd = (int)syscall(SYS_memfd_secret, 0);

	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
#else
	return -ENOSYS;
#endif
}

int sim_default_layout(struct sim *s)
{
	const uint8_t rw = VDU_PERM_READ | VDU_PERM_WRITE;

	if (!sim_add_region(s, SIM_RING_IOVA, SIM_RING_SIZE, rw))
		return -ENOMEM;
	for (unsigned i = 0; i < SIM_DATA_NREG; i++)
		if (!sim_add_region(s, SIM_DATA_IOVA + i * SIM_DATA_REGSZ,
				    SIM_DATA_REGSZ, rw))
			return -ENOMEM;
	if (!sim_add_region(s, SIM_RO_IOVA, SIM_RO_SIZE, VDU_PERM_READ))
		return -ENOMEM;
	s->alloc_start = s->alloc_cur = SIM_DATA_IOVA;
	s->alloc_end = SIM_DATA_IOVA + SIM_DATA_NREG * SIM_DATA_REGSZ;
	return 0;
}

int sim_attach(struct sim *s, struct vdu_dev *dev)
{
	s->dev = dev;
	vdu_dev_set_transport(dev, &sim_transport, s);
	return vdu_dev_start(dev);
}

int sim_reattach(struct sim *s, struct vdu_dev *dev)
{
	s->dev = dev;
	vdu_dev_set_transport(dev, &sim_transport, s);
	return vdu_dev_reconnect(dev);
}

int sim_open_default(struct event_base *base, struct vdu_dev *dev,
		     struct sim **out)
{
	struct sim *s = sim_new(base);

	*out = s;
	if (!s || sim_default_layout(s) < 0)
		return -ENOMEM;
	return sim_attach(s, dev);
}

struct sim_region *sim_region_of(struct sim *s, uint64_t iova)
{
	for (unsigned i = 0; i < s->nreg; i++)
		if (iova >= s->reg[i].iova &&
		    iova - s->reg[i].iova < s->reg[i].len)
			return &s->reg[i];
	return NULL;
}

void *sim_host(struct sim *s, uint64_t iova, uint64_t len)
{
	struct sim_region *r = sim_region_of(s, iova);

	if (!r || len > r->len - (iova - r->iova))
		return NULL;
	return r->host + (iova - r->iova);
}

static int sim_copy(struct sim *s, uint64_t iova, void *buf, uint64_t len,
		    bool to_guest)
{
	uint8_t *p = buf;

	while (len) {
		struct sim_region *r = sim_region_of(s, iova);
		uint64_t off, n;

		if (!r)
			return -EFAULT;
		off = iova - r->iova;
		n = r->len - off < len ? r->len - off : len;
		if (to_guest)
			memcpy(r->host + off, p, n);
		else
			memcpy(p, r->host + off, n);
		p += n;
		iova += n;
		len -= n;
	}
	return 0;
}

int sim_write(struct sim *s, uint64_t iova, const void *buf, uint64_t len)
{
	return sim_copy(s, iova, (void *)buf, len, true);
}

int sim_read(struct sim *s, uint64_t iova, void *buf, uint64_t len)
{
	return sim_copy(s, iova, buf, len, false);
}

uint64_t sim_alloc(struct sim *s, uint64_t len)
{
	uint64_t a;

	len = (len + 15) & ~15ULL;
	if (!len)
		len = 16;
	if (s->alloc_cur + len > s->alloc_end)
		s->alloc_cur = s->alloc_start;
	a = s->alloc_cur;
	s->alloc_cur += len;
	return a;
}

uint64_t sim_alloc_cross(struct sim *s, uint64_t len, uint64_t before)
{
	uint64_t rel = s->alloc_cur - SIM_DATA_IOVA;
	uint64_t boundary = SIM_DATA_IOVA +
			    (rel / SIM_DATA_REGSZ + 1) * SIM_DATA_REGSZ;
	uint64_t a;

	if (before > len)
		before = len;
	if (boundary - before < s->alloc_cur)
		boundary += SIM_DATA_REGSZ;
	if (boundary + (len - before) > s->alloc_end) {
		s->alloc_cur = s->alloc_start;
		boundary = SIM_DATA_IOVA + SIM_DATA_REGSZ;
	}
	a = boundary - before;
	s->alloc_cur = (a + len + 15) & ~15ULL;
	return a;
}

unsigned sim_regions_spanned(struct sim *s, uint64_t iova, uint64_t len)
{
	unsigned n = 0;

	while (len) {
		struct sim_region *r = sim_region_of(s, iova);
		uint64_t off, c;

		if (!r)
			return n;
		off = iova - r->iova;
		c = r->len - off < len ? r->len - off : len;
		n++;
		iova += c;
		len -= c;
	}
	return n;
}

/* --------------------------------------------------------- control path */

static int sim_msg(struct sim *s, struct vduse_dev_request *req,
		   struct vduse_dev_response *resp)
{
	req->request_id = ++s->request_id;
	vdu_dev_handle_request(s->dev, req, resp);
	if (resp->request_id != req->request_id)
		return -1;
	return (int)resp->result;
}

int sim_set_status(struct sim *s, uint8_t status)
{
	struct vduse_dev_request req = { .type = VDUSE_SET_STATUS };
	struct vduse_dev_response resp;

	int r;

	req.s.status = status;
	r = sim_msg(s, &req, &resp);
	if (r == VDUSE_REQ_RESULT_OK || status == 0)
		s->status = status;
	return r;
}

int sim_get_vq_state(struct sim *s, unsigned q, uint16_t *avail_index)
{
	struct vduse_dev_request req = { .type = VDUSE_GET_VQ_STATE };
	struct vduse_dev_response resp;
	int r;

	req.vq_state.index = q;
	r = sim_msg(s, &req, &resp);
	if (r == VDUSE_REQ_RESULT_OK && avail_index)
		*avail_index = resp.vq_state.split.avail_index;
	return r;
}

int sim_get_vq_state_raw(struct sim *s, unsigned q, struct vduse_vq_state *st)
{
	struct vduse_dev_request req = { .type = VDUSE_GET_VQ_STATE };
	struct vduse_dev_response resp;
	int r;

	req.vq_state.index = q;
	memset(&resp, 0, sizeof(resp));
	r = sim_msg(s, &req, &resp);
	*st = resp.vq_state;
	return r;
}

int sim_update_iotlb(struct sim *s, uint64_t start, uint64_t last)
{
	struct vduse_dev_request req = { .type = VDUSE_UPDATE_IOTLB };
	struct vduse_dev_response resp;

	req.iova.start = start;
	req.iova.last = last;
	return sim_msg(s, &req, &resp);
}

int sim_setup_vq(struct sim *s, unsigned q, unsigned num, uint16_t start_idx)
{
	struct sim_vq *vq;
	uint64_t base = SIM_RING_IOVA + q * SIM_RING_STRIDE;
	uint64_t avail_len = 6 + 2ULL * num, used_len = 6 + 8ULL * num;

	if (q >= SIM_MAX_VQ || !num || num > 32768 || (num & (num - 1)))
		return -EINVAL;
	vq = &s->vq[q];
	vq_free_book(vq);
	vq->packed = false;
	vq->pdesc = NULL;
	vq->driver_ev = vq->device_ev = NULL;
	vq->num = num;
	vq->desc_iova = base;
	vq->avail_iova = base + 16ULL * num;
	vq->used_iova = (vq->avail_iova + avail_len + 3) & ~3ULL;
	vq->desc = sim_host(s, vq->desc_iova, 16ULL * num);
	vq->avail = sim_host(s, vq->avail_iova, avail_len);
	vq->used = sim_host(s, vq->used_iova, used_len);
	if (!vq->desc || !vq->avail || !vq->used)
		return -ENOSPC;
	memset(vq->desc, 0, 16ULL * num);
	memset(vq->avail, 0, avail_len);
	memset(vq->used, 0, used_len);
	vq->start_idx = vq->avail_shadow = vq->last_used = start_idx;
	vq->avail->idx = htole16(start_idx);
	vq->used->idx = htole16(start_idx);
	vq->irqs = vq->kicks = 0;
	vq->ready = true;
	vq->free_stack = calloc(num, sizeof(uint16_t));
	vq->chain_next = calloc(num, sizeof(uint16_t));
	vq->chain_len = calloc(num, sizeof(uint16_t));
	if (!vq->free_stack || !vq->chain_next || !vq->chain_len)
		return -ENOMEM;
	vq->nfree = num;
	for (unsigned i = 0; i < num; i++)
		vq->free_stack[i] = num - 1 - i; /* pop gives 0, 1, 2... */
	if (q >= s->nvq)
		s->nvq = q + 1;
	return 0;
}

#define P_AVAIL (1u << VRING_PACKED_DESC_F_AVAIL)
#define P_USED (1u << VRING_PACKED_DESC_F_USED)

int sim_setup_vq_packed(struct sim *s, unsigned q, unsigned num,
			uint16_t start_pos, bool start_wrap)
{
	struct sim_vq *vq;
	uint64_t base = SIM_RING_IOVA + q * SIM_RING_STRIDE;
	uint64_t dlen = 16ULL * num;

	/* Packed rings need not be a power of two; we keep to them. */
	if (q >= SIM_MAX_VQ || !num || num > 32768 || (num & (num - 1)) ||
	    start_pos >= num)
		return -EINVAL;
	vq = &s->vq[q];
	vq_free_book(vq);
	memset(vq, 0, sizeof(*vq));
	vq->kickfd = -1;
	vq->packed = true;
	vq->num = num;
	vq->desc_iova = base;
	vq->avail_iova = base + dlen;     /* driver event suppression */
	vq->used_iova = base + dlen + 4;  /* device event suppression */
	vq->pdesc = sim_host(s, vq->desc_iova, dlen);
	vq->driver_ev = sim_host(s, vq->avail_iova, 4);
	vq->device_ev = sim_host(s, vq->used_iova, 4);
	if (!vq->pdesc || !vq->driver_ev || !vq->device_ev)
		return -ENOSPC;
	memset(vq->pdesc, 0, dlen + 8);
	/* As if the ring had been used up to here: slots before start_pos
	 * were last used in this wrap round, the others in the previous. */
	for (unsigned i = 0; i < num; i++) {
		bool w = i < start_pos ? start_wrap : !start_wrap;

		vq->pdesc[i].flags = htole16(w ? P_AVAIL | P_USED : 0);
	}
	vq->start_pos = vq->avail_pos = vq->used_pos = start_pos;
	vq->start_wrap = vq->avail_wrap = vq->used_wrap = start_wrap;
	vq->start_idx = start_pos;
	vq->pfree = num;
	vq->ready = true;
	vq->id_stack = calloc(num, sizeof(uint16_t));
	vq->id_ndesc = calloc(num, sizeof(uint16_t));
	if (!vq->id_stack || !vq->id_ndesc)
		return -ENOMEM;
	vq->nids = num;
	for (unsigned i = 0; i < num; i++)
		vq->id_stack[i] = num - 1 - i; /* pop gives 0, 1, 2... */
	if (s->features & (1ULL << VIRTIO_RING_F_EVENT_IDX)) {
		/* Like Linux: interrupt me at my next used slot. */
		vq->driver_ev->off_wrap = htole16(start_pos |
			(start_wrap << VRING_PACKED_EVENT_F_WRAP_CTR));
		vq->driver_ev->flags = htole16(VRING_PACKED_EVENT_FLAG_DESC);
	}
	if (q >= s->nvq)
		s->nvq = q + 1;
	return 0;
}

int sim_negotiate(struct sim *s, uint64_t features)
{
	int r;

	r = sim_set_status(s, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	if (r == VDUSE_REQ_RESULT_OK)
		r = sim_set_status(s, VIRTIO_CONFIG_S_ACKNOWLEDGE |
				      VIRTIO_CONFIG_S_DRIVER);
	if (r != VDUSE_REQ_RESULT_OK)
		return r;
	s->features = features;
	return sim_set_status(s, VIRTIO_CONFIG_S_ACKNOWLEDGE |
				 VIRTIO_CONFIG_S_DRIVER |
				 VIRTIO_CONFIG_S_FEATURES_OK);
}

int sim_reset(struct sim *s)
{
	return sim_set_status(s, 0);
}

static int sim_bringup(struct sim *s, uint64_t features, unsigned nq,
		       unsigned num, uint16_t start, bool wrap, bool any_start)
{
	bool packed = features & (1ULL << VIRTIO_F_RING_PACKED);
	int r = sim_reset(s);

	if (r != VDUSE_REQ_RESULT_OK)
		return r;
	r = sim_negotiate(s, features);
	if (r != VDUSE_REQ_RESULT_OK)
		return r;
	for (unsigned i = 0; i < SIM_MAX_VQ; i++)
		s->vq[i].ready = false;
	for (unsigned i = 0; i < nq; i++) {
		if (packed)
			r = sim_setup_vq_packed(s, i, num,
						any_start ? start : start % num,
						any_start ? wrap : true);
		else
			r = sim_setup_vq(s, i, num, start);
		if (r < 0)
			return -1;
	}
	return sim_set_status(s, VIRTIO_CONFIG_S_ACKNOWLEDGE |
				 VIRTIO_CONFIG_S_DRIVER |
				 VIRTIO_CONFIG_S_FEATURES_OK |
				 VIRTIO_CONFIG_S_DRIVER_OK);
}

int sim_init_packed(struct sim *s, uint64_t features, unsigned nq,
		    unsigned num, uint16_t start_pos, bool start_wrap)
{
	return sim_bringup(s, features | (1ULL << VIRTIO_F_RING_PACKED), nq,
			   num, start_pos, start_wrap, true);
}

int sim_init(struct sim *s, uint64_t features, unsigned nq, unsigned num,
	     uint16_t start_idx)
{
	int r;

	if (features & (1ULL << VIRTIO_F_RING_PACKED))
		return sim_bringup(s, features, nq, num, start_idx, true, false);
	r = sim_reset(s);

	if (r != VDUSE_REQ_RESULT_OK)
		return r;
	r = sim_negotiate(s, features);
	if (r != VDUSE_REQ_RESULT_OK)
		return r;
	for (unsigned i = 0; i < SIM_MAX_VQ; i++)
		s->vq[i].ready = false;
	for (unsigned i = 0; i < nq; i++)
		if (sim_setup_vq(s, i, num, start_idx) < 0)
			return -1;
	return sim_set_status(s, VIRTIO_CONFIG_S_ACKNOWLEDGE |
				 VIRTIO_CONFIG_S_DRIVER |
				 VIRTIO_CONFIG_S_FEATURES_OK |
				 VIRTIO_CONFIG_S_DRIVER_OK);
}

/* ------------------------------------------------------------ data path */

static void publish_avail(struct sim_vq *vq, uint16_t head)
{
	vq->avail->ring[vq->avail_shadow % vq->num] = htole16(head);
	vq->avail_shadow++;
	__atomic_store_n(&vq->avail->idx, htole16(vq->avail_shadow),
			 __ATOMIC_RELEASE);
}

/* ------------------------------------------------------- packed layout */


static uint16_t avail_bits(bool wrap)
{
	return wrap ? P_AVAIL : P_USED;
}

static void packed_advance(struct sim_vq *vq, uint16_t *pos, bool *wrap,
			   unsigned n)
{
	unsigned p = *pos + n;

	while (p >= vq->num) {
		p -= vq->num;
		*wrap = !*wrap;
	}
	*pos = p;
}

/* Write descriptors at the avail position, the head's flags last. */
static void packed_write(struct sim_vq *vq, const struct vring_packed_desc *d,
			 int n)
{
	uint16_t pos = vq->avail_pos, head_flags = 0;
	bool wrap = vq->avail_wrap;

	for (int i = 0; i < n; i++) {
		struct vring_packed_desc *e = &vq->pdesc[pos];
		uint16_t f = le16toh(d[i].flags) | avail_bits(wrap);

		e->addr = d[i].addr;
		e->len = d[i].len;
		e->id = d[i].id;
		if (i == 0)
			head_flags = f;
		else
			e->flags = htole16(f);
		packed_advance(vq, &pos, &wrap, 1);
	}
	__atomic_store_n(&vq->pdesc[vq->avail_pos].flags, htole16(head_flags),
			 __ATOMIC_RELEASE);
	vq->avail_pos = pos;
	vq->avail_wrap = wrap;
}

void sim_packed_raw(struct sim *s, unsigned q,
		    const struct vring_packed_desc *d, int n)
{
	packed_write(&s->vq[q], d, n);
}

static int post_packed(struct sim *s, unsigned q, const struct sim_desc *d,
		       int n, bool indirect, int want_id)
{
	struct sim_vq *vq = &s->vq[q];
	struct vring_packed_desc ring[SIM_MAX_SEG + 8];
	int nring = indirect ? 1 : n;
	uint16_t id;

	if (n < 1 || n > (int)VDU_ARRAY_SIZE(ring) || (unsigned)nring > vq->pfree)
		return -1;
	if (want_id >= 0) {
		id = (uint16_t)want_id;
		/* Take it off the free stack if it is there. */
		for (unsigned i = 0; i < vq->nids; i++)
			if (vq->id_stack[i] == id) {
				memmove(&vq->id_stack[i], &vq->id_stack[i + 1],
					(vq->nids - i - 1) * sizeof(uint16_t));
				vq->nids--;
				break;
			}
	} else {
		if (!vq->nids)
			return -1;
		id = vq->id_stack[--vq->nids];
	}
	if (indirect) {
		uint64_t t = sim_alloc(s, 16ULL * n);
		struct vring_packed_desc tab[SIM_MAX_SEG + 8];

		for (int i = 0; i < n; i++) {
			tab[i].addr = htole64(d[i].addr);
			tab[i].len = htole32(d[i].len);
			tab[i].id = 0;
			tab[i].flags = htole16(d[i].flags & VRING_DESC_F_WRITE);
		}
		sim_write(s, t, tab, 16ULL * n);
		ring[0].addr = htole64(t);
		ring[0].len = htole32(16 * n);
		ring[0].id = htole16(id);
		ring[0].flags = htole16(VRING_DESC_F_INDIRECT);
	} else {
		for (int i = 0; i < n; i++) {
			ring[i].addr = htole64(d[i].addr);
			ring[i].len = htole32(d[i].len);
			ring[i].id = htole16(id);
			ring[i].flags = htole16((d[i].flags & VRING_DESC_F_WRITE) |
						(i + 1 < n ? VRING_DESC_F_NEXT : 0));
		}
	}
	packed_write(vq, ring, nring);
	vq->pfree -= nring;
	if (id < vq->num)
		vq->id_ndesc[id] = nring;
	return id;
}

int sim_post_id(struct sim *s, unsigned q, const struct sim_desc *d, int n,
		bool indirect, uint16_t id)
{
	if (!s->vq[q].packed)
		return -1;
	return post_packed(s, q, d, n, indirect, id);
}

static bool packed_is_used(const struct sim_vq *vq, uint16_t pos, bool wrap)
{
	uint16_t f = le16toh(__atomic_load_n(&vq->pdesc[pos].flags,
					     __ATOMIC_ACQUIRE));

	return !!(f & P_AVAIL) == wrap && !!(f & P_USED) == wrap;
}

static int get_used_packed(struct sim *s, unsigned q, uint32_t *idp,
			   uint32_t *lenp)
{
	struct sim_vq *vq = &s->vq[q];
	struct vring_packed_desc *e = &vq->pdesc[vq->used_pos];
	uint16_t id, n;

	/* Like Linux: nothing to look for when nothing is out. */
	if (vq->pfree >= vq->num ||
	    !packed_is_used(vq, vq->used_pos, vq->used_wrap))
		return 0;
	id = le16toh(e->id);
	if (idp)
		*idp = id;
	if (lenp)
		*lenp = le32toh(e->len);
	if (id >= vq->num || !vq->id_ndesc[id]) {
		s->bad_used++;
		n = 1;
	} else {
		n = vq->id_ndesc[id];
		vq->id_ndesc[id] = 0;
		vq->id_stack[vq->nids++] = id;
	}
	vq->pfree += n;
	packed_advance(vq, &vq->used_pos, &vq->used_wrap, n);
	/* Like Linux with callbacks enabled: interrupt me for the next one. */
	if (s->features & (1ULL << VIRTIO_RING_F_EVENT_IDX))
		vq->driver_ev->off_wrap = htole16(vq->used_pos |
			(vq->used_wrap << VRING_PACKED_EVENT_F_WRAP_CTR));
	return 1;
}

void sim_set_driver_event(struct sim *s, unsigned q, uint16_t flags,
			  uint16_t off_wrap)
{
	struct sim_vq *vq = &s->vq[q];

	vq->driver_ev->off_wrap = htole16(off_wrap);
	__atomic_store_n(&vq->driver_ev->flags, htole16(flags), __ATOMIC_RELEASE);
}

void sim_get_device_event(struct sim *s, unsigned q, uint16_t *flags,
			  uint16_t *off_wrap)
{
	struct sim_vq *vq = &s->vq[q];

	if (flags)
		*flags = le16toh(__atomic_load_n(&vq->device_ev->flags,
						 __ATOMIC_ACQUIRE));
	if (off_wrap)
		*off_wrap = le16toh(vq->device_ev->off_wrap);
}

bool sim_packed_need_kick(struct sim *s, unsigned q, uint16_t old_pos,
			  bool old_wrap)
{
	struct sim_vq *vq = &s->vq[q];
	uint16_t flags, off_wrap, ev, new = vq->avail_pos;
	uint16_t old = old_pos;

	sim_get_device_event(s, q, &flags, &off_wrap);
	if (flags == VRING_PACKED_EVENT_FLAG_DISABLE)
		return false;
	if (flags != VRING_PACKED_EVENT_FLAG_DESC)
		return true;
	/* Linux's virtqueue_kick_prepare_packed, positions unwrapped. */
	if (old_wrap != vq->avail_wrap)
		old -= vq->num;
	ev = off_wrap & ~(1u << VRING_PACKED_EVENT_F_WRAP_CTR);
	if (!!(off_wrap >> VRING_PACKED_EVENT_F_WRAP_CTR) != vq->avail_wrap)
		ev -= vq->num;
	return (uint16_t)(new - ev - 1) < (uint16_t)(new - old);
}

unsigned sim_used_pending(struct sim *s, unsigned q)
{
	struct sim_vq *vq = &s->vq[q];
	unsigned n = 0;

	if (!vq->packed)
		return (uint16_t)(sim_used_idx(s, q) - vq->last_used);
	{
		uint16_t p = vq->used_pos, id;
		bool wrap = vq->used_wrap;

		unsigned out = vq->num - vq->pfree;

		/* Walk with the ids' descriptor counts. */
		while (out && packed_is_used(vq, p, wrap)) {
			id = le16toh(vq->pdesc[p].id);
			out -= VDU_MIN(out, id < vq->num && vq->id_ndesc[id] ?
					   vq->id_ndesc[id] : 1u);
			packed_advance(vq, &p, &wrap,
				       id < vq->num && vq->id_ndesc[id] ?
				       vq->id_ndesc[id] : 1);
			n++;
		}
	}
	return n;
}

void sim_kick_async(struct sim *s, unsigned q)
{
	struct sim_vq *vq = &s->vq[q];
	int fd = __atomic_load_n(&vq->kickfd, __ATOMIC_ACQUIRE);

	if (fd >= 0) {
		eventfd_write(fd, 1);
		vq->kicks++;
	}
}

int sim_poll_used(struct sim *s, unsigned q, unsigned n, int timeout_ms)
{
	struct timespec t0, now;
	unsigned have;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		event_base_loop(s->base, EVLOOP_NONBLOCK);
		have = sim_used_pending(s, q);
		if (have >= n)
			return (int)have;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 +
		    (now.tv_nsec - t0.tv_nsec) / 1000000 >= timeout_ms)
			return (int)have;
		usleep(100);
	}
}

/* ------------------------------------------------------- split layout */

int sim_post(struct sim *s, unsigned q, const struct sim_desc *d, int n,
	     bool indirect)
{
	struct sim_vq *vq = &s->vq[q];
	uint16_t idx[SIM_MAX_SEG + 8];
	int nring = indirect ? 1 : n;

	if (vq->packed)
		return post_packed(s, q, d, n, indirect, -1);
	if (n < 1 || n > (int)VDU_ARRAY_SIZE(idx) || (unsigned)nring > vq->nfree)
		return -1;
	for (int i = 0; i < nring; i++)
		idx[i] = vq->free_stack[--vq->nfree];
	if (indirect) {
		uint64_t t = sim_alloc(s, 16ULL * n);
		struct vring_desc tab[SIM_MAX_SEG + 8];

		for (int i = 0; i < n; i++) {
			tab[i].addr = htole64(d[i].addr);
			tab[i].len = htole32(d[i].len);
			tab[i].flags = htole16((d[i].flags & VRING_DESC_F_WRITE) |
					       (i + 1 < n ? VRING_DESC_F_NEXT : 0));
			tab[i].next = htole16(i + 1 < n ? i + 1 : 0);
		}
		sim_write(s, t, tab, 16ULL * n);
		vq->desc[idx[0]].addr = htole64(t);
		vq->desc[idx[0]].len = htole32(16 * n);
		vq->desc[idx[0]].flags = htole16(VRING_DESC_F_INDIRECT);
		vq->desc[idx[0]].next = 0;
	} else {
		for (int i = 0; i < n; i++) {
			struct vring_desc *e = &vq->desc[idx[i]];

			e->addr = htole64(d[i].addr);
			e->len = htole32(d[i].len);
			e->flags = htole16((d[i].flags & VRING_DESC_F_WRITE) |
					   (i + 1 < n ? VRING_DESC_F_NEXT : 0));
			e->next = htole16(i + 1 < n ? idx[i + 1] : 0);
		}
	}
	for (int i = 0; i < nring; i++)
		vq->chain_next[idx[i]] = i + 1 < nring ? idx[i + 1] : 0;
	vq->chain_len[idx[0]] = nring;
	publish_avail(vq, idx[0]);
	return idx[0];
}

void sim_post_head(struct sim *s, unsigned q, uint16_t head)
{
	publish_avail(&s->vq[q], head);
}

void sim_set_avail_idx(struct sim *s, unsigned q, uint16_t idx)
{
	struct sim_vq *vq = &s->vq[q];

	vq->avail_shadow = idx;
	__atomic_store_n(&vq->avail->idx, htole16(idx), __ATOMIC_RELEASE);
}

void sim_set_used_event(struct sim *s, unsigned q, uint16_t v)
{
	struct sim_vq *vq = &s->vq[q];

	vq->avail->ring[vq->num] = htole16(v);
}

uint16_t sim_avail_event(struct sim *s, unsigned q)
{
	struct sim_vq *vq = &s->vq[q];
	uint16_t v;

	memcpy(&v, &vq->used->ring[vq->num], sizeof(v));
	return le16toh(v);
}

void sim_set_avail_flags(struct sim *s, unsigned q, uint16_t flags)
{
	s->vq[q].avail->flags = htole16(flags);
}

uint16_t sim_used_flags(struct sim *s, unsigned q)
{
	return le16toh(s->vq[q].used->flags);
}

uint16_t sim_used_idx(struct sim *s, unsigned q)
{
	return le16toh(__atomic_load_n(&s->vq[q].used->idx, __ATOMIC_ACQUIRE));
}

void sim_run(struct sim *s)
{
	for (int i = 0; i < 64; i++) {
		event_base_loop(s->base, EVLOOP_NONBLOCK);
		if (i >= 1 && event_base_get_num_events(
				      s->base, EVENT_BASE_COUNT_ACTIVE) == 0)
			break;
	}
}

void sim_kick(struct sim *s, unsigned q)
{
	struct sim_vq *vq = &s->vq[q];

	if (vq->kickfd >= 0) {
		eventfd_write(vq->kickfd, 1);
		vq->kicks++;
	}
	sim_run(s);
}

static void wait_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

unsigned sim_wait_used(struct sim *s, unsigned q, unsigned n, int timeout_ms)
{
	struct sim_vq *vq = &s->vq[q];
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	bool expired = false;
	struct event *t = evtimer_new(s->base, wait_timeout_cb, &expired);

	(void)vq;
	if (!t)
		return sim_used_pending(s, q);
	evtimer_add(t, &tv);
	while (sim_used_pending(s, q) < n && !expired)
		event_base_loop(s->base, EVLOOP_ONCE);
	event_free(t);
	return sim_used_pending(s, q);
}

int sim_get_used(struct sim *s, unsigned q, uint32_t *id, uint32_t *len)
{
	struct sim_vq *vq = &s->vq[q];
	struct vring_used_elem *e;
	uint32_t head;

	if (vq->packed)
		return get_used_packed(s, q, id, len);
	if (sim_used_idx(s, q) == vq->last_used)
		return 0;
	e = &vq->used->ring[vq->last_used % vq->num];
	head = le32toh(e->id);
	if (id)
		*id = head;
	if (len)
		*len = le32toh(e->len);
	vq->last_used++;
	/* Like Linux with callbacks enabled: interrupt me for the next one. */
	if (s->features & (1ULL << VIRTIO_RING_F_EVENT_IDX))
		vq->avail->ring[vq->num] = htole16(vq->last_used);
	if (head >= vq->num || !vq->chain_len[head]) {
		s->bad_used++;
		return 1;
	}
	for (unsigned i = 0, d = head, n = vq->chain_len[head]; i < n; i++) {
		vq->free_stack[vq->nfree++] = d;
		d = vq->chain_next[d];
	}
	vq->chain_len[head] = 0;
	return 1;
}

/* ----------------------------------------------------- virtio-blk layer */

int sim_blk_post(struct sim *s, unsigned q, struct sim_blk *b)
{
	struct sim_desc d[SIM_MAX_SEG + 4];
	struct virtio_blk_outhdr hdr;
	uint32_t hdr_len = b->hdr_len ? b->hdr_len : sizeof(hdr);
	uint8_t st = 0xff;
	int n = 0;

	if (b->nseg < 0 || b->nseg > SIM_MAX_SEG)
		return -1;
	hdr.type = htole32(b->type);
	hdr.ioprio = htole32(b->ioprio);
	hdr.sector = htole64(b->sector);
	b->hdr_iova = sim_alloc(s, sizeof(hdr));
	sim_write(s, b->hdr_iova, &hdr, sizeof(hdr));
	if (hdr_len > sizeof(hdr))
		hdr_len = sizeof(hdr);
	if ((b->flags & SIM_BLK_SPLIT_HDR) && hdr_len > 8) {
		d[n++] = (struct sim_desc){ b->hdr_iova, 8, 0 };
		d[n++] = (struct sim_desc){ b->hdr_iova + 8, hdr_len - 8, 0 };
	} else {
		d[n++] = (struct sim_desc){ b->hdr_iova, hdr_len, 0 };
	}
	for (int i = 0; i < b->nseg; i++) {
		d[n] = b->seg[i];
		d[n++].flags = b->flags & SIM_BLK_DATA_IN ? VRING_DESC_F_WRITE : 0;
	}
	b->status_iova = 0;
	if (!(b->flags & SIM_BLK_NO_STATUS)) {
		b->status_iova = sim_alloc(s, 1);
		sim_write(s, b->status_iova, &st, 1);
		d[n++] = (struct sim_desc){ b->status_iova, 1, VRING_DESC_F_WRITE };
	}
	b->head = sim_post(s, q, d, n, b->flags & SIM_BLK_INDIRECT);
	return b->head;
}

uint8_t sim_blk_status(struct sim *s, const struct sim_blk *b)
{
	uint8_t st = 0xee;

	if (b->status_iova)
		sim_read(s, b->status_iova, &st, 1);
	return st;
}
