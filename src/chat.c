/* chat.c — the chat protocol of docs/PROTOCOL.md (see chat.h).
 *
 * The chat is a client of the public API. Its own state — users and their
 * nicknames, rooms with their message ids, history rings and member lists
 * — lives here under one lock, so several servers on several threads can
 * share one chat (--threads). Everything the chat sends goes through the
 * bus (chatbus.c), which delivers it at once with one loop, or in one
 * global order across loops. Hub membership (who gets a room's frames) is
 * driven through the bus too, so it changes exactly between the messages a
 * joining client's history covers and the ones it must receive live.
 *
 * Each room message is serialized once, not once per member, straight to
 * JSON text (jbuf.c: jansson escapes the text; the sender's member object
 * and the room's name are cached as JSON), and framed twice: "own": false
 * for every other member, "own": true for the sender — "own" is the last
 * field, so the two differ only in their final bytes. The history ring
 * keeps that text; a joining or resuming client's history array is
 * spliced together from it, with "own" flipped on the receiver's own
 * messages.
 *
 * Out of memory: whatever a client's request needs is built before the
 * chat's state changes where that is possible (a join, a message, a
 * leave), and a reply or notice that cannot be built marks the request as
 * failed (chat_ctx_t.failed): a WebSocket client is then closed with 1011
 * "internal error" (its upgrade refused with 503 if it was being
 * welcomed), an HTTP session's request is answered 503 (chathttp.c), and
 * a departure undoes the memberships as usual. A recipient whose queue
 * cannot take a frame is dropped by the hub. Presence notices of a
 * departing client are best effort.
 */
#include "chat.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "chat_priv.h"
#include "chatbus.h"
#include "frame.h"
#include "grow.h"
#include "hub.h"
#include "jbuf.h"
#include "map.h"
#include "request.h"
#include "utf8.h"

void wshub_chat_config_init(wshub_chat_config_t *cfg) {
  cfg->max_text = 4000;
  cfg->history = 100;
  cfg->max_rooms = 10000;
  cfg->presence_limit = 100;
  cfg->rate = 100;
  cfg->burst = 0; /* 2 × rate */
  cfg->session_timeout_ms = 60000;
}

wshub_chat_t *wshub_chat_new_threads(const wshub_chat_config_t *cfg,
                                     unsigned nthreads) {
  wshub_chat_t *chat = calloc(1, sizeof(*chat));
  if (chat == NULL)
    return NULL;
  chat->cfg = *cfg;
  chat->bus = chat_bus_new(nthreads > 1 ? nthreads : 0);
  if (chat->bus == NULL) {
    free(chat);
    return NULL;
  }
  /* jansson seeds its hash function on first use: do it before threads. */
  json_object_seed(0);
  uv_mutex_init(&chat->lock);
  wshub_map_init(&chat->rooms);
  wshub_map_init(&chat->users);
  wshub_map_init(&chat->sessions);
  if (cfg->redis_url != NULL) {
    /* A random node number (20 bits, never 0) for ids unique across
     * nodes. */
    uint32_t rnd = 0;
    if (uv_random(NULL, NULL, &rnd, sizeof(rnd), 0, NULL) != 0)
      rnd = (uint32_t)uv_hrtime();
    chat->node = (rnd & 0xfffff) ? (rnd & 0xfffff) : 1;
  }
  return chat;
}

wshub_chat_t *wshub_chat_new(const wshub_chat_config_t *cfg) {
  return wshub_chat_new_threads(cfg, 1);
}

uint64_t wshub_chat_id_first(const wshub_chat_t *chat, unsigned index) {
  /* id - 1 = node * 2^40 + index + nthreads * k: the node is
   * (id - 1) >> 40 whatever its thread count, the thread the low 40 bits
   * modulo nthreads (chatbus.c). */
  return (chat->node << WSHUB_CHAT_NODE_SHIFT) + index + 1;
}

/* Once a second on thread 0's loop: idle HTTP sessions end even when
 * nothing else happens. */
static void chat_on_sweep(uv_timer_t *t) {
  wshub_chat_t *chat = t->data;
  uv_mutex_lock(&chat->lock);
  chat_ctx_t x = {chat, chat->sweep_server, NULL, NULL, NULL, 0};
  chat_http_sweep(&x);
  uv_mutex_unlock(&chat->lock);
}

int wshub_chat_attach(wshub_chat_t *chat, unsigned index, uv_loop_t *loop,
                      wshub_server_t *server) {
  if (index == 0 && chat->sweep_server == NULL) {
    int r = uv_timer_init(loop, &chat->sweep);
    if (r != 0)
      return r;
    chat->sweep_server = server; /* the Redis link logs through it */
    if ((r = chat_cluster_attach(chat, loop)) != 0) {
      uv_close((uv_handle_t *)&chat->sweep, NULL);
      chat->sweep_server = NULL;
      return r;
    }
    chat->sweep.data = chat;
    chat->sweep_server = server;
    uv_timer_start(&chat->sweep, chat_on_sweep, 1000, 1000);
    uv_unref((uv_handle_t *)&chat->sweep);
  }
  if (chat_bus_threads(chat->bus) == 0)
    return 0;
  return chat_bus_attach(chat->bus, index, loop, server);
}

void wshub_chat_detach(wshub_chat_t *chat, unsigned index) {
  if (index == 0 && chat->sweep_server != NULL) {
    uv_close((uv_handle_t *)&chat->sweep, NULL);
    chat_cluster_detach(chat);
    chat->sweep_server = NULL;
  }
  if (chat_bus_threads(chat->bus) > 0)
    chat_bus_detach(chat->bus, index);
}

static void chat_room_free(const char *key, void *value, void *arg) {
  (void)key;
  const wshub_chat_t *chat = arg;
  chat_room_t *r = value;
  for (size_t i = 0; i < r->len; i++)
    free(r->ring[(r->start + i) % chat->cfg.history].json);
  free(r->ring);
  free(r->members);
  free(r->members_json);
  free(r->name_json);
  free(r->polls);
  chat_cluster_forget(r);
  free(r->name);
  free(r);
}

void chat_user_free(const char *key, void *value, void *arg) {
  (void)key;
  (void)arg;
  chat_user_t *u = value;
  free(u->nick);
  free(u->member_json);
  free(u->rooms);
  free(u->token);
  free(u->streams);
  free(u);
}

void wshub_chat_free(wshub_chat_t *chat) {
  if (chat == NULL)
    return;
  wshub_map_foreach(&chat->rooms, chat_room_free, chat);
  wshub_map_free(&chat->rooms);
  wshub_map_foreach(&chat->users, chat_user_free, NULL);
  wshub_map_free(&chat->sessions);
  wshub_map_free(&chat->users);
  chat_bus_free(chat->bus);
  uv_mutex_destroy(&chat->lock);
  free(chat);
}

/* ---- pure helpers ---- */

int wshub_chat_room_valid(const char *name, size_t len) {
  if (len == 0 || len > 64)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = name[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
}

int wshub_chat_nick_valid(const char *nick, size_t len) {
  if (len == 0 || len >= CHAT_NICK_BYTES ||
      !wshub_utf8_valid((const uint8_t *)nick, len))
    return 0;
  size_t chars = 0;
  int blank = 1;
  for (size_t i = 0; i < len;) {
    const uint8_t *p = (const uint8_t *)nick + i;
    uint32_t cp;
    size_t n;
    if (p[0] < 0x80)
      cp = p[0], n = 1;
    else if (p[0] < 0xe0)
      cp = ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f), n = 2;
    else if (p[0] < 0xf0)
      cp = ((uint32_t)(p[0] & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) |
           (p[2] & 0x3f),
      n = 3;
    else
      cp = 0x10000, n = 4; /* astral: never a control or blank */
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
      return 0;
    /* Unicode space separators (Zs) and the zero-width space. */
    if (cp != ' ' && cp != 0xa0 && cp != 0x1680 && cp != 0x202f &&
        cp != 0x205f && cp != 0x3000 && !(cp >= 0x2000 && cp <= 0x200b))
      blank = 0;
    chars++;
    i += n;
  }
  return chars <= 32 && !blank;
}

int wshub_chat_query_param(const char *target, size_t len, const char *key,
                           char *out, size_t cap) {
  const char *hash = memchr(target, '#', len);
  const char *end = hash != NULL ? hash : target + len;
  const char *q = memchr(target, '?', (size_t)(end - target));
  if (q == NULL || cap == 0)
    return -1;
  size_t klen = strlen(key);
  const char *p = q + 1;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    if ((size_t)(pe - p) > klen && memcmp(p, key, klen) == 0 &&
        p[klen] == '=') {
      size_t o = 0;
      for (const char *v = p + klen + 1; v < pe; v++) {
        int ch = (unsigned char)*v;
        if (ch == '+') {
          ch = ' ';
        } else if (ch == '%' && pe - v > 2 && wshub_hex_digit(v[1]) >= 0 &&
                   wshub_hex_digit(v[2]) >= 0) {
          ch = wshub_hex_digit(v[1]) * 16 + wshub_hex_digit(v[2]);
          v += 2;
        }
        if (o + 1 >= cap)
          return -2;
        out[o++] = (char)ch;
      }
      out[o] = '\0';
      return (int)o;
    }
    p = pe + 1;
  }
  return -1;
}

/* ---- building and sending messages ---- */

static int64_t chat_now_ms(void) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static json_t *chat_member(const chat_user_t *u) {
  return json_pack("{s:s, s:s}", "id", u->id, "nick", u->nick);
}

char *chat_dump(const json_t *o, size_t flags, size_t *len) {
  char stack[4096];
  size_t n = o ? json_dumpb(o, stack, sizeof(stack), flags) : 0;
  char *s = n > 0 ? malloc(n + 1) : NULL;
  if (s == NULL)
    return NULL;
  if (n <= sizeof(stack)) {
    memcpy(s, stack, n);
  } else if (json_dumpb(o, s, n, flags) != n) {
    free(s);
    return NULL;
  }
  s[n] = '\0';
  *len = n;
  return s;
}

/* The user's member object as JSON text (cached until the nick changes);
 * NULL if out of memory. */
const char *chat_member_json(chat_user_t *u) {
  if (u->member_json == NULL) {
    json_t *m = chat_member(u);
    u->member_json = chat_dump(m, JSON_COMPACT, &u->member_json_len);
    json_decref(m);
  }
  return u->member_json;
}

/* A server message with the fields every one carries. */
json_t *chat_msg(const char *type, const char *text) {
  return json_pack("{s:s, s:s, s:I, s:{s:s}}", "type", type, "text", text,
                   "timestamp", (json_int_t)chat_now_ms(), "params", "value",
                   text);
}

/* chat_msg() plus the fields of `fmt`, a json_pack() object format.
 * NULL if out of memory (values passed with "o" are released either
 * way). */
static json_t *chat_msgf(const char *type, const char *text, const char *fmt,
                         ...) {
  va_list ap;
  va_start(ap, fmt);
  json_t *more = json_vpack_ex(NULL, 0, fmt, ap);
  va_end(ap);
  json_t *o = chat_msg(type, text);
  if (o == NULL || more == NULL || json_object_update(o, more) != 0) {
    json_decref(o);
    o = NULL;
  }
  json_decref(more);
  return o;
}

/* One frame holding o as compact JSON; NULL if out of memory (or o is
 * NULL). */
static wshub_buf_t *chat_frame(const json_t *o) {
  size_t len;
  char *s = chat_dump(o, JSON_COMPACT, &len);
  if (s == NULL)
    return NULL;
  wshub_buf_t *f = wshub_frame_build(WSHUB_OP_TEXT, s, len);
  free(s);
  return f;
}

/* A frame for user u: to its WebSocket, or to the event streams of an HTTP
 * session — those of `room`, or all of them when room is NULL. */
static void chat_deliver(chat_ctx_t *x, const chat_user_t *u, wshub_buf_t *f,
                         const char *room) {
  if (u->token == NULL) {
    chat_bus_to(x->chat->bus, x->server, u->id, f);
    return;
  }
  for (size_t i = 0; i < u->nstreams; i++)
    if (room == NULL || strcmp(u->streams[i].room, room) == 0)
      chat_bus_to(x->chat->bus, x->server, u->streams[i].id, f);
}

/* To user u (the actor or a direct message's target); `room` is the room
 * the message is about, NULL for none. */
void chat_send_to(chat_ctx_t *x, const chat_user_t *u, const json_t *o,
                  const char *room) {
  wshub_buf_t *f = chat_frame(o);
  if (f != NULL)
    chat_deliver(x, u, f, room);
  else
    x->failed = 1;
  wshub_buf_unref(f);
}

static void chat_send(chat_ctx_t *x, const json_t *o, const char *room) {
  chat_send_to(x, x->user, o, room);
}

/* To every member of room except `except` (an id, or NULL). */
static void chat_send_room(chat_ctx_t *x, const char *room, const json_t *o,
                           const char *except) {
  wshub_buf_t *f = chat_frame(o);
  if (f != NULL)
    chat_bus_room(x->chat->bus, x->server, room, f, except);
  else
    x->failed = 1;
  wshub_buf_unref(f);
}

void chat_error(chat_ctx_t *x, const char *code, const char *text) {
  if (x->cap != NULL) { /* an HTTP request: its answer says it */
    if (x->cap->code == NULL) {
      x->cap->code = code;
      snprintf(x->cap->text, sizeof(x->cap->text), "%s", text);
    }
    return;
  }
  json_t *o = chat_msgf("error", text, "{s:s}", "code", code);
  chat_send(x, o, NULL);
  json_decref(o);
}

/* ---- rooms, membership, history ---- */

chat_room_t *chat_room(wshub_chat_t *chat, const char *name, int create) {
  chat_room_t *r = wshub_map_get(&chat->rooms, name);
  if (r != NULL || !create || chat->rooms.count >= chat->cfg.max_rooms)
    return r;
  r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->name = strdup(name);
  r->ring = calloc(chat->cfg.history ? chat->cfg.history : 1, sizeof(*r->ring));
  wshub_jbuf_t nj;
  wshub_jbuf_init(&nj, 0);
  wshub_jbuf_str(&nj, name, strlen(name));
  r->name_json = nj.failed ? NULL : nj.data;
  if (nj.failed)
    wshub_jbuf_free(&nj);
  if (r->name == NULL || r->ring == NULL || r->name_json == NULL ||
      wshub_map_put(&chat->rooms, r->name, r) != 0) {
    free(r->ring);
    free(r->name_json);
    free(r->name);
    free(r);
    return NULL;
  }
  return r;
}

ssize_t chat_user_room(const chat_user_t *u, const chat_room_t *r) {
  for (size_t i = 0; i < u->nrooms; i++)
    if (u->rooms[i] == r)
      return (ssize_t)i;
  return -1;
}

static const char *chat_current_room(const chat_user_t *u) {
  return u->nrooms ? u->rooms[u->nrooms - 1]->name : NULL;
}

size_t chat_room_size(const chat_room_t *r) {
  return r->n + r->nremote;
}

void chat_members_stale(chat_room_t *r) {
  free(r->members_json);
  r->members_json = NULL;
}

/* Records u as a member of r (the chat's truth). 0 or UV_ENOMEM. The
 * cached member list only changes if u lands in its visible prefix. */
static int chat_member_add(const wshub_chat_t *chat, chat_room_t *r,
                           chat_user_t *u) {
  if (r->n < chat->cfg.presence_limit)
    chat_members_stale(r);
  if (wshub_grow(&r->members, &r->cap, r->n, sizeof(*r->members), 8) != 0 ||
      wshub_grow(&u->rooms, &u->rooms_cap, u->nrooms, sizeof(*u->rooms), 2))
    return UV_ENOMEM;
  r->members[r->n++] = u;
  u->rooms[u->nrooms++] = r;
  if (r->n == 1)
    chat_cluster_watch((wshub_chat_t *)chat, r, 1);
  chat_cluster_presence((wshub_chat_t *)chat, r, u, 1, NULL);
  return 0;
}

static void chat_member_remove(const wshub_chat_t *chat, chat_room_t *r,
                               chat_user_t *u) {
  for (size_t i = 0; i < r->n; i++)
    if (r->members[i] == u) {
      if (i < chat->cfg.presence_limit)
        chat_members_stale(r);
      r->members[i] = r->members[--r->n];
      chat_cluster_presence((wshub_chat_t *)chat, r, u, 0, NULL);
      if (r->n == 0)
        chat_cluster_watch((wshub_chat_t *)chat, r, 0);
      break;
    }
  ssize_t k = chat_user_room(u, r);
  if (k >= 0) {
    memmove(&u->rooms[k], &u->rooms[k + 1],
            (u->nrooms - (size_t)k - 1) * sizeof(u->rooms[0]));
    u->nrooms--;
  }
}

/* The JSON array of the first presence_limit members, cached in the room
 * until it changes (a reconnect storm re-sends the same list many times).
 * NULL if out of memory. */
static const char *chat_members_json(const wshub_chat_t *chat, chat_room_t *r,
                                     size_t *len) {
  if (r->members_json == NULL) {
    json_t *list = json_array();
    int bad = list == NULL;
    size_t limit = chat->cfg.presence_limit;
    for (size_t i = 0; i < r->n && i < limit && !bad; i++)
      bad = json_array_append_new(list, chat_member(r->members[i])) != 0;
    /* Then the members on other nodes (Redis), as they sent them. */
    for (size_t i = 0; i < r->nremote && r->n + i < limit && !bad; i++) {
      json_t *m = json_loadb(r->remote[i].json, r->remote[i].len, 0, NULL);
      bad = m == NULL || json_array_append_new(list, m) != 0;
    }
    if (!bad)
      r->members_json = chat_dump(list, JSON_COMPACT, &r->members_json_len);
    json_decref(list);
  }
  *len = r->members_json_len;
  return r->members_json;
}

/* Sends o, about `room`, to the acting client (or to the client `to`) with
 * two fields spliced in as JSON text: `key` (a history array) and, when r
 * is not NULL, "members" (r's cached list) with "member_count". o NULL:
 * it could not be built (x->failed is set, as for any failure here). */
static void chat_send_spliced(chat_ctx_t *x, json_t *o, const char *key,
                              const wshub_jbuf_t *value, chat_room_t *r,
                              const char *room, const char *to) {
  size_t sl = 0, ml = 0;
  const char *m = r != NULL ? chat_members_json(x->chat, r, &ml) : NULL;
  char *s = NULL;
  if (o != NULL && !value->failed && (r == NULL || m != NULL) &&
      (r == NULL ||
       json_object_set_new(o, "member_count",
                           json_integer((json_int_t)chat_room_size(r))) == 0))
    s = chat_dump(o, JSON_COMPACT, &sl);
  if (s == NULL) {
    x->failed = 1;
    return;
  }
  char name[32];
  int nl = snprintf(name, sizeof(name), ",\"%s\":", key);
  /* s is an object: splice the fields in before its closing brace. */
  uv_buf_t parts[6] = {
      uv_buf_init(s, (unsigned)(sl - 1)),
      uv_buf_init(name, (unsigned)nl),
      uv_buf_init(value->data, (unsigned)value->len),
      uv_buf_init((char *)",\"members\":", 11),
      uv_buf_init((char *)m, (unsigned)ml),
      uv_buf_init((char *)"}", 1),
  };
  if (m == NULL)
    parts[3] = parts[5];
  wshub_buf_t *f = wshub_frame_build_parts(WSHUB_OP_TEXT, parts, m ? 6 : 4);
  free(s);
  if (f == NULL)
    x->failed = 1;
  else if (to != NULL)
    chat_bus_to(x->chat->bus, x->server, to, f);
  else
    chat_deliver(x, x->user, f, room);
  wshub_buf_unref(f);
}

/* Rooms larger than presence_limit get no join/leave/nick notices: each
 * would cost a frame per member, N² for N joins. */
static int chat_announces(const wshub_chat_t *chat, const chat_room_t *r) {
  return chat_room_size(r) <= chat->cfg.presence_limit;
}

/* A join or leave notice of the acting client for the others in room,
 * built before the membership changes: *out is NULL when the room is too
 * large for notices (`members`: its size with the client in it). 0 or
 * UV_ENOMEM. */
static int chat_presence(chat_ctx_t *x, chat_room_t *r, const char *type,
                         const char *verb, size_t members, wshub_buf_t **out) {
  *out = NULL;
  if (members > x->chat->cfg.presence_limit)
    return 0;
  char text[200];
  snprintf(text, sizeof(text), "%s %s %s", x->user->nick, verb, r->name);
  json_t *o = chat_msgf(type, text, "{s:s, s:o}", "room", r->name, "member",
                        chat_member(x->user));
  *out = chat_frame(o);
  json_decref(o);
  return *out != NULL ? 0 : UV_ENOMEM;
}

static const chat_entry_t *chat_ring_at(const wshub_chat_t *chat,
                                        const chat_room_t *r, size_t i) {
  return &r->ring[(r->start + i) % chat->cfg.history];
}

/* Stores a message (its text is taken over). */
static void chat_ring_push(wshub_chat_t *chat, chat_room_t *r, chat_entry_t e) {
  size_t cap = chat->cfg.history;
  if (cap == 0) {
    free(e.json);
    return;
  }
  if (r->len == cap) {
    free(r->ring[r->start].json);
    r->ring[r->start] = e;
    r->start = (r->start + 1) % cap;
  } else {
    r->ring[(r->start + r->len) % cap] = e;
    r->len++;
  }
}

void chat_ring_prepend(wshub_chat_t *chat, chat_room_t *r, chat_entry_t *e,
                       size_t n) {
  size_t cap = chat->cfg.history, k = 0;
  chat_entry_t *all = calloc(n + r->len + 1, sizeof(*all));
  if (all == NULL) {
    for (size_t i = 0; i < n; i++)
      free(e[i].json);
    return; /* out of memory: the ring keeps what it had */
  }
  uint64_t first = r->len > 0 ? chat_ring_at(chat, r, 0)->id : UINT64_MAX;
  for (size_t i = 0; i < n; i++) {
    if (e[i].id < first)
      all[k++] = e[i];
    else
      free(e[i].json);
  }
  for (size_t i = 0; i < r->len; i++)
    all[k++] = *chat_ring_at(chat, r, i);
  r->start = r->len = 0;
  for (size_t i = 0; i < k && cap > 0; i++)
    chat_ring_push(chat, r, all[i]); /* the oldest go past cap */
  if (cap == 0)
    for (size_t i = 0; i < k; i++)
      free(all[i].json);
  free(all);
}

void chat_ring_clear(wshub_chat_t *chat, chat_room_t *r) {
  for (size_t i = 0; i < r->len; i++)
    free(chat_ring_at(chat, r, i)->json);
  r->start = r->len = 0;
}

/* Appends the JSON array of the messages with id > after (at most `max`,
 * the newest) to out, "own" set for the receiving client `me`. Returns how
 * many. */
size_t chat_history(const wshub_chat_t *chat, const chat_room_t *r,
                    uint64_t after, size_t max, const char *me,
                    wshub_jbuf_t *out) {
  size_t n = 0;
  wshub_jbuf_lit(out, "[");
  size_t first = r->len > max ? r->len - max : 0;
  for (size_t i = first; i < r->len; i++) {
    const chat_entry_t *e = chat_ring_at(chat, r, i);
    if (e->id <= after)
      continue;
    if (n++ > 0)
      wshub_jbuf_lit(out, ",");
    if (strcmp(e->from, me) == 0) {
      wshub_jbuf_raw(out, e->json, e->len - CHAT_OWN_TAIL);
      wshub_jbuf_lit(out, "true}");
    } else {
      wshub_jbuf_raw(out, e->json, e->len);
    }
  }
  wshub_jbuf_lit(out, "]");
  return n;
}

static uint64_t chat_oldest(const wshub_chat_t *chat, const chat_room_t *r) {
  if (r->len == 0)
    return r->last_id + 1;
  return chat_ring_at(chat, r, 0)->id;
}

/* ---- protocol actions (the chat lock is held) ---- */

/* Hub client `id` (the user's connection, or one of its streams) joins r
 * now, or, while r's history is being read from Redis, once it is read:
 * after the messages its welcome covers. 0 or UV_ENOMEM. */
/* Records what x->user is owed about r once r is read (to: the hub
 * client, NULL for the user's own connection). 0 or UV_ENOMEM. */
static int chat_wait_for(chat_ctx_t *x, chat_room_t *r, int kind, int flag,
                         uint64_t after, const char *to) {
  chat_wait_t w = {.kind = kind, .flag = flag, .after = after};
  snprintf(w.user, sizeof(w.user), "%s", x->user->id);
  snprintf(w.to, sizeof(w.to), "%s", to != NULL ? to : "");
  return chat_cluster_wait(r, &w);
}

int chat_hub_join(chat_ctx_t *x, chat_room_t *r, const char *id) {
  if (chat_cluster_waits(x->chat, r))
    return chat_wait_for(x, r, CHAT_WAIT_JOIN, 0, 0, id);
  return chat_bus_join(x->chat->bus, x->server, id, r->name);
}

/* 1 if the reply (kind, flag, after) to x->user about r must wait for
 * Redis: it is recorded (x->failed if out of memory). */
static int chat_later(chat_ctx_t *x, chat_room_t *r, int kind, int flag,
                      uint64_t after, const char *to) {
  if (!chat_cluster_waits(x->chat, r))
    return 0;
  if (chat_wait_for(x, r, kind, flag, after, to) != 0)
    x->failed = 1;
  return 1;
}

/* Joins `room`, telling the others. Returns the room, or NULL after
 * sending an error (or, out of memory, with x->failed set and nothing
 * changed but a new empty room). */
chat_room_t *chat_enter(chat_ctx_t *x, const char *room) {
  chat_user_t *u = x->user;
  chat_room_t *r = chat_room(x->chat, room, 0);
  if (r != NULL && chat_user_room(u, r) >= 0)
    return r;
  if (u->nrooms >= CHAT_MAX_ROOMS_PER_CLIENT) {
    chat_error(x, "too_many_rooms", "You are in too many rooms already");
    return NULL;
  }
  if (r == NULL && x->chat->rooms.count >= x->chat->cfg.max_rooms) {
    chat_error(x, "too_many_rooms", "The server has too many rooms");
    return NULL;
  }
  wshub_buf_t *notice = NULL;
  if ((r == NULL && (r = chat_room(x->chat, room, 1)) == NULL) ||
      chat_presence(x, r, "join", "joined", chat_room_size(r) + 1, &notice) !=
          0 ||
      chat_member_add(x->chat, r, u) != 0) {
    wshub_buf_unref(notice);
    x->failed = 1;
    return NULL;
  }
  /* An HTTP session's streams join their rooms themselves (chathttp.c). */
  if (u->token == NULL && chat_hub_join(x, r, u->id) != 0) {
    chat_member_remove(x->chat, r, u);
    wshub_buf_unref(notice);
    x->failed = 1;
    return NULL;
  }
  if (notice != NULL)
    chat_bus_room(x->chat->bus, x->server, r->name, notice, u->id);
  wshub_buf_unref(notice);
  return r;
}

/* Leaves r, telling the others. `live`: the client stays connected (its
 * hub membership goes too, and if the notice cannot be built nothing
 * changes: x->failed is set, and the client's closing will leave). */
static int chat_exit(chat_ctx_t *x, chat_room_t *r, int live) {
  chat_user_t *u = x->user;
  wshub_buf_t *notice = NULL;
  if (chat_presence(x, r, "leave", "left", chat_room_size(r), &notice) != 0 &&
      live) {
    x->failed = 1;
    return UV_ENOMEM;
  }
  if (notice != NULL)
    chat_bus_room(x->chat->bus, x->server, r->name, notice, u->id);
  wshub_buf_unref(notice);
  chat_member_remove(x->chat, r, u);
  if (live && u->token == NULL)
    chat_bus_leave(x->chat->bus, x->server, u->id, r->name);
  for (size_t i = 0; i < u->nstreams; i++) /* its streams of r go quiet */
    if (strcmp(u->streams[i].room, r->name) == 0)
      chat_bus_leave(x->chat->bus, x->server, u->streams[i].id, r->name);
  return 0;
}

/* Sends `gap` if the ring no longer holds every message after `after`. */
static void chat_gap(chat_ctx_t *x, const chat_room_t *r, uint64_t after,
                     const char *to) {
  if (r == NULL)
    return;
  uint64_t oldest = chat_oldest(x->chat, r);
  if (after + 1 >= oldest || after >= r->last_id)
    return;
  chat_gap_to(x, r, after, oldest, to);
}

/* The `gap` message: messages after `after` and before `oldest` are lost;
 * to the client `to`, the acting user (to NULL, x->user set) or every
 * member of r here (both NULL). */
void chat_gap_to(chat_ctx_t *x, const chat_room_t *r, uint64_t after,
                 uint64_t oldest, const char *to) {
  char text[200];
  snprintf(
      text, sizeof(text), "Messages %llu to %llu in %s are no longer available",
      (unsigned long long)after + 1, (unsigned long long)oldest - 1, r->name);
  json_t *g =
      chat_msgf("gap", text, "{s:s, s:I, s:I}", "room", r->name, "after",
                (json_int_t)after, "oldest", (json_int_t)oldest);
  wshub_buf_t *f = chat_frame(g);
  if (f == NULL)
    x->failed = 1;
  else if (to != NULL)
    chat_bus_to(x->chat->bus, x->server, to, f);
  else if (x->user != NULL)
    chat_deliver(x, x->user, f, r->name);
  else
    chat_bus_room(x->chat->bus, x->server, r->name, f, NULL);
  wshub_buf_unref(f);
  json_decref(g);
}

/* Sends `history` (preceded by `gap` when the ring lost some) for room. */
static void chat_resume(chat_ctx_t *x, chat_room_t *r, uint64_t after) {
  if (chat_later(x, r, CHAT_WAIT_RESUME, 0, after, NULL))
    return;
  chat_gap(x, r, after, NULL);
  wshub_jbuf_t h;
  wshub_jbuf_init(&h, 0);
  size_t n =
      chat_history(x->chat, r, after, x->chat->cfg.history, x->user->id, &h);
  char text[96];
  snprintf(text, sizeof(text), "%zu missed message%s in %s", n,
           n == 1 ? "" : "s", r->name);
  json_t *o = chat_msgf("history", text, "{s:s, s:I}", "room", r->name, "after",
                        (json_int_t)after);
  chat_send_spliced(x, o, "messages", &h, NULL, r->name, NULL);
  json_decref(o);
  wshub_jbuf_free(&h);
}

/* The `joined` reply; history is omitted (empty) when a resume follows. */
static void chat_joined(chat_ctx_t *x, chat_room_t *r, int with_history) {
  if (chat_later(x, r, CHAT_WAIT_JOINED, with_history, 0, NULL))
    return;
  char text[100];
  snprintf(text, sizeof(text), "You joined %s", r->name);
  json_t *o = chat_msgf("joined", text, "{s:s, s:I}", "room", r->name,
                        "last_id", (json_int_t)r->last_id);
  wshub_jbuf_t h;
  wshub_jbuf_init(&h, 0);
  chat_history(x->chat, r, 0, with_history ? CHAT_WELCOME_HISTORY : 0,
               x->user->id, &h);
  chat_send_spliced(x, o, "history", &h, r, r->name, NULL);
  json_decref(o);
  wshub_jbuf_free(&h);
}

static int chat_text_ok(chat_ctx_t *x, size_t len) {
  if (len == 0) {
    chat_error(x, "empty_text", "The message is empty");
    return 0;
  }
  if (len > x->chat->cfg.max_text) {
    char why[96];
    snprintf(why, sizeof(why), "The message is longer than %zu bytes",
             x->chat->cfg.max_text);
    chat_error(x, "text_too_long", why);
    return 0;
  }
  return 1;
}

/* 1 if a reply to user `id` about r waits (chatcluster.c). */
static int chat_waiting(const chat_room_t *r, const char *id) {
  for (size_t i = 0; i < r->nwaits; i++)
    if (strcmp(r->waits[i].user, id) == 0)
      return 1;
  return 0;
}

/* Room message `id` to this node's members of r: into the history, to
 * everyone but its sender, the sender's own copy (when the sender is here:
 * `sender`, else NULL; `fid` is its id either way) and the held polls.
 * `from` is the sender's member JSON. Returns 0, or -1 when out of memory
 * (nothing taken). */
int chat_message_json(const chat_room_t *r, uint64_t id, const char *from,
                      size_t from_len, const char *text, size_t len, int64_t ts,
                      wshub_jbuf_t *out) {
  /* The message object of docs/PROTOCOL.md, field by field; "own" goes
   * last so that the sender's copy differs only in its final bytes. */
  wshub_jbuf_t j;
  wshub_jbuf_init(&j, 2 * len + 192 + from_len);
  wshub_jbuf_lit(&j, "{\"type\":\"message\",\"id\":");
  wshub_jbuf_int(&j, (int64_t)id);
  wshub_jbuf_lit(&j, ",\"room\":");
  wshub_jbuf_raw(&j, r->name_json, strlen(r->name_json));
  wshub_jbuf_lit(&j, ",\"from\":");
  wshub_jbuf_raw(&j, from, from_len);
  wshub_jbuf_lit(&j, ",\"text\":");
  size_t t0 = j.len;
  wshub_jbuf_str(&j, text, len);
  size_t tl = j.len - t0;
  wshub_jbuf_lit(&j, ",\"timestamp\":");
  wshub_jbuf_int(&j, ts);
  wshub_jbuf_lit(&j, ",\"params\":{\"value\":");
  wshub_jbuf_again(&j, t0, tl);
  wshub_jbuf_lit(&j, "},\"own\":" CHAT_OWN_FALSE);
  if (j.failed) {
    wshub_jbuf_free(&j);
    return -1;
  }
  *out = j;
  return 0;
}

int chat_emit(chat_ctx_t *x, chat_room_t *r, uint64_t id, const char *from,
              size_t from_len, const char *fid, chat_user_t *sender,
              const char *text, size_t len, int64_t ts) {
  wshub_jbuf_t j;
  if (chat_message_json(r, id, from, from_len, text, len, ts, &j) != 0)
    return -1; /* the message is not taken: no id, no history */
  wshub_buf_t *others = wshub_frame_build(WSHUB_OP_TEXT, j.data, j.len);
  uv_buf_t parts[2] = {uv_buf_init(j.data, (unsigned)(j.len - CHAT_OWN_TAIL)),
                       uv_buf_init((char *)"true}", 5)};
  wshub_buf_t *mine = wshub_frame_build_parts(WSHUB_OP_TEXT, parts, 2);
  if (others == NULL || mine == NULL) {
    wshub_buf_unref(others);
    wshub_buf_unref(mine);
    wshub_jbuf_free(&j);
    return -1;
  }
  if (id > r->last_id)
    r->last_id = id;
  chat_entry_t e = {.id = id, .json = j.data, .len = j.len};
  snprintf(e.from, sizeof(e.from), "%s", fid);
  chat_ring_push(x->chat, r, e); /* takes j.data */
  chat_bus_room(x->chat->bus, x->server, r->name, others, fid);
  /* A sender whose welcome waits for Redis finds its message there. */
  if (sender != NULL && !chat_waiting(r, sender->id))
    chat_deliver(x, sender, mine, r->name);
  /* Held polls of the room (chathttp.c) wake with this message. */
  for (size_t i = 0; i < r->npolls; i++) {
    chat_poll_ref_t *p = &r->polls[i];
    chat_bus_to(x->chat->bus, x->server, p->id,
                sender != NULL && p->owner == sender->number ? mine : others);
    if (--p->user->nholds == 0)
      p->user->idle_since = uv_hrtime();
  }
  r->npolls = 0;
  wshub_buf_unref(others);
  wshub_buf_unref(mine);
  return 0;
}

static void chat_post(chat_ctx_t *x, const char *room, const char *text,
                      size_t len) {
  if (!chat_text_ok(x, len))
    return;
  chat_room_t *r = room ? chat_room(x->chat, room, 0) : NULL;
  if (r == NULL || chat_user_room(x->user, r) < 0) {
    chat_error(x, "not_in_room",
               room ? "You are not in that room" : "Join a room first");
    return;
  }
  const char *from = chat_member_json(x->user);
  if (from == NULL) {
    x->failed = 1;
    return;
  }
  x->chat->posted++;
  if (x->chat->cluster_up) {
    /* Through Redis: every node, this one too, delivers it when it comes
     * back on the room's channel, with the id Redis gave it. */
    if (chat_cluster_post(x->chat, r, from, x->user->member_json_len,
                          x->user->id, text, len, chat_now_ms()) != 0)
      x->failed = 1;
    return;
  }
  if (chat_emit(x, r, r->last_id + 1, from, x->user->member_json_len,
                x->user->id, x->user, text, len, chat_now_ms()) != 0) {
    x->failed = 1;
    return;
  }
  if (x->cap != NULL)
    x->cap->id = r->last_id;
}

json_t *chat_direct_obj(json_t *from, json_t *to, const char *text, size_t len,
                        int64_t ts) {
  json_t *s = json_stringn(text, len);
  json_t *o = NULL;
  if (json_is_object(from) && json_is_object(to) && s != NULL)
    o = json_pack("{s:s, s:O, s:O, s:O, s:I, s:b, s:{s:O}}", "type", "direct",
                  "from", from, "to", to, "text", s, "timestamp",
                  (json_int_t)ts, "own", 0, "params", "value", s);
  json_decref(s);
  return o;
}

static void chat_direct(chat_ctx_t *x, const char *to, const char *text,
                        size_t len) {
  chat_user_t *peer = wshub_map_get(&x->chat->users, to);
  if (peer == NULL) {
    int r = chat_text_ok(x, len)
                ? chat_cluster_direct(x, to, text, len, chat_now_ms())
                : 2;
    if (r == 0)
      chat_error(x, "unknown_client", "No such client is connected");
    else if (r < 0)
      x->failed = 1;
    else if (r == 1)
      x->chat->directs++;
    return;
  }
  if (!chat_text_ok(x, len))
    return;
  x->chat->directs++;
  json_t *from = chat_member(x->user), *to_m = chat_member(peer);
  json_t *o = chat_direct_obj(from, to_m, text, len, chat_now_ms());
  json_decref(from);
  json_decref(to_m);
  if (o != NULL && peer != x->user)
    chat_send_to(x, peer, o, NULL);
  if (json_object_set_new(o, "own", json_true()) == 0)
    chat_send(x, o, NULL);
  else
    x->failed = 1;
  json_decref(o);
}

static void chat_set_nick(chat_ctx_t *x, const char *nick, size_t len) {
  chat_user_t *u = x->user;
  char *fresh = strndup(nick, len);
  if (fresh == NULL) {
    x->failed = 1;
    return;
  }
  char *old = u->nick;
  u->nick = fresh;
  free(u->member_json);
  u->member_json = NULL;
  for (size_t i = 0; i < u->nrooms; i++)
    chat_members_stale(u->rooms[i]);
  char text[300];
  snprintf(text, sizeof(text), "%s is now %s", old, u->nick);
  json_t *o = chat_msgf("nick", text, "{s:o, s:s}", "member", chat_member(u),
                        "old", old);
  chat_send(x, o, NULL);
  for (size_t i = 0; i < u->nrooms && !x->failed; i++) {
    chat_room_t *r = u->rooms[i];
    chat_cluster_presence(x->chat, r, u, 1, old);
    if (!chat_announces(x->chat, r))
      continue;
    if (json_object_set_new(o, "room", json_string(r->name)) == 0)
      chat_send_room(x, r->name, o, u->id);
    else
      x->failed = 1;
  }
  json_decref(o);
  free(old);
}

/* A string field, or NULL (its length in *len). */
static const char *chat_str(const json_t *o, const char *key, size_t *len) {
  const json_t *v = json_object_get(o, key);
  if (!json_is_string(v))
    return NULL;
  if (len != NULL)
    *len = json_string_length(v);
  return json_string_value(v);
}

static const char *chat_room_arg(chat_ctx_t *x, const json_t *o) {
  size_t len;
  const char *room = chat_str(o, "room", &len);
  if (room == NULL) {
    chat_error(x, "missing_field", "\"room\" (a string) is required");
    return NULL;
  }
  if (!wshub_chat_room_valid(room, len)) {
    chat_error(x, "bad_room",
               "Room names are 1-64 characters of A-Z a-z 0-9 . _ -");
    return NULL;
  }
  return room;
}

static const char chat_bad_nick_text[] =
    "Nicknames are 1-32 characters, no control characters, not all blank";

void chat_on_json(chat_ctx_t *x, const json_t *o) {
  const char *type = chat_str(o, "type", NULL);
  const char *room;
  size_t len;
  chat_room_t *r;
  if (type == NULL) {
    chat_error(x, "unknown_type", "\"type\" (a string) is required");
  } else if (strcmp(type, "message") == 0) {
    const char *text = chat_str(o, "text", &len);
    if (text == NULL && json_object_get(o, "text") == NULL)
      text = chat_str(json_object_get(o, "params"), "value", &len);
    if (text == NULL) {
      chat_error(x, "missing_field", "\"text\" (a string) is required");
      return;
    }
    const json_t *to = json_object_get(o, "to");
    if (to != NULL) {
      if (!json_is_string(to))
        chat_error(x, "missing_field", "\"to\" must be a client id");
      else
        chat_direct(x, json_string_value(to), text, len);
      return;
    }
    room = chat_current_room(x->user);
    if (json_object_get(o, "room") != NULL &&
        (room = chat_room_arg(x, o)) == NULL)
      return;
    chat_post(x, room, text, len);
  } else if (strcmp(type, "join") == 0) {
    if ((room = chat_room_arg(x, o)) == NULL)
      return;
    r = chat_room(x->chat, room, 0);
    ssize_t k = r ? chat_user_room(x->user, r) : -1;
    if (k >= 0) {
      /* Already a member: make it the current room again. */
      memmove(&x->user->rooms[k], &x->user->rooms[k + 1],
              (x->user->nrooms - (size_t)k - 1) * sizeof(r));
      x->user->rooms[x->user->nrooms - 1] = r;
    } else if ((r = chat_enter(x, room)) == NULL) {
      return;
    }
    chat_joined(x, r, 1);
  } else if (strcmp(type, "leave") == 0) {
    if ((room = chat_room_arg(x, o)) == NULL)
      return;
    r = chat_room(x->chat, room, 0);
    if (r == NULL || chat_user_room(x->user, r) < 0) {
      chat_error(x, "not_in_room", "You are not in that room");
      return;
    }
    if (chat_exit(x, r, 1) != 0)
      return;
    char text[100];
    snprintf(text, sizeof(text), "You left %s", r->name);
    json_t *m = chat_msgf("left", text, "{s:s}", "room", r->name);
    chat_send(x, m, r->name);
    json_decref(m);
  } else if (strcmp(type, "nick") == 0) {
    const char *nick = chat_str(o, "name", &len);
    if (nick == NULL)
      nick = chat_str(o, "nick", &len);
    if (nick == NULL) {
      chat_error(x, "missing_field", "\"name\" (a string) is required");
      return;
    }
    if (!wshub_chat_nick_valid(nick, len)) {
      chat_error(x, "bad_nick", chat_bad_nick_text);
      return;
    }
    chat_set_nick(x, nick, len);
  } else if (strcmp(type, "resume") == 0) {
    if ((room = chat_room_arg(x, o)) == NULL)
      return;
    const json_t *after = json_object_get(o, "after");
    if (!json_is_integer(after) || json_integer_value(after) < 0) {
      chat_error(x, "missing_field", "\"after\" (an integer >= 0) is required");
      return;
    }
    r = chat_room(x->chat, room, 0);
    if (r == NULL || chat_user_room(x->user, r) < 0) {
      if ((r = chat_enter(x, room)) == NULL)
        return;
      chat_joined(x, r, 0);
    }
    chat_resume(x, r, (uint64_t)json_integer_value(after));
  } else {
    chat_error(x, "unknown_type", "Unknown message type");
  }
}

/* Token bucket: 1 if this message may go on. Over the limit the message
 * is refused with one `rate_limited` error; a client that goes on sending
 * a bucket's worth while refused is closed with 1008. */
int chat_rate_ok(chat_ctx_t *x) {
  const wshub_chat_config_t *cfg = &x->chat->cfg;
  if (cfg->rate <= 0)
    return 1;
  chat_user_t *u = x->user;
  double burst = cfg->burst > 0 ? cfg->burst : 2 * cfg->rate;
  uint64_t now = uv_hrtime();
  u->tokens += (double)(now - u->refilled) / 1e9 * cfg->rate;
  if (u->tokens > burst)
    u->tokens = burst;
  u->refilled = now;
  if (u->tokens >= 1) {
    u->tokens -= 1;
    u->refused = 0;
    return 1;
  }
  if (u->refused++ == 0) {
    char why[96];
    snprintf(why, sizeof(why), "Too many messages: at most %g per second",
             cfg->rate);
    chat_error(x, "rate_limited", why);
  } else if (u->refused > burst) {
    if (x->client != NULL) /* an HTTP session just gets 429s */
      wshub_client_close(x->client, 1008, "rate limit exceeded");
  }
  return 0;
}

static chat_ctx_t chat_ctx(wshub_chat_t *chat, wshub_client_t *c) {
  chat_ctx_t x = {chat, wshub_client_server(c), c, wshub_client_data(c), NULL,
                  0};
  return x;
}

static void chat_on_message(wshub_client_t *c, const char *data, size_t len,
                            int binary, void *user) {
  wshub_chat_t *chat = user;
  chat_ctx_t x = chat_ctx(chat, c);
  if (x.user == NULL)
    return;
  size_t i = 0;
  while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' ||
                     data[i] == '\n'))
    i++;
  json_t *o = NULL;
  json_error_t err;
  memset(&err, 0, sizeof(err)); /* some failures leave it untouched */
  int is_json = !binary && i < len && data[i] == '{';
  if (is_json) /* parse before taking the lock */
    o = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
  uv_mutex_lock(&chat->lock);
  chat_http_sweep(&x);
  if (!chat_rate_ok(&x)) {
    /* refused */
  } else if (binary) {
    chat_error(&x, "binary_unsupported", "Binary messages are not supported");
  } else if (!is_json) {
    chat_post(&x, chat_current_room(x.user), data, len); /* plain text */
  } else if (o == NULL && (json_error_code(&err) == json_error_out_of_memory ||
                           err.text[0] == '\0')) {
    x.failed = 1; /* out of memory (jansson sets no text for some cases) */
  } else if (!json_is_object(o)) {
    char why[200];
    snprintf(why, sizeof(why), "Not a JSON object: %s", err.text);
    chat_error(&x, "bad_json", why);
  } else {
    chat_on_json(&x, o);
  }
  uv_mutex_unlock(&chat->lock);
  json_decref(o);
  if (x.failed)
    wshub_client_close(c, 1011, "internal error");
}

chat_user_t *chat_user_new(const wshub_chat_t *chat, const char *id,
                           const char *nick) {
  chat_user_t *u = calloc(1, sizeof(*u));
  if (u == NULL)
    return NULL;
  snprintf(u->id, sizeof(u->id), "%s", id);
  u->number = wshub_hub_id_number(id);
  char guest[32];
  snprintf(guest, sizeof(guest), "guest-%s", u->id + 1);
  u->nick = strdup(nick != NULL ? nick : guest);
  if (u->nick == NULL) {
    free(u);
    return NULL;
  }
  u->tokens = chat->cfg.burst > 0 ? chat->cfg.burst : 2 * chat->cfg.rate;
  u->refilled = uv_hrtime();
  return u;
}

void chat_welcome(chat_ctx_t *x, chat_room_t *r, int resume, uint64_t after,
                  const char *to) {
  const wshub_chat_t *chat = x->chat;
  chat_user_t *u = x->user;
  if (chat_later(x, r, CHAT_WAIT_WELCOME, resume, after, to))
    return;
  char text[300];
  snprintf(text, sizeof(text), "Connected to wshub as %s in %s", u->nick,
           r->name);
  json_t *rooms = json_array();
  for (size_t i = 0; i < u->nrooms && rooms != NULL; i++)
    if (json_array_append_new(rooms, json_string(u->rooms[i]->name)) != 0) {
      json_decref(rooms);
      rooms = NULL;
    }
  json_t *o =
      rooms == NULL
          ? NULL
          : chat_msgf("welcome", text, "{s:s, s:s, s:s, s:o, s:I}", "id", u->id,
                      "nick", u->nick, "room", r->name, "rooms", rooms,
                      "last_id", (json_int_t)r->last_id);
  wshub_jbuf_t h;
  wshub_jbuf_init(&h, 0);
  chat_history(chat, r, resume ? after : 0,
               resume ? chat->cfg.history : CHAT_WELCOME_HISTORY, u->id, &h);
  chat_send_spliced(x, o, "history", &h, r, r->name, to);
  json_decref(o);
  wshub_jbuf_free(&h);
  if (resume)
    chat_gap(x, r, after, to);
}

void chat_room_notice(chat_ctx_t *x, chat_room_t *r, const json_t *o) {
  chat_send_room(x, r->name, o, NULL);
}

size_t chat_run_waits(wshub_chat_t *chat, chat_room_t *r) {
  size_t failed = 0;
  chat_wait_t *w = r->waits;
  size_t n = r->nwaits;
  r->waits = NULL;
  r->nwaits = r->waits_cap = 0;
  for (size_t i = 0; i < n; i++) {
    chat_ctx_t x = {chat, chat->sweep_server, NULL, NULL, NULL, 0};
    x.user = wshub_map_get(&chat->users, w[i].user);
    if (x.user == NULL || chat_user_room(x.user, r) < 0)
      continue; /* gone, or left the room meanwhile */
    const char *to = w[i].to[0] ? w[i].to : NULL;
    switch (w[i].kind) {
    case CHAT_WAIT_JOIN:
      x.failed = chat_bus_join(chat->bus, x.server, w[i].to, r->name) != 0;
      break;
    case CHAT_WAIT_WELCOME:
      chat_welcome(&x, r, w[i].flag, w[i].after, to);
      break;
    case CHAT_WAIT_JOINED:
      chat_joined(&x, r, w[i].flag);
      break;
    default:
      chat_resume(&x, r, w[i].after);
    }
    failed += x.failed;
  }
  free(w);
  return failed;
}

void chat_user_gone(chat_ctx_t *x) {
  chat_user_t *u = x->user;
  while (u->nrooms > 0)
    chat_exit(x, u->rooms[0], 0);
  wshub_map_del(&x->chat->users, u->id);
  if (u->token != NULL)
    wshub_map_del(&x->chat->sessions, u->token);
  chat_user_free(NULL, u, NULL);
}

static int chat_on_open(wshub_client_t *c, const wshub_request_t *req,
                        void *user) {
  wshub_chat_t *chat = user;

  char room[80], nick[CHAT_NICK_BYTES], after_s[24];
  int rl = wshub_chat_query_param(req->target, req->target_len, "room", room,
                                  sizeof(room));
  int bad_room =
      rl == -2 || (rl >= 0 && !wshub_chat_room_valid(room, (size_t)rl));
  if (rl < 0 || bad_room)
    snprintf(room, sizeof(room), "lobby");
  int nl = wshub_chat_query_param(req->target, req->target_len, "nick", nick,
                                  sizeof(nick));
  int good_nick = nl >= 0 && wshub_chat_nick_valid(nick, (size_t)nl);
  int bad_nick = nl == -2 || (nl >= 0 && !good_nick);
  chat_user_t *u =
      chat_user_new(chat, wshub_client_id(c), good_nick ? nick : NULL);
  if (u == NULL)
    return 503;
  int al = wshub_chat_query_param(req->target, req->target_len, "after",
                                  after_s, sizeof(after_s));
  char *end = NULL;
  unsigned long long after = al > 0 ? strtoull(after_s, &end, 10) : 0;
  int resume = al > 0 && end != NULL && *end == '\0' && after_s[0] != '-';

  uv_mutex_lock(&chat->lock);
  if (wshub_map_put(&chat->users, u->id, u) != 0) {
    uv_mutex_unlock(&chat->lock);
    chat_user_free(NULL, u, NULL);
    return 503;
  }
  wshub_client_set_data(c, u);
  chat_ctx_t x = chat_ctx(chat, c);
  chat_room_t *r = chat_enter(&x, room);
  if (r != NULL)
    chat_welcome(&x, r, resume, after, NULL);
  if (bad_room)
    chat_error(&x, "bad_room",
               "Room names are 1-64 characters of A-Z a-z 0-9 . _ -");
  if (bad_nick)
    chat_error(&x, "bad_nick", chat_bad_nick_text);
  if (x.failed) {
    /* Out of memory: refuse the upgrade (nothing queued for this client
     * leaves) and take the user back out; the others hear it leave. */
    chat_user_gone(&x);
    uv_mutex_unlock(&chat->lock);
    wshub_client_set_data(c, NULL);
    return 503;
  }
  uv_mutex_unlock(&chat->lock);
  return 0;
}

static void chat_on_close(wshub_client_t *c, int code, const char *reason,
                          void *user) {
  (void)code;
  (void)reason;
  wshub_chat_t *chat = user;
  chat_ctx_t x = chat_ctx(chat, c);
  if (x.user == NULL)
    return;
  uv_mutex_lock(&chat->lock);
  chat_user_gone(&x);
  uv_mutex_unlock(&chat->lock);
  wshub_client_set_data(c, NULL);
}

int wshub_chat_ready(wshub_chat_t *chat) {
  uv_mutex_lock(&chat->lock);
  int up = chat->cfg.redis_url == NULL || chat->cluster_up;
  uv_mutex_unlock(&chat->lock);
  return up;
}

static int chat_on_ready(void *user) {
  return wshub_chat_ready(user);
}

static void chat_count_occupied(const char *key, void *value, void *arg) {
  (void)key;
  if (((const chat_room_t *)value)->n > 0)
    (*(size_t *)arg)++;
}

/* The chat's lines of a scrape (any thread; under the lock). */
static void chat_on_metrics(wshub_metrics_out_t *o, void *user) {
  wshub_chat_t *chat = user;
  uv_mutex_lock(&chat->lock);
  size_t occupied = 0;
  wshub_map_foreach(&chat->rooms, chat_count_occupied, &occupied);
  wshub_metrics_printf(
      o,
      "# HELP wshub_chat_rooms Chat rooms known (with members or history).\n"
      "# TYPE wshub_chat_rooms gauge\nwshub_chat_rooms %zu\n"
      "# HELP wshub_chat_rooms_occupied Chat rooms with members here.\n"
      "# TYPE wshub_chat_rooms_occupied gauge\n"
      "wshub_chat_rooms_occupied %zu\n"
      "# HELP wshub_chat_users Chat participants (WebSocket clients and HTTP "
      "sessions).\n"
      "# TYPE wshub_chat_users gauge\nwshub_chat_users %zu\n"
      "# HELP wshub_chat_sessions HTTP (SSE / polling) sessions.\n"
      "# TYPE wshub_chat_sessions gauge\nwshub_chat_sessions %zu\n"
      "# HELP wshub_chat_messages_total Chat messages accepted from clients "
      "(all transports).\n"
      "# TYPE wshub_chat_messages_total counter\n"
      "wshub_chat_messages_total{kind=\"room\"} %llu\n"
      "wshub_chat_messages_total{kind=\"direct\"} %llu\n",
      chat->rooms.count, occupied, chat->users.count, chat->sessions.count,
      (unsigned long long)chat->posted, (unsigned long long)chat->directs);
  if (chat->cfg.redis_url != NULL)
    wshub_metrics_printf(o,
                         "# HELP wshub_redis_up 1 while the Redis link is up.\n"
                         "# TYPE wshub_redis_up gauge\nwshub_redis_up %d\n",
                         chat->cluster_up ? 1 : 0);
  uv_mutex_unlock(&chat->lock);
}

void wshub_chat_install(wshub_chat_t *chat, wshub_config_t *cfg) {
  chat_http_install(chat, cfg); /* keeps the host's on_request and user */
  cfg->on_ready = chat_on_ready;
  cfg->on_metrics = chat_on_metrics;
  cfg->on_open = chat_on_open;
  cfg->on_message = chat_on_message;
  cfg->on_close = chat_on_close;
  cfg->user = chat;
}
