/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: arbitrary inflight-log contents.  A device object
 * takes requests from a split or packed ring (the simulated driver) and
 * is dropped as a killed daemon would leave it (vdu_dev_abandon); the
 * input then corrupts its queue's inflight log -- bytes overwritten,
 * XORed, or the file truncated or extended -- and a new object reconnects
 * from it and serves on.  Whatever the log says, reconnecting must end in
 * 0 or an error (-ESTALE for a log that is not this device's), never a
 * crash, an access outside the mapped memory, or a leak.
 *
 * Input: byte 0 bit0 packed ring, bit1 indirect chains, bit2 a second
 * queue; byte 1: what to do with the file (0-3: overwrite at offsets,
 * 4: XOR at offsets, 5: truncate to a length, 6: extend); then records of
 * u16 offset (little endian) + u8 value, or for 5 and 6 a u16 length.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "../simdrv.h"

#define F(b) (1ULL << (b))
#define DISK (64u * 4096)
#define MAXP 256

struct fz_ram {
	uint8_t data[DISK];
	struct vdu_io *pending[MAXP];
	unsigned npending;
};

static int r_get_info(void *h, struct vdu_backend_info *info)
{
	memset(info, 0, sizeof(*info));
	info->size = DISK;
	info->caps = VDU_CAP_FLUSH;
	return 0;
}

static int r_queue_open(void *h, unsigned qidx, struct event_base *base, void **qctx)
{
	*qctx = h;
	return 0;
}

static void r_exec(struct fz_ram *r, struct vdu_io *io)
{
	uint64_t off = io->offset;

	for (int i = 0; i < io->iovcnt; i++) {
		size_t n = io->iov[i].iov_len;

		if (off > DISK || n > DISK - off)
			break;
		if (io->op == VDU_IO_READ)
			memcpy(io->iov[i].iov_base, r->data + off, n);
		else if (io->op == VDU_IO_WRITE)
			memcpy(r->data + off, io->iov[i].iov_base, n);
		off += n;
	}
	vdu_io_complete(io, 0);
}

/* Every other request is held, like I/O in flight at the crash. */
static void r_submit(void *qctx, struct vdu_io *io)
{
	struct fz_ram *r = qctx;

	if (r->npending < MAXP && (r->npending + 1) % 2)
		r->pending[r->npending++] = io;
	else
		r_exec(r, io);
}

static const struct vdu_backend fz_backend = {
	VDU_BACKEND_INIT,
	.get_info = r_get_info,
	.queue_open = r_queue_open,
	.submit = r_submit,
};

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static char state[64];

static void quiet(void *opaque, int level, const char *msg)
{
}

static int dev_open(struct event_base *base, struct fz_ram *ram, struct sim *s,
		    unsigned nq, bool packed, bool reconnect, struct vdu_dev **out)
{
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "fzlog" };
	int r;

	o.num_queues = nq;
	o.queue_size = 16;
	o.state_path = state;
	o.flags = packed ? VDU_DEV_F_RING_PACKED : 0;
	r = vdu_dev_new(&o, &fz_backend, ram, base, out);
	if (r < 0)
		return r;
	return reconnect ? sim_reattach(s, *out) : sim_attach(s, *out);
}

static void post_writes(struct sim *s, unsigned nq, bool indirect, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct sim_blk b = { .type = VIRTIO_BLK_T_OUT, .sector = i * 8 };

		b.flags = indirect ? SIM_BLK_INDIRECT : 0;
		b.seg[0].addr = sim_alloc(s, 4096);
		b.seg[0].len = 4096;
		b.nseg = 1;
		if (!b.seg[0].addr || sim_blk_post(s, i % nq, &b) < 0)
			break;
	}
	for (unsigned q = 0; q < nq; q++)
		sim_kick(s, q);
}

/* Apply the input to STATE.q0.inflight. */
static void corrupt(const uint8_t *d, size_t n)
{
	char path[96];
	uint8_t op = n > 1 ? d[1] % 7 : 0;
	int fd;

	snprintf(path, sizeof(path), "%s.q0.inflight", state);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	if (op == 5 || op == 6) {
		off_t len = lseek(fd, 0, SEEK_END);
		unsigned v = n > 3 ? (unsigned)(d[2] | d[3] << 8) : 0;

		if (ftruncate(fd, op == 5 ? (len ? v % len : 0) : len + 1 + v % 4096) < 0) {
			/* nothing to corrupt then */
		}
	} else {
		for (size_t i = 2; i + 3 <= n; i += 3) {
			off_t off = d[i] | d[i + 1] << 8;
			uint8_t v = d[i + 2], old = 0;

			if (op == 4 && pread(fd, &old, 1, off) == 1)
				v ^= old;
			if (pwrite(fd, &v, 1, off) < 0)
				break;
		}
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	bool packed = n && (d[0] & 1), indirect = n && (d[0] & 2);
	unsigned nq = n && (d[0] & 4) ? 2 : 1;
	struct event_base *base;
	struct fz_ram *ram;
	struct sim *s;
	struct vdu_dev *dev = NULL;
	uint64_t feat;
	struct vdu_dev_info info;

	if (!state[0]) {
		snprintf(state, sizeof(state), "/tmp/vdu-fuzz-inflight.%d", (int)getpid());
		vdu_set_log(quiet, NULL, VDU_LOG_ERR);
	}
	base = event_base_new();
	ram = calloc(1, sizeof(*ram));
	s = sim_new(base);
	if (!base || !ram || !s || sim_default_layout(s) < 0 ||
	    dev_open(base, ram, s, nq, packed, false, &dev) < 0)
		goto out;
	vdu_dev_get_info(dev, &info);
	feat = info.features_offered & ~F(VIRTIO_RING_F_INDIRECT_DESC);
	feat |= indirect ? F(VIRTIO_RING_F_INDIRECT_DESC) : 0;
	if (!packed)
		feat &= ~F(VIRTIO_F_RING_PACKED);
	if ((packed ? sim_init_packed(s, feat, nq, 16, 3, true)
		    : sim_init(s, feat, nq, 16, 65533)) != VDUSE_REQ_RESULT_OK)
		goto out;
	post_writes(s, nq, indirect, 8);
	ram->npending = 0;          /* the backend dies with the process */
	vdu_dev_abandon(dev);
	dev = NULL;
	corrupt(d, n);
	if (dev_open(base, ram, s, nq, packed, true, &dev) == 0) {
		/* Serve on: answer what was resubmitted, take new requests. */
		for (int round = 0; round < 3; round++) {
			while (ram->npending)
				r_exec(ram, ram->pending[--ram->npending]);
			post_writes(s, nq, indirect, 2);
			sim_run(s);
		}
	}
	while (ram->npending)
		r_exec(ram, ram->pending[--ram->npending]);
out:
	vdu_dev_free(dev);
	sim_free(s);
	if (base)
		event_base_free(base);
	free(ram);
	for (unsigned q = 0; q < 2; q++) {
		char path[96];

		snprintf(path, sizeof(path), "%s.q%u.inflight", state, q);
		unlink(path);
	}
	return 0;
}
