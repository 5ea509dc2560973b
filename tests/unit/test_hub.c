/* test_hub.c — unit tests of the hub (hub.c): client ids and lookup, room
 * membership through the public API of wshub.h (join, leave, in_room, the
 * client's room list in join order, room_foreach, room and client
 * counts), sends to clients without a connection, and a seeded random
 * stress of joins, leaves and client frees checked step by step against a
 * plain model (which catches swap-remove back-index bugs).
 *
 * Each test makes its own loop and server (no listener) and closes them
 * with wshub_close(); clients are made with wshub_hub_client_new(server,
 * NULL, ...) — no WebSocket behind them — and freed by the test with
 * wshub_hub_client_free() before the server closes. The close callback
 * finds its flag through loop->data (no globals).
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

#include "frame.h"
#include "hub.h"
#include "server.h"
#include "unit.h"
#include "wshub.h"

/* ---- a server on its own loop ---- */

typedef struct {
  uv_loop_t loop;
  wshub_server_t *server;
  int closed; /* close callbacks seen */
} hub_env_t;

static void hub_on_closed(wshub_server_t *s) {
  hub_env_t *env = s->loop->data;
  env->closed++;
}

static int hub_env_open(unit_t *T, hub_env_t *env) {
  memset(env, 0, sizeof(*env));
  if (!CHECK_EQ_INT(uv_loop_init(&env->loop), 0))
    return -1;
  env->loop.data = env;
  wshub_config_t cfg;
  wshub_config_init(&cfg);
  if (!CHECK_EQ_INT(wshub_server_new(&env->loop, &cfg, &env->server), 0)) {
    uv_loop_close(&env->loop);
    return -1;
  }
  CHECK(env->server != NULL);
  CHECK_EQ_INT(wshub_client_count(env->server), 0);
  CHECK_EQ_INT(wshub_room_count(env->server), 0);
  return 0;
}

static void hub_env_close(unit_t *T, hub_env_t *env) {
  CHECK_EQ_INT(wshub_client_count(env->server), 0);
  CHECK_EQ_INT(wshub_room_count(env->server), 0);
  wshub_close(env->server, hub_on_closed);
  CHECK_EQ_INT(uv_run(&env->loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(env->closed, 1);
  CHECK_EQ_INT(uv_loop_close(&env->loop), 0);
}

/* ---- helpers ---- */

/* 1 if id is "c" followed by a decimal number without leading zeros. */
static int hub_id_ok(const char *id) {
  if (id == NULL || id[0] != 'c' || id[1] < '1' || id[1] > '9')
    return 0;
  for (const char *p = id + 2; *p; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return strlen(id) <= 21;
}

/* Checks the client's room list is exactly `want` (n names, in order). */
static void hub_check_rooms(unit_t *T, const wshub_client_t *c,
                            const char *const *want, size_t n,
                            const char *what) {
  int ok = CHECK_EQ_INT(wshub_client_room_count(c), n);
  for (size_t i = 0; ok && i < n; i++)
    ok = CHECK_EQ_STR(wshub_client_room(c, i), want[i]);
  if (ok)
    ok = CHECK(wshub_client_room(c, n) == NULL);
  if (!ok)
    fprintf(stderr, "  room list of %s (%s)\n", wshub_client_id(c), what);
}

typedef struct {
  wshub_client_t *seen[16];
  size_t n;
} hub_collect_t;

static void hub_collect(wshub_client_t *c, void *arg) {
  hub_collect_t *col = arg;
  if (col->n < 16)
    col->seen[col->n] = c;
  col->n++;
}

/* Checks the room's members are exactly `want` (any order, once each). */
static void hub_check_members(unit_t *T, wshub_server_t *s, const char *room,
                              wshub_client_t *const *want, size_t n) {
  hub_collect_t col = {{0}, 0};
  size_t got = wshub_room_foreach(s, room, hub_collect, &col);
  int ok = CHECK_EQ_INT(got, n) && CHECK_EQ_INT(col.n, n);
  for (size_t i = 0; ok && i < n; i++) {
    size_t times = 0;
    for (size_t j = 0; j < col.n && j < 16; j++)
      times += col.seen[j] == want[i];
    ok = CHECK_EQ_INT(times, 1);
  }
  if (!ok)
    fprintf(stderr, "  members of room \"%s\"\n", room);
}

static void hub_never(wshub_client_t *c, void *arg) {
  (void)c;
  (*(int *)arg)++;
}

/* ---- tests ---- */

static void test_ids(unit_t *T) {
  hub_env_t env;
  if (hub_env_open(T, &env) != 0)
    return;
  wshub_server_t *s = env.server;
  enum { N = 50 };
  wshub_client_t *cs[N];
  for (size_t i = 0; i < N; i++) {
    cs[i] = wshub_hub_client_new(s, NULL, "test");
    if (!CHECK(cs[i] != NULL))
      return;
  }
  CHECK_EQ_INT(wshub_client_count(s), N);
  size_t bad = 0, dup = 0;
  for (size_t i = 0; i < N; i++) {
    const char *id = wshub_client_id(cs[i]);
    if (!hub_id_ok(id)) {
      bad++;
      fprintf(stderr, "  bad id \"%s\"\n", id);
    }
    for (size_t j = 0; j < i; j++)
      dup += strcmp(id, wshub_client_id(cs[j])) == 0;
    CHECK(wshub_client_find(s, id) == cs[i]);
    CHECK_EQ_STR(wshub_client_remote(cs[i]), "test");
    CHECK(wshub_client_server(cs[i]) == s);
    CHECK(wshub_client_data(cs[i]) == NULL);
    CHECK_EQ_INT(wshub_client_room_count(cs[i]), 0);
    CHECK(wshub_client_room(cs[i], 0) == NULL);
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(dup, 0);
  /* This server's first client is c1, then c2, ... */
  CHECK_EQ_STR(wshub_client_id(cs[0]), "c1");
  CHECK_EQ_STR(wshub_client_id(cs[1]), "c2");
  CHECK_EQ_STR(wshub_client_id(cs[N - 1]), "c50");

  /* find: unknown ids, near misses. */
  CHECK(wshub_client_find(s, "c0") == NULL);
  CHECK(wshub_client_find(s, "c51") == NULL);
  CHECK(wshub_client_find(s, "c01") == NULL);
  CHECK(wshub_client_find(s, "C1") == NULL);
  CHECK(wshub_client_find(s, "1") == NULL);
  CHECK(wshub_client_find(s, "") == NULL);
  CHECK(wshub_client_find(s, "c1 ") == NULL);

  /* user data */
  int x = 7;
  wshub_client_set_data(cs[3], &x);
  CHECK(wshub_client_data(cs[3]) == &x);
  CHECK(wshub_client_data(cs[4]) == NULL);
  wshub_client_set_data(cs[3], NULL);
  CHECK(wshub_client_data(cs[3]) == NULL);

  /* Freed clients are gone from find(); ids are never reused. */
  char id10[24];
  snprintf(id10, sizeof(id10), "%s", wshub_client_id(cs[10]));
  wshub_hub_client_free(cs[10]);
  cs[10] = NULL;
  CHECK(wshub_client_find(s, id10) == NULL);
  CHECK_EQ_INT(wshub_client_count(s), N - 1);
  wshub_client_t *fresh = wshub_hub_client_new(s, NULL, "again");
  if (CHECK(fresh != NULL)) {
    CHECK_EQ_STR(wshub_client_id(fresh), "c51");
    CHECK(wshub_client_find(s, "c51") == fresh);
    CHECK(wshub_client_find(s, id10) == NULL);
    CHECK_EQ_STR(wshub_client_remote(fresh), "again");
    wshub_hub_client_free(fresh);
  }
  CHECK(wshub_client_find(s, "c51") == NULL);
  size_t left = N - 1;
  for (size_t i = 0; i < N; i++)
    if (cs[i] != NULL) {
      wshub_hub_client_free(cs[i]);
      CHECK_EQ_INT(wshub_client_count(s), --left);
    }
  CHECK_EQ_INT(wshub_client_count(s), 0);
  hub_env_close(T, &env);
}

static void test_membership(unit_t *T) {
  hub_env_t env;
  if (hub_env_open(T, &env) != 0)
    return;
  wshub_server_t *s = env.server;
  wshub_client_t *a = wshub_hub_client_new(s, NULL, "test");
  wshub_client_t *b = wshub_hub_client_new(s, NULL, "test");
  wshub_client_t *c = wshub_hub_client_new(s, NULL, "test");
  if (!CHECK(a != NULL && b != NULL && c != NULL))
    return;

  /* Empty name. */
  CHECK_EQ_INT(wshub_join(a, ""), UV_EINVAL);
  CHECK_EQ_INT(wshub_client_room_count(a), 0);
  CHECK_EQ_INT(wshub_room_count(s), 0);
  CHECK_EQ_INT(wshub_in_room(a, ""), 0);

  /* Not in a room yet. */
  CHECK_EQ_INT(wshub_in_room(a, "lobby"), 0);
  CHECK_EQ_INT(wshub_leave(a, "lobby"), UV_ENOENT);
  int calls = 0;
  CHECK_EQ_INT(wshub_room_foreach(s, "lobby", hub_never, &calls), 0);
  CHECK_EQ_INT(calls, 0);

  /* First join creates the room. */
  CHECK_EQ_INT(wshub_join(a, "lobby"), 0);
  CHECK_EQ_INT(wshub_in_room(a, "lobby"), 1);
  CHECK_EQ_INT(wshub_in_room(b, "lobby"), 0);
  CHECK_EQ_INT(wshub_room_count(s), 1);
  {
    const char *want[] = {"lobby"};
    hub_check_rooms(T, a, want, 1, "after join lobby");
    wshub_client_t *m[] = {a};
    hub_check_members(T, s, "lobby", m, 1);
  }
  /* Joining twice is a no-op returning 0. */
  CHECK_EQ_INT(wshub_join(a, "lobby"), 0);
  CHECK_EQ_INT(wshub_client_room_count(a), 1);
  CHECK_EQ_INT(wshub_room_count(s), 1);
  {
    wshub_client_t *m[] = {a};
    hub_check_members(T, s, "lobby", m, 1);
  }
  /* Names are case-sensitive and exact. */
  CHECK_EQ_INT(wshub_in_room(a, "Lobby"), 0);
  CHECK_EQ_INT(wshub_in_room(a, "lobb"), 0);
  CHECK_EQ_INT(wshub_in_room(a, "lobby "), 0);
  CHECK_EQ_INT(wshub_leave(a, "Lobby"), UV_ENOENT);
  /* A room that exists but the client is not in. */
  CHECK_EQ_INT(wshub_leave(b, "lobby"), UV_ENOENT);
  CHECK_EQ_INT(wshub_room_count(s), 1);

  /* The name is copied: the caller's buffer may change afterwards. */
  char buf[32];
  snprintf(buf, sizeof(buf), "dev");
  CHECK_EQ_INT(wshub_join(b, buf), 0);
  memcpy(buf, "xyz", 4);
  CHECK_EQ_INT(wshub_in_room(b, "dev"), 1);
  CHECK_EQ_INT(wshub_in_room(b, "xyz"), 0);
  CHECK_EQ_STR(wshub_client_room(b, 0), "dev");
  CHECK_EQ_INT(wshub_room_count(s), 2);

  /* Any non-empty name is accepted by the hub (the chat restricts them). */
  char longname[300];
  memset(longname, 'L', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  CHECK_EQ_INT(wshub_join(c, longname), 0);
  CHECK_EQ_INT(wshub_join(c, "with space/and\xc3\xa9"), 0);
  CHECK_EQ_INT(wshub_in_room(c, longname), 1);
  CHECK_EQ_INT(wshub_in_room(c, "with space/and\xc3\xa9"), 1);
  CHECK_EQ_INT(wshub_room_count(s), 4);
  CHECK_EQ_INT(wshub_leave(c, longname), 0);
  CHECK_EQ_INT(wshub_leave(c, "with space/and\xc3\xa9"), 0);
  CHECK_EQ_INT(wshub_room_count(s), 2);

  /* Three members; foreach visits each once. */
  CHECK_EQ_INT(wshub_join(b, "lobby"), 0);
  CHECK_EQ_INT(wshub_join(c, "lobby"), 0);
  {
    wshub_client_t *m[] = {a, b, c};
    hub_check_members(T, s, "lobby", m, 3);
    const char *want[] = {"dev", "lobby"};
    hub_check_rooms(T, b, want, 2, "dev then lobby");
  }
  /* The first member leaves: the others stay (swap-remove). */
  CHECK_EQ_INT(wshub_leave(a, "lobby"), 0);
  CHECK_EQ_INT(wshub_in_room(a, "lobby"), 0);
  CHECK_EQ_INT(wshub_client_room_count(a), 0);
  {
    wshub_client_t *m[] = {b, c};
    hub_check_members(T, s, "lobby", m, 2);
  }
  /* Leaving twice. */
  CHECK_EQ_INT(wshub_leave(a, "lobby"), UV_ENOENT);
  /* The moved member can still leave (its back-index was fixed). */
  CHECK_EQ_INT(wshub_leave(c, "lobby"), 0);
  {
    wshub_client_t *m[] = {b};
    hub_check_members(T, s, "lobby", m, 1);
  }
  CHECK_EQ_INT(wshub_room_count(s), 2);
  /* The last member leaves: the room is gone. */
  CHECK_EQ_INT(wshub_leave(b, "lobby"), 0);
  CHECK_EQ_INT(wshub_room_count(s), 1);
  calls = 0;
  CHECK_EQ_INT(wshub_room_foreach(s, "lobby", hub_never, &calls), 0);
  CHECK_EQ_INT(calls, 0);
  CHECK_EQ_INT(wshub_leave(b, "dev"), 0);
  CHECK_EQ_INT(wshub_room_count(s), 0);
  /* And comes back on the next join. */
  CHECK_EQ_INT(wshub_join(c, "lobby"), 0);
  CHECK_EQ_INT(wshub_room_count(s), 1);
  CHECK_EQ_INT(wshub_leave(c, "lobby"), 0);
  CHECK_EQ_INT(wshub_room_count(s), 0);

  wshub_hub_client_free(a);
  wshub_hub_client_free(b);
  wshub_hub_client_free(c);
  hub_env_close(T, &env);
}

static void test_room_order(unit_t *T) {
  hub_env_t env;
  if (hub_env_open(T, &env) != 0)
    return;
  wshub_server_t *s = env.server;
  wshub_client_t *a = wshub_hub_client_new(s, NULL, "test");
  wshub_client_t *b = wshub_hub_client_new(s, NULL, "test");
  if (!CHECK(a != NULL && b != NULL))
    return;
  /* Ten rooms (more than the first allocation), joined out of name order. */
  static const char *const names[] = {"k", "b", "z", "a", "m",
                                      "c", "y", "d", "x", "e"};
  for (size_t i = 0; i < 10; i++) {
    CHECK_EQ_INT(wshub_join(a, names[i]), 0);
    CHECK_EQ_INT(wshub_join(b, names[9 - i]), 0);
  }
  hub_check_rooms(T, a, names, 10, "ten joins");
  CHECK_EQ_INT(wshub_room_count(s), 10);
  /* Re-joining does not move a room. */
  CHECK_EQ_INT(wshub_join(a, "k"), 0);
  CHECK_EQ_INT(wshub_join(a, "m"), 0);
  hub_check_rooms(T, a, names, 10, "re-joins");

  /* Leave a middle room: the rest keep their order. */
  CHECK_EQ_INT(wshub_leave(a, "m"), 0);
  {
    const char *want[] = {"k", "b", "z", "a", "c", "y", "d", "x", "e"};
    hub_check_rooms(T, a, want, 9, "after leaving m");
  }
  /* The first and the last. */
  CHECK_EQ_INT(wshub_leave(a, "k"), 0);
  CHECK_EQ_INT(wshub_leave(a, "e"), 0);
  {
    const char *want[] = {"b", "z", "a", "c", "y", "d", "x"};
    hub_check_rooms(T, a, want, 7, "after leaving k and e");
  }
  /* Re-joining a left room puts it at the end. */
  CHECK_EQ_INT(wshub_join(a, "m"), 0);
  {
    const char *want[] = {"b", "z", "a", "c", "y", "d", "x", "m"};
    hub_check_rooms(T, a, want, 8, "after re-joining m");
  }
  /* b was untouched. */
  {
    const char *want[] = {"e", "x", "d", "y", "c", "m", "a", "z", "b", "k"};
    hub_check_rooms(T, b, want, 10, "the other client");
  }
  CHECK_EQ_INT(wshub_room_count(s), 10);

  /* Freeing a client takes it out of every room (rooms it alone had go). */
  CHECK_EQ_INT(wshub_join(a, "only-a1"), 0);
  CHECK_EQ_INT(wshub_join(a, "only-a2"), 0);
  CHECK_EQ_INT(wshub_room_count(s), 12);
  char aid[24];
  snprintf(aid, sizeof(aid), "%s", wshub_client_id(a));
  wshub_hub_client_free(a);
  CHECK(wshub_client_find(s, aid) == NULL);
  CHECK_EQ_INT(wshub_client_count(s), 1);
  CHECK_EQ_INT(wshub_room_count(s), 10);
  for (size_t i = 0; i < 10; i++) {
    wshub_client_t *m[] = {b};
    hub_check_members(T, s, names[i], m, 1);
  }
  CHECK_EQ_INT(wshub_room_foreach(s, "only-a1", hub_never, NULL), 0);
  wshub_hub_client_free(b);
  CHECK_EQ_INT(wshub_room_count(s), 0);
  hub_env_close(T, &env);
}

/* Clients without a connection cannot be sent to. */
static void test_send_no_ws(unit_t *T) {
  hub_env_t env;
  if (hub_env_open(T, &env) != 0)
    return;
  wshub_server_t *s = env.server;
  wshub_client_t *a = wshub_hub_client_new(s, NULL, "test");
  wshub_client_t *b = wshub_hub_client_new(s, NULL, "test");
  if (!CHECK(a != NULL && b != NULL))
    return;
  CHECK_EQ_INT(wshub_send(a, "hi", 2, 0), UV_ECANCELED);
  CHECK_EQ_INT(wshub_send(a, "\x01\x02", 2, 1), UV_ECANCELED);
  CHECK_EQ_INT(wshub_send(a, "", 0, 0), UV_ECANCELED);
  wshub_buf_t *f = wshub_frame_build(WSHUB_OP_TEXT, "x", 1);
  if (CHECK(f != NULL)) {
    CHECK_EQ_INT(wshub_hub_send_frame(a, f), UV_ECANCELED);
    wshub_buf_unref(f);
  }
  CHECK_EQ_INT(wshub_join(a, "r"), 0);
  CHECK_EQ_INT(wshub_join(b, "r"), 0);
  /* Room and broadcast sends skip such members and report success. */
  CHECK_EQ_INT(wshub_send_room(s, "r", "hi", 2, 0, NULL), 0);
  CHECK_EQ_INT(wshub_send_room(s, "r", "hi", 2, 0, a), 0);
  CHECK_EQ_INT(wshub_send_room(s, "nobody-here", "hi", 2, 0, NULL), 0);
  CHECK_EQ_INT(wshub_send_all(s, "hi", 2, 1, NULL), 0);
  /* Closing a client without a connection does nothing. */
  wshub_client_close(a, 1000, "bye");
  CHECK(wshub_client_find(s, wshub_client_id(a)) == a);
  CHECK_EQ_INT(wshub_in_room(a, "r"), 1);
  wshub_hub_client_free(a);
  wshub_hub_client_free(b);
  hub_env_close(T, &env);
}

/* ---- randomized stress against a model ---- */

#define ST_CLIENTS 200
#define ST_ROOMS 20
#define ST_STEPS 5000

typedef struct {
  uint64_t x;
} hub_rng_t;

static uint32_t hub_rand(hub_rng_t *r, uint32_t n) {
  /* xorshift64*; good enough to pick indices. */
  r->x ^= r->x >> 12;
  r->x ^= r->x << 25;
  r->x ^= r->x >> 27;
  return (uint32_t)((r->x * 2685821657736338717ull) >> 32) % n;
}

typedef struct {
  wshub_client_t *c[ST_CLIENTS];
  unsigned char in[ST_CLIENTS][ST_ROOMS];    /* membership */
  unsigned char order[ST_CLIENTS][ST_ROOMS]; /* rooms in join order */
  size_t norder[ST_CLIENTS];
  char names[ST_ROOMS][8];
  /* scratch for room_foreach */
  unsigned seen[ST_CLIENTS];
  size_t visits, strangers;
} hub_model_t;

static void hub_model_visit(wshub_client_t *c, void *arg) {
  hub_model_t *m = arg;
  uintptr_t k = (uintptr_t)wshub_client_data(c);
  m->visits++;
  if (k == 0 || k > ST_CLIENTS || m->c[k - 1] != c)
    m->strangers++;
  else
    m->seen[k - 1]++;
}

/* Compares the whole hub with the model; returns the number of mismatches
 * (each one printed once). */
static size_t hub_model_diff(hub_model_t *m, wshub_server_t *s, int full) {
  size_t bad = 0, rooms = 0;
  for (size_t r = 0; r < ST_ROOMS; r++) {
    size_t want = 0;
    for (size_t i = 0; i < ST_CLIENTS; i++)
      want += m->in[i][r];
    rooms += want > 0;
    memset(m->seen, 0, sizeof(m->seen));
    m->visits = m->strangers = 0;
    size_t got = wshub_room_foreach(s, m->names[r], hub_model_visit, m);
    if (got != want || m->visits != want || m->strangers != 0) {
      fprintf(stderr,
              "  room %s: foreach returned %zu, visited %zu (%zu "
              "strangers), model has %zu\n",
              m->names[r], got, m->visits, m->strangers, want);
      bad++;
    }
    for (size_t i = 0; i < ST_CLIENTS; i++)
      if (m->seen[i] != m->in[i][r]) {
        fprintf(stderr, "  room %s: client #%zu seen %u times, model %u\n",
                m->names[r], i, m->seen[i], m->in[i][r]);
        bad++;
      }
  }
  if (wshub_room_count(s) != rooms) {
    fprintf(stderr, "  room_count %zu, model %zu\n", wshub_room_count(s),
            rooms);
    bad++;
  }
  if (wshub_client_count(s) != ST_CLIENTS) {
    fprintf(stderr, "  client_count %zu\n", wshub_client_count(s));
    bad++;
  }
  for (size_t i = 0; i < ST_CLIENTS; i++) {
    const wshub_client_t *c = m->c[i];
    size_t n = wshub_client_room_count(c);
    int ok = n == m->norder[i];
    for (size_t k = 0; ok && k < n; k++) {
      const char *name = wshub_client_room(c, k);
      ok = name != NULL && strcmp(name, m->names[m->order[i][k]]) == 0;
    }
    ok = ok && wshub_client_room(c, n) == NULL;
    if (!ok) {
      fprintf(stderr, "  client #%zu: room list differs from the model\n", i);
      bad++;
    }
    if (full)
      for (size_t r = 0; r < ST_ROOMS; r++)
        if (wshub_in_room(c, m->names[r]) != m->in[i][r]) {
          fprintf(stderr, "  client #%zu in_room(%s) differs\n", i,
                  m->names[r]);
          bad++;
        }
  }
  return bad;
}

static void hub_model_remove(hub_model_t *m, size_t i, size_t r) {
  m->in[i][r] = 0;
  size_t k = 0;
  while (k < m->norder[i] && m->order[i][k] != r)
    k++;
  memmove(&m->order[i][k], &m->order[i][k + 1], m->norder[i] - k - 1);
  m->norder[i]--;
}

static wshub_client_t *hub_model_new_client(hub_model_t *m, wshub_server_t *s,
                                            size_t i) {
  wshub_client_t *c = wshub_hub_client_new(s, NULL, "stress");
  if (c != NULL)
    wshub_client_set_data(c, (void *)(uintptr_t)(i + 1));
  m->c[i] = c;
  m->norder[i] = 0;
  memset(m->in[i], 0, sizeof(m->in[i]));
  return c;
}

static void test_stress(unit_t *T) {
  hub_env_t env;
  if (hub_env_open(T, &env) != 0)
    return;
  wshub_server_t *s = env.server;
  hub_model_t *m = calloc(1, sizeof(*m));
  if (!CHECK(m != NULL))
    return;
  for (size_t r = 0; r < ST_ROOMS; r++)
    snprintf(m->names[r], sizeof(m->names[r]), "room%zu", r);
  size_t made = 0;
  for (size_t i = 0; i < ST_CLIENTS; i++)
    made += hub_model_new_client(m, s, i) != NULL;
  if (!CHECK_EQ_INT(made, ST_CLIENTS))
    return;

  hub_rng_t rng = {0x9e3779b97f4a7c15ull};
  size_t wrong_rc = 0, diffs = 0, joins = 0, leaves = 0, frees = 0;
  size_t max_members = 0;
  int stopped = 0;
  for (size_t step = 0; step < ST_STEPS && !stopped; step++) {
    size_t i = hub_rand(&rng, ST_CLIENTS);
    size_t r = hub_rand(&rng, ST_ROOMS);
    uint32_t dice = hub_rand(&rng, 1000);
    wshub_client_t *c = m->c[i];
    if (dice < 4) {
      /* Rarely: the client goes away and a new one takes its slot. */
      wshub_hub_client_free(c);
      frees++;
      if (hub_model_new_client(m, s, i) == NULL) {
        CHECK(0);
        stopped = 1;
        break;
      }
    } else if (dice < 60) {
      /* The call that must not change anything. */
      int rc = m->in[i][r] ? wshub_join(c, m->names[r])
                           : wshub_leave(c, m->names[r]);
      if (rc != (m->in[i][r] ? 0 : UV_ENOENT))
        wrong_rc++;
    } else if (m->in[i][r]) {
      if (wshub_leave(c, m->names[r]) != 0)
        wrong_rc++;
      hub_model_remove(m, i, r);
      leaves++;
    } else {
      if (wshub_join(c, m->names[r]) != 0)
        wrong_rc++;
      m->in[i][r] = 1;
      m->order[i][m->norder[i]++] = (unsigned char)r;
      joins++;
    }
    size_t d = hub_model_diff(m, s, step % 50 == 0);
    if (d > 0) {
      fprintf(stderr, "  ... at step %zu (client #%zu, room %zu)\n", step, i,
              r);
      diffs += d;
      stopped = 1; /* one divergence is enough to report */
    }
    for (size_t rr = 0; rr < ST_ROOMS; rr++) {
      size_t n = 0;
      for (size_t k = 0; k < ST_CLIENTS; k++)
        n += m->in[k][rr];
      if (n > max_members)
        max_members = n;
    }
  }
  CHECK_EQ_INT(wrong_rc, 0);
  CHECK_EQ_INT(diffs, 0);
  CHECK_EQ_INT(stopped, 0);
  CHECK_EQ_INT(hub_model_diff(m, s, 1), 0);
  /* The walk really exercised big rooms and every kind of step. */
  CHECK(joins > 2000);
  CHECK(leaves > 500);
  CHECK(frees > 5);
  CHECK(max_members > 50);

  /* Free the clients in a scattered order, checking as rooms empty. */
  for (size_t k = 0; k < ST_CLIENTS; k++) {
    size_t i = (k * 7) % ST_CLIENTS; /* 7 is coprime with 200 */
    wshub_hub_client_free(m->c[i]);
    m->c[i] = NULL;
    memset(m->in[i], 0, sizeof(m->in[i]));
    m->norder[i] = 0;
    size_t rooms = 0;
    for (size_t r = 0; r < ST_ROOMS; r++) {
      size_t want = 0;
      for (size_t j = 0; j < ST_CLIENTS; j++)
        want += m->in[j][r];
      rooms += want > 0;
      memset(m->seen, 0, sizeof(m->seen));
      m->visits = m->strangers = 0;
      if (wshub_room_foreach(s, m->names[r], hub_model_visit, m) != want ||
          m->strangers != 0)
        diffs++;
      for (size_t j = 0; j < ST_CLIENTS; j++)
        if (m->seen[j] != m->in[j][r])
          diffs++;
    }
    if (wshub_room_count(s) != rooms ||
        wshub_client_count(s) != ST_CLIENTS - k - 1)
      diffs++;
  }
  CHECK_EQ_INT(diffs, 0);
  free(m);
  hub_env_close(T, &env);
}

int main(void) {
  unit_t t = {0, 0};
  unit_t *T = &t;
  test_ids(T);
  test_membership(T);
  test_room_order(T);
  test_send_no_ws(T);
  test_stress(T);
  return unit_finish(T);
}
