/* cluster.h — a node's link to Redis, through which several wshub nodes
 * share their chat rooms (hiredis and its libuv adapter).
 *
 * A wshub_cluster_t lives on one loop and owns two Redis connections: one
 * for commands, one in subscriber mode. It is the chat's transport to the
 * other nodes, nothing more: what goes over it is opaque text.
 *
 *  - Rooms: the owner subscribes to a room when the room gains its first
 *    member on this node and unsubscribes when it loses its last one; the
 *    set is kept here and subscribed again after every reconnection.
 *  - Messages: wshub_cluster_publish() runs one Lua script that takes the
 *    room's next id (INCR, never below the id floor the caller gives, so
 *    ids stay monotonic even when Redis restarts empty), appends the
 *    message to the room's Stream (XADD "<id>-0" with MAXLEN ~ history) and
 *    PUBLISHes "<id> <payload>" on the room's channel — atomically, so every
 *    node, the publisher included, hears a room's messages in id order. The
 *    publisher learns the id from the script's reply, but delivers, like
 *    every other node, when the message comes back on the channel.
 *  - Failure: nothing ever blocks the loop. A lost connection is retried
 *    with exponential backoff (100 ms doubling to 5 s), one that does not
 *    come up within 3 s is dropped and retried; on_state tells the owner
 *    when the link goes down and when it is back (connected, script loaded
 *    and every room's subscription confirmed by Redis again, so what is
 *    published from then on is heard). Commands issued while down fail at
 *    once with UV_ENOTCONN. A room subscribed while up is heard from the
 *    moment Redis processes the SUBSCRIBE, a round trip later.
 *
 * Keys, for room R: "wshub:room:R:seq" (the id counter), "wshub:room:R:log"
 * (the Stream) and channel "wshub:room:R". Strings passed in are copied;
 * callbacks run on the loop.
 */
#ifndef WSHUB_CLUSTER_H
#define WSHUB_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct wshub_cluster_s wshub_cluster_t;

typedef struct {
  /* A message heard on a subscribed room's channel (ours included); id 0
   * for one sent with wshub_cluster_send. */
  void (*on_message)(void *user, const char *room, uint64_t id,
                     const char *payload, size_t len);
  /* The link is up (1: connected, script loaded, rooms subscribed) or went
   * down (0). Called on every change. */
  void (*on_state)(void *user, int up);
  /* The log line of an event worth telling an operator (level as in
   * wshub_log_level_t). May be NULL. */
  void (*on_log)(void *user, int level, const char *msg);
  /* Redis confirmed a SUBSCRIBE of the room: what is published from now on
   * is heard. May be NULL. */
  void (*on_subscribed)(void *user, const char *room);
  /* The highest id of the room the owner has seen. Asked for each room on
   * every (re)connection: the room's counter is raised to it before the
   * link counts as up, so ids the owner gave while Redis was away are not
   * given again by this node's publishes or any that follow. May be NULL. */
  uint64_t (*floor)(void *user, const char *room);
} wshub_cluster_cb_t;

/* Parses "redis://host[:port][/db]" (host may be a bracketed IPv6 literal;
 * port 6379, db 0 by default). Returns 0 or UV_EINVAL. */
int wshub_cluster_parse_url(const char *url, char *host, size_t host_cap,
                            int *port, int *db);

/* Creates the link and starts connecting. UV_EINVAL for a bad URL,
 * UV_ENOMEM. */
int wshub_cluster_new(uv_loop_t *loop, const char *url,
                      const wshub_cluster_cb_t *cb, void *user,
                      wshub_cluster_t **out);
/* 1 when up (see on_state). */
int wshub_cluster_up(const wshub_cluster_t *c);

/* Subscribe to / unsubscribe from a room (no-ops when already so). */
int wshub_cluster_subscribe(wshub_cluster_t *c, const char *room);
int wshub_cluster_unsubscribe(wshub_cluster_t *c, const char *room);

/* Called with the id the script gave (0 and an error when it failed). */
typedef void (*wshub_cluster_published_cb)(void *arg, uint64_t id, int err);

/* Publishes a room message (see above). floor: the highest id of the room
 * this node has seen (the new id is above it); history: the Stream's
 * approximate length cap. done may be NULL. UV_ENOTCONN while down. */
int wshub_cluster_publish(wshub_cluster_t *c, const char *room,
                          const char *payload, size_t len, uint64_t floor,
                          size_t history, wshub_cluster_published_cb done,
                          void *arg);

/* Publishes payload on the room's channel as it is, with id 0: no counter,
 * no Stream (messages between nodes that are not room messages). */
int wshub_cluster_send(wshub_cluster_t *c, const char *room,
                       const char *payload, size_t len);

/* ---- history and presence (issue 10) ----
 *
 * Keys besides the above: "wshub:room:R:members", a hash of the room's
 * members on every node (client id -> "<node> <member JSON>"), and
 * "wshub:node:<node>", set with a 15 s expiry and refreshed every 5 s
 * while the link is up (wshub_cluster_set_node): a node whose key is gone
 * has stopped, and its members are dropped from the hashes when read. */

/* One entry of a room's Stream (id: the message id, data: the payload as
 * published) or one member (id: its node, key: its client id, data: its
 * member JSON). Valid during the callback only. */
typedef struct {
  uint64_t id;
  const char *key;
  size_t key_len;
  const char *data;
  size_t len;
} wshub_cluster_item_t;

/* err 0: the Stream's newest entries after `after` (at most count, oldest
 * first) and the room's members on live nodes, read
 * in one step. err < 0: the link failed first (nothing else is valid). */
typedef void (*wshub_cluster_loaded_cb)(void *arg, int err,
                                        const wshub_cluster_item_t *log,
                                        size_t nlog,
                                        const wshub_cluster_item_t *members,
                                        size_t nmembers);

/* Reads a room's history and members (see above). UV_ENOTCONN while down
 * (done is then not called). */
int wshub_cluster_load(wshub_cluster_t *c, const char *room, uint64_t after,
                       size_t count, wshub_cluster_loaded_cb done, void *arg);

/* Records member `id` of node `node` in the room's hash (json NULL: removes
 * it) and PUBLISHes notice on the room's channel, heard with id 0 — in one
 * step, so a load sees the hash either before or after the notice. */
int wshub_cluster_presence(wshub_cluster_t *c, const char *room, const char *id,
                           uint64_t node, const char *json, size_t json_len,
                           const char *notice, size_t notice_len);

/* The node this link speaks for: its key is set at once when up and kept
 * alive while up. */
void wshub_cluster_set_node(wshub_cluster_t *c, uint64_t node);

/* alive[i]: whether node nodes[i]'s key exists; err < 0 if the link
 * failed first. */
typedef void (*wshub_cluster_alive_cb)(void *arg, int err, const int *alive,
                                       size_t n);
int wshub_cluster_alive(wshub_cluster_t *c, const uint64_t *nodes, size_t n,
                        wshub_cluster_alive_cb done, void *arg);

/* Disconnects and frees the link once its handles are closed; no callback
 * runs after this returns (pending publishes are not called back). */
void wshub_cluster_close(wshub_cluster_t *c);

#endif
