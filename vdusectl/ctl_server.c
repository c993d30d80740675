/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Daemon side of the control socket DIR/NAME.sock.  Protocol: the client
 * sends one line ("info", "stats", "resize BYTES [shrink]" or "stop", at
 * most 256 bytes), the daemon answers one line of JSON and closes the
 * connection.  Errors are answered as {"error":"..."}.  Root (and the
 * daemon's own user) may do everything; members of $VDUSE_GROUP only info
 * and stats; others are refused.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "vdusectl.h"

struct conn {
	struct vctl_ctl_server *srv;
	struct bufferevent *bev;
	bool privileged;         /* root or our user: may stop, resize */
	bool replied;
	bool stop_after;
	struct conn *prev, *next;
};

struct vctl_ctl_server {
	struct event_base *base;
	struct evconnlistener *lev;
	const struct vctl_ctl_ops *ops;
	void *opaque;
	struct conn *conns;
	gid_t group;             /* $VDUSE_GROUP, (gid_t)-1: none */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void conn_free(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	bufferevent_free(c->bev);
	free(c);
}

static void reply(struct conn *c, const char *json)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	c->replied = true;
	bufferevent_disable(c->bev, EV_READ);
	evbuffer_add(out, json, strlen(json));
	evbuffer_add(out, "\n", 1);
}

static void reply_error(struct conn *c, const char *msg, const char *arg)
{
	struct json_object *o = json_object_new_object();
	char text[160];

	if (arg)
		snprintf(text, sizeof(text), "%s '%.64s': use info, stats, resize or stop",
			 msg, arg);
	else
		snprintf(text, sizeof(text), "%s", msg);
	if (o)
		jo_str(o, "error", text);
	reply(c, o ? jv_text(o) : "{\"error\":\"out of memory\"}");
	json_object_put(o);
}

static void handle(struct conn *c, const char *line)
{
	struct vctl_ctl_server *s = c->srv;
	struct json_object *o;

	if (!strcmp(line, "info")) {
		o = s->ops->info(s->opaque);
	} else if (!strcmp(line, "stats")) {
		o = s->ops->stats(s->opaque);
	} else if (!strcmp(line, "stop")) {
		if (!c->privileged) {
			reply_error(c, "only root may stop this device", NULL);
			return;
		}
		o = json_object_new_object();
		if (o)
			jo_bool(o, "ok", true);
		c->stop_after = true;
	} else if (!strncmp(line, "resize ", 7)) {
		if (!c->privileged) {
			reply_error(c, "only root may resize this device", NULL);
			return;
		}
		o = s->ops->resize(s->opaque, line + 7);
	} else {
		reply_error(c, "unknown command", line);
		return;
	}
	if (!o)
		reply_error(c, "out of memory", NULL);
	else
		reply(c, jv_text(o));
	json_object_put(o);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = 0;
	char *line;

	if (c->replied) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
	if (!line) {
		if (evbuffer_get_length(in) > VCTL_CTL_LINE_MAX)
			reply_error(c, "request line too long (at most 256 bytes)",
				    NULL);
		return;
	}
	if (n > VCTL_CTL_LINE_MAX || strlen(line) != n)
		reply_error(c, n > VCTL_CTL_LINE_MAX ?
			    "request line too long (at most 256 bytes)" :
			    "request contains a NUL byte", NULL);
	else
		handle(c, line);
	free(line);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct vctl_ctl_server *s = c->srv;
	bool stop;

	if (!c->replied || evbuffer_get_length(bufferevent_get_output(bev)))
		return;
	stop = c->stop_after;
	conn_free(c);
	if (stop)
		s->ops->stop(s->opaque);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	struct vctl_ctl_server *s = c->srv;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	bool stop;

	/* A last line without its newline, then a shutdown(SHUT_WR). */
	if ((what & BEV_EVENT_EOF) && !c->replied && len) {
		char line[VCTL_CTL_LINE_MAX + 1];

		/* (The input buffer's end is frozen: no appending a "\n".) */
		if (len > VCTL_CTL_LINE_MAX) {
			reply_error(c, "request line too long (at most 256 bytes)",
				    NULL);
		} else if (evbuffer_remove(in, line, len) == (int)len) {
			line[len] = '\0';
			if (len && line[len - 1] == '\r')
				line[--len] = '\0';
			if (strlen(line) != len)
				reply_error(c, "request contains a NUL byte", NULL);
			else
				handle(c, line);
		}
		if (c->replied &&
		    evbuffer_get_length(bufferevent_get_output(bev)))
			return; /* write_cb finishes the job */
	}
	stop = c->stop_after && c->replied;
	/* EOF, error or the 5 s timeout. */
	conn_free(c);
	if (stop)
		s->ops->stop(s->opaque);
}

/* The peer's primary or supplementary groups include gid. */
static bool peer_in_group(int fd, const struct ucred *cred, gid_t gid)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);

	if (gid == (gid_t)-1)
		return false;
	if (cred->gid == gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == gid)
			return true;
	return false;
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct vctl_ctl_server *s = arg;
	struct timeval tv = { .tv_sec = VCTL_CTL_TIMEOUT_MS / 1000 };
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct conn *c;

	bool privileged;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		evutil_closesocket(fd);
		return;
	}
	privileged = cred.uid == 0 || cred.uid == geteuid();
	if (!privileged && !peer_in_group(fd, &cred, s->group)) {
		vdu_log(VDU_LOG_WARNING,
			"control socket: refusing a client with uid %u",
			(unsigned)cred.uid);
		evutil_closesocket(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->srv = s;
	c->privileged = privileged;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		evutil_closesocket(fd);
		free(c);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

int vctl_ctl_server_new(struct event_base *base, const char *path,
			const struct vctl_ctl_ops *ops, void *opaque,
			struct vctl_ctl_server **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vctl_ctl_server *s;
	mode_t old;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->base = base;
	s->ops = ops;
	s->opaque = opaque;
	if (vctl_state_group(&s->group, err, errlen) < 0) {
		free(s);
		return -EINVAL;
	}
	snprintf(s->path, sizeof(s->path), "%s", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		free(s);
		return rc;
	}
	unlink(path); /* stale: the caller holds the pid file lock */
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc == 0 && s->group != (gid_t)-1 &&
	    (chown(path, (uid_t)-1, s->group) < 0 || chmod(path, 0660) < 0))
		rc = -1;
	else if (rc == 0 && s->group == (gid_t)-1 && chmod(path, 0600) < 0)
		rc = -1;
	if (rc < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		snprintf(err, errlen, "control socket %s: %s", path,
			 strerror(errno));
		close(fd);
		unlink(path);
		free(s);
		return rc;
	}
	s->lev = evconnlistener_new(base, accept_cb, s,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				    -1, fd);
	if (!s->lev) {
		snprintf(err, errlen, "control socket %s: cannot listen", path);
		close(fd);
		unlink(path);
		free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void vctl_ctl_server_free(struct vctl_ctl_server *s)
{
	if (!s)
		return;
	while (s->conns) {
		struct conn *c = s->conns;

		s->conns = c->next;
		bufferevent_free(c->bev);
		free(c);
	}
	evconnlistener_free(s->lev);
	unlink(s->path);
	free(s);
}
