/* jbuf.c — JSON text built by appending pieces (see jbuf.h). */
#include "jbuf.h"

#include <stdlib.h>
#include <string.h>

void wshub_jbuf_init(wshub_jbuf_t *b, size_t hint) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
  if (hint > 0) {
    b->data = malloc(hint + 1);
    if (b->data == NULL) {
      b->failed = 1;
      return;
    }
    b->cap = hint + 1;
    b->data[0] = '\0';
  }
}

void wshub_jbuf_free(wshub_jbuf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Room for n more bytes and the terminating NUL. */
static int jbuf_reserve(wshub_jbuf_t *b, size_t n) {
  if (b->failed)
    return 0;
  if (b->len + n + 1 <= b->cap)
    return 1;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + n + 1)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) {
    b->failed = 1;
    return 0;
  }
  b->data = p;
  b->cap = cap;
  return 1;
}

void wshub_jbuf_raw(wshub_jbuf_t *b, const void *p, size_t n) {
  if (!jbuf_reserve(b, n))
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void wshub_jbuf_again(wshub_jbuf_t *b, size_t off, size_t n) {
  if (off + n > b->len) {
    b->failed = 1;
    return;
  }
  if (!jbuf_reserve(b, n)) /* may move data: copy after */
    return;
  memcpy(b->data + b->len, b->data + off, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void wshub_jbuf_int(wshub_jbuf_t *b, int64_t v) {
  char tmp[24];
  size_t i = sizeof(tmp);
  /* Negate as unsigned: INT64_MIN has no positive int64_t. */
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u > 0);
  if (v < 0)
    tmp[--i] = '-';
  wshub_jbuf_raw(b, tmp + i, sizeof(tmp) - i);
}

static int jbuf_sink(const char *p, size_t n, void *arg) {
  wshub_jbuf_t *b = arg;
  wshub_jbuf_raw(b, p, n);
  return b->failed ? -1 : 0;
}

void wshub_jbuf_json(wshub_jbuf_t *b, const json_t *v) {
  if (b->failed)
    return;
  if (v == NULL ||
      json_dump_callback(v, jbuf_sink, b, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
    b->failed = 1;
}

void wshub_jbuf_str(wshub_jbuf_t *b, const char *s, size_t n) {
  if (b->failed)
    return;
  json_t *v = json_stringn(s, n); /* NULL if not UTF-8 */
  wshub_jbuf_json(b, v);
  json_decref(v);
}
