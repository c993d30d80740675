/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Name -> backend table for the built-in backends. */
#include <string.h>

#include "backends.h"

const struct vdu_backend *const vbe_backends[] = {
	&vbe_null,
	&vbe_file,
	&vbe_tcp,
	NULL,
};

const struct vdu_backend *vbe_lookup(const char *name)
{
	for (size_t i = 0; vbe_backends[i]; i++)
		if (strcmp(vbe_backends[i]->name, name) == 0)
			return vbe_backends[i];
	return NULL;
}
