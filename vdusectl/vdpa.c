/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Attaching devices to the vdpa bus (shared by create, attach, destroy). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include "vdusectl.h"

int vctl_attach(const char *name, const char *driver, char *node,
		size_t nodelen, char *err, size_t errlen)
{
	int rc;

	rc = vctl_vdpa_preflight(driver, err, errlen);
	if (rc < 0)
		return rc;
	rc = vdu_vdpa_dev_add(name, "vduse");
	if (rc < 0) {
		vctl_msg_vdpa(err, errlen, "attach", name, rc);
		return rc;
	}
	rc = vdu_vdpa_bind(name, driver, VCTL_BIND_TIMEOUT_MS, node, nodelen);
	if (rc < 0) {
		char what[64];

		snprintf(what, sizeof(what), "bind to %s", driver);
		vctl_msg_vdpa(err, errlen, what, name, rc);
		vdu_vdpa_dev_del(name);
		return rc;
	}
	return 0;
}

int vctl_detach(const char *name, char *err, size_t errlen)
{
	int rc = vdu_vdpa_dev_del(name);

	if (rc < 0)
		vctl_msg_vdpa(err, errlen, "detach", name, rc);
	return rc;
}

int vctl_detach_unused(const char *name, char *err, size_t errlen)
{
	char drv[64], node[128];
	int fd;

	if (vctl_attached(name, drv, sizeof(drv), node, sizeof(node)) <= 0)
		return 0;
	if (node[0]) {
		/* O_EXCL on a disk fails while it is mounted or held; a vhost
		 * node admits one opener, so any user makes it fail. */
		fd = open(node, O_RDONLY | O_CLOEXEC |
			  (strncmp(node, "/dev/vd", 7) == 0 ? O_EXCL : 0));
		if (fd < 0 && errno == EBUSY) {
			snprintf(err, errlen, "%s is attached as %s, which is in "
				 "use (mounted or open): release it, or vdusectl "
				 "detach %s", name, node, name);
			return -EBUSY;
		}
		if (fd >= 0)
			close(fd);
	}
	return vctl_detach(name, err, errlen);
}

int vctl_attached(const char *name, char *driver, size_t drvlen, char *node,
		  size_t nodelen)
{
	char drv[64] = "", nd[128] = "", path[512];
	struct vdu_vdpa_dev d;
	struct stat st;
	int rc, n;

	if (drvlen)
		driver[0] = '\0';
	if (nodelen)
		node[0] = '\0';
	if (stat("/sys/bus/vdpa", &st) < 0)
		return 0;
	rc = vdu_vdpa_dev_get(name, &d);
	if (rc == -ENODEV || rc == -ENOENT)
		return 0;
	if (rc < 0) {
		/* Netlink unusable (e.g. not root): sysfs still tells. */
		n = snprintf(path, sizeof(path), "/sys/bus/vdpa/devices/%s", name);
		if (n < 0 || (size_t)n >= sizeof(path))
			return rc;
		if (stat(path, &st) < 0)
			return errno == ENOENT ? 0 : rc;
	}
	if (vdu_vdpa_status(name, drv, sizeof(drv), nd, sizeof(nd)) < 0)
		drv[0] = nd[0] = '\0';
	if (drvlen)
		snprintf(driver, drvlen, "%s", drv);
	if (nodelen)
		snprintf(node, nodelen, "%s", nd);
	return 1;
}
