/* deflate.c — permessage-deflate with zlib (see deflate.h).
 *
 * Compressing (RFC 7692 §7.2.1): raw DEFLATE, flushed with Z_SYNC_FLUSH so
 * the output ends with an empty stored block, whose 00 00 ff ff is cut off;
 * the stream is reset after every message (no context takeover). zlib
 * cannot make raw DEFLATE with a 256-byte window, so a client that asks
 * for server_max_window_bits=8 gets a 9-bit compressor: zlib never refers
 * further back than 2^bits - 262 bytes, 250 for 9 bits, which is within
 * the 256 bytes the client keeps.
 *
 * Decompressing (§7.2.2): the payload, then 00 00 ff ff, inflated with
 * Z_BLOCK so the end of the input can be checked to fall at the end of a
 * block; output grows by doubling and stops one byte past the limit, so a
 * small message that inflates to gigabytes costs at most the limit.
 */
#include "deflate.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "frame.h"

/* zlib allocates through wshub's allocator (the OOM tests see it). */
static voidpf deflate_zalloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  return calloc(items, size);
}

static void deflate_zfree(voidpf opaque, voidpf p) {
  (void)opaque;
  free(p);
}

static z_stream *deflate_stream_new(void) {
  z_stream *z = calloc(1, sizeof(*z));
  if (z != NULL) {
    z->zalloc = deflate_zalloc;
    z->zfree = deflate_zfree;
  }
  return z;
}

void wshub_deflate_init(wshub_deflate_t *d, uv_loop_t *loop, int level,
                        size_t threshold) {
  memset(d, 0, sizeof(*d));
  d->level = level >= 1 && level <= 9 ? level : Z_DEFAULT_COMPRESSION;
  d->threshold = threshold;
  uv_timer_init(loop, &d->timer);
  uv_unref((uv_handle_t *)&d->timer);
}

void wshub_deflate_free(wshub_deflate_t *d) {
  for (size_t i = 0; i < 8; i++) {
    if (d->def[i] != NULL) {
      deflateEnd(d->def[i]);
      free(d->def[i]);
      d->def[i] = NULL;
    }
  }
  wshub_deflate_inflater_free(d->inf);
  d->inf = NULL;
}

static void deflate_on_idle(uv_timer_t *t) {
  wshub_deflate_t *d =
      (wshub_deflate_t *)((char *)t - offsetof(wshub_deflate_t, timer));
  if (uv_now(t->loop) - d->last_used < WSHUB_DEFLATE_IDLE_MS)
    return;
  wshub_deflate_free(d);
  uv_timer_stop(t);
}

/* Marks a use, and has the idle timer watch the streams. */
static void deflate_used(wshub_deflate_t *d) {
  d->last_used = uv_now(d->timer.loop);
  if (!uv_is_active((uv_handle_t *)&d->timer) &&
      !uv_is_closing((uv_handle_t *)&d->timer))
    uv_timer_start(&d->timer, deflate_on_idle, WSHUB_DEFLATE_IDLE_MS,
                   WSHUB_DEFLATE_IDLE_MS);
}

static z_stream *deflate_compressor(wshub_deflate_t *d, unsigned bits) {
  unsigned zbits = bits < 9 ? 9 : bits > 15 ? 15 : bits;
  z_stream **slot = &d->def[zbits - 8];
  if (*slot == NULL) {
    z_stream *z = deflate_stream_new();
    if (z == NULL)
      return NULL;
    if (deflateInit2(z, d->level, Z_DEFLATED, -(int)zbits, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      free(z);
      return NULL;
    }
    *slot = z;
  }
  deflate_used(d);
  return *slot;
}

/* The compressed frame for payload[0..len), tagged `tag`; a frame of length
 * 0 when compression does not make it smaller; NULL if out of memory. */
static wshub_buf_t *deflate_build(z_stream *z, uint8_t opcode,
                                  const uint8_t *payload, size_t len,
                                  uint8_t tag) {
  /* Room for a 10-byte header and for output as long as the input plus the
   * 4 bytes that are cut: anything longer is not worth sending. */
  wshub_buf_t *b = wshub_buf_new(10 + len + 4);
  if (b == NULL)
    return NULL;
  b->tag = tag;
  z->next_in = (Bytef *)payload;
  z->avail_in = (uInt)len;
  z->next_out = (Bytef *)b->data + 10;
  z->avail_out = (uInt)(len + 4);
  int r = deflate(z, Z_SYNC_FLUSH);
  size_t out = len + 4 - z->avail_out;
  int whole = r == Z_OK && z->avail_in == 0 && z->avail_out > 0;
  deflateReset(z);
  if (r == Z_MEM_ERROR) {
    wshub_buf_unref(b);
    return NULL;
  }
  const uint8_t *end = (const uint8_t *)b->data + 10 + out;
  if (!whole || out < 4 || memcmp(end - 4, "\0\0\xff\xff", 4) != 0 ||
      out - 4 >= len)
    out = 0; /* not worth it: an empty verdict, send the plain frame */
  else
    out -= 4;
  if (out == 0) {
    wshub_buf_t *verdict = realloc(b, sizeof(*b));
    if (verdict != NULL)
      verdict->cap = 0;
    return verdict != NULL ? verdict : b;
  }
  uint8_t head[10];
  size_t h = wshub_frame_header(head, opcode, out);
  head[0] |= 0x40; /* RSV1: a compressed message */
  memmove(b->data + h, b->data + 10, out);
  memcpy(b->data, head, h);
  b->len = h + out;
  /* Do not keep a large allocation for a well-compressed message. */
  if (b->cap - b->len > 4096) {
    wshub_buf_t *small = realloc(b, sizeof(*b) + b->len);
    if (small != NULL) {
      b = small;
      b->cap = b->len;
    }
  }
  return b;
}

wshub_buf_t *wshub_deflate_frame(wshub_deflate_t *d, wshub_buf_t *frame,
                                 unsigned bits) {
  const uint8_t *f = (const uint8_t *)frame->data;
  if (frame->len < 2 || (f[0] & 0xf0) != 0x80 ||
      ((f[0] & 0x0f) != WSHUB_OP_TEXT && (f[0] & 0x0f) != WSHUB_OP_BINARY))
    return frame; /* control frames, and anything not ours, go as they are */
  size_t h = (f[1] & 0x7f) < 126 ? 2 : (f[1] & 0x7f) == 126 ? 4 : 10;
  size_t len = frame->len - h;
  if (len < d->threshold || len == 0)
    return frame;
  uint8_t tag = (uint8_t)(bits < 9 ? 9 : bits > 15 ? 15 : bits);
  wshub_buf_t *alt = wshub_buf_alt(frame, tag);
  if (alt == NULL) {
    z_stream *z = deflate_compressor(d, tag);
    if (z == NULL)
      return frame;
    alt = deflate_build(z, f[0] & 0x0f, f + h, len, tag);
    if (alt == NULL)
      return frame;
    alt = wshub_buf_add_alt(frame, alt);
  }
  return alt->len > 0 ? alt : frame;
}

z_stream *wshub_deflate_inflater_new(unsigned bits) {
  z_stream *z = deflate_stream_new();
  if (z == NULL)
    return NULL;
  if (inflateInit2(z, -(int)(bits < 8 ? 8 : bits > 15 ? 15 : bits)) != Z_OK) {
    free(z);
    return NULL;
  }
  return z;
}

void wshub_deflate_inflater_free(z_stream *z) {
  if (z == NULL)
    return;
  inflateEnd(z);
  free(z);
}

/* After a final block the stream is done; a client keeping its context
 * goes on from the same window. */
static int deflate_restart(z_stream *z, int keep) {
  uint8_t dict[32768];
  uInt n = 0;
  if (keep && inflateGetDictionary(z, dict, &n) != Z_OK)
    return Z_STREAM_ERROR;
  if (inflateReset(z) != Z_OK)
    return Z_STREAM_ERROR;
  if (keep && n > 0 && inflateSetDictionary(z, dict, n) != Z_OK)
    return Z_STREAM_ERROR;
  return Z_OK;
}

int wshub_deflate_inflate(wshub_deflate_t *d, z_stream *own, const uint8_t *in,
                          size_t len, size_t max, uint8_t **out,
                          size_t *out_len) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  z_stream *z = own;
  if (z == NULL) {
    if (d->inf == NULL && (d->inf = wshub_deflate_inflater_new(15)) == NULL)
      return WSHUB_INFLATE_NOMEM;
    z = d->inf;
    deflate_used(d);
  }
  if (len == 0) {
    /* Not DEFLATE (that is at least one byte), but plainly an empty
     * message: taken as one, as other servers do. */
    *out = malloc(1);
    *out_len = 0;
    return *out != NULL ? WSHUB_INFLATE_OK : WSHUB_INFLATE_NOMEM;
  }
  size_t cap = len < max / 4 ? len * 4 + 64 : max + 1;
  if (cap > max + 1)
    cap = max + 1;
  uint8_t *buf = malloc(cap);
  if (buf == NULL)
    return WSHUB_INFLATE_NOMEM;
  int res = WSHUB_INFLATE_OK, in_tail = 0, ended = 0;
  size_t n = 0;
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)len;
  for (;;) {
    if (z->avail_in == 0 && !in_tail) {
      in_tail = 1;
      z->next_in = (Bytef *)tail;
      z->avail_in = sizeof(tail);
    }
    if (n == cap) {
      if (cap > max) {
        res = WSHUB_INFLATE_TOO_BIG;
        break;
      }
      size_t ncap = cap * 2 < max + 1 ? cap * 2 : max + 1;
      uint8_t *nb = realloc(buf, ncap);
      if (nb == NULL) {
        res = WSHUB_INFLATE_NOMEM;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    z->next_out = buf + n;
    z->avail_out = (uInt)(cap - n);
    int r = inflate(z, Z_BLOCK);
    n = cap - z->avail_out;
    if (r == Z_STREAM_END) {
      /* A final block: nothing of the message may follow it. */
      ended = 1;
      if (!in_tail && z->avail_in > 0)
        res = WSHUB_INFLATE_BAD;
      break;
    }
    if (r == Z_MEM_ERROR) {
      res = WSHUB_INFLATE_NOMEM;
      break;
    }
    if (r != Z_OK && r != Z_BUF_ERROR) {
      res = WSHUB_INFLATE_BAD;
      break;
    }
    if (in_tail && z->avail_in == 0 && n < cap) {
      /* Everything is in; the message must end at a block boundary. */
      if (!(z->data_type & 128))
        res = WSHUB_INFLATE_BAD;
      break;
    }
    if (r == Z_BUF_ERROR && n < cap && z->avail_in > 0) {
      res = WSHUB_INFLATE_BAD; /* no progress possible */
      break;
    }
  }
  if (res == WSHUB_INFLATE_OK && n > max)
    res = WSHUB_INFLATE_TOO_BIG;
  if (own == NULL || res != WSHUB_INFLATE_OK)
    inflateReset(z);
  else if (ended && deflate_restart(z, 1) != Z_OK)
    res = WSHUB_INFLATE_NOMEM;
  if (res != WSHUB_INFLATE_OK) {
    free(buf);
    return res;
  }
  *out = buf;
  *out_len = n;
  return WSHUB_INFLATE_OK;
}
