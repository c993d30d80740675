/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Command line parsing and validation.  The validators are pure functions
 * that produce the one-line message telling the user how to fix the
 * problem; tests/test-cli.sh checks them through the built binary.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/un.h>
#include <unistd.h>

#include "backends.h"
#include "vdusectl.h"

int vctl_parse_cmd(const struct vctl_cmdline *cl, int argc, const char **argv,
		   poptContext *ctxp, const char **args)
{
	poptContext ctx;
	const char *a;
	bool help = false;
	int rc, n = 0;

	/* popt names the program after argv[0] in --help: make it
	 * "vdusectl create".  The context keeps using the array, so it
	 * lives in static storage (one command per process). */
	static char ctxname[64];
	static const char **av;

	snprintf(ctxname, sizeof(ctxname), "vdusectl %s", cl->cmd);
	free(av);
	av = calloc((size_t)argc + 1, sizeof(*av));
	if (!av) {
		*ctxp = NULL;
		vctl_error("out of memory");
		return VCTL_EXIT_FAIL;
	}
	memcpy(av, argv, (size_t)argc * sizeof(*av));
	av[0] = ctxname;
	ctx = poptGetContext(ctxname, argc, av, cl->options, 0);
	*ctxp = ctx;
	if (!ctx) {
		vctl_error("out of memory");
		return VCTL_EXIT_FAIL;
	}
	poptSetOtherOptionHelp(ctx, cl->synopsis);
	/* --help after the other options are read, so that what it shows may
	 * depend on them (create --backend X --help). */
	while ((rc = poptGetNextOpt(ctx)) > 0) {
		char err[VCTL_ERR_MAX];

		if (rc == VCTL_OPT_HELP)
			help = true;
		else if (rc == VCTL_OPT_VERBOSE)
			vctl_global.log_level = VDU_LOG_DEBUG;
		else if (rc == VCTL_OPT_LOG_LEVEL) {
			char *arg = poptGetOptArg(ctx); /* ours to free */
			int r = vctl_check_log_level(arg ? arg : "",
						     &vctl_global.log_level,
						     err, sizeof(err));

			free(arg);
			if (r < 0) {
				vctl_error("%s", err);
				return VCTL_EXIT_USAGE;
			}
		}
	}
	if (help) {
		poptPrintHelp(ctx, stdout, 0);
		if (cl->description)
			printf("\n%s\n", cl->description);
		vctl_print_exit_codes(stdout);
		return cl->help_more ? cl->help_more(stdout, cl->help_arg)
				     : VCTL_EXIT_OK;
	}
	if (rc < -1) {
		vctl_error("%s: %s: %s (see 'vdusectl %s --help')", cl->cmd,
			   poptBadOption(ctx, POPT_BADOPTION_NOALIAS),
			   poptStrerror(rc), cl->cmd);
		return VCTL_EXIT_USAGE;
	}
	while ((a = poptGetArg(ctx)) != NULL) {
		if (n >= cl->max_args) {
			vctl_error("%s: unexpected argument '%s': usage: vdusectl %s %s",
				   cl->cmd, a, cl->cmd, cl->synopsis);
			return VCTL_EXIT_USAGE;
		}
		args[n++] = a;
	}
	if (n < cl->min_args) {
		vctl_error("%s: missing device NAME: usage: vdusectl %s %s",
			   cl->cmd, cl->cmd, cl->synopsis);
		return VCTL_EXIT_USAGE;
	}
	for (; n < cl->max_args; n++)
		args[n] = NULL;
	return -1;
}

const char *vctl_state_dir(const char *opt)
{
	const char *env;

	if (opt && *opt)
		return opt;
	env = getenv(VCTL_STATE_DIR_ENV);
	if (env && *env)
		return env;
	return VCTL_STATE_DIR_DEFAULT;
}

int vctl_parse_ull(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (v > (ULLONG_MAX - (unsigned)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (unsigned)(*p - '0');
	}
	*out = v;
	return 0;
}

static bool is_pow2(unsigned long long v)
{
	return v && !(v & (v - 1));
}

int vctl_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int vctl_check_name(const char *name, const char *state_dir, char *err,
		    size_t errlen)
{
	size_t len;

	if (!name || !*name)
		return vctl_fail(err, errlen, "missing device NAME");
	len = strlen(name);
	if (len > VDU_NAME_MAX)
		return vctl_fail(err, errlen,
			    "device name is %zu bytes long: use at most %d",
			    len, VDU_NAME_MAX);
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return vctl_fail(err, errlen,
				    "invalid device name '%s': use only letters, digits, '-', '_' and '.'",
				    name);
	}
	if (name[0] == '.' || name[0] == '-')
		return vctl_fail(err, errlen,
			    "invalid device name '%s': it must not start with '.' or '-'",
			    name);
	if (!strcmp(name, "control"))
		return vctl_fail(err, errlen,
			    "device name 'control' is reserved by the kernel: choose another NAME");
	if (vdu_name_valid(name) != 0)
		return vctl_fail(err, errlen,
			    "invalid device name '%s': not accepted by VDUSE, choose another NAME",
			    name);
	if (state_dir) {
		size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
		size_t need = strlen(state_dir) + 1 + len + strlen(".sock");
		if (need > max)
			return vctl_fail(err, errlen,
				    "device name too long for the control socket in %s: use at most %zu bytes or a shorter --state-dir",
				    state_dir,
				    max > need - len ? max - (need - len) : 0);
	}
	return 0;
}

int vctl_check_size(const char *opt, const char *s, uint64_t *out, char *err,
		    size_t errlen)
{
	uint64_t v;

	if (vdu_parse_size(s, &v) < 0)
		return vctl_fail(err, errlen,
			    "%s '%s' is not a size: use bytes or a number with K, M, G or T (e.g. %s 10G)",
			    opt, s, opt);
	if (v < 512)
		return vctl_fail(err, errlen,
			    "%s must be at least 512 bytes (got '%s')", opt, s);
	*out = v;
	return 0;
}

int vctl_check_queues(const char *s, unsigned *out, char *err, size_t errlen)
{
	unsigned long long v;

	if (vctl_parse_ull(s, &v) < 0 || v < 1 || v > VDU_QUEUES_MAX)
		return vctl_fail(err, errlen,
			    "--queues must be a number from 1 to %d (got '%s')",
			    VDU_QUEUES_MAX, s);
	*out = (unsigned)v;
	return 0;
}

int vctl_check_queue_size(const char *s, unsigned *out, char *err,
			  size_t errlen)
{
	unsigned long long v;

	if (vctl_parse_ull(s, &v) < 0 || v < VDU_QUEUE_SIZE_MIN || v > VDU_QUEUE_SIZE_MAX ||
	    !is_pow2(v))
		return vctl_fail(err, errlen,
			    "--queue-size must be a power of two from %d to %d (got '%s')",
			    VDU_QUEUE_SIZE_MIN, VDU_QUEUE_SIZE_MAX, s);
	*out = (unsigned)v;
	return 0;
}

int vctl_check_block_size(const char *s, uint32_t *out, char *err,
			  size_t errlen)
{
	unsigned long long v;

	if (vctl_parse_ull(s, &v) < 0 || v < 512 || v > 65536 || !is_pow2(v))
		return vctl_fail(err, errlen,
			    "--block-size must be a power of two from 512 to 65536 (got '%s')",
			    s);
	*out = (uint32_t)v;
	return 0;
}

int vctl_check_serial(const char *s, char *err, size_t errlen)
{
	size_t len = strlen(s);

	if (len > VDU_SERIAL_MAX)
		return vctl_fail(err, errlen,
			    "--serial is %zu bytes long: use at most %d",
			    len, VDU_SERIAL_MAX);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return vctl_fail(err, errlen,
				    "--serial must be printable ASCII");
	return 0;
}

int vctl_check_driver(const char *s, char *err, size_t errlen)
{
	if (strcmp(s, "virtio_vdpa") && strcmp(s, "vhost_vdpa"))
		return vctl_fail(err, errlen,
			    "--driver must be virtio_vdpa or vhost_vdpa (got '%s')",
			    s);
	return 0;
}

int vctl_check_kv(const char *s, char *err, size_t errlen)
{
	const char *eq = strchr(s, '=');

	if (!eq || eq == s)
		return vctl_fail(err, errlen,
			    "-o '%s' is not KEY=VALUE (e.g. -o connections=4)",
			    s);
	return 0;
}

int vctl_check_cpu_list(const char *opt, const char *s, int *cpus,
			unsigned max, unsigned *count, char *err,
			size_t errlen)
{
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);
	const char *p = s;
	unsigned n = 0;

	if (ncpu < 1)
		ncpu = CPU_SETSIZE;
	if (!*s)
		goto syntax;
	for (;;) {
		unsigned long long lo, hi;
		char num[16];
		size_t len = strspn(p, "0123456789");

		if (!len || len >= sizeof(num))
			goto syntax;
		memcpy(num, p, len);
		num[len] = '\0';
		if (vctl_parse_ull(num, &lo) < 0)
			goto syntax;
		p += len;
		hi = lo;
		if (*p == '-') {
			p++;
			len = strspn(p, "0123456789");
			if (!len || len >= sizeof(num))
				goto syntax;
			memcpy(num, p, len);
			num[len] = '\0';
			if (vctl_parse_ull(num, &hi) < 0 || hi < lo)
				goto syntax;
			p += len;
		}
		if (hi >= (unsigned long long)ncpu)
			return vctl_fail(err, errlen,
				    "%s: CPU %llu does not exist (this system has CPUs 0-%ld)",
				    opt, hi, ncpu - 1);
		for (unsigned long long c = lo; c <= hi; c++) {
			if (n < max)
				cpus[n] = (int)c;
			n++;
		}
		if (!*p)
			break;
		if (*p != ',')
			goto syntax;
		p++;
	}
	*count = n;
	return 0;
syntax:
	return vctl_fail(err, errlen,
		    "%s '%s' is not a CPU list: use numbers and ranges, e.g. %s 0,1 or %s 0-3",
		    opt, s, opt, opt);
}

/* CPUs this process may run on (its threads inherit the mask). */
static unsigned usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	return 1;
}

/*
 * queues: how many queue threads would poll; 0: none should (auto = 0).
 * auto polls with one thread per CPU at most, and never on a single CPU,
 * where the spinning thread would only delay the submitter.  Two queues
 * on two CPUs poll: with 2 jobs, 1 job and QD1 that measured better than
 * kicks (tests/bench/results-peers.md).
 */
int vctl_check_poll_us(const char *s, unsigned queues, unsigned *out,
		       char *err, size_t errlen)
{
	unsigned long long v;

	if (strcmp(s, "auto") == 0) {
		unsigned cpus = usable_cpus();

		*out = queues && cpus >= 2 && queues <= cpus ?
		       VCTL_POLL_AUTO_US : 0;
		return 0;
	}
	if (vctl_parse_ull(s, &v) < 0 || v > 1000000)
		return vctl_fail(err, errlen,
			    "--poll-us must be auto or a number of microseconds from 0 to 1000000 (got '%s')",
			    s);
	*out = (unsigned)v;
	return 0;
}

int vctl_check_bounce_size(const char *s, uint32_t *out, char *err,
			   size_t errlen)
{
	uint64_t v;

	/* The kernel's limits: VDUSE_MIN_BOUNCE_SIZE..VDUSE_MAX_BOUNCE_SIZE;
	 * it rounds down to pages, we insist on them. */
	if (vdu_parse_size(s, &v) < 0 || v < (1u << 20) || v > (1u << 30) ||
	    v % 4096)
		return vctl_fail(err, errlen,
			    "--bounce-size must be from 1M to 1G in 4K pages (got '%s')",
			    s);
	*out = (uint32_t)v;
	return 0;
}

static const char *const bounce_names[] = {
	[VDU_BOUNCE_AUTO] = "auto",
	[VDU_BOUNCE_USER] = "user",
	[VDU_BOUNCE_KERNEL] = "kernel",
};

int vctl_check_bounce(const char *s, unsigned *mode, char *err, size_t errlen)
{
	for (unsigned i = 0; i < sizeof(bounce_names) / sizeof(bounce_names[0]); i++)
		if (!strcmp(s, bounce_names[i])) {
			*mode = i;
			return 0;
		}
	return vctl_fail(err, errlen,
		    "--bounce must be auto, user or kernel (got '%s')", s);
}

const char *vctl_bounce_name(unsigned mode)
{
	return mode < sizeof(bounce_names) / sizeof(bounce_names[0]) ?
	       bounce_names[mode] : "?";
}

int vctl_check_ring(const char *s, bool *packed, char *err, size_t errlen)
{
	if (!strcmp(s, "split"))
		*packed = false;
	else if (!strcmp(s, "packed"))
		*packed = true;
	else
		return vctl_fail(err, errlen,
			    "--ring must be split or packed (got '%s')", s);
	return 0;
}

void vctl_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	int u = -1;
	uint64_t v = bytes;

	while (v && v % 1024 == 0 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, bytes);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, units[u]);
}

static int add_param(struct vctl_create *c, const char *key,
		     const char *value, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->nparams; i++)
		if (!strcmp(c->params[i].key, key))
			return vctl_fail(err, errlen,
				    "backend parameter '%s' given twice (-o %s=... repeats --%s or an earlier -o): give it once",
				    key, key, key);
	if (c->nparams >= VCTL_PARAMS_MAX)
		return vctl_fail(err, errlen,
			    "too many backend parameters: at most %d",
			    VCTL_PARAMS_MAX);
	c->params[c->nparams].key = key;
	c->params[c->nparams].value = value;
	c->nparams++;
	return 0;
}

static char *own(struct vctl_create *c, char *copy)
{
	if (!copy)
		return NULL;
	if (c->nowned >= sizeof(c->owned) / sizeof(c->owned[0])) {
		free(copy);
		return NULL;
	}
	c->owned[c->nowned++] = copy;
	return copy;
}

static const struct vdu_option *plugin_option(const struct vdu_plugin *p,
					      const char *key)
{
	for (const struct vdu_option *o = p->options; o && o->key; o++)
		if (!strcmp(o->key, key))
			return o;
	return NULL;
}

/* The backend keys that create has an option of its own for: --KEY V is
 * KEY=V, where the backend has the key. */
static const char *const dedicated_keys[] = { "size", "path", "url", "image" };

static bool dedicated_key(const char *key)
{
	for (size_t i = 0; i < sizeof(dedicated_keys) / sizeof(dedicated_keys[0]); i++)
		if (!strcmp(key, dedicated_keys[i]))
			return true;
	return false;
}

static int dedicated_option(struct vctl_create *c, const char *key,
			    const char *value, char *err, size_t errlen)
{
	if (!value)
		return 0;
	if (!plugin_option(c->plugin, key))
		return vctl_fail(err, errlen,
				 "--%s does not apply to the %s backend: remove it (vdusectl create --backend %s --help lists its keys)",
				 key, c->plugin->name, c->backend_name);
	if (!*value)
		return vctl_fail(err, errlen, "--%s needs a value", key);
	return add_param(c, key, value, err, errlen);
}

/* File names relative to the current directory, made absolute. */
static int absolute_paths(struct vctl_create *c, char *err, size_t errlen)
{
	char cwd[4096];

	for (size_t i = 0; i < c->nparams; i++) {
		const struct vdu_option *o = plugin_option(c->plugin, c->params[i].key);
		char *abs;

		if (!o || !(o->flags & VDU_OPT_F_PATH) ||
		    c->params[i].value[0] == '/' || !c->params[i].value[0])
			continue;
		if (!getcwd(cwd, sizeof(cwd)))
			return vctl_fail(err, errlen, "%s=%s: cannot tell the current directory (%s): give an absolute path",
				    c->params[i].key, c->params[i].value,
				    strerror(errno));
		if (asprintf(&abs, "%s/%s", cwd, c->params[i].value) < 0 ||
		    !own(c, abs))
			return vctl_fail(err, errlen, "out of memory");
		c->params[i].value = abs;
	}
	return 0;
}

/* Required keys that have an option of their own get its hint. */
static int required_keys(const struct vctl_create *c, char *err, size_t errlen)
{
	for (const struct vdu_option *o = c->plugin->options; o && o->key; o++) {
		bool have = false;

		if (!(o->flags & VDU_OPT_F_REQUIRED))
			continue;
		for (size_t i = 0; i < c->nparams; i++)
			have |= !strcmp(c->params[i].key, o->key);
		if (have)
			continue;
		if (dedicated_key(o->key))
			return vctl_fail(err, errlen, "the %s backend needs --%s %s",
				    c->plugin->name, o->key,
				    o->syntax ? o->syntax : "VALUE");
		return vctl_fail(err, errlen, "the %s backend needs -o %s=%s",
			    c->plugin->name, o->key,
			    o->syntax ? o->syntax : "VALUE");
	}
	return 0;
}

static int backend_spec(const struct vctl_create_args *a, struct vctl_create *c,
			char *err, size_t errlen)
{
	char names[256];
	int r;

	vctl_backend_names(names, sizeof(names));
	if (!a->backend)
		return vctl_fail(err, errlen,
			    "create needs --backend BACKEND (one of: %s, or a plugin)",
			    names);
	if (vctl_backend_find(a->backend, &c->be, err, errlen) < 0)
		return -1;
	c->plugin = c->be.plugin;
	c->backend_name = c->be.ref;

	if (a->size) {
		uint64_t size;

		if (vctl_check_size("--size", a->size, &size, err, errlen) < 0)
			return -1;
	}
	if (dedicated_option(c, "size", a->size, err, errlen) < 0 ||
	    dedicated_option(c, "path", a->path, err, errlen) < 0 ||
	    dedicated_option(c, "url", a->url, err, errlen) < 0 ||
	    dedicated_option(c, "image", a->image, err, errlen) < 0)
		return -1;
	for (size_t i = 0; a->extra && a->extra[i]; i++) {
		char *copy, *eq;

		if (vctl_check_kv(a->extra[i], err, errlen) < 0)
			return -1;
		copy = own(c, strdup(a->extra[i]));
		if (!copy)
			return vctl_fail(err, errlen,
				    "too many backend parameters: at most %d",
				    VCTL_PARAMS_MAX);
		eq = strchr(copy, '=');
		*eq = '\0';
		if (add_param(c, copy, eq + 1, err, errlen) < 0)
			return -1;
	}
	/* --read-only tells a backend that can open read-only to do so. */
	if (a->read_only && plugin_option(c->plugin, "readonly") &&
	    !vdu_param_get(c->params, c->nparams, "readonly") &&
	    add_param(c, "readonly", "on", err, errlen) < 0)
		return -1;
	if (required_keys(c, err, errlen) < 0 ||
	    absolute_paths(c, err, errlen) < 0)
		return -1;
	r = vdu_plugin_check(c->plugin, c->params, c->nparams, err, errlen);
	if (r == -EPROTO) {
		char why[VCTL_ERR_MAX];

		snprintf(why, sizeof(why), "%s", err);
		return vctl_fail(err, errlen,
			    "backend %s: %s: rebuild it against the installed libvduse",
			    c->backend_name, why);
	}
	return r < 0 ? -1 : 0;
}

int vctl_create_spec(const struct vctl_create_args *a, const char *name,
		     const char *state_dir, struct vctl_create *c, char *err,
		     size_t errlen)
{
	bool remote;

	memset(c, 0, sizeof(*c));
	c->name = name;
	c->state_dir = state_dir;
	if (vctl_check_name(name, state_dir, err, errlen) < 0)
		return -1;

	if (backend_spec(a, c, err, errlen) < 0)
		return -1;
	/* Completions come back over the network: a poll window spins
	 * between replies without catching more requests (same-boot bench
	 * against nbdkit: no gain), so --poll-us auto leaves it off. */
	remote = c->plugin->flags & VDU_PLUGIN_F_NETWORK;

	c->queues = 1;
	c->queue_size = 256;
	c->block_size = 0; /* the backend's (4096 for a 4Kn disk), else 512 */
	if (a->queues && vctl_check_queues(a->queues, &c->queues, err, errlen) < 0)
		return -1;
	if (a->queue_size &&
	    vctl_check_queue_size(a->queue_size, &c->queue_size, err, errlen) < 0)
		return -1;
	if (a->block_size &&
	    vctl_check_block_size(a->block_size, &c->block_size, err, errlen) < 0)
		return -1;
	if (a->serial && vctl_check_serial(a->serial, err, errlen) < 0)
		return -1;
	c->serial = a->serial;
	c->read_only = a->read_only;
	if (a->driver && !a->attach)
		return vctl_fail(err, errlen,
			    "--driver only applies with --attach: add --attach or remove --driver");
	if (a->driver && vctl_check_driver(a->driver, err, errlen) < 0)
		return -1;
	c->ring_packed = VCTL_RING_PACKED_DEFAULT;
	if (a->ring && vctl_check_ring(a->ring, &c->ring_packed, err, errlen) < 0)
		return -1;
	if (vctl_check_poll_us(a->poll_us ? a->poll_us : "auto",
			       remote ? 0 : c->queues,
			       &c->poll_us, err, errlen) < 0)
		return -1;
	if (a->cpu_list) {
		unsigned n;

		if (vctl_check_cpu_list("--cpu-list", a->cpu_list, c->cpus,
					VDU_QUEUES_MAX, &n, err, errlen) < 0)
			return -1;
		if (n != c->queues)
			return vctl_fail(err, errlen,
				    "--cpu-list '%s' names %u CPU%s for %u queue%s: give one CPU per queue",
				    a->cpu_list, n, n == 1 ? "" : "s", c->queues,
				    c->queues == 1 ? "" : "s");
		c->cpu_list = a->cpu_list;
	}
	/* Default "auto": a polling thread is awake on its CPU, so the
	 * completion work goes next to it (no cross-CPU wake-up, off the
	 * submitters' CPUs), as for one queue.  Several queues that sleep
	 * until kicked keep the driver's choice, each queue's interrupt on the
	 * CPUs that submit to it, which measured better for them
	 * (tests/bench/results-null.md, results-peers.md). */
	c->irq_cpu_list = a->irq_cpu_list ? a->irq_cpu_list : "auto";
	if (strcmp(c->irq_cpu_list, "auto") == 0) {
		c->irq_mode = c->queues == 1 || c->poll_us ? VCTL_IRQ_FOLLOW :
			      VCTL_IRQ_DRIVER;
	} else if (strcmp(c->irq_cpu_list, "follow") == 0) {
		c->irq_mode = VCTL_IRQ_FOLLOW;
	} else if (strcmp(c->irq_cpu_list, "driver") == 0) {
		c->irq_mode = VCTL_IRQ_DRIVER;
	} else {
		unsigned n;

		if (!isdigit((unsigned char)c->irq_cpu_list[0]))
			return vctl_fail(err, errlen,
				    "--irq-cpu-list '%s' is not auto, follow, driver or a CPU list: e.g. --irq-cpu-list follow or --irq-cpu-list 0,1",
				    c->irq_cpu_list);

		if (vctl_check_cpu_list("--irq-cpu-list", a->irq_cpu_list,
					c->irq_cpus, VDU_QUEUES_MAX, &n, err,
					errlen) < 0)
			return -1;
		if (n != c->queues)
			return vctl_fail(err, errlen,
				    "--irq-cpu-list '%s' names %u CPU%s for %u queue%s: give one CPU per queue",
				    a->irq_cpu_list, n, n == 1 ? "" : "s",
				    c->queues, c->queues == 1 ? "" : "s");
		c->irq_mode = VCTL_IRQ_LIST;
	}
	if (a->bounce_size &&
	    vctl_check_bounce_size(a->bounce_size, &c->bounce_size, err,
				   errlen) < 0)
		return -1;
	c->bounce_mode = VDU_BOUNCE_AUTO;
	if (a->bounce && vctl_check_bounce(a->bounce, &c->bounce_mode, err,
					   errlen) < 0)
		return -1;
	{
		gid_t gid;

		if (vctl_state_group(&gid, err, errlen) < 0)
			return -1;
	}
	c->attach = a->attach;
	c->driver = a->driver ? a->driver : "virtio_vdpa";
	c->foreground = a->foreground;
	c->auto_recover = a->auto_recover;
	c->dry_run = a->dry_run;
	return 0;
}

void vctl_create_spec_free(struct vctl_create *c)
{
	for (size_t i = 0; i < c->nowned; i++)
		free(c->owned[i]);
	c->nowned = 0;
	c->nparams = 0;
}
