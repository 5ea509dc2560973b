/* chatbus.c — ordered delivery of chat output across loops (see chatbus.h).
 */
#include "chatbus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"

enum { BUS_ROOM, BUS_TO, BUS_JOIN, BUS_LEAVE };

typedef struct bus_item_s {
  struct bus_item_s *next;
  wshub_buf_t *frame; /* BUS_ROOM, BUS_TO */
  unsigned char kind;
  char id[24]; /* target, member, or the excepted sender ("" for none) */
  char room[72];
} bus_item_t;

typedef struct {
  uv_mutex_t lock;
  uv_async_t async;
  bus_item_t *head, *tail;
  wshub_server_t *server;
  int active;
} bus_thread_t;

struct chat_bus_s {
  unsigned nthreads;
  bus_thread_t *threads;
};

chat_bus_t *chat_bus_new(unsigned nthreads) {
  chat_bus_t *bus = calloc(1, sizeof(*bus));
  if (bus == NULL)
    return NULL;
  bus->nthreads = nthreads;
  if (nthreads > 0) {
    bus->threads = calloc(nthreads, sizeof(*bus->threads));
    if (bus->threads == NULL) {
      free(bus);
      return NULL;
    }
    for (unsigned i = 0; i < nthreads; i++)
      uv_mutex_init(&bus->threads[i].lock);
  }
  return bus;
}

void chat_bus_free(chat_bus_t *bus) {
  if (bus == NULL)
    return;
  for (unsigned i = 0; i < bus->nthreads; i++)
    uv_mutex_destroy(&bus->threads[i].lock);
  free(bus->threads);
  free(bus);
}

unsigned chat_bus_threads(const chat_bus_t *bus) {
  return bus->nthreads;
}

unsigned chat_bus_thread_of(const chat_bus_t *bus, const char *id) {
  if (bus->nthreads == 0 || id[0] != 'c')
    return 0;
  unsigned long long n = strtoull(id + 1, NULL, 10);
  if (n == 0)
    return 0;
  /* Above bit 40: the node's number (with Redis, see chat.c). */
  uint64_t local = (n - 1) & ((UINT64_C(1) << WSHUB_CHAT_NODE_SHIFT) - 1);
  return (unsigned)(local % bus->nthreads);
}

/* Runs one item on the server of the thread it was queued for. Returns
 * the result of a join. */
static int bus_run(wshub_server_t *s, const bus_item_t *it) {
  if (it->kind == BUS_ROOM) {
    wshub_hub_room_send_frame(s, it->room, it->frame,
                              wshub_hub_id_number(it->id));
    return 0;
  }
  wshub_client_t *c = it->id[0] ? wshub_client_find(s, it->id) : NULL;
  switch (it->kind) {
  case BUS_TO:
    if (c != NULL)
      wshub_hub_send_frame(c, it->frame);
    break;
  case BUS_JOIN:
    if (c != NULL)
      return wshub_join(c, it->room);
    break;
  case BUS_LEAVE:
    if (c != NULL)
      wshub_leave(c, it->room);
    break;
  }
  return 0;
}

static void bus_item_free(bus_item_t *it) {
  wshub_buf_unref(it->frame);
  free(it);
}

/* Runs everything queued for thread t, in order. */
static void bus_drain(bus_thread_t *t) {
  uv_mutex_lock(&t->lock);
  bus_item_t *it = t->head;
  t->head = t->tail = NULL;
  uv_mutex_unlock(&t->lock);
  while (it != NULL) {
    bus_item_t *next = it->next;
    bus_run(t->server, it);
    bus_item_free(it);
    it = next;
  }
}

static void bus_on_async(uv_async_t *a) {
  bus_drain(a->data);
}

int chat_bus_attach(chat_bus_t *bus, unsigned index, uv_loop_t *loop,
                    wshub_server_t *server) {
  bus_thread_t *t = &bus->threads[index];
  int r = uv_async_init(loop, &t->async, bus_on_async);
  if (r != 0)
    return r;
  t->async.data = t;
  /* The server keeps the loop alive, not the bus: when the server has
   * closed, the loop may end and the thread detaches. */
  uv_unref((uv_handle_t *)&t->async);
  uv_mutex_lock(&t->lock);
  t->server = server;
  t->active = 1;
  uv_mutex_unlock(&t->lock);
  return 0;
}

void chat_bus_detach(chat_bus_t *bus, unsigned index) {
  bus_thread_t *t = &bus->threads[index];
  uv_mutex_lock(&t->lock);
  t->active = 0;
  bus_item_t *it = t->head;
  t->head = t->tail = NULL;
  uv_mutex_unlock(&t->lock);
  while (it != NULL) {
    bus_item_t *next = it->next;
    bus_item_free(it);
    it = next;
  }
  uv_close((uv_handle_t *)&t->async, NULL);
}

static void bus_fill(bus_item_t *it, int kind, const char *id, const char *room,
                     wshub_buf_t *frame) {
  it->kind = (unsigned char)kind;
  it->frame = frame ? wshub_buf_ref(frame) : NULL;
  snprintf(it->id, sizeof(it->id), "%s", id ? id : "");
  snprintf(it->room, sizeof(it->room), "%s", room ? room : "");
}

/* Appends an item to thread i's inbox and wakes its loop. */
static int bus_post(chat_bus_t *bus, unsigned i, int kind, const char *id,
                    const char *room, wshub_buf_t *frame) {
  bus_thread_t *t = &bus->threads[i];
  if (frame != NULL)
    wshub_buf_share(frame); /* before any other thread can see it */
  bus_item_t *it = calloc(1, sizeof(*it));
  if (it == NULL)
    return UV_ENOMEM; /* this delivery is lost, nothing else */
  bus_fill(it, kind, id, room, frame);
  uv_mutex_lock(&t->lock);
  if (!t->active) {
    uv_mutex_unlock(&t->lock);
    bus_item_free(it);
    return 0;
  }
  if (t->tail)
    t->tail->next = it;
  else
    t->head = it;
  t->tail = it;
  uv_mutex_unlock(&t->lock);
  uv_async_send(&t->async);
  return 0;
}

/* Direct mode, or the caller's own thread: run now. */
static int bus_now(wshub_server_t *s, int kind, const char *id,
                   const char *room, wshub_buf_t *frame) {
  bus_item_t it;
  memset(&it, 0, sizeof(it));
  bus_fill(&it, kind, id, room, frame);
  int r = bus_run(s, &it);
  wshub_buf_unref(it.frame);
  return r;
}

/* Delivers to thread i. On the caller's own thread the item runs at once,
 * after whatever its inbox still holds: everything is queued under the
 * chat's lock, which the caller holds, so the order stays the global one —
 * and output for a client precedes anything its connection does next (a
 * close frame read in the same packet, say). */
static int bus_deliver(chat_bus_t *bus, unsigned i, wshub_server_t *from,
                       int kind, const char *id, const char *room,
                       wshub_buf_t *frame) {
  bus_thread_t *t = &bus->threads[i];
  if (t->server == from) {
    bus_drain(t);
    return bus_now(from, kind, id, room, frame);
  }
  return bus_post(bus, i, kind, id, room, frame);
}

void chat_bus_room(chat_bus_t *bus, wshub_server_t *from, const char *room,
                   wshub_buf_t *frame, const char *except) {
  if (bus->nthreads == 0) {
    bus_now(from, BUS_ROOM, except, room, frame);
    return;
  }
  for (unsigned i = 0; i < bus->nthreads; i++)
    bus_deliver(bus, i, from, BUS_ROOM, except, room, frame);
}

static int bus_one(chat_bus_t *bus, wshub_server_t *from, int kind,
                   const char *id, const char *room, wshub_buf_t *frame) {
  if (bus->nthreads == 0)
    return bus_now(from, kind, id, room, frame);
  return bus_deliver(bus, chat_bus_thread_of(bus, id), from, kind, id, room,
                     frame);
}

void chat_bus_to(chat_bus_t *bus, wshub_server_t *from, const char *id,
                 wshub_buf_t *frame) {
  bus_one(bus, from, BUS_TO, id, NULL, frame);
}

int chat_bus_join(chat_bus_t *bus, wshub_server_t *from, const char *id,
                  const char *room) {
  return bus_one(bus, from, BUS_JOIN, id, room, NULL);
}

void chat_bus_leave(chat_bus_t *bus, wshub_server_t *from, const char *id,
                    const char *room) {
  bus_one(bus, from, BUS_LEAVE, id, room, NULL);
}
