/* cluster.c — the Redis link of a wshub node (see cluster.h).
 *
 * State: two hiredis async contexts (`cmd`, `sub`), each NULL while it is
 * not connected; a backoff timer that reconnects whatever is missing; the
 * set of subscribed rooms (a map, the truth, replayed after reconnecting);
 * the SHA-1 of the publish script once SCRIPT LOAD has answered. The link
 * is "up" when both contexts are connected, the script is loaded and the
 * SUBSCRIBE for every room has been sent (Redis answers commands on one
 * connection in order, so what comes later on the channel is covered).
 *
 * hiredis frees a context itself after its disconnect callback, and calls
 * every pending reply callback with a NULL reply first; a context is
 * therefore only ever dropped from here (redisAsyncDisconnect) or by
 * hiredis, and forgotten in the disconnect callback.
 *
 * The event glue is ours, not hiredis 0.14's libuv adapter: that one drops
 * a poll error on the floor, so a refused reconnection (libuv reports it as
 * an error) never reaches hiredis and the link hangs in "connecting"
 * forever. Here an error is handed to hiredis as the event it waited for,
 * and a connection that has not come up within CLUSTER_CONNECT_TIMEOUT_MS is
 * dropped and retried.
 */
#include "cluster.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

#define CLUSTER_BACKOFF_MIN_MS 100
#define CLUSTER_BACKOFF_MAX_MS 5000
#define CLUSTER_CONNECT_TIMEOUT_MS 3000
#define CLUSTER_PREFIX "wshub:room:"
#define CLUSTER_NODE_PREFIX "wshub:node:"
#define CLUSTER_NODE_TTL_MS 15000
#define CLUSTER_BEAT_MS 5000

/* KEYS: seq, log, channel. ARGV: payload, floor, history. */
static const char cluster_script[] =
    "local id = redis.call('INCR', KEYS[1])\n"
    "local floor = tonumber(ARGV[2])\n"
    "if id <= floor then\n"
    "  id = floor + 1\n"
    "  redis.call('SET', KEYS[1], id)\n"
    "end\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], id .. '-0', 'm', "
    "ARGV[1])\n"
    "redis.call('PUBLISH', KEYS[3], id .. ' ' .. ARGV[1])\n"
    "return id\n";

/* The room's key or channel name: "wshub:room:R" + suffix. */
static int cluster_key(char out[320], const char *room, const char *suffix) {
  int n = snprintf(out, 320, CLUSTER_PREFIX "%s%s", room, suffix);
  return n > 0 && n < 320 ? 0 : UV_EINVAL;
}

/* The glue between one hiredis context and the loop. */
typedef struct {
  redisAsyncContext *ac; /* NULL once hiredis let go of it */
  uv_poll_t poll;
  int events;
} cluster_io_t;

static void cluster_io_on_poll(uv_poll_t *h, int status, int events) {
  cluster_io_t *io = h->data;
  if (status < 0) /* an error: let hiredis find it where it is waiting */
    events = io->events;
  if (io->ac != NULL && (events & UV_READABLE))
    redisAsyncHandleRead(io->ac);
  if (io->ac != NULL && (events & UV_WRITABLE))
    redisAsyncHandleWrite(io->ac);
}

static void cluster_io_update(cluster_io_t *io, int add, int del) {
  io->events = (io->events | add) & ~del;
  if (io->events)
    uv_poll_start(&io->poll, io->events, cluster_io_on_poll);
  else
    uv_poll_stop(&io->poll);
}

static void cluster_io_add_read(void *p) {
  cluster_io_update(p, UV_READABLE, 0);
}
static void cluster_io_del_read(void *p) {
  cluster_io_update(p, 0, UV_READABLE);
}
static void cluster_io_add_write(void *p) {
  cluster_io_update(p, UV_WRITABLE, 0);
}
static void cluster_io_del_write(void *p) {
  cluster_io_update(p, 0, UV_WRITABLE);
}

static void cluster_io_on_close(uv_handle_t *h) {
  free(h->data);
}

/* hiredis is done with the context (it frees it right after). */
static void cluster_io_cleanup(void *p) {
  cluster_io_t *io = p;
  io->ac = NULL;
  uv_close((uv_handle_t *)&io->poll, cluster_io_on_close);
}

static int cluster_io_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  cluster_io_t *io = calloc(1, sizeof(*io));
  if (io == NULL)
    return -1;
  if (uv_poll_init_socket(loop, &io->poll, ac->c.fd) != 0) {
    free(io);
    return -1;
  }
  io->ac = ac;
  io->poll.data = io;
  ac->ev.data = io;
  ac->ev.addRead = cluster_io_add_read;
  ac->ev.delRead = cluster_io_del_read;
  ac->ev.addWrite = cluster_io_add_write;
  ac->ev.delWrite = cluster_io_del_write;
  ac->ev.cleanup = cluster_io_cleanup;
  return 0;
}

struct wshub_cluster_s {
  uv_loop_t *loop;
  wshub_cluster_cb_t cb;
  void *user;
  char host[256];
  int port, db;
  redisAsyncContext *cmd, *sub; /* NULL while not connected */
  int cmd_ready, sub_ready;     /* SELECTed (and, for sub, every room's
                                   subscription confirmed) */
  int sub_selected;             /* the subscriber's SELECT has answered */
  size_t sub_pending;           /* confirmations still awaited */
  size_t floors_pending;        /* counters being raised (cb.floor) */
  int floors_done;
  char sha[41];             /* the script's SHA-1, "" until loaded */
  wshub_map_t rooms;        /* subscribed rooms: name → its own copy */
  uv_timer_t timer;         /* reconnect backoff */
  uv_timer_t connect_timer; /* a connection must come up in time */
  uv_timer_t beat;          /* refreshes the node's key while up */
  uint64_t node;            /* 0 until wshub_cluster_set_node */
  uint64_t backoff_ms;
  int up;
  int closing;
  int closed; /* timers closed so far (of 3) */
};

/* A publish in flight. */
typedef struct {
  wshub_cluster_t *c;
  wshub_cluster_published_cb done;
  void *arg;
  char *room; /* for the NOSCRIPT retry */
  char *payload;
  size_t len;
  uint64_t floor;
  size_t history;
  int retried;
} cluster_pub_t;

static void cluster_log(wshub_cluster_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cluster_log(wshub_cluster_t *c, int level, const char *fmt, ...) {
  if (c->cb.on_log == NULL)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  c->cb.on_log(c->user, level, msg);
}

int wshub_cluster_parse_url(const char *url, char *host, size_t host_cap,
                            int *port, int *db) {
  static const char scheme[] = "redis://";
  if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
    return UV_EINVAL;
  const char *p = url + sizeof(scheme) - 1, *h = p, *he;
  if (*p == '[') {
    h = p + 1;
    he = strchr(h, ']');
    if (he == NULL)
      return UV_EINVAL;
    p = he + 1;
  } else {
    while (*p && *p != ':' && *p != '/')
      p++;
    he = p;
  }
  size_t hl = (size_t)(he - h);
  if (hl == 0 || hl >= host_cap)
    return UV_EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  long v;
  char *end;
  *port = 6379;
  *db = 0;
  if (*p == ':') {
    v = strtol(p + 1, &end, 10);
    if (end == p + 1 || v < 1 || v > 65535)
      return UV_EINVAL;
    *port = (int)v;
    p = end;
  }
  if (*p == '/') {
    if (p[1] != '\0') {
      v = strtol(p + 1, &end, 10);
      if (end == p + 1 || *end != '\0' || v < 0 || v > 65535)
        return UV_EINVAL;
      *db = (int)v;
    }
    return 0;
  }
  return *p == '\0' ? 0 : UV_EINVAL;
}

/* Sets the node's key (see cluster.h); sent first when the link comes up,
 * so it precedes every member this node records. */
static void cluster_beat(wshub_cluster_t *c) {
  if (c->node == 0 || c->cmd == NULL)
    return;
  char key[64];
  snprintf(key, sizeof(key), CLUSTER_NODE_PREFIX "%llu",
           (unsigned long long)c->node);
  redisAsyncCommand(c->cmd, NULL, NULL, "SET %s 1 PX %d", key,
                    CLUSTER_NODE_TTL_MS);
}

static void cluster_on_beat(uv_timer_t *t) {
  wshub_cluster_t *c = t->data;
  if (c->up)
    cluster_beat(c);
}

static void cluster_set_up(wshub_cluster_t *c) {
  int up = c->cmd_ready && c->sub_ready && c->sha[0] != '\0' && c->floors_done;
  if (up == c->up || c->closing)
    return;
  c->up = up;
  if (up) {
    c->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
    uv_timer_stop(&c->connect_timer);
    cluster_beat(c); /* before anything of ours is published */
  }
  cluster_log(c, up ? 2 : 1, "redis %s:%d: %s", c->host, c->port,
              up ? "connected" : "connection lost, retrying");
  if (c->cb.on_state != NULL)
    c->cb.on_state(c->user, up);
}

static void cluster_connect(wshub_cluster_t *c);

static void cluster_on_timer(uv_timer_t *t) {
  cluster_connect(t->data);
}

/* A connection that is not up in time is dropped (and retried). */
static void cluster_on_connect_timeout(uv_timer_t *t) {
  wshub_cluster_t *c = t->data;
  if (c->closing || c->up)
    return;
  cluster_log(c, 1, "redis %s:%d: no answer in %d ms", c->host, c->port,
              CLUSTER_CONNECT_TIMEOUT_MS);
  if (c->cmd != NULL && !c->cmd_ready)
    redisAsyncDisconnect(c->cmd);
  if (c->sub != NULL && !c->sub_ready)
    redisAsyncDisconnect(c->sub);
}

/* Tries again later, waiting longer each time. */
static void cluster_retry(wshub_cluster_t *c) {
  if (c->closing || uv_is_active((uv_handle_t *)&c->timer))
    return;
  uv_timer_start(&c->timer, cluster_on_timer, c->backoff_ms, 0);
  c->backoff_ms *= 2;
  if (c->backoff_ms > CLUSTER_BACKOFF_MAX_MS)
    c->backoff_ms = CLUSTER_BACKOFF_MAX_MS;
}

/* Drops a context after a protocol-level failure (hiredis frees it). */
static void cluster_drop(wshub_cluster_t *c, redisAsyncContext *ac) {
  if (ac != NULL && !(ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
    redisAsyncDisconnect(ac);
  (void)c;
}

static int cluster_reply_ok(const redisReply *r) {
  return r != NULL && r->type != REDIS_REPLY_ERROR;
}

static void cluster_send_subscribe(wshub_cluster_t *c, const char *room,
                                   int on);

static void cluster_sub_room(const char *key, void *value, void *arg) {
  (void)value;
  cluster_send_subscribe(arg, key, 1);
}

static void cluster_on_select(redisAsyncContext *ac, void *reply, void *priv) {
  wshub_cluster_t *c = priv;
  if (c == NULL || c->closing)
    return;
  if (!cluster_reply_ok(reply)) {
    cluster_log(c, 0, "redis %s:%d: SELECT %d failed: %s", c->host, c->port,
                c->db, reply ? ((redisReply *)reply)->str : "no reply");
    cluster_drop(c, ac);
    return;
  }
  if (ac == c->sub) {
    /* Up once Redis has confirmed every room: a message published after
     * that reaches us. */
    c->sub_pending = 0;
    c->sub_selected = 1;
    wshub_map_foreach(&c->rooms, cluster_sub_room, c);
    c->sub_ready = c->sub_pending == 0;
  } else {
    c->cmd_ready = 1;
  }
  cluster_set_up(c);
}

/* KEYS: seq. ARGV: floor. Raises the counter to the floor. */
static const char cluster_floor_script[] =
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) "
    "end\n"
    "return 1\n";

static void cluster_on_floor(redisAsyncContext *ac, void *reply, void *priv) {
  wshub_cluster_t *c = priv;
  if (c == NULL || c->closing)
    return;
  if (!cluster_reply_ok(reply)) {
    cluster_log(c, 0, "redis %s:%d: raising a room's counter failed", c->host,
                c->port);
    cluster_drop(c, ac);
    return;
  }
  if (c->floors_pending > 0 && --c->floors_pending == 0) {
    c->floors_done = 1;
    cluster_set_up(c);
  }
}

/* Each room's counter raised to what this node saw while Redis was away,
 * before the link counts as up (and anything of ours is published). */
static void cluster_floor_room(const char *key, void *value, void *arg) {
  (void)value;
  wshub_cluster_t *c = arg;
  uint64_t floor = c->cb.floor != NULL ? c->cb.floor(c->user, key) : 0;
  if (floor == 0 || c->cmd == NULL)
    return;
  char seq[320], f[24];
  cluster_key(seq, key, ":seq");
  snprintf(f, sizeof(f), "%llu", (unsigned long long)floor);
  if (redisAsyncCommand(c->cmd, cluster_on_floor, c, "EVAL %s 1 %s %s",
                        cluster_floor_script, seq, f) == REDIS_OK)
    c->floors_pending++;
}

static void cluster_on_script(redisAsyncContext *ac, void *reply, void *priv) {
  wshub_cluster_t *c = priv;
  const redisReply *r = reply;
  if (c == NULL || c->closing)
    return;
  if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
    cluster_log(c, 0, "redis %s:%d: SCRIPT LOAD failed", c->host, c->port);
    cluster_drop(c, ac);
    return;
  }
  memcpy(c->sha, r->str, 40);
  c->sha[40] = '\0';
  c->floors_pending = 0;
  wshub_map_foreach(&c->rooms, cluster_floor_room, c);
  c->floors_done = c->floors_pending == 0;
  cluster_set_up(c);
}

/* A message on the subscriber connection: ["message", channel, "<id> x"]. */
static void cluster_on_sub(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  wshub_cluster_t *c = priv;
  const redisReply *r = reply;
  if (c == NULL || c->closing || r == NULL || r->type != REDIS_REPLY_ARRAY ||
      r->elements != 3)
    return;
  const redisReply *kind = r->element[0], *ch = r->element[1],
                   *msg = r->element[2];
  if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "subscribe") == 0) {
    size_t pl = sizeof(CLUSTER_PREFIX) - 1;
    if (c->cb.on_subscribed != NULL && ch->type == REDIS_REPLY_STRING &&
        ch->len > pl && memcmp(ch->str, CLUSTER_PREFIX, pl) == 0 &&
        wshub_map_get(&c->rooms, ch->str + pl) != NULL)
      c->cb.on_subscribed(c->user, ch->str + pl);
    if (c->sub_pending > 0 && --c->sub_pending == 0 && !c->sub_ready) {
      c->sub_ready = 1;
      cluster_set_up(c);
    }
    return;
  }
  if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0 ||
      ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING)
    return; /* other confirmations */
  size_t pl = sizeof(CLUSTER_PREFIX) - 1;
  if (ch->len <= pl || memcmp(ch->str, CLUSTER_PREFIX, pl) != 0)
    return;
  const char *room = ch->str + pl;
  if (wshub_map_get(&c->rooms, room) == NULL)
    return; /* left already: an unsubscribe is on its way */
  char *end;
  unsigned long long id = strtoull(msg->str, &end, 10);
  if (end == msg->str || *end != ' ') {
    cluster_log(c, 1, "redis: a malformed message on %s", ch->str);
    return;
  }
  end++;
  c->cb.on_message(c->user, room, (uint64_t)id, end,
                   msg->len - (size_t)(end - msg->str));
}

/* Sends (UN)SUBSCRIBE while the subscriber connection is selected; the
 * SELECT reply sends every room again anyway. A SUBSCRIBE sent while
 * (re)connecting counts in sub_pending. */
static void cluster_send_subscribe(wshub_cluster_t *c, const char *room,
                                   int on) {
  if (c->sub == NULL || !c->sub_selected)
    return;
  if (redisAsyncCommand(c->sub, on ? cluster_on_sub : NULL, on ? c : NULL,
                        on ? "SUBSCRIBE " CLUSTER_PREFIX "%s"
                           : "UNSUBSCRIBE " CLUSTER_PREFIX "%s",
                        room) != REDIS_OK) {
    cluster_drop(c, c->sub);
    return;
  }
  if (on && !c->sub_ready)
    c->sub_pending++;
}

static void cluster_on_connect(const redisAsyncContext *ac, int status) {
  wshub_cluster_t *c = ac->data;
  if (c == NULL)
    return;
  redisAsyncContext *m = (redisAsyncContext *)ac;
  if (status != REDIS_OK) {
    /* hiredis frees the context after this callback. */
    cluster_log(c, 1, "redis %s:%d: cannot connect: %s", c->host, c->port,
                ac->errstr);
    if (m == c->cmd)
      c->cmd = NULL;
    if (m == c->sub) {
      c->sub = NULL;
      c->sub_selected = 0;
      c->sub_pending = 0;
    }
    cluster_retry(c);
    return;
  }
  if (redisAsyncCommand(m, cluster_on_select, c, "SELECT %d", c->db) !=
      REDIS_OK) {
    cluster_drop(c, m);
    return;
  }
  if (m == c->cmd &&
      redisAsyncCommand(m, cluster_on_script, c, "SCRIPT LOAD %s",
                        cluster_script) != REDIS_OK)
    cluster_drop(c, m);
}

static void cluster_on_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  wshub_cluster_t *c = ac->data;
  if (c == NULL)
    return;
  if (ac == c->cmd) {
    c->cmd = NULL;
    c->cmd_ready = 0;
    c->sha[0] = '\0';
    c->floors_done = 0;
  } else if (ac == c->sub) {
    c->sub = NULL;
    c->sub_ready = 0;
    c->sub_selected = 0;
    c->sub_pending = 0;
  }
  if (c->closing)
    return;
  cluster_set_up(c);
  /* The other connection is likely gone too; let it fail by itself. */
  cluster_retry(c);
}

static redisAsyncContext *cluster_open(wshub_cluster_t *c) {
  redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
  if (ac == NULL)
    return NULL;
  if (ac->err) {
    cluster_log(c, 1, "redis %s:%d: %s", c->host, c->port, ac->errstr);
    redisAsyncFree(ac);
    return NULL;
  }
  ac->data = c;
  if (cluster_io_attach(ac, c->loop) != 0) {
    redisAsyncFree(ac);
    return NULL;
  }
  redisAsyncSetConnectCallback(ac, cluster_on_connect);
  redisAsyncSetDisconnectCallback(ac, cluster_on_disconnect);
  return ac;
}

/* Opens whichever connection is missing; retries later on failure. */
static void cluster_connect(wshub_cluster_t *c) {
  if (c->closing)
    return;
  if (c->cmd == NULL)
    c->cmd = cluster_open(c);
  if (c->sub == NULL)
    c->sub = cluster_open(c);
  if (c->cmd == NULL || c->sub == NULL)
    cluster_retry(c);
  else
    uv_timer_start(&c->connect_timer, cluster_on_connect_timeout,
                   CLUSTER_CONNECT_TIMEOUT_MS, 0);
}

int wshub_cluster_new(uv_loop_t *loop, const char *url,
                      const wshub_cluster_cb_t *cb, void *user,
                      wshub_cluster_t **out) {
  wshub_cluster_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  if (wshub_cluster_parse_url(url, c->host, sizeof(c->host), &c->port,
                              &c->db) != 0) {
    free(c);
    return UV_EINVAL;
  }
  c->loop = loop;
  c->cb = *cb;
  c->user = user;
  c->backoff_ms = CLUSTER_BACKOFF_MIN_MS;
  wshub_map_init(&c->rooms);
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  uv_timer_init(loop, &c->connect_timer);
  c->connect_timer.data = c;
  uv_timer_init(loop, &c->beat);
  c->beat.data = c;
  cluster_connect(c);
  *out = c;
  return 0;
}

int wshub_cluster_up(const wshub_cluster_t *c) {
  return c->up;
}

int wshub_cluster_subscribe(wshub_cluster_t *c, const char *room) {
  if (wshub_map_get(&c->rooms, room) != NULL)
    return 0;
  char *name = strdup(room);
  if (name == NULL || wshub_map_put(&c->rooms, name, name) != 0) {
    free(name);
    return UV_ENOMEM;
  }
  cluster_send_subscribe(c, name, 1);
  return 0;
}

int wshub_cluster_unsubscribe(wshub_cluster_t *c, const char *room) {
  char *name = wshub_map_del(&c->rooms, room);
  if (name == NULL)
    return 0;
  cluster_send_subscribe(c, name, 0);
  free(name);
  return 0;
}

static void cluster_pub_free(cluster_pub_t *p) {
  free(p->room);
  free(p->payload);
  free(p);
}

static int cluster_send_publish(wshub_cluster_t *c, cluster_pub_t *p);

static void cluster_on_published(redisAsyncContext *ac, void *reply,
                                 void *priv) {
  (void)ac;
  cluster_pub_t *p = priv;
  wshub_cluster_t *c = p->c;
  const redisReply *r = reply;
  if (c->closing) {
    cluster_pub_free(p);
    return;
  }
  if (r != NULL && r->type == REDIS_REPLY_ERROR && !p->retried &&
      strncmp(r->str, "NOSCRIPT", 8) == 0) {
    /* Redis restarted between SCRIPT LOAD and now: load it with EVAL. */
    p->retried = 1;
    if (cluster_send_publish(c, p) == 0)
      return;
  }
  uint64_t id = 0;
  int err = 0;
  if (r == NULL)
    err = UV_ECONNRESET;
  else if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0)
    err = UV_EPROTO;
  else
    id = (uint64_t)r->integer;
  if (err != 0 && r != NULL)
    cluster_log(c, 1, "redis: publish to %s failed: %s", p->room,
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
  if (p->done != NULL)
    p->done(p->arg, id, err);
  cluster_pub_free(p);
}

static int cluster_send_publish(wshub_cluster_t *c, cluster_pub_t *p) {
  if (c->cmd == NULL || !c->up)
    return UV_ENOTCONN;
  char keys[3][320], floor[24], hist[24];
  cluster_key(keys[0], p->room, ":seq"); /* rooms are at most 256 bytes */
  cluster_key(keys[1], p->room, ":log");
  cluster_key(keys[2], p->room, "");
  snprintf(floor, sizeof(floor), "%llu", (unsigned long long)p->floor);
  snprintf(hist, sizeof(hist), "%zu", p->history);
  const char *argv[9] = {p->retried ? "EVAL" : "EVALSHA",
                         p->retried ? cluster_script : c->sha,
                         "3",
                         keys[0],
                         keys[1],
                         keys[2],
                         p->payload,
                         floor,
                         hist};
  size_t lens[9];
  for (int i = 0; i < 9; i++)
    lens[i] = strlen(argv[i]);
  lens[6] = p->len;
  if (redisAsyncCommandArgv(c->cmd, cluster_on_published, p, 9, argv, lens) !=
      REDIS_OK)
    return UV_ENOTCONN;
  return 0;
}

int wshub_cluster_publish(wshub_cluster_t *c, const char *room,
                          const char *payload, size_t len, uint64_t floor,
                          size_t history, wshub_cluster_published_cb done,
                          void *arg) {
  if (!c->up || c->closing)
    return UV_ENOTCONN;
  if (strlen(room) > 256)
    return UV_EINVAL;
  cluster_pub_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  p->c = c;
  p->done = done;
  p->arg = arg;
  p->room = strdup(room);
  p->payload = malloc(len + 1);
  if (p->room == NULL || p->payload == NULL) {
    cluster_pub_free(p);
    return UV_ENOMEM;
  }
  memcpy(p->payload, payload, len);
  p->payload[len] = '\0';
  p->len = len;
  p->floor = floor;
  p->history = history > 0 ? history : 1;
  int r = cluster_send_publish(c, p);
  if (r != 0)
    cluster_pub_free(p);
  return r;
}

int wshub_cluster_send(wshub_cluster_t *c, const char *room,
                       const char *payload, size_t len) {
  if (!c->up || c->closing || c->cmd == NULL)
    return UV_ENOTCONN;
  char ch[320];
  if (cluster_key(ch, room, "") != 0)
    return UV_EINVAL;
  char *msg = malloc(len + 2);
  if (msg == NULL)
    return UV_ENOMEM;
  msg[0] = '0';
  msg[1] = ' ';
  memcpy(msg + 2, payload, len);
  const char *argv[3] = {"PUBLISH", ch, msg};
  size_t lens[3] = {7, strlen(ch), len + 2};
  int r = redisAsyncCommandArgv(c->cmd, NULL, NULL, 3, argv, lens) == REDIS_OK
              ? 0
              : UV_ENOTCONN;
  free(msg);
  return r;
}

void wshub_cluster_set_node(wshub_cluster_t *c, uint64_t node) {
  c->node = node;
  uv_timer_start(&c->beat, cluster_on_beat, CLUSTER_BEAT_MS, CLUSTER_BEAT_MS);
  uv_unref((uv_handle_t *)&c->beat);
  if (c->up)
    cluster_beat(c);
}

/* KEYS: log, members. ARGV: after, count, node key prefix. Returns the
 * Stream's newest `count` entries after `after` (oldest first) and the members
 * of live nodes (flat field, value pairs); members of nodes whose key expired
 * are removed. */
static const char cluster_load_script[] =
    "local after = tonumber(ARGV[1])\n"
    "local lo = '-'\n"
    "if after > 0 then lo = string.format('%d-0', after + 1) end\n"
    "local rev = redis.call('XREVRANGE', KEYS[1], '+', lo, 'COUNT', ARGV[2])\n"
    "local log = {}\n"
    "for i = #rev, 1, -1 do log[#log + 1] = rev[i] end\n"
    "local m = redis.call('HGETALL', KEYS[2])\n"
    "local live = {}\n"
    "for i = 1, #m, 2 do\n"
    "  local node = string.match(m[i + 1], '^(%d+) ')\n"
    "  if node and redis.call('EXISTS', ARGV[3] .. node) == 1 then\n"
    "    live[#live + 1] = m[i]\n"
    "    live[#live + 1] = m[i + 1]\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[2], m[i])\n"
    "  end\n"
    "end\n"
    "return {log, live}\n";

typedef struct {
  wshub_cluster_t *c;
  wshub_cluster_loaded_cb done;
  void *arg;
} cluster_load_t;

/* The items of a load reply; NULL (and *n 0) if it is malformed or empty.
 * Stream entries are [id, [field, value]], members flat pairs. */
static wshub_cluster_item_t *cluster_items(const redisReply *r, int members,
                                           size_t *n, int *bad) {
  *n = 0;
  if (r->type != REDIS_REPLY_ARRAY || (members && r->elements % 2 != 0)) {
    *bad = 1;
    return NULL;
  }
  size_t count = members ? r->elements / 2 : r->elements;
  if (count == 0)
    return NULL;
  wshub_cluster_item_t *it = calloc(count, sizeof(*it));
  if (it == NULL) {
    *bad = 1;
    return NULL;
  }
  for (size_t i = 0; i < count && !*bad; i++) {
    const redisReply *k, *v;
    if (members) {
      k = r->element[2 * i];
      v = r->element[2 * i + 1];
    } else {
      const redisReply *e = r->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
          e->element[1]->type != REDIS_REPLY_ARRAY ||
          e->element[1]->elements != 2) {
        *bad = 1;
        break;
      }
      k = e->element[0];
      v = e->element[1]->element[1];
    }
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
      *bad = 1;
      break;
    }
    char *end;
    if (members) {
      it[i].key = k->str;
      it[i].key_len = k->len;
      it[i].id = strtoull(v->str, &end, 10);
      if (*end != ' ') {
        *bad = 1;
        break;
      }
      end++;
      it[i].data = end;
      it[i].len = v->len - (size_t)(end - v->str);
    } else {
      it[i].id = strtoull(k->str, &end, 10);
      it[i].data = v->str;
      it[i].len = v->len;
    }
  }
  *n = count;
  return it;
}

static void cluster_on_loaded(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  cluster_load_t *l = priv;
  const redisReply *r = reply;
  if (l->c->closing) {
    free(l);
    return;
  }
  wshub_cluster_item_t *log = NULL, *mem = NULL;
  size_t nlog = 0, nmem = 0;
  int bad = 0, err = 0;
  if (r == NULL)
    err = UV_ECONNRESET;
  else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
    err = UV_EPROTO;
  else {
    log = cluster_items(r->element[0], 0, &nlog, &bad);
    mem = cluster_items(r->element[1], 1, &nmem, &bad);
    if (bad)
      err = UV_EPROTO;
  }
  if (err == UV_EPROTO)
    cluster_log(l->c, 1, "redis: reading a room's history failed: %s",
                r != NULL && r->type == REDIS_REPLY_ERROR ? r->str
                                                          : "unexpected reply");
  l->done(l->arg, err, log, err ? 0 : nlog, mem, err ? 0 : nmem);
  free(log);
  free(mem);
  free(l);
}

int wshub_cluster_load(wshub_cluster_t *c, const char *room, uint64_t after,
                       size_t count, wshub_cluster_loaded_cb done, void *arg) {
  if (!c->up || c->closing || c->cmd == NULL)
    return UV_ENOTCONN;
  char log[320], mem[320], a[24], n[24];
  if (cluster_key(log, room, ":log") != 0 ||
      cluster_key(mem, room, ":members") != 0)
    return UV_EINVAL;
  cluster_load_t *l = malloc(sizeof(*l));
  if (l == NULL)
    return UV_ENOMEM;
  *l = (cluster_load_t){c, done, arg};
  snprintf(a, sizeof(a), "%llu", (unsigned long long)after);
  snprintf(n, sizeof(n), "%zu", count > 0 ? count : 1);
  if (redisAsyncCommand(c->cmd, cluster_on_loaded, l,
                        "EVAL %s 2 %s %s %s %s %s", cluster_load_script, log,
                        mem, a, n, CLUSTER_NODE_PREFIX) != REDIS_OK) {
    free(l);
    return UV_ENOTCONN;
  }
  return 0;
}

/* KEYS: members, channel. ARGV: id, value ("" removes), notice. */
static const char cluster_presence_script[] =
    "if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
    "redis.call('PUBLISH', KEYS[2], '0 ' .. ARGV[3])\n"
    "return 1\n";

int wshub_cluster_presence(wshub_cluster_t *c, const char *room, const char *id,
                           uint64_t node, const char *json, size_t json_len,
                           const char *notice, size_t notice_len) {
  if (!c->up || c->closing || c->cmd == NULL)
    return UV_ENOTCONN;
  char mem[320], ch[320], head[24];
  if (cluster_key(mem, room, ":members") != 0 || cluster_key(ch, room, "") != 0)
    return UV_EINVAL;
  int hl = snprintf(head, sizeof(head), "%llu ", (unsigned long long)node);
  size_t vl = json != NULL ? (size_t)hl + json_len : 0;
  char *value = malloc(vl + 1);
  if (value == NULL)
    return UV_ENOMEM;
  if (json != NULL) {
    memcpy(value, head, (size_t)hl);
    memcpy(value + hl, json, json_len);
  }
  const char *argv[8] = {
      "EVAL", cluster_presence_script, "2", mem, ch, id, value, notice};
  size_t lens[8];
  for (int i = 0; i < 6; i++)
    lens[i] = strlen(argv[i]);
  lens[6] = vl;
  lens[7] = notice_len;
  int r = redisAsyncCommandArgv(c->cmd, NULL, NULL, 8, argv, lens) == REDIS_OK
              ? 0
              : UV_ENOTCONN;
  free(value);
  return r;
}

typedef struct {
  wshub_cluster_t *c;
  wshub_cluster_alive_cb done;
  void *arg;
  size_t n;
} cluster_alive_t;

static void cluster_on_alive(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  cluster_alive_t *q = priv;
  const redisReply *r = reply;
  if (q->c->closing) {
    free(q);
    return;
  }
  int *alive = NULL;
  int err = r == NULL ? UV_ECONNRESET : 0;
  if (err == 0 && (r->type != REDIS_REPLY_ARRAY || r->elements != q->n))
    err = UV_EPROTO;
  if (err == 0 && (alive = calloc(q->n ? q->n : 1, sizeof(*alive))) == NULL)
    err = UV_ENOMEM;
  for (size_t i = 0; err == 0 && i < q->n; i++)
    alive[i] = r->element[i]->type == REDIS_REPLY_INTEGER &&
               r->element[i]->integer == 1;
  q->done(q->arg, err, alive, err ? 0 : q->n);
  free(alive);
  free(q);
}

static const char cluster_alive_script[] =
    "local r = {}\n"
    "for i, k in ipairs(KEYS) do r[i] = redis.call('EXISTS', k) end\n"
    "return r\n";

int wshub_cluster_alive(wshub_cluster_t *c, const uint64_t *nodes, size_t n,
                        wshub_cluster_alive_cb done, void *arg) {
  if (!c->up || c->closing || c->cmd == NULL)
    return UV_ENOTCONN;
  size_t argc = 3 + n;
  const char **argv = calloc(argc, sizeof(*argv));
  size_t *lens = calloc(argc, sizeof(*lens));
  char(*keys)[48] = calloc(n ? n : 1, sizeof(*keys));
  cluster_alive_t *q = malloc(sizeof(*q));
  char nk[24];
  int r = UV_ENOMEM;
  if (argv != NULL && lens != NULL && keys != NULL && q != NULL) {
    *q = (cluster_alive_t){c, done, arg, n};
    snprintf(nk, sizeof(nk), "%zu", n);
    argv[0] = "EVAL";
    argv[1] = cluster_alive_script;
    argv[2] = nk;
    for (size_t i = 0; i < n; i++) {
      snprintf(keys[i], sizeof(keys[i]), CLUSTER_NODE_PREFIX "%llu",
               (unsigned long long)nodes[i]);
      argv[3 + i] = keys[i];
    }
    for (size_t i = 0; i < argc; i++)
      lens[i] = strlen(argv[i]);
    r = redisAsyncCommandArgv(c->cmd, cluster_on_alive, q, (int)argc, argv,
                              lens) == REDIS_OK
            ? 0
            : UV_ENOTCONN;
    if (r == 0)
      q = NULL;
  }
  free(q);
  free(keys);
  free(lens);
  free(argv);
  return r;
}

static void cluster_free_name(const char *key, void *value, void *arg) {
  (void)key;
  (void)arg;
  free(value);
}

static void cluster_on_timer_closed(uv_handle_t *h) {
  wshub_cluster_t *c = h->data;
  if (++c->closed < 3)
    return; /* every timer must be closed (in whatever order) */
  wshub_map_foreach(&c->rooms, cluster_free_name, NULL);
  wshub_map_free(&c->rooms);
  free(c);
}

void wshub_cluster_close(wshub_cluster_t *c) {
  if (c == NULL || c->closing)
    return;
  c->closing = 1;
  /* Pending publishes are answered with NULL replies now and freed. */
  if (c->cmd != NULL) {
    c->cmd->data = NULL;
    redisAsyncFree(c->cmd);
  }
  if (c->sub != NULL) {
    c->sub->data = NULL;
    redisAsyncFree(c->sub);
  }
  c->cmd = c->sub = NULL;
  uv_close((uv_handle_t *)&c->timer, cluster_on_timer_closed);
  uv_close((uv_handle_t *)&c->connect_timer, cluster_on_timer_closed);
  uv_close((uv_handle_t *)&c->beat, cluster_on_timer_closed);
}
