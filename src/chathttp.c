/* chathttp.c — the chat over plain HTTP (docs/PROTOCOL.md, "HTTP
 * transports"): sessions, Server-Sent Events (GET /events), long polling
 * and polling (GET /poll) and sending (POST /messages), on the same rooms,
 * ids and history ring as the WebSocket clients.
 *
 * A session is a chat user (chat_priv.h) with a token instead of a
 * WebSocket. It lives in the chat, under the chat's lock, on no particular
 * loop: its requests may arrive on any thread. What a session receives
 * goes to its *endpoints*, each a hub sink client (hub.h) on the loop of
 * the request it serves:
 *
 *  - an event stream of one room is a member of that room in its loop's
 *    hub, so room messages reach it through the same fan-out of shared
 *    frames as WebSocket members; what the chat sends to the session
 *    itself (its own messages, replies, direct messages) goes to its
 *    streams by id (chat.c, chat_deliver). The sink turns each frame's
 *    JSON into one `event:`/`id:`/`data:` event. The stream's chat_ep_t is
 *    freed when its connection goes (on_gone).
 *  - a held poll is in its room's `polls` list; the room's next message
 *    takes it off the list and is sent to it by id. The sink keeps the
 *    frame and answers on the next loop turn (never inside a delivery,
 *    which may hold the chat's lock: answering may parse the connection's
 *    next request). A poll's chat_ep_t is freed after its answer, its
 *    timeout or its connection's end.
 *
 * The chat_ep_t and its hub client belong to the endpoint's loop; the chat
 * knows them only by id.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat_priv.h"
#include "grow.h"
#include "http.h"
#include "hub.h"
#include "server.h"

#define CHATHTTP_HEARTBEAT_MS 15000
#define CHATHTTP_DEFAULT_WAIT_S 25
#define CHATHTTP_MAX_WAIT_S 30
#define CHATHTTP_MAX_BODY (64 * 1024)
#define CHATHTTP_TOKEN_LEN 32

typedef struct {
  wshub_chat_t *chat;
  wshub_http_t *http;     /* NULL once answered, ended or gone */
  wshub_client_t *client; /* the hub sink: its id is the endpoint's id */
  char user[24];          /* the session's user id */
  char token[CHATHTTP_TOKEN_LEN + 1];
  char room[CHAT_ROOM_BYTES];
  int poll;
  /* polls only */
  uint64_t after;
  wshub_buf_t *frame; /* the message that woke it */
  uv_timer_t wake;    /* answers a loop turn after the wake-up */
} chat_ep_t;

enum { CHATHTTP_EVENTS = 1, CHATHTTP_POLL, CHATHTTP_MESSAGES };

/* ---- the frames' JSON ---- */

/* The payload of a server frame (frame.c: unmasked, one frame). */
static const char *chathttp_payload(const wshub_buf_t *f, size_t *len) {
  unsigned b1 = (unsigned char)f->data[1] & 0x7f;
  size_t off = b1 < 126 ? 2 : b1 == 126 ? 4 : 10;
  *len = f->len - off;
  return f->data + off;
}

/* The chat's objects all start with "type" (chat.c builds them so); a
 * room message's second field is its "id". 0 if p is not one of them. */
static int chathttp_meta(const char *p, size_t n, char *type, size_t cap,
                         uint64_t *id) {
  static const char pre[] = "{\"type\":\"";
  static const char idk[] = ",\"id\":";
  size_t i = sizeof(pre) - 1, t = 0;
  if (n < i || memcmp(p, pre, i) != 0)
    return 0;
  while (i < n && p[i] != '"' && t + 1 < cap)
    type[t++] = p[i++];
  if (i >= n || p[i] != '"')
    return 0;
  type[t] = '\0';
  i++;
  *id = 0;
  if (strcmp(type, "message") == 0 && n - i > sizeof(idk) - 1 &&
      memcmp(p + i, idk, sizeof(idk) - 1) == 0) {
    for (i += sizeof(idk) - 1; i < n && p[i] >= '0' && p[i] <= '9'; i++)
      *id = *id * 10 + (uint64_t)(p[i] - '0');
  }
  return 1;
}

/* ---- requests ---- */

static int chathttp_route(const wshub_request_t *req) {
  size_t n = 0;
  while (n < req->target_len && req->target[n] != '?')
    n++;
  if (n == 7 && memcmp(req->target, "/events", 7) == 0)
    return CHATHTTP_EVENTS;
  if (n == 5 && memcmp(req->target, "/poll", 5) == 0)
    return CHATHTTP_POLL;
  if (n == 9 && memcmp(req->target, "/messages", 9) == 0)
    return CHATHTTP_MESSAGES;
  return 0;
}

static int chathttp_token_ok(const char *t, size_t n) {
  if (n != CHATHTTP_TOKEN_LEN)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
      return 0;
  return 1;
}

/* The token the request presents (header, query, cookie), or "". */
static void chathttp_token(const wshub_request_t *req,
                           char out[CHATHTTP_TOKEN_LEN + 1]) {
  out[0] = '\0';
  size_t n;
  const char *v = wshub_request_header(req, "x-wshub-session", &n);
  if (v != NULL && chathttp_token_ok(v, n)) {
    memcpy(out, v, n);
    out[n] = '\0';
    return;
  }
  char q[CHATHTTP_TOKEN_LEN + 2];
  int ql = wshub_chat_query_param(req->target, req->target_len, "session", q,
                                  sizeof(q));
  if (ql > 0 && chathttp_token_ok(q, (size_t)ql)) {
    memcpy(out, q, (size_t)ql + 1);
    return;
  }
  v = wshub_request_header(req, "cookie", &n);
  static const char name[] = "wshub_session=";
  for (size_t i = 0; v != NULL && i + sizeof(name) - 1 <= n; i++) {
    if ((i == 0 || v[i - 1] == ' ' || v[i - 1] == ';') &&
        memcmp(v + i, name, sizeof(name) - 1) == 0) {
      const char *t = v + i + sizeof(name) - 1;
      size_t tl = 0;
      while (t + tl < v + n && t[tl] != ';' && t[tl] != ' ')
        tl++;
      if (chathttp_token_ok(t, tl)) {
        memcpy(out, t, tl);
        out[tl] = '\0';
      }
      return;
    }
  }
}

/* The headers every answer carries: the session, no caching. */
static void chathttp_headers(char *out, size_t cap, const char *token,
                             const char *extra) {
  snprintf(out, cap,
           "Set-Cookie: wshub_session=%s; Path=/; HttpOnly; SameSite=Lax\r\n"
           "X-Wshub-Session: %s\r\nCache-Control: no-store\r\n%s",
           token, token, extra ? extra : "");
}

/* A JSON answer (o is consumed); h answered now or, if held, later. */
static void chathttp_send(wshub_http_t *h, int held, int status, json_t *o,
                          const char *token, const char *extra) {
  char hdrs[512];
  chathttp_headers(hdrs, sizeof(hdrs), token, extra);
  size_t len = 0;
  char *body = chat_dump(o, JSON_COMPACT, &len);
  json_decref(o);
  const char *type = body ? "application/json" : NULL;
  if (body == NULL && status != 204) {
    status = 503;
    hdrs[0] = '\0';
  }
  if (held)
    wshub_http_held_respond(h, status, type, hdrs, body, len);
  else
    wshub_respond(h, status, type, hdrs, body, len);
  free(body);
}

static json_t *chathttp_error_obj(const char *code, const char *text) {
  json_t *o = chat_msg("error", text);
  json_object_set_new(o, "code", json_string(code));
  return o;
}

/* A request refused before its session was looked at (bad input): the
 * session it presents, if the chat knows it, is named in the answer as in
 * every other; no session is started for it. */
static void chathttp_refuse(wshub_chat_t *chat, wshub_http_t *h, int status,
                            const char *code, const char *text,
                            const char *extra) {
  char token[CHATHTTP_TOKEN_LEN + 1];
  chathttp_token(wshub_http_request(h), token);
  if (token[0]) {
    uv_mutex_lock(&chat->lock);
    if (wshub_map_get(&chat->sessions, token) == NULL)
      token[0] = '\0';
    uv_mutex_unlock(&chat->lock);
  }
  if (token[0]) {
    chathttp_send(h, 0, status, chathttp_error_obj(code, text), token, extra);
    return;
  }
  json_t *o = chathttp_error_obj(code, text);
  size_t len = 0;
  char *body = chat_dump(o, JSON_COMPACT, &len);
  json_decref(o);
  wshub_respond(h, body ? status : 503, body ? "application/json" : NULL, extra,
                body, len);
  free(body);
}

/* A whole number from a query value or header; 0 if not one. */
static int chathttp_number(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 18)
    return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return 1;
}

/* The query's `key` as a whole number: 1 and *out, -1 if absent, 0 if it
 * is not one. */
static int chathttp_query_number(const wshub_request_t *req, const char *key,
                                 uint64_t *out) {
  char v[24];
  int n =
      wshub_chat_query_param(req->target, req->target_len, key, v, sizeof(v));
  if (n == -1)
    return -1;
  return chathttp_number(v, n > 0 ? (size_t)n : 0, out);
}

/* ---- sessions (the lock is held) ---- */

typedef struct {
  uint64_t now, timeout;
  chat_user_t **gone;
  size_t n, cap;
} chathttp_sweep_t;

static void chathttp_sweep_one(const char *key, void *value, void *arg) {
  (void)key;
  chathttp_sweep_t *w = arg;
  chat_user_t *u = value;
  if (u->nholds == 0 && w->now - u->idle_since > w->timeout &&
      wshub_grow(&w->gone, &w->cap, w->n, sizeof(*w->gone), 8) == 0)
    w->gone[w->n++] = u;
}

void chat_http_sweep(chat_ctx_t *x) {
  wshub_chat_t *chat = x->chat;
  uint64_t now = uv_hrtime();
  if (chat->sessions.count == 0 || now - chat->swept < 1000000000u)
    return;
  chat->swept = now;
  chathttp_sweep_t w = {now, chat->cfg.session_timeout_ms * 1000000u, NULL, 0,
                        0};
  wshub_map_foreach(&chat->sessions, chathttp_sweep_one, &w);
  for (size_t i = 0; i < w.n; i++) {
    chat_ctx_t y = {chat, x->server, NULL, w.gone[i], NULL, 0};
    wshub_log(x->server, WSHUB_LOG_DEBUG, "session %s (%s) ended: idle",
              w.gone[i]->id, w.gone[i]->nick);
    chat_user_gone(&y);
  }
  free(w.gone);
}

/* The request's session, or a new one (joining `room`, with the query's
 * nick; *fresh set). NULL if out of memory. */
static chat_user_t *chathttp_session(wshub_chat_t *chat, wshub_server_t *s,
                                     const wshub_request_t *req,
                                     const char *room, int *fresh) {
  char token[CHATHTTP_TOKEN_LEN + 1];
  chathttp_token(req, token);
  chat_user_t *u = token[0] ? wshub_map_get(&chat->sessions, token) : NULL;
  *fresh = u == NULL;
  if (u != NULL)
    return u;
  unsigned char raw[CHATHTTP_TOKEN_LEN / 2];
  if (RAND_bytes(raw, sizeof(raw)) != 1)
    return NULL;
  for (size_t i = 0; i < sizeof(raw); i++)
    snprintf(token + 2 * i, 3, "%02x", raw[i]);
  char id[24], nick[CHAT_NICK_BYTES];
  wshub_hub_new_id(s, id);
  int nl = wshub_chat_query_param(req->target, req->target_len, "nick", nick,
                                  sizeof(nick));
  int good = nl >= 0 && wshub_chat_nick_valid(nick, (size_t)nl);
  u = chat_user_new(chat, id, good ? nick : NULL);
  if (u == NULL)
    return NULL;
  u->token = strdup(token);
  u->idle_since = uv_hrtime();
  if (u->token == NULL || wshub_map_put(&chat->users, u->id, u) != 0) {
    chat_user_free(NULL, u, NULL);
    return NULL;
  }
  if (wshub_map_put(&chat->sessions, u->token, u) != 0) {
    wshub_map_del(&chat->users, u->id);
    chat_user_free(NULL, u, NULL);
    return NULL;
  }
  chat_ctx_t x = {chat, s, NULL, u, NULL, 0};
  chat_enter(&x, room); /* its errors have nowhere to go; rooms are valid */
  wshub_log(s, WSHUB_LOG_DEBUG, "%s: session %s (%s) started", req->remote,
            u->id, u->nick);
  return u;
}

/* A request finished: the session's idle time starts again. */
static void chathttp_touch(chat_user_t *u) {
  if (u->nholds == 0)
    u->idle_since = uv_hrtime();
}

/* The room of the query (default lobby) into room; 0 after answering 400
 * bad_room if it is not valid. */
static int chathttp_room_arg(wshub_chat_t *chat, wshub_http_t *h,
                             const wshub_request_t *req,
                             char room[CHAT_ROOM_BYTES]) {
  int n = wshub_chat_query_param(req->target, req->target_len, "room", room,
                                 CHAT_ROOM_BYTES);
  if (n == -1) {
    snprintf(room, CHAT_ROOM_BYTES, "lobby");
    return 1; /* absent */
  }
  if (n > 0 && wshub_chat_room_valid(room, (size_t)n))
    return 1;
  chathttp_refuse(chat, h, 400, "bad_room",
                  "Room names are 1-64 characters of A-Z a-z 0-9 . _ -", NULL);
  return 0;
}

/* Takes the lock, sweeps, finds or starts the request's session and makes
 * it a member of `room`. Returns the room, x set up for the session with
 * errors going to cap; NULL on failure (x->user NULL if there is no
 * session). The lock stays held either way. */
static chat_room_t *chathttp_begin(wshub_chat_t *chat, wshub_server_t *s,
                                   const wshub_request_t *req, const char *room,
                                   chat_capture_t *cap, chat_ctx_t *x,
                                   int *fresh) {
  uv_mutex_lock(&chat->lock);
  *x = (chat_ctx_t){chat, s, NULL, NULL, NULL, 0};
  chat_http_sweep(x);
  x->user = chathttp_session(chat, s, req, room, fresh);
  x->cap = cap;
  return x->user != NULL ? chat_enter(x, room) : NULL;
}

/* chathttp_begin failed (or what followed it): release the lock and say
 * why — a chat error (too_many_rooms) or out of memory. */
static void chathttp_begin_failed(wshub_chat_t *chat, wshub_http_t *h,
                                  chat_user_t *u, const chat_capture_t *cap) {
  char token[CHATHTTP_TOKEN_LEN + 1] = "";
  if (u != NULL) {
    snprintf(token, sizeof(token), "%s", u->token);
    chathttp_touch(u);
  }
  uv_mutex_unlock(&chat->lock);
  int oom = cap->code == NULL || strcmp(cap->code, "internal") == 0;
  if (token[0] == '\0')
    chathttp_refuse(chat, h, 503, "internal", "Out of memory", NULL);
  else
    chathttp_send(h, 0, oom ? 503 : 400,
                  chathttp_error_obj(oom ? "internal" : cap->code,
                                     oom ? "Out of memory" : cap->text),
                  token, NULL);
}

/* ---- GET /events ---- */

/* The frame as one `id:`/`event:`/`data:` event, made by the first stream
 * that gets it and kept as the frame's alternative (buf.h) for every other
 * one, as WebSocket members share the frame. NULL if out of memory, or an
 * empty buffer if the frame is not a chat object (nothing to send). */
static wshub_buf_t *chathttp_sse_event(wshub_buf_t *frame) {
  wshub_buf_t *ev = wshub_buf_alt(frame, WSHUB_ALT_SSE);
  if (ev != NULL)
    return ev;
  size_t len;
  const char *p = chathttp_payload(frame, &len);
  char type[32], head[96];
  uint64_t id;
  if (!chathttp_meta(p, len, type, sizeof(type), &id)) {
    len = 0; /* remembered as nothing to send */
  }
  int hl = len == 0 ? 0
           : id ? snprintf(head, sizeof(head), "id: %llu\nevent: %s\ndata: ",
                           (unsigned long long)id, type)
                : snprintf(head, sizeof(head), "event: %s\ndata: ", type);
  /* Compact JSON has no raw line breaks: one data line. */
  ev = wshub_buf_new(len == 0 ? 0 : (size_t)hl + len + 2);
  if (ev == NULL)
    return NULL;
  ev->tag = WSHUB_ALT_SSE;
  if (len > 0) {
    memcpy(ev->data, head, (size_t)hl);
    memcpy(ev->data + hl, p, len);
    memcpy(ev->data + (size_t)hl + len, "\n\n", 2);
    ev->len = (size_t)hl + len + 2;
  }
  return wshub_buf_add_alt(frame, ev);
}

static void chathttp_sse_sink(wshub_client_t *c, wshub_buf_t *frame,
                              void *arg) {
  (void)c;
  chat_ep_t *ep = arg;
  if (ep->http == NULL)
    return;
  wshub_buf_t *ev = chathttp_sse_event(frame);
  if (ev != NULL && ev->len == 0)
    return; /* not an event */
  int r =
      ev != NULL ? wshub_http_stream_send(ep->http, ev, 0, ev->len) : UV_ENOMEM;
  /* Out of memory: the stream would miss this event; it ends instead (at
   * the end of the loop turn: on_gone takes the chat's lock, which this
   * delivery may hold), and the client resumes with Last-Event-ID. */
  if (r == UV_ENOMEM)
    wshub_conn_close_later(wshub_http_conn(ep->http));
}

/* The stream's connection went: forget the endpoint. */
static void chathttp_sse_gone(wshub_http_t *h, void *arg) {
  (void)h;
  chat_ep_t *ep = arg;
  wshub_chat_t *chat = ep->chat;
  ep->http = NULL;
  uv_mutex_lock(&chat->lock);
  chat_user_t *u = wshub_map_get(&chat->users, ep->user);
  if (u != NULL) {
    for (size_t i = 0; i < u->nstreams; i++)
      if (strcmp(u->streams[i].id, ep->client->id) == 0) {
        u->streams[i] = u->streams[--u->nstreams];
        break;
      }
    if (u->nholds > 0 && --u->nholds == 0)
      u->idle_since = uv_hrtime();
  }
  uv_mutex_unlock(&chat->lock);
  wshub_hub_client_free(ep->client);
  free(ep);
}

static const wshub_http_hold_cb_t chathttp_sse_cb = {chathttp_sse_gone, NULL};

static void chathttp_events(wshub_chat_t *chat, wshub_http_t *h,
                            const wshub_request_t *req) {
  wshub_server_t *s = wshub_http_conn(h)->server;
  char room[CHAT_ROOM_BYTES];
  if (!chathttp_room_arg(chat, h, req, room))
    return;
  uint64_t after = 0;
  size_t n;
  const char *last = wshub_request_header(req, "last-event-id", &n);
  int resume = last != NULL ? chathttp_number(last, n, &after)
                            : chathttp_query_number(req, "after", &after);
  if (resume == 0) {
    chathttp_refuse(chat, h, 400, "bad_after",
                    "\"after\" must be a message id (a whole number)", NULL);
    return;
  }
  chat_ep_t *ep = calloc(1, sizeof(*ep));
  if (ep == NULL) {
    chathttp_refuse(chat, h, 503, "internal", "Out of memory", NULL);
    return;
  }
  chat_capture_t cap = {0};
  chat_ctx_t x;
  int fresh;
  chat_room_t *r = chathttp_begin(chat, s, req, room, &cap, &x, &fresh);
  chat_user_t *u = x.user;
  if (r != NULL)
    ep->client =
        wshub_hub_sink_new(s, chathttp_sse_sink, ep, u->number, req->remote);
  if (ep->client != NULL &&
      wshub_grow(&u->streams, &u->streams_cap, u->nstreams, sizeof(*u->streams),
                 2) != 0) {
    wshub_hub_client_free(ep->client);
    ep->client = NULL;
  }
  if (ep->client == NULL) {
    free(ep);
    chathttp_begin_failed(chat, h, u, &cap);
    return;
  }
  ep->chat = chat;
  ep->http = h;
  snprintf(ep->user, sizeof(ep->user), "%s", u->id);
  snprintf(ep->token, sizeof(ep->token), "%s", u->token);
  snprintf(ep->room, sizeof(ep->room), "%s", room);
  chat_stream_ref_t *ref = &u->streams[u->nstreams++];
  snprintf(ref->id, sizeof(ref->id), "%s", ep->client->id);
  snprintf(ref->room, sizeof(ref->room), "%s", room);
  u->nholds++;
  char hdrs[512];
  chathttp_headers(hdrs, sizeof(hdrs), u->token, "X-Accel-Buffering: no\r\n");
  wshub_http_hold(h, &chathttp_sse_cb, ep, 0);
  /* Member from now on; the welcome's history covers what came before. */
  if (wshub_http_stream_start(h, 200, "text/event-stream; charset=utf-8", hdrs,
                              CHATHTTP_HEARTBEAT_MS) == 0 &&
      chat_hub_join(&x, r, ep->client->id) == 0)
    chat_welcome(&x, r, resume > 0, after, ep->client->id);
  else
    x.failed = 1;
  uv_mutex_unlock(&chat->lock);
  /* Out of memory: the stream ends (on_gone forgets it) before the client
   * could miss anything; it will reconnect. */
  if (x.failed)
    wshub_conn_close_later(wshub_http_conn(h));
}

/* ---- GET /poll ---- */

static void chathttp_poll_free(uv_handle_t *t) {
  chat_ep_t *ep = t->data;
  wshub_buf_unref(ep->frame);
  free(ep);
}

/* Done: the hub client goes now, the rest when the timer has closed. */
static void chathttp_poll_done(chat_ep_t *ep) {
  ep->http = NULL;
  wshub_hub_client_free(ep->client);
  ep->client = NULL;
  uv_close((uv_handle_t *)&ep->wake, chathttp_poll_free);
}

/* Takes a poll that was not woken off its room's list. */
static void chathttp_poll_unlist(chat_ep_t *ep) {
  wshub_chat_t *chat = ep->chat;
  uv_mutex_lock(&chat->lock);
  chat_room_t *r = chat_room(chat, ep->room, 0);
  for (size_t i = 0; r != NULL && i < r->npolls; i++)
    if (strcmp(r->polls[i].id, ep->client->id) == 0) {
      chat_user_t *u = r->polls[i].user;
      r->polls[i] = r->polls[--r->npolls];
      if (--u->nholds == 0)
        u->idle_since = uv_hrtime();
      break;
    }
  uv_mutex_unlock(&chat->lock);
}

/* The poll's answer: {"type":"poll","room":…,"messages":[…],"last_id":…}
 * around a history array. */
static json_t *chathttp_poll_obj(const char *room, uint64_t last_id) {
  return json_pack("{s:s, s:s, s:I}", "type", "poll", "room", room, "last_id",
                   (json_int_t)last_id);
}

/* Sends the poll answer with `messages` spliced in (held or not). */
static void chathttp_poll_answer(wshub_http_t *h, int held, const char *room,
                                 uint64_t last_id, const wshub_jbuf_t *msgs,
                                 const char *token) {
  json_t *o = chathttp_poll_obj(room, last_id);
  size_t hl = 0;
  char *head = chat_dump(o, JSON_COMPACT, &hl);
  json_decref(o);
  wshub_jbuf_t b;
  wshub_jbuf_init(&b, 0);
  if (head != NULL) {
    wshub_jbuf_raw(&b, head, hl - 1); /* without its "}" */
    wshub_jbuf_lit(&b, ",\"messages\":");
    wshub_jbuf_raw(&b, msgs->data, msgs->len);
    wshub_jbuf_lit(&b, "}");
  }
  free(head);
  char hdrs[512];
  chathttp_headers(hdrs, sizeof(hdrs), token, NULL);
  int ok = head != NULL && !b.failed && !msgs->failed;
  if (held)
    wshub_http_held_respond(h, ok ? 200 : 503, "application/json", hdrs,
                            ok ? b.data : NULL, ok ? b.len : 0);
  else
    wshub_respond(h, ok ? 200 : 503, "application/json", hdrs,
                  ok ? b.data : NULL, ok ? b.len : 0);
  wshub_jbuf_free(&b);
}

/* A loop turn after the wake-up: answer with the message. */
static void chathttp_poll_wake(uv_timer_t *t) {
  chat_ep_t *ep = t->data;
  if (ep->http == NULL)
    return;
  size_t len;
  const char *p = chathttp_payload(ep->frame, &len);
  char type[32];
  uint64_t id;
  chathttp_meta(p, len, type, sizeof(type), &id);
  wshub_jbuf_t msgs;
  wshub_jbuf_init(&msgs, len + 2);
  wshub_jbuf_lit(&msgs, "[");
  wshub_jbuf_raw(&msgs, p, len);
  wshub_jbuf_lit(&msgs, "]");
  wshub_http_t *h = ep->http;
  char token[CHATHTTP_TOKEN_LEN + 1], room[CHAT_ROOM_BYTES];
  memcpy(token, ep->token, sizeof(token));
  memcpy(room, ep->room, sizeof(room));
  chathttp_poll_done(ep);
  chathttp_poll_answer(h, 1, room, id, &msgs, token);
  wshub_jbuf_free(&msgs);
}

static void chathttp_poll_sink(wshub_client_t *c, wshub_buf_t *frame,
                               void *arg) {
  (void)c;
  chat_ep_t *ep = arg;
  size_t len;
  const char *p = chathttp_payload(frame, &len);
  char type[32];
  uint64_t id;
  if (ep->http == NULL || ep->frame != NULL ||
      !chathttp_meta(p, len, type, sizeof(type), &id) ||
      strcmp(type, "message") != 0 || id <= ep->after)
    return;
  ep->frame = wshub_buf_ref(frame);
  uv_timer_start(&ep->wake, chathttp_poll_wake, 0, 0);
}

static void chathttp_poll_gone(wshub_http_t *h, void *arg) {
  (void)h;
  chat_ep_t *ep = arg;
  if (ep->frame == NULL)
    chathttp_poll_unlist(ep);
  chathttp_poll_done(ep);
}

/* `wait` passed: 204 (unless a message woke it meanwhile). */
static void chathttp_poll_timeout(wshub_http_t *h, void *arg) {
  chat_ep_t *ep = arg;
  if (ep->frame != NULL)
    return; /* the wake-up answers */
  chathttp_poll_unlist(ep);
  char hdrs[512];
  chathttp_headers(hdrs, sizeof(hdrs), ep->token, NULL);
  chathttp_poll_done(ep);
  wshub_http_held_respond(h, 204, NULL, hdrs, NULL, 0);
}

static const wshub_http_hold_cb_t chathttp_poll_cb = {chathttp_poll_gone,
                                                      chathttp_poll_timeout};

static void chathttp_poll(wshub_chat_t *chat, wshub_http_t *h,
                          const wshub_request_t *req) {
  wshub_server_t *s = wshub_http_conn(h)->server;
  char room[CHAT_ROOM_BYTES];
  if (!chathttp_room_arg(chat, h, req, room))
    return;
  uint64_t after = 0, wait = CHATHTTP_DEFAULT_WAIT_S;
  int has_after = chathttp_query_number(req, "after", &after);
  if (has_after == 0) {
    chathttp_refuse(chat, h, 400, "bad_after",
                    "\"after\" must be a message id (a whole number)", NULL);
    return;
  }
  int has_wait = chathttp_query_number(req, "wait", &wait);
  if (has_wait == 0 || wait > CHATHTTP_MAX_WAIT_S) {
    chathttp_refuse(chat, h, 400, "bad_wait",
                    "\"wait\" must be a whole number of seconds, 0 to 30",
                    NULL);
    return;
  }
  chat_capture_t cap = {0};
  chat_ctx_t x;
  int fresh;
  chat_room_t *r = chathttp_begin(chat, s, req, room, &cap, &x, &fresh);
  chat_user_t *u = x.user;
  if (r == NULL) {
    chathttp_begin_failed(chat, h, u, &cap);
    return;
  }
  char token[CHATHTTP_TOKEN_LEN + 1];
  snprintf(token, sizeof(token), "%s", u->token);
  /* A new session, or an `after` this room never reached (a client from
   * before a restart), gets the recent messages at once: holding it would
   * keep it from learning its token (and the ids) for the whole wait. */
  int recent = has_after < 0 || fresh || after > r->last_id;
  if (recent || r->last_id > after) {
    /* Messages are there (or the client asks for the recent ones). */
    wshub_jbuf_t msgs;
    wshub_jbuf_init(&msgs, 0);
    chat_history(chat, r, recent ? 0 : after, recent ? 50 : chat->cfg.history,
                 u->id, &msgs);
    uint64_t last_id = r->last_id;
    chathttp_touch(u);
    uv_mutex_unlock(&chat->lock);
    chathttp_poll_answer(h, 0, room, last_id, &msgs, token);
    wshub_jbuf_free(&msgs);
    return;
  }
  chat_ep_t *ep = wait > 0 ? calloc(1, sizeof(*ep)) : NULL;
  if (ep != NULL) {
    ep->client =
        wshub_hub_sink_new(s, chathttp_poll_sink, ep, u->number, req->remote);
    if (ep->client != NULL && wshub_grow(&r->polls, &r->polls_cap, r->npolls,
                                         sizeof(*r->polls), 4) != 0) {
      wshub_hub_client_free(ep->client);
      ep->client = NULL;
    }
    if (ep->client == NULL) {
      free(ep);
      ep = NULL;
    }
  }
  if (ep == NULL) { /* wait=0, or no memory to wait with */
    chathttp_touch(u);
    uv_mutex_unlock(&chat->lock);
    char hdrs[512];
    chathttp_headers(hdrs, sizeof(hdrs), token, NULL);
    wshub_respond(h, wait > 0 ? 503 : 204, NULL, hdrs, NULL, 0);
    return;
  }
  ep->chat = chat;
  ep->http = h;
  ep->poll = 1;
  ep->after = after;
  snprintf(ep->user, sizeof(ep->user), "%s", u->id);
  memcpy(ep->token, token, sizeof(token));
  snprintf(ep->room, sizeof(ep->room), "%s", room);
  uv_timer_init(s->loop, &ep->wake);
  ep->wake.data = ep;
  chat_poll_ref_t *ref = &r->polls[r->npolls++];
  snprintf(ref->id, sizeof(ref->id), "%s", ep->client->id);
  ref->owner = u->number;
  ref->user = u;
  u->nholds++;
  wshub_http_hold(h, &chathttp_poll_cb, ep, wait * 1000);
  uv_mutex_unlock(&chat->lock);
}

/* ---- POST /messages ---- */

static int chathttp_is_json(const wshub_request_t *req) {
  size_t n;
  const char *v = wshub_request_header(req, "content-type", &n);
  static const char want[] = "application/json";
  return v != NULL && n >= sizeof(want) - 1 &&
         strncasecmp(v, want, sizeof(want) - 1) == 0 &&
         (n == sizeof(want) - 1 || v[sizeof(want) - 1] == ';' ||
          v[sizeof(want) - 1] == ' ');
}

static void chathttp_messages(wshub_chat_t *chat, wshub_http_t *h,
                              const wshub_request_t *req) {
  wshub_server_t *s = wshub_http_conn(h)->server;
  if (req->body_len > CHATHTTP_MAX_BODY) {
    chathttp_refuse(chat, h, 413, "body_too_large",
                    "The body is larger than 64 KiB", NULL);
    return;
  }
  if (!chathttp_is_json(req) || req->body_len == 0) {
    chathttp_refuse(chat, h, 400, "bad_body",
                    "The body must be one JSON object "
                    "(Content-Type: application/json)",
                    NULL);
    return;
  }
  char room[CHAT_ROOM_BYTES]; /* a new session's first room */
  if (!chathttp_room_arg(chat, h, req, room))
    return;
  json_error_t err;
  memset(&err, 0, sizeof(err)); /* some failures leave it untouched */
  json_t *o = json_loadb(req->body, req->body_len,
                         JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
  if (o == NULL && (json_error_code(&err) == json_error_out_of_memory ||
                    err.text[0] == '\0')) {
    chathttp_refuse(chat, h, 503, "internal", "Out of memory", NULL);
    return;
  }
  if (!json_is_object(o)) {
    char why[200];
    snprintf(why, sizeof(why), "Not a JSON object: %s",
             o ? "not an object" : err.text);
    json_decref(o);
    chathttp_refuse(chat, h, 400, "bad_json", why, NULL);
    return;
  }
  uv_mutex_lock(&chat->lock);
  chat_capture_t cap = {0};
  chat_ctx_t x = {chat, s, NULL, NULL, NULL, 0};
  chat_http_sweep(&x);
  int fresh;
  chat_user_t *u = x.user = chathttp_session(chat, s, req, room, &fresh);
  x.cap = &cap;
  if (u == NULL) {
    uv_mutex_unlock(&chat->lock);
    json_decref(o);
    chathttp_refuse(chat, h, 503, "internal", "Out of memory", NULL);
    return;
  }
  int ok = chat_rate_ok(&x);
  if (ok)
    chat_on_json(&x, o);
  json_decref(o);
  char token[CHATHTTP_TOKEN_LEN + 1];
  snprintf(token, sizeof(token), "%s", u->token);
  chathttp_touch(u);
  uv_mutex_unlock(&chat->lock);
  if (!ok) {
    char why[96];
    snprintf(why, sizeof(why), "Too many messages: at most %g per second",
             chat->cfg.rate);
    chathttp_send(h, 0, 429, chathttp_error_obj("rate_limited", why), token,
                  "Retry-After: 1\r\n");
  } else if (x.failed) { /* out of memory: the chat is as it was */
    chathttp_send(h, 0, 503, chathttp_error_obj("internal", "Out of memory"),
                  token, NULL);
  } else if (cap.code != NULL) {
    int status = strcmp(cap.code, "internal") == 0 ? 503 : 400;
    chathttp_send(h, 0, status, chathttp_error_obj(cap.code, cap.text), token,
                  NULL);
  } else {
    json_t *a = json_pack("{s:s}", "type", "accepted");
    if (a != NULL && cap.id > 0)
      json_object_set_new(a, "id", json_integer((json_int_t)cap.id));
    chathttp_send(h, 0, 202, a, token, NULL);
  }
}

/* ---- the route ---- */

static int chathttp_on_request(wshub_response_t *res,
                               const wshub_request_t *req, void *user) {
  wshub_chat_t *chat = user;
  int which = chathttp_route(req);
  if (which == 0)
    return chat->next_request ? chat->next_request(res, req, chat->next_user)
                              : 0;
  int want = which == CHATHTTP_MESSAGES ? 3 /* POST */ : 1 /* GET */;
  if (req->method != want) {
    chathttp_refuse(chat, res, 405, "bad_method",
                    want == 3 ? "Use POST" : "Use GET",
                    want == 3 ? "Allow: POST\r\n" : "Allow: GET\r\n");
    return 1;
  }
  if (which == CHATHTTP_EVENTS)
    chathttp_events(chat, res, req);
  else if (which == CHATHTTP_POLL)
    chathttp_poll(chat, res, req);
  else
    chathttp_messages(chat, res, req);
  return 1;
}

void chat_http_install(wshub_chat_t *chat, wshub_config_t *cfg) {
  if (cfg->on_request != chathttp_on_request) {
    chat->next_request = cfg->on_request;
    chat->next_user = cfg->user;
  }
  cfg->on_request = chathttp_on_request;
}
