/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdpa bus driver binding through sysfs, and discovery of the resulting
 * device node:
 *
 *   /sys/bus/vdpa/devices/NAME                    the vdpa device
 *   /sys/bus/vdpa/devices/NAME/driver             -> .../drivers/DRV
 *   /sys/bus/vdpa/devices/NAME/driver_override
 *   /sys/bus/vdpa/drivers/DRV/{bind,unbind}
 *   virtio_vdpa: NAME/virtioN/block/vdX            -> /dev/vdX
 *   vhost_vdpa:  NAME/vhost-vdpa-N                 -> /dev/vhost-vdpa-N
 *                (or NAME/vhost-vdpa/vhost-vdpa-N when the char device
 *                 has a class and sits in a class glue directory)
 *
 * Note that binding and unbinding run the driver's probe/remove inside the
 * write() to sysfs, and for a VDUSE device those talk to the userspace
 * daemon (SET_STATUS, ...): the device's message loop must be served by
 * another thread while these functions run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef VDPA_BUS /* overridable for tests */
#define VDPA_BUS "/sys/bus/vdpa"
#endif
#ifndef VDPA_DEV_DIR
#define VDPA_DEV_DIR "/dev"
#endif
#define VDPA_POLL_NS (15 * 1000 * 1000L)
#define VDPA_PATH_MAX 512

static int fmt_path(char *buf, size_t size, const char *fmt, ...)
	VDU_PRINTF(3, 4);

static int fmt_path(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

static bool driver_known(const char *driver)
{
	return driver && (!strcmp(driver, "virtio_vdpa") ||
			  !strcmp(driver, "vhost_vdpa"));
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Read a small sysfs attribute; strips the trailing newline. */
static int sysfs_read(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd, r = 0;

	if (size < 2)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do {
		n = read(fd, buf, size - 1);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		r = -errno;
		buf[0] = '\0';
	} else {
		buf[n] = '\0';
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
			buf[--n] = '\0';
	}
	close(fd);
	return r;
}

static int copy_out(char *dst, size_t size, const char *src)
{
	size_t len = strlen(src);

	if (!dst)
		return 0;
	if (len >= size)
		return -ENAMETOOLONG;
	memcpy(dst, src, len + 1);
	return 0;
}

/* Current driver of the device in devdir ("" when unbound). */
static int current_driver(const char *devdir, char *drv, size_t size)
{
	char path[VDPA_PATH_MAX], target[PATH_MAX];
	const char *base;
	ssize_t n;
	int r;

	r = fmt_path(path, sizeof(path), "%s/driver", devdir);
	if (r < 0)
		return r;
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		if (errno == ENOENT) {
			drv[0] = '\0';
			return 0;
		}
		return -errno;
	}
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	return copy_out(drv, size, base);
}

/* "prefix" followed by one or more decimal digits and nothing else. */
static bool name_is(const char *name, const char *prefix)
{
	size_t plen = strlen(prefix);
	const char *p;

	if (strncmp(name, prefix, plen) != 0 || name[plen] == '\0')
		return false;
	for (p = name + plen; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

static DIR *open_dir(const char *path)
{
	DIR *d;
	int fd;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (!d) {
		int e = errno;

		close(fd);
		errno = e;
	}
	return d;
}

/*
 * Check that /dev/NODE exists with the given type and, when sysdir/dev is
 * readable, the same device number.  1: ready; 0: not yet.
 */
static int node_ready(const char *sysdir, const char *node, mode_t type,
		      char *out, size_t outlen)
{
	char path[VDPA_PATH_MAX], devpath[VDPA_PATH_MAX], num[32];
	unsigned maj, min;
	struct stat st;
	int r;

	r = fmt_path(devpath, sizeof(devpath), VDPA_DEV_DIR "/%s", node);
	if (r < 0)
		return r;
	if (stat(devpath, &st) < 0 || (st.st_mode & S_IFMT) != type)
		return 0;
	r = fmt_path(path, sizeof(path), "%s/dev", sysdir);
	if (r < 0)
		return r;
	if (sysfs_read(path, num, sizeof(num)) == 0 &&
	    sscanf(num, "%u:%u", &maj, &min) == 2 &&
	    st.st_rdev != makedev(maj, min))
		return 0; /* stale node with the same name */
	r = copy_out(out, outlen, devpath);
	return r < 0 ? r : 1;
}

/* virtio_vdpa: NAME/virtioN/block/vdX.  1: found; 0: not yet. */
static int find_virtio_blk(const char *devdir, char *out, size_t outlen)
{
	char path[VDPA_PATH_MAX], disk[VDPA_PATH_MAX];
	struct dirent *de, *be;
	DIR *d, *bd;
	int r = 0;

	d = open_dir(devdir);
	if (!d)
		return errno == ENOENT ? -ENODEV : -errno;
	while (r == 0 && (de = readdir(d))) {
		if (!name_is(de->d_name, "virtio"))
			continue;
		r = fmt_path(path, sizeof(path), "%s/%s/block", devdir,
			     de->d_name);
		if (r < 0)
			break;
		bd = open_dir(path);
		if (!bd)
			continue; /* virtio_blk not probed yet */
		while (r == 0 && (be = readdir(bd))) {
			if (be->d_name[0] == '.')
				continue;
			r = fmt_path(disk, sizeof(disk), "%s/%s", path,
				     be->d_name);
			if (r < 0)
				break;
			r = node_ready(disk, be->d_name, S_IFBLK, out, outlen);
		}
		closedir(bd);
	}
	closedir(d);
	return r;
}

/* Look for vhost-vdpa-N entries directly in dir.  1: found; 0: not yet. */
static int scan_vhost(const char *dir, char *out, size_t outlen)
{
	char path[VDPA_PATH_MAX];
	struct dirent *de;
	DIR *d;
	int r = 0;

	d = open_dir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while (r == 0 && (de = readdir(d))) {
		if (!name_is(de->d_name, "vhost-vdpa-"))
			continue;
		r = fmt_path(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (r < 0)
			break;
		r = node_ready(path, de->d_name, S_IFCHR, out, outlen);
	}
	closedir(d);
	return r;
}

static int find_vhost_vdpa(const char *devdir, char *out, size_t outlen)
{
	char glue[VDPA_PATH_MAX];
	int r;

	if (!is_dir(devdir))
		return -ENODEV;
	r = scan_vhost(devdir, out, outlen);
	if (r != 0)
		return r;
	r = fmt_path(glue, sizeof(glue), "%s/vhost-vdpa", devdir);
	if (r < 0)
		return r;
	return scan_vhost(glue, out, outlen);
}

static int find_node(const char *devdir, const char *driver, char *out,
		     size_t outlen)
{
	if (!strcmp(driver, "virtio_vdpa"))
		return find_virtio_blk(devdir, out, outlen);
	if (!strcmp(driver, "vhost_vdpa"))
		return find_vhost_vdpa(devdir, out, outlen);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vdu_vdpa_bind(const char *name, const char *driver, int timeout_ms,
		  char *node, size_t nodelen)
{
	char devdir[VDPA_PATH_MAX], drvdir[VDPA_PATH_MAX];
	char path[VDPA_PATH_MAX], cur[256];
	int64_t deadline;
	int r;

	r = vdu_name_valid(name);
	if (r < 0)
		return r;
	if (!driver_known(driver) || timeout_ms < 0 || !node || !nodelen)
		return -EINVAL;
	node[0] = '\0';

	r = fmt_path(devdir, sizeof(devdir), VDPA_BUS "/devices/%s", name);
	if (r < 0)
		return r;
	if (!is_dir(devdir))
		return -ENODEV;
	r = fmt_path(drvdir, sizeof(drvdir), VDPA_BUS "/drivers/%s", driver);
	if (r < 0)
		return r;
	if (!is_dir(drvdir))
		return -ENOENT; /* driver module not loaded */

	r = current_driver(devdir, cur, sizeof(cur));
	if (r < 0)
		return r;
	if (strcmp(cur, driver) != 0) {
		vdu_dbg("vdpa %s: rebinding from '%s' to %s", name, cur,
			driver);
		/* Only the wanted driver may probe the device from now on. */
		r = fmt_path(path, sizeof(path), "%s/driver_override", devdir);
		if (r < 0)
			return r;
		r = vdu_sysfs_write(path, driver);
		/* -ENOENT: kernel without vdpa driver_override (< 5.19);
		 * an explicit bind still works there. */
		if (r < 0 && r != -ENOENT) {
			vdu_dbg("vdpa %s: driver_override: %s", name,
				strerror(-r));
			return r;
		}
		if (cur[0]) {
			r = fmt_path(path, sizeof(path),
				     VDPA_BUS "/drivers/%s/unbind", cur);
			if (r < 0)
				return r;
			r = vdu_sysfs_write(path, name);
			/* -ENODEV: it went unbound meanwhile. */
			if (r < 0 && r != -ENODEV) {
				vdu_dbg("vdpa %s: unbind from %s: %s", name,
					cur, strerror(-r));
				return r;
			}
		}
		r = fmt_path(path, sizeof(path), "%s/bind", drvdir);
		if (r < 0)
			return r;
		r = vdu_sysfs_write(path, name);
		if (r < 0) {
			int r2;

			/* Maybe probed meanwhile (-EBUSY/-ENODEV); else ask
			 * the bus to probe, which honours driver_override. */
			r2 = current_driver(devdir, cur, sizeof(cur));
			if (r2 == 0 && strcmp(cur, driver) != 0) {
				r2 = vdu_sysfs_write(VDPA_BUS "/drivers_probe",
						 name);
				if (r2 == 0)
					r2 = current_driver(devdir, cur,
							    sizeof(cur));
			}
			if (r2 < 0 || strcmp(cur, driver) != 0) {
				vdu_dbg("vdpa %s: bind to %s: %s", name,
					driver, strerror(-r));
				return r;
			}
		}
		r = current_driver(devdir, cur, sizeof(cur));
		if (r < 0)
			return r;
		if (strcmp(cur, driver) != 0)
			return -EIO; /* probe refused the device */
	}

	deadline = now_ms() + timeout_ms;
	for (;;) {
		struct timespec ts = { 0, VDPA_POLL_NS };

		r = find_node(devdir, driver, node, nodelen);
		if (r < 0)
			return r;
		if (r > 0)
			return 0;
		if (!is_dir(devdir))
			return -ENODEV;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		nanosleep(&ts, NULL);
	}
}

int vdu_vdpa_status(const char *name, char *driver, size_t drvlen,
		    char *node, size_t nodelen)
{
	char devdir[VDPA_PATH_MAX], cur[256];
	int r;

	r = vdu_name_valid(name);
	if (r < 0)
		return r;
	if ((driver && !drvlen) || (node && !nodelen))
		return -EINVAL;
	if (driver)
		driver[0] = '\0';
	if (node)
		node[0] = '\0';

	r = fmt_path(devdir, sizeof(devdir), VDPA_BUS "/devices/%s", name);
	if (r < 0)
		return r;
	if (!is_dir(devdir))
		return -ENODEV;
	r = current_driver(devdir, cur, sizeof(cur));
	if (r < 0)
		return r;
	r = copy_out(driver, drvlen, cur);
	if (r < 0)
		return r;
	if (!node || !cur[0])
		return 0;
	r = find_node(devdir, cur, node, nodelen);
	if (r < 0) {
		node[0] = '\0';
		return r;
	}
	if (r == 0)
		node[0] = '\0';
	return 0;
}
