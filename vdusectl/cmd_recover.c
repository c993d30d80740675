/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdusectl recover NAME: start a new daemon for a device whose daemon
 * died, from the configuration saved at create time.  The library takes
 * over the kernel device and resubmits what the driver was waiting for.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "vdusectl.h"

static const char description[] =
	"Start a new daemon for device NAME after its daemon died (killed, "
	"crashed), using the configuration saved in the state directory at "
	"create time.  I/O the guest had in flight is resubmitted; the "
	"guest sees no error if this completes within the kernel's message "
	"timeout (/sys/class/vduse/NAME/msg_timeout).";

/* Rebuild the create arguments from NAME.json; strings stay owned by
 * json.  0, or -1 with err set. */
static int args_from_config(const struct json_object *cfg,
			    struct vctl_create_args *a, const char **extra,
			    char (*bufs)[64], char (*kv)[512], size_t maxkv,
			    char *err, size_t errlen)
{
	const struct json_object *params = json_get(cfg, "params");
	uint64_t v;
	size_t n = 0;
	bool b;

	a->backend = json_get_str(cfg, "backend");
	if (!a->backend) {
		snprintf(err, errlen, "saved configuration has no backend");
		return -1;
	}
/* zero_ok: 0 is a choice (poll_us: off), not "unset" (absent = auto). */
#define NUM(key, field, i, zero_ok)                                          \
	if (json_get_u64(cfg, key, &v) == 0 && (v || (zero_ok))) {           \
		snprintf(bufs[i], sizeof(bufs[i]), "%" PRIu64, v);           \
		a->field = bufs[i];                                          \
	}
	NUM("queues", queues, 0, false);
	NUM("queue_size", queue_size, 1, false);
	NUM("block_size", block_size, 2, false);
	NUM("poll_us", poll_us, 3, true);
#undef NUM
	a->serial = json_get_str(cfg, "serial");
	a->ring = json_get_str(cfg, "ring");
	a->bounce = json_get_str(cfg, "bounce_mode");
	a->cpu_list = json_get_str(cfg, "cpu_list");
	a->irq_cpu_list = json_get_str(cfg, "irq_cpu_list");
	if (json_get_bool(cfg, "read_only", &b) == 0)
		a->read_only = b;
	if (json_get_bool(cfg, "auto_recover", &b) == 0)
		a->auto_recover = b;
	if (json_object_is_type(params, json_type_object)) {
		json_object_object_foreach((struct json_object *)params, k, pv) {
			const char *val = json_object_is_type(pv, json_type_string) ?
					  json_text(pv) : NULL;

			if (!val)
				continue;
			if (!strcmp(k, "size"))
				a->size = val;
			else if (!strcmp(k, "path"))
				a->path = val;
			else if (!strcmp(k, "url"))
				a->url = val;
			else if (!strcmp(k, "readonly"))
				continue; /* implied by read_only */
			else {
				if (n + 1 >= maxkv) {
					snprintf(err, errlen, "too many saved parameters");
					return -1;
				}
				snprintf(kv[n], sizeof(kv[n]), "%s=%s", k, val);
				extra[n] = kv[n];
				n++;
			}
		}
	}
	extra[n] = NULL;
	a->extra = extra;
	return 0;
}

int vctl_cmd_recover(int argc, const char **argv)
{
	const char *state_opt = NULL;
	int foreground = 0;
	struct poptOption options[] = {
		{ "foreground", '\0', POPT_ARG_NONE, &foreground, 0,
		  "run the new daemon in this process, log to stderr", NULL },
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "recover",
		.synopsis = "NAME",
		.description = description,
		.options = options,
		.min_args = 1,
		.max_args = 1,
	};
	struct vctl_create_args a = { 0 };
	const char *extra[VCTL_PARAMS_MAX + 1];
	char bufs[4][64], kv[VCTL_PARAMS_MAX][512], err[VCTL_ERR_MAX];
	struct json_object *cfg = NULL;
	struct vctl_create c;
	const char *args[1], *dir;
	poptContext ctx = NULL;
	pid_t pid;
	int rc;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	dir = vctl_state_dir(state_opt);
	rc = vctl_state_dir_check(dir, true);
	if (rc)
		goto out;
	if (!vctl_kernel_dev_exists(args[0])) {
		vctl_error("no VDUSE device %s: nothing to recover (vdusectl create)",
			   args[0]);
		rc = VCTL_EXIT_NOTFOUND;
		goto out;
	}
	if (vctl_daemon_state(dir, args[0], &pid) == VCTL_DAEMON_ALIVE) {
		vctl_error("the daemon of %s is still running (pid %d): nothing "
			   "to recover", args[0], (int)pid);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	cfg = vctl_load_config(dir, args[0]);
	if (!cfg) {
		vctl_error("no saved configuration %s/%s.json: cannot recover %s "
			   "(vdusectl destroy %s)", dir, args[0], args[0], args[0]);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	/* The group the device was created for (VDUSE_GROUP) gave the state
	 * directory to it: keep its access without being told again. */
	{
		struct stat st;
		char gid[16];

		if (!getenv(VCTL_GROUP_ENV) && stat(dir, &st) == 0 &&
		    st.st_gid != 0 && (st.st_mode & 0050) == 0050) {
			snprintf(gid, sizeof(gid), "%u", (unsigned)st.st_gid);
			setenv(VCTL_GROUP_ENV, gid, 1);
		}
	}
	memset(&c, 0, sizeof(c));
	if (args_from_config(cfg, &a, extra, bufs, kv, VCTL_PARAMS_MAX + 1, err,
			     sizeof(err)) < 0 ||
	    vctl_create_spec(&a, args[0], dir, &c, err, sizeof(err)) < 0) {
		vctl_error("saved configuration of %s is not usable: %s", args[0],
			   err);
		vctl_create_spec_free(&c);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	c.recover = true;
	c.foreground = foreground;
	/* The old daemon's files: its pid file is unlocked now, and the
	 * socket is dead. */
	vctl_remove_state(dir, args[0], true);
	if (foreground)
		rc = c.auto_recover ? vctl_supervise(&c, -1)
				    : vctl_daemon_main(&c, -1);
	else
		rc = vctl_start_daemon(&c, &pid);
	vctl_create_spec_free(&c);
out:
	json_free(cfg);
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}
