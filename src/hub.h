/* hub.h — the broadcast module: the set of WebSocket clients, their ids,
 * rooms, and fan-out of shared frames.
 *
 * The hub lives inside wshub_server_t (no globals). A client is created by
 * ws.c when an upgrade is accepted and freed by ws.c when its connection
 * closes (wshub_hub_client_free leaves every room first, so membership is
 * cleaned on every close path). Rooms are created by their first join and
 * freed with their last member. Fan-out builds one frame and queues a
 * reference to it on each member's connection; a member whose queue is
 * over the backlog limit is scheduled to be disconnected (never while the
 * member array is being walked).
 *
 * A client may also be a *sink*: not a WebSocket but an HTTP event stream or
 * a held poll of the chat (chathttp.c), created and freed by whoever made
 * it; frames sent to it go to its sink callback. Every client has an
 * `owner`, the number of the chat participant it serves (its own id's
 * number for a WebSocket; the session's for a sink), and a room send
 * skips the members of one owner — the sender, who gets its own copy.
 */
#ifndef WSHUB_HUB_H
#define WSHUB_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "map.h"
#include "wshub.h"

typedef struct wshub_ws_s wshub_ws_t;
typedef struct hub_room_s hub_room_t;

/* Receives the frames sent to a sink client. */
typedef void (*wshub_hub_sink_cb)(wshub_client_t *c, wshub_buf_t *frame,
                                  void *arg);

typedef struct {
  wshub_map_t clients; /* id → wshub_client_t */
  wshub_map_t rooms;   /* name → hub_room_t */
  uint64_t next_id;
} wshub_hub_t;

typedef struct {
  hub_room_t *room;
  size_t index; /* position of the client in room->members */
} hub_membership_t;

struct wshub_client_s {
  wshub_server_t *server;
  wshub_ws_t *ws;         /* NULL for a sink */
  wshub_hub_sink_cb sink; /* NULL for a WebSocket */
  void *sink_arg;
  uint64_t owner;     /* see above */
  const char *remote; /* the connection's "ip:port" */
  void *data;
  hub_membership_t *rooms; /* in join order */
  size_t nrooms, rooms_cap;
  char id[24];
};

void wshub_hub_init(wshub_hub_t *hub);
/* Frees the tables (every client is gone by then). */
void wshub_hub_free(wshub_hub_t *hub);

/* A new client with a fresh id, registered. NULL if out of memory. */
wshub_client_t *wshub_hub_client_new(wshub_server_t *s, wshub_ws_t *ws,
                                     const char *remote);
/* A new sink client with a fresh id, serving `owner`. */
wshub_client_t *wshub_hub_sink_new(wshub_server_t *s, wshub_hub_sink_cb sink,
                                   void *arg, uint64_t owner,
                                   const char *remote);
/* A fresh id from this server's sequence ("c<n>") for a participant that
 * is not a client of its own (an HTTP session); returns n. */
uint64_t wshub_hub_new_id(wshub_server_t *s, char id[24]);
/* The number of an id "c<n>"; 0 if it is not one. */
uint64_t wshub_hub_id_number(const char *id);
/* Leaves every room, unregisters and frees the client. */
void wshub_hub_client_free(wshub_client_t *c);

/* Queues a prebuilt frame (frame.c) to one client / a room's members. A
 * client whose queue cannot take it (out of memory) is disconnected with
 * close 1011, a slow consumer with 1008. */
int wshub_hub_send_frame(wshub_client_t *c, wshub_buf_t *frame);
/* Skips the members whose owner is except_owner (0: none). */
int wshub_hub_room_send_frame(wshub_server_t *s, const char *room,
                              wshub_buf_t *frame, uint64_t except_owner);

#endif
