/* hub.c — clients, rooms and fan-out (see hub.h). */
#include "hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "grow.h"
#include "server.h"
#include "ws.h"

struct hub_room_s {
  char *name; /* also the map key */
  wshub_client_t **members;
  size_t n, cap;
};

void wshub_hub_init(wshub_hub_t *hub) {
  wshub_map_init(&hub->clients);
  wshub_map_init(&hub->rooms);
  hub->next_id = 0;
}

void wshub_hub_free(wshub_hub_t *hub) {
  wshub_map_free(&hub->clients);
  wshub_map_free(&hub->rooms);
}

uint64_t wshub_hub_new_id(wshub_server_t *s, char id[24]) {
  uint64_t step = s->cfg.id_step ? s->cfg.id_step : 1;
  uint64_t first = s->cfg.id_first ? s->cfg.id_first : 1;
  uint64_t n = first + s->hub.next_id++ * step;
  snprintf(id, 24, "c%llu", (unsigned long long)n);
  return n;
}

uint64_t wshub_hub_id_number(const char *id) {
  if (id == NULL || id[0] != 'c' || id[1] < '1' || id[1] > '9')
    return 0;
  return strtoull(id + 1, NULL, 10);
}

wshub_client_t *wshub_hub_client_new(wshub_server_t *s, wshub_ws_t *ws,
                                     const char *remote) {
  wshub_client_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->server = s;
  c->ws = ws;
  c->remote = remote;
  c->owner = wshub_hub_new_id(s, c->id);
  if (wshub_map_put(&s->hub.clients, c->id, c) != 0) {
    free(c);
    return NULL;
  }
  return c;
}

wshub_client_t *wshub_hub_sink_new(wshub_server_t *s, wshub_hub_sink_cb sink,
                                   void *arg, uint64_t owner,
                                   const char *remote) {
  wshub_client_t *c = wshub_hub_client_new(s, NULL, remote);
  if (c == NULL)
    return NULL;
  c->sink = sink;
  c->sink_arg = arg;
  c->owner = owner;
  return c;
}

void wshub_hub_client_free(wshub_client_t *c) {
  while (c->nrooms > 0)
    wshub_leave(c, c->rooms[c->nrooms - 1].room->name);
  wshub_map_del(&c->server->hub.clients, c->id);
  free(c->rooms);
  free(c);
}

static hub_room_t *hub_room(const wshub_server_t *s, const char *name) {
  return wshub_map_get(&s->hub.rooms, name);
}

static ssize_t hub_membership(const wshub_client_t *c, const hub_room_t *r) {
  for (size_t i = 0; i < c->nrooms; i++)
    if (c->rooms[i].room == r)
      return (ssize_t)i;
  return -1;
}

int wshub_in_room(const wshub_client_t *c, const char *room) {
  hub_room_t *r = hub_room(c->server, room);
  return r != NULL && hub_membership(c, r) >= 0;
}

static hub_room_t *hub_room_new(wshub_server_t *s, const char *name) {
  hub_room_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->name = strdup(name);
  if (r->name == NULL || wshub_map_put(&s->hub.rooms, r->name, r) != 0) {
    free(r->name);
    free(r);
    return NULL;
  }
  wshub_metric_inc(&s->m.rooms);
  return r;
}

static void hub_room_free(wshub_server_t *s, hub_room_t *r) {
  wshub_metric_sub(&s->m.rooms, 1);
  wshub_map_del(&s->hub.rooms, r->name);
  free(r->members);
  free(r->name);
  free(r);
}

int wshub_join(wshub_client_t *c, const char *room) {
  if (room == NULL || room[0] == '\0')
    return UV_EINVAL;
  wshub_server_t *s = c->server;
  hub_room_t *r = hub_room(s, room);
  if (r != NULL && hub_membership(c, r) >= 0)
    return 0;
  if (wshub_grow(&c->rooms, &c->rooms_cap, c->nrooms, sizeof(*c->rooms), 4))
    return UV_ENOMEM;
  int created = r == NULL;
  if (created && (r = hub_room_new(s, room)) == NULL)
    return UV_ENOMEM;
  if (wshub_grow(&r->members, &r->cap, r->n, sizeof(*r->members), 8) != 0) {
    if (created)
      hub_room_free(s, r);
    return UV_ENOMEM;
  }
  r->members[r->n] = c;
  c->rooms[c->nrooms++] = (hub_membership_t){r, r->n};
  r->n++;
  return 0;
}

int wshub_leave(wshub_client_t *c, const char *room) {
  wshub_server_t *s = c->server;
  hub_room_t *r = hub_room(s, room);
  ssize_t mi = r ? hub_membership(c, r) : -1;
  if (mi < 0)
    return UV_ENOENT;
  /* Swap-remove from the room; fix the moved member's back-index. */
  size_t idx = c->rooms[mi].index;
  wshub_client_t *moved = r->members[--r->n];
  r->members[idx] = moved;
  if (moved != c)
    moved->rooms[hub_membership(moved, r)].index = idx;
  /* Order-preserving removal from the client's own list. */
  memmove(&c->rooms[mi], &c->rooms[mi + 1],
          (c->nrooms - (size_t)mi - 1) * sizeof(*c->rooms));
  c->nrooms--;
  if (r->n == 0)
    hub_room_free(s, r);
  return 0;
}

size_t wshub_client_room_count(const wshub_client_t *c) {
  return c->nrooms;
}

const char *wshub_client_room(const wshub_client_t *c, size_t i) {
  return i < c->nrooms ? c->rooms[i].room->name : NULL;
}

size_t wshub_room_foreach(wshub_server_t *s, const char *room,
                          void (*fn)(wshub_client_t *c, void *arg), void *arg) {
  hub_room_t *r = hub_room(s, room);
  if (r == NULL)
    return 0;
  for (size_t i = 0; i < r->n; i++)
    fn(r->members[i], arg);
  return r->n;
}

size_t wshub_room_size(const wshub_server_t *s, const char *room) {
  const hub_room_t *r = hub_room(s, room);
  return r ? r->n : 0;
}

size_t wshub_room_count(const wshub_server_t *s) {
  return s->hub.rooms.count;
}

size_t wshub_client_count(const wshub_server_t *s) {
  return s->hub.clients.count;
}

const char *wshub_client_id(const wshub_client_t *c) {
  return c->id;
}

const char *wshub_client_remote(const wshub_client_t *c) {
  return c->remote;
}

wshub_server_t *wshub_client_server(const wshub_client_t *c) {
  return c->server;
}

void *wshub_client_data(const wshub_client_t *c) {
  return c->data;
}

void wshub_client_set_data(wshub_client_t *c, void *data) {
  c->data = data;
}

wshub_client_t *wshub_client_find(wshub_server_t *s, const char *id) {
  return wshub_map_get(&s->hub.clients, id);
}

void wshub_client_close(wshub_client_t *c, int code, const char *reason) {
  if (c->ws != NULL)
    wshub_ws_close(c->ws, (uint16_t)code, reason);
}

int wshub_hub_send_frame(wshub_client_t *c, wshub_buf_t *frame) {
  if (c->sink != NULL) {
    wshub_metric_inc(&c->server->m.deliveries);
    c->sink(c, frame, c->sink_arg);
    return 0;
  }
  if (c->ws == NULL)
    return UV_ECANCELED;
  int r = wshub_ws_send_frame(c->ws, frame);
  if (r == 0)
    wshub_metric_inc(&c->server->m.deliveries);
  if (r == UV_ENOBUFS) {
    /* A slow consumer: it goes, nobody else waits for it. */
    wshub_ws_drop_slow(c->ws);
    return 0;
  }
  if (r == UV_ENOMEM) /* it would miss this frame: it goes too */
    wshub_ws_drop(c->ws, 1011, "internal error");
  return r;
}

int wshub_hub_room_send_frame(wshub_server_t *s, const char *room,
                              wshub_buf_t *frame, uint64_t except_owner) {
  hub_room_t *r = hub_room(s, room);
  if (r == NULL)
    return 0;
  for (size_t i = 0; i < r->n; i++)
    if (r->members[i]->owner != except_owner)
      wshub_hub_send_frame(r->members[i], frame);
  return 0;
}

static wshub_buf_t *hub_frame(const void *data, size_t len, int binary) {
  return wshub_frame_build(binary ? WSHUB_OP_BINARY : WSHUB_OP_TEXT, data, len);
}

int wshub_send(wshub_client_t *c, const void *data, size_t len, int binary) {
  wshub_buf_t *f = hub_frame(data, len, binary);
  if (f == NULL)
    return UV_ENOMEM;
  int r = wshub_hub_send_frame(c, f);
  wshub_buf_unref(f);
  return r;
}

int wshub_send_room(wshub_server_t *s, const char *room, const void *data,
                    size_t len, int binary, const wshub_client_t *except) {
  if (hub_room(s, room) == NULL)
    return 0;
  wshub_buf_t *f = hub_frame(data, len, binary);
  if (f == NULL)
    return UV_ENOMEM;
  int r = wshub_hub_room_send_frame(s, room, f, except ? except->owner : 0);
  wshub_buf_unref(f);
  return r;
}

typedef struct {
  wshub_buf_t *frame;
  const wshub_client_t *except;
} hub_all_t;

static void hub_send_one(const char *key, void *value, void *arg) {
  (void)key;
  hub_all_t *a = arg;
  if (value != a->except)
    wshub_hub_send_frame(value, a->frame);
}

int wshub_send_all(wshub_server_t *s, const void *data, size_t len, int binary,
                   const wshub_client_t *except) {
  wshub_buf_t *f = hub_frame(data, len, binary);
  if (f == NULL)
    return UV_ENOMEM;
  hub_all_t a = {f, except};
  wshub_map_foreach(&s->hub.clients, hub_send_one, &a);
  wshub_buf_unref(f);
  return 0;
}
