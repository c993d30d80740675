/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file backend tests: the real backend (libaio, helper thread) on a temp
 * file, driven through the library by the simulated driver.  The file is
 * checked with pread()/fstat() behind the device's back.
 *
 * The temp files live in $TMPDIR if that filesystem takes O_DIRECT, else
 * /var/tmp, else /tmp; cache=writeback runs everywhere.
 *
 * The I/O tests run once per engine (aio=libaio, aio=io_uring); io_uring's
 * are skipped, saying why, where the kernel refuses io_uring.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/io_uring.h>
#include <linux/magic.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <event2/event.h>

#include "backends.h"
#include "simdrv.h"
#include "tap.h"

#define F(bit) (1ULL << (bit))
#define SECTOR 512u
#define ST_OK VIRTIO_BLK_S_OK
#define ST_IOERR VIRTIO_BLK_S_IOERR
#define ST_UNSUPP VIRTIO_BLK_S_UNSUPP
#define WAIT_MS 5000

static char tmpdir[256];
static unsigned lib_errors, copy_warnings;
/* env_open gives the simulated driver memfd_secret data memory, which
 * the kernel refuses to pin for direct I/O. */
static bool env_secret;
static const struct vdu_plugin *be = &vbe_file;
static char last_check[256]; /* vdu_plugin_check()'s last message */
/* "aio=ENGINE" added to every backend open of the I/O tests ("": none) */
static char aio_kv[32];
/* env_open adds the bounce buffer at IOVA 0 (BOUNCE_LEN) with this mode */
static bool env_bounce;
static unsigned env_bounce_mode;
#define BOUNCE_LEN (1u << 20)

static void log_cb(void *opaque, int level, const char *msg)
{
	if (level <= VDU_LOG_ERR)
		lib_errors++;
	if (strstr(msg, "refused direct I/O"))
		copy_warnings++;
	if (getenv("VDU_TEST_VERBOSE"))
		printf("# lib[%d]: %s\n", level, msg);
}

/* ------------------------------------------------------------ helpers */

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

/* A file of size bytes filled with byte c (unlink first). */
static void make_file(const char *path, uint64_t size, int c)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	char buf[65536];

	memset(buf, c, sizeof(buf));
	for (uint64_t off = 0; off < size; off += sizeof(buf))
		if (pwrite(fd, buf, size - off < sizeof(buf) ? size - off : sizeof(buf),
			   off) < 0)
			break;
	fsync(fd);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

static uint64_t file_blocks(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks : 0;
}

static int file_pread(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, buf, len, off);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

static void pattern(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 12345;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345;
		p[i] = x >> 16;
	}
}

static bool all_byte(const uint8_t *p, size_t n, uint8_t c)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != c)
			return false;
	return true;
}

/* Open the backend with "k=v" strings (NULL-terminated), and aio_kv
 * unless they name the engine. */
static int be_open(void **h, const char *kv[])
{
	struct vdu_param p[16];
	char buf[16][300];
	bool has_aio = false;
	size_t n = 0;

	for (; kv[n]; n++) {
		char *eq;

		snprintf(buf[n], sizeof(buf[n]), "%s", kv[n]);
		eq = strchr(buf[n], '=');
		*eq = '\0';
		p[n].key = buf[n];
		p[n].value = eq + 1;
		has_aio |= !strcmp(p[n].key, "aio");
	}
	if (aio_kv[0] && !has_aio) {
		p[n].key = "aio";
		p[n].value = aio_kv + 4;
		n++;
	}
	*h = NULL;
	/* As a front end does: the descriptor's checks, then open. */
	if (vdu_plugin_check(be, p, n, last_check, sizeof(last_check)) < 0)
		return -EINVAL;
	return be->open(p, n, h);
}

/* ------------------------------------------------------ device + sim */

struct env {
	struct event_base *base;
	void *h;
	struct vdu_dev *dev;
	struct sim *sim;
	struct vdu_dev_info info;
	unsigned nq;
};

static int env_open(struct env *e, const char *kv[], unsigned nq, unsigned qsize)
{
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "filetest" };
	int r;

	memset(e, 0, sizeof(*e));
	e->base = event_base_new();
	r = be_open(&e->h, kv);
	if (r < 0)
		return r;
	o.num_queues = nq;
	o.queue_size = qsize;
	o.bounce = env_bounce_mode;
	r = vdu_dev_new(&o, be->backend, e->h, e->base, &e->dev);
	if (r < 0)
		return r;
	e->sim = sim_new(e->base);
	if (!e->sim)
		return -ENOMEM;
	e->sim->secret_mem = env_secret;
	if (sim_default_layout(e->sim) < 0 ||
	    (env_bounce && !sim_add_bounce(e->sim, BOUNCE_LEN)))
		return -ENOMEM;
	r = sim_attach(e->sim, e->dev);
	if (r < 0)
		return r;
	vdu_dev_get_info(e->dev, &e->info);
	e->nq = e->info.num_queues;
	return sim_init(e->sim, e->info.features_offered, e->nq,
			e->info.queue_size, 0) == VDUSE_REQ_RESULT_OK ? 0 : -EIO;
}

static void env_close(struct env *e)
{
	vdu_dev_free(e->dev);
	sim_free(e->sim);
	if (e->h)
		be->close(e->h);
	event_base_free(e->base);
	memset(e, 0, sizeof(*e));
}

/* Data memory aligned to 512 (what O_DIRECT wants of a Linux guest). */
static uint64_t alloc_al(struct env *e, uint32_t len)
{
	return (sim_alloc(e->sim, len + 511) + 511) & ~511ULL;
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

/* Post, kick, wait for the completion; the status byte, or 0xee when the
 * request never completed, 0xef when the wrong chain came back. */
static uint8_t run1(struct env *e, unsigned q, struct sim_blk *b, uint32_t *used_len)
{
	uint32_t id, len;

	if (sim_blk_post(e->sim, q, b) < 0)
		return 0xed;
	sim_kick(e->sim, q);
	if (sim_wait_used(e->sim, q, 1, WAIT_MS) < 1)
		return 0xee;
	sim_get_used(e->sim, q, &id, &len);
	if (used_len)
		*used_len = len;
	return id == (uint32_t)b->head ? sim_blk_status(e->sim, b) : 0xef;
}

/* Build (not post) a one-range DISCARD / WRITE_ZEROES. */
static void post_range(struct env *e, struct sim_blk *b, uint32_t type,
		       uint64_t sector, uint32_t nsec, uint32_t flags)
{
	uint8_t rg[16];
	uint64_t s = htole64(sector);
	uint32_t n = htole32(nsec), f = htole32(flags);

	memcpy(rg, &s, 8);
	memcpy(rg + 8, &n, 4);
	memcpy(rg + 12, &f, 4);
	blk_init(b, type, 0);
	blk_add(b, sim_alloc(e->sim, 16), 16);
	sim_write(e->sim, b->seg[0].addr, rg, 16);
}

static uint8_t range_req(struct env *e, uint32_t type, uint64_t sector,
			 uint32_t nsec, uint32_t flags)
{
	struct sim_blk b;

	post_range(e, &b, type, sector, nsec, flags);
	return run1(e, 0, &b, NULL);
}

static uint8_t flush_req(struct env *e, unsigned q)
{
	struct sim_blk b;

	blk_init(&b, VIRTIO_BLK_T_FLUSH, 0);
	return run1(e, q, &b, NULL);
}

enum { LAY_PLAIN, LAY_CROSS, LAY_ODD };

/* Segments for len bytes: PLAIN seglen-sized aligned pieces; CROSS: the
 * same but every segment straddles a region boundary (512-aligned split:
 * two iovecs); ODD: misaligned addresses and odd lengths (a driver other
 * than Linux may send that; O_DIRECT cannot take it directly). */
static void add_segs(struct env *e, struct sim_blk *b, uint32_t len,
		     uint32_t seglen, int layout)
{
	static const uint32_t odd[] = { 100, 412, 1000, 24, 3, 509, 1, 1023 };
	unsigned k = 0;

	while (len) {
		uint32_t l = layout == LAY_ODD ? odd[k++ % 8] : seglen;

		if (l > len)
			l = len;
		if (layout == LAY_CROSS && l >= 1024)
			blk_add(b, sim_alloc_cross(e->sim, l, (l / 2) & ~511u), l);
		else if (layout == LAY_ODD)
			blk_add(b, sim_alloc(e->sim, l + 8) + 3, l);
		else
			blk_add(b, alloc_al(e, l), l);
		len -= l;
	}
}

/*
 * Write a pattern at sector (one chain), check the file with pread, read
 * it back through the device (another chain), compare.  NULL or why not.
 */
static const char *write_read(struct env *e, const char *path, unsigned q,
			      uint64_t sector, uint32_t len, uint32_t seglen,
			      int layout)
{
	static char why[200];
	uint8_t *pat = malloc(len), *got = malloc(len);
	struct sim_blk w, r;
	uint32_t ulen = 0;
	uint8_t st;
	const char *res = why;

	pattern(pat, len, (uint32_t)sector * 7 + len + layout);
	blk_init(&w, VIRTIO_BLK_T_OUT, sector);
	add_segs(e, &w, len, seglen, layout);
	for (int i = 0, off = 0; i < w.nseg; off += w.seg[i].len, i++)
		sim_write(e->sim, w.seg[i].addr, pat + off, w.seg[i].len);
	st = run1(e, q, &w, &ulen);
	if (st != ST_OK || ulen != 1) {
		snprintf(why, sizeof(why), "write: status %#x used len %u", st, ulen);
		goto out;
	}
	if (file_pread(path, got, len, sector * SECTOR) < 0 || memcmp(got, pat, len)) {
		snprintf(why, sizeof(why), "write: file content differs");
		goto out;
	}
	blk_init(&r, VIRTIO_BLK_T_IN, sector);
	add_segs(e, &r, len, seglen, layout);
	for (int i = 0; i < r.nseg; i++) {
		memset(got, 0xa5, r.seg[i].len);
		sim_write(e->sim, r.seg[i].addr, got, r.seg[i].len);
	}
	st = run1(e, q, &r, &ulen);
	if (st != ST_OK || ulen != len + 1) {
		snprintf(why, sizeof(why), "read: status %#x used len %u", st, ulen);
		goto out;
	}
	for (int i = 0, off = 0; i < r.nseg; off += r.seg[i].len, i++)
		sim_read(e->sim, r.seg[i].addr, got + off, r.seg[i].len);
	if (memcmp(got, pat, len)) {
		snprintf(why, sizeof(why), "read: data differs");
		goto out;
	}
	res = NULL;
out:
	free(pat);
	free(got);
	return res;
}

/* Read len bytes at sector through the device into buf; the status. */
static uint8_t dev_read(struct env *e, uint64_t sector, void *buf, uint32_t len)
{
	struct sim_blk r;
	uint8_t st;

	blk_init(&r, VIRTIO_BLK_T_IN, sector);
	add_segs(e, &r, len, 65536, LAY_PLAIN);
	st = run1(e, 0, &r, NULL);
	for (int i = 0, off = 0; i < r.nseg; off += r.seg[i].len, i++)
		sim_read(e->sim, r.seg[i].addr, (uint8_t *)buf + off, r.seg[i].len);
	return st;
}

static uint8_t dev_write_byte(struct env *e, uint64_t sector, uint32_t len, int c)
{
	struct sim_blk w;

	blk_init(&w, VIRTIO_BLK_T_OUT, sector);
	add_segs(e, &w, len, 65536, LAY_PLAIN);
	for (int i = 0; i < w.nseg; i++)
		memset(sim_host(e->sim, w.seg[i].addr, w.seg[i].len), c, w.seg[i].len);
	return run1(e, 0, &w, NULL);
}

#define is_str(got, want, ...)                                               \
	do {                                                                 \
		const char *g_ = (got), *w_ = (want);                        \
		if (!ok(g_ && !strcmp(g_, w_), __VA_ARGS__))                 \
			diag("got %s, expected %s", g_ ? g_ : "NULL", w_);   \
	} while (0)

#define ok_null(why, ...)                                                    \
	do {                                                                 \
		const char *w_ = (why);                                      \
		if (!ok(w_ == NULL, __VA_ARGS__))                            \
			diag("%s", w_);                                      \
	} while (0)

/* --------------------------------------------------------------- tests */

static void test_params(void)
{
	char p[300], kv_path[320];
	void *h;
	int r;

	path_of(p, sizeof(p), "params.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	unlink(p);

	ok(be_open(&h, (const char *[]){ "readonly=1", NULL }) == -EINVAL,
	   "params: path is required");
	ok(be_open(&h, (const char *[]){ kv_path, "colour=blue", NULL }) == -EINVAL,
	   "params: unknown key refused");
	ok(be_open(&h, (const char *[]){ kv_path, "cache=sometimes", NULL }) == -EINVAL,
	   "params: cache=sometimes refused");
	ok(be_open(&h, (const char *[]){ kv_path, "create=maybe", NULL }) == -EINVAL,
	   "params: create=maybe refused");
	ok(be_open(&h, (const char *[]){ kv_path, "aio=posix", NULL }) == -EINVAL &&
	   strstr(last_check, "io_uring|libaio|auto"),
	   "params: aio=posix refused, naming the choices (%s)", last_check);
	ok(be_open(&h, (const char *[]){ kv_path, "create=1", NULL }) == -EINVAL,
	   "params: create=1 without size refused");
	ok(be_open(&h, (const char *[]){ kv_path, "create=1", "size=1M", "readonly=1", NULL }) ==
	   -EINVAL, "params: create=1 with readonly=1 refused");
	ok(be_open(&h, (const char *[]){ kv_path, "size=banana", NULL }) == -EINVAL,
	   "params: bad size refused");
	r = be_open(&h, (const char *[]){ kv_path, NULL });
	ok(r == -EINVAL && access(p, F_OK) < 0 && strstr(last_check, "does not exist") &&
	   strstr(last_check, "create=on"),
	   "params: a missing file without create=1: refused by the check, nothing created (%d: %s)",
	   r, last_check);
	r = vbe_file.open((const struct vdu_param[]){ { "path", p } }, 1, &h);
	ok(r == -ENOENT && access(p, F_OK) < 0,
	   "params: open without the check: ENOENT, nothing created (%d)", r);
	ok(be_open(&h, (const char *[]){ "path=/", NULL }) < 0,
	   "params: a directory is refused");
	make_file(p, 0, 0);
	ok(be_open(&h, (const char *[]){ kv_path, NULL }) == -EINVAL,
	   "params: an empty file without size= is refused");
	unlink(p);
}

static void test_sizes(void)
{
	char p[300], kv_path[320];
	struct vdu_backend_info info;
	void *h;
	int r;

	path_of(p, sizeof(p), "sizes.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 1 << 20, 0x11);

	r = be_open(&h, (const char *[]){ kv_path, NULL });
	if (ok(r == 0, "sizes: existing 1 MiB file opens")) {
		be->backend->get_info(h, &info);
		is_int(info.size, 1 << 20, "sizes: size from the file");
		be->close(h);
	}
	r = be_open(&h, (const char *[]){ kv_path, "size=1M", NULL });
	ok(r == 0, "sizes: size= equal to the file's is fine");
	if (r == 0)
		be->close(h);
	ok(be_open(&h, (const char *[]){ kv_path, "size=2M", NULL }) == -EINVAL &&
	   file_size(p) == 1 << 20, "sizes: larger size= without create=1 refused, file untouched");
	ok(be_open(&h, (const char *[]){ kv_path, "size=512K", NULL }) == -EINVAL &&
	   file_size(p) == 1 << 20, "sizes: smaller size= refused, file untouched");
	ok(be_open(&h, (const char *[]){ kv_path, "size=512K", "create=1", NULL }) == -EINVAL &&
	   file_size(p) == 1 << 20, "sizes: create=1 never shrinks a file");
	r = be_open(&h, (const char *[]){ kv_path, "size=3M", "create=1", NULL });
	if (ok(r == 0, "sizes: create=1 with a larger size= opens")) {
		uint8_t buf[512];

		be->backend->get_info(h, &info);
		ok(info.size == 3 << 20 && file_size(p) == 3 << 20,
		   "sizes: create=1 extended the file to 3 MiB");
		ok(file_pread(p, buf, 512, (1 << 20) - 512) == 0 && all_byte(buf, 512, 0x11) &&
		   file_pread(p, buf, 512, 1 << 20) == 0 && all_byte(buf, 512, 0),
		   "sizes: old data kept, the extension reads zeroes");
		be->close(h);
	}
	unlink(p);
	r = be_open(&h, (const char *[]){ kv_path, "size=2M", "create=1", NULL });
	if (ok(r == 0 && file_size(p) == 2 << 20, "sizes: create=1 makes a new 2 MiB file")) {
		ok(file_blocks(p) == 0, "sizes: ... sparse");
		be->close(h);
	}
	/* Not a multiple of 512: the device ends at the last whole sector. */
	make_file(p, (1 << 20) + 100, 0);
	{
		struct env e;
		const char *kv[] = { kv_path, NULL };

		if (ok(env_open(&e, kv, 1, 256) == 0, "sizes: 1 MiB + 100 B file opens"))
			is_int(e.info.capacity_bytes, 1 << 20, "sizes: capacity rounded down");
		env_close(&e);
	}
	unlink(p);
}

static bool tmpdir_direct_ok(void)
{
	char p[300];
	int fd;

	path_of(p, sizeof(p), "direct-probe");
	fd = open(p, O_CREAT | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	unlink(p);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* Reads and writes of many shapes; cache is "none" or "writeback". */
static void test_rw(const char *cache)
{
	char p[300], kv_path[320], kv_cache[40];
	const char *kv[] = { kv_path, kv_cache, NULL };
	struct env e;
	unsigned spans = 0;
	struct sim_blk w;

	path_of(p, sizeof(p), "rw.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	snprintf(kv_cache, sizeof(kv_cache), "cache=%s", cache);
	make_file(p, 8 << 20, 0);
	if (!ok(env_open(&e, kv, 2, 4096) == 0, "rw(%s): device opened", cache))
		goto out;
	ok(!(e.info.features_offered & F(VIRTIO_BLK_F_RO)) &&
	   (e.info.features_offered & F(VIRTIO_BLK_F_FLUSH)) &&
	   (e.info.features_offered & F(VIRTIO_BLK_F_WRITE_ZEROES)),
	   "rw(%s): FLUSH and WRITE_ZEROES offered, not RO", cache);
	is_int(e.info.block_size, 512, "rw(%s): 512-byte blocks on this filesystem", cache);

	ok_null(write_read(&e, p, 0, 0, 512, 512, LAY_PLAIN), "rw(%s): one sector", cache);
	ok_null(write_read(&e, p, 0, 1, 4096, 512, LAY_PLAIN),
		"rw(%s): 8 x 512 at an odd sector", cache);
	ok_null(write_read(&e, p, 0, 100, 65536, 4096, LAY_PLAIN), "rw(%s): 16 x 4 KiB", cache);
	ok_null(write_read(&e, p, 0, 2048, 254 * 4096, 4096, LAY_PLAIN),
		"rw(%s): 254 x 4 KiB (seg_max, ~1 MiB)", cache);
	ok_null(write_read(&e, p, 0, 4096, 1 << 20, 128 << 10, LAY_PLAIN),
		"rw(%s): 8 x 128 KiB (1 MiB)", cache);
	ok_null(write_read(&e, p, 0, 7, 8 * 8192, 8192, LAY_CROSS),
		"rw(%s): 8 segments each crossing a region boundary", cache);
	blk_init(&w, VIRTIO_BLK_T_OUT, 0);
	add_segs(&e, &w, 8 * 8192, 8192, LAY_CROSS);
	for (int i = 0; i < w.nseg; i++)
		spans += sim_regions_spanned(e.sim, w.seg[i].addr, w.seg[i].len);
	ok(spans == 16, "rw(%s): (those were 16 iovecs)", cache);
	ok_null(write_read(&e, p, 0, 333, 5 * 1024 + 2048, 0, LAY_ODD),
		"rw(%s): misaligned addresses and odd segment lengths", cache);
	ok_null(write_read(&e, p, 1, 9000, 12288, 4096, LAY_PLAIN), "rw(%s): queue 1", cache);
	ok_null(write_read(&e, p, 0, 16383, 512, 512, LAY_PLAIN), "rw(%s): last sector", cache);
	is_int(flush_req(&e, 0), ST_OK, "rw(%s): FLUSH OK", cache);
	is_int(flush_req(&e, 1), ST_OK, "rw(%s): FLUSH OK on queue 1", cache);

	/* Many in flight at once, more than the AIO context holds (512, ~1150
	 * after the kernel's rounding):
	 * io_submit says EAGAIN and the rest goes in as room appears. */
	{
		enum { N = 1300 };
		static struct sim_blk b[N];
		unsigned got, bad = 0;
		uint8_t *buf = malloc(N * 512);
		uint64_t data = alloc_al(&e, N * 512);
		uint32_t id;

		for (unsigned i = 0; i < N; i++) {
			blk_init(&b[i], VIRTIO_BLK_T_OUT, 10000 + i);
			blk_add(&b[i], data + i * 512, 512);
			memset(sim_host(e.sim, b[i].seg[0].addr, 512), i & 0xff, 512);
			if (sim_blk_post(e.sim, 0, &b[i]) < 0)
				bad++;
		}
		sim_kick(e.sim, 0);
		got = sim_wait_used(e.sim, 0, N, WAIT_MS);
		while (sim_get_used(e.sim, 0, &id, NULL))
			;
		for (unsigned i = 0; i < N; i++)
			if (sim_blk_status(e.sim, &b[i]) != ST_OK)
				bad++;
		ok(got == N && bad == 0, "rw(%s): %u writes in one batch all completed OK (%u, %u bad)",
		   cache, N, got, bad);
		file_pread(p, buf, N * 512, 10000 * 512);
		for (unsigned i = 0; i < N; i++)
			if (!all_byte(buf + i * 512, 512, i & 0xff))
				bad++;
		ok(bad == 0, "rw(%s): ... and are all in the file", cache);
		free(buf);
	}
	{
		struct vdu_queue_stats st0, st1;

		vdu_dev_queue_stats(e.dev, 0, &st0);
		vdu_dev_queue_stats(e.dev, 1, &st1);
		ok(st0.errors == 0 && st1.errors == 0 && st0.inflight == 0 && !st0.broken,
		   "rw(%s): no errors, nothing in flight", cache);
	}
out:
	env_close(&e);
	unlink(p);
}

static void test_discard_zeroes(void)
{
	char p[300], kv_path[320];
	const char *kv[] = { kv_path, NULL };
	uint8_t *buf = malloc(1 << 20);
	struct env e;
	uint64_t b0, b1;
	bool punch;
	int fd;

	path_of(p, sizeof(p), "discard.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 4 << 20, 0x5a);
	fd = open(p, O_RDWR | O_CLOEXEC);
	punch = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 << 20, 4096) == 0;
	close(fd);
	make_file(p, 4 << 20, 0x5a);
	if (!ok(env_open(&e, kv, 1, 256) == 0, "discard: device opened"))
		goto out;
	ok(!!(e.info.features_offered & F(VIRTIO_BLK_F_DISCARD)) == punch,
	   "discard: DISCARD offered iff the filesystem punches holes (%d)", punch);
	if (!punch) {
		diag("no punch hole on %s: discard tests skipped", tmpdir);
		goto zeroes;
	}
	b0 = file_blocks(p);
	is_int(range_req(&e, VIRTIO_BLK_T_DISCARD, 0, 2048, 0), ST_OK, "discard: 1 MiB: OK");
	b1 = file_blocks(p);
	ok(b1 + 2048 <= b0, "discard: the file's blocks shrank by 1 MiB (%llu -> %llu)",
	   (unsigned long long)b0, (unsigned long long)b1);
	ok(dev_read(&e, 0, buf, 1 << 20) == ST_OK && all_byte(buf, 1 << 20, 0),
	   "discard: the range reads back zeroes");
	ok(dev_read(&e, 2048, buf, 4096) == ST_OK && all_byte(buf, 4096, 0x5a),
	   "discard: the next sectors are untouched");

	b0 = file_blocks(p);
	is_int(range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 4096, 512,
			 VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP), ST_OK,
	       "write-zeroes+UNMAP 256 KiB: OK");
	b1 = file_blocks(p);
	ok(b1 + 512 <= b0, "write-zeroes+UNMAP: blocks deallocated (%llu -> %llu)",
	   (unsigned long long)b0, (unsigned long long)b1);
	ok(dev_read(&e, 4096, buf, 256 << 10) == ST_OK && all_byte(buf, 256 << 10, 0),
	   "write-zeroes+UNMAP: reads back zeroes");
zeroes:
	b0 = file_blocks(p);
	is_int(range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 6000, 1000, 0), ST_OK,
	       "write-zeroes 500 KiB (no UNMAP): OK");
	b1 = file_blocks(p);
	ok(b1 >= b0, "write-zeroes without UNMAP keeps the space allocated (%llu -> %llu)",
	   (unsigned long long)b0, (unsigned long long)b1);
	ok(dev_read(&e, 6000, buf, 1000 * 512) == ST_OK && all_byte(buf, 1000 * 512, 0),
	   "write-zeroes: reads back zeroes");
	ok(file_pread(p, buf, 512, 5999 * 512) == 0 && all_byte(buf, 512, 0x5a) &&
	   file_pread(p, buf, 512, 7000 * 512) == 0 && all_byte(buf, 512, 0x5a),
	   "write-zeroes: the sectors either side are untouched");
	is_int(range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 8191, 1, 0), ST_OK,
	       "write-zeroes of the last sector: OK");
out:
	env_close(&e);
	free(buf);
	unlink(p);
}

static void test_read_only(void)
{
	char p[300], kv_path[320];
	const char *kv[] = { kv_path, "readonly=1", NULL };
	uint8_t buf[4096];
	struct env e;

	path_of(p, sizeof(p), "ro.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 1 << 20, 0x33);
	if (!ok(env_open(&e, kv, 1, 256) == 0, "read-only: device opened"))
		goto out;
	ok((e.info.features_offered & F(VIRTIO_BLK_F_RO)) && e.info.read_only &&
	   !(e.info.features_offered & (F(VIRTIO_BLK_F_DISCARD) | F(VIRTIO_BLK_F_WRITE_ZEROES))),
	   "read-only: VIRTIO_BLK_F_RO offered, no DISCARD/WRITE_ZEROES");
	is_int(dev_write_byte(&e, 0, 4096, 0x44), ST_IOERR, "read-only: OUT gives IOERR");
	ok(file_pread(p, buf, 4096, 0) == 0 && all_byte(buf, 4096, 0x33),
	   "read-only: the file is unchanged");
	ok(dev_read(&e, 0, buf, 4096) == ST_OK && all_byte(buf, 4096, 0x33),
	   "read-only: IN works");
	is_int(flush_req(&e, 0), ST_OK, "read-only: FLUSH OK");
out:
	env_close(&e);
	/* A file opened O_RDONLY elsewhere: the backend's own fallback when
	 * it cannot open for writing is covered by the guest tests (root
	 * ignores mode 0444 here). */
	unlink(p);
}

/* The file shrinks under the device: reads past the new end fail with
 * IOERR, that request only; the device keeps working. */
static void test_errors(void)
{
	char p[300], kv_path[320];
	const char *kv[] = { kv_path, NULL };
	uint8_t *buf = malloc(65536);
	struct vdu_queue_stats st;
	struct env e;

	path_of(p, sizeof(p), "err.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 1 << 20, 0x77);
	if (!ok(env_open(&e, kv, 1, 256) == 0, "errors: device opened"))
		goto out;
	ok(truncate(p, 512 << 10) == 0, "errors: file truncated to 512 KiB under the device");
	is_int(dev_read(&e, 1536, buf, 4096), ST_IOERR, "errors: read past the new end: IOERR");
	is_int(dev_read(&e, 1016, buf, 8192), ST_IOERR,
	       "errors: read straddling the new end (short read, then 0): IOERR");
	ok(dev_read(&e, 0, buf, 65536) == ST_OK && all_byte(buf, 65536, 0x77),
	   "errors: reads inside the file still work");
	ok_null(write_read(&e, p, 0, 100, 8192, 4096, LAY_PLAIN), "errors: the device still works");
	vdu_dev_queue_stats(e.dev, 0, &st);
	ok(st.errors == 2 && !st.broken && st.inflight == 0,
	   "errors: 2 errors counted, queue not broken (errors %llu)",
	   (unsigned long long)st.errors);
out:
	env_close(&e);
	free(buf);
	unlink(p);
}

/* Stopping the device with requests still at the backend: they all
 * complete (none left counted in flight, no leak under ASan). */
static void test_stop_inflight(void)
{
	char p[300], kv_path[320];
	const char *kv[] = { kv_path, NULL };
	enum { N = 64 };
	struct sim_blk b[N];
	struct env e;
	unsigned before;

	path_of(p, sizeof(p), "stop.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 16 << 20, 0);
	if (!ok(env_open(&e, kv, 1, 256) == 0, "stop: device opened"))
		goto out;
	for (unsigned i = 0; i < N - 4; i++) {
		blk_init(&b[i], i % 8 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_FLUSH, i * 256);
		if (i % 8)
			blk_add(&b[i], alloc_al(&e, 16384), 16384);
		sim_blk_post(e.sim, 0, &b[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		struct sim_blk *z = &b[N - 4 + i];

		post_range(&e, z, VIRTIO_BLK_T_WRITE_ZEROES, 20000 + i * 2048, 2048, 0);
		sim_blk_post(e.sim, 0, z);
	}
	/* One loop pass: the kick is served, io_submit() done, completions
	 * (mostly) not yet reaped. */
	eventfd_write(e.sim->vq[0].kickfd, 1);
	event_base_loop(e.base, EVLOOP_NONBLOCK);
	before = vdu_dev_inflight(e.dev);
	sim_reset(e.sim);
	ok(vdu_dev_stop(e.dev) == 0, "stop: device stopped with %u requests in flight", before);
	is_int(vdu_dev_inflight(e.dev), 0, "stop: every request was completed by queue_close");
out:
	env_close(&e);
	unlink(p);
}

/* A block device: a loop device over a file, 4 KiB sectors. */
/* vdu_dev_resize on a regular file: it grows sparse, is cut only with
 * SHRINK, and requests beyond a shrunken end fail. */
static void test_resize(void)
{
	char p[300], kv_path[320];
	const char *kv[] = { kv_path, NULL };
	uint8_t buf[4096];
	struct env e;

	path_of(p, sizeof(p), "resize.img");
	make_file(p, 4 << 20, 0x5a);
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	if (!ok(env_open(&e, kv, 1, 256) == 0, "resize: opened"))
		goto out;
	is_int(vdu_dev_resize(e.dev, 8 << 20, 0), 0, "resize: grow 4 -> 8 MiB");
	is_int(file_size(p), 8 << 20, "resize: the file has 8 MiB");
	is_int(sim_config_capacity(e.sim), (8 << 20) / SECTOR, "resize: config space says 8 MiB");
	is_int(e.sim->config_irqs, 1, "resize: one config interrupt");
	ok(dev_read(&e, (8 << 20) / SECTOR - 8, buf, sizeof(buf)) == ST_OK &&
	   all_byte(buf, sizeof(buf), 0), "resize: the new end reads as zeroes");
	ok_null(write_read(&e, p, 0, (6 << 20) / SECTOR, 8192, 4096, LAY_PLAIN),
		"resize: the grown region written and read back");
	ok(dev_read(&e, 0, buf, sizeof(buf)) == ST_OK && all_byte(buf, sizeof(buf), 0x5a),
	   "resize: the old data is still there");

	is_int(vdu_dev_resize(e.dev, 2 << 20, 0), -EINVAL, "resize: shrink without SHRINK: -EINVAL");
	is_int(file_size(p), 8 << 20, "resize: ... the file kept its size");
	is_int(vdu_dev_resize(e.dev, 2 << 20, VDU_RESIZE_F_SHRINK), 0, "resize: shrink to 2 MiB");
	is_int(file_size(p), 2 << 20, "resize: the file was cut to 2 MiB");
	is_int(sim_config_capacity(e.sim), (2 << 20) / SECTOR, "resize: config space says 2 MiB");
	is_int(dev_read(&e, (2 << 20) / SECTOR, buf, sizeof(buf)), ST_IOERR,
	       "resize: a read beyond the new end: IOERR");
	is_int(dev_write_byte(&e, (2 << 20) / SECTOR - 4, 4096, 1), ST_IOERR,
	       "resize: a write across the new end: IOERR");
	is_int(file_size(p), 2 << 20, "resize: ... and did not grow the file");
	env_close(&e);
	/* A file grown by hand beyond the new size keeps its bytes. */
	make_file(p, 4 << 20, 0x5a);
	if (env_open(&e, kv, 1, 256) == 0) {
		if (truncate(p, 16 << 20) < 0)
			diag("truncate: %s", strerror(errno));
		is_int(vdu_dev_resize(e.dev, 8 << 20, 0), 0, "resize: grow a file grown by hand");
		is_int(file_size(p), 16 << 20, "resize: ... the file was not cut");
		env_close(&e);
	}
out:
	unlink(p);
}

static void test_blockdev(void)
{
	char p[300], cmd[400], loopdev[64] = "", kv_path[80];
	const char *kv[] = { kv_path, NULL };
	uint8_t *buf = malloc(1 << 20);
	struct env e;
	FILE *f;

	path_of(p, sizeof(p), "loop.img");
	make_file(p, 16 << 20, 0x66);
	snprintf(cmd, sizeof(cmd), "losetup -f --show -b 4096 %s 2>/dev/null", p);
	if (geteuid() == 0 && (f = popen(cmd, "r"))) {
		if (!fgets(loopdev, sizeof(loopdev), f))
			loopdev[0] = '\0';
		pclose(f);
		loopdev[strcspn(loopdev, "\n")] = '\0';
	}
	if (!loopdev[0]) {
		printf("ok %u - # SKIP blockdev: no loop device (not root, or no losetup)\n",
		       ++tap_count);
		goto out_file;
	}
	snprintf(kv_path, sizeof(kv_path), "path=%s", loopdev);
	if (!ok(env_open(&e, kv, 1, 256) == 0, "blockdev: %s opened", loopdev))
		goto out;
	is_int(e.info.block_size, 4096, "blockdev: logical block size from the device");
	is_int(e.info.capacity_bytes, 16 << 20, "blockdev: size from the device");
	ok_null(write_read(&e, loopdev, 0, 8, 64 << 10, 4096, LAY_PLAIN),
		"blockdev: 16 x 4 KiB written and read back");
	ok_null(write_read(&e, loopdev, 0, 1024, 8192, 0, LAY_ODD),
		"blockdev: misaligned buffers (bounced)");
	is_int(flush_req(&e, 0), ST_OK, "blockdev: FLUSH OK");
	is_int(range_req(&e, VIRTIO_BLK_T_WRITE_ZEROES, 2048, 2048, 0), ST_OK,
	       "blockdev: WRITE_ZEROES (BLKZEROOUT) OK");
	ok(dev_read(&e, 2048, buf, 1 << 20) == ST_OK && all_byte(buf, 1 << 20, 0),
	   "blockdev: ... reads back zeroes");
	if (e.info.features_offered & F(VIRTIO_BLK_F_DISCARD)) {
		is_int(range_req(&e, VIRTIO_BLK_T_DISCARD, 8192, 2048, 0), ST_OK,
		       "blockdev: DISCARD (BLKDISCARD) OK");
	}
	/* Resize: not beyond the device; up to it once it has grown. */
	is_int(vdu_dev_resize(e.dev, 32 << 20, 0), -EOPNOTSUPP,
	       "blockdev: resize beyond the device's size: -EOPNOTSUPP");
	is_int(vdu_dev_resize(e.dev, 8 << 20, VDU_RESIZE_F_SHRINK), 0,
	       "blockdev: shrink (the device's end hidden)");
	is_int(sim_config_capacity(e.sim), (8 << 20) / SECTOR, "blockdev: config space says 8 MiB");
	is_int(range_req(&e, VIRTIO_BLK_T_IN, 16384, 8, 0), ST_IOERR,
	       "blockdev: a read beyond the new end: IOERR");
	snprintf(cmd, sizeof(cmd), "truncate -s 32M %s && losetup -c %s", p, loopdev);
	if (system(cmd) == 0) {
		is_int(vdu_dev_resize(e.dev, 32 << 20, 0), 0,
		       "blockdev: grow once the device has grown (losetup -c)");
		is_int(sim_config_capacity(e.sim), (32 << 20) / SECTOR,
		       "blockdev: config space says 32 MiB");
		ok_null(write_read(&e, loopdev, 0, 60000, 8192, 4096, LAY_PLAIN),
			"blockdev: the grown region written and read back");
	} else {
		diag("%s failed", cmd);
	}
	env_close(&e);
out:
	snprintf(cmd, sizeof(cmd), "losetup -d %s", loopdev);
	if (system(cmd) != 0)
		diag("%s failed", cmd);
out_file:
	free(buf);
	unlink(p);
}

/*
 * The kernel will not pin the driver's buffers for direct I/O (VDUSE's
 * own bounce pages on Linux 6.12.118+; memfd_secret memory here, for
 * which the kernel answers the same EFAULT): the first request that
 * meets it is redone through the backend's aligned copy, and so is
 * every one after it.  No request fails.  read_first: the first EFAULT
 * comes from a read (else from a write).
 */
static void test_efault_copy(bool read_first)
{
	const char *what = read_first ? "read first" : "write first";
	char p[300], kv_path[320];
	const char *kv[] = { kv_path, "cache=none", NULL };
	struct vdu_bounce_info bi = { .struct_size = sizeof(bi) };
	struct vdu_queue_stats st;
	uint8_t *buf = malloc(65536);
	struct env e = { 0 };
	int r = sim_secret_mem_ok();

	if (r < 0 || !tmpdir_direct_ok()) {
		ok(1, "# SKIP efault(%s): %s", what, r < 0 ? "no memfd_secret here" :
		   "no O_DIRECT in the temp directory");
		free(buf);
		return;
	}
	path_of(p, sizeof(p), "efault.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 4 << 20, 0x5a); /* written extents: reads pin too */
	copy_warnings = 0;
	env_secret = true;
	r = env_open(&e, kv, 1, 256);
	env_secret = false;
	if (!ok(r == 0, "efault(%s): device on memfd_secret memory", what))
		goto out;
	ok(e.info.features_offered, "efault(%s): features offered", what);
	if (read_first) {
		memset(buf, 0, 65536);
		is_int(dev_read(&e, 16, buf, 65536), ST_OK, "efault(%s): read OK", what);
		ok(all_byte(buf, 65536, 0x5a), "efault(%s): read the file's data", what);
	}
	ok_null(write_read(&e, p, 0, 64, 65536, 4096, LAY_PLAIN),
		"efault(%s): 16 x 4 KiB written and read back", what);
	ok_null(write_read(&e, p, 0, 2048, 1 << 20, 128 << 10, LAY_PLAIN),
		"efault(%s): 1 MiB written and read back", what);
	vdu_dev_queue_stats(e.dev, 0, &st);
	is_int((int)st.errors, 0, "efault(%s): no request failed", what);
	is_int(vdu_dev_get_bounce(e.dev, &bi), 0, "efault(%s): bounce info", what);
	ok(bi.copied >= (read_first ? 5u : 4u),
	   "efault(%s): every read and write copied (%llu)", what,
	   (unsigned long long)bi.copied);
	is_int(copy_warnings, 1, "efault(%s): one warning line", what);
out:
	env_close(&e);
	unlink(p);
	free(buf);
}

/* One single-segment request with its data at iova (in the bounce
 * buffer); the status, or 0xe? as run1 says. */
static uint8_t bounce_req(struct env *e, unsigned q, uint32_t type,
			  uint64_t sector, uint64_t iova, uint32_t len)
{
	struct sim_blk b;

	blk_init(&b, type, sector);
	blk_add(&b, iova, len);
	return run1(e, q, &b, NULL);
}

/* Write a pattern through the bounce buffer at iova, check the file, read
 * it back into iova2, compare.  NULL or why not. */
static const char *bounce_write_read(struct env *e, const char *path,
				     uint64_t sector, uint64_t iova,
				     uint64_t iova2, uint32_t len, uint32_t seed)
{
	static char why[120];
	uint8_t *pat = malloc(len), *got = malloc(len);
	const char *res = why;
	uint8_t st;

	pattern(pat, len, seed);
	sim_write(e->sim, iova, pat, len);
	st = bounce_req(e, 0, VIRTIO_BLK_T_OUT, sector, iova, len);
	if (st != ST_OK) {
		snprintf(why, sizeof(why), "write: status %#x", st);
		goto out;
	}
	if (file_pread(path, got, len, sector * SECTOR) < 0 || memcmp(got, pat, len)) {
		snprintf(why, sizeof(why), "write: file content differs");
		goto out;
	}
	memset(got, 0xa5, len);
	sim_write(e->sim, iova2, got, len);
	st = bounce_req(e, 0, VIRTIO_BLK_T_IN, sector, iova2, len);
	sim_read(e->sim, iova2, got, len);
	if (st != ST_OK || memcmp(got, pat, len)) {
		snprintf(why, sizeof(why), "read: status %#x, data %s", st,
			 memcmp(got, pat, len) ? "differs" : "OK");
		goto out;
	}
	res = NULL;
out:
	free(pat);
	free(got);
	return res;
}

/*
 * The bounce buffer in our memory (the simulated REG_UMEM): io_uring reads
 * and writes it as a fixed buffer, registered once per queue, and again
 * after a reset, whose idle buffer gets fresh pages (a ring still pinning
 * the old ones would write stale data to the file: the second cycle's
 * pattern checks that).  A request of two segments goes vectored.  libaio
 * never registers anything.  vdu_dev_get_user_bounce() says -ENOENT
 * before the first data and after the reset, the buffer in between.
 */
static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* This process's pinned memory (io_uring's registered buffers), KiB. */
static long vm_pin_kb(void)
{
	char line[128];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void test_fixed(const char *engine)
{
	bool uring = !strcmp(engine, "io_uring");
	char p[300], kv_path[320];
	const char *kv[] = { kv_path, "cache=none", NULL };
	struct vbe_file_stats fs;
	struct env e;
	struct sim_blk b;
	void *buf = NULL;
	uint64_t size = 0, gen = 0, fixed0;
	uint8_t *two = malloc(16384);
	unsigned errs0 = lib_errors;
	int r;

	path_of(p, sizeof(p), "fixed.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 4 << 20, 0);
	env_bounce = true;
	env_bounce_mode = VDU_BOUNCE_USER;
	r = env_open(&e, kv, 1, 256);
	env_bounce = false;
	env_bounce_mode = 0;
	if (!ok(r == 0, "fixed(%s): device with a bounce buffer", engine))
		goto out;
	vbe_file_stats(e.h, &fs);
	is_str(fs.engine, engine, "fixed(%s): the engine asked for", engine);
	is_int(vdu_dev_get_user_bounce(e.dev, &buf, &size, &gen), -ENOENT,
	       "fixed(%s): no user bounce buffer before the first data", engine);
	ok_null(bounce_write_read(&e, p, 8, 0x10000, 0x40000, 65536, 1),
		"fixed(%s): 64 KiB through the bounce buffer", engine);
	r = vdu_dev_get_user_bounce(e.dev, &buf, &size, &gen);
	ok(r == 0 && buf && size == BOUNCE_LEN && gen == 1,
	   "fixed(%s): vdu_dev_get_user_bounce: our %llu KiB, registration %llu (%d)",
	   engine, (unsigned long long)size >> 10, (unsigned long long)gen, r);
	vbe_file_stats(e.h, &fs);
	if (uring)
		ok(fs.fixed_ios >= 2 && fs.fixed_regs == 1,
		   "fixed(%s): READ_FIXED/WRITE_FIXED used (%llu), registered once",
		   engine, (unsigned long long)fs.fixed_ios);
	else
		ok(fs.fixed_ios == 0 && fs.fixed_regs == 0,
		   "fixed(%s): nothing registered", engine);
	/* Two segments: vectored, even inside the buffer. */
	fixed0 = fs.fixed_ios;
	pattern(two, 16384, 5);
	sim_write(e.sim, 0x80000, two, 8192);
	sim_write(e.sim, 0x90000, two + 8192, 8192);
	blk_init(&b, VIRTIO_BLK_T_OUT, 64);
	blk_add(&b, 0x80000, 8192);
	blk_add(&b, 0x90000, 8192);
	is_int(run1(&e, 0, &b, NULL), ST_OK, "fixed(%s): a two-segment write", engine);
	vbe_file_stats(e.h, &fs);
	is_int(fs.fixed_ios, fixed0, "fixed(%s): ... went vectored", engine);
	{
		uint8_t *want = malloc(16384);

		pattern(want, 16384, 5);
		ok(file_pread(p, two, 16384, 64 * SECTOR) == 0 && !memcmp(two, want, 16384),
		   "fixed(%s): ... and is in the file", engine);
		free(want);
	}
	is_int(flush_req(&e, 0), ST_OK, "fixed(%s): FLUSH OK", engine);

	/* A reset gives the idle buffer's pages back; the next cycle's
	 * registration is another. */
	is_int(sim_reset(e.sim), VDUSE_REQ_RESULT_OK, "fixed(%s): reset", engine);
	is_int(vdu_dev_get_user_bounce(e.dev, NULL, NULL, NULL), -ENOENT,
	       "fixed(%s): no user bounce buffer after the reset", engine);
	if (uring) {
		/* The ring still pins the old pages; an idle queue (no
		 * request may come: a detached device) lets them go within
		 * its periodic check. */
		long pin0 = vm_pin_kb(), pin = pin0;
		uint64_t t0 = now_ms();

		while (pin > 0 && now_ms() - t0 < 3000) {
			struct timeval tv = { 0, 50000 };

			event_base_loopexit(e.base, &tv);
			event_base_loop(e.base, 0);
			pin = vm_pin_kb();
		}
		ok(pin0 > 0 && pin == 0, "fixed(%s): the idle ring unpinned the old "
		   "buffer (%ld KiB) in %llu ms", engine, pin0,
		   (unsigned long long)(now_ms() - t0));
	}
	is_int(sim_init(e.sim, e.info.features_offered, 1, e.info.queue_size, 0),
	       VDUSE_REQ_RESULT_OK, "fixed(%s): driver back", engine);
	ok_null(bounce_write_read(&e, p, 512, 0x10000, 0x40000, 65536, 2),
		"fixed(%s): 64 KiB through the bounce buffer after the reset", engine);
	r = vdu_dev_get_user_bounce(e.dev, NULL, NULL, &gen);
	ok(r == 0 && gen == 2, "fixed(%s): registration 2 (%llu)", engine,
	   (unsigned long long)gen);
	vbe_file_stats(e.h, &fs);
	if (uring)
		ok(fs.fixed_ios >= fixed0 + 2 && fs.fixed_regs == 2,
		   "fixed(%s): the queue registered the new one (%u), fixed I/O again",
		   engine, fs.fixed_regs);
	is_int(lib_errors - errs0, 0, "fixed(%s): no errors logged", engine);
	env_close(&e);

	/* The kernel's pages: nothing to register, vectored I/O. */
	env_bounce = true;
	env_bounce_mode = VDU_BOUNCE_KERNEL;
	r = env_open(&e, kv, 1, 256);
	env_bounce = false;
	env_bounce_mode = 0;
	if (!ok(r == 0, "fixed(%s): device on the kernel's bounce pages", engine))
		goto out;
	ok_null(bounce_write_read(&e, p, 8, 0x10000, 0x40000, 65536, 3),
		"fixed(%s): 64 KiB through the kernel's bounce pages", engine);
	is_int(vdu_dev_get_user_bounce(e.dev, &buf, &size, &gen), -ENOENT,
	       "fixed(%s): vdu_dev_get_user_bounce: -ENOENT for the kernel's pages",
	       engine);
	vbe_file_stats(e.h, &fs);
	ok(fs.fixed_ios == 0 && fs.fixed_regs == 0,
	   "fixed(%s): kernel's pages: nothing registered, vectored I/O", engine);
out:
	env_close(&e);
	unlink(p);
	free(two);
}

/* io_uring here (the syscall, as liburing makes it): 0, or why not. */
static const char *uring_unavailable(void)
{
	static char why[120];
	struct io_uring_params prm;
	long fd;

#ifndef HAVE_LIBURING
	return "this build has no io_uring engine (no liburing)";
#endif
	memset(&prm, 0, sizeof(prm));
	fd = syscall(__NR_io_uring_setup, 4, &prm);
	if (fd >= 0) {
		close((int)fd);
		return NULL;
	}
	snprintf(why, sizeof(why), "io_uring_setup: %s%s", strerror(errno),
		 errno == EPERM ? " (sysctl kernel.io_uring_disabled?)" : "");
	return why;
}

/* aio=auto takes io_uring where it works; aio=io_uring where it does not
 * is an error at open, aio=auto then libaio. */
static void test_engine_choice(void)
{
	char p[300], kv_path[320];
	struct vbe_file_stats fs;
	const char *no = uring_unavailable();
	void *h;
	int r;

	path_of(p, sizeof(p), "choice.img");
	snprintf(kv_path, sizeof(kv_path), "path=%s", p);
	make_file(p, 1 << 20, 0);
	r = be_open(&h, (const char *[]){ kv_path, "aio=auto", NULL });
	if (ok(r == 0, "engine: aio=auto opens")) {
		vbe_file_stats(h, &fs);
		is_str(fs.engine, no ? "libaio" : "io_uring",
		       "engine: aio=auto is %s here", no ? "libaio" : "io_uring");
		be->close(h);
	}
	r = be_open(&h, (const char *[]){ kv_path, "aio=libaio", NULL });
	if (ok(r == 0, "engine: aio=libaio opens")) {
		vbe_file_stats(h, &fs);
		is_str(fs.engine, "libaio", "engine: aio=libaio is libaio");
		be->close(h);
	}
	r = be_open(&h, (const char *[]){ kv_path, "aio=io_uring", NULL });
	if (!no)
		ok(r == 0, "engine: aio=io_uring opens");
	else
		ok(r < 0 && r != -EINVAL, "engine: aio=io_uring refused where io_uring "
		   "is not to be had (%s): %d", no, r);
	if (r == 0)
		be->close(h);
	unlink(p);
}

/* The I/O tests, on one engine. */
static void io_tests(const char *engine)
{
	snprintf(aio_kv, sizeof(aio_kv), "aio=%s", engine);
	diag("engine: %s", engine);
	test_rw("none");
	test_rw("writeback");
	test_discard_zeroes();
	test_read_only();
	test_errors();
	test_stop_inflight();
	test_resize();
	test_blockdev();
	test_efault_copy(false);
	test_efault_copy(true);
	test_fixed(engine);
	aio_kv[0] = '\0';
}

static void pick_tmpdir(void)
{
	const char *cand[] = { getenv("TMPDIR"), "/var/tmp", "/tmp" };

	for (unsigned i = 0; i < 3; i++) {
		struct statfs sf;

		if (!cand[i] || statfs(cand[i], &sf) < 0)
			continue;
		snprintf(tmpdir, sizeof(tmpdir), "%s/vdu-test-file.XXXXXX", cand[i]);
		if (!mkdtemp(tmpdir))
			continue;
		if (sf.f_type != TMPFS_MAGIC && tmpdir_direct_ok())
			return;
		rmdir(tmpdir);
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s/vdu-test-file.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
}

int main(void)
{
	vdu_set_log(log_cb, NULL, VDU_LOG_DEBUG);
	pick_tmpdir();
	diag("temp files in %s (O_DIRECT %s)", tmpdir,
	     tmpdir_direct_ok() ? "works" : "refused: page-cache fallback");

	test_params();
	test_sizes();
	test_engine_choice();
	io_tests("libaio");
	if (uring_unavailable())
		printf("ok %u - # SKIP the I/O tests on io_uring: %s\n", ++tap_count,
		       uring_unavailable());
	else
		io_tests("io_uring");

	rmdir(tmpdir);
	return tap_done();
}
