/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdusectl create: validate, fork the daemon (unless --foreground), wait
 * for its "OK"/"ERR msg" on a pipe, optionally attach.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vdusectl.h"

static const char description[] =
	"Create the VDUSE device NAME served by a daemon that runs the backend\n"
	"(built in, or a plugin: see Backends below and libvduse(3)).\n"
	"The backend's keys are checked before anything is created; with\n"
	"--dry-run it is opened, described, and nothing is created.\n"
	"The command returns once the device exists; with --attach it then\n"
	"attaches the device to the vdpa bus and prints its node (/dev/vdX).\n"
	"With --foreground the daemon runs in this process (for systemd).";

/* Read the daemon's one status line; 0 OK, 1 ERR (msg set), -errno. */
static int read_status(int fd, char *msg, size_t msglen)
{
	char buf[VCTL_ERR_MAX + 8];
	size_t len = 0;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	for (;;) {
		int rc = poll(&pfd, 1, VCTL_STARTUP_TIMEOUT_MS);
		ssize_t n;

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len) || len == sizeof(buf) - 1)
			break;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (!strcmp(buf, "OK"))
		return 0;
	if (!strncmp(buf, "ERR ", 4)) {
		snprintf(msg, msglen, "%s", buf + 4);
		return 1;
	}
	return -EPIPE;
}

int vctl_start_daemon(const struct vctl_create *c, pid_t *pidp)
{
	char msg[VCTL_ERR_MAX + 8], log[4096];
	int p[2], rc, st;
	pid_t pid;

	if (vctl_path(log, sizeof(log), c->state_dir, c->name, VCTL_F_LOG) < 0)
		snprintf(log, sizeof(log), "the daemon log");
	if (pipe2(p, O_CLOEXEC) < 0) {
		vctl_error("pipe: %s", strerror(errno));
		return VCTL_EXIT_FAIL;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		vctl_error("fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return VCTL_EXIT_FAIL;
	}
	if (pid == 0) {
		close(p[0]);
		exit(c->auto_recover ? vctl_supervise(c, p[1])
				     : vctl_daemon_main(c, p[1]));
	}
	close(p[1]);
	rc = read_status(p[0], msg, sizeof(msg));
	close(p[0]);
	if (rc == 0) {
		*pidp = pid;
		return VCTL_EXIT_OK;
	}
	if (rc == 1) {
		vctl_error("%s", msg);
		waitpid(pid, NULL, 0); /* it exits right after reporting */
		return VCTL_EXIT_FAIL;
	}
	if (rc == -ETIMEDOUT) {
		vctl_error("daemon for %s (pid %d) did not report within %d s: see %s",
			   c->name, (int)pid, VCTL_STARTUP_TIMEOUT_MS / 1000, log);
		return VCTL_EXIT_FAIL;
	}
	if (waitpid(pid, &st, 0) == pid && WIFSIGNALED(st))
		vctl_error("daemon for %s died during startup (signal %d): see %s",
			   c->name, WTERMSIG(st), log);
	else
		vctl_error("daemon for %s exited during startup: see %s",
			   c->name, log);
	return VCTL_EXIT_FAIL;
}

static int preflight(const struct vctl_create *c)
{
	char err[VCTL_ERR_MAX];
	struct stat st;
	pid_t pid;

	if (vctl_daemon_state(c->state_dir, c->name, &pid) == VCTL_DAEMON_ALIVE ||
	    vctl_kernel_dev_exists(c->name)) {
		vctl_error("device %s already exists (vdusectl destroy %s)",
			   c->name, c->name);
		return VCTL_EXIT_FAIL;
	}
	if (stat("/dev/vduse/control", &st) < 0 && errno == ENOENT) {
		vctl_msg_dev_start(err, sizeof(err), c->name, -ENOENT, NULL);
		vctl_error("%s", err);
		return VCTL_EXIT_FAIL;
	}
	if (c->attach && vctl_vdpa_preflight(c->driver, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		return VCTL_EXIT_FAIL;
	}
	return VCTL_EXIT_OK;
}

static int help_more(FILE *f, void *arg)
{
	const struct vctl_create_args *a = arg;
	struct vctl_backend b;
	char err[VCTL_ERR_MAX];

	vctl_backends_help(f);
	if (!a->backend)
		return VCTL_EXIT_OK;
	if (vctl_backend_find(a->backend, &b, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		return VCTL_EXIT_USAGE;
	}
	vctl_backend_help(f, b.plugin);
	return VCTL_EXIT_OK;
}

static void yes_no(const char *what, bool v)
{
	printf("%-14s%s\n", what, v ? "yes" : "no");
}

/* --dry-run: open the backend as the daemon would, say what the device
 * would be, close it. */
static int dry_run(const struct vctl_create *c)
{
	struct vdu_backend_info info;
	char size[32], err[VCTL_ERR_MAX];
	uint32_t lbs;
	void *h = NULL;
	int r;

	struct vdu_param params[VCTL_PARAMS_MAX];
	const char *left_out = NULL;
	size_t n = 0;

	/* Keys that would change something (file create=on) stay out. */
	for (size_t i = 0; i < c->nparams; i++) {
		const struct vdu_option *o = c->plugin->options;

		while (o && o->key && strcmp(o->key, c->params[i].key))
			o++;
		if (o && o->key && (o->flags & VDU_OPT_F_ACTION) &&
		    vdu_parse_bool(c->params[i].value) != 0)
			left_out = c->params[i].key;
		else
			params[n++] = c->params[i];
	}
	vctl_log_setup(NULL, VDU_LOG_ERR);
	vctl_log_clear_error();
	r = c->plugin->open(params, n, &h);
	if (r < 0) {
		vctl_log_last_error(err, sizeof(err));
		if (!err[0])
			snprintf(err, sizeof(err), "backend %s: cannot open: %s",
				 c->plugin->name, strerror(-r));
		if (left_out)
			vctl_error("%s (%s= is not acted on under --dry-run)",
				   err, left_out);
		else
			vctl_error("%s", err);
		return VCTL_EXIT_FAIL;
	}
	memset(&info, 0, sizeof(info));
	r = c->plugin->backend->get_info(h, &info);
	if (c->plugin->close)
		c->plugin->close(h);
	if (r < 0) {
		vctl_error("backend %s: cannot describe the storage: %s",
			   c->plugin->name, strerror(-r));
		return VCTL_EXIT_FAIL;
	}
	lbs = c->block_size ? c->block_size :
	      info.logical_block_size ? info.logical_block_size : 512;
	vctl_format_size(info.size - info.size % lbs, size, sizeof(size));
	printf("%-14s%s (%s)\n", "device:", c->name, "not created: --dry-run");
	printf("%-14s%s\n", "backend:", c->backend_name);
	printf("%-14s%s (%" PRIu64 " bytes)\n", "size:", size,
	       info.size - info.size % lbs);
	printf("%-14s%u logical, %u physical\n", "block size:", lbs,
	       info.physical_block_size > lbs ? info.physical_block_size : lbs);
	yes_no("read-only:", c->read_only || (info.caps & VDU_CAP_READ_ONLY));
	yes_no("flush:", info.caps & VDU_CAP_FLUSH);
	yes_no("discard:", !(info.caps & VDU_CAP_READ_ONLY) &&
		(info.caps & VDU_CAP_DISCARD));
	yes_no("write-zeroes:", !(info.caps & VDU_CAP_READ_ONLY) &&
		(info.caps & VDU_CAP_WRITE_ZEROES));
	printf("%-14s%u of %u entries\n", "queues:", c->queues, c->queue_size);
	return VCTL_EXIT_OK;
}

int vctl_cmd_create(int argc, const char **argv)
{
	struct vctl_create_args a = { 0 };
	const char *state_opt = NULL;
	struct poptOption options[] = {
		{ "backend", '\0', POPT_ARG_STRING, &a.backend, 0,
		  "backend: null, file, nbd, a plugin NAME or a plugin's path "
		  "(see below)", "BACKEND" },
		{ "size", '\0', POPT_ARG_STRING, &a.size, 0,
		  "device size in bytes, or with K, M, G, T (null: required)", "SIZE" },
		{ "path", '\0', POPT_ARG_STRING, &a.path, 0,
		  "file backend: the image file or block device", "FILE" },
		{ "url", '\0', POPT_ARG_STRING, &a.url, 0,
		  "nbd backend: the server to connect to", "URL" },
		{ "image", '\0', POPT_ARG_STRING, &a.image, 0,
		  "rbd backend: the Ceph RBD image, POOL/[NAMESPACE/]IMAGE[@SNAP]", "IMAGE" },
		{ "queues", '\0', POPT_ARG_STRING, &a.queues, 0,
		  "number of queues, 1-64 (default 1)", "N" },
		{ "queue-size", '\0', POPT_ARG_STRING, &a.queue_size, 0,
		  "entries per queue, a power of two 4-32768 (default 256)", "N" },
		{ "block-size", '\0', POPT_ARG_STRING, &a.block_size, 0,
		  "logical block size, a power of two 512-65536 (default 512)", "N" },
		{ "serial", '\0', POPT_ARG_STRING, &a.serial, 0,
		  "serial number, at most 20 bytes (default: NAME)", "S" },
		{ "read-only", '\0', POPT_ARG_NONE, &a.read_only, 0,
		  "export the device read-only", NULL },
		{ "ring", '\0', POPT_ARG_STRING, &a.ring, 0,
		  "virtqueue layout offered: split (default) or packed (the "
		  "driver may still choose split)", "split|packed" },
		{ "cpu-list", '\0', POPT_ARG_STRING, &a.cpu_list, 0,
		  "pin queue threads, one CPU per queue (e.g. 0,1 or 0-3)", "LIST" },
		{ "poll-us", '\0', POPT_ARG_STRING, &a.poll_us, 0,
		  "busy-poll the ring up to N us after a batch (the window "
		  "adapts to the gaps between requests), 0-1000000; auto "
		  "(default): " VCTL_STR(VCTL_POLL_AUTO_US) " while the queues "
		  "are at most the CPUs (2 or more), "
		  "else 0 (off), and 0 for network backends (nbd)", "auto|N" },
		{ "bounce-size", '\0', POPT_ARG_STRING, &a.bounce_size, 0,
		  "kernel bounce buffer size, 1M-1G (default: 16M when our "
		  "memory backs it, see --bounce, else the kernel's, 64M)",
		  "SIZE" },
		{ "bounce", '\0', POPT_ARG_STRING, &a.bounce, 0,
		  "whose memory backs the bounce buffer: user (ours, pinned: "
		  "direct I/O works on every kernel), kernel (the kernel's "
		  "pages), auto (default: user when the backend does direct "
		  "I/O, i.e. file with cache=none)", "auto|user|kernel" },
		{ "irq-cpu-list", '\0', POPT_ARG_STRING, &a.irq_cpu_list, 0,
		  "where each queue's interrupt completion work runs: follow "
		  "(the CPU of the queue's thread), driver (the guest driver's "
		  "choice), auto (default: follow for one queue or polling "
		  "queues, else driver) or one CPU per queue, applied on attach",
		  "auto|follow|driver|LIST" },
		{ "attach", '\0', POPT_ARG_NONE, &a.attach, 0,
		  "attach to the vdpa bus and print the device node", NULL },
		{ "driver", '\0', POPT_ARG_STRING, &a.driver, 0,
		  "with --attach: virtio_vdpa (default) or vhost_vdpa", "DRIVER" },
		{ "foreground", '\0', POPT_ARG_NONE, &a.foreground, 0,
		  "run the daemon in this process, log to stderr", NULL },
		{ "auto-recover", '\0', POPT_ARG_NONE, &a.auto_recover, 0,
		  "restart a killed daemon and recover the device (as "
		  "'vdusectl recover')", NULL },
		{ "option", 'o', POPT_ARG_ARGV, &a.extra, 0,
		  "backend key (repeatable; --backend B --help lists B's)",
		  "KEY=VALUE" },
		{ "dry-run", 'n', POPT_ARG_NONE, &a.dry_run, 0,
		  "check the options and open the backend, print what the "
		  "device would be, create nothing", NULL },
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "create",
		.synopsis = "NAME --backend BACKEND [OPTION...]",
		.description = description,
		.options = options,
		.min_args = 1,
		.max_args = 1,
		.help_more = help_more,
		.help_arg = &a,
	};
	struct vctl_create c;
	char err[VCTL_ERR_MAX], node[128];
	const char *args[1];
	poptContext ctx = NULL;
	pid_t pid = 0;
	int rc;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	if (vctl_create_spec(&a, args[0], vctl_state_dir(state_opt), &c, err,
			     sizeof(err)) < 0) {
		vctl_error("%s", err);
		vctl_create_spec_free(&c);
		rc = VCTL_EXIT_USAGE;
		goto out;
	}
	if (c.dry_run) {
		rc = dry_run(&c);
		goto out_spec;
	}
	rc = vctl_state_dir_check(c.state_dir, true);
	if (rc)
		goto out_spec;
	rc = preflight(&c);
	if (rc != VCTL_EXIT_OK)
		goto out_spec;
	if (c.foreground) {
		rc = c.auto_recover ? vctl_supervise(&c, -1)
				    : vctl_daemon_main(&c, -1);
		goto out_spec;
	}
	rc = vctl_start_daemon(&c, &pid);
	if (rc != VCTL_EXIT_OK || !c.attach)
		goto out_spec;
	if (vctl_attach(c.name, c.driver, node, sizeof(node), err,
			sizeof(err)) < 0) {
		char err2[VCTL_ERR_MAX];

		vctl_error("%s", err);
		/* Do not leave a half-made device behind. */
		if (vctl_stop_daemon(c.state_dir, c.name, pid, err2,
				     sizeof(err2)) < 0)
			fprintf(stderr, "vdusectl: also: %s\n", err2);
		rc = VCTL_EXIT_FAIL;
		goto out_spec;
	}
	printf("%s\n", node);
	rc = VCTL_EXIT_OK;
out_spec:
	vctl_create_spec_free(&c);
out:
	free((void *)a.backend);
	free((void *)a.size);
	free((void *)a.path);
	free((void *)a.url);
	free((void *)a.image);
	free((void *)a.queues);
	free((void *)a.queue_size);
	free((void *)a.block_size);
	free((void *)a.serial);
	free((void *)a.driver);
	free((void *)a.ring);
	free((void *)a.bounce);
	free((void *)a.cpu_list);
	free((void *)a.poll_us);
	free((void *)a.bounce_size);
	free((void *)a.irq_cpu_list);
	free((void *)state_opt);
	if (a.extra) {
		for (size_t i = 0; a.extra[i]; i++)
			free((void *)a.extra[i]);
		free(a.extra);
	}
	poptFreeContext(ctx);
	return rc;
}
