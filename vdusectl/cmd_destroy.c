/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl destroy: detach (--force), stop the daemon, DESTROY_DEV. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vdusectl.h"

static int destroy_kernel_dev(const char *name)
{
	struct stat st;
	int rc = vdu_destroy_by_name(name);

	if (rc == 0)
		return 0;
	if (rc == -ENOENT || rc == -ENODEV || rc == -EINVAL) {
		if (stat("/dev/vduse/control", &st) < 0) {
			vctl_error("/dev/vduse/control not found: load the vduse module (modprobe vduse)");
			return rc;
		}
		if (!vctl_kernel_dev_exists(name))
			return 0; /* already gone */
	}
	if (rc == -EPERM || rc == -EACCES)
		vctl_error("cannot destroy device %s: permission denied: must run as root",
			   name);
	else if (rc == -EBUSY)
		vctl_error("device %s is busy: it is still attached or open (vdusectl detach %s)",
			   name, name);
	else
		vctl_error("cannot destroy device %s: %s", name, strerror(-rc));
	return rc;
}

int vctl_cmd_destroy(int argc, const char **argv)
{
	const char *state_opt = NULL;
	int force = 0;
	struct poptOption options[] = {
		{ "force", '\0', POPT_ARG_NONE, &force, 0,
		  "detach the device first if it is attached", NULL },
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "destroy",
		.synopsis = "NAME [--force]",
		.description =
			"Stop the daemon of NAME (it finishes in-flight requests, up to\n"
			"30 s) and destroy the VDUSE device.  Refuses while the device is\n"
			"attached unless --force is given, which detaches it first.",
		.options = options,
		.min_args = 1,
		.max_args = 1,
	};
	char err[VCTL_ERR_MAX], drv[64], node[128];
	const char *args[1], *dir, *name;
	poptContext ctx = NULL;
	pid_t pid;
	int rc;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	name = args[0];
	dir = vctl_state_dir(state_opt);
	rc = vctl_state_dir_check(dir, true);
	if (rc)
		goto out;
	if (vctl_check_name(name, NULL, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		rc = VCTL_EXIT_USAGE;
		goto out;
	}
	if (!vctl_device_exists(dir, name)) {
		vctl_error("no such device '%s' (see 'vdusectl list')", name);
		rc = VCTL_EXIT_NOTFOUND;
		goto out;
	}
	rc = VCTL_EXIT_FAIL;
	if (vctl_attached(name, drv, sizeof(drv), node, sizeof(node)) == 1) {
		if (!force) {
			vctl_error("device %s is attached%s%s: run 'vdusectl detach %s' first or use --force",
				   name, node[0] ? " as " : "", node, name);
			goto out;
		}
		if (vctl_detach(name, err, sizeof(err)) < 0) {
			vctl_error("%s", err);
			goto out;
		}
	}
	switch (vctl_daemon_state(dir, name, &pid)) {
	case VCTL_DAEMON_ALIVE:
		if (pid <= 0) {
			vctl_error("the daemon of %s is still starting: try again",
				   name);
			goto out;
		}
		if (vctl_stop_daemon(dir, name, pid, err, sizeof(err)) < 0) {
			vctl_error("%s", err);
			goto out;
		}
		/* The daemon leaves the kernel device if it could not destroy it. */
		if (vctl_kernel_dev_exists(name) && destroy_kernel_dev(name) < 0)
			goto out;
		break;
	default:
		if (vctl_kernel_dev_exists(name) && destroy_kernel_dev(name) < 0)
			goto out;
		break;
	}
	vctl_remove_state(dir, name, false);
	rc = VCTL_EXIT_OK;
out:
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}
