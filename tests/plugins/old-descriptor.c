/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A plugin built against a header whose descriptor ended before flags and
 * check (struct_size says so): it must load, with those read as zero. */
#include "common.h"

static const struct vdu_backend tp_backend = {
	VDU_BACKEND_INIT,
	.get_info = tp_get_info,
	.submit = tp_submit,
};

/* The trailing fields hold junk that the loader must not read. */
static const struct vdu_plugin tp_plugin = {
	.struct_size = offsetof(struct vdu_plugin, flags),
	.api_version = 2,
	.name = "olddesc",
	.description = "test: a descriptor from an older header",
	.options = tp_options,
	.backend = &tp_backend,
	.open = tp_open,
	.flags = 0xdeadbeef,
	.check = (void *)1,
};

VDU_REGISTER_PLUGIN(tp_plugin)
