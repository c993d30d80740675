/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdusectl resize NAME SIZE [--shrink]: the daemon resizes the backend's
 * storage and tells the driver (a config interrupt): /sys/block/vdX/size
 * follows without a detach.  Bad requests are refused here, against the
 * size the daemon reports (or the saved one when it is not running), and
 * again by the daemon.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdusectl.h"

static const char description[] =
	"Resize device NAME while it runs, attached or not: its daemon resizes\n"
	"the backend's storage and the driver sees the new size at once\n"
	"(/sys/block/vdX/size, a VM's disk).  SIZE is bytes or a number with\n"
	"K, M, G or T; +SIZE and -SIZE are relative to the current size.  It\n"
	"must be a multiple of the device's block size.\n"
	"Shrinking loses the data beyond the new end: it needs --shrink.\n"
	"null: any size; file: a regular file grows (sparse) or, with\n"
	"--shrink, is truncated; a block device cannot grow beyond its own\n"
	"size; nbd: cannot resize.  Only root may resize.";

/* A -SIZE argument would be read as options: it is hidden behind this
 * byte from popt (which takes it as a plain argument) and restored. */
#define NEG_MARK '\x01'

/* [+|-]SIZE against cur: the new size, or -1 with err set. */
static int target_size(const char *name, const char *s, uint64_t cur,
		       uint64_t *out, char *err, size_t errlen)
{
	int sign = *s == '+' ? 1 : *s == '-' ? -1 : 0;
	uint64_t v;

	if (vdu_parse_size(s + (sign != 0), &v) < 0)
		return vctl_fail(err, errlen,
				 "'%s' is not a size: use bytes or a number with K, M, G or T, or +SIZE/-SIZE (e.g. 20G, +1G)",
				 s);
	if (sign > 0 && v > UINT64_MAX - cur)
		return vctl_fail(err, errlen, "%s: '%s' is too large", name, s);
	if (sign < 0 && v >= cur)
		return vctl_fail(err, errlen,
				 "%s has %" PRIu64 " bytes: it cannot shrink by '%s'",
				 name, cur, s + 1);
	*out = sign > 0 ? cur + v : sign < 0 ? cur - v : v;
	if (!*out)
		return vctl_fail(err, errlen, "a size of 0: give the new size of %s",
				 name);
	return 0;
}

int vctl_cmd_resize(int argc, const char **argv)
{
	const char *state_opt = NULL;
	int shrink = 0;
	struct poptOption options[] = {
		{ "shrink", '\0', POPT_ARG_NONE, &shrink, 0,
		  "allow a smaller size (the data beyond it is lost)", NULL },
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "resize",
		.synopsis = "NAME [+|-]SIZE [--shrink]",
		.description = description,
		.options = options,
		.min_args = 1, /* a missing SIZE is ours to name */
		.max_args = 2,
	};
	struct json_object *info = NULL, *cfg = NULL, *v = NULL;
	const struct json_object *src;
	char err[VCTL_ERR_MAX], from[32], to[32], req[64], *reply = NULL;
	const char *args[2], *dir, *name, *size;
	const char **av = NULL;
	uint64_t cur = 0, bs = 0, want;
	poptContext ctx = NULL;
	bool alive;
	pid_t pid;
	int rc;

	av = calloc((size_t)argc + 1, sizeof(*av));
	if (!av) {
		vctl_error("out of memory");
		return VCTL_EXIT_FAIL;
	}
	for (int i = 0; i < argc; i++) {
		av[i] = argv[i];
		if (i && argv[i][0] == '-' && argv[i][1] >= '0' && argv[i][1] <= '9') {
			char *m = malloc(strlen(argv[i]) + 2);

			if (!m) {
				vctl_error("out of memory");
				rc = VCTL_EXIT_FAIL;
				goto out;
			}
			m[0] = NEG_MARK;
			strcpy(m + 1, argv[i]);
			av[i] = m;
		}
	}
	rc = vctl_parse_cmd(&cl, argc, av, &ctx, args);
	if (rc >= 0)
		goto out;
	rc = VCTL_EXIT_USAGE;
	if (!args[1]) {
		vctl_error("resize: missing SIZE: usage: vdusectl resize %s",
			   cl.synopsis);
		goto out;
	}
	name = args[0];
	size = args[1][0] == NEG_MARK ? args[1] + 1 : args[1];
	dir = vctl_state_dir(state_opt);
	rc = VCTL_EXIT_USAGE;
	if (vctl_check_name(name, NULL, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		goto out;
	}
	/* The syntax before anything else (the state directory...). */
	if (target_size(name, size, 1, &want, err, sizeof(err)) < 0 &&
	    strstr(err, "is not a size")) {
		vctl_error("%s", err);
		goto out;
	}
	rc = vctl_state_dir_check(dir, true);
	if (rc)
		goto out;
	if (!vctl_device_exists(dir, name)) {
		vctl_error("no such device '%s' (see 'vdusectl list')", name);
		rc = VCTL_EXIT_NOTFOUND;
		goto out;
	}
	rc = VCTL_EXIT_FAIL;
	alive = vctl_daemon_state(dir, name, &pid) == VCTL_DAEMON_ALIVE;
	if (alive && vctl_ctl_json(dir, name, "info", &info, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		goto out;
	}
	cfg = vctl_load_config(dir, name);
	src = info ? info : cfg;
	if (json_get_u64(src, "size", &cur) < 0 || !cur ||
	    json_get_u64(src, "block_size", &bs) < 0 || !bs) {
		vctl_error("the size of %s is not known: %s", name, alive ?
			   "its daemon did not say" :
			   "its daemon is not running and no configuration was saved");
		goto out;
	}
	rc = VCTL_EXIT_USAGE;
	if (target_size(name, size, cur, &want, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		goto out;
	}
	vctl_format_size(cur, from, sizeof(from));
	vctl_format_size(want, to, sizeof(to));
	if (want % bs) {
		vctl_error("%s is not a multiple of the %" PRIu64 "-byte blocks of %s: "
			   "round it (e.g. %" PRIu64 ")", to, bs, name, want - want % bs);
		goto out;
	}
	if (want < cur && !shrink) {
		vctl_error("refusing to shrink %s from %s to %s: data beyond %s "
			   "would be lost; add --shrink", name, from, to, to);
		goto out;
	}
	rc = VCTL_EXIT_FAIL;
	if (!alive) {
		vctl_error("device %s: daemon not running: start a new one "
			   "(vdusectl recover %s), then resize", name, name);
		goto out;
	}
	if (want == cur) {
		printf("%s already has %s\n", name, to);
		rc = VCTL_EXIT_OK;
		goto out;
	}
	snprintf(req, sizeof(req), "resize %" PRIu64 "%s", want,
		 shrink ? " shrink" : "");
	if (vctl_ctl_request(dir, name, req, &reply, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		goto out;
	}
	v = json_parse(reply);
	if (!json_object_is_type(v, json_type_object)) {
		vctl_error("daemon of %s sent a malformed reply", name);
		goto out;
	}
	if (json_get_str(v, "error")) {
		/* The daemon's words are the message (no "daemon of" prefix). */
		vctl_error("%s", json_get_str(v, "error"));
		goto out;
	}
	printf("%s resized from %s to %s\n", name, from, to);
	rc = VCTL_EXIT_OK;
out:
	json_free(v);
	free(reply);
	json_free(info);
	json_free(cfg);
	free((void *)state_opt);
	poptFreeContext(ctx);
	for (int i = 0; av && i < argc; i++)
		if (av[i] != argv[i])
			free((void *)av[i]);
	free(av);
	return rc;
}
