/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl list: devices in the state directory and in the kernel. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdusectl.h"

struct row {
	const char *name;
	char backend[4096];     /* a built-in's name or a plugin's path */
	bool has_size, has_queues;
	uint64_t size, queues;
	char driver[64], node[128];
	enum vctl_daemon_state daemon;
	pid_t pid;
};

static void fill(struct row *r, const char *dir, const char *name)
{
	struct json_object *cfg = vctl_load_config(dir, name);
	const char *be;

	memset(r, 0, sizeof(*r));
	r->name = name;
	be = json_get_str(cfg, "backend");
	snprintf(r->backend, sizeof(r->backend), "%s", be ? be : "");
	r->has_size = json_get_u64(cfg, "size", &r->size) == 0;
	r->has_queues = json_get_u64(cfg, "queues", &r->queues) == 0;
	json_free(cfg);
	r->daemon = vctl_daemon_state(dir, name, &r->pid);
	if (vctl_attached(name, r->driver, sizeof(r->driver), r->node,
			  sizeof(r->node)) != 1)
		r->driver[0] = r->node[0] = '\0';
}

static const char *daemon_text(const struct row *r)
{
	switch (r->daemon) {
	case VCTL_DAEMON_ALIVE: return "running";
	case VCTL_DAEMON_DEAD: return "dead";
	default: return "none";
	}
}

static void print_json(struct row *rows, int n)
{
	struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array();

	if (!o || !arr) {
		json_object_put(o);
		json_object_put(arr);
		puts("{\"devices\":[]}");
		return;
	}
	jo_add(o, "devices", arr);
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		struct json_object *e = json_object_new_object();

		if (!e)
			continue;
		jo_str(e, "name", r->name);
		jo_str(e, "backend", r->backend[0] ? r->backend : NULL);
		if (r->has_size)
			jo_u64(e, "size", r->size);
		else
			jo_null(e, "size");
		if (r->has_queues)
			jo_u64(e, "queues", r->queues);
		else
			jo_null(e, "queues");
		jo_str(e, "driver", r->driver[0] ? r->driver : NULL);
		jo_str(e, "node", r->node[0] ? r->node : NULL);
		jo_bool(e, "daemon", r->daemon == VCTL_DAEMON_ALIVE);
		if (r->daemon == VCTL_DAEMON_ALIVE && r->pid > 0)
			jo_u64(e, "pid", (uint64_t)r->pid);
		else
			jo_null(e, "pid");
		json_object_array_add(arr, e);
	}
	puts(jv_text(o));
	json_object_put(o);
}

static void print_table(struct row *rows, int n)
{
	int w = 4;

	for (int i = 0; i < n; i++)
		if ((int)strlen(rows[i].name) > w)
			w = (int)strlen(rows[i].name);
	printf("%-*s  %-8s %8s %6s %-12s %-18s %s\n", w, "NAME", "BACKEND",
	       "SIZE", "QUEUES", "DRIVER", "NODE", "DAEMON");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		char size[32] = "-", queues[16] = "-";

		if (r->has_size)
			vctl_format_size(r->size, size, sizeof(size));
		if (r->has_queues)
			snprintf(queues, sizeof(queues), "%" PRIu64, r->queues);
		const char *be = strrchr(r->backend, '/');

		/* A plugin by its file name; --json has the path. */
		be = be ? be + 1 : r->backend[0] ? r->backend : "-";
		printf("%-*s  %-8s %8s %6s %-12s %-18s %s\n", w, r->name,
		       be, size, queues,
		       r->driver[0] ? r->driver : "-",
		       r->node[0] ? r->node : "-", daemon_text(r));
	}
}

int vctl_cmd_list(int argc, const char **argv)
{
	const char *state_opt = NULL;
	int json = vctl_global.json;
	struct poptOption options[] = {
		VCTL_JSON_OPTION(json),
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "list",
		.synopsis = "[--json]",
		.description =
			"List the devices known from the state directory and the kernel\n"
			"(/sys/class/vduse), with their attachment and daemon state.",
		.options = options,
		.min_args = 0,
		.max_args = 0,
	};
	const char *dir, *args[1];
	struct row *rows = NULL;
	poptContext ctx = NULL;
	char **names = NULL;
	int rc, n;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	dir = vctl_state_dir(state_opt);
	rc = vctl_state_dir_check(dir, false);
	if (rc)
		goto out;
	n = vctl_list_names(dir, &names);
	if (n < 0) {
		vctl_error("cannot read %s: %s", dir, strerror(-n));
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	rows = calloc((size_t)n + 1, sizeof(*rows));
	if (!rows) {
		vctl_error("out of memory");
		rc = VCTL_EXIT_FAIL;
		goto out_names;
	}
	for (int i = 0; i < n; i++)
		fill(&rows[i], dir, names[i]);
	if (json)
		print_json(rows, n);
	else
		print_table(rows, n);
	rc = VCTL_EXIT_OK;
	free(rows);
out_names:
	vctl_free_names(names, n);
out:
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}
