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
 * TLS (nbds://, nbds+unix://): NBD_OPT_STARTTLS is the first option; on
 * its ACK the connection runs a GnuTLS handshake (blocking with a deadline
 * in open()'s probe, on the event loop otherwise) and the rest of the
 * haggling and all transmission go through the session.  Credentials
 * (X.509 from tls-certificates=DIR or the system trust store, or a PSK)
 * are loaded once at open() and shared by every session.  Nothing ever
 * falls back to plain text: a server that refuses STARTTLS, a certificate
 * that fails verification or a failed handshake fail the open, and fail a
 * reconnect attempt like any connect failure.  Reads decrypt straight into
 * the driver's buffers (gnutls_record_recv per iovec); writes are corked
 * into one flush per batch.  Without TLS the plain path is untouched
 * except for one branch per read and write call.
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
#include <pwd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <event2/event.h>
#include <gnutls/gnutls.h>
#if GNUTLS_VERSION_NUMBER >= 0x030703
#include <gnutls/socket.h>
#endif

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
#define TLS_BATCH (256u << 10)   /* plaintext corked per TLS flush */

void (*vbe_nbd_complete_hook)(struct vdu_io *io, int result) = vdu_io_complete;

struct nbd_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* TLS settings and the credentials all sessions share (read-only after
 * open(), so queues on other threads may use them). */
struct nbd_tls {
	bool on, verify;
	char certs[NBD_MAX_PATH + 1];           /* "" when not given */
	char psk_file[NBD_MAX_PATH + 1];
	char username[256], hostname[256];
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk;
	char desc[96];                          /* for the open() log line */
};

struct nbd_dev {
	char url[512];
	struct nbd_url u;
	struct nbd_tls tls;
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
	gnutls_session_t tls;    /* NULL: plain */
	bool tls_handshaking;    /* gnutls_handshake() not done yet */
	bool tls_corked;         /* a flush left data inside GnuTLS */
	int tls_rerr;            /* receive error held back behind data */
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

/* ------------------------------------------------------------------ TLS */

static const char *const tls_keys[] = {
	"tls-certificates", "tls-psk-file", "tls-username", "tls-hostname",
	"tls-verify-peer",
};

/* The TLS settings from the URL's query and the keys: 0, or -EINVAL with
 * one line in err.  No file is read. */
static int tls_settings(const struct vdu_param *p, size_t n, const struct nbd_url *u,
			struct nbd_tls *t, char *err, size_t errlen)
{
	const char *in_url[5] = {
		u->tls_certificates, u->tls_psk_file, u->tls_username, u->tls_hostname,
		u->tls_verify_peer < 0 ? "" : u->tls_verify_peer ? "on" : "off",
	};
	const char *v[5];

	for (int i = 0; i < 5; i++) {
		const char *o = vdu_param_get(p, n, tls_keys[i]);

		if (o && !u->tls) {
			snprintf(err, errlen, "nbd: %s= needs TLS: use %s:// instead of %s://",
				 tls_keys[i], u->unix_socket ? "nbds+unix" : "nbds",
				 u->unix_socket ? "nbd+unix" : "nbd");
			return -EINVAL;
		}
		if (o && in_url[i][0]) {
			snprintf(err, errlen, "nbd: %s is both in the URL and a key: give it once",
				 tls_keys[i]);
			return -EINVAL;
		}
		v[i] = o ? o : in_url[i];
	}
	/* The daemon runs in /: a relative path in the URL would change
	 * meaning (a key's is made absolute by the front end). */
	for (int i = 0; i < 2; i++)
		if (in_url[i][0] && in_url[i][0] != '/') {
			snprintf(err, errlen, "nbd: url: %s=%s: give an absolute path in the "
				 "URL (or -o %s=%s)", tls_keys[i], in_url[i], tls_keys[i],
				 in_url[i]);
			return -EINVAL;
		}
	if (*v[0] && *v[1]) {
		snprintf(err, errlen, "nbd: tls-certificates and tls-psk-file exclude "
			 "each other: give one");
		return -EINVAL;
	}
	t->on = u->tls;
	snprintf(t->certs, sizeof(t->certs), "%s", v[0]);
	snprintf(t->psk_file, sizeof(t->psk_file), "%s", v[1]);
	snprintf(t->username, sizeof(t->username), "%s", v[2]);
	snprintf(t->hostname, sizeof(t->hostname), "%s",
		 *v[3] ? v[3] : u->unix_socket ? "" : u->host);
	t->verify = *v[4] ? vdu_parse_bool(v[4]) == 1 : true;
	return 0;
}

static void tls_free(struct nbd_tls *t)
{
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_client_credentials(t->psk);
	t->x509 = NULL;
	t->psk = NULL;
}

static bool dir_has(const char *dir, const char *name, char *path, size_t len)
{
	struct stat st;

	snprintf(path, len, "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/* psktool's "user:hexkey" lines: the key of t->username into key. */
static int psk_key(const struct nbd_tls *t, char *key, size_t keylen, bool user_given)
{
	char *buf = malloc(65537);
	size_t len = 0, ulen = strlen(t->username);
	int fd = open(t->psk_file, O_RDONLY | O_CLOEXEC), r = -ENOENT;
	ssize_t k = 0;

	if (!buf) {
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	if (fd < 0) {
		r = -errno;
		vdu_log(VDU_LOG_ERR, "nbd: tls-psk-file %s: %s", t->psk_file, strerror(-r));
		free(buf);
		return r;
	}
	while (len < 65536 && (k = read(fd, buf + len, 65536 - len)) > 0)
		len += k;
	if (k < 0)
		r = -errno;
	close(fd);
	buf[len] = 0;
	for (char *line = buf; r == -ENOENT && *line;) {
		size_t n = strcspn(line, "\r\n");

		if (n > ulen + 1 && line[ulen] == ':' && !strncmp(line, t->username, ulen)) {
			r = n - ulen - 1 < keylen ? 0 : -E2BIG;
			if (!r) {
				memcpy(key, line + ulen + 1, n - ulen - 1);
				key[n - ulen - 1] = 0;
			}
		}
		line += n;
		line += strspn(line, "\r\n");
	}
	explicit_bzero(buf, len);
	free(buf);
	if (r == -ENOENT)
		vdu_log(VDU_LOG_ERR, "nbd: tls-psk-file %s has no key for user '%s'%s",
			t->psk_file, t->username, user_given ? "" :
			" (the local user): set tls-username=NAME");
	else if (r == -E2BIG)
		vdu_log(VDU_LOG_ERR, "nbd: tls-psk-file %s: the key of user '%s' is too long",
			t->psk_file, t->username);
	else if (r < 0)
		vdu_log(VDU_LOG_ERR, "nbd: tls-psk-file %s: %s", t->psk_file, strerror(-r));
	return r;
}

/* Credentials for all sessions, at open(): 0 or -errno (logged). */
static int tls_load(struct nbd_tls *t)
{
	char path[NBD_MAX_PATH + 32];
	bool ca = false, cert, key;
	int r;

	if (t->psk_file[0]) {
		char hex[1024];
		gnutls_datum_t k;
		bool user_given = t->username[0];

		if (!user_given) {
			struct passwd *pw = getpwuid(geteuid());

			if (!pw) {
				vdu_log(VDU_LOG_ERR, "nbd: tls-psk-file needs tls-username=NAME "
					"(the local user has no name)");
				return -EINVAL;
			}
			snprintf(t->username, sizeof(t->username), "%s", pw->pw_name);
		}
		r = psk_key(t, hex, sizeof(hex), user_given);
		if (r < 0)
			return r;
		k.data = (unsigned char *)hex;
		k.size = strlen(hex);
		r = gnutls_psk_allocate_client_credentials(&t->psk);
		if (r >= 0)
			r = gnutls_psk_set_client_credentials(t->psk, t->username, &k,
							      GNUTLS_PSK_KEY_HEX);
		explicit_bzero(hex, sizeof(hex));
		if (r < 0) {
			vdu_log(VDU_LOG_ERR, "nbd: tls-psk-file %s: the key of user '%s': %s",
				t->psk_file, t->username, gnutls_strerror(r));
			return -EINVAL;
		}
		snprintf(t->desc, sizeof(t->desc), "PSK user %s", t->username);
		return 0;
	}
	r = gnutls_certificate_allocate_credentials(&t->x509);
	if (r < 0)
		return -ENOMEM;
	if (t->certs[0]) {
		struct stat st;

		if (stat(t->certs, &st) < 0 || !S_ISDIR(st.st_mode)) {
			r = stat(t->certs, &st) < 0 ? -errno : -ENOTDIR;
			vdu_log(VDU_LOG_ERR, "nbd: tls-certificates %s: %s", t->certs,
				strerror(-r));
			return r;
		}
		if (dir_has(t->certs, "ca-cert.pem", path, sizeof(path))) {
			r = gnutls_certificate_set_x509_trust_file(t->x509, path,
								   GNUTLS_X509_FMT_PEM);
			if (r <= 0) {
				vdu_log(VDU_LOG_ERR, "nbd: %s: %s", path,
					r < 0 ? gnutls_strerror(r) : "no certificate in it");
				return -EINVAL;
			}
			ca = true;
		}
		if (dir_has(t->certs, "ca-crl.pem", path, sizeof(path))) {
			r = gnutls_certificate_set_x509_crl_file(t->x509, path,
								 GNUTLS_X509_FMT_PEM);
			if (r < 0) {
				vdu_log(VDU_LOG_ERR, "nbd: %s: %s", path, gnutls_strerror(r));
				return -EINVAL;
			}
		}
		cert = dir_has(t->certs, "client-cert.pem", path, sizeof(path));
		key = dir_has(t->certs, "client-key.pem", path, sizeof(path));
		if (cert != key) {
			vdu_log(VDU_LOG_ERR, "nbd: tls-certificates %s: client-cert.pem and "
				"client-key.pem go together: %s is missing", t->certs,
				cert ? "client-key.pem" : "client-cert.pem");
			return -EINVAL;
		}
		if (cert) {
			char cpath[NBD_MAX_PATH + 32];

			dir_has(t->certs, "client-cert.pem", cpath, sizeof(cpath));
			r = gnutls_certificate_set_x509_key_file(t->x509, cpath, path,
								 GNUTLS_X509_FMT_PEM);
			if (r < 0) {
				vdu_log(VDU_LOG_ERR, "nbd: %s, %s: %s", cpath, path,
					gnutls_strerror(r));
				return -EINVAL;
			}
		}
	}
	if (!ca) {
		r = gnutls_certificate_set_x509_system_trust(t->x509);
		if (r <= 0 && t->verify) {
			vdu_log(VDU_LOG_ERR, "nbd: no CA to verify the server with: the system "
				"trust store %s (give tls-certificates=DIR with ca-cert.pem)",
				r < 0 ? gnutls_strerror(r) : "is empty");
			return -EINVAL;
		}
	}
	snprintf(t->desc, sizeof(t->desc), "X.509, CA %s%s%s",
		 ca ? "ca-cert.pem" : "system", t->certs[0] && dir_has(t->certs,
		 "client-cert.pem", path, sizeof(path)) ? ", client certificate" : "",
		 t->verify ? "" : ", peer NOT verified");
	return 0;
}

/* Kernel TLS in use (GnuTLS 3.7.3+ built with it, "ktls = true" in its
 * system configuration, the kernel's tls module)? */
static bool tls_ktls(gnutls_session_t s)
{
#if GNUTLS_VERSION_NUMBER >= 0x030703
	return gnutls_transport_is_ktls_enabled(s) != 0;
#else
	(void)s;
	return false;
#endif
}

static bool is_ip_literal(const char *h)
{
	struct in6_addr a;

	return inet_pton(AF_INET, h, &a) == 1 || inet_pton(AF_INET6, h, &a) == 1;
}

/* A client session on fd: 0, or -errno with msg. */
static int tls_session_new(const struct nbd_tls *t, int fd, gnutls_session_t *sp,
			   char *msg, size_t len)
{
	gnutls_session_t s;
	int r = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);

	if (r < 0) {
		snprintf(msg, len, "TLS: %s", gnutls_strerror(r));
		return -ENOMEM;
	}
	if (t->psk) {
		r = gnutls_set_default_priority_append(s, "+ECDHE-PSK:+DHE-PSK:+PSK", NULL, 0);
		if (r >= 0)
			r = gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
	} else {
		r = gnutls_set_default_priority(s);
		if (r >= 0)
			r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
		if (r >= 0 && t->hostname[0] && !is_ip_literal(t->hostname))
			r = gnutls_server_name_set(s, GNUTLS_NAME_DNS, t->hostname,
						   strlen(t->hostname));
		/* the chain always; the name when there is one (a unix
		 * socket's only with tls-hostname=) */
		if (r >= 0 && t->verify)
			gnutls_session_set_verify_cert(s, t->hostname[0] ? t->hostname : NULL, 0);
	}
	if (r < 0) {
		snprintf(msg, len, "TLS: %s", gnutls_strerror(r));
		gnutls_deinit(s);
		return -EINVAL;
	}
	gnutls_transport_set_int(s, fd);
	*sp = s;
	return 0;
}

static int tls_errno(int r)
{
	switch (r) {
	case GNUTLS_E_PREMATURE_TERMINATION: return -ECONNRESET;
	case GNUTLS_E_PUSH_ERROR: return -EPIPE;
	case GNUTLS_E_PULL_ERROR: return -EIO;
	case GNUTLS_E_MEMORY_ERROR: return -ENOMEM;
	default: return -EPROTO;
	}
}

static void tls_errmsg(gnutls_session_t s, int r, const char *what, char *msg, size_t len)
{
	int e = errno;

	if (r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PULL_ERROR) {
		/* The server hung up; an alert it sent first says why (e.g.
		 * it wanted a client certificate). */
		char c;

		if (gnutls_record_recv(s, &c, 1) == GNUTLS_E_FATAL_ALERT_RECEIVED)
			r = GNUTLS_E_FATAL_ALERT_RECEIVED;
		else if (e) {
			snprintf(msg, len, "%s: TLS: %s", what, strerror(e));
			return;
		}
	}
	if (r == GNUTLS_E_FATAL_ALERT_RECEIVED || r == GNUTLS_E_WARNING_ALERT_RECEIVED) {
		const char *a = gnutls_alert_get_name(gnutls_alert_get(s));

		snprintf(msg, len, "%s: TLS: the server sent the alert '%s'", what,
			 a ? a : "unknown");
	} else if (r == GNUTLS_E_UNEXPECTED_PACKET_LENGTH) {
		/* What GnuTLS says of a record cut short by a hang-up: not
		 * corruption. */
		snprintf(msg, len, "%s: the connection ended in the middle of a TLS record",
			 what);
	} else
		snprintf(msg, len, "%s: TLS: %s", what, gnutls_strerror(r));
}

/* Advance the TLS handshake: 1 done, 0 call again when the socket is ready
 * (*want_write), or -errno with one line in msg. */
static int tls_handshake_step(gnutls_session_t s, const struct nbd_tls *t, bool *want_write,
			      char *msg, size_t len)
{
	for (int tries = 0;; tries++) {
		int r = gnutls_handshake(s);

		if (r == GNUTLS_E_SUCCESS)
			return 1;
		if (r == GNUTLS_E_AGAIN) {
			*want_write = gnutls_record_get_direction(s) == 1;
			return 0;
		}
		if (tries < 16 && (r == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal(r)))
			continue;
		if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
			unsigned st = gnutls_session_get_verify_cert_status(s);
			gnutls_datum_t out = { NULL, 0 };
			char why[200] = "unknown reason";
			size_t n;

			if (gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509,
									 &out, 0) >= 0 && out.data) {
				snprintf(why, sizeof(why), "%s", (const char *)out.data);
				gnutls_free(out.data);
			}
			n = strlen(why);
			while (n && why[n - 1] == ' ')
				why[--n] = 0;
			snprintf(msg, len, "TLS: the server's certificate failed verification: "
				 "%.140s%s%.100s%s", why,
				 st & GNUTLS_CERT_UNEXPECTED_OWNER ? " (expected name: " : "",
				 st & GNUTLS_CERT_UNEXPECTED_OWNER ? t->hostname : "",
				 st & GNUTLS_CERT_UNEXPECTED_OWNER ? ")" : "");
			return -EKEYREJECTED;
		}
		if (r == GNUTLS_E_FATAL_ALERT_RECEIVED || r == GNUTLS_E_WARNING_ALERT_RECEIVED) {
			const char *a = gnutls_alert_get_name(gnutls_alert_get(s));

			snprintf(msg, len, "TLS handshake failed: the server sent the alert "
				 "'%s'", a ? a : "unknown");
		} else
			snprintf(msg, len, "TLS handshake failed: %.120s%s%.64s%s",
				 gnutls_strerror(r),
				 t->psk ? " (servers close like this on a wrong key: is the key of PSK user '" : "",
				 t->psk ? t->username : "",
				 t->psk ? "' in tls-psk-file the server's?)" : "");
		return r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PULL_ERROR ||
		       r == GNUTLS_E_PUSH_ERROR ? -ECONNRESET : -EPROTO;
	}
}

/* One send or receive on a connection, through TLS when tls: bytes (0:
 * end of stream), or -errno: -EAGAIN (wait; *want_write says for what),
 * -EINTR, or another with msg set. */
static ssize_t link_send(int fd, gnutls_session_t tls, const void *b, size_t n,
			 bool *want_write, char *msg, size_t len)
{
	ssize_t r;

	if (!tls) {
		r = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r >= 0)
			return r;
		r = -errno;
		*want_write = true;
		if (r != -EAGAIN && r != -EINTR)
			snprintf(msg, len, "send: %s", strerror(-r));
		return r;
	}
	r = gnutls_record_send(tls, b, n);
	if (r >= 0)
		return r;
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
		*want_write = gnutls_record_get_direction(tls) == 1;
		return r == GNUTLS_E_AGAIN ? -EAGAIN : -EINTR;
	}
	tls_errmsg(tls, (int)r, "send", msg, len);
	return tls_errno((int)r);
}

static ssize_t link_recv(int fd, gnutls_session_t tls, void *b, size_t n,
			 bool *want_write, char *msg, size_t len)
{
	ssize_t r;

	if (!tls) {
		r = recv(fd, b, n, MSG_DONTWAIT);
		if (r >= 0)
			return r;
		r = -errno;
		*want_write = false;
		if (r != -EAGAIN && r != -EINTR)
			snprintf(msg, len, "recv: %s", strerror(-r));
		return r;
	}
	r = gnutls_record_recv(tls, b, n);
	if (r >= 0)
		return r;
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
		*want_write = gnutls_record_get_direction(tls) == 1;
		return r == GNUTLS_E_AGAIN ? -EAGAIN : -EINTR;
	}
	if (r == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	tls_errmsg(tls, (int)r, "recv", msg, len);
	return tls_errno((int)r);
}

/* Move handshake bytes without blocking (through tls once the server
 * accepted STARTTLS and the TLS handshake is done): NBD_HS_DONE,
 * NBD_HS_MORE (wait; *want_write when output is pending), NBD_HS_STARTTLS
 * or -errno with hs->msg set. */
static int hs_pump(int fd, gnutls_session_t tls, struct nbd_hs *hs, bool *want_write)
{
	for (;;) {
		size_t len;
		uint8_t *b;
		ssize_t n;
		int r;

		while (hs->out_off < hs->out_len) {
			n = link_send(fd, tls, hs->out + hs->out_off, hs->out_len - hs->out_off,
				      want_write, hs->msg, sizeof(hs->msg));
			if (n == -EINTR)
				continue;
			if (n == -EAGAIN)
				return NBD_HS_MORE;
			if (n < 0)
				return (int)n;
			hs->out_off += n;
		}
		*want_write = false;
		b = nbd_hs_rbuf(hs, &len);
		if (!len) {
			snprintf(hs->msg, sizeof(hs->msg), "handshake: nothing to read");
			return -EPROTO;
		}
		n = link_recv(fd, tls, b, len, want_write, hs->msg, sizeof(hs->msg));
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN)
			return NBD_HS_MORE;
		if (n < 0)
			return (int)n;
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

/* Best effort: what the handshake machine queued (NBD_OPT_ABORT). */
static void hs_send_rest(int fd, gnutls_session_t tls, struct nbd_hs *hs)
{
	bool ww;
	char msg[8];

	if (hs->out_off < hs->out_len &&
	    link_send(fd, hs->tls ? tls : NULL, hs->out + hs->out_off,
		      hs->out_len - hs->out_off, &ww, msg, sizeof(msg)) < 0) {
		/* the server copes with a plain close */
	}
}

static void send_disc(int fd, gnutls_session_t tls)
{
	uint8_t h[NBD_REQUEST_SIZE];
	bool ww;
	char msg[8];

	nbd_encode_request(h, 0, NBD_CMD_DISC, 0, 0, 0);
	if (link_send(fd, tls, h, sizeof(h), &ww, msg, sizeof(msg)) < 0) {
		/* best effort: the server copes with a plain close */
	}
	if (tls)
		gnutls_bye(tls, GNUTLS_SHUT_WR); /* non-blocking: best effort */
}

/* ---------------------------------------------------------------- open */

static int probe(struct nbd_dev *d, struct nbd_hs *hs)
{
	uint64_t deadline = now_ms() + (uint64_t)d->timeout_s * 1000;
	gnutls_session_t tls = NULL;
	bool tls_hs = false;
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
	nbd_hs_init(hs, d->u.export_name, true, d->tls.on);
	for (;;) {
		struct pollfd p = { .fd = fd };
		int64_t left;

		if (tls_hs) {
			r = tls_handshake_step(tls, &d->tls, &ww, hs->msg, sizeof(hs->msg));
			if (r < 0)
				break;
			if (r == 1) {
				tls_hs = false;
				nbd_hs_tls_ready(hs);
				continue;
			}
		} else {
			r = hs_pump(fd, tls, hs, &ww);
			if (r == NBD_HS_STARTTLS) {
				r = tls_session_new(&d->tls, fd, &tls, hs->msg, sizeof(hs->msg));
				if (r < 0)
					break;
				tls_hs = true;
				continue;
			}
			if (r != NBD_HS_MORE)
				break;
		}
		p.events = ww ? POLLOUT : POLLIN;
		left = (int64_t)(deadline - now_ms());
		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			r = -ETIMEDOUT;
			snprintf(hs->msg, sizeof(hs->msg), "%shandshake timed out after %u s",
				 tls_hs ? "TLS " : "", d->timeout_s);
			break;
		}
	}
	if (r < 0) {
		vdu_log(VDU_LOG_ERR, "nbd: %s: %s", d->url, hs->msg);
		nbd_hs_abort(hs);
		hs_send_rest(fd, tls, hs);
		if (tls)
			gnutls_deinit(tls);
		close(fd);
		return r;
	}
	if (tls) {
		const char *v = gnutls_protocol_get_name(gnutls_protocol_get_version(tls));
		const char *c = gnutls_cipher_get_name(gnutls_cipher_get(tls));
		size_t n = strlen(d->tls.desc);

		snprintf(d->tls.desc + n, sizeof(d->tls.desc) - n, ", %s %s%s",
			 v ? v : "?", c ? c : "?",
			 tls_ktls(tls) ? ", kTLS" : "");
	}
	send_disc(fd, tls);
	if (tls)
		gnutls_deinit(tls);
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
	struct nbd_tls t;
	struct stat st;
	char why[300];

	if (nbd_url_parse(vdu_param_get(p, n, "url"), &u, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "nbd: url: %s", why);
		return -EINVAL;
	}
	memset(&t, 0, sizeof(t));
	if (tls_settings(p, n, &u, &t, err, errlen) < 0)
		return -EINVAL;
	if (t.certs[0] && (stat(t.certs, &st) < 0 || !S_ISDIR(st.st_mode))) {
		snprintf(err, errlen, "nbd: tls-certificates=%s: %s", t.certs,
			 stat(t.certs, &st) < 0 ? strerror(errno) : "not a directory");
		return -EINVAL;
	}
	if (t.psk_file[0] && access(t.psk_file, R_OK) < 0) {
		snprintf(err, errlen, "nbd: tls-psk-file=%s: %s", t.psk_file, strerror(errno));
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
	if (tls_settings(p, n, &d->u, &d->tls, err, sizeof(err)) < 0) {
		vdu_log(VDU_LOG_ERR, "%s", err);
		goto fail;
	}
	if (d->tls.on && (r = tls_load(&d->tls)) < 0)
		goto fail;
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
		"%s replies, flags 0x%x%s%s%s%s%s, %u connection(s) per queue%s%s%s",
		d->url, d->size, d->lbs, d->max_payload,
		d->structured ? "structured" : "simple", d->tflags,
		d->readonly ? ", read-only" : "",
		d->tflags & NBD_FLAG_SEND_FLUSH ? ", flush" : "",
		d->tflags & NBD_FLAG_SEND_TRIM ? ", trim" : "",
		d->tflags & NBD_FLAG_SEND_WRITE_ZEROES ? ", write-zeroes" : "",
		d->tflags & NBD_FLAG_CAN_MULTI_CONN ? ", multi-conn" : "",
		d->nconns, d->tls.on ? ", TLS (" : "", d->tls.on ? d->tls.desc : "",
		d->tls.on ? ")" : "");
	free(hs);
	*handle = d;
	return 0;
fail:
	free(hs);
	tls_free(&d->tls);
	free(d);
	return r;
}

static void nbd_close(void *handle)
{
	struct nbd_dev *d = handle;

	tls_free(&d->tls);
	free(d);
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
	if (c->tls) {
		gnutls_deinit(c->tls);
		c->tls = NULL;
	}
	c->tls_handshaking = c->tls_corked = false;
	c->tls_rerr = 0;
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
	/* why may already end with the error's text: say it once. */
	vdu_log(c->fail_logged ? VDU_LOG_DEBUG : VDU_LOG_WARNING,
		"nbd: %s: queue %u connection %u: %s%s%s%s; retrying every %s",
		q->d->url, q->qidx, c->idx, why,
		strstr(why, strerror(-err)) ? "" : " (",
		strstr(why, strerror(-err)) ? "" : strerror(-err),
		strstr(why, strerror(-err)) ? "" : ")",
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
	/* Bytes GNUTLS already holds do not make the socket readable. */
	if (c->tls && gnutls_record_check_pending(c->tls))
		event_active(c->rev, EV_READ, 0);
	q_dispatch_pending(q);
}

static void conn_handshake(struct nbd_conn *c)
{
	const struct nbd_tls *t = &c->q->d->tls;
	bool ww = false;
	int r;

	for (;;) {
		if (c->tls_handshaking) {
			r = tls_handshake_step(c->tls, t, &ww, c->hs->msg, sizeof(c->hs->msg));
			if (r <= 0) {
				if (r == 0)
					r = NBD_HS_MORE;
				break;
			}
			c->tls_handshaking = false;
			nbd_hs_tls_ready(c->hs);
		}
		r = hs_pump(c->fd, c->tls, c->hs, &ww);
		if (r != NBD_HS_STARTTLS)
			break;
		r = tls_session_new(t, c->fd, &c->tls, c->hs->msg, sizeof(c->hs->msg));
		if (r < 0)
			break;
		c->tls_handshaking = true;
	}
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
		hs_send_rest(c->fd, c->tls, c->hs);
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
	nbd_hs_init(c->hs, c->q->d->u.export_name, true, c->q->d->tls.on);
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

/* The next bytes to send, from c->tx_next on: the iovec count. */
static inline int conn_tx_iov(struct nbd_conn *c, struct iovec *iov)
{
	struct nbd_cmd *cmd;
	int n = 0;

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
	return n;
}

/* w bytes from c->tx_next on went out. */
static inline void conn_tx_advance(struct nbd_conn *c, size_t w)
{
	c->last_progress = now_ms();
	while (w > 0) {
		struct nbd_cmd *cmd = c->tx_next;
		uint32_t rem = cmd_total(cmd) - cmd->tx_done;

		if ((uint64_t)w < rem) {
			cmd->tx_done += w;
			break;
		}
		cmd->tx_done += rem;
		w -= rem;
		c->tx_next = cmd->next;
	}
}

/* conn_flush through TLS: a batch is corked into GnuTLS (which then owns
 * it: the requests count as sent) and flushed as whole records; a flush
 * that would block is finished first on the next call. */
static int conn_flush_tls(struct nbd_conn *c)
{
	for (;;) {
		struct iovec iov[SEND_IOV];
		size_t w = 0;
		int n;

		while (c->tls_corked) {
			ssize_t r = gnutls_record_uncork(c->tls, 0);

			if (r == GNUTLS_E_INTERRUPTED)
				continue;
			if (r == GNUTLS_E_AGAIN) {
				event_add(c->wev, NULL);
				return 0;
			}
			if (r < 0)
				return tls_errno((int)r);
			c->tls_corked = false;
			c->last_progress = now_ms();
		}
		if (!c->tx_next)
			break;
		n = conn_tx_iov(c, iov);
		gnutls_record_cork(c->tls);
		c->tls_corked = true;
		for (int i = 0; i < n && w < TLS_BATCH; i++) {
			size_t l = iov[i].iov_len < TLS_BATCH - w ? iov[i].iov_len : TLS_BATCH - w;
			ssize_t r = gnutls_record_send(c->tls, iov[i].iov_base, l);

			if (r < 0)
				return tls_errno((int)r);
			w += r;
			if ((size_t)r < l)
				break;
		}
		conn_tx_advance(c, w);
	}
	event_del(c->wev);
	return 0;
}

/* Send what can be sent: 0, or -errno when the connection is broken. */
static int conn_flush(struct nbd_conn *c)
{
	if (c->tls)
		return conn_flush_tls(c);
	while (c->tx_next) {
		struct iovec iov[SEND_IOV];
		struct msghdr m = { .msg_iov = iov };
		ssize_t w;

		m.msg_iovlen = conn_tx_iov(c, iov);
		w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			event_add(c->wev, NULL);
			return 0;
		}
		if (w < 0)
			return -errno;
		conn_tx_advance(c, w);
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

/* readv through TLS: records decrypt straight into the iovecs.  Bytes, 0
 * at the end of the stream, or -errno (-EAGAIN: nothing more for now; why
 * set for errors).  *drained: GnuTLS holds nothing more and the socket had
 * nothing either, so wait for EV_READ. */
static ssize_t tls_readv(struct nbd_conn *c, const struct iovec *iov, int n,
			 bool *drained, char *why, size_t whylen)
{
	size_t total = 0;

	if (c->tls_rerr) {
		snprintf(why, whylen, "recv: TLS: %s", gnutls_strerror(c->tls_rerr));
		return c->tls_rerr == GNUTLS_E_PREMATURE_TERMINATION ? 0 : tls_errno(c->tls_rerr);
	}
	for (int i = 0; i < n; i++) {
		char *b = iov[i].iov_base;
		size_t len = iov[i].iov_len, off = 0;

		while (off < len) {
			ssize_t r = gnutls_record_recv(c->tls, b + off, len - off);

			if (r > 0) {
				off += r;
				total += r;
				continue;
			}
			if (r == GNUTLS_E_INTERRUPTED)
				continue;
			if (r == GNUTLS_E_AGAIN) {
				*drained = true;
				return total ? (ssize_t)total : -EAGAIN;
			}
			if (r == 0)
				r = GNUTLS_E_PREMATURE_TERMINATION; /* close_notify: the same here */
			if (total) {
				c->tls_rerr = (int)r; /* after the data */
				return total;
			}
			if (r == GNUTLS_E_PREMATURE_TERMINATION)
				return 0;
			tls_errmsg(c->tls, (int)r, "recv", why, whylen);
			return tls_errno((int)r);
		}
	}
	return total;
}

/* n bytes arrived where nbd_rx_iov() said: false when that dropped the
 * connection. */
static inline bool conn_rx(struct nbd_conn *c, size_t n)
{
	char why[200];
	int e;

	c->last_progress = now_ms();
	e = nbd_rx_consume(&c->rx, n);
	if (!e)
		return true;
	if (e == -ESHUTDOWN)
		conn_drop(c, "the server is shutting down");
	else {
		snprintf(why, sizeof(why), "protocol error: %s", c->rx.errtext);
		conn_drop(c, why);
	}
	return false;
}

static void conn_readable_tls(struct nbd_conn *c)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		struct iovec iov[RECV_IOV];
		int n = nbd_rx_iov(&c->rx, iov, RECV_IOV);
		bool drained = false;
		char why[200];
		ssize_t r = tls_readv(c, iov, n, &drained, why, sizeof(why));

		if (r == -EAGAIN)
			return;
		if (r <= 0) {
			if (!r)
				snprintf(why, sizeof(why), "the server closed the connection");
			conn_drop(c, why);
			return;
		}
		if (!conn_rx(c, r) || drained)
			return;
	}
	/* Out of rounds: what GnuTLS already decrypted would not wake us. */
	if (gnutls_record_check_pending(c->tls))
		event_active(c->rev, EV_READ, 0);
}

static void conn_readable(struct nbd_conn *c)
{
	if (c->tls) {
		conn_readable_tls(c);
		return;
	}
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
		if (!conn_rx(c, r))
			return;
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

		if (c->state == C_READY && (!c->tx_next || !c->tx_next->tx_done) &&
		    !c->tls_corked)
			send_disc(c->fd, c->tls);
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
	  "nbd://HOST[:PORT][/EXPORT] or nbd+unix:///EXPORT?socket=PATH; "
	  "nbds:// and nbds+unix:// for TLS",
	  VDU_OPT_F_REQUIRED, 0, 0 },
	{ "connections", VDU_OPT_UINT, "N", "1",
	  "connections per queue (servers that allow multi-conn)", 0, 1,
	  MAX_CONNECTIONS },
	{ "timeout", VDU_OPT_UINT, "SECONDS", "30",
	  "give up reconnecting after this long (requests then fail)", 0, 1, 86400 },
	{ "readonly", VDU_OPT_BOOL, "on|off", "off", "export read-only", 0, 0, 0 },
	{ "tls-certificates", VDU_OPT_STRING, "DIR", NULL,
	  "TLS: ca-cert.pem (else the system's CAs), client-cert.pem and "
	  "client-key.pem for client authentication", VDU_OPT_F_PATH, 0, 0 },
	{ "tls-psk-file", VDU_OPT_STRING, "FILE", NULL,
	  "TLS with a pre-shared key instead: a psktool file (USER:HEXKEY lines)",
	  VDU_OPT_F_PATH, 0, 0 },
	{ "tls-username", VDU_OPT_STRING, "NAME", NULL,
	  "TLS: the PSK user (default: nbds://NAME@..., else the local user)", 0, 0, 0 },
	{ "tls-hostname", VDU_OPT_STRING, "NAME", NULL,
	  "TLS: the name the server's certificate must carry (default: the URL's "
	  "host; none for a unix socket)", 0, 0, 0 },
	{ "tls-verify-peer", VDU_OPT_BOOL, "on|off", "on",
	  "TLS: verify the server's certificate", 0, 0, 0 },
	{ 0 },
};

const struct vdu_plugin vbe_nbd = {
	VDU_PLUGIN_INIT,
	.name = "nbd",
	.description = "remote storage on an NBD server (nbdkit, qemu-nbd, nbd-server) over TCP or a unix socket, optionally with TLS",
	.options = nbd_options,
	.backend = &nbd_backend,
	.open = nbd_open,
	.close = nbd_close,
	.flags = VDU_PLUGIN_F_NETWORK,
	.check = nbd_check,
};
