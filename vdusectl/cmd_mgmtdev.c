/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl mgmtdev: the vdpa management devices (vduse is one). */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdusectl.h"

/* supported_classes is a mask of 1 << virtio device id. */
static void classes(uint64_t mask, char *buf, size_t len)
{
	static const struct { unsigned id; const char *name; } known[] = {
		{ 1, "net" }, { 2, "block" }, { 3, "console" }, { 4, "rng" },
		{ 9, "9p" }, { 16, "gpu" }, { 26, "fs" },
	};
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		int n;

		if (!(mask & (1ull << known[i].id)))
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off ? "," : "",
			     known[i].name);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

int vctl_cmd_mgmtdev(int argc, const char **argv)
{
	const char *state_opt = NULL;
	int json = vctl_global.json;
	struct poptOption options[] = {
		VCTL_JSON_OPTION(json),
		VCTL_COMMON_OPTIONS(state_opt),
		POPT_TABLEEND
	};
	const struct vctl_cmdline cl = {
		.cmd = "mgmtdev",
		.synopsis = "[--json]",
		.description =
			"List the vdpa management devices (vdpa mgmtdev show); VDUSE\n"
			"devices are added through the one called 'vduse'.",
		.options = options,
		.min_args = 0,
		.max_args = 0,
	};
	struct vdu_vdpa_mgmtdev *m = NULL;
	char err[VCTL_ERR_MAX];
	const char *args[1];
	poptContext ctx = NULL;
	int rc, n;

	rc = vctl_parse_cmd(&cl, argc, argv, &ctx, args);
	if (rc >= 0)
		goto out;
	n = vdu_vdpa_mgmtdev_list(&m);
	if (n < 0) {
		vctl_msg_vdpa(err, sizeof(err), "list", "management devices", n);
		vctl_error("%s", err);
		rc = VCTL_EXIT_FAIL;
		goto out;
	}
	if (json) {
		struct json_object *o = json_object_new_object();
		struct json_object *arr = json_object_new_array();

		if (o && arr) {
			jo_add(o, "mgmtdevs", arr);
			for (int i = 0; i < n; i++) {
				struct json_object *e = json_object_new_object();

				if (!e)
					continue;
				jo_str(e, "name", m[i].name);
				jo_str(e, "bus", m[i].bus[0] ? m[i].bus : NULL);
				jo_u64(e, "max_vqs", m[i].max_vqs);
				jo_u64(e, "supported_classes", m[i].supported_classes);
				jo_strf(e, "dev_features", "0x%016" PRIx64, m[i].dev_features);
				json_object_array_add(arr, e);
			}
			puts(jv_text(o));
		} else {
			json_object_put(arr);
			puts("{\"mgmtdevs\":[]}");
		}
		json_object_put(o);
	} else {
		printf("%-24s %-8s %8s %s\n", "NAME", "BUS", "MAX_VQS",
		       "CLASSES");
		for (int i = 0; i < n; i++) {
			char cls[128];

			classes(m[i].supported_classes, cls, sizeof(cls));
			printf("%-24s %-8s %8" PRIu32 " %s\n", m[i].name,
			       m[i].bus[0] ? m[i].bus : "-", m[i].max_vqs, cls);
		}
	}
	rc = VCTL_EXIT_OK;
out:
	free(m);
	free((void *)state_opt);
	poptFreeContext(ctx);
	return rc;
}
