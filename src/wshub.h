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
  const char *public_dir;     /* static files root; NULL: no static files */
  wshub_log_level_t log_level;
  wshub_log_cb log_cb; /* NULL: lines go to stderr */
  void *log_user;

  /* HTTP limits and timeouts (milliseconds). */
  size_t max_header_bytes; /* header section, → 431 (default 16384) */
  size_t max_headers;      /* header field count, → 431 (default 100) */
  size_t max_body;         /* request body, → 413 (default 1 MiB) */
  uint64_t header_timeout_ms;    /* request head must arrive (10 s) */
  uint64_t keepalive_timeout_ms; /* idle between requests (15 s) */

  /* WebSocket. */
  const char *const *ws_paths; /* paths that accept an Upgrade; NULL or
                                  empty: every path */
  size_t ws_npaths;
  const char *const *protocols; /* subprotocols we speak, preference-free */
  size_t nprotocols;
  size_t max_message;          /* → close 1009 (default 1 MiB) */
  uint64_t ping_interval_ms;   /* 0: no keep-alive pings (default 30 s) */
  uint64_t close_timeout_ms;   /* peer must answer our close (5 s) */
  int echo;                    /* echo every message back (conformance) */

  size_t max_backlog; /* queued outbound bytes per connection before it is
                         dropped as a slow consumer (default 8 MiB) */
  uint64_t shutdown_timeout_ms; /* wshub_close waits this long (10 s) */
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

/* The port of the first listener (useful after listening on port 0). */
int wshub_server_port(const wshub_server_t *server);

/* Stops accepting, lets responses in flight finish, sends close 1001 to
 * every WebSocket, and calls close_cb once every handle is closed and every
 * connection freed (or once shutdown_timeout_ms has passed and the
 * remaining connections were cut). The server is freed after close_cb
 * returns; do not use it afterwards. */
void wshub_close(wshub_server_t *server, wshub_close_cb close_cb);

/* Number of open connections (HTTP and WebSocket). */
size_t wshub_server_connections(const wshub_server_t *server);

const char *wshub_strerror(int err);

#endif
