/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The backends built into vdusectl.  Their private names carry the vbe_
 * prefix, never the library's vdu_. */
#ifndef VDU_BACKENDS_H
#define VDU_BACKENDS_H

#include "libvduse.h"

extern const struct vdu_backend vbe_null;
extern const struct vdu_backend vbe_file;
extern const struct vdu_backend vbe_tcp;

/* NULL-terminated list of every built-in backend. */
extern const struct vdu_backend *const vbe_backends[];

/* The backend called name, or NULL. */
const struct vdu_backend *vbe_lookup(const char *name);

#endif
