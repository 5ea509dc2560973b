/* fuzz_ws.c — libFuzzer target for wshub's WebSocket ingest path.
 *
 * Each input becomes the byte stream a client sends after a valid opening
 * handshake to a real wshub server on 127.0.0.1 running the chat: wslay's
 * frame parser, masking, control frame and fragmentation rules, UTF-8 and
 * close-code validation, message size limits, the idle/quiescent context
 * release, ws.c's close handling, permessage-deflate's inflation (limits,
 * bad data, kept context), and the chat's message parsing behind it.
 *
 * Input layout: byte 0 selects the mode, the rest is the stream.
 *   bits 0-1: 0 records, sent after the 101 has arrived;
 *             1 raw bytes, sent unframed after the 101;
 *             2 records, sent in the same write as the upgrade request;
 *             3 records, written 5 bytes per loop turn after the 101;
 *   bit 2:    echo mode (the conformance configuration) instead of the chat;
 *   bit 3:    the handshake offers permessage-deflate, so RSV1 messages are
 *             inflated (deflate.c): payloads are then raw DEFLATE data;
 *   bit 4:    with bit 3, the server lets the client keep its context
 *             (--deflate-client-window 12): one inflater for the session.
 * With deflate the server's own messages are compressed too (threshold 0).
 * A record is [b0][b1][ext][payload]: b0 is the frame's first byte as on
 * the wire (FIN, RSV1-3, opcode); b1's low 7 bits are the length code (0-125
 * the length; 126 and 127: a 2- or 8-byte big-endian length follows, copied
 * as is, so non-minimal and huge lengths happen); b1's high bit sends the
 * frame unmasked. The payload is what is left of the input up to that
 * length, masked with a fixed key.
 *
 * The stream also goes to wshub_utf8_valid() and, split at every position
 * the input suggests, to the incremental validator: they must agree.
 *
 * The harness state is the one static below (libFuzzer's entry points take
 * no user pointer); a fresh server and chat are made for every input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "fuzz_harness.h"
#include "utf8.h"
#include "wshub.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_once(0);
  return 0;
}

/* One-shot and incremental UTF-8 validation must agree, however the input
 * is cut. */
static void fuzz_ws_utf8(const uint8_t *p, size_t len) {
  int whole = wshub_utf8_valid(p, len);
  wshub_utf8_t u;
  wshub_utf8_init(&u);
  int ok = 1;
  for (size_t i = 0; i < len; i++)
    if (wshub_utf8_feed(&u, p + i, 1) != 0)
      ok = 0;
    else if (!ok)
      abort(); /* once failed, always failed */
  if (whole != (ok && wshub_utf8_complete(&u)))
    abort();
  /* Cut where the bytes say (each byte's low 3 bits + 1 is a piece). */
  wshub_utf8_init(&u);
  ok = 1;
  size_t i = 0;
  while (i < len) {
    size_t n = (size_t)(p[i] & 7) + 1;
    if (n > len - i)
      n = len - i;
    if (wshub_utf8_feed(&u, p + i, n) != 0)
      ok = 0;
    i += n;
  }
  if (whole != (ok && wshub_utf8_complete(&u)))
    abort();
  if (wshub_utf8_feed(&u, NULL, 0) != (ok ? 0 : -1))
    abort();
}

/* Frames from records (see the top of the file); out holds 8 * len + 16. */
static size_t fuzz_ws_records(const uint8_t *in, size_t len, uint8_t *out) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t i = 0, o = 0;
  while (i + 2 <= len) {
    uint8_t b0 = in[i], b1 = in[i + 1];
    i += 2;
    int masked = !(b1 & 0x80);
    unsigned code = b1 & 0x7f;
    out[o++] = b0;
    out[o++] = (uint8_t)((masked ? 0x80 : 0) | code);
    uint64_t plen = code;
    size_t ext = code == 126 ? 2 : code == 127 ? 8 : 0;
    if (ext > 0) {
      plen = 0;
      for (size_t k = 0; k < ext; k++) {
        uint8_t b = i < len ? in[i++] : 0;
        out[o++] = b;
        plen = plen << 8 | b;
      }
    }
    if (masked) {
      memcpy(out + o, key, 4);
      o += 4;
    }
    size_t take = plen < len - i ? (size_t)plen : len - i;
    for (size_t k = 0; k < take; k++)
      out[o++] = in[i + k] ^ (masked ? key[k % 4] : 0);
    i += take;
  }
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t *f = fz_once(0);
  if (size == 0)
    return 0;
  unsigned mode = data[0] & 3;
  int echo = (data[0] & 4) != 0;
  int deflate = (data[0] & 8) != 0;
  int keep = deflate && (data[0] & 16) != 0;
  const uint8_t *in = data + 1;
  size_t len = size - 1;
  fuzz_ws_utf8(in, len);

  uint8_t *stream = NULL;
  size_t stream_len = len;
  if (mode == 1) {
    stream = malloc(len ? len : 1);
    if (stream == NULL)
      abort();
    memcpy(stream, in, len);
  } else {
    stream = malloc(8 * len + 16);
    if (stream == NULL)
      abort();
    stream_len = fuzz_ws_records(in, len, stream);
  }

  wshub_chat_config_t ccfg;
  wshub_chat_config_init(&ccfg);
  ccfg.max_text = 256;
  ccfg.history = 4;
  wshub_chat_t *chat = wshub_chat_new(&ccfg);
  if (chat == NULL)
    abort();
  wshub_config_t cfg;
  fz_config_init(&cfg);
  cfg.max_message = 1024; /* reachable by small inputs: close 1009 */
  cfg.echo = echo;
  cfg.deflate_threshold = 0;
  cfg.deflate_client_window = keep ? 12 : 0;
  wshub_chat_install(chat, &cfg);
  fz_start(f, &cfg);

  char req[512];
  size_t req_len = fz_upgrade_request(
      "/?nick=fuzz&room=ws",
      deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                "client_max_window_bits\r\n"
              : NULL,
      req, sizeof(req));
  uint8_t *pre = NULL;
  fz_script_t s = {0};
  if (mode == 2) {
    /* Frames right behind the request: they reach ws.c as `rest`. */
    pre = malloc(req_len + stream_len);
    if (pre == NULL)
      abort();
    memcpy(pre, req, req_len);
    memcpy(pre + req_len, stream, stream_len);
    s.pre = pre;
    s.pre_len = req_len + stream_len;
  } else {
    s.pre = (const uint8_t *)req;
    s.pre_len = req_len;
    s.wait_head = 1;
    s.body = stream;
    s.body_len = stream_len;
    s.chunk = mode == 3 ? 5 : 0;
  }
  fz_client_t *c = fz_connect(f, &s);
  if (mode != 2) {
    fz_wait_head(f, c);
    if (fz_status(c) != 101)
      abort(); /* a valid upgrade must be accepted */
  }
  fz_finish(f);
  if (mode == 2 && fz_status(c) != 0 && fz_status(c) != 101)
    abort();
  wshub_chat_free(chat);
  free(pre);
  free(stream);
  return 0;
}
