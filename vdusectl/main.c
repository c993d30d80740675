/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl: command dispatch, --help and --version. */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdusectl.h"

struct command {
	const char *name;
	int (*fn)(int argc, const char **argv);
	const char *summary;
	bool json; /* has JSON output (-j/--json) */
};

static const struct command commands[] = {
	{ "create", vctl_cmd_create, "create a device and start its daemon", false },
	{ "attach", vctl_cmd_attach, "attach a device to a vdpa bus driver, print its node", false },
	{ "detach", vctl_cmd_detach, "detach a device from the vdpa bus", false },
	{ "destroy", vctl_cmd_destroy, "stop the daemon and destroy the device", false },
	{ "recover", vctl_cmd_recover, "start a new daemon for a device whose daemon died", false },
	{ "list", vctl_cmd_list, "list devices", true },
	{ "show", vctl_cmd_show, "show one device in detail", true },
	{ "stats", vctl_cmd_stats, "per queue I/O statistics", true },
	{ "resize", vctl_cmd_resize, "change a running device's size", false },
	{ "mgmtdev", vctl_cmd_mgmtdev, "list vdpa management devices", true },
};

struct vctl_global vctl_global = { .log_level = VDU_LOG_INFO };

static const char *const level_names[] = {
	[VDU_LOG_ERR] = "err", [VDU_LOG_WARNING] = "warning",
	[VDU_LOG_NOTICE] = "notice", [VDU_LOG_INFO] = "info",
	[VDU_LOG_DEBUG] = "debug",
};

int vctl_check_log_level(const char *s, int *out, char *err, size_t errlen)
{
	for (int l = VDU_LOG_ERR; l <= VDU_LOG_DEBUG; l++)
		if (!strcmp(s, level_names[l]) ||
		    (l == VDU_LOG_ERR && !strcmp(s, "error"))) {
			*out = l;
			return 0;
		}
	snprintf(err, errlen,
		 "--log-level must be err, warning, notice, info or debug (got '%s')",
		 s);
	return -1;
}

void vctl_error(const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* Always exactly one line. */
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "vdusectl: %s\n", buf);
}

void vctl_print_exit_codes(FILE *f)
{
	fputs("\nExit status:\n"
	      "  0  success\n"
	      "  1  failure\n"
	      "  2  usage error (bad command line)\n"
	      "  3  no such device\n", f);
}

static void usage(FILE *f)
{
	fputs("Usage: vdusectl [GLOBAL OPTIONS] COMMAND [OPTIONS]\n"
	      "       vdusectl COMMAND --help\n"
	      "       vdusectl --version | --help\n"
	      "\nBlock devices in userspace over the kernel's VDUSE interface.\n"
	      "\nCommands:\n", f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fputs("\nGlobal options (also accepted after the command):\n"
	      "  -j, --json           JSON output (list, show, stats, mgmtdev)\n"
	      "  -v, --verbose        log debug messages (same as --log-level debug)\n"
	      "  --log-level LEVEL    err, warning, notice, info (default) or debug\n"
	      "\nEvery command takes --state-dir DIR (default " VCTL_STATE_DIR_DEFAULT
	      ", or $" VCTL_STATE_DIR_ENV ").\n", f);
	vctl_print_exit_codes(f);
	fputs("\nSee vdusectl(8).\n", f);
}

/* Global options before the command: how many argv entries they took,
 * or -1 after a message. */
static int global_options(int argc, const char **av)
{
	char err[VCTL_ERR_MAX];
	int i;

	for (i = 1; i < argc && av[i][0] == '-'; i++) {
		const char *a = av[i];

		if (!strcmp(a, "-j") || !strcmp(a, "--json")) {
			vctl_global.json = true;
		} else if (!strcmp(a, "--state-dir") ||
			   !strncmp(a, "--state-dir=", 12)) {
			/* Every command reads it from there unless given
			 * after the command too. */
			const char *v = a[11] == '=' ? a + 12 : av[++i];

			if (!v || !*v) {
				vctl_error("--state-dir needs a directory");
				return -1;
			}
			setenv(VCTL_STATE_DIR_ENV, v, 1);
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			vctl_global.log_level = VDU_LOG_DEBUG;
		} else if (!strcmp(a, "--log-level") ||
			   !strncmp(a, "--log-level=", 12)) {
			const char *v = a[11] == '=' ? a + 12 : av[++i];

			if (!v) {
				vctl_error("--log-level needs a level: err, warning, notice, info or debug");
				return -1;
			}
			if (vctl_check_log_level(v, &vctl_global.log_level, err,
						 sizeof(err)) < 0) {
				vctl_error("%s", err);
				return -1;
			}
		} else {
			break; /* --help, --version or unknown: main() says */
		}
	}
	return i - 1;
}

int main(int argc, char **argv)
{
	const char **av = (const char **)argv;
	int skip = global_options(argc, av);

	if (skip < 0)
		return VCTL_EXIT_USAGE;
	av += skip;
	argc -= skip;
	if (argc < 2) {
		vctl_error("missing command: see 'vdusectl --help'");
		return VCTL_EXIT_USAGE;
	}
	if (!strcmp(av[1], "--help") || !strcmp(av[1], "-h") ||
	    !strcmp(av[1], "help")) {
		usage(stdout);
		return VCTL_EXIT_OK;
	}
	if (!strcmp(av[1], "--version") || !strcmp(av[1], "-V")) {
		printf("vdusectl %s (libvduse %s)\n", PACKAGE_VERSION,
		       vdu_version());
		return VCTL_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(av[1], commands[i].name))
			continue;
		if (vctl_global.json && !commands[i].json) {
			vctl_error("%s has no JSON output: remove -j/--json",
				   commands[i].name);
			return VCTL_EXIT_USAGE;
		}
		return commands[i].fn(argc - 1, av + 1);
	}
	if (av[1][0] == '-')
		vctl_error("unknown option '%s': put the command first, see 'vdusectl --help'",
			   av[1]);
	else
		vctl_error("unknown command '%s': see 'vdusectl --help'", av[1]);
	return VCTL_EXIT_USAGE;
}
