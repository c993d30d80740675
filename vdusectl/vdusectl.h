/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdusectl: shared declarations of the command line tool. */
#ifndef VDUSECTL_H
#define VDUSECTL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <popt.h>

#include "libvduse.h"

#if defined(__GNUC__)
#define VCTL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VCTL_PRINTF(a, b)
#endif

/* Exit codes (documented in --help and vdusectl(8)). */
enum {
	VCTL_EXIT_OK = 0,
	VCTL_EXIT_FAIL = 1,     /* runtime failure */
	VCTL_EXIT_USAGE = 2,    /* bad command line */
	VCTL_EXIT_NOTFOUND = 3, /* no such device */
};

#define VCTL_STATE_DIR_DEFAULT "/run/vduse"
#define VCTL_STATE_DIR_ENV "VDUSE_STATE_DIR"
#define VCTL_CTL_LINE_MAX 256        /* control request line, bytes */
#define VCTL_CTL_TIMEOUT_MS 5000     /* client side of the control socket */
#define VCTL_DRAIN_TIMEOUT_MS 30000  /* daemon: wait for in-flight I/O */
#define VCTL_STOP_WAIT_MS 35000      /* destroy: wait for the daemon */
#define VCTL_BIND_TIMEOUT_MS 10000   /* attach: wait for the node */
#define VCTL_STARTUP_TIMEOUT_MS 60000 /* create: wait for the daemon's OK */
#define VCTL_PARAMS_MAX 32
#define VCTL_ERR_MAX 512
/* Split by default: packed measured within the noise of it over three
 * boots (tests/bench/results-null.md, README). */
#define VCTL_RING_PACKED_DEFAULT false
/* --poll-us auto: this maximum while the queue threads leave at least
 * half of the CPUs to the submitters, else 0 (tests/bench/results-poll.md:
 * one queue on 2 vCPUs: QD1 latency halved, QD32 unchanged); 0 for
 * network backends. */
#define VCTL_POLL_AUTO_US 500

/* A macro's value as a string literal, for help texts. */
#define VCTL_STR_(x) #x
#define VCTL_STR(x) VCTL_STR_(x)

/* ------------------------------------------------------------ main.c */

/* Options given before the command (or, through VCTL_COMMON_OPTIONS,
 * after it). */
struct vctl_global {
	bool json;      /* -j/--json */
	int log_level;  /* VDU_LOG_*: -v/--verbose, --log-level */
};
extern struct vctl_global vctl_global;
int vctl_check_log_level(const char *s, int *out, char *err, size_t errlen);

/* Print "vdusectl: <msg>\n" on stderr. */
void vctl_error(const char *fmt, ...) VCTL_PRINTF(1, 2);
void vctl_print_exit_codes(FILE *f);

/* ------------------------------------------------------------ opts.c */

/* popt option values handled by vctl_parse_cmd(). */
#define VCTL_OPT_HELP 0x7001
#define VCTL_OPT_VERBOSE 0x7002
#define VCTL_OPT_LOG_LEVEL 0x7003

/* Options every command takes: --state-dir DIR, the log level, --help. */
#define VCTL_COMMON_OPTIONS(state_dir_var)                                   \
	{ "state-dir", '\0', POPT_ARG_STRING, &(state_dir_var), 0,            \
	  "state directory (default " VCTL_STATE_DIR_DEFAULT                  \
	  ", or $" VCTL_STATE_DIR_ENV ")", "DIR" },                           \
	{ "verbose", 'v', POPT_ARG_NONE, NULL, VCTL_OPT_VERBOSE,              \
	  "log debug messages (--log-level debug)", NULL },                   \
	{ "log-level", '\0', POPT_ARG_STRING, NULL, VCTL_OPT_LOG_LEVEL,       \
	  "err, warning, notice, info (default) or debug", "LEVEL" },         \
	{ "help", 'h', POPT_ARG_NONE, NULL, VCTL_OPT_HELP,                    \
	  "show this help and exit", NULL }
/* -j/--json for commands with JSON output (default: a global -j). */
#define VCTL_JSON_OPTION(json_var)                                           \
	{ "json", 'j', POPT_ARG_NONE, &(json_var), 0, "print JSON", NULL }

struct vctl_cmdline {
	const char *cmd;          /* "create", ... */
	const char *synopsis;     /* arguments after the command name */
	const char *description;  /* one paragraph for --help */
	const struct poptOption *options;
	int min_args, max_args;   /* positional arguments */
	/* Optional: more --help, printed after the options are parsed;
	 * returns the exit code. */
	int (*help_more)(FILE *f, void *arg);
	void *help_arg;
};

/*
 * Parse argv (argv[0] is the command name).  Returns -1 when the command
 * should run (positional args in args[], at most max_args), otherwise the
 * exit code to return (0 after --help, 2 on a usage error, message
 * printed).  *ctx must be freed with poptFreeContext() when non-NULL.
 */
int vctl_parse_cmd(const struct vctl_cmdline *cl, int argc, const char **argv,
		   poptContext *ctx, const char **args);

/* Format a one-line message into err; returns -1. */
int vctl_fail(char *err, size_t errlen, const char *fmt, ...) VCTL_PRINTF(3, 4);
/* --state-dir, else $VDUSE_STATE_DIR, else /run/vduse. */
const char *vctl_state_dir(const char *opt);

/*
 * Validators: 0 on success, -1 with a one-line message (no "vdusectl: "
 * prefix, no newline) in err, telling how to fix it.
 */
int vctl_check_name(const char *name, const char *state_dir, char *err,
		    size_t errlen);
int vctl_check_size(const char *opt, const char *s, uint64_t *out, char *err,
		    size_t errlen);
int vctl_check_queues(const char *s, unsigned *out, char *err, size_t errlen);
int vctl_check_queue_size(const char *s, unsigned *out, char *err,
			  size_t errlen);
int vctl_check_block_size(const char *s, uint32_t *out, char *err,
			  size_t errlen);
int vctl_check_serial(const char *s, char *err, size_t errlen);
int vctl_check_driver(const char *s, char *err, size_t errlen);
int vctl_check_kv(const char *s, char *err, size_t errlen);
/* A CPU list "0,2-3" into cpus[] (at most max entries, in order). */
int vctl_check_cpu_list(const char *opt, const char *s, int *cpus,
			unsigned max, unsigned *count, char *err,
			size_t errlen);
int vctl_check_poll_us(const char *s, unsigned queues, unsigned *out,
		       char *err, size_t errlen);
int vctl_check_bounce_size(const char *s, uint32_t *out, char *err,
			   size_t errlen);
/* --bounce auto|user|kernel -> VDU_BOUNCE_*; the name of a mode. */
int vctl_check_bounce(const char *s, unsigned *mode, char *err, size_t errlen);
const char *vctl_bounce_name(unsigned mode);
int vctl_check_ring(const char *s, bool *packed, char *err, size_t errlen);
/* Strict decimal unsigned (no sign, no spaces, no trailing junk). */
int vctl_parse_ull(const char *s, unsigned long long *out);
/* "1G" when exact, else bytes. */
void vctl_format_size(uint64_t bytes, char *buf, size_t len);

/* --------------------------------------------------------- create spec */

/* ----------------------------------------------------------- plugin.c */

#define VCTL_BACKEND_PATH_ENV "VDUSE_BACKEND_PATH"

struct vctl_backend {
	const struct vdu_plugin *plugin; /* a built-in, or &desc */
	struct vdu_plugin desc;   /* a plugin's descriptor, zero-filled past
				   * the size it was built with */
	char ref[4096];           /* what recover finds it by: a built-in's
				   * name or the plugin's absolute path */
};

/*
 * --backend SPEC: a path (any '/') loads that plugin; a name is a
 * built-in (or alias), else NAME.so in $VDUSE_BACKEND_PATH, then the
 * installed backend directory.  0, or -1 with a one-line message.
 */
int vctl_backend_find(const char *spec, struct vctl_backend *b, char *err,
		      size_t errlen);
/* "null, file, nbd" */
void vctl_backend_names(char *buf, size_t len);
/* The directories searched for NAME.so, ':'-separated. */
const char *vctl_backend_dirs(void);
/* --help texts: every backend; one backend's keys. */
void vctl_backends_help(FILE *f);
void vctl_backend_help(FILE *f, const struct vdu_plugin *p);

/* --------------------------------------------------------- create spec */

struct vctl_create {
	const char *name;
	const char *backend_name; /* be.ref */
	const struct vdu_plugin *plugin;
	struct vctl_backend be;
	struct vdu_param params[VCTL_PARAMS_MAX];
	size_t nparams;
	unsigned queues;
	unsigned queue_size;
	uint32_t block_size;
	const char *serial;       /* NULL: the library uses the name */
	bool read_only;
	bool ring_packed;         /* offer VIRTIO_F_RING_PACKED */
	unsigned poll_us;         /* busy-poll after a batch, 0: off */
	const char *cpu_list;     /* as given, NULL: threads not pinned */
	int cpus[VDU_QUEUES_MAX]; /* one per queue when cpu_list */
	uint32_t bounce_size;     /* bytes, 0: the kernel's default */
	unsigned bounce_mode;     /* VDU_BOUNCE_*: whose memory backs it */
	const char *irq_cpu_list; /* as given: auto, follow, driver or a list */
	enum { VCTL_IRQ_FOLLOW, VCTL_IRQ_DRIVER, VCTL_IRQ_LIST } irq_mode;
	int irq_cpus[VDU_QUEUES_MAX]; /* one per queue when VCTL_IRQ_LIST */
	bool attach;
	const char *driver;       /* "virtio_vdpa" or "vhost_vdpa" */
	bool foreground;
	bool auto_recover;        /* a supervisor restarts a killed daemon */
	bool recover;             /* take over the existing kernel device */
	const char *state_dir;
	bool dry_run;             /* open the backend, print, create nothing */
	char *owned[VCTL_PARAMS_MAX * 2]; /* copies: -o KEY=VALUE, paths */
	size_t nowned;
};

/*
 * Turn the create options into a spec, the backend's parameters checked
 * by its own descriptor (no device or kernel involved): 0, or -1 with the
 * one-line message in err.  Loads a plugin; file name values become
 * absolute (the daemon runs in /).
 */
struct vctl_create_args {
	const char *backend, *size, *path, *url, *image, *queues, *queue_size,
		*block_size, *serial, *driver, *ring, *cpu_list, *poll_us,
		*bounce_size, *irq_cpu_list, *bounce;
	const char **extra; /* -o KEY=VALUE, NULL-terminated or NULL */
	int read_only, attach, foreground, auto_recover, dry_run;
};
int vctl_create_spec(const struct vctl_create_args *a, const char *name,
		     const char *state_dir, struct vctl_create *out, char *err,
		     size_t errlen);
void vctl_create_spec_free(struct vctl_create *c);

/* ------------------------------------------------------------ json.c */

/* Building JSON (json-c objects; the caller puts the top one). */
/* A string value; NULL gives null, invalid UTF-8 becomes U+FFFD. */
struct json_object *jv_str(const char *s);
void jo_str(struct json_object *o, const char *key, const char *s);
void jo_strf(struct json_object *o, const char *key, const char *fmt, ...)
	VCTL_PRINTF(3, 4);
void jo_u64(struct json_object *o, const char *key, uint64_t v);
void jo_bool(struct json_object *o, const char *key, bool v);
void jo_null(struct json_object *o, const char *key);
/* Adds v (owned by o from now on) under key. */
void jo_add(struct json_object *o, const char *key, struct json_object *v);
/* v as compact JSON ("null" for NULL), valid until v changes or is put. */
const char *jv_text(struct json_object *v);

/* Reading goes through json-c: the whole text must be one JSON value.
 * NULL on syntax error or allocation failure. */
struct json_object *json_parse(const char *text);
void json_free(struct json_object *v);
/* v's text: a string's value, a number as written; NULL for others. */
const char *json_text(const struct json_object *v);
const struct json_object *json_get(const struct json_object *obj, const char *key);
const char *json_get_str(const struct json_object *obj, const char *key);
/* 0 when key holds an unsigned integer that fits. */
int json_get_u64(const struct json_object *obj, const char *key, uint64_t *out);
/* 0 when key holds true/false. */
int json_get_bool(const struct json_object *obj, const char *key, bool *out);

/* -------------------------------------------------------- statedir.c */

enum vctl_file { VCTL_F_PID, VCTL_F_SOCK, VCTL_F_JSON, VCTL_F_LOG };

/* DIR/NAME.{pid,sock,json,log}; -ENAMETOOLONG when it does not fit. */
int vctl_path(char *buf, size_t len, const char *dir, const char *name,
	      enum vctl_file f);
/*
 * Create dir (mode 0700) if missing and check it is a real directory (no
 * symlink) owned by us and not writable by others.  -errno with err set.
 */
int vctl_state_dir_prepare(const char *dir, char *err, size_t errlen);
/*
 * $VDUSE_GROUP (a group name or number) at create time lets that group
 * look at the devices: the state directory becomes 0750 and the pid,
 * config and log files and the control socket 0640/0660 of that group,
 * whose members may ask for info and stats but not stop a daemon.
 * *gid is (gid_t)-1 when unset; -EINVAL (err set) for an unknown group.
 */
#define VCTL_GROUP_ENV "VDUSE_GROUP"
int vctl_state_group(gid_t *gid, char *err, size_t errlen);
/* Give an open state file to that group (0640); 0 when there is none. */
int vctl_share_fd(int fd);
/* Before a command uses dir: 0, or an exit code after a message saying
 * this user may not (write: create/destroy..., else: list/show...). */
int vctl_state_dir_check(const char *dir, bool write);
/* Write a whole file atomically (tmp + rename), mode 0600 (0640 with
 * $VDUSE_GROUP). */
int vctl_write_file(const char *path, const char *data, size_t len);
/* Read a small file (<= 1 MiB) into a malloc'd NUL-terminated string. */
int vctl_read_file(const char *path, char **out);

enum vctl_daemon_state {
	VCTL_DAEMON_NONE,    /* no pid file */
	VCTL_DAEMON_DEAD,    /* stale pid file */
	VCTL_DAEMON_ALIVE,
};
/* Looks at DIR/NAME.pid: kill(pid, 0) and the daemon's lock on the file. */
enum vctl_daemon_state vctl_daemon_state(const char *dir, const char *name,
					 pid_t *pid);
/* Remove DIR/NAME.{pid,sock,json}; missing files are fine. */
void vctl_remove_state(const char *dir, const char *name, bool keep_json);
/* /sys/class/vduse/NAME exists. */
bool vctl_kernel_dev_exists(const char *name);
/* State files or a kernel device. */
bool vctl_device_exists(const char *dir, const char *name);
/*
 * Every device name known from DIR (*.pid, *.sock, *.json) and
 * /sys/class/vduse (minus "control"); sorted, unique.  Returns the count
 * or -errno; free with vctl_free_names().
 */
int vctl_list_names(const char *dir, char ***out);
void vctl_free_names(char **names, int n);
/* The saved config DIR/NAME.json, parsed, or NULL. */
struct json_object *vctl_load_config(const char *dir, const char *name);

/* ------------------------------------------------------ ctl_client.c */

/*
 * Send one request line to DIR/NAME.sock and read the one-line reply
 * (malloc'd, newline stripped).  0, or -errno with err set: "daemon not
 * running" when the socket or daemon is gone.
 */
int vctl_ctl_request(const char *dir, const char *name, const char *req,
		     char **reply, char *err, size_t errlen);
/* Request and parse; a reply {"error":..} becomes -EPROTO with its text. */
int vctl_ctl_json(const char *dir, const char *name, const char *req,
		  struct json_object **out, char *err, size_t errlen);
/* Ask the daemon to stop and wait up to VCTL_STOP_WAIT_MS for it. */
int vctl_stop_daemon(const char *dir, const char *name, pid_t pid, char *err,
		     size_t errlen);

/* ----------------------------------------------------------- errmsg.c */

/* Messages for library failures, telling how to fix them. */
void vctl_msg_dev_start(char *buf, size_t len, const char *name, int rc,
			const char *why);
void vctl_msg_vdpa(char *buf, size_t len, const char *what, const char *name,
		   int rc);
/* Checks /sys for the vdpa bus, vduse management device and driver. */
int vctl_vdpa_preflight(const char *driver, char *err, size_t errlen);

/* ------------------------------------------------------------- vdpa.c */

/*
 * vdpa dev add NAME (mgmtdev vduse), bind to driver, wait for the node.
 * On a bind failure the vdpa device is deleted again.
 */
int vctl_attach(const char *name, const char *driver, char *node,
		size_t nodelen, char *err, size_t errlen);
int vctl_detach(const char *name, char *err, size_t errlen);
/* Detach unless the node is in use (mounted, or open by a VM): -EBUSY. */
int vctl_detach_unused(const char *name, char *err, size_t errlen);
/* 1 attached (driver/node filled when known), 0 not, -errno unknown. */
int vctl_attached(const char *name, char *driver, size_t drvlen, char *node,
		  size_t nodelen);

/* ---------------------------------------------------------- logging.c */

/* Send library and tool logs to f (timestamped lines); NULL: print
 * nothing, only keep the last error. */
void vctl_log_setup(FILE *f, int max_level);
/* Last message at VDU_LOG_ERR, or "" (kept to report to the parent). */
void vctl_log_last_error(char *buf, size_t len);
void vctl_log_clear_error(void);

/* ----------------------------------------------------------- daemon.c */

/*
 * Run the device: open the backend, start the kernel device, write the
 * state files, serve the control socket until stopped.  report_fd is the
 * pipe to the parent ("OK\n" / "ERR msg\n") or -1 in the foreground.
 * Returns the process exit code.
 */
int vctl_daemon_main(const struct vctl_create *c, int report_fd);
/* supervise.c: run daemons for c, recovering each one that gets killed,
 * until one exits by itself; returns its exit code. */
int vctl_supervise(const struct vctl_create *c, int report_fd);
/* process.c.  Create and lock (exclusively, without blocking) the pid
 * file at path: the fd in *out; -EWOULDBLOCK when a daemon holds it. */
int vctl_pidfile_lock(const char *path, int *out);
/* Write our pid into the locked pid file. */
int vctl_pidfile_write(int fd);
/* stderr to log_path again (after logrotate moved it). */
int vctl_reopen_stderr(const char *log_path);
/* Background processes: stdin/stdout to /dev/null, stderr to log_path. */
int vctl_redirect_stdio(const char *log_path);
/* Close every inherited fd above stderr except keep. */
void vctl_close_inherited_fds(int keep);

/* -------------------------------------------------------- ctl_server.c */

struct vctl_daemon;
struct event_base;
struct vctl_ctl_server;

struct vctl_ctl_ops {
	/* Fill b with one JSON object (no newline). */
	/* The reply object (the server puts it); NULL: out of memory. */
	struct json_object *(*info)(void *opaque);
	struct json_object *(*stats)(void *opaque);
	/* "resize BYTES [shrink]": {"size":..} or {"error":..} (may block). */
	struct json_object *(*resize)(void *opaque, const char *args);
	/* Begin shutting down (after the reply is sent). */
	void (*stop)(void *opaque);
};

int vctl_ctl_server_new(struct event_base *base, const char *path,
			const struct vctl_ctl_ops *ops, void *opaque,
			struct vctl_ctl_server **out, char *err,
			size_t errlen);
void vctl_ctl_server_free(struct vctl_ctl_server *s);

/* ----------------------------------------------------------- notify.c */

/* sd_notify(3) without libsystemd: no-op when $NOTIFY_SOCKET is unset. */
void vctl_sd_notify(const char *state);

/* ----------------------------------------------------------- commands */

int vctl_cmd_create(int argc, const char **argv);
int vctl_cmd_recover(int argc, const char **argv);
/* cmd_create.c: fork the daemon (or its supervisor) and wait for its
 * report; prints the error itself.  VCTL_EXIT_*. */
int vctl_start_daemon(const struct vctl_create *c, pid_t *pidp);
int vctl_cmd_attach(int argc, const char **argv);
int vctl_cmd_detach(int argc, const char **argv);
int vctl_cmd_destroy(int argc, const char **argv);
int vctl_cmd_list(int argc, const char **argv);
int vctl_cmd_show(int argc, const char **argv);
int vctl_cmd_stats(int argc, const char **argv);
int vctl_cmd_resize(int argc, const char **argv);
int vctl_cmd_mgmtdev(int argc, const char **argv);

#endif
