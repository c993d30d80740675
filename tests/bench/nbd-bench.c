/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The nbd backend alone against a real NBD server: no device, no ring.
 * The backend is opened as a front end opens it (its option checks, then
 * open), one queue runs on a private event loop, and requests come back
 * through the backend's completion seam (vbe_nbd_complete_hook), as in
 * tests/test-nbd.c.  QD requests stay in flight; the completed ones of
 * each loop iteration are submitted again as one batch (submit, then one
 * unplug), as the engine does.  Prints one line of key=value figures for
 * tests/bench/bench-nbd-tls.
 *
 * usage: nbd-bench -u URL [-o KEY=VALUE]... [-m randread|read] [-b BYTES]
 *                  [-q QD] [-t SECS] [-w SECS] [-f]
 *   -o  more backend keys (tls-certificates=DIR, connections=N, ...)
 *   -m  randread: random BYTES-aligned offsets (default); read: sequential
 *   -b  request size (default 4096); -q queue depth (default 32)
 *   -t  measured seconds (default 5), after -w SECS of warm-up (default 1)
 *   -f  first write the whole export once (1 MiB writes, QD 8), so the
 *       server holds real data
 * Output: iops= mibs= lat_us= cpu_pct= cpu_us_per_io= (CPU: this process,
 * i.e. the client, user + system over the measured time).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <event2/event.h>

#include "backends.h"
#include "nbd_proto.h"

#define MAXQD 256
#define MAXPARAMS 16

struct breq {
	struct vdu_io io;
	struct iovec iov;
	struct breq *next_done;
	uint64_t t_submit;
	int result;
	unsigned char priv[] __attribute__((aligned(16)));
};

static const struct vdu_backend *be;
static struct breq *done_head;
static unsigned ndone_pending;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void on_complete(struct vdu_io *io, int result)
{
	struct breq *r = (struct breq *)((char *)io - offsetof(struct breq, io));

	r->result = result;
	r->next_done = done_head;
	done_head = r;
	ndone_pending++;
}

static void log_cb(void *opaque, int level, const char *msg)
{
	fprintf(stderr, "nbd-bench: %s\n", msg);
}

static void die(const char *m)
{
	fprintf(stderr, "nbd-bench: %s\n", m);
	exit(1);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

int main(int argc, char **argv)
{
	struct vdu_param p[MAXPARAMS];
	struct vdu_backend_info info;
	struct event_base *base;
	struct event *tick;
	struct timeval tv = { 0, 100000 };
	struct breq *reqs[MAXQD];
	const char *url = NULL, *mode = "randread";
	unsigned qd = 32, secs = 5, warm = 1, np = 0;
	uint64_t bs = 4096, seq = 0, seed = 0x9e3779b97f4a7c15ULL, blocks;
	uint64_t n = 0, lat_sum = 0, t0 = 0, c0 = 0, t_end, t_meas;
	bool fill = false, measuring = false;
	char err[512];
	void *h, *q;
	int c;

	while ((c = getopt(argc, argv, "u:o:m:b:q:t:w:f")) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'o': {
			char *eq = strchr(optarg, '=');

			if (!eq || np + 1 >= MAXPARAMS)
				die("-o KEY=VALUE");
			*eq = 0;
			p[np].key = optarg;
			p[np++].value = eq + 1;
			break;
		}
		case 'm':
			mode = optarg;
			break;
		case 'b':
			bs = strtoull(optarg, NULL, 0);
			break;
		case 'q':
			qd = atoi(optarg);
			break;
		case 't':
			secs = atoi(optarg);
			break;
		case 'w':
			warm = atoi(optarg);
			break;
		case 'f':
			fill = true;
			break;
		default:
			die("usage: nbd-bench -u URL [-o KEY=VALUE]... [-m randread|read] "
			    "[-b BYTES] [-q QD] [-t SECS] [-w SECS] [-f]");
		}
	}
	if (!url || !qd || qd > MAXQD || !bs || bs % 512 || !secs ||
	    (strcmp(mode, "randread") && strcmp(mode, "read")))
		die("bad arguments (-h for usage)");
	p[np].key = "url";
	p[np++].value = url;

	vdu_set_log(log_cb, NULL, VDU_LOG_INFO);
	vbe_nbd_complete_hook = on_complete;
	be = vbe_nbd.backend;
	if (vdu_plugin_check(&vbe_nbd, p, np, err, sizeof(err)) < 0)
		die(err);
	if (vbe_nbd.open(p, np, &h) < 0)
		die("open failed");
	be->get_info(h, &info);
	if (info.size < bs)
		die("export smaller than one request");
	blocks = info.size / bs;
	base = event_base_new();
	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &tv);
	if (be->queue_open(h, 0, base, &q) < 0)
		die("queue_open failed");

	if (fill) {
		enum { FBS = 1 << 20, FQD = 8 };
		uint64_t off = 0, left = info.size;
		unsigned inflight = 0;
		char *buf = malloc(FBS);

		memset(buf, 0x5a, FBS);
		for (int i = 0; i < FQD; i++) {
			reqs[i] = calloc(1, sizeof(struct breq) + be->io_priv_size);
			reqs[i]->io.priv = reqs[i]->priv;
			reqs[i]->next_done = done_head;
			done_head = reqs[i];
		}
		while (left || inflight) {
			struct breq *r = done_head;

			done_head = NULL;
			for (struct breq *next; r; r = next) {
				next = r->next_done;
				if (r->io.op == VDU_IO_WRITE) {
					if (r->result)
						die("fill: a write failed");
					inflight--;
				}
				if (!left)
					continue;
				r->io.op = VDU_IO_WRITE;
				r->io.offset = off;
				r->io.len = left < FBS ? left : FBS;
				r->iov.iov_base = buf;
				r->iov.iov_len = r->io.len;
				r->io.iov = &r->iov;
				r->io.iovcnt = 1;
				off += r->io.len;
				left -= r->io.len;
				inflight++;
				be->submit(q, &r->io);
			}
			be->unplug(q);
			if (inflight)
				event_base_loop(base, EVLOOP_ONCE);
		}
		for (int i = 0; i < FQD; i++)
			free(reqs[i]);
		free(buf);
		done_head = NULL;
	}

	for (unsigned i = 0; i < qd; i++) {
		struct breq *r = calloc(1, sizeof(struct breq) + be->io_priv_size);

		if (!r || posix_memalign(&r->iov.iov_base, 4096, bs))
			die("out of memory");
		r->io.op = VDU_IO_READ;
		r->io.len = bs;
		r->io.iov = &r->iov;
		r->io.iovcnt = 1;
		r->io.priv = r->priv;
		r->iov.iov_len = bs;
		r->next_done = done_head;
		r->t_submit = 0;
		done_head = r;
		reqs[i] = r;
	}
	t_meas = now_us() + (uint64_t)warm * 1000000;
	t_end = t_meas + (uint64_t)secs * 1000000;
	for (;;) {
		uint64_t now = now_us();
		struct breq *r = done_head;

		if (!measuring && now >= t_meas) {
			measuring = true;
			t0 = now;
			c0 = cpu_us();
		}
		if (now >= t_end)
			break;
		done_head = NULL;
		for (struct breq *next; r; r = next) {
			next = r->next_done;
			if (r->t_submit) {
				if (r->result)
					die("a read failed");
				if (measuring) {
					n++;
					lat_sum += now - r->t_submit;
				}
			}
			r->io.offset = (!strcmp(mode, "read") ? seq++ : rnd(&seed)) % blocks * bs;
			r->t_submit = now;
			be->submit(q, &r->io);
		}
		be->unplug(q);
		event_base_loop(base, EVLOOP_ONCE);
	}
	{
		double el = (now_us() - t0) / 1e6, cpu = (cpu_us() - c0) / 1e6;

		printf("iops=%.0f mibs=%.1f lat_us=%.1f cpu_pct=%.0f cpu_us_per_io=%.2f\n",
		       n / el, n * (double)bs / el / (1 << 20), n ? (double)lat_sum / n : 0,
		       100 * cpu / el, n ? cpu * 1e6 / n : 0);
	}
	/* Let the requests in flight finish: closing under them is allowed,
	 * but nbdkit 1.32 can crash on it (raw_send_socket assertion). */
	{
		unsigned back = 0;
		uint64_t until = now_us() + 10000000;

		for (struct breq *r = done_head; r; r = r->next_done)
			back++;
		while (back < qd && now_us() < until) {
			unsigned before = ndone_pending;

			event_base_loop(base, EVLOOP_ONCE);
			back += ndone_pending - before;
		}
	}
	be->queue_close(q);
	vbe_nbd.close(h);
	for (unsigned i = 0; i < qd; i++) {
		free(reqs[i]->iov.iov_base);
		free(reqs[i]);
	}
	event_free(tick);
	event_base_free(base);
	return 0;
}
