/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The backends built into vdusectl. */
#ifndef VDU_BACKENDS_H
#define VDU_BACKENDS_H

#include "libvduse.h"

extern const struct vdu_backend vdu_backend_null;
extern const struct vdu_backend vdu_backend_file;
extern const struct vdu_backend vdu_backend_tcp;

/* NULL-terminated list of every built-in backend. */
extern const struct vdu_backend *const vdu_backends[];

/* The backend called name, or NULL. */
const struct vdu_backend *vdu_backend_lookup(const char *name);

#endif
