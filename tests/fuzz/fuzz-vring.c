/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: arbitrary bytes become the contents of a split
 * virtqueue (descriptor table, avail ring, indices, flags) and of the
 * "guest" memory its descriptors point into (data, headers, indirect
 * tables); the simulated driver (tests/simdrv.c) then kicks the library's
 * real queue processor.  Whatever the input, the library must neither
 * crash, read or write outside the mapped memory, nor leak.
 *
 * Input layout (little endian, missing bytes read as zero):
 *   0  u8  flags   bit0 EVENT_IDX, bit1 INDIRECT_DESC, bit2 read-only
 *                  device, bit3 defer completions, bit4 reset while I/O is
 *                  in flight, bit5 UPDATE_IOTLB mid-way, bit6 second kick,
 *                  bit7 withhold FLUSH/DISCARD/WRITE_ZEROES
 *   1  u8  queue size: 4 << (x % 4)  (4..32); bit7: packed layout
 *          (VIRTIO_F_RING_PACKED), bit6: packed start wrap counter 0
 *   2  u16 start index (avail and used idx at DRIVER_OK; packed: the
 *          ring position, modulo the size)
 *   4  u16 avail->idx published before the kick (packed: unused)
 *   6  u16 used_event (packed: driver event off_wrap)
 *   8  u16 avail->flags (packed: driver event flags)
 *  10  u8  completion order seed
 *  11  u8  avail idx advance for the second kick
 *  12  desc table  (num * 16; packed: the descriptor ring as is, flags and
 *      ids included, so the input decides what is available)
 *  ..  avail ring  (num * 2; packed: unused)
 *  ..  guest memory: IOVA 0x0000-0x0fff (RW), 0x1000-0x1fff (RW, adjacent,
 *      separate host buffer), 0x2000-0x2fff (read-only); 0x3000-0xfffff is
 *      a hole; the rings live at 0x100000.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "../simdrv.h"

#define FZ_EVENT_IDX  0x01
#define FZ_INDIRECT   0x02
#define FZ_RO         0x04
#define FZ_DEFER      0x08
#define FZ_RESET      0x10
#define FZ_IOTLB      0x20
#define FZ_KICK2      0x40
#define FZ_NO_EXTRAS  0x80
/* byte 1 */
#define FZ_PACKED     0x80
#define FZ_WRAP0      0x40

#define HDR_LEN 12
#define MEM_REG 0x1000
#define DISK_SIZE (64 * 1024)
#define MAX_PENDING 512

struct fz_ram {
	uint8_t data[DISK_SIZE];
	bool defer;
	struct vdu_io *pending[MAX_PENDING];
	unsigned npending;
};

static int fz_get_info(void *h, struct vdu_backend_info *info)
{
	memset(info, 0, sizeof(*info));
	info->size = DISK_SIZE;
	info->caps = VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES;
	return 0;
}

static int fz_queue_open(void *h, unsigned qidx, struct event_base *base,
			 void **qctx)
{
	*qctx = h;
	return 0;
}

static void fz_exec(struct fz_ram *r, struct vdu_io *io)
{
	size_t done = 0;

	/* The library promised offset/len within the capacity. */
	if (io->offset > DISK_SIZE || io->len > DISK_SIZE - io->offset)
		abort();
	switch (io->op) {
	case VDU_IO_READ:
	case VDU_IO_WRITE:
		for (int i = 0; i < io->iovcnt; i++) {
			size_t n = io->iov[i].iov_len;

			if (done + n > io->len)
				abort();
			if (io->op == VDU_IO_READ)
				memcpy(io->iov[i].iov_base, r->data + io->offset + done, n);
			else
				memcpy(r->data + io->offset + done, io->iov[i].iov_base, n);
			done += n;
		}
		if (done != io->len)
			abort();
		break;
	case VDU_IO_DISCARD:
	case VDU_IO_WRITE_ZEROES:
		memset(r->data + io->offset, 0, io->len);
		break;
	case VDU_IO_FLUSH:
		break;
	default:
		abort();
	}
}

static void fz_submit(void *qctx, struct vdu_io *io)
{
	struct fz_ram *r = qctx;

	if (r->defer && r->npending < MAX_PENDING) {
		r->pending[r->npending++] = io;
		return;
	}
	fz_exec(r, io);
	vdu_io_complete(io, 0);
}

static void fz_complete(struct fz_ram *r, unsigned i)
{
	struct vdu_io *io = r->pending[i];

	r->pending[i] = r->pending[--r->npending];
	fz_exec(r, io);
	vdu_io_complete(io, (i & 3) == 3 ? -EIO : 0);
}

static const struct vdu_backend fz_backend = {
	VDU_BACKEND_INIT,
	.get_info = fz_get_info,
	.queue_open = fz_queue_open,
	.submit = fz_submit,
};

static struct event_base *base;
static struct fz_ram *ram;
static bool debug; /* FUZZ_VRING_DEBUG=1: print what happened */

static void log_stderr(void *opaque, int level, const char *msg)
{
	fprintf(stderr, "lib[%d]: %s\n", level, msg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	debug = getenv("FUZZ_VRING_DEBUG") != NULL;
	if (debug)
		vdu_set_log(log_stderr, NULL, VDU_LOG_DEBUG);
	else
		vdu_set_log(NULL, NULL, 0);
	base = event_base_new();
	ram = calloc(1, sizeof(*ram));
	return base && ram ? 0 : -1;
}

/* Consume up to n input bytes into dst, zero-filling the rest. */
static void take(const uint8_t **p, size_t *left, void *dst, size_t n)
{
	size_t c = *left < n ? *left : n;

	memcpy(dst, *p, c);
	memset((uint8_t *)dst + c, 0, n - c);
	*p += c;
	*left -= c;
}

static uint16_t get16(const uint8_t *h)
{
	return h[0] | h[1] << 8;
}

static void complete_all(struct sim *s, uint8_t seed)
{
	while (ram->npending) {
		unsigned i = seed % ram->npending;

		seed = seed * 37 + 11;
		fz_complete(ram, i);
		if (seed & 1)
			sim_run(s);
	}
	sim_run(s);
}

static void finish(struct sim *s, struct vdu_dev *dev)
{
	/* Drain what the device returned, like a driver would. */
	for (uint32_t id, len; sim_get_used(s, 0, &id, &len);)
		if (debug)
			fprintf(stderr, "used: id %u len %u\n", id, len);
	if (debug) {
		struct vdu_queue_stats st;

		vdu_dev_queue_stats(dev, 0, &st);
		fprintf(stderr, "requests %llu errors %llu read %llu written %llu "
			"broken %d irqs %u inflight %u\n",
			(unsigned long long)st.requests, (unsigned long long)st.errors,
			(unsigned long long)st.read_bytes,
			(unsigned long long)st.write_bytes, st.broken, s->vq[0].irqs,
			vdu_dev_inflight(dev));
	}
	if (vdu_dev_inflight(dev) != 0)
		abort(); /* everything was completed */
	vdu_dev_free(dev);
	sim_free(s);
}

/* Packed layout: the input is the descriptor ring itself. */
static int run_packed(struct sim *s, struct vdu_dev *dev, uint64_t features,
		      unsigned num, uint16_t pos, bool wrap, const uint8_t *h,
		      const uint8_t *p, size_t left)
{
	uint8_t ring_copy[16 * 32], *mem[3];
	struct sim_vq *vq;

	if (sim_init_packed(s, features, 1, num, pos, wrap) != VDUSE_REQ_RESULT_OK)
		abort();
	vq = &s->vq[0];
	take(&p, &left, ring_copy, 16 * num);
	memcpy(vq->pdesc, ring_copy, 16 * num);
	for (int i = 0; i < 3; i++) {
		mem[i] = sim_host(s, 0x1000 * i, MEM_REG);
		take(&p, &left, mem[i], MEM_REG);
	}
	sim_set_driver_event(s, 0, get16(h + 8), get16(h + 6));
	sim_kick(s, 0);
	if (h[0] & FZ_IOTLB) {
		sim_update_iotlb(s, 0x1000, 0x1fff);
		sim_update_iotlb(s, SIM_RING_IOVA, SIM_RING_IOVA);
	}
	if (h[0] & FZ_RESET) {
		sim_reset(s);
		if (sim_init_packed(s, features, 1, num, pos, wrap) ==
		    VDUSE_REQ_RESULT_OK) {
			memcpy(vq->pdesc, ring_copy, 16 * num);
			sim_kick(s, 0);
		}
	}
	complete_all(s, h[10]);
	if (h[0] & FZ_KICK2) {
		/* Flip the availability bits of h[11] % num descriptors:
		 * what looked used may now look available and vice versa. */
		for (unsigned i = 0; i < h[11] % (num + 1); i++)
			vq->pdesc[(pos + i) % num].flags ^=
				htole16((1u << VRING_PACKED_DESC_F_AVAIL) |
					(1u << VRING_PACKED_DESC_F_USED));
		sim_kick(s, 0);
		complete_all(s, h[10] ^ 0x5a);
	}
	/* The sim's own bookkeeping knows none of these buffers: read the
	 * ring, do not take from it. */
	vq->pfree = vq->num;
	finish(s, dev);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "fuzz" };
	const uint8_t *p = data;
	size_t left = size;
	uint8_t h[HDR_LEN], *mem[3], ring_copy[18 * 32];
	struct vdu_dev *dev = NULL;
	struct sim *s;
	struct sim_vq *vq;
	uint64_t features;
	unsigned num;
	uint16_t start;
	struct vdu_dev_info info;

	take(&p, &left, h, HDR_LEN);
	num = 4u << (h[1] % 4);
	start = get16(h + 2);
	o.read_only = !!(h[0] & FZ_RO);
	o.queue_size = 32;
	ram->defer = h[0] & FZ_DEFER;
	ram->npending = 0;
	memset(ram->data, 0, sizeof(ram->data));

	if (h[1] & FZ_PACKED)
		o.flags |= VDU_DEV_F_RING_PACKED;
	if (!base || !ram || vdu_dev_new(&o, &fz_backend, ram, base, &dev) < 0)
		abort();
	s = sim_new(base);
	if (!s)
		abort();
	mem[0] = sim_add_region(s, 0x0000, MEM_REG, VDU_PERM_READ | VDU_PERM_WRITE);
	mem[1] = sim_add_region(s, 0x1000, MEM_REG, VDU_PERM_READ | VDU_PERM_WRITE);
	mem[2] = sim_add_region(s, 0x2000, MEM_REG, VDU_PERM_READ);
	/* Exactly the ring sizes, so any overrun is caught. */
	if (!mem[0] || !mem[1] || !mem[2] ||
	    !sim_add_region(s, SIM_RING_IOVA, 16 * 32 + 6 + 2 * 32 + 2 + 6 + 8 * 32,
			    VDU_PERM_READ | VDU_PERM_WRITE) ||
	    sim_attach(s, dev) < 0)
		abort();

	vdu_dev_get_info(dev, &info);
	features = info.features_offered &
		   ~((1ULL << VIRTIO_RING_F_EVENT_IDX) |
		     (1ULL << VIRTIO_RING_F_INDIRECT_DESC));
	if (h[0] & FZ_EVENT_IDX)
		features |= 1ULL << VIRTIO_RING_F_EVENT_IDX;
	if (h[0] & FZ_INDIRECT)
		features |= 1ULL << VIRTIO_RING_F_INDIRECT_DESC;
	if (h[0] & FZ_NO_EXTRAS)
		features &= ~((1ULL << VIRTIO_BLK_F_FLUSH) |
			      (1ULL << VIRTIO_BLK_F_DISCARD) |
			      (1ULL << VIRTIO_BLK_F_WRITE_ZEROES));
	if (h[1] & FZ_PACKED)
		return run_packed(s, dev, features, num, start % num,
				  !(h[1] & FZ_WRAP0), h, p, left);

	if (sim_init(s, features, 1, num, start) != VDUSE_REQ_RESULT_OK)
		abort();
	vq = &s->vq[0];
	take(&p, &left, ring_copy, 18 * num);
	memcpy(vq->desc, ring_copy, 16 * num);
	memcpy(vq->avail->ring, ring_copy + 16 * num, 2 * num);
	for (int i = 0; i < 3; i++)
		take(&p, &left, mem[i], MEM_REG);
	sim_set_used_event(s, 0, get16(h + 6));
	sim_set_avail_flags(s, 0, get16(h + 8));
	sim_set_avail_idx(s, 0, get16(h + 4));
	sim_kick(s, 0);

	if (h[0] & FZ_IOTLB) {
		sim_update_iotlb(s, 0x1000, 0x1fff);
		sim_update_iotlb(s, SIM_RING_IOVA, SIM_RING_IOVA);
	}
	if (h[0] & FZ_RESET) {
		/* Reset with I/O out, come back, serve the same ring again. */
		sim_reset(s);
		if (sim_init(s, features, 1, num, start) == VDUSE_REQ_RESULT_OK) {
			memcpy(vq->desc, ring_copy, 16 * num);
			memcpy(vq->avail->ring, ring_copy + 16 * num, 2 * num);
			sim_set_avail_idx(s, 0, get16(h + 4));
			sim_kick(s, 0);
		}
	}
	complete_all(s, h[10]);
	if (h[0] & FZ_KICK2) {
		sim_set_avail_idx(s, 0, vq->avail_shadow + h[11]);
		sim_kick(s, 0);
		complete_all(s, h[10] ^ 0x5a);
	}
	/* Drain what the device returned, like a driver would. */
	for (uint32_t id, len; sim_get_used(s, 0, &id, &len);)
		if (debug)
			fprintf(stderr, "used: id %u len %u\n", id, len);
	if (debug) {
		struct vdu_queue_stats st;

		vdu_dev_queue_stats(dev, 0, &st);
		fprintf(stderr, "requests %llu errors %llu read %llu written %llu "
			"broken %d irqs %u inflight %u\n",
			(unsigned long long)st.requests, (unsigned long long)st.errors,
			(unsigned long long)st.read_bytes,
			(unsigned long long)st.write_bytes, st.broken, vq->irqs,
			vdu_dev_inflight(dev));
	}
	if (vdu_dev_inflight(dev) != 0)
		abort(); /* everything was completed above */
	vdu_dev_free(dev);
	sim_free(s);
	return 0;
}
