/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbd backend: remote storage over the NBD protocol (TCP or unix sockets).
 *
 * open() connects once (blocking, bounded by timeout=) to learn the export
 * size, transmission flags and block sizes, then disconnects.  Each queue
 * then keeps its own connections (connections=N when the server allows
 * NBD_FLAG_CAN_MULTI_CONN, else one) on the queue's event loop: sockets
 * are non-blocking, requests go out with one sendmsg per batch (header and
 * write data gathered straight from the driver's buffers), replies are
 * matched by cookie in any order and read data is scattered with readv
 * straight into the driver's buffers (nbd_proto.c's parser says where).
 *
 * Reconnect: a connection that fails keeps its requests: they go back to
 * the queue's pending list and are sent again on another live connection,
 * or after this one reconnects.  Reconnecting never blocks the loop: a
 * non-blocking connect() followed by the handshake state machine driven by
 * socket events, retried with exponential back-off (100 ms doubling to
 * 5 s).  When no connection of a queue has been up for timeout= seconds
 * the waiting requests fail with EIO and new ones fail at once, until a
 * connection is back.  A live connection whose server stops answering for
 * timeout= seconds is treated as dead, so nothing waits forever.
 *
 * All state is per queue; the handle is read-only after open().
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <event2/event.h>

#include "backends.h"
#include "nbd_proto.h"

#define MAX_ADDRS 8
#define MAX_CONNECTIONS 16
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define HS_TIMEOUT_MAX_S 10      /* connect + handshake, per attempt */
#define TICK_MS 250
#define SEND_IOV 256
#define RECV_IOV 64
#define TRIM_LIMIT (1u << 30)    /* per NBD trim/zero command */

void (*vbe_nbd_complete_hook)(struct vdu_io *io, int result) = vdu_io_complete;

struct nbd_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct nbd_dev {
	char url[512];
	struct nbd_url u;
	struct nbd_addr addrs[MAX_ADDRS];
	int naddrs;
	unsigned connections, timeout_s;
	bool readonly;
	/* from the server at open() */
	uint64_t size;
	uint16_t tflags;
	bool structured;
	uint32_t lbs, pbs, max_payload, trim_limit;
	unsigned nconns; /* per queue */
};

struct nbd_io;

/* One NBD command (a whole vdu_io, or a piece of a split one). */
struct nbd_cmd {
	struct nbd_rx_cmd rx;    /* type/offset/len/buffers; parser state */
	struct nbd_io *tio;
	struct nbd_conn *conn;   /* owner, NULL while on the queue's list */
	struct nbd_cmd *prev, *next;
	uint64_t cookie;
	uint32_t slot;
	uint16_t flags;
	uint32_t tx_done;        /* bytes of header + payload sent */
	uint8_t hdr[NBD_REQUEST_SIZE];
};

/* Per request, in vdu_io.priv. */
struct nbd_io {
	struct vdu_io *io;
	unsigned left;
	int err;
	struct nbd_cmd one;
	struct nbd_cmd *many;
};

struct cmd_list {
	struct nbd_cmd *head, *tail;
};

enum { C_WAIT, C_CONNECTING, C_HANDSHAKE, C_READY };

struct nbd_q;

struct nbd_conn {
	struct nbd_q *q;
	unsigned idx;
	int state;
	int fd;
	int addr_i;
	struct event *rev, *wev, *retry;
	struct nbd_hs *hs;
	struct nbd_rx rx;
	struct cmd_list cmds;    /* in send order */
	struct nbd_cmd *tx_next; /* first command not fully sent */
	unsigned ncmds;
	struct nbd_cmd **slots;
	uint32_t *free_slots;
	uint32_t nslots, nfree, gen;
	unsigned backoff_ms;
	bool fail_logged;
	uint64_t attempt_start, last_progress; /* ms */
};

struct nbd_q {
	struct nbd_dev *d;
	struct event_base *base;
	unsigned qidx;
	struct nbd_conn conns[MAX_CONNECTIONS];
	unsigned nconns;
	struct cmd_list pending;
	bool down, failfast, ever_up;
	uint64_t down_since;
	struct event *tick;
};

static const struct nbd_rx_ops rx_ops;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t cmd_total(const struct nbd_cmd *c)
{
	return NBD_REQUEST_SIZE + (c->rx.type == NBD_CMD_WRITE ? c->rx.len : 0);
}

/* ---------------------------------------------------------------- lists */

static void list_del(struct cmd_list *l, struct nbd_cmd *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
}

static void list_add_tail(struct cmd_list *l, struct nbd_cmd *c)
{
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

/* Put all of src in front of dst. */
static void list_splice_front(struct cmd_list *dst, struct cmd_list *src)
{
	if (!src->head)
		return;
	if (dst->head) {
		src->tail->next = dst->head;
		dst->head->prev = src->tail;
	} else
		dst->tail = src->tail;
	dst->head = src->head;
	src->head = src->tail = NULL;
}

/* ---------------------------------------------------------- completion */

static void part_done(struct nbd_cmd *c, int err)
{
	struct nbd_io *tio = c->tio;

	if (err && !tio->err)
		tio->err = err;
	if (--tio->left == 0) {
		struct vdu_io *io = tio->io;

		err = tio->err;
		free(tio->many);
		tio->many = NULL;
		vbe_nbd_complete_hook(io, err);
	}
}

/* ------------------------------------------------------------- sockets */

static int sock_open(const struct nbd_dev *d, int ai, int *fdp)
{
	const struct nbd_addr *a = &d->addrs[ai];
	int fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (a->ss.ss_family != AF_UNIX) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	*fdp = fd;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
		return 0;
	if (errno == EINPROGRESS || errno == EAGAIN)
		return -EINPROGRESS;
	int r = -errno;
	close(fd);
	*fdp = -1;
	return r;
}

static int sock_error(int fd)
{
	int e = 0;
	socklen_t l = sizeof(e);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
		return -errno;
	return -e;
}

/* Move handshake bytes without blocking: NBD_HS_DONE, NBD_HS_MORE (wait;
 * *want_write when output is pending) or -errno with hs->msg set. */
static int hs_pump(int fd, struct nbd_hs *hs, bool *want_write)
{
	for (;;) {
		size_t len;
		uint8_t *b;
		ssize_t n;
		int r;

		while (hs->out_off < hs->out_len) {
			n = send(fd, hs->out + hs->out_off, hs->out_len - hs->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				*want_write = true;
				return NBD_HS_MORE;
			}
			if (n < 0) {
				r = -errno;
				snprintf(hs->msg, sizeof(hs->msg), "send: %s", strerror(errno));
				return r;
			}
			hs->out_off += n;
		}
		*want_write = false;
		b = nbd_hs_rbuf(hs, &len);
		if (!len)
			return -EPROTO;
		n = recv(fd, b, len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return NBD_HS_MORE;
		if (n < 0) {
			r = -errno;
			snprintf(hs->msg, sizeof(hs->msg), "recv: %s", strerror(errno));
			return r;
		}
		if (n == 0) {
			snprintf(hs->msg, sizeof(hs->msg),
				 "the server closed the connection during the handshake");
			return -ECONNRESET;
		}
		r = nbd_hs_consume(hs, n);
		if (r != NBD_HS_MORE)
			return r;
	}
}

static void send_disc(int fd)
{
	uint8_t h[NBD_REQUEST_SIZE];

	nbd_encode_request(h, 0, NBD_CMD_DISC, 0, 0, 0);
	if (send(fd, h, sizeof(h), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* best effort: the server copes with a plain close */
	}
}

/* ---------------------------------------------------------------- open */

static int probe(struct nbd_dev *d, struct nbd_hs *hs)
{
	uint64_t deadline = now_ms() + (uint64_t)d->timeout_s * 1000;
	int fd = -1, r = -ECONNREFUSED;
	bool ww = false;

	for (int i = 0; i < d->naddrs && fd < 0; i++) {
		r = sock_open(d, i, &fd);
		if (r == -EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int64_t left = (int64_t)(deadline - now_ms());

			if (left < 0 || poll(&p, 1, (int)left) <= 0)
				r = -ETIMEDOUT;
			else
				r = sock_error(fd);
			if (r < 0) {
				close(fd);
				fd = -1;
			}
		}
	}
	if (fd < 0) {
		vdu_log(VDU_LOG_ERR, "nbd: cannot connect to %s: %s", d->url, strerror(-r));
		return r;
	}
	nbd_hs_init(hs, d->u.export_name, true);
	for (;;) {
		struct pollfd p = { .fd = fd };
		int64_t left;

		r = hs_pump(fd, hs, &ww);
		if (r != NBD_HS_MORE)
			break;
		p.events = ww ? POLLOUT : POLLIN;
		left = (int64_t)(deadline - now_ms());
		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			r = -ETIMEDOUT;
			snprintf(hs->msg, sizeof(hs->msg), "handshake timed out after %u s",
				 d->timeout_s);
			break;
		}
	}
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "nbd: %s: %s", d->url, hs->msg);
		nbd_hs_abort(hs);
		if (hs->out_off < hs->out_len &&
		    send(fd, hs->out + hs->out_off, hs->out_len - hs->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* best effort */
		}
		close(fd);
		return r;
	}
	send_disc(fd);
	close(fd);
	return 0;
}

static int resolve(struct nbd_dev *d)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int r;

	if (d->u.unix_socket) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&d->addrs[0].ss;

		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, d->u.socket_path, strlen(d->u.socket_path) + 1);
		d->addrs[0].len = sizeof(*sun);
		d->naddrs = 1;
		return 0;
	}
	r = getaddrinfo(d->u.host, d->u.port, &hints, &res);
	if (r) {
		vdu_log(VDU_LOG_ERR, "nbd: cannot resolve '%s': %s", d->u.host, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai && d->naddrs < MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(d->addrs[0].ss))
			continue;
		memcpy(&d->addrs[d->naddrs].ss, ai->ai_addr, ai->ai_addrlen);
		d->addrs[d->naddrs++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (!d->naddrs) {
		vdu_log(VDU_LOG_ERR, "nbd: '%s' has no usable address", d->u.host);
		return -EHOSTUNREACH;
	}
	return 0;
}

static unsigned param_uint(const struct vdu_param *p, size_t n,
			   const char *key, unsigned def)
{
	const char *v = vdu_param_get(p, n, key);

	return v ? (unsigned)strtoul(v, NULL, 10) : def;
}

/* The URL's syntax, before anything connects. */
static int nbd_check(const struct vdu_param *p, size_t n, char *err,
		     size_t errlen)
{
	struct nbd_url u;
	char why[300];

	if (nbd_url_parse(vdu_param_get(p, n, "url"), &u, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "nbd: url: %s", why);
		return -EINVAL;
	}
	return 0;
}

static int nbd_open(const struct vdu_param *p, size_t n, void **handle)
{
	struct nbd_dev *d = calloc(1, sizeof(*d));
	struct nbd_hs *hs = NULL;
	const char *url = vdu_param_get(p, n, "url");
	const char *ro = vdu_param_get(p, n, "readonly");
	char err[300];
	int r = -EINVAL;

	/* vdu_plugin_check() has accepted the values. */
	if (!d)
		return -ENOMEM;
	d->connections = param_uint(p, n, "connections", 1);
	d->timeout_s = param_uint(p, n, "timeout", 30);
	d->readonly = ro && vdu_parse_bool(ro) == 1;
	if (!url || !d->connections || d->connections > MAX_CONNECTIONS ||
	    !d->timeout_s) {
		vdu_log(VDU_LOG_ERR, "nbd: url= is required");
		goto fail;
	}
	if (nbd_url_parse(url, &d->u, err, sizeof(err)) < 0) {
		vdu_log(VDU_LOG_ERR, "nbd: %s", err);
		goto fail;
	}
	snprintf(d->url, sizeof(d->url), "%s", url);
	r = resolve(d);
	if (r < 0)
		goto fail;
	hs = malloc(sizeof(*hs));
	if (!hs) {
		r = -ENOMEM;
		goto fail;
	}
	r = probe(d, hs);
	if (r < 0)
		goto fail;

	d->size = hs->size;
	d->tflags = hs->tflags;
	d->structured = hs->structured;
	d->lbs = 512;
	d->max_payload = NBD_DEFAULT_MAX_PAYLOAD;
	if (hs->got_block_size) {
		if (hs->min_bs > 4096) {
			vdu_log(VDU_LOG_ERR, "nbd: %s: minimum block size %u is larger "
				"than a page; not supported", d->url, hs->min_bs);
			r = -EOPNOTSUPP;
			goto fail;
		}
		if (hs->min_bs > d->lbs)
			d->lbs = hs->min_bs;
		if (hs->pref_bs > d->lbs && hs->pref_bs <= (64u << 10))
			d->pbs = hs->pref_bs;
		if (hs->max_bs < d->max_payload)
			d->max_payload = hs->max_bs;
	}
	d->max_payload -= d->max_payload % d->lbs;
	if (d->max_payload < d->lbs) {
		vdu_log(VDU_LOG_ERR, "nbd: %s: maximum block size %u is below the "
			"block size %u", d->url, hs->max_bs, d->lbs);
		r = -EOPNOTSUPP;
		goto fail;
	}
	d->trim_limit = TRIM_LIMIT - TRIM_LIMIT % d->lbs;
	if (d->size < d->lbs) {
		vdu_log(VDU_LOG_ERR, "nbd: %s: export of %" PRIu64 " bytes is too small",
			d->url, d->size);
		r = -EINVAL;
		goto fail;
	}
	if (d->tflags & NBD_FLAG_READ_ONLY)
		d->readonly = true;
	d->nconns = d->tflags & NBD_FLAG_CAN_MULTI_CONN ? d->connections : 1;
	if (d->connections > 1 && d->nconns == 1)
		vdu_log(VDU_LOG_NOTICE, "nbd: %s: the server does not allow multiple "
			"connections (no NBD_FLAG_CAN_MULTI_CONN); using one per queue",
			d->url);
	vdu_log(VDU_LOG_INFO, "nbd: %s: %" PRIu64 " bytes, block %u, max request %u, "
		"%s replies, flags 0x%x%s%s%s%s%s, %u connection(s) per queue",
		d->url, d->size, d->lbs, d->max_payload,
		d->structured ? "structured" : "simple", d->tflags,
		d->readonly ? ", read-only" : "",
		d->tflags & NBD_FLAG_SEND_FLUSH ? ", flush" : "",
		d->tflags & NBD_FLAG_SEND_TRIM ? ", trim" : "",
		d->tflags & NBD_FLAG_SEND_WRITE_ZEROES ? ", write-zeroes" : "",
		d->tflags & NBD_FLAG_CAN_MULTI_CONN ? ", multi-conn" : "",
		d->nconns);
	free(hs);
	*handle = d;
	return 0;
fail:
	free(hs);
	free(d);
	return r;
}

static void nbd_close(void *handle)
{
	free(handle);
}

static int nbd_get_info(void *handle, struct vdu_backend_info *info)
{
	struct nbd_dev *d = handle;

	memset(info, 0, sizeof(*info));
	info->size = d->size;
	info->logical_block_size = d->lbs;
	info->physical_block_size = d->pbs;
	if (d->tflags & NBD_FLAG_SEND_FLUSH)
		info->caps |= VDU_CAP_FLUSH;
	if (d->readonly)
		info->caps |= VDU_CAP_READ_ONLY;
	else {
		if (d->tflags & NBD_FLAG_SEND_TRIM)
			info->caps |= VDU_CAP_DISCARD;
		if (d->tflags & NBD_FLAG_SEND_WRITE_ZEROES)
			info->caps |= VDU_CAP_WRITE_ZEROES;
	}
	return 0;
}

/* --------------------------------------------------------- connections */

static void conn_start(struct nbd_conn *c);
static void conn_event(evutil_socket_t fd, short what, void *arg);
static void q_dispatch_pending(struct nbd_q *q);
static void q_tick_arm(struct nbd_q *q);

static void conn_close_fd(struct nbd_conn *c)
{
	if (c->rev) {
		event_free(c->rev);
		c->rev = NULL;
	}
	if (c->wev) {
		event_free(c->wev);
		c->wev = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	free(c->hs);
	c->hs = NULL;
}

static bool q_any_ready(const struct nbd_q *q)
{
	for (unsigned i = 0; i < q->nconns; i++)
		if (q->conns[i].state == C_READY)
			return true;
	return false;
}

static void q_check_down(struct nbd_q *q)
{
	if (!q->down && !q_any_ready(q)) {
		q->down = true;
		q->down_since = now_ms();
	}
	q_tick_arm(q);
}

static void conn_schedule(struct nbd_conn *c, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	c->state = C_WAIT;
	evtimer_add(c->retry, &tv);
}

/* A connect or handshake attempt failed: try again later. */
static void conn_retry(struct nbd_conn *c, int err, const char *why)
{
	struct nbd_q *q = c->q;

	conn_close_fd(c);
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
	vdu_log(c->fail_logged ? VDU_LOG_DEBUG : VDU_LOG_WARNING,
		"nbd: %s: queue %u connection %u: %s (%s); retrying every %s",
		q->d->url, q->qidx, c->idx, why, strerror(-err),
		c->backoff_ms >= BACKOFF_MAX_MS ? "5 s" : "0.1-5 s");
	c->fail_logged = true;
	conn_schedule(c, c->backoff_ms);
	q_check_down(q);
}

static void slot_free(struct nbd_conn *c, struct nbd_cmd *cmd)
{
	c->slots[cmd->slot] = NULL;
	c->free_slots[c->nfree++] = cmd->slot;
}

static int slot_alloc(struct nbd_conn *c, struct nbd_cmd *cmd)
{
	if (!c->nfree) {
		uint32_t n = c->nslots ? c->nslots * 2 : 64;
		struct nbd_cmd **s = realloc(c->slots, n * sizeof(*s));
		uint32_t *f;

		if (!s)
			return -ENOMEM;
		c->slots = s;
		f = realloc(c->free_slots, n * sizeof(*f));
		if (!f)
			return -ENOMEM;
		c->free_slots = f;
		for (uint32_t i = n; i > c->nslots; i--) {
			c->slots[i - 1] = NULL;
			c->free_slots[c->nfree++] = i - 1;
		}
		c->nslots = n;
	}
	cmd->slot = c->free_slots[--c->nfree];
	c->slots[cmd->slot] = cmd;
	cmd->cookie = (uint64_t)++c->gen << 32 | cmd->slot;
	return 0;
}

/* The connection broke: keep its requests for the next one. */
static void conn_drop(struct nbd_conn *c, const char *why)
{
	struct nbd_q *q = c->q;

	vdu_log(VDU_LOG_WARNING, "nbd: %s: queue %u connection %u lost: %s; "
		"%u request(s) will be re-sent after reconnecting", q->d->url,
		q->qidx, c->idx, why, c->ncmds);
	if (!c->q->down)
		c->fail_logged = false;
	for (struct nbd_cmd *cmd = c->cmds.head; cmd; cmd = cmd->next) {
		slot_free(c, cmd);
		cmd->conn = NULL;
		cmd->tx_done = 0;
		nbd_rx_cmd_reset(&cmd->rx);
	}
	list_splice_front(&q->pending, &c->cmds);
	c->tx_next = NULL;
	c->ncmds = 0;
	conn_close_fd(c);
	c->backoff_ms = 0;
	conn_schedule(c, 0); /* first retry at once */
	q_check_down(q);
	q_dispatch_pending(q);
}

static void conn_ready(struct nbd_conn *c)
{
	struct nbd_q *q = c->q;
	struct nbd_dev *d = q->d;
	struct nbd_hs *hs = c->hs;

	if (hs->size != d->size) {
		snprintf(hs->msg, sizeof(hs->msg), "the export size changed from %"
			 PRIu64 " to %" PRIu64 " bytes", d->size, hs->size);
		conn_retry(c, -EINVAL, hs->msg);
		return;
	}
	if ((hs->tflags & NBD_FLAG_READ_ONLY) && !d->readonly) {
		conn_retry(c, -EROFS, "the export became read-only");
		return;
	}
	nbd_rx_init(&c->rx, hs->structured, &rx_ops, c);
	free(c->hs);
	c->hs = NULL;
	c->state = C_READY;
	c->backoff_ms = 0;
	c->fail_logged = false;
	c->last_progress = now_ms();
	if (q->down && q->ever_up)
		vdu_log(VDU_LOG_NOTICE, "nbd: %s: queue %u reconnected after %.1f s",
			d->url, q->qidx, (now_ms() - q->down_since) / 1000.0);
	q->down = false;
	q->failfast = false;
	q->ever_up = true;
	q_dispatch_pending(q);
}

static void conn_handshake(struct nbd_conn *c)
{
	bool ww = false;
	int r = hs_pump(c->fd, c->hs, &ww);

	if (r == NBD_HS_MORE) {
		if (ww)
			event_add(c->wev, NULL);
		else
			event_del(c->wev);
		return;
	}
	event_del(c->wev);
	if (r == NBD_HS_DONE)
		conn_ready(c);
	else {
		char why[sizeof(c->hs->msg)];

		snprintf(why, sizeof(why), "%s", c->hs->msg);
		nbd_hs_abort(c->hs);
		if (c->hs->out_off < c->hs->out_len &&
		    send(c->fd, c->hs->out + c->hs->out_off,
			 c->hs->out_len - c->hs->out_off, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* best effort */
		}
		conn_retry(c, r, why);
	}
}

static void conn_connected(struct nbd_conn *c)
{
	c->hs = malloc(sizeof(*c->hs));
	if (!c->hs) {
		conn_retry(c, -ENOMEM, "out of memory");
		return;
	}
	nbd_hs_init(c->hs, c->q->d->u.export_name, true);
	c->state = C_HANDSHAKE;
	event_add(c->rev, NULL);
	conn_handshake(c);
}

static void conn_start(struct nbd_conn *c)
{
	struct nbd_q *q = c->q;
	int r;

	c->attempt_start = now_ms();
	c->addr_i = (c->addr_i + 1) % q->d->naddrs;
	r = sock_open(q->d, c->addr_i, &c->fd);
	if (r < 0 && r != -EINPROGRESS) {
		conn_retry(c, r, "cannot connect");
		return;
	}
	c->rev = event_new(q->base, c->fd, EV_READ | EV_PERSIST, conn_event, c);
	c->wev = event_new(q->base, c->fd, EV_WRITE | EV_PERSIST, conn_event, c);
	if (!c->rev || !c->wev) {
		conn_retry(c, -ENOMEM, "out of memory");
		return;
	}
	q_tick_arm(q);
	if (r == 0) {
		conn_connected(c);
		return;
	}
	c->state = C_CONNECTING;
	event_add(c->wev, NULL);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_start(arg);
}

/* ---------------------------------------------------------------- I/O */

/* Send what can be sent: 0, or -errno when the connection is broken. */
static int conn_flush(struct nbd_conn *c)
{
	while (c->tx_next) {
		struct iovec iov[SEND_IOV];
		struct msghdr m = { .msg_iov = iov };
		struct nbd_cmd *cmd;
		int n = 0;
		ssize_t w;

		for (cmd = c->tx_next; cmd && n < SEND_IOV - 1; cmd = cmd->next) {
			if (cmd->tx_done < NBD_REQUEST_SIZE) {
				iov[n].iov_base = cmd->hdr + cmd->tx_done;
				iov[n].iov_len = NBD_REQUEST_SIZE - cmd->tx_done;
				n++;
			}
			if (cmd->rx.type == NBD_CMD_WRITE) {
				uint64_t off = cmd->tx_done > NBD_REQUEST_SIZE ?
					       cmd->tx_done - NBD_REQUEST_SIZE : 0;
				uint64_t covered;

				n += nbd_iov_slice(&cmd->rx, off, cmd->rx.len - off,
						   iov + n, SEND_IOV - n, &covered);
				if (covered < cmd->rx.len - off)
					break;
			}
		}
		m.msg_iovlen = n;
		w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			event_add(c->wev, NULL);
			return 0;
		}
		if (w < 0)
			return -errno;
		c->last_progress = now_ms();
		while (w > 0) {
			uint32_t rem;

			cmd = c->tx_next;
			rem = cmd_total(cmd) - cmd->tx_done;
			if ((uint64_t)w < rem) {
				cmd->tx_done += w;
				break;
			}
			cmd->tx_done += rem;
			w -= rem;
			c->tx_next = cmd->next;
		}
	}
	event_del(c->wev);
	return 0;
}

static void conn_enqueue(struct nbd_conn *c, struct nbd_cmd *cmd)
{
	if (slot_alloc(c, cmd) < 0) {
		part_done(cmd, -ENOMEM);
		return;
	}
	nbd_encode_request(cmd->hdr, cmd->flags, cmd->rx.type, cmd->cookie,
			   cmd->rx.offset, cmd->rx.len);
	cmd->tx_done = 0;
	cmd->conn = c;
	nbd_rx_cmd_reset(&cmd->rx);
	list_add_tail(&c->cmds, cmd);
	if (!c->tx_next)
		c->tx_next = cmd;
	if (!c->ncmds++)
		c->last_progress = now_ms();
}

static struct nbd_conn *q_pick(struct nbd_q *q)
{
	struct nbd_conn *best = NULL;

	for (unsigned i = 0; i < q->nconns; i++) {
		struct nbd_conn *c = &q->conns[i];

		if (c->state == C_READY && (!best || c->ncmds < best->ncmds))
			best = c;
	}
	return best;
}

static void q_dispatch(struct nbd_q *q, struct nbd_cmd *cmd)
{
	struct nbd_conn *c = q_pick(q);

	if (c) {
		conn_enqueue(c, cmd);
		return;
	}
	if (q->failfast) {
		part_done(cmd, -EIO);
		return;
	}
	cmd->conn = NULL;
	list_add_tail(&q->pending, cmd);
	q_tick_arm(q);
}

static void q_flush_all(struct nbd_q *q)
{
	for (unsigned i = 0; i < q->nconns; i++) {
		struct nbd_conn *c = &q->conns[i];

		if (c->state == C_READY && c->tx_next) {
			int r = conn_flush(c);

			if (r < 0) {
				char why[64];

				snprintf(why, sizeof(why), "send: %s", strerror(-r));
				conn_drop(c, why);
			}
		}
	}
}

static void q_dispatch_pending(struct nbd_q *q)
{
	struct nbd_cmd *cmd;

	if (!q_any_ready(q))
		return;
	while ((cmd = q->pending.head)) {
		list_del(&q->pending, cmd);
		q_dispatch(q, cmd);
	}
	q_flush_all(q);
}

static void q_fail_pending(struct nbd_q *q, int err)
{
	struct nbd_cmd *cmd;

	while ((cmd = q->pending.head)) {
		list_del(&q->pending, cmd);
		part_done(cmd, err);
	}
}

static struct nbd_rx_cmd *rx_lookup(void *opaque, uint64_t cookie)
{
	struct nbd_conn *c = opaque;
	uint32_t slot = (uint32_t)cookie;
	struct nbd_cmd *cmd;

	if (slot >= c->nslots || !(cmd = c->slots[slot]) || cmd->cookie != cookie ||
	    cmd->tx_done != cmd_total(cmd))
		return NULL;
	return &cmd->rx;
}

static int rx_done(void *opaque, struct nbd_rx_cmd *rc, int err)
{
	struct nbd_conn *c = opaque;
	struct nbd_cmd *cmd = (struct nbd_cmd *)((char *)rc - offsetof(struct nbd_cmd, rx));

	if (err == -ESHUTDOWN)
		return err; /* the server is going away: retry elsewhere */
	if (err)
		vdu_log(VDU_LOG_DEBUG, "nbd: %s: command %u at %" PRIu64 "+%u failed: %s%s%s",
			c->q->d->url, rc->type, rc->offset, rc->len, strerror(-err),
			c->rx.errtext[0] ? " - " : "", c->rx.errtext);
	c->rx.errtext[0] = 0;
	slot_free(c, cmd);
	if (c->tx_next == cmd)
		c->tx_next = cmd->next;
	list_del(&c->cmds, cmd);
	c->ncmds--;
	cmd->conn = NULL;
	part_done(cmd, err);
	return 0;
}

static const struct nbd_rx_ops rx_ops = {
	.lookup = rx_lookup,
	.done = rx_done,
};

static void conn_readable(struct nbd_conn *c)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		struct iovec iov[RECV_IOV];
		int n = nbd_rx_iov(&c->rx, iov, RECV_IOV);
		ssize_t r = readv(c->fd, iov, n);
		char why[200];

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			snprintf(why, sizeof(why), "%s", r ? strerror(errno) :
				 "the server closed the connection");
			conn_drop(c, why);
			return;
		}
		c->last_progress = now_ms();
		int e = nbd_rx_consume(&c->rx, r);
		if (e == -ESHUTDOWN) {
			conn_drop(c, "the server is shutting down");
			return;
		}
		if (e < 0) {
			snprintf(why, sizeof(why), "protocol error: %s", c->rx.errtext);
			conn_drop(c, why);
			return;
		}
	}
}

static void conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct nbd_conn *c = arg;

	switch (c->state) {
	case C_CONNECTING: {
		int r = sock_error(c->fd);

		event_del(c->wev);
		if (r < 0)
			conn_retry(c, r, "cannot connect");
		else
			conn_connected(c);
		return;
	}
	case C_HANDSHAKE:
		conn_handshake(c);
		return;
	case C_READY:
		if (what & EV_WRITE) {
			int r = conn_flush(c);

			if (r < 0) {
				char why[64];

				snprintf(why, sizeof(why), "send: %s", strerror(-r));
				conn_drop(c, why);
				return;
			}
		}
		if (what & EV_READ)
			conn_readable(c);
		return;
	}
}

/* -------------------------------------------------------------- timers */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nbd_q *q = arg;
	uint64_t now = now_ms(), limit = (uint64_t)q->d->timeout_s * 1000;
	uint64_t hs_limit = (q->d->timeout_s < HS_TIMEOUT_MAX_S ?
			     q->d->timeout_s : HS_TIMEOUT_MAX_S) * 1000ULL;

	if (q->down && !q->failfast && now - q->down_since >= limit) {
		unsigned n = 0;

		for (struct nbd_cmd *c = q->pending.head; c; c = c->next)
			n++;
		vdu_log(VDU_LOG_ERR, "nbd: %s: queue %u: no connection for %u s; "
			"failing %u request(s), and new ones until the server is back",
			q->d->url, q->qidx, q->d->timeout_s, n);
		q->failfast = true;
	}
	if (q->failfast)
		q_fail_pending(q, -EIO);
	for (unsigned i = 0; i < q->nconns; i++) {
		struct nbd_conn *c = &q->conns[i];

		if (c->state == C_READY && c->ncmds && now - c->last_progress >= limit) {
			char why[80];

			snprintf(why, sizeof(why), "no answer for %u s", q->d->timeout_s);
			conn_drop(c, why);
		} else if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE) &&
			   now - c->attempt_start >= hs_limit)
			conn_retry(c, -ETIMEDOUT, c->state == C_CONNECTING ?
				   "connect timed out" : "handshake timed out");
	}
	q_tick_arm(q);
}

/* The tick runs only while something could need it, so an idle queue
 * leaves its loop free of timers. */
static void q_tick_arm(struct nbd_q *q)
{
	bool need = q->down || q->pending.head;
	struct timeval tv = { 0, TICK_MS * 1000 };

	for (unsigned i = 0; i < q->nconns && !need; i++)
		need = q->conns[i].state != C_READY || q->conns[i].ncmds;
	if (need && !evtimer_pending(q->tick, NULL))
		evtimer_add(q->tick, &tv);
}

/* -------------------------------------------------------------- queues */

static int nbd_queue_open(void *handle, unsigned qidx, struct event_base *base,
			  void **qctx)
{
	struct nbd_dev *d = handle;
	struct nbd_q *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->d = d;
	q->base = base;
	q->qidx = qidx;
	q->nconns = d->nconns;
	q->down = true;
	q->down_since = now_ms();
	q->tick = evtimer_new(base, tick_cb, q);
	if (!q->tick) {
		free(q);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < q->nconns; i++) {
		struct nbd_conn *c = &q->conns[i];

		c->q = q;
		c->idx = i;
		c->fd = -1;
		c->addr_i = -1;
		c->retry = evtimer_new(base, retry_cb, c);
		if (!c->retry) {
			for (unsigned j = 0; j < i; j++)
				event_free(q->conns[j].retry);
			event_free(q->tick);
			free(q);
			return -ENOMEM;
		}
	}
	for (unsigned i = 0; i < q->nconns; i++)
		conn_start(&q->conns[i]);
	*qctx = q;
	return 0;
}

static void nbd_queue_close(void *qctx)
{
	struct nbd_q *q = qctx;

	q_fail_pending(q, -EIO);
	for (unsigned i = 0; i < q->nconns; i++) {
		struct nbd_conn *c = &q->conns[i];
		struct nbd_cmd *cmd;

		if (c->state == C_READY && (!c->tx_next || !c->tx_next->tx_done))
			send_disc(c->fd);
		while ((cmd = c->cmds.head)) {
			list_del(&c->cmds, cmd);
			part_done(cmd, -EIO);
		}
		conn_close_fd(c);
		event_free(c->retry);
		free(c->slots);
		free(c->free_slots);
	}
	event_free(q->tick);
	free(q);
}

static void nbd_submit(void *qctx, struct vdu_io *io)
{
	struct nbd_q *q = qctx;
	struct nbd_dev *d = q->d;
	struct nbd_io *tio = io->priv;
	uint16_t type, flags = 0;
	uint32_t limit = d->max_payload;
	uint64_t n = 1;

	switch (io->op) {
	case VDU_IO_READ:
		type = NBD_CMD_READ;
		break;
	case VDU_IO_WRITE:
		if (d->readonly)
			goto rofs;
		type = NBD_CMD_WRITE;
		break;
	case VDU_IO_FLUSH:
		if (!(d->tflags & NBD_FLAG_SEND_FLUSH))
			goto unsupp;
		type = NBD_CMD_FLUSH;
		break;
	case VDU_IO_DISCARD:
		if (d->readonly)
			goto rofs;
		if (!(d->tflags & NBD_FLAG_SEND_TRIM))
			goto unsupp;
		type = NBD_CMD_TRIM;
		limit = d->trim_limit;
		break;
	case VDU_IO_WRITE_ZEROES:
		if (d->readonly)
			goto rofs;
		if (!(d->tflags & NBD_FLAG_SEND_WRITE_ZEROES))
			goto unsupp;
		type = NBD_CMD_WRITE_ZEROES;
		if (!(io->flags & VDU_IO_F_UNMAP))
			flags |= NBD_CMD_FLAG_NO_HOLE;
		limit = d->trim_limit;
		break;
	default:
		goto unsupp;
	}
	if (q->failfast && !q_any_ready(q)) {
		vbe_nbd_complete_hook(io, -EIO);
		return;
	}
	if (type != NBD_CMD_FLUSH && io->len > limit)
		n = (io->len + limit - 1) / limit;
	tio->io = io;
	tio->err = 0;
	tio->left = n;
	tio->many = NULL;
	if (n > 1) {
		tio->many = calloc(n, sizeof(*tio->many));
		if (!tio->many) {
			vbe_nbd_complete_hook(io, -ENOMEM);
			return;
		}
	}
	struct nbd_cmd *cmds = n > 1 ? tio->many : &tio->one;

	for (uint64_t i = 0; i < n; i++) {
		struct nbd_cmd *c = &cmds[i];
		uint64_t off = i * limit;

		memset(c, 0, sizeof(*c));
		c->tio = tio;
		c->flags = flags;
		c->rx.type = type;
		c->rx.offset = type == NBD_CMD_FLUSH ? 0 : io->offset + off;
		c->rx.len = type == NBD_CMD_FLUSH ? 0 :
			    (uint32_t)(io->len - off < limit ? io->len - off : limit);
		c->rx.iov = io->iov;
		c->rx.iovcnt = io->iovcnt;
		c->rx.iov_skip = off;
	}
	/* The last dispatch may complete the request (fail-fast) and free
	 * tio->many: nothing touches cmds after it. */
	for (uint64_t i = 0; i < n; i++)
		q_dispatch(q, &cmds[i]);
	return;
rofs:
	vbe_nbd_complete_hook(io, -EROFS);
	return;
unsupp:
	vbe_nbd_complete_hook(io, -EOPNOTSUPP);
}

static void nbd_unplug(void *qctx)
{
	q_flush_all(qctx);
}

static const struct vdu_backend nbd_backend = {
	VDU_BACKEND_INIT,
	.io_priv_size = sizeof(struct nbd_io),
	.get_info = nbd_get_info,
	.queue_open = nbd_queue_open,
	.queue_close = nbd_queue_close,
	.submit = nbd_submit,
	.unplug = nbd_unplug,
};

static const struct vdu_option nbd_options[] = {
	{ "url", VDU_OPT_STRING, "URL", NULL,
	  "nbd://HOST[:PORT][/EXPORT] or nbd+unix:///EXPORT?socket=PATH",
	  VDU_OPT_F_REQUIRED, 0, 0 },
	{ "connections", VDU_OPT_UINT, "N", "1",
	  "connections per queue (servers that allow multi-conn)", 0, 1,
	  MAX_CONNECTIONS },
	{ "timeout", VDU_OPT_UINT, "SECONDS", "30",
	  "give up reconnecting after this long (requests then fail)", 0, 1, 86400 },
	{ "readonly", VDU_OPT_BOOL, "on|off", "off", "export read-only", 0, 0, 0 },
	{ NULL },
};

const struct vdu_plugin vbe_nbd = {
	VDU_PLUGIN_INIT,
	.name = "nbd",
	.description = "remote storage on an NBD server over TCP or a unix socket (nbdkit, qemu-nbd, nbd-server)",
	.options = nbd_options,
	.backend = &nbd_backend,
	.open = nbd_open,
	.close = nbd_close,
	.flags = VDU_PLUGIN_F_NETWORK,
	.check = nbd_check,
};
