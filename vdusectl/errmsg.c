/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Library and kernel failures turned into messages that say what to do. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdusectl.h"

#define VDUSE_CONTROL "/dev/vduse/control"
#define SYS_BUS_VDPA "/sys/bus/vdpa"

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

void vctl_msg_dev_start(char *buf, size_t len, const char *name, int rc,
			const char *why)
{
	switch (rc) {
	case -ENOENT:
	case -ENODEV:
	case -ENXIO:
		if (!exists(VDUSE_CONTROL)) {
			snprintf(buf, len,
				 VDUSE_CONTROL " not found: load the vduse module (modprobe vduse)");
			return;
		}
		break;
	case -EPERM:
	case -EACCES:
		snprintf(buf, len,
			 "permission denied on " VDUSE_CONTROL ": must run as root");
		return;
	case -EEXIST:
		snprintf(buf, len,
			 "device %s already exists (vdusectl destroy %s)", name,
			 name);
		return;
	case -EINVAL:
		snprintf(buf, len,
			 "the kernel rejected the configuration of device %s (Invalid argument): check --queues, --queue-size, --block-size, --bounce-size and dmesg",
			 name);
		return;
	case -EOPNOTSUPP:
		snprintf(buf, len,
			 "this kernel cannot size the bounce buffer of device %s (no /sys/class/vduse/%s/bounce_size): remove --bounce-size",
			 name, name);
		return;
	case -ELOOP:
		snprintf(buf, len,
			 "cannot create device %s: an inflight log in the state directory is a symbolic link; refusing to follow it (remove it)",
			 name);
		return;
	default:
		break;
	}
	snprintf(buf, len, "cannot create device %s: %s", name,
		 why && *why ? why : strerror(-rc));
}

void vctl_msg_vdpa(char *buf, size_t len, const char *what, const char *name,
		   int rc)
{
	const char *ack = vdu_vdpa_last_error();
	char kernel[300] = "";

	if (ack && *ack)
		snprintf(kernel, sizeof(kernel), " (kernel: %s)", ack);
	if (rc == -EPERM || rc == -EACCES) {
		snprintf(buf, len, "%s %s: permission denied: must run as root%s",
			 what, name, kernel);
	} else if (!exists(SYS_BUS_VDPA) ||
		   rc == -EPROTONOSUPPORT || rc == -EAFNOSUPPORT) {
		snprintf(buf, len,
			 "%s %s: the vdpa netlink interface is missing: load the vdpa module (modprobe vdpa)",
			 what, name);
	} else if (rc == -EEXIST) {
		snprintf(buf, len,
			 "%s %s: device %s is already attached (vdusectl detach %s)%s",
			 what, name, name, name, kernel);
	} else if (rc == -ENODEV && !strcmp(what, "attach")) {
		snprintf(buf, len,
			 "%s %s: vdpa management device 'vduse' not found: load the vduse module (modprobe vduse)%s",
			 what, name, kernel);
	} else if (rc == -ENODEV) {
		snprintf(buf, len, "%s %s: device %s is not attached%s", what,
			 name, name, kernel);
	} else if (rc == -EINVAL && !strcmp(what, "attach")) {
		snprintf(buf, len,
			 "%s %s: the kernel refused: no ready VDUSE device %s (Invalid argument)%s",
			 what, name, name, kernel);
	} else if (rc == -ETIMEDOUT) {
		snprintf(buf, len,
			 "%s %s: no device node appeared within %d s: check dmesg%s",
			 what, name, VCTL_BIND_TIMEOUT_MS / 1000, kernel);
	} else {
		snprintf(buf, len, "%s %s: %s%s", what, name, strerror(-rc),
			 kernel);
	}
}

int vctl_vdpa_preflight(const char *driver, char *err, size_t errlen)
{
	char path[128];

	if (!exists(SYS_BUS_VDPA)) {
		snprintf(err, errlen,
			 "the vdpa bus is missing: load the vdpa module (modprobe vdpa)");
		return -ENOENT;
	}
	if (driver) {
		snprintf(path, sizeof(path), SYS_BUS_VDPA "/drivers/%s", driver);
		if (!exists(path)) {
			snprintf(err, errlen,
				 "vdpa driver %s is not loaded: load the %s module (modprobe %s)",
				 driver, driver, driver);
			return -ENOENT;
		}
	}
	return 0;
}
