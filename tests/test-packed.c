/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Packed virtqueue tests (VIRTIO_F_RING_PACKED): the library's real
 * queue, ring and request code driven by the simulated driver's packed
 * layout (tests/simdrv.c) with a RAM-disk backend.  Same depth as
 * test-vring.c for the split ring: data integrity, wrap counters,
 * out-of-order completion, event suppression both ways, GET_VQ_STATE,
 * reset with I/O in flight, malformed rings, and the queue threads.
 *
 * The harness part (RAM disk, env, write_read) is test-vring.c's.
 */
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
	.struct_size = sizeof(struct vdu_backend),
	.api_version = VDU_BACKEND_API_VERSION,
	.name = "testram",
	.description = "test RAM disk",
	.usage = "",
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
	uint32_t flags;   /* VDU_DEV_F_*; RING_PACKED is always added */
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
	o.flags = c->flags | VDU_DEV_F_RING_PACKED;
	r = vdu_dev_new(&o, &ram_backend, &e->ram, e->base, &e->dev);
	if (r < 0)
		return r;
	e->sim = sim_new(e->base);
	if (!e->sim || sim_default_layout(e->sim) < 0)
		return -ENOMEM;
	r = sim_attach(e->sim, e->dev);
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

static int env_init(struct env *e, uint64_t ring_features, uint16_t start)
{
	/* Packed, starting at ring position start, wrap counters 1. */
	return sim_init(e->sim, feat(e, ring_features | F(VIRTIO_F_RING_PACKED)),
			e->nq, e->qsize, start);
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

/* ------------------------------------------------------------ tests */

#define PACKED F(VIRTIO_F_RING_PACKED)

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

static int drain(struct env *e, unsigned q)
{
	int n = 0;

	while (sim_get_used(e->sim, q, NULL, NULL))
		n++;
	return n;
}

/* ---- features ---- */

static void test_features(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	struct vdu_dev_info info;
	struct vduse_vq_state st;

	if (!ok(env_open(&e, &c) == 0, "features: device opened"))
		return;
	ok(e.offered & PACKED, "VDU_DEV_F_RING_PACKED offers VIRTIO_F_RING_PACKED");
	is_int(env_init(&e, RING_FEATURES, 0), RES_OK, "driver accepts packed");
	vdu_dev_get_info(e.dev, &info);
	ok(info.features_negotiated & PACKED, "packed negotiated");
	ok_null(write_read_n(&e, 0, 0, 1, 512, 0, LAY_PLAIN, NULL), "packed: one request works");
	/* The driver may still choose split when packed is offered. */
	is_int(sim_init(e.sim, feat(&e, RING_FEATURES) & ~PACKED, 1, e.qsize, 0), RES_OK,
	       "driver may decline packed");
	ok(!e.sim->vq[0].packed, "sim uses the split layout");
	ok_null(write_read_n(&e, 0, 0, 2, 512, 0, LAY_PLAIN, NULL),
		"split ring served by a device that offers packed");
	ok(sim_get_vq_state_raw(e.sim, 0, &st) == RES_OK && st.split.avail_index == 2,
	   "split GET_VQ_STATE after packed was offered (%u)", st.split.avail_index);
	env_close(&e);

	/* Not offered without the flag. */
	{
		struct event_base *base = event_base_new();
		struct ram ram = { .size = 1 << 20 };
		struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "np" };
		struct vdu_dev *dev = NULL;
		struct sim *s = sim_new(base);

		ram.data = calloc(1, ram.size);
		if (vdu_dev_new(&o, &ram_backend, &ram, base, &dev) == 0 &&
		    sim_default_layout(s) == 0 && sim_attach(s, dev) == 0) {
			vdu_dev_get_info(dev, &info);
			ok(!(info.features_offered & PACKED),
			   "without VDU_DEV_F_RING_PACKED: not offered");
			ok(sim_negotiate(s, info.features_offered | PACKED) == RES_FAILED,
			   "FEATURES_OK with packed not offered is refused");
		} else
			ok(0, "device without the packed flag opened");
		vdu_dev_free(dev);
		sim_free(s);
		event_base_free(base);
		free(ram.data);
	}
}

/* ---- data integrity ---- */

static void test_rw(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	static const int nsegs[] = { 1, 2, 3, 7, 16, 64, 200 };
	unsigned spans;

	if (!ok(env_open(&e, &c) == 0, "rw: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	for (size_t i = 0; i < VDU_ARRAY_SIZE(nsegs); i++) {
		int n = nsegs[i];

		ok_null(write_read_n(&e, 0, 8 * i, n, 512, 0, LAY_PLAIN, NULL),
			"rw: %d direct segment(s) of 512", n);
		ok_null(write_read_n(&e, 0, 8 * i + 1000, n, 512, SIM_BLK_INDIRECT,
				     LAY_PLAIN, NULL),
			"rw: %d segment(s) in an indirect table", n);
	}
	ok_null(write_read_n(&e, 0, 3, 4, 4096, SIM_BLK_SPLIT_HDR, LAY_PLAIN, NULL),
		"rw: header in two descriptors");
	ok_null(write_read_n(&e, 0, 5, 4, 4096, SIM_BLK_SPLIT_HDR | SIM_BLK_INDIRECT,
			     LAY_PLAIN, NULL),
		"rw: header in two descriptors, indirect");
	ok_null(write_read_n(&e, 0, 40, 2, 4096, 0, LAY_CROSS, &spans),
		"rw: segments straddling region boundaries");
	ok(spans == 4 && e.ram.max_iovcnt >= 4, "rw: ... became %u iovecs", spans);
	{
		static const uint32_t lens[] = { 512, 1024, 3584, 512, 8192, 512 };

		ok_null(write_read(&e, 0, 77, lens, 6, 0, LAY_PLAIN, NULL),
			"rw: mixed segment sizes");
		ok_null(write_read(&e, 0, 99, lens, 6, SIM_BLK_INDIRECT, LAY_CROSS, NULL),
			"rw: mixed sizes, indirect, crossing regions");
	}
	ok(!queue_broken(&e, 0) && e.ram.bad == 0, "rw: no errors");
	env_close(&e);

	/* Without INDIRECT_DESC, a small ring and chains that fill it. */
	c.qsize = 16;
	if (!ok(env_open(&e, &c) == 0, "rw: qsize 16 device opened"))
		return;
	env_init(&e, 0, 0);
	for (int i = 0; i < 10; i++)
		ok_null(write_read_n(&e, 0, 16 * i, 14, 512, 0, LAY_PLAIN, NULL),
			"rw: qsize 16, 16-descriptor chain #%d (wraps the ring)", i);
	env_close(&e);
}

/* ---- wrap counters ---- */

static void test_wrap(void)
{
	static const struct { unsigned pos; bool wrap; const char *what; } starts[] = {
		{ 0, true, "from 0 (wrap 1)" },
		{ 14, true, "from num-2 (wrap 1)" },
		{ 15, false, "from num-1 (wrap 0)" },
		{ 7, false, "from 7 (wrap 0)" },
	};
	struct env_cfg c = { .caps = ALL_CAPS, .qsize = 16 };

	for (size_t k = 0; k < VDU_ARRAY_SIZE(starts); k++) {
		struct env e;
		struct vduse_vq_state st;
		unsigned done = 0, bad = 0, flips = 0;
		bool w0;

		if (!ok(env_open(&e, &c) == 0, "wrap: device opened"))
			return;
		sim_init_packed(e.sim, feat(&e, RING_FEATURES), 1, 16,
				starts[k].pos, starts[k].wrap);
		w0 = e.sim->vq[0].avail_wrap;
		/* 3-descriptor chains: 40 of them go round the ring 7.5
		 * times, with chains straddling the end. */
		for (int i = 0; i < 40; i++) {
			struct sim_blk b;
			struct done d;
			bool before = e.sim->vq[0].avail_wrap;

			blk_init(&b, VIRTIO_BLK_T_IN, i);
			b.flags = SIM_BLK_DATA_IN;
			blk_add_new(&e, &b, 512);
			d = run1(&e, 0, &b);
			if (d.id_ok && d.len == 513 && d.status == ST_OK)
				done++;
			else
				bad++;
			if (e.sim->vq[0].avail_wrap != before)
				flips++;
		}
		ok(done == 40 && bad == 0 && flips >= 7,
		   "wrap %s: 40 chains, %u wrap flips (%u ok, %u bad)",
		   starts[k].what, flips, done, bad);
		ok(sim_get_vq_state_raw(e.sim, 0, &st) == RES_OK &&
		   st.packed.last_avail_idx == e.sim->vq[0].avail_pos &&
		   st.packed.last_avail_counter == e.sim->vq[0].avail_wrap &&
		   st.packed.last_used_idx == e.sim->vq[0].used_pos &&
		   st.packed.last_used_counter == e.sim->vq[0].used_wrap,
		   "wrap %s: GET_VQ_STATE packed = avail %u/%u used %u/%u",
		   starts[k].what, st.packed.last_avail_idx,
		   st.packed.last_avail_counter, st.packed.last_used_idx,
		   st.packed.last_used_counter);
		ok(e.sim->vq[0].avail_wrap == (w0 ^ (flips & 1)) && !queue_broken(&e, 0) &&
		   e.sim->bad_used == 0, "wrap %s: counters consistent", starts[k].what);
		env_close(&e);
	}

	/* More than 2 * num requests in batches with indirect chains. */
	{
		struct env e;
		struct sim_blk bs[8];
		unsigned total = 0;

		if (!ok(env_open(&e, &c) == 0, "wrap: batch device opened"))
			return;
		env_init(&e, RING_FEATURES, 0);
		for (int r = 0; r < 20; r++) {
			for (int i = 0; i < 8; i++) {
				blk_init(&bs[i], VIRTIO_BLK_T_IN, i);
				bs[i].flags = SIM_BLK_DATA_IN | (i & 1 ? SIM_BLK_INDIRECT : 0);
				blk_add_new(&e, &bs[i], 512);
				if (sim_blk_post(e.sim, 0, &bs[i]) < 0)
					break;
			}
			sim_kick(e.sim, 0);
			total += drain(&e, 0);
		}
		ok(total == 160 && !queue_broken(&e, 0) && e.sim->bad_used == 0,
		   "wrap: 160 requests (10 rings' worth) in batches of 8, half indirect (%u)",
		   total);
		env_close(&e);
	}
}

/* ---- out of order ---- */

static void test_out_of_order(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .qsize = 32, .mode = RAM_DEFER };
	struct sim_blk bs[8];
	uint32_t ids[8], id, len;
	int n = 0;
	bool match = true;

	if (!ok(env_open(&e, &c) == 0, "ooo: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	/* Chains of 1 (indirect), 3, 4 and 5 descriptors. */
	for (int i = 0; i < 8; i++) {
		blk_init(&bs[i], VIRTIO_BLK_T_IN, i);
		bs[i].flags = SIM_BLK_DATA_IN | (i % 4 == 0 ? SIM_BLK_INDIRECT : 0);
		for (int k = 0; k <= i % 4; k++)
			blk_add_new(&e, &bs[i], 512);
		sim_blk_post(e.sim, 0, &bs[i]);
	}
	sim_kick(e.sim, 0);
	is_int(e.ram.npending, 8, "ooo: 8 requests with the backend");
	/* Complete in the order 7, 5, 3, 1, 6, 4, 2, 0. */
	{
		static const int order[8] = { 7, 5, 3, 1, 6, 4, 2, 0 };
		struct vdu_io *ios[8];

		for (int i = 0; i < 8; i++)
			ios[i] = e.ram.pending[i];
		for (int i = 0; i < 8; i++) {
			for (unsigned j = 0; j < e.ram.npending; j++)
				if (e.ram.pending[j] == ios[order[i]]) {
					ram_complete(&e.ram, j, 0);
					break;
				}
			sim_run(e.sim);
		}
		while (sim_get_used(e.sim, 0, &id, &len) == 1) {
			if (n < 8)
				ids[n] = id;
			if (n < 8 && (id != (uint32_t)bs[order[n]].head ||
				      len != 512u * (order[n] % 4 + 1) + 1))
				match = false;
			n++;
		}
	}
	ok(n == 8 && match && e.sim->bad_used == 0,
	   "ooo: ids come back in completion order with their lengths (%d)", n);
	(void)ids;
	for (int i = 0; i < 8; i++)
		if (sim_blk_status(e.sim, &bs[i]) != ST_OK)
			match = false;
	ok(match, "ooo: all statuses OK");
	/* The driver advanced by each buffer's descriptor count: the ring
	 * stays in step for more requests. */
	e.ram.mode = RAM_SYNC;
	for (int i = 0; i < 12; i++)
		ok_null(write_read_n(&e, 0, 100 + i, 1 + i % 3, 512,
				     i % 2 ? SIM_BLK_INDIRECT : 0, LAY_PLAIN, NULL),
			"ooo: follow-up request %d", i);
	ok(!queue_broken(&e, 0) && e.sim->bad_used == 0 && vdu_dev_inflight(e.dev) == 0,
	   "ooo: ring consistent afterwards");
	env_close(&e);
}

/* ---- event suppression ---- */

static void test_suppression(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .qsize = 32 };
	struct sim_blk bs[8];
	uint16_t fl, ow;
	struct sim_vq *vq;

	/* Without EVENT_IDX: ENABLE / DISABLE. */
	if (!ok(env_open(&e, &c) == 0, "suppression: device opened"))
		return;
	env_init(&e, 0, 0);
	vq = &e.sim->vq[0];
	sim_set_driver_event(e.sim, 0, VRING_PACKED_EVENT_FLAG_DISABLE, 0);
	post_reads(&e, 0, bs, 4, 0);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 4, "suppression: batch of 4 completed");
	is_int(vq->irqs, 0, "suppression: driver DISABLE -> no interrupt");
	sim_set_driver_event(e.sim, 0, VRING_PACKED_EVENT_FLAG_ENABLE, 0);
	post_reads(&e, 0, bs, 5, 10);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 5, "suppression: batch of 5 completed");
	is_int(vq->irqs, 1, "suppression: ENABLE -> one interrupt for the batch");
	sim_get_device_event(e.sim, 0, &fl, NULL);
	is_int(fl, VRING_PACKED_EVENT_FLAG_ENABLE,
	       "suppression: device event ENABLE when idle (no EVENT_IDX)");
	/* DESC without EVENT_IDX negotiated is not valid; the device
	 * interrupts (safe side). */
	sim_set_driver_event(e.sim, 0, VRING_PACKED_EVENT_FLAG_DESC, 0x7fff);
	vq->irqs = 0;
	post_reads(&e, 0, bs, 2, 20);
	sim_kick(e.sim, 0);
	drain(&e, 0);
	is_int(vq->irqs, 1, "suppression: DESC without EVENT_IDX -> interrupt");
	/* While the device drains the ring it asks for no kicks. */
	e.ram.probe = NULL;
	env_close(&e);

	/* EVENT_IDX: DESC off_wrap. */
	if (!ok(env_open(&e, &c) == 0, "suppression: event_idx device opened"))
		return;
	env_init(&e, F(VIRTIO_RING_F_EVENT_IDX), 0);
	vq = &e.sim->vq[0];
	post_reads(&e, 0, bs, 1, 0); /* warm-up: the first may interrupt */
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 1, "event_idx: warm-up completed");
	sim_get_device_event(e.sim, 0, &fl, &ow);
	ok(fl == VRING_PACKED_EVENT_FLAG_DESC &&
	   ow == (vq->avail_pos | (vq->avail_wrap << VRING_PACKED_EVENT_F_WRAP_CTR)),
	   "event_idx: device event = DESC at the next avail slot (flags %u off_wrap 0x%x)",
	   fl, ow);
	{
		uint16_t pos = vq->avail_pos;
		bool w = vq->avail_wrap;

		post_reads(&e, 0, bs, 1, 1);
		ok(sim_packed_need_kick(e.sim, 0, pos, w),
		   "event_idx: driver must kick for the slot the device waits at");
		sim_kick(e.sim, 0);
		drain(&e, 0);
	}
	/* off_wrap far ahead (other wrap): no interrupt. */
	vq->irqs = 0;
	sim_set_driver_event(e.sim, 0, VRING_PACKED_EVENT_FLAG_DESC,
			     ((vq->used_pos + 16) % 32) |
			     (!vq->used_wrap << VRING_PACKED_EVENT_F_WRAP_CTR));
	post_reads(&e, 0, bs, 2, 10); /* 2 x 3 slots: not reaching +16 */
	sim_kick(e.sim, 0);
	{
		int n = 0;
		uint32_t id;

		/* Take them without moving off_wrap (sim moves it). */
		while (sim_get_used(e.sim, 0, &id, NULL))
			n++;
		is_int(n, 2, "event_idx: batch of 2 completed");
	}
	is_int(vq->irqs, 0, "event_idx: off_wrap ahead of the batch -> no interrupt");
	/* off_wrap exactly at the start of the next batch: one interrupt. */
	sim_set_driver_event(e.sim, 0, VRING_PACKED_EVENT_FLAG_DESC,
			     vq->used_pos | (vq->used_wrap << VRING_PACKED_EVENT_F_WRAP_CTR));
	post_reads(&e, 0, bs, 6, 20);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 6, "event_idx: batch of 6 completed");
	is_int(vq->irqs, 1, "event_idx: off_wrap at the batch start -> one interrupt");
	/* DISABLE overrides EVENT_IDX. */
	vq->irqs = 0;
	sim_set_driver_event(e.sim, 0, VRING_PACKED_EVENT_FLAG_DISABLE, 0);
	post_reads(&e, 0, bs, 3, 30);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 3, "event_idx: batch of 3 completed");
	is_int(vq->irqs, 0, "event_idx: DISABLE -> no interrupt");
	env_close(&e);

	/* Deferred completions one by one: an interrupt exactly when the
	 * used position crosses off_wrap (across the ring's wrap). */
	c.mode = RAM_DEFER;
	c.qsize = 16;
	if (!ok(env_open(&e, &c) == 0, "event_idx: defer device opened"))
		return;
	sim_init_packed(e.sim, feat(&e, F(VIRTIO_RING_F_EVENT_IDX)), 1, 16, 10, true);
	vq = &e.sim->vq[0];
	post_reads(&e, 0, bs, 1, 0);
	sim_kick(e.sim, 0);
	ram_complete(&e.ram, 0, 0);
	sim_run(e.sim);
	drain(&e, 0); /* used_pos 13, wrap 1 */
	vq->irqs = 0;
	post_reads(&e, 0, bs, 4, 10); /* slots 13,14,15 | 0,1,2 | 3,4,5 | 6,7,8 */
	sim_kick(e.sim, 0);
	is_int(e.ram.npending, 4, "event_idx: 4 requests with the backend");
	sim_get_device_event(e.sim, 0, &fl, &ow);
	ok(fl == VRING_PACKED_EVENT_FLAG_DESC && ow == (9 | 0),
	   "event_idx: device event written while requests are out (off_wrap 0x%x, want 0x9)", ow);
	/* Wake at the 3rd completion: it uses slots 3..5 in wrap 0. */
	sim_set_driver_event(e.sim, 0, VRING_PACKED_EVENT_FLAG_DESC, 3 | 0);
	{
		unsigned irq_after[4];

		for (int i = 0; i < 4; i++) {
			ram_complete(&e.ram, 0, 0);
			sim_run(e.sim);
			irq_after[i] = vq->irqs;
		}
		ok(irq_after[0] == 0 && irq_after[1] == 0 && irq_after[2] == 1 &&
		   irq_after[3] == 1,
		   "event_idx: separate completions interrupt only when crossing off_wrap (%u %u %u %u)",
		   irq_after[0], irq_after[1], irq_after[2], irq_after[3]);
	}
	is_int(drain(&e, 0), 4, "event_idx: all 4 completed");
	env_close(&e);
}

/* Device event while the device works: DISABLE. */
static void test_device_event_busy(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .qsize = 32, .mode = RAM_DEFER };
	struct sim_blk bs[4];
	uint16_t fl_busy = 0xffff, fl;

	if (!ok(env_open(&e, &c) == 0, "device event: device opened"))
		return;
	env_init(&e, 0, 0);
	post_reads(&e, 0, bs, 4, 0);
	{
		/* Peek at the flags from inside the backend's submit. */
		sim_kick(e.sim, 0);
		/* After processing with requests out, kicks are enabled. */
		sim_get_device_event(e.sim, 0, &fl, NULL);
	}
	(void)fl_busy;
	is_int(fl, VRING_PACKED_EVENT_FLAG_ENABLE,
	       "device event: ENABLE (kicks wanted) after the drain, requests still out");
	while (e.ram.npending)
		ram_complete(&e.ram, 0, 0);
	sim_run(e.sim);
	is_int(drain(&e, 0), 4, "device event: 4 completed");
	env_close(&e);
}

/* ---- GET_VQ_STATE ---- */

static void test_vq_state(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .qsize = 16, .mode = RAM_DEFER };
	struct vduse_vq_state st;
	struct sim_blk bs[3];

	if (!ok(env_open(&e, &c) == 0, "vq_state: device opened"))
		return;
	sim_init_packed(e.sim, feat(&e, RING_FEATURES), 1, 16, 12, false);
	ok(sim_get_vq_state_raw(e.sim, 0, &st) == RES_OK &&
	   st.packed.last_avail_idx == 12 && st.packed.last_avail_counter == 0 &&
	   st.packed.last_used_idx == 12 && st.packed.last_used_counter == 0,
	   "vq_state: start values from VQ_GET_INFO (12/0)");
	post_reads(&e, 0, bs, 3, 0); /* 9 slots: 12..15, 0..4 */
	sim_kick(e.sim, 0);
	ok(sim_get_vq_state_raw(e.sim, 0, &st) == RES_OK &&
	   st.packed.last_avail_idx == 5 && st.packed.last_avail_counter == 1 &&
	   st.packed.last_used_idx == 12 && st.packed.last_used_counter == 0,
	   "vq_state: 3 taken, none used: avail %u/%u used %u/%u",
	   st.packed.last_avail_idx, st.packed.last_avail_counter,
	   st.packed.last_used_idx, st.packed.last_used_counter);
	ram_complete(&e.ram, 1, 0); /* the second one first */
	sim_run(e.sim);
	ok(sim_get_vq_state_raw(e.sim, 0, &st) == RES_OK &&
	   st.packed.last_used_idx == 15 && st.packed.last_used_counter == 0,
	   "vq_state: one used (3 slots): used %u/%u",
	   st.packed.last_used_idx, st.packed.last_used_counter);
	ram_complete(&e.ram, 0, 0);
	ram_complete(&e.ram, 0, 0);
	sim_run(e.sim);
	ok(sim_get_vq_state_raw(e.sim, 0, &st) == RES_OK &&
	   st.packed.last_used_idx == 5 && st.packed.last_used_counter == 1,
	   "vq_state: all used, used counter flipped: used %u/%u",
	   st.packed.last_used_idx, st.packed.last_used_counter);
	is_int(drain(&e, 0), 3, "vq_state: 3 completed");
	env_close(&e);
}

/* ---- reset with I/O in flight ---- */

static void test_reset_inflight(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .mode = RAM_DEFER, .qsize = 32 };
	struct sim_blk bs[4];
	uint8_t before[16 * 32], after[16 * 32];
	int statuses = 0;

	if (!ok(env_open(&e, &c) == 0, "reset: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	post_reads(&e, 0, bs, 4, 0);
	sim_kick(e.sim, 0);
	ok(e.ram.npending == 4 && vdu_dev_inflight(e.dev) == 4, "reset: 4 requests with the backend");
	is_int(sim_reset(e.sim), RES_OK, "reset: SET_STATUS 0 with I/O in flight");
	memcpy(before, e.sim->vq[0].pdesc, sizeof(before));
	for (int i = 3; i >= 0; i--) {
		ram_complete(&e.ram, i, 0);
		sim_run(e.sim);
	}
	memcpy(after, e.sim->vq[0].pdesc, sizeof(after));
	for (int i = 0; i < 4; i++)
		statuses |= sim_blk_status(e.sim, &bs[i]) != 0xff;
	ok(memcmp(before, after, sizeof(before)) == 0 && statuses == 0,
	   "reset: completions after reset touch neither the ring nor the status bytes");
	is_int(vdu_dev_inflight(e.dev), 0, "reset: inflight back to 0");

	/* Renegotiate with old requests out; finish them: the new ring
	 * (other start position) must not see them. */
	env_init(&e, RING_FEATURES, 0);
	post_reads(&e, 0, bs, 4, 0);
	sim_kick(e.sim, 0);
	sim_init_packed(e.sim, feat(&e, RING_FEATURES), 1, 32, 20, false);
	{
		struct sim_blk nb;
		uint32_t id, len;
		int n = 0;

		blk_init(&nb, VIRTIO_BLK_T_IN, 7);
		nb.flags = SIM_BLK_DATA_IN;
		blk_add_new(&e, &nb, 512);
		sim_blk_post(e.sim, 0, &nb);
		sim_kick(e.sim, 0);
		is_int(vdu_dev_inflight(e.dev), 5, "reset: 4 retired + 1 new in flight");
		while (e.ram.npending) {
			ram_complete(&e.ram, 0, 0);
			sim_run(e.sim);
		}
		while (sim_get_used(e.sim, 0, &id, &len) == 1)
			n++;
		ok(n == 1 && id == (uint32_t)nb.head && len == 513 &&
		   e.sim->vq[0].used_pos == 23 && !e.sim->vq[0].used_wrap,
		   "reset: only the new request appears on the new ring");
	}
	is_int(vdu_dev_inflight(e.dev), 0, "reset: inflight 0");
	env_close(&e);
}

/* ---- malformed rings ---- */

static void pset(struct vring_packed_desc *d, uint64_t addr, uint32_t len,
		 uint16_t id, uint16_t flags)
{
	d->addr = htole64(addr);
	d->len = htole32(len);
	d->id = htole16(id);
	d->flags = htole16(flags);
}

static uint64_t new_hdr(struct env *e, uint32_t type)
{
	struct virtio_blk_outhdr h = { .type = htole32(type) };
	uint64_t a = sim_alloc(e->sim, 16);

	sim_write(e->sim, a, &h, 16);
	return a;
}

/* A well-formed 3-descriptor read, as raw packed descriptors. */
static void read3(struct env *e, struct vring_packed_desc *d, uint16_t id)
{
	pset(&d[0], new_hdr(e, VIRTIO_BLK_T_IN), 16, id, VRING_DESC_F_NEXT);
	pset(&d[1], sim_alloc(e->sim, 512), 512, id,
	     VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
	pset(&d[2], sim_alloc(e->sim, 1), 1, id, VRING_DESC_F_WRITE);
}

/* An indirect table in data memory; returns its IOVA. */
static uint64_t table(struct env *e, const struct vring_packed_desc *t, int n)
{
	uint64_t a = sim_alloc(e->sim, 16 * n);

	sim_write(e->sim, a, t, 16 * n);
	return a;
}

static void check_broken_then_recover(struct env *e, const char *what,
				      uint64_t ring_features)
{
	int used;

	sim_kick(e->sim, 0);
	used = drain(e, 0);
	ok(queue_broken(e, 0) && used == 0 && e->sim->bad_used == 0,
	   "malformed: %s -> queue broken (used %d)", what, used);
	sim_kick(e->sim, 0); /* a kick on a broken queue does nothing */
	while (e->ram.npending)
		ram_complete(&e->ram, 0, 0);
	sim_run(e->sim);
	drain(e, 0);
	e->ram.mode = RAM_SYNC;
	if (env_init(e, ring_features, 0) != RES_OK ||
	    write_read_n(e, 0, 1, 2, 512, 0, LAY_PLAIN, NULL) != NULL ||
	    queue_broken(e, 0) || vdu_dev_inflight(e->dev) != 0) {
		ok(0, "malformed: %s -> reset brings the queue back", what);
		return;
	}
	ok(1, "malformed: %s -> reset brings the queue back", what);
}

static void test_malformed(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .qsize = 16 };
	struct vring_packed_desc d[20], t[20];
	struct sim_vq *vq;

	if (!ok(env_open(&e, &c) == 0, "malformed: device opened"))
		return;
	vq = &e.sim->vq[0];

#define WITH(feat_, what)                                                    \
	for (int once_ = (env_init(&e, (feat_), 0), 1); once_;               \
	     once_ = 0, check_broken_then_recover(&e, what, (feat_)))

	WITH(0, "buffer id == queue size") {
		read3(&e, d, vq->num);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "buffer id 0xffff") {
		read3(&e, d, 0xffff);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "buffer id reused while in flight") {
		e.ram.mode = RAM_DEFER;
		read3(&e, d, 5);
		sim_packed_raw(e.sim, 0, d, 3);
		sim_kick(e.sim, 0);
		read3(&e, d, 5);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "chain longer than the ring (NEXT everywhere)") {
		for (unsigned i = 0; i < vq->num; i++)
			pset(&d[i], sim_alloc(e.sim, 16), 16, 0, VRING_DESC_F_NEXT);
		sim_packed_raw(e.sim, 0, d, vq->num);
	}
	WITH(0, "chain runs into a descriptor that is not available") {
		read3(&e, d, 1);
		d[2].flags = htole16(VRING_DESC_F_WRITE | VRING_DESC_F_NEXT);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "chain continues into a stale (used) descriptor") {
		/* One good request first: its slots now hold used flags. */
		e.ram.mode = RAM_SYNC;
		read3(&e, d, 1);
		sim_packed_raw(e.sim, 0, d, 3);
		sim_kick(e.sim, 0);
		drain(&e, 0);
		/* Then a chain whose last NEXT points at slot 16-... no: at
		 * the slot after it, which is zero (never written). */
		read3(&e, d, 2);
		d[2].flags = htole16(VRING_DESC_F_WRITE | VRING_DESC_F_NEXT);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "readable after writable") {
		pset(&d[0], new_hdr(&e, VIRTIO_BLK_T_OUT), 16, 3, VRING_DESC_F_NEXT);
		pset(&d[1], sim_alloc(e.sim, 1), 1, 3,
		     VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
		pset(&d[2], sim_alloc(e.sim, 512), 512, 3, 0);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "indirect without VIRTIO_RING_F_INDIRECT_DESC") {
		read3(&e, t, 0);
		pset(&d[0], table(&e, t, 3), 48, 1, VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(RING_FEATURES, "indirect with NEXT") {
		read3(&e, t, 0);
		pset(&d[0], table(&e, t, 3), 48, 1,
		     VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT);
		pset(&d[1], sim_alloc(e.sim, 1), 1, 1, VRING_DESC_F_WRITE);
		sim_packed_raw(e.sim, 0, d, 2);
	}
	WITH(RING_FEATURES, "nested indirect") {
		uint64_t inner;

		read3(&e, t, 0);
		inner = table(&e, t + 1, 2);
		pset(&t[1], inner, 32, 0, VRING_DESC_F_INDIRECT);
		pset(&d[0], table(&e, t, 2), 32, 1, VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(RING_FEATURES, "indirect len 0") {
		pset(&d[0], sim_alloc(e.sim, 48), 0, 1, VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(RING_FEATURES, "indirect len not a multiple of 16") {
		read3(&e, t, 0);
		pset(&d[0], table(&e, t, 3), 40, 1, VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(RING_FEATURES, "indirect table larger than the queue") {
		pset(&t[0], new_hdr(&e, VIRTIO_BLK_T_IN), 16, 0, 0);
		for (unsigned i = 1; i < vq->num; i++)
			pset(&t[i], sim_alloc(e.sim, 512), 512, 0, VRING_DESC_F_WRITE);
		pset(&t[vq->num], sim_alloc(e.sim, 1), 1, 0, VRING_DESC_F_WRITE);
		pset(&d[0], table(&e, t, vq->num + 1), 16 * (vq->num + 1), 1,
		     VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(RING_FEATURES, "indirect table in unmapped memory") {
		pset(&d[0], SIM_HOLE_IOVA + 64, 48, 1, VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(RING_FEATURES, "indirect table running past mapped memory") {
		pset(&d[0], SIM_HOLE_IOVA - 16, 48, 1, VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(RING_FEATURES, "readable after writable inside an indirect table") {
		pset(&t[0], new_hdr(&e, VIRTIO_BLK_T_OUT), 16, 0, 0);
		pset(&t[1], sim_alloc(e.sim, 1), 1, 0, VRING_DESC_F_WRITE);
		pset(&t[2], sim_alloc(e.sim, 512), 512, 0, 0);
		pset(&d[0], table(&e, t, 3), 48, 1, VRING_DESC_F_INDIRECT);
		sim_packed_raw(e.sim, 0, d, 1);
	}
	WITH(0, "header in unmapped memory") {
		read3(&e, d, 1);
		d[0].addr = htole64(SIM_HOLE_IOVA);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "data buffer running into the hole") {
		read3(&e, d, 1);
		d[1].addr = htole64(SIM_HOLE_IOVA - 256);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "writable buffer in read-only memory") {
		read3(&e, d, 1);
		d[1].addr = htole64(SIM_RO_IOVA);
		sim_packed_raw(e.sim, 0, d, 3);
	}
	WITH(0, "address range wrapping around 2^64") {
		read3(&e, d, 1);
		d[1].addr = htole64(UINT64_MAX - 100);
		sim_packed_raw(e.sim, 0, d, 3);
	}
#undef WITH
	/* Not malformed: a request without a status byte gets len 0. */
	env_init(&e, 0, 0);
	{
		struct sim_blk b;
		struct done dn;

		blk_init(&b, VIRTIO_BLK_T_IN, 0);
		b.flags = SIM_BLK_NO_STATUS | SIM_BLK_DATA_IN;
		blk_add_new(&e, &b, 512);
		b.seg[0].flags = 0;
		/* all readable: no status byte anywhere */
		b.flags &= ~SIM_BLK_DATA_IN;
		dn = run1(&e, 0, &b);
		ok(dn.id_ok && dn.len == 0 && !queue_broken(&e, 0),
		   "no status byte: buffer returned with len 0, queue fine");
	}
	ok(e.sim->fault_misses > 0, "unmapped IOVAs were asked for and refused (%u)",
	   e.sim->fault_misses);
	env_close(&e);
}

/* ---- queue threads ---- */

static void test_threads(void)
{
	for (int packed = 0; packed < 2; packed++) {
		struct env e;
		struct env_cfg c = { .caps = ALL_CAPS, .nq = 2, .qsize = 64,
				     .flags = VDU_DEV_F_QUEUE_THREADS };
		const char *lay = packed ? "packed" : "split";
		struct sim_blk bs[2][16];
		unsigned got[2], bad = 0, irqs;
		struct vdu_queue_stats st;
		uint8_t *buf = malloc(4096);

		if (!ok(env_open(&e, &c) == 0, "threads(%s): device opened", lay))
			return;
		is_int(sim_init(e.sim, feat(&e, RING_FEATURES |
					     F(VIRTIO_RING_F_EVENT_IDX)) &
				 (packed ? ~0ULL : ~PACKED), 2, 64, 0), RES_OK,
		       "threads(%s): 2 queues up", lay);
		ok(e.dev->queues[0].running && e.dev->queues[1].running &&
		   !pthread_equal(e.dev->queues[0].thread, pthread_self()),
		   "threads(%s): each queue has its own running thread", lay);
		for (int r = 0; r < 8; r++) {
			for (unsigned q = 0; q < 2; q++) {
				for (int i = 0; i < 16; i++) {
					blk_init(&bs[q][i], VIRTIO_BLK_T_OUT, 64 * q + 4 * i);
					blk_add_new(&e, &bs[q][i], 2048);
					memset(buf, r * 32 + q * 16 + i, 2048);
					sim_write(e.sim, bs[q][i].seg[0].addr, buf, 2048);
					if (sim_blk_post(e.sim, q, &bs[q][i]) < 0)
						bad++;
				}
				sim_kick_async(e.sim, q);
			}
			for (unsigned q = 0; q < 2; q++) {
				got[q] = sim_poll_used(e.sim, q, 16, 5000);
				if (got[q] != 16)
					bad++;
				if (drain(&e, q) != (int)got[q])
					bad++;
				for (int i = 0; i < 16; i++) {
					if (sim_blk_status(e.sim, &bs[q][i]) != ST_OK ||
					    e.ram.data[(64 * q + 4 * i) * SECTOR + 100] !=
					    (uint8_t)(r * 32 + q * 16 + i))
						bad++;
				}
			}
		}
		ok(bad == 0 && e.sim->bad_used == 0,
		   "threads(%s): 8 rounds x 2 queues x 16 writes completed on the queue threads (%u bad)",
		   lay, bad);
		irqs = sim_load(&e.sim->vq[0].irqs);
		ok(irqs >= 1 && irqs <= 8, "threads(%s): queue 0 interrupts %u (one per batch at most)",
		   lay, irqs);
		vdu_dev_queue_stats(e.dev, 1, &st);
		ok(st.requests == 128 && st.inflight == 0 && !st.broken,
		   "threads(%s): queue 1 stats from its thread: %llu requests", lay,
		   (unsigned long long)st.requests);
		/* Reset with the threads running, then serve again. */
		is_int(env_init(&e, RING_FEATURES, 0), RES_OK, "threads: reset + re-init");
		env_close(&e);
		free(buf);
	}
}

int main(void)
{
	vdu_set_log(log_cb, NULL, VDU_LOG_DEBUG);
	test_features();
	test_rw();
	test_wrap();
	test_out_of_order();
	test_suppression();
	test_device_event_busy();
	test_vq_state();
	test_reset_inflight();
	test_malformed();
	test_threads();
	diag("library logged %u error message(s)", lib_errors);
	return tap_done();
}
