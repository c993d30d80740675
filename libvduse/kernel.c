/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel transport: /dev/vduse/control (API version, CREATE_DEV,
 * DESTROY_DEV) and /dev/vduse/NAME (message channel and per-device
 * ioctls).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <event2/event.h>
#include <linux/virtio_ids.h>

#include "internal.h"

#define CONTROL_PATH "/dev/vduse/control"

/* The transport's state (dev->tp_opaque) while it serves a device. */
struct kdev {
	int fd;                    /* /dev/vduse/NAME */
	struct event *msg_ev;
	bool broken;               /* the kernel gave up on us (timeout) */
};

/* The device fd, -1 when not serving. */
static int kfd(const struct vdu_dev *dev)
{
	const struct kdev *k = dev->tp_opaque;

	return k ? k->fd : -1;
}

static int open_control(void)
{
	uint64_t ver;
	int fd = open(CONTROL_PATH, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, VDUSE_GET_API_VERSION, &ver) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	/* We speak version 0, which every VDUSE kernel implements. */
	ver = 0;
	if (ioctl(fd, VDUSE_SET_API_VERSION, &ver) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int k_get_features(struct vdu_dev *dev, uint64_t *f)
{
	return ioctl(kfd(dev), VDUSE_DEV_GET_FEATURES, f) < 0 ? -errno : 0;
}

static int k_get_vq_info(struct vdu_dev *dev, struct vduse_vq_info *info)
{
	return ioctl(kfd(dev), VDUSE_VQ_GET_INFO, info) < 0 ? -errno : 0;
}

static int k_set_vq_kickfd(struct vdu_dev *dev, unsigned idx, int fd)
{
	struct vduse_vq_eventfd e = { .index = idx, .fd = fd };

	if (kfd(dev) < 0)
		return -EBADF;
	return ioctl(kfd(dev), VDUSE_VQ_SETUP_KICKFD, &e) < 0 ? -errno : 0;
}

static int k_inject_irq(struct vdu_dev *dev, unsigned idx)
{
	uint32_t i = idx;

	return ioctl(kfd(dev), VDUSE_VQ_INJECT_IRQ, &i) < 0 ? -errno : 0;
}

int vdu_set_irq_affinity_by_name(const char *name, unsigned qidx,
				 const int *cpus, unsigned n)
{
	enum { WORDS = VDU_CPUS_MAX / 32 };
	char path[320], mask[WORDS * 9 + 1];
	uint32_t words[WORDS] = { 0 };
	size_t len = 0;
	int top = -1;

	if (vdu_name_valid(name) < 0 || !n)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (cpus[i] < 0 || cpus[i] >= VDU_CPUS_MAX)
			return -EINVAL;
		words[cpus[i] / 32] |= 1u << (cpus[i] % 32);
		top = VDU_MAX(top, cpus[i]);
	}
	/* A hex cpumask in 32-bit words, most significant first. */
	for (int i = top / 32; i >= 0; i--)
		len += (size_t)snprintf(mask + len, sizeof(mask) - len,
					i == top / 32 ? "%x" : ",%08x", words[i]);
	snprintf(path, sizeof(path), "/sys/class/vduse/%s/vq%u/irq_cb_affinity",
		 name, qidx);
	return vdu_sysfs_write(path, mask);
}

static int k_set_irq_affinity(struct vdu_dev *dev, unsigned idx,
			      const int *cpus, unsigned n)
{
	return vdu_set_irq_affinity_by_name(dev->name, idx, cpus, n);
}

static int k_iova_fault(void *opaque, uint64_t iova, struct vdu_region *out)
{
	struct vdu_dev *dev = opaque;
	struct vduse_iotlb_entry e = { .start = iova, .last = iova };
	uint64_t len;
	int prot = 0, fd;
	void *p;

	fd = ioctl(kfd(dev), VDUSE_IOTLB_GET_FD, &e);
	if (fd < 0)
		return -errno;
	len = e.last - e.start + 1;
	if (e.last < e.start || len == 0 || len > SIZE_MAX) {
		close(fd);
		return -EINVAL;
	}
	if (e.perm & VDUSE_ACCESS_RO)
		prot |= PROT_READ;
	if (e.perm & VDUSE_ACCESS_WO)
		prot |= PROT_READ | PROT_WRITE;
	p = mmap(NULL, len, prot, MAP_SHARED, fd, e.offset);
	close(fd);
	if (p == MAP_FAILED) {
		vdu_err("%s: mmap of IOVA [0x%llx, 0x%llx] failed: %s", dev->name,
			(unsigned long long)e.start, (unsigned long long)e.last,
			strerror(errno));
		return -ENOMEM;
	}
	out->start = e.start;
	out->last = e.last;
	out->host = p;
	out->perm = e.perm;
	out->unmap_addr = p;
	out->unmap_len = len;
	vdu_dbg("%s: mapped IOVA [0x%llx, 0x%llx] perm %u", dev->name,
		(unsigned long long)e.start, (unsigned long long)e.last, e.perm);
	return 0;
}

/* VDUSE_IOTLB_GET_INFO: the IOTLB entry at iova takes user memory only
 * when it is the whole bounce buffer (the kernel sets CAP_UMEM then). */
static int k_bounce_info(struct vdu_dev *dev, uint64_t iova, uint64_t *size)
{
#ifdef VDUSE_IOTLB_GET_INFO
	struct vduse_iova_info info = { .start = iova, .last = iova };

	if (ioctl(kfd(dev), VDUSE_IOTLB_GET_INFO, &info) < 0)
		return -errno;
	if (!(info.capability & VDUSE_IOVA_CAP_UMEM) || info.start != 0 ||
	    info.last < info.start)
		return 0;
	*size = info.last + 1;
	return 1;
#else
	return -ENOTTY;
#endif
}

static int k_reg_umem(struct vdu_dev *dev, void *addr, uint64_t size)
{
#ifdef VDUSE_IOTLB_REG_UMEM
	struct vduse_iova_umem u = {
		.uaddr = (uintptr_t)addr, .iova = 0, .size = size,
	};

	return ioctl(kfd(dev), VDUSE_IOTLB_REG_UMEM, &u) < 0 ? -errno : 0;
#else
	return -ENOTTY;
#endif
}

static int k_dereg_umem(struct vdu_dev *dev, uint64_t size)
{
#ifdef VDUSE_IOTLB_DEREG_UMEM
	struct vduse_iova_umem u = { .iova = 0, .size = size };

	if (kfd(dev) < 0)
		return -EBADF;
	return ioctl(kfd(dev), VDUSE_IOTLB_DEREG_UMEM, &u) < 0 ? -errno : 0;
#else
	return -ENOTTY;
#endif
}


static int k_set_config(struct vdu_dev *dev, uint32_t offset, const void *buf,
			uint32_t len)
{
	struct vduse_config_data *c;
	int r;

	if (kfd(dev) < 0)
		return -EBADF;
	c = calloc(1, sizeof(*c) + len);
	if (!c)
		return -ENOMEM;
	c->offset = offset;
	c->length = len;
	memcpy(c->buffer, buf, len);
	r = ioctl(kfd(dev), VDUSE_DEV_SET_CONFIG, c) < 0 ? -errno : 0;
	free(c);
	return r;
}

/* -EINVAL before DRIVER_OK: the driver reads the config when it probes. */
static int k_config_irq(struct vdu_dev *dev)
{
	if (kfd(dev) < 0)
		return -EBADF;
	return ioctl(kfd(dev), VDUSE_DEV_INJECT_CONFIG_IRQ) < 0 ? -errno : 0;
}

/*
 * After a message timed out the kernel marks the device broken for good
 * and the fd polls as an error forever: say so once and stop listening,
 * instead of spinning on it.
 */
static void check_broken(struct vdu_dev *dev)
{
	struct kdev *k = dev->tp_opaque;
	struct pollfd p = { .fd = k->fd, .events = POLLIN };

	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLERR))
		return;
	k->broken = true;
	vdu_err("%s: the kernel marked the device broken (a reply came too "
		"late, see /sys/class/vduse/%s/msg_timeout); destroy and "
		"re-create it", dev->name, dev->name);
	event_del(k->msg_ev);
}

/* Serve every pending message: exactly one response per request. */
static void msg_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vdu_dev *dev = arg;

	for (;;) {
		struct vduse_dev_request req;
		struct vduse_dev_response resp;
		ssize_t n = read(fd, &req, sizeof(req));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			check_broken(dev);
			return;
		}
		if (n != sizeof(req)) {
			vdu_err("%s: message read failed: %s", dev->name,
				n < 0 ? strerror(errno) : "short read");
			return;
		}
		vdu_dev_handle_request(dev, &req, &resp);
		do
			n = write(fd, &resp, sizeof(resp));
		while (n < 0 && errno == EINTR);
		if (n != sizeof(resp))
			vdu_err("%s: message reply failed: %s", dev->name,
				n < 0 ? strerror(errno) : "short write");
	}
}

static int open_dev_node(const char *name)
{
	char path[sizeof("/dev/vduse/") + VDU_NAME_MAX];
	int fd;

	snprintf(path, sizeof(path), "/dev/vduse/%s", name);
	/* Without devtmpfs the node appears when udev gets to it. */
	for (int i = 0; i < 200; i++) {
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			return fd < 0 ? -errno : fd;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	return -ENOENT;
}

/*
 * /sys/class/vduse/NAME/bounce_size, only writable before the device is
 * attached: right after its creation.  Our memory is pinned whole, so it
 * gets a smaller default than the kernel's pages, which are allocated as
 * they are used.
 */
static int set_bounce_size(struct vdu_dev *dev)
{
	uint32_t size = dev->opts.bounce_size;
	char path[sizeof("/sys/class/vduse//bounce_size") + VDU_NAME_MAX];
	char val[16];
	int r;

	if (!size && !dev->bounce.want)
		return 0; /* the kernel's default */
	if (!size)
		size = VDU_BOUNCE_SIZE_USER;
	snprintf(path, sizeof(path), "/sys/class/vduse/%s/bounce_size", dev->name);
	snprintf(val, sizeof(val), "%u", size);
	r = vdu_sysfs_write(path, val);
	if (r == 0)
		vdu_info("%s: bounce buffer %u KiB", dev->name, size >> 10);
	else if (!dev->opts.bounce_size)
		vdu_info("%s: the bounce buffer keeps the kernel's size (%s: %s)",
			 dev->name, path, strerror(-r));
	else if (r == -ENOENT) {
		vdu_err("%s: this kernel cannot size the bounce buffer (no %s)",
			dev->name, path);
		return -EOPNOTSUPP;
	} else {
		vdu_err("%s: cannot set the bounce buffer size: %s: %s", dev->name,
			path, strerror(-r));
		return r;
	}
	return 0;
}

static void k_close(struct vdu_dev *dev);

/* Serve the messages of the device open at fd (taken over, closed by
 * k_close). */
static int serve(struct vdu_dev *dev, int fd)
{
	struct kdev *k = calloc(1, sizeof(*k));

	if (!k) {
		close(fd);
		return -ENOMEM;
	}
	k->fd = fd;
	dev->tp_opaque = k;
	k->msg_ev = event_new(dev->base, fd, EV_READ | EV_PERSIST, msg_cb, dev);
	if (!k->msg_ev || event_add(k->msg_ev, NULL) < 0) {
		k_close(dev);
		return -ENOMEM;
	}
	return 0;
}

static int k_reconnect(struct vdu_dev *dev)
{
	char path[sizeof("/dev/vduse/") + VDU_NAME_MAX];
	int fd, r;

	snprintf(path, sizeof(path), "/dev/vduse/%s", dev->name);
	fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		r = errno == ENOENT ? -ENODEV : -errno;
		vdu_err("%s: cannot open %s: %s", dev->name, path,
			r == -EBUSY ? "another process serves it" : strerror(-r));
		return r;
	}
	return serve(dev, fd);
}

static int k_create(struct vdu_dev *dev)
{
	struct vduse_dev_config *cfg;
	int ctl, fd, r;

	ctl = open_control();
	if (ctl < 0) {
		vdu_err("cannot open " CONTROL_PATH ": %s", strerror(-ctl));
		return ctl;
	}
	cfg = calloc(1, sizeof(*cfg) + dev->config_size);
	if (!cfg) {
		close(ctl);
		return -ENOMEM;
	}
	snprintf(cfg->name, sizeof(cfg->name), "%s", dev->name);
	cfg->device_id = VIRTIO_ID_BLOCK;
	cfg->vendor_id = 0;
	cfg->features = dev->features;
	cfg->vq_num = dev->num_queues;
	cfg->vq_align = 4096;
	cfg->config_size = dev->config_size;
	memcpy(cfg->config, dev->config, dev->config_size);
	r = ioctl(ctl, VDUSE_CREATE_DEV, cfg) < 0 ? -errno : 0;
	free(cfg);
	if (r < 0) {
		vdu_err("%s: VDUSE_CREATE_DEV failed: %s", dev->name, strerror(-r));
		close(ctl);
		return r;
	}
	fd = open_dev_node(dev->name);
	if (fd < 0) {
		r = fd;
		vdu_err("%s: cannot open /dev/vduse/%s: %s", dev->name, dev->name,
			strerror(-r));
		goto destroy;
	}
	/* Messages come once the device is attached, and the loop runs
	 * them: serving from now on is safe. */
	r = serve(dev, fd);
	if (r < 0)
		goto destroy;
	/* Every queue must be set up before the device meets the vdpa bus. */
	for (unsigned i = 0; i < dev->num_queues; i++) {
		struct vduse_vq_config vq = { .index = i, .max_size = dev->queue_size };

		if (ioctl(fd, VDUSE_VQ_SETUP, &vq) < 0) {
			r = -errno;
			vdu_err("%s: VDUSE_VQ_SETUP %u failed: %s", dev->name, i,
				strerror(-r));
			goto destroy;
		}
	}
	r = set_bounce_size(dev);
	if (r < 0)
		goto destroy;
	close(ctl);
	vdu_info("%s: created (%llu bytes, %u queue(s) of %u)", dev->name,
		 (unsigned long long)vdu_dev_capacity(dev) * 512,
		 dev->num_queues, dev->queue_size);
	return 0;
destroy:
	k_close(dev);
	ioctl(ctl, VDUSE_DESTROY_DEV, dev->name);
	close(ctl);
	return r;
}

static void k_close(struct vdu_dev *dev)
{
	struct kdev *k = dev->tp_opaque;

	if (!k)
		return;
	if (k->msg_ev)
		event_free(k->msg_ev);
	close(k->fd);
	free(k);
	dev->tp_opaque = NULL;
}

/* The vdpa device NAME exists (the kernel would refuse DESTROY_DEV). */
static bool attached_by_name(const char *name)
{
	char path[sizeof("/sys/bus/vdpa/devices/") + VDU_NAME_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/bus/vdpa/devices/%s", name);
	return lstat(path, &st) == 0;
}

static bool k_attached(struct vdu_dev *dev)
{
	return attached_by_name(dev->name);
}

static bool k_broken(const struct vdu_dev *dev)
{
	const struct kdev *k = dev->tp_opaque;

	return k && k->broken;
}

static int destroy_name(const char *name)
{
	char buf[VDUSE_NAME_MAX] = { 0 };
	int ctl, r;

	ctl = open_control();
	if (ctl < 0)
		return ctl;
	snprintf(buf, sizeof(buf), "%s", name);
	r = ioctl(ctl, VDUSE_DESTROY_DEV, buf) < 0 ? -errno : 0;
	close(ctl);
	return r;
}

/* Close the device fd and DESTROY_DEV (queues must be stopped). */
static int k_destroy(struct vdu_dev *dev)
{
	int r;

	k_close(dev);
	/* `vdpa dev del` removes the sysfs device before the kernel lets go
	 * of the VDUSE device, which refuses DESTROY_DEV (EBUSY) meanwhile
	 * (seconds, seen in a loaded TCG guest): give it 10 s while nothing
	 * is attached. */
	for (int i = 0; (r = destroy_name(dev->name)) == -EBUSY && i < 500 &&
			!attached_by_name(dev->name); i++)
		usleep(20000);
	if (r < 0)
		vdu_err("%s: VDUSE_DESTROY_DEV failed: %s", dev->name, strerror(-r));
	else
		vdu_info("%s: destroyed", dev->name);
	return r;
}

int vdu_destroy_by_name(const char *name)
{
	if (vdu_name_valid(name) < 0)
		return -EINVAL;
	if (attached_by_name(name))
		return -EBUSY;
	return destroy_name(name);
}

const struct vdu_transport vdu_kernel_transport = {
	.get_features = k_get_features,
	.get_vq_info = k_get_vq_info,
	.set_vq_kickfd = k_set_vq_kickfd,
	.inject_irq = k_inject_irq,
	.set_irq_affinity = k_set_irq_affinity,
	.iova_fault = k_iova_fault,
	.create = k_create,
	.reconnect = k_reconnect,
	.destroy = k_destroy,
	.close = k_close,
	.attached = k_attached,
	.broken = k_broken,
	.bounce_info = k_bounce_info,
	.reg_umem = k_reg_umem,
	.dereg_umem = k_dereg_umem,
	.set_config = k_set_config,
	.config_irq = k_config_irq,
};
