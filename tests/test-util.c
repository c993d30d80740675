/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdu_parse_size, vdu_name_valid, the iov helpers and the argument checks
 * of vdu_set_irq_affinity_by_name. */
#include <limits.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "tap.h"

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = 0xdeadbeef;
	int r = vdu_parse_size(s, &v);

	ok(r == 0 && v == want, "parse_size(\"%s\") = %llu (r=%d, got %llu)", s,
	   (unsigned long long)want, r, (unsigned long long)v);
}

static void size_bad(const char *s, int want_err)
{
	uint64_t v = 0xdeadbeef;
	int r = vdu_parse_size(s, &v);

	ok(r == want_err && v == 0xdeadbeef, "parse_size(\"%s\") fails with %d (r=%d)",
	   s ? s : "(null)", want_err, r);
}

static void name(const char *n, int valid, const char *desc)
{
	ok((vdu_name_valid(n) == 0) == valid && (valid || vdu_name_valid(n) == -EINVAL),
	   "name_valid: %s %s", desc, valid ? "accepted" : "rejected");
}

/* The adaptive poll window's rule: twice the recent gaps, closed when idle. */
static void poll_window(void)
{
	unsigned avg = 0, w = 0;

	is_int(vdu_poll_window(&avg, 500, 1000), 0, "poll: gap over max: stays closed");
	is_int(vdu_poll_window(&avg, 500, 100), 200, "poll: first gap: twice it");
	is_int(avg, 100, "poll: ... which starts the average");
	is_int(vdu_poll_window(&avg, 500, 300), 300,
	       "poll: a longer gap moves the average by a quarter (150): window 300");
	is_int(vdu_poll_window(&avg, 500, 490), 470, "poll: 235 average: window 470");
	is_int(vdu_poll_window(&avg, 500, 500), 500, "poll: clamped to max");
	is_int(vdu_poll_window(&avg, 500, 501), 0, "poll: one gap over max: closed");
	is_int(avg, 0, "poll: ... and the average forgotten");
	is_int(vdu_poll_window(&avg, 500, 40), 80, "poll: after idle: the new gap alone");
	is_int(vdu_poll_window(&avg, 500, 0), 60, "poll: back-to-back batches shrink it");
	avg = 0;
	is_int(vdu_poll_window(&avg, 500, 1), VDU_POLL_WIN_MIN,
	       "poll: at least %u us", VDU_POLL_WIN_MIN);
	/* A steady stream converges on twice its gap. */
	avg = 0;
	vdu_poll_window(&avg, 500, 400);
	for (int i = 0; i < 40; i++)
		w = vdu_poll_window(&avg, 500, 30);
	ok(w >= 60 && w <= 66, "poll: 30 us gaps after 400: window %u, about 60", w);
	avg = 0;
	is_int(vdu_poll_window(&avg, 0, 0), 0, "poll: max 0: off");
	avg = 0;
	vdu_poll_window(&avg, UINT_MAX, 4000000000u);
	ok(vdu_poll_window(&avg, UINT_MAX, 4000000000u) == UINT_MAX && avg == 4000000000u,
	   "poll: a huge max does not overflow");
}

/* ------------------------------------------------ plugin option checks */

static int t_open(const struct vdu_param *p, size_t n, void **h)
{
	return 0;
}

static int t_get_info(void *h, struct vdu_backend_info *info)
{
	return 0;
}

static void t_submit(void *q, struct vdu_io *io)
{
}

static int t_check(const struct vdu_param *p, size_t n, char *err, size_t len)
{
	const char *mode = vdu_param_get(p, n, "mode");

	if (mode && !strcmp(mode, "b") && !vdu_param_get(p, n, "count")) {
		snprintf(err, len, "t: mode=b needs count=N");
		return -EINVAL;
	}
	return 0;
}

static const struct vdu_backend t_backend = {
	VDU_BACKEND_INIT,
	.get_info = t_get_info,
	.submit = t_submit,
};

static const struct vdu_option t_options[] = {
	{ "path", VDU_OPT_STRING, "FILE", NULL, "a file", VDU_OPT_F_REQUIRED, 0, 0 },
	{ "size", VDU_OPT_SIZE, "SIZE", NULL, "a size", 0, 4096, 1 << 20 },
	{ "count", VDU_OPT_UINT, "N", "1", "a count", 0, 1, 16 },
	{ "on", VDU_OPT_BOOL, "on|off", "off", "a switch", 0, 0, 0 },
	{ "mode", VDU_OPT_CHOICE, "a|b|cc", "a", "a mode", 0, 0, 0 },
	{ 0 },
};

static const struct vdu_plugin t_plugin = {
	VDU_PLUGIN_INIT,
	.name = "t",
	.description = "test",
	.options = t_options,
	.backend = &t_backend,
	.open = t_open,
	.check = t_check,
};

/* check(k1=v1, k2=v2) gives want, and err contains text. */
static void check_params(const struct vdu_plugin *pl, const char *k1,
			 const char *v1, const char *k2, const char *v2,
			 int want, const char *text)
{
	struct vdu_param p[3] = { { "path", "/x" } };
	char err[256] = "";
	size_t n = 1;
	int r;

	if (k1)
		p[n++] = (struct vdu_param){ k1, v1 };
	if (k2)
		p[n++] = (struct vdu_param){ k2, v2 };
	r = vdu_plugin_check(pl, p, n, err, sizeof(err));
	ok(r == want && (!text || strstr(err, text)) && !strchr(err, '\n'),
	   "plugin_check %s=%s %s=%s: %d (r=%d, '%s')", k1 ? k1 : "-",
	   v1 ? v1 : "-", k2 ? k2 : "-", v2 ? v2 : "-", want, r, err);
}

static void plugin_checks(void)
{
	struct vdu_plugin pl = t_plugin;
	struct vdu_backend be = t_backend;
	char err[128];

	check_params(&t_plugin, NULL, NULL, NULL, NULL, 0, NULL);
	check_params(&t_plugin, "size", "64K", "count", "16", 0, NULL);
	check_params(&t_plugin, "bogus", "1", NULL, NULL, -EINVAL,
		     "unknown key 'bogus': the t backend takes path, size, count, on, mode");
	check_params(&t_plugin, "size", "1", NULL, NULL, -EINVAL, "size=1 is out of range");
	check_params(&t_plugin, "size", "2M", NULL, NULL, -EINVAL, "out of range");
	check_params(&t_plugin, "size", "lots", NULL, NULL, -EINVAL, "size=lots is not a size");
	check_params(&t_plugin, "count", "0", NULL, NULL, -EINVAL, "count=0 is out of range");
	check_params(&t_plugin, "count", "-1", NULL, NULL, -EINVAL, "count=-1 is not a number");
	check_params(&t_plugin, "count", "1x", NULL, NULL, -EINVAL, "is not a number");
	check_params(&t_plugin, "on", "maybe", NULL, NULL, -EINVAL, "use on=on or on=off");
	check_params(&t_plugin, "on", "yes", NULL, NULL, 0, NULL);
	check_params(&t_plugin, "mode", "c", NULL, NULL, -EINVAL, "mode=c: use one of a|b|cc");
	check_params(&t_plugin, "mode", "cc", NULL, NULL, 0, NULL);
	check_params(&t_plugin, "mode", "", NULL, NULL, -EINVAL, "use one of");
	check_params(&t_plugin, "count", "2", "count", "3", -EINVAL, "count given twice");
	check_params(&t_plugin, "path", "/y", NULL, NULL, -EINVAL, "path given twice");
	check_params(&t_plugin, "mode", "b", NULL, NULL, -EINVAL, "t: mode=b needs count=N");
	check_params(&t_plugin, "mode", "b", "count", "2", 0, NULL);
	is_int(vdu_plugin_check(&t_plugin, NULL, 0, err, sizeof(err)), -EINVAL,
	       "plugin_check: a required key missing");
	ok(strstr(err, "t: path is required: give path=FILE") != NULL,
	   "plugin_check: ... says which and how ('%s')", err);

	/* A descriptor from an older header: no check() read. */
	pl.struct_size = offsetof(struct vdu_plugin, flags);
	check_params(&pl, "mode", "b", NULL, NULL, 0, NULL);
	pl = t_plugin;
	pl.api_version = VDU_BACKEND_API_VERSION + 1;
	check_params(&pl, NULL, NULL, NULL, NULL, -EPROTO, "unusable plugin descriptor");
	pl = t_plugin;
	pl.struct_size = 8;
	check_params(&pl, NULL, NULL, NULL, NULL, -EPROTO, NULL);
	pl = t_plugin;
	be.api_version = 1;
	pl.backend = &be;
	check_params(&pl, NULL, NULL, NULL, NULL, -EPROTO, "unusable backend struct");
	be = t_backend;
	be.submit = NULL;
	check_params(&pl, NULL, NULL, NULL, NULL, -EPROTO, NULL);

	is_int(vdu_parse_bool("on"), 1, "parse_bool on");
	is_int(vdu_parse_bool("false"), 0, "parse_bool false");
	is_int(vdu_parse_bool("2"), -EINVAL, "parse_bool 2");
	is_int(vdu_parse_bool(NULL), -EINVAL, "parse_bool NULL");
	ok(vdu_param_get(NULL, 0, "x") == NULL, "param_get on nothing");
}

int main(void)
{
	char buf[300];

	poll_window();
	plugin_checks();
	size_ok("0", 0);
	size_ok("1", 1);
	size_ok("512", 512);
	size_ok("4K", 4096);
	size_ok("4k", 4096);
	size_ok("1M", 1ULL << 20);
	size_ok("1G", 1ULL << 30);
	size_ok("1T", 1ULL << 40);
	size_ok("1GiB", 1ULL << 30);
	size_ok("2GB", 2ULL << 30);
	size_ok("16777215T", 16777215ULL << 40);
	size_ok("18446744073709551615", UINT64_MAX);
	size_bad("", -EINVAL);
	size_bad(NULL, -EINVAL);
	size_bad("-1", -EINVAL);
	size_bad("+1", -EINVAL);
	size_bad(" 1", -EINVAL);
	size_bad("1X", -EINVAL);
	size_bad("K", -EINVAL);
	size_bad("1.5G", -EINVAL);
	size_bad("1G ", -EINVAL);
	size_bad("1KK", -EINVAL);
	size_bad("1Gi", -EINVAL);
	size_bad("1iB", -EINVAL);
	size_bad("99999999999T", -ERANGE);
	size_bad("16777216T", -ERANGE);
	size_bad("18446744073709551616", -ERANGE);

	name("vda", 1, "plain name");
	name("my-disk_0.img", 1, "name with - _ .");
	name("", 0, "empty name");
	name(NULL, 0, "NULL");
	memset(buf, 'a', 255);
	buf[255] = 0;
	name(buf, 1, "255-byte name");
	memset(buf, 'a', 256);
	buf[256] = 0;
	name(buf, 0, "256-byte name");
	name("a/b", 0, "\"a/b\"");
	name("/", 0, "\"/\"");
	name(".", 0, "\".\"");
	name("..", 0, "\"..\"");
	name("...", 1, "\"...\"");
	name("control", 0, "\"control\" (the kernel's /dev/vduse/control)");
	name("controls", 1, "\"controls\"");
	is_int(vdu_vdpa_dev_del("control"), -EINVAL, "the netlink helper refuses \"control\"");
	is_int(vdu_vdpa_bind("a/b", "virtio_vdpa", 10, buf, sizeof(buf)), -EINVAL,
	       "the driver binder refuses \"a/b\"");
	name("a b", 0, "\"a b\"");
	name("a\tb", 0, "name with a tab");
	name("a\nb", 0, "name with a newline");
	name("a\x7f", 0, "name with DEL");
	name("d\xc3\xa9j\xc3\xa0", 1, "UTF-8 name");

	{
		char a[] = "hello", b[] = " ", c[] = "world";
		struct iovec iov[4] = {
			{ a, 5 }, { b, 1 }, { NULL, 0 }, { c, 5 },
		};
		char out[16];
		size_t n;

		is_int(vdu_iov_size(iov, 4), 11, "iov_size sums lengths");
		memset(out, 0, sizeof(out));
		n = vdu_iov_to_buf(iov, 4, 3, out, sizeof(out));
		ok(n == 8 && memcmp(out, "lo world", 8) == 0, "iov_to_buf from an offset");
		n = vdu_iov_to_buf(iov, 4, 20, out, sizeof(out));
		is_int(n, 0, "iov_to_buf past the end copies nothing");
		n = vdu_iov_from_buf(iov, 4, 4, "XXXX", 4);
		ok(n == 4 && memcmp(a, "hellX", 5) == 0 && b[0] == 'X' &&
		   memcmp(c, "XXrld", 5) == 0, "iov_from_buf across iovecs");
		n = vdu_iov_from_buf(iov, 4, 9, "1234", 4);
		ok(n == 2 && memcmp(c, "XXr12", 5) == 0, "iov_from_buf stops at the end");
	}
	{
		/* Refused before any file is touched. */
		int one = 0, big = 1024, neg = -1;

		is_int(vdu_set_irq_affinity_by_name("../x", 0, &one, 1), -EINVAL,
		       "set_irq_affinity: bad name refused");
		is_int(vdu_set_irq_affinity_by_name("d", 0, &one, 0), -EINVAL,
		       "set_irq_affinity: no CPU refused");
		is_int(vdu_set_irq_affinity_by_name("d", 0, &big, 1), -EINVAL,
		       "set_irq_affinity: CPU 1024 refused");
		is_int(vdu_set_irq_affinity_by_name("d", 0, &neg, 1), -EINVAL,
		       "set_irq_affinity: CPU -1 refused");
		is_int(vdu_set_irq_affinity_by_name("vdu-no-such-dev", 0, &one, 1),
		       -ENOENT, "set_irq_affinity: no such device: -ENOENT");
	}
	return tap_done();
}
