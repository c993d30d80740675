/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * --auto-recover: a small parent process that runs the device daemon as
 * its child and, when the child dies by a signal (kill -9, a crash),
 * starts a new one in recovery mode.  A daemon that exits by itself
 * (destroy, SIGTERM, a startup error) ends the supervisor too.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "vdusectl.h"

#define RESTART_WINDOW_S 60 /* give up after RESTART_MAX deaths in this */
#define RESTART_MAX 5

static volatile sig_atomic_t child_pid, terminating;

static void forward(int sig)
{
	terminating = 1;
	if (child_pid > 0)
		kill(child_pid, sig);
}

static void say(FILE *log, const char *name, const char *fmt, ...)
	VCTL_PRINTF(3, 4);
/* Background: the log file, reopened before each message (rare), so that
 * a file logrotate moved away is not written on. */
static const char *bg_log_path;

static void say(FILE *log, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (!log)
		return;
	if (bg_log_path)
		vctl_reopen_stderr(bg_log_path);
	fprintf(log, "vdusectl[%d] supervisor of %s: ", (int)getpid(), name);
	va_start(ap, fmt);
	vfprintf(log, fmt, ap);
	va_end(ap);
	fputc('\n', log);
	fflush(log);
}

int vctl_supervise(const struct vctl_create *c, int report_fd)
{
	struct vctl_create run = *c;
	struct sigaction sa = { .sa_handler = forward };
	time_t window = time(NULL);
	unsigned deaths = 0;
	char path[4096];
	FILE *log = stderr;
	sigset_t block, old_mask;

	run.auto_recover = false;
	if (report_fd >= 0) {
		/* Background: detach like the daemon, keep none of the
		 * caller's fds (a shell's $(...) would wait for them), and
		 * log -- ours and every later daemon's -- to its file. */
		if (setsid() < 0 || chdir("/") < 0 ||
		    vctl_state_dir_prepare(c->state_dir, path, sizeof(path)) < 0 ||
		    vctl_path(path, sizeof(path), c->state_dir, c->name,
			      VCTL_F_LOG) < 0)
			return VCTL_EXIT_FAIL;
		vctl_close_inherited_fds(report_fd);
		if (vctl_redirect_stdio(path) < 0)
			return VCTL_EXIT_FAIL;
		bg_log_path = path;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);

	for (;;) {
		int st;
		pid_t pid;

		/* A stop request must reach the child even if it comes
		 * right around the fork. */
		sigprocmask(SIG_BLOCK, &block, &old_mask);
		pid = fork();
		if (pid < 0) {
			say(log, c->name, "fork failed: %s", strerror(errno));
			return VCTL_EXIT_FAIL;
		}
		if (pid == 0) {
			/* Default dispositions; the daemon sets its own. */
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			sigprocmask(SIG_SETMASK, &old_mask, NULL);
			exit(vctl_daemon_main(&run, report_fd));
		}
		child_pid = pid;
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		if (terminating)
			kill(pid, SIGTERM);
		/* Only the first daemon has someone waiting for its report. */
		if (report_fd >= 0) {
			close(report_fd);
			report_fd = -1;
		}
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		child_pid = 0;
		if (WIFEXITED(st)) {
			say(log, c->name, "daemon exited with status %d", WEXITSTATUS(st));
			return WEXITSTATUS(st);
		}
		if (terminating || WTERMSIG(st) == SIGTERM ||
		    WTERMSIG(st) == SIGINT) {
			/* Stopped on purpose (before its handlers were up). */
			say(log, c->name, "daemon stopped by signal %d",
			    WTERMSIG(st));
			return VCTL_EXIT_OK;
		}
		say(log, c->name, "daemon killed by signal %d: recovering",
		    WTERMSIG(st));
		if (time(NULL) - window > RESTART_WINDOW_S) {
			window = time(NULL);
			deaths = 0;
		}
		if (++deaths > RESTART_MAX) {
			say(log, c->name, "giving up after %d restarts in a minute "
			    "(vdusectl recover to try again)", RESTART_MAX);
			return VCTL_EXIT_FAIL;
		}
		run.recover = true;
	}
}
