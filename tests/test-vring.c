/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Ring + virtio-blk tests: the library's real queue, ring and request code
 * driven by the simulated driver in simdrv.c, with a RAM-disk backend.
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "simdrv.h"
#include "tap.h"

#define BLKTEST_DEV_FLAGS 0
#include "blktest.h"

static int env_init(struct env *e, uint64_t ring_features, uint16_t start)
{
	return sim_init(e->sim, feat(e, ring_features), e->nq, e->qsize, start);
}
static void test_dev_new(void)
{
	struct event_base *base = event_base_new();
	struct ram ram = { .size = 1 << 20 };
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "ok" };
	struct vdu_backend be = ram_backend;
	struct vdu_dev *dev = NULL;
	char longname[VDU_NAME_MAX + 2];
	int r;

	r = vdu_dev_new(&o, &ram_backend, &ram, base, &dev);
	is_int(r, 0, "dev_new: valid options accepted");
	vdu_dev_free(dev);
	dev = NULL;

#define REJECT(desc, expect_err)                                             \
	do {                                                                 \
		dev = NULL;                                                  \
		r = vdu_dev_new(&o, &be, &ram, base, &dev);                  \
		ok(r < 0 && dev == NULL && (!(expect_err) || r == (expect_err)), \
		   "dev_new rejects %s (r=%d)", desc, r);                    \
		if (dev)                                                     \
			vdu_dev_free(dev);                                   \
	} while (0)

	o.name = "";
	REJECT("empty name", -EINVAL);
	o.name = "a/b";
	REJECT("name with '/'", -EINVAL);
	o.name = "..";
	REJECT("name '..'", -EINVAL);
	o.name = NULL;
	REJECT("NULL name", -EINVAL);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	o.name = longname;
	REJECT("256-byte name", -EINVAL);
	o.name = "ok";

	o.queue_size = 100;
	REJECT("queue size 100 (not a power of two)", -EINVAL);
	o.queue_size = 3;
	REJECT("queue size 3", -EINVAL);
	o.queue_size = 2;
	REJECT("queue size 2 (below 4)", -EINVAL);
	o.queue_size = 65536;
	REJECT("queue size 65536 (above max)", -EINVAL);
	o.queue_size = 0;
	o.num_queues = VDU_QUEUES_MAX + 1;
	REJECT("too many queues", -EINVAL);
	o.num_queues = 0;
	o.serial = "123456789012345678901";
	REJECT("21-byte serial", -EINVAL);
	o.serial = "12345678901234567890";
	r = vdu_dev_new(&o, &be, &ram, base, &dev);
	is_int(r, 0, "dev_new accepts a 20-byte serial");
	vdu_dev_free(dev);
	o.serial = NULL;

	be.struct_size = 16;
	REJECT("backend with a short struct_size", -EPROTO);
	be = ram_backend;
	be.api_version = 0;
	REJECT("backend api_version 0", -EPROTO);
	be.api_version = VDU_BACKEND_API_VERSION + 1;
	REJECT("backend from a future API version", -EPROTO);
	be = ram_backend;
	be.submit = NULL;
	REJECT("backend without submit", -EINVAL);
	be = ram_backend;
	ram.size = 100;
	REJECT("backend smaller than one block", -EINVAL);
	ram.size = 1 << 20;
	o.struct_size = 4;
	REJECT("opts with a short struct_size", -EINVAL);
	o.struct_size = sizeof(o);
	event_base_free(base);
#undef REJECT
}

static void test_features(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	struct vdu_dev_info info;

	if (!ok(env_open(&e, &c) == 0, "features: device opened"))
		return;
	ok((e.offered & F(VIRTIO_F_VERSION_1)) && (e.offered & RING_FEATURES) == RING_FEATURES &&
	   !(e.offered & F(VIRTIO_BLK_F_RO)) && (e.offered & F(VIRTIO_BLK_F_FLUSH)),
	   "features: VERSION_1, EVENT_IDX, INDIRECT_DESC, FLUSH offered, RO not");
	is_int(sim_negotiate(e.sim, e.offered | F(VIRTIO_F_RING_PACKED)), RES_FAILED,
	       "FEATURES_OK with a feature not offered fails");
	vdu_dev_get_info(e.dev, &info);
	ok(info.features_negotiated == 0 &&
	   !(info.status & VIRTIO_CONFIG_S_FEATURES_OK),
	   "failed FEATURES_OK leaves status and features alone");
	sim_reset(e.sim);
	is_int(sim_negotiate(e.sim, e.offered & ~F(VIRTIO_F_VERSION_1)), RES_FAILED,
	       "FEATURES_OK without VERSION_1 fails");
	sim_reset(e.sim);
	is_int(sim_negotiate(e.sim, feat(&e, 0)), RES_OK, "FEATURES_OK with a subset succeeds");
	is_int(env_init(&e, 0, 0), RES_OK, "DRIVER_OK succeeds");
	vdu_dev_get_info(e.dev, &info);
	ok(info.features_negotiated == feat(&e, 0) &&
	   info.status == (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK),
	   "info reports negotiated features and status");
	is_int(e.ram.queue_opens, 1, "backend queue opened once");

	/* Rings the library cannot map: DRIVER_OK must fail cleanly. */
	sim_reset(e.sim);
	sim_negotiate(e.sim, feat(&e, 0));
	sim_setup_vq(e.sim, 0, e.qsize, 0);
	e.sim->vq[0].used_iova = SIM_HOLE_IOVA;
	is_int(sim_set_status(e.sim, 0xf), RES_FAILED,
	       "DRIVER_OK with the used ring in unmapped IOVA fails");
	e.sim->vq[0].used_iova = SIM_RO_IOVA;
	is_int(sim_set_status(e.sim, 0xf), RES_FAILED,
	       "DRIVER_OK with the used ring in read-only memory fails");
	is_int(env_init(&e, 0, 0), RES_OK, "then a proper DRIVER_OK works");
	ok_null(write_read_n(&e, 0, 0, 1, 512, 0, LAY_PLAIN, NULL),
		"and I/O works");
	env_close(&e);
}

static void test_rw(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	static const int counts[] = { 1, 2, 3, 7, 16, 64, 128 };
	unsigned spans;
	uint32_t seg_max;

	if (!ok(env_open(&e, &c) == 0, "rw: device opened"))
		return;
	seg_max = e.dev->seg_max;
	is_int(seg_max, 254, "seg_max is 254 for queue size 256");
	is_int(env_init(&e, RING_FEATURES, 0), RES_OK, "rw: driver ok (indirect)");
	for (unsigned i = 0; i < VDU_ARRAY_SIZE(counts); i++)
		ok_null(write_read_n(&e, 0, i * 3, counts[i], 512, 0, LAY_PLAIN, NULL),
			"rw: %d x 512-byte segments, direct", counts[i]);
	ok_null(write_read_n(&e, 0, 100, seg_max, 512, 0, LAY_PLAIN, NULL),
		"rw: seg_max (%u) segments, direct", seg_max);
	ok_null(write_read_n(&e, 0, 300, seg_max, 512, SIM_BLK_INDIRECT, LAY_PLAIN, NULL),
		"rw: seg_max (%u) segments, indirect", seg_max);
	ok_null(write_read_n(&e, 0, 7, 1, 4096, SIM_BLK_INDIRECT, LAY_PLAIN, NULL),
		"rw: 1 x 4096, indirect");
	ok_null(write_read_n(&e, 0, 9, 16, 1024, SIM_BLK_INDIRECT, LAY_PLAIN, NULL),
		"rw: 16 x 1024, indirect");

	e.ram.max_iovcnt = 0;
	ok_null(write_read_n(&e, 0, 40, 1, 8192, 0, LAY_CROSS, &spans),
		"rw: one 8 KiB segment crossing a region boundary");
	ok(spans == 2 && e.ram.max_iovcnt == 2,
	   "rw: crossing segment reached the backend as 2 iovecs (spans %u, iovcnt %d)",
	   spans, e.ram.max_iovcnt);
	e.ram.max_iovcnt = 0;
	ok_null(write_read_n(&e, 0, 60, 8, 1024, 0, LAY_CROSS, &spans),
		"rw: 8 segments, each crossing a boundary");
	ok(spans == 16 && e.ram.max_iovcnt == 16,
	   "rw: 8 crossing segments gave 16 iovecs (spans %u, iovcnt %d)",
	   spans, e.ram.max_iovcnt);
	ok_null(write_read_n(&e, 0, 80, 12, 512, SIM_BLK_INDIRECT, LAY_CROSS, &spans),
		"rw: indirect with crossing segments");
	ok_null(write_read_n(&e, 0, 120, 4, 512, SIM_BLK_SPLIT_HDR, LAY_PLAIN, NULL),
		"rw: header split across two descriptors");
	ok_null(write_read_n(&e, 0, 130, 4, 512, SIM_BLK_SPLIT_HDR | SIM_BLK_INDIRECT,
			     LAY_PLAIN, NULL),
		"rw: split header inside an indirect table");
	{
		static const uint32_t odd[] = { 100, 412, 1000, 24, 1, 511 };
		ok_null(write_read(&e, 0, 150, odd, 6, 0, LAY_PLAIN, NULL),
			"rw: segments of odd sizes summing to 2048");
		ok_null(write_read(&e, 0, 160, odd, 6, SIM_BLK_INDIRECT, LAY_CROSS, NULL),
			"rw: odd sizes, indirect, crossing");
	}
	{
		struct vdu_queue_stats st;

		vdu_dev_queue_stats(e.dev, 0, &st);
		ok(st.requests > 0 && st.read_bytes == st.write_bytes && st.errors == 0 &&
		   st.inflight == 0 && st.enabled == 1 && st.broken == 0,
		   "rw: queue stats consistent (requests %llu, errors %llu)",
		   (unsigned long long)st.requests, (unsigned long long)st.errors);
	}
	is_int(e.ram.bad, 0, "rw: backend never saw a bad I/O");
	is_int(e.sim->bad_used, 0, "rw: no unknown used ids");
	env_close(&e);

	/* Queue size 16 (seg_max 14), rings without the optional features. */
	c.qsize = 16;
	if (!ok(env_open(&e, &c) == 0, "rw: qsize 16 device opened"))
		return;
	is_int(env_init(&e, 0, 0), RES_OK, "rw: driver ok, no ring features");
	for (int n = 1; n <= (int)e.dev->seg_max; n++)
		ok_null(write_read_n(&e, 0, n * 20, n, 512, 0, LAY_PLAIN, NULL),
			"rw(q16): %d segment(s)", n);
	env_close(&e);
}

static void test_get_id(void)
{
	struct env e;
	struct env_cfg c = { .serial = "SER-123" };
	struct sim_blk b;
	struct done d;
	uint8_t buf[64], want[20] = "SER-123";

	if (!ok(env_open(&e, &c) == 0, "get_id: device opened"))
		return;
	env_init(&e, 0, 0);
	blk_init(&b, VIRTIO_BLK_T_GET_ID, 0);
	b.flags = SIM_BLK_DATA_IN;
	blk_add_new(&e, &b, 20);
	memset(buf, 0xcc, sizeof(buf));
	sim_write(e.sim, b.seg[0].addr, buf, 20);
	d = run1(&e, 0, &b);
	sim_read(e.sim, b.seg[0].addr, buf, 20);
	ok(d.id_ok && d.status == ST_OK && d.len == 21 && memcmp(buf, want, 20) == 0,
	   "GET_ID 20-byte buffer: serial zero padded, used len 21 (len %u)", d.len);

	blk_init(&b, VIRTIO_BLK_T_GET_ID, 0);
	b.flags = SIM_BLK_DATA_IN;
	blk_add_new(&e, &b, 4);
	memset(buf, 0xcc, sizeof(buf));
	sim_write(e.sim, b.seg[0].addr, buf, 8);
	d = run1(&e, 0, &b);
	sim_read(e.sim, b.seg[0].addr, buf, 8);
	ok(d.id_ok && d.status == ST_OK && d.len == 5 && memcmp(buf, "SER-", 4) == 0 &&
	   buf[4] == 0xcc,
	   "GET_ID 4-byte buffer: truncated, used len 5 (len %u)", d.len);

	blk_init(&b, VIRTIO_BLK_T_GET_ID, 0);
	b.flags = SIM_BLK_DATA_IN;
	blk_add_new(&e, &b, 64);
	memset(buf, 0xcc, sizeof(buf));
	sim_write(e.sim, b.seg[0].addr, buf, 64);
	d = run1(&e, 0, &b);
	sim_read(e.sim, b.seg[0].addr, buf, 64);
	ok(d.id_ok && d.status == ST_OK && d.len == 21 && memcmp(buf, want, 20) == 0 &&
	   buf[20] == 0xcc,
	   "GET_ID 64-byte buffer: 20 bytes written, used len 21 (len %u)", d.len);

	/* Split over two descriptors, across a region boundary. */
	blk_init(&b, VIRTIO_BLK_T_GET_ID, 0);
	b.flags = SIM_BLK_DATA_IN;
	blk_add(&e, &b, sim_alloc_cross(e.sim, 10, 3), 10);
	blk_add_new(&e, &b, 10);
	d = run1(&e, 0, &b);
	sim_read(e.sim, b.seg[0].addr, buf, 10);
	sim_read(e.sim, b.seg[1].addr, buf + 10, 10);
	ok(d.id_ok && d.status == ST_OK && d.len == 21 && memcmp(buf, want, 20) == 0,
	   "GET_ID into two segments, one crossing a boundary");
	env_close(&e);

	/* Default serial: the device name; long names are truncated to 20. */
	c.serial = NULL;
	c.name = "a-rather-long-device-name";
	if (!ok(env_open(&e, &c) == 0, "get_id: second device opened"))
		return;
	env_init(&e, 0, 0);
	blk_init(&b, VIRTIO_BLK_T_GET_ID, 0);
	b.flags = SIM_BLK_DATA_IN;
	blk_add_new(&e, &b, 20);
	d = run1(&e, 0, &b);
	sim_read(e.sim, b.seg[0].addr, buf, 20);
	ok(d.status == ST_OK && d.len == 21 && memcmp(buf, "a-rather-long-device", 20) == 0,
	   "GET_ID defaults to the (truncated) device name");
	env_close(&e);
}

/* Single-range DISCARD / WRITE_ZEROES request. */
static struct done range_req(struct env *e, uint32_t type, uint64_t sector,
			     uint32_t nsec, uint32_t flags, int nranges)
{
	struct sim_blk b;
	uint8_t rg[16 * 4];

	blk_init(&b, type, 0);
	for (int i = 0; i < nranges; i++) {
		uint64_t s = htole64(sector);
		uint32_t n = htole32(nsec), f = htole32(flags);

		memcpy(rg + 16 * i, &s, 8);
		memcpy(rg + 16 * i + 8, &n, 4);
		memcpy(rg + 16 * i + 12, &f, 4);
	}
	blk_add_new(e, &b, 16 * nranges);
	sim_write(e->sim, b.seg[0].addr, rg, 16 * nranges);
	return run1(e, 0, &b);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_commands(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	struct sim_blk b;
	struct done d;
	unsigned sub;

	if (!ok(env_open(&e, &c) == 0, "commands: device opened"))
		return;
	env_init(&e, 0, 0);

	blk_init(&b, VIRTIO_BLK_T_FLUSH, 0);
	sub = e.ram.by_op[VDU_IO_FLUSH];
	d = run1(&e, 0, &b);
	ok(d.id_ok && d.len == 1 && d.status == ST_OK &&
	   e.ram.by_op[VDU_IO_FLUSH] == sub + 1,
	   "FLUSH: OK, used len 1, backend flushed");

	memset(e.ram.data, 0x5a, e.ram.size);
	d = range_req(&e, VIRTIO_BLK_T_DISCARD, 8, 16, 0, 1);
	ok(d.id_ok && d.len == 1 && d.status == ST_OK && e.ram.last_op == VDU_IO_DISCARD &&
	   e.ram.last_off == 8 * SECTOR && e.ram.last_len == 16 * SECTOR &&
	   all_zero(e.ram.data + 8 * SECTOR, 16 * SECTOR) && e.ram.data[24 * SECTOR] == 0x5a,
	   "DISCARD: OK, backend got offset/len");
	sub = e.ram.submits;
	d = range_req(&e, VIRTIO_BLK_T_DISCARD, 8, 16, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, 1);
	ok(d.len == 1 && d.status == ST_UNSUPP && e.ram.submits == sub,
	   "DISCARD with the UNMAP flag: UNSUPP");
	d = range_req(&e, VIRTIO_BLK_T_DISCARD, 8, 16, 0, 2);
	ok(d.status == ST_UNSUPP && e.ram.submits == sub, "DISCARD with 2 segments: UNSUPP");
	d = range_req(&e, VIRTIO_BLK_T_DISCARD, 2040, 16, 0, 1);
	ok(d.status == ST_IOERR && e.ram.submits == sub, "DISCARD beyond capacity: IOERR");
	d = range_req(&e, VIRTIO_BLK_T_DISCARD, 0, (32u << 20) / SECTOR + 1, 0, 1);
	ok(d.status == ST_IOERR && e.ram.submits == sub,
	   "DISCARD larger than max_discard_sectors: IOERR");

	memset(e.ram.data, 0x5a, e.ram.size);
	d = range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 100, 4, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, 1);
	ok(d.id_ok && d.len == 1 && d.status == ST_OK &&
	   e.ram.last_op == VDU_IO_WRITE_ZEROES && e.ram.last_flags == VDU_IO_F_UNMAP &&
	   e.ram.last_off == 100 * SECTOR && e.ram.last_len == 4 * SECTOR &&
	   all_zero(e.ram.data + 100 * SECTOR, 4 * SECTOR),
	   "WRITE_ZEROES with UNMAP: backend sees VDU_IO_F_UNMAP");
	d = range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 200, 4, 0, 1);
	ok(d.status == ST_OK && e.ram.last_op == VDU_IO_WRITE_ZEROES && e.ram.last_flags == 0,
	   "WRITE_ZEROES without UNMAP: flags 0");
	sub = e.ram.submits;
	d = range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 200, 4, 2, 1);
	ok(d.status == ST_UNSUPP && e.ram.submits == sub, "WRITE_ZEROES reserved flag bit: UNSUPP");
	d = range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 200, 4, 0x80000000u, 1);
	ok(d.status == ST_UNSUPP && e.ram.submits == sub, "WRITE_ZEROES flag bit 31: UNSUPP");
	d = range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 200, 4, 0, 2);
	ok(d.status == ST_UNSUPP && e.ram.submits == sub, "WRITE_ZEROES with 2 segments: UNSUPP");
	d = range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, UINT64_MAX - 1, 4, 0, 1);
	ok(d.status == ST_IOERR && e.ram.submits == sub, "WRITE_ZEROES sector overflow: IOERR");

	blk_init(&b, 99, 0);
	b.flags = SIM_BLK_DATA_IN;
	blk_add_new(&e, &b, 512);
	d = run1(&e, 0, &b);
	ok(d.id_ok && d.len == 1 && d.status == ST_UNSUPP && e.ram.submits == sub,
	   "unknown request type: UNSUPP, used len 1");
	blk_init(&b, VIRTIO_BLK_T_SCSI_CMD, 0);
	d = run1(&e, 0, &b);
	ok(d.status == ST_UNSUPP, "SCSI_CMD: UNSUPP");
	blk_init(&b, VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_BARRIER, 0);
	blk_add_new(&e, &b, 512);
	d = run1(&e, 0, &b);
	ok(d.status == ST_UNSUPP && e.ram.submits == sub, "OUT|BARRIER: UNSUPP");

	/* Zero-length read/write: nothing to do, OK. */
	blk_init(&b, VIRTIO_BLK_T_IN, 5);
	d = run1(&e, 0, &b);
	ok(d.status == ST_OK && d.len == 1 && e.ram.submits == sub, "zero-length IN: OK, len 1");
	env_close(&e);

	/* FLUSH/DISCARD/WRITE_ZEROES not negotiated -> UNSUPP */
	if (!ok(env_open(&e, &c) == 0, "commands: second device opened"))
		return;
	sim_init(e.sim, feat(&e, 0) & ~(F(VIRTIO_BLK_F_FLUSH) | F(VIRTIO_BLK_F_DISCARD) |
					 F(VIRTIO_BLK_F_WRITE_ZEROES)), 1, e.qsize, 0);
	blk_init(&b, VIRTIO_BLK_T_FLUSH, 0);
	d = run1(&e, 0, &b);
	ok(d.status == ST_UNSUPP && e.ram.submits == 0, "FLUSH without VIRTIO_BLK_F_FLUSH: UNSUPP");
	d = range_req(&e, VIRTIO_BLK_T_DISCARD, 0, 1, 0, 1);
	ok(d.status == ST_UNSUPP && e.ram.submits == 0, "DISCARD not negotiated: UNSUPP");
	d = range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 0, 1, 0, 1);
	ok(d.status == ST_UNSUPP && e.ram.submits == 0, "WRITE_ZEROES not negotiated: UNSUPP");
	env_close(&e);

	/* A backend without DISCARD/WRITE_ZEROES/FLUSH: features not offered. */
	c.caps = 0;
	if (!ok(env_open(&e, &c) == 0, "commands: plain backend opened"))
		return;
	ok(!(e.offered & (F(VIRTIO_BLK_F_FLUSH) | F(VIRTIO_BLK_F_DISCARD) |
			  F(VIRTIO_BLK_F_WRITE_ZEROES))),
	   "no FLUSH/DISCARD/WRITE_ZEROES offered without backend caps");
	env_close(&e);
}

static void test_read_only(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .read_only = 1 };
	struct sim_blk b;
	struct done d;
	struct vdu_dev_info info;

	if (!ok(env_open(&e, &c) == 0, "read-only: device opened"))
		return;
	vdu_dev_get_info(e.dev, &info);
	ok((e.offered & F(VIRTIO_BLK_F_RO)) && info.read_only &&
	   !(e.offered & (F(VIRTIO_BLK_F_DISCARD) | F(VIRTIO_BLK_F_WRITE_ZEROES))),
	   "read-only: VIRTIO_BLK_F_RO offered, no DISCARD/WRITE_ZEROES");
	env_init(&e, 0, 0);
	memset(e.ram.data, 0x77, 4096);
	blk_init(&b, VIRTIO_BLK_T_OUT, 0);
	blk_add_new(&e, &b, 512);
	d = run1(&e, 0, &b);
	ok(d.id_ok && d.len == 1 && d.status == ST_IOERR && e.ram.submits == 0 &&
	   e.ram.data[0] == 0x77,
	   "read-only: OUT gives IOERR, backend untouched");
	blk_init(&b, VIRTIO_BLK_T_IN, 0);
	b.flags = SIM_BLK_DATA_IN;
	blk_add_new(&e, &b, 512);
	d = run1(&e, 0, &b);
	ok(d.id_ok && d.len == 513 && d.status == ST_OK, "read-only: IN works");
	env_close(&e);

	/* Read-only by backend capability. */
	c.read_only = 0;
	c.caps = VDU_CAP_READ_ONLY;
	if (!ok(env_open(&e, &c) == 0, "read-only cap: device opened"))
		return;
	ok(e.offered & F(VIRTIO_BLK_F_RO), "VDU_CAP_READ_ONLY offers VIRTIO_BLK_F_RO");
	env_close(&e);
}

static void test_ranges(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .size = 1 << 20 };
	const uint64_t cap = (1 << 20) / SECTOR;
	struct sim_blk b;
	struct done d;
	unsigned sub;

	if (!ok(env_open(&e, &c) == 0, "ranges: device opened"))
		return;
	env_init(&e, 0, 0);
	ok_null(write_read_n(&e, 0, cap - 1, 1, 512, 0, LAY_PLAIN, NULL),
		"range: last sector readable and writable");
	ok_null(write_read_n(&e, 0, cap - 8, 2, 2048, 0, LAY_PLAIN, NULL),
		"range: request ending exactly at capacity");

	sub = e.ram.submits;
	for (int w = 0; w < 2; w++) {
		static const struct { uint64_t sector; uint32_t len; const char *what; } t[] = {
			{ (1 << 20) / SECTOR, 512, "sector == capacity" },
			{ (1 << 20) / SECTOR - 1, 1024, "runs one sector past the end" },
			{ UINT64_MAX, 512, "sector UINT64_MAX" },
			{ UINT64_MAX - 1, 2048, "sector + count overflows" },
			{ UINT64_MAX / 512 + 1, 512, "byte offset overflows" },
			{ 0, 100, "length 100 (not a multiple of 512)" },
			{ 0, 513, "length 513" },
		};
		for (unsigned i = 0; i < VDU_ARRAY_SIZE(t); i++) {
			blk_init(&b, w ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, t[i].sector);
			b.flags = w ? 0 : SIM_BLK_DATA_IN;
			blk_add_new(&e, &b, t[i].len);
			d = run1(&e, 0, &b);
			ok(d.id_ok && d.len == 1 && d.status == ST_IOERR,
			   "range: %s %s -> IOERR, used len 1 (status %u len %u)",
			   w ? "OUT" : "IN", t[i].what, d.status, d.len);
		}
	}
	is_int(e.ram.submits, sub, "range: no bad request reached the backend");

	/* Header shorter than 16 bytes. */
	blk_init(&b, VIRTIO_BLK_T_IN, 0);
	b.flags = SIM_BLK_DATA_IN;
	b.hdr_len = 12;
	blk_add_new(&e, &b, 512);
	d = run1(&e, 0, &b);
	ok(d.id_ok && d.status == ST_IOERR && d.len == 1 && !queue_broken(&e, 0),
	   "12-byte header: IOERR, queue fine");
	blk_init(&b, VIRTIO_BLK_T_IN, 0);
	b.flags = SIM_BLK_DATA_IN | SIM_BLK_SPLIT_HDR;
	b.hdr_len = 15;
	blk_add_new(&e, &b, 512);
	d = run1(&e, 0, &b);
	ok(d.id_ok && d.status == ST_IOERR && d.len == 1, "15-byte header in 2 descriptors: IOERR");
	is_int(e.ram.submits, sub, "short headers never reached the backend");
	/* Status in the same descriptor as read data: last writable byte. */
	{
		uint64_t buf = sim_alloc(e.sim, 513);
		struct sim_desc dd[2];
		uint8_t st = 0xff, data[512];
		struct virtio_blk_outhdr h = { .type = htole32(VIRTIO_BLK_T_IN),
					       .sector = htole64(3) };
		uint64_t hiova = sim_alloc(e.sim, 16);
		uint32_t id, len;
		int head;

		pattern(e.ram.data + 3 * SECTOR, 512, 99);
		sim_write(e.sim, hiova, &h, 16);
		sim_write(e.sim, buf + 512, &st, 1);
		dd[0] = (struct sim_desc){ hiova, 16, 0 };
		dd[1] = (struct sim_desc){ buf, 513, VRING_DESC_F_WRITE };
		head = sim_post(e.sim, 0, dd, 2, false);
		sim_kick(e.sim, 0);
		ok(sim_get_used(e.sim, 0, &id, &len) == 1 && id == (uint32_t)head && len == 513,
		   "data and status in one 513-byte descriptor: used len 513");
		sim_read(e.sim, buf, data, 512);
		sim_read(e.sim, buf + 512, &st, 1);
		ok(st == ST_OK && memcmp(data, e.ram.data + 3 * SECTOR, 512) == 0,
		   "  ... status in the last byte, data intact");
	}
	env_close(&e);
}

static void test_event_idx(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	struct sim_blk bs[8];
	uint16_t uidx, state;

	if (!ok(env_open(&e, &c) == 0, "event_idx: device opened"))
		return;
	env_init(&e, F(VIRTIO_RING_F_EVENT_IDX), 0);
	/* warm-up: the first publish may always interrupt */
	post_reads(&e, 0, bs, 1, 0);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 1, "event_idx: warm-up request completed");

	uidx = sim_used_idx(e.sim, 0);
	sim_set_used_event(e.sim, 0, uidx + 1000);
	e.sim->vq[0].irqs = 0;
	post_reads(&e, 0, bs, 4, 10);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 4, "event_idx: batch of 4 completed");
	is_int(e.sim->vq[0].irqs, 0, "event_idx: used_event far ahead -> no interrupt");

	uidx = sim_used_idx(e.sim, 0);
	sim_set_used_event(e.sim, 0, uidx);
	post_reads(&e, 0, bs, 6, 20);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 6, "event_idx: batch of 6 completed");
	is_int(e.sim->vq[0].irqs, 1, "event_idx: used_event = current idx -> exactly one interrupt per batch");
	is_int(sim_avail_event(e.sim, 0), e.sim->vq[0].avail_shadow,
	       "event_idx: avail_event == device's last_avail");
	ok(sim_get_vq_state(e.sim, 0, &state) == RES_OK && state == e.sim->vq[0].avail_shadow,
	   "GET_VQ_STATE returns last_avail (%u)", state);

	/* used_event in the middle of a batch: one interrupt as well. */
	uidx = sim_used_idx(e.sim, 0);
	sim_set_used_event(e.sim, 0, uidx + 2);
	e.sim->vq[0].irqs = 0;
	post_reads(&e, 0, bs, 5, 30);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 5, "event_idx: batch of 5 completed");
	is_int(e.sim->vq[0].irqs, 1, "event_idx: used_event inside the batch -> one interrupt");

	/* used_event already passed: no interrupt for the next batch.  (Our
	 * driver moved used_event while draining; put it back.) */
	sim_set_used_event(e.sim, 0, uidx + 2);
	e.sim->vq[0].irqs = 0;
	post_reads(&e, 0, bs, 3, 40);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 3, "event_idx: next batch of 3 completed");
	is_int(e.sim->vq[0].irqs, 0, "event_idx: used_event already passed -> no interrupt");

	/* Deferred completions published one by one: one interrupt when the
	 * used index crosses used_event, none for the others. */
	env_close(&e);
	c.mode = RAM_DEFER;
	if (!ok(env_open(&e, &c) == 0, "event_idx: defer device opened"))
		return;
	env_init(&e, F(VIRTIO_RING_F_EVENT_IDX), 0);
	post_reads(&e, 0, bs, 1, 0);
	sim_kick(e.sim, 0);
	ram_complete(&e.ram, 0, 0);
	sim_run(e.sim);
	drain(&e, 0);
	uidx = sim_used_idx(e.sim, 0);
	sim_set_used_event(e.sim, 0, uidx + 2); /* wake at the 3rd completion */
	e.sim->vq[0].irqs = 0;
	post_reads(&e, 0, bs, 4, 10);
	sim_kick(e.sim, 0);
	is_int(e.ram.npending, 4, "event_idx: 4 requests with the backend");
	is_int(sim_avail_event(e.sim, 0), e.sim->vq[0].avail_shadow,
	       "event_idx: avail_event updated while requests are in flight");
	{
		unsigned irq_after[4];

		for (int i = 0; i < 4; i++) {
			ram_complete(&e.ram, 0, 0);
			sim_run(e.sim);
			irq_after[i] = e.sim->vq[0].irqs;
		}
		ok(irq_after[0] == 0 && irq_after[1] == 0 && irq_after[2] == 1 &&
		   irq_after[3] == 1,
		   "event_idx: separate completions interrupt only at used_event (%u %u %u %u)",
		   irq_after[0], irq_after[1], irq_after[2], irq_after[3]);
	}
	is_int(drain(&e, 0), 4, "event_idx: all 4 completed");
	env_close(&e);
}

static void test_flags_notify(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	struct sim_blk bs[8];

	if (!ok(env_open(&e, &c) == 0, "flags: device opened"))
		return;
	env_init(&e, 0, 0);
	e.ram.probe = e.sim;
	sim_set_avail_flags(e.sim, 0, VRING_AVAIL_F_NO_INTERRUPT);
	post_reads(&e, 0, bs, 4, 0);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 4, "flags: batch of 4 completed");
	is_int(e.sim->vq[0].irqs, 0, "flags: VRING_AVAIL_F_NO_INTERRUPT suppresses the interrupt");
	sim_set_avail_flags(e.sim, 0, 0);
	post_reads(&e, 0, bs, 5, 10);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 5, "flags: batch of 5 completed");
	is_int(e.sim->vq[0].irqs, 1, "flags: one interrupt for the batch of 5");
	ok(e.ram.probe_n == 9 && e.ram.probe_flags_or == VRING_USED_F_NO_NOTIFY,
	   "flags: used->flags NO_NOTIFY while the device drains the ring");
	is_int(sim_used_flags(e.sim, 0), 0, "flags: NO_NOTIFY cleared when the device is idle");
	e.ram.probe = NULL;
	env_close(&e);

	/* With EVENT_IDX the device never sets NO_NOTIFY. */
	if (!ok(env_open(&e, &c) == 0, "flags: event_idx device opened"))
		return;
	env_init(&e, F(VIRTIO_RING_F_EVENT_IDX), 0);
	e.ram.probe = e.sim;
	post_reads(&e, 0, bs, 3, 0);
	sim_kick(e.sim, 0);
	drain(&e, 0);
	ok(e.ram.probe_n == 3 && e.ram.probe_flags_or == 0 && sim_used_flags(e.sim, 0) == 0,
	   "flags: with EVENT_IDX used->flags stays 0");
	e.ram.probe = NULL;
	env_close(&e);
}

static void test_wrap(void)
{
	for (int ev = 0; ev < 2; ev++) {
		struct env e;
		struct env_cfg c = { .caps = ALL_CAPS, .qsize = 16 };
		struct sim_blk bs[8];
		unsigned done = 0, bad = 0;
		uint16_t state;

		if (!ok(env_open(&e, &c) == 0, "wrap: device opened"))
			return;
		is_int(env_init(&e, ev ? RING_FEATURES : 0, 65530), RES_OK,
		       "wrap%s: DRIVER_OK with avail/used idx 65530", ev ? "(event_idx)" : "");
		if (ev)
			sim_set_used_event(e.sim, 0, 65530);
		for (int round = 0; round < 8; round++) {
			post_reads(&e, 0, bs, 5, round * 5);
			sim_kick(e.sim, 0);
			for (int i = 0; i < 5; i++) {
				uint32_t id, len;

				if (sim_get_used(e.sim, 0, &id, &len) != 1 ||
				    id != (uint32_t)bs[i].head || len != 513 ||
				    sim_blk_status(e.sim, &bs[i]) != ST_OK)
					bad++;
				else
					done++;
			}
			if (ev)
				sim_set_used_event(e.sim, 0, e.sim->vq[0].last_used);
		}
		ok(done == 40 && bad == 0, "wrap%s: 40 requests across index 65535 (%u ok, %u bad)",
		   ev ? "(event_idx)" : "", done, bad);
		is_int(sim_used_idx(e.sim, 0), (uint16_t)(65530 + 40), "wrap: used idx wrapped to 34");
		ok(sim_get_vq_state(e.sim, 0, &state) == RES_OK && state == (uint16_t)(65530 + 40),
		   "wrap: GET_VQ_STATE after wrap = %u", state);
		if (ev)
			is_int(e.sim->vq[0].irqs, 8, "wrap(event_idx): one interrupt per batch");
		ok_null(write_read_n(&e, 0, 3, 4, 512, 0, LAY_PLAIN, NULL), "wrap: data I/O after wrap");
		ok(!queue_broken(&e, 0), "wrap: queue not broken");
		env_close(&e);
	}
}

static void test_out_of_order(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .mode = RAM_DEFER };
	struct sim_blk bs[8];
	struct vdu_queue_stats st;
	uint8_t pat[8][1024], buf[1024];
	uint32_t ids[8];
	int nids = 0, ok_status = 0;
	static const int order[8] = { 5, 2, 7, 0, 3, 6, 1, 4 };

	if (!ok(env_open(&e, &c) == 0, "ooo: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	for (int i = 0; i < 8; i++) {
		blk_init(&bs[i], VIRTIO_BLK_T_OUT, i * 8);
		if (i & 1)
			bs[i].flags = SIM_BLK_INDIRECT;
		blk_add_new(&e, &bs[i], 512);
		blk_add(&e, &bs[i], sim_alloc_cross(e.sim, 512, 100), 512);
		pattern(pat[i], 1024, 1000 + i);
		sim_write(e.sim, bs[i].seg[0].addr, pat[i], 512);
		sim_write(e.sim, bs[i].seg[1].addr, pat[i] + 512, 512);
		sim_blk_post(e.sim, 0, &bs[i]);
	}
	sim_kick(e.sim, 0);
	vdu_dev_queue_stats(e.dev, 0, &st);
	ok(e.ram.npending == 8 && vdu_dev_inflight(e.dev) == 8 && st.inflight == 8,
	   "ooo: 8 writes in flight (pending %u, inflight %u, stats %u)",
	   e.ram.npending, vdu_dev_inflight(e.dev), st.inflight);
	is_int(drain(&e, 0), 0, "ooo: nothing used before completion");
	/* complete in reverse submission order */
	for (int i = 7; i >= 0; i--) {
		uint32_t id;

		ram_complete(&e.ram, i, 0);
		sim_run(e.sim);
		if (sim_get_used(e.sim, 0, &id, NULL) == 1)
			ids[nids++] = id;
	}
	{
		bool match = nids == 8;

		for (int i = 0; i < nids && match; i++)
			match = ids[i] == (uint32_t)bs[7 - i].head;
		ok(match, "ooo: used ids in reverse order of submission");
	}
	for (int i = 0; i < 8; i++)
		ok_status += sim_blk_status(e.sim, &bs[i]) == ST_OK &&
			     memcmp(e.ram.data + i * 8 * SECTOR, pat[i], 1024) == 0;
	is_int(ok_status, 8, "ooo: all 8 writes OK and data in place");
	vdu_dev_queue_stats(e.dev, 0, &st);
	ok(vdu_dev_inflight(e.dev) == 0 && st.inflight == 0,
	   "ooo: inflight back to 0 (%u, stats %u)", vdu_dev_inflight(e.dev), st.inflight);

	/* Now read them back, completing in a shuffled order. */
	for (int i = 0; i < 8; i++) {
		blk_init(&bs[i], VIRTIO_BLK_T_IN, i * 8);
		bs[i].flags = SIM_BLK_DATA_IN | (i & 1 ? 0 : SIM_BLK_INDIRECT);
		blk_add(&e, &bs[i], sim_alloc_cross(e.sim, 1024, 300), 1024);
		sim_blk_post(e.sim, 0, &bs[i]);
	}
	sim_kick(e.sim, 0);
	is_int(vdu_dev_inflight(e.dev), 8, "ooo: 8 reads in flight");
	nids = 0;
	{
		/* pending[] shrinks as we complete: map original index */
		bool left[8] = { true, true, true, true, true, true, true, true };
		bool match = true;

		for (int k = 0; k < 8; k++) {
			int want = order[k], pos = 0;
			uint32_t id, len;

			for (int j = 0; j < want; j++)
				pos += left[j];
			left[want] = false;
			ram_complete(&e.ram, pos, 0);
			/* two completions per loop run for half of them */
			if (k % 2 == 0)
				continue;
			sim_run(e.sim);
			while (sim_get_used(e.sim, 0, &id, &len) == 1) {
				ids[nids++] = id;
				match = match && len == 1025;
			}
		}
		ok(match && nids == 8, "ooo: 8 reads completed, used len 1025");
		match = true;
		for (int k = 0; k < 8 && match; k++)
			match = ids[k] == (uint32_t)bs[order[k]].head;
		ok(match, "ooo: used ids follow the completion order");
	}
	ok_status = 0;
	for (int i = 0; i < 8; i++) {
		sim_read(e.sim, bs[i].seg[0].addr, buf, 1024);
		ok_status += sim_blk_status(e.sim, &bs[i]) == ST_OK &&
			     memcmp(buf, pat[i], 1024) == 0;
	}
	is_int(ok_status, 8, "ooo: all 8 reads returned the right data");
	vdu_dev_queue_stats(e.dev, 0, &st);
	ok(vdu_dev_inflight(e.dev) == 0 && st.inflight == 0 && st.requests == 16 &&
	   st.errors == 0,
	   "ooo: inflight 0 again, 16 requests, no errors");

	/* Backend errors map to statuses. */
	post_reads(&e, 0, bs, 3, 0);
	sim_kick(e.sim, 0);
	ram_complete(&e.ram, 0, -EIO);
	ram_complete(&e.ram, 0, -EOPNOTSUPP);
	ram_complete(&e.ram, 0, 0);
	sim_run(e.sim);
	{
		uint32_t lens[3] = { 0 }, id, len;
		int n = 0;

		while (n < 3 && sim_get_used(e.sim, 0, &id, &len) == 1)
			lens[n++] = len;
		ok(n == 3 && sim_blk_status(e.sim, &bs[0]) == ST_IOERR &&
		   sim_blk_status(e.sim, &bs[1]) == ST_UNSUPP &&
		   sim_blk_status(e.sim, &bs[2]) == ST_OK &&
		   lens[0] == 1 && lens[1] == 1 && lens[2] == 513,
		   "backend -EIO -> IOERR, -EOPNOTSUPP -> UNSUPP (used len 1)");
	}
	vdu_dev_queue_stats(e.dev, 0, &st);
	is_int(st.errors, 2, "stats count the 2 errors");
	env_close(&e);
}

/* ---- malformed rings ---- */

struct env_malformed {
	struct env e;
	unsigned num;
};

static uint16_t take_desc(struct env *e)
{
	struct sim_vq *vq = &e->sim->vq[0];

	return vq->free_stack[--vq->nfree];
}

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	d->addr = htole64(addr);
	d->len = htole32(len);
	d->flags = htole16(flags);
	d->next = htole16(next);
}

/* A header descriptor for a read of one sector. */
static uint64_t new_hdr(struct env *e, uint32_t type)
{
	struct virtio_blk_outhdr h = { .type = htole32(type) };
	uint64_t a = sim_alloc(e->sim, 16);

	sim_write(e->sim, a, &h, 16);
	return a;
}

static void check_broken_then_recover(struct env *e, const char *what,
				      uint64_t ring_features)
{
	struct vdu_queue_stats st;
	int used;

	sim_kick(e->sim, 0);
	used = drain(e, 0);
	vdu_dev_queue_stats(e->dev, 0, &st);
	ok(queue_broken(e, 0) && used == 0 && e->sim->bad_used == 0,
	   "malformed: %s -> queue broken (broken %d, used %d)", what, st.broken, used);
	/* A kick on a broken queue does nothing. */
	sim_kick(e->sim, 0);
	/* Recover: reset, renegotiate. */
	while (e->ram.npending)
		ram_complete(&e->ram, 0, 0);
	sim_run(e->sim);
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
	struct sim_vq *vq;
	uint16_t h, d1;
	uint64_t hdr;
	struct sim_desc sd[4];

	if (!ok(env_open(&e, &c) == 0, "malformed: device opened"))
		return;
	vq = &e.sim->vq[0];

#define WITH(feat_, what)                                                    \
	for (int once_ = (env_init(&e, (feat_), 0), 1); once_;               \
	     once_ = 0, check_broken_then_recover(&e, what, (feat_)))

	WITH(0, "head index >= queue size")
		sim_post_head(e.sim, 0, vq->num);
	WITH(0, "head index 0xffff")
		sim_post_head(e.sim, 0, 0xffff);
	WITH(0, "next index >= queue size") {
		h = take_desc(&e);
		set_desc(&vq->desc[h], new_hdr(&e, VIRTIO_BLK_T_IN), 16,
			 VRING_DESC_F_NEXT, vq->num);
		sim_post_head(e.sim, 0, h);
	}
	WITH(0, "descriptor loop") {
		h = take_desc(&e);
		d1 = take_desc(&e);
		set_desc(&vq->desc[h], new_hdr(&e, VIRTIO_BLK_T_IN), 16, VRING_DESC_F_NEXT, d1);
		set_desc(&vq->desc[d1], sim_alloc(e.sim, 16), 16, VRING_DESC_F_NEXT, h);
		sim_post_head(e.sim, 0, h);
	}
	WITH(0, "self loop (writable)") {
		h = take_desc(&e);
		set_desc(&vq->desc[h], sim_alloc(e.sim, 16), 16,
			 VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, h);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "indirect len not a multiple of 16") {
		h = take_desc(&e);
		set_desc(&vq->desc[h], sim_alloc(e.sim, 32), 24, VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "indirect len 0") {
		h = take_desc(&e);
		set_desc(&vq->desc[h], sim_alloc(e.sim, 32), 0, VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "indirect table larger than the queue") {
		uint64_t t = sim_alloc(e.sim, 16 * (vq->num + 1));
		struct vring_desc tab[17];

		/* a well-formed table of num + 1 entries */
		memset(tab, 0, sizeof(tab));
		hdr = new_hdr(&e, VIRTIO_BLK_T_IN);
		set_desc(&tab[0], hdr, 16, VRING_DESC_F_NEXT, 1);
		for (unsigned i = 1; i < vq->num; i++)
			set_desc(&tab[i], sim_alloc(e.sim, 512), 512,
				 VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, i + 1);
		set_desc(&tab[vq->num], sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE, 0);
		sim_write(e.sim, t, tab, 16 * (vq->num + 1));
		h = take_desc(&e);
		set_desc(&vq->desc[h], t, 16 * (vq->num + 1), VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "nested indirect") {
		uint64_t t = sim_alloc(e.sim, 32), t2 = sim_alloc(e.sim, 32);
		struct vring_desc tab[2];

		hdr = new_hdr(&e, VIRTIO_BLK_T_IN);
		set_desc(&tab[0], hdr, 16, VRING_DESC_F_NEXT, 1);
		set_desc(&tab[1], t2, 32, VRING_DESC_F_INDIRECT, 0);
		sim_write(e.sim, t, tab, 32);
		set_desc(&tab[0], sim_alloc(e.sim, 512), 512,
			 VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
		set_desc(&tab[1], sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE, 0);
		sim_write(e.sim, t2, tab, 32);
		h = take_desc(&e);
		set_desc(&vq->desc[h], t, 32, VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "loop inside an indirect table") {
		uint64_t t = sim_alloc(e.sim, 48);
		struct vring_desc tab[3];

		set_desc(&tab[0], new_hdr(&e, VIRTIO_BLK_T_IN), 16, VRING_DESC_F_NEXT, 1);
		set_desc(&tab[1], sim_alloc(e.sim, 512), 512,
			 VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
		set_desc(&tab[2], sim_alloc(e.sim, 1), 1,
			 VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
		sim_write(e.sim, t, tab, 48);
		h = take_desc(&e);
		set_desc(&vq->desc[h], t, 48, VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "next index past the end of an indirect table") {
		uint64_t t = sim_alloc(e.sim, 32);
		struct vring_desc tab[2];

		set_desc(&tab[0], new_hdr(&e, VIRTIO_BLK_T_IN), 16, VRING_DESC_F_NEXT, 1);
		set_desc(&tab[1], sim_alloc(e.sim, 1), 1,
			 VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
		sim_write(e.sim, t, tab, 32);
		h = take_desc(&e);
		set_desc(&vq->desc[h], t, 32, VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "INDIRECT together with NEXT") {
		uint64_t t = sim_alloc(e.sim, 32);
		struct vring_desc tab[2];

		set_desc(&tab[0], new_hdr(&e, VIRTIO_BLK_T_IN), 16, VRING_DESC_F_NEXT, 1);
		set_desc(&tab[1], sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE, 0);
		sim_write(e.sim, t, tab, 32);
		h = take_desc(&e);
		d1 = take_desc(&e);
		set_desc(&vq->desc[h], t, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, d1);
		set_desc(&vq->desc[d1], sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(0, "indirect without INDIRECT_DESC negotiated") {
		hdr = new_hdr(&e, VIRTIO_BLK_T_IN);
		sd[0] = (struct sim_desc){ hdr, 16, 0 };
		sd[1] = (struct sim_desc){ sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE };
		sim_post(e.sim, 0, sd, 2, true);
	}
	WITH(RING_FEATURES, "indirect table in unmapped IOVA") {
		h = take_desc(&e);
		set_desc(&vq->desc[h], SIM_HOLE_IOVA + 64, 32, VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(RING_FEATURES, "indirect table running off its region") {
		h = take_desc(&e);
		set_desc(&vq->desc[h], SIM_DATA_IOVA + SIM_DATA_NREG * SIM_DATA_REGSZ - 16, 32,
			 VRING_DESC_F_INDIRECT, 0);
		sim_post_head(e.sim, 0, h);
	}
	WITH(0, "header in unmapped IOVA") {
		sd[0] = (struct sim_desc){ SIM_HOLE_IOVA, 16, 0 };
		sd[1] = (struct sim_desc){ sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE };
		sim_post(e.sim, 0, sd, 2, false);
	}
	WITH(0, "data running into unmapped IOVA") {
		hdr = new_hdr(&e, VIRTIO_BLK_T_IN);
		sd[0] = (struct sim_desc){ hdr, 16, 0 };
		sd[1] = (struct sim_desc){ SIM_HOLE_IOVA - 512, 1024, VRING_DESC_F_WRITE };
		sd[2] = (struct sim_desc){ sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE };
		sim_post(e.sim, 0, sd, 3, false);
	}
	WITH(0, "IOVA range wrapping past 2^64") {
		hdr = new_hdr(&e, VIRTIO_BLK_T_IN);
		sd[0] = (struct sim_desc){ hdr, 16, 0 };
		sd[1] = (struct sim_desc){ UINT64_MAX - 100, 512, VRING_DESC_F_WRITE };
		sd[2] = (struct sim_desc){ sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE };
		sim_post(e.sim, 0, sd, 3, false);
	}
	WITH(0, "device-writable data in a read-only region") {
		hdr = new_hdr(&e, VIRTIO_BLK_T_IN);
		sd[0] = (struct sim_desc){ hdr, 16, 0 };
		sd[1] = (struct sim_desc){ SIM_RO_IOVA, 512, VRING_DESC_F_WRITE };
		sd[2] = (struct sim_desc){ sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE };
		sim_post(e.sim, 0, sd, 3, false);
	}
	WITH(0, "status byte in a read-only region") {
		hdr = new_hdr(&e, VIRTIO_BLK_T_FLUSH);
		sd[0] = (struct sim_desc){ hdr, 16, 0 };
		sd[1] = (struct sim_desc){ SIM_RO_IOVA + 100, 1, VRING_DESC_F_WRITE };
		sim_post(e.sim, 0, sd, 2, false);
	}
	WITH(0, "readable descriptor after a writable one") {
		hdr = new_hdr(&e, VIRTIO_BLK_T_IN);
		sd[0] = (struct sim_desc){ hdr, 16, 0 };
		sd[1] = (struct sim_desc){ sim_alloc(e.sim, 512), 512, VRING_DESC_F_WRITE };
		sd[2] = (struct sim_desc){ sim_alloc(e.sim, 16), 16, 0 };
		sd[3] = (struct sim_desc){ sim_alloc(e.sim, 1), 1, VRING_DESC_F_WRITE };
		sim_post(e.sim, 0, sd, 4, false);
	}
	WITH(0, "avail idx more than the queue size ahead")
		sim_set_avail_idx(e.sim, 0, vq->num + 1);
	WITH(0, "avail idx moving backwards (0xffff ahead)")
		sim_set_avail_idx(e.sim, 0, 0xffff);
	WITH(0, "cycle through every descriptor of the queue") {
		for (unsigned i = 0; i < vq->num; i++)
			set_desc(&vq->desc[i], sim_alloc(e.sim, 16), 16,
				 VRING_DESC_F_NEXT, (i + 1) % vq->num);
		vq->nfree = 0;
		sim_post_head(e.sim, 0, 0);
	}
	e.ram.mode = RAM_DEFER;
	WITH(0, "head reused while in flight") {
		struct sim_blk b;

		post_reads(&e, 0, &b, 1, 0);
		sim_kick(e.sim, 0);
		sim_post_head(e.sim, 0, b.head);
	}
	{
		/* the one in flight is completed by check_broken...; it must
		 * not have been returned on the broken ring */
		is_int(e.ram.npending, 0, "malformed: deferred request completed after the break");
	}
	e.ram.mode = RAM_SYNC;
#undef WITH

	/* A malformed request after good ones in the same batch: the good
	 * ones were already returned. */
	env_init(&e, 0, 0);
	{
		struct sim_blk bs[3];

		post_reads(&e, 0, bs, 3, 0);
		sim_post_head(e.sim, 0, vq->num + 3);
		sim_kick(e.sim, 0);
		ok(queue_broken(&e, 0) && e.ram.submits >= 3 &&
		   sim_blk_status(e.sim, &bs[2]) == ST_OK && e.sim->bad_used == 0,
		   "malformed: good requests before the bad one were served");
	}

	/* No writable byte at all: used len 0, queue keeps going. */
	env_init(&e, 0, 0);
	{
		struct sim_blk b;
		struct done dn;

		unsigned sub = e.ram.submits;

		blk_init(&b, VIRTIO_BLK_T_OUT, 0);
		b.flags = SIM_BLK_NO_STATUS;
		blk_add_new(&e, &b, 512);
		dn = run1(&e, 0, &b);
		ok(dn.id_ok && dn.len == 0 && !queue_broken(&e, 0) && e.ram.submits == sub,
		   "request without a status byte: used len 0, queue not broken");
		ok_null(write_read_n(&e, 0, 2, 1, 512, 0, LAY_PLAIN, NULL),
			"  ... and the queue keeps working");
	}

	/* A zero-length descriptor in the middle is harmless. */
	{
		struct sim_blk b;
		struct done dn;

		blk_init(&b, VIRTIO_BLK_T_IN, 0);
		b.flags = SIM_BLK_DATA_IN;
		blk_add_new(&e, &b, 512);
		blk_add(&e, &b, sim_alloc(e.sim, 16), 0);
		blk_add_new(&e, &b, 512);
		dn = run1(&e, 0, &b);
		ok(dn.id_ok && dn.len == 1025 && dn.status == ST_OK && !queue_broken(&e, 0),
		   "zero-length descriptor inside a chain: fine");
	}
	ok(e.sim->fault_misses > 0, "unmapped IOVAs were asked for and refused (%u)",
	   e.sim->fault_misses);
	env_close(&e);
}

static void test_reset_inflight(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .mode = RAM_DEFER };
	struct sim_blk bs[4];
	struct vdu_queue_stats st;
	uint8_t before[6 + 8 * 256], after[sizeof(before)];
	uint8_t statuses = 0;

	if (!ok(env_open(&e, &c) == 0, "reset: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	post_reads(&e, 0, bs, 4, 0);
	sim_kick(e.sim, 0);
	ok(e.ram.npending == 4 && vdu_dev_inflight(e.dev) == 4, "reset: 4 requests with the backend");
	is_int(sim_reset(e.sim), RES_OK, "reset: SET_STATUS 0 with I/O in flight");
	is_int(vdu_dev_inflight(e.dev), 4, "reset: the 4 are still counted");
	memcpy(before, e.sim->vq[0].used, sizeof(before));
	for (int i = 3; i >= 0; i--) {
		ram_complete(&e.ram, i, 0);
		sim_run(e.sim);
	}
	memcpy(after, e.sim->vq[0].used, sizeof(after));
	for (int i = 0; i < 4; i++)
		statuses |= sim_blk_status(e.sim, &bs[i]) != 0xff;
	ok(memcmp(before, after, sizeof(before)) == 0 && statuses == 0,
	   "reset: completions after reset touch neither the used ring nor the status bytes");
	is_int(vdu_dev_inflight(e.dev), 0, "reset: vdu_dev_inflight back to 0");
	vdu_dev_queue_stats(e.dev, 0, &st);
	is_int(st.inflight, 0, "reset: queue stats inflight back to 0");
	is_int(st.enabled, 0, "reset: queue disabled");

	/* Reset, renegotiate while old requests are still out, then finish
	 * them: the new ring must not see them. */
	env_init(&e, RING_FEATURES, 0);
	post_reads(&e, 0, bs, 4, 0);
	sim_kick(e.sim, 0);
	is_int(env_init(&e, RING_FEATURES, 100), RES_OK,
	       "reset: re-initialised with 4 old requests pending");
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
		   sim_used_idx(e.sim, 0) == 101,
		   "reset: only the new request appears on the new ring");
	}
	is_int(vdu_dev_inflight(e.dev), 0, "reset: inflight 0");
	env_close(&e);
}

static void test_iotlb(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS };
	struct sim_region *ring;
	unsigned f0;

	if (!ok(env_open(&e, &c) == 0, "iotlb: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	ok_null(write_read_n(&e, 0, 0, 2, 512, 0, LAY_PLAIN, NULL), "iotlb: I/O before");
	ring = sim_region_of(e.sim, SIM_RING_IOVA);
	f0 = ring->faults;
	ok_null(write_read_n(&e, 0, 0, 2, 512, 0, LAY_PLAIN, NULL), "iotlb: I/O again");
	is_int(ring->faults, f0, "iotlb: no re-fault while mappings are valid");

	is_int(sim_update_iotlb(e.sim, SIM_RING_IOVA, SIM_RING_IOVA + SIM_RING_SIZE - 1),
	       RES_OK, "UPDATE_IOTLB on the ring region");
	/* Move the ring memory: stale pointers would hit freed memory. */
	{
		uint8_t *nh = malloc(ring->len);
		ptrdiff_t delta;
		struct sim_vq *vq = &e.sim->vq[0];

		memcpy(nh, ring->host, ring->len);
		delta = nh - ring->host;
		free(ring->own);
		ring->own = ring->host = nh;
		vq->desc = (void *)((uint8_t *)vq->desc + delta);
		vq->avail = (void *)((uint8_t *)vq->avail + delta);
		vq->used = (void *)((uint8_t *)vq->used + delta);
	}
	ok_null(write_read_n(&e, 0, 4, 3, 512, SIM_BLK_INDIRECT, LAY_PLAIN, NULL),
		"iotlb: I/O after invalidating and moving the ring memory");
	ok(ring->faults > f0, "iotlb: ring region faulted in again (%u -> %u)", f0, ring->faults);

	f0 = e.sim->faults;
	is_int(sim_update_iotlb(e.sim, 0, UINT64_MAX), RES_OK, "UPDATE_IOTLB on everything");
	ok_null(write_read_n(&e, 0, 8, 2, 512, 0, LAY_CROSS, NULL), "iotlb: I/O after full invalidation");
	ok(e.sim->faults > f0 + 2, "iotlb: ring and data regions re-faulted (%u calls)",
	   e.sim->faults - f0);
	is_int(sim_update_iotlb(e.sim, 10, 5), RES_FAILED, "UPDATE_IOTLB with last < start fails");

	/* Invalidation while requests are in flight. */
	e.ram.mode = RAM_DEFER;
	{
		struct sim_blk bs[3];
		int n;

		post_reads(&e, 0, bs, 3, 0);
		sim_kick(e.sim, 0);
		sim_update_iotlb(e.sim, 0, UINT64_MAX);
		while (e.ram.npending) {
			ram_complete(&e.ram, 0, 0);
			sim_run(e.sim);
		}
		n = drain(&e, 0);
		ok(n == 3 && sim_blk_status(e.sim, &bs[2]) == ST_OK,
		   "iotlb: requests in flight across an invalidation complete (%d)", n);
	}
	e.ram.mode = RAM_SYNC;
	ok(!queue_broken(&e, 0), "iotlb: queue not broken");
	env_close(&e);
}

static void test_vq_state(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .mode = RAM_DEFER };
	struct sim_blk bs[5];
	uint16_t s = 1;

	if (!ok(env_open(&e, &c) == 0, "vq_state: device opened"))
		return;
	ok(sim_get_vq_state(e.sim, 0, &s) == RES_OK && s == 0,
	   "GET_VQ_STATE of a disabled queue: 0");
	env_init(&e, 0, 1234);
	ok(sim_get_vq_state(e.sim, 0, &s) == RES_OK && s == 1234,
	   "GET_VQ_STATE right after DRIVER_OK: the starting index");
	post_reads(&e, 0, bs, 5, 0);
	sim_kick(e.sim, 0);
	ok(sim_get_vq_state(e.sim, 0, &s) == RES_OK && s == 1239,
	   "GET_VQ_STATE with 5 requests in flight: 1239 (%u)", s);
	is_int(sim_get_vq_state(e.sim, 5, &s), RES_FAILED, "GET_VQ_STATE for a missing queue fails");
	while (e.ram.npending)
		ram_complete(&e.ram, 0, 0);
	sim_run(e.sim);
	is_int(drain(&e, 0), 5, "vq_state: all completed");
	{
		struct vduse_dev_request rq = { .type = 0x7777, .request_id = 42 };
		struct vduse_dev_response rs;

		vdu_dev_handle_request(e.dev, &rq, &rs);
		ok(rs.request_id == 42 && rs.result == RES_FAILED,
		   "unknown VDUSE request type: FAILED, request id echoed");
	}
	env_close(&e);
}

static void test_multiqueue(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .nq = 2, .qsize = 64 };
	struct vdu_queue_stats s0, s1;
	struct sim_blk bs[4];
	int n0, n1;

	if (!ok(env_open(&e, &c) == 0, "mq: device opened"))
		return;
	ok(e.offered & F(VIRTIO_BLK_F_MQ), "mq: VIRTIO_BLK_F_MQ offered");
	is_int(env_init(&e, RING_FEATURES, 0), RES_OK, "mq: both queues enabled");
	is_int(e.ram.queue_opens, 2, "mq: backend opened 2 queues");
	ok_null(write_read_n(&e, 0, 0, 4, 512, 0, LAY_PLAIN, NULL), "mq: I/O on queue 0");
	ok_null(write_read_n(&e, 1, 16, 4, 512, SIM_BLK_INDIRECT, LAY_PLAIN, NULL),
		"mq: I/O on queue 1");
	post_reads(&e, 0, bs, 2, 0);
	post_reads(&e, 1, bs + 2, 2, 0);
	sim_kick(e.sim, 1);
	n0 = drain(&e, 0);
	n1 = drain(&e, 1);
	ok(n0 == 0 && n1 == 2, "mq: a kick on queue 1 serves only queue 1 (%d, %d)", n0, n1);
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 2, "mq: then queue 0");
	vdu_dev_queue_stats(e.dev, 0, &s0);
	vdu_dev_queue_stats(e.dev, 1, &s1);
	ok(s0.requests == 4 && s1.requests == 4 && s0.enabled && s1.enabled &&
	   e.sim->vq[0].irqs >= 3 && e.sim->vq[1].irqs >= 3,
	   "mq: per-queue stats and interrupts (%llu/%llu req, %u/%u irqs)",
	   (unsigned long long)s0.requests, (unsigned long long)s1.requests,
	   e.sim->vq[0].irqs, e.sim->vq[1].irqs);
	is_int(vdu_dev_queue_stats(e.dev, 2, &s0), -EINVAL, "mq: stats for queue 2: -EINVAL");

	/* The driver may leave a queue unused (ready = 0). */
	sim_reset(e.sim);
	sim_negotiate(e.sim, feat(&e, 0));
	sim_setup_vq(e.sim, 0, 64, 0);
	e.sim->vq[1].ready = false;
	is_int(sim_set_status(e.sim, 0xf), RES_OK, "mq: DRIVER_OK with queue 1 not ready");
	vdu_dev_queue_stats(e.dev, 1, &s1);
	ok(!s1.enabled, "mq: queue 1 stays disabled");
	ok_null(write_read_n(&e, 0, 0, 1, 512, 0, LAY_PLAIN, NULL), "mq: queue 0 works alone");
	/* A queue larger than the device's maximum is refused. */
	sim_reset(e.sim);
	sim_negotiate(e.sim, feat(&e, 0));
	sim_setup_vq(e.sim, 0, 128, 0);
	is_int(sim_set_status(e.sim, 0xf), RES_FAILED, "mq: DRIVER_OK with queue size 128 > 64 fails");
	env_close(&e);
}

static void test_batch_unplug(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .mode = RAM_BATCH };
	struct sim_blk bs[6];

	if (!ok(env_open(&e, &c) == 0, "batch: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	e.ram.unplugs = e.ram.submits = 0;
	post_reads(&e, 0, bs, 5, 0);
	sim_kick(e.sim, 0);
	ok(e.ram.submits == 5 && e.ram.unplugs == 1 && drain(&e, 0) == 5,
	   "batch: 5 submits, 1 unplug, 5 completions (submits %u unplugs %u)",
	   e.ram.submits, e.ram.unplugs);
	is_int(e.sim->vq[0].irqs, 1, "batch: one interrupt for the batch");

	/* A ring that breaks mid-batch must still unplug what it submitted,
	 * or an io_submit-style backend would hold those requests forever. */
	e.ram.unplugs = e.ram.submits = 0;
	post_reads(&e, 0, bs, 2, 0);
	sim_post_head(e.sim, 0, 0xffff);
	sim_kick(e.sim, 0);
	ok(queue_broken(&e, 0) && e.ram.submits == 2 && e.ram.unplugs == 1 &&
	   e.ram.npending == 0 && vdu_dev_inflight(e.dev) == 0,
	   "batch: queue broken mid-batch still unplugs (unplugs %u, pending %u, inflight %u)",
	   e.ram.unplugs, e.ram.npending, vdu_dev_inflight(e.dev));
	while (e.ram.npending)
		ram_complete(&e.ram, 0, 0);
	sim_run(e.sim);
	env_close(&e);
}

/* VDU_DEV_F_IRQ_FOLLOW: the interrupt is pointed at the queue thread's
 * CPU once, again after a reset, and given up when the kernel refuses. */
static void test_irq_follow(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .flags = VDU_DEV_F_IRQ_FOLLOW,
			     .size = 4 << 20 };
	struct env_cfg c0 = { .caps = ALL_CAPS };
	struct sim_blk bs[4];
	cpu_set_t one, saved;
	int cpu, ncpu;

	/* Pinned, so that the thread cannot migrate between the checks. */
	sched_getaffinity(0, sizeof(saved), &saved);
	cpu = sched_getcpu();
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	sched_setaffinity(0, sizeof(one), &one);
	if (!ok(env_open(&e, &c) == 0, "irq follow: device opened"))
		goto out;
	e.sim->vq[0].irq_cpu = -1;
	env_init(&e, RING_FEATURES, 0);
	ok_null(write_read_n(&e, 0, 0, 4, 512, 0, LAY_PLAIN, NULL), "irq follow: I/O");
	post_reads(&e, 0, bs, 3, 0);
	sim_kick(e.sim, 0);
	drain(&e, 0);
	ok(e.sim->vq[0].irq_cpu == cpu && e.sim->vq[0].irq_cpu_sets == 1,
	   "irq follow: set once to the thread's CPU %d (cpu %d, %u sets, %u irqs)",
	   cpu, e.sim->vq[0].irq_cpu, e.sim->vq[0].irq_cpu_sets, e.sim->vq[0].irqs);
	/* Large transfers: the copy-out work goes to the other CPUs. */
	ncpu = (int)sysconf(_SC_NPROCESSORS_CONF);
	usleep(11000);
	for (int i = 0; i < 4; i++)
		ok_null(write_read_n(&e, 0, 0, 16, 64 << 10, 0, LAY_PLAIN, NULL),
			"irq follow: 1 MiB write + read %d", i);
	if (ncpu > 1)
		ok(e.sim->vq[0].irq_cpu_count == ncpu - 1 &&
		   e.sim->vq[0].irq_cpu != cpu && e.sim->vq[0].irq_cpu_sets == 2,
		   "irq follow: 1 MiB requests: every CPU but %d (%d of %d CPUs, %u sets)",
		   cpu, e.sim->vq[0].irq_cpu_count, ncpu, e.sim->vq[0].irq_cpu_sets);
	else
		is_int(e.sim->vq[0].irq_cpu, cpu, "irq follow: 1 CPU: stays local");
	/* Small ones again: back next to the thread. */
	usleep(11000);
	for (int i = 0; i < 12; i++)
		if (write_read_n(&e, 0, 0, 1, 4096, 0, LAY_PLAIN, NULL))
			break;
	ok(e.sim->vq[0].irq_cpu == cpu && e.sim->vq[0].irq_cpu_sets == (ncpu > 1 ? 3 : 1),
	   "irq follow: 4 KiB requests: back on CPU %d (cpu %d, %u sets)", cpu,
	   e.sim->vq[0].irq_cpu, e.sim->vq[0].irq_cpu_sets);
	/* The driver sets its own affinity when it probes again. */
	sim_reset(e.sim);
	env_init(&e, RING_FEATURES, 0);
	post_reads(&e, 0, bs, 1, 0);
	sim_kick(e.sim, 0);
	drain(&e, 0);
	is_int(e.sim->vq[0].irq_cpu_sets, ncpu > 1 ? 4 : 2,
	       "irq follow: set again after a reset");
	/* A kernel without irq_cb_affinity: one try, interrupts still flow. */
	sim_reset(e.sim);
	env_init(&e, RING_FEATURES, 0);
	e.sim->vq[0].irq_cpu_err = -ENOENT;
	e.sim->vq[0].irqs = 0;
	post_reads(&e, 0, bs, 1, 0);
	sim_kick(e.sim, 0);
	drain(&e, 0);
	post_reads(&e, 0, bs, 1, 0);
	sim_kick(e.sim, 0);
	drain(&e, 0);
	ok(e.sim->vq[0].irq_cpu_sets == (ncpu > 1 ? 5u : 3u) && e.sim->vq[0].irqs == 2,
	   "irq follow: refused once, then left alone (%u sets, %u irqs)",
	   e.sim->vq[0].irq_cpu_sets, e.sim->vq[0].irqs);
	env_close(&e);
	/* Off unless asked for. */
	if (!ok(env_open(&e, &c0) == 0, "irq follow off: device opened"))
		goto out;
	env_init(&e, RING_FEATURES, 0);
	ok_null(write_read_n(&e, 0, 0, 2, 512, 0, LAY_PLAIN, NULL), "irq follow off: I/O");
	is_int(e.sim->vq[0].irq_cpu_sets, 0, "irq follow off: affinity never touched");
	env_close(&e);
out:
	sched_setaffinity(0, sizeof(saved), &saved);
}

/*
 * --poll-us is a maximum: the window opens only while kicks come sooner
 * than that after a batch, and closes after one that came later.  Here
 * the loop is the test's, so "polling" shows as a request posted without
 * a kick being served by one more turn of the loop.
 */
static void poll_turn(struct env *e)
{
	event_base_loop(e->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void poll_kick(struct env *e)
{
	sim_kick_async(e->sim, 0);
	event_base_loop(e->base, EVLOOP_ONCE);
}

/* opts.irq_cpus: set at every DRIVER_OK (the driver's probe set its own
 * before), -1 left alone, an unknown CPU refused at creation. */
static void test_irq_cpus(void)
{
	int cpus[2] = { 1, -1 }, bad[2] = { 0, 4096 };
	struct env_cfg c = { .nq = 2, .caps = ALL_CAPS, .irq_cpus = cpus };
	struct env e;

	if (!ok(env_open(&e, &c) == 0, "irq_cpus: device opened"))
		goto out;
	cpus[0] = 7; /* the library keeps its own copy */
	is_int(e.sim->vq[0].irq_cpu_sets, 0, "irq_cpus: nothing set before DRIVER_OK");
	is_int(env_init(&e, 0, 0), RES_OK, "irq_cpus: DRIVER_OK");
	ok(e.sim->vq[0].irq_cpu == 1 && e.sim->vq[0].irq_cpu_sets == 1,
	   "irq_cpus: queue 0 on CPU 1 (%d, %u sets)", e.sim->vq[0].irq_cpu,
	   e.sim->vq[0].irq_cpu_sets);
	is_int(e.sim->vq[1].irq_cpu_sets, 0, "irq_cpus: queue 1 (-1) left alone");
	is_int(env_init(&e, 0, 0), RES_OK, "irq_cpus: reset, DRIVER_OK again");
	is_int(e.sim->vq[0].irq_cpu_sets, 2, "irq_cpus: set again");
	e.sim->vq[0].irq_cpu_err = -ENOENT;
	is_int(env_init(&e, 0, 0), RES_OK, "irq_cpus: a kernel without the file only warns");
out:
	env_close(&e);
	c.irq_cpus = bad;
	lib_errors = 0;
	ok(env_open(&e, &c) == -EINVAL, "irq_cpus: CPU 4096 refused");
	env_close(&e);
	lib_errors = 0;
}

static void test_poll_adaptive(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .poll_us = 200000 };
	struct sim_blk bs[1];
	int n;

	if (!ok(env_open(&e, &c) == 0, "poll: device opened"))
		return;
	env_init(&e, RING_FEATURES, 0);
	post_reads(&e, 0, bs, 1, 0);
	poll_kick(&e);
	is_int(drain(&e, 0), 1, "poll: first request");
	/* The first kick came "long" after nothing: no window yet. */
	post_reads(&e, 0, bs, 1, 1);
	poll_turn(&e);
	is_int(drain(&e, 0), 0, "poll: window closed at first: no kick, no service");
	poll_kick(&e);
	is_int(drain(&e, 0), 1, "poll: the kick serves it");
	/* Kicks 1 ms apart open it to about twice their gap. */
	for (int i = 0; i < 14; i++) {
		usleep(1000);
		post_reads(&e, 0, bs, 1, 2 + i);
		poll_kick(&e);
		drain(&e, 0);
	}
	/* Past 1 ms: still open 500 us after the last batch. */
	usleep(500);
	poll_turn(&e);
	post_reads(&e, 0, bs, 1, 20);
	poll_turn(&e);
	is_int(drain(&e, 0), 1, "poll: after kicks 1 ms apart the ring is polled: served without a kick");
	/* A gap longer than the maximum closes it again. */
	usleep(300000);
	poll_turn(&e);
	post_reads(&e, 0, bs, 1, 21);
	poll_kick(&e);
	n = drain(&e, 0);
	post_reads(&e, 0, bs, 1, 22);
	poll_turn(&e);
	n += 10 * drain(&e, 0);
	is_int(n, 1, "poll: after a gap over the maximum: kicked one served, unkicked one waits");
	sim_kick(e.sim, 0);
	is_int(drain(&e, 0), 1, "poll: ... until its kick");
	env_close(&e);
}

static void test_block_size(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .size = (1 << 20) + 1000 };
	struct vdu_dev_info info;

	if (!ok(env_open(&e, &c) == 0, "geometry: device opened"))
		return;
	vdu_dev_get_info(e.dev, &info);
	is_int(info.capacity_bytes, (1 << 20) + 512, "geometry: size rounded down to 512");
	env_init(&e, 0, 0);
	ok_null(write_read_n(&e, 0, 2048, 1, 512, 0, LAY_PLAIN, NULL),
		"geometry: last full sector usable");
	env_close(&e);

	/* A 4 KiB block size: capacity rounded down to 4 KiB. */
	{
		struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "bs4k",
					  .block_size = 4096 };
		struct event_base *base = event_base_new();
		struct ram ram = { .size = (1 << 20) + 3000 };
		struct vdu_dev *dev = NULL;

		ok(vdu_dev_new(&o, &ram_backend, &ram, base, &dev) == 0 &&
		   vdu_dev_get_info(dev, &info) == 0 && info.block_size == 4096 &&
		   info.capacity_bytes == 1 << 20,
		   "geometry: block_size 4096 rounds capacity to 4 KiB");
		vdu_dev_free(dev);
		o.block_size = 1000;
		dev = NULL;
		ok(vdu_dev_new(&o, &ram_backend, &ram, base, &dev) < 0 && !dev,
		   "geometry: block_size 1000 rejected");
		event_base_free(base);
	}
}

/* Binary compatibility: a backend built against libvduse 0.2 (API 1, one
 * struct with name/usage/open in it) serves I/O; the sized getters fill
 * what the caller's struct holds. */
/* ----------------------------------------------------------- resize */

/* The RAM disk with resize and set_dev. */
static struct vdu_dev *rs_dev;
static unsigned rs_set_dev, rs_set_null, rs_closes_at_null, rs_resizes;
static int rs_fail;

static int rs_resize(void *h, uint64_t size, unsigned flags)
{
	struct ram *r = h;
	uint8_t *p;

	rs_resizes++;
	if (rs_fail)
		return rs_fail;
	if (size < r->size && !(flags & VDU_RESIZE_F_SHRINK))
		return -EINVAL;
	p = realloc(r->data, size);
	if (!p)
		return -ENOMEM;
	if (size > r->size)
		memset(p + r->size, 0, size - r->size);
	r->data = p;
	r->size = size;
	return 0;
}

static int rs_set_dev_cb(void *h, struct vdu_dev *dev)
{
	struct ram *r = h;

	rs_dev = dev;
	if (dev) {
		rs_set_dev++;
	} else {
		rs_set_null++;
		rs_closes_at_null = r->queue_closes;
	}
	return 0;
}

static const struct vdu_backend rs_backend = {
	VDU_BACKEND_INIT,
	.get_info = ram_get_info,
	.queue_open = ram_queue_open,
	.queue_close = ram_queue_close,
	.submit = ram_submit,
	.unplug = ram_unplug,
	.resize = rs_resize,
	.set_dev = rs_set_dev_cb,
};

/* One read of nsec sectors at sector: its status. */
static uint8_t rs_read(struct env *e, uint64_t sector, uint32_t nsec)
{
	struct sim_blk b;

	blk_init(&b, VIRTIO_BLK_T_IN, sector);
	b.flags = SIM_BLK_DATA_IN;
	blk_add_new(e, &b, nsec * SECTOR);
	return run1(e, 0, &b).status;
}

static uint64_t rs_capacity(struct env *e)
{
	struct vdu_dev_info info;

	vdu_dev_get_info(e->dev, &info);
	return info.capacity_bytes;
}

static void *rs_thread(void *arg)
{
	/* A backend's watcher: another thread than the device's. */
	return (void *)(intptr_t)vdu_dev_set_capacity(arg, (3u << 20) + 100);
}

static void test_resize(void)
{
	struct env e;
	struct env_cfg c = { .caps = ALL_CAPS, .backend = &rs_backend };
	unsigned irqs;
	pthread_t th;
	void *ret;

	rs_dev = NULL;
	if (!ok(env_open(&e, &c) == 0, "resize: device opened"))
		return;
	ok(rs_set_dev == 1 && rs_dev == e.dev, "resize: set_dev() told the backend its device");
	env_init(&e, 0, 0);
	is_int(sim_config_capacity(e.sim), 2048, "resize: the driver reads 1 MiB at first");
	is_int(e.sim->config_irqs, 0, "resize: no config interrupt yet");

	/* grow */
	is_int(vdu_dev_resize(e.dev, 2u << 20, 0), 0, "resize: grow to 2 MiB");
	is_int(e.ram.size, 2u << 20, "resize: the backend grew");
	is_int(rs_capacity(&e), 2u << 20, "resize: get_info says 2 MiB");
	is_int(sim_config_capacity(e.sim), 4096, "resize: the driver's config space says 4096 sectors");
	is_int(e.sim->config_irqs, 1, "resize: one config interrupt injected");
	ok_null(write_read_n(&e, 0, 4000, 8, 512, 0, LAY_PLAIN, NULL),
		"resize: sectors beyond the old end are usable");
	is_int(rs_read(&e, 4095, 1), ST_OK, "resize: the new last sector reads");
	is_int(rs_read(&e, 4096, 1), ST_IOERR, "resize: beyond the new end: IOERR");

	/* refusals change nothing */
	rs_resizes = 0;
	is_int(vdu_dev_resize(e.dev, 1u << 20, 0), -EINVAL, "resize: smaller without SHRINK: -EINVAL");
	is_int(vdu_dev_resize(e.dev, (3u << 20) + 100, 0), -EINVAL,
	       "resize: not a multiple of the block size: -EINVAL");
	is_int(vdu_dev_resize(e.dev, 0, VDU_RESIZE_F_SHRINK), -EINVAL, "resize: 0: -EINVAL");
	is_int(vdu_dev_resize(e.dev, 2u << 20, 0), 0, "resize: the same size: nothing to do");
	ok(rs_resizes == 0 && e.ram.size == 2u << 20 && rs_capacity(&e) == 2u << 20 &&
	   sim_config_capacity(e.sim) == 4096 && e.sim->config_irqs == 1,
	   "resize: refused requests reached neither the backend nor the driver");

	/* shrink */
	is_int(vdu_dev_resize(e.dev, 1u << 20, VDU_RESIZE_F_SHRINK), 0, "resize: shrink to 1 MiB");
	ok(e.ram.size == 1u << 20 && sim_config_capacity(e.sim) == 2048 &&
	   e.sim->config_irqs == 2, "resize: the backend and the config space shrank, one more interrupt");
	is_int(rs_read(&e, 2047, 1), ST_OK, "resize: the last sector reads");
	is_int(rs_read(&e, 2048, 1), ST_IOERR, "resize: a read beyond the shrunken end: IOERR");
	is_int(rs_read(&e, 2040, 16), ST_IOERR, "resize: a read across the shrunken end: IOERR");
	is_int(e.ram.bad, 0, "resize: the backend never saw I/O beyond its end");

	/* the backend fails */
	rs_fail = -ENOSPC;
	is_int(vdu_dev_resize(e.dev, 4u << 20, 0), -ENOSPC, "resize: a failed grow says why");
	ok(rs_capacity(&e) == 1u << 20 && sim_config_capacity(e.sim) == 2048 &&
	   e.sim->config_irqs == 2, "resize: a failed grow leaves the device as it was");
	rs_fail = -EIO;
	is_int(vdu_dev_resize(e.dev, 512u << 10, VDU_RESIZE_F_SHRINK), -EIO,
	       "resize: a failed shrink says why");
	ok(rs_capacity(&e) == 1u << 20 && sim_config_capacity(e.sim) == 2048,
	   "resize: a failed shrink gives the capacity back");
	rs_fail = 0;

	/* vdu_dev_set_capacity from another thread, rounded down */
	irqs = e.sim->config_irqs;
	ok(pthread_create(&th, NULL, rs_thread, e.dev) == 0 && pthread_join(th, &ret) == 0 &&
	   ret == NULL, "set_capacity: from another thread");
	ok(rs_capacity(&e) == 3u << 20 && sim_config_capacity(e.sim) == 6144 &&
	   e.sim->config_irqs == irqs + 1, "set_capacity: rounded down to 3 MiB, announced");
	is_int(vdu_dev_set_capacity(e.dev, 3u << 20), 0, "set_capacity: the same size again");
	is_int(e.sim->config_irqs, irqs + 1, "set_capacity: ... no second interrupt");
	is_int(vdu_dev_set_capacity(e.dev, 100), -EINVAL, "set_capacity: less than a block: -EINVAL");
	/* no driver: the config changes, the kernel would refuse the irq */
	sim_reset(e.sim);
	irqs = e.sim->config_irqs;
	ok(vdu_dev_set_capacity(e.dev, 1u << 20) == 0 && sim_config_capacity(e.sim) == 2048 &&
	   e.sim->config_irqs == irqs, "set_capacity: before DRIVER_OK only the config space changes");

	e.ram.queue_closes = 0;
	rs_set_null = 0;
	env_close(&e);
	ok(rs_set_null == 1 && rs_dev == NULL && rs_closes_at_null == 0,
	   "resize: set_dev(NULL) at free, before the queues close");

	/* a backend without resize, and a read-only device */
	c.backend = NULL;
	if (env_open(&e, &c) == 0) {
		is_int(vdu_dev_resize(e.dev, 2u << 20, 0), -EOPNOTSUPP,
		       "resize: a backend without resize: -EOPNOTSUPP");
		env_close(&e);
	}
	/* A backend built against 0.3: its struct ends before resize, so
	 * what lies there is not read. */
	{
		struct vdu_backend old = rs_backend;

		old.struct_size = offsetof(struct vdu_backend, resize);
		c.backend = &old;
		rs_set_dev = rs_resizes = 0;
		if (env_open(&e, &c) == 0) {
			ok(vdu_dev_resize(e.dev, 2u << 20, 0) == -EOPNOTSUPP &&
			   rs_resizes == 0 && rs_set_dev == 0,
			   "resize: a 0.3 backend struct: resize and set_dev not read");
			env_close(&e);
		}
	}
	c.backend = &rs_backend;
	c.read_only = 1;
	if (env_open(&e, &c) == 0) {
		is_int(vdu_dev_resize(e.dev, 2u << 20, 0), -EOPNOTSUPP,
		       "resize: a read-only device: -EOPNOTSUPP");
		env_close(&e);
	}

	/* a capacity set before the kernel device exists goes into its config */
	{
		struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "early" };
		struct event_base *base = event_base_new();
		struct ram ram = { .size = 1 << 20 };
		struct vdu_dev *dev = NULL;
		struct sim *sim = NULL;

		ram.data = calloc(1, ram.size);
		if (vdu_dev_new(&o, &rs_backend, &ram, base, &dev) == 0 &&
		    vdu_dev_set_capacity(dev, 2u << 20) == 0 &&
		    sim_open_default(base, dev, &sim) == 0)
			ok(sim_config_capacity(sim) == 4096,
			   "set_capacity: before start, the kernel gets the new size at create");
		else
			ok(0, "set_capacity: before start, the kernel gets the new size at create");
		vdu_dev_free(dev);
		sim_free(sim);
		event_base_free(base);
		free(ram.data);
	}
}

static void test_abi(void)
{
	const struct vdu_backend_v1 v1 = {
		.struct_size = sizeof(struct vdu_backend_v1),
		.api_version = 1,
		.name = "ram-v1",
		.description = "0.2 layout",
		.usage = "",
		.io_priv_size = 0,
		.open = NULL,
		.close = NULL,
		.get_info = ram_get_info,
		.queue_open = ram_queue_open,
		.queue_close = ram_queue_close,
		.submit = ram_submit,
		.unplug = ram_unplug,
	};
	struct env_cfg c = { .caps = ALL_CAPS, .size = 2 << 20,
			     .backend = (const struct vdu_backend *)&v1 };
	struct vdu_dev_info full;
	struct vdu_queue_stats st;
	unsigned char big[sizeof(full) + 32];
	struct env e;

	if (!ok(env_open(&e, &c) == 0, "abi: an API 1 backend is accepted"))
		return;
	is_int(env_init(&e, RING_FEATURES, 0), RES_OK, "abi: driver ok");
	ok_null(write_read_n(&e, 0, 8, 4, 4096, SIM_BLK_INDIRECT, LAY_PLAIN, NULL),
		"abi: the API 1 backend serves writes and reads");
	ok(e.ram.queue_opens == 1 && e.ram.unplugs > 0,
	   "abi: its queue_open and unplug were found at the 0.2 offsets (%u, %u)",
	   e.ram.queue_opens, e.ram.unplugs);

	is_int(vdu_dev_get_info_sz(e.dev, &full, 16), -EINVAL,
	       "abi: get_info refuses a struct smaller than 0.1's");
	memset(big, 0xee, sizeof(big));
	is_int(vdu_dev_get_info_sz(e.dev, (struct vdu_dev_info *)big, sizeof(big)), 0,
	       "abi: get_info takes a larger (newer) struct");
	vdu_dev_get_info(e.dev, &full);
	ok(!memcmp(big, &full, sizeof(full)) && big[sizeof(full)] == 0 &&
	   big[sizeof(big) - 1] == 0,
	   "abi: ... fills ours and zeroes the rest");
	ok(full.capacity_bytes == 2 << 20, "abi: capacity from the API 1 get_info");
	is_int(vdu_dev_queue_stats_sz(e.dev, 0, &st, 8), -EINVAL,
	       "abi: queue_stats refuses a too small struct");
	is_int(vdu_dev_queue_stats(e.dev, 0, &st), 0, "abi: queue_stats sized call");
	ok(st.requests >= 2, "abi: stats count the requests (%llu)",
	   (unsigned long long)st.requests);
	env_close(&e);
}

int main(void)
{
	vdu_set_log(log_cb, NULL, VDU_LOG_DEBUG);
	test_dev_new();
	test_features();
	test_rw();
	test_get_id();
	test_commands();
	test_read_only();
	test_ranges();
	test_event_idx();
	test_flags_notify();
	test_wrap();
	test_out_of_order();
	test_malformed();
	test_reset_inflight();
	test_iotlb();
	test_vq_state();
	test_multiqueue();
	test_batch_unplug();
	test_irq_follow();
	test_irq_cpus();
	test_poll_adaptive();
	test_block_size();
	test_resize();
	test_abi();
	diag("library logged %u error message(s)", lib_errors);
	return tap_done();
}
