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
	struct null_dev *d;
	uint64_t size = 0;
	int ro = 0, zeroes = 1;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(p[i].key, "size") == 0) {
			if (vdu_parse_size(p[i].value, &size) < 0 || size < 512) {
				vdu_log(VDU_LOG_ERR, "null: invalid size '%s'",
					p[i].value);
				return -EINVAL;
			}
		} else if (strcmp(p[i].key, "readonly") == 0) {
			ro = strcmp(p[i].value, "0") != 0;
		} else if (strcmp(p[i].key, "read-zeroes") == 0) {
			/* off: like null_blk and qemu's null-co default,
			 * reads leave the buffer as it is (benchmarks). */
			zeroes = strcmp(p[i].value, "0") != 0 &&
				 strcmp(p[i].value, "off") != 0;
		} else {
			vdu_log(VDU_LOG_ERR, "null: unknown parameter '%s'", p[i].key);
			return -EINVAL;
		}
	}
	if (!size) {
		vdu_log(VDU_LOG_ERR, "null: size is required");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->size = size;
	d->read_only = ro;
	d->read_zeroes = zeroes;
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

const struct vdu_backend vbe_null = {
	.struct_size = sizeof(struct vdu_backend),
	.api_version = VDU_BACKEND_API_VERSION,
	.name = "null",
	.description = "reads return zeroes, writes are discarded",
	.usage = "size=SIZE (required), readonly=0|1, read-zeroes=on|off (default on;\n"
		 "off leaves read buffers untouched, like null_blk: for benchmarks)",
	.open = null_open,
	.close = null_close,
	.get_info = null_get_info,
	.queue_open = null_queue_open,
	.submit = null_submit,
};
