/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl attach / detach: the vdpa side of a device. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "vdusectl.h"

/* Usage checks shared by both: 0 or an exit code. */
static int check_device(const char *name, const char *state_dir)
{
	char err[VCTL_ERR_MAX];

	if (vctl_check_name(name, NULL, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		return VCTL_EXIT_USAGE;
	}
	if (!vctl_device_exists(state_dir, name)) {
		vctl_error("no such device '%s' (see 'vdusectl list')", name);
		return VCTL_EXIT_NOTFOUND;
	}
	return 0;
}

int vctl_cmd_attach(int argc, const char **argv)
{
	const char *state_opt = NULL, *driver = NULL;
	struct poptOption options[] = {
		{ "driver", '\0', POPT_ARG_STRING, &driver, 0,
		  "virtio_vdpa (default, gives /dev/vdX) or vhost_vdpa (/dev/vhost-vdpa-N)",
		  "DRIVER" },
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "attach",
		.synopsis = "NAME [--driver virtio_vdpa|vhost_vdpa]",
		.description =
			"Add the vdpa device NAME, bind it to the driver and print the\n"
			"device node once it appears (within 10 s).",
		.options = options,
		.min_args = 1,
		.max_args = 1,
	};
	char err[VCTL_ERR_MAX], node[128], drv[64];
	const char *args[1], *dir;
	poptContext ctx = NULL;
	pid_t pid;
	int rc;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	if (driver && vctl_check_driver(driver, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		rc = VCTL_EXIT_USAGE;
		goto out;
	}
	dir = vctl_state_dir(state_opt);
	rc = check_device(args[0], dir);
	if (rc)
		goto out;
	/* Without a daemon the kernel would wait for replies that never come. */
	if (vctl_daemon_state(dir, args[0], &pid) != VCTL_DAEMON_ALIVE) {
		vctl_error("device %s has no running daemon: start a new one "
			   "(vdusectl recover %s) or destroy it", args[0], args[0]);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	if (vctl_attached(args[0], drv, sizeof(drv), node, sizeof(node)) == 1) {
		vctl_error("device %s is already attached%s%s (vdusectl detach %s)",
			   args[0], node[0] ? " as " : "", node, args[0]);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	if (vctl_attach(args[0], driver ? driver : "virtio_vdpa", node,
			sizeof(node), err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	printf("%s\n", node);
	rc = VCTL_EXIT_OK;
out:
	free((void *)driver);
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}

int vctl_cmd_detach(int argc, const char **argv)
{
	const char *state_opt = NULL;
	struct poptOption options[] = {
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "detach",
		.synopsis = "NAME",
		.description =
			"Delete the vdpa device NAME: the block device node goes away,\n"
			"the VDUSE device and its daemon stay.",
		.options = options,
		.min_args = 1,
		.max_args = 1,
	};
	char err[VCTL_ERR_MAX];
	const char *args[1];
	poptContext ctx = NULL;
	int rc;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	rc = check_device(args[0], vctl_state_dir(state_opt));
	if (rc)
		goto out;
	if (vctl_attached(args[0], NULL, 0, NULL, 0) == 0) {
		vctl_error("device %s is not attached", args[0]);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	rc = vctl_detach(args[0], err, sizeof(err)) < 0 ? VCTL_EXIT_FAIL :
							   VCTL_EXIT_OK;
	if (rc)
		vctl_error("%s", err);
out:
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}
