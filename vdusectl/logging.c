/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Log callback for the daemon: timestamped lines on a stream. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vdusectl.h"

static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[VCTL_ERR_MAX];

static const char *level_name(int level)
{
	switch (level) {
	case VDU_LOG_ERR: return "error";
	case VDU_LOG_WARNING: return "warning";
	case VDU_LOG_NOTICE: return "notice";
	case VDU_LOG_INFO: return "info";
	case VDU_LOG_DEBUG: return "debug";
	default: return "log";
	}
}

static void log_cb(void *opaque, int level, const char *msg)
{
	FILE *f = opaque;
	struct timeval tv;
	struct tm tm;
	char ts[32];

	if (level <= VDU_LOG_ERR) {
		pthread_mutex_lock(&last_lock);
		snprintf(last_error, sizeof(last_error), "%s", msg);
		pthread_mutex_unlock(&last_lock);
	}
	if (!f)
		return; /* only keep the last error */
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	if (!strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm))
		ts[0] = '\0';
	flockfile(f);
	fprintf(f, "%s.%03ld vdusectl[%ld] %s: %s\n", ts,
		(long)(tv.tv_usec / 1000), (long)getpid(), level_name(level),
		msg);
	fflush(f);
	funlockfile(f);
}

void vctl_log_setup(FILE *f, int max_level)
{
	vdu_set_log(log_cb, f, max_level);
}

void vctl_log_last_error(char *buf, size_t len)
{
	pthread_mutex_lock(&last_lock);
	snprintf(buf, len, "%s", last_error);
	pthread_mutex_unlock(&last_lock);
}

void vctl_log_clear_error(void)
{
	pthread_mutex_lock(&last_lock);
	last_error[0] = '\0';
	pthread_mutex_unlock(&last_lock);
}
