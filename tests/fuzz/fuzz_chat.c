/* fuzz_chat.c — libFuzzer target for the chat protocol (docs/PROTOCOL.md).
 *
 * Per input, a fresh server with the chat runs on 127.0.0.1. A first
 * client, "watcher" (id c1, in lobby), connects and stays, so that room
 * messages, presence notices and direct messages to c1 have a receiver.
 * Then the fuzzing client (c2) connects and sends the input, cut at every
 * 0x1e byte (ASCII record separator), as one masked text frame per piece;
 * then the whole input as one binary frame, then a close frame. Seeds can
 * therefore hold a conversation: join, nick, message, resume, leave, a
 * direct message "to":"c1", bad JSON... If the input starts with '?', its
 * first piece is the query string of c2's upgrade request instead (bytes
 * that may not appear in a request-target are percent-encoded; '%' is
 * kept as is), driving the room/nick/after parameters of on_open.
 *
 * The pieces also go to wshub_chat_nick_valid(), wshub_chat_room_valid()
 * and wshub_chat_query_param(), checking their contracts.
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

#define FUZZ_CHAT_SEP 0x1e

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_once(0);
  return 0;
}

/* The pure helpers on one piece, against their documented contracts. */
static void fuzz_chat_helpers(const uint8_t *p, size_t len) {
  const char *s = (const char *)p;
  int room = wshub_chat_room_valid(s, len);
  int chars_ok = len >= 1 && len <= 64;
  for (size_t i = 0; i < len && chars_ok; i++) {
    char ch = s[i];
    chars_ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
               (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
  }
  if (room != chars_ok)
    abort();
  if (wshub_chat_nick_valid(s, len) && !wshub_utf8_valid(p, len))
    abort(); /* a valid nickname is valid UTF-8 */
  static const char *const keys[] = {"room", "nick", "after", "a", ""};
  static const size_t caps[] = {1, 2, 8, 80, 129};
  for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
      char out[129];
      memset(out, 'Z', sizeof(out));
      int n = wshub_chat_query_param(s, len, keys[k], out, caps[c]);
      if (n == -1 || n == -2)
        continue; /* absent, or longer than caps[c] - 1 */
      if (n < 0 || (size_t)n >= caps[c] || out[n] != '\0')
        abort(); /* fits, NUL-terminated */
      if ((size_t)n > len)
        abort(); /* decoding never grows */
    }
}

/* "/" + the query piece, with what may not appear in a request-target
 * percent-encoded. */
static size_t fuzz_chat_target(const uint8_t *p, size_t len, char *out,
                               size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  out[o++] = '/';
  for (size_t i = 0; i < len && o + 4 < cap; i++) {
    uint8_t b = p[i];
    if (b > 0x20 && b < 0x7f && b != '#' && b != '"' && b != '<' && b != '>' &&
        b != '\\' && b != '^' && b != '`' && b != '{' && b != '|' && b != '}') {
      out[o++] = (char)b;
    } else {
      out[o++] = '%';
      out[o++] = hex[b >> 4];
      out[o++] = hex[b & 15];
    }
  }
  out[o] = '\0';
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t *f = fz_once(0);

  /* Pieces, each also checked by the pure helpers. */
  size_t first_end = 0;
  while (first_end < size && data[first_end] != FUZZ_CHAT_SEP)
    first_end++;
  for (size_t i = 0; i <= size;) {
    size_t j = i;
    while (j < size && data[j] != FUZZ_CHAT_SEP)
      j++;
    fuzz_chat_helpers(data + i, j - i);
    i = j + 1;
  }

  char target[1024] = "/?nick=fuzzer";
  size_t start = 0;
  if (size > 0 && data[0] == '?') {
    fuzz_chat_target(data, first_end, target, sizeof(target));
    start = first_end < size ? first_end + 1 : size;
  }

  /* Frames: the pieces as text, the input as binary, a close 1000. */
  uint8_t *frames = malloc(2 * size + 14 * (size + 3) + 64);
  if (frames == NULL)
    abort();
  size_t n = 0;
  for (size_t i = start; i < size;) {
    size_t j = i;
    while (j < size && data[j] != FUZZ_CHAT_SEP)
      j++;
    n += fz_frame(0x81, data + i, j - i, frames + n);
    i = j + 1;
  }
  n += fz_frame(0x82, data, size, frames + n);
  static const uint8_t bye[] = {0x03, 0xe8, 'b', 'y', 'e'};
  n += fz_frame(0x88, bye, sizeof(bye), frames + n);

  wshub_chat_config_t ccfg;
  wshub_chat_config_init(&ccfg);
  ccfg.max_text = 512; /* text_too_long within reach */
  ccfg.history = 8;    /* gaps within reach */
  ccfg.max_rooms = 32;
  ccfg.presence_limit = 4;
  wshub_chat_t *chat = wshub_chat_new(&ccfg);
  if (chat == NULL)
    abort();
  wshub_config_t cfg;
  fz_config_init(&cfg);
  cfg.max_message = 8192;
  wshub_chat_install(chat, &cfg);
  fz_start(f, &cfg);

  char wreq[256], req[1400];
  size_t wreq_len =
      fz_upgrade_request("/?room=lobby&nick=watcher", NULL, wreq, sizeof(wreq));
  fz_script_t ws = {
      .pre = (const uint8_t *)wreq, .pre_len = wreq_len, .hold = 1};
  fz_client_t *watcher = fz_connect(f, &ws);
  fz_wait_head(f, watcher);
  if (fz_status(watcher) != 101)
    abort();

  size_t req_len = fz_upgrade_request(target, NULL, req, sizeof(req));
  if (req_len == 0)
    abort();
  fz_script_t s = {.pre = (const uint8_t *)req,
                   .pre_len = req_len,
                   .wait_head = 1,
                   .body = frames,
                   .body_len = n};
  fz_client_t *c = fz_connect(f, &s);
  fz_wait_head(f, c);
  if (fz_status(c) != 101)
    abort(); /* the chat accepts every well-formed upgrade */
  fz_wait_sent(f, c);
  fz_finish(f); /* releases the watcher */
  wshub_chat_free(chat);
  free(frames);
  return 0;
}
