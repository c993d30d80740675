/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a background daemon does to its process: the pid file (locked for
 * as long as it runs), stdio to /dev/null and the log, and no fd
 * inherited from its caller.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/syscall.h>

#include "vdusectl.h"

#ifndef HAVE_CLOSE_RANGE
/* glibc before 2.34 has the system call (Linux 5.9+) but no wrapper. */
static int close_range(unsigned first, unsigned last, int flags)
{
#ifdef SYS_close_range
	return (int)syscall(SYS_close_range, first, last, flags);
#else
	errno = ENOSYS;
	return -1;
#endif
}
#endif

int vctl_pidfile_lock(const char *path, int *out)
{
	int fd, tries = 0;

	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* A concurrent reader may hold a shared lock for a moment. */
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		struct timespec ts = { .tv_nsec = 10 * 1000000 };
		int e = errno;

		if (e != EWOULDBLOCK || ++tries > 50) {
			close(fd);
			return -e;
		}
		nanosleep(&ts, NULL);
	}
	/* Ours now: a live daemon's file is never touched. */
	vctl_share_fd(fd);
	*out = fd;
	return 0;
}

int vctl_pidfile_write(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

int vctl_reopen_stderr(const char *log_path)
{
	int fd = open(log_path,
		      O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
		      0600);

	if (fd < 0)
		return -errno;
	vctl_share_fd(fd);
	fflush(stderr);
	if (dup2(fd, STDERR_FILENO) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	close(fd);
	return 0;
}

int vctl_redirect_stdio(const char *log_path)
{
	int null_fd, log_fd;

	log_fd = open(log_path,
		      O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
		      0600);
	if (log_fd < 0)
		return -errno;
	vctl_share_fd(log_fd);
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0) {
		close(log_fd);
		return -errno;
	}
	if (dup2(null_fd, STDIN_FILENO) < 0 ||
	    dup2(null_fd, STDOUT_FILENO) < 0 ||
	    dup2(log_fd, STDERR_FILENO) < 0) {
		int e = errno;
		close(null_fd);
		close(log_fd);
		return -e;
	}
	close(null_fd);
	close(log_fd);
	return 0;
}

/* A background daemon must not keep its caller's pipes (e.g. a shell's
 * command substitution) open: close every inherited fd above stderr. */
void vctl_close_inherited_fds(int keep)
{
	const int first = STDERR_FILENO + 1;
	DIR *dir;
	struct dirent *de;
	int r = 0;

	if (keep > first)
		r = close_range(first, (unsigned)keep - 1, 0);
	if (r == 0)
		r = close_range(keep >= first ? (unsigned)keep + 1 : first, ~0U, 0);
	if (r == 0)
		return;
	/* Linux before 5.9: walk /proc/self/fd, closing as we go. */
	dir = opendir("/proc/self/fd");
	if (!dir)
		return;
	while ((de = readdir(dir)) != NULL) {
		unsigned long long v;

		if (vctl_parse_ull(de->d_name, &v) < 0 || v < (unsigned)first ||
		    (int)v == keep || (int)v == dirfd(dir))
			continue;
		close((int)v);
	}
	closedir(dir);
}
