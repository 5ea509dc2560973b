/* utf8.h — incremental UTF-8 validation (RFC 3629) for WebSocket text
 * messages and close reasons.
 *
 * A validator is a small value owned by its caller (ws.c keeps one per
 * connection). It accepts the bytes of one message in any number of pieces,
 * split anywhere, even inside a character, and reports the first byte that
 * can no longer start or continue a valid sequence ("fail fast"): overlong
 * forms, UTF-16 surrogates (U+D800..U+DFFF), code points above U+10FFFF and
 * stray continuation bytes are all invalid. No allocation, no globals.
 */
#ifndef WSHUB_UTF8_H
#define WSHUB_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t state; /* private: 0 = at a character boundary */
  uint32_t aux;   /* private */
} wshub_utf8_t;

void wshub_utf8_init(wshub_utf8_t *u);

/* Feeds len bytes. Returns 0 while everything fed so far is a valid prefix
 * of UTF-8 text, or -1 from the first invalid byte on (and every later call
 * returns -1 too, until wshub_utf8_init). */
int wshub_utf8_feed(wshub_utf8_t *u, const uint8_t *p, size_t len);

/* 1 if the bytes fed so far are valid and end on a character boundary
 * (i.e. the text is complete), else 0. */
int wshub_utf8_complete(const wshub_utf8_t *u);

/* One-shot: 1 if p[0..len) is complete, valid UTF-8, else 0. */
int wshub_utf8_valid(const uint8_t *p, size_t len);

#endif
