/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl: command dispatch, --help and --version. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vdusectl.h"

struct command {
	const char *name;
	int (*fn)(int argc, const char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "create", vctl_cmd_create, "create a device and start its daemon" },
	{ "attach", vctl_cmd_attach, "attach a device to a vdpa bus driver, print its node" },
	{ "detach", vctl_cmd_detach, "detach a device from the vdpa bus" },
	{ "destroy", vctl_cmd_destroy, "stop the daemon and destroy the device" },
	{ "recover", vctl_cmd_recover, "start a new daemon for a device whose daemon died" },
	{ "list", vctl_cmd_list, "list devices" },
	{ "show", vctl_cmd_show, "show one device in detail" },
	{ "stats", vctl_cmd_stats, "per queue I/O statistics" },
	{ "mgmtdev", vctl_cmd_mgmtdev, "list vdpa management devices" },
};

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
	fputs("Usage: vdusectl COMMAND [OPTIONS]\n"
	      "       vdusectl COMMAND --help\n"
	      "       vdusectl --version | --help\n"
	      "\nBlock devices in userspace over the kernel's VDUSE interface.\n"
	      "\nCommands:\n", f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fputs("\nEvery command takes --state-dir DIR (default " VCTL_STATE_DIR_DEFAULT
	      ", or $" VCTL_STATE_DIR_ENV ").\n", f);
	vctl_print_exit_codes(f);
	fputs("\nSee vdusectl(8).\n", f);
}

int main(int argc, char **argv)
{
	const char **av = (const char **)argv;

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
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(av[1], commands[i].name))
			return commands[i].fn(argc - 1, av + 1);
	if (av[1][0] == '-')
		vctl_error("unknown option '%s': put the command first, see 'vdusectl --help'",
			   av[1]);
	else
		vctl_error("unknown command '%s': see 'vdusectl --help'", av[1]);
	return VCTL_EXIT_USAGE;
}
