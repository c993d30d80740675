/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash recovery on the host: a device object is dropped as a killed
 * daemon would leave it (vdu_dev_abandon: no reset, no answer, inflight
 * logs as they are) in the middle of its work -- requests taken and still
 * with the backend, some completed and published, some completed but not
 * yet published, some posted but never taken -- and a new object
 * reconnects over the same rings (sim_reattach -> vdu_dev_reconnect).
 * Every request the driver waits for must complete exactly once (the
 * simulated driver counts a used id it did not post, or already got
 * back, as bad), with its data on the disk.  Split and packed rings, one
 * and two queues, plain and indirect chains, ring indexes about to wrap,
 * crashes repeated.
 */
#define BLKTEST_DEV_FLAGS 0
#include "blktest.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define MAXREQ 512
#define PER_BATCH 5   /* requests per queue and batch (3 descriptors each) */

struct scen {
	const char *name;
	bool packed, indirect;
	unsigned nq, num;
	uint16_t start;   /* split: avail index; packed: ring position */
	bool wrap;        /* packed: wrap counter at the start */
	int crashes;
};

struct rq {
	struct sim_blk b;
	unsigned q;
	uint64_t sector;
	uint32_t seed;
	int done;         /* completions the driver saw */
};

struct run {
	const struct scen *sc;
	struct event_base *base;
	struct ram ram;
	struct sim *sim;
	struct vdu_dev *dev;
	char state[300];
	uint64_t feat;
	struct rq r[MAXREQ];
	unsigned n;
	unsigned misses;  /* used ids matching no outstanding request */
};

static char tmpdir[256];

static int dev_open(struct run *t, bool reconnect)
{
	struct vdu_dev_opts o = { .struct_size = sizeof(o), .name = "rectest" };
	int r;

	o.num_queues = t->sc->nq;
	o.queue_size = t->sc->num;
	o.state_path = t->state;
	o.flags = t->sc->packed ? VDU_DEV_F_RING_PACKED : 0;
	r = vdu_dev_new(&o, &ram_backend, &t->ram, t->base, &t->dev);
	if (r < 0)
		return r;
	return reconnect ? sim_reattach(t->sim, t->dev) : sim_attach(t->sim, t->dev);
}

/* Post one write of 4 KiB (its own sector and pattern) on queue q. */
static bool post(struct run *t, unsigned q)
{
	struct rq *x = &t->r[t->n];
	uint8_t data[4096];
	uint64_t iova;

	if (t->n == MAXREQ)
		return false;
	memset(x, 0, sizeof(*x));
	x->q = q;
	x->sector = (uint64_t)t->n * 8;
	x->seed = t->n * 31 + 7;
	pattern(data, sizeof(data), x->seed);
	iova = sim_alloc(t->sim, sizeof(data));
	sim_write(t->sim, iova, data, sizeof(data));
	x->b.type = VIRTIO_BLK_T_OUT;
	x->b.sector = x->sector;
	x->b.flags = t->sc->indirect ? SIM_BLK_INDIRECT : 0;
	x->b.seg[0].addr = iova;
	x->b.seg[0].len = sizeof(data);
	x->b.nseg = 1;
	if (sim_blk_post(t->sim, q, &x->b) < 0)
		return false;
	t->n++;
	return true;
}

/* The driver takes what the device returned. */
static void take_used(struct run *t)
{
	for (unsigned q = 0; q < t->sc->nq; q++) {
		uint32_t id, len;

		while (sim_get_used(t->sim, q, &id, &len)) {
			struct rq *hit = NULL;

			for (unsigned i = 0; i < t->n; i++)
				if (t->r[i].q == q && !t->r[i].done &&
				    (uint32_t)t->r[i].b.head == id) {
					hit = &t->r[i];
					break;
				}
			if (hit)
				hit->done++;
			else
				t->misses++;
		}
	}
}

static void kick_all(struct run *t)
{
	for (unsigned q = 0; q < t->sc->nq; q++)
		sim_kick(t->sim, q);
}

static unsigned outstanding(const struct run *t)
{
	unsigned n = 0;

	for (unsigned i = 0; i < t->n; i++)
		n += !t->r[i].done;
	return n;
}

/* Drive the device to a crash: batches posted and taken, some requests
 * completed and collected, some completed and published but not collected,
 * some completed but not published, some with the backend, some posted
 * and never taken. */
static void work_then_crash(struct run *t, int round)
{
	for (int batch = 0; batch < 3; batch++) {
		for (unsigned q = 0; q < t->sc->nq; q++)
			for (int k = 0; k < PER_BATCH; k++)
				post(t, q);
		kick_all(t);
		/* complete every other pending request, in reverse order */
		for (int i = (int)t->ram.npending - 1; i >= 0; i -= 2)
			ram_complete(&t->ram, (unsigned)i, 0);
		sim_run(t->sim);
		if (batch == 0)
			take_used(t);
	}
	/* completed, not yet published: no loop turn before the crash */
	if (t->ram.npending)
		ram_complete(&t->ram, 0, 0);
	/* posted, never taken */
	for (unsigned q = 0; q < t->sc->nq; q++)
		post(t, q);
	diag("%s: crash %d with %u requests with the backend, %u outstanding",
	     t->sc->name, round, t->ram.npending, outstanding(t));
	/* The backend dies with the process: its requests are lost. */
	t->ram.npending = 0;
	vdu_dev_abandon(t->dev);
	t->dev = NULL;
}

static void scenario(const struct scen *sc)
{
	struct run *t = calloc(1, sizeof(*t));
	unsigned bad_data = 0, twice = 0;
	int r;

	t->sc = sc;
	t->base = event_base_new();
	t->ram.size = MAXREQ * 4096;
	t->ram.data = calloc(1, t->ram.size);
	t->ram.caps = ALL_CAPS;
	t->ram.mode = RAM_DEFER;
	snprintf(t->state, sizeof(t->state), "%s/%s", tmpdir, sc->name);
	t->sim = sim_new(t->base);
	if (!ok(t->sim && sim_default_layout(t->sim) == 0 && dev_open(t, false) == 0,
		"%s: device up", sc->name))
		goto out;
	{
		struct vdu_dev_info info;

		vdu_dev_get_info(t->dev, &info);
		t->feat = info.features_offered & ~F(VIRTIO_RING_F_INDIRECT_DESC);
		if (sc->indirect)
			t->feat |= F(VIRTIO_RING_F_INDIRECT_DESC);
		if (!sc->packed)
			t->feat &= ~F(VIRTIO_F_RING_PACKED);
	}
	r = sc->packed ? sim_init_packed(t->sim, t->feat, sc->nq, sc->num, sc->start, sc->wrap)
		       : sim_init(t->sim, t->feat, sc->nq, sc->num, sc->start);
	if (!is_int(r, RES_OK, "%s: driver ready", sc->name))
		goto out;
	for (int c = 1; c <= sc->crashes; c++) {
		work_then_crash(t, c);
		r = dev_open(t, true);
		if (!is_int(r, 0, "%s: crash %d: a new device object reconnects", sc->name, c))
			goto out;
		/* The resubmitted requests and the untaken ones reach the new
		 * object's backend; answer until nothing is outstanding. */
		for (int spin = 0; spin < 50 && outstanding(t); spin++) {
			while (t->ram.npending)
				ram_complete(&t->ram, 0, 0);
			kick_all(t);
			sim_run(t->sim);
			take_used(t);
		}
		is_int(outstanding(t), 0, "%s: crash %d: every request completed", sc->name, c);
		is_int(t->misses + t->sim->bad_used, 0,
		       "%s: crash %d: nothing completed twice or unasked", sc->name, c);
		for (unsigned q = 0; q < sc->nq; q++) {
			struct vdu_queue_stats st;

			vdu_dev_queue_stats(t->dev, q, &st);
			ok(!st.broken && st.enabled, "%s: crash %d: queue %u serving, not broken",
			   sc->name, c, q);
		}
	}
	for (unsigned i = 0; i < t->n; i++) {
		uint8_t want[4096];

		twice += t->r[i].done > 1;
		pattern(want, sizeof(want), t->r[i].seed);
		if (memcmp(t->ram.data + t->r[i].sector * SECTOR, want, sizeof(want)) ||
		    sim_blk_status(t->sim, &t->r[i].b) != ST_OK)
			bad_data++;
	}
	ok(twice == 0 && bad_data == 0,
	   "%s: %u requests, each completed once, OK, data on the disk (%u twice, %u bad)",
	   sc->name, t->n, twice, bad_data);
	is_int(t->ram.bad, 0, "%s: the backend saw only well-formed I/O", sc->name);
	/* The ring goes on after the recoveries. */
	for (unsigned q = 0; q < sc->nq; q++)
		post(t, q);
	kick_all(t);
	while (t->ram.npending)
		ram_complete(&t->ram, 0, 0);
	sim_run(t->sim);
	take_used(t);
	ok(outstanding(t) == 0 && t->misses == 0 && t->sim->bad_used == 0,
	   "%s: requests after the last recovery complete", sc->name);
	is_int(lib_errors, 0, "%s: no library errors", sc->name);
out:
	t->ram.npending = 0;
	vdu_dev_free(t->dev);
	sim_free(t->sim);
	event_base_free(t->base);
	free(t->ram.data);
	for (unsigned q = 0; q < sc->nq; q++) {
		char p[330];

		snprintf(p, sizeof(p), "%s.q%u.inflight", t->state, q);
		unlink(p);
	}
	free(t);
	lib_errors = 0;
}

/* A log that is not this device's (truncated, another magic) is refused
 * with -ESTALE before anything is served. */
static void stale_logs(void)
{
	static const struct scen sc = { "stale", false, false, 1, 32, 0, false, 1 };

	for (int how = 0; how < 2; how++) {
		struct run *t = calloc(1, sizeof(*t));
		char p[330];
		int fd, r = -1;

		t->sc = &sc;
		t->base = event_base_new();
		t->ram.size = MAXREQ * 4096;
		t->ram.data = calloc(1, t->ram.size);
		t->ram.caps = ALL_CAPS;
		t->ram.mode = RAM_DEFER;
		snprintf(t->state, sizeof(t->state), "%s/stale", tmpdir);
		snprintf(p, sizeof(p), "%s.q0.inflight", t->state);
		t->sim = sim_new(t->base);
		if (sim_default_layout(t->sim) == 0 && dev_open(t, false) == 0) {
			if (sim_init(t->sim, F(VIRTIO_F_VERSION_1), 1, 32, 0) == RES_OK) {
				work_then_crash(t, 1);
				fd = open(p, O_RDWR | O_CLOEXEC);
				if (how == 0)
					r = ftruncate(fd, 100);
				else
					r = pwrite(fd, "junk", 4, 0) == 4 ? 0 : -1;
				close(fd);
				if (r == 0) {
					unsigned before = lib_errors;

					r = dev_open(t, true);
					lib_errors = before;
				}
			}
		}
		is_int(r, -ESTALE, "a %s log: reconnect says -ESTALE",
		       how ? "corrupted" : "truncated");
		t->ram.npending = 0;
		vdu_dev_free(t->dev);
		sim_free(t->sim);
		event_base_free(t->base);
		free(t->ram.data);
		unlink(p);
		free(t);
	}
}

/* The storage grew while no daemon served it (or the dead one was in
 * the middle of a resize): the reconnecting object says the size it
 * finds, and the driver gets a config interrupt. */
static void resized_while_dead(void)
{
	static const struct scen sc = { "resized", false, false, 1, 32, 0, false, 1 };
	struct run *t = calloc(1, sizeof(*t));
	unsigned irqs = 0;
	uint8_t *p;
	char path[330];

	t->sc = &sc;
	t->base = event_base_new();
	t->ram.size = MAXREQ * 4096;
	t->ram.data = calloc(1, t->ram.size);
	t->ram.caps = ALL_CAPS;
	t->ram.mode = RAM_DEFER;
	snprintf(t->state, sizeof(t->state), "%s/resized", tmpdir);
	t->sim = sim_new(t->base);
	if (!ok(t->sim && sim_default_layout(t->sim) == 0 && dev_open(t, false) == 0 &&
		sim_init(t->sim, F(VIRTIO_F_VERSION_1), 1, 32, 0) == RES_OK,
		"resized: device up"))
		goto out;
	work_then_crash(t, 1);
	irqs = t->sim->config_irqs;
	p = realloc(t->ram.data, 2 * t->ram.size);
	if (!p)
		goto out;
	memset(p + t->ram.size, 0, t->ram.size);
	t->ram.data = p;
	t->ram.size *= 2;
	is_int(dev_open(t, true), 0, "resized: a new object reconnects");
	is_int(sim_config_capacity(t->sim), t->ram.size / SECTOR,
	       "resized: the driver's config space has the storage's new size");
	is_int(t->sim->config_irqs, irqs + 1, "resized: the driver got a config interrupt");
	/* The resubmitted requests finish before the object goes. */
	for (int spin = 0; spin < 50 && outstanding(t); spin++) {
		while (t->ram.npending)
			ram_complete(&t->ram, 0, 0);
		kick_all(t);
		sim_run(t->sim);
		take_used(t);
	}
	is_int(outstanding(t), 0, "resized: every request completed");
out:
	t->ram.npending = 0;
	vdu_dev_free(t->dev);
	sim_free(t->sim);
	event_base_free(t->base);
	free(t->ram.data);
	snprintf(path, sizeof(path), "%s.q0.inflight", t->state);
	unlink(path);
	free(t);
	lib_errors = 0;
}

int main(void)
{
	static const struct scen sc[] = {
		{ "split 1q", false, false, 1, 32, 0, false, 3 },
		{ "split 1q wrap", false, false, 1, 32, 65530, false, 3 },
		{ "split 2q indirect wrap", false, true, 2, 32, 65520, false, 3 },
		{ "split 2q", false, false, 2, 64, 100, false, 2 },
		{ "packed 1q", true, false, 1, 32, 0, true, 3 },
		{ "packed 1q wrap", true, false, 1, 32, 30, true, 3 },
		{ "packed 2q indirect", true, true, 2, 32, 5, false, 3 },
		{ "packed 2q wrap", true, false, 2, 64, 60, true, 2 },
	};

	snprintf(tmpdir, sizeof(tmpdir), "%s/vdu-test-recover.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	vdu_set_log(log_cb, NULL, VDU_LOG_DEBUG);
	for (unsigned i = 0; i < VDU_ARRAY_SIZE(sc); i++)
		scenario(&sc[i]);
	stale_logs();
	resized_while_dead();
	rmdir(tmpdir);
	return tap_done();
}
