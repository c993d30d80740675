/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vduse-vhost-blk: a small userspace virtio-blk driver speaking vhost-vdpa,
 * the way a hypervisor does, to prove a VDUSE block device served over
 * /dev/vhost-vdpa-N.
 *
 * It sets the device up like QEMU's vhost-vdpa backend would (owner,
 * backend features, feature negotiation, status, config, IOTLB mappings of
 * memfd-backed "guest memory", split vrings with kick/call eventfds) and
 * then drives the ring itself: descriptor table, available ring, used ring.
 *
 * Scenarios (--scenario, comma-separated):
 *   full       basic,inflight-remap,remap,fault,reset
 *   basic      write/read-back/verify, flush, get-id, discard,
 *              write-zeroes, out-of-range -> IOERR, unknown type -> UNSUPP,
 *              a queue-depth burst, GET_VRING_BASE agrees with the ring
 *   inflight-remap  IOTLB churn while requests are in flight
 *   remap      INVALIDATE the data area, UPDATE it at new IOVAs, continue
 *   fault      a request pointing at an unmapped IOVA; the device must not
 *              complete it successfully; then reset and recover
 *   reset      status 0, full re-initialisation (new IOVAs, new eventfds,
 *              EVENT_IDX toggled), I/O again, earlier data still there
 *   write-pattern / check-pattern   --seed/--offset/--len pattern I/O
 *   bench      random reads (--bs, --qd, --seconds), prints IOPS
 *
 * Without a device: --dump FILE writes the pattern (--seed/--offset/--len)
 * to FILE; --check-file PATH compares PATH at --offset with it.
 *
 * Exit status: 0 success, 1 failure (with a message), 2 usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/vhost.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>

#define SECTOR 512u
#define MAX_REQ_BYTES (128u * 1024)   /* per data buffer */
#define CTL_BYTES (1u << 20)          /* rings + headers + status bytes */
#define AUX_BYTES (1u << 20)          /* mapped, unused: IOTLB churn */
#define MAX_QUEUE 256u

/* IOVA layouts: the initial one and the one after a remap or reset. */
#define IOVA_CTL_A  0x10000000ULL
#define IOVA_DATA_A 0x40000000ULL
#define IOVA_AUX_A  0x7f000000ULL
#define IOVA_CTL_B  0x210000000ULL
#define IOVA_DATA_B 0x380000000ULL
#define IOVA_AUX_B  0x37f000000ULL

/* ------------------------------------------------------------ options */

static struct {
	const char *dev;
	const char *scenario;
	const char *serial;
	const char *dump;
	const char *check_file;
	uint64_t seed, offset, len;
	bool len_set;
	bool null_backend;
	bool no_event_idx;
	unsigned qd, bs, seconds, qsize;
	int timeout_ms;
	int verbose;
} opt = {
	.scenario = "full",
	.seed = 1,
	.len = 1 << 20,
	.qd = 32,
	.bs = 4096,
	.seconds = 10,
	.qsize = 256,
	.timeout_ms = 10000,
};

static const char *prog = "vduse-vhost-blk";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: FAIL: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", prog);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

#define dbg(...) do { if (opt.verbose) info(__VA_ARGS__); } while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ------------------------------------------------------------ pattern */

/* Byte at absolute device offset off of the pattern with this seed: every
 * 8-byte word is a hash of (seed, word index), so misplaced data shows. */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void pattern_fill(uint8_t *buf, uint64_t off, size_t len, uint64_t seed)
{
	uint64_t w = UINT64_MAX, v = 0;

	for (size_t i = 0; i < len; i++) {
		uint64_t o = off + i;

		if (o / 8 != w) {
			w = o / 8;
			v = mix64(seed * 0x100000001b3ull ^ w);
		}
		buf[i] = v >> (8 * (o % 8));
	}
}

/* -1 if it matches, else the index of the first differing byte. */
static ssize_t pattern_check(const uint8_t *buf, uint64_t off, size_t len,
			     uint64_t seed, uint8_t *want_out)
{
	uint8_t tmp[4096];

	for (size_t done = 0; done < len;) {
		size_t n = len - done < sizeof(tmp) ? len - done : sizeof(tmp);

		pattern_fill(tmp, off + done, n, seed);
		if (memcmp(tmp, buf + done, n)) {
			for (size_t i = 0; i < n; i++)
				if (tmp[i] != buf[done + i]) {
					if (want_out)
						*want_out = tmp[i];
					return done + i;
				}
		}
		done += n;
	}
	return -1;
}

static ssize_t zero_check(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return i;
	return -1;
}

/* ------------------------------------------------------------ device */

struct slot {
	bool busy;
	uint32_t type;
	uint64_t sector;
	uint32_t len;          /* data bytes */
	uint64_t data_off;     /* offset of the data buffer in the data area */
	bool data_in_aux;      /* buffer in the aux area */
	uint64_t data_iova;    /* if set: this IOVA instead (fault test) */
	uint64_t t_submit;
	/* verification on completion */
	int check;             /* CHECK_* */
	uint64_t seed;
	uint8_t expect_status;
	uint32_t expect_used;  /* 0: do not check */
};

enum { CHECK_NONE, CHECK_PATTERN, CHECK_ZERO };

struct dev {
	int fd;
	int kickfd, callfd;
	uint64_t dev_features, features;
	uint32_t config_size;
	struct virtio_blk_config cfg;
	uint64_t capacity;     /* sectors */
	bool event_idx;

	/* guest memory: one memfd, three areas */
	int memfd;
	uint8_t *mem;
	size_t mem_len;
	uint8_t *ctl, *data, *aux;
	size_t data_len;
	uint64_t iova_ctl, iova_data, iova_aux;
	bool mapped;

	/* split ring, in the ctl area */
	unsigned num;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t avail_idx, last_used, kicked_at;
	uint64_t off_desc, off_avail, off_used, off_meta;
	struct slot *slots;
	unsigned nslots, inflight;

	/* stats */
	uint64_t completed, kicks, irqs_seen;
};

static struct dev D;

static int xioctl(int fd, unsigned long req, void *arg, const char *what)
{
	int r = ioctl(fd, req, arg);

	if (r < 0)
		die("%s failed: %s", what, strerror(errno));
	return r;
}

#define IOC(req, arg) xioctl(D.fd, req, arg, #req)

/* --------------------------------------------------------- IOTLB */

static void iotlb_msg(uint8_t type, uint64_t iova, uint64_t size, void *uaddr)
{
	struct vhost_msg_v2 m;
	ssize_t n;

	memset(&m, 0, sizeof(m));
	m.type = VHOST_IOTLB_MSG_V2;
	m.asid = 0;
	m.iotlb.type = type;
	m.iotlb.iova = iova;
	m.iotlb.size = size;
	m.iotlb.uaddr = (uintptr_t)uaddr;
	m.iotlb.perm = type == VHOST_IOTLB_UPDATE ? VHOST_ACCESS_RW : 0;
	do
		n = write(D.fd, &m, sizeof(m));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(m))
		die("IOTLB message type %u (iova 0x%" PRIx64 " size 0x%" PRIx64
		    ") failed: %s", type, iova, size,
		    n < 0 ? strerror(errno) : "short write");
}

static void map_all(uint64_t ctl, uint64_t data, uint64_t aux)
{
	iotlb_msg(VHOST_IOTLB_BATCH_BEGIN, 0, 0, NULL);
	iotlb_msg(VHOST_IOTLB_UPDATE, ctl, CTL_BYTES, D.ctl);
	iotlb_msg(VHOST_IOTLB_UPDATE, data, D.data_len, D.data);
	iotlb_msg(VHOST_IOTLB_UPDATE, aux, AUX_BYTES, D.aux);
	iotlb_msg(VHOST_IOTLB_BATCH_END, 0, 0, NULL);
	D.iova_ctl = ctl;
	D.iova_data = data;
	D.iova_aux = aux;
	D.mapped = true;
	dbg("mapped ctl@0x%" PRIx64 " data@0x%" PRIx64 " aux@0x%" PRIx64,
	    ctl, data, aux);
}

static void unmap_all(void)
{
	if (!D.mapped)
		return;
	iotlb_msg(VHOST_IOTLB_BATCH_BEGIN, 0, 0, NULL);
	iotlb_msg(VHOST_IOTLB_INVALIDATE, D.iova_ctl, CTL_BYTES, NULL);
	iotlb_msg(VHOST_IOTLB_INVALIDATE, D.iova_data, D.data_len, NULL);
	iotlb_msg(VHOST_IOTLB_INVALIDATE, D.iova_aux, AUX_BYTES, NULL);
	iotlb_msg(VHOST_IOTLB_BATCH_END, 0, 0, NULL);
	D.mapped = false;
}

static void mem_alloc(unsigned nslots)
{
	D.data_len = (size_t)nslots * MAX_REQ_BYTES;
	D.mem_len = CTL_BYTES + D.data_len + AUX_BYTES;
	/* vhost-vdpa maps only shared file-backed memory for VDUSE (the
	 * daemon mmaps the file); anonymous memory would be skipped. */
	D.memfd = memfd_create("vduse-vhost-blk-guest", MFD_CLOEXEC);
	if (D.memfd < 0)
		die("memfd_create: %s", strerror(errno));
	if (ftruncate(D.memfd, D.mem_len) < 0)
		die("ftruncate memfd: %s", strerror(errno));
	D.mem = mmap(NULL, D.mem_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		     D.memfd, 0);
	if (D.mem == MAP_FAILED)
		die("mmap memfd: %s", strerror(errno));
	D.ctl = D.mem;
	D.data = D.mem + CTL_BYTES;
	D.aux = D.data + D.data_len;
}

/* --------------------------------------------------------- setup */

static uint8_t get_status(void)
{
	uint8_t s;

	IOC(VHOST_VDPA_GET_STATUS, &s);
	return s;
}

static void set_status(uint8_t s)
{
	uint8_t got;

	IOC(VHOST_VDPA_SET_STATUS, &s);
	got = get_status();
	if (got != s)
		die("status 0x%02x not accepted: device status is 0x%02x%s", s,
		    got, (s & VIRTIO_CONFIG_S_FEATURES_OK) &&
		    !(got & VIRTIO_CONFIG_S_FEATURES_OK) ?
		    " (features rejected)" : "");
}

static void read_config(void)
{
	size_t n = D.config_size < sizeof(D.cfg) ? D.config_size : sizeof(D.cfg);
	struct vhost_vdpa_config *c = calloc(1, sizeof(*c) + n);

	if (!c)
		die("out of memory");
	c->off = 0;
	c->len = n;
	IOC(VHOST_VDPA_GET_CONFIG, c);
	memset(&D.cfg, 0, sizeof(D.cfg));
	memcpy(&D.cfg, c->buf, n);
	free(c);
	D.capacity = le64toh(D.cfg.capacity);
	if (D.capacity == 0)
		die("config: capacity is 0");
}

static void ring_layout(void)
{
	uint64_t off = 0;

	D.off_desc = off;
	off += 16ull * D.num;
	off = (off + 4095) & ~4095ull;
	D.off_avail = off;
	off += 6 + 2ull * D.num;
	off = (off + 4095) & ~4095ull;
	D.off_used = off;
	off += 6 + 8ull * D.num;
	off = (off + 4095) & ~4095ull;
	D.off_meta = off;         /* per slot: 16-byte header + status */
	if (D.off_meta + 32ull * D.nslots > CTL_BYTES)
		die("internal: ctl area too small");
	memset(D.ctl, 0, CTL_BYTES);
	D.desc = (void *)(D.ctl + D.off_desc);
	D.avail = (void *)(D.ctl + D.off_avail);
	D.used = (void *)(D.ctl + D.off_used);
}

static void close_eventfds(void)
{
	if (D.kickfd >= 0)
		close(D.kickfd);
	if (D.callfd >= 0)
		close(D.callfd);
	D.kickfd = D.callfd = -1;
}

/*
 * The whole driver-side initialisation: everything after SET_OWNER, so a
 * reset is followed by exactly this again.
 */
static void dev_init(bool event_idx, uint64_t ctl, uint64_t data, uint64_t aux)
{
	const uint64_t want = (1ull << VIRTIO_F_VERSION_1) |
		(1ull << VIRTIO_F_ACCESS_PLATFORM) |
		(1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
		(1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_TOPOLOGY) |
		(1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD) |
		(1ull << VIRTIO_BLK_F_WRITE_ZEROES) | (1ull << VIRTIO_BLK_F_RO) |
		(1ull << VIRTIO_BLK_F_MQ) |
		(event_idx ? 1ull << VIRTIO_RING_F_EVENT_IDX : 0);
	uint64_t bf, f;
	uint32_t id;
	uint16_t vnum;
	uint8_t st;

	st = get_status();
	if (st != 0)
		die("device status is 0x%02x before initialisation, want 0", st);

	IOC(VHOST_GET_BACKEND_FEATURES, &bf);
	const uint64_t need = (1ull << VHOST_BACKEND_F_IOTLB_MSG_V2) |
			      (1ull << VHOST_BACKEND_F_IOTLB_BATCH);
	if ((bf & need) != need)
		die("backend features 0x%" PRIx64 " lack IOTLB_MSG_V2|IOTLB_BATCH",
		    bf);
	bf = need;
	IOC(VHOST_SET_BACKEND_FEATURES, &bf);

	IOC(VHOST_VDPA_GET_DEVICE_ID, &id);
	if (id != VIRTIO_ID_BLOCK)
		die("device id is %u, want %u (virtio-blk)", id, VIRTIO_ID_BLOCK);
	IOC(VHOST_VDPA_GET_CONFIG_SIZE, &D.config_size);
	if (D.config_size < 8)
		die("config size %u is too small for virtio-blk", D.config_size);

	IOC(VHOST_GET_FEATURES, &D.dev_features);
	if (!(D.dev_features & (1ull << VIRTIO_F_VERSION_1)) ||
	    !(D.dev_features & (1ull << VIRTIO_F_ACCESS_PLATFORM)))
		die("device features 0x%" PRIx64 " lack VERSION_1 or ACCESS_PLATFORM",
		    D.dev_features);
	f = D.dev_features & want;
	IOC(VHOST_SET_FEATURES, &f);
	D.features = f;
	D.event_idx = f & (1ull << VIRTIO_RING_F_EVENT_IDX);

	set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
	set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		   VIRTIO_CONFIG_S_FEATURES_OK);
	read_config();

	/* Queue 0 only; any others stay disabled. */
	IOC(VHOST_VDPA_GET_VRING_NUM, &vnum);
	D.num = opt.qsize;
	if (D.num > vnum)
		D.num = vnum;
	if (D.num < 4 || (D.num & (D.num - 1)))
		die("unusable queue size %u (device max %u)", D.num, vnum);
	ring_layout();
	D.avail_idx = D.last_used = D.kicked_at = 0;
	D.inflight = 0;
	for (unsigned i = 0; i < D.nslots; i++)
		D.slots[i].busy = false;
	if (D.nslots * 3 > D.num)
		D.nslots = D.num / 3;

	map_all(ctl, data, aux);

	struct vhost_vring_state s = { .index = 0, .num = D.num };
	IOC(VHOST_SET_VRING_NUM, &s);
	s.num = 0;
	IOC(VHOST_SET_VRING_BASE, &s);
	struct vhost_vring_addr a = {
		.index = 0,
		.desc_user_addr = D.iova_ctl + D.off_desc,
		.avail_user_addr = D.iova_ctl + D.off_avail,
		.used_user_addr = D.iova_ctl + D.off_used,
	};
	IOC(VHOST_SET_VRING_ADDR, &a);
	close_eventfds();
	D.kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	D.callfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (D.kickfd < 0 || D.callfd < 0)
		die("eventfd: %s", strerror(errno));
	struct vhost_vring_file kf = { .index = 0, .fd = D.kickfd };
	IOC(VHOST_SET_VRING_KICK, &kf);
	struct vhost_vring_file cf = { .index = 0, .fd = D.callfd };
	IOC(VHOST_SET_VRING_CALL, &cf);
	s.index = 0;
	s.num = 1;
	IOC(VHOST_VDPA_SET_VRING_ENABLE, &s);

	set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	info("device ready: features 0x%" PRIx64 " (offered 0x%" PRIx64 "), "
	     "capacity %" PRIu64 " sectors, config %u bytes, ring %u, %s",
	     D.features, D.dev_features, D.capacity, D.config_size, D.num,
	     D.event_idx ? "event-idx" : "flags");
}

static void dev_open(void)
{
	D.fd = open(opt.dev, O_RDWR | O_CLOEXEC);
	if (D.fd < 0)
		die("cannot open %s: %s", opt.dev, strerror(errno));
	D.kickfd = D.callfd = -1;
	IOC(VHOST_SET_OWNER, NULL);
	D.nslots = MAX_QUEUE / 3;
	D.slots = calloc(D.nslots, sizeof(*D.slots));
	if (!D.slots)
		die("out of memory");
	mem_alloc(D.nslots);
}

static void dev_reset(void)
{
	set_status(0);
	info("device reset (status 0)");
}

/* --------------------------------------------------------- ring */

#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)

static inline uint16_t rd16_acq(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline void wr16_rel(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

static inline uint16_t *avail_used_event(void)
{
	return &D.avail->ring[D.num];
}

static inline uint16_t *used_avail_event(void)
{
	return (uint16_t *)&D.used->ring[D.num];
}

static uint8_t *slot_hdr(unsigned i) { return D.ctl + D.off_meta + 32ull * i; }
static uint8_t *slot_status(unsigned i) { return slot_hdr(i) + 16; }
static uint64_t slot_hdr_iova(unsigned i) { return D.iova_ctl + D.off_meta + 32ull * i; }

static void kick(void)
{
	bool need;

	/* Publish avail->idx before reading the device's suppression. */
	mb();
	if (D.event_idx) {
		uint16_t ev = rd16_acq(used_avail_event());

		need = vring_need_event(ev, D.avail_idx, D.kicked_at);
	} else
		need = !(rd16_acq(&D.used->flags) & VRING_USED_F_NO_NOTIFY);
	D.kicked_at = D.avail_idx;
	if (need) {
		if (eventfd_write(D.kickfd, 1) < 0)
			die("kick: %s", strerror(errno));
		D.kicks++;
	}
}

static int free_slot(void)
{
	for (unsigned i = 0; i < D.nslots; i++)
		if (!D.slots[i].busy)
			return i;
	return -1;
}

/*
 * Queue a request on slot i (not yet kicked).  data_off: offset in the
 * data area (or aux area when s->data_in_aux); len 0 for no data buffer.
 */
static void post(unsigned i)
{
	struct slot *s = &D.slots[i];
	uint8_t *hdr = slot_hdr(i);
	struct vring_desc *d = &D.desc[3 * i];
	bool dev_writes = s->type == VIRTIO_BLK_T_IN ||
			  s->type == VIRTIO_BLK_T_GET_ID;
	uint64_t data_iova = s->data_iova ? s->data_iova :
		(s->data_in_aux ? D.iova_aux : D.iova_data) + s->data_off;
	uint32_t t = htole32(s->type), z = 0;
	uint64_t sec = htole64(s->sector);
	unsigned n = 0;

	memcpy(hdr, &t, 4);
	memcpy(hdr + 4, &z, 4);
	memcpy(hdr + 8, &sec, 8);
	*slot_status(i) = 0xee;
	d[n].addr = htole64(slot_hdr_iova(i));
	d[n].len = htole32(16);
	d[n].flags = htole16(VRING_DESC_F_NEXT);
	d[n].next = htole16(3 * i + n + 1);
	n++;
	if (s->len) {
		d[n].addr = htole64(data_iova);
		d[n].len = htole32(s->len);
		d[n].flags = htole16(VRING_DESC_F_NEXT |
				     (dev_writes ? VRING_DESC_F_WRITE : 0));
		d[n].next = htole16(3 * i + n + 1);
		n++;
	}
	d[n].addr = htole64(slot_hdr_iova(i) + 16);
	d[n].len = htole32(1);
	d[n].flags = htole16(VRING_DESC_F_WRITE);
	d[n].next = 0;
	s->busy = true;
	s->t_submit = now_ns();
	D.inflight++;
	D.avail->ring[D.avail_idx % D.num] = htole16(3 * i);
	D.avail_idx++;
	/* Descriptors and ring entry before the index. */
	wr16_rel(&D.avail->idx, D.avail_idx);
}

static const char *type_name(uint32_t t)
{
	switch (t) {
	case VIRTIO_BLK_T_IN: return "read";
	case VIRTIO_BLK_T_OUT: return "write";
	case VIRTIO_BLK_T_FLUSH: return "flush";
	case VIRTIO_BLK_T_GET_ID: return "get-id";
	case VIRTIO_BLK_T_DISCARD: return "discard";
	case VIRTIO_BLK_T_WRITE_ZEROES: return "write-zeroes";
	default: return "unknown-type";
	}
}

static uint8_t *slot_data(const struct slot *s)
{
	return (s->data_in_aux ? D.aux : D.data) + s->data_off;
}

static void complete(unsigned i, uint32_t used_len)
{
	struct slot *s = &D.slots[i];
	uint8_t st = *slot_status(i);
	ssize_t bad;
	uint8_t want = 0;

	s->busy = false;
	D.inflight--;
	D.completed++;
	if (st != s->expect_status)
		die("%s of %u bytes at sector %" PRIu64 ": status %u, want %u",
		    type_name(s->type), s->len, s->sector, st, s->expect_status);
	if (s->expect_used && used_len != s->expect_used)
		die("%s of %u bytes at sector %" PRIu64 ": used length %u, want %u",
		    type_name(s->type), s->len, s->sector, used_len,
		    s->expect_used);
	if (st != VIRTIO_BLK_S_OK)
		return;
	switch (s->check) {
	case CHECK_PATTERN:
		bad = pattern_check(slot_data(s), s->sector * SECTOR, s->len,
				    s->seed, &want);
		if (bad >= 0)
			die("data mismatch: read of %u bytes at sector %" PRIu64
			    ": byte at device offset %" PRIu64 " is 0x%02x, "
			    "want 0x%02x (pattern seed %" PRIu64 ")", s->len,
			    s->sector, s->sector * SECTOR + bad,
			    slot_data(s)[bad], want, s->seed);
		break;
	case CHECK_ZERO:
		bad = zero_check(slot_data(s), s->len);
		if (bad >= 0)
			die("data mismatch: read of %u bytes at sector %" PRIu64
			    ": byte at device offset %" PRIu64 " is 0x%02x, "
			    "want 0", s->len, s->sector, s->sector * SECTOR + bad,
			    slot_data(s)[bad]);
		break;
	}
}

/* Reap used entries; returns how many. */
static unsigned reap(void)
{
	unsigned n = 0;

	for (;;) {
		uint16_t uidx = rd16_acq(&D.used->idx);

		while (D.last_used != uidx) {
			struct vring_used_elem *e = &D.used->ring[D.last_used % D.num];
			uint32_t id = le32toh(e->id), len = le32toh(e->len);

			if (id >= 3 * D.nslots || id % 3 || !D.slots[id / 3].busy)
				die("device returned bogus used id %u (used idx %u)",
				    id, D.last_used);
			D.last_used++;
			complete(id / 3, len);
			n++;
		}
		if (!D.event_idx)
			return n;
		/* Ask for an interrupt at the next entry, then look again
		 * so that none slips in between. */
		wr16_rel(avail_used_event(), D.last_used);
		mb();
		if (rd16_acq(&D.used->idx) == D.last_used)
			return n;
	}
}

/* Wait until at least one request completes (or none is in flight). */
static int wait_some(int timeout_ms, bool fatal)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000;

	while (D.inflight) {
		struct pollfd p = { .fd = D.callfd, .events = POLLIN };
		eventfd_t v;
		int64_t left;
		int r;

		if (reap())
			return 0;
		left = (int64_t)(deadline - now_ns()) / 1000000;
		if (left <= 0) {
			if (!fatal)
				return -ETIMEDOUT;
			die("timed out after %d ms waiting for used buffers "
			    "(%u in flight, avail idx %u, used idx %u, "
			    "device status 0x%02x)", timeout_ms, D.inflight,
			    D.avail_idx, rd16_acq(&D.used->idx), get_status());
		}
		r = poll(&p, 1, left > 100 ? 100 : (int)left);
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (r > 0 && eventfd_read(D.callfd, &v) == 0)
			D.irqs_seen++;
	}
	return 0;
}

static void drain(void)
{
	while (D.inflight)
		wait_some(opt.timeout_ms, true);
}

/* One synchronous request. */
static void req_sync(uint32_t type, uint64_t sector, uint32_t len,
		     uint64_t data_off, int check, uint64_t seed,
		     uint8_t expect_status, uint32_t expect_used)
{
	int i;

	drain();
	i = free_slot();
	D.slots[i] = (struct slot){
		.type = type, .sector = sector, .len = len, .data_off = data_off,
		.check = check, .seed = seed, .expect_status = expect_status,
		.expect_used = expect_used,
	};
	post(i);
	kick();
	drain();
}

/*
 * Pattern I/O over [off, off+len) in requests of up to chunk bytes with up
 * to qd in flight.  write: fill with the pattern; read: verify it (or
 * zeroes when zero is set, e.g. the null backend).
 */
static void rw_range(bool write, uint64_t off, uint64_t len, uint64_t seed,
		     bool zero, unsigned qd, unsigned chunk)
{
	uint64_t pos = off;

	if (off % SECTOR || len % SECTOR)
		die("offset and length must be multiples of %u", SECTOR);
	if (off / SECTOR > D.capacity || len / SECTOR > D.capacity - off / SECTOR)
		die("range [%" PRIu64 ", +%" PRIu64 ") is beyond the device "
		    "(%" PRIu64 " bytes)", off, len, D.capacity * SECTOR);
	if (chunk > MAX_REQ_BYTES)
		chunk = MAX_REQ_BYTES;
	if (qd > D.nslots)
		qd = D.nslots;
	while (pos < off + len || D.inflight) {
		while (pos < off + len && D.inflight < qd) {
			int i = free_slot();
			uint32_t n = off + len - pos < chunk ? off + len - pos : chunk;
			struct slot *s = &D.slots[i];

			*s = (struct slot){
				.type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
				.sector = pos / SECTOR, .len = n,
				.data_off = (uint64_t)i * MAX_REQ_BYTES,
				.check = write ? CHECK_NONE : zero ? CHECK_ZERO : CHECK_PATTERN,
				.seed = seed, .expect_status = VIRTIO_BLK_S_OK,
				.expect_used = write ? 1 : n + 1,
			};
			if (write)
				pattern_fill(slot_data(s), pos, n, seed);
			else
				memset(slot_data(s), 0xa5, n);
			post(i);
			pos += n;
		}
		kick();
		if (D.inflight)
			wait_some(opt.timeout_ms, true);
	}
}

static void write_range(uint64_t off, uint64_t len, uint64_t seed)
{
	rw_range(true, off, len, seed, false, 16, MAX_REQ_BYTES);
}

/* Read back what write_range wrote (zeroes on the null backend). */
static void verify_range(uint64_t off, uint64_t len, uint64_t seed)
{
	rw_range(false, off, len, seed, opt.null_backend, 16, MAX_REQ_BYTES);
}

static bool has(unsigned bit)
{
	return D.features & (1ull << bit);
}

/* --------------------------------------------------------- scenarios */

/* Regions the scenarios write, with their seeds, re-verified later. */
struct region { uint64_t off, len, seed; };
static struct region regions[8];
static unsigned nregions;

static void remember(uint64_t off, uint64_t len, uint64_t seed)
{
	if (nregions < sizeof(regions) / sizeof(regions[0]))
		regions[nregions++] = (struct region){ off, len, seed };
}

static void verify_remembered(const char *when)
{
	for (unsigned i = 0; i < nregions; i++)
		verify_range(regions[i].off, regions[i].len, regions[i].seed);
	info("%s: %u earlier region(s) read back intact", when, nregions);
}

static void check_vring_base(void)
{
	struct vhost_vring_state s = { .index = 0 };

	drain();
	IOC(VHOST_GET_VRING_BASE, &s);
	if ((uint16_t)s.num != D.avail_idx)
		die("VHOST_GET_VRING_BASE says the device consumed %u entries, "
		    "the driver made %u available", s.num, D.avail_idx);
}

static void scenario_basic(void)
{
	uint64_t cap = D.capacity * SECTOR;
	uint64_t big = cap >= (8u << 20) ? 2u << 20 : cap / 4;
	char id[VIRTIO_BLK_ID_BYTES + 1] = { 0 };

	big -= big % 4096;
	/* 1. write/read-back: start, an odd unaligned spot, the very end */
	write_range(0, big, 11);
	remember(0, big, 11);
	write_range(cap / 2 + 7 * SECTOR, 5 * SECTOR + 4096, 12);
	remember(cap / 2 + 7 * SECTOR, 5 * SECTOR + 4096, 12);
	write_range(cap - 64 * 1024, 64 * 1024, 13);
	remember(cap - 64 * 1024, 64 * 1024, 13);
	verify_remembered("write/read");

	/* 2. flush */
	if (has(VIRTIO_BLK_F_FLUSH)) {
		req_sync(VIRTIO_BLK_T_FLUSH, 0, 0, 0, CHECK_NONE, 0,
			 VIRTIO_BLK_S_OK, 1);
		info("flush: ok");
	} else
		info("flush: not offered, skipped");

	/* 3. get-id */
	memset(D.data, 0xff, VIRTIO_BLK_ID_BYTES);
	req_sync(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, 0, CHECK_NONE, 0,
		 VIRTIO_BLK_S_OK, VIRTIO_BLK_ID_BYTES + 1);
	memcpy(id, D.data, VIRTIO_BLK_ID_BYTES);
	if (opt.serial && strcmp(id, opt.serial))
		die("get-id returned serial '%s', want '%s'", id, opt.serial);
	if (!id[0])
		die("get-id returned an empty serial");
	info("get-id: serial '%s'", id);

	/* 4. discard and write-zeroes (a scratch range past the first region) */
	uint64_t scratch = big + 1024 * 1024;
	if (scratch + 256 * 1024 <= cap / 2) {
		if (has(VIRTIO_BLK_F_DISCARD)) {
			struct virtio_blk_discard_write_zeroes *r = (void *)D.data;

			write_range(scratch, 128 * 1024, 14);
			r->sector = htole64(scratch / SECTOR);
			r->num_sectors = htole32(128 * 1024 / SECTOR);
			r->flags = 0;
			req_sync(VIRTIO_BLK_T_DISCARD, 0, sizeof(*r), 0, CHECK_NONE,
				 0, VIRTIO_BLK_S_OK, 1);
			info("discard: ok");
		} else
			info("discard: not offered, skipped");
		if (has(VIRTIO_BLK_F_WRITE_ZEROES)) {
			struct virtio_blk_discard_write_zeroes *r = (void *)D.data;

			write_range(scratch + 128 * 1024, 128 * 1024, 15);
			r->sector = htole64((scratch + 128 * 1024) / SECTOR);
			r->num_sectors = htole32(128 * 1024 / SECTOR);
			r->flags = 0;
			req_sync(VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(*r), 0,
				 CHECK_NONE, 0, VIRTIO_BLK_S_OK, 1);
			rw_range(false, scratch + 128 * 1024, 128 * 1024, 0, true,
				 4, MAX_REQ_BYTES);
			info("write-zeroes: ok, range reads back as zeroes");
		} else
			info("write-zeroes: not offered, skipped");
	}

	/* 5. out of range -> IOERR */
	req_sync(VIRTIO_BLK_T_IN, D.capacity, SECTOR, 0, CHECK_NONE, 0,
		 VIRTIO_BLK_S_IOERR, 0);
	req_sync(VIRTIO_BLK_T_IN, D.capacity - 1, 2 * SECTOR, 0, CHECK_NONE, 0,
		 VIRTIO_BLK_S_IOERR, 0);
	req_sync(VIRTIO_BLK_T_OUT, D.capacity + 100, 4096, 0, CHECK_NONE, 0,
		 VIRTIO_BLK_S_IOERR, 0);
	req_sync(VIRTIO_BLK_T_IN, UINT64_MAX / 2, 4096, 0, CHECK_NONE, 0,
		 VIRTIO_BLK_S_IOERR, 0);
	info("out-of-range reads/writes: IOERR");
	/* 6. an unknown request type -> UNSUPP */
	req_sync(0x7fff, 0, 0, 0, CHECK_NONE, 0, VIRTIO_BLK_S_UNSUPP, 0);
	info("unknown request type: UNSUPP");

	/* 7. a burst: the whole queue depth of mixed reads of 4 KiB */
	for (unsigned round = 0; round < 4; round++)
		rw_range(false, 0, big < 1024 * 1024 ? big : 1024 * 1024, 11,
			 opt.null_backend, D.nslots, 4096);
	info("burst: %u-deep 4 KiB reads ok", D.nslots);

	check_vring_base();
	info("basic: ok (%" PRIu64 " requests, %" PRIu64 " kicks, %" PRIu64
	     " call events)", D.completed, D.kicks, D.irqs_seen);
}

/*
 * Requests in flight while the IOTLB changes: the VDUSE device gets a
 * full-range UPDATE_IOTLB and must keep serving the requests it already
 * took (their memory is still mapped: only the aux area moves).
 */
static void scenario_inflight_remap(void)
{
	uint64_t cap = D.capacity * SECTOR;
	uint64_t base = cap / 4 - (cap / 4) % 4096;
	unsigned qd = D.nslots, rounds = 8, pending = 0;

	for (unsigned r = 0; r < rounds; r++) {
		uint64_t aux_new = (r % 2) ? IOVA_AUX_A : IOVA_AUX_B;

		for (unsigned i = 0; i < qd; i++) {
			struct slot *s = &D.slots[i];

			*s = (struct slot){
				.type = VIRTIO_BLK_T_OUT,
				.sector = base / SECTOR + (uint64_t)i * 128,
				.len = 64 * 1024,
				.data_off = (uint64_t)i * MAX_REQ_BYTES,
				.expect_status = VIRTIO_BLK_S_OK,
				.expect_used = 1,
			};
			pattern_fill(slot_data(s), s->sector * SECTOR, s->len,
				     100 + r);
			post(i);
		}
		kick();
		/* Move the aux area while those are being served. */
		iotlb_msg(VHOST_IOTLB_BATCH_BEGIN, 0, 0, NULL);
		iotlb_msg(VHOST_IOTLB_INVALIDATE, D.iova_aux, AUX_BYTES, NULL);
		iotlb_msg(VHOST_IOTLB_UPDATE, aux_new, AUX_BYTES, D.aux);
		iotlb_msg(VHOST_IOTLB_BATCH_END, 0, 0, NULL);
		D.iova_aux = aux_new;
		/* How many had not completed when the device acknowledged
		 * the update (informational: depends on the backend). */
		pending += (uint16_t)(D.avail_idx - rd16_acq(&D.used->idx));
		drain();
	}
	/* Slot i wrote 64 KiB at sector base/512 + 128 * i: one contiguous
	 * range holding the last round's pattern. */
	rw_range(false, base, (uint64_t)qd * 64 * 1024, 100 + rounds - 1,
		 opt.null_backend, 16, MAX_REQ_BYTES);
	remember(base, (uint64_t)qd * 64 * 1024, 100 + rounds - 1);
	info("inflight-remap: %u rounds of %u writes across IOTLB updates ok "
	     "(%u of them not yet completed when an update was acknowledged)",
	     rounds, qd, pending);
}

static void scenario_remap(void)
{
	uint64_t old = D.iova_data;
	uint64_t new = old == IOVA_DATA_A ? IOVA_DATA_B : IOVA_DATA_A;
	uint64_t cap = D.capacity * SECTOR;
	uint64_t off = cap / 8 - (cap / 8) % 4096;

	drain();
	/* Invalidate on its own (one set_map), then map at the new place. */
	iotlb_msg(VHOST_IOTLB_INVALIDATE, old, D.data_len, NULL);
	iotlb_msg(VHOST_IOTLB_BATCH_BEGIN, 0, 0, NULL);
	iotlb_msg(VHOST_IOTLB_UPDATE, new, D.data_len, D.data);
	iotlb_msg(VHOST_IOTLB_BATCH_END, 0, 0, NULL);
	D.iova_data = new;
	info("remap: data area moved from IOVA 0x%" PRIx64 " to 0x%" PRIx64,
	     old, new);
	write_range(off, 512 * 1024, 21);
	remember(off, 512 * 1024, 21);
	verify_remembered("remap");
	check_vring_base();
	info("remap: ok");
}

/* A buffer at an IOVA that is not mapped (after "remap": the data area's
 * old IOVA, so a translation the device kept would show): the device must
 * not report success (it may fail the request or stop the queue).  A
 * reset recovers. */
static void scenario_fault(void)
{
	uint64_t stale = D.iova_data == IOVA_DATA_A ? IOVA_DATA_B : IOVA_DATA_A;
	struct slot *s;
	int r;

	drain();
	s = &D.slots[0];
	*s = (struct slot){
		.type = VIRTIO_BLK_T_IN, .sector = 0, .len = 4096,
		.data_iova = stale,
		.check = CHECK_NONE, .expect_status = VIRTIO_BLK_S_IOERR,
	};
	post(0);
	kick();
	r = wait_some(2000, false);
	if (r == 0 && D.inflight == 0)
		info("fault: read into unmapped IOVA 0x%" PRIx64 " failed with IOERR",
		     stale);
	else
		info("fault: read into unmapped IOVA 0x%" PRIx64 " not completed "
		     "(queue stopped)", stale);
	dev_reset();
	for (unsigned i = 0; i < D.nslots; i++)
		D.slots[i].busy = false;
	D.inflight = 0;
	unmap_all();
	dev_init(!opt.no_event_idx, IOVA_CTL_A, IOVA_DATA_A, IOVA_AUX_A);
	verify_remembered("fault recovery");
	info("fault: ok, device recovered after reset");
}

static void scenario_reset(void)
{
	bool ei = D.event_idx;

	drain();
	dev_reset();
	unmap_all();
	/* Full sequence again at other IOVAs, the other notification mode. */
	dev_init(!ei && !opt.no_event_idx, IOVA_CTL_B, IOVA_DATA_B, IOVA_AUX_B);
	verify_remembered("after reset");
	write_range(D.capacity * SECTOR / 2 + 1024 * 1024, 256 * 1024, 31);
	remember(D.capacity * SECTOR / 2 + 1024 * 1024, 256 * 1024, 31);
	verify_remembered("after reset");
	check_vring_base();
	dev_reset();
	unmap_all();
	dev_init(ei, IOVA_CTL_A, IOVA_DATA_A, IOVA_AUX_A);
	verify_remembered("second re-init");
	info("reset: ok, two reset/re-init cycles");
}

static void scenario_bench(void)
{
	uint64_t nblocks, done = 0, end, t0;
	uint64_t rng = 0x1234567 ^ opt.seed;
	unsigned qd = opt.qd;

	if (opt.bs % SECTOR || opt.bs == 0 || opt.bs > MAX_REQ_BYTES)
		die("--bs must be a multiple of %u up to %u", SECTOR, MAX_REQ_BYTES);
	if (qd == 0 || qd > D.nslots)
		die("--qd must be 1..%u", D.nslots);
	nblocks = D.capacity * SECTOR / opt.bs;
	if (!nblocks)
		die("device smaller than one block");
	drain();
	t0 = now_ns();
	end = t0 + (uint64_t)opt.seconds * 1000000000ull;
	for (;;) {
		bool more = now_ns() < end;

		while (more && D.inflight < qd) {
			int i = free_slot();

			rng = mix64(rng);
			D.slots[i] = (struct slot){
				.type = VIRTIO_BLK_T_IN,
				.sector = (rng % nblocks) * (opt.bs / SECTOR),
				.len = opt.bs,
				.data_off = (uint64_t)i * MAX_REQ_BYTES,
				.expect_status = VIRTIO_BLK_S_OK,
			};
			post(i);
		}
		kick();
		if (!D.inflight)
			break;
		uint64_t before = D.completed;
		wait_some(opt.timeout_ms, true);
		done += D.completed - before;
	}
	double secs = (now_ns() - t0) / 1e9;
	printf("bench: %" PRIu64 " reads of %u bytes, qd %u, %.2f s: IOPS %.0f, "
	       "%.1f MiB/s\n", done, opt.bs, qd, secs, done / secs,
	       done * (double)opt.bs / secs / 1048576);
	fflush(stdout);
}

/* --------------------------------------------------------- main */

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end)
		goto bad;
	return v;
bad:
	fprintf(stderr, "%s: invalid %s '%s'\n", prog, what, s);
	exit(2);
}

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s --dev /dev/vhost-vdpa-N [--scenario LIST] [OPTIONS]\n"
"       %s --dump FILE --seed S --offset O --len L\n"
"       %s --check-file PATH --seed S --offset O --len L\n"
"A userspace virtio-blk driver over vhost-vdpa (test and benchmark tool).\n"
"  --dev PATH          the vhost-vdpa character device\n"
"  --scenario LIST     comma-separated: full (= basic,inflight-remap,remap,\n"
"                      fault,reset), basic, inflight-remap, remap, fault,\n"
"                      reset, write-pattern, check-pattern, bench\n"
"  --serial S          get-id must return S\n"
"  --null              the backend discards writes: reads must be zeroes\n"
"  --no-event-idx      do not negotiate VIRTIO_RING_F_EVENT_IDX\n"
"  --seed N --offset BYTES --len BYTES   pattern for write/check-pattern,\n"
"                      --dump and --check-file (default seed 1, offset 0,\n"
"                      len 1M)\n"
"  --dump FILE         write the expected pattern bytes to FILE and exit\n"
"  --check-file PATH   compare PATH at --offset with the pattern and exit\n"
"  --bench             same as --scenario bench: random reads\n"
"  --qd N --bs BYTES --seconds S   bench parameters (32, 4096, 10)\n"
"  --queue-size N      ring size to use (default 256, capped by the device)\n"
"  --timeout MS        longest wait for a used buffer (default 10000)\n"
"  -v, --verbose\n", prog, prog, prog);
}

static int file_pattern(void)
{
	uint8_t *buf = malloc(1 << 20);
	uint64_t done = 0;
	int fd;

	if (!buf)
		die("out of memory");
	if (opt.dump) {
		fd = open(opt.dump, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die("cannot create %s: %s", opt.dump, strerror(errno));
		while (done < opt.len) {
			size_t n = opt.len - done < (1 << 20) ? opt.len - done : (1 << 20);

			pattern_fill(buf, opt.offset + done, n, opt.seed);
			if (write(fd, buf, n) != (ssize_t)n)
				die("write %s: %s", opt.dump, strerror(errno));
			done += n;
		}
		close(fd);
		return 0;
	}
	fd = open(opt.check_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("cannot open %s: %s", opt.check_file, strerror(errno));
	while (done < opt.len) {
		size_t n = opt.len - done < (1 << 20) ? opt.len - done : (1 << 20);
		ssize_t r = pread(fd, buf, n, opt.offset + done);
		uint8_t want = 0;
		ssize_t bad;

		if (r != (ssize_t)n)
			die("read %s at %" PRIu64 ": %s", opt.check_file,
			    opt.offset + done, r < 0 ? strerror(errno) : "short read");
		bad = pattern_check(buf, opt.offset + done, n, opt.seed, &want);
		if (bad >= 0)
			die("%s: byte at offset %" PRIu64 " is 0x%02x, want 0x%02x "
			    "(pattern seed %" PRIu64 ")", opt.check_file,
			    opt.offset + done + bad, buf[bad], want, opt.seed);
		done += n;
	}
	close(fd);
	info("%s: %" PRIu64 " bytes at offset %" PRIu64 " match pattern seed %"
	     PRIu64, opt.check_file, opt.len, opt.offset, opt.seed);
	return 0;
}

static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p && *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);

		if (l == n && !strncmp(p, name, n))
			return true;
		p = c ? c + 1 : NULL;
	}
	return false;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dev", required_argument, NULL, 'd' },
		{ "scenario", required_argument, NULL, 's' },
		{ "serial", required_argument, NULL, 'S' },
		{ "null", no_argument, NULL, 'n' },
		{ "no-event-idx", no_argument, NULL, 'E' },
		{ "seed", required_argument, NULL, 'x' },
		{ "offset", required_argument, NULL, 'o' },
		{ "len", required_argument, NULL, 'l' },
		{ "dump", required_argument, NULL, 'D' },
		{ "check-file", required_argument, NULL, 'C' },
		{ "bench", no_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },
		{ "bs", required_argument, NULL, 'B' },
		{ "seconds", required_argument, NULL, 't' },
		{ "queue-size", required_argument, NULL, 'Q' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static const char *known[] = {
		"full", "basic", "inflight-remap", "remap", "fault", "reset",
		"write-pattern", "check-pattern", "bench",
	};
	const char *sc;
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
		switch (c) {
		case 'd': opt.dev = optarg; break;
		case 's': opt.scenario = optarg; break;
		case 'S': opt.serial = optarg; break;
		case 'n': opt.null_backend = true; break;
		case 'E': opt.no_event_idx = true; break;
		case 'x': opt.seed = parse_u64(optarg, "seed"); break;
		case 'o': opt.offset = parse_u64(optarg, "offset"); break;
		case 'l': opt.len = parse_u64(optarg, "length"); opt.len_set = true; break;
		case 'D': opt.dump = optarg; break;
		case 'C': opt.check_file = optarg; break;
		case 'b': opt.scenario = "bench"; break;
		case 'q': opt.qd = parse_u64(optarg, "queue depth"); break;
		case 'B': opt.bs = parse_u64(optarg, "block size"); break;
		case 't': opt.seconds = parse_u64(optarg, "seconds"); break;
		case 'Q': opt.qsize = parse_u64(optarg, "queue size"); break;
		case 'T': opt.timeout_ms = parse_u64(optarg, "timeout"); break;
		case 'v': opt.verbose++; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (opt.dump || opt.check_file)
		return file_pattern();
	if (!opt.dev) {
		fprintf(stderr, "%s: --dev is required\n", prog);
		usage(stderr);
		return 2;
	}
	for (const char *p = opt.scenario; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		bool ok = false;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok |= strlen(known[i]) == l && !strncmp(known[i], p, l);
		if (!ok) {
			fprintf(stderr, "%s: unknown scenario '%.*s'\n", prog, (int)l, p);
			return 2;
		}
		p = e ? e + 1 : p + l;
	}
	sc = opt.scenario;

	dev_open();
	dev_init(!opt.no_event_idx, IOVA_CTL_A, IOVA_DATA_A, IOVA_AUX_A);
	if (in_list(sc, "full") || in_list(sc, "basic"))
		scenario_basic();
	if (in_list(sc, "full") || in_list(sc, "inflight-remap"))
		scenario_inflight_remap();
	if (in_list(sc, "full") || in_list(sc, "remap"))
		scenario_remap();
	if (in_list(sc, "full") || in_list(sc, "fault"))
		scenario_fault();
	if (in_list(sc, "full") || in_list(sc, "reset"))
		scenario_reset();
	if (in_list(sc, "write-pattern")) {
		write_range(opt.offset, opt.len, opt.seed);
		if (has(VIRTIO_BLK_F_FLUSH))
			req_sync(VIRTIO_BLK_T_FLUSH, 0, 0, 0, CHECK_NONE, 0,
				 VIRTIO_BLK_S_OK, 1);
		info("write-pattern: %" PRIu64 " bytes at offset %" PRIu64
		     " (seed %" PRIu64 ") written and flushed", opt.len,
		     opt.offset, opt.seed);
	}
	if (in_list(sc, "check-pattern")) {
		verify_range(opt.offset, opt.len, opt.seed);
		info("check-pattern: %" PRIu64 " bytes at offset %" PRIu64
		     " match seed %" PRIu64, opt.len, opt.offset, opt.seed);
	}
	if (in_list(sc, "bench"))
		scenario_bench();
	drain();
	/* Leave the device reset and unmapped, as a hypervisor would. */
	dev_reset();
	unmap_all();
	close_eventfds();
	close(D.fd);
	info("PASS (%s): %" PRIu64 " requests", sc, D.completed);
	return 0;
}
