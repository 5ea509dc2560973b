/* buf.h — reference-counted byte buffers.
 *
 * A wshub_buf_t is what every outbound byte lives in: a response head, a
 * file chunk, a WebSocket frame. One buffer can sit in many connections'
 * write queues at once (fan-out); each queue entry holds one reference and
 * the buffer is freed when the last reference is released. Buffers are
 * shared across loops (a room message crosses threads once, see
 * chatbus.c): such a buffer is marked `shared` before it is published to
 * another thread, and only then is its count changed with atomic
 * operations — a lock-prefixed increment per receiver is most of the cost
 * of a fan-out otherwise.
 */
#ifndef WSHUB_BUF_H
#define WSHUB_BUF_H

#include <stddef.h>

typedef struct wshub_buf_s {
  unsigned refs;
  unsigned shared; /* set once, before another thread can see it */
  size_t len;      /* bytes used */
  size_t cap;      /* bytes allocated in data */
  char data[];
} wshub_buf_t;

/* A buffer with room for cap bytes, len 0, one reference. NULL if out of
 * memory. */
wshub_buf_t *wshub_buf_new(size_t cap);
/* A buffer holding a copy of p[0..len). */
wshub_buf_t *wshub_buf_copy(const void *p, size_t len);
/* printf into a new buffer; NULL on error. */
wshub_buf_t *wshub_buf_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static inline wshub_buf_t *wshub_buf_ref(wshub_buf_t *b) {
  if (b->shared)
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
  else
    b->refs++;
  return b;
}

/* Marks b as visible to other threads from now on. */
static inline void wshub_buf_share(wshub_buf_t *b) {
  b->shared = 1;
}
void wshub_buf_unref(wshub_buf_t *b);

#endif
