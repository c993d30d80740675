/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device object and its control messages (SET_STATUS, GET_VQ_STATE,
 * UPDATE_IOTLB).  Transport-independent: the kernel transport feeds it
 * messages read from /dev/vduse/NAME, the test driver feeds it directly.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "internal.h"

#define OPTS_V1_SIZE (offsetof(struct vdu_dev_opts, read_only) + sizeof(int))

/*
 * vdu_dev_new reads a struct vdu_backend, whose layout changed with API 2
 * (0.3): the 0.3 entry point is a new symbol version, so that a program
 * built against 0.3 refuses to start on an older library, which would
 * misread it.  Both versions take every API version.
 */
static int dev_new(const struct vdu_dev_opts *opts, const struct vdu_backend *be,
		   void *handle, struct event_base *base, struct vdu_dev **out);

VDU_API int vdu_dev_new_0_1(const struct vdu_dev_opts *opts,
			    const struct vdu_backend *be, void *handle,
			    struct event_base *base, struct vdu_dev **out);
VDU_API int vdu_dev_new_0_3(const struct vdu_dev_opts *opts,
			    const struct vdu_backend *be, void *handle,
			    struct event_base *base, struct vdu_dev **out);
__asm__(".symver vdu_dev_new_0_1,vdu_dev_new@VDUSE_0.1");
__asm__(".symver vdu_dev_new_0_3,vdu_dev_new@@VDUSE_0.3");

int vdu_dev_new_0_1(const struct vdu_dev_opts *opts, const struct vdu_backend *be,
		    void *handle, struct event_base *base, struct vdu_dev **out)
{
	return dev_new(opts, be, handle, base, out);
}

int vdu_dev_new_0_3(const struct vdu_dev_opts *opts, const struct vdu_backend *be,
		    void *handle, struct event_base *base, struct vdu_dev **out)
{
	return dev_new(opts, be, handle, base, out);
}

static int dev_new(const struct vdu_dev_opts *opts, const struct vdu_backend *be,
		   void *handle, struct event_base *base, struct vdu_dev **out)
{
	struct vdu_dev *dev;
	const char *serial;
	int r;

	if (!opts || opts->struct_size < OPTS_V1_SIZE || !base || !out)
		return -EINVAL;
	if (vdu_name_valid(opts->name) < 0) {
		vdu_err("invalid device name");
		return -EINVAL;
	}
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	r = vdu_backend_import(be, &dev->be);
	if (r < 0) {
		free(dev);
		return r;
	}
	pthread_mutex_init(&dev->config_lock, NULL);
	memcpy(&dev->opts, opts, VDU_MIN(opts->struct_size, sizeof(dev->opts)));
	dev->opts.struct_size = sizeof(dev->opts);
	snprintf(dev->name, sizeof(dev->name), "%s", opts->name);
	dev->opts.name = dev->name;
	vdu_bounce_init(dev);
	dev->be_handle = handle;
	dev->base = base;
	dev->tp = &vdu_kernel_transport;
	dev->num_queues = opts->num_queues ? opts->num_queues : 1;
	dev->queue_size = opts->queue_size ? opts->queue_size : 256;
	r = -EINVAL;
	if (dev->num_queues > VDU_QUEUES_MAX) {
		vdu_err("%s: at most %d queues", dev->name, VDU_QUEUES_MAX);
		goto fail;
	}
	if (dev->queue_size < VDU_QUEUE_SIZE_MIN || dev->queue_size > VDU_QUEUE_SIZE_MAX ||
	    (dev->queue_size & (dev->queue_size - 1))) {
		vdu_err("%s: queue size must be a power of two in %d..%d",
			dev->name, VDU_QUEUE_SIZE_MIN, VDU_QUEUE_SIZE_MAX);
		goto fail;
	}
	if (dev->opts.bounce > VDU_BOUNCE_KERNEL) {
		vdu_err("%s: unknown bounce mode %u", dev->name, dev->opts.bounce);
		goto fail;
	}
	if (dev->opts.bounce_size &&
	    (dev->opts.bounce_size < (1u << 20) || dev->opts.bounce_size > (1u << 30) ||
	     dev->opts.bounce_size % 4096)) {
		vdu_err("%s: bounce buffer size must be 1 MiB to 1 GiB in 4 KiB pages",
			dev->name);
		goto fail;
	}
	if (dev->opts.irq_cpus) {
		dev->irq_cpus = calloc(dev->num_queues, sizeof(int));
		if (!dev->irq_cpus) {
			r = -ENOMEM;
			goto fail;
		}
		for (unsigned i = 0; i < dev->num_queues; i++) {
			dev->irq_cpus[i] = dev->opts.irq_cpus[i];
			if (dev->irq_cpus[i] < -1 || dev->irq_cpus[i] >= VDU_CPUS_MAX) {
				vdu_err("%s: queue %u: no CPU %d", dev->name, i,
					dev->irq_cpus[i]);
				goto fail;
			}
		}
		dev->opts.irq_cpus = dev->irq_cpus;
	}
	serial = opts->serial ? opts->serial : dev->name;
	if (opts->serial && strlen(opts->serial) > VDU_SERIAL_MAX) {
		vdu_err("%s: serial is longer than %d bytes", dev->name,
			VDU_SERIAL_MAX);
		goto fail;
	}
	snprintf(dev->serial, sizeof(dev->serial), "%.20s", serial);
	r = dev->be.get_info(handle, &dev->be_info);
	if (r < 0)
		goto fail;
	vdu_bounce_choose(dev);
	r = vdu_blk_build_config(dev);
	if (r < 0) {
		vdu_err("%s: invalid geometry (size %llu, block size %u)",
			dev->name, (unsigned long long)dev->be_info.size,
			dev->opts.block_size);
		goto fail;
	}
	r = -ENOMEM;
	dev->queues = calloc(dev->num_queues, sizeof(*dev->queues));
	if (!dev->queues)
		goto fail;
	for (unsigned i = 0; i < dev->num_queues; i++) {
		r = vdu_queue_init(dev, &dev->queues[i], i,
				   dev->opts.flags & VDU_DEV_F_QUEUE_THREADS);
		if (r < 0)
			goto fail;
	}
	*out = dev;
	return 0;
fail:
	vdu_dev_free(dev);
	return r;
}

void vdu_dev_set_transport(struct vdu_dev *dev, const struct vdu_transport *tp,
			   void *opaque)
{
	dev->tp = tp;
	dev->tp_opaque = opaque;
}

static int open_backend_queues(struct vdu_dev *dev)
{
	for (unsigned i = 0; i < dev->num_queues; i++) {
		struct vdu_queue *q = &dev->queues[i];
		int r;

		if (q->backend_open)
			continue;
		if (!dev->be.queue_open) {
			q->backend_qctx = dev->be_handle;
			q->backend_open = true;
			continue;
		}
		r = dev->be.queue_open(dev->be_handle, i, q->base, &q->backend_qctx);
		if (r < 0)
			return r;
		q->backend_open = true;
	}
	return 0;
}

static void close_backend_queues(struct vdu_dev *dev)
{
	for (unsigned i = 0; i < dev->num_queues; i++) {
		struct vdu_queue *q = &dev->queues[i];

		if (q->backend_open && dev->be.queue_open && dev->be.queue_close)
			dev->be.queue_close(q->backend_qctx);
		q->backend_qctx = NULL;
		q->backend_open = false;
	}
}

static void dev_reset(struct vdu_dev *dev);
static int check_features(struct vdu_dev *dev, uint64_t f);

/*
 * Tell the backend its device, once the kernel has given it to us (create
 * or reconnect succeeded): only one process can hold /dev/vduse/NAME, so a
 * backend may then act for the device alone (take over a dead
 * predecessor's lock on shared storage).  From then on it may call
 * vdu_dev_set_capacity().  A refusal keeps nothing: no set_dev(NULL).
 */
static int bind_backend(struct vdu_dev *dev)
{
	int r;

	if (!dev->be.set_dev || dev->set_dev_called)
		return 0;
	r = dev->be.set_dev(dev->be_handle, dev);
	if (r == 0)
		dev->set_dev_called = true;
	return r;
}

static void stop_queues(struct vdu_dev *dev)
{
	for (unsigned i = 0; i < dev->num_queues; i++)
		vdu_queue_stop(&dev->queues[i]);
	/* Backends may still complete (and copy into driver buffers) while
	 * closing: keep the memory mapped until they are done. */
	close_backend_queues(dev);
	for (unsigned i = 0; i < dev->num_queues; i++)
		vdu_queue_release(&dev->queues[i]);
}

int vdu_dev_start(struct vdu_dev *dev)
{
	int r;

	if (dev->created)
		return -EALREADY;
	/* Backend queues first: they register on the queue loops, which is
	 * only safe before the queue threads run them. */
	r = open_backend_queues(dev);
	for (unsigned i = 0; r == 0 && i < dev->num_queues; i++) {
		const int *cpus = dev->opts.queue_cpus;

		r = vdu_queue_start(&dev->queues[i], cpus ? cpus[i] : -1);
	}
	/* The kernel gets the config as it is at create time: a capacity
	 * set meanwhile from another thread waits, then is announced. */
	pthread_mutex_lock(&dev->config_lock);
	if (r == 0)
		r = dev->tp->create(dev);
	if (r == 0)
		dev->created = true;
	pthread_mutex_unlock(&dev->config_lock);
	if (r < 0) {
		stop_queues(dev);
		return r;
	}
	r = bind_backend(dev);
	if (r < 0 && vdu_dev_stop(dev) < 0)
		vdu_warn("%s: the backend refused the device, which cannot be destroyed",
			 dev->name);
	return r;
}

/* Our capacity to the kernel's copy of the config space, and the
 * driver told.  config_lock held. */
static int announce_capacity(struct vdu_dev *dev)
{
	uint64_t le = htole64(vdu_dev_capacity(dev));
	int r;

	if (!dev->tp->set_config)
		return -EOPNOTSUPP;
	r = dev->tp->set_config(dev, offsetof(struct virtio_blk_config, capacity),
				&le, sizeof(le));
	if (r < 0) {
		vdu_err("%s: VDUSE_DEV_SET_CONFIG failed: %s", dev->name,
			strerror(-r));
		return r;
	}
	r = dev->tp->config_irq ? dev->tp->config_irq(dev) : 0;
	/* No driver ready (not attached): it reads the config at probe. */
	if (r == -EINVAL)
		r = 0;
	if (r < 0)
		vdu_err("%s: VDUSE_DEV_INJECT_CONFIG_IRQ failed: %s", dev->name,
			strerror(-r));
	return r;
}

/* Set our capacity and its config copy, and tell the kernel if the
 * device exists; all or nothing.  config_lock held. */
static int update_capacity(struct vdu_dev *dev, uint64_t sectors)
{
	struct virtio_blk_config *c = (struct virtio_blk_config *)dev->config;
	uint64_t old = vdu_dev_capacity(dev);
	int r = 0;

	/* A backend may hear of our own resize again (rbd's update watch):
	 * no second interrupt. */
	if (sectors == old)
		return 0;
	__atomic_store_n(&dev->capacity_sectors, sectors, __ATOMIC_RELAXED);
	c->capacity = htole64(sectors);
	if (dev->created)
		r = announce_capacity(dev);
	if (r < 0) {
		__atomic_store_n(&dev->capacity_sectors, old, __ATOMIC_RELAXED);
		c->capacity = htole64(old);
		return r;
	}
	vdu_info("%s: capacity %" PRIu64 " -> %" PRIu64 " bytes", dev->name,
		 old * 512, sectors * 512);
	return 0;
}

int vdu_dev_set_capacity(struct vdu_dev *dev, uint64_t size)
{
	int r;

	if (!dev)
		return -EINVAL;
	size -= size % dev->block_size;
	if (size < dev->block_size)
		return -EINVAL;
	pthread_mutex_lock(&dev->config_lock);
	r = update_capacity(dev, size / 512);
	pthread_mutex_unlock(&dev->config_lock);
	return r;
}

int vdu_dev_resize(struct vdu_dev *dev, uint64_t size, unsigned flags)
{
	uint64_t old;
	int r;

	if (!dev)
		return -EINVAL;
	if (!dev->be.resize || dev->read_only)
		return -EOPNOTSUPP;
	if (size < dev->block_size || size % dev->block_size ||
	    (flags & ~VDU_RESIZE_F_SHRINK))
		return -EINVAL;
	old = vdu_dev_capacity(dev) * 512;
	if (size == old)
		return 0;
	if (size > old) {
		r = dev->be.resize(dev->be_handle, size, flags);
		return r < 0 ? r : vdu_dev_set_capacity(dev, size);
	}
	if (!(flags & VDU_RESIZE_F_SHRINK))
		return -EINVAL;
	/* Capacity first: no new request may reach the storage cut off
	 * (a write there would grow a file again). */
	r = vdu_dev_set_capacity(dev, size);
	if (r < 0)
		return r;
	r = dev->be.resize(dev->be_handle, size, flags);
	if (r < 0 && vdu_dev_set_capacity(dev, old) == 0)
		vdu_warn("%s: the storage kept its %" PRIu64 " bytes: so does "
			 "the device", dev->name, old);
	return r;
}

int vdu_dev_reconnect(struct vdu_dev *dev)
{
	uint64_t f = 0;
	int r;

	if (dev->created)
		return -EALREADY;
	if (!dev->tp->reconnect)
		return -EOPNOTSUPP;
	dev->reconnecting = true;
	r = open_backend_queues(dev);
	for (unsigned i = 0; r == 0 && i < dev->num_queues; i++) {
		const int *cpus = dev->opts.queue_cpus;

		r = vdu_queue_start(&dev->queues[i], cpus ? cpus[i] : -1);
	}
	if (r == 0)
		r = dev->tp->reconnect(dev);
	if (r < 0)
		goto fail;
	/* The kernel kept the negotiation; messages it could not deliver
	 * are queued again and arrive once the loop runs. */
	r = dev->tp->get_features(dev, &f);
	if (r == 0 && f) {
		r = check_features(dev, f);
		if (r < 0)
			goto fail;
		dev->negotiated = f;
		dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			      VIRTIO_CONFIG_S_FEATURES_OK;
		for (unsigned i = 0; i < dev->num_queues; i++) {
			r = vdu_queue_enable_sync(&dev->queues[i]);
			if (r < 0)
				goto fail;
			if (dev->queues[i].vr)
				dev->status |= VIRTIO_CONFIG_S_DRIVER_OK;
		}
	}
	dev->reconnecting = false;
	/* The storage may have changed size while no daemon served it (or
	 * the old one died in the middle of a resize): say ours, whatever
	 * the kernel has (the driver ignores an unchanged capacity). */
	pthread_mutex_lock(&dev->config_lock);
	if (announce_capacity(dev) < 0)
		vdu_warn("%s: the driver may see a stale size", dev->name);
	dev->created = true;
	pthread_mutex_unlock(&dev->config_lock);
	r = bind_backend(dev);
	if (r < 0) {
		/* The kernel device stays, for another attempt. */
		dev->created = false;
		goto fail;
	}
	vdu_info("%s: reconnected (features 0x%llx)", dev->name,
		 (unsigned long long)f);
	return 0;
fail:
	/* Queues first: their threads use the transport. */
	dev->reconnecting = false;
	dev_reset(dev);
	stop_queues(dev);
	if (dev->tp->close)
		dev->tp->close(dev);
	return r;
}

/* Status 0: the driver reset the device. */
#define RESET_DRAIN_MS 5000

static void dev_reset(struct vdu_dev *dev)
{
	for (unsigned i = 0; i < dev->num_queues; i++)
		vdu_queue_reset(&dev->queues[i]);
	dev->negotiated = 0;
	dev->status = 0;
	/* After a reset the driver may reuse its buffers at once (a VM's
	 * memory through vhost-vdpa): let requests still with the backend
	 * finish first, for a bounded time.  Only queue threads can make
	 * progress while this thread waits. */
	if (dev->opts.flags & VDU_DEV_F_QUEUE_THREADS) {
		for (int ms = 0; ms < RESET_DRAIN_MS && vdu_dev_inflight(dev); ms++)
			nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	/* Before the kernel drops its bounce mapping (right after our
	 * answer): it copies the pages still in use back to its own. */
	vdu_bounce_reset(dev, vdu_dev_inflight(dev) == 0);
}

int vdu_dev_stop(struct vdu_dev *dev)
{
	if (!dev->created)
		return 0;
	/* The kernel refuses to destroy an attached device; keep serving
	 * it rather than leave it without a daemon. */
	if (dev->tp->attached && dev->tp->attached(dev))
		return -EBUSY;
	/* Queues first: their threads use the device fd. */
	dev_reset(dev);
	stop_queues(dev);
	/* No capacity announcement may use the fd from now on. */
	pthread_mutex_lock(&dev->config_lock);
	dev->created = false;
	pthread_mutex_unlock(&dev->config_lock);
	return dev->tp->destroy(dev);
}

void vdu_dev_free(struct vdu_dev *dev)
{
	if (!dev)
		return;
	/* First: the backend stops calling vdu_dev_set_capacity(). */
	if (dev->set_dev_called)
		dev->be.set_dev(dev->be_handle, NULL);
	if (dev->created && vdu_dev_stop(dev) < 0) {
		/* Still attached: leave the kernel device, drop our side. */
		dev_reset(dev);
		stop_queues(dev);
		if (dev->tp->close)
			dev->tp->close(dev);
	}
	if (dev->queues)
		for (unsigned i = 0; i < dev->num_queues; i++)
			vdu_queue_fini(&dev->queues[i]);
	free(dev->queues);
	free(dev->irq_cpus);
	vdu_bounce_fini(dev);
	pthread_mutex_destroy(&dev->config_lock);
	free(dev);
}

void vdu_dev_abandon(struct vdu_dev *dev)
{
	if (dev->set_dev_called)
		dev->be.set_dev(dev->be_handle, NULL);
	for (unsigned i = 0; i < dev->num_queues; i++)
		vdu_queue_abandon(&dev->queues[i]);
	close_backend_queues(dev);
	for (unsigned i = 0; i < dev->num_queues; i++) {
		vdu_queue_release(&dev->queues[i]);
		vdu_queue_fini(&dev->queues[i]);
	}
	/* A dead process's fd release deregisters: before the close. */
	vdu_bounce_fini(dev);
	if (dev->tp->close)
		dev->tp->close(dev);
	free(dev->queues);
	dev->queues = NULL;
	dev->created = false;
	free(dev->irq_cpus);
	pthread_mutex_destroy(&dev->config_lock);
	free(dev);
}

unsigned vdu_dev_inflight(const struct vdu_dev *cdev)
{
	/* Asking the queue threads changes no state the caller can see. */
	struct vdu_dev *dev = (struct vdu_dev *)cdev;
	unsigned n = 0;

	for (unsigned i = 0; i < dev->num_queues; i++) {
		unsigned q;

		vdu_queue_get_stats(&dev->queues[i], NULL, &q);
		n += q;
	}
	return n;
}

static int check_features(struct vdu_dev *dev, uint64_t f)
{
	if (f & ~dev->features) {
		vdu_err("%s: driver accepted features we did not offer: 0x%llx",
			dev->name, (unsigned long long)(f & ~dev->features));
		return -EINVAL;
	}
	if (!(f & (1ULL << VIRTIO_F_VERSION_1))) {
		vdu_err("%s: legacy (pre-1.0) drivers are not supported",
			dev->name);
		return -EINVAL;
	}
	return 0;
}

/* opts.irq_cpus, once the driver is ready: its probe set its own. */
static void apply_irq_cpus(struct vdu_dev *dev)
{
	if (!dev->irq_cpus || !dev->tp->set_irq_affinity)
		return;
	for (unsigned i = 0; i < dev->num_queues; i++) {
		int cpu = dev->irq_cpus[i], r;

		if (cpu < 0)
			continue;
		r = dev->tp->set_irq_affinity(dev, i, &cpu, 1);
		if (r < 0) {
			vdu_warn("%s: queue %u: interrupt work not moved to CPU %d: %s",
				 dev->name, i, cpu, r == -ENOENT ?
				 "this kernel has no irq_cb_affinity (Linux 6.8+)" :
				 strerror(-r));
			return;
		}
	}
}

static int set_status(struct vdu_dev *dev, uint8_t status)
{
	uint8_t added = status & ~dev->status;
	int r;

	if (status == 0) {
		vdu_dbg("%s: reset", dev->name);
		dev_reset(dev);
		return 0;
	}
	if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
		uint64_t f;

		r = dev->tp->get_features(dev, &f);
		if (r < 0)
			return r;
		r = check_features(dev, f);
		if (r < 0)
			return r;
		dev->negotiated = f;
	}
	if (added & VIRTIO_CONFIG_S_DRIVER_OK) {
		if (!(status & VIRTIO_CONFIG_S_FEATURES_OK))
			return -EINVAL;
		for (unsigned i = 0; i < dev->num_queues; i++) {
			r = vdu_queue_enable_sync(&dev->queues[i]);
			if (r < 0) {
				for (unsigned j = 0; j < i; j++)
					vdu_queue_disable_sync(&dev->queues[j]);
				return r;
			}
		}
		apply_irq_cpus(dev);
		vdu_info("%s: driver ready, features 0x%llx", dev->name,
			 (unsigned long long)dev->negotiated);
	}
	dev->status = status;
	return 0;
}

void vdu_dev_handle_request(struct vdu_dev *dev,
			    const struct vduse_dev_request *req,
			    struct vduse_dev_response *resp)
{
	int r = 0;

	memset(resp, 0, sizeof(*resp));
	resp->request_id = req->request_id;
	switch (req->type) {
	case VDUSE_SET_STATUS:
		r = set_status(dev, req->s.status);
		break;
	case VDUSE_GET_VQ_STATE: {
		unsigned idx = req->vq_state.index;

		if (idx >= dev->num_queues) {
			r = -EINVAL;
			break;
		}
		resp->vq_state.index = idx;
		vdu_queue_get_state(&dev->queues[idx], &resp->vq_state);
		break;
	}
	case VDUSE_UPDATE_IOTLB:
		if (req->iova.last < req->iova.start) {
			r = -EINVAL;
			break;
		}
		for (unsigned i = 0; i < dev->num_queues; i++)
			vdu_queue_invalidate(&dev->queues[i], req->iova.start,
					     req->iova.last);
		break;
	default:
		vdu_warn("%s: unknown VDUSE request type %u", dev->name,
			 req->type);
		r = -EOPNOTSUPP;
	}
	resp->result = r < 0 ? VDUSE_REQ_RESULT_FAILED : VDUSE_REQ_RESULT_OK;
}

static void fill_info(const struct vdu_dev *dev, struct vdu_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", dev->name);
	info->capacity_bytes = vdu_dev_capacity(dev) * 512;
	info->block_size = dev->block_size;
	info->num_queues = dev->num_queues;
	info->queue_size = dev->queue_size;
	info->features_offered = dev->features;
	info->features_negotiated = dev->negotiated;
	info->status = dev->status;
	info->read_only = dev->read_only;
	snprintf(info->serial, sizeof(info->serial), "%s", dev->serial);
	for (unsigned i = 0; i < dev->num_queues; i++) {
		struct vdu_queue_stats st;

		vdu_queue_get_stats(&dev->queues[i], &st, NULL);
		info->broken |= st.broken;
	}
	info->kernel_broken = dev->tp->broken && dev->tp->broken(dev);
}

/* The output structs as libvduse 0.1 laid them out: the smallest a caller
 * may pass.  A larger one (a newer header) gets zeroes past ours. */
#define INFO_V1_SIZE (offsetof(struct vdu_dev_info, serial) + VDU_SERIAL_MAX + 1)
#define STATS_V1_SIZE (offsetof(struct vdu_queue_stats, broken) + sizeof(int))

int vdu_dev_get_info_sz(const struct vdu_dev *dev, struct vdu_dev_info *info,
			size_t size)
{
	struct vdu_dev_info full;

	if (!dev || !info || size < INFO_V1_SIZE)
		return -EINVAL;
	fill_info(dev, &full);
	vdu_copy_out(info, size, &full, sizeof(full));
	return 0;
}

int vdu_dev_queue_stats_sz(const struct vdu_dev *dev, unsigned qidx,
			   struct vdu_queue_stats *st, size_t size)
{
	struct vdu_queue_stats full;

	if (!dev || !st || size < STATS_V1_SIZE || qidx >= dev->num_queues)
		return -EINVAL;
	vdu_queue_get_stats((struct vdu_queue *)&dev->queues[qidx], &full, NULL);
	vdu_copy_out(st, size, &full, sizeof(full));
	return 0;
}

/* The 0.1 entry points, for programs built before the sized calls. */
#undef vdu_dev_get_info
#undef vdu_dev_queue_stats
VDU_API int vdu_dev_get_info(const struct vdu_dev *dev,
			     struct vdu_dev_info *info);
VDU_API int vdu_dev_queue_stats(const struct vdu_dev *dev, unsigned qidx,
				struct vdu_queue_stats *st);

int vdu_dev_get_info(const struct vdu_dev *dev, struct vdu_dev_info *info)
{
	return vdu_dev_get_info_sz(dev, info, INFO_V1_SIZE);
}

int vdu_dev_queue_stats(const struct vdu_dev *dev, unsigned qidx,
			struct vdu_queue_stats *st)
{
	return vdu_dev_queue_stats_sz(dev, qidx, st, STATS_V1_SIZE);
}
