/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Client side of the control socket: connect to DIR/NAME.sock, send one
 * line, read one line of JSON until the daemon closes, all within 5 s.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vdusectl.h"

#define REPLY_MAX (1u << 20)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int64_t left = deadline - now_ms();
		int rc;

		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		return 0;
	}
}

static void not_running(const char *dir, const char *name, char *err,
			size_t errlen)
{
	pid_t pid;

	switch (vctl_daemon_state(dir, name, &pid)) {
	case VCTL_DAEMON_ALIVE:
		snprintf(err, errlen,
			 "daemon for %s (pid %d) is not answering on its control socket",
			 name, (int)pid);
		break;
	default:
		snprintf(err, errlen, "device %s: daemon not running", name);
		break;
	}
}

int vctl_ctl_request(const char *dir, const char *name, const char *req,
		     char **reply, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t deadline = now_ms() + VCTL_CTL_TIMEOUT_MS;
	size_t len = 0, cap = 512, reqlen = strlen(req), off = 0;
	char *buf = NULL;
	int fd, rc = 0;

	*reply = NULL;
	if (vctl_path(sa.sun_path, sizeof(sa.sun_path), dir, name,
		      VCTL_F_SOCK) < 0) {
		snprintf(err, errlen, "control socket path for %s is too long",
			 name);
		return -ENAMETOOLONG;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-rc));
		return rc;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		if (rc == -EAGAIN || rc == -EINPROGRESS) {
			/* Backlog full: wait for the daemon to accept. */
			rc = wait_fd(fd, POLLOUT, deadline);
			if (rc == 0) {
				int soerr = 0;
				socklen_t sl = sizeof(soerr);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
				rc = -soerr;
			}
		}
		if (rc == -ENOENT || rc == -ECONNREFUSED) {
			not_running(dir, name, err, errlen);
			goto out;
		}
		if (rc == -EACCES || rc == -EPERM) {
			snprintf(err, errlen, "%s: permission denied: must run as root",
				 sa.sun_path);
			goto out;
		}
		if (rc == -ETIMEDOUT) {
			snprintf(err, errlen, "daemon for %s did not answer within %d s",
				 name, VCTL_CTL_TIMEOUT_MS / 1000);
			goto out;
		}
		if (rc < 0) {
			snprintf(err, errlen, "connect %s: %s", sa.sun_path,
				 strerror(-rc));
			goto out;
		}
	}
	while (off < reqlen + 1) {
		const char *src = off < reqlen ? req + off : "\n";
		size_t n = off < reqlen ? reqlen - off : 1;
		ssize_t w = send(fd, src, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			rc = wait_fd(fd, POLLOUT, deadline);
			if (rc < 0)
				goto timeout;
			continue;
		}
		if (w < 0) {
			rc = -errno;
			if (rc == -EPIPE || rc == -ECONNRESET)
				not_running(dir, name, err, errlen);
			else
				snprintf(err, errlen, "send to daemon of %s: %s",
					 name, strerror(-rc));
			goto out;
		}
		off += (size_t)w;
	}
	buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *nb;
			if (cap >= REPLY_MAX) {
				rc = -EFBIG;
				snprintf(err, errlen, "reply from daemon of %s too long",
					 name);
				goto out;
			}
			cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				rc = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			buf = nb;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			rc = wait_fd(fd, POLLIN, deadline);
			if (rc < 0)
				goto timeout;
			continue;
		}
		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "read from daemon of %s: %s", name,
				 strerror(-rc));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (!len) {
		rc = -EPROTO;
		snprintf(err, errlen, "daemon of %s closed the connection without a reply",
			 name);
		goto out;
	}
	*reply = buf;
	buf = NULL;
	rc = 0;
	goto out;
timeout:
	if (rc == -ETIMEDOUT)
		snprintf(err, errlen, "daemon for %s did not answer within %d s",
			 name, VCTL_CTL_TIMEOUT_MS / 1000);
	else
		snprintf(err, errlen, "waiting for daemon of %s: %s", name,
			 strerror(-rc));
out:
	free(buf);
	close(fd);
	return rc;
}

int vctl_ctl_json(const char *dir, const char *name, const char *req,
		  struct json_object **out, char *err, size_t errlen)
{
	struct json_object *v;
	const char *e;
	char *reply = NULL;
	int rc;

	rc = vctl_ctl_request(dir, name, req, &reply, err, errlen);
	if (rc < 0)
		return rc;
	if (!reply) {
		snprintf(err, errlen, "no reply from the daemon of %s", name);
		return -EPROTO;
	}
	v = json_parse(reply);
	free(reply);
	if (!json_object_is_type(v, json_type_object)) {
		json_free(v);
		snprintf(err, errlen, "daemon of %s sent a malformed reply", name);
		return -EPROTO;
	}
	e = json_get_str(v, "error");
	if (e) {
		snprintf(err, errlen, "daemon of %s: %s", name, e);
		json_free(v);
		return -EPROTO;
	}
	*out = v;
	return 0;
}

int vctl_stop_daemon(const char *dir, const char *name, pid_t pid, char *err,
		     size_t errlen)
{
	int64_t deadline = now_ms() + VCTL_STOP_WAIT_MS;
	struct json_object *v;
	pid_t cur;
	int rc;

	rc = vctl_ctl_json(dir, name, "stop", &v, err, errlen);
	if (rc == 0) {
		json_free(v);
	} else if (pid > 0) {
		/* The socket is unusable; fall back to the signal. */
		if (kill(pid, SIGTERM) < 0 && errno != ESRCH) {
			rc = -errno;
			snprintf(err, errlen, "cannot signal daemon of %s (pid %d): %s",
				 name, (int)pid, strerror(errno));
			return rc;
		}
	} else {
		return rc;
	}
	/* Wait until the daemon released its pid file lock (or exited). */
	for (;;) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 50 * 1000000 };

		if (pid > 0)
			waitpid(pid, NULL, WNOHANG); /* reap if it is our child */
		if (vctl_daemon_state(dir, name, &cur) != VCTL_DAEMON_ALIVE &&
		    (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH)))
			return 0;
		if (now_ms() >= deadline)
			break;
		nanosleep(&ts, NULL);
	}
	snprintf(err, errlen,
		 "daemon of %s (pid %d) did not exit within %d s: see its log",
		 name, (int)pid, VCTL_STOP_WAIT_MS / 1000);
	return -ETIMEDOUT;
}
