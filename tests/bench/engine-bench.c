/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine alone: the library's real queue, ring and virtio-blk code
 * with the null backend, driven by a minimal simulated driver (no kernel,
 * no copies): batches of QD 4 KiB reads are posted, one kick (an eventfd
 * write, as the kernel does) runs the queue, the used entries are taken
 * back.  Prints requests per second on one core.
 *
 * usage: engine-bench [-n REQUESTS] [-q QD] [-p] [-e] [-s QUEUE_SIZE]
 *   -p  packed ring (default split)
 *   -e  without VIRTIO_RING_F_EVENT_IDX
 *   -z  null backend with read-zeroes=off (the engine only, no memset)
 *   -l DIR  keep the inflight log (crash recovery) in DIR/bench.q0.inflight
 *       (use a tmpfs such as /dev/shm: the log is a shared file mapping)
 * Run it under valgrind --tool=callgrind for instructions per request
 * (tests/bench/bench-engine does both).
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "backends.h"
#include "../simdrv.h"

#define F(bit) (1ULL << (bit))
#define MAXQD 256

static struct sim *s;
static struct sim_vq *vq;
static unsigned qd, num;
static bool packed;
static uint64_t hdr_iova[MAXQD], data_iova[MAXQD], st_iova[MAXQD];
static uint64_t bad;

static void die(const char *m)
{
	fprintf(stderr, "engine-bench: %s\n", m);
	exit(1);
}

/* Split: chain i lives in descriptors 3i..3i+2, posted as head 3i. */
static void split_setup(void)
{
	for (unsigned i = 0; i < qd; i++) {
		struct vring_desc *d = &vq->desc[3 * i];

		d[0].addr = htole64(hdr_iova[i]);
		d[0].len = htole32(16);
		d[0].flags = htole16(VRING_DESC_F_NEXT);
		d[0].next = htole16(3 * i + 1);
		d[1].addr = htole64(data_iova[i]);
		d[1].len = htole32(4096);
		d[1].flags = htole16(VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
		d[1].next = htole16(3 * i + 2);
		d[2].addr = htole64(st_iova[i]);
		d[2].len = htole32(1);
		d[2].flags = htole16(VRING_DESC_F_WRITE);
	}
}

static void split_post(void)
{
	uint16_t idx = vq->avail_shadow;

	for (unsigned i = 0; i < qd; i++)
		vq->avail->ring[(uint16_t)(idx + i) % num] = htole16(3 * i);
	vq->avail_shadow = idx + qd;
	__atomic_store_n(&vq->avail->idx, htole16(vq->avail_shadow),
			 __ATOMIC_RELEASE);
}

static unsigned split_reap(void)
{
	uint16_t used = le16toh(__atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE));
	unsigned n = 0;

	while (vq->last_used != used) {
		struct vring_used_elem *e = &vq->used->ring[vq->last_used % num];

		if (le32toh(e->len) != 4097 || le32toh(e->id) % 3)
			bad++;
		vq->last_used++;
		n++;
	}
	vq->avail->ring[num] = htole16(vq->last_used); /* used_event */
	return n;
}

/* Packed: each batch writes qd chains of 3 descriptors, id = i. */
static void packed_post(void)
{
	for (unsigned i = 0; i < qd; i++) {
		uint16_t head = vq->avail_pos, pos = head;
		bool wrap = vq->avail_wrap;
		uint16_t bits, hflags = 0;
		const uint64_t a[3] = { hdr_iova[i], data_iova[i], st_iova[i] };
		const uint32_t l[3] = { 16, 4096, 1 };
		const uint16_t f[3] = { VRING_DESC_F_NEXT,
					VRING_DESC_F_NEXT | VRING_DESC_F_WRITE,
					VRING_DESC_F_WRITE };

		for (int k = 0; k < 3; k++) {
			struct vring_packed_desc *d = &vq->pdesc[pos];

			bits = wrap ? 1u << VRING_PACKED_DESC_F_AVAIL
				    : 1u << VRING_PACKED_DESC_F_USED;
			d->addr = htole64(a[k]);
			d->len = htole32(l[k]);
			d->id = htole16(i);
			if (k)
				d->flags = htole16(f[k] | bits);
			else
				hflags = f[k] | bits;
			if (++pos == num) {
				pos = 0;
				wrap = !wrap;
			}
		}
		__atomic_store_n(&vq->pdesc[head].flags, htole16(hflags),
				 __ATOMIC_RELEASE);
		vq->avail_pos = pos;
		vq->avail_wrap = wrap;
	}
}

static unsigned packed_reap(void)
{
	unsigned n = 0;

	for (;;) {
		struct vring_packed_desc *d = &vq->pdesc[vq->used_pos];
		uint16_t fl = le16toh(__atomic_load_n(&d->flags, __ATOMIC_ACQUIRE));
		bool w = vq->used_wrap;

		if (!!(fl & (1u << VRING_PACKED_DESC_F_AVAIL)) != w ||
		    !!(fl & (1u << VRING_PACKED_DESC_F_USED)) != w)
			break;
		if (le32toh(d->len) != 4097 || le16toh(d->id) >= qd)
			bad++;
		vq->used_pos += 3;
		if (vq->used_pos >= num) {
			vq->used_pos -= num;
			vq->used_wrap = !vq->used_wrap;
		}
		n++;
	}
	vq->driver_ev->off_wrap = htole16(vq->used_pos |
		(vq->used_wrap << VRING_PACKED_EVENT_F_WRAP_CTR));
	return n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const struct vdu_plugin *be = vbe_lookup("null");
	struct vdu_param p[2] = { { "size", "1G" }, { "read-zeroes", "on" } };
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "bench" };
	struct vdu_dev_info info;
	struct event_base *base;
	struct vdu_dev *dev;
	unsigned long long total = 4000000, done = 0;
	bool event_idx = true;
	const char *logdir = NULL;
	char logpath[4096];
	uint64_t feat;
	void *bh;
	double t0, t1;
	int c;

	qd = 32;
	num = 256;
	while ((c = getopt(argc, argv, "n:q:pezs:l:")) != -1) {
		switch (c) {
		case 'n': total = strtoull(optarg, NULL, 0); break;
		case 'q': qd = atoi(optarg); break;
		case 'p': packed = true; break;
		case 'e': event_idx = false; break;
		case 'z': p[1].value = "off"; break;
		case 's': num = atoi(optarg); break;
		case 'l': logdir = optarg; break;
		default:
			die("usage: engine-bench [-n REQUESTS] [-q QD] [-p] [-e] [-z] [-s QUEUE_SIZE] [-l LOGDIR]");
		}
	}
	if (qd < 1 || qd > MAXQD || 3 * qd > num)
		die("need 1 <= QD <= 256 and 3 * QD <= queue size");
	vdu_set_log(NULL, NULL, 0);
	base = event_base_new();
	if (!be || be->open(p, 2, &bh) < 0)
		die("cannot open the null backend");
	o.queue_size = num;
	if (packed)
		o.flags |= VDU_DEV_F_RING_PACKED;
	if (logdir) {
		snprintf(logpath, sizeof(logpath), "%s/bench", logdir);
		o.state_path = logpath;
	}
	if (vdu_dev_new(&o, be->backend, bh, base, &dev) < 0)
		die("vdu_dev_new failed");
	if (sim_open_default(base, dev, &s) < 0)
		die("simulated driver setup failed");
	vdu_dev_get_info(dev, &info);
	feat = info.features_offered & ~(F(VIRTIO_RING_F_INDIRECT_DESC) |
					 F(VIRTIO_RING_F_EVENT_IDX));
	if (event_idx)
		feat |= F(VIRTIO_RING_F_EVENT_IDX);
	if (sim_init(s, feat, 1, num, 0) != VDUSE_REQ_RESULT_OK)
		die("bring-up failed");
	vq = &s->vq[0];
	for (unsigned i = 0; i < qd; i++) {
		struct virtio_blk_outhdr h = { .type = htole32(VIRTIO_BLK_T_IN),
					       .sector = htole64(8ULL * i) };

		hdr_iova[i] = sim_alloc(s, 16);
		data_iova[i] = sim_alloc(s, 4096);
		st_iova[i] = sim_alloc(s, 16);
		sim_write(s, hdr_iova[i], &h, sizeof(h));
		if (sim_regions_spanned(s, data_iova[i], 4096) != 1) {
			data_iova[i] = sim_alloc(s, 4096); /* keep 1 segment */
		}
	}
	if (!packed)
		split_setup();
	t0 = now();
	while (done < total) {
		unsigned n;

		if (packed)
			packed_post();
		else
			split_post();
		sim_kick(s, 0);
		n = packed ? packed_reap() : split_reap();
		if (n != qd)
			die("a batch did not complete");
		done += n;
	}
	t1 = now();
	printf("%s ring%s, QD %u, %llu requests: %.2f M req/s, %.1f ns/req, irqs %u, bad %llu\n",
	       packed ? "packed" : "split", logdir ? " + inflight log" : "", qd, done, done / (t1 - t0) / 1e6,
	       (t1 - t0) * 1e9 / done, vq->irqs, (unsigned long long)bad);
	vdu_dev_free(dev);
	sim_free(s);
	if (logdir) {
		snprintf(logpath, sizeof(logpath), "%s/bench.q0.inflight", logdir);
		unlink(logpath);
	}
	be->close(bh);
	event_base_free(base);
	return bad ? 1 : 0;
}
