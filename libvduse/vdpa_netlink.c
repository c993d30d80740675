/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdpa generic netlink client (family "vdpa", see the kernel's
 * drivers/vdpa/vdpa.c): list management devices and vdpa devices, create
 * and delete vdpa devices.  Built on libnl-3 / libnl-genl-3.
 *
 * Each call opens its own netlink socket, so the functions are thread-safe.
 * Kernel errors are returned as the exact -errno of the kernel's answer
 * (we read it in our own error callback instead of letting libnl fold it
 * into an NLE_* code); the extended ack message, when the kernel sends one,
 * is kept per thread for vdu_vdpa_last_error().
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/netlink.h>
#include <linux/vdpa.h>

#include <netlink/netlink.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/socket.h>
#include <netlink/handlers.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>

#include "internal.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* Highest attribute this build knows; newer ones are ignored by nla_parse. */
#define VDU_VDPA_ATTR_MAX (VDPA_ATTR_MAX - 1)

/* Upper bound on list sizes, to keep a misbehaving peer from exhausting
 * memory. */
#define VDU_VDPA_LIST_MAX 65536

#define VDU_VDPA_DUMP_RETRIES 4

static __thread char vdpa_last_err[256];

const char *vdu_vdpa_last_error(void)
{
	return vdpa_last_err;
}

static void clear_last_error(void)
{
	vdpa_last_err[0] = '\0';
}

/* libnl error code (either sign) -> -errno. */
static int nle_to_errno(int nle)
{
	if (nle < 0)
		nle = -nle;
	switch (nle) {
	case NLE_SUCCESS:
		return 0;
	case NLE_INTR:
		return -EINTR;
	case NLE_BAD_SOCK:
		return -EBADF;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_EXIST:
		return -EEXIST;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_MSGSIZE:
	case NLE_MSG_OVERFLOW:
	case NLE_MSG_TRUNC:
	case NLE_ATTRSIZE:
		return -EMSGSIZE;
	case NLE_OPNOTSUPP:
	case NLE_MSGTYPE_NOSUPPORT:
		return -EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
		return -EAFNOSUPPORT;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_NOATTR:
	case NLE_MISSING_ATTR:
	case NLE_SEQ_MISMATCH:
	case NLE_MSG_TOOSHORT:
	case NLE_PARSE_ERR:
	case NLE_PROTO_MISMATCH:
		return -EPROTO;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_PERM:
		return -EPERM;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_DUMP_INTR:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* ------------------------------------------------------------ policies */

static struct nla_policy vdpa_policy[VDU_VDPA_ATTR_MAX + 1] = {
	[VDPA_ATTR_MGMTDEV_BUS_NAME] = { .type = NLA_STRING },
	[VDPA_ATTR_MGMTDEV_DEV_NAME] = { .type = NLA_STRING },
	[VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES] = { .type = NLA_U64 },
	[VDPA_ATTR_DEV_NAME] = { .type = NLA_STRING },
	[VDPA_ATTR_DEV_ID] = { .type = NLA_U32 },
	[VDPA_ATTR_DEV_VENDOR_ID] = { .type = NLA_U32 },
	[VDPA_ATTR_DEV_MAX_VQS] = { .type = NLA_U32 },
	[VDPA_ATTR_DEV_MAX_VQ_SIZE] = { .type = NLA_U16 },
	[VDPA_ATTR_DEV_MIN_VQ_SIZE] = { .type = NLA_U16 },
	[VDPA_ATTR_DEV_MGMTDEV_MAX_VQS] = { .type = NLA_U32 },
	[VDPA_ATTR_DEV_SUPPORTED_FEATURES] = { .type = NLA_U64 },
};

static struct nla_policy extack_policy[NLMSGERR_ATTR_MAX + 1] = {
	[NLMSGERR_ATTR_MSG] = { .type = NLA_STRING },
};

/* Copy a validated (NUL-terminated, see NLA_STRING policy) string
 * attribute; truncates to size - 1 bytes. */
static void attr_str(char *dst, size_t size, const struct nlattr *a)
{
	if (!size)
		return;
	if (!a) {
		dst[0] = '\0';
		return;
	}
	snprintf(dst, size, "%s", nla_get_string((struct nlattr *)a));
}

/* "bus/dev" when the management device sits on a bus, else "dev". */
static void mgmtdev_handle(char *dst, size_t size, struct nlattr **tb)
{
	const char *dev = "";

	if (tb[VDPA_ATTR_MGMTDEV_DEV_NAME])
		dev = nla_get_string(tb[VDPA_ATTR_MGMTDEV_DEV_NAME]);
	if (tb[VDPA_ATTR_MGMTDEV_BUS_NAME])
		snprintf(dst, size, "%s/%s",
			 nla_get_string(tb[VDPA_ATTR_MGMTDEV_BUS_NAME]), dev);
	else
		snprintf(dst, size, "%s", dev);
}

/* ------------------------------------------------------- request engine */

struct nlctx {
	int family;
	int err;           /* -errno from the kernel or from parsing */
	bool done;
	/* Called for every reply message with its attributes parsed. */
	int (*fill)(struct nlctx *ctx, struct nlattr **tb);
	/* list results */
	void *items;
	size_t elem_size;
	size_t count, cap;
	/* single result */
	struct vdu_vdpa_dev *one;
	bool got_one;
};

static void *ctx_append(struct nlctx *ctx)
{
	if (ctx->count == ctx->cap) {
		size_t ncap = ctx->cap ? ctx->cap * 2 : 8;
		void *n;

		if (ncap > VDU_VDPA_LIST_MAX)
			ncap = VDU_VDPA_LIST_MAX;
		if (ncap <= ctx->count)
			return NULL;
		n = realloc(ctx->items, ncap * ctx->elem_size);
		if (!n)
			return NULL;
		ctx->items = n;
		ctx->cap = ncap;
	}
	return (char *)ctx->items + ctx->count++ * ctx->elem_size;
}

static void extack_capture(const struct nlmsgerr *e)
{
	const struct nlmsghdr *nlh =
		(const struct nlmsghdr *)((const char *)e - NLMSG_HDRLEN);
	struct nlattr *tb[NLMSGERR_ATTR_MAX + 1];
	size_t payload, off;

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*e))
		return;
	payload = nlh->nlmsg_len - NLMSG_HDRLEN;
	off = sizeof(*e);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
		/* The whole request is echoed after struct nlmsgerr. */
		if (e->msg.nlmsg_len < NLMSG_HDRLEN ||
		    e->msg.nlmsg_len > payload)
			return;
		off += e->msg.nlmsg_len - NLMSG_HDRLEN;
	}
	off = NLMSG_ALIGN(off);
	if (off >= payload)
		return;
	if (nla_parse(tb, NLMSGERR_ATTR_MAX,
		      (struct nlattr *)((char *)e + off), (int)(payload - off),
		      extack_policy) < 0)
		return;
	if (tb[NLMSGERR_ATTR_MSG])
		attr_str(vdpa_last_err, sizeof(vdpa_last_err),
			 tb[NLMSGERR_ATTR_MSG]);
}

static int err_cb(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
	struct nlctx *ctx = arg;

	if (e->error < 0)
		ctx->err = e->error;
	else if (e->error > 0)
		ctx->err = -e->error;
	else
		ctx->err = -EPROTO; /* libnl only calls us for errors */
	extack_capture(e);
	ctx->done = true;
	return NL_STOP;
}

static int ack_cb(struct nl_msg *msg, void *arg)
{
	struct nlctx *ctx = arg;

	ctx->done = true;
	return NL_STOP;
}

static int finish_cb(struct nl_msg *msg, void *arg)
{
	struct nlctx *ctx = arg;
	struct nlmsghdr *nlh = nlmsg_hdr(msg);

	/* A dump that failed half way reports the error in NLMSG_DONE. */
	if (nlmsg_datalen(nlh) >= (int)sizeof(int)) {
		int e;

		memcpy(&e, nlmsg_data(nlh), sizeof(e));
		if (e < 0 && !ctx->err)
			ctx->err = e;
	}
	ctx->done = true;
	return NL_STOP;
}

static int valid_cb(struct nl_msg *msg, void *arg)
{
	struct nlctx *ctx = arg;
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	struct nlattr *tb[VDU_VDPA_ATTR_MAX + 1];
	int r;

	if (nlh->nlmsg_type != ctx->family)
		return NL_SKIP;
	if (!genlmsg_valid_hdr(nlh, 0)) {
		ctx->err = -EPROTO;
		ctx->done = true;
		return NL_STOP;
	}
	r = genlmsg_parse(nlh, 0, tb, VDU_VDPA_ATTR_MAX, vdpa_policy);
	if (r < 0) {
		vdu_dbg("vdpa: malformed netlink reply (%s)", nl_geterror(r));
		ctx->err = -EPROTO;
		ctx->done = true;
		return NL_STOP;
	}
	if (ctx->fill) {
		r = ctx->fill(ctx, tb);
		if (r < 0) {
			ctx->err = r;
			ctx->done = true;
			return NL_STOP;
		}
	}
	return NL_OK;
}

/* Open a generic netlink socket and resolve the "vdpa" family.
 * -ENOENT when the family is not registered (vdpa module not loaded). */
static int vdpa_open(struct nl_sock **skp, int *family)
{
	struct nl_sock *sk;
	int one = 1;
	int r;

	sk = nl_socket_alloc();
	if (!sk)
		return -ENOMEM;
	r = genl_connect(sk);
	if (r < 0) {
		r = nle_to_errno(r);
		goto fail;
	}
	/* Best effort: older kernels lack extended acks. */
	if (setsockopt(nl_socket_get_fd(sk), SOL_NETLINK, NETLINK_EXT_ACK,
		       &one, sizeof(one)) < 0)
		vdu_dbg("vdpa: NETLINK_EXT_ACK: %s", strerror(errno));

	r = genl_ctrl_resolve(sk, VDPA_GENL_NAME);
	if (r < 0) {
		vdu_dbg("vdpa: resolving genl family \"%s\": %s",
			VDPA_GENL_NAME, nl_geterror(r));
		r = nle_to_errno(r);
		if (r == -ENODEV || r == -EPROTO)
			r = -ENOENT;
		goto fail;
	}
	*family = r;
	*skp = sk;
	return 0;

fail:
	nl_socket_free(sk);
	return r;
}

/*
 * Send one request and collect the answer into ctx.  dev_name, mg_bus and
 * mg_dev are optional string attributes.  Returns 0 or -errno.
 */
static int vdpa_request(uint8_t cmd, bool dump, const char *dev_name,
			const char *mg_bus, const char *mg_dev,
			struct nlctx *ctx)
{
	struct nl_sock *sk = NULL;
	struct nl_msg *msg = NULL;
	struct nl_cb *cb = NULL;
	int r;

	ctx->err = 0;
	ctx->done = false;

	r = vdpa_open(&sk, &ctx->family);
	if (r < 0)
		return r;

	msg = nlmsg_alloc();
	cb = nl_cb_alloc(NL_CB_DEFAULT);
	if (!msg || !cb) {
		r = -ENOMEM;
		goto out;
	}
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, ctx->family, 0,
			 dump ? NLM_F_DUMP : 0, cmd, VDPA_GENL_VERSION)) {
		r = -ENOMEM;
		goto out;
	}
	if ((dev_name && nla_put_string(msg, VDPA_ATTR_DEV_NAME, dev_name) < 0) ||
	    (mg_bus &&
	     nla_put_string(msg, VDPA_ATTR_MGMTDEV_BUS_NAME, mg_bus) < 0) ||
	    (mg_dev &&
	     nla_put_string(msg, VDPA_ATTR_MGMTDEV_DEV_NAME, mg_dev) < 0)) {
		r = -EMSGSIZE;
		goto out;
	}

	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, valid_cb, ctx);
	nl_cb_set(cb, NL_CB_FINISH, NL_CB_CUSTOM, finish_cb, ctx);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, ack_cb, ctx);
	nl_cb_err(cb, NL_CB_CUSTOM, err_cb, ctx);

	/* A dump ends with NLMSG_DONE; other requests with an ACK. */
	if (dump)
		nl_socket_disable_auto_ack(sk);
	else
		nl_socket_enable_auto_ack(sk);

	r = nl_send_auto(sk, msg);
	if (r < 0) {
		r = nle_to_errno(r);
		goto out;
	}

	while (!ctx->done) {
		r = nl_recvmsgs(sk, cb);
		if (ctx->done)
			break;
		if (r < 0) {
			ctx->err = nle_to_errno(r);
			break;
		}
	}
	r = ctx->err;

out:
	nl_cb_put(cb);
	nlmsg_free(msg);
	nl_socket_free(sk);
	return r;
}

/* ---------------------------------------------------------------- lists */

static int fill_mgmtdev(struct nlctx *ctx, struct nlattr **tb)
{
	struct vdu_vdpa_mgmtdev *m;

	if (!tb[VDPA_ATTR_MGMTDEV_DEV_NAME]) {
		vdu_dbg("vdpa: management device without a name, skipped");
		return 0;
	}
	m = ctx_append(ctx);
	if (!m)
		return ctx->count >= VDU_VDPA_LIST_MAX ? -E2BIG : -ENOMEM;
	memset(m, 0, sizeof(*m));
	attr_str(m->bus, sizeof(m->bus), tb[VDPA_ATTR_MGMTDEV_BUS_NAME]);
	attr_str(m->name, sizeof(m->name), tb[VDPA_ATTR_MGMTDEV_DEV_NAME]);
	if (tb[VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES])
		m->supported_classes =
			nla_get_u64(tb[VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES]);
	/* Both below appeared in Linux 5.19; absent on older kernels. */
	if (tb[VDPA_ATTR_DEV_MGMTDEV_MAX_VQS])
		m->max_vqs = nla_get_u32(tb[VDPA_ATTR_DEV_MGMTDEV_MAX_VQS]);
	if (tb[VDPA_ATTR_DEV_SUPPORTED_FEATURES])
		m->dev_features =
			nla_get_u64(tb[VDPA_ATTR_DEV_SUPPORTED_FEATURES]);
	return 0;
}

static void dev_from_attrs(struct vdu_vdpa_dev *d, struct nlattr **tb)
{
	memset(d, 0, sizeof(*d));
	attr_str(d->name, sizeof(d->name), tb[VDPA_ATTR_DEV_NAME]);
	mgmtdev_handle(d->mgmtdev, sizeof(d->mgmtdev), tb);
	if (tb[VDPA_ATTR_DEV_ID])
		d->device_id = nla_get_u32(tb[VDPA_ATTR_DEV_ID]);
	if (tb[VDPA_ATTR_DEV_VENDOR_ID])
		d->vendor_id = nla_get_u32(tb[VDPA_ATTR_DEV_VENDOR_ID]);
	if (tb[VDPA_ATTR_DEV_MAX_VQS])
		d->max_vqs = nla_get_u32(tb[VDPA_ATTR_DEV_MAX_VQS]);
	if (tb[VDPA_ATTR_DEV_MAX_VQ_SIZE])
		d->max_vq_size = nla_get_u16(tb[VDPA_ATTR_DEV_MAX_VQ_SIZE]);
}

static int fill_dev_list(struct nlctx *ctx, struct nlattr **tb)
{
	struct vdu_vdpa_dev *d;

	if (!tb[VDPA_ATTR_DEV_NAME]) {
		vdu_dbg("vdpa: device without a name, skipped");
		return 0;
	}
	d = ctx_append(ctx);
	if (!d)
		return ctx->count >= VDU_VDPA_LIST_MAX ? -E2BIG : -ENOMEM;
	dev_from_attrs(d, tb);
	return 0;
}

static int fill_dev_one(struct nlctx *ctx, struct nlattr **tb)
{
	if (!tb[VDPA_ATTR_DEV_NAME] || ctx->got_one)
		return 0;
	dev_from_attrs(ctx->one, tb);
	ctx->got_one = true;
	return 0;
}

static int do_list(uint8_t cmd, size_t elem_size,
		   int (*fill)(struct nlctx *, struct nlattr **), void **out)
{
	int attempt, r = -EAGAIN;

	*out = NULL;
	for (attempt = 0; attempt < VDU_VDPA_DUMP_RETRIES; attempt++) {
		struct nlctx ctx = {
			.fill = fill,
			.elem_size = elem_size,
		};

		clear_last_error();
		r = vdpa_request(cmd, true, NULL, NULL, NULL, &ctx);
		if (r == 0) {
			if (ctx.count > INT_MAX) {
				free(ctx.items);
				return -E2BIG;
			}
			if (!ctx.count) {
				free(ctx.items);
				ctx.items = NULL;
			}
			*out = ctx.items;
			return (int)ctx.count;
		}
		free(ctx.items);
		/* The list changed under the dump (NLM_F_DUMP_INTR): retry. */
		if (r != -EAGAIN)
			break;
	}
	return r;
}

/* A list of ours (elements of full bytes) laid out again with the caller's
 * element size. */
static int resize_list(void **items, int count, size_t full, size_t size)
{
	char *out;

	if (count <= 0 || size == full)
		return count;
	out = calloc((size_t)count, size);
	if (!out) {
		free(*items);
		*items = NULL;
		return -ENOMEM;
	}
	for (int i = 0; i < count; i++)
		vdu_copy_out(out + (size_t)i * size, size,
			     (char *)*items + (size_t)i * full, full);
	free(*items);
	*items = out;
	return count;
}

/* The 0.1 layouts are the smallest a caller may pass. */
#define MGMTDEV_V1_SIZE (offsetof(struct vdu_vdpa_mgmtdev, dev_features) + 8)
#define VDPADEV_V1_SIZE (offsetof(struct vdu_vdpa_dev, max_vq_size) + 4)

int vdu_vdpa_mgmtdev_list_sz(struct vdu_vdpa_mgmtdev **out, size_t size)
{
	int n;

	if (!out || size < MGMTDEV_V1_SIZE)
		return -EINVAL;
	n = do_list(VDPA_CMD_MGMTDEV_GET, sizeof(struct vdu_vdpa_mgmtdev),
		    fill_mgmtdev, (void **)out);
	return resize_list((void **)out, n, sizeof(**out), size);
}

int vdu_vdpa_dev_list_sz(struct vdu_vdpa_dev **out, size_t size)
{
	int n;

	if (!out || size < VDPADEV_V1_SIZE)
		return -EINVAL;
	n = do_list(VDPA_CMD_DEV_GET, sizeof(struct vdu_vdpa_dev),
		    fill_dev_list, (void **)out);
	return resize_list((void **)out, n, sizeof(**out), size);
}

/* --------------------------------------------------------- single device */

int vdu_vdpa_dev_get_sz(const char *name, struct vdu_vdpa_dev *out,
			size_t size)
{
	struct vdu_vdpa_dev tmp;
	struct nlctx ctx = {
		.fill = fill_dev_one,
		.one = &tmp,
	};
	int r;

	clear_last_error();
	if (!out || size < VDPADEV_V1_SIZE)
		return -EINVAL;
	r = vdu_name_valid(name);
	if (r < 0)
		return r;
	r = vdpa_request(VDPA_CMD_DEV_GET, false, name, NULL, NULL, &ctx);
	if (r < 0)
		return r;
	if (!ctx.got_one)
		return -ENODEV;
	vdu_copy_out(out, size, &tmp, sizeof(tmp));
	return 0;
}

/* The 0.1 entry points, for programs built before the sized calls. */
#undef vdu_vdpa_mgmtdev_list
#undef vdu_vdpa_dev_list
#undef vdu_vdpa_dev_get
VDU_API int vdu_vdpa_mgmtdev_list(struct vdu_vdpa_mgmtdev **out);
VDU_API int vdu_vdpa_dev_list(struct vdu_vdpa_dev **out);
VDU_API int vdu_vdpa_dev_get(const char *name, struct vdu_vdpa_dev *out);

int vdu_vdpa_mgmtdev_list(struct vdu_vdpa_mgmtdev **out)
{
	return vdu_vdpa_mgmtdev_list_sz(out, MGMTDEV_V1_SIZE);
}

int vdu_vdpa_dev_list(struct vdu_vdpa_dev **out)
{
	return vdu_vdpa_dev_list_sz(out, VDPADEV_V1_SIZE);
}

int vdu_vdpa_dev_get(const char *name, struct vdu_vdpa_dev *out)
{
	return vdu_vdpa_dev_get_sz(name, out, VDPADEV_V1_SIZE);
}

/*
 * mgmtdev is "dev" (bus-less, e.g. "vduse") or "bus/dev"
 * (e.g. "pci/0000:03:00.2"), as printed by vdu_vdpa_dev_list().
 */
int vdu_vdpa_dev_add(const char *name, const char *mgmtdev)
{
	struct nlctx ctx = { 0 };
	char bus[64];
	const char *mg_bus = NULL, *mg_dev;
	const char *slash;
	int r;

	clear_last_error();
	r = vdu_name_valid(name);
	if (r < 0)
		return r;
	if (!mgmtdev)
		mgmtdev = "vduse";
	mg_dev = mgmtdev;
	slash = strchr(mgmtdev, '/');
	if (slash) {
		size_t blen = (size_t)(slash - mgmtdev);

		if (blen == 0 || slash[1] == '\0')
			return -EINVAL;
		if (blen >= sizeof(bus))
			return -ENAMETOOLONG;
		memcpy(bus, mgmtdev, blen);
		bus[blen] = '\0';
		mg_bus = bus;
		mg_dev = slash + 1;
	}
	if (*mg_dev == '\0')
		return -EINVAL;
	return vdpa_request(VDPA_CMD_DEV_NEW, false, name, mg_bus, mg_dev,
			    &ctx);
}

int vdu_vdpa_dev_del(const char *name)
{
	struct nlctx ctx = { 0 };
	int r;

	clear_last_error();
	r = vdu_name_valid(name);
	if (r < 0)
		return r;
	return vdpa_request(VDPA_CMD_DEV_DEL, false, name, NULL, NULL, &ctx);
}
