/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rbd backend: a Ceph RBD image through librbd's asynchronous C API, built
 * as the plugin rbd.so so that librbd's threads and memory are paid only by
 * the devices that use it.
 *
 * One image handle per device: RBD's exclusive lock belongs to a handle,
 * and two handles in one process would pass it back and forth on every
 * write.  Completions come back through the image's event notification
 * (rbd_set_image_notification: librbd writes an eventfd, we pop finished
 * completions with rbd_poll_io_events), read on queue 0's event loop.  A
 * completion that belongs to another queue is handed to that queue's inbox
 * (a lock-free list and an eventfd written when the list was empty), so
 * vdu_io_complete() always runs on the request's own queue thread; with
 * one queue (the default) nothing is handed over.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "libvduse.h"

#define POLL_BATCH 64
#define CONNECT_TIMEOUT_DEF "30"

struct rbd_q;

/* vdu_io.priv */
struct rbd_io {
	struct rbd_io *next; /* in an inbox */
	struct vdu_io *io;
	struct rbd_q *q;
	rbd_completion_t c;
};

struct rbd_q {
	struct rbd_dev *d;
	unsigned qidx;
	struct event *ev;       /* inbox (qidx > 0) or the image's fd (qidx 0) */
	int inbox_fd;           /* eventfd, qidx > 0 */
	_Atomic(struct rbd_io *) inbox;
	unsigned inflight;      /* submitted, not completed; own thread only */
};

struct rbd_dev {
	char *spec; /* POOL/[NS/]IMAGE[@SNAP], for messages */
	rados_t cluster;
	rados_ioctx_t ioctx;
	rbd_image_t image;
	int event_fd; /* the image's notification eventfd */
	bool read_only;
	bool exclusive; /* take the lock in set_dev() and keep it */
	uint64_t obj_size;

	/* Size changes seen by the update watch (a librbd thread). */
	pthread_mutex_t lock;
	bool watching;
	uint64_t watch_handle;
	struct vdu_dev *dev; /* set_dev(); under lock */
	uint64_t size;       /* the size last announced; under lock */

	atomic_bool blocklisted_logged;
};

/* ---------------------------------------------------------------- spec */

struct image_spec {
	char pool[128], ns[128], image[256], snap[256];
};

/* POOL/[NAMESPACE/]IMAGE[@SNAP], as rbd(8) writes it. */
static int parse_spec(const char *s, struct image_spec *sp, char *err,
		      size_t errlen)
{
	const char *at = strchr(s, '@');
	char path[512];
	char *parts[4];
	int n = 0;
	size_t plen = at ? (size_t)(at - s) : strlen(s);

	memset(sp, 0, sizeof(*sp));
	if (plen >= sizeof(path))
		goto bad;
	memcpy(path, s, plen);
	path[plen] = 0;
	for (char *p = path, *slash;; p = slash + 1) {
		if (n == 3)
			goto bad;
		parts[n++] = p;
		slash = strchr(p, '/');
		if (!slash)
			break;
		*slash = 0;
	}
	if (n < 2)
		goto bad;
	for (int i = 0; i < n; i++)
		if (!*parts[i])
			goto bad;
	if (at && (!at[1] || strchr(at + 1, '@') || strchr(at + 1, '/')))
		goto bad;
	if (strlen(parts[0]) >= sizeof(sp->pool) ||
	    (n == 3 && strlen(parts[1]) >= sizeof(sp->ns)) ||
	    strlen(parts[n - 1]) >= sizeof(sp->image) ||
	    (at && strlen(at + 1) >= sizeof(sp->snap)))
		goto bad;
	strcpy(sp->pool, parts[0]);
	if (n == 3)
		strcpy(sp->ns, parts[1]);
	strcpy(sp->image, parts[n - 1]);
	if (at)
		strcpy(sp->snap, at + 1);
	return 0;
bad:
	snprintf(err, errlen,
		 "image=%s: not an RBD image spec: give POOL/IMAGE, POOL/NAMESPACE/IMAGE or POOL/IMAGE@SNAP",
		 s);
	return -EINVAL;
}

static int readable_file(const char *key, const char *path, char *err,
			 size_t errlen)
{
	if (path && access(path, R_OK) < 0) {
		snprintf(err, errlen, "%s=%s: cannot read it (%s): give the path of an existing %s",
			 key, path, strerror(errno),
			 !strcmp(key, "conf") ? "Ceph configuration file" : "keyring");
		return -EINVAL;
	}
	return 0;
}

static int rbd_check(const struct vdu_param *p, size_t n, char *err,
		     size_t errlen)
{
	struct image_spec sp;
	const char *id = vdu_param_get(p, n, "id");
	int r;

	r = parse_spec(vdu_param_get(p, n, "image"), &sp, err, errlen);
	if (r < 0)
		return r;
	if (id && (strchr(id, ' ') || !strncmp(id, "client.", 7))) {
		snprintf(err, errlen,
			 "id=%s: give the user's name without \"client.\" (id=admin means client.admin)",
			 id);
		return -EINVAL;
	}
	if (readable_file("conf", vdu_param_get(p, n, "conf"), err, errlen) < 0 ||
	    readable_file("keyring", vdu_param_get(p, n, "keyring"), err, errlen) < 0)
		return -EINVAL;
	return 0;
}

/* ---------------------------------------------------------------- open */

static void log_connect_error(struct rbd_dev *d, const char *id,
			      const char *conf, int r, const char *timeout)
{
	char mons[256] = "";
	size_t len = sizeof(mons);

	if (rados_conf_get(d->cluster, "mon_host", mons, len) < 0 || !mons[0])
		snprintf(mons, sizeof(mons), "none configured");
	switch (r) {
	case -ETIMEDOUT:
		vdu_log(VDU_LOG_ERR,
			"rbd: cannot reach the Ceph cluster within %s s (monitors: %s; from %s): check that the monitors run and conf= names this cluster",
			timeout, mons, conf ? conf : "the default ceph.conf");
		break;
	case -EACCES:
	case -EPERM:
		vdu_log(VDU_LOG_ERR,
			"rbd: the Ceph cluster refused client.%s (%s): check id= and keyring=",
			id, strerror(-r));
		break;
	case -ENOENT:
		vdu_log(VDU_LOG_ERR,
			"rbd: no key for client.%s (%s): give keyring=FILE, or id= of a user whose keyring is in /etc/ceph",
			id, strerror(-r));
		break;
	default:
		vdu_log(VDU_LOG_ERR, "rbd: cannot connect to the Ceph cluster (monitors: %s): %s",
			mons, strerror(-r));
	}
}

static void update_cb(void *arg);

static int connect_cluster(struct rbd_dev *d, const struct vdu_param *p,
			   size_t n)
{
	const char *id = vdu_param_get(p, n, "id");
	const char *conf = vdu_param_get(p, n, "conf");
	const char *keyring = vdu_param_get(p, n, "keyring");
	const char *timeout = vdu_param_get(p, n, "connect-timeout");
	int r;

	if (!id)
		id = "admin";
	if (!timeout)
		timeout = CONNECT_TIMEOUT_DEF;
	r = rados_create(&d->cluster, id);
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: rados_create: %s", strerror(-r));
		return r;
	}
	/* conf NULL: librados's search ($CEPH_CONF, /etc/ceph/ceph.conf, ...);
	 * a missing default file is fine when CEPH_ARGS names the monitors. */
	r = rados_conf_read_file(d->cluster, conf);
	if (r < 0 && conf) {
		vdu_log(VDU_LOG_ERR, "rbd: conf=%s: cannot read it: %s", conf, strerror(-r));
		return r;
	}
	rados_conf_parse_env(d->cluster, NULL);
	if (keyring && (r = rados_conf_set(d->cluster, "keyring", keyring)) < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: keyring=%s: %s", keyring, strerror(-r));
		return r;
	}
	/* librados waits 300 s for the monitors by default: a create that
	 * cannot reach the cluster should say so sooner.  OSD operations keep
	 * no timeout: an OSD that restarts costs latency, not errors. */
	r = rados_conf_set(d->cluster, "client_mount_timeout", timeout);
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: connect-timeout=%s: %s", timeout, strerror(-r));
		return r;
	}
	r = rados_connect(d->cluster);
	if (r < 0) {
		log_connect_error(d, id, conf, r, timeout);
		return r;
	}
	return 0;
}

static int open_image(struct rbd_dev *d, const struct image_spec *sp,
		      bool exclusive)
{
	rbd_image_info_t st;
	int r;

	r = rados_ioctx_create(d->cluster, sp->pool, &d->ioctx);
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: %s: pool %s: %s%s", d->spec, sp->pool,
			strerror(-r), r == -ENOENT ? " (no such pool)" : "");
		return r;
	}
	if (sp->ns[0])
		rados_ioctx_set_namespace(d->ioctx, sp->ns);
	if (d->read_only)
		r = rbd_open_read_only(d->ioctx, sp->image, &d->image,
				       sp->snap[0] ? sp->snap : NULL);
	else
		r = rbd_open(d->ioctx, sp->image, &d->image, NULL);
	if (r < 0) {
		d->image = NULL;
		vdu_log(VDU_LOG_ERR, "rbd: cannot open %s: %s%s", d->spec, strerror(-r),
			r == -ENOENT ? (sp->snap[0] ? " (no such image or snapshot)" :
				       " (no such image: create it with rbd create)") : "");
		return r;
	}
	r = rbd_stat(d->image, &st, sizeof(st));
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: %s: rbd_stat: %s", d->spec, strerror(-r));
		return r;
	}
	d->size = st.size;
	d->obj_size = st.obj_size;
	d->exclusive = exclusive && !d->read_only;
	d->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->event_fd < 0) {
		r = -errno;
		vdu_log(VDU_LOG_ERR, "rbd: eventfd: %s", strerror(errno));
		return r;
	}
	r = rbd_set_image_notification(d->image, d->event_fd, EVENT_TYPE_EVENTFD);
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: %s: rbd_set_image_notification: %s",
			d->spec, strerror(-r));
		return r;
	}
	/* A snapshot never changes size. */
	if (!sp->snap[0]) {
		r = rbd_update_watch(d->image, &d->watch_handle, update_cb, d);
		if (r < 0) {
			vdu_log(VDU_LOG_ERR, "rbd: %s: rbd_update_watch: %s", d->spec,
				strerror(-r));
			return r;
		}
		d->watching = true;
	}
	return 0;
}

static void rbd_close_dev(void *handle)
{
	struct rbd_dev *d = handle;

	if (!d)
		return;
	if (d->watching)
		rbd_update_unwatch(d->image, d->watch_handle);
	if (d->image)
		rbd_close(d->image); /* waits for outstanding I/O */
	if (d->ioctx)
		rados_ioctx_destroy(d->ioctx);
	if (d->cluster)
		rados_shutdown(d->cluster);
	if (d->event_fd >= 0)
		close(d->event_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->spec);
	free(d);
}

static int rbd_open_dev(const struct vdu_param *p, size_t n, void **handle)
{
	const char *spec = vdu_param_get(p, n, "image");
	const char *ro = vdu_param_get(p, n, "readonly");
	const char *excl = vdu_param_get(p, n, "exclusive");
	struct image_spec sp;
	struct rbd_dev *d;
	char err[256] = "image= is required: give image=POOL/[NAMESPACE/]IMAGE[@SNAP]";
	int r;

	if (!spec || parse_spec(spec, &sp, err, sizeof(err)) < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: %s", err);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->spec = strdup(spec))) {
		free(d);
		return -ENOMEM;
	}
	d->event_fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	d->read_only = sp.snap[0] || (ro && vdu_parse_bool(ro) == 1);
	r = connect_cluster(d, p, n);
	if (r == 0)
		r = open_image(d, &sp, excl && vdu_parse_bool(excl) == 1);
	if (r < 0) {
		rbd_close_dev(d);
		return r;
	}
	vdu_log(VDU_LOG_INFO, "rbd: %s: %" PRIu64 " bytes, objects of %" PRIu64 " bytes%s",
		spec, d->size, d->obj_size, d->read_only ? ", read-only" : "");
	*handle = d;
	return 0;
}

static int rbd_get_info(void *handle, struct vdu_backend_info *info)
{
	struct rbd_dev *d = handle;

	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&d->lock);
	info->size = d->size;
	pthread_mutex_unlock(&d->lock);
	info->caps = VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES |
		     (d->read_only ? VDU_CAP_READ_ONLY : 0);
	/* A whole object per request is what librbd sends best. */
	if (d->obj_size && d->obj_size <= UINT32_MAX)
		info->opt_io_size = (uint32_t)d->obj_size;
	return 0;
}

/* ---------------------------------------------------------------- resize */

/* The image's header changed (someone resized it, took a snapshot...):
 * on a librbd thread. */
static void update_cb(void *arg)
{
	struct rbd_dev *d = arg;
	uint64_t size;

	if (rbd_get_size(d->image, &size) < 0)
		return;
	pthread_mutex_lock(&d->lock);
	if (size != d->size) {
		vdu_log(VDU_LOG_NOTICE, "rbd: %s: the image is now %" PRIu64 " bytes (was %" PRIu64 ")",
			d->spec, size, d->size);
		d->size = size;
		if (d->dev)
			vdu_dev_set_capacity(d->dev, size);
	}
	pthread_mutex_unlock(&d->lock);
}

/*
 * After kill -9 of a daemon its client still owns the image's exclusive
 * lock until its watch expires (osd_client_watch_timeout, 30 s), and the
 * new daemon's first write would wait that long.  So each daemon records
 * its client in the image's metadata under this machine's and the
 * device's name.  set_dev() runs once the kernel has given us the device,
 * which it gives one process at a time: when the client recorded there
 * still owns the lock and is not us, it is a dead predecessor's.  Break
 * its lock (librbd blocklists it: it can never write again).
 */

/* The metadata key: vduse.owner.MACHINE.NAME, MACHINE /etc/machine-id (a
 * host name can be shared by clones), else the host name. */
static void owner_key(char *key, size_t len, const char *devname)
{
	char machine[80] = "";
	FILE *f = fopen("/etc/machine-id", "re");

	if (!f || !fgets(machine, sizeof(machine), f) || machine[0] == '\n')
		gethostname(machine, sizeof(machine) - 1);
	if (f)
		fclose(f);
	machine[strcspn(machine, "\n")] = 0;
	snprintf(key, len, "vduse.owner.%s.%s", machine, devname);
}

static void break_dead_lock(struct rbd_dev *d, const char *key, const char *self)
{
	char prev[256], *owners[8];
	size_t len = sizeof(prev), n = 8;
	rbd_lock_mode_t mode;
	int r;

	if (rbd_metadata_get(d->image, key, prev, &len) < 0 || !strcmp(prev, self) ||
	    rbd_lock_get_owners(d->image, &mode, owners, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(owners[i], prev))
			continue;
		r = rbd_lock_break(d->image, mode, prev);
		if (r < 0)
			vdu_log(VDU_LOG_WARNING,
				"rbd: %s: cannot break the lock of %s, the client of this device's previous daemon: %s (writes wait until its watch expires)",
				d->spec, prev, strerror(-r));
		else
			vdu_log(VDU_LOG_NOTICE,
				"rbd: %s: broke the lock of %s, the client of this device's previous daemon (dead), and blocklisted it",
				d->spec, prev);
	}
	rbd_lock_get_owners_cleanup(owners, n);
}

static int take_over_lock(struct rbd_dev *d, const char *devname)
{
	char key[512], *self = NULL;
	uint64_t features = 0;
	int r;

	if (d->read_only)
		return 0;
	if (rbd_get_features(d->image, &features) < 0 ||
	    !(features & RBD_FEATURE_EXCLUSIVE_LOCK)) {
		if (!d->exclusive)
			return 0;
		vdu_log(VDU_LOG_ERR,
			"rbd: %s: exclusive=on needs the image's exclusive-lock feature: rbd feature enable %s exclusive-lock",
			d->spec, d->spec);
		return -EINVAL;
	}
	owner_key(key, sizeof(key), devname);
	/* Lock owners are named by their client's address. */
	if (rados_getaddrs(d->cluster, &self) < 0)
		self = NULL;
	if (self)
		break_dead_lock(d, key, self);
	if (d->exclusive) {
		/* Held until close: other clients cannot take it over for
		 * writes (rbd-nbd --exclusive). */
		r = rbd_lock_acquire(d->image, RBD_LOCK_MODE_EXCLUSIVE);
		if (r < 0) {
			vdu_log(VDU_LOG_ERR,
				"rbd: %s: cannot take the exclusive lock: %s (another client holds it: rbd lock ls / rbd status %s)",
				d->spec, strerror(-r), d->spec);
			free(self);
			return r;
		}
	}
	r = self ? rbd_metadata_set(d->image, key, self) : -ENOMEM;
	if (r < 0)
		vdu_log(VDU_LOG_WARNING,
			"rbd: %s: cannot record this client in the image's metadata (%s): after a crash, the next daemon's writes wait for its lock to expire",
			d->spec, strerror(-r));
	free(self);
	return 0;
}

static int rbd_set_dev(void *handle, struct vdu_dev *dev)
{
	struct rbd_dev *d = handle;
	struct vdu_dev_info info;
	int r;

	if (dev) {
		r = vdu_dev_get_info(dev, &info);
		if (r == 0)
			r = take_over_lock(d, info.name);
		if (r < 0)
			return r;
	}
	pthread_mutex_lock(&d->lock);
	d->dev = dev;
	/* A resize by someone else before now was not announced. */
	if (dev)
		vdu_dev_set_capacity(dev, d->size);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* librbd calls the progress function without checking it for NULL. */
static int no_progress(uint64_t done, uint64_t total, void *arg)
{
	return 0;
}

static int rbd_resize_image(void *handle, uint64_t size, unsigned flags)
{
	struct rbd_dev *d = handle;
	int r;

	if (d->read_only)
		return -EROFS;
	r = rbd_resize2(d->image, size, flags & VDU_RESIZE_F_SHRINK, no_progress, NULL);
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "rbd: %s: cannot resize to %" PRIu64 " bytes: %s",
			d->spec, size, strerror(-r));
		return r;
	}
	pthread_mutex_lock(&d->lock);
	d->size = size;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* ---------------------------------------------------------------- I/O */

static void finish(struct rbd_io *rio)
{
	struct vdu_io *io = rio->io;
	ssize_t r = rbd_aio_get_return_value(rio->c);

	rbd_aio_release(rio->c);
	rio->q->inflight--;
	/* librbd clips reads at the image's end: a short one means the
	 * image shrank under us (writes return 0). */
	if (r >= 0 && io->op == VDU_IO_READ && (uint64_t)r != io->len)
		r = -EIO;
	if (r == -ESHUTDOWN &&
	    !atomic_exchange(&rio->q->d->blocklisted_logged, true))
		vdu_log(VDU_LOG_ERR,
			"rbd: %s: this client was blocklisted (another client broke its lock): every request fails; restart the device",
			rio->q->d->spec);
	vdu_io_complete(io, r < 0 ? (int)r : 0);
}

static void inbox_push(struct rbd_q *q, struct rbd_io *rio)
{
	struct rbd_io *head = atomic_load_explicit(&q->inbox, memory_order_relaxed);
	uint64_t one = 1;

	do
		rio->next = head;
	while (!atomic_compare_exchange_weak_explicit(&q->inbox, &head, rio,
						      memory_order_release,
						      memory_order_relaxed));
	/* Only the first in a batch wakes the queue. */
	if (!head && write(q->inbox_fd, &one, sizeof(one)) < 0)
		vdu_log(VDU_LOG_ERR, "rbd: waking queue %u: %s", q->qidx, strerror(errno));
}

static void inbox_drain(struct rbd_q *q)
{
	struct rbd_io *list, *rev = NULL;

	list = atomic_exchange_explicit(&q->inbox, NULL, memory_order_acquire);
	while (list) { /* oldest first */
		struct rbd_io *next = list->next;

		list->next = rev;
		rev = list;
		list = next;
	}
	while (rev) {
		struct rbd_io *next = rev->next;

		finish(rev);
		rev = next;
	}
}

/* Pop finished completions; ours are completed here, others' handed over. */
static void poll_image(struct rbd_dev *d, struct rbd_q *self)
{
	rbd_completion_t comps[POLL_BATCH];
	uint64_t cnt;
	int n;

	if (read(d->event_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		vdu_log(VDU_LOG_ERR, "rbd: reading the event fd: %s", strerror(errno));
	do {
		n = rbd_poll_io_events(d->image, comps, POLL_BATCH);
		for (int i = 0; i < n; i++) {
			struct rbd_io *rio = rbd_aio_get_arg(comps[i]);

			if (rio->q == self)
				finish(rio);
			else
				inbox_push(rio->q, rio);
		}
	} while (n == POLL_BATCH);
}

static void image_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rbd_q *q = arg;

	poll_image(q->d, q);
}

static void inbox_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rbd_q *q = arg;
	uint64_t cnt;

	if (read(q->inbox_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		vdu_log(VDU_LOG_ERR, "rbd: queue %u: reading its event fd: %s",
			q->qidx, strerror(errno));
	inbox_drain(q);
}

static int rbd_queue_open(void *handle, unsigned qidx, struct event_base *base,
			  void **qctx)
{
	struct rbd_dev *d = handle;
	struct rbd_q *q;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->d = d;
	q->qidx = qidx;
	q->inbox_fd = -1;
	if (qidx == 0) {
		q->ev = event_new(base, d->event_fd, EV_READ | EV_PERSIST,
				  image_event_cb, q);
	} else {
		q->inbox_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->inbox_fd >= 0)
			q->ev = event_new(base, q->inbox_fd, EV_READ | EV_PERSIST,
					  inbox_event_cb, q);
	}
	if (!q->ev || event_add(q->ev, NULL) < 0) {
		if (q->ev)
			event_free(q->ev);
		if (q->inbox_fd >= 0)
			close(q->inbox_fd);
		free(q);
		return -ENOMEM;
	}
	*qctx = q;
	return 0;
}

/*
 * Every queue thread has stopped (the library closes queues after stopping
 * them all), so this thread may poll the image itself: wait until each of
 * this queue's requests has come back, through the image or an inbox.
 */
static void rbd_queue_close(void *qctx)
{
	struct rbd_q *q = qctx;
	struct rbd_dev *d = q->d;

	inbox_drain(q);
	while (q->inflight) {
		struct pollfd pfd[2] = {
			{ .fd = d->event_fd, .events = POLLIN },
			{ .fd = q->inbox_fd, .events = POLLIN },
		};

		/* Never free q with requests out: they point to it. */
		if (poll(pfd, q->inbox_fd >= 0 ? 2 : 1, 1000) < 0 && errno != EINTR)
			usleep(10000);
		poll_image(d, q);
		inbox_drain(q);
	}
	event_free(q->ev);
	if (q->inbox_fd >= 0)
		close(q->inbox_fd);
	free(q);
}

static void rbd_submit(void *qctx, struct vdu_io *io)
{
	struct rbd_q *q = qctx;
	rbd_image_t img = q->d->image;
	struct rbd_io *rio = io->priv;
	int r;

	rio->io = io;
	rio->q = q;
	r = rbd_aio_create_completion(rio, NULL, &rio->c);
	if (r < 0) {
		vdu_io_complete(io, r);
		return;
	}
	switch (io->op) {
	case VDU_IO_READ:
		r = rbd_aio_readv(img, io->iov, io->iovcnt, io->offset, rio->c);
		break;
	case VDU_IO_WRITE:
		r = rbd_aio_writev(img, io->iov, io->iovcnt, io->offset, rio->c);
		break;
	case VDU_IO_FLUSH:
		r = rbd_aio_flush(img, rio->c);
		break;
	case VDU_IO_DISCARD:
		r = rbd_aio_discard(img, io->offset, io->len, rio->c);
		break;
	case VDU_IO_WRITE_ZEROES:
		/* Without UNMAP the driver wants the blocks kept allocated
		 * (as qemu's rbd driver does). */
		r = rbd_aio_write_zeroes(img, io->offset, io->len, rio->c,
					 io->flags & VDU_IO_F_UNMAP ? 0 :
					 RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, 0);
		break;
	default:
		r = -EOPNOTSUPP;
	}
	if (r < 0) {
		rbd_aio_release(rio->c);
		vdu_io_complete(io, r);
		return;
	}
	q->inflight++;
}

static const struct vdu_backend rbd_backend = {
	VDU_BACKEND_INIT,
	.io_priv_size = sizeof(struct rbd_io),
	.get_info = rbd_get_info,
	.queue_open = rbd_queue_open,
	.queue_close = rbd_queue_close,
	.submit = rbd_submit,
	.resize = rbd_resize_image,
	.set_dev = rbd_set_dev,
};

static const struct vdu_option rbd_options[] = {
	{ "image", VDU_OPT_STRING, "POOL/[NAMESPACE/]IMAGE[@SNAP]", NULL,
	  "the RBD image; a snapshot is exported read-only", VDU_OPT_F_REQUIRED, 0, 0 },
	{ "conf", VDU_OPT_STRING, "FILE", "/etc/ceph/ceph.conf",
	  "the Ceph configuration file (monitors, auth)", VDU_OPT_F_PATH, 0, 0 },
	{ "id", VDU_OPT_STRING, "USER", "admin",
	  "the Ceph user, without \"client.\"", 0, 0, 0 },
	{ "keyring", VDU_OPT_STRING, "FILE", NULL,
	  "the user's keyring (default: conf's keyring setting, /etc/ceph/ceph.client.USER.keyring)",
	  VDU_OPT_F_PATH, 0, 0 },
	{ "readonly", VDU_OPT_BOOL, "on|off", "off", "open and export read-only", 0, 0, 0 },
	{ "exclusive", VDU_OPT_BOOL, "on|off", "off",
	  "take the image's exclusive lock at open and keep it: other clients cannot write",
	  0, 0, 0 },
	{ "connect-timeout", VDU_OPT_UINT, "SECONDS", CONNECT_TIMEOUT_DEF,
	  "how long to wait for the monitors when connecting", 0, 1, 3600 },
	{ 0 },
};

static const struct vdu_plugin rbd_plugin = {
	VDU_PLUGIN_INIT,
	.name = "rbd",
	.description = "a Ceph RBD image, through librbd",
	.options = rbd_options,
	.backend = &rbd_backend,
	.open = rbd_open_dev,
	.close = rbd_close_dev,
	.flags = VDU_PLUGIN_F_NETWORK,
	.check = rbd_check,
};

VDU_REGISTER_PLUGIN(rbd_plugin)
