/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Name -> backend table for the built-in backends. */
#include <string.h>

#include "backends.h"

const struct vdu_backend *const vdu_backends[] = {
	&vdu_backend_null,
	&vdu_backend_file,
	&vdu_backend_tcp,
	NULL,
};

const struct vdu_backend *vdu_backend_lookup(const char *name)
{
	for (size_t i = 0; vdu_backends[i]; i++)
		if (strcmp(vdu_backends[i]->name, name) == 0)
			return vdu_backends[i];
	return NULL;
}
