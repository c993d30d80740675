/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The harness shared by the ring tests (test-vring.c: split layout,
 * test-packed.c: packed): a RAM-disk backend with sync/deferred/batched
 * completion, the test environment, and virtio-blk request helpers on
 * top of the simulated driver.  Included once per test program; define
 * BLKTEST_DEV_FLAGS (VDU_DEV_F_*) first.  Each program supplies its own
 * env_init() (how the simulated driver lays out its rings).
 */
#ifndef VDU_TESTS_BLKTEST_H
#define VDU_TESTS_BLKTEST_H

#pragma GCC diagnostic ignored "-Wunused-function"
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "simdrv.h"
#include "tap.h"

#define F(bit) (1ULL << (bit))
#define SECTOR 512u
#define ST_OK VIRTIO_BLK_S_OK
#define ST_IOERR VIRTIO_BLK_S_IOERR
#define ST_UNSUPP VIRTIO_BLK_S_UNSUPP
#define RES_OK VDUSE_REQ_RESULT_OK
#define RES_FAILED VDUSE_REQ_RESULT_FAILED

/* ------------------------------------------------------------ RAM disk */

enum ram_mode {
	RAM_SYNC,   /* complete inside submit */
	RAM_DEFER,  /* queue; the test completes in any order */
	RAM_BATCH,  /* queue; run all at unplug (like io_submit) */
};

#define RAM_MAX_PENDING 1024

struct ram {
	uint8_t *data;
	uint64_t size;
	uint32_t caps;
	enum ram_mode mode;
	struct vdu_io *pending[RAM_MAX_PENDING];
	unsigned npending;
	unsigned submits, unplugs, completes, by_op[5];
	enum vdu_io_op last_op;
	uint32_t last_flags;
	uint64_t last_off, last_len;
	unsigned bad;        /* out-of-range I/O or iov/len mismatch */
	int max_iovcnt;
	int result;          /* what sync/batch completions return */
	struct sim *probe;   /* record used->flags of queue 0 at submit */
	uint16_t probe_flags_or;
	unsigned probe_n;
	unsigned queue_opens, queue_closes;
};

static int ram_get_info(void *h, struct vdu_backend_info *info)
{
	struct ram *r = h;

	memset(info, 0, sizeof(*info));
	info->size = r->size;
	info->caps = r->caps;
	return 0;
}

static int ram_queue_open(void *h, unsigned qidx, struct event_base *base,
			  void **qctx)
{
	struct ram *r = h;

	r->queue_opens++;
	*qctx = h;
	return 0;
}

static void ram_queue_close(void *qctx)
{
	struct ram *r = qctx;

	r->queue_closes++;
}

static int ram_exec(struct ram *r, struct vdu_io *io)
{
	size_t done = 0;

	if (io->offset > r->size || io->len > r->size - io->offset) {
		r->bad++;
		return -EIO;
	}
	r->last_op = io->op;
	r->last_flags = io->flags;
	r->last_off = io->offset;
	r->last_len = io->len;
	if (io->op <= VDU_IO_WRITE_ZEROES)
		r->by_op[io->op]++;
	switch (io->op) {
	case VDU_IO_READ:
	case VDU_IO_WRITE:
		if (io->iovcnt > r->max_iovcnt)
			r->max_iovcnt = io->iovcnt;
		for (int i = 0; i < io->iovcnt; i++) {
			size_t n = io->iov[i].iov_len;

			if (done + n > io->len) {
				r->bad++;
				return -EIO;
			}
			if (io->op == VDU_IO_READ)
				memcpy(io->iov[i].iov_base, r->data + io->offset + done, n);
			else
				memcpy(r->data + io->offset + done, io->iov[i].iov_base, n);
			done += n;
		}
		if (done != io->len) {
			r->bad++;
			return -EIO;
		}
		break;
	case VDU_IO_DISCARD:
	case VDU_IO_WRITE_ZEROES:
		memset(r->data + io->offset, 0, io->len);
		break;
	case VDU_IO_FLUSH:
		break;
	}
	return r->result;
}

static void ram_submit(void *qctx, struct vdu_io *io)
{
	struct ram *r = qctx;

	r->submits++;
	if (r->probe) {
		r->probe_flags_or |= sim_used_flags(r->probe, 0);
		r->probe_n++;
	}
	if (r->mode == RAM_SYNC) {
		r->completes++;
		vdu_io_complete(io, ram_exec(r, io));
		return;
	}
	if (r->npending == RAM_MAX_PENDING) {
		r->bad++;
		vdu_io_complete(io, -EIO);
		return;
	}
	r->pending[r->npending++] = io;
}

/* Run and complete pending I/O number i (in submit order). */
static void ram_complete(struct ram *r, unsigned i, int result)
{
	struct vdu_io *io = r->pending[i];
	int res;

	memmove(&r->pending[i], &r->pending[i + 1],
		(r->npending - i - 1) * sizeof(r->pending[0]));
	r->npending--;
	res = ram_exec(r, io);
	r->completes++;
	vdu_io_complete(io, result ? result : res);
}

static void ram_unplug(void *qctx)
{
	struct ram *r = qctx;

	r->unplugs++;
	if (r->mode == RAM_BATCH)
		while (r->npending)
			ram_complete(r, 0, 0);
}

static const struct vdu_backend ram_backend = {
	VDU_BACKEND_INIT,
	.get_info = ram_get_info,
	.queue_open = ram_queue_open,
	.queue_close = ram_queue_close,
	.submit = ram_submit,
	.unplug = ram_unplug,
};

/* ------------------------------------------------------------ harness */

struct env_cfg {
	uint64_t size;
	unsigned nq, qsize;
	const char *name;
	const char *serial;
	int read_only;
	uint32_t caps;
	enum ram_mode mode;
	uint32_t flags;   /* VDU_DEV_F_*; BLKTEST_DEV_FLAGS is always added */
	unsigned poll_us;
	const int *irq_cpus;
	const struct vdu_backend *backend; /* NULL: ram_backend */
};

struct env {
	struct event_base *base;
	struct ram ram;
	struct vdu_dev *dev;
	struct sim *sim;
	uint64_t offered;
	unsigned nq, qsize;
};

#define ALL_CAPS (VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES)
#define RING_FEATURES (F(VIRTIO_RING_F_EVENT_IDX) | F(VIRTIO_RING_F_INDIRECT_DESC))

static unsigned lib_errors;

static void log_cb(void *opaque, int level, const char *msg)
{
	if (level <= VDU_LOG_ERR)
		lib_errors++;
	if (getenv("VDU_TEST_VERBOSE"))
		printf("# lib[%d]: %s\n", level, msg);
}

static int env_open(struct env *e, const struct env_cfg *c)
{
	struct vdu_dev_opts o = { .struct_size = sizeof(o) };
	struct vdu_dev_info info;
	int r;

	memset(e, 0, sizeof(*e));
	e->base = event_base_new();
	e->ram.size = c->size ? c->size : 1 << 20;
	e->ram.data = calloc(1, e->ram.size);
	e->ram.caps = c->caps;
	e->ram.mode = c->mode;
	o.name = c->name ? c->name : "vdutest";
	o.num_queues = c->nq;
	o.queue_size = c->qsize;
	o.serial = c->serial;
	o.read_only = c->read_only;
	o.flags = c->flags | BLKTEST_DEV_FLAGS;
	o.poll_us = c->poll_us;
	o.irq_cpus = c->irq_cpus;
	r = vdu_dev_new(&o, c->backend ? c->backend : &ram_backend, &e->ram,
			e->base, &e->dev);
	if (r < 0)
		return r;
	r = sim_open_default(e->base, e->dev, &e->sim);
	if (r < 0)
		return r;
	vdu_dev_get_info(e->dev, &info);
	e->offered = info.features_offered;
	e->nq = info.num_queues;
	e->qsize = info.queue_size;
	return 0;
}

static void env_close(struct env *e)
{
	/* Nothing may be left with the backend: the device owns the slots. */
	while (e->ram.npending)
		ram_complete(&e->ram, 0, 0);
	vdu_dev_free(e->dev);
	sim_free(e->sim);
	event_base_free(e->base);
	free(e->ram.data);
	memset(e, 0, sizeof(*e));
}

/* Offered features without the optional ring features, plus extra. */
static uint64_t feat(const struct env *e, uint64_t extra)
{
	return (e->offered & ~RING_FEATURES) | extra;
}


static void blk_init(struct sim_blk *b, uint32_t type, uint64_t sector)
{
	memset(b, 0, sizeof(*b));
	b->type = type;
	b->sector = sector;
}

static void blk_add(struct env *e, struct sim_blk *b, uint64_t iova, uint32_t len)
{
	b->seg[b->nseg].addr = iova;
	b->seg[b->nseg].len = len;
	b->nseg++;
}

static void blk_add_new(struct env *e, struct sim_blk *b, uint32_t len)
{
	blk_add(e, b, sim_alloc(e->sim, len), len);
}

struct done {
	int n;           /* used entries seen */
	uint32_t id, len;
	uint8_t status;
	bool id_ok;
};

static void collect(struct env *e, unsigned q, struct sim_blk *b, struct done *d)
{
	uint32_t id, len;

	while (sim_get_used(e->sim, q, &id, &len)) {
		d->n++;
		d->id = id;
		d->len = len;
	}
	d->id_ok = d->n == 1 && d->id == (uint32_t)b->head;
	d->status = sim_blk_status(e->sim, b);
}

/* Post one request, kick, collect. */
static struct done run1(struct env *e, unsigned q, struct sim_blk *b)
{
	struct done d = { 0 };

	if (sim_blk_post(e->sim, q, b) < 0) {
		d.n = -1;
		return d;
	}
	sim_kick(e->sim, q);
	collect(e, q, b, &d);
	return d;
}

static bool queue_broken(struct env *e, unsigned q)
{
	struct vdu_queue_stats st;
	struct vdu_dev_info info;

	vdu_dev_queue_stats(e->dev, q, &st);
	vdu_dev_get_info(e->dev, &info);
	return st.broken == 1 && info.broken == 1;
}

static void pattern(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 12345;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345;
		p[i] = x >> 16;
	}
}

enum { LAY_PLAIN, LAY_CROSS };

/* Data segments of the given lengths; LAY_CROSS makes up to 8 of them
 * straddle a region boundary (odd split point). */
static void add_segs(struct env *e, struct sim_blk *b, const uint32_t *lens,
		     int nseg, int layout)
{
	for (int i = 0; i < nseg; i++) {
		if (layout == LAY_CROSS && i < 8 && lens[i] > 1)
			blk_add(e, b, sim_alloc_cross(e->sim, lens[i],
						      lens[i] / 2 + 7 < lens[i] ?
						      lens[i] / 2 + 7 : 1),
				lens[i]);
		else
			blk_add_new(e, b, lens[i]);
	}
}

static unsigned segs_spanned(struct env *e, const struct sim_blk *b)
{
	unsigned n = 0;

	for (int i = 0; i < b->nseg; i++)
		n += sim_regions_spanned(e->sim, b->seg[i].addr, b->seg[i].len);
	return n;
}

/*
 * Write a pattern with one chain, read it back with another; check used
 * lengths, status, ids and the data (both in RAM and as read back).
 * Returns NULL on success or what went wrong.
 */
static const char *write_read(struct env *e, unsigned q, uint64_t sector,
			      const uint32_t *lens, int nseg, unsigned bflags,
			      int layout, unsigned *spans)
{
	static char why[160];
	struct sim_blk w, r;
	struct done d;
	uint64_t total = 0;
	uint8_t *pat, *got;
	uint32_t seed = (uint32_t)sector * 31 + nseg * 7 + bflags;

	for (int i = 0; i < nseg; i++)
		total += lens[i];
	pat = malloc(total + 1);
	got = malloc(total + 1);
	pattern(pat, total, seed);

	blk_init(&w, VIRTIO_BLK_T_OUT, sector);
	w.flags = bflags;
	add_segs(e, &w, lens, nseg, layout);
	for (int i = 0, off = 0; i < nseg; off += lens[i], i++)
		sim_write(e->sim, w.seg[i].addr, pat + off, lens[i]);
	if (spans)
		*spans = segs_spanned(e, &w);
	d = run1(e, q, &w);
	if (!d.id_ok || d.len != 1 || d.status != ST_OK) {
		snprintf(why, sizeof(why), "write: n=%d id_ok=%d len=%u status=%u",
			 d.n, d.id_ok, d.len, d.status);
		goto out;
	}
	if (memcmp(e->ram.data + sector * SECTOR, pat, total)) {
		snprintf(why, sizeof(why), "write: RAM content differs");
		goto out;
	}
	blk_init(&r, VIRTIO_BLK_T_IN, sector);
	r.flags = bflags | SIM_BLK_DATA_IN;
	add_segs(e, &r, lens, nseg, layout);
	for (int i = 0; i < nseg; i++) {
		memset(got, 0xa5, lens[i]);
		sim_write(e->sim, r.seg[i].addr, got, lens[i]);
	}
	d = run1(e, q, &r);
	if (!d.id_ok || d.len != total + 1 || d.status != ST_OK) {
		snprintf(why, sizeof(why), "read: n=%d id_ok=%d len=%u (want %llu) status=%u",
			 d.n, d.id_ok, d.len, (unsigned long long)total + 1, d.status);
		goto out;
	}
	for (int i = 0, off = 0; i < nseg; off += lens[i], i++)
		sim_read(e->sim, r.seg[i].addr, got + off, lens[i]);
	if (memcmp(got, pat, total)) {
		snprintf(why, sizeof(why), "read: data differs");
		goto out;
	}
	free(pat);
	free(got);
	return NULL;
out:
	free(pat);
	free(got);
	return why;
}

static const char *write_read_n(struct env *e, unsigned q, uint64_t sector,
				int nseg, uint32_t seglen, unsigned bflags,
				int layout, unsigned *spans)
{
	uint32_t lens[SIM_MAX_SEG];

	for (int i = 0; i < nseg; i++)
		lens[i] = seglen;
	return write_read(e, q, sector, lens, nseg, bflags, layout, spans);
}

#define ok_null(why, ...)                                                    \
	do {                                                                 \
		const char *w_ = (why);                                      \
		if (!ok(w_ == NULL, __VA_ARGS__))                            \
			diag("%s", w_);                                      \
	} while (0)

/* ------------------------------------------------- common request runs */

/* Post n reads of one sector each (no kick). */
static void post_reads(struct env *e, unsigned q, struct sim_blk *bs, int n,
		       uint64_t first_sector)
{
	for (int i = 0; i < n; i++) {
		blk_init(&bs[i], VIRTIO_BLK_T_IN, first_sector + i);
		bs[i].flags = SIM_BLK_DATA_IN;
		blk_add_new(e, &bs[i], 512);
		sim_blk_post(e->sim, q, &bs[i]);
	}
}

/* Take every used entry; returns how many. */
static int drain(struct env *e, unsigned q)
{
	int n = 0;

	while (sim_get_used(e->sim, q, NULL, NULL))
		n++;
	return n;
}

#endif
