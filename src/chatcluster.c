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
 */
#include <stdlib.h>
#include <string.h>

#include "chat_priv.h"
#include "cluster.h"
#include "server.h"

enum { CC_UNSUBSCRIBE, CC_SUBSCRIBE, CC_PUBLISH };

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

/* ---- on thread 0 ---- */

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

/* A message heard on a room's channel. */
static void cc_on_message(void *user, const char *room, uint64_t id,
                          const char *payload, size_t len) {
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
    else if (op->kind == CC_SUBSCRIBE)
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
