// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ceph-admin -- the few monitor operations tests/ceph/ceph-cluster needs,
 * through librados, so that a test cluster comes up without the python
 * `ceph` CLI (absent from the test VM).
 *
 * Usage: ceph-admin [-c CONF] [--id NAME] [--keyring FILE] [--timeout SECS]
 *                   COMMAND [ARGS]
 *
 *   mon-command JSON [INFILE]  send one monitor command (JSON, as the ceph
 *                     CLI would); prints its output buffer on stdout and
 *                     its status string on stderr; INFILE is its input
 *                     buffer.  Exit 1 with the status string on error.
 *   osd-new UUID [ID] [CEPHX-KEY]  allocate an OSD id for UUID (`osd new`;
 *                     ID, a number, asks for that id; the cephx secret when
 *                     given); prints the id
 *   pool-create NAME [PG_NUM]  create a replicated pool with size 1,
 *                     min_size 1 and application rbd (an existing pool
 *                     is fine)
 *   wait-healthy [--up-from EPOCH] [POOL]  wait until every OSD in the
 *                     map is up (with --up-from: came up after osdmap
 *                     EPOCH, i.e. a restarted OSD's new instance, not the
 *                     dead one the monitor has not noticed yet) and a
 *                     write to an object in each of POOL's placement
 *                     groups (default: rbd) has gone through, i.e. the
 *                     pool serves I/O; exit 1 at the timeout
 *   osd-up-count      print the number of OSDs up
 *   osd-epoch         print the osdmap epoch
 *
 * Several commands may be given, separated by "+" arguments: they run in
 * order on one connection (a process start costs seconds in a TCG guest).
 *
 * wait-healthy --epoch-file FILE: first write the osdmap epoch to FILE,
 * then wait as with --up-from that epoch: started before a restarted OSD,
 * it waits for the new instance without a race.
 *
 * --timeout bounds connecting and wait-healthy (default 60 s).
 * Exit: 0 ok, 1 failure (one line on stderr), 2 usage.
 */
#include <errno.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <rados/librados.h>

static const char *prog = "ceph-admin";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr,
		"usage: %s [-c CONF] [--id NAME] [--keyring FILE] [--timeout SECS] COMMAND [ARGS]\n"
		"  mon-command JSON [INFILE] | osd-new UUID [ID] [CEPHX-KEY] | pool-create NAME [PG_NUM]\n"
		"  | wait-healthy [--up-from EPOCH | --epoch-file FILE] [POOL] | osd-up-count | osd-epoch\n"
		"  (several commands: separated by '+')\n", prog);
	exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static rados_t cluster;

/* One monitor command.  Returns librados' result; *out (when asked for)
 * gets the NUL-terminated output buffer, *status the status string. */
static int mon_cmd(const char *json, const char *inbuf, size_t inlen,
		   char **out, char **status)
{
	const char *cmd[1] = { json };
	char *ob = NULL, *os = NULL;
	size_t obl = 0, osl = 0;
	int r;

	r = rados_mon_command(cluster, cmd, 1, inbuf, inlen, &ob, &obl, &os, &osl);
	if (out) {
		*out = malloc(obl + 1);
		if (!*out)
			die("out of memory");
		if (obl)
			memcpy(*out, ob, obl);
		(*out)[obl] = '\0';
	}
	if (status) {
		*status = malloc(osl + 1);
		if (!*status)
			die("out of memory");
		if (osl)
			memcpy(*status, os, osl);
		(*status)[osl] = '\0';
	}
	rados_buffer_free(ob);
	rados_buffer_free(os);
	return r;
}

/* A command that must succeed; its output, to be freed. */
static char *mon_cmd_ok(const char *json)
{
	char *out, *status;
	int r = mon_cmd(json, NULL, 0, &out, &status);

	if (r < 0)
		die("%s: %s (%s)", json, *status ? status : "failed", strerror(-r));
	free(status);
	return out;
}

static json_object *parse(const char *what, const char *text)
{
	json_object *o = json_tokener_parse(text);

	if (!o)
		die("%s: cannot parse the reply: %.200s", what, text);
	return o;
}

static long json_int(json_object *o, const char *key, long dflt)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return dflt;
	return json_object_get_int64(v);
}

/* The JSON string literal of s (no quotes or backslashes expected, but
 * refused rather than mangled). */
static const char *plain(const char *what, const char *s)
{
	if (!*s || strpbrk(s, "\"\\\n"))
		die("bad %s: '%s'", what, s);
	return s;
}

static int cmd_mon_command(int argc, char **argv)
{
	char *out, *status, *in = NULL;
	size_t inlen = 0;
	int r;

	if (argc < 1 || argc > 2)
		usage();
	if (argc == 2) {
		FILE *f = fopen(argv[1], "r");
		long n;

		if (!f)
			die("%s: %s", argv[1], strerror(errno));
		if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
			die("%s: cannot read", argv[1]);
		in = malloc((size_t)n + 1);
		if (!in || fread(in, 1, (size_t)n, f) != (size_t)n)
			die("%s: cannot read", argv[1]);
		inlen = (size_t)n;
		fclose(f);
	}
	r = mon_cmd(argv[0], in, inlen, &out, &status);
	free(in);
	if (r < 0)
		die("%s (%s)", *status ? status : "failed", strerror(-r));
	fputs(out, stdout);
	if (*out && out[strlen(out) - 1] != '\n')
		putchar('\n');
	if (*status)
		fprintf(stderr, "%s\n", status);
	free(out);
	free(status);
	return 0;
}

static int cmd_osd_new(int argc, char **argv)
{
	char json[256], in[256], idfield[32] = "", *out, *status;
	const char *key = NULL;
	json_object *o;
	long id;
	int r;

	if (argc < 1 || argc > 3)
		usage();
	if (argc >= 2 && argv[1][strspn(argv[1], "0123456789")] == '\0') {
		snprintf(idfield, sizeof(idfield), ", \"id\": %ld", atol(argv[1]));
		if (argc == 3)
			key = argv[2];
	} else if (argc == 2) {
		key = argv[1];
	} else if (argc == 3) {
		usage();
	}
	snprintf(json, sizeof(json), "{\"prefix\": \"osd new\", \"uuid\": \"%s\"%s, \"format\": \"json\"}",
		 plain("uuid", argv[0]), idfield);
	if (key)
		snprintf(in, sizeof(in), "{\"cephx_secret\": \"%s\"}", plain("key", key));
	r = mon_cmd(json, key ? in : NULL, key ? strlen(in) : 0, &out, &status);
	if (r < 0)
		die("osd new: %s (%s)", *status ? status : "failed", strerror(-r));
	o = parse("osd new", out);
	id = json_int(o, "osdid", -1);
	if (id < 0)
		die("osd new: no osdid in the reply: %.200s", out);
	printf("%ld\n", id);
	json_object_put(o);
	free(out);
	free(status);
	return 0;
}

static void pool_set(const char *pool, const char *var, const char *val)
{
	char json[512];

	snprintf(json, sizeof(json),
		 "{\"prefix\": \"osd pool set\", \"pool\": \"%s\", \"var\": \"%s\", \"val\": \"%s\","
		 " \"yes_i_really_mean_it\": true}", pool, var, val);
	free(mon_cmd_ok(json));
}

static long pool_get(const char *pool, const char *var)
{
	char json[512], *out;
	json_object *o;
	long v;

	snprintf(json, sizeof(json),
		 "{\"prefix\": \"osd pool get\", \"pool\": \"%s\", \"var\": \"%s\", \"format\": \"json\"}",
		 pool, var);
	out = mon_cmd_ok(json);
	o = parse("osd pool get", out);
	v = json_int(o, var, -1);
	json_object_put(o);
	free(out);
	return v;
}

static int cmd_pool_create(int argc, char **argv)
{
	const char *pool;
	char json[512];
	int r;

	if (argc < 1 || argc > 2)
		usage();
	pool = plain("pool name", argv[0]);
	if (argc == 2) {
		snprintf(json, sizeof(json),
			 "{\"prefix\": \"osd pool create\", \"pool\": \"%s\", \"pg_num\": %d}",
			 pool, atoi(argv[1]));
		free(mon_cmd_ok(json));
	} else {
		r = rados_pool_create(cluster, pool);
		if (r < 0 && r != -EEXIST)
			die("cannot create pool %s: %s", pool, strerror(-r));
	}
	/* each change is an osdmap epoch: only what the defaults left */
	if (pool_get(pool, "size") != 1)
		pool_set(pool, "size", "1");
	if (pool_get(pool, "min_size") != 1)
		pool_set(pool, "min_size", "1");
	snprintf(json, sizeof(json),
		 "{\"prefix\": \"osd pool application enable\", \"pool\": \"%s\", \"app\": \"rbd\","
		 " \"yes_i_really_mean_it\": true}", pool);
	free(mon_cmd_ok(json));
	return 0;
}

/* From `osd dump`: the epoch, the OSDs in the map, those up, and those up
 * since an epoch after up_from; all -1 when the mon cannot say. */
static void osd_counts(long up_from, long *epoch, long *num, long *up, long *fresh)
{
	char *out, *status;
	json_object *o, *osds, *e;
	size_t i, n;

	*epoch = *num = *up = *fresh = -1;
	if (mon_cmd("{\"prefix\": \"osd dump\", \"format\": \"json\"}", NULL, 0, &out, &status) >= 0 &&
	    (o = json_tokener_parse(out))) {
		*epoch = json_int(o, "epoch", -1);
		if (json_object_object_get_ex(o, "osds", &osds) &&
		    json_object_is_type(osds, json_type_array)) {
			n = json_object_array_length(osds);
			*num = (long)n;
			*up = *fresh = 0;
			for (i = 0; i < n; i++) {
				e = json_object_array_get_idx(osds, i);
				if (json_int(e, "up", 0) != 1)
					continue;
				(*up)++;
				if (json_int(e, "up_from", -1) > up_from)
					(*fresh)++;
			}
		}
		json_object_put(o);
	}
	free(out);
	free(status);
}

static int cmd_osd_up_count(int argc, char **argv)
{
	long epoch, num, up, fresh;

	if (argc != 0)
		usage();
	osd_counts(-1, &epoch, &num, &up, &fresh);
	if (up < 0)
		die("osd dump failed");
	printf("%ld\n", up);
	return 0;
}

static int cmd_osd_epoch(int argc, char **argv)
{
	long epoch, num, up, fresh;

	if (argc != 0)
		usage();
	osd_counts(-1, &epoch, &num, &up, &fresh);
	if (epoch < 0)
		die("osd dump failed");
	printf("%ld\n", epoch);
	return 0;
}

/* Ceph's ceph_str_hash_rjenkins (Bob Jenkins' lookup2), the object hash
 * of replicated pools. */
#define RJ_MIX(a, b, c)                                         \
	do {                                                    \
		a -= b; a -= c; a ^= (c >> 13);                 \
		b -= c; b -= a; b ^= (a << 8);                  \
		c -= a; c -= b; c ^= (b >> 13);                 \
		a -= b; a -= c; a ^= (c >> 12);                 \
		b -= c; b -= a; b ^= (a << 16);                 \
		c -= a; c -= b; c ^= (b >> 5);                  \
		a -= b; a -= c; a ^= (c >> 3);                  \
		b -= c; b -= a; b ^= (a << 10);                 \
		c -= a; c -= b; c ^= (b >> 15);                 \
	} while (0)

static uint32_t rjenkins(const char *str, size_t length)
{
	const unsigned char *k = (const unsigned char *)str;
	uint32_t a = 0x9e3779b9, b = a, c = 0;
	size_t len = length;

	while (len >= 12) {
		a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
		b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
		c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
		RJ_MIX(a, b, c);
		k += 12;
		len -= 12;
	}
	c += (uint32_t)length;
	switch (len) {
	case 11: c += (uint32_t)k[10] << 24; /* fall through */
	case 10: c += (uint32_t)k[9] << 16; /* fall through */
	case 9: c += (uint32_t)k[8] << 8; /* fall through */
	case 8: b += (uint32_t)k[7] << 24; /* fall through */
	case 7: b += (uint32_t)k[6] << 16; /* fall through */
	case 6: b += (uint32_t)k[5] << 8; /* fall through */
	case 5: b += k[4]; /* fall through */
	case 4: a += (uint32_t)k[3] << 24; /* fall through */
	case 3: a += (uint32_t)k[2] << 16; /* fall through */
	case 2: a += (uint32_t)k[1] << 8; /* fall through */
	case 1: a += k[0]; /* fall through */
	default: break;
	}
	RJ_MIX(a, b, c);
	return c;
}

/* The placement group of an object: ceph_stable_mod(hash, pg_num, mask). */
static unsigned object_pg(const char *name, unsigned pg_num)
{
	uint32_t h = rjenkins(name, strlen(name));
	unsigned mask = 1;

	while (mask < pg_num)
		mask <<= 1;
	mask -= 1;
	return (h & mask) < pg_num ? (h & mask) : (h & (mask >> 1));
}

static int cmd_wait_healthy(int argc, char **argv, double deadline)
{
	const char *pool = "rbd";
	char json[512], *out, name[64], **probe;
	json_object *o, *v;
	rados_ioctx_t io;
	long up_from = -1, epoch, num, up, fresh, pg_num, covered = 0, i;
	int local_ok = 1;
	int r;

	if (argc >= 2 && !strcmp(argv[0], "--up-from")) {
		up_from = atol(argv[1]);
		argc -= 2;
		argv += 2;
	} else if (argc >= 2 && !strcmp(argv[0], "--epoch-file")) {
		FILE *f;

		osd_counts(-1, &up_from, &num, &up, &fresh);
		if (up_from < 0)
			die("osd dump failed");
		f = fopen(argv[1], "w");
		if (!f || fprintf(f, "%ld\n", up_from) < 0 || fclose(f))
			die("%s: %s", argv[1], strerror(errno));
		argc -= 2;
		argv += 2;
	}
	if (argc > 1)
		usage();
	if (argc == 1)
		pool = plain("pool name", argv[0]);
	for (;;) {
		osd_counts(up_from, &epoch, &num, &up, &fresh);
		if (num > 0 && fresh == num)
			break;
		if (now() > deadline)
			die("timed out: %ld of %ld OSDs up%s", up < 0 ? 0 : up, num < 0 ? 0 : num,
			    up_from >= 0 ? " (after the restart)" : "");
		usleep(100000);
	}
	/* Our writes go to the OSDs of the map we just saw up. */
	r = rados_wait_for_latest_osdmap(cluster);
	if (r < 0)
		die("cannot get the osdmap: %s", strerror(-r));
	snprintf(json, sizeof(json),
		 "{\"prefix\": \"osd pool get\", \"pool\": \"%s\", \"var\": \"pg_num\", \"format\": \"json\"}",
		 pool);
	out = mon_cmd_ok(json);
	o = parse("osd pool get", out);
	pg_num = json_int(o, "pg_num", -1);
	json_object_put(o);
	free(out);
	if (pg_num <= 0 || pg_num > 4096)
		die("pool %s: bad pg_num %ld", pool, pg_num);
	/* One object name per placement group: computed as the OSDs do
	 * (rjenkins, stable mod), checked against `osd map` for the first;
	 * when they disagree (another hash), asked of the monitor for each. */
	probe = calloc((size_t)pg_num, sizeof(*probe));
	if (!probe)
		die("out of memory");
	for (i = 0; covered < pg_num && i < 64 * pg_num; i++) {
		const char *pgid, *dot;
		long seed;

		snprintf(name, sizeof(name), "ceph-admin-probe.%ld", i);
		if (local_ok) {
			seed = (long)object_pg(name, (unsigned)pg_num);
			if (!probe[seed]) {
				probe[seed] = strdup(name);
				covered++;
			}
			if (local_ok == 2)
				continue;
		}
		snprintf(json, sizeof(json),
			 "{\"prefix\": \"osd map\", \"pool\": \"%s\", \"object\": \"%s\", \"format\": \"json\"}",
			 pool, name);
		out = mon_cmd_ok(json);
		o = parse("osd map", out);
		if (!json_object_object_get_ex(o, "pgid", &v) || !(pgid = json_object_get_string(v)) ||
		    !(dot = strchr(pgid, '.')))
			die("osd map: no pgid in the reply: %.200s", out);
		seed = strtol(dot + 1, NULL, 16);
		json_object_put(o);
		free(out);
		if (local_ok) {
			if (probe[seed] && !strcmp(probe[seed], name)) {
				local_ok = 2;	/* the same: no more `osd map` */
				continue;
			}
			/* another hash: start again with the monitor's answers */
			for (long k = 0; k < pg_num; k++) {
				free(probe[k]);
				probe[k] = NULL;
			}
			covered = 0;
			local_ok = 0;
		}
		if (seed >= 0 && seed < pg_num && !probe[seed]) {
			probe[seed] = strdup(name);
			covered++;
		}
	}
	r = rados_ioctx_create(cluster, pool, &io);
	if (r < 0)
		die("pool %s: %s", pool, strerror(-r));
	for (i = 0; i < pg_num; i++) {
		if (!probe[i])
			continue;
		for (;;) {
			r = rados_write_full(io, probe[i], "x", 1);
			if (r >= 0)
				break;
			if (now() > deadline)
				die("timed out: a write to pool %s (pg %lx) fails: %s", pool, i, strerror(-r));
			usleep(100000);
		}
		rados_remove(io, probe[i]);
		free(probe[i]);
	}
	free(probe);
	rados_ioctx_destroy(io);
	return 0;
}

static int known(const char *cmd)
{
	static const char *const cmds[] = {
		"mon-command", "osd-new", "pool-create", "wait-healthy", "osd-up-count", "osd-epoch",
	};

	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
		if (!strcmp(cmd, cmds[k]))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	const char *conf = NULL, *id = NULL, *keyring = NULL;
	double timeout = 60, deadline;
	char tmo[32];
	int r, i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];

		if (i + 1 >= argc)
			usage();
		if (!strcmp(a, "-c") || !strcmp(a, "--conf"))
			conf = argv[++i];
		else if (!strcmp(a, "--id") || !strcmp(a, "-i"))
			id = argv[++i];
		else if (!strcmp(a, "--keyring") || !strcmp(a, "-k"))
			keyring = argv[++i];
		else if (!strcmp(a, "--timeout")) {
			timeout = atof(argv[++i]);
			if (timeout <= 0)
				usage();
		} else
			usage();
	}
	if (i >= argc)
		usage();
	for (int j = i; j < argc; j++)
		if ((j == i || !strcmp(argv[j - 1], "+")) && !known(argv[j]))
			usage();
	deadline = now() + timeout;

	r = rados_create(&cluster, id ? id : "admin");
	if (r < 0)
		die("rados_create: %s", strerror(-r));
	r = rados_conf_read_file(cluster, conf);
	if (r < 0)
		die("cannot read %s: %s", conf ? conf : "the default ceph.conf", strerror(-r));
	if (keyring && (r = rados_conf_set(cluster, "keyring", keyring)) < 0)
		die("keyring %s: %s", keyring, strerror(-r));
	/* Our own connection only: a dead cluster fails within --timeout. */
	snprintf(tmo, sizeof(tmo), "%d", (int)timeout + 1);
	rados_conf_set(cluster, "client_mount_timeout", tmo);
	r = rados_connect(cluster);
	if (r < 0)
		die("cannot connect to the cluster%s%s: %s", conf ? " of " : "", conf ? conf : "",
		    strerror(-r));

	r = 0;
	while (i < argc && r == 0) {
		const char *cmd = argv[i];
		int n = 0;

		while (i + 1 + n < argc && strcmp(argv[i + 1 + n], "+"))
			n++;
		argv[i + 1 + n] = NULL;	/* argv[argc] is NULL already */
		if (!strcmp(cmd, "mon-command"))
			r = cmd_mon_command(n, argv + i + 1);
		else if (!strcmp(cmd, "osd-new"))
			r = cmd_osd_new(n, argv + i + 1);
		else if (!strcmp(cmd, "pool-create"))
			r = cmd_pool_create(n, argv + i + 1);
		else if (!strcmp(cmd, "wait-healthy"))
			r = cmd_wait_healthy(n, argv + i + 1, deadline);
		else if (!strcmp(cmd, "osd-up-count"))
			r = cmd_osd_up_count(n, argv + i + 1);
		else if (!strcmp(cmd, "osd-epoch"))
			r = cmd_osd_epoch(n, argv + i + 1);
		else
			r = 2;
		i += n + 2;
	}
	rados_shutdown(cluster);
	return r;
}
