/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NBD client protocol pieces for the tcp backend (NetworkBlockDevice/nbd
 * doc/proto.md): URI parsing, the fixed-newstyle handshake and the reply
 * parser of the transmission phase.
 *
 * Both machines are fed from buffers and never touch a socket, so the
 * same code runs on a non-blocking socket, on a blocking one (open()) and
 * under libFuzzer.  The caller asks where the next bytes must go
 * (nbd_hs_rbuf / nbd_rx_iov), reads into exactly those places, and
 * reports how many arrived (nbd_hs_consume / nbd_rx_consume).  Every
 * length that comes from the server is bounded before it is used; any
 * violation is a negative return and the connection must be dropped.
 */
#ifndef VDU_NBD_PROTO_H
#define VDU_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "libvduse.h"

/* ---------------------------------------------------------- constants */
#define NBD_DEFAULT_PORT "10809"

#define NBD_MAGIC                  0x4e42444d41474943ULL /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC             0x49484156454f5054ULL /* "IHAVEOPT" */
#define NBD_CLISERV_MAGIC          0x0000420281861253ULL /* oldstyle */
#define NBD_REP_MAGIC              0x0003e889045565a9ULL
#define NBD_REQUEST_MAGIC          0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)

/* options */
#define NBD_OPT_EXPORT_NAME      1
#define NBD_OPT_ABORT            2
#define NBD_OPT_STARTTLS         5
#define NBD_OPT_GO               7
#define NBD_OPT_STRUCTURED_REPLY 8

/* option replies */
#define NBD_REP_ACK  1
#define NBD_REP_INFO 3
#define NBD_REP_FLAG_ERROR (1u << 31)
#define NBD_REP_ERR_UNSUP           (NBD_REP_FLAG_ERROR | 1)
#define NBD_REP_ERR_POLICY          (NBD_REP_FLAG_ERROR | 2)
#define NBD_REP_ERR_INVALID         (NBD_REP_FLAG_ERROR | 3)
#define NBD_REP_ERR_PLATFORM        (NBD_REP_FLAG_ERROR | 4)
#define NBD_REP_ERR_TLS_REQD        (NBD_REP_FLAG_ERROR | 5)
#define NBD_REP_ERR_UNKNOWN         (NBD_REP_FLAG_ERROR | 6)
#define NBD_REP_ERR_SHUTDOWN        (NBD_REP_FLAG_ERROR | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8)
#define NBD_REP_ERR_TOO_BIG         (NBD_REP_FLAG_ERROR | 9)

/* NBD_INFO_* */
#define NBD_INFO_EXPORT     0
#define NBD_INFO_BLOCK_SIZE 3

/* commands and command flags */
#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_FLAG_FUA     (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)

/* structured replies */
#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0
#define NBD_REPLY_TYPE_OFFSET_DATA   1
#define NBD_REPLY_TYPE_OFFSET_HOLE   2
#define NBD_REPLY_TYPE_ERROR_BIT     (1u << 15)
#define NBD_REPLY_TYPE_ERROR         (NBD_REPLY_TYPE_ERROR_BIT | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET  (NBD_REPLY_TYPE_ERROR_BIT | 2)

#define NBD_REQUEST_SIZE 28
#define NBD_MAX_STRING   4096          /* export names, messages */
#define NBD_HS_MAX_REPLY (16u << 10)   /* option reply payload bound */
#define NBD_DEFAULT_MAX_PAYLOAD (32u << 20)

/* ---------------------------------------------------------------- URI */
#define NBD_MAX_PATH 4096

struct nbd_url {
	bool unix_socket;
	bool tls;                    /* nbds:// or nbds+unix:// */
	char host[256];              /* without [] for IPv6 literals */
	char port[8];
	char export_name[NBD_MAX_STRING + 1];
	char socket_path[108];
	/* TLS settings from the query (libnbd's names); "" when not given */
	char tls_certificates[NBD_MAX_PATH + 1];
	char tls_psk_file[NBD_MAX_PATH + 1];
	char tls_username[256];      /* ?tls-username= or USER@ */
	char tls_hostname[256];
	int tls_verify_peer;         /* -1: not given, else 0/1 */
};

/* Parse nbd[s]://[USER@]HOST[:PORT][/EXPORT][?QUERY] or
 * nbd[s]+unix://[USER@]/EXPORT?socket=PATH[&QUERY], QUERY being libnbd's
 * tls-certificates=, tls-psk-file=, tls-username=, tls-hostname= and
 * tls-verify-peer= (refused without TLS, as USER@ is).  0, or -EINVAL with
 * a message in err. */
int nbd_url_parse(const char *url, struct nbd_url *u, char *err, size_t errlen);

/* ---------------------------------------------------------- handshake */
struct nbd_hs {
	/* settings */
	char export_name[NBD_MAX_STRING + 1];
	bool want_structured;
	bool want_tls;               /* NBD_OPT_STARTTLS first, no fallback */

	/* progress */
	int state;
	uint32_t opt;                /* option awaiting its reply */
	uint32_t rep_type, rep_len;
	size_t need, have;           /* bytes wanted in buf, bytes there */
	uint8_t buf[NBD_HS_MAX_REPLY + 32];
	uint8_t out[NBD_MAX_STRING + 128];
	size_t out_len, out_off;     /* bytes to send: out[out_off..out_len) */

	/* results */
	bool tls;                    /* the rest of the haggling went over TLS */
	bool structured, no_zeroes, got_export, got_block_size;
	uint64_t size;
	uint16_t tflags;
	uint32_t min_bs, pref_bs, max_bs;
	char msg[320];               /* why it failed */
};

#define NBD_HS_MORE 0
#define NBD_HS_DONE 1
#define NBD_HS_STARTTLS 2

/* want_tls: send NBD_OPT_STARTTLS before any other option and fail, never
 * fall back, when the server refuses it. */
void nbd_hs_init(struct nbd_hs *hs, const char *export_name, bool want_structured,
		 bool want_tls);
/* Where the next bytes from the server go (len > 0 unless done/failed, or
 * waiting for the TLS handshake). */
uint8_t *nbd_hs_rbuf(struct nbd_hs *hs, size_t *len);
/* n bytes arrived at nbd_hs_rbuf(): NBD_HS_MORE, NBD_HS_DONE (transmission
 * phase reached), NBD_HS_STARTTLS (the server accepted NBD_OPT_STARTTLS:
 * run the TLS handshake on the socket, then call nbd_hs_tls_ready(); every
 * byte after that goes through TLS) or -errno with hs->msg set.  May queue
 * output. */
int nbd_hs_consume(struct nbd_hs *hs, size_t n);
/* The TLS handshake after NBD_HS_STARTTLS succeeded: queues the next
 * option (to be sent over TLS).  0, or -EPROTO in any other state. */
int nbd_hs_tls_ready(struct nbd_hs *hs);
/* True while still in option haggling (NBD_OPT_ABORT makes sense). */
bool nbd_hs_in_options(const struct nbd_hs *hs);
/* Queue NBD_OPT_ABORT (only during option haggling). */
void nbd_hs_abort(struct nbd_hs *hs);

/* ------------------------------------------------------ reply parsing */

/* What the parser knows of one request in flight. */
struct nbd_rx_cmd {
	uint16_t type;               /* NBD_CMD_* */
	uint64_t offset;
	uint32_t len;
	const struct iovec *iov;     /* READ: destination ... */
	int iovcnt;
	uint64_t iov_skip;           /* ... starting this many bytes in */
	/* reset by nbd_rx_cmd_reset() before each (re)send */
	uint64_t data_seen;
	int error;
	bool chunked;                /* a structured chunk arrived */
};

struct nbd_rx_ops {
	/* The request with this cookie, or NULL (protocol error). */
	struct nbd_rx_cmd *(*lookup)(void *opaque, uint64_t cookie);
	/* The reply is complete: err 0 or -errno.  A non-zero return stops
	 * the parser and is returned from nbd_rx_consume (drop the link). */
	int (*done)(void *opaque, struct nbd_rx_cmd *cmd, int err);
};

struct nbd_rx {
	const struct nbd_rx_ops *ops;
	void *opaque;
	bool structured;
	int state;
	size_t need, have;           /* metadata bytes wanted / present */
	uint8_t hdr[40];
	uint8_t msg[NBD_MAX_STRING + 16];
	struct nbd_rx_cmd *cmd;
	uint16_t cflags, ctype;
	uint32_t clen;
	uint64_t doff;               /* data: offset within the request */
	uint32_t dlen, ddone;
	char errtext[160];           /* protocol error or server message */
};

void nbd_rx_init(struct nbd_rx *rx, bool structured,
		 const struct nbd_rx_ops *ops, void *opaque);
void nbd_rx_cmd_reset(struct nbd_rx_cmd *cmd);
/* Where to read next: fills up to max (>= 2) iovecs, returns the count. */
int nbd_rx_iov(struct nbd_rx *rx, struct iovec *iov, int max);
/* n bytes were read into the iovecs of the last nbd_rx_iov() call:
 * 0, or -EPROTO (rx->errtext) / whatever ops->done returned. */
int nbd_rx_consume(struct nbd_rx *rx, size_t n);

/* Up to max iovecs covering len bytes of cmd's buffer from byte off
 * (relative to the request); *covered: how many bytes they hold. */
int nbd_iov_slice(const struct nbd_rx_cmd *cmd, uint64_t off, uint64_t len,
		  struct iovec *out, int max, uint64_t *covered);

/* NBD error number -> -errno. */
int nbd_errno(uint32_t e);

/* Encode a 28-byte request header. */
void nbd_encode_request(uint8_t *p, uint16_t flags, uint16_t type,
			uint64_t cookie, uint64_t offset, uint32_t len);

/* Test seam: the tcp backend completes requests through this pointer
 * (vdu_io_complete unless a host test replaces it). */
extern void (*vbe_nbd_complete_hook)(struct vdu_io *io, int result);

#endif
