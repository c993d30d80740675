/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdu_main(): a whole device program in one call.  The event loop serves
 * the device's messages; attaching and detaching run on a helper thread,
 * because the kernel asks the device questions (and waits for answers)
 * while a driver binds or unbinds.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "internal.h"

#define MAIN_DRAIN_MS_DEFAULT 30000
#define MAIN_BIND_TIMEOUT_MS 10000
#define MAIN_POLL_MS 20
#define MAIN_BUSY_RETRY_MS 1000

enum main_phase {
	PH_SERVING,
	PH_DETACHING,
	PH_DRAINING,
	PH_WAIT_DETACH, /* someone else's driver holds the device */
};

struct main_state {
	struct vdu_main_opts o;
	struct vdu_dev *dev;
	const char *name;
	struct event_base *base;
	struct event *sig[2], *done_ev, *timer;
	int pipe[2];
	pthread_t thread;
	bool thread_running, detach, attached, stop_wanted;
	int thread_rc;
	char thread_err[256];    /* the kernel's reason (netlink extack),
				  * taken on the helper thread: it is per
				  * thread */
	char node[64];
	enum main_phase phase;
	struct timespec drain_start;
	int rc;
	unsigned signals;
};

static void *attach_thread(void *arg)
{
	struct main_state *m = arg;
	int r;

	m->thread_err[0] = '\0';
	if (m->detach) {
		r = vdu_vdpa_dev_del(m->name);
		snprintf(m->thread_err, sizeof(m->thread_err), "%s",
			 vdu_vdpa_last_error());
	} else {
		r = vdu_vdpa_dev_add(m->name, "vduse");
		snprintf(m->thread_err, sizeof(m->thread_err), "%s",
			 vdu_vdpa_last_error());
		if (r == 0) {
			r = vdu_vdpa_bind(m->name, m->o.attach,
					  MAIN_BIND_TIMEOUT_MS, m->node,
					  sizeof(m->node));
			if (r < 0)
				vdu_vdpa_dev_del(m->name);
		}
	}
	m->thread_rc = r;
	if (write(m->pipe[1], "x", 1) < 0)
		abort(); /* our own pipe: the loop would wait forever */
	return NULL;
}

static int start_thread(struct main_state *m, bool detach)
{
	int r;

	m->detach = detach;
	r = pthread_create(&m->thread, NULL, attach_thread, m);
	if (r)
		return -r;
	m->thread_running = true;
	return 0;
}

static void set_timer(struct main_state *m, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 };

	event_add(m->timer, &tv);
}

static void begin_drain(struct main_state *m)
{
	m->phase = PH_DRAINING;
	clock_gettime(CLOCK_MONOTONIC, &m->drain_start);
	vdu_info("%s: stopping (%u requests in flight)", m->name,
		 vdu_dev_inflight(m->dev));
	set_timer(m, 0);
}

static void begin_stop(struct main_state *m)
{
	int r;

	m->stop_wanted = true;
	if (m->thread_running || m->phase != PH_SERVING)
		return; /* picked up when the attach or detach ends */
	if (m->attached) {
		m->phase = PH_DETACHING;
		r = start_thread(m, true);
		if (r < 0) {
			vdu_err("%s: cannot start the detach thread: %s",
				m->name, strerror(-r));
			m->phase = PH_SERVING;
		}
		return;
	}
	begin_drain(m);
}

static void thread_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *m = arg;
	char c;

	if (read(fd, &c, 1) < 0)
		return;
	pthread_join(m->thread, NULL);
	m->thread_running = false;
	if (m->detach) {
		if (m->thread_rc < 0) {
			vdu_err("%s: cannot detach: %s (vdpa dev del %s)",
				m->name, m->thread_err[0] ? m->thread_err :
				strerror(-m->thread_rc), m->name);
			m->phase = PH_SERVING;
			m->stop_wanted = false;
			return;
		}
		m->attached = false;
		m->phase = PH_SERVING;
		begin_drain(m);
		return;
	}
	if (m->thread_rc < 0) {
		vdu_err("%s: cannot attach to %s: %s", m->name, m->o.attach,
			m->thread_err[0] ? m->thread_err :
			strerror(-m->thread_rc));
		m->rc = m->thread_rc;
		begin_stop(m);
		return;
	}
	m->attached = true;
	vdu_info("%s: attached to %s as %s", m->name, m->o.attach, m->node);
	if (m->o.ready)
		m->o.ready(m->o.opaque, m->name, m->node);
	if (m->stop_wanted)
		begin_stop(m);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *m = arg;
	unsigned drain_ms = m->o.drain_ms ? m->o.drain_ms : MAIN_DRAIN_MS_DEFAULT;
	unsigned n = vdu_dev_inflight(m->dev);
	struct timespec now;
	int64_t ms;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)(now.tv_sec - m->drain_start.tv_sec) * 1000 +
	     (now.tv_nsec - m->drain_start.tv_nsec) / 1000000;
	if (m->phase == PH_DRAINING && n && ms < drain_ms) {
		set_timer(m, MAIN_POLL_MS);
		return;
	}
	if (m->phase == PH_DRAINING && n)
		vdu_warn("%s: %u requests still in flight after %u ms: stopping anyway",
			 m->name, n, drain_ms);
	r = vdu_dev_stop(m->dev);
	if (r == -EBUSY) {
		if (m->phase != PH_WAIT_DETACH)
			vdu_warn("%s: attached by someone else: serving until it is detached (vdpa dev del %s); signal again to give up",
				 m->name, m->name);
		m->phase = PH_WAIT_DETACH;
		set_timer(m, MAIN_BUSY_RETRY_MS);
		return;
	}
	if (r < 0 && !m->rc)
		m->rc = r;
	event_base_loopbreak(m->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *m = arg;

	m->signals++;
	if (m->phase == PH_WAIT_DETACH) {
		vdu_err("%s: still attached: giving up; the kernel device stays (vdpa dev del %s, then destroy it)",
			m->name, m->name);
		m->rc = -EBUSY;
		event_base_loopbreak(m->base);
		return;
	}
	vdu_info("%s: %s", m->name, sig == SIGINT ? "SIGINT" : "SIGTERM");
	begin_stop(m);
}

static int setup_events(struct main_state *m)
{
	static const int sigs[2] = { SIGINT, SIGTERM };

	if (pipe2(m->pipe, O_CLOEXEC) < 0)
		return -errno;
	m->done_ev = event_new(m->base, m->pipe[0], EV_READ | EV_PERSIST,
			       thread_done_cb, m);
	m->timer = evtimer_new(m->base, timer_cb, m);
	if (!m->done_ev || !m->timer || event_add(m->done_ev, NULL) < 0)
		return -ENOMEM;
	for (int i = 0; i < 2; i++) {
		m->sig[i] = evsignal_new(m->base, sigs[i], signal_cb, m);
		if (!m->sig[i] || evsignal_add(m->sig[i], NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void free_events(struct main_state *m)
{
	for (int i = 0; i < 2; i++)
		if (m->sig[i])
			event_free(m->sig[i]);
	if (m->done_ev)
		event_free(m->done_ev);
	if (m->timer)
		event_free(m->timer);
	if (m->pipe[0] >= 0) {
		close(m->pipe[0]);
		close(m->pipe[1]);
	}
}

int vdu_main(const struct vdu_dev_opts *dev_opts,
	     const struct vdu_backend *backend, void *handle,
	     const struct vdu_main_opts *opts)
{
	struct main_state m = { .pipe = { -1, -1 } };
	int r;

	if (opts) {
		if (opts->struct_size < offsetof(struct vdu_main_opts, opaque) +
					sizeof(void *))
			return -EINVAL;
		memcpy(&m.o, opts, VDU_MIN(opts->struct_size, sizeof(m.o)));
	}
	if (m.o.attach && strcmp(m.o.attach, "virtio_vdpa") &&
	    strcmp(m.o.attach, "vhost_vdpa")) {
		vdu_err("attach: use virtio_vdpa or vhost_vdpa, not '%s'",
			m.o.attach);
		return -EINVAL;
	}
	/* Queue threads may have loops of their own: libevent must lock. */
	if (evthread_use_pthreads() < 0)
		return -ENOSYS;
	m.base = event_base_new();
	if (!m.base)
		return -ENOMEM;
	r = vdu_dev_new(dev_opts, backend, handle, m.base, &m.dev);
	if (r < 0)
		goto out;
	m.name = m.dev->name;
	r = setup_events(&m);
	if (r == 0)
		r = vdu_dev_start(m.dev);
	if (r < 0)
		goto out;
	if (m.o.attach) {
		r = start_thread(&m, false);
		if (r < 0)
			goto out;
	} else {
		vdu_info("%s: ready; attach with: vdpa dev add name %s mgmtdev vduse",
			 m.name, m.name);
		if (m.o.ready)
			m.o.ready(m.o.opaque, m.name, "");
	}
	event_base_dispatch(m.base);
	if (m.thread_running)
		pthread_join(m.thread, NULL);
	r = m.rc;
out:
	if (m.dev)
		vdu_dev_free(m.dev);
	free_events(&m);
	event_base_free(m.base);
	return r;
}
