/* chat.c — the chat protocol of docs/PROTOCOL.md (see chat.h).
 *
 * Each room message is encoded twice, not once per member: one copy with
 * "own": false shared by every other member, one with "own": true for the
 * sender. The history ring holds the message objects themselves
 * (reference-counted jansson values) and is serialized per receiver only
 * when a client joins or resumes.
 */
#include "chat.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "map.h"
#include "utf8.h"

#define CHAT_MAX_ROOMS_PER_CLIENT 16
#define CHAT_WELCOME_HISTORY 50
#define CHAT_NICK_BYTES (32 * 4 + 1)

typedef struct {
  char *name; /* also the map key */
  uint64_t last_id;
  json_t **ring; /* message objects, oldest at `start` */
  size_t start, len;
} chat_room_t;

typedef struct {
  char nick[CHAT_NICK_BYTES];
} chat_user_t;

struct wshub_chat_s {
  wshub_chat_config_t cfg;
  wshub_map_t rooms; /* name → chat_room_t */
};

void wshub_chat_config_init(wshub_chat_config_t *cfg) {
  cfg->max_text = 4000;
  cfg->history = 100;
  cfg->max_rooms = 10000;
  cfg->presence_limit = 100;
}

wshub_chat_t *wshub_chat_new(const wshub_chat_config_t *cfg) {
  wshub_chat_t *chat = calloc(1, sizeof(*chat));
  if (chat == NULL)
    return NULL;
  chat->cfg = *cfg;
  wshub_map_init(&chat->rooms);
  return chat;
}

static void chat_room_free(const char *key, void *value, void *arg) {
  (void)key;
  const wshub_chat_t *chat = arg;
  chat_room_t *r = value;
  for (size_t i = 0; i < r->len; i++)
    json_decref(r->ring[(r->start + i) % chat->cfg.history]);
  free(r->ring);
  free(r->name);
  free(r);
}

void wshub_chat_free(wshub_chat_t *chat) {
  if (chat == NULL)
    return;
  wshub_map_foreach(&chat->rooms, chat_room_free, chat);
  wshub_map_free(&chat->rooms);
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

static int chat_hex(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
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
        } else if (ch == '%' && pe - v > 2 && chat_hex(v[1]) >= 0 &&
                   chat_hex(v[2]) >= 0) {
          ch = chat_hex(v[1]) * 16 + chat_hex(v[2]);
          v += 2;
        }
        if (o + 1 >= cap)
          return -1;
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

static const char *chat_nick(const wshub_client_t *c) {
  const chat_user_t *u = wshub_client_data(c);
  return u ? u->nick : "?";
}

static json_t *chat_member(const wshub_client_t *c) {
  return json_pack("{s:s, s:s}", "id", wshub_client_id(c), "nick",
                   chat_nick(c));
}

/* A server message with the fields every one carries. */
static json_t *chat_msg(const char *type, const char *text) {
  return json_pack("{s:s, s:s, s:I, s:{s:s}}", "type", type, "text", text,
                   "timestamp", (json_int_t)chat_now_ms(), "params", "value",
                   text);
}

static char *chat_dump(const json_t *o) {
  return json_dumps(o, JSON_COMPACT);
}

static void chat_send(wshub_client_t *c, const json_t *o) {
  char *s = chat_dump(o);
  if (s != NULL)
    wshub_send(c, s, strlen(s), 0);
  free(s);
}

static void chat_send_room(wshub_client_t *from, const char *room,
                           const json_t *o) {
  char *s = chat_dump(o);
  if (s != NULL)
    wshub_send_room(wshub_client_server(from), room, s, strlen(s), 0, from);
  free(s);
}

static void chat_error(wshub_client_t *c, const char *code, const char *text) {
  json_t *o = chat_msg("error", text);
  json_object_set_new(o, "code", json_string(code));
  chat_send(c, o);
  json_decref(o);
}

typedef struct {
  json_t *list;
  size_t max;
} chat_members_t;

static void chat_add_member(wshub_client_t *c, void *arg) {
  chat_members_t *m = arg;
  if (json_array_size(m->list) < m->max)
    json_array_append_new(m->list, chat_member(c));
}

/* Sets "members" (at most presence_limit of them) and "member_count". */
static void chat_set_members(const wshub_chat_t *chat, json_t *o,
                             wshub_server_t *s, const char *room) {
  chat_members_t m = {json_array(), chat->cfg.presence_limit};
  size_t n = wshub_room_foreach(s, room, chat_add_member, &m);
  json_object_set_new(o, "members", m.list);
  json_object_set_new(o, "member_count", json_integer((json_int_t)n));
}

/* Rooms larger than presence_limit get no join/leave/nick notices: each
 * would cost a frame per member, N² for N joins. */
static int chat_announces(const wshub_chat_t *chat, const wshub_client_t *c,
                          const char *room) {
  return wshub_room_size(wshub_client_server(c), room) <=
         chat->cfg.presence_limit;
}

/* A join or leave notice to the others in room. */
static void chat_presence(const wshub_chat_t *chat, wshub_client_t *c,
                          const char *room, const char *type,
                          const char *verb) {
  if (!chat_announces(chat, c, room))
    return;
  char text[200];
  snprintf(text, sizeof(text), "%s %s %s", chat_nick(c), verb, room);
  json_t *o = chat_msg(type, text);
  json_object_set_new(o, "room", json_string(room));
  json_object_set_new(o, "member", chat_member(c));
  chat_send_room(c, room, o);
  json_decref(o);
}

static chat_room_t *chat_room(wshub_chat_t *chat, const char *name,
                              int create) {
  chat_room_t *r = wshub_map_get(&chat->rooms, name);
  if (r != NULL || !create || chat->rooms.count >= chat->cfg.max_rooms)
    return r;
  r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->name = strdup(name);
  r->ring = calloc(chat->cfg.history ? chat->cfg.history : 1, sizeof(json_t *));
  if (r->name == NULL || r->ring == NULL ||
      wshub_map_put(&chat->rooms, r->name, r) != 0) {
    free(r->ring);
    free(r->name);
    free(r);
    return NULL;
  }
  return r;
}

static json_t *chat_ring_at(const wshub_chat_t *chat, const chat_room_t *r,
                            size_t i) {
  return r->ring[(r->start + i) % chat->cfg.history];
}

static void chat_ring_push(wshub_chat_t *chat, chat_room_t *r, json_t *msg) {
  size_t cap = chat->cfg.history;
  if (cap == 0)
    return;
  if (r->len == cap) {
    json_decref(r->ring[r->start]);
    r->ring[r->start] = json_incref(msg);
    r->start = (r->start + 1) % cap;
  } else {
    r->ring[(r->start + r->len) % cap] = json_incref(msg);
    r->len++;
  }
}

/* Messages with id > after (at most `max`, the newest), with "own" set for
 * the receiving client. */
static json_t *chat_history(wshub_chat_t *chat, const chat_room_t *r,
                            uint64_t after, size_t max,
                            const wshub_client_t *me) {
  json_t *a = json_array();
  if (r == NULL)
    return a;
  size_t first = r->len > max ? r->len - max : 0;
  for (size_t i = first; i < r->len; i++) {
    json_t *m = chat_ring_at(chat, r, i);
    if ((uint64_t)json_integer_value(json_object_get(m, "id")) <= after)
      continue;
    json_t *copy = json_copy(m); /* shallow: shares the nested values */
    const char *from =
        json_string_value(json_object_get(json_object_get(m, "from"), "id"));
    json_object_set_new(
        copy, "own",
        json_boolean(from && strcmp(from, wshub_client_id(me)) == 0));
    json_array_append_new(a, copy);
  }
  return a;
}

static uint64_t chat_oldest(const wshub_chat_t *chat, const chat_room_t *r) {
  if (r->len == 0)
    return r->last_id + 1;
  return (uint64_t)json_integer_value(
      json_object_get(chat_ring_at(chat, r, 0), "id"));
}

/* ---- protocol actions ---- */

static const char *chat_current_room(const wshub_client_t *c) {
  size_t n = wshub_client_room_count(c);
  return n ? wshub_client_room(c, n - 1) : NULL;
}

/* Joins `room`, telling the others. Returns 0, or sends an error and
 * returns -1. */
static int chat_enter(wshub_chat_t *chat, wshub_client_t *c, const char *room) {
  if (wshub_in_room(c, room))
    return 0;
  if (wshub_client_room_count(c) >= CHAT_MAX_ROOMS_PER_CLIENT) {
    chat_error(c, "too_many_rooms", "You are in too many rooms already");
    return -1;
  }
  if (chat_room(chat, room, 1) == NULL) {
    chat_error(c, "too_many_rooms", "The server has too many rooms");
    return -1;
  }
  if (wshub_join(c, room) != 0) {
    chat_error(c, "internal", "Could not join the room");
    return -1;
  }
  chat_presence(chat, c, room, "join", "joined");
  return 0;
}

/* Sends `gap` if the ring no longer holds every message after `after`. */
static void chat_gap(wshub_chat_t *chat, wshub_client_t *c,
                     const chat_room_t *r, uint64_t after) {
  if (r == NULL)
    return;
  uint64_t oldest = chat_oldest(chat, r);
  if (after + 1 >= oldest || after >= r->last_id)
    return;
  char text[200];
  snprintf(
      text, sizeof(text), "Messages %llu to %llu in %s are no longer available",
      (unsigned long long)after + 1, (unsigned long long)oldest - 1, r->name);
  json_t *g = chat_msg("gap", text);
  json_object_set_new(g, "room", json_string(r->name));
  json_object_set_new(g, "after", json_integer((json_int_t)after));
  json_object_set_new(g, "oldest", json_integer((json_int_t)oldest));
  chat_send(c, g);
  json_decref(g);
}

/* Sends `history` (preceded by `gap` when the ring lost some) for room. */
static void chat_resume(wshub_chat_t *chat, wshub_client_t *c, const char *room,
                        uint64_t after) {
  chat_room_t *r = chat_room(chat, room, 0);
  chat_gap(chat, c, r, after);
  json_t *h = chat_history(chat, r, after, chat->cfg.history, c);
  char text[96];
  snprintf(text, sizeof(text), "%zu missed message%s in %s", json_array_size(h),
           json_array_size(h) == 1 ? "" : "s", room);
  json_t *o = chat_msg("history", text);
  json_object_set_new(o, "room", json_string(room));
  json_object_set_new(o, "after", json_integer((json_int_t)after));
  json_object_set_new(o, "messages", h);
  chat_send(c, o);
  json_decref(o);
}

/* The `joined` reply; history is omitted (empty) when a resume follows. */
static void chat_joined(wshub_chat_t *chat, wshub_client_t *c, const char *room,
                        int with_history) {
  chat_room_t *r = chat_room(chat, room, 0);
  char text[100];
  snprintf(text, sizeof(text), "You joined %s", room);
  json_t *o = chat_msg("joined", text);
  json_object_set_new(o, "room", json_string(room));
  chat_set_members(chat, o, wshub_client_server(c), room);
  json_object_set_new(o, "history",
                      with_history
                          ? chat_history(chat, r, 0, CHAT_WELCOME_HISTORY, c)
                          : json_array());
  json_object_set_new(o, "last_id",
                      json_integer(r ? (json_int_t)r->last_id : 0));
  chat_send(c, o);
  json_decref(o);
}

static void chat_post(wshub_chat_t *chat, wshub_client_t *c, const char *room,
                      const char *text, size_t len) {
  if (len == 0) {
    chat_error(c, "empty_text", "The message is empty");
    return;
  }
  if (len > chat->cfg.max_text) {
    char why[96];
    snprintf(why, sizeof(why), "The message is longer than %zu bytes",
             chat->cfg.max_text);
    chat_error(c, "text_too_long", why);
    return;
  }
  if (room == NULL) {
    chat_error(c, "not_in_room", "Join a room first");
    return;
  }
  chat_room_t *r = chat_room(chat, room, 1);
  if (r == NULL) {
    chat_error(c, "internal", "Could not store the message");
    return;
  }
  json_t *t = json_stringn(text, len);
  json_t *o = json_pack(
      "{s:s, s:I, s:s, s:o, s:O, s:I, s:b, s:{s:O}}", "type", "message", "id",
      (json_int_t)++r->last_id, "room", room, "from", chat_member(c), "text", t,
      "timestamp", (json_int_t)chat_now_ms(), "own", 0, "params", "value", t);
  json_decref(t);
  if (o == NULL)
    return;
  chat_ring_push(chat, r, o);
  chat_send_room(c, room, o);
  json_object_set_new(o, "own", json_true());
  chat_send(c, o);
  json_object_set_new(o, "own", json_false());
  json_decref(o);
}

static void chat_direct(wshub_client_t *c, const char *to, const char *text,
                        size_t len, size_t max_text) {
  wshub_client_t *peer = wshub_client_find(wshub_client_server(c), to);
  if (peer == NULL) {
    chat_error(c, "unknown_client", "No such client is connected");
    return;
  }
  if (len == 0) {
    chat_error(c, "empty_text", "The message is empty");
    return;
  }
  if (len > max_text) {
    chat_error(c, "text_too_long", "The message is too long");
    return;
  }
  json_t *t = json_stringn(text, len);
  json_t *o = json_pack(
      "{s:s, s:o, s:o, s:O, s:I, s:b, s:{s:O}}", "type", "direct", "from",
      chat_member(c), "to", chat_member(peer), "text", t, "timestamp",
      (json_int_t)chat_now_ms(), "own", 0, "params", "value", t);
  json_decref(t);
  if (o == NULL)
    return;
  if (peer != c)
    chat_send(peer, o);
  json_object_set_new(o, "own", json_true());
  chat_send(c, o);
  json_decref(o);
}

static void chat_set_nick(const wshub_chat_t *chat, wshub_client_t *c,
                          const char *nick, size_t len) {
  chat_user_t *u = wshub_client_data(c);
  char old[CHAT_NICK_BYTES];
  snprintf(old, sizeof(old), "%s", u->nick);
  memcpy(u->nick, nick, len);
  u->nick[len] = '\0';
  char text[300];
  snprintf(text, sizeof(text), "%s is now %s", old, u->nick);
  json_t *o = chat_msg("nick", text);
  json_object_set_new(o, "member", chat_member(c));
  json_object_set_new(o, "old", json_string(old));
  chat_send(c, o);
  for (size_t i = 0; i < wshub_client_room_count(c); i++) {
    const char *room = wshub_client_room(c, i);
    if (!chat_announces(chat, c, room))
      continue;
    json_object_set_new(o, "room", json_string(room));
    chat_send_room(c, room, o);
  }
  json_decref(o);
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

static int chat_room_arg(wshub_client_t *c, const json_t *o,
                         const char **room) {
  size_t len;
  *room = chat_str(o, "room", &len);
  if (*room == NULL) {
    chat_error(c, "missing_field", "\"room\" (a string) is required");
    return -1;
  }
  if (!wshub_chat_room_valid(*room, len)) {
    chat_error(c, "bad_room",
               "Room names are 1-64 characters of A-Z a-z 0-9 . _ -");
    return -1;
  }
  return 0;
}

static void chat_on_json(wshub_chat_t *chat, wshub_client_t *c,
                         const json_t *o) {
  const char *type = chat_str(o, "type", NULL);
  const char *room;
  size_t len;
  if (type == NULL) {
    chat_error(c, "unknown_type", "\"type\" (a string) is required");
  } else if (strcmp(type, "message") == 0) {
    const char *text = chat_str(o, "text", &len);
    if (text == NULL && json_object_get(o, "text") == NULL)
      text = chat_str(json_object_get(o, "params"), "value", &len);
    if (text == NULL) {
      chat_error(c, "missing_field", "\"text\" (a string) is required");
      return;
    }
    const json_t *to = json_object_get(o, "to");
    if (to != NULL) {
      if (!json_is_string(to))
        chat_error(c, "missing_field", "\"to\" must be a client id");
      else
        chat_direct(c, json_string_value(to), text, len, chat->cfg.max_text);
      return;
    }
    room = chat_current_room(c);
    if (json_object_get(o, "room") != NULL) {
      if (chat_room_arg(c, o, &room) != 0)
        return;
      if (!wshub_in_room(c, room)) {
        chat_error(c, "not_in_room", "You are not in that room");
        return;
      }
    }
    chat_post(chat, c, room, text, len);
  } else if (strcmp(type, "join") == 0) {
    if (chat_room_arg(c, o, &room) != 0)
      return;
    if (wshub_in_room(c, room)) {
      /* Already a member: make it current again. */
      wshub_leave(c, room);
      wshub_join(c, room);
    } else if (chat_enter(chat, c, room) != 0) {
      return;
    }
    chat_joined(chat, c, room, 1);
  } else if (strcmp(type, "leave") == 0) {
    if (chat_room_arg(c, o, &room) != 0)
      return;
    if (!wshub_in_room(c, room)) {
      chat_error(c, "not_in_room", "You are not in that room");
      return;
    }
    chat_presence(chat, c, room, "leave", "left");
    char name[65];
    snprintf(name, sizeof(name), "%s", room);
    wshub_leave(c, name);
    char text[100];
    snprintf(text, sizeof(text), "You left %s", name);
    json_t *m = chat_msg("left", text);
    json_object_set_new(m, "room", json_string(name));
    chat_send(c, m);
    json_decref(m);
  } else if (strcmp(type, "nick") == 0) {
    const char *nick = chat_str(o, "name", &len);
    if (nick == NULL)
      nick = chat_str(o, "nick", &len);
    if (nick == NULL) {
      chat_error(c, "missing_field", "\"name\" (a string) is required");
      return;
    }
    if (!wshub_chat_nick_valid(nick, len)) {
      chat_error(c, "bad_nick",
                 "Nicknames are 1-32 characters, no control "
                 "characters, not all blank");
      return;
    }
    chat_set_nick(chat, c, nick, len);
  } else if (strcmp(type, "resume") == 0) {
    if (chat_room_arg(c, o, &room) != 0)
      return;
    const json_t *after = json_object_get(o, "after");
    if (!json_is_integer(after) || json_integer_value(after) < 0) {
      chat_error(c, "missing_field", "\"after\" (an integer >= 0) is required");
      return;
    }
    char name[65];
    snprintf(name, sizeof(name), "%s", room);
    if (!wshub_in_room(c, name)) {
      if (chat_enter(chat, c, name) != 0)
        return;
      chat_joined(chat, c, name, 0);
    }
    chat_resume(chat, c, name, (uint64_t)json_integer_value(after));
  } else {
    chat_error(c, "unknown_type", "Unknown message type");
  }
}

static void chat_on_message(wshub_client_t *c, const char *data, size_t len,
                            int binary, void *user) {
  wshub_chat_t *chat = user;
  if (binary) {
    chat_error(c, "binary_unsupported", "Binary messages are not supported");
    return;
  }
  size_t i = 0;
  while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' ||
                     data[i] == '\n'))
    i++;
  if (i == len || data[i] != '{') {
    chat_post(chat, c, chat_current_room(c), data, len); /* plain text */
    return;
  }
  json_error_t err;
  json_t *o =
      json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
  if (!json_is_object(o)) {
    char why[200];
    snprintf(why, sizeof(why), "Not a JSON object: %s", err.text);
    chat_error(c, "bad_json", why);
    json_decref(o);
    return;
  }
  chat_on_json(chat, c, o);
  json_decref(o);
}

static int chat_on_open(wshub_client_t *c, const wshub_request_t *req,
                        void *user) {
  wshub_chat_t *chat = user;
  chat_user_t *u = calloc(1, sizeof(*u));
  if (u == NULL)
    return 503;
  snprintf(u->nick, sizeof(u->nick), "guest-%s", wshub_client_id(c) + 1);
  wshub_client_set_data(c, u);

  char room[80], nick[CHAT_NICK_BYTES], after_s[24];
  int rl = wshub_chat_query_param(req->target, req->target_len, "room", room,
                                  sizeof(room));
  int bad_room = rl >= 0 && !wshub_chat_room_valid(room, (size_t)rl);
  if (rl < 0 || bad_room)
    snprintf(room, sizeof(room), "lobby");
  int nl = wshub_chat_query_param(req->target, req->target_len, "nick", nick,
                                  sizeof(nick));
  int bad_nick =
      nl == -1 && wshub_chat_query_param(req->target, req->target_len, "nick",
                                         after_s, 1) != -1;
  if (nl >= 0 && wshub_chat_nick_valid(nick, (size_t)nl))
    memcpy(u->nick, nick, (size_t)nl + 1);
  else if (nl >= 0)
    bad_nick = 1;
  int al = wshub_chat_query_param(req->target, req->target_len, "after",
                                  after_s, sizeof(after_s));
  char *end = NULL;
  unsigned long long after = al > 0 ? strtoull(after_s, &end, 10) : 0;
  int resume = al > 0 && end != NULL && *end == '\0' && after_s[0] != '-';

  if (chat_enter(chat, c, room) != 0)
    return 0;
  chat_room_t *r = chat_room(chat, room, 0);
  char text[300];
  snprintf(text, sizeof(text), "Connected to wshub as %s in %s", u->nick, room);
  json_t *o = chat_msg("welcome", text);
  json_object_set_new(o, "id", json_string(wshub_client_id(c)));
  json_object_set_new(o, "nick", json_string(u->nick));
  json_object_set_new(o, "room", json_string(room));
  json_object_set_new(o, "rooms", json_pack("[s]", room));
  chat_set_members(chat, o, wshub_client_server(c), room);
  json_object_set_new(
      o, "history",
      chat_history(chat, r, resume ? after : 0,
                   resume ? chat->cfg.history : CHAT_WELCOME_HISTORY, c));
  json_object_set_new(o, "last_id",
                      json_integer(r ? (json_int_t)r->last_id : 0));
  chat_send(c, o);
  json_decref(o);
  if (resume)
    chat_gap(chat, c, r, after);
  if (bad_room)
    chat_error(c, "bad_room",
               "Room names are 1-64 characters of A-Z a-z 0-9 . _ -");
  if (bad_nick)
    chat_error(c, "bad_nick",
               "Nicknames are 1-32 characters, no control "
               "characters, not all blank");
  return 0;
}

static void chat_on_close(wshub_client_t *c, int code, const char *reason,
                          void *user) {
  (void)code;
  (void)reason;
  wshub_chat_t *chat = user;
  for (size_t i = 0; i < wshub_client_room_count(c); i++)
    chat_presence(chat, c, wshub_client_room(c, i), "leave", "left");
  free(wshub_client_data(c));
  wshub_client_set_data(c, NULL);
}

void wshub_chat_install(wshub_chat_t *chat, wshub_config_t *cfg) {
  cfg->on_open = chat_on_open;
  cfg->on_message = chat_on_message;
  cfg->on_close = chat_on_close;
  cfg->user = chat;
}
