/* test_map.c — unit tests of the string-keyed hash map (map.c): put, get,
 * replace and delete on small and empty maps; 10 000 keys (several table
 * doublings) checked against a plain array, half of them deleted and the
 * rest checked again; foreach visiting every entry exactly once; keys
 * chosen to land in the same bucket; and the key pointer rule of map.h
 * (the map keeps the caller's key string, the latest one after a replace).
 *
 * The test owns every key buffer and value; the map owns only its nodes.
 */
/* uv.h needs POSIX types (pthread_rwlock_t) that strict -std=c11 hides. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "map.h"
#include "unit.h"

#define MAP_MANY 10000
#define MAP_KEY_LEN 16

/* ---- foreach bookkeeping ---- */

/* Each visited value is an index into `seen`; visits are counted per index
 * and anything out of range or with a key that does not match is noted. */
typedef struct {
  unsigned *seen;
  size_t n;
  size_t visits;
  size_t bad;
  char (*keys)[MAP_KEY_LEN];
} map_visit_t;

static void map_on_visit(const char *key, void *value, void *arg) {
  map_visit_t *v = arg;
  size_t i = (size_t)((uintptr_t)value - 1);
  v->visits++;
  if ((uintptr_t)value == 0 || i >= v->n) {
    v->bad++;
    return;
  }
  if (v->keys != NULL && strcmp(key, v->keys[i]) != 0)
    v->bad++;
  v->seen[i]++;
}

static void map_count_visit(const char *key, void *value, void *arg) {
  (void)key;
  (void)value;
  (*(size_t *)arg)++;
}

/* Values are never NULL: index i is stored as (void *)(i + 1). */
static void *map_val(size_t i) {
  return (void *)(uintptr_t)(i + 1);
}

/* ---- tests ---- */

static void test_empty(unit_t *T) {
  wshub_map_t m;
  wshub_map_init(&m);
  CHECK_EQ_INT(m.count, 0);
  CHECK(wshub_map_get(&m, "a") == NULL);
  CHECK(wshub_map_get(&m, "") == NULL);
  CHECK(wshub_map_del(&m, "a") == NULL);
  CHECK_EQ_INT(m.count, 0);
  size_t visits = 0;
  wshub_map_foreach(&m, map_count_visit, &visits);
  CHECK_EQ_INT(visits, 0);
  wshub_map_free(&m);
  CHECK_EQ_INT(m.count, 0);
  CHECK_EQ_INT(m.nbuckets, 0);
  CHECK(m.buckets == NULL);
  /* Freeing twice (an initialised empty map) is harmless. */
  wshub_map_free(&m);

  /* A map that had entries and lost them all behaves as empty. */
  int a = 1;
  CHECK_EQ_INT(wshub_map_put(&m, "a", &a), 0);
  CHECK(wshub_map_del(&m, "a") == &a);
  CHECK_EQ_INT(m.count, 0);
  CHECK(wshub_map_get(&m, "a") == NULL);
  CHECK(wshub_map_del(&m, "a") == NULL);
  visits = 0;
  wshub_map_foreach(&m, map_count_visit, &visits);
  CHECK_EQ_INT(visits, 0);
  wshub_map_free(&m);
}

static void test_basic(unit_t *T) {
  wshub_map_t m;
  wshub_map_init(&m);
  int a = 1, b = 2, c = 3, d = 4;

  CHECK_EQ_INT(wshub_map_put(&m, "alpha", &a), 0);
  CHECK_EQ_INT(wshub_map_put(&m, "beta", &b), 0);
  CHECK_EQ_INT(wshub_map_put(&m, "", &c), 0); /* the empty key is a key */
  CHECK_EQ_INT(m.count, 3);
  CHECK(m.nbuckets > 0 && (m.nbuckets & (m.nbuckets - 1)) == 0);
  CHECK(wshub_map_get(&m, "alpha") == &a);
  CHECK(wshub_map_get(&m, "beta") == &b);
  CHECK(wshub_map_get(&m, "") == &c);
  CHECK(wshub_map_get(&m, "gamma") == NULL);
  CHECK(wshub_map_get(&m, "alph") == NULL);
  CHECK(wshub_map_get(&m, "alphaa") == NULL);
  CHECK(wshub_map_get(&m, "Alpha") == NULL); /* case-sensitive */

  /* Replace: same count, new value. */
  CHECK_EQ_INT(wshub_map_put(&m, "alpha", &d), 0);
  CHECK_EQ_INT(m.count, 3);
  CHECK(wshub_map_get(&m, "alpha") == &d);

  /* Delete returns the value once. */
  CHECK(wshub_map_del(&m, "alpha") == &d);
  CHECK_EQ_INT(m.count, 2);
  CHECK(wshub_map_get(&m, "alpha") == NULL);
  CHECK(wshub_map_del(&m, "alpha") == NULL);
  CHECK_EQ_INT(m.count, 2);
  CHECK(wshub_map_del(&m, "nothere") == NULL);
  CHECK_EQ_INT(m.count, 2);
  CHECK(wshub_map_get(&m, "beta") == &b);
  CHECK(wshub_map_get(&m, "") == &c);

  /* Re-insert after delete. */
  CHECK_EQ_INT(wshub_map_put(&m, "alpha", &a), 0);
  CHECK_EQ_INT(m.count, 3);
  CHECK(wshub_map_get(&m, "alpha") == &a);

  /* A NULL value is stored like any other (get cannot tell it apart from
   * absence, but count and foreach can). */
  CHECK_EQ_INT(wshub_map_put(&m, "nil", NULL), 0);
  CHECK_EQ_INT(m.count, 4);
  size_t visits = 0;
  wshub_map_foreach(&m, map_count_visit, &visits);
  CHECK_EQ_INT(visits, 4);
  CHECK(wshub_map_del(&m, "nil") == NULL);
  CHECK_EQ_INT(m.count, 3);

  wshub_map_free(&m);
  CHECK_EQ_INT(m.count, 0);
}

/* The map keeps the caller's key pointer; after a replace it keeps the new
 * one, so the old buffer may be reused. */
static void test_key_pointer(unit_t *T) {
  wshub_map_t m;
  wshub_map_init(&m);
  char k1[8] = "room", k2[8] = "room";
  int a = 1, b = 2;
  CHECK_EQ_INT(wshub_map_put(&m, k1, &a), 0);
  CHECK(wshub_map_get(&m, "room") == &a);
  CHECK_EQ_INT(wshub_map_put(&m, k2, &b), 0);
  CHECK_EQ_INT(m.count, 1);
  memcpy(k1, "XXXX", 5); /* the old key buffer changes */
  CHECK(wshub_map_get(&m, "room") == &b);
  CHECK(wshub_map_get(&m, "XXXX") == NULL);
  CHECK(wshub_map_del(&m, "room") == &b);
  CHECK_EQ_INT(m.count, 0);
  wshub_map_free(&m);
}

static void test_many(unit_t *T) {
  char(*keys)[MAP_KEY_LEN] = calloc(MAP_MANY, sizeof(*keys));
  unsigned *seen = calloc(MAP_MANY, sizeof(*seen));
  if (!CHECK(keys != NULL && seen != NULL)) {
    free(keys);
    free(seen);
    return;
  }
  for (size_t i = 0; i < MAP_MANY; i++)
    snprintf(keys[i], MAP_KEY_LEN, "key-%zu", i);

  wshub_map_t m;
  wshub_map_init(&m);
  size_t put_fail = 0, get_fail = 0, grow_fail = 0;
  size_t last_nb = 0, grows = 0;
  for (size_t i = 0; i < MAP_MANY; i++) {
    if (wshub_map_put(&m, keys[i], map_val(i)) != 0)
      put_fail++;
    if (m.nbuckets != last_nb) {
      grows++;
      /* Always a power of two, never shrinking. */
      if ((m.nbuckets & (m.nbuckets - 1)) != 0 || m.nbuckets < last_nb)
        grow_fail++;
      last_nb = m.nbuckets;
    }
    /* Every key so far is still there after each insert (and resize). */
    if ((i & (i + 1)) == 0 || i % 997 == 0)
      for (size_t j = 0; j <= i; j++)
        if (wshub_map_get(&m, keys[j]) != map_val(j))
          get_fail++;
  }
  CHECK_EQ_INT(put_fail, 0);
  CHECK_EQ_INT(get_fail, 0);
  CHECK_EQ_INT(grow_fail, 0);
  CHECK_EQ_INT(m.count, MAP_MANY);
  CHECK(grows >= 5); /* 10 000 entries from an empty table */
  CHECK(m.nbuckets >= MAP_MANY / 2);

  get_fail = 0;
  for (size_t i = 0; i < MAP_MANY; i++)
    if (wshub_map_get(&m, keys[i]) != map_val(i))
      get_fail++;
  CHECK_EQ_INT(get_fail, 0);
  CHECK(wshub_map_get(&m, "key-10000") == NULL);
  CHECK(wshub_map_get(&m, "key-") == NULL);
  CHECK(wshub_map_get(&m, "key-01") == NULL);

  /* foreach: each entry exactly once, with its own key. */
  map_visit_t v = {seen, MAP_MANY, 0, 0, keys};
  wshub_map_foreach(&m, map_on_visit, &v);
  CHECK_EQ_INT(v.visits, MAP_MANY);
  CHECK_EQ_INT(v.bad, 0);
  size_t not_once = 0;
  for (size_t i = 0; i < MAP_MANY; i++)
    if (seen[i] != 1)
      not_once++;
  CHECK_EQ_INT(not_once, 0);

  /* Delete every other key (the odd ones). */
  size_t del_fail = 0;
  for (size_t i = 1; i < MAP_MANY; i += 2)
    if (wshub_map_del(&m, keys[i]) != map_val(i))
      del_fail++;
  CHECK_EQ_INT(del_fail, 0);
  CHECK_EQ_INT(m.count, MAP_MANY / 2);
  get_fail = 0;
  for (size_t i = 0; i < MAP_MANY; i++) {
    void *want = (i % 2 == 0) ? map_val(i) : NULL;
    if (wshub_map_get(&m, keys[i]) != want)
      get_fail++;
  }
  CHECK_EQ_INT(get_fail, 0);
  /* Deleting them again finds nothing. */
  del_fail = 0;
  for (size_t i = 1; i < MAP_MANY; i += 2)
    if (wshub_map_del(&m, keys[i]) != NULL)
      del_fail++;
  CHECK_EQ_INT(del_fail, 0);
  CHECK_EQ_INT(m.count, MAP_MANY / 2);

  memset(seen, 0, MAP_MANY * sizeof(*seen));
  v = (map_visit_t){seen, MAP_MANY, 0, 0, keys};
  wshub_map_foreach(&m, map_on_visit, &v);
  CHECK_EQ_INT(v.visits, MAP_MANY / 2);
  CHECK_EQ_INT(v.bad, 0);
  not_once = 0;
  for (size_t i = 0; i < MAP_MANY; i++)
    if (seen[i] != (i % 2 == 0 ? 1u : 0u))
      not_once++;
  CHECK_EQ_INT(not_once, 0);

  /* Replace every remaining value; count stays. */
  put_fail = 0;
  for (size_t i = 0; i < MAP_MANY; i += 2)
    if (wshub_map_put(&m, keys[i], map_val(MAP_MANY - 1 - i)) != 0)
      put_fail++;
  CHECK_EQ_INT(put_fail, 0);
  CHECK_EQ_INT(m.count, MAP_MANY / 2);
  get_fail = 0;
  for (size_t i = 0; i < MAP_MANY; i += 2)
    if (wshub_map_get(&m, keys[i]) != map_val(MAP_MANY - 1 - i))
      get_fail++;
  CHECK_EQ_INT(get_fail, 0);

  /* Delete the rest; the map is empty again. */
  del_fail = 0;
  for (size_t i = 0; i < MAP_MANY; i += 2)
    if (wshub_map_del(&m, keys[i]) != map_val(MAP_MANY - 1 - i))
      del_fail++;
  CHECK_EQ_INT(del_fail, 0);
  CHECK_EQ_INT(m.count, 0);
  size_t visits = 0;
  wshub_map_foreach(&m, map_count_visit, &visits);
  CHECK_EQ_INT(visits, 0);
  CHECK(wshub_map_get(&m, keys[0]) == NULL);

  wshub_map_free(&m);
  free(keys);
  free(seen);
}

/* FNV-1a as map.c documents it, used here only to pick keys that share a
 * bucket (same low bits) so chains get long and deletes hit every chain
 * position. */
static uint64_t map_test_fnv(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

#define MAP_COLLIDE 24
#define MAP_COLLIDE_MASK 0xfffu /* 12 low bits: one bucket up to 4096 */

static void test_collisions(unit_t *T) {
  char keys[MAP_COLLIDE][MAP_KEY_LEN];
  size_t n = 0;
  uint64_t want = map_test_fnv("c0") & MAP_COLLIDE_MASK;
  for (unsigned i = 0; n < MAP_COLLIDE && i < 50000000u; i++) {
    char k[MAP_KEY_LEN];
    snprintf(k, sizeof(k), "c%u", i);
    if ((map_test_fnv(k) & MAP_COLLIDE_MASK) == want)
      memcpy(keys[n++], k, sizeof(k));
  }
  if (!CHECK_EQ_INT(n, MAP_COLLIDE))
    return;

  /* Also pad the map with other keys so it is bigger than 16 buckets while
   * the colliding ones still share a bucket (< 4096 buckets). */
  char pad[1000][MAP_KEY_LEN];
  wshub_map_t m;
  wshub_map_init(&m);
  for (size_t i = 0; i < 1000; i++) {
    snprintf(pad[i], MAP_KEY_LEN, "pad%zu", i);
    CHECK_EQ_INT(wshub_map_put(&m, pad[i], map_val(1000 + i)), 0);
  }
  for (size_t i = 0; i < MAP_COLLIDE; i++)
    CHECK_EQ_INT(wshub_map_put(&m, keys[i], map_val(i)), 0);
  CHECK(m.nbuckets <= MAP_COLLIDE_MASK + 1);
  CHECK_EQ_INT(m.count, 1000 + MAP_COLLIDE);
  for (size_t i = 0; i < MAP_COLLIDE; i++)
    CHECK(wshub_map_get(&m, keys[i]) == map_val(i));

  /* Delete from the middle, the ends, then re-add: chains stay intact. */
  static const size_t order[] = {12, 0, 23, 1, 22, 6, 7, 8};
  for (size_t j = 0; j < sizeof(order) / sizeof(order[0]); j++) {
    CHECK(wshub_map_del(&m, keys[order[j]]) == map_val(order[j]));
    for (size_t i = 0; i < MAP_COLLIDE; i++) {
      int gone = 0;
      for (size_t k = 0; k <= j; k++)
        gone |= order[k] == i;
      if (!CHECK(wshub_map_get(&m, keys[i]) == (gone ? NULL : map_val(i))))
        fprintf(stderr, "  after deleting %zu of the order, key %s\n", j,
                keys[i]);
    }
  }
  CHECK_EQ_INT(m.count, 1000 + MAP_COLLIDE - 8);
  for (size_t j = 0; j < 8; j++)
    CHECK_EQ_INT(wshub_map_put(&m, keys[order[j]], map_val(100 + j)), 0);
  CHECK_EQ_INT(m.count, 1000 + MAP_COLLIDE);
  for (size_t j = 0; j < 8; j++)
    CHECK(wshub_map_get(&m, keys[order[j]]) == map_val(100 + j));
  size_t pad_fail = 0;
  for (size_t i = 0; i < 1000; i++)
    if (wshub_map_get(&m, pad[i]) != map_val(1000 + i))
      pad_fail++;
  CHECK_EQ_INT(pad_fail, 0);
  size_t visits = 0;
  wshub_map_foreach(&m, map_count_visit, &visits);
  CHECK_EQ_INT(visits, 1000 + MAP_COLLIDE);
  wshub_map_free(&m);
}

/* Keys differing only late, or by one byte, or by length. */
static void test_similar_keys(unit_t *T) {
  static const char *const keys[] = {
      "a",    "b",    "aa",   "ab",    "ba",       "abc",
      "acb",  "bac",  "room", "room1", "room10",   "1room",
      "Room", "ROOM", "\x7f", "\xff",  "\xc3\xa9", "e\xcc\x81",
      " ",    "  ",   "c1",   "c10",   "c100",     "c1000",
  };
  size_t n = sizeof(keys) / sizeof(keys[0]);
  wshub_map_t m;
  wshub_map_init(&m);
  for (size_t i = 0; i < n; i++)
    CHECK_EQ_INT(wshub_map_put(&m, keys[i], map_val(i)), 0);
  CHECK_EQ_INT(m.count, n);
  for (size_t i = 0; i < n; i++)
    if (!CHECK(wshub_map_get(&m, keys[i]) == map_val(i)))
      fprintf(stderr, "  key #%zu\n", i);
  wshub_map_free(&m);
}

int main(void) {
  unit_t t = {0, 0};
  unit_t *T = &t;
  test_empty(T);
  test_basic(T);
  test_key_pointer(T);
  test_many(T);
  test_collisions(T);
  test_similar_keys(T);
  return unit_finish(T);
}
