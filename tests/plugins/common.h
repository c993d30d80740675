/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A backend for the ABI test plugins: any size, reads give 0x5a. */
#ifndef TEST_PLUGIN_COMMON_H
#define TEST_PLUGIN_COMMON_H

#include <errno.h>
#include <string.h>
#include <libvduse.h>

static int tp_open(const struct vdu_param *p, size_t n, void **handle)
{
	static uint64_t size;

	if (vdu_parse_size(vdu_param_get(p, n, "size"), &size) < 0)
		return -EINVAL;
	*handle = &size;
	return 0;
}

static int tp_get_info(void *handle, struct vdu_backend_info *info)
{
	info->size = *(uint64_t *)handle;
	info->caps = VDU_CAP_FLUSH;
	return 0;
}

static void tp_submit(void *qctx, struct vdu_io *io)
{
	if (io->op == VDU_IO_READ)
		for (int i = 0; i < io->iovcnt; i++)
			memset(io->iov[i].iov_base, 0x5a, io->iov[i].iov_len);
	vdu_io_complete(io, 0);
}

static const struct vdu_option tp_options[] = {
	{ "size", VDU_OPT_SIZE, "SIZE", NULL, "device size", VDU_OPT_F_REQUIRED,
	  512, 0 },
	{ 0 },
};

#endif
