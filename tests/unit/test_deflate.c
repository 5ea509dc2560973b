/* test_deflate.c — unit tests of deflate.c (RFC 7692 §7.2) and of the
 * alternative-encoding chain of buf.c it relies on.
 *
 * Compressed frames are decoded here with zlib directly, as a client
 * would: the payload plus 00 00 ff ff, raw inflate with the window the
 * client keeps. Inflation is fed data made here with zlib: whole messages,
 * messages that refer back into an earlier one, a final block followed by
 * more data, truncated data, garbage and a zip bomb.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <zlib.h>

#include "deflate.h"
#include "frame.h"
#include "unit.h"

/* Deterministic bytes: compressible text, or noise. */
static void fill_text(uint8_t *p, size_t n) {
  static const char *const words[] = {"chat ",    "room ",  "hello ",    "the ",
                                      "message ", "wshub ", "{\"type\":"};
  uint32_t x = 12345;
  size_t i = 0;
  while (i < n) {
    x = x * 1103515245u + 12345u;
    const char *w = words[(x >> 16) % 7];
    for (size_t j = 0; w[j] && i < n; j++)
      p[i++] = (uint8_t)w[j];
  }
}

static void fill_noise(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (uint8_t)(seed >> 24);
  }
}

/* Parses a server frame: header length, payload length, RSV1. */
static size_t frame_parse(const wshub_buf_t *f, size_t *plen, int *rsv1) {
  const uint8_t *d = (const uint8_t *)f->data;
  size_t h = 2, len = d[1] & 0x7f;
  if (len == 126) {
    len = (size_t)d[2] << 8 | d[3];
    h = 4;
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | d[2 + i];
    h = 10;
  }
  *plen = len;
  *rsv1 = (d[0] & 0x40) != 0;
  return h;
}

/* Inflates like a client with a 2^bits window; returns the length or -1. */
static long client_inflate(const uint8_t *p, size_t n, int bits, uint8_t *out,
                           size_t cap) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (inflateInit2(&z, -bits) != Z_OK)
    return -1;
  uint8_t *in = malloc(n + 4);
  memcpy(in, p, n);
  memcpy(in + n, "\0\0\xff\xff", 4);
  z.next_in = in;
  z.avail_in = (uInt)(n + 4);
  z.next_out = out;
  z.avail_out = (uInt)cap;
  int r = inflate(&z, Z_SYNC_FLUSH);
  long got = (r == Z_OK || r == Z_STREAM_END) && z.avail_in == 0
                 ? (long)(cap - z.avail_out)
                 : -1;
  inflateEnd(&z);
  free(in);
  return got;
}

/* Compresses like a client: raw deflate, sync flush, tail cut. With
 * `keep` the stream goes on (context takeover). */
static size_t client_deflate(z_stream *z, const uint8_t *p, size_t n,
                             uint8_t *out, size_t cap) {
  z->next_in = (Bytef *)p;
  z->avail_in = (uInt)n;
  z->next_out = out;
  z->avail_out = (uInt)cap;
  deflate(z, Z_SYNC_FLUSH);
  return cap - z->avail_out - 4;
}

static void test_outbound(unit_t *T, wshub_deflate_t *d) {
  static uint8_t text[200000], out[200000];
  fill_text(text, sizeof(text));

  /* Below the threshold (64): the frame itself. */
  wshub_buf_t *small = wshub_frame_build(WSHUB_OP_TEXT, text, 63);
  CHECK(wshub_deflate_frame(d, small, 15) == small);
  CHECK(small->alt == NULL);
  wshub_buf_unref(small);

  /* Control frames are never compressed. */
  wshub_buf_t *ping = wshub_frame_build(WSHUB_OP_PING, text, 100);
  CHECK(wshub_deflate_frame(d, ping, 15) == ping);
  wshub_buf_unref(ping);

  /* A compressible message: compressed once, RSV1, decodes exactly. */
  wshub_buf_t *f = wshub_frame_build(WSHUB_OP_TEXT, text, 1000);
  wshub_buf_t *c = wshub_deflate_frame(d, f, 15);
  CHECK(c != f);
  CHECK(wshub_deflate_frame(d, f, 15) == c); /* the same buffer again */
  size_t plen;
  int rsv1;
  size_t h = frame_parse(c, &plen, &rsv1);
  CHECK_EQ_INT(rsv1, 1);
  CHECK_EQ_INT(((uint8_t)c->data[0]) & 0x8f, 0x81); /* FIN, text */
  CHECK_EQ_INT(h + plen, c->len);
  CHECK(plen < 1000);
  long n = client_inflate((uint8_t *)c->data + h, plen, 15, out, sizeof(out));
  CHECK_EQ_INT(n, 1000);
  CHECK(memcmp(out, text, 1000) == 0);

  /* Another window is another alternative, decodable with that window. */
  wshub_buf_t *c9 = wshub_deflate_frame(d, f, 9);
  CHECK(c9 != c && c9 != f);
  CHECK_EQ_INT(c9->tag, 9);
  h = frame_parse(c9, &plen, &rsv1);
  CHECK_EQ_INT(
      client_inflate((uint8_t *)c9->data + h, plen, 9, out, sizeof(out)), 1000);
  CHECK(memcmp(out, text, 1000) == 0);
  wshub_buf_unref(f);

  /* Window 8 is made with zlib's 9 bits, which never refers back more
   * than 250 bytes: a client keeping 256 bytes decodes it. Data repeating
   * at distance 300 and 200 gives it the chance to go too far. */
  uint8_t rep[3000];
  fill_noise(rep, 300, 7);
  for (size_t i = 300; i < sizeof(rep); i++)
    rep[i] = i % 2 ? rep[i - 300] : rep[i - 200];
  f = wshub_frame_build(WSHUB_OP_BINARY, rep, sizeof(rep));
  c = wshub_deflate_frame(d, f, 8);
  CHECK(c != f);
  h = frame_parse(c, &plen, &rsv1);
  CHECK_EQ_INT(((uint8_t)c->data[0]) & 0x0f, WSHUB_OP_BINARY);
  CHECK_EQ_INT(
      client_inflate((uint8_t *)c->data + h, plen, 8, out, sizeof(out)),
      (long)sizeof(rep));
  CHECK(memcmp(out, rep, sizeof(rep)) == 0);
  wshub_buf_unref(f);

  /* Incompressible: sent plain, and not tried again. */
  uint8_t noise[4000];
  fill_noise(noise, sizeof(noise), 99);
  f = wshub_frame_build(WSHUB_OP_BINARY, noise, sizeof(noise));
  CHECK(wshub_deflate_frame(d, f, 15) == f);
  CHECK(f->alt != NULL && f->alt->len == 0);
  CHECK(wshub_deflate_frame(d, f, 15) == f);
  wshub_buf_unref(f);

  /* A large message: 64-bit length header, and the buffer shrunk. */
  f = wshub_frame_build(WSHUB_OP_TEXT, text, sizeof(text));
  c = wshub_deflate_frame(d, f, 15);
  h = frame_parse(c, &plen, &rsv1);
  CHECK_EQ_INT(h, 4 + (plen > 0xffff ? 6 : 0));
  CHECK_EQ_INT(c->cap, c->len);
  CHECK_EQ_INT(
      client_inflate((uint8_t *)c->data + h, plen, 15, out, sizeof(out)),
      (long)sizeof(text));
  CHECK(memcmp(out, text, sizeof(text)) == 0);
  wshub_buf_unref(f);
}

static void test_alt_chain(unit_t *T) {
  wshub_buf_t *b = wshub_buf_copy("plain", 5);
  CHECK(wshub_buf_alt(b, 1) == NULL);
  wshub_buf_t *a1 = wshub_buf_copy("one", 3), *a2 = wshub_buf_copy("two", 3);
  a1->tag = 1;
  a2->tag = 2;
  CHECK(wshub_buf_add_alt(b, a1) == a1);
  CHECK(wshub_buf_add_alt(b, a2) == a2);
  CHECK(wshub_buf_alt(b, 1) == a1);
  CHECK(wshub_buf_alt(b, 2) == a2);
  /* Shared: the alternatives made before are shared with it (other threads
   * count their references too); a second alternative with a taken tag is
   * refused (freed). */
  wshub_buf_share(b);
  CHECK(a1->shared && a2->shared);
  wshub_buf_t *again = wshub_buf_copy("uno", 3);
  again->tag = 1;
  CHECK(wshub_buf_add_alt(b, again) == a1);
  /* An alternative outlives its buffer while someone holds it. */
  wshub_buf_ref(a2);
  wshub_buf_unref(b);
  CHECK_EQ_INT(a2->len, 3);
  wshub_buf_unref(a2);
}

static void test_inflate(unit_t *T, wshub_deflate_t *d) {
  static uint8_t text[50000], comp[60000];
  fill_text(text, sizeof(text));
  z_stream z;
  memset(&z, 0, sizeof(z));
  deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  size_t clen = client_deflate(&z, text, sizeof(text), comp, sizeof(comp));
  deflateReset(&z);
  uint8_t *out = NULL;
  size_t out_len = 0;

  /* A whole message, with exactly enough room and with one byte less. */
  CHECK_EQ_INT(
      wshub_deflate_inflate(d, NULL, comp, clen, sizeof(text), &out, &out_len),
      WSHUB_INFLATE_OK);
  CHECK_EQ_INT(out_len, sizeof(text));
  CHECK(out != NULL && memcmp(out, text, sizeof(text)) == 0);
  free(out);
  CHECK_EQ_INT(wshub_deflate_inflate(d, NULL, comp, clen, sizeof(text) - 1,
                                     &out, &out_len),
               WSHUB_INFLATE_TOO_BIG);

  /* Empty: one byte from a compressor, or nothing at all. */
  uint8_t empty[16];
  size_t elen = client_deflate(&z, text, 0, empty, sizeof(empty));
  deflateReset(&z);
  CHECK_EQ_INT(elen, 1);
  CHECK_EQ_INT(wshub_deflate_inflate(d, NULL, empty, elen, 100, &out, &out_len),
               WSHUB_INFLATE_OK);
  CHECK_EQ_INT(out_len, 0);
  free(out);
  CHECK_EQ_INT(wshub_deflate_inflate(d, NULL, empty, 0, 100, &out, &out_len),
               WSHUB_INFLATE_OK);
  CHECK_EQ_INT(out_len, 0);
  free(out);

  /* A zip bomb: 10 MB of zeros in about 10 KB, against a 1 MiB limit. */
  uint8_t *zeros = calloc(1, 10000000);
  uint8_t *bomb = malloc(100000);
  size_t blen = client_deflate(&z, zeros, 10000000, bomb, 100000);
  deflateReset(&z);
  CHECK(blen < 20000);
  CHECK_EQ_INT(
      wshub_deflate_inflate(d, NULL, bomb, blen, 1 << 20, &out, &out_len),
      WSHUB_INFLATE_TOO_BIG);
  free(zeros);
  free(bomb);

  /* Garbage, a truncated block, a final block then more. */
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x12, 0x34};
  CHECK_EQ_INT(
      wshub_deflate_inflate(d, NULL, junk, sizeof(junk), 1000, &out, &out_len),
      WSHUB_INFLATE_BAD);
  CHECK_EQ_INT(wshub_deflate_inflate(d, NULL, comp, clen / 2, sizeof(text),
                                     &out, &out_len),
               WSHUB_INFLATE_BAD);
  uint8_t fin[200];
  z.next_in = text;
  z.avail_in = 100;
  z.next_out = fin;
  z.avail_out = sizeof(fin);
  CHECK_EQ_INT(deflate(&z, Z_FINISH), Z_STREAM_END);
  size_t flen = sizeof(fin) - z.avail_out;
  deflateReset(&z);
  CHECK_EQ_INT(wshub_deflate_inflate(d, NULL, fin, flen, 1000, &out, &out_len),
               WSHUB_INFLATE_OK);
  CHECK_EQ_INT(out_len, 100);
  free(out);
  fin[flen] = 0x00; /* one byte after the final block */
  CHECK_EQ_INT(
      wshub_deflate_inflate(d, NULL, fin, flen + 1, 1000, &out, &out_len),
      WSHUB_INFLATE_BAD);
  /* The shared inflater is reset after a failure. */
  out = NULL;
  CHECK_EQ_INT(
      wshub_deflate_inflate(d, NULL, comp, clen, sizeof(text), &out, &out_len),
      WSHUB_INFLATE_OK);
  free(out);

  /* Context takeover: the second message refers back into the first. */
  uint8_t m1[300], m2[300];
  size_t l1 = client_deflate(&z, text, 1000, m1, sizeof(m1));
  size_t l2 = client_deflate(&z, text, 1000, m2, sizeof(m2));
  CHECK(l2 < l1);
  z_stream *own = wshub_deflate_inflater_new(15);
  CHECK(own != NULL);
  CHECK_EQ_INT(wshub_deflate_inflate(d, own, m1, l1, 1000, &out, &out_len),
               WSHUB_INFLATE_OK);
  free(out);
  CHECK_EQ_INT(wshub_deflate_inflate(d, own, m2, l2, 1000, &out, &out_len),
               WSHUB_INFLATE_OK);
  CHECK_EQ_INT(out_len, 1000);
  CHECK(memcmp(out, text, 1000) == 0);
  free(out);
  wshub_deflate_inflater_free(own);
  /* Without a kept context the reference is invalid data. */
  CHECK_EQ_INT(wshub_deflate_inflate(d, NULL, m2, l2, 1000, &out, &out_len),
               WSHUB_INFLATE_BAD);
  deflateEnd(&z);
}

int main(void) {
  unit_t t = {0}, *T = &t;
  uv_loop_t loop;
  uv_loop_init(&loop);
  wshub_deflate_t d;
  wshub_deflate_init(&d, &loop, 6, 64);
  test_alt_chain(T);
  test_outbound(T, &d);
  test_inflate(T, &d);
  CHECK(uv_is_active((uv_handle_t *)&d.timer));
  wshub_deflate_free(&d);
  uv_close((uv_handle_t *)&d.timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
  return unit_finish(T);
}
