/* grow.h — doubling growth for the dynamic arrays (hub and chat member
 * lists, a client's rooms, write queues, header indexes). The caller owns
 * the array; this only reallocates it. */
#ifndef WSHUB_GROW_H
#define WSHUB_GROW_H

#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Makes room for element n in the array that `arrayp` points to (a pointer
 * to the array pointer), of *cap elements of `size` bytes, doubling from
 * `first`. Returns 0, or UV_ENOMEM with the array and *cap unchanged. */
static inline int wshub_grow(void *arrayp, size_t *cap, size_t n, size_t size,
                             size_t first) {
  if (n < *cap)
    return 0;
  void *old;
  memcpy(&old, arrayp, sizeof(old));
  size_t ncap = *cap ? *cap * 2 : first;
  void *p = realloc(old, ncap * size);
  if (p == NULL)
    return UV_ENOMEM;
  memcpy(arrayp, &p, sizeof(p));
  *cap = ncap;
  return 0;
}

#endif
