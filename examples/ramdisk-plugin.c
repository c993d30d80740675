/* SPDX-License-Identifier: MIT */
/*
 * ramdisk-plugin: a backend for vdusectl, a disk in memory.  A plugin is
 * two structs: the backend (what the library calls per request) and the
 * plugin descriptor (name, keys, open/close).  vdusectl gives it the
 * daemon, the state files, recover, attach and the systemd unit.
 *
 *   cc -shared -fPIC -o ramdisk.so examples/ramdisk-plugin.c \
 *      $(pkg-config --cflags --libs libvduse)
 *   vdusectl create rd0 --backend ./ramdisk.so --size 256M --attach
 *   vdusectl create --backend ./ramdisk.so --help     (its keys)
 *
 * Queues run on threads of their own: every queue writes the one buffer,
 * which is safe because the driver never has two requests in flight on
 * the same sectors that it expects ordered.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <libvduse.h>

struct ramdisk {
	uint8_t *data;
	uint64_t size;
};

static int rd_open(const struct vdu_param *params, size_t n, void **handle)
{
	struct ramdisk *rd = calloc(1, sizeof(*rd));

	/* The library checked size= against the option table below. */
	if (!rd || vdu_parse_size(vdu_param_get(params, n, "size"), &rd->size) < 0) {
		free(rd);
		return -ENOMEM;
	}
	/* Anonymous memory: untouched pages cost nothing until written. */
	rd->data = mmap(NULL, rd->size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rd->data == MAP_FAILED) {
		vdu_log(VDU_LOG_ERR, "ramdisk: cannot map %llu bytes",
			(unsigned long long)rd->size);
		free(rd);
		return -ENOMEM;
	}
	*handle = rd;
	return 0;
}

static void rd_close(void *handle)
{
	struct ramdisk *rd = handle;

	munmap(rd->data, rd->size);
	free(rd);
}

static int rd_get_info(void *handle, struct vdu_backend_info *info)
{
	struct ramdisk *rd = handle;

	info->size = rd->size;
	info->caps = VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES;
	return 0;
}

/* offset and len are checked against the size; iov points at the
 * driver's buffers.  Complete each I/O exactly once, now or later. */
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
		/* Give the pages back: they read as zeroes again. */
		if ((io->offset | io->len) % 4096 ||
		    madvise(p, io->len, MADV_DONTNEED) < 0)
			memset(p, 0, io->len);
		break;
	case VDU_IO_FLUSH:
		break;
	}
	vdu_io_complete(io, 0);
}

static const struct vdu_backend ramdisk_backend = {
	VDU_BACKEND_INIT,
	.get_info = rd_get_info,
	.submit = rd_submit,
};

static const struct vdu_option ramdisk_options[] = {
	/* key, type, syntax, default, help, flags, min, max */
	{ "size", VDU_OPT_SIZE, "SIZE", NULL, "disk size (K, M, G), kept in memory",
	  VDU_OPT_F_REQUIRED, 4096, 1ULL << 40 },
	{ 0 },
};

static const struct vdu_plugin ramdisk_plugin = {
	VDU_PLUGIN_INIT,
	.name = "ramdisk",
	.description = "example plugin: a disk in memory",
	.options = ramdisk_options,
	.backend = &ramdisk_backend,
	.open = rd_open,
	.close = rd_close,
};

VDU_REGISTER_PLUGIN(ramdisk_plugin)
