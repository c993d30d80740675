/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Log callback for the daemon: timestamped lines on a stream. */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vdusectl.h"

static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[VCTL_ERR_MAX];
/* stderr is connected to the journal: it timestamps and reads the level
 * from a "<N>" prefix (sd-daemon(3)). */
static bool to_journal;

/* $JOURNAL_STREAM is "DEV:INODE" of the stream systemd gave us. */
static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return env && sscanf(env, "%llu:%llu", &dev, &ino) == 2 &&
	       fstat(STDERR_FILENO, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

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
	if (to_journal && f == stderr) {
		flockfile(f);
		fprintf(f, "<%d>%s\n", level, msg);
		fflush(f);
		funlockfile(f);
		return;
	}
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
	to_journal = f == stderr && stderr_is_journal();
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
