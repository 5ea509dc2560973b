/* map.c — string-keyed hash map (see map.h). FNV-1a hashing; the table
 * doubles when the load passes 1. */
#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct wshub_map_node_s {
  wshub_map_node_t *next;
  const char *key;
  void *value;
  uint64_t hash;
};

static uint64_t map_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

void wshub_map_init(wshub_map_t *m) {
  memset(m, 0, sizeof(*m));
}

void wshub_map_free(wshub_map_t *m) {
  for (size_t i = 0; i < m->nbuckets; i++) {
    wshub_map_node_t *n = m->buckets[i];
    while (n != NULL) {
      wshub_map_node_t *next = n->next;
      free(n);
      n = next;
    }
  }
  free(m->buckets);
  wshub_map_init(m);
}

static wshub_map_node_t **map_slot(const wshub_map_t *m, const char *key,
                                   uint64_t h) {
  wshub_map_node_t **p = &m->buckets[h & (m->nbuckets - 1)];
  while (*p != NULL && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
    p = &(*p)->next;
  return p;
}

void *wshub_map_get(const wshub_map_t *m, const char *key) {
  if (m->count == 0)
    return NULL;
  wshub_map_node_t *n = *map_slot(m, key, map_hash(key));
  return n ? n->value : NULL;
}

static int map_grow(wshub_map_t *m) {
  size_t nb = m->nbuckets ? m->nbuckets * 2 : 16;
  wshub_map_node_t **b = calloc(nb, sizeof(*b));
  if (b == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < m->nbuckets; i++) {
    wshub_map_node_t *n = m->buckets[i];
    while (n != NULL) {
      wshub_map_node_t *next = n->next;
      n->next = b[n->hash & (nb - 1)];
      b[n->hash & (nb - 1)] = n;
      n = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = nb;
  return 0;
}

int wshub_map_put(wshub_map_t *m, const char *key, void *value) {
  if (m->count >= m->nbuckets && map_grow(m) != 0)
    return UV_ENOMEM;
  uint64_t h = map_hash(key);
  wshub_map_node_t **p = map_slot(m, key, h);
  if (*p != NULL) {
    (*p)->key = key;
    (*p)->value = value;
    return 0;
  }
  wshub_map_node_t *n = malloc(sizeof(*n));
  if (n == NULL)
    return UV_ENOMEM;
  *n = (wshub_map_node_t){NULL, key, value, h};
  *p = n;
  m->count++;
  return 0;
}

void *wshub_map_del(wshub_map_t *m, const char *key) {
  if (m->count == 0)
    return NULL;
  wshub_map_node_t **p = map_slot(m, key, map_hash(key));
  wshub_map_node_t *n = *p;
  if (n == NULL)
    return NULL;
  void *v = n->value;
  *p = n->next;
  free(n);
  m->count--;
  return v;
}

void wshub_map_foreach(const wshub_map_t *m,
                       void (*fn)(const char *key, void *value, void *arg),
                       void *arg) {
  for (size_t i = 0; i < m->nbuckets; i++)
    for (wshub_map_node_t *n = m->buckets[i]; n != NULL; n = n->next)
      fn(n->key, n->value, arg);
}
