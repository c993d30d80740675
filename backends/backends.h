/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The backends built into vdusectl.  Their private names carry the vbe_
 * prefix, never the library's vdu_. */
#ifndef VDU_BACKENDS_H
#define VDU_BACKENDS_H

#include "libvduse.h"

extern const struct vdu_plugin vbe_null;
extern const struct vdu_plugin vbe_file;
extern const struct vdu_plugin vbe_nbd;

/* NULL-terminated list of every built-in backend. */
extern const struct vdu_plugin *const vbe_backends[];

/* The built-in backend called name (or an alias of it: tcp is nbd), or
 * NULL. */
const struct vdu_plugin *vbe_lookup(const char *name);

/* For tests: the file backend's engine ("io_uring" or "libaio") and its
 * reads and writes through io_uring's fixed buffer (the bounce buffer). */
struct vbe_file_stats {
	const char *engine;
	uint64_t fixed_ios;   /* reads and writes as READ/WRITE_FIXED */
	unsigned fixed_regs;  /* times a queue registered the buffer */
};
void vbe_file_stats(void *handle, struct vbe_file_stats *st);

#endif
