/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Finding a backend: the built-ins, else a plugin (a shared object that
 * exports vdu_plugin_entry()) given by path or found as NAME.so on the
 * plugin path; and describing one (--help, --dry-run).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends.h"
#include "vdusectl.h"

/* The smallest descriptor we understand (API 2 without flags/check). */
#define PLUGIN_MIN_SIZE (offsetof(struct vdu_plugin, close) + sizeof(void *))

static int load_plugin(const char *path, struct vctl_backend *b, char *err,
		       size_t errlen)
{
	const struct vdu_plugin *(*entry)(void);
	const struct vdu_plugin *p;
	void *dl;

	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		return vctl_fail(err, errlen, "cannot load backend plugin %s: %s",
			    path, dlerror());
	*(void **)&entry = dlsym(dl, VDU_PLUGIN_ENTRY);
	if (!entry) {
		dlclose(dl);
		return vctl_fail(err, errlen,
			    "%s is not a vduse backend plugin: it exports no %s() (see VDU_REGISTER_PLUGIN in libvduse(3))",
			    path, VDU_PLUGIN_ENTRY);
	}
	p = entry();
	if (!p || p->struct_size < PLUGIN_MIN_SIZE ||
	    p->api_version < 2 || p->api_version > VDU_BACKEND_API_VERSION) {
		vctl_fail(err, errlen,
		     "backend plugin %s was built for backend API %u (descriptor of %u bytes); this vdusectl (libvduse %s) loads API 2 to %d: rebuild it against the installed libvduse",
		     path, p ? p->api_version : 0, p ? p->struct_size : 0,
		     vdu_version(), VDU_BACKEND_API_VERSION);
		dlclose(dl); /* p pointed into it */
		return -1;
	}
	/* Fields past what the plugin's header had read as zero.  The
	 * object stays loaded for the life of the process. */
	memset(&b->desc, 0, sizeof(b->desc));
	memcpy(&b->desc, p, p->struct_size < sizeof(b->desc) ?
			    p->struct_size : sizeof(b->desc));
	b->plugin = &b->desc;
	return 0;
}

/* DIR/NAME.so exists: its path in buf. */
static bool find_in(const char *dir, size_t dirlen, const char *name,
		    char *buf, size_t len)
{
	int n = snprintf(buf, len, "%.*s/%s.so", (int)dirlen, dir, name);

	return n > 0 && (size_t)n < len && access(buf, F_OK) == 0;
}

static bool plugin_name_ok(const char *name)
{
	if (!*name || strlen(name) > 64)
		return false;
	for (const char *p = name; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') &&
		    *p != '-' && *p != '_')
			return false;
	return true;
}

const char *vctl_backend_dirs(void)
{
	static char buf[PATH_MAX * 2];
	const char *env = getenv(VCTL_BACKEND_PATH_ENV);

	snprintf(buf, sizeof(buf), "%s%s%s", env && *env ? env : "",
		 env && *env ? ":" : "", VCTL_BACKEND_DIR);
	return buf;
}

int vctl_backend_find(const char *spec, struct vctl_backend *b, char *err,
		      size_t errlen)
{
	char path[PATH_MAX], names[256];
	const char *dirs, *d;

	memset(b, 0, sizeof(*b));
	if (strchr(spec, '/')) {
		if (!realpath(spec, b->ref))
			return vctl_fail(err, errlen,
				    "backend plugin %s: %s: give the path of a .so file",
				    spec, strerror(errno));
		return load_plugin(b->ref, b, err, errlen);
	}
	b->plugin = vbe_lookup(spec);
	if (b->plugin) {
		snprintf(b->ref, sizeof(b->ref), "%s", b->plugin->name);
		return 0;
	}
	vctl_backend_names(names, sizeof(names));
	if (!plugin_name_ok(spec))
		return vctl_fail(err, errlen,
			    "unknown backend '%s': use one of %s, a plugin NAME (NAME.so) or a plugin path (./NAME.so)",
			    spec, names);
	dirs = vctl_backend_dirs();
	for (d = dirs; *d;) {
		size_t len = strcspn(d, ":");

		if (len && find_in(d, len, spec, path, sizeof(path))) {
			if (!realpath(path, b->ref))
				return vctl_fail(err, errlen, "backend plugin %s: %s",
					    path, strerror(errno));
			return load_plugin(b->ref, b, err, errlen);
		}
		d += len;
		if (*d)
			d++;
	}
	return vctl_fail(err, errlen,
		    "unknown backend '%s': use one of %s, or install %s.so in %s (or $%s)",
		    spec, names, spec, VCTL_BACKEND_DIR, VCTL_BACKEND_PATH_ENV);
}

void vctl_backend_names(char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; vbe_backends[i]; i++) {
		int n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
				 vbe_backends[i]->name);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
}

static const char *const dedicated[] = { "size", "path", "url" };

void vctl_backend_help(FILE *f, const struct vdu_plugin *p)
{
	bool any = false;

	fprintf(f, "\nKeys of the %s backend (%s):\n", p->name, p->description);
	for (const struct vdu_option *o = p->options; o && o->key; o++) {
		char kv[96];
		const char *opt = NULL;

		for (size_t i = 0; i < sizeof(dedicated) / sizeof(dedicated[0]); i++)
			if (!strcmp(o->key, dedicated[i]))
				opt = dedicated[i];
		snprintf(kv, sizeof(kv), "%s=%s", o->key,
			 o->syntax ? o->syntax : "VALUE");
		fprintf(f, "  %-24s %s", kv, o->help ? o->help : "");
		if (o->flags & VDU_OPT_F_REQUIRED)
			fprintf(f, " (required)");
		else if (o->def)
			fprintf(f, " (default %s)", o->def);
		if (opt)
			fprintf(f, "; or --%s", opt);
		fputc('\n', f);
		any = true;
	}
	if (!any)
		fprintf(f, "  (none)\n");
	fprintf(f, "Give them as -o KEY=VALUE.\n");
}

void vctl_backends_help(FILE *f)
{
	fprintf(f, "\nBackends (vdusectl create --backend NAME --help lists its keys):\n");
	for (size_t i = 0; vbe_backends[i]; i++)
		fprintf(f, "  %-8s %s\n", vbe_backends[i]->name,
			vbe_backends[i]->description);
	fprintf(f, "  NAME     a plugin: NAME.so in $%s or %s\n"
		   "  PATH     a plugin file (any value with a '/', e.g. ./ramdisk.so)\n",
		VCTL_BACKEND_PATH_ENV, VCTL_BACKEND_DIR);
}
