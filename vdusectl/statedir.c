/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state directory (default /run/vduse): per device NAME.pid (daemon
 * pid, locked by the daemon), NAME.sock (control socket), NAME.json (saved
 * config) and NAME.log (daemon log).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdusectl.h"

#define SYS_CLASS_VDUSE "/sys/class/vduse"
#define READ_FILE_MAX (1u << 20)

static const char *const suffix[] = {
	[VCTL_F_PID] = "pid",
	[VCTL_F_SOCK] = "sock",
	[VCTL_F_JSON] = "json",
	[VCTL_F_LOG] = "log",
};

int vctl_path(char *buf, size_t len, const char *dir, const char *name,
	      enum vctl_file f)
{
	int n = snprintf(buf, len, "%s/%s.%s", dir, name, suffix[f]);

	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

int vctl_state_group(gid_t *gid, char *err, size_t errlen)
{
	const char *name = getenv(VCTL_GROUP_ENV);
	struct group *gr;
	unsigned long long v;

	*gid = (gid_t)-1;
	if (!name || !*name)
		return 0;
	gr = getgrnam(name);
	if (gr) {
		*gid = gr->gr_gid;
		return 0;
	}
	if (vctl_parse_ull(name, &v) == 0 && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	snprintf(err, errlen,
		 "%s=%s: no such group: create it (groupadd %s) or unset %s",
		 VCTL_GROUP_ENV, name, name, VCTL_GROUP_ENV);
	return -EINVAL;
}

int vctl_share_fd(int fd)
{
	gid_t gid;
	char err[8];

	if (vctl_state_group(&gid, err, sizeof(err)) < 0 || gid == (gid_t)-1)
		return 0;
	if (fchown(fd, (uid_t)-1, gid) < 0 || fchmod(fd, 0640) < 0)
		return -errno;
	return 0;
}

int vctl_state_dir_check(const char *dir, bool write)
{
	if (access(dir, write ? (W_OK | X_OK) : (R_OK | X_OK)) == 0 ||
	    errno != EACCES)
		return 0;
	if (write) {
		struct stat st;

		if (stat(dir, &st) == 0 && st.st_uid != 0)
			vctl_error("the state directory %s belongs to uid %u: run vdusectl as that user or root",
				   dir, (unsigned)st.st_uid);
		else
			vctl_error("the state directory %s is root's: run vdusectl as root",
				   dir);
	}
	else
		vctl_error("cannot read the state directory %s: run vdusectl as root, or as a member of the group the devices were created for (%s=GROUP)",
			   dir, VCTL_GROUP_ENV);
	return VCTL_EXIT_FAIL;
}

int vctl_state_dir_prepare(const char *dir, char *err, size_t errlen)
{
	gid_t gid;
	struct stat st;
	int fd, e;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		e = errno;
		snprintf(err, errlen, "cannot create state directory %s: %s%s",
			 dir, strerror(e),
			 e == ENOENT ? " (create its parent first)" :
			 e == EACCES ? " (must run as root)" : "");
		return -e;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		if (e == ELOOP || e == ENOTDIR)
			snprintf(err, errlen,
				 "state directory %s is a symlink or not a directory: refusing to use it",
				 dir);
		else
			snprintf(err, errlen, "cannot open state directory %s: %s",
				 dir, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) < 0) {
		e = errno;
		close(fd);
		snprintf(err, errlen, "cannot stat state directory %s: %s", dir,
			 strerror(e));
		return -e;
	}
	if (st.st_uid != geteuid()) {
		close(fd);
		snprintf(err, errlen,
			 "state directory %s is owned by uid %u, not uid %u: refusing to use it",
			 dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 022) {
		close(fd);
		snprintf(err, errlen,
			 "state directory %s is writable by group or others: run 'chmod 0700 %s'",
			 dir, dir);
		return -EPERM;
	}
	e = vctl_state_group(&gid, err, errlen);
	/* A group may look (list, show, stats), never write.  Through the
	 * fd checked above, never the path (it could be swapped). */
	if (e == 0 && gid != (gid_t)-1 &&
	    (fchown(fd, (uid_t)-1, gid) < 0 || fchmod(fd, 0750) < 0)) {
		e = -errno;
		snprintf(err, errlen, "state directory %s: cannot give it to group %u: %s",
			 dir, (unsigned)gid, strerror(-e));
	}
	close(fd);
	if (e < 0)
		return e;
	return 0;
}

int vctl_write_file(const char *path, const char *data, size_t len)
{
	char tmp[4096];
	int fd, e = 0;
	size_t off = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return -errno;
	e = -vctl_share_fd(fd);
	while (!e && off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			break;
		}
		off += (size_t)n;
	}
	if (close(fd) < 0 && !e)
		e = errno;
	if (!e && rename(tmp, path) < 0)
		e = errno;
	if (e) {
		unlink(tmp);
		return -e;
	}
	return 0;
}

static int read_fd(int fd, char **out)
{
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *nb;

			if (cap >= READ_FILE_MAX) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

int vctl_read_file(const char *path, char **out)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = read_fd(fd, out);
	close(fd);
	return rc;
}

enum vctl_daemon_state vctl_daemon_state(const char *dir, const char *name,
					 pid_t *pidp)
{
	char path[4096], *text = NULL;
	unsigned long long v;
	bool locked;
	int fd;
	pid_t pid = 0;

	*pidp = 0;
	if (vctl_path(path, sizeof(path), dir, name, VCTL_F_PID) < 0)
		return VCTL_DAEMON_NONE;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return VCTL_DAEMON_NONE;
	/* The daemon holds an exclusive lock on its pid file while it runs. */
	locked = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	if (read_fd(fd, &text) == 0) {
		char *nl = strchr(text, '\n');
		if (nl)
			*nl = '\0';
		if (vctl_parse_ull(text, &v) == 0 && v > 0 && v < (1ull << 31))
			pid = (pid_t)v;
		free(text);
	}
	close(fd);
	if (!pid)
		return locked ? VCTL_DAEMON_ALIVE : VCTL_DAEMON_DEAD; /* starting */
	*pidp = pid;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return VCTL_DAEMON_DEAD;
	/* A live pid without the lock is a recycled pid. */
	return locked ? VCTL_DAEMON_ALIVE : VCTL_DAEMON_DEAD;
}

void vctl_remove_state(const char *dir, const char *name, bool keep_json)
{
	char path[4096];

	if (vctl_path(path, sizeof(path), dir, name, VCTL_F_SOCK) == 0)
		unlink(path);
	if (!keep_json &&
	    vctl_path(path, sizeof(path), dir, name, VCTL_F_JSON) == 0)
		unlink(path);
	/* Inflight logs go with the saved config: both serve recovery. */
	for (unsigned i = 0; !keep_json && i < VDU_QUEUES_MAX; i++) {
		int n = snprintf(path, sizeof(path), "%s/%s.q%u.inflight", dir,
				 name, i);

		if (n > 0 && (size_t)n < sizeof(path))
			unlink(path); /* missing ones are fine */
	}
	/* The pid file last: it is what marks the device as ours. */
	if (vctl_path(path, sizeof(path), dir, name, VCTL_F_PID) == 0)
		unlink(path);
}

bool vctl_kernel_dev_exists(const char *name)
{
	char path[512];
	struct stat st;
	int n = snprintf(path, sizeof(path), SYS_CLASS_VDUSE "/%s", name);

	if (n < 0 || (size_t)n >= sizeof(path) || !strcmp(name, "control"))
		return false;
	return lstat(path, &st) == 0;
}

bool vctl_device_exists(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;

	for (int f = VCTL_F_PID; f <= VCTL_F_JSON; f++)
		if (vctl_path(path, sizeof(path), dir, name,
			      (enum vctl_file)f) == 0 &&
		    lstat(path, &st) == 0)
			return true;
	return vctl_kernel_dev_exists(name);
}

static int add_name(char ***names, int *n, int *cap, const char *s, size_t len)
{
	char *copy;

	if (*n == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		char **nn = realloc(*names, (size_t)ncap * sizeof(*nn));
		if (!nn)
			return -ENOMEM;
		*names = nn;
		*cap = ncap;
	}
	copy = strndup(s, len);
	if (!copy)
		return -ENOMEM;
	(*names)[(*n)++] = copy;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan_dir(const char *dir, bool sysfs, char ***names, int *n,
		    int *cap)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char err[256];
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		const char *s = de->d_name;
		size_t len = strlen(s);
		char tmp[VDU_NAME_MAX + 1];

		if (sysfs) {
			if (!strcmp(s, "control") || s[0] == '.')
				continue;
		} else {
			const char *dot = strrchr(s, '.');
			if (!dot || (strcmp(dot, ".pid") && strcmp(dot, ".sock") &&
				     strcmp(dot, ".json")))
				continue;
			len = (size_t)(dot - s);
		}
		if (len == 0 || len > VDU_NAME_MAX)
			continue;
		memcpy(tmp, s, len);
		tmp[len] = '\0';
		if (vctl_check_name(tmp, NULL, err, sizeof(err)) < 0)
			continue;
		rc = add_name(names, n, cap, tmp, len);
		if (rc < 0)
			break;
	}
	closedir(d);
	return rc;
}

int vctl_list_names(const char *dir, char ***out)
{
	char **names = NULL;
	int n = 0, cap = 0, rc, w;

	rc = scan_dir(dir, false, &names, &n, &cap);
	if (rc == 0)
		rc = scan_dir(SYS_CLASS_VDUSE, true, &names, &n, &cap);
	if (rc < 0) {
		vctl_free_names(names, n);
		return rc;
	}
	if (n)
		qsort(names, (size_t)n, sizeof(*names), cmp_str);
	for (int i = w = 0; i < n; i++) {
		if (w && !strcmp(names[w - 1], names[i])) {
			free(names[i]);
			continue;
		}
		names[w++] = names[i];
	}
	*out = names;
	return w;
}

void vctl_free_names(char **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

struct json_object *vctl_load_config(const char *dir, const char *name)
{
	char path[4096], *text = NULL;
	struct json_object *v;

	if (vctl_path(path, sizeof(path), dir, name, VCTL_F_JSON) < 0 ||
	    vctl_read_file(path, &text) < 0)
		return NULL;
	v = json_parse(text);
	if (!v || !json_object_is_type(v, json_type_object)) {
		/* Say so: silently showing "-" for everything hides it. */
		fprintf(stderr, "vdusectl: warning: %s is corrupt (%s): its settings are unknown; 'vdusectl destroy %s' removes it\n",
			path, !text[0] ? "empty" : !v ? "not JSON" : "not a JSON object",
			name);
		json_free(v);
		v = NULL;
	}
	free(text);
	return v;
}
