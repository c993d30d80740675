/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl show: everything about one device. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdusectl.h"

/* The live value from the daemon, else the saved config, else NULL. */
static const struct json_object *pick(const struct json_object *info,
				    const struct json_object *cfg,
				    const char *key)
{
	const struct json_object *v = json_get(info, key);

	return v ? v : json_get(cfg, key);
}

/* /sys/class/vduse/NAME/ATTR as a number. */
static int read_vduse_attr(const char *name, const char *attr, uint64_t *out)
{
	char path[512], *text = NULL;
	unsigned long long v;
	int n = snprintf(path, sizeof(path), "/sys/class/vduse/%s/%s", name,
			 attr);

	if (n < 0 || (size_t)n >= sizeof(path) || vctl_read_file(path, &text) < 0)
		return -ENOENT;
	text[strcspn(text, "\n")] = '\0';
	n = vctl_parse_ull(text, &v);
	free(text);
	if (n < 0)
		return n;
	*out = v;
	return 0;
}

struct show {
	const char *name;
	struct json_object *info, *cfg;
	enum vctl_daemon_state daemon;
	pid_t pid;
	bool attached;
	char driver[64], node[128];
	bool has_vdpa;
	struct vdu_vdpa_dev vdpa;
	bool has_timeout;
	uint64_t msg_timeout;
	uint64_t bounce_size;      /* the kernel's, 0: unknown */
};

static void print_json(const struct show *s)
{
	static const char *const keys[] = {
		"backend", "size", "block_size", "queues", "queue_size",
		"serial", "read_only", "features", "negotiated", "status",
		"broken", "kernel_broken", "inflight", "params", "ring", "poll_us", "cpu_list",
		"bounce_size", "bounce_mode", "bounce", "memory",
		"irq_cpu_list", "irq_mode",
	};
	struct json_object *o = json_object_new_object();

	if (!o) {
		puts("null");
		return;
	}
	jo_str(o, "name", s->name);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		/* shared with info/cfg: one more reference */
		jo_add(o, keys[i], json_object_get((struct json_object *)
						   pick(s->info, s->cfg, keys[i])));
	jo_bool(o, "daemon", s->daemon == VCTL_DAEMON_ALIVE);
	if (s->daemon == VCTL_DAEMON_ALIVE && s->pid > 0)
		jo_u64(o, "pid", (uint64_t)s->pid);
	else
		jo_null(o, "pid");
	jo_str(o, "driver", s->driver[0] ? s->driver : NULL);
	jo_str(o, "node", s->node[0] ? s->node : NULL);
	if (s->has_vdpa) {
		struct json_object *v = json_object_new_object();

		if (v) {
			jo_str(v, "mgmtdev", s->vdpa.mgmtdev);
			jo_u64(v, "device_id", s->vdpa.device_id);
			jo_u64(v, "vendor_id", s->vdpa.vendor_id);
			jo_u64(v, "max_vqs", s->vdpa.max_vqs);
			jo_u64(v, "max_vq_size", s->vdpa.max_vq_size);
		}
		jo_add(o, "vdpa", v);
	} else {
		jo_null(o, "vdpa");
	}
	if (s->has_timeout)
		jo_u64(o, "msg_timeout", s->msg_timeout);
	else
		jo_null(o, "msg_timeout");
	puts(jv_text(o));
	json_object_put(o);
}

/* A scalar as text: strings raw, numbers as written, "-" if absent. */
static const char *text(const struct json_object *v, char *buf, size_t len)
{
	if (!v || json_object_is_type(v, json_type_null))
		return "-";
	if (json_object_is_type(v, json_type_boolean))
		return json_object_get_boolean(v) ? "yes" : "no";
	if (json_text(v))
		return json_text(v);
	snprintf(buf, len, "?");
	return buf;
}

static void print_size(uint64_t bytes)
{
	if (bytes >= (1u << 20))
		printf("%.1f MiB", bytes / 1048576.0);
	else
		printf("%" PRIu64 " KiB", bytes >> 10);
}

/*
 * "user memory, 64 MiB, 2 MiB pages" / "kernel pages, copy for direct
 * I/O (N requests)" / "not mapped yet (auto)": whose pages are under the
 * bounce buffer now, from the daemon; the setting alone when it is not
 * running.
 */
static void print_bounce(const struct show *s)
{
	const struct json_object *bi = json_get(s->info, "bounce");
	const char *setting = json_get_str(s->info, "bounce_mode");
	const char *mode, *fb;
	uint64_t size = 0, huge = 0, copied = 0;

	if (!setting)
		setting = json_get_str(s->cfg, "bounce_mode");
	if (!(mode = json_get_str(bi, "mode"))) {
		printf("%s\n", setting ? setting : "-");
		return;
	}
	json_get_u64(bi, "size", &size);
	json_get_u64(bi, "huge", &huge);
	json_get_u64(bi, "copied", &copied);
	fb = json_get_str(bi, "fallback");
	if (!strcmp(mode, "user")) {
		printf("user memory, ");
		print_size(size);
		printf(", %s pages", huge ? "2 MiB" : "4 KiB");
	} else if (!strcmp(mode, "kernel")) {
		printf("kernel pages");
	} else {
		printf("not mapped yet");
	}
	if (copied)
		printf(", copy for direct I/O (%" PRIu64 " requests)", copied);
	if (fb)
		printf(" (our memory refused: %s)", fb);
	printf(" [--bounce %s]\n", setting ? setting : "?");
}

static void print_memory(const struct show *s)
{
	const struct json_object *m = json_get(s->info, "memory");
	const struct json_object *bi = json_get(s->info, "bounce");
	uint64_t pss = 0, rss = 0, pinned = 0;

	if (json_get_u64(m, "pss", &pss) < 0) {
		printf("-\n");
		return;
	}
	json_get_u64(m, "rss", &rss);
	json_get_u64(bi, "pinned", &pinned);
	print_size(pss);
	printf(" PSS, ");
	print_size(rss);
	printf(" RSS, ");
	print_size(pinned);
	printf(" pinned\n");
}

static void print_text(const struct show *s)
{
	const struct json_object *params = pick(s->info, s->cfg, "params");
	const struct json_object *v;
	const char *t;
	char b1[64], b2[64], size[32];
	uint64_t bytes;

#define F(label) printf("%-13s", label ":")
	F("name");
	printf("%s\n", s->name);
	F("backend");
	printf("%s", text(pick(s->info, s->cfg, "backend"), b1, sizeof(b1)));
	if (json_object_is_type(params, json_type_object) &&
	    json_object_object_length(params)) {
		const char *sep = " (";

		json_object_object_foreach((struct json_object *)params, k, kv) {
			printf("%s%s=%s", sep, k, text(kv, b1, sizeof(b1)));
			sep = ", ";
		}
		printf(")");
	}
	printf("\n");
	F("size");
	if (json_get_u64(s->info, "size", &bytes) == 0 ||
	    json_get_u64(s->cfg, "size", &bytes) == 0) {
		vctl_format_size(bytes, size, sizeof(size));
		printf("%" PRIu64 " bytes (%s)\n", bytes, size);
	} else {
		printf("-\n");
	}
	F("block size");
	printf("%s\n", text(pick(s->info, s->cfg, "block_size"), b1, sizeof(b1)));
	F("queues");
	printf("%s x %s entries\n",
	       text(pick(s->info, s->cfg, "queues"), b1, sizeof(b1)),
	       text(pick(s->info, s->cfg, "queue_size"), b2, sizeof(b2)));
	F("serial");
	printf("%s\n", text(pick(s->info, s->cfg, "serial"), b1, sizeof(b1)));
	F("read-only");
	printf("%s\n", text(pick(s->info, s->cfg, "read_only"), b1, sizeof(b1)));
	F("ring");
	printf("%s offered", text(pick(s->info, s->cfg, "ring"), b1, sizeof(b1)));
	v = json_get(s->info, "negotiated");
	if (json_text(v) && strtoull(json_text(v), NULL, 16))
		printf(", %s in use",
		       strtoull(json_text(v), NULL, 16) & (1ULL << 34) ? "packed" : "split");
	printf("\n");
	F("queue CPUs");
	printf("%s\n", text(pick(s->info, s->cfg, "cpu_list"), b1, sizeof(b1)));
	F("irq CPUs");
	t = text(pick(s->info, s->cfg, "irq_cpu_list"), b1, sizeof(b1));
	v = json_get(s->cfg, "irq_mode");
	if (json_object_is_type(v, json_type_string) && strcmp(t, "auto") == 0)
		printf("auto (%s)\n", json_text(v));
	else
		printf("%s\n", t);
	F("poll");
	if (json_get_u64(s->cfg, "poll_us", &bytes) == 0 && bytes)
		printf("%" PRIu64 " us\n", bytes);
	else
		printf("%s\n", json_get(s->cfg, "poll_us") ? "off" : "-");
	F("bounce size");
	if (s->bounce_size) {
		vctl_format_size(s->bounce_size, size, sizeof(size));
		printf("%s\n", size);
	} else if (json_get_u64(s->cfg, "bounce_size", &bytes) == 0 && bytes) {
		vctl_format_size(bytes, size, sizeof(size));
		printf("%s\n", size);
	} else
		printf("%s\n", json_get(s->cfg, "bounce_size") ? "default" : "-");
	F("bounce");
	print_bounce(s);
	F("memory");
	print_memory(s);
	F("features");
	printf("%s (negotiated %s)\n", text(json_get(s->info, "features"), b1, sizeof(b1)),
	       text(json_get(s->info, "negotiated"), b2, sizeof(b2)));
	F("status");
	v = json_get(s->info, "status");
	if (v && json_get_u64(s->info, "status", &bytes) == 0)
		printf("0x%02" PRIx64 "\n", bytes);
	else
		printf("-\n");
	F("broken");
	printf("%s\n", text(json_get(s->info, "broken"), b1, sizeof(b1)));
	F("kernel");
	v = json_get(s->info, "kernel_broken");
	if (!json_object_is_type(v, json_type_boolean))
		printf("-\n");
	else if (json_object_get_boolean(v))
		printf("broken (a reply came later than msg_timeout; destroy and "
		       "re-create the device)\n");
	else
		printf("ok\n");
	F("in flight");
	printf("%s\n", text(json_get(s->info, "inflight"), b1, sizeof(b1)));
	F("daemon");
	if (s->daemon == VCTL_DAEMON_ALIVE)
		printf("running, pid %d\n", (int)s->pid);
	else
		printf("%s\n", s->daemon == VCTL_DAEMON_DEAD ?
		       "not running (stale pid file)" : "not running");
	F("attached");
	if (s->attached)
		printf("%s %s\n", s->driver[0] ? s->driver : "(no driver)",
		       s->node[0] ? s->node : "");
	else
		printf("no\n");
	F("vdpa");
	if (s->has_vdpa)
		printf("mgmtdev %s, device id %" PRIu32 ", vendor id 0x%" PRIx32
		       ", max vqs %" PRIu32 ", max vq size %" PRIu32 "\n",
		       s->vdpa.mgmtdev, s->vdpa.device_id, s->vdpa.vendor_id,
		       s->vdpa.max_vqs, s->vdpa.max_vq_size);
	else
		printf("-\n");
	F("msg_timeout");
	if (s->has_timeout)
		printf("%" PRIu64 " s\n", s->msg_timeout);
	else
		printf("-\n");
#undef F
}

int vctl_cmd_show(int argc, const char **argv)
{
	const char *state_opt = NULL;
	int json = vctl_global.json;
	struct poptOption options[] = {
		VCTL_JSON_OPTION(json),
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "show",
		.synopsis = "NAME [--json]",
		.description =
			"Show the configuration and state of NAME: live values from its\n"
			"daemon (or the saved config when it is not running), the vdpa\n"
			"device and the kernel's message timeout.",
		.options = options,
		.min_args = 1,
		.max_args = 1,
	};
	struct show s = { 0 };
	char err[VCTL_ERR_MAX];
	const char *args[1], *dir;
	poptContext ctx = NULL;
	int rc;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	s.name = args[0];
	dir = vctl_state_dir(state_opt);
	rc = vctl_state_dir_check(dir, false);
	if (rc)
		goto out;
	if (vctl_check_name(s.name, NULL, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		rc = VCTL_EXIT_USAGE;
		goto out;
	}
	if (!vctl_device_exists(dir, s.name)) {
		vctl_error("no such device '%s' (see 'vdusectl list')", s.name);
		rc = VCTL_EXIT_NOTFOUND;
		goto out;
	}
	s.daemon = vctl_daemon_state(dir, s.name, &s.pid);
	if (s.daemon == VCTL_DAEMON_ALIVE &&
	    vctl_ctl_json(dir, s.name, "info", &s.info, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	s.cfg = vctl_load_config(dir, s.name);
	s.attached = vctl_attached(s.name, s.driver, sizeof(s.driver), s.node,
				   sizeof(s.node)) == 1;
	s.has_vdpa = s.attached && vdu_vdpa_dev_get(s.name, &s.vdpa) == 0;
	s.has_timeout = read_vduse_attr(s.name, "msg_timeout", &s.msg_timeout) == 0;
	read_vduse_attr(s.name, "bounce_size", &s.bounce_size);
	if (json)
		print_json(&s);
	else
		print_text(&s);
	rc = VCTL_EXIT_OK;
out:
	json_free(s.info);
	json_free(s.cfg);
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}
