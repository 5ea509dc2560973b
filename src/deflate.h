/* deflate.h — permessage-deflate's compression and decompression (RFC 7692
 * §7.2) with zlib.
 *
 * Each server (one per loop) owns a wshub_deflate_t: the zlib streams it
 * compresses with, one per window size in use, and the inflater it shares
 * among every client that compresses each message on its own. They are made
 * on first use and freed after WSHUB_DEFLATE_IDLE_MS without use, so a
 * server that compresses nothing holds nothing.
 *
 * Outbound, a message is compressed once however many clients get it: the
 * compressed frame is attached to the plain frame as an alternative (buf.h,
 * `alt`) and lives as long as the plain frame does. Every server message is
 * compressed without context (pmd.h), so that frame is right for every
 * client that negotiated the same window. Inbound, a client that keeps its
 * context (pmd.h's client_bits) has an inflater of its own, owned by its
 * session (ws.c) and made by wshub_deflate_inflater_new.
 */
#ifndef WSHUB_DEFLATE_H
#define WSHUB_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

#define WSHUB_DEFLATE_IDLE_MS 10000

struct z_stream_s;

typedef struct {
  struct z_stream_s *def[8]; /* compressors by window bits - 8 (8 uses 9) */
  struct z_stream_s *inf;    /* the shared inflater, window 15 */
  uint64_t last_used;        /* uv_now() of the last use */
  uv_timer_t timer;          /* frees idle streams; a server handle */
  int level;                 /* zlib level */
  size_t threshold;          /* smaller payloads go out plain */
} wshub_deflate_t;

/* Sets the parameters and initialises the (unreferenced) timer; the server
 * owns the timer's `data` and closes it when it shuts down. */
void wshub_deflate_init(wshub_deflate_t *d, uv_loop_t *loop, int level,
                        size_t threshold);
/* Frees every stream (the timer is the server's to close). */
void wshub_deflate_free(wshub_deflate_t *d);

/* What to send to a client that negotiated deflate with this server window:
 * the compressed alternative of a data frame built by frame.c, made now if
 * it is not made yet; or the frame itself when it is a control frame, below
 * the threshold, not made smaller by compression, or could not be
 * compressed for want of memory (a plain message is always allowed).
 * Borrowed: it lives as long as `frame`. */
wshub_buf_t *wshub_deflate_frame(wshub_deflate_t *d, wshub_buf_t *frame,
                                 unsigned bits);

/* An inflater keeping a 2^bits window between messages; NULL if out of
 * memory. */
struct z_stream_s *wshub_deflate_inflater_new(unsigned bits);
void wshub_deflate_inflater_free(struct z_stream_s *z);

enum {
  WSHUB_INFLATE_OK = 0,
  WSHUB_INFLATE_BAD = 1,     /* not valid DEFLATE data: close 1007 */
  WSHUB_INFLATE_TOO_BIG = 2, /* more than max bytes: close 1009 */
  WSHUB_INFLATE_NOMEM = 3,   /* out of memory: close 1011 */
};

/* Decompresses one message's payload (all of its frames). `own` is the
 * client's inflater, or NULL to use the shared one (a message compressed
 * on its own). On WSHUB_INFLATE_OK, *out (malloc'd, the caller frees it)
 * holds *out_len bytes, never more than max. */
int wshub_deflate_inflate(wshub_deflate_t *d, struct z_stream_s *own,
                          const uint8_t *in, size_t len, size_t max,
                          uint8_t **out, size_t *out_len);

#endif
