/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A descriptor whose backend struct claims API 1 (the 0.2 layout), which
 * no real plugin can have: refused as unusable. */
#include "common.h"

static const struct vdu_backend tp_backend = {
	.struct_size = sizeof(struct vdu_backend),
	.api_version = 1,
	.get_info = tp_get_info,
	.submit = tp_submit,
};

static const struct vdu_plugin tp_plugin = {
	VDU_PLUGIN_INIT,
	.name = "oldbackend",
	.description = "test: API 1 backend struct",
	.options = tp_options,
	.backend = &tp_backend,
	.open = tp_open,
};

VDU_REGISTER_PLUGIN(tp_plugin)
