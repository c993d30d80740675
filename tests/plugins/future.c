/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A plugin from a newer libvduse (a backend API this one lacks): refused
 * with a one-line message, never called. */
#include "common.h"

static const struct vdu_backend tp_backend = {
	VDU_BACKEND_INIT,
	.get_info = tp_get_info,
	.submit = tp_submit,
};

static const struct vdu_plugin tp_plugin = {
	.struct_size = sizeof(struct vdu_plugin) + 64,
	.api_version = VDU_BACKEND_API_VERSION + 1,
	.name = "future",
	.description = "test: from a newer API",
	.options = tp_options,
	.backend = &tp_backend,
	.open = tp_open,
};

VDU_REGISTER_PLUGIN(tp_plugin)
