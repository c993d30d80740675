/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rbd backend tests: the real backend against a real single-node Ceph
 * cluster that the test starts itself (tests/ceph/ceph-cluster: a monitor
 * and a BlueStore OSD on 127.0.0.1), driven through the library by the
 * simulated driver.  The image is checked behind the device's back with a
 * read-only librbd handle of the test's own.
 *
 * Skips (77) when the Ceph daemons are not installed.  With
 * VDU_TEST_CEPH_CONF=FILE it uses that cluster instead (pool "rbd"; the
 * OSD restart test is then left out).
 */
#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include <signal.h>
#include <sys/wait.h>
#include <event2/event.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "libvduse.h"
#include "simdrv.h"
#include "tap.h"

#define SECTOR 512u
#define MiB (1024ULL * 1024)
#define ST_OK VIRTIO_BLK_S_OK
#define ST_IOERR VIRTIO_BLK_S_IOERR
#define WAIT_MS 30000

const struct vdu_plugin *vdu_plugin_entry(void);

static const struct vdu_plugin *pl;
static char cluster_dir[256];
static char conf[300];
static bool own_cluster;
static char logbuf[8192];
static unsigned lib_errors;
static rados_t admin;
static rados_ioctx_t admin_io;

static void log_cb(void *opaque, int level, const char *msg)
{
	size_t l = strlen(logbuf);

	if (level <= VDU_LOG_ERR)
		lib_errors++;
	snprintf(logbuf + l, sizeof(logbuf) - l, "%s\n", msg);
	if (getenv("VDU_TEST_VERBOSE"))
		printf("# lib[%d]: %s\n", level, msg);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ cluster */

/* ceph-cluster VERB DIR [OPTS] (its ceph-admin is the build's) */
static int cluster_cmd(const char *verb, const char *opts)
{
	char cmd[1024];
	const char *srcdir = getenv("srcdir");

	snprintf(cmd, sizeof(cmd), "%s/tests/ceph/ceph-cluster %s %s %s",
		 srcdir ? srcdir : ".", verb, cluster_dir, opts ? opts : "");
	return system(cmd);
}

static bool have_ceph(void)
{
	return access("/usr/bin/ceph-mon", X_OK) == 0 &&
	       access("/usr/bin/ceph-osd", X_OK) == 0;
}

static int admin_connect(void)
{
	int r = rados_create(&admin, "admin");

	if (r == 0)
		r = rados_conf_read_file(admin, conf);
	if (r == 0)
		r = rados_connect(admin);
	if (r == 0)
		r = rados_ioctx_create(admin, "rbd", &admin_io);
	return r;
}

static int img_create(const char *name, uint64_t size)
{
	rbd_image_t img;
	int order = 22;

	/* A left-over of an earlier run on a given cluster goes first. */
	if (rbd_open(admin_io, name, &img, NULL) == 0) {
		rbd_snap_remove(img, "s1");
		rbd_close(img);
		rbd_remove(admin_io, name);
	}
	return rbd_create2(admin_io, name, size,
			   RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK, &order);
}

/* Read the image behind the device's back. */
static int img_read(const char *name, uint64_t off, void *buf, size_t len)
{
	rbd_image_t img;
	ssize_t n;
	int r = rbd_open_read_only(admin_io, name, &img, NULL);

	if (r < 0)
		return r;
	n = rbd_read(img, off, len, buf);
	rbd_close(img);
	return n == (ssize_t)len ? 0 : -EIO;
}

/* librbd calls the progress function without checking it for NULL. */
static int no_progress(uint64_t done, uint64_t total, void *arg)
{
	return 0;
}

static int img_resize(const char *name, uint64_t size)
{
	rbd_image_t img;
	int r = rbd_open(admin_io, name, &img, NULL);

	if (r < 0)
		return r;
	r = rbd_resize2(img, size, true, no_progress, NULL);
	rbd_close(img);
	return r;
}

/* ------------------------------------------------------ device + sim */

struct env {
	struct event_base *base;
	void *h;
	struct vdu_dev *dev;
	struct sim *sim;
	struct vdu_dev_info info;
};

static char check_err[256];
/* cephx: every open is as this user with this keyring */
static const char *auth_id, *auth_keyring;

static int be_open(void **h, const char *image, const char *k1, const char *v1,
		   const char *k2, const char *v2)
{
	struct vdu_param p[6] = { { "image", image }, { "conf", conf } };
	size_t n = 2;

	if (auth_id) {
		p[n++] = (struct vdu_param){ "id", auth_id };
		p[n++] = (struct vdu_param){ "keyring", auth_keyring };
	}
	if (k1)
		p[n++] = (struct vdu_param){ k1, v1 };
	if (k2)
		p[n++] = (struct vdu_param){ k2, v2 };
	*h = NULL;
	logbuf[0] = 0;
	if (vdu_plugin_check(pl, p, n, check_err, sizeof(check_err)) < 0)
		return -EINVAL;
	return pl->open(p, n, h);
}

static int env_open(struct env *e, const char *image, unsigned nq,
		    const char *k1, const char *v1)
{
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "rbdtest" };
	int r;

	memset(e, 0, sizeof(*e));
	e->base = event_base_new();
	r = be_open(&e->h, image, k1, v1, NULL, NULL);
	if (r < 0)
		return r;
	o.num_queues = nq;
	o.queue_size = 128;
	r = vdu_dev_new(&o, pl->backend, e->h, e->base, &e->dev);
	if (r < 0)
		return r;
	e->sim = sim_new(e->base);
	if (!e->sim || sim_default_layout(e->sim) < 0)
		return -ENOMEM;
	r = sim_attach(e->sim, e->dev);
	if (r < 0)
		return r;
	vdu_dev_get_info(e->dev, &e->info);
	return sim_init(e->sim, e->info.features_offered, e->info.num_queues,
			e->info.queue_size, 0) == VDUSE_REQ_RESULT_OK ? 0 : -EIO;
}

static void env_close(struct env *e)
{
	if (e->dev)
		vdu_dev_free(e->dev);
	if (e->sim)
		sim_free(e->sim);
	if (e->h)
		pl->close(e->h);
	event_base_free(e->base);
	memset(e, 0, sizeof(*e));
}

/* A new image NAME of size bytes and a device on it (closed on failure). */
static int env_open_new(struct env *e, const char *name, uint64_t size)
{
	char spec[64];
	int r;

	img_create(name, size);
	snprintf(spec, sizeof(spec), "rbd/%s", name);
	r = env_open(e, spec, 1, NULL, NULL);
	ok(r == 0, "open %s: %d", spec, r);
	if (r < 0)
		env_close(e);
	return r;
}

static void blk_init(struct sim_blk *b, uint32_t type, uint64_t sector)
{
	memset(b, 0, sizeof(*b));
	b->type = type;
	b->sector = sector;
	if (type == VIRTIO_BLK_T_IN)
		b->flags = SIM_BLK_DATA_IN;
}

static void blk_add(struct sim_blk *b, uint64_t iova, uint32_t len)
{
	b->seg[b->nseg].addr = iova;
	b->seg[b->nseg].len = len;
	b->nseg++;
}

/* Post n requests on queue q at once, wait for all; 0 or the first bad
 * status (0xee: not completed in time). */
static uint8_t run_n(struct env *e, unsigned q, struct sim_blk *b, int n)
{
	uint8_t st = ST_OK;
	int got = 0;

	for (int i = 0; i < n; i++)
		if (sim_blk_post(e->sim, q, &b[i]) < 0)
			return 0xed;
	sim_kick(e->sim, q);
	for (uint64_t end = now_ms() + WAIT_MS; got < n && now_ms() < end;) {
		uint32_t id, len;

		sim_wait_used(e->sim, q, n - got, 500);
		while (sim_get_used(e->sim, q, &id, &len))
			got++;
	}
	if (got < n)
		return 0xee;
	for (int i = 0; i < n; i++)
		if (sim_blk_status(e->sim, &b[i]) != ST_OK && st == ST_OK)
			st = sim_blk_status(e->sim, &b[i]);
	return st;
}

static void pattern(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 12345;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345;
		p[i] = x >> 16;
	}
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* A write of len bytes at sector, in nseg pieces, from seed's pattern. */
static uint8_t write_at(struct env *e, unsigned q, uint64_t sector, uint32_t len,
			int nseg, uint32_t seed)
{
	static uint8_t buf[4 * MiB];
	struct sim_blk b;
	uint32_t done = 0;

	pattern(buf, len, seed);
	blk_init(&b, VIRTIO_BLK_T_OUT, sector);
	for (int i = 0; i < nseg; i++) {
		uint32_t l = i == nseg - 1 ? len - done : (len / nseg) & ~511u;
		uint64_t iova = sim_alloc(e->sim, l);

		sim_write(e->sim, iova, buf + done, l);
		blk_add(&b, iova, l);
		done += l;
	}
	return run_n(e, q, &b, 1);
}

/* Read len bytes at sector into out. */
static uint8_t read_at(struct env *e, unsigned q, uint64_t sector, uint32_t len,
		       int nseg, uint8_t *out)
{
	struct sim_blk b;
	uint32_t done = 0;
	uint8_t st;

	blk_init(&b, VIRTIO_BLK_T_IN, sector);
	for (int i = 0; i < nseg; i++) {
		uint32_t l = i == nseg - 1 ? len - done : (len / nseg) & ~511u;

		blk_add(&b, sim_alloc(e->sim, l), l);
		done += l;
	}
	st = run_n(e, q, &b, 1);
	done = 0;
	for (int i = 0; i < b.nseg; i++) {
		sim_read(e->sim, b.seg[i].addr, out + done, b.seg[i].len);
		done += b.seg[i].len;
	}
	return st;
}

static uint8_t range_req(struct env *e, uint32_t type, uint64_t sector,
			 uint32_t nsec, uint32_t flags)
{
	uint8_t rg[16];
	uint64_t s = htole64(sector);
	uint32_t n = htole32(nsec), f = htole32(flags);
	struct sim_blk b;

	memcpy(rg, &s, 8);
	memcpy(rg + 8, &n, 4);
	memcpy(rg + 12, &f, 4);
	blk_init(&b, type, 0);
	blk_add(&b, sim_alloc(e->sim, 16), 16);
	sim_write(e->sim, b.seg[0].addr, rg, 16);
	return run_n(e, 0, &b, 1);
}

static uint8_t flush_req(struct env *e)
{
	struct sim_blk b;

	blk_init(&b, VIRTIO_BLK_T_FLUSH, 0);
	return run_n(e, 0, &b, 1);
}

static void cleanup(void);

/* ------------------------------------------------------------ tests */

static void test_params(void)
{
	static const char *bad[] = { "img", "/img", "pool/", "pool//img", "a/b/c/d",
				     "pool/img@", "pool/img@s@t", "", NULL };
	void *h;

	for (int i = 0; bad[i]; i++) {
		ok(be_open(&h, bad[i], NULL, NULL, NULL, NULL) == -EINVAL &&
		   strstr(check_err, "image="),
		   "image=%s refused before connecting: %s", bad[i], check_err);
	}
	ok(be_open(&h, "rbd/x", "id", "client.admin", NULL, NULL) == -EINVAL &&
	   strstr(check_err, "without \"client.\""), "id=client.admin refused: %s",
	   check_err);
	ok(be_open(&h, "rbd/x", "keyring", "/nonexistent/keyring", NULL, NULL) == -EINVAL &&
	   strstr(check_err, "keyring=/nonexistent/keyring"), "a missing keyring: %s",
	   check_err);
	ok(be_open(&h, "rbd/x", "bogus", "1", NULL, NULL) == -EINVAL,
	   "an unknown key is refused: %s", check_err);
}

static void test_open_errors(void)
{
	char badconf[300];
	uint64_t t0;
	FILE *f;
	void *h;
	int r;

	r = be_open(&h, "nopool/img", NULL, NULL, NULL, NULL);
	ok(r == -ENOENT && strstr(logbuf, "no such pool"), "a missing pool: %d, %s", r,
	   logbuf);
	r = be_open(&h, "rbd/noimage", NULL, NULL, NULL, NULL);
	ok(r == -ENOENT && strstr(logbuf, "no such image"), "a missing image: %d, %s", r,
	   logbuf);
	img_create("snapless", 4 * MiB);
	r = be_open(&h, "rbd/snapless@nosnap", NULL, NULL, NULL, NULL);
	ok(r == -ENOENT && strstr(logbuf, "snapshot"), "a missing snapshot: %d, %s", r,
	   logbuf);

	/* Monitors nobody listens on: an error within the timeout. */
	snprintf(badconf, sizeof(badconf), "%s/unreachable.conf", cluster_dir);
	f = fopen(badconf, "w");
	fprintf(f, "[global]\nmon_host = v2:127.0.0.1:9\nauth_client_required = none\n");
	fclose(f);
	{
		struct vdu_param p[] = { { "image", "rbd/img" }, { "conf", badconf },
					 { "connect-timeout", "3" } };

		logbuf[0] = 0;
		t0 = now_ms();
		r = pl->open(p, 3, &h);
	}
	ok(r == -ETIMEDOUT && strstr(logbuf, "cannot reach the Ceph cluster within 3 s") &&
	   strstr(logbuf, "127.0.0.1:9"),
	   "an unreachable cluster: %d after %llu ms: %s", r,
	   (unsigned long long)(now_ms() - t0), logbuf);
	ok(now_ms() - t0 < 20000, "... within the timeout");
}

static void test_rw(unsigned nq)
{
	static uint8_t got[4 * MiB], want[4 * MiB];
	struct env e;
	int r;

	img_create("rw", 64 * MiB);
	lib_errors = 0;
	r = env_open(&e, "rbd/rw", nq, NULL, NULL);
	ok(r == 0, "%u queue(s): open rbd/rw: %d", nq, r);
	if (r < 0) {
		env_close(&e);
		return;
	}
	is_int(e.info.capacity_bytes, 64 * MiB, "capacity from the image");
	ok(e.info.features_offered & (1ULL << VIRTIO_BLK_F_DISCARD) &&
	   e.info.features_offered & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES) &&
	   e.info.features_offered & (1ULL << VIRTIO_BLK_F_FLUSH),
	   "discard, write-zeroes and flush offered");
	for (unsigned q = 0; q < nq; q++) {
		uint64_t sector = (q * 8 + 1) * MiB / SECTOR - 8; /* across objects */

		is_int(write_at(&e, q, sector, 1 * MiB + 4096, 7, q + 1), ST_OK,
		       "queue %u: 1 MiB + 4 KiB write in 7 pieces across an object boundary", q);
		pattern(want, MiB + 4096, q + 1);
		is_int(read_at(&e, q, sector, MiB + 4096, 5, got), ST_OK, "queue %u: read back", q);
		ok(!memcmp(got, want, MiB + 4096), "queue %u: same data through the device", q);
		ok(img_read("rw", sector * SECTOR, got, MiB + 4096) == 0 &&
		   !memcmp(got, want, MiB + 4096), "queue %u: same data in the image", q);
	}
	/* Many at once, on every queue: completions handed between queues. */
	{
		static struct sim_blk b[32];
		uint8_t st = ST_OK;

		for (unsigned q = 0; q < nq; q++) {
			for (int i = 0; i < 32; i++) {
				uint64_t iova = sim_alloc(e.sim, 4096);

				pattern(want, 4096, 100 + q * 32 + i);
				sim_write(e.sim, iova, want, 4096);
				blk_init(&b[i], VIRTIO_BLK_T_OUT, (32 + q) * MiB / SECTOR + i * 8);
				blk_add(&b[i], iova, 4096);
			}
			st = run_n(&e, q, b, 32);
			if (st != ST_OK)
				break;
		}
		is_int(st, ST_OK, "32 writes at once on each of %u queue(s)", nq);
		for (unsigned q = 0; q < nq; q++) {
			bool same = img_read("rw", (32 + q) * MiB, got, 32 * 4096) == 0;

			for (int i = 0; same && i < 32; i++) {
				pattern(want, 4096, 100 + q * 32 + i);
				same = !memcmp(got + i * 4096, want, 4096);
			}
			ok(same, "queue %u: the 32 writes are in the image", q);
		}
	}
	is_int(flush_req(&e), ST_OK, "flush");

	/* discard and write-zeroes read back as zeroes */
	write_at(&e, 0, 0, 4 * MiB, 4, 7);
	is_int(range_req(&e, VIRTIO_BLK_T_DISCARD, 0, MiB / SECTOR, 0), ST_OK, "discard 1 MiB");
	is_int(range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, MiB / SECTOR, MiB / SECTOR, 0), ST_OK,
	       "write-zeroes 1 MiB");
	is_int(range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 2 * MiB / SECTOR, MiB / SECTOR,
			 VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
	       ST_OK, "write-zeroes 1 MiB with UNMAP");
	ok(img_read("rw", 0, got, 3 * MiB) == 0 && all_zero(got, 3 * MiB),
	   "the three ranges read as zeroes in the image");
	pattern(want, 4 * MiB, 7);
	ok(img_read("rw", 3 * MiB, got, MiB) == 0 && !memcmp(got, want + 3 * MiB, MiB),
	   "the data after them is untouched");
	is_int(lib_errors, 0, "no errors logged");
	env_close(&e);
}

static void test_snapshot(void)
{
	static uint8_t got[MiB], want[MiB];
	rbd_image_t img;
	struct env e;
	int r;

	img_create("snapped", 16 * MiB);
	pattern(want, MiB, 42);
	r = rbd_open(admin_io, "snapped", &img, NULL);
	if (r == 0) {
		rbd_write(img, 0, MiB, (const char *)want);
		r = rbd_snap_create(img, "s1");
		rbd_write(img, 0, 4096, (const char *)got); /* after the snapshot */
		rbd_close(img);
	}
	ok(r == 0, "image with snapshot s1: %d", r);
	r = env_open(&e, "rbd/snapped@s1", 1, NULL, NULL);
	ok(r == 0, "open rbd/snapped@s1: %d", r);
	if (r == 0) {
		ok(e.info.features_offered & (1ULL << VIRTIO_BLK_F_RO), "a snapshot is read-only");
		is_int(read_at(&e, 0, 0, MiB, 3, got), ST_OK, "read the snapshot");
		ok(!memcmp(got, want, MiB), "the snapshot's data, not the image's");
		ok(write_at(&e, 0, 0, 4096, 1, 1) != ST_OK, "a write is refused");
	}
	env_close(&e);
}

static void test_resize(void)
{
	static uint8_t got[MiB];
	struct env e;
	uint64_t end;
	int r;

	if (env_open_new(&e, "rs", 16 * MiB) < 0)
		return;
	r = vdu_dev_resize(e.dev, 32 * MiB, 0);
	ok(r == 0, "vdu_dev_resize to 32 MiB: %d", r);
	is_int(sim_config_capacity(e.sim), 32 * MiB / SECTOR, "config space: 32 MiB");
	ok(__atomic_load_n(&e.sim->config_irqs, __ATOMIC_RELAXED) >= 1, "a config interrupt");
	{
		rbd_image_t img;
		uint64_t size = 0;

		if (rbd_open_read_only(admin_io, "rs", &img, NULL) == 0) {
			rbd_get_size(img, &size);
			rbd_close(img);
		}
		is_int(size, 32 * MiB, "the image is 32 MiB");
	}
	is_int(write_at(&e, 0, 31 * MiB / SECTOR, MiB, 2, 9), ST_OK,
	       "a write in the new last MiB");
	ok(vdu_dev_resize(e.dev, 8 * MiB, 0) == -EINVAL, "shrinking needs VDU_RESIZE_F_SHRINK");

	/* Someone else resizes the image: noticed through the update watch. */
	r = img_resize("rs", 48 * MiB);
	ok(r == 0, "another client grows the image to 48 MiB: %d", r);
	for (end = now_ms() + 5000;
	     sim_config_capacity(e.sim) != 48 * MiB / SECTOR && now_ms() < end;)
		usleep(10000);
	is_int(sim_config_capacity(e.sim), 48 * MiB / SECTOR,
	       "config space follows within 5 s (took %llu ms)",
	       (unsigned long long)(now_ms() + 5000 - end));
	r = img_resize("rs", 8 * MiB);
	ok(r == 0, "another client shrinks it to 8 MiB: %d", r);
	for (end = now_ms() + 5000;
	     sim_config_capacity(e.sim) != 8 * MiB / SECTOR && now_ms() < end;)
		usleep(10000);
	is_int(sim_config_capacity(e.sim), 8 * MiB / SECTOR, "config space: 8 MiB");
	is_int(read_at(&e, 0, 8 * MiB / SECTOR, 4096, 1, got), ST_IOERR,
	       "a read beyond the new end: IOERR");
	is_int(read_at(&e, 0, 8 * MiB / SECTOR - 8, 4096, 1, got), ST_OK,
	       "the last 4 KiB still reads");
	r = vdu_dev_resize(e.dev, 4 * MiB, VDU_RESIZE_F_SHRINK);
	ok(r == 0 && sim_config_capacity(e.sim) == 4 * MiB / SECTOR,
	   "vdu_dev_resize with VDU_RESIZE_F_SHRINK to 4 MiB: %d", r);
	env_close(&e);
}

/* kill -9 of the OSD under writes, then a restart: the requests wait and
 * complete without an error. */
static void test_osd_restart(void)
{
	static struct sim_blk b[16];
	static uint8_t want[4096], got[16 * 4096];
	struct env e;
	uint32_t id, len;
	int got_n = 0;
	uint64_t t0;

	if (env_open_new(&e, "osd", 16 * MiB) < 0)
		return;
	is_int(write_at(&e, 0, 0, 4096, 1, 1), ST_OK, "a write before");
	ok(cluster_cmd("kill-osd", NULL) == 0, "kill -9 the OSD");
	for (int i = 0; i < 16; i++) {
		uint64_t iova = sim_alloc(e.sim, 4096);

		pattern(want, 4096, 500 + i);
		sim_write(e.sim, iova, want, 4096);
		blk_init(&b[i], VIRTIO_BLK_T_OUT, i * 8);
		blk_add(&b[i], iova, 4096);
		sim_blk_post(e.sim, 0, &b[i]);
	}
	sim_kick(e.sim, 0);
	sim_wait_used(e.sim, 0, 16, 2000);
	while (sim_get_used(e.sim, 0, &id, &len))
		got_n++;
	is_int(got_n, 0, "no write completes while the OSD is down");
	t0 = now_ms();
	ok(cluster_cmd("start-osd", NULL) == 0, "restart the OSD");
	for (uint64_t end = now_ms() + 120000; got_n < 16 && now_ms() < end;) {
		sim_wait_used(e.sim, 0, 16 - got_n, 500);
		while (sim_get_used(e.sim, 0, &id, &len))
			got_n++;
	}
	is_int(got_n, 16, "all 16 complete after the restart (%llu ms)",
	       (unsigned long long)(now_ms() - t0));
	{
		bool all_ok = true;

		for (int i = 0; i < 16; i++)
			all_ok &= sim_blk_status(e.sim, &b[i]) == ST_OK;
		ok(all_ok, "... every one without an error");
	}
	{
		bool same = img_read("osd", 0, got, sizeof(got)) == 0;

		for (int i = 0; same && i < 16; i++) {
			pattern(want, 4096, 500 + i);
			same = !memcmp(got + i * 4096, want, 4096);
		}
		ok(same, "the data is in the image");
	}
	env_close(&e);
}

/* The child of test_crash: serve a device on image, write, say so, wait
 * for kill -9. */
static int crash_child(const char *image, const char *exclusive)
{
	struct env e;

	if (env_open(&e, image, 1, "exclusive", exclusive) < 0 || write_at(&e, 0, 0, 4096, 1, 1) != ST_OK)
		return 1;
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

/* kill -9 of the daemon that holds the image's lock; the next one for the
 * same device writes at once, not after the dead client's watch expired. */
static void test_crash(const char *self, const char *exclusive)
{
	char line[64] = "";
	int pfd[2];
	pid_t pid;
	struct env e;
	uint64_t t0;
	int r;
	FILE *f;

	img_create("crash", 16 * MiB);
	if (pipe(pfd) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(self, self, "--crash-child", "rbd/crash", conf, exclusive, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	ok(fgets(line, sizeof(line), f) && !strcmp(line, "ready\n"),
	   "exclusive=%s: a first daemon writes to rbd/crash (and so holds its lock)",
	   exclusive);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fclose(f);
	t0 = now_ms();
	r = env_open(&e, "rbd/crash", 1, "exclusive", exclusive);
	ok(r == 0, "killed with -9; a new daemon for the same device opens it: %d (%llu ms)", r,
	   (unsigned long long)(now_ms() - t0));
	if (r == 0) {
		t0 = now_ms();
		is_int(write_at(&e, 0, 8, 4096, 1, 2), ST_OK, "its first write succeeds");
		ok(now_ms() - t0 < 10000,
		   "... in %llu ms, without waiting for the dead client's watch to expire (30 s)",
		   (unsigned long long)(now_ms() - t0));
		ok(strstr(logbuf, "broke the lock of "), "the log says whose lock it broke: %s",
		   logbuf);
	}
	env_close(&e);
}

/* A second cluster that runs cephx (memstore): the data path as
 * client.vduse (caps profile rbd), and its refusals. */
static void test_cephx(void)
{
	char keyring[320], bad[320], cmd[700];
	void *h;
	int r;

	cleanup();
	snprintf(cluster_dir, sizeof(cluster_dir), "/tmp/vdu-rbdx-XXXXXX");
	if (!mkdtemp(cluster_dir)) {
		ok(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	own_cluster = true;
	r = cluster_cmd("start", "--cephx");
	ok(r == 0, "a cluster with cephx: %d", r);
	snprintf(conf, sizeof(conf), "%s/ceph.conf", cluster_dir);
	if (r != 0 || admin_connect() < 0)
		return;
	snprintf(keyring, sizeof(keyring), "%s/client.vduse.keyring", cluster_dir);
	auth_id = "vduse";
	auth_keyring = keyring;
	test_rw(1);

	snprintf(bad, sizeof(bad), "%s/bad.keyring", cluster_dir);
	snprintf(cmd, sizeof(cmd), "ceph-authtool --create-keyring %s --gen-key -n client.vduse >/dev/null", bad);
	ok(system(cmd) == 0, "a keyring with another key for client.vduse");
	auth_keyring = bad;
	r = be_open(&h, "rbd/rw", "connect-timeout", "10", NULL, NULL);
	ok(r == -EACCES && strstr(logbuf, "refused client.vduse") && strstr(logbuf, "keyring="),
	   "a wrong key: %d, %s", r, logbuf);
	auth_id = "nobody";
	auth_keyring = keyring;
	r = be_open(&h, "rbd/rw", "connect-timeout", "10", NULL, NULL);
	ok(r < 0 && strstr(logbuf, "client.nobody"), "an id without a key: %d, %s", r, logbuf);
	auth_id = auth_keyring = NULL;
}

static void cleanup(void)
{
	if (admin_io)
		rados_ioctx_destroy(admin_io);
	if (admin)
		rados_shutdown(admin);
	admin_io = NULL;
	admin = NULL;
	if (own_cluster) {
		char cmd[400];

		cluster_cmd("stop", NULL);
		snprintf(cmd, sizeof(cmd), "rm -rf %s", cluster_dir);
		if (system(cmd) != 0)
			diag("could not remove %s", cluster_dir);
		own_cluster = false;
	}
}

int main(int argc, char **argv)
{
	const char *given = getenv("VDU_TEST_CEPH_CONF");
	uint64_t t0;
	int r;

	pl = vdu_plugin_entry();
	if (argc == 5 && !strcmp(argv[1], "--crash-child")) {
		snprintf(conf, sizeof(conf), "%s", argv[3]);
		return crash_child(argv[2], argv[4]);
	}
	vdu_set_log(log_cb, NULL, VDU_LOG_INFO);
	if (given) {
		snprintf(conf, sizeof(conf), "%s", given);
		snprintf(cluster_dir, sizeof(cluster_dir), "/tmp");
	} else {
		if (!have_ceph()) {
			printf("1..0 # SKIP ceph-mon/ceph-osd not installed\n");
			return 77;
		}
		snprintf(cluster_dir, sizeof(cluster_dir), "/tmp/vdu-rbd-XXXXXX");
		if (!mkdtemp(cluster_dir)) {
			printf("Bail out! mkdtemp: %s\n", strerror(errno));
			return 1;
		}
		own_cluster = true;
		atexit(cleanup);
		/* make check runs in the build tree, where ceph-admin is */
		if (!getenv("CEPH_ADMIN") && access("tests/ceph/ceph-admin", X_OK) == 0)
			setenv("CEPH_ADMIN", "tests/ceph/ceph-admin", 1);
		t0 = now_ms();
		r = cluster_cmd("start", "--bluestore");
		if (r != 0) {
			printf("Bail out! the test cluster did not start (%d)\n", r);
			return 1;
		}
		diag("cluster up in %llu ms", (unsigned long long)(now_ms() - t0));
		snprintf(conf, sizeof(conf), "%s/ceph.conf", cluster_dir);
	}
	r = admin_connect();
	if (r < 0) {
		printf("Bail out! cannot connect to the test cluster: %s\n", strerror(-r));
		return 1;
	}
	test_params();
	test_open_errors();
	test_rw(1);
	test_rw(3);
	test_snapshot();
	test_resize();
	test_crash(argv[0], "off");
	test_crash(argv[0], "on");
	if (own_cluster) {
		test_osd_restart();
		test_cephx();
	}
	cleanup();
	return tap_done();
}
