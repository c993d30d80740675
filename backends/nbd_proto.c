/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* NBD URI parsing, handshake and reply parsing: see nbd_proto.h. */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_proto.h"

static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static void put16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }

/* Printable copy of server text (which may be anything). */
static void sanitize(char *dst, size_t dstlen, const uint8_t *src, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 1 < dstlen; i++)
		dst[j++] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
	dst[j] = 0;
}

/* ---------------------------------------------------------------- URI */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode src[0..n) into dst (size dstlen); -1 on bad escapes,
 * NUL bytes or overflow. */
static int pct_decode(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)src[i];

		if (c == '%') {
			int h, l;

			if (i + 2 >= n)
				return -1;
			h = hexval(src[i + 1]);
			l = hexval(src[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			c = h * 16 + l;
			i += 2;
		}
		if (c == 0 || j + 1 >= dstlen)
			return -1;
		dst[j++] = (char)c;
	}
	dst[j] = 0;
	return 0;
}

#define URL_ERR(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

/* "on"/"off" and the other spellings of vdu_parse_bool(): 1, 0 or -1
 * (this file does not link libvduse, for the fuzzer). */
static int parse_bool(const char *s)
{
	static const char *const yes[] = { "1", "on", "yes", "true" };
	static const char *const no[] = { "0", "off", "no", "false" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcmp(s, yes[i]))
			return 1;
		if (!strcmp(s, no[i]))
			return 0;
	}
	return -1;
}

/* One name=value of the query: 0, or -EINVAL with the message in err. */
static int url_query_param(const char *url, struct nbd_url *u, const char *q,
			   size_t n, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		size_t off, size;
	} tls_keys[] = {
		{ "tls-certificates", offsetof(struct nbd_url, tls_certificates),
		  sizeof(((struct nbd_url *)0)->tls_certificates) },
		{ "tls-psk-file", offsetof(struct nbd_url, tls_psk_file),
		  sizeof(((struct nbd_url *)0)->tls_psk_file) },
		{ "tls-username", offsetof(struct nbd_url, tls_username),
		  sizeof(((struct nbd_url *)0)->tls_username) },
		{ "tls-hostname", offsetof(struct nbd_url, tls_hostname),
		  sizeof(((struct nbd_url *)0)->tls_hostname) },
	};
	const char *eq = memchr(q, '=', n);
	size_t klen = eq ? (size_t)(eq - q) : n;
	const char *v = eq ? eq + 1 : q + n;
	size_t vlen = q + n - v;

	if (klen == 6 && !strncmp(q, "socket", 6)) {
		if (!u->unix_socket)
			URL_ERR("'%s': socket= is for nbd+unix:// and nbds+unix:// URLs", url);
		if (u->socket_path[0])
			URL_ERR("'%s': socket= given twice", url);
		if (!vlen || pct_decode(u->socket_path, sizeof(u->socket_path), v, vlen) < 0)
			URL_ERR("'%s': bad socket path (empty, bad %%-escape or "
				"longer than %zu bytes)", url, sizeof(u->socket_path) - 1);
		return 0;
	}
	for (size_t i = 0; i < sizeof(tls_keys) / sizeof(tls_keys[0]); i++) {
		char *dst = (char *)u + tls_keys[i].off;

		if (strlen(tls_keys[i].name) != klen || strncmp(q, tls_keys[i].name, klen))
			continue;
		if (!u->tls)
			URL_ERR("'%s': %s= needs TLS: use %s:// instead of %s://", url,
				tls_keys[i].name, u->unix_socket ? "nbds+unix" : "nbds",
				u->unix_socket ? "nbd+unix" : "nbd");
		if (dst[0])
			URL_ERR("'%s': %s= given twice%s", url, tls_keys[i].name,
				i == 2 ? " (or also as USER@)" : "");
		if (!vlen || pct_decode(dst, tls_keys[i].size, v, vlen) < 0)
			URL_ERR("'%s': bad %s= value (empty, bad %%-escape or longer "
				"than %zu bytes)", url, tls_keys[i].name, tls_keys[i].size - 1);
		return 0;
	}
	if (klen == 15 && !strncmp(q, "tls-verify-peer", 15)) {
		char b[8];

		if (!u->tls)
			URL_ERR("'%s': tls-verify-peer= needs TLS: use %s:// instead of %s://",
				url, u->unix_socket ? "nbds+unix" : "nbds",
				u->unix_socket ? "nbd+unix" : "nbd");
		if (u->tls_verify_peer >= 0)
			URL_ERR("'%s': tls-verify-peer= given twice", url);
		if (pct_decode(b, sizeof(b), v, vlen) < 0 ||
		    (u->tls_verify_peer = parse_bool(b)) < 0)
			URL_ERR("'%s': tls-verify-peer= wants on or off", url);
		return 0;
	}
	URL_ERR("'%s': unknown query parameter '%.*s' (the URL takes %s"
		"tls-certificates, tls-psk-file, tls-username, tls-hostname and "
		"tls-verify-peer)", url, (int)klen, q,
		u->unix_socket ? "socket, " : "");
}

int nbd_url_parse(const char *url, struct nbd_url *u, char *err, size_t errlen)
{
	static const struct {
		const char *scheme;
		bool unix_socket, tls;
	} schemes[] = {
		{ "nbd://", false, false }, { "nbd+unix://", true, false },
		{ "nbds://", false, true }, { "nbds+unix://", true, true },
	};
	const char *p = NULL, *auth, *auth_end, *path, *query, *at;
	size_t alen;

	memset(u, 0, sizeof(*u));
	u->tls_verify_peer = -1;
	if (!url || !*url)
		URL_ERR("empty URL");
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && !p; i++)
		if (!strncmp(url, schemes[i].scheme, strlen(schemes[i].scheme))) {
			p = url + strlen(schemes[i].scheme);
			u->unix_socket = schemes[i].unix_socket;
			u->tls = schemes[i].tls;
		}
	if (!p)
		URL_ERR("'%s': expected nbd[s]://HOST[:PORT][/EXPORT] or "
			"nbd[s]+unix:///EXPORT?socket=PATH", url);
	for (const char *c = url; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f)
			URL_ERR("'%s': spaces or control characters in the URL", url);

	auth = p;
	auth_end = auth + strcspn(auth, "/?#");
	if (*auth_end == '#')
		URL_ERR("'%s': fragments (#) are not allowed", url);
	path = auth_end;
	query = strchr(path, '?');
	if (strchr(path, '#'))
		URL_ERR("'%s': fragments (#) are not allowed", url);

	/* USER@: the TLS user name (PSK), as libnbd takes it */
	at = memchr(auth, '@', auth_end - auth);
	if (at) {
		if (!u->tls)
			URL_ERR("'%s': a user name (USER@) is the TLS user: it needs "
				"%s://", url, u->unix_socket ? "nbds+unix" : "nbds");
		if (at == auth || pct_decode(u->tls_username, sizeof(u->tls_username),
					     auth, at - auth) < 0)
			URL_ERR("'%s': bad user name", url);
		auth = at + 1;
	}
	alen = auth_end - auth;

	/* export name: the path without its leading slash */
	if (*path == '/') {
		size_t plen = query ? (size_t)(query - path - 1) : strlen(path + 1);

		if (pct_decode(u->export_name, sizeof(u->export_name), path + 1, plen) < 0)
			URL_ERR("'%s': bad export name (bad %%-escape, NUL, or longer "
				"than %d bytes)", url, NBD_MAX_STRING);
	}

	if (u->unix_socket && alen)
		URL_ERR("'%s': %s URLs have no host: use %s:///EXPORT?socket=PATH", url,
			u->tls ? "nbds+unix" : "nbd+unix", u->tls ? "nbds+unix" : "nbd+unix");
	for (const char *q = query ? query + 1 : NULL; q && *q;) {
		size_t n = strcspn(q, "&");

		if (n && url_query_param(url, u, q, n, err, errlen) < 0)
			return -EINVAL;
		q += n;
		if (*q == '&')
			q++;
	}
	if (u->unix_socket) {
		if (!u->socket_path[0])
			URL_ERR("'%s': missing ?socket=PATH", url);
		return 0;
	}

	if (!alen)
		URL_ERR("'%s': missing host", url);
	const char *port = NULL;
	size_t hlen;

	if (*auth == '[') {
		const char *rb = memchr(auth, ']', alen);

		if (!rb || rb == auth + 1)
			URL_ERR("'%s': bad IPv6 address literal", url);
		hlen = rb - auth - 1;
		if (hlen >= sizeof(u->host))
			URL_ERR("'%s': host name too long", url);
		memcpy(u->host, auth + 1, hlen);
		if (rb + 1 < auth_end) {
			if (rb[1] != ':')
				URL_ERR("'%s': junk after ']'", url);
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(auth, ':', alen);

		hlen = colon ? (size_t)(colon - auth) : alen;
		if (!hlen)
			URL_ERR("'%s': missing host", url);
		if (hlen >= sizeof(u->host))
			URL_ERR("'%s': host name too long", url);
		if (pct_decode(u->host, sizeof(u->host), auth, hlen) < 0)
			URL_ERR("'%s': bad host name", url);
		if (colon)
			port = colon + 1;
	}
	if (port) {
		size_t plen = auth_end - port;
		unsigned long v = 0;

		if (!plen || plen > 5)
			URL_ERR("'%s': bad port", url);
		for (size_t i = 0; i < plen; i++) {
			if (port[i] < '0' || port[i] > '9')
				URL_ERR("'%s': bad port", url);
			v = v * 10 + (port[i] - '0');
		}
		if (v < 1 || v > 65535)
			URL_ERR("'%s': port out of range 1-65535", url);
		snprintf(u->port, sizeof(u->port), "%lu", v);
	} else
		snprintf(u->port, sizeof(u->port), "%s", NBD_DEFAULT_PORT);
	return 0;
}

/* ---------------------------------------------------------- handshake */

enum {
	HS_GREETING,
	HS_OPT_HDR,
	HS_OPT_DATA,
	HS_EXPORT_NAME,
	HS_TLS,      /* NBD_OPT_STARTTLS accepted: the caller runs TLS */
	HS_DONE,
	HS_FAILED,
};

static int hs_fail(struct nbd_hs *hs, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int hs_fail(struct nbd_hs *hs, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hs->msg, sizeof(hs->msg), fmt, ap);
	va_end(ap);
	hs->state = HS_FAILED;
	hs->need = hs->have = 0;
	return err;
}

static void hs_out(struct nbd_hs *hs, const void *p, size_t n)
{
	/* sizes are fixed by us: the buffer always fits what we queue */
	if (hs->out_off == hs->out_len)
		hs->out_off = hs->out_len = 0;
	if (hs->out_len + n > sizeof(hs->out))
		return;
	memcpy(hs->out + hs->out_len, p, n);
	hs->out_len += n;
}

static void hs_send_opt(struct nbd_hs *hs, uint32_t opt, const uint8_t *data, uint32_t len)
{
	uint8_t h[16];

	put64(h, NBD_OPTS_MAGIC);
	put32(h + 8, opt);
	put32(h + 12, len);
	hs_out(hs, h, sizeof(h));
	if (len)
		hs_out(hs, data, len);
	hs->opt = opt;
}

static void hs_expect(struct nbd_hs *hs, int state, size_t need)
{
	hs->state = state;
	hs->need = need;
	hs->have = 0;
}

static void hs_send_go(struct nbd_hs *hs)
{
	uint8_t d[4 + NBD_MAX_STRING + 2 + 4];
	uint32_t n = strlen(hs->export_name);

	put32(d, n);
	memcpy(d + 4, hs->export_name, n);
	put16(d + 4 + n, 2);
	put16(d + 6 + n, NBD_INFO_EXPORT);
	put16(d + 8 + n, NBD_INFO_BLOCK_SIZE);
	hs_send_opt(hs, NBD_OPT_GO, d, n + 10);
	hs_expect(hs, HS_OPT_HDR, 20);
}

/* The first option after the greeting, or after STARTTLS. */
static void hs_send_first(struct nbd_hs *hs)
{
	if (hs->want_structured) {
		hs_send_opt(hs, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		hs_expect(hs, HS_OPT_HDR, 20);
	} else
		hs_send_go(hs);
}

void nbd_hs_init(struct nbd_hs *hs, const char *export_name, bool want_structured,
		 bool want_tls)
{
	memset(hs, 0, offsetof(struct nbd_hs, buf));
	hs->out_len = hs->out_off = 0;
	hs->structured = hs->no_zeroes = hs->got_export = hs->got_block_size = false;
	hs->size = 0;
	hs->tflags = 0;
	hs->min_bs = hs->pref_bs = hs->max_bs = 0;
	hs->msg[0] = 0;
	snprintf(hs->export_name, sizeof(hs->export_name), "%s", export_name);
	hs->want_structured = want_structured;
	hs->want_tls = want_tls;
	hs->tls = false;
	hs_expect(hs, HS_GREETING, 18);
}

int nbd_hs_tls_ready(struct nbd_hs *hs)
{
	if (hs->state != HS_TLS)
		return -EPROTO;
	hs->tls = true;
	hs_send_first(hs);
	return 0;
}

uint8_t *nbd_hs_rbuf(struct nbd_hs *hs, size_t *len)
{
	*len = hs->need - hs->have;
	return hs->buf + hs->have;
}

bool nbd_hs_in_options(const struct nbd_hs *hs)
{
	return hs->state == HS_OPT_HDR || hs->state == HS_OPT_DATA;
}

void nbd_hs_abort(struct nbd_hs *hs)
{
	if (nbd_hs_in_options(hs) ||
	    (hs->state == HS_FAILED && hs->opt != 0 && hs->opt != NBD_OPT_EXPORT_NAME))
		hs_send_opt(hs, NBD_OPT_ABORT, NULL, 0);
}

static const char *rep_name(uint32_t t)
{
	switch (t) {
	case NBD_REP_ERR_UNSUP: return "unsupported option";
	case NBD_REP_ERR_POLICY: return "refused by server policy";
	case NBD_REP_ERR_INVALID: return "invalid request";
	case NBD_REP_ERR_PLATFORM: return "not supported on the server's platform";
	case NBD_REP_ERR_TLS_REQD: return "the server requires TLS";
	case NBD_REP_ERR_UNKNOWN: return "no such export";
	case NBD_REP_ERR_SHUTDOWN: return "the server is shutting down";
	case NBD_REP_ERR_BLOCK_SIZE_REQD: return "the server requires block size negotiation";
	case NBD_REP_ERR_TOO_BIG: return "request too big";
	default: return "unknown error";
	}
}

static int rep_errno(uint32_t t)
{
	switch (t) {
	case NBD_REP_ERR_UNKNOWN: return -ENOENT;
	case NBD_REP_ERR_POLICY: return -EACCES;
	case NBD_REP_ERR_TLS_REQD: return -EPROTONOSUPPORT;
	case NBD_REP_ERR_SHUTDOWN: return -ESHUTDOWN;
	case NBD_REP_ERR_TOO_BIG: return -E2BIG;
	case NBD_REP_ERR_PLATFORM:
	case NBD_REP_ERR_UNSUP: return -EOPNOTSUPP;
	default: return -EINVAL;
	}
}

static bool pow2(uint32_t v) { return v && !(v & (v - 1)); }

static int hs_info(struct nbd_hs *hs, const uint8_t *d, uint32_t len)
{
	uint16_t type;

	if (len < 2)
		return hs_fail(hs, -EPROTO, "protocol error: short NBD_REP_INFO");
	type = get16(d);
	if (type == NBD_INFO_EXPORT) {
		if (len != 12)
			return hs_fail(hs, -EPROTO, "protocol error: NBD_INFO_EXPORT of %u bytes", len);
		hs->size = get64(d + 2);
		hs->tflags = get16(d + 10);
		hs->got_export = true;
	} else if (type == NBD_INFO_BLOCK_SIZE) {
		if (len != 14)
			return hs_fail(hs, -EPROTO, "protocol error: NBD_INFO_BLOCK_SIZE of %u bytes", len);
		hs->min_bs = get32(d + 2);
		hs->pref_bs = get32(d + 6);
		hs->max_bs = get32(d + 10);
		if (!pow2(hs->min_bs) || hs->min_bs > (64u << 10) ||
		    !pow2(hs->pref_bs) || hs->pref_bs < hs->min_bs ||
		    hs->max_bs < hs->min_bs)
			return hs_fail(hs, -EPROTO, "protocol error: bad block sizes "
				       "min %u preferred %u max %u", hs->min_bs,
				       hs->pref_bs, hs->max_bs);
		hs->got_block_size = true;
	}
	/* other NBD_INFO_* (name, description...) are of no use here */
	return NBD_HS_MORE;
}

static int hs_reply(struct nbd_hs *hs)
{
	uint32_t t = hs->rep_type, len = hs->rep_len;
	const uint8_t *d = hs->buf;

	if (t & NBD_REP_FLAG_ERROR) {
		char text[200];

		sanitize(text, sizeof(text), d, len);
		if (hs->opt == NBD_OPT_STARTTLS)
			/* nbds:// never falls back to plain text */
			return hs_fail(hs, t == NBD_REP_ERR_UNSUP ? -EPROTONOSUPPORT :
				       rep_errno(t), "the server does not offer TLS "
				       "(NBD_OPT_STARTTLS: %s%s%s), which nbds:// requires",
				       rep_name(t), *text ? ": " : "", text);
		if (t == NBD_REP_ERR_TLS_REQD && !hs->tls)
			return hs_fail(hs, -EPROTONOSUPPORT, "the server requires TLS: "
				       "use nbds:// (or nbds+unix://) instead of nbd://%s%s",
				       *text ? ": " : "", text);
		if (hs->opt == NBD_OPT_STRUCTURED_REPLY) {
			/* fine: simple replies only */
			hs->structured = false;
			hs_send_go(hs);
			return NBD_HS_MORE;
		}
		if (hs->opt == NBD_OPT_GO && t == NBD_REP_ERR_UNSUP) {
			/* a server without NBD_OPT_GO: the old way */
			uint32_t n = strlen(hs->export_name);

			hs_send_opt(hs, NBD_OPT_EXPORT_NAME, (const uint8_t *)hs->export_name, n);
			hs_expect(hs, HS_EXPORT_NAME, hs->no_zeroes ? 10 : 134);
			return NBD_HS_MORE;
		}
		if (t == NBD_REP_ERR_UNKNOWN)
			return hs_fail(hs, -ENOENT, "export '%.200s' not found on the server%s%s",
				       hs->export_name, *text ? ": " : "", text);
		return hs_fail(hs, rep_errno(t), "%s%s%s", rep_name(t), *text ? ": " : "", text);
	}
	if (hs->opt == NBD_OPT_STARTTLS) {
		if (t != NBD_REP_ACK || len)
			return hs_fail(hs, -EPROTO, "protocol error: reply type %u "
				       "(%u bytes) to NBD_OPT_STARTTLS", t, len);
		/* Nothing more in plain text: the server now waits for the
		 * TLS client hello. */
		hs->state = HS_TLS;
		hs->need = hs->have = 0;
		return NBD_HS_STARTTLS;
	}
	if (hs->opt == NBD_OPT_STRUCTURED_REPLY) {
		if (t != NBD_REP_ACK || len)
			return hs_fail(hs, -EPROTO, "protocol error: reply type %u to "
				       "NBD_OPT_STRUCTURED_REPLY", t);
		hs->structured = true;
		hs_send_go(hs);
		return NBD_HS_MORE;
	}
	/* NBD_OPT_GO */
	if (t == NBD_REP_INFO) {
		int r = hs_info(hs, d, len);

		if (r < 0)
			return r;
		hs_expect(hs, HS_OPT_HDR, 20);
		return NBD_HS_MORE;
	}
	if (t == NBD_REP_ACK) {
		if (len)
			return hs_fail(hs, -EPROTO, "protocol error: NBD_REP_ACK with data");
		if (!hs->got_export)
			return hs_fail(hs, -EPROTO, "protocol error: NBD_OPT_GO succeeded "
				       "without NBD_INFO_EXPORT");
		hs->state = HS_DONE;
		hs->need = hs->have = 0;
		return NBD_HS_DONE;
	}
	return hs_fail(hs, -EPROTO, "protocol error: reply type %u to NBD_OPT_GO", t);
}

static int hs_step(struct nbd_hs *hs)
{
	const uint8_t *b = hs->buf;

	switch (hs->state) {
	case HS_GREETING: {
		uint16_t flags;
		uint8_t cf[4];

		if (get64(b) != NBD_MAGIC)
			return hs_fail(hs, -EPROTO, "not an NBD server (bad greeting)");
		if (get64(b + 8) == NBD_CLISERV_MAGIC)
			return hs_fail(hs, -EPROTO, "oldstyle NBD server: not supported");
		if (get64(b + 8) != NBD_OPTS_MAGIC)
			return hs_fail(hs, -EPROTO, "not an NBD server (bad greeting magic)");
		flags = get16(b + 16);
		if (!(flags & NBD_FLAG_FIXED_NEWSTYLE))
			return hs_fail(hs, -EPROTO, "the server does not support fixed "
				       "newstyle negotiation");
		hs->no_zeroes = flags & NBD_FLAG_NO_ZEROES;
		put32(cf, NBD_FLAG_C_FIXED_NEWSTYLE | (hs->no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0));
		hs_out(hs, cf, 4);
		if (hs->want_tls) {
			hs_send_opt(hs, NBD_OPT_STARTTLS, NULL, 0);
			hs_expect(hs, HS_OPT_HDR, 20);
		} else
			hs_send_first(hs);
		return NBD_HS_MORE;
	}
	case HS_OPT_HDR:
		if (get64(b) != NBD_REP_MAGIC)
			return hs_fail(hs, -EPROTO, "protocol error: bad option reply magic");
		if (get32(b + 8) != hs->opt)
			return hs_fail(hs, -EPROTO, "protocol error: reply to option %u "
				       "while waiting for %u", get32(b + 8), hs->opt);
		hs->rep_type = get32(b + 12);
		hs->rep_len = get32(b + 16);
		if (hs->rep_len > NBD_HS_MAX_REPLY)
			return hs_fail(hs, -EPROTO, "protocol error: option reply of %u "
				       "bytes (limit %u)", hs->rep_len, NBD_HS_MAX_REPLY);
		if (hs->rep_len == 0)
			return hs_reply(hs);
		hs_expect(hs, HS_OPT_DATA, hs->rep_len);
		return NBD_HS_MORE;
	case HS_OPT_DATA:
		return hs_reply(hs);
	case HS_EXPORT_NAME:
		hs->size = get64(b);
		hs->tflags = get16(b + 8);
		hs->got_export = true;
		hs->state = HS_DONE;
		hs->need = hs->have = 0;
		return NBD_HS_DONE;
	}
	return hs_fail(hs, -EPROTO, "handshake in a bad state");
}

int nbd_hs_consume(struct nbd_hs *hs, size_t n)
{
	if (hs->state == HS_FAILED)
		return -EPROTO;
	if (hs->state == HS_DONE)
		return n ? -EPROTO : NBD_HS_DONE;
	if (hs->state == HS_TLS)
		return n ? hs_fail(hs, -EPROTO, "handshake: bytes before the TLS "
				   "handshake") : NBD_HS_STARTTLS;
	if (n > hs->need - hs->have)
		return hs_fail(hs, -EPROTO, "handshake: more bytes than asked for");
	hs->have += n;
	if (hs->have < hs->need)
		return NBD_HS_MORE;
	int r = hs_step(hs);

	if (r == NBD_HS_DONE && !(hs->tflags & NBD_FLAG_HAS_FLAGS))
		hs->tflags = 0;
	return r;
}

/* ------------------------------------------------------ reply parsing */

enum {
	RX_HDR,      /* 16 bytes: simple reply, or start of a structured one */
	RX_SHDR,     /* 20 bytes: structured chunk header */
	RX_META,     /* chunk payload fields into hdr[20..] */
	RX_ERRMSG,   /* error chunk payload into msg */
	RX_DATA,     /* payload straight into the request's buffers */
	RX_DEAD,
};

void nbd_rx_cmd_reset(struct nbd_rx_cmd *cmd)
{
	cmd->data_seen = 0;
	cmd->error = 0;
	cmd->chunked = false;
}

static void rx_expect(struct nbd_rx *rx, int state, size_t need)
{
	rx->state = state;
	rx->need = need;
	if (state == RX_HDR || state == RX_ERRMSG)
		rx->have = 0;
}

void nbd_rx_init(struct nbd_rx *rx, bool structured,
		 const struct nbd_rx_ops *ops, void *opaque)
{
	rx->ops = ops;
	rx->opaque = opaque;
	rx->structured = structured;
	rx->cmd = NULL;
	rx->errtext[0] = 0;
	rx_expect(rx, RX_HDR, 16);
}

static int rx_fail(struct nbd_rx *rx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int rx_fail(struct nbd_rx *rx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rx->errtext, sizeof(rx->errtext), fmt, ap);
	va_end(ap);
	rx->state = RX_DEAD;
	rx->cmd = NULL;
	return -EPROTO;
}

int nbd_errno(uint32_t e)
{
	switch (e) {
	case 1: return -EPERM;
	case 5: return -EIO;
	case 12: return -ENOMEM;
	case 22: return -EINVAL;
	case 28: return -ENOSPC;
	case 75: return -EOVERFLOW;
	case 95: return -EOPNOTSUPP;
	case 108: return -ESHUTDOWN;
	default: return -EIO;
	}
}

int nbd_iov_slice(const struct nbd_rx_cmd *cmd, uint64_t off, uint64_t len,
		 struct iovec *out, int max, uint64_t *covered)
{
	int n = 0, i = 0;
	uint64_t skip = cmd->iov_skip + off;

	*covered = 0;
	while (i < cmd->iovcnt && skip >= cmd->iov[i].iov_len)
		skip -= cmd->iov[i++].iov_len;
	for (; i < cmd->iovcnt && len && n < max; i++) {
		size_t l = cmd->iov[i].iov_len - skip;

		if (l > len)
			l = len;
		out[n].iov_base = (char *)cmd->iov[i].iov_base + skip;
		out[n].iov_len = l;
		n++;
		len -= l;
		*covered += l;
		skip = 0;
	}
	return n;
}

int nbd_rx_iov(struct nbd_rx *rx, struct iovec *iov, int max)
{
	switch (rx->state) {
	case RX_DATA: {
		uint64_t covered;
		uint32_t left = rx->dlen - rx->ddone;
		int n = nbd_iov_slice(rx->cmd, rx->doff + rx->ddone, left, iov, max - 1, &covered);

		if (covered == left) {
			/* Whatever follows a payload starts with a 16-byte
			 * header: read it in the same call. */
			iov[n].iov_base = rx->hdr;
			iov[n].iov_len = 16;
			n++;
		}
		return n;
	}
	case RX_ERRMSG:
		iov[0].iov_base = rx->msg + rx->have;
		iov[0].iov_len = rx->need - rx->have;
		return 1;
	case RX_DEAD:
		iov[0].iov_base = rx->hdr;
		iov[0].iov_len = 0;
		return 1;
	default:
		iov[0].iov_base = rx->hdr + rx->have;
		iov[0].iov_len = rx->need - rx->have;
		return 1;
	}
}

static int rx_finish(struct nbd_rx *rx, struct nbd_rx_cmd *cmd, int err)
{
	rx->cmd = NULL;
	rx_expect(rx, RX_HDR, 16);
	return rx->ops->done(rx->opaque, cmd, err);
}

static int rx_chunk_end(struct nbd_rx *rx)
{
	struct nbd_rx_cmd *cmd = rx->cmd;
	int err;

	if (!(rx->cflags & NBD_REPLY_FLAG_DONE)) {
		rx->cmd = NULL;
		rx_expect(rx, RX_HDR, 16);
		return 0;
	}
	err = cmd->error;
	if (!err && cmd->type == NBD_CMD_READ && cmd->data_seen != cmd->len) {
		snprintf(rx->errtext, sizeof(rx->errtext), "read reply covered %" PRIu64
			 " of %u bytes", cmd->data_seen, cmd->len);
		err = -EIO;
	}
	return rx_finish(rx, cmd, err);
}

/* Start reading [off, off+len) of the request straight into its buffer. */
static int rx_data(struct nbd_rx *rx, uint64_t off, uint32_t len)
{
	rx->doff = off;
	rx->dlen = len;
	rx->ddone = 0;
	rx->state = RX_DATA;
	rx->have = 0; /* the speculative header lands at hdr[0] */
	return 0;
}

static int rx_data_done(struct nbd_rx *rx)
{
	struct nbd_rx_cmd *cmd = rx->cmd;

	if (!cmd->chunked) /* simple reply */
		return rx_finish(rx, cmd, 0);
	cmd->data_seen += rx->dlen;
	return rx_chunk_end(rx);
}

/* off/len inside the request? */
static bool in_range(const struct nbd_rx_cmd *cmd, uint64_t off, uint64_t len)
{
	return off >= cmd->offset && off - cmd->offset <= cmd->len &&
	       len <= cmd->len - (off - cmd->offset);
}

static int rx_step(struct nbd_rx *rx)
{
	struct nbd_rx_cmd *cmd;
	const uint8_t *h = rx->hdr;

	switch (rx->state) {
	case RX_HDR: {
		uint32_t magic = get32(h);

		if (magic == NBD_SIMPLE_REPLY_MAGIC) {
			uint32_t e = get32(h + 4);
			uint64_t cookie = get64(h + 8);

			cmd = rx->ops->lookup(rx->opaque, cookie);
			if (!cmd)
				return rx_fail(rx, "reply with unknown cookie 0x%" PRIx64, cookie);
			if (cmd->chunked)
				return rx_fail(rx, "simple reply after structured chunks");
			rx->cmd = cmd;
			if (e == 0 && cmd->type == NBD_CMD_READ)
				return rx_data(rx, 0, cmd->len);
			return rx_finish(rx, cmd, e ? nbd_errno(e) : 0);
		}
		if (magic == NBD_STRUCTURED_REPLY_MAGIC) {
			if (!rx->structured)
				return rx_fail(rx, "structured reply without negotiation");
			rx->state = RX_SHDR;
			rx->need = 20;
			return 0;
		}
		return rx_fail(rx, "bad reply magic 0x%08x", magic);
	}
	case RX_SHDR: {
		uint64_t cookie = get64(h + 8);

		rx->cflags = get16(h + 4);
		rx->ctype = get16(h + 6);
		rx->clen = get32(h + 16);
		cmd = rx->ops->lookup(rx->opaque, cookie);
		if (!cmd)
			return rx_fail(rx, "chunk with unknown cookie 0x%" PRIx64, cookie);
		rx->cmd = cmd;
		cmd->chunked = true;
		switch (rx->ctype) {
		case NBD_REPLY_TYPE_NONE:
			if (rx->clen || !(rx->cflags & NBD_REPLY_FLAG_DONE))
				return rx_fail(rx, "bad NBD_REPLY_TYPE_NONE chunk");
			return rx_chunk_end(rx);
		case NBD_REPLY_TYPE_OFFSET_DATA:
			if (cmd->type != NBD_CMD_READ || rx->clen < 9 ||
			    rx->clen - 8 > cmd->len)
				return rx_fail(rx, "bad data chunk (length %u, request %u)",
					       rx->clen, cmd->len);
			rx->state = RX_META;
			rx->need = 28;
			return 0;
		case NBD_REPLY_TYPE_OFFSET_HOLE:
			if (cmd->type != NBD_CMD_READ || rx->clen != 12)
				return rx_fail(rx, "bad hole chunk");
			rx->state = RX_META;
			rx->need = 32;
			return 0;
		default:
			if (!(rx->ctype & NBD_REPLY_TYPE_ERROR_BIT))
				return rx_fail(rx, "unexpected chunk type %u", rx->ctype);
			if (rx->clen < 6 || rx->clen > sizeof(rx->msg))
				return rx_fail(rx, "error chunk of %u bytes", rx->clen);
			rx_expect(rx, RX_ERRMSG, rx->clen);
			return 0;
		}
	}
	case RX_META: {
		uint64_t off = get64(h + 20);

		cmd = rx->cmd;
		if (rx->ctype == NBD_REPLY_TYPE_OFFSET_DATA) {
			uint32_t len = rx->clen - 8;

			if (!in_range(cmd, off, len))
				return rx_fail(rx, "data chunk outside the request");
			return rx_data(rx, off - cmd->offset, len);
		}
		uint32_t len = get32(h + 28);
		struct iovec v[64];
		uint64_t covered, pos;

		if (!len || !in_range(cmd, off, len))
			return rx_fail(rx, "hole chunk outside the request");
		for (pos = off - cmd->offset; len; pos += covered, len -= covered) {
			int n = nbd_iov_slice(cmd, pos, len, v, 64, &covered);

			for (int i = 0; i < n; i++)
				memset(v[i].iov_base, 0, v[i].iov_len);
			if (!covered)
				return rx_fail(rx, "hole beyond the buffers");
		}
		cmd->data_seen += get32(h + 28);
		return rx_chunk_end(rx);
	}
	case RX_ERRMSG: {
		uint32_t e = get32(rx->msg);
		uint16_t mlen = get16(rx->msg + 4);
		uint32_t rest;
		char text[128];

		cmd = rx->cmd;
		if (mlen > rx->clen - 6)
			return rx_fail(rx, "error message overruns its chunk");
		rest = rx->clen - 6 - mlen;
		if (rx->ctype == NBD_REPLY_TYPE_ERROR && rest != 0)
			return rx_fail(rx, "bad NBD_REPLY_TYPE_ERROR length");
		if (rx->ctype == NBD_REPLY_TYPE_ERROR_OFFSET) {
			if (rest != 8)
				return rx_fail(rx, "bad NBD_REPLY_TYPE_ERROR_OFFSET length");
			if (!in_range(cmd, get64(rx->msg + 6 + mlen), 0) ||
			    get64(rx->msg + 6 + mlen) == cmd->offset + cmd->len)
				return rx_fail(rx, "error offset outside the request");
		}
		if (e == 0)
			return rx_fail(rx, "error chunk with error 0");
		sanitize(text, sizeof(text), rx->msg + 6, mlen);
		snprintf(rx->errtext, sizeof(rx->errtext), "server error %u%s%s", e,
			 *text ? ": " : "", text);
		if (!cmd->error)
			cmd->error = nbd_errno(e);
		return rx_chunk_end(rx);
	}
	}
	return rx_fail(rx, "parser in a bad state");
}

int nbd_rx_consume(struct nbd_rx *rx, size_t n)
{
	while (n) {
		size_t k;
		int r;

		if (rx->state == RX_DEAD)
			return -EPROTO;
		if (rx->state == RX_DATA) {
			k = rx->dlen - rx->ddone;
			if (k > n)
				k = n;
			rx->ddone += k;
			n -= k;
			if (rx->ddone < rx->dlen)
				continue;
			r = rx_data_done(rx);
		} else {
			k = rx->need - rx->have;
			if (k > n)
				k = n;
			rx->have += k;
			n -= k;
			if (rx->have < rx->need)
				continue;
			r = rx_step(rx);
		}
		if (r)
			return r;
	}
	return 0;
}

void nbd_encode_request(uint8_t *p, uint16_t flags, uint16_t type,
			uint64_t cookie, uint64_t offset, uint32_t len)
{
	put32(p, NBD_REQUEST_MAGIC);
	put16(p + 4, flags);
	put16(p + 6, type);
	put64(p + 8, cookie);
	put64(p + 16, offset);
	put32(p + 24, len);
}
