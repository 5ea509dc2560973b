/* chatcluster.c — the chat's rooms shared with other nodes through Redis
 * (wshub_chat_config_t.redis_url; the link is cluster.c).
 *
 * The link lives on thread 0's loop and is touched only there. Other
 * threads (and thread 0 itself, inside chat callbacks) hand it operations
 * through a FIFO list kept under the chat's lock and a uv_async_t that
 * wakes thread 0: subscribe when a room gains its first member on this
 * node, unsubscribe when it loses its last, publish a room message.
 *
 * A room message, while the link is up, is not delivered where it was
 * written: it is published (cluster.c's script gives it the room's next id
 * and PUBLISHes it), and every node, this one too, delivers it when it
 * comes back on the room's channel — the same messages, ids and order on
 * every node, each once. Until Redis confirms a room's SUBSCRIBE the
 * messages for it wait here (published earlier, one of our own could pass
 * the subscription and never come back). While the link is down the chat
 * delivers locally with ids above the last one seen (chat.c), and that
 * floor goes with every publish, so Redis' ids stay above them — above the
 * ones this node gave; another node that did not see them may be given
 * the same ids again (both messages are delivered: nothing is lost).
 *
 * A published message is "<sender id>\n<timestamp>\n<sender member JSON>\n
 * <text>": the JSON has no raw line breaks, the text may.
 *
 * Direct messages: every node listens on its own channel, pseudo-room
 * "@n<node>" (room names cannot hold '@'), and a client id names its node
 * (chat.c). A direct message to a client of another node goes there as
 * "d\n<from id>\n<to id>\n<ts>\n<from JSON>\n<text>"; that node delivers it
 * and answers the sender's node with the sender's own copy,
 * "c\n<from id>\n<ts>\n<to JSON>\n<from JSON>\n<text>", or with
 * "e\n<from id>\n<to id>" when there is no such client (unknown_client).
 */
#include <stdlib.h>
#include <string.h>

#include "chat_priv.h"
#include "cluster.h"
#include "server.h"

enum { CC_UNSUBSCRIBE, CC_SUBSCRIBE, CC_PUBLISH, CC_SEND };

typedef struct chat_cluster_op_s {
  struct chat_cluster_op_s *next;
  int kind;
  uint64_t floor;
  size_t len;
  char room[CHAT_ROOM_BYTES];
  char payload[]; /* CC_PUBLISH */
} chat_cluster_op_t;

/* Appends an operation (the lock is held) and wakes thread 0. */
static void cc_push(wshub_chat_t *chat, chat_cluster_op_t *op) {
  op->next = NULL;
  if (chat->ops_tail != NULL)
    chat->ops_tail->next = op;
  else
    chat->ops = op;
  chat->ops_tail = op;
  uv_async_send(&chat->cluster_wake);
}

static chat_cluster_op_t *cc_op(int kind, const char *room, size_t len) {
  chat_cluster_op_t *op = malloc(sizeof(*op) + len + 1);
  if (op == NULL)
    return NULL;
  op->kind = kind;
  op->floor = 0;
  op->len = len;
  snprintf(op->room, sizeof(op->room), "%s", room);
  return op;
}

void chat_cluster_watch(wshub_chat_t *chat, chat_room_t *r, int on) {
  if (chat->cluster == NULL)
    return;
  r->heard = 0;
  chat_cluster_op_t *op = cc_op(on ? CC_SUBSCRIBE : CC_UNSUBSCRIBE, r->name, 0);
  if (op == NULL) {
    /* Out of memory: this node will not hear the room's messages from the
     * others (or keeps hearing them, and ignores them). */
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "redis: out of memory: room %s not %s", r->name,
              on ? "subscribed" : "unsubscribed");
    return;
  }
  cc_push(chat, op);
}

int chat_cluster_post(wshub_chat_t *chat, chat_room_t *r, const char *from,
                      size_t from_len, const char *fid, const char *text,
                      size_t len, int64_t ts) {
  char head[64];
  int hl = snprintf(head, sizeof(head), "%s\n%lld\n", fid, (long long)ts);
  size_t total = (size_t)hl + from_len + 1 + len;
  chat_cluster_op_t *op = cc_op(CC_PUBLISH, r->name, total);
  if (op == NULL)
    return -1;
  char *p = op->payload;
  memcpy(p, head, (size_t)hl);
  memcpy(p + hl, from, from_len);
  p[(size_t)hl + from_len] = '\n';
  memcpy(p + (size_t)hl + from_len + 1, text, len);
  p[total] = '\0';
  op->floor = r->last_id;
  cc_push(chat, op);
  return 0;
}

/* The channel (pseudo-room) of node `node`. */
static void cc_node_room(char out[CHAT_ROOM_BYTES], uint64_t node) {
  snprintf(out, CHAT_ROOM_BYTES, "@n%llu", (unsigned long long)node);
}

/* The node a client id names (chat.c), 0 if none. */
static uint64_t cc_node_of(const char *id) {
  if (id[0] != 'c' || id[1] < '1' || id[1] > '9')
    return 0;
  char *end;
  unsigned long long n = strtoull(id + 1, &end, 10);
  return *end == '\0' && n > 0 ? (n - 1) >> WSHUB_CHAT_NODE_SHIFT : 0;
}

/* Queues a message for node `node`'s channel: the parts joined by line
 * breaks, the last one `last_len` bytes long (a text may hold NULs), the
 * others C strings. 0, or -1 if out of memory. */
static int cc_send(wshub_chat_t *chat, uint64_t node, const char *const *parts,
                   size_t n, size_t last_len) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += (i + 1 < n ? strlen(parts[i]) + 1 : last_len);
  char room[CHAT_ROOM_BYTES];
  cc_node_room(room, node);
  chat_cluster_op_t *op = cc_op(CC_SEND, room, total);
  if (op == NULL)
    return -1;
  char *p = op->payload;
  for (size_t i = 0; i < n; i++) {
    size_t l = i + 1 < n ? strlen(parts[i]) : last_len;
    memcpy(p, parts[i], l);
    p += l;
    if (i + 1 < n)
      *p++ = '\n';
  }
  *p = '\0';
  cc_push(chat, op);
  return 0;
}

int chat_cluster_direct(chat_ctx_t *x, const char *to, const char *text,
                        size_t len, int64_t ts) {
  wshub_chat_t *chat = x->chat;
  uint64_t node = cc_node_of(to);
  if (chat->cluster == NULL || !chat->cluster_up || node == 0 ||
      node == chat->node)
    return 0;
  const char *from = chat_member_json(x->user);
  if (from == NULL)
    return -1;
  char tss[24];
  snprintf(tss, sizeof(tss), "%lld", (long long)ts);
  const char *parts[] = {"d", x->user->id, to, tss, from, text};
  return cc_send(chat, node, parts, 6, len) == 0 ? 1 : -1;
}

/* ---- on thread 0 ---- */

/* The `direct` object from two members' JSON texts (chat_direct_obj);
 * NULL if out of memory or not JSON. */
static json_t *cc_direct(const char *from, size_t from_len, const char *to,
                         size_t to_len, const char *text, size_t len,
                         int64_t ts) {
  json_t *f = json_loadb(from, from_len, 0, NULL);
  json_t *t = json_loadb(to, to_len, 0, NULL);
  json_t *o = chat_direct_obj(f, t, text, len, ts);
  json_decref(f);
  json_decref(t);
  return o;
}

/* Splits payload into n fields at line breaks (the last takes the rest,
 * line breaks and all); 0, or -1 when there are fewer. */
static int cc_fields(const char *p, size_t len, size_t n, const char **f,
                     size_t *fl) {
  const char *end = p + len;
  for (size_t i = 0; i + 1 < n; i++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
      return -1;
    f[i] = p;
    fl[i] = (size_t)(nl - p);
    p = nl + 1;
  }
  f[n - 1] = p;
  fl[n - 1] = (size_t)(end - p);
  return 0;
}

/* A copy of a field as a C string (ids fit in 24 bytes). */
static int cc_id(char out[24], const char *f, size_t l) {
  if (l == 0 || l >= 24)
    return -1;
  memcpy(out, f, l);
  out[l] = '\0';
  return 0;
}

/* Something for this node on its own channel (see the top). */
static void cc_on_node(wshub_chat_t *chat, const char *payload, size_t len) {
  const char *f[6];
  size_t fl[6];
  char fid[24], to[24];
  chat_ctx_t x = {chat, chat->sweep_server, NULL, NULL, NULL, 0};
  uv_mutex_lock(&chat->lock);
  if (len >= 2 && payload[0] == 'd' && payload[1] == '\n' &&
      cc_fields(payload + 2, len - 2, 5, f, fl) == 0 &&
      cc_id(fid, f[0], fl[0]) == 0 && cc_id(to, f[1], fl[1]) == 0) {
    /* A direct message for a client here. */
    chat_user_t *peer = wshub_map_get(&chat->users, to);
    const char *to_json = peer ? chat_member_json(peer) : NULL;
    int64_t ts = strtoll(f[2], NULL, 10);
    if (peer == NULL || to_json == NULL) {
      const char *parts[] = {"e", fid, to};
      cc_send(chat, cc_node_of(fid), parts, 3, strlen(to));
    } else {
      json_t *o =
          cc_direct(f[3], fl[3], to_json, strlen(to_json), f[4], fl[4], ts);
      if (o != NULL)
        chat_send_to(&x, peer, o, NULL);
      json_decref(o);
      /* The sender's own copy, with the recipient as this node knows it:
       * the sender's JSON and the text go back as they came, one part. */
      char tss[24];
      snprintf(tss, sizeof(tss), "%lld", (long long)ts);
      const char *parts[] = {"c", fid, tss, to_json, f[3]};
      cc_send(chat, cc_node_of(fid), parts, 5, (size_t)(payload + len - f[3]));
    }
  } else if (len >= 2 && payload[0] == 'c' && payload[1] == '\n' &&
             cc_fields(payload + 2, len - 2, 5, f, fl) == 0 &&
             cc_id(fid, f[0], fl[0]) == 0) {
    /* The own copy of a direct message one of ours sent. */
    chat_user_t *u = wshub_map_get(&chat->users, fid);
    json_t *o = u ? cc_direct(f[3], fl[3], f[2], fl[2], f[4], fl[4],
                              strtoll(f[1], NULL, 10))
                  : NULL;
    if (o != NULL && json_object_set_new(o, "own", json_true()) == 0)
      chat_send_to(&x, u, o, NULL);
    json_decref(o);
  } else if (len >= 2 && payload[0] == 'e' && payload[1] == '\n' &&
             cc_fields(payload + 2, len - 2, 2, f, fl) == 0 &&
             cc_id(fid, f[0], fl[0]) == 0) {
    x.user = wshub_map_get(&chat->users, fid);
    if (x.user != NULL)
      chat_error(&x, "unknown_client", "No such client is connected");
  } else {
    wshub_log(chat->sweep_server, WSHUB_LOG_WARN,
              "redis: a malformed message for this node, ignored");
  }
  uv_mutex_unlock(&chat->lock);
}

/* A message to this node's members of its room: id 0 for the room's next
 * id here (a message delivered without Redis). */
static void cc_deliver(wshub_chat_t *chat, const char *room, uint64_t id,
                       const char *payload, size_t len) {
  const char *end = payload + len, *fid = payload;
  const char *ts_s = memchr(fid, '\n', len);
  const char *from =
      ts_s ? memchr(ts_s + 1, '\n', (size_t)(end - ts_s - 1)) : NULL;
  const char *text =
      from ? memchr(from + 1, '\n', (size_t)(end - from - 1)) : NULL;
  if (text == NULL || ts_s - fid >= 24) {
    wshub_log(chat->sweep_server, WSHUB_LOG_WARN,
              "redis: a malformed message in room %s, ignored", room);
    return;
  }
  char fid_s[24];
  memcpy(fid_s, fid, (size_t)(ts_s - fid));
  fid_s[ts_s - fid] = '\0';
  int64_t ts = strtoll(ts_s + 1, NULL, 10);
  from++;
  uv_mutex_lock(&chat->lock);
  chat_room_t *r = chat_room(chat, room, 0);
  if (r != NULL && id == 0)
    id = r->last_id + 1;
  /* Redis never repeats a message, so everything heard is delivered — also
   * an id at or below the room's last one here, which happens after an
   * outage: ids this node gave while alone may be given again by Redis to
   * a message from a node that did not see them. */
  if (r != NULL && r->n > 0) {
    chat_ctx_t x = {chat, chat->sweep_server, NULL, NULL, NULL, 0};
    chat_user_t *sender = wshub_map_get(&chat->users, fid_s);
    if (chat_emit(&x, r, id, from, (size_t)(text - from), fid_s, sender,
                  text + 1, (size_t)(end - text - 1), ts) != 0)
      wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
                "redis: out of memory: message %llu of room %s not delivered",
                (unsigned long long)id, room);
  }
  uv_mutex_unlock(&chat->lock);
}

/* A message heard on a room's channel, or on this node's own. */
static void cc_on_message(void *user, const char *room, uint64_t id,
                          const char *payload, size_t len) {
  if (room[0] == '@')
    cc_on_node(user, payload, len);
  else if (id > 0)
    cc_deliver(user, room, id, payload, len);
}

static void cc_publish(wshub_chat_t *chat, chat_cluster_op_t *op) {
  int err = wshub_cluster_publish(chat->cluster, op->room, op->payload, op->len,
                                  op->floor, chat->cfg.history, NULL, NULL);
  if (err != 0) {
    /* Not sent (the link went down meanwhile): delivered here, as while
     * the link is down. */
    if (err == UV_ENOTCONN)
      cc_deliver(chat, op->room, 0, op->payload, op->len);
    else
      wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
                "redis: a message of room %s not published: %s", op->room,
                wshub_strerror(err));
  }
}

/* Runs the operations handed to thread 0, in order. A publish for a room
 * whose subscription Redis has not confirmed waits (with everything after
 * it, to keep the order) until it is. */
static void cc_on_wake(uv_async_t *a) {
  wshub_chat_t *chat = a->data;
  for (;;) {
    uv_mutex_lock(&chat->lock);
    chat_cluster_op_t *op = chat->ops;
    int wait = 0;
    if (op != NULL && op->kind == CC_PUBLISH &&
        wshub_cluster_up(chat->cluster)) {
      chat_room_t *r = chat_room(chat, op->room, 0);
      wait = r != NULL && !r->heard;
    }
    if (op != NULL && !wait) {
      chat->ops = op->next;
      if (chat->ops == NULL)
        chat->ops_tail = NULL;
    }
    uv_mutex_unlock(&chat->lock);
    if (op == NULL || wait)
      return;
    if (op->kind == CC_PUBLISH)
      cc_publish(chat, op);
    else if (op->kind == CC_SEND) {
      int err =
          wshub_cluster_send(chat->cluster, op->room, op->payload, op->len);
      if (err != 0)
        wshub_log(chat->sweep_server, WSHUB_LOG_WARN,
                  "redis: a direct message for %s not sent: %s", op->room,
                  wshub_strerror(err));
    } else if (op->kind == CC_SUBSCRIBE)
      wshub_cluster_subscribe(chat->cluster, op->room);
    else
      wshub_cluster_unsubscribe(chat->cluster, op->room);
    free(op);
  }
}

static void cc_on_subscribed(void *user, const char *room) {
  wshub_chat_t *chat = user;
  uv_mutex_lock(&chat->lock);
  chat_room_t *r = chat_room(chat, room, 0);
  if (r != NULL && r->n > 0)
    r->heard = 1;
  uv_mutex_unlock(&chat->lock);
  cc_on_wake(&chat->cluster_wake); /* what waited for it */
}

static void cc_on_state(void *user, int up) {
  wshub_chat_t *chat = user;
  uv_mutex_lock(&chat->lock);
  chat->cluster_up = up;
  uv_mutex_unlock(&chat->lock);
  cc_on_wake(&chat->cluster_wake);
}

static uint64_t cc_floor(void *user, const char *room) {
  wshub_chat_t *chat = user;
  uv_mutex_lock(&chat->lock);
  chat_room_t *r = chat_room(chat, room, 0);
  uint64_t id = r != NULL ? r->last_id : 0;
  uv_mutex_unlock(&chat->lock);
  return id;
}

static void cc_on_log(void *user, int level, const char *msg) {
  wshub_chat_t *chat = user;
  wshub_log(chat->sweep_server, (wshub_log_level_t)level, "%s", msg);
}

int chat_cluster_attach(wshub_chat_t *chat, uv_loop_t *loop) {
  if (chat->cfg.redis_url == NULL)
    return 0;
  static const wshub_cluster_cb_t cb = {
      .on_message = cc_on_message,
      .on_state = cc_on_state,
      .on_log = cc_on_log,
      .on_subscribed = cc_on_subscribed,
      .floor = cc_floor,
  };
  int r = uv_async_init(loop, &chat->cluster_wake, cc_on_wake);
  if (r != 0)
    return r;
  chat->cluster_wake.data = chat;
  uv_unref((uv_handle_t *)&chat->cluster_wake);
  wshub_cluster_t *c;
  r = wshub_cluster_new(loop, chat->cfg.redis_url, &cb, chat, &c);
  if (r != 0) {
    uv_close((uv_handle_t *)&chat->cluster_wake, NULL);
    return r;
  }
  char own[CHAT_ROOM_BYTES];
  cc_node_room(own, chat->node);
  r = wshub_cluster_subscribe(c, own); /* direct messages for this node */
  if (r != 0) {
    wshub_cluster_close(c);
    uv_close((uv_handle_t *)&chat->cluster_wake, NULL);
    return r;
  }
  uv_mutex_lock(&chat->lock);
  chat->cluster = c;
  uv_mutex_unlock(&chat->lock);
  return 0;
}

void chat_cluster_detach(wshub_chat_t *chat) {
  if (chat->cluster == NULL)
    return;
  uv_mutex_lock(&chat->lock);
  wshub_cluster_t *c = chat->cluster;
  chat->cluster = NULL;
  chat->cluster_up = 0;
  chat_cluster_op_t *op = chat->ops;
  chat->ops = chat->ops_tail = NULL;
  uv_mutex_unlock(&chat->lock);
  while (op != NULL) {
    chat_cluster_op_t *next = op->next;
    free(op);
    op = next;
  }
  wshub_cluster_close(c);
  uv_close((uv_handle_t *)&chat->cluster_wake, NULL);
}
