/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backends and plugins as the library sees them: every API version brought
 * to the current struct, and a plugin's parameters checked against its
 * option table before anything is opened.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The smallest structs we understand. */
#define BACKEND_V1_SIZE (offsetof(struct vdu_backend_v1, unplug) + sizeof(void *))
#define BACKEND_V2_SIZE (offsetof(struct vdu_backend, unplug) + sizeof(void *))
#define PLUGIN_V2_MIN (offsetof(struct vdu_plugin, close) + sizeof(void *))

int vdu_backend_import(const struct vdu_backend *be, struct vdu_backend *out)
{
	memset(out, 0, sizeof(*out));
	if (!be)
		return -EINVAL;
	if (be->api_version == 1 && be->struct_size >= BACKEND_V1_SIZE) {
		const struct vdu_backend_v1 *v1 = (const void *)be;

		out->io_priv_size = v1->io_priv_size;
		out->get_info = v1->get_info;
		out->queue_open = v1->queue_open;
		out->queue_close = v1->queue_close;
		out->submit = v1->submit;
		out->unplug = v1->unplug;
	} else if (be->api_version >= 2 &&
		   be->api_version <= VDU_BACKEND_API_VERSION &&
		   be->struct_size >= BACKEND_V2_SIZE) {
		memcpy(out, be, VDU_MIN(be->struct_size, sizeof(*out)));
	} else {
		vdu_err("backend built for API version %" PRIu32 " (struct of %"
			PRIu32 " bytes): this libvduse %s takes versions 1 to %d",
			be->api_version, be->struct_size, vdu_version(),
			VDU_BACKEND_API_VERSION);
		return -EPROTO;
	}
	out->struct_size = sizeof(*out);
	out->api_version = VDU_BACKEND_API_VERSION;
	if (!out->get_info || !out->submit) {
		vdu_err("backend without get_info or submit");
		return -EINVAL;
	}
	return 0;
}

const char *vdu_param_get(const struct vdu_param *params, size_t nparams,
			  const char *key)
{
	for (size_t i = 0; params && key && i < nparams; i++)
		if (params[i].key && !strcmp(params[i].key, key))
			return params[i].value;
	return NULL;
}

int vdu_parse_bool(const char *s)
{
	static const char *const yes[] = { "1", "on", "yes", "true" };
	static const char *const no[] = { "0", "off", "no", "false" };

	for (size_t i = 0; s && i < VDU_ARRAY_SIZE(yes); i++) {
		if (!strcmp(s, yes[i]))
			return 1;
		if (!strcmp(s, no[i]))
			return 0;
	}
	return -EINVAL;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
	VDU_PRINTF(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static const struct vdu_option *find_option(const struct vdu_plugin *p,
					    const char *key)
{
	for (const struct vdu_option *o = p->options; o && o->key; o++)
		if (!strcmp(o->key, key))
			return o;
	return NULL;
}

/* "a, b, c": the keys p knows, for messages. */
static void key_list(const struct vdu_plugin *p, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (const struct vdu_option *o = p->options; o && o->key; o++) {
		int n = snprintf(buf + off, len - off, "%s%s",
				 o == p->options ? "" : ", ", o->key);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (!off)
		snprintf(buf, len, "none");
}

/* value is one of the '|'-separated words of syntax. */
static bool is_choice(const char *syntax, const char *value)
{
	size_t len = strlen(value);

	for (const char *w = syntax; w && *w;) {
		size_t wl = strcspn(w, "|");

		if (wl == len && !strncmp(w, value, len))
			return true;
		w += wl;
		if (*w)
			w++;
	}
	return false;
}

static int check_value(const struct vdu_plugin *p, const struct vdu_option *o,
		       const char *v, char *err, size_t errlen)
{
	uint64_t x = 0;
	char *end;

	switch (o->type) {
	case VDU_OPT_STRING:
		if (!*v)
			return fail(err, errlen, "%s: %s is empty: give %s=%s",
				    p->name, o->key, o->key,
				    o->syntax ? o->syntax : "VALUE");
		return 0;
	case VDU_OPT_BOOL:
		if (vdu_parse_bool(v) < 0)
			return fail(err, errlen,
				    "%s: %s=%s is not a boolean: use %s=on or %s=off",
				    p->name, o->key, v, o->key, o->key);
		return 0;
	case VDU_OPT_CHOICE:
		if (!is_choice(o->syntax, v))
			return fail(err, errlen, "%s: %s=%s: use one of %s",
				    p->name, o->key, v, o->syntax);
		return 0;
	case VDU_OPT_SIZE:
		if (vdu_parse_size(v, &x) < 0)
			return fail(err, errlen,
				    "%s: %s=%s is not a size: use bytes or a number with K, M, G or T (e.g. %s=1G)",
				    p->name, o->key, v, o->key);
		break;
	case VDU_OPT_UINT:
		errno = 0;
		x = strtoull(v, &end, 10);
		if (!*v || *end || errno || *v < '0' || *v > '9')
			return fail(err, errlen,
				    "%s: %s=%s is not a number: use %s=%s",
				    p->name, o->key, v, o->key,
				    o->syntax ? o->syntax : "N");
		break;
	default:
		return fail(err, errlen, "%s: option %s has an unknown type %u",
			    p->name, o->key, o->type);
	}
	if (x < o->min && !o->max)
		return fail(err, errlen,
			    "%s: %s=%s is too small: use at least %" PRIu64 "%s",
			    p->name, o->key, v, o->min,
			    o->type == VDU_OPT_SIZE ? " bytes" : "");
	if (x < o->min || (o->max && x > o->max))
		return fail(err, errlen,
			    "%s: %s=%s is out of range: use %" PRIu64 " to %" PRIu64
			    "%s", p->name, o->key, v, o->min, o->max,
			    o->type == VDU_OPT_SIZE ? " bytes" : "");
	return 0;
}

int vdu_plugin_check(const struct vdu_plugin *p, const struct vdu_param *params,
		     size_t nparams, char *err, size_t errlen)
{
	int (*check)(const struct vdu_param *, size_t, char *, size_t) = NULL;
	struct vdu_backend be;
	char keys[256];

	if (err && errlen)
		err[0] = '\0';
	if (!p || p->struct_size < PLUGIN_V2_MIN || p->api_version < 2 ||
	    p->api_version > VDU_BACKEND_API_VERSION || !p->name ||
	    !p->backend || !p->open) {
		if (err && errlen)
			snprintf(err, errlen, "unusable plugin descriptor");
		return -EPROTO;
	}
	/* A descriptor is API 2 or later, and so is the backend beside it:
	 * both come from the same header. */
	if (p->backend->api_version < 2 ||
	    vdu_backend_import(p->backend, &be) < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s: unusable backend struct (API version %u)",
				 p->name, p->backend->api_version);
		return -EPROTO;
	}
	if (p->struct_size >= offsetof(struct vdu_plugin, check) + sizeof(void *))
		check = p->check;
	key_list(p, keys, sizeof(keys));
	for (size_t i = 0; i < nparams; i++) {
		const struct vdu_option *o;
		int r;

		if (!params[i].key || !params[i].value)
			return fail(err, errlen, "%s: parameter without key or value",
				    p->name);
		o = find_option(p, params[i].key);
		if (!o)
			return fail(err, errlen,
				    "%s: unknown key '%s': the %s backend takes %s",
				    p->name, params[i].key, p->name, keys);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(params[j].key, params[i].key))
				return fail(err, errlen,
					    "%s: %s given twice: give it once",
					    p->name, params[i].key);
		r = check_value(p, o, params[i].value, err, errlen);
		if (r < 0)
			return r;
	}
	for (const struct vdu_option *o = p->options; o && o->key; o++)
		if ((o->flags & VDU_OPT_F_REQUIRED) &&
		    !vdu_param_get(params, nparams, o->key))
			return fail(err, errlen, "%s: %s is required: give %s=%s",
				    p->name, o->key, o->key,
				    o->syntax ? o->syntax : "VALUE");
	if (check) {
		int r = check(params, nparams, err, errlen);

		if (r < 0 && err && errlen && !err[0])
			snprintf(err, errlen, "%s: invalid parameters", p->name);
		return r < 0 ? -EINVAL : 0;
	}
	return 0;
}
