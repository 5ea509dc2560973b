/* buf.c — reference-counted byte buffers (see buf.h). */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

wshub_buf_t *wshub_buf_new(size_t cap) {
  wshub_buf_t *b = malloc(sizeof(*b) + cap);
  if (b == NULL)
    return NULL;
  b->refs = 1;
  b->shared = 0;
  b->tag = 0;
  b->alt = NULL;
  b->len = 0;
  b->cap = cap;
  return b;
}

wshub_buf_t *wshub_buf_copy(const void *p, size_t len) {
  wshub_buf_t *b = wshub_buf_new(len);
  if (b == NULL)
    return NULL;
  if (len > 0)
    memcpy(b->data, p, len);
  b->len = len;
  return b;
}

wshub_buf_t *wshub_buf_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  wshub_buf_t *b = wshub_buf_new((size_t)n + 1);
  if (b == NULL)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(b->data, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len = (size_t)n;
  return b;
}

void wshub_buf_unref(wshub_buf_t *b) {
  if (b == NULL)
    return;
  unsigned left =
      b->shared ? __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) : --b->refs;
  if (left == 0) {
    wshub_buf_unref(b->alt);
    free(b);
  }
}

wshub_buf_t *wshub_buf_alt(wshub_buf_t *b, uint8_t tag) {
  for (wshub_buf_t *a = __atomic_load_n(&b->alt, __ATOMIC_ACQUIRE); a != NULL;
       a = a->alt)
    if (a->tag == tag)
      return a;
  return NULL;
}

wshub_buf_t *wshub_buf_add_alt(wshub_buf_t *b, wshub_buf_t *alt) {
  if (!b->shared) {
    alt->alt = b->alt;
    b->alt = alt;
    return alt;
  }
  alt->shared = 1;
  wshub_buf_t *head = __atomic_load_n(&b->alt, __ATOMIC_ACQUIRE);
  for (;;) {
    for (wshub_buf_t *a = head; a != NULL; a = a->alt)
      if (a->tag == alt->tag) { /* another thread was first */
        alt->alt = NULL;
        wshub_buf_unref(alt);
        return a;
      }
    alt->alt = head;
    if (__atomic_compare_exchange_n(&b->alt, &head, alt, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
      return alt;
  }
}
