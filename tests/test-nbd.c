/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tcp (NBD) backend against a real nbdkit on a Unix socket, driven
 * straight through the backend API on a private event loop.  Completions
 * come back through the backend's test seam (vbe_nbd_complete_hook), so
 * no device or ring is involved.  Skips (77) when nbdkit is missing.
 *
 * TLS (nbds://): a CA, server and client certificates, a second CA, an
 * expired server certificate and a PSK file are made with certtool and
 * psktool in the test's directory; those tests are skipped (TAP "# skip")
 * when gnutls-bin is missing or nbdkit was built without TLS.  Some of
 * them go through a proxy on a thread of this program that forwards in
 * tiny pieces, stalls, holds replies back or closes a connection in the
 * middle of a TLS record, and count the backend's GnuTLS record calls.
 */
#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <event2/event.h>
#include <gnutls/gnutls.h>

#include "backends.h"
#include "nbd_proto.h"
#include "tap.h"

#define MiB (1024 * 1024)

static const struct vdu_plugin *pl = &vbe_nbd;
static const struct vdu_backend *be; /* pl->backend, set in main() */
static struct event_base *base;
static char tmpdir[64];
static char logbuf[16384];
static size_t loglen;
static char check_err[512]; /* vdu_plugin_check()'s last refusal */

/* ------------------------------------------------------------ helpers */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_cb(void *opaque, int level, const char *msg)
{
	size_t n = strlen(msg);

	if (level <= VDU_LOG_INFO)
		printf("# [log %d] %s\n", level, msg);
	if (loglen + n + 2 < sizeof(logbuf)) {
		memcpy(logbuf + loglen, msg, n);
		loglen += n;
		logbuf[loglen++] = '\n';
		logbuf[loglen] = 0;
	}
}

static void log_reset(void)
{
	loglen = 0;
	logbuf[0] = 0;
}

struct srv {
	pid_t pid;
	char sock[128], pidfile[128], port[8];
};

/* nbdkit --exit-with-parent -f (-U SOCK | -i 127.0.0.1 -p PORT) -P PIDFILE
 * ARGS...: a unix socket unless port is given. */
static int srv_start_at(struct srv *s, const char *name, const char *port,
			const char *const *args)
{
	const char *argv[40];
	int n = 0;
	uint64_t t0 = now_ms();
	struct stat st;

	snprintf(s->sock, sizeof(s->sock), "%s/%s.sock", tmpdir, name);
	snprintf(s->pidfile, sizeof(s->pidfile), "%s/%s.pid", tmpdir, name);
	snprintf(s->port, sizeof(s->port), "%s", port ? port : "");
	if (!port)
		unlink(s->sock);
	unlink(s->pidfile);
	argv[n++] = "nbdkit";
	argv[n++] = "--exit-with-parent";
	argv[n++] = "-f";
	if (port) {
		argv[n++] = "-i";
		argv[n++] = "127.0.0.1";
		argv[n++] = "-p";
		argv[n++] = s->port;
	} else {
		argv[n++] = "-U";
		argv[n++] = s->sock;
	}
	argv[n++] = "-P";
	argv[n++] = s->pidfile;
	while (*args && n < 39)
		argv[n++] = *args++;
	argv[n] = NULL;
	fflush(stdout);
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		execvp("nbdkit", (char *const *)argv);
		_exit(127);
	}
	while (stat(s->pidfile, &st) < 0 || st.st_size == 0) {
		int status;

		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			return -1;
		}
		if (now_ms() - t0 > 10000)
			return -1;
		usleep(10000);
	}
	return 0;
}

static int srv_start(struct srv *s, const char *name, const char *const *args)
{
	return srv_start_at(s, name, NULL, args);
}

static void srv_stop(struct srv *s, int sig)
{
	if (s->pid > 0) {
		kill(s->pid, sig);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	unlink(s->pidfile);
}

static void srv_url(const struct srv *s, char *buf, size_t len)
{
	snprintf(buf, len, "nbd+unix:///?socket=%s", s->sock);
}

struct treq {
	struct vdu_io io;
	int done, result;
	unsigned seq;
	uint64_t t_done;
	struct iovec iov[8];
	unsigned char priv[] __attribute__((aligned(16)));
};

static unsigned done_seq;

static void on_complete(struct vdu_io *io, int result)
{
	struct treq *t = (struct treq *)((char *)io - offsetof(struct treq, io));

	if (t->done)
		printf("# request completed twice!\n");
	t->done++;
	t->result = result;
	t->seq = ++done_seq;
	t->t_done = now_ms();
}

/* A request over buf, cut into nseg unequal iovecs. */
static struct treq *treq_new(enum vdu_io_op op, uint64_t off, uint64_t len,
			     void *buf, int nseg)
{
	struct treq *t = calloc(1, sizeof(*t) + be->io_priv_size);
	uint64_t pos = 0;

	t->io.op = op;
	t->io.offset = off;
	t->io.len = len;
	t->io.priv = t->priv;
	if (buf && len) {
		for (int i = 0; i < nseg; i++) {
			uint64_t l = i == nseg - 1 ? len - pos : (len / nseg) - 512 * (i % 2) + 7 * i;

			if (l > len - pos)
				l = len - pos;
			t->iov[i].iov_base = (char *)buf + pos;
			t->iov[i].iov_len = l;
			pos += l;
		}
		t->io.iov = t->iov;
		t->io.iovcnt = nseg;
	}
	return t;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

/* Run the loop until all n requests are done or timeout_ms passed. */
static bool run_until(struct treq **ts, int n, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	for (;;) {
		bool all = true;

		for (int i = 0; i < n; i++)
			all = all && ts[i]->done;
		if (all)
			return true;
		if (now_ms() > end)
			return false;
		event_base_loop(base, EVLOOP_ONCE);
	}
}

static void run_for(unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

/* Submit one request, run it to completion, return its result. */
static int do_io(void *q, enum vdu_io_op op, uint64_t off, uint64_t len, void *buf,
		 int nseg, uint32_t flags)
{
	struct treq *t = treq_new(op, off, len, buf, nseg);
	int r;

	t->io.flags = flags;
	be->submit(q, &t->io);
	be->unplug(q);
	r = run_until(&t, 1, 20000) ? t->result : -ETIMEDOUT;
	free(t);
	return r;
}

/* As a front end does: the descriptor's checks, then open. */
static int checked_open(const struct vdu_param *p, size_t n, void **h)
{
	if (vdu_plugin_check(pl, p, n, check_err, sizeof(check_err)) < 0)
		return -EINVAL;
	check_err[0] = 0;
	return pl->open(p, n, h);
}

static int be_open(const char *url, const char *k1, const char *v1, const char *k2,
		   const char *v2, void **h)
{
	struct vdu_param p[3] = { { "url", url }, { k1, v1 }, { k2, v2 } };
	size_t n = url ? 1 : 0;

	if (!url) {
		p[0] = p[1];
		p[1] = p[2];
		n = 0;
		if (k1)
			n++;
		if (k2)
			n++;
		return checked_open(p, n, h);
	}
	if (k1)
		n++;
	if (k2)
		n++;
	return checked_open(p, n, h);
}

static void fill(uint8_t *b, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		b[i] = seed >> 16;
	}
}

static bool all_zero(const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

/* -------------------------------------------------------------- tests */

static void test_urls(void)
{
	static const struct {
		const char *url;
		int ok;
		const char *host, *port, *exp, *sock;
	} cases[] = {
		{ "nbd://localhost", 1, "localhost", "10809", "", NULL },
		{ "nbd://127.0.0.1:1234/", 1, "127.0.0.1", "1234", "", NULL },
		{ "nbd://h/disk%201", 1, "h", "10809", "disk 1", NULL },
		{ "nbd://[::1]:99/e", 1, "::1", "99", "e", NULL },
		{ "nbd+unix:///e?socket=/tmp/s", 1, NULL, NULL, "e", "/tmp/s" },
		{ "nbd+unix:///?socket=/tmp/a%20b", 1, NULL, NULL, "", "/tmp/a b" },
		{ "nbd://", 0, NULL, NULL, NULL, NULL }, { "nbd://:10809/", 0, NULL, NULL, NULL, NULL }, { "nbd://h:0/", 0, NULL, NULL, NULL, NULL },
		{ "nbd://h:65536", 0, NULL, NULL, NULL, NULL }, { "nbd://h:12a", 0, NULL, NULL, NULL, NULL }, { "nbd://h:", 0, NULL, NULL, NULL, NULL },
		{ "nbd://h/?x=1", 0, NULL, NULL, NULL, NULL }, { "nbd://u@h/", 0, NULL, NULL, NULL, NULL }, { "nbds://h/", 1, "h", "10809", "", NULL },
		{ "http://h/", 0, NULL, NULL, NULL, NULL }, { "nbd+unix://host/?socket=/s", 0, NULL, NULL, NULL, NULL },
		{ "nbd+unix:///e", 0, NULL, NULL, NULL, NULL }, { "nbd+unix:///e?sock=/s", 0, NULL, NULL, NULL, NULL },
		{ "nbd+unix:///e?socket=", 0, NULL, NULL, NULL, NULL }, { "nbd://h/a%zz", 0, NULL, NULL, NULL, NULL },
		{ "nbd://h/a%00b", 0, NULL, NULL, NULL, NULL }, { "nbd://h/a b", 0, NULL, NULL, NULL, NULL }, { "nbd://[::1/", 0, NULL, NULL, NULL, NULL },
		{ "nbd://h/x#frag", 0, NULL, NULL, NULL, NULL }, { "", 0, NULL, NULL, NULL, NULL },
	};
	char err[300];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct nbd_url u;
		int r = nbd_url_parse(cases[i].url, &u, err, sizeof(err));

		if (!cases[i].ok) {
			ok(r == -EINVAL && err[0], "url '%s' rejected (%s)", cases[i].url, err);
			continue;
		}
		ok(r == 0 && (!cases[i].host || !strcmp(u.host, cases[i].host)) &&
		   (!cases[i].port || !strcmp(u.port, cases[i].port)) &&
		   !strcmp(u.export_name, cases[i].exp) &&
		   (!cases[i].sock || !strcmp(u.socket_path, cases[i].sock)),
		   "url '%s' parsed", cases[i].url);
	}
}

static void test_open_errors(void)
{
	void *h = NULL;
	char url[200];
	uint64_t t0;

	is_int(be_open(NULL, NULL, NULL, NULL, NULL, &h), -EINVAL, "url is required");
	is_int(be_open("nbd://x", "bogus", "1", NULL, NULL, &h), -EINVAL, "unknown key refused");
	is_int(be_open("nbd://x", "connections", "0", NULL, NULL, &h), -EINVAL, "connections=0 refused");
	is_int(be_open("nbd://x", "timeout", "abc", NULL, NULL, &h), -EINVAL, "timeout=abc refused");
	is_int(be_open("nbd://x", "readonly", "maybe", NULL, NULL, &h), -EINVAL, "readonly=maybe refused");
	is_int(be_open("ftp://x", NULL, NULL, NULL, NULL, &h), -EINVAL, "bad url refused");
	snprintf(url, sizeof(url), "nbd+unix:///?socket=%s/none.sock", tmpdir);
	t0 = now_ms();
	ok(be_open(url, "timeout", "2", NULL, NULL, &h) < 0 && now_ms() - t0 < 3000,
	   "no server: open fails quickly");
}

/* Write/read/verify, out-of-order, caps. */
static void test_memory(void)
{
	const char *args[] = { "memory", "64M", NULL };
	struct vdu_backend_info info;
	struct srv s;
	char url[200];
	void *h, *q;
	uint8_t *w = malloc(MiB), *r = malloc(MiB);

	if (!ok(srv_start(&s, "mem", args) == 0, "nbdkit memory 64M started"))
		return;
	srv_url(&s, url, sizeof(url));
	log_reset();
	if (!is_int(be_open(url, "connections", "4", NULL, NULL, &h), 0, "open"))
		goto out;
	be->get_info(h, &info);
	is_int(info.size, 64 * MiB, "size from the server");
	ok(info.caps == (VDU_CAP_FLUSH | VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES),
	   "flush, discard, write-zeroes advertised (caps 0x%x)", info.caps);
	ok(strstr(logbuf, "4 connection(s) per queue") != NULL, "multi-conn: 4 connections");
	ok(strstr(logbuf, "structured replies") != NULL, "structured replies negotiated");
	is_int(be->queue_open(h, 0, base, &q), 0, "queue_open");

	fill(w, MiB, 1);
	is_int(do_io(q, VDU_IO_WRITE, 4096, MiB, w, 5, 0), 0, "write 1 MiB in 5 iovecs");
	memset(r, 0xaa, MiB);
	is_int(do_io(q, VDU_IO_READ, 4096, MiB, r, 3, 0), 0, "read it back in 3 iovecs");
	ok(!memcmp(w, r, MiB), "data matches");
	memset(r, 0xaa, 4096);
	is_int(do_io(q, VDU_IO_READ, 0, 4096, r, 1, 0), 0, "read unwritten block");
	ok(all_zero(r, 4096), "unwritten block reads as zeroes");

	/* many in flight */
	{
		enum { N = 64 };
		struct treq *t[N];
		uint8_t *bufs = malloc(N * 8192);
		bool good = true;

		for (int i = 0; i < N; i++) {
			fill(bufs + i * 8192, 8192, 100 + i);
			t[i] = treq_new(VDU_IO_WRITE, 8 * MiB + (uint64_t)i * 8192, 8192,
					bufs + i * 8192, 2);
			be->submit(q, &t[i]->io);
		}
		be->unplug(q);
		ok(run_until(t, N, 10000), "%d writes in flight complete", N);
		for (int i = 0; i < N; i++) {
			good = good && t[i]->result == 0;
			free(t[i]);
		}
		ok(good, "all succeeded");
		memset(r, 0, N * 8192);
		is_int(do_io(q, VDU_IO_READ, 8 * MiB, N * 8192, r, 7, 0), 0, "read them in one request");
		ok(!memcmp(r, bufs, N * 8192), "data matches");
		free(bufs);
	}

	/* discard and write-zeroes */
	is_int(do_io(q, VDU_IO_DISCARD, 4096, 65536, NULL, 0, 0), 0, "discard");
	is_int(do_io(q, VDU_IO_READ, 4096, 65536, r, 2, 0), 0, "read discarded range");
	ok(all_zero(r, 65536), "discarded range reads as zeroes");
	is_int(do_io(q, VDU_IO_WRITE_ZEROES, 4096 + 65536, 65536, NULL, 0, 0), 0,
	       "write-zeroes (no hole)");
	is_int(do_io(q, VDU_IO_WRITE_ZEROES, 4096 + 131072, 65536, NULL, 0, VDU_IO_F_UNMAP), 0,
	       "write-zeroes (unmap)");
	is_int(do_io(q, VDU_IO_READ, 4096 + 65536, 131072, r, 2, 0), 0, "read zeroed range");
	ok(all_zero(r, 131072), "zeroed range reads as zeroes");
	is_int(do_io(q, VDU_IO_READ, 4096 + 196608, 4096, r, 1, 0), 0, "read after the zeroed range");
	ok(!memcmp(r, w + 196608, 4096), "data after the zeroed range intact");
	is_int(do_io(q, VDU_IO_FLUSH, 0, 0, NULL, 0, 0), 0, "flush");

	be->queue_close(q);
	pl->close(h);
out:
	srv_stop(&s, SIGTERM);
	free(w);
	free(r);
}

/* Replies out of order: reads delayed, writes not. */
static void test_out_of_order(void)
{
	const char *args[] = { "--filter=delay", "memory", "16M", "delay-read=300ms", NULL };
	struct srv s;
	char url[200];
	void *h, *q;
	uint8_t rb[4096], wb[4096];
	struct treq *t[2];

	if (!ok(srv_start(&s, "delay", args) == 0, "nbdkit --filter=delay started"))
		return;
	srv_url(&s, url, sizeof(url));
	if (!is_int(be_open(url, NULL, NULL, NULL, NULL, &h), 0, "open"))
		goto out;
	be->queue_open(h, 0, base, &q);
	fill(wb, sizeof(wb), 7);
	t[0] = treq_new(VDU_IO_READ, 0, 4096, rb, 1);
	t[1] = treq_new(VDU_IO_WRITE, 65536, 4096, wb, 1);
	be->submit(q, &t[0]->io);
	be->submit(q, &t[1]->io);
	be->unplug(q);
	ok(run_until(t, 2, 5000), "both complete");
	ok(t[0]->result == 0 && t[1]->result == 0, "both succeed");
	ok(t[1]->seq < t[0]->seq, "the later write completed first (out of order)");
	free(t[0]);
	free(t[1]);
	be->queue_close(q);
	pl->close(h);
out:
	srv_stop(&s, SIGTERM);
}

static void test_readonly_and_flags(void)
{
	struct vdu_backend_info info;
	struct srv s;
	char url[200];
	void *h, *q;
	uint8_t b[4096] = { 0 };

	{
		const char *args[] = { "-r", "memory", "1M", NULL };

		if (!ok(srv_start(&s, "ro", args) == 0, "nbdkit -r started"))
			return;
		srv_url(&s, url, sizeof(url));
		if (is_int(be_open(url, NULL, NULL, NULL, NULL, &h), 0, "open read-only export")) {
			be->get_info(h, &info);
			ok(info.caps & VDU_CAP_READ_ONLY, "read-only export: VDU_CAP_READ_ONLY");
			ok(!(info.caps & (VDU_CAP_DISCARD | VDU_CAP_WRITE_ZEROES)),
			   "no discard/write-zeroes on a read-only export");
			be->queue_open(h, 0, base, &q);
			is_int(do_io(q, VDU_IO_READ, 0, 4096, b, 1, 0), 0, "read works");
			ok(do_io(q, VDU_IO_WRITE, 0, 4096, b, 1, 0) < 0, "write refused");
			be->queue_close(q);
			pl->close(h);
		}
		srv_stop(&s, SIGTERM);
	}
	{
		const char *args[] = { "--filter=nozero", "--filter=multi-conn", "memory",
				       "1M", "multi-conn-mode=disable", NULL };

		if (!ok(srv_start(&s, "nozero", args) == 0, "nbdkit --filter=nozero started"))
			return;
		srv_url(&s, url, sizeof(url));
		log_reset();
		if (is_int(be_open(url, "connections", "4", "readonly", "0", &h), 0, "open")) {
			be->get_info(h, &info);
			ok(!(info.caps & VDU_CAP_WRITE_ZEROES), "no write-zeroes without "
			   "NBD_FLAG_SEND_WRITE_ZEROES (caps 0x%x)", info.caps);
			ok(strstr(logbuf, "1 connection(s) per queue") != NULL,
			   "no multi-conn: one connection");
			be->queue_open(h, 0, base, &q);
			is_int(do_io(q, VDU_IO_WRITE_ZEROES, 0, 4096, NULL, 0, 0), -EOPNOTSUPP,
			       "write-zeroes -> EOPNOTSUPP");
			be->queue_close(q);
			pl->close(h);
		}
		if (is_int(be_open(url, "readonly", "1", NULL, NULL, &h), 0, "open readonly=1")) {
			be->get_info(h, &info);
			ok(info.caps & VDU_CAP_READ_ONLY, "readonly=1: read-only device");
			pl->close(h);
		}
		srv_stop(&s, SIGTERM);
	}
	{
		const char *args[] = { "--no-sr", "memory", "1M", NULL };
		uint8_t w[8192], r[8192];

		if (!ok(srv_start(&s, "nosr", args) == 0, "nbdkit --no-sr started"))
			return;
		srv_url(&s, url, sizeof(url));
		log_reset();
		if (is_int(be_open(url, NULL, NULL, NULL, NULL, &h), 0, "open without structured replies")) {
			ok(strstr(logbuf, "simple replies") != NULL, "simple replies in use");
			be->queue_open(h, 0, base, &q);
			fill(w, sizeof(w), 3);
			is_int(do_io(q, VDU_IO_WRITE, 512, 8192, w, 3, 0), 0, "write");
			is_int(do_io(q, VDU_IO_READ, 512, 8192, r, 2, 0), 0, "read");
			ok(!memcmp(w, r, sizeof(w)), "data matches");
			be->queue_close(q);
			pl->close(h);
		}
		srv_stop(&s, SIGTERM);
	}
	{
		const char *args[] = { "--mask-handshake=0", "memory", "1M", NULL };

		if (!ok(srv_start(&s, "oldnew", args) == 0, "nbdkit --mask-handshake=0 started"))
			return;
		srv_url(&s, url, sizeof(url));
		log_reset();
		ok(be_open(url, NULL, NULL, NULL, NULL, &h) < 0 &&
		   strstr(logbuf, "fixed newstyle"), "non-fixed-newstyle server refused clearly");
		srv_stop(&s, SIGTERM);
	}
}

static void test_split(void)
{
	const char *args[] = { "--filter=blocksize-policy", "memory", "16M",
			       "blocksize-minimum=4096", "blocksize-maximum=65536",
			       "blocksize-error-policy=error", NULL };
	struct vdu_backend_info info;
	struct srv s;
	char url[200];
	void *h, *q;
	uint8_t *w = malloc(MiB), *r = malloc(MiB);

	if (!ok(srv_start(&s, "bs", args) == 0, "nbdkit --filter=blocksize-policy started"))
		goto out;
	srv_url(&s, url, sizeof(url));
	if (!is_int(be_open(url, NULL, NULL, NULL, NULL, &h), 0, "open"))
		goto out;
	be->get_info(h, &info);
	is_int(info.logical_block_size, 4096, "logical block size = server minimum");
	be->queue_open(h, 0, base, &q);
	fill(w, MiB, 9);
	is_int(do_io(q, VDU_IO_WRITE, 65536, MiB, w, 7, 0), 0, "1 MiB write split by 64 KiB max");
	memset(r, 0, MiB);
	is_int(do_io(q, VDU_IO_READ, 65536, MiB, r, 5, 0), 0, "1 MiB read split");
	ok(!memcmp(w, r, MiB), "data matches");
	be->queue_close(q);
	pl->close(h);
out:
	srv_stop(&s, SIGTERM);
	free(w);
	free(r);
}

static void test_errors(void)
{
	const char *args[] = { "--filter=error", "memory", "1M", "error-pread=EIO",
			       "error-pread-rate=100%", "error-pwrite=ENOSPC",
			       "error-pwrite-rate=100%", NULL };
	struct srv s;
	char url[200];
	void *h, *q;
	uint8_t b[4096] = { 0 };

	if (!ok(srv_start(&s, "err", args) == 0, "nbdkit --filter=error started"))
		return;
	srv_url(&s, url, sizeof(url));
	if (is_int(be_open(url, NULL, NULL, NULL, NULL, &h), 0, "open")) {
		be->queue_open(h, 0, base, &q);
		is_int(do_io(q, VDU_IO_READ, 0, 4096, b, 1, 0), -EIO, "read error -> EIO");
		is_int(do_io(q, VDU_IO_WRITE, 0, 4096, b, 1, 0), -ENOSPC, "write error -> ENOSPC");
		is_int(do_io(q, VDU_IO_FLUSH, 0, 0, NULL, 0, 0), 0, "flush still fine");
		be->queue_close(q);
		pl->close(h);
	}
	srv_stop(&s, SIGTERM);
}

enum { RESTART_N = 32, RESTART_BS = 16384 };

/* RESTART_N writes of RESTART_BS bytes (pattern seed..) in flight on q
 * when the server s is killed; they wait, then complete once it is back
 * (kind, args) and read back intact (into r). */
static void writes_survive_restart(struct srv *s, const char *kind,
				   const char **args, void *q, uint8_t *bufs,
				   uint8_t *r, int seed, const char *what)
{
	enum { N = RESTART_N, BS = RESTART_BS };
	struct treq *t[N];
	bool good = true;
	int n = 0;

	for (int i = 0; i < N; i++) {
		fill(bufs + i * BS, BS, seed + i);
		t[i] = treq_new(VDU_IO_WRITE, (uint64_t)i * BS * 3, BS, bufs + i * BS, 3);
		be->submit(q, &t[i]->io);
	}
	be->unplug(q);
	run_for(50);
	srv_stop(s, SIGKILL);
	diag("server%s killed with writes in flight", what);
	run_for(1500);
	for (int i = 0; i < N; i++)
		n += t[i]->done;
	ok(n < N, "writes wait while the server%s is down (%d of %d done)", what, n, N);
	ok(srv_start(s, kind, args) == 0, "server%s restarted", what);
	ok(run_until(t, N, 20000), "all writes complete after the reconnect%s", what);
	for (int i = 0; i < N; i++) {
		good = good && t[i]->done == 1 && t[i]->result == 0;
		free(t[i]);
	}
	ok(good, "all writes succeeded%s", what);
	for (int i = 0; i < N; i++)
		good = good && do_io(q, VDU_IO_READ, (uint64_t)i * BS * 3, BS,
				     r + i * BS, 2, 0) == 0;
	ok(good && !memcmp(r, bufs, N * BS), "data intact after the reconnect%s", what);
}

/* Server killed and restarted under I/O: nothing lost. */
static void test_reconnect(void)
{
	char file[128], fileopt[160], url[200];
	const char *args[] = { "--filter=delay", "file", fileopt, "delay-write=200ms", NULL };
	enum { N = RESTART_N, BS = RESTART_BS };
	struct srv s;
	void *h, *q;
	uint8_t *bufs = malloc(N * BS), *r = malloc(N * BS);
	int fd;

	snprintf(file, sizeof(file), "%s/disk.img", tmpdir);
	snprintf(fileopt, sizeof(fileopt), "file=%s", file);
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 16 * MiB) < 0)
		return;
	close(fd);
	if (!ok(srv_start(&s, "file", args) == 0, "nbdkit file started"))
		goto out;
	srv_url(&s, url, sizeof(url));
	if (!is_int(be_open(url, "timeout", "20", NULL, NULL, &h), 0, "open, timeout=20"))
		goto out;
	be->queue_open(h, 0, base, &q);
	writes_survive_restart(&s, "file", args, q, bufs, r, 500, "");
	be->queue_close(q);
	pl->close(h);
out:
	srv_stop(&s, SIGTERM);
	free(bufs);
	free(r);
}

/* Server gone longer than timeout: EIO, fail fast, then recovery. */
static void test_timeout(void)
{
	const char *args[] = { "memory", "1M", NULL };
	struct srv s;
	char url[200];
	void *h, *q;
	uint8_t b[4096];
	struct treq *t;
	uint64_t t0;
	int r = -1;

	if (!ok(srv_start(&s, "to", args) == 0, "nbdkit started"))
		return;
	srv_url(&s, url, sizeof(url));
	if (!is_int(be_open(url, "timeout", "2", NULL, NULL, &h), 0, "open, timeout=2"))
		goto out;
	be->queue_open(h, 0, base, &q);
	is_int(do_io(q, VDU_IO_READ, 0, 4096, b, 1, 0), 0, "read while up");
	srv_stop(&s, SIGKILL);
	t0 = now_ms();
	t = treq_new(VDU_IO_READ, 0, 4096, b, 1);
	be->submit(q, &t->io);
	be->unplug(q);
	ok(run_until(&t, 1, 8000), "request completes (no hang)");
	is_int(t->result, -EIO, "-EIO after the timeout");
	ok(t->t_done - t0 >= 1900 && t->t_done - t0 < 4000, "after about 2 s (%llu ms)",
	   (unsigned long long)(t->t_done - t0));
	free(t);
	t0 = now_ms();
	is_int(do_io(q, VDU_IO_READ, 0, 4096, b, 1, 0), -EIO, "next request fails ...");
	ok(now_ms() - t0 < 200, "... at once (%llu ms)", (unsigned long long)(now_ms() - t0));
	ok(srv_start(&s, "to", args) == 0, "server back");
	t0 = now_ms();
	while (now_ms() - t0 < 15000) {
		r = do_io(q, VDU_IO_READ, 0, 4096, b, 1, 0);
		if (r == 0)
			break;
		run_for(100);
	}
	is_int(r, 0, "I/O works again after the server is back (%llu ms)",
	       (unsigned long long)(now_ms() - t0));
	be->queue_close(q);
	pl->close(h);
out:
	srv_stop(&s, SIGTERM);
}

/* ------------------------------------------- a hostile fake server */

struct fake {
	int lfd;
	int conns;          /* accepted so far */
	int bad_conns;      /* this many transmission connections misbehave */
	int mode;           /* 0: unknown cookie, 1: bad magic, 2: chunk overrun */
};

static bool readn(int fd, void *buf, size_t n)
{
	for (size_t got = 0; got < n;) {
		ssize_t r = read(fd, (char *)buf + got, n - got);

		if (r <= 0)
			return false;
		got += r;
	}
	return true;
}

static void writen(int fd, const void *buf, size_t n)
{
	if (write(fd, buf, n) != (ssize_t)n) {
		/* the client went away: fine */
	}
}

static void fake_rep(int fd, uint32_t opt, uint32_t type, const void *d, uint32_t len)
{
	uint8_t h[20];
	uint64_t m = htobe64(NBD_REP_MAGIC);
	uint32_t v;

	memcpy(h, &m, 8);
	v = htobe32(opt); memcpy(h + 8, &v, 4);
	v = htobe32(type); memcpy(h + 12, &v, 4);
	v = htobe32(len); memcpy(h + 16, &v, 4);
	writen(fd, h, 20);
	if (len)
		writen(fd, d, len);
}

static void fake_serve(struct fake *f, int fd, bool bad)
{
	uint8_t g[18] = "NBDMAGICIHAVEOPT\0\3", b[4200];
	bool sr = false;

	writen(fd, g, 18);
	if (!readn(fd, b, 4))
		return;
	for (;;) {
		uint32_t opt, len;

		if (!readn(fd, b, 16))
			return;
		memcpy(&opt, b + 8, 4);
		memcpy(&len, b + 12, 4);
		opt = be32toh(opt);
		len = be32toh(len);
		if (len > sizeof(b) || !readn(fd, b, len))
			return;
		if (opt == NBD_OPT_STRUCTURED_REPLY) {
			sr = true;
			fake_rep(fd, opt, NBD_REP_ACK, NULL, 0);
		} else if (opt == NBD_OPT_GO) {
			uint8_t info[12] = { 0 };
			uint64_t size = htobe64(MiB);
			uint16_t fl = htobe16(NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);

			memcpy(info + 2, &size, 8);
			memcpy(info + 10, &fl, 2);
			fake_rep(fd, opt, NBD_REP_INFO, info, 12);
			fake_rep(fd, opt, NBD_REP_ACK, NULL, 0);
			break;
		} else
			return;
	}
	for (;;) {
		uint8_t req[28], rep[64];
		uint16_t type;
		uint32_t magic = htobe32(NBD_SIMPLE_REPLY_MAGIC), zero = 0, len;

		if (!readn(fd, req, 28))
			return;
		memcpy(&type, req + 6, 2);
		memcpy(&len, req + 24, 4);
		type = be16toh(type);
		len = be32toh(len);
		if (type == NBD_CMD_DISC)
			return;
		if (type == NBD_CMD_WRITE && (len > sizeof(b) || !readn(fd, b, len)))
			return;
		memcpy(rep, &magic, 4);
		memcpy(rep + 4, &zero, 4);
		memcpy(rep + 8, req + 8, 8);
		if (bad && f->mode == 0)
			rep[15] ^= 0x55;             /* cookie nobody sent */
		else if (bad && f->mode == 1)
			rep[0] ^= 0xff;              /* bad magic */
		else if (bad && f->mode == 2 && sr && type == NBD_CMD_READ) {
			/* OFFSET_DATA chunk longer than the request */
			uint32_t sm = htobe32(NBD_STRUCTURED_REPLY_MAGIC), l = htobe32(len + 8 + 512);
			uint16_t fl = htobe16(NBD_REPLY_FLAG_DONE), ty = htobe16(NBD_REPLY_TYPE_OFFSET_DATA);

			memcpy(rep, &sm, 4);
			memcpy(rep + 4, &fl, 2);
			memcpy(rep + 6, &ty, 2);
			memcpy(rep + 8, req + 8, 8);
			memcpy(rep + 16, &l, 4);
			writen(fd, rep, 20);
			continue;
		}
		writen(fd, rep, 16);
		if (type == NBD_CMD_READ && !bad) {
			memset(b, 0x5a, len < sizeof(b) ? len : sizeof(b));
			writen(fd, b, len);
		}
	}
}

static void *fake_thread(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		int fd = accept(f->lfd, NULL, NULL);

		if (fd < 0)
			return NULL;
		f->conns++;
		/* connection 1 is open()'s probe; then bad_conns bad ones */
		fake_serve(f, fd, f->conns > 1 && f->conns <= 1 + f->bad_conns);
		close(fd);
	}
}

static void test_hostile(void)
{
	static const char *const what[] = { "unknown cookie", "bad reply magic",
					     "bad data chunk" };

	for (int mode = 0; mode < 3; mode++) {
		struct fake f = { .bad_conns = 1, .mode = mode };
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		char url[200];
		pthread_t th;
		void *h, *q;
		uint8_t b[4096];

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/fake%d.sock", tmpdir, mode);
		f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (bind(f.lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(f.lfd, 4) < 0)
			return;
		pthread_create(&th, NULL, fake_thread, &f);
		snprintf(url, sizeof(url), "nbd+unix:///?socket=%s", sun.sun_path);
		log_reset();
		if (is_int(be_open(url, "timeout", "10", NULL, NULL, &h), 0, "fake server: open")) {
			be->queue_open(h, 0, base, &q);
			memset(b, 0, sizeof(b));
			is_int(do_io(q, VDU_IO_READ, 0, 4096, b, 2, 0), 0,
			       "%s: connection dropped, request re-sent and answered", what[mode]);
			ok(b[0] == 0x5a && b[4095] == 0x5a, "data from the good connection");
			ok(strstr(logbuf, what[mode]) != NULL, "logged: %s", what[mode]);
			ok(f.conns >= 3, "reconnected (%d connections)", f.conns);
			be->queue_close(q);
			pl->close(h);
		}
		shutdown(f.lfd, SHUT_RDWR);
		close(f.lfd);
		pthread_join(th, NULL);
	}
}

/* ------------------------------------------------------------------ TLS */

static char pki[128];           /* certificates and keys, made by pki_make() */
static const char *tls_skip;    /* why the TLS tests cannot run, or NULL */

static void skip(const char *why, const char *what)
{
	tap_count++;
	printf("ok %u # skip %s: %s\n", tap_count, what, why);
	fflush(stdout);
}

/* A CA, a server certificate for localhost and 127.0.0.1, a client
 * certificate, a second CA with a server certificate of its own, an
 * expired server certificate and a PSK file, laid out as nbdkit and qemu
 * read them: DIR/{ca-cert,server-cert,server-key,client-cert,client-key}.pem. */
static bool pki_make(void)
{
	static const char script[] =
		"set -e; cd '%s'; exec >pki.log 2>&1\n"
		"key() { certtool --generate-privkey --key-type=ecdsa --outfile $1; }\n"
		"ca() { key $1-key.pem\n"
		"  printf 'cn = test CA %%s\\nca\\ncert_signing_key\\nexpiration_days = 30\\n' $1 >$1.info\n"
		"  certtool --generate-self-signed --load-privkey $1-key.pem --template $1.info --outfile $1-cert.pem; }\n"
		"sign() { key $2-key.pem\n"
		"  certtool --generate-certificate --load-privkey $2-key.pem --load-ca-certificate $1-cert.pem \\\n"
		"    --load-ca-privkey $1-key.pem --template $3 --outfile $2-cert.pem; }\n"
		"ca ca1; ca ca2\n"
		"srv='cn = localhost\\ndns_name = localhost\\nip_address = 127.0.0.1\\ntls_www_server\\nsigning_key\\nencryption_key\\n'\n"
		"printf \"$srv\"'expiration_days = 30\\n' >server.info\n"
		"printf \"$srv\"'activation_date = \"2020-01-01 00:00:00 UTC\"\\nexpiration_date = \"2020-12-31 00:00:00 UTC\"\\n' >expired.info\n"
		"printf 'cn = client\\ntls_www_client\\nsigning_key\\nencryption_key\\nexpiration_days = 30\\n' >client.info\n"
		"sign ca1 server server.info; sign ca2 server2 server.info; sign ca1 expired expired.info\n"
		"sign ca1 client client.info\n"
		"mk() { mkdir -p $1; cp $2-cert.pem $1/ca-cert.pem; cp $3-cert.pem $1/$4-cert.pem; cp $3-key.pem $1/$4-key.pem; }\n"
		"mk srv ca1 server server; mk srv-untrusted ca2 server2 server; mk srv-expired ca1 expired server\n"
		"mk cli ca1 client client\n"
		"mkdir -p cli-nocert; cp ca1-cert.pem cli-nocert/ca-cert.pem\n"
		"psktool -u alice -p keys.psk; psktool -u alice -p other.psk\n";
	char cmd[sizeof(script) + 256];

	snprintf(pki, sizeof(pki), "%s/pki", tmpdir);
	if (mkdir(pki, 0700) < 0)
		return false;
	snprintf(cmd, sizeof(cmd), script, pki);
	return system(cmd) == 0;
}

static void tls_setup(void)
{
	if (system("certtool --version >/dev/null 2>&1 && psktool --version >/dev/null 2>&1"))
		tls_skip = "certtool/psktool missing (apt-get install gnutls-bin)";
	else if (system("nbdkit --dump-config 2>/dev/null | grep -qx tls=yes"))
		tls_skip = "nbdkit built without TLS";
	else if (!pki_make())
		tls_skip = "certtool failed (see pki/pki.log)";
}

/* Open with key=value pairs after the URL (NULL-terminated). */
static int open_kv(const char *url, const char *const *kv, void **h)
{
	struct vdu_param p[12];
	size_t n = 0;

	p[n].key = "url";
	p[n++].value = url;
	for (; kv && kv[0] && n < 12; kv += 2) {
		p[n].key = kv[0];
		p[n++].value = kv[1];
	}
	return checked_open(p, n, h);
}

static void pki_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", pki, name);
}

/* Write, read back, compare: len bytes at off in nseg pieces. */
static bool rw_verify(void *q, uint64_t off, size_t len, uint32_t seed)
{
	uint8_t *w = malloc(len), *r = malloc(len);
	bool good;

	fill(w, len, seed);
	memset(r, 0xaa, len);
	good = do_io(q, VDU_IO_WRITE, off, len, w, 5, 0) == 0 &&
	       do_io(q, VDU_IO_READ, off, len, r, 3, 0) == 0 && !memcmp(w, r, len);
	free(w);
	free(r);
	return good;
}

/* Settings refused before anything connects, with their one line. */
static void test_tls_config(void)
{
	static const struct {
		const char *url;
		const char *kv[5];
		const char *msg;
	} cases[] = {
		{ "nbd+unix:///?socket=/s", { "tls-certificates", "/tmp", NULL },
		  "tls-certificates= needs TLS: use nbds+unix:// instead of nbd+unix://" },
		{ "nbd://h/", { "tls-psk-file", "/etc/hostname", NULL },
		  "tls-psk-file= needs TLS: use nbds:// instead of nbd://" },
		{ "nbd://h/", { "tls-verify-peer", "off", NULL }, "needs TLS: use nbds://" },
		{ "nbd://h/?tls-certificates=/tmp", { NULL }, "needs TLS: use nbds://" },
		{ "nbds://h/", { "tls-certificates", "/tmp", "tls-psk-file", "/etc/hostname", NULL },
		  "exclude each other" },
		{ "nbds://h/?tls-certificates=/tmp", { "tls-certificates", "/tmp", NULL },
		  "both in the URL and a key" },
		{ "nbds://h/?tls-certificates=certs", { NULL }, "give an absolute path" },
		{ "nbds://h/", { "tls-certificates", "/nonexistent-dir", NULL },
		  "tls-certificates=/nonexistent-dir: No such file or directory" },
		{ "nbds://h/", { "tls-psk-file", "/nonexistent-file", NULL },
		  "tls-psk-file=/nonexistent-file: No such file or directory" },
		{ "nbds://h/", { "tls-verify-peer", "maybe", NULL }, "tls-verify-peer" },
		{ "nbds://h/?tls-verify-peer=maybe", { NULL }, "wants on or off" },
		{ "nbds://h/?tls-bogus=1", { NULL }, "unknown query parameter 'tls-bogus'" },
		{ "nbds://h/?socket=/s", { NULL }, "socket= is for nbd+unix" },
		{ "nbds+unix:///?socket=/s&tls-hostname=a&tls-hostname=b", { NULL },
		  "tls-hostname= given twice" },
	};
	static const struct {
		const char *url;
		bool tls, unix_socket;
		const char *certs, *psk, *user, *host;
		int verify;
	} good[] = {
		{ "nbds://h:99/e?tls-certificates=/c&tls-hostname=x.example&tls-verify-peer=off",
		  true, false, "/c", "", "", "x.example", 0 },
		{ "nbds+unix://alice@/e?socket=/s&tls-psk-file=/k%20f", true, true, "", "/k f",
		  "alice", "", -1 },
		{ "nbds+unix:///?tls-username=bob&socket=/s&tls-verify-peer=1", true, true, "", "",
		  "bob", "", 1 },
		{ "nbd://h/", false, false, "", "", "", "", -1 },
	};
	void *h;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = open_kv(cases[i].url, cases[i].kv, &h);

		ok(r == -EINVAL && strstr(check_err, cases[i].msg),
		   "refused: %s%s%s (%s)", cases[i].url, cases[i].kv[0] ? " -o " : "",
		   cases[i].kv[0] ? cases[i].kv[0] : "", check_err);
		if (r == 0)
			pl->close(h);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct nbd_url u;
		char err[300];
		int r = nbd_url_parse(good[i].url, &u, err, sizeof(err));

		ok(r == 0 && u.tls == good[i].tls && u.unix_socket == good[i].unix_socket &&
		   !strcmp(u.tls_certificates, good[i].certs) &&
		   !strcmp(u.tls_psk_file, good[i].psk) &&
		   !strcmp(u.tls_username, good[i].user) &&
		   !strcmp(u.tls_hostname, good[i].host) &&
		   u.tls_verify_peer == good[i].verify, "url '%s' parsed%s%s", good[i].url,
		   r ? ": " : "", r ? err : "");
	}
}

/* X.509 with client certificates, two connections per queue. */
static void test_tls_x509(void)
{
	char srvdir[160], clidir[160], nocert[160], opt[200], url[200];
	const char *args[] = { "--tls=require", opt, "--tls-verify-peer", "memory", "64M", NULL };
	struct srv s;
	void *h, *q;

	pki_path(srvdir, sizeof(srvdir), "srv");
	pki_path(clidir, sizeof(clidir), "cli");
	pki_path(nocert, sizeof(nocert), "cli-nocert");
	snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
	if (!ok(srv_start(&s, "tls", args) == 0, "nbdkit --tls=require --tls-verify-peer started"))
		return;
	snprintf(url, sizeof(url), "nbds+unix:///?socket=%s", s.sock);
	log_reset();
	{
		const char *kv[] = { "tls-certificates", clidir, "connections", "2", NULL };

		if (is_int(open_kv(url, kv, &h), 0, "nbds+unix: open with a client certificate")) {
			ok(strstr(logbuf, "2 connection(s) per queue") &&
			   strstr(logbuf, "TLS (X.509, CA ca-cert.pem, client certificate, TLS1."),
			   "2 connections, TLS with X.509 logged");
			is_int(be->queue_open(h, 0, base, &q), 0, "queue_open (2 TLS handshakes)");
			ok(rw_verify(q, 4096, MiB, 1), "1 MiB written and read back over TLS");
			ok(rw_verify(q, 8 * MiB + 512, 5 * MiB + 4096, 2),
			   "5 MiB written and read back (records, corked batches)");
			{
				enum { N = 64 };
				struct treq *t[N];
				uint8_t *bufs = malloc(N * 8192), *r = malloc(N * 8192);
				bool good = true;

				for (int i = 0; i < N; i++) {
					fill(bufs + i * 8192, 8192, 100 + i);
					t[i] = treq_new(VDU_IO_WRITE, 32 * MiB + (uint64_t)i * 8192,
							8192, bufs + i * 8192, 2);
					be->submit(q, &t[i]->io);
				}
				be->unplug(q);
				ok(run_until(t, N, 10000), "%d TLS writes in flight complete", N);
				for (int i = 0; i < N; i++) {
					good = good && t[i]->result == 0;
					free(t[i]);
				}
				for (int i = 0; i < N; i++)
					t[i] = treq_new(VDU_IO_READ, 32 * MiB + (uint64_t)i * 8192,
							8192, r + i * 8192, 3);
				for (int i = 0; i < N; i++)
					be->submit(q, &t[i]->io);
				be->unplug(q);
				ok(run_until(t, N, 10000), "%d TLS reads in flight complete", N);
				for (int i = 0; i < N; i++) {
					good = good && t[i]->result == 0;
					free(t[i]);
				}
				ok(good && !memcmp(r, bufs, N * 8192), "all succeeded, data matches");
				free(bufs);
				free(r);
			}
			is_int(do_io(q, VDU_IO_FLUSH, 0, 0, NULL, 0, 0), 0, "flush over TLS");
			be->queue_close(q);
			pl->close(h);
		}
	}
	{
		const char *kv[] = { "tls-certificates", clidir, "tls-hostname", "wrong.example",
				     NULL };

		log_reset();
		ok(open_kv(url, kv, &h) < 0 &&
		   strstr(logbuf, "TLS: the server's certificate failed verification: ") &&
		   strstr(logbuf, "does not match") && strstr(logbuf, "wrong.example"),
		   "tls-hostname=wrong.example refused, naming the reason");
		diag("%s", logbuf);
	}
	{
		const char *kv[] = { "tls-certificates", nocert, NULL };

		log_reset();
		ok(open_kv(url, kv, &h) < 0 && strstr(logbuf, "nbd: nbds+unix:"),
		   "no client certificate: the server refuses");
		diag("%s", logbuf);
	}
	{
		snprintf(url, sizeof(url), "nbd+unix:///?socket=%s", s.sock);
		log_reset();
		ok(open_kv(url, NULL, &h) < 0 &&
		   strstr(logbuf, "the server requires TLS: use nbds:// (or nbds+unix://) "
			  "instead of nbd://"), "plain client to a TLS-only server: refused with the nbds:// hint");
		diag("%s", logbuf);
	}
	srv_stop(&s, SIGTERM);
}

static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* TCP: the URL's host is the name checked (IP and DNS SANs). */
static void test_tls_tcp(void)
{
	char srvdir[160], clidir[160], opt[200], url[400], port[8];
	const char *args[] = { "--tls=require", opt, "memory", "16M", NULL };
	struct srv s;
	void *h, *q;

	pki_path(srvdir, sizeof(srvdir), "srv");
	pki_path(clidir, sizeof(clidir), "cli");
	snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
	snprintf(port, sizeof(port), "%u", free_port());
	if (!ok(srv_start_at(&s, "tlstcp", port, args) == 0, "nbdkit TLS on 127.0.0.1:%s", port))
		return;
	snprintf(url, sizeof(url), "nbds://127.0.0.1:%s/", port);
	{
		const char *kv[] = { "tls-certificates", clidir, NULL };

		if (is_int(open_kv(url, kv, &h), 0, "nbds://127.0.0.1: the IP SAN verifies")) {
			be->queue_open(h, 0, base, &q);
			ok(rw_verify(q, 0, 65536, 5), "I/O over TLS on TCP");
			be->queue_close(q);
			pl->close(h);
		}
	}
	snprintf(url, sizeof(url), "nbds://localhost:%s/?tls-certificates=%s", port, clidir);
	if (is_int(open_kv(url, NULL, &h), 0, "nbds://localhost/?tls-certificates=DIR: the DNS SAN verifies"))
		pl->close(h);
	snprintf(url, sizeof(url), "nbds://127.0.0.1:%s/?tls-certificates=%s&tls-hostname=other.example",
		 port, clidir);
	log_reset();
	ok(open_kv(url, NULL, &h) < 0 && strstr(logbuf, "other.example"),
	   "?tls-hostname=other.example refused");
	snprintf(url, sizeof(url), "nbd://127.0.0.1:%s/", port);
	log_reset();
	ok(open_kv(url, NULL, &h) < 0 && strstr(logbuf, "use nbds://"),
	   "nbd:// to the TLS-only server refused with the nbds:// hint");
	srv_stop(&s, SIGTERM);
}

/* An untrusted CA and an expired certificate: refused, unless
 * tls-verify-peer=off. */
static void test_tls_untrusted(void)
{
	char srvdir[160], clidir[160], opt[200], url[200];
	const char *args[] = { "--tls=require", opt, "memory", "16M", NULL };
	struct srv s;
	void *h, *q;

	pki_path(srvdir, sizeof(srvdir), "srv-untrusted");
	pki_path(clidir, sizeof(clidir), "cli");
	snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
	if (!ok(srv_start(&s, "tlsu", args) == 0, "nbdkit with a certificate of another CA"))
		return;
	snprintf(url, sizeof(url), "nbds+unix:///?socket=%s", s.sock);
	{
		const char *kv[] = { "tls-certificates", clidir, NULL };

		log_reset();
		ok(open_kv(url, kv, &h) < 0 &&
		   strstr(logbuf, "TLS: the server's certificate failed verification: ") &&
		   strstr(logbuf, "issuer is unknown") && !strchr(strchr(logbuf, ':'), '\n')[1],
		   "untrusted CA refused in one line naming it");
		diag("%s", logbuf);
	}
	{
		const char *kv[] = { "tls-certificates", clidir, "tls-verify-peer", "off", NULL };

		log_reset();
		if (is_int(open_kv(url, kv, &h), 0, "tls-verify-peer=off accepts it")) {
			ok(strstr(logbuf, "peer NOT verified") != NULL, "and says so in the log");
			be->queue_open(h, 0, base, &q);
			ok(rw_verify(q, 0, 65536, 6), "I/O works");
			be->queue_close(q);
			pl->close(h);
		}
	}
	srv_stop(&s, SIGTERM);

	pki_path(srvdir, sizeof(srvdir), "srv-expired");
	snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
	if (!ok(srv_start(&s, "tlsx", args) == 0, "nbdkit with an expired certificate"))
		return;
	snprintf(url, sizeof(url), "nbds+unix:///?socket=%s", s.sock);
	{
		const char *kv[] = { "tls-certificates", clidir, NULL };

		log_reset();
		ok(open_kv(url, kv, &h) < 0 && strstr(logbuf, "failed verification") &&
		   strstr(logbuf, "expired"), "expired certificate refused, naming it");
		diag("%s", logbuf);
	}
	srv_stop(&s, SIGTERM);
}

static void test_tls_psk(void)
{
	char psk[160], other[160], opt[200], url[400];
	const char *args[] = { "--tls=require", opt, "memory", "16M", NULL };
	struct srv s;
	void *h, *q;

	pki_path(psk, sizeof(psk), "keys.psk");
	pki_path(other, sizeof(other), "other.psk");
	snprintf(opt, sizeof(opt), "--tls-psk=%s", psk);
	if (!ok(srv_start(&s, "psk", args) == 0, "nbdkit --tls-psk started"))
		return;
	snprintf(url, sizeof(url), "nbds+unix:///?socket=%s", s.sock);
	{
		const char *kv[] = { "tls-psk-file", psk, "tls-username", "alice", NULL };

		log_reset();
		if (is_int(open_kv(url, kv, &h), 0, "PSK: open as alice")) {
			ok(strstr(logbuf, "TLS (PSK user alice, TLS1.") != NULL, "PSK logged");
			{
				char key[200] = "", *k;
				FILE *f = fopen(psk, "r");

				if (f && fgets(key, sizeof(key), f))
					key[strcspn(key, "\n")] = 0;
				if (f)
					fclose(f);
				k = strchr(key, ':');
				ok(k && strlen(k) > 16 && !strstr(logbuf, k + 1),
				   "the key is not logged");
			}
			be->queue_open(h, 0, base, &q);
			ok(rw_verify(q, 4096, 3 * MiB, 7), "3 MiB written and read back with PSK");
			be->queue_close(q);
			pl->close(h);
		}
	}
	snprintf(url, sizeof(url), "nbds+unix://alice@/?socket=%s&tls-psk-file=%s", s.sock, psk);
	if (is_int(open_kv(url, NULL, &h), 0, "nbds+unix://alice@/?...&tls-psk-file=FILE"))
		pl->close(h);
	snprintf(url, sizeof(url), "nbds+unix:///?socket=%s", s.sock);
	{
		const char *kv[] = { "tls-psk-file", psk, "tls-username", "bob", NULL };

		log_reset();
		ok(open_kv(url, kv, &h) < 0 && strstr(logbuf, "has no key for user 'bob'"),
		   "unknown PSK user refused");
	}
	{
		const char *kv[] = { "tls-psk-file", other, "tls-username", "alice", NULL };

		log_reset();
		ok(open_kv(url, kv, &h) < 0 && strstr(logbuf, "TLS"), "wrong key refused");
		diag("%s", logbuf);
	}
	srv_stop(&s, SIGTERM);
}

/* nbds:// to a server without TLS: no silent downgrade. */
static void test_tls_downgrade(void)
{
	const char *args[] = { "--tls=off", "memory", "1M", NULL };
	char clidir[160], url[200];
	struct srv s;
	void *h;

	pki_path(clidir, sizeof(clidir), "cli");
	if (!ok(srv_start(&s, "notls", args) == 0, "nbdkit --tls=off started"))
		return;
	snprintf(url, sizeof(url), "nbds+unix:///?socket=%s", s.sock);
	{
		const char *kv[] = { "tls-certificates", clidir, NULL };

		log_reset();
		ok(open_kv(url, kv, &h) < 0 &&
		   strstr(logbuf, "the server does not offer TLS (NBD_OPT_STARTTLS: ") &&
		   strstr(logbuf, "), which nbds:// requires\n"),
		   "nbds:// to a server without TLS refused");
		diag("%s", logbuf);
	}
	srv_stop(&s, SIGTERM);
}

/* TLS server killed and restarted under I/O; then restarted with a
 * certificate that does not verify: no fallback, no completion, until the
 * right one is back. */
static void test_tls_reconnect(void)
{
	char file[128], fileopt[160], url[200], srvdir[160], clidir[160], opt[200];
	const char *args[] = { "--tls=require", opt, "--filter=delay", "file", fileopt,
			       "delay-write=200ms", NULL };
	enum { N = RESTART_N, BS = RESTART_BS };
	struct srv s;
	void *h, *q;
	uint8_t *bufs = malloc(N * BS), *r = malloc(N * BS);
	int fd;

	pki_path(srvdir, sizeof(srvdir), "srv");
	pki_path(clidir, sizeof(clidir), "cli");
	snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
	snprintf(file, sizeof(file), "%s/tlsdisk.img", tmpdir);
	snprintf(fileopt, sizeof(fileopt), "file=%s", file);
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 16 * MiB) < 0)
		goto out;
	close(fd);
	if (!ok(srv_start(&s, "tlsfile", args) == 0, "nbdkit TLS file started"))
		goto out;
	snprintf(url, sizeof(url), "nbds+unix:///?socket=%s", s.sock);
	{
		const char *kv[] = { "tls-certificates", clidir, "timeout", "20",
				     "connections", "2", NULL };

		if (!is_int(open_kv(url, kv, &h), 0, "open, timeout=20, 2 connections"))
			goto out;
	}
	be->queue_open(h, 0, base, &q);
	writes_survive_restart(&s, "tlsfile", args, q, bufs, r, 700, " (TLS)");

	/* back with a certificate of another CA */
	srv_stop(&s, SIGKILL);
	pki_path(srvdir, sizeof(srvdir), "srv-untrusted");
	snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
	log_reset();
	ok(srv_start(&s, "tlsfile", args) == 0, "server back with an untrusted certificate");
	{
		uint8_t b[4096];
		struct treq *tr = treq_new(VDU_IO_READ, 0, 4096, b, 1);

		be->submit(q, &tr->io);
		be->unplug(q);
		run_for(2000);
		ok(!tr->done, "a read waits: no connection verifies");
		ok(strstr(logbuf, "failed verification") && strstr(logbuf, "retrying"),
		   "reconnects fail verification and are retried");
		srv_stop(&s, SIGKILL);
		pki_path(srvdir, sizeof(srvdir), "srv");
		snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
		ok(srv_start(&s, "tlsfile", args) == 0, "server back with its certificate");
		ok(run_until(&tr, 1, 15000) && tr->result == 0 && !memcmp(b, bufs, 4096),
		   "the read completes with the right data");
		free(tr);
	}
	be->queue_close(q);
	pl->close(h);
out:
	srv_stop(&s, SIGTERM);
	free(bufs);
	free(r);
}

/* ------------------------------------------ TLS through a trickle proxy */

/*
 * The backend's GnuTLS record calls, counted.  The backend is linked into
 * this program statically, so its calls land on these definitions, which
 * pass them on to GnuTLS's own (dlsym RTLD_NEXT).  Should that ever not
 * hold (spy.uncork_calls and spy.recv_calls stay 0), the checks that need
 * the counts are skipped and say so.
 */
static struct {
	unsigned long uncork_calls, uncork_again, uncork_resumed;
	unsigned long recv_calls, recv_again;
	gnutls_session_t again[8];	/* sessions whose last uncork said AGAIN */
} spy;

static void *spy_real(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (!f) {
		printf("Bail out! dlsym(%s): %s\n", name, dlerror());
		exit(1);
	}
	return f;
}

int gnutls_record_uncork(gnutls_session_t s, unsigned int flags)
{
	static int (*real)(gnutls_session_t, unsigned int);
	int r, i, e = -1;

	if (!real)
		real = (int (*)(gnutls_session_t, unsigned int))spy_real("gnutls_record_uncork");
	r = real(s, flags);
	spy.uncork_calls++;
	for (i = 0; i < 8; i++) {
		if (spy.again[i] == s)
			break;
		if (!spy.again[i] && e < 0)
			e = i;
	}
	if (r == GNUTLS_E_AGAIN) {
		spy.uncork_again++;
		if (i == 8 && e >= 0)
			spy.again[e] = s;
	} else if (i < 8) {
		if (r >= 0)
			spy.uncork_resumed++;	/* the flush that stopped went on */
		spy.again[i] = NULL;
	}
	return r;
}

ssize_t gnutls_record_recv(gnutls_session_t s, void *data, size_t len)
{
	static ssize_t (*real)(gnutls_session_t, void *, size_t);
	ssize_t r;

	if (!real)
		real = (ssize_t (*)(gnutls_session_t, void *, size_t))spy_real("gnutls_record_recv");
	r = real(s, data, len);
	spy.recv_calls++;
	if (r == GNUTLS_E_AGAIN)
		spy.recv_again++;
	return r;
}

static void spy_reset(void)
{
	memset(&spy, 0, sizeof(spy));
}

/*
 * A TCP proxy on its own thread and poll loop, between the backend and a
 * TLS server: each accepted connection gets one of its own to the server,
 * and both directions are forwarded in pieces whose sizes are drawn (with
 * a fixed seed) per direction: 1..tiny bytes, and big_pct% of them
 * 1..big, each followed by a pause of pace_us.  Its sockets have small
 * buffers (4 KiB) and a small MSS (1 KiB: with loopback's 64 KiB one the
 * kernel lets the sender's socket buffer grow to megabytes), so a
 * direction it does not read (paused) soon fills up the sender's.  It
 * follows the TLS records it forwards (from a sync on, when the streams
 * are idle, so at a record boundary) and can close a connection in the
 * middle of one: cut_dir, after letting cut_skip such records through.
 */
enum { TP_PAIRS = 8, TP_CONNS = 16, TP_BUF = 65536, TP_SOCKBUF = 4096, TP_MSS = 1024,
       TP_BIG_RECORD = 4097 };	/* longer than any piece of the trickle shapes */

struct tp_dir {
	int from, to;
	bool eof;
	size_t off, len;
	uint8_t hdr[5];		/* the record being forwarded */
	unsigned hgot, rpieces;
	uint32_t rlen, rdone;
	uint8_t buf[TP_BUF];
};

struct tp_pair {
	int cfd, sfd, idx;	/* idx: in accept order, from 0 */
	bool synced;		/* the record trackers are in step */
	bool big_sndbuf;	/* set by a hold, for its release */
	struct tp_dir d[2];	/* 0: up (to the server), 1: down */
};

struct tproxy {
	int lfd, wake[2];
	char port[8];
	struct sockaddr_in srv;
	pthread_t th;
	unsigned seed;
	struct tp_pair *pairs[TP_PAIRS];
	/* set by the test, per direction */
	atomic_int tiny[2], big[2], big_pct[2], pace_us[2], paused[2];
	atomic_int hold[2];	/* read, keep, forward nothing; then all at once */
	atomic_int cut_dir;	/* -1, or close mid-record going that way */
	atomic_int cut_skip;	/* after this many whole records of 1000+ bytes */
	atomic_int calm_after_cut;	/* and then forward in big pieces */
	atomic_uint gen, gen_seen;
	atomic_uint iter;	/* rounds of the proxy's loop */
	/* counted by the proxy; the first group since the last sync */
	atomic_ulong bytes[2], pieces[2], records[2], big_records[2], big_min_pieces[2];
	atomic_ulong held[2];
	atomic_ulong conn_bytes[TP_CONNS][2], total;
	atomic_int accepted, cuts;
	atomic_uint cut_len, cut_at;
};

/* How the proxy cuts up one direction. */
static void tp_shape(struct tproxy *p, int dir, int tiny, int big, int big_pct, int pace_us)
{
	p->tiny[dir] = tiny;
	p->big[dir] = big;
	p->big_pct[dir] = big_pct;
	p->pace_us[dir] = pace_us;
}

static size_t tp_pick(struct tproxy *p, int dir)
{
	int tiny = p->tiny[dir], big = p->big[dir];
	int r;

	if (tiny >= TP_BUF)
		return TP_BUF;	/* well-behaved: whatever there is */
	r = rand_r(&p->seed);
	if (big > 0 && r % 100 < p->big_pct[dir])
		return 1 + rand_r(&p->seed) % big;
	return 1 + (size_t)(r >> 8) % (tiny > 0 ? tiny : 1);
}

/* A record of application data this direction may cut (or skip)? */
static bool tp_may_cut(const struct tproxy *p, const struct tp_dir *d, int dir)
{
	return p->cut_dir == dir && !p->cuts && d->hgot == 5 && d->hdr[0] == 23 &&
	       d->hdr[1] == 3 && d->hdr[2] == 3 && d->rlen >= 1000;
}

static bool tp_cuttable(const struct tproxy *p, const struct tp_dir *d, int dir)
{
	return tp_may_cut(p, d, dir) && !p->cut_skip;
}

/* While a cut is armed: no piece goes past a record's header or past the
 * middle of a record it may cut. */
static size_t tp_clamp(const struct tproxy *p, const struct tp_dir *d, int dir, size_t n)
{
	size_t lim;

	if (p->cut_dir != dir || p->cuts)
		return n;
	if (d->hgot < 5)
		lim = 5 - d->hgot;
	else if (tp_cuttable(p, d, dir) && d->rdone < d->rlen / 2)
		lim = d->rlen / 2 - d->rdone;
	else
		lim = d->rlen - d->rdone;
	return n < lim ? n : lim;
}

/* n bytes of b went on: follow the records. */
static void tp_track(struct tproxy *p, struct tp_pair *pr, int dir, const uint8_t *b, size_t n)
{
	struct tp_dir *d = &pr->d[dir];

	if (d->hgot)
		d->rpieces++;	/* this piece goes on with a record */
	while (n) {
		if (d->hgot < 5) {
			if (!d->hgot)
				d->rpieces = 1;
			d->hdr[d->hgot++] = *b++;
			n--;
			if (d->hgot < 5)
				continue;
			d->rlen = (uint32_t)d->hdr[3] << 8 | d->hdr[4];
			d->rdone = 0;
		} else {
			size_t k = n < d->rlen - d->rdone ? n : d->rlen - d->rdone;

			d->rdone += k;
			b += k;
			n -= k;
		}
		if (d->rdone == d->rlen) {
			if (pr->synced && tp_may_cut(p, d, dir) && p->cut_skip > 0)
				p->cut_skip--;
			d->hgot = 0;
			p->records[dir]++;
			if (d->rlen < TP_BIG_RECORD)
				continue;
			p->big_records[dir]++;
			if (!p->big_min_pieces[dir] || d->rpieces < p->big_min_pieces[dir])
				p->big_min_pieces[dir] = d->rpieces;
		}
	}
}

static void tp_close(struct tproxy *p, int i)
{
	close(p->pairs[i]->cfd);
	close(p->pairs[i]->sfd);
	free(p->pairs[i]);
	p->pairs[i] = NULL;
}

static bool tp_wants_read(const struct tproxy *p, const struct tp_pair *pr, int dir)
{
	const struct tp_dir *d = &pr->d[dir];

	if (d->eof || p->paused[dir])
		return false;
	return p->hold[dir] ? d->len < TP_BUF || d->off == d->len : d->off == d->len;
}

static bool tp_wants_write(const struct tproxy *p, const struct tp_pair *pr, int dir)
{
	return !p->hold[dir] && pr->d[dir].off < pr->d[dir].len;
}

/* Holding: append what comes to the buffer. */
static int tp_hold(struct tproxy *p, struct tp_pair *pr, int dir)
{
	struct tp_dir *d = &pr->d[dir];
	int big = 1 << 20;
	ssize_t r;

	if (!pr->big_sndbuf) {
		/* the release goes out in one send() */
		setsockopt(d->to, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		pr->big_sndbuf = true;
	}
	if (d->off == d->len)
		d->off = d->len = 0;
	if (!tp_wants_read(p, pr, dir))
		return 0;
	r = recv(d->from, d->buf + d->len, TP_BUF - d->len, MSG_DONTWAIT);
	if (r > 0) {
		d->len += r;
		p->held[dir] += r;
		return 1;
	}
	if (r == 0 || (errno != EAGAIN && errno != EINTR))
		d->eof = true;	/* closed once released */
	return 0;
}

/* One piece in and one out, one way: 1 when bytes moved, -1 when the
 * pair is gone, else 0. */
static int tp_pump(struct tproxy *p, int i, int dir)
{
	struct tp_pair *pr = p->pairs[i];
	struct tp_dir *d = &pr->d[dir];
	int moved = 0;

	if (p->hold[dir])
		return tp_hold(p, pr, dir);
	if (tp_wants_read(p, pr, dir)) {
		ssize_t r = recv(d->from, d->buf, tp_pick(p, dir), MSG_DONTWAIT);

		if (r > 0) {
			d->off = 0;
			d->len = r;
			moved = 1;
		} else if (r == 0 || (errno != EAGAIN && errno != EINTR))
			d->eof = true;
	}
	if (d->off < d->len) {
		size_t n = tp_pick(p, dir);
		ssize_t w;

		if (n > d->len - d->off)
			n = d->len - d->off;
		if (pr->synced)
			n = tp_clamp(p, d, dir, n);
		w = send(d->to, d->buf + d->off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			tp_track(p, pr, dir, d->buf + d->off, w);
			d->off += w;
			p->bytes[dir] += w;
			p->pieces[dir]++;
			p->total += w;
			if (pr->idx < TP_CONNS)
				p->conn_bytes[pr->idx][dir] += w;
			moved = 1;
			if (pr->synced && tp_cuttable(p, d, dir) && d->rdone == d->rlen / 2) {
				p->cut_len = d->rlen;
				p->cut_at = d->rdone;
				p->cuts++;
				tp_close(p, i);
				if (p->calm_after_cut)
					for (int k = 0; k < 2; k++)
						tp_shape(p, k, TP_BUF, 0, 0, 0);
				return -1;
			}
			if (p->pace_us[dir]) {
				struct timespec ts = { 0, p->pace_us[dir] * 1000L };

				nanosleep(&ts, NULL);
			}
		} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
			d->eof = true;
			d->off = d->len;
		}
	}
	if (d->eof && d->off == d->len) {
		tp_close(p, i);
		return -1;
	}
	return moved;
}

static void tp_accept(struct tproxy *p)
{
	int cfd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int sfd, one = 1, sz = TP_SOCKBUF, mss = TP_MSS, slot = 0;
	struct tp_pair *pr;

	if (cfd < 0)
		return;
	while (slot < TP_PAIRS && p->pairs[slot])
		slot++;
	sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (slot == TP_PAIRS || sfd < 0) {
		close(cfd);
		if (sfd >= 0)
			close(sfd);
		return;
	}
	setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(sfd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
	if (connect(sfd, (struct sockaddr *)&p->srv, sizeof(p->srv)) < 0) {
		close(cfd);
		close(sfd);
		return;
	}
	fcntl(sfd, F_SETFL, O_NONBLOCK);
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pr = calloc(1, sizeof(*pr));
	if (!pr) {
		close(cfd);
		close(sfd);
		return;
	}
	pr->cfd = cfd;
	pr->sfd = sfd;
	pr->idx = p->accepted++;
	pr->d[0].from = pr->d[1].to = cfd;
	pr->d[0].to = pr->d[1].from = sfd;
	p->pairs[slot] = pr;
}

static void *tp_thread(void *arg)
{
	struct tproxy *p = arg;
	bool moved = false;

	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);	/* pace_us means microseconds */
	for (;;) {
		struct pollfd pf[2 + 2 * TP_PAIRS];
		unsigned g = p->gen;
		int n = 0;

		p->iter++;

		if (g != p->gen_seen) {
			for (int i = 0; i < TP_PAIRS; i++)
				if (p->pairs[i]) {
					p->pairs[i]->synced = true;
					for (int dir = 0; dir < 2; dir++)
						p->pairs[i]->d[dir].hgot = 0;
				}
			for (int dir = 0; dir < 2; dir++)
				p->bytes[dir] = p->pieces[dir] = p->records[dir] =
					p->big_records[dir] = p->big_min_pieces[dir] =
					p->held[dir] = 0;
			p->gen_seen = g;
		}
		pf[n++] = (struct pollfd){ .fd = p->wake[0], .events = POLLIN };
		pf[n++] = (struct pollfd){ .fd = p->lfd, .events = POLLIN };
		for (int i = 0; i < TP_PAIRS; i++) {
			struct tp_pair *pr = p->pairs[i];

			if (!pr)
				continue;
			pf[n].fd = pr->cfd;
			pf[n++].events = (tp_wants_read(p, pr, 0) ? POLLIN : 0) |
					 (tp_wants_write(p, pr, 1) ? POLLOUT : 0);
			pf[n].fd = pr->sfd;
			pf[n++].events = (tp_wants_read(p, pr, 1) ? POLLIN : 0) |
					 (tp_wants_write(p, pr, 0) ? POLLOUT : 0);
		}
		if (poll(pf, n, moved ? 0 : 5) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			break;
		if (pf[1].revents & POLLIN)
			tp_accept(p);
		moved = false;
		for (int i = 0; i < TP_PAIRS; i++)
			for (int dir = 0; dir < 2 && p->pairs[i]; dir++)
				if (tp_pump(p, i, dir) > 0)
					moved = true;
	}
	for (int i = 0; i < TP_PAIRS; i++)
		if (p->pairs[i])
			tp_close(p, i);
	return NULL;
}

/* The proxy's counts start again and its record trackers take up the
 * streams, which must be idle (at a record boundary). */
static void tp_sync(struct tproxy *p)
{
	unsigned g = ++p->gen;
	uint64_t end = now_ms() + 2000;

	while (p->gen_seen != g && now_ms() < end)
		usleep(500);
	if (p->gen_seen != g)
		diag("the proxy did not take up the sync: its counts are off");
}

static struct tproxy *tp_start(const char *srv_port, unsigned seed)
{
	struct tproxy *p = calloc(1, sizeof(*p));
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int one = 1, sz = TP_SOCKBUF, mss = TP_MSS;

	if (!p)
		return NULL;
	p->seed = seed;
	p->cut_dir = -1;
	p->srv.sin_family = AF_INET;
	p->srv.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->srv.sin_port = htons((uint16_t)atoi(srv_port));
	for (int dir = 0; dir < 2; dir++)
		tp_shape(p, dir, 7, 0, 0, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* accepted sockets inherit the small buffers (and the window) */
	if (p->lfd < 0 ||
	    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(p->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)) < 0 ||
	    setsockopt(p->lfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)) < 0 ||
	    setsockopt(p->lfd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss)) < 0 ||
	    bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(p->lfd, 8) < 0 ||
	    getsockname(p->lfd, (struct sockaddr *)&a, &l) < 0 || pipe(p->wake) < 0) {
		if (p->lfd >= 0)
			close(p->lfd);
		free(p);
		return NULL;
	}
	snprintf(p->port, sizeof(p->port), "%u", ntohs(a.sin_port));
	if (pthread_create(&p->th, NULL, tp_thread, p)) {
		close(p->lfd);
		close(p->wake[0]);
		close(p->wake[1]);
		free(p);
		return NULL;
	}
	return p;
}

static void tp_stop(struct tproxy *p)
{
	if (!p)
		return;
	if (write(p->wake[1], "x", 1) != 1) {
		/* the thread then never ends: the join would hang */
		abort();
	}
	pthread_join(p->th, NULL);
	close(p->lfd);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p);
}

/* The proxy counts a piece after its send(), which may already have
 * completed the request: wait for the next rounds of its loop. */
static void tp_settle(struct tproxy *p)
{
	unsigned i = p->iter;
	uint64_t end = now_ms() + 2000;

	while (p->iter - i < 2 && now_ms() < end)
		usleep(200);
}

/* Run the loop until the proxy has carried nothing for quiet_ms (the
 * handshakes are over) with at least conns connections accepted. */
static bool tp_wait_quiet(struct tproxy *p, int conns, unsigned quiet_ms, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms, moved_at = now_ms();
	unsigned long last = p->total;

	while (now_ms() < end) {
		run_for(10);
		if (p->total != last) {
			last = p->total;
			moved_at = now_ms();
		} else if (p->accepted >= conns && now_ms() - moved_at >= quiet_ms)
			return true;
	}
	return false;
}

static bool all_ok(struct treq **t, int n)
{
	bool good = true;

	for (int i = 0; i < n; i++)
		good = good && t[i]->done == 1 && t[i]->result == 0;
	return good;
}

static void free_all(struct treq **t, int n)
{
	for (int i = 0; i < n; i++) {
		free(t[i]);
		t[i] = NULL;
	}
}

static unsigned long long since(uint64_t t0)
{
	return (unsigned long long)(now_ms() - t0);
}

/* Through the trickle proxy: writes that block the client's sends, reads
 * whose records arrive in pieces (and one byte at a time), two
 * connections, a flush; then connections cut in the middle of a record. */
static void test_tls_trickle(void)
{
	enum { NW = 7, CUT = 256 * 1024 };
	static const struct {
		uint64_t off;
		uint32_t len;
	} wr[NW] = {
		{ 4096, MiB },			/* 1 MiB */
		{ 2 * MiB, 65536 },
		{ 3 * MiB, 65536 + 512 },
		{ 4 * MiB + 512, 65536 + 4608 },
		{ 5 * MiB + 1, 65536 + 17 },	/* odd offset and length */
		{ 6 * MiB + 3, 12345 },
		{ 7 * MiB + 7, 1 },
	};
	char srvdir[160], clidir[160], opt[200], url[200], port[8];
	const char *args[] = { "--tls=require", opt, "memory", "16M", NULL };
	struct srv s;
	struct tproxy *p = NULL;
	struct treq *t[NW] = { NULL }, *tt[56];
	int ntt = 0;
	uint8_t *w[NW] = { NULL }, *r[NW] = { NULL };
	void *h = NULL, *q = NULL, *h1 = NULL, *q1 = NULL;
	bool spying, good;
	uint64_t t0;
	int e;

	pki_path(srvdir, sizeof(srvdir), "srv");
	pki_path(clidir, sizeof(clidir), "cli");
	snprintf(opt, sizeof(opt), "--tls-certificates=%s", srvdir);
	snprintf(port, sizeof(port), "%u", free_port());
	if (!ok(srv_start_at(&s, "trickle", port, args) == 0,
		"nbdkit --tls=require on 127.0.0.1:%s", port))
		return;
	p = tp_start(port, 20240613);
	if (!ok(p != NULL, "trickle proxy on 127.0.0.1:%s", p ? p->port : "?"))
		goto out;
	for (int i = 0; i < NW; i++) {
		w[i] = malloc(wr[i].len > CUT ? wr[i].len : CUT);
		r[i] = malloc(wr[i].len > CUT ? wr[i].len : CUT);
		fill(w[i], wr[i].len, 900 + i);
	}

	/* the handshakes in 1..7 byte pieces */
	snprintf(url, sizeof(url), "nbds://127.0.0.1:%s/", p->port);
	spy_reset();
	log_reset();
	t0 = now_ms();
	{
		const char *kv[] = { "tls-certificates", clidir, "connections", "2",
				     "timeout", "10", NULL };

		e = open_kv(url, kv, &h);
		if (!is_int(e, 0, "open through the proxy: NBD and TLS handshakes in "
			    "1-7 byte pieces (%llu ms)", since(t0)))
			goto out;
	}
	spying = spy.recv_calls > 0;
	if (!spying)
		diag("the GnuTLS calls are not counted here (not linked statically?)");
	be->queue_open(h, 0, base, &q);
	good = tp_wait_quiet(p, 3, 150, 10000);
	ok(good && p->accepted == 3, "2 connections up through the proxy (%d accepted: "
	   "open's and the queue's)", (int)p->accepted);

	/* writes while the proxy reads nothing from the client */
	tp_shape(p, 0, 7, 4096, 10, 5);
	p->paused[0] = 1;
	tp_sync(p);
	spy_reset();
	for (int i = 0; i < NW; i++) {
		t[i] = treq_new(VDU_IO_WRITE, wr[i].off, wr[i].len, w[i], 1 + i % 5);
		be->submit(q, &t[i]->io);
	}
	be->unplug(q);
	t0 = now_ms();
	run_for(300);
	{
		unsigned long long ms = since(t0);
		int n = 0;

		for (int i = 0; i < NW; i++)
			n += t[i]->done;
		ok(n == 0 && p->bytes[0] == 0 && ms < 1500,
		   "proxy not reading: no write completes, the loop is not blocked "
		   "(%d done, 300 ms took %llu ms)", n, ms);
	}
	if (spying)
		ok(spy.uncork_again > 0, "the TLS flush stopped with GNUTLS_E_AGAIN "
		   "(%lu of %lu uncorks)", spy.uncork_again, spy.uncork_calls);
	else
		skip("GnuTLS calls not counted", "uncork GNUTLS_E_AGAIN");
	p->paused[0] = 0;
	t0 = now_ms();
	good = run_until(t, NW, 20000) && all_ok(t, NW);
	if (!ok(good, "proxy reading again in 1-7 byte pieces (10%% up to 4 KiB): 1 MiB "
		"and 6 64 KiB/odd-sized writes complete (%llu ms)", since(t0)))
		goto out;	/* what is still out is completed by queue_close */
	tp_settle(p);
	diag("up: %lu bytes in %lu pieces, %lu TLS records, %lu over 4 KiB each in "
	     ">= %lu pieces", (unsigned long)p->bytes[0], (unsigned long)p->pieces[0],
	     (unsigned long)p->records[0], (unsigned long)p->big_records[0],
	     (unsigned long)p->big_min_pieces[0]);
	ok(p->big_records[0] > 80 && p->big_min_pieces[0] >= 2,
	   "every TLS record of the writes went up in pieces");
	if (spying)
		ok(spy.uncork_again > 1 && spy.uncork_resumed > 0,
		   "flushes stopped with GNUTLS_E_AGAIN %lu times, resumed %lu times",
		   spy.uncork_again, spy.uncork_resumed);
	else
		skip("GnuTLS calls not counted", "uncork resumed");
	ok(p->conn_bytes[1][0] > 65536 && p->conn_bytes[2][0] > 65536,
	   "both connections carried writes (%lu and %lu bytes)",
	   (unsigned long)p->conn_bytes[1][0], (unsigned long)p->conn_bytes[2][0]);
	free_all(t, NW);
	is_int(do_io(q, VDU_IO_FLUSH, 0, 0, NULL, 0, 0), 0, "flush through the proxy");

	/* read back, the replies in pieces */
	tp_shape(p, 1, 7, 4096, 10, 5);
	tp_sync(p);
	spy_reset();
	for (int i = 0; i < NW; i++) {
		memset(r[i], 0xaa, wr[i].len);
		t[i] = treq_new(VDU_IO_READ, wr[i].off, wr[i].len, r[i], 1 + (i + 2) % 5);
		be->submit(q, &t[i]->io);
	}
	be->unplug(q);
	t0 = now_ms();
	if (!run_until(t, NW, 20000)) {
		ok(0, "read back in pieces: all 7 complete");
		goto out;
	}
	good = all_ok(t, NW);
	for (int i = 0; i < NW && good; i++)
		good = !memcmp(w[i], r[i], wr[i].len);
	ok(good, "read back in pieces: all 7 match (%llu ms)", since(t0));
	tp_settle(p);
	free_all(t, NW);
	diag("down: %lu bytes in %lu pieces, %lu TLS records, %lu over 4 KiB each in "
	     ">= %lu pieces; backend: %lu record reads, %lu GNUTLS_E_AGAIN",
	     (unsigned long)p->bytes[1], (unsigned long)p->pieces[1],
	     (unsigned long)p->records[1], (unsigned long)p->big_records[1],
	     (unsigned long)p->big_min_pieces[1], spy.recv_calls, spy.recv_again);
	ok(p->big_records[1] > 80 && p->big_min_pieces[1] >= 2,
	   "every TLS record of the replies came down in pieces");
	if (spying)
		ok(spy.recv_again > p->records[1], "the backend met GNUTLS_E_AGAIN "
		   "mid-record: %lu times for %lu records", spy.recv_again,
		   (unsigned long)p->records[1]);
	else
		skip("GnuTLS calls not counted", "recv GNUTLS_E_AGAIN");
	ok(p->conn_bytes[1][1] > 65536 && p->conn_bytes[2][1] > 65536,
	   "both connections carried reads");

	/* a reply one byte at a time: 20 KiB + 77 bytes, two records */
	tp_shape(p, 1, 1, 0, 0, 2);
	tp_sync(p);
	spy_reset();
	{
		uint32_t len = 20480 + 77;
		uint64_t off = wr[0].off + 12345;

		memset(r[0], 0xaa, len);
		t0 = now_ms();
		e = do_io(q, VDU_IO_READ, off, len, r[0], 3, 0);
		is_int(e, 0, "read of %u bytes, the reply one byte at a time (%llu ms)", len,
		       since(t0));
		tp_settle(p);
		ok(!memcmp(r[0], w[0] + 12345, len) && p->pieces[1] == p->bytes[1] &&
		   p->bytes[1] > len && p->records[1] >= 2,
		   "data matches; %lu bytes came in %lu pieces, %lu records",
		   (unsigned long)p->bytes[1], (unsigned long)p->pieces[1],
		   (unsigned long)p->records[1]);
		if (spying)
			diag("backend: %lu record reads, %lu GNUTLS_E_AGAIN", spy.recv_calls,
			     spy.recv_again);
	}
	ok(p->accepted == 3 && !strstr(logbuf, " lost: "),
	   "no connection was lost or made again (%d accepted)", (int)p->accepted);

	/* Many replies decrypted in one go: the proxy holds the replies to
	 * 2 x n reads of 2 KiB (n on each connection), then lets them all
	 * go in one send.  The backend reads a bounded number of rounds per
	 * wakeup; when those end inside the last record, what GnuTLS holds
	 * does not make the socket readable, and only the check for pending
	 * records gets the rest read.  n from 16 to 28 makes the rounds run
	 * out at every point of the last replies. */
	tp_shape(p, 0, TP_BUF, 0, 0, 0);
	tp_shape(p, 1, TP_BUF, 0, 0, 0);
	good = true;
	t0 = now_ms();
	for (int n = 16; n <= 28 && good; n++) {
		enum { RB = 2048 };
		unsigned long want = 2UL * n * (RB + 28);
		uint64_t end = now_ms() + 5000, moved_at = now_ms();
		unsigned long last = 0;

		p->hold[1] = 1;
		tp_sync(p);
		for (ntt = 0; ntt < 2 * n; ntt++) {
			tt[ntt] = treq_new(VDU_IO_READ, wr[0].off + (uint64_t)ntt * RB, RB,
					   r[0] + (size_t)ntt * RB, 1 + ntt % 2);
			be->submit(q, &tt[ntt]->io);
		}
		be->unplug(q);
		while (now_ms() < end && (p->held[1] < want || now_ms() - moved_at < 20)) {
			run_for(2);
			if (p->held[1] != last) {
				last = p->held[1];
				moved_at = now_ms();
			}
		}
		p->hold[1] = 0;
		good = p->held[1] >= want && run_until(tt, 2 * n, 3000) && all_ok(tt, 2 * n) &&
		       !memcmp(r[0], w[0], (size_t)2 * n * RB);
		if (!good) {
			diag("n = %d: %lu bytes held, %lu wanted", n, (unsigned long)p->held[1],
			     want);
			break;
		}
		free_all(tt, ntt);
		ntt = 0;
	}
	if (!ok(good, "2 x 16..28 replies held and let go at once: all read, data "
		"matches (%llu ms)", since(t0)))
		goto out;	/* what is still out is completed by queue_close */

	/* Closed in the middle of the first record of a reply, which came in
	 * pieces; the proxy then forwards in big pieces.  The request goes
	 * to the other connection, or to this one once it is back. */
	p->calm_after_cut = 1;
	tp_shape(p, 0, 7, 4096, 10, 5);
	tp_shape(p, 1, 7, 4096, 10, 5);
	p->cut_dir = 1;
	tp_sync(p);
	log_reset();
	memset(r[0], 0xaa, CUT);
	t0 = now_ms();
	e = do_io(q, VDU_IO_READ, wr[0].off, CUT, r[0], 4, 0);
	is_int(e, 0, "256 KiB read: the proxy closes the connection in the middle of "
	       "the reply's first record; no error (%llu ms)", since(t0));
	ok(p->cuts == 1 && !memcmp(r[0], w[0], CUT), "data matches (cut after %u bytes "
	   "of a %u-byte record)", (unsigned)p->cut_at, (unsigned)p->cut_len);
	good = tp_wait_quiet(p, 4, 50, 5000);
	ok(good && strstr(logbuf, " lost: ") && strstr(logbuf, "re-sent") && p->accepted == 4,
	   "dropped, request re-sent, the lost connection back through the proxy "
	   "(%d accepted)", (int)p->accepted);

	/* The same on a queue of one connection, so the request waits for the
	 * reconnect: cut in a reply's third record (two records of data are in
	 * the request's buffers by then), then in a write's first record while
	 * the backend's flush waits (GNUTLS_E_AGAIN). */
	tp_shape(p, 0, 7, 0, 0, 0);
	tp_shape(p, 1, 7, 0, 0, 0);
	{
		const char *kv[] = { "tls-certificates", clidir, "timeout", "10", NULL };

		e = open_kv(url, kv, &h1);
		if (!is_int(e, 0, "another open through the proxy, one connection"))
			goto out;
	}
	be->queue_open(h1, 0, base, &q1);
	good = tp_wait_quiet(p, 6, 150, 10000);
	ok(good && p->accepted == 6, "its connection up (%d accepted)", (int)p->accepted);

	tp_shape(p, 0, 7, 4096, 10, 5);
	tp_shape(p, 1, 7, 4096, 10, 5);
	p->cut_dir = 1;
	p->cut_skip = 2;
	p->cuts = 0;
	tp_sync(p);
	log_reset();
	memset(r[0], 0xaa, CUT);
	t0 = now_ms();
	e = do_io(q1, VDU_IO_READ, wr[0].off + 3, CUT, r[0], 4, 0);
	is_int(e, 0, "256 KiB read: the proxy closes the connection in the middle of "
	       "the reply's third record; no error (%llu ms)", since(t0));
	ok(p->cuts == 1 && !memcmp(r[0], w[0] + 3, CUT), "data matches (cut after %u "
	   "bytes of a %u-byte record)", (unsigned)p->cut_at, (unsigned)p->cut_len);
	ok(strstr(logbuf, " lost: ") && strstr(logbuf, "re-sent") && p->accepted == 7,
	   "dropped, reconnected through the proxy (%d accepted), request re-sent",
	   (int)p->accepted);

	tp_shape(p, 0, 7, 4096, 10, 5);
	tp_shape(p, 1, 7, 4096, 10, 5);
	fill(w[0], CUT, 999);
	p->cut_dir = 0;
	p->cut_skip = 0;
	p->cuts = 0;
	tp_sync(p);
	log_reset();
	spy_reset();
	t0 = now_ms();
	e = do_io(q1, VDU_IO_WRITE, wr[0].off, CUT, w[0], 5, 0);
	is_int(e, 0, "256 KiB write: the proxy closes the connection in the middle of a "
	       "record of the request; no error (%llu ms)", since(t0));
	if (spying)
		ok(spy.uncork_again > 0, "the flush had stopped with GNUTLS_E_AGAIN "
		   "(%lu of %lu uncorks)", spy.uncork_again, spy.uncork_calls);
	else
		skip("GnuTLS calls not counted", "uncork GNUTLS_E_AGAIN before the cut");
	ok(strstr(logbuf, " lost: ") && p->accepted == 8,
	   "dropped, reconnected (%d accepted), write re-sent", (int)p->accepted);
	diag("%s", logbuf);
	p->cut_dir = -1;
	memset(r[0], 0xaa, CUT);
	e = do_io(q, VDU_IO_READ, wr[0].off, CUT, r[0], 2, 0);
	ok(p->cuts == 1 && e == 0 && !memcmp(r[0], w[0], CUT), "read back on the other "
	   "queue: data matches (cut after %u bytes of a %u-byte record)",
	   (unsigned)p->cut_at, (unsigned)p->cut_len);
out:
	if (q1)
		be->queue_close(q1);
	if (h1)
		pl->close(h1);
	if (q)
		be->queue_close(q);
	if (h)
		pl->close(h);
	free_all(tt, ntt);
	for (int i = 0; i < NW; i++) {
		free(t[i]);	/* NULL unless a phase failed */
		free(w[i]);
		free(r[i]);
	}
	tp_stop(p);
	srv_stop(&s, SIGTERM);
}

static void test_tls(void)
{
	static const char *const what[] = {
		"x509 and multi-conn", "TCP and host names", "untrusted and expired",
		"PSK", "no downgrade", "reconnect", "trickle proxy",
	};
	void (*const fn[])(void) = {
		test_tls_x509, test_tls_tcp, test_tls_untrusted, test_tls_psk,
		test_tls_downgrade, test_tls_reconnect, test_tls_trickle,
	};

	test_tls_config();
	tls_setup();
	for (size_t i = 0; i < sizeof(fn) / sizeof(fn[0]); i++) {
		if (tls_skip)
			skip(tls_skip, what[i]);
		else
			fn[i]();
	}
}

int main(void)
{
	struct event *tick;
	struct timeval tv = { 0, 5000 };

	be = pl->backend;

	if (system("nbdkit --version >/dev/null 2>&1") != 0) {
		printf("1..0 # SKIP nbdkit is not installed\n");
		return 77;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-nbd.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	vdu_set_log(log_cb, NULL, VDU_LOG_DEBUG);
	vbe_nbd_complete_hook = on_complete;
	base = event_base_new();
	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &tv);

	test_urls();
	test_open_errors();
	test_memory();
	test_out_of_order();
	test_readonly_and_flags();
	test_split();
	test_errors();
	test_hostile();
	test_reconnect();
	test_timeout();
	test_tls();

	event_free(tick);
	event_base_free(base);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			diag("could not remove %s", tmpdir);
	}
	return tap_done();
}
