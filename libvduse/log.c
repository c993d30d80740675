/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The library's only way to say anything: a caller-set callback. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static vdu_log_fn log_fn;
static void *log_opaque;
static int log_max = VDU_LOG_INFO;

void vdu_set_log(vdu_log_fn fn, void *opaque, int max_level)
{
	log_fn = fn;
	log_opaque = opaque;
	log_max = max_level;
}

void vdu_log(int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!log_fn || level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_fn(log_opaque, level, buf);
}

const char *vdu_version(void)
{
	return PACKAGE_VERSION;
}
