/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* null backend: reads return zeroes, writes are discarded. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "backends.h"

struct null_dev {
	uint64_t size;
	int read_only;
	int read_zeroes;
};

static int null_open(const struct vdu_param *p, size_t n, void **handle)
{
	const char *ro = vdu_param_get(p, n, "readonly");
	const char *zeroes = vdu_param_get(p, n, "read-zeroes");
	struct null_dev *d;
	uint64_t size;

	/* vdu_plugin_check() has accepted the values. */
	if (vdu_parse_size(vdu_param_get(p, n, "size"), &size) < 0 || size < 512) {
		vdu_log(VDU_LOG_ERR, "null: size= is required (at least 512)");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->size = size;
	d->read_only = ro && vdu_parse_bool(ro) == 1;
	/* off: like null_blk and qemu's null-co default, reads leave the
	 * buffer as it is (benchmarks). */
	d->read_zeroes = !zeroes || vdu_parse_bool(zeroes) != 0;
	*handle = d;
	return 0;
}

static void null_close(void *handle)
{
	free(handle);
}

static int null_get_info(void *handle, struct vdu_backend_info *info)
{
	struct null_dev *d = handle;

	memset(info, 0, sizeof(*info));
	info->size = d->size;
	info->caps = VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES |
		     (d->read_only ? VDU_CAP_READ_ONLY : 0);
	return 0;
}

/* Any size: only the capacity changes. */
static int null_resize(void *handle, uint64_t size, unsigned flags)
{
	struct null_dev *d = handle;

	d->size = size;
	return 0;
}

static int null_queue_open(void *handle, unsigned qidx, struct event_base *base,
			   void **qctx)
{
	*qctx = handle;
	return 0;
}

static void null_submit(void *qctx, struct vdu_io *io)
{
	const struct null_dev *d = qctx;

	if (io->op == VDU_IO_READ && d->read_zeroes)
		for (int i = 0; i < io->iovcnt; i++)
			memset(io->iov[i].iov_base, 0, io->iov[i].iov_len);
	vdu_io_complete(io, 0);
}

static const struct vdu_backend null_backend = {
	VDU_BACKEND_INIT,
	.get_info = null_get_info,
	.queue_open = null_queue_open,
	.submit = null_submit,
	.resize = null_resize,
};

static const struct vdu_option null_options[] = {
	{ "size", VDU_OPT_SIZE, "SIZE", NULL, "device size (K, M, G, T)",
	  VDU_OPT_F_REQUIRED, 512, 0 },
	{ "readonly", VDU_OPT_BOOL, "on|off", "off", "export read-only", 0, 0, 0 },
	{ "read-zeroes", VDU_OPT_BOOL, "on|off", "on",
	  "reads return zeroes; off leaves read buffers untouched, like null_blk (for benchmarks)",
	  0, 0, 0 },
	{ 0 },
};

const struct vdu_plugin vbe_null = {
	VDU_PLUGIN_INIT,
	.name = "null",
	.description = "reads return zeroes, writes are discarded",
	.options = null_options,
	.backend = &null_backend,
	.open = null_open,
	.close = null_close,
};
