/* chat_priv.h — the chat's state, shared by chat.c (the protocol over
 * WebSocket) and chathttp.c (the same protocol over HTTP: sessions, event
 * streams, polls). Everything here is guarded by wshub_chat_t.lock. Not
 * part of the public API.
 */
#ifndef WSHUB_CHAT_PRIV_H
#define WSHUB_CHAT_PRIV_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "chat.h"
#include "chatbus.h"
#include "cluster.h"
#include "jbuf.h"
#include "map.h"

#define CHAT_MAX_ROOMS_PER_CLIENT 16
#define CHAT_WELCOME_HISTORY 50
#define CHAT_NICK_BYTES (32 * 4 + 1)
#define CHAT_ROOM_BYTES 65

typedef struct chat_user_s chat_user_t;

/* An event stream of an HTTP session (chathttp.c), known by the id of its
 * hub sink client — which also says which loop it lives on. */
typedef struct {
  char id[24];
  char room[CHAT_ROOM_BYTES];
} chat_stream_ref_t;

/* A held poll in a room, woken by the room's next message (which also
 * takes it off the list and off its session's nholds). */
typedef struct {
  char id[24];       /* its hub sink client */
  uint64_t owner;    /* the session's number */
  chat_user_t *user; /* the session: not freed while nholds > 0 */
} chat_poll_ref_t;

/* A message in a room's history ring. */
typedef struct {
  uint64_t id;
  char from[24]; /* the sender's client id */
  char *json;    /* the message object as sent, ending in "\"own\":false}" */
  size_t len;
} chat_entry_t;

#define CHAT_OWN_FALSE "false}"
#define CHAT_OWN_TAIL (sizeof(CHAT_OWN_FALSE) - 1)

/* A member of the room on another node (with Redis): its client id and
 * member JSON, as that node published them. */
typedef struct {
  char id[24];
  uint64_t node;
  char *json;
  size_t len;
} chat_remote_t;

/* A reply that waits until the room's history is read from Redis
 * (chatcluster.c): for user `user`, to hub client `to` ("": the user's own
 * connection). */
enum { CHAT_WAIT_JOIN, CHAT_WAIT_WELCOME, CHAT_WAIT_JOINED, CHAT_WAIT_RESUME };
typedef struct {
  char user[24];
  char to[24];
  int kind;
  int flag; /* WELCOME: resuming; JOINED: with history */
  uint64_t after;
} chat_wait_t;

/* With Redis, where a room's history and remote members stand. */
enum {
  CHAT_SYNC_NONE,    /* not read (no member here): replies wait when up */
  CHAT_SYNC_LOADING, /* being read: replies wait, notices are held */
  CHAT_SYNC_DONE,    /* the ring and member list follow Redis */
  CHAT_SYNC_CATCHUP  /* reconnected: reading what was missed; held */
};

/* A message or notice heard while the room was being read, kept to be
 * run in order afterwards (id 0: a notice). */
typedef struct chat_held_s {
  struct chat_held_s *next;
  uint64_t id;
  size_t len;
  char payload[];
} chat_held_t;

typedef struct {
  char *name;      /* also the map key */
  char *name_json; /* the name as a JSON string */
  uint64_t last_id;
  chat_entry_t *ring; /* oldest at `start` */
  size_t start, len;
  chat_user_t **members; /* every member, on every thread */
  size_t n, cap;
  char *members_json; /* cached JSON array of the first presence_limit
                         members, NULL when stale */
  size_t members_json_len;
  chat_poll_ref_t *polls; /* held polls (chathttp.c) */
  size_t npolls, polls_cap;
  /* With Redis (chatcluster.c): */
  int heard;         /* its subscription is confirmed */
  int sync;          /* CHAT_SYNC_* */
  unsigned sync_gen; /* tells a stale read's answer from the current one */
  uint64_t redis_id; /* the highest id heard from Redis */
  int followed;      /* read from Redis since its first member here */
  chat_wait_t *waits;
  size_t nwaits, waits_cap;
  chat_remote_t *remote; /* its members on other nodes */
  size_t nremote, remote_cap;
  chat_held_t *held, *held_tail;
} chat_room_t;

struct chat_user_s {
  char id[24];       /* the client's id, also the users map key */
  uint64_t number;   /* n of the id "c<n>" */
  char *nick;        /* heap: most are short, the longest is 128 bytes */
  char *member_json; /* {"id":…,"nick":…}, made when first needed */
  size_t member_json_len;
  chat_room_t **rooms; /* join order; grows to CHAT_MAX_ROOMS_PER_CLIENT */
  size_t nrooms, rooms_cap;
  double tokens;     /* rate limit bucket */
  uint64_t refilled; /* uv_hrtime() of the last refill */
  unsigned refused;  /* messages refused in a row */
  /* HTTP sessions only (chathttp.c); token is NULL for a WebSocket. */
  char *token;                /* also the sessions map key */
  chat_stream_ref_t *streams; /* open event streams */
  size_t nstreams, streams_cap;
  unsigned nholds;     /* streams and held polls */
  uint64_t idle_since; /* uv_hrtime() when nholds last fell to 0 */
};

struct wshub_chat_s {
  wshub_chat_config_t cfg;
  uv_mutex_t lock;              /* everything below */
  wshub_map_t rooms;            /* name → chat_room_t */
  wshub_map_t users;            /* client id → chat_user_t */
  wshub_map_t sessions;         /* token → chat_user_t (HTTP sessions) */
  uint64_t swept;               /* uv_hrtime() of the last session sweep */
  uv_timer_t sweep;             /* the sweep's timer, on thread 0's loop */
  wshub_server_t *sweep_server; /* thread 0's server, while attached */
  chat_bus_t *bus;
  uint64_t posted, directs;      /* messages accepted (room, direct): metrics */
  wshub_request_cb next_request; /* the host's on_request, if it had one */
  void *next_user;               /* and its user pointer */
  /* With Redis (chatcluster.c): the node's random number, the link (on
   * thread 0's loop, touched only there), whether it is up, and the
   * operations other threads hand to thread 0 (under the lock). */
  uint64_t node;
  wshub_cluster_t *cluster;
  int cluster_up;
  uv_async_t cluster_wake;
  struct chat_cluster_op_s *ops; /* a FIFO list: head, tail */
  struct chat_cluster_op_s *ops_tail;
  /* The liveness check of the nodes that remote members belong to, every
   * CHAT_ALIVE_MS on thread 0; one at a time (alive_nodes in flight). */
  uv_timer_t alive_timer;
  uint64_t *alive_nodes;
  size_t nalive, alive_cap;
  int alive_busy;
};

/* What a POST /messages request learns of its message (chathttp.c): the
 * first error instead of an `error` message, and the id it was given. */
typedef struct {
  const char *code;
  char text[200];
  uint64_t id;
} chat_capture_t;

/* The state one callback works with. */
typedef struct {
  wshub_chat_t *chat;
  wshub_server_t *server;
  wshub_client_t *client;
  chat_user_t *user;
  chat_capture_t *cap; /* NULL: errors are sent as messages */
  int failed;          /* out of memory: something owed was not sent (chat.c) */
} chat_ctx_t;

/* ---- chat.c, for chathttp.c (the lock is held) ---- */

chat_room_t *chat_room(wshub_chat_t *chat, const char *name, int create);
ssize_t chat_user_room(const chat_user_t *u, const chat_room_t *r);
/* A new user (not yet in the users map); NULL if out of memory. */
chat_user_t *chat_user_new(const wshub_chat_t *chat, const char *id,
                           const char *nick);
void chat_user_free(const char *key, void *value, void *arg);
/* Leaves every room (with notices) and forgets x->user; frees it. */
void chat_user_gone(chat_ctx_t *x);
/* Joins room, telling the others; NULL after an error was sent (or out of
 * memory: x->failed set). */
chat_room_t *chat_enter(chat_ctx_t *x, const char *room);
/* Appends the JSON array of r's messages after `after` (at most max), "own"
 * for me; returns how many. */
size_t chat_history(const wshub_chat_t *chat, const chat_room_t *r,
                    uint64_t after, size_t max, const char *me,
                    wshub_jbuf_t *out);
/* The welcome of x->user in r (resuming after `after` if resume), to the
 * client `to` (NULL: the user's own connection). */
void chat_welcome(chat_ctx_t *x, chat_room_t *r, int resume, uint64_t after,
                  const char *to);
void chat_error(chat_ctx_t *x, const char *code, const char *text);
int chat_rate_ok(chat_ctx_t *x);
void chat_on_json(chat_ctx_t *x, const json_t *o);
json_t *chat_msg(const char *type, const char *text);
/* o serialized into a new NUL-terminated string (*len its length); NULL
 * if out of memory, or o is NULL. Not json_dumps(): jansson 2.14 ignores a
 * failed allocation while writing an object key and goes on, which yields
 * broken JSON; json_dumpb() writes into our buffer and cannot lose bytes. */
char *chat_dump(const json_t *o, size_t flags, size_t *len);

/* The message object (own false) of a room message, as sent; 0 or -1 if
 * out of memory. */
int chat_message_json(const chat_room_t *r, uint64_t id, const char *from,
                      size_t from_len, const char *text, size_t len, int64_t ts,
                      wshub_jbuf_t *out);
/* Puts n entries (oldest first, their json taken over) before the ring's
 * own, those not older than its oldest dropped; the oldest of all go when
 * past the ring's size. */
void chat_ring_prepend(wshub_chat_t *chat, chat_room_t *r, chat_entry_t *e,
                       size_t n);
/* Empties the ring. */
void chat_ring_clear(wshub_chat_t *chat, chat_room_t *r);
/* Room message `id` to this node's members of r (see chat.c); 0 or -1
 * when out of memory. */
int chat_emit(chat_ctx_t *x, chat_room_t *r, uint64_t id, const char *from,
              size_t from_len, const char *fid, chat_user_t *sender,
              const char *text, size_t len, int64_t ts);
/* The `direct` message object (own false) between two members (borrowed);
 * NULL if out of memory or a member is not an object. */
json_t *chat_direct_obj(json_t *from, json_t *to, const char *text, size_t len,
                        int64_t ts);
/* Sends o to user u (its connection, or its streams of `room`, NULL: all). */
void chat_send_to(chat_ctx_t *x, const chat_user_t *u, const json_t *o,
                  const char *room);
/* The member JSON of u, cached in u; NULL if out of memory. */
const char *chat_member_json(chat_user_t *u);

/* Hub client `id` of x->user joins r (now, or after r's history is read
 * from Redis). 0 or UV_ENOMEM. */
int chat_hub_join(chat_ctx_t *x, chat_room_t *r, const char *id);
/* Members of r on every node (local and remote). */
size_t chat_room_size(const chat_room_t *r);
/* The cached member list of r is stale (a member in its prefix changed). */
void chat_members_stale(chat_room_t *r);
/* o to every hub member of r on this node (x->failed if out of memory). */
void chat_room_notice(chat_ctx_t *x, chat_room_t *r, const json_t *o);
/* The room's replies that waited (chatcluster.c), run in order now;
 * returns how many could not be sent (out of memory). */
size_t chat_run_waits(wshub_chat_t *chat, chat_room_t *r);
void chat_gap_to(chat_ctx_t *x, const chat_room_t *r, uint64_t after,
                 uint64_t oldest, const char *to);

/* ---- chatcluster.c, for chat.c (the lock is held) ---- */

/* 1 when replies about r must wait until its history is read from Redis
 * (they are recorded with chat_cluster_wait). */
int chat_cluster_waits(const wshub_chat_t *chat, const chat_room_t *r);
/* Frees r's Redis state (remote members, waits, held messages). */
void chat_cluster_forget(chat_room_t *r);
/* Records a reply to run once r is read; 0 or UV_ENOMEM. */
int chat_cluster_wait(chat_room_t *r, const chat_wait_t *w);
/* u joined (json: its member JSON) or left (NULL) r, or changed its nick
 * (old: the previous nick): the other nodes are told. */
void chat_cluster_presence(wshub_chat_t *chat, chat_room_t *r, chat_user_t *u,
                           int joined, const char *old);

/* Starts / stops the Redis link on thread 0's loop (no-ops without Redis). */
int chat_cluster_attach(wshub_chat_t *chat, uv_loop_t *loop);
void chat_cluster_detach(wshub_chat_t *chat);
/* Publishes a room message through Redis; 0, or -1 if out of memory. */
int chat_cluster_post(wshub_chat_t *chat, chat_room_t *r, const char *from,
                      size_t from_len, const char *fid, const char *text,
                      size_t len, int64_t ts);
/* Room r gained its first member on this node (on = 1) or lost its last. */
void chat_cluster_watch(wshub_chat_t *chat, chat_room_t *r, int on);
/* A direct message from x->user to client `to` of another node (the id
 * names it): sent there; the recipient's node delivers it and answers with
 * the sender's own copy, or unknown_client. 1 if sent this way, 0 if `to`
 * is not a client of another node (or the link is down), -1 if out of
 * memory. */
int chat_cluster_direct(chat_ctx_t *x, const char *to, const char *text,
                        size_t len, int64_t ts);

/* ---- chathttp.c, for chat.c ---- */

/* Ends sessions idle for longer than the timeout (at most once a second). */
void chat_http_sweep(chat_ctx_t *x);
/* wshub_chat_install's part: the /events, /poll and /messages routes. */
void chat_http_install(wshub_chat_t *chat, wshub_config_t *cfg);

#endif
