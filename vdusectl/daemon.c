/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The per device daemon: owns the backend and the kernel VDUSE device,
 * serves the device's messages and the control socket on one libevent
 * loop, and on SIGTERM/SIGINT/"stop" drains in-flight requests before
 * destroying the device.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "vdusectl.h"

#define DRAIN_POLL_MS 100
#define PATH_LEN 4096

struct daemon {
	const struct vctl_create *c;
	int report_fd;           /* pipe to the parent, -1 in the foreground */
	struct event_base *base;
	void *bh;                /* backend handle */
	struct vdu_dev *dev;
	struct vctl_ctl_server *srv;
	struct event *sig_term, *sig_int, *sig_hup, *drain_timer, *attach_ev;
	struct event *size_timer; /* the saved size follows the device's */
	uint64_t saved_size;     /* what NAME.json says */
	int pid_fd;
	bool stopping;
	bool stop_pending;       /* requested while the attach thread runs */
	struct timespec stop_start;
	bool kernel_dev_left;
	bool json_written;       /* NAME.json is ours (not a crashed daemon's) */
	int exit_code;
	/* The backend's parameters: c's, but size= follows resizes (and a
	 * recovered daemon takes it from the saved config, where the one it
	 * replaces left it). */
	struct vdu_param params[VCTL_PARAMS_MAX];
	size_t nparams;
	char size_param[24];
	time_t created;          /* for the saved config */
	char pid_path[PATH_LEN], json_path[PATH_LEN], sock_path[PATH_LEN],
		log_path[PATH_LEN], state_prefix[PATH_LEN];

	/* Foreground --attach: the kernel blocks on our replies during the
	 * probe, so attaching runs on a thread while the loop serves. */
	pthread_t attach_thread;
	bool attach_running;
	bool detaching;          /* the thread detaches before a stop */
	int attach_pipe[2];
	int attach_rc;
	char attach_err[VCTL_ERR_MAX];
	char node[128];
};

static void report_err(struct daemon *d, const char *fmt, ...) VCTL_PRINTF(2, 3);
static void report_err(struct daemon *d, const char *fmt, ...)
{
	char msg[VCTL_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	if (d->report_fd >= 0) {
		char line[VCTL_ERR_MAX + 8];
		int n = snprintf(line, sizeof(line), "ERR %s\n", msg);

		vdu_log(VDU_LOG_ERR, "%s", msg);
		if (n > 0 && write(d->report_fd, line,
				   (size_t)n < sizeof(line) ? (size_t)n :
				   sizeof(line) - 1) < 0) {
			/* The parent is gone; the log has it. */
		}
		close(d->report_fd);
		d->report_fd = -1;
	} else {
		vctl_error("%s", msg);
	}
}

static void report_ok(struct daemon *d)
{
	if (d->report_fd >= 0) {
		if (write(d->report_fd, "OK\n", 3) < 0) {
			/* The parent is gone: keep running. */
		}
		close(d->report_fd);
		d->report_fd = -1;
	}
}

/* Last library error, for "...: <detail>" suffixes. */
static const char *detail(char *buf, size_t len, int rc)
{
	vctl_log_last_error(buf, len);
	if (!buf[0])
		snprintf(buf, len, "%s", strerror(-rc));
	return buf;
}

/* ----------------------------------------------------------- JSON replies */

static struct json_object *params_json(struct daemon *d)
{
	struct json_object *o = json_object_new_object();

	for (size_t i = 0; o && i < d->nparams; i++)
		jo_str(o, d->params[i].key, d->params[i].value);
	return o;
}

/* "bounce": whose memory serves the bounce buffer now, and its cost. */
static struct json_object *bounce_json(struct daemon *d)
{
	struct vdu_bounce_info bi = { .struct_size = sizeof(bi) };
	struct json_object *o;

	if (vdu_dev_get_bounce(d->dev, &bi) < 0 || !(o = json_object_new_object()))
		return NULL;
	jo_str(o, "mode", bi.mode == VDU_BOUNCE_USER ? "user" :
	       bi.mode == VDU_BOUNCE_KERNEL ? "kernel" : "unmapped");
	jo_u64(o, "size", bi.size);
	jo_u64(o, "pinned", bi.pinned);
	jo_u64(o, "resident", bi.resident);
	jo_u64(o, "huge", bi.huge);
	jo_u64(o, "copied", bi.copied);
	jo_str(o, "fallback", bi.fallback_err ? strerror(-bi.fallback_err) : NULL);
	return o;
}

/* "memory": what this daemon (one device) keeps resident, from
 * /proc/self/smaps_rollup: Rss, and Pss (shared libraries divided among
 * the processes that map them). */
static struct json_object *memory_json(void)
{
	unsigned long long rss = 0, pss = 0, kb;
	struct json_object *o;
	char line[128];
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			rss = kb << 10;
		else if (sscanf(line, "Pss: %llu kB", &kb) == 1)
			pss = kb << 10;
	}
	fclose(f);
	o = json_object_new_object();
	if (o) {
		jo_u64(o, "rss", rss);
		jo_u64(o, "pss", pss);
	}
	return o;
}

static struct json_object *info_cb(void *opaque)
{
	struct daemon *d = opaque;
	struct vdu_dev_info info;
	struct json_object *o = json_object_new_object();
	int rc = vdu_dev_get_info(d->dev, &info);

	if (!o)
		return NULL;
	if (rc < 0) {
		jo_str(o, "error", strerror(-rc));
		return o;
	}
	jo_str(o, "name", d->c->name);
	jo_str(o, "backend", d->c->backend_name);
	jo_u64(o, "size", info.capacity_bytes);
	jo_u64(o, "block_size", info.block_size);
	jo_u64(o, "queues", info.num_queues);
	jo_u64(o, "queue_size", info.queue_size);
	jo_str(o, "serial", info.serial);
	jo_bool(o, "read_only", info.read_only);
	jo_strf(o, "features", "0x%016" PRIx64, info.features_offered);
	jo_strf(o, "negotiated", "0x%016" PRIx64, info.features_negotiated);
	jo_u64(o, "status", info.status);
	jo_bool(o, "broken", info.broken);
	jo_bool(o, "kernel_broken", info.kernel_broken);
	jo_u64(o, "pid", (uint64_t)getpid());
	jo_u64(o, "inflight", vdu_dev_inflight(d->dev));
	jo_bool(o, "stopping", d->stopping);
	jo_str(o, "bounce_mode", vctl_bounce_name(d->c->bounce_mode));
	jo_add(o, "bounce", bounce_json(d));
	jo_add(o, "memory", memory_json());
	jo_add(o, "params", params_json(d));
	return o;
}

static struct json_object *stats_cb(void *opaque)
{
	struct daemon *d = opaque;
	struct vdu_dev_info info;
	unsigned nq = d->c->queues;
	struct json_object *o = json_object_new_object();
	struct json_object *qs = json_object_new_array();

	if (!o || !qs) {
		json_object_put(o);
		json_object_put(qs);
		return NULL;
	}
	if (vdu_dev_get_info(d->dev, &info) == 0)
		nq = info.num_queues;
	jo_str(o, "name", d->c->name);
	jo_add(o, "queues", qs);
	for (unsigned q = 0; q < nq; q++) {
		struct vdu_queue_stats st;
		struct json_object *e;

		if (vdu_dev_queue_stats(d->dev, q, &st) < 0 ||
		    !(e = json_object_new_object()))
			continue;
		jo_u64(e, "index", q);
		jo_u64(e, "requests", st.requests);
		jo_u64(e, "read_bytes", st.read_bytes);
		jo_u64(e, "write_bytes", st.write_bytes);
		jo_u64(e, "errors", st.errors);
		jo_u64(e, "inflight", st.inflight);
		jo_u64(e, "irqs", st.irqs);
		jo_u64(e, "kicks", st.kicks);
		jo_bool(e, "enabled", st.enabled);
		jo_bool(e, "broken", st.broken);
		json_object_array_add(qs, e);
	}
	return o;
}

static int save_config(struct daemon *d, uint64_t size, uint32_t block_size);

static struct json_object *error_json(const char *fmt, ...) VCTL_PRINTF(1, 2);
static struct json_object *error_json(const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char msg[VCTL_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (o)
		jo_str(o, "error", msg);
	return o;
}

/* size= as the device's size now, where the backend takes one. */
static void set_size_param(struct daemon *d, uint64_t size)
{
	for (size_t i = 0; i < d->nparams; i++)
		if (!strcmp(d->params[i].key, "size")) {
			snprintf(d->size_param, sizeof(d->size_param), "%" PRIu64,
				 size);
			d->params[i].value = d->size_param;
		}
}

/* NAME.json with size (and size=) as the device has it now. */
static void save_size(struct daemon *d, uint64_t size, uint32_t block_size)
{
	int rc;

	set_size_param(d, size);
	rc = save_config(d, size, block_size);
	if (rc < 0)
		vdu_log(VDU_LOG_ERR, "cannot write %s: %s (recover would use the "
			"old size)", d->json_path, strerror(-rc));
}

/* A backend may change the size by itself (vdu_dev_set_capacity: another
 * client resized a shared image): list and recover read NAME.json. */
static void size_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct vdu_dev_info info;

	if (vdu_dev_get_info(d->dev, &info) == 0 &&
	    info.capacity_bytes != d->saved_size) {
		vdu_log(VDU_LOG_INFO, "device %s now has %" PRIu64 " bytes",
			d->c->name, info.capacity_bytes);
		save_size(d, info.capacity_bytes, info.block_size);
	}
}

/*
 * "resize BYTES [shrink]": vdu_dev_resize on this thread (the device's
 * control thread; the backend may block it a while), then the saved
 * config follows.  The client checked the request against what it saw;
 * it is checked again against the size now.
 */
static struct json_object *resize_cb(void *opaque, const char *args)
{
	struct daemon *d = opaque;
	const char *name = d->c->name;
	struct vdu_dev_info info;
	unsigned long long want;
	char num[32], more[VCTL_ERR_MAX] = "", from[32], to[32];
	const char *sp = strchr(args, ' ');
	size_t len = sp ? (size_t)(sp - args) : strlen(args);
	bool shrink = sp != NULL;
	struct json_object *o;
	int rc;

	snprintf(num, sizeof(num), "%.*s", (int)len, args);
	if (len >= sizeof(num) || (sp && strcmp(sp, " shrink")) ||
	    vctl_parse_ull(num, &want) < 0 || vdu_dev_get_info(d->dev, &info) < 0)
		return error_json("malformed resize request: use resize BYTES [shrink]");
	vctl_format_size(info.capacity_bytes, from, sizeof(from));
	vctl_format_size(want, to, sizeof(to));
	if (d->stopping)
		return error_json("device %s is stopping", name);
	if (info.read_only)
		return error_json("device %s is read-only: it cannot be resized", name);
	if (!want || want % info.block_size)
		return error_json("%llu bytes is not a multiple of the %u-byte "
				  "blocks of %s", want, info.block_size, name);
	if (want < info.capacity_bytes && !shrink)
		return error_json("refusing to shrink %s from %s to %s: data "
				  "beyond %s would be lost; add --shrink", name,
				  from, to, to);
	vctl_log_clear_error();
	rc = vdu_dev_resize(d->dev, want, shrink ? VDU_RESIZE_F_SHRINK : 0);
	if (rc < 0)
		vctl_log_last_error(more, sizeof(more));
	/* Without a word from the backend: it has no resize. */
	if (rc == -EOPNOTSUPP && !more[0])
		return error_json("the %s backend cannot resize a device",
				  d->c->backend_name);
	if (rc < 0) {
		return error_json("cannot resize %s from %s to %s: %s", name, from,
				  to, more[0] ? more : strerror(-rc));
	}
	vdu_log(VDU_LOG_INFO, "device %s resized from %s to %s", name, from, to);
	save_size(d, want, info.block_size);
	o = json_object_new_object();
	if (o) {
		jo_str(o, "name", name);
		jo_u64(o, "old_size", info.capacity_bytes);
		jo_u64(o, "size", want);
	}
	return o;
}

/* NAME.json: what is needed to recreate the device. */
static int save_config(struct daemon *d, uint64_t size, uint32_t block_size)
{
	const struct vctl_create *c = d->c;
	struct json_object *o = json_object_new_object();
	const char *text;
	char *line;
	size_t len;
	int rc;

	if (!o)
		return -ENOMEM;
	jo_u64(o, "version", 1);
	jo_str(o, "name", c->name);
	jo_str(o, "backend", c->backend_name);
	jo_add(o, "params", params_json(d));
	jo_u64(o, "size", size);
	jo_u64(o, "queues", c->queues);
	jo_u64(o, "queue_size", c->queue_size);
	jo_u64(o, "block_size", block_size ? block_size : c->block_size);
	jo_str(o, "serial", c->serial);
	jo_bool(o, "read_only", c->read_only);
	jo_str(o, "ring", c->ring_packed ? "packed" : "split");
	jo_u64(o, "poll_us", c->poll_us);
	jo_str(o, "cpu_list", c->cpu_list);
	jo_u64(o, "bounce_size", c->bounce_size);
	jo_str(o, "bounce_mode", vctl_bounce_name(c->bounce_mode));
	jo_str(o, "irq_cpu_list", c->irq_cpu_list);
	/* What "auto" resolved to, for show (recover resolves it again). */
	jo_str(o, "irq_mode", c->irq_mode == VCTL_IRQ_FOLLOW ? "follow" :
	       c->irq_mode == VCTL_IRQ_DRIVER ? "driver" : "list");
	jo_bool(o, "auto_recover", c->auto_recover);
	if (!d->created)
		d->created = time(NULL);
	jo_u64(o, "created", (uint64_t)d->created);
	d->saved_size = size;
	text = jv_text(o);
	len = text ? strlen(text) : 0;
	line = text ? malloc(len + 1) : NULL;
	if (line) {
		memcpy(line, text, len);
		line[len] = '\n'; /* a text file */
		rc = vctl_write_file(d->json_path, line, len + 1);
	} else {
		rc = -ENOMEM;
	}
	free(line);
	json_object_put(o);
	return rc;
}

/* ------------------------------------------------------------- stopping */

static int64_t elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - since->tv_sec) * 1000 +
	       (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void finish_stop(struct daemon *d)
{
	const char *name = d->c->name;
	int rc = vdu_dev_stop(d->dev);

	if (rc == -EBUSY) {
		vdu_log(VDU_LOG_ERR,
			"device %s is still attached: leaving the kernel device in place (vdusectl detach %s; vdusectl destroy %s)",
			name, name, name);
		d->kernel_dev_left = true;
	} else if (rc < 0) {
		vdu_log(VDU_LOG_ERR, "destroying device %s: %s", name,
			strerror(-rc));
		d->kernel_dev_left = vctl_kernel_dev_exists(name);
	} else {
		vdu_log(VDU_LOG_INFO, "device %s destroyed", name);
	}
	event_base_loopbreak(d->base);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	unsigned n = vdu_dev_inflight(d->dev);
	int64_t ms = elapsed_ms(&d->stop_start);

	if (n && ms < VCTL_DRAIN_TIMEOUT_MS)
		return;
	if (n)
		vdu_log(VDU_LOG_WARNING,
			"%u requests still in flight after %d s: stopping anyway",
			n, VCTL_DRAIN_TIMEOUT_MS / 1000);
	event_del(d->drain_timer);
	finish_stop(d);
}

static int start_attach(struct daemon *d);

static void begin_stop(struct daemon *d, const char *why)
{
	struct timeval tv = { .tv_usec = DRAIN_POLL_MS * 1000 };

	if (d->stopping)
		return;
	if (d->attach_running) {
		vdu_log(VDU_LOG_INFO, "%s: stopping once the %s finishes", why,
			d->detaching ? "detach" : "attach");
		d->stop_pending = true;
		return;
	}
	if (vctl_attached(d->c->name, NULL, 0, NULL, 0) > 0) {
		/* Exiting now would leave an attached disk nobody serves: its
		 * users would hang.  Detach it first (the kernel needs our loop
		 * to answer while it does), then drain and destroy. */
		int rc;

		vdu_log(VDU_LOG_INFO, "%s: detaching %s before stopping", why,
			d->c->name);
		d->detaching = true;
		rc = start_attach(d);
		if (rc < 0) {
			d->detaching = false;
			vdu_log(VDU_LOG_ERR, "cannot start the detach thread: %s; "
				"not stopping", strerror(-rc));
		}
		return;
	}
	d->stopping = true;
	clock_gettime(CLOCK_MONOTONIC, &d->stop_start);
	vdu_log(VDU_LOG_INFO, "%s: stopping device %s (%u requests in flight)",
		why, d->c->name, vdu_dev_inflight(d->dev));
	vctl_sd_notify("STOPPING=1");
	event_add(d->drain_timer, &tv);
	drain_cb(-1, 0, d);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	char why[32];

	snprintf(why, sizeof(why), "signal %s",
		 sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" :
		 sig == SIGHUP ? "SIGHUP" : "?");
	if (d->stopping)
		vdu_log(VDU_LOG_INFO, "%s: already stopping", why);
	begin_stop(d, why);
}

static void reopen_log_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	int rc = vctl_reopen_stderr(d->log_path);

	if (rc < 0)
		vdu_log(VDU_LOG_ERR, "SIGHUP: cannot reopen %s: %s", d->log_path,
			strerror(-rc));
	else
		vdu_log(VDU_LOG_INFO, "SIGHUP: log file reopened");
}

static void ctl_stop_cb(void *opaque)
{
	begin_stop(opaque, "stop request");
}

static const struct vctl_ctl_ops ctl_ops = {
	.info = info_cb,
	.stats = stats_cb,
	.resize = resize_cb,
	.stop = ctl_stop_cb,
};

/* ------------------------------------------------- foreground --attach */

static void *attach_thread(void *arg)
{
	struct daemon *d = arg;

	if (d->detaching)
		d->attach_rc = vctl_detach_unused(d->c->name, d->attach_err,
						  sizeof(d->attach_err));
	else
		d->attach_rc = vctl_attach(d->c->name, d->c->driver, d->node,
					   sizeof(d->node), d->attach_err,
					   sizeof(d->attach_err));
	if (write(d->attach_pipe[1], "x", 1) < 0) {
		/* Cannot happen with a pipe we own; the loop would hang. */
		abort();
	}
	return NULL;
}

static void attach_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	char c;

	if (read(fd, &c, 1) < 0)
		return;
	pthread_join(d->attach_thread, NULL);
	d->attach_running = false;
	if (d->detaching) {
		d->detaching = false;
		d->stop_pending = false;
		if (d->attach_rc < 0) {
			vdu_log(VDU_LOG_ERR, "not stopping: %s", d->attach_err);
			return;
		}
		vdu_log(VDU_LOG_INFO, "device %s detached", d->c->name);
		begin_stop(d, "detached");
		return;
	}
	if (d->attach_rc == 0) {
		printf("%s\n", d->node);
		fflush(stdout);
		vdu_log(VDU_LOG_INFO, "device %s attached to %s as %s",
			d->c->name, d->c->driver, d->node);
		vctl_sd_notify("READY=1");
		if (d->stop_pending)
			begin_stop(d, "deferred stop");
	} else {
		vctl_error("%s", d->attach_err);
		d->exit_code = VCTL_EXIT_FAIL;
		begin_stop(d, "attach failed");
	}
}

static int start_attach(struct daemon *d)
{
	int rc;

	if (d->attach_pipe[0] < 0 && pipe2(d->attach_pipe, O_CLOEXEC) < 0)
		return -errno;
	if (!d->attach_ev)
		d->attach_ev = event_new(d->base, d->attach_pipe[0],
					 EV_READ | EV_PERSIST, attach_done_cb, d);
	if (!d->attach_ev || event_add(d->attach_ev, NULL) < 0)
		return -ENOMEM;
	rc = pthread_create(&d->attach_thread, NULL, attach_thread, d);
	if (rc)
		return -rc;
	d->attach_running = true;
	return 0;
}

/* -------------------------------------------------------- kernel knobs */

/* ---------------------------------------------------------------- setup */

/* c's parameters; recovering, with the size= the replaced daemon saved
 * (it may have resized the device since c was made: --auto-recover). */
static void load_params(struct daemon *d)
{
	const struct vctl_create *c = d->c;
	struct json_object *cfg;
	const char *sz;

	uint64_t created;

	d->nparams = c->nparams < VCTL_PARAMS_MAX ? c->nparams : VCTL_PARAMS_MAX;
	memcpy(d->params, c->params, d->nparams * sizeof(d->params[0]));
	if (!c->recover)
		return;
	cfg = vctl_load_config(c->state_dir, c->name);
	if (json_get_u64(cfg, "created", &created) == 0)
		d->created = (time_t)created;
	sz = json_get_str(json_get(cfg, "params"), "size");
	if (sz && vdu_param_get(d->params, d->nparams, "size") && strlen(sz) < sizeof(d->size_param) &&
	    strcmp(sz, vdu_param_get(d->params, d->nparams, "size"))) {
		for (size_t i = 0; i < d->nparams; i++)
			if (!strcmp(d->params[i].key, "size")) {
				snprintf(d->size_param, sizeof(d->size_param), "%s", sz);
				d->params[i].value = d->size_param;
			}
		vdu_log(VDU_LOG_INFO, "size=%s, as the device was resized", sz);
	}
	json_free(cfg);
}

static int setup(struct daemon *d)
{
	const struct vctl_create *c = d->c;
	struct vdu_dev_opts opts = { .struct_size = sizeof(opts) };
	struct vdu_dev_info info;
	char err[VCTL_ERR_MAX], more[VCTL_ERR_MAX];
	int rc;

	rc = vctl_state_dir_prepare(c->state_dir, err, sizeof(err));
	if (rc < 0) {
		report_err(d, "%s", err);
		return rc;
	}
	if (vctl_path(d->pid_path, PATH_LEN, c->state_dir, c->name, VCTL_F_PID) ||
	    vctl_path(d->json_path, PATH_LEN, c->state_dir, c->name, VCTL_F_JSON) ||
	    vctl_path(d->sock_path, PATH_LEN, c->state_dir, c->name, VCTL_F_SOCK) ||
	    vctl_path(d->log_path, PATH_LEN, c->state_dir, c->name, VCTL_F_LOG)) {
		report_err(d, "state directory path %s is too long", c->state_dir);
		return -ENAMETOOLONG;
	}
	if (d->report_fd >= 0) {
		vctl_close_inherited_fds(d->report_fd);
		rc = vctl_redirect_stdio(d->log_path);
		if (rc < 0) {
			report_err(d, "cannot open log file %s: %s", d->log_path,
				   strerror(-rc));
			return rc;
		}
	}
	vctl_log_setup(stderr, vctl_global.log_level);
	vdu_log(VDU_LOG_INFO, "starting device %s (backend %s, %u queue%s of %u, block size %s)",
		c->name, c->backend_name, c->queues, c->queues == 1 ? "" : "s",
		c->queue_size,
		c->block_size ? (snprintf(more, sizeof(more), "%u", c->block_size), more)
			      : "from the backend");

	rc = vctl_pidfile_lock(d->pid_path, &d->pid_fd);
	if (rc == -EWOULDBLOCK) {
		if (c->recover)
			report_err(d, "the daemon of %s is still running: nothing "
				   "to recover", c->name);
		else
			report_err(d, "device %s already exists (vdusectl "
				   "destroy %s)", c->name, c->name);
		return rc;
	}
	if (rc < 0) {
		report_err(d, "cannot create %s: %s", d->pid_path, strerror(-rc));
		return rc;
	}

	d->base = event_base_new();
	if (!d->base) {
		report_err(d, "cannot create the event loop");
		return -ENOMEM;
	}

	load_params(d);
	vctl_log_clear_error();
	rc = c->plugin->open(d->params, d->nparams, &d->bh);
	if (rc < 0) {
		size_t nl = strlen(c->plugin->name);

		d->bh = NULL;
		vctl_log_last_error(more, sizeof(more));
		/* The backend's own "NAME: why" says it all. */
		if (!strncmp(more, c->plugin->name, nl) && more[nl] == ':')
			report_err(d, "%s", more);
		else
			report_err(d, "backend %s: cannot open: %s", c->backend_name,
				   detail(more, sizeof(more), rc));
		return rc;
	}

	opts.name = c->name;
	opts.num_queues = c->queues;
	opts.queue_size = c->queue_size;
	opts.block_size = c->block_size;
	opts.serial = c->serial;
	opts.read_only = c->read_only;
	/* One thread and event loop per queue; the daemon's loop keeps the
	 * device messages and the control socket. */
	opts.flags = VDU_DEV_F_QUEUE_THREADS;
	if (c->ring_packed)
		opts.flags |= VDU_DEV_F_RING_PACKED;
	if (c->irq_mode == VCTL_IRQ_FOLLOW)
		opts.flags |= VDU_DEV_F_IRQ_FOLLOW;
	opts.poll_us = c->poll_us;
	opts.bounce = c->bounce_mode;
	opts.bounce_size = c->bounce_size;
	opts.irq_cpus = c->irq_mode == VCTL_IRQ_LIST ? c->irq_cpus : NULL;
	opts.queue_cpus = c->cpu_list ? c->cpus : NULL;
	/* Inflight logs next to the other state files, for recovery. */
	if (snprintf(d->state_prefix, PATH_LEN, "%s/%s", c->state_dir, c->name) >=
	    PATH_LEN) {
		report_err(d, "state directory path %s is too long", c->state_dir);
		return -ENAMETOOLONG;
	}
	opts.state_path = d->state_prefix;
	vctl_log_clear_error();
	rc = vdu_dev_new(&opts, c->plugin->backend, d->bh, d->base, &d->dev);
	if (rc < 0) {
		d->dev = NULL;
		report_err(d, "cannot set up device %s: %s", c->name,
			   detail(more, sizeof(more), rc));
		return rc;
	}
	if (c->recover) {
		rc = vdu_dev_reconnect(d->dev);
		if (rc < 0) {
			report_err(d, "cannot recover device %s: %s", c->name,
				   rc == -EBUSY ? "another process serves it" :
				   rc == -ENODEV ? "no such kernel device" :
				   rc == -ESTALE ? "its saved state does not match "
				   "the device (destroy and re-create it)" :
				   detail(more, sizeof(more), rc));
			return rc;
		}
	} else {
		vctl_log_clear_error();
		rc = vdu_dev_start(d->dev);
		if (rc < 0) {
			/* Unless the kernel's refusal has a better line, the
			 * library's or backend's words (a backend may refuse
			 * the device: rbd's exclusive lock). */
			vctl_log_last_error(more, sizeof(more));
			vctl_msg_dev_start(err, sizeof(err), c->name, rc, more);
			report_err(d, "%s", err);
			return rc;
		}
	}

	rc = vctl_pidfile_write(d->pid_fd);
	if (rc < 0) {
		report_err(d, "cannot write %s: %s", d->pid_path, strerror(-rc));
		return rc;
	}
	rc = vdu_dev_get_info(d->dev, &info);
	rc = save_config(d, rc == 0 ? info.capacity_bytes : 0,
			 rc == 0 ? info.block_size : 0);
	if (rc < 0) {
		report_err(d, "cannot write %s: %s", d->json_path, strerror(-rc));
		return rc;
	}
	d->json_written = true;
	d->size_timer = event_new(d->base, -1, EV_PERSIST, size_timer_cb, d);
	if (!d->size_timer ||
	    event_add(d->size_timer, &(struct timeval){ .tv_sec = 1 }) < 0) {
		report_err(d, "cannot set up the size timer");
		return -ENOMEM;
	}
	rc = vctl_ctl_server_new(d->base, d->sock_path, &ctl_ops, d, &d->srv,
				 err, sizeof(err));
	if (rc < 0) {
		report_err(d, "%s", err);
		return rc;
	}

	d->sig_term = evsignal_new(d->base, SIGTERM, signal_cb, d);
	d->sig_int = evsignal_new(d->base, SIGINT, signal_cb, d);
	d->drain_timer = event_new(d->base, -1, EV_PERSIST, drain_cb, d);
	if (!d->sig_term || !d->sig_int || !d->drain_timer ||
	    evsignal_add(d->sig_term, NULL) < 0 ||
	    evsignal_add(d->sig_int, NULL) < 0) {
		report_err(d, "cannot set up signal handling");
		return -ENOMEM;
	}
	/* Foreground: a hangup stops the device like SIGTERM.  Background:
	 * it reopens the log file (logrotate moved it). */
	d->sig_hup = evsignal_new(d->base, SIGHUP,
				  c->foreground ? signal_cb : reopen_log_cb, d);
	{
		if (!d->sig_hup || evsignal_add(d->sig_hup, NULL) < 0) {
			report_err(d, "cannot set up signal handling");
			return -ENOMEM;
		}
	}
	vdu_log(VDU_LOG_INFO, "device %s ready, control socket %s", c->name,
		d->sock_path);
	return 0;
}

/* The device is gone: its inflight logs have nothing left to recover. */
static void remove_inflight_logs(struct daemon *d)
{
	char path[PATH_LEN + 32];

	for (unsigned i = 0; i < d->c->queues; i++) {
		snprintf(path, sizeof(path), "%s.q%u.inflight", d->state_prefix, i);
		unlink(path);
	}
}

static void cleanup(struct daemon *d)
{
	vctl_ctl_server_free(d->srv);
	if (d->dev)
		vdu_dev_free(d->dev); /* stops first if still running */
	if (d->bh && d->c->plugin->close)
		d->c->plugin->close(d->bh);
	if (d->pid_fd >= 0) {
		/* Keep the saved config only while the kernel device lives. */
		if (d->json_written && !d->kernel_dev_left) {
			unlink(d->json_path);
			remove_inflight_logs(d);
		}
		unlink(d->pid_path); /* still under our lock */
		close(d->pid_fd);
	}
	if (d->attach_ev)
		event_free(d->attach_ev);
	if (d->attach_pipe[0] >= 0) {
		close(d->attach_pipe[0]);
		close(d->attach_pipe[1]);
	}
	if (d->drain_timer)
		event_free(d->drain_timer);
	if (d->size_timer)
		event_free(d->size_timer);
	if (d->sig_term)
		event_free(d->sig_term);
	if (d->sig_int)
		event_free(d->sig_int);
	if (d->sig_hup)
		event_free(d->sig_hup);
	if (d->base)
		event_base_free(d->base);
}

int vctl_daemon_main(const struct vctl_create *c, int report_fd)
{
	struct daemon d = {
		.c = c,
		.report_fd = report_fd,
		.pid_fd = -1,
		.attach_pipe = { -1, -1 },
		.exit_code = VCTL_EXIT_OK,
	};
	int rc;

	signal(SIGPIPE, SIG_IGN);
	umask(077);
	if (report_fd >= 0) {
		signal(SIGHUP, SIG_IGN);
		if (setsid() < 0 || chdir("/") < 0) {
			report_err(&d, "cannot detach the daemon: %s",
				   strerror(errno));
			return VCTL_EXIT_FAIL;
		}
	}
	if (evthread_use_pthreads() < 0) {
		report_err(&d, "libevent has no thread support");
		return VCTL_EXIT_FAIL;
	}

	rc = setup(&d);
	if (rc < 0) {
		/* The kernel device (if any) goes away with the object. */
		cleanup(&d);
		return VCTL_EXIT_FAIL;
	}
	report_ok(&d);

	if (c->foreground && c->attach) {
		rc = start_attach(&d);
		if (rc < 0) {
			vctl_error("cannot start the attach thread: %s",
				   strerror(-rc));
			d.exit_code = VCTL_EXIT_FAIL;
			begin_stop(&d, "attach failed");
		}
	} else {
		vctl_sd_notify("READY=1");
	}

	event_base_dispatch(d.base);
	if (d.attach_running)
		pthread_join(d.attach_thread, NULL);
	vdu_log(VDU_LOG_INFO, "daemon for %s exiting", c->name);
	cleanup(&d);
	return d.exit_code;
}
