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
#include "grow.h"
#include "server.h"

/* How often the nodes of remote members are checked (their keys expire
 * 15 s after their last refresh: cluster.c). */
#define CHAT_ALIVE_MS 5000

enum { CC_UNSUBSCRIBE, CC_SUBSCRIBE, CC_PUBLISH, CC_SEND, CC_PRESENCE };

typedef struct chat_cluster_op_s {
  struct chat_cluster_op_s *next;
  int kind;
  uint64_t floor;
  size_t len;
  char room[CHAT_ROOM_BYTES];
  char member[24]; /* CC_PRESENCE: the member's id */
  char payload[];  /* CC_PUBLISH, CC_SEND, CC_PRESENCE (the notice) */
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
  op->member[0] = '\0';
  snprintf(op->room, sizeof(op->room), "%s", room);
  return op;
}

int chat_cluster_waits(const wshub_chat_t *chat, const chat_room_t *r) {
  return chat->cluster != NULL && chat->cluster_up &&
         (r->sync == CHAT_SYNC_NONE || r->sync == CHAT_SYNC_LOADING);
}

int chat_cluster_wait(chat_room_t *r, const chat_wait_t *w) {
  if (wshub_grow(&r->waits, &r->waits_cap, r->nwaits, sizeof(*r->waits), 4) !=
      0)
    return UV_ENOMEM;
  r->waits[r->nwaits++] = *w;
  return 0;
}

static void cc_forget_remote(chat_room_t *r) {
  for (size_t i = 0; i < r->nremote; i++)
    free(r->remote[i].json);
  r->nremote = 0;
}

static void cc_free_held(chat_room_t *r) {
  while (r->held != NULL) {
    chat_held_t *h = r->held;
    r->held = h->next;
    free(h);
  }
  r->held_tail = NULL;
}

void chat_cluster_forget(chat_room_t *r) {
  cc_forget_remote(r);
  free(r->remote);
  free(r->waits);
  cc_free_held(r);
}

void chat_cluster_watch(wshub_chat_t *chat, chat_room_t *r, int on) {
  if (chat->cluster == NULL)
    return;
  r->heard = 0;
  if (!on) {
    /* No member here any more: what this node knew of the room stops
     * following Redis; it is read again when someone joins. */
    r->sync = CHAT_SYNC_NONE;
    r->sync_gen++;
    r->followed = 0;
    r->nwaits = 0;
    cc_forget_remote(r);
    cc_free_held(r);
    chat_members_stale(r);
  }
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

/* An operation whose payload is the parts joined by line breaks, the last
 * one `last_len` bytes long (a text may hold NULs), the others C strings;
 * NULL if out of memory. */
static chat_cluster_op_t *cc_joined(int kind, const char *room,
                                    const char *const *parts, size_t n,
                                    size_t last_len) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += (i + 1 < n ? strlen(parts[i]) + 1 : last_len);
  chat_cluster_op_t *op = cc_op(kind, room, total);
  if (op == NULL)
    return NULL;
  char *p = op->payload;
  for (size_t i = 0; i < n; i++) {
    size_t l = i + 1 < n ? strlen(parts[i]) : last_len;
    memcpy(p, parts[i], l);
    p += l;
    if (i + 1 < n)
      *p++ = '\n';
  }
  *p = '\0';
  return op;
}

/* Queues a message for node `node`'s channel (parts as cc_joined). 0, or
 * -1 if out of memory. */
static int cc_send(wshub_chat_t *chat, uint64_t node, const char *const *parts,
                   size_t n, size_t last_len) {
  char room[CHAT_ROOM_BYTES];
  cc_node_room(room, node);
  chat_cluster_op_t *op = cc_joined(CC_SEND, room, parts, n, last_len);
  if (op == NULL)
    return -1;
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

void chat_cluster_presence(wshub_chat_t *chat, chat_room_t *r, chat_user_t *u,
                           int joined, const char *old) {
  if (chat->cluster == NULL)
    return;
  const char *json = joined ? chat_member_json(u) : NULL;
  char node[24];
  snprintf(node, sizeof(node), "%llu", (unsigned long long)chat->node);
  /* "J|N|L\n<node>\n<id>[\n<member JSON>[\n<old nick>]]" */
  const char *parts[5] = {old      ? "N"
                          : joined ? "J"
                                   : "L",
                          node, u->id, json, old};
  size_t n = old ? 5 : joined ? 4 : 3;
  chat_cluster_op_t *op =
      joined && json == NULL
          ? NULL
          : cc_joined(CC_PRESENCE, r->name, parts, n, strlen(parts[n - 1]));
  if (op == NULL) {
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "redis: out of memory: presence of %s in %s not shared", u->id,
              r->name);
    return;
  }
  snprintf(op->member, sizeof(op->member), "%s", u->id);
  cc_push(chat, op);
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

/* Room message `id` (payload as published) to this node's members of r
 * (the lock is held). */
static void cc_emit(wshub_chat_t *chat, chat_room_t *r, uint64_t id,
                    const char *payload, size_t len) {
  const char *f[4];
  size_t fl[4];
  char fid[24];
  if (cc_fields(payload, len, 4, f, fl) != 0 || cc_id(fid, f[0], fl[0]) != 0) {
    wshub_log(chat->sweep_server, WSHUB_LOG_WARN,
              "redis: a malformed message in room %s, ignored", r->name);
    return;
  }
  chat_ctx_t x = {chat, chat->sweep_server, NULL, NULL, NULL, 0};
  chat_user_t *sender = wshub_map_get(&chat->users, fid);
  if (chat_emit(&x, r, id, f[2], fl[2], fid, sender, f[3], fl[3],
                strtoll(f[1], NULL, 10)) != 0)
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "redis: out of memory: message %llu of room %s not delivered",
              (unsigned long long)id, r->name);
}

/* Keeps a message (or notice: id 0) heard while r is being read. */
static void cc_hold(wshub_chat_t *chat, chat_room_t *r, uint64_t id,
                    const char *payload, size_t len) {
  chat_held_t *h = malloc(sizeof(*h) + len);
  if (h == NULL) {
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "redis: out of memory: a message of room %s lost", r->name);
    return;
  }
  h->next = NULL;
  h->id = id;
  h->len = len;
  memcpy(h->payload, payload, len);
  if (r->held_tail != NULL)
    r->held_tail->next = h;
  else
    r->held = h;
  r->held_tail = h;
}

/* A message to this node's members of its room: id 0 for the room's next
 * id here (a message delivered without Redis). */
static void cc_deliver(wshub_chat_t *chat, const char *room, uint64_t id,
                       const char *payload, size_t len) {
  uv_mutex_lock(&chat->lock);
  chat_room_t *r = chat_room(chat, room, 0);
  /* Redis never repeats a message, so everything heard is delivered — also
   * an id at or below the room's last one here, which happens after an
   * outage: ids this node gave while alone may be given again by Redis to
   * a message from a node that did not see them. */
  if (r != NULL && r->n > 0) {
    if (id == 0)
      cc_emit(chat, r, r->last_id + 1, payload, len);
    else if (r->sync == CHAT_SYNC_CATCHUP)
      cc_hold(chat, r, id, payload, len); /* after what was missed */
    else {
      if (id > r->redis_id)
        r->redis_id = id;
      cc_emit(chat, r, id, payload, len);
    }
  }
  uv_mutex_unlock(&chat->lock);
}

/* Index of remote member `id` in r, or -1. */
static ssize_t cc_remote_find(const chat_room_t *r, const char *id) {
  for (size_t i = 0; i < r->nremote; i++)
    if (strcmp(r->remote[i].id, id) == 0)
      return (ssize_t)i;
  return -1;
}

/* Adds or replaces a remote member (json copied); 0 or -1. */
static int cc_remote_set(chat_room_t *r, ssize_t k, const char *id,
                         uint64_t node, const char *json, size_t len) {
  char *copy = malloc(len + 1);
  if (copy == NULL)
    return -1;
  memcpy(copy, json, len);
  copy[len] = '\0';
  if (k < 0) {
    if (wshub_grow(&r->remote, &r->remote_cap, r->nremote, sizeof(*r->remote),
                   4) != 0) {
      free(copy);
      return -1;
    }
    k = (ssize_t)r->nremote++;
    snprintf(r->remote[k].id, sizeof(r->remote[k].id), "%s", id);
  } else {
    free(r->remote[k].json);
  }
  r->remote[k].node = node;
  r->remote[k].json = copy;
  r->remote[k].len = len;
  chat_members_stale(r);
  return 0;
}

static void cc_remote_del(chat_room_t *r, size_t k) {
  free(r->remote[k].json);
  r->remote[k] = r->remote[--r->nremote];
  chat_members_stale(r);
}

/* A join, leave or nick notice about a member of another node, for this
 * node's members of r (rooms over the presence limit get none). */
static void cc_tell(wshub_chat_t *chat, chat_room_t *r, const char *type,
                    const char *json, size_t len, const char *old,
                    size_t old_len) {
  if (chat_room_size(r) > chat->cfg.presence_limit)
    return;
  chat_ctx_t x = {chat, chat->sweep_server, NULL, NULL, NULL, 0};
  json_t *m = json_loadb(json, len, 0, NULL);
  const char *nick = json_string_value(json_object_get(m, "nick"));
  char text[400];
  if (strcmp(type, "nick") == 0)
    snprintf(text, sizeof(text), "%.*s is now %s", (int)old_len, old,
             nick ? nick : "?");
  else
    snprintf(text, sizeof(text), "%s %s %s", nick ? nick : "?",
             strcmp(type, "join") == 0 ? "joined" : "left", r->name);
  json_t *o = m != NULL ? chat_msg(type, text) : NULL;
  if (o != NULL &&
      (json_object_set_new(o, "room", json_string(r->name)) != 0 ||
       json_object_set(o, "member", m) != 0 ||
       (old != NULL &&
        json_object_set_new(o, "old", json_stringn(old, old_len)) != 0))) {
    json_decref(o);
    o = NULL;
  }
  if (o != NULL)
    chat_room_notice(&x, r, o);
  if (o == NULL || x.failed)
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "redis: out of memory: a %s notice in %s not sent", type,
              r->name);
  json_decref(o);
  json_decref(m);
}

/* Applies a presence notice "J|N|L\n<node>\n<id>[\n<JSON>[\n<old>]]" of
 * another node to r (the lock is held). */
static void cc_notice(wshub_chat_t *chat, chat_room_t *r, const char *payload,
                      size_t len) {
  const char *f[4];
  size_t fl[4];
  char id[24];
  char kind = len >= 2 && payload[1] == '\n' ? payload[0] : 0;
  size_t nf = kind == 'L' ? 2 : kind == 'J' ? 3 : 4;
  if ((kind != 'J' && kind != 'L' && kind != 'N') ||
      cc_fields(payload + 2, len - 2, nf, f, fl) != 0 ||
      cc_id(id, f[1], fl[1]) != 0) {
    wshub_log(chat->sweep_server, WSHUB_LOG_WARN,
              "redis: a malformed notice in room %s, ignored", r->name);
    return;
  }
  uint64_t node = strtoull(f[0], NULL, 10);
  if (node == chat->node)
    return; /* our own */
  ssize_t k = cc_remote_find(r, id);
  if (kind == 'L') {
    if (k >= 0) {
      char *json = r->remote[k].json;
      size_t jl = r->remote[k].len;
      r->remote[k].json = NULL;
      cc_remote_del(r, (size_t)k);
      cc_tell(chat, r, "leave", json, jl, NULL, 0);
      free(json);
    }
    return;
  }
  int had = k >= 0;
  int same = had && r->remote[k].len == fl[2] &&
             memcmp(r->remote[k].json, f[2], fl[2]) == 0;
  if (same)
    return; /* known already (read with the room, or said again) */
  if (cc_remote_set(r, k, id, node, f[2], fl[2]) != 0) {
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "redis: out of memory: member %s of room %s not recorded", id,
              r->name);
    return;
  }
  if (!had)
    cc_tell(chat, r, "join", f[2], fl[2], NULL, 0);
  else if (kind == 'N')
    cc_tell(chat, r, "nick", f[2], fl[2], f[3], fl[3]);
}

/* A notice heard on a room's channel (id 0). */
static void cc_on_notice(wshub_chat_t *chat, const char *room,
                         const char *payload, size_t len) {
  uv_mutex_lock(&chat->lock);
  chat_room_t *r = chat_room(chat, room, 0);
  if (r != NULL && r->n > 0) {
    if (r->sync == CHAT_SYNC_LOADING || r->sync == CHAT_SYNC_CATCHUP)
      cc_hold(chat, r, 0, payload, len);
    else
      cc_notice(chat, r, payload, len);
  }
  uv_mutex_unlock(&chat->lock);
}

/* What was held while r was read, in the order heard (the lock is held). */
static void cc_release(wshub_chat_t *chat, chat_room_t *r) {
  while (r->held != NULL) {
    chat_held_t *h = r->held;
    r->held = h->next;
    if (r->held == NULL)
      r->held_tail = NULL;
    if (h->id == 0)
      cc_notice(chat, r, h->payload, h->len);
    else {
      if (h->id > r->redis_id)
        r->redis_id = h->id;
      cc_emit(chat, r, h->id, h->payload, h->len);
    }
    free(h);
  }
}

/* r follows Redis again: held messages and waiting replies go out. */
static void cc_synced(wshub_chat_t *chat, chat_room_t *r) {
  r->sync = CHAT_SYNC_DONE;
  r->sync_gen++;
  cc_release(chat, r);
  if (chat_run_waits(chat, r) > 0)
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "out of memory: replies about room %s not sent", r->name);
}

/* The remote members of r are those Redis holds (ours left out). */
static void cc_set_remote(wshub_chat_t *chat, chat_room_t *r,
                          const wshub_cluster_item_t *m, size_t n) {
  cc_forget_remote(r);
  chat_members_stale(r);
  char id[24];
  for (size_t i = 0; i < n; i++)
    if (m[i].id != chat->node && cc_id(id, m[i].key, m[i].key_len) == 0 &&
        cc_remote_set(r, -1, id, m[i].id, m[i].data, m[i].len) != 0)
      wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
                "redis: out of memory: member %s of room %s not recorded", id,
                r->name);
}

/* A read of a room in flight: the room, and which read it is. */
typedef struct {
  wshub_chat_t *chat;
  unsigned gen;
  char room[CHAT_ROOM_BYTES];
} cc_load_t;

/* The room's first read: the ring (emptied when the read began, so it
 * holds only what was heard since) gets the Stream's older entries before
 * its own; the members are Redis'. */
static void cc_loaded_first(wshub_chat_t *chat, chat_room_t *r,
                            const wshub_cluster_item_t *log, size_t nlog) {
  chat_entry_t *e = calloc(nlog + 1, sizeof(*e));
  size_t k = 0;
  for (size_t i = 0; e != NULL && i < nlog; i++) {
    const char *f[4];
    size_t fl[4];
    wshub_jbuf_t j;
    if (cc_fields(log[i].data, log[i].len, 4, f, fl) != 0 ||
        fl[0] >= sizeof(e[k].from) ||
        chat_message_json(r, log[i].id, f[2], fl[2], f[3], fl[3],
                          strtoll(f[1], NULL, 10), &j) != 0)
      continue;
    e[k].id = log[i].id;
    memcpy(e[k].from, f[0], fl[0]);
    e[k].from[fl[0]] = '\0';
    e[k].json = j.data;
    e[k].len = j.len;
    k++;
  }
  if (e == NULL && nlog > 0)
    wshub_log(chat->sweep_server, WSHUB_LOG_ERROR,
              "redis: out of memory: the history of %s not read", r->name);
  chat_ring_prepend(chat, r, e, k);
  free(e);
  for (size_t i = 0; i < nlog; i++) {
    if (log[i].id > r->last_id)
      r->last_id = log[i].id;
    if (log[i].id > r->redis_id)
      r->redis_id = log[i].id;
  }
}

/* After a reconnection: what the room missed, delivered before what was
 * heard since (held); a gap notice first when Redis no longer has all. */
static void cc_loaded_catchup(wshub_chat_t *chat, chat_room_t *r,
                              const wshub_cluster_item_t *log, size_t nlog) {
  uint64_t next_held = UINT64_MAX;
  for (const chat_held_t *h = r->held; h != NULL; h = h->next)
    if (h->id > 0 && h->id < next_held)
      next_held = h->id;
  uint64_t after = r->redis_id;
  if (nlog > 0 && log[0].id > after + 1 && log[0].id > r->last_id + 1) {
    chat_ctx_t x = {chat, chat->sweep_server, NULL, NULL, NULL, 0};
    chat_gap_to(&x, r, after, log[0].id, NULL);
  }
  for (size_t i = 0; i < nlog; i++)
    if (log[i].id > after && log[i].id < next_held) {
      if (log[i].id > r->redis_id)
        r->redis_id = log[i].id;
      cc_emit(chat, r, log[i].id, log[i].data, log[i].len);
    }
}

static void cc_on_loaded(void *arg, int err, const wshub_cluster_item_t *log,
                         size_t nlog, const wshub_cluster_item_t *members,
                         size_t nmembers) {
  cc_load_t *l = arg;
  wshub_chat_t *chat = l->chat;
  uv_mutex_lock(&chat->lock);
  chat_room_t *r = chat_room(chat, l->room, 0);
  if (r != NULL && r->sync_gen == l->gen &&
      (r->sync == CHAT_SYNC_LOADING || r->sync == CHAT_SYNC_CATCHUP)) {
    if (err != 0)
      wshub_log(chat->sweep_server, WSHUB_LOG_WARN,
                "redis: the history of %s could not be read: %s", r->name,
                wshub_strerror(err));
    else {
      r->followed = 1;
      if (r->sync == CHAT_SYNC_LOADING)
        cc_loaded_first(chat, r, log, nlog);
      else
        cc_loaded_catchup(chat, r, log, nlog);
      cc_set_remote(chat, r, members, nmembers);
    }
    cc_synced(chat, r);
  }
  uv_mutex_unlock(&chat->lock);
  free(l);
}

/* Reads r from Redis (history after `after`, members); the lock is held,
 * on thread 0. On failure r is synced with what it has. */
static void cc_load(wshub_chat_t *chat, chat_room_t *r, int sync,
                    uint64_t after) {
  cc_load_t *l = malloc(sizeof(*l));
  r->sync = sync;
  r->sync_gen++;
  if (l != NULL) {
    l->chat = chat;
    l->gen = r->sync_gen;
    snprintf(l->room, sizeof(l->room), "%s", r->name);
    if (wshub_cluster_load(chat->cluster, r->name, after, chat->cfg.history,
                           cc_on_loaded, l) == 0)
      return;
    free(l);
  }
  cc_synced(chat, r);
}

/* A message heard on a room's channel, or on this node's own. */
static void cc_on_message(void *user, const char *room, uint64_t id,
                          const char *payload, size_t len) {
  if (room[0] == '@')
    cc_on_node(user, payload, len);
  else if (id > 0)
    cc_deliver(user, room, id, payload, len);
  else
    cc_on_notice(user, room, payload, len);
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
    } else if (op->kind == CC_PRESENCE) {
      /* The member JSON is the notice's fourth line (none: it left). */
      const char *f[4];
      size_t fl[4];
      int left = op->payload[0] == 'L';
      if (!left && cc_fields(op->payload, op->len, 4, f, fl) == 0) {
        const char *nl = memchr(f[3], '\n', fl[3]);
        fl[3] = nl ? (size_t)(nl - f[3]) : fl[3];
      }
      /* Down: dropped; every member is told again on reconnecting. */
      wshub_cluster_presence(chat->cluster, op->room, op->member, chat->node,
                             left ? NULL : f[3], left ? 0 : fl[3], op->payload,
                             op->len);
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
  if (r != NULL && r->n > 0) {
    r->heard = 1;
    /* Heard from now on: the room's history and members can be read.
     * (While reconnecting, cc_on_state does it once up.) */
    if (chat->cluster_up && r->sync == CHAT_SYNC_NONE) {
      chat_ring_clear(chat, r);
      cc_load(chat, r, CHAT_SYNC_LOADING, 0);
    }
  }
  uv_mutex_unlock(&chat->lock);
  cc_on_wake(&chat->cluster_wake); /* what waited for it */
}

/* The link changed (the lock is held). Down: every room goes on with what
 * it has. Up again: each room with members here reads what it missed and
 * its members are recorded again (Redis may have restarted empty). */
static void cc_room_state(const char *key, void *value, void *arg) {
  (void)key;
  chat_room_t *r = value;
  wshub_chat_t *chat = arg;
  if (r->n == 0)
    return;
  if (!chat->cluster_up) {
    cc_synced(chat, r);
    return;
  }
  for (size_t i = 0; i < r->n; i++)
    chat_cluster_presence(chat, r, r->members[i], 1, NULL);
  /* A room read before: everything after the last id heard is missed
   * (none heard: everything the Stream has). A room whose members came
   * while the link was not up yet (a node starting): read it now, its ring
   * keeping what it has, so that later welcomes, resumes and catch-ups
   * work from Redis. */
  if (r->followed)
    cc_load(chat, r, CHAT_SYNC_CATCHUP, r->redis_id);
  else
    cc_load(chat, r, CHAT_SYNC_LOADING, 0);
}

static void cc_on_state(void *user, int up) {
  wshub_chat_t *chat = user;
  uv_mutex_lock(&chat->lock);
  chat->cluster_up = up;
  wshub_map_foreach(&chat->rooms, cc_room_state, chat);
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

/* Every remote member of r whose node is not in `live` leaves. */
static void cc_drop_dead(const char *key, void *value, void *arg) {
  (void)key;
  chat_room_t *r = value;
  wshub_chat_t *chat = arg;
  for (size_t i = 0; i < r->nremote;) {
    int live = 0;
    for (size_t k = 0; k < chat->nalive && !live; k++)
      live = chat->alive_nodes[k] == r->remote[i].node;
    if (live) {
      i++;
      continue;
    }
    /* Out of the room's hash too, with the leave notice that node never
     * sent (other nodes drop the member once, whoever says it first). */
    char notice[64];
    int nl = snprintf(notice, sizeof(notice), "L\n%llu\n%s",
                      (unsigned long long)r->remote[i].node, r->remote[i].id);
    wshub_cluster_presence(chat->cluster, r->name, r->remote[i].id,
                           r->remote[i].node, NULL, 0, notice, (size_t)nl);
    char *json = r->remote[i].json;
    size_t jl = r->remote[i].len;
    r->remote[i].json = NULL;
    cc_remote_del(r, i);
    cc_tell(chat, r, "leave", json, jl, NULL, 0);
    free(json);
  }
}

/* Redis answered which of alive_nodes still keep their key. */
static void cc_on_alive(void *arg, int err, const int *alive, size_t n) {
  wshub_chat_t *chat = arg;
  uv_mutex_lock(&chat->lock);
  chat->alive_busy = 0;
  if (err == 0 && n == chat->nalive) {
    size_t k = 0; /* alive_nodes becomes the live ones */
    for (size_t i = 0; i < n; i++)
      if (alive[i])
        chat->alive_nodes[k++] = chat->alive_nodes[i];
    if (k < n) {
      wshub_log(chat->sweep_server, WSHUB_LOG_INFO,
                "redis: %zu node(s) stopped: their members leave", n - k);
      chat->nalive = k;
      wshub_map_foreach(&chat->rooms, cc_drop_dead, chat);
    }
  }
  uv_mutex_unlock(&chat->lock);
}

/* Adds the nodes of r's remote members to alive_nodes (once each). */
static void cc_collect_nodes(const char *key, void *value, void *arg) {
  (void)key;
  chat_room_t *r = value;
  wshub_chat_t *chat = arg;
  for (size_t i = 0; i < r->nremote; i++) {
    size_t k = 0;
    while (k < chat->nalive && chat->alive_nodes[k] != r->remote[i].node)
      k++;
    if (k == chat->nalive &&
        wshub_grow(&chat->alive_nodes, &chat->alive_cap, chat->nalive,
                   sizeof(*chat->alive_nodes), 8) == 0)
      chat->alive_nodes[chat->nalive++] = r->remote[i].node;
  }
}

/* A node that stops without a word (crash, SIGKILL, cut off) lets its key
 * expire (cluster.h): its members leave every room here. */
static void cc_on_alive_timer(uv_timer_t *t) {
  wshub_chat_t *chat = t->data;
  uv_mutex_lock(&chat->lock);
  int go = 0;
  if (!chat->alive_busy && chat->cluster_up) {
    chat->nalive = 0;
    wshub_map_foreach(&chat->rooms, cc_collect_nodes, chat);
    go = chat->nalive > 0;
  }
  if (go)
    chat->alive_busy = 1;
  uv_mutex_unlock(&chat->lock);
  /* alive_nodes is left alone while a check is in flight. */
  if (go && wshub_cluster_alive(chat->cluster, chat->alive_nodes, chat->nalive,
                                cc_on_alive, chat) != 0) {
    uv_mutex_lock(&chat->lock);
    chat->alive_busy = 0;
    uv_mutex_unlock(&chat->lock);
  }
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
  wshub_cluster_set_node(c, chat->node);
  r = wshub_cluster_subscribe(c, own); /* direct messages for this node */
  if (r != 0) {
    wshub_cluster_close(c);
    uv_close((uv_handle_t *)&chat->cluster_wake, NULL);
    return r;
  }
  uv_timer_init(loop, &chat->alive_timer);
  chat->alive_timer.data = chat;
  uv_timer_start(&chat->alive_timer, cc_on_alive_timer, CHAT_ALIVE_MS,
                 CHAT_ALIVE_MS);
  uv_unref((uv_handle_t *)&chat->alive_timer);
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
  wshub_cluster_close(c); /* a liveness check in flight is not answered */
  uv_close((uv_handle_t *)&chat->cluster_wake, NULL);
  uv_close((uv_handle_t *)&chat->alive_timer, NULL);
  free(chat->alive_nodes);
  chat->alive_nodes = NULL;
  chat->nalive = chat->alive_cap = 0;
  chat->alive_busy = 0;
}
