/* SPDX-License-Identifier: MIT */
/*
 * ramdisk: the smallest complete libvduse program.  Copy it to start a
 * device of your own: fill in submit(), keep the rest.  vdu_main() does
 * the event loop, the signals, attaching and the clean stop.
 *
 *   cc -o ramdisk ramdisk.c $(pkg-config --cflags --libs libvduse)
 *   ./ramdisk NAME [SIZE_MiB [virtio_vdpa|vhost_vdpa]]   (root, vduse loaded)
 *
 * Without the third argument, attach it yourself:
 *   vdpa dev add name NAME mgmtdev vduse        -> /dev/vdX
 * Ctrl-C (or SIGTERM) detaches what it attached, drains and destroys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libvduse.h>

struct ramdisk {
	uint8_t *data;
	uint64_t size;
};

static int rd_get_info(void *handle, struct vdu_backend_info *info)
{
	struct ramdisk *rd = handle;

	info->size = rd->size;
	info->caps = VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES;
	return 0;
}

/* One I/O.  offset/len are already checked against the size; iov points
 * at the driver's buffers.  Complete it now or later, exactly once. */
static void rd_submit(void *handle, struct vdu_io *io)
{
	struct ramdisk *rd = handle;
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

static const struct vdu_backend ramdisk_backend = {
	VDU_BACKEND_INIT,
	.get_info = rd_get_info,
	.submit = rd_submit, /* no queue_open: every queue gets the handle */
};

static void log_to_stderr(void *opaque, int level, const char *msg)
{
	fprintf(stderr, "ramdisk: %s\n", msg);
}

int main(int argc, char **argv)
{
	struct vdu_dev_opts dev = { .struct_size = sizeof(dev) };
	struct vdu_main_opts run = { .struct_size = sizeof(run) };
	struct ramdisk rd = { .size = 64ULL << 20 };
	int r;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: %s NAME [SIZE_MiB [virtio_vdpa|vhost_vdpa]]\n",
			argv[0]);
		return 2;
	}
	if (argc >= 3)
		rd.size = strtoull(argv[2], NULL, 10) << 20;
	rd.data = rd.size ? calloc(1, rd.size) : NULL;
	if (!rd.data) {
		fprintf(stderr, "ramdisk: cannot allocate %llu MiB\n",
			(unsigned long long)(rd.size >> 20));
		return 1;
	}
	vdu_set_log(log_to_stderr, NULL, VDU_LOG_INFO);
	dev.name = argv[1];
	run.attach = argc == 4 ? argv[3] : NULL;
	r = vdu_main(&dev, &ramdisk_backend, &rd, &run);
	free(rd.data);
	return r < 0 ? 1 : 0;
}
