/* jbuf.h — JSON text built by appending pieces.
 *
 * The chat's hot path serializes each room message once, around fragments
 * it caches (a member object, a room name) and around the history ring's
 * stored messages, instead of building a jansson object per message and
 * dumping it. A jbuf is a growable byte buffer with appenders for literal
 * JSON, integers and strings; string escaping is jansson's (a string value
 * dumped with JSON_ENCODE_ANY), so the output is exactly what json_dumps
 * would write for the same value.
 *
 * Errors are sticky: after a failed append (out of memory, a string that
 * is not UTF-8) every later append does nothing and `failed` stays set;
 * check it once at the end. The caller owns `data` (free it with
 * wshub_jbuf_free, or take it: it is a malloc'd, NUL-terminated string).
 */
#ifndef WSHUB_JBUF_H
#define WSHUB_JBUF_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *data; /* NUL-terminated while not failed */
  size_t len;
  size_t cap;
  int failed;
} wshub_jbuf_t;

/* An empty buffer with room for `hint` bytes (0: allocate on first use). */
void wshub_jbuf_init(wshub_jbuf_t *b, size_t hint);
void wshub_jbuf_free(wshub_jbuf_t *b);

/* Appends n bytes as they are (JSON the caller vouches for). */
void wshub_jbuf_raw(wshub_jbuf_t *b, const void *p, size_t n);
/* Appends a string literal. */
#define wshub_jbuf_lit(b, s) wshub_jbuf_raw((b), (s), sizeof(s) - 1)
/* Appends a copy of the buffer's own bytes [off, off + n). */
void wshub_jbuf_again(wshub_jbuf_t *b, size_t off, size_t n);
/* Appends a decimal integer. */
void wshub_jbuf_int(wshub_jbuf_t *b, int64_t v);
/* Appends s[0..n) as a quoted, escaped JSON string; fails if s is not
 * UTF-8. */
void wshub_jbuf_str(wshub_jbuf_t *b, const char *s, size_t n);
/* Appends any jansson value, compact (JSON_COMPACT | JSON_ENCODE_ANY). */
void wshub_jbuf_json(wshub_jbuf_t *b, const json_t *v);

#endif
