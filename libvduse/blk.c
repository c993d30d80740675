/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk: the device configuration we offer and the requests we
 * serve.  Every field of a request comes from the driver and is checked
 * here; a bad request is answered with IOERR or UNSUPP, never trusted.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "internal.h"

#define SECTOR 512u
#define DEFAULT_MAX_DISCARD (32u << 20)   /* bytes per request */
#define SIZE_MAX_SEG (1u << 20)           /* bytes per segment */

/* Only up to write_zeroes_may_unmap + padding: the fields we set. */
#define BLK_CONFIG_SIZE (offsetof(struct virtio_blk_config, unused1) + 3)

struct blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

struct blk_range {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

static unsigned ilog2_u32(uint32_t v)
{
	unsigned r = 0;

	while (v >>= 1)
		r++;
	return r;
}

int vdu_blk_build_config(struct vdu_dev *dev)
{
	struct virtio_blk_config c;
	const struct vdu_backend_info *bi = &dev->be_info;
	uint32_t bs = dev->opts.block_size ? dev->opts.block_size
		    : bi->logical_block_size ? bi->logical_block_size : SECTOR;
	uint32_t pbs = bi->physical_block_size ? bi->physical_block_size : bs;
	uint64_t size = bi->size - bi->size % bs;
	uint64_t f;

	if (bs < SECTOR || bs > 65536 || (bs & (bs - 1)))
		return -EINVAL;
	if (pbs < bs || (pbs & (pbs - 1)))
		pbs = bs;
	if (size < bs)
		return -EINVAL;

	dev->block_size = bs;
	__atomic_store_n(&dev->capacity_sectors, size / SECTOR, __ATOMIC_RELAXED);
	dev->read_only = dev->opts.read_only || (bi->caps & VDU_CAP_READ_ONLY);
	/* Room for header and status in a chain as long as the queue. */
	dev->seg_max = VDU_MIN(dev->queue_size - 2, 254u);

	f = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_ACCESS_PLATFORM) |
	    (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
	    (1ULL << VIRTIO_RING_F_EVENT_IDX) |
	    (1ULL << VIRTIO_BLK_F_SIZE_MAX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
	    (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_TOPOLOGY) |
	    (1ULL << VIRTIO_BLK_F_MQ);
	if (dev->opts.flags & VDU_DEV_F_RING_PACKED)
		f |= 1ULL << VIRTIO_F_RING_PACKED;
	/* Never VIRTIO_BLK_F_CONFIG_WCE: VDUSE rejects a writable config. */
	if (bi->caps & VDU_CAP_FLUSH)
		f |= 1ULL << VIRTIO_BLK_F_FLUSH;
	if (dev->read_only)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	else {
		if (bi->caps & VDU_CAP_DISCARD)
			f |= 1ULL << VIRTIO_BLK_F_DISCARD;
		if (bi->caps & VDU_CAP_WRITE_ZEROES)
			f |= 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	}
	dev->features = f;

	memset(&c, 0, sizeof(c));
	c.capacity = htole64(size / SECTOR);
	c.size_max = htole32(SIZE_MAX_SEG);
	c.seg_max = htole32(dev->seg_max);
	c.blk_size = htole32(bs);
	c.physical_block_exp = ilog2_u32(pbs / bs);
	c.alignment_offset = 0;
	c.min_io_size = htole16(1);
	c.opt_io_size = htole32(bi->opt_io_size / bs);
	c.num_queues = htole16(dev->num_queues);
	if (f & (1ULL << VIRTIO_BLK_F_DISCARD)) {
		uint32_t max = bi->max_discard_bytes ? bi->max_discard_bytes
						     : DEFAULT_MAX_DISCARD;
		uint32_t gran = bi->discard_granularity ? bi->discard_granularity : bs;
		c.max_discard_sectors = htole32(max / SECTOR);
		c.max_discard_seg = htole32(1);
		c.discard_sector_alignment = htole32(gran / SECTOR);
	}
	if (f & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES)) {
		uint32_t max = bi->max_write_zeroes_bytes ? bi->max_write_zeroes_bytes
							  : DEFAULT_MAX_DISCARD;
		c.max_write_zeroes_sectors = htole32(max / SECTOR);
		c.max_write_zeroes_seg = htole32(1);
		c.write_zeroes_may_unmap = !!(bi->caps & VDU_CAP_DISCARD);
	}
	_Static_assert(BLK_CONFIG_SIZE <= sizeof(dev->config), "config");
	memcpy(dev->config, &c, BLK_CONFIG_SIZE);
	dev->config_size = BLK_CONFIG_SIZE;
	return 0;
}

/* Drop n bytes from the front of an iovec array, in place. */
static struct iovec *iov_skip(struct iovec *iov, int *cnt, size_t n)
{
	while (*cnt && n >= iov->iov_len) {
		n -= iov->iov_len;
		iov++;
		(*cnt)--;
	}
	if (*cnt && n) {
		iov->iov_base = (char *)iov->iov_base + n;
		iov->iov_len -= n;
	}
	return iov;
}

/* Drop n bytes from the end of an iovec array, in place. */
static void iov_chop(struct iovec *iov, int *cnt, size_t n)
{
	while (*cnt && n >= iov[*cnt - 1].iov_len) {
		n -= iov[*cnt - 1].iov_len;
		(*cnt)--;
	}
	if (*cnt)
		iov[*cnt - 1].iov_len -= n;
}

static bool range_ok(const struct vdu_dev *dev, uint64_t sector, uint64_t nsec)
{
	uint64_t cap = vdu_dev_capacity(dev); /* may change under us */

	return sector <= cap && nsec <= cap - sector;
}

static void submit(struct vdu_queue *q, struct vdu_req *req,
		   enum vdu_io_op op, uint64_t sector, uint64_t len)
{
	req->io.op = op;
	req->io.offset = sector * SECTOR;
	req->io.len = len;
	q->dev->be.submit(q->backend_qctx, &req->io);
}

void vdu_blk_handle(struct vdu_queue *q, struct vdu_req *req)
{
	struct vdu_dev *dev = q->dev;
	struct iovec *out = req->iov, *in = req->iov + req->out_num;
	int out_num = req->out_num, in_num = req->in_num;
	size_t out_len = vdu_iov_size(out, out_num);
	size_t in_len = vdu_iov_size(in, in_num);
	struct blk_outhdr hdr;
	uint64_t sector;

	req->io.flags = 0;
	req->io.iov = NULL;
	req->io.iovcnt = 0;
	req->io.len = 0;
	if (in_len < 1) {
		/* No place for a status byte: hand the buffer back empty. */
		vdu_warn("%s: queue %u: request without a status byte",
			 dev->name, q->idx);
		req->used_len = 0;
		vdu_req_finish(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	/* The status byte is the last writable byte, wherever it lies. */
	iov_chop(in, &in_num, 0);
	req->status = (uint8_t *)in[in_num - 1].iov_base + in[in_num - 1].iov_len - 1;
	iov_chop(in, &in_num, 1);
	in_len--;
	req->used_len = 1;

	if (out_len < sizeof(hdr)) {
		vdu_req_finish(req, VIRTIO_BLK_S_IOERR);
		return;
	}
	if (out[0].iov_len >= sizeof(hdr)) /* the usual layout */
		memcpy(&hdr, out[0].iov_base, sizeof(hdr));
	else
		vdu_iov_to_buf(out, out_num, 0, &hdr, sizeof(hdr));
	out = iov_skip(out, &out_num, sizeof(hdr));
	out_len -= sizeof(hdr);
	req->type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);

	switch (req->type) {
	case VIRTIO_BLK_T_IN:
		if (in_len % SECTOR || !range_ok(dev, sector, in_len / SECTOR))
			break;
		if (in_len == 0) {
			vdu_req_finish(req, VIRTIO_BLK_S_OK);
			return;
		}
		req->io.iov = in;
		req->io.iovcnt = in_num;
		req->used_len = in_len + 1;
		submit(q, req, VDU_IO_READ, sector, in_len);
		return;
	case VIRTIO_BLK_T_OUT:
		if (dev->read_only || out_len % SECTOR ||
		    !range_ok(dev, sector, out_len / SECTOR))
			break;
		if (out_len == 0) {
			vdu_req_finish(req, VIRTIO_BLK_S_OK);
			return;
		}
		req->io.iov = out;
		req->io.iovcnt = out_num;
		submit(q, req, VDU_IO_WRITE, sector, out_len);
		return;
	case VIRTIO_BLK_T_FLUSH:
		if (!(dev->negotiated & (1ULL << VIRTIO_BLK_F_FLUSH))) {
			vdu_req_finish(req, VIRTIO_BLK_S_UNSUPP);
			return;
		}
		submit(q, req, VDU_IO_FLUSH, 0, 0);
		return;
	case VIRTIO_BLK_T_GET_ID: {
		char id[VIRTIO_BLK_ID_BYTES] = { 0 };
		size_t n = VDU_MIN(in_len, sizeof(id));

		memcpy(id, dev->serial, strnlen(dev->serial, sizeof(id)));
		vdu_iov_from_buf(in, in_num, 0, id, n);
		req->used_len = n + 1;
		vdu_req_finish(req, VIRTIO_BLK_S_OK);
		return;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		bool wz = req->type == VIRTIO_BLK_T_WRITE_ZEROES;
		uint64_t feat = 1ULL << (wz ? VIRTIO_BLK_F_WRITE_ZEROES
					    : VIRTIO_BLK_F_DISCARD);
		uint32_t allowed = wz ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
		const struct virtio_blk_config *c = (const void *)dev->config;
		uint32_t max = le32toh(wz ? c->max_write_zeroes_sectors
					  : c->max_discard_sectors);
		struct blk_range rg;
		uint32_t flags, nsec;

		if (!(dev->negotiated & feat) || out_len != sizeof(rg)) {
			/* We advertise one segment per request. */
			vdu_req_finish(req, VIRTIO_BLK_S_UNSUPP);
			return;
		}
		vdu_iov_to_buf(out, out_num, 0, &rg, sizeof(rg));
		sector = le64toh(rg.sector);
		nsec = le32toh(rg.num_sectors);
		flags = le32toh(rg.flags);
		if (flags & ~allowed) {
			vdu_req_finish(req, VIRTIO_BLK_S_UNSUPP);
			return;
		}
		if (dev->read_only || nsec > max || !range_ok(dev, sector, nsec))
			break;
		if (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)
			req->io.flags |= VDU_IO_F_UNMAP;
		if (nsec == 0) {
			vdu_req_finish(req, VIRTIO_BLK_S_OK);
			return;
		}
		submit(q, req, wz ? VDU_IO_WRITE_ZEROES : VDU_IO_DISCARD, sector,
		       (uint64_t)nsec * SECTOR);
		return;
	}
	default:
		vdu_req_finish(req, VIRTIO_BLK_S_UNSUPP);
		return;
	}
	vdu_req_finish(req, VIRTIO_BLK_S_IOERR);
}

void vdu_io_complete(struct vdu_io *io, int result)
{
	struct vdu_req *req = (struct vdu_req *)((char *)io - offsetof(struct vdu_req, io));
	struct vdu_queue *q = req->vr->q;
	uint8_t status = VIRTIO_BLK_S_OK;

	if (result == -EOPNOTSUPP)
		status = VIRTIO_BLK_S_UNSUPP;
	else if (result < 0)
		status = VIRTIO_BLK_S_IOERR;
	if (status != VIRTIO_BLK_S_OK)
		req->used_len = 1;
	else if (q && io->op == VDU_IO_READ)
		q->st.read_bytes += io->len;
	else if (q && io->op == VDU_IO_WRITE)
		q->st.write_bytes += io->len;
	vdu_req_finish(req, status);
}
