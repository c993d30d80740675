/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvduse: block devices in userspace on the kernel's VDUSE interface.
 *
 * Public API.  Every name is prefixed vdu_ / VDU_ so that it never collides
 * with <linux/vduse.h> (which owns vduse_* and VDUSE_*).  Handles are opaque.
 * Functions return 0 (or a non-negative value) on success and -errno on
 * failure; the library never prints: diagnostics go to the callback set with
 * vdu_set_log().
 */
#ifndef LIBVDUSE_H
#define LIBVDUSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define VDU_API __attribute__((visibility("default")))
#define VDU_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VDU_API
#define VDU_PRINTF(a, b)
#endif

struct event_base;
struct vdu_dev;

/* ------------------------------------------------------------------ */
/* Version and logging                                                 */

#define VDU_VERSION_MAJOR 0
#define VDU_VERSION_MINOR 5

/* Library version string, e.g. "0.1.0". */
VDU_API const char *vdu_version(void);

enum vdu_log_level {
	VDU_LOG_ERR = 3,
	VDU_LOG_WARNING = 4,
	VDU_LOG_NOTICE = 5,
	VDU_LOG_INFO = 6,
	VDU_LOG_DEBUG = 7,
};

/* msg has no trailing newline.  Called from whichever thread logs. */
typedef void (*vdu_log_fn)(void *opaque, int level, const char *msg);

/* Install the process-wide log callback; messages above max_level are
 * dropped before formatting.  fn == NULL silences the library. */
VDU_API void vdu_set_log(vdu_log_fn fn, void *opaque, int max_level);

/* Backends and applications may log through the same callback. */
VDU_API void vdu_log(int level, const char *fmt, ...) VDU_PRINTF(2, 3);

/* ------------------------------------------------------------------ */
/* Backend interface                                                   */

/*
 * A backend is two static structs.  struct vdu_backend is the contract
 * with the library: only what it calls while serving a device.  struct
 * vdu_plugin describes the backend to front ends (vdusectl, vdu_main()):
 * its name, its option keys, how to check them and how to open storage.
 * Both start with their own size and the API version they were written
 * against, so the library can tell which fields exist and the structs can
 * grow at the end without breaking backends built against an older
 * header (nbdkit's pattern).  Fill the two with VDU_BACKEND_INIT and
 * VDU_PLUGIN_INIT.
 *
 * Version 1 (libvduse 0.1/0.2) had one struct with name, description,
 * usage and open/close in it; such backends still load.
 */
#define VDU_BACKEND_API_VERSION 2

enum vdu_io_op {
	VDU_IO_READ = 0,
	VDU_IO_WRITE = 1,
	VDU_IO_FLUSH = 2,
	VDU_IO_DISCARD = 3,
	VDU_IO_WRITE_ZEROES = 4,
};

/* vdu_io.flags */
#define VDU_IO_F_UNMAP (1u << 0) /* WRITE_ZEROES: may deallocate */

/*
 * One I/O handed to a backend.  offset and len are in bytes and already
 * checked against the device capacity; iov points straight into the
 * driver's mapped buffers (no copy) for READ and WRITE.
 */
struct vdu_io {
	enum vdu_io_op op;
	uint32_t flags;
	uint64_t offset;
	uint64_t len;
	const struct iovec *iov;
	int iovcnt;
	void *priv; /* backend scratch area of backend->io_priv_size bytes */
};

/* Capability bits in vdu_backend_info.caps */
#define VDU_CAP_FLUSH (1u << 0)
#define VDU_CAP_DISCARD (1u << 1)
#define VDU_CAP_WRITE_ZEROES (1u << 2)
#define VDU_CAP_READ_ONLY (1u << 3)
/* The backend does direct I/O (O_DIRECT, registered buffers) straight into
 * the request's buffers, so the kernel must be able to pin them: under
 * VDU_BOUNCE_AUTO the device then backs the bounce buffer with its own
 * memory (see vdu_dev_opts.bounce). */
#define VDU_CAP_DIRECT_IO (1u << 4)

struct vdu_backend_info {
	uint64_t size;               /* bytes; rounded down to 512 */
	uint32_t logical_block_size; /* 0: 512 */
	uint32_t physical_block_size;/* 0: same as logical */
	uint32_t opt_io_size;        /* bytes, 0: unknown */
	uint32_t caps;               /* VDU_CAP_* */
	uint32_t max_discard_bytes;  /* per request, 0: library default */
	uint32_t discard_granularity;/* bytes, 0: logical block size */
	uint32_t max_write_zeroes_bytes; /* per request, 0: library default */
};

/* key=value configuration, as given on the command line. */
struct vdu_param {
	const char *key;
	const char *value;
};

struct vdu_backend {
	uint32_t struct_size; /* sizeof(struct vdu_backend) at build time */
	uint32_t api_version; /* VDU_BACKEND_API_VERSION */
	size_t io_priv_size;  /* bytes of vdu_io.priv per request slot */

	/* Required.  Filled after a memset to 0 of the library's struct. */
	int (*get_info)(void *handle, struct vdu_backend_info *info);

	/*
	 * Optional per queue state.  base is the event loop that runs this
	 * queue: all submit/unplug calls and vdu_io_complete() for this
	 * queue happen on its thread, so a backend needs no locks between its
	 * queues.  Without queue_open, qctx is the backend handle.
	 */
	int (*queue_open)(void *handle, unsigned qidx, struct event_base *base,
			  void **qctx);
	void (*queue_close)(void *qctx);

	/* Required.  Start io; call vdu_io_complete() exactly once, now or
	 * later. */
	void (*submit)(void *qctx, struct vdu_io *io);
	/* Optional: the current batch of submits is over (io_submit time). */
	void (*unplug)(void *qctx);

	/* since 0.4, read only if struct_size covers them */
	/*
	 * Optional: change the storage's size to size bytes (vdusectl resize).
	 * flags: VDU_RESIZE_F_SHRINK allows a smaller size (without it, a
	 * smaller size is -EINVAL; the library checks that before calling).
	 * Called on the device's control thread; may block.  0 or -errno
	 * (logged why through vdu_log).
	 */
	int (*resize)(void *handle, uint64_t size, unsigned flags);
	/*
	 * Optional: this process now serves the device (dev: after
	 * vdu_dev_start() or vdu_dev_reconnect() succeeded, so no other
	 * process can: a predecessor is gone), or it is about to be freed
	 * (NULL).  A backend that learns of size changes by itself (another
	 * client resized a shared image) keeps dev and calls
	 * vdu_dev_set_capacity() from any thread until called with NULL.
	 * With dev, it may also act for the device (take over a dead
	 * predecessor's lock on shared storage): 0, or -errno, and the start
	 * or reconnect fails with it (a started device is destroyed again).
	 */
	int (*set_dev)(void *handle, struct vdu_dev *dev);
};

/* vdu_backend.resize and vdu_dev_resize() flags */
#define VDU_RESIZE_F_SHRINK (1u << 0) /* a smaller size is wanted */

#define VDU_BACKEND_INIT                                                   \
	.struct_size = sizeof(struct vdu_backend),                         \
	.api_version = VDU_BACKEND_API_VERSION

/* How vdu_plugin_check() reads an option's value. */
enum vdu_option_type {
	VDU_OPT_STRING = 0, /* any non-empty text */
	VDU_OPT_BOOL = 1,   /* 1|0, on|off, yes|no, true|false */
	VDU_OPT_SIZE = 2,   /* vdu_parse_size(), within min..max if max */
	VDU_OPT_UINT = 3,   /* decimal, within min..max if max */
	VDU_OPT_CHOICE = 4, /* one of the '|'-separated words of syntax */
};

/* vdu_option.flags */
#define VDU_OPT_F_REQUIRED (1u << 0)
/* A file name: front ends that change directory make it absolute first. */
#define VDU_OPT_F_PATH (1u << 1)
/* When set, open() changes something outside the process (creates a
 * file...): a front end's dry run leaves the key out. */
#define VDU_OPT_F_ACTION (1u << 2)

/* One key a backend accepts (key=value on the command line, -o KEY=V). */
struct vdu_option {
	const char *key;
	unsigned type;       /* enum vdu_option_type */
	const char *syntax;  /* the value as help shows it: "FILE", "on|off" */
	const char *def;     /* the default, as text; NULL: none */
	const char *help;    /* one line, no trailing period */
	unsigned flags;      /* VDU_OPT_F_* */
	uint64_t min, max;   /* VDU_OPT_SIZE/UINT bounds; max 0: none */
};

/* vdu_plugin.flags */
/* Storage across a network: completions come back at network speed, so
 * front ends do not busy-poll its rings and start it after the network. */
#define VDU_PLUGIN_F_NETWORK (1u << 0)

struct vdu_plugin {
	uint32_t struct_size; /* sizeof(struct vdu_plugin) at build time */
	uint32_t api_version; /* VDU_BACKEND_API_VERSION */
	const char *name;     /* [a-z0-9_-], the --backend value */
	const char *description; /* one line */
	const struct vdu_option *options; /* ends with a NULL key */
	const struct vdu_backend *backend;

	/*
	 * Open the storage for params, which vdu_plugin_check() accepted.
	 * Say why on failure through vdu_log(VDU_LOG_ERR, ...) and return
	 * -errno.  May block (connect, probe).
	 */
	int (*open)(const struct vdu_param *params, size_t nparams,
		    void **handle);
	void (*close)(void *handle); /* optional */

	/* since API 2; read only if struct_size covers them */
	unsigned flags;       /* VDU_PLUGIN_F_* */
	/*
	 * Optional: check what the option table cannot (a URL's syntax, that
	 * a file exists) without side effects, before any device exists.
	 * 0, or -EINVAL with one line in err that names the key and the fix.
	 */
	int (*check)(const struct vdu_param *params, size_t nparams,
		     char *err, size_t errlen);
};

#define VDU_PLUGIN_INIT                                                    \
	.struct_size = sizeof(struct vdu_plugin),                          \
	.api_version = VDU_BACKEND_API_VERSION

/*
 * A shared object is a plugin when it exports vdu_plugin_entry(), which
 * returns its descriptor:  VDU_REGISTER_PLUGIN(my_plugin);
 */
#define VDU_PLUGIN_ENTRY "vdu_plugin_entry"
#define VDU_REGISTER_PLUGIN(desc)                                          \
	VDU_API const struct vdu_plugin *vdu_plugin_entry(void);           \
	VDU_API const struct vdu_plugin *vdu_plugin_entry(void)            \
	{                                                                  \
		return &(desc);                                            \
	}

/*
 * Check params against plugin's option table (unknown or repeated keys,
 * missing required ones, values of the wrong type) and then its check():
 * 0, or -EINVAL with one line in err naming the key and the fix; -EPROTO
 * when the descriptor itself is unusable (size, API version, no backend).
 */
VDU_API int vdu_plugin_check(const struct vdu_plugin *plugin,
			     const struct vdu_param *params, size_t nparams,
			     char *err, size_t errlen);

/* The value of key in params, or NULL. */
VDU_API const char *vdu_param_get(const struct vdu_param *params,
				  size_t nparams, const char *key);

/* "1", "on", "yes", "true" -> 1; "0", "off", "no", "false" -> 0;
 * anything else -EINVAL. */
VDU_API int vdu_parse_bool(const char *s);

/* Complete an I/O: result 0 or -errno (-EOPNOTSUPP gives UNSUPP). */
VDU_API void vdu_io_complete(struct vdu_io *io, int result);

/*
 * The backend could not do direct I/O into the request's buffers (the
 * kernel refused to pin them: -EFAULT) and went through a copy of its own
 * instead.  Only counted, for vdu_dev_get_bounce(); call it once per
 * request so copied, from the queue's thread.
 */
VDU_API void vdu_io_copied(struct vdu_io *io);

/* Parse "123", "4K", "1M", "2G", "1T" (powers of 1024) into bytes. */
VDU_API int vdu_parse_size(const char *s, uint64_t *out);

/* ------------------------------------------------------------------ */
/* Devices                                                             */

struct vdu_dev;

#define VDU_NAME_MAX 255 /* bytes, not counting the NUL */
#define VDU_SERIAL_MAX 20
#define VDU_QUEUES_MAX 64
#define VDU_QUEUE_SIZE_MIN 4 /* a request needs 3 descriptors, plus one */
#define VDU_QUEUE_SIZE_MAX 32768

/* 0 when name is usable as a VDUSE device name (1-255 bytes, no '/', no
 * space or control character, not ".", ".." or "control"), -EINVAL
 * otherwise.  The vdpa helpers check names with it too. */
VDU_API int vdu_name_valid(const char *name);

struct vdu_dev_opts {
	uint32_t struct_size; /* sizeof(struct vdu_dev_opts) */
	const char *name;
	unsigned num_queues;  /* 0: 1 */
	unsigned queue_size;  /* 0: 256; power of two */
	uint32_t block_size;  /* 0: backend's, else 512 */
	const char *serial;   /* GET_ID answer, at most 20 bytes; NULL: name */
	int read_only;        /* force VIRTIO_BLK_F_RO */
	/* since 0.1: fields below are read only if struct_size covers them */
	uint32_t flags;       /* VDU_DEV_F_* */
	unsigned poll_us;     /* busy-poll the ring up to this long after a
			       * batch: the window is twice the recent gaps
			       * between a batch and the next request, and
			       * closes after a gap over poll_us; 0: off */
	const int *queue_cpus;/* num_queues CPUs to pin queue threads to (-1:
			       * no pinning); NULL: none pinned */
	const char *state_path;/* inflight logs at STATE_PATH.qN.inflight,
				* needed for vdu_dev_reconnect(); NULL: none */
	/* since 0.2 */
	unsigned bounce;      /* VDU_BOUNCE_*: whose memory is under the
			       * kernel's bounce buffer */
	uint32_t bounce_size; /* its bytes: 1 MiB to 1 GiB in 4 KiB pages,
			       * set at creation (Linux 6.1+); 0: default,
			       * VDU_BOUNCE_SIZE_USER where our memory backs
			       * it, else the kernel's (64 MiB) */
	const int *irq_cpus;  /* num_queues CPUs (copied): queue i's interrupt
			       * work on irq_cpus[i] (-1: the driver's
			       * choice), set at every DRIVER_OK, after the
			       * driver's probe set its own (Linux 6.8+, a
			       * warning before); NULL: none.  See also
			       * VDU_DEV_F_IRQ_FOLLOW */
};

/* The default bounce buffer when our memory (pinned) backs it: enough for
 * 4 MiB in flight four times over (tests/bench/bench-bounce). */
#define VDU_BOUNCE_SIZE_USER (16u << 20)

/*
 * The kernel copies the data of a virtio_vdpa driver (a container's
 * /dev/vdX) through a bounce buffer that the device maps, at IOVA 0 up
 * to /sys/class/vduse/NAME/bounce_size.  Its pages are the kernel's
 * unless the device registers memory of its own (VDUSE_IOTLB_REG_UMEM,
 * Linux 6.0+): then the buffers backends see are ordinary pinnable
 * process memory, which direct I/O needs (newer kernels refuse to pin
 * the kernel's pages: O_DIRECT into them fails with EFAULT).  The memory
 * is allocated (2 MiB aligned, transparent huge pages where allowed) and
 * registered when the driver first maps data, deregistered at every
 * reset (the kernel copies back pages still in use), and registered
 * again after it.  Registering pins the whole buffer: RLIMIT_MEMLOCK is
 * raised by its size when the kernel asks (root may); where registering
 * fails the device goes on with the kernel's pages and logs one line.
 * A VM's memory (vhost_vdpa) never goes through the bounce buffer.
 */
enum vdu_bounce_mode {
	VDU_BOUNCE_AUTO = 0,   /* our memory iff the backend has
				* VDU_CAP_DIRECT_IO, else the kernel's */
	VDU_BOUNCE_USER = 1,   /* our memory (falls back as said above) */
	VDU_BOUNCE_KERNEL = 2, /* the kernel's pages, mapped */
};

struct vdu_bounce_info {
	uint32_t struct_size;  /* sizeof(struct vdu_bounce_info) */
	unsigned mode;         /* VDU_BOUNCE_USER or _KERNEL: in use now;
				* VDU_BOUNCE_AUTO: no data mapped yet */
	int fallback_err;      /* why our memory was wanted but not used
				* (-ENOTTY: kernel without REG_UMEM, -ENOMEM:
				* memlock limit...), else 0 */
	uint64_t size;         /* bounce buffer bytes (0: not known yet) */
	uint64_t pinned;       /* of our memory, pinned by the kernel */
	uint64_t resident;     /* of our memory, resident now */
	uint64_t huge;         /* of that, in 2 MiB pages */
	uint64_t copied;       /* requests a backend copied (vdu_io_copied) */
};

/* The bounce buffer as it is now.  -EINVAL: struct_size too small. */
VDU_API int vdu_dev_get_bounce(const struct vdu_dev *dev,
			       struct vdu_bounce_info *info);

/*
 * Our memory under the bounce buffer, for a backend that pins it once
 * itself (io_uring fixed buffers) instead of at every request: 0 and the
 * buffer (*buf, *size bytes) while the kernel has it registered now;
 * -ENOENT when not (the kernel's pages, a VM's memory through vhost_vdpa,
 * no data mapped yet, or between a reset and the next cycle's first
 * mapping).  *gen numbers the registration: every reset deregisters and
 * the next cycle registers again, maybe over other pages (an idle
 * buffer's pages are given back at reset), so a backend holding the
 * buffer pinned compares gen before using it and pins again when it
 * changed.  Any of buf, size, gen may be NULL.  Lock-free, any thread.
 * Since 0.5.
 */
VDU_API int vdu_dev_get_user_bounce(const struct vdu_dev *dev, void **buf,
				    uint64_t *size, uint64_t *gen);

/* One thread with its own event loop per queue (else all on base). */
#define VDU_DEV_F_QUEUE_THREADS (1u << 0)
/* Offer VIRTIO_F_RING_PACKED: the driver may choose the packed ring. */
#define VDU_DEV_F_RING_PACKED (1u << 1)
/*
 * Point each queue's interrupt (/sys/class/vduse/NAME/vqN/irq_cb_affinity,
 * Linux 6.8+) at the CPU its queue thread runs on, following the thread
 * when it migrates (at most every 10 ms).  The kernel then runs the
 * completion work of an interrupt next to the thread that injected it,
 * instead of spreading it over the driver's CPUs, where it competes with
 * the submitters.  Overrides the driver's choice; a kernel without the
 * file, or no permission to write it, turns it off with one log line.
 */
#define VDU_DEV_F_IRQ_FOLLOW (1u << 2)

/*
 * Create a device object bound to an opened backend.  The backend stays
 * owned by the caller (close it after vdu_dev_free).  base runs the device
 * message channel, and the queues too unless VDU_DEV_F_QUEUE_THREADS.
 * Nothing touches the kernel until vdu_dev_start().
 */
VDU_API int vdu_dev_new(const struct vdu_dev_opts *opts,
			const struct vdu_backend *backend, void *backend_handle,
			struct event_base *base, struct vdu_dev **out);

/*
 * Create the kernel device (VDUSE_CREATE_DEV + VDUSE_VQ_SETUP) and start
 * serving its messages on the event base.  -ENOENT: no /dev/vduse/control;
 * -EEXIST: name taken; -EPERM/-EACCES: not allowed.
 */
VDU_API int vdu_dev_start(struct vdu_dev *dev);

/*
 * Take over an existing kernel device whose daemon died: open
 * /dev/vduse/NAME again, read the negotiated state back from the kernel,
 * rebuild each queue from its inflight log (opts.state_path, same
 * geometry as at create time), resubmit the requests the driver is still
 * waiting for, and serve on.  -EBUSY: another process still serves it;
 * -ENODEV: no such device; -ESTALE: logs do not match.
 */
VDU_API int vdu_dev_reconnect(struct vdu_dev *dev);

/* Stop serving and DESTROY_DEV.  -EBUSY while the device is attached. */
VDU_API int vdu_dev_stop(struct vdu_dev *dev);

/* Free the object (stops first if needed). */
VDU_API void vdu_dev_free(struct vdu_dev *dev);

/*
 * Tell the driver the device now has size bytes (rounded down to the
 * logical block size): the config space's capacity (VDUSE_DEV_SET_CONFIG)
 * and a config interrupt (VDUSE_DEV_INJECT_CONFIG_IRQ), so that
 * /sys/block/vdX/size changes without a detach.  Requests beyond the new
 * end complete with IOERR from then on.  Any thread; 0 or -errno
 * (-EINVAL: less than one block).
 */
VDU_API int vdu_dev_set_capacity(struct vdu_dev *dev, uint64_t size);

/*
 * Resize the storage with backend->resize (-EOPNOTSUPP when it has none
 * or the device is read-only), then vdu_dev_set_capacity().  size must be
 * a multiple of the logical block size; a smaller size needs
 * VDU_RESIZE_F_SHRINK (-EINVAL otherwise).  A shrink lowers the capacity
 * first, so that no new request reaches the storage being cut off.  On
 * the device's control thread (the event base given to vdu_dev_new).
 */
VDU_API int vdu_dev_resize(struct vdu_dev *dev, uint64_t size, unsigned flags);

/* Number of requests the backend has not completed yet (all queues). */
VDU_API unsigned vdu_dev_inflight(const struct vdu_dev *dev);

struct vdu_dev_info {
	char name[VDU_NAME_MAX + 1];
	uint64_t capacity_bytes;
	uint32_t block_size;
	unsigned num_queues;
	unsigned queue_size;
	uint64_t features_offered;
	uint64_t features_negotiated; /* 0 until FEATURES_OK */
	uint8_t status;               /* virtio device status */
	int broken;                   /* a queue met a malformed ring */
	int kernel_broken;            /* the kernel timed out on us: the
				       * device must be destroyed */
	int read_only;
	char serial[VDU_SERIAL_MAX + 1];
};

/* The info, filled up to size bytes (the caller's sizeof: the struct may
 * grow).  Call it through the macro vdu_dev_get_info(dev, info). */
VDU_API int vdu_dev_get_info_sz(const struct vdu_dev *dev,
				struct vdu_dev_info *info, size_t size);
#define vdu_dev_get_info(dev, info)                                        \
	vdu_dev_get_info_sz((dev), (info), sizeof(*(info)))

struct vdu_queue_stats {
	uint64_t requests;      /* completed */
	uint64_t read_bytes;
	uint64_t write_bytes;
	uint64_t errors;        /* IOERR/UNSUPP statuses */
	uint64_t irqs;          /* interrupts injected */
	uint64_t kicks;
	uint32_t inflight;
	int enabled;
	int broken;
};

/* Filled up to size bytes; call it as vdu_dev_queue_stats(dev, q, st). */
VDU_API int vdu_dev_queue_stats_sz(const struct vdu_dev *dev, unsigned qidx,
				   struct vdu_queue_stats *st, size_t size);
#define vdu_dev_queue_stats(dev, qidx, st)                                 \
	vdu_dev_queue_stats_sz((dev), (qidx), (st), sizeof(*(st)))

/* Destroy a kernel VDUSE device by name (no object needed). */
VDU_API int vdu_destroy_by_name(const char *name);

/*
 * Run queue qidx's interrupt work on the n CPUs listed in cpus: writes
 * /sys/class/vduse/NAME/vqQIDX/irq_cb_affinity (Linux 6.8+; -ENOENT
 * before).  The driver sets its own when it probes the device, so call
 * it after every attach.  -EINVAL for a bad name, no CPU or one outside
 * 0-1023.
 */
VDU_API int vdu_set_irq_affinity_by_name(const char *name, unsigned qidx,
					 const int *cpus, unsigned n);

/* ------------------------------------------------------------------ */
/* One call for a program of its own (the way of fuse_main)            */

struct vdu_main_opts {
	uint32_t struct_size; /* sizeof(struct vdu_main_opts) */
	/* "virtio_vdpa" (a /dev/vdX here) or "vhost_vdpa" (for a VM): add
	 * the vdpa device and bind it once the device exists, remove it at
	 * the end; NULL: leave attaching to the user (vdpa dev add). */
	const char *attach;
	unsigned drain_ms;    /* at stop, wait this long for in-flight
			       * requests; 0: 30000 */
	/* Optional: called once the device serves (node: "/dev/vdX" or
	 * "/dev/vhost-vdpa-N" when attached, else ""). */
	void (*ready)(void *opaque, const char *name, const char *node);
	void *opaque;
};

/*
 * Run a device until SIGINT or SIGTERM: create it for backend/handle
 * (vdu_dev_new + vdu_dev_start on an event loop of its own), attach it if
 * opts->attach, serve, and on the signal detach what it attached, wait
 * for in-flight requests, and destroy the device.  A device someone else
 * attached is served on until it is detached (a second signal gives up:
 * -EBUSY).  The backend stays the caller's.  opts may be NULL.  0, or the
 * -errno that stopped it (logged through vdu_set_log()'s callback).
 */
VDU_API int vdu_main(const struct vdu_dev_opts *dev_opts,
		     const struct vdu_backend *backend, void *handle,
		     const struct vdu_main_opts *opts);

/* ------------------------------------------------------------------ */
/* vdpa bus: netlink (generic netlink family "vdpa") and driver binding */

struct vdu_vdpa_mgmtdev {
	char bus[64];  /* empty for bus-less management devices (vduse) */
	char name[64];
	uint64_t supported_classes;
	uint32_t max_vqs;
	uint64_t dev_features;
};

struct vdu_vdpa_dev {
	char name[VDU_NAME_MAX + 1];
	char mgmtdev[64];
	uint32_t device_id;
	uint32_t vendor_id;
	uint32_t max_vqs;
	uint32_t max_vq_size;
};

/* Error text of the last netlink failure in this thread (extended ack),
 * or "" when the kernel gave none. */
VDU_API const char *vdu_vdpa_last_error(void);

/*
 * The calls below fill structs the caller sized: call them through the
 * macros (vdu_vdpa_dev_list(&devs)...), which pass sizeof(**out); arrays
 * are laid out with that element size.
 */
/* List management devices; *out is malloc'd (free()).  Returns count. */
VDU_API int vdu_vdpa_mgmtdev_list_sz(struct vdu_vdpa_mgmtdev **out,
				     size_t size);
#define vdu_vdpa_mgmtdev_list(out)                                         \
	vdu_vdpa_mgmtdev_list_sz((out), sizeof(**(out)))
/* List vdpa devices; *out is malloc'd (free()).  Returns count. */
VDU_API int vdu_vdpa_dev_list_sz(struct vdu_vdpa_dev **out, size_t size);
#define vdu_vdpa_dev_list(out) vdu_vdpa_dev_list_sz((out), sizeof(**(out)))
/* 0 and *out filled, or -ENODEV. */
VDU_API int vdu_vdpa_dev_get_sz(const char *name, struct vdu_vdpa_dev *out,
				size_t size);
#define vdu_vdpa_dev_get(name, out)                                        \
	vdu_vdpa_dev_get_sz((name), (out), sizeof(*(out)))
VDU_API int vdu_vdpa_dev_add(const char *name, const char *mgmtdev);
VDU_API int vdu_vdpa_dev_del(const char *name);

/*
 * Bind vdpa device name to bus driver "virtio_vdpa" or "vhost_vdpa" and
 * wait (up to timeout_ms) for its node: "/dev/vdX" or "/dev/vhost-vdpa-N",
 * written to node (size nodelen).
 */
VDU_API int vdu_vdpa_bind(const char *name, const char *driver,
			  int timeout_ms, char *node, size_t nodelen);
/* Current bus driver ("" when unbound) and node ("" when none). */
VDU_API int vdu_vdpa_status(const char *name, char *driver, size_t drvlen,
			    char *node, size_t nodelen);

#ifdef __cplusplus
}
#endif

#endif /* LIBVDUSE_H */
