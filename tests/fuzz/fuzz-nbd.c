/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: arbitrary bytes from an NBD "server" through the
 * client's handshake and then its transmission-phase reply parser.
 *
 * Input: byte 0 = settings (bit 0: ask for structured replies; bit 1:
 * TLS, i.e. NBD_OPT_STARTTLS first; bits 2-7: bytes per read, 0 = as many
 * as asked for), then the server's byte stream.  When the machine asks
 * for the TLS handshake (NBD_HS_STARTTLS) the "handshake" succeeds at once
 * and the same stream goes on as the decrypted one.  After the handshake, eight requests of assorted kinds are "in
 * flight" with cookies 1..8 (reads have exactly-sized buffers in three
 * pieces, so ASan catches any write outside them); a completed request is
 * re-armed so the stream can keep going.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_proto.h"

#define NCMD 8

struct fcmd {
	struct nbd_rx_cmd rx;
	struct iovec iov[3];
	uint8_t *buf;
	uint64_t cookie;
	bool inflight;
	unsigned completions;
};

static struct fcmd cmds[NCMD];

static struct nbd_rx_cmd *lookup(void *opaque, uint64_t cookie)
{
	for (int i = 0; i < NCMD; i++)
		if (cmds[i].inflight && cmds[i].cookie == cookie)
			return &cmds[i].rx;
	return NULL;
}

static int done(void *opaque, struct nbd_rx_cmd *rc, int err)
{
	struct fcmd *c = (struct fcmd *)((char *)rc - offsetof(struct fcmd, rx));

	assert(c->inflight);
	assert(err <= 0);
	c->completions++;
	/* re-arm: the same request sent again */
	nbd_rx_cmd_reset(&c->rx);
	return err == -ESHUTDOWN ? err : 0;
}

static const struct nbd_rx_ops ops = { lookup, done };

static void setup_cmds(void)
{
	static const struct { uint16_t type; uint32_t len; } kinds[NCMD] = {
		{ NBD_CMD_READ, 4096 }, { NBD_CMD_WRITE, 4096 }, { NBD_CMD_READ, 1 },
		{ NBD_CMD_FLUSH, 0 }, { NBD_CMD_READ, 65536 }, { NBD_CMD_TRIM, 1 << 20 },
		{ NBD_CMD_READ, 513 }, { NBD_CMD_WRITE_ZEROES, 4096 },
	};

	for (int i = 0; i < NCMD; i++) {
		struct fcmd *c = &cmds[i];
		uint32_t len = kinds[i].len;

		memset(c, 0, sizeof(*c));
		c->rx.type = kinds[i].type;
		c->rx.offset = (uint64_t)i << 20;
		c->rx.len = len;
		c->cookie = i + 1;
		c->inflight = true;
		if (c->rx.type == NBD_CMD_READ) {
			uint32_t a = len / 3, b = len / 2;

			c->buf = malloc(len);
			c->iov[0] = (struct iovec){ c->buf, a };
			c->iov[1] = (struct iovec){ c->buf + a, b - a };
			c->iov[2] = (struct iovec){ c->buf + b, len - b };
			c->rx.iov = c->iov;
			c->rx.iovcnt = 3;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nbd_hs hs;
	static struct nbd_rx rx;
	size_t pos = 1, step;
	int r;

	if (size < 1)
		return 0;
	step = data[0] >> 2;
	nbd_hs_init(&hs, "export", data[0] & 1, data[0] & 2);

	/* handshake */
	for (;;) {
		size_t len, n;
		uint8_t *b;

		hs.out_off = hs.out_len; /* "sent" */
		b = nbd_hs_rbuf(&hs, &len);
		assert(len > 0 && len <= sizeof(hs.buf));
		n = size - pos < len ? size - pos : len;
		if (step && n > step)
			n = step;
		if (!n)
			return 0;
		memcpy(b, data + pos, n);
		pos += n;
		r = nbd_hs_consume(&hs, n);
		if (r < 0) {
			assert(hs.msg[0]);
			nbd_hs_abort(&hs);
			return 0;
		}
		if (r == NBD_HS_STARTTLS) {
			/* only when asked for, once, and nothing queued for
			 * plain text is left behind */
			assert((data[0] & 2) && !hs.tls);
			assert(!nbd_hs_in_options(&hs));
			b = nbd_hs_rbuf(&hs, &len);
			assert(len == 0);
			assert(nbd_hs_consume(&hs, 0) == NBD_HS_STARTTLS);
			r = nbd_hs_tls_ready(&hs);
			assert(r == 0 && hs.tls && hs.out_len > hs.out_off);
			assert(nbd_hs_tls_ready(&hs) < 0);
			continue;
		}
		if (r == NBD_HS_DONE)
			break;
	}
	assert(hs.got_export);
	assert(hs.tls == !!(data[0] & 2));

	/* transmission */
	setup_cmds();
	nbd_rx_init(&rx, hs.structured, &ops, NULL);
	while (pos < size) {
		struct iovec iov[16];
		int n = nbd_rx_iov(&rx, iov, 16);
		size_t got = 0, want = size - pos;

		if (step && want > step)
			want = step;
		for (int i = 0; i < n && got < want; i++) {
			size_t k = iov[i].iov_len < want - got ? iov[i].iov_len : want - got;

			memcpy(iov[i].iov_base, data + pos + got, k);
			got += k;
		}
		if (!got)
			break;
		pos += got;
		if (nbd_rx_consume(&rx, got) < 0)
			break;
	}
	for (int i = 0; i < NCMD; i++)
		free(cmds[i].buf);
	return 0;
}
