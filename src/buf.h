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
 *
 * A buffer may carry alternative encodings of its bytes (a frame's
 * compressed form, made by deflate.c): a chain through `alt`, each link
 * owned by the one before it and freed with it, and told apart by `tag`.
 * Links are only ever added at the head, atomically, so threads sharing a
 * buffer may add and read them concurrently.
 */
#ifndef WSHUB_BUF_H
#define WSHUB_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct wshub_buf_s {
  unsigned refs;
  uint8_t shared;          /* set once, before another thread can see it */
  uint8_t tag;             /* what an alternative is (its maker's value) */
  size_t len;              /* bytes used */
  size_t cap;              /* bytes allocated in data */
  struct wshub_buf_s *alt; /* alternatives, see above; NULL if none */
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

/* Marks b, and the alternatives it already has, as visible to other
 * threads from now on (an alternative made before is reached through b). */
static inline void wshub_buf_share(wshub_buf_t *b) {
  for (wshub_buf_t *a = b; a != NULL; a = a->alt)
    a->shared = 1;
}
void wshub_buf_unref(wshub_buf_t *b);

/* Alternative tags: 9..15 a frame compressed with that window (deflate.c),
 * WSHUB_ALT_SSE a chat frame as a Server-Sent Event (chathttp.c). */
enum { WSHUB_ALT_SSE = 32 };

/* The alternative of b tagged `tag`, or NULL (borrowed). */
wshub_buf_t *wshub_buf_alt(wshub_buf_t *b, uint8_t tag);
/* Attaches alt (its reference passes to b) unless another thread attached
 * one with the same tag first; returns the one that is attached. */
wshub_buf_t *wshub_buf_add_alt(wshub_buf_t *b, wshub_buf_t *alt);

#endif
