/* SPDX-License-Identifier: MIT */
/*
 * ramdisk: the smallest complete libvduse program.  Copy it to start a
 * backend of your own: fill in submit(), keep the rest.
 *
 *   ./ramdisk NAME [SIZE_MiB]          (as root, vduse module loaded)
 *   vdpa dev add name NAME mgmtdev vduse   -> /dev/vdX
 *   vdpa dev del NAME; then Ctrl-C
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <libvduse.h>

struct ramdisk {
	uint8_t *data;
	uint64_t size;
};

static int rd_get_info(void *handle, struct vdu_backend_info *info)
{
	struct ramdisk *rd = handle;

	memset(info, 0, sizeof(*info));
	info->size = rd->size;
	info->caps = VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES;
	return 0;
}

/* One I/O.  offset/len are already checked against the size; iov points
 * at the driver's buffers.  Complete it now or later, exactly once. */
static void rd_submit(void *qctx, struct vdu_io *io)
{
	struct ramdisk *rd = qctx;
	uint8_t *p = rd->data + io->offset;

	switch (io->op) {
	case VDU_IO_READ:
		for (int i = 0; i < io->iovcnt; p += io->iov[i].iov_len, i++)
			memcpy(io->iov[i].iov_base, p, io->iov[i].iov_len);
		break;
	case VDU_IO_WRITE:
		for (int i = 0; i < io->iovcnt; p += io->iov[i].iov_len, i++)
			memcpy(p, io->iov[i].iov_base, io->iov[i].iov_len);
		break;
	case VDU_IO_DISCARD:
	case VDU_IO_WRITE_ZEROES:
		memset(p, 0, io->len);
		break;
	case VDU_IO_FLUSH:
		break; /* RAM is as durable as it gets */
	}
	vdu_io_complete(io, 0);
}

static int rd_queue_open(void *handle, unsigned qidx, struct event_base *base,
			 void **qctx)
{
	*qctx = handle; /* all queues share the one buffer */
	return 0;
}

static const struct vdu_backend ramdisk_backend = {
	.struct_size = sizeof(struct vdu_backend),
	.api_version = VDU_BACKEND_API_VERSION,
	.name = "ramdisk",
	.description = "example: a disk in memory",
	.get_info = rd_get_info,
	.queue_open = rd_queue_open,
	.submit = rd_submit,
};

static void log_to_stderr(void *opaque, int level, const char *msg)
{
	fprintf(stderr, "ramdisk: %s\n", msg);
}

static void on_signal(evutil_socket_t sig, short what, void *base)
{
	event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
	struct vdu_dev_opts opts = { .struct_size = sizeof(opts) };
	struct ramdisk rd = { .size = 64ULL << 20 };
	struct event_base *base;
	struct event *sigint, *sigterm;
	struct vdu_dev *dev;
	int r;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s NAME [SIZE_MiB]\n", argv[0]);
		return 2;
	}
	if (argc == 3)
		rd.size = strtoull(argv[2], NULL, 10) << 20;
	rd.data = calloc(1, rd.size);
	if (!rd.size || !rd.data) {
		fprintf(stderr, "ramdisk: cannot allocate %s MiB\n",
			argc == 3 ? argv[2] : "64");
		return 1;
	}
	vdu_set_log(log_to_stderr, NULL, VDU_LOG_INFO);

	base = event_base_new();
	opts.name = argv[1];
	r = vdu_dev_new(&opts, &ramdisk_backend, &rd, base, &dev);
	if (r == 0)
		r = vdu_dev_start(dev);
	if (r < 0) {
		fprintf(stderr, "ramdisk: cannot create %s: %s\n", argv[1],
			strerror(-r));
		return 1;
	}
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	fprintf(stderr, "ramdisk: %s ready; attach with: vdpa dev add name %s "
		"mgmtdev vduse\n", argv[1], argv[1]);

	event_base_dispatch(base);

	r = vdu_dev_stop(dev);
	if (r == -EBUSY)
		fprintf(stderr, "ramdisk: %s is still attached: vdpa dev del %s\n",
			argv[1], argv[1]);
	vdu_dev_free(dev);
	event_free(sigint);
	event_free(sigterm);
	event_base_free(base);
	free(rd.data);
	return r < 0 ? 1 : 0;
}
