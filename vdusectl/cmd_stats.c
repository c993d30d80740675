/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl stats: per queue counters from the daemon. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "vdusectl.h"

static uint64_t u64(const struct json_object *o, const char *key)
{
	uint64_t v = 0;

	json_get_u64(o, key, &v);
	return v;
}

static void print_table(const struct json_object *queues)
{
	printf("%5s %12s %16s %16s %8s %8s %12s %12s %s\n", "QUEUE",
	       "REQUESTS", "READ_BYTES", "WRITE_BYTES", "ERRORS", "INFLIGHT",
	       "IRQS", "KICKS", "STATE");
	for (size_t i = 0; i < json_object_array_length(queues); i++) {
		const struct json_object *q = json_object_array_get_idx(queues, i);
		bool enabled = false, broken = false;

		json_get_bool(q, "enabled", &enabled);
		json_get_bool(q, "broken", &broken);
		printf("%5" PRIu64 " %12" PRIu64 " %16" PRIu64 " %16" PRIu64
		       " %8" PRIu64 " %8" PRIu64 " %12" PRIu64 " %12" PRIu64
		       " %s\n",
		       u64(q, "index"), u64(q, "requests"), u64(q, "read_bytes"),
		       u64(q, "write_bytes"), u64(q, "errors"),
		       u64(q, "inflight"), u64(q, "irqs"), u64(q, "kicks"),
		       broken ? "broken" : enabled ? "enabled" : "disabled");
	}
}

int vctl_cmd_stats(int argc, const char **argv)
{
	const char *state_opt = NULL;
	int json = vctl_global.json;
	struct poptOption options[] = {
		VCTL_JSON_OPTION(json),
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "stats",
		.synopsis = "NAME [--json]",
		.description =
			"Per queue counters of NAME from its daemon: completed requests,\n"
			"bytes read and written, errors, requests in flight, interrupts\n"
			"injected and kicks received.",
		.options = options,
		.min_args = 1,
		.max_args = 1,
	};
	const struct json_object *queues;
	struct json_object *reply = NULL;
	char err[VCTL_ERR_MAX];
	const char *args[1], *dir;
	poptContext ctx = NULL;
	pid_t pid;
	int rc;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	dir = vctl_state_dir(state_opt);
	rc = vctl_state_dir_check(dir, false);
	if (rc)
		goto out;
	if (vctl_check_name(args[0], NULL, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		rc = VCTL_EXIT_USAGE;
		goto out;
	}
	if (!vctl_device_exists(dir, args[0])) {
		vctl_error("no such device '%s' (see 'vdusectl list')", args[0]);
		rc = VCTL_EXIT_NOTFOUND;
		goto out;
	}
	rc = VCTL_EXIT_FAIL;
	if (vctl_daemon_state(dir, args[0], &pid) != VCTL_DAEMON_ALIVE) {
		vctl_error("device %s: daemon not running (no statistics)", args[0]);
		goto out;
	}
	if (vctl_ctl_json(dir, args[0], "stats", &reply, err, sizeof(err)) < 0) {
		vctl_error("%s", err);
		goto out;
	}
	queues = json_get(reply, "queues");
	if (!json_object_is_type(queues, json_type_array)) {
		vctl_error("daemon of %s sent a malformed stats reply", args[0]);
		goto out;
	}
	if (json) {
		puts(jv_text(reply));
	} else {
		print_table(queues);
	}
	rc = VCTL_EXIT_OK;
out:
	json_free(reply);
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}
