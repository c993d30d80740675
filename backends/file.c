/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file backend: a regular file or a block device.
 *
 * Reads, writes and flushes go through one of two engines, per queue:
 * io_uring (liburing) or Linux AIO (libaio).  Either way a queue has its
 * own ring or io_context whose completions arrive on an eventfd in the
 * queue's event loop; requests point straight at the driver's buffers (no
 * copy) and a batch goes to the kernel with one system call (the
 * library's unplug).  io_uring also reads and writes the device's bounce
 * buffer as a registered (fixed) buffer when it is our memory, so the
 * kernel does not pin its pages at every request.  The operations with no
 * asynchronous form here (discard, write-zeroes, and fdatasync where AIO
 * has no IOCB_CMD_FDSYNC) run on a per-queue helper thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libaio.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <event2/event.h>

#include "backends.h"
#include "worker.h"

#define AIO_DEPTH 512            /* iocbs (SQEs) per queue; more wait for room */
#define SUBMIT_CHUNK 128         /* iocbs per io_submit call */
#define MAX_EVENTS 64            /* reaped per io_getevents call (CQE pass) */
/* A batch holding this much data is submitted without waiting for the
 * rest: storage that completes inside io_submit (RAM, page cache) then
 * returns large requests one by one, each with its own interrupt, so the
 * driver works on the first while the next is copied, instead of all of
 * them completing at once at the end of the batch. */
#define SUBMIT_EARLY_BYTES (256u << 10)
#define ZERO_BUF_SIZE (1u << 20) /* last-resort write-zeroes chunk */

struct file_dev {
	int fd;
	char path[4096];
	uint64_t size;
	uint32_t lbs, pbs, discard_gran;
	/* O_DIRECT constraints: buffer address / file offset and length */
	uint32_t mem_align, dio_align;
	bool read_only, direct, blkdev, discard;
	/* learnt at run time, shared by the queues' threads; they only
	 * ever flip from true to false */
	_Atomic bool zero_range_ok, aio_fdsync_ok;
	/* ... and this one only from false to true: the kernel refused to
	 * pin the driver's buffers for direct I/O (EFAULT), so every read
	 * and write goes through an aligned copy of ours */
	_Atomic bool copy_all;
	int aio;                  /* FILE_AIO_*: aio= */
	const struct file_engine *engine; /* what queues open (aio=auto: the
					   * one that worked at open) */
	/* one log line each per device */
	_Atomic bool fallback_logged, fixed_fail_logged;
	struct vdu_dev *_Atomic dev; /* set_dev(): whose bounce buffer */
	_Atomic uint64_t fixed_ios;  /* reads/writes on a fixed buffer */
	_Atomic unsigned fixed_regs; /* fixed buffer registrations */
};

enum { FILE_AIO_AUTO, FILE_AIO_URING, FILE_AIO_LIBAIO };

struct file_q;
struct file_io;

/*
 * What differs between io_uring and libaio.  The rest (batching, short
 * I/O, the aligned copy, errors, closing) is shared.
 */
struct file_engine {
	const char *name;
	/* Set up the queue's context; completions signal fq->efd. */
	int (*open)(struct file_q *fq);
	/* fio (read, write or flush) joins the batch. */
	void (*add)(struct file_q *fq, struct file_io *fio);
	/* Hand the batch to the kernel. */
	void (*flush)(struct file_q *fq);
	/* Complete what the kernel has finished, without waiting; how many. */
	unsigned (*reap)(struct file_q *fq);
	/* Closing: fail what was never handed over, wait for the rest (all
	 * completed with -EIO), free the context. */
	void (*close)(struct file_q *fq);
};

struct file_q {
	struct file_dev *d;
	const struct file_engine *eng;
	unsigned qidx;
	int efd;
	struct event *ev;
	struct event *retry;    /* submit refused (EAGAIN) with nothing in flight */
	struct file_io *pending, *pending_tail; /* not yet with the kernel */
	uint64_t pending_bytes; /* data submitted since the last unplug */
	unsigned inflight;      /* with the kernel (iocbs, SQEs), not yet reaped */
	struct vbe_worker *wk;
	io_context_t ctx;       /* libaio */
#ifdef HAVE_LIBURING
	struct io_uring ring;
	/* The bounce buffer registered with ring as fixed buffer 0, while
	 * fixed_gen (vdu_dev_get_user_bounce's) is not 0. */
	char *fixed_buf;
	uint64_t fixed_size, fixed_gen;
	bool fixed_off;         /* registering failed: not on this queue */
	bool fixed_stale;       /* a newer registration exists: not fixed */
	bool submit_err_logged;
	struct event *fixed_check; /* drops a stale registration when idle */
#endif
	unsigned nfixed;        /* fixed reads/writes not yet counted in d */
};

/* Per-request state, in the library's vdu_io.priv scratch area. */
struct file_io {
	struct iocb cb;
	struct vbe_work work;
	struct file_q *fq;
	struct vdu_io *io;
	struct file_io *next; /* in file_q.pending */
	uint64_t done;        /* bytes transferred by earlier short I/Os */
	struct iovec *rest;   /* remaining iovecs after a short I/O */
	int restcnt;
	struct iovec bounce;  /* O_DIRECT copy of a misaligned request */
	bool fixed;           /* in flight as READ_FIXED/WRITE_FIXED */
	bool no_fixed;        /* a fixed op met EFAULT: vectored from now */
};

/* ------------------------------------------------------------ open */

static uint32_t sysfs_u32(dev_t rdev, const char *attr)
{
	char path[128], buf[32];
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s",
		 major(rdev), minor(rdev), attr);
	f = fopen(path, "re");
	if (!f) {
		/* A partition: the queue is its disk's, one level up. */
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/../queue/%s",
			 major(rdev), minor(rdev), attr);
		f = fopen(path, "re");
	}
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f))
		v = strtoul(buf, NULL, 10);
	fclose(f);
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int open_fd(struct file_dev *d, bool create, bool want_direct)
{
	int flags = (d->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
		    (create ? O_CREAT : 0);

	d->direct = want_direct;
	d->fd = open(d->path, flags | (want_direct ? O_DIRECT : 0), 0600);
	if (d->fd < 0 && want_direct && errno == EINVAL) {
		/* tmpfs and some FUSE filesystems refuse O_DIRECT. */
		vdu_log(VDU_LOG_WARNING, "file: %s: O_DIRECT not supported here; "
			"using the page cache (cache=writeback)", d->path);
		d->direct = false;
		d->fd = open(d->path, flags, 0600);
	}
	if (d->fd < 0 && !d->read_only && (errno == EACCES || errno == EROFS)) {
		vdu_log(VDU_LOG_WARNING, "file: %s is not writable (%s); the "
			"device will be read-only", d->path, strerror(errno));
		d->read_only = true;
		return open_fd(d, false, want_direct);
	}
	if (d->fd < 0) {
		int r = -errno;
		vdu_log(VDU_LOG_ERR, "file: cannot open %s: %s", d->path, strerror(errno));
		return r;
	}
	return 0;
}

static bool pow2_in(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v >= lo && v <= hi && !(v & (v - 1));
}

/* What O_DIRECT demands of buffers and offsets (statx DIOALIGN, Linux
 * 6.1+); 512 where the kernel cannot tell. */
static void probe_dio(struct file_dev *d, dev_t rdev)
{
	struct statx sx;

	d->mem_align = d->dio_align = 512;
	if (!d->direct)
		return;
	if (statx(d->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
		if (pow2_in(sx.stx_dio_mem_align, 1, 65536))
			d->mem_align = sx.stx_dio_mem_align;
		if (pow2_in(sx.stx_dio_offset_align, 1, 65536))
			d->dio_align = sx.stx_dio_offset_align;
	} else if (d->blkdev) {
		uint32_t a = sysfs_u32(rdev, "dma_alignment") + 1;

		if (pow2_in(a, 1, 65536))
			d->mem_align = a;
		d->dio_align = d->lbs;
	}
	if (d->mem_align < sizeof(void *))
		d->mem_align = sizeof(void *);
	if (d->dio_align < 512)
		d->dio_align = 512;
}

static int probe(struct file_dev *d, uint64_t want_size, bool create)
{
	struct stat st;

	if (fstat(d->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		int lbs = 512;
		unsigned int pbs = 0;

		d->blkdev = true;
		if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0 ||
		    ioctl(d->fd, BLKSSZGET, &lbs) < 0)
			return -errno;
		if (ioctl(d->fd, BLKPBSZGET, &pbs) < 0)
			pbs = lbs;
		d->lbs = lbs;
		d->pbs = pbs;
		d->discard = !d->read_only &&
			     sysfs_u32(st.st_rdev, "discard_max_bytes") > 0;
		d->discard_gran = sysfs_u32(st.st_rdev, "discard_granularity");
		if (want_size && want_size != d->size) {
			vdu_log(VDU_LOG_ERR, "file: %s is a block device of %" PRIu64
				" bytes; drop size=", d->path, d->size);
			return -EINVAL;
		}
		probe_dio(d, st.st_rdev);
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		vdu_log(VDU_LOG_ERR, "file: %s is neither a regular file nor a "
			"block device", d->path);
		return -EINVAL;
	}
	d->size = st.st_size;
	if (want_size && want_size != d->size) {
		if (!create || want_size < d->size) {
			vdu_log(VDU_LOG_ERR, "file: %s has %" PRIu64 " bytes, not %"
				PRIu64 "; %s", d->path, d->size, want_size,
				want_size < d->size ? "refusing to shrink it" :
				"add create=1 to extend it");
			return -EINVAL;
		}
		if (ftruncate(d->fd, want_size) < 0) {
			int r = -errno;
			vdu_log(VDU_LOG_ERR, "file: cannot extend %s: %s", d->path,
				strerror(errno));
			return r;
		}
		d->size = want_size;
	}
	if (d->size < 512) {
		vdu_log(VDU_LOG_ERR, "file: %s is empty; give size=SIZE and "
			"create=1 to create it", d->path);
		return -EINVAL;
	}
	/* With O_DIRECT the device's blocks must be what the file's
	 * filesystem can take directly (4096 on a 4Kn disk). */
	probe_dio(d, 0);
	d->lbs = d->direct ? d->dio_align : 512;
	d->pbs = st.st_blksize >= 512 && st.st_blksize <= 65536 ? st.st_blksize : 512;
	if (d->pbs < d->lbs)
		d->pbs = d->lbs;
	d->discard_gran = d->pbs;
	/* Punching a hole past EOF changes nothing and tells whether the
	 * filesystem can deallocate at all. */
	d->discard = !d->read_only &&
		     fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       (d->size + 65535) & ~65535ULL, 65536) == 0;
	return 0;
}

static int pick_engine(struct file_dev *d);

static bool param_on(const struct vdu_param *p, size_t n, const char *key)
{
	const char *v = vdu_param_get(p, n, key);

	return v && vdu_parse_bool(v) == 1;
}

/* What the option table cannot say, without side effects. */
static int file_check(const struct vdu_param *p, size_t n, char *err,
		      size_t errlen)
{
	const char *path = vdu_param_get(p, n, "path");
	bool create = param_on(p, n, "create");
	struct stat st;

	if (create && !vdu_param_get(p, n, "size")) {
		snprintf(err, errlen, "file: create=on needs size=SIZE (e.g. --size 10G)");
		return -EINVAL;
	}
	if (create && param_on(p, n, "readonly")) {
		snprintf(err, errlen, "file: create=on cannot be read-only: drop readonly or create");
		return -EINVAL;
	}
	if (strlen(path) >= sizeof(((struct file_dev *)0)->path)) {
		snprintf(err, errlen, "file: path is too long: at most %zu bytes",
			 sizeof(((struct file_dev *)0)->path) - 1);
		return -EINVAL;
	}
	if (stat(path, &st) < 0) {
		if (errno == ENOENT && create)
			return 0;
		if (errno == ENOENT)
			snprintf(err, errlen, "file: path=%s does not exist: create it (truncate -s 10G %s) or add -o create=on with --size",
				 path, path);
		else
			snprintf(err, errlen, "file: path=%s: %s", path, strerror(errno));
		return -EINVAL;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "file: path=%s is not a regular file or a block device",
			 path);
		return -EINVAL;
	}
	return 0;
}

static int file_open(const struct vdu_param *p, size_t n, void **handle)
{
	struct file_dev *d = calloc(1, sizeof(*d));
	const char *path = vdu_param_get(p, n, "path");
	const char *size_s = vdu_param_get(p, n, "size");
	const char *cache = vdu_param_get(p, n, "cache");
	const char *aio = vdu_param_get(p, n, "aio");
	bool create = param_on(p, n, "create");
	bool direct = !cache || strcmp(cache, "writeback") != 0;
	uint64_t size = 0;
	int r = -EINVAL;

	/* vdu_plugin_check() has accepted the values. */
	if (!d)
		return -ENOMEM;
	d->read_only = param_on(p, n, "readonly");
	d->aio = !aio || !strcmp(aio, "auto") ? FILE_AIO_AUTO :
		 !strcmp(aio, "libaio") ? FILE_AIO_LIBAIO : FILE_AIO_URING;
	if (!path || (size_s && vdu_parse_size(size_s, &size) < 0)) {
		vdu_log(VDU_LOG_ERR, "file: path= is required");
		goto fail;
	}
	if (snprintf(d->path, sizeof(d->path), "%s", path) >= (int)sizeof(d->path)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	if (create && (d->read_only || !size)) {
		vdu_log(VDU_LOG_ERR, "file: create=on needs size= and a writable file");
		goto fail;
	}
	r = open_fd(d, create, direct);
	if (r < 0)
		goto fail;
	r = probe(d, size, create);
	if (r < 0) {
		close(d->fd);
		goto fail;
	}
	r = pick_engine(d);
	if (r < 0) {
		close(d->fd);
		goto fail;
	}
	d->zero_range_ok = !d->blkdev;
	d->aio_fdsync_ok = true;
	vdu_log(VDU_LOG_INFO, "file: %s: %" PRIu64 " bytes, %s, %s, %s%s%s", d->path,
		d->size, d->blkdev ? "block device" : "regular file",
		d->direct ? "O_DIRECT" : "page cache", d->engine->name,
		d->read_only ? ", read-only" : "", d->discard ? ", discard" : "");
	*handle = d;
	return 0;
fail:
	free(d);
	return r;
}

static void file_close(void *handle)
{
	struct file_dev *d = handle;

	close(d->fd);
	free(d);
}

static int file_get_info(void *handle, struct vdu_backend_info *info)
{
	struct file_dev *d = handle;

	memset(info, 0, sizeof(*info));
	info->size = d->size;
	info->logical_block_size = d->lbs;
	info->physical_block_size = d->pbs;
	info->caps = VDU_CAP_FLUSH | (d->direct ? VDU_CAP_DIRECT_IO : 0);
	if (d->read_only)
		info->caps |= VDU_CAP_READ_ONLY;
	else
		info->caps |= VDU_CAP_WRITE_ZEROES | (d->discard ? VDU_CAP_DISCARD : 0);
	info->discard_granularity = d->discard_gran;
	return 0;
}

/*
 * A regular file grows (sparse, as create=on makes it) unless it already
 * has the bytes, and is cut down only for a shrink.  A block device
 * cannot grow: a larger size is accepted only up to what the device has
 * become (grown underneath, e.g. lvextend); a smaller one hides its end.
 */
static int file_resize(void *handle, uint64_t size, unsigned flags)
{
	struct file_dev *d = handle;
	struct stat st;

	if (d->read_only)
		return -EROFS;
	if (size % d->lbs) {
		vdu_log(VDU_LOG_ERR, "file: %s: %" PRIu64 " bytes is not a "
			"multiple of its %" PRIu32 "-byte blocks", d->path, size,
			d->lbs);
		return -EINVAL;
	}
	if (size < d->size && !(flags & VDU_RESIZE_F_SHRINK))
		return -EINVAL;
	if (d->blkdev) {
		uint64_t have;

		if (ioctl(d->fd, BLKGETSIZE64, &have) < 0)
			return -errno;
		if (size > have) {
			vdu_log(VDU_LOG_ERR, "file: %s is a block device of %" PRIu64
				" bytes: it cannot grow to %" PRIu64 " (grow the device "
				"itself first)", d->path, have, size);
			return -EOPNOTSUPP;
		}
	} else {
		if (fstat(d->fd, &st) < 0)
			return -errno;
		if ((size > (uint64_t)st.st_size || size < d->size) &&
		    ftruncate(d->fd, (off_t)size) < 0) {
			int r = -errno;

			vdu_log(VDU_LOG_ERR, "file: cannot %s %s to %" PRIu64
				" bytes: %s", size < d->size ? "shrink" : "extend",
				d->path, size, strerror(errno));
			return r;
		}
	}
	vdu_log(VDU_LOG_INFO, "file: %s: %" PRIu64 " -> %" PRIu64 " bytes",
		d->path, d->size, size);
	d->size = size;
	return 0;
}

/* --------------------------------------------------- blocking jobs */

static int write_zero_buffers(struct file_dev *d, uint64_t off, uint64_t len)
{
	void *buf;
	int r = 0;

	if (posix_memalign(&buf, 4096, ZERO_BUF_SIZE))
		return -ENOMEM;
	memset(buf, 0, ZERO_BUF_SIZE);
	while (len && r == 0) {
		size_t chunk = len < ZERO_BUF_SIZE ? len : ZERO_BUF_SIZE;
		ssize_t w = pwrite(d->fd, buf, chunk, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			r = w < 0 ? -errno : -EIO;
		else {
			off += w;
			len -= w;
		}
	}
	free(buf);
	return r;
}

static int do_write_zeroes(struct file_dev *d, const struct vdu_io *io)
{
	const int keep = FALLOC_FL_KEEP_SIZE;

	if (d->blkdev) {
		uint64_t range[2] = { io->offset, io->len };
		return ioctl(d->fd, BLKZEROOUT, range) < 0 ? -errno : 0;
	}
	if ((io->flags & VDU_IO_F_UNMAP) && d->discard &&
	    fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | keep, io->offset, io->len) == 0)
		return 0;
	if (d->zero_range_ok) {
		if (fallocate(d->fd, FALLOC_FL_ZERO_RANGE | keep, io->offset, io->len) == 0)
			return 0;
		if (errno != EOPNOTSUPP)
			return -errno;
		d->zero_range_ok = false;
	}
	/* No ZERO_RANGE (tmpfs...): a hole reads as zeroes; re-allocate it
	 * so that the caller, who did not allow unmapping, keeps the space. */
	if (d->discard &&
	    fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | keep, io->offset, io->len) == 0) {
		fallocate(d->fd, keep, io->offset, io->len);
		return 0;
	}
	return write_zero_buffers(d, io->offset, io->len);
}

static int run_blocking(struct vbe_work *w)
{
	struct file_io *fio = (struct file_io *)((char *)w - offsetof(struct file_io, work));
	struct file_dev *d = fio->fq->d;
	struct vdu_io *io = fio->io;

	switch (io->op) {
	case VDU_IO_FLUSH:
		return fdatasync(d->fd) < 0 ? -errno : 0;
	case VDU_IO_DISCARD:
		if (d->blkdev) {
			uint64_t range[2] = { io->offset, io->len };
			return ioctl(d->fd, BLKDISCARD, range) < 0 ? -errno : 0;
		}
		return fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 io->offset, io->len) < 0 ? -errno : 0;
	case VDU_IO_WRITE_ZEROES:
		return do_write_zeroes(d, io);
	default:
		return -EOPNOTSUPP;
	}
}

static void blocking_done(struct vbe_work *w)
{
	struct file_io *fio = (struct file_io *)((char *)w - offsetof(struct file_io, work));

	vdu_io_complete(fio->io, w->result);
}

static void queue_blocking(struct file_io *fio)
{
	fio->work.fn = run_blocking;
	fio->work.done = blocking_done;
	vbe_worker_queue(fio->fq->wk, &fio->work);
}

/* ------------------------------------------- shared by the engines */

static void finish(struct file_io *fio, int result)
{
	struct vdu_io *io = fio->io;

	if (fio->bounce.iov_base) {
		if (result == 0 && io->op == VDU_IO_READ) {
			const char *p = fio->bounce.iov_base;

			for (int i = 0; i < io->iovcnt; i++) {
				memcpy(io->iov[i].iov_base, p, io->iov[i].iov_len);
				p += io->iov[i].iov_len;
			}
		}
		free(fio->bounce.iov_base);
		fio->bounce.iov_base = NULL;
	}
	free(fio->rest);
	fio->rest = NULL;
	vdu_io_complete(io, result);
}

/* The iovecs a read or write goes to now: what is left after a short
 * I/O, else our aligned copy, else the driver's buffers. */
static const struct iovec *rw_vec(const struct file_io *fio, int *cnt)
{
	if (fio->rest) {
		*cnt = fio->restcnt;
		return fio->rest;
	}
	if (fio->bounce.iov_base) {
		*cnt = 1;
		return &fio->bounce;
	}
	*cnt = fio->io->iovcnt;
	return fio->io->iov;
}

static void pending_push(struct file_q *fq, struct file_io *fio)
{
	fio->next = NULL;
	if (fq->pending)
		fq->pending_tail->next = fio;
	else
		fq->pending = fio;
	fq->pending_tail = fio;
}

static struct file_io *pending_pop(struct file_q *fq)
{
	struct file_io *fio = fq->pending;

	fq->pending = fio->next;
	return fio;
}

/* Closing: what never reached the kernel fails. */
static void fail_pending(struct file_q *fq)
{
	while (fq->pending)
		finish(pending_pop(fq), -EIO);
}

static void add_to_batch(struct file_q *fq, struct file_io *fio)
{
	fq->eng->add(fq, fio);
}

static void flush_batch(struct file_q *fq)
{
	fq->eng->flush(fq);
	fq->pending_bytes = 0;
}

/* The kernel would take no more for now, and no completion will come to
 * retry: retry on a short timer. */
static void retry_later(struct file_q *fq)
{
	struct timeval tv = { 0, 1000 };

	evtimer_add(fq->retry, &tv);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	flush_batch(arg);
}

static int setup_bounce(struct file_io *fio);

/*
 * Direct I/O into the driver's buffers failed with EFAULT (a completion:
 * submitting itself only fails on the iocbs): the kernel would not pin
 * them (the kernel's own bounce pages on Linux 6.12.118+, when the
 * device could not register memory of its own).  The request is done
 * again, whole, through our aligned copy, and so is every one after it,
 * for the device's life: no error reaches the driver for a page the
 * kernel would not pin.  Must be followed by flush_batch().
 */
static void redo_through_copy(struct file_q *fq, struct file_io *fio)
{
	struct file_dev *d = fq->d;
	int r;

	if (!atomic_exchange(&d->copy_all, true))
		vdu_log(VDU_LOG_WARNING, "file: %s: the kernel refused direct I/O "
			"into the driver's buffers (EFAULT): copying through our "
			"own buffers from now on", d->path);
	free(fio->rest);
	fio->rest = NULL;
	fio->done = 0;
	r = setup_bounce(fio);
	if (r < 0) {
		finish(fio, r);
		return;
	}
	vdu_io_copied(fio->io);
	add_to_batch(fq, fio);
}

/*
 * O_DIRECT takes only buffers and lengths aligned as the file wants them.
 * A Linux guest's are (virtio-blk's dma_alignment is 511 and we advertise
 * the block size), but a driver may send anything a virtqueue can carry:
 * such requests go through an aligned copy instead of failing.
 */
static bool needs_bounce(const struct file_dev *d, const struct vdu_io *io)
{
	uintptr_t m = 0;

	if (!d->direct)
		return false;
	if (d->copy_all)
		return true;
	for (int i = 0; i < io->iovcnt; i++)
		m |= ((uintptr_t)io->iov[i].iov_base & (d->mem_align - 1)) |
		     (io->iov[i].iov_len & (d->dio_align - 1));
	return m || ((io->offset | io->len) & (d->dio_align - 1));
}

static int setup_bounce(struct file_io *fio)
{
	struct vdu_io *io = fio->io;
	uint32_t a = fio->fq->d->mem_align;
	void *buf;

	if (posix_memalign(&buf, a < 4096 ? 4096 : a, io->len))
		return -ENOMEM;
	if (io->op == VDU_IO_WRITE) {
		char *p = buf;

		for (int i = 0; i < io->iovcnt; i++) {
			memcpy(p, io->iov[i].iov_base, io->iov[i].iov_len);
			p += io->iov[i].iov_len;
		}
	}
	fio->bounce.iov_base = buf;
	fio->bounce.iov_len = io->len;
	return 0;
}

/* A short read or write: resubmit what is left. */
static int resubmit_rest(struct file_io *fio)
{
	struct vdu_io *io = fio->io;
	const struct iovec *iov = io->iov;
	int cnt = io->iovcnt;
	uint64_t skip = fio->done;
	struct iovec *rest;
	int n = 0;

	if (fio->bounce.iov_base) {
		iov = &fio->bounce;
		cnt = 1;
	}
	rest = calloc(cnt, sizeof(struct iovec));
	if (!rest)
		return -ENOMEM;
	for (int i = 0; i < cnt; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		rest[n].iov_base = (char *)iov[i].iov_base + skip;
		rest[n].iov_len = iov[i].iov_len - skip;
		skip = 0;
		n++;
	}
	free(fio->rest);
	fio->rest = rest;
	fio->restcnt = n;
	add_to_batch(fio->fq, fio);
	return 0;
}

/* One completion (res: bytes, or -errno).  May add to the batch: the
 * caller flushes it. */
static void io_done(struct file_q *fq, struct file_io *fio, long res)
{
	struct vdu_io *io = fio->io;

	if (res == -EFAULT && fio->fixed) {
		/* The fixed buffer was replaced under the request (a reset
		 * between preparing and running it): once more, vectored. */
		fio->no_fixed = true;
		add_to_batch(fq, fio);
		return;
	}
	if (res == -EFAULT && fq->d->direct && io->op != VDU_IO_FLUSH &&
	    !fio->bounce.iov_base) {
		redo_through_copy(fq, fio);
		return;
	}
	if (res < 0) {
		if (res == -EINVAL && fq->d->direct)
			vdu_log(VDU_LOG_ERR, "file: %s: O_DIRECT refused the "
				"request at %" PRIu64 " (+%" PRIu64 ")",
				fq->d->path, io->offset, io->len);
		finish(fio, (int)res);
		return;
	}
	if (io->op == VDU_IO_FLUSH) {
		finish(fio, 0);
		return;
	}
	fio->done += res;
	if (fio->done >= io->len)
		finish(fio, 0);
	else if (res == 0)
		finish(fio, -EIO); /* the file shrank under us */
	else {
		int r = resubmit_rest(fio);
		if (r < 0)
			finish(fio, r);
	}
}

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct file_q *fq = arg;
	uint64_t cnt;

	if (read(fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return;
	fq->eng->reap(fq);
	flush_batch(fq);
}

/* ------------------------------------------------------------- AIO */

static int aio_open(struct file_q *fq)
{
	int r = io_setup(AIO_DEPTH, &fq->ctx);

	if (r < 0)
		vdu_log(VDU_LOG_ERR, "file: io_setup: %s (raise fs.aio-max-nr?)",
			strerror(-r));
	return r;
}

static void aio_prep(struct file_q *fq, struct file_io *fio)
{
	struct vdu_io *io = fio->io;
	uint64_t off = io->offset + fio->done;
	const struct iovec *iov;
	int cnt, fd = fq->d->fd;

	iov = rw_vec(fio, &cnt);
	if (io->op == VDU_IO_FLUSH)
		io_prep_fdsync(&fio->cb, fd);
	else if (io->op == VDU_IO_READ)
		io_prep_preadv(&fio->cb, fd, iov, cnt, off);
	else
		io_prep_pwritev(&fio->cb, fd, iov, cnt, off);
	io_set_eventfd(&fio->cb, fq->efd);
	fio->cb.data = fio;
}

static void aio_add(struct file_q *fq, struct file_io *fio)
{
	aio_prep(fq, fio);
	pending_push(fq, fio);
}

/* Submit what is pending.  On EAGAIN (context full) the rest waits for
 * the next completion, or for a short timer when nothing is in flight. */
static void aio_flush(struct file_q *fq)
{
	while (fq->pending) {
		struct iocb *cbs[SUBMIT_CHUNK];
		struct file_io *fio = fq->pending;
		int n = 0, r;

		for (; fio && n < SUBMIT_CHUNK; fio = fio->next)
			cbs[n++] = &fio->cb;
		r = io_submit(fq->ctx, n, cbs);
		if (r == -EAGAIN || r == -EINTR || r == 0) {
			if (!fq->inflight)
				retry_later(fq);
			return;
		}
		if (r < 0) {
			/* The first iocb was refused; answer it, go on. */
			fio = pending_pop(fq);
			if (fio->io->op == VDU_IO_FLUSH && r == -EINVAL) {
				vdu_log(VDU_LOG_INFO, "file: no IOCB_CMD_FDSYNC "
					"here; flushing on a helper thread");
				fq->d->aio_fdsync_ok = false;
				queue_blocking(fio);
			} else
				finish(fio, r);
			continue;
		}
		fq->inflight += r;
		while (r--)
			pending_pop(fq);
	}
}

/* Reap what the completion ring holds (io_getevents with a zero timeout
 * looks at the mapped ring first: no system call when it is empty). */
static unsigned aio_reap(struct file_q *fq)
{
	struct io_event ev[MAX_EVENTS];
	struct timespec zero = { 0, 0 };
	unsigned total = 0;
	int n;

	do {
		n = io_getevents(fq->ctx, 0, MAX_EVENTS, ev, &zero);
		if (n <= 0)
			break;
		fq->inflight -= n;
		total += n;
		for (int i = 0; i < n; i++)
			io_done(fq, ev[i].data, (long)ev[i].res);
	} while (n == MAX_EVENTS);
	return total;
}

static void aio_close(struct file_q *fq)
{
	struct io_event ev[MAX_EVENTS];

	fail_pending(fq);
	while (fq->inflight) {
		int n = io_getevents(fq->ctx, 1, MAX_EVENTS, ev, NULL);

		if (n < 0 && n != -EINTR) {
			vdu_log(VDU_LOG_ERR, "file: io_getevents: %s", strerror(-n));
			break;
		}
		for (int i = 0; i < n; i++) {
			fq->inflight--;
			finish(ev[i].data, -EIO);
		}
	}
	io_destroy(fq->ctx); /* waits for anything still outstanding */
}

static const struct file_engine aio_engine = {
	.name = "libaio",
	.open = aio_open,
	.add = aio_add,
	.flush = aio_flush,
	.reap = aio_reap,
	.close = aio_close,
};

/* -------------------------------------------------------- io_uring */

#ifdef HAVE_LIBURING

/* Why io_uring cannot be had, beyond strerror. */
static const char *uring_hint(int r)
{
	switch (r) {
	case -ENOSYS:
		return " (a kernel without io_uring)";
	case -EPERM:
	case -EACCES:
		return " (sysctl kernel.io_uring_disabled, or a seccomp filter)";
	case -ENOMEM:
		return " (RLIMIT_MEMLOCK?)";
	default:
		return "";
	}
}

static int uring_open(struct file_q *fq)
{
	int r = io_uring_queue_init(AIO_DEPTH, &fq->ring, 0);

	if (r < 0)
		return r;
	r = io_uring_register_eventfd(&fq->ring, fq->efd);
	if (r < 0)
		io_uring_queue_exit(&fq->ring);
	return r;
}

static void fixed_drop(struct file_q *fq)
{
	if (!fq->fixed_gen)
		return;
	io_uring_unregister_buffers(&fq->ring);
	fq->fixed_gen = 0;
	fq->fixed_stale = false;
}

/* Every second while a buffer is registered: a reset with the queue idle
 * (a detach) must not leave the old pages pinned by the ring until the
 * next request, which may never come. */
#define FIXED_CHECK_SEC 1
static void fixed_refresh(struct file_q *fq);

static void fixed_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct file_q *fq = arg;
	struct timeval tv = { FIXED_CHECK_SEC, 0 };

	if (!io_uring_sq_ready(&fq->ring))
		fixed_refresh(fq);
	if (fq->fixed_gen)
		evtimer_add(fq->fixed_check, &tv);
}

/* The registration of the device's bounce buffer now (0: none). */
static uint64_t bounce_gen(const struct file_q *fq, void **buf, uint64_t *size)
{
	struct vdu_dev *dev = atomic_load_explicit(&fq->d->dev, memory_order_acquire);
	uint64_t gen = 0;

	if (!dev || vdu_dev_get_user_bounce(dev, buf, size, &gen) < 0)
		return 0;
	return gen;
}

/*
 * Keep fixed buffer 0 the device's bounce buffer for as long as it is our
 * memory registered with VDUSE, the same registration: a reset
 * deregisters it, and the next cycle may register other pages at the
 * same address (the idle buffer's pages are given back), which a ring
 * still pinning the old ones would never see.  Only with no SQE of ours
 * waiting to be submitted, which may use the old buffer.
 */
static void fixed_refresh(struct file_q *fq)
{
	struct file_dev *d = fq->d;
	struct iovec iov;
	uint64_t size = 0, gen;
	int r;

	if (fq->fixed_off)
		return;
	gen = bounce_gen(fq, &iov.iov_base, &size);
	if (gen == fq->fixed_gen)
		return;
	fixed_drop(fq);
	if (!gen || size > SIZE_MAX)
		return;
	iov.iov_len = size;
	r = io_uring_register_buffers(&fq->ring, &iov, 1);
	if (r < 0) {
		fq->fixed_off = true;
		if (!atomic_exchange(&d->fixed_fail_logged, true))
			vdu_log(VDU_LOG_INFO, "file: %s: cannot register the bounce "
				"buffer with io_uring: %s%s; the kernel pins its "
				"pages at every request instead", d->path,
				strerror(-r), r == -ENOMEM ? " (RLIMIT_MEMLOCK)" : "");
		return;
	}
	fq->fixed_buf = iov.iov_base;
	fq->fixed_size = size;
	fq->fixed_gen = gen;
	if (fq->fixed_check && !evtimer_pending(fq->fixed_check, NULL)) {
		struct timeval tv = { FIXED_CHECK_SEC, 0 };

		evtimer_add(fq->fixed_check, &tv);
	}
	atomic_fetch_add_explicit(&d->fixed_regs, 1, memory_order_relaxed);
	vdu_log(VDU_LOG_INFO, "file: %s: queue %u: the bounce buffer (%" PRIu64
		" KiB) is io_uring's fixed buffer", d->path, fq->qidx, size >> 10);
}

/* One iovec lying inside the registered bounce buffer (and short enough
 * for an SQE's 32-bit length). */
static bool in_fixed(const struct file_q *fq, const struct iovec *iov, int cnt)
{
	uintptr_t p = (uintptr_t)iov[0].iov_base, b = (uintptr_t)fq->fixed_buf;

	return cnt == 1 && fq->fixed_gen && !fq->fixed_stale && p >= b && iov[0].iov_len <= UINT32_MAX &&
	       iov[0].iov_len <= fq->fixed_size && p - b <= fq->fixed_size - iov[0].iov_len;
}

static void uring_prep(struct file_q *fq, struct file_io *fio,
		       struct io_uring_sqe *sqe)
{
	struct vdu_io *io = fio->io;
	uint64_t off = io->offset + fio->done;
	const struct iovec *iov;
	int cnt, fd = fq->d->fd;

	iov = rw_vec(fio, &cnt);
	fio->fixed = io->op != VDU_IO_FLUSH && !fio->no_fixed &&
		     in_fixed(fq, iov, cnt);
	if (io->op == VDU_IO_FLUSH)
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	else if (fio->fixed && io->op == VDU_IO_READ)
		io_uring_prep_read_fixed(sqe, fd, iov[0].iov_base,
					 (unsigned)iov[0].iov_len, off, 0);
	else if (fio->fixed)
		io_uring_prep_write_fixed(sqe, fd, iov[0].iov_base,
					  (unsigned)iov[0].iov_len, off, 0);
	else if (io->op == VDU_IO_READ)
		io_uring_prep_readv(sqe, fd, iov, cnt, off);
	else
		io_uring_prep_writev(sqe, fd, iov, cnt, off);
	io_uring_sqe_set_data(sqe, fio);
	fq->nfixed += fio->fixed;
}

/* Pending requests into SQEs, as far as the rings have room: no more in
 * flight than the completion ring holds, so that none overflows. */
static void uring_fill(struct file_q *fq)
{
	while (fq->pending && fq->inflight < fq->ring.cq.ring_entries) {
		struct io_uring_sqe *sqe;

		if (!io_uring_sq_ready(&fq->ring))
			fixed_refresh(fq);
		else if (fq->fixed_gen && !fq->fixed_stale &&
			 bounce_gen(fq, NULL, NULL) != fq->fixed_gen)
			/* SQEs on the old buffer wait to be submitted:
			 * re-register after them, vectored meanwhile. */
			fq->fixed_stale = true;
		sqe = io_uring_get_sqe(&fq->ring);
		if (!sqe)
			break;
		uring_prep(fq, pending_pop(fq), sqe);
		fq->inflight++;
	}
}

/* Prepared now when there is room, submitted with the batch. */
static void uring_add(struct file_q *fq, struct file_io *fio)
{
	pending_push(fq, fio);
	uring_fill(fq);
}

static void uring_flush(struct file_q *fq)
{
	int r;

	for (;;) {
		uring_fill(fq);
		if (!io_uring_sq_ready(&fq->ring))
			return;
		r = io_uring_submit(&fq->ring);
		if (r < 0) {
			/* Not an SQE's fault (those fail in their CQE): the
			 * kernel is short of something; SQEs stay queued. */
			if (r != -EAGAIN && r != -EBUSY && r != -EINTR &&
			    !fq->submit_err_logged) {
				/* once per queue: it is retried every ms */
				fq->submit_err_logged = true;
				vdu_log(VDU_LOG_ERR, "file: %s: io_uring_submit: %s",
					fq->d->path, strerror(-r));
			}
			retry_later(fq);
			return;
		}
		/* A short submit: the rest stays queued, and may have no
		 * completion coming to flush it. */
		if (io_uring_sq_ready(&fq->ring)) {
			retry_later(fq);
			return;
		}
		/* SQ full with more pending: go round while there is room. */
		if (!fq->pending || fq->inflight >= fq->ring.cq.ring_entries)
			return;
	}
}

/* The completion ring is mapped: no system call. */
static unsigned uring_reap(struct file_q *fq)
{
	struct {
		struct file_io *fio;
		int res;
	} ev[MAX_EVENTS];
	unsigned total = 0, n;

	do {
		struct io_uring_cqe *cqe;
		unsigned head;

		n = 0;
		io_uring_for_each_cqe(&fq->ring, head, cqe) {
			ev[n].fio = io_uring_cqe_get_data(cqe);
			ev[n].res = cqe->res;
			if (++n == MAX_EVENTS)
				break;
		}
		io_uring_cq_advance(&fq->ring, n);
		fq->inflight -= n;
		total += n;
		/* After the advance: completing may prepare new SQEs. */
		for (unsigned i = 0; i < n; i++)
			if (ev[i].fio)
				io_done(fq, ev[i].fio, ev[i].res);
	} while (n == MAX_EVENTS);
	return total;
}

/* SQEs prepared and not yet submitted cannot be taken back: they go in
 * with the rest, and complete as failed too. */
static void uring_close(struct file_q *fq)
{
	fail_pending(fq);
	while (fq->inflight) {
		struct io_uring_cqe *cqe;
		int r = io_uring_submit_and_wait(&fq->ring, 1);

		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			vdu_log(VDU_LOG_ERR, "file: %s: io_uring_enter: %s",
				fq->d->path, strerror(-r));
			break;
		}
		while (fq->inflight && io_uring_peek_cqe(&fq->ring, &cqe) == 0) {
			struct file_io *fio = io_uring_cqe_get_data(cqe);

			io_uring_cqe_seen(&fq->ring, cqe);
			fq->inflight--;
			if (fio)
				finish(fio, -EIO);
		}
	}
	fixed_drop(fq);
	io_uring_queue_exit(&fq->ring);
}

static const struct file_engine uring_engine = {
	.name = "io_uring",
	.open = uring_open,
	.add = uring_add,
	.flush = uring_flush,
	.reap = uring_reap,
	.close = uring_close,
};

#endif /* HAVE_LIBURING */

/* aio=auto and io_uring is not to be had: say so once per device. */
static void log_fallback(struct file_dev *d, const char *why, int err)
{
	const char *hint = "";

#ifdef HAVE_LIBURING
	if (err)
		hint = uring_hint(err);
#endif
	if (!atomic_exchange(&d->fallback_logged, true))
		vdu_log(VDU_LOG_INFO, "file: %s: io_uring %s%s%s%s: using libaio",
			d->path, why, err ? ": " : "", err ? strerror(-err) : "",
			hint);
}

/*
 * The device's engine, tried once at open: aio=io_uring fails here when
 * io_uring cannot be had; aio=auto falls back to libaio.
 */
static int pick_engine(struct file_dev *d)
{
#ifdef HAVE_LIBURING
	struct io_uring ring;
	int r;

	d->engine = &aio_engine;
	if (d->aio == FILE_AIO_LIBAIO)
		return 0;
	r = io_uring_queue_init(4, &ring, 0);
	if (r == 0) {
		io_uring_queue_exit(&ring);
		d->engine = &uring_engine;
		return 0;
	}
	if (d->aio == FILE_AIO_URING) {
		vdu_log(VDU_LOG_ERR, "file: %s: aio=io_uring: io_uring_queue_init: "
			"%s%s", d->path, strerror(-r), uring_hint(r));
		return r;
	}
	log_fallback(d, "unavailable", r);
	return 0;
#else
	d->engine = &aio_engine;
	if (d->aio == FILE_AIO_URING) {
		vdu_log(VDU_LOG_ERR, "file: %s: aio=io_uring: this build has no "
			"io_uring engine (configure found no liburing)", d->path);
		return -EOPNOTSUPP;
	}
	if (d->aio == FILE_AIO_AUTO)
		log_fallback(d, "not built in (no liburing)", 0);
	return 0;
#endif
}

/* The queue's engine: the device's, or libaio where io_uring worked at
 * open but not now (aio=auto). */
static int engine_open(struct file_q *fq)
{
	struct file_dev *d = fq->d;
	int r;

	fq->eng = d->engine;
	r = fq->eng->open(fq);
	if (r < 0 && fq->eng != &aio_engine) {
		if (d->aio != FILE_AIO_AUTO) {
#ifdef HAVE_LIBURING
			vdu_log(VDU_LOG_ERR, "file: %s: aio=io_uring: queue %u: %s%s",
				d->path, fq->qidx, strerror(-r), uring_hint(r));
#endif
			return r;
		}
		log_fallback(d, "failed on a queue", r);
		fq->eng = &aio_engine;
		r = fq->eng->open(fq);
	}
	return r;
}

/* ------------------------------------------------------ queue & I/O */

static int file_queue_open(void *handle, unsigned qidx, struct event_base *base,
			   void **qctx)
{
	struct file_q *fq = calloc(1, sizeof(*fq));
	int r;

	if (!fq)
		return -ENOMEM;
	fq->d = handle;
	fq->qidx = qidx;
	fq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fq->efd < 0) {
		r = -errno;
		free(fq);
		return r;
	}
	r = engine_open(fq);
	if (r < 0) {
		close(fq->efd);
		free(fq);
		return r;
	}
	r = -ENOMEM;
	fq->ev = event_new(base, fq->efd, EV_READ | EV_PERSIST, efd_cb, fq);
	if (!fq->ev || event_add(fq->ev, NULL) < 0)
		goto fail;
	fq->retry = evtimer_new(base, retry_cb, fq);
	if (!fq->retry)
		goto fail;
#ifdef HAVE_LIBURING
	fq->fixed_check = evtimer_new(base, fixed_check_cb, fq);
	if (!fq->fixed_check)
		goto fail;
#endif
	r = vbe_worker_new(base, &fq->wk);
	if (r < 0)
		goto fail;
	*qctx = fq;
	return 0;
fail:
#ifdef HAVE_LIBURING
	if (fq->fixed_check)
		event_free(fq->fixed_check);
#endif
	if (fq->retry)
		event_free(fq->retry);
	if (fq->ev)
		event_free(fq->ev);
	fq->eng->close(fq);
	close(fq->efd);
	free(fq);
	return r;
}

/* The queue's fixed-buffer I/O so far, for the device's count. */
static void count_fixed(struct file_q *fq)
{
	if (fq->nfixed) {
		atomic_fetch_add_explicit(&fq->d->fixed_ios, fq->nfixed,
					  memory_order_relaxed);
		fq->nfixed = 0;
	}
}

/*
 * The device is going away: the library calls this after the reset, with
 * requests possibly still here, and may already have unmapped the
 * driver's memory.  Every request is completed (as failed: nobody waits
 * for the answer, and a bounced read must not copy into that memory)
 * before returning, so that no request slot is left behind.
 */
static void file_queue_close(void *qctx)
{
	struct file_q *fq = qctx;

	vbe_worker_free(fq->wk);
	fq->eng->close(fq);
	count_fixed(fq);
#ifdef HAVE_LIBURING
	event_free(fq->fixed_check);
#endif
	event_free(fq->retry);
	event_free(fq->ev);
	close(fq->efd);
	free(fq);
}

static void file_unplug(void *qctx);

static void file_submit(void *qctx, struct vdu_io *io)
{
	struct file_q *fq = qctx;
	struct file_io *fio = io->priv;

	fio->fq = fq;
	fio->io = io;
	fio->done = 0;
	fio->rest = NULL;
	fio->bounce.iov_base = NULL;
	fio->fixed = fio->no_fixed = false;
	switch (io->op) {
	case VDU_IO_READ:
	case VDU_IO_WRITE:
		if (needs_bounce(fq->d, io)) {
			int r = setup_bounce(fio);

			if (r < 0) {
				vdu_io_complete(io, r);
				return;
			}
			if (fq->d->copy_all)
				vdu_io_copied(io);
		}
		add_to_batch(fq, fio);
		fq->pending_bytes += io->len;
		if (fq->pending_bytes >= SUBMIT_EARLY_BYTES)
			file_unplug(fq);
		return;
	case VDU_IO_FLUSH:
		if (fq->eng == &aio_engine && !fq->d->aio_fdsync_ok)
			queue_blocking(fio);
		else
			add_to_batch(fq, fio);
		return;
	case VDU_IO_DISCARD:
	case VDU_IO_WRITE_ZEROES:
		queue_blocking(fio);
		return;
	}
	vdu_io_complete(io, -EOPNOTSUPP);
}

static void file_unplug(void *qctx)
{
	struct file_q *fq = qctx;
	uint64_t cnt;

	flush_batch(fq);
	/* Fast storage (page cache, RAM disks) often completes inside the
	 * submit call: reap now, so the completions leave with this batch's
	 * interrupt instead of a loop turn (and maybe a wake-up) later.
	 * Then clear the eventfd those completions signalled, and reap once
	 * more for any that signalled before the clear. */
	if (fq->inflight && fq->eng->reap(fq)) {
		if (read(fq->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			return;
		fq->eng->reap(fq);
		flush_batch(fq);
	}
	count_fixed(fq);
}

/* The device whose bounce buffer the queues may register. */
static int file_set_dev(void *handle, struct vdu_dev *dev)
{
	struct file_dev *d = handle;

	atomic_store_explicit(&d->dev, dev, memory_order_release);
	return 0;
}

void vbe_file_stats(void *handle, struct vbe_file_stats *st)
{
	struct file_dev *d = handle;

	st->engine = d->engine->name;
	st->fixed_ios = atomic_load(&d->fixed_ios);
	st->fixed_regs = atomic_load(&d->fixed_regs);
}

static const struct vdu_backend file_backend = {
	VDU_BACKEND_INIT,
	.io_priv_size = sizeof(struct file_io),
	.get_info = file_get_info,
	.queue_open = file_queue_open,
	.queue_close = file_queue_close,
	.submit = file_submit,
	.unplug = file_unplug,
	.resize = file_resize,
	.set_dev = file_set_dev,
};

static const struct vdu_option file_options[] = {
	{ "path", VDU_OPT_STRING, "FILE", NULL,
	  "the image file or block device", VDU_OPT_F_REQUIRED | VDU_OPT_F_PATH, 0, 0 },
	{ "readonly", VDU_OPT_BOOL, "on|off", "off", "open and export read-only",
	  0, 0, 0 },
	{ "cache", VDU_OPT_CHOICE, "none|writeback", "none",
	  "none: O_DIRECT, no host page cache; writeback: through the page cache",
	  0, 0, 0 },
	{ "size", VDU_OPT_SIZE, "SIZE", NULL,
	  "device size (default: the file's); with create=on, the new file's",
	  0, 512, 0 },
	{ "create", VDU_OPT_BOOL, "on|off", "off",
	  "create the file (of size=) when it does not exist", VDU_OPT_F_ACTION,
	  0, 0 },
	{ "aio", VDU_OPT_CHOICE, "io_uring|libaio|auto", "auto",
	  "I/O engine; auto: io_uring where the kernel allows it, else libaio",
	  0, 0, 0 },
	{ 0 },
};

const struct vdu_plugin vbe_file = {
	VDU_PLUGIN_INIT,
	.name = "file",
	.description = "a regular file or block device, through io_uring or Linux AIO",
	.options = file_options,
	.backend = &file_backend,
	.open = file_open,
	.close = file_close,
	.check = file_check,
};
