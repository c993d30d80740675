/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The bounce buffer in our memory (bounce.c), against the simulated
 * kernel side of VDUSE_IOTLB_GET_INFO / REG_UMEM / DEREG_UMEM: when it is
 * registered (backend caps and opts.bounce), that the request that first
 * touches it is served from it with its data intact, that a reset gives
 * it back (data in use copied back) and the next cycle registers again,
 * one registration for several queue threads, and that a kernel that
 * refuses (no ioctl, memlock limit) leaves the kernel's pages serving
 * every request.
 */
#define BLKTEST_DEV_FLAGS 0
#include "blktest.h"

#define WAIT_MS 5000
#define BOUNCE_LEN (1u << 20) /* IOVA 0 up to the rings at 1 MiB */

struct benv {
	struct event_base *base;
	struct ram ram;
	struct vdu_dev *dev;
	struct sim *sim;
	uint64_t offered;
};

static int benv_open(struct benv *e, uint32_t caps, unsigned bounce,
		     unsigned nq, uint32_t flags, int umem_err, bool add_bounce)
{
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "bouncetest" };
	struct vdu_dev_info info;
	int r;

	memset(e, 0, sizeof(*e));
	e->base = event_base_new();
	e->ram.size = 4 << 20;
	e->ram.data = calloc(1, e->ram.size);
	e->ram.caps = caps;
	e->ram.mode = RAM_SYNC;
	o.num_queues = nq;
	o.flags = flags;
	o.bounce = bounce;
	r = vdu_dev_new(&o, &ram_backend, &e->ram, e->base, &e->dev);
	if (r < 0)
		return r;
	e->sim = sim_new(e->base);
	if (!e->sim || sim_default_layout(e->sim) < 0 ||
	    (add_bounce && !sim_add_bounce(e->sim, BOUNCE_LEN)))
		return -ENOMEM;
	e->sim->umem_err = umem_err;
	r = sim_attach(e->sim, e->dev);
	if (r < 0)
		return r;
	vdu_dev_get_info(e->dev, &info);
	e->offered = info.features_offered & ~RING_FEATURES;
	return sim_init(e->sim, e->offered, nq, 256, 0) == RES_OK ? 0 : -EIO;
}

static void benv_close(struct benv *e)
{
	vdu_dev_free(e->dev);
	sim_free(e->sim);
	event_base_free(e->base);
	free(e->ram.data);
	memset(e, 0, sizeof(*e));
}

/* One request of len bytes at sector with its data at iova; status. */
static uint8_t rw(struct benv *e, unsigned q, uint32_t type, uint64_t sector,
		  uint64_t iova, uint32_t len)
{
	struct sim_blk b;
	uint32_t id, ulen;

	memset(&b, 0, sizeof(b));
	b.type = type;
	b.sector = sector;
	if (type == VIRTIO_BLK_T_IN)
		b.flags = SIM_BLK_DATA_IN;
	b.seg[0].addr = iova;
	b.seg[0].len = len;
	b.nseg = 1;
	if (sim_blk_post(e->sim, q, &b) < 0)
		return 0xed;
	sim_kick(e->sim, q);
	if (sim_wait_used(e->sim, q, 1, WAIT_MS) < 1)
		return 0xee;
	while (sim_get_used(e->sim, q, &id, &ulen))
		;
	return sim_blk_status(e->sim, &b);
}

static struct sim_region *bounce_reg(struct benv *e)
{
	return sim_region_of(e->sim, 0);
}

static struct vdu_bounce_info bounce_info(struct benv *e)
{
	struct vdu_bounce_info bi = { .struct_size = sizeof(bi) };

	if (vdu_dev_get_bounce(e->dev, &bi) < 0)
		bi.mode = 99;
	return bi;
}

/* The backend does direct I/O: our memory is registered at the first
 * request into the bounce buffer, holding the data the driver put there
 * before; reset copies back and unpins; the next cycle registers again. */
static void test_auto_direct(void)
{
	uint8_t *pat = malloc(8192), *got = malloc(8192);
	struct vdu_bounce_info bi;
	struct sim_region *br;
	struct benv e;

	pattern(pat, 8192, 17);
	if (!ok(benv_open(&e, VDU_CAP_DIRECT_IO, VDU_BOUNCE_AUTO, 1, 0, 0, true) == 0,
		"auto/direct: device up"))
		goto out;
	br = bounce_reg(&e);
	bi = bounce_info(&e);
	ok(bi.mode == VDU_BOUNCE_AUTO && bi.pinned == 0 && e.sim->umem_regs == 0,
	   "auto/direct: nothing registered before the first data (mode %u)", bi.mode);
	/* The driver's data lands in the kernel's pages first. */
	sim_write(e.sim, 4096, pat, 8192);
	is_int(rw(&e, 0, VIRTIO_BLK_T_OUT, 8, 4096, 8192), ST_OK, "auto/direct: write OK");
	is_int(e.sim->umem_regs, 1, "auto/direct: our memory registered once");
	ok(br->host != br->own, "auto/direct: the bounce buffer is now our memory");
	ok(memcmp(e.ram.data + 8 * SECTOR, pat, 8192) == 0,
	   "auto/direct: the backend got the data written before registration");
	bi = bounce_info(&e);
	ok(bi.mode == VDU_BOUNCE_USER && bi.size == BOUNCE_LEN && bi.pinned == BOUNCE_LEN &&
	   bi.fallback_err == 0, "auto/direct: info says user memory, %u KiB pinned (%llu)",
	   BOUNCE_LEN >> 10, (unsigned long long)bi.pinned);
	ok(bi.resident >= 8192 && bi.resident <= BOUNCE_LEN,
	   "auto/direct: resident bytes read from smaps (%llu)",
	   (unsigned long long)bi.resident);

	memset(got, 0, 8192);
	sim_write(e.sim, 65536, got, 8192);
	is_int(rw(&e, 0, VIRTIO_BLK_T_IN, 8, 65536, 8192), ST_OK, "auto/direct: read OK");
	sim_read(e.sim, 65536, got, 8192);
	ok(memcmp(got, pat, 8192) == 0, "auto/direct: read data in the driver's view");
	is_int(e.sim->umem_regs, 1, "auto/direct: still one registration");

	/* Reset: deregistered, the data in the buffer back in the kernel's
	 * pages, nothing pinned. */
	is_int(sim_reset(e.sim), RES_OK, "auto/direct: reset");
	is_int(e.sim->umem_deregs, 1, "auto/direct: reset deregistered");
	ok(br->host == br->own && memcmp(br->own + 65536, pat, 8192) == 0,
	   "auto/direct: ... and the kernel's pages got the data back");
	bi = bounce_info(&e);
	ok(bi.mode == VDU_BOUNCE_AUTO && bi.pinned == 0, "auto/direct: nothing pinned after reset");

	/* Next cycle: registered again at the first data. */
	is_int(sim_init(e.sim, e.offered, 1, 256, 0), RES_OK, "auto/direct: driver back");
	pattern(pat, 8192, 18);
	sim_write(e.sim, 4096, pat, 8192);
	is_int(rw(&e, 0, VIRTIO_BLK_T_OUT, 100, 4096, 8192), ST_OK, "auto/direct: write after reset OK");
	is_int(e.sim->umem_regs, 2, "auto/direct: registered again");
	ok(memcmp(e.ram.data + 100 * SECTOR, pat, 8192) == 0, "auto/direct: data intact");
	ok(lib_errors == 0, "auto/direct: no library errors");
out:
	benv_close(&e);
	/* Freeing the device deregistered the last registration. */
	free(pat);
	free(got);
}

/* Deregistering fails: the kernel may still use our pages, so the device
 * keeps serving the bounce buffer from them, and no data goes astray. */
static void test_dereg_fails(void)
{
	uint8_t pat[4096], got[4096];
	struct benv e;

	if (!ok(benv_open(&e, VDU_CAP_DIRECT_IO, VDU_BOUNCE_AUTO, 1, 0, 0, true) == 0,
		"dereg fails: device up"))
		goto out;
	pattern(pat, sizeof(pat), 77);
	sim_write(e.sim, 4096, pat, sizeof(pat));
	is_int(rw(&e, 0, VIRTIO_BLK_T_OUT, 0, 4096, sizeof(pat)), ST_OK, "dereg fails: write OK");
	e.sim->umem_dereg_err = -EINVAL;
	is_int(sim_init(e.sim, e.offered, 1, 256, 0), RES_OK, "dereg fails: reset, driver back");
	ok(bounce_reg(&e)->host != bounce_reg(&e)->own, "dereg fails: the kernel kept our pages");
	memset(got, 0, sizeof(got));
	sim_write(e.sim, 8192, got, sizeof(got));
	is_int(rw(&e, 0, VIRTIO_BLK_T_IN, 0, 8192, sizeof(got)), ST_OK, "dereg fails: read OK");
	sim_read(e.sim, 8192, got, sizeof(got));
	ok(memcmp(got, pat, sizeof(got)) == 0 && e.sim->umem_regs == 1,
	   "dereg fails: served from our pages, not registered twice");
	is_int(bounce_info(&e).mode, VDU_BOUNCE_USER, "dereg fails: info says user memory");
	e.sim->umem_dereg_err = 0;
out:
	benv_close(&e);
}

/* Whose memory, by mode and backend. */
static void test_modes(void)
{
	static const struct {
		uint32_t caps;
		unsigned mode;
		bool ours;
		const char *what;
	} c[] = {
		{ 0, VDU_BOUNCE_AUTO, false, "auto, backend without direct I/O" },
		{ 0, VDU_BOUNCE_USER, true, "user, backend without direct I/O" },
		{ VDU_CAP_DIRECT_IO, VDU_BOUNCE_KERNEL, false, "kernel, direct I/O backend" },
		{ VDU_CAP_DIRECT_IO, VDU_BOUNCE_USER, true, "user, direct I/O backend" },
	};

	for (unsigned i = 0; i < VDU_ARRAY_SIZE(c); i++) {
		uint8_t pat[4096];
		struct vdu_bounce_info bi;
		struct benv e;

		if (!ok(benv_open(&e, c[i].caps, c[i].mode, 1, 0, 0, true) == 0,
			"%s: device up", c[i].what)) {
			benv_close(&e);
			continue;
		}
		pattern(pat, sizeof(pat), i);
		sim_write(e.sim, 0, pat, sizeof(pat));
		is_int(rw(&e, 0, VIRTIO_BLK_T_OUT, 0, 0, sizeof(pat)), ST_OK,
		       "%s: write OK", c[i].what);
		ok(memcmp(e.ram.data, pat, sizeof(pat)) == 0, "%s: data OK", c[i].what);
		is_int(e.sim->umem_regs, c[i].ours ? 1 : 0, "%s: %s", c[i].what,
		       c[i].ours ? "registered" : "not registered");
		if (!c[i].ours)
			is_int(e.sim->umem_info_calls, 0, "%s: not even asked", c[i].what);
		bi = bounce_info(&e);
		is_int(bi.mode, c[i].ours ? VDU_BOUNCE_USER : VDU_BOUNCE_KERNEL,
		       "%s: info mode", c[i].what);
		benv_close(&e);
	}
}

/* The kernel will not take our memory: every request still succeeds on
 * its pages, and info says why. */
static void test_refused(void)
{
	static const int errs[] = { -ENOTTY, -ENOMEM, -EPERM };

	for (unsigned i = 0; i < VDU_ARRAY_SIZE(errs); i++) {
		uint8_t pat[4096], got[4096];
		struct vdu_bounce_info bi;
		struct benv e;
		unsigned before = lib_errors;

		if (!ok(benv_open(&e, VDU_CAP_DIRECT_IO, VDU_BOUNCE_AUTO, 1, 0, errs[i], true) == 0,
			"refused %d: device up", errs[i])) {
			benv_close(&e);
			continue;
		}
		pattern(pat, sizeof(pat), 40 + i);
		sim_write(e.sim, 8192, pat, sizeof(pat));
		is_int(rw(&e, 0, VIRTIO_BLK_T_OUT, 3, 8192, sizeof(pat)), ST_OK,
		       "refused %d: write OK on the kernel's pages", errs[i]);
		memset(got, 0, sizeof(got));
		sim_write(e.sim, 16384, got, sizeof(got));
		is_int(rw(&e, 0, VIRTIO_BLK_T_IN, 3, 16384, sizeof(got)), ST_OK,
		       "refused %d: read OK", errs[i]);
		sim_read(e.sim, 16384, got, sizeof(got));
		ok(memcmp(got, pat, sizeof(got)) == 0, "refused %d: data OK", errs[i]);
		bi = bounce_info(&e);
		ok(bi.mode == VDU_BOUNCE_KERNEL && bi.fallback_err == errs[i] && bi.pinned == 0,
		   "refused %d: info says kernel pages and why (%d)", errs[i], bi.fallback_err);
		ok(e.sim->umem_regs == 0 && lib_errors == before,
		   "refused %d: nothing registered, a warning not an error", errs[i]);
		/* After a reset: tried again, unless the kernel cannot. */
		{
			unsigned calls = e.sim->umem_info_calls;
			bool again = errs[i] == -ENOMEM;

			is_int(sim_init(e.sim, e.offered, 1, 256, 0), RES_OK,
			       "refused %d: reset, driver back", errs[i]);
			is_int(rw(&e, 0, VIRTIO_BLK_T_OUT, 3, 8192, sizeof(pat)), ST_OK,
			       "refused %d: write after the reset OK", errs[i]);
			ok((e.sim->umem_info_calls > calls) == again,
			   "refused %d: %s", errs[i], again ? "tried again" : "not tried again");
		}
		benv_close(&e);
	}
}

/* Requests outside the bounce buffer (a VM's memory through vhost-vdpa)
 * register nothing. */
static void test_no_bounce(void)
{
	struct vdu_bounce_info bi;
	struct benv e;
	uint64_t iova;

	if (!ok(benv_open(&e, VDU_CAP_DIRECT_IO, VDU_BOUNCE_AUTO, 1, 0, 0, false) == 0,
		"no bounce buffer: device up"))
		goto out;
	iova = sim_alloc(e.sim, 4096);
	is_int(rw(&e, 0, VIRTIO_BLK_T_OUT, 0, iova, 4096), ST_OK, "no bounce buffer: write OK");
	is_int(rw(&e, 0, VIRTIO_BLK_T_IN, 0, iova, 4096), ST_OK, "no bounce buffer: read OK");
	ok(e.sim->umem_info_calls > 0 && e.sim->umem_regs == 0,
	   "no bounce buffer: asked, nothing registered");
	bi = bounce_info(&e);
	ok(bi.mode == VDU_BOUNCE_AUTO && bi.pinned == 0, "no bounce buffer: info says not in use");
out:
	benv_close(&e);
}

/* Queue threads fault at once: one registration, both served from it. */
static void test_threads(void)
{
	struct benv e;
	uint8_t pat[2][4096];

	if (!ok(benv_open(&e, VDU_CAP_DIRECT_IO, VDU_BOUNCE_AUTO, 2,
			  VDU_DEV_F_QUEUE_THREADS, 0, true) == 0, "threads: device up"))
		goto out;
	for (int round = 0; round < 3; round++) {
		struct sim_blk b[2];

		for (unsigned q = 0; q < 2; q++) {
			pattern(pat[q], 4096, 60 + q + round * 2);
			sim_write(e.sim, 4096 + q * 65536, pat[q], 4096);
			memset(&b[q], 0, sizeof(b[q]));
			b[q].type = VIRTIO_BLK_T_OUT;
			b[q].sector = q * 64;
			b[q].seg[0].addr = 4096 + q * 65536;
			b[q].seg[0].len = 4096;
			b[q].nseg = 1;
			sim_blk_post(e.sim, q, &b[q]);
		}
		sim_kick(e.sim, 0);
		sim_kick(e.sim, 1);
		for (unsigned q = 0; q < 2; q++) {
			uint32_t id, len;

			ok(sim_wait_used(e.sim, q, 1, WAIT_MS) == 1 &&
			   sim_blk_status(e.sim, &b[q]) == ST_OK,
			   "threads: round %d queue %u write OK", round, q);
			while (sim_get_used(e.sim, q, &id, &len))
				;
			ok(memcmp(e.ram.data + q * 64 * SECTOR, pat[q], 4096) == 0,
			   "threads: round %d queue %u data OK", round, q);
		}
		is_int(e.sim->umem_regs, round + 1, "threads: round %d: one registration", round);
		is_int(sim_init(e.sim, e.offered, 2, 256, 0), RES_OK, "threads: reset, driver back");
		is_int(e.sim->umem_deregs, round + 1, "threads: round %d deregistered", round);
	}
out:
	benv_close(&e);
}

/* The info call's struct discipline; opts.bounce is checked. */
static void test_info_api(void)
{
	struct vdu_bounce_info bi = { .struct_size = 8 };
	struct benv e;

	if (!ok(benv_open(&e, 0, VDU_BOUNCE_AUTO, 1, 0, 0, true) == 0, "info: device up"))
		goto out;
	is_int(vdu_dev_get_bounce(e.dev, &bi), -EINVAL, "info: too small a struct_size");
	{
		struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "x", .bounce = 7 };
		struct vdu_dev *d = NULL;
		unsigned before = lib_errors;

		is_int(vdu_dev_new(&o, &ram_backend, &e.ram, e.base, &d), -EINVAL,
		       "info: unknown bounce mode refused");
		o.bounce = VDU_BOUNCE_USER;
		for (unsigned i = 0; i < 3; i++) {
			static const uint32_t bad[] = { 4096, (3u << 20) + 512, 2u << 30 };

			o.bounce_size = bad[i];
			is_int(vdu_dev_new(&o, &ram_backend, &e.ram, e.base, &d), -EINVAL,
			       "info: bounce size %u refused", bad[i]);
		}
		o.bounce_size = 4u << 20;
		is_int(vdu_dev_new(&o, &ram_backend, &e.ram, e.base, &d), 0,
		       "info: bounce size 4 MiB taken");
		vdu_dev_free(d);
		lib_errors = before;
	}
	bi = bounce_info(&e);
	is_int((int)bi.copied, 0, "info: nothing copied yet");
out:
	benv_close(&e);
}

int main(void)
{
	vdu_set_log(log_cb, NULL, VDU_LOG_DEBUG);
	test_auto_direct();
	test_dereg_fails();
	test_modes();
	test_refused();
	test_no_bounce();
	test_threads();
	test_info_api();
	return tap_done();
}
