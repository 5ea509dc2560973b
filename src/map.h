/* map.h — a string-keyed hash map (separate chaining, power-of-two table).
 *
 * Used for clients by id and rooms by name. The map owns only its nodes:
 * the key string must stay valid while its entry exists (callers keep the
 * key inside the value), and values belong to the caller.
 */
#ifndef WSHUB_MAP_H
#define WSHUB_MAP_H

#include <stddef.h>

typedef struct wshub_map_node_s wshub_map_node_t;

typedef struct {
  wshub_map_node_t **buckets;
  size_t nbuckets; /* 0 or a power of two */
  size_t count;
} wshub_map_t;

void wshub_map_init(wshub_map_t *m);
/* Frees the table and nodes, not the values. */
void wshub_map_free(wshub_map_t *m);
void *wshub_map_get(const wshub_map_t *m, const char *key);
/* Inserts or replaces. Returns 0 or UV_ENOMEM. */
int wshub_map_put(wshub_map_t *m, const char *key, void *value);
/* Removes the entry; returns its value or NULL. */
void *wshub_map_del(wshub_map_t *m, const char *key);
/* Calls fn for every entry; fn must not change the map. */
void wshub_map_foreach(const wshub_map_t *m,
                       void (*fn)(const char *key, void *value, void *arg),
                       void *arg);

#endif
