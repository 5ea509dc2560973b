/* wshub.h — the public API of wshub, a real-time chat/WebSocket server
 * library on libuv.
 *
 * A wshub_server_t lives inside a loop owned by the caller. It never calls
 * uv_run(), never installs signal handlers, never exits and never prints to
 * stdout; diagnostics go to the log callback (default: stderr, filtered by
 * log_level). Every function returns 0 or a negative libuv-style error code;
 * wshub_strerror() turns one into text.
 *
 * Ownership: the config is copied by wshub_server_new(); strings and arrays
 * it points to are borrowed and must outlive the server. The server owns
 * every connection, buffer and handle it creates and releases all of them
 * before calling the close callback of wshub_close().
 */
#ifndef WSHUB_H
#define WSHUB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define WSHUB_VERSION "0.1.0"

typedef struct wshub_server_s wshub_server_t;
typedef struct wshub_client_s wshub_client_t;
/* Servers whose metrics are reported together (see "Operations"). */
typedef struct wshub_metrics_group_s wshub_metrics_group_t;
/* Where an application writes its own metrics lines (on_metrics). */
typedef struct wshub_metrics_out_s wshub_metrics_out_t;

/* One request header, as received (value trimmed of surrounding blanks). */
typedef struct {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} wshub_header_t;

/* A parsed HTTP request. Every pointer is borrowed from the connection and
 * valid only during the callback that receives it. */
typedef struct {
  int method; /* llhttp_method_t: 1 GET, 2 HEAD, 3 POST, ... */
  int http_major;
  int http_minor;
  const char *target; /* raw request-target (path and query), not decoded */
  size_t target_len;
  const wshub_header_t *headers;
  size_t nheaders;
  const char *body;
  size_t body_len;
  int upgrade;        /* llhttp saw Connection: upgrade + Upgrade */
  int keep_alive;     /* the connection may be reused after the response */
  const char *remote; /* "ip:port" of the peer */
} wshub_request_t;

/* The value of the first header called `name` (case-insensitive) or NULL;
 * its length goes to *len when len is not NULL. */
const char *wshub_request_header(const wshub_request_t *req, const char *name,
                                 size_t *len);

/* An HTTP request the application may answer (see on_request). */
typedef struct wshub_http_s wshub_response_t;

/* Called for every request that is not a WebSocket upgrade, before static
 * files. Return 0 to let wshub go on (static files, else 404), or 1 after
 * answering with wshub_respond(). */
typedef int (*wshub_request_cb)(wshub_response_t *res,
                                const wshub_request_t *req, void *user);

/* Called before the 101 is sent: return 0 to accept the WebSocket, or an
 * HTTP status (400-599) to refuse it. The client exists already: it may be
 * given user data, join rooms and be sent messages (they follow the 101).
 * A refused client is dropped without on_close: release whatever was
 * attached to it before returning the status. */
typedef int (*wshub_open_cb)(wshub_client_t *c, const wshub_request_t *req,
                             void *user);
/* A complete message (text is valid UTF-8). `data` is borrowed. */
typedef void (*wshub_message_cb)(wshub_client_t *c, const char *data,
                                 size_t len, int binary, void *user);
/* The client is gone (code 1006 when the TCP connection just ended). It is
 * still in its rooms during the call, and freed right after. */
typedef void (*wshub_closed_cb)(wshub_client_t *c, int code, const char *reason,
                                void *user);

typedef enum {
  WSHUB_LOG_ERROR = 0,
  WSHUB_LOG_WARN = 1,
  WSHUB_LOG_INFO = 2,
  WSHUB_LOG_DEBUG = 3
} wshub_log_level_t;

typedef void (*wshub_log_cb)(void *user, wshub_log_level_t level,
                             const char *msg);
typedef void (*wshub_close_cb)(wshub_server_t *server);

typedef struct {
  const char *public_dir; /* static files root; NULL: no static files */
  wshub_log_level_t log_level;
  wshub_log_cb log_cb; /* NULL: lines go to stderr */
  void *log_user;

  /* Connection limits (0: none). Past either, a new connection gets 503
   * and is closed; open ones are unaffected. */
  size_t max_connections;
  size_t max_per_ip;

  /* HTTP limits and timeouts (milliseconds). */
  size_t max_header_bytes;       /* header section, → 431 (default 16384) */
  size_t max_headers;            /* header field count, → 431 (default 100) */
  size_t max_body;               /* request body, → 413 (default 1 MiB) */
  uint64_t header_timeout_ms;    /* request head must arrive (10 s) */
  uint64_t keepalive_timeout_ms; /* idle between requests (15 s) */

  /* WebSocket. */
  const char *const *ws_paths; /* paths that accept an Upgrade; NULL or
                                  empty: every path */
  size_t ws_npaths;
  const char *const *protocols; /* subprotocols we speak, preference-free */
  size_t nprotocols;
  /* Origins allowed to open a WebSocket from a browser (exact, or "*").
   * Empty: same-host origins and requests without Origin. Others → 403. */
  const char *const *allow_origins;
  size_t nallow_origins;
  size_t max_message;        /* → close 1009 (default 1 MiB) */
  uint64_t ping_interval_ms; /* 0: no keep-alive pings (default 30 s) */
  uint64_t close_timeout_ms; /* peer must answer our close (5 s) */
  int echo;                  /* echo every message back (conformance) */

  /* Application callbacks (all optional) and their user pointer. */
  wshub_open_cb on_open;
  wshub_message_cb on_message;
  wshub_closed_cb on_close;
  wshub_request_cb on_request;
  void *user;

  /* Client ids are "c<n>" with n = id_first, id_first + id_step, ...
   * (defaults 1 and 1): servers on several threads sharing rooms use
   * id_first = thread + 1 and id_step = number of threads, so an id names
   * its thread. */
  uint64_t id_first;
  uint64_t id_step;

  size_t max_backlog; /* outbound bytes a connection has not taken before it
                         is dropped as a slow consumer (default 8 MiB; never
                         less than max_message, so one whole message always
                         fits) */
  uint64_t shutdown_timeout_ms; /* wshub_close waits this long (10 s) */

  /* permessage-deflate (RFC 7692). The server compresses each message on
   * its own, once for all its receivers. */
  int deflate;                    /* accept a client's offer (default 1) */
  size_t deflate_threshold;       /* shorter messages go uncompressed (64) */
  int deflate_level;              /* zlib level 1-9 (default 6) */
  unsigned deflate_client_window; /* 0 (default): clients must compress each
                                     message on its own, and the server keeps
                                     no inflate state per client; 8-15: they
                                     may keep their context, in a window of at
                                     most that many bits, which the server
                                     keeps for each of them (about 2^bits + 7
                                     KiB per client) */

  /* Operations (see "Operations" below). The library serves nothing of
   * this unless asked (defaults 0 / NULL). */
  int metrics; /* answer GET /metrics (Prometheus text format 0.0.4) */
  int health;  /* answer GET /healthz and GET /readyz */
  wshub_metrics_group_t *metrics_group; /* report with these servers (one
                                           per thread); NULL: alone */
  unsigned metrics_thread;              /* this server's thread="" label (0) */
  /* 0: not ready (/readyz answers 503). Called on any thread. NULL:
   * ready unless shutting down. The chat installs its own. */
  int (*on_ready)(void *user);
  /* Appends the application's own lines to a scrape (any thread). */
  void (*on_metrics)(wshub_metrics_out_t *out, void *user);
  int log_json;   /* stderr lines as JSON objects, not text (no log_cb) */
  int access_log; /* one info line per HTTP response */
  /* TLS: a PEM certificate (chain) file and its PEM private key file (not
   * passphrase-protected). When both are set, wshub_server_new loads them
   * (a failure is logged with the file and the reason, and returned) and
   * the listeners opened with wshub_listen_tls / wshub_listen_fd_tls speak
   * TLS 1.2 or 1.3; wshub_tls_reload reads the files again. Set both or
   * neither (one alone: wshub_server_new fails with UV_EINVAL). NULL: none
   * (wshub_server_set_tls can still give the server a context). */
  const char *tls_cert;
  const char *tls_key;
} wshub_config_t;

/* Fills cfg with the defaults documented above. */
void wshub_config_init(wshub_config_t *cfg);

/* Creates a server on `loop`. Nothing listens yet. */
int wshub_server_new(uv_loop_t *loop, const wshub_config_t *cfg,
                     wshub_server_t **out);

/* Listens on host:port (IPv4 or IPv6 literal or "localhost"; port 0 picks a
 * free port). May be called more than once for several addresses. */
int wshub_listen(wshub_server_t *server, const char *host, int port,
                 int backlog);

/* Listens on a socket the caller created, bound and put in listening
 * state (e.g. inherited from systemd); wshub takes ownership of it. */
int wshub_listen_fd(wshub_server_t *server, uv_os_sock_t fd);

/* For callers that accept themselves: call from the connection callback of
 * the caller's own listening uv_tcp_t; the accepted connection is served
 * by wshub. UV_ENOMEM: the connection could not be taken (libuv stops
 * watching the listener until one is): call again a little later. */
int wshub_accept(wshub_server_t *server, uv_stream_t *listener);

/* The `user` pointer of the configuration (e.g. from a close callback). */
void *wshub_server_user(const wshub_server_t *server);

/* The port of the first listener (useful after listening on port 0). */
int wshub_server_port(const wshub_server_t *server);
/* The loop the server runs on. */
uv_loop_t *wshub_server_loop(const wshub_server_t *server);

/* Stops accepting, lets responses in flight finish, sends close 1001 to
 * every WebSocket, and calls close_cb (may be NULL) once every handle is
 * closed and every connection freed (or once shutdown_timeout_ms has
 * passed and the remaining connections were cut). The server is freed
 * after close_cb returns; do not use it afterwards. */
void wshub_close(wshub_server_t *server, wshub_close_cb close_cb);

/* Number of open connections (HTTP and WebSocket). */
size_t wshub_server_connections(const wshub_server_t *server);

const char *wshub_strerror(int err);

/* Operations. With cfg.metrics / cfg.health set, GET /metrics, /healthz
 * and /readyz are answered before on_request on every listener — or only
 * on "operations" listeners, once the server has one (wshub_listen_ops:
 * it serves those three paths and 404 for anything else, and stays open
 * during a graceful shutdown so /readyz can say 503 until the end).
 * Counters live in each server, written by its own thread only; a group
 * (one per process, shared by the servers of all threads; free it after
 * they have closed) makes a scrape on any of them report the sum. */
int wshub_listen_ops(wshub_server_t *server, const char *host, int port,
                     int backlog);
/* The same on a socket the caller bound and put in listening state (e.g.
 * one per thread with SO_REUSEPORT: a thread that has finished its
 * shutdown closes its own, and the others still answer). */
int wshub_listen_ops_fd(wshub_server_t *server, uv_os_sock_t fd);
wshub_metrics_group_t *wshub_metrics_group_new(void);
void wshub_metrics_group_free(wshub_metrics_group_t *group);
/* The /metrics text of the server's group (or of the server alone) into a
 * malloc'd *text of *len bytes; for hosts that serve it themselves. */
int wshub_metrics_write(wshub_server_t *server, char **text, size_t *len);
/* Appends printf-formatted text to a scrape (inside on_metrics). */
int wshub_metrics_printf(wshub_metrics_out_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* 1 when /readyz would answer 200. */
int wshub_server_ready(wshub_server_t *server);
/* TLS. A wshub_tls_t is a loaded certificate and key with wshub's TLS
 * settings (TLS 1.2+, ECDHE + AEAD suites, server preference, no
 * compression, no renegotiation). It is reference counted and may be
 * shared by servers on several threads. HTTP, the HTTP chat transports and
 * WebSocket upgrades work on TLS listeners exactly as on plain ones; plain
 * and TLS listeners may be mixed on one server. */
typedef struct wshub_tls_s wshub_tls_t;

/* Loads cert_file (PEM, the server certificate first, then its chain) and
 * key_file (PEM, unencrypted) and checks that they match. On failure, err
 * (may be NULL) receives a sentence naming the file and the problem, e.g.
 * "certificate /etc/x.pem: No such file or directory",
 * "private key k.pem: not a PEM private key (no start line)",
 * "private key k.pem does not match certificate c.pem". */
int wshub_tls_load(const char *cert_file, const char *key_file,
                   wshub_tls_t **out, char *err, size_t errlen);
/* Another reference (returns tls); wshub_tls_free drops one. */
wshub_tls_t *wshub_tls_ref(wshub_tls_t *tls);
void wshub_tls_free(wshub_tls_t *tls);

/* Makes tls the server's context for connections accepted from now on
 * (the server takes its own reference); established connections keep the
 * context they started with, so nothing is dropped. Call on the server's
 * loop thread. UV_EINVAL if tls is NULL. */
int wshub_server_set_tls(wshub_server_t *server, wshub_tls_t *tls);
/* Loads the config's tls_cert / tls_key again and, if that works, makes
 * the result the server's context (a certificate renewal). On failure the
 * current context stays and the reason is logged as an error. */
int wshub_tls_reload(wshub_server_t *server);

/* As wshub_listen / wshub_listen_fd / wshub_accept, speaking TLS (the
 * server must have a context: UV_EINVAL otherwise). */
int wshub_listen_tls(wshub_server_t *server, const char *host, int port,
                     int backlog);
int wshub_listen_fd_tls(wshub_server_t *server, uv_os_sock_t fd);
int wshub_accept_tls(wshub_server_t *server, uv_stream_t *listener);

/* Clients (WebSocket connections) and rooms. A client pointer is valid from
 * on_open until on_close returns. Sending never blocks: the frame is built
 * once and queued; a client whose queue passes max_backlog is disconnected
 * as a slow consumer (without slowing anyone else down). Sends return 0,
 * UV_ECANCELED if the client is closing, or UV_ENOMEM (out of memory; a
 * client whose queue could not take the frame is disconnected with close
 * 1011, as it would have missed a message). Room names are NUL-terminated
 * strings; rooms exist while they have members. */
const char *wshub_client_id(const wshub_client_t *c); /* "c<number>" */
const char *wshub_client_remote(const wshub_client_t *c);
wshub_server_t *wshub_client_server(const wshub_client_t *c);
void *wshub_client_data(const wshub_client_t *c);
void wshub_client_set_data(wshub_client_t *c, void *data);
/* The client with this id, or NULL. */
wshub_client_t *wshub_client_find(wshub_server_t *s, const char *id);
/* Starts the closing handshake (code 1000-4999, reason ≤ 123 bytes). */
void wshub_client_close(wshub_client_t *c, int code, const char *reason);

int wshub_send(wshub_client_t *c, const void *data, size_t len, int binary);
/* To every member of `room` except `except` (may be NULL). */
int wshub_send_room(wshub_server_t *s, const char *room, const void *data,
                    size_t len, int binary, const wshub_client_t *except);
/* To every client except `except` (may be NULL). */
int wshub_send_all(wshub_server_t *s, const void *data, size_t len, int binary,
                   const wshub_client_t *except);

/* Joining twice is a no-op returning 0; UV_EINVAL for an empty name. */
int wshub_join(wshub_client_t *c, const char *room);
/* UV_ENOENT if the client is not in the room. */
int wshub_leave(wshub_client_t *c, const char *room);
int wshub_in_room(const wshub_client_t *c, const char *room);
/* The client's rooms, in the order it joined them. */
size_t wshub_client_room_count(const wshub_client_t *c);
const char *wshub_client_room(const wshub_client_t *c, size_t i);
/* Calls fn for each member of a room (fn must not join or leave). Returns
 * the number of members. */
size_t wshub_room_foreach(wshub_server_t *s, const char *room,
                          void (*fn)(wshub_client_t *c, void *arg), void *arg);
size_t wshub_room_count(const wshub_server_t *s); /* rooms with members */
size_t wshub_room_size(const wshub_server_t *s, const char *room);

/* Answers the request of on_request: status line, Content-Type (if not
 * NULL), `headers` (complete "Name: value\r\n" lines, may be NULL),
 * Content-Length and the body (left out for HEAD). Call once, inside
 * on_request. */
int wshub_respond(wshub_response_t *res, int status, const char *content_type,
                  const char *headers, const void *body, size_t len);

/* The chat of docs/PROTOCOL.md, packaged for hosts: create it before the
 * server, install it into the config (it sets on_open, on_message,
 * on_close and user), and free it after wshub_close() has called back. */
typedef struct wshub_chat_s wshub_chat_t;

typedef struct {
  size_t max_text;  /* bytes of a message's text (default 4000) */
  size_t history;   /* messages kept per room (default 100) */
  size_t max_rooms; /* rooms with history, server-wide (default 10000) */
  double rate;      /* messages per second per client, token bucket (default
                       100; 0: unlimited) */
  double burst;     /* bucket size (default 2 × rate): over it a message is
                       refused with a `rate_limited` error; a client that keeps
                       sending while refused is closed with 1008 */
  size_t presence_limit;       /* rooms with more members than this get no
                                  join/leave/nick notices, and member lists are
                                  cut to this many (default 100) */
  uint64_t session_timeout_ms; /* an HTTP session (SSE / polling) without
                                  open requests ends after this (default
                                  60000) */
  const char *redis_url; /* "redis://host[:port][/db]": share rooms with the
                            other nodes using this Redis (NULL: alone) */
} wshub_chat_config_t;

void wshub_chat_config_init(wshub_chat_config_t *cfg);
/* A chat for servers on one loop. */
wshub_chat_t *wshub_chat_new(const wshub_chat_config_t *cfg);
void wshub_chat_install(wshub_chat_t *chat, wshub_config_t *cfg);
void wshub_chat_free(wshub_chat_t *chat);

/* One chat shared by `nthreads` servers, one per thread and loop, whose
 * configs use id_first = index + 1 and id_step = nthreads. On each thread,
 * before its loop runs, attach that thread's server; after the server has
 * closed, detach it (on that thread). Rooms, ids, history and presence are
 * shared; each room message is framed once and crosses threads once, and
 * every thread fans it out to its own members, in one order for all. */
wshub_chat_t *wshub_chat_new_threads(const wshub_chat_config_t *cfg,
                                     unsigned nthreads);
/* Attaching index 0 (also with one loop) starts a once-a-second timer (it
 * does not keep the loop alive) that ends idle HTTP sessions; without it
 * they end at the next chat request or message. Detach closes it. */
int wshub_chat_attach(wshub_chat_t *chat, unsigned index, uv_loop_t *loop,
                      wshub_server_t *server);
void wshub_chat_detach(wshub_chat_t *chat, unsigned index);
size_t wshub_client_count(const wshub_server_t *s);

/* The id_first of thread `index` for a server of this chat (id_step: the
 * number of threads): index + 1 when the chat is alone; with Redis, ids
 * also carry the node's random number (from bit 40 of n - 1), so that they
 * are unique across nodes and name their node. */
uint64_t wshub_chat_id_first(const wshub_chat_t *chat, unsigned index);

/* 1 unless the chat shares its rooms through Redis and the link is down
 * (the chat's on_ready, installed by wshub_chat_install). */
int wshub_chat_ready(wshub_chat_t *chat);

#endif
