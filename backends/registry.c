/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Name -> backend table for the built-in backends. */
#include <string.h>

#include "backends.h"

const struct vdu_plugin *const vbe_backends[] = {
	&vbe_null,
	&vbe_file,
	&vbe_nbd,
	NULL,
};

/* Old names that keep working. */
static const struct {
	const char *alias, *name;
} aliases[] = {
	{ "tcp", "nbd" }, /* before 0.3 */
};

const struct vdu_plugin *vbe_lookup(const char *name)
{
	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (!strcmp(name, aliases[i].alias))
			name = aliases[i].name;
	for (size_t i = 0; vbe_backends[i]; i++)
		if (strcmp(vbe_backends[i]->name, name) == 0)
			return vbe_backends[i];
	return NULL;
}
